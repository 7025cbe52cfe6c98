/* proxy/stream.h: one upstream stream connection: Do53 over TCP, or DoT.
 *
 * One object is one connection: it connects on first use (DoT: to port 853
 * of the server's IP, TLS through lib/tls.h with its profile), pipelines
 * requests with IDs of its own (unique on the connection), matches answers
 * by ID and question in any order, and closes when idle (DoT: no later than
 * the server's edns-tcp-keepalive says). Writes queue up during a loop
 * iteration and leave together (lib/flush.h).
 *
 * Once closed (failure, server close, idle, stream_abort) it is dead for
 * good: every request still waiting is handed back through the sink's
 * failed(), and the owner is told through env->closed() first, so that a
 * request retried from failed() gets a new connection. The owner
 * (proxy/conns.c) frees a dead stream later, never from inside its
 * callbacks. */
#ifndef DOTWARD_PROXY_STREAM_H
#define DOTWARD_PROXY_STREAM_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/net.h"
#include "probe/table.h"
#include "proxy/transport.h"

struct flusher;
struct rng;
struct stats;
struct stream;
struct tls_conn;
struct tls_profile;
struct tls_session;

enum stream_kind { STREAM_TCP, STREAM_DOT };

/* Shared by the streams of one owner; borrowed, outlives them. */
struct stream_env {
    struct ev_loop *loop;
    struct rng *rng;
    struct stats *stats;
    struct flusher *flusher;
    const struct tsink *sink;
    /* The stream is dead and holds no request. */
    void (*closed)(void *arg, struct stream *s);
    /* Opportunistic DoT: what an exchange with `ip` ended with (OK for each
     * answer, the failure that closed the connection). */
    void (*dot_outcome)(void *arg, const struct net_addr *ip, enum probe_outcome o, const char *reason);
    /* Opportunistic DoT sessions: the one to resume (borrowed), and a new
     * one to keep (taken). */
    const struct tls_session *(*session_get)(void *arg, const struct net_addr *ip);
    void (*session_put)(void *arg, const struct net_addr *ip, struct tls_session *s);
    void *arg;
    double idle;          /* s: an idle connection closes */
    double setup;         /* s: one query budget: connect and handshake must be done within it */
    uint16_t edns_size;   /* our UDP size in the OPT added on the DoT leg */
    unsigned mark;        /* SO_MARK of every connection (transparent mode); 0: none */
};

/* `server` is copied (DoT: its port becomes 853); `tls` (DoT only) gets a
 * reference. Connects on the first stream_send. NULL on no memory. */
struct stream *stream_new(const struct stream_env *env, const struct net_addr *server, enum stream_kind kind,
                          struct tls_profile *tls);
/* A dead stream, or at shutdown (waiting requests fail with LOCAL_ERROR). */
void stream_free(struct stream *s);
/* Queues `r`. Returns 0, or -1 (too many in flight, no memory, cannot
 * connect now, dead): the caller treats that as a failed try. Never calls
 * the sink. */
int stream_send(struct stream *s, struct treq *r);
void stream_cancel(struct stream *s, struct treq *r);
/* Closes the connection because of `why`. */
void stream_abort(struct stream *s, enum probe_outcome why, const char *reason);
/* Takes over a DoT connection a probe established (fd and conn taken).
 * Returns 0, or -1 if this stream has connected already (the caller keeps them). */
int stream_adopt(struct stream *s, int fd, struct tls_conn *conn);

bool stream_is_open(const struct stream *s);   /* TLS/TCP set up */
unsigned stream_inflight(const struct stream *s);
enum stream_kind stream_kind(const struct stream *s);
const struct net_addr *stream_addr(const struct stream *s);
struct tls_profile *stream_profile(const struct stream *s);

/* For the owner's index (proxy/conns.c): never read by stream.c. */
struct stream_link {
    struct stream *next;
    uint32_t hash;
};
struct stream_link *stream_link(struct stream *s);

#endif
