"""The set workload's checker (workload.check) on histories made by hand: each verdict it can
reach, so a checker that sees nothing fails here before it passes a fault run."""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

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


if __name__ == "__main__":
    unittest.main()
