// Runs the DatabasePool exercise: a fourth checkout waits until a connection comes back.

#include "database_pool.hpp"
#include "nodus/node/format.hpp"

int main() {
  using namespace database_pool;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid pool = DatabasePool::start_link(node, 3).value();
  Term conns[3];
  for (Term& c : conns) {
    c = (*DatabasePool::checkout(pool))[1];
    fmt::print("checkout() -> {{ok, {}}}\n", c);
  }
  fmt::print("status()   -> {}\n", *DatabasePool::status(pool));
  // Like Task.async: a process that checks out and sends us what it got.
  Pid self = me.pid();
  spawn(node, [pool, self] { send(self, *DatabasePool::checkout(pool)); });
  while (DatabasePool::status(pool)->find("waiting")->as_int() == 0)
    sleep_for(std::chrono::milliseconds(1));
  fmt::print("a 4th checkout waits; status() -> {}\n", *DatabasePool::status(pool));
  DatabasePool::checkin(pool, conns[0]);
  fmt::print("checkin({})\n", conns[0]);
  fmt::print("the waiting checkout got -> {}\n", receive());
  return 0;
}
