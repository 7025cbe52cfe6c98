/* proxy/udp_pool.h: upstream requests over UDP (RFC 5452).
 *
 * The pool owns a set of unconnected UDP sockets per address family, each
 * bound by the kernel to a random ephemeral port, and replaces each socket
 * after it has carried `socket_uses` requests. A request gets a random ID
 * that is unique on its socket; an answer counts only if it arrives on that
 * socket from the request's server (address and port) with that ID and the
 * same question. Everything else is dropped and counted.
 *
 * Sends are batched: the requests of one loop iteration leave through one
 * socket, picked at random per batch, in one sendmmsg (lib/outbox.h).
 * Answers and nothing else go to the sink; the pool never reports a
 * failure (a lost datagram is the caller's timeout). */
#ifndef DOTWARD_PROXY_UDP_POOL_H
#define DOTWARD_PROXY_UDP_POOL_H

#include <ev.h>
#include <stdint.h>

#include "proxy/transport.h"

struct flusher;
struct rng;
struct stats;

struct udp_pool_opts {
    unsigned sockets;       /* per family */
    unsigned socket_uses;
    uint16_t edns_size;     /* our UDP size, written into the OPT of each request */
    unsigned mark;          /* SO_MARK of each socket (transparent mode); 0: none */
};

/* Everything is borrowed and must outlive the pool; `o` is copied. */
struct udp_pool *udp_pool_new(struct ev_loop *loop, struct rng *rng, struct stats *stats, struct flusher *fl,
                              const struct tsink *sink, const struct udp_pool_opts *o);
void udp_pool_free(struct udp_pool *p);
void udp_pool_set_opts(struct udp_pool *p, const struct udp_pool_opts *o);
/* Sends `r` to r->to. Returns 0, or -1 if it could not be sent (no socket). */
int udp_pool_send(struct udp_pool *p, struct treq *r);
/* Forgets a pending request. */
void udp_pool_cancel(struct udp_pool *p, struct treq *r);

#endif
