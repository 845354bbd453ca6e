#!/usr/bin/env bash
# The quick start: installs what is missing, builds (Release, into build/) and runs a few of
# the examples and benchmarks. (With the operating issue this starts cluster-configs/local-3.)
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNODUS_BUILD_TESTS=ON -DNODUS_BUILD_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== the Stack exercise (examples/stack): push is a cast, pop and peek are calls"
build/bin/stack
echo
echo "== a hand-written server loop on raw processes (examples/server_process)"
build/bin/server_process
echo
echo "== answering later: a connection pool that queues a checkout (examples/database_pool)"
build/bin/database_pool
echo
echo "== two nodes over ZeroMQ: a counter called by name from the other node"
build/bin/registered_counter
echo
echo "== how fast the runtime is on this machine (build/bin/nodus-bench)"
build/bin/nodus-bench local-call --seconds 1
build/bin/nodus-bench local-cast --count 2000000
