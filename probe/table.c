/* probe/table.c: the per-IP DoT table. entry_transition() is the only
 * writer of a status; everything else reports outcomes to it. */
#include "probe/table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/tls.h"

#define PROBE_DOT_PORT 853

struct probe_table {
    struct probe_policy pol;
    uint32_t seed;
    struct probe_entry **buckets;
    size_t nbuckets;  /* power of two */
    size_t size;
    size_t by_status[PROBE_STATUS_MAX];
    struct probe_entry *lru_head, *lru_tail;
    struct probe_entry *q_head, *q_tail;
    unsigned queued, running;
    const struct probe_sched *ops;
    void *ops_arg;
    double last_now;  /* for starts triggered by forget(), which has no clock */
    struct probe_counters totals;
};

/* A counter lives twice: in the entry (for the dump) and in the totals
 * (for metrics, which must not drop when an entry is evicted). */
#define COUNT(t, e, field) ((e)->counters.field++, (t)->totals.field++)

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

/* ---- keys and hashing ---------------------------------------------------- */

struct probe_key {
    uint8_t family;  /* 4 or 6 */
    uint8_t b[16];
};

static int key_of(const struct net_addr *a, struct probe_key *k)
{
    memset(k, 0, sizeof *k);
    if (a->u.sa.sa_family == AF_INET) {
        k->family = 4;
        memcpy(k->b, &a->u.in4.sin_addr, 4);
        return 0;
    }
    if (a->u.sa.sa_family == AF_INET6) {
        const uint8_t *p = a->u.in6.sin6_addr.s6_addr;
        /* A v4-mapped address (dual-stack socket) is the IPv4 server. */
        if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
            k->family = 4;
            memcpy(k->b, p + 12, 4);
        } else {
            k->family = 6;
            memcpy(k->b, p, 16);
        }
        return 0;
    }
    return -1;
}

static void key_to_addr(const struct probe_key *k, const struct net_addr *orig, struct net_addr *out)
{
    memset(out, 0, sizeof *out);
    if (k->family == 4) {
        out->u.in4.sin_family = AF_INET;
        memcpy(&out->u.in4.sin_addr, k->b, 4);
        out->u.in4.sin_port = htons(PROBE_DOT_PORT);
        out->len = sizeof out->u.in4;
    } else {
        out->u.in6 = orig->u.in6;  /* keeps the scope of a link-local server */
        out->u.in6.sin6_port = htons(PROBE_DOT_PORT);
        out->len = sizeof out->u.in6;
    }
}

static bool key_matches(const struct probe_key *k, const struct probe_entry *e)
{
    struct probe_key ek;
    key_of(&e->ip, &ek);
    return ek.family == k->family && memcmp(ek.b, k->b, k->family == 4 ? 4 : 16) == 0;
}

/* Keyed multiply-rotate mix with a murmur3 finaliser: not cryptographic,
 * but the seed stops anyone from choosing IPs that share a chain. */
static size_t key_hash(const struct probe_table *t, const struct probe_key *k)
{
    uint32_t h = t->seed ^ k->family;
    size_t n = k->family == 4 ? 4 : 16;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w;
        memcpy(&w, k->b + i, 4);
        h ^= w * 0xcc9e2d51u;
        h = (h << 13) | (h >> 19);
        h = h * 5u + 0xe6546b64u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h & (t->nbuckets - 1);
}

static struct probe_entry *find_key(const struct probe_table *t, const struct probe_key *k)
{
    for (struct probe_entry *e = t->buckets[key_hash(t, k)]; e; e = e->hnext)
        if (key_matches(k, e))
            return e;
    return NULL;
}

/* ---- lists ---------------------------------------------------------------- */

static void lru_unlink(struct probe_table *t, struct probe_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        t->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        t->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct probe_table *t, struct probe_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = t->lru_head;
    if (t->lru_head)
        t->lru_head->lru_prev = e;
    else
        t->lru_tail = e;
    t->lru_head = e;
}

static void lru_push_back(struct probe_table *t, struct probe_entry *e)
{
    e->lru_next = NULL;
    e->lru_prev = t->lru_tail;
    if (t->lru_tail)
        t->lru_tail->lru_next = e;
    else
        t->lru_head = e;
    t->lru_tail = e;
}

static void lru_touch(struct probe_table *t, struct probe_entry *e)
{
    if (t->lru_head == e)
        return;
    lru_unlink(t, e);
    lru_push_front(t, e);
}

static void queue_push(struct probe_table *t, struct probe_entry *e)
{
    e->q_next = NULL;
    e->q_prev = t->q_tail;
    if (t->q_tail)
        t->q_tail->q_next = e;
    else
        t->q_head = e;
    t->q_tail = e;
    e->sched = PROBE_SCHED_QUEUED;
    t->queued++;
}

static void queue_remove(struct probe_table *t, struct probe_entry *e)
{
    if (e->q_prev)
        e->q_prev->q_next = e->q_next;
    else
        t->q_head = e->q_next;
    if (e->q_next)
        e->q_next->q_prev = e->q_prev;
    else
        t->q_tail = e->q_prev;
    e->q_prev = e->q_next = NULL;
    e->sched = PROBE_SCHED_NONE;
    t->queued--;
}

/* ---- the one status writer ----------------------------------------------- */

double probe_entry_expiry(const struct probe_table *t, const struct probe_entry *e)
{
    switch (e->status) {
    case PROBE_GOOD: return e->last_response + t->pol.persistence;
    case PROBE_BAD: return e->completed + t->pol.damping;
    default: return 0;
    }
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
    e->status = to;
    e->status_since = now;

    char ip[NET_ADDRSTRLEN], when[32], next[64];
    net_ip_str(&e->ip, ip, sizeof ip);
    switch (to) {
    case PROBE_GOOD:
        snprintf(next, sizeof next, "dot until %s", log_iso_time(probe_entry_expiry(t, e), when, sizeof when));
        break;
    case PROBE_BAD:
        snprintf(next, sizeof next, "retry after %s", log_iso_time(probe_entry_expiry(t, e), when, sizeof when));
        break;
    case PROBE_BUSY:
        snprintf(next, sizeof next, "%s", e->sched == PROBE_SCHED_QUEUED ? "queued" : "probing");
        break;
    default:
        snprintf(next, sizeof next, "probe after %u visits", t->pol.probe_after_visits);
        break;
    }
    log_limited(&e->loglim, level, "dot-probe: %s %s -> %s (%s; %s)", ip,
                status_names[from], status_names[to], reason && *reason ? reason : "-", next);
}

static void entry_set_status(struct probe_table *t, struct probe_entry *e, enum probe_status to,
                             const char *reason, double now)
{
    entry_transition(t, e, to, reason, now, LOG_LVL_INFO);
}

/* ---- entries -------------------------------------------------------------- */

static void entry_remove(struct probe_table *t, struct probe_entry *e)
{
    if (e->sched == PROBE_SCHED_RUNNING) {
        e->sched = PROBE_SCHED_NONE;
        t->running--;
        if (t->ops && t->ops->cancel)
            t->ops->cancel(t->ops_arg, e);
    } else if (e->sched == PROBE_SCHED_QUEUED) {
        queue_remove(t, e);
    }
    struct probe_key k;
    key_of(&e->ip, &k);
    struct probe_entry **pp = &t->buckets[key_hash(t, &k)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(t, e);
    t->by_status[e->status]--;
    t->size--;
    tls_session_free(e->session);
    free(e->zone);
    free(e);
}

static struct probe_entry *entry_create(struct probe_table *t, const struct probe_key *k,
                                        const struct net_addr *ip, const char *zone, double now)
{
    if (t->size >= t->pol.max_entries) {
        /* Busy entries are never evicted: the prober holds their pointers. */
        struct probe_entry *victim = t->lru_tail;
        while (victim && victim->status == PROBE_BUSY)
            victim = victim->lru_prev;
        if (!victim)
            return NULL;
        entry_remove(t, victim);
    }
    struct probe_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->zone = strdup(zone && *zone ? zone : ".");
    if (!e->zone) {
        free(e);
        return NULL;
    }
    key_to_addr(k, ip, &e->ip);
    e->status = PROBE_UNKNOWN;
    e->first_seen = e->status_since = now;
    size_t b = key_hash(t, k);
    e->hnext = t->buckets[b];
    t->buckets[b] = e;
    lru_push_front(t, e);
    t->by_status[PROBE_UNKNOWN]++;
    t->size++;
    return e;
}

struct probe_table *probe_table_new(const struct probe_policy *pol, uint32_t seed)
{
    struct probe_table *t = calloc(1, sizeof *t);
    if (!t)
        goto fail;
    t->pol = *pol;
    if (t->pol.max_entries == 0)
        t->pol.max_entries = 1;
    if (t->pol.max_busy_probes == 0)
        t->pol.max_busy_probes = 1;
    t->seed = seed;
    /* Fixed size: max_entries bounds the table, so the load stays <= 1. */
    t->nbuckets = 16;
    while (t->nbuckets < t->pol.max_entries)
        t->nbuckets <<= 1;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets)
        goto fail;
    return t;
fail:
    probe_table_free(t);
    return NULL;
}

void probe_table_free(struct probe_table *t)
{
    if (!t)
        return;
    t->ops = NULL;  /* nobody to cancel at this point */
    while (t->lru_head)
        entry_remove(t, t->lru_head);
    free(t->buckets);
    free(t);
}

const struct probe_policy *probe_table_policy(const struct probe_table *t) { return &t->pol; }

struct probe_entry *probe_table_find(struct probe_table *t, const struct net_addr *ip)
{
    struct probe_key k;
    if (key_of(ip, &k) < 0)
        return NULL;
    return find_key(t, &k);
}

/* ---- scheduling ----------------------------------------------------------- */

static void sched_start(struct probe_table *t, struct probe_entry *e, double now)
{
    e->sched = PROBE_SCHED_RUNNING;
    t->running++;
    e->initiated = now;
    COUNT(t, e, probes);
    entry_set_status(t, e, PROBE_BUSY, "probe started", now);
    t->ops->start(t->ops_arg, e);  /* may call probe_table_probe_done(e) */
}

static void sched_pump(struct probe_table *t, double now)
{
    while (t->ops && t->q_head && t->running < t->pol.max_busy_probes) {
        struct probe_entry *e = t->q_head;
        queue_remove(t, e);
        sched_start(t, e, now);
    }
}

/* The entry is due for a probe: start it, or queue it, or (queue full)
 * leave it as it is so a later visit tries again. Returns 0 or -1. */
static int sched_want(struct probe_table *t, struct probe_entry *e, const char *why, double now)
{
    if (e->sched != PROBE_SCHED_NONE)
        return 0;
    if (t->ops && !t->q_head && t->running < t->pol.max_busy_probes) {
        sched_start(t, e, now);
        return 0;
    }
    if (t->queued >= t->pol.max_queued_probes) {
        char ip[NET_ADDRSTRLEN];
        log_debug("dot-probe: %s: probe queue full (%u), retry on a later visit",
                  net_ip_str(&e->ip, ip, sizeof ip), t->queued);
        return -1;
    }
    queue_push(t, e);
    entry_set_status(t, e, PROBE_BUSY, why, now);
    return 0;
}

void probe_table_set_sched(struct probe_table *t, const struct probe_sched *ops, void *arg, double now)
{
    t->ops = ops;
    t->ops_arg = arg;
    t->last_now = now;
    sched_pump(t, now);
}

/* Starts a probe if the entry's status and clock say one is due. */
static void maybe_probe(struct probe_table *t, struct probe_entry *e, double now)
{
    switch (e->status) {
    case PROBE_UNKNOWN:
        if (e->window_visits >= t->pol.probe_after_visits)
            sched_want(t, e, "visited", now);
        break;
    case PROBE_BAD:
        if (now - e->completed >= t->pol.damping)
            sched_want(t, e, "damping over", now);
        break;
    case PROBE_GOOD:
        if (now - e->last_response >= t->pol.persistence) {
            /* It worked before: re-probe at once rather than wait for visits. */
            entry_set_status(t, e, PROBE_UNKNOWN, "persistence over", now);
            sched_want(t, e, "persistence over", now);
        }
        break;
    default:
        break;
    }
}

struct probe_entry *probe_table_visit(struct probe_table *t, const struct net_addr *ip,
                                      const char *zone, double now)
{
    struct probe_key k;
    if (key_of(ip, &k) < 0)
        return NULL;
    t->last_now = now;
    struct probe_entry *e = find_key(t, &k);
    if (!e) {
        e = entry_create(t, &k, ip, zone, now);
        if (!e)
            return NULL;
    } else {
        lru_touch(t, e);
    }
    e->visits++;
    if (e->window_start == 0 || now - e->window_start > t->pol.damping) {
        e->window_start = now;
        e->window_visits = 0;
    }
    e->window_visits++;
    maybe_probe(t, e, now);
    return e;
}

int probe_table_request(struct probe_table *t, const struct net_addr *ip, const char *zone,
                        double now, bool force)
{
    struct probe_key k;
    if (key_of(ip, &k) < 0)
        return -1;
    t->last_now = now;
    struct probe_entry *e = find_key(t, &k);
    if (!e) {
        e = entry_create(t, &k, ip, zone, now);
        if (!e)
            return -1;
    } else {
        lru_touch(t, e);
    }
    switch (e->status) {
    case PROBE_BUSY:
        return 0;
    case PROBE_UNKNOWN:
        return sched_want(t, e, force ? "recheck" : "probe on start", now);
    case PROBE_BAD:
        if (force || now - e->completed >= t->pol.damping)
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
    return e && e->status == PROBE_GOOD && now - e->last_response < t->pol.persistence;
}

static void set_reason(struct probe_entry *e, enum probe_outcome o, const char *reason)
{
    e->last_outcome = o;
    snprintf(e->reason, sizeof e->reason, "%s%s%s", outcome_names[o],
             reason && *reason ? ": " : "", reason ? reason : "");
}

void probe_table_probe_done(struct probe_table *t, struct probe_entry *e, enum probe_outcome o,
                            const char *reason, bool verified, double now)
{
    if (e->sched != PROBE_SCHED_RUNNING || (unsigned)o >= PROBE_OUTCOME_MAX)
        return;  /* not ours (a stale report): the table stays consistent */
    e->sched = PROBE_SCHED_NONE;
    t->running--;
    t->last_now = now;
    e->completed = now;
    if (o == PROBE_OK) {
        COUNT(t, e, successes);
        e->last_outcome = o;
        e->last_response = e->last_activity = now;
        e->dot_consecutive_failures = 0;
        e->verified = verified;
        entry_set_status(t, e, PROBE_GOOD, verified ? "probe ok, certificate verified" : "probe ok", now);
    } else {
        COUNT(t, e, failures[o]);
        set_reason(e, o, reason);
        if (o == PROBE_LOCAL_ERROR) {
            /* Our fault, not the server's: no damping, count visits afresh. */
            e->window_visits = 0;
            e->window_start = now;
            entry_set_status(t, e, PROBE_UNKNOWN, e->reason, now);
        } else {
            entry_set_status(t, e, PROBE_BAD, e->reason, now);
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
    t->last_now = now;
    e->last_activity = now;
    bool good = e->status == PROBE_GOOD;
    switch (o) {
    case PROBE_OK:
        COUNT(t, e, dot_queries);
        e->last_response = now;
        e->dot_consecutive_failures = 0;
        return;
    case PROBE_QUERY_TIMEOUT:
    case PROBE_BAD_ANSWER:
    case PROBE_RESET:
        COUNT(t, e, dot_queries);
        COUNT(t, e, failures[o]);  /* a re-send is counted by probe_table_count_fallbacks */
        set_reason(e, o, reason);
        if (good && ++e->dot_consecutive_failures >= t->pol.dot_fail_threshold) {
            char why[160];
            snprintf(why, sizeof why, "%u consecutive DoT failures, last %s",
                     e->dot_consecutive_failures, e->reason);
            e->completed = now;  /* damp from the failure, not from the last handshake */
            entry_set_status(t, e, PROBE_BAD, why, now);
        }
        return;
    case PROBE_CONNECT_REFUSED:
    case PROBE_CONNECT_TIMEOUT:
    case PROBE_TLS_FAILED:
        COUNT(t, e, failures[o]);
        set_reason(e, o, reason);
        if (good) {
            e->completed = now;
            entry_set_status(t, e, PROBE_BAD, e->reason, now);
        }
        return;
    default:  /* CLOSED_CLEAN: reconnect next time; LOCAL_ERROR: not the server */
        COUNT(t, e, failures[o]);
        return;
    }
}

void probe_table_count_fallbacks(struct probe_table *t, const struct net_addr *ip, unsigned n)
{
    struct probe_entry *e = probe_table_find(t, ip);
    if (!e)
        return;
    e->counters.fallbacks += n;
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
    while (t->lru_head)
        entry_remove(t, t->lru_head);
}

const struct probe_entry *probe_table_first(const struct probe_table *t) { return t->lru_head; }
const struct probe_entry *probe_table_next(const struct probe_entry *e) { return e->lru_next; }
size_t probe_table_size(const struct probe_table *t) { return t->size; }

size_t probe_table_count(const struct probe_table *t, enum probe_status s)
{
    return (unsigned)s < PROBE_STATUS_MAX ? t->by_status[s] : 0;
}

unsigned probe_table_running(const struct probe_table *t) { return t->running; }
unsigned probe_table_queued(const struct probe_table *t) { return t->queued; }
const struct probe_counters *probe_table_totals(const struct probe_table *t) { return &t->totals; }

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
    if (find_key(t, &k))
        return 1;
    if (t->size >= t->pol.max_entries)
        return -1;  /* the file was saved most recent first: keep what came before */
    struct probe_entry *e = entry_create(t, &k, &s->ip, s->zone, now);
    if (!e)
        return -1;
    lru_unlink(t, e);
    lru_push_back(t, e);
    e->first_seen = s->first_seen;
    e->initiated = s->initiated;
    e->completed = s->completed;
    e->last_response = s->last_response;
    e->visits = s->visits;
    e->last_outcome = s->last_outcome;
    snprintf(e->reason, sizeof e->reason, "%s", s->reason ? s->reason : "");
    e->verified = s->verified;
    e->authoritative = s->authoritative;
    e->counters = s->counters;
    e->session = s->session;
    if (s->status != PROBE_UNKNOWN)
        entry_transition(t, e, s->status, "restored from the state file", now, LOG_LVL_DEBUG);
    e->status_since = s->status_since > 0 ? s->status_since : now;
    return 0;
}

void probe_table_set_policy(struct probe_table *t, const struct probe_policy *pol)
{
    t->pol = *pol;
}
