#!/usr/bin/env python3
"""scripts/bench.d/first_answer.py IP PORT TIMEOUT_S SYNCFILE: time from launch to first answer.

Started BEFORE the system under test, so interpreter start-up is not measured: it creates
SYNCFILE.ready, waits until the caller writes the launch time (epoch seconds) into SYNCFILE,
then sends a query every millisecond on one unconnected UDP socket (a late answer to an earlier
attempt still counts) until a NOERROR answer with at least one record arrives.
Prints the seconds from launch to that answer, or NA (exit 1) on timeout.
SYNCFILE "-" starts polling at once (used to wait for the backend to come up).
"""
import os
import socket
import struct
import sys
import time

ip, port, tmo, sync = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x02h1\x05bench\x04test\x00" \
    + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.001)
if sync == "-":
    t0 = time.time()
else:
    open(sync + ".ready", "w").close()
    deadline = time.time() + 60
    while not os.path.exists(sync):
        if time.time() > deadline:
            print("NA")
            sys.exit(1)
        time.sleep(0.0002)
    with open(sync) as f:
        t0 = float(f.read())
while time.time() - t0 < tmo:
    try:
        s.sendto(q, (ip, port))
        r = s.recv(4096)
        if len(r) >= 12 and r[:2] == b"\x12\x34" and (r[3] & 0xF) == 0 \
                and struct.unpack(">H", r[6:8])[0] > 0:
            print(f"{time.time() - t0:.4f}")
            sys.exit(0)
    except OSError:
        pass
print("NA")
sys.exit(1)
