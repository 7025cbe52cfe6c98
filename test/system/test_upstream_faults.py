"""Upstreams that fail: silent, closed, slow, garbage, spoofed answers."""
import socket
import time

import dns.message
import pytest

from fakeupstream import SPOOF_A, fake_a
from harness import ADDRS, ask, make_query, rcode_text, rrset_values, udp_exchange

DEFAULT_TIMEOUT = 2.5
MARGIN = 0.5


def timed_ask(d, name, transport="udp", cap=6.0):
    t0 = time.monotonic()
    r = ask(d.addr, d.port, name, "A", transport, timeout=cap)
    return r, time.monotonic() - t0


def test_silent_first_server_second_answers(dotward, fake):
    silent, good = fake("silent"), fake()
    d = dotward(upstreams=[silent.server, good.server])
    for i in range(3):
        name = "s%d.silent.fake." % i
        r, took = timed_ask(d, name)
        assert rcode_text(r) == "NOERROR", "%s: %s after %.2fs" % (name, rcode_text(r), took)
        assert rrset_values(r, "A") == [fake_a(good.tag, name)]
        assert took < DEFAULT_TIMEOUT, "%s took %.2fs (timeout %.1fs)" % (name, took, DEFAULT_TIMEOUT)
    assert silent.count() >= 1, "the first-listed server was never tried, the test proves nothing"


def test_closed_port_first_server_second_answers(dotward, fake):
    good = fake()
    closed_addr = ADDRS.take()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((closed_addr, 0))
    closed_port = s.getsockname()[1]
    s.close()  # nothing listens there now: ICMP port unreachable / TCP RST
    d = dotward(upstreams=["%s:%d" % (closed_addr, closed_port), good.server])
    for transport in ("udp", "tcp"):
        r, took = timed_ask(d, "closed.fake.", transport)
        assert rrset_values(r, "A") == [fake_a(good.tag, "closed.fake")], r
        assert took < DEFAULT_TIMEOUT, "%s: %.2fs" % (transport, took)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_all_silent_servfail_within_timeout(dotward, fake, transport):
    a, b = fake("silent"), fake("silent")
    d = dotward(upstreams=[a.server, b.server])
    before = d.stats()
    r, took = timed_ask(d, "dead.fake.", transport)
    assert rcode_text(r) == "SERVFAIL", rcode_text(r)
    assert took <= DEFAULT_TIMEOUT + MARGIN, "SERVFAIL after %.2fs" % took
    assert a.count() >= 1 and b.count() >= 1, "not every server was tried: %s / %s" % (
        a.queries(), b.queries())
    after = d.stats()
    assert after["servfail"] > before["servfail"]
    assert after["upstream_timeouts"] > before["upstream_timeouts"]


def test_configured_timeout_honoured(dotward, fake):
    a = fake("silent")
    d = dotward(config="[server]\nlisten = {listen}\n[forward]\nupstream = %s\n"
                       "timeout = 1s\nattempt-timeout = 300ms\n" % a.server)
    r, took = timed_ask(d, "dead2.fake.")
    assert rcode_text(r) == "SERVFAIL"
    assert took <= 1.0 + MARGIN, "SERVFAIL after %.2fs with timeout = 1s" % took


def test_slow_upstream_waited_for(dotward, fake):
    """A 300 ms answer is inside attempt-timeout (800 ms): taken, no second try."""
    f = fake(delay=0.3)
    d = dotward(upstreams=[f.server])
    r, took = timed_ask(d, "slow.fake.")
    assert rrset_values(r, "A") == [fake_a(f.tag, "slow.fake")]
    assert 0.29 <= took < 0.8, took
    assert f.count() == 1, "query re-sent before attempt-timeout: %s" % f.queries()


def test_garbage_then_real_answer(dotward, fake):
    f = fake("garbage_then_real")
    d = dotward(upstreams=[f.server])
    before = d.stats()
    r, took = timed_ask(d, "junk.fake.")
    assert rcode_text(r) == "NOERROR" and rrset_values(r, "A") == [fake_a(f.tag, "junk.fake")]
    after = d.stats()
    assert after["upstream_malformed"] > before["upstream_malformed"], (before, after)


def test_garbage_only_servfail(dotward, fake):
    f = fake("garbage")
    d = dotward(upstreams=[f.server])
    r, took = timed_ask(d, "junk2.fake.")
    assert rcode_text(r) == "SERVFAIL"
    assert took <= DEFAULT_TIMEOUT + MARGIN, took
    assert d.alive()


@pytest.mark.parametrize("mode,counter", [
    ("spoof_id", "spoofed_id"),
    ("spoof_port", "spoofed_source"),
    ("spoof_question", "spoofed_question"),
])
def test_spoofed_answer_ignored(dotward, fake, mode, counter):
    """The spoof arrives 100 ms before the real answer and must be dropped."""
    f = fake(mode)
    d = dotward(upstreams=[f.server])
    before = d.stats()
    for i in range(3):
        name = "sp%d.fake." % i
        q = make_query(name, "A", qid=4242 + i)
        raw = udp_exchange(d.addr, d.port, q.to_wire())
        assert raw is not None, d.describe()
        r = dns.message.from_wire(raw)
        assert r.id == 4242 + i
        got = rrset_values(r, "A")
        assert SPOOF_A not in got, "spoofed answer (%s) reached the client" % mode
        assert got == [fake_a(f.tag, name)], got
    after = d.stats()
    assert after[counter] - before[counter] >= 3, "%s did not count the spoofs: %s -> %s" % (
        counter, before.get(counter), after.get(counter))
