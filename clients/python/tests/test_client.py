"""The Python client against a real 3-node nodusd cluster (the binary from $NODUSD).

Run: NODUSD=build/bin/nodusd /usr/bin/python3 -m unittest discover -s clients/python/tests
"""

import os
import sys
import unittest

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nodus  # noqa: E402
from cluster import Cluster, eventually  # noqa: E402


def connect(cluster, name="n1", **kw):
    """A hidden Node linked to `name` (dialled until the node listens, within a deadline)."""
    node = nodus.Node(cookie=kw.pop("cookie", cluster.cookie), **kw)
    try:
        eventually(lambda: node.connect(cluster.endpoint(name), timeout_ms=1000),
                   what="a link to " + name)
    except BaseException:
        node.close()
        raise
    return node


class ClusterTest(unittest.TestCase):
    """One cluster for the class (starting one costs a second or two)."""

    cluster = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(size=3, replicas=3).start()
        try:
            cls.node = connect(cls.cluster)
            cls.node.connect(cls.cluster.endpoint("n2"))
            cls.node.connect(cls.cluster.endpoint("n3"))
            eventually(lambda: cls.node.kv.ring()["epoch"] > 0, what="the ring")
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.node.close()
        cls.cluster.stop()

    def tearDown(self):
        self.cluster.check_alive()  # the nodes kept serving whatever the test sent


class HandshakeTest(ClusterTest):
    def test_right_cookie_links_as_a_hidden_node(self):
        self.assertEqual(["n1", "n2", "n3"], self.node.peers())
        self.node.connect(self.cluster.endpoint("n2"))  # again: harmless, the link stays up
        self.assertEqual(["n1", "n2", "n3"], self.node.peers())
        self.assertEqual("pong", self.node.admin("ping"))
        # Hidden: the members do not count it as one of theirs (protocol.md section 11).
        names = [row["name"] for row in self.node.admin("nodes")]
        self.assertEqual(["n1", "n2", "n3"], sorted(names))

    def test_wrong_cookie_is_a_clear_error(self):
        node = nodus.Node(cookie="not-the-cookie")
        try:
            with self.assertRaises(nodus.AuthFailed) as e:
                node.connect(self.cluster.endpoint("n1"), timeout_ms=3000)
            self.assertEqual("auth_failed", e.exception.name)
            self.assertIn("cookie", str(e.exception))
            self.assertEqual([], node.peers())
        finally:
            node.close()

    def test_name_in_use_is_refused(self):
        node = nodus.Node(name="n2", cookie=self.cluster.cookie)
        try:
            with self.assertRaises(nodus.AlreadyStarted) as e:
                node.connect(self.cluster.endpoint("n1"), timeout_ms=3000)
            self.assertIn("name in use", str(e.exception))
        finally:
            node.close()


class MessagingTest(ClusterTest):
    def test_cast_then_call_a_local_name(self):
        self.node.cast("stack", ("push", 41))  # on n1, the first node linked
        self.node.cast("stack", ("push", [1, b"two", ("three",)]))
        self.assertEqual(("ok", [1, b"two", ("three",)]), self.node.call("stack", "pop"))
        self.assertEqual(("ok", 41), self.node.call("stack", "pop"))
        self.assertEqual(("error", "empty"), self.node.call("stack", "pop"))

    def test_local_name_on_another_node(self):
        self.node.cast(("stack", "n3"), ("push", 3))
        self.assertEqual(("ok", 3), self.node.call(("stack", "n3"), "peek", timeout_ms=2000))
        self.assertEqual(("ok", 3), self.node.call(("stack", "n3"), "pop"))
        self.assertEqual(("error", "empty"), self.node.call(("stack", "n2"), "pop"))

    def test_call_to_a_pid(self):
        pid = next(row["pid"] for row in self.node.admin("names", node="n2")
                   if row["name"] == b"stack")
        self.assertIsInstance(pid, nodus.Pid)
        self.assertEqual("n2", pid.node)
        self.node.cast(pid, ("push", 7))
        self.assertEqual(("ok", 7), self.node.call(pid, "pop"))

    def test_global_name_and_via_global(self):
        before = self.node.call(nodus.Global("hits"), "increment")
        after = self.node.call(nodus.Via(nodus.GLOBAL, "hits"), "increment")
        self.assertEqual(before + 1, after)
        self.assertEqual("n1", self.node.whereis_global("hits").node)
        # Asked of another node's table, the same holder.
        self.assertEqual(self.node.whereis_global("hits"),
                         self.node.whereis_global("hits", node="n3"))

    def test_via_module_of_the_callers_own(self):
        class Directory:  # a via module: whereis_name on the sender's side, as in Erlang
            def __init__(self, node):
                self.node = node

            def whereis_name(self, node, key):
                for row in node.admin("names", node=self.node):
                    if row["name"] == key:
                        return row["pid"]
                return None

        self.node.cast(nodus.Via(Directory("n2"), b"stack"), ("push", "via"))
        self.assertEqual(("ok", "via"), self.node.call(("stack", "n2"), "pop"))
        with self.assertRaises(nodus.NoProc):
            self.node.call(nodus.Via(Directory("n2"), b"nobody"), "pop")

    def test_via_name_of_a_nodes_registry(self):
        # {via, Reg, Key, Node}: the stack n2's Registry "reg" holds as vstack.
        vstack = nodus.Via(nodus.Registry("reg", "n2"), b"vstack")
        self.node.cast(vstack, ("push", "via-reg"))
        self.assertEqual(("ok", "via-reg"), self.node.call(vstack, "pop"))
        self.assertEqual(("error", "empty"), self.node.call(vstack, "pop"))
        mon = self.node.monitor(vstack)
        self.assertFalse(mon.down)
        self.node.demonitor(mon)
        for nobody in (nodus.Via(nodus.Registry("reg", "n2"), b"nobody"),
                       nodus.Via(nodus.Registry("other", "n2"), b"vstack"),
                       nodus.Via(nodus.Registry("reg", "n3"), b"vstack")):
            with self.assertRaises(nodus.NoProc):
                self.node.call(nobody, "pop")

    def test_unknown_names_are_noproc(self):
        with self.assertRaises(nodus.NoProc) as e:
            self.node.call("no_such_name", "hello", timeout_ms=2000)
        self.assertEqual("noproc", e.exception.name)
        with self.assertRaises(nodus.NoProc):
            self.node.call(nodus.Global("nobody-holds-this"), "hello")
        with self.assertRaises(nodus.NodeDown):
            self.node.call(("stack", "n9"), "pop")

    def test_call_timeout_leaves_no_stray_reply(self):
        with self.assertRaises(nodus.Timeout):
            self.node.call("slow", ("slow", 600), timeout_ms=100)  # SlowServer sleeps 600 ms
        # The late reply is dropped; the next call gets its own answer.
        self.assertEqual(("error", "empty"), self.node.call(("stack", "n3"), "pop"))
        self.assertEqual("done", self.node.call("slow", "fast"))


class MonitorTest(ClusterTest):
    def test_monitor_gets_down_with_the_exit_reason(self):
        mon = self.node.monitor(("stack", "n2"))
        # A call it does not know stops a GenServer with {bad_call, Request}: the caller
        # gets the exit, the monitor its DOWN; the node's supervisor restarts the server.
        with self.assertRaises(nodus.Exited) as e:
            self.node.call(("stack", "n2"), "garbage")
        self.assertEqual(("bad_call", "garbage"), e.exception.reason)
        self.assertEqual(("bad_call", "garbage"), mon.wait(5000))
        self.assertEqual("n2", mon.pid.node)
        eventually(lambda: self.node.call(("stack", "n2"), "pop") == ("error", "empty"),
                   what="the restarted stack")

    def test_monitor_of_nobody_is_down_noproc(self):
        mon = self.node.monitor(("no_such_name", "n3"))
        self.assertEqual("noproc", mon.wait(5000))


class StoreTest(ClusterTest):
    def test_put_get_delete_with_context(self):
        kv = self.node.kv
        with self.assertRaises(nodus.NotFound):
            kv.get(b"py:absent")
        ctx = kv.put(b"py:user1", b"ada", w=2)
        self.assertIsInstance(ctx, bytes)
        got = kv.get(b"py:user1", r=2)
        self.assertEqual([b"ada"], got.values)
        self.assertEqual(b"ada", got.value)
        kv.put(b"py:user1", b"ada lovelace", context=got.context)
        got = kv.get("py:user1")  # a str key is its UTF-8 bytes
        self.assertEqual([b"ada lovelace"], got.values)
        kv.delete(b"py:user1", context=got.context)
        with self.assertRaises(nodus.NotFound):
            kv.get(b"py:user1", r=3)

    def test_blind_puts_make_siblings_and_the_merged_context_resolves_them(self):
        kv = self.node.kv
        kv.put(b"py:cart", b"milk")
        kv.put(b"py:cart", b"eggs")  # no context: a sibling, not an overwrite
        got = kv.get(b"py:cart", r=3)
        self.assertTrue(got.has_siblings)
        self.assertEqual([b"eggs", b"milk"], sorted(got.values))
        with self.assertRaises(ValueError):
            got.value
        kv.put(b"py:cart", b",".join(sorted(got.values)), context=got.context)
        self.assertEqual([b"eggs,milk"], kv.get(b"py:cart", r=3).values)

    def test_requests_go_to_a_primary_of_the_key(self):
        kv = self.node.kv
        ring = kv.ring()
        for key in (b"a", b"{user1}.name", b"py:route"):
            p = nodus.partition_of(key, ring["partitions"])
            primaries = nodus.preference_list([o.decode() for o in ring["owners"]], p,
                                              ring["replicas"])
            self.assertEqual(primaries[0], kv.coordinator(key))
        self.assertEqual(57, nodus.partition_of(b"a", 64))  # protocol.md 12.1's table
        self.assertEqual(57, nodus.partition_of(b"{a}.x", 64))
        self.assertEqual(11, nodus.partition_of(b"", 64))

    def test_a_put_with_ttl_expires(self):
        kv = self.node.kv
        kv.put(b"py:lasting", b"v", ttl_ms=3600 * 1000)
        self.assertEqual(b"v", kv.get(b"py:lasting").value)
        kv.put(b"py:brief", b"v", ttl_ms=200)

        def gone():
            try:
                kv.get(b"py:brief")
                return False
            except nodus.NotFound:
                return True
        eventually(gone, what="py:brief to expire")
        with self.assertRaises(nodus.BadArg):
            kv.put(b"py:bad", b"v", ttl_ms=0)

    def test_keys_lists_what_was_put(self):
        kv = self.node.kv
        for i in range(3):
            kv.put(b"py:list:%d" % i, b"x")
        keys, _ = kv.keys(b"py:list:*")
        self.assertEqual([b"py:list:0", b"py:list:1", b"py:list:2"], sorted(keys))

    def test_bad_input_is_answered_with_an_error(self):
        kv = self.node.kv
        with self.assertRaises(nodus.BadArg) as e:
            kv.put(b"py:bad", b"v", w=9)  # a quorum above N
        self.assertEqual("badarg", e.exception.name)
        with self.assertRaises(nodus.BadArg):
            kv.put(b"py:bad", b"v", context=b"\x02forged")
        ctx = kv.put(b"py:ctx-of-another", b"v")
        with self.assertRaises(nodus.BadArg):
            kv.put(b"py:bad", b"v", context=ctx)  # signed for another key
        reply = self.node.call("nodus_kv", ("get", "not-a-binary", {}))  # raw, not via Kv
        self.assertEqual(("error", "badarg"), (reply[0], reply[1][0]))
        reply = self.node.call("nodus_kv", ("frobnicate", b"k"))
        self.assertEqual("error", reply[0])
        with self.assertRaises(nodus.ValueTooLarge):
            kv.put(b"k" * 70000, b"v")
        self.assertEqual(b"v", kv.get(b"py:ctx-of-another").value)  # still serving

    def test_bad_frames_leave_the_node_serving(self):
        # Garbage straight at a node's ROUTER, before any handshake: dropped, counted.
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.cluster.endpoint("n1"))
        s.send(b"\xc1\xc1 not msgpack")
        s.send(nodus.wire.data(0, None, "stack", None, 0, 0, nodus.encode(1)))
        self.assertTrue(s.poll(3000))  # REFUSE "not authenticated" (protocol.md 2, 7)
        frames, _ = nodus.wire.frames(s.recv())
        self.assertEqual([nodus.wire.REFUSE, "not authenticated"], frames[0])
        s.close()
        self.assertEqual("pong", self.node.admin("ping"))


class WatchTest(ClusterTest):
    def events(self, w, n):
        return [w.next(timeout_ms=15000) for _ in range(n)]

    def test_watch_hears_each_change_once_in_order_per_key(self):
        with self.node.kv.watch(b"pw:*", node="n2") as w:  # held by n2; writes go to primaries
            ctx_a = self.node.kv.put(b"pw:a", b"1")
            self.node.kv.put(b"elsewhere", b"not watched")
            ctx_b = self.node.kv.put(b"pw:b", b"2", ttl_ms=200)
            del_a = self.node.kv.delete(b"pw:a", context=ctx_a)
            got = self.events(w, 4)  # the expiry comes from the sweep, within about a second
        per_key = {}
        for e in got:
            self.assertIsInstance(e, nodus.WatchEvent)
            per_key.setdefault(e.key, []).append(e)
        self.assertEqual([nodus.WatchEvent("put", b"pw:a", b"1", ctx_a),
                          nodus.WatchEvent("delete", b"pw:a", b"", del_a)], per_key[b"pw:a"])
        b = per_key[b"pw:b"]
        self.assertEqual(nodus.WatchEvent("put", b"pw:b", b"2", ctx_b), b[0])
        self.assertEqual(("expire", b"pw:b", b"2"), b[1][:3])
        self.assertTrue(w.closed)

    def test_prefix_and_key_watches(self):
        with self.node.kv.watch(b"px:", match="prefix") as by_prefix, \
                self.node.kv.watch(b"px:*", match="key") as by_key:
            self.node.kv.put(b"px:one", b"1")
            self.node.kv.put(b"px:*", b"star")  # the key named by the pattern's bytes
            got = self.events(by_prefix, 2)
            self.assertEqual({b"px:one", b"px:*"}, {e.key for e in got})
            self.assertEqual(("put", b"px:*", b"star"), self.events(by_key, 1)[0][:3])
            with self.assertRaises(nodus.Timeout):
                by_key.next(timeout_ms=300)

    def test_bad_patterns_are_refused(self):
        with self.assertRaises(nodus.BadArg):
            self.node.kv.watch(b"")
        with self.assertRaises(nodus.BadArg):
            self.node.kv.watch(b"x" * 70000)
        with self.assertRaises(ValueError):
            self.node.kv.watch(b"x", match="regex")


class WatchAckTest(unittest.TestCase):
    """A node with kv.watch_queue = 20: acknowledgements keep a watcher that takes its events
    alive; one that does not take them is told WatchLost."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(size=2, replicas=2, extra="[kv]\nwatch_queue = 20").start()
        try:
            cls.node = connect(cls.cluster)
            cls.node.connect(cls.cluster.endpoint("n2"))
            eventually(lambda: cls.node.kv.ring()["epoch"] > 0, what="the ring")
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.node.close()
        cls.cluster.stop()

    def test_a_watcher_that_takes_its_events_is_never_dropped(self):
        with self.node.kv.watch(b"ack:*") as w:
            for i in range(100):  # five times the bound, each taken (and so acknowledged)
                self.node.kv.put(b"ack:%d" % i, b"v")
                self.assertEqual(b"ack:%d" % i, w.next(timeout_ms=10000).key)

    def test_a_watcher_that_does_not_take_them_is_told_watch_lost(self):
        w = self.node.kv.watch(b"lag:*")
        for i in range(40):
            self.node.kv.put(b"lag:%d" % i, b"v")
        taken = 0
        with self.assertRaises(nodus.WatchLost) as lost:
            for _ in range(41):
                w.next(timeout_ms=10000)
                taken += 1
        self.assertEqual(b"lag:*", lost.exception.pattern)
        self.assertLessEqual(taken, 21)  # the events before the loss, then the notice
        self.assertTrue(w.closed)
        w.close()  # harmless


class NodeDownTest(unittest.TestCase):
    def test_monitor_of_a_killed_nodes_process_fires_noconnection(self):
        cluster = Cluster(size=2, replicas=2).start()
        node = None
        try:
            node = connect(cluster, "n1")
            node.connect(cluster.endpoint("n2"))
            mon = node.monitor(("stack", "n2"))
            self.assertEqual(("error", "empty"), node.call(("stack", "n2"), "pop"))
            cluster.kill("n2")
            # Silence is the only sign (section 7): DOWN within down_after and a heartbeat.
            self.assertEqual("noconnection", mon.wait(6000))
            with self.assertRaises(nodus.NodeDown):
                node.call(("stack", "n2"), "pop")
            self.assertEqual(["n1"], node.peers())
            cluster.start("n2")  # back under a new creation: the client dials it again
            eventually(lambda: node.is_up("n2"), what="n2 linked again")
            eventually(lambda: node.call(("stack", "n2"), "pop") == ("error", "empty"),
                       what="n2's stack")
        finally:
            if node:
                node.close()
            cluster.stop()


class CurveTest(unittest.TestCase):
    def test_curve_cluster_needs_the_clients_key_in_curve_allowed(self):
        keys = {name: tuple(k.decode() for k in zmq.curve_keypair()) for name in ("n1", "n2")}
        client_keys = tuple(k.decode() for k in zmq.curve_keypair())
        stranger_keys = tuple(k.decode() for k in zmq.curve_keypair())
        keys["client"] = client_keys
        cluster = Cluster(size=2, replicas=2, curve=keys).start()
        node = None
        try:
            node = nodus.Node(cookie=cluster.cookie, curve=client_keys)
            eventually(lambda: node.connect(cluster.endpoint("n1"), timeout_ms=1000),
                       what="a CURVE link")
            self.assertEqual(("error", "empty"), node.call("stack", "pop"))
            eventually(lambda: node.kv.ring()["epoch"] > 0, what="the ring")
            node.kv.put(b"secret", b"s3cr3t")
            self.assertEqual(b"s3cr3t", eventually(lambda: node.kv.get(b"secret").value))
            stranger = nodus.Node(cookie=cluster.cookie, curve=stranger_keys)
            try:
                with self.assertRaises(nodus.Timeout):  # ZeroMQ's handshake never completes
                    stranger.connect(cluster.endpoint("n1"), timeout_ms=1500)
            finally:
                stranger.close()
        finally:
            if node:
                node.close()
            cluster.stop()


if __name__ == "__main__":
    unittest.main()
