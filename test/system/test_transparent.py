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
import subprocess
import sys
import time

import pytest

import harness
from harness import WWW_A, WWW_AAAA
from test_control import ctl_bin  # noqa: F401 (fixture)
from test_state import make_cert

MARK = 0xD53
TPORT = 5301
DOT_V4, PLAIN_V4 = "198.51.100.11", "198.51.100.12"
DOT_V6, PLAIN_V6 = "2001:db8:2::11", "2001:db8:2::12"

CLIENT = r"""
import socket, sys, dns.message, dns.query
server, transport, name, rdtype = sys.argv[1:5]
q = dns.message.make_query(name, rdtype)
try:
    if transport == "udp":
        r = dns.query.udp(q, server, port=53, timeout=3)
    else:
        r = dns.query.tcp(q, server, port=53, timeout=3)
    print(" ".join(rr.to_text() for rrset in r.answer for rr in rrset) or dns.rcode.to_text(r.rcode()))
except Exception as e:
    print("ERROR %s" % type(e).__name__)
"""


def sh(*argv, check=True, input=None):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, input=input)
    if check and r.returncode != 0:
        raise AssertionError("%s -> %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


def nsx(ns, *argv, **kw):
    return sh("ip", "netns", "exec", ns, *argv, **kw)


HOST_RULES = """
table ip dwt4 {
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark %(mark)d return
    ip daddr 127.0.0.0/8 return
    udp dport 53 meta mark set 0x1
    tcp dport 53 meta mark set 0x1
  }
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iif "lo" meta mark 0x1 udp dport 53 tproxy to 127.0.0.1:%(port)d accept
    iif "lo" meta mark 0x1 tcp dport 53 tproxy to 127.0.0.1:%(port)d accept
  }
}
table ip6 dwt6 {
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark %(mark)d return
    ip6 daddr ::1 return
    udp dport 53 meta mark set 0x1
    tcp dport 53 meta mark set 0x1
  }
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iif "lo" meta mark 0x1 udp dport 53 tproxy to [::1]:%(port)d accept
    iif "lo" meta mark 0x1 tcp dport 53 tproxy to [::1]:%(port)d accept
  }
}
"""

# A router: DNS that LAN hosts send through it, to any server, goes to dotward.
GATEWAY_RULES = """
table inet dwtg {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "%(lan)s" meta nfproto ipv4 udp dport 53 tproxy ip to :%(port)d meta mark set 0x1 accept
    iifname "%(lan)s" meta nfproto ipv4 tcp dport 53 tproxy ip to :%(port)d meta mark set 0x1 accept
    iifname "%(lan)s" meta nfproto ipv6 udp dport 53 tproxy ip6 to :%(port)d meta mark set 0x1 accept
    iifname "%(lan)s" meta nfproto ipv6 tcp dport 53 tproxy ip6 to :%(port)d meta mark set 0x1 accept
  }
}
"""


def veth(tag, a_ns, a_dev, a4, a6, b_ns, b_dev, b4, b6):
    sh("ip", "link", "add", a_dev, "netns", a_ns, "type", "veth", "peer", "name", b_dev, "netns", b_ns)
    for ns, dev, v4, v6 in ((a_ns, a_dev, a4, a6), (b_ns, b_dev, b4, b6)):
        nsx(ns, "ip", "addr", "add", v4, "dev", dev)
        nsx(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
        nsx(ns, "ip", "link", "set", dev, "up")


def policy_route(ns):
    """What TPROXY needs: marked packets are delivered locally."""
    nsx(ns, "ip", "rule", "add", "fwmark", "0x1", "lookup", "100")
    nsx(ns, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
    nsx(ns, "ip", "-6", "rule", "add", "fwmark", "0x1", "lookup", "100")
    nsx(ns, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")


@pytest.fixture(params=["host", "gateway"])
def lab(request, tmp_path):
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("nsd"):
        pytest.skip("needs root, nft and nsd")
    mode = request.param
    tag = "%d" % os.getpid()
    net = "dwtn" + tag
    client = "dwtc" + tag                     # host: the client and dotward; gateway: the client
    proxy_ns = client if mode == "host" else "dwtg" + tag
    spaces = [client, net] + ([proxy_ns] if mode == "gateway" else [])
    procs = []
    for ns in spaces:
        sh("ip", "netns", "add", ns)
    try:
        for ns in spaces:
            nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
            nsx(ns, "ip", "link", "set", "lo", "up")
        for a in (DOT_V4 + "/32", PLAIN_V4 + "/32"):
            nsx(net, "ip", "addr", "add", a, "dev", "lo")
        for a in (DOT_V6 + "/128", PLAIN_V6 + "/128"):
            nsx(net, "ip", "-6", "addr", "add", a, "dev", "lo")
        if mode == "host":
            veth(tag, client, "dwa" + tag, "192.0.2.1/24", "2001:db8:1::1/64",
                 net, "dwb" + tag, "192.0.2.254/24", "2001:db8:1::fe/64")
            nsx(client, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
            nsx(client, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:1::fe")
            # locally generated port-53 traffic, except dotward's own (its mark)
            policy_route(client)
            nsx(client, "nft", "-f", "-", input=HOST_RULES % {"mark": MARK, "port": TPORT})
            tlisten = ("127.0.0.1:%d" % TPORT, "[::1]:%d" % TPORT)
        else:
            lan = "dwl" + tag
            veth(tag, client, "dwc" + tag, "192.0.2.2/24", "2001:db8:1::2/64",
                 proxy_ns, lan, "192.0.2.1/24", "2001:db8:1::1/64")
            veth(tag, proxy_ns, "dwu" + tag, "203.0.113.1/24", "2001:db8:3::1/64",
                 net, "dwn" + tag, "203.0.113.254/24", "2001:db8:3::fe/64")
            nsx(client, "ip", "route", "add", "default", "via", "192.0.2.1")
            nsx(client, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
            nsx(proxy_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            nsx(proxy_ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            nsx(proxy_ns, "ip", "route", "add", "198.51.100.0/24", "via", "203.0.113.254")
            nsx(proxy_ns, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:3::fe")
            nsx(net, "ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
            nsx(net, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:3::1")
            policy_route(proxy_ns)
            nsx(proxy_ns, "nft", "-f", "-", input=GATEWAY_RULES % {"lan": lan, "port": TPORT})
            tlisten = ("0.0.0.0:%d" % TPORT, "[::]:%d" % TPORT)

        d = str(tmp_path)
        key, cert = make_cert(d)
        zdir = os.path.join(d, "zones")
        os.makedirs(zdir)
        with open(os.path.join(zdir, "test.zone"), "w") as f:
            f.write(harness.zone_text())
        for name, addrs, dot in (("dot", (DOT_V4, DOT_V6), True), ("plain", (PLAIN_V4, PLAIN_V6), False)):
            ips = ["  ip-address: %s@53" % a for a in addrs]
            if dot:
                ips += ["  ip-address: %s@853" % a for a in addrs]
                ips += ["  tls-port: 853", '  tls-service-key: "%s"' % key, '  tls-service-pem: "%s"' % cert]
            conf = os.path.join(d, "nsd-%s.conf" % name)
            with open(conf, "w") as f:
                f.write("\n".join(["server:"] + ips + [
                    "  server-count: 1", '  username: ""', '  chroot: ""', '  database: ""',
                    "  rrl-ratelimit: 0", "  verbosity: 1", '  zonesdir: "%s"' % zdir,
                    '  zonelistfile: "%s/zl-%s"' % (d, name), '  xfrdfile: "%s/xfrd-%s"' % (d, name),
                    '  xfrdir: "%s"' % d, '  pidfile: "%s/nsd-%s.pid"' % (d, name),
                    '  logfile: "%s/nsd-%s.log"' % (d, name), "remote-control:", "  control-enable: no",
                    "zone:", '  name: "test."', '  zonefile: "test.zone"', ""]))
            procs.append(subprocess.Popen(["ip", "netns", "exec", net, "nsd", "-d", "-c", conf],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        rc = os.path.join(d, "resolv.conf")
        with open(rc, "w") as f:
            f.write("nameserver 127.0.0.1\n")
        sock = os.path.join(d, "ctl.sock")
        conf = os.path.join(d, "dotward.conf")
        with open(conf, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1:5353\ncontrol-socket = %s\n[forward]\nupstream = 127.0.0.1:9\n"
                    "resolv-conf = %s\n[probe]\nprobe-on-start = no\n[transparent]\nlisten = %s\n"
                    "listen = %s\nmark = %d\n" % (sock, rc, tlisten[0], tlisten[1], MARK))
        err = open(os.path.join(d, "dotward.err"), "w")
        dw = subprocess.Popen(["ip", "netns", "exec", proxy_ns, os.environ.get("DOTWARD_BIN", "build/dotward"),
                               "-c", conf], stdout=subprocess.DEVNULL, stderr=err)
        procs.append(dw)

        def ask(server, transport="udp", name="www.test.", rdtype="A"):
            return nsx(client, sys.executable, "-c", CLIENT, server, transport, name, rdtype).stdout.strip()

        def log():
            with open(os.path.join(d, "dotward.err")) as f:
                return f.read()[-4000:]

        deadline = time.monotonic() + 10
        while ask(DOT_V4) != WWW_A and time.monotonic() < deadline:
            time.sleep(0.2)
        yield {"net": net, "ask": ask, "sock": sock, "log": log, "dotward": dw, "mode": mode}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in spaces:
            sh("ip", "netns", "del", ns, check=False)


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
    counters = nsx(lab["net"], "nft", "list", "table", "inet", "drop53").stdout
    assert "packets 0 " in counters and "packets 1" not in counters, counters
    st = stats(lab, ctl_bin)
    assert int(st["dot_answers"]) >= 4, st
