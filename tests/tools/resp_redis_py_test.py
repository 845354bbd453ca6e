"""nodusd's Redis protocol through python3-redis (Debian's), a client nobody here wrote.

Run by integration_resp_test against a real cluster: NODUS_RESP_PORTS names the RESP ports of
its nodes (comma-separated). Strings, MGET/MSET, pipelines, SCAN iteration, errors.
"""
import os
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

    def test_client_and_info(self):
        self.assertTrue(self.r.client_setname("tester"))
        self.assertEqual("tester", self.r.client_getname())
        self.assertIsInstance(self.r.client_id(), int)
        info = self.r.info()
        self.assertIn("redis_version", info)
        self.assertIn("total_commands_processed", info)
        self.assertIn("db0", self.r.info("keyspace"))


if __name__ == "__main__":
    unittest.main()
