/* proxy/udp_pool.h: upstream queries over UDP (RFC 5452).
 *
 * The pool owns a set of unconnected UDP sockets per address family, each
 * bound by the kernel to a random ephemeral port, and replaces each socket
 * after it has carried `udp-socket-uses` queries. A query gets a random ID
 * that is unique on its socket; an answer counts only if it arrives on that
 * socket from the upstream's address and port with that ID and the same
 * question. Everything else is dropped and counted.
 *
 * Sends are batched: the queries of one loop iteration leave through one
 * socket, picked at random per batch, in one sendmmsg. */
#ifndef DOTWARD_UDP_POOL_H
#define DOTWARD_UDP_POOL_H

struct proxy;
struct query;
struct query_try;

struct udp_pool *udp_pool_new(struct proxy *px);
void udp_pool_free(struct udp_pool *p);
/* Sends `q`'s message for try `t` (t->up set). Returns 0, or -1 if it could
 * not be sent (no socket): the caller treats that as a failed try. */
int udp_pool_send(struct udp_pool *p, struct query *q, struct query_try *t);
/* Forgets a pending try (the query is done with it). */
void udp_pool_cancel(struct udp_pool *p, struct query_try *t);

#endif
