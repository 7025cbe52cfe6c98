/* proxy/query.h: one client query from arrival to answer.
 *
 * The query pool owns every query in flight: it checks the message,
 * applies the ACL, picks the zone and the server for each try, keeps the
 * deadline, and answers the client: the upstream's answer, or an error it
 * makes itself. It reaches the transports through `struct
 * query_transports` and the clients through `struct client_ops`, so that
 * neither side knows the other's types (and tests can put fakes there);
 * the transports report back through the pool's sink (proxy/transport.h). */
#ifndef DOTWARD_PROXY_QUERY_H
#define DOTWARD_PROXY_QUERY_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/net.h"
#include "lib/wire.h"
#include "probe/table.h"
#include "proxy/transport.h"

struct probe_table;
struct rng;
struct route_server;
struct stats;
struct targets;
struct view;

enum try_kind { TRY_UDP, TRY_TCP, TRY_DOT };

struct client;

/* A client's side of the conversation: a UDP listener and a peer address,
 * or a TCP connection. The pool holds a reference (ref/unref) while the
 * query is in flight. */
struct client_ops {
    bool stream;  /* TCP: answers are not truncated, upstreams are asked over TCP */
    void (*send)(const struct client *c, const uint8_t *msg, size_t len);
    /* One message of this client has been dealt with (answered or dropped). */
    void (*done)(void *conn);
    void (*ref)(void *conn);
    void (*unref)(void *conn);
    /* Stream clients: no more messages are read, and the connection closes
     * once what was sent is out (a zone transfer broke off). */
    void (*close)(void *conn);
};

struct client {
    const struct client_ops *ops;  /* borrowed, static */
    void *conn;
    struct net_addr peer;
    struct net_local local;        /* UDP on a wildcard listener: where the query arrived */
    /* Intercepted (transparent mode): where the client sent it, and where
     * it goes; the answer must seem to come from there. len 0 otherwise. */
    struct net_addr to;
};

/* The transports behind one interface; `kind` picks UDP, TCP or DoT.
 * send: 0, or -1 (the try could not start for a reason of this host's:
 * descriptors, memory, the connection cap; a server's failure always comes
 * later, through the sink); *opening is set when the connection must be
 * set up first (the try then waits longer). */
struct query_transports {
    int (*send)(void *arg, enum try_kind kind, struct treq *r, bool *opening);
    void (*cancel)(void *arg, enum try_kind kind, struct treq *r);
    void *arg;
};

struct query_env {
    struct ev_loop *loop;
    struct rng *rng;
    struct stats *stats;
    struct probe_table *probes;  /* the DoT table */
    struct targets *targets;     /* transparent mode's servers; NULL: none */
    struct query_transports tx;
    /* The last query in flight has ended. */
    void (*idle)(void *arg);
    void *idle_arg;
    /* A zone transfer (AXFR, IXFR) from a stream client for `srv`, over
     * `kind` (TRY_TCP or TRY_DOT): returns 0 if it started (the client's
     * done() comes when it ends), -1 if it could not (the pool answers
     * SERVFAIL). */
    int (*transfer)(void *arg, struct view *v, const struct client *c, const uint8_t *msg, size_t len,
                    const struct wire_msg *wm, struct route_server *srv, enum try_kind kind);
    void *transfer_arg;
};

struct query_pool;

/* `env` is copied; what it points to is borrowed and must outlive the pool. */
struct query_pool *query_pool_new(const struct query_env *env);
/* Answers every query still in flight with SERVFAIL, then frees the pool. */
void query_pool_free(struct query_pool *p);
/* The sink to give the transports. */
const struct tsink *query_pool_sink(struct query_pool *p);
unsigned query_pool_inflight(const struct query_pool *p);

/* A client message arrived (msg borrowed) under view `v` (a reference is
 * taken if a query starts). Answers errors at once, else starts a query. */
void query_receive(struct query_pool *p, struct view *v, const struct client *c, const uint8_t *msg, size_t len);
/* Answers every in-flight query with SERVFAIL (drain timeout, shutdown). */
void query_fail_all(struct query_pool *p);

#endif
