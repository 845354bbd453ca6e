// TodoServer: a plain value type (TodoList) made into a server. Changes are casts, queries are
// calls. The messages are typed structs; UpdateEntry holds a std::function, so it stays local
// (it cannot cross the wire), which is fine for a process on the same node.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nodus/node/gen_server.hpp"

namespace todo_server {

using namespace nodus;

struct Entry {
  std::int64_t id = 0;  // given by the list
  std::string date;     // "2024-12-19"
  std::string title;
  friend bool operator==(const Entry&, const Entry&) = default;
};

class TodoList {
 public:
  void add_entry(Entry e) {
    e.id = next_id_++;
    entries_[e.id] = std::move(e);
  }
  std::vector<Entry> entries(const std::string& date) const {
    return select([&](const Entry& e) { return e.date == date; });
  }
  void update_entry(std::int64_t id, const std::function<void(Entry&)>& updater) {
    if (auto it = entries_.find(id); it != entries_.end()) updater(it->second);
  }
  void delete_entry(std::int64_t id) { entries_.erase(id); }
  std::vector<Entry> all_entries() const {
    return select([](const Entry&) { return true; });
  }

 private:
  template <class Pred>
  std::vector<Entry> select(Pred pred) const {
    std::vector<Entry> out;
    for (const auto& [id, e] : entries_) {
      if (pred(e)) out.push_back(e);
    }
    return out;
  }
  std::int64_t next_id_ = 1;
  std::map<std::int64_t, Entry> entries_;  // by id: oldest first
};

// The server's messages.
struct AddEntry {
  Entry entry;
};
struct UpdateEntry {
  std::int64_t id;
  std::function<void(Entry&)> updater;
};
struct DeleteEntry {
  std::int64_t id;
};
struct EntriesOn {
  std::string date;
};
struct AllEntries {};

class TodoServer : public GenServer {
 public:
  using Entries = Result<std::vector<Entry>, Reason>;

  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node) { return nodus::start_link<TodoServer>(node); }
  static void add_entry(Pid s, Entry e) { cast(s, AddEntry{std::move(e)}); }
  static void update_entry(Pid s, std::int64_t id, std::function<void(Entry&)> updater) {
    cast(s, UpdateEntry{id, std::move(updater)});
  }
  static void delete_entry(Pid s, std::int64_t id) { cast(s, DeleteEntry{id}); }
  static Entries entries(Pid s, std::string date) {
    return call_as<std::vector<Entry>>(s, EntriesOn{std::move(date)});
  }
  static Entries all_entries(Pid s) { return call_as<std::vector<Entry>>(s, AllEntries{}); }

  // -- server callbacks (run in the server's process) --
  Action handle_cast(Message& msg) override {
    msg.visit([&](AddEntry& m) { list_.add_entry(std::move(m.entry)); },
              [&](const UpdateEntry& m) { list_.update_entry(m.id, m.updater); },
              [&](const DeleteEntry& m) { list_.delete_entry(m.id); });
    return noreply();
  }

  Action handle_call(Message& msg, From) override {
    return msg.visit([&](const EntriesOn& m) { return reply(list_.entries(m.date)); },
                     [&](const AllEntries&) { return reply(list_.all_entries()); });
  }

 private:
  TodoList list_;
};

}  // namespace todo_server
