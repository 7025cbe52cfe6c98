/* proxy/listener.h: the client-facing sockets.
 *
 * A listener is one UDP socket or one TCP listening socket on one address.
 * It hands what arrives to its owner through the hooks it was opened with:
 * each UDP datagram, each accepted TCP connection. Reference-counted: the
 * proxy's listener set holds one, and so does every UDP query answered
 * through it, so an answer can still leave through a listener that a
 * reload has closed for new queries. */
#ifndef DOTWARD_PROXY_LISTENER_H
#define DOTWARD_PROXY_LISTENER_H

#include <ev.h>
#include <stdbool.h>

#include "lib/net.h"

struct acceptor;
struct fd_waiters;
struct flusher;
struct listener;
struct outbox;
struct reply_socks;
struct stats;
struct client_ops;

struct listener_hooks {
    /* A datagram (msg borrowed) from `peer`, to `local` (known on a wildcard
     * listener); `to` is where it was sent (a transparent listener; else len 0). */
    void (*udp)(void *arg, struct listener *l, const struct net_addr *peer, const struct net_local *local,
                const struct net_addr *to, const uint8_t *msg, size_t len);
    /* An accepted connection: `fd` is taken. */
    void (*tcp)(void *arg, struct listener *l, int fd, const struct net_addr *peer);
    void *arg;
    struct ev_loop *loop;
    struct flusher *flusher;
    struct stats *stats;
    struct fd_waiters *waiters;
};

struct listener {
    const struct listener_hooks *hooks;   /* borrowed: outlives the listener */
    unsigned refs;
    bool tcp;
    bool transparent;          /* TPROXY target: traffic for any address arrives here */
    bool open;                 /* reading/accepting */
    struct net_addr addr;
    int fd;
    ev_io io;                  /* UDP */
    struct acceptor *acceptor; /* TCP: owned */
    struct outbox *out;        /* UDP: batched answers, owned */
    struct reply_socks *replies; /* transparent UDP: sockets bound to the addresses answered from (128) */
};

/* [::1]: on a host without IPv6 it cannot be bound, and nothing can reach it. */
bool listener_is_v6_loopback(const struct net_addr *a);
/* Binds, not yet watching (listener_start); `transparent` makes it a
 * TPROXY target (IP_TRANSPARENT, original destinations). Returns NULL after
 * logging, errno set. refs = 1. */
struct listener *listener_open(const struct listener_hooks *hooks, const struct net_addr *a, bool tcp,
                               bool transparent);
void listener_start(struct listener *l);
/* Stops reading or accepting; the fd stays open until the last reference. */
void listener_stop(struct listener *l);
struct listener *listener_ref(struct listener *l);
void listener_unref(struct listener *l);

/* How a query answers a UDP client: conn is the listener. */
extern const struct client_ops listener_udp_client;

#endif
