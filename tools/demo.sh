#!/usr/bin/env bash
# The quick start: installs what is missing, builds (Release, into build/), starts the 3-node
# cluster of cluster-configs/local-3, calls its global counter from two nodes, kills the
# counter's node with kill -9, shows the cluster noticing and the node coming back, and stops
# the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNODUS_BUILD_TESTS=ON -DNODUS_BUILD_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

cluster=cluster-configs/local-3
ctl=build/bin/nodusctl
# nodusctl talks to one node as a hidden peer; these say which node, and the cluster's cookie.
export NODUS_COOKIE_FILE=$cluster/cookie
on() { local node=$1; shift; NODUS_NODE=tcp://127.0.0.1:720${node#n} "$ctl" "$@"; }
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi
# Polls (every 0.1 s, at most $1 s) until the rest of the line succeeds.
await() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "demo: gave up waiting for: $*" >&2; return 1; fi
    sleep 0.1
  done
}
trap '"$ctl" down "$cluster" >/dev/null 2>&1 || true' EXIT

say "start the 3 nodes of $cluster (nodusctl up): each runs nodusd from its .conf"
"$ctl" up "$cluster"

say "the cluster as n2 sees it (nodusctl status)"
on n2 status

say "n1 started a counter under the global name 'hits' ([apps] start = counter global:hits)"
on n2 names --global

say "call it from n2, then from n3: the name is resolved on the caller's node"
printf 'from n2: increment -> '; on n2 call global:hits '"increment"'
printf 'from n3: increment -> '; on n3 call global:hits '"increment"'
printf 'from n3: increment -> '; on n3 call global:hits '"increment"'

say "every node's local names, and n1's processes (busiest first)"
on n2 names
on n2 procs n1

say "kill -9 the counter's node, n1"
kill -9 "$(cat "$cluster/run/n1.pid")"
echo "killed n1 (pid $(cat "$cluster/run/n1.pid"))"
node_down() { on n2 nodes | grep -Eq '^n1 .* down'; }
name_gone() { [[ "$(on n2 names --global --json | tr -d ' \n')" == "[]" ]]; }
await 10 node_down
await 10 name_gone
say "n2 noticed: n1 is down and its global name is gone"
on n2 status
on n2 names --global
echo "from n2: increment -> (fails: nobody holds hits now)"
on n2 call global:hits '"increment"' 2>&1 || true

say "bring n1 back (nodusctl up again starts only what is missing)"
"$ctl" up "$cluster"
name_back() { on n3 names --global | grep -q '^hits '; }
await 10 name_back
on n3 names --global
printf 'from n3: increment -> '; on n3 call global:hits '"increment"'
echo "(a new counter process: it counts from 1 again)"

say "stop the cluster (SIGTERM: terminate callbacks run, peers are told)"
trap - EXIT
"$ctl" down "$cluster"
