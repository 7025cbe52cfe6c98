/* proxy/stream.c: upstream TCP connections with pipelining. */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bytebuf.h"
#include "idmap.h"
#include "log.h"
#include "proxy.h"
#include "query.h"
#include "upstream.h"
#include "wire.h"

#define STREAM_MAX_INFLIGHT 1024
#define STREAM_READ_CHUNK 16384

enum stream_state { STREAM_CLOSED, STREAM_CONNECTING, STREAM_OPEN };

struct stream {
    struct proxy *px;
    struct upstream *up;
    enum stream_state state;
    int fd;
    ev_io io;
    ev_timer timer;            /* connect deadline, then idle timeout */
    struct bytebuf in, out;
    struct idmap pending;      /* ID + 1 -> struct query_try * (0 is the empty key) */
};

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

struct stream *stream_new(struct proxy *px, struct upstream *up)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->px = px;
    s->up = up;
    s->fd = -1;
    ev_init(&s->io, io_cb);
    ev_init(&s->timer, timer_cb);
    s->io.data = s->timer.data = s;
    return s;
}

static void update_io(struct stream *s)
{
    struct ev_loop *loop = s->px->loop;
    int ev = EV_READ;
    if (s->state == STREAM_CONNECTING || bytebuf_len(&s->out) > 0)
        ev |= EV_WRITE;
    if (s->io.events != ev || !ev_is_active(&s->io)) {
        ev_io_stop(loop, &s->io);
        ev_io_set(&s->io, s->fd, ev);
        ev_io_start(loop, &s->io);
    }
    /* Idle: nothing owed either way. */
    if (s->state == STREAM_OPEN) {
        if (s->pending.used == 0 && bytebuf_len(&s->out) == 0) {
            s->timer.repeat = s->px->cfg->upstream_tcp_idle;
            ev_timer_again(loop, &s->timer);
        } else {
            ev_timer_stop(loop, &s->timer);
        }
    }
}

/* Closes the connection; tries still waiting are handed back to their queries. */
static void stream_reset(struct stream *s, const char *why)
{
    struct ev_loop *loop = s->px->loop;
    ev_io_stop(loop, &s->io);
    ev_timer_stop(loop, &s->timer);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->state = STREAM_CLOSED;
    bytebuf_free(&s->in);
    bytebuf_free(&s->out);
    size_t n = s->pending.used;
    if (n == 0) {
        idmap_free(&s->pending);
        return;
    }
    log_debug("upstream %s: TCP connection closed with %zu queries waiting: %s", s->up->name, n, why);
    /* Detach first: a query may retry on this very stream from its callback. */
    struct idmap old = s->pending;
    memset(&s->pending, 0, sizeof s->pending);
    for (size_t i = 0; i < old.cap; i++) {
        struct query_try *t = old.slots[i].value;
        if (!old.slots[i].key || !t)
            continue;
        t->kind = TRY_NONE;
        t->stream = NULL;
        s->px->stats.upstream_errors++;
        query_on_try_failed(t);
    }
    idmap_free(&old);
}

void stream_free(struct stream *s)
{
    if (!s)
        return;
    stream_reset(s, "shutting down");
    free(s);
}

static int stream_connect(struct stream *s)
{
    s->fd = net_tcp_connect(&s->up->addr);
    if (s->fd < 0)
        return -1;
    s->state = STREAM_CONNECTING;
    s->timer.repeat = s->px->cfg->timeout;
    ev_timer_again(s->px->loop, &s->timer);
    update_io(s);
    return 0;
}

/* Writes what it can. Returns 0, or -1 on a broken connection (the caller
 * decides when to reset, so stream_send never calls back into a query). */
static int flush_out(struct stream *s)
{
    while (bytebuf_len(&s->out) > 0) {
        ssize_t n = send(s->fd, bytebuf_head(&s->out), bytebuf_len(&s->out), MSG_NOSIGNAL);
        if (n > 0) {
            bytebuf_consume(&s->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    update_io(s);
    return 0;
}

int stream_send(struct stream *s, struct query *q, struct query_try *t)
{
    if (s->pending.used >= STREAM_MAX_INFLIGHT || q->len > WIRE_MAX_MSG)
        return -1;
    if (s->state == STREAM_CLOSED && stream_connect(s) < 0)
        return -1;
    uint16_t id;
    do {
        id = rng_u16(&s->px->rng);
    } while (idmap_get(&s->pending, (uint64_t)id + 1));
    uint8_t *p = bytebuf_reserve(&s->out, q->len + 2);
    if (!p || idmap_put(&s->pending, (uint64_t)id + 1, t) < 0)
        return -1;
    wire_put16(p, (uint16_t)q->len);
    memcpy(p + 2, q->msg, q->len);
    wire_set_id(p + 2, id);
    bytebuf_commit(&s->out, q->len + 2);
    t->kind = TRY_TCP;
    t->id = id;
    t->stream = s;
    s->px->stats.upstream_tcp++;
    /* On a write error, the EV_WRITE watcher meets the error again and resets. */
    if (s->state == STREAM_OPEN && flush_out(s) < 0)
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
        stream_reset(s, "malformed answer");
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
    idmap_del(&s->pending, (uint64_t)wm.id + 1);
    t->kind = TRY_NONE;
    t->stream = NULL;
    query_on_answer(t, msg, len, &wm);
}

static void read_some(struct stream *s)
{
    uint8_t *p = bytebuf_reserve(&s->in, STREAM_READ_CHUNK);
    if (!p) {
        stream_reset(s, "out of memory");
        return;
    }
    ssize_t n = read(s->fd, p, STREAM_READ_CHUNK);
    if (n == 0) {
        stream_reset(s, "closed by the server");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            stream_reset(s, strerror(errno));
        return;
    }
    bytebuf_commit(&s->in, (size_t)n);
    long flen;
    while (s->state == STREAM_OPEN && (flen = bytebuf_frame(&s->in)) >= 0) {
        /* Copy out: handling may reset the stream, freeing its buffers. */
        uint8_t msg[WIRE_MAX_MSG];
        memcpy(msg, bytebuf_head(&s->in) + 2, (size_t)flen);
        bytebuf_consume(&s->in, (size_t)flen + 2);
        handle_frame(s, msg, (size_t)flen);
    }
    if (s->state == STREAM_OPEN)
        update_io(s);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct stream *s = w->data;
    (void)loop;
    if (s->state == STREAM_CONNECTING) {
        if (!(revents & EV_WRITE))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            stream_reset(s, strerror(err));
            return;
        }
        s->state = STREAM_OPEN;
        ev_timer_stop(s->px->loop, &s->timer);
        if (flush_out(s) < 0)
            stream_reset(s, strerror(errno));
        return;
    }
    if (s->state != STREAM_OPEN)
        return;
    if ((revents & EV_WRITE) && flush_out(s) < 0) {
        stream_reset(s, strerror(errno));
        return;
    }
    if (revents & EV_READ)
        read_some(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct stream *s = w->data;
    (void)loop;
    (void)revents;
    stream_reset(s, s->state == STREAM_CONNECTING ? "connect timed out" : "idle");
}
