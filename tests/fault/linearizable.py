"""A linearizability checker for one compare-and-set register (the register workload's).

Wing and Gong's search, in the form of Knossos's "linear" checker (Lowe's just-in-time
linearization): the history is walked in real-time order, keeping every configuration the
register may be in, a configuration being (the register's value, the operations invoked and
not yet linearized). An invocation adds its operation to every configuration's pending set; a
completion (``ok``) of operation o keeps only the configurations in which o can have taken
effect by then: o itself, possibly after other pending operations, each legal in turn. When no
configuration is left, no order of the operations explains what the clients saw, and the
history is not linearizable at o. Configurations are deduplicated, so the search is bounded by
the number of distinct (value, pending set) pairs, and it is cut off at `max_configs` (the
answer is then ``unknown``, never a guess).

Operations (dicts, as the workload records them, all of one key):

- ``{"f": "read", "value": v}``: the register held v (``None``: never written).
- ``{"f": "cas", "value": [old, new]}``: when the register held ``old`` it now holds ``new``.

Each has ``process``, ``type`` (``invoke``, then ``ok``, ``fail`` or ``info``) and ``wall``
(seconds). A ``fail`` did not take effect and is dropped, as is a read that did not complete
(it changed nothing). An ``info`` write, or one never completed, may have taken effect at any
time after its invocation, or never: it stays pending to the end, linearized wherever that
explains a later completion. Only a process's own ops are in order; a process whose op ended
``info`` may go on with others (it is not blocked on it).
"""

OK, NOT_LINEARIZABLE, UNKNOWN = "ok", "not_linearizable", "unknown"


def _step(state, op):
    """The register after `op` from `state`, or a sentinel when `op` cannot happen there."""
    if op["f"] == "read":
        return state if op["value"] == state else _ILLEGAL
    old, new = op["value"]
    return new if old == state else _ILLEGAL


_ILLEGAL = object()


def _events(ops):
    """(wall, kind, op id) in real-time order, completions of one wall time after its
    invocations, with each op's invocation paired to its completion by process."""
    calls = {}       # process -> the invocation awaiting its completion
    done = []        # [invocation, completion type or None]
    for op in ops:
        p = op["process"]
        if op["type"] == "invoke":
            if p in calls:
                done.append([calls[p], None])  # a new invocation: the last one never completed
            calls[p] = op
        elif p in calls and calls[p]["f"] == op["f"]:
            inv = calls.pop(p)
            if op["type"] == "ok" and op["f"] == "read":
                inv = dict(inv, value=op["value"])  # a read's value comes with its completion
            done.append([inv, op])
    done += [[inv, None] for inv in calls.values()]
    table, events = [], []
    for inv, comp in done:
        kind = comp["type"] if comp else "info"
        if kind == "fail" or (kind == "info" and inv["f"] == "read"):
            continue
        i = len(table)
        table.append(inv)
        events.append((inv["wall"], 0, i))
        if kind == "ok":
            events.append((comp["wall"], 1, i))
    events.sort(key=lambda e: (e[0], -e[1]))  # at one instant: returns before invocations
    return table, events


def check(ops, initial=None, max_configs=2000000):
    """Whether the history `ops` of one register is linearizable: a dict with ``result``
    (``ok``, ``not_linearizable`` or ``unknown`` when the search visited more than
    `max_configs` configurations in all, a bound on its time),
    ``ops`` (those checked) and, when not linearizable, ``op`` (the completion no order
    explains) and ``configs`` (a few of the configurations it could not be placed in)."""
    table, events = _events(ops)
    configs = {(initial, frozenset())}
    explored = 0
    for wall, kind, i in events:
        if kind == 0:
            configs = {(s, pending | {i}) for s, pending in configs}
            continue
        kept, frontier, seen = set(), [], set()
        for c in configs:
            if i not in c[1]:
                kept.add(c)
            else:
                frontier.append(c)
                seen.add(c)
        while frontier:  # linearize pending ops, in any legal order, until i is among them
            state, pending = frontier.pop()
            for j in pending:
                after = _step(state, table[j])
                if after is _ILLEGAL:
                    continue
                nxt = (after, pending - {j})
                if j == i:
                    kept.add(nxt)
                elif nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
            explored += 1
            if explored > max_configs:
                return {"result": UNKNOWN, "ops": len(table), "explored": explored}
        if not kept:
            return {"result": NOT_LINEARIZABLE, "ops": len(table), "explored": explored,
                    "op": table[i], "at": wall,
                    "configs": [(s, sorted(p)) for s, p in list(configs)[:5]]}
        configs = kept
    return {"result": OK, "ops": len(table), "explored": explored}
