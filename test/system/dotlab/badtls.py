#!/usr/bin/python3
"""Scripted port-853 peers for the DoT lab (run inside a server namespace).

usage: badtls.py MODE IP PORT [CERT KEY [IDLE]]

  silent   accept TCP connections and never say a word (a TLS handshake
           that never ends: the probe must report tls-failed)
  garbage  complete the TLS handshake, then answer every framed query with
           a framed message that is not a DNS answer to it (bad-answer)
  good     a correct DoT server: answers every framed query from the zone
           `test.` (www A 192.0.2.80, anything else NXDOMAIN), and closes a
           connection idle for IDLE seconds without any TLS close_notify
           first (a server that hangs up on its own, with no keepalive hint)

Prints `ready` on stdout once listening. Connections held by `silent` are
bounded (the oldest is closed beyond 256), and every connection is closed
after 60 s at most, so nothing here grows without bound.
"""
import socket
import ssl
import struct
import sys
import threading
import time

MAX_HELD = 256
CONN_LIFETIME = 60.0


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def junk_for(query):
    # Wrong ID (query's ID + 1), QR set, no question: whatever the client
    # checks first (ID, question), it cannot be taken for the answer.
    qid = struct.unpack("!H", query[:2])[0] if len(query) >= 2 else 0
    return struct.pack("!HHHHHH", (qid + 1) & 0xFFFF, 0x8180, 0, 0, 0, 0) + b"garbage!" * 2


def answer_for(query):
    import dns.message
    import dns.rcode
    import dns.rrset
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    qname = q.question[0].name.to_text().lower()
    if qname.endswith("test.") and q.question[0].rdtype == 1 and qname.startswith("www."):
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.80"))
    elif not qname.endswith("test."):
        r.set_rcode(dns.rcode.REFUSED)
    elif q.question[0].rdtype != 6:
        r.set_rcode(dns.rcode.NXDOMAIN)
    r.flags |= 0x0400  # AA
    return r.to_wire()


def serve_tls(conn, ctx, mode, idle):
    conn.settimeout(5)
    t = None
    try:
        t = ctx.wrap_socket(conn, server_side=True)
        t.settimeout(idle if mode == "good" else CONN_LIFETIME)
        end = time.monotonic() + CONN_LIFETIME
        while time.monotonic() < end:
            hdr = recv_exact(t, 2)
            if hdr is None:
                break
            q = recv_exact(t, struct.unpack("!H", hdr)[0])
            if q is None:
                break
            a = junk_for(q) if mode == "garbage" else answer_for(q)
            t.sendall(struct.pack("!H", len(a)) + a)
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        # "good": hang up without close_notify, the way a server's idle
        # timer often does (Python's SSLSocket.close() sends none).
        for s in (t, conn):
            try:
                if s is not None:
                    s.close()
            except OSError:
                pass


def main():
    mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = None
    idle = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
    if mode in ("garbage", "good"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    lsock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((ip, port))
    lsock.listen(64)
    print("ready", flush=True)
    held = []
    while True:
        conn, _ = lsock.accept()
        if mode == "silent":
            held.append(conn)
            if len(held) > MAX_HELD:
                held.pop(0).close()
            continue
        threading.Thread(target=serve_tls, args=(conn, ctx, mode, idle), daemon=True).start()


if __name__ == "__main__":
    main()
