"""System tests of the opportunistic DoT upgrade (RFC 9539), in network namespaces.

The lab (dotlab.py) is built once for this module: dotward runs in the client
namespace (192.0.2.1) and forwards to real servers in their own namespaces,
each with a different port-853 behaviour (see dotlab.SERVER_KINDS). Which
transport carried a query is proven from the outside: nft counters and drop
rules on port 53 in the server's namespace, and dotward's own counters.

Needs root, ip, nft, nsd, named, knotd, openssl; a missing program skips the
module and names it.
"""
import itertools
import os
import shutil
import socket
import threading
import time

import dns.message
import pytest

import dotlab
import harness
from dotlab import CLIENT_IP, SERVER_IPS

IP = SERVER_IPS
CERT_NAME = dotlab.AUTH_NAME


def _need(prog):
    if not (shutil.which(prog) or os.path.exists("/usr/sbin/" + prog)):
        pytest.skip("%s is not installed" % prog)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the DoT lab needs root (network namespaces)")
    for prog in ("ip", "nft", "nsd", "named", "knotd", "openssl"):
        _need(prog)
    lb = dotlab.Lab(tmp_path_factory.mktemp("dotlab"))
    try:
        lb.up()
        yield lb
    finally:
        lb.down()


_ports = itertools.count(5301)


@pytest.fixture
def dw(lab, dotward_bin, tmp_path):
    """Factory: dw(upstreams, probe={...}, forward={...}) -> a started
    LabDotward listening on 192.0.2.1:<port> in the client namespace. At
    teardown every instance must exit 0 on SIGTERM with a clean stderr."""
    started = []
    resolv = tmp_path / "resolv.conf"
    # Only for '.', which no test routes: a loopback address inside the lab.
    resolv.write_text("nameserver 127.0.0.1\n")

    def start(upstreams, probe=None, forward=None, ready=True):
        port = next(_ports)
        ctl = "/tmp/%sctl%d.sock" % (dotlab.PREFIX, port)
        p = {"probe-after-visits": "2", "probe-on-start": "yes", "max-busy-probes": "16",
             "probe-timeout": "1s", "persistence": "3d", "damping": "1d",
             "dot-fail-threshold": "3", "max-entries": "4096"}
        p.update(probe or {})
        f = {"timeout": "2.5s", "attempt-timeout": "800ms"}
        f.update(forward or {})
        text = ["[server]", "listen = %s:%d" % (CLIENT_IP, port), "allow = 192.0.2.0/24",
                "control-socket = %s" % ctl, "log-level = debug", "", "[forward]"]
        text += ["upstream = %s" % u for u in upstreams]
        text += ["resolv-conf = %s" % resolv]
        text += ["%s = %s" % kv for kv in f.items()]
        text += ["", "[probe]"] + ["%s = %s" % kv for kv in p.items()]
        d = dotlab.LabDotward(lab, dotward_bin, tmp_path, (CLIENT_IP, port), [], "\n".join(text) + "\n",
                              name="dotward%d" % len(started), control=ctl)
        started.append(d)
        d.start(ready=ready)
        return d

    yield start
    problems = []
    for d in started:
        was_running = d.alive()
        try:
            rc = d.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        mine = []
        if was_running and rc != 0:
            mine.append("dotward exited %s on SIGTERM (expected 0)" % rc)
        elif not was_running and rc not in (0, None):
            mine.append("dotward had already exited with %s before teardown" % rc)
        found = harness.sanitizer_findings(d.stderr())
        if found:
            mine.append("sanitizer report in stderr: %s" % ", ".join(found))
        if mine:
            problems += mine + [d.describe()]
        if d.control and os.path.exists(d.control):
            os.unlink(d.control)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def assert_www(r, what=""):
    assert r is not None, "no answer %s" % what
    assert harness.rcode_text(r) == "NOERROR" and harness.rrset_values(r, "A") == [harness.WWW_A], (
        "expected NOERROR www A %s %s, got:\n%s" % (harness.WWW_A, what, r))


def delta(after, before, *keys):
    return sum(after.get(k, 0) - before.get(k, 0) for k in keys)


FALLBACKS = ("fallback_connect", "fallback_tls", "fallback_timeout", "fallback_closed",
             "fallback_bad_answer", "fallback_reset")


def json_rows(js):
    """{ip: row} from the JSON dump: a list of rows, an object holding such a
    list, or an object keyed by IP."""
    rows = []
    if isinstance(js, list):
        rows = js
    elif isinstance(js, dict):
        lists = [v for v in js.values() if isinstance(v, list)]
        if lists:
            rows = lists[0]
        else:
            rows = [dict(v, ip=v.get("ip", k)) for k, v in js.items() if isinstance(v, dict)]
    return {str(r.get("ip")): r for r in rows if isinstance(r, dict)}


# --------------------------------------------------------------------------
# 1. the table

EXPECTED = {
    11: ("Good", None),
    12: ("Good", None),
    13: ("Bad", "connect-refused"),   # nothing on 853: the kernel answers RST
    14: ("Bad", "connect-timeout"),   # 853 dropped
    15: ("Bad", "connect-refused"),   # 853 reject with tcp reset
    16: ("Bad", "tls-failed"),        # accepts, never speaks TLS
    17: ("Bad", "bad-answer"),        # TLS, then garbage
}


def test_probe_table_statuses_and_reasons(dw):
    """Two visits to each upstream start its probe (probe-on-start off); the
    table ends Good for exactly the two DoT servers and Bad, with the right
    outcome, for each broken port 853. Clients are answered over Do53
    meanwhile."""
    d = dw(["s%d.test=%s" % (n, IP[n]) for n in EXPECTED],
           probe={"probe-on-start": "no", "probe-after-visits": "2"})
    for n in EXPECTED:
        for _ in range(2):
            assert_www(d.ask("www.s%d.test" % n), "for www.s%d.test" % n)

    def settled():
        t = d.dump()
        return all((t.get(IP[n]) or {}).get("status") in ("Good", "Bad") for n in EXPECTED)
    ok = harness.wait_until(settled, cap=6.0, step=0.1)
    table, js = d.dump(json_too=True)
    assert ok, "probes not finished after 6 s (probe-timeout 1 s): %s\n%s" % (table, d.describe())

    goods = sorted(ip for ip, e in table.items() if e["status"] == "Good")
    assert goods == sorted([IP[11], IP[12]]), "Good IPs %s, expected .11 and .12\n%s" % (goods, table)
    for n, (status, reason) in EXPECTED.items():
        e = table[IP[n]]
        assert e["status"] == status, "%s: %s, expected %s (%s)" % (IP[n], e["status"], status, e)
        if reason:
            assert e["reason"].startswith(reason), "%s: reason %r, expected %s...\n%s" % (
                IP[n], e["reason"], reason, d.describe())
    if "source" not in table[IP[11]]:   # the real dump, not the log fallback
        for n in EXPECTED:
            e = table[IP[n]]
            assert e["domain"] == "s%d.test." % n, e
            assert int(e["count"]) >= 2, e
            assert int(e["probes"]) >= 1, e
            if e["status"] == "Good":
                assert int(e["successes"]) >= 1 and e["completed"] != "-", e
            else:
                assert int(e["failures"]) >= 1 and e["completed"] != "-", e
        by_ip = json_rows(js)
        for n, (status, _) in EXPECTED.items():
            assert IP[n] in by_ip, "JSON dump lacks %s: %s" % (IP[n], js)
            assert str(by_ip[IP[n]].get("status")).lower() == status.lower(), by_ip[IP[n]]


# --------------------------------------------------------------------------
# 2. DoT really carries the queries

def test_good_ip_is_queried_over_dot_only(lab, dw):
    d = dw(["s11.test=%s" % IP[11]])
    d.wait_status(IP[11], "Good", cap=5)
    s0 = d.stats()
    for _ in range(5):
        assert_www(d.ask("www.s11.test"))
    s1 = d.stats()
    assert delta(s1, s0, "upstream_dot") >= 5 and delta(s1, s0, "dot_answers") >= 5, (
        "5 queries to a Good IP, but upstream_dot +%d, dot_answers +%d\n%s" % (
            delta(s1, s0, "upstream_dot"), delta(s1, s0, "dot_answers"), d.describe()))
    assert delta(s1, s0, "upstream_udp", "upstream_tcp") == 0

    # Port 53 closed at the server: only DoT can still carry them.
    fw = dotlab.Nft(lab, lab.ns("s11"), ['udp dport 53 counter drop comment "d53"',
                                        'tcp dport 53 counter drop comment "d53"'])
    try:
        for i in range(5):
            r, dt = d.ask_timed("www.s11.test", transport="udp" if i % 2 == 0 else "tcp")
            assert_www(r, "with port 53 dropped at .11 (%.2fs)" % dt)
        s2 = d.stats()
        assert delta(s2, s1, "dot_answers") >= 5, (s1, s2)
        assert fw.counters().get("d53", 0) == 0, "Do53 packets reached .11: %s" % fw.counters()
    finally:
        fw.delete()
    assert d.status(IP[11]) == "Good"


def test_ip_without_dot_stays_on_do53(lab, dw):
    d = dw(["s13.test=%s" % IP[13]], forward={"timeout": "1.5s"})
    e = d.wait_status(IP[13], "Bad", cap=5)
    assert e["reason"].startswith("connect-refused"), e
    s0 = d.stats()
    for _ in range(3):
        assert_www(d.ask("www.s13.test"))
    s1 = d.stats()
    assert delta(s1, s0, "upstream_udp") >= 3 and delta(s1, s0, "upstream_dot") == 0, (s0, s1)

    fw = dotlab.Nft(lab, lab.ns("s13"), ['udp dport 53 counter drop comment "d53"',
                                        'tcp dport 53 counter drop comment "d53"'])
    try:
        r, dt = d.ask_timed("www.s13.test", timeout=3)
        assert r is not None, "no answer at all (expected SERVFAIL within the 1.5 s timeout)"
        assert harness.rcode_text(r) == "SERVFAIL", "with 53 dropped at .13 (no DoT): %s" % r
        assert dt < 2.0, dt
        assert fw.counters().get("d53", 0) >= 1, "the query never tried Do53: %s" % fw.counters()
    finally:
        fw.delete()


# --------------------------------------------------------------------------
# 3. probes never delay clients

def _latencies(d, name, n=200):
    """n sequential UDP queries over one socket; returns the list of RTTs (s)."""
    with d.lab.cli():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((d.addr, d.port))
        s.settimeout(3.0)
        out = []
        for i in range(n):
            q = harness.make_query(name, "A", qid=(i * 7919 + 1) & 0xFFFF)
            t0 = time.monotonic()
            s.send(q.to_wire())
            while True:
                raw = s.recv(65535)
                r = dns.message.from_wire(raw)
                if r.id == q.id:
                    break
            out.append(time.monotonic() - t0)
            assert_www(r, "(query %d of %d)" % (i + 1, n))
        return out
    finally:
        s.close()


@pytest.mark.parametrize("trigger", ["on-start", "on-visit"])
def test_probe_in_flight_does_not_delay_clients(dw, trigger):
    base = dw(["s14.test=%s tls=off" % IP[14]])
    base_lat = _latencies(base, "www.s14.test")
    base.stop()
    # 853 of .14 is black-holed: its probe hangs for the whole probe-timeout.
    probe = {"probe-timeout": "3s"}
    if trigger == "on-visit":
        probe.update({"probe-on-start": "no", "probe-after-visits": "1"})
    d = dw(["s14.test=%s" % IP[14]], probe=probe)
    if trigger == "on-start":
        d.wait_status(IP[14], "Busy", cap=2)
    t0 = time.monotonic()
    lat = _latencies(d, "www.s14.test")
    took = time.monotonic() - t0
    status = d.status(IP[14])
    assert status == "Busy", "the probe was not in flight during the queries (status %s, %.2fs)\n%s" % (
        status, took, d.describe())
    b99, p99 = dotlab.percentile(base_lat, 99), dotlab.percentile(lat, 99)
    print("probe %s: p99 %.2f ms (max %.2f) vs baseline p99 %.2f ms (max %.2f)" % (
        trigger, p99 * 1e3, max(lat) * 1e3, b99 * 1e3, max(base_lat) * 1e3))
    # p99 of 200 hides one slow query: the one whose visit started the probe
    # (on-visit) must not have waited for it either (the probe takes 3 s).
    assert max(lat) < 0.2, "a query took %.0f ms while the probe ran (%s)" % (max(lat) * 1e3, trigger)
    assert p99 <= b99 + 0.010, (
        "p99 %.1f ms while probing vs %.1f ms without DoT (max %.1f ms, probe %s)" % (
            p99 * 1e3, b99 * 1e3, max(lat) * 1e3, trigger))
    e = d.wait_status(IP[14], "Bad", cap=4)
    assert e["reason"].startswith("connect-timeout"), e


# --------------------------------------------------------------------------
# 4. fallback under load

def _load(d, stop_at, results, n_threads=4, per_thread=125, gap=0.04):
    def worker(k):
        dotlab.enter_netns_for_thread(lab_ns)
        time.sleep(k * gap / n_threads)
        for i in range(per_thread):
            if time.monotonic() > stop_at:
                break
            q = harness.make_query("www.s11.test", "A")
            t0 = time.monotonic()
            raw = harness.udp_exchange(d.addr, d.port, q.to_wire(), timeout=4.0)
            dt = time.monotonic() - t0
            results.append((t0, dt, dns.message.from_wire(raw) if raw else None))
            time.sleep(max(0.0, gap - dt))
    lab_ns = d.lab.ns("cli")
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n_threads)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("cut", ["reset", "drop"])
def test_fallback_when_dot_dies_under_load(lab, dw, cut):
    d = dw(["s11.test=%s" % IP[11]], probe={"damping": "3s", "dot-fail-threshold": "3"})
    d.wait_status(IP[11], "Good", cap=5)
    assert_www(d.ask("www.s11.test"))
    s0 = d.stats()
    assert s0.get("dot_answers", 0) >= 1, s0

    results = []
    t_start = time.monotonic()
    threads = _load(d, t_start + 10.0, results)
    time.sleep(2.0)
    rule = "tcp dport 853 counter reject with tcp reset" if cut == "reset" else "tcp dport 853 counter drop"
    t_cut = time.monotonic()
    fw = dotlab.Nft(lab, lab.ns("s11"), [rule + ' comment "cut"'])
    try:
        for t in threads:
            t.join(15)
        s1 = d.stats()
        log_after_cut = d.stderr()
        hit = fw.counters().get("cut", 0)
        # Still cut: Bad, or Busy with a re-probe (damping 3 s) that will fail.
        status_cut = d.status(IP[11])
    finally:
        fw.delete()
    t_heal = time.monotonic()

    assert len(results) == 500, "load ran %d of 500 queries" % len(results)
    bad = [(round(t0 - t_start, 2), round(dt, 3), r and harness.rcode_text(r)) for t0, dt, r in results
           if r is None or harness.rcode_text(r) != "NOERROR" or harness.rrset_values(r, "A") != [harness.WWW_A]
           or dt > 2.5]
    after_cut = [r for t0, dt, r in results if t0 > t_cut]
    assert not bad, "%d of 500 queries not answered NOERROR within 2.5 s (t since start, s, rcode): %s\n%s" % (
        len(bad), bad[:20], d.describe())
    assert len(after_cut) >= 100, "only %d queries after the cut" % len(after_cut)
    assert hit >= 1, "no DoT packet met the cut: DoT was not in use"
    assert delta(s1, s0, *FALLBACKS) >= 1, "no fallback counted: %s" % {k: s1.get(k) for k in FALLBACKS}
    assert delta(s1, s0, "dot_answers") >= 20, "DoT did not carry the load before the cut: %s %s" % (s0, s1)
    went_bad = [t for t in dotlab.parse_transitions(log_after_cut) if t[0] == IP[11] and t[2] == "Bad"]
    assert went_bad, "%s never became Bad after its DoT was cut (%s)\n%s" % (IP[11], cut, d.describe())
    assert status_cut in ("Bad", "Busy"), "%s while 853 was still cut: %s" % (IP[11], status_cut)

    # Port 853 is back: after the damping (3 s), a visit re-probes it and DoT returns.
    def good_again():
        d.ask("www.s11.test")
        return d.status(IP[11]) == "Good"
    assert harness.wait_until(good_again, cap=10.0, step=0.2), (
        "%s not Good again within 10 s of 853 coming back (damping 3 s): %s\n%s" % (
            IP[11], d.dump().get(IP[11]), d.describe()))
    assert time.monotonic() - t_heal < 10.0
    s2 = d.stats()
    assert_www(d.ask("www.s11.test"))
    s3 = d.stats()
    assert delta(s3, s2, "dot_answers") >= 1, "Good again but the query did not go over DoT: %s %s" % (s2, s3)


# --------------------------------------------------------------------------
# 5. strict

def test_strict_wrong_name_fails_without_do53(lab, dw):
    fw = dotlab.Nft(lab, lab.ns("s11"), ['udp dport 53 counter comment "d53"',
                                        'tcp dport 53 counter comment "d53"',
                                        'tcp dport 853 counter comment "dot"'])
    try:
        d = dw(["s11.test=%s tls=strict name=wrong.test ca=%s" % (IP[11], lab.cert)],
               forward={"timeout": "1s"})
        s0 = d.stats()
        for transport in ("udp", "tcp"):
            r, dt = d.ask_timed("www.s11.test", transport=transport, timeout=3)
            assert r is not None, "no answer over %s (expected SERVFAIL)\n%s" % (transport, d.describe())
            assert harness.rcode_text(r) == "SERVFAIL" and not r.answer, (
                "strict upstream with a certificate for %s, not wrong.test, answered:\n%s" % (CERT_NAME, r))
        s1 = d.stats()
        c = fw.counters()
        assert c.get("d53", 0) == 0, "strict upstream: %d Do53 packets reached .11" % c.get("d53", 0)
        assert c.get("dot", 0) >= 1, "no packet to .11:853 at all: %s" % c
        assert delta(s1, s0, "strict_failures") >= 1, (s0, s1)
        assert delta(s1, s0, "dot_answers") == 0, (s0, s1)

        good = dw(["s11.test=%s tls=strict name=%s ca=%s" % (IP[11], CERT_NAME, lab.cert)])
        g0 = good.stats()
        for transport in ("udp", "tcp", "udp"):
            assert_www(good.ask("www.s11.test", transport=transport), "from a strict upstream")
        g1 = good.stats()
        assert delta(g1, g0, "dot_answers") >= 3, (g0, g1)
        assert fw.counters().get("d53", 0) == 0, "strict upstream: Do53 packets reached .11"
    finally:
        fw.delete()


# --------------------------------------------------------------------------
# 6. the server closes an idle DoT connection

@pytest.mark.parametrize("server", ["nsd", "scripted"])
def test_server_closing_idle_connection_is_not_a_failure(lab, dw, server):
    """NSD with tcp-timeout 1 s, and a scripted DoT server that hangs up on
    idle connections after 1.5 s with no keepalive hint (so dotward cannot
    close first): the IP stays Good and the next query reconnects over DoT."""
    n = 11 if server == "nsd" else 18
    if server == "nsd":
        lab.servers[11].restart_nsd(tcp_timeout=1)
    try:
        # Threshold 1: a close counted as a DoT failure would make it Bad at once.
        d = dw(["s%d.test=%s" % (n, IP[n])], probe={"dot-fail-threshold": "1"})
        d.wait_status(IP[n], "Good", cap=5)
        for _ in range(2):
            assert_www(d.ask("www.s%d.test" % n))
        s0 = d.stats()
        assert s0.get("dot_answers", 0) >= 2, s0
        time.sleep(3.0)     # idle: the server hangs up (or dotward honours its keepalive)
        conns = dotlab.sh(["ip", "netns", "exec", lab.ns("s%d" % n), "ss", "-Htn", "state", "established",
                           "sport", "= :853"]).stdout.strip()
        assert not conns, "DoT connection still open after 3 s idle:\n%s" % conns
        for i in range(3):
            assert_www(d.ask("www.s%d.test" % n), "after the idle close (query %d)" % (i + 1))
        s1 = d.stats()
        assert delta(s1, s0, "dot_connections") >= 1, "no new DoT connection: %s -> %s\n%s" % (
            s0.get("dot_connections"), s1.get("dot_connections"), d.describe())
        assert delta(s1, s0, "dot_answers") >= 3, "queries after the close not over DoT: %s %s" % (s0, s1)
        assert delta(s1, s0, *FALLBACKS) == 0, "fallbacks after a clean idle close: %s" % {
            k: s1.get(k, 0) - s0.get(k, 0) for k in FALLBACKS}
        assert d.status(IP[n]) == "Good"
        assert not [t for t in d.transitions(IP[n]) if t[2] == "Bad"], d.transitions(IP[n])
    finally:
        if server == "nsd":
            lab.servers[11].restart_nsd(tcp_timeout=None)
