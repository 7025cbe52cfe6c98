"""`dotward --print-rules host|gateway`: the printed nftables ruleset and
policy routing, loaded for real, with dotward NOT running.

Three network namespaces of their own, with no link to the host's:

    res (192.0.2.1, 2001:db8:1::1) -- gw (192.0.2.254 | 203.0.113.1) -- srv (203.0.113.2)
                                       (2001:db8:1::fe | 2001:db8:2::1)   (2001:db8:2::2)

srv answers DNS on 198.51.100.53 and 2001:db8:53::53 (on its loopback,
routed through gw) and counts every query it gets. Host mode loads the rules
in gw and asks from gw itself; gateway mode loads them in gw (LAN side lan0)
and asks from res. Fail closed: no answer, and srv sees nothing. Fail open
(gateway): srv answers directly. With a transparent listener standing in for
dotward (a few lines of Python, not dotward's data path), the queries reach
it with their original destination and srv sees nothing: the rules do
intercept, and are not merely dropping everything."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

import dotlab
import harness
from dotlab import sh

SERVERS = {"4": "198.51.100.53", "6": "2001:db8:53::53"}
ALL_ANSWERED = {k: "answer" for k in ("udp4", "udp6", "tcp4", "tcp6")}
CONF = "[transparent]\nlisten = 127.0.0.1:5301\nlisten = [::1]:5301\n"

# Answers every query with its own question (QR=1, NOERROR), over UDP and
# TCP, from the address it was asked on; one line per query on stdout.
RESPONDER = r"""
import select, socket, struct, sys
socks = []
for fam, ip in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    for typ in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(fam, typ)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, 53))
        if typ == socket.SOCK_STREAM:
            s.listen(8)
        socks.append(s)
answer = lambda q: q[:2] + bytes([q[2] | 0x80, 0x80]) + q[4:]
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_DGRAM:
            q, peer = s.recvfrom(4096)
            print("udp", peer[0], flush=True)
            s.sendto(answer(q), peer)
            continue
        c, peer = s.accept()
        c.settimeout(3)
        try:
            while True:   # every query on the connection, until the client closes it
                n = struct.unpack("!H", c.recv(2))[0]
                q = b""
                while len(q) < n:
                    q += c.recv(n - len(q))
                print("tcp", peer[0], flush=True)
                a = answer(q)
                c.sendall(struct.pack("!H", len(a)) + a)
        except (OSError, struct.error):
            pass
        c.close()
"""

# Asks each server over UDP and TCP at once (1 s each); prints JSON
# {"udp4": "answer" | "timeout" | "error ...", ...}. argv[1]: SO_MARK or 0.
CLIENT = r"""
import json, socket, struct, sys, threading
mark = int(sys.argv[1], 0)
servers = json.loads(sys.argv[2])
q = struct.pack("!6H", 0x5151, 0x0100, 1, 0, 0, 0) + b"\x03www\x04test\x00" + struct.pack("!HH", 1, 1)
out = {}
def ask(proto, fam, ip):
    s = socket.socket(socket.AF_INET if fam == "4" else socket.AF_INET6,
                      socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    if mark:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    s.settimeout(1.0)
    try:
        if proto == "udp":
            s.sendto(q, (ip, 53))
            a = s.recv(4096)
        else:
            s.connect((ip, 53))
            s.sendall(struct.pack("!H", len(q)) + q)
            a = s.recv(4096)[2:]
        out[proto + fam] = "answer" if a[:2] == q[:2] and a[2] & 0x80 else "bad answer"
    except socket.timeout:
        out[proto + fam] = "timeout"
    except OSError as e:
        out[proto + fam] = "error %s" % e
    finally:
        s.close()
ts = [threading.Thread(target=ask, args=(p, f, ip)) for p in ("udp", "tcp") for f, ip in servers.items()]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(out))
"""

# Stands in for dotward's transparent listener: IP_TRANSPARENT sockets on
# the given addresses; prints "udp|tcp ORIGINAL-DESTINATION" per query and
# never answers.
LISTENER = r"""
import select, socket, sys
IP_TRANSPARENT, IP_RECVORIGDSTADDR, IPV6_TRANSPARENT, IPV6_RECVORIGDSTADDR = 19, 20, 75, 74
socks = []
for arg in sys.argv[1:]:
    ip, port = arg.rsplit("@", 1)
    v6 = ":" in ip
    for typ in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, typ)
        lvl = socket.IPPROTO_IPV6 if v6 else socket.SOL_IP
        s.setsockopt(lvl, IPV6_TRANSPARENT if v6 else IP_TRANSPARENT, 1)
        if typ == socket.SOCK_DGRAM:
            s.setsockopt(lvl, IPV6_RECVORIGDSTADDR if v6 else IP_RECVORIGDSTADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, int(port)))
        if typ == socket.SOCK_STREAM:
            s.listen(8)
        socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_STREAM:
            c, _ = s.accept()
            print("tcp", c.getsockname()[0], flush=True)
            c.close()
            continue
        _, anc, _, _ = s.recvmsg(4096, 256)
        for lvl, typ, data in anc:
            if lvl == socket.SOL_IP and typ == IP_RECVORIGDSTADDR:
                print("udp", socket.inet_ntop(socket.AF_INET, data[4:8]), flush=True)
            elif lvl == socket.IPPROTO_IPV6 and typ == IPV6_RECVORIGDSTADDR:
                print("udp", socket.inet_ntop(socket.AF_INET6, data[8:24]), flush=True)
"""


class Lab:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        tag = "dwt-%d-tr" % os.getpid()
        self.res, self.gw, self.srv = tag + "res", tag + "gw", tag + "srv"
        self.procs = []

    def ip(self, ns, *args):
        sh(["ip", "-n", ns] + list(args))

    def up(self):
        for ns in (self.res, self.gw, self.srv):
            sh(["ip", "netns", "add", ns])
            self.ip(ns, "link", "set", "lo", "up")
        self.ip(self.res, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", self.gw)
        self.ip(self.gw, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", self.srv)
        for ns, dev, addrs in ((self.res, "eth0", ("192.0.2.1/24", "2001:db8:1::1/64")),
                               (self.gw, "lan0", ("192.0.2.254/24", "2001:db8:1::fe/64")),
                               (self.gw, "wan0", ("203.0.113.1/24", "2001:db8:2::1/64")),
                               (self.srv, "eth0", ("203.0.113.2/24", "2001:db8:2::2/64"))):
            for a in addrs:
                self.ip(ns, "addr", "add", a, "dev", dev, "nodad")
            self.ip(ns, "link", "set", dev, "up")
        self.ip(self.srv, "addr", "add", SERVERS["4"] + "/32", "dev", "lo")
        self.ip(self.srv, "addr", "add", SERVERS["6"] + "/128", "dev", "lo")
        for ns, v4, v6 in ((self.res, "192.0.2.254", "2001:db8:1::fe"), (self.gw, "203.0.113.2", "2001:db8:2::2"),
                           (self.srv, "203.0.113.1", "2001:db8:2::1")):
            self.ip(ns, "route", "add", "default", "via", v4)
            self.ip(ns, "-6", "route", "add", "default", "via", v6)
        sh(["ip", "netns", "exec", self.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1"])
        self.responder_log = self.start(self.srv, "responder", RESPONDER, SERVERS["4"], SERVERS["6"])
        return self

    def start(self, ns, name, code, *args):
        """A Python helper in `ns`, its stdout in a file; waits for "ready"."""
        path = str(self.tmp / (name + ".out"))
        with open(path, "w") as out:
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code] + list(args),
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        assert harness.wait_until(lambda: "ready" in harness.read_text(path) or p.poll() is not None, cap=5)
        assert p.poll() is None, "%s did not start:\n%s" % (name, harness.read_text(path))
        return path

    def lines(self, path):
        return [l for l in harness.read_text(path).splitlines() if l != "ready"]

    def ask(self, ns, mark=0):
        r = sh(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, str(mark), json.dumps(SERVERS)])
        return json.loads(r.stdout)

    def load(self, ruleset):
        """`nft -f` the printed ruleset in gw, and run its `# setup:` commands there."""
        sh(["ip", "netns", "exec", self.gw, "nft", "-f", "-"], input=ruleset)
        setup = [l[len("# setup: "):] for l in ruleset.splitlines() if l.startswith("# setup: ")]
        assert any(c.startswith("ip rule") for c in setup) and any(c.startswith("ip -6 route") for c in setup)
        for cmd in setup:
            sh(["ip", "netns", "exec", self.gw] + cmd.split())

    def counters(self):
        return sh(["ip", "netns", "exec", self.gw, "nft", "list", "table", "inet", "dotward"]).stdout

    def down(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(3)
        for ns in (self.res, self.gw, self.srv):
            dotlab.delete_ns(ns)


def print_rules(dotward_bin, tmp_path, args, conf=CONF):
    path = tmp_path / "dotward.conf"
    path.write_text(conf)
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 127.0.0.1\n")
    return harness.run_dotward(dotward_bin, ["--print-rules"] + list(args) +
                               ["-c", str(path), "--resolv-conf", str(rc)], tmp_path)


def need_netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    harness.need("nft")


@pytest.fixture
def lab(tmp_path):
    need_netns()
    dotlab.clean_stale()
    lab = Lab(tmp_path)
    try:
        lab.up()
        # Without rules, every query reaches srv and is answered (once the
        # new links carry IPv6: the first tries may time out).
        got = []
        assert harness.wait_until(lambda: got.append(lab.ask(lab.res)) or got[-1] == ALL_ANSWERED, cap=8), got
        assert len(lab.lines(lab.responder_log)) >= 4
        yield lab
    finally:
        lab.down()


MODES = {
    "host": (["host"], "gw"),
    "gateway": (["gateway", "--rules-iface", "lan0"], "res"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_fail_closed_nothing_leaves_while_dotward_is_down(lab, dotward_bin, tmp_path, mode):
    args, client = MODES[mode]
    p = print_rules(dotward_bin, tmp_path, args)
    assert p.returncode == 0, p.stderr
    lab.load(p.stdout)
    seen = len(lab.lines(lab.responder_log))
    got = lab.ask(getattr(lab, client))
    assert all(v != "answer" for v in got.values()), got
    assert len(lab.lines(lab.responder_log)) == seen, "srv got queries: %s" % lab.lines(lab.responder_log)
    dropped = [l for l in lab.counters().splitlines() if l.strip().startswith("counter") and "drop" in l]
    assert dropped and "packets 0 " not in dropped[-1], lab.counters()


def test_gateway_fail_open_servers_answer_directly_while_dotward_is_down(lab, dotward_bin, tmp_path):
    p = print_rules(dotward_bin, tmp_path, ["gateway", "--rules-iface", "lan0", "--rules-fail-open"])
    assert p.returncode == 0, p.stderr
    assert "Fail open" in p.stdout
    lab.load(p.stdout)
    seen = len(lab.lines(lab.responder_log))
    assert lab.ask(lab.res) == ALL_ANSWERED
    assert len(lab.lines(lab.responder_log)) == seen + 4


@pytest.mark.parametrize("mode,fail_open", [("host", False), ("gateway", False), ("gateway", True)])
def test_a_transparent_listener_gets_the_queries(lab, dotward_bin, tmp_path, mode, fail_open):
    args, client = MODES[mode]
    p = print_rules(dotward_bin, tmp_path, args + (["--rules-fail-open"] if fail_open else []))
    assert p.returncode == 0, p.stderr
    lab.load(p.stdout)
    listener = lab.start(lab.gw, "listener", LISTENER, "127.0.0.1@5301", "::1@5301")
    seen = len(lab.lines(lab.responder_log))
    lab.ask(getattr(lab, client))
    got = sorted(lab.lines(listener))
    want = sorted("%s %s" % (proto, ip) for proto in ("udp", "tcp") for ip in SERVERS.values())
    assert got == want, "listener got %s\n%s" % (got, lab.counters())
    assert len(lab.lines(lab.responder_log)) == seen
    if mode == "host":
        # dotward's own upstream queries carry its mark: they go straight to srv.
        assert lab.ask(lab.gw, mark=0xd53) == ALL_ANSWERED
        assert len(lab.lines(lab.responder_log)) == seen + 4
        assert sorted(lab.lines(listener)) == want


CHECKED = [
    ["host"],
    ["host", "--rules-uid", "root"],
    ["host", "--rules-uid", "0"],
    ["gateway", "--rules-iface", "lan0"],
    ["gateway", "--rules-iface", "lan0", "--rules-iface", "wlan*", "--rules-fail-open"],
]


@pytest.mark.parametrize("conf", [CONF, "[transparent]\nlisten = 127.0.0.1:5301\n",
                                  "[transparent]\nlisten = [::1]:5301\nmark = 0x100\n",
                                  "[transparent]\nlisten = 0.0.0.0:5301\nlisten = [::]:5301\n"],
                         ids=["v4+v6", "v4", "v6", "wildcard"])
@pytest.mark.parametrize("args", CHECKED, ids=lambda a: "-".join(x.strip("-*") for x in a))
def test_printed_rulesets_pass_nft_check(dotward_bin, tmp_path, conf, args):
    need_netns()
    p = print_rules(dotward_bin, tmp_path, args, conf)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("#!/usr/sbin/nft -f\n") and p.stderr == ""
    assert p.stdout.count("table inet dotward {") == 1
    ns = "dwt-%d-trchk" % os.getpid()
    sh(["ip", "netns", "add", ns])
    try:
        r = sh(["ip", "netns", "exec", ns, "nft", "-c", "-f", "-"], input=p.stdout, check=False)
        assert r.returncode == 0, r.stderr + p.stdout
    finally:
        dotlab.delete_ns(ns)
    has = {"4": re.search(r"^listen = \d", conf, re.M) is not None, "6": "listen = [" in conf}
    for fam, route in (("4", "ip route replace local 0.0.0.0/0"), ("6", "ip -6 route replace local ::/0")):
        assert (("# setup: " + route) in p.stdout) == has[fam], p.stdout


@pytest.mark.parametrize("args,conf,message", [
    (["bridge"], CONF, "the mode is host or gateway"),
    (["host"], "", "no [transparent] listen address"),
    (["gateway", "--rules-iface", "lan0"], "[server]\nlisten = 127.0.0.1:5353\n", "no [transparent] listen"),
    (["gateway"], CONF, "--rules-iface IFNAME"),
    (["host", "--rules-iface", "lan0"], CONF, "--rules-iface is for gateway mode"),
    (["gateway", "--rules-iface", "lan0\"; drop"], CONF, "not an interface name"),
    (["host", "--rules-fail-open"], CONF, "--rules-fail-open is for gateway mode"),
    (["gateway", "--rules-iface", "lan0", "--rules-uid", "root"], CONF, "--rules-uid is for host mode"),
    (["host", "--rules-uid", "x y"], CONF, "not a user name"),
    (["host"], CONF + "mark = 0\n", "mark is 0"),
    (["host"], CONF + "mark = 0xd54\n", "choose another"),
], ids=["mode", "no-listen", "server-listen-only", "no-iface", "iface-host", "bad-iface", "open-host",
        "uid-gateway", "bad-uid", "mark0", "route-mark"])
def test_print_rules_refuses_with_status_2(dotward_bin, tmp_path, args, conf, message):
    p = print_rules(dotward_bin, tmp_path, args, conf)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert message in p.stderr
    assert p.stdout == ""


def test_rules_flags_need_print_rules(dotward_bin, tmp_path):
    p = harness.run_dotward(dotward_bin, ["--check-config", "--rules-fail-open"], tmp_path)
    assert p.returncode == 2 and "go with --print-rules" in p.stderr


# One TCP connection, two queries 1.5 s apart; prints what each got.
SLOW_CLIENT = r"""
import socket, struct, sys, time
q = struct.pack("!6H", 0x5151, 0x0100, 1, 0, 0, 0) + b"\x03www\x04test\x00" + struct.pack("!HH", 1, 1)
s = socket.create_connection((sys.argv[1], 53), timeout=2)
for i in range(2):
    if i:
        time.sleep(1.5)
    try:
        s.sendall(struct.pack("!H", len(q)) + q)
        a = s.recv(4096)[2:]
        print("answer" if a[:2] == q[:2] else "bad answer", flush=True)
    except OSError as e:
        print("error", e, flush=True)
"""


def test_gateway_fail_open_keeps_a_connection_made_while_dotward_was_down(lab, dotward_bin, tmp_path):
    """Only new TCP connections go to tproxy: one opened while nobody
    listened carries on to its server after the listener comes up, instead
    of being reset by it."""
    p = print_rules(dotward_bin, tmp_path, ["gateway", "--rules-iface", "lan0", "--rules-fail-open"])
    assert p.returncode == 0, p.stderr
    lab.load(p.stdout)
    seen = len(lab.lines(lab.responder_log))
    out = tmp_path / "slow.out"
    with open(str(out), "w") as f:
        c = subprocess.Popen(["ip", "netns", "exec", lab.res, sys.executable, "-c", SLOW_CLIENT, SERVERS["4"]],
                             stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert harness.wait_until(lambda: "answer" in harness.read_text(str(out)), cap=3), harness.read_text(str(out))
        listener = lab.start(lab.gw, "listener", LISTENER, "127.0.0.1@5301", "::1@5301")
        c.wait(5)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait(3)
    assert harness.read_text(str(out)).split() == ["answer", "answer"], harness.read_text(str(out))
    assert lab.lines(listener) == []
    assert lab.lines(lab.responder_log)[seen:] == ["tcp 192.0.2.1"] * 2
    # A new connection now goes to the listener.
    lab.ask(lab.res)
    assert "tcp " + SERVERS["4"] in lab.lines(listener)


def test_host_rules_uid_intercept_only_that_user(lab, dotward_bin, tmp_path):
    """--rules-uid nobody: root's queries (the client runs as root) are not
    intercepted, so with fail-closed rules and no listener they are still
    answered by the server."""
    p = print_rules(dotward_bin, tmp_path, ["host", "--rules-uid", "65534"])
    assert p.returncode == 0, p.stderr
    lab.load(p.stdout)
    seen = len(lab.lines(lab.responder_log))
    assert lab.ask(lab.gw) == ALL_ANSWERED
    assert len(lab.lines(lab.responder_log)) == seen + 4
    p = print_rules(dotward_bin, tmp_path, ["host", "--rules-uid", "0"])
    lab.load(p.stdout)
    assert all(v != "answer" for v in lab.ask(lab.gw).values())
    assert len(lab.lines(lab.responder_log)) == seen + 4
