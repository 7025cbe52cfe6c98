/* test/fuzz/fuzz_wire.c: libFuzzer target for lib/wire.c. Every input is
 * parsed as a query and as a response; whatever parses is then pushed
 * through the writers (truncate, error replies, case restore) and the
 * results are checked against wire.h's promises. A broken promise aborts,
 * so the fuzzer and the seed replay both report it. Buffers handed to the
 * writers are heap copies of exact size, so ASan sees any overrun. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* A decoded name: labels of 1..63 bytes, ending in the root, `len` in all. */
static void check_name(const uint8_t *name, size_t len)
{
    size_t i = 0;
    CHECK(len >= 1 && len <= WIRE_MAX_NAME);
    while (name[i] != 0) {
        CHECK(name[i] <= 63);
        i += 1u + name[i];
        CHECK(i < len);
    }
    CHECK(i + 1 == len);
}

static void check_parsed(const uint8_t *msg, size_t len, const struct wire_msg *m)
{
    CHECK(len >= WIRE_HDR_LEN);
    CHECK(m->id == wire_get16(msg));
    CHECK(m->flags == wire_get16(msg + 2));
    CHECK(m->qdcount == 1 && wire_get16(msg + 4) == 1);
    CHECK(m->ancount == wire_get16(msg + 6));
    CHECK(m->nscount == wire_get16(msg + 8));
    CHECK(m->arcount == wire_get16(msg + 10));
    CHECK(m->qname_off == WIRE_HDR_LEN);
    CHECK(m->qname_off + m->qname_len + 4 == m->question_end);
    CHECK(m->question_end <= len);
    check_name(msg + m->qname_off, m->qname_len);
    CHECK(m->qtype == wire_get16(msg + m->question_end - 4));
    CHECK(m->qclass == wire_get16(msg + m->question_end - 2));
    CHECK(m->end >= m->question_end && m->end <= len);
    if (m->has_opt) {
        CHECK(m->arcount >= 1);
        CHECK(m->opt_off + m->opt_len <= m->end);
        CHECK(m->opt_off >= m->question_end);
        CHECK(m->opt_len >= 11);
        CHECK(m->opt_off + m->opt_len <= len);
        CHECK(msg[m->opt_off] == 0);
        CHECK(wire_get16(msg + m->opt_off + 1) == WIRE_TYPE_OPT);
        CHECK(wire_get16(msg + m->opt_off + 3) == m->edns_udp_size);
        CHECK(wire_get16(msg + m->opt_off + 9) + 11u == m->opt_len);
    }

    /* The question re-read through wire_read_name is the same name. */
    uint8_t name[WIRE_MAX_NAME];
    size_t off = m->qname_off;
    int n = wire_read_name(msg, len, &off, name);
    CHECK(n >= 0 && (size_t)n == m->qname_len);
    CHECK(off == m->qname_off + m->qname_len);
    CHECK(memcmp(name, msg + m->qname_off, m->qname_len) == 0);
    CHECK(wire_name_equal(name, msg + m->qname_off, m->qname_len));
    CHECK(wire_same_question(msg, m, msg, m));

    /* Text form: always a terminated string; plain names read back exactly. */
    char text[4 * WIRE_MAX_NAME + 8];
    CHECK(wire_name_str(name, (size_t)n, text, sizeof(text)) == text);
    CHECK(memchr(text, 0, sizeof(text)) != NULL);
    bool plain = true;
    for (size_t i = 0; name[i] != 0; i += 1u + name[i]) {
        for (size_t j = i + 1; j <= i + name[i]; j++) {
            uint8_t c = name[j];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-'))
                plain = false;
        }
    }
    if (plain) {
        uint8_t back[WIRE_MAX_NAME];
        int bn = wire_name_from_str(text, back);
        CHECK(bn == n);
        CHECK(memcmp(back, name, (size_t)n) == 0);
    }

    /* Case restore onto a copy of itself changes nothing. */
    uint8_t *copy = malloc(len);
    CHECK(copy);
    memcpy(copy, msg, len);
    wire_restore_case(copy, m, msg, m);
    CHECK(memcmp(copy, msg, len) == 0);
    wire_set_edns_size(copy, m, 1232);
    if (m->has_opt)
        CHECK(wire_get16(copy + m->opt_off + 3) == 1232);
    else
        CHECK(memcmp(copy, msg, len) == 0);
    free(copy);
}

static void check_error_reply(const uint8_t *query, size_t qlen, const struct wire_msg *q)
{
    static const size_t caps[] = {0, 11, 12, 13, 30, 64, 300, 600};
    static const size_t over_question[] = {0, 1, 10, 11, 12};
    static const uint16_t udp[] = {0, 512, 1232, 65535};
    const size_t ncaps = sizeof(caps) / sizeof(caps[0]);
    for (size_t i = 0; i < ncaps + 5; i++) {
        size_t cap;
        if (i < ncaps)
            cap = caps[i];
        else if (q)  /* around question-only and question + empty OPT */
            cap = q->question_end + over_question[i - ncaps];
        else  /* header, and header + an OPT found by the lenient walk */
            cap = i - ncaps < 2 ? 12 : 23;
        uint8_t *out = malloc(cap ? cap : 1);
        CHECK(out);
        uint16_t size = udp[i % 4];
        size_t n = wire_make_error(out, cap, query, qlen, q, size, WIRE_SERVFAIL);
        CHECK(n <= cap);
        if (!q) {
            /* header only, or header + OPT (the query's, where a lenient walk finds one) */
            CHECK(n == 0 || n == WIRE_HDR_LEN || n == WIRE_HDR_LEN + 11);
            CHECK(n == 0 || cap >= WIRE_HDR_LEN + 11 || n == WIRE_HDR_LEN);
            if (n == WIRE_HDR_LEN + 11)
                CHECK(wire_get16(out + 10) == 1 && wire_get16(out + WIRE_HDR_LEN + 1) == WIRE_TYPE_OPT);
            if (n) {
                CHECK(wire_get16(out) == wire_get16(query));
                CHECK(wire_get16(out + 2) & WIRE_QR);
                CHECK(WIRE_RCODE(wire_get16(out + 2)) == WIRE_SERVFAIL);
                CHECK(wire_get16(out + 4) == 0);
            }
        } else if (!q->has_opt && cap >= q->question_end) {
            /* header + question always fits where the query's did */
            CHECK(n == q->question_end);
        }
        if (q && n) {
            struct wire_msg r;
            CHECK(wire_parse_response(out, n, &r) == WIRE_OK);
            CHECK(r.end == r.question_end);
            CHECK(wire_find_opt(out, n, &r) == WIRE_OK);
            CHECK(r.end == n);
            CHECK(r.arcount == (r.has_opt ? 1 : 0));
            check_parsed(out, n, &r);
            CHECK(r.id == q->id);
            CHECK(WIRE_RCODE(r.flags) == WIRE_SERVFAIL);
            CHECK((r.flags & (WIRE_RD | WIRE_CD)) == (q->flags & (WIRE_RD | WIRE_CD)));
            CHECK(r.ancount == 0 && r.nscount == 0);
            CHECK(wire_same_question(out, &r, query, q));
            CHECK(memcmp(out + r.qname_off, query + q->qname_off, q->qname_len) == 0);
            CHECK(r.has_opt == q->has_opt);
            if (r.has_opt)
                CHECK(r.edns_udp_size == size);
        }
        free(out);
    }
}

/* m: header and question only; full: m walked by wire_find_opt, which
 * returned WIRE_OK iff walked_ok. Truncation must work from either. */
static void check_truncate(const uint8_t *msg, size_t len, const struct wire_msg *m,
                           const struct wire_msg *full, bool walked_ok)
{
    size_t maxes[] = {0, WIRE_HDR_LEN, 512, len / 2, len ? len - 1 : 0, len, WIRE_MAX_MSG};
    for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
        uint8_t *copy = malloc(len);
        CHECK(copy);
        memcpy(copy, msg, len);
        size_t n = wire_truncate(copy, len, m, maxes[i]);
        CHECK(n <= len);
        if (len <= maxes[i]) {
            CHECK(n == len);
            CHECK(memcmp(copy, msg, len) == 0);
        } else {
            struct wire_msg t;
            CHECK(n >= m->question_end);
            CHECK(wire_get16(copy + 2) & WIRE_TC);
            CHECK(wire_get16(copy) == m->id);
            CHECK(memcmp(copy + WIRE_HDR_LEN, msg + WIRE_HDR_LEN,
                         m->question_end - WIRE_HDR_LEN) == 0);
            CHECK(wire_parse_response(copy, n, &t) == WIRE_OK);
            CHECK(wire_find_opt(copy, n, &t) == WIRE_OK);
            CHECK(t.end == n);
            check_parsed(copy, n, &t);
            CHECK(t.ancount == 0 && t.nscount == 0);
            CHECK(t.arcount == (t.has_opt ? 1 : 0));
            if (t.has_opt) {
                CHECK(walked_ok && full->has_opt);
                CHECK(t.opt_len == full->opt_len);
                CHECK(memcmp(copy + t.opt_off, msg + full->opt_off, t.opt_len) == 0);
            }
            /* Whenever header + question fits, the result fits too (the OPT
             * goes first if it has no room), and OPT stays if it has room. */
            if (m->question_end <= maxes[i])
                CHECK(n <= maxes[i]);
            if (walked_ok && full->has_opt && m->question_end + full->opt_len <= maxes[i])
                CHECK(t.has_opt);
        }
        free(copy);
    }
}

/* The plain leg: per-hop options gone, the same message otherwise. */
static void check_plain_leg(const uint8_t *data, size_t size, const struct wire_msg *m)
{
    uint8_t *out = malloc(m->end ? m->end : 1);
    CHECK(out);
    size_t n = wire_strip_hop_options(out, m->end, data, m);
    CHECK(n <= m->end);
    CHECK(n > 0); /* the parser took the options: they can be walked */
    {
        struct wire_msg p;
        CHECK(wire_parse_query(out, n, &p) == WIRE_OK);
        CHECK(!p.hop_options && p.has_opt == m->has_opt && p.signed_msg == m->signed_msg);
        CHECK(p.id == m->id && p.flags == m->flags && wire_same_question(out, &p, data, m));
        CHECK(m->hop_options || (n == m->end && memcmp(out, data, n) == 0));
    }
    free(out);
    (void)size;
}

static void fuzz_one(const uint8_t *data, size_t size);

/* The DoT leg: a padded query parses to the same question, is a multiple of
 * the block, and stripping it again (as an answer) leaves a message whose
 * records still walk. */
static void check_dot_leg(const uint8_t *data, size_t size, const struct wire_msg *m)
{
    static uint8_t out[WIRE_MAX_MSG];
    size_t n = wire_pad_query(out, sizeof out, data, size, m, 1232, 128);
    if (n == 0)
        return;
    CHECK(n % 128 == 0 && n <= sizeof out);
    struct wire_msg p;
    CHECK(wire_parse_query(out, n, &p) == WIRE_OK);
    CHECK(p.has_opt && p.end == n && wire_same_question(out, &p, data, m));
    out[2] |= 0x80;
    /* Setting QR can break a name whose pointer leads into the flags byte:
     * only an answer whose records walk is a fair input for stripping. */
    struct wire_msg walk;
    if (wire_parse_response(out, n, &walk) != WIRE_OK || wire_find_opt(out, n, &walk) != WIRE_OK)
        return;
    for (int keep = 0; keep < 2; keep++) {
        static uint8_t copy[WIRE_MAX_MSG];
        memcpy(copy, out, n);
        struct wire_msg r;
        int ka;
        CHECK(wire_parse_response(copy, n, &r) == WIRE_OK);
        size_t s = wire_strip_dot_answer(copy, n, &r, keep, &ka);
        CHECK(s > 0 && s <= n && ka == -1);
        struct wire_msg r2;
        CHECK(wire_parse_response(copy, s, &r2) == WIRE_OK);
        CHECK(wire_find_opt(copy, s, &r2) == WIRE_OK);
        CHECK(r2.end == s && r2.has_opt == (keep != 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > WIRE_MAX_MSG)
        return 0;
    /* An exact-size copy: a replay driver may hand over a larger buffer,
     * and ASan should see the message's real end. */
    uint8_t *msg = malloc(size ? size : 1);
    CHECK(msg);
    memcpy(msg, data, size);
    fuzz_one(msg, size);
    free(msg);
    return 0;
}

/* Any answer as a zone transfer's message, twice (the state carries
 * over): the SOA walk stays inside the message and the answer section. */
static void check_xfr_scan(const uint8_t *data, size_t size)
{
    if (size < WIRE_HDR_LEN)
        return;
    uint8_t *resp = malloc(size);
    CHECK(resp);
    memcpy(resp, data, size);
    resp[2] |= 0x80;
    struct wire_msg rm;
    if (wire_parse_response(resp, size, &rm) == WIRE_OK) {
        const uint16_t types[] = { WIRE_TYPE_AXFR, WIRE_TYPE_IXFR };
        for (int i = 0; i < 2; i++) {
            struct wire_xfr x;
            memset(&x, 0, sizeof x);
            for (int round = 0; round < 2; round++) {
                int v = wire_xfr_scan(&x, types[i], resp, size, &rm);
                CHECK(v == 0 || v == 1 || v == WIRE_ERR_FORMAT);
                CHECK(x.rrs <= 2u * rm.ancount);
            }
        }
    }
    free(resp);
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    struct wire_msg m;

    check_xfr_scan(data, size);

    int rc = wire_parse_query(data, size, &m);
    CHECK(rc == WIRE_OK || rc == WIRE_ERR_SHORT || rc == WIRE_ERR_QR ||
          rc == WIRE_ERR_FORMAT || rc == WIRE_ERR_QDCOUNT);
    CHECK(wire_err_str(rc) != NULL);
    CHECK((rc == WIRE_ERR_SHORT) == (size < WIRE_HDR_LEN));
    if (rc == WIRE_OK) {
        check_parsed(data, size, &m);
        CHECK(!(m.flags & WIRE_QR));
        check_plain_leg(data, size, &m);
        uint16_t u = wire_client_udp_size(&m);
        CHECK(u >= 512);
        CHECK(u == (m.has_opt && m.edns_udp_size > 512 ? m.edns_udp_size : 512));
        check_error_reply(data, size, &m);
        check_dot_leg(data, size, &m);

        /* The response parser on a QR-flipped copy, then the RR walk on the
         * original bytes (a pointer may lead into the flags byte), must
         * agree with the query parser. */
        uint8_t *flip = malloc(size);
        CHECK(flip);
        memcpy(flip, data, size);
        flip[2] |= 0x80;
        struct wire_msg r;
        CHECK(wire_parse_response(flip, size, &r) == WIRE_OK);
        CHECK(wire_find_opt(data, size, &r) == WIRE_OK);
        CHECK(r.has_opt == m.has_opt && r.end == m.end);
        if (r.has_opt)
            CHECK(r.opt_off == m.opt_off && r.opt_len == m.opt_len &&
                  r.edns_udp_size == m.edns_udp_size && r.edns_ttl == m.edns_ttl);
        free(flip);
    } else if (rc != WIRE_ERR_SHORT) {
        check_error_reply(data, size, NULL);
    }

    rc = wire_parse_response(data, size, &m);
    CHECK(rc == WIRE_OK || rc == WIRE_ERR_SHORT || rc == WIRE_ERR_QR ||
          rc == WIRE_ERR_FORMAT || rc == WIRE_ERR_QDCOUNT);
    CHECK((rc == WIRE_ERR_SHORT) == (size < WIRE_HDR_LEN));
    if (rc == WIRE_OK) {
        CHECK(m.flags & WIRE_QR);
        CHECK(m.end == m.question_end && !m.has_opt);
        check_parsed(data, size, &m);
        struct wire_msg full = m;
        int wrc = wire_find_opt(data, size, &full);
        CHECK(wrc == WIRE_OK || wrc == WIRE_ERR_FORMAT);
        if (wrc == WIRE_OK)
            check_parsed(data, size, &full);
        check_truncate(data, size, &m, &full, wrc == WIRE_OK);
        if (wrc == WIRE_OK)
            check_truncate(data, size, &full, &full, true);
    }

    /* Names anywhere: what decodes is a well-formed name, and the offset
     * moves forward within the message. */
    size_t last = size < 600 ? size : 600;
    for (size_t at = 0; at <= last; at++) {
        uint8_t name[WIRE_MAX_NAME];
        size_t off = at;
        int n = wire_read_name(data, size, &off, name);
        CHECK(n >= -1 && n <= WIRE_MAX_NAME);
        if (n > 0) {
            check_name(name, (size_t)n);
            CHECK(off > at && off <= size);
        } else {
            CHECK(n == -1);
        }
    }
}
