"""The fault suite's clients and the set workload's checker.

Run as a program inside a node's namespace (``ip netns exec NS python3 workload.py MODE``),
a client links to that one node as a hidden node (clients/python) and:

- ``worker``: adds unique elements to a few keys until a wall-clock deadline, each add a
  get, the union of the siblings it returned plus the element, and a put with the get's
  context; every operation is a JSON line: ``invoke``, then ``ok``, ``fail`` (it did not
  happen: the get failed, or the put was refused before anything was stored) or ``info``
  (unknown: a put that timed out, went to a node that went down, or missed its quorum
  after replicas may have stored it).
- ``probe``: prints the ring as the node sees it (JSON), for the driver's waits.
- ``final``: after the heal, first waits (bounded) until every key's primaries hold the same
  object (``explain``'s digests: hinted hand-off and the like, before any read repairs), then
  reads every key with R = N, retrying within a bound, and prints the elements (JSON).

An element is ``client << 20 | sequence``; a set's value is its elements as little-endian
uint32s, sorted. ``check()`` reads the histories and the final read: lost (acknowledged, not
read), phantom (read, never attempted), failed_present (read, though its put was refused:
a refusal that lied).
"""

import argparse
import json
import os
import random
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
sys.path.insert(0, HERE)

import deletes  # noqa: E402
import history  # noqa: E402
import names  # noqa: E402
import register  # noqa: E402
import watch  # noqa: E402

PORT = 7000


def encode(elements):
    return struct.pack("<%dI" % len(elements), *sorted(elements))


def decode(value):
    if len(value) % 4:
        raise ValueError("a set value of %d bytes (not a multiple of 4)" % len(value))
    return set(struct.unpack("<%dI" % (len(value) // 4), value))


def key_name(group, k):
    """Keys come in groups so that no set grows without bound: a client's `seq`-th add goes
    to a key of group seq // ops_per_group (clients at a like pace share a group)."""
    return "set:%d:%d" % (group, k)


def _connect(nodus, cookie_file, addr, deadline):
    while True:
        node = nodus.Node(cookie_file=cookie_file)
        try:
            return node.connect(addr, PORT, timeout_ms=2000)
        except nodus.NodusError:
            node.close()
            if time.time() >= deadline:
                raise
            time.sleep(0.2)


def worker(args):
    import nodus
    rng = random.Random("%d/%d" % (args.seed, args.client))
    record = history.Recorder(args.out, args.t0, args.client)
    node = _connect(nodus, args.cookie_file, args.addr, args.until)
    if args.workload != "set":
        try:
            if args.workload == "watch":
                if args.role == "watcher":
                    watch.watcher(args, nodus, node, record, args.until)
                else:
                    watch.writer(args, nodus, node, record)
            else:
                other = {"delete": deletes, "register": register, "names": names}[args.workload]
                other.worker(args, nodus, node, rng, record)
        finally:
            record.close()
            node.close()
        return
    seq = 0
    try:
        while time.time() < args.until and seq < (1 << 20) - 1:
            seq += 1
            element = args.client << 20 | seq
            k = key_name(seq // args.ops_per_group, rng.randrange(args.keys))
            record(type="invoke", f="add", key=k, value=element)
            try:
                try:
                    obj = node.kv.get(k, timeout_ms=args.timeout_ms)
                    have, context = set(), obj.context
                    for v in obj.values:
                        have |= decode(v)
                except nodus.NotFound:
                    have, context = set(), None
            except nodus.NodusError as e:
                record(type="fail", f="add", key=k, value=element, error="get: " + e.name)
                time.sleep(0.05)  # the node is unreachable or the quorum is: don't spin
                continue
            have.add(element)
            try:
                node.kv.put(k, encode(have), context=context, timeout_ms=args.timeout_ms)
                record(type="ok", f="add", key=k, value=element)
            except nodus.NodusError as e:
                record(type=history.outcome(e.name), f="add", key=k, value=element, error="put: " + e.name)
                time.sleep(0.05)
    finally:
        record.close()
        node.close()


def probe(args):
    import nodus
    node = _connect(nodus, args.cookie_file, args.addr, time.time() + 3)
    try:
        ring = node.kv.ring()
        members = [(str(m[0].decode() if isinstance(m[0], bytes) else m[0]), str(m[1]))
                   for m in ring["members"]]
        print(json.dumps({"epoch": ring["epoch"], "members": members,
                          "owners": len(ring["owners"]), "partitions": ring["partitions"],
                          "transfers": len(ring.get("transfers", [])),
                          "leaving": [str(_text(m)) for m in ring.get("leaving", [])]}))
    finally:
        node.close()


def _text(b):
    return b.decode(errors="replace") if isinstance(b, bytes) else str(b)


def cluster(args):
    """Stages `args.action` (join or leave) of `args.target` at the claimant, through the
    linked node, and commits it, retrying both until `args.until` (a commit waits while
    partitions of the ring are still moving); prints what happened (JSON): ``committed`` and
    the ring's epoch, or the last refusal."""
    import nodus
    from nodus.terms import Atom
    node = _connect(nodus, args.cookie_file, args.addr, time.time() + 5)
    out = {"action": args.action, "node": args.target, "committed": False, "tries": 0}
    staged = False
    try:
        home = ("nodus_kv", node.peers()[0])
        while time.time() < args.until and out["tries"] < 200:
            out["tries"] += 1
            try:
                if not staged:
                    reply = node.call(home, (Atom("cluster"), Atom(args.action),
                                             args.target.encode()), 3000)
                    if reply != "ok" and "staged already" not in repr(reply):
                        out["error"] = repr(reply)[:300]
                        time.sleep(0.3)
                        continue
                    staged = True
                reply = node.call(home, (Atom("cluster"), Atom("commit")), 3000)
                if isinstance(reply, tuple) and reply[0] == "ok":
                    out.update(committed=True, epoch=reply[1]["epoch"],
                               moves=len(reply[1]["moves"]))
                    out.pop("error", None)
                    break
                out["error"] = repr(reply)[:300]
                if "nothing" in out["error"] or "staged" in out["error"]:
                    staged = False  # the claimant dropped it (another claimant, a restart)
            except nodus.NodusError as e:
                out["error"] = str(e)[:300]
                staged = False
            time.sleep(0.3)
    finally:
        node.close()
    print(json.dumps(out))


def final(args):
    import nodus
    node = _connect(nodus, args.cookie_file, args.addr, time.time() + 10)
    if args.workload == "names":
        try:
            print(json.dumps(names.final(args, nodus, node)))
        finally:
            node.close()
        return
    with open(args.key_file) as f:
        keys = json.load(f)
    result = {"keys": {}, "errors": []}
    try:
        # Convergence first, before any read repairs: every primary of every key holds the
        # same object, by hinted hand-off and whatever else the store does on its own. When
        # the first check began, and how many there were (1: they agreed when first asked, so
        # the time is an upper bound set by the driver's waits before it).
        result["first_check_wall"] = time.time()
        checks = {}
        (result["converged_wall"], result["diverged_keys"],
         result["diverged"]) = _converge(nodus, node, keys, args.converge_s, checks)
        result["checks"] = checks.get("polls", 0)
        while time.time() < args.not_before:
            time.sleep(0.1)
        deadline = time.time() + args.timeout_s
        for name in keys:
            while True:
                try:
                    obj = node.kv.get(name, r=args.r, timeout_ms=5000)
                    if args.workload != "set":  # the values as read, for its own checker
                        result["keys"][name] = {"values": [v.hex() for v in obj.values],
                                                "wall": time.time()}
                        break
                    elements = set()
                    for v in obj.values:
                        elements |= decode(v)
                    result["keys"][name] = {"elements": sorted(elements),
                                            "siblings": len(obj.values)}
                    break
                except nodus.NotFound:
                    result["keys"][name] = ({"elements": [], "siblings": 0}
                                            if args.workload == "set" else
                                            {"values": [], "wall": time.time()})
                    break
                except nodus.NodusError as e:
                    if time.time() >= deadline:
                        result["errors"].append("%s: %s" % (name, e))
                        break
                    time.sleep(0.3)
        # Then once more: the R = N reads repaired what they found behind.
        if result["diverged"]:
            (result["converged_after_read_wall"], result["diverged_after_read_keys"],
             result["diverged_after_read"]) = _converge(nodus, node, keys, args.converge_s)
    finally:
        node.close()
    print(json.dumps(result))


def _converge(nodus, node, names, seconds, stats=None):
    """Polls until every key's primaries agree: (the wall time they did or None, how many keys
    still differed at the deadline, and 20 of them with what each primary held). Counts the
    polls in ``stats["polls"]`` when given."""
    deadline = time.time() + seconds
    pending = list(names)
    detail = {}
    stats = {} if stats is None else stats
    while True:
        stats["polls"] = stats.get("polls", 0) + 1
        still = []
        for name in pending:
            try:
                agree, detail[name] = _primaries_agree(node, name)
            except nodus.NodusError as e:
                agree, detail[name] = False, str(e)
            if not agree:
                still.append(name)
        pending = still
        if not pending:
            return time.time(), 0, {}
        if time.time() >= deadline:
            return None, len(pending), {name: detail[name] for name in pending[:20]}
        time.sleep(0.3)


def _primaries_agree(node, key):
    """(whether every primary of `key` is up and holds the same object and no hint is left,
    what each primary holds: node -> digest, and the hints)."""
    reply = node.call(("nodus_kv", node.peers()[0]), ("explain", key.encode(), {}), 6000)
    if not (isinstance(reply, tuple) and reply[0] == "ok"):
        return False, repr(reply)
    digests, detail = set(), {}
    up = True
    for r in reply[1]["preflist"]:
        if str(r["role"]) == "primary":
            up = up and str(r["state"]) == "up"
            digest = r["digest"]
            digest = digest.decode() if isinstance(digest, bytes) else str(digest)
            who = r["node"]
            detail[who.decode() if isinstance(who, bytes) else str(who)] = digest
            digests.add(digest)
    hints = len(reply[1]["hints"])
    if hints:
        detail["hints"] = hints
    return up and len(digests) == 1 and not hints, detail


# -- the checker ---------------------------------------------------------------------------

def keys_in(history_files):
    """The keys the histories' adds went to, sorted."""
    keys = set()
    for op in history.ops(history_files):
        if op.get("key"):  # the watcher's own lines (watch, lost, end) name none
            keys.add(op["key"])
    return sorted(keys)


def check(history_files, final_result):
    """The set workload's verdict from the clients' histories and the final read."""
    attempted, acked, failed, unknown = set(), set(), set(), set()
    ops = 0
    by_type = {"ok": 0, "fail": 0, "info": 0}
    key_of = {}
    for path in history_files:
        pending = {}
        for op in history.ops([path]):
            e = op["value"]
            if op["type"] == "invoke":
                ops += 1
                attempted.add(e)
                key_of[e] = op["key"]
                pending[e] = op
                continue
            by_type[op["type"]] += 1
            pending.pop(e, None)
            {"ok": acked, "fail": failed, "info": unknown}[op["type"]].add(e)
        unknown |= set(pending)  # invoked, never completed: a client killed mid-operation
    read = {}
    for name, r in final_result["keys"].items():
        for e in r["elements"]:
            read[e] = name
    present = set(read)
    lost = sorted(e for e in acked if e not in present or read[e] != key_of[e])
    phantom = sorted(e for e in present if e not in attempted or read[e] != key_of[e])
    failed_present = sorted(failed & present)
    return {
        "ops": ops, "ok": by_type["ok"], "fail": by_type["fail"],
        "unknown": len(unknown),
        "unknown_present": len(unknown & present), "lost": len(lost), "phantom": len(phantom),
        "failed_present": len(failed_present), "lost_sample": lost[:20],
        "phantom_sample": phantom[:20], "failed_present_sample": failed_present[:20],
        "final_read_errors": final_result["errors"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["worker", "probe", "final", "cluster"])
    ap.add_argument("--action", choices=["join", "leave"], help="cluster: what to stage")
    ap.add_argument("--target", help="cluster: the node that joins or leaves")
    ap.add_argument("--addr", required=True)
    ap.add_argument("--cookie-file", required=True)
    ap.add_argument("--client", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--t0", type=float, default=0.0, help="the run's start, wall-clock s")
    ap.add_argument("--until", type=float, default=0.0, help="stop at this wall-clock s")
    ap.add_argument("--timeout-ms", type=int, default=1000)
    ap.add_argument("--timeout-s", type=float, default=30.0)
    ap.add_argument("--r", type=int, default=3)
    ap.add_argument("--ops-per-group", type=int, default=500)
    ap.add_argument("--key-file", help="final: a JSON list of the keys to read")
    ap.add_argument("--converge-s", type=float, default=30.0)
    ap.add_argument("--not-before", type=float, default=0.0, help="final: read from then on")
    ap.add_argument("--out")
    ap.add_argument("--workload", choices=["set", "delete", "register", "watch", "names"],
                    default="set")
    ap.add_argument("--names", type=int, default=100, help="worker of the names workload: "
                    "how many global names")
    ap.add_argument("--expect-nodes", type=int, default=1, help="final of the names "
                    "workload: the tables of at least this many nodes")
    ap.add_argument("--role", choices=["writer", "watcher"], default="writer",
                    help="worker of the watch workload: which")
    ap.add_argument("--rate", type=float, default=0.0, help="worker: operations (delete: "
                    "keys) per second at most, 0 unbounded")
    args = ap.parse_args()
    {"worker": worker, "probe": probe, "final": final, "cluster": cluster}[args.mode](args)


if __name__ == "__main__":
    main()
