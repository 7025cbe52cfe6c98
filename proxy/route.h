/* proxy/route.h: zones, the servers they forward to, and the choice of a
 * server for one try.
 *
 * A route table owns its zones and its servers. A server is the identity
 * and policy that one configuration gives an address: how to reach it
 * (TLS policy and profile) and what it is (recursive or authoritative).
 * What the data path learns about the address (RTT, failures) lives in the
 * health table, in an entry the route table pins for as long as it lives,
 * so that it carries over to the next table after a reload. A table never
 * changes once built; a query keeps the one it started with (through its
 * view, proxy/view.h). */
#ifndef DOTWARD_PROXY_ROUTE_H
#define DOTWARD_PROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/net.h"
#include "lib/wire.h"

struct health;
struct health_table;
struct rng;
struct tls_profile;

/* RFC 9539 opportunistic (probe, any certificate, fall back to Do53),
 * RFC 8310 strict (DoT only, verified, no fallback), or Do53 only. */
enum server_tls { SERVER_TLS_OPPORTUNISTIC, SERVER_TLS_STRICT, SERVER_TLS_OFF };
const char *server_tls_str(enum server_tls t);

struct route_server {
    struct net_addr addr;
    char name[NET_ADDRSTRLEN];    /* "192.0.2.1:53" for logs */
    enum server_tls tls;
    struct tls_profile *profile;  /* a reference; NULL for SERVER_TLS_OFF */
    struct health *health;        /* pinned by the table */
    bool rd;                      /* recursive (probe with RD=1) or authoritative */
    bool configured;              /* named in the config (not from resolv.conf) */
    /* A server made on demand (transparent mode, proxy/targets.h) is held
     * by each query and transfer that uses it and handed back to its owner
     * when the last lets go; a route table's own servers live with the
     * table (released is NULL, holds unused). */
    unsigned holds;
    void (*released)(void *arg, struct route_server *s);
    void *released_arg;
};

static inline void route_server_hold(struct route_server *s)
{
    if (s->released)
        s->holds++;
}

static inline void route_server_release(struct route_server *s)
{
    if (s->released && --s->holds == 0)
        s->released(s->released_arg, s);
}

#define ROUTE_MAX_SERVERS 32

struct route_zone {
    uint8_t name[WIRE_MAX_NAME];  /* wire form, lower case */
    size_t name_len;
    unsigned labels;
    char text[WIRE_MAX_NAME * 4 + 1];
    struct route_server **servers;  /* borrowed from the table */
    size_t n_servers;
};

struct route_table {
    struct health_table *health;    /* borrowed: must outlive the table */
    struct route_zone *zones;
    size_t n_zones;
    struct route_server **servers;  /* owned, each address once */
    size_t n_servers;
};

struct route_table *route_table_new(struct health_table *health);
/* Unpins the health entries, drops the profiles. NULL is fine. */
void route_table_free(struct route_table *t);
/* The server of this address in `t`, or NULL. */
struct route_server *route_table_find(const struct route_table *t, const struct net_addr *a);
/* A new server for `a` (the table must not have one), with `profile` (a
 * reference is taken; NULL for tls off). NULL on no memory. */
struct route_server *route_table_add_server(struct route_table *t, const struct net_addr *a,
                                            enum server_tls tls, struct tls_profile *profile, bool rd,
                                            bool configured);
/* Adds server `s` (of this table) to zone `zone` ("." or "example.org."),
 * creating the zone; duplicates are ignored. Returns 0 or -1 (bad name, full). */
int route_table_add(struct route_table *t, const char *zone, struct route_server *s);
/* Longest-suffix match of a wire-form name; NULL if no zone (not even ".") matches. */
const struct route_zone *route_lookup(const struct route_table *t, const uint8_t *qname, size_t qlen);

/* Picks the index of a server of `z` for the next try: never one in `tried`
 * (a bit per index) while untried ones remain; among those, servers not backed
 * off first, then the lowest smoothed RTT, with occasional exploration of the
 * others. Returns -1 when z has no servers. */
int route_select(const struct route_zone *z, uint32_t tried, double now, struct rng *rng);

/* "forwarding . to 192.0.2.1:53, [2001:db8::1]:53; example.org. to ..." */
void route_table_describe(const struct route_table *t, char *buf, size_t bufsz);

#endif
