"""Configuration: errors as FILE:LINE with exit 2, --check-config, flags over
the file, and SIGHUP reloads (bad file keeps the old config serving)."""
import os
import re
import signal

import harness
from fakeupstream import fake_a
from harness import ADDRS, ask, free_port, rrset_values, run_dotward, wait_until

# (text, bad?) per line; line numbers are the list positions + 1
BAD_CONFIG = [
    ("; dotward test config with mistakes", False),
    ("[server]", False),
    ("listen = {listen}", False),
    ("listen = 127.0.0.1:99999", True),
    ("allow = 10.0.0.0/33", True),
    ("refused-action = maybe", True),
    ("tcp-clients = -5", True),
    ("no-such-key = 1", True),
    ("log-level = loud", True),
    ("[forward]", False),
    ("upstream = 127.0.0.1:5300", False),
    ("timeout = banana", True),
    ("attempt-timeout = 800ms", False),
    ("udp-sockets = many", True),
    ("upstream = example.org=", True),
    ("edns-buffer-size = 100000", True),
    ("udp-socket-uses = 1000", False),
]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def resolv(tmp_path):
    """dotward never reads /etc/resolv.conf in tests."""
    return write(tmp_path / "resolv.conf", "nameserver 127.0.0.1\n")


def bad_config(tmp_path, listen):
    text = "\n".join(t for t, _ in BAD_CONFIG).replace("{listen}", listen) + "\n"
    return write(tmp_path / "bad.conf", text)


def check_errors(path, err, lines=BAD_CONFIG):
    for n, (text, bad) in enumerate(lines, 1):
        tag = "%s:%d:" % (path, n)
        if bad:
            assert tag in err, "bad line %d (%s) not reported as %s\nstderr:\n%s" % (n, text, tag, err)
        else:
            assert tag not in err, "good line %d (%s) reported as an error\nstderr:\n%s" % (n, text, err)


def test_bad_config_check_config(dotward_bin, tmp_path):
    path = bad_config(tmp_path, "127.0.0.1:5353")
    p = run_dotward(dotward_bin, ["-c", path, "--check-config", "--resolv-conf", resolv(tmp_path)], tmp_path)
    assert p.returncode == 2, "exit %d, want 2\nstderr:\n%s" % (p.returncode, p.stderr)
    check_errors(path, p.stderr)
    assert not harness.sanitizer_findings(p.stderr), p.stderr


def test_bad_config_refuses_to_start(dotward_bin, tmp_path):
    addr = ADDRS.take()
    path = bad_config(tmp_path, "%s:%d" % (addr, free_port(addr)))
    p = run_dotward(dotward_bin, ["-c", path, "--resolv-conf", resolv(tmp_path)], tmp_path)
    assert p.returncode == 2, "exit %d, want 2\nstderr:\n%s" % (p.returncode, p.stderr)
    check_errors(path, p.stderr)
    assert "listening on" not in p.stderr
    assert not harness.sanitizer_findings(p.stderr), p.stderr


COMMENT_MSG = ("a '%s' at the start of a value or after a blank reads as a comment "
               "(a comment after a value starts with ' ;')")

# Values that --check-config could not print so that they load back the
# same, and relative paths: (text, message or None), line = position + 1.
BAD_VALUES = [
    ("[forward]", None),
    ("resolv-conf =; ;x", "resolv-conf: ';': " + COMMENT_MSG % ";"),
    ("upstream = 127.0.0.1:5300 tls=strict name=a.example ca=ca.pem", "upstream: ca=ca.pem: not an absolute path"),
    ("[probe]", None),
    ("state-file = state.db", "state-file: 'state.db' is not an absolute path"),
    ("state-file = /srv/x # old", "state-file: '/srv/x # old': " + COMMENT_MSG % "#"),
    ("[server]", None),
    ("listen = {listen}", None),
    ("control-socket = run/control.sock", "control-socket: 'run/control.sock' is not an absolute path"),
    ("user =;x", "user: ';x': " + COMMENT_MSG % ";"),
    ("allow = 127.0.0.0/8 ; a comment after a value is fine", None),
]


def test_bad_values_file_line_exit_2(dotward_bin, tmp_path):
    """Each refused value is one "FILE:LINE: key: ..." line; exit 2."""
    text = "\n".join(t for t, _ in BAD_VALUES).replace("{listen}", "127.0.0.5:5399") + "\n"
    path = write(tmp_path / "values.conf", text)
    p = run_dotward(dotward_bin, ["-c", path, "--check-config", "--resolv-conf", resolv(tmp_path)], tmp_path)
    assert p.returncode == 2, "exit %d, want 2\nstderr:\n%s" % (p.returncode, p.stderr)
    check_errors(path, p.stderr, [(t, msg is not None) for t, msg in BAD_VALUES])
    for n, (t, msg) in enumerate(BAD_VALUES, 1):
        if msg:
            assert "%s:%d: %s\n" % (path, n, msg) in p.stderr, "line %d (%s)\nstderr:\n%s" % (n, t, p.stderr)
    assert p.stdout == "", "a bad file printed a config:\n" + p.stdout
    assert not harness.sanitizer_findings(p.stderr), p.stderr


def test_bad_values_command_line_exit_2(dotward_bin, tmp_path):
    """The flags follow the same rules: "command line: FLAG: ...", exit 2."""
    cases = [
        (["--state-file", "/x ;y"], "command line: --state-file: '/x ;y': " + COMMENT_MSG % ";"),
        (["--state-file", "/x "], "command line: --state-file: '/x ' begins or ends with a blank"),
        (["--control", "/run/a\nb"], "command line: --control: '/run/a\\x0ab' contains a control character"),
        (["--resolv-conf", "resolv.conf"], "command line: --resolv-conf: 'resolv.conf' is not an absolute path"),
    ]
    for args, msg in cases:
        p = run_dotward(dotward_bin, ["--check-config", "-l", "127.0.0.5:5399", "--resolv-conf", resolv(tmp_path)]
                        + args, tmp_path)
        assert p.returncode == 2, "%s: exit %d, want 2\nstderr:\n%s" % (args, p.returncode, p.stderr)
        assert msg + "\n" in p.stderr, "%s: want %r\nstderr:\n%s" % (args, msg, p.stderr)


def test_check_config_output_loads_back(dotward_bin, tmp_path):
    """--check-config prints a file that --check-config prints again, the
    same: ';' and '#' inside words, blanks inside a path, tabs in an upstream."""
    text = ("[server]\nlisten = 127.0.0.5:5399\ncontrol-socket = /run/#x;y ; a comment\n"
            "[forward]\nupstream = 127.0.0.9:5300\ttls=off\t kind=authoritative\nupstream = h.example\n"
            "[probe]\nstate-file = %s/my state;1#2\n" % tmp_path)
    first = write(tmp_path / "first.conf", text)
    p = run_dotward(dotward_bin, ["-c", first, "--check-config", "--resolv-conf", resolv(tmp_path)], tmp_path)
    assert p.returncode == 0, "exit %d\nstderr:\n%s" % (p.returncode, p.stderr)
    assert "\ncontrol-socket = /run/#x;y\n" in p.stdout, p.stdout
    assert "\nupstream = 127.0.0.9:5300 tls=off kind=authoritative\n" in p.stdout, p.stdout
    assert "\nupstream = h.example:53\n" in p.stdout, p.stdout
    second = write(tmp_path / "second.conf", p.stdout)
    q = run_dotward(dotward_bin, ["-c", second, "--check-config", "--resolv-conf", resolv(tmp_path)], tmp_path)
    assert q.returncode == 0, "the printed config does not load (exit %d)\n%s\n%s" % (q.returncode, q.stderr, p.stdout)
    # Only the first line, a comment with the file name, differs.
    assert q.stdout.split("\n", 1)[1] == p.stdout.split("\n", 1)[1], "first:\n%s\nsecond:\n%s" % (p.stdout, q.stdout)


GOOD_CONFIG = """; every key, none at its default
[server]
listen = {listen}
allow = 127.0.0.0/8
allow = 10.1.0.0/16
refused-action = drop
tcp-clients = 77
tcp-idle-timeout = 7s
max-queries = 999
log-level = notice
drain-timeout = 2s
[forward]
upstream = 127.0.0.9:5300
upstream = corp.example=127.0.0.8:5301
timeout = 2s
attempt-timeout = 500ms
udp-sockets = 33
udp-socket-uses = 444
edns-buffer-size = 1400
upstream-tcp-idle = 9s
"""


def test_check_config_good(dotward_bin, tmp_path):
    path = write(tmp_path / "good.conf", GOOD_CONFIG.replace("{listen}", "127.0.0.5:5399"))
    p = run_dotward(dotward_bin, ["-c", path, "--check-config", "--resolv-conf", resolv(tmp_path)], tmp_path)
    assert p.returncode == 0, "exit %d\nstderr:\n%s" % (p.returncode, p.stderr)
    out = p.stdout
    for want in ("127.0.0.5", "5399", "10.1.0.0/16", "drop", "77", "999", "notice",
                 "127.0.0.9", "5300", "corp.example", "127.0.0.8", "5301", "1400", "33", "444"):
        assert want in out, "%r missing from the printed config:\n%s" % (want, out)
    assert not harness.sanitizer_findings(p.stderr), p.stderr


def test_flags_override_file(dotward_bin, tmp_path):
    path = write(tmp_path / "good.conf", GOOD_CONFIG.replace("{listen}", "127.0.0.5:5399"))
    p = run_dotward(dotward_bin, ["-c", path, "--check-config", "--resolv-conf", resolv(tmp_path),
                                  "-l", "127.0.0.6:5398", "-u", "127.0.0.7:5397"], tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "127.0.0.6" in out and "127.0.0.7" in out, out
    assert "127.0.0.5" not in out, "-l did not replace the file's listen:\n" + out
    assert "127.0.0.9" not in out, "-u did not replace the file's upstreams:\n" + out
    assert "1400" in out  # the rest of the file still applies


def test_version_and_help(dotward_bin, tmp_path):
    with open(os.path.join(harness.REPO, "meson.build")) as f:
        version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
    p = run_dotward(dotward_bin, ["--version"], tmp_path)
    assert p.returncode == 0 and version in p.stdout + p.stderr, (p.returncode, p.stdout, p.stderr)
    p = run_dotward(dotward_bin, ["--help"], tmp_path)
    assert p.returncode == 0 and "--check-config" in p.stdout + p.stderr, (p.returncode, p.stdout)


RELOAD_CONFIG = "[server]\nlisten = %s\n[forward]\nupstream = %s\n"


def test_sighup_bad_file_keeps_serving(dotward, fake):
    a = fake()
    d = dotward(config=RELOAD_CONFIG % ("{listen}", a.server))
    listen = "%s:%d" % (d.addr, d.port)
    assert rrset_values(ask(d.addr, d.port, "h1.fake.", "A"), "A") == [fake_a(a.tag, "h1.fake")]

    d.write_config("[server]\nlisten = %s\n[forward]\nupstream = %s\n"
                   "timeout = banana\nudp-sockets = many\n" % (listen, a.server))
    mark = len(d.stderr())
    d.send_signal(signal.SIGHUP)
    for line in (5, 6):
        assert d.wait_log("%s:%d:" % (d.config_path, line), after=mark), \
            "reload error for line %d not logged as FILE:LINE\n%s" % (line, d.describe())
    assert d.alive(), d.describe()
    for transport in ("udp", "tcp"):
        r = ask(d.addr, d.port, "h2.fake.", "A", transport)
        assert rrset_values(r, "A") == [fake_a(a.tag, "h2.fake")], r


def test_sighup_good_file_takes_effect(dotward, fake):
    a, b = fake(), fake()
    d = dotward(config=RELOAD_CONFIG % ("{listen}", a.server))
    listen = "%s:%d" % (d.addr, d.port)
    assert rrset_values(ask(d.addr, d.port, "g1.fake.", "A"), "A") == [fake_a(a.tag, "g1.fake")]

    d.write_config(RELOAD_CONFIG % (listen, b.server))
    d.send_signal(signal.SIGHUP)

    def switched():
        return rrset_values(ask(d.addr, d.port, "g2.fake.", "A"), "A") == [fake_a(b.tag, "g2.fake")]
    assert wait_until(switched, cap=5, step=0.1), "upstream change not applied\n" + d.describe()
    a.reset()
    for transport in ("udp", "tcp"):
        r = ask(d.addr, d.port, "g3.fake.", "A", transport)
        assert rrset_values(r, "A") == [fake_a(b.tag, "g3.fake")]
    assert a.count() == 0, "old upstream still used: %s" % a.queries()
