"""Default listen addresses on a host without IPv6: [::1] is skipped with a
warning and 127.0.0.1:5353 serves; an address that cannot be bound for any
other reason stays fatal."""
import os
import subprocess
import time

import pytest

import harness


def netns(name, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", name] + list(cmd), capture_output=True, text=True,
                          timeout=kw.get("timeout", 10))


@pytest.fixture
def no_ipv6_ns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = "dwl-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        netns(name, "ip", "link", "set", "lo", "up")
        netns(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        netns(name, "sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1")
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for p in pids:
            subprocess.run(["kill", "-9", p])
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def test_default_listen_without_ipv6(no_ipv6_ns, dotward_bin, tmp_path):
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 127.0.0.1\n")
    log = open(tmp_path / "d.log", "w+")
    # An upstream that does not exist: REFUSED/SERVFAIL is not the point, an answer is.
    p = subprocess.Popen(["ip", "netns", "exec", no_ipv6_ns, dotward_bin, "-u", "127.0.0.9:5300",
                          "--resolv-conf", str(rc)], stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = ("import sys, dns.message, dns.query, dns.rcode\n"
                 "r = dns.query.udp(dns.message.make_query('www.test.', 'A'), '127.0.0.1', port=5353, timeout=4)\n"
                 "print(dns.rcode.to_text(r.rcode()))\n")
        out = None
        for _ in range(50):
            r = netns(no_ipv6_ns, "/usr/bin/python3", "-c", probe, timeout=10)
            if r.returncode == 0:
                out = r.stdout.strip()
                break
            time.sleep(0.1)
        log.seek(0)
        text = log.read()
        assert out == "SERVFAIL", (out, text)   # answered on 127.0.0.1:5353; the upstream is silent
        assert "no IPv6 on this host: not listening on [::1]:5353" in text, text
        assert "listening on 127.0.0.1:5353/udp, 127.0.0.1:5353/tcp;" in text, text
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_unbindable_address_is_fatal(dotward_bin, tmp_path):
    r = harness.run_dotward(dotward_bin, ["-l", "198.51.100.254:5353", "-u", "127.0.0.9:5300",
                                          "--resolv-conf", "/dev/null"], tmp_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot listen on 198.51.100.254:5353/udp" in r.stderr, r.stderr
