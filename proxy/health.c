/* proxy/health.c: the per-address health table. */
#include "proxy/health.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RTO_MIN 0.1             /* s: below this, scheduling noise looks like loss */
#define BACKOFF_BASE 1.0        /* s, doubled per consecutive failure ... */
#define BACKOFF_MAX 60.0        /* ... up to this */
/* Entries come from chunks of this many, so a table of a million costs no
 * allocator header per entry; freed entries are reused, chunks go with the table. */
#define CHUNK_ENTRIES 256

struct chunk {
    struct chunk *next;
    struct health e[CHUNK_ENTRIES];
};

struct health_table {
    uint32_t seed;
    unsigned max;
    struct health **buckets;
    size_t nbuckets;            /* power of two */
    size_t size, pinned;
    uint64_t evictions;
    struct health *lru_head, *lru_tail;   /* unpinned entries, most recent first */
    struct chunk *chunks;
    struct health *free_list;             /* through hnext */
};

static struct health *entry_alloc(struct health_table *t)
{
    if (!t->free_list) {
        struct chunk *c = malloc(sizeof *c);
        if (!c)
            return NULL;
        c->next = t->chunks;
        t->chunks = c;
        for (size_t i = 0; i < CHUNK_ENTRIES; i++) {
            c->e[i].hnext = t->free_list;
            t->free_list = &c->e[i];
        }
    }
    struct health *h = t->free_list;
    t->free_list = h->hnext;
    memset(h, 0, sizeof *h);
    return h;
}

static void entry_free(struct health_table *t, struct health *h)
{
    h->hnext = t->free_list;
    t->free_list = h;
}

struct health_table *health_table_new(unsigned max, uint32_t seed)
{
    struct health_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->seed = seed;
    t->max = max ? max : 1;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    return t;
}

void health_table_free(struct health_table *t)
{
    if (!t)
        return;
    while (t->chunks) {
        struct chunk *c = t->chunks;
        t->chunks = c->next;
        free(c);
    }
    free(t->buckets);
    free(t);
}

size_t health_table_size(const struct health_table *t) { return t->size; }
uint64_t health_table_evictions(const struct health_table *t) { return t->evictions; }

static size_t bucket(const struct health_table *t, const struct ip_key *k, uint16_t port)
{
    return ip_key_hash(k, t->seed, port) & (t->nbuckets - 1);
}

static struct health *lookup(const struct health_table *t, const struct ip_key *k, uint16_t port)
{
    for (struct health *h = t->buckets[bucket(t, k, port)]; h; h = h->hnext)
        if (h->port == port && ip_key_equal(&h->ip, k))
            return h;
    return NULL;
}

struct health *health_find(const struct health_table *t, const struct net_addr *a)
{
    struct ip_key k;
    if (ip_key_of(a, &k) < 0)
        return NULL;
    return lookup(t, &k, net_addr_port(a));
}

static void lru_unlink(struct health_table *t, struct health *h)
{
    if (h->lru_prev)
        h->lru_prev->lru_next = h->lru_next;
    else if (t->lru_head == h)
        t->lru_head = h->lru_next;
    if (h->lru_next)
        h->lru_next->lru_prev = h->lru_prev;
    else if (t->lru_tail == h)
        t->lru_tail = h->lru_prev;
    h->lru_prev = h->lru_next = NULL;
}

static void lru_push_front(struct health_table *t, struct health *h)
{
    h->lru_prev = NULL;
    h->lru_next = t->lru_head;
    if (t->lru_head)
        t->lru_head->lru_prev = h;
    else
        t->lru_tail = h;
    t->lru_head = h;
}

static void remove_entry(struct health_table *t, struct health *h)
{
    for (struct health **pp = &t->buckets[bucket(t, &h->ip, h->port)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == h) {
            *pp = h->hnext;
            break;
        }
    }
    lru_unlink(t, h);
    t->size--;
    entry_free(t, h);
}

static void evict(struct health_table *t)
{
    while (t->size - t->pinned > t->max && t->lru_tail) {
        remove_entry(t, t->lru_tail);
        t->evictions++;
    }
}

void health_table_set_max(struct health_table *t, unsigned max)
{
    t->max = max ? max : 1;
    evict(t);
}

/* Chains stay short: the bucket array doubles at a load of one. */
static void grow(struct health_table *t)
{
    size_t n = t->nbuckets * 2;
    struct health **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    struct health **old = t->buckets;
    size_t on = t->nbuckets;
    t->buckets = nb;
    t->nbuckets = n;
    for (size_t i = 0; i < on; i++) {
        struct health *h = old[i];
        while (h) {
            struct health *next = h->hnext;
            size_t b = bucket(t, &h->ip, h->port);
            h->hnext = nb[b];
            nb[b] = h;
            h = next;
        }
    }
    free(old);
}

/* Finds or creates the entry of `a`. A new entry is pinned before the
 * limit is enforced when `pin` is set: pinned entries come on top of the
 * limit, so pinning never pushes an unpinned entry out. */
static struct health *get_entry(struct health_table *t, const struct net_addr *a, bool pin)
{
    struct ip_key k;
    if (ip_key_of(a, &k) < 0)
        return NULL;
    uint16_t port = net_addr_port(a);
    struct health *h = lookup(t, &k, port);
    if (h) {
        if (!h->pins && t->lru_head != h) {
            lru_unlink(t, h);
            lru_push_front(t, h);
        }
    } else {
        if (!(h = entry_alloc(t)))
            return NULL;
        h->ip = k;
        h->port = port;
        for (int i = 0; i < HEALTH_PATHS; i++)
            h->rtt[i].srtt = -1;
        if (t->size >= t->nbuckets)
            grow(t);
        size_t b = bucket(t, &k, port);
        h->hnext = t->buckets[b];
        t->buckets[b] = h;
        t->size++;
        lru_push_front(t, h);
    }
    if (pin && h->pins++ == 0) {
        lru_unlink(t, h);
        t->pinned++;
    }
    evict(t);
    return h;
}

struct health *health_get(struct health_table *t, const struct net_addr *a)
{
    return get_entry(t, a, false);
}

struct health *health_pin(struct health_table *t, const struct net_addr *a)
{
    return get_entry(t, a, true);
}

void health_unpin(struct health_table *t, struct health *h)
{
    if (!h || h->pins == 0 || --h->pins > 0)
        return;
    t->pinned--;
    lru_push_front(t, h);
    evict(t);
}

double health_rto(const struct health *h, enum health_path path, double max)
{
    const struct health_rtt *r = &h->rtt[path];
    if (r->srtt < 0)
        return max;
    double rto = (double)r->srtt + 4 * (double)r->rttvar;
    if (rto < RTO_MIN)
        rto = RTO_MIN;
    return rto < max ? rto : max;
}

double health_srtt(const struct health *h) { return h->rtt[h->last_path].srtt; }

void health_rtt_sample(struct health *h, enum health_path path, double rtt)
{
    struct health_rtt *r = &h->rtt[path];
    if (r->srtt < 0) {
        r->srtt = (float)rtt;
        r->rttvar = (float)(rtt / 2);
    } else {
        double d = r->srtt - rtt;
        r->rttvar = (float)(0.75 * r->rttvar + 0.25 * (d < 0 ? -d : d));
        r->srtt = (float)(0.875 * r->srtt + 0.125 * rtt);
    }
    h->last_path = (uint8_t)path;
    h->fails = 0;
    h->backoff_until = 0;
    h->answers++;
}

void health_failed(struct health *h, double now)
{
    double b = BACKOFF_BASE;
    for (unsigned i = 0; i < h->fails && b < BACKOFF_MAX; i++)
        b *= 2;
    if (h->fails < UINT16_MAX)
        h->fails++;
    h->backoff_until = now + (b < BACKOFF_MAX ? b : BACKOFF_MAX);
    /* A timeout says the RTT estimate was too optimistic. */
    struct health_rtt *r = &h->rtt[h->last_path];
    if (r->srtt >= 0)
        r->rttvar = r->rttvar * 2 + 0.01f;
}
