/* daemon/setup.h: turns a config into a route table. Host names are looked
 * up first (asynchronously, lib/resolve.h); with no upstream for ".", the
 * nameservers of the resolv.conf file serve it. Nothing live is touched:
 * the table is new, its servers pin entries in the health table (shared
 * with the running table, so RTT history carries over), and a strict
 * server keeps the TLS profile of the running table's server when its
 * name and CA file are the same (so its connections carry on). */
#ifndef DOTWARD_DAEMON_SETUP_H
#define DOTWARD_DAEMON_SETUP_H

#include <ev.h>

struct config;
struct health_table;
struct route_table;
struct tls_profile;

struct setup_env {
    struct health_table *health;        /* borrowed */
    struct tls_profile *opportunistic;  /* borrowed: the process's profile */
    const struct route_table *reuse;    /* borrowed, may be NULL: the running table */
};

/* `routes` is a new table (taken by the callee) or NULL after the problems
 * were logged. */
typedef void (*setup_done_cb)(void *arg, struct route_table *routes);

struct setup;
/* `cfg` and everything in `env` must stay valid until cb runs. May call
 * `cb` before returning (nothing to look up); then returns NULL. */
struct setup *setup_start(struct ev_loop *loop, const struct config *cfg, const struct setup_env *env,
                          setup_done_cb cb, void *arg);
void setup_cancel(struct setup *s);

#endif
