#include "nodus/node/term.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <variant>

#include "nodus/node/detail/mutex.hpp"

namespace nodus {
namespace {

// -- the atom table ---------------------------------------------------------------

// Ids index a segmented array of name pointers: segment s holds kFirstSegment << s entries,
// so the segments never move once allocated and 23 of them cover every uint32 id. A reader
// (Atom::name) takes no lock: two acquire loads, which pair with the release stores made by
// the interning thread. Names are never freed: an Atom's name lives as long as the process.
constexpr unsigned kFirstSegmentBits = 10;
constexpr std::uint64_t kFirstSegment = std::uint64_t{1} << kFirstSegmentBits;
constexpr std::size_t kSegments = 23;

using Slot = std::atomic<const std::string*>;

class AtomTable {
 public:
  AtomTable() {
    // Fixed ids: 0 is `undefined` (a default Atom), then the booleans.
    (void)intern("undefined", kDefaultAtomLimit);
    (void)intern("true", kDefaultAtomLimit);
    (void)intern("false", kDefaultAtomLimit);
  }

  // The id of `name`, made if new while the table holds fewer than `cap` atoms; nullopt (and
  // counted) if it would be one too many.
  std::optional<std::uint32_t> intern(std::string_view name, std::size_t cap) {
    {
      detail::ReaderLock lock(mu_);
      auto it = by_name_.find(name);
      if (it != by_name_.end()) return it->second;
    }
    detail::WriterLock lock(mu_);
    auto it = by_name_.find(name);
    if (it != by_name_.end()) return it->second;
    const std::uint32_t id = count_.load(std::memory_order_relaxed);
    if (id >= cap || id == std::numeric_limits<std::uint32_t>::max()) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    auto [seg, index] = locate(id);
    Slot* slots = segments_[seg].load(std::memory_order_relaxed);
    if (slots == nullptr) {
      slots = new Slot[kFirstSegment << seg]();  // never freed, like the names
      segments_[seg].store(slots, std::memory_order_release);
    }
    const std::string* stored = new std::string(name);
    slots[index].store(stored, std::memory_order_release);
    by_name_.emplace(*stored, id);
    count_.store(id + 1, std::memory_order_release);
    return id;
  }

  std::optional<std::uint32_t> find(std::string_view name) const {
    detail::ReaderLock lock(mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return std::nullopt;
    return it->second;
  }

  std::string_view name(std::uint32_t id) const {
    auto [seg, index] = locate(id);
    const Slot* slots = segments_[seg].load(std::memory_order_acquire);
    const std::string* s = slots ? slots[index].load(std::memory_order_acquire) : nullptr;
    if (s == nullptr) {
      std::fprintf(stderr, "nodus: atom id %u was never interned\n", static_cast<unsigned>(id));
      std::abort();
    }
    return *s;
  }

  bool valid(std::uint32_t id) const { return id < count_.load(std::memory_order_acquire); }

  std::size_t count() const { return count_.load(std::memory_order_acquire); }
  std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  // Atoms named by other nodes stop at 15/16 of the limit: the rest is local code's.
  std::size_t wire_limit() const { return limit() - limit() / 16; }
  void set_limit(std::size_t limit) {
    limit_.store(std::max(limit, count()), std::memory_order_relaxed);
  }
  std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  static std::pair<std::size_t, std::size_t> locate(std::uint32_t id) {
    const std::uint64_t v = std::uint64_t{id} + kFirstSegment;
    const std::size_t seg = static_cast<std::size_t>(std::bit_width(v)) - 1 - kFirstSegmentBits;
    return {seg, static_cast<std::size_t>(v - (kFirstSegment << seg))};
  }

  std::array<std::atomic<Slot*>, kSegments> segments_{};
  std::atomic<std::uint32_t> count_{0};
  std::atomic<std::size_t> limit_{kDefaultAtomLimit};
  std::atomic<std::uint64_t> refused_{0};
  // Serialises interning (by_name_, new segments, count_); lookups by name share it.
  // Lookups by id never take it.
  mutable detail::SharedMutex mu_;
  // Views of the stored names.
  std::unordered_map<std::string_view, std::uint32_t> by_name_ NODUS_GUARDED_BY(mu_);
};

AtomTable& atom_table() {
  // Never destroyed: atoms stay usable during static destruction, and the names stay reachable.
  static AtomTable* table = new AtomTable();
  return *table;
}

// -- helpers for printing -----------------------------------------------------------

void append_escaped(std::string& out, std::string_view bytes, char quote) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c == quote) {
          out += '\\';
          out += c;
        } else if (u < 0x20 || u >= 0x7f) {
          out += "\\x";
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
}

bool is_reserved_word(std::string_view s) {
  static constexpr std::string_view kReserved[] = {
      "after", "and",   "andalso", "band",   "begin",   "bnot", "bor", "bsl",  "bsr", "bxor",
      "case",  "catch", "cond",    "div",    "else",    "end",  "fun", "if",   "let", "maybe",
      "not",   "of",    "or",      "orelse", "receive", "rem",  "try", "when", "xor"};
  return std::find(std::begin(kReserved), std::end(kReserved), s) != std::end(kReserved);
}

// A plain lowercase identifier prints bare in Erlang; anything else is single-quoted.
bool atom_needs_quotes(std::string_view s) {
  if (s.empty() || s[0] < 'a' || s[0] > 'z') return true;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '@';
    if (!ok) return true;
  }
  return is_reserved_word(s);
}

void append_atom(std::string& out, Atom a) {
  const std::string_view name = a.name();
  if (!atom_needs_quotes(name)) {
    out += name;
    return;
  }
  out += '\'';
  append_escaped(out, name, '\'');
  out += '\'';
}

// The shortest text that reads back as the same double, Erlang-style: always a dot (1.0,
// 1.5e-7, 1.0e20).
void append_float(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "nan";
    return;
  }
  if (std::isinf(d)) {
    out += d < 0 ? "-inf" : "inf";
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  (void)ec;  // 64 bytes always suffice for a double
  std::string_view text(buf, static_cast<std::size_t>(end - buf));
  const std::size_t e = text.find('e');
  std::string_view mantissa = text.substr(0, e);
  out += mantissa;
  if (mantissa.find('.') == std::string_view::npos) out += ".0";
  if (e == std::string_view::npos) return;
  std::string_view exponent = text.substr(e + 1);
  out += 'e';
  if (!exponent.empty() && exponent[0] == '-') {
    out += '-';
    exponent.remove_prefix(1);
  } else if (!exponent.empty() && exponent[0] == '+') {
    exponent.remove_prefix(1);
  }
  while (exponent.size() > 1 && exponent[0] == '0') exponent.remove_prefix(1);
  out += exponent;
}

// -- helpers for ordering -----------------------------------------------------------

// Erlang's term order: number < atom < ref < pid < tuple < map < list < binary.
int rank(Term::Kind k) {
  switch (k) {
    case Term::Kind::kInt:
    case Term::Kind::kFloat:
      return 0;
    case Term::Kind::kAtom:
      return 1;
    case Term::Kind::kRef:
      return 2;
    case Term::Kind::kPid:
      return 3;
    case Term::Kind::kTuple:
      return 4;
    case Term::Kind::kMap:
      return 5;
    case Term::Kind::kList:
      return 6;
    case Term::Kind::kBinary:
      return 7;
  }
  return 8;
}

// IEEE totalOrder as a signed integer: -NaN < -inf < ... < -0.0 < 0.0 < ... < inf < NaN.
std::int64_t total_order_key(double d) {
  const auto bits = std::bit_cast<std::int64_t>(d);
  return bits < 0 ? bits ^ std::numeric_limits<std::int64_t>::max() : bits;
}

// Compares an integer with a float exactly (no rounding of large integers); at equal value the
// integer comes first.
std::strong_ordering compare_int_float(std::int64_t i, double d) {
  if (std::isnan(d)) {
    return std::signbit(d) ? std::strong_ordering::greater : std::strong_ordering::less;
  }
  constexpr double kTwo63 = 9223372036854775808.0;  // 2^63
  if (d >= kTwo63) return std::strong_ordering::less;
  if (d < -kTwo63) return std::strong_ordering::greater;
  const double whole = std::trunc(d);  // in [-2^63, 2^63): exact as an int64
  const auto w = static_cast<std::int64_t>(whole);
  if (i != w) return i <=> w;
  const double fraction = d - whole;
  if (fraction < 0) return std::strong_ordering::greater;
  return std::strong_ordering::less;  // fraction > 0, or equal value: int first
}

std::size_t mix(std::size_t seed, std::size_t h) {
  return seed ^ (h + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2));
}

}  // namespace

// -- Atom -------------------------------------------------------------------------

Atom::Atom(std::string_view name) {
  if (name.size() > kMaxAtomLength) {
    throw std::length_error("atom name longer than 255 bytes");
  }
  AtomTable& table = atom_table();
  const std::optional<std::uint32_t> id = table.intern(name, table.limit());
  if (!id) {
    throw std::length_error("the atom table is full: " + std::to_string(table.count()) +
                            " atoms, its limit (nodus::set_atom_limit)");
  }
  id_ = *id;
}

AtomTableStats atom_table_stats() {
  const AtomTable& table = atom_table();
  return AtomTableStats{table.count(), table.limit(), table.wire_limit(), table.refused()};
}

void set_atom_limit(std::size_t limit) { atom_table().set_limit(limit); }

namespace detail {
std::optional<Atom> atom_from_wire(std::string_view name) {
  AtomTable& table = atom_table();
  const std::optional<std::uint32_t> id = table.intern(name, table.wire_limit());
  if (!id) return std::nullopt;
  return Atom::from_id(*id);
}
}  // namespace detail

std::string_view Atom::name() const { return atom_table().name(id_); }

std::optional<Atom> Atom::existing(std::string_view name) {
  if (name.size() > kMaxAtomLength) return std::nullopt;
  const std::optional<std::uint32_t> id = atom_table().find(name);
  if (!id) return std::nullopt;
  Atom a;
  a.id_ = *id;
  return a;
}

Atom Atom::from_id(std::uint32_t id) {
  if (!atom_table().valid(id)) {
    std::fprintf(stderr, "nodus: Atom::from_id(%u): no such atom\n", static_cast<unsigned>(id));
    std::abort();
  }
  Atom a;
  a.id_ = id;
  return a;
}

std::strong_ordering operator<=>(Atom a, Atom b) {
  if (a.id_ == b.id_) return std::strong_ordering::equal;
  const int c = a.name().compare(b.name());  // bytewise, as unsigned char
  return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
}

// -- Pid and Ref --------------------------------------------------------------------

std::ostream& operator<<(std::ostream& os, Atom a) { return os << a.name(); }
std::ostream& operator<<(std::ostream& os, const Pid& p) { return os << p.to_string(); }
std::ostream& operator<<(std::ostream& os, const Ref& r) { return os << r.to_string(); }
std::ostream& operator<<(std::ostream& os, const Term& t) { return os << t.to_string(); }

std::string Pid::to_string() const {
  // <node.index.serial>: the process table slot and its reuse count (the creation is left
  // out, as Erlang leaves it out: a pid read back is taken to be of the node's current one).
  std::string out = "<";
  out += node.name();
  out += '.';
  out += std::to_string(id & 0xffffffffu);
  out += '.';
  out += std::to_string(id >> 32);
  out += '>';
  return out;
}

std::strong_ordering operator<=>(const Pid& a, const Pid& b) {
  if (auto c = a.node <=> b.node; c != 0) return c;
  if (auto c = a.creation <=> b.creation; c != 0) return c;
  return a.id <=> b.id;
}

std::string Ref::to_string() const {
  std::string out = "#Ref<";
  out += node.name();
  out += '.';
  out += std::to_string(id);
  out += '>';
  return out;
}

std::strong_ordering operator<=>(const Ref& a, const Ref& b) {
  if (auto c = a.node <=> b.node; c != 0) return c;
  if (auto c = a.creation <=> b.creation; c != 0) return c;
  return a.id <=> b.id;
}

// -- Term ---------------------------------------------------------------------------

Term::Term(Map m) {
  MapEntries& e = m.entries;
  std::stable_sort(e.begin(), e.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  // Of equal keys, the last one given wins (as in maps:from_list/1); the sort kept their order.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (i + 1 < e.size() && e[i].first == e[i + 1].first) continue;
    if (kept != i) e[kept] = std::move(e[i]);
    ++kept;
  }
  e.erase(e.begin() + static_cast<std::ptrdiff_t>(kept), e.end());
  v_ = std::move(m);
}

Term::Kind Term::kind() const {
  // Follows the order of the variant's alternatives.
  static constexpr Kind kKinds[] = {Kind::kAtom,   Kind::kInt,   Kind::kFloat,
                                    Kind::kBinary, Kind::kPid,   Kind::kRef,
                                    Kind::kList,   Kind::kTuple, Kind::kMap};
  return kKinds[v_.index()];
}

bool Term::is_atom(std::string_view name) const {
  // Compares names so that asking never interns a new atom.
  return is_atom() && as_atom().name() == name;
}

double Term::as_number() const {
  if (is_int()) return static_cast<double>(as_int());
  return as_float();
}

std::size_t Term::size() const {
  if (const auto* t = std::get_if<Tuple>(&v_)) return t->items.size();
  if (const auto* l = std::get_if<List>(&v_)) return l->size();
  return 0;
}

const Term& Term::operator[](std::size_t i) const {
  if (const auto* t = std::get_if<Tuple>(&v_)) {
    if (i < t->items.size()) return t->items[i];
  } else if (const auto* l = std::get_if<List>(&v_)) {
    if (i < l->size()) return (*l)[i];
  }
  throw std::out_of_range("Term::operator[]: index " + std::to_string(i) + " out of range for " +
                          to_string());
}

const Term* Term::find(const Term& key) const {
  const auto* m = std::get_if<Map>(&v_);
  if (m == nullptr) return nullptr;
  auto it = std::lower_bound(m->entries.begin(), m->entries.end(), key,
                             [](const auto& entry, const Term& k) { return entry.first < k; });
  if (it == m->entries.end() || it->first != key) return nullptr;
  return &it->second;
}

Match Term::match(const Pattern& pattern) const {
  Match m;
  m.matched_ = pattern.match_into(*this, m.holes_);
  if (!m.matched_) m.holes_.clear();
  return m;
}

std::string Term::to_string() const {
  std::string out;
  struct Printer {
    std::string& out;
    void operator()(Atom a) const { append_atom(out, a); }
    void operator()(std::int64_t i) const { out += std::to_string(i); }
    void operator()(double d) const { append_float(out, d); }
    void operator()(const std::string& s) const {
      out += '"';
      append_escaped(out, s, '"');
      out += '"';
    }
    void operator()(const Pid& p) const { out += p.to_string(); }
    void operator()(const Ref& r) const { out += r.to_string(); }
    void operator()(const List& l) const { items('[', l, ']'); }
    void operator()(const Tuple& t) const { items('{', t.items, '}'); }
    void operator()(const Map& m) const {
      out += "#{";
      for (std::size_t i = 0; i < m.entries.size(); ++i) {
        if (i > 0) out += ',';
        out += m.entries[i].first.to_string();
        out += " => ";
        out += m.entries[i].second.to_string();
      }
      out += '}';
    }
    void items(char open, const std::vector<Term>& v, char close) const {
      out += open;
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i > 0) out += ',';
        out += v[i].to_string();
      }
      out += close;
    }
  };
  std::visit(Printer{out}, v_);
  return out;
}

std::size_t Term::hash() const {
  struct Hasher {
    std::size_t operator()(Atom a) const { return std::hash<std::uint32_t>()(a.id()); }
    std::size_t operator()(std::int64_t i) const { return std::hash<std::int64_t>()(i); }
    std::size_t operator()(double d) const {
      return std::hash<std::uint64_t>()(std::bit_cast<std::uint64_t>(d));  // == is bitwise
    }
    std::size_t operator()(const std::string& s) const { return std::hash<std::string>()(s); }
    std::size_t operator()(const Pid& p) const { return std::hash<Pid>()(p); }
    std::size_t operator()(const Ref& r) const { return std::hash<Ref>()(r); }
    std::size_t operator()(const List& l) const { return items(l); }
    std::size_t operator()(const Tuple& t) const { return items(t.items); }
    std::size_t operator()(const Map& m) const {
      std::size_t h = m.entries.size();
      for (const auto& [k, v] : m.entries) h = mix(mix(h, k.hash()), v.hash());
      return h;
    }
    std::size_t items(const std::vector<Term>& v) const {
      std::size_t h = v.size();
      for (const Term& t : v) h = mix(h, t.hash());
      return h;
    }
  };
  return mix(v_.index(), std::visit(Hasher{}, v_));
}

bool operator==(const Term& a, const Term& b) {
  if (a.v_.index() != b.v_.index()) return false;
  return std::visit(
      [&b](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b.v_);
        if constexpr (std::is_same_v<T, double>) {
          return std::bit_cast<std::uint64_t>(x) == std::bit_cast<std::uint64_t>(y);
        } else if constexpr (std::is_same_v<T, Tuple>) {
          return x.items == y.items;
        } else if constexpr (std::is_same_v<T, Map>) {
          return x.entries == y.entries;
        } else {
          return x == y;
        }
      },
      a.v_);
}

std::strong_ordering operator<=>(const Term& a, const Term& b) {
  const Term::Kind ka = a.kind();
  const Term::Kind kb = b.kind();
  if (ka != kb) {
    if (ka == Term::Kind::kInt && kb == Term::Kind::kFloat) {
      return compare_int_float(a.as_int(), b.as_float());
    }
    if (ka == Term::Kind::kFloat && kb == Term::Kind::kInt) {
      return 0 <=> compare_int_float(b.as_int(), a.as_float());
    }
    return rank(ka) <=> rank(kb);
  }
  return std::visit(
      [&b](const auto& x) -> std::strong_ordering {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b.v_);
        if constexpr (std::is_same_v<T, double>) {
          return total_order_key(x) <=> total_order_key(y);
        } else if constexpr (std::is_same_v<T, std::string>) {
          const int c = x.compare(y);  // bytewise, as unsigned char
          return c < 0   ? std::strong_ordering::less
                 : c > 0 ? std::strong_ordering::greater
                         : std::strong_ordering::equal;
        } else if constexpr (std::is_same_v<T, List>) {
          return std::lexicographical_compare_three_way(x.begin(), x.end(), y.begin(), y.end());
        } else if constexpr (std::is_same_v<T, Tuple>) {
          if (auto c = x.items.size() <=> y.items.size(); c != 0) return c;
          return std::lexicographical_compare_three_way(x.items.begin(), x.items.end(),
                                                        y.items.begin(), y.items.end());
        } else if constexpr (std::is_same_v<T, Map>) {
          // Erlang: by size, then the keys in order, then the values in key order.
          const MapEntries& xe = x.entries;
          const MapEntries& ye = y.entries;
          if (auto c = xe.size() <=> ye.size(); c != 0) return c;
          for (std::size_t i = 0; i < xe.size(); ++i) {
            if (auto c = xe[i].first <=> ye[i].first; c != 0) return c;
          }
          for (std::size_t i = 0; i < xe.size(); ++i) {
            if (auto c = xe[i].second <=> ye[i].second; c != 0) return c;
          }
          return std::strong_ordering::equal;
        } else {
          return x <=> y;
        }
      },
      a.v_);
}

Term map(std::initializer_list<std::pair<Term, Term>> entries) {
  return Term(Map{MapEntries(entries)});
}

// -- Pattern ------------------------------------------------------------------------

bool Pattern::match_into(const Term& t, std::vector<const Term*>& holes) const {
  if (const Hole* h = std::get_if<Hole>(&v_)) {
    if (h->kind && t.kind() != *h->kind) return false;
    holes.push_back(&t);
    return true;
  }
  if (const Term* literal = std::get_if<Term>(&v_)) return *literal == t;
  const auto& items = std::get<std::vector<Pattern>>(v_);
  if (!t.is_tuple() || t.size() != items.size()) return false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!items[i].match_into(t[i], holes)) return false;
  }
  return true;
}

}  // namespace nodus
