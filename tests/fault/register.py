"""The register workload: compare-and-set per key through the first primary, checked for
linearizability.

Clients share a few keys (``reg:<group>:<k>``, the group the run's second divided by
``GROUP_S``, so every key's history stays short enough to search). Each turn a client reads
the key at its first up primary (a transaction of one ``read``, answered from that replica:
docs/protocol.md 12.6) and then, two times in three, compare-and-sets it from what it read to
a unique value (``client << 20 | seq``, 4 bytes): a put with ``if_version`` the read's context
(``absent`` for a key never written). Reads are ``read`` ops with the value read (``None``
when absent, a list when the read found siblings, which no register can explain); a
compare-and-set is a ``cas`` op ``[old, new]``: ``ok``, ``fail`` (``version_mismatch`` or a
refusal: not stored) or ``info`` (a timeout, ``no_quorum``: maybe stored).

``check()`` runs linearizable.check on each key's history.
"""

import struct
import time

import history
import linearizable

GROUP_S = 4.0
REFUSALS = history.REFUSALS + ("version_mismatch",)


def _decode(v):
    return struct.unpack("<I", v)[0] if len(v) == 4 else v.hex()


def _reason(reply):
    """The error name of an ``{error, Why}`` reply."""
    why = reply[1]
    if isinstance(why, tuple) and why:
        why = why[0]
    return str(why)


def worker(args, nodus, node, rng, record):
    from nodus.terms import Atom
    seq = 0
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    timeout = args.timeout_ms

    def ask(key, request):
        dest = ("nodus_kv", node.kv.coordinator(key.encode()))
        return node.call(dest, request, timeout + 1000)

    while time.time() < args.until and seq < (1 << 20) - 1:
        began = time.time()
        key = "reg:%d:%d" % (int((began - args.t0) / GROUP_S), rng.randrange(args.keys))
        record(type="invoke", f="read", key=key)
        try:
            reply = ask(key, ("txn", [(Atom("read"), key.encode())],
                              {Atom("timeout"): timeout}))
        except nodus.NodusError as e:
            record(type="info", f="read", key=key, error=e.name)
            time.sleep(0.05)
            continue
        if not (isinstance(reply, tuple) and reply[0] == "ok"):
            record(type="fail", f="read", key=key, error=_reason(reply))
            time.sleep(0.05)
            continue
        values, ctx = reply[1][0]
        values = [_decode(v) for v in values]
        value = None if not values else values[0] if len(values) == 1 else ["siblings"] + values
        record(type="ok", f="read", key=key, value=value)
        if rng.random() < 2 / 3.0 and not isinstance(value, list):
            seq += 1
            new = args.client << 20 | seq
            record(type="invoke", f="cas", key=key, value=[value, new])
            opts = {Atom("if_version"): ctx if values else Atom("absent"),
                    Atom("timeout"): timeout}
            try:
                reply = ask(key, ("put", key.encode(), struct.pack("<I", new), opts))
            except nodus.NodusError as e:
                record(type="info", f="cas", key=key, value=[value, new], error=e.name)
                time.sleep(0.05)
                continue
            if isinstance(reply, tuple) and reply[0] == "ok":
                record(type="ok", f="cas", key=key, value=[value, new])
            else:
                why = _reason(reply)
                record(type=history.outcome(why, REFUSALS), f="cas", key=key,
                       value=[value, new], error=why)
        left = interval - (time.time() - began)
        if left > 0:
            time.sleep(left)


def check(history_files, max_configs=2000000):
    """Per key linearizability of the histories: counts of ops and outcomes, of keys
    ``linearizable``, ``nonlinearizable`` and ``undecided`` (the search's bound), of
    ``sibling_reads``, and the first failing keys with the op no order explains."""
    by_key = {}
    r = {"ops": 0, "ok": 0, "fail": 0, "unknown": 0, "cas_ok": 0, "sibling_reads": 0}
    for op in history.ops(history_files):
        by_key.setdefault(op["key"], []).append(op)
        if op["type"] == "invoke":
            r["ops"] += 1
        else:
            r[history.COUNTED[op["type"]]] += 1
            if op["type"] == "ok" and op["f"] == "cas":
                r["cas_ok"] += 1
            if op["type"] == "ok" and isinstance(op.get("value"), list) and op["f"] == "read":
                r["sibling_reads"] += 1
    r.update(keys=len(by_key), linearizable=0, nonlinearizable=0, undecided=0, failures=[],
             explored=0)
    for key in sorted(by_key):
        ops = sorted(by_key[key], key=lambda o: o["wall"])
        c = linearizable.check(ops, max_configs=max_configs)
        r["explored"] += c["explored"]
        if c["result"] == linearizable.OK:
            r["linearizable"] += 1
        elif c["result"] == linearizable.UNKNOWN:
            r["undecided"] += 1
        else:
            r["nonlinearizable"] += 1
            if len(r["failures"]) < 10:
                r["failures"].append(dict(key=key, op=c["op"], at=c["at"],
                                          configs=c["configs"]))
    return r
