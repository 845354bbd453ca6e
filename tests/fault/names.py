"""The global names workload: 100 names registered and re-registered through partitions and
kills; after the heal, no name held by two processes, and fencing epochs that only grew.

A client is a hidden node, which cannot hold a global name, so it asks its node's admin server
(``{global_register, Name, register | re_register}``, tools/src/admin.hpp): a holder process
started on that node registers itself and answers its pid and the registration's fencing
epoch, then holds the name until it loses it (told it lost a conflict, or its node's table
names another process) and exits. Each turn a client picks one of ``--names`` names (``g<k>``)
and, as often as not, registers it (``already_started`` when it is held: a refusal) or
re-registers it (takes it from its holder). ``ok`` lines carry the holder (``pid``: its text
and its node's incarnation, ``<n2.41.0>/1733...``) and ``epoch``, the fencing epoch as
``[counter, registrar]`` (docs/protocol.md section 9: ordered by counter, then the node that
registered it, so two sides of a partition never share one); ``fail`` is a refusal
(``already_started``, ``no_quorum``: nothing registered); ``info`` an unknown outcome (a
timeout: the holder may register later). Every second a client also records its node's table
(an ``observe`` line: the node, its incarnation, name -> [holder, epoch]).

After the heal, ``final()`` asks every node's admin server for its table until all agree
(bounded), and ``check()`` counts per name:

- ``duplicates``: names that the nodes' final tables give to two processes or more;
- ``split``: names some nodes' final tables hold and others do not;
- ``epoch_fell``: a node's table (within one incarnation: a restarted node forgets) showing a
  name at a lower epoch than it showed before, acknowledged registrations through it included,
  or a final holder below an acknowledged epoch of its name;
- ``lost``: an acknowledged registration neither held at the end, nor superseded (a higher
  epoch of its name seen anywhere), nor gone with its holder's node (that node restarted);
- ``phantom``: a final holder that no registration acknowledged and none of unknown outcome
  through its node can explain;
- ``twin_epochs``: one epoch of a name acknowledged to two holders (a fencing token shared:
  a downstream service could not tell them apart).

Global names live in memory: a kill of every node at once forgets every name and its fence,
so the driver leaves ``crash-all`` out of this workload.
"""

import time

import history

OBSERVE_S = 1.0
# Nothing was registered: the name was held (already_started), no majority granted the lock
# in all its rounds (no_quorum), or the request was refused before it began.
REFUSALS = ("already_started", "no_quorum", "badarg", "overloaded", "not_found")


def name_of(k):
    return "g%d" % k


def pid_id(pid):
    """A pid as the histories write it: its text and its node's incarnation (a restarted node
    reuses pid texts)."""
    return "%s/%d" % (pid, pid.creation)


def node_of(pid_text):
    return pid_text[1:pid_text.index("/") - 1].rsplit(".", 2)[0]


def _text(b):
    return b.decode(errors="replace") if isinstance(b, bytes) else str(b)


def epoch_of(e):
    """A fencing epoch as a comparable tuple (counter, registrar): from the ``[counter,
    registrar]`` the histories write, or a bare counter (histories from before the registrar
    was part of it, which order by counter alone)."""
    if isinstance(e, (list, tuple)):
        return (int(e[0]), str(e[1]))
    return (int(e), "")


def show(e):
    return "%d@%s" % e if e[1] else "%d" % e[0]


def table_of(node, nodus, on, relay=False):
    """(`on`'s incarnation, its table: name -> [holder, epoch]), asked of its admin server
    (relayed through the linked node when `relay`), or raises NodusError. None for the
    incarnation when the node restarted between the two questions."""
    def ask(request):
        return node.admin(("relay", on, request) if relay else request,
                          node=None if relay else on, timeout_ms=3000)
    before = ask("self")["creation"]
    table = {_text(e["name"]): [pid_id(e["pid"]), [e["epoch"], _text(e.get("registrar", ""))]]
             for e in ask("global_names")}
    after = ask("self")["creation"]
    return (before if before == after else None), table


def worker(args, nodus, node, rng, record):
    from nodus.terms import Atom
    home = node.peers()[0]
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    next_look = 0.0
    while time.time() < args.until:
        began = time.time()
        if began >= next_look:
            next_look = began + OBSERVE_S
            try:
                creation, table = table_of(node, nodus, home)
                if creation is not None:
                    record(type="observe", node=str(home), creation=creation, names=table)
            except nodus.NodusError:
                pass  # the node is down or cut off: nothing seen
        name = name_of(rng.randrange(args.names))
        mode = rng.choice(("register", "re_register"))
        record(type="invoke", f=mode, key=name, node=str(home))
        try:
            v = node.admin(("global_register", name.encode(), Atom(mode)), node=home,
                           timeout_ms=args.timeout_ms)
            record(type="ok", f=mode, key=name, node=str(home), pid=pid_id(v["pid"]),
                   epoch=[v["epoch"], _text(v.get("registrar", ""))])
        except nodus.NodusError as e:
            record(type=history.outcome(e.name, REFUSALS), f=mode, key=name, node=str(home),
                   error=e.name)
            if e.name not in ("already_started",):
                time.sleep(0.05)  # the node or its majority is unreachable: don't spin
        left = interval - (time.time() - began)
        if left > 0:
            time.sleep(left)


def final(args, nodus, node):
    """Every node's table, asked through the linked node's admin server until they all agree
    (or `args.converge_s` passed): a dict with ``tables`` (node -> name -> [holder, epoch]),
    ``creations`` (node -> incarnation), ``converged_wall`` (or None) and ``errors``."""
    deadline = time.time() + args.converge_s
    result = {"errors": []}
    while True:
        tables, creations, errors = {}, {}, []
        try:
            members = [_text(m["name"]) for m in node.admin("nodes", timeout_ms=3000)
                       if _text(m["state"]) == "up"]
        except nodus.NodusError as e:
            members, errors = [], ["nodes: %s" % e]
        for on in members:
            try:
                creation, table = table_of(node, nodus, on, relay=True)
                if creation is None:
                    errors.append("%s restarted while asked" % on)
                    continue
                tables[on], creations[on] = table, creation
            except nodus.NodusError as e:
                errors.append("%s: %s" % (on, e))
        same = len({repr(sorted(t.items())) for t in tables.values()}) == 1
        result.update(tables=tables, creations=creations, errors=errors)
        if same and not errors and len(tables) >= args.expect_nodes:
            result["converged_wall"] = time.time()
            return result
        if time.time() >= deadline:
            result["converged_wall"] = None
            return result
        time.sleep(0.5)


def check(history_files, final_result):
    found = history.Findings(
        {"ops": 0, "ok": 0, "fail": 0, "unknown": 0, "already_started": 0, "observations": 0,
         "names": 0, "held": 0, "acked_held": 0, "superseded": 0, "died_with_node": 0},
        ("duplicates", "split", "epoch_fell", "lost", "phantom", "twin_epochs"))
    r = found.r
    acks = []               # (name, holder, epoch, node, wall)
    seen = {}               # (node, incarnation, name) -> [(wall, epoch)]
    top = {}                # name -> the highest epoch seen anywhere
    unknown = set()         # (name, node) of registrations of unknown outcome
    pending = {}            # process -> the invoke not completed yet

    def saw(node, creation, name, wall, epoch):
        seen.setdefault((node, creation, name), []).append((wall, epoch))
        top[name] = max(top.get(name, (0, "")), epoch)

    for op in history.ops(history_files):
        found.count(op)
        t = op["type"]
        if t == "invoke":
            pending[op["process"]] = op
        elif t in history.COUNTED:
            pending.pop(op["process"], None)
            if t == "ok":
                epoch = epoch_of(op["epoch"])
                acks.append((op["key"], op["pid"], epoch, op["node"], op["wall"]))
                creation = int(op["pid"].rsplit("/", 1)[1])
                saw(op["node"], creation, op["key"], op["wall"], epoch)
            elif t == "info":
                unknown.add((op["key"], op["node"]))
            elif op.get("error") == "already_started":
                r["already_started"] += 1
        elif t == "observe":
            r["observations"] += 1
            for name, (_, epoch) in op["names"].items():
                saw(op["node"], op["creation"], name, op["wall"], epoch_of(epoch))
    for op in pending.values():  # invoked, never completed: a client killed mid-request
        unknown.add((op["key"], op["node"]))

    tables = final_result["tables"]
    end = time.time()
    for node, table in tables.items():
        for name, (_, epoch) in table.items():
            saw(node, final_result["creations"][node], name, end, epoch_of(epoch))
    for (node, creation, name), views in sorted(seen.items()):
        high = (0, "")
        for wall, epoch in sorted(views, key=lambda v: v[0]):
            if epoch < high:
                found.flag("epoch_fell", [name, node, creation,
                                          "%s after %s" % (show(epoch), show(high))])
            high = max(high, epoch)

    holders = {}  # name -> {holder: epoch} across the final tables
    named = set()
    for table in tables.values():
        for name, (holder, epoch) in table.items():
            holders.setdefault(name, {})[holder] = epoch_of(epoch)
            named.add(name)
    r["names"] = len(named)
    for name, h in sorted(holders.items()):
        if len(h) > 1:
            found.flag("duplicates", [name, h])
        elif sum(1 for t in tables.values() if name in t) < len(tables):
            found.flag("split", [name, h, sorted(n for n, t in tables.items() if name in t)])
    r["held"] = sum(1 for h in holders.values() if len(h) == 1)

    by_epoch = {}
    for name, holder, epoch, node, wall in acks:
        by_epoch.setdefault((name, epoch), set()).add(holder)
    # One epoch acknowledged to two holders: a fencing token shared (a partition's two sides
    # each registering the name at one counter did that before the epoch named its registrar).
    for (name, epoch), holders_of in sorted(by_epoch.items()):
        if len(holders_of) > 1:
            found.flag("twin_epochs", [name, show(epoch), sorted(holders_of)])
    acked_pids = set()
    for name, holder, epoch, node, wall in acks:
        acked_pids.add(holder)
        now = holders.get(name, {})
        if holder in now:
            r["acked_held"] += 1
        elif top.get(name, (0, "")) > epoch:
            r["superseded"] += 1
        elif final_result["creations"].get(node) != int(holder.rsplit("/", 1)[1]):
            r["died_with_node"] += 1  # its node restarted (or did not answer): it died with it
        else:
            found.flag("lost", [name, holder, epoch, wall])
        for h, e in now.items():
            if e < epoch:
                found.flag("epoch_fell", [name, "final holder %s at %s below the acknowledged "
                                          "%s" % (h, show(e), show(epoch))])
    for name, h in sorted(holders.items()):
        for holder in h:
            if holder not in acked_pids and (name, node_of(holder)) not in unknown:
                found.flag("phantom", [name, holder])
    r["final_read_errors"] = final_result["errors"]
    return found.result()
