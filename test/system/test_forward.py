"""Plain forwarding through dotward to real servers (NSD, knot) and to the
scripted upstream: records, NXDOMAIN, transports, ID and case restore,
truncation of large answers."""
import dns.flags
import dns.message
import dns.rdatatype
import pytest

from fakeupstream import fake_a
from harness import (BIG_TXT_COUNT, TXT_TEXT, WWW_A, WWW_AAAA, ask, big_txt_strings,
                     make_query, rcode_text, rrset_values, tcp_exchange, udp_exchange)


@pytest.fixture(params=["nsd", "knot"])
def backend(request):
    return request.getfixturevalue(request.param)


def upstream_of(srv):
    return "%s:%d" % (srv.addr, srv.port)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_records_and_nxdomain(dotward, backend, transport):
    d = dotward(upstreams=[upstream_of(backend)])
    before = d.stats()

    r = ask(d.addr, d.port, "www.test.", "A", transport)
    assert rcode_text(r) == "NOERROR" and rrset_values(r, "A") == [WWW_A]
    assert r.flags & dns.flags.QR

    r = ask(d.addr, d.port, "www.test.", "AAAA", transport)
    assert rcode_text(r) == "NOERROR" and rrset_values(r, "AAAA") == [WWW_AAAA]

    r = ask(d.addr, d.port, "txt.test.", "TXT", transport)
    assert sorted(rrset_values(r, "TXT")) == sorted([TXT_TEXT, "second string"])

    r = ask(d.addr, d.port, "nosuchname.test.", "A", transport)
    assert rcode_text(r) == "NXDOMAIN", "expected NXDOMAIN, got %s" % rcode_text(r)
    assert not r.answer
    assert any(rr.rdtype == dns.rdatatype.SOA for rr in r.authority), \
        "the upstream's SOA in the authority section was lost: %s" % r

    after = d.stats()
    key = "queries_" + transport
    assert after[key] - before[key] >= 4, (before, after)
    assert after["answered"] - before["answered"] >= 4, (before, after)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_upstream_transport_follows_client(dotward, fake, transport):
    """UDP client queries go upstream over UDP, TCP client queries over TCP."""
    f = fake()
    d = dotward(upstreams=[f.server])
    r = ask(d.addr, d.port, "tr.fake.", "A", transport)
    assert rrset_values(r, "A") == [fake_a(f.tag, "tr.fake")]
    assert f.count(transport) == 1 and f.count() == 1, f.queries()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_id_and_case_restored(dotward, nsd, transport):
    d = dotward(upstreams=[upstream_of(nsd)])
    q = make_query("WwW.TeSt.", "A", qid=0x4D2F)
    wire = q.to_wire()
    raw = udp_exchange(d.addr, d.port, wire) if transport == "udp" else \
        tcp_exchange(d.addr, d.port, wire)
    assert raw is not None, "no answer\n" + d.describe()
    r = dns.message.from_wire(raw)
    assert r.id == 0x4D2F
    assert r.question[0].name.to_text() == "WwW.TeSt.", r.question[0].name.to_text()
    # byte for byte: the question section of the answer is the client's own
    assert raw[12:len(wire)] == wire[12:], (raw[12:len(wire)], wire[12:])
    assert rrset_values(r, "A") == [WWW_A]


def test_upstream_ids_and_ports_randomised(dotward, fake):
    """The upstream never sees the client's ID, and queries leave from more than
    one source port (a random pool)."""
    f = fake()
    d = dotward(upstreams=[f.server])
    for i in range(16):
        r = ask(d.addr, d.port, "rnd%d.fake." % i, "A", qid=0x1234)
        assert r.id == 0x1234
    got = f.queries("udp")
    assert len(got) == 16, got
    ids = {x.qid for x in got}
    ports = {x.peer[1] for x in got}
    assert ids != {0x1234} and len(ids) >= 14, "upstream IDs not random: %s" % sorted(ids)
    assert len(ports) >= 2, "all 16 upstream queries came from one source port %s" % ports


class TestLargeAnswer:
    """big.test TXT is about 3.4 KB: more than 512 and 1232, less than 4096."""

    def test_udp_without_edns_truncated(self, dotward, nsd):
        d = dotward(upstreams=[upstream_of(nsd)])
        before = d.stats()
        q = make_query("big.test.", "TXT", qid=777)
        raw = udp_exchange(d.addr, d.port, q.to_wire())
        assert raw is not None, d.describe()
        assert len(raw) <= 512, "UDP answer of %d bytes to a client without EDNS" % len(raw)
        r = dns.message.from_wire(raw)
        assert r.id == 777 and r.flags & dns.flags.TC, "TC not set: %s" % r
        assert r.question[0].name.to_text() == "big.test."
        assert d.stats()["truncated"] > before["truncated"]

    def test_udp_edns_4096_whole(self, dotward, nsd):
        d = dotward(upstreams=[upstream_of(nsd)])
        q = make_query("big.test.", "TXT", edns=4096)
        raw = udp_exchange(d.addr, d.port, q.to_wire())
        assert raw is not None, d.describe()
        r = dns.message.from_wire(raw)
        assert not r.flags & dns.flags.TC, "TC set although the answer fits 4096 (%d bytes)" % len(raw)
        assert sorted(rrset_values(r, "TXT")) == sorted(big_txt_strings())
        assert len(raw) <= 4096

    def test_udp_edns_1232_truncated(self, dotward, nsd):
        d = dotward(upstreams=[upstream_of(nsd)])
        q = make_query("big.test.", "TXT", edns=1232)
        raw = udp_exchange(d.addr, d.port, q.to_wire())
        assert raw is not None, d.describe()
        assert len(raw) <= 1232, "answer of %d bytes to a client with EDNS 1232" % len(raw)
        r = dns.message.from_wire(raw)
        assert r.flags & dns.flags.TC
        assert len(rrset_values(r, "TXT")) < BIG_TXT_COUNT

    def test_tcp_whole(self, dotward, nsd):
        d = dotward(upstreams=[upstream_of(nsd)])
        r = ask(d.addr, d.port, "big.test.", "TXT", "tcp")
        assert not r.flags & dns.flags.TC
        assert sorted(rrset_values(r, "TXT")) == sorted(big_txt_strings())

    def test_small_answer_not_truncated(self, dotward, nsd):
        d = dotward(upstreams=[upstream_of(nsd)])
        r = ask(d.addr, d.port, "www.test.", "A")
        assert not r.flags & dns.flags.TC and rrset_values(r, "A") == [WWW_A]
