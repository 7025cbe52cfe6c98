/* daemon/dot.c: the probe table, its prober, probe-on-start and the state file. */
#include "daemon/dot.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "probe/prober.h"
#include "probe/state.h"
#include "probe/table.h"
#include "proxy/route.h"
#include "proxy/tls_profile.h"

#define WARMUP_DELAY 0.1          /* s after start: the first answers do not wait for it */
#define PROBE_ON_START_RETRY 1.0  /* s: probe-on-start asks again for the IPs the queue had no room for */

static void policy_from_config(const struct config *c, struct probe_policy *p)
{
    probe_policy_defaults(p);
    p->probe_after_visits = c->probe_after_visits;
    p->probe_on_start = c->probe_on_start;
    p->max_busy_probes = c->max_busy_probes;
    p->probe_timeout = c->probe_timeout;
    p->persistence = c->persistence;
    p->damping = c->damping;
    p->dot_fail_threshold = c->dot_fail_threshold;
    p->max_entries = config_table_entries(c);
}

static void adopt_cb(void *arg, const struct probe_entry *e, int fd, struct tls_conn *conn)
{
    struct dot *d = arg;
    if (d->adopt) {
        struct net_addr ip;
        probe_entry_addr(e, &ip);
        d->adopt(d->adopt_arg, &ip, d->opportunistic, fd, conn);
        return;
    }
    tls_conn_free(conn);
    close(fd);
}

static void probe_on_start(struct dot *d)
{
    const struct route_table *t = d->routes;
    if (!t || !probe_table_policy(d->table)->probe_on_start)
        return;
    double now = ev_now(d->loop);
    bool left_out = false;
    for (size_t i = 0; i < t->n_zones; i++)
        for (size_t j = 0; j < t->zones[i].n_servers; j++) {
            const struct route_server *s = t->zones[i].servers[j];
            if (s->tls != SERVER_TLS_OPPORTUNISTIC || !s->configured)
                continue;
            probe_table_request(d->table, &s->addr, t->zones[i].text, now, false);
            /* The probe query is built once TLS is up, after this. */
            struct probe_entry *e = probe_table_find(d->table, &s->addr);
            if (e)
                probe_table_set_authoritative(e, !s->rd);
            /* Still Unknown: the probe queue was full. */
            left_out |= !e || e->status == PROBE_UNKNOWN;
        }
    /* Many upstreams: the rest are asked for again once probes have finished. */
    if (left_out) {
        ev_timer_stop(d->loop, &d->warmup);
        ev_timer_set(&d->warmup, PROBE_ON_START_RETRY, 0);
        ev_timer_start(d->loop, &d->warmup);
    }
}

static void warmup_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dot *d = w->data;
    char err[200];
    (void)revents;
    if (!d->warm) {
        if (tls_ctx_load_system_ca(d->opportunistic->ctx, err, sizeof err) < 0)
            log_warn("%s: certificates of DoT servers are recorded as unverified", err);
        ev_now_update(loop);
        d->warm = true;
    }
    probe_on_start(d);
}

static void save_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    dot_save(w->data);
}

struct dot *dot_new(struct ev_loop *loop, const struct config *cfg)
{
    struct dot *d = calloc(1, sizeof *d);
    char err[256];
    if (!d) {
        log_err("out of memory");
        return NULL;
    }
    d->loop = loop;
    rng_init(&d->rng);
    ev_init(&d->warmup, warmup_cb);
    d->warmup.data = d;
    ev_init(&d->save_timer, save_timer_cb);
    d->save_timer.data = d;
    /* The CA store, only used to record whether a certificate would have
     * verified, is loaded later (warmup_cb). */
    if (!(d->opportunistic = tls_profile_opportunistic(err, sizeof err))) {
        log_err("TLS: %s", err);
        dot_free(d);
        return NULL;
    }
    struct probe_policy pol;
    policy_from_config(cfg, &pol);
    struct prober_opts po;
    prober_opts_defaults(&po);
    d->table = probe_table_new(&pol, rng_u32(&d->rng));
    if (d->table)
        d->prober = prober_new(loop, d->table, d->opportunistic->ctx, &d->rng, &po);
    if (!d->prober) {
        log_err("out of memory");
        dot_free(d);
        return NULL;
    }
    prober_set_adopt_cb(d->prober, adopt_cb, d);
    return d;
}

void dot_free(struct dot *d)
{
    if (!d)
        return;
    ev_timer_stop(d->loop, &d->warmup);
    ev_timer_stop(d->loop, &d->save_timer);
    prober_free(d->prober);
    probe_table_free(d->table);
    tls_profile_unref(d->opportunistic);
    free(d->state_file);
    free(d);
}

void dot_load_state(struct dot *d, const struct config *cfg)
{
    const char *path = cfg->state_file;
    char err[512];
    if (!path)
        return;
    ev_now_update(d->loop);
    int n = probe_state_load(d->table, path, ev_now(d->loop), err, sizeof err);
    if (n == PROBE_STATE_MISSING)
        log_info("probe state: no state file yet (%s): starting with an empty table", err);
    else if (n < 0)
        log_warn("probe state: %s: ignored, starting with an empty table", err);
}

void dot_save(struct dot *d)
{
    char err[512];
    if (!d->state_file)
        return;
    ev_now_update(d->loop);
    int n = probe_state_save(d->table, d->state_file, ev_now(d->loop), err, sizeof err);
    if (n < 0)
        log_warn("probe state: not saved: %s", err);
    else
        log_debug("probe state: saved %d entries to %s", n, d->state_file);
}

static bool same_path(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void dot_apply(struct dot *d, const struct config *cfg, const struct route_table *routes)
{
    struct probe_policy pol;
    policy_from_config(cfg, &pol);
    probe_table_set_policy(d->table, &pol);
    d->routes = routes;
    /* A new state-file is written from now on, not read: the table in
     * memory is newer than any file. */
    if (!same_path(d->state_file, cfg->state_file) || d->save_interval != cfg->save_interval) {
        char *path = cfg->state_file ? strdup(cfg->state_file) : NULL;
        if (cfg->state_file && !path) {
            log_err("out of memory: the state file setting is unchanged");
        } else {
            free(d->state_file);
            d->state_file = path;
            d->save_interval = cfg->save_interval;
            ev_timer_stop(d->loop, &d->save_timer);
            if (path) {
                ev_timer_set(&d->save_timer, cfg->save_interval, cfg->save_interval);
                ev_timer_start(d->loop, &d->save_timer);
            }
        }
    }
    if (d->warm) {
        probe_on_start(d);
    } else if (!ev_is_active(&d->warmup)) {
        ev_timer_set(&d->warmup, WARMUP_DELAY, 0);
        ev_timer_start(d->loop, &d->warmup);
    }
}
