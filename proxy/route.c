/* proxy/route.c: zones, servers and server choice. */
#include "proxy/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rng.h"
#include "proxy/health.h"
#include "proxy/tls_profile.h"

#define EXPLORE_ONE_IN 20       /* tries that go to a random other server */

const char *server_tls_str(enum server_tls t)
{
    switch (t) {
    case SERVER_TLS_OPPORTUNISTIC: return "opportunistic";
    case SERVER_TLS_STRICT: return "strict";
    case SERVER_TLS_OFF: return "off";
    }
    return "?";
}

struct route_table *route_table_new(struct health_table *health)
{
    struct route_table *t = calloc(1, sizeof *t);
    if (t)
        t->health = health;
    return t;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_zones; i++)
        free(t->zones[i].servers);
    free(t->zones);
    for (size_t i = 0; i < t->n_servers; i++) {
        struct route_server *s = t->servers[i];
        health_unpin(t->health, s->health);
        tls_profile_unref(s->profile);
        free(s);
    }
    free(t->servers);
    free(t);
}

struct route_server *route_table_find(const struct route_table *t, const struct net_addr *a)
{
    for (size_t i = 0; t && i < t->n_servers; i++)
        if (net_addr_equal(&t->servers[i]->addr, a))
            return t->servers[i];
    return NULL;
}

struct route_server *route_table_add_server(struct route_table *t, const struct net_addr *a,
                                            enum server_tls tls, struct tls_profile *profile, bool rd,
                                            bool configured)
{
    struct route_server **ns = realloc(t->servers, (t->n_servers + 1) * sizeof *ns);
    if (!ns)
        return NULL;
    t->servers = ns;
    struct route_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (!(s->health = health_pin(t->health, a))) {
        free(s);
        return NULL;
    }
    s->addr = *a;
    net_addr_str(a, s->name, sizeof s->name);
    s->tls = tls;
    s->profile = profile ? tls_profile_ref(profile) : NULL;
    s->rd = rd;
    s->configured = configured;
    t->servers[t->n_servers++] = s;
    return s;
}

static unsigned count_labels(const uint8_t *name, size_t len)
{
    unsigned n = 0;
    for (size_t i = 0; i < len && name[i]; i += 1u + name[i])
        n++;
    return n;
}

int route_table_add(struct route_table *t, const char *zone, struct route_server *s)
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
        if (z->servers[j] == s)
            return 0;
    if (z->n_servers >= ROUTE_MAX_SERVERS)
        return -1;
    struct route_server **ns = realloc(z->servers, (z->n_servers + 1) * sizeof *ns);
    if (!ns)
        return -1;
    z->servers = ns;
    z->servers[z->n_servers++] = s;
    return 0;
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
        const struct health *h = z->servers[i]->health;
        candidates++;
        /* Backed-off servers sort after all healthy ones; unmeasured ones first among equals. */
        double srtt = health_srtt(h);
        double key = (srtt < 0 ? 0 : srtt) + (h->backoff_until > now ? 1e6 : 0);
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
                if (z->servers[i]->health->backoff_until <= now)
                    best = i;
                break;
            }
        }
    }
    return best;
}

void route_table_describe(const struct route_table *t, char *buf, size_t bufsz)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < t->n_zones && o < bufsz; i++) {
        const struct route_zone *z = &t->zones[i];
        o += (size_t)snprintf(buf + o, bufsz - o, "%s%s to ", i ? "; " : "", z->text);
        for (size_t j = 0; j < z->n_servers && o < bufsz; j++)
            o += (size_t)snprintf(buf + o, bufsz - o, "%s%s", j ? ", " : "", z->servers[j]->name);
    }
}
