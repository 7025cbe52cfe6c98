"""Fixtures for dotward's system tests: the binary, real servers (NSD, knot),
scripted upstreams, and a dotward launcher that checks every instance exits 0
on SIGTERM with a clean (sanitizer-free) stderr."""
import itertools
import os

import pytest

import harness
from fakeupstream import FakeUpstream


def _dotward_path():
    p = os.environ.get("DOTWARD_BIN") or os.path.join(harness.REPO, "build", "dotward")
    return os.path.abspath(p)


@pytest.fixture(scope="session")
def dotward_bin():
    p = _dotward_path()
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        pytest.skip("dotward binary not found at %s (set DOTWARD_BIN)" % p)
    return p


@pytest.fixture(scope="session")
def nsd(tmp_path_factory):
    """NSD serving test. on its own 127.0.0.x address and port, for the session."""
    harness.need("nsd")
    addr = harness.ADDRS.take()
    srv = harness.Nsd(tmp_path_factory.mktemp("nsd"), addr, harness.free_port(addr)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def knot(tmp_path_factory):
    """knot serving the same zone (plus www.sub.test, which only knot has)."""
    harness.need("knotd")
    addr = harness.ADDRS.take()
    srv = harness.Knot(tmp_path_factory.mktemp("knot"), addr, harness.free_port(addr)).start()
    yield srv
    srv.stop()


_tags = itertools.count(1)


@pytest.fixture
def fake():
    """Factory: fake(mode='normal', delay=0.0) -> a started FakeUpstream on a new address."""
    made = []

    def make(mode="normal", delay=0.0):
        tag = next(_tags) % 250 + 1
        f = FakeUpstream(harness.ADDRS.take(), tag, mode=mode, delay=delay).start()
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


@pytest.fixture
def dotward(dotward_bin, tmp_path):
    """Factory that starts dotward and, at teardown, stops it with SIGTERM and
    fails the test unless it exits 0 with no sanitizer report in stderr.

    dotward(upstreams=[...], args=[...], config=TEXT, ready=True, udp_probe=True, resolv_conf=PATH)
    A config containing "{listen}" gets the listen address put there; otherwise
    the factory passes -l. Without resolv_conf, a resolv.conf written here (a
    loopback nameserver) is passed, so dotward never reads /etc/resolv.conf.
    """
    started = []
    safe_resolv = tmp_path / "resolv-default.conf"
    safe_resolv.write_text("nameserver 127.0.0.1\n")

    def start(upstreams=(), args=(), config=None, ready=True, udp_probe=True, resolv_conf=None):
        addr = harness.ADDRS.take()
        port = harness.free_port(addr)
        argv = []
        if config is not None and "{listen}" in config:
            config = config.replace("{listen}", "%s:%d" % (addr, port))
        else:
            argv += ["-l", "%s:%d" % (addr, port)]
        for u in upstreams:
            argv += ["-u", u]
        argv += ["--resolv-conf", str(resolv_conf or safe_resolv)]
        argv += list(args)
        d = harness.Dotward(dotward_bin, tmp_path, (addr, port), argv, config,
                            name="dotward%d" % len(started))
        started.append(d)
        d.start(ready=ready, udp_probe=udp_probe)
        return d

    yield start
    problems = []
    for d in started:
        mine = []
        was_running = d.alive()
        try:
            rc = d.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if was_running and rc != 0:
            mine.append("dotward exited %s on SIGTERM (expected 0)" % rc)
        elif not was_running and rc not in (0, None):
            mine.append("dotward had already exited with %s before teardown" % rc)
        found = harness.sanitizer_findings(d.stderr())
        if found:
            mine.append("sanitizer report in stderr: %s" % ", ".join(found))
        if mine:
            problems += mine + [d.describe()]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
