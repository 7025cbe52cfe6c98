/* proxy/proxy.c: the data path's wiring, swaps and drain. */
#include "proxy/proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "probe/table.h"
#include "proxy/conns.h"
#include "proxy/health.h"
#include "proxy/query.h"
#include "proxy/route.h"
#include "proxy/targets.h"
#include "proxy/tcp_client.h"
#include "proxy/udp_pool.h"
#include "proxy/view.h"
#include "proxy/xfr.h"

/* ---- the transports behind the query pool ---- */

static int tx_send(void *arg, enum try_kind kind, struct treq *r, bool *opening)
{
    struct proxy *px = arg;
    if (kind == TRY_UDP) {
        *opening = false;
        return udp_pool_send(px->udp, r);
    }
    return conns_send(px->conns, kind == TRY_DOT ? STREAM_DOT : STREAM_TCP, r, opening);
}

static void tx_cancel(void *arg, enum try_kind kind, struct treq *r)
{
    struct proxy *px = arg;
    if (kind == TRY_UDP)
        udp_pool_cancel(px->udp, r);
    else
        conns_cancel(px->conns, r);
}

static int tx_transfer(void *arg, struct view *v, const struct client *c, const uint8_t *msg, size_t len,
                       const struct wire_msg *wm, struct route_server *srv, enum try_kind kind)
{
    struct proxy *px = arg;
    return xfr_start(px->xfrs, v, c, msg, len, wm, srv, kind);
}

/* ---- what DoT connections tell the probe table ---- */

static void dot_outcome(void *arg, const struct net_addr *ip, enum probe_outcome o, const char *reason)
{
    struct proxy *px = arg;
    probe_table_dot_result(px->probes, ip, o, reason, ev_now(px->loop));
}

static const struct tls_session *session_get(void *arg, const struct net_addr *ip)
{
    struct proxy *px = arg;
    const struct probe_entry *e = probe_table_find(px->probes, ip);
    return e ? e->session : NULL;
}

static void session_put(void *arg, const struct net_addr *ip, struct tls_session *s)
{
    struct proxy *px = arg;
    struct probe_entry *e = probe_table_find(px->probes, ip);
    if (e)
        probe_table_set_session(e, s);
    else
        tls_session_free(s);
}

/* ---- clients ---- */

static void udp_received(void *arg, struct listener *l, const struct net_addr *peer, const struct net_local *local,
                         const struct net_addr *to, const uint8_t *msg, size_t len)
{
    struct proxy *px = arg;
    struct client c = { .ops = &listener_udp_client, .conn = l, .peer = *peer, .local = *local };
    if (l->transparent) {
        if (!to->len) {
            px->stats.malformed_dropped++; /* no original destination: nowhere to send it */
            return;
        }
        c.to = *to;
    }
    query_receive(px->queries, px->view, &c, msg, len);
}

static bool acl_allows(const struct config *cfg, const struct net_addr *peer)
{
    for (size_t i = 0; i < cfg->n_allow; i++)
        if (net_prefix_match(&cfg->allow[i], peer))
            return true;
    return false;
}

/* The ACL applies at accept: a refused source never holds a connection. */
static void tcp_accepted(void *arg, struct listener *l, int fd, const struct net_addr *peer)
{
    struct proxy *px = arg;
    const struct config *cfg = px->view->cfg;
    if (px->draining) {
        close(fd);
        return;
    }
    if (l->transparent) {
        /* TPROXY: the accepted socket's own address is where the client connected to. */
        struct net_addr to;
        to.len = sizeof to.u.ss;
        if (getsockname(fd, &to.u.sa, &to.len) < 0) {
            close(fd);
            return;
        }
        tcp_clients_accept(px->tcp, fd, peer, &to);
        return;
    }
    if (!acl_allows(cfg, peer)) {
        if (cfg->acl_action == CONFIG_ACL_DROP)
            px->stats.dropped_acl++;
        else
            px->stats.refused_acl++;
        close(fd);
        return;
    }
    tcp_clients_accept(px->tcp, fd, peer, NULL);
}

static void tcp_received(void *arg, const struct client *c, const uint8_t *msg, size_t len)
{
    struct proxy *px = arg;
    query_receive(px->queries, px->view, c, msg, len);
}

static void drained(struct proxy *px)
{
    ev_timer_stop(px->loop, &px->drain_timer);
    flusher_run(&px->flusher);
    if (px->on_drained)
        px->on_drained(px->drained_arg);
}

static void queries_idle(void *arg)
{
    struct proxy *px = arg;
    if (px->draining)
        drained(px);
}

/* ---- settings from the view ---- */

static void tcp_opts(const struct config *cfg, struct tcp_clients_opts *o)
{
    o->max = cfg->tcp_clients;
    o->per_source = cfg->tcp_clients_per_source ? cfg->tcp_clients_per_source : cfg->tcp_clients / 4;
    if (o->per_source == 0)
        o->per_source = 1;
    o->idle = cfg->tcp_idle_timeout;
    o->io = cfg->tcp_io_timeout;
}

static void apply_settings(struct proxy *px, const struct config *cfg)
{
    unsigned mark = config_upstream_mark(cfg);
    struct udp_pool_opts uo = { .sockets = cfg->udp_sockets, .socket_uses = cfg->udp_socket_uses,
                                .edns_size = (uint16_t)cfg->edns_buffer_size, .mark = mark };
    struct conns_opts co = { .max_conns = cfg->max_upstream_connections,
                             .max_dot = cfg->n_transparent_listen ? cfg->max_dot_connections : 0,
                             .idle = cfg->upstream_tcp_idle, .setup = cfg->timeout,
                             .edns_size = (uint16_t)cfg->edns_buffer_size, .mark = mark };
    struct tcp_clients_opts to;
    tcp_opts(cfg, &to);
    udp_pool_set_opts(px->udp, &uo);
    conns_set_opts(px->conns, &co);
    tcp_clients_set_opts(px->tcp, &to);
    health_table_set_max(px->health, config_table_entries(cfg));
}

/* Intercepted servers kept after their last query: enough for the servers a
 * resolver talks to often, small next to the health and probe tables. */
#define TARGETS_IDLE 1024

void proxy_set_opportunistic(struct proxy *px, struct tls_profile *opportunistic)
{
    targets_set_profile(px->targets, opportunistic);
}

struct proxy *proxy_new(struct ev_loop *loop, struct probe_table *probes, struct fd_waiters *waiters)
{
    struct proxy *px = calloc(1, sizeof *px);
    if (!px)
        return NULL;
    px->loop = loop;
    px->probes = probes;
    px->waiters = waiters;
    rng_init(&px->rng);
    flusher_init(&px->flusher, loop);
    ev_init(&px->drain_timer, NULL);
    px->lhooks = (struct listener_hooks){ .udp = udp_received, .tcp = tcp_accepted, .arg = px,
                                          .loop = loop, .flusher = &px->flusher, .stats = &px->stats,
                                          .waiters = waiters };
    struct query_env qe = {
        .loop = loop, .rng = &px->rng, .stats = &px->stats, .probes = probes,
        .tx = { .send = tx_send, .cancel = tx_cancel, .arg = px },
        .idle = queries_idle, .idle_arg = px,
        .transfer = tx_transfer, .transfer_arg = px,
    };
    /* Settings come with the first view; these only hold until then. */
    struct udp_pool_opts uo = { .sockets = 1, .socket_uses = 1, .edns_size = 1232 };
    struct conns_opts co = { .max_conns = 1, .idle = 1, .setup = 1, .edns_size = 1232 };
    struct tcp_clients_opts to = { .max = 1, .per_source = 1, .idle = 1, .io = 1 };
    px->health = health_table_new(4096, rng_u32(&px->rng));
    px->targets = px->health ? targets_new(px->health, TARGETS_IDLE, rng_u32(&px->rng)) : NULL;
    qe.targets = px->targets;
    px->queries = query_pool_new(&qe);
    if (!px->health || !px->targets || !px->queries) {
        proxy_free(px);
        return NULL;
    }
    const struct tsink *sink = query_pool_sink(px->queries);
    struct stream_env se = {
        .loop = loop, .rng = &px->rng, .stats = &px->stats, .flusher = &px->flusher, .sink = sink,
        .dot_outcome = dot_outcome, .session_get = session_get, .session_put = session_put, .arg = px,
    };
    px->udp = udp_pool_new(loop, &px->rng, &px->stats, &px->flusher, sink, &uo);
    px->conns = conns_new(&se, &co);
    px->xfrs = xfr_pool_new(&se);
    px->tcp = tcp_clients_new(loop, &px->stats, waiters, &to, tcp_received, px, rng_u32(&px->rng));
    if (!px->udp || !px->conns || !px->xfrs || !px->tcp) {
        proxy_free(px);
        return NULL;
    }
    return px;
}

void proxy_release_listeners(struct listener **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        listener_unref(list[i]);
    free(list);
}

static struct listener *find_listener(struct listener **list, size_t n, const struct net_addr *a, bool tcp,
                                      bool transparent)
{
    for (size_t i = 0; i < n; i++)
        if (list[i]->tcp == tcp && list[i]->transparent == transparent && net_addr_equal(&list[i]->addr, a))
            return list[i];
    return NULL;
}

int proxy_open_listeners(struct proxy *px, const struct config *cfg, struct listener ***out, size_t *n_out)
{
    struct listener **list = calloc((cfg->n_listen + cfg->n_transparent_listen) * 2 + 1, sizeof *list);
    size_t n = 0;
    if (!list)
        return -1;
    for (size_t i = 0; i < cfg->n_listen + cfg->n_transparent_listen; i++) {
        bool transparent = i >= cfg->n_listen;
        const struct net_addr *a = transparent ? &cfg->transparent_listen[i - cfg->n_listen] : &cfg->listen[i];
        for (int tcp = 0; tcp < 2; tcp++) {
            if (find_listener(list, n, a, tcp, transparent))
                continue; /* listed twice */
            struct listener *l = find_listener(px->listeners, px->n_listeners, a, tcp, transparent);
            if (l) {
                l = listener_ref(l);
            } else if (!(l = listener_open(&px->lhooks, a, tcp, transparent))) {
                /* The default listens on [::1] too: a host without IPv6 still serves IPv4. */
                if (!transparent && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT) &&
                    listener_is_v6_loopback(a))
                    continue;
                proxy_release_listeners(list, n);
                return -1;
            }
            list[n++] = l;
        }
    }
    if (n == 0) {
        log_err("no listen address could be opened");
        free(list);
        return -1;
    }
    *out = list;
    *n_out = n;
    return 0;
}

void proxy_swap(struct proxy *px, struct view *v, struct listener **list, size_t n)
{
    for (size_t i = 0; i < px->n_listeners; i++)
        if (!find_listener(list, n, &px->listeners[i]->addr, px->listeners[i]->tcp, px->listeners[i]->transparent))
            listener_stop(px->listeners[i]);
    proxy_release_listeners(px->listeners, px->n_listeners);
    px->listeners = list;
    px->n_listeners = n;
    if (!px->view)
        px->started = ev_now(px->loop);
    view_unref(px->view);
    px->view = v;
    apply_settings(px, v->cfg);
    if (!px->draining)
        for (size_t i = 0; i < n; i++)
            if (!list[i]->open)
                listener_start(list[i]);
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct proxy *px = w->data;
    (void)loop;
    (void)revents;
    log_warn("drain timeout: answering %u queries still in flight with SERVFAIL", query_pool_inflight(px->queries));
    query_fail_all(px->queries); /* ends in drained() */
}

void proxy_drain(struct proxy *px, double timeout, void (*on_drained)(void *arg), void *arg)
{
    if (px->draining)
        return;
    px->draining = true;
    px->on_drained = on_drained;
    px->drained_arg = arg;
    for (size_t i = 0; i < px->n_listeners; i++)
        listener_stop(px->listeners[i]);
    tcp_clients_stop_reading(px->tcp);
    unsigned n = query_pool_inflight(px->queries);
    if (n == 0) {
        drained(px);
        return;
    }
    log_info("draining %u queries in flight", n);
    ev_timer_init(&px->drain_timer, drain_timeout_cb, timeout, 0);
    px->drain_timer.data = px;
    ev_timer_start(px->loop, &px->drain_timer);
}

void proxy_log_stats(const struct proxy *px)
{
    char buf[2048];
    stats_format(&px->stats, buf, sizeof buf);
    log_notice("stats: %s", buf);
    stats_format_privacy(&px->stats, buf, sizeof buf);
    log_notice("%s", buf);
}

void proxy_adopt_dot(struct proxy *px, const struct net_addr *ip, struct tls_profile *tls, int fd,
                     struct tls_conn *conn)
{
    conns_adopt(px->conns, ip, tls, fd, conn);
}

unsigned proxy_inflight(const struct proxy *px) { return query_pool_inflight(px->queries); }
unsigned proxy_tcp_clients(const struct proxy *px) { return tcp_clients_count(px->tcp); }
unsigned proxy_dot_connections(const struct proxy *px) { return conns_open(px->conns, STREAM_DOT); }

void proxy_free(struct proxy *px)
{
    if (!px)
        return;
    px->on_drained = NULL;
    /* Queries first: their answers go out through the clients and transports. */
    query_pool_free(px->queries);
    xfr_pool_free(px->xfrs);
    flusher_run(&px->flusher);
    tcp_clients_free(px->tcp);
    proxy_release_listeners(px->listeners, px->n_listeners);
    udp_pool_free(px->udp);
    conns_free(px->conns);
    view_unref(px->view);  /* unpins the health entries of its servers */
    targets_free(px->targets);
    health_table_free(px->health);
    ev_timer_stop(px->loop, &px->drain_timer);
    flusher_fini(&px->flusher);
    free(px);
}
