"""Reload under load: SIGHUP and `dotward-control reload` while queries are
in flight. Every query dotward accepted must be answered, the running
upstream connections and the probe table survive."""
import os
import signal
import subprocess
import threading
import time

import dns.message
import dns.query
import dns.rcode

import harness
from harness import ask, wait_until

CONTROL = os.environ.get("DOTWARD_CONTROL_BIN",
                         os.path.join(os.path.dirname(__file__), "..", "..", "build", "tools", "dotward-control"))

CONFIG = """[server]
listen = {listen}
control-socket = %s
[forward]
upstream = %s
attempt-timeout = %s
"""


def load(addr, port, stop, results, lock, tid):
    """Sequential UDP queries until `stop`; each either answered or not."""
    n = 0
    while not stop.is_set():
        n += 1
        q = dns.message.make_query("h%d-%d.fake." % (tid, n), "A")
        try:
            r = dns.query.udp(q, addr, port=port, timeout=3.0)
            ok = r.id == q.id and r.rcode() == dns.rcode.NOERROR
        except Exception:
            ok = False
        with lock:
            results.append(ok)


def test_reload_under_load_loses_nothing(dotward, fake, tmp_path):
    up = fake(delay=0.05)    # queries are in flight for 50 ms: reloads land among them
    sock = str(tmp_path / "ctl.sock")
    d = dotward(config=CONFIG % (sock, up.server, "2s"))
    stop = threading.Event()
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=load, args=(d.addr, d.port, stop, results, lock, i)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for i in range(6):
            # Alternate a changed config (attempt-timeout) and an unchanged one.
            d.write_config(CONFIG.replace("{listen}", "%s:%d" % (d.addr, d.port))
                           % (sock, up.server, "2s" if i % 2 else "1500ms"))
            if i % 2:
                d.send_signal(signal.SIGHUP)
            else:
                r = subprocess.run([CONTROL, "-s", sock, "reload"], capture_output=True, text=True, timeout=5)
                assert r.returncode == 0, r.stderr
            time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(results) > 200, "too little load to mean anything: %d queries" % len(results)
    lost = results.count(False)
    assert lost == 0, "%d of %d queries unanswered across 6 reloads\n%s" % (lost, len(results), d.describe())
    assert d.stderr().count("reloaded") >= 6, d.describe()
    st = d.stats()
    assert st["servfail"] == 0 and st["answered"] == len(results), st


def test_reload_keeps_tcp_connection_to_unchanged_upstream(dotward, fake, tmp_path):
    """An unchanged upstream keeps its connection (and RTT history) across a reload."""
    up = fake()
    sock = str(tmp_path / "ctl.sock")
    d = dotward(config=CONFIG % (sock, up.server, "800ms"))
    assert harness.rcode_text(ask(d.addr, d.port, "a1.fake.", "A", "tcp")) == "NOERROR"
    before = up.tcp_connections
    d.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "reloaded" in d.stderr(), cap=5), d.describe()
    for i in range(3):
        assert harness.rcode_text(ask(d.addr, d.port, "a%d.fake." % (i + 2), "A", "tcp")) == "NOERROR"
    st = d.stats()
    assert st["upstream_tcp"] == 4 and st["upstream_errors"] == 0, st
    assert up.tcp_connections == before == 1, "the upstream TCP connection was reopened by the reload"
