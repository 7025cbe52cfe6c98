"""Messages that must pass through dotward unchanged, against real servers.

- TSIG-signed queries (kdig -y) to knot over UDP, TCP and DoT: the server's
  signed answer comes back and verifies; a wrong secret gets BADSIG from knot
  directly and through dotward alike. knot 3.2 has no DoT, so the DoT leg
  goes to dnsdist on 853 in front of knot, in a namespace lab (dotlab) where
  nft drops the client's port 53.
- A signed query reaches a scripted upstream byte for byte (but the ID): no
  EDNS size rewrite, its padding option kept (it is under the signature).
- NOTIFY through dotward to a knot secondary makes it refresh from its
  primary: sent by dnspython over UDP and TCP, and sent by a knot primary
  whose `notify:` remote is dotward.
- UPDATE signed with a TSIG key through dotward to BIND adds the record; the
  same unsigned is REFUSED directly and through dotward.
- Every error reply dotward makes to an EDNS query carries an OPT.
- Per-hop EDNS options (padding, edns-tcp-keepalive) never reach a plain
  upstream; other options do.

Loopback only, except the DoT test (network namespaces with no link to the
host). Needs knotd/knotc/kdig, named, and for DoT root, ip, nft, dnsdist,
openssl; a missing program skips the tests that need it.
"""
import base64
import itertools
import os
import re
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

import dotlab
import harness
from fakeupstream import fake_a
from harness import WWW_A, exchange, rrset_values

KEY_NAME = "wt-key."
ALG = "hmac-sha256"
SECRET = base64.b64encode(b"dotward-wire-passthrough-key-001").decode()
WRONG_SECRET = base64.b64encode(b"not-the-key-knot-and-bind-know!!").decode()
KEY = dns.tsig.Key(KEY_NAME, SECRET, ALG)
WRONG_KEY = dns.tsig.Key(KEY_NAME, WRONG_SECRET, ALG)
KEYS = {KEY_NAME: (ALG, SECRET)}

OPT_PADDING, OPT_KEEPALIVE, OPT_NSID = 12, 11, 3
NOTAUTH = 9
TRANSPORTS = ["udp", "tcp"]

# knot serves TSIG-signed queries only with keys that some ACL names.
KNOT_TSIG = harness.knot_tsig_section(KEYS) + (
    "acl:\n  - id: wt-key\n    key: %s\n    action: transfer\n" % KEY_NAME)
KNOT_TSIG_ZONE = "    acl: wt-key\n"


def srv(s):
    return "%s:%d" % (s.addr, s.port)


def kdig(server, port, name, rdtype="A", transport="udp", secret=SECRET, netns=None):
    """kdig with the TSIG key and EDNS 4096 (dotward's own size, 1232, put in
    would break the signature); returns its output (stdout + stderr). The
    server is always given, so kdig never looks at /etc/resolv.conf."""
    kd = harness.need("kdig")
    argv = [kd, "@%s" % server, "-p", str(port), "-y", "%s:%s:%s" % (ALG, KEY_NAME, secret),
            "+time=2", "+retry=0", "+bufsize=4096", name, rdtype]
    if transport == "tcp":
        argv.append("+tcp")
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
    return r.stdout + r.stderr


def kdig_status(out):
    m = re.search(r"status: (\w+)", out)
    return m.group(1) if m else None


def kdig_answer(out):
    """The answer section's records, TTL dropped."""
    m = re.search(r";; ANSWER SECTION:\n(.*?)\n\n", out, re.S)
    if not m:
        return []
    return [" ".join(ln.split()[:1] + ln.split()[2:]) for ln in m.group(1).splitlines() if ln.strip()]


def kdig_tsig_error(out):
    """The error field of the answer's TSIG record (NOERROR when it verified)."""
    m = re.search(r";; TSIG PSEUDOSECTION:\n(\S+\s+\d+\s+ANY\s+TSIG\s+.*)", out)
    return m.group(1).split()[-2] if m else None


def assert_signed_www(out, what):
    assert kdig_status(out) == "NOERROR", "%s: kdig status %s\n%s" % (what, kdig_status(out), out)
    assert kdig_answer(out) == ["www.test. IN A %s" % WWW_A], "%s: answer %s\n%s" % (
        what, kdig_answer(out), out)
    assert kdig_tsig_error(out) == "NOERROR", "%s: the answer is not signed\n%s" % (what, out)
    assert "WARNING" not in out, "%s: kdig could not verify the answer's TSIG\n%s" % (what, out)


def assert_badsig(out, what):
    assert kdig_status(out) == "BADSIG", "%s: kdig status %s, want BADSIG\n%s" % (
        what, kdig_status(out), out)
    assert kdig_tsig_error(out) == "BADSIG", "%s: TSIG error %s\n%s" % (what, kdig_tsig_error(out), out)


def signed_query(name, rdtype="A", key=KEY, **kw):
    q = harness.make_query(name, rdtype, **kw)
    q.use_tsig(key)
    return q


def must_exchange(addr, port, wire, transport, what, timeout=3.0):
    raw = exchange(addr, port, wire, transport, timeout)
    assert raw is not None and len(raw) >= 12, "%s: no %s answer from %s:%d within %.1fs" % (
        what, transport, addr, port, timeout)
    return raw


def raw_rcode(raw):
    return struct.unpack("!H", raw[2:4])[0] & 0xF


# --------------------------------------------------------------------------
# 1. TSIG-signed queries to knot

@pytest.fixture(scope="module")
def tsig_knot(tmp_path_factory):
    harness.need("knotd")
    addr = harness.ADDRS.take()
    s = harness.Knot(tmp_path_factory.mktemp("tsig-knot"), addr, harness.free_port(addr),
                     conf_extra=KNOT_TSIG, zone_extra=KNOT_TSIG_ZONE).start()
    yield s
    s.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tsig_query_to_knot(dotward, tsig_knot, transport):
    """kdig -y through dotward: NOERROR, the same answer as from knot
    directly, and a TSIG on the answer that kdig verifies."""
    d = dotward(upstreams=[srv(tsig_knot)])
    direct = kdig(tsig_knot.addr, tsig_knot.port, "www.test.", transport=transport)
    assert_signed_www(direct, "direct to knot over %s" % transport)
    s0 = d.stats()
    via = kdig(d.addr, d.port, "www.test.", transport=transport)
    assert_signed_www(via, "through dotward over %s" % transport)
    assert kdig_answer(via) == kdig_answer(direct)
    s1 = d.stats()
    leg = "upstream_" + transport
    assert s1[leg] - s0[leg] == 1, "the query did not go to knot over %s: %s -> %s" % (transport, s0, s1)

    # and dnspython, which refuses an answer whose TSIG does not verify
    q = signed_query("www.test.", edns=4096)
    raw = must_exchange(d.addr, d.port, q.to_wire(), transport, "signed query (dnspython)")
    r = dns.message.from_wire(raw, keyring=KEY, request_mac=q.mac)
    assert r.id == q.id and r.had_tsig and rrset_values(r, "A") == [WWW_A], r


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tsig_wrong_key_refused_alike(dotward, tsig_knot, transport):
    """Control: the key matters. With a wrong secret knot answers NOTAUTH,
    TSIG error BADSIG, directly and through dotward alike."""
    d = dotward(upstreams=[srv(tsig_knot)])
    direct = kdig(tsig_knot.addr, tsig_knot.port, "www.test.", transport=transport, secret=WRONG_SECRET)
    via = kdig(d.addr, d.port, "www.test.", transport=transport, secret=WRONG_SECRET)
    assert_badsig(direct, "direct to knot, wrong key, %s" % transport)
    assert_badsig(via, "through dotward, wrong key, %s" % transport)
    assert kdig_answer(via) == [] and kdig_answer(direct) == []
    for target in ((tsig_knot.addr, tsig_knot.port), (d.addr, d.port)):
        q = signed_query("www.test.", key=WRONG_KEY)
        raw = must_exchange(target[0], target[1], q.to_wire(), transport, "wrong key to %s:%d" % target)
        assert raw_rcode(raw) == NOTAUTH, "%s:%d over %s: rcode %d, want NOTAUTH" % (
            target + (transport, raw_rcode(raw)))
        assert struct.unpack("!H", raw[:2])[0] == q.id


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_signed_query_forwarded_byte_for_byte(dotward, fake, transport):
    """A signed query with EDNS 4096 and a padding option reaches the
    upstream unchanged but for the ID (dotward's own size, 1232, is not put
    in, the padding is not taken out: both are under the signature), and the
    upstream's signed answer verifies at the client."""
    f = fake()
    f.keyring = {dns.name.from_text(KEY_NAME): KEY}
    d = dotward(upstreams=[f.server])
    q = harness.make_query("signed.fake.", "A", edns=4096)
    q.use_edns(0, payload=4096, options=[dns.edns.GenericOption(OPT_PADDING, b"\0" * 24)])
    q.use_tsig(KEY)
    wire = q.to_wire()
    raw = must_exchange(d.addr, d.port, wire, transport, "signed query")
    got = f.queries()
    assert len(got) == 1 and got[0].transport == transport, (
        "the fake upstream did not accept (verify) the signed query: %s, unparsable %d\n%s" % (
            got, f.unparsable, d.describe()))
    assert got[0].wire[2:] == wire[2:], "changed on the way:\nsent     %s\narrived  %s" % (
        wire.hex(), got[0].wire.hex())
    r = dns.message.from_wire(raw, keyring=KEY, request_mac=q.mac)
    assert r.id == q.id and rrset_values(r, "A") == [fake_a(f.tag, "signed.fake")], r


@pytest.fixture(scope="module")
def dot_lab(tmp_path_factory):
    """192.0.2.21: knot (TSIG key) on 53, dnsdist with TLS on 853 in front of it."""
    if os.geteuid() != 0:
        pytest.skip("the DoT lab needs root (network namespaces)")
    for prog in ("ip", "nft", "knotd", "dnsdist", "openssl", "kdig"):
        harness.need(prog)
    lb = dotlab.Lab(tmp_path_factory.mktemp("wirelab"), kinds={21: "knot-dnsdist"},
                    knot_extras={21: (KNOT_TSIG, KNOT_TSIG_ZONE)})
    try:
        lb.up()
        yield lb
    finally:
        lb.down()


_lab_ports = itertools.count(5401)


@pytest.fixture
def lab_dotward(dot_lab, dotward_bin, tmp_path):
    """dotward in the lab's client namespace, forwarding to 192.0.2.21 and
    probing it at start. Must exit 0 on SIGTERM with a clean stderr."""
    started = []
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")

    def start():
        port = next(_lab_ports)
        text = ("[server]\nlisten = %s:%d\nallow = 192.0.2.0/24\nlog-level = debug\n"
                "[forward]\nupstream = %s\nresolv-conf = %s\ntimeout = 2.5s\nattempt-timeout = 800ms\n"
                "[probe]\nprobe-on-start = yes\nprobe-timeout = 1s\n" % (
                    dotlab.CLIENT_IP, port, dotlab.server_ip(21), resolv))
        d = dotlab.LabDotward(dot_lab, dotward_bin, tmp_path, (dotlab.CLIENT_IP, port), [], text,
                              name="dotward%d" % len(started))
        started.append(d)
        d.start()
        return d

    yield start
    problems = []
    for d in started:
        was_running = d.alive()
        try:
            rc = d.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if was_running and rc != 0:
            problems += ["dotward exited %s on SIGTERM" % rc, d.describe()]
        if harness.sanitizer_findings(d.stderr()):
            problems += ["sanitizer report in stderr", d.describe()]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_tsig_query_over_dot(dot_lab, lab_dotward):
    """Once 192.0.2.21 is Good, signed queries from UDP and TCP clients go
    over TLS (port 53 from the client namespace dropped by nft, its counter
    stays 0, dot_answers grows) and come back NOERROR with a verified TSIG;
    a wrong secret still gets BADSIG."""
    ip = dotlab.server_ip(21)
    d = lab_dotward()
    ok = harness.wait_until(lambda: "dot-probe: %s busy -> good" % ip in d.stderr(), cap=5)
    assert ok, "192.0.2.21 (dnsdist TLS in front of knot) never became Good\n%s\n%s" % (
        d.describe(), dot_lab.logs())
    cli = dot_lab.ns("cli")
    fw = dotlab.Nft(dot_lab, dot_lab.ns("s21"), [
        'ip saddr %s udp dport 53 counter drop comment "d53"' % dotlab.CLIENT_IP,
        'ip saddr %s tcp dport 53 counter drop comment "d53"' % dotlab.CLIENT_IP])
    try:
        s0 = d.stats()
        for transport in TRANSPORTS:
            out = kdig(d.addr, d.port, "www.test.", transport=transport, netns=cli)
            assert_signed_www(out, "over DoT, client on %s" % transport)
        out = kdig(d.addr, d.port, "www.test.", transport="tcp", secret=WRONG_SECRET, netns=cli)
        assert_badsig(out, "over DoT, wrong key")
        s1 = d.stats()
        assert s1["dot_answers"] - s0["dot_answers"] >= 3, (s0, s1, d.describe())
        assert s1["upstream_udp"] == s0["upstream_udp"] and s1["upstream_tcp"] == s0["upstream_tcp"]
        assert fw.counters().get("d53", 0) == 0, "Do53 packets reached 192.0.2.21: %s" % fw.counters()
        # the rule does catch the client namespace's Do53 (so the 0 above means something)
        with dot_lab.cli():
            got = harness.udp_exchange(ip, 53, harness.make_query("www.test.", "A").to_wire(), timeout=0.5)
        assert got is None and fw.counters().get("d53", 0) == 1, (got, fw.counters())
    finally:
        fw.delete()


# --------------------------------------------------------------------------
# 2. NOTIFY to a secondary behind dotward

def soa_zone(serial, extra=""):
    return harness.zone_text(extra).replace(
        "admin.test. 1 3600", "admin.test. %d 3600" % serial)


class Pair:
    """knot primary and knot secondary of zone test. on loopback. The
    secondary accepts NOTIFY from 127.0.0.0/8 (dotward's source address) and
    has a refresh of an hour, so only a NOTIFY makes it look again."""

    def __init__(self, tmp):
        harness.need("knotd")
        harness.need("knotc")
        pa = harness.ADDRS.take()
        sa = harness.ADDRS.take()
        self.serial = 1
        self.primary = harness.Knot(
            os.path.join(tmp, "primary"), pa, harness.free_port(pa), zone=soa_zone(1),
            conf_extra="acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\n",
            zone_extra="    acl: xfr\n")
        self.secondary = harness.Knot(
            os.path.join(tmp, "secondary"), sa, harness.free_port(sa), zone=soa_zone(1),
            conf_extra=("remote:\n  - id: primary\n    address: %s@%d\n"
                        "acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n" % (
                            pa, self.primary.port)),
            zone_extra="    master: primary\n    acl: notify\n")

    def notify_via(self, addr, port):
        """Before start: the primary sends its own NOTIFYs to addr:port on
        every change (without this it sends none)."""
        self.primary.conf_extra = "remote:\n  - id: via\n    address: %s@%d\n" % (
            addr, port) + self.primary.conf_extra
        self.primary.zone_extra += "    notify: via\n"

    def start(self):
        """The secondary first (it loads serial 1 from its file), so that a
        NOTIFY the primary sends at start finds it up."""
        self.secondary.start()
        self.primary.start()
        return self

    def stop(self):
        self.secondary.stop()
        self.primary.stop()

    def bump(self):
        """A new serial at the primary (zone file rewritten, zone-reload);
        returns it once the primary serves it."""
        self.serial += 1
        with open(os.path.join(self.primary.dir, "test.zone"), "w") as f:
            f.write(soa_zone(self.serial, "serial%d IN A 192.0.2.%d\n" % (self.serial, self.serial)))
        self.primary.knotc("zone-reload", "test.")
        ok = harness.wait_until(lambda: serial_of(self.primary) == self.serial, cap=5)
        assert ok, "primary did not load serial %d\n%s" % (self.serial, self.primary.log()[-3000:])
        return self.serial


def serial_of(server):
    try:
        raw = harness.tcp_exchange(server.addr, server.port, harness.make_query("test.", "SOA").to_wire(),
                                   timeout=1)
    except OSError:
        return None
    if not raw:
        return None
    r = dns.message.from_wire(raw)
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    return None


@pytest.fixture(scope="module")
def knot_pair(tmp_path_factory):
    p = Pair(str(tmp_path_factory.mktemp("knot-pair"))).start()
    yield p
    p.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_notify_reaches_secondary(dotward, knot_pair, transport):
    d = dotward(upstreams=["test=%s" % srv(knot_pair.secondary)])
    old = serial_of(knot_pair.secondary)
    serial = knot_pair.bump()
    time.sleep(0.5)
    assert serial_of(knot_pair.secondary) == old, (
        "the secondary moved from serial %s to %s without a NOTIFY" % (old, serial_of(knot_pair.secondary)))
    log_before = len(knot_pair.secondary.log())

    n = dns.message.make_query("test.", "SOA", use_edns=False)
    n.flags = dns.flags.AA          # RD off (the opcode lives in the flags too: set it after)
    n.set_opcode(dns.opcode.NOTIFY)
    raw = must_exchange(d.addr, d.port, n.to_wire(), transport, "NOTIFY")
    r = dns.message.from_wire(raw)
    assert r.id == n.id and r.opcode() == dns.opcode.NOTIFY and r.flags & dns.flags.QR, (
        "answer to a NOTIFY over %s through dotward:\n%s\nsent %s\ngot  %s\n%s\n--- secondary log ---\n%s" % (
            transport, r, n.to_wire().hex(), raw.hex(), d.describe(), knot_pair.secondary.log()[log_before:]))
    assert r.rcode() == dns.rcode.NOERROR, "the secondary's answer to NOTIFY via dotward: %s\n%s" % (
        r, knot_pair.secondary.log()[-2000:])

    ok = harness.wait_until(lambda: serial_of(knot_pair.secondary) == serial, cap=5)
    log = knot_pair.secondary.log()[log_before:]
    assert ok, "secondary still at serial %s after the NOTIFY (primary at %d)\n--- secondary log ---\n%s" % (
        serial_of(knot_pair.secondary), serial, log)
    assert re.search(r"\[test\.\] notify, incoming, remote 127\.[\d.]+@\d+", log), log
    # the query counted by dotward went over the client's transport
    s = d.stats()
    assert s["upstream_" + transport] >= 1, s


def test_primary_notify_through_dotward(dotward, tmp_path):
    """knot as primary sends its NOTIFY to dotward (its `notify:` remote),
    which passes it to the secondary; the secondary refreshes."""
    pair = Pair(str(tmp_path / "pair"))
    d = dotward(upstreams=["test=%s" % srv(pair.secondary)])
    da, dp = d.addr, d.port
    pair.notify_via(da, dp)
    try:
        pair.start()
        serial = pair.bump()
        ok = harness.wait_until(lambda: serial_of(pair.secondary) == serial, cap=5)
        assert ok, ("secondary at serial %s, primary at %d\n--- primary log ---\n%s\n"
                    "--- secondary log ---\n%s\n%s") % (
            serial_of(pair.secondary), serial, pair.primary.log()[-2500:], pair.secondary.log()[-2500:],
            d.describe())
        plog, slog = pair.primary.log(), pair.secondary.log()
        assert re.search(r"notify, outgoing, remote %s@%d, serial %d" % (re.escape(da), dp, serial), plog), plog
        assert "responded with error" not in plog, "a NOTIFY via dotward failed:\n%s" % plog
        assert re.search(r"\[test\.\] notify, incoming, remote 127\.[\d.]+@\d+", slog), slog
        assert "serial %d -> %d" % (serial - 1, serial) in slog, slog
    finally:
        pair.stop()


# --------------------------------------------------------------------------
# 3. UPDATE to BIND

@pytest.fixture(scope="module")
def named(tmp_path_factory):
    harness.need("named")
    addr = "127.0.0.1"   # named listens only on addresses an interface has
    s = harness.Named(tmp_path_factory.mktemp("named"), addr, harness.free_port(addr),
                      keys=KEYS, allow_update="key %s" % KEY_NAME).start()
    yield s
    s.stop()


def a_of(server, name):
    r = harness.ask(server.addr, server.port, name, "A", "tcp")
    return rrset_values(r, "A")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_update_with_tsig_to_bind(dotward, named, transport):
    d = dotward(upstreams=[srv(named)])
    name = "upd-%s.test." % transport
    addr = "192.0.2.%d" % (7 if transport == "udp" else 8)
    assert a_of(named, name) == []

    # without the key: REFUSED directly and through dotward, nothing added
    for target, what in (((named.addr, named.port), "direct"), ((d.addr, d.port), "through dotward")):
        u = dns.update.UpdateMessage("test.")
        u.add(name, 300, "A", addr)
        raw = must_exchange(target[0], target[1], u.to_wire(), transport, "unsigned UPDATE " + what)
        r = dns.message.from_wire(raw)
        assert r.opcode() == dns.opcode.UPDATE and r.rcode() == dns.rcode.REFUSED, (
            "unsigned UPDATE %s over %s: %s" % (what, transport, r))
    assert a_of(named, name) == [], "an unsigned UPDATE took effect"

    u = dns.update.UpdateMessage("test.", keyring=KEY)
    u.add(name, 300, "A", addr)
    raw = must_exchange(d.addr, d.port, u.to_wire(), transport, "signed UPDATE")
    r = dns.message.from_wire(raw, keyring=KEY, request_mac=u.mac)
    assert r.id == u.id and r.opcode() == dns.opcode.UPDATE and r.rcode() == dns.rcode.NOERROR, (
        "signed UPDATE through dotward over %s: %s\n%s" % (transport, r, named.log()[-2000:]))
    assert a_of(named, name) == [addr], "BIND does not have the record\n%s" % named.log()[-2000:]


# --------------------------------------------------------------------------
# 4. dotward's own error replies carry an OPT when the query had one

def edns_wire(name=b"\x03www\x04fake\x00", opcode=0, opt_rdata=b"", qid=0x5151):
    hdr = struct.pack("!6H", qid, (opcode << 11) | 0x0100, 1, 0, 0, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(opt_rdata)) + opt_rdata
    return hdr + name + struct.pack("!HH", 1, 1) + opt


ERROR_CASES = {
    # name: (query bytes, rcode, dotward config kind)
    "notimp-iquery": (edns_wire(opcode=1), dns.rcode.NOTIMP, "normal"),
    "notimp-status": (edns_wire(opcode=2), dns.rcode.NOTIMP, "normal"),
    # an option whose length runs past the OPT's RDATA
    "formerr-opt-framing": (edns_wire(opt_rdata=struct.pack("!HH", 10, 8)), dns.rcode.FORMERR, "normal"),
    "refused-acl": (edns_wire(), dns.rcode.REFUSED, "acl"),
    "servfail-silent-upstream": (edns_wire(), dns.rcode.SERVFAIL, "silent"),
}


# Over TCP a refused source is closed at accept (test_zones_acl): no REFUSED to check.
ERROR_RUNS = [(c, t) for c in sorted(ERROR_CASES) for t in TRANSPORTS
              if not (ERROR_CASES[c][2] == "acl" and t == "tcp")]


@pytest.mark.parametrize("case,transport", ERROR_RUNS)
def test_error_reply_has_opt(dotward, fake, case, transport):
    """NOTIMP, FORMERR, REFUSED and SERVFAIL made by dotward itself carry an
    OPT when the query had one (RFC 6891 7), and none when it had none."""
    wire, rcode, kind = ERROR_CASES[case]
    f = fake("silent" if kind == "silent" else "normal")
    cfg = "[server]\nlisten = {listen}\n"
    if kind == "acl":
        cfg += "allow = 10.0.0.0/8\n"
    cfg += "[forward]\nupstream = %s\ntimeout = 1s\nattempt-timeout = 400ms\n" % f.server
    d = dotward(config=cfg)
    raw = must_exchange(d.addr, d.port, wire, transport, case)
    r = dns.message.from_wire(raw)
    assert r.id == 0x5151 and r.flags & dns.flags.QR
    assert r.rcode() == rcode, "%s over %s: %s, want %s" % (
        case, transport, dns.rcode.to_text(r.rcode()), dns.rcode.to_text(rcode))
    assert r.edns >= 0, "%s over %s: dotward's error reply has no OPT: %s\n%s" % (
        case, transport, raw.hex(), r)
    assert r.payload >= 512, r.payload
    if kind != "silent":
        assert f.count() == 0, f.queries()
    # the same query without the OPT: the error reply has none either
    if case != "formerr-opt-framing":
        plain = wire[:10] + b"\x00\x00" + wire[12:-11]
        r2 = dns.message.from_wire(must_exchange(d.addr, d.port, plain, transport, case + " no OPT"))
        assert r2.rcode() == rcode and r2.edns < 0, r2


# --------------------------------------------------------------------------
# 5. per-hop options never reach a plain upstream

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hop_options_stripped_on_plain_leg(dotward, fake, transport):
    f = fake()
    d = dotward(upstreams=[f.server])
    q = harness.make_query("pad.fake.", "A", edns=1232)
    q.use_edns(0, payload=1232, options=[dns.edns.GenericOption(OPT_PADDING, b"\0" * 40),
                                         dns.edns.GenericOption(OPT_KEEPALIVE, b""),
                                         dns.edns.GenericOption(OPT_NSID, b"")])
    raw = must_exchange(d.addr, d.port, q.to_wire(), transport, "query with padding and keepalive")
    r = dns.message.from_wire(raw)
    assert r.id == q.id and rrset_values(r, "A") == [fake_a(f.tag, "pad.fake")], r
    got = f.queries()
    assert len(got) == 1 and got[0].transport == transport, got
    up = dns.message.from_wire(got[0].wire)
    codes = [o.otype for o in up.options]
    assert up.edns == 0, "the OPT itself was lost: %s" % got[0].wire.hex()
    assert OPT_PADDING not in codes and OPT_KEEPALIVE not in codes, (
        "per-hop options reached the plain upstream over %s: %s\n%s" % (transport, codes, got[0].wire.hex()))
    assert OPT_NSID in codes, "an end-to-end option (NSID) was dropped: %s" % codes
    # nothing added either: no padding of dotward's own
    assert len(got[0].wire) < len(q.to_wire()), (len(got[0].wire), len(q.to_wire()))


def test_late_tc_of_an_earlier_try_is_ignored(dotward, fake):
    """One upstream that answers UDP with TC=1 after 300 ms and TCP in full
    after 300 ms. Try 1 (UDP) times out at 100 ms and try 2 (UDP, the same
    server) goes out; try 1's TC=1 moves the query to TCP; try 2's TC=1
    arrives while the TCP try is pending and must not reach the client,
    which gets the whole TCP answer."""
    f = fake(mode="tc", delay=0.3)
    conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s tls=off\ntimeout = 2.5s\n"
            "attempt-timeout = 100ms\n" % f.server)
    d = dotward(config=conf)
    r = harness.ask(d.addr, d.port, "late.tc.test.", "A", transport="udp", timeout=3)
    assert not (r.flags & dns.flags.TC), "the client got a truncated answer: %s" % r
    assert rrset_values(r, "A") == [fake_a(f.tag, "late.tc.test.")], r
    got = [q.transport for q in f.queries()]
    # at least two UDP tries were out before the first TC=1 came back
    assert got.index("tcp") >= 2, got
