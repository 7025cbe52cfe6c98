/* proxy/health.h: what the data path knows of each server address (IP and
 * port): smoothed RTT (RFC 6298), consecutive failures, backoff, counters.
 *
 * A bounded table keyed by address, least recently used evicted, so that a
 * server can be known from the first query that needs it and forgotten
 * later. Servers named in the configuration are pinned by the route table
 * that lists them: a pinned entry is never evicted, and its pointer stays
 * valid while pinned. An unpinned entry's pointer is valid until the next
 * health_get() of another address (which may evict it).
 *
 * Owns its entries. Pure logic: time is passed in. */
#ifndef DOTWARD_PROXY_HEALTH_H
#define DOTWARD_PROXY_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/ipkey.h"
#include "lib/net.h"

/* Round-trip times are kept apart per path: a DoT server's answers take
 * another time than its plain ones (TLS, often a different front end),
 * and one path's delays must not set the other's timeouts. */
enum health_path { HEALTH_DO53, HEALTH_DOT, HEALTH_PATHS };

struct health_rtt {
    float srtt, rttvar;          /* seconds; srtt < 0: never measured */
};

struct health {
    /* Read-only outside health.c. */
    struct health_rtt rtt[HEALTH_PATHS];
    double backoff_until;        /* before this it is only a last resort */
    uint32_t sent, answers, timeouts;
    uint16_t fails;              /* consecutive failed tries */
    uint16_t pins;
    uint16_t port;
    uint8_t last_path;           /* enum health_path of the latest answer */
    struct ip_key ip;
    /* Private to health.c. */
    struct health *hnext, *lru_prev, *lru_next;
};

struct health_table;

/* At most `max` unpinned entries (pinned ones come on top). `seed` keys
 * the hash. Returns NULL on no memory. */
struct health_table *health_table_new(unsigned max, uint32_t seed);
void health_table_free(struct health_table *t);
void health_table_set_max(struct health_table *t, unsigned max);
size_t health_table_size(const struct health_table *t);
/* Entries evicted to keep the table within its size, since it was made. */
uint64_t health_table_evictions(const struct health_table *t);

/* The entry of `a`, created if needed (and made most recently used).
 * NULL on no memory or a non-IP address. */
struct health *health_get(struct health_table *t, const struct net_addr *a);
struct health *health_find(const struct health_table *t, const struct net_addr *a);
/* health_get, then pinned until the matching unpin. */
struct health *health_pin(struct health_table *t, const struct net_addr *a);
void health_unpin(struct health_table *t, struct health *h);

/* How long one try over `path` may wait before the next server is tried. */
double health_rto(const struct health *h, enum health_path path, double max);
void health_rtt_sample(struct health *h, enum health_path path, double rtt);
/* The smoothed RTT of the path the server last answered over; < 0: never measured. */
double health_srtt(const struct health *h);
/* A try failed (timeout or error): exponential backoff, capped. */
void health_failed(struct health *h, double now);

#endif
