/* daemon/build.c: a configuration built aside. */
#include "daemon/build.h"

#include <stdlib.h>

#include "config/config.h"
#include "daemon/dot.h"
#include "daemon/metrics_http.h"
#include "daemon/setup.h"
#include "lib/log.h"
#include "proxy/proxy.h"
#include "proxy/route.h"
#include "proxy/view.h"

struct build {
    struct generation g;
    struct proxy *px;
    const struct metrics_http *running_metrics;
    struct setup *setup;
    build_done_fn *done;
    void *arg;
};

static void release(struct generation *g)
{
    proxy_release_listeners(g->listeners, g->n_listeners);
    metrics_http_free(g->metrics);
    route_table_free(g->routes);
    config_free(g->cfg);
}

void generation_free(struct generation *g)
{
    if (!g)
        return;
    release(g);
    free(g);
}

static void finish(struct build *b, bool ok)
{
    build_done_fn *done = b->done;
    void *arg = b->arg;
    struct generation *g = ok ? malloc(sizeof *g) : NULL;
    if (g) {
        *g = b->g;
    } else {
        if (ok)
            log_err("out of memory");
        release(&b->g);
    }
    free(b);
    done(arg, g);
}

static bool metrics_needed(const struct build *b)
{
    const struct config *cfg = b->g.cfg;
    return cfg->metrics_enabled &&
           !(b->running_metrics && net_addr_equal(metrics_http_addr(b->running_metrics), &cfg->metrics_listen));
}

static void routes_done(void *arg, struct route_table *routes)
{
    struct build *b = arg;
    b->setup = NULL;
    b->g.routes = routes;
    if (!routes) {
        finish(b, false);
        return;
    }
    if (proxy_open_listeners(b->px, b->g.cfg, &b->g.listeners, &b->g.n_listeners) < 0) {
        finish(b, false);
        return;
    }
    if (metrics_needed(b) && !(b->g.metrics = metrics_http_new(b->px, b->px->waiters, &b->g.cfg->metrics_listen))) {
        finish(b, false);
        return;
    }
    finish(b, true);
}

struct build *build_start(struct ev_loop *loop, struct config *cfg, struct proxy *px, struct dot *dot,
                          const struct metrics_http *running_metrics, build_done_fn *done, void *arg)
{
    struct build *b = calloc(1, sizeof *b);
    if (!b) {
        log_err("out of memory");
        config_free(cfg);
        done(arg, NULL);
        return NULL;
    }
    b->g.cfg = cfg;
    b->px = px;
    b->running_metrics = running_metrics;
    b->done = done;
    b->arg = arg;
    struct setup_env env = { .health = px->health, .opportunistic = dot->opportunistic,
                             .reuse = px->view ? px->view->routes : NULL };
    /* setup_start may finish (and free b) before it returns. */
    struct setup *s = setup_start(loop, cfg, &env, routes_done, b);
    if (!s)
        return NULL;
    b->setup = s;
    return b;
}

void build_cancel(struct build *b)
{
    if (!b)
        return;
    setup_cancel(b->setup);
    release(&b->g);
    free(b);
}
