/* proxy/tcp_client.h: clients' TCP connections: 2-byte framing, pipelined
 * queries answered in completion order, a write queue that never blocks
 * the loop (lib/peer.h: deadlines for a message once begun, for a client
 * that does not read, for idleness), a cap on in-flight queries per
 * connection, and caps on connections, in all and per source address.
 *
 * The set owns every connection; a connection is also reference-counted
 * by the queries that came in on it (through tcp_client_ops), so an answer
 * that arrives after the client left finds a closed connection, not freed
 * memory. Each message goes to `recv` with a `struct client` for the answer. */
#ifndef DOTWARD_PROXY_TCP_CLIENT_H
#define DOTWARD_PROXY_TCP_CLIENT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/net.h"

struct client;
struct client_ops;
struct fd_waiters;
struct stats;
struct tcp_clients;

struct tcp_clients_opts {
    unsigned max;           /* connections open at once */
    unsigned per_source;    /* ... from one IP address */
    double idle;            /* s: nothing owed either way */
    double io;              /* s: a message arrives whole / the client reads its answers */
};

typedef void tcp_clients_recv_fn(void *arg, const struct client *c, const uint8_t *msg, size_t len);

/* Everything is borrowed and must outlive the set; `o` is copied. `seed`
 * keys the per-source counts' hash. */
struct tcp_clients *tcp_clients_new(struct ev_loop *loop, struct stats *stats, struct fd_waiters *waiters,
                                    const struct tcp_clients_opts *o, tcp_clients_recv_fn *recv, void *arg,
                                    uint32_t seed);
/* Closes every connection (the memory of those still referenced by
 * queries goes with their last reference). */
void tcp_clients_free(struct tcp_clients *s);
void tcp_clients_set_opts(struct tcp_clients *s, const struct tcp_clients_opts *o);
/* A connection was accepted (fd taken): served, or closed at once when its
 * source has per_source connections open, or when the set is full and no
 * client is idle or partial (else the one idle or partial the longest is
 * closed to make room). `to` (intercepted connections; else NULL): where
 * the client connected to, which its queries go to. */
void tcp_clients_accept(struct tcp_clients *s, int fd, const struct net_addr *peer, const struct net_addr *to);
/* Drain: no new queries; connections close once their answers are out. */
void tcp_clients_stop_reading(struct tcp_clients *s);
unsigned tcp_clients_count(const struct tcp_clients *s);

/* How a query answers a TCP client: conn is the connection. */
extern const struct client_ops tcp_client_ops;

#endif
