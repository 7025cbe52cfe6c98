/* daemon/dot.h: the process's side of the DoT upgrade: the per-IP probe
 * table, the prober that runs its probes, the opportunistic TLS profile
 * they share with the data path, probe-on-start, and the state file.
 *
 * Owns all of them; the data path borrows the table and the profile (they
 * outlive it). A successful probe's connection is handed on through the
 * adopt hook. */
#ifndef DOTWARD_DAEMON_DOT_H
#define DOTWARD_DAEMON_DOT_H

#include <ev.h>
#include <stdbool.h>

#include "lib/rng.h"

struct config;
struct net_addr;
struct probe_table;
struct prober;
struct route_table;
struct tls_conn;
struct tls_profile;

struct dot {
    /* Read-only outside dot.c. */
    struct ev_loop *loop;
    struct rng rng;
    struct probe_table *table;
    struct prober *prober;
    struct tls_profile *opportunistic;
    const struct route_table *routes;  /* borrowed: the running table, for probe-on-start */
    char *state_file;                  /* owned copy of the running config's */
    double save_interval;
    bool warm;                         /* the CA store is loaded */
    ev_timer warmup;                   /* deferred TLS set-up, then probe-on-start */
    ev_timer save_timer;
    /* A probe's TLS connection to `ip`: fd and conn taken. */
    void (*adopt)(void *arg, const struct net_addr *ip, struct tls_profile *tls, int fd, struct tls_conn *conn);
    void *adopt_arg;
};

/* Policy from `cfg` (borrowed). NULL after logging. */
struct dot *dot_new(struct ev_loop *loop, const struct config *cfg);
/* Stops the probes and frees the table (dot_save first to keep it). */
void dot_free(struct dot *d);
/* Reads the state file of `cfg`, before any probe (a restored Good IP is
 * not probed again). A bad file costs what it knew, never the start. */
void dot_load_state(struct dot *d, const struct config *cfg);
/* The running config changed: policy, state file, save interval. `routes`
 * (borrowed until the next call) is what probe-on-start probes, once the
 * deferred TLS set-up is done. */
void dot_apply(struct dot *d, const struct config *cfg, const struct route_table *routes);
/* Writes the table to the state file now (nothing without one). */
void dot_save(struct dot *d);

#endif
