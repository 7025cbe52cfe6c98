"""Scripted upstream DNS server for faults real servers will not produce.

One asyncio loop in a background thread serves UDP and TCP on the same
address and port. Tests change `mode` and `delay` at any time and read
`received` to learn which transport carried which query.

Answers are computed from the question, so a test knows what to expect:
  A     <name>  -> fake_a(tag, name): 10.<tag>.x.y, x.y derived from the name
  AAAA  <name>  -> 2001:db8:<tag>::1
  TXT   big.*   -> BIG_COUNT strings of 100 bytes (about 2.3 KB)
  TXT   other   -> "fake <tag>"
  first label `nx` -> NXDOMAIN
Modes (what happens to each query):
  normal          answer (UDP answers larger than the query's size get TC=1, like a real server)
  silent          never answer (the query is still counted)
  tc              UDP: TC=1 and no records; TCP: full answer
  garbage         UDP: the query ID, QR set, then random bytes; TCP: nothing
  garbage_then_real  the garbage first, the real answer `spoof_lead` s later
  spoof_id        an answer with a wrong ID (A 6.6.6.6), then the real one
  spoof_port      an answer from a second socket (another source port), then the real one
  spoof_question  an answer with ID right but question evil.<name>, then the real one
  reverse         hold answers until `hold_count` arrived (or `hold_timeout`), then send
                  them newest first (over all connections and both transports)
`delay` (seconds) postpones every answer.
`keyring` ({name: dns.tsig.Key}, default None): signed queries are verified with it (a
bad signature makes the query unparsable) and the answers signed back.

Run standalone: /usr/bin/python3 fakeupstream.py ADDR PORT [MODE [DELAY_MS]]
"""
import asyncio
import os
import socket
import struct
import sys
import threading
import time
import zlib

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

BIG_COUNT = 20
SPOOF_A = "6.6.6.6"


def fake_a(tag, name):
    """The A record fake upstream `tag` gives for `name` (case-insensitive)."""
    h = zlib.crc32(str(name).lower().rstrip(".").encode())
    return "10.%d.%d.%d" % (tag, (h >> 8) & 255, h & 255)


def fake_big_strings():
    return ["fbig%02d-" % i + "y" * 93 for i in range(BIG_COUNT)]


class Received:
    __slots__ = ("transport", "qname", "qtype", "qid", "peer", "time", "wire")

    def __init__(self, transport, qname, qtype, qid, peer, wire=b""):
        self.transport, self.qname, self.qtype, self.qid = transport, qname, qtype, qid
        self.peer = peer
        self.wire = wire  # the message as it arrived
        self.time = time.monotonic()

    def __repr__(self):
        return "%s:%s/%s#%d" % (self.transport, self.qname, self.qtype, self.qid)


class FakeUpstream:
    def __init__(self, addr, tag, port=0, mode="normal", delay=0.0):
        self.addr, self.tag, self.port = addr, tag, port
        self.mode = mode
        self.delay = delay
        self.spoof_lead = 0.1
        self.hold_count = 0
        self.hold_timeout = 1.0
        self.keyring = None       # TSIG keys ({name: dns.tsig.Key}): verify signed queries, sign answers
        self.received = []        # Received, in arrival order
        self.sent_order = []      # qnames in the order answers were sent (reverse mode)
        self.unparsable = 0
        self.tcp_connections = 0
        self._held = []
        self._hold_timer = None
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._udp = self._spoof_udp = self._tcp = None
        self._writers = set()

    # ---- control, from the test thread

    def start(self):
        ready = threading.Event()
        err = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._open())
            except Exception as e:  # reported to start()
                err.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-%s" % self.tag, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        if err:
            raise err[0]
        return self

    def stop(self):
        if self._loop is None or self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            fut.result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._thread = None

    def reset(self):
        with self._lock:
            self.received.clear()
            self.sent_order.clear()

    def queries(self, transport=None):
        with self._lock:
            return [r for r in self.received if transport is None or r.transport == transport]

    def count(self, transport=None):
        return len(self.queries(transport))

    def names(self, transport=None):
        return [r.qname.lower() for r in self.queries(transport)]

    @property
    def server(self):
        return "%s:%d" % (self.addr, self.port)

    # ---- loop side

    async def _open(self):
        loop = asyncio.get_running_loop()
        for _ in range(50):
            port = self.port or _random_port()
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(self.addr, port))
            except OSError:
                if self.port:
                    raise
                continue
            try:
                self._tcp = await asyncio.start_server(self._tcp_client, self.addr, port,
                                                       reuse_address=True, backlog=256)
            except OSError:
                self._udp.close()
                if self.port:
                    raise
                continue
            self.port = port
            _big_rcvbuf(self._udp.get_extra_info("socket"))
            break
        else:
            raise RuntimeError("fake upstream: no port on %s" % self.addr)
        self._spoof_udp, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(self.addr, 0))

    async def _close(self):
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._tcp.close()
        for w in list(self._writers):
            w.close()
        self._udp.close()
        self._spoof_udp.close()
        try:
            await asyncio.wait_for(self._tcp.wait_closed(), 2)
        except asyncio.TimeoutError:
            pass

    async def _tcp_client(self, reader, writer):
        self.tcp_connections += 1
        self._writers.add(writer)
        try:
            while True:
                hdr = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack("!H", hdr)[0])

                def send(wire, w=writer):
                    if not w.is_closing():
                        w.write(struct.pack("!H", len(wire)) + wire)
                self._handle(data, "tcp", send, writer.get_extra_info("peername"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, data, transport, send, peer):
        try:
            self._handle_one(data, transport, send, peer)
        except Exception as e:  # a fake-server bug must show, not kill the connection silently
            sys.stderr.write("fakeupstream %s: %r\n" % (self.server, e))

    def _handle_one(self, data, transport, send, peer):
        try:
            q = dns.message.from_wire(data, keyring=self.keyring)
            question = q.question[0]
        except Exception:
            if not self._answer_raw_opcode(data, transport, send, peer):
                self.unparsable += 1
            return
        with self._lock:
            self.received.append(Received(transport, question.name.to_text(),
                                          dns.rdatatype.to_text(question.rdtype), q.id, peer, bytes(data)))
        mode = self.mode
        if mode == "silent":
            return
        loop = self._loop
        real = self._answer(q, transport)
        if mode == "garbage" or mode == "garbage_then_real":
            if transport == "udp":
                junk = struct.pack("!HH", q.id, 0x8180) + os.urandom(40)
                loop.call_later(self.delay, send, junk)
            if mode == "garbage":
                return
            loop.call_later(self.delay + self.spoof_lead, send, real)
            return
        if mode in ("spoof_id", "spoof_port", "spoof_question") and transport == "udp":
            fake = dns.message.make_response(q)
            qname = question.name
            if mode == "spoof_id":
                fake.id = (q.id + 0x5a5a) & 0xffff
            if mode == "spoof_question":
                qname = dns.name.Name((b"evil",) + question.name.labels)
                fake.question = [dns.rrset.RRset(qname, question.rdclass, question.rdtype)]
            fake.answer.append(dns.rrset.from_text(qname, 300, "IN", "A", SPOOF_A))
            fwire = fake.to_wire(max_size=65535)
            if mode == "spoof_port":
                spoof_sock = self._spoof_udp
                loop.call_later(self.delay, lambda: spoof_sock.sendto(fwire, peer))
            else:
                loop.call_later(self.delay, send, fwire)
            loop.call_later(self.delay + self.spoof_lead, send, real)
            return
        if mode == "reverse":
            self._held.append((send, real, question.name.to_text()))
            if len(self._held) >= self.hold_count:
                self._release()
            elif self._hold_timer is None:
                self._hold_timer = loop.call_later(self.hold_timeout, self._release)
            return
        if self.delay > 0:
            loop.call_later(self.delay, send, real)
        else:
            send(real)

    def _answer_raw_opcode(self, data, transport, send, peer):
        """dnspython refuses opcodes it does not know and UPDATE with a plain
        question; a server of those answers its header and question back with
        QR set, NOERROR, which is all a pass-through test needs to see."""
        if len(data) < 12 or (data[2] >> 3) & 0xf == 0:
            return False
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        if qd != 1:
            return False
        i, labels = 12, []
        while i < len(data) and data[i] != 0 and data[i] < 64:
            labels.append(data[i + 1:i + 1 + data[i]])
            i += 1 + data[i]
        if i + 5 > len(data):
            return False
        end = i + 5
        qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
        name = (b".".join(labels) + b".").decode("ascii", "replace")
        with self._lock:
            self.received.append(Received(transport, name, dns.rdatatype.to_text(qtype),
                                          qid, peer, bytes(data)))
        if self.mode != "silent":
            send(struct.pack("!6H", qid, (flags | 0x8000) & 0xfff0, 1, 0, 0, 0) + data[12:end])
        return True

    def _release(self):
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        held, self._held = self._held, []
        for send, wire, qname in reversed(held):
            with self._lock:
                self.sent_order.append(qname.lower())
            send(wire)

    def _answer(self, q, transport):
        r = dns.message.make_response(q, our_payload=4096)
        question = q.question[0]
        qname, qtype = question.name, question.rdtype
        first = qname.labels[0].lower() if qname.labels else b""
        if first == b"nx":
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif qtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(qname, 300, "IN", "A", fake_a(self.tag, qname)))
        elif qtype == dns.rdatatype.AAAA:
            r.answer.append(dns.rrset.from_text(qname, 300, "IN", "AAAA",
                                                "2001:db8:%x::1" % self.tag))
        elif qtype == dns.rdatatype.TXT:
            if first == b"big":
                texts = ['"%s"' % s for s in fake_big_strings()]
            else:
                texts = ['"fake %d"' % self.tag]
            r.answer.append(dns.rrset.from_text_list(qname, 300, "IN", "TXT", texts))
        wire = r.to_wire(max_size=65535)  # the size limit is applied below, like a server would
        if transport == "udp":
            limit = max(512, q.payload) if q.edns >= 0 else 512
            if self.mode == "tc" or len(wire) > limit:
                r.answer = []
                r.flags |= dns.flags.TC
                wire = r.to_wire(max_size=65535)
        return wire


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner):
        self.owner = owner
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        t = self.transport
        self.owner._handle(data, "udp", lambda wire: t.sendto(wire, addr), addr)

    def error_received(self, exc):
        pass


def _big_rcvbuf(sock):
    """Bursts of thousands of queries must not be lost in the fake's socket."""
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
            return
        except OSError:
            pass


def _random_port():
    import random
    return random.randrange(20000, 32000)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) < 2:
        sys.exit(__doc__)
    f = FakeUpstream(a[0], 1, int(a[1]), a[2] if len(a) > 2 else "normal",
                     int(a[3]) / 1000 if len(a) > 3 else 0.0).start()
    print("fake upstream on %s (mode %s)" % (f.server, f.mode), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        f.stop()
