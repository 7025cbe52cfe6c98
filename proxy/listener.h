/* proxy/listener.h: the client-facing sockets.
 *
 * A listener is one UDP socket or one TCP listening socket on one address.
 * The proxy's array holds a reference to each open listener; a UDP query holds
 * one too, so an answer can still leave through a listener that a reload has
 * closed for new queries. TCP client connections are struct tcp_client, each
 * reference-counted in the same way by the queries that came in on it. */
#ifndef DOTWARD_LISTENER_H
#define DOTWARD_LISTENER_H

#include <ev.h>
#include <stdbool.h>

#include "lib/bytebuf.h"
#include "lib/net.h"

struct outbox;
struct proxy;

struct listener {
    struct proxy *px;
    unsigned refs;
    bool tcp;
    bool open;                 /* accepting/reading */
    struct net_addr addr;
    int fd;
    ev_io io;
    struct outbox *out;        /* UDP: batched answers, owned */
};

/* [::1]: on a host without IPv6 it cannot be bound, and nothing can reach it. */
bool listener_is_v6_loopback(const struct net_addr *a);
/* Binds and starts watching; returns NULL after logging, errno set. refs = 1 (the list's). */
struct listener *listener_open(struct proxy *px, const struct net_addr *a, bool tcp);
/* Stops reading or accepting; the fd stays open until the last reference. */
void listener_stop(struct listener *l);
void listener_resume(struct listener *l);
struct listener *listener_ref(struct listener *l);
void listener_unref(struct listener *l);
void listener_udp_send(struct listener *l, const struct net_addr *peer, const uint8_t *msg, size_t len);

/* Stops reading new queries on every TCP client (drain). */
void tcp_clients_stop_reading(struct proxy *px);

struct tcp_client;
struct tcp_client *tcp_client_ref(struct tcp_client *c);
void tcp_client_unref(struct tcp_client *c);
/* Queues an answer (copied) on the connection; dropped if it has closed. */
void tcp_client_send(struct tcp_client *c, const uint8_t *msg, size_t len);
/* A query that came in on `c` has been answered. */
void tcp_client_query_done(struct tcp_client *c);

#endif
