"""Deployment files: the systemd unit, the OpenWrt package, the Dockerfile, the
man pages, and the legacy-resolver recipes of docs/DEPLOY.md.

What cannot run here (systemd as PID 1, an OpenWrt build, a Docker engine) is
checked by the tools that exist (systemd-analyze, sh, apt-cache, dpkg, groff,
man) and against the sources the files must agree with (scripts/run,
scripts/deps.sh, meson.build, config/options.def, daemon/main.c,
daemon/control_proto.h). The recipes run for real: unbound, dnsmasq and BIND,
configured with the snippets of docs/DEPLOY.md, forward through dotward to NSD,
all on loopback."""
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading

import pytest

import harness
from harness import ADDRS, free_port, run_dotward

REPO = harness.REPO
DEPLOY = os.path.join(REPO, "deploy")
DOCS = os.path.join(REPO, "docs")
UNIT = os.path.join(DEPLOY, "systemd", "dotward.service")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
DOCKER_CONF = os.path.join(DEPLOY, "docker", "dotward.conf")
OWRT = os.path.join(DEPLOY, "openwrt")
MAN_PAGES = ["dotward.8", "dotward.conf.5", "dotward-control.8"]
CAP = 20  # seconds, for every external tool


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", CAP)
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, **kw)


def tool(name):
    """The path of a program, or a skip naming it."""
    return harness.need(name)


def safe_resolv(tmp_path):
    return write(tmp_path / "resolv.conf", "nameserver 127.0.0.1\n")


def meson_subdirs():
    return re.findall(r"^subdir\('([^']+)'\)", read(os.path.join(REPO, "meson.build")), re.M)


def meson_version():
    return re.search(r"version\s*:\s*'([^']+)'", read(os.path.join(REPO, "meson.build"))).group(1)


def dotward_long_options():
    """Long options of the daemon, from its getopt table in daemon/main.c."""
    src = read(os.path.join(REPO, "daemon", "main.c"))
    return re.findall(r'\{\s*"([a-z][a-z-]*)",\s*(?:no|required|optional)_argument', src)


def dotward_knows(binary, option, tmp_path):
    """Whether this dotward binary accepts a long option (features land in
    parallel with these files; a binary without it gets a skip that says so)."""
    p = run_dotward(binary, ["--check-config", "--resolv-conf", safe_resolv(tmp_path), option, "x"], tmp_path)
    return "unrecognized option" not in p.stderr


# --------------------------------------------------------------------------
# systemd

def parse_unit(text):
    """{section: {key: [values]}}; repeated keys keep every value."""
    out, sec = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.match(r"\[(\w+)\]$", line)
        if m:
            sec = out.setdefault(m.group(1), {})
            continue
        k, _, v = line.partition("=")
        sec.setdefault(k.strip(), []).append(v.strip())
    return out


def unit_with_binary(tmp_path, binary, name="dotward.service"):
    text = read(UNIT).replace("ExecStart=/usr/sbin/dotward ", "ExecStart=%s " % binary)
    assert binary in text, "ExecStart does not start with /usr/sbin/dotward"
    return write(tmp_path / name, text)


def man_env(tmp_path):
    """MANPATH with docs/ laid out as man5/man8, so `man dotward(8)` (what
    systemd-analyze runs for Documentation=) finds the pages of this tree."""
    root = tmp_path / "man"
    for page in MAN_PAGES:
        sec = page.rsplit(".", 1)[1]
        d = root / ("man" + sec)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(DOCS, page), d / page)
    env = dict(os.environ)
    env["MANPATH"] = str(root)
    return env


def test_systemd_unit_verifies(dotward_bin, tmp_path):
    analyze = tool("systemd-analyze")
    unit = unit_with_binary(tmp_path, dotward_bin)
    p = run([analyze, "verify", unit], env=man_env(tmp_path), cwd=str(tmp_path))
    # verify exits 0 on unknown keys and bad values too: its warnings go to stderr
    assert p.returncode == 0 and p.stderr.strip() == "", (
        "systemd-analyze verify failed (rc %d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    # and it does catch a unit whose binary is missing
    bad = write(tmp_path / "dotward-missing.service",
                read(unit).replace(dotward_bin, str(tmp_path / "no-such-dotward")))
    p = run([analyze, "verify", "--man=no", bad], cwd=str(tmp_path))
    assert p.returncode != 0 and "no-such-dotward" in p.stderr, p.stderr


def test_systemd_unit_settings():
    u = parse_unit(read(UNIT))
    svc = u["Service"]

    def one(key):
        assert key in svc, "%s= missing from the unit" % key
        return svc[key][-1]

    expect = {
        "Type": "simple", "ExecReload": "/bin/kill -HUP $MAINPID", "RuntimeDirectory": "dotward",
        "StateDirectory": "dotward", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "Restart": "on-failure",
    }
    for k, v in expect.items():
        assert one(k) == v, "%s=%s, expected %s" % (k, one(k), v)
    assert one("DynamicUser") == "yes" or one("User") == "dotward"
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in svc["SystemCallFilter"][0].split()
    # exit status 2 is a bad configuration: restarting cannot fix it
    assert "2" in one("RestartPreventExitStatus").split()

    argv = shlex.split(one("ExecStart"))
    assert argv[0] == "/usr/sbin/dotward"
    opts = dict(zip(argv[1::2], argv[2::2]))
    assert opts.get("-c") == "/etc/dotward/dotward.conf", argv
    # the paths dotward writes must be inside the directories systemd makes writable
    assert opts.get("--control") == "/run/%s/control.sock" % one("RuntimeDirectory"), argv
    assert opts.get("--state-file") == "/var/lib/%s/probe-state" % one("StateDirectory"), argv
    # the control client's default socket is the unit's
    proto = read(os.path.join(REPO, "daemon", "control_proto.h"))
    assert '"%s"' % opts["--control"] in proto, "CONTROL_DEFAULT_SOCKET differs from the unit's --control"
    docs = re.findall(r"man:([\w.-]+)\((\d)\)", " ".join(u["Unit"]["Documentation"]))
    assert {"%s.%s" % d for d in docs} == set(MAN_PAGES)


def test_systemd_unit_exposure(tmp_path):
    analyze = tool("systemd-analyze")
    p = run([analyze, "security", "--offline=yes", "--no-pager", UNIT], cwd=str(tmp_path))
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", p.stdout + p.stderr)
    assert m, "no exposure level in:\n%s%s" % (p.stdout, p.stderr)
    assert float(m.group(1)) <= 2.5, "exposure %s: the sandbox got weaker\n%s" % (m.group(1), p.stdout)


def test_systemd_execstart_is_accepted(dotward_bin, tmp_path):
    """The unit's command line parses: every flag exists in this dotward."""
    for flag in ("--control", "--state-file"):
        if not dotward_knows(dotward_bin, flag, tmp_path):
            pytest.skip("this dotward has no %s yet (unit needs it)" % flag)
    argv = shlex.split(parse_unit(read(UNIT))["Service"]["ExecStart"][-1])
    argv = [os.path.join(REPO, "config", "dotward.conf.example") if a == "/etc/dotward/dotward.conf" else a
            for a in argv[1:]]
    p = run_dotward(dotward_bin, argv + ["--check-config", "--resolv-conf", safe_resolv(tmp_path)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "/var/lib/dotward/probe-state" in p.stdout and "/run/dotward/control.sock" in p.stdout, p.stdout


# --------------------------------------------------------------------------
# OpenWrt

def parse_uci(text):
    """{section_name: {option: value or [list values]}} of a UCI file."""
    out, cur = {}, None
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "config":
            cur = out.setdefault(words[2] if len(words) > 2 else words[1], {})
        elif words[0] == "option":
            cur[words[1]] = words[2] if len(words) > 2 else ""
        elif words[0] == "list":
            cur.setdefault(words[1], []).append(words[2])
    return out


# Stand-ins for OpenWrt's rc.common/functions.sh/procd.sh, enough for the init
# script: UCI values come from U_<option> variables (lists: one per line), and
# every procd call is appended to $PROCD_LOG, one argument per [...].
OWRT_STUBS = r'''
config_load() { :; }
config_get() {
    eval "__v=\${U_$3-}"
    [ -z "$__v" ] && __v="${4-}"
    __v=$(printf '%s' "$__v" | tr '\n' ' ' | sed 's/ $//')
    eval "$1=\$__v"
}
config_get_bool() {
    config_get "$1" "$2" "$3" "${4-0}"
    eval "__b=\$$1"
    case "$__b" in 1|on|yes|true|enabled) __b=1 ;; *) __b=0 ;; esac
    eval "$1=\$__b"
}
config_list_foreach() {
    __sec="$1"; __opt="$2"; __fn="$3"; shift 3
    eval "__items=\${U_$__opt-}"
    [ -z "$__items" ] && return 0
    printf '%s\n' "$__items" | while IFS= read -r __it; do "$__fn" "$__it" "$@"; done
}
plog() { __w="$1"; shift; { printf '%s' "$__w"; for a in "$@"; do printf ' [%s]' "$a"; done; echo; } >> "$PROCD_LOG"; }
procd_open_instance() { plog open_instance "$@"; }
procd_close_instance() { plog close_instance; }
procd_set_param() { plog set "$@"; }
procd_append_param() { plog append "$@"; }
procd_send_signal() { plog signal "$@"; }
procd_add_reload_trigger() { plog reload_trigger "$@"; }
procd_add_interface_trigger() { plog interface_trigger "$@"; }
chown() { plog chown "$@"; }
'''


def run_init(tmp_path, uci, functions):
    """Sources dotward.init with the stubs and the UCI values, runs the given
    functions; returns the procd log as [(word, [args])]."""
    log = tmp_path / "procd.log"
    log.write_text("")
    assigns = []
    for k, v in uci.items():
        val = "\n".join(v) if isinstance(v, list) else v
        assigns.append("U_%s=%s" % (k, shlex.quote(val)))
    script = "%s\n%s\n. %s\n%s\n" % (OWRT_STUBS, "\n".join(assigns),
                                      shlex.quote(os.path.join(OWRT, "dotward.init")), "\n".join(functions))
    env = dict(os.environ, PROCD_LOG=str(log), DOTWARD_CONF=str(tmp_path / "var-etc" / "dotward.conf"))
    p = run(["sh", "-e", "-c", script], env=env, cwd=str(tmp_path))
    assert p.returncode == 0, "init script failed (rc %d):\n%s" % (p.returncode, p.stderr)
    entries = []
    for line in log.read_text().splitlines():
        word, _, rest = line.partition(" ")
        entries.append((word, re.findall(r"\[([^\]]*)\]", rest)))
    return entries


def test_openwrt_init_script_syntax():
    init = os.path.join(OWRT, "dotward.init")
    text = read(init)
    assert text.startswith("#!/bin/sh /etc/rc.common\n")
    assert re.search(r"^USE_PROCD=1$", text, re.M) and re.search(r"^START=60$", text, re.M)
    for fn in ("start_service", "reload_service", "service_triggers"):
        assert re.search(r"^%s\(\) \{" % fn, text, re.M), fn
    shells = [s for s in ("sh", "dash", "busybox") if shutil.which(s)]
    for sh in shells:
        argv = [sh, "sh", "-n", init] if sh == "busybox" else [sh, "-n", init]
        p = run(argv)
        assert p.returncode == 0 and not p.stderr, "%s -n: %s" % (sh, p.stderr)
    # a syntax error is caught, so the check above means something
    broken = text.replace("reload_service() {", "reload_service() {{ (", 1)
    p = run(["sh", "-n", "/dev/stdin"], input=broken)
    assert p.returncode != 0


def test_openwrt_makefile():
    mk = read(os.path.join(OWRT, "Makefile"))
    assert re.search(r"^include \$\(TOPDIR\)/rules\.mk$", mk, re.M)
    assert re.search(r"^include \$\(INCLUDE_DIR\)/package\.mk$", mk, re.M)
    assert re.search(r"^include \$\(INCLUDE_DIR\)/meson\.mk$", mk, re.M)
    assert re.search(r"^PKG_NAME:=dotward$", mk, re.M)
    assert re.search(r"^PKG_VERSION:=%s$" % re.escape(meson_version()), mk, re.M), "PKG_VERSION != meson version"
    assert re.search(r"^PKG_INSTALL:=1$", mk, re.M), "meson.mk installs only with PKG_INSTALL:=1"
    # meson.mk resets MESON_ARGS: additions must come after the include
    assert mk.index("MESON_ARGS +=") > mk.index("include $(INCLUDE_DIR)/meson.mk")
    deps = re.search(r"^\s*DEPENDS:=(.*)$", mk, re.M).group(1).split()
    assert set(deps) == {"+libwolfssl", "+libcares", "+libev", "+libinih"}, deps
    install = re.search(r"define Package/dotward/install\n(.*?)\nendef", mk, re.S).group(1)
    for src, dst in (("$(PKG_INSTALL_DIR)/usr/sbin/dotward", "$(1)/usr/sbin/dotward"),
                     ("./dotward.init", "$(1)/etc/init.d/dotward"),
                     ("./dotward.config", "$(1)/etc/config/dotward")):
        assert re.search(r"\$\(INSTALL_(BIN|CONF)\) %s %s" % (re.escape(src), re.escape(dst)), install), src
    for f in ("dotward.init", "dotward.config"):
        assert os.path.isfile(os.path.join(OWRT, f))
    assert "/etc/config/dotward" in re.search(r"define Package/dotward/conffiles\n(.*?)\nendef", mk, re.S).group(1)
    assert "$(eval $(call BuildPackage,dotward))" in mk
    # recipe lines are tab-indented, or make fails
    for block in re.findall(r"define (?:Build/Prepare|Package/dotward/install)\n(.*?)\nendef", mk, re.S):
        for line in block.splitlines():
            assert line.startswith("\t"), "recipe line without a tab: %r" % line
    # the build copies every directory meson descends into
    prepare = re.search(r"define Build/Prepare\n(.*?)\nendef", mk, re.S).group(1)
    for d in meson_subdirs() + ["meson.build", "meson_options.txt"]:
        assert "$(DOTWARD_SRC)/%s" % d in prepare, "Build/Prepare does not copy %s" % d


def test_openwrt_init_generates_a_valid_config(dotward_bin, tmp_path):
    uci = parse_uci(read(os.path.join(OWRT, "dotward.config")))["main"]
    assert uci["enabled"] == "1"
    uci["state_file"] = str(tmp_path / "lib" / "probe-state")
    uci["control_socket"] = str(tmp_path / "run" / "control.sock")
    uci["upstream"] = ["9.9.9.9", "149.112.112.112 tls=strict name=dns.quad9.net", "lan.example=192.168.1.10 tls=off"]
    log = run_init(tmp_path, uci, ["start_service", "reload_service", "service_triggers"])
    conf = tmp_path / "var-etc" / "dotward.conf"
    assert conf.exists(), "start_service wrote no %s" % conf

    cmd = [a for w, args in log if w in ("set", "append") and args and args[0] == "command" for a in args[1:]]
    assert cmd[:3] == ["/usr/sbin/dotward", "-c", str(conf)], cmd
    assert cmd[cmd.index("--control") + 1] == uci["control_socket"], cmd
    assert cmd[cmd.index("--state-file") + 1] == uci["state_file"], cmd
    assert "--metrics-listen" not in cmd, "metrics_listen is empty by default"
    params = {args[0]: args[1:] for w, args in log if w == "set"}
    assert "respawn" in params and params["user"] == ["dotward"] and params["stderr"] == ["1"], params
    assert "/etc/config/dotward" in params["file"], params
    assert (tmp_path / "lib").is_dir() and (tmp_path / "run").is_dir(), "state/control directories not made"
    assert ("chown", ["dotward:dotward", str(tmp_path / "lib")]) in log, log
    assert ("signal", ["dotward"]) in log, "reload_service does not signal dotward (procd's default is HUP)"
    assert ("reload_trigger", ["dotward"]) in log
    for iface in uci["trigger"]:
        assert ("interface_trigger", ["interface.*.up", iface, "/etc/init.d/dotward", "reload"]) in log, log

    p = run_dotward(dotward_bin, ["--check-config", "-c", str(conf)], tmp_path)
    assert p.returncode == 0, "generated config rejected:\n%s\n%s" % (conf.read_text(), p.stderr)
    dump = p.stdout
    for line in ("listen = 127.0.0.1:5353", "listen = [::1]:5353", "log-syslog = yes", "max-entries = 512",
                 "resolv-conf = /tmp/resolv.conf.d/resolv.conf.auto", "upstream = 9.9.9.9:53",
                 "upstream = 149.112.112.112:53 tls=strict name=dns.quad9.net",
                 "upstream = lan.example=192.168.1.10:53 tls=off", "probe-on-start = yes"):
        assert re.search(r"^%s$" % re.escape(line), dump, re.M), "%r not in effective config:\n%s" % (line, dump)


def test_openwrt_init_minimal_uci(dotward_bin, tmp_path):
    """Only 'enabled': every other option falls back to dotward's defaults."""
    log = run_init(tmp_path, {"enabled": "1"}, ["start_service"])
    conf = tmp_path / "var-etc" / "dotward.conf"
    assert conf.exists(), "no config written when the optional options are unset"
    cmd = [a for w, args in log if w == "set" and args[0] == "command" for a in args[1:]]
    assert cmd == ["/usr/sbin/dotward", "-c", str(conf)], cmd
    p = run_dotward(dotward_bin, ["--check-config", "-c", str(conf)], tmp_path)
    assert p.returncode == 0, "generated config rejected:\n%s\n%s" % (conf.read_text(), p.stderr)


def test_openwrt_init_conffile_and_disabled(tmp_path):
    own = write(tmp_path / "mine.conf", "[server]\n")
    log = run_init(tmp_path, {"enabled": "1", "conffile": own, "user": ""}, ["start_service"])
    cmd = [a for w, args in log if w == "set" and args[0] == "command" for a in args[1:]]
    assert cmd == ["/usr/sbin/dotward", "-c", own], cmd
    assert not (tmp_path / "var-etc" / "dotward.conf").exists(), "conffile set, yet a config was generated"
    assert not [e for e in log if e[0] == "set" and e[1][0] == "user"], "user '' must run as root"
    log = run_init(tmp_path, {"enabled": "0"}, ["start_service"])
    assert not [e for e in log if e[0] == "open_instance"], "a disabled service started an instance"


# --------------------------------------------------------------------------
# Docker

def dockerfile_instructions(text):
    """[(INSTRUCTION, argument text)], continuations joined, comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def docker_stages():
    stages = []
    for ins, arg in dockerfile_instructions(read(DOCKERFILE)):
        if ins == "FROM":
            stages.append({"from": arg, "ins": []})
        stages[-1]["ins"].append((ins, arg))
    return stages


def apt_packages(stage):
    pkgs = []
    for ins, arg in stage["ins"]:
        if ins != "RUN":
            continue
        for cmd in re.split(r"&&|;", arg):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def deps_sh_array(name):
    text = read(os.path.join(REPO, "scripts", "deps.sh"))
    return re.search(r"^%s=\(([^)]*)\)" % name, text, re.M | re.S).group(1).split()


def test_dockerfile_stages_and_packages():
    stages = docker_stages()
    assert len(stages) == 2, "expected a build and a runtime stage"
    assert stages[0]["from"] == "debian:bookworm-slim AS build" and stages[1]["from"] == "debian:bookworm-slim"
    build, runtime = apt_packages(stages[0]), apt_packages(stages[1])
    assert build and runtime
    # the build stage installs what scripts/run installs
    assert set(deps_sh_array("BUILD_PACKAGES")) <= set(build), set(deps_sh_array("BUILD_PACKAGES")) - set(build)
    assert not [p for p in runtime if p.endswith("-dev")], runtime
    apt_cache = tool("apt-cache")
    # one call for all (each call reads the whole cache); names missing from
    # the archive are left out of its output (and need not fail the call)
    p = run([apt_cache, "show", "--no-all-versions"] + build + runtime)
    found = set(re.findall(r"^Package: (\S+)$", p.stdout, re.M))
    missing = sorted(set(build + runtime) - found)
    assert not missing, "not Debian 12 packages: %s" % missing
    # the parse finds a missing name, so the check above means something
    p = run([apt_cache, "show", "--no-all-versions", runtime[0], "libwolfssl-no-such-name"])
    assert set(re.findall(r"^Package: (\S+)$", p.stdout, re.M)) == {runtime[0]}


def test_dockerfile_runtime_libraries_cover_the_binary(dotward_bin):
    """Every shared library dotward links to comes from a package the runtime
    stage installs (or libc6, which the base image has)."""
    runtime = set(apt_packages(docker_stages()[1]))
    ldd = run(["ldd", dotward_bin])
    assert ldd.returncode == 0, ldd.stderr
    libs = re.findall(r"=> (/\S+)", ldd.stdout)
    assert libs
    need = set()
    for lib in libs:
        p = run(["dpkg", "-S", os.path.realpath(lib)])
        if p.returncode != 0:
            p = run(["dpkg", "-S", lib])
        assert p.returncode == 0, "no package owns %s" % lib
        need.add(p.stdout.split(":")[0])
    if "asan" in " ".join(libs) or "ubsan" in " ".join(libs):
        pytest.skip("sanitizer build: its runtime libraries are not the release image's")
    assert need - {"libc6"} <= runtime, "runtime stage lacks %s" % (need - {"libc6"} - runtime)


def test_dockerfile_build_matches_scripts_run():
    stages = docker_stages()
    run_script = read(os.path.join(REPO, "scripts", "run"))
    setup = re.search(r"(meson setup build [^>|&;\n]*?)\s*(?:>|$)", run_script, re.M).group(1).strip()
    runs = " && ".join(a for i, a in stages[0]["ins"] if i == "RUN")
    assert setup in runs, "Dockerfile does not run %r (as scripts/run does)" % setup
    assert re.search(r"ninja -C build(\s|$)", runs)
    copies = [a.split() for i, a in stages[0]["ins"] if i == "COPY"]
    copied = {w for c in copies for w in c[:-1]}
    for d in meson_subdirs() + ["meson.build", "meson_options.txt"]:
        assert d in copied, "build stage does not COPY %s (meson needs it)" % d
    # the runtime stage copies what that build produces, under the targets' names
    from_build = [a.split()[1:] for i, a in stages[1]["ins"] if i == "COPY" and a.startswith("--from=build")]
    srcs = {s for s, _ in from_build}
    assert "/src/build/dotward" in srcs
    if os.path.exists(os.path.join(REPO, "tools", "meson.build")):
        assert "executable('dotward-control'" in read(os.path.join(REPO, "tools", "meson.build"))
        assert "/src/build/tools/dotward-control" in srcs
    local = [a.split()[0] for i, a in stages[1]["ins"] if i == "COPY" and not a.startswith("--from")]
    for src in local:
        assert os.path.exists(os.path.join(REPO, src)), src


def test_dockerfile_runtime_settings():
    ins = docker_stages()[1]["ins"]
    last = {}
    for i, a in ins:
        last[i] = a
    user = last["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0, "USER must be numeric and not root: %s" % last["USER"]
    assert last["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(last["ENTRYPOINT"]) == ["/usr/sbin/dotward"]
    cmd = json.loads(last["CMD"])
    metrics = cmd[cmd.index("--metrics-listen") + 1]
    mport = metrics.rsplit(":", 1)[1]
    conf = read(DOCKER_CONF)
    dns_port = re.search(r"^listen = [\d.]+:(\d+)$", conf, re.M).group(1)
    assert int(dns_port) >= 1024, "a non-root process cannot bind %s" % dns_port
    exposed = set(last["EXPOSE"].split())
    assert {"%s/udp" % dns_port, "%s/tcp" % dns_port, "%s/tcp" % mport} <= exposed, exposed
    assert cmd[cmd.index("-c") + 1] == "/etc/dotward/dotward.conf"
    assert ("COPY", "deploy/docker/dotward.conf /etc/dotward/dotward.conf") in ins
    assert "/dev/tcp/127.0.0.1/%s" % mport in last["HEALTHCHECK"], "health check on another port than metrics"


def test_docker_config_is_valid(dotward_bin, tmp_path):
    p = run_dotward(dotward_bin, ["--check-config", "-c", DOCKER_CONF, "--resolv-conf", safe_resolv(tmp_path)],
                    tmp_path)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^log-syslog = no$", p.stdout, re.M), "container logs must go to stderr"


def test_docker_command_is_accepted(dotward_bin, tmp_path):
    cmd = json.loads(dict(docker_stages()[1]["ins"])["CMD"])
    for flag in [a for a in cmd if a.startswith("--")]:
        if not dotward_knows(dotward_bin, flag, tmp_path):
            pytest.skip("this dotward has no %s yet (the image's CMD uses it)" % flag)
    cmd = [DOCKER_CONF if a == "/etc/dotward/dotward.conf" else a for a in cmd]
    p = run_dotward(dotward_bin, cmd + ["--check-config", "--resolv-conf", safe_resolv(tmp_path)], tmp_path)
    assert p.returncode == 0, p.stderr


def healthcheck_cmd(addr, port):
    hc = dict(docker_stages()[1]["ins"])["HEALTHCHECK"]
    shell = hc.split(" CMD ", 1)[1]
    assert not shell.startswith("["), "expected the shell form"
    return shell.replace("/dev/tcp/127.0.0.1/9153", "/dev/tcp/%s/%d" % (addr, port))


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths = []

    def do_GET(self):
        self.paths.append(self.path)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("status,ok", [(200, True), (503, False)])
def test_docker_healthcheck_command(status, ok):
    """The HEALTHCHECK line, run as Docker runs it (/bin/sh -c), against an
    HTTP server answering /health with `status`."""
    tool("bash")
    addr = ADDRS.take()
    handler = type("H", (_Health,), {"status": status, "paths": []})
    srv = http.server.HTTPServer((addr, free_port(addr)), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        p = run(["/bin/sh", "-c", healthcheck_cmd(addr, srv.server_address[1])], timeout=10)
    finally:
        srv.shutdown()
        srv.server_close()
    assert handler.paths == ["/health"], handler.paths
    assert (p.returncode == 0) == ok, "health check exit %d for HTTP %d: %s" % (p.returncode, status, p.stderr)


def test_docker_healthcheck_fails_without_listener():
    tool("bash")
    addr = ADDRS.take()
    p = run(["/bin/sh", "-c", healthcheck_cmd(addr, free_port(addr))], timeout=10)
    assert p.returncode != 0


def test_docker_healthcheck_against_dotward(dotward, dotward_bin, nsd, tmp_path):
    if not dotward_knows(dotward_bin, "--metrics-listen", tmp_path):
        pytest.skip("this dotward has no --metrics-listen yet (the health check needs it)")
    maddr = ADDRS.take()
    mport = free_port(maddr)
    dotward(upstreams=["%s:%d tls=off" % (nsd.addr, nsd.port)],
            args=["--metrics-listen", "%s:%d" % (maddr, mport)])
    p = run(["/bin/sh", "-c", healthcheck_cmd(maddr, mport)], timeout=10)
    assert p.returncode == 0, "health check failed against a serving dotward: %s" % p.stderr


# --------------------------------------------------------------------------
# man pages

@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_cleanly(page, tmp_path):
    groff = tool("groff")
    path = os.path.join(DOCS, page)
    p = run([groff, "-ww", "-man", "-Tutf8", path])
    assert p.returncode == 0 and p.stderr == "", "groff warnings for %s:\n%s" % (page, p.stderr)
    assert len(p.stdout) > 2000
    man = tool("man")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    p = run([man, "--warnings", "-l", "-P", "cat", path], env=env)
    assert p.returncode == 0 and p.stderr == "", "man -l warnings for %s:\n%s" % (page, p.stderr)
    name = page.rsplit(".", 1)[0]
    assert re.search(r"^NAME\n\s+%s " % re.escape(name), p.stdout, re.M), p.stdout[:300]


def roff_sections(text):
    """{".SH title": body} of a roff page."""
    parts = re.split(r'^\.SH (.*)$', text, flags=re.M)
    return {parts[i].strip('"'): parts[i + 1] for i in range(1, len(parts), 2)}


def roff_items(body):
    """{first word of each .TP tag: paragraph}, backslash-hyphens undone."""
    out = {}
    for chunk in re.split(r"^\.TP\n", body, flags=re.M)[1:]:
        tag, _, para = chunk.partition("\n")
        m = re.match(r"\.B[IR]?\s+\"?([^\s\"]+)", tag)
        if m:
            out[m.group(1).replace("\\-", "-")] = para.replace("\\-", "-")
    return out


def example_defaults():
    """{(section, key): [default values]} from config/dotward.conf.example
    (a key such as listen or max-entries is in more than one section)."""
    out, sec = {}, None
    for line in read(os.path.join(REPO, "config", "dotward.conf.example")).splitlines():
        m = re.match(r"^\[([a-z]+)\]$", line)
        if m:
            sec = m.group(1)
            continue
        m = re.match(r"^([a-z][a-z0-9-]*) =\s?(.*)$", line)
        if m:
            out.setdefault((sec, m.group(1)), []).append(m.group(2).strip())
    return out


def test_conf_page_documents_every_option():
    opts = re.findall(r'CONFIG_\w+\(\s*(SERVER|FORWARD|PROBE|TRANSPARENT),\s*"([a-z0-9-]+)"',
                      read(os.path.join(REPO, "config", "options.def")))
    assert len(opts) > 25
    sections = roff_sections(read(os.path.join(DOCS, "dotward.conf.5")))
    defaults = example_defaults()
    for sec, key in opts:
        body = sections.get("[%s] SECTION" % sec.lower())
        assert body is not None, "no [%s] section in dotward.conf.5" % sec.lower()
        items = roff_items(body)
        assert key in items, "dotward.conf.5 does not document %s in [%s]" % (key, sec.lower())
        para = items[key]
        for d in defaults.get((sec.lower(), key), []):
            if d == "":
                assert re.search(r"Default: (empty|none)", para), "%s: default (empty) not stated" % key
            else:
                assert re.search(r"Default:.*?%s" % re.escape(d), para, re.S), "%s: default %s not stated" % (key, d)
    # and the upstream options, in the indented list under upstream
    fwd = sections["[forward] SECTION"]
    up = fwd[fwd.index(".BR upstream "):]
    up = up[:up.index("\n.RE\n")]
    up = re.sub(r"\\f[IPBR]|\.B[IR]? |\"", "", up.replace("\\-", "-"))
    for o in ("tls=opportunistic", "tls=strict", "tls=off", "name=", "ca=", "kind=recursive",
              "kind=authoritative"):
        assert o in up, "upstream option %s not documented" % o


def test_conf_page_examples_are_valid(dotward_bin, tmp_path):
    text = read(os.path.join(DOCS, "dotward.conf.5"))
    blocks = [b for b in re.findall(r"^\.EX\n(.*?)^\.EE", text, re.M | re.S) if b.lstrip().startswith("[")]
    assert len(blocks) >= 2
    known = run_dotward(dotward_bin, ["--check-config", "--resolv-conf", safe_resolv(tmp_path)], tmp_path).stdout
    for n, block in enumerate(blocks):
        conf = block.replace("\\-", "-").replace("\\(aq", "'")
        keys = set(re.findall(r"^([a-z-]+) =", conf, re.M))
        lacking = [k for k in keys if not re.search(r"^%s =" % k, known, re.M)]
        if lacking:
            pytest.skip("this dotward does not know %s yet" % lacking)
        path = write(tmp_path / ("example%d.conf" % n), conf)
        p = run_dotward(dotward_bin, ["--check-config", "-c", path, "--resolv-conf", safe_resolv(tmp_path)],
                        tmp_path)
        assert p.returncode == 0, "example %d of dotward.conf.5 rejected:\n%s%s" % (n, conf, p.stderr)


def test_daemon_page_documents_every_flag_signal_and_status():
    text = read(os.path.join(DOCS, "dotward.8"))
    plain = text.replace("\\-", "-")
    for name in dotward_long_options():
        assert re.search(r"^\.B[IR]? .*--%s\b" % re.escape(name), plain, re.M), "dotward.8 does not document --%s" % name
    shorts = re.findall(r'getopt_long\(argc, argv, "([^"]+)"', read(os.path.join(REPO, "daemon", "main.c")))[0]
    for c in shorts.replace(":", ""):
        assert re.search(r'^\.BR -%s ", " --' % c, plain, re.M), "dotward.8 does not document -%s" % c
    sigs = roff_sections(text)["SIGNALS"]
    for sig in ("SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"):
        assert sig in sigs
    status = roff_items(roff_sections(text)["EXIT STATUS"])
    assert {"0", "1", "2"} <= set(status)


def test_control_page_documents_every_command_and_status():
    text = read(os.path.join(DOCS, "dotward-control.8"))
    proto = read(os.path.join(REPO, "daemon", "control_proto.h"))
    cmds = re.findall(r'X\(\w+,\s*"([a-z-]+)",\s*"([^"]*)"', proto)
    assert len(cmds) >= 8
    items = roff_items(roff_sections(text)["COMMANDS"])
    for name, usage in cmds:
        assert name in items, "dotward-control.8 does not document %s" % name
        for word in re.findall(r"--[a-z-]+|\b[A-Z]+\b", usage):
            assert word.lower() in (name + " " + items[name] + text).replace("\\-", "-").lower(), (name, word)
    client = os.path.join(REPO, "tools", "dotward_control.c")
    codes = re.findall(r"EXIT_\w+ = (\d)", read(client)) if os.path.exists(client) else ["0", "1", "2", "3"]
    status = roff_items(roff_sections(text)["EXIT STATUS"])
    assert set(codes) == set(status) == {"0", "1", "2", "3"}, (codes, status)
    assert re.search(r'CONTROL_SOCKET_ENV "(\w+)"', proto).group(1) in text
    assert re.search(r'CONTROL_DEFAULT_SOCKET "([^"]+)"', proto).group(1) in text


# --------------------------------------------------------------------------
# recipes (docs/DEPLOY.md)

def recipe(kind):
    """The fenced block of docs/DEPLOY.md whose info string is `kind`."""
    blocks = re.findall(r"^```%s\n(.*?)^```" % re.escape(kind), read(os.path.join(DOCS, "DEPLOY.md")), re.M | re.S)
    assert blocks, "no ```%s block in docs/DEPLOY.md" % kind
    return blocks[0]


def test_recipe_lines_are_the_documented_ones():
    assert recipe("named.conf").strip() == "options { forwarders { 127.0.0.1 port 5353; }; forward only; };"
    ub = recipe("unbound.conf")
    for line in ('forward-zone:', 'name: "."', 'forward-addr: 127.0.0.1@5353', 'do-not-query-localhost: no'):
        assert line in [ln.strip() for ln in ub.splitlines()], line
    assert recipe("dnsmasq.conf").split() == ["no-resolv", "server=127.0.0.1#5353"]


def test_recipe_bind_checkconf(tmp_path):
    checkconf = tool("named-checkconf")
    good = write(tmp_path / "named.conf", recipe("named.conf"))
    p = run([checkconf, good])
    assert p.returncode == 0, p.stdout + p.stderr
    bad = write(tmp_path / "named-bad.conf", recipe("named.conf").replace("; forward only", " forward only"))
    assert run([checkconf, bad]).returncode != 0


def test_recipe_unbound_checkconf(tmp_path):
    checkconf = tool("unbound-checkconf")
    good = write(tmp_path / "unbound.conf", recipe("unbound.conf"))
    p = run([checkconf, good])
    assert p.returncode == 0, p.stdout + p.stderr
    bad = write(tmp_path / "unbound-bad.conf", recipe("unbound.conf").replace("forward-addr:", "forward-addr"))
    assert run([checkconf, bad]).returncode != 0


def test_recipe_dnsmasq_test(tmp_path):
    dnsmasq = tool("dnsmasq")
    good = write(tmp_path / "dnsmasq.conf", recipe("dnsmasq.conf"))
    p = run([dnsmasq, "--test", "-C", good])
    assert p.returncode == 0, p.stdout + p.stderr
    bad = write(tmp_path / "dnsmasq-bad.conf", recipe("dnsmasq.conf").replace("#5353", "#53x53"))
    assert run([dnsmasq, "--test", "-C", bad]).returncode != 0


class Unbound(harness.Server):
    name = "unbound"

    def __init__(self, workdir, addr, port, snippet):
        super().__init__(workdir, addr, port)
        self.snippet = snippet

    def start(self):
        conf = write(os.path.join(self.dir, "unbound.conf"), """server:
    interface: {addr}
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    # test. is one of unbound's default local zones (RFC 6761); the zone NSD serves
    local-zone: "test." nodefault
{snippet}""".format(addr=self.addr, port=self.port, d=self.dir, snippet=self.snippet))
        self._spawn([tool("unbound"), "-d", "-c", conf])
        self.wait_ready()
        return self


class Dnsmasq(harness.Server):
    name = "dnsmasq"

    def __init__(self, workdir, addr, port, snippet):
        super().__init__(workdir, addr, port)
        self.snippet = snippet

    def start(self):
        conf = write(os.path.join(self.dir, "dnsmasq.conf"), self.snippet)
        # -C: only this file; the snippet's no-resolv keeps /etc/resolv.conf out
        self._spawn([tool("dnsmasq"), "--no-daemon", "-C", conf, "--port=%d" % self.port,
                     "--listen-address=%s" % self.addr, "--bind-interfaces", "--no-hosts",
                     "--cache-size=0", "--pid-file=%s/dnsmasq.pid" % self.dir, "--user=root"])
        self.wait_ready()
        return self


class Named(harness.Server):
    name = "named"

    def __init__(self, workdir, addr, port, snippet):
        super().__init__(workdir, addr, port)
        self.snippet = snippet

    def start(self):
        inner = re.match(r"\s*options\s*\{(.*)\};\s*$", self.snippet, re.S).group(1)
        conf = write(os.path.join(self.dir, "named.conf"), """options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    listen-on port {port} {{ {addr}; }};
    listen-on-v6 {{ none; }};
    allow-query {{ 127.0.0.0/8; }};
    recursion yes;
    dnssec-validation no;
    {inner}
}};
controls {{ }};
""".format(d=self.dir, port=self.port, addr=self.addr, inner=inner))
        self._spawn([tool("named"), "-g", "-n", "1", "-4", "-c", conf])
        self.wait_ready()
        return self


@pytest.mark.parametrize("resolver", ["unbound", "dnsmasq", "named"])
def test_recipe_resolver_forwards_through_dotward(resolver, dotward, nsd, tmp_path):
    """The resolver, configured with the DEPLOY.md snippet (only the address
    and port of dotward changed), answers from NSD through dotward, and
    dotward's counters show the queries passed through it."""
    dw = dotward(upstreams=["%s:%d tls=off" % (nsd.addr, nsd.port)])
    kind, cls, old = {
        "unbound": ("unbound.conf", Unbound, "127.0.0.1@5353"),
        "dnsmasq": ("dnsmasq.conf", Dnsmasq, "127.0.0.1#5353"),
        "named": ("named.conf", Named, "127.0.0.1 port 5353"),
    }[resolver]
    snippet = recipe(kind)
    assert old in snippet
    sep = old[len("127.0.0.1"):-len("5353")]
    snippet = snippet.replace(old, "%s%s%d" % (dw.addr, sep, dw.port))
    # named listens only on addresses of an interface: 127.0.0.1, not all of 127/8
    addr = "127.0.0.1" if resolver == "named" else ADDRS.take()
    srv = cls(tmp_path / resolver, addr, free_port(addr), snippet)
    try:
        srv.start()  # ready = www.test A answered through the chain
        before = dw.stats()
        r = harness.ask(addr, srv.port, "txt.test.", "TXT", transport="tcp", timeout=5)
        assert harness.TXT_TEXT in harness.rrset_values(r, "TXT"), r.to_text()
        after = dw.stats()
    finally:
        srv.stop()
    q = lambda s: s.get("queries_udp", 0) + s.get("queries_tcp", 0)
    assert q(before) >= 1, "%s answered without asking dotward: %s" % (resolver, before)
    assert q(after) > q(before), "txt.test did not go through dotward"
