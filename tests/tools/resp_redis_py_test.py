"""nodusd's Redis protocol through python3-redis (Debian's), a client nobody here wrote.

Run by integration_resp_test against a real cluster: NODUS_RESP_PORTS names the RESP ports of
its nodes (comma-separated). Strings, MGET/MSET/EXISTS/DEL of many keys, SET GET and KEEPTTL
(atomic: from many clients each old value is answered once), pipelines, SCAN iteration, errors, INCR from
many clients, transactions (pipelines with transaction=True, WATCH and WatchError), pub/sub
keyspace notifications (PSUBSCRIBE/SUBSCRIBE fed by the store's watches).
"""
import os
import threading
import time
import unittest

import redis


def ports():
    return [int(p) for p in os.environ["NODUS_RESP_PORTS"].split(",")]


class RedisPyTest(unittest.TestCase):
    def setUp(self):
        self.r = redis.Redis(host="127.0.0.1", port=ports()[0], socket_timeout=10)
        self.other = redis.Redis(host="127.0.0.1", port=ports()[-1], socket_timeout=10)

    def tearDown(self):
        self.r.close()
        self.other.close()

    def test_strings(self):
        self.assertTrue(self.r.ping())
        self.assertTrue(self.r.set("py:s", "hello"))
        self.assertEqual(b"hello", self.r.get("py:s"))
        self.assertTrue(self.r.set("py:s", b"\x00\xffbinary\r\n"))
        # Any node answers for any key.
        self.assertEqual(b"\x00\xffbinary\r\n", self.other.get("py:s"))
        self.assertIsNone(self.r.get("py:missing"))
        self.assertEqual(1, self.r.exists("py:s"))
        self.assertEqual(1, self.r.delete("py:s", "py:missing"))
        self.assertIsNone(self.r.get("py:s"))
        self.assertEqual(0, self.r.exists("py:s"))
        self.assertEqual(b"echo me", self.r.echo("echo me"))

    def test_expiry(self):
        self.assertTrue(self.r.set("py:x", "v", ex=100))
        self.assertTrue(95 <= self.other.ttl("py:x") <= 100)
        self.assertTrue(90000 < self.r.pttl("py:x") <= 100000)
        self.assertTrue(self.r.set("py:y", "v"))
        self.assertEqual(-1, self.r.ttl("py:y"))
        self.assertEqual(-2, self.r.ttl("py:missing"))
        self.assertFalse(self.r.expire("py:missing", 10))
        self.assertTrue(self.r.expire("py:y", 50))
        self.assertTrue(45 <= self.other.ttl("py:y") <= 50)
        self.assertTrue(self.r.pexpire("py:y", 80000))
        self.assertTrue(self.r.persist("py:y"))
        self.assertEqual(-1, self.r.ttl("py:y"))
        self.assertEqual(b"v", self.other.get("py:y"))
        # NX and XX.
        self.assertIsNone(self.r.set("py:y", "w", nx=True))
        self.assertTrue(self.r.set("py:y", "w", xx=True, px=100000))
        self.assertEqual(b"w", self.r.get("py:y"))
        self.assertTrue(self.r.set("py:z", "new", nx=True))
        self.assertIsNone(self.r.set("py:none", "v", xx=True))
        self.assertEqual(0, self.r.exists("py:none"))
        self.assertEqual(b"w", self.r.set("py:y", "u", get=True))
        self.assertEqual(3, self.r.delete("py:x", "py:y", "py:z"))

    def test_mset_mget(self):
        self.assertTrue(self.r.mset({"py:m1": "1", "py:m2": "2", "py:m3": "3"}))
        self.assertEqual([b"1", b"2", None, b"3"],
                         self.other.mget("py:m1", "py:m2", "py:nope", "py:m3"))
        self.assertEqual(3, self.r.delete("py:m1", "py:m2", "py:m3"))

    def test_multi_key_commands_span_partitions(self):
        keys = ["py:mk:%d" % i for i in range(100)]
        values = [b"v%d" % i for i in range(100)]
        self.assertTrue(self.r.mset(dict(zip(keys, values))))
        asked = keys[:50] + ["py:mk:none1"] + keys[50:] + ["py:mk:none2"]
        self.assertEqual(values[:50] + [None] + values[50:] + [None], self.other.mget(asked))
        self.assertEqual(100, self.other.exists(*asked))
        self.assertEqual(2, self.r.exists(keys[0], keys[0]))  # counted as often as named
        self.assertEqual(100, self.r.delete(*asked))
        self.assertEqual([None] * 102, self.other.mget(asked))
        self.assertEqual(0, self.other.exists(*asked))
        self.assertEqual(0, self.r.delete(*keys))

    def test_set_get_and_keepttl_write_once_at_the_first_primary(self):
        self.assertIsNone(self.r.set("py:sg", "a", get=True))  # a new key: nil, and written
        self.assertEqual(b"a", self.other.get("py:sg"))
        self.assertEqual(b"a", self.other.set("py:sg", "b", get=True))
        self.assertEqual(b"b", self.r.get("py:sg"))
        # NX GET on a key that exists: not written, its value answered.
        self.assertEqual(b"b", self.r.set("py:sg", "c", nx=True, get=True))
        self.assertEqual(b"b", self.other.get("py:sg"))
        self.assertIsNone(self.r.set("py:sg-new", "n", nx=True, get=True))
        self.assertEqual(b"n", self.other.get("py:sg-new"))
        self.assertIsNone(self.r.set("py:sg-none", "x", xx=True, get=True))
        self.assertEqual(0, self.r.exists("py:sg-none"))
        self.assertEqual(b"b", self.r.set("py:sg", "d", xx=True, get=True))
        self.assertEqual(b"d", self.other.get("py:sg"))
        # KEEPTTL keeps the ttl of the value it replaces, also with GET.
        self.assertTrue(self.r.set("py:kt", "1", ex=100))
        self.assertTrue(self.r.set("py:kt", "2", keepttl=True))
        self.assertTrue(95 <= self.other.ttl("py:kt") <= 100)
        self.assertEqual(b"2", self.other.set("py:kt", "3", keepttl=True, get=True))
        self.assertTrue(95 <= self.r.ttl("py:kt") <= 100)
        self.assertEqual(b"3", self.r.get("py:kt"))
        self.assertEqual(b"3", self.r.set("py:kt", "4", get=True))  # without KEEPTTL: no ttl
        self.assertEqual(-1, self.r.ttl("py:kt"))
        self.assertTrue(self.r.set("py:kt-new", "1", keepttl=True))
        self.assertEqual(-1, self.other.ttl("py:kt-new"))
        self.assertEqual(4, self.r.delete("py:sg", "py:sg-new", "py:kt", "py:kt-new"))

    def test_set_get_from_many_clients_answers_each_old_value_once(self):
        # Atomic: each SET GET answers the value its write superseded, so across every client
        # the answers and the final value are each value written (and the first nil) once.
        writes = 15
        answers, errors = [], []

        def run(n):
            c = redis.Redis(host="127.0.0.1", port=ports()[n % len(ports())], socket_timeout=20)
            try:
                for i in range(writes):
                    answers.append(c.set("py:chain", "c%d-%d" % (n, i), get=True))
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
            finally:
                c.close()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual([], errors)
        final = self.r.get("py:chain")
        written = {None} | {b"c%d-%d" % (n, i) for n in range(6) for i in range(writes)}
        self.assertEqual(sorted(written, key=str), sorted(answers + [final], key=str))
        self.assertEqual(1, self.r.delete("py:chain"))

    def test_pipeline_answers_in_order(self):
        p = self.r.pipeline(transaction=False)
        for i in range(200):
            p.set(f"py:p{i}", str(i))
        for i in range(200):
            p.get(f"py:p{i}")
        p.get("py:p-none")
        got = p.execute()
        self.assertEqual([True] * 200, got[:200])
        self.assertEqual([str(i).encode() for i in range(200)], got[200:400])
        self.assertIsNone(got[400])
        # A write then a read of the same key in one pipeline: the read sees the write.
        p = self.r.pipeline(transaction=False)
        p.set("py:p0", "new").get("py:p0")
        self.assertEqual([True, b"new"], p.execute())

    def test_scan_iterates_every_key_once(self):
        keys = {f"py:scan:{i}".encode() for i in range(300)}
        self.r.mset({k: b"v" for k in keys})
        seen = list(self.r.scan_iter(match="py:scan:*", count=37))
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(keys, set(seen))
        self.assertEqual(keys, set(self.other.keys("py:scan:*")))
        self.assertGreaterEqual(self.r.dbsize(), 300)

    def test_errors(self):
        with self.assertRaisesRegex(redis.ResponseError, "unknown command 'NOSUCH', with args beginning with: 'a' "):
            self.r.execute_command("NOSUCH", "a")
        with self.assertRaisesRegex(redis.ResponseError, "wrong number of arguments for 'get'"):
            self.r.execute_command("GET")
        with self.assertRaisesRegex(redis.ResponseError, "invalid expire time"):
            self.r.set("py:e", "v", ex=0)
        with self.assertRaisesRegex(redis.ResponseError, "DB index is out of range"):
            self.r.execute_command("SELECT", "1")
        with self.assertRaisesRegex(redis.ResponseError, "invalid cursor"):
            self.r.scan(cursor=987654321)
        # The connection serves on after errors.
        self.assertTrue(self.r.ping())

    def test_incr_from_many_clients_loses_nothing(self):
        self.r.delete("py:{ctr}")
        def work(port):
            c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
            for _ in range(25):
                c.incr("py:{ctr}")
            c.close()
        threads = [threading.Thread(target=work, args=(p,)) for p in ports() * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(b"%d" % (25 * len(threads)), self.other.get("py:{ctr}"))
        self.assertEqual(25 * len(threads) + 5, self.r.incrby("py:{ctr}", 5))
        self.assertEqual(25 * len(threads), self.r.decrby("py:{ctr}", 5))
        self.r.set("py:{ctr}", "nan")
        with self.assertRaisesRegex(redis.ResponseError, "not an integer"):
            self.r.incr("py:{ctr}")

    def test_set_nx_from_many_clients_has_one_winner(self):
        # SET NX is a compare-and-set against "absent" at the key's first primary: of many
        # clients on every node racing for one key, exactly one gets OK.
        for round_ in range(3):
            key = "py:lock:%d" % round_
            results = {}
            start = threading.Barrier(12)

            def contend(i):
                c = redis.Redis(host="127.0.0.1", port=ports()[i % len(ports())],
                                socket_timeout=10)
                try:
                    start.wait()
                    results[i] = c.set(key, "owner-%d" % i, nx=True)
                finally:
                    c.close()

            threads = [threading.Thread(target=contend, args=(i,)) for i in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [i for i, ok in results.items() if ok]
            self.assertEqual(12, len(results))
            self.assertEqual(1, len(winners), results)
            self.assertEqual(("owner-%d" % winners[0]).encode(), self.other.get(key))
        # XX: only an existing key, and it overwrites.
        self.assertIsNone(self.r.set("py:xx:none", "v", xx=True))
        self.assertIsNone(self.r.get("py:xx:none"))
        self.assertTrue(self.r.set("py:lock:0", "taken over", xx=True))
        self.assertEqual(b"taken over", self.other.get("py:lock:0"))

    def test_set_overwrites_rather_than_adding_a_sibling(self):
        # SET is a blind overwrite: it supersedes what the key's coordinator holds, so a SET of
        # a smaller value after a larger one, through another node, reads back as itself (a
        # sibling left beside it would read as the larger one, GET's choice among siblings).
        for i, (first, second) in enumerate([("zz", "aa"), ("9", "1"), ("b", "a")]):
            key = "py:ow:%d" % i
            self.assertTrue(self.r.set(key, first))
            self.assertTrue(self.other.set(key, second))
            self.assertEqual(second.encode(), self.r.get(key))
            self.assertTrue(self.other.mset({key: "0", key + ":m": "x"}))
            self.assertEqual([b"0", b"x"], self.r.mget(key, key + ":m"))
            self.assertTrue(self.r.set(key, "-", px=100000))
            self.assertEqual(b"-", self.other.get(key))

    def test_set_nx_xx_with_an_expiry_is_one_compare_and_set(self):
        self.r.delete("py:nxex", "py:nxex:none")
        self.assertTrue(self.r.set("py:nxex", "a", nx=True, ex=100))
        self.assertTrue(95 <= self.other.ttl("py:nxex") <= 100)
        self.assertIsNone(self.other.set("py:nxex", "b", nx=True, ex=5))
        self.assertEqual(b"a", self.r.get("py:nxex"))
        self.assertTrue(95 <= self.r.ttl("py:nxex") <= 100)  # untouched by the refused NX
        self.assertTrue(self.other.set("py:nxex", "b", xx=True, px=50000))
        self.assertEqual(b"b", self.r.get("py:nxex"))
        self.assertTrue(45000 <= self.r.pttl("py:nxex") <= 50000)
        self.assertTrue(self.r.set("py:nxex", "c", xx=True, keepttl=True))
        self.assertEqual(b"c", self.other.get("py:nxex"))
        self.assertTrue(40000 <= self.r.pttl("py:nxex") <= 50000)
        self.assertIsNone(self.r.set("py:nxex:none", "v", xx=True, ex=10))
        self.assertEqual(0, self.r.exists("py:nxex:none"))
        # A lock with a lease: of many clients racing SET NX PX, exactly one wins, and its key
        # carries the lease (set in the same step); once it runs out the lock can be taken again.
        results = {}
        start = threading.Barrier(9)

        def contend(i):
            c = redis.Redis(host="127.0.0.1", port=ports()[i % len(ports())], socket_timeout=10)
            try:
                start.wait()
                results[i] = c.set("py:lease", "owner-%d" % i, nx=True, px=1500)
            finally:
                c.close()

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, ok in results.items() if ok]
        self.assertEqual(1, len(winners), results)
        self.assertTrue(0 < self.other.pttl("py:lease") <= 1500)
        deadline = time.monotonic() + 20
        taken = None
        while taken is None and time.monotonic() < deadline:
            taken = self.r.set("py:lease", "next", nx=True, px=60000)
            if taken is None:
                time.sleep(0.1)
        self.assertTrue(taken)
        self.assertEqual(b"next", self.other.get("py:lease"))

    def test_transaction_pipeline(self):
        p = self.r.pipeline(transaction=True)
        p.set("py:{t}a", "1").incr("py:{t}a").set("py:{t}b", "x").get("py:{t}a").delete("py:{t}b")
        self.assertEqual([True, 2, True, b"2", 1], p.execute())
        self.assertEqual(b"2", self.other.get("py:{t}a"))
        self.assertIsNone(self.other.get("py:{t}b"))
        # Keys of two partitions (py:x and py:y differ in their hash's top bit).
        p = self.r.pipeline(transaction=True)
        p.set("py:x", "1").set("py:y", "1")
        with self.assertRaisesRegex(redis.ResponseError, "CROSSSLOT"):
            p.execute()
        self.assertIsNone(self.r.get("py:x"))

    def test_watch_conflict_raises_watch_error(self):
        self.r.set("py:{w}bal", "100")
        with self.r.pipeline() as p:
            p.watch("py:{w}bal")
            bal = int(p.get("py:{w}bal"))
            self.other.set("py:{w}bal", "50")  # another client changes it meanwhile
            p.multi()
            p.set("py:{w}bal", str(bal - 10))
            with self.assertRaises(redis.WatchError):
                p.execute()
        self.assertEqual(b"50", self.r.get("py:{w}bal"))
        # The usual retry loop (redis-py's transaction helper) then succeeds.
        def debit(pipe):
            cur = int(pipe.get("py:{w}bal"))
            pipe.multi()
            pipe.set("py:{w}bal", str(cur - 10))
        self.r.transaction(debit, "py:{w}bal")
        self.assertEqual(b"40", self.other.get("py:{w}bal"))

    def test_client_and_info(self):
        self.assertTrue(self.r.client_setname("tester"))
        self.assertEqual("tester", self.r.client_getname())
        self.assertIsInstance(self.r.client_id(), int)
        info = self.r.info()
        self.assertIn("redis_version", info)
        self.assertIn("total_commands_processed", info)
        self.assertIn("db0", self.r.info("keyspace"))

    def messages(self, p, n, limit_s=20):
        """The next `n` (p)messages of pubsub `p` as (channel, data), waiting at most limit_s."""
        got = []
        deadline = time.monotonic() + limit_s
        while len(got) < n and time.monotonic() < deadline:
            m = p.get_message(timeout=0.5)
            if m and m["type"] in ("message", "pmessage"):
                got.append((m["channel"], m["data"]))
        return got

    def test_keyspace_notifications_from_other_nodes(self):
        p = self.r.pubsub()
        p.psubscribe("__keyspace@0__:ps:*")
        first = p.get_message(timeout=10)
        # The confirmation comes once the store watches: changes after it are all seen.
        self.assertEqual({"type": "psubscribe", "pattern": None,
                          "channel": b"__keyspace@0__:ps:*", "data": 1}, first)
        third = redis.Redis(host="127.0.0.1", port=ports()[1], socket_timeout=10)
        try:
            self.other.set("ps:a", "1")
            self.other.set("elsewhere", "x")  # not matched
            self.other.delete("ps:a")
            third.set("ps:t", "v", px=200)  # expires: the sweep's event
            got = self.messages(p, 4)
        finally:
            third.close()
        per_key = {}
        for channel, data in got:
            per_key.setdefault(channel, []).append(data)
        self.assertEqual({b"__keyspace@0__:ps:a": [b"set", b"del"],
                          b"__keyspace@0__:ps:t": [b"set", b"expired"]}, per_key)
        p.punsubscribe()
        p.close()

    def test_keyevent_channel_and_pattern_both_hear_a_change(self):
        p = self.r.pubsub(ignore_subscribe_messages=True)
        p.subscribe("__keyevent@0__:del")
        p.psubscribe("__key*__:pe:*")
        for _ in range(2):  # the two confirmations, dropped
            self.assertIsNone(p.get_message(timeout=10))
        self.other.set("pe:k", "v")
        self.other.delete("pe:k")
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            m = p.get_message(timeout=0.5)
            if m:
                got.append((m["type"], m["pattern"], m["channel"], m["data"]))
        self.assertEqual([
            ("pmessage", b"__key*__:pe:*", b"__keyspace@0__:pe:k", b"set"),
            ("pmessage", b"__key*__:pe:*", b"__keyspace@0__:pe:k", b"del"),
            ("message", None, b"__keyevent@0__:del", b"pe:k"),
        ], got)
        # Subscribed, the connection takes (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT only.
        p.execute_command("GET", "pe:k")
        with self.assertRaisesRegex(redis.ResponseError, "only .*SUBSCRIBE"):
            p.get_message(timeout=5)
        p.unsubscribe()
        p.punsubscribe()
        p.close()


if __name__ == "__main__":
    unittest.main()
