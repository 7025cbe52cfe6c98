/* proxy/upstream.c: upstream health, routes and server choice. */
#include "proxy/upstream.h"

#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/rng.h"
#include "proxy/stream.h"
#include "lib/tls.h"

#define RTO_MIN 0.1             /* s: below this, scheduling noise looks like loss */
#define BACKOFF_BASE 1.0        /* s, doubled per consecutive failure ... */
#define BACKOFF_MAX 60.0        /* ... up to this */
#define EXPLORE_ONE_IN 20       /* tries that go to a random other server */

struct upstream *upstream_new(const struct net_addr *addr)
{
    struct upstream *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->refs = 1;
    u->addr = *addr;
    u->srtt = -1;
    u->rd = true;
    net_addr_str(addr, u->name, sizeof u->name);
    return u;
}

struct upstream *upstream_ref(struct upstream *u)
{
    u->refs++;
    return u;
}

void upstream_unref(struct upstream *u)
{
    if (!u || --u->refs > 0)
        return;
    stream_free(u->tcp);
    for (int i = 0; i < UPSTREAM_DOT_CONNS; i++)
        stream_free(u->dot[i]);
    tls_session_free(u->session);
    tls_ctx_free(u->tls);
    free(u->auth_name);
    free(u->ca_file);
    free(u);
}

const char *upstream_tls_str(enum upstream_tls t)
{
    switch (t) {
    case UPSTREAM_TLS_OPPORTUNISTIC: return "opportunistic";
    case UPSTREAM_TLS_STRICT: return "strict";
    case UPSTREAM_TLS_OFF: return "off";
    }
    return "?";
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int upstream_set_tls(struct upstream *u, enum upstream_tls policy, const char *auth_name, const char *ca_file)
{
    if (u->tls_policy == policy && same_str(u->auth_name, auth_name) && same_str(u->ca_file, ca_file) &&
        (policy != UPSTREAM_TLS_STRICT || u->tls))
        return 0;
    struct tls_ctx *ctx = NULL;
    if (policy == UPSTREAM_TLS_STRICT) {
        char err[256];
        struct tls_ctx_opts o = { .mode = TLS_MODE_STRICT, .ca_file = ca_file, .system_ca = ca_file == NULL };
        ctx = tls_ctx_new(&o, err, sizeof err);
        if (!ctx) {
            log_err("upstream %s: %s", u->name, err);
            return -1;
        }
    }
    char *an = auth_name ? strdup(auth_name) : NULL;
    char *ca = ca_file ? strdup(ca_file) : NULL;
    if ((auth_name && !an) || (ca_file && !ca)) {
        free(an);
        free(ca);
        tls_ctx_free(ctx);
        return -1;
    }
    /* Connections made under the old policy must not carry on. */
    for (int i = 0; i < UPSTREAM_DOT_CONNS; i++) {
        stream_free(u->dot[i]);
        u->dot[i] = NULL;
    }
    tls_session_free(u->session);
    u->session = NULL;
    tls_ctx_free(u->tls);
    free(u->auth_name);
    free(u->ca_file);
    u->tls = ctx;
    u->auth_name = an;
    u->ca_file = ca;
    u->tls_policy = policy;
    return 0;
}

double upstream_rto(const struct upstream *u, double max)
{
    if (u->srtt < 0)
        return max;
    double rto = u->srtt + 4 * u->rttvar;
    if (rto < RTO_MIN)
        rto = RTO_MIN;
    return rto < max ? rto : max;
}

void upstream_rtt_sample(struct upstream *u, double rtt)
{
    if (u->srtt < 0) {
        u->srtt = rtt;
        u->rttvar = rtt / 2;
    } else {
        double d = u->srtt - rtt;
        u->rttvar = 0.75 * u->rttvar + 0.25 * (d < 0 ? -d : d);
        u->srtt = 0.875 * u->srtt + 0.125 * rtt;
    }
    u->fails = 0;
    u->backoff_until = 0;
    u->answers++;
}

void upstream_failed(struct upstream *u, double now)
{
    double b = BACKOFF_BASE;
    for (unsigned i = 0; i < u->fails && b < BACKOFF_MAX; i++)
        b *= 2;
    u->fails++;
    u->backoff_until = now + (b < BACKOFF_MAX ? b : BACKOFF_MAX);
    /* A timeout says the RTT estimate was too optimistic. */
    if (u->srtt >= 0)
        u->rttvar = u->rttvar * 2 + 0.01;
}

struct route_table *route_table_new(void)
{
    struct route_table *t = calloc(1, sizeof *t);
    if (t)
        t->refs = 1;
    return t;
}

struct route_table *route_table_ref(struct route_table *t)
{
    t->refs++;
    return t;
}

void route_table_unref(struct route_table *t)
{
    if (!t || --t->refs > 0)
        return;
    for (size_t i = 0; i < t->n_zones; i++) {
        for (size_t j = 0; j < t->zones[i].n_servers; j++)
            upstream_unref(t->zones[i].servers[j]);
        free(t->zones[i].servers);
    }
    free(t->zones);
    free(t);
}

static unsigned count_labels(const uint8_t *name, size_t len)
{
    unsigned n = 0;
    for (size_t i = 0; i < len && name[i]; i += 1u + name[i])
        n++;
    return n;
}

int route_table_add(struct route_table *t, const char *zone, struct upstream *u)
{
    uint8_t wire[WIRE_MAX_NAME];
    int wl = wire_name_from_str(zone, wire);
    if (wl < 0)
        return -1;
    for (int i = 0; i < wl; i++)
        if (wire[i] >= 'A' && wire[i] <= 'Z')
            wire[i] = (uint8_t)(wire[i] + 32);
    struct route_zone *z = NULL;
    for (size_t i = 0; i < t->n_zones; i++)
        if (t->zones[i].name_len == (size_t)wl && memcmp(t->zones[i].name, wire, (size_t)wl) == 0)
            z = &t->zones[i];
    if (!z) {
        struct route_zone *nz = realloc(t->zones, (t->n_zones + 1) * sizeof *nz);
        if (!nz)
            return -1;
        t->zones = nz;
        z = &t->zones[t->n_zones++];
        memset(z, 0, sizeof *z);
        memcpy(z->name, wire, (size_t)wl);
        z->name_len = (size_t)wl;
        z->labels = count_labels(wire, (size_t)wl);
        wire_name_str(wire, (size_t)wl, z->text, sizeof z->text);
    }
    for (size_t j = 0; j < z->n_servers; j++)
        if (net_addr_equal(&z->servers[j]->addr, &u->addr))
            return 0;
    if (z->n_servers >= ROUTE_MAX_SERVERS)
        return -1;
    struct upstream **ns = realloc(z->servers, (z->n_servers + 1) * sizeof *ns);
    if (!ns)
        return -1;
    z->servers = ns;
    z->servers[z->n_servers++] = upstream_ref(u);
    return 0;
}

struct upstream *route_table_find(const struct route_table *t, const struct net_addr *a)
{
    for (size_t i = 0; t && i < t->n_zones; i++)
        for (size_t j = 0; j < t->zones[i].n_servers; j++)
            if (net_addr_equal(&t->zones[i].servers[j]->addr, a))
                return t->zones[i].servers[j];
    return NULL;
}

/* True if `zone` is `name` or one of its ancestors, on label boundaries. */
static bool name_in_zone(const uint8_t *name, size_t len, const struct route_zone *z)
{
    if (z->name_len > len)
        return false;
    size_t off = 0;
    /* Walk labels until the remaining suffix has the zone's length. */
    while (len - off > z->name_len) {
        off += 1u + name[off];
        if (off >= len)
            return false;
    }
    return len - off == z->name_len && wire_name_equal(name + off, z->name, z->name_len);
}

const struct route_zone *route_lookup(const struct route_table *t, const uint8_t *qname, size_t qlen)
{
    const struct route_zone *best = NULL;
    for (size_t i = 0; i < t->n_zones; i++) {
        const struct route_zone *z = &t->zones[i];
        if ((!best || z->labels > best->labels) && name_in_zone(qname, qlen, z))
            best = z;
    }
    return best;
}

int route_select(const struct route_zone *z, uint32_t tried, double now, struct rng *rng)
{
    int n = (int)z->n_servers;
    if (n == 0)
        return -1;
    uint32_t all = n >= 32 ? UINT32_MAX : ((1u << n) - 1);
    if ((tried & all) == all)
        tried = 0; /* every server had its try: start over */
    int best = -1;
    double best_key = 0;
    int candidates = 0;
    for (int i = 0; i < n; i++) {
        if (tried & (1u << i))
            continue;
        const struct upstream *u = z->servers[i];
        candidates++;
        /* Backed-off servers sort after all healthy ones; unmeasured ones first among equals. */
        double key = (u->srtt < 0 ? 0 : u->srtt) + (u->backoff_until > now ? 1e6 : 0);
        if (best < 0 || key < best_key) {
            best = i;
            best_key = key;
        }
    }
    if (candidates > 1 && rng_below(rng, EXPLORE_ONE_IN) == 0) {
        int pick = (int)rng_below(rng, (uint32_t)candidates);
        for (int i = 0; i < n; i++) {
            if (tried & (1u << i))
                continue;
            if (pick-- == 0) {
                if (z->servers[i]->backoff_until <= now)
                    best = i;
                break;
            }
        }
    }
    return best;
}
