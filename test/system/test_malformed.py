"""Malformed client packets: the dropping and FORMERR/NOTIMP rules, and a flood
of 1,000 bad datagrams that dotward must survive and count."""
import os
import random
import socket
import struct
import threading
import time

import pytest

from fakeupstream import fake_a
from harness import ask, rrset_values, tcp_frame, tcp_recv_msg

FORMERR, NOTIMP = 1, 4
QNAME = b"\x03www\x04test\x00"
QTAIL = struct.pack("!HH", 1, 1)          # A, IN


def hdr(qid, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


def opcode_flags(op):
    return (op << 11) | 0x0100


def good_query(qid, flags=0x0100):
    return hdr(qid, flags) + QNAME + QTAIL


# name -> (packet, expected rcode or None for "no answer at all")
CRAFTED = {
    "empty": (b"", None),
    "short-11": (hdr(7)[:11], None),
    "header-only-qr": (hdr(8, 0x8100, qd=0), None),
    "qr-set": (good_query(9, 0x8100), None),
    "qdcount-0": (hdr(10, qd=0), FORMERR),
    "qdcount-2-one-question": (hdr(11, qd=2) + QNAME + QTAIL, FORMERR),
    "qdcount-2-two-questions": (hdr(12, qd=2) + QNAME + QTAIL + QNAME + QTAIL, FORMERR),
    "pointer-self": (hdr(13) + b"\xc0\x0c" + QTAIL, FORMERR),
    "pointer-cycle": (hdr(14) + b"\x01a\xc0\x0c" + QTAIL, FORMERR),
    "pointer-out-of-bounds": (hdr(15) + b"\xc0\xff" + QTAIL, FORMERR),
    "label-overrun": (hdr(16) + b"\x3fabc", FORMERR),
    "no-type-class": (hdr(17) + QNAME, FORMERR),
    "half-type": (hdr(18) + QNAME + b"\x00", FORMERR),
    "no-root-label": (hdr(19) + b"\x03www\x04test", FORMERR),
    "name-too-long": (hdr(20) + (b"\x3f" + b"a" * 63) * 4 + b"\x00" + QTAIL, FORMERR),
    "label-type-0x40": (hdr(21) + b"\x41abc\x00" + QTAIL, FORMERR),
    "label-type-0x80": (hdr(22) + b"\x81abc\x00" + QTAIL, FORMERR),
    "opcode-iquery": (good_query(23, opcode_flags(1)), NOTIMP),
    "opcode-status": (good_query(24, opcode_flags(2)), NOTIMP),
    "opcode-dso": (good_query(25, opcode_flags(6)), NOTIMP),
    "opcode-notify-no-question": (hdr(26, opcode_flags(4), qd=0), NOTIMP),
}

# NOTIFY, UPDATE and opcodes not assigned yet go to the zone's server as they came.
FORWARDED = {"opcode-notify": 4, "opcode-update": 5, "opcode-3": 3, "opcode-15": 15}


@pytest.fixture
def proxy(dotward, fake):
    f = fake()
    return dotward(upstreams=[f.server]), f


def udp_send_recv(addr, port, pkt, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((addr, port))
        s.settimeout(timeout)
        s.send(pkt)
        try:
            return s.recv(65535)
        except socket.timeout:
            return None
    finally:
        s.close()


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_udp(proxy, case):
    d, f = proxy
    pkt, want = CRAFTED[case]
    raw = udp_send_recv(d.addr, d.port, pkt, 0.5 if want is None else 2.0)
    if want is None:
        assert raw is None, "%s: expected no answer, got %r" % (case, raw)
    else:
        assert raw is not None and len(raw) >= 12, "%s: no answer (want rcode %d)" % (case, want)
        qid, flags = struct.unpack("!HH", raw[:4])
        assert qid == struct.unpack("!H", pkt[:2])[0], "%s: ID %d" % (case, qid)
        assert flags & 0x8000, "%s: QR not set" % case
        assert flags & 0xF == want, "%s: rcode %d, want %d" % (case, flags & 0xF, want)
    assert f.count() == 0, "%s was forwarded upstream: %s" % (case, f.queries())
    assert d.alive(), d.describe()
    # and the next good query is answered
    r = ask(d.addr, d.port, "after.fake.", "A")
    assert rrset_values(r, "A") == [fake_a(f.tag, "after.fake")]


@pytest.mark.parametrize("case", ["qdcount-0", "pointer-self", "no-type-class", "opcode-status",
                                  "opcode-iquery"])
def test_crafted_tcp(proxy, case):
    d, f = proxy
    pkt, want = CRAFTED[case]
    s = socket.create_connection((d.addr, d.port), timeout=2)
    try:
        s.sendall(tcp_frame(pkt))
        raw = tcp_recv_msg(s)
    finally:
        s.close()
    assert raw is not None and len(raw) >= 12, "%s over TCP: no answer" % case
    qid, flags = struct.unpack("!HH", raw[:4])
    assert qid == struct.unpack("!H", pkt[:2])[0] and flags & 0x8000
    assert flags & 0xF == want, "%s over TCP: rcode %d, want %d" % (case, flags & 0xF, want)
    assert f.count() == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", sorted(FORWARDED))
def test_other_opcodes_forwarded(proxy, case, transport):
    """Not answered NOTIMP by dotward: forwarded byte for byte but the ID, over
    the client's transport, and the server's answer relayed."""
    d, f = proxy
    op = FORWARDED[case]
    pkt = good_query(0x4d00 + op, opcode_flags(op))
    if transport == "udp":
        raw = udp_send_recv(d.addr, d.port, pkt, 2.0)
    else:
        s = socket.create_connection((d.addr, d.port), timeout=2)
        try:
            s.sendall(tcp_frame(pkt))
            raw = tcp_recv_msg(s)
        finally:
            s.close()
    assert raw is not None and len(raw) >= 12, "%s over %s: no answer" % (case, transport)
    qid, flags = struct.unpack("!HH", raw[:4])
    assert qid == 0x4d00 + op and flags & 0x8000 and (flags >> 11) & 0xF == op
    got = f.queries()
    assert len(got) == 1 and got[0].transport == transport, got
    assert got[0].wire[2:] == pkt[2:], "%s changed on the way: %r != %r" % (case, got[0].wire, pkt)


def test_tcp_garbage_connection_survived(proxy):
    """Junk on a TCP connection (a length that lies, bytes that are not DNS)
    must not take the daemon down."""
    d, f = proxy
    for junk in (b"\x00", b"\x00\x05abc", b"\xff\xff" + os.urandom(100), b"\x00\x00",
                 tcp_frame(os.urandom(11)), tcp_frame(b"\xc0\x0c" * 40)):
        s = socket.create_connection((d.addr, d.port), timeout=1)
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(4096)
            except (socket.timeout, ConnectionResetError):
                pass
        finally:
            s.close()
    assert d.alive(), d.describe()
    r = ask(d.addr, d.port, "after.fake.", "A", "tcp")
    assert rrset_values(r, "A") == [fake_a(f.tag, "after.fake")]


class Collector:
    """Reads every answer on one UDP socket in a thread."""

    def __init__(self, sock):
        self.sock = sock
        self.answers = []            # (id, flags)
        self.ids = set()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                raw = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                continue
            if len(raw) >= 4:
                qid, flags = struct.unpack("!HH", raw[:4])
                self.answers.append((qid, flags))
                self.ids.add(qid)

    def close(self):
        self.stop.set()
        self.t.join(2)


def flood_packets(rng):
    """1,000 bad datagrams, tagged with what dotward must do with them."""
    pkts = []

    def rid():
        return rng.randrange(0x8000)  # sync probes use IDs >= 0xF000

    for _ in range(200):   # random bytes, any outcome
        pkts.append(("any", rng.randbytes(rng.randrange(12, 600))))
    for _ in range(100):   # shorter than a header
        pkts.append(("drop", rng.randbytes(rng.randrange(0, 12))))
    for _ in range(100):   # QR=1
        pkts.append(("drop", good_query(rid(), 0x8100 | rng.randrange(0, 0x100))))
    loops = [b"\xc0\x0c", b"\x01a\xc0\x0c", b"\x01a\x01b\xc0\x0e", b"\xc0\x0e\xc0\x0c"]
    for i in range(150):   # pointer loops and pointers out of the packet
        if i % 5 == 4:
            pkts.append(("formerr", hdr(rid()) + b"\xc0" + bytes([rng.randrange(0x40, 0x100)]) + QTAIL))
        else:
            pkts.append(("formerr", hdr(rid()) + loops[i % 4] + QTAIL))
    for i in range(150):   # wrong question counts
        kind = i % 3
        if kind == 0:
            pkts.append(("formerr", hdr(rid(), qd=0)))
        elif kind == 1:
            pkts.append(("formerr", hdr(rid(), qd=rng.randrange(2, 0x10000)) + QNAME + QTAIL))
        else:
            pkts.append(("formerr", hdr(rid(), qd=2) + (QNAME + QTAIL) * 2))
    for _ in range(100):   # other opcodes
        op = rng.choice([1, 2, 6])   # IQUERY, STATUS, DSO: nothing to forward
        pkts.append(("notimp", good_query(rid(), opcode_flags(op))))
    bad_names = [b"\x3fabc", QNAME, QNAME + b"\x00", b"\x03www\x04test",
                 (b"\x3f" + b"a" * 63) * 4 + b"\x00" + QTAIL, b"\x41abc\x00" + QTAIL]
    for i in range(100):   # bad names, missing type/class
        pkts.append(("formerr", hdr(rid()) + bad_names[i % len(bad_names)]))
    for _ in range(20):    # 64 KiB datagrams (65507: the most UDP over IPv4 carries)
        pkts.append(("big", hdr(rid()) + rng.randbytes(65507 - 12)))
    for _ in range(80):    # plausible header, random body
        pkts.append(("any", hdr(rid()) + rng.randbytes(rng.randrange(1, 1500))))
    assert len(pkts) == 1000
    rng.shuffle(pkts)
    return pkts


def test_malformed_flood(proxy):
    d, f = proxy
    rng = random.Random(20261129)
    pkts = flood_packets(rng)
    expect = {k: sum(1 for kind, _ in pkts if kind == k) for k in ("drop", "formerr", "notimp")}
    before = d.stats()

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.connect((d.addr, d.port))
    col = Collector(s)
    syncs = 0
    paced_by_time = False

    def sync():
        # A STATUS query answered (NOTIMP) means everything sent before it was read.
        nonlocal syncs, paced_by_time
        if paced_by_time:
            time.sleep(0.02)
            return
        sid = 0xF000 + syncs
        syncs += 1
        s.send(good_query(sid, opcode_flags(2)))
        deadline = time.monotonic() + 2.0
        while sid not in col.ids and time.monotonic() < deadline:
            time.sleep(0.001)
        if sid not in col.ids:
            paced_by_time = True  # NOTIMP broken (another test says so): pace by time

    t0 = time.monotonic()
    try:
        for i, (kind, pkt) in enumerate(pkts):
            s.send(pkt)
            if kind == "big" or i % 25 == 24:
                sync()
        sync()
        time.sleep(0.2)
    finally:
        col.close()
        s.close()
    took = time.monotonic() - t0

    assert d.alive(), "dotward died during the flood\n" + d.describe()
    r = ask(d.addr, d.port, "good.after.flood.", "A")
    assert rrset_values(r, "A") == [fake_a(f.tag, "good.after.flood")]

    after = d.stats()
    delta = {k: after[k] - before[k] for k in after if k in before}
    formerr_seen = sum(1 for qid, fl in col.answers if fl & 0xF == FORMERR)
    notimp_seen = sum(1 for qid, fl in col.answers if fl & 0xF == NOTIMP and qid < 0xF000)
    report = "flood took %.1fs, expected %s, counter deltas %s, answers seen: FORMERR %d NOTIMP %d" % (
        took, expect, delta, formerr_seen, notimp_seen)
    print(report)
    assert delta["malformed_dropped"] >= expect["drop"], report
    assert delta["formerr_sent"] >= expect["formerr"], report
    assert delta["notimp_sent"] >= expect["notimp"], report
    assert formerr_seen >= expect["formerr"], report
    assert notimp_seen >= expect["notimp"], report
    assert not any(fl & 0x8000 == 0 for _, fl in col.answers), "an answer without QR"
