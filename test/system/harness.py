"""Shared helpers for dotward's system tests.

Addresses and ports, small DNS clients (raw bytes in, raw bytes out, so tests
can check exactly what came back), and process wrappers for dotward, NSD and
knot. Everything here talks to loopback only.
"""
import os
import random
import re
import signal
import shutil
import socket
import struct
import subprocess
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WAIT_CAP = 10.0          # every wait for a process is capped at this many seconds
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# The zone every real server serves. `big` carries 30 TXT strings of 100 bytes:
# about 3.4 KB on the wire, more than 512 and 1232, less than 4096.
BIG_TXT_COUNT = 30
WWW_A = "192.0.2.80"
WWW_AAAA = "2001:db8::80"
TXT_TEXT = "hello from test zone"
KNOT_ONLY_A = "192.0.2.53"  # www.sub.test exists only in knot's copy of the zone


def big_txt_strings():
    return ["big%02d-" % i + "x" * 94 for i in range(BIG_TXT_COUNT)]


def zone_text(extra=""):
    lines = [
        "$ORIGIN test.",
        "$TTL 300",
        "@    IN SOA ns1.test. admin.test. 1 3600 600 86400 300",
        "@    IN NS  ns1.test.",
        "ns1  IN A   192.0.2.11",
        "www  IN A   %s" % WWW_A,
        "www  IN AAAA %s" % WWW_AAAA,
        'txt  IN TXT "%s"' % TXT_TEXT,
        'txt  IN TXT "second string"',
    ]
    lines += ['big  IN TXT "%s"' % s for s in big_txt_strings()]
    return "\n".join(lines) + "\n" + extra


# --------------------------------------------------------------------------
# addresses and ports

class AddrPool:
    """Distinct 127.0.0.x addresses for the session. The start is random so two
    concurrent runs of the suite rarely share addresses (ports differ anyway)."""

    def __init__(self):
        self._next = random.randrange(240)

    def take(self):
        x = 10 + self._next % 240
        self._next += 1
        return "127.0.0.%d" % x


ADDRS = AddrPool()


def _can_bind(addr, port):
    socks = []
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port(addr):
    """A port free for UDP and TCP on addr, below the kernel's ephemeral range
    so that no client socket grabs it between this check and the bind."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if _can_bind(addr, port):
            return port
    raise RuntimeError("no free port on %s" % addr)


def free_addr_port53():
    """A 127.0.0.x whose port 53 is free for UDP and TCP (needs root)."""
    for _ in range(240):
        addr = ADDRS.take()
        if _can_bind(addr, 53):
            return addr
    raise RuntimeError("no 127.0.0.x with a free port 53")


# --------------------------------------------------------------------------
# DNS clients

def make_query(name, rdtype="A", qid=None, edns=None, rd=True):
    """edns=None: no OPT record; edns=N: OPT with UDP payload N."""
    if edns is None:
        q = dns.message.make_query(name, rdtype, use_edns=False)
    else:
        q = dns.message.make_query(name, rdtype, use_edns=0, payload=edns)
    if qid is not None:
        q.id = qid
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def udp_exchange(addr, port, wire, timeout=3.0):
    """Send one datagram, return the first datagram back from addr:port, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((addr, port))
        s.settimeout(timeout)
        s.send(wire)
        try:
            return s.recv(65535)
        except (socket.timeout, ConnectionRefusedError):
            return None
    finally:
        s.close()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def tcp_recv_msg(sock):
    """One length-prefixed message, or None on EOF/timeout."""
    try:
        hdr = recv_exact(sock, 2)
        if hdr is None:
            return None
        return recv_exact(sock, struct.unpack("!H", hdr)[0])
    except (socket.timeout, ConnectionResetError):
        return None


def tcp_frame(wire):
    return struct.pack("!H", len(wire)) + wire


def tcp_exchange(addr, port, wire, timeout=3.0):
    s = socket.create_connection((addr, port), timeout=timeout)
    try:
        s.sendall(tcp_frame(wire))
        return tcp_recv_msg(s)
    finally:
        s.close()


def exchange(addr, port, wire, transport="udp", timeout=3.0):
    if transport == "udp":
        return udp_exchange(addr, port, wire, timeout)
    return tcp_exchange(addr, port, wire, timeout)


def ask(addr, port, name, rdtype="A", transport="udp", timeout=3.0, **kw):
    """Query and parse; fails the test with a clear message if nothing came back."""
    q = make_query(name, rdtype, **kw)
    raw = exchange(addr, port, q.to_wire(), transport, timeout)
    assert raw is not None, "no %s answer from %s:%d for %s %s within %.1fs" % (
        transport, addr, port, name, rdtype, timeout)
    r = dns.message.from_wire(raw)
    assert r.id == q.id, "answer ID %d != query ID %d" % (r.id, q.id)
    return r


def rrset_values(msg, rdtype):
    """Text of every record of that type in the answer section."""
    t = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else rdtype
    out = []
    for rrset in msg.answer:
        if rrset.rdtype == t:
            for rd in rrset:
                if t == dns.rdatatype.TXT:
                    out.append(b"".join(rd.strings).decode())
                else:
                    out.append(rd.to_text())
    return out


def rcode_text(msg):
    return dns.rcode.to_text(msg.rcode())


def need(prog):
    """Skip (with the reason) when a required program is missing."""
    import pytest
    path = shutil.which(prog) or (os.path.exists("/usr/sbin/" + prog) and "/usr/sbin/" + prog)
    if not path:
        pytest.skip("%s is not installed" % prog)
    return path


def wait_until(pred, cap=WAIT_CAP, step=0.02):
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# --------------------------------------------------------------------------
# processes

def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def sanitizer_findings(text):
    return [m for m in SANITIZER_MARKERS if m in text]


class Dotward:
    """One dotward process. stderr/stdout go to files in workdir (a pipe could
    fill up and block the daemon)."""

    def __init__(self, binary, workdir, listen, args=(), config=None, name="dotward"):
        self.binary = binary
        self.workdir = str(workdir)
        self.addr, self.port = listen
        self.name = name
        self.config_path = os.path.join(self.workdir, name + ".conf")
        self.err_path = os.path.join(self.workdir, name + ".stderr")
        self.out_path = os.path.join(self.workdir, name + ".stdout")
        self.args = list(args)
        if config is not None:
            self.write_config(config)
            self.args = ["-c", self.config_path] + self.args
        self.proc = None
        self.rc = None
        self._err_f = self._out_f = None

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    @property
    def cmdline(self):
        return [self.binary] + self.args

    def start(self, ready=True, udp_probe=True):
        self._err_f = open(self.err_path, "wb")
        self._out_f = open(self.out_path, "wb")
        env = dict(os.environ)
        # a sanitizer build should report, not abort silently in a way we miss
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen(self.cmdline, stdout=self._out_f, stderr=self._err_f,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=env)
        if ready:
            self.wait_ready(udp_probe=udp_probe)
        return self

    def stderr(self):
        return read_text(self.err_path)

    def stdout(self):
        return read_text(self.out_path)

    def describe(self):
        return "command: %s\n--- dotward stderr ---\n%s" % (" ".join(self.cmdline), self.stderr()[-6000:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, cap=WAIT_CAP, udp_probe=True):
        """Ready = the start-up line says `listening on`, the TCP listener
        accepts, and (unless udp_probe is False, for clients dotward drops) a
        UDP probe is answered. The probe is a STATUS-opcode query, answered
        at once (NOTIMP, or REFUSED outside the ACL) and never forwarded."""
        deadline = time.monotonic() + cap
        stage = "no `listening on` line"
        probe = struct.pack("!6H", 0xFFFE, (2 << 11) | 0x0100, 1, 0, 0, 0) + b"\x05ready\x00\x00\x01\x00\x01"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dotward exited with %d during start-up\n%s" % (
                    self.proc.returncode, self.describe()))
            if "listening on" in self.stderr():
                try:
                    stage = "TCP listener not accepting"
                    socket.create_connection((self.addr, self.port), timeout=1).close()
                    if not udp_probe:
                        return
                    stage = "no answer to a UDP probe"
                    if udp_exchange(self.addr, self.port, probe, timeout=0.2) is not None:
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        raise AssertionError("dotward not ready within %.0fs (%s)\n%s" % (cap, stage, self.describe()))

    def send_signal(self, sig):
        assert self.alive(), "dotward is not running\n" + self.describe()
        self.proc.send_signal(sig)

    def stats(self, cap=5.0):
        """SIGUSR1, then the counters of the new `stats:` line as a dict."""
        before = self.stderr().count("stats:")
        self.send_signal(signal.SIGUSR1)
        ok = wait_until(lambda: self.stderr().count("stats:") > before, cap)
        assert ok, "no new stats line within %.0fs after SIGUSR1\n%s" % (cap, self.describe())
        return self.last_stats()

    def last_stats(self):
        lines = [ln for ln in self.stderr().splitlines() if "stats:" in ln]
        assert lines, "no stats line in stderr\n" + self.describe()
        tail = lines[-1].split("stats:", 1)[1]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", tail)}

    def wait_log(self, needle, cap=5.0, after=0):
        """Wait until `needle` (str or compiled regex) shows up in stderr past offset `after`."""
        def found():
            text = self.stderr()[after:]
            if hasattr(needle, "search"):
                return needle.search(text)
            return needle in text
        return wait_until(found, cap)

    def stop(self, sig=signal.SIGTERM, cap=WAIT_CAP):
        """Signal and wait; returns the exit status (kills and fails on a hang)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(cap)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._close_files()
                raise AssertionError("dotward did not exit within %.0fs of signal %d\n%s" % (
                    cap, sig, self.describe()))
        self.rc = self.proc.returncode
        self._close_files()
        return self.rc

    def wait_exit(self, cap=WAIT_CAP):
        """Wait for an exit already under way (no signal); returns the status."""
        try:
            self.proc.wait(cap)
        except subprocess.TimeoutExpired:
            raise AssertionError("dotward still running %.0fs later\n%s" % (cap, self.describe()))
        self.rc = self.proc.returncode
        return self.rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._close_files()

    def _close_files(self):
        for f in (self._err_f, self._out_f):
            if f is not None and not f.closed:
                f.close()


def run_dotward(binary, args, cwd, cap=WAIT_CAP):
    """Run to completion (config checks); returns CompletedProcess with text."""
    return subprocess.run([binary] + list(args), cwd=str(cwd), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=cap)


def knot_conf(rundir, addr, port, zfile, extra="", zone_extra=""):
    """A knotd config serving zone test. from zfile on addr@port. `extra` is put
    before the zone section (key:, remote:, acl: sections), `zone_extra` into
    the zone's entry (lines indented by four spaces: acl, master, ...)."""
    return """server:
    rundir: "{d}"
    listen: {addr}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{d}"
log:
  - target: stderr
    any: info
template:
  - id: default
    zonefile-sync: -1
    journal-content: none
{extra}zone:
  - domain: test.
    file: "{zfile}"
{zone_extra}""".format(d=rundir, addr=addr, port=port, zfile=zfile, extra=extra, zone_extra=zone_extra)


class Server:
    """Base for real DNS servers run as foreground children."""
    name = "server"

    def __init__(self, workdir, addr, port):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.addr, self.port = addr, port
        self.log_path = os.path.join(self.dir, self.name + ".out")
        self.proc = None
        self._log_f = None

    def log(self):
        return read_text(self.log_path)

    def _spawn(self, argv):
        self._log_f = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log_f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)

    def wait_ready(self, cap=WAIT_CAP):
        """Polled over TCP: a UDP poll during start-up can cost a retry (knot)."""
        q = make_query("www.test.", "A").to_wire()
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d during start-up\n%s" % (
                    self.name, self.proc.returncode, self.log()[-4000:]))
            try:
                raw = tcp_exchange(self.addr, self.port, q, timeout=1)
                if raw and WWW_A in rrset_values(dns.message.from_wire(raw), "A"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("%s on %s:%d not ready within %.0fs\n%s" % (
            self.name, self.addr, self.port, cap, self.log()[-4000:]))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log_f is not None and not self._log_f.closed:
            self._log_f.close()


def _children(pid):
    """Direct children of pid, from /proc (no broad kill by name)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                kids.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return kids


class Nsd(Server):
    name = "nsd"

    def __init__(self, workdir, addr, port, zone=None):
        super().__init__(workdir, addr, port)
        self.zone = zone if zone is not None else zone_text()
        self.pidfile = os.path.join(self.dir, "nsd.pid")

    def start(self):
        zdir = os.path.join(self.dir, "zones")
        os.makedirs(zdir, exist_ok=True)
        with open(os.path.join(zdir, "test.zone"), "w") as f:
            f.write(self.zone)
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write("""server:
  ip-address: {addr}@{port}
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  tcp-count: 200
  verbosity: 1
  hide-version: yes
  zonesdir: "{zdir}"
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  pidfile: "{d}/nsd.pid"
  logfile: "{d}/nsd.log"
remote-control:
  control-enable: no
zone:
  name: "test."
  zonefile: "test.zone"
""".format(addr=self.addr, port=self.port, zdir=zdir, d=self.dir))
        self._spawn([shutil.which("nsd") or "nsd", "-d", "-c", conf])
        self.wait_ready()
        return self

    def log(self):
        return read_text(self.log_path) + read_text(os.path.join(self.dir, "nsd.log"))

    def stop(self):
        """The main pid (pidfile) first, then any child left behind."""
        if self.proc is None:
            return
        main = self.proc.pid
        try:
            main = int(read_text(self.pidfile).split()[0])
        except (IndexError, ValueError):
            pass
        kids = _children(main) if self.proc.poll() is None else []
        for pid in {main, self.proc.pid}:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        deadline = time.monotonic() + 3
        for pid in kids:
            while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
                time.sleep(0.02)
            try:
                if "nsd" in read_text("/proc/%d/cmdline" % pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._log_f is not None and not self._log_f.closed:
            self._log_f.close()


class Knot(Server):
    """knotd in the foreground. `conf_extra` and `zone_extra` go into its
    config (see knot_conf): TSIG keys, ACLs, a primary to transfer from."""
    name = "knot"

    def __init__(self, workdir, addr, port, zone=None, conf_extra="", zone_extra=""):
        super().__init__(workdir, addr, port)
        self.zone = zone if zone is not None else zone_text(
            "www.sub IN A %s\n" % KNOT_ONLY_A)
        self.conf_extra, self.zone_extra = conf_extra, zone_extra
        self.control = os.path.join(self.dir, "knot.sock")   # rundir/knot.sock, knotc's default

    def start(self):
        zfile = os.path.join(self.dir, "test.zone")
        with open(zfile, "w") as f:
            f.write(self.zone)
        conf = os.path.join(self.dir, "knot.conf")
        with open(conf, "w") as f:
            f.write(knot_conf(self.dir, self.addr, self.port, zfile, self.conf_extra, self.zone_extra))
        self._spawn([shutil.which("knotd") or "knotd", "-c", conf])
        self.wait_ready()
        return self

    def knotc(self, *args, check=True):
        """knotc over this server's control socket; returns CompletedProcess."""
        r = subprocess.run([shutil.which("knotc") or "knotc", "-s", self.control] + list(args),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=WAIT_CAP)
        if check and r.returncode != 0:
            raise AssertionError("knotc %s -> %d\n%s%s\n--- knot log ---\n%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr, self.log()[-3000:]))
        return r


def knot_tsig_section(keys):
    """knot's key: section for {name: (algorithm, base64 secret)}."""
    out = "key:\n"
    for name, (alg, secret) in keys.items():
        out += "  - id: %s\n    algorithm: %s\n    secret: %s\n" % (name, alg, secret)
    return out


class Named(Server):
    """BIND (named -g) serving zone test. from a writable file, so that
    dynamic updates can land. `keys` is {name: (algorithm, base64 secret)};
    `allow_update` is the allow-update match list (e.g. 'key upd.') or None.
    named listens only on addresses that an interface has: on loopback use
    127.0.0.1 (with a port of its own), not any 127.0.0.x."""
    name = "named"

    def __init__(self, workdir, addr, port, zone=None, keys=None, allow_update=None):
        super().__init__(workdir, addr, port)
        self.zone = zone if zone is not None else zone_text()
        self.keys = dict(keys or {})
        self.allow_update = allow_update

    def start(self):
        zfile = os.path.join(self.dir, "test.zone")
        with open(zfile, "w") as f:
            f.write(self.zone)
        keys = "".join('key "%s" { algorithm %s; secret "%s"; };\n' % (n, a, s)
                       for n, (a, s) in self.keys.items())
        upd = "allow-update { %s; };" % self.allow_update if self.allow_update else ""
        conf = os.path.join(self.dir, "named.conf")
        with open(conf, "w") as f:
            f.write(keys + """options {{
  directory "{d}"; pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key"; managed-keys-directory "{d}";
  listen-on port {port} {{ {addr}; }}; listen-on-v6 {{ none; }};
  recursion no; dnssec-validation no; notify no;
}};
controls {{ }};
zone "test." {{ type primary; file "{zfile}"; {upd} }};
""".format(d=self.dir, addr=self.addr, port=self.port, zfile=zfile, upd=upd))
        self._spawn([shutil.which("named") or "/usr/sbin/named", "-g", "-n", "1", "-c", conf])
        self.wait_ready()
        return self
