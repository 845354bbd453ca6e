// Runs the CacheServer exercise: TTLs, expiry on read, and the periodic cleanup.
#include <cstdio>

#include "cache_server.hpp"

int main() {
  using namespace cache_server;
  using namespace std::chrono_literals;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid cache = CacheServer::start_link(node, CacheOptions{.cleanup_every = 1s}).value();
  std::printf("put(a, 1, ttl 60 s)   -> %s\n",
              CacheServer::put(cache, "a", 1, 60s).to_string().c_str());
  std::printf("put(b, 2, ttl 500 ms) -> %s\n",
              CacheServer::put(cache, "b", 2, 500ms).to_string().c_str());
  std::printf("put(c, 3, ttl 500 ms) -> %s\n",
              CacheServer::put(cache, "c", 3, 500ms).to_string().c_str());
  std::printf("get(b) -> %s\n", CacheServer::get(cache, "b").to_string().c_str());
  sleep_for(600ms);
  std::printf("after 600 ms: get(b) -> %s\n", CacheServer::get(cache, "b").to_string().c_str());
  sleep_for(1s);  // the cleanup removes c (b was already dropped by get)
  std::printf("get(a) -> %s\n", CacheServer::get(cache, "a").to_string().c_str());
  return 0;
}
