/* proxy/query.h: one client query from arrival to answer.
 *
 * query.c owns struct query: it checks the message, applies the ACL, picks
 * the zone and the server for each try, keeps the deadline, and answers the
 * client: the upstream's answer, or SERVFAIL. Transports (udp_pool.c,
 * stream.c) hold borrowed pointers to a query's tries in their pending maps
 * and report back through query_on_answer() / query_on_try_failed(). */
#ifndef DOTWARD_QUERY_H
#define DOTWARD_QUERY_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/net.h"
#include "probe/table.h"
#include "lib/wire.h"

struct listener;
struct proxy;
struct route_table;
struct route_zone;
struct stream;
struct tcp_client;
struct udp_sock;
struct upstream;

#define QUERY_MAX_TRIES 6
#define QUERY_INLINE_BYTES 512

enum try_kind { TRY_NONE, TRY_UDP, TRY_TCP, TRY_DOT };

struct query_try {
    struct query *q;
    enum try_kind kind;        /* while a transport holds it; TRY_NONE after */
    enum try_kind via;         /* how it was sent */
    struct upstream *up;       /* borrowed: the query's route table holds it */
    uint16_t id;               /* ID on the wire for this try */
    double sent_at;
    struct udp_sock *sock;     /* TRY_UDP: where the pending entry lives */
    struct stream *stream;     /* TRY_TCP, TRY_DOT */
    uint32_t slot;             /* index in the transport's pending map */
};

/* Where the answer goes. */
struct client {
    struct listener *udp;      /* a reference, for a UDP client */
    struct net_addr peer;
    struct tcp_client *tcp;    /* a reference, for a TCP client */
};

struct query {
    struct proxy *px;
    struct query *prev, *next; /* px->active, or px->free_queries (next only) */
    struct client client;
    struct route_table *routes;      /* a reference */
    const struct route_zone *zone;   /* inside routes */
    struct wire_msg wm;
    uint8_t *msg;                    /* the client's query as received */
    size_t len;
    double start, deadline;
    ev_timer timer;
    uint32_t tried;                  /* bit per server index of the zone */
    unsigned n_tries;
    bool want_tcp;                   /* TCP client, or the upstream said TC */
    const struct upstream *dot_failed; /* DoT failed to it: Do53 only, for this query */
    struct query_try tries[QUERY_MAX_TRIES];
    uint8_t inline_buf[QUERY_INLINE_BYTES];
};

/* A client message arrived (msg borrowed). Answers errors at once, else
 * starts a query. `client` is copied, taking new references. */
void query_receive(struct proxy *px, const struct client *client, const uint8_t *msg, size_t len);

/* An answer for try `t` (msg is the caller's scratch buffer, modified in place). */
void query_on_answer(struct query_try *t, uint8_t *msg, size_t len, const struct wire_msg *wm);
/* Try `t` failed (`why`: connection refused, lost, timed out...); the
 * transport has forgotten it. A failed DoT try is re-sent over Do53 to the
 * same server at once (opportunistic), or the next server is tried (strict). */
void query_on_try_failed(struct query_try *t, int why);

/* Answers every in-flight query with SERVFAIL (shutdown). */
void query_fail_all(struct proxy *px);
/* Frees the free list (shutdown). */
void query_pool_free(struct proxy *px);

/* Sends a message to a client (UDP: batched; TCP: queued on the connection). */
void client_send(struct proxy *px, const struct client *c, const uint8_t *msg, size_t len);

#endif
