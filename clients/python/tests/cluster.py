"""A cluster of real nodusd processes for the client's tests.

Configs are written to a temporary folder with free loopback ports; every nodusd started is
this process's child and is killed (by its pid) when the cluster stops. Waits poll with
deadlines. The nodusd binary comes from the environment variable NODUSD (ctest sets it).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def nodusd_path():
    path = os.environ.get("NODUSD")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("set NODUSD to the nodusd binary (build/bin/nodusd)")
    return path


def free_ports(n):
    """`n` loopback ports free now (bound together, so distinct, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def eventually(check, timeout_s=20.0, every_s=0.05, what="the condition"):
    """Polls `check()` until it returns a true value (returned) or raises after the deadline;
    an exception from `check` counts as not yet, and the last one is reported."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 (not yet)
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %.1f s (last: %r)" % (what, timeout_s,
                                                                              last))
        time.sleep(every_s)


class Cluster:
    """`size` nodes n1..nN meshed, running the store (N = `replicas`) and example apps:
    ``stack`` (local:stack) and ``slow`` (local:slow) on every node, ``counter`` (global:hits) on
    n1 and a ``stack`` under the via name via:reg/vstack on n2."""

    def __init__(self, size=3, replicas=3, partitions=16, cookie="py-client-test",
                 curve=None, extra=""):
        self.size = size
        self.dir = tempfile.mkdtemp(prefix="nodus-py-")
        self.cookie = cookie
        self.ports = free_ports(size)
        self.names = ["n%d" % (i + 1) for i in range(size)]
        self.procs = {}
        self.curve = curve  # {name: (public, secret)} plus "client": (public, secret)
        with open(os.path.join(self.dir, "cookie"), "w") as f:
            f.write(cookie + "\n")
        os.chmod(os.path.join(self.dir, "cookie"), 0o600)
        for i, name in enumerate(self.names):
            self._write_conf(i, name, replicas, partitions, extra)

    def endpoint(self, name):
        i = self.names.index(name)
        ep = "tcp://127.0.0.1:%d" % self.ports[i]
        if self.curve:
            ep += "#" + self.curve[name][0]
        return ep

    def _write_conf(self, i, name, replicas, partitions, extra):
        lines = ["[node]", "name = %s" % name, "listen = tcp://127.0.0.1:%d" % self.ports[i]]
        if self.curve:
            public, secret = self.curve[name]
            key_file = os.path.join(self.dir, name + ".key")
            with open(key_file, "w") as f:
                f.write(secret + "\n")
            os.chmod(key_file, 0o600)
            lines += ["curve_secret_file = %s.key" % name, "curve_public_key = %s" % public]
        lines += ["[cluster]", "name = pytest", "cookie_file = cookie"]
        for other in self.names:
            if other != name:
                lines.append("seed = %s" % self.endpoint(other))
        if self.curve:
            for who, (public, _) in self.curve.items():
                lines.append("curve_allowed = %s" % public)
        lines += ["[kv]", "initial_members = %s" % " ".join(self.names),
                  "replicas = %d" % replicas, "partitions = %d" % partitions,
                  "write_quorum = %d" % min(2, replicas), "read_quorum = %d" % min(2, replicas),
                  "[apps]", "start = stack local:stack", "start = slow local:slow"]
        if i == 0:
            lines.append("start = counter global:hits")
        if i == 1:
            lines.append("start = stack via:reg/vstack")
        lines += ["[log]", "level = warn", extra]
        with open(os.path.join(self.dir, name + ".conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, name=None):
        for n in ([name] if name else self.names):
            log = open(os.path.join(self.dir, n + ".log"), "ab")
            self.procs[n] = subprocess.Popen(
                [nodusd_path(), "--config", os.path.join(self.dir, n + ".conf")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
        return self

    def kill(self, name):
        """SIGKILL: the node vanishes without a word (protocol.md section 7)."""
        p = self.procs.pop(name, None)
        if p is not None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def stop(self):
        for name in list(self.procs):
            p = self.procs.pop(name)
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if os.environ.get("NODUS_KEEP_TEST_DIR") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, name):
        with open(os.path.join(self.dir, name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError("nodusd %s exited with %s:\n%s" % (name, p.returncode,
                                                                        self.log(name)[-3000:]))
