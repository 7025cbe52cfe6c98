/* daemon/build.h: a new configuration built next to the running one.
 *
 * A build takes a loaded config and makes everything it needs without
 * touching anything live: the route table with its TLS profiles (setup.h,
 * after the host names are looked up), the listeners (the running ones are
 * shared, new ones opened but not started), and the metrics endpoint (a new
 * address is bound beside the old one). Only when every part succeeded is
 * the result handed over, for the daemon to swap in at once; on any failure
 * all of it is freed and the running configuration stays as it was. */
#ifndef DOTWARD_DAEMON_BUILD_H
#define DOTWARD_DAEMON_BUILD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct dot;
struct listener;
struct metrics_http;
struct proxy;
struct route_table;

struct generation {
    struct config *cfg;             /* owned */
    struct route_table *routes;     /* owned */
    struct listener **listeners;    /* a reference each */
    size_t n_listeners;
    struct metrics_http *metrics;   /* a new endpoint (owned), or NULL: keep or close the running one */
};
/* Frees what the generation still owns (NULL is fine). */
void generation_free(struct generation *g);

/* `g` (taken) is complete, or NULL after the failure was logged. */
typedef void build_done_fn(void *arg, struct generation *g);

struct build;
/* `cfg` is taken. `px`, `dot` and `running_metrics` (may be NULL) are
 * borrowed and must stay unchanged until `done` runs. May call `done`
 * before returning, and then returns NULL. */
struct build *build_start(struct ev_loop *loop, struct config *cfg, struct proxy *px, struct dot *dot,
                          const struct metrics_http *running_metrics, build_done_fn *done, void *arg);
/* `done` is not called. */
void build_cancel(struct build *b);

#endif
