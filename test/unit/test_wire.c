/* test/unit/test_wire.c: the DNS wire module against lib/wire.h and
 * RFC 1035 §4, RFC 6891 (EDNS) and RFC 5452 (matching). Messages are built
 * byte by byte here, never with the module under test, so a bug in the
 * writer cannot hide a bug in the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/wire.h"

/* ---- message builder ---------------------------------------------------- */

struct mb {
    uint8_t b[4096];
    size_t n;
};

static void mb_u8(struct mb *m, unsigned v)
{
    assert_true(m->n < sizeof(m->b));
    m->b[m->n++] = (uint8_t)v;
}

static void mb_u16(struct mb *m, unsigned v)
{
    mb_u8(m, (v >> 8) & 0xff);
    mb_u8(m, v & 0xff);
}

static void mb_u32(struct mb *m, uint32_t v)
{
    mb_u16(m, v >> 16);
    mb_u16(m, v & 0xffff);
}

static void mb_raw(struct mb *m, const void *p, size_t n)
{
    assert_true(m->n + n <= sizeof(m->b));
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void mb_set16(struct mb *m, size_t off, unsigned v)
{
    m->b[off] = (uint8_t)(v >> 8);
    m->b[off + 1] = (uint8_t)v;
}

static void mb_hdr(struct mb *m, unsigned id, unsigned flags, unsigned qd, unsigned an,
                   unsigned ns, unsigned ar)
{
    m->n = 0;
    mb_u16(m, id);
    mb_u16(m, flags);
    mb_u16(m, qd);
    mb_u16(m, an);
    mb_u16(m, ns);
    mb_u16(m, ar);
}

/* Uncompressed name from "a.b.c" ("" or "." is the root). No escapes. */
static void mb_name(struct mb *m, const char *s)
{
    while (*s && strcmp(s, ".") != 0) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        mb_u8(m, (unsigned)l);
        mb_raw(m, s, l);
        s += l;
        if (*s == '.')
            s++;
    }
    mb_u8(m, 0);
}

static void mb_ptr(struct mb *m, size_t off)
{
    mb_u16(m, 0xc000u | (unsigned)off);
}

static void mb_q(struct mb *m, const char *name, unsigned type, unsigned cls)
{
    mb_name(m, name);
    mb_u16(m, type);
    mb_u16(m, cls);
}

/* The part of an RR after its owner name. */
static void mb_rr(struct mb *m, unsigned type, unsigned cls, uint32_t ttl, const void *rd,
                  unsigned rdlen)
{
    mb_u16(m, type);
    mb_u16(m, cls);
    mb_u32(m, ttl);
    mb_u16(m, rdlen);
    if (rdlen)
        mb_raw(m, rd, rdlen);
}

static void mb_opt(struct mb *m, unsigned udp, uint32_t ttl, const void *rd, unsigned rdlen)
{
    mb_u8(m, 0);
    mb_rr(m, WIRE_TYPE_OPT, udp, ttl, rd, rdlen);
}

static void mb_a(struct mb *m, unsigned last_octet)
{
    uint8_t a[4] = {192, 0, 2, (uint8_t)last_octet};
    mb_rr(m, 1, WIRE_CLASS_IN, 300, a, 4);
}

#define QID 0x1234
#define QNAME_WIRE "\x03www\x07" "example\x03org"  /* + root */
#define QNAME_LEN 17
#define QEND (WIRE_HDR_LEN + QNAME_LEN + 4)      /* 33 */

/* www.example.org A IN, RD, optionally with EDNS (4096, DO). */
static void make_query(struct mb *m, bool edns)
{
    mb_hdr(m, QID, WIRE_RD, 1, 0, 0, edns ? 1 : 0);
    mb_q(m, "www.example.org", 1, WIRE_CLASS_IN);
    if (edns)
        mb_opt(m, 4096, 0x8000, NULL, 0);
}

/* Response to make_query with n A records (owner compressed to the question)
 * and optionally an OPT RR. */
static void make_response(struct mb *m, unsigned n, bool edns)
{
    mb_hdr(m, QID, WIRE_QR | WIRE_RD | WIRE_RA, 1, n, 0, edns ? 1 : 0);
    mb_q(m, "www.example.org", 1, WIRE_CLASS_IN);
    for (unsigned i = 0; i < n; i++) {
        mb_ptr(m, WIRE_HDR_LEN);
        mb_a(m, i & 0xff);
    }
    if (edns)
        mb_opt(m, 1232, 0, NULL, 0);
}

/* The parsers see an exact-size heap copy, so a sanitizer build catches
 * any read past the end. Offsets in *out stay valid for m->b. */
static uint8_t *exact_copy(const struct mb *m)
{
    uint8_t *p = malloc(m->n ? m->n : 1);
    assert_non_null(p);
    memcpy(p, m->b, m->n);
    return p;
}

static int parse_q(const struct mb *m, struct wire_msg *out)
{
    uint8_t *p = exact_copy(m);
    int rc = wire_parse_query(p, m->n, out);
    free(p);
    return rc;
}

static int parse_r(const struct mb *m, struct wire_msg *out)
{
    uint8_t *p = exact_copy(m);
    int rc = wire_parse_response(p, m->n, out);
    free(p);
    return rc;
}

static int find_opt(const struct mb *m, struct wire_msg *w)
{
    uint8_t *p = exact_copy(m);
    int rc = wire_find_opt(p, m->n, w);
    free(p);
    return rc;
}

/* A response parsed by wire_parse_response, then its RRs walked. */
static int parse_r_full(const struct mb *m, struct wire_msg *out)
{
    int rc = parse_r(m, out);
    if (rc != WIRE_OK)
        return rc;
    return find_opt(m, out);
}

/* A defect in the RRs: the query parser rejects it; the response parser
 * (header and question only) accepts, and the RR walk rejects. */
static void assert_rrs_format(struct mb *m)
{
    struct wire_msg w;
    uint16_t flags = wire_get16(m->b + 2);
    mb_set16(m, 2, flags & ~WIRE_QR);
    assert_int_equal(parse_q(m, &w), WIRE_ERR_FORMAT);
    mb_set16(m, 2, flags | WIRE_QR);
    assert_int_equal(parse_r(m, &w), WIRE_OK);
    assert_int_equal(w.end, w.question_end);
    assert_int_equal(find_opt(m, &w), WIRE_ERR_FORMAT);
    mb_set16(m, 2, flags);
}

/* A defect in the header or question: both parsers reject it, the QR bit
 * set as each one wants. */
static void assert_both_format(struct mb *m)
{
    struct wire_msg w;
    uint16_t flags = wire_get16(m->b + 2);
    mb_set16(m, 2, flags & ~WIRE_QR);
    assert_int_equal(parse_q(m, &w), WIRE_ERR_FORMAT);
    mb_set16(m, 2, flags | WIRE_QR);
    assert_int_equal(parse_r(m, &w), WIRE_ERR_FORMAT);
    mb_set16(m, 2, flags);
}

/* ---- header ------------------------------------------------------------- */

static void test_short_header(void **state)
{
    struct mb m;
    struct wire_msg w;
    make_query(&m, false);
    for (size_t n = 0; n < WIRE_HDR_LEN; n++) {
        assert_int_equal(wire_parse_query(m.b, n, &w), WIRE_ERR_SHORT);
        assert_int_equal(wire_parse_response(m.b, n, &w), WIRE_ERR_SHORT);
    }
    /* 12 bytes is a whole header: no longer "short", but the question is missing. */
    assert_int_equal(wire_parse_query(m.b, WIRE_HDR_LEN, &w), WIRE_ERR_FORMAT);
}

static void test_valid_query(void **state)
{
    struct mb m;
    struct wire_msg w;
    make_query(&m, false);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.id, QID);
    assert_int_equal(w.flags, WIRE_RD);
    assert_int_equal(w.qdcount, 1);
    assert_int_equal(w.ancount + w.nscount + w.arcount, 0);
    assert_int_equal(w.qname_off, WIRE_HDR_LEN);
    assert_int_equal(w.qname_len, QNAME_LEN);
    assert_int_equal(w.qtype, 1);
    assert_int_equal(w.qclass, WIRE_CLASS_IN);
    assert_int_equal(w.question_end, QEND);
    assert_int_equal(w.question_end, m.n);
    assert_false(w.has_opt);

    mb_hdr(&m, 7, 0, 1, 0, 0, 0);
    mb_q(&m, "example.org", 28, WIRE_CLASS_IN);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.qtype, 28);
    assert_int_equal(w.qname_len, 13);
}

static void test_root_question(void **state)
{
    struct mb m;
    struct wire_msg w;
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_q(&m, ".", 2, WIRE_CLASS_IN);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.qname_len, 1);
    assert_int_equal(w.question_end, WIRE_HDR_LEN + 5);
}

static void test_qr_mismatch(void **state)
{
    struct mb m;
    struct wire_msg w;
    make_query(&m, false);
    mb_set16(&m, 2, WIRE_QR | WIRE_RD);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QR);
    /* and the other way: a query handed to the response parser */
    make_query(&m, false);
    assert_int_equal(parse_r(&m, &w), WIRE_ERR_QR);
}

/* Every opcode parses: the caller decides what to forward (NOTIFY, UPDATE). */
static void test_opcode(void **state)
{
    struct mb m;
    struct wire_msg w;
    static const unsigned ops[] = {1, 2, 4, 5, 15};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        make_query(&m, false);
        mb_set16(&m, 2, WIRE_RD | (ops[i] << 11));
        assert_int_equal(parse_q(&m, &w), WIRE_OK);
        assert_int_equal(WIRE_OPCODE(w.flags), ops[i]);
        assert_false(w.signed_msg);
    }
    /* An UPDATE: zone, prerequisite (class NONE, no rdata), an update. */
    mb_hdr(&m, QID, WIRE_OP_UPDATE << 11, 1, 1, 1, 0);
    mb_q(&m, "example.org", WIRE_TYPE_SOA, WIRE_CLASS_IN);
    mb_name(&m, "a.example.org");
    mb_u16(&m, 1), mb_u16(&m, 254), mb_u32(&m, 0), mb_u16(&m, 0);
    mb_name(&m, "b.example.org");
    mb_a(&m, 7);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.end, m.n);
}

/* TSIG or SIG(0) as the last record marks the message signed. */
static void test_signed(void **state)
{
    struct mb m;
    struct wire_msg w;
    static const uint8_t tsig_rd[] = { 11, 'h', 'm', 'a', 'c', '-', 's', 'h', 'a', '2', '5', '6', 0,
                                       0, 0, 0x65, 0x43, 0x21, 0x00, 1, 44, 0, 0, 0x12, 0x34, 0, 0, 0, 0 };
    mb_hdr(&m, QID, WIRE_RD, 1, 0, 0, 2);
    mb_q(&m, "www.example.org", 1, WIRE_CLASS_IN);
    mb_opt(&m, 1232, 0, NULL, 0);
    mb_name(&m, "key.example");
    mb_rr(&m, WIRE_TYPE_TSIG, 255, 0, tsig_rd, sizeof tsig_rd);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_true(w.signed_msg);
    assert_true(w.has_opt);
    /* the same record not last is not a signature of the message */
    mb_hdr(&m, QID, WIRE_RD, 1, 0, 0, 2);
    mb_q(&m, "www.example.org", 1, WIRE_CLASS_IN);
    mb_name(&m, "key.example");
    mb_rr(&m, WIRE_TYPE_TSIG, 255, 0, tsig_rd, sizeof tsig_rd);
    mb_opt(&m, 1232, 0, NULL, 0);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_false(w.signed_msg);
    /* SIG(0) */
    mb_hdr(&m, QID, WIRE_RD, 1, 0, 0, 1);
    mb_q(&m, "www.example.org", 1, WIRE_CLASS_IN);
    mb_u8(&m, 0);
    mb_rr(&m, WIRE_TYPE_SIG, 255, 0, tsig_rd, sizeof tsig_rd);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_true(w.signed_msg);
}

/* The client's Padding and keepalive belong to its hop: gone on a plain
 * leg, every other option (and the rest of the message) in place. */
static void test_strip_hop_options(void **state)
{
    struct mb m;
    struct wire_msg w;
    uint8_t out[512];
    static const uint8_t opts[] = { 0, 12, 0, 3, 0, 0, 0,         /* padding, 3 octets */
                                    0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, /* cookie */
                                    0, 11, 0, 0 };                /* keepalive */
    mb_hdr(&m, QID, WIRE_RD, 1, 0, 0, 1);
    mb_q(&m, "www.example.org", 1, WIRE_CLASS_IN);
    mb_opt(&m, 4096, 0x8000, opts, sizeof opts);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_true(w.hop_options);
    size_t n = wire_strip_hop_options(out, sizeof out, m.b, &w);
    assert_int_equal(n, m.n - 7 - 4);
    struct wire_msg w2;
    assert_int_equal(wire_parse_query(out, n, &w2), WIRE_OK);
    assert_true(w2.has_opt);
    assert_false(w2.hop_options);
    assert_int_equal(w2.edns_udp_size, 4096);
    assert_int_equal(w2.opt_len, 11 + 12u);
    assert_memory_equal(out + w2.opt_off + 11, opts + 7, 12);
    assert_memory_equal(out, m.b, w.opt_off + 9);
    /* nothing to strip: a plain copy */
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_false(w.hop_options);
    assert_int_equal(wire_strip_hop_options(out, sizeof out, m.b, &w), m.n);
    assert_memory_equal(out, m.b, m.n);
    assert_int_equal(wire_strip_hop_options(out, m.n - 1, m.b, &w), 0);
}

static void test_qdcount(void **state)
{
    struct mb m;
    struct wire_msg w;
    /* QDCOUNT 0, header only */
    mb_hdr(&m, 1, 0, 0, 0, 0, 0);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QDCOUNT);
    /* QDCOUNT 0 with a question present anyway */
    make_query(&m, false);
    mb_set16(&m, 4, 0);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QDCOUNT);
    /* QDCOUNT 2 with two questions present */
    mb_hdr(&m, 1, 0, 2, 0, 0, 0);
    mb_q(&m, "a.example", 1, 1);
    mb_q(&m, "b.example", 1, 1);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QDCOUNT);
    /* responses: one question, or none (a zone transfer's later messages, RFC 5936 2.2) */
    make_response(&m, 0, false);
    mb_set16(&m, 4, 0);
    assert_int_equal(parse_r(&m, &w), WIRE_OK);
    assert_int_equal(w.qname_len, 0);
    assert_int_equal(w.qtype, 0);
    assert_int_equal(w.question_end, WIRE_HDR_LEN);
    mb_set16(&m, 4, 2);
    assert_int_equal(parse_r(&m, &w), WIRE_ERR_QDCOUNT);
}

/* ---- the question --------------------------------------------------------- */

static void test_bad_labels(void **state)
{
    struct mb m;
    uint8_t l64[64];
    memset(l64, 'a', sizeof(l64));

    /* label length 64 */
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_u8(&m, 64);
    mb_raw(&m, l64, 64);
    mb_u8(&m, 0);
    mb_u32(&m, 0x00010001);
    assert_both_format(&m);

    /* label running past the end */
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_u8(&m, 10);
    mb_raw(&m, "abc", 3);
    assert_both_format(&m);

    /* no root label before the end */
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_raw(&m, "\x03" "abc", 4);
    assert_both_format(&m);

    /* reserved label types 0x40 (extended) and 0x80 */
    static const uint8_t types[] = {0x40, 0x41, 0x80, 0xbf};
    for (size_t i = 0; i < sizeof(types); i++) {
        mb_hdr(&m, 1, 0, 1, 0, 0, 0);
        mb_u8(&m, types[i]);
        mb_raw(&m, "abcdefgh", 8);
        mb_u8(&m, 0);
        mb_u32(&m, 0x00010001);
        assert_both_format(&m);
    }

    /* name intact but QTYPE/QCLASS cut off */
    for (size_t cut = 1; cut <= 4; cut++) {
        make_query(&m, false);
        m.n -= cut;
        assert_both_format(&m);
    }
}

/* A name of exactly `total` wire bytes (incl. root) at the builder's end. */
/* ---- zone transfer progress ---- */

/* One answer RR owned by the zone apex (a pointer to the question when
 * there is one): an SOA with `serial`, or a TXT when serial is 0. */
static void xfr_rr(struct mb *m, bool has_q, uint32_t serial)
{
    if (has_q)
        mb_ptr(m, WIRE_HDR_LEN);
    else
        mb_name(m, "example");
    if (!serial) {
        mb_rr(m, 16, 1, 60, "\003abc", 4);
        return;
    }
    static struct mb r;
    r.n = 0;
    mb_name(&r, "ns.example");
    mb_name(&r, "h.example");
    mb_u32(&r, serial);
    for (int i = 0; i < 4; i++)
        mb_u32(&r, 60);
    mb_rr(m, WIRE_TYPE_SOA, 1, 60, r.b, (unsigned)r.n);
}

/* A transfer message: the RRs in `rrs` (SOA serials; 0 = a TXT), with the
 * question when `first`. Returns wire_xfr_scan's verdict. */
static int xfr_msg(struct wire_xfr *x, uint16_t qtype, bool first, const uint32_t *rrs, unsigned n)
{
    static struct mb m;
    struct wire_msg w;
    mb_hdr(&m, 7, WIRE_QR | WIRE_AA, first ? 1 : 0, n, 0, 0);
    if (first)
        mb_q(&m, "example", qtype, 1);
    for (unsigned i = 0; i < n; i++)
        xfr_rr(&m, first, rrs[i]);
    assert_int_equal(wire_parse_response(m.b, m.n, &w), WIRE_OK);
    return wire_xfr_scan(x, qtype, m.b, m.n, &w);
}

static void test_xfr_scan(void **state)
{
    (void)state;
    struct wire_xfr x;
    /* AXFR over three messages: complete with the second SOA, not before */
    memset(&x, 0, sizeof x);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_AXFR, true, (uint32_t[]){ 5, 0, 0 }, 3), 0);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_AXFR, false, (uint32_t[]){ 0, 0 }, 2), 0);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_AXFR, false, (uint32_t[]){ 0, 5 }, 2), 1);
    /* AXFR in one message */
    memset(&x, 0, sizeof x);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_AXFR, true, (uint32_t[]){ 5, 0, 5 }, 3), 1);
    /* IXFR, the client up to date: the SOA alone */
    memset(&x, 0, sizeof x);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_IXFR, true, (uint32_t[]){ 9 }, 1), 1);
    /* IXFR in AXFR form */
    memset(&x, 0, sizeof x);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_IXFR, true, (uint32_t[]){ 9, 0, 0 }, 3), 0);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_IXFR, false, (uint32_t[]){ 0, 9 }, 2), 1);
    /* IXFR with differences 7 -> 8 -> 9: the new SOA thrice */
    memset(&x, 0, sizeof x);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_IXFR, true, (uint32_t[]){ 9, 7, 0, 8, 0 }, 5), 0);
    assert_false(x.incremental == false);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_IXFR, false, (uint32_t[]){ 8, 0, 9, 0 }, 4), 0);
    assert_int_equal(xfr_msg(&x, WIRE_TYPE_IXFR, false, (uint32_t[]){ 9 }, 1), 1);
    /* an error RCODE ends it */
    memset(&x, 0, sizeof x);
    {
        static struct mb m;
        struct wire_msg w;
        mb_hdr(&m, 7, WIRE_QR | WIRE_REFUSED, 1, 0, 0, 0);
        mb_q(&m, "example", WIRE_TYPE_AXFR, 1);
        assert_int_equal(wire_parse_response(m.b, m.n, &w), WIRE_OK);
        assert_int_equal(wire_xfr_scan(&x, WIRE_TYPE_AXFR, m.b, m.n, &w), 1);
    }
    /* not a transfer: the first record is no SOA, or nothing at all */
    memset(&x, 0, sizeof x);
    assert_true(xfr_msg(&x, WIRE_TYPE_AXFR, true, (uint32_t[]){ 0, 5 }, 2) < 0);
    memset(&x, 0, sizeof x);
    assert_true(xfr_msg(&x, WIRE_TYPE_AXFR, true, NULL, 0) < 0);
}

static void mb_long_name(struct mb *m, size_t total)
{
    size_t left = total - 1;
    while (left > 0) {
        size_t l = left - 1 > 63 ? 63 : left - 1;
        assert_true(l > 0);
        mb_u8(m, (unsigned)l);
        for (size_t i = 0; i < l; i++)
            mb_u8(m, 'a' + (unsigned)(i % 26));
        left -= l + 1;
    }
    mb_u8(m, 0);
}

static void test_name_length_limit(void **state)
{
    struct mb m;
    struct wire_msg w;
    /* 255 is the largest legal name */
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_long_name(&m, 255);
    mb_u32(&m, 0x00010001);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.qname_len, 255);

    static const size_t totals[] = {256, 257, 300};
    for (size_t i = 0; i < 3; i++) {
        size_t total = totals[i];
        mb_hdr(&m, 1, 0, 1, 0, 0, 0);
        mb_long_name(&m, total);
        mb_u32(&m, 0x00010001);
        assert_both_format(&m);
    }
}

static void test_question_compression_rejected(void **state)
{
    struct mb m;
    struct wire_msg w;
    /* "www" + pointer to offset 4, where QDCOUNT's high byte (0) reads as the
     * root label: a backward pointer that would decode to "www.", so only the
     * no-compression-in-the-question rule rejects it. */
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_raw(&m, "\x03www", 4);
    mb_ptr(&m, 4);
    mb_u32(&m, 0x00010001);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_FORMAT);
    /* responses too: restore_case copies qname_len bytes in place */
    mb_set16(&m, 2, WIRE_QR);
    assert_int_equal(parse_r(&m, &w), WIRE_ERR_FORMAT);

    /* the question name being only a pointer */
    mb_hdr(&m, 1, 0, 1, 0, 0, 0);
    mb_ptr(&m, 4);
    mb_u32(&m, 0x00010001);
    assert_both_format(&m);
}

/* ---- RRs: compression, bounds, counts --------------------------------------- */

/* A response-or-query with the standard question and one answer RR whose
 * owner starts at QEND; the caller appends the owner. */
static void rr_msg_start(struct mb *m, unsigned ancount)
{
    mb_hdr(m, QID, WIRE_QR, 1, ancount, 0, 0);
    mb_q(m, "www.example.org", 1, WIRE_CLASS_IN);
    assert_int_equal(m->n, QEND);
}

static void assert_read_name_fails(const struct mb *m, size_t at)
{
    uint8_t out[WIRE_MAX_NAME];
    size_t off = at;
    uint8_t *p = exact_copy(m);
    int rc = wire_read_name(p, m->n, &off, out);
    free(p);
    assert_int_equal(rc, -1);
}

static void test_rr_pointer_self(void **state)
{
    struct mb m;
    rr_msg_start(&m, 1);
    mb_ptr(&m, QEND);          /* points at itself */
    mb_a(&m, 1);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, QEND);
}

static void test_rr_pointer_loop_via_labels(void **state)
{
    struct mb m;
    rr_msg_start(&m, 1);
    mb_raw(&m, "\x03" "abc", 4);
    mb_ptr(&m, QEND);          /* back to this name's start: abc.abc.abc... */
    mb_a(&m, 1);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, QEND);
}

static void test_rr_pointer_into_own_run(void **state)
{
    struct mb m;
    /* "\x02\0\0" then a pointer back to the second byte of this run, a 0
     * that would read as the root: backwards from the pointer, but not
     * before the run's start, which wire.h forbids. */
    rr_msg_start(&m, 1);
    mb_raw(&m, "\x02\x00\x00", 3);
    mb_ptr(&m, QEND + 1);
    mb_a(&m, 1);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, QEND);
}

static void test_rr_reserved_label_types(void **state)
{
    struct mb m;
    static const uint8_t types[] = {0x40, 0x41, 0x80, 0xbf};
    for (size_t i = 0; i < sizeof(types); i++) {
        rr_msg_start(&m, 1);
        mb_u8(&m, types[i]);
        mb_raw(&m, "\x00\x00\x00\x00", 4);
        mb_a(&m, 1);
        assert_rrs_format(&m);
        assert_read_name_fails(&m, QEND);
        /* the same label type reached through a pointer */
        rr_msg_start(&m, 2);
        mb_ptr(&m, WIRE_HDR_LEN);
        size_t rd = m.n + 10;
        uint8_t bad[4] = {types[i], 0, 0, 0};
        mb_rr(&m, 1, 1, 0, bad, 4);
        size_t own2 = m.n;
        mb_ptr(&m, rd);
        mb_a(&m, 2);
        assert_rrs_format(&m);
        assert_read_name_fails(&m, own2);
    }
}

static void test_rr_pointer_two_cycle(void **state)
{
    struct mb m;
    /* RR1 (valid owner) carries rdata "ptr -> RR2 owner"; RR2's owner is
     * "ptr -> RR1 rdata". Reading RR2's owner goes back, then forward to itself. */
    rr_msg_start(&m, 2);
    mb_ptr(&m, WIRE_HDR_LEN);
    size_t rd1 = m.n + 10;
    size_t own2 = rd1 + 2;
    uint8_t rd[2] = {(uint8_t)(0xc0 | (own2 >> 8)), (uint8_t)own2};
    mb_rr(&m, 0xff00, WIRE_CLASS_IN, 0, rd, 2);
    assert_int_equal(m.n, own2);
    mb_ptr(&m, rd1);
    mb_a(&m, 2);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, own2);
    assert_read_name_fails(&m, rd1);
}

static void test_rr_pointer_forward(void **state)
{
    struct mb m;
    /* owner points forward into its own rdata, which starts with a root label */
    rr_msg_start(&m, 1);
    mb_ptr(&m, QEND + 2 + 10);
    uint8_t rd[4] = {0, 0, 0, 0};
    mb_rr(&m, 1, WIRE_CLASS_IN, 0, rd, 4);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, QEND);
}

static void test_rr_pointer_past_end(void **state)
{
    struct mb m;
    rr_msg_start(&m, 1);
    mb_ptr(&m, 0x3fff);
    mb_a(&m, 1);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, QEND);

    /* a pointer whose second byte is missing */
    rr_msg_start(&m, 1);
    mb_u8(&m, 0xc0);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, QEND);
    /* and if the byte past the end were read anyway, it would make a pointer
     * to offset 0, where ID 0 reads as the root name: must still fail */
    mb_set16(&m, 0, 0);
    m.b[m.n] = 0;
    uint8_t out[WIRE_MAX_NAME];
    size_t off = QEND;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), -1);
}

static void test_rr_long_name_via_pointer(void **state)
{
    struct mb m;
    /* question name is 255 bytes; an owner "a" + pointer to it is 257 */
    mb_hdr(&m, 1, WIRE_QR, 1, 1, 0, 0);
    mb_long_name(&m, 255);
    mb_u32(&m, 0x00010001);
    size_t own = m.n;
    mb_raw(&m, "\x01" "a", 2);
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 1);
    assert_rrs_format(&m);
    assert_read_name_fails(&m, own);

    /* just a pointer to it is exactly 255: fine */
    struct wire_msg w;
    m.n = own;
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 1);
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    uint8_t out[WIRE_MAX_NAME];
    size_t off = own;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), 255);
    assert_int_equal(off, own + 2);
    assert_memory_equal(out, m.b + WIRE_HDR_LEN, 255);
}

static void test_rr_truncated(void **state)
{
    struct mb m;
    struct wire_msg w;
    /* RDLENGTH past the end */
    rr_msg_start(&m, 1);
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_u16(&m, 1);
    mb_u16(&m, 1);
    mb_u32(&m, 300);
    mb_u16(&m, 10);
    mb_raw(&m, "\xc0\x00\x02\x01", 4);
    assert_rrs_format(&m);

    /* RDLENGTH one past the end */
    make_response(&m, 2, false);
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    m.n--;
    assert_rrs_format(&m);
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    mb_set16(&m, m.n - 2, 1);  /* OPT RDLENGTH 1, no RDATA */
    assert_rrs_format(&m);

    /* RR fixed part cut short */
    for (size_t cut = 1; cut <= 10; cut++) {
        rr_msg_start(&m, 1);
        mb_ptr(&m, WIRE_HDR_LEN);
        mb_rr(&m, 1, 1, 300, NULL, 0);
        m.n -= cut;
        assert_rrs_format(&m);
    }
}

static void test_counts_exceed_records(void **state)
{
    struct mb m;
    struct wire_msg w;
    /* ANCOUNT 3, two present */
    make_response(&m, 2, false);
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    mb_set16(&m, 6, 3);
    assert_rrs_format(&m);

    /* NSCOUNT 1, nothing present */
    make_response(&m, 2, false);
    mb_set16(&m, 8, 1);
    assert_rrs_format(&m);

    /* ARCOUNT 2, only the OPT present */
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    mb_set16(&m, 10, 2);
    assert_rrs_format(&m);

    /* ANCOUNT 0xffff on a tiny message must not make the walk slow or crash */
    make_query(&m, false);
    mb_set16(&m, 6, 0xffff);
    mb_set16(&m, 8, 0xffff);
    mb_set16(&m, 10, 0xffff);
    assert_rrs_format(&m);
}

static void test_trailing_garbage(void **state)
{
    /* wire.h: a query's trailing bytes after the last counted RR are
     * ignored, and `end` marks where the RRs stop. */
    struct mb m;
    struct wire_msg w;
    make_query(&m, true);
    size_t real_end = m.n;
    mb_raw(&m, "\xde\xad\xbe\xef\x00", 5);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.opt_off + w.opt_len, real_end);
    assert_int_equal(w.end, real_end);
    assert_int_equal(w.question_end, QEND);

    make_query(&m, false);
    mb_raw(&m, "\x00", 1);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.end, QEND);

    /* responses: same for the RR walk */
    make_response(&m, 3, true);
    real_end = m.n;
    mb_raw(&m, "\x00\x00\x00", 3);
    assert_int_equal(parse_r(&m, &w), WIRE_OK);
    assert_int_equal(w.end, QEND);
    assert_int_equal(find_opt(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.end, real_end);
    assert_int_equal(w.opt_off + w.opt_len, real_end);
}

static void test_end_and_find_opt(void **state)
{
    struct mb m;
    struct wire_msg w;
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.end, m.n);
    /* the response parser stops after the question: RR defects are only
     * seen by wire_find_opt */
    make_response(&m, 2, true);
    assert_int_equal(parse_r(&m, &w), WIRE_OK);
    assert_int_equal(w.end, QEND);
    assert_false(w.has_opt);
    assert_int_equal(find_opt(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.end, m.n);
    assert_int_equal(w.edns_udp_size, 1232);
    /* calling it again is harmless */
    assert_int_equal(find_opt(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.end, m.n);
    /* no RRs at all */
    make_response(&m, 0, false);
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    assert_false(w.has_opt);
    assert_int_equal(w.end, QEND);
}

/* RFC 6891 §6.1.1: OPT belongs in the additional section only. Elsewhere it
 * must not be taken for the message's EDNS. */
static void test_opt_outside_additional(void **state)
{
    struct mb m;
    struct wire_msg w;
    for (int sec = 0; sec < 2; sec++) {
        mb_hdr(&m, QID, 0, 1, sec == 0, sec == 1, 0);
        mb_q(&m, "www.example.org", 1, 1);
        mb_opt(&m, 4096, 0, NULL, 0);
        int rc = parse_q(&m, &w);
        assert_true(rc == WIRE_ERR_FORMAT || (rc == WIRE_OK && !w.has_opt));
        mb_set16(&m, 2, WIRE_QR);
        rc = parse_r_full(&m, &w);
        assert_true(rc == WIRE_ERR_FORMAT || (rc == WIRE_OK && !w.has_opt));
    }
}

static void test_read_name_valid(void **state)
{
    struct mb m;
    uint8_t out[WIRE_MAX_NAME];
    static const uint8_t fqdn_foo[] = "\x03" "foo\x07" "example\x03org";  /* + NUL = root */
    size_t off;

    rr_msg_start(&m, 3);
    /* RR1 owner: "foo" + pointer to "example.org" inside the question */
    size_t own1 = m.n;
    mb_raw(&m, "\x03" "foo", 4);
    mb_ptr(&m, WIRE_HDR_LEN + 4);
    mb_a(&m, 1);
    /* RR2 owner: pointer to RR1's owner, which itself ends in a pointer */
    size_t own2 = m.n;
    mb_ptr(&m, own1);
    mb_a(&m, 2);
    /* RR3 owner: pointer to pointer */
    size_t own3 = m.n;
    mb_ptr(&m, own2);
    mb_a(&m, 3);

    struct wire_msg w;
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QR);

    off = WIRE_HDR_LEN;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), QNAME_LEN);
    assert_int_equal(off, WIRE_HDR_LEN + QNAME_LEN);
    assert_memory_equal(out, QNAME_WIRE, QNAME_LEN);

    off = own1;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), 17);
    assert_int_equal(off, own1 + 6);
    assert_memory_equal(out, fqdn_foo, 17);

    off = own2;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), 17);
    assert_int_equal(off, own2 + 2);
    assert_memory_equal(out, fqdn_foo, 17);

    off = own3;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), 17);
    assert_int_equal(off, own3 + 2);
    assert_memory_equal(out, fqdn_foo, 17);

    /* offsets at or past the end */
    off = m.n;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), -1);
    off = m.n + 5;
    assert_int_equal(wire_read_name(m.b, m.n, &off, out), -1);
}

/* ---- EDNS ------------------------------------------------------------------- */

static void test_opt_found(void **state)
{
    struct mb m;
    struct wire_msg w;
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.arcount, 1);
    assert_int_equal(w.opt_off, QEND);
    assert_int_equal(w.opt_len, 11);
    assert_int_equal(w.edns_udp_size, 4096);
    assert_int_equal(w.edns_ttl, 0x8000);

    /* with a cookie option, after another additional RR, and a non-zero
     * extended rcode/version in the TTL */
    static const uint8_t cookie[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    mb_hdr(&m, QID, WIRE_RD | WIRE_CD, 1, 0, 0, 2);
    mb_q(&m, "www.example.org", 1, 1);
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 9);
    size_t opt_off = m.n;
    mb_opt(&m, 1232, 0x01008000, cookie, sizeof(cookie));
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.opt_off, opt_off);
    assert_int_equal(w.opt_len, 11 + sizeof(cookie));
    assert_int_equal(w.opt_off + w.opt_len, m.n);
    assert_int_equal(w.edns_udp_size, 1232);
    assert_int_equal(w.edns_ttl, 0x01008000);

    /* in a response */
    make_response(&m, 2, true);
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    assert_int_equal(w.edns_udp_size, 1232);
    assert_int_equal(w.opt_off + w.opt_len, m.n);
}

static void test_opt_twice(void **state)
{
    struct mb m;
    mb_hdr(&m, QID, 0, 1, 0, 0, 2);
    mb_q(&m, "www.example.org", 1, 1);
    mb_opt(&m, 4096, 0, NULL, 0);
    mb_opt(&m, 1232, 0, NULL, 0);
    assert_rrs_format(&m);
}

static void test_opt_not_root(void **state)
{
    struct mb m;
    mb_hdr(&m, QID, 0, 1, 0, 0, 1);
    mb_q(&m, "www.example.org", 1, 1);
    mb_name(&m, "a");
    mb_rr(&m, WIRE_TYPE_OPT, 4096, 0, NULL, 0);
    assert_rrs_format(&m);

    /* owner as a pointer to the question name */
    mb_hdr(&m, QID, 0, 1, 0, 0, 1);
    mb_q(&m, "www.example.org", 1, 1);
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_rr(&m, WIRE_TYPE_OPT, 4096, 0, NULL, 0);
    assert_rrs_format(&m);
}

static void test_client_udp_size(void **state)
{
    struct mb m;
    struct wire_msg w;
    make_query(&m, false);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(wire_client_udp_size(&w), 512);

    static const struct { unsigned sent, want; } cases[] = {
        {0, 512}, {100, 512}, {511, 512}, {512, 512}, {513, 513},
        {1232, 1232}, {4096, 4096}, {65535, 65535},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_query(&m, true);
        mb_set16(&m, QEND + 3, cases[i].sent);
        assert_int_equal(parse_q(&m, &w), WIRE_OK);
        assert_int_equal(w.edns_udp_size, cases[i].sent);
        assert_int_equal(wire_client_udp_size(&w), cases[i].want);
    }
}

static void test_set_edns_size(void **state)
{
    struct mb m, copy;
    struct wire_msg w;
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    wire_set_edns_size(m.b, &w, 1232);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(w.edns_udp_size, 1232);
    assert_int_equal(w.edns_ttl, 0x8000);

    make_query(&m, false);
    copy = m;
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    wire_set_edns_size(m.b, &w, 1232);
    assert_memory_equal(m.b, copy.b, m.n);
}

/* ---- truncation --------------------------------------------------------------- */

/* `full` is the original answer parsed and walked (wire_find_opt). */
static void check_truncated(const struct mb *orig, const struct wire_msg *full, const uint8_t *t,
                            size_t tlen, size_t max)
{
    struct wire_msg w;
    assert_true(tlen <= max);
    assert_true(tlen <= orig->n);
    assert_int_equal(wire_parse_response(t, tlen, &w), WIRE_OK);
    assert_int_equal(wire_find_opt(t, tlen, &w), WIRE_OK);
    assert_int_equal(w.id, full->id);
    assert_int_equal(w.flags, full->flags | WIRE_TC);
    assert_int_equal(w.qdcount, 1);
    assert_int_equal(w.ancount, 0);
    assert_int_equal(w.nscount, 0);
    assert_int_equal(w.arcount, w.has_opt ? 1 : 0);
    /* question byte for byte, letter case included */
    assert_int_equal(w.question_end, full->question_end);
    assert_memory_equal(t + WIRE_HDR_LEN, orig->b + WIRE_HDR_LEN, full->question_end - WIRE_HDR_LEN);
    if (w.has_opt) {
        assert_true(full->has_opt);
        assert_int_equal(w.opt_len, full->opt_len);
        assert_memory_equal(t + w.opt_off, orig->b + full->opt_off, full->opt_len);
        assert_int_equal(tlen, full->question_end + full->opt_len);
    } else {
        assert_int_equal(tlen, full->question_end);
    }
    /* The OPT stays whenever there is room for it. */
    if (full->has_opt && full->question_end + full->opt_len <= max)
        assert_true(w.has_opt);
}

/* Truncates copies with the answer parsed only (header + question) and
 * walked; both must give the same bytes. */
static void truncate_both_ways(const struct mb *m, size_t max)
{
    struct mb t1, t2;
    struct wire_msg w, full;
    assert_int_equal(parse_r(m, &w), WIRE_OK);
    assert_int_equal(parse_r_full(m, &full), WIRE_OK);
    t1 = *m;
    size_t n1 = wire_truncate(t1.b, t1.n, &w, max);
    check_truncated(m, &full, t1.b, n1, max);
    t2 = *m;
    size_t n2 = wire_truncate(t2.b, t2.n, &full, max);
    check_truncated(m, &full, t2.b, n2, max);
    assert_int_equal(n1, n2);
    assert_memory_equal(t1.b, t2.b, n1);
}

static void test_truncate(void **state)
{
    struct mb m, t;
    struct wire_msg w;
    for (int edns = 0; edns <= 1; edns++) {
        /* 60 answers: 33 + 60 * 16 (+ 11) bytes */
        make_response(&m, 60, edns);
        mb_set16(&m, 2, WIRE_QR | WIRE_RD | WIRE_RA | WIRE_AD | WIRE_NXDOMAIN);
        assert_true(m.n > 512);
        static const size_t maxes[] = {512, 100, 60, QEND + 11, QEND + 5, QEND};
        for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++)
            truncate_both_ways(&m, maxes[i]);
        /* a message that fits is left alone */
        assert_int_equal(parse_r(&m, &w), WIRE_OK);
        t = m;
        assert_int_equal(wire_truncate(t.b, t.n, &w, m.n), m.n);
        assert_memory_equal(t.b, m.b, m.n);
        assert_int_equal(wire_truncate(t.b, t.n, &w, 65535), m.n);
        assert_memory_equal(t.b, m.b, m.n);
    }

    /* authority and other additional records around the OPT go; only OPT stays */
    mb_hdr(&m, QID, WIRE_QR | WIRE_RD, 1, 1, 1, 3);
    mb_q(&m, "WwW.example.org", 1, 1);
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 1);
    mb_ptr(&m, WIRE_HDR_LEN + 4);
    /* SOA: mname and rname compressed to "example.org", then five 32-bit fields */
    static const uint8_t soa[24] = {0xc0, 16, 0xc0, 16, 0, 0, 0, 1, 0, 0, 0, 2,
                                    0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
    mb_rr(&m, WIRE_TYPE_SOA, 1, 60, soa, sizeof(soa));
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 2);
    static const uint8_t pad[] = {0, 12, 0, 4, 0, 0, 0, 0};
    mb_opt(&m, 4096, 0x8000, pad, sizeof(pad));
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 3);
    assert_int_equal(parse_r_full(&m, &w), WIRE_OK);
    assert_true(w.has_opt);
    truncate_both_ways(&m, m.n - 1);
    truncate_both_ways(&m, 512 < m.n ? 512 : QEND + w.opt_len);
}

/* ---- error responses -------------------------------------------------------- */

static void check_error_reply(const uint8_t *out, size_t n, const struct mb *q,
                              const struct wire_msg *mq, uint16_t udp, enum wire_rcode rc)
{
    struct wire_msg w;
    assert_true(n > 0);
    assert_int_equal(wire_parse_response(out, n, &w), WIRE_OK);
    assert_int_equal(wire_find_opt(out, n, &w), WIRE_OK);
    assert_int_equal(w.id, mq->id);
    assert_true(w.flags & WIRE_QR);
    assert_int_equal(WIRE_OPCODE(w.flags), 0);
    assert_int_equal(WIRE_RCODE(w.flags), rc);
    assert_int_equal(w.flags & (WIRE_RD | WIRE_CD), mq->flags & (WIRE_RD | WIRE_CD));
    assert_false(w.flags & WIRE_TC);
    assert_int_equal(w.qdcount, 1);
    assert_int_equal(w.ancount, 0);
    assert_int_equal(w.nscount, 0);
    assert_int_equal(w.arcount, mq->has_opt ? 1 : 0);
    assert_int_equal(w.has_opt, mq->has_opt);
    if (w.has_opt) {
        assert_int_equal(w.edns_udp_size, udp);
        assert_int_equal(w.opt_off + w.opt_len, n);
        /* extended rcode 0: the rcode fits the header */
        assert_int_equal(w.edns_ttl >> 24, 0);
    } else {
        assert_int_equal(n, w.question_end);
    }
    assert_true(wire_same_question(out, &w, q->b, mq));
    assert_int_equal(w.qname_len, mq->qname_len);
    assert_memory_equal(out + w.qname_off, q->b + mq->qname_off, mq->qname_len);
}

static void test_make_error(void **state)
{
    struct mb m;
    struct wire_msg w;
    uint8_t out[600];
    size_t n;

    for (int edns = 0; edns <= 1; edns++) {
        static const uint16_t flagsets[] = {0, WIRE_RD, WIRE_CD, WIRE_RD | WIRE_CD | WIRE_AD};
        for (size_t f = 0; f < 4; f++) {
            make_query(&m, edns);
            mb_set16(&m, 2, flagsets[f]);
            m.b[WIRE_HDR_LEN + 1] = 'W';  /* the client's letter case must survive */
            assert_int_equal(parse_q(&m, &w), WIRE_OK);
            n = wire_make_error(out, sizeof(out), m.b, m.n, &w, 1232, WIRE_SERVFAIL);
            check_error_reply(out, n, &m, &w, 1232, WIRE_SERVFAIL);
            n = wire_make_error(out, sizeof(out), m.b, m.n, &w, 512, WIRE_REFUSED);
            check_error_reply(out, n, &m, &w, 512, WIRE_REFUSED);
        }
    }

    /* a query carrying extra RRs: they are not echoed */
    mb_hdr(&m, 0xbeef, WIRE_RD, 1, 1, 0, 1);
    mb_q(&m, "example.org", 16, 1);
    mb_ptr(&m, WIRE_HDR_LEN);
    mb_a(&m, 1);
    mb_opt(&m, 4096, 0, NULL, 0);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    n = wire_make_error(out, sizeof(out), m.b, m.n, &w, 1400, WIRE_FORMERR);
    check_error_reply(out, n, &m, &w, 1400, WIRE_FORMERR);

    /* capacity: exactly enough works, one byte less returns 0 */
    make_query(&m, false);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    assert_int_equal(wire_make_error(out, QEND, m.b, m.n, &w, 512, WIRE_SERVFAIL), QEND);
    memset(out, 0xaa, sizeof(out));
    assert_int_equal(wire_make_error(out, QEND - 1, m.b, m.n, &w, 512, WIRE_SERVFAIL), 0);
    assert_int_equal(out[QEND - 1], 0xaa);  /* nothing past cap */
    assert_int_equal(wire_make_error(out, 0, m.b, m.n, &w, 512, WIRE_SERVFAIL), 0);
    make_query(&m, true);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    n = wire_make_error(out, sizeof(out), m.b, m.n, &w, 512, WIRE_SERVFAIL);
    assert_true(n > QEND);
    assert_int_equal(wire_make_error(out, n, m.b, m.n, &w, 512, WIRE_SERVFAIL), n);
    memset(out, 0xaa, sizeof(out));
    size_t small = wire_make_error(out, n - 1, m.b, m.n, &w, 512, WIRE_SERVFAIL);
    /* either refuse, or (if it drops OPT to fit) stay within cap */
    assert_true(small <= n - 1);
    assert_int_equal(out[n - 1], 0xaa);
}

static void test_make_error_header_only(void **state)
{
    struct mb m;
    uint8_t out[64];
    struct wire_msg w;

    /* QDCOUNT 2: no usable question */
    mb_hdr(&m, 0x4242, WIRE_RD | WIRE_CD, 2, 0, 0, 0);
    mb_q(&m, "a.example", 1, 1);
    mb_q(&m, "b.example", 1, 1);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QDCOUNT);
    memset(out, 0xaa, sizeof(out));
    size_t n = wire_make_error(out, sizeof(out), m.b, m.n, NULL, 1232, WIRE_FORMERR);
    assert_int_equal(n, WIRE_HDR_LEN);
    assert_int_equal(out[WIRE_HDR_LEN], 0xaa);
    assert_int_equal(wire_get16(out), 0x4242);
    uint16_t fl = wire_get16(out + 2);
    assert_true(fl & WIRE_QR);
    assert_true(fl & WIRE_RD);
    assert_true(fl & WIRE_CD);
    assert_false(fl & WIRE_TC);
    assert_int_equal(WIRE_RCODE(fl), WIRE_FORMERR);
    for (size_t i = 4; i < WIRE_HDR_LEN; i += 2)
        assert_int_equal(wire_get16(out + i), 0);

    /* capacity */
    assert_int_equal(wire_make_error(out, WIRE_HDR_LEN, m.b, m.n, NULL, 512, WIRE_FORMERR),
                     WIRE_HDR_LEN);
    assert_int_equal(wire_make_error(out, WIRE_HDR_LEN - 1, m.b, m.n, NULL, 512, WIRE_FORMERR), 0);

    /* a response is parseable; with no question it matches none */
    n = wire_make_error(out, sizeof(out), m.b, m.n, NULL, 512, WIRE_FORMERR);
    assert_int_equal(wire_parse_response(out, n, &w), WIRE_OK);
    assert_int_equal(w.qdcount, 0);

    /* No question, but an OPT: the FORMERR carries one (RFC 6891 7), DO echoed. */
    mb_hdr(&m, 0x1111, WIRE_RD, 0, 0, 0, 1);
    mb_opt(&m, 4096, 0x8000, NULL, 0);
    assert_int_equal(parse_q(&m, &w), WIRE_ERR_QDCOUNT);
    n = wire_make_error(out, sizeof(out), m.b, m.n, NULL, 1232, WIRE_FORMERR);
    assert_int_equal(n, WIRE_HDR_LEN + 11);
    assert_int_equal(wire_get16(out + 10), 1);
    assert_int_equal(wire_get16(out + WIRE_HDR_LEN + 1), WIRE_TYPE_OPT);
    assert_int_equal(wire_get16(out + WIRE_HDR_LEN + 3), 1232);
    assert_int_equal(wire_get16(out + WIRE_HDR_LEN + 7), 0x8000);
    /* a broken record before it: no OPT can be trusted, none is sent */
    mb_hdr(&m, 0x1111, WIRE_RD, 0, 1, 0, 1);
    mb_u8(&m, 0), mb_u16(&m, 1), mb_u16(&m, 1), mb_u32(&m, 0), mb_u16(&m, 200);
    mb_opt(&m, 4096, 0, NULL, 0);
    n = wire_make_error(out, sizeof(out), m.b, m.n, NULL, 1232, WIRE_FORMERR);
    assert_int_equal(n, WIRE_HDR_LEN);

    /* NOTIMP: RD, RA and CD clear, as BIND and NSD answer; question and OPT kept. */
    make_query(&m, true);
    mb_set16(&m, 2, (2u << 11) | WIRE_RD | WIRE_CD);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    n = wire_make_error(out, sizeof(out), m.b, m.n, &w, 1232, WIRE_NOTIMP);
    assert_int_equal(n, m.n);
    fl = wire_get16(out + 2);
    assert_int_equal(wire_get16(out), QID);
    assert_int_equal(fl, WIRE_QR | (2u << 11) | WIRE_NOTIMP);
    assert_int_equal(wire_get16(out + 4), 1);
    assert_int_equal(wire_get16(out + 10), 1);
}

/* ---- matching and case -------------------------------------------------------- */

static void test_restore_case_and_id(void **state)
{
    struct mb q, a, before;
    struct wire_msg mq, ma;
    mb_hdr(&q, 0x1111, WIRE_RD, 1, 0, 0, 0);
    mb_q(&q, "WwW.ExAmPlE.oRg", 1, 1);
    assert_int_equal(parse_q(&q, &mq), WIRE_OK);

    make_response(&a, 2, true);
    wire_set_id(a.b, 0x9999);  /* the upstream-side ID */
    assert_int_equal(parse_r(&a, &ma), WIRE_OK);
    assert_true(wire_same_question(q.b, &mq, a.b, &ma));
    before = a;
    wire_restore_case(a.b, &ma, q.b, &mq);
    wire_set_id(a.b, mq.id);
    assert_int_equal(wire_get16(a.b), 0x1111);
    assert_memory_equal(a.b + WIRE_HDR_LEN, q.b + WIRE_HDR_LEN, QNAME_LEN);
    /* nothing else changed */
    assert_memory_equal(a.b + 2, before.b + 2, WIRE_HDR_LEN - 2);
    assert_memory_equal(a.b + WIRE_HDR_LEN + QNAME_LEN, before.b + WIRE_HDR_LEN + QNAME_LEN,
                        a.n - WIRE_HDR_LEN - QNAME_LEN);
    assert_int_equal(parse_r(&a, &ma), WIRE_OK);
    assert_true(wire_same_question(q.b, &mq, a.b, &ma));
}

static void test_same_question(void **state)
{
    struct mb a, b;
    struct wire_msg ma, mb_;
    make_query(&a, false);
    assert_int_equal(parse_q(&a, &ma), WIRE_OK);

    mb_hdr(&b, 1, WIRE_QR, 1, 0, 0, 0);
    mb_q(&b, "WWW.EXAMPLE.ORG", 1, 1);
    assert_int_equal(parse_r(&b, &mb_), WIRE_OK);
    assert_true(wire_same_question(a.b, &ma, b.b, &mb_));
    assert_true(wire_same_question(b.b, &mb_, a.b, &ma));

    mb_hdr(&b, 1, WIRE_QR, 1, 0, 0, 0);
    mb_q(&b, "www.example.org", 28, 1);
    assert_int_equal(parse_r(&b, &mb_), WIRE_OK);
    assert_false(wire_same_question(a.b, &ma, b.b, &mb_));

    mb_hdr(&b, 1, WIRE_QR, 1, 0, 0, 0);
    mb_q(&b, "www.example.org", 1, 3);
    assert_int_equal(parse_r(&b, &mb_), WIRE_OK);
    assert_false(wire_same_question(a.b, &ma, b.b, &mb_));

    mb_hdr(&b, 1, WIRE_QR, 1, 0, 0, 0);
    mb_q(&b, "www.example.orh", 1, 1);
    assert_int_equal(parse_r(&b, &mb_), WIRE_OK);
    assert_false(wire_same_question(a.b, &ma, b.b, &mb_));

    mb_hdr(&b, 1, WIRE_QR, 1, 0, 0, 0);
    mb_q(&b, "www.example.org.x", 1, 1);
    assert_int_equal(parse_r(&b, &mb_), WIRE_OK);
    assert_false(wire_same_question(a.b, &ma, b.b, &mb_));

    /* same bytes, other label split: "www.example" vs "wwwexample" style */
    mb_hdr(&b, 1, WIRE_QR, 1, 0, 0, 0);
    mb_q(&b, "wwwe.xample.org", 1, 1);
    assert_int_equal(parse_r(&b, &mb_), WIRE_OK);
    assert_false(wire_same_question(a.b, &ma, b.b, &mb_));
}

static void test_name_equal(void **state)
{
    assert_true(wire_name_equal((const uint8_t *)"\x03WwW\x00", (const uint8_t *)"\x03wWw\x00", 5));
    assert_false(wire_name_equal((const uint8_t *)"\x03www\x00", (const uint8_t *)"\x03wwx\x00", 5));
    /* only A-Z/a-z fold: '@' (0x40) vs '`' (0x60), '[' vs '{', '^' vs '~' differ */
    assert_false(wire_name_equal((const uint8_t *)"\x01@\x00", (const uint8_t *)"\x01`\x00", 3));
    assert_false(wire_name_equal((const uint8_t *)"\x01[\x00", (const uint8_t *)"\x01{\x00", 3));
    assert_false(wire_name_equal((const uint8_t *)"\x01^\x00", (const uint8_t *)"\x01~\x00", 3));
    assert_true(wire_name_equal((const uint8_t *)"\x00", (const uint8_t *)"\x00", 1));
}

/* ---- names as text ------------------------------------------------------------ */

static void roundtrip(const char *s, const char *canon, const uint8_t *wire, int wlen)
{
    uint8_t out[WIRE_MAX_NAME];
    char buf[1100];
    int n = wire_name_from_str(s, out);
    assert_int_equal(n, wlen);
    assert_memory_equal(out, wire, (size_t)wlen);
    assert_string_equal(wire_name_str(out, (size_t)n, buf, sizeof(buf)), canon);
}

static void test_name_text(void **state)
{
    roundtrip("example.org", "example.org.", (const uint8_t *)"\x07" "example\x03org", 13);
    roundtrip("example.org.", "example.org.", (const uint8_t *)"\x07" "example\x03org", 13);
    roundtrip(".", ".", (const uint8_t *)"", 1);
    roundtrip("a", "a.", (const uint8_t *)"\x01" "a", 3);
    roundtrip("Www.Example.ORG", "Www.Example.ORG.", (const uint8_t *)"\x03Www\x07" "Example\x03ORG", 17);

    uint8_t out[WIRE_MAX_NAME];
    char longlab[80];
    memset(longlab, 'x', sizeof(longlab));
    longlab[63] = 0;
    assert_int_equal(wire_name_from_str(longlab, out), 65);
    longlab[63] = 'x';
    longlab[64] = 0;
    assert_int_equal(wire_name_from_str(longlab, out), -1);
    assert_int_equal(wire_name_from_str("a..b", out), -1);
    assert_int_equal(wire_name_from_str(".a", out), -1);
    assert_int_equal(wire_name_from_str("a.b..", out), -1);
    assert_int_equal(wire_name_from_str("..", out), -1);

    /* 255 fits, 256 does not: 4 labels of 62 = 252 + "ab." */
    char big[400];
    char *p = big;
    for (int i = 0; i < 4; i++) {
        memset(p, 'a' + i, 62);
        p += 62;
        *p++ = '.';
    }
    strcpy(p, "a");
    assert_int_equal(wire_name_from_str(big, out), 255);
    char buf[1100];
    wire_name_str(out, 255, buf, sizeof(buf));
    assert_int_equal(strlen(buf), strlen(big) + 1);
    assert_int_equal(strncmp(buf, big, strlen(big)), 0);
    strcpy(p, "ab");
    assert_int_equal(wire_name_from_str(big, out), -1);
}

static void test_name_str_escapes(void **state)
{
    /* label bytes 0x01, ' ', '.', '\\', 0xff, then "x" */
    static const uint8_t name[] = {5, 0x01, ' ', '.', '\\', 0xff, 1, 'x', 0};
    char buf[200];
    const char *s = wire_name_str(name, sizeof(name), buf, sizeof(buf));
    assert_ptr_equal(s, buf);
    size_t l = strlen(buf);
    assert_true(l > 0);
    for (size_t i = 0; i < l; i++)
        assert_true(buf[i] > 0x20 && buf[i] < 0x7f);
    assert_non_null(strchr(buf, '\\'));
    /* the label's dot must not read as a label separator: one escaped label
     * then "x." */
    assert_int_equal(strcmp(buf + l - 3, ".x."), 0);
    int dots = 0;
    for (size_t i = 0; i < l; i++)
        if (buf[i] == '.' && (i == 0 || buf[i - 1] != '\\'))
            dots++;
    assert_int_equal(dots, 2);

    /* wire.h promises no escape parsing in wire_name_from_str, so the
     * escaped text is not read back here; plain names round-trip in
     * test_name_text. */
}

static void test_name_str_small_buffer(void **state)
{
    static const uint8_t name[] = "\x07" "example\x03org";
    char buf[32];
    for (size_t sz = 1; sz < 14; sz++) {
        memset(buf, 'Z', sizeof(buf));
        wire_name_str(name, sizeof(name), buf, sz);
        assert_true(memchr(buf, 0, sz) != NULL);  /* NUL-terminated within bufsz */
        assert_int_equal(buf[sz], 'Z');           /* nothing written past it */
    }
    /* the worst case, every byte escaped, fits the documented maximum once escaped */
    uint8_t ugly[WIRE_MAX_NAME];
    size_t o = 0;
    for (int i = 0; i < 4; i++) {
        ugly[o++] = i < 3 ? 63 : 61;
        for (int j = 0; j < (i < 3 ? 63 : 61); j++)
            ugly[o++] = 0x01;
    }
    ugly[o++] = 0;
    assert_int_equal(o, 255);
    char big[1100];
    memset(big, 'Z', sizeof(big));
    wire_name_str(ugly, o, big, sizeof(big));
    assert_non_null(memchr(big, 0, sizeof(big)));
}

static void test_err_str(void **state)
{
    static const int codes[] = {WIRE_OK, WIRE_ERR_SHORT, WIRE_ERR_QR, WIRE_ERR_FORMAT,
                                WIRE_ERR_QDCOUNT, -99, 42};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = wire_err_str(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
    assert_string_not_equal(wire_err_str(WIRE_ERR_QR), wire_err_str(WIRE_ERR_FORMAT));
}


/* ---- the DoT leg: padding and keepalive added, then stripped ----------- */

/* Finds option `code` in the OPT RR of a parsed message; returns its data
 * length, or -1 if absent. */
static int opt_option_len(const uint8_t *msg, const struct wire_msg *w, unsigned code)
{
    size_t rd = w->opt_off + 11, end = w->opt_off + w->opt_len;
    assert_int_equal(wire_get16(msg + w->opt_off + 9), w->opt_len - 11);
    while (rd + 4 <= end) {
        unsigned c = wire_get16(msg + rd), l = wire_get16(msg + rd + 2);
        assert_true(rd + 4 + l <= end);
        if (c == code)
            return (int)l;
        rd += 4 + l;
    }
    return -1;
}

static void test_pad_query_without_edns(void **state)
{
    (void)state;
    struct mb m;
    struct wire_msg w, pw;
    uint8_t out[1024];
    make_query(&m, false);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    size_t n = wire_pad_query(out, sizeof out, m.b, m.n, &w, 1232, 128);
    assert_int_equal(n % 128, 0);
    assert_true(n >= m.n + 11 + 8);
    assert_int_equal(wire_parse_query(out, n, &pw), WIRE_OK);
    assert_true(pw.has_opt);
    assert_int_equal(pw.arcount, 1);
    assert_int_equal(pw.edns_udp_size, 1232);
    assert_int_equal(pw.end, n);
    assert_true(opt_option_len(out, &pw, WIRE_EDNS_PADDING) >= 0);
    assert_int_equal(opt_option_len(out, &pw, WIRE_EDNS_KEEPALIVE), 0);
    assert_true(wire_same_question(out, &pw, m.b, &w));
    /* Too small a buffer: refused, not overrun. */
    assert_int_equal(wire_pad_query(out, 40, m.b, m.n, &w, 1232, 128), 0);
}

static void test_pad_query_keeps_client_options(void **state)
{
    (void)state;
    struct mb m;
    struct wire_msg w, pw;
    uint8_t out[1024];
    /* Client OPT: a cookie (10) and its own padding (12) and keepalive (11). */
    const uint8_t rd[] = { 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 12, 0, 3, 0, 0, 0, 0, 11, 0, 0 };
    mb_hdr(&m, QID, WIRE_RD, 1, 0, 0, 1);
    mb_q(&m, "www.example.org", 1, WIRE_CLASS_IN);
    mb_opt(&m, 4096, 0x8000, rd, sizeof rd);
    assert_int_equal(parse_q(&m, &w), WIRE_OK);
    size_t n = wire_pad_query(out, sizeof out, m.b, m.n, &w, 1232, 128);
    assert_int_equal(n % 128, 0);
    assert_int_equal(wire_parse_query(out, n, &pw), WIRE_OK);
    assert_int_equal(pw.arcount, 1);
    assert_int_equal(pw.edns_ttl & 0x8000, 0x8000);       /* DO kept */
    assert_int_equal(opt_option_len(out, &pw, 10), 8);    /* cookie passes through */
    assert_int_equal(opt_option_len(out, &pw, WIRE_EDNS_KEEPALIVE), 0);
    /* Exactly one padding option: the client's is replaced, not duplicated. */
    size_t rdo = pw.opt_off + 11, end = pw.opt_off + pw.opt_len;
    int pads = 0;
    while (rdo < end) {
        pads += wire_get16(out + rdo) == WIRE_EDNS_PADDING;
        rdo += 4u + wire_get16(out + rdo + 2);
    }
    assert_int_equal(pads, 1);
}

static void test_strip_dot_answer(void **state)
{
    (void)state;
    struct mb m;
    struct wire_msg w;
    int ka;
    /* Answer with 2 A records and OPT {keepalive 300 (30 s), padding 40, cookie}. */
    uint8_t rd[4 + 2 + 4 + 40 + 4 + 8];
    size_t o = 0;
    rd[o++] = 0; rd[o++] = 11; rd[o++] = 0; rd[o++] = 2; rd[o++] = 0x01; rd[o++] = 0x2c;
    rd[o++] = 0; rd[o++] = 12; rd[o++] = 0; rd[o++] = 40;
    memset(rd + o, 0, 40); o += 40;
    rd[o++] = 0; rd[o++] = 10; rd[o++] = 0; rd[o++] = 8;
    memset(rd + o, 7, 8); o += 8;
    mb_hdr(&m, QID, WIRE_QR | WIRE_RD | WIRE_RA, 1, 2, 0, 1);
    mb_q(&m, "www.example.org", 1, WIRE_CLASS_IN);
    mb_ptr(&m, WIRE_HDR_LEN); mb_a(&m, 1);
    mb_ptr(&m, WIRE_HDR_LEN); mb_a(&m, 2);
    mb_opt(&m, 1232, 0, rd, (unsigned)o);
    struct mb keep = m;

    /* Client had EDNS: OPT stays, padding and keepalive go, the cookie stays. */
    assert_int_equal(wire_parse_response(keep.b, keep.n, &w), WIRE_OK);
    size_t n = wire_strip_dot_answer(keep.b, keep.n, &w, true, &ka);
    assert_int_equal(ka, 300);
    assert_int_equal(n, m.n - 44 - 6);
    struct wire_msg w2;
    assert_int_equal(wire_parse_response(keep.b, n, &w2), WIRE_OK);
    assert_int_equal(wire_find_opt(keep.b, n, &w2), WIRE_OK);
    assert_true(w2.has_opt);
    assert_int_equal(w2.end, n);
    assert_int_equal(opt_option_len(keep.b, &w2, WIRE_EDNS_PADDING), -1);
    assert_int_equal(opt_option_len(keep.b, &w2, WIRE_EDNS_KEEPALIVE), -1);
    assert_int_equal(opt_option_len(keep.b, &w2, 10), 8);

    /* Client had no EDNS: the whole OPT RR goes. */
    struct mb drop = m;
    assert_int_equal(wire_parse_response(drop.b, drop.n, &w), WIRE_OK);
    n = wire_strip_dot_answer(drop.b, drop.n, &w, false, &ka);
    assert_int_equal(ka, 300);
    assert_int_equal(wire_get16(drop.b + 10), 0);
    assert_int_equal(wire_parse_response(drop.b, n, &w2), WIRE_OK);
    assert_int_equal(wire_find_opt(drop.b, n, &w2), WIRE_OK);
    assert_false(w2.has_opt);
    assert_int_equal(w2.end, n);

    /* No OPT at all: unchanged. */
    struct mb plain;
    make_response(&plain, 1, false);
    assert_int_equal(wire_parse_response(plain.b, plain.n, &w), WIRE_OK);
    assert_int_equal(wire_strip_dot_answer(plain.b, plain.n, &w, true, &ka), plain.n);
    assert_int_equal(ka, -1);

    /* A malformed option list is reported, not walked past. */
    struct mb bad;
    const uint8_t badrd[] = { 0, 12, 0, 40, 0 };
    mb_hdr(&bad, QID, WIRE_QR, 1, 0, 0, 1);
    mb_q(&bad, "www.example.org", 1, WIRE_CLASS_IN);
    mb_opt(&bad, 1232, 0, badrd, sizeof badrd);
    assert_int_equal(wire_parse_response(bad.b, bad.n, &w), WIRE_OK);
    assert_int_equal(wire_strip_dot_answer(bad.b, bad.n, &w, true, &ka), 0);
}

static void test_name_from_str_rejects(void **state)
{
    (void)state;
    uint8_t w[WIRE_MAX_NAME];
    assert_int_equal(wire_name_from_str("", w), -1);
    assert_int_equal(wire_name_from_str("a\\.b", w), -1);
    assert_int_equal(wire_name_from_str("a..b", w), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_header),
        cmocka_unit_test(test_valid_query),
        cmocka_unit_test(test_root_question),
        cmocka_unit_test(test_qr_mismatch),
        cmocka_unit_test(test_opcode),
        cmocka_unit_test(test_signed),
        cmocka_unit_test(test_strip_hop_options),
        cmocka_unit_test(test_qdcount),
        cmocka_unit_test(test_xfr_scan),
        cmocka_unit_test(test_bad_labels),
        cmocka_unit_test(test_name_length_limit),
        cmocka_unit_test(test_question_compression_rejected),
        cmocka_unit_test(test_rr_pointer_self),
        cmocka_unit_test(test_rr_pointer_loop_via_labels),
        cmocka_unit_test(test_rr_pointer_into_own_run),
        cmocka_unit_test(test_rr_reserved_label_types),
        cmocka_unit_test(test_rr_pointer_two_cycle),
        cmocka_unit_test(test_rr_pointer_forward),
        cmocka_unit_test(test_rr_pointer_past_end),
        cmocka_unit_test(test_rr_long_name_via_pointer),
        cmocka_unit_test(test_rr_truncated),
        cmocka_unit_test(test_counts_exceed_records),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_end_and_find_opt),
        cmocka_unit_test(test_opt_outside_additional),
        cmocka_unit_test(test_read_name_valid),
        cmocka_unit_test(test_opt_found),
        cmocka_unit_test(test_opt_twice),
        cmocka_unit_test(test_opt_not_root),
        cmocka_unit_test(test_client_udp_size),
        cmocka_unit_test(test_set_edns_size),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_make_error),
        cmocka_unit_test(test_make_error_header_only),
        cmocka_unit_test(test_restore_case_and_id),
        cmocka_unit_test(test_same_question),
        cmocka_unit_test(test_pad_query_without_edns),
        cmocka_unit_test(test_pad_query_keeps_client_options),
        cmocka_unit_test(test_strip_dot_answer),
        cmocka_unit_test(test_name_from_str_rejects),
        cmocka_unit_test(test_name_equal),
        cmocka_unit_test(test_name_text),
        cmocka_unit_test(test_name_str_escapes),
        cmocka_unit_test(test_name_str_small_buffer),
        cmocka_unit_test(test_err_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
