/* proxy/proxy.h: the data path of one loop, wired together.
 *
 * The proxy owns the listeners' hooks, the TCP client set, the query pool,
 * the upstream transports (UDP pool, connection pool), the per-address
 * health table and the counters, and holds the current view and listener
 * set. It borrows the probe table (the process's, which outlives it).
 * Configuration arrives only through proxy_swap(), whole: the daemon builds
 * a view and its listeners aside (proxy_open_listeners reuses the open
 * ones) and swaps them in at once; queries in flight finish on the view
 * they started with. No globals besides logging: every callback finds its
 * context here. */
#ifndef DOTWARD_PROXY_PROXY_H
#define DOTWARD_PROXY_PROXY_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/flush.h"
#include "lib/rng.h"
#include "proxy/listener.h"
#include "proxy/stats.h"

struct config;
struct conns;
struct fd_waiters;
struct health_table;
struct probe_table;
struct query_pool;
struct tcp_clients;
struct tls_conn;
struct tls_profile;
struct udp_pool;
struct view;

struct proxy {
    /* Read-only outside proxy.c. */
    struct ev_loop *loop;
    struct rng rng;
    struct stats stats;
    struct flusher flusher;
    struct health_table *health;     /* owned: route tables pin their servers here */
    struct probe_table *probes;      /* borrowed */
    struct fd_waiters *waiters;      /* borrowed: the loop's */
    struct udp_pool *udp;
    struct conns *conns;
    struct xfr_pool *xfrs;
    struct targets *targets;       /* transparent mode's servers */
    struct query_pool *queries;
    struct tcp_clients *tcp;
    struct listener_hooks lhooks;
    struct view *view;               /* the current one (a reference); NULL before the first swap */
    struct listener **listeners;     /* the current set (a reference each) */
    size_t n_listeners;
    double started;                  /* ev_now() at the first swap */
    bool draining;
    ev_timer drain_timer;
    void (*on_drained)(void *arg);
    void *drained_arg;
};

/* `probes` and `waiters` (lib/acceptor.h) are borrowed and outlive the
 * proxy. NULL on no memory. */
struct proxy *proxy_new(struct ev_loop *loop, struct probe_table *probes, struct fd_waiters *waiters);
/* The profile intercepted servers are asked over DoT with (a reference is taken). */
void proxy_set_opportunistic(struct proxy *px, struct tls_profile *opportunistic);
/* Answers what is in flight with SERVFAIL and frees everything. */
void proxy_free(struct proxy *px);

/* The listeners of `cfg` (borrowed), reusing the proxy's open ones and
 * opening the others without starting them. Returns 0 with a new array
 * (references taken by the caller: proxy_swap, or proxy_release_listeners),
 * or -1 after logging, with nothing changed. */
int proxy_open_listeners(struct proxy *px, const struct config *cfg, struct listener ***out, size_t *n);
void proxy_release_listeners(struct listener **list, size_t n);
/* Takes `v` and the listener array: the listeners start, the ones not in
 * it stop, and new queries see `v`. The transports take its settings. */
void proxy_swap(struct proxy *px, struct view *v, struct listener **list, size_t n);

/* Stops accepting queries; in-flight ones finish or get SERVFAIL once
 * `timeout` passes; then on_drained(arg). */
void proxy_drain(struct proxy *px, double timeout, void (*on_drained)(void *arg), void *arg);
void proxy_log_stats(const struct proxy *px);

/* A probe set up a DoT connection to `ip` with the opportunistic profile
 * `tls` (borrowed): fd and conn are taken. */
void proxy_adopt_dot(struct proxy *px, const struct net_addr *ip, struct tls_profile *tls, int fd,
                     struct tls_conn *conn);

unsigned proxy_inflight(const struct proxy *px);
unsigned proxy_tcp_clients(const struct proxy *px);
unsigned proxy_dot_connections(const struct proxy *px);

#endif
