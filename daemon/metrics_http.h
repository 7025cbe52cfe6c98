/* daemon/metrics_http.h: the optional HTTP endpoint for monitoring.
 *
 * `GET /metrics` returns the counters in the Prometheus text exposition
 * format (0.0.4), `GET /health` returns 200 "ok" while the proxy serves and
 * 503 while it drains. Nothing else: other paths get 404, other methods 405.
 * One response per connection, then the connection closes.
 *
 * The endpoint must not become a way to hurt DNS service, so every
 * connection is bounded: a request of at most METRICS_HTTP_MAX_REQUEST
 * bytes (more: 431), METRICS_HTTP_DEADLINE seconds from accept to close
 * (a slow client is cut off), at most METRICS_HTTP_MAX_CONNS connections at
 * once (more are closed at once), and writes queue and wait for EV_WRITE
 * (lib/acceptor.h, lib/peer.h).
 *
 * No ACL applies: the operator picks the address (loopback, or a pod IP the
 * scraper reaches). The endpoint owns its listening socket and its
 * connections; it borrows the proxy, which must outlive it. */
#ifndef DOTWARD_METRICS_HTTP_H
#define DOTWARD_METRICS_HTTP_H

#include <stdbool.h>
#include <stdio.h>

#include "lib/net.h"

struct fd_waiters;
struct probe_table;
struct proxy;
struct stats;
struct metrics_http;

#define METRICS_HTTP_MAX_REQUEST 4096
#define METRICS_HTTP_MAX_CONNS 32
#define METRICS_HTTP_DEADLINE 2.0

/* Listens on `a` (copied), watchers on px->loop (px borrowed). `waiters`
 * (borrowed, the loop's; must outlive m) resumes accepting once
 * descriptors are free again. Returns NULL after logging. */
struct metrics_http *metrics_http_new(struct proxy *px, struct fd_waiters *waiters, const struct net_addr *a);
/* Closes the listening socket and every connection. NULL is fine. */
void metrics_http_free(struct metrics_http *m);
/* The address it listens on. */
const struct net_addr *metrics_http_addr(const struct metrics_http *m);

/* What /metrics shows, gathered from the proxy at request time. */
struct metrics_snapshot {
    const struct stats *stats;          /* borrowed */
    const struct probe_table *probes;   /* borrowed */
    unsigned inflight, tcp_clients, dot_connections;
    bool draining;
    double started;
};
void metrics_snapshot_of(const struct proxy *px, struct metrics_snapshot *out);

/* Writes every metric of `m` (borrowed, read only) to `out` in the
 * Prometheus text format; `now` is ev_now(), for the uptime. Separate from
 * the HTTP side so tests can render a made-up proxy. Returns 0, or -1 if
 * `out` reports a write error. (daemon/metrics_render.c) */
int metrics_render(const struct metrics_snapshot *m, double now, FILE *out);

#endif
