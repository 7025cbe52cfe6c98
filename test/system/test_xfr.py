"""Zone transfers pass through dotward whole.

A zone of 10,000 TXT records (2 MB: about 120 messages from knot, 30+ from
NSD) transferred directly and through dotward must give the same record
set, message for message where the server's framing allows, with other
clients' queries to the same server answered meanwhile:

  - AXFR from knot over Do53 TCP
  - IXFR from knot: differences (serial 1 -> 2), up to date (the SOA alone)
  - AXFR from NSD over DoT to a Good server (XoT): the server's plain TCP
    port is dropped by nft during the transfer, so it can only have gone
    over TLS
  - a transfer larger than max-transfer-mb is cut: the client gets what
    came and then its connection closes, it does not hang
"""
import os
import re
import socket
import struct
import subprocess
import threading
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import harness
from harness import rrset_values, wait_until
from test_control import Ctl, ctl_bin, sockdir  # noqa: F401 (fixtures)
from test_state import DOT_PORT, DotNsd, dot_addr, need_dot  # noqa: F401 (fixture)

RECORDS = 10000


def big_zone(serial=1, extra=""):
    lines = ["$ORIGIN test.", "$TTL 300",
             "@ IN SOA ns1.test. admin.test. %d 3600 600 86400 300" % serial,
             "@ IN NS ns1.test.", "ns1 IN A 192.0.2.11", "www IN A %s" % harness.WWW_A]
    lines += ['r%05d IN TXT "%s"' % (i, "x" * 180) for i in range(RECORDS)]
    return "\n".join(lines) + "\n" + extra


XFR_ACL = """acl:
  - id: xfr
    address: 127.0.0.0/8
    action: transfer
"""


def transfer(addr, port, rdtype="AXFR", serial=None, timeout=20):
    """Raw TCP transfer: the messages as they came, until the SOA count says
    done (dnspython's own inbound logic) or the connection closes."""
    q = dns.message.make_query("test.", rdtype)
    if serial is not None:
        q.authority.append(dns.rrset.from_text("test.", 0, "IN", "SOA",
                                               "ns1.test. admin.test. %d 3600 600 86400 300" % serial))
    wire = q.to_wire()
    msgs = []
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        soas, first_serial, incremental = 0, None, False
        while True:
            try:
                raw = harness.tcp_recv_msg(s)
            except (ConnectionError, OSError, AssertionError, ValueError):
                return msgs, False
            if raw is None:
                return msgs, False
            m = dns.message.from_wire(raw, xfr=True, one_rr_per_rrset=True, question_only=False)
            assert m.id == q.id, "message with ID %d, asked %d" % (m.id, q.id)
            msgs.append(m)
            if m.rcode() != dns.rcode.NOERROR:
                return msgs, True
            n = 0
            for rr in m.answer:
                n += 1
                if rr.rdtype == dns.rdatatype.SOA:
                    sn = rr[0].serial
                    if first_serial is None:
                        first_serial = sn
                    elif len([1 for mm in msgs for r in mm.answer]) == 2 and rdtype == "IXFR":
                        incremental = True
                    if sn == first_serial:
                        soas += 1
                if soas >= (3 if incremental else 2):
                    return msgs, True
            total = sum(len(mm.answer) for mm in msgs)
            if rdtype == "IXFR" and len(msgs) == 1 and total == 1:
                return msgs, True


def records(msgs):
    return sorted(rr.to_text() for m in msgs for rr in m.answer)


class Queries(threading.Thread):
    """Another client asking www.test. through dotward over TCP and UDP, bounded."""

    def __init__(self, d, seconds=3.0, cap=400):
        super().__init__(daemon=True)
        self.d, self.seconds, self.cap = d, seconds, cap
        self.ok = self.bad = 0
        self.errors = []

    def run(self):
        end = time.monotonic() + self.seconds
        for i in range(self.cap):
            if time.monotonic() > end:
                break
            try:
                r = harness.ask(self.d.addr, self.d.port, "www.test.", "A",
                                transport="tcp" if i % 2 else "udp", timeout=2)
                if rrset_values(r, "A") == [harness.WWW_A]:
                    self.ok += 1
                else:
                    self.bad += 1
            except AssertionError as e:
                self.bad += 1
                self.errors.append(str(e)[:200])


@pytest.fixture
def knot_xfr(tmp_path):
    harness.need("knotd")
    addr = harness.ADDRS.take()
    k = harness.Knot(str(tmp_path / "knot"), addr, harness.free_port(addr), zone=big_zone(),
                     conf_extra=XFR_ACL,
                     zone_extra="    acl: xfr\n    journal-content: changes\n    zonefile-load: difference\n")
    k.start()
    yield k
    k.stop()


def test_axfr_from_knot_over_tcp(knot_xfr, dotward):
    k = knot_xfr
    direct, done = transfer(k.addr, k.port)
    assert done and len(direct) >= 20, "direct AXFR: %d messages, complete=%s" % (len(direct), done)
    d = dotward(upstreams=["%s:%d tls=off" % (k.addr, k.port)])
    others = Queries(d)
    others.start()
    via, done = transfer(d.addr, d.port)
    others.join(10)
    assert done, "AXFR through dotward incomplete after %d of %d messages\n%s" % (
        len(via), len(direct), d.describe())
    assert len(via) == len(direct)
    assert records(via) == records(direct)
    assert others.ok > 0 and others.bad == 0, (others.ok, others.bad, others.errors[:3])
    # and again: the transfer's own connection closed, nothing left behind
    via2, done2 = transfer(d.addr, d.port)
    assert done2 and records(via2) == records(direct)


def test_ixfr_from_knot(knot_xfr, dotward):
    k = knot_xfr
    d = dotward(upstreams=["%s:%d tls=off" % (k.addr, k.port)])
    # serial 1 -> 2: 3000 records changed, enough for many messages
    zone2 = big_zone(2).replace('"%s"' % ("x" * 180), '"%s"' % ("y" * 180), 3000)
    with open(os.path.join(k.dir, "test.zone"), "w") as f:
        f.write(zone2)
    k.knotc("zone-reload", "test.")
    assert wait_until(lambda: [rr.serial for rr in harness.ask(k.addr, k.port, "test.", "SOA").answer[0]] == [2],
                      10), "knot did not load serial 2\n" + k.log()[-2000:]
    direct, done = transfer(k.addr, k.port, "IXFR", serial=1)
    assert done and len(direct) >= 20, "direct IXFR: %d messages" % len(direct)
    assert direct[0].answer[1].rdtype == dns.rdatatype.SOA, "knot did not answer with differences"
    via, done = transfer(d.addr, d.port, "IXFR", serial=1)
    assert done, "IXFR through dotward incomplete after %d of %d messages\n%s" % (
        len(via), len(direct), d.describe())
    assert [records([m]) for m in via] == [records([m]) for m in direct]
    # up to date: the SOA alone, one message
    via, done = transfer(d.addr, d.port, "IXFR", serial=2)
    assert done and len(via) == 1 and len(via[0].answer) == 1, via


def test_transfer_over_the_limit_closes_the_client(knot_xfr, dotward):
    k = knot_xfr
    conf = "[server]\nlisten = {listen}\n[forward]\nupstream = %s:%d tls=off\nmax-transfer-mb = 1\n" % (
        k.addr, k.port)
    d = dotward(config=conf)
    t0 = time.monotonic()
    via, done = transfer(d.addr, d.port, timeout=10)
    took = time.monotonic() - t0
    assert not done, "a 2 MB transfer went through a 1 MiB limit"
    assert 0 < sum(len(m.to_wire()) for m in via) <= 1 << 20, len(via)
    assert took < 5, "the client waited %.1f s for its connection to close" % took
    r = harness.ask(d.addr, d.port, "www.test.", "A", transport="tcp")
    assert rrset_values(r, "A") == [harness.WWW_A]


class XotNsd(DotNsd):
    """DotNsd serving the big zone with transfers allowed (NSD serves them on its TLS port too)."""

    def start(self):
        self.zone = big_zone()
        ret = None
        orig = self._spawn

        def spawn(argv):
            conf = argv[-1]
            with open(conf) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(text.replace('  zonefile: "test.zone"',
                                     '  zonefile: "test.zone"\n  provide-xfr: 127.0.0.0/8 NOKEY'))
            return orig(argv)

        self._spawn = spawn
        ret = super().start()
        return ret


def test_axfr_over_dot_to_a_good_server(need_dot, dotward, ctl_bin, sockdir, tmp_path):  # noqa: F811
    harness.need("nft")
    addr = dot_addr()
    n = XotNsd(str(tmp_path / "nsd"), addr, harness.free_port(addr)).start()
    try:
        direct, done = transfer(n.addr, n.port)
        assert done and len(direct) >= 20, "direct AXFR from NSD: %d messages" % len(direct)
        sock = os.path.join(sockdir, "ctl.sock")
        conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s:%d\n[probe]\nprobe-on-start = yes\n"
                % (n.addr, n.port))
        d = dotward(config=conf, args=["--control", sock])
        assert wait_until(lambda: os.path.exists(sock), 5)
        ctl = Ctl(ctl_bin, sock, d)
        assert wait_until(lambda: (ctl.entry(addr) or {}).get("status") == "good", 8), ctl.entry(addr)
        table = "dotward_xot_%d" % os.getpid()
        rules = ("table ip %s {\n chain c {\n  type filter hook output priority -10;\n"
                 "  ip daddr %s tcp dport %d counter drop\n }\n}\n" % (table, addr, n.port))
        subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True, timeout=10)
        try:
            via, done = transfer(d.addr, d.port)
            out = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True,
                                 timeout=10).stdout
        finally:
            subprocess.run(["nft", "delete", "table", "ip", table], timeout=10)
        assert done, "XoT through dotward incomplete after %d messages\n%s" % (len(via), d.describe())
        assert records(via) == records(direct)
        assert re.search(r"counter packets 0 ", out), "something went to NSD's plain TCP port:\n" + out
        st = ctl.stats()
        assert st["xfr_completed"] == 1 and st["dot_connections"] >= 1, st
    finally:
        n.stop()


def test_axfr_from_nsd_over_tcp(need_dot, dotward, tmp_path):  # noqa: F811
    addr = dot_addr()
    n = XotNsd(str(tmp_path / "nsd"), addr, harness.free_port(addr)).start()
    try:
        direct, done = transfer(n.addr, n.port)
        assert done and len(direct) >= 20, "direct AXFR from NSD: %d messages" % len(direct)
        d = dotward(upstreams=["%s:%d tls=off" % (n.addr, n.port)])
        others = Queries(d)
        others.start()
        via, done = transfer(d.addr, d.port)
        others.join(10)
        assert done, "AXFR through dotward incomplete after %d of %d messages\n%s" % (
            len(via), len(direct), d.describe())
        assert len(via) == len(direct) and records(via) == records(direct)
        assert others.ok > 0 and others.bad == 0, (others.ok, others.bad, others.errors[:3])
    finally:
        n.stop()
