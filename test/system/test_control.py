"""The control socket and dotward-control: every command, every error path,
the socket's permissions (mode 0660; another user is refused), the limits of
the server side (line length, read timeout, 16 clients), and the client's
exit codes (0 ok, 1 command failed, 2 usage, 3 unreachable).

Binaries: DOTWARD_BIN (default build/dotward) and DOTWARD_CONTROL_BIN
(default build/tools/dotward-control)."""
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

import harness
from harness import ADDRS, WWW_A, ask, free_port, rrset_values, run_dotward, wait_until

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
JSON_KEYS = {
    "ip", "domain", "count", "status", "expiry", "since", "first_seen", "initiated", "completed",
    "last_response", "last_activity", "last_outcome", "reason", "verified", "visits",
    "dot_consecutive_failures", "session", "probes", "successes", "dot_queries", "fallbacks",
    "failures_total", "failures",
}
OUTCOMES = ["connect-refused", "connect-timeout", "tls-failed", "query-timeout", "bad-answer",
            "closed-clean", "local-error", "reset"]
COMMANDS = ["stats", "status", "dump-probes", "probe", "forget", "reload", "log-level", "help"]


def _ctl_path():
    p = os.environ.get("DOTWARD_CONTROL_BIN") or os.path.join(harness.REPO, "build", "tools", "dotward-control")
    return os.path.abspath(p)


def stats_counter_names():
    """Every counter of STATS_COUNTERS, read from the source so a new one is checked too."""
    with open(os.path.join(harness.REPO, "proxy", "stats.h")) as f:
        names = re.findall(r"^\s*X\((\w+)\)", f.read(), re.M)
    assert len(names) > 20, "could not read STATS_COUNTERS from proxy/stats.h"
    return names


def project_version():
    with open(os.path.join(harness.REPO, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


@pytest.fixture(scope="session")
def ctl_bin():
    p = _ctl_path()
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        pytest.skip("dotward-control binary not found at %s (set DOTWARD_CONTROL_BIN)" % p)
    return p


@pytest.fixture
def sockdir():
    """A short directory others may traverse (0755): only the socket's own mode keeps them out."""
    d = tempfile.mkdtemp(prefix="dwctl-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Ctl:
    def __init__(self, binary, sock, daemon=None):
        self.binary, self.sock, self.daemon = binary, sock, daemon

    def run(self, *args, sock=None, user=None, env=None, binary=None, cap=10):
        argv = [binary or self.binary]
        if sock is not False:
            argv += ["-s", sock or self.sock]
        argv += list(args)
        if user:
            argv = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=cap, stdin=subprocess.DEVNULL,
                              env=env)

    def where(self, r):
        s = "command: %s\nexit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            " ".join(r.args), r.returncode, r.stdout[-3000:], r.stderr[-3000:])
        if self.daemon:
            s += "\n" + self.daemon.describe()
        return s

    def ok(self, *args):
        r = self.run(*args)
        assert r.returncode == 0 and r.stderr == "", "expected success\n" + self.where(r)
        return r.stdout

    def fail(self, *args, code=1, match=None):
        r = self.run(*args)
        assert r.returncode == code, "expected exit %d\n%s" % (code, self.where(r))
        if match:
            assert re.search(match, r.stderr), "stderr does not match %r\n%s" % (match, self.where(r))
        return r

    def stats(self):
        out = self.ok("stats")
        d = {}
        for line in out.splitlines():
            m = re.match(r"^([a-z0-9_]+)=(\d+)$", line)
            assert m, "not a key=value line: %r\n%s" % (line, out)
            assert m.group(1) not in d, "key %s twice" % m.group(1)
            d[m.group(1)] = int(m.group(2))
        return d

    def probes(self):
        out = self.ok("dump-probes", "--json")
        try:
            return json.loads(out)
        except ValueError as e:
            raise AssertionError("dump-probes --json is not JSON (%s):\n%s" % (e, out))

    def entry(self, ip):
        found = [e for e in self.probes() if e["ip"] == ip]
        assert len(found) <= 1, found
        return found[0] if found else None


@pytest.fixture
def controlled(dotward, ctl_bin, sockdir):
    """start(upstreams, name=...) -> (Dotward, Ctl) with a control socket in sockdir."""
    def start(upstreams=(), args=(), config=None, name="control.sock"):
        sock = os.path.join(sockdir, name)
        d = dotward(upstreams=upstreams, args=["--control", sock] + list(args), config=config)
        assert wait_until(lambda: os.path.exists(sock), 5), "no control socket at %s\n%s" % (sock, d.describe())
        return d, Ctl(ctl_bin, sock, d)
    return start


def upstream_of(srv):
    return "%s:%d" % (srv.addr, srv.port)


def raw_exchange(path, data, shut=False, cap=5.0):
    """Sends bytes on a new connection, returns everything read until the server closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(cap)
    try:
        s.connect(path)
        if data:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # dotward may answer and close before reading everything
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


# --------------------------------------------------------------------------
# the socket itself

def test_socket_mode_owner_and_removal(controlled, nsd):
    d, ctl = controlled([upstream_of(nsd)])
    st = os.lstat(ctl.sock)
    assert stat.S_ISSOCK(st.st_mode), "not a socket: %o" % st.st_mode
    assert stat.S_IMODE(st.st_mode) == 0o660, "socket mode %o, expected 0660" % stat.S_IMODE(st.st_mode)
    assert st.st_uid == os.geteuid(), "socket owned by uid %d" % st.st_uid
    assert "control socket on %s" % ctl.sock in d.stderr()
    assert d.stop() == 0, d.describe()
    assert not os.path.exists(ctl.sock), "the socket file is left behind after exit"


def _as_nobody_possible():
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as nobody")
    harness.need("runuser")
    return pw


def test_other_user_is_refused(controlled, nsd, sockdir):
    pw = _as_nobody_possible()
    d, ctl = controlled([upstream_of(nsd)])
    # nobody must be able to run the client and reach the directory: only the socket mode is left
    local = os.path.join(sockdir, "dotward-control")
    shutil.copy(ctl.binary, local)
    os.chmod(local, 0o755)
    st = os.lstat(ctl.sock)
    groups = os.getgrouplist("nobody", pw.pw_gid)
    assert st.st_gid not in groups, "nobody is in the socket's group %d: the test proves nothing" % st.st_gid

    r = ctl.run("stats", user="nobody", binary=local)
    assert r.returncode == 3, "nobody reached the control socket\n" + ctl.where(r)
    assert "Permission denied" in r.stderr and ctl.sock in r.stderr, ctl.where(r)
    assert r.stdout == ""

    # The same user gets in once the socket's group is theirs: the mode was what refused them.
    os.chown(ctl.sock, -1, pw.pw_gid)
    r = ctl.run("stats", user="nobody", binary=local)
    assert r.returncode == 0 and "queries_udp=" in r.stdout, \
        "group access (0660) does not work, so the refusal above may have another cause\n" + ctl.where(r)


def test_stale_socket_replaced_live_socket_and_file_refused(dotward_bin, ctl_bin, sockdir, tmp_path, nsd):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")

    def run(path):
        addr = ADDRS.take()
        return run_dotward(dotward_bin, ["-l", "%s:%d" % (addr, free_port(addr)), "-u", upstream_of(nsd),
                                         "--resolv-conf", str(resolv), "--control", path], tmp_path)

    # a regular file is never replaced
    f = os.path.join(sockdir, "file")
    with open(f, "w") as fh:
        fh.write("keep me\n")
    p = run(f)
    assert p.returncode == 1, "dotward started over a regular file: %d\n%s" % (p.returncode, p.stderr)
    assert "not a socket" in p.stderr, p.stderr
    with open(f) as fh:
        assert fh.read() == "keep me\n", "the file was changed"

    # a socket somebody listens on is not taken over
    live = os.path.join(sockdir, "live.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ls.bind(live)
        ls.listen(4)
        p = run(live)
        assert p.returncode == 1, "dotward took over a live socket\n" + p.stderr
        assert "another process is listening" in p.stderr, p.stderr
        assert os.path.exists(live)
    finally:
        ls.close()

    # the same socket file, now stale, is replaced
    d = harness.Dotward(dotward_bin, tmp_path, (ADDRS.take(), 0), [], name="stale")
    d.port = free_port(d.addr)
    d.args = ["-l", "%s:%d" % (d.addr, d.port), "-u", upstream_of(nsd), "--resolv-conf", str(resolv),
              "--control", live]
    d.start()
    try:
        assert "removed a stale socket file" in d.stderr(), d.describe()
        r = Ctl(ctl_bin, live).run("stats")
        assert r.returncode == 0, r.stderr + d.describe()
    finally:
        assert d.stop() == 0, d.describe()
    assert not os.path.exists(live)


# --------------------------------------------------------------------------
# commands

def test_stats_has_every_counter_and_moves(controlled, nsd):
    d, ctl = controlled([upstream_of(nsd)])
    s0 = ctl.stats()
    expected = set(stats_counter_names())
    expected |= {"probes_started", "probes_ok", "probes_running", "probes_queued", "dot_queries",
                 "dot_fallbacks", "inflight", "tcp_clients", "uptime_seconds", "answers_rcode_nxdomain",
                 "latency_dot_count"}
    expected |= {"probes_failed_" + o.replace("-", "_") for o in OUTCOMES}
    expected |= {"probe_entries_" + s for s in ("unknown", "busy", "good", "bad")}
    missing = expected - set(s0)
    assert not missing, "stats lacks %s" % sorted(missing)

    for i in range(3):
        assert rrset_values(ask(d.addr, d.port, "www.test.", "A", "udp"), "A") == [WWW_A]
    for i in range(2):
        assert rrset_values(ask(d.addr, d.port, "www.test.", "A", "tcp"), "A") == [WWW_A]
    s1 = ctl.stats()
    assert s1["queries_udp"] - s0["queries_udp"] == 3, (s0, s1)
    assert s1["queries_tcp"] - s0["queries_tcp"] == 2, (s0, s1)
    assert s1["answered"] - s0["answered"] == 5, (s0, s1)
    assert s1["upstream_udp"] - s0["upstream_udp"] >= 3, (s0, s1)
    assert s1["inflight"] == 0
    assert s1["answers_rcode_noerror"] - s0["answers_rcode_noerror"] == 5, (s0, s1)
    assert s1["latency_udp_count"] - s0["latency_udp_count"] >= 3, (s0, s1)
    assert s1["latency_udp_sum_us"] > s0["latency_udp_sum_us"], (s0, s1)

    # the same numbers as the SIGUSR1 line
    line = d.stats()
    for k, v in line.items():
        assert s1[k] == v, "%s: control says %d, the stats line %d" % (k, s1[k], v)

    time.sleep(1.1)
    assert ctl.stats()["uptime_seconds"] >= 1


def test_status(controlled, nsd):
    d, ctl = controlled([upstream_of(nsd)])
    assert rrset_values(ask(d.addr, d.port, "www.test.", "A"), "A") == [WWW_A]
    out = ctl.ok("status")
    lines = out.splitlines()
    assert lines[0] == "version: dotward %s" % project_version(), out
    assert re.search(r"^uptime: \d+d \d\dh \d\dm \d\ds \(\d+ s\)$", out, re.M), out
    assert re.search(r"^started: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", out, re.M), out
    assert "log-level: info" in lines, out
    assert re.search(r"^dot: on, \d+ entries", out, re.M), out
    assert "listener: %s:%d udp" % (d.addr, d.port) in lines, out
    assert "listener: %s:%d tcp" % (d.addr, d.port) in lines, out
    ups = [ln for ln in lines if ln.startswith("upstream: ")]
    assert len(ups) == 1, out
    f = dict(kv.split("=", 1) for kv in ups[0][len("upstream: "):].split(" ") if "=" in kv)
    assert f["zone"] == "." and f["addr"] == upstream_of(nsd) and f["tls"] == "opportunistic", ups
    assert int(f["sent"]) >= 1 and int(f["answers"]) >= 1 and f["fails"] == "0", ups
    assert float(f["srtt_ms"]) >= 0, ups
    assert f["dot"] in ("unseen", "unknown", "busy", "bad"), ups


def test_probe_dump_and_forget(controlled, nsd):
    """Nothing listens on NSD's address at port 853: a forced probe ends Bad, connect-refused."""
    d, ctl = controlled([upstream_of(nsd)])
    ip = nsd.addr
    # probe-on-start (on by default, shortly after start) probes it first: wait until that is over
    assert wait_until(lambda: (ctl.entry(ip) or {}).get("status") == "bad", 8), ctl.probes()
    before = ctl.entry(ip)
    p0 = before["probes"] if before else 0
    s0 = ctl.stats()

    out = ctl.ok("probe", ip)
    assert out.startswith("probe of %s requested" % ip), out
    assert wait_until(lambda: (ctl.entry(ip) or {}).get("probes") == p0 + 1 and
                      ctl.entry(ip)["status"] == "bad", 8), \
        "the forced probe did not end Bad: %s\n%s" % (ctl.probes(), d.describe())

    e = ctl.entry(ip)
    assert JSON_KEYS <= set(e), "missing JSON keys: %s" % sorted(JSON_KEYS - set(e))
    assert e["domain"] == "." and e["last_outcome"] == "connect-refused", e
    assert "refused" in e["reason"].lower(), e
    assert e["failures"]["connect-refused"] >= 1 and set(OUTCOMES) <= set(e["failures"]), e
    assert e["successes"] == 0 and e["verified"] is False and isinstance(e["count"], int), e
    for k in ("expiry", "since", "first_seen", "initiated", "completed"):
        assert isinstance(e[k], str) and ISO.match(e[k]), (k, e)
    assert e["last_response"] is None, e

    s1 = ctl.stats()
    assert s1["probes_started"] - s0["probes_started"] == 1, (s0, s1)
    assert s1["probes_failed_connect_refused"] - s0["probes_failed_connect_refused"] == 1, (s0, s1)
    assert s1["probe_entries_bad"] == 1 and s1["probes_running"] == 0, s1

    # text: the PowerDNS columns first, then the same facts as the JSON
    text = ctl.ok("dump-probes")
    lines = text.splitlines()
    assert lines[0] == "; DoT probing map follows", text
    assert lines[1].startswith("; ip\tdomain\tcount\tstatus\tttd\t"), text
    rows = [ln.split("\t") for ln in lines if not ln.startswith(";")]
    assert len(rows) == 1 and rows[0][0] == ip, text
    row = rows[0]
    assert row[1] == "." and row[2] == str(e["count"]) and row[3] == "Bad" and row[4] == e["expiry"], (row, e)
    assert len(row) >= 17 and "refused" in row[-1].lower(), row

    assert re.search(r"upstream: .* dot=bad ", ctl.ok("status")), ctl.ok("status")

    # forget one, then an unknown one, then all
    assert ctl.ok("forget", ip) == "forgot %s\n" % ip
    assert ctl.entry(ip) is None
    ctl.fail("forget", ip, match=r"unknown IP %s" % re.escape(ip))
    ctl.ok("probe", ip)
    assert wait_until(lambda: (ctl.entry(ip) or {}).get("status") == "bad", 8), ctl.probes()
    assert ctl.ok("forget", "all") == "forgot 1 entry\n"
    assert ctl.probes() == []
    assert [ln for ln in ctl.ok("dump-probes").splitlines() if not ln.startswith(";")] == []


def test_log_level_debug_takes_effect(controlled, nsd):
    d, ctl = controlled([upstream_of(nsd)])
    ip = nsd.addr
    assert wait_until(lambda: (ctl.entry(ip) or {}).get("status") == "bad", 8)   # probe-on-start done
    # at info, a probe's end is not logged at debug
    ctl.ok("probe", ip)
    assert wait_until(lambda: ctl.entry(ip)["status"] == "bad", 8)
    assert " debug: " not in d.stderr(), d.describe()

    assert ctl.ok("log-level", "debug") == "log level debug (was info)\n"
    assert "log-level: debug" in ctl.ok("status").splitlines()
    mark = len(d.stderr())
    ctl.ok("probe", ip)
    assert d.wait_log(re.compile(r" debug: dot-probe: %s: connect-refused" % re.escape(ip)), 8, after=mark), \
        "no debug line from the prober after log-level debug\n" + d.describe()

    assert ctl.ok("log-level", "warning") == "log level warning (was debug)\n"
    mark = len(d.stderr())
    ctl.ok("status")
    assert ask(d.addr, d.port, "www.test.", "A")
    time.sleep(0.2)
    assert " debug: " not in d.stderr()[mark:] and " info: " not in d.stderr()[mark:], d.describe()


def test_reload(controlled, fake, dotward):
    f1, f2 = fake(), fake()
    conf = "[server]\nlisten = {listen}\n[forward]\nupstream = %s\n"
    d, ctl = controlled(config=conf % f1.server)
    assert "upstream: zone=. addr=%s " % f1.server in ctl.ok("status")
    d.write_config((conf % f2.server).replace("{listen}", "%s:%d" % (d.addr, d.port)))
    mark = len(d.stderr())
    assert ctl.ok("reload") == "reload started; the result is logged\n"
    assert d.wait_log("reloaded", 5, after=mark), d.describe()
    st = ctl.ok("status")
    assert "addr=%s " % f2.server in st and "addr=%s " % f1.server not in st, st
    # the socket survives the reload
    assert os.path.exists(ctl.sock) and "queries_udp" in ctl.stats()


def test_control_socket_from_config_file(dotward, ctl_bin, sockdir, fake):
    f = fake()
    sock = os.path.join(sockdir, "fromfile.sock")
    d = dotward(config="[server]\nlisten = {listen}\ncontrol-socket = %s\n[forward]\nupstream = %s\n"
                % (sock, f.server))
    assert wait_until(lambda: os.path.exists(sock), 5), "no socket from control-socket\n" + d.describe()
    assert Ctl(ctl_bin, sock, d).ok("help")


def test_help_lists_every_command(controlled, fake, ctl_bin):
    d, ctl = controlled([fake().server])
    out = ctl.ok("help")
    names = [ln.split()[0] for ln in out.splitlines()]
    assert names == COMMANDS, out
    r = ctl.run("--help", sock=False)
    assert r.returncode == 0, ctl.where(r)
    for c in COMMANDS:
        assert re.search(r"^  %s\b" % re.escape(c), r.stdout, re.M), "--help lacks %s\n%s" % (c, r.stdout)


ERRORS = [
    (["bogus"], r"^dotward-control: unknown command 'bogus' \(try help\)$"),
    (["stats", "extra"], r"wrong number of arguments \(usage: stats\)"),
    (["probe"], r"wrong number of arguments \(usage: probe IP\)"),
    (["probe", "127.0.0.1", "x"], r"wrong number of arguments"),
    (["probe", "not-an-ip"], r"'not-an-ip' is not an IP address"),
    (["probe", "300.1.1.1"], r"is not an IP address"),
    (["probe", "192.0.2.99"], r"unknown upstream IP 192\.0\.2\.99"),
    (["probe", "2001:db8::99"], r"unknown upstream IP 2001:db8::99"),
    (["forget", "192.0.2.99"], r"unknown IP 192\.0\.2\.99"),
    (["forget", "everything"], r"is not an IP address or 'all'"),
    (["forget"], r"usage: forget IP\|all"),
    (["dump-probes", "--xml"], r"unknown option '--xml'"),
    (["log-level", "loud"], r"unknown log level 'loud'"),
    (["log-level"], r"usage: log-level LEVEL"),
]


def test_command_errors(controlled, fake):
    d, ctl = controlled([fake().server])
    for args, match in ERRORS:
        r = ctl.run(*args)
        assert r.returncode == 1, "%s: expected exit 1\n%s" % (args, ctl.where(r))
        assert r.stdout == "", "%s: output on stdout\n%s" % (args, ctl.where(r))
        assert re.search(match, r.stderr.strip()), "%s: stderr does not match %r\n%s" % (args, match, ctl.where(r))
    # the daemon is fine afterwards
    assert ctl.stats()["inflight"] == 0


def test_client_usage_and_unreachable(ctl_bin, sockdir):
    ctl = Ctl(ctl_bin, os.path.join(sockdir, "none.sock"))
    for args, what in [([], "no command"), (["-x", "stats"], "unknown option"),
                       (["probe", "a b"], "blank in an argument"), (["probe", "x" * 1100], "line too long")]:
        r = ctl.run(*args)
        assert r.returncode == 2, "%s (%s): expected exit 2\n%s" % (args, what, ctl.where(r))
        assert r.stderr, what

    # nothing at the path
    r = ctl.run("stats")
    assert r.returncode == 3 and ctl.sock in r.stderr and "No such file or directory" in r.stderr, ctl.where(r)
    # a stale socket: nobody accepts
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(ctl.sock)
    s.close()
    r = ctl.run("stats")
    assert r.returncode == 3 and "Connection refused" in r.stderr, ctl.where(r)
    # DOTWARD_CONTROL is used without -s
    env = dict(os.environ, DOTWARD_CONTROL=os.path.join(sockdir, "env.sock"))
    r = ctl.run("stats", sock=False, env=env)
    assert r.returncode == 3 and "env.sock" in r.stderr, ctl.where(r)
    # and the built-in default without either
    env.pop("DOTWARD_CONTROL")
    if not os.path.exists("/run/dotward/control.sock"):
        r = ctl.run("stats", sock=False, env=env)
        assert r.returncode == 3 and "/run/dotward/control.sock" in r.stderr, ctl.where(r)


def test_env_variable_reaches_daemon(controlled, fake):
    d, ctl = controlled([fake().server])
    env = dict(os.environ, DOTWARD_CONTROL=ctl.sock)
    r = ctl.run("stats", sock=False, env=env)
    assert r.returncode == 0 and r.stdout.startswith("queries_udp="), ctl.where(r)


# --------------------------------------------------------------------------
# the server's limits, spoken to directly

def test_protocol_edges(controlled, fake):
    d, ctl = controlled([fake().server])
    p = ctl.sock
    # no newline, then end of input: still one command
    assert raw_exchange(p, b"help", shut=True).startswith(b"ok\nstats ")
    # CRLF and surrounding blanks
    assert raw_exchange(p, b"  stats \r\n").startswith(b"ok\nqueries_udp=")
    assert raw_exchange(p, b"\n") == b"error: empty command (try help)\n"
    assert raw_exchange(p, b"sta\x00ts\n") == b"error: NUL byte in the command line\n"
    assert raw_exchange(p, b"stats\x01\n") == b"error: control characters in the command line\n"
    assert raw_exchange(p, b"a b c d e f g h i\n").startswith(b"error: too many arguments")
    # 1024 bytes with the newline is the limit; one more is refused
    line = b"help" + b" " * (1024 - 5) + b"\n"
    assert raw_exchange(p, line).startswith(b"ok\n")
    line = b"help" + b" " * (1025 - 5) + b"\n"
    assert raw_exchange(p, line) == b"error: command line too long (at most 1024 bytes)\n"
    assert raw_exchange(p, b"x" * 100000) == b"error: command line too long (at most 1024 bytes)\n"
    # an unknown command's name is echoed cleaned and short
    out = raw_exchange(p, b"\xff\xfe" + b"y" * 200 + b"\n")
    assert out.startswith(b"error: unknown command '??yyy") and len(out) < 120, out
    # a second line on the same connection is ignored: one command per connection
    out = raw_exchange(p, b"bogus\nstats\n")
    assert out == b"error: unknown command 'bogus' (try help)\n", out


def test_silent_client_times_out(controlled, fake):
    d, ctl = controlled([fake().server])
    t0 = time.monotonic()
    out = raw_exchange(ctl.sock, b"", cap=6)
    took = time.monotonic() - t0
    assert out == b"error: timed out waiting for a command line\n", out
    assert 1.5 <= took <= 4.0, "the read timeout took %.2f s (expected 2 s)" % took
    # a client that sent half a line gets the same
    assert raw_exchange(ctl.sock, b"sta", cap=6) == b"error: timed out waiting for a command line\n"


def test_client_limit_and_loop_not_blocked(controlled, fake):
    f = fake()
    d, ctl = controlled([f.server])
    held = []
    try:
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(ctl.sock)
            held.append(s)
        time.sleep(0.1)  # let the daemon accept them all
        out = raw_exchange(ctl.sock, b"stats\n", cap=3)
        assert out == b"error: too many control clients, try again\n", out
        r = ctl.run("stats")
        assert r.returncode == 1 and "too many control clients" in r.stderr, ctl.where(r)
        # DNS is still served while 16 control clients sit idle
        assert ask(d.addr, d.port, "busy.fake.", "A", timeout=2)
    finally:
        for s in held:
            s.close()
    # closed clients free their slots at once
    assert wait_until(lambda: ctl.run("stats").returncode == 0, 3), d.describe()
    assert ctl.stats()["control_clients"] == 1


def test_command_line_overrides_file_and_reload_moves_socket(dotward, ctl_bin, sockdir, fake):
    f = fake()
    a, b, c = (os.path.join(sockdir, n) for n in ("a.sock", "b.sock", "c.sock"))
    conf = "[server]\nlisten = {listen}\ncontrol-socket = %s\n[forward]\nupstream = %s\n"
    d = dotward(config=conf % (a, f.server), args=["--control", b])
    assert wait_until(lambda: os.path.exists(b), 5), d.describe()
    assert not os.path.exists(a), "the file's control-socket was used despite --control"

    # without the flag, the file decides, and a reload moves the socket
    d2 = dotward(config=conf % (a, f.server))
    assert wait_until(lambda: os.path.exists(a), 5), d2.describe()
    d2.write_config((conf % (c, f.server)).replace("{listen}", "%s:%d" % (d2.addr, d2.port)))
    mark = len(d2.stderr())
    ctl = Ctl(ctl_bin, a, d2)
    assert ctl.ok("reload") == "reload started; the result is logged\n"
    assert d2.wait_log("reloaded", 5, after=mark), d2.describe()
    assert wait_until(lambda: os.path.exists(c) and not os.path.exists(a), 5), d2.describe()
    assert Ctl(ctl_bin, c, d2).ok("stats").startswith("queries_udp=")
    r = ctl.run("stats")
    assert r.returncode == 3, ctl.where(r)
