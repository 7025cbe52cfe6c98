/* proxy/conns.h: every upstream stream connection (Do53 over TCP, DoT),
 * owned in one place.
 *
 * Connections are found by server address, transport and TLS profile, so a
 * request always travels on a connection made under its own policy: a
 * reload that changes a server's TLS policy gives it new connections, and
 * the old ones finish the requests they carry and then close. One
 * connection per key, a second under load. At most `max_conns` are open at
 * once: at the cap the least recently used idle one is closed to make room,
 * and without an idle one the send fails (the caller falls back or tries
 * another server). Idle connections close by themselves (stream.h).
 *
 * Dead connections are freed when the loop is about to block, never from
 * inside their own callbacks. Borrows everything in `env`; the sink gets
 * every answer and failure. */
#ifndef DOTWARD_PROXY_CONNS_H
#define DOTWARD_PROXY_CONNS_H

#include <stdbool.h>

#include "proxy/stream.h"

struct conns;

struct conns_opts {
    unsigned max_conns;
    unsigned max_dot;       /* DoT connections at most (within max_conns) */
    double idle, setup;
    uint16_t edns_size;
    unsigned mark;
};

/* `env` is copied, except `closed` and `arg` (the pool's own). */
struct conns *conns_new(const struct stream_env *env, const struct conns_opts *o);
/* Frees every connection; nothing may wait on them any more. */
void conns_free(struct conns *c);
void conns_set_opts(struct conns *c, const struct conns_opts *o);

/* Sends `r` over TCP to r->to, or over DoT to r->to's IP with r->tls.
 * *opening says whether the connection still has to be set up first.
 * Returns 0, or -1 (at the cap with no idle connection to close, or the
 * connection could not be started): never calls the sink. */
int conns_send(struct conns *c, enum stream_kind kind, struct treq *r, bool *opening);
/* Forgets `r` (held: r->owner is its connection). */
void conns_cancel(struct conns *c, struct treq *r);
/* Takes a DoT connection a probe set up with `ip` (fd and conn taken:
 * closed if nothing needs them). */
void conns_adopt(struct conns *c, const struct net_addr *ip, struct tls_profile *tls, int fd,
                 struct tls_conn *conn);

/* Connections of `kind` set up and carrying queries now. */
unsigned conns_open(const struct conns *c, enum stream_kind kind);

#endif
