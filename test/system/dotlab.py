"""A network-namespace lab for dotward's DoT tests (test_dot_*.py).

Topology (every namespace is named dwt-<pid>-*, so two runs never collide,
and everything goes away with the namespaces at teardown):

    dwt-<pid>-hub   bridge br0; one veth per namespace below is enslaved to it
    dwt-<pid>-cli   192.0.2.1   dotward runs here, and the tests' queries come from here
    dwt-<pid>-s11   192.0.2.11  NSD, Do53 + DoT (self-signed certificate, CN/SAN auth.test)
    dwt-<pid>-s12   192.0.2.12  BIND (named), Do53 + DoT
    dwt-<pid>-s13   192.0.2.13  knot, Do53 only: 853 refused by the kernel
    dwt-<pid>-s14   192.0.2.14  NSD, Do53 + DoT, 853 dropped by nft (connect timeout)
    dwt-<pid>-s15   192.0.2.15  NSD, Do53 + DoT, 853 `reject with tcp reset`
    dwt-<pid>-s16   192.0.2.16  NSD on 53; on 853 a listener that accepts and never speaks
    dwt-<pid>-s17   192.0.2.17  NSD on 53; on 853 a TLS server answering garbage
    dwt-<pid>-s18   192.0.2.18  NSD on 53; on 853 a correct scripted DoT server that hangs up
                                on idle connections after 1.5 s, without any keepalive hint

`Lab(dir, kinds={n: kind})` brings up only the servers named, on 192.0.2.n;
besides the kinds above there is `knot-dnsdist`: knot on 53 and dnsdist
terminating TLS on 853 in front of it (knot 3.2 has no DoT), with
`knot_extras={n: (conf_extra, zone_extra)}` for knot's TSIG keys and ACLs.

Every server serves zone `test.` (harness.zone_text()) plus `www.sNN A 192.0.2.80`
for every server and `who TXT "sNN"` naming itself. Nothing is added to the
root namespace; no packet leaves the lab.

Client side: `Lab.cli()` moves the calling thread into the client namespace
(setns(2) is per thread); sockets made inside keep that namespace, and a
process started inside inherits it. dotward is started that way, so its pid
is the Popen pid and harness.Dotward's signals, stats and stop work as is.
"""
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import dns.message

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
BADTLS = os.path.join(HERE, "dotlab", "badtls.py")
PY = "/usr/bin/python3"
PREFIX = "dwt-%d-" % os.getpid()
CLIENT_IP = "192.0.2.1"
AUTH_NAME = "auth.test"
SERVER_IPS = {n: "192.0.2.%d" % n for n in range(11, 19)}
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


@contextlib.contextmanager
def netns(name):
    """Run the body with the calling thread in namespace `name`."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(fd)
        os.close(back)


def enter_netns_for_thread(name):
    """For worker threads that live in one namespace: switch and stay."""
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def sh(argv, check=True, input=None, timeout=20):
    r = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError("%s -> %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


def ns_pids(ns):
    r = sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def kill_ns_processes(ns, grace=2.0):
    """SIGTERM every process inside `ns` (by pid), then SIGKILL what is left."""
    pids = ns_pids(ns)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = ns_pids(ns)
        if pids:
            time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def delete_ns(ns, grace=2.0):
    kill_ns_processes(ns, grace)
    sh(["ip", "netns", "del", ns], check=False)


def clean_stale():
    """Namespaces of earlier runs whose pytest is gone (named dwt-<deadpid>-*)."""
    r = sh(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"(dwt-(\d+)-\S+)", line)
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            delete_ns(m.group(1))


def zone_for(n):
    extra = "".join("www.s%d IN A %s\n" % (k, harness.WWW_A) for k in SERVER_IPS)
    extra += 'who IN TXT "s%d"\n' % n
    return harness.zone_text(extra)


class Nft:
    """One `table inet dwt` in a namespace, with an input chain. Rules carry
    a comment so their counters can be read back by name."""

    def __init__(self, lab, ns, rules, hook="input"):
        self.lab, self.ns = lab, ns
        body = "\n".join("    " + r for r in rules)
        text = ("table inet dwt {\n  chain %s {\n    type filter hook %s priority 0; policy accept;\n"
                "%s\n  }\n}\n" % (hook, hook, body))
        sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text)

    def counters(self):
        """{comment: packets}"""
        out = sh(["ip", "netns", "exec", self.ns, "nft", "list", "table", "inet", "dwt"]).stdout
        res = {}
        for line in out.splitlines():
            m = re.search(r"counter packets (\d+) bytes \d+.*comment \"([^\"]+)\"", line)
            if m:
                res[m.group(2)] = res.get(m.group(2), 0) + int(m.group(1))
        return res

    def delete(self):
        sh(["ip", "netns", "exec", self.ns, "nft", "delete", "table", "inet", "dwt"], check=False)


class LabProc:
    """A process started inside a server namespace with `ip netns exec`
    (which execs, so the Popen pid is the program's own)."""

    def __init__(self, lab, ns, name, argv, cwd):
        self.lab, self.ns, self.name, self.argv, self.cwd = lab, ns, name, argv, cwd
        self.log_path = os.path.join(cwd, name + ".out")
        self.proc = None
        self._log_f = None

    def start(self):
        self._log_f = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns] + self.argv, cwd=self.cwd,
                                     stdout=self._log_f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self

    def log(self):
        return harness.read_text(self.log_path)

    def stop(self, grace=0.5):
        """SIGTERM the program and every process of its that it left behind
        (children: NSD forks), then SIGKILL after `grace`."""
        if self.proc is None:
            return
        kids = set(harness._children(self.proc.pid))
        for p in list(kids):
            kids |= set(harness._children(p))
        try:
            os.kill(self.proc.pid, signal.SIGTERM)  # NSD's main process stops its children
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        deadline = time.monotonic() + grace
        for p in kids:
            while time.monotonic() < deadline and os.path.exists("/proc/%d" % p):
                time.sleep(0.01)
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None
        if self._log_f is not None:
            self._log_f.close()
            self._log_f = None


class Server:
    """A DNS server in namespace dwt-<pid>-sNN: Do53 on IP:53 and, depending on
    `kind`, something on IP:853."""

    def __init__(self, lab, n, kind):
        self.lab, self.n, self.kind = lab, n, kind
        self.ip = server_ip(n)
        self.ns = lab.ns("s%d" % n)
        self.dir = os.path.join(lab.dir, "s%d" % n)
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []
        self.nft = None
        self.nsd_dot = kind in ("nsd-dot", "nsd-drop", "nsd-reset")
        self.nsd_tcp_timeout = None
        # knot kinds: put into knot's config (harness.knot_conf): keys, ACLs
        self.knot_extra, self.knot_zone_extra = lab.knot_extras.get(n, ("", ""))

    # ---- NSD -------------------------------------------------------------
    def nsd_conf(self):
        zdir = os.path.join(self.dir, "zones")
        os.makedirs(zdir, exist_ok=True)
        with open(os.path.join(zdir, "test.zone"), "w") as f:
            f.write(zone_for(self.n))
        lines = ["server:", "  ip-address: %s@53" % self.ip]
        if self.nsd_dot:
            lines += ["  ip-address: %s@853" % self.ip, "  tls-port: 853",
                      '  tls-service-key: "%s"' % self.lab.key, '  tls-service-pem: "%s"' % self.lab.cert]
        if self.nsd_tcp_timeout is not None:
            lines += ["  tcp-timeout: %d" % self.nsd_tcp_timeout]
        lines += ["  do-ip6: no", "  server-count: 1", '  username: ""', '  chroot: ""', '  database: ""',
                  "  rrl-ratelimit: 0", "  rrl-whitelist-ratelimit: 0", "  tcp-count: 200",
                  "  verbosity: 2", "  hide-version: yes",
                  '  zonesdir: "%s"' % zdir, '  zonelistfile: "%s/zone.list"' % self.dir,
                  '  xfrdfile: "%s/xfrd.state"' % self.dir, '  xfrdir: "%s"' % self.dir,
                  '  pidfile: "%s/nsd.pid"' % self.dir, '  logfile: "%s/nsd.log"' % self.dir,
                  "remote-control:", "  control-enable: no",
                  "zone:", '  name: "test."', '  zonefile: "test.zone"', ""]
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines))
        return conf

    def start_nsd(self):
        p = LabProc(self.lab, self.ns, "nsd", [shutil.which("nsd") or "/usr/sbin/nsd", "-d", "-c",
                                                self.nsd_conf()], self.dir).start()
        self.procs.append(p)
        return p

    def restart_nsd(self, dot=None, tcp_timeout="keep"):
        """Stop NSD and start it again, e.g. without its 853 listener or with
        another tcp-timeout. Waits until it answers again."""
        if dot is not None:
            self.nsd_dot = dot
        if tcp_timeout != "keep":
            self.nsd_tcp_timeout = tcp_timeout
        for p in [p for p in self.procs if p.name == "nsd"]:
            p.stop()
            self.procs.remove(p)
        self.start_nsd()
        self.wait_ready()

    # ---- others ----------------------------------------------------------
    def start(self):
        d = self.dir
        if self.kind.startswith("nsd") or self.kind in ("silent", "garbage", "good"):
            self.start_nsd()
        if self.kind in ("silent", "garbage", "good"):
            argv = [PY, BADTLS, self.kind, self.ip, "853", self.lab.cert, self.lab.key, "1.5"]
            self.procs.append(LabProc(self.lab, self.ns, self.kind, argv, d).start())
        if self.kind == "named":
            zfile = os.path.join(d, "test.zone")
            with open(zfile, "w") as f:
                f.write(zone_for(self.n))
            conf = os.path.join(d, "named.conf")
            with open(conf, "w") as f:
                f.write("""tls local-tls {{ key-file "{key}"; cert-file "{cert}"; }};
options {{
  directory "{d}"; pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key"; managed-keys-directory "{d}";
  listen-on port 53 {{ {ip}; }}; listen-on port 853 tls local-tls {{ {ip}; }};
  listen-on-v6 {{ none; }}; recursion no; dnssec-validation no;
  notify no;
}};
controls {{ }};
zone "test." {{ type primary; file "{zfile}"; }};
""".format(key=self.lab.key, cert=self.lab.cert, d=d, ip=self.ip, zfile=zfile))
            named = shutil.which("named") or "/usr/sbin/named"
            self.procs.append(LabProc(self.lab, self.ns, "named", [named, "-g", "-n", "1", "-c", conf],
                                      d).start())
        if self.kind in ("knot", "knot-dnsdist"):
            zfile = os.path.join(d, "test.zone")
            with open(zfile, "w") as f:
                f.write(zone_for(self.n))
            conf = os.path.join(d, "knot.conf")
            with open(conf, "w") as f:
                f.write(harness.knot_conf(d, self.ip, 53, zfile, self.knot_extra, self.knot_zone_extra))
            knotd = shutil.which("knotd") or "/usr/sbin/knotd"
            self.procs.append(LabProc(self.lab, self.ns, "knot", [knotd, "-c", conf], d).start())
        if self.kind == "knot-dnsdist":
            # knot 3.2 has no DoT: dnsdist terminates TLS on 853 and passes
            # the queries on to knot on IP:53 (from IP, so an nft rule on the
            # client's source address drops only the client's Do53).
            conf = os.path.join(d, "dnsdist.conf")
            with open(conf, "w") as f:
                f.write('setSecurityPollSuffix("")\n'   # no security-status query to anyone
                        'setLocal("127.0.0.1:5399")\n'
                        'addTLSLocal("{ip}:853", "{cert}", "{key}")\n'
                        'setACL({{"192.0.2.0/24"}})\n'
                        'newServer({{address="{ip}:53"}})\n'.format(ip=self.ip, cert=self.lab.cert,
                                                                     key=self.lab.key))
            dnsdist = shutil.which("dnsdist") or "/usr/bin/dnsdist"
            self.procs.append(LabProc(self.lab, self.ns, "dnsdist",
                                      [dnsdist, "--supervised", "--disable-syslog", "-C", conf], d).start())
        if self.kind == "nsd-drop":
            self.nft = Nft(self.lab, self.ns, ["tcp dport 853 drop"])
        if self.kind == "nsd-reset":
            self.nft = Nft(self.lab, self.ns, ["tcp dport 853 reject with tcp reset"])
        return self

    def logs(self):
        out = []
        for p in self.procs:
            out.append("--- %s (%s) ---\n%s" % (p.name, self.ip, p.log()[-3000:]))
        if self.kind.startswith("nsd") or self.kind in ("silent", "garbage", "good"):
            out.append("--- nsd.log ---\n" + harness.read_text(os.path.join(self.dir, "nsd.log"))[-3000:])
        return "\n".join(out)

    def wait_ready(self, cap=harness.WAIT_CAP):
        """A Do53 answer over TCP from the client namespace."""
        q = harness.make_query("who.test.", "TXT").to_wire()
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.proc is not None and p.proc.poll() is not None:
                    raise RuntimeError("%s in %s exited with %d\n%s" % (
                        p.name, self.ns, p.proc.returncode, self.logs()))
            try:
                with self.lab.cli():
                    raw = harness.tcp_exchange(self.ip, 53, q, timeout=1)
                if raw and harness.rrset_values(dns.message.from_wire(raw), "TXT") == ["s%d" % self.n]:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server %s (%s) not ready within %.0fs\n%s" % (
            self.ip, self.kind, cap, self.logs()))

    def stop(self):
        for p in self.procs:
            p.stop()
        self.procs = []


# What listens where. Port 853 behaviour is in the comment of each line.
SERVER_KINDS = {
    11: "nsd-dot",     # DoT works
    12: "named",       # DoT works
    13: "knot",        # 853 closed: kernel RST -> connect-refused
    14: "nsd-drop",    # 853 dropped -> connect-timeout
    15: "nsd-reset",   # 853 reject with tcp reset -> connect-refused
    16: "silent",      # 853 accepts, never speaks TLS -> tls-failed
    17: "garbage",     # TLS up, garbage back -> bad-answer
    18: "good",        # scripted DoT that hangs up on idle connections (1.5 s)
}


def server_ip(n):
    return SERVER_IPS.get(n, "192.0.2.%d" % n)


class Lab:
    """`kinds` ({n: kind}, default SERVER_KINDS) says which servers to start,
    on 192.0.2.n each; `knot_extras` ({n: (conf_extra, zone_extra)}) goes
    into the config of knot kinds."""

    def __init__(self, workdir, kinds=None, knot_extras=None):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.kinds = dict(kinds if kinds is not None else SERVER_KINDS)
        self.knot_extras = dict(knot_extras or {})
        self.namespaces = []
        self.servers = {}
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")

    def ns(self, short):
        return PREFIX + short

    def cli(self):
        return netns(self.ns("cli"))

    def _add_ns(self, short, ip=None):
        name = self.ns(short)
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        sh(["ip", "-n", name, "link", "set", "lo", "up"])
        if ip:
            hub = self.ns("hub")
            veth = "v-" + short
            sh(["ip", "-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name])
            sh(["ip", "-n", hub, "link", "set", veth, "master", "br0", "up"])
            sh(["ip", "-n", name, "addr", "add", ip + "/24", "dev", "eth0"])
            sh(["ip", "-n", name, "link", "set", "eth0", "up"])
        return name

    def up(self):
        clean_stale()
        sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.key, "-out", self.cert, "-days", "30", "-subj", "/CN=" + AUTH_NAME,
            "-addext", "subjectAltName=DNS:" + AUTH_NAME])
        hub = self._add_ns("hub")
        sh(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", hub, "link", "set", "br0", "up"])
        self._add_ns("cli", CLIENT_IP)
        for n, kind in self.kinds.items():
            self._add_ns("s%d" % n, server_ip(n))
        for n, kind in self.kinds.items():
            self.servers[n] = Server(self, n, kind).start()
        for s in self.servers.values():
            s.wait_ready()
        return self

    def down(self):
        """Every process in every lab namespace is ours: SIGTERM them all at
        once, give them a second, SIGKILL the rest, delete the namespaces."""
        procs = [p for s in self.servers.values() for p in s.procs if p.proc is not None]
        for name in self.namespaces:
            for pid in ns_pids(name):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(ns_pids(n) for n in self.namespaces):
            time.sleep(0.05)
        for name in reversed(self.namespaces):
            delete_ns(name, grace=0.2)
        for p in procs:
            try:
                p.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
            if p._log_f is not None:
                p._log_f.close()
        self.namespaces = []

    def logs(self):
        return "\n".join(s.logs() for s in self.servers.values())


# --------------------------------------------------------------------------
# dotward inside the client namespace

class LabDotward(harness.Dotward):
    """harness.Dotward started from inside the client namespace."""

    def __init__(self, lab, *a, control=None, **kw):
        super().__init__(*a, **kw)
        self.lab = lab
        self.control = control

    def start(self, ready=True, udp_probe=True):
        with self.lab.cli():
            super().start(ready=False)
        if ready:
            self.wait_ready(udp_probe=udp_probe)
        return self

    def wait_ready(self, cap=harness.WAIT_CAP, udp_probe=True):
        with self.lab.cli():
            super().wait_ready(cap=cap, udp_probe=udp_probe)

    # ---- queries -----------------------------------------------------------
    def ask(self, name, rdtype="A", transport="udp", timeout=3.0):
        """The parsed answer (fails if none came within `timeout`)."""
        with self.lab.cli():
            return harness.ask(self.addr, self.port, name, rdtype, transport=transport, timeout=timeout)

    def ask_timed(self, name, rdtype="A", transport="udp", timeout=3.0):
        """(parsed answer or None, seconds)."""
        q = harness.make_query(name, rdtype)
        with self.lab.cli():
            t0 = time.monotonic()
            raw = harness.exchange(self.addr, self.port, q.to_wire(), transport, timeout)
            dt = time.monotonic() - t0
        return (dns.message.from_wire(raw) if raw else None), dt

    # ---- the probe table ----------------------------------------------------
    def dump(self, json_too=False):
        """{ip: {field: value}} from `dotward-control dump-probes` when the
        control tool exists, else rebuilt from the `dot-probe:` transition
        lines of the log (status and reason only)."""
        tool = control_bin()
        if tool:
            assert self.control and os.path.exists(self.control), (
                "dotward-control exists (%s) but the control socket %s does not\n%s" % (
                    tool, self.control, self.describe()))
            r = sh([tool, "-s", self.control, "dump-probes"], check=False, timeout=10)
            assert r.returncode == 0, "dotward-control dump-probes -> %d\n%s%s" % (
                r.returncode, r.stdout, r.stderr)
            table = parse_dump(r.stdout)
            if json_too:
                import json
                rj = sh([tool, "-s", self.control, "dump-probes", "--json"], check=False, timeout=10)
                assert rj.returncode == 0, "dump-probes --json -> %d\n%s%s" % (
                    rj.returncode, rj.stdout, rj.stderr)
                return table, json.loads(rj.stdout)
            return table
        table = table_from_log(self.stderr())
        return (table, None) if json_too else table

    def status(self, ip):
        e = self.dump().get(ip)
        return e["status"] if e else None

    def wait_status(self, ip, want, cap=8.0):
        """Wait until `ip` has status `want` (or one of a tuple); returns the entry."""
        wants = (want,) if isinstance(want, str) else tuple(want)
        got = harness.wait_until(lambda: (self.dump().get(ip) or {}).get("status") in wants, cap, 0.05)
        entry = self.dump().get(ip)
        assert got, "%s did not become %s within %.0fs; its entry: %s\n%s" % (
            ip, "/".join(wants), cap, entry, self.describe())
        return entry

    def transitions(self, ip):
        return [(a, b, why) for (i, a, b, why) in parse_transitions(self.stderr()) if i == ip]


DUMP_FIELDS = ("ip domain count status ttd first_seen initiated completed last_response "
               "last_activity probes successes failures dot_queries fallbacks verified since reason").split()


def parse_dump(text):
    table = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        cols = line.split("\t")
        assert len(cols) >= len(DUMP_FIELDS), "dump line with %d fields: %r" % (len(cols), line)
        e = dict(zip(DUMP_FIELDS, cols))
        table[e["ip"]] = e
    return table


_TRANSITION = re.compile(r"dot-probe: (\S+) (\w+) -> (\w+) \((.*)\)\s*$")


def parse_transitions(log):
    out = []
    for line in log.splitlines():
        m = _TRANSITION.search(line)
        if m:
            why = m.group(4).rsplit("; ", 1)[0]
            out.append((m.group(1), m.group(2).capitalize(), m.group(3).capitalize(), why))
    return out


# The prober's own result line (debug level, never rate-limited, unlike the
# transition lines: dotward logs at most 5 of those per IP in 10 s).
_PROBE_RESULT = re.compile(r"dot-probe: (\S+): ([a-z-]+)(?:: (.*?))? after [\d.]+ s \(")


def table_from_log(log):
    """Status and reason of every IP from the log, for when no control tool
    exists: transition lines, plus probe results (a probe ending ok makes the
    IP Good, any other outcome but a local error makes it Bad)."""
    table = {}
    for line in log.splitlines():
        m = _TRANSITION.search(line)
        if m:
            ip = m.group(1)
            table[ip] = {"ip": ip, "status": m.group(3).capitalize(),
                         "reason": m.group(4).rsplit("; ", 1)[0], "source": "log"}
            continue
        m = _PROBE_RESULT.search(line)
        if m and m.group(2) != "local-error":
            ip, outcome = m.group(1), m.group(2)
            why = outcome + (": " + m.group(3) if m.group(3) else "")
            table[ip] = {"ip": ip, "status": "Good" if outcome == "ok" else "Bad",
                         "reason": "probe ok" if outcome == "ok" else why, "source": "log"}
    return table


def control_bin():
    p = os.environ.get("DOTWARD_CONTROL_BIN") or os.path.join(harness.REPO, "build", "tools",
                                                               "dotward-control")
    p = os.path.abspath(p)
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


def percentile(values, pct):
    v = sorted(values)
    k = max(0, min(len(v) - 1, -(-len(v) * pct // 100) - 1))
    return v[int(k)]


if __name__ == "__main__":
    # Manual use: python3 dotlab.py DIR  -> brings the lab up, waits for Enter, tears it down.
    lab = Lab(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dwt-lab")
    try:
        lab.up()
        print("lab up; namespaces:", " ".join(lab.namespaces))
        input("Enter to tear down ")
    finally:
        lab.down()
