#include "json_term.hpp"

namespace nodus::tools {

using nlohmann::json;

namespace {

std::string key_text(const Term& k) {
  if (k.is_atom()) return std::string(k.as_atom().name());
  if (k.is_bin()) return k.as_bin();
  return k.to_string();
}

std::optional<Term> to_term(const json& j, std::string& why, int depth) {
  if (depth > 64) {
    why = "the request is nested more than 64 levels deep";
    return std::nullopt;
  }
  switch (j.type()) {
    case json::value_t::null:
      return Term();
    case json::value_t::boolean:
      return Term(j.get<bool>());
    case json::value_t::number_integer:
      return Term(j.get<std::int64_t>());
    case json::value_t::number_unsigned: {
      auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) {
        why = "the integer " + std::to_string(u) + " does not fit in 64 signed bits";
        return std::nullopt;
      }
      return Term(static_cast<std::int64_t>(u));
    }
    case json::value_t::number_float:
      return Term(j.get<double>());
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (s.size() > kMaxAtomLength) {
        why = "the string \"" + s.substr(0, 20) + "...\" is longer than an atom may be (" +
              std::to_string(kMaxAtomLength) + " bytes); for text use {\"$bin\": \"...\"}";
        return std::nullopt;
      }
      return Term(Atom(s));
    }
    case json::value_t::array: {
      Tuple t;
      for (const auto& e : j) {
        auto v = to_term(e, why, depth + 1);
        if (!v) return std::nullopt;
        t.items.push_back(std::move(*v));
      }
      return Term(std::move(t));
    }
    case json::value_t::object: {
      if (j.size() == 1) {
        const std::string& k = j.begin().key();
        const json& v = j.begin().value();
        if (k == "$bin") {
          if (!v.is_string()) {
            why = "\"$bin\" takes a string";
            return std::nullopt;
          }
          return Term(v.get<std::string>());
        }
        if (k == "$list") {
          if (!v.is_array()) {
            why = "\"$list\" takes an array";
            return std::nullopt;
          }
          List l;
          for (const auto& e : v) {
            auto t = to_term(e, why, depth + 1);
            if (!t) return std::nullopt;
            l.push_back(std::move(*t));
          }
          return Term(std::move(l));
        }
        if (k == "$map") {
          if (!v.is_array()) {
            why = "\"$map\" takes an array of [key, value] pairs";
            return std::nullopt;
          }
          Map m;
          for (const auto& e : v) {
            if (!e.is_array() || e.size() != 2) {
              why = "\"$map\" takes an array of [key, value] pairs";
              return std::nullopt;
            }
            auto key = to_term(e[0], why, depth + 1);
            auto val = key ? to_term(e[1], why, depth + 1) : std::nullopt;
            if (!val) return std::nullopt;
            m.entries.emplace_back(std::move(*key), std::move(*val));
          }
          return Term(std::move(m));
        }
        if (k == "$pid" || k == "$ref") {
          why = std::string("a ") + k + " cannot be written by hand; call the process by name";
          return std::nullopt;
        }
      }
      Map m;
      for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& k = it.key();
        const json& v = it.value();
        if (k.size() > kMaxAtomLength) {
          why = "the key \"" + k.substr(0, 20) + "...\" is longer than an atom may be";
          return std::nullopt;
        }
        auto t = to_term(v, why, depth + 1);
        if (!t) return std::nullopt;
        m.entries.emplace_back(Term(Atom(k)), std::move(*t));
      }
      return Term(std::move(m));
    }
    default:
      why = "a JSON value of an unsupported type";
      return std::nullopt;
  }
}

}  // namespace

std::optional<Term> json_to_term(const json& j, std::string& why) { return to_term(j, why, 0); }

namespace {

// Numbers and atoms, the same in both mappings: true, false and undefined as JSON's own.
json scalar_to_json(const Term& t) {
  if (t.is_int()) return t.as_int();
  if (t.is_float()) return t.as_float();
  if (t.is_atom("true")) return true;
  if (t.is_atom("false")) return false;
  if (t.is_atom("undefined")) return nullptr;
  return std::string(t.as_atom().name());
}

}  // namespace

json term_to_json(const Term& t) {
  switch (t.kind()) {
    case Term::Kind::kInt:
    case Term::Kind::kFloat:
    case Term::Kind::kAtom:
      return scalar_to_json(t);
    case Term::Kind::kBinary:
      return json{{"$bin", t.as_bin()}};
    case Term::Kind::kPid:
      return json{{"$pid", t.to_string()}};
    case Term::Kind::kRef:
      return json{{"$ref", t.to_string()}};
    case Term::Kind::kTuple: {
      json a = json::array();
      for (const Term& e : t.as_tuple()) a.push_back(term_to_json(e));
      return a;
    }
    case Term::Kind::kList: {
      json a = json::array();
      for (const Term& e : t.as_list()) a.push_back(term_to_json(e));
      return json{{"$list", a}};
    }
    case Term::Kind::kMap: {
      bool atom_keys = true;
      for (const auto& [k, v] : t.as_map()) atom_keys = atom_keys && k.is_atom();
      if (atom_keys) {
        json o = json::object();
        for (const auto& [k, v] : t.as_map()) o[std::string(k.as_atom().name())] = term_to_json(v);
        return o;
      }
      json a = json::array();
      for (const auto& [k, v] : t.as_map())
        a.push_back(json::array({term_to_json(k), term_to_json(v)}));
      return json{{"$map", a}};
    }
  }
  return nullptr;
}

json term_to_plain_json(const Term& t) {
  switch (t.kind()) {
    case Term::Kind::kInt:
    case Term::Kind::kFloat:
    case Term::Kind::kAtom:
      return scalar_to_json(t);
    case Term::Kind::kBinary:
      return t.as_bin();
    case Term::Kind::kPid:
    case Term::Kind::kRef:
      return t.to_string();
    case Term::Kind::kTuple: {
      json a = json::array();
      for (const Term& e : t.as_tuple()) a.push_back(term_to_plain_json(e));
      return a;
    }
    case Term::Kind::kList: {
      json a = json::array();
      for (const Term& e : t.as_list()) a.push_back(term_to_plain_json(e));
      return a;
    }
    case Term::Kind::kMap: {
      json o = json::object();
      for (const auto& [k, v] : t.as_map()) o[key_text(k)] = term_to_plain_json(v);
      return o;
    }
  }
  return nullptr;
}

}  // namespace nodus::tools
