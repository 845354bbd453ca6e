// Runs the CacheServer exercise: TTLs, expiry on read, and the periodic cleanup.

#include "cache_server.hpp"
#include "nodus/node/format.hpp"

int main() {
  using namespace cache_server;
  using namespace std::chrono_literals;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid cache = CacheServer::start_link(node, CacheOptions{.cleanup_every = 1s}).value();
  fmt::print("put(a, 1, ttl 60 s)   -> {}\n", CacheServer::put(cache, "a", 1, 60s));
  fmt::print("put(b, 2, ttl 500 ms) -> {}\n", CacheServer::put(cache, "b", 2, 500ms));
  fmt::print("put(c, 3, ttl 500 ms) -> {}\n", CacheServer::put(cache, "c", 3, 500ms));
  fmt::print("get(b) -> {}\n", CacheServer::get(cache, "b"));
  sleep_for(600ms);
  fmt::print("after 600 ms: get(b) -> {}\n", CacheServer::get(cache, "b"));
  sleep_for(1s);  // the cleanup removes c (b was already dropped by get)
  fmt::print("get(a) -> {}\n", CacheServer::get(cache, "a"));
  return 0;
}
