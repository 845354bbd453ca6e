#!/usr/bin/env bash
# redis-benchmark against a 3-node nodus cluster's Redis protocol (N=3, W=2, R=2) and against one
# local redis-server (Debian's, no persistence), in the same run: bench/README.md's RESP figures.
#
#   bench/resp_vs_redis.sh [BUILD_DIR] [-- extra redis-benchmark flags]
#
# TESTS (default set,get), REQUESTS (200000) and PIPELINES (the -P values, default "1 16") in the
# environment narrow a run, e.g. TESTS=set PIPELINES=1 for the issue's `-t set -c 50` figure;
# CONFLICTS=lww runs the cluster with kv.conflicts = lww (a plain SET is then the put alone).
#
# Everything listens on 127.0.0.1, on ports 27xxx picked at random and checked free; the
# cluster and the redis-server run from a temp dir and are stopped (by nodusctl down, by pid)
# on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shift || true
[[ "${1:-}" == "--" ]] && shift
extra=("$@")
tests=${TESTS:-set,get}
requests=${REQUESTS:-200000}
read -r -a pipelines <<<"${PIPELINES:-1 16}"

tmp=$(mktemp -d)
redis_pid=""
cleanup() {
  "$build/bin/nodusctl" down "$tmp" --grace 5 >/dev/null 2>&1 || true
  [[ -n "$redis_pid" ]] && kill "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Sets $port to a port nobody listens on and that was not given before.
given=" "
free_port() {
  for _ in $(seq 1 100); do
    port=$((27000 + RANDOM % 3000))
    [[ "$given" == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then given+="$port "; return; fi
  done
  echo "no free port" >&2
  exit 1
}

declare -A node resp http
for i in 1 2 3; do
  free_port; node[$i]=$port
  free_port; resp[$i]=$port
  free_port; http[$i]=$port
done
cp "$here/cluster-configs/local-3/cookie" "$tmp/cookie"
chmod 600 "$tmp/cookie"
for i in 1 2 3; do
  sed -e "s/720\([123]\)/X\1/g; s/920$i/${http[$i]}/" \
      -e "s/^replicas = 2 .*/replicas = 3\nconflicts = ${CONFLICTS:-siblings}/" \
      "$here/cluster-configs/local-3/n$i.conf" >"$tmp/n$i.conf"
  for j in 1 2 3; do sed -i "s/X$j/${node[$j]}/g" "$tmp/n$i.conf"; done
  printf '\n[resp]\nlisten = 127.0.0.1:%s\n' "${resp[$i]}" >>"$tmp/n$i.conf"
done
"$build/bin/nodusctl" up "$tmp" >/dev/null
for _ in $(seq 1 100); do
  [[ "$(redis-cli -p "${resp[1]}" SET ready 1 2>/dev/null)" == OK ]] && break
  sleep 0.1
done

free_port; redis_port=$port
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp" --save "" --appendonly no \
  --daemonize no >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do
  [[ "$(redis-cli -p "$redis_port" PING 2>/dev/null)" == PONG ]] && break
  sleep 0.1
done

echo "# $(date -u +%FT%TZ), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "# redis-server $(redis-server --version | awk '{print $3}')"
for pipeline in "${pipelines[@]}"; do
  echo "## -c 50 -P $pipeline, nodus (3 nodes, N=3 W=2 R=2, requests to n1)"
  redis-benchmark -p "${resp[1]}" -t "$tests" -n "$requests" -c 50 -P "$pipeline" -q \
    "${extra[@]}" 2>&1 | tr "\r" "\n" | grep -E "requests per second|ERR|rror" | tail -4 || true
  echo "## -c 50 -P $pipeline, redis-server (one, unreplicated)"
  redis-benchmark -p "$redis_port" -t "$tests" -n "$requests" -c 50 -P "$pipeline" -q \
    "${extra[@]}" 2>&1 | tr "\r" "\n" | grep -E "requests per second|ERR|rror" | tail -4 || true
done
