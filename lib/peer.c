/* lib/peer.c: one accepted stream connection. See lib/peer.h for the
 * clocks and the closing rules.
 *
 * One timer serves every deadline: it is armed for the earliest one and
 * only moved earlier; a deadline that moved later (write progress, input
 * consumed) is found when the timer fires, which re-arms it. So a busy
 * connection does not touch the timer heap on every byte. */
#include "lib/peer.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/acceptor.h"

enum { PEER_OPEN, PEER_CLOSING, PEER_CLOSED };

/* Timers fire on the monotonic clock, deadlines are in ev_now() time: a
 * deadline this close counts as reached. */
#define PEER_EPSILON 1e-3

const char *peer_close_str(enum peer_why why)
{
    switch (why) {
    case PEER_EOF: return "eof";
    case PEER_ERROR: return "error";
    case PEER_NOMEM: return "out of memory";
    case PEER_IDLE: return "idle";
    case PEER_MESSAGE_TIMEOUT: return "message timeout";
    case PEER_WRITE_TIMEOUT: return "write timeout";
    case PEER_LIFETIME: return "lifetime";
    case PEER_OWNER: return "owner";
    case PEER_EVICTED: return "evicted";
    case PEER_SHUTDOWN: return "shutdown";
    }
    return "?";
}

/* ---- state --------------------------------------------------------------- */

static double vnow(const struct peer *p, double now)
{
    return now - p->blocked_total - (p->blocked ? now - p->blocked_since : 0);
}

static bool out_full(const struct peer *p)
{
    return p->lim.max_out && bytebuf_len(&p->out) >= p->lim.max_out;
}

/* Nothing owed in either direction, no partial input. An answer sent but
 * not yet reported drained counts as owed: the owner waits for it. */
static bool idle_now(const struct peer *p)
{
    return p->owed == 0 && bytebuf_len(&p->in) == 0 && bytebuf_len(&p->out) == 0 && !p->want_drained;
}

static bool message_running(const struct peer *p)
{
    return bytebuf_len(&p->in) > 0 && !p->paused && !out_full(p);
}

static bool message_expired(const struct peer *p, double now)
{
    return p->lim.message > 0 && message_running(p) &&
           vnow(p, now) - p->msg_vstart + PEER_EPSILON >= p->lim.message;
}

static bool idle_expired(const struct peer *p, double now)
{
    return p->lim.idle > 0 && idle_now(p) && p->was_idle && p->idle_since + p->lim.idle <= now + PEER_EPSILON;
}

static void arm(struct peer *p, double now)
{
    double due = 0;
    bool have = false;
#define PEER_CONSIDER(t) do { double t_ = (t); if (!have || t_ < due) due = t_, have = true; } while (0)
    if (p->lim.lifetime > 0)
        PEER_CONSIDER(p->born + p->lim.lifetime);
    if (p->lim.write > 0 && bytebuf_len(&p->out) > 0)
        PEER_CONSIDER(p->write_since + p->lim.write);
    if (p->lim.message > 0 && bytebuf_len(&p->in) > 0 && !p->blocked)
        PEER_CONSIDER(now + p->lim.message - (vnow(p, now) - p->msg_vstart));
    if (p->lim.idle > 0 && p->was_idle)
        PEER_CONSIDER(p->idle_since + p->lim.idle);
#undef PEER_CONSIDER
    if (!have) {
        ev_timer_stop(p->loop, &p->timer);
        return;
    }
    if (ev_is_active(&p->timer) && p->timer_at <= due)
        return; /* fires first; looks again then */
    ev_timer_stop(p->loop, &p->timer);
    ev_timer_set(&p->timer, due > now ? due - now : 0, 0);
    ev_timer_start(p->loop, &p->timer);
    p->timer_at = due;
}

/* Brings the watchers, the clocks and the timer in line with the queues.
 * Called at the end of every entry into the peer, so calls the owner makes
 * from inside a callback need not. */
static void peer_sync(struct peer *p)
{
    if (p->state != PEER_OPEN)
        return;
    double now = ev_now(p->loop);
    bool blocked = p->paused || out_full(p);
    if (blocked != p->blocked) {
        if (blocked)
            p->blocked_since = now;
        else
            p->blocked_total += now - p->blocked_since;
        p->blocked = blocked;
    }
    bool idle = idle_now(p);
    if (idle && !p->was_idle)
        p->idle_since = now;
    p->was_idle = idle;
    bool in_full = p->lim.max_in && bytebuf_len(&p->in) >= p->lim.max_in;
    if (!p->eof && !blocked && !in_full)
        ev_io_start(p->loop, &p->rio);
    else
        ev_io_stop(p->loop, &p->rio);
    if (bytebuf_len(&p->out) > 0 || p->want_drained)
        ev_io_start(p->loop, &p->wio);
    else
        ev_io_stop(p->loop, &p->wio);
    arm(p, now);
}

/* ---- closing ------------------------------------------------------------- */

static void teardown(struct peer *p, enum peer_why why)
{
    ev_io_stop(p->loop, &p->rio);
    ev_io_stop(p->loop, &p->wio);
    ev_timer_stop(p->loop, &p->timer);
    /* Unread input would turn the close into a reset, which can destroy the
     * answer still on its way to the client: take what is there (bounded). */
    char sink[4096];
    for (int i = 0; i < 4 && recv(p->fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    close(p->fd);
    p->fd = -1;
    bytebuf_free(&p->in);
    bytebuf_free(&p->out);
    p->state = PEER_CLOSING;
    p->why = why;
    fd_waiters_released(p->waiters);
}

/* The last thing the peer does with p. */
static void deliver(struct peer *p)
{
    const struct peer_ops *ops = p->ops;
    void *arg = p->arg;
    enum peer_why why = p->why;
    ev_timer_stop(p->loop, &p->timer);
    p->state = PEER_CLOSED;
    ops->closed(arg, p, why);
}

/* A failure found inside a call the owner made: closed() must not run
 * under the owner's feet, so it comes from the timer. */
static void fail(struct peer *p, enum peer_why why)
{
    teardown(p, why);
    if (p->depth == 0) {
        ev_timer_set(&p->timer, 0, 0);
        ev_timer_start(p->loop, &p->timer);
    }
}

void peer_close(struct peer *p, enum peer_why why)
{
    if (p->state == PEER_CLOSED)
        return;
    if (p->state == PEER_OPEN)
        teardown(p, why);
    if (p->depth == 0)
        deliver(p);
}

bool peer_closed(const struct peer *p)
{
    return p->state != PEER_OPEN;
}

/* Every callback into the owner is bracketed by enter() and leave(); leave()
 * returns true when p must not be touched any more. */
static void enter(struct peer *p)
{
    p->depth++;
}

static bool leave(struct peer *p)
{
    if (--p->depth > 0)
        return p->state != PEER_OPEN;
    if (p->state == PEER_CLOSING) {
        deliver(p);
        return true;
    }
    return p->state != PEER_OPEN;
}

/* ---- the loop's side ----------------------------------------------------- */

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct peer *p = w->data;
    enter(p);
    size_t room = PEER_READ_CHUNK, have = bytebuf_len(&p->in);
    if (p->lim.max_in && p->lim.max_in - have < room)
        room = p->lim.max_in - have;
    uint8_t *buf = room ? bytebuf_reserve(&p->in, room) : NULL;
    if (!buf) {
        if (room)
            peer_close(p, PEER_NOMEM);
        goto out;
    }
    ssize_t n = recv(p->fd, buf, room, 0);
    if (n > 0) {
        double now = ev_now(p->loop), v = vnow(p, now);
        bytebuf_commit(&p->in, (size_t)n);
        if (have == 0)
            p->msg_vstart = v;
        p->last_read_v = v;
        p->last_activity = now;
        p->ops->input(p->arg, p);
    } else if (n == 0) {
        p->eof = true;
        ev_io_stop(p->loop, &p->rio);
        if (p->ops->eof)
            p->ops->eof(p->arg, p);
        else
            peer_close(p, PEER_EOF);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        peer_close(p, PEER_ERROR);
    }
out:
    if (!leave(p))
        peer_sync(p);
}

/* Returns 0, or -1 on a send error (the caller closes). */
static int flush(struct peer *p)
{
    while (bytebuf_len(&p->out) > 0) {
        ssize_t n = send(p->fd, bytebuf_head(&p->out), bytebuf_len(&p->out), MSG_NOSIGNAL);
        if (n > 0) {
            bytebuf_consume(&p->out, (size_t)n);
            p->write_since = p->last_activity = ev_now(p->loop);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    return 0;
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct peer *p = w->data;
    enter(p);
    if (flush(p) < 0) {
        peer_close(p, PEER_ERROR);
    } else if (bytebuf_len(&p->out) == 0 && p->want_drained) {
        p->want_drained = false;
        p->ops->drained(p->arg, p);
    }
    if (!leave(p))
        peer_sync(p);
}

/* Calls the owner's timeout hook; closes unless the hook stopped the clock. */
static void expire(struct peer *p, enum peer_why why, double now)
{
    if (p->ops->timeout) {
        p->ops->timeout(p->arg, p, why);
        if (p->state != PEER_OPEN)
            return;
        if (why == PEER_MESSAGE_TIMEOUT ? !message_expired(p, now) : !idle_expired(p, now))
            return;
    }
    peer_close(p, why);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct peer *p = w->data;
    enter(p);
    if (p->state == PEER_OPEN) {
        double now = ev_now(p->loop);
        if (p->lim.lifetime > 0 && p->born + p->lim.lifetime <= now + PEER_EPSILON)
            peer_close(p, PEER_LIFETIME);
        else if (p->lim.write > 0 && bytebuf_len(&p->out) > 0 && p->write_since + p->lim.write <= now + PEER_EPSILON)
            peer_close(p, PEER_WRITE_TIMEOUT);
        else if (message_expired(p, now))
            expire(p, PEER_MESSAGE_TIMEOUT, now);
        else if (idle_expired(p, now))
            expire(p, PEER_IDLE, now);
    }
    if (!leave(p))
        peer_sync(p); /* re-arms for the next deadline */
}

/* ---- the owner's side ---------------------------------------------------- */

void peer_init(struct peer *p, struct ev_loop *loop, int fd, const struct net_addr *addr,
               const struct peer_limits *limits, const struct peer_ops *ops, void *arg,
               struct fd_waiters *waiters)
{
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->ops = ops;
    p->arg = arg;
    p->waiters = waiters;
    p->fd = fd;
    if (addr)
        p->addr = *addr;
    if (limits)
        p->lim = *limits;
    p->state = PEER_OPEN;
    double now = ev_now(loop);
    p->born = p->idle_since = p->last_activity = now;
    p->was_idle = true;
    ev_io_init(&p->rio, read_cb, fd, EV_READ);
    ev_io_init(&p->wio, write_cb, fd, EV_WRITE);
    ev_timer_init(&p->timer, timer_cb, 0, 0);
    p->rio.data = p->wio.data = p->timer.data = p;
    peer_sync(p);
}

const uint8_t *peer_in(const struct peer *p, size_t *len)
{
    *len = bytebuf_len(&p->in);
    return *len ? bytebuf_head(&p->in) : NULL;
}

void peer_consume(struct peer *p, size_t n)
{
    if (p->state != PEER_OPEN || n == 0)
        return;
    if (n > bytebuf_len(&p->in))
        n = bytebuf_len(&p->in);
    bytebuf_consume(&p->in, n);
    if (bytebuf_len(&p->in) > 0)
        p->msg_vstart = p->last_read_v; /* the remainder began in the last read */
    if (p->depth == 0)
        peer_sync(p);
}

void peer_set_owed(struct peer *p, unsigned n)
{
    p->owed = n;
    if (p->depth == 0)
        peer_sync(p);
}

void peer_pause(struct peer *p, bool pause)
{
    p->paused = pause;
    if (p->depth == 0)
        peer_sync(p);
}

int peer_sendv(struct peer *p, const struct iovec *iov, int n)
{
    if (p->state != PEER_OPEN)
        return -1;
    size_t total = 0, sent = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    double now = ev_now(p->loop);
    bool was_empty = bytebuf_len(&p->out) == 0;
    if (was_empty) {
        /* Nothing waits for EV_WRITE: try the socket first, without a copy. */
        struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
        ssize_t r;
        do
            r = sendmsg(p->fd, &mh, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            fail(p, PEER_ERROR);
            return -1;
        }
        if (r > 0) {
            sent = (size_t)r;
            p->last_activity = now;
        }
    }
    if (sent < total) {
        uint8_t *t = bytebuf_reserve(&p->out, total - sent);
        if (!t) {
            fail(p, PEER_NOMEM);
            return -1;
        }
        size_t skip = sent;
        for (int i = 0; i < n; i++) {
            size_t l = iov[i].iov_len;
            if (skip >= l) {
                skip -= l;
                continue;
            }
            memcpy(t, (const uint8_t *)iov[i].iov_base + skip, l - skip);
            t += l - skip;
            skip = 0;
        }
        bytebuf_commit(&p->out, total - sent);
        if (was_empty)
            p->write_since = now;
    }
    if (p->ops->drained)
        p->want_drained = true;
    if (p->depth == 0)
        peer_sync(p);
    return 0;
}

int peer_send(struct peer *p, const void *data, size_t len)
{
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    return peer_sendv(p, &iov, 1);
}

int peer_send_framed(struct peer *p, const uint8_t *msg, size_t len)
{
    if (len > 65535)
        return -1;
    uint8_t hdr[2] = { (uint8_t)(len >> 8), (uint8_t)len };
    struct iovec iov[2] = { { hdr, 2 }, { (void *)msg, len } };
    return peer_sendv(p, iov, 2);
}

size_t peer_out_len(const struct peer *p)
{
    return bytebuf_len(&p->out);
}

double peer_idle_since(const struct peer *p)
{
    if (p->state != PEER_OPEN || !idle_now(p))
        return 0;
    return p->was_idle ? p->idle_since : ev_now(p->loop);
}

double peer_partial_since(const struct peer *p)
{
    if (p->state != PEER_OPEN || bytebuf_len(&p->in) == 0)
        return 0;
    double now = ev_now(p->loop);
    return now - (vnow(p, now) - p->msg_vstart);
}

double peer_last_activity(const struct peer *p)
{
    return p->last_activity;
}

const struct net_addr *peer_addr(const struct peer *p)
{
    return &p->addr;
}

int peer_fd(const struct peer *p)
{
    return p->fd;
}
