/* proxy/upstream.h: upstream servers, the zone routes that group them, and the
 * choice of a server for one try.
 *
 * A route table owns its zones; zones hold references to upstreams, which are
 * shared between the old and the new table across a reload (so RTT history
 * and connections survive) and freed with their last reference. A query
 * holds a reference to the table it started with. */
#ifndef DOTWARD_UPSTREAM_H
#define DOTWARD_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/net.h"
#include "lib/wire.h"

struct rng;
struct stream;
struct tls_ctx;
struct tls_session;

/* RFC 9539 opportunistic (probe, any certificate, fall back to Do53),
 * RFC 8310 strict (DoT only, verified, no fallback), or Do53 only. */
enum upstream_tls { UPSTREAM_TLS_OPPORTUNISTIC, UPSTREAM_TLS_STRICT, UPSTREAM_TLS_OFF };
const char *upstream_tls_str(enum upstream_tls t);

#define UPSTREAM_DOT_CONNS 2   /* a second DoT connection opens only under load */

struct upstream {
    unsigned refs;
    struct net_addr addr;
    char name[NET_ADDRSTRLEN];  /* "192.0.2.1:53" for logs */
    /* Smoothed RTT in seconds, as in RFC 6298; srtt < 0 means never measured. */
    double srtt, rttvar;
    unsigned fails;             /* consecutive failed tries */
    double backoff_until;       /* ev time before which it is only used as last resort */
    struct stream *tcp;         /* Do53/TCP connection, owned; NULL when none */
    struct stream *dot[UPSTREAM_DOT_CONNS]; /* DoT connections, owned, created on demand */
    enum upstream_tls tls_policy;
    char *auth_name;            /* strict: name to verify and send as SNI; owned */
    char *ca_file;              /* strict: CA bundle, NULL = system store; owned */
    struct tls_ctx *tls;        /* strict: verifying context, owned */
    struct tls_session *session;/* strict: session to resume, owned (opportunistic
                                   sessions live in the probe table) */
    bool rd;                    /* recursive (probe with RD=1) or authoritative */
    bool configured;            /* named in the config (not from resolv.conf) */
    uint64_t sent, answers, timeouts;
};

struct upstream *upstream_new(const struct net_addr *addr);   /* refs = 1 */
struct upstream *upstream_ref(struct upstream *u);
void upstream_unref(struct upstream *u);                      /* frees at 0, closing its streams */
/* Sets the TLS policy. Strict: `auth_name` and `ca_file` are copied, and a
 * verifying context is made unless the upstream already has one for the
 * same name and CA file (so a reload keeps its connections). Returns 0, or
 * -1 after logging (the policy is then unchanged). */
int upstream_set_tls(struct upstream *u, enum upstream_tls policy, const char *auth_name, const char *ca_file);

/* How long one try to `u` may take before the next server is tried. */
double upstream_rto(const struct upstream *u, double max);
void upstream_rtt_sample(struct upstream *u, double rtt);
/* A try failed (timeout or error): exponential backoff, capped. */
void upstream_failed(struct upstream *u, double now);

#define ROUTE_MAX_SERVERS 32

struct route_zone {
    uint8_t name[WIRE_MAX_NAME];  /* wire form, lower case */
    size_t name_len;
    unsigned labels;
    char text[WIRE_MAX_NAME * 4 + 1];
    struct upstream **servers;    /* references held */
    size_t n_servers;
};

struct route_table {
    unsigned refs;
    struct route_zone *zones;
    size_t n_zones;
};

struct route_table *route_table_new(void);        /* refs = 1 */
/* Adds `u` (a reference is taken) to zone `zone` ("." or "example.org."),
 * creating the zone; duplicates are ignored. Returns 0 or -1 (bad name, full). */
int route_table_add(struct route_table *t, const char *zone, struct upstream *u);
/* Finds an upstream with this address in `t` (borrowed), for reuse on reload. */
struct upstream *route_table_find(const struct route_table *t, const struct net_addr *a);
struct route_table *route_table_ref(struct route_table *t);
void route_table_unref(struct route_table *t);
/* Longest-suffix match of a wire-form name; NULL if no zone (not even ".") matches. */
const struct route_zone *route_lookup(const struct route_table *t, const uint8_t *qname, size_t qlen);

/* Picks the index of a server of `z` for the next try: never one in `tried`
 * (a bit per index) while untried ones remain; among those, servers not backed
 * off first, then the lowest smoothed RTT, with occasional exploration of the
 * others. Returns -1 when z has no servers. */
int route_select(const struct route_zone *z, uint32_t tried, double now, struct rng *rng);

#endif
