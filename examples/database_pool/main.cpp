// Runs the DatabasePool exercise: a fourth checkout waits until a connection comes back.
#include <cstdio>

#include "database_pool.hpp"

int main() {
  using namespace database_pool;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid pool = DatabasePool::start_link(node, 3).value();
  Term conns[3];
  for (Term& c : conns) {
    c = (*DatabasePool::checkout(pool))[1];
    std::printf("checkout() -> {ok, %s}\n", c.to_string().c_str());
  }
  std::printf("status()   -> %s\n", DatabasePool::status(pool)->to_string().c_str());
  // Like Task.async: a process that checks out and sends us what it got.
  Pid self = me.pid();
  spawn(node, [pool, self] { send(self, *DatabasePool::checkout(pool)); });
  while (DatabasePool::status(pool)->find("waiting")->as_int() == 0)
    sleep_for(std::chrono::milliseconds(1));
  std::printf("a 4th checkout waits; status() -> %s\n",
              DatabasePool::status(pool)->to_string().c_str());
  DatabasePool::checkin(pool, conns[0]);
  std::printf("checkin(%s)\n", conns[0].to_string().c_str());
  std::printf("the waiting checkout got -> %s\n", receive().to_string().c_str());
  return 0;
}
