"""The watch workload: every acknowledged change reaches a watcher on another node, in version
order per key, or the watcher was told it lost events.

The first client (on n1) is the **watcher**: it watches ``{prefix, <<"w:">>}`` through n1's
``nodus_kv`` (docs/protocol.md 12.7) from a mailbox of its own, records each ``kv_event`` it
takes (an ``event`` line: key, the value, when) and acknowledges them to n1's
``nodus_kv_watch`` every 50; on ``kv_watch_lost``, or when its link to n1 goes down (the watch
server and the watch went with n1), it records a ``lost`` line and watches again (a ``watch``
line once that is answered). The clients on the other nodes are **writers**, one key each
(``w:<client>``): puts of 1, 2, 3 ... (4 bytes), each with the context of the last
acknowledged put's reply, so that every acknowledged value descends from every one
acknowledged before it. (A put of unknown outcome is concurrent with the next one: its value
is in no order.)

``check()``: ``missed`` = acknowledged values never delivered though their put, from invocation
to completion, fell inside one watch (from its answer to the watcher's end, or to a
``kv_watch_lost``: then they are ``excused``); ``out_of_order`` = an acknowledged value delivered
after a greater acknowledged value of its key within one watch; ``duplicates`` = a value
delivered twice within one watch; ``phantom`` = a value delivered that no put wrote.
"""

import struct
import time

import history

PREFIX = b"w:"
ACK_EVERY = 50


def _call_as(nodus, node, box, dest, request, timeout_ms):
    """A call to `dest` from the mailbox `box` (so that the watch's events come to it):
    what ``Node.call`` does, with the mailbox's pid as the caller."""
    from nodus import node as node_module
    from nodus import terms, wire
    peer, to = node._resolve(dest)
    ref = node._make_ref()
    waiter = node_module._Waiter(peer)
    with node._lock:
        node._pending[ref.id] = waiter
    try:
        node._post(peer, wire.data(wire.CALL, box.pid, to, ref, timeout_ms * 1000, 0,
                                   terms.encode(request)))
        if not waiter.done.wait(timeout_ms / 1000.0):
            raise nodus.errors.Timeout("no answer to the watch within %d ms" % timeout_ms)
    finally:
        with node._lock:
            node._pending.pop(ref.id, None)
    if waiter.ok:
        return waiter.value
    raise nodus.errors.error_of_reason(waiter.value, "watch: ")


def watcher(args, nodus, node, record, until):
    from nodus.terms import Atom
    home = node.peers()[0]
    box = node.mailbox()
    ref, untaken = None, 0

    def watch():
        while time.time() < until:
            try:
                reply = _call_as(nodus, node, box, ("nodus_kv", home),
                                 (Atom("watch"), (Atom("prefix"), PREFIX)), 3000)
                if isinstance(reply, tuple) and reply[0] == "ok":
                    record(type="watch", key="", ok=True)
                    return reply[1]
                record(type="watch", key="", ok=False, error=repr(reply)[:200])
            except nodus.NodusError as e:
                record(type="watch", key="", ok=False, error=e.name)
            time.sleep(0.2)
        return None

    ref = watch()
    while ref is not None and time.time() < until:
        if not node.is_up(home):
            # n1 went down (killed, or cut off from this client): its watch server, and the
            # watch, went with it, which the watcher is told by the link (as by kv_watch_lost).
            record(type="lost", key="", why="nodedown")
            while not node.is_up(home) and time.time() < until:
                time.sleep(0.1)
            ref = watch()
            untaken = 0
            continue
        try:
            m = box.receive(timeout_ms=200)
        except nodus.Timeout:
            m = None
        if m is not None and isinstance(m.term, tuple) and m.term:
            if m.term[0] == "kv_event" and len(m.term) == 5:
                _, kind, key, value, _ctx = m.term
                record(type="event", kind=str(kind), key=key.decode(errors="replace"),
                       value=struct.unpack("<I", value)[0] if len(value) == 4 else
                       value.hex())
                untaken += 1
            elif m.term[0] == "kv_watch_lost":
                record(type="lost", key="")
                ref = watch()
                untaken = 0
                continue
        if untaken >= ACK_EVERY or (untaken and m is None):
            try:
                node.send(("nodus_kv_watch", home), (Atom("kv_watch_ack"), ref, untaken))
                untaken = 0
            except nodus.NodusError:
                pass  # n1 is down: the watch ends with it (a lost, or nothing to miss)
    record(type="end", key="")
    box.close()


def writer(args, nodus, node, record):
    key = "w:%d" % args.client
    ctx, seq = None, 0
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    while time.time() < args.until and seq < (1 << 30):
        began = time.time()
        seq += 1
        record(type="invoke", f="put", key=key, value=seq)
        try:
            ctx = node.kv.put(key, struct.pack("<I", seq), context=ctx,
                              timeout_ms=args.timeout_ms)
            record(type="ok", f="put", key=key, value=seq)
        except nodus.NodusError as e:
            record(type=history.outcome(e.name), f="put", key=key, value=seq, error=e.name)
            time.sleep(0.05)
        left = interval - (time.time() - began)
        if left > 0:
            time.sleep(left)


def check(history_files):
    puts = {}      # (key, value) -> [invoke wall, outcome, completion wall]
    events, sessions = [], []   # the watcher's: (wall, key, value); [start, end, lost]
    found = history.Findings({"ops": 0, "ok": 0, "fail": 0, "unknown": 0, "events": 0,
                              "watches": 0, "lost_watch": 0, "excused": 0},
                             ("missed", "out_of_order", "duplicates", "phantom"))
    r, flag = found.r, found.flag
    end = watcher_end = 0.0
    for op in history.ops(history_files):
        end = max(end, op["wall"])
        t = op["type"]
        found.count(op)
        if t == "invoke":
            puts[(op["key"], op["value"])] = [op["wall"], "info", None]
        elif t in history.COUNTED:
            p = puts.get((op["key"], op["value"]))
            if p:
                p[1], p[2] = t, op["wall"]
        elif t == "watch" and op.get("ok"):
            r["watches"] += 1
            sessions.append([op["wall"], None, False])
        elif t == "lost":
            r["lost_watch"] += 1
            if sessions and sessions[-1][1] is None:
                sessions[-1][1], sessions[-1][2] = op["wall"], True
        elif t == "end":
            watcher_end = op["wall"]
        elif t == "event":
            r["events"] += 1
            events.append((op["wall"], op["key"], op["value"]))
    for s in sessions:
        if s[1] is None:
            s[1] = watcher_end or end

    events.sort()
    for i, s in enumerate(sessions):
        inside = [e for e in events if s[0] <= e[0] <= s[1]]
        seen, top = set(), {}
        for wall, key, value in inside:
            p = puts.get((key, value))
            if p is None:
                flag("phantom", [key, value])
                continue
            if (key, value) in seen:
                flag("duplicates", [key, value])
            seen.add((key, value))
            if p[1] == "ok":
                if value < top.get(key, 0):
                    flag("out_of_order", [key, value, "after", top[key]])
                top[key] = max(top.get(key, 0), value)
        for (key, value), (invoked, outcome, done) in puts.items():
            if outcome != "ok" or invoked < s[0] or done > s[1] or (key, value) in seen:
                continue
            if s[2]:
                r["excused"] += 1
            else:
                flag("missed", [key, value, invoked, done])
    r["sessions"] = len(sessions)
    return found.result()
