"""A listener on 0.0.0.0 answers from the address each query was sent to.

In a network namespace of its own (no link to the host), loopback carries
two more addresses, 192.0.2.1 and 192.0.2.2. dotward listens on
0.0.0.0:5353 there. A client bound to 192.0.2.1 asks 192.0.2.2 (and the
other way round, and 127.0.0.1): without IP_PKTINFO the kernel would pick
the reply's source by route (the client's own address), and the client's
connected socket would never see it. The queries come from outside
`allow`, so dotward answers REFUSED itself and no upstream is involved.
"""
import os
import shutil
import subprocess
import sys
import time

import pytest

import harness

CLIENT = r"""
import socket, struct, sys
src, dst = sys.argv[1], sys.argv[2]
q = struct.pack("!6H", 0x5151, 0x0100, 1, 0, 0, 0) + b"\x03www\x04test\x00" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(1.0)
s.sendto(q, (dst, 5353))
try:
    data, frm = s.recvfrom(4096)
    print(frm[0], struct.unpack("!H", data[:2])[0])
except socket.timeout:
    print("timeout")
"""


def sh(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=check)


@pytest.fixture
def ns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    name = "dwwild%d" % os.getpid()
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        for a in ("192.0.2.1/32", "192.0.2.2/32"):
            sh("ip", "-n", name, "addr", "add", a, "dev", "lo")
        yield name
    finally:
        sh("ip", "netns", "pids", name, check=False)
        sh("ip", "netns", "del", name, check=False)


def test_wildcard_listener_answers_from_the_address_asked(ns, dotward_bin, tmp_path):
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 127.0.0.1\n")
    err = open(str(tmp_path / "dotward.err"), "w")
    d = subprocess.Popen(["ip", "netns", "exec", ns, dotward_bin, "-l", "0.0.0.0:5353", "-u", "127.0.0.1:9",
                          "--resolv-conf", str(rc)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        results = {}
        deadline = time.monotonic() + 5
        for src, dst in (("192.0.2.1", "192.0.2.2"), ("192.0.2.2", "192.0.2.1"),
                         ("192.0.2.1", "127.0.0.1")):
            while True:
                out = sh("ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, src, dst).stdout.split()
                if out != ["timeout"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)   # dotward may still be starting
            results[(src, dst)] = out
        for (src, dst), out in results.items():
            assert out == [dst, str(0x5151)], \
                "asked %s from %s, answer %s\n%s" % (dst, src, out, open(str(tmp_path / "dotward.err")).read())
    finally:
        d.terminate()
        d.wait(5)
        err.close()
