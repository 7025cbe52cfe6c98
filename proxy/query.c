/* proxy/query.c: one client query, from its arrival to its answer. */
#include "proxy/query.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/log.h"
#include "proxy/health.h"
#include "proxy/route.h"
#include "proxy/stats.h"
#include "proxy/targets.h"
#include "proxy/view.h"

#define QUERY_MAX_TRIES 6
#define QUERY_INLINE_BYTES 512
/* Queries kept for reuse instead of freed; enough for a burst, small when idle. */
#define QUERY_FREE_MAX 256

struct query;

struct query_try {
    struct treq r;             /* held by a transport while r.owner is set */
    struct query *q;
    enum try_kind via;
    struct route_server *srv;  /* borrowed from the query's view */
    double sent_at;
    bool unprobed;             /* its IP was Unknown: the answer's question is noted for the probe */
};

struct query {
    struct query_pool *pool;
    struct query *prev, *next;       /* pool->active, or pool->free_list (next only) */
    struct client client;
    struct view *view;               /* a reference */
    const struct route_zone *zone;   /* inside the view's routes; NULL when intercepted */
    struct route_server *fixed;      /* intercepted: the one server, held */
    struct wire_msg wm;
    uint8_t *msg;                    /* the client's query as received */
    size_t len;
    double start, deadline;
    ev_timer timer;
    uint32_t tried;                  /* bit per server index of the zone */
    unsigned n_tries;
    bool want_tcp;                   /* TCP client, or the upstream said TC */
    bool verbatim;                   /* signed, or another opcode: forwarded byte for byte */
    bool plain_udp;                  /* another opcode from a UDP client: over UDP, as it came */
    bool good;                       /* the first try went over DoT: counted for the privacy share */
    bool unprobed;                   /* choose_path saw the server's IP Unknown (for start_try) */
    const struct route_server *dot_failed; /* DoT failed to it: Do53 only, for this query */
    /* The latest try is over DoT and outlived its RTO: the query waits on
     * its live connection, asks other servers over DoT only, and at
     * `fallback_at` (dot-fallback = availability) over Do53 too. */
    bool dot_waiting;
    double fallback_at;
    struct query_try tries[QUERY_MAX_TRIES];
    uint8_t inline_buf[QUERY_INLINE_BYTES];
};

struct query_pool {
    struct query_env env;
    struct tsink sink;
    struct query *active;
    struct query *free_list;
    unsigned inflight, n_free;
};

static void query_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void query_next_try(struct query *q);

static void start_transfer(struct query_pool *p, struct view *v, const struct client *c, const uint8_t *msg,
                           size_t len, const struct wire_msg *wm, const struct route_zone *zone,
                           struct route_server *fixed);

static enum health_path path_of(enum try_kind kind) { return kind == TRY_DOT ? HEALTH_DOT : HEALTH_DO53; }

static bool tcp_try_pending(const struct query *q)
{
    for (unsigned i = 0; i < q->n_tries; i++)
        if (q->tries[i].via == TRY_TCP && q->tries[i].r.owner)
            return true;
    return false;
}

static void on_answer(void *arg, struct treq *r, uint8_t *msg, size_t len, const struct wire_msg *wm);
static void on_failed(void *arg, struct treq *r, enum probe_outcome why);

static struct query_try *try_of(struct treq *r)
{
    return (struct query_try *)((char *)r - offsetof(struct query_try, r));
}

struct query_pool *query_pool_new(const struct query_env *env)
{
    struct query_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->env = *env;
    p->sink.answer = on_answer;
    p->sink.failed = on_failed;
    p->sink.arg = p;
    return p;
}

const struct tsink *query_pool_sink(struct query_pool *p) { return &p->sink; }
unsigned query_pool_inflight(const struct query_pool *p) { return p->inflight; }

static void client_send(const struct client *c, const uint8_t *msg, size_t len)
{
    c->ops->send(c, msg, len);
}

static void respond_error(struct query_pool *p, const struct view *v, const struct client *c, const uint8_t *msg,
                          size_t len, const struct wire_msg *wm, enum wire_rcode rcode)
{
    uint8_t out[WIRE_HDR_LEN + WIRE_MAX_NAME + 4 + 11];
    size_t n = wire_make_error(out, sizeof out, msg, len, wm, (uint16_t)v->cfg->edns_buffer_size, rcode);
    (void)p;
    if (n)
        client_send(c, out, n);
    c->ops->done(c->conn);
}

static bool acl_allows(const struct config *cfg, const struct net_addr *peer)
{
    for (size_t i = 0; i < cfg->n_allow; i++)
        if (net_prefix_match(&cfg->allow[i], peer))
            return true;
    return false;
}

/* NOTIFY, UPDATE and opcodes not assigned yet go to the zone's server as
 * they came; IQUERY (obsolete), STATUS and DSO (a session with us, RFC
 * 8490) have nothing to forward. */
static bool forwardable(unsigned op)
{
    return op != WIRE_OP_IQUERY && op != WIRE_OP_STATUS && op != WIRE_OP_DSO;
}

static struct query *query_alloc(struct query_pool *p, size_t len)
{
    struct query *q = p->free_list;
    if (q) {
        p->free_list = q->next;
        p->n_free--;
    } else {
        q = malloc(sizeof *q);
        if (!q)
            return NULL;
    }
    /* Only the fixed part is cleared; the inline buffer is overwritten. */
    memset(q, 0, offsetof(struct query, inline_buf));
    q->msg = len <= sizeof q->inline_buf ? q->inline_buf : malloc(len);
    if (!q->msg) {
        free(q);
        return NULL;
    }
    return q;
}

void query_receive(struct query_pool *p, struct view *v, const struct client *c, const uint8_t *msg, size_t len)
{
    const struct config *cfg = v->cfg;
    struct stats *st = p->env.stats;
    struct wire_msg wm;
    /* Intercepted traffic was chosen by the firewall rules: they are its ACL. */
    bool transparent = c->to.len != 0;
    bool allowed = transparent || acl_allows(cfg, &c->peer);
    if (!allowed && cfg->acl_action == CONFIG_ACL_DROP) {
        st->dropped_acl++;
        c->ops->done(c->conn);
        return;
    }
    int r = wire_parse_query(msg, len, &wm);
    if (r == WIRE_ERR_SHORT || r == WIRE_ERR_QR) {
        /* Nothing to answer to: a reply could be aimed at a third party. */
        st->malformed_dropped++;
        c->ops->done(c->conn);
        return;
    }
    if (!allowed) {
        st->refused_acl++;
        respond_error(p, v, c, msg, len, r == WIRE_OK ? &wm : NULL, WIRE_REFUSED);
        return;
    }
    unsigned op = WIRE_OPCODE(wm.flags);
    if (r == WIRE_OK ? !forwardable(op) : op != WIRE_OP_QUERY) {
        st->notimp_sent++;
        respond_error(p, v, c, msg, len, r == WIRE_OK ? &wm : NULL, WIRE_NOTIMP);
        return;
    }
    if (r != WIRE_OK) {
        st->formerr_sent++;
        respond_error(p, v, c, msg, len, NULL, WIRE_FORMERR);
        return;
    }
    const struct route_zone *zone = NULL;
    struct route_server *fixed = NULL;
    if (transparent) {
        /* The resolver chose the server: the address it sent to. */
        if (!p->env.targets || !(fixed = targets_get(p->env.targets, &c->to))) {
            st->servfail++;
            respond_error(p, v, c, msg, len, &wm, WIRE_SERVFAIL);
            return;
        }
    } else {
        zone = route_lookup(v->routes, msg + wm.qname_off, wm.qname_len);
        if (op != WIRE_OP_QUERY && (!zone || zone->n_servers == 0)) {
            st->notimp_sent++;
            respond_error(p, v, c, msg, len, &wm, WIRE_NOTIMP);
            return;
        }
        if (!zone || zone->n_servers == 0) {
            st->servfail++;
            respond_error(p, v, c, msg, len, &wm, WIRE_SERVFAIL);
            return;
        }
    }
    if (op == WIRE_OP_QUERY && c->ops->stream && p->env.transfer &&
        (wm.qtype == WIRE_TYPE_AXFR || wm.qtype == WIRE_TYPE_IXFR)) {
        start_transfer(p, v, c, msg, len, &wm, zone, fixed);
        if (fixed)
            route_server_release(fixed);
        return;
    }
    struct query *q = p->inflight < cfg->max_queries ? query_alloc(p, wm.end) : NULL;
    if (!q) {
        st->overload++;
        if (fixed)
            route_server_release(fixed);
        respond_error(p, v, c, msg, len, &wm, WIRE_SERVFAIL);
        return;
    }
    q->pool = p;
    /* Bytes after the last record are not part of the message: not forwarded. */
    q->len = wm.end;
    memcpy(q->msg, msg, q->len);
    q->wm = wm;
    q->client = *c;
    c->ops->ref(c->conn);
    q->view = view_ref(v);
    q->zone = zone;
    q->fixed = fixed;
    q->want_tcp = c->ops->stream;
    q->verbatim = wm.signed_msg || op != WIRE_OP_QUERY;
    q->plain_udp = op != WIRE_OP_QUERY && !c->ops->stream;
    q->start = ev_now(p->env.loop);
    q->deadline = q->start + cfg->timeout;
    ev_init(&q->timer, query_timer_cb);
    q->timer.data = q;
    q->next = p->active;
    if (p->active)
        p->active->prev = q;
    p->active = q;
    p->inflight++;
    query_next_try(q);
}

static void cancel_try(struct query_try *t)
{
    if (t->r.owner) {
        const struct query_transports *tx = &t->q->pool->env.tx;
        tx->cancel(tx->arg, t->via, &t->r);
    }
}

static void query_finish(struct query *q)
{
    struct query_pool *p = q->pool;
    for (unsigned i = 0; i < q->n_tries; i++)
        cancel_try(&q->tries[i]);
    ev_timer_stop(p->env.loop, &q->timer);
    if (q->prev)
        q->prev->next = q->next;
    else
        p->active = q->next;
    if (q->next)
        q->next->prev = q->prev;
    p->inflight--;
    q->client.ops->done(q->client.conn);
    q->client.ops->unref(q->client.conn);
    view_unref(q->view);
    if (q->fixed)
        route_server_release(q->fixed);
    if (q->msg != q->inline_buf)
        free(q->msg);
    if (p->n_free < QUERY_FREE_MAX) {
        q->next = p->free_list;
        p->free_list = q;
        p->n_free++;
    } else {
        free(q);
    }
    if (p->inflight == 0 && p->env.idle)
        p->env.idle(p->env.idle_arg);
}

static void query_servfail(struct query *q)
{
    uint8_t out[WIRE_HDR_LEN + WIRE_MAX_NAME + 4 + 11];
    size_t n = wire_make_error(out, sizeof out, q->msg, q->len, &q->wm,
                               (uint16_t)q->view->cfg->edns_buffer_size, WIRE_SERVFAIL);
    q->pool->env.stats->servfail++;
    if (n)
        client_send(&q->client, out, n);
    query_finish(q);
}

static void arm_timer(struct query *q, double at)
{
    struct ev_loop *loop = q->pool->env.loop;
    double now = ev_now(loop);
    if (at > q->deadline)
        at = q->deadline;
    ev_timer_stop(loop, &q->timer);
    ev_timer_set(&q->timer, at > now ? at - now : 0, 0);
    ev_timer_start(loop, &q->timer);
}

/* An opportunistic server is used over DoT when its IP is Good (RFC 9539
 * 4.6.1); the visit also counts towards probing it. */
static bool opportunistic_dot(struct probe_table *probes, const char *zone, const struct route_server *srv,
                              double now, bool *unprobed)
{
    struct probe_entry *e = probe_table_visit(probes, &srv->addr, zone, now);
    if (e && e->authoritative != !srv->rd)
        probe_table_set_authoritative(e, !srv->rd);
    if (unprobed)
        *unprobed = e && e->status == PROBE_UNKNOWN;
    return e && probe_table_use_dot(probes, e, now);
}

/* The path selector: DoT for strict servers and for Good IPs, else Do53
 * over the client's transport. */
/* The name the probe table files an IP under: its zone, or for an
 * intercepted query (no zone known) the last two labels of the question
 * that brought it in ("example.org."): a name an operator recognises, and
 * short and shared among the IPs of one domain, so that the table's string
 * pool stays small at Internet scale. */
static const char *visit_zone(const struct route_zone *zone, const uint8_t *msg, const struct wire_msg *wm,
                              char *buf, size_t bufsz)
{
    if (zone)
        return zone->text;
    const uint8_t *name = msg + wm->qname_off;
    size_t offs[WIRE_MAX_NAME / 2 + 1], n = 0;
    for (size_t i = 0; i < wm->qname_len && name[i] != 0; i += 1u + name[i])
        offs[n++] = i;
    size_t from = n > 2 ? offs[n - 2] : 0;
    return wire_name_str(name + from, wm->qname_len - from, buf, bufsz);
}

static enum try_kind choose_path(struct query *q, struct route_server *srv, double now)
{
    char name[WIRE_MAX_NAME * 4 + 1];
    q->unprobed = false;
    if (q->plain_udp)
        return TRY_UDP;
    if (srv->tls == SERVER_TLS_STRICT)
        return TRY_DOT;
    if (srv->tls == SERVER_TLS_OPPORTUNISTIC && srv != q->dot_failed) {
        /* The name is only read when the IP gets its entry: not formatted per query. */
        const char *zone = q->zone || !probe_table_find(q->pool->env.probes, &srv->addr)
                               ? visit_zone(q->zone, q->msg, &q->wm, name, sizeof name)
                               : NULL;
        if (opportunistic_dot(q->pool->env.probes, zone, srv, now, &q->unprobed))
            return TRY_DOT;
    }
    return q->want_tcp ? TRY_TCP : TRY_UDP;
}

/* AXFR and IXFR from a stream client go to one server on a connection of
 * their own (RFC 5936 4.2; XoT, RFC 9103, where DoT is used). */
static void start_transfer(struct query_pool *p, struct view *v, const struct client *c, const uint8_t *msg,
                           size_t len, const struct wire_msg *wm, const struct route_zone *zone,
                           struct route_server *fixed)
{
    double now = ev_now(p->env.loop);
    char name[WIRE_MAX_NAME * 4 + 1];
    struct route_server *srv = fixed ? fixed : zone->servers[route_select(zone, 0, now, p->env.rng)];
    enum try_kind kind = srv->tls == SERVER_TLS_STRICT ||
                                 (srv->tls == SERVER_TLS_OPPORTUNISTIC &&
                                  opportunistic_dot(p->env.probes, visit_zone(zone, msg, wm, name, sizeof name),
                                                    srv, now, NULL))
                             ? TRY_DOT
                             : TRY_TCP;
    if (p->env.transfer(p->env.transfer_arg, v, c, msg, len, wm, srv, kind) < 0) {
        p->env.stats->servfail++;
        respond_error(p, v, c, msg, len, wm, WIRE_SERVFAIL);
    }
}

/* Sends the query to `srv` over `kind`. Returns 0 (timer armed) or -1. */
static int start_try(struct query *q, struct route_server *srv, enum try_kind kind, double now)
{
    struct query_pool *p = q->pool;
    const struct config *cfg = q->view->cfg;
    if (q->n_tries >= QUERY_MAX_TRIES)
        return -1;
    struct query_try *t = &q->tries[q->n_tries++];
    memset(t, 0, sizeof *t);
    t->q = q;
    t->srv = srv;
    t->sent_at = now;
    t->via = kind;
    t->r.msg = q->msg;
    t->r.len = q->len;
    t->r.wm = &q->wm;
    t->r.to = &srv->addr;
    t->r.tls = srv->profile;
    t->r.verbatim = q->verbatim;
    t->unprobed = q->unprobed && kind != TRY_DOT;
    q->unprobed = false;
    if (kind != TRY_DOT)
        q->dot_waiting = false;
    bool opening = false;
    if (p->env.tx.send(p->env.tx.arg, kind, &t->r, &opening) < 0) {
        /* Transports fail at once only for reasons of our own (descriptors,
         * memory, the connection cap): not a strike against the server. */
        t->r.owner = NULL;
        p->env.stats->local_errors++;
        return -1;
    }
    srv->health->sent++;
    /* A new connection must be set up first: the handshake gets the whole attempt. */
    double wait = opening ? cfg->attempt_timeout : health_rto(srv->health, path_of(kind), cfg->attempt_timeout);
    arm_timer(q, now + wait);
    return 0;
}

/* Sends the query to the next server of its zone, or waits out the deadline
 * for a late answer to an earlier try when every try is used. */
static void query_next_try(struct query *q)
{
    double now = ev_now(q->pool->env.loop);
    while (q->n_tries < QUERY_MAX_TRIES) {
        struct route_server *srv = q->fixed;
        if (!srv) {
            int idx = route_select(q->zone, q->tried, now, q->pool->env.rng);
            if (idx < 0)
                break;
            q->tried |= 1u << idx;
            srv = q->zone->servers[idx];
        }
        enum try_kind kind = choose_path(q, srv, now);
        if (q->n_tries == 0 && kind == TRY_DOT && !q->good) {
            q->good = true;
            q->pool->env.stats->good_queries++;
        }
        if (start_try(q, srv, kind, now) == 0)
            return;
        /* No DoT connection to be had (a cap): an opportunistic server is
         * asked over Do53 rather than not at all. */
        if (kind == TRY_DOT && srv->tls == SERVER_TLS_OPPORTUNISTIC &&
            start_try(q, srv, q->want_tcp ? TRY_TCP : TRY_UDP, now) == 0) {
            q->pool->env.stats->fallback_conn_limit++;
            return;
        }
        if (q->fixed)
            break; /* a local shortage: the same server again would fail too */
    }
    arm_timer(q, q->deadline);
}

static struct query_try *latest_try(struct query *q)
{
    return q->n_tries ? &q->tries[q->n_tries - 1] : NULL;
}

/* While a DoT answer is late, the question may go to another server, but
 * over DoT only: a slow answer never puts the name on a plain leg. Returns
 * 0 if a try started. */
static int ask_another_over_dot(struct query *q, double now)
{
    if (q->fixed)
        return -1; /* the resolver chose this one server */
    uint32_t skip = q->tried;
    while (q->n_tries < QUERY_MAX_TRIES) {
        int idx = route_select(q->zone, skip, now, q->pool->env.rng);
        if (idx < 0 || (skip & (1u << idx)))
            return -1;
        skip |= 1u << idx;
        struct route_server *srv = q->zone->servers[idx];
        if (choose_path(q, srv, now) != TRY_DOT)
            continue; /* left for a later plain try, if one comes */
        q->tried |= 1u << idx;
        if (start_try(q, srv, TRY_DOT, now) == 0)
            return 0;
    }
    return -1;
}

/* The end of the budget's DoT part (dot-fallback = availability): the
 * question goes over Do53 to an opportunistic server it waits on over DoT,
 * whose answer over DoT is still taken if it comes first. */
static void fall_back_slow(struct query *q, double now)
{
    struct query_pool *p = q->pool;
    for (unsigned i = 0; i < q->n_tries; i++) {
        struct query_try *t = &q->tries[i];
        if (t->via != TRY_DOT || !t->r.owner || t->srv->tls != SERVER_TLS_OPPORTUNISTIC)
            continue;
        struct route_server *srv = t->srv;
        if (start_try(q, srv, q->want_tcp ? TRY_TCP : TRY_UDP, now) < 0)
            break;
        p->env.stats->fallback_timeout++;
        probe_table_count_fallbacks(p->env.probes, &srv->addr, 1);
        return;
    }
    if (q->dot_waiting) {
        /* Strict servers only: they are waited for until the deadline. */
        q->fallback_at = q->deadline;
        arm_timer(q, q->deadline);
        return;
    }
    query_next_try(q);
}

static void query_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct query *q = w->data;
    (void)revents;
    double now = ev_now(loop);
    if (now >= q->deadline - 1e-6) {
        query_servfail(q);
        return;
    }
    struct query_try *t = latest_try(q);
    if (q->dot_waiting) {
        if (now >= q->fallback_at - 1e-6)
            fall_back_slow(q, now);
        else if (!(t->via == TRY_DOT && t->r.owner) || ask_another_over_dot(q, now) < 0)
            arm_timer(q, q->fallback_at);
        return;
    }
    if (t && t->r.owner) {
        if (t->via == TRY_DOT) {
            /* Late on a live connection is slow, not lost: the stream tells a
             * dead path (proxy/stream.c) and fails the try then. */
            const struct config *cfg = q->view->cfg;
            q->pool->env.stats->dot_slow++;
            q->dot_waiting = true;
            q->fallback_at = cfg->dot_fallback == CONFIG_DOT_FALLBACK_AVAILABILITY
                                 ? q->deadline - cfg->attempt_timeout
                                 : q->deadline;
            if (ask_another_over_dot(q, now) < 0)
                arm_timer(q, q->fallback_at);
            return;
        }
        q->pool->env.stats->upstream_timeouts++;
        t->srv->health->timeouts++;
        /* The try stays pending: a late answer is still welcome. */
        health_failed(t->srv->health, now);
    }
    query_next_try(q);
}

static void count_fallback(struct stats *st, enum probe_outcome why)
{
    switch (why) {
    case PROBE_CONNECT_REFUSED:
    case PROBE_CONNECT_TIMEOUT: st->fallback_connect++; break;
    case PROBE_TLS_FAILED: st->fallback_tls++; break;
    case PROBE_QUERY_TIMEOUT: st->fallback_timeout++; break;
    case PROBE_BAD_ANSWER: st->fallback_bad_answer++; break;
    case PROBE_RESET: st->fallback_reset++; break;
    default: st->fallback_closed++; break;
    }
}

static void on_failed(void *arg, struct treq *r, enum probe_outcome why)
{
    struct query_try *t = try_of(r);
    struct query *q = t->q;
    struct query_pool *p = arg;
    double now = ev_now(p->env.loop);
    struct route_server *srv = t->srv;
    bool running = t == latest_try(q);
    if (srv->tls == SERVER_TLS_OPPORTUNISTIC && t->via == TRY_DOT) {
        /* RFC 9539 4.6.5-4.6.7: the same question goes to the same server
         * over Do53 at once; the client never waits for DoT to recover. */
        q->dot_failed = srv;
        if (running && start_try(q, srv, q->want_tcp ? TRY_TCP : TRY_UDP, now) == 0) {
            count_fallback(p->env.stats, why);
            probe_table_count_fallbacks(p->env.probes, &srv->addr, 1);
            return;
        }
    } else {
        if (t->via == TRY_DOT)
            p->env.stats->strict_failures++;
        health_failed(srv->health, now);
    }
    /* Only the running try drives the schedule; older ones were timed out already. */
    if (running)
        query_next_try(q);
}

static void on_answer(void *arg, struct treq *r, uint8_t *msg, size_t len, const struct wire_msg *wm)
{
    struct query_pool *p = arg;
    struct query_try *t = try_of(r);
    struct query *q = t->q;
    struct stats *st = p->env.stats;
    double now = ev_now(p->env.loop);
    health_rtt_sample(t->srv->health, path_of(t->via), now - t->sent_at);
    stats_latency_add(st, t->via == TRY_DOT ? STATS_DOT : t->via == TRY_TCP ? STATS_TCP : STATS_UDP,
                      now - t->sent_at);
    if ((wm->flags & WIRE_TC) && t->via == TRY_UDP && q->want_tcp && tcp_try_pending(q)) {
        /* A late answer to a UDP try that came before the move to TCP: the
         * whole answer is on its way (RFC 7766 5). */
        return;
    }
    if ((wm->flags & WIRE_TC) && t->via == TRY_UDP && !q->want_tcp && !q->plain_udp) {
        /* RFC 7766: the whole answer is to be had over TCP, from the same server.
         * Not for another opcode from a UDP client: the server has acted on
         * it already (an UPDATE sent again may apply twice), so the client
         * gets the TC=1 answer and retries over TCP itself if it wants. */
        st->upstream_tc++;
        q->want_tcp = true;
        if (start_try(q, t->srv, TRY_TCP, now) == 0)
            return;
        /* No TCP: the truncated answer is still an answer. */
    }
    wire_set_id(msg, q->wm.id);
    wire_restore_case(msg, wm, q->msg, &q->wm);
    if (!q->client.ops->stream) {
        size_t max = wire_client_udp_size(&q->wm);
        if (len > max) {
            len = wire_truncate(msg, len, wm, max);
            st->truncated++;
        }
    }
    /* A question this IP answered over Do53 is what its probe will ask
     * (a plain query, answered with data or a name error). */
    unsigned rcode = WIRE_RCODE(wm->flags);
    if (t->unprobed && !q->verbatim && (rcode == WIRE_NOERROR || rcode == WIRE_NXDOMAIN))
        probe_table_note_question(p->env.probes, &t->srv->addr, q->msg + q->wm.qname_off, q->wm.qname_len,
                                  q->wm.qtype, (q->wm.flags & WIRE_RD) != 0);
    st->answered++;
    if (t->via == TRY_DOT) {
        st->answered_dot++;
        if (q->good)
            st->good_queries_dot++;
    }
    st->rcodes[WIRE_RCODE(wm->flags)]++;
    client_send(&q->client, msg, len);
    query_finish(q);
}

void query_fail_all(struct query_pool *p)
{
    while (p->active)
        query_servfail(p->active);
}

void query_pool_free(struct query_pool *p)
{
    if (!p)
        return;
    p->env.idle = NULL;
    query_fail_all(p);
    while (p->free_list) {
        struct query *q = p->free_list;
        p->free_list = q->next;
        free(q);
    }
    free(p);
}
