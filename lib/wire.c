/* lib/wire.c: DNS message reading and writing with a bounds check on every read. */
#include "lib/wire.h"

#include <stdio.h>
#include <string.h>

static inline uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c; }

const char *wire_err_str(int err)
{
    switch (err) {
    case WIRE_OK: return "ok";
    case WIRE_ERR_SHORT: return "shorter than a DNS header";
    case WIRE_ERR_QR: return "wrong QR bit";
    case WIRE_ERR_FORMAT: return "malformed message";
    case WIRE_ERR_QDCOUNT: return "not exactly one question";
    }
    return "unknown error";
}

/* An uncompressed name, as a question must be. Returns its wire length or -1. */
static int read_plain_name(const uint8_t *msg, size_t len, size_t off)
{
    size_t pos = off;
    for (;;) {
        if (pos >= len)
            return -1;
        uint8_t l = msg[pos];
        if (l == 0)
            break;
        if (l > 63)
            return -1; /* pointer or reserved label type */
        pos += 1u + l;
        if (pos - off > WIRE_MAX_NAME - 1)
            return -1;
    }
    return (int)(pos + 1 - off);
}

int wire_read_name(const uint8_t *msg, size_t len, size_t *off, uint8_t out[WIRE_MAX_NAME])
{
    /* After a jump, the labels read must end before the pointer that led
     * there: a real compressed name refers to an earlier, complete name, and
     * with this rule a name never depends on bytes after its own position. */
    size_t pos = *off, run_start = *off, limit = len, after = 0, outlen = 0;
    for (;;) {
        if (pos >= limit)
            return -1;
        uint8_t l = msg[pos];
        if ((l & 0xc0) == 0xc0) {
            if (pos + 1 >= limit)
                return -1;
            size_t target = ((size_t)(l & 0x3f) << 8) | msg[pos + 1];
            if (target >= run_start)
                return -1;
            if (!after)
                after = pos + 2;
            limit = pos;
            pos = run_start = target;
            continue;
        }
        if (l > 63)
            return -1;
        if (pos + 1u + l > limit || outlen + 1u + l > WIRE_MAX_NAME)
            return -1;
        memcpy(out + outlen, msg + pos, 1u + (size_t)l);
        outlen += 1u + l;
        pos += 1u + l;
        if (l == 0)
            break;
    }
    *off = after ? after : pos;
    return (int)outlen;
}

/* Skips a possibly compressed name without copying it. */
static int skip_name(const uint8_t *msg, size_t len, size_t *off)
{
    uint8_t scratch[WIRE_MAX_NAME];
    return wire_read_name(msg, len, off, scratch) < 0 ? -1 : 0;
}

bool wire_name_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    /* Length bytes are < 64, so lower-casing them is harmless. */
    for (size_t i = 0; i < len; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static int parse_header(const uint8_t *msg, size_t len, struct wire_msg *m)
{
    if (len < WIRE_HDR_LEN)
        return WIRE_ERR_SHORT;
    memset(m, 0, sizeof *m);
    m->id = wire_get16(msg);
    m->flags = wire_get16(msg + 2);
    m->qdcount = wire_get16(msg + 4);
    m->ancount = wire_get16(msg + 6);
    m->nscount = wire_get16(msg + 8);
    m->arcount = wire_get16(msg + 10);
    return WIRE_OK;
}

static int parse_question(const uint8_t *msg, size_t len, struct wire_msg *m)
{
    if (m->qdcount != 1)
        return WIRE_ERR_QDCOUNT;
    int nl = read_plain_name(msg, len, WIRE_HDR_LEN);
    if (nl < 0)
        return WIRE_ERR_FORMAT;
    size_t pos = WIRE_HDR_LEN + (size_t)nl;
    if (pos + 4 > len)
        return WIRE_ERR_FORMAT;
    m->qname_off = WIRE_HDR_LEN;
    m->qname_len = (size_t)nl;
    m->qtype = wire_get16(msg + pos);
    m->qclass = wire_get16(msg + pos + 2);
    m->question_end = m->end = pos + 4;
    return WIRE_OK;
}

/* OPT rdata: 1 if it carries an option that belongs to one hop (RFC 7830,
 * 7828), 0 if not, -1 if the options do not tile the rdata (FORMERR, RFC
 * 6891 6.1.2). */
static int hop_options(const uint8_t *rd, size_t rdlen)
{
    int hop = 0;
    size_t i = 0;
    while (i < rdlen) {
        if (i + 4 > rdlen)
            return -1;
        uint16_t code = wire_get16(rd + i), olen = wire_get16(rd + i + 2);
        if (i + 4u + olen > rdlen)
            return -1;
        hop |= code == WIRE_EDNS_PADDING || code == WIRE_EDNS_KEEPALIVE;
        i += 4u + olen;
    }
    return hop;
}

/* Walks AN, NS and AR after the question; records the OPT RR and whether
 * the last record is a signature. */
static int walk_records(const uint8_t *msg, size_t len, struct wire_msg *m)
{
    size_t pos = m->question_end;
    unsigned total = (unsigned)m->ancount + m->nscount + m->arcount;
    unsigned first_ar = (unsigned)m->ancount + m->nscount;
    for (unsigned i = 0; i < total; i++) {
        size_t start = pos;
        if (skip_name(msg, len, &pos) < 0 || pos + 10 > len)
            return WIRE_ERR_FORMAT;
        uint16_t type = wire_get16(msg + pos);
        uint16_t rdlen = wire_get16(msg + pos + 8);
        size_t rr_end = pos + 10 + rdlen;
        if (rr_end > len)
            return WIRE_ERR_FORMAT;
        if (type == WIRE_TYPE_OPT) {
            /* RFC 6891 6.1.1: one OPT, owned by the root, in the additional section. */
            if (m->has_opt || i < first_ar || pos - start != 1)
                return WIRE_ERR_FORMAT;
            m->has_opt = true;
            m->opt_off = start;
            m->opt_len = rr_end - start;
            m->edns_udp_size = wire_get16(msg + pos + 2);
            m->edns_ttl = ((uint32_t)wire_get16(msg + pos + 4) << 16) | wire_get16(msg + pos + 6);
            int hop = hop_options(msg + pos + 10, rdlen);
            if (hop < 0)
                return WIRE_ERR_FORMAT;
            m->hop_options = hop;
        }
        if (i + 1 == total && i >= first_ar && (type == WIRE_TYPE_TSIG || type == WIRE_TYPE_SIG))
            m->signed_msg = true;
        pos = rr_end;
    }
    m->end = pos;
    return WIRE_OK;
}

int wire_parse_query(const uint8_t *msg, size_t len, struct wire_msg *m)
{
    int r = parse_header(msg, len, m);
    if (r != WIRE_OK)
        return r;
    if (m->flags & WIRE_QR)
        return WIRE_ERR_QR;
    r = parse_question(msg, len, m);
    if (r != WIRE_OK)
        return r;
    return walk_records(msg, len, m);
}

int wire_parse_response(const uint8_t *msg, size_t len, struct wire_msg *m)
{
    int r = parse_header(msg, len, m);
    if (r != WIRE_OK)
        return r;
    if (!(m->flags & WIRE_QR))
        return WIRE_ERR_QR;
    if (m->qdcount == 0) {
        /* A zone transfer's later messages (RFC 5936 2.2); matches no question. */
        m->question_end = m->end = WIRE_HDR_LEN;
        return WIRE_OK;
    }
    return parse_question(msg, len, m);
}

int wire_xfr_scan(struct wire_xfr *x, uint16_t qtype, const uint8_t *msg, size_t len, const struct wire_msg *m)
{
    x->qtype = qtype;
    if (WIRE_RCODE(m->flags) != WIRE_NOERROR)
        return 1;
    size_t pos = m->question_end;
    for (unsigned i = 0; i < m->ancount; i++) {
        if (skip_name(msg, len, &pos) < 0 || pos + 10 > len)
            return WIRE_ERR_FORMAT;
        uint16_t type = wire_get16(msg + pos);
        size_t rd = pos + 10, rr_end = rd + wire_get16(msg + pos + 8);
        if (rr_end > len)
            return WIRE_ERR_FORMAT;
        x->rrs++;
        if (type == WIRE_TYPE_SOA) {
            size_t p = rd;
            if (skip_name(msg, rr_end, &p) < 0 || skip_name(msg, rr_end, &p) < 0 || p + 20 > rr_end)
                return WIRE_ERR_FORMAT;
            uint32_t serial = ((uint32_t)wire_get16(msg + p) << 16) | wire_get16(msg + p + 2);
            if (x->rrs == 1)
                x->serial = serial;
            else if (x->rrs == 2 && qtype == WIRE_TYPE_IXFR)
                x->incremental = true;
            if (serial == x->serial && x->soas < UINT8_MAX)
                x->soas++;
        } else if (x->rrs == 1) {
            return WIRE_ERR_FORMAT;
        }
        pos = rr_end;
        /* AXFR and IXFR in AXFR form end with the second copy of the new
         * SOA; differences end with the third (the last one's new SOA,
         * then the closing one). */
        if (x->soas >= (x->incremental ? 3 : 2))
            return 1;
    }
    x->messages++;
    /* IXFR answered with the SOA alone: the client is up to date. */
    if (qtype == WIRE_TYPE_IXFR && x->messages == 1 && x->rrs == 1)
        return 1;
    return x->rrs == 0 ? WIRE_ERR_FORMAT : 0;
}

int wire_find_opt(const uint8_t *msg, size_t len, struct wire_msg *m)
{
    if (m->end > m->question_end)
        return WIRE_OK; /* already walked */
    return walk_records(msg, len, m);
}

bool wire_same_question(const uint8_t *a, const struct wire_msg *ma,
                        const uint8_t *b, const struct wire_msg *mb)
{
    return ma->qtype == mb->qtype && ma->qclass == mb->qclass && ma->qname_len == mb->qname_len &&
           wire_name_equal(a + ma->qname_off, b + mb->qname_off, ma->qname_len);
}

void wire_restore_case(uint8_t *answer, const struct wire_msg *ma,
                       const uint8_t *query, const struct wire_msg *mq)
{
    if (ma->qname_len == mq->qname_len)
        memcpy(answer + ma->qname_off, query + mq->qname_off, mq->qname_len);
}

void wire_set_edns_size(uint8_t *msg, const struct wire_msg *m, uint16_t size)
{
    if (m->has_opt)
        wire_put16(msg + m->opt_off + 3, size); /* root name (1) + TYPE (2), then CLASS */
}

uint16_t wire_client_udp_size(const struct wire_msg *q)
{
    if (!q->has_opt || q->edns_udp_size < 512)
        return 512;
    return q->edns_udp_size;
}

size_t wire_truncate(uint8_t *answer, size_t len, const struct wire_msg *ma, size_t max)
{
    if (len <= max)
        return len;
    struct wire_msg m = *ma;
    bool opt = wire_find_opt(answer, len, &m) == WIRE_OK && m.has_opt;
    size_t out = m.question_end;
    if (opt && out + m.opt_len <= max) {
        memmove(answer + out, answer + m.opt_off, m.opt_len);
        out += m.opt_len;
    } else {
        opt = false;
    }
    uint16_t flags = wire_get16(answer + 2) | WIRE_TC;
    wire_put16(answer + 2, flags);
    wire_put16(answer + 6, 0);
    wire_put16(answer + 8, 0);
    wire_put16(answer + 10, opt ? 1 : 0);
    return out;
}

/* The OPT of a message that did not parse as a query: a lenient walk of
 * every section by its count. Returns the OPT's offset, or 0 if there is
 * none or the walk fails. */
static size_t find_opt_lenient(const uint8_t *msg, size_t len)
{
    if (len < WIRE_HDR_LEN)
        return 0;
    unsigned qd = wire_get16(msg + 4), rr = (unsigned)wire_get16(msg + 6) + wire_get16(msg + 8);
    unsigned ar = wire_get16(msg + 10);
    size_t pos = WIRE_HDR_LEN;
    for (unsigned i = 0; i < qd; i++)
        if (skip_name(msg, len, &pos) < 0 || (pos += 4) > len)
            return 0;
    for (unsigned i = 0; i < rr + ar; i++) {
        size_t start = pos;
        if (skip_name(msg, len, &pos) < 0 || pos + 10 > len)
            return 0;
        if (i >= rr && pos - start == 1 && wire_get16(msg + pos) == WIRE_TYPE_OPT && pos + 10 <= len)
            return start;
        pos += 10u + wire_get16(msg + pos + 8);
        if (pos > len)
            return 0;
    }
    return 0;
}

size_t wire_make_error(uint8_t *out, size_t cap, const uint8_t *query, size_t qlen,
                       const struct wire_msg *q, uint16_t udp_size, enum wire_rcode rcode)
{
    if (cap < WIRE_HDR_LEN)
        return 0;
    uint16_t qflags = qlen >= 4 ? wire_get16(query + 2) : 0;
    /* NOTIMP says nothing about recursion or checking: RD, RA and CD stay clear,
     * as BIND and NSD answer it. */
    uint16_t flags = rcode == WIRE_NOTIMP ? (uint16_t)(WIRE_QR | (qflags & 0x7800u) | rcode)
                                          : (uint16_t)(WIRE_QR | (qflags & (0x7800u | WIRE_RD | WIRE_CD)) | WIRE_RA | rcode);
    memset(out, 0, WIRE_HDR_LEN);
    if (qlen >= 2)
        memcpy(out, query, 2);
    wire_put16(out + 2, flags);
    size_t pos = WIRE_HDR_LEN;
    bool opt = false;
    uint32_t ttl = 0;
    if (q) {
        size_t qlen_q = q->question_end - WIRE_HDR_LEN;
        if (pos + qlen_q > cap)
            return 0;
        memcpy(out + pos, query + WIRE_HDR_LEN, qlen_q);
        pos += qlen_q;
        wire_put16(out + 4, 1);
        opt = q->has_opt;
        ttl = q->edns_ttl;
    } else {
        /* RFC 6891 7: a FORMERR to a query with an OPT carries one too. */
        size_t o = find_opt_lenient(query, qlen);
        if (o) {
            opt = true;
            ttl = ((uint32_t)wire_get16(query + o + 5) << 16) | wire_get16(query + o + 7);
        }
    }
    if (opt) {
        if (pos + 11 > cap)
            return 0;
        uint8_t *o = out + pos;
        o[0] = 0;                            /* root owner */
        wire_put16(o + 1, WIRE_TYPE_OPT);
        wire_put16(o + 3, udp_size);
        wire_put16(o + 5, 0);                /* extended rcode, version 0 */
        wire_put16(o + 7, (uint16_t)(ttl & 0x8000u)); /* DO echoed */
        wire_put16(o + 9, 0);
        pos += 11;
        wire_put16(out + 10, 1);
    }
    return pos;
}

/* Copies the options of OPT rdata `rd` (len `rdlen`) into `out`, leaving
 * out Padding and keepalive. Reports keepalive's TIMEOUT if wanted.
 * Returns the bytes written, or -1 if the options are malformed. */
static long copy_opt_options(uint8_t *out, const uint8_t *rd, size_t rdlen, int *keepalive)
{
    size_t i = 0, o = 0;
    while (i < rdlen) {
        if (i + 4 > rdlen)
            return -1;
        uint16_t code = wire_get16(rd + i), olen = wire_get16(rd + i + 2);
        if (i + 4 + olen > rdlen)
            return -1;
        if (code == WIRE_EDNS_KEEPALIVE && keepalive && olen == 2)
            *keepalive = wire_get16(rd + i + 4);
        if (code != WIRE_EDNS_PADDING && code != WIRE_EDNS_KEEPALIVE) {
            memmove(out + o, rd + i, 4u + olen);
            o += 4u + olen;
        }
        i += 4u + olen;
    }
    return (long)o;
}

size_t wire_pad_query(uint8_t *out, size_t cap, const uint8_t *msg, size_t len,
                      const struct wire_msg *m, uint16_t udp_size, size_t block)
{
    /* Layout: everything but the OPT RR, then the OPT RR last, rebuilt. */
    size_t before = m->has_opt ? m->opt_off : m->end;
    size_t after_off = m->has_opt ? m->opt_off + m->opt_len : m->end;
    size_t after = m->end - after_off;
    (void)len;
    if (before + after + 11 + 4 + 4 > cap)
        return 0;
    memcpy(out, msg, before);
    memcpy(out + before, msg + after_off, after);
    size_t o = before + after;
    uint8_t *opt = out + o;
    opt[0] = 0;
    wire_put16(opt + 1, WIRE_TYPE_OPT);
    if (m->has_opt) {
        memcpy(opt + 3, msg + m->opt_off + 3, 6); /* client's UDP size, ext. rcode, version, flags */
        wire_put16(opt + 3, udp_size);
    } else {
        wire_put16(opt + 3, udp_size);
        memset(opt + 5, 0, 4);
    }
    size_t rd = o + 11, r = 0;
    if (m->has_opt) {
        const uint8_t *crd = msg + m->opt_off + 11;
        size_t crdlen = m->opt_len - 11;
        if (rd + crdlen > cap)
            return 0;
        long n = copy_opt_options(out + rd, crd, crdlen, NULL);
        if (n < 0)
            return 0;
        r = (size_t)n;
    }
    /* edns-tcp-keepalive, empty in a query (RFC 7828 3.1). */
    if (rd + r + 4 > cap)
        return 0;
    wire_put16(out + rd + r, WIRE_EDNS_KEEPALIVE);
    wire_put16(out + rd + r + 2, 0);
    r += 4;
    size_t unpadded = rd + r + 4;
    size_t pad = block ? (block - unpadded % block) % block : 0;
    if (unpadded + pad > cap || r + 4 + pad > 0xffff)
        return 0;
    wire_put16(out + rd + r, WIRE_EDNS_PADDING);
    wire_put16(out + rd + r + 2, (uint16_t)pad);
    memset(out + rd + r + 4, 0, pad);
    r += 4 + pad;
    wire_put16(opt + 9, (uint16_t)r);
    if (!m->has_opt)
        wire_put16(out + 10, (uint16_t)(m->arcount + 1));
    return rd + r;
}

size_t wire_strip_hop_options(uint8_t *out, size_t cap, const uint8_t *msg, const struct wire_msg *m)
{
    if (m->end > cap)
        return 0;
    if (!m->has_opt || !m->hop_options) {
        memcpy(out, msg, m->end);
        return m->end;
    }
    size_t rd = m->opt_off + 11, opt_end = m->opt_off + m->opt_len;
    memcpy(out, msg, rd);
    long n = copy_opt_options(out + rd, msg + rd, m->opt_len - 11, NULL);
    if (n < 0)
        return 0;
    wire_put16(out + m->opt_off + 9, (uint16_t)n);
    size_t o = rd + (size_t)n;
    memcpy(out + o, msg + opt_end, m->end - opt_end);
    return o + (m->end - opt_end);
}

size_t wire_strip_dot_answer(uint8_t *msg, size_t len, struct wire_msg *m, bool keep_opt, int *keepalive)
{
    *keepalive = -1;
    if (wire_find_opt(msg, len, m) != WIRE_OK)
        return 0;
    if (!m->has_opt)
        return len;
    size_t opt_end = m->opt_off + m->opt_len;
    if (!keep_opt) {
        /* Read keepalive before the OPT RR goes away. */
        uint8_t scratch[WIRE_MAX_MSG];
        copy_opt_options(scratch, msg + m->opt_off + 11, m->opt_len - 11, keepalive);
        memmove(msg + m->opt_off, msg + opt_end, len - opt_end);
        wire_put16(msg + 10, (uint16_t)(wire_get16(msg + 10) - 1));
        m->end -= m->opt_len;
        m->has_opt = false;
        return len - m->opt_len;
    }
    uint8_t *rd = msg + m->opt_off + 11;
    long n = copy_opt_options(rd, rd, m->opt_len - 11, keepalive);
    if (n < 0)
        return 0;
    size_t removed = m->opt_len - 11 - (size_t)n;
    if (removed == 0)
        return len;
    wire_put16(msg + m->opt_off + 9, (uint16_t)n);
    memmove(msg + opt_end - removed, msg + opt_end, len - opt_end);
    m->opt_len -= removed;
    m->end -= removed;
    return len - removed;
}

const char *wire_name_str(const uint8_t *name, size_t len, char *buf, size_t bufsz)
{
    size_t o = 0, i = 0;
    if (bufsz == 0)
        return buf;
    while (i < len && name[i] != 0) {
        uint8_t l = name[i++];
        for (uint8_t k = 0; k < l && i < len; k++, i++) {
            uint8_t c = name[i];
            char tmp[5];
            int n;
            if (c == '.' || c == '\\')
                n = snprintf(tmp, sizeof tmp, "\\%c", c);
            else if (c <= 32 || c >= 127)
                n = snprintf(tmp, sizeof tmp, "\\%03u", c);
            else
                n = snprintf(tmp, sizeof tmp, "%c", c);
            if (o + (size_t)n + 1 >= bufsz)
                goto done;
            memcpy(buf + o, tmp, (size_t)n);
            o += (size_t)n;
        }
        if (o + 2 >= bufsz)
            goto done;
        buf[o++] = '.';
    }
    if (o == 0 && bufsz > 1)
        buf[o++] = '.';
done:
    buf[o] = 0;
    return buf;
}

int wire_name_from_str(const char *s, uint8_t out[WIRE_MAX_NAME])
{
    size_t o = 0;
    /* No escapes: names here come from configuration, where '\\' has no use. */
    if (*s == 0 || strchr(s, '\\'))
        return -1;
    if (strcmp(s, ".") == 0) {
        out[0] = 0;
        return 1;
    }
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        if (l == 0 || l > 63 || o + 1 + l + 1 > WIRE_MAX_NAME)
            return -1;
        out[o++] = (uint8_t)l;
        memcpy(out + o, s, l);
        o += l;
        s += l;
        if (*s == '.')
            s++;
    }
    out[o++] = 0;
    return (int)o;
}
