"""What every workload of the fault suite shares: recording a client's operations as JSON
lines, reading them back, the errors that are refusals, and the checkers' counts and samples.

A history is a file of JSON lines, one per event, each with ``type`` (``invoke``, then ``ok``,
``fail`` or ``info``, or a workload's own kinds), ``wall`` (wall-clock s), ``t`` (s since the
run began) and ``process`` (the client). A kill can cut a file's last line: reading skips it
(the operation it began stays unknown).
"""

import json
import time

# A request refused with these stored nothing (docs/protocol.md 12.3: "Nothing is stored when a
# request is refused"); no_quorum and timeout may come after replicas stored it.
REFUSALS = ("badarg", "value_too_large", "too_many_siblings", "overloaded", "unavailable")
# An operation's completion type -> the count it goes to.
COUNTED = {"ok": "ok", "fail": "fail", "info": "unknown"}


def outcome(error_name, refusals=REFUSALS):
    """``fail`` for an error that says nothing happened, else ``info`` (unknown)."""
    return "fail" if error_name in refusals else "info"


class Recorder:
    """Writes one client's history: ``record(type=..., ...)`` adds a line with the times."""

    def __init__(self, path, t0, process):
        self.f = open(path, "a")
        self.t0, self.process = t0, process

    def __call__(self, **fields):
        fields["wall"] = time.time()
        fields["t"] = round(fields["wall"] - self.t0, 4)
        fields["process"] = self.process
        self.f.write(json.dumps(fields) + "\n")
        self.f.flush()

    def close(self):
        self.f.close()


def ops(history_files):
    """Every event of the histories, file by file, in the order written (a cut line skipped)."""
    for path in history_files:
        with open(path) as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


class Findings:
    """A checker's result: counts (a dict, returned by ``result()``) and, for each kind of
    finding, the first 20 as samples (``<kind>_sample``)."""

    def __init__(self, counts, kinds):
        self.r = dict(counts)
        self.samples = {k: [] for k in kinds}
        for k in kinds:
            self.r.setdefault(k, 0)

    def count(self, op):
        """Counts an event as an operation (``invoke``) or its completion."""
        if op["type"] == "invoke":
            self.r["ops"] += 1
        elif op["type"] in COUNTED:
            self.r[COUNTED[op["type"]]] += 1

    def flag(self, what, detail):
        self.r[what] += 1
        if len(self.samples[what]) < 20:
            self.samples[what].append(detail)

    def result(self):
        self.r.update({what + "_sample": s for what, s in self.samples.items()})
        return self.r
