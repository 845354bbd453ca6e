"""The store (docs/protocol.md section 12): gets, puts and deletes with causal contexts.

Requests are calls of terms to the server ``nodus_kv`` (12.3). Each goes to the key's first
primary among the nodes this client is linked to (the partition is the top bits of XXH3-64
of the key's hash tag, 12.1; the ring comes from ``nodus_kv``'s ``ring``), which coordinates
it without a hop; when none of them is a primary, any linked node takes it and asks a
primary itself.

Watches (12.7): ``watch(pattern)`` returns a ``Watch``, a process of this client (a
``Mailbox``) that the store sends ``{kv_event, Kind, Key, Value, Context}`` for each change of
a matching key; iterating it yields ``WatchEvent`` tuples and acknowledges them, as a watcher
on a hidden node must, and ``WatchLost`` is raised when the store ended the watch.
"""

import collections
import threading
import time

import xxhash

from . import errors
from .terms import Atom

_RING_MAX_AGE_S = 5.0
_CALL_SLACK_MS = 1000  # a call waits this much beyond the request's own timeout (12.3)


class KvObject:
    """What a get returns: ``values`` (one, or several siblings: writes made without seeing
    each other), and ``context``, the opaque causal context to pass back with the next put
    or delete of the key so that it supersedes exactly these values."""

    __slots__ = ("key", "values", "context")

    def __init__(self, key, values, context):
        self.key, self.values, self.context = key, values, context

    @property
    def value(self):
        """The value, when there is one; raises ``ValueError`` when there are siblings."""
        if len(self.values) != 1:
            raise ValueError("%d siblings: resolve them (values) and put with the context"
                             % len(self.values))
        return self.values[0]

    @property
    def has_siblings(self):
        return len(self.values) > 1

    def __repr__(self):
        return "KvObject(%r, values=%r)" % (self.key, self.values)


WatchEvent = collections.namedtuple("WatchEvent", "kind key value context")
WatchEvent.__doc__ = """One change (12.7): ``kind`` ``"put"``, ``"delete"`` or ``"expire"``;
``key``; ``value`` what the put wrote (``b""`` for a delete, the expired value for an expiry);
``context`` the key's causal context after the change (a put with it supersedes it)."""

_ACK_EVERY = 16  # events taken before an acknowledgement is sent, at the latest
_WATCH_SERVER = "nodus_kv_watch"


class Watch:
    """A watch of the keys a pattern matches (``Kv.watch``). Iterate it, or call ``next()``,
    for ``WatchEvent`` s in the order the store sent them (per key in version order). Each
    event taken is acknowledged to the node holding the watch (``{kv_watch_ack, WatchRef,
    N}``, at least every 16 events and whenever no more are waiting), so the watch is dropped
    only when this client falls more than ``kv.watch_queue`` events behind: then ``WatchLost``
    is raised, once, and the iteration ends. ``close()`` (or leaving a ``with``) ends the
    watch. Not for use by several threads at once."""

    def __init__(self, node, box, ref, holder, pattern):
        self._node, self._box, self.ref, self.node, self.pattern = node, box, ref, holder, pattern
        self._unacked = 0
        self.closed = False

    def next(self, timeout_ms=5000):
        """The next event. Raises ``Timeout`` when none came within `timeout_ms` (``None``:
        wait for ever), ``WatchLost`` when the store ended the watch (then it is closed),
        ``NodeDown`` when its node went down."""
        if self.closed:
            raise errors.WatchLost("the watch is closed", pattern=self.pattern)
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            if self._unacked and self._box._queue.empty():
                self._ack()  # everything that came was taken
            left = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            try:
                msg = self._box.receive(int(left * 1000))
            except errors.Timeout:
                if not self._node.is_up(self.node):
                    self._end()
                    raise errors.NodeDown("node %s, which held the watch of %r, went down: "
                                          "watch again through another" % (self.node,
                                                                           self.pattern))
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.Timeout("no event within %d ms" % timeout_ms) from None
                continue
            t = msg.term
            if isinstance(t, tuple) and len(t) == 5 and t[0] == "kv_event":
                self._unacked += 1
                if self._unacked >= _ACK_EVERY or self._box._queue.empty():
                    self._ack()
                return WatchEvent(str(t[1]), t[2], t[3], t[4])
            if isinstance(t, tuple) and len(t) == 2 and t[0] == "kv_watch_lost":
                self._end()
                raise errors.WatchLost(
                    "the store ended the watch of %r: events may have been missed (read what "
                    "you need, then watch again)" % (self.pattern,), t, pattern=t[1])

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed:
            raise StopIteration
        return self.next(timeout_ms=None)

    def close(self):
        """Ends the watch (events already sent are dropped). Idempotent."""
        if self.closed:
            return
        self._ack()
        try:
            self._node.call(("nodus_kv", self.node), ("unwatch", self.ref), 5000)
        except errors.NodusError:
            pass  # the node went away: the watch went with this client's link
        self._end()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _ack(self):
        if self._unacked and not self.closed:
            try:
                self._node.send((_WATCH_SERVER, self.node),
                                (Atom("kv_watch_ack"), self.ref, self._unacked))
            except errors.NodusError:
                pass
        self._unacked = 0

    def _end(self):
        self.closed = True
        self._box.close()


def hash_tag(key):
    """The bytes that place `key` (12.1): between the first ``{`` and the first ``}`` after
    it when that is not empty, else the whole key (Redis Cluster's rule)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def partition_of(key, partitions):
    """The partition of `key` on a ring of `partitions` (a power of two)."""
    if partitions <= 1:
        return 0
    bits = partitions.bit_length() - 1
    return xxhash.xxh3_64_intdigest(hash_tag(_bytes(key))) >> (64 - bits)


def preference_list(owners, partition, replicas):
    """The primaries of `partition`: its owner and the next partitions' clockwise, distinct,
    until `replicas` of them (12.1)."""
    out = []
    q = len(owners)
    for i in range(q):
        owner = owners[(partition + i) % q]
        if owner not in out:
            out.append(owner)
            if len(out) == replicas:
                break
    return out


def _bytes(x):
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError("a key or value is bytes or str, not %s" % type(x).__name__)


class Kv:
    """The store's client over a ``Node``'s links. Thread-safe."""

    def __init__(self, node):
        self._node = node
        self._lock = threading.Lock()
        self._ring = None
        self._ring_at = 0.0

    # -- requests --------------------------------------------------------------------------

    def get(self, key, r=None, pr=None, timeout_ms=None):
        """The key's values and context (``KvObject``). Raises ``NotFound`` (no live value),
        ``NoQuorum``, ``Timeout``, ``Unavailable``, ``Overloaded``, ``BadArg``."""
        key = _bytes(key)
        reply = self._ask(key, ("get", key, _opts(r=r, pr=pr, timeout=timeout_ms)), timeout_ms)
        values, context = _ok(reply, 2)
        return KvObject(key, list(values), context)

    def put(self, key, value, context=None, w=None, pw=None, dw=None, timeout_ms=None,
            ttl_ms=None):
        """Stores `value`; with `context` (of a get) it supersedes the values that get
        returned, without one it becomes a sibling of what is there; with `ttl_ms` it expires
        that many ms after the coordinator stored it (then reads as absent). Returns the new
        object's context. Raises ``NoQuorum``, ``Timeout``, ``ValueTooLarge``,
        ``TooManySiblings``, ``BadArg`` (a bad context or option) ..."""
        key = _bytes(key)
        opts = _opts(w=w, pw=pw, dw=dw, timeout=timeout_ms, context=context, ttl=ttl_ms)
        return _ok(self._ask(key, ("put", key, _bytes(value), opts), timeout_ms), 1)[0]

    def delete(self, key, context=None, w=None, pw=None, dw=None, timeout_ms=None):
        """Deletes the key (a tombstone superseding what `context` saw, or without one what
        the coordinating replica holds). Returns the tombstone's context."""
        key = _bytes(key)
        opts = _opts(w=w, pw=pw, dw=dw, timeout=timeout_ms, context=context)
        return _ok(self._ask(key, ("delete", key, opts), timeout_ms), 1)[0]

    def keys(self, pattern=b"*", limit=None, cursor=None, timeout_ms=None):
        """One page of the live keys matching the glob `pattern`: ``(keys, cursor)``, the
        cursor None after the last page."""
        opts = _opts(limit=limit, cursor=cursor, timeout=timeout_ms)
        keys, cursor = _ok(self._ask(None, ("keys", _bytes(pattern), opts), timeout_ms), 2)
        return list(keys), cursor

    def watch(self, pattern=b"*", match="glob", node=None):
        """Watches the keys `pattern` matches (`match`: ``"glob"``, as ``keys``; ``"prefix"``:
        keys starting with it; ``"key"``: that key) through `node`'s store (default: the first
        linked), which holds the watch. Returns a ``Watch`` once every ring member up knows
        the pattern: every change made after it is seen. Raises ``BadArg`` (an empty pattern,
        over 64 KiB), ``TooManyWatches`` (``kv.max_watches``), ``NoProc`` (no store there)."""
        pattern = _bytes(pattern)
        if match == "glob":
            term = pattern
        elif match in ("prefix", "key"):
            term = (Atom(match), pattern)
        else:
            raise ValueError("match is 'glob', 'prefix' or 'key', not %r" % (match,))
        node = node or self._node._first_node()
        box = self._node.mailbox()
        try:
            reply = box.call(("nodus_kv", node), (Atom("watch"), term), 5000 + _CALL_SLACK_MS)
            if isinstance(reply, tuple) and reply and reply[0] == "error":
                raise _kv_error(reply)
            ref = _ok(reply, 1)[0]
        except BaseException:
            box.close()
            raise
        return Watch(self._node, box, ref, node, pattern)

    def ring(self, node=None):
        """The ring as `node` (default: the first linked) has it: a dict with ``epoch``,
        ``partitions``, ``replicas``, ``members`` ([(name, up|down)]) and ``owners``."""
        return _ok(self._ask_node(node, Atom("ring")), 1)[0]

    def stats(self, node=None):
        """The store's figures on `node` (12.3's ``stats``), a dict."""
        return _ok(self._ask_node(node, Atom("stats")), 1)[0]

    # -- routing ---------------------------------------------------------------------------

    def coordinator(self, key):
        """The linked node a request on `key` goes to: its first linked primary, else the
        first linked node."""
        linked = self._node.peers()
        if not linked:
            raise errors.NodeDown("not linked to any node: connect first")
        ring = self._current_ring()
        if ring:
            q, n = ring["partitions"], ring["replicas"]
            owners = [o.decode() if isinstance(o, bytes) else str(o) for o in ring["owners"]]
            if q and len(owners) == q:
                for name in preference_list(owners, partition_of(key, q), n):
                    if name in linked:
                        return Atom(name)
        return linked[0]

    def _current_ring(self):
        with self._lock:
            if self._ring is not None and time.monotonic() - self._ring_at < _RING_MAX_AGE_S:
                return self._ring
        try:
            ring = self.ring()
        except errors.NodusError:
            ring = None
        with self._lock:
            self._ring, self._ring_at = ring, time.monotonic()
        return ring

    def _ask(self, key, request, timeout_ms):
        node = self.coordinator(key) if key is not None else None
        return self._ask_node(node, request, timeout_ms)

    def _ask_node(self, node, request, timeout_ms=None):
        node = node or self._node._first_node()
        wait = (timeout_ms or 5000) + _CALL_SLACK_MS
        reply = self._node.call(("nodus_kv", node), request, wait)
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            with self._lock:
                self._ring = None  # the ring may have moved: ask again next time
            raise _kv_error(reply)
        return reply


def _opts(**given):
    out = {}
    for k, v in given.items():
        if v is None:
            continue
        out[Atom(k)] = _bytes(v) if k in ("context", "cursor") else v
    return out


def _ok(reply, n):
    if not (isinstance(reply, tuple) and len(reply) == n + 1 and reply[0] == "ok"):
        raise errors.ProtocolError("nodus_kv answered %r" % (reply,), reply)
    return reply[1:]


def _kv_error(reply):
    """The exception of ``{error, Why}`` (12.3)."""
    why = reply[1] if len(reply) == 2 else reply[1:]
    if isinstance(why, str):
        return errors.error_class(why)(why, reply)
    if isinstance(why, tuple) and len(why) == 4 and why[0] == "no_quorum":
        _, which, needed, got = why
        return errors.NoQuorum("quorum %s needed %s, got %s" % (which, needed, got), reply,
                               which=str(which), needed=needed, got=got)
    if isinstance(why, tuple) and len(why) == 2 and isinstance(why[0], str):
        message = why[1].decode("utf-8", "replace") if isinstance(why[1], bytes) else str(
            why[1])
        return errors.error_class(why[0])(message, reply)
    return errors.ProtocolError("nodus_kv answered %r" % (reply,), reply)
