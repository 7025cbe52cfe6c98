#!/usr/bin/env python3
"""scripts/bench.d/zone_queries.py IP PORT ZONES PER_ZONE: PER_ZONE rounds of one A query
for hK.zN.test (N = 1..ZONES) to a proxy over UDP; each round is sent at once, then its
answers are awaited (<= 3 s). Prints the number of answers (any RCODE but SERVFAIL).
Used by rss-100 to give each of dotward's 100 upstreams traffic, so each gets its DoT
connection.
"""
import socket
import struct
import sys
import time

ip, port, zones, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
answered = 0
qid = 0
for k in range(per):
    want = set()
    for z in range(1, zones + 1):
        qid = (qid + 1) & 0xFFFF
        name = b"".join(bytes([len(x)]) + x for x in (f"h{k}".encode(), f"z{z}".encode(), b"test"))
        s.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + b"\0"
                 + struct.pack(">HH", 1, 1), (ip, port))
        want.add(qid)
    deadline = time.time() + 3
    while want and time.time() < deadline:
        try:
            r = s.recv(4096)
        except OSError:
            continue
        if len(r) >= 12:
            rid = struct.unpack(">H", r[:2])[0]
            if rid in want and (r[3] & 0xF) != 2:
                want.discard(rid)
                answered += 1
print(answered)
sys.exit(0 if answered else 1)
