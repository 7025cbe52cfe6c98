/* proxy/query.c: one client query, from its arrival to its answer. */
#include "proxy/query.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/listener.h"
#include "lib/log.h"
#include "proxy/proxy.h"
#include "proxy/stream.h"
#include "proxy/udp_pool.h"
#include "proxy/upstream.h"

/* Queries kept for reuse instead of freed; enough for a burst, small when idle. */
#define QUERY_FREE_MAX 256
/* Queries in flight on a DoT connection before a second one is opened. */
#define DOT_SECOND_CONN_AT 64

static void query_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void query_next_try(struct query *q);

void client_send(struct proxy *px, const struct client *c, const uint8_t *msg, size_t len)
{
    if (c->tcp)
        tcp_client_send(c->tcp, msg, len);
    else
        listener_udp_send(c->udp, &c->peer, msg, len);
    (void)px;
}

/* A message from `c` has been dealt with without starting a query. */
static void client_done(const struct client *c)
{
    if (c->tcp)
        tcp_client_query_done(c->tcp);
}

static void respond_error(struct proxy *px, const struct client *c, const uint8_t *msg, size_t len,
                          const struct wire_msg *wm, enum wire_rcode rcode)
{
    uint8_t out[WIRE_HDR_LEN + WIRE_MAX_NAME + 4 + 11];
    size_t n = wire_make_error(out, sizeof out, msg, len, wm, (uint16_t)px->cfg->edns_buffer_size, rcode);
    if (n)
        client_send(px, c, out, n);
    client_done(c);
}

static bool acl_allows(const struct config *cfg, const struct net_addr *peer)
{
    for (size_t i = 0; i < cfg->n_allow; i++)
        if (net_prefix_match(&cfg->allow[i], peer))
            return true;
    return false;
}

static struct query *query_alloc(struct proxy *px, size_t len)
{
    struct query *q = px->free_queries;
    if (q) {
        px->free_queries = q->next;
        px->n_free--;
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

void query_receive(struct proxy *px, const struct client *c, const uint8_t *msg, size_t len)
{
    const struct config *cfg = px->cfg;
    struct wire_msg wm;
    bool allowed = acl_allows(cfg, &c->peer);
    if (!allowed && cfg->acl_action == CONFIG_ACL_DROP) {
        px->stats.dropped_acl++;
        client_done(c);
        return;
    }
    int r = wire_parse_query(msg, len, &wm);
    if (r == WIRE_ERR_SHORT || r == WIRE_ERR_QR) {
        /* Nothing to answer to: a reply could be aimed at a third party. */
        px->stats.malformed_dropped++;
        client_done(c);
        return;
    }
    if (!allowed) {
        px->stats.refused_acl++;
        respond_error(px, c, msg, len, r == WIRE_OK ? &wm : NULL, WIRE_REFUSED);
        return;
    }
    if (r == WIRE_ERR_OPCODE) {
        px->stats.notimp_sent++;
        respond_error(px, c, msg, len, NULL, WIRE_NOTIMP);
        return;
    }
    if (r != WIRE_OK) {
        px->stats.formerr_sent++;
        respond_error(px, c, msg, len, NULL, WIRE_FORMERR);
        return;
    }
    const struct route_zone *zone = route_lookup(px->routes, msg + wm.qname_off, wm.qname_len);
    if (!zone || zone->n_servers == 0) {
        px->stats.servfail++;
        respond_error(px, c, msg, len, &wm, WIRE_SERVFAIL);
        return;
    }
    struct query *q = px->inflight < cfg->max_queries ? query_alloc(px, wm.end) : NULL;
    if (!q) {
        px->stats.overload++;
        respond_error(px, c, msg, len, &wm, WIRE_SERVFAIL);
        return;
    }
    q->px = px;
    /* Bytes after the last record are not part of the message: not forwarded. */
    q->len = wm.end;
    memcpy(q->msg, msg, q->len);
    q->wm = wm;
    q->client = *c;
    if (c->tcp)
        tcp_client_ref(c->tcp);
    else
        listener_ref(c->udp);
    q->routes = route_table_ref(px->routes);
    q->zone = zone;
    q->want_tcp = c->tcp != NULL;
    q->start = ev_now(px->loop);
    q->deadline = q->start + cfg->timeout;
    ev_init(&q->timer, query_timer_cb);
    q->timer.data = q;
    q->next = px->active;
    if (px->active)
        px->active->prev = q;
    px->active = q;
    px->inflight++;
    query_next_try(q);
}

static void cancel_try(struct query_try *t)
{
    if (t->kind == TRY_UDP)
        udp_pool_cancel(t->q->px->udp, t);
    else if ((t->kind == TRY_TCP || t->kind == TRY_DOT) && t->stream)
        stream_cancel(t->stream, t);
    t->kind = TRY_NONE;
}

static void query_finish(struct query *q)
{
    struct proxy *px = q->px;
    for (unsigned i = 0; i < q->n_tries; i++)
        cancel_try(&q->tries[i]);
    ev_timer_stop(px->loop, &q->timer);
    if (q->prev)
        q->prev->next = q->next;
    else
        px->active = q->next;
    if (q->next)
        q->next->prev = q->prev;
    px->inflight--;
    if (q->client.tcp) {
        tcp_client_query_done(q->client.tcp);
        tcp_client_unref(q->client.tcp);
    } else {
        listener_unref(q->client.udp);
    }
    route_table_unref(q->routes);
    if (q->msg != q->inline_buf)
        free(q->msg);
    if (px->n_free < QUERY_FREE_MAX) {
        q->next = px->free_queries;
        px->free_queries = q;
        px->n_free++;
    } else {
        free(q);
    }
    if (px->draining && px->inflight == 0)
        proxy_drained(px);
}

static void query_servfail(struct query *q)
{
    struct proxy *px = q->px;
    uint8_t out[WIRE_HDR_LEN + WIRE_MAX_NAME + 4 + 11];
    size_t n = wire_make_error(out, sizeof out, q->msg, q->len, &q->wm,
                               (uint16_t)px->cfg->edns_buffer_size, WIRE_SERVFAIL);
    px->stats.servfail++;
    if (n)
        client_send(px, &q->client, out, n);
    query_finish(q);
}

static void arm_timer(struct query *q, double at)
{
    struct proxy *px = q->px;
    double now = ev_now(px->loop);
    if (at > q->deadline)
        at = q->deadline;
    ev_timer_stop(px->loop, &q->timer);
    ev_timer_set(&q->timer, at > now ? at - now : 0, 0);
    ev_timer_start(px->loop, &q->timer);
}

static struct stream *dot_stream(struct proxy *px, struct upstream *up)
{
    /* One connection per server; a second only while the first is busy. */
    struct stream **d = up->dot;
    if (!d[0] && !(d[0] = stream_new(px, up, STREAM_DOT)))
        return NULL;
    if (stream_inflight(d[0]) < DOT_SECOND_CONN_AT)
        return d[0];
    if (!d[1] && !(d[1] = stream_new(px, up, STREAM_DOT)))
        return d[0];
    return stream_inflight(d[1]) < stream_inflight(d[0]) ? d[1] : d[0];
}

/* The path selector: DoT for strict upstreams and for Good IPs
 * (RFC 9539 4.6.1), else Do53 over the client's transport. */
static enum try_kind choose_path(struct query *q, struct upstream *up, double now)
{
    struct proxy *px = q->px;
    switch (up->tls_policy) {
    case UPSTREAM_TLS_STRICT:
        return TRY_DOT;
    case UPSTREAM_TLS_OPPORTUNISTIC:
        if (px->probes && up != q->dot_failed) {
            struct probe_entry *e = probe_table_visit(px->probes, &up->addr, q->zone->text, now);
            if (e && e->authoritative != !up->rd)
                probe_table_set_authoritative(e, !up->rd);
            if (e && probe_table_use_dot(px->probes, e, now))
                return TRY_DOT;
        }
        break;
    case UPSTREAM_TLS_OFF:
        break;
    }
    return q->want_tcp ? TRY_TCP : TRY_UDP;
}

/* Sends the query to `up` over `kind`. Returns 0 (timer armed) or -1. */
static int start_try(struct query *q, struct upstream *up, enum try_kind kind, double now)
{
    struct proxy *px = q->px;
    if (q->n_tries >= QUERY_MAX_TRIES)
        return -1;
    struct query_try *t = &q->tries[q->n_tries++];
    memset(t, 0, sizeof *t);
    t->q = q;
    t->up = up;
    t->sent_at = now;
    t->via = kind;
    int r = -1;
    double wait = upstream_rto(up, px->cfg->attempt_timeout);
    if (kind == TRY_DOT) {
        struct stream *s = dot_stream(px, up);
        if (s && !stream_is_open(s))
            wait = px->cfg->attempt_timeout; /* the handshake comes first */
        r = s ? stream_send(s, q, t) : -1;
    } else if (kind == TRY_TCP) {
        if (!up->tcp)
            up->tcp = stream_new(px, up, STREAM_TCP);
        r = up->tcp ? stream_send(up->tcp, q, t) : -1;
    } else {
        r = udp_pool_send(px->udp, q, t);
    }
    if (r < 0) {
        t->kind = TRY_NONE;
        px->stats.upstream_errors++;
        return -1;
    }
    up->sent++;
    arm_timer(q, now + wait);
    return 0;
}

/* Sends the query to the next server of its zone, or waits out the deadline
 * for a late answer to an earlier try when every try is used. */
static void query_next_try(struct query *q)
{
    struct proxy *px = q->px;
    double now = ev_now(px->loop);
    while (q->n_tries < QUERY_MAX_TRIES) {
        int idx = route_select(q->zone, q->tried, now, &px->rng);
        if (idx < 0)
            break;
        q->tried |= 1u << idx;
        struct upstream *up = q->zone->servers[idx];
        if (start_try(q, up, choose_path(q, up, now), now) == 0)
            return;
        upstream_failed(up, now);
    }
    arm_timer(q, q->deadline);
}

static struct query_try *latest_try(struct query *q)
{
    return q->n_tries ? &q->tries[q->n_tries - 1] : NULL;
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
    if (t && t->kind != TRY_NONE) {
        q->px->stats.upstream_timeouts++;
        t->up->timeouts++;
        if (t->kind == TRY_DOT) {
            /* A DoT peer that stops answering is dead for every query on the
             * connection: close it; each waiting query, this one included,
             * comes back through query_on_try_failed(). */
            stream_abort(t->stream, PROBE_QUERY_TIMEOUT, "query timed out");
            return;
        }
        /* The try stays pending: a late answer is still welcome. */
        upstream_failed(t->up, now);
    }
    query_next_try(q);
}

static void count_fallback(struct proxy *px, int why)
{
    switch (why) {
    case PROBE_CONNECT_REFUSED:
    case PROBE_CONNECT_TIMEOUT: px->stats.fallback_connect++; break;
    case PROBE_TLS_FAILED: px->stats.fallback_tls++; break;
    case PROBE_QUERY_TIMEOUT: px->stats.fallback_timeout++; break;
    case PROBE_BAD_ANSWER: px->stats.fallback_bad_answer++; break;
    default: px->stats.fallback_closed++; break;
    }
}

void query_on_try_failed(struct query_try *t, int why)
{
    struct query *q = t->q;
    struct proxy *px = q->px;
    double now = ev_now(px->loop);
    struct upstream *up = t->up;
    bool running = t == latest_try(q);
    if (up->tls_policy == UPSTREAM_TLS_OPPORTUNISTIC && t->via == TRY_DOT) {
        /* RFC 9539 4.6.5-4.6.7: the same question goes to the same server
         * over Do53 at once; the client never waits for DoT to recover. */
        q->dot_failed = up;
        if (running && start_try(q, up, q->want_tcp ? TRY_TCP : TRY_UDP, now) == 0) {
            count_fallback(px, why);
            if (px->probes)
                probe_table_count_fallbacks(px->probes, &up->addr, 1);
            return;
        }
    } else {
        if (t->via == TRY_DOT)
            px->stats.strict_failures++;
        upstream_failed(up, now);
    }
    /* Only the running try drives the schedule; older ones were timed out already. */
    if (running)
        query_next_try(q);
}

void query_on_answer(struct query_try *t, uint8_t *msg, size_t len, const struct wire_msg *wm)
{
    struct query *q = t->q;
    struct proxy *px = q->px;
    double now = ev_now(px->loop);
    upstream_rtt_sample(t->up, now - t->sent_at);
    stats_latency_add(&px->stats, t->via == TRY_DOT ? STATS_DOT : t->via == TRY_TCP ? STATS_TCP : STATS_UDP,
                      now - t->sent_at);
    if ((wm->flags & WIRE_TC) && t->via == TRY_UDP && !q->want_tcp &&
        q->n_tries < QUERY_MAX_TRIES) {
        /* RFC 7766: the whole answer is to be had over TCP, from the same server. */
        px->stats.upstream_tc++;
        q->want_tcp = true;
        struct upstream *up = t->up;
        struct query_try *nt = &q->tries[q->n_tries++];
        memset(nt, 0, sizeof *nt);
        nt->q = q;
        nt->up = up;
        nt->sent_at = now;
        if (!up->tcp)
            up->tcp = stream_new(px, up, STREAM_TCP);
        nt->via = TRY_TCP;
        if (up->tcp && stream_send(up->tcp, q, nt) == 0) {
            arm_timer(q, now + upstream_rto(up, px->cfg->attempt_timeout));
            return;
        }
        /* No TCP: the truncated answer is still an answer. */
    }
    wire_set_id(msg, q->wm.id);
    wire_restore_case(msg, wm, q->msg, &q->wm);
    if (!q->client.tcp) {
        size_t max = wire_client_udp_size(&q->wm);
        if (len > max) {
            len = wire_truncate(msg, len, wm, max);
            px->stats.truncated++;
        }
    }
    px->stats.answered++;
    px->stats.rcodes[WIRE_RCODE(wm->flags)]++;
    client_send(px, &q->client, msg, len);
    query_finish(q);
}

void query_fail_all(struct proxy *px)
{
    while (px->active)
        query_servfail(px->active);
}

void query_pool_free(struct proxy *px)
{
    while (px->free_queries) {
        struct query *q = px->free_queries;
        px->free_queries = q->next;
        free(q);
    }
    px->n_free = 0;
}
