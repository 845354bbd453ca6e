#!/usr/bin/python3
"""nodus-fault scale: 16 real nodusd nodes, each in a network namespace of its own, meshed.

Issue 15's "Scale": the store serving with N = 3 (64 partitions, memory engine); the idle
cluster's memory (VmRSS) and CPU per node over --idle seconds, and the bytes each node sends
and receives then (its veth's counters: with no clients, that is its heartbeats and the ring
gossip); --keys keys put through the nodes in turn; then one node is killed (SIGKILL) and
each of the other nodes' store is asked for the ring's member states every 50 ms until it
reports that node down: the time from the kill to the last one agreeing (must be <= 5 s);
then every key is read back through the survivors (lost must be 0). Ends with one line:

    scale: nodes=16 keys=2000 rss_mib_avg=... cpu_pct_avg=... gossip_tx_bytes_per_s_avg=...
    down_agreed_s_max=... lost=0 verdict=pass

Root only (tests/fault/harness.py makes and removes the namespaces and the bridge; also after
a failure or Ctrl-C). Exit status: 0 pass, 1 fail, 2 a harness error, 77 skipped.

    sudo tests/fault/scale.py --nodusd build/bin/nodusd
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
sys.path.insert(0, HERE)

import harness  # noqa: E402


# -- agents: run inside a node's namespace, linked to that node -------------------------------

def _connect(args, deadline):
    import nodus
    while True:
        node = nodus.Node(cookie_file=args.cookie_file)
        try:
            return node.connect(args.addr, harness.PORT, timeout_ms=2000)
        except nodus.NodusError:
            node.close()
            if time.time() >= deadline:
                raise
            time.sleep(0.2)


def _states(node):
    ring = node.kv.ring()
    return {(m[0].decode() if isinstance(m[0], bytes) else str(m[0])): str(m[1])
            for m in ring["members"]}


def agent_probe(args):
    node = _connect(args, time.time() + 5)
    try:
        print(json.dumps(_states(node)))
    finally:
        node.close()


def agent_load(args):
    import nodus
    node = _connect(args, time.time() + 5)
    failed = 0
    try:
        for k in range(args.first, args.keys, args.step):
            for attempt in range(5):
                try:
                    node.kv.put(b"s:%d" % k, b"v%d" % k)
                    break
                except nodus.NodusError:
                    if attempt == 4:
                        failed += 1
                    time.sleep(0.2)
    finally:
        node.close()
    print(json.dumps({"failed": failed}))


def agent_watch(args):
    """Prints "ready" once it sees --target up, then the wall time it saw it down."""
    node = _connect(args, time.time() + 5)
    try:
        deadline = time.time() + 30
        while _states(node).get(args.target) != "up" and time.time() < deadline:
            time.sleep(0.05)
        print("ready", flush=True)
        deadline = time.time() + args.limit
        while time.time() < deadline:
            if _states(node).get(args.target) == "down":
                print(json.dumps({"down_at": time.time()}), flush=True)
                return
            time.sleep(0.05)
        print(json.dumps({"down_at": None}), flush=True)
    finally:
        node.close()


def agent_read(args):
    import nodus
    node = _connect(args, time.time() + 5)
    lost, failed = [], 0
    try:
        for k in range(args.first, args.keys, args.step):
            for attempt in range(5):
                try:
                    if node.kv.get(b"s:%d" % k).value != b"v%d" % k:
                        lost.append(k)
                    break
                except nodus.NotFound:
                    lost.append(k)
                    break
                except nodus.NodusError:
                    if attempt == 4:
                        failed += 1
                    time.sleep(0.2)
    finally:
        node.close()
    print(json.dumps({"lost": lost[:20], "lost_count": len(lost), "failed": failed}))


# -- the driver ----------------------------------------------------------------------------------

def proc_figures(pid):
    """(resident bytes, CPU seconds used so far) of `pid`."""
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def veth_bytes(net, i):
    """(bytes node i sent, bytes it received): its veth's host end sees the reverse."""
    base = "/sys/class/net/%sh%d/statistics/" % (net.tag, i)
    with open(base + "rx_bytes") as f:
        sent = int(f.read())
    with open(base + "tx_bytes") as f:
        received = int(f.read())
    return sent, received


class Run:
    def __init__(self, args):
        self.args = args
        self.net = harness.Net(args.nodes)
        self.cluster = None
        self.t0 = time.monotonic()

    def say(self, text):
        print("scale: [%6.1f s] %s" % (time.monotonic() - self.t0, text), flush=True)

    def agent(self, i, mode, *extra):
        return ["ip", "netns", "exec", self.net.ns(i), sys.executable, os.path.abspath(__file__),
                mode, "--addr", self.net.addr(i), "--cookie-file", self.cluster.cookie_file,
                "--keys", str(self.args.keys)] + list(extra)

    def in_parallel(self, cmds, timeout):
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL) for c in cmds]
        outs = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate(timeout=5)
            outs.append((p.returncode, out, err))
        return outs

    def wait_formed(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        everyone = ["n%d" % i for i in range(1, self.args.nodes + 1)]
        last = None
        while time.monotonic() < deadline:
            self.cluster.check_alive()
            outs = self.in_parallel([self.agent(i, "probe")
                                     for i in range(1, self.args.nodes + 1)], 20)
            views = [json.loads(o) if c == 0 and o.strip() else {} for c, o, _ in outs]
            last = views
            if all(sorted(v) == sorted(everyone) and all(s == "up" for s in v.values())
                   for v in views):
                return
            time.sleep(0.5)
        raise RuntimeError("no ring of %d members all up within %d s (last views: %s)"
                           % (self.args.nodes, timeout_s, json.dumps(last)))

    def execute(self):
        a = self.args
        n = a.nodes
        self.net.create()
        work = os.path.join(a.out, "nodes")
        os.makedirs(work)
        self.cluster = harness.Cluster(self.net, a.nodusd, work, durable=False, partitions=64)
        self.cluster.start()
        self.say("%d nodes started; waiting for the mesh and the ring" % n)
        self.wait_formed(120)
        self.say("every node sees a ring of %d members, all up" % n)

        # Idle: no client linked (the probes have closed); a second to settle first.
        time.sleep(1)
        pids = {i: p.pid for i, p in self.cluster.procs.items()}
        before = {i: (proc_figures(pids[i]), veth_bytes(self.net, i)) for i in pids}
        t_idle = time.monotonic()
        time.sleep(a.idle)
        span = time.monotonic() - t_idle
        after = {i: (proc_figures(pids[i]), veth_bytes(self.net, i)) for i in pids}
        idle = {}
        for i in pids:
            (_, cpu0), (tx0, rx0) = before[i]
            (rss, cpu1), (tx1, rx1) = after[i]
            idle[i] = {"rss_mib": rss / 2**20, "cpu_pct": 100 * (cpu1 - cpu0) / span,
                       "tx_bytes_per_s": (tx1 - tx0) / span, "rx_bytes_per_s": (rx1 - rx0) / span}
        avg = {k: sum(v[k] for v in idle.values()) / n for k in next(iter(idle.values()))}
        mx = {k: max(v[k] for v in idle.values()) for k in next(iter(idle.values()))}
        self.say("idle %.1f s: per node rss %.1f MiB (max %.1f), cpu %.2f%% (max %.2f), sent "
                 "%.0f B/s (max %.0f), received %.0f B/s" % (
                     span, avg["rss_mib"], mx["rss_mib"], avg["cpu_pct"], mx["cpu_pct"],
                     avg["tx_bytes_per_s"], mx["tx_bytes_per_s"], avg["rx_bytes_per_s"]))

        # Keys, through every node in turn.
        outs = self.in_parallel([self.agent(i, "load", "--first", str(i - 1), "--step", str(n))
                                 for i in range(1, n + 1)], 300)
        load_failed = sum(json.loads(o)["failed"] if c == 0 and o.strip() else a.keys
                          for c, o, _ in outs)
        self.say("%d keys put (%d failed)" % (a.keys, load_failed))

        # The kill: watchers on every other node first, each ready once it sees the victim up.
        victim = n
        watchers = [subprocess.Popen(self.agent(i, "watch", "--target", "n%d" % victim,
                                                "--limit", "30"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL) for i in range(1, n)]
        for w in watchers:
            line = w.stdout.readline().strip()  # bounded: the watcher gives up within 35 s
            if line != "ready":
                raise RuntimeError("a watcher did not get ready: %r %s" % (line, w.stderr.read()))
        killed_at = time.time()
        self.cluster.kill(victim)
        self.say("n%d killed (SIGKILL)" % victim)
        down = []
        for w in watchers:
            try:
                out, _ = w.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                w.kill()
                out, _ = w.communicate(timeout=5)
            at = json.loads(out.strip().splitlines()[-1]).get("down_at") if out.strip() else None
            down.append(None if at is None else at - killed_at)
        agreed = None if None in down else max(down)
        self.say("the other %d saw n%d down after %s s" % (
            n - 1, victim, ", ".join("-" if d is None else "%.2f" % d for d in down)))

        # Every key, read through the survivors in turn.
        outs = self.in_parallel([self.agent(i, "read", "--first", str(i - 1), "--step",
                                            str(n - 1)) for i in range(1, n)], 300)
        lost, read_failed = 0, 0
        for c, o, e in outs:
            if c != 0 or not o.strip():
                raise RuntimeError("a reader failed: %s" % e.strip()[-500:])
            r = json.loads(o)
            lost += r["lost_count"]
            read_failed += r["failed"]
        ok = (agreed is not None and agreed <= 5.0 and lost == 0 and read_failed == 0 and
              load_failed == 0)
        summary = {"nodes": n, "keys": a.keys, "idle_s": round(span, 1), "idle": idle,
                   "down_after_s": down, "lost": lost, "read_failed": read_failed,
                   "load_failed": load_failed}
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print("scale: nodes=%d keys=%d rss_mib_avg=%.1f cpu_pct_avg=%.2f "
              "gossip_tx_bytes_per_s_avg=%.0f gossip_rx_bytes_per_s_avg=%.0f "
              "down_agreed_s_max=%s lost=%d read_failed=%d verdict=%s" % (
                  n, a.keys, avg["rss_mib"], avg["cpu_pct"], avg["tx_bytes_per_s"],
                  avg["rx_bytes_per_s"], "none" if agreed is None else "%.2f" % agreed, lost,
                  read_failed, "pass" if ok else "fail"), flush=True)
        return 0 if ok else 1

    def cleanup(self):
        if self.cluster is not None:
            self.cluster.stop()
        self.net.remove()


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("probe", "load", "watch", "read"):
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        ap.add_argument("--addr", required=True)
        ap.add_argument("--cookie-file", required=True)
        ap.add_argument("--keys", type=int, default=0)
        ap.add_argument("--first", type=int, default=0)
        ap.add_argument("--step", type=int, default=1)
        ap.add_argument("--target", default="")
        ap.add_argument("--limit", type=float, default=30)
        args = ap.parse_args()
        {"probe": agent_probe, "load": agent_load, "watch": agent_watch,
         "read": agent_read}[args.mode](args)
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodusd", default=os.path.join(HERE, "..", "..", "build", "bin", "nodusd"))
    ap.add_argument("--nodes", type=int, default=16, help="nodes (4..20; default 16)")
    ap.add_argument("--keys", type=int, default=2000, help="keys put before the kill")
    ap.add_argument("--idle", type=float, default=10, help="seconds the idle figures span")
    ap.add_argument("--out", default="fault-out/scale", help="configs, logs, summary.json")
    args = ap.parse_args()
    if not 4 <= args.nodes <= 20:
        ap.error("--nodes: %d is not in 4..20" % args.nodes)
    if args.keys < 1 or args.idle <= 0:
        ap.error("--keys and --idle must be positive")
    why = harness.available()
    if why:
        print("scale: skipped: %s" % why)
        return 77
    if not os.access(args.nodusd, os.X_OK):
        ap.error("--nodusd: %s is not an executable" % args.nodusd)
    args.nodusd = os.path.abspath(args.nodusd)
    args.out = os.path.abspath(args.out)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    harness.remove_leftovers(log=lambda s: print("scale: " + s))

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run = Run(args)
    code = 2
    try:
        code = run.execute()
    except KeyboardInterrupt:
        print("scale: interrupted; cleaning up", flush=True)
        code = 130
    except Exception as e:  # noqa: BLE001 (a harness error: reported, then cleaned up)
        print("scale: error: %s (files in %s)" % (e, args.out), flush=True)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
