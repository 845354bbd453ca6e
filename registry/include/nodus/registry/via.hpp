// via names: any naming service can stand where a name is accepted.
//
// A type that implements NameResolver (node/include/nodus/node/process.hpp: register_name,
// unregister_name, whereis_name, send) is a via module, Erlang's {via, Module, Key}:
//
//     auto reg = Registry::start(node, {.keys = RegistryKeys::kUnique}).value();
//     start<Worker>(node, SpawnOptions{.name = via(reg, "worker-1")});   // registered before init
//     call(via(reg, "worker-1"), "ping");                                // resolved at send time
//
// send, cast, call and monitor resolve the key with whereis_name on the sender's node when
// they are used (a key nobody holds is `noproc`, and a send is dropped); a plain send goes
// through the module's send. The Registry (registry.hpp) and global names (global.hpp) are the
// built-in via modules.
//
// Why the interface is in node/: the runtime resolves every destination, and layers only
// point down (transport <- node <- registry), so node/ holds the hook and this layer fills it.
//
// Local names stay in the runtime (node.hpp: register_name, whereis), as the BEAM keeps them:
// every send to a local name resolves it, so they sit beside the process table.
#pragma once

#include <memory>
#include <utility>

#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"

namespace nodus {

/// The interface of a via module (an alias: the hook itself lives in node/).
using ViaModule = NameResolver;

/// The destination (and start name) `key` of the via module `module`. The Dest keeps the
/// module alive. REQUIRES: module != nullptr.
template <class Module>
Dest via(std::shared_ptr<Module> module, Term key) {
  return via_name(std::shared_ptr<const NameResolver>(std::move(module)), std::move(key));
}

}  // namespace nodus
