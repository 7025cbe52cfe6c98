"""Bind as root, then drop to `user`/`group`; never run on as root when the
drop fails."""
import os

import pytest

import harness
from harness import ask, rcode_text, run_dotward

CONFIG = "[server]\nlisten = {listen}\n%s\n[forward]\nupstream = %s\n"


def ids(pid):
    status = open("/proc/%d/status" % pid).read()
    uid = [int(x) for x in status.split("Uid:")[1].split("\n")[0].split()]
    gid = [int(x) for x in status.split("Gid:")[1].split("\n")[0].split()]
    groups = status.split("Groups:")[1].split("\n")[0].split()
    return uid, gid, groups


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs a start as root")


def test_drops_to_user_after_binding(root, dotward, nsd):
    import pwd
    nobody = pwd.getpwnam("nobody")
    d = dotward(config=CONFIG % ("user = nobody", "%s:%d" % (nsd.addr, nsd.port)))
    uid, gid, groups = ids(d.proc.pid)
    assert uid == [nobody.pw_uid] * 4, uid          # real, effective, saved, fs
    assert gid == [nobody.pw_gid] * 4, gid
    assert groups == [str(nobody.pw_gid)], groups
    assert "running as user nobody" in d.stderr(), d.describe()
    for transport in ("udp", "tcp"):
        assert rcode_text(ask(d.addr, d.port, "www.test.", "A", transport)) == "NOERROR"


def test_group_option(root, dotward, nsd):
    import grp
    nogroup = grp.getgrnam("nogroup")
    d = dotward(config=CONFIG % ("user = nobody\ngroup = nogroup", "%s:%d" % (nsd.addr, nsd.port)))
    uid, gid, groups = ids(d.proc.pid)
    assert gid == [nogroup.gr_gid] * 4 and groups == [str(nogroup.gr_gid)], (gid, groups)
    assert rcode_text(ask(d.addr, d.port, "www.test.", "A")) == "NOERROR"


def test_unknown_user_refuses_to_run(root, dotward_bin, nsd, tmp_path):
    addr = harness.ADDRS.take()
    port = harness.free_port(addr)
    conf = tmp_path / "d.conf"
    conf.write_text(CONFIG.replace("{listen}", "%s:%d" % (addr, port))
                    % ("user = no-such-user-here", "%s:%d" % (nsd.addr, nsd.port)))
    r = run_dotward(dotward_bin, ["-c", str(conf), "--resolv-conf", "/dev/null"], str(tmp_path))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot drop privileges: user 'no-such-user-here'" in r.stderr, r.stderr
    assert "listening on" not in r.stderr, r.stderr   # never served as root
