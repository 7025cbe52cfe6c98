/* lib/wire.h: bounds-checked reading and writing of DNS messages.
 * Owns nothing: every function reads or writes caller buffers, and every
 * read is checked against the message length. */
#ifndef DOTWARD_WIRE_H
#define DOTWARD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_HDR_LEN 12
#define WIRE_MAX_NAME 255
#define WIRE_MAX_MSG 65535

enum wire_rcode {
    WIRE_NOERROR = 0, WIRE_FORMERR = 1, WIRE_SERVFAIL = 2, WIRE_NXDOMAIN = 3,
    WIRE_NOTIMP = 4, WIRE_REFUSED = 5,
};

/* Header flag bits, in the 16-bit flags word. */
#define WIRE_QR 0x8000u
#define WIRE_AA 0x0400u
#define WIRE_TC 0x0200u
#define WIRE_RD 0x0100u
#define WIRE_RA 0x0080u
#define WIRE_AD 0x0020u
#define WIRE_CD 0x0010u
#define WIRE_OPCODE(flags) (((flags) >> 11) & 0xfu)
enum wire_opcode {
    WIRE_OP_QUERY = 0, WIRE_OP_IQUERY = 1, WIRE_OP_STATUS = 2, WIRE_OP_NOTIFY = 4, WIRE_OP_UPDATE = 5,
    WIRE_OP_DSO = 6,
};
#define WIRE_RCODE(flags) ((flags) & 0xfu)

#define WIRE_TYPE_SOA 6
#define WIRE_TYPE_SIG 24
#define WIRE_TYPE_OPT 41
#define WIRE_TYPE_TSIG 250
#define WIRE_TYPE_IXFR 251
#define WIRE_TYPE_AXFR 252
#define WIRE_CLASS_IN 1
#define WIRE_EDNS_PADDING 12
#define WIRE_EDNS_KEEPALIVE 11

/* Result of parsing a message. Offsets point into the parsed buffer. */
struct wire_msg {
    uint16_t id, flags;
    uint16_t qdcount, ancount, nscount, arcount;
    /* The one question (qdcount == 1 required by wire_parse_query; a
     * response may have none, RFC 5936 2.2: then qname_len and qtype are 0). */
    size_t qname_off;       /* offset of the question name (never compressed in a question we accept) */
    size_t qname_len;       /* wire length of the name, including the root label */
    uint16_t qtype, qclass;
    size_t question_end;    /* offset just past QTYPE/QCLASS */
    /* EDNS(0), from the OPT RR in the additional section. */
    bool has_opt;
    size_t opt_off;         /* offset of the OPT RR (its owner name byte) */
    size_t opt_len;         /* whole OPT RR length */
    uint16_t edns_udp_size; /* the OPT CLASS field as sent */
    uint32_t edns_ttl;      /* extended rcode, version, DO bit */
    bool hop_options;       /* the OPT carries Padding or edns-tcp-keepalive (per hop) */
    /* The last record is a TSIG or SIG(0) signature: the message must
     * pass byte for byte (RFC 8945; RFC 2931). */
    bool signed_msg;
    size_t end;             /* end of the last RR walked (query: the whole message
                               minus trailing bytes, which are ignored); response:
                               question_end until wire_find_opt() walked the rest */
};

enum wire_err {
    WIRE_OK = 0,
    WIRE_ERR_SHORT = -1,      /* shorter than a header: drop */
    WIRE_ERR_QR = -2,         /* a response where a query was expected, or vice versa: drop */
    WIRE_ERR_FORMAT = -3,     /* malformed after the header: FORMERR */
    WIRE_ERR_QDCOUNT = -4,    /* not exactly one question: FORMERR (QUERY) or NOTIMP (other opcodes) */
};

/* Parses a client message of any opcode: header, the single question (the
 * zone of an UPDATE; no compression allowed there), then every RR in the
 * other sections (with compression, loops and forward pointers rejected)
 * to find the OPT RR and a closing signature. */
int wire_parse_query(const uint8_t *msg, size_t len, struct wire_msg *out);
/* Parses an upstream response: header and question only (QR=1, one
 * uncompressed question); cheap, for matching on the hot path. */
int wire_parse_response(const uint8_t *msg, size_t len, struct wire_msg *out);
/* Walks the RRs after the question of a message parsed by wire_parse_response
 * (compression allowed, loops rejected) to validate them and find the OPT RR.
 * Returns WIRE_OK or WIRE_ERR_FORMAT. */
int wire_find_opt(const uint8_t *msg, size_t len, struct wire_msg *m);

/* Where a zone transfer's answer stands, across its messages (AXFR: RFC
 * 5936; IXFR: RFC 1995 4). Zero it before the first message. */
struct wire_xfr {
    uint16_t qtype;        /* WIRE_TYPE_AXFR or WIRE_TYPE_IXFR */
    bool incremental;      /* IXFR answered with differences (SOA, SOA, ...) */
    uint8_t soas;          /* SOAs with the new serial seen */
    uint32_t serial;       /* the new serial: the first record's */
    uint32_t rrs, messages;
};
/* Takes one message of the answer to a transfer query of `qtype`. Returns
 * 1 when the transfer is complete with it, 0 when more is to come, or a
 * WIRE_ERR_* when it is not a transfer's answer (the first record is no
 * SOA, a record does not parse). An answer with an error RCODE completes. */
int wire_xfr_scan(struct wire_xfr *x, uint16_t qtype, const uint8_t *msg, size_t len, const struct wire_msg *m);
const char *wire_err_str(int err);

/* Reads a possibly-compressed name at *off into out (uncompressed wire form,
 * at most 255 bytes); advances *off past the name as it appears in the message.
 * Returns the name's wire length, or -1 if malformed. Each pointer must point
 * before the start of the label run it ends, and the labels it leads to must
 * end before it, so loops and forward pointers are rejected, the walk always
 * terminates, and a name never depends on bytes after its own position. */
int wire_read_name(const uint8_t *msg, size_t len, size_t *off, uint8_t out[WIRE_MAX_NAME]);
/* Case-insensitive comparison of two uncompressed wire names. */
bool wire_name_equal(const uint8_t *a, const uint8_t *b, size_t len);
/* "www.example.org." from a wire name into buf (escapes non-printables). Returns buf. */
const char *wire_name_str(const uint8_t *name, size_t len, char *buf, size_t bufsz);
/* "example.org" / "example.org." / "." into wire form. Returns wire length,
 * or -1 for an empty string, an empty or over-long label, a backslash (no
 * escapes are supported) or a name over 255 octets. */
int wire_name_from_str(const char *s, uint8_t out[WIRE_MAX_NAME]);

/* True if both messages carry the same question (name compared case-insensitively). */
bool wire_same_question(const uint8_t *a, const struct wire_msg *ma,
                        const uint8_t *b, const struct wire_msg *mb);

static inline uint16_t wire_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void wire_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void wire_set_id(uint8_t *msg, uint16_t id) { wire_put16(msg, id); }

/* Copies the client's question name bytes (same length, other letter case)
 * over the answer's, so the client sees its own case. */
void wire_restore_case(uint8_t *answer, const struct wire_msg *ma,
                       const uint8_t *query, const struct wire_msg *mq);

/* Sets the OPT UDP payload size in place (no-op without OPT). */
void wire_set_edns_size(uint8_t *msg, const struct wire_msg *m, uint16_t size);

/* The UDP size a client can take: 512 without EDNS, else max(512, its size). */
uint16_t wire_client_udp_size(const struct wire_msg *query);

/* Rewrites an answer longer than `max` into header + question (+ the
 * answer's OPT RR, if it has one and it fits) with TC=1, in place; an answer
 * that fits is left alone. `ma` comes from wire_parse_response.
 * Returns the new length (<= len, <= max when max >= header + question). */
size_t wire_truncate(uint8_t *answer, size_t len, const struct wire_msg *ma, size_t max);

/* DoT leg (RFC 7830, RFC 8467 4.1, RFC 7828): copies the query `msg` into
 * `out` with its OPT RR carrying an empty edns-tcp-keepalive option and a
 * Padding option that makes the whole message a multiple of `block` octets.
 * The client's own Padding and keepalive options are dropped (they are
 * hop-by-hop); an OPT RR with `udp_size` is added when the query has none.
 * `m` comes from wire_parse_query. Returns the new length, or 0 if it does
 * not fit in `cap`. */
size_t wire_pad_query(uint8_t *out, size_t cap, const uint8_t *msg, size_t len,
                      const struct wire_msg *m, uint16_t udp_size, size_t block);

/* Undoes the DoT leg on an answer, in place: drops Padding and
 * edns-tcp-keepalive options, and the whole OPT RR when the client's query
 * had none (`keep_opt` false). The keepalive TIMEOUT (100 ms units) is
 * reported in *keepalive, -1 when absent. `m` (from wire_parse_response) is
 * updated. Returns the new length, or 0 if the records are malformed. */
size_t wire_strip_dot_answer(uint8_t *msg, size_t len, struct wire_msg *m, bool keep_opt, int *keepalive);

/* A plain (Do53) leg: copies query `msg` (parsed into `m`) to `out` with
 * the Padding and edns-tcp-keepalive options dropped from its OPT, which
 * belong to the client's hop only (RFC 7830, 7828); everything else is
 * kept in place. Returns the new length, or 0 if it does not fit in `cap`
 * or the options are malformed. */
size_t wire_strip_hop_options(uint8_t *out, size_t cap, const uint8_t *msg, const struct wire_msg *m);

/* Builds a response with `rcode` for a query into out (cap bytes): the
 * client's ID and question, RD and CD copied and RA set (NOTIMP: all three
 * clear), and an OPT RR if the query had one. If the question could not be
 * parsed (q == NULL), the header (QDCOUNT 0) and an OPT if the message has
 * one where a lenient walk finds it. Returns the length, or 0 if cap is too
 * small. */
size_t wire_make_error(uint8_t *out, size_t cap, const uint8_t *query, size_t qlen,
                       const struct wire_msg *q, uint16_t udp_size, enum wire_rcode rcode);

#endif
