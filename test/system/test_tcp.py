"""TCP: pipelined client queries on one connection, out-of-order upstream
answers, and the UDP->TCP retry when the upstream truncates."""
import socket
import time

import dns.flags
import dns.message

from fakeupstream import fake_a, fake_big_strings
from harness import (WWW_A, WWW_AAAA, big_txt_strings, make_query, rcode_text, rrset_values,
                     tcp_frame, tcp_recv_msg, udp_exchange)


def pipeline(addr, port, queries, cap=6.0):
    """All queries in one send on one connection; returns {id: Message}."""
    s = socket.create_connection((addr, port), timeout=cap)
    try:
        s.sendall(b"".join(tcp_frame(q.to_wire()) for q in queries))
        answers = {}
        deadline = time.monotonic() + cap
        while len(answers) < len(queries) and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            raw = tcp_recv_msg(s)
            if raw is None:
                break
            r = dns.message.from_wire(raw)
            assert r.id not in answers, "two answers for ID %d" % r.id
            answers[r.id] = r
        return answers
    finally:
        s.close()


def check_matches(queries, answers):
    missing = [q.id for q in queries if q.id not in answers]
    assert not missing, "no answer for IDs %s (got %d of %d)" % (missing, len(answers), len(queries))
    for q in queries:
        r = answers[q.id]
        assert r.question[0].name.to_text() == q.question[0].name.to_text(), \
            "ID %d: question %s, asked %s" % (q.id, r.question[0], q.question[0])
        assert r.question[0].rdtype == q.question[0].rdtype


def test_pipelined_to_nsd(dotward, nsd):
    d = dotward(upstreams=["%s:%d" % (nsd.addr, nsd.port)])
    asked = [("www.test.", "A"), ("www.test.", "AAAA"), ("txt.test.", "TXT"),
             ("nx1.test.", "A"), ("big.test.", "TXT"), ("ns1.test.", "A"),
             ("test.", "SOA"), ("test.", "NS")]
    queries = [make_query(n, t, qid=1000 + i) for i, (n, t) in enumerate(asked)]
    answers = pipeline(d.addr, d.port, queries)
    check_matches(queries, answers)
    assert rrset_values(answers[1000], "A") == [WWW_A]
    assert rrset_values(answers[1001], "AAAA") == [WWW_AAAA]
    assert rcode_text(answers[1003]) == "NXDOMAIN"
    assert sorted(rrset_values(answers[1004], "TXT")) == sorted(big_txt_strings())
    assert rrset_values(answers[1005], "A") == ["192.0.2.11"]


def test_pipelined_out_of_order_upstream(dotward, fake):
    """The upstream holds ten answers and sends them newest first; every answer
    dotward gives still carries the right ID, question and data."""
    f = fake("reverse")
    f.hold_count = 10
    f.hold_timeout = 2.0
    d = dotward(upstreams=[f.server])
    names = ["q%d.ooo.fake." % i for i in range(10)]
    queries = [make_query(n, "A", qid=0x2000 + i) for i, n in enumerate(names)]
    answers = pipeline(d.addr, d.port, queries)
    check_matches(queries, answers)
    for q in queries:
        name = q.question[0].name.to_text()
        assert rrset_values(answers[q.id], "A") == [fake_a(f.tag, name)], \
            "ID %d (%s) got another query's data" % (q.id, name)
    assert f.count("tcp") == 10 and f.count("udp") == 0, f.queries()
    arrived = f.names("tcp")
    assert f.sent_order == list(reversed(arrived)), "fake did not reorder: %s" % f.sent_order


def test_sequential_queries_one_connection(dotward, nsd):
    d = dotward(upstreams=["%s:%d" % (nsd.addr, nsd.port)])
    s = socket.create_connection((d.addr, d.port), timeout=3)
    try:
        for i in range(3):
            q = make_query("www.test.", "A", qid=50 + i)
            s.sendall(tcp_frame(q.to_wire()))
            raw = tcp_recv_msg(s)
            assert raw is not None, "no answer to query %d on a kept-open connection" % i
            r = dns.message.from_wire(raw)
            assert r.id == 50 + i and rrset_values(r, "A") == [WWW_A]
    finally:
        s.close()


def test_tc_from_upstream_retried_over_tcp(dotward, fake):
    """Upstream sets TC=1 on every UDP answer and answers fully over TCP."""
    f = fake("tc")
    d = dotward(upstreams=[f.server])
    before = d.stats()

    q = make_query("big.tc.fake.", "TXT", edns=4096)
    raw = udp_exchange(d.addr, d.port, q.to_wire())
    assert raw is not None, d.describe()
    r = dns.message.from_wire(raw)
    assert rcode_text(r) == "NOERROR", rcode_text(r)
    assert not r.flags & dns.flags.TC, "client got TC although the answer fits 4096"
    assert sorted(rrset_values(r, "TXT")) == sorted(fake_big_strings())
    assert "big.tc.fake." in f.names("tcp"), "upstream saw no TCP query: %s" % f.queries()
    assert "big.tc.fake." in f.names("udp")

    # small answer: whole over UDP even without EDNS
    raw = udp_exchange(d.addr, d.port, make_query("www.tc.fake.", "A").to_wire())
    r = dns.message.from_wire(raw)
    assert not r.flags & dns.flags.TC and rrset_values(r, "A") == [fake_a(f.tag, "www.tc.fake")]
    assert "www.tc.fake." in f.names("tcp")

    # too big for a client without EDNS: TC=1 within 512 bytes
    raw = udp_exchange(d.addr, d.port, make_query("big.tc2.fake.", "TXT", qid=99).to_wire())
    assert raw is not None and len(raw) <= 512, raw and len(raw)
    r = dns.message.from_wire(raw)
    assert r.id == 99 and r.flags & dns.flags.TC

    after = d.stats()
    assert after["upstream_tc"] - before["upstream_tc"] >= 3, (before, after)
    assert after["upstream_tcp"] - before["upstream_tcp"] >= 3, (before, after)
    assert after["truncated"] - before["truncated"] >= 1, (before, after)
