/* proxy/stats.h: the proxy's counters. Each counter is bumped by the module
 * that sees the event; this header only names them, once. */
#ifndef DOTWARD_STATS_H
#define DOTWARD_STATS_H

#include <stdint.h>
#include <stdio.h>

#define STATS_COUNTERS(X) \
    X(queries_udp)          /* client queries received over UDP */ \
    X(queries_tcp)          /* client queries received over TCP */ \
    X(answered)             /* answers relayed from an upstream */ \
    X(answered_dot)         /* ... that came over DoT */ \
    X(good_queries)         /* queries whose first server was known to speak DoT (Good or strict) */ \
    X(good_queries_dot)     /* ... answered over DoT: the privacy actually had */ \
    X(servfail)             /* SERVFAIL made by dotward (deadline, no upstream) */ \
    X(refused_acl)          /* REFUSED: source not in allow */ \
    X(dropped_acl)          /* dropped: source not in allow, refused-action = drop */ \
    X(malformed_dropped)    /* client packets dropped: short, QR=1, oversized */ \
    X(formerr_sent)         /* FORMERR answers to malformed queries */ \
    X(notimp_sent)          /* NOTIMP answers to other opcodes */ \
    X(overload)             /* SERVFAIL because max-queries were in flight */ \
    X(upstream_udp)         /* queries sent upstream over UDP */ \
    X(upstream_tcp)         /* queries sent upstream over TCP */ \
    X(upstream_dot)         /* queries sent upstream over DoT */ \
    X(dot_answers)          /* answers that came back over DoT */ \
    X(fallback_connect)     /* DoT -> Do53 re-sends: connect failed or refused */ \
    X(fallback_tls)         /* DoT -> Do53 re-sends: TLS handshake failed */ \
    X(fallback_timeout)     /* DoT -> Do53 re-sends: a dead path, or no DoT answer by the end of the budget's DoT part */ \
    X(fallback_closed)      /* DoT -> Do53 re-sends: server closed the connection */ \
    X(fallback_bad_answer)  /* DoT -> Do53 re-sends: garbage on the connection */ \
    X(fallback_reset)       /* DoT -> Do53 re-sends: the connection was reset or a read failed */ \
    X(fallback_conn_limit)  /* DoT -> Do53 at once: no DoT connection could be opened (a cap reached) */ \
    X(strict_failures)      /* tries to strict upstreams that failed (no fallback) */ \
    X(dot_connections)      /* DoT connections opened (handshake done) */ \
    X(dot_resumed)          /* ... of which resumed a TLS session */ \
    X(upstream_tc)          /* truncated upstream UDP answers retried over TCP */ \
    X(upstream_timeouts)    /* upstream tries that timed out */ \
    X(upstream_errors)      /* upstream tries that failed (connection refused, lost, reset) */ \
    X(local_errors)         /* upstream tries not sent for a reason of our own (descriptors, memory, connection cap) */ \
    X(spoofed_source)       /* upstream UDP answers from the wrong address or port */ \
    X(spoofed_id)           /* upstream answers with no pending query of that ID */ \
    X(spoofed_question)     /* upstream answers whose question does not match */ \
    X(upstream_malformed)   /* upstream answers that do not parse */ \
    X(truncated)            /* answers truncated (TC=1) to fit a UDP client */ \
    X(tcp_clients_rejected) /* TCP clients closed at once: tcp-clients or the per-source limit reached */ \
    X(tcp_clients_evicted)  /* TCP clients closed to make room: idle or slow when the set was full */ \
    X(tcp_clients_timed_out) /* TCP clients closed: a message or a write took longer than tcp-io-timeout */ \
    X(upstream_dead_path)   /* upstream TCP/DoT connections closed: bytes unacknowledged for several RTTs, or nothing back for two query budgets */ \
    X(dot_slow)             /* DoT tries that outlived their RTO and went on waiting on their live connection */ \
    X(xfr_started)          /* zone transfers (AXFR, IXFR over TCP) relayed from a server */ \
    X(xfr_completed)        /* ... that ended with the transfer's last SOA */ \
    X(xfr_broken)           /* ... that broke off (SERVFAIL, or the client's connection closed) */ \
    X(upstream_conn_limit)  /* upstream TCP/DoT connections not opened: max-upstream-connections reached */ \
    X(send_errors)          /* answers that could not be sent to a client */

/* Upstream answer latency, by the transport that carried the answer. */
enum stats_transport { STATS_UDP, STATS_TCP, STATS_DOT, STATS_TRANSPORTS };
#define STATS_LATENCY_BUCKETS 13
/* Upper bounds in seconds of the histogram buckets (cumulative, as
 * Prometheus counts them); a last, implicit bucket is +Inf. */
extern const double stats_latency_bounds[STATS_LATENCY_BUCKETS];
const char *stats_transport_str(enum stats_transport t);

struct stats {
#define STATS_FIELD(name) uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    uint64_t rcodes[16];                      /* answers relayed to clients, by RCODE */
    struct stats_latency {
        uint64_t buckets[STATS_LATENCY_BUCKETS + 1]; /* not cumulative; last is +Inf */
        uint64_t count;
        double sum;                           /* seconds */
    } latency[STATS_TRANSPORTS];
};

void stats_latency_add(struct stats *s, enum stats_transport t, double seconds);

/* "name=value name=value ..." on one line. */
void stats_format(const struct stats *s, char *buf, size_t bufsz);
/* "privacy: 99.5% of queries to servers known to speak DoT went over DoT
 * (2000 of 2010), 80.0% of all answered (...)" on one line. */
void stats_format_privacy(const struct stats *s, char *buf, size_t bufsz);

#endif
