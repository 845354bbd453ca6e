"""The fault suite's harness: real nodusd nodes, each in a network namespace of its own.

A run owns everything it makes, and names it after its driver's pid (``PREFIX + pid``):
namespaces ``nfx<pid>n<i>``, a bridge ``nfx<pid>br`` in the root namespace and one veth pair
per node (``nfx<pid>h<i>`` on the bridge, ``nfx<pid>p<i>`` inside the node's namespace with
the address 10.77.0.<10+i>/24). The bridge has no address: nodes reach each other over it,
and nothing of the host is reachable from a namespace or the reverse. ``Net.remove()`` takes
all of it down again, and ``remove_leftovers()`` removes what a previous run whose driver is
gone (killed, crashed) left, and nothing of a run still alive.

Partitions are nftables rules in the namespaces (table ``inet nfx``): a node drops what it
sends to and receives from the addresses of the nodes it must not see; heal deletes the
table. Processes started here are this process's children in sessions of their own (a
Ctrl-C reaches the driver only, which stops them in order) and are killed by pid.

Root only (namespaces, links, nftables). Every wait is bounded.
"""

import json
import os
import re
import signal
import subprocess
import time

PREFIX = "nfx"
SUBNET = "10.77.0"
PORT = 7000
_NAME_RE = re.compile(r"^%s(\d+)(?:br|[hpn]\d+)$" % PREFIX)


def run(cmd, check=True, timeout=20, input_text=None):
    """Runs `cmd` (a list), bounded in time; returns CompletedProcess. With `check`, a
    failure raises RuntimeError naming the command and its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input_text,
                       stdin=None if input_text is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                                   p.stderr.strip()))
    return p


def available():
    """None when this machine can run the suite, else why not (one line)."""
    if os.geteuid() != 0:
        return "not root (network namespaces and nftables need root)"
    for tool in ("ip", "nft"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":") +
                   ["/usr/sbin", "/sbin"]):
            return "%s not found (tools/deps.sh installs iproute2 and nftables)" % tool
    probe = "%s%dn0" % (PREFIX, os.getpid())  # named as a run's, so a leftover is found
    try:
        p = run(["ip", "netns", "add", probe], check=False)
        if p.returncode != 0:
            return "ip netns unavailable: %s" % p.stderr.strip()
        p = run(["ip", "netns", "exec", probe, "nft", "add", "table", "inet", "nfx"],
                check=False)
        if p.returncode != 0:
            return "nftables unavailable in a namespace: %s" % p.stderr.strip()
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def _owner_alive(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"fault" in f.read()
    except OSError:
        return False


def _our_namespaces():
    p = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip() and
            _NAME_RE.match(line.split()[0])]


def _our_links():
    p = run(["ip", "-o", "link", "show"], check=False)
    out = []
    for line in p.stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if _NAME_RE.match(name):
                out.append(name)
    return out


def remove_leftovers(log=print):
    """Removes the namespaces (and the processes in them) and links of runs whose driver is
    no longer alive. Returns how many things it removed."""
    removed = 0
    for ns in _our_namespaces():
        owner = int(_NAME_RE.match(ns).group(1))
        if owner == os.getpid() or _owner_alive(owner):
            continue
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)  # a crashed run's nodusd or client
            except (OSError, ValueError):
                pass
        run(["ip", "netns", "del", ns], check=False)
        log("fault: removed namespace %s of a previous run (%d processes killed)"
            % (ns, len(pids)))
        removed += 1
    for link in _our_links():
        owner = int(_NAME_RE.match(link).group(1))
        if owner == os.getpid() or _owner_alive(owner):
            continue
        run(["ip", "link", "del", link], check=False)
        log("fault: removed link %s of a previous run" % link)
        removed += 1
    return removed


class Net:
    """`n` namespaces on one bridge. ``ns(i)`` and ``addr(i)`` for i in 1..n."""

    def __init__(self, n):
        self.n = n
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.bridge = self.tag + "br"
        self.made_ns, self.made_links = [], []
        self.cuts = {}  # i -> set of j it does not see

    def ns(self, i):
        return "%sn%d" % (self.tag, i)

    def addr(self, i):
        return "%s.%d" % (SUBNET, 10 + i)

    def create(self):
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.made_links.append(self.bridge)
        run(["ip", "link", "set", self.bridge, "up"])
        for i in range(1, self.n + 1):
            ns, host, peer = self.ns(i), "%sh%d" % (self.tag, i), "%sp%d" % (self.tag, i)
            run(["ip", "netns", "add", ns])
            self.made_ns.append(ns)
            run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns])
            self.made_links.append(host)
            run(["ip", "link", "set", host, "master", self.bridge, "up"])
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", self.addr(i) + "/24", "dev", peer],
                        ["ip", "link", "set", peer, "up"]):
                run(["ip", "netns", "exec", ns] + cmd)

    def remove(self):
        """Deletes every namespace and link this Net made (errors ignored: idempotent)."""
        for ns in self.made_ns:
            run(["ip", "netns", "del", ns], check=False)
        for link in self.made_links:
            run(["ip", "link", "del", link], check=False)
        self.made_ns, self.made_links = [], []

    # -- partitions --------------------------------------------------------------------------

    def cut(self, i, unseen):
        """Node i drops every packet to or from the nodes `unseen` (replaces its rules)."""
        self.cuts[i] = set(unseen)
        run(["ip", "netns", "exec", self.ns(i), "nft", "delete", "table", "inet", "nfx"],
            check=False)
        if not unseen:
            return
        addrs = ", ".join(self.addr(j) for j in sorted(unseen))
        rules = ("table inet nfx {\n"
                 " chain input { type filter hook input priority 0; ip saddr { %s } drop; }\n"
                 " chain output { type filter hook output priority 0; ip daddr { %s } drop; }\n"
                 "}\n" % (addrs, addrs))
        run(["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"], input_text=rules)

    def partition(self, sides):
        """`sides`: a list of sets of nodes; a node sees the nodes of every side it is on.
        A node on two sides (a bridge) sees both."""
        everyone = set(range(1, self.n + 1))
        for i in everyone:
            seen = set().union(*[s for s in sides if i in s]) if any(i in s for s in sides) \
                else everyone
            self.cut(i, everyone - seen)

    def heal(self):
        for i in range(1, self.n + 1):
            if self.cuts.get(i):
                self.cut(i, set())
        self.cuts = {}


class Cluster:
    """n nodusd processes n1..nN in the namespaces of `net`, configs and logs in `workdir`."""

    def __init__(self, net, nodusd, workdir, conflicts="siblings", durable=True,
                 partitions=32, replicas=3, cookie=None, faketime=None, kv_extra=(),
                 members=None):
        """`faketime`: the path of libfaketime.so.1, to run every node under it with a clock
        offset that ``skew()`` changes while it runs (`nodusd` must then be linked without
        jemalloc, which libfaketime cannot start under). `kv_extra`: more lines of the
        configs' ``[kv]`` section ("key = value"). `members`: how many of the nodes make the
        first ring (n1..n<members>; default all); the others start as candidates, which
        ``cluster join`` can make members."""
        self.net, self.nodusd, self.dir = net, nodusd, workdir
        self.faketime = faketime
        self.n = net.n
        self.names = ["n%d" % i for i in range(1, (members or self.n) + 1)]
        self.procs = {}      # i -> Popen
        self.paused = set()
        self.cookie_file = os.path.join(workdir, "cookie")
        with open(self.cookie_file, "w") as f:
            f.write((cookie or "fault-" + os.urandom(8).hex()) + "\n")
        os.chmod(self.cookie_file, 0o600)
        for i in range(1, self.n + 1):
            lines = ["[node]", "name = n%d" % i,
                     "listen = tcp://%s:%d" % (net.addr(i), PORT), "schedulers = 1",
                     "[cluster]", "name = fault", "cookie_file = cookie"]
            lines += ["seed = tcp://%s:%d" % (net.addr(j), PORT)
                      for j in range(1, self.n + 1) if j != i]
            lines += ["[kv]", "initial_members = " + " ".join(self.names),
                      "partitions = %d" % partitions, "replicas = %d" % replicas,
                      "write_quorum = 2", "read_quorum = 2", "conflicts = " + conflicts,
                      "request_timeout_ms = 2000"] + list(kv_extra)
            if durable:
                # kill -9 loses nothing acknowledged in any sync mode (only a machine crash
                # does: README, "The store on disk"), so the cheapest mode serves here.
                lines += ["data_dir = n%d-data" % i, "sync = none"]
            lines += ["[log]", "level = info", "file = n%d.log" % i]
            with open(self.conf(i), "w") as f:
                f.write("\n".join(lines) + "\n")

    def conf(self, i):
        return os.path.join(self.dir, "n%d.conf" % i)

    def start(self, i=None):
        for j in ([i] if i else range(1, self.n + 1)):
            out = open(os.path.join(self.dir, "n%d.out" % j), "ab")
            # ip netns exec (and env) exec nodusd in place: the pid is nodusd's.
            env = []
            if self.faketime:
                if not os.path.exists(self.skew_file(j)):
                    self.skew(j, 0)
                env = ["env", "LD_PRELOAD=" + self.faketime,
                       "FAKETIME_TIMESTAMP_FILE=" + self.skew_file(j),
                       "FAKETIME_CACHE_DURATION=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"]
            self.procs[j] = subprocess.Popen(
                ["ip", "netns", "exec", self.net.ns(j)] + env +
                [self.nodusd, "--config", self.conf(j)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
            out.close()

    def kill(self, i):
        p = self.procs.pop(i, None)
        if p is None:
            return
        self.paused.discard(i)
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def pause(self, i):
        if i in self.procs:
            self.procs[i].send_signal(signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i):
        if i in self.procs and i in self.paused:
            self.procs[i].send_signal(signal.SIGCONT)
        self.paused.discard(i)

    def skew_file(self, i):
        return os.path.join(self.dir, "n%d.skew" % i)

    def skew(self, i, seconds):
        """Node i's wall clock runs `seconds` off from now on (within libfaketime's 1 s
        cache); its steady clock is left alone."""
        tmp = self.skew_file(i) + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+ds\n" % seconds)
        os.replace(tmp, self.skew_file(i))

    def running(self):
        return sorted(self.procs)

    def check_alive(self):
        """Raises RuntimeError naming a node that exited on its own (a crash: a finding)."""
        for i, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError("nodusd n%d exited with %s (see %s)" % (
                    i, p.returncode, os.path.join(self.dir, "n%d.log" % i)))

    def stop(self):
        """SIGCONT then SIGTERM to every node, SIGKILL after 5 s."""
        for i in list(self.procs):
            self.resume(i)
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = {}


class Log:
    """JSON lines with the time since the run started (``t``, seconds) and the wall time."""

    def __init__(self, path, t0):
        self.f = open(path, "a")
        self.t0 = t0

    def __call__(self, **fields):
        fields = dict(t=round(time.monotonic() - self.t0, 3), wall=round(time.time(), 3),
                      **fields)
        self.f.write(json.dumps(fields) + "\n")
        self.f.flush()
        return fields

    def close(self):
        self.f.close()
