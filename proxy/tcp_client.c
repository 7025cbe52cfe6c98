/* proxy/tcp_client.c: clients' TCP connections on lib/peer.h. */
#include "proxy/tcp_client.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/ipkey.h"
#include "lib/log.h"
#include "lib/peer.h"
#include "lib/wire.h"
#include "proxy/query.h"
#include "proxy/stats.h"

/* Stop reading a client with this many queries in flight until answers drain. */
#define TCP_CLIENT_MAX_INFLIGHT 64
/* Stop reading while this much output waits for a slow reader. */
#define TCP_CLIENT_MAX_PENDING_OUT (256 * 1024)
/* A whole message, its length and the start of the next. */
#define TCP_CLIENT_MAX_IN (2 * (WIRE_MAX_MSG + 2))
#define SOURCE_BUCKETS 64

/* Connections open from one IP address. */
struct source {
    struct source *next;
    struct ip_key ip;
    unsigned n;
};

struct tcp_clients {
    struct ev_loop *loop;
    struct stats *stats;
    struct fd_waiters *waiters;
    struct tcp_clients_opts opts;
    tcp_clients_recv_fn *recv;
    void *arg;
    struct tcp_client *list;
    unsigned n;
    uint32_t seed;
    struct source *sources[SOURCE_BUCKETS];
};

struct tcp_client {
    struct peer peer;                /* embedded: its memory is ours */
    struct tcp_client *prev, *next;  /* set->list */
    struct tcp_clients *set;         /* NULL once closed */
    struct source *source;
    unsigned refs;                   /* the set's, and one per query in flight */
    unsigned inflight;
    bool stop_reading;               /* drain: no new queries */
    bool eof;                        /* the client sent all it will send */
    bool in_frames;                  /* handle_frames() is on the stack */
    struct net_addr to;              /* intercepted: where the client connected to; else len 0 */
};

static void tcp_client_unref(struct tcp_client *c)
{
    if (c && --c->refs == 0)
        free(c);
}

/* ---- per-source counts ---- */

static struct source **source_slot(struct tcp_clients *s, const struct ip_key *k)
{
    struct source **pp = &s->sources[ip_key_hash(k, s->seed, 0) % SOURCE_BUCKETS];
    while (*pp && !ip_key_equal(&(*pp)->ip, k))
        pp = &(*pp)->next;
    return pp;
}

static void source_release(struct tcp_clients *s, struct source *src)
{
    if (!src || --src->n > 0)
        return;
    struct source **pp = source_slot(s, &src->ip);
    *pp = src->next;
    free(src);
}

/* ---- a connection's life ---- */

/* Nothing more will be read and nothing is owed: the connection is done. */
static void maybe_finish(struct tcp_client *c)
{
    if (!peer_closed(&c->peer) && (c->stop_reading || c->eof) && c->inflight == 0 &&
        peer_out_len(&c->peer) == 0)
        peer_close(&c->peer, c->eof ? PEER_EOF : PEER_SHUTDOWN);
}

static void update_reading(struct tcp_client *c)
{
    peer_set_owed(&c->peer, c->inflight);
    peer_pause(&c->peer, c->stop_reading || c->eof || c->inflight >= TCP_CLIENT_MAX_INFLIGHT);
}

static void handle_frames(struct tcp_client *c)
{
    if (c->in_frames)
        return;
    c->in_frames = true;
    c->refs++; /* a query's answer may close the connection meanwhile */
    while (c->set && !peer_closed(&c->peer) && !c->stop_reading && c->inflight < TCP_CLIENT_MAX_INFLIGHT) {
        size_t avail;
        const uint8_t *in = peer_in(&c->peer, &avail);
        if (avail < 2)
            break;
        size_t len = wire_get16(in);
        if (avail < len + 2)
            break;
        struct tcp_clients *set = c->set;
        set->stats->queries_tcp++;
        c->inflight++;
        peer_set_owed(&c->peer, c->inflight);
        struct client cl = { .ops = &tcp_client_ops, .conn = c, .peer = *peer_addr(&c->peer), .to = c->to };
        /* recv answers or starts a query; both end in the client's done(). */
        set->recv(set->arg, &cl, in + 2, len);
        peer_consume(&c->peer, len + 2);
    }
    if (c->set && !peer_closed(&c->peer)) {
        update_reading(c);
        maybe_finish(c);
    }
    c->in_frames = false;
    tcp_client_unref(c);
}

static void on_input(void *arg, struct peer *p)
{
    (void)p;
    handle_frames(arg);
}

/* A client may send its queries and half-close: it still gets the answers. */
static void on_eof(void *arg, struct peer *p)
{
    struct tcp_client *c = arg;
    (void)p;
    c->eof = true;
    handle_frames(c);
    update_reading(c);
    maybe_finish(c);
}

static void on_drained(void *arg, struct peer *p)
{
    (void)p;
    maybe_finish(arg);
}

static void on_closed(void *arg, struct peer *p, enum peer_why why)
{
    struct tcp_client *c = arg;
    struct tcp_clients *s = c->set;
    (void)p;
    if (why == PEER_MESSAGE_TIMEOUT || why == PEER_WRITE_TIMEOUT)
        s->stats->tcp_clients_timed_out++;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n--;
    source_release(s, c->source);
    c->source = NULL;
    c->set = NULL;
    tcp_client_unref(c); /* the set's reference */
}

static const struct peer_ops client_peer_ops = {
    .input = on_input, .eof = on_eof, .timeout = NULL, .drained = on_drained, .closed = on_closed,
};

/* ---- the set ---- */

struct tcp_clients *tcp_clients_new(struct ev_loop *loop, struct stats *stats, struct fd_waiters *waiters,
                                    const struct tcp_clients_opts *o, tcp_clients_recv_fn *recv, void *arg,
                                    uint32_t seed)
{
    struct tcp_clients *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    s->stats = stats;
    s->waiters = waiters;
    s->opts = *o;
    s->recv = recv;
    s->arg = arg;
    s->seed = seed;
    return s;
}

void tcp_clients_set_opts(struct tcp_clients *s, const struct tcp_clients_opts *o) { s->opts = *o; }
unsigned tcp_clients_count(const struct tcp_clients *s) { return s->n; }

void tcp_clients_free(struct tcp_clients *s)
{
    if (!s)
        return;
    while (s->list)
        peer_close(&s->list->peer, PEER_SHUTDOWN);
    free(s);
}

/* When full: the client that owes nothing and has been idle, or sending a
 * partial query, the longest makes room. NULL if every client is busy. */
static struct tcp_client *eviction_victim(const struct tcp_clients *s)
{
    struct tcp_client *best = NULL;
    double best_since = 0;
    for (struct tcp_client *c = s->list; c; c = c->next) {
        if (c->inflight > 0 || peer_out_len(&c->peer) > 0)
            continue;
        double since = peer_partial_since(&c->peer);
        if (since <= 0)
            since = peer_idle_since(&c->peer);
        if (since > 0 && (!best || since < best_since)) {
            best = c;
            best_since = since;
        }
    }
    return best;
}

void tcp_clients_accept(struct tcp_clients *s, int fd, const struct net_addr *peer, const struct net_addr *to)
{
    struct ip_key k;
    ip_key_of(peer, &k);
    struct source **slot = source_slot(s, &k);
    if (*slot && (*slot)->n >= s->opts.per_source) {
        s->stats->tcp_clients_rejected++;
        close(fd);
        return;
    }
    if (s->n >= s->opts.max) {
        struct tcp_client *victim = eviction_victim(s);
        if (!victim) {
            s->stats->tcp_clients_rejected++;
            close(fd);
            return;
        }
        s->stats->tcp_clients_evicted++;
        peer_close(&victim->peer, PEER_EVICTED);
        slot = source_slot(s, &k); /* the victim's source may have gone */
    }
    struct tcp_client *c = calloc(1, sizeof *c);
    struct source *src = *slot;
    if (!src && (src = calloc(1, sizeof *src))) {
        src->ip = k;
        *slot = src;
    }
    if (!c || !src) {
        free(c);
        if (src && src->n == 0) {
            *slot = src->next;
            free(src);
        }
        close(fd);
        return;
    }
    src->n++;
    c->source = src;
    if (to)
        c->to = *to;
    c->set = s;
    c->refs = 1; /* the set's */
    c->next = s->list;
    if (s->list)
        s->list->prev = c;
    s->list = c;
    s->n++;
    struct peer_limits lim = { .idle = s->opts.idle, .message = s->opts.io, .write = s->opts.io,
                               .max_out = TCP_CLIENT_MAX_PENDING_OUT, .max_in = TCP_CLIENT_MAX_IN };
    peer_init(&c->peer, s->loop, fd, peer, &lim, &client_peer_ops, c, s->waiters);
}

void tcp_clients_stop_reading(struct tcp_clients *s)
{
    struct tcp_client *c = s->list;
    while (c) {
        struct tcp_client *next = c->next;
        c->stop_reading = true;
        update_reading(c);
        maybe_finish(c); /* may close an idle client, unlinking it */
        c = next;
    }
}

/* ---- how queries answer ---- */

static void client_send(const struct client *cl, const uint8_t *msg, size_t len)
{
    struct tcp_client *c = cl->conn;
    if (c->set && !peer_closed(&c->peer) && peer_send_framed(&c->peer, msg, len) < 0)
        c->set->stats->send_errors++;
}

static void client_done(void *conn)
{
    struct tcp_client *c = conn;
    if (c->inflight > 0)
        c->inflight--;
    if (!c->set || peer_closed(&c->peer))
        return;
    /* Frames may be waiting behind the in-flight cap. */
    handle_frames(c);
}

static void client_ref(void *conn) { ((struct tcp_client *)conn)->refs++; }
static void client_unref(void *conn) { tcp_client_unref(conn); }

static void client_close(void *conn)
{
    struct tcp_client *c = conn;
    if (!c->set || peer_closed(&c->peer))
        return;
    c->stop_reading = true;
    update_reading(c);
    maybe_finish(c);
}

const struct client_ops tcp_client_ops = {
    .stream = true, .send = client_send, .done = client_done, .ref = client_ref, .unref = client_unref,
    .close = client_close,
};
