// The MessagePack codec of Term.
//
// Encoding, one MessagePack object per term:
//   integer            -> int (the smallest int/uint format that holds it)
//   float              -> float 64
//   atom true / false  -> bool
//   atom undefined     -> nil   (and nil decodes to undefined)
//   any other atom     -> str   (UTF-8 or not, at most 255 bytes)
//   binary             -> bin
//   tuple              -> array of the elements
//   map                -> map, keys in term order
//   list               -> ext type 1, payload: the MessagePack array of the elements
//   pid                -> ext type 2, payload: see below
//   ref                -> ext type 3, payload: see below
//
// Pid and ref ext payload (big-endian, no padding, 13 + N bytes in all; transport's
// append_wire_id / parse_wire_id in nodus/transport/frame.hpp read and write it):
//   offset 0      uint8   N, the length of the node name (0..255)
//   offset 1      N bytes the node name (an atom's name)
//   offset 1+N    uint32  creation
//   offset 5+N    uint64  id
// A payload whose size is not exactly 13 + N is malformed.
//
// Decoding checks, each failing with kProtocol and a message saying which: truncated input,
// bytes after the term, a 0xc1 byte, integers above INT64_MAX, the DecodeLimits (elements per
// array and map, bytes per str, bin and ext payload, nesting depth counting the arrays inside
// list payloads), atom names over 255 bytes, unknown ext types, malformed pid/ref payloads and
// list payloads that are not exactly one array.
//
// msgpack-c's parser is iterative and bounded by the limits passed to it; the conversion to
// Term below recurses once per nesting level, bounded by max_depth. Strings, binaries and ext
// payloads are referenced in the input rather than copied into msgpack's zone (the input
// outlives the decode), so their limits are checked here instead of by msgpack-c.
#include "nodus/node/codec.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <new>
#include <optional>
#include <string>

#include <msgpack.hpp>

#include "nodus/node/message.hpp"
#include "nodus/node/wire.hpp"
#include "nodus/transport/bounded_unpack.hpp"
#include "nodus/transport/frame.hpp"
#include "nodus/transport/scratch_zone.hpp"

namespace nodus {
namespace {

constexpr std::int8_t kExtList = 1;
constexpr std::int8_t kExtPid = 2;
constexpr std::int8_t kExtRef = 3;
constexpr std::size_t kIdPayloadFixed = 1 + 4 + 8;  // length byte, creation, id

using Packer = msgpack::packer<detail::StringSink>;

// -- encoding -----------------------------------------------------------------------

// Always a float 64. (msgpack-c 4.x's pack_double writes a whole-valued double as an int, which
// would decode as a different term: 1.0 as 1.)
void encode_float64(double d, std::string& out) {
  const auto bits = std::bit_cast<std::uint64_t>(d);
  char buf[9];
  buf[0] = static_cast<char>(0xcb);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
  out.append(buf, sizeof(buf));
}

// The payload layout lives in transport (append_wire_id); the packer writes straight into
// `out`, so the payload can be appended there after the ext header.
template <class Id>
void encode_id(Packer& pk, std::string& out, std::int8_t type, const Id& p) {
  const std::string_view node = p.node.name();  // at most kMaxAtomLength bytes
  pk.pack_ext(kIdPayloadFixed + node.size(), type);
  transport::append_wire_id(transport::WireId{std::string(node), p.creation, p.id}, out);
}

void encode(const Term& t, std::string& out, Packer& pk) {
  static const Atom kTrue("true");
  static const Atom kFalse("false");
  switch (t.kind()) {
    case Term::Kind::kInt:
      pk.pack_int64(t.as_int());
      return;
    case Term::Kind::kFloat:
      encode_float64(t.as_float(), out);
      return;
    case Term::Kind::kAtom: {
      const Atom a = t.as_atom();
      if (a == Atom()) {
        pk.pack_nil();
      } else if (a == kTrue) {
        pk.pack_true();
      } else if (a == kFalse) {
        pk.pack_false();
      } else {
        const std::string_view name = a.name();
        pk.pack_str(static_cast<std::uint32_t>(name.size()));
        pk.pack_str_body(name.data(), static_cast<std::uint32_t>(name.size()));
      }
      return;
    }
    case Term::Kind::kBinary: {
      const std::string& b = t.as_bin();
      pk.pack_bin(static_cast<std::uint32_t>(b.size()));
      pk.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
      return;
    }
    case Term::Kind::kPid:
      encode_id(pk, out, kExtPid, t.as_pid());
      return;
    case Term::Kind::kRef:
      encode_id(pk, out, kExtRef, t.as_ref());
      return;
    case Term::Kind::kTuple: {
      const auto& items = t.as_tuple();
      pk.pack_array(static_cast<std::uint32_t>(items.size()));
      for (const Term& item : items) encode(item, out, pk);
      return;
    }
    case Term::Kind::kMap: {
      const auto& entries = t.as_map();
      pk.pack_map(static_cast<std::uint32_t>(entries.size()));
      for (const auto& [k, v] : entries) {
        encode(k, out, pk);
        encode(v, out, pk);
      }
      return;
    }
    case Term::Kind::kList: {
      // The ext header holds the payload's length: write the payload first, then insert the
      // header (at most 6 bytes) in front of it.
      const List& items = t.as_list();
      const std::size_t start = out.size();
      pk.pack_array(static_cast<std::uint32_t>(items.size()));
      for (const Term& item : items) encode(item, out, pk);
      std::string header;
      detail::StringSink header_sink{&header};
      Packer(header_sink).pack_ext(out.size() - start, kExtList);
      out.insert(start, header);
      return;
    }
  }
}

// -- decoding -----------------------------------------------------------------------

bool reference_input(msgpack::type::object_type, std::size_t, void*) { return true; }

std::string_view bytes_of(const char* p, std::uint32_t n) {
  return n == 0 ? std::string_view() : std::string_view(p, n);
}

class Decoder {
 public:
  explicit Decoder(const DecodeLimits& limits) : limits_(limits) {}

  const std::string& error() const { return error_; }

  // Decodes exactly one term from `bytes`, at most `depth` deep.
  bool decode(std::string_view bytes, std::size_t depth, Term& out) {
    msgpack::object o;
    if (!unpack(bytes, depth, o)) return false;
    return convert(o, depth, out);
  }

  // The term an unpacked object holds (a typed message's Term field).
  bool from_object(const msgpack::object& o, Term& out) {
    return convert(o, limits_.max_depth, out);
  }

 private:
  bool fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  bool unpack(std::string_view bytes, std::size_t depth, msgpack::object& o) {
    const transport::UnpackBounds bounds{limits_.max_array,   limits_.max_map, limits_.max_str,
                                         limits_.max_bin,     limits_.max_ext, depth,
                                         /*name_limits=*/true};
    std::size_t off = 0;
    if (auto e = transport::unpack_bounded(zone_.zone(), bytes, bounds, &reference_input, nullptr,
                                           "term", o, off)) {
      if (e->kind == transport::UnpackError::Kind::kDepth) return depth_exceeded();
      return fail(std::move(e->message));
    }
    if (off != bytes.size()) {
      return fail(std::to_string(bytes.size() - off) + " trailing bytes after the term");
    }
    return true;
  }

  bool depth_exceeded() {
    return fail("nested deeper than max_depth (" + std::to_string(limits_.max_depth) + ")");
  }

  bool convert(const msgpack::object& o, std::size_t depth, Term& out) {
    switch (o.type) {
      case msgpack::type::NIL:
        out = Term();
        return true;
      case msgpack::type::BOOLEAN:
        out = Term(o.via.boolean);
        return true;
      case msgpack::type::POSITIVE_INTEGER:
        if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          return fail("integer " + std::to_string(o.via.u64) + " does not fit an int64");
        }
        out = Term(static_cast<std::int64_t>(o.via.u64));
        return true;
      case msgpack::type::NEGATIVE_INTEGER:
        out = Term(o.via.i64);
        return true;
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64:
        out = Term(o.via.f64);
        return true;
      case msgpack::type::STR:
        if (o.via.str.size > limits_.max_str) {
          return fail("str of " + std::to_string(o.via.str.size) + " bytes exceeds max_str (" +
                      std::to_string(limits_.max_str) + ")");
        }
        if (o.via.str.size > kMaxAtomLength) {
          return fail("atom name of " + std::to_string(o.via.str.size) +
                      " bytes: atoms are at most 255");
        }
        if (auto a = detail::atom_from_wire(bytes_of(o.via.str.ptr, o.via.str.size))) {
          out = Term(*a);
          return true;
        }
        return atom_table_full();
      case msgpack::type::BIN:
        if (o.via.bin.size > limits_.max_bin) {
          return fail("bin of " + std::to_string(o.via.bin.size) + " bytes exceeds max_bin (" +
                      std::to_string(limits_.max_bin) + ")");
        }
        out = Term(std::string(bytes_of(o.via.bin.ptr, o.via.bin.size)));
        return true;
      case msgpack::type::ARRAY: {
        std::vector<Term> items;
        if (!convert_items(o.via.array, depth, items)) return false;
        out = Term(Tuple{std::move(items)});
        return true;
      }
      case msgpack::type::MAP: {
        if (depth == 0) return depth_exceeded();
        if (o.via.map.size > limits_.max_map) {
          return fail("map larger than max_map (" + std::to_string(limits_.max_map) + ")");
        }
        MapEntries entries(o.via.map.size);
        for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
          if (!convert(o.via.map.ptr[i].key, depth - 1, entries[i].first)) return false;
          if (!convert(o.via.map.ptr[i].val, depth - 1, entries[i].second)) return false;
        }
        out = Term(Map{std::move(entries)});  // duplicate keys: the last one wins
        return true;
      }
      case msgpack::type::EXT:
        return convert_ext(o, depth, out);
    }
    return fail("unsupported msgpack type " + std::to_string(static_cast<int>(o.type)));
  }

  bool convert_items(const msgpack::object_array& a, std::size_t depth, std::vector<Term>& items) {
    if (depth == 0) return depth_exceeded();
    if (a.size > limits_.max_array) {
      return fail("array longer than max_array (" + std::to_string(limits_.max_array) + ")");
    }
    items.resize(a.size);
    for (std::uint32_t i = 0; i < a.size; ++i) {
      if (!convert(a.ptr[i], depth - 1, items[i])) return false;
    }
    return true;
  }

  bool convert_ext(const msgpack::object& o, std::size_t depth, Term& out) {
    const std::uint32_t size = o.via.ext.size;
    if (size > limits_.max_ext) {
      return fail("ext payload of " + std::to_string(size) + " bytes exceeds max_ext (" +
                  std::to_string(limits_.max_ext) + ")");
    }
    const std::string_view payload = bytes_of(o.via.ext.data(), size);
    switch (o.via.ext.type()) {
      case kExtList: {
        // The payload is a MessagePack array at this same depth: the list's own level.
        if (depth == 0) return depth_exceeded();
        msgpack::object inner;
        if (!unpack(payload, depth, inner)) return fail("in a list ext: " + error_);
        if (inner.type != msgpack::type::ARRAY) {
          return fail("malformed list ext: the payload is not an array");
        }
        List items;
        if (!convert_items(inner.via.array, depth, items)) return false;
        out = Term(std::move(items));
        return true;
      }
      case kExtPid: {
        Pid p;
        if (!parse_id(payload, "pid", p)) return false;
        out = Term(p);
        return true;
      }
      case kExtRef: {
        Ref r;
        if (!parse_id(payload, "ref", r)) return false;
        out = Term(r);
        return true;
      }
      default:
        return fail("unknown ext type " + std::to_string(o.via.ext.type()));
    }
  }

  template <class Id>
  bool parse_id(std::string_view payload, const char* what, Id& out) {
    Result<transport::WireId> id = transport::parse_wire_id(payload);
    if (!id) return fail(std::string("malformed ") + what + " ext: " + id.error().message());
    auto node = detail::atom_from_wire(id->node);
    if (!node) return atom_table_full();
    out.node = *node;
    out.creation = id->creation;
    out.id = id->id;
    return true;
  }

  bool atom_table_full() {
    const AtomTableStats t = atom_table_stats();
    return fail("a new atom, and the atom table holds all it takes from other nodes (" +
                std::to_string(t.count) + " atoms; " + std::to_string(t.wire_limit) + " of its " +
                std::to_string(t.limit) + " may come from other nodes)");
  }

  const DecodeLimits& limits_;
  transport::ScratchZone zone_;
  std::string error_;
};

}  // namespace

void encode_term(const Term& t, std::string& out) {
  detail::StringSink sink{&out};
  Packer pk(sink);
  encode(t, out, pk);
}

std::string encode_term(const Term& t) {
  std::string out;
  encode_term(t, out);
  return out;
}

namespace {

// The scalars most small messages are made of skip msgpack-c's parser: a fixint, or a bin 8/16
// that fills the input exactly. Anything else, valid or not, takes the full path, which gives
// the same terms and the errors.
std::optional<Term> decode_common_scalar(std::string_view b, const DecodeLimits& limits) {
  if (b.empty()) return std::nullopt;
  const auto c = static_cast<unsigned char>(b[0]);
  if (b.size() == 1 && (c <= 0x7f || c >= 0xe0)) {
    return Term(static_cast<std::int64_t>(static_cast<std::int8_t>(c)));  // fixints
  }
  std::size_t header = 0, length = 0;
  if (c == 0xc4 && b.size() >= 2) {
    header = 2;
    length = static_cast<unsigned char>(b[1]);
  } else if (c == 0xc5 && b.size() >= 3) {
    header = 3;
    length = std::size_t{static_cast<unsigned char>(b[1])} << 8 | static_cast<unsigned char>(b[2]);
  } else {
    return std::nullopt;
  }
  if (b.size() != header + length || length > limits.max_bin) return std::nullopt;
  return bin(b.substr(header));
}

}  // namespace

Result<Term> decode_term(std::string_view bytes, const DecodeLimits& limits) {
  if (auto t = decode_common_scalar(bytes, limits)) return std::move(*t);
  try {
    Decoder decoder(limits);
    Term t;
    if (!decoder.decode(bytes, limits.max_depth, t)) {
      return Status(ErrorCode::kProtocol, decoder.error());
    }
    return t;
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kProtocol, "out of memory decoding the input");
  } catch (const std::exception& e) {
    return Status(ErrorCode::kProtocol, std::string("cannot decode: ") + e.what());
  }
}

namespace detail {

void encode_term_payload(const void* p, std::string& out) {
  encode_term(*static_cast<const Term*>(p), out);
}

Result<Term> term_from_object(const msgpack::object& o) {
  const DecodeLimits limits;
  try {
    Decoder decoder(limits);
    Term t;
    if (!decoder.from_object(o, t)) return Status(ErrorCode::kProtocol, decoder.error());
    return t;
  } catch (const std::exception& e) {
    return Status(ErrorCode::kProtocol, std::string("cannot decode: ") + e.what());
  }
}

std::string id_payload(Atom node, std::uint32_t creation, std::uint64_t id) {
  std::string out;
  transport::append_wire_id(transport::WireIdRef{node.name(), creation, id}, out);
  return out;
}

void parse_id_payload(const msgpack::object& o, std::int8_t type, Atom& node,
                      std::uint32_t& creation, std::uint64_t& id) {
  if (o.type != msgpack::type::EXT || o.via.ext.type() != type) throw msgpack::type_error();
  Result<transport::WireId> w =
      transport::parse_wire_id(bytes_of(o.via.ext.data(), o.via.ext.size));
  if (!w) throw msgpack::type_error();
  auto a = atom_from_wire(w->node);
  if (!a) throw msgpack::type_error();  // the atom table's share for the wire is used up
  node = *a;
  creation = w->creation;
  id = w->id;
}

}  // namespace detail
}  // namespace nodus
