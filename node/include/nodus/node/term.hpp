// Term: the dynamic value of nodus messages, the C++ form of an Erlang term.
//
// A Term is one of: atom (an interned symbol), integer (int64), float (double), binary (bytes,
// usually text), list, tuple, map, pid or ref. Terms are plain values: copyable, movable,
// ordered (Erlang's term order: number < atom < ref < pid < tuple < map < list < binary) and
// hashable, so they can be map keys. operator== is exact, like Erlang's =:= (1 != 1.0).
// Floats compare by IEEE totalOrder so that the order stays total (Erlang has no NaN; a decoded
// float may be one): -0.0 != 0.0 and a NaN equals itself. Numbers of equal value order the
// integer first (1 < 1.0 < 2), which keeps the order consistent with ==.
//
// Literals: a `const char*` converts to an ATOM, because atoms are what messages are made of
// (`call(pid, "pop")`, `req == "pop"`); use bin("text") or std::string for a binary.
//
// Matching a shape without a page of ifs:
//     if (auto m = req.match({"push", _})) stack_.push_back(m[0]);   // {push, Item}
//     if (auto m = req.match({"add", _int, _int})) return m[0].as_int() + m[1].as_int();
// `_` matches anything; `_int`, `_float`, `_atom`, `_bin`, `_pid`, `_ref`, `_list`, `_tuple`,
// `_map` match one kind; every hole is captured, in order. Nested braces are nested tuples.
//
// Thread-safety: a Term is a value; distinct Terms may be used from distinct threads. The atom
// table behind Atom is global and thread-safe.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace nodus {

// -- atoms ----------------------------------------------------------------------

/// The longest atom name, in bytes (as in Erlang, so every atom fits the wire format).
inline constexpr std::size_t kMaxAtomLength = 255;

/// An interned symbol. Two atoms are equal iff their names are equal. Cheap to copy and compare.
/// Interning is thread-safe; the table only grows (like the BEAM's) up to its limit (see
/// atom_table_stats), so don't make atoms from unbounded untrusted input.
class Atom {
 public:
  /// The atom `undefined`.
  constexpr Atom() = default;
  /// Interns `name`. Throws std::length_error (Erlang's system_limit) when name is longer than
  /// kMaxAtomLength, so that an atom always fits the wire format, or when it is new and the
  /// table holds atom_limit atoms already (counted in AtomTableStats::refused).
  explicit Atom(std::string_view name);
  /// The name; valid for the life of the OS process.
  std::string_view name() const;
  std::uint32_t id() const { return id_; }
  static Atom from_id(std::uint32_t id);  // REQUIRES: id came from an Atom of this process.
  /// The atom named `name` if one was interned already, else nullopt; never interns (Erlang's
  /// binary_to_existing_atom). For names that arrive from the network: atoms are never freed,
  /// so interning every name a peer sends would grow the table without bound.
  static std::optional<Atom> existing(std::string_view name);

  friend bool operator==(Atom a, Atom b) { return a.id_ == b.id_; }
  /// Orders by name (Erlang's atom order), not by interning order.
  friend std::strong_ordering operator<=>(Atom a, Atom b);

 private:
  std::uint32_t id_ = 0;  // 0 is `undefined`
};

/// Makes an atom: atom("ok").
inline Atom atom(std::string_view name) { return Atom(name); }

/// The atom table's limit unless set_atom_limit says otherwise: 1,048,576 atoms, Erlang's.
inline constexpr std::size_t kDefaultAtomLimit = std::size_t{1} << 20;

/// The atom table, as Erlang's: atoms are never freed, so the table has a limit, and making a
/// new atom beyond it fails (Atom's constructor throws) and is counted; atoms already made are
/// not affected. Atoms named by other nodes (the atoms of a term a node sent, the node of a pid
/// or ref) may fill only 15/16 of the table: a message that would need one more is refused
/// (counted in `refused` and in NetworkStats::messages_rejected, logged, and a call answered
/// badarg), so what other nodes send can neither exhaust the table in silence nor take the
/// atoms this node's own code needs. An atom costs about 100 bytes beside its name.
struct AtomTableStats {
  std::size_t count = 0;       ///< atoms made so far
  std::size_t limit = 0;       ///< the most the table holds
  std::size_t wire_limit = 0;  ///< the most it holds once atoms named by other nodes are refused
  std::uint64_t refused = 0;   ///< new atoms refused since the process started
};
/// Thread-safe.
AtomTableStats atom_table_stats();
/// Sets the table's limit (Erlang's +t), for the whole OS process: raised for a program that
/// needs more atoms, lowered to bound memory (tests lower it to reach it). A limit below the
/// atoms made already is taken as that count. Thread-safe.
void set_atom_limit(std::size_t limit);

namespace detail {
/// The atom `name` names, for decoding what another node sent: as Atom(name), but nullopt
/// (counted in AtomTableStats::refused) when it is new and the table holds its wire_limit.
/// REQUIRES: name.size() <= kMaxAtomLength.
std::optional<Atom> atom_from_wire(std::string_view name);
}  // namespace detail

// -- pids and refs --------------------------------------------------------------

/// Names a process on some node: the node's name, the node's incarnation (a restarted node has
/// a new one, so old pids stop matching) and a number unique on that node incarnation.
/// A default Pid is "no process".
struct Pid {
  Atom node;
  std::uint32_t creation = 0;
  std::uint64_t id = 0;

  bool valid() const { return id != 0; }
  explicit operator bool() const { return valid(); }
  /// "<n1.42.0>": node, table slot, slot reuse count (the creation is not shown).
  std::string to_string() const;
  friend bool operator==(const Pid&, const Pid&) = default;
  friend std::strong_ordering operator<=>(const Pid& a, const Pid& b);
};

/// A unique reference (monitors, calls, timers), unique per node incarnation.
struct Ref {
  Atom node;
  std::uint32_t creation = 0;
  std::uint64_t id = 0;

  bool valid() const { return id != 0; }
  explicit operator bool() const { return valid(); }
  /// "#Ref<n1.42>".
  std::string to_string() const;
  friend bool operator==(const Ref&, const Ref&) = default;
  friend std::strong_ordering operator<=>(const Ref& a, const Ref& b);
};

// -- the term -------------------------------------------------------------------

class Term;
class Pattern;
class Match;

namespace detail {
template <class I>
concept Integer = std::is_integral_v<I> && !std::is_same_v<I, bool>;
template <class T>
concept TermLiteral = std::is_constructible_v<Term, T>;
}  // namespace detail

using List = std::vector<Term>;
using MapEntries = std::vector<std::pair<Term, Term>>;

/// A tuple's elements. Distinct from List so that {a, b} and [a, b] stay different terms.
struct Tuple {
  std::vector<Term> items;
};
/// A map, kept sorted by key with unique keys.
struct Map {
  MapEntries entries;
};

class Term {
 public:
  enum class Kind : std::uint8_t { kInt, kFloat, kAtom, kRef, kPid, kTuple, kMap, kList, kBinary };

  /// The atom `undefined`.
  Term() = default;
  Term(Atom a) : v_(a) {}                               // NOLINT: implicit on purpose
  Term(const char* atom_name) : v_(Atom(atom_name)) {}  // NOLINT: a literal is an atom
  Term(bool b) : v_(Atom(b ? "true" : "false")) {}      // NOLINT
  template <detail::Integer I>
  Term(I i) : v_(static_cast<std::int64_t>(i)) {}   // NOLINT
  Term(double d) : v_(d) {}                         // NOLINT
  Term(std::string s) : v_(std::move(s)) {}         // NOLINT: a binary
  Term(std::string_view s) : v_(std::string(s)) {}  // NOLINT: a binary
  Term(Pid p) : v_(p) {}                            // NOLINT
  Term(Ref r) : v_(r) {}                            // NOLINT
  Term(List l) : v_(std::move(l)) {}                // NOLINT
  Term(Tuple t) : v_(std::move(t)) {}               // NOLINT
  Term(Map m);                                      // NOLINT: sorts and dedups keys

  Kind kind() const;
  bool is_int() const { return std::holds_alternative<std::int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float(); }
  bool is_atom() const { return std::holds_alternative<Atom>(v_); }
  bool is_atom(std::string_view name) const;
  bool is_bin() const { return std::holds_alternative<std::string>(v_); }
  bool is_pid() const { return std::holds_alternative<Pid>(v_); }
  bool is_ref() const { return std::holds_alternative<Ref>(v_); }
  bool is_list() const { return std::holds_alternative<List>(v_); }
  bool is_tuple() const { return std::holds_alternative<Tuple>(v_); }
  bool is_map() const { return std::holds_alternative<Map>(v_); }

  // Accessors. REQUIRES: the term is of that kind (else std::bad_variant_access is thrown,
  // which in a handler ends the process with a reason naming it, as a badmatch would).
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  /// An int or a float, as a double.
  double as_number() const;
  Atom as_atom() const { return std::get<Atom>(v_); }
  const std::string& as_bin() const { return std::get<std::string>(v_); }
  Pid as_pid() const { return std::get<Pid>(v_); }
  Ref as_ref() const { return std::get<Ref>(v_); }
  const List& as_list() const { return std::get<List>(v_); }
  List& as_list() { return std::get<List>(v_); }
  const std::vector<Term>& as_tuple() const { return std::get<Tuple>(v_).items; }
  const MapEntries& as_map() const { return std::get<Map>(v_).entries; }

  /// Elements of a tuple or list; 0 for other kinds.
  std::size_t size() const;
  /// Element i of a tuple or list. REQUIRES: i < size() (else std::out_of_range is thrown).
  const Term& operator[](std::size_t i) const;
  /// The value under `key` in a map, or nullptr (also when this is not a map).
  const Term* find(const Term& key) const;

  /// Whether this term has the shape of `pattern`, with its holes: `if (auto m = t.match(p))`.
  Match match(const Pattern& pattern) const;

  /// Erlang-like text: ok, 42, 1.5, "text", [1,2], {ok,3}, #{a => 1}, <n1.4.1>.
  std::string to_string() const;
  std::size_t hash() const;

  friend bool operator==(const Term& a, const Term& b);
  friend std::strong_ordering operator<=>(const Term& a, const Term& b);

 private:
  std::variant<Atom, std::int64_t, double, std::string, Pid, Ref, List, Tuple, Map> v_;
};

/// {a, b, ...}
template <class... T>
Term tuple(T&&... items) {
  return Term(Tuple{std::vector<Term>{Term(std::forward<T>(items))...}});
}
/// [a, b, ...]
template <class... T>
Term list(T&&... items) {
  return Term(List{Term(std::forward<T>(items))...});
}
/// #{k => v, ...}
Term map(std::initializer_list<std::pair<Term, Term>> entries);
/// A binary (bytes): bin("hello").
inline Term bin(std::string_view bytes) { return Term(std::string(bytes)); }

// -- patterns -------------------------------------------------------------------

/// A hole in a pattern: matches any term of `kind` (or any term at all) and captures it.
struct Hole {
  std::optional<Term::Kind> kind;
};
inline const Hole _{};
inline const Hole _int{Term::Kind::kInt};
inline const Hole _float{Term::Kind::kFloat};
inline const Hole _atom{Term::Kind::kAtom};
inline const Hole _bin{Term::Kind::kBinary};
inline const Hole _pid{Term::Kind::kPid};
inline const Hole _ref{Term::Kind::kRef};
inline const Hole _list{Term::Kind::kList};
inline const Hole _tuple{Term::Kind::kTuple};
inline const Hole _map{Term::Kind::kMap};

/// A term shape: a literal term, a hole, or a tuple of patterns ({...} in source).
class Pattern {
 public:
  Pattern(Hole h) : v_(h) {}  // NOLINT
  template <detail::TermLiteral T>
  Pattern(T&& literal) : v_(Term(std::forward<T>(literal))) {}  // NOLINT
  Pattern(std::initializer_list<Pattern> tuple_items)           // NOLINT
      : v_(std::vector<Pattern>(tuple_items)) {}

 private:
  friend class Term;
  bool match_into(const Term& t, std::vector<const Term*>& holes) const;
  std::variant<Term, Hole, std::vector<Pattern>> v_;
};

/// The captured holes of a successful match, in pattern order. Refers into the matched term,
/// which must outlive it.
class Match {
 public:
  /// No match.
  Match() = default;
  /// True if the term had the pattern's shape.
  explicit operator bool() const { return matched_; }
  /// Hole i. REQUIRES: matched and i < size().
  const Term& operator[](std::size_t i) const { return *holes_.at(i); }
  std::size_t size() const { return holes_.size(); }

 private:
  friend class Term;
  bool matched_ = false;
  std::vector<const Term*> holes_;
};

// -- printing: the to_string() text, for streams (and fmt: nodus/node/format.hpp) ----------

std::ostream& operator<<(std::ostream& os, Atom a);
std::ostream& operator<<(std::ostream& os, const Pid& p);
std::ostream& operator<<(std::ostream& os, const Ref& r);
std::ostream& operator<<(std::ostream& os, const Term& t);

}  // namespace nodus

template <>
struct std::hash<nodus::Term> {
  std::size_t operator()(const nodus::Term& t) const { return t.hash(); }
};
template <>
struct std::hash<nodus::Pid> {
  std::size_t operator()(const nodus::Pid& p) const {
    return std::hash<std::uint64_t>()(p.id ^ (std::uint64_t{p.creation} << 32) ^ p.node.id());
  }
};
template <>
struct std::hash<nodus::Ref> {
  std::size_t operator()(const nodus::Ref& r) const {
    return std::hash<std::uint64_t>()(r.id ^ (std::uint64_t{r.creation} << 32) ^ r.node.id());
  }
};
