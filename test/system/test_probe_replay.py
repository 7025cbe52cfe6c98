"""The probe asks what a real query would (RFC 9539): the question the IP
has just answered over Do53, not SOA.

The IP's DoT side is a scripted TLS server that answers every query but
never an SOA one; its plain side a scripted upstream. Two queries go out
over Do53 (the IP is Unknown), the second brings the probe
(probe-after-visits = 2): it replays the first query's question, gets its
answer over TLS, and the IP is Good; the next query goes over DoT. With an
SOA probe the server would never answer and the IP would go Bad.
"""
import os

import harness
from fakeupstream import FakeUpstream, fake_a
from harness import free_port, rrset_values, wait_until
from test_arch_regressions import ask, ctl_for
from test_control import Ctl, ctl_bin, sockdir  # noqa: F401 (fixtures)
from test_dot_slow import DelayingDot, dot_a
from test_state import dot_addr, make_cert, need_dot  # noqa: F401 (fixture)

CONF = """[server]
listen = {listen}
[forward]
upstream = %s
[probe]
probe-on-start = no
probe-after-visits = 2
probe-timeout = 2s
"""


def test_probe_replays_a_question_the_ip_answered(need_dot, dotward, ctl_bin, sockdir, tmp_path):  # noqa: F811
    addr = dot_addr()
    key, cert = make_cert(str(tmp_path))
    dot = DelayingDot(addr, cert, key, answer_soa=False).start()
    plain = FakeUpstream(addr, 63, port=free_port(addr)).start()
    try:
        sock = os.path.join(sockdir, "ctl.sock")
        d = dotward(config=CONF % plain.server, args=["--control", sock])
        ctl = ctl_for(d, ctl_bin, sock)
        for name in ("first.replay.test.", "second.replay.test."):
            r = ask(d, name)
            assert rrset_values(r, "A") == [fake_a(plain.tag, name)], r
        assert wait_until(lambda: (ctl.entry(addr) or {}).get("status") in ("good", "bad"), 6), ctl.entry(addr)
        e = ctl.entry(addr)
        assert e["status"] == "good", "the probe did not succeed: %s (the server saw %s)" % (e, dot.asked)
        assert dot.asked and dot.asked[0] in ("first.replay.test.", "second.replay.test."), dot.asked
        r = ask(d, "third.replay.test.")
        assert rrset_values(r, "A") == [dot_a("third.replay.test.")], "not answered over DoT: %s" % r
    finally:
        dot.stop()
        plain.stop()
