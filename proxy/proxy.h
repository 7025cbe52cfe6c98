/* proxy/proxy.h: the context of one forwarding loop. Everything a callback
 * needs hangs off struct proxy; there are no globals besides logging.
 * The proxy owns the config, the route table, the listeners, the upstream
 * UDP pool and every in-flight query. */
#ifndef DOTWARD_PROXY_H
#define DOTWARD_PROXY_H

#include <ev.h>
#include <stdbool.h>

#include "config/config.h"
#include "lib/rng.h"
#include "proxy/stats.h"

struct listener;
struct control;
struct outbox;
struct probe_table;
struct prober;
struct stream;
struct tls_ctx;
struct query;
struct route_table;
struct tcp_client;
struct udp_pool;

struct proxy {
    struct ev_loop *loop;
    struct config *cfg;             /* owned; replaced whole on reload */
    struct route_table *routes;     /* a reference */
    struct rng rng;
    struct stats stats;
    struct udp_pool *udp;
    /* The per-IP DoT table and its prober outlive reloads. */
    struct probe_table *probes;
    struct prober *prober;
    struct tls_ctx *tls_opportunistic;   /* owned: any certificate, no SNI (RFC 9539) */
    struct control *control;             /* control socket, or NULL */
    double started;                      /* ev_now() at start, for uptime */
    ev_timer warmup;                     /* deferred TLS set-up, then probe-on-start */
    bool warm;
    struct listener **listeners;    /* a reference to each */
    size_t n_listeners;
    struct tcp_client *tcp_list;    /* open client connections, owned */
    unsigned tcp_clients;
    /* In-flight client queries, and a free list to reuse their memory. */
    struct query *active;
    struct query *free_queries;
    unsigned inflight, n_free;
    /* UDP sends wait here until the loop is about to block, then go out in
     * one sendmmsg per socket. */
    struct outbox *dirty;
    struct stream *dirty_streams;       /* streams with queued writes, flushed the same way */
    ev_prepare flush_watcher;
    bool draining;
    ev_timer drain_timer;
    ev_timer save_timer;                /* writes the probe table every save-interval */
    void (*on_drained)(struct proxy *px);  /* set by main */
};

/* Builds a proxy on `loop` for `cfg` (taken) and `routes` (a reference is
 * taken); opens the listeners. Returns NULL after logging on failure. */
struct proxy *proxy_new(struct ev_loop *loop, struct config *cfg, struct route_table *routes);
/* Swaps in a new config and route table (both taken). Listeners are opened
 * and closed to match; in-flight queries finish on what they started with.
 * Returns 0, or -1 (nothing changed) if a new listener cannot be opened. */
int proxy_reconfigure(struct proxy *px, struct config *cfg, struct route_table *routes);
/* Stops accepting queries; in-flight ones finish or get SERVFAIL once
 * drain-timeout passes; then on_drained() is called. */
void proxy_drain(struct proxy *px);
void proxy_free(struct proxy *px);
/* Called by query.c when the last in-flight query of a drain is done. */
void proxy_drained(struct proxy *px);
void proxy_log_stats(const struct proxy *px);
/* probe-on-start: probes the opportunistic upstreams named in the config. */
void proxy_probe_on_start(struct proxy *px);
/* Writes the probe table to the config's state-file now (nothing without
 * one); a failure is a warning. proxy_new() reads the file back before any
 * probe and saves every save-interval; main calls this at exit. */
void proxy_state_save(struct proxy *px);
/* After start and each reload: probe-on-start, once the deferred part of the
 * TLS set-up (the CA store) is done. */
void proxy_start_probing(struct proxy *px);

#endif
