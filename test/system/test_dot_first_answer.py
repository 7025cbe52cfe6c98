"""A fresh DoT connection does not make its first answer late.

TLS 1.3 servers send their session tickets before the first answer; if
dotward delayed its ACK of them, a server that waits for that ACK (Nagle)
would hold the first answer for the kernel's delayed-ACK timer, 40 ms. With
upstream-tcp-idle short enough that every round opens a new connection to
NSD (strict DoT), the first answer of a round (handshake included) must
come within 5 ms of the later ones (medians of 8 rounds: the figure is a
guard against tens of milliseconds, not a benchmark).
"""
import os
import statistics
import time

import dns.message
import dns.query

import harness
from test_control import Ctl, ctl_bin, sockdir  # noqa: F401 (fixtures)
from test_state import DotNsd, dot_addr, need_dot  # noqa: F401 (fixture)


def test_first_answer_on_a_fresh_connection_is_not_late(need_dot, dotward, ctl_bin, sockdir, tmp_path):  # noqa: F811
    addr = dot_addr()
    n = DotNsd(str(tmp_path / "nsd"), addr, harness.free_port(addr)).start()
    try:
        conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s:%d tls=strict name=state.test ca=%s\n"
                "upstream-tcp-idle = 300ms\n" % (addr, n.port, n.cert))
        sock = os.path.join(sockdir, "ctl.sock")
        d = dotward(config=conf, args=["--control", sock])
        assert harness.wait_until(lambda: os.path.exists(sock), 5)
        fresh, later = [], []
        for _ in range(8):
            time.sleep(0.45)  # the connection idles out: the next query opens a new one
            for j in range(3):
                q = dns.message.make_query("www.test.", "A")
                t0 = time.monotonic()
                r = dns.query.udp(q, d.addr, port=d.port, timeout=2)
                (fresh if j == 0 else later).append((time.monotonic() - t0) * 1000)
                assert harness.rrset_values(r, "A") == [harness.WWW_A], r
        assert Ctl(ctl_bin, sock, d).stats()["dot_connections"] >= 8, "the rounds did not open new connections"
        f, l = statistics.median(fresh), statistics.median(later)
        assert f - l < 5.0, "first answers %.1f ms, later ones %.1f ms (medians): %s / %s" % (f, l, fresh, later)
    finally:
        n.stop()
