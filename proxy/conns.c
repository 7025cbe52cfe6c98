/* proxy/conns.c: the upstream connection pool. */
#include "proxy/conns.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/flush.h"
#include "lib/ipkey.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "proxy/stats.h"

/* Requests in flight on a connection before a second one is opened. */
#define SECOND_CONN_AT 64
#define CONNS_PER_KEY 2
#define NBUCKETS 256   /* open connections are few (max_conns); chains stay short */

struct conns {
    struct stream_env env;          /* what every stream sees; closed/arg are ours */
    const struct stream_env *outer; /* the owner's hooks, called through ours */
    struct stream_env outer_copy;
    unsigned max_conns, max_dot;
    unsigned n_open[2];
    struct stream *buckets[NBUCKETS];
    struct stream **dead;           /* freed by `reap` */
    size_t n_dead, cap_dead;
    struct flush_item reap;
};

static uint32_t key_hash(const struct net_addr *a, enum stream_kind kind, const struct tls_profile *p)
{
    struct ip_key k;
    ip_key_of(a, &k);
    return ip_key_hash(&k, (uint32_t)(uintptr_t)p, net_addr_port(a) ^ ((uint32_t)kind << 16));
}

static bool key_matches(struct stream *s, const struct net_addr *a, enum stream_kind kind,
                        const struct tls_profile *p)
{
    return stream_kind(s) == kind && stream_profile(s) == p && net_addr_equal(stream_addr(s), a);
}

static void unlink_stream(struct conns *c, struct stream *s)
{
    struct stream_link *l = stream_link(s);
    for (struct stream **pp = &c->buckets[l->hash % NBUCKETS]; *pp; pp = &stream_link(*pp)->next) {
        if (*pp == s) {
            *pp = l->next;
            l->next = NULL;
            c->n_open[stream_kind(s)]--;
            return;
        }
    }
}

static void reap_cb(struct flush_item *it)
{
    struct conns *c = (struct conns *)((char *)it - offsetof(struct conns, reap));
    for (size_t i = 0; i < c->n_dead; i++)
        stream_free(c->dead[i]);
    c->n_dead = 0;
}

static void closed_cb(void *arg, struct stream *s)
{
    struct conns *c = arg;
    unlink_stream(c, s);
    if (c->n_dead == c->cap_dead) {
        size_t n = c->cap_dead ? c->cap_dead * 2 : 16;
        struct stream **nd = realloc(c->dead, n * sizeof *nd);
        if (!nd) {
            /* Leaked rather than freed under our feet: no memory is rare. */
            log_err("out of memory: a closed upstream connection is not freed");
            return;
        }
        c->dead = nd;
        c->cap_dead = n;
    }
    c->dead[c->n_dead++] = s;
    flusher_queue(c->env.flusher, &c->reap);
}

static void dot_outcome_cb(void *arg, const struct net_addr *ip, enum probe_outcome o, const char *reason)
{
    struct conns *c = arg;
    if (c->outer->dot_outcome)
        c->outer->dot_outcome(c->outer->arg, ip, o, reason);
}

static const struct tls_session *session_get_cb(void *arg, const struct net_addr *ip)
{
    struct conns *c = arg;
    return c->outer->session_get ? c->outer->session_get(c->outer->arg, ip) : NULL;
}

static void session_put_cb(void *arg, const struct net_addr *ip, struct tls_session *s)
{
    struct conns *c = arg;
    if (c->outer->session_put)
        c->outer->session_put(c->outer->arg, ip, s);
    else
        tls_session_free(s);
}

void conns_set_opts(struct conns *c, const struct conns_opts *o)
{
    c->max_conns = o->max_conns ? o->max_conns : 1;
    c->max_dot = o->max_dot && o->max_dot < c->max_conns ? o->max_dot : c->max_conns;
    c->env.idle = o->idle;
    c->env.setup = o->setup;
    c->env.edns_size = o->edns_size;
    c->env.mark = o->mark;
}

struct conns *conns_new(const struct stream_env *env, const struct conns_opts *o)
{
    struct conns *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->outer_copy = *env;
    c->outer = &c->outer_copy;
    c->env = *env;
    c->env.closed = closed_cb;
    c->env.dot_outcome = dot_outcome_cb;
    c->env.session_get = session_get_cb;
    c->env.session_put = session_put_cb;
    c->env.arg = c;
    flush_item_init(&c->reap, reap_cb);
    conns_set_opts(c, o);
    return c;
}

void conns_free(struct conns *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        while (c->buckets[b]) {
            struct stream *s = c->buckets[b];
            c->buckets[b] = stream_link(s)->next;
            stream_free(s);
        }
    }
    flusher_cancel(c->env.flusher, &c->reap);
    reap_cb(&c->reap);
    free(c->dead);
    free(c);
}

/* At a cap (all connections, or DoT ones for a DoT connection): closes one
 * idle connection that frees it, the first found (they are all equally
 * idle as far as requests go). Returns 0 if there is room now. */
static int make_room(struct conns *c, enum stream_kind kind)
{
    bool dot_full = kind == STREAM_DOT && c->n_open[STREAM_DOT] >= c->max_dot;
    if (!dot_full && c->n_open[0] + c->n_open[1] < c->max_conns)
        return 0;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct stream *s = c->buckets[b]; s; s = stream_link(s)->next)
            if (stream_inflight(s) == 0 && (!dot_full || stream_kind(s) == STREAM_DOT)) {
                stream_abort(s, PROBE_CLOSED_CLEAN, "closed to make room for another connection");
                return 0;
            }
    return -1;
}

static struct stream *add_stream(struct conns *c, const struct net_addr *a, enum stream_kind kind,
                                 struct tls_profile *p, uint32_t h)
{
    if (make_room(c, kind) < 0) {
        c->env.stats->upstream_conn_limit++;
        return NULL;
    }
    struct stream *s = stream_new(&c->env, a, kind, p);
    if (!s)
        return NULL;
    struct stream_link *l = stream_link(s);
    l->hash = h;
    l->next = c->buckets[h % NBUCKETS];
    c->buckets[h % NBUCKETS] = s;
    c->n_open[kind]++;
    return s;
}

/* One connection per key; a second only while the first is busy. */
static struct stream *pick(struct conns *c, const struct net_addr *to, enum stream_kind kind, struct tls_profile *p)
{
    struct net_addr a = *to;
    if (kind == STREAM_DOT)
        net_addr_set_port(&a, 853);
    uint32_t h = key_hash(&a, kind, p);
    struct stream *found[CONNS_PER_KEY];
    int n = 0;
    for (struct stream *s = c->buckets[h % NBUCKETS]; s && n < CONNS_PER_KEY; s = stream_link(s)->next)
        if (stream_link(s)->hash == h && key_matches(s, &a, kind, p))
            found[n++] = s;
    if (n == 0)
        return add_stream(c, &a, kind, p, h);
    struct stream *best = found[0];
    for (int i = 1; i < n; i++)
        if (stream_inflight(found[i]) < stream_inflight(best))
            best = found[i];
    if (stream_inflight(best) < SECOND_CONN_AT || n == CONNS_PER_KEY)
        return best;
    struct stream *second = add_stream(c, &a, kind, p, h);
    return second ? second : best;
}

int conns_send(struct conns *c, enum stream_kind kind, struct treq *r, bool *opening)
{
    struct stream *s = pick(c, r->to, kind, kind == STREAM_DOT ? r->tls : NULL);
    if (!s)
        return -1;
    *opening = !stream_is_open(s);
    return stream_send(s, r);
}

void conns_cancel(struct conns *c, struct treq *r)
{
    (void)c;
    if (r->owner)
        stream_cancel(r->owner, r);
}

void conns_adopt(struct conns *c, const struct net_addr *ip, struct tls_profile *tls, int fd,
                 struct tls_conn *conn)
{
    struct net_addr a = *ip;
    net_addr_set_port(&a, 853);
    uint32_t h = key_hash(&a, STREAM_DOT, tls);
    for (struct stream *s = c->buckets[h % NBUCKETS]; s; s = stream_link(s)->next)
        if (stream_link(s)->hash == h && key_matches(s, &a, STREAM_DOT, tls))
            goto close; /* it has one already */
    struct stream *s = add_stream(c, &a, STREAM_DOT, tls, h);
    if (s && stream_adopt(s, fd, conn) == 0)
        return;
close:
    tls_conn_free(conn);
    close(fd);
}

unsigned conns_open(const struct conns *c, enum stream_kind kind)
{
    unsigned n = 0;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct stream *s = c->buckets[b]; s; s = stream_link(s)->next)
            n += stream_kind(s) == kind && stream_is_open(s);
    return n;
}
