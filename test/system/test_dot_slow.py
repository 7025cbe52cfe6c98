"""Slow DoT answers never leak a name in cleartext; only a dead connection
falls back.

A scripted DoT server (TLS, real sockets on loopback) answers every query,
some of them late: a name whose first label is `dNNN` is answered after NNN
ms, the others at once, on the same pipelined connection. The same IP's
plain port is a scripted upstream that records every name it is asked, so
"nothing in cleartext" is read off the server side, not inferred.

  - dot-fallback = availability (default): every query answered over DoT,
    the delayed ones included; nothing on the plain port; the IP stays Good
  - dot-fallback = privacy with an answer later than the budget: SERVFAIL,
    nothing on the plain port; availability with the same delay: the last
    part of the budget goes over Do53 and the client is answered
  - a dead path (the server's packets dropped by nft after the connection is
    up, so dotward's bytes stay unacknowledged): the query falls back long
    before the budget ends, and the connection failure is recorded
"""
import os
import random
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import harness
from fakeupstream import FakeUpstream, fake_a
from harness import free_port, rcode_text, rrset_values, wait_until
from test_arch_regressions import ScriptedDot, ask, ctl_for
from test_control import Ctl, ctl_bin, sockdir  # noqa: F401 (fixtures)
from test_state import DOT_PORT, dot_addr, make_cert, need_dot  # noqa: F401 (fixture)

DOT_TAG = 61


def dot_a(name):
    return fake_a(DOT_TAG, name)


class DelayingDot(ScriptedDot):
    """TLS on port 853; answers every query with an A record of its own
    (fake_a(DOT_TAG, name)), a name whose first label is dNNN after NNN ms.
    Answers leave in the order they are due, so late ones overtake nothing."""

    def __init__(self, addr, cert, key, answer_soa=True):
        super().__init__(addr, "delaying", cert, key)
        self.asked = []
        self.answer_soa = answer_soa  # False: SOA queries are never answered
        self.timers = {}  # id(connection) -> the delayed answers still due on it

    def on_query(self, q, send, tls):
        qn = q.question[0].name
        r = dns.message.make_response(q)
        if q.question[0].rdtype == dns.rdatatype.SOA:
            if self.answer_soa:
                send(r.to_wire())
                with self._lock:
                    self.soa_answered += 1
            return True
        name = qn.to_text().lower()
        with self._lock:
            self.asked.append(name)
        r.answer.append(dns.rrset.from_text(qn, 60, "IN", "A", dot_a(name)))
        first = qn.labels[0].decode().lower() if qn.labels else ""
        m = re.fullmatch(r"d(\d+)", first)
        if m:
            t = threading.Timer(int(m.group(1)) / 1000.0, send, args=(r.to_wire(),))
            t.daemon = True
            t.start()
            with self._lock:
                self.timers.setdefault(id(tls), []).append(t)
        else:
            send(r.to_wire())
        return True

    def connection_done(self, tls):
        with self._lock:
            timers = self.timers.pop(id(tls), [])
        for t in timers:
            t.cancel()


CONF = """[server]
listen = {listen}
[forward]
upstream = %(plain)s
timeout = %(timeout)s
attempt-timeout = %(attempt)s
[probe]
probe-on-start = yes
probe-timeout = 2s
dot-fallback = %(mode)s
"""


@pytest.fixture
def slow_lab(need_dot, dotward, ctl_bin, sockdir, tmp_path):  # noqa: F811
    """slow_lab(mode, timeout, attempt) -> (dotward, Ctl, DelayingDot, FakeUpstream),
    the IP Good (its probe answered over TLS)."""
    made = []

    def start(mode="availability", timeout="2.5s", attempt="800ms"):
        addr = dot_addr()
        key, cert = make_cert(str(tmp_path))
        dot = DelayingDot(addr, cert, key).start()
        made.append(dot)
        plain = FakeUpstream(addr, 62, port=free_port(addr)).start()
        made.append(plain)
        sock = os.path.join(sockdir, "ctl.sock")
        d = dotward(config=CONF % {"plain": plain.server, "timeout": timeout, "attempt": attempt, "mode": mode},
                    args=["--control", sock])
        ctl = ctl_for(d, ctl_bin, sock)
        assert wait_until(lambda: (ctl.entry(addr) or {}).get("status") == "good", 5), \
            "%s never became Good: %s\n%s" % (addr, ctl.entry(addr), d.describe())
        return d, ctl, dot, plain

    yield start
    for m in made:
        m.stop()


def ask_rcode(d, name, timeout=4.0):
    q = dns.message.make_query(name, "A")
    return dns.query.udp(q, d.addr, port=d.port, timeout=timeout)


def test_delayed_answers_wait_on_dot(slow_lab):
    """100 queries, 10 of them answered 0.3-1.5 s late (recursive cache
    misses): every one answered over DoT, none seen on the plain port, the
    IP still Good, no connection failure recorded."""
    d, ctl, dot, plain = slow_lab()
    rnd = random.Random(9539)
    names = []
    for i in range(100):
        if i % 10 == 3:
            names.append("d%d.q%d.slow.test." % (rnd.randint(300, 1500), i))
        else:
            names.append("q%d.fast.test." % i)
    delayed = [n for n in names if n.startswith("d")]
    assert len(delayed) == 10

    def one(name):
        r = ask(d, name, timeout=4)
        return name, rcode_text(r), rrset_values(r, "A")

    with ThreadPoolExecutor(max_workers=10) as ex:
        got = list(ex.map(one, names))
    wrong = [(n, rc, a) for n, rc, a in got if rc != "NOERROR" or a != [dot_a(n)]]
    assert not wrong, "not answered over DoT: %s\n%s" % (wrong[:5], d.describe())
    assert plain.names() == [], "names seen in cleartext: %s" % plain.names()
    assert sorted(set(dot.asked)) == sorted(names)
    e = ctl.entry(dot.addr)
    assert e["status"] == "good", e
    st = ctl.stats()
    assert st["dot_slow"] >= len(delayed), "the delayed answers were not waited on as slow: %s" % st
    assert sum(v for k, v in st.items() if k.startswith("fallback_")) == 0, st
    assert st["upstream_dead_path"] == 0, st


def test_privacy_servfails_instead_of_cleartext(slow_lab):
    """An answer later than the budget: with privacy, SERVFAIL and nothing on
    the plain port; the next query on the same connection is still answered
    over DoT (a slow answer is not a dead connection)."""
    d, ctl, dot, plain = slow_lab(mode="privacy", timeout="1s", attempt="300ms")
    t0 = time.monotonic()
    r = ask_rcode(d, "d1800.late.test.")
    took = time.monotonic() - t0
    assert rcode_text(r) == "SERVFAIL", r
    assert 0.8 <= took <= 1.6, "SERVFAIL after %.2f s, the budget is 1 s" % took
    time.sleep(1.0)   # the late DoT answer arrives and is dropped
    assert plain.names() == [], "names seen in cleartext: %s" % plain.names()
    r = ask(d, "after.late.test.")
    assert rrset_values(r, "A") == [dot_a("after.late.test.")], r
    assert plain.names() == []
    e = ctl.entry(dot.addr)
    assert e["status"] == "good", e
    assert ctl.stats()["fallback_timeout"] == 0


def test_availability_falls_back_at_the_end_of_the_budget(slow_lab):
    """The same late answer with availability: at timeout - attempt-timeout
    the question goes over Do53 too, and the client gets that answer."""
    d, ctl, dot, plain = slow_lab(mode="availability", timeout="1s", attempt="300ms")
    t0 = time.monotonic()
    r = ask(d, "d1800.late.test.")
    took = time.monotonic() - t0
    assert rrset_values(r, "A") == [fake_a(plain.tag, "d1800.late.test.")], r
    assert 0.6 <= took <= 1.0, "answered after %.2f s; Do53 was due at 0.7 s" % took
    assert plain.names() == ["d1800.late.test."], plain.names()
    assert dot.asked == ["d1800.late.test."], "DoT was not asked first: %s" % dot.asked
    assert ctl.stats()["fallback_timeout"] == 1
    assert ctl.entry(dot.addr)["status"] == "good"


class NftDrop:
    """An nft table of its own in this namespace that drops what `addr`:853
    sends (loopback only): the path from the DoT server is dead."""

    def __init__(self, addr):
        self.table = "dotward_test_%d" % os.getpid()
        rules = ("table ip %s {\n chain c {\n  type filter hook input priority -10;\n"
                 "  ip saddr %s tcp sport %d counter drop\n }\n}\n" % (self.table, addr, DOT_PORT))
        subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True, timeout=10)

    def dropped(self):
        out = subprocess.run(["nft", "list", "table", "ip", self.table], capture_output=True, text=True,
                             timeout=10).stdout
        m = re.search(r"counter packets (\d+)", out)
        return int(m.group(1)) if m else 0

    def delete(self):
        subprocess.run(["nft", "delete", "table", "ip", self.table], timeout=10)


def test_dead_path_falls_back_before_the_budget(slow_lab):
    """Once the server's packets stop arriving, dotward's query bytes stay
    unacknowledged: TCP_INFO says the path is dead, the query goes over Do53
    long before the 2.5 s budget, and the failure is the connection's."""
    harness.need("nft")
    d, ctl, dot, plain = slow_lab()
    r = ask(d, "warm.dead.test.")
    assert rrset_values(r, "A") == [dot_a("warm.dead.test.")], r
    drop = NftDrop(dot.addr)
    try:
        t0 = time.monotonic()
        r = ask(d, "cut.dead.test.", timeout=4)
        took = time.monotonic() - t0
        assert rrset_values(r, "A") == [fake_a(plain.tag, "cut.dead.test.")], r
        assert drop.dropped() > 0, "nft dropped nothing: the test did not cut the path"
    finally:
        drop.delete()
    assert took < 1.5, "a dead path fell back after %.2f s (the budget's DoT part ends at 1.7 s)" % took
    st = ctl.stats()
    assert st["upstream_dead_path"] == 1, st
    assert st["fallback_timeout"] == 1, st
    assert re.search(r"dead path", d.stderr()) or ctl.entry(dot.addr).get("last_outcome") == "query-timeout", \
        d.describe()
