"""The fault suite's checkers on histories made by hand: the set workload's (workload.check),
the delete workload's (deletes.check), the watch workload's (watch.check), the global names
workload's (names.check) and the register's linearizability search (linearizable.check), each verdict they can reach, so a checker that
sees nothing fails here before it passes a fault run."""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import deletes  # noqa: E402
import linearizable  # noqa: E402
import names  # noqa: E402
import register  # noqa: E402
import watch  # noqa: E402
import workload  # noqa: E402


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="nodus-fault-check-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def history(self, name, ops):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            for op in ops:
                f.write(json.dumps(op) + "\n")
            f.write('{"type": "invoke", "f": "add", "ke')  # a line cut by a kill
        return path

    @staticmethod
    def add(e, outcome, key="set:0:0"):
        out = [{"type": "invoke", "f": "add", "key": key, "value": e}]
        if outcome:
            out.append({"type": outcome, "f": "add", "key": key, "value": e})
        return out

    def final(self, elements, key="set:0:0"):
        return {"keys": {key: {"elements": sorted(elements), "siblings": 1}}, "errors": []}

    def test_every_acknowledged_add_read_passes(self):
        h = self.history("a", self.add(1, "ok") + self.add(2, "ok") + self.add(3, "info"))
        r = workload.check([h], self.final({1, 2}))
        self.assertEqual((r["ops"], r["ok"], r["lost"], r["phantom"], r["unknown"]),
                         (3, 2, 0, 0, 1))
        self.assertEqual(r["unknown_present"], 0)

    def test_an_acknowledged_add_missing_is_lost(self):
        h = self.history("a", self.add(1, "ok") + self.add(2, "ok"))
        r = workload.check([h], self.final({2}))
        self.assertEqual((r["lost"], r["lost_sample"]), (1, [1]))

    def test_an_element_under_another_key_is_lost_and_phantom(self):
        h = self.history("a", self.add(1, "ok", key="set:0:0"))
        r = workload.check([h], self.final({1}, key="set:0:1"))
        self.assertEqual((r["lost"], r["phantom"]), (1, 1))

    def test_an_element_never_attempted_is_phantom(self):
        h = self.history("a", self.add(1, "ok"))
        r = workload.check([h], self.final({1, 99}))
        self.assertEqual((r["phantom"], r["phantom_sample"]), (1, [99]))

    def test_a_refused_add_that_was_read_is_reported(self):
        h = self.history("a", self.add(1, "fail"))
        r = workload.check([h], self.final({1}))
        self.assertEqual((r["fail"], r["failed_present"], r["lost"]), (1, 1, 0))

    def test_unknown_outcomes_go_either_way(self):
        h1 = self.history("a", self.add(1, "info") + self.add(2, None))  # 2: never completed
        h2 = self.history("b", self.add(3, "info"))
        r = workload.check([h1, h2], self.final({1, 2}))
        self.assertEqual((r["unknown"], r["unknown_present"], r["lost"], r["phantom"]),
                         (3, 2, 0, 0))

    def test_set_values_round_trip(self):
        self.assertEqual(workload.decode(workload.encode({5, 1, 1 << 31})), {1, 5, 1 << 31})
        with self.assertRaises(ValueError):
            workload.decode(b"abc")


class DeleteCheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="nodus-fault-check-")
        self.ops = []

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def key(self, seq, fate, put="ok", delete=None, ttl_ms=None, at=100.0, client=1):
        k = deletes.key_of(client, seq)
        self.ops.append({"type": "invoke", "f": "put", "key": k, "fate": fate,
                         "ttl_ms": ttl_ms, "wall": at})
        if put:
            self.ops.append({"type": put, "f": "put", "key": k, "wall": at + 0.01})
        if delete:
            self.ops += [{"type": "invoke", "f": "delete", "key": k, "wall": at + 0.02},
                         {"type": delete, "f": "delete", "key": k, "wall": at + 0.03}]
        return k

    def check(self, live, read_at=200.0, extra=None):
        path = os.path.join(self.dir, "client-1.jsonl")
        with open(path, "w") as f:
            for op in self.ops:
                f.write(json.dumps(op) + "\n")
        keys = {}
        for op in self.ops:
            client, seq = (int(x) for x in op["key"].split(":")[1:3])
            present = op["key"] in live
            keys[op["key"]] = {"values": [deletes.value_of(client, seq).hex()]
                               if present else [], "wall": read_at}
        keys.update(extra or {})
        return deletes.check([path], {"keys": keys, "errors": []})

    def test_deleted_and_expired_keys_gone_passes(self):
        self.key(1, "delete", delete="ok")
        self.key(2, "ttl", ttl_ms=500)
        kept = self.key(3, "keep")
        self.key(4, "delete", delete="info")  # either way
        r = self.check({kept})
        self.assertEqual((r["deleted"], r["expired"], r["kept"], r["resurrected"], r["lost"],
                          r["phantom"]), (1, 1, 1, 0, 0, 0))
        self.assertEqual((r["ops"], r["ok"], r["unknown"]), (6, 5, 1))

    def test_a_deleted_key_read_live_is_resurrected(self):
        k = self.key(1, "delete", delete="ok")
        r = self.check({k})
        self.assertEqual((r["resurrected"], r["resurrected_sample"][0][0]), (1, k))

    def test_an_expired_key_read_live_is_resurrected(self):
        k = self.key(1, "ttl", ttl_ms=1000)
        r = self.check({k}, read_at=100.0 + 1 + deletes.TTL_SLACK_S + 0.5)
        self.assertEqual(r["resurrected"], 1)

    def test_a_ttl_not_yet_passed_goes_either_way(self):
        k = self.key(1, "ttl", ttl_ms=1000)
        r = self.check({k}, read_at=101.5)
        self.assertEqual((r["expired"], r["resurrected"]), (0, 0))

    def test_a_kept_key_read_absent_is_lost(self):
        self.key(1, "keep")
        self.key(2, "delete", delete="fail")  # refused: the value stays
        r = self.check(set())
        self.assertEqual((r["kept"], r["lost"]), (2, 2))

    def test_a_wrong_value_or_key_is_phantom_and_a_refused_put_present(self):
        k = self.key(1, "keep")
        refused = self.key(2, "keep", put="fail")
        r = self.check({refused}, extra={k: {"values": ["00000000"], "wall": 200.0},
                                         "del:9:9": {"values": ["01"], "wall": 200.0}})
        self.assertEqual((r["phantom"], r["failed_present"]), (2, 1))


def op(process, kind, f, value, wall):
    return {"process": process, "type": kind, "f": f, "value": value, "wall": wall,
            "key": "reg:0:0"}


def call(process, f, value, start, end, outcome="ok", read_value=None):
    """An invocation and its completion; a read's value comes with its completion."""
    inv = op(process, "invoke", f, value if f == "cas" else None, start)
    if outcome is None:
        return [inv]
    return [inv, op(process, outcome, f, read_value if f == "read" else value, end)]


class LinearizableTest(unittest.TestCase):
    def verdict(self, *calls):
        ops = sorted([o for c in calls for o in c], key=lambda o: o["wall"])
        return linearizable.check(ops)["result"]

    def test_sequential_history(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1),
            call(2, "read", None, 1.5, 2, read_value=1),
            call(2, "cas", [1, 2], 2.5, 3),
            call(1, "read", None, 3.5, 4, read_value=2)), linearizable.OK)

    def test_a_read_concurrent_with_a_write_may_see_it(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 10),
            call(2, "read", None, 1, 2, read_value=1),
            call(3, "read", None, 3, 4, read_value=1)), linearizable.OK)

    def test_a_stale_read_after_a_write_completed_is_not_linearizable(self):
        r = linearizable.check(sorted(call(1, "cas", [None, 1], 0, 1) +
                                      call(2, "read", None, 2, 3, read_value=None),
                                      key=lambda o: o["wall"]))
        self.assertEqual((r["result"], r["op"]["f"]), (linearizable.NOT_LINEARIZABLE, "read"))

    def test_two_compare_and_sets_from_one_value_cannot_both_succeed(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1),
            call(2, "cas", [None, 2], 0, 1)), linearizable.NOT_LINEARIZABLE)

    def test_a_read_going_back_is_not_linearizable(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1),
            call(1, "cas", [1, 2], 2, 3),
            call(2, "read", None, 0.5, 4, read_value=2),
            call(3, "read", None, 5, 6, read_value=1)), linearizable.NOT_LINEARIZABLE)

    def test_unknown_writes_may_happen_late_or_never(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1, outcome="info"),
            call(2, "read", None, 2, 3, read_value=None),
            call(2, "read", None, 5, 6, read_value=1)), linearizable.OK)
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1, outcome=None),  # never completed
            call(2, "read", None, 2, 3, read_value=None)), linearizable.OK)
        self.assertEqual(self.verdict(  # but not undone once seen
            call(1, "cas", [None, 1], 0, 1, outcome="info"),
            call(2, "read", None, 5, 6, read_value=1),
            call(2, "read", None, 7, 8, read_value=None)), linearizable.NOT_LINEARIZABLE)

    def test_failed_compare_and_sets_took_no_effect(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1, outcome="fail"),
            call(2, "read", None, 2, 3, read_value=None)), linearizable.OK)
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1, outcome="fail"),
            call(2, "read", None, 2, 3, read_value=1)), linearizable.NOT_LINEARIZABLE)

    def test_a_read_of_siblings_is_not_linearizable(self):
        self.assertEqual(self.verdict(
            call(1, "cas", [None, 1], 0, 1, outcome="info"),
            call(2, "cas", [None, 2], 0, 1, outcome="info"),
            call(3, "read", None, 2, 3, read_value=["siblings", 1, 2])),
            linearizable.NOT_LINEARIZABLE)

    def test_the_search_is_bounded(self):
        # 16 unknown writes around a cycle 0 -> 1 -> 2 -> 3 -> 0 and a read of a value none
        # wrote: every order of every subset is tried before the answer could be no.
        calls = [call(1, "cas", [None, 0], 0, 1, outcome="info")]
        calls += [call(p, "cas", [p % 4, (p + 1) % 4], 0, 1, outcome="info")
                  for p in range(2, 18)]
        calls.append(call(99, "read", None, 2, 3, read_value=7))
        r = linearizable.check(sorted([o for c in calls for o in c], key=lambda o: o["wall"]),
                               max_configs=1000)
        self.assertEqual(r["result"], linearizable.UNKNOWN)

    def test_the_register_checker_splits_histories_by_key(self):
        d = tempfile.mkdtemp(prefix="nodus-fault-check-")
        try:
            path = os.path.join(d, "client-1.jsonl")
            ops = call(1, "cas", [None, 1], 0, 1) + call(1, "read", None, 2, 3, read_value=1)
            bad = [dict(o, key="reg:0:1") for o in
                   call(2, "cas", [None, 5], 0, 1) + call(2, "read", None, 2, 3,
                                                          read_value=None)]
            with open(path, "w") as f:
                for o in ops + bad:
                    f.write(json.dumps(o) + "\n")
            r = register.check([path])
            self.assertEqual((r["keys"], r["linearizable"], r["nonlinearizable"],
                              r["failures"][0]["key"]), (2, 1, 1, "reg:0:1"))
        finally:
            shutil.rmtree(d, ignore_errors=True)


class WatchCheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="nodus-fault-check-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, writes, watcher):
        """`writes`: (value, outcome, invoke wall, completion wall) of key w:2; `watcher`:
        its lines, as (type, wall[, value])."""
        w = os.path.join(self.dir, "client-2.jsonl")
        with open(w, "w") as f:
            for value, outcome, at, done in writes:
                f.write(json.dumps({"type": "invoke", "f": "put", "key": "w:2",
                                    "value": value, "wall": at}) + "\n")
                f.write(json.dumps({"type": outcome, "f": "put", "key": "w:2",
                                    "value": value, "wall": done}) + "\n")
        v = os.path.join(self.dir, "client-1.jsonl")
        with open(v, "w") as f:
            for line in watcher:
                op = {"type": line[0], "wall": line[1], "key": ""}
                if line[0] == "watch":
                    op["ok"] = True
                if line[0] == "event":
                    op.update(key="w:2", value=line[2], kind="put")
                f.write(json.dumps(op) + "\n")
        return watch.check([w, v])

    def test_every_acknowledged_change_in_order_passes(self):
        r = self.check([(1, "ok", 1, 1.1), (2, "info", 2, 2.1), (3, "ok", 3, 3.1)],
                       [("watch", 0.5), ("event", 1.2, 1), ("event", 3.2, 3),
                        ("event", 3.3, 2), ("end", 9)])
        self.assertEqual((r["events"], r["missed"], r["out_of_order"], r["duplicates"],
                          r["phantom"]), (3, 0, 0, 0, 0))

    def test_an_acknowledged_change_not_delivered_is_missed(self):
        r = self.check([(1, "ok", 1, 1.1), (2, "ok", 2, 2.1)],
                       [("watch", 0.5), ("event", 1.2, 1), ("end", 9)])
        self.assertEqual((r["missed"], r["missed_sample"][0][:2]), (1, ["w:2", 2]))

    def test_a_lost_watch_excuses_what_it_missed(self):
        r = self.check([(1, "ok", 1, 1.1), (2, "ok", 2, 2.1), (3, "ok", 5, 5.1)],
                       [("watch", 0.5), ("event", 1.2, 1), ("lost", 3), ("watch", 4),
                        ("event", 5.2, 3), ("end", 9)])
        self.assertEqual((r["missed"], r["excused"], r["lost_watch"], r["watches"]),
                         (0, 1, 1, 2))

    def test_out_of_order_duplicate_and_phantom_events(self):
        r = self.check([(1, "ok", 1, 1.1), (2, "ok", 2, 2.1)],
                       [("watch", 0.5), ("event", 2.2, 2), ("event", 2.3, 1),
                        ("event", 2.4, 2), ("event", 2.5, 7), ("end", 9)])
        self.assertEqual((r["out_of_order"], r["duplicates"], r["phantom"], r["missed"]),
                         (1, 1, 1, 0))


class NamesCheckTest(unittest.TestCase):
    """names.check: holders in the final tables, epochs per node incarnation, acknowledged
    registrations accounted for."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="nodus-fault-names-")
        self.wall = 100.0

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def history(self, ops):
        path = os.path.join(self.dir, "h%d" % len(os.listdir(self.dir)))
        with open(path, "w") as f:
            for op in ops:
                f.write(json.dumps(op) + "\n")
        return path

    def reg(self, name, node, outcome, pid=None, epoch=None, error=None):
        self.wall += 1
        out = [{"type": "invoke", "f": "register", "key": name, "node": node, "process": 1,
                "wall": self.wall}]
        done = {"type": outcome, "f": "register", "key": name, "node": node, "process": 1,
                "wall": self.wall + 0.5}
        if outcome == "ok":
            done.update(pid=pid, epoch=epoch)
        elif error:
            done["error"] = error
        return out + [done]

    def observe(self, node, creation, table):
        self.wall += 1
        return [{"type": "observe", "node": node, "creation": creation, "names": table,
                 "process": 1, "wall": self.wall}]

    @staticmethod
    def final(tables, creations=None):
        return {"tables": tables, "errors": [],
                "creations": creations or {n: 7 for n in tables}}

    def test_a_name_held_once_everywhere_passes(self):
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", 1) +
                         self.reg("g1", "n2", "fail", error="already_started") +
                         self.reg("g1", "n2", "ok", "<n2.9.0>/7", 2))
        r = names.check([h], self.final({"n1": {"g1": ["<n2.9.0>/7", 2]},
                                         "n2": {"g1": ["<n2.9.0>/7", 2]}}))
        self.assertEqual((r["ok"], r["fail"], r["already_started"], r["acked_held"],
                          r["superseded"], r["held"]), (2, 1, 1, 1, 1, 1))
        for what in ("duplicates", "split", "epoch_fell", "lost", "phantom", "twin_epochs"):
            self.assertEqual(r[what], 0, what)

    def test_two_holders_of_one_name_are_duplicates(self):
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", 3) +
                         self.reg("g1", "n2", "ok", "<n2.9.0>/7", 3))
        r = names.check([h], self.final({"n1": {"g1": ["<n1.5.0>/7", 3]},
                                         "n2": {"g1": ["<n2.9.0>/7", 3]}}))
        self.assertEqual((r["duplicates"], r["twin_epochs"]), (1, 1))

    def test_one_epoch_acknowledged_to_two_holders_is_twin_epochs(self):
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", [3, "n1"]) +
                         self.reg("g1", "n2", "ok", "<n2.9.0>/7", [3, "n1"]))
        final = {"g1": ["<n2.9.0>/7", [3, "n1"]]}
        r = names.check([h], self.final({"n1": dict(final), "n2": dict(final)}))
        self.assertEqual((r["twin_epochs"], r["duplicates"]), (1, 0))
        self.assertEqual(r["twin_epochs_sample"],
                         [["g1", "3@n1", ["<n1.5.0>/7", "<n2.9.0>/7"]]])

    def test_two_sides_at_one_counter_differ_in_the_registrar_and_the_higher_stays(self):
        # n1 and n3 apart each registered g1 at counter 1; the heal kept n3's, (1, n3).
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", [1, "n1"]) +
                         self.reg("g1", "n3", "ok", "<n3.9.0>/7", [1, "n3"]) +
                         self.observe("n1", 7, {"g1": ["<n1.5.0>/7", [1, "n1"]]}))
        final = {"g1": ["<n3.9.0>/7", [1, "n3"]]}
        r = names.check([h], self.final({"n1": dict(final), "n3": dict(final)}))
        self.assertEqual((r["twin_epochs"], r["epoch_fell"], r["duplicates"], r["lost"]),
                         (0, 0, 0, 0))
        self.assertEqual((r["acked_held"], r["superseded"]), (1, 1))
        # Keeping the lower one instead is a fall: n3's table went from (1, n3) to (1, n1).
        h = self.history(self.reg("g1", "n3", "ok", "<n3.9.0>/7", [1, "n3"]) +
                         self.reg("g1", "n1", "ok", "<n1.5.0>/7", [1, "n1"]))
        final = {"g1": ["<n1.5.0>/7", [1, "n1"]]}
        r = names.check([h], self.final({"n1": dict(final), "n3": dict(final)}))
        self.assertEqual(r["epoch_fell"], 2)  # n3's table, and the final holder below the ack

    def test_a_name_some_tables_lack_is_split(self):
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", 1))
        r = names.check([h], self.final({"n1": {"g1": ["<n1.5.0>/7", 1]}, "n2": {}}))
        self.assertEqual((r["split"], r["duplicates"]), (1, 0))

    def test_an_epoch_that_falls_in_one_incarnation_is_caught(self):
        h = self.history(self.observe("n1", 7, {"g1": ["<n1.5.0>/7", 4]}) +
                         self.observe("n1", 7, {"g1": ["<n2.9.0>/7", 3]}) +
                         self.observe("n2", 8, {"g1": ["<n2.9.0>/8", 1]}))  # another node
        r = names.check([h], self.final({}))
        self.assertEqual(r["epoch_fell"], 1)
        # A restarted node (another incarnation) starts again: no finding.
        h = self.history(self.observe("n1", 7, {"g1": ["<n1.5.0>/7", 4]}) +
                         self.observe("n1", 9, {"g1": ["<n1.2.0>/9", 1]}))
        self.assertEqual(names.check([h], self.final({}))["epoch_fell"], 0)

    def test_a_final_holder_below_an_acknowledged_epoch_is_caught(self):
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", 5) +
                         self.reg("g1", "n2", "info", error="timeout"))
        r = names.check([h], self.final({"n1": {"g1": ["<n2.9.0>/7", 2]},
                                         "n2": {"g1": ["<n2.9.0>/7", 2]}}))
        self.assertEqual((r["epoch_fell"], r["lost"]), (2, 1))  # n1 fell; below the ack

    def test_an_acknowledged_registration_gone_without_a_cause_is_lost(self):
        h = self.history(self.reg("g1", "n1", "ok", "<n1.5.0>/7", 1) +
                         self.reg("g2", "n2", "ok", "<n2.5.0>/7", 1))
        # g1's holder vanished though n1 never restarted; g2's node restarted (8): it died.
        r = names.check([h], self.final({"n1": {}, "n2": {}}, {"n1": 7, "n2": 8}))
        self.assertEqual((r["lost"], r["died_with_node"]), (1, 1))
        self.assertEqual(r["lost_sample"][0][:2], ["g1", "<n1.5.0>/7"])

    def test_a_holder_nobody_registered_is_a_phantom_unless_an_unknown_explains_it(self):
        h = self.history(self.reg("g1", "n1", "info", error="timeout"))
        both = {"g1": ["<n1.5.0>/7", 1], "g2": ["<n3.5.0>/7", 1]}
        r = names.check([h], self.final({"n1": dict(both), "n2": dict(both)}))
        self.assertEqual((r["phantom"], r["phantom_sample"]), (1, [["g2", "<n3.5.0>/7"]]))


if __name__ == "__main__":
    unittest.main()
