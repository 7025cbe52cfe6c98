"""Zone routing (longest suffix wins), the client ACL, and the resolv.conf default."""
import os

import socket

import pytest

import harness
from fakeupstream import fake_a
from harness import KNOT_ONLY_A, WWW_A, ask, make_query, rcode_text, rrset_values, exchange


def srv(s):
    return "%s:%d" % (s.addr, s.port)


def test_zone_to_scripted_upstream(dotward, nsd, fake):
    f = fake()
    d = dotward(upstreams=["sub.test=%s" % f.server, srv(nsd)])
    for name in ("www.sub.test.", "a.b.sub.test.", "sub.test."):
        r = ask(d.addr, d.port, name, "A")
        assert rrset_values(r, "A") == [fake_a(f.tag, name)], "%s: %s" % (name, r)
    r = ask(d.addr, d.port, "www.test.", "A")
    assert rrset_values(r, "A") == [WWW_A]
    # label boundary: xsub.test is not under sub.test
    r = ask(d.addr, d.port, "www.xsub.test.", "A")
    assert rcode_text(r) == "NXDOMAIN", r
    seen = f.names()
    assert sorted(seen) == sorted(["www.sub.test.", "a.b.sub.test.", "sub.test."]), seen


def test_zone_to_knot(dotward, nsd, knot):
    """www.sub.test exists only in knot's copy of the zone."""
    d = dotward(upstreams=["sub.test=%s" % srv(knot), srv(nsd)])
    for transport in ("udp", "tcp"):
        r = ask(d.addr, d.port, "www.sub.test.", "A", transport)
        assert rrset_values(r, "A") == [KNOT_ONLY_A], "%s: not routed to knot: %s" % (transport, r)
        r = ask(d.addr, d.port, "www.test.", "A", transport)
        assert rrset_values(r, "A") == [WWW_A]
    # and the same name without the zone rule goes to NSD, which does not have it
    d2 = dotward(upstreams=[srv(nsd)])
    assert rcode_text(ask(d2.addr, d2.port, "www.sub.test.", "A")) == "NXDOMAIN"


def test_longest_suffix_wins(dotward, fake):
    zone_test, zone_sub, default = fake(), fake(), fake()
    # less specific first, so a first-match router would get it wrong
    d = dotward(upstreams=[default.server, "test=%s" % zone_test.server,
                           "sub.test=%s" % zone_sub.server])
    cases = [("deep.www.sub.test.", zone_sub), ("www.test.", zone_test),
             ("www.example.", default), ("WWW.SUB.TEST.", zone_sub)]
    for name, f in cases:
        r = ask(d.addr, d.port, name, "A")
        assert rrset_values(r, "A") == [fake_a(f.tag, name)], "%s went to the wrong upstream" % name
    assert zone_sub.count() == 2 and zone_test.count() == 1 and default.count() == 1


def test_acl_refused(dotward, nsd):
    d = dotward(config="[server]\nlisten = {listen}\nallow = 10.0.0.0/8\n"
                       "[forward]\nupstream = %s\n" % srv(nsd))
    before = d.stats()
    r = ask(d.addr, d.port, "www.test.", "A", "udp", qid=321)
    assert rcode_text(r) == "REFUSED", "loopback client outside allow got %s" % rcode_text(r)
    assert r.id == 321 and not r.answer
    after = d.stats()
    assert after["refused_acl"] == before["refused_acl"] + 1, (before, after)


def test_acl_refused_tcp_closed_at_accept(dotward, nsd):
    """Over TCP the ACL applies at accept: the connection is closed before
    anything is read, so a refused source never holds a client slot."""
    d = dotward(config="[server]\nlisten = {listen}\nallow = 10.0.0.0/8\n"
                       "[forward]\nupstream = %s\n" % srv(nsd))
    before = d.stats()
    s = socket.create_connection((d.addr, d.port), timeout=3.0)
    try:
        s.settimeout(3.0)
        try:
            got = s.recv(1)
        except ConnectionResetError:
            got = b""
        assert got == b"", "a refused TCP client got bytes instead of a closed connection"
    finally:
        s.close()
    after = d.stats()
    assert after["refused_acl"] == before["refused_acl"] + 1, (before, after)
    assert after["queries_tcp"] == before["queries_tcp"], "a refused TCP client's query was read"


def test_acl_drop(dotward, nsd):
    d = dotward(config="[server]\nlisten = {listen}\nallow = 10.0.0.0/8\nrefused-action = drop\n"
                       "[forward]\nupstream = %s\n" % srv(nsd), udp_probe=False)
    before = d.stats()
    wire = make_query("www.test.", "A").to_wire()
    assert exchange(d.addr, d.port, wire, "udp", timeout=1.0) is None, "dropped client got an answer"
    assert exchange(d.addr, d.port, wire, "tcp", timeout=1.0) is None, "dropped TCP client got an answer"
    after = d.stats()
    assert after["dropped_acl"] - before["dropped_acl"] >= 1, (before, after)


def test_acl_repeatable_allow(dotward, nsd):
    d = dotward(config="[server]\nlisten = {listen}\nallow = 10.0.0.0/8\nallow = 127.0.0.0/8\n"
                       "[forward]\nupstream = %s\n" % srv(nsd))
    r = ask(d.addr, d.port, "www.test.", "A")
    assert rrset_values(r, "A") == [WWW_A], r


@pytest.fixture(scope="module")
def nsd53(tmp_path_factory):
    """NSD on 127.0.0.X port 53: resolv.conf has no port syntax."""
    harness.need("nsd")
    if os.geteuid() != 0:
        pytest.skip("binding port 53 needs root")
    addr = harness.free_addr_port53()
    s = harness.Nsd(tmp_path_factory.mktemp("nsd53"), addr, 53).start()
    yield s
    s.stop()


def test_resolv_conf_default(dotward, nsd53, tmp_path):
    rc = tmp_path / "resolv.conf"
    rc.write_text("# written by the test\nsearch example.invalid\noptions ndots:1\n"
                  "nameserver %s\n" % nsd53.addr)
    d = dotward(resolv_conf=rc)
    for transport in ("udp", "tcp"):
        r = ask(d.addr, d.port, "www.test.", "A", transport)
        assert rrset_values(r, "A") == [WWW_A], "%s: %s" % (transport, r)
