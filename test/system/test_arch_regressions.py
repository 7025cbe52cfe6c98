"""Regression tests for six findings of the architecture review.

Each test checks only what is visible from outside the daemon: the config
file, signals, DNS answers, `dotward-control` (stats, status, dump-probes),
/proc and the scripted servers' own records. So they keep working while
the daemon is restructured.

 1. a reload that changes a strict upstream's name=/ca=/tls= while a query
    waits on its DoT handshake (use after free, shows under ASan)
 2. a failed reload (a listen address that cannot be bound) must not change
    an upstream's TLS policy: strict stays strict, nothing goes in cleartext
 3. a reload that drops an upstream while a TCP query waits on it (use after
    free when the late answer arrives, ASan)
 4. EMFILE at accept must not spin the loop, and the listener must serve
    again once descriptors are back
 5. TCP clients: slow writers and non-readers are cut off (tcp-io-timeout,
    eviction when tcp-clients is full), and sources outside `allow` are
    closed at accept without taking a slot
 6. counting: one DoT query timeout is one fallback; a reset connection is
    recorded as "reset"

Everything runs on loopback. Port 853 needs root (the tests that use it are
skipped without it, through test_state's need_dot).
"""
import os
import resource
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

import harness
from fakeupstream import FakeUpstream, fake_a
from harness import WWW_A, free_port, rcode_text, rrset_values, wait_until
from test_control import Ctl, ctl_bin, sockdir  # noqa: F401 (fixtures)
from test_state import DOT_PORT, DotNsd, dot_addr, make_cert, need_dot  # noqa: F401 (fixture)

AUTH_NAME = "dot.regress.test"
# An address no interface of this host has: bind() fails with EADDRNOTAVAIL
# (checked by the test that uses it). Nothing is ever sent to it.
UNBINDABLE = "203.0.113.1"


# ---------------------------------------------------------------------------
# helpers

@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    """A test CA and a leaf certificate for AUTH_NAME (SAN) signed by it."""
    harness.need("openssl")
    d = str(tmp_path_factory.mktemp("ca"))
    p = lambda n: os.path.join(d, n)  # noqa: E731

    def run(*argv):
        subprocess.run(["openssl"] + list(argv), check=True, capture_output=True, timeout=20)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "30",
        "-subj", "/CN=dotward regression test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", p("key.pem"), "-out", p("leaf.csr"), "-subj", "/CN=" + AUTH_NAME)
    with open(p("leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % AUTH_NAME)
    run("x509", "-req", "-in", p("leaf.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-days", "30", "-extfile", p("leaf.ext"), "-out", p("cert.pem"))
    # The same CA under a second path: a ca= change that is only a change of file.
    with open(p("ca.pem")) as src, open(p("ca-copy.pem"), "w") as dst:
        dst.write(src.read())
    return {"ca": p("ca.pem"), "ca2": p("ca-copy.pem"), "key": p("key.pem"), "cert": p("cert.pem")}


def ctl_for(d, ctl_bin, sock):
    assert wait_until(lambda: os.path.exists(sock), 5), "no control socket at %s\n%s" % (sock, d.describe())
    return Ctl(ctl_bin, sock, d)


def fill(conf, d):
    """The config text as the running instance has it ({listen} filled in)."""
    return conf.replace("{listen}", "%s:%d" % (d.addr, d.port))


def reload(d, text):
    """Writes the new config, sends SIGHUP; returns the log offset before it."""
    d.write_config(text)
    mark = len(d.stderr())
    d.send_signal(signal.SIGHUP)
    return mark


def ask(d, name, rdtype="A", transport="udp", timeout=3.0):
    """harness.ask, with dotward's stderr in the message when nothing came back."""
    try:
        return harness.ask(d.addr, d.port, name, rdtype, transport=transport, timeout=timeout)
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, d.describe())) from None


def upstream_line(ctl, server):
    lines = [ln for ln in ctl.ok("status").splitlines() if ln.startswith("upstream: ") and
             (" addr=%s " % server) in ln]
    assert len(lines) == 1, "no single status line for upstream %s:\n%s" % (server, ctl.ok("status"))
    return dict(kv.split("=", 1) for kv in lines[0][len("upstream: "):].split(" ") if "=" in kv)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bound_socket(src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    return s


def closed_by_peer(sock, cap):
    """True when the peer closes or resets within `cap` s (data before that is read and dropped)."""
    deadline = time.monotonic() + cap
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except BlockingIOError:
            pass


class ScriptedDot:
    """A port-853 peer in this process, one thread per connection.

    mode:
      silent           accept TCP and never send a byte (the TLS handshake never ends)
      soa-then-silent  TLS; answer SOA queries (the probe's), never anything else
      soa-then-reset   TLS; answer SOA queries; any other query: reset the
                       connection (SO_LINGER 0, then close: a TCP RST)
    Records connections, SOA answers and the other queries' names. Bounded:
    at most 64 connections held, each at most 30 s."""

    MAX_CONNS = 64
    LIFETIME = 30.0

    def __init__(self, addr, mode, cert=None, key=None):
        self.addr, self.mode = addr, mode
        self.connections = 0
        self.soa_answered = 0
        self.others = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = []
        self._threads = []
        self._ls = None
        self._ctx = None
        if mode != "silent":
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(cert, key)

    def start(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.addr, DOT_PORT))
        ls.listen(64)
        ls.settimeout(0.1)
        self._ls = ls
        t = threading.Thread(target=self._accept_loop, name="dot-%s" % self.addr, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(3)
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass
            self._conns = []
        if self._ls is not None:
            self._ls.close()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
                if len(self._conns) > self.MAX_CONNS:
                    self._conns.pop(0).close()
            if self.mode != "silent":
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                t.start()
                self._threads.append(t)

    def _serve(self, conn):
        """One TLS connection: each framed query goes to on_query(q, send,
        tls), which returns False to end the connection."""
        conn.settimeout(5)
        try:
            tls = self._ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._lock:
            self._conns.append(tls)
        send_lock = threading.Lock()  # answers may leave from timer threads too

        def send(wire):
            with send_lock:
                try:
                    tls.sendall(struct.pack("!H", len(wire)) + wire)
                except (OSError, ssl.SSLError, ValueError):
                    pass

        tls.settimeout(0.2)
        buf = b""
        end = time.monotonic() + self.LIFETIME
        try:
            while not self._stop.is_set() and time.monotonic() < end:
                try:
                    chunk = tls.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    n = struct.unpack("!H", buf[:2])[0]
                    wire, buf = buf[2:2 + n], buf[2 + n:]
                    if not self.on_query(dns.message.from_wire(wire), send, tls):
                        return
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            self.connection_done(tls)

    def on_query(self, q, send, tls):
        if q.question[0].rdtype == dns.rdatatype.SOA:
            send(dns.message.make_response(q).to_wire())
            with self._lock:
                self.soa_answered += 1
            return True
        with self._lock:
            self.others.append(q.question[0].name.to_text().lower())
        if self.mode == "soa-then-reset":
            tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tls.close()
            return False
        return True

    def connection_done(self, tls):
        pass


# ---------------------------------------------------------------------------
# 1. reload while a strict upstream's DoT handshake is waiting

STRICT_CHANGES = {
    # variant: (options before, options after)
    "name": ("tls=strict name=%s ca={ca}" % AUTH_NAME, "tls=strict name=other.regress.test ca={ca}"),
    "ca": ("tls=strict name=%s ca={ca}" % AUTH_NAME, "tls=strict name=%s ca={ca2}" % AUTH_NAME),
    "tls": ("tls=strict name=%s ca={ca}" % AUTH_NAME, "tls=off"),
}

STRICT_CONF = """[server]
listen = {listen}
[forward]
upstream = %s %s
upstream = fine.regress=%s tls=off
timeout = 2s
attempt-timeout = 1500ms
"""


@pytest.mark.parametrize("change", sorted(STRICT_CHANGES))
def test_reload_changes_strict_upstream_while_dot_try_waits(change, need_dot, dotward, fake, test_ca):
    """A query waits on a DoT handshake that never ends; a reload changes
    that upstream's name=/ca=/tls=. The client gets SERVFAIL within
    `timeout`, dotward keeps serving and exits 0 with a clean stderr."""
    addr = dot_addr()
    server = "%s:%d" % (addr, free_port(addr))  # nothing listens there: tls=off gets no answer
    silent = ScriptedDot(addr, "silent").start()
    ok = fake()
    before, after = (s.format(**test_ca) for s in STRICT_CHANGES[change])
    conf = STRICT_CONF % (server, "%s", ok.server)
    try:
        d = dotward(config=conf % before)
        q = harness.make_query("www.strict.test.", "A")
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            c.connect((d.addr, d.port))
            t0 = time.monotonic()
            c.send(q.to_wire())
            assert wait_until(lambda: silent.connections >= 1, 1.5), \
                "dotward never connected to %s:853\n%s" % (addr, d.describe())
            mark = reload(d, fill(conf % after, d))
            assert d.wait_log("reload", 5, after=mark), "no reload line\n" + d.describe()
            c.settimeout(max(0.1, t0 + 2.0 + 1.5 - time.monotonic()))
            try:
                raw = c.recv(65535)
            except (socket.timeout, ConnectionRefusedError):
                raw = None
            took = time.monotonic() - t0
        finally:
            c.close()
        assert raw is not None, "the waiting client got no answer (timeout = 2s) after a reload " \
            "changing %s\n%s" % (change, d.describe())
        r = dns.message.from_wire(raw)
        assert r.id == q.id and rcode_text(r) == "SERVFAIL", "expected SERVFAIL, got %s" % r
        assert took <= 3.5, "SERVFAIL after %.2f s (timeout = 2s)" % took
        assert d.wait_log("reloaded", 3, after=mark), "the reload did not succeed\n" + d.describe()
        # still serving, through the other upstream
        name = "www.fine.regress."
        r = ask(d, name, "A", timeout=3)
        assert rrset_values(r, "A") == [fake_a(ok.tag, name)], r
        assert d.alive(), d.describe()
    finally:
        silent.stop()


# ---------------------------------------------------------------------------
# 2. a failed reload keeps the running TLS policy

def test_failed_reload_keeps_strict_tls(need_dot, dotward, ctl_bin, sockdir, test_ca, tmp_path):  # noqa: F811
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            s.bind((UNBINDABLE, 5353))
    finally:
        s.close()
    addr = dot_addr()
    port = free_port(addr)
    # Plain DNS on addr:port records every query; DoT on addr:853 is NSD with
    # a certificate for AUTH_NAME from the test CA. NSD answers www.test. with
    # WWW_A, the scripted upstream with 10.<tag>.x.y: the answer says who.
    plain = FakeUpstream(addr, 251, port=port).start()
    nsd_dir = tmp_path / "nsd"
    os.makedirs(str(nsd_dir))
    for f in ("key", "cert"):
        with open(test_ca[f]) as src, open(str(nsd_dir / (f + ".pem")), "w") as dst:
            dst.write(src.read())
    nsd = None
    sock = os.path.join(sockdir, "ctl.sock")
    server = "%s:%d" % (addr, port)
    conf = ("[server]\nlisten = {listen}\n%scontrol-socket = %s\n[forward]\nupstream = %s %s\ntimeout = 2s\n")
    strict = "tls=strict name=%s ca=%s" % (AUTH_NAME, test_ca["ca"])
    try:
        nsd = DotNsd(str(nsd_dir), addr, port, do53=False)
        assert nsd.cert == str(nsd_dir / "cert.pem")
        nsd.start()
        d = dotward(config=conf % ("", sock, server, strict))
        ctl = ctl_for(d, ctl_bin, sock)
        r = ask(d, "www.test.", "A", timeout=3)
        assert rrset_values(r, "A") == [WWW_A], "no answer over strict DoT: %s\n%s" % (r, d.describe())
        assert plain.count() == 0, plain.queries()
        assert upstream_line(ctl, server)["tls"] == "strict"

        bad = conf % ("listen = %s:5353\n" % UNBINDABLE, sock, server, "tls=off")
        mark = reload(d, fill(bad, d))
        assert d.wait_log("reload failed", 5, after=mark), "the reload did not fail\n" + d.describe()
        assert "reloaded" not in d.stderr()[mark:], d.describe()
        assert upstream_line(ctl, server)["tls"] == "strict", \
            "a failed reload changed the TLS policy: %s" % ctl.ok("status")
        for transport in ("udp", "tcp", "udp"):
            r = ask(d, "www.test.", "A", transport=transport, timeout=3)
            assert rrset_values(r, "A") == [WWW_A], "answered by the plain server: %s" % r
        assert plain.count() == 0, "after a failed reload, queries went in cleartext: %s" % plain.queries()
        assert d.alive()
    finally:
        plain.stop()
        if nsd is not None:
            nsd.stop()


# ---------------------------------------------------------------------------
# 3. a reload drops an upstream while a TCP query waits on it

def test_reload_drops_upstream_with_tcp_query_in_flight(dotward, fake):
    old = fake(delay=1.0)
    new = fake()
    conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s tls=off\n"
            "timeout = 3s\nattempt-timeout = 2s\n")
    d = dotward(config=conf % old.server)
    name = "slow.regress."
    q = harness.make_query(name, "A")
    c = socket.create_connection((d.addr, d.port), timeout=3)
    try:
        c.sendall(harness.tcp_frame(q.to_wire()))
        t0 = time.monotonic()
        assert wait_until(lambda: old.count("tcp") >= 1, 2), \
            "the query never reached the old upstream over TCP: %s\n%s" % (old.queries(), d.describe())
        mark = reload(d, fill(conf % new.server, d))
        assert d.wait_log("reloaded", 5, after=mark), d.describe()
        c.settimeout(max(0.1, t0 + 3.0 + 1.5 - time.monotonic()))
        raw = harness.tcp_recv_msg(c)
    finally:
        c.close()
    assert raw is not None, "the TCP client got nothing back\n" + d.describe()
    r = dns.message.from_wire(raw)
    assert r.id == q.id, r
    assert rcode_text(r) == "SERVFAIL" or rrset_values(r, "A") == [fake_a(old.tag, name)], r
    time.sleep(0.2)
    assert d.alive(), "dotward died after the answer of a dropped upstream\n" + d.describe()
    # the next queries go to the new upstream
    for transport in ("tcp", "udp"):
        nm = "next-%s.regress." % transport
        r = ask(d, nm, "A", transport=transport, timeout=3)
        assert rrset_values(r, "A") == [fake_a(new.tag, nm)], r
    assert old.count() == 1, old.queries()
    assert d.alive(), d.describe()


# ---------------------------------------------------------------------------
# 4. EMFILE at accept

def test_emfile_does_not_spin_and_listener_recovers(dotward, fake):
    up = fake()
    d = dotward([up.server + " tls=off"])
    pid = d.proc.pid
    # Like `prlimit --nofile=32:32` around the command, applied once it runs
    # (the limit is not raised back: that takes more than root in a container).
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (32, 32))
    held = []
    try:
        for _ in range(40):  # the kernel queues what dotward cannot accept
            held.append(socket.create_connection((d.addr, d.port), timeout=2))
        time.sleep(0.3)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(2.0)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        fds = len(os.listdir("/proc/%d/fd" % pid))
        share = (c1 - c0) / (t1 - t0)
        assert share < 0.15, "dotward used %.0f%% of a core for 2 s with 40 TCP clients and a " \
            "limit of 32 descriptors (%d open)" % (share * 100, fds)
    finally:
        for s in held:
            s.close()
    # descriptors are back: the listener serves again
    name = "back.regress."
    t0 = time.monotonic()
    r = ask(d, name, "A", transport="tcp", timeout=3)
    assert rrset_values(r, "A") == [fake_a(up.tag, name)], r
    assert time.monotonic() - t0 < 3
    assert d.alive(), d.describe()


# ---------------------------------------------------------------------------
# 5. slow TCP clients, non-readers, and refused sources

def trickle(sock, data, period, stop, closed, i):
    """Sends `data` one byte every `period` s; records when the peer closed."""
    for b in data:
        if stop.is_set():
            return
        try:
            sock.send(bytes([b]))
        except OSError:
            closed[i] = time.monotonic()
            return
        if closed_by_peer(sock, period):
            closed[i] = time.monotonic()
            return


def test_full_tcp_table_evicts_slow_clients(dotward, fake, ctl_bin, sockdir):  # noqa: F811
    """tcp-clients = 4, taken by four clients (four sources) that send one
    byte every 1.5 s. A fifth client is answered at once; the slow ones are
    closed once their message is not whole tcp-io-timeout after its first byte."""
    up = fake()
    sock = os.path.join(sockdir, "ctl.sock")
    d = dotward(config="[server]\nlisten = {listen}\nallow = 127.0.0.0/8\ntcp-clients = 4\n"
                       "tcp-io-timeout = 2s\ntcp-idle-timeout = 30s\ncontrol-socket = %s\n"
                       "[forward]\nupstream = %s tls=off\n" % (sock, up.server))
    ctl = ctl_for(d, ctl_bin, sock)
    assert wait_until(lambda: ctl.stats()["tcp_clients"] == 0, 3)
    stop = threading.Event()
    closed = [None] * 4
    slow, threads = [], []
    try:
        frame = harness.tcp_frame(harness.make_query("slow.regress.", "A").to_wire())
        for i in range(4):
            s = bound_socket("127.0.0.%d" % (i + 2))
            s.settimeout(3)
            s.connect((d.addr, d.port))
            slow.append(s)
        started = time.monotonic()
        for i, s in enumerate(slow):
            t = threading.Thread(target=trickle, args=(s, frame, 1.5, stop, closed, i), daemon=True)
            t.start()
            threads.append(t)
        assert wait_until(lambda: ctl.stats()["tcp_clients"] == 4, 2), ctl.stats()

        name = "fifth.regress."
        q = harness.make_query(name, "A")
        c = bound_socket("127.0.0.6")
        try:
            c.settimeout(3)
            t0 = time.monotonic()
            c.connect((d.addr, d.port))
            c.sendall(harness.tcp_frame(q.to_wire()))
            raw = harness.tcp_recv_msg(c)
            took = time.monotonic() - t0
        finally:
            c.close()
        assert raw is not None, "with tcp-clients taken by 4 slow clients, a fifth got no answer\n" + \
            d.describe()
        r = dns.message.from_wire(raw)
        assert r.id == q.id and rrset_values(r, "A") == [fake_a(up.tag, name)], r
        assert took < 2.5, "the fifth client waited %.2f s" % took
        assert wait_until(lambda: all(closed), 6), \
            "slow clients still open %.1f s after they started (tcp-io-timeout = 2s): %s" % (
                time.monotonic() - started, ["open" if x is None else "%.1f s" % (x - started) for x in closed])
    finally:
        stop.set()
        for t in threads:
            t.join(3)
        for s in slow:
            s.close()


def test_non_reading_tcp_client_is_closed(dotward, nsd, ctl_bin, sockdir):  # noqa: F811
    """64 queries for big.test. (about 3.4 KB each) on one connection whose
    owner never reads: once the answers stop moving for tcp-io-timeout,
    dotward closes it (tcp-idle-timeout is far away)."""
    sock = os.path.join(sockdir, "ctl.sock")
    d = dotward(config="[server]\nlisten = {listen}\ntcp-io-timeout = 2s\ntcp-idle-timeout = 60s\n"
                       "control-socket = %s\n[forward]\nupstream = %s:%d tls=off\n" % (sock, nsd.addr, nsd.port))
    ctl = ctl_for(d, ctl_bin, sock)
    assert wait_until(lambda: ctl.stats()["tcp_clients"] == 0, 3)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Small receive buffer and segments, so that the kernel cannot take
        # all the answers off dotward's hands: they stay queued there.
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        c.settimeout(3)
        c.connect((d.addr, d.port))
        c.sendall(b"".join(harness.tcp_frame(harness.make_query("big.test.", "TXT", qid=i + 1).to_wire())
                           for i in range(64)))
        t0 = time.monotonic()
        assert wait_until(lambda: ctl.stats()["tcp_clients"] == 1, 1.5), ctl.stats()
        assert wait_until(lambda: ctl.stats()["queries_tcp"] >= 2, 2), ctl.stats()
        gone = wait_until(lambda: ctl.stats()["tcp_clients"] == 0, 8)
        took = time.monotonic() - t0
        st = ctl.stats()
        assert gone, "a client that never reads is still open %.1f s later (tcp-io-timeout = 2s): %s" % (
            took, st)
        assert closed_by_peer(c, 3), "the client saw no EOF or reset after dotward dropped it"
    finally:
        c.close()
    assert ask(d, "www.test.", "A", transport="tcp", timeout=3)


def test_refused_tcp_sources_closed_at_accept(dotward, fake, ctl_bin, sockdir):  # noqa: F811
    """allow = 127.0.0.1/32, tcp-clients = 2: ten connections from 127.0.0.2
    are closed at accept, counted as refused, and take no slot: a client
    from 127.0.0.1 is answered at once."""
    up = fake()
    sock = os.path.join(sockdir, "ctl.sock")
    d = dotward(config="[server]\nlisten = {listen}\nallow = 127.0.0.1/32\ntcp-clients = 2\n"
                       "tcp-idle-timeout = 30s\ncontrol-socket = %s\n[forward]\nupstream = %s tls=off\n"
                % (sock, up.server))
    ctl = ctl_for(d, ctl_bin, sock)
    assert wait_until(lambda: ctl.stats()["tcp_clients"] == 0, 3)
    s0 = ctl.stats()
    held = []
    try:
        t0 = time.monotonic()
        for _ in range(10):
            s = bound_socket("127.0.0.2")
            s.settimeout(3)
            s.connect((d.addr, d.port))
            held.append(s)
        time.sleep(0.2)
        name = "allowed.regress."
        c = bound_socket("127.0.0.1")
        try:
            c.settimeout(2)
            c.connect((d.addr, d.port))
            q = harness.make_query(name, "A")
            c.sendall(harness.tcp_frame(q.to_wire()))
            raw = harness.tcp_recv_msg(c)
        finally:
            c.close()
        assert raw is not None, "an allowed client got no TCP answer while 10 refused connections " \
            "were held (tcp-clients = 2): %s\n%s" % (ctl.stats(), d.describe())
        r = dns.message.from_wire(raw)
        assert r.id == q.id and rrset_values(r, "A") == [fake_a(up.tag, name)], r
        still_open = [i for i, s in enumerate(held) if not closed_by_peer(s, max(0.1, t0 + 2.5 - time.monotonic()))]
        assert not still_open, "refused connections not closed by dotward: %s" % still_open
    finally:
        for s in held:
            s.close()
    s1 = ctl.stats()
    assert s1["refused_acl"] - s0["refused_acl"] == 10, (s0, s1)
    assert up.count() == 1, up.queries()


# ---------------------------------------------------------------------------
# 6. counting DoT failures

DOT_CONF = """[server]
listen = {listen}
[forward]
upstream = %s
timeout = 2s
attempt-timeout = 300ms
[probe]
probe-on-start = yes
probe-timeout = 2s
"""


@pytest.fixture
def good_then(need_dot, dotward, ctl_bin, sockdir, tmp_path):  # noqa: F811
    """good_then(mode) -> (dotward, Ctl, ScriptedDot, FakeUpstream): an
    opportunistic upstream whose 853 is a ScriptedDot that passed its probe
    (Good), and whose plain port is a scripted upstream on the same IP."""
    made = []

    def start(mode):
        addr = dot_addr()
        key, cert = make_cert(str(tmp_path))
        dot = ScriptedDot(addr, mode, cert, key).start()
        made.append(dot)
        plain = FakeUpstream(addr, 252, port=free_port(addr)).start()
        made.append(plain)
        sock = os.path.join(sockdir, "ctl.sock")
        d = dotward(config=DOT_CONF % plain.server, args=["--control", sock])
        ctl = ctl_for(d, ctl_bin, sock)
        assert wait_until(lambda: (ctl.entry(addr) or {}).get("status") == "good", 5), \
            "%s never became Good: %s\n%s" % (addr, ctl.entry(addr), d.describe())
        assert dot.soa_answered >= 1
        return d, ctl, dot, plain

    yield start
    for m in made:
        m.stop()


def fallbacks(st):
    return sum(v for k, v in st.items() if k.startswith("fallback_")), st.get("dot_fallbacks")


def ask_falls_back(d, dot, plain, name):
    r = ask(d, name, "A", timeout=3)
    assert rrset_values(r, "A") == [fake_a(plain.tag, name)], r
    assert dot.others == [name], "the query did not go over DoT first: %s" % dot.others
    assert plain.names() == [name], plain.queries()


def test_dot_query_timeout_counts_one_fallback(good_then):
    d, ctl, dot, plain = good_then("soa-then-silent")
    s0 = ctl.stats()
    assert fallbacks(s0) == (0, 0), s0
    ask_falls_back(d, dot, plain, "timeout.regress.")
    s1 = ctl.stats()
    table, total = fallbacks(s1)
    assert table == 1 and total == 1, \
        "one DoT query timeout, one query sent again over Do53: sum of fallback_* = %d, dot_fallbacks = %d" % (
            table, total)


def test_dot_reset_recorded_as_reset(good_then):
    d, ctl, dot, plain = good_then("soa-then-reset")
    ask_falls_back(d, dot, plain, "reset.regress.")
    e = ctl.entry(dot.addr)
    assert e["last_outcome"] == "reset", "a connection reset recorded as %r: %s" % (e["last_outcome"], e)
    table, total = fallbacks(ctl.stats())
    assert table == 1 and total == 1, (table, total)
