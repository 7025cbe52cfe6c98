/* proxy/proxy.c: set-up, reconfiguration and shutdown of one forwarding loop. */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>

#include "listener.h"
#include "log.h"
#include "outbox.h"
#include "query.h"
#include "udp_pool.h"
#include "upstream.h"

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    outbox_flush_all(w->data);
}

static struct listener *find_listener(struct listener *list, const struct net_addr *a, bool tcp)
{
    for (struct listener *l = list; l; l = l->next)
        if (l->tcp == tcp && net_addr_equal(&l->addr, a))
            return l;
    return NULL;
}

/* Builds the listener list for `cfg`, reusing open listeners from `old`.
 * Returns 0 and the new list, or -1 (old untouched, new ones closed). */
static int open_listeners(struct proxy *px, const struct config *cfg, struct listener *old,
                          struct listener **out)
{
    struct listener *list = NULL;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        for (int tcp = 0; tcp < 2; tcp++) {
            if (find_listener(list, &cfg->listen[i], tcp))
                continue; /* listed twice */
            struct listener *l = find_listener(old, &cfg->listen[i], tcp);
            if (l) {
                l = listener_ref(l);
            } else if (!(l = listener_open(px, &cfg->listen[i], tcp))) {
                while (list) {
                    struct listener *n = list->next;
                    listener_stop(list);
                    listener_unref(list);
                    list = n;
                }
                return -1;
            }
            l->next = list;
            list = l;
        }
    }
    *out = list;
    return 0;
}

/* Drops the old list's references; listeners not in the new list stop. */
static void release_listeners(struct listener *old, struct listener *keep)
{
    while (old) {
        struct listener *n = old->next;
        if (!find_listener(keep, &old->addr, old->tcp))
            listener_stop(old);
        listener_unref(old);
        old = n;
    }
}

struct proxy *proxy_new(struct ev_loop *loop, struct config *cfg, struct route_table *routes)
{
    struct proxy *px = calloc(1, sizeof *px);
    if (!px) {
        config_free(cfg);
        return NULL;
    }
    px->loop = loop;
    px->cfg = cfg;
    px->routes = route_table_ref(routes);
    rng_init(&px->rng);
    ev_prepare_init(&px->flush_watcher, flush_cb);
    px->flush_watcher.data = px;
    ev_prepare_start(loop, &px->flush_watcher);
    px->udp = udp_pool_new(px);
    if (!px->udp || open_listeners(px, cfg, NULL, &px->listeners) < 0) {
        proxy_free(px);
        return NULL;
    }
    return px;
}

int proxy_reconfigure(struct proxy *px, struct config *cfg, struct route_table *routes)
{
    struct listener *list;
    if (open_listeners(px, cfg, px->listeners, &list) < 0) {
        config_free(cfg);
        route_table_unref(routes);
        return -1;
    }
    /* Reordered because the new list takes the old ones' place. */
    struct listener *old = px->listeners;
    px->listeners = list;
    release_listeners(old, list);
    config_free(px->cfg);
    px->cfg = cfg;
    route_table_unref(px->routes);
    px->routes = routes;
    return 0;
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct proxy *px = w->data;
    (void)loop;
    (void)revents;
    log_warn("drain timeout: answering %u queries still in flight with SERVFAIL", px->inflight);
    query_fail_all(px); /* ends in proxy_drained() */
}

void proxy_drained(struct proxy *px)
{
    ev_timer_stop(px->loop, &px->drain_timer);
    outbox_flush_all(px);
    if (px->on_drained)
        px->on_drained(px);
}

void proxy_drain(struct proxy *px)
{
    if (px->draining)
        return;
    px->draining = true;
    for (struct listener *l = px->listeners; l; l = l->next)
        listener_stop(l);
    tcp_clients_stop_reading(px);
    if (px->inflight == 0) {
        proxy_drained(px);
        return;
    }
    log_info("draining %u queries in flight", px->inflight);
    ev_timer_init(&px->drain_timer, drain_timeout_cb, px->cfg->drain_timeout, 0);
    px->drain_timer.data = px;
    ev_timer_start(px->loop, &px->drain_timer);
}

void proxy_log_stats(const struct proxy *px)
{
    char buf[2048];
    stats_format(&px->stats, buf, sizeof buf);
    log_notice("stats: %s", buf);
}

void proxy_free(struct proxy *px)
{
    if (!px)
        return;
    query_fail_all(px);
    outbox_flush_all(px);
    query_pool_free(px);
    release_listeners(px->listeners, NULL);
    px->listeners = NULL;
    udp_pool_free(px->udp);
    route_table_unref(px->routes);
    ev_prepare_stop(px->loop, &px->flush_watcher);
    ev_timer_stop(px->loop, &px->drain_timer);
    config_free(px->cfg);
    free(px);
}
