#include "json_term.hpp"

#include <charconv>
#include <cstdint>

namespace nodus::tools {

using nlohmann::json;

namespace {

constexpr int kMaxDepth = 64;

Status bad(std::string why) { return Status(ErrorCode::kBadArg, std::move(why)); }

Result<Term> to_term(const json& j, int depth);

// The elements of a JSON array as terms, in order.
Status items(const json& array, int depth, std::vector<Term>& out) {
  for (const auto& e : array) {
    auto t = to_term(e, depth + 1);
    if (!t.ok()) return t.error();
    out.push_back(std::move(t.value()));
  }
  return Status::Ok();
}

Result<Term> atom(const std::string& s, const char* what) {
  if (s.size() > kMaxAtomLength) {
    return bad(std::string("the ") + what + " \"" + s.substr(0, 20) +
               "...\" is longer than an atom may be (" + std::to_string(kMaxAtomLength) +
               " bytes); for text use {\"$bin\": \"...\"}");
  }
  return Term(Atom(s));
}

// {"$bin": ...}, {"$list": ...}, {"$map": ...}, and the output-only $pid and $ref.
Result<Term> tagged(const std::string& tag, const json& v, int depth) {
  if (tag == "$bin") {
    if (!v.is_string()) return bad("\"$bin\" takes a string");
    return Term(v.get<std::string>());
  }
  if (tag == "$list") {
    if (!v.is_array()) return bad("\"$list\" takes an array");
    List l;
    if (Status s = items(v, depth, l); !s.ok()) return s;
    return Term(std::move(l));
  }
  if (tag == "$map") {
    Map m;
    if (!v.is_array()) return bad("\"$map\" takes an array of [key, value] pairs");
    for (const auto& e : v) {
      if (!e.is_array() || e.size() != 2)
        return bad("\"$map\" takes an array of [key, value] pairs");
      std::vector<Term> kv;
      if (Status s = items(e, depth, kv); !s.ok()) return s;
      m.entries.emplace_back(std::move(kv[0]), std::move(kv[1]));
    }
    return Term(std::move(m));
  }
  return bad("a " + tag + " cannot be written by hand; call the process by name");  // $pid, $ref
}

Result<Term> to_term(const json& j, int depth) {
  if (depth > kMaxDepth) {
    return bad("the request is nested more than " + std::to_string(kMaxDepth) + " levels deep");
  }
  switch (j.type()) {
    case json::value_t::null:
      return Term();
    case json::value_t::boolean:
      return Term(j.get<bool>());
    case json::value_t::number_integer:
      return Term(j.get<std::int64_t>());
    case json::value_t::number_unsigned: {
      const auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) {
        return bad("the integer " + std::to_string(u) + " does not fit in 64 signed bits");
      }
      return Term(static_cast<std::int64_t>(u));
    }
    case json::value_t::number_float:
      return Term(j.get<double>());
    case json::value_t::string:
      return atom(j.get_ref<const std::string&>(), "string");
    case json::value_t::array: {
      Tuple t;
      if (Status s = items(j, depth, t.items); !s.ok()) return s;
      return Term(std::move(t));
    }
    case json::value_t::object: {
      if (j.size() == 1 && !j.begin().key().empty() && j.begin().key()[0] == '$') {
        const std::string& k = j.begin().key();
        if (k == "$bin" || k == "$list" || k == "$map" || k == "$pid" || k == "$ref") {
          return tagged(k, j.begin().value(), depth);
        }
      }
      Map m;
      for (auto it = j.begin(); it != j.end(); ++it) {
        auto key = atom(it.key(), "key");
        if (!key.ok()) return key;
        auto value = to_term(it.value(), depth + 1);
        if (!value.ok()) return value;
        m.entries.emplace_back(std::move(key.value()), std::move(value.value()));
      }
      return Term(std::move(m));
    }
    default:
      return bad("a JSON value of an unsupported type");
  }
}

// The first integer literal of JSON `text` (outside strings) that does not fit in 64 signed
// bits, or "" if none. A number is an integer literal when it has no fraction and no exponent.
std::string oversized_integer(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"') {  // skip the string, escapes included
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\') ++i;
      }
      ++i;
      continue;
    }
    if (c != '-' && (c < '0' || c > '9')) {
      ++i;
      continue;
    }
    std::size_t end = i + 1;
    bool integral = true;
    while (end < text.size()) {
      const char d = text[end];
      if (d == '.' || d == 'e' || d == 'E' || d == '+') {
        integral = false;
      } else if (d != '-' && (d < '0' || d > '9')) {
        break;
      }
      ++end;
    }
    const std::string_view literal = text.substr(i, end - i);
    if (integral) {
      std::int64_t v;
      auto [p, ec] = std::from_chars(literal.data(), literal.data() + literal.size(), v);
      if (ec == std::errc::result_out_of_range) return std::string(literal);
    }
    i = end;
  }
  return "";
}

std::string key_text(const Term& k) {
  if (k.is_atom()) return std::string(k.as_atom().name());
  if (k.is_bin()) return k.as_bin();
  return k.to_string();
}

}  // namespace

Result<Term> json_to_term(const json& j) { return to_term(j, 0); }

Result<Term> json_text_to_term(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return bad("not JSON: " + std::string(text.substr(0, 80)) +
               " (an atom is a JSON string, e.g. '\"increment\"'; a tuple an array, e.g. "
               "'[\"push\", 1]')");
  }
  if (std::string big = oversized_integer(text); !big.empty()) {
    return bad("the integer " + big.substr(0, 40) +
               " does not fit in 64 signed bits (a term's integers are -2^63 to 2^63-1)");
  }
  return json_to_term(j);
}

json term_to_json(const Term& t, JsonStyle style) {
  const bool exact = style == JsonStyle::kExact;
  switch (t.kind()) {
    case Term::Kind::kInt:
      return t.as_int();
    case Term::Kind::kFloat:
      return t.as_float();
    case Term::Kind::kAtom:
      if (t.is_atom("true")) return true;
      if (t.is_atom("false")) return false;
      if (t.is_atom("undefined")) return nullptr;
      return std::string(t.as_atom().name());
    case Term::Kind::kBinary:
      return exact ? json{{"$bin", t.as_bin()}} : json(t.as_bin());
    case Term::Kind::kPid:
      return exact ? json{{"$pid", t.to_string()}} : json(t.to_string());
    case Term::Kind::kRef:
      return exact ? json{{"$ref", t.to_string()}} : json(t.to_string());
    case Term::Kind::kTuple:
    case Term::Kind::kList: {
      json a = json::array();
      const std::vector<Term>& elements = t.is_tuple() ? t.as_tuple() : t.as_list();
      for (const Term& e : elements) a.push_back(term_to_json(e, style));
      return exact && !t.is_tuple() ? json{{"$list", a}} : a;
    }
    case Term::Kind::kMap: {
      bool atom_keys = true;
      for (const auto& [k, v] : t.as_map()) atom_keys = atom_keys && k.is_atom();
      if (atom_keys || !exact) {
        json o = json::object();
        for (const auto& [k, v] : t.as_map()) o[key_text(k)] = term_to_json(v, style);
        return o;
      }
      json a = json::array();
      for (const auto& [k, v] : t.as_map()) {
        a.push_back(json::array({term_to_json(k, style), term_to_json(v, style)}));
      }
      return json{{"$map", a}};
    }
  }
  return nullptr;
}

}  // namespace nodus::tools
