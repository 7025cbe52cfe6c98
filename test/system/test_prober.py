"""System check of probe/prober.c and lib/tls_wolfssl.c against real servers.

Every server listens on 127.77.N.x (N from the pid, so parallel runs do not
collide) or inside a network namespace this file creates; nothing leaves the
host. Needs root (port 853, ip netns, nft) and the probe_cli binary
(PROBE_CLI, set by scripts/test). Run: /usr/bin/python3 -m pytest test/system/test_prober.py -q
"""
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import dns.message
import dns.rcode
import pytest

PROBE_CLI = os.environ.get("PROBE_CLI", "build/test/system/probe_cli")
NET = "127.77.%d." % (os.getpid() % 250 + 1)
TIMEOUT = 1.0  # the probe timeout used throughout

ZONE = """$ORIGIN test.
$TTL 300
@   IN SOA ns1.test. admin.test. 1 3600 600 86400 300
@   IN NS  ns1.test.
ns1 IN A   {ip}
www IN A   192.0.2.80
"""

NSD_CONF = """server:
  ip-address: {ip}@53
  ip-address: {ip}@853
  tls-port: 853
  tls-service-key: "{d}/key.pem"
  tls-service-pem: "{d}/cert.pem"
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  rrl-ratelimit: 0
  do-ip6: no
  verbosity: 2
  zonesdir: "{d}/zones"
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  pidfile: "{d}/nsd.pid"
  logfile: "{d}/nsd.log"
remote-control:
  control-enable: no
zone:
  name: "test."
  zonefile: "test.zone"
"""

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def ip(n):
    return NET + str(n)


def run_probe(*args, ns=None, count=1, extra_time=3.0, raw=False):
    """Runs probe_cli; returns a list of dicts, one per probe line (and,
    with raw=True, the other output lines too)."""
    cmd = [PROBE_CLI, "-t", str(TIMEOUT)] + list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=count * (TIMEOUT + 1) + extra_time)
    wall = time.monotonic() - t0
    for mark in SANITIZER_MARKS:
        assert mark not in p.stderr, p.stderr
    assert p.returncode == 0, "rc=%d stdout=%s stderr=%s" % (p.returncode, p.stdout, p.stderr)
    res, other = [], []
    for line in p.stdout.splitlines():
        m = re.match(r"probe \d+: (.*)$", line)
        if not m:
            other.append(line)
            continue
        d = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(1)))
        d = {k: v.strip('"') for k, v in d.items()}
        d["wall"] = wall
        res.append(d)
    assert len(res) == count, p.stdout
    if raw:
        return res, other
    assert not other, p.stdout
    return res


@pytest.fixture(scope="module")
def certdir():
    if os.geteuid() != 0:
        pytest.fail("these tests need root (port 853, ip netns)")
    assert os.access(PROBE_CLI, os.X_OK), "PROBE_CLI=%s not built" % PROBE_CLI
    d = tempfile.mkdtemp(prefix="dotward-dot-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/key.pem",
                    "-out", d + "/cert.pem", "-days", "30", "-subj", "/CN=dot.test",
                    "-addext", "subjectAltName=DNS:dot.test"],
                   check=True, capture_output=True)
    # An unrelated CA: the server's chain must not verify against it.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/other-key.pem",
                    "-out", d + "/other.pem", "-days", "30", "-subj", "/CN=other.test"],
                   check=True, capture_output=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def nsd(certdir):
    d = certdir
    os.makedirs(d + "/zones", exist_ok=True)
    with open(d + "/zones/test.zone", "w") as f:
        f.write(ZONE.format(ip=ip(1)))
    with open(d + "/nsd.conf", "w") as f:
        f.write(NSD_CONF.format(ip=ip(1), d=d))
    proc = subprocess.Popen(["nsd", "-d", "-c", d + "/nsd.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # ready when 853 accepts
            try:
                socket.create_connection((ip(1), 853), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, open(d + "/nsd.log").read()
                assert time.monotonic() < deadline, "nsd did not start"
                time.sleep(0.05)
        yield ip(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TLSServer:
    """A scripted TLS server on IP:853. behaviour(conn, query_bytes) decides."""

    def __init__(self, certdir, addr, behaviour, tls_max=None, tls_min=None,
                 alpn=None, handshake=True):
        self.addr, self.behaviour, self.handshake = addr, behaviour, handshake
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certdir + "/cert.pem", certdir + "/key.pem")
        if tls_max:
            self.ctx.maximum_version = tls_max
        if tls_min:
            self.ctx.minimum_version = tls_min
        if alpn:
            self.ctx.set_alpn_protocols(alpn)
        self.sni = []
        self.alpn_seen = []
        self.ctx.sni_callback = lambda s, name, c: self.sni.append(name)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 853))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = False
        self.conns = []
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            if not self.handshake:
                time.sleep(TIMEOUT + 2)  # accept and never speak
                return
            c.settimeout(TIMEOUT + 2)
            s = self.ctx.wrap_socket(c, server_side=True)
            self.conns.append(s)
            self.alpn_seen.append(s.selected_alpn_protocol())
            hdr = recv_exact(s, 2)
            q = recv_exact(s, struct.unpack("!H", hdr)[0])
            self.behaviour(s, q)
        except (OSError, ssl.SSLError, ValueError):
            pass

    def close(self):
        self.stop = True
        self.sock.close()
        self.t.join(timeout=2)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise ValueError("closed")
        b += chunk
    return b


def send_framed(s, wire):
    s.sendall(struct.pack("!H", len(wire)) + wire)


def answer_ok(s, q):
    m = dns.message.from_wire(q)
    r = dns.message.make_response(m)
    r.set_rcode(dns.rcode.NXDOMAIN)
    send_framed(s, r.to_wire())
    time.sleep(0.3)


def answer_garbage(s, q):
    send_framed(s, b"\x13\x37 this is not a DNS message at all")
    time.sleep(0.3)


def answer_wrong_id(s, q):
    m = dns.message.from_wire(q)
    r = dns.message.make_response(m)
    r.id = (m.id + 1) & 0xFFFF
    send_framed(s, r.to_wire())
    time.sleep(0.3)


def answer_other_question(s, q):
    m = dns.message.from_wire(q)
    other = dns.message.make_query("other.example.", "A")
    other.id = m.id
    send_framed(s, dns.message.make_response(other).to_wire())
    time.sleep(0.3)


def answer_never(s, q):
    time.sleep(TIMEOUT + 1.5)


def answer_close(s, q):
    s.close()


@pytest.fixture
def tls_server(certdir):
    servers = []

    def make(n, behaviour, **kw):
        srv = TLSServer(certdir, ip(n), behaviour, **kw)
        servers.append(srv)
        return srv
    yield make
    for s in servers:
        s.close()


# ---- NSD: the real thing -------------------------------------------------

def test_nsd_ok_tls13(nsd):
    r, = run_probe("-z", "test", nsd)
    assert r["outcome"] == "ok" and r["status"] == "good", r
    assert r["version"] == "TLSv1.3"
    assert r["cipher"].startswith("TLS13-") and ("GCM" in r["cipher"] or "CHACHA" in r["cipher"])
    assert r["rcode"] == "0"  # NOERROR: the SOA of test. was answered
    assert r["verified"] == "0"  # self-signed, no CA given: recorded, not enforced


def test_nsd_answer_any_rcode_is_ok(nsd):
    r, = run_probe("-z", "not-served.example", nsd)
    assert r["outcome"] == "ok" and r["rcode"] == "5", r  # REFUSED still proves DoT


def test_nsd_verified_with_ca(nsd, certdir):
    r, = run_probe("-z", "test", "-c", certdir + "/cert.pem", nsd)
    assert r["outcome"] == "ok" and r["verified"] == "1", r


def test_nsd_wrong_ca_recorded_not_enforced(nsd, certdir):
    r, = run_probe("-z", "test", "-c", certdir + "/other.pem", nsd)
    assert r["outcome"] == "ok" and r["verified"] == "0", r


def test_strict_ok_sends_sni(tls_server, certdir):
    srv = tls_server(13, answer_ok, alpn=["dot"])
    r, = run_probe("-S", "dot.test", "-c", certdir + "/cert.pem", ip(13))
    assert r["outcome"] == "ok" and r["verified"] == "1" and r["alpn"] == "dot", r
    assert srv.sni == ["dot.test"]


def test_strict_wrong_name(nsd, certdir):
    r, = run_probe("-z", "test", "-S", "wrong.test", "-c", certdir + "/cert.pem", nsd)
    assert r["outcome"] == "tls-failed" and "mismatch" in r["reason"], r


def test_strict_untrusted(nsd, certdir):
    r, = run_probe("-z", "test", "-S", "dot.test", "-c", certdir + "/other.pem", nsd)
    assert r["outcome"] == "tls-failed" and "handshake" in r["reason"], r


def test_nsd_resumption(nsd):
    a, b = run_probe("-z", "test", "-n", "2", nsd, count=2)
    assert a["outcome"] == "ok" and a["resumed"] == "0", a
    assert b["outcome"] == "ok" and b["resumed"] == "1", b


def test_adopted_connection_usable(nsd):
    # The probe's connection is handed over (prober_set_adopt_cb) and still
    # carries a second query: the lead's pool may adopt it.
    (r,), other = run_probe("-z", "test", "-a", nsd, raw=True)
    assert r["outcome"] == "ok", r
    assert other == ["adopted: answer id=16962 rcode=0"], other


def test_stop_with_probe_running_frees_cleanly(tls_server):
    tls_server(14, None, handshake=False)
    res, other = run_probe("-x", "0.3", ip(14), count=0, raw=True)
    assert other == ["stopped: status=busy running=1", "after free: status=unknown"], other


def test_forget_cancels_running_probe(tls_server):
    tls_server(15, None, handshake=False)
    res, other = run_probe("-x", "0.3", "-F", ip(15), count=0, raw=True)
    assert other == ["stopped: status=busy running=1", "forgotten: entries=0 running=0",
                     "after free: status=-"], other


# ---- failures --------------------------------------------------------------

def test_connect_refused(certdir):
    r, = run_probe(ip(6))  # nothing listens there
    assert r["outcome"] == "connect-refused" and r["status"] == "bad", r
    assert "refused" in r["reason"].lower()
    assert float(r["elapsed"]) < 0.5


def test_silent_listener_tls_failed(tls_server):
    tls_server(2, None, handshake=False)
    r, = run_probe(ip(2))
    assert r["outcome"] == "tls-failed", r
    assert "handshake not done" in r["reason"]
    assert TIMEOUT - 0.05 <= float(r["elapsed"]) < TIMEOUT + 0.5, r


def test_garbage_answer(tls_server):
    tls_server(3, answer_garbage)
    r, = run_probe(ip(3))
    assert r["outcome"] == "bad-answer" and r["status"] == "bad", r
    assert r["version"] == "TLSv1.3"


def test_wrong_id(tls_server):
    tls_server(8, answer_wrong_id)
    r, = run_probe(ip(8))
    assert r["outcome"] == "bad-answer" and "ID" in r["reason"], r


def test_other_question(tls_server):
    tls_server(10, answer_other_question)
    r, = run_probe(ip(10))
    assert r["outcome"] == "bad-answer" and "question" in r["reason"], r


def test_no_answer_query_timeout(tls_server):
    tls_server(4, answer_never)
    r, = run_probe(ip(4))
    assert r["outcome"] == "query-timeout", r
    assert TIMEOUT - 0.05 <= float(r["elapsed"]) < TIMEOUT + 0.5, r


def test_closed_before_answer(tls_server):
    tls_server(7, answer_close)
    r, = run_probe(ip(7))
    assert r["outcome"] == "bad-answer" and "no answer" in r["reason"], r
    assert float(r["elapsed"]) < TIMEOUT


# ---- TLS parameters ----------------------------------------------------------

def test_alpn_dot_and_no_sni(tls_server):
    srv = tls_server(11, answer_ok, alpn=["dot"])
    r, = run_probe("-z", "example.org", ip(11))
    assert r["outcome"] == "ok" and r["alpn"] == "dot" and r["rcode"] == "3", r
    assert srv.alpn_seen == ["dot"]
    assert srv.sni == [None]  # RFC 9539 §4.6.3.3: no SNI


def test_alpn_mismatch_continues(tls_server):
    tls_server(12, answer_ok, alpn=["h2"])
    r, = run_probe(ip(12))
    assert r["outcome"] == "ok" and r["alpn"] == "-", r


def test_tls12_server(tls_server):
    tls_server(5, answer_ok, tls_max=ssl.TLSVersion.TLSv1_2)
    r, = run_probe(ip(5))
    assert r["outcome"] == "ok" and r["version"] == "TLSv1.2", r
    assert r["cipher"].startswith("ECDHE-ECDSA-") and ("GCM" in r["cipher"] or "CHACHA" in r["cipher"]), r


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_server_refused(tls_server):
    # The server offers TLS 1.0-1.1 only (a client with a lower minimum does
    # connect to it: checked by hand with SetMinVersion(TLSV1_1)).
    srv = tls_server(9, answer_ok, tls_max=ssl.TLSVersion.TLSv1_1, tls_min=ssl.TLSVersion.TLSv1)
    srv.ctx.set_ciphers("ALL:@SECLEVEL=0")
    r, = run_probe(ip(9))
    assert r["outcome"] == "tls-failed", r
    assert "handshake" in r["reason"]


# ---- black hole: SYN dropped in a namespace of our own -------------------------

def test_blackhole_connect_timeout():
    if os.geteuid() != 0:
        pytest.fail("needs root for ip netns")
    ns = "dotw-bh-%d" % os.getpid()
    sh = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=10)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "dotw")
        sh("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "dotw", "input",
           "{ type filter hook input priority 0; }")
        sh("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "dotw", "input",
           "tcp", "dport", "853", "drop")
        r, = run_probe("127.0.0.1", ns=ns)
        assert r["outcome"] == "connect-timeout", r
        assert "no connection" in r["reason"]
        assert TIMEOUT - 0.05 <= float(r["elapsed"]) < TIMEOUT + 0.5, r
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
