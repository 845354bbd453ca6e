#!/usr/bin/env bash
# The quick start: installs what is missing, builds (Release, into build/) and runs the
# examples that exist so far. (With the operating issue this starts cluster-configs/local-3.)
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== the Stack exercise (examples/stack): push is a cast, pop and peek are calls"
build/bin/stack
echo
echo "== how fast the runtime is on this machine (build/bin/nodus-bench)"
build/bin/nodus-bench local-call --seconds 1
build/bin/nodus-bench local-cast --count 2000000
