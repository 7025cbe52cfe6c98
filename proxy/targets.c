/* proxy/targets.c: transparent mode's servers, on demand. */
#include "proxy/targets.h"

#include <stdlib.h>
#include <string.h>

#include "lib/ipkey.h"
#include "proxy/health.h"
#include "proxy/route.h"
#include "proxy/tls_profile.h"

#define TARGET_BUCKETS 1024
/* A resolver that cycles through more servers than the idle cache holds
 * makes a server per query: reuse the memory rather than allocate. */
#define TARGET_SPARE 64

struct target {
    struct route_server srv;         /* first: released() gets it back */
    struct target *hnext;            /* bucket chain */
    struct target *idle_prev, *idle_next; /* the idle list while nobody holds it */
    struct ip_key ip;
    uint32_t hash;
};

struct targets {
    struct health_table *health;
    struct tls_profile *profile;     /* a reference; its servers borrow it */
    unsigned idle_max, n, n_idle;
    struct target *spare;            /* freed entries kept for reuse (through hnext) */
    unsigned n_spare;
    uint32_t seed;
    struct target *idle_head, *idle_tail; /* most recently released first */
    struct target *buckets[TARGET_BUCKETS];
};

struct targets *targets_new(struct health_table *health, unsigned idle_max, uint32_t seed)
{
    struct targets *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->health = health;
    t->idle_max = idle_max;
    t->seed = seed;
    return t;
}

void targets_set_profile(struct targets *t, struct tls_profile *opportunistic)
{
    if (opportunistic)
        tls_profile_ref(opportunistic);
    tls_profile_unref(t->profile);
    t->profile = opportunistic;
}

unsigned targets_count(const struct targets *t) { return t->n; }

static void idle_unlink(struct targets *t, struct target *x)
{
    if (x->idle_prev)
        x->idle_prev->idle_next = x->idle_next;
    else
        t->idle_head = x->idle_next;
    if (x->idle_next)
        x->idle_next->idle_prev = x->idle_prev;
    else
        t->idle_tail = x->idle_prev;
    x->idle_prev = x->idle_next = NULL;
    t->n_idle--;
}

static void destroy(struct targets *t, struct target *x)
{
    struct target **pp = &t->buckets[x->hash % TARGET_BUCKETS];
    while (*pp != x)
        pp = &(*pp)->hnext;
    *pp = x->hnext;
    health_unpin(t->health, x->srv.health);
    t->n--;
    if (t->n_spare < TARGET_SPARE) {
        x->hnext = t->spare;
        t->spare = x;
        t->n_spare++;
    } else {
        free(x);
    }
}

static void released(void *arg, struct route_server *s)
{
    struct targets *t = arg;
    struct target *x = (struct target *)s;
    x->idle_next = t->idle_head;
    if (t->idle_head)
        t->idle_head->idle_prev = x;
    else
        t->idle_tail = x;
    t->idle_head = x;
    t->n_idle++;
    while (t->n_idle > t->idle_max) {
        struct target *old = t->idle_tail;
        idle_unlink(t, old);
        destroy(t, old);
    }
}

struct route_server *targets_get(struct targets *t, const struct net_addr *to)
{
    struct ip_key k;
    if (!t->profile || ip_key_of(to, &k) < 0)
        return NULL;
    uint16_t port = net_addr_port(to);
    uint32_t h = ip_key_hash(&k, t->seed, port);
    for (struct target *x = t->buckets[h % TARGET_BUCKETS]; x; x = x->hnext) {
        if (x->hash == h && ip_key_equal(&x->ip, &k) && net_addr_port(&x->srv.addr) == port) {
            if (x->srv.holds == 0)
                idle_unlink(t, x);
            x->srv.holds++;
            return &x->srv;
        }
    }
    struct target *x = t->spare;
    if (x) {
        t->spare = x->hnext;
        t->n_spare--;
        memset(x, 0, sizeof *x);
    } else if (!(x = calloc(1, sizeof *x))) {
        return NULL;
    }
    if (!(x->srv.health = health_pin(t->health, to))) {
        free(x);
        return NULL;
    }
    x->srv.addr = *to;
    /* No name: formatting an address per query is the dearest part of a
     * new server, and only the control socket's listing of configured
     * servers shows names (logs of intercepted servers print the address). */
    x->srv.tls = SERVER_TLS_OPPORTUNISTIC;
    x->srv.profile = t->profile;
    x->srv.rd = false; /* the resolver asks authoritative servers */
    x->srv.released = released;
    x->srv.released_arg = t;
    x->srv.holds = 1;
    x->ip = k;
    x->hash = h;
    x->hnext = t->buckets[h % TARGET_BUCKETS];
    t->buckets[h % TARGET_BUCKETS] = x;
    t->n++;
    return &x->srv;
}

void targets_free(struct targets *t)
{
    if (!t)
        return;
    while (t->idle_head) {
        struct target *x = t->idle_head;
        idle_unlink(t, x);
        destroy(t, x);
    }
    while (t->spare) {
        struct target *x = t->spare;
        t->spare = x->hnext;
        free(x);
    }
    tls_profile_unref(t->profile);
    free(t);
}
