#!/usr/bin/python3
"""Writes the seed corpus for test/fuzz/fuzz_wire.c into test/fuzz/corpus/wire/.

Run with /usr/bin/python3 (needs dnspython). Valid messages come from
dnspython; malformed ones are built byte by byte, one defect each, so the
replay test walks every rejection path of lib/wire.c. Output is
deterministic: same script, same files.
"""
import os
import struct
import sys

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wire")

QR, RD, RA, TC = 0x8000, 0x0100, 0x0080, 0x0200


def hdr(id_=0x1234, flags=RD, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!6H", id_, flags, qd, an, ns, ar)


def name(s):
    out = b""
    for label in s.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def ptr(off):
    return struct.pack("!H", 0xC000 | off)


def question(n="www.example.org", qtype=1, qclass=1):
    return name(n) + struct.pack("!HH", qtype, qclass)


def rr(type_, class_, ttl, rdata):
    """RR after its owner name."""
    return struct.pack("!HHIH", type_, class_, ttl, len(rdata)) + rdata


def a_rr(last=1):
    return rr(1, 1, 300, bytes([192, 0, 2, last]))


def opt(udp=4096, ttl=0, rdata=b""):
    return b"\x00" + rr(41, udp, ttl, rdata)


QEND = 12 + len(name("www.example.org")) + 4  # 33


def query(qname, qtype, **kw):
    q = dns.message.make_query(qname, qtype, **kw)
    q.id = 0x1234
    return q


def response_to(q, answers=(), authority=(), additional=(), rcode=0, flags=0):
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    r.flags |= flags
    for sec, rrs in ((r.answer, answers), (r.authority, authority),
                     (r.additional, additional)):
        for text in rrs:
            owner, ttl, cls, typ, *rd = text.split()
            sec.append(dns.rrset.from_text(owner, int(ttl), cls, typ, " ".join(rd)))
    return r


def seeds():
    s = {}
    # ---- valid queries
    s["q_a"] = query("www.example.org", "A", use_edns=False).to_wire()
    s["q_aaaa"] = query("www.example.org", "AAAA", use_edns=False).to_wire()
    s["q_edns_do"] = query("www.example.org", "A", use_edns=0, payload=4096,
                           want_dnssec=True).to_wire()
    s["q_edns_small"] = query("example.org", "MX", use_edns=0, payload=100).to_wire()
    s["q_cookie"] = query("www.example.org", "A", use_edns=0, payload=1232, options=[
        dns.edns.GenericOption(10, bytes(range(1, 9)))]).to_wire()
    s["q_padding"] = query("example.com", "TXT", use_edns=0, payload=1232, options=[
        dns.edns.GenericOption(12, b"\x00" * 40)]).to_wire()
    s["q_root_ns"] = query(".", "NS", use_edns=False).to_wire()
    s["q_mixed_case_cd"] = hdr(flags=RD | 0x0010) + question("WwW.ExAmPlE.oRg", 28)
    long255 = b"".join(bytes([63]) + b"a" * 63 for _ in range(3)) + bytes([61]) + b"b" * 61 + b"\x00"
    assert len(long255) == 255
    s["q_name_255"] = hdr() + long255 + struct.pack("!HH", 1, 1)

    # ---- valid responses
    q = query("www.example.org", "A", use_edns=0, payload=1232)
    s["r_a_multi"] = response_to(q, answers=[
        "www.example.org. 300 IN A 192.0.2.1",
        "www.example.org. 300 IN A 192.0.2.2",
        "www.example.org. 300 IN A 192.0.2.3"]).to_wire()
    s["r_cname_ns_glue"] = response_to(q, answers=[
        "www.example.org. 300 IN CNAME web.example.org.",
        "web.example.org. 300 IN A 192.0.2.80"],
        authority=["example.org. 3600 IN NS ns1.example.org.",
                   "example.org. 3600 IN NS ns2.example.org."],
        additional=["ns1.example.org. 3600 IN A 192.0.2.53",
                    "ns2.example.org. 3600 IN AAAA 2001:db8::53"]).to_wire()
    s["r_big"] = response_to(q, answers=[
        "www.example.org. 300 IN A 192.0.2.%d" % i for i in range(1, 60)]).to_wire()
    s["r_nxdomain_soa"] = response_to(q, rcode=dns.rcode.NXDOMAIN, authority=[
        "example.org. 3600 IN SOA ns1.example.org. host.example.org. 1 7200 3600 1209600 300"
    ]).to_wire()
    q_plain = query("www.example.org", "A", use_edns=False)
    s["r_tc_noedns"] = response_to(q_plain, flags=TC).to_wire()
    s["r_txt_noedns"] = response_to(q_plain, answers=[
        'www.example.org. 60 IN TXT "' + "x" * 200 + '" "' + "y" * 200 + '"']).to_wire()

    # ---- malformed: header
    valid = s["q_a"]
    s["bad_short_0"] = b""
    s["bad_short_5"] = valid[:5]
    s["bad_short_11"] = valid[:11]
    s["bad_header_only"] = valid[:12]
    s["bad_qr_in_query"] = hdr(flags=QR | RD) + question()
    s["bad_opcode_notify"] = hdr(flags=(4 << 11)) + question("example.org", 6)
    s["bad_qdcount_0"] = hdr(qd=0) + question()
    s["bad_qdcount_2"] = hdr(qd=2) + question("a.example") + question("b.example")

    # ---- malformed: question
    s["bad_label_64"] = hdr() + b"\x40" + b"a" * 64 + b"\x00" + struct.pack("!HH", 1, 1)
    s["bad_label_past_end"] = hdr() + b"\x0aabc"
    s["bad_label_0x40"] = hdr() + b"\x41abcdefgh\x00" + struct.pack("!HH", 1, 1)
    s["bad_label_0x80"] = hdr() + b"\x81abcdefgh\x00" + struct.pack("!HH", 1, 1)
    s["bad_name_256"] = hdr() + long255[:-2] + b"bb\x00" + struct.pack("!HH", 1, 1)
    s["bad_question_compressed"] = hdr() + b"\x03www" + ptr(4) + struct.pack("!HH", 1, 1)
    s["bad_question_cut"] = valid[:-2]

    # ---- malformed: RRs (as responses; the QR-flipped query form is one bit away)
    rhdr = hdr(flags=QR | RD | RA, an=1)
    s["bad_rr_ptr_self"] = rhdr + question() + ptr(QEND) + a_rr()
    s["bad_rr_ptr_loop_labels"] = rhdr + question() + b"\x03abc" + ptr(QEND) + a_rr()
    rd1 = QEND + 2 + 10
    own2 = rd1 + 2
    s["bad_rr_ptr_cycle"] = (hdr(flags=QR | RD, an=2) + question() + ptr(12)
                             + rr(0xFF00, 1, 0, ptr(own2)) + ptr(rd1) + a_rr(2))
    s["bad_rr_ptr_forward"] = rhdr + question() + ptr(QEND + 12) + rr(1, 1, 0, b"\x00\x00\x00\x00")
    s["bad_rr_ptr_past_end"] = rhdr + question() + ptr(0x3FFF) + a_rr()
    s["bad_rr_ptr_cut"] = rhdr + question() + b"\xc0"
    s["bad_rr_rdlen_past_end"] = (rhdr + question() + ptr(12)
                                  + struct.pack("!HHIH", 1, 1, 300, 10) + b"\xc0\x00\x02\x01")
    s["bad_rr_fixed_cut"] = rhdr + question() + ptr(12) + a_rr()[:7]
    s["bad_counts_exceed"] = hdr(flags=QR | RD, an=3) + question() + (ptr(12) + a_rr()) * 2
    s["bad_query_counts_ffff"] = hdr(an=0xFFFF, ns=0xFFFF, ar=0xFFFF) + question()
    s["odd_trailing_garbage"] = hdr(ar=1) + question() + opt() + b"\xde\xad\xbe\xef\x00"

    # ---- EDNS
    s["q_edns_after_rr"] = (hdr(ar=2) + question() + ptr(12) + a_rr(9)
                            + opt(1232, 0x01008000, struct.pack("!HH", 10, 8) + bytes(8)))
    s["bad_opt_twice"] = hdr(ar=2) + question() + opt(4096) + opt(1232)
    s["bad_opt_not_root"] = hdr(ar=1) + question() + name("a") + rr(41, 4096, 0, b"")
    s["bad_opt_ptr_owner"] = hdr(ar=1) + question() + ptr(12) + rr(41, 4096, 0, b"")
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.unlink(os.path.join(OUT, f))
    s = seeds()
    for k, v in sorted(s.items()):
        with open(os.path.join(OUT, k + ".bin"), "wb") as f:
            f.write(v)
    print("%d seeds in %s" % (len(s), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
