"""The delete / TTL workload: deleted and expired keys stay gone.

Each client writes keys of its own, each once (``del:<client>:<seq>``, the value the 4 bytes
of ``client << 20 | seq``), and for each key draws what becomes of it:

- ``delete`` (60 %): a put, and when it was acknowledged, a delete with the put's context (a
  tombstone that supersedes exactly that value: nothing may bring it back);
- ``ttl`` (25 %): a put with a TTL of 0.3 to 3 s (it must be gone once that has passed);
- ``keep`` (15 %): a put and nothing more (it must stay: the same run also sees loss).

Every request is an ``invoke`` line, then ``ok``, ``fail`` (refused: nothing stored) or
``info`` (unknown), as in the set workload. The driver runs the nodes with a short
``kv.tombstone_ttl`` and anti-entropy exchanging every second, so tombstones are reaped,
handed off and repaired while the nemesis runs. After the heal and the quiet period, every key
is read with R = N, and ``check()`` counts:

- ``resurrected``: a key read live whose delete was acknowledged, or whose TTL had passed
  (from the put's completion, plus 2 s for the clocks of one machine's processes) before the
  read began;
- ``lost``: a key read absent whose put was acknowledged and which nothing deleted or expired
  (``keep``, or a ``delete`` whose delete was refused);
- ``phantom``: a value read that its key's put never wrote;
- ``failed_present``: a key read live whose put was refused.

Unknown puts and deletes may go either way.
"""

import struct
import time

import history

TTL_SLACK_S = 2.0


def key_of(client, seq):
    return "del:%d:%d" % (client, seq)


def value_of(client, seq):
    return struct.pack("<I", client << 20 | seq)


def worker(args, nodus, node, rng, record):
    seq = 0
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    while time.time() < args.until and seq < (1 << 20) - 1:
        began = time.time()
        seq += 1
        k = key_of(args.client, seq)
        fate = rng.choices(("delete", "ttl", "keep"), (60, 25, 15))[0]
        ttl = rng.randrange(300, 3000) if fate == "ttl" else None
        record(type="invoke", f="put", key=k, fate=fate, ttl_ms=ttl)
        try:
            ctx = node.kv.put(k, value_of(args.client, seq), ttl_ms=ttl,
                              timeout_ms=args.timeout_ms)
            record(type="ok", f="put", key=k)
        except nodus.NodusError as e:
            record(type=history.outcome(e.name), f="put", key=k, error=e.name)
            time.sleep(0.05)
            continue
        if fate == "delete":
            record(type="invoke", f="delete", key=k)
            try:
                node.kv.delete(k, context=ctx, timeout_ms=args.timeout_ms)
                record(type="ok", f="delete", key=k)
            except nodus.NodusError as e:
                record(type=history.outcome(e.name), f="delete", key=k, error=e.name)
                time.sleep(0.05)
        left = interval - (time.time() - began)
        if left > 0:
            time.sleep(left)


def outcomes(history_files):
    """Per key: its fate, ttl_ms, and the outcome and completion time of its put and delete
    (None: invoked, never completed, which counts as unknown)."""
    keys = {}
    for op in history.ops(history_files):
        k = keys.setdefault(op["key"], {})
        if op["type"] == "invoke":
            if op["f"] == "put":
                k.update(fate=op["fate"], ttl_ms=op.get("ttl_ms"), put=None)
            else:
                k["delete"] = None
        else:
            k[op["f"]] = op["type"]
            k[op["f"] + "_wall"] = op["wall"]
    return keys


def check(history_files, final_result):
    """The delete workload's verdict from the histories and the final read (``final`` of
    workload.py with ``--workload delete``: per key the values read, hex, and when)."""
    keys = outcomes(history_files)
    found = history.Findings({"ops": 0, "ok": 0, "fail": 0, "unknown": 0, "deleted": 0,
                              "expired": 0, "kept": 0},
                             ("resurrected", "lost", "phantom", "failed_present"))
    r = found.r

    def flag(what, key, detail):
        found.flag(what, [key, detail])

    for name, k in keys.items():
        for f in ("put", "delete"):
            if f in k:
                r["ops"] += 1
                outcome = k[f] or "info"
                r[history.COUNTED[outcome]] += 1
    read = final_result["keys"]
    for name, got in read.items():
        k = keys.get(name)
        if k is None or "fate" not in k:
            flag("phantom", name, got["values"])
            continue
        client, seq = (int(x) for x in name.split(":")[1:3])
        want = value_of(client, seq).hex()
        if any(v != want for v in got["values"]):
            flag("phantom", name, got["values"])
        live = bool(got["values"])
        put, delete = k.get("put"), k.get("delete")
        if put == "fail":
            if live:
                flag("failed_present", name, k)
            continue
        if k["fate"] == "delete" and delete == "ok":
            r["deleted"] += 1
            if live:
                flag("resurrected", name, dict(k, read_wall=got["wall"]))
        elif k["fate"] == "ttl" and put in ("ok", "info", None):
            done = k.get("put_wall")
            if done is not None and got["wall"] > done + k["ttl_ms"] / 1000.0 + TTL_SLACK_S:
                r["expired"] += 1
                if live:
                    flag("resurrected", name, dict(k, read_wall=got["wall"]))
        elif put == "ok" and (k["fate"] == "keep" or
                              (k["fate"] == "delete" and delete == "fail")):
            r["kept"] += 1
            if not live:
                flag("lost", name, k)
    r["final_read_errors"] = final_result["errors"]
    return found.result()
