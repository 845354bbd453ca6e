#!/usr/bin/python3
"""nodus-fault: the store under partitions, kills and pauses, its history checked.

Starts N real nodusd (default 5), each in a network namespace of its own on a bridge this
run creates (tests/fault/harness.py), one client process per node recording every operation
(tests/fault/workload.py), and a nemesis that follows a schedule drawn from the seed:
partitions (random halves, one node isolated, a bridge node that sees both sides), kill -9
and restart of one node or of every node at once (their data in kv.data_dir), SIGSTOP past
the failure detector and SIGCONT, each healed after a while. Then
it heals everything, waits a quiet period, reads every key with R = N and checks the set
workload: every acknowledged add present (lost = 0), nothing present that was never
attempted (phantom = 0). With ``--conflicts lww --expect-loss`` it is the control: last write
wins must lose acknowledged adds, or the checker sees nothing. Other workloads
(``--workload``): ``delete`` (deleted and expired keys stay gone: resurrected = 0),
``register`` (compare-and-set through the first primary, each key's history checked for
linearizability) and ``watch`` (every acknowledged change reaches a watcher on n1, in order,
or it was told it lost events).

Root only; everything it makes is removed at the end, also after a failure or Ctrl-C, and
leftovers of a run whose driver died are removed at the start. Exit status: 0 pass, 1 fail,
2 a harness error, 77 skipped (not root, or no network namespaces / nftables).

    sudo tools/fault.py --seed 7                      # 5 nodes, 60 s, siblings
    sudo tools/fault.py --seed 7 --conflicts lww --expect-loss
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "fault"))

import deletes  # noqa: E402
import harness  # noqa: E402
import names  # noqa: E402
import register  # noqa: E402
import watch  # noqa: E402
import workload  # noqa: E402

WORKLOAD = os.path.join(REPO, "tests", "fault", "workload.py")
NEMESES = ("halves", "isolate", "bridge", "kill", "pause", "crash-all", "skew", "join", "leave")
# Not in the default (their spare node changes every schedule): named with --nemesis.
MEMBERSHIP = ("join", "leave")
WORKLOADS = ("set", "delete", "register", "watch", "names")
WATCH_DRAIN_S = 6  # the watcher outlives the writers by this much, taking the last events
# The delete workload's nodes reap tombstones 1 s after every primary holds them, sweep
# expired values every 0.2 s and exchange anti-entropy trees every second, so that reaping,
# expiry, hand-off and anti-entropy all happen while the nemesis runs.
DELETE_KV = ("tombstone_ttl = 1", "ttl_sweep_interval_ms = 200", "aae_exchange_interval_ms = 1000")
LIBFAKETIME = (glob.glob("/usr/lib/*/faketime/libfaketime.so.1") or
               ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"])[0]  # Debian's faketime


def schedule(seed, n, seconds, nemeses):
    """The nemesis steps of a run, drawn from `seed` alone: a list of dicts with ``at`` and
    ``until`` (seconds from the start), ``kind`` and its nodes. One fault at a time, each
    healed (``until``) before the next begins; the kinds come in shuffled rounds, so a run
    of five steps has seen each of the five."""
    rng = random.Random("nemesis/%d" % seed)
    steps, t, bag = [], 3.0, []
    nodes = list(range(1, n + 1))
    while nemeses:
        if not bag:
            bag = list(nemeses)
            rng.shuffle(bag)
        kind = bag.pop()
        length = rng.uniform(3.0, 7.0)
        if t + length > seconds - 2:
            break
        step = {"at": round(t, 2), "until": round(t + length, 2), "kind": kind}
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        if kind == "halves":
            half = n // 2
            step["sides"] = [sorted(shuffled[:half]), sorted(shuffled[half:])]
        elif kind == "isolate":
            step["sides"] = [[shuffled[0]], sorted(shuffled[1:])]
        elif kind == "bridge":
            b, rest = shuffled[0], shuffled[1:]
            half = len(rest) // 2
            step["sides"] = [sorted(rest[:half] + [b]), sorted(rest[half:] + [b])]
            step["bridge"] = b
        elif kind == "crash-all":
            step["nodes"] = nodes
        elif kind == "skew":
            step["node"] = shuffled[0]
            step["seconds"] = rng.choice((-60, 60))
        elif kind in MEMBERSHIP:
            step["pick"] = rng.randrange(1 << 16)  # which member leaves, as the ring is then
        else:  # kill, pause
            step["node"] = shuffled[0]
            if kind == "pause":  # past the failure detector (down_after 2 s)
                step["until"] = round(t + max(length, 3.0), 2)
        steps.append(step)
        t = step["until"] + rng.uniform(1.5, 3.0)
    return steps


class Run:
    def __init__(self, args):
        self.args = args
        # With join or leave, one node more than --nodes: a candidate at first (no client).
        self.spare = 1 if set(args.nemesis.split(",")) & set(MEMBERSHIP) else 0
        self.net = harness.Net(args.nodes + self.spare)
        self.cluster = None
        self.clients = []
        reset_out(args.out)
        self.t0 = time.monotonic()
        self.nemesis_log = harness.Log(os.path.join(args.out, "nemesis.jsonl"), self.t0)
        self.heal_walls = []  # when each fault was healed

    def say(self, text):
        print("fault: [%6.1f s] %s" % (time.monotonic() - self.t0, text), flush=True)

    def netns_python(self, i, mode, *extra):
        """The command that runs workload.py `mode` in node i's namespace, linked to it."""
        return ["ip", "netns", "exec", self.net.ns(i), sys.executable, WORKLOAD, mode,
                "--addr", self.net.addr(i), "--cookie-file", self.cluster.cookie_file,
                "--keys", str(self.args.keys), "--workload", self.args.workload] + list(extra)

    def ring_views(self):
        views = {}
        for i in self.cluster.running():
            if i in self.cluster.paused:
                continue
            p = subprocess.run(self.netns_python(i, "probe"), capture_output=True, text=True,
                               timeout=15)
            if p.returncode == 0 and p.stdout.strip():
                views[i] = json.loads(p.stdout)
        return views

    def wait_formed(self, timeout_s):
        """Until every node's ring has every member up and every partition owned."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            self.cluster.check_alive()
            views = self.ring_views()
            last = views
            rings = {(v["epoch"], tuple(sorted(m for m, _ in v["members"])))
                     for v in views.values()}
            if len(views) == len(self.cluster.running()) and len(rings) == 1 and all(
                    v["epoch"] >= 1 and v["owners"] == v["partitions"] and
                    len(v["members"]) >= min(3, self.args.nodes) and not v["transfers"] and
                    not v["leaving"] and
                    all(state == "up" for _, state in v["members"]) for v in views.values()):
                return sorted(m for m, _ in next(iter(views.values()))["members"])
            time.sleep(0.5)
        raise RuntimeError("the cluster did not mesh and form its ring within %d s (last "
                           "views: %s)" % (timeout_s, json.dumps(last)))

    def start_clients(self, until):
        hist = os.path.join(self.args.out, "history")
        os.makedirs(hist, exist_ok=True)
        cid = 0
        for i in range(1, self.args.nodes + 1):
            for _ in range(self.args.clients_per_node):
                cid += 1
                out = os.path.join(hist, "client-%d.jsonl" % cid)
                err = open(os.path.join(hist, "client-%d.err" % cid), "w")
                role = "watcher" if cid == 1 else "writer"
                end = until + WATCH_DRAIN_S if role == "watcher" else until
                cmd = self.netns_python(i, "worker", "--client", str(cid), "--seed",
                                        str(self.args.seed), "--t0", str(self.wall0),
                                        "--until", str(end), "--out", out,
                                        "--rate", str(self.args.rate), "--role", role,
                                        "--names", str(self.args.names))
                if self.args.workload == "names":  # a registration may wait out lock rounds
                    cmd += ["--timeout-ms", "5000"]
                self.clients.append((subprocess.Popen(cmd, stdout=err, stderr=err,
                                                      stdin=subprocess.DEVNULL,
                                                      start_new_session=True), out))
                err.close()

    def stop_clients(self, grace_s):
        """Waits for the clients to reach their deadline and exit; one that failed or had to
        be killed is a harness error (its history would end early), named with its stderr."""
        deadline = time.monotonic() + grace_s
        bad = []
        for p, out in self.clients:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            if p.returncode != 0:
                err = out[:-len(".jsonl")] + ".err"
                with open(err, errors="replace") as f:
                    bad.append("%s exited %d: %s" % (err, p.returncode, f.read()[-600:]))
        if bad:
            raise RuntimeError("a client failed (not the store: the harness):\n" +
                               "\n".join(bad))

    def membership(self, step):
        """A join (the highest running node not in the ring: the spare, else one that left) or a
        leave (a member other than n1, which the final read goes through, drawn with the
        step's pick among the ring's members then, while at least 4 stay), staged and
        committed through n1, retried until the step's end; what happened goes into the
        step (logged)."""
        p = subprocess.run(self.netns_python(1, "probe"), capture_output=True, text=True,
                           timeout=15)
        view = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None
        members = sorted(int(m[1:]) for m, _ in view["members"]) if view else []
        if step["kind"] == "join":
            out = [i for i in self.cluster.running() if i not in members]
        else:
            out = [i for i in members if i != 1] if len(members) > 4 else []
        if not out:
            step["outcome"] = "no node to %s (members %s)" % (step["kind"], members)
            return
        target = out[-1] if step["kind"] == "join" else out[step["pick"] % len(out)]
        step["node"] = target
        p = subprocess.run(self.netns_python(1, "cluster", "--action", step["kind"], "--target",
                                             "n%d" % target, "--until",
                                             str(time.time() + max(1.0, step["until"] -
                                                                   step["at"]))),
                           capture_output=True, text=True, timeout=60)
        try:
            step["outcome"] = json.loads(p.stdout)
        except ValueError:
            step["outcome"] = "cluster %s failed: %s" % (step["kind"], p.stderr.strip()[-300:])

    def nemesis(self, steps):
        """Follows `steps` in time; a fault's heal comes at its ``until``."""
        for step in steps:
            self.sleep_until(step["at"])
            kind = step["kind"]
            if kind in MEMBERSHIP:
                self.membership(step)
            elif kind in ("halves", "isolate", "bridge"):
                self.net.partition([set(s) for s in step["sides"]])
            elif kind == "kill":
                self.cluster.kill(step["node"])
            elif kind == "crash-all":
                for i in step["nodes"]:  # at once: signals first, then the waits
                    self.cluster.procs[i].send_signal(signal.SIGKILL)
                for i in step["nodes"]:
                    self.cluster.kill(i)
            elif kind == "pause":
                self.cluster.pause(step["node"])
            elif kind == "skew":
                self.cluster.skew(step["node"], step["seconds"])
            self.nemesis_log(event="start", **step)
            self.say("nemesis %s %s %s" % (kind, step.get("sides", step.get("node", "")),
                                           "%+d s" % step["seconds"] if "seconds" in step else
                                           json.dumps(step["outcome"]) if "outcome" in step
                                           else ""))
            self.sleep_until(step["until"])
            self.heal(kind, step)

    def heal(self, kind, step):
        if kind in ("halves", "isolate", "bridge"):
            self.net.heal()
        elif kind == "kill":
            self.cluster.start(step["node"])
        elif kind == "crash-all":
            self.cluster.start()
        elif kind == "pause":
            self.cluster.resume(step["node"])
        elif kind == "skew":
            self.cluster.skew(step["node"], 0)
        # join and leave: nothing to undo (the ring's change stays; its transfers go on).
        self.heal_walls.append(self.nemesis_log(event="heal", kind=kind)["wall"])

    def sleep_until(self, at):
        """Sleeps until `at` s after the workload began, checking the nodes every 0.2 s."""
        while True:
            left = self.work0 + at - time.monotonic()
            if left <= 0:
                return
            self.cluster.check_alive()
            time.sleep(min(0.2, left))

    def execute(self):
        a = self.args
        why = harness.available()
        if why:
            print("fault: skipped: %s" % why, flush=True)
            return 77
        harness.remove_leftovers(log=self.say)
        self.say("namespaces %s..%s on bridge %s, %s.0/24" % (
            self.net.ns(1), self.net.ns(self.net.n), self.net.bridge, harness.SUBNET))
        self.net.create()
        workdir = os.path.join(a.out, "nodes")
        os.makedirs(workdir, exist_ok=True)
        nemeses = [k for k in a.nemesis.split(",") if k]
        self.cluster = harness.Cluster(self.net, a.skew_nodusd or a.nodusd, workdir,
                                       conflicts=a.conflicts, durable=not a.memory,
                                       faketime=LIBFAKETIME if "skew" in nemeses else None,
                                       kv_extra=DELETE_KV if a.workload == "delete" else (),
                                       members=a.nodes)
        self.cluster.start()
        self.wait_formed(60)
        self.say("%d nodes meshed, ring formed%s; workload for %d s" % (
            a.nodes, ", n%d a candidate" % (a.nodes + 1) if self.spare else "", a.time))
        for kind in ("kill", "crash-all"):
            if a.memory and kind in nemeses:
                nemeses.remove(kind)  # a memory node restarts empty: kills lose data by design
        if a.workload == "names" and "crash-all" in nemeses:
            nemeses.remove("crash-all")  # global names live in memory: all forgotten at once
            self.say("names: crash-all left out (global names and their fences live in memory)")
        steps = schedule(a.seed, a.nodes + self.spare, a.time, nemeses)
        with open(os.path.join(a.out, "schedule.json"), "w") as f:
            json.dump(steps, f, indent=1)
        self.wall0 = time.time()
        self.work0 = time.monotonic()
        self.start_clients(self.wall0 + a.time)
        self.nemesis(steps)
        self.sleep_until(a.time)
        heal_wall = time.time()
        self.nemesis_log(event="heal-all")
        self.stop_clients(10)
        self.say("workload done; every fault healed; final read in %d s" % a.quiet)
        members = self.wait_formed(60 if self.spare else 30)
        if self.spare:
            self.say("ring members at the end: %s" % " ".join(members))
        histories = [out for _, out in self.clients]
        if a.workload == "names":
            return self.report(self.check_names(histories, heal_wall), steps)
        key_file = os.path.join(a.out, "keys.json")
        with open(key_file, "w") as f:
            json.dump(workload.keys_in(histories), f)
        final_cmd = self.netns_python(1, "final", "--key-file", key_file, "--converge-s",
                                      str(a.converge), "--not-before",
                                      str(heal_wall + a.quiet), "--timeout-s", "40")
        p = subprocess.run(final_cmd,
                           capture_output=True, text=True,
                           timeout=2 * a.converge + a.quiet + 70)
        if p.returncode != 0:
            raise RuntimeError("the final read failed: %s" % p.stderr.strip()[-2000:])
        final = json.loads(p.stdout)
        with open(os.path.join(a.out, "final.json"), "w") as f:
            json.dump(final, f)
        if a.workload == "delete":
            result = deletes.check(histories, final)
        elif a.workload == "register":
            result = register.check(histories)
            result["final_read_errors"] = final["errors"]
        elif a.workload == "watch":
            result = watch.check(histories)
            result["final_read_errors"] = final["errors"]
        else:
            result = workload.check(histories, final)
        result["convergence_s"] = (None if final.get("converged_wall") is None
                                   else round(final["converged_wall"] - heal_wall, 1))
        # What bounds it: the last fault's heal (before the end of the workload, `heal_wall`),
        # the first check (after the clients stopped and the ring was whole), and the checks
        # made (1: every key agreed when first asked, so it converged before that).
        result["last_heal_s"] = (round(max(self.heal_walls) - heal_wall, 1) if self.heal_walls
                                 else None)
        if "first_check_wall" in final:
            result["first_check_s"] = round(final["first_check_wall"] - heal_wall, 1)
            result["convergence_checks"] = final.get("checks")
        result["keys"] = len(final["keys"])
        result["diverged_keys"] = final.get("diverged_keys", 0)
        result["diverged_sample"] = final.get("diverged", {})
        after = final.get("converged_after_read_wall")
        result["converged_after_read"] = (None if "diverged_after_read" not in final else
                                          after is not None)
        return self.report(result, steps)

    def check_names(self, histories, heal_wall):
        """Every node's table of global names after the heal (until they agree, bounded),
        checked against the histories (names.check)."""
        a = self.args
        cmd = self.netns_python(1, "final", "--converge-s", str(max(a.converge, a.quiet)),
                                "--expect-nodes", str(len(self.cluster.running())))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.converge + a.quiet + 60)
        if p.returncode != 0:
            raise RuntimeError("the final tables: %s" % p.stderr.strip()[-2000:])
        final = json.loads(p.stdout)
        with open(os.path.join(a.out, "final.json"), "w") as f:
            json.dump(final, f)
        result = names.check(histories, final)
        result["convergence_s"] = (None if final.get("converged_wall") is None
                                   else round(final["converged_wall"] - heal_wall, 1))
        result["diverged_keys"] = 0 if final.get("converged_wall") else 1
        if not final.get("converged_wall"):
            result["final_read_errors"] = result["final_read_errors"] or [
                "the nodes' tables did not agree within %d s" % max(a.converge, a.quiet)]
        return result

    def report(self, r, steps):
        a = self.args
        clean = not r["final_read_errors"]
        if a.workload == "names":
            bad = ("duplicates", "split", "epoch_fell", "lost", "phantom", "twin_epochs")
            ok = clean and not any(r[what] for what in bad)
            figures = ("names=%d held=%d acked_held=%d superseded=%d died_with_node=%d "
                       "already_started=%d duplicates=%d split=%d epoch_fell=%d lost=%d "
                       "phantom=%d twin_epochs=%d" % (
                           r["names"], r["held"], r["acked_held"], r["superseded"],
                           r["died_with_node"], r["already_started"], r["duplicates"],
                           r["split"], r["epoch_fell"], r["lost"], r["phantom"],
                           r["twin_epochs"]))
        elif a.workload == "delete":
            ok = clean and not (r["resurrected"] or r["lost"] or r["phantom"] or
                                r["failed_present"])
            figures = ("deleted=%d expired=%d kept=%d resurrected=%d lost=%d phantom=%d "
                       "failed_present=%d" % (r["deleted"], r["expired"], r["kept"],
                                              r["resurrected"], r["lost"], r["phantom"],
                                              r["failed_present"]))
            bad = ("resurrected", "lost", "phantom", "failed_present")
        elif a.workload == "register":
            ok = clean and r["nonlinearizable"] == 0 and r["undecided"] == 0
            figures = ("cas_ok=%d keys=%d linearizable=%d nonlinearizable=%d undecided=%d "
                       "sibling_reads=%d" % (r["cas_ok"], r["keys"], r["linearizable"],
                                             r["nonlinearizable"], r["undecided"],
                                             r["sibling_reads"]))
            bad = ()
        elif a.workload == "watch":
            ok = clean and not (r["missed"] or r["out_of_order"] or r["duplicates"] or
                                r["phantom"])
            figures = ("events=%d watches=%d lost_watch=%d excused=%d missed=%d "
                       "out_of_order=%d duplicates=%d phantom=%d" % (
                           r["events"], r["watches"], r["lost_watch"], r["excused"],
                           r["missed"], r["out_of_order"], r["duplicates"], r["phantom"]))
            bad = ("missed", "out_of_order", "duplicates", "phantom")
        else:
            if a.expect_loss:
                ok = r["lost"] > 0 and r["phantom"] == 0 and clean
            else:
                ok = (r["lost"] == 0 and r["phantom"] == 0 and r["failed_present"] == 0 and
                      clean)
            figures = ("unknown_present=%d lost=%d phantom=%d failed_present=%d" % (
                r["unknown_present"], r["lost"], r["phantom"], r["failed_present"]))
            bad = ("lost", "phantom", "failed_present")
        r.update(workload=a.workload, conflicts=a.conflicts, seed=a.seed, nodes=a.nodes,
                 seconds=a.time, nemesis_steps=len(steps), verdict="pass" if ok else "fail",
                 replay=self.replay())
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(r, f, indent=1)
        conv = "none" if r["convergence_s"] is None else r["convergence_s"]
        line = ("fault: workload=%s conflicts=%s seed=%d nodes=%d ops=%d ok=%d fail=%d "
                "unknown=%d %s nemesis_steps=%d convergence_s=%s diverged=%d verdict=%s" % (
                    a.workload, a.conflicts, a.seed, a.nodes, r["ops"], r["ok"], r["fail"],
                    r["unknown"], figures, len(steps), conv, r["diverged_keys"],
                    r["verdict"]))
        if not ok:
            if a.expect_loss and r["lost"] == 0:
                print("fault: the lww control lost nothing: the checker (or the workload) "
                      "does not see what last write wins drops", flush=True)
            for what in bad:
                if r[what]:
                    print("fault: %s (first 20): %s" % (what, r[what + "_sample"]))
            for failure in r.get("failures", [])[:3]:
                print("fault: not linearizable: key %s, no order explains %s (at %.3f; "
                      "the configurations then: %s)" % (failure["key"], failure["op"],
                                                         failure["at"], failure["configs"]))
            if r["final_read_errors"]:
                print("fault: final read errors: %s" % r["final_read_errors"])
            print("fault: history and summary in %s; replay: %s" % (a.out, self.replay()),
                  flush=True)
        print(line, flush=True)
        return 0 if ok else 1

    def replay(self):
        return replay_command(self.args)

    def cleanup(self):
        for p, _ in self.clients:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        if self.cluster is not None:
            self.cluster.stop()
        self.net.remove()
        self.nemesis_log.close()


OUT_FILES = ("history", "nodes", "schedule.json", "nemesis.jsonl", "keys.json", "final.json",
             "summary.json")


def reset_out(out):
    """Makes `out` empty of a previous run's files (its nodes' data above all), refusing a
    folder that holds anything else."""
    os.makedirs(out, exist_ok=True)
    other = sorted(set(os.listdir(out)) - set(OUT_FILES))
    if other:
        raise SystemExit("fault: --out %s holds other files (%s): give an empty or new folder"
                         % (out, ", ".join(other[:5])))
    for name in OUT_FILES:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def replay_command(a):
    """The command that runs `a`'s run again (same seed, schedule and clients' choices)."""
    cmd = ["tools/fault.py", "--workload", a.workload, "--seed", str(a.seed), "--nodes",
           str(a.nodes), "--time",
           str(a.time), "--conflicts", a.conflicts, "--nemesis=" + a.nemesis, "--keys",
           str(a.keys), "--clients-per-node", str(a.clients_per_node), "--quiet", str(a.quiet),
           "--converge", str(a.converge), "--rate", str(a.rate)]
    if a.workload == "names":
        cmd += ["--names", str(a.names)]
    if a.skew_nodusd:
        cmd += ["--skew-nodusd", a.skew_nodusd]
    if a.memory:
        cmd.append("--memory")
    if a.expect_loss:
        cmd.append("--expect-loss")
    return " ".join(cmd)


def main():
    ap = argparse.ArgumentParser(
        description="nodus-fault: real nodusd nodes in network namespaces under a nemesis, "
                    "the set workload's history checked (root only).")
    ap.add_argument("--nodusd", default=os.environ.get("NODUSD") or
                    os.path.join(REPO, "build", "bin", "nodusd"), help="the nodusd binary")
    ap.add_argument("--workload", choices=WORKLOADS, default="set", help="set (unique "
                    "adds, lost = 0), delete (deleted and expired keys stay gone, "
                    "resurrected = 0), register (compare-and-set, linearizable per key) or "
                    "watch (every acknowledged change reaches a watcher on n1, in order, "
                    "or it was told it lost events) or names (global names registered and "
                    "re-registered: after the heal none held twice, epochs only grew)")
    ap.add_argument("--nodes", type=int, default=5, help="nodes (2..20; default 5)")
    ap.add_argument("--seed", type=int, default=None, help="fixes the schedule and the "
                    "clients' choices (default: random, printed)")
    ap.add_argument("--time", type=int, default=60, help="seconds of workload and nemesis")
    ap.add_argument("--quiet", type=int, default=5, help="seconds after the heal before the "
                    "final read")
    ap.add_argument("--converge", type=int, default=30, help="seconds to wait for every "
                    "key's replicas to agree after the heal, before the final read")
    ap.add_argument("--conflicts", choices=["siblings", "lww"], default="siblings")
    ap.add_argument("--expect-loss", action="store_true", help="the control: pass only when "
                    "acknowledged adds were lost (with --conflicts lww)")
    ap.add_argument("--nemesis", default=None,
                    help="comma-separated, of %s; empty for none (default: all but join "
                    "and leave, skew only with --skew-nodusd; join or leave adds a node, a "
                    "candidate at first)" % ",".join(NEMESES))
    ap.add_argument("--skew-nodusd", default=None, help="a nodusd linked without jemalloc "
                    "(cmake -DNODUS_JEMALLOC=OFF), which the skew nemesis runs every node as, "
                    "under libfaketime (Debian's faketime), which cannot start under jemalloc")
    ap.add_argument("--memory", action="store_true", help="no kv.data_dir (kills are left "
                    "out: a memory node restarts empty)")
    ap.add_argument("--clients-per-node", type=int, default=1)
    ap.add_argument("--keys", type=int, default=5, help="keys the adds (set) or "
                    "compare-and-sets (register) spread over at a time")
    ap.add_argument("--names", type=int, default=100, help="global names the names "
                    "workload registers and re-registers (default 100)")
    ap.add_argument("--rate", type=float, default=None, help="operations per second per "
                    "client at most (delete: keys; default: set and register unbounded, "
                    "delete 20, watch 50)")
    ap.add_argument("--out", default=None, help="where the histories, the schedule and the "
                    "summary go (default fault-out/seed-S-CONFLICTS)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    if args.rate is None:
        args.rate = {"delete": 20.0, "watch": 50.0, "names": 20.0}.get(args.workload, 0.0)
    if args.rate < 0 or args.rate > 100000:
        ap.error("--rate: 0 to 100000 per second, not %s" % args.rate)
    if args.expect_loss and args.workload != "set":
        ap.error("--expect-loss: the set workload's control only")
    if not 2 <= args.nodes <= 20:
        ap.error("--nodes: 2 to 20, not %d" % args.nodes)
    if args.time < 5 or args.time > 3600:
        ap.error("--time: 5 to 3600 s, not %d" % args.time)
    if args.nemesis is None:
        args.nemesis = ",".join(k for k in NEMESES if k not in MEMBERSHIP and
                                (k != "skew" or args.skew_nodusd))
    bad = [k for k in args.nemesis.split(",") if k and k not in NEMESES]
    if bad:
        ap.error("--nemesis: unknown %s (known: %s)" % (",".join(bad), ",".join(NEMESES)))
    if "skew" in args.nemesis.split(","):
        if not args.skew_nodusd or not os.access(args.skew_nodusd, os.X_OK):
            ap.error("--nemesis skew needs --skew-nodusd: a nodusd built with "
                     "-DNODUS_JEMALLOC=OFF (libfaketime cannot start under jemalloc)")
        if not os.path.exists(LIBFAKETIME):
            ap.error("--nemesis skew: %s is missing (apt-get install faketime)" % LIBFAKETIME)
        args.skew_nodusd = os.path.abspath(args.skew_nodusd)
    if not os.access(args.nodusd, os.X_OK):
        ap.error("--nodusd: %s is not an executable (build it: cmake --build build --target "
                 "nodusd)" % args.nodusd)
    args.nodusd = os.path.abspath(args.nodusd)
    args.out = os.path.abspath(args.out or "fault-out/%s-seed-%d-%s" % (
        args.workload, args.seed, args.conflicts))
    print("fault: seed=%d (replay: %s)" % (args.seed, replay_command(args)), flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started ignoring it
    run = Run(args)
    code = 2
    try:
        code = run.execute()
    except KeyboardInterrupt:
        print("fault: interrupted; cleaning up", flush=True)
        code = 130
    except Exception as e:  # noqa: BLE001 (a harness error: reported, then cleaned up)
        print("fault: error: %s\nfault: seed=%d; replay: %s; files in %s" % (
            e, args.seed, run.replay(), args.out), flush=True)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
