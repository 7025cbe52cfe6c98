"""Building blocks for the transparent-mode tests: network namespaces joined
by veth pairs (no link to the host's namespace), the policy routing and
nftables rules that TPROXY needs, real DNS servers (NSD, knot, BIND) and
dotward started inside a namespace, and DNS clients that run there.

Used by test_transparent.py (two NSD servers, host and gateway deployments)
and test_transparent_internet.py (a root, TLDs, second-level servers and
real recursive resolvers). Only documentation addresses are used, and only
inside the namespaces the tests make; nothing is added to the host's own.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

import harness
from dotlab import LabProc, delete_ns, netns

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
BADTLS = os.path.join(HERE, "dotlab", "badtls.py")


def sh(*argv, check=True, input=None, timeout=30):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError("%s -> %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


def nsx(ns, *argv, **kw):
    return sh("ip", "netns", "exec", ns, *argv, **kw)


# --------------------------------------------------------------------------
# namespaces, links, routes

class Spaces:
    """Namespaces made by one test, deleted (with every process inside) at the end."""

    def __init__(self):
        self.names = []

    def add(self, name):
        sh("ip", "netns", "add", name)
        self.names.append(name)
        nsx(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
        nsx(name, "ip", "link", "set", "lo", "up")
        return name

    def delete_all(self):
        for name in reversed(self.names):
            delete_ns(name, grace=1.0)
        self.names = []


def veth(a_ns, a_dev, a4, a6, b_ns, b_dev, b4, b6):
    """A veth pair between two namespaces, with an IPv4 and an IPv6 address on
    each end, and each end's neighbour entries for the other set (permanent):
    with neighbour discovery on a fresh veth, the first IPv6 packet to the
    other end was sometimes lost (measured: a first TCP connect took 1.01 s,
    the SYN's retransmission), which a 1 s DoT probe reads as a timeout."""
    sh("ip", "link", "add", a_dev, "netns", a_ns, "type", "veth", "peer", "name", b_dev, "netns", b_ns)
    ends = ((a_ns, a_dev, a4, a6), (b_ns, b_dev, b4, b6))
    macs = {}
    for ns, dev, v4, v6 in ends:
        nsx(ns, "ip", "addr", "add", v4, "dev", dev)
        nsx(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
        nsx(ns, "ip", "link", "set", dev, "up")
        macs[dev] = json.loads(nsx(ns, "ip", "-j", "link", "show", dev).stdout)[0]["address"]
    for (ns, dev, _, _), (_, other, o4, o6) in ((ends[0], ends[1]), (ends[1], ends[0])):
        for addr in (o4.split("/")[0], o6.split("/")[0]):
            nsx(ns, "ip", "neigh", "replace", addr, "lladdr", macs[other], "dev", dev, "nud", "permanent")


def add_lo_addrs(ns, addrs):
    for a in addrs:
        if ":" in a:
            nsx(ns, "ip", "-6", "addr", "add", a + "/128", "dev", "lo")
        else:
            nsx(ns, "ip", "addr", "add", a + "/32", "dev", "lo")


def policy_route(ns):
    """What TPROXY needs: marked packets are delivered locally."""
    nsx(ns, "ip", "rule", "add", "fwmark", "0x1", "lookup", "100")
    nsx(ns, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
    nsx(ns, "ip", "-6", "rule", "add", "fwmark", "0x1", "lookup", "100")
    nsx(ns, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")


def nft(ns, text):
    nsx(ns, "nft", "-f", "-", input=text)


def nft_delete(ns, family, table):
    nsx(ns, "nft", "delete", "table", family, table, check=False)


def nft_counters(ns, family, table):
    """{comment: packets} of the counters in a table whose rules carry comments."""
    out = nsx(ns, "nft", "list", "table", family, table).stdout
    res = {}
    for line in out.splitlines():
        m = re.search(r"counter packets (\d+) bytes \d+.*comment \"([^\"]+)\"", line)
        if m:
            res[m.group(2)] = res.get(m.group(2), 0) + int(m.group(1))
    return res


# Host mode: locally generated port-53 traffic, except dotward's own (its
# mark) and loopback's, is delivered to dotward's transparent listeners.
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


def load_printed_rules(ns, conf, mode, ifaces=()):
    """The rules `dotward --print-rules MODE -c CONF` prints: its setup lines
    (policy routing) run in `ns`, then the ruleset loaded there."""
    argv = [os.environ.get("DOTWARD_BIN", os.path.join(harness.REPO, "build", "dotward")), "--print-rules", mode,
            "-c", conf]
    for i in ifaces:
        argv += ["--rules-iface", i]
    rules = sh(*argv).stdout
    for line in rules.splitlines():
        if line.startswith("# setup: "):
            nsx(ns, *line[len("# setup: "):].split())
    nsx(ns, "nft", "-f", "-", input=rules)


def load_host_rules(ns, mark, port):
    nft(ns, HOST_RULES % {"mark": mark, "port": port})


def unload_host_rules(ns):
    nft_delete(ns, "ip", "dwt4")
    nft_delete(ns, "ip6", "dwt6")


def load_gateway_rules(ns, lan, port):
    nft(ns, GATEWAY_RULES % {"lan": lan, "port": port})


# --------------------------------------------------------------------------
# certificates and servers

def make_cert(d, cn="auth.test"):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    if not os.path.exists(cert):
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + cn)
    return key, cert


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start_nsd(ns, d, addrs, zones, tls=None, verbosity=1, provide_xfr=False):
    """NSD in namespace `ns` on every address of `addrs` at port 53 (and 853
    with TLS when `tls` is (key, cert)), serving `zones` ({name: zone text}),
    to zone transfers from anywhere when `provide_xfr` (the namespaces have
    no link out). Returns the LabProc; its work files are in directory `d`."""
    os.makedirs(d, exist_ok=True)
    lines = ["server:"] + ["  ip-address: %s@53" % a for a in addrs]
    if tls:
        lines += ["  ip-address: %s@853" % a for a in addrs]
        lines += ["  tls-port: 853", '  tls-service-key: "%s"' % tls[0], '  tls-service-pem: "%s"' % tls[1]]
    lines += ["  server-count: 1", '  username: ""', '  chroot: ""', '  database: ""',
              "  rrl-ratelimit: 0", "  rrl-whitelist-ratelimit: 0", "  tcp-count: 200",
              "  verbosity: %d" % verbosity, "  hide-version: yes", '  zonesdir: "%s"' % d,
              '  zonelistfile: "%s/zone.list"' % d, '  xfrdfile: "%s/xfrd.state"' % d,
              '  xfrdir: "%s"' % d, '  pidfile: "%s/nsd.pid"' % d, '  logfile: "%s/nsd.log"' % d,
              "remote-control:", "  control-enable: no"]
    for i, (name, text) in enumerate(sorted(zones.items())):
        _write(os.path.join(d, "z%d.zone" % i), text)
        lines += ["zone:", '  name: "%s"' % name, '  zonefile: "z%d.zone"' % i]
        if provide_xfr:
            lines += ["  provide-xfr: 0.0.0.0/0 NOKEY", "  provide-xfr: ::0/0 NOKEY"]
    conf = _write(os.path.join(d, "nsd.conf"), "\n".join(lines) + "\n")
    return LabProc(None, ns, "nsd", [shutil.which("nsd") or "/usr/sbin/nsd", "-d", "-c", conf], d).start()


def start_knot(ns, d, addrs, zones):
    """knotd (Do53 only: knot 3.2 has no DoT) on `addrs` port 53."""
    os.makedirs(d, exist_ok=True)
    listen = ", ".join("%s@53" % a for a in addrs)
    zl = ""
    for i, (name, text) in enumerate(sorted(zones.items())):
        zf = _write(os.path.join(d, "z%d.zone" % i), text)
        zl += '  - domain: %s\n    file: "%s"\n' % (name, zf)
    conf = _write(os.path.join(d, "knot.conf"), """server:
    rundir: "{d}"
    listen: [ {listen} ]
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{d}"
log:
  - target: stderr
    any: info
template:
  - id: default
    zonefile-sync: -1
    journal-content: none
zone:
{zl}""".format(d=d, listen=listen, zl=zl))
    return LabProc(None, ns, "knot", [shutil.which("knotd") or "/usr/sbin/knotd", "-c", conf], d).start()


def start_named_auth(ns, d, addrs, zones, tls=None):
    """BIND 9.18 authoritative on `addrs` port 53, and DoT on 853 when `tls`
    is (key, cert)."""
    os.makedirs(d, exist_ok=True)
    v4 = "; ".join(a for a in addrs if ":" not in a) or "none"
    v6 = "; ".join(a for a in addrs if ":" in a) or "none"
    listen = "listen-on port 53 { %s; }; listen-on-v6 port 53 { %s; };\n" % (v4, v6)
    head = ""
    if tls:
        head = 'tls local-tls { key-file "%s"; cert-file "%s"; };\n' % tls
        listen += "  listen-on port 853 tls local-tls { %s; }; listen-on-v6 port 853 tls local-tls { %s; };\n" % (
            v4, v6)
    zl = ""
    for i, (name, text) in enumerate(sorted(zones.items())):
        zf = _write(os.path.join(d, "z%d.zone" % i), text)
        zl += 'zone "%s" { type primary; file "%s"; };\n' % (name, zf)
    conf = _write(os.path.join(d, "named.conf"), head + """options {{
  directory "{d}"; pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key"; managed-keys-directory "{d}";
  {listen}  recursion no; dnssec-validation no; notify no;
}};
controls {{ }};
{zl}""".format(d=d, listen=listen, zl=zl))
    return LabProc(None, ns, "named", [shutil.which("named") or "/usr/sbin/named", "-g", "-n", "1", "-c", conf],
                   d).start()


def start_silent(ns, d, addr, port=853):
    """A TCP listener that accepts and never says a word (no TLS handshake)."""
    os.makedirs(d, exist_ok=True)
    return LabProc(None, ns, "silent-%s" % addr.replace(":", "_"), [PY, BADTLS, "silent", addr, str(port)],
                   d).start()


def proc_logs(procs, tail=3000):
    out = []
    for p in procs:
        out.append("--- %s in %s ---\n%s" % (p.name, p.ns, p.log()[-tail:]))
        extra = os.path.join(p.cwd, "nsd.log")
        if p.name == "nsd" and os.path.exists(extra):
            out.append("--- nsd.log ---\n" + harness.read_text(extra)[-tail:])
    return "\n".join(out)


# --------------------------------------------------------------------------
# DNS clients

AXFR_CLIENT = r"""
import sys, dns.query, dns.zone
z = dns.zone.from_xfr(dns.query.xfr(sys.argv[1], sys.argv[2], port=53, lifetime=10))
print(len(list(z.iterate_rdatas())))
"""


def axfr_count(ns, server, zone):
    """A zone transfer from `server`, port 53, from namespace `ns`: how many records came."""
    return nsx(ns, sys.executable, "-c", AXFR_CLIENT, server, zone).stdout.strip()

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


def ask_process(ns, server, transport="udp", name="www.test.", rdtype="A"):
    """From a new process in `ns` (an unmodified client): the answer's records
    as text, the rcode when there are none, or ERROR <exception>."""
    return nsx(ns, PY, "-c", CLIENT, server, transport, name, rdtype).stdout.strip()


def query(ns, server, name, rdtype="A", transport="udp", port=53, timeout=3.0):
    """One query from this thread, moved into `ns` for the call. Returns the
    parsed answer, or None on a timeout or an error. transport "auto": UDP
    (EDNS, 1232 bytes), then TCP when the answer is truncated (TC)."""
    q = dns.message.make_query(name, rdtype, use_edns=0 if transport == "auto" else None, payload=1232)
    try:
        with netns(ns):
            if transport == "auto":
                return dns.query.udp_with_fallback(q, server, port=port, timeout=timeout)[0]
            if transport == "udp":
                return dns.query.udp(q, server, port=port, timeout=timeout)
            return dns.query.tcp(q, server, port=port, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return None


def answer_text(r):
    """(rcode, sorted records without TTLs), comparable between two runs."""
    if r is None:
        return ("NO ANSWER", ())
    recs = []
    for rrset in r.answer:
        for rd in rrset:
            recs.append("%s %s %s" % (rrset.name, dns.rdatatype.to_text(rrset.rdtype), rd.to_text()))
    return (dns.rcode.to_text(r.rcode()), tuple(sorted(recs)))


def negative_soa(r):
    """The SOA in the authority section of an answer without records (NXDOMAIN,
    NODATA), without its TTL; None otherwise."""
    if r is None or r.answer:
        return None
    return tuple(sorted("%s SOA %s" % (rrset.name, rd.to_text()) for rrset in r.authority
                        if rrset.rdtype == dns.rdatatype.SOA for rd in rrset)) or None


def wait_dns(ns, server, name, rdtype="SOA", cap=harness.WAIT_CAP, procs=()):
    """Until `server` answers `name` over TCP (from `ns`) with NOERROR."""
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc is not None and p.proc.poll() is not None:
                raise AssertionError("%s in %s exited with %d\n%s" % (p.name, p.ns, p.proc.returncode,
                                                                      proc_logs([p])))
        r = query(ns, server, name, rdtype, transport="tcp", timeout=1)
        if r is not None and r.rcode() == dns.rcode.NOERROR and r.answer:
            return
        time.sleep(0.05)
    raise AssertionError("%s does not answer %s %s within %.0fs\n%s" % (server, name, rdtype, cap,
                                                                        proc_logs(procs)))


# --------------------------------------------------------------------------
# dotward in a namespace

class NsDotward:
    """dotward with [transparent] listen addresses, started in namespace `ns`
    (a resolv.conf of the test's own; the data path's plain listener on
    127.0.0.1:5353; the control socket in `d`). `server_extra` and
    `probe_extra` are lines added to [server] and [probe]."""

    def __init__(self, ns, d, tlisten, mark, server_extra="", probe_extra=""):
        self.ns, self.dir = ns, d
        self.sock = os.path.join(d, "ctl.sock")
        self.err_path = os.path.join(d, "dotward.err")
        rc = _write(os.path.join(d, "resolv.conf"), "nameserver 127.0.0.1\n")
        self.conf = _write(os.path.join(d, "dotward.conf"),
                           "[server]\nlisten = 127.0.0.1:5353\ncontrol-socket = %s\n%s\n"
                           "[forward]\nupstream = 127.0.0.1:9\nresolv-conf = %s\n"
                           "[probe]\nprobe-on-start = no\n%s\n"
                           "[transparent]\n%smark = %d\n" % (
                               self.sock, server_extra, rc, probe_extra,
                               "".join("listen = %s\n" % a for a in tlisten), mark))
        self.proc = None

    def start(self):
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns,
                                      os.environ.get("DOTWARD_BIN", os.path.join(harness.REPO, "build", "dotward")),
                                      "-c", self.conf], stdout=subprocess.DEVNULL, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + harness.WAIT_CAP
        while not os.path.exists(self.sock):
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                "dotward did not come up\n" + self.log()
            time.sleep(0.02)
        return self

    def log(self, tail=4000):
        return harness.read_text(self.err_path)[-tail:]

    def ctl(self, *args):
        return sh(os.environ.get("DOTWARD_CONTROL_BIN",
                                 os.path.join(harness.REPO, "build", "tools", "dotward-control")),
                  "-s", self.sock, *args).stdout

    def stats(self):
        return dict(line.split("=", 1) for line in self.ctl("stats").split() if "=" in line)

    def probes(self):
        return {e["ip"]: e for e in json.loads(self.ctl("dump-probes", "--json"))}

    def stop(self):
        """SIGTERM; returns the exit status (0 expected)."""
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            rc = self.proc.wait(harness.WAIT_CAP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self._err.close()
        self.proc = None
        return rc
