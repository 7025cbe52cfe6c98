/* probe/table.h: the per-IP DoT table (RFC 9539 §4.5). Owns one entry per
 * upstream IP (IPv4 and IPv6 apart, port 853 implied), the bounded FIFO of
 * probes waiting for a slot, each entry's resumption session, and a pool of
 * the zone and reason strings the entries share.
 *
 * Only this module writes a status: callers report typed outcomes and the
 * table decides (all status writes go through one function in table.c).
 * Status changes are logged ("dot-probe: IP FROM -> TO (...)"), at most
 * PROBE_LOG_BURST of them per 10 s for the whole table, then a count of
 * the ones left out.
 * Pure logic: time is passed in (`now`, seconds, ev_now() in the daemon), so
 * tests run on a fake clock. Probes themselves run elsewhere (prober.h),
 * started and cancelled through a probe_sched callback pair.
 *
 * Entry pointers stay valid until the entry is evicted (by a later visit
 * that creates an entry) or forgotten; code that keeps an IP across loop
 * iterations reports by IP, not by pointer. Strings an accessor returns
 * (zone, reason) are the table's: valid while the entry lives and the
 * string is not replaced (the next failure replaces the reason).
 *
 * Size: an entry is 136 bytes, all in about 141 bytes per IP at 100,000
 * IPs (test/unit/test_memory.c measures it): the IP is kept as 16 bytes
 * (IPv4 v4-mapped) plus an IPv6 scope, times as 32-bit whole seconds
 * relative to a table epoch, counters as 32-bit (saturating; the table
 * totals are 64-bit), zone and reason as ids into the string pool, lists
 * as 32-bit slot numbers. Entries live in slabs, so pointers never move.
 *
 * Time precision: every time the table keeps is rounded down to the whole
 * second (the dump prints whole seconds; the state file gets ".000"); a
 * Good or Bad entry can therefore run out up to one second early. Times
 * more than 68 years from the table's first clock reading are clamped. */
#ifndef DOTWARD_PROBE_TABLE_H
#define DOTWARD_PROBE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/log.h"
#include "lib/net.h"

enum probe_status { PROBE_UNKNOWN, PROBE_BUSY, PROBE_GOOD, PROBE_BAD, PROBE_STATUS_MAX };

/* What a probe or a DoT exchange on the data path ended with. */
enum probe_outcome {
    PROBE_OK,              /* TLS up and a matching DNS answer came back */
    PROBE_CONNECT_REFUSED, /* RST / ICMP unreachable on connect */
    PROBE_CONNECT_TIMEOUT, /* no TCP connection within the deadline */
    PROBE_TLS_FAILED,      /* handshake failed, or not done within the deadline */
    PROBE_QUERY_TIMEOUT,   /* TLS up, no answer within the deadline */
    PROBE_BAD_ANSWER,      /* garbage, mismatched ID/question, or closed before the answer */
    PROBE_CLOSED_CLEAN,    /* data path: the server closed an idle connection */
    PROBE_LOCAL_ERROR,     /* our side failed (no fd, no memory, cancelled): not the server's fault */
    PROBE_RESET,           /* data path: an established connection was reset or had a read error */
    PROBE_OUTCOME_MAX
};

const char *probe_status_str(enum probe_status s);    /* "unknown", "busy", "good", "bad" */
const char *probe_outcome_str(enum probe_outcome o);  /* "ok", "connect-refused", ... */

struct probe_policy {
    unsigned probe_after_visits; /* visits within `damping` before the first probe (2; over 65535 acts as 65535) */
    bool probe_on_start;         /* read by the caller: probe configured upstreams at start (true) */
    unsigned max_busy_probes;    /* probes running at once (16) */
    unsigned max_queued_probes;  /* FIFO of probes waiting for a slot (64); full = retry on a later visit */
    double probe_timeout;        /* whole probe, seconds (4) */
    double persistence;          /* Good lasts this long after the last DoT answer (3 d) */
    double damping;              /* Bad is not re-probed before this (1 d) */
    unsigned dot_fail_threshold; /* consecutive DoT query failures on a Good IP -> Bad (3; over 65535 acts as 65535) */
    unsigned max_entries;        /* least recently visited non-Busy entry is evicted (4096) */
};
void probe_policy_defaults(struct probe_policy *p);

struct probe_counters {
    uint64_t probes;                          /* probes started */
    uint64_t successes;                       /* probes that ended OK */
    uint64_t failures[PROBE_OUTCOME_MAX];     /* probe and DoT failures, by outcome */
    uint64_t dot_queries;                     /* queries answered or failed over DoT */
    uint64_t fallbacks;                       /* queries re-sent over Do53 after a DoT failure */
};

struct tls_session;
struct probe_table;

/* The times of an entry (RFC 9539 §4.5), read with probe_entry_time(). */
enum probe_time {
    PROBE_T_FIRST_SEEN,    /* first visit (or as restored) */
    PROBE_T_INITIATED,     /* last probe start */
    PROBE_T_COMPLETED,     /* last probe end, or last failure that made it Bad */
    PROBE_T_LAST_RESPONSE, /* last well-formed DoT answer */
    PROBE_T_LAST_ACTIVITY, /* last DoT traffic of any kind */
    PROBE_T_STATUS_SINCE,  /* last status change */
    PROBE_T_MAX
};

/* Status changes logged per 10 s, for the whole table (see the top). */
#define PROBE_LOG_BURST 200

/* Longest reason text kept (bytes, without the NUL); longer ones are cut. */
#define PROBE_REASON_MAX 512

/* One entry, owned by the table. The fields above "Private" may be read
 * directly (never written) outside table.c; the rest goes through the
 * accessors below: its layout is the table's business. */
struct probe_entry {
    struct tls_session *session;        /* owned by the table (readers borrow it); NULL if none */
    uint32_t visits;                    /* total, for the dump's count column (saturates) */
    uint16_t dot_consecutive_failures;  /* on a Good entry, towards dot_fail_threshold */
    uint8_t status;                     /* enum probe_status */
    uint8_t last_outcome;               /* enum probe_outcome */
    bool verified : 1;                  /* would the last probe's certificate have verified */
    bool authoritative : 1;             /* probe without RD (probe_table_set_authoritative) */

    /* Private to table.c. */
    unsigned priv_sched : 2;
    uint16_t priv_window_visits;        /* towards probe_after_visits (saturates) */
    uint8_t priv_ip[16];                /* IPv6, or IPv4 as ::ffff:a.b.c.d */
    uint32_t priv_scope;                /* IPv6 scope id (link-local servers) */
    uint32_t priv_zone, priv_reason;    /* string pool ids; reason 0 = none */
    int32_t priv_time[PROBE_T_MAX + 1]; /* + the visit window's start; seconds from the table's epoch */
    uint32_t priv_count[4 + PROBE_OUTCOME_MAX - 1]; /* probes, successes, dot_queries, fallbacks, failures */
    uint32_t priv_hnext, priv_lru_prev, priv_lru_next; /* slot numbers */
};

/* The IP as a socket address with port 853 (IPv4, or IPv6 with its scope). */
void probe_entry_addr(const struct probe_entry *e, struct net_addr *out);
/* The zone the IP was first seen for, presentation form ("." at least). Borrowed. */
const char *probe_entry_zone(const struct probe_table *t, const struct probe_entry *e);
/* "OUTCOME[: text]" of the last failure, "" if none. Borrowed. */
const char *probe_entry_reason(const struct probe_table *t, const struct probe_entry *e);
/* Seconds since the Unix epoch (whole seconds), 0 = never. */
double probe_entry_time(const struct probe_table *t, const struct probe_entry *e, enum probe_time which);
/* The entry's own counters, widened (failures[PROBE_OK] is 0). */
void probe_entry_counters(const struct probe_entry *e, struct probe_counters *out);

/* The scheduler (prober.c) starts and cancels probes. start() may call
 * probe_table_probe_done() for the same entry before it returns. cancel()
 * is called for a running probe whose entry is being forgotten, and must
 * drop the probe without reporting. */
struct probe_sched {
    void (*start)(void *arg, struct probe_entry *e);
    void (*cancel)(void *arg, struct probe_entry *e);
};

/* `seed` keys the hash (use rng_u32: upstream IPs can be chosen by others
 * in transparent mode). The policy is copied. Returns NULL on no memory. */
struct probe_table *probe_table_new(const struct probe_policy *pol, uint32_t seed);
/* Frees every entry and session. Call prober_free first (it stops probes). */
void probe_table_free(struct probe_table *t);
const struct probe_policy *probe_table_policy(const struct probe_table *t);
/* A reload: the new policy applies to every later decision (expiry, probes
 * started from now on); entries and running probes are kept. */
void probe_table_set_policy(struct probe_table *t, const struct probe_policy *pol);
/* Borrowed `ops`/`arg`; NULL detaches. Attaching starts queued probes. */
void probe_table_set_sched(struct probe_table *t, const struct probe_sched *ops, void *arg, double now);

/* Find-or-create the entry of `ip` (port ignored), count a visit, and start
 * (or queue) a probe if one is due: Unknown after probe_after_visits visits,
 * Bad past damping, Good past persistence (it becomes Unknown first).
 * `zone` (may be NULL = ".") is recorded when the entry is created.
 * Returns the entry, or NULL if no memory or every entry is Busy. */
struct probe_entry *probe_table_visit(struct probe_table *t, const struct net_addr *ip,
                                      const char *zone, double now);
/* Probe now if allowed (Unknown, or Bad past damping), ignoring the visit
 * count: for probe-on-start. `force` also re-probes Good and damped Bad
 * entries (admin "recheck"; a Good entry is Busy meanwhile, so its queries
 * go over Do53 until the probe ends). Returns 0 if started or queued, -1 if not. */
int probe_table_request(struct probe_table *t, const struct net_addr *ip, const char *zone,
                        double now, bool force);
struct probe_entry *probe_table_find(struct probe_table *t, const struct net_addr *ip);
/* Marks `e` as an authoritative server: its probe query carries RD=0. */
void probe_table_set_authoritative(struct probe_entry *e, bool authoritative);

/* Should a query to this entry go over DoT? True only for Good within persistence. */
bool probe_table_use_dot(const struct probe_table *t, const struct probe_entry *e, double now);

/* A probe ended (called by the scheduler, once per start()). `reason` may be NULL. */
void probe_table_probe_done(struct probe_table *t, struct probe_entry *e, enum probe_outcome o,
                            const char *reason, bool verified, double now);
/* Takes `s` (may be NULL): the session to resume next time, replacing the old one. */
void probe_table_set_session(struct probe_entry *e, struct tls_session *s);

/* A DoT exchange on the data path ended. On a Good entry: OK refreshes it,
 * QUERY_TIMEOUT/BAD_ANSWER/RESET count towards dot_fail_threshold, connect and
 * TLS failures make it Bad at once, CLOSED_CLEAN changes nothing. On other
 * statuses only the counters move. Unknown IPs are ignored. */
void probe_table_dot_result(struct probe_table *t, const struct net_addr *ip, enum probe_outcome o,
                            const char *reason, double now);
/* `n` queries were re-sent over Do53 because their DoT connection failed.
 * The only place fallbacks are counted: probe_table_dot_result counts none. */
void probe_table_count_fallbacks(struct probe_table *t, const struct net_addr *ip, unsigned n);

/* Drop one entry (running probe cancelled, queued probe dequeued). Returns 0, or -1 if unknown. */
int probe_table_forget(struct probe_table *t, const struct net_addr *ip);
/* Drops every entry and gives their memory (slabs, strings) back. */
void probe_table_forget_all(struct probe_table *t);

/* Iteration, most recently visited first. The table must not change meanwhile. */
const struct probe_entry *probe_table_first(const struct probe_table *t);
const struct probe_entry *probe_table_next(const struct probe_table *t, const struct probe_entry *e);

size_t probe_table_size(const struct probe_table *t);
size_t probe_table_count(const struct probe_table *t, enum probe_status s);
unsigned probe_table_running(const struct probe_table *t);
unsigned probe_table_queued(const struct probe_table *t);
/* RFC 9539 says a probe should succeed where a real query would: the
 * question (and RD bit) of a query an IP has just answered over Do53 is
 * noted while the IP waits for its probe (Unknown), and the probe asks it
 * instead of SOA. A few hundred IPs' questions are kept, not one per IP:
 * only those about to be probed need one, and memory per IP stays small. */
void probe_table_note_question(struct probe_table *t, const struct net_addr *ip, const uint8_t *qname,
                               size_t qlen, uint16_t qtype, bool rd);
/* The question noted for `ip`: its wire name (at most 255 bytes) and length,
 * type and RD bit. false if none. */
bool probe_table_question(const struct probe_table *t, const struct net_addr *ip, uint8_t *qname, size_t *qlen,
                          uint16_t *qtype, bool *rd);
/* Entries evicted (least recently visited) to stay within max_entries. */
uint64_t probe_table_evictions(const struct probe_table *t);
/* Sum of every entry's counters, including entries since evicted or forgotten. */
const struct probe_counters *probe_table_totals(const struct probe_table *t);
/* Distinct zone and reason strings in the pool; their text bytes in *bytes (may be NULL). */
size_t probe_table_strings(const struct probe_table *t, size_t *bytes);

/* One entry as read back from a state file (probe/state.c). */
struct probe_saved {
    struct net_addr ip;            /* port ignored */
    const char *zone;              /* borrowed (copied into the pool); NULL = "." */
    enum probe_status status;      /* PROBE_UNKNOWN, PROBE_GOOD or PROBE_BAD */
    double status_since, first_seen, initiated, completed, last_response;
    unsigned visits;
    enum probe_outcome last_outcome;
    const char *reason;            /* borrowed (copied, cut at PROBE_REASON_MAX); NULL = none */
    bool verified, authoritative;
    struct probe_counters counters; /* kept as 32-bit: larger values saturate; failures[OK] dropped */
    struct tls_session *session;   /* taken if restored (return 0), else still the caller's */
};
/* Adds a saved entry as it was, for a restart (RFC 9539 §4.5): no visit is
 * counted, no probe starts, so a Good entry is used for DoT at once. The
 * status is written by the table's one status writer, logged at debug
 * (the loader logs one summary). Restored entries go to the least
 * recently visited end, so restoring a file saved most recent first keeps
 * its order; nothing is evicted for them. Their counters are the entry's
 * history; the totals (metrics of this process) do not include them.
 * Returns 0 if restored, 1 if the IP has an entry already (nothing
 * changes), -1 if the table is full, out of memory, or `s` is invalid. */
int probe_table_restore(struct probe_table *t, const struct probe_saved *s, double now);

/* When the entry's status next changes by itself: Good -> last_response +
 * persistence, Bad -> completed + damping; 0 for Unknown and Busy. */
double probe_entry_expiry(const struct probe_table *t, const struct probe_entry *e);

/* Writes the table as text (probe/dump.c): a superset of PowerDNS's
 * dump-dot-probe-map, tab-separated, times in UTC ISO 8601, '-' for never.
 * Returns 0, or -1 on a write error. */
int probe_table_dump(const struct probe_table *t, FILE *out);

#endif
