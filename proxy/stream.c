/* proxy/stream.c: upstream TCP and DoT connections with pipelining. */
#include "proxy/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/bytebuf.h"
#include "lib/idmap.h"
#include "lib/log.h"
#include "proxy/proxy.h"
#include "proxy/query.h"
#include "lib/tls.h"
#include "proxy/upstream.h"
#include "lib/wire.h"

#define STREAM_MAX_INFLIGHT 1024
#define STREAM_READ_CHUNK 16384
#define DOT_PORT 853
#define DOT_PAD_BLOCK 128            /* RFC 8467 4.1 */
#define KEEPALIVE_MARGIN 0.5         /* s: close before the server says it will */
#define QUICKACK_MAX_PENDING 8

enum stream_state { STREAM_CLOSED, STREAM_CONNECTING, STREAM_HANDSHAKE, STREAM_OPEN };

struct stream {
    struct proxy *px;
    struct upstream *up;
    enum stream_kind kind;
    struct net_addr addr;      /* where it connects */
    enum stream_state state;
    int fd;
    struct tls_conn *tls;
    bool want_write;           /* TLS needs EV_WRITE to make progress */
    bool session_saved;
    double idle_limit;         /* s; from config, lowered by the server's keepalive */
    ev_io io;
    ev_timer timer;            /* connect/handshake deadline, then idle timeout */
    struct bytebuf in, out;
    struct idmap pending;      /* ID + 1 -> struct query_try * (0 is the empty key) */
    struct stream *next_dirty;
    bool dirty;
};

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

struct stream *stream_new(struct proxy *px, struct upstream *up, enum stream_kind kind)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->px = px;
    s->up = up;
    s->kind = kind;
    s->addr = up->addr;
    if (kind == STREAM_DOT)
        net_addr_set_port(&s->addr, DOT_PORT);
    s->fd = -1;
    ev_init(&s->io, io_cb);
    ev_set_priority(&s->io, EV_MAXPRI); /* answers before query timers: see udp_pool.c */
    ev_init(&s->timer, timer_cb);
    s->io.data = s->timer.data = s;
    return s;
}

bool stream_is_open(const struct stream *s) { return s->state == STREAM_OPEN; }
unsigned stream_inflight(const struct stream *s) { return (unsigned)s->pending.used; }

static double idle_timeout(const struct stream *s)
{
    double cfg = s->px->cfg->upstream_tcp_idle;
    return s->idle_limit > 0 && s->idle_limit < cfg ? s->idle_limit : cfg;
}

static void update_io(struct stream *s)
{
    struct ev_loop *loop = s->px->loop;
    int ev = EV_READ;
    if (s->state == STREAM_CONNECTING || s->want_write ||
        (s->state == STREAM_OPEN && bytebuf_len(&s->out) > 0 && !s->dirty))
        ev |= EV_WRITE;
    if (s->io.events != ev || !ev_is_active(&s->io)) {
        ev_io_stop(loop, &s->io);
        ev_io_set(&s->io, s->fd, ev);
        ev_io_start(loop, &s->io);
    }
    if (s->state == STREAM_OPEN) {
        if (s->pending.used == 0 && bytebuf_len(&s->out) == 0) {
            s->timer.repeat = idle_timeout(s);
            ev_timer_again(loop, &s->timer);
        } else {
            ev_timer_stop(loop, &s->timer);
        }
    }
}

static void undirty(struct stream *s)
{
    if (!s->dirty)
        return;
    for (struct stream **pp = &s->px->dirty_streams; *pp; pp = &(*pp)->next_dirty) {
        if (*pp == s) {
            *pp = s->next_dirty;
            break;
        }
    }
    s->dirty = false;
    s->next_dirty = NULL;
}

static const char *kind_str(const struct stream *s) { return s->kind == STREAM_DOT ? "DoT" : "TCP"; }

/* Closes the connection; tries still waiting go back to their queries. */
static void stream_reset(struct stream *s, enum probe_outcome why, const char *why_text)
{
    /* The text may live in the TLS connection freed below. */
    char reason[160];
    snprintf(reason, sizeof reason, "%s", why_text ? why_text : "");
    struct proxy *px = s->px;
    struct ev_loop *loop = px->loop;
    bool was_connected = s->state == STREAM_OPEN;
    undirty(s);
    ev_io_stop(loop, &s->io);
    ev_timer_stop(loop, &s->timer);
    if (s->tls) {
        if (why == PROBE_CLOSED_CLEAN && was_connected)
            tls_shutdown(s->tls);
        tls_conn_free(s->tls);
        s->tls = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->state = STREAM_CLOSED;
    s->want_write = false;
    s->session_saved = false;
    bytebuf_free(&s->in);
    bytebuf_free(&s->out);
    size_t n = s->pending.used;
    if (s->kind == STREAM_DOT && px->probes && s->up->tls_policy == UPSTREAM_TLS_OPPORTUNISTIC &&
        (n > 0 || why != PROBE_CLOSED_CLEAN))
        probe_table_dot_result(px->probes, &s->addr, why, reason, ev_now(loop));
    if (n == 0) {
        idmap_free(&s->pending);
        return;
    }
    log_debug("upstream %s: %s connection closed with %zu queries waiting: %s", s->up->name, kind_str(s), n,
              reason);
    /* Detach first: a query may retry on this very stream from its callback. */
    struct idmap old = s->pending;
    memset(&s->pending, 0, sizeof s->pending);
    for (size_t i = 0; i < old.cap; i++) {
        struct query_try *t = old.slots[i].value;
        if (!old.slots[i].key || !t)
            continue;
        t->kind = TRY_NONE;
        t->stream = NULL;
        px->stats.upstream_errors++;
        query_on_try_failed(t, why);
    }
    idmap_free(&old);
}

void stream_abort(struct stream *s, enum probe_outcome why, const char *reason)
{
    if (s->state != STREAM_CLOSED)
        stream_reset(s, why, reason);
}

void stream_free(struct stream *s)
{
    if (!s)
        return;
    stream_reset(s, PROBE_LOCAL_ERROR, "shutting down");
    free(s);
}

static void tls_begin(struct stream *s)
{
    const struct upstream *up = s->up;
    const struct tls_session *resume = NULL;
    if (up->tls_policy == UPSTREAM_TLS_STRICT) {
        resume = up->session;
    } else if (s->px->probes) {
        const struct probe_entry *e = probe_table_find(s->px->probes, &s->addr);
        resume = e ? e->session : NULL;
    }
    struct tls_ctx *ctx = up->tls_policy == UPSTREAM_TLS_STRICT ? up->tls : s->px->tls_opportunistic;
    s->tls = ctx ? tls_conn_new(ctx, s->fd, up->auth_name, resume) : NULL;
    s->state = STREAM_HANDSHAKE;
}

static int stream_connect(struct stream *s)
{
    s->fd = net_tcp_connect(&s->addr);
    if (s->fd < 0)
        return -1;
    s->state = STREAM_CONNECTING;
    /* The whole set-up, TCP and TLS, must finish within one query budget. */
    s->timer.repeat = s->px->cfg->timeout;
    ev_timer_again(s->px->loop, &s->timer);
    update_io(s);
    return 0;
}

static void mark_dirty(struct stream *s)
{
    if (s->dirty || s->state != STREAM_OPEN)
        return;
    s->dirty = true;
    s->next_dirty = s->px->dirty_streams;
    s->px->dirty_streams = s;
}

/* Writes what it can. Returns 0, or -1 on a broken connection (the caller
 * decides when to reset, so stream_send never calls back into a query). */
static int flush_out(struct stream *s)
{
    s->want_write = false;
    if (s->tls) {
        /* One record per DNS message, all records in one send(). */
        int r = tls_flush(s->tls);
        if (r == TLS_IO_OK && bytebuf_len(&s->out) > 0) {
            tls_cork(s->tls, true);
            long flen;
            while ((flen = bytebuf_frame(&s->out)) >= 0) {
                int w = tls_write(s->tls, bytebuf_head(&s->out), (size_t)flen + 2);
                if (w <= 0) {
                    r = w == TLS_IO_WANT_READ || w == TLS_IO_WANT_WRITE ? TLS_IO_WANT_WRITE : TLS_IO_ERROR;
                    break;
                }
                bytebuf_consume(&s->out, (size_t)w);
            }
            tls_cork(s->tls, false);
            if (r != TLS_IO_ERROR)
                r = tls_flush(s->tls);
        }
        if (r == TLS_IO_ERROR)
            return -1;
        s->want_write = r == TLS_IO_WANT_WRITE;
        update_io(s);
        return 0;
    }
    while (bytebuf_len(&s->out) > 0) {
        ssize_t n = send(s->fd, bytebuf_head(&s->out), bytebuf_len(&s->out), MSG_NOSIGNAL);
        if (n > 0) {
            bytebuf_consume(&s->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            s->want_write = true;
            break;
        }
        return -1;
    }
    update_io(s);
    return 0;
}

void stream_flush_all(struct proxy *px)
{
    while (px->dirty_streams) {
        struct stream *s = px->dirty_streams;
        px->dirty_streams = s->next_dirty;
        s->next_dirty = NULL;
        s->dirty = false;
        /* On a write error the EV_WRITE watcher meets the error again and resets. */
        if (flush_out(s) < 0) {
            s->want_write = true;
            update_io(s);
        }
    }
}

int stream_send(struct stream *s, struct query *q, struct query_try *t)
{
    if (s->pending.used >= STREAM_MAX_INFLIGHT || q->len > WIRE_MAX_MSG - 2)
        return -1;
    if (s->state == STREAM_CLOSED && stream_connect(s) < 0)
        return -1;
    uint16_t id;
    do {
        id = rng_u16(&s->px->rng);
    } while (idmap_get(&s->pending, (uint64_t)id + 1));
    uint8_t *p = bytebuf_reserve(&s->out, WIRE_MAX_MSG + 2);
    if (!p || idmap_put(&s->pending, (uint64_t)id + 1, t) < 0)
        return -1;
    size_t len = q->len;
    if (s->kind == STREAM_DOT) {
        len = wire_pad_query(p + 2, WIRE_MAX_MSG, q->msg, q->len, &q->wm,
                             (uint16_t)s->px->cfg->edns_buffer_size, DOT_PAD_BLOCK);
        if (len == 0) {
            idmap_del(&s->pending, (uint64_t)id + 1);
            return -1;
        }
    } else {
        memcpy(p + 2, q->msg, len);
    }
    wire_put16(p, (uint16_t)len);
    wire_set_id(p + 2, id);
    bytebuf_commit(&s->out, len + 2);
    t->kind = s->kind == STREAM_DOT ? TRY_DOT : TRY_TCP;
    t->id = id;
    t->stream = s;
    if (s->kind == STREAM_DOT)
        s->px->stats.upstream_dot++;
    else
        s->px->stats.upstream_tcp++;
    mark_dirty(s);
    if (s->state == STREAM_OPEN)
        update_io(s);
    return 0;
}

void stream_cancel(struct stream *s, struct query_try *t)
{
    if (idmap_get(&s->pending, (uint64_t)t->id + 1) == t)
        idmap_del(&s->pending, (uint64_t)t->id + 1);
    t->kind = TRY_NONE;
    t->stream = NULL;
    if (s->state == STREAM_OPEN)
        update_io(s);
}

static void handle_frame(struct stream *s, uint8_t *msg, size_t len)
{
    struct proxy *px = s->px;
    struct wire_msg wm;
    if (wire_parse_response(msg, len, &wm) != WIRE_OK) {
        /* A stream that carries garbage cannot be trusted to stay in sync. */
        px->stats.upstream_malformed++;
        stream_reset(s, PROBE_BAD_ANSWER, "malformed answer");
        return;
    }
    struct query_try *t = idmap_get(&s->pending, (uint64_t)wm.id + 1);
    if (!t) {
        px->stats.spoofed_id++;
        return;
    }
    if (!wire_same_question(msg, &wm, t->q->msg, &t->q->wm)) {
        px->stats.spoofed_question++;
        return;
    }
    if (s->kind == STREAM_DOT) {
        int keepalive;
        size_t n = wire_strip_dot_answer(msg, len, &wm, t->q->wm.has_opt, &keepalive);
        if (n == 0) {
            px->stats.upstream_malformed++;
            stream_reset(s, PROBE_BAD_ANSWER, "malformed answer");
            return;
        }
        len = n;
        if (keepalive >= 0) {
            /* RFC 7828 3.2.2: close before the server does; 0 means as soon
             * as nothing is outstanding. */
            s->idle_limit = keepalive / 10.0 - KEEPALIVE_MARGIN;
            if (s->idle_limit < 0.001)
                s->idle_limit = 0.001;
        }
        px->stats.dot_answers++;
        if (px->probes && s->up->tls_policy == UPSTREAM_TLS_OPPORTUNISTIC)
            probe_table_dot_result(px->probes, &s->addr, PROBE_OK, NULL, ev_now(px->loop));
    }
    idmap_del(&s->pending, (uint64_t)wm.id + 1);
    t->kind = TRY_NONE;
    t->stream = NULL;
    query_on_answer(t, msg, len, &wm);
}

/* TLS 1.3 tickets arrive after the handshake: the session is worth keeping
 * once something has been read. */
static void save_session(struct stream *s)
{
    if (s->session_saved || !s->tls)
        return;
    struct tls_session *sess = tls_get_session(s->tls);
    if (!sess)
        return;
    s->session_saved = true;
    if (s->up->tls_policy == UPSTREAM_TLS_STRICT) {
        tls_session_free(s->up->session);
        s->up->session = sess;
        return;
    }
    struct probe_entry *e = s->px->probes ? probe_table_find(s->px->probes, &s->addr) : NULL;
    if (e)
        probe_table_set_session(e, sess);
    else
        tls_session_free(sess);
}

static void handle_frames(struct stream *s)
{
    long flen;
    while (s->state == STREAM_OPEN && (flen = bytebuf_frame(&s->in)) >= 0) {
        /* Copy out: handling may reset the stream, freeing its buffers. */
        uint8_t msg[WIRE_MAX_MSG];
        memcpy(msg, bytebuf_head(&s->in) + 2, (size_t)flen);
        bytebuf_consume(&s->in, (size_t)flen + 2);
        handle_frame(s, msg, (size_t)flen);
    }
}

static void read_some(struct stream *s)
{
    for (int round = 0; round < 16 && s->state == STREAM_OPEN; round++) {
        uint8_t *p = bytebuf_reserve(&s->in, STREAM_READ_CHUNK);
        if (!p) {
            stream_reset(s, PROBE_LOCAL_ERROR, "out of memory");
            return;
        }
        long n;
        if (s->tls) {
            n = tls_read(s->tls, p, STREAM_READ_CHUNK);
            if (n == TLS_IO_WANT_READ || n == TLS_IO_WANT_WRITE) {
                s->want_write = n == TLS_IO_WANT_WRITE;
                break;
            }
            if (n == TLS_IO_CLOSED) {
                stream_reset(s, PROBE_CLOSED_CLEAN, "closed by the server");
                return;
            }
            if (n < 0) {
                stream_reset(s, PROBE_BAD_ANSWER, tls_error(s->tls));
                return;
            }
        } else {
            n = read(s->fd, p, STREAM_READ_CHUNK);
            if (n == 0) {
                stream_reset(s, PROBE_CLOSED_CLEAN, "closed by the server");
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    break;
                stream_reset(s, PROBE_CLOSED_CLEAN, strerror(errno));
                return;
            }
        }
        bytebuf_commit(&s->in, (size_t)n);
        handle_frames(s);
        if (!s->tls && n < STREAM_READ_CHUNK)
            break; /* TLS reads on until it wants more bytes */
    }
    if (s->state != STREAM_OPEN)
        return;
    save_session(s);
    /* Bytes already read ahead get no new readiness event from the socket. */
    if (s->tls && tls_pending(s->tls))
        ev_feed_event(s->px->loop, &s->io, EV_READ);
    /* With a few queries outstanding, acknowledge at once: a server that
     * holds its next answer until our ACK (Nagle) would otherwise wait for
     * our next query to carry it. Many outstanding keep ACKs delayed and cheap. */
    if (s->pending.used >= 1 && s->pending.used <= QUICKACK_MAX_PENDING) {
        int one = 1;
        (void)setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    update_io(s);
}

static void opened(struct stream *s)
{
    struct proxy *px = s->px;
    s->state = STREAM_OPEN;
    ev_timer_stop(px->loop, &s->timer);
    if (s->kind == STREAM_DOT) {
        px->stats.dot_connections++;
        if (tls_resumed(s->tls))
            px->stats.dot_resumed++;
        log_debug("upstream %s: DoT connection up (%s, %s%s)", s->up->name, tls_version(s->tls),
                  tls_cipher(s->tls), tls_resumed(s->tls) ? ", resumed" : "");
    }
    if (flush_out(s) < 0)
        stream_reset(s, PROBE_CLOSED_CLEAN, strerror(errno));
}

static void handshake(struct stream *s)
{
    if (!s->tls) {
        stream_reset(s, PROBE_LOCAL_ERROR, "cannot create a TLS connection");
        return;
    }
    int r = tls_handshake(s->tls);
    if (r == TLS_IO_OK) {
        opened(s);
        return;
    }
    if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
        s->want_write = r == TLS_IO_WANT_WRITE;
        update_io(s);
        return;
    }
    stream_reset(s, PROBE_TLS_FAILED, tls_error(s->tls));
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct stream *s = w->data;
    (void)loop;
    if (s->state == STREAM_CONNECTING) {
        if (!(revents & (EV_WRITE | EV_READ)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            stream_reset(s, PROBE_CONNECT_REFUSED, strerror(err));
            return;
        }
        if (s->kind == STREAM_DOT) {
            tls_begin(s);
            handshake(s);
        } else {
            opened(s);
        }
        return;
    }
    if (s->state == STREAM_HANDSHAKE) {
        handshake(s);
        return;
    }
    if (s->state != STREAM_OPEN)
        return;
    if ((revents & EV_WRITE) && flush_out(s) < 0) {
        stream_reset(s, PROBE_CLOSED_CLEAN, strerror(errno));
        return;
    }
    if (s->state == STREAM_OPEN && (revents & EV_READ))
        read_some(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct stream *s = w->data;
    (void)loop;
    (void)revents;
    switch (s->state) {
    case STREAM_CONNECTING:
        stream_reset(s, PROBE_CONNECT_TIMEOUT, "connect timed out");
        break;
    case STREAM_HANDSHAKE:
        stream_reset(s, PROBE_TLS_FAILED, "TLS handshake timed out");
        break;
    default:
        stream_reset(s, PROBE_CLOSED_CLEAN, "idle");
        break;
    }
}

int stream_adopt(struct stream *s, int fd, struct tls_conn *conn)
{
    if (s->state != STREAM_CLOSED || s->kind != STREAM_DOT)
        return -1;
    s->fd = fd;
    s->tls = conn;
    s->session_saved = true; /* the prober stored it */
    s->state = STREAM_OPEN;
    s->px->stats.dot_connections++;
    update_io(s);
    return 0;
}
