#!/usr/bin/env bash
# The test command: installs what is missing, builds (Release, into build/) and runs the whole
# suite with ctest. Extra arguments go to ctest, e.g. `tools/test.sh -L unit`.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNODUS_BUILD_TESTS=ON -DNODUS_BUILD_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
