#!/usr/bin/env python3
"""Helpers for scripts/bench-targets, run inside its namespaces.

  many_ips.py serve PREFIX          answer every UDP query to any address of the
                                    IPv6 PREFIX::/64 (AnyIP route) on port 53, from
                                    the address asked (IPV6_PKTINFO): header and
                                    question back, NOERROR
  many_ips.py ask PREFIX N COUNT    send COUNT queries over UDP, one after another
                                    to PREFIX::1 .. PREFIX::N (cycling), at most 64
                                    outstanding; print answered and lost
  many_ips.py ask-at ADDR PORT COUNT  the same, all to ADDR:PORT (dotward as a forwarder)
"""
import socket
import struct
import sys
import time

IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50


def serve(prefix):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_TRANSPARENT: answer from any address of the prefix
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("::", 53))
    while True:
        data, anc, _, peer = s.recvmsg(4096, socket.CMSG_SPACE(20))
        if len(data) < 12:
            continue
        dst = None
        for level, typ, cdata in anc:
            if level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO:
                dst = cdata[:16]
        qd_end = 12
        while qd_end < len(data) and data[qd_end] != 0:
            qd_end += 1 + data[qd_end]
        qd_end += 5
        flags = struct.unpack("!H", data[2:4])[0] | 0x8400
        reply = data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + data[12:qd_end]
        anc_out = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, dst + struct.pack("I", 0))] if dst else []
        s.sendmsg([reply], anc_out, 0, peer)


def ask(prefix, n, count, fixed=None):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setblocking(False)
    sent = answered = 0
    outstanding = {}
    deadline = time.monotonic() + 600
    qid = 0
    while (sent < count or outstanding) and time.monotonic() < deadline:
        while sent < count and len(outstanding) < 64:
            qid = (qid + 1) & 0xffff
            i = sent % n + 1
            dst = fixed or ("%s::%x:%x" % (prefix, i >> 16, i & 0xffff), 53)
            q = struct.pack("!6H", qid, 0, 1, 0, 0, 0) + b"\x01q\x04test\x00" + struct.pack("!HH", 1, 1)
            s.sendto(q, dst)
            outstanding[qid] = time.monotonic()
            sent += 1
        try:
            data = s.recv(4096)
            rid = struct.unpack("!H", data[:2])[0]
            if outstanding.pop(rid, None) is not None:
                answered += 1
        except BlockingIOError:
            now = time.monotonic()
            for k in [k for k, t in outstanding.items() if now - t > 2.0]:
                del outstanding[k]
            time.sleep(0.0002)
    print(answered, sent - answered)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "ask-at":
        ask(None, 1, int(sys.argv[4]), (sys.argv[2], int(sys.argv[3])))
    else:
        ask(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
