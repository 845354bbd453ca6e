#!/usr/bin/env bash
# Installs the Debian 12 packages nodus needs to build and test, if any are missing.
# Used by tools/test.sh and tools/demo.sh; safe to run again (it installs nothing twice).
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config      # toolchain
  libboost-context-dev                 # fibers: a blocked call parks a process, not a thread
  libspdlog-dev                        # nodusd's logs, text or JSON lines (uses libfmt-dev)
  nlohmann-json3-dev                   # nodusctl --json, and JSON requests for call/cast
  libcpp-httplib-dev                   # nodusd's /metrics and /health (admin.http)
  libncurses-dev                       # nodusctl top
  libmsgpack-cxx-dev                   # the wire format
  libzmq3-dev cppzmq-dev               # the transport between nodes
  libsodium-dev                        # HMAC-SHA-256 for the handshake (libzmq uses it too)
  libxxhash-dev                        # XXH3-64: the store's partition hash
  librocksdb-dev                       # the store's durable engine (kv.data_dir): WAL group commit
  libjemalloc-dev                      # the executables' allocator (see CMakeLists.txt)
  libgtest-dev libgmock-dev            # tests
  python3-zmq python3-msgpack          # clients/python and its tests (on /usr/bin/python3)
  python3-xxhash                       # clients/python: XXH3-64, the store's partition hash
  redis-tools python3-redis            # [resp] tests: redis-cli, redis-benchmark, redis-py
  iproute2                             # tests with nodes in network namespaces (ip netns)
  nftables                             # the fault suite (tools/fault.py): partitions in namespaces
  faketime                             # the fault suite's clock skew (libfaketime; --skew-nodusd)
)
if [[ "${NODUS_WITH_CLANG:-0}" == 1 ]]; then
  packages+=(clang libclang-rt-14-dev)  # sanitizer and fuzzer runtimes for CI
fi
if [[ "${NODUS_WITH_TIDY:-0}" == 1 ]]; then
  packages+=(clang-tidy)                # the naming check of .clang-tidy, run by hand
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "nodus: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
