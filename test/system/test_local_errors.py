"""A shortage of our own is never held against a server.

dotward runs out of descriptors (its limit lowered to what it has open,
with prlimit) while a TCP client that is already connected asks a query:
the upstream TCP connection cannot be opened (EMFILE). That is counted as
a local error; the server gets no failure and no backoff, and once
descriptors are back the next query goes to it at once.
"""
import os
import resource
import socket

import dns.message

import harness
from fakeupstream import fake_a
from harness import rrset_values
from test_arch_regressions import upstream_line
from test_control import controlled, ctl_bin, sockdir  # noqa: F401 (fixtures)


def test_emfile_is_not_the_servers_fault(controlled, fake):  # noqa: F811
    f = fake()
    conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s tls=off\ntimeout = 1s\n"
            "attempt-timeout = 300ms\n" % f.server)
    d, ctl = controlled(config=conf)
    client = socket.create_connection((d.addr, d.port), timeout=3)
    try:
        old = resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE)
        in_use = len(os.listdir("/proc/%d/fd" % d.proc.pid))
        resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (in_use, old[1]))
        try:
            q = dns.message.make_query("www.local.test.", "A")
            client.sendall(harness.tcp_frame(q.to_wire()))
            r = dns.message.from_wire(harness.tcp_recv_msg(client))
            assert harness.rcode_text(r) == "SERVFAIL", r
            assert f.count() == 0, "a query reached the server while no descriptor was free"
        finally:
            resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, old)
    finally:
        client.close()
    st = ctl.stats()
    assert st["local_errors"] >= 1, st
    u = upstream_line(ctl, f.server)
    assert u["fails"] == "0" and "backoff_s" not in u, "the server was blamed for our EMFILE: %s" % u
    r = harness.ask(d.addr, d.port, "www.local.test.", "A", transport="tcp", timeout=2)
    assert rrset_values(r, "A") == [fake_a(f.tag, "www.local.test.")], r
    assert f.count() == 1
