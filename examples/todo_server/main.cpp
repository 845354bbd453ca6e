// Runs the TodoServer exercise: add, query by date, update, delete.
#include <vector>

#include "nodus/node/format.hpp"
#include "todo_server.hpp"

namespace {
void print(const char* what, const todo_server::TodoServer::Entries& entries) {
  fmt::print("{} ->\n", what);
  for (const auto& e : entries.value()) {
    fmt::print("  #{} {} {}\n", e.id, e.date, e.title);
  }
}
}  // namespace

int main() {
  using namespace todo_server;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid s = TodoServer::start_link(node).value();
  TodoServer::add_entry(s, {.date = "2024-12-19", .title = "Dentist"});
  TodoServer::add_entry(s, {.date = "2024-12-20", .title = "Shopping"});
  TodoServer::add_entry(s, {.date = "2024-12-19", .title = "Movies"});
  print("entries(2024-12-19)", TodoServer::entries(s, "2024-12-19"));
  TodoServer::update_entry(s, 1, [](Entry& e) { e.date = "2024-12-20"; });
  print("update_entry(1, date 2024-12-20); entries(2024-12-20)",
        TodoServer::entries(s, "2024-12-20"));
  TodoServer::delete_entry(s, 2);
  print("delete_entry(2); all_entries()", TodoServer::all_entries(s));
  return 0;
}
