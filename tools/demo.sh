#!/usr/bin/env bash
# The quick start: installs what is missing, builds (Release, into build/), starts the 3-node
# cluster of cluster-configs/local-3 with its key-value store, writes keys through one node and
# reads them from another, kills a node with kill -9, shows every key still readable and
# writable, brings the node back and shows the hints handed back (kv explain), and stops the
# cluster.
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

say "start the 3 nodes of $cluster (nodusctl up): each runs nodusd, with the store on"
echo "([kv] initial_members = n1 n2 n3: the ring forms by itself; replicas = 2: two copies of each key)"
"$ctl" up "$cluster"

say "the ring: 64 partitions, each key on 2 of the 3 nodes (nodusctl members, ring)"
on n2 members
on n2 ring | sed -n 1p

say "write 8 keys through n1"
for i in $(seq 1 8); do
  on n1 kv put "user:$i" "name-$i" >/dev/null
done
on n1 kv keys 'user:*' | tr '\n' ' '; echo

# The value (or the context) of a key, read through node $1.
value_of() { on "$1" kv get "$2" | sed -n 's/^value  *//p'; }
context_of() { on "$1" kv get "$2" | sed -n 's/^context  *//p'; }
show_all() {
  local node=$1 i
  for i in $(seq 1 8); do printf '  user:%s = %s\n' "$i" "$(value_of "$node" "user:$i")"; done
}

say "read them back from n3"
show_all n3

say "kill -9 n1"
kill -9 "$(cat "$cluster/run/n1.pid")"
echo "killed n1 (pid $(cat "$cluster/run/n1.pid")); its memory engine's copies are gone with it"
node_down() { on n2 nodes | grep -Eq '^n1 .* down'; }
await 10 node_down
on n2 members

say "with n1 down, every key is still readable (through n2) ..."
show_all n2

say "... and writable: each key updated with the context of its read (no siblings), and new keys"
for i in $(seq 1 8); do
  on n2 kv put "user:$i" "name-$i-v2" --context "$(context_of n2 "user:$i")" >/dev/null
done
for i in $(seq 1 4); do on n3 kv put "order:$i" "item-$i" >/dev/null; done
show_all n3
on n3 kv keys | tr '\n' ' '; echo

# A key one of whose primaries is n1: its write went to a fallback, which keeps it as a hint.
hinted=
for i in $(seq 1 8); do
  if on n2 kv explain "user:$i" --json | grep '"for": "n1"' >/dev/null; then hinted=user:$i; break; fi
done
if [[ -n "$hinted" ]]; then
  say "$hinted lives on n1 and another node; with n1 down a fallback kept its write as a hint"
  on n2 kv explain "$hinted"

  say "bring n1 back (nodusctl up starts what is missing): the fallback hands its hints back"
  "$ctl" up "$cluster" >/dev/null
  handed_back() { on n2 kv explain "$hinted" --json | tr -d ' \n' | grep '"hints":\[\]' >/dev/null; }
  await 15 handed_back
  on n2 kv explain "$hinted"
  echo "(n1 holds what the other replica holds again: same digest, and no hint is left)"
else
  say "bring n1 back (nodusctl up starts what is missing)"
  "$ctl" up "$cluster" >/dev/null
fi

say "n1 serves every key again (a read repairs the replicas n1 lost with its memory)"
show_all n1

say "the cluster status: partitions and keys per node"
on n2 status

say "stop the cluster (SIGTERM: terminate callbacks run, peers are told)"
trap - EXIT
"$ctl" down "$cluster"
