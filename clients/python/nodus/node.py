"""A hidden node: links to nodus nodes and talks to their processes (docs/protocol.md).

``Node`` is what ``nodusctl`` is in C++: a node of its own (a name, a creation, a ZeroMQ
ROUTER on an ephemeral loopback port) that links to the nodes it is told, as a hidden node
(section 11): it authenticates with the cluster's cookie (and CURVE keys when the cluster
uses them, section 8), is no cluster member, and is forgotten by the nodes once it leaves.

Thread-safety: every method may be called from any thread. One I/O thread per Node owns the
ZeroMQ sockets; the methods hand it work and wait for its answer.
"""

import collections
import itertools
import os
import queue
import threading
import time

import zmq
import zmq.utils.z85

from . import errors
from . import terms
from . import wire
from .terms import Atom, Pid, Ref

DEFAULT_TIMEOUT_MS = 5000


class Global:
    """A global name (``{global, Name}``): resolved when used, through the table of the node
    the client asks (``nodus_admin``'s ``global_names``, docs/protocol.md section 11)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name.encode() if isinstance(name, str) else bytes(name)

    def __repr__(self):
        return "Global(%r)" % self.name


class Via:
    """A via name (``{via, Module, Key}``): ``module.whereis_name(node, key)`` names the pid
    (or None) when the name is used, on this client's side, as Erlang resolves via names on
    the sender's node. ``GLOBAL`` is the built-in module of global names."""

    __slots__ = ("module", "key")

    def __init__(self, module, key):
        self.module, self.key = module, key

    def __repr__(self):
        return "Via(%r, %r)" % (self.module, self.key)


class _GlobalModule:
    def whereis_name(self, node, key):
        return node.whereis_global(key)

    def __repr__(self):
        return "GLOBAL"


GLOBAL = _GlobalModule()


class Registry:
    """The via module of a node's built-in ``Registry`` named `name` (nodusd's ``apps.start``
    makes one per ``via:REG/KEY``), on `node` (default: the first node linked):
    ``Via(Registry("reg"), b"key")`` is nodusctl's ``via:reg/key@node``. A registry lives in
    its node's memory and answers no frame (docs/protocol.md section 11), so the name is
    resolved as the admin server resolves ``{via, Reg, Key, Node}``: that node's
    ``nodus_admin`` lists its via names (``names``) and the client sends to the pid."""

    __slots__ = ("name", "node")

    def __init__(self, name, node=None):
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.node = node

    def whereis_name(self, client, key):
        key = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        want = ("via:%s/%s" % (self.name, key)).encode("utf-8")
        for entry in client.admin("names", node=self.node):
            if entry.get("name") == want:
                return entry.get("pid")
        return None

    def __repr__(self):
        return "Registry(%r%s)" % (self.name, ", node=%r" % self.node if self.node else "")


class Message:
    """A message a mailbox received: ``kind`` (``"info"``, ``"cast"``, ``"call"``,
    ``"exit"``), ``sender`` (a Pid or None), ``term`` (the term, or for a typed message
    (``tag`` != 0) the decoded field array)."""

    __slots__ = ("kind", "sender", "ref", "tag", "term")

    def __init__(self, kind, sender, ref, tag, term):
        self.kind, self.sender, self.ref, self.tag, self.term = kind, sender, ref, tag, term

    def __repr__(self):
        return "Message(%s from %s: %r)" % (self.kind, self.sender, self.term)


class Mailbox:
    """A process of this node: a pid that other processes can send to, call and monitor, and
    a queue of what they sent. ``close()`` ends it (monitors of it get DOWN ``normal``)."""

    def __init__(self, node, pid):
        self._node = node
        self.pid = pid
        self._queue = queue.Queue()
        self._watchers = {}  # monitor ref -> watcher pid

    def receive(self, timeout_ms=DEFAULT_TIMEOUT_MS):
        """The next message (a ``Message``). Raises ``Timeout`` after `timeout_ms`."""
        try:
            return self._queue.get(timeout=None if timeout_ms is None else timeout_ms / 1000)
        except queue.Empty:
            raise errors.Timeout("no message within %d ms" % timeout_ms) from None

    def call(self, dest, request, timeout_ms=DEFAULT_TIMEOUT_MS):
        """``Node.call`` made by this process: the callee sees this pid as the caller (what
        a watch needs: the caller is the watcher)."""
        return self._node._call(dest, request, timeout_ms, self.pid)

    def reply(self, message, value):
        """Answers the call `message` with the term `value`."""
        if message.kind != "call":
            raise ValueError("only a call is answered")
        self._node._post(message.sender.node, wire.data(
            wire.REPLY, None, message.sender, message.ref, 0, 0, terms.encode(value)))

    def close(self, reason="normal"):
        self._node._close_mailbox(self, reason)


class Monitor:
    """A monitor of a process (Erlang's ``monitor(process, X)``). ``wait()`` returns the DOWN's
    reason: the process's exit reason, ``noproc`` (none was there), or ``noconnection`` (its
    node went down or the link to it was lost)."""

    def __init__(self, ref, target):
        self.ref = ref
        self.target = target  # what was monitored (a Pid, or the name as given)
        self.pid = target if isinstance(target, Pid) else None  # the DOWN names it
        self.reason = None
        self._done = threading.Event()

    @property
    def down(self):
        return self._done.is_set()

    def wait(self, timeout_ms=DEFAULT_TIMEOUT_MS):
        """The DOWN's reason term. Raises ``Timeout`` when none came within `timeout_ms`."""
        if not self._done.wait(None if timeout_ms is None else timeout_ms / 1000):
            raise errors.Timeout("no DOWN for %s within %d ms" % (self.target, timeout_ms))
        return self.reason

    def _fire(self, pid, reason):
        if pid is not None:
            self.pid = pid
        self.reason = reason
        self._done.set()


class _Waiter:
    __slots__ = ("node", "done", "ok", "value")

    def __init__(self, node):
        self.node = node
        self.done = threading.Event()
        self.ok = None
        self.value = None

    def finish(self, ok, value):
        self.ok, self.value = ok, value
        self.done.set()


class _Peer:
    """A node this client links to: our DEALER to it (our direction) and its link back to
    our ROUTER (its direction); up when both authenticated (section 3)."""

    def __init__(self, endpoint, server_key):
        self.endpoint = endpoint
        self.server_key = server_key
        self.name = None          # known from its CHALLENGE
        self.creation = None
        self.dealer = None
        self.phase = "idle"       # idle, hello_sent, proof_sent, welcomed
        self.nonce = None
        self.back_creation = None  # the creation its authenticated link back gave
        self.up = False
        self.failure = None       # why the last attempt failed (an exception)
        self.changed = threading.Condition()
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.hb_seq = 0
        self.attempt_started = 0.0
        self.retry_at = None
        self.backoff = 0.1
        self.wanted = True        # False once closed or refused for good
        self.outbox = []


class _Accepted:
    """A connection on our ROUTER: a node's link back to us, by its routing id."""

    __slots__ = ("phase", "name", "creation", "nonce", "caps")

    def __init__(self):
        self.phase = "await_hello"
        self.name = self.creation = self.nonce = self.caps = None


def _now():
    return time.monotonic()


def _default_creation():
    us = time.time_ns() // 1000
    c = ((us >> 32) ^ us) & 0xFFFFFFFF
    return c or 1


def _split_endpoint(endpoint):
    if "#" in endpoint:
        at = endpoint.index("#")
        return endpoint[:at], endpoint[at + 1:]
    return endpoint, None


class Node:
    """A hidden nodus node in this Python process.

    ``name``: this node's name (default ``py-`` and random hex; names are unique in a cluster,
    and a hidden node comes and goes under a fresh one). ``cookie`` (bytes or str) or
    ``cookie_file``: the cluster's secret, trailing white space dropped (section 3).
    ``curve``: ``(public_z85, secret_z85)``, this node's CURVE key pair, when the cluster
    uses CURVE: its public key must be in every node's ``cluster.curve_allowed``.
    ``heartbeat_ms`` / ``down_after_ms``: as the nodes' (300 / 2000 by default): a peer
    silent for `down_after_ms` is declared down (its calls fail ``nodedown``, monitors of its
    processes fire ``noconnection``) and is dialled again with a backoff of up to 5 s.
    """

    def __init__(self, name=None, cookie=None, cookie_file=None, curve=None,
                 listen_host="127.0.0.1", heartbeat_ms=300, down_after_ms=2000):
        if (cookie is None) == (cookie_file is None):
            raise ValueError("give one of cookie and cookie_file")
        self.cookie = (wire.read_cookie(cookie_file) if cookie_file is not None
                       else wire.cookie_bytes(cookie))
        self.name = Atom(name or "py-" + os.urandom(6).hex())
        if not 0 < len(self.name.encode()) <= terms.MAX_ATOM_BYTES:
            raise ValueError("a node name is 1 to 255 bytes")
        self.creation = _default_creation()
        self.curve = curve
        self._heartbeat = heartbeat_ms / 1000
        self._down_after = down_after_ms / 1000
        self._ids = itertools.count(1)
        self._lock = threading.Lock()   # guards the tables below and _cmds
        self._cmds = collections.deque()
        self._peers = {}                # endpoint -> _Peer
        self._by_name = {}              # node name -> _Peer
        self._pending = {}              # ref id -> _Waiter (calls)
        self._monitors = {}             # ref id -> (Monitor, node name)
        self._mailboxes = {}            # pid id -> Mailbox
        self._accepted = {}             # routing id -> _Accepted (I/O thread only)
        self._allowed_keys = set()      # CURVE keys of the nodes we dialled (ZAP)
        self._closed = False
        self.self_pid = self._make_pid()
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._zap = None
        self._setup_router(listen_host)
        self._wake_push = self._ctx.socket(zmq.PAIR)
        self._wake_pull = self._ctx.socket(zmq.PAIR)
        wake = "inproc://nodus-wake-%d" % id(self)
        self._wake_pull.bind(wake)
        self._wake_push.connect(wake)
        self._wake_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="nodus-" + self.name,
                                        daemon=True)
        self._thread.start()

    # -- linking ---------------------------------------------------------------------------

    def connect(self, host, port=None, server_key=None, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Links to the node at ``host:port`` (or the endpoint ``tcp://host:port``, with
        ``#KEY`` for its CURVE public key, or `server_key`) and waits until both directions
        are authenticated. Returns this Node (so ``Node(...).connect(h, p)`` chains).
        Raises ``AuthFailed`` (the cookies differ, or the node refused us), ``Timeout`` (no
        answer within `timeout_ms`), ``AlreadyStarted`` (our name is in use there),
        ``ProtocolError`` (it does not speak version 1)."""
        endpoint = host if port is None else "tcp://%s:%d" % (host, port)
        endpoint, key = _split_endpoint(endpoint)
        key = key or server_key
        if self.curve and not key:
            raise ValueError("CURVE: give the node's public key (server_key or #KEY)")
        if key and not self.curve:
            raise ValueError("the node has a CURVE key: give this Node curve=(public, secret)")
        with self._lock:
            self._check_open()
            peer = self._peers.get(endpoint)
            if peer is not None and peer.up:
                return self  # linked already: connecting again is harmless
            if peer is None:
                peer = self._peers[endpoint] = _Peer(endpoint, key)
            peer.wanted = True
            peer.failure = None
            if key:
                self._allowed_keys.add(key)
            self._cmds.append(lambda: self._dial(peer))
        self._wake()
        deadline = _now() + timeout_ms / 1000
        with peer.changed:
            while not peer.up and peer.failure is None:
                left = deadline - _now()
                if left <= 0:
                    break
                peer.changed.wait(left)
            if peer.up:
                return self
            failure = peer.failure
        if failure is None:
            failure = errors.Timeout(
                "no handshake with %s within %d ms (is the node up at that endpoint, with "
                "CURVE keys if and only if this Node has them?)" % (endpoint, timeout_ms))
        with self._lock:
            peer.wanted = False
            self._cmds.append(lambda: self._drop_dealer(peer))
        self._wake()
        raise failure

    def peers(self):
        """The names of the nodes this client is linked to and counts up."""
        with self._lock:
            return sorted(p.name for p in self._by_name.values() if p.up)

    def is_up(self, node):
        with self._lock:
            p = self._by_name.get(node)
            return bool(p and p.up)

    def close(self):
        """Leaves every node (BYE, section 7) and closes the sockets. Pending calls fail with
        ``nodedown``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- messaging -------------------------------------------------------------------------

    def call(self, dest, request, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Calls the process `dest` (a Pid; a name registered on the first node linked, as a
        str; ``(name, node)``; ``Global(name)``; ``Via(module, key)``) with the term
        `request` and returns its reply. The deadline travels with the call (the envelope's
        budget), and a late reply is dropped. Raises ``Timeout``, ``NoProc`` (nobody there),
        ``NodeDown`` (its node is not linked, or went down meanwhile), ``Exited`` (it exited
        before it answered) or the error its reply names (``BadArg`` ...)."""
        return self._call(dest, request, timeout_ms, self.self_pid)

    def _call(self, dest, request, timeout_ms, caller):
        node, to = self._resolve(dest)
        ref = self._make_ref()
        waiter = _Waiter(node)
        payload = terms.encode(request)
        with self._lock:
            self._pending[ref.id] = waiter
        try:
            self._post(node, wire.data(wire.CALL, caller, to, ref,
                                       max(0, int(timeout_ms * 1000)), 0, payload))
            if not waiter.done.wait(timeout_ms / 1000):
                raise errors.Timeout("%s did not answer within %d ms" % (_show(dest),
                                                                         timeout_ms))
        finally:
            with self._lock:
                self._pending.pop(ref.id, None)
        if waiter.ok:
            return waiter.value
        if isinstance(waiter.value, errors.NodusError):
            raise waiter.value
        raise errors.error_of_reason(waiter.value, "call to %s: " % _show(dest))

    def cast(self, dest, request):
        """Casts the term `request` to `dest` (a GenServer's handle_cast): at most once,
        ordered per pair of processes; a cast to nobody is dropped, as in Erlang. Raises
        ``NodeDown`` when the destination's node is not linked."""
        self._send_kind(wire.CAST, dest, request)

    def send(self, dest, message):
        """Sends the term `message` as a plain message (handle_info): at most once."""
        self._send_kind(wire.INFO, dest, message)

    def monitor(self, dest):
        """Monitors the process `dest` (resolved now; a name is resolved by its node). Returns
        a ``Monitor``; its DOWN comes once. Raises ``NodeDown`` when its node is not linked."""
        node, to = self._resolve(dest)
        ref = self._make_ref()
        mon = Monitor(ref, to)
        with self._lock:
            self._monitors[ref.id] = (mon, node)
        try:
            self._post(node, wire.data(wire.MONITOR, self.self_pid, to, ref, 0, 0,
                                       terms.encode(None)))
        except errors.NodusError:
            with self._lock:
                self._monitors.pop(ref.id, None)
            raise
        return mon

    def demonitor(self, monitor):
        """Ends `monitor`; no DOWN comes after this returns."""
        with self._lock:
            entry = self._monitors.pop(monitor.ref.id, None)
        if entry and monitor.pid is not None:
            try:
                self._post(entry[1], wire.data(wire.DEMONITOR, self.self_pid, monitor.pid,
                                               monitor.ref, 0, 0, terms.encode(None)))
            except errors.NodeDown:
                pass

    def mailbox(self):
        """A new process of this node (``Mailbox``), to receive messages at its pid."""
        box = Mailbox(self, self._make_pid())
        with self._lock:
            self._mailboxes[box.pid.id] = box
        return box

    def whereis_global(self, name, node=None):
        """The pid holding the global name `name`, or None, as the table of `node` (default:
        the first node linked) has it."""
        key = name.encode() if isinstance(name, str) else bytes(name)
        table = self.admin("global_names", node=node)
        for entry in table:
            if entry.get("name") == key:
                return entry.get("pid")
        return None

    def admin(self, request, node=None, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Asks nodusd's admin server (``nodus_admin``) of `node` (default: the first linked)
        and returns the value of its ``{ok, Value}``; raises the error of its
        ``{error, Code, Name, Message}``."""
        node = node or self._first_node()
        reply = self.call(("nodus_admin", node), request, timeout_ms)
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if isinstance(reply, tuple) and len(reply) == 4 and reply[0] == "error":
            raise errors.error_of_number(reply[1], reply[3].decode("utf-8", "replace"), reply)
        raise errors.ProtocolError("nodus_admin answered %r" % (reply,), reply)

    @property
    def kv(self):
        """The store's client (``nodus.kv.Kv``), over this node's links."""
        from .kv import Kv
        with self._lock:
            if getattr(self, "_kv", None) is None:
                self._kv = Kv(self)
            return self._kv

    # -- inside ----------------------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise errors.NodeDown("the Node is closed")

    def _make_pid(self):
        n = next(self._ids)
        return Pid(self.name, self.creation, (1 << 32) | n)  # slot n, serial 1

    def _make_ref(self):
        return Ref(self.name, self.creation, next(self._ids))

    def _first_node(self):
        with self._lock:
            for p in self._peers.values():
                if p.up:
                    return p.name
        raise errors.NodeDown("not linked to any node: connect first")

    def _resolve(self, dest):
        """(node name, Pid or registered name) of a destination, as sends resolve it."""
        if isinstance(dest, Pid):
            return dest.node, dest
        if isinstance(dest, (str, bytes)):
            name = dest.decode() if isinstance(dest, bytes) else dest
            return self._first_node(), name
        if isinstance(dest, tuple) and len(dest) == 2 and isinstance(dest[1], str):
            name = dest[0].decode() if isinstance(dest[0], bytes) else dest[0]
            return Atom(dest[1]), name
        if isinstance(dest, Global):
            return self._resolve(Via(GLOBAL, dest.name))
        if isinstance(dest, Via):
            pid = dest.module.whereis_name(self, dest.key)
            if pid is None:
                raise errors.NoProc("nobody holds %r" % (dest,))
            return pid.node, pid
        raise TypeError("a destination is a Pid, a name, (name, node), Global or Via, not %r"
                        % (dest,))

    def _send_kind(self, kind, dest, term):
        node, to = self._resolve(dest)
        self._post(node, wire.data(kind, self.self_pid, to, None, 0, 0, terms.encode(term)))

    def _post(self, node, frame):
        """Queues `frame` for `node`'s link. Raises NodeDown when it is not up."""
        with self._lock:
            self._check_open()
            peer = self._by_name.get(node)
            if peer is None or not peer.up:
                raise errors.NodeDown("not linked to node %s" % node)
            peer.outbox.append(frame)
            self._cmds.append(None)  # a wake-up: the loop flushes outboxes
        self._wake()

    def _wake(self):
        with self._wake_lock:
            try:
                self._wake_push.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # a wake-up is already waiting

    def _close_mailbox(self, box, reason):
        with self._lock:
            if self._mailboxes.pop(box.pid.id, None) is None:
                return
            watchers = list(box._watchers.items())
        for ref, watcher in watchers:
            try:
                self._post(watcher.node, wire.data(wire.DOWN, box.pid, watcher, ref, 0, 0,
                                                   terms.encode(reason)))
            except errors.NodeDown:
                pass

    # -- the I/O thread --------------------------------------------------------------------

    def _setup_router(self, host):
        r = self._router
        r.setsockopt(zmq.LINGER, 0)
        r.setsockopt(zmq.MAXMSGSIZE, wire.PART_BYTES)
        r.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if self.curve:
            public, secret = self.curve
            self._zap = self._ctx.socket(zmq.REP)
            self._zap.bind("inproc://zeromq.zap.01")
            r.setsockopt(zmq.CURVE_SERVER, 1)
            r.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
            r.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())
            r.setsockopt(zmq.ZAP_DOMAIN, b"nodus")
        port = r.bind_to_random_port("tcp://" + host)
        self.listen = "tcp://%s:%d" % (host, port)

    def _loop(self):
        try:
            self._run()
        finally:
            self._shutdown()

    def _run(self):
        while True:
            poller = zmq.Poller()
            poller.register(self._wake_pull, zmq.POLLIN)
            poller.register(self._router, zmq.POLLIN)
            if self._zap is not None:
                poller.register(self._zap, zmq.POLLIN)
            dealers = {}
            with self._lock:
                peers = list(self._peers.values())
            for p in peers:
                if p.dealer is not None:
                    poller.register(p.dealer, zmq.POLLIN)
                    dealers[p.dealer] = p
            ready = dict(poller.poll(50))
            if self._wake_pull in ready:
                while True:
                    try:
                        self._wake_pull.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            with self._lock:
                cmds = list(self._cmds)
                self._cmds.clear()
                closed = self._closed
            for cmd in cmds:
                if cmd is not None:
                    cmd()
            if closed:
                return
            if self._router in ready:
                self._read_router()
            for sock, p in dealers.items():
                if sock in ready and p.dealer is sock:
                    self._read_dealer(p)
            if self._zap is not None and self._zap in ready:
                self._answer_zap()
            self._flush()
            self._tick()

    def _shutdown(self):
        with self._lock:
            peers = list(self._peers.values())
        for p in peers:
            if p.dealer is not None and p.phase == "welcomed":
                try:
                    p.dealer.send(wire.bye("closing"), zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            if p.dealer is not None:
                p.dealer.setsockopt(zmq.LINGER, 200)
                p.dealer.close()
                p.dealer = None
            self._set_down(p, None)
        for s in (self._router, self._zap, self._wake_push, self._wake_pull):
            if s is not None:
                s.close(0)
        self._ctx.term()

    def _dial(self, p):
        if p.dealer is not None:
            self._drop_dealer(p)
        d = self._ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.MAXMSGSIZE, wire.PART_BYTES)
        if p.server_key:
            public, secret = self.curve
            d.setsockopt(zmq.CURVE_SERVERKEY, p.server_key.encode())
            d.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
            d.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())
        d.connect(p.endpoint)
        p.dealer = d
        p.nonce = wire.nonce()
        p.phase = "hello_sent"
        p.attempt_started = _now()
        p.retry_at = None
        d.send(wire.hello(self.name, self.creation, self.listen, [wire.HIDDEN], p.nonce))

    def _drop_dealer(self, p):
        if p.dealer is not None:
            p.dealer.close(0)
            p.dealer = None
        p.phase = "idle"

    def _fail_attempt(self, p, exc, retry):
        with p.changed:
            p.failure = exc
            p.changed.notify_all()
        self._drop_dealer(p)
        if not retry:
            p.wanted = False

    def _read_dealer(self, p):
        try:
            parts = p.dealer.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        frames, _ = wire.frames(b"".join(parts))
        for f in frames:
            if p.dealer is None:
                return
            self._on_dealer_frame(p, f)

    def _on_dealer_frame(self, p, f):
        kind = f[0]
        if kind == wire.REFUSE:
            reason = f[1] if len(f) > 1 and isinstance(f[1], str) else "?"
            if p.up:
                # Our direction is not counted up there: down, and handshake again (section 7).
                self._set_down(p, "noconnection")
                self._drop_dealer(p)
                p.retry_at = _now()
                return
            if reason.startswith("name in use"):
                exc = errors.AlreadyStarted("%s refused us: %s" % (p.endpoint, reason))
            elif reason.startswith("protocol version"):
                exc = errors.ProtocolError("%s refused us: %s" % (p.endpoint, reason))
            else:
                exc = errors.AuthFailed("%s refused us: %s" % (p.endpoint, reason))
            self._fail_attempt(p, exc, retry=False)
            return
        if kind == wire.CHALLENGE and p.phase == "hello_sent" and len(f) == 6:
            _, version, name, creation, nonce_a, mac = f
            if not isinstance(name, str) or not isinstance(nonce_a, bytes):
                return
            if mac != wire.challenge_mac(self.cookie, p.nonce, name, self.name):
                p.dealer.send(wire.refuse("authentication failed"))
                self._fail_attempt(p, errors.AuthFailed(
                    "node %s at %s failed authentication: its cookie is not ours" %
                    (name, p.endpoint)), retry=False)
                return
            if p.name is not None and p.name != name:
                self._fail_attempt(p, errors.ProtocolError(
                    "%s is now node %s, was %s" % (p.endpoint, name, p.name)), retry=False)
                return
            p.name, p.creation = Atom(name), creation
            with self._lock:
                self._by_name[p.name] = p
            p.phase = "proof_sent"
            p.dealer.send(wire.proof(wire.proof_mac(self.cookie, nonce_a, self.name, name)))
            p.last_sent = _now()
            return
        if kind == wire.WELCOME and p.phase == "proof_sent":
            p.phase = "welcomed"
            p.last_heard = _now()
            self._maybe_up(p)

    def _maybe_up(self, p):
        if p.up or p.phase != "welcomed" or p.back_creation != p.creation:
            return
        with p.changed:
            with self._lock:
                p.up = True
            p.failure = None
            p.backoff = 0.1
            p.changed.notify_all()

    def _set_down(self, p, reason):
        """`p` is down: its calls fail nodedown, monitors of its processes fire `reason`
        (None when this Node closes)."""
        with self._lock:
            was_up = p.up
            p.up = False
            p.back_creation = None
            p.outbox.clear()
            failed = [w for w in self._pending.values() if w.node == p.name]
            fired = [(k, m) for k, (m, n) in self._monitors.items() if n == p.name]
            for k, _ in fired:
                del self._monitors[k]
        why = "node %s is down" % p.name if was_up else "not linked to node %s" % p.name
        for w in failed:
            w.finish(False, errors.NodeDown(why))
        for _, m in fired:
            m._fire(None, Atom(reason or "noconnection"))

    def _read_router(self):
        for _ in range(256):  # bounded per round, so the loop stays responsive
            try:
                msg = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(msg) < 2:
                continue
            rid, parts = msg[0], msg[1:]
            conn = self._accepted.get(rid)
            if len(parts) > 1 and (conn is None or conn.phase != "authenticated"):
                self._router.send_multipart([rid, wire.refuse(wire.NOT_AUTHENTICATED)])
                continue
            frames, _ = wire.frames(b"".join(parts))
            for f in frames:
                self._on_router_frame(rid, f)

    def _on_router_frame(self, rid, f):
        kind = f[0]
        conn = self._accepted.get(rid)
        if conn is None:
            if kind != wire.HELLO:
                if kind in (wire.DATA, wire.HEARTBEAT, wire.PEERS):
                    self._router.send_multipart([rid, wire.refuse(wire.NOT_AUTHENTICATED)])
                return
            if len(self._accepted) >= 256:
                return
            conn = self._accepted[rid] = _Accepted()
        if conn.phase == "await_hello":
            if kind != wire.HELLO or len(f) != 7:
                del self._accepted[rid]
                return
            _, version, name, creation, listen, caps, nonce_c = f
            if version != wire.VERSION:
                self._router.send_multipart(
                    [rid, wire.refuse("protocol version %s not supported" % version)])
                del self._accepted[rid]
                return
            if not isinstance(name, str) or not isinstance(nonce_c, bytes):
                del self._accepted[rid]
                return
            conn.name, conn.creation, conn.nonce = Atom(name), creation, wire.nonce()
            conn.phase = "challenged"
            self._router.send_multipart([rid, wire.challenge(
                self.name, self.creation, conn.nonce,
                wire.challenge_mac(self.cookie, nonce_c, self.name, name))])
            return
        if conn.phase == "challenged":
            if (kind != wire.PROOF or len(f) != 2 or
                    f[1] != wire.proof_mac(self.cookie, conn.nonce, conn.name, self.name)):
                if kind != wire.REFUSE:
                    self._router.send_multipart([rid, wire.refuse("authentication failed")])
                del self._accepted[rid]
                return
            conn.phase = "authenticated"
            self._router.send_multipart([rid, wire.welcome()])
            # Of a peer's connections, the one authenticated last is the one kept.
            for other, c in list(self._accepted.items()):
                if other != rid and c.name == conn.name:
                    del self._accepted[other]
            with self._lock:
                p = self._by_name.get(conn.name)
            if p is not None:
                p.back_creation = conn.creation
                p.last_heard = _now()
                self._maybe_up(p)
            return
        # Authenticated: the peer's frames.
        with self._lock:
            p = self._by_name.get(conn.name)
        if p is not None:
            p.last_heard = _now()
        if kind == wire.DATA and len(f) == 8:
            self._on_data(conn.name, f)
        elif kind == wire.BYE:
            del self._accepted[rid]
            if p is not None and p.up:
                self._set_down(p, "noconnection")
                self._drop_dealer(p)
                p.retry_at = _now() + p.backoff
        # HEARTBEAT: heard (above). PEERS: a hidden node ignores them (section 11).

    def _on_data(self, peer, f):
        _, kind, sender, to, ref, budget, tag, payload = f
        try:
            sender = _ext_id(sender, Pid)
            ref = _ext_id(ref, Ref)
            to = to if isinstance(to, str) else _ext_id(to, Pid)
            if not isinstance(payload, bytes):
                return
            if tag == 0:
                term = terms.decode(payload)
            else:
                term = terms.decode(payload)  # a typed message: its field array
        except (ValueError, TypeError):
            if kind == wire.CALL and isinstance(sender, Pid) and isinstance(ref, Ref):
                self._answer_error(sender, ref, (Atom("badarg"), b"undecodable message"))
            return
        if kind in (wire.REPLY, wire.ERROR_REPLY):
            with self._lock:
                w = self._pending.pop(ref.id, None) if ref is not None else None
            if w is not None:
                w.finish(kind == wire.REPLY, term)
            return
        if kind == wire.DOWN:
            with self._lock:
                entry = self._monitors.pop(ref.id, None) if ref is not None else None
            if entry is not None:
                entry[0]._fire(sender, term)
            return
        box = None
        if isinstance(to, Pid) and to.node == self.name and to.creation == self.creation:
            with self._lock:
                box = self._mailboxes.get(to.id)
        if box is None:
            if kind == wire.CALL and sender is not None and ref is not None:
                self._answer_error(sender, ref, Atom("noproc"))
            elif kind == wire.MONITOR and sender is not None and ref is not None:
                self._post_quiet(sender.node, wire.data(wire.DOWN, to if isinstance(to, Pid)
                                                        else None, sender, ref, 0, 0,
                                                        terms.encode(Atom("noproc"))))
            return
        if kind == wire.MONITOR:
            box._watchers[ref] = sender
        elif kind == wire.DEMONITOR:
            box._watchers.pop(ref, None)
        elif kind in (wire.INFO, wire.CAST, wire.CALL):
            name = {wire.INFO: "info", wire.CAST: "cast", wire.CALL: "call"}[kind]
            box._queue.put(Message(name, sender, ref, tag, term))
        elif kind in (wire.EXIT_SIGNAL, wire.LINK_EXIT):
            box._queue.put(Message("exit", sender, ref, tag, term))

    def _answer_error(self, to, ref, reason):
        self._post_quiet(to.node, wire.data(wire.ERROR_REPLY, None, to, ref, 0, 0,
                                            terms.encode(reason)))

    def _post_quiet(self, node, frame):
        with self._lock:
            p = self._by_name.get(node)
            if p is not None and p.up:
                p.outbox.append(frame)

    def _flush(self):
        with self._lock:
            work = [(p, p.outbox) for p in self._by_name.values() if p.outbox]
            for p, _ in work:
                p.outbox = []
        for p, frames in work:
            if p.dealer is None:
                continue
            batch, size = [], 0
            for fr in frames:
                if batch and size + len(fr) > wire.PART_BYTES:
                    self._send_message(p, b"".join(batch))
                    batch, size = [], 0
                batch.append(fr)
                size += len(fr)
            if batch:
                self._send_message(p, b"".join(batch))

    def _send_message(self, p, message):
        try:
            p.dealer.send_multipart(wire.parts(message), zmq.NOBLOCK)
            p.last_sent = _now()
        except zmq.Again:
            pass  # at most once: a full queue drops, as a lost link would

    def _tick(self):
        now = _now()
        with self._lock:
            peers = list(self._peers.values())
        for p in peers:
            if p.up:
                if now - p.last_heard > self._down_after:
                    self._set_down(p, "noconnection")
                    self._drop_dealer(p)
                    p.retry_at = now + p.backoff
                elif now - p.last_sent >= self._heartbeat:
                    p.hb_seq += 1
                    self._send_message(p, wire.heartbeat(p.hb_seq))
                continue
            if p.phase not in ("idle",) and now - p.attempt_started > self._down_after * 2:
                # No handshake: keep dialling while someone wants the link.
                self._drop_dealer(p)
                p.retry_at = now + p.backoff
            if p.wanted and p.phase == "idle" and p.retry_at is not None and now >= p.retry_at:
                p.backoff = min(p.backoff * 2, 5.0)
                self._dial(p)
            elif p.phase == "welcomed" and not p.up and p.dealer is not None:
                # Waiting for its link back: keep ours alive meanwhile.
                if now - p.last_sent >= self._heartbeat:
                    p.hb_seq += 1
                    self._send_message(p, wire.heartbeat(p.hb_seq))

    def _answer_zap(self):
        try:
            req = self._zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(req) < 6:
            return
        version, request_id, mechanism = req[0], req[1], req[5]
        key = req[6] if len(req) > 6 else b""
        z85 = zmq.utils.z85.encode(key).decode() if len(key) == 32 else None
        with self._lock:
            ok = mechanism == b"CURVE" and z85 in self._allowed_keys
        if ok:
            self._zap.send_multipart([version, request_id, b"200", b"OK", z85.encode(), b""])
        else:
            self._zap.send_multipart([version, request_id, b"400", b"not a cluster key", b"",
                                      b""])


def _ext_id(x, cls):
    import msgpack
    if x is None:
        return None
    if isinstance(x, msgpack.ExtType) and x.code == cls._ext:
        return cls.from_payload(x.data)
    raise ValueError("not a %s" % cls.__name__)


def _show(dest):
    return str(dest) if isinstance(dest, Pid) else repr(dest)
