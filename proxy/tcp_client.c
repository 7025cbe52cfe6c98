/* proxy/tcp_client.c: clients' TCP connections. */
#include "proxy/tcp_client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/bytebuf.h"
#include "lib/log.h"
#include "proxy/query.h"
#include "proxy/stats.h"

/* Stop reading a client with this many queries in flight until answers drain. */
#define TCP_CLIENT_MAX_INFLIGHT 64
/* Stop reading while this much output waits for a slow reader. */
#define TCP_CLIENT_MAX_PENDING_OUT (256 * 1024)

struct tcp_clients {
    struct ev_loop *loop;
    struct stats *stats;
    struct tcp_clients_opts opts;
    tcp_clients_recv_fn *recv;
    void *arg;
    struct tcp_client *list;
    unsigned n;
};

struct tcp_client {
    struct tcp_client *prev, *next;  /* set->list */
    struct tcp_clients *set;         /* NULL once closed */
    struct ev_loop *loop;
    unsigned refs;
    int fd;
    ev_io rio, wio;
    ev_timer idle;
    struct net_addr peer;
    struct bytebuf in, out;
    unsigned inflight;
    bool closed;
    bool stop_reading;               /* drain: no new queries */
    bool in_frames;                  /* handle_frames() is on the stack */
};

static struct tcp_client *tcp_client_ref(struct tcp_client *c);
static void tcp_client_unref(struct tcp_client *c);
static void client_close(struct tcp_client *c);

static void update_watchers(struct tcp_client *c)
{
    struct ev_loop *loop = c->loop;
    bool want_read = !c->closed && !c->stop_reading && c->inflight < TCP_CLIENT_MAX_INFLIGHT &&
                     bytebuf_len(&c->out) < TCP_CLIENT_MAX_PENDING_OUT;
    if (want_read)
        ev_io_start(loop, &c->rio);
    else
        ev_io_stop(loop, &c->rio);
    if (!c->closed && bytebuf_len(&c->out) > 0)
        ev_io_start(loop, &c->wio);
    else
        ev_io_stop(loop, &c->wio);
    /* The idle clock runs only while nothing is owed to the client. */
    if (!c->closed && c->inflight == 0 && bytebuf_len(&c->out) == 0) {
        if (c->stop_reading) {
            client_close(c);
            return;
        }
        c->idle.repeat = c->set->opts.idle;
        ev_timer_again(loop, &c->idle);
    } else {
        ev_timer_stop(loop, &c->idle);
    }
}

static void handle_frames(struct tcp_client *c)
{
    long flen;
    if (c->in_frames)
        return;
    c->in_frames = true;
    while (!c->closed && !c->stop_reading && c->inflight < TCP_CLIENT_MAX_INFLIGHT &&
           (flen = bytebuf_frame(&c->in)) >= 0) {
        const uint8_t *msg = bytebuf_head(&c->in) + 2;
        struct tcp_clients *set = c->set;
        set->stats->queries_tcp++;
        c->inflight++;
        struct client cl = { .ops = &tcp_client_ops, .conn = c, .peer = c->peer };
        /* recv answers or starts a query; both end in the client's done(). */
        set->recv(set->arg, &cl, msg, (size_t)flen);
        if (c->closed)
            break;
        bytebuf_consume(&c->in, (size_t)flen + 2);
    }
    c->in_frames = false;
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tcp_client *c = w->data;
    (void)loop;
    (void)revents;
    tcp_client_ref(c);
    uint8_t *p = bytebuf_reserve(&c->in, 4096);
    if (!p) {
        client_close(c);
        goto out;
    }
    ssize_t n = read(c->fd, p, 4096);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        /* Peer closed or reset: answers still owed are dropped. */
        client_close(c);
        goto out;
    }
    if (n > 0) {
        bytebuf_commit(&c->in, (size_t)n);
        handle_frames(c);
    }
    if (!c->closed)
        update_watchers(c);
out:
    tcp_client_unref(c);
}

static void flush_out(struct tcp_client *c)
{
    while (bytebuf_len(&c->out) > 0) {
        ssize_t n = send(c->fd, bytebuf_head(&c->out), bytebuf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            bytebuf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        client_close(c);
        return;
    }
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tcp_client *c = w->data;
    (void)loop;
    (void)revents;
    tcp_client_ref(c);
    flush_out(c);
    if (!c->closed) {
        update_watchers(c);
        /* Reading may have paused on a full output queue with frames waiting. */
        handle_frames(c);
        if (!c->closed)
            update_watchers(c);
    }
    tcp_client_unref(c);
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct tcp_client *c = w->data;
    (void)loop;
    (void)revents;
    client_close(c);
}

struct tcp_clients *tcp_clients_new(struct ev_loop *loop, struct stats *stats, const struct tcp_clients_opts *o,
                                    tcp_clients_recv_fn *recv, void *arg)
{
    struct tcp_clients *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    s->stats = stats;
    s->opts = *o;
    s->recv = recv;
    s->arg = arg;
    return s;
}

void tcp_clients_set_opts(struct tcp_clients *s, const struct tcp_clients_opts *o) { s->opts = *o; }
unsigned tcp_clients_count(const struct tcp_clients *s) { return s->n; }

void tcp_clients_free(struct tcp_clients *s)
{
    if (!s)
        return;
    while (s->list)
        client_close(s->list);
    free(s);
}

void tcp_clients_accept(struct tcp_clients *s, int fd, const struct net_addr *peer)
{
    if (s->n >= s->opts.max) {
        s->stats->tcp_clients_rejected++;
        close(fd);
        return;
    }
    struct tcp_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->set = s;
    c->loop = s->loop;
    c->refs = 1; /* the set's */
    c->fd = fd;
    c->peer = *peer;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_init(&c->idle, idle_cb);
    c->rio.data = c->wio.data = c->idle.data = c;
    c->next = s->list;
    if (s->list)
        s->list->prev = c;
    s->list = c;
    s->n++;
    update_watchers(c);
}

static void client_close(struct tcp_client *c)
{
    if (c->closed)
        return;
    struct tcp_clients *s = c->set;
    c->closed = true;
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->idle);
    close(c->fd);
    c->fd = -1;
    bytebuf_free(&c->in);
    bytebuf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n--;
    c->set = NULL;
    tcp_client_unref(c); /* the set's reference */
}

static struct tcp_client *tcp_client_ref(struct tcp_client *c)
{
    c->refs++;
    return c;
}

static void tcp_client_unref(struct tcp_client *c)
{
    if (c && --c->refs == 0)
        free(c);
}

static void client_send(void *conn, const struct net_addr *peer, const uint8_t *msg, size_t len)
{
    struct tcp_client *c = conn;
    (void)peer;
    if (c->closed)
        return;
    uint8_t *p = bytebuf_reserve(&c->out, len + 2);
    if (!p) {
        client_close(c);
        return;
    }
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, msg, len);
    bytebuf_commit(&c->out, len + 2);
    flush_out(c);
}

static void client_done(void *conn)
{
    struct tcp_client *c = conn;
    if (c->inflight > 0)
        c->inflight--;
    if (c->closed)
        return;
    /* Frames may be waiting behind the in-flight cap. */
    tcp_client_ref(c);
    handle_frames(c);
    if (!c->closed)
        update_watchers(c);
    tcp_client_unref(c);
}

static void client_ref(void *conn) { tcp_client_ref(conn); }
static void client_unref(void *conn) { tcp_client_unref(conn); }

const struct client_ops tcp_client_ops = {
    .stream = true, .send = client_send, .done = client_done, .ref = client_ref, .unref = client_unref,
};

void tcp_clients_stop_reading(struct tcp_clients *s)
{
    struct tcp_client *c = s->list;
    while (c) {
        struct tcp_client *next = c->next;
        c->stop_reading = true;
        update_watchers(c); /* may close an idle client, unlinking it */
        c = next;
    }
}
