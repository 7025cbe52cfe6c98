"""The probe table survives restarts (RFC 9539 section 4.5; probe/state.c).

Everything runs on loopback: NSD serves Do53 on 127.0.0.X:PORT and DoT on
127.0.0.X:853 (binding 853 needs root; without root the tests that need
DoT are skipped, and say so). A state file is written at SIGTERM and every
save-interval, and read at start.

What is proven:
- a restart keeps a Good IP Good: no new probe, the first query goes over
  DoT (resuming the saved TLS session), and answers even when the server's
  Do53 port is gone, which only DoT can do;
- truncated, garbage, wrong-version, 100 MiB and unreadable state files
  cost one warning, never the start, and the next save writes a good file;
- save-interval saves while running;
- kill -9 at random moments of a save never leaves a broken file at the path.
"""
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import dns.message
import pytest

import harness

DOT_PORT = 853
HEADER = "dotward-probe-state 1"
ENTRY_FIELDS = 18


# ---------------------------------------------------------------------------
# the state file, as a reader outside dotward sees it

def parse_state(text):
    """{ip: {field: value}} of a complete, valid version-1 file; asserts on
    anything else (that is the point: the file at the path is always whole)."""
    lines = text.split("\n")
    assert lines[0] == HEADER, "bad header line: %r" % lines[0][:80]
    assert text.endswith("\n"), "file does not end in a newline (truncated)"
    body = [ln for ln in lines[1:-1] if ln and not ln.startswith("#")]
    assert body and body[-1].startswith("end "), "no end line: %r" % body[-1:]
    entries = {}
    names = ("ip zone status status_since first_seen initiated completed last_response visits flags "
             "last_outcome reason probes successes failures dot_queries fallbacks session").split()
    for ln in body[:-1]:
        cols = ln.split("\t")
        assert len(cols) == ENTRY_FIELDS, "entry with %d fields: %r" % (len(cols), ln[:200])
        e = dict(zip(names, cols))
        assert e["status"] in ("good", "bad", "unknown"), e
        entries[e["ip"]] = e
    assert int(body[-1].split()[1]) == len(body) - 1, "end count %s, %d entries" % (body[-1], len(body) - 1)
    return entries


def read_state(path):
    with open(path, "rb") as f:
        return parse_state(f.read().decode("ascii"))


def entry_line(ip, status, t, session="-"):
    """One hand-written entry (status good: last answer at t)."""
    return "\t".join([ip, ".", status, "%.3f" % t, "%.3f" % t, "%.3f" % t, "%.3f" % t,
                      "%.3f" % (t if status == "good" else 0), "3", "-", "ok" if status == "good" else
                      "connect-refused", "" if status == "good" else "connect-refused: Connection refused",
                      "1", "1" if status == "good" else "0",
                      "-" if status == "good" else "connect-refused=1", "0", "0", session]) + "\n"


def write_state(path, entries):
    with open(path, "w") as f:
        f.write(HEADER + "\n# written by test_state.py\n")
        for ln in entries:
            f.write(ln)
        f.write("end %d\n" % len(entries))


# ---------------------------------------------------------------------------
# NSD with DoT on loopback

def make_cert(d):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=state.test"],
                       check=True, capture_output=True, timeout=20)
    return key, cert


class DotNsd(harness.Nsd):
    """harness.Nsd plus DoT on addr:853; `do53=False` serves DoT only."""

    def __init__(self, workdir, addr, port, do53=True):
        super().__init__(workdir, addr, port)
        self.do53 = do53
        self.key, self.cert = make_cert(self.dir)

    def start(self):
        zdir = os.path.join(self.dir, "zones")
        os.makedirs(zdir, exist_ok=True)
        with open(os.path.join(zdir, "test.zone"), "w") as f:
            f.write(self.zone)
        ips = (["  ip-address: %s@%d" % (self.addr, self.port)] if self.do53 else []) + [
            "  ip-address: %s@%d" % (self.addr, DOT_PORT)]
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write("\n".join(["server:"] + ips + [
                "  tls-port: %d" % DOT_PORT,
                '  tls-service-key: "%s"' % self.key, '  tls-service-pem: "%s"' % self.cert,
                "  do-ip6: no", "  server-count: 1", '  username: ""', '  chroot: ""', '  database: ""',
                "  rrl-ratelimit: 0", "  rrl-whitelist-ratelimit: 0", "  verbosity: 1", "  hide-version: yes",
                '  zonesdir: "%s"' % zdir, '  zonelistfile: "%s/zone.list"' % self.dir,
                '  xfrdfile: "%s/xfrd.state"' % self.dir, '  xfrdir: "%s"' % self.dir,
                '  pidfile: "%s/nsd.pid"' % self.dir, '  logfile: "%s/nsd.log"' % self.dir,
                "remote-control:", "  control-enable: no",
                "zone:", '  name: "test."', '  zonefile: "test.zone"', ""]))
        self._spawn([shutil.which("nsd") or "nsd", "-d", "-c", conf])
        self.wait_dot()
        if self.do53:
            self.wait_ready()
        return self

    def wait_dot(self, cap=harness.WAIT_CAP):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        q = harness.make_query("www.test.", "A").to_wire()
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nsd exited\n" + self.log()[-3000:])
            try:
                with socket.create_connection((self.addr, DOT_PORT), timeout=1) as raw:
                    with ctx.wrap_socket(raw) as s:
                        s.sendall(harness.tcp_frame(q))
                        ans = dns.message.from_wire(harness.tcp_recv_msg(s))
                        if harness.WWW_A in harness.rrset_values(ans, "A"):
                            return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nsd DoT on %s:853 not ready\n%s" % (self.addr, self.log()[-3000:]))


def dot_addr():
    """A 127.0.0.x whose port 853 is free (needs root)."""
    for _ in range(240):
        a = harness.ADDRS.take()
        if harness._can_bind(a, DOT_PORT):
            return a
    raise RuntimeError("no 127.0.0.x with a free port 853")


@pytest.fixture
def need_dot():
    harness.need("nsd")
    harness.need("openssl")
    if os.geteuid() != 0:
        pytest.skip("binding 127.0.0.x:853 for NSD's DoT needs root")


def transitions(log, ip):
    """Status changes of `ip`, without the one that restores it (debug level)."""
    return [(a, b) for a, b, why in re.findall(r"dot-probe: %s (\w+) -> (\w+) \(([^;]*)" % re.escape(ip), log)
            if why != "restored from the state file"]


def control_tool(dotward_bin):
    """dotward-control next to the dotward binary (build/tools/), or None."""
    p = os.environ.get("DOTWARD_CONTROL_BIN") or os.path.join(os.path.dirname(dotward_bin), "tools",
                                                               "dotward-control")
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


def dump_probes(tool, sock):
    """{ip: {column: value}} from `dotward-control dump-probes`."""
    r = subprocess.run([tool, "-s", sock, "dump-probes"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, "dump-probes -> %d: %s%s" % (r.returncode, r.stdout, r.stderr)
    cols = ("ip domain count status ttd first_seen initiated completed last_response last_activity "
            "probes successes failures dot_queries fallbacks verified since reason").split()
    return {ln.split("\t")[0]: dict(zip(cols, ln.split("\t"))) for ln in r.stdout.splitlines()
            if ln.strip() and not ln.startswith(";")}


def ask_ok(d, name="www.test.", cap=3.0):
    ans = harness.ask(d.addr, d.port, name, "A", timeout=cap)
    assert harness.WWW_A in harness.rrset_values(ans, "A"), "no answer for %s: %s\n%s" % (
        name, ans, d.describe())
    return ans


# ---------------------------------------------------------------------------

def test_restart_keeps_good(need_dot, dotward, dotward_bin, tmp_path):
    addr = dot_addr()
    port = harness.free_port(addr)
    nsd = DotNsd(tmp_path / "nsd", addr, port).start()
    state = str(tmp_path / "probes.state")
    up = "%s:%d" % (addr, port)
    args = ["--state-file", state, "-v"]  # -v: debug, for the DoT connection lines
    try:
        d1 = dotward([up], args)
        assert d1.wait_log("dot-probe: %s busy -> good" % addr, cap=8), "probe never made %s Good\n%s" % (
            addr, d1.describe())
        ask_ok(d1)  # over the probe's own connection, which the data path adopts
        assert d1.stop() == 0
        assert "no state file yet" in d1.stderr(), d1.describe()
        entries = read_state(state)
        e = entries[addr]
        assert e["status"] == "good", e
        assert float(e["last_response"]) > time.time() - 60, e
        assert int(e["successes"]) == 1 and int(e["probes"]) == 1, e
        assert e["session"] != "-", "no TLS session saved: %s" % e
        os.chmod(state, 0o644)  # not 0600 any more: the next save must put 0600 back
        assert oct(os.stat(state).st_mode & 0o777) == "0o644"

        # Same NSD (same ticket keys): Good at once, no probe, DoT from the
        # first query, and the saved session resumes.
        tool = control_tool(dotward_bin)
        sock = str(tmp_path / "ctl.sock")
        d2 = dotward([up], args + (["--control", sock] if tool else []))
        if tool:  # the table before any query: Good, with the history of the first run
            row = dump_probes(tool, sock)[addr]
            assert row["status"] == "Good" and row["probes"] == "1" and row["count"] == e["visits"], row
        log = d2.stderr()
        assert "probe state: restored 1 entries" in log, d2.describe()
        assert "dot-probe: %s unknown -> good (restored from the state file" % addr in log, d2.describe()
        ask_ok(d2)
        assert d2.wait_log("DoT connection up", cap=5), "first query not over DoT\n" + d2.describe()
        log = d2.stderr()
        assert transitions(log, addr) == [], "re-probed after restart: %s\n%s" % (
            transitions(log, addr), d2.describe())
        assert "probe started" not in log, d2.describe()
        assert re.search(r"DoT connection up \([^)]*, resumed\)", log), \
            "the saved TLS session was not resumed\n" + d2.describe()
        assert d2.stats()["dot_resumed"] >= 1
        assert d2.stop() == 0
        assert oct(os.stat(state).st_mode & 0o777) == "0o600"
        e2 = read_state(state)[addr]
        assert e2["status"] == "good" and int(e2["probes"]) == 1, e2   # still the one probe of d1
        assert float(e2["first_seen"]) == float(e["first_seen"]), (e, e2)

        # The server's Do53 is gone: only DoT can answer now.
        nsd.stop()
        nsd = DotNsd(tmp_path / "nsd", addr, port, do53=False).start()
        with pytest.raises(OSError):
            harness.tcp_exchange(addr, port, harness.make_query("www.test.").to_wire(), timeout=1)
        d3 = dotward([up], args)
        ask_ok(d3)
        ask_ok(d3, "www.test.")
        log = d3.stderr()
        assert transitions(log, addr) == [], d3.describe()
        st = d3.stats()
        assert st["dot_answers"] >= 2 and st["upstream_udp"] == 0 and st["upstream_tcp"] == 0, st
    finally:
        nsd.stop()


def test_restored_bad_is_not_probed(dotward, nsd, tmp_path):
    """A Bad entry within damping stays Bad across a restart: probe-on-start
    does not probe it again, queries use Do53."""
    state = str(tmp_path / "probes.state")
    now = time.time()
    write_state(state, [entry_line(nsd.addr, "bad", now - 60)])
    d = dotward(["%s:%d" % (nsd.addr, nsd.port)], ["--state-file", state])
    assert "probe state: restored 1 entries" in d.stderr(), d.describe()
    ask_ok(d)
    time.sleep(0.3)
    assert transitions(d.stderr(), nsd.addr) == [], d.describe()
    assert d.stop() == 0
    e = read_state(state)[nsd.addr]
    assert e["status"] == "bad" and e["reason"] == "connect-refused: Connection refused", e
    # kept as it was, to the second (the table keeps whole seconds, rounded down)
    assert 0 <= (now - 60) - float(e["completed"]) < 1.0, e


def test_expired_entries_dropped(dotward, nsd, tmp_path):
    """Good past persistence and Bad past damping are not restored."""
    state = str(tmp_path / "probes.state")
    now = time.time()
    write_state(state, [entry_line("10.9.9.1", "good", now - 4 * 86400),
                        entry_line("10.9.9.2", "bad", now - 2 * 86400),
                        entry_line("10.9.9.3", "good", now - 100)])
    d = dotward(["%s:%d tls=off" % (nsd.addr, nsd.port)], ["--state-file", state])
    assert re.search(r"restored 1 entries .*dropped 2 run out", d.stderr()), d.describe()
    assert d.stop() == 0
    entries = read_state(state)
    assert set(entries) == {"10.9.9.3"}, entries


def _valid_file(path):
    write_state(path, [entry_line("10.9.9.%d" % i, "good", time.time() - 10) for i in range(1, 30)])
    with open(path, "rb") as f:
        return f.read()


BAD_FILES = {
    "truncated": lambda p: _valid_file(p)[: len(_valid_file(p)) // 2],
    "garbage": lambda p: bytes(random.Random(7).randrange(256) for _ in range(5000)),
    "wrong-version": lambda p: _valid_file(p).replace(b"dotward-probe-state 1", b"dotward-probe-state 2", 1),
    "not-ours": lambda p: b"[server]\nlisten = 127.0.0.1\n",
    "empty": lambda p: b"",
    "bad-field": lambda p: _valid_file(p).replace(b"\tgood\t", b"\tgud\t", 1),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES) + ["huge", "directory"])
def test_bad_state_file(kind, dotward, nsd, tmp_path):
    """One warning, dotward serves, and the next save writes a good file."""
    state = str(tmp_path / "probes.state")
    if kind == "huge":
        with open(state, "wb") as f:  # sparse: 100 MiB of nothing
            f.truncate(100 << 20)
    elif kind == "directory":
        os.mkdir(state + ".d")
        state = state + ".d"
    else:
        data = BAD_FILES[kind](state)
        with open(state, "wb") as f:
            f.write(data)
    t0 = time.monotonic()
    # Opportunistic upstream without DoT: the probe fails, a Bad entry to save.
    d = dotward(["%s:%d" % (nsd.addr, nsd.port)], ["--state-file", state])
    started = time.monotonic() - t0
    log = d.stderr()
    warnings = [ln for ln in log.splitlines() if "probe state:" in ln]
    assert len(warnings) == 1, "want one probe state line:\n%s" % d.describe()
    assert "ignored, starting with an empty table" in warnings[0], warnings
    if kind == "huge":
        assert "not read" in warnings[0], warnings
        assert started < 5, "a 100 MiB file slowed the start to %.1f s" % started
    ask_ok(d)
    assert d.wait_log("dot-probe: %s busy -> bad" % nsd.addr, cap=8), d.describe()
    assert d.stop() == 0
    if kind == "directory":
        # Cannot be replaced by a file: the save fails, with a warning, and the exit is clean.
        assert re.search(r"probe state: not saved: cannot rename", d.stderr()), d.describe()
        assert os.path.isdir(state)
        return
    entries = read_state(state)
    assert entries[nsd.addr]["status"] == "bad", entries
    assert os.path.getsize(state) < 4096


def test_save_interval(dotward, nsd, tmp_path):
    """save-interval saves while running (10 s is the smallest allowed)."""
    state = str(tmp_path / "probes.state")
    conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s:%d\nresolv-conf = %s\n"
            "[probe]\nstate-file = %s\nsave-interval = 10s\n") % (
                nsd.addr, nsd.port, tmp_path / "resolv-default.conf", state)
    d = dotward(config=conf)
    assert d.wait_log("dot-probe: %s busy -> bad" % nsd.addr, cap=8), d.describe()
    assert not os.path.exists(state)
    assert harness.wait_until(lambda: os.path.exists(state), cap=13), "no save within 13 s\n" + d.describe()
    assert d.alive()
    assert read_state(state)[nsd.addr]["status"] == "bad"
    # Nothing left over in the directory but the file itself.
    assert [n for n in os.listdir(tmp_path) if n.startswith("probes.state")] == ["probes.state"]


def test_kill9_during_save(dotward_bin, nsd, tmp_path):
    """kill -9 at random moments around the exit save: the file at the path
    always parses (the old one or the new one, never a mix)."""
    state = str(tmp_path / "probes.state")
    now = time.time()
    n = 20000  # a save of about 2.5 MB, so a kill lands inside it now and then
    write_state(state, [entry_line("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), "good", now - 5)
                        for i in range(1, n + 1)])
    conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s:%d tls=off\nresolv-conf = %s\n"
            "[probe]\nstate-file = %s\nmax-entries = 65536\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    rnd = random.Random(9)
    mid_save = 0
    for i in range(20):
        addr = harness.ADDRS.take()
        port = harness.free_port(addr)
        d = harness.Dotward(dotward_bin, tmp_path, (addr, port), [],
                            conf.replace("{listen}", "%s:%d" % (addr, port)) % (
                                nsd.addr, nsd.port, resolv, state), name="k%d" % i)
        d.start(udp_probe=False)
        try:
            assert "restored %d entries" % n in d.stderr(), d.describe()
            d.send_signal(signal.SIGTERM)
            time.sleep(rnd.uniform(0, 0.15))
            d.proc.kill()
            d.proc.wait(5)
        finally:
            d.kill()
        entries = read_state(state)  # asserts the file is whole
        assert len(entries) == n, len(entries)
        found = harness.sanitizer_findings(d.stderr())
        assert not found, d.describe()
        tmp = "%s.tmp.%d" % (state, d.proc.pid)
        if os.path.exists(tmp):
            mid_save += 1
            os.unlink(tmp)
    print("kills that landed inside a save: %d of 20" % mid_save)


def test_reload_keeps_dot_connection_and_table(need_dot, dotward, dotward_bin, tmp_path):
    """A reload keeps the probe table and the open DoT connection of an
    unchanged upstream, and applies a changed probe policy."""
    addr = dot_addr()
    port = harness.free_port(addr)
    nsd = DotNsd(tmp_path / "nsd", addr, port).start()
    tool = control_tool(dotward_bin)
    sock = str(tmp_path / "ctl.sock")
    conf = ("[server]\nlisten = {listen}\ncontrol-socket = %s\n[forward]\nupstream = %s:%d\n"
            "[probe]\ndamping = %s\n")
    try:
        d = dotward(config=conf % (sock, addr, port, "1d"), args=["-v"])
        assert d.wait_log("dot-probe: %s busy -> good" % addr, cap=8), d.describe()
        for _ in range(3):
            ask_ok(d)
        st0 = d.stats()
        assert st0["dot_answers"] >= 3 and st0["dot_connections"] == 1, st0
        d.write_config(conf.replace("{listen}", "%s:%d" % (d.addr, d.port)) % (sock, addr, port, "2h"))
        mark = len(d.stderr())
        d.send_signal(signal.SIGHUP)
        assert d.wait_log("reloaded", cap=5, after=mark), d.describe()
        for _ in range(3):
            ask_ok(d)
        st1 = d.stats()
        assert st1["dot_answers"] - st0["dot_answers"] == 3, (st0, st1)
        assert st1["dot_connections"] == 1, "the DoT connection was reopened by the reload: %s" % st1
        assert "probe started" not in d.stderr()[mark:], "re-probed after reload\n" + d.describe()
        if tool:
            row = dump_probes(tool, sock)[addr]
            assert row["status"] == "Good" and row["probes"] == "1", row
            # Force a failure: with the new damping, Bad lasts 2 h, not 1 d.
            nsd.stop()
            r = subprocess.run([tool, "-s", sock, "probe", addr], capture_output=True, text=True, timeout=5)
            assert r.returncode == 0, r.stderr
            assert harness.wait_until(lambda: dump_probes(tool, sock)[addr]["status"] == "Bad", cap=8), \
                dump_probes(tool, sock)
            row = dump_probes(tool, sock)[addr]
            from datetime import datetime
            ttd = datetime.strptime(row["ttd"], "%Y-%m-%dT%H:%M:%SZ")
            completed = datetime.strptime(row["completed"], "%Y-%m-%dT%H:%M:%SZ")
            assert abs((ttd - completed).total_seconds() - 7200) <= 2, row
    finally:
        nsd.stop()
