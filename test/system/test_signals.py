"""Signals: SIGUSR1 stats, SIGINT/SIGTERM exit 0, draining in-flight queries
(also under load), and drain-timeout bounding the exit."""
import signal
import socket
import threading
import time

import dns.message

from fakeupstream import fake_a
from harness import ask, make_query, rcode_text, rrset_values, tcp_exchange

STATS_KEYS = ("queries_udp queries_tcp answered servfail refused_acl dropped_acl malformed_dropped "
              "formerr_sent notimp_sent overload upstream_udp upstream_tcp upstream_tc "
              "upstream_timeouts spoofed_source spoofed_id spoofed_question upstream_malformed "
              "truncated tcp_clients_rejected").split()


def test_stats_line(dotward, fake):
    f = fake()
    d = dotward(upstreams=[f.server])
    before = d.stats()
    missing = [k for k in STATS_KEYS if k not in before]
    assert not missing, "stats line lacks %s\n%s" % (missing, d.describe())
    ask(d.addr, d.port, "st1.fake.", "A")
    ask(d.addr, d.port, "st2.fake.", "A", "tcp")
    after = d.stats()
    assert after["queries_udp"] - before["queries_udp"] == 1, (before, after)
    assert after["queries_tcp"] - before["queries_tcp"] == 1, (before, after)
    assert after["answered"] - before["answered"] == 2, (before, after)
    assert after["upstream_udp"] - before["upstream_udp"] == 1, (before, after)
    assert after["upstream_tcp"] - before["upstream_tcp"] == 1, (before, after)
    assert d.alive()


def test_sigint_exits_0_and_logs_stats(dotward, fake):
    f = fake()
    d = dotward(upstreams=[f.server])
    ask(d.addr, d.port, "int.fake.", "A")
    n = d.stderr().count("stats:")
    assert d.stop(signal.SIGINT) == 0, d.describe()
    assert d.stderr().count("stats:") > n, "no stats line at exit\n" + d.describe()
    assert d.last_stats()["answered"] >= 1


def test_sigterm_drains_in_flight_tcp(dotward, fake):
    f = fake(delay=0.5)
    d = dotward(upstreams=[f.server])
    result = {}

    def client():
        result["raw"] = tcp_exchange(d.addr, d.port, make_query("drain.fake.", "A", qid=77).to_wire(),
                                     timeout=5)
    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 3
    while f.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f.count() == 1, "query never reached the upstream\n" + d.describe()
    d.send_signal(signal.SIGTERM)
    t.join(6)
    assert d.wait_exit() == 0, d.describe()
    raw = result.get("raw")
    assert raw is not None, "in-flight TCP query not answered during drain\n" + d.describe()
    r = dns.message.from_wire(raw)
    assert r.id == 77 and rrset_values(r, "A") == [fake_a(f.tag, "drain.fake")], r


def test_drain_timeout_bounds_exit(dotward, fake):
    f = fake("silent")
    d = dotward(config="[server]\nlisten = {listen}\ndrain-timeout = 1s\n[forward]\n"
                       "upstream = %s\ntimeout = 6s\nattempt-timeout = 6s\n" % f.server)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((d.addr, d.port))
    s.send(make_query("stuck.fake.", "A").to_wire())
    deadline = time.monotonic() + 3
    while f.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f.count() == 1, d.describe()
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    rc = d.wait_exit(cap=8)
    took = time.monotonic() - t0
    s.close()
    assert rc == 0, d.describe()
    assert took <= 1.0 + 1.0, "exit took %.2fs with drain-timeout = 1s" % took


def test_sigterm_under_load(dotward, fake):
    """2,000 UDP queries from 4 sockets against a 200 ms upstream; SIGTERM right
    after the last one is sent. Every query dotward received gets its answer."""
    f = fake(delay=0.2)
    d = dotward(upstreams=[f.server])
    before = d.stats()
    nthreads, per = 4, 500
    wires = [[make_query("l%d-%d.load.fake." % (t, i), "A", qid=i).to_wire() for i in range(per)]
             for t in range(nthreads)]
    socks = []
    for _ in range(nthreads):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.connect((d.addr, d.port))
        socks.append(s)
    got = [dict() for _ in range(nthreads)]
    bad = []
    stop = threading.Event()

    def receiver(t):
        s = socks[t]
        s.settimeout(0.05)
        while not stop.is_set():
            try:
                raw = s.recv(65535)
            except (socket.timeout, ConnectionRefusedError):
                continue
            r = dns.message.from_wire(raw)
            name = "l%d-%d.load.fake." % (t, r.id)
            ok = (rcode_text(r) == "NOERROR" and r.question[0].name.to_text() == name
                  and rrset_values(r, "A") == [fake_a(f.tag, name)])
            if not ok:
                bad.append(r)
            got[t][r.id] = ok

    def sender(t):
        for i, w in enumerate(wires[t]):
            socks[t].send(w)
            if i % 5 == 4:
                time.sleep(0.001)  # ~20k queries/s in all: a burst, not a socket-buffer overflow

    receivers = [threading.Thread(target=receiver, args=(t,)) for t in range(nthreads)]
    senders = [threading.Thread(target=sender, args=(t,)) for t in range(nthreads)]
    for th in receivers + senders:
        th.start()
    t0 = time.monotonic()
    for th in senders:
        th.join(10)
    send_time = time.monotonic() - t0
    answered_at_signal = sum(len(g) for g in got)
    d.send_signal(signal.SIGTERM)
    t_sig = time.monotonic()
    try:
        rc = d.wait_exit(cap=10)
        exit_after = time.monotonic() - t_sig
        time.sleep(0.3)  # answers still on their way through loopback
    finally:
        stop.set()
        for th in receivers:
            th.join(2)
        for s in socks:
            s.close()

    sent = nthreads * per
    answered = sum(len(g) for g in got)
    exit_stats = d.last_stats()
    received = exit_stats["queries_udp"] - before["queries_udp"]
    report = ("sent %d in %.2fs, answered %d before SIGTERM, dotward received %d, answered %d in all, "
              "%d wrong; exit %s after %.2fs; upstream saw %d; exit stats %s" % (
                  sent, send_time, answered_at_signal, received, answered, len(bad), rc, exit_after,
                  f.count(), exit_stats))
    print(report)
    assert rc == 0, report + "\n" + d.describe()
    assert answered_at_signal < sent, "SIGTERM came after all answers, not in the middle: " + report
    assert received >= sent // 2, "most queries never reached dotward (kernel drops?): " + report
    assert answered == received, "queries received but not answered during drain: " + report
    assert not bad, "wrong answers, first: %s; %s" % (bad[0], report)
    assert exit_after <= 3.0 + 1.5, "drain exceeded drain-timeout (3s): " + report
