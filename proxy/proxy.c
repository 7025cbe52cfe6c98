/* proxy/proxy.c: set-up, reconfiguration and shutdown of one forwarding loop. */
#include "proxy/proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "proxy/listener.h"
#include "lib/log.h"
#include "lib/outbox.h"
#include "probe/prober.h"
#include "probe/state.h"
#include "probe/table.h"
#include "proxy/stream.h"
#include "lib/tls.h"
#include "proxy/query.h"
#include "proxy/udp_pool.h"
#include "proxy/upstream.h"

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    outbox_flush_all(w->data);
    stream_flush_all(w->data);
}

/* A successful probe's connection becomes the first DoT connection of an
 * upstream at that IP, if one has none yet. */
static void adopt_cb(void *arg, const struct probe_entry *e, int fd, struct tls_conn *conn)
{
    struct proxy *px = arg;
    const struct route_table *t = px->routes;
    struct net_addr ip;
    probe_entry_addr(e, &ip);
    for (size_t i = 0; t && i < t->n_zones; i++) {
        for (size_t j = 0; j < t->zones[i].n_servers; j++) {
            struct upstream *u = t->zones[i].servers[j];
            if (u->tls_policy != UPSTREAM_TLS_OPPORTUNISTIC || !net_ip_equal(&u->addr, &ip))
                continue;
            if (!u->dot[0] && !(u->dot[0] = stream_new(px, u, STREAM_DOT)))
                continue;
            if (stream_adopt(u->dot[0], fd, conn) == 0)
                return;
        }
    }
    tls_conn_free(conn);
    close(fd);
}

static void probe_policy_from_config(const struct config *c, struct probe_policy *p)
{
    probe_policy_defaults(p);
    p->probe_after_visits = c->probe_after_visits;
    p->probe_on_start = c->probe_on_start;
    p->max_busy_probes = c->max_busy_probes;
    p->probe_timeout = c->probe_timeout;
    p->persistence = c->persistence;
    p->damping = c->damping;
    p->dot_fail_threshold = c->dot_fail_threshold;
    p->max_entries = c->max_entries;
}

static int dot_setup(struct proxy *px)
{
    char err[256];
    /* The CA store, only used to record whether a certificate would have
     * verified, is loaded later (proxy_start_probing). */
    struct tls_ctx_opts o = { .mode = TLS_MODE_OPPORTUNISTIC, .ca_file = NULL, .system_ca = false };
    px->tls_opportunistic = tls_ctx_new(&o, err, sizeof err);
    if (!px->tls_opportunistic) {
        log_err("TLS: %s", err);
        return -1;
    }
    struct probe_policy pol;
    probe_policy_from_config(px->cfg, &pol);
    px->probes = probe_table_new(&pol, rng_u32(&px->rng));
    struct prober_opts po;
    prober_opts_defaults(&po);
    if (px->probes)
        px->prober = prober_new(px->loop, px->probes, px->tls_opportunistic, &px->rng, &po);
    if (!px->prober) {
        log_err("out of memory");
        return -1;
    }
    prober_set_adopt_cb(px->prober, adopt_cb, px);
    return 0;
}

#define WARMUP_DELAY 0.1 /* s after start: the first answers do not wait for it */
#define PROBE_ON_START_RETRY 1.0 /* s: probe-on-start asks again for the IPs the queue had no room for */

static void warmup_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct proxy *px = w->data;
    char err[200];
    (void)loop;
    (void)revents;
    if (!px->warm) {
        if (tls_ctx_load_system_ca(px->tls_opportunistic, err, sizeof err) < 0)
            log_warn("%s: certificates of DoT servers are recorded as unverified", err);
        ev_now_update(px->loop);
        px->warm = true;
    }
    proxy_probe_on_start(px);
}

void proxy_start_probing(struct proxy *px)
{
    if (px->warm) {
        proxy_probe_on_start(px);
        return;
    }
    if (ev_is_active(&px->warmup))
        return;
    ev_timer_init(&px->warmup, warmup_cb, WARMUP_DELAY, 0);
    px->warmup.data = px;
    ev_timer_start(px->loop, &px->warmup);
}

void proxy_probe_on_start(struct proxy *px)
{
    const struct route_table *t = px->routes;
    if (!px->probes || !probe_table_policy(px->probes)->probe_on_start)
        return;
    double now = ev_now(px->loop);
    bool left_out = false;
    for (size_t i = 0; i < t->n_zones; i++)
        for (size_t j = 0; j < t->zones[i].n_servers; j++) {
            struct upstream *u = t->zones[i].servers[j];
            if (u->tls_policy != UPSTREAM_TLS_OPPORTUNISTIC || !u->configured)
                continue;
            probe_table_request(px->probes, &u->addr, t->zones[i].text, now, false);
            /* The probe query is built once TLS is up, after this. */
            struct probe_entry *e = probe_table_find(px->probes, &u->addr);
            if (e)
                probe_table_set_authoritative(e, !u->rd);
            /* Still Unknown: the probe queue was full. */
            left_out |= !e || e->status == PROBE_UNKNOWN;
        }
    /* Many upstreams: the rest are asked for again once probes have finished. */
    if (left_out) {
        ev_timer_stop(px->loop, &px->warmup);
        ev_timer_set(&px->warmup, PROBE_ON_START_RETRY, 0);
        ev_timer_start(px->loop, &px->warmup);
    }
}

/* ---- the probe table across restarts (RFC 9539 §4.5, probe/state.h) ---- */

void proxy_state_save(struct proxy *px)
{
    const char *path = px->cfg->state_file;
    char err[512];
    if (!path || !px->probes)
        return;
    ev_now_update(px->loop);
    int n = probe_state_save(px->probes, path, ev_now(px->loop), err, sizeof err);
    if (n < 0)
        log_warn("probe state: not saved: %s", err);
    else
        log_debug("probe state: saved %d entries to %s", n, path);
}

static void save_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    proxy_state_save(w->data);
}

/* (Re)arms the save timer for the running config. */
static void state_timer_update(struct proxy *px)
{
    ev_timer_stop(px->loop, &px->save_timer);
    if (!px->cfg->state_file)
        return;
    ev_timer_set(&px->save_timer, px->cfg->save_interval, px->cfg->save_interval);
    ev_timer_start(px->loop, &px->save_timer);
}

/* Before any probe, so that a restored Good entry is not probed again. A
 * bad file costs what it knew, never the start. */
static void state_load(struct proxy *px)
{
    const char *path = px->cfg->state_file;
    char err[512];
    if (!path || !px->probes)
        return;
    ev_now_update(px->loop);
    int n = probe_state_load(px->probes, path, ev_now(px->loop), err, sizeof err);
    if (n == PROBE_STATE_MISSING)
        log_info("probe state: no state file yet (%s): starting with an empty table", err);
    else if (n < 0)
        log_warn("probe state: %s: ignored, starting with an empty table", err);
}

static struct listener *find_listener(struct listener **list, size_t n, const struct net_addr *a, bool tcp)
{
    for (size_t i = 0; i < n; i++)
        if (list[i]->tcp == tcp && net_addr_equal(&list[i]->addr, a))
            return list[i];
    return NULL;
}

/* Drops the references of `list`; listeners not in `keep` stop first. */
static void release_listeners(struct listener **list, size_t n, struct listener **keep, size_t n_keep)
{
    for (size_t i = 0; i < n; i++) {
        if (!find_listener(keep, n_keep, &list[i]->addr, list[i]->tcp))
            listener_stop(list[i]);
        listener_unref(list[i]);
    }
    free(list);
}

/* Opens the listeners of `cfg`, reusing those already open in px. Returns 0
 * with a new array in *out, or -1 with nothing changed. */
static int open_listeners(struct proxy *px, const struct config *cfg, struct listener ***out, size_t *n_out)
{
    struct listener **list = calloc(cfg->n_listen * 2 + 1, sizeof *list);
    size_t n = 0;
    if (!list)
        return -1;
    for (size_t i = 0; i < cfg->n_listen; i++) {
        for (int tcp = 0; tcp < 2; tcp++) {
            if (find_listener(list, n, &cfg->listen[i], tcp))
                continue; /* listed twice */
            struct listener *l = find_listener(px->listeners, px->n_listeners, &cfg->listen[i], tcp);
            if (l) {
                l = listener_ref(l);
            } else if (!(l = listener_open(px, &cfg->listen[i], tcp))) {
                /* The default listens on [::1] too: a host without IPv6 still serves IPv4. */
                if ((errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT) && listener_is_v6_loopback(&cfg->listen[i]))
                    continue;
                release_listeners(list, n, px->listeners, px->n_listeners);
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
    px->started = ev_now(loop);
    ev_init(&px->save_timer, save_timer_cb);
    px->save_timer.data = px;
    px->udp = udp_pool_new(px);
    if (!px->udp || dot_setup(px) < 0 || open_listeners(px, cfg, &px->listeners, &px->n_listeners) < 0) {
        proxy_free(px);
        return NULL;
    }
    state_load(px);
    state_timer_update(px);
    return px;
}

int proxy_reconfigure(struct proxy *px, struct config *cfg, struct route_table *routes)
{
    struct listener **list;
    size_t n;
    if (open_listeners(px, cfg, &list, &n) < 0) {
        config_free(cfg);
        route_table_unref(routes);
        return -1;
    }
    release_listeners(px->listeners, px->n_listeners, list, n);
    px->listeners = list;
    px->n_listeners = n;
    /* A new state-file is written from now on, not read: the table in
     * memory is newer than any file. */
    bool save_changed = (cfg->state_file == NULL) != (px->cfg->state_file == NULL) ||
                        cfg->save_interval != px->cfg->save_interval;
    config_free(px->cfg);
    px->cfg = cfg;
    if (px->probes) {
        struct probe_policy pol;
        probe_policy_from_config(cfg, &pol);
        probe_table_set_policy(px->probes, &pol);
    }
    if (save_changed)
        state_timer_update(px);
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
    for (size_t i = 0; i < px->n_listeners; i++)
        listener_stop(px->listeners[i]);
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
    release_listeners(px->listeners, px->n_listeners, NULL, 0);
    px->listeners = NULL;
    px->n_listeners = 0;
    udp_pool_free(px->udp);
    route_table_unref(px->routes); /* closes the upstreams' connections */
    px->routes = NULL;
    prober_free(px->prober);
    probe_table_free(px->probes);
    tls_ctx_free(px->tls_opportunistic);
    ev_prepare_stop(px->loop, &px->flush_watcher);
    ev_timer_stop(px->loop, &px->warmup);
    ev_timer_stop(px->loop, &px->drain_timer);
    ev_timer_stop(px->loop, &px->save_timer);
    config_free(px->cfg);
    free(px);
}
