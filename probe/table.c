/* probe/table.c: the per-IP DoT table. entry_transition() is the only
 * writer of a status; everything else reports outcomes to it.
 *
 * Memory layout, for tables of a million IPs: entries live in slabs (so
 * pointers stay put) and are named by 32-bit slot numbers in the hash
 * chains and the LRU list; the hash buckets are slot numbers too, doubled
 * as the table grows (load <= 1); zones and reasons are ids into a
 * reference-counted string pool; the probe FIFO is a ring of entry
 * pointers owned by the table, not links in every entry. */
#include "probe/table.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/ipkey.h"
#include "lib/tls.h"

#define PROBE_DOT_PORT 853
#define NIL UINT32_MAX           /* no slot */
#define TIME_NEVER INT32_MIN     /* a time that never happened */
#define TIME_WINDOW PROBE_T_MAX  /* priv_time index of the visit window's start */
#define LOG_WINDOW 10.0          /* s, for PROBE_LOG_BURST */

/* priv_count indices: four counters, then failures[1 .. PROBE_OUTCOME_MAX-1]. */
enum { C_PROBES, C_SUCCESSES, C_DOT_QUERIES, C_FALLBACKS, C_FAILURES };
#define C_FAIL(o) (C_FAILURES + (o) - 1)

/* The entry must stay small: test/unit/test_memory.c holds it to 160 bytes
 * per IP, buckets and strings included. */
_Static_assert(sizeof(struct probe_entry) <= 136, "struct probe_entry grew");
_Static_assert(PROBE_OUTCOME_MAX <= 16, "outcomes must fit the entry's counters and a byte");

enum { SCHED_NONE, SCHED_QUEUED, SCHED_RUNNING };

/* Slabs: slot numbers 0-31 in slab 0, 32-63 in 1, 64-127 in 2, 128-255 in 3,
 * then 256 per slab: a table of a few upstreams costs a few KB, a big one
 * wastes at most one slab. */
#define SLAB_SHIFT 8
#define SLAB_BIG (1u << SLAB_SHIFT)

/* ---- the string pool ----------------------------------------------------- */

struct pool_str {
    uint32_t refs;
    uint32_t hash;
    uint32_t next;  /* id of the next string in the hash chain, 0 = end */
    uint32_t len;
    char s[];
};

struct str_pool {
    struct pool_str **by_id;  /* [0] unused: id 0 = no string */
    uint32_t nids, cap;       /* ids handed out so far (high water), array size */
    uint32_t *free_ids;       /* ids of freed strings, for reuse */
    uint32_t nfree;
    uint32_t *heads;          /* hash buckets: first id, 0 = none */
    uint32_t nheads;          /* power of two, or 0 before the first string */
    size_t count, bytes;
};

struct probe_table {
    struct probe_policy pol;
    uint32_t seed;
    /* Entries. */
    struct probe_entry **slabs;
    uint32_t nslabs, slabs_cap;
    uint32_t slots_used;  /* slots handed out so far (high water) */
    uint32_t free_slot;   /* chain of freed slots through priv_hnext */
    uint32_t *buckets;    /* first slot of each hash chain */
    uint32_t nbuckets;    /* power of two */
    size_t size;
    size_t by_status[PROBE_STATUS_MAX];
    uint32_t lru_head, lru_tail;
    /* The probe FIFO: queued entries, oldest at ring[ring_head]. */
    struct probe_entry **ring;
    unsigned ring_cap, ring_head, queued, running;
    uint64_t evictions;             /* entries evicted to stay within max_entries */
    const struct probe_sched *ops;
    void *ops_arg;
    double last_now;  /* for starts triggered by forget(), which has no clock */
    /* Entry times are whole seconds relative to this (the first clock seen). */
    double epoch;
    bool have_epoch;
    struct { double window_start; unsigned count, suppressed; } loglim;
    struct str_pool pool;
    struct probe_counters totals;
    struct probe_question *questions;   /* PROBE_QUESTIONS slots, direct-mapped by IP; NULL until used */
};

/* A counter lives twice: in the entry (for the dump; 32-bit, saturating)
 * and in the totals (for metrics, which must not drop when an entry is
 * evicted). */
static void count_add(uint32_t *c, uint64_t n) { *c = *c + n < *c || *c + n > UINT32_MAX ? UINT32_MAX : (uint32_t)(*c + n); }
#define COUNT(t, e, idx, field) (count_add(&(e)->priv_count[idx], 1), (t)->totals.field++)
#define COUNT_FAIL(t, e, o) (count_add(&(e)->priv_count[C_FAIL(o)], 1), (t)->totals.failures[o]++)

static const char *const status_names[PROBE_STATUS_MAX] = {
    [PROBE_UNKNOWN] = "unknown", [PROBE_BUSY] = "busy", [PROBE_GOOD] = "good", [PROBE_BAD] = "bad",
};

static const char *const outcome_names[PROBE_OUTCOME_MAX] = {
    [PROBE_OK] = "ok",
    [PROBE_CONNECT_REFUSED] = "connect-refused",
    [PROBE_CONNECT_TIMEOUT] = "connect-timeout",
    [PROBE_TLS_FAILED] = "tls-failed",
    [PROBE_QUERY_TIMEOUT] = "query-timeout",
    [PROBE_BAD_ANSWER] = "bad-answer",
    [PROBE_CLOSED_CLEAN] = "closed-clean",
    [PROBE_LOCAL_ERROR] = "local-error",
    [PROBE_RESET] = "reset",
};

const char *probe_status_str(enum probe_status s)
{
    return (unsigned)s < PROBE_STATUS_MAX ? status_names[s] : "?";
}

const char *probe_outcome_str(enum probe_outcome o)
{
    return (unsigned)o < PROBE_OUTCOME_MAX ? outcome_names[o] : "?";
}

void probe_policy_defaults(struct probe_policy *p)
{
    *p = (struct probe_policy){
        .probe_after_visits = 2,
        .probe_on_start = true,
        .max_busy_probes = 16,
        .max_queued_probes = 64,
        .probe_timeout = 4.0,
        .persistence = 3 * 86400.0,
        .damping = 86400.0,
        .dot_fail_threshold = 3,
        .max_entries = 4096,
    };
}


/* ---- the string pool ----------------------------------------------------- */

static uint32_t str_hash(uint32_t seed, const char *s, size_t len)
{
    uint32_t h = 2166136261u ^ seed;  /* FNV-1a, seeded, then mixed */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return hash_mix32(h);
}

static const char *pool_get(const struct str_pool *p, uint32_t id)
{
    return id ? p->by_id[id]->s : "";
}

static void pool_rehash(struct str_pool *p, uint32_t n)
{
    uint32_t *heads = calloc(n, sizeof *heads);
    if (!heads)
        return;  /* longer chains, still correct */
    for (uint32_t id = 1; id < p->nids; id++) {
        struct pool_str *ps = p->by_id[id];
        if (!ps)
            continue;
        uint32_t b = ps->hash & (n - 1);
        ps->next = heads[b];
        heads[b] = id;
    }
    free(p->heads);
    p->heads = heads;
    p->nheads = n;
}

/* A reference to the string `s` (len bytes): 0 on no memory. */
static uint32_t pool_intern(struct str_pool *p, uint32_t seed, const char *s, size_t len)
{
    uint32_t h = str_hash(seed, s, len);
    if (!p->nheads) {
        pool_rehash(p, 16);
        if (!p->nheads)
            return 0;
    }
    for (uint32_t id = p->heads[h & (p->nheads - 1)]; id; id = p->by_id[id]->next) {
        struct pool_str *ps = p->by_id[id];
        if (ps->hash == h && ps->len == len && memcmp(ps->s, s, len) == 0) {
            ps->refs++;
            return id;
        }
    }
    uint32_t id;
    if (p->nfree) {
        id = p->free_ids[--p->nfree];
    } else {
        if (p->nids == 0)
            p->nids = 1;  /* id 0 is "none" */
        if (p->nids >= p->cap) {
            uint32_t cap = p->cap ? p->cap * 2 : 16;
            struct pool_str **by_id = realloc(p->by_id, cap * sizeof *by_id);
            uint32_t *free_ids = by_id ? realloc(p->free_ids, cap * sizeof *free_ids) : NULL;
            if (by_id)
                p->by_id = by_id;
            if (!free_ids)
                return 0;
            p->free_ids = free_ids;
            p->cap = cap;
        }
        id = p->nids++;
    }
    struct pool_str *ps = malloc(sizeof *ps + len + 1);
    if (!ps) {
        p->by_id[id] = NULL;
        p->free_ids[p->nfree++] = id;
        return 0;
    }
    ps->refs = 1;
    ps->hash = h;
    ps->len = (uint32_t)len;
    memcpy(ps->s, s, len);
    ps->s[len] = 0;
    p->by_id[id] = ps;
    p->count++;
    p->bytes += len;
    uint32_t b = h & (p->nheads - 1);
    ps->next = p->heads[b];
    p->heads[b] = id;
    if (p->count > p->nheads)
        pool_rehash(p, p->nheads * 2);  /* on no memory: longer chains, still correct */
    return id;
}

static void pool_release(struct str_pool *p, uint32_t id)
{
    if (!id)
        return;
    struct pool_str *ps = p->by_id[id];
    if (--ps->refs)
        return;
    uint32_t *pp = &p->heads[ps->hash & (p->nheads - 1)];
    while (*pp != id)
        pp = &p->by_id[*pp]->next;
    *pp = ps->next;
    p->count--;
    p->bytes -= ps->len;
    free(ps);
    p->by_id[id] = NULL;
    p->free_ids[p->nfree++] = id;  /* room: nfree < nids <= cap */
}

static void pool_free(struct str_pool *p)
{
    for (uint32_t id = 1; id < p->nids; id++)
        free(p->by_id[id]);
    free(p->by_id);
    free(p->free_ids);
    free(p->heads);
    memset(p, 0, sizeof *p);
}

/* ---- times ------------------------------------------------------------------ */

/* Every call that brings a clock reading: the first one sets the epoch. */
static void table_clock(struct probe_table *t, double now)
{
    t->last_now = now;
    if (!t->have_epoch && isfinite(now)) {
        t->epoch = floor(now);
        t->have_epoch = true;
    }
}

static int32_t time_in(const struct probe_table *t, double ts)
{
    if (!(ts > 0) || !isfinite(ts))
        return TIME_NEVER;
    double r = floor(ts) - t->epoch;
    if (r <= (double)INT32_MIN)
        return INT32_MIN + 1;
    if (r > (double)INT32_MAX)
        return INT32_MAX;
    return (int32_t)r;
}

static double time_out(const struct probe_table *t, int32_t v)
{
    return v == TIME_NEVER ? 0 : t->epoch + v;
}

#define T_SET(t, e, which, ts) ((e)->priv_time[which] = time_in(t, ts))
#define T_GET(t, e, which) time_out(t, (e)->priv_time[which])

double probe_entry_time(const struct probe_table *t, const struct probe_entry *e, enum probe_time which)
{
    return (unsigned)which < PROBE_T_MAX ? T_GET(t, e, which) : 0;
}

/* ---- keys and hashing ---------------------------------------------------- */

struct probe_key {
    uint8_t b[16];   /* IPv6, or IPv4 v4-mapped */
    uint32_t scope;  /* kept, not compared: the scope is not part of the server's name */
};

static int key_of(const struct net_addr *a, struct probe_key *k)
{
    memset(k, 0, sizeof *k);
    if (a->u.sa.sa_family == AF_INET) {
        k->b[10] = k->b[11] = 0xff;
        memcpy(k->b + 12, &a->u.in4.sin_addr, 4);
        return 0;
    }
    if (a->u.sa.sa_family == AF_INET6) {
        /* A v4-mapped address (dual-stack socket) is the IPv4 server: the same key. */
        memcpy(k->b, a->u.in6.sin6_addr.s6_addr, 16);
        if (!IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
            k->scope = a->u.in6.sin6_scope_id;
        return 0;
    }
    return -1;
}

static bool key_is_v4(const uint8_t *b)
{
    static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    return memcmp(b, prefix, 12) == 0;
}

void probe_entry_addr(const struct probe_entry *e, struct net_addr *out)
{
    memset(out, 0, sizeof *out);
    if (key_is_v4(e->priv_ip)) {
        out->u.in4.sin_family = AF_INET;
        memcpy(&out->u.in4.sin_addr, e->priv_ip + 12, 4);
        out->u.in4.sin_port = htons(PROBE_DOT_PORT);
        out->len = sizeof out->u.in4;
    } else {
        out->u.in6.sin6_family = AF_INET6;
        memcpy(out->u.in6.sin6_addr.s6_addr, e->priv_ip, 16);
        out->u.in6.sin6_scope_id = e->priv_scope;  /* a link-local server keeps its interface */
        out->u.in6.sin6_port = htons(PROBE_DOT_PORT);
        out->len = sizeof out->u.in6;
    }
}

/* Keyed multiply-rotate mix with a murmur3 finaliser: not cryptographic,
 * but the seed stops anyone from choosing IPs that share a chain. */
static uint32_t key_hash(const struct probe_table *t, const uint8_t *b)
{
    bool v4 = key_is_v4(b);
    uint32_t h = t->seed ^ (v4 ? 4u : 6u);
    for (size_t i = v4 ? 12 : 0; i < 16; i += 4) {
        uint32_t w;
        memcpy(&w, b + i, 4);
        h ^= w * 0xcc9e2d51u;
        h = (h << 13) | (h >> 19);
        h = h * 5u + 0xe6546b64u;
    }
    return hash_mix32(h);
}

/* ---- slots ------------------------------------------------------------------ */

static inline struct probe_entry *slot(const struct probe_table *t, uint32_t i)
{
    if (i < SLAB_BIG) {
        if (i < 32)
            return &t->slabs[0][i];
        int msb = 31 - __builtin_clz(i);  /* 5, 6 or 7 */
        return &t->slabs[msb - 4][i - (1u << msb)];
    }
    return &t->slabs[3 + (i >> SLAB_SHIFT)][i & (SLAB_BIG - 1)];
}

static uint32_t slab_len(uint32_t k) { return k == 0 ? 32 : k < 4 ? 16u << k : SLAB_BIG; }

/* A free slot number, or NIL on no memory. */
static uint32_t slot_alloc(struct probe_table *t)
{
    if (t->free_slot != NIL) {
        uint32_t i = t->free_slot;
        t->free_slot = slot(t, i)->priv_hnext;
        return i;
    }
    if (t->slots_used == NIL - 1)
        return NIL;
    uint32_t capacity = t->nslabs < 4 ? (t->nslabs ? 16u << t->nslabs : 0) : (t->nslabs - 3) * SLAB_BIG;
    if (t->slots_used == capacity) {
        if (t->nslabs == t->slabs_cap) {
            uint32_t cap = t->slabs_cap ? t->slabs_cap * 2 : 8;
            struct probe_entry **slabs = realloc(t->slabs, cap * sizeof *slabs);
            if (!slabs)
                return NIL;
            t->slabs = slabs;
            t->slabs_cap = cap;
        }
        struct probe_entry *s = malloc(slab_len(t->nslabs) * sizeof *s);
        if (!s)
            return NIL;
        t->slabs[t->nslabs++] = s;
    }
    return t->slots_used++;
}

static void slot_free(struct probe_table *t, uint32_t i)
{
    slot(t, i)->priv_hnext = t->free_slot;
    t->free_slot = i;
}

static uint32_t bucket_of(const struct probe_table *t, const uint8_t *b)
{
    return key_hash(t, b) & (t->nbuckets - 1);
}

/* Doubles the buckets once the table holds more entries than buckets. */
static void buckets_grow(struct probe_table *t)
{
    if (t->size <= t->nbuckets || t->nbuckets >= (1u << 31))
        return;
    uint32_t n = t->nbuckets * 2;
    uint32_t *b = malloc(n * sizeof *b);
    if (!b)
        return;  /* longer chains, still correct */
    memset(b, 0xff, n * sizeof *b);
    for (uint32_t i = t->lru_head; i != NIL;) {
        struct probe_entry *e = slot(t, i);
        uint32_t h = key_hash(t, e->priv_ip) & (n - 1);
        e->priv_hnext = b[h];
        b[h] = i;
        i = e->priv_lru_next;
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* The slot of `k`, or NIL. */
static uint32_t find_key(const struct probe_table *t, const struct probe_key *k)
{
    for (uint32_t i = t->buckets[bucket_of(t, k->b)]; i != NIL;) {
        const struct probe_entry *e = slot(t, i);
        if (memcmp(e->priv_ip, k->b, 16) == 0)
            return i;
        i = e->priv_hnext;
    }
    return NIL;
}

/* ---- lists ---------------------------------------------------------------- */

static void lru_unlink(struct probe_table *t, struct probe_entry *e)
{
    if (e->priv_lru_prev != NIL)
        slot(t, e->priv_lru_prev)->priv_lru_next = e->priv_lru_next;
    else
        t->lru_head = e->priv_lru_next;
    if (e->priv_lru_next != NIL)
        slot(t, e->priv_lru_next)->priv_lru_prev = e->priv_lru_prev;
    else
        t->lru_tail = e->priv_lru_prev;
    e->priv_lru_prev = e->priv_lru_next = NIL;
}

static void lru_push_front(struct probe_table *t, uint32_t i)
{
    struct probe_entry *e = slot(t, i);
    e->priv_lru_prev = NIL;
    e->priv_lru_next = t->lru_head;
    if (t->lru_head != NIL)
        slot(t, t->lru_head)->priv_lru_prev = i;
    else
        t->lru_tail = i;
    t->lru_head = i;
}

static void lru_push_back(struct probe_table *t, uint32_t i)
{
    struct probe_entry *e = slot(t, i);
    e->priv_lru_next = NIL;
    e->priv_lru_prev = t->lru_tail;
    if (t->lru_tail != NIL)
        slot(t, t->lru_tail)->priv_lru_next = i;
    else
        t->lru_head = i;
    t->lru_tail = i;
}

static void lru_touch(struct probe_table *t, uint32_t i)
{
    if (t->lru_head == i)
        return;
    lru_unlink(t, slot(t, i));
    lru_push_front(t, i);
}

/* The FIFO ring grows on demand, up to what max_queued_probes asks for. */
static int queue_push(struct probe_table *t, struct probe_entry *e)
{
    if (t->queued == t->ring_cap) {
        unsigned cap = t->ring_cap ? t->ring_cap * 2 : 16;
        struct probe_entry **ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -1;
        for (unsigned k = 0; k < t->queued; k++)
            ring[k] = t->ring[(t->ring_head + k) % t->ring_cap];
        free(t->ring);
        t->ring = ring;
        t->ring_cap = cap;
        t->ring_head = 0;
    }
    t->ring[(t->ring_head + t->queued) % t->ring_cap] = e;
    t->queued++;
    e->priv_sched = SCHED_QUEUED;
    return 0;
}

static struct probe_entry *queue_pop(struct probe_table *t)
{
    struct probe_entry *e = t->ring[t->ring_head];
    t->ring_head = (t->ring_head + 1) % t->ring_cap;
    t->queued--;
    e->priv_sched = SCHED_NONE;
    return e;
}

/* Takes a queued entry out of the middle (it is being forgotten). */
static void queue_remove(struct probe_table *t, struct probe_entry *e)
{
    unsigned k = 0;
    while (k < t->queued && t->ring[(t->ring_head + k) % t->ring_cap] != e)
        k++;
    if (k == t->queued)
        return;
    for (; k + 1 < t->queued; k++)
        t->ring[(t->ring_head + k) % t->ring_cap] = t->ring[(t->ring_head + k + 1) % t->ring_cap];
    t->queued--;
    e->priv_sched = SCHED_NONE;
}

/* ---- the one status writer ----------------------------------------------- */

double probe_entry_expiry(const struct probe_table *t, const struct probe_entry *e)
{
    switch (e->status) {
    case PROBE_GOOD: return T_GET(t, e, PROBE_T_LAST_RESPONSE) + t->pol.persistence;
    case PROBE_BAD: return T_GET(t, e, PROBE_T_COMPLETED) + t->pol.damping;
    default: return 0;
    }
}

/* The table-wide limiter: PROBE_LOG_BURST status changes per LOG_WINDOW. */
static void log_transition(struct probe_table *t, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_transition(struct probe_table *t, enum log_level level, const char *fmt, ...)
{
    if (level > log_get_level())
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (now - t->loglim.window_start >= LOG_WINDOW) {
        if (t->loglim.suppressed)
            log_msg(level, "dot-probe: (%u status changes not logged)", t->loglim.suppressed);
        t->loglim.window_start = now;
        t->loglim.count = 0;
        t->loglim.suppressed = 0;
    }
    if (t->loglim.count >= PROBE_LOG_BURST) {
        t->loglim.suppressed++;
        return;
    }
    t->loglim.count++;
    char buf[PROBE_REASON_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_msg(level, "%s", buf);
}

/* Every status change, logged once at `level`. */
static void entry_transition(struct probe_table *t, struct probe_entry *e, enum probe_status to,
                             const char *reason, double now, enum log_level level)
{
    enum probe_status from = e->status;
    if (from == to)
        return;
    t->by_status[from]--;
    t->by_status[to]++;
    e->status = (uint8_t)to;
    T_SET(t, e, PROBE_T_STATUS_SINCE, now);

    char ip[NET_ADDRSTRLEN], when[32], next[64];
    struct net_addr a;
    probe_entry_addr(e, &a);
    net_ip_str(&a, ip, sizeof ip);
    switch (to) {
    case PROBE_GOOD:
        snprintf(next, sizeof next, "dot until %s", log_iso_time(probe_entry_expiry(t, e), when, sizeof when));
        break;
    case PROBE_BAD:
        snprintf(next, sizeof next, "retry after %s", log_iso_time(probe_entry_expiry(t, e), when, sizeof when));
        break;
    case PROBE_BUSY:
        snprintf(next, sizeof next, "%s", e->priv_sched == SCHED_QUEUED ? "queued" : "probing");
        break;
    default:
        snprintf(next, sizeof next, "probe after %u visits", t->pol.probe_after_visits);
        break;
    }
    log_transition(t, level, "dot-probe: %s %s -> %s (%s; %s)", ip, status_names[from], status_names[to],
                   reason && *reason ? reason : "-", next);
}

static void entry_set_status(struct probe_table *t, struct probe_entry *e, enum probe_status to,
                             const char *reason, double now)
{
    entry_transition(t, e, to, reason, now, LOG_LVL_INFO);
}

/* ---- entries -------------------------------------------------------------- */

const char *probe_entry_zone(const struct probe_table *t, const struct probe_entry *e)
{
    return pool_get(&t->pool, e->priv_zone);
}

const char *probe_entry_reason(const struct probe_table *t, const struct probe_entry *e)
{
    return pool_get(&t->pool, e->priv_reason);
}

void probe_entry_counters(const struct probe_entry *e, struct probe_counters *out)
{
    memset(out, 0, sizeof *out);
    out->probes = e->priv_count[C_PROBES];
    out->successes = e->priv_count[C_SUCCESSES];
    out->dot_queries = e->priv_count[C_DOT_QUERIES];
    out->fallbacks = e->priv_count[C_FALLBACKS];
    for (int o = 1; o < PROBE_OUTCOME_MAX; o++)
        out->failures[o] = e->priv_count[C_FAIL(o)];
}

/* Replaces the entry's reason with `text` (cut at PROBE_REASON_MAX; "" = none).
 * Out of memory: the entry keeps no reason rather than a stale one. */
static void entry_set_reason_text(struct probe_table *t, struct probe_entry *e, const char *text)
{
    size_t len = strlen(text);
    if (len > PROBE_REASON_MAX)
        len = PROBE_REASON_MAX;
    uint32_t id = len ? pool_intern(&t->pool, t->seed, text, len) : 0;
    pool_release(&t->pool, e->priv_reason);
    e->priv_reason = id;
}

static void entry_remove(struct probe_table *t, struct probe_entry *e)
{
    if (e->priv_sched == SCHED_RUNNING) {
        e->priv_sched = SCHED_NONE;
        t->running--;
        if (t->ops && t->ops->cancel)
            t->ops->cancel(t->ops_arg, e);
    } else if (e->priv_sched == SCHED_QUEUED) {
        queue_remove(t, e);
    }
    uint32_t *pp = &t->buckets[bucket_of(t, e->priv_ip)];
    while (*pp != NIL && slot(t, *pp) != e)
        pp = &slot(t, *pp)->priv_hnext;
    uint32_t i = *pp;
    *pp = e->priv_hnext;
    lru_unlink(t, e);
    t->by_status[e->status]--;
    t->size--;
    tls_session_free(e->session);
    e->session = NULL;
    pool_release(&t->pool, e->priv_zone);
    pool_release(&t->pool, e->priv_reason);
    e->priv_zone = e->priv_reason = 0;
    slot_free(t, i);
}

/* Returns the new entry's slot, or NIL. */
static uint32_t entry_create(struct probe_table *t, const struct probe_key *k, const char *zone, double now)
{
    if (t->size >= t->pol.max_entries) {
        /* Busy entries are never evicted: the prober holds their pointers. */
        uint32_t v = t->lru_tail;
        while (v != NIL && slot(t, v)->status == PROBE_BUSY)
            v = slot(t, v)->priv_lru_prev;
        if (v == NIL)
            return NIL;
        entry_remove(t, slot(t, v));
        t->evictions++;
    }
    const char *z = zone && *zone ? zone : ".";
    uint32_t zid = pool_intern(&t->pool, t->seed, z, strlen(z));
    if (!zid)
        return NIL;
    uint32_t i = slot_alloc(t);
    if (i == NIL) {
        pool_release(&t->pool, zid);
        return NIL;
    }
    struct probe_entry *e = slot(t, i);
    memset(e, 0, sizeof *e);
    memcpy(e->priv_ip, k->b, 16);
    e->priv_scope = k->scope;
    e->priv_zone = zid;
    for (int w = 0; w <= PROBE_T_MAX; w++)
        e->priv_time[w] = TIME_NEVER;
    e->status = PROBE_UNKNOWN;
    e->last_outcome = PROBE_OK;
    e->priv_sched = SCHED_NONE;
    T_SET(t, e, PROBE_T_FIRST_SEEN, now);
    T_SET(t, e, PROBE_T_STATUS_SINCE, now);
    uint32_t b = bucket_of(t, k->b);
    e->priv_hnext = t->buckets[b];
    t->buckets[b] = i;
    lru_push_front(t, i);
    t->by_status[PROBE_UNKNOWN]++;
    t->size++;
    buckets_grow(t);
    return i;
}

/* Empty again: every entry, slab and string gone; buckets back to 16. */
static void table_clear(struct probe_table *t)
{
    while (t->lru_head != NIL)
        entry_remove(t, slot(t, t->lru_head));
    for (uint32_t k = 0; k < t->nslabs; k++)
        free(t->slabs[k]);
    free(t->slabs);
    t->slabs = NULL;
    t->nslabs = t->slabs_cap = t->slots_used = 0;
    t->free_slot = NIL;
    pool_free(&t->pool);
    uint32_t *b = realloc(t->buckets, 16 * sizeof *b);
    if (b) {
        t->buckets = b;
        t->nbuckets = 16;
    }
    memset(t->buckets, 0xff, t->nbuckets * sizeof *t->buckets);
}

struct probe_table *probe_table_new(const struct probe_policy *pol, uint32_t seed)
{
    struct probe_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->pol = *pol;
    if (t->pol.max_entries == 0)
        t->pol.max_entries = 1;
    if (t->pol.max_entries > NIL - 1)
        t->pol.max_entries = NIL - 1;
    if (t->pol.max_busy_probes == 0)
        t->pol.max_busy_probes = 1;
    t->seed = seed;
    t->lru_head = t->lru_tail = t->free_slot = NIL;
    /* Grows with the table (load <= 1), whatever max_entries is. */
    t->nbuckets = 16;
    t->buckets = malloc(t->nbuckets * sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    memset(t->buckets, 0xff, t->nbuckets * sizeof *t->buckets);
    return t;
}

void probe_table_free(struct probe_table *t)
{
    if (!t)
        return;
    t->ops = NULL;  /* nobody to cancel at this point */
    table_clear(t);
    free(t->buckets);
    free(t->ring);
    free(t->questions);
    free(t);
}

const struct probe_policy *probe_table_policy(const struct probe_table *t) { return &t->pol; }

struct probe_entry *probe_table_find(struct probe_table *t, const struct net_addr *ip)
{
    struct probe_key k;
    if (key_of(ip, &k) < 0)
        return NULL;
    uint32_t i = find_key(t, &k);
    return i == NIL ? NULL : slot(t, i);
}

/* ---- questions to probe with ---------------------------------------------- */

#define PROBE_QUESTIONS 256

struct probe_question {
    uint8_t ip[16];
    bool used, rd;
    uint8_t len;
    uint16_t qtype;
    uint8_t name[255];
};

static struct probe_question *question_slot(const struct probe_table *t, const struct probe_key *k)
{
    uint32_t h = str_hash(t->seed, (const char *)k->b, sizeof k->b);
    return &t->questions[h % PROBE_QUESTIONS];
}

void probe_table_note_question(struct probe_table *t, const struct net_addr *ip, const uint8_t *qname,
                               size_t qlen, uint16_t qtype, bool rd)
{
    struct probe_key k;
    if (qlen == 0 || qlen > 255 || key_of(ip, &k) < 0)
        return;
    uint32_t i = find_key(t, &k);
    if (i == NIL || slot(t, i)->status != PROBE_UNKNOWN)
        return;
    if (!t->questions && !(t->questions = calloc(PROBE_QUESTIONS, sizeof *t->questions)))
        return;
    struct probe_question *q = question_slot(t, &k);
    memcpy(q->ip, k.b, sizeof q->ip);
    q->used = true;
    q->rd = rd;
    q->qtype = qtype;
    q->len = (uint8_t)qlen;
    memcpy(q->name, qname, qlen);
}

bool probe_table_question(const struct probe_table *t, const struct net_addr *ip, uint8_t *qname, size_t *qlen,
                          uint16_t *qtype, bool *rd)
{
    struct probe_key k;
    if (!t->questions || key_of(ip, &k) < 0)
        return false;
    const struct probe_question *q = question_slot(t, &k);
    if (!q->used || memcmp(q->ip, k.b, sizeof q->ip) != 0)
        return false;
    memcpy(qname, q->name, q->len);
    *qlen = q->len;
    *qtype = q->qtype;
    *rd = q->rd;
    return true;
}

/* ---- scheduling ----------------------------------------------------------- */

static void sched_start(struct probe_table *t, struct probe_entry *e, double now)
{
    e->priv_sched = SCHED_RUNNING;
    t->running++;
    T_SET(t, e, PROBE_T_INITIATED, now);
    COUNT(t, e, C_PROBES, probes);
    entry_set_status(t, e, PROBE_BUSY, "probe started", now);
    t->ops->start(t->ops_arg, e);  /* may call probe_table_probe_done(e) */
}

static void sched_pump(struct probe_table *t, double now)
{
    while (t->ops && t->queued && t->running < t->pol.max_busy_probes)
        sched_start(t, queue_pop(t), now);
}

/* The entry is due for a probe: start it, or queue it, or (queue full)
 * leave it as it is so a later visit tries again. Returns 0 or -1. */
static int sched_want(struct probe_table *t, struct probe_entry *e, const char *why, double now)
{
    if (e->priv_sched != SCHED_NONE)
        return 0;
    if (t->ops && !t->queued && t->running < t->pol.max_busy_probes) {
        sched_start(t, e, now);
        return 0;
    }
    if (t->queued >= t->pol.max_queued_probes || queue_push(t, e) < 0) {
        char ip[NET_ADDRSTRLEN];
        struct net_addr a;
        probe_entry_addr(e, &a);
        log_debug("dot-probe: %s: probe queue full (%u), retry on a later visit",
                  net_ip_str(&a, ip, sizeof ip), t->queued);
        return -1;
    }
    entry_set_status(t, e, PROBE_BUSY, why, now);
    return 0;
}

void probe_table_set_sched(struct probe_table *t, const struct probe_sched *ops, void *arg, double now)
{
    t->ops = ops;
    t->ops_arg = arg;
    table_clock(t, now);
    sched_pump(t, now);
}

static unsigned clamp16(unsigned v) { return v > UINT16_MAX ? UINT16_MAX : v; }

/* Starts a probe if the entry's status and clock say one is due. */
static void maybe_probe(struct probe_table *t, struct probe_entry *e, double now)
{
    switch (e->status) {
    case PROBE_UNKNOWN:
        if (e->priv_window_visits >= clamp16(t->pol.probe_after_visits))
            sched_want(t, e, "visited", now);
        break;
    case PROBE_BAD:
        if (now - T_GET(t, e, PROBE_T_COMPLETED) >= t->pol.damping)
            sched_want(t, e, "damping over", now);
        break;
    case PROBE_GOOD:
        if (now - T_GET(t, e, PROBE_T_LAST_RESPONSE) >= t->pol.persistence) {
            /* It worked before: re-probe at once rather than wait for visits. */
            entry_set_status(t, e, PROBE_UNKNOWN, "persistence over", now);
            sched_want(t, e, "persistence over", now);
        }
        break;
    default:
        break;
    }
}

/* Find-or-create for visit and request; NULL if no memory or all Busy. */
static struct probe_entry *find_or_create(struct probe_table *t, const struct net_addr *ip, const char *zone,
                                          double now)
{
    struct probe_key k;
    if (key_of(ip, &k) < 0)
        return NULL;
    table_clock(t, now);
    uint32_t i = find_key(t, &k);
    if (i == NIL) {
        i = entry_create(t, &k, zone, now);
        if (i == NIL)
            return NULL;
    } else {
        lru_touch(t, i);
    }
    return slot(t, i);
}

struct probe_entry *probe_table_visit(struct probe_table *t, const struct net_addr *ip,
                                      const char *zone, double now)
{
    struct probe_entry *e = find_or_create(t, ip, zone, now);
    if (!e)
        return NULL;
    if (e->visits < UINT32_MAX)
        e->visits++;
    if (e->priv_time[TIME_WINDOW] == TIME_NEVER || now - T_GET(t, e, TIME_WINDOW) > t->pol.damping) {
        T_SET(t, e, TIME_WINDOW, now);
        e->priv_window_visits = 0;
    }
    if (e->priv_window_visits < UINT16_MAX)
        e->priv_window_visits++;
    maybe_probe(t, e, now);
    return e;
}

int probe_table_request(struct probe_table *t, const struct net_addr *ip, const char *zone,
                        double now, bool force)
{
    struct probe_entry *e = find_or_create(t, ip, zone, now);
    if (!e)
        return -1;
    switch (e->status) {
    case PROBE_BUSY:
        return 0;
    case PROBE_UNKNOWN:
        return sched_want(t, e, force ? "recheck" : "probe on start", now);
    case PROBE_BAD:
        if (force || now - T_GET(t, e, PROBE_T_COMPLETED) >= t->pol.damping)
            return sched_want(t, e, force ? "recheck" : "damping over", now);
        return -1;
    case PROBE_GOOD:
        if (force)
            return sched_want(t, e, "recheck", now);
        return -1;
    default:
        return -1;
    }
}

bool probe_table_use_dot(const struct probe_table *t, const struct probe_entry *e, double now)
{
    return e && e->status == PROBE_GOOD && now - T_GET(t, e, PROBE_T_LAST_RESPONSE) < t->pol.persistence;
}

static void set_reason(struct probe_table *t, struct probe_entry *e, enum probe_outcome o, const char *reason)
{
    char buf[PROBE_REASON_MAX + 1];
    e->last_outcome = (uint8_t)o;
    snprintf(buf, sizeof buf, "%s%s%s", outcome_names[o], reason && *reason ? ": " : "", reason ? reason : "");
    entry_set_reason_text(t, e, buf);
}

void probe_table_probe_done(struct probe_table *t, struct probe_entry *e, enum probe_outcome o,
                            const char *reason, bool verified, double now)
{
    if (e->priv_sched != SCHED_RUNNING || (unsigned)o >= PROBE_OUTCOME_MAX)
        return;  /* not ours (a stale report): the table stays consistent */
    e->priv_sched = SCHED_NONE;
    t->running--;
    table_clock(t, now);
    T_SET(t, e, PROBE_T_COMPLETED, now);
    if (o == PROBE_OK) {
        COUNT(t, e, C_SUCCESSES, successes);
        e->last_outcome = (uint8_t)o;
        T_SET(t, e, PROBE_T_LAST_RESPONSE, now);
        T_SET(t, e, PROBE_T_LAST_ACTIVITY, now);
        e->dot_consecutive_failures = 0;
        e->verified = verified;
        entry_set_status(t, e, PROBE_GOOD, verified ? "probe ok, certificate verified" : "probe ok", now);
    } else {
        COUNT_FAIL(t, e, o);
        set_reason(t, e, o, reason);
        if (o == PROBE_LOCAL_ERROR) {
            /* Our fault, not the server's: no damping, count visits afresh. */
            e->priv_window_visits = 0;
            T_SET(t, e, TIME_WINDOW, now);
            entry_set_status(t, e, PROBE_UNKNOWN, probe_entry_reason(t, e), now);
        } else {
            entry_set_status(t, e, PROBE_BAD, probe_entry_reason(t, e), now);
        }
    }
    sched_pump(t, now);
}

void probe_table_set_session(struct probe_entry *e, struct tls_session *s)
{
    if (e->session == s)
        return;
    tls_session_free(e->session);
    e->session = s;
}

void probe_table_dot_result(struct probe_table *t, const struct net_addr *ip, enum probe_outcome o,
                            const char *reason, double now)
{
    struct probe_entry *e = probe_table_find(t, ip);
    if (!e || (unsigned)o >= PROBE_OUTCOME_MAX)
        return;
    table_clock(t, now);
    T_SET(t, e, PROBE_T_LAST_ACTIVITY, now);
    bool good = e->status == PROBE_GOOD;
    switch (o) {
    case PROBE_OK:
        COUNT(t, e, C_DOT_QUERIES, dot_queries);
        T_SET(t, e, PROBE_T_LAST_RESPONSE, now);
        e->dot_consecutive_failures = 0;
        return;
    case PROBE_QUERY_TIMEOUT:
    case PROBE_BAD_ANSWER:
    case PROBE_RESET:
        COUNT(t, e, C_DOT_QUERIES, dot_queries);
        COUNT_FAIL(t, e, o);  /* a re-send is counted by probe_table_count_fallbacks */
        set_reason(t, e, o, reason);
        if (good && ++e->dot_consecutive_failures >= clamp16(t->pol.dot_fail_threshold)) {
            char why[PROBE_REASON_MAX + 64];
            snprintf(why, sizeof why, "%u consecutive DoT failures, last %s",
                     (unsigned)e->dot_consecutive_failures, probe_entry_reason(t, e));
            T_SET(t, e, PROBE_T_COMPLETED, now);  /* damp from the failure, not from the last handshake */
            entry_set_status(t, e, PROBE_BAD, why, now);
        }
        return;
    case PROBE_CONNECT_REFUSED:
    case PROBE_CONNECT_TIMEOUT:
    case PROBE_TLS_FAILED:
        COUNT_FAIL(t, e, o);
        set_reason(t, e, o, reason);
        if (good) {
            T_SET(t, e, PROBE_T_COMPLETED, now);
            entry_set_status(t, e, PROBE_BAD, probe_entry_reason(t, e), now);
        }
        return;
    default:  /* CLOSED_CLEAN: reconnect next time; LOCAL_ERROR: not the server */
        COUNT_FAIL(t, e, o);
        return;
    }
}

void probe_table_count_fallbacks(struct probe_table *t, const struct net_addr *ip, unsigned n)
{
    struct probe_entry *e = probe_table_find(t, ip);
    if (!e)
        return;
    count_add(&e->priv_count[C_FALLBACKS], n);
    t->totals.fallbacks += n;
}

int probe_table_forget(struct probe_table *t, const struct net_addr *ip)
{
    struct probe_entry *e = probe_table_find(t, ip);
    if (!e)
        return -1;
    entry_remove(t, e);
    sched_pump(t, t->last_now);
    return 0;
}

void probe_table_forget_all(struct probe_table *t)
{
    table_clear(t);
}

const struct probe_entry *probe_table_first(const struct probe_table *t)
{
    return t->lru_head == NIL ? NULL : slot(t, t->lru_head);
}

const struct probe_entry *probe_table_next(const struct probe_table *t, const struct probe_entry *e)
{
    return e->priv_lru_next == NIL ? NULL : slot(t, e->priv_lru_next);
}

size_t probe_table_size(const struct probe_table *t) { return t->size; }
uint64_t probe_table_evictions(const struct probe_table *t) { return t->evictions; }

size_t probe_table_count(const struct probe_table *t, enum probe_status s)
{
    return (unsigned)s < PROBE_STATUS_MAX ? t->by_status[s] : 0;
}

unsigned probe_table_running(const struct probe_table *t) { return t->running; }
unsigned probe_table_queued(const struct probe_table *t) { return t->queued; }
const struct probe_counters *probe_table_totals(const struct probe_table *t) { return &t->totals; }

size_t probe_table_strings(const struct probe_table *t, size_t *bytes)
{
    if (bytes)
        *bytes = t->pool.bytes;
    return t->pool.count;
}

void probe_table_set_authoritative(struct probe_entry *e, bool authoritative)
{
    e->authoritative = authoritative;
}

int probe_table_restore(struct probe_table *t, const struct probe_saved *s, double now)
{
    struct probe_key k;
    if (key_of(&s->ip, &k) < 0 || (unsigned)s->last_outcome >= PROBE_OUTCOME_MAX ||
        (s->status != PROBE_UNKNOWN && s->status != PROBE_GOOD && s->status != PROBE_BAD))
        return -1;
    table_clock(t, now);
    if (find_key(t, &k) != NIL)
        return 1;
    if (t->size >= t->pol.max_entries)
        return -1;  /* the file was saved most recent first: keep what came before */
    uint32_t i = entry_create(t, &k, s->zone, now);
    if (i == NIL)
        return -1;
    struct probe_entry *e = slot(t, i);
    if (s->reason && *s->reason) {
        entry_set_reason_text(t, e, s->reason);
        if (!e->priv_reason) {
            entry_remove(t, e);
            return -1;
        }
    }
    lru_unlink(t, e);
    lru_push_back(t, i);
    T_SET(t, e, PROBE_T_FIRST_SEEN, s->first_seen);
    T_SET(t, e, PROBE_T_INITIATED, s->initiated);
    T_SET(t, e, PROBE_T_COMPLETED, s->completed);
    T_SET(t, e, PROBE_T_LAST_RESPONSE, s->last_response);
    e->visits = s->visits;
    e->last_outcome = (uint8_t)s->last_outcome;
    e->verified = s->verified;
    e->authoritative = s->authoritative;
    count_add(&e->priv_count[C_PROBES], s->counters.probes);
    count_add(&e->priv_count[C_SUCCESSES], s->counters.successes);
    count_add(&e->priv_count[C_DOT_QUERIES], s->counters.dot_queries);
    count_add(&e->priv_count[C_FALLBACKS], s->counters.fallbacks);
    for (int o = 1; o < PROBE_OUTCOME_MAX; o++)
        count_add(&e->priv_count[C_FAIL(o)], s->counters.failures[o]);
    e->session = s->session;
    if (s->status != PROBE_UNKNOWN)
        entry_transition(t, e, s->status, "restored from the state file", now, LOG_LVL_DEBUG);
    T_SET(t, e, PROBE_T_STATUS_SINCE, s->status_since > 0 ? s->status_since : now);
    return 0;
}

void probe_table_set_policy(struct probe_table *t, const struct probe_policy *pol)
{
    t->pol = *pol;
}
