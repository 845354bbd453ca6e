#!/usr/bin/python3
"""cluster-configs/hosts-3 as shipped, on three real nodusd, each in a network namespace of its own
with its own address, listening on every address (0.0.0.0) and advertising a host name
(node.advertise); seeds are host names too (only kv.data_dir and log.file are overridden).
Names resolve through each namespace's own hosts file (/etc/netns/NS/hosts, which `ip netns
exec` mounts over /etc/hosts). Checks: the nodes mesh and form the ring, nodusctl reaches a node
of another namespace by name (the node links back to nodusctl's own address there), a key
written on one node reads on another, and a node killed with -9 that comes back at a NEW
address under the same name is linked again by the others (names are resolved again on
reconnect) and still holds the key. And tools/nodusd.service passes systemd-analyze verify.

Needs root and iproute2; exits 77 (skipped) without them. Everything it makes carries the
prefix "nhost<pid>" and is removed at the end, also after a failure. Env: NODUSD, NODUSCTL,
NODUS_SOURCE_DIR.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77
PREFIX = "nhost%d" % os.getpid()
HUB = PREFIX + "hub"
NODES = ["n1", "n2", "n3"]
SUBNET = "10.77.91."
PORT = 7101
DEADLINE_S = 60


def ns(node):
    return PREFIX + node


def run(*args, check=True, timeout=30):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def eventually(what, pred, timeout=DEADLINE_S):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # a node not up yet answers nothing: try again
            last = e
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class NetnsHostsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nodusd = os.environ["NODUSD"]
        cls.nodusctl = os.environ["NODUSCTL"]
        cls.source = os.environ["NODUS_SOURCE_DIR"]
        cls.dir = tempfile.mkdtemp(prefix="nodus-netns-")
        cls.procs = {}
        cls.made_ns = []
        cls.addr = {n: SUBNET + str(i + 1) for i, n in enumerate(NODES)}
        try:
            cls.make_network()
            for n in NODES:
                shutil.copy(os.path.join(cls.source, "cluster-configs", "hosts-3", n + ".conf"),
                            cls.dir)
            with open(os.path.join(cls.dir, "cookie"), "w") as f:
                f.write("netns-test-cookie\n")
            os.chmod(os.path.join(cls.dir, "cookie"), 0o600)
            for n in NODES:
                cls.start(n)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for n, p in list(cls.procs.items()):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        cls.procs.clear()
        for name in reversed(cls.made_ns):
            run("ip", "netns", "del", name, check=False)
            shutil.rmtree("/etc/netns/" + name, ignore_errors=True)
        cls.made_ns.clear()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # -- the network: a bridge in a hub namespace, one veth pair per node ---------------------
    @classmethod
    def make_network(cls):
        for name in [HUB] + [ns(n) for n in NODES]:
            run("ip", "netns", "add", name)
            cls.made_ns.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", HUB, "link", "set", "br0", "up")
        for n in NODES:
            run("ip", "-n", HUB, "link", "add", "v" + n, "type", "veth", "peer", "name", "eth0",
                "netns", ns(n))
            run("ip", "-n", HUB, "link", "set", "v" + n, "master", "br0", "up")
            run("ip", "-n", ns(n), "addr", "add", cls.addr[n] + "/24", "dev", "eth0")
            run("ip", "-n", ns(n), "link", "set", "eth0", "up")
        cls.write_hosts()

    @classmethod
    def write_hosts(cls):
        lines = ["127.0.0.1 localhost"] + ["%s %s.nodus.internal" % (cls.addr[n], n) for n in NODES]
        for n in NODES:
            d = "/etc/netns/" + ns(n)
            os.makedirs(d, exist_ok=True)
            with open(d + "/hosts.new", "w") as f:
                f.write("\n".join(lines) + "\n")
            # Written in place: `ip netns exec` bind-mounted this very file into running
            # processes' view, so a rename would not reach them.
            with open(d + "/hosts.new") as src, open(d + "/hosts", "w") as dst:
                dst.write(src.read())
            os.remove(d + "/hosts.new")

    @classmethod
    def start(cls, n):
        cls.procs[n] = subprocess.Popen(
            ["ip", "netns", "exec", ns(n), cls.nodusd, "--config", os.path.join(cls.dir, n + ".conf"),
             "--kv.data_dir=" + os.path.join(cls.dir, "data-" + n),
             "--log.file=" + os.path.join(cls.dir, n + ".log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl(self, from_node, target, *args, check=True):
        r = run("ip", "netns", "exec", ns(from_node), self.nodusctl, "--node",
                "tcp://%s.nodus.internal:%d" % (target, PORT), "--cookie-file",
                os.path.join(self.dir, "cookie"), "--json", *args, check=check)
        if r.returncode != 0:
            return None  # (check=False) the caller polls again
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def up_nodes(self, from_node, target):
        return sorted(x["name"] for x in self.ctl(from_node, target, "nodes") if x["state"] == "up")

    def log(self, n):
        try:
            with open(os.path.join(self.dir, n + ".log")) as f:
                return f.read()[-3000:]
        except OSError as e:
            return str(e)

    # -- the tests, in order ------------------------------------------------------------------
    def test_1_mesh_by_name_and_the_store_works_across_namespaces(self):
        for n in NODES:
            others = sorted(m for m in NODES if m != n)
            try:
                eventually("%s to see %s up" % (n, others),
                           lambda n=n, others=others: set(others) <= set(self.up_nodes(n, n)))
            except AssertionError:
                self.fail("%s\n%s" % (sys.exc_info()[1], self.log(n)))
        # Peers know each other by the advertised names, not by 0.0.0.0.
        status = self.ctl("n1", "n1", "status")
        endpoints = {x["name"]: x["endpoint"] for x in status["nodes"]}
        for n in NODES:
            self.assertEqual("tcp://%s.nodus.internal:%d" % (n, PORT), endpoints.get(n), status)
        # nodusctl in n1's namespace reaches n3 in another one by name: n3 links back to it.
        eventually("the ring on n3", lambda: self.ctl("n1", "n3", "ring")["partitions"] == 64)
        # nodusctl --config reaches the node of that file at its advertised name.
        r = run("ip", "netns", "exec", ns("n2"), self.nodusctl, "--config",
                os.path.join(self.dir, "n2.conf"), "--json", "nodes")
        self.assertEqual(set(NODES), {x["name"] for x in json.loads(r.stdout)}, r.stdout)
        eventually("a put through n1",
                   lambda: self.ctl("n1", "n1", "kv", "put", "city", "lisbon", check=False)
                   is not None)
        got = eventually("the key read on n3 from n2's namespace",
                         lambda: self.ctl("n2", "n3", "kv", "get", "city"))
        self.assertEqual("lisbon", got.get("value"), got)

    def test_2_a_node_back_at_a_new_address_is_found_again_by_its_name(self):
        p = self.procs.pop("n2")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        eventually("n1 to see n2 down", lambda: "n2" not in self.up_nodes("n1", "n1"))
        old = self.addr["n2"]
        self.addr["n2"] = SUBNET + "12"
        run("ip", "-n", ns("n2"), "addr", "del", old + "/24", "dev", "eth0")
        run("ip", "-n", ns("n2"), "addr", "add", self.addr["n2"] + "/24", "dev", "eth0")
        self.write_hosts()
        self.start("n2")
        # n1's link to n2 dials "tcp://n2.nodus.internal": up again only if the name is resolved
        # again (the old address answers no one).
        try:
            eventually("n1 and n3 to see n2 up at its new address",
                       lambda: "n2" in self.up_nodes("n1", "n1") and "n2" in self.up_nodes("n3", "n3"))
        except AssertionError:
            self.fail("%s\n%s" % (sys.exc_info()[1], self.log("n1")))
        got = eventually("the key read on the moved node",
                         lambda: self.ctl("n2", "n2", "kv", "get", "city"))
        self.assertEqual("lisbon", got.get("value"), got)

    def test_3_the_systemd_unit_verifies(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        unit = os.path.join(self.dir, "nodusd.service")
        with open(os.path.join(self.source, "tools", "nodusd.service")) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/local/bin/nodusd --config /etc/nodus/nodus.conf", text)
        with open(unit, "w") as f:  # the binary where the unit expects it, here the built one
            f.write(text.replace("/usr/local/bin/nodusd", self.nodusd))
        r = run("systemd-analyze", "verify", unit, check=False)
        self.assertEqual(0, r.returncode, r.stderr)


if __name__ == "__main__":
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("skipped: needs root and iproute2 (ip netns)")
        sys.exit(SKIP)
    if not all(k in os.environ for k in ("NODUSD", "NODUSCTL", "NODUS_SOURCE_DIR")):
        print("set NODUSD and NODUSCTL to the built binaries, NODUS_SOURCE_DIR to the checkout")
        sys.exit(2)
    probe = subprocess.run(["ip", "netns", "add", PREFIX + "probe"], capture_output=True)
    if probe.returncode != 0:
        print("skipped: cannot make a network namespace: " + probe.stderr.decode().strip())
        sys.exit(SKIP)
    subprocess.run(["ip", "netns", "del", PREFIX + "probe"], capture_output=True)
    unittest.main(verbosity=2)
