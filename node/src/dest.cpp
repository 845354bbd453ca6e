// Destinations and names (process.hpp): Dest, named, via_name, Name, the NameResolver
// defaults, and registering a starting process under its name.
#include <memory>
#include <string>

#include "check.hpp"
#include "nodus/node/process.hpp"
#include "runtime.hpp"

namespace nodus {

std::string Dest::to_string() const {
  if (is_pid()) return pid_.to_string();
  if (is_via()) return resolver().describe(via_key());
  if (node() == Atom()) return name_.name();
  std::string out = "{";
  out += name_.name();
  out += ",";
  out += node().name();
  out += "}";
  return out;
}

const std::string& Dest::name() const {
  static const std::string kNone;
  return name_.kind() == detail::DestName::Kind::kName ? name_.name() : kNone;
}

Dest named(std::string_view name) { return Dest(detail::DestName(std::string(name), Atom())); }

Dest named(std::string_view name, std::string_view node) {
  return Dest(detail::DestName(std::string(name), Atom(node)));
}

Dest via_name(std::shared_ptr<const NameResolver> resolver, Term key) {
  NODUS_CHECK(resolver != nullptr);
  return Dest(detail::DestName(
      std::make_shared<const detail::ViaKey>(detail::ViaKey{std::move(resolver), std::move(key)})));
}

bool NameResolver::send(Node& node, const Term& key, Message msg) const {
  Pid pid = whereis_name(node, key);
  if (!pid) return false;
  nodus::send(pid, std::move(msg));
  return true;
}

std::string NameResolver::describe(const Term& key) const {
  std::string out = "via(";
  out += key.to_string();
  out += ")";
  return out;
}

const std::string& Name::local() const {
  static const std::string kNone;
  return is_local() ? dest_->name() : kNone;
}

namespace detail {
NameStatus register_start_name(Runtime& rt, const Name& name, const Pid& pid) {
  if (name.is_via()) {
    const Dest& d = name.dest();
    return d.resolver().register_name(*rt.node(), d.via_key(), pid);
  }
  return rt.register_name(name.local(), pid);
}
}  // namespace detail

}  // namespace nodus
