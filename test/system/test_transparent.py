"""Transparent mode, IPv4 and IPv6: an unmodified client's DNS to any server
is intercepted (TPROXY) and upgraded per destination IP, in both
deployments.

Network namespaces of the test's own, joined by veth pairs, no link to the
host, documentation addresses only:
  host:    `res` (the client, dotward and the interception rules) -- `net`
  gateway: `lan` (the client) -- `gw` (a router: dotward and the rules) -- `net`
In `net`, the servers:
  198.51.100.11 / 2001:db8:2::11  NSD with DoT on 853 (and Do53)
  198.51.100.12 / 2001:db8:2::12  NSD, Do53 only (853 refused)
The client asks those addresses directly, as a recursive resolver would,
over UDP and TCP; nothing names dotward. Checks:
  - every answer is the zone's, from the address asked (the client's socket
    is connected: a reply from elsewhere would not reach it)
  - the queries reached dotward (its counters), and went to the address asked
  - after warm-up the DoT server's IPs are Good and the other's Bad
  - with port 53 of the DoT server dropped in `net` (nft, counted), its
    names still resolve: the queries travelled over DoT, and the drop
    counter shows nothing was even tried on 53
"""
import json
import os
import shutil
import time

import pytest

import harness
import minet
from harness import WWW_A, WWW_AAAA
from minet import nsx, policy_route, sh, veth
from test_control import ctl_bin  # noqa: F401 (fixture)

MARK = 0xD53
TPORT = 5301
DOT_V4, PLAIN_V4 = "198.51.100.11", "198.51.100.12"
DOT_V6, PLAIN_V6 = "2001:db8:2::11", "2001:db8:2::12"


@pytest.fixture(params=["host", "gateway", "host-printed-rules", "gateway-printed-rules"])
def lab(request, tmp_path):
    """Each deployment twice: with rules written here, and with the rules
    `dotward --print-rules` prints (and its policy-routing lines)."""
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("nsd"):
        pytest.skip("needs root, nft and nsd")
    mode, _, printed = request.param.partition("-")
    printed = bool(printed)
    tag = "%d" % os.getpid()
    net = "dwtn" + tag
    client = "dwtc" + tag                     # host: the client and dotward; gateway: the client
    proxy_ns = client if mode == "host" else "dwtg" + tag
    spaces = [client, net] + ([proxy_ns] if mode == "gateway" else [])
    procs = []
    world = minet.Spaces()
    dw = None
    try:
        for ns in spaces:
            world.add(ns)
        minet.add_lo_addrs(net, (DOT_V4, PLAIN_V4, DOT_V6, PLAIN_V6))
        if mode == "host":
            veth(client, "dwa" + tag, "192.0.2.1/24", "2001:db8:1::1/64",
                 net, "dwb" + tag, "192.0.2.254/24", "2001:db8:1::fe/64")
            nsx(client, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
            nsx(client, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:1::fe")
            # locally generated port-53 traffic, except dotward's own (its mark)
            if not printed:
                policy_route(client)
                minet.load_host_rules(client, MARK, TPORT)
            tlisten = ("127.0.0.1:%d" % TPORT, "[::1]:%d" % TPORT)
        else:
            lan = "dwl" + tag
            veth(client, "dwc" + tag, "192.0.2.2/24", "2001:db8:1::2/64",
                 proxy_ns, lan, "192.0.2.1/24", "2001:db8:1::1/64")
            veth(proxy_ns, "dwu" + tag, "203.0.113.1/24", "2001:db8:3::1/64",
                 net, "dwn" + tag, "203.0.113.254/24", "2001:db8:3::fe/64")
            nsx(client, "ip", "route", "add", "default", "via", "192.0.2.1")
            nsx(client, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
            nsx(proxy_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            nsx(proxy_ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            nsx(proxy_ns, "ip", "route", "add", "198.51.100.0/24", "via", "203.0.113.254")
            nsx(proxy_ns, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:3::fe")
            nsx(net, "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
            nsx(net, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:3::1")
            if not printed:
                policy_route(proxy_ns)
                minet.load_gateway_rules(proxy_ns, lan, TPORT)
            tlisten = ("0.0.0.0:%d" % TPORT, "[::]:%d" % TPORT)

        d = str(tmp_path)
        tls = minet.make_cert(d, "state.test")
        for name, addrs, dot in (("dot", (DOT_V4, DOT_V6), True), ("plain", (PLAIN_V4, PLAIN_V6), False)):
            procs.append(minet.start_nsd(net, os.path.join(d, "nsd-" + name), addrs,
                                         {"test.": harness.zone_text()}, tls if dot else None, provide_xfr=True))
        dw = minet.NsDotward(proxy_ns, d, tlisten, MARK)
        if printed:
            minet.load_printed_rules(proxy_ns, dw.conf, mode, [] if mode == "host" else [lan])
        dw.start()

        def ask(server, transport="udp", name="www.test.", rdtype="A"):
            return minet.ask_process(client, server, transport, name, rdtype)

        deadline = time.monotonic() + 10
        while ask(DOT_V4) != WWW_A and time.monotonic() < deadline:
            time.sleep(0.2)
        yield {"net": net, "client": client, "ask": ask, "sock": dw.sock, "log": dw.log, "dotward": dw.proc, "mode": mode}
    finally:
        if dw is not None:
            dw.stop()
        for p in procs:
            p.stop()
        world.delete_all()


def ctl(lab, ctl_bin, *args):  # noqa: F811
    return sh(ctl_bin, "-s", lab["sock"], *args).stdout


def stats(lab, ctl_bin):  # noqa: F811
    return dict(line.split("=", 1) for line in ctl(lab, ctl_bin, "stats").split() if "=" in line)


def test_intercepts_and_upgrades(lab, ctl_bin):  # noqa: F811
    ask = lab["ask"]
    want = {"A": WWW_A, "AAAA": WWW_AAAA}
    for server in (DOT_V4, PLAIN_V4, DOT_V6, PLAIN_V6):
        for transport in ("udp", "tcp"):
            for rdtype in ("A", "AAAA"):
                got = ask(server, transport, "www.test.", rdtype)
                assert got == want[rdtype], "%s %s over %s: %r\n%s" % (server, rdtype, transport, got, lab["log"]())
    st = stats(lab, ctl_bin)
    assert int(st["queries_udp"]) >= 8 and int(st["queries_tcp"]) >= 8, st
    # warm-up: each IP visited enough to be probed; then its status settles
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for server in (DOT_V4, PLAIN_V4, DOT_V6, PLAIN_V6):
            ask(server)
        entries = {e["ip"]: e for e in json.loads(ctl(lab, ctl_bin, "dump-probes", "--json"))}
        st4, st6 = entries.get(DOT_V4, {}).get("status"), entries.get(DOT_V6, {}).get("status")
        if st4 == "good" and st6 == "good" and entries.get(PLAIN_V4, {}).get("status") == "bad" \
                and entries.get(PLAIN_V6, {}).get("status") == "bad":
            break
        time.sleep(0.3)
    assert entries[DOT_V4]["status"] == "good" and entries[DOT_V6]["status"] == "good", entries
    assert entries[PLAIN_V4]["status"] == "bad" and entries[PLAIN_V6]["status"] == "bad", entries
    assert "refused" in entries[PLAIN_V4]["last_outcome"], entries[PLAIN_V4]
    # filed under the question that brought each IP in (its last two labels)
    assert entries[DOT_V4]["domain"] == "www.test.", entries[DOT_V4]
    # DoT proven: port 53 of the DoT server dropped (and counted) in the servers' namespace
    nsx(lab["net"], "nft", "-f", "-", input="""
table inet drop53 {
  chain in {
    type filter hook input priority 0; policy accept;
    ip daddr %s meta l4proto { udp, tcp } th dport 53 counter drop
    ip6 daddr %s meta l4proto { udp, tcp } th dport 53 counter drop
  }
}
""" % (DOT_V4, DOT_V6))
    for server in (DOT_V4, DOT_V6):
        for transport in ("udp", "tcp"):
            got = ask(server, transport)
            assert got == WWW_A, "%s over %s with its port 53 dropped: %r\n%s" % (server, transport, got,
                                                                                   lab["log"]())
    # the privacy share, measured: every query to a Good IP after warm-up went over DoT
    s1 = stats(lab, ctl_bin)
    for i in range(10):
        for server in (DOT_V4, DOT_V6):
            assert ask(server, "udp", "www.test.") == WWW_A
    s2 = stats(lab, ctl_bin)
    good = int(s2["good_queries"]) - int(s1["good_queries"])
    good_dot = int(s2["good_queries_dot"]) - int(s1["good_queries_dot"])
    assert good == 20 and good_dot == 20, (good, good_dot)
    assert "went over DoT" in ctl(lab, ctl_bin, "status")
    # a zone transfer across the interception: over DoT too (XoT), port 53 being dropped
    records = len([ln for ln in harness.zone_text().splitlines() if " IN " in ln])
    for server in (DOT_V4, DOT_V6):
        got = minet.axfr_count(lab["client"], server, "test.")
        assert got == str(records), "AXFR of test. from %s: %r records, the zone has %d\n%s" % (
            server, got, records, lab["log"]())
    assert int(stats(lab, ctl_bin)["xfr_completed"]) >= 2
    counters = nsx(lab["net"], "nft", "list", "table", "inet", "drop53").stdout
    assert "packets 0 " in counters and "packets 1" not in counters, counters
    st = stats(lab, ctl_bin)
    assert int(st["dot_answers"]) >= 4, st
    # Port 853 of the DoT server black-holed mid-run (both its addresses): no query fails
    # (within the client's 3 s timeout), the live connections are found dead and their
    # queries go over Do53, and the IPs go Bad with the reason.
    minet.nft_delete(lab["net"], "inet", "drop53")
    nsx(lab["net"], "nft", "-f", "-", input="""
table inet drop853 {
  chain in {
    type filter hook input priority 0; policy accept;
    ip daddr %s tcp dport 853 counter drop
    ip6 daddr %s tcp dport 853 counter drop
  }
}
""" % (DOT_V4, DOT_V6))
    t0 = time.monotonic()
    slow = []
    for i in range(6):
        for server in (DOT_V4, DOT_V6):
            t = time.monotonic()
            got = lab["ask"](server, "udp", "www.test.")
            slow.append(round(time.monotonic() - t, 2))
            assert got == WWW_A, "%s with its 853 black-holed: %r (after %s)\n%s" % (server, got, slow,
                                                                                      lab["log"]())
    entries = {e["ip"]: e for e in json.loads(ctl(lab, ctl_bin, "dump-probes", "--json"))}
    for ip in (DOT_V4, DOT_V6):
        assert entries[ip]["status"] == "bad", (ip, entries[ip], slow)
    assert max(slow) < 3.0, slow
    assert time.monotonic() - t0 < 30
