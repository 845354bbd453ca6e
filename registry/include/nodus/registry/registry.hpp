// Registry: a local, process-backed key/process registry, like Elixir's Registry.
//
// Processes register themselves under keys, each entry with a value. Keys are unique (one
// process per key: a name, usable with via()) or duplicate (many processes per key: a pub/sub
// topic, dispatch). The table is split into partitions, each watched by a process that
// monitors the registered processes and removes their entries when they exit; listeners are
// told of every register and unregister.
//
// Reads (lookup, match, count, dispatch, keys, whereis_name) read the table directly under a
// shared lock, like Elixir's reads of ETS: no message to any process. Writes (register,
// unregister, update_value) also touch the table directly from the caller and only ask the
// partition's process to monitor a new pid.
//
// As Elixir's Registry checks Process.alive?, a process of the registry's node that has exited
// is named by no read and holds no unique key, even before the partition has handled its exit
// (Node::is_process_alive); a process of another node counts as alive until its exit arrives.
//
// Thread-safety: every method may be called from any thread. register_key, unregister,
// update_value and unregister_match act for the current process (REQUIRES: has_self()).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"
#include "nodus/registry/via.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

enum class RegistryKeys : std::uint8_t {
  kUnique,     ///< one process per key (names; via works)
  kDuplicate,  ///< any number of processes per key, one entry per register call
};

struct RegistryOptions {
  RegistryKeys keys = RegistryKeys::kUnique;
  /// Table partitions, each with its own lock and watcher process. Default 1. More partitions
  /// let concurrent writers and exits spread over cores, at one process each.
  std::size_t partitions = 1;
  /// Processes told {register, Registry, Key, Pid, Value} and {unregister, Registry, Key, Pid}
  /// (as plain messages; Registry is the atom `name`). Default none.
  std::vector<Pid> listeners{};
  /// The registry's name, in listener messages and descriptions. Default "registry".
  std::string name = "registry";
};

/// One entry: a registered process and its value.
struct RegistryEntry {
  Pid pid;
  Term value;
  friend bool operator==(const RegistryEntry&, const RegistryEntry&) = default;
};

class Registry final : public NameResolver {
 public:
  /// Starts the partition processes on `node`. Errors: kBadArg for 0 partitions.
  /// REQUIRES: `node` outlives every use of the registry.
  static Result<std::shared_ptr<Registry>> start(Node& node, RegistryOptions options = {});
  ~Registry() override;

  // -- writes, for the current process ------------------------------------------------------
  /// Registers the current process under `key` with `value`. Errors: kAlreadyStarted with the
  /// holder when the keys are unique and another live process holds `key` (one that has
  /// exited loses it now, and listeners hear it unregistered).
  NameStatus register_key(const Term& key, Term value = Term());
  /// Removes the current process's entries under `key`; how many went.
  std::size_t unregister(const Term& key);
  /// Removes the current process's entries under `key` whose value matches `pattern`.
  std::size_t unregister_match(const Term& key, const Pattern& pattern);
  /// Replaces the value of the current process's entry under `key` with fn(old value); the
  /// new value. Errors: kNotFound when it has no entry there (with duplicate keys: the first).
  Result<Term> update_value(const Term& key, const std::function<Term(const Term&)>& fn);

  // -- reads: no messages ------------------------------------------------------------------
  /// The entries under `key` (empty when none).
  std::vector<RegistryEntry> lookup(const Term& key) const;
  /// The entries under `key` whose value matches `pattern` (term.hpp: `{"role", _}` ...).
  std::vector<RegistryEntry> match(const Term& key, const Pattern& pattern) const;
  /// How many entries there are in all.
  std::size_t count() const;
  /// How many entries under `key` have a value matching `pattern`.
  std::size_t count_match(const Term& key, const Pattern& pattern) const;
  /// Calls fn with the entries under `key` (not called when there are none), from the caller's
  /// thread, outside the table's lock; true if it was called.
  bool dispatch(const Term& key,
                const std::function<void(const std::vector<RegistryEntry>&)>& fn) const;
  /// The keys `pid` is registered under.
  std::vector<Term> keys(const Pid& pid) const;
  /// The partitions' watcher processes.
  std::vector<Pid> partitions() const;
  const RegistryOptions& options() const { return options_; }

  /// Stops the partition processes (entries stay readable but nobody removes them any more).
  /// Idempotent.
  void stop();

  // -- the via module (unique keys only) ------------------------------------------------------
  Pid whereis_name(Node& node, const Term& key) const override;
  /// Registers `pid` (any local or remote process) under `key` with the value `undefined`.
  NameStatus register_name(Node& node, const Term& key, const Pid& pid) const override;
  bool unregister_name(Node& node, const Term& key) const override;
  std::string describe(const Term& key) const override;

  struct Partition;

 private:
  explicit Registry(RegistryOptions options);
  Partition& partition_of(const Term& key) const;
  NameStatus add(const Term& key, const Pid& pid, Term value) const;
  /// A process of this registry's node that has exited (or begun to).
  bool known_dead(const Pid& pid) const;
  std::size_t remove_if(const Term& key, const Pid& pid,
                        const std::function<bool(const Term&)>& which) const;

  RegistryOptions options_;
  Atom name_;
  Node* node_ = nullptr;
  Atom node_name_;
  std::vector<std::shared_ptr<Partition>> parts_;  // shared with the watcher processes
};

}  // namespace nodus
