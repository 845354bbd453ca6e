// The machinery behind Dest (process.hpp): what a destination holds besides a pid. Not part of
// the API: use named(), via_name() and Dest.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "nodus/node/term.hpp"

namespace nodus {

class NameResolver;

namespace detail {

/// A via name: the naming service and the key, shared by the copies of a Dest.
struct ViaKey {
  std::shared_ptr<const NameResolver> resolver;
  Term key;
};

/// Nothing (a pid destination), a registered name (with its node, or `undefined` for the
/// sender's), or a via key. A tagged union rather than a member per form: a pid Dest, built for
/// every send, then costs what the pid costs to copy, and its destructor one test.
class DestName {
 public:
  enum class Kind : std::uint8_t { kNone, kName, kVia };

  DestName() = default;
  DestName(std::string name, Atom node) : node_(node), kind_(Kind::kName) {
    new (&u_.name) std::string(std::move(name));
  }
  explicit DestName(std::shared_ptr<const ViaKey> via) : kind_(Kind::kVia) {
    new (&u_.via) std::shared_ptr<const ViaKey>(std::move(via));
  }
  DestName(const DestName& o) : node_(o.node_) { copy_from(o); }
  DestName& operator=(const DestName& o) {
    if (this != &o) {
      reset();
      node_ = o.node_;
      copy_from(o);
    }
    return *this;
  }
  ~DestName() {
    if (kind_ != Kind::kNone) reset();
  }

  Kind kind() const { return kind_; }
  /// REQUIRES: kind() == kName.
  const std::string& name() const { return u_.name; }
  Atom node() const { return node_; }
  /// REQUIRES: kind() == kVia.
  const ViaKey& via() const { return *u_.via; }

 private:
  void copy_from(const DestName& o) {
    if (o.kind_ == Kind::kName) {
      new (&u_.name) std::string(o.u_.name);
    } else if (o.kind_ == Kind::kVia) {
      new (&u_.via) std::shared_ptr<const ViaKey>(o.u_.via);
    }
    kind_ = o.kind_;
  }
  void reset() {
    if (kind_ == Kind::kName) {
      u_.name.~basic_string();
    } else if (kind_ == Kind::kVia) {
      u_.via.~shared_ptr();
    }
    kind_ = Kind::kNone;
  }
  union Storage {
    Storage() {}   // NOLINT: a member is constructed by DestName's constructors
    ~Storage() {}  // NOLINT: and destroyed by reset()
    std::string name;
    std::shared_ptr<const ViaKey> via;
  };
  Storage u_;
  Atom node_;
  Kind kind_ = Kind::kNone;
};

}  // namespace detail
}  // namespace nodus
