/* proxy/xfr.c: zone transfers on connections of their own. */
#include "proxy/xfr.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/flush.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "lib/wire.h"
#include "proxy/route.h"
#include "proxy/stats.h"
#include "proxy/view.h"

struct xfr {
    struct xfr_pool *pool;
    struct xfr *prev, *next;     /* pool->active while running */
    struct stream_env env;       /* the pool's, with this transfer's sink */
    struct tsink sink;
    struct stream *s, *failed;   /* owned; `failed`: a DoT one that failed first */
    struct treq r;
    struct client client;
    struct view *view;           /* a reference */
    struct route_server *srv;    /* borrowed from the view */
    enum try_kind kind;
    struct wire_msg wm;
    uint8_t *msg;
    size_t len;
    struct wire_xfr scan;
    uint64_t bytes, max_bytes;
    unsigned messages;
    bool ended;
    ev_timer timer;
    struct flush_item reap;      /* frees it once no callback of its stream is on the stack */
};

struct xfr_pool {
    struct stream_env outer;
    struct xfr *active;
    unsigned n_active;
};

struct xfr_pool *xfr_pool_new(const struct stream_env *env)
{
    struct xfr_pool *p = calloc(1, sizeof *p);
    if (p)
        p->outer = *env;
    return p;
}

unsigned xfr_pool_active(const struct xfr_pool *p) { return p->n_active; }

static void reap_cb(struct flush_item *it)
{
    struct xfr *x = (struct xfr *)((char *)it - offsetof(struct xfr, reap));
    stream_free(x->s);
    stream_free(x->failed);
    route_server_release(x->srv);
    view_unref(x->view);
    free(x->msg);
    free(x);
}

/* The client is told, the transfer leaves the pool; the memory goes when
 * the loop is about to block. */
static void end(struct xfr *x, bool broken, const char *why)
{
    struct xfr_pool *p = x->pool;
    struct stats *st = p->outer.stats;
    x->ended = true;
    ev_timer_stop(p->outer.loop, &x->timer);
    if (x->r.owner)
        stream_cancel(x->r.owner, &x->r);
    if (x->prev)
        x->prev->next = x->next;
    else
        p->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    p->n_active--;
    const struct client *c = &x->client;
    if (!broken) {
        st->xfr_completed++;
    } else if (x->messages == 0) {
        uint8_t out[WIRE_HDR_LEN + WIRE_MAX_NAME + 4 + 11];
        size_t n = wire_make_error(out, sizeof out, x->msg, x->len, &x->wm,
                                   (uint16_t)x->view->cfg->edns_buffer_size, WIRE_SERVFAIL);
        st->xfr_broken++;
        st->servfail++;
        if (n)
            c->ops->send(c, out, n);
    } else {
        char name[WIRE_MAX_NAME * 4 + 1], server[NET_ADDRSTRLEN];
        st->xfr_broken++;
        log_info("zone transfer of %s from %s broke off after %u messages: %s; closing the client's connection",
                 wire_name_str(x->msg + x->wm.qname_off, x->wm.qname_len, name, sizeof name),
                 net_addr_str(&x->srv->addr, server, sizeof server), x->messages, why);
        if (c->ops->close)
            c->ops->close(c->conn);
    }
    c->ops->done(c->conn);
    c->ops->unref(c->conn);
    flusher_queue(p->outer.flusher, &x->reap);
}

static void arm(struct xfr *x, double after)
{
    ev_timer_stop(x->pool->outer.loop, &x->timer);
    ev_timer_set(&x->timer, after, 0);
    ev_timer_start(x->pool->outer.loop, &x->timer);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct xfr *x = w->data;
    (void)loop;
    (void)revents;
    end(x, true, x->messages ? "no next message in time" : "no answer in time");
}

static void on_answer(void *arg, struct treq *r, uint8_t *msg, size_t len, const struct wire_msg *wm)
{
    struct xfr *x = arg;
    (void)r;
    if (x->ended)
        return;
    int done = wire_xfr_scan(&x->scan, x->wm.qtype, msg, len, wm);
    if (done < 0) {
        x->pool->outer.stats->upstream_malformed++;
        end(x, true, "a message that is not part of a zone transfer");
        return;
    }
    x->bytes += len;
    if (x->bytes > x->max_bytes) {
        end(x, true, "larger than max-transfer-mb");
        return;
    }
    wire_set_id(msg, x->wm.id);
    x->client.ops->send(&x->client, msg, len);
    x->messages++;
    if (done)
        end(x, false, NULL);
    else
        arm(x, x->view->cfg->upstream_tcp_idle);
}

static int send_on(struct xfr *x, enum try_kind kind)
{
    x->kind = kind;
    x->s = stream_new(&x->env, &x->srv->addr, kind == TRY_DOT ? STREAM_DOT : STREAM_TCP,
                      kind == TRY_DOT ? x->srv->profile : NULL);
    return x->s ? stream_send(x->s, &x->r) : -1;
}

static void on_failed(void *arg, struct treq *r, enum probe_outcome why)
{
    struct xfr *x = arg;
    (void)r;
    if (x->ended)
        return;
    /* Before anything was relayed, an opportunistic server's failed DoT
     * connection falls back to TCP, as a query's would (RFC 9539 4.6.5). */
    if (x->messages == 0 && x->kind == TRY_DOT && x->srv->tls == SERVER_TLS_OPPORTUNISTIC && !x->failed) {
        x->failed = x->s;
        x->s = NULL;
        if (send_on(x, TRY_TCP) == 0) {
            x->pool->outer.stats->fallback_connect++;
            return;
        }
    }
    end(x, true, probe_outcome_str(why));
}

static void stream_closed(void *arg, struct stream *s)
{
    (void)arg;
    (void)s; /* freed with the transfer */
}

static void dot_outcome(void *arg, const struct net_addr *ip, enum probe_outcome o, const char *reason)
{
    struct xfr *x = arg;
    const struct stream_env *e = &x->pool->outer;
    if (e->dot_outcome)
        e->dot_outcome(e->arg, ip, o, reason);
}

static const struct tls_session *session_get(void *arg, const struct net_addr *ip)
{
    struct xfr *x = arg;
    const struct stream_env *e = &x->pool->outer;
    return e->session_get ? e->session_get(e->arg, ip) : NULL;
}

static void session_put(void *arg, const struct net_addr *ip, struct tls_session *s)
{
    struct xfr *x = arg;
    const struct stream_env *e = &x->pool->outer;
    if (e->session_put)
        e->session_put(e->arg, ip, s);
    else
        tls_session_free(s);
}

int xfr_start(struct xfr_pool *p, struct view *v, const struct client *c, const uint8_t *msg, size_t len,
              const struct wire_msg *wm, struct route_server *srv, enum try_kind kind)
{
    const struct config *cfg = v->cfg;
    struct xfr *x = calloc(1, sizeof *x);
    if (!x || !(x->msg = malloc(wm->end))) {
        free(x);
        return -1;
    }
    x->pool = p;
    x->len = wm->end;
    memcpy(x->msg, msg, x->len);
    x->wm = *wm;
    x->srv = srv;
    x->max_bytes = (uint64_t)cfg->max_transfer_mb << 20;
    x->env = p->outer;
    x->env.sink = &x->sink;
    x->env.closed = stream_closed;
    x->env.dot_outcome = dot_outcome;
    x->env.session_get = session_get;
    x->env.session_put = session_put;
    x->env.arg = x;
    x->sink = (struct tsink){ .answer = on_answer, .failed = on_failed, .arg = x };
    x->r = (struct treq){ .msg = x->msg, .len = x->len, .wm = &x->wm, .to = &srv->addr, .tls = srv->profile,
                          .verbatim = true, .multi = true };
    ev_init(&x->timer, timer_cb);
    x->timer.data = x;
    flush_item_init(&x->reap, reap_cb);
    if (send_on(x, kind) < 0) {
        stream_free(x->s);
        free(x->msg);
        free(x);
        return -1;
    }
    x->client = *c;
    c->ops->ref(c->conn);
    route_server_hold(srv);
    x->view = view_ref(v);
    x->next = p->active;
    if (p->active)
        p->active->prev = x;
    p->active = x;
    p->n_active++;
    p->outer.stats->xfr_started++;
    arm(x, cfg->timeout);
    return 0;
}

void xfr_pool_free(struct xfr_pool *p)
{
    if (!p)
        return;
    while (p->active) {
        struct xfr *x = p->active;
        end(x, true, "shutting down");
        flusher_cancel(p->outer.flusher, &x->reap);
        reap_cb(&x->reap);
    }
    free(p);
}
