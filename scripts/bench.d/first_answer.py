#!/usr/bin/env python3
"""scripts/bench.d/first_answer.py IP PORT TIMEOUT_S SYNCFILE [NAME [tls]]: time from launch
to first answer.

Started BEFORE the system under test, so interpreter start-up is not measured: it creates
SYNCFILE.ready, waits until the caller writes the launch time (epoch seconds) into SYNCFILE,
then sends a query (NAME, type A; default h1.bench.test) every millisecond on one unconnected
UDP socket (a late answer to an earlier attempt still counts) until a NOERROR answer with at
least one record arrives.
Prints the seconds from launch to that answer, or NA (exit 1) on timeout.
SYNCFILE "-" starts polling at once (used to wait for a backend to come up).
"tls": ask over DoT instead, one TLS connection per attempt, any certificate accepted
(only used to check that a DoT backend is up).
"""
import os
import socket
import ssl
import struct
import sys
import time

ip, port, tmo, sync = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
name = sys.argv[5] if len(sys.argv) > 5 else "h1.bench.test"
tls = len(sys.argv) > 6 and sys.argv[6] == "tls"
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) \
    + b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) \
    + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.001)
ctx = None
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE


def ask_tls():
    with socket.create_connection((ip, port), timeout=1) as raw, \
            ctx.wrap_socket(raw) as t:
        t.sendall(struct.pack(">H", len(q)) + q)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            chunk = t.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf[2:]


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
        if tls:
            r = ask_tls()
        else:
            s.sendto(q, (ip, port))
            r = s.recv(4096)
        if len(r) >= 12 and r[:2] == b"\x12\x34" and (r[3] & 0xF) == 0 \
                and struct.unpack(">H", r[6:8])[0] > 0:
            print(f"{time.time() - t0:.4f}")
            sys.exit(0)
    except OSError:
        if tls:
            time.sleep(0.01)
print("NA")
sys.exit(1)
