/* daemon/metrics_http.c: the HTTP side of /metrics and /health: accept,
 * read one bounded request, queue one response, close. See metrics_http.h
 * for the limits. */
#include "daemon/metrics_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "lib/bytebuf.h"
#include "config/config.h"
#include "lib/log.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

/* Accepted per wake-up, so a connect flood cannot hold the loop. */
#define METRICS_ACCEPT_BATCH 64
/* After the response, input is read and thrown away (so closing does not
 * reset the connection and lose the response), up to this much. */
#define METRICS_LINGER_MAX (64 * 1024)

enum conn_state { CONN_READ, CONN_WRITE, CONN_LINGER };

struct metrics_conn {
    struct metrics_conn *prev, *next;   /* m->conns */
    struct metrics_http *m;
    int fd;
    enum conn_state state;
    ev_io rio, wio;
    ev_timer deadline;                  /* from accept to close, whatever the state */
    size_t req_len, discarded;
    struct bytebuf out;
    char req[METRICS_HTTP_MAX_REQUEST];
};

struct metrics_http {
    struct proxy *px;                   /* borrowed */
    struct net_addr addr;
    int fd;
    ev_io io;
    struct metrics_conn *conns;         /* owned */
    unsigned n_conns;
    struct log_limit accept_lim, full_lim;
};

static void conn_close(struct metrics_conn *c)
{
    struct metrics_http *m = c->m;
    struct ev_loop *loop = m->px->loop;
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->deadline);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->n_conns--;
    bytebuf_free(&c->out);
    free(c);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct metrics_conn *c = w->data;
    log_debug("metrics: connection cut after %.0f s", METRICS_HTTP_DEADLINE);
    conn_close(c);
}

/* Everything queued is sent: half-close and wait for the client's end. */
static void conn_linger(struct metrics_conn *c)
{
    struct ev_loop *loop = c->m->px->loop;
    c->state = CONN_LINGER;
    ev_io_stop(loop, &c->wio);
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    ev_io_start(loop, &c->rio);
}

/* Returns 0 if the queue is empty or waits for EV_WRITE; -1 if c was closed. */
static int conn_flush(struct metrics_conn *c)
{
    while (bytebuf_len(&c->out) > 0) {
        ssize_t n = send(c->fd, bytebuf_head(&c->out), bytebuf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            bytebuf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->m->px->loop, &c->wio);
            return 0;
        }
        conn_close(c);
        return -1;
    }
    conn_linger(c);
    return 0;
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(w->data);
}

static const char *status_text(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Queues the whole response (body copied) and starts sending it. */
static void respond(struct metrics_conn *c, int code, const char *type, const char *body, size_t len)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                      code, status_text(code), type, len, code == 405 ? "Allow: GET\r\n" : "");
    ev_io_stop(c->m->px->loop, &c->rio);
    c->state = CONN_WRITE;
    if (hl < 0 || (size_t)hl >= sizeof head || bytebuf_append(&c->out, head, (size_t)hl) < 0 ||
        bytebuf_append(&c->out, body, len) < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

static void respond_text(struct metrics_conn *c, int code, const char *body)
{
    respond(c, code, "text/plain; charset=utf-8", body, strlen(body));
}

static void respond_metrics(struct metrics_conn *c)
{
    struct proxy *px = c->m->px;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    struct metrics_snapshot snap;
    metrics_snapshot_of(px, &snap);
    int r = f ? metrics_render(&snap, ev_now(px->loop), f) : -1;
    if (f && fclose(f) != 0)
        r = -1;
    if (r < 0) {
        log_warn("metrics: cannot render: out of memory");
        respond_text(c, 500, "out of memory\n");
    } else {
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    }
    free(text);
}

static bool serving(const struct proxy *px)
{
    return !px->draining && px->n_listeners > 0;
}

/* Returns the length of the request head (through the blank line), or 0 if
 * it is not complete yet. Bare LF line ends are accepted too. */
static size_t head_end(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n')
            continue;
        if (i + 1 < len && p[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static bool token_is(const char *p, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(p, word, len) == 0;
}

/* The request head is complete in c->req: "METHOD SP TARGET SP HTTP/1.x". */
static void handle_request(struct metrics_conn *c)
{
    const char *p = c->req, *end = memchr(p, '\n', c->req_len);
    size_t line = (size_t)(end - p);
    if (line > 0 && p[line - 1] == '\r')
        line--;
    const char *sp1 = memchr(p, ' ', line);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line - (size_t)(sp1 + 1 - p)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1) {
        respond_text(c, 400, "bad request\n");
        return;
    }
    const char *ver = sp2 + 1;
    size_t ver_len = line - (size_t)(ver - p);
    if (!token_is(ver, ver_len, "HTTP/1.0") && !token_is(ver, ver_len, "HTTP/1.1")) {
        respond_text(c, 400, "bad request\n");
        return;
    }
    if (!token_is(p, (size_t)(sp1 - p), "GET")) {
        respond_text(c, 405, "only GET\n");
        return;
    }
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    if (q)
        tlen = (size_t)(q - target);
    if (token_is(target, tlen, "/metrics"))
        respond_metrics(c);
    else if (token_is(target, tlen, "/health") && serving(c->m->px))
        respond_text(c, 200, "ok\n");
    else if (token_is(target, tlen, "/health"))
        respond_text(c, 503, "draining\n");
    else
        respond_text(c, 404, "not found\n");
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct metrics_conn *c = w->data;
    if (c->state == CONN_LINGER) {
        char sink[4096];
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n > 0 && (c->discarded += (size_t)n) <= METRICS_LINGER_MAX)
            return;
        conn_close(c); /* the client's end, an error, or too much */
        return;
    }
    size_t room = sizeof c->req - c->req_len;
    ssize_t n = read(c->fd, c->req + c->req_len, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c); /* closed or reset before a whole request came */
        return;
    }
    /* The blank line may straddle the previous read. */
    size_t from = c->req_len > 3 ? c->req_len - 3 : 0;
    c->req_len += (size_t)n;
    if (head_end(c->req + from, c->req_len - from)) {
        handle_request(c);
        return;
    }
    if (c->req_len == sizeof c->req)
        respond_text(c, 431, "request too large\n");
}

static void conn_start(struct metrics_http *m, int fd)
{
    struct metrics_conn *c = malloc(sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    memset(c, 0, offsetof(struct metrics_conn, req));
    c->m = m;
    c->fd = fd;
    c->state = CONN_READ;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_timer_init(&c->deadline, deadline_cb, METRICS_HTTP_DEADLINE, 0);
    c->rio.data = c->wio.data = c->deadline.data = c;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->n_conns++;
    ev_io_start(m->px->loop, &c->rio);
    ev_timer_start(m->px->loop, &c->deadline);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct metrics_http *m = w->data;
    for (int i = 0; i < METRICS_ACCEPT_BATCH; i++) {
        int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_limited(&m->accept_lim, LOG_LVL_WARN, "metrics: accept: %s", strerror(errno));
            return;
        }
        if (m->n_conns >= METRICS_HTTP_MAX_CONNS) {
            log_limited(&m->full_lim, LOG_LVL_WARN, "metrics: %d connections open, closing a new one",
                        METRICS_HTTP_MAX_CONNS);
            close(fd);
            continue;
        }
        conn_start(m, fd);
    }
}

struct metrics_http *metrics_http_new(struct proxy *px, const struct net_addr *a)
{
    char as[NET_ADDRSTRLEN];
    struct metrics_http *m = calloc(1, sizeof *m);
    if (!m) {
        log_err("metrics: out of memory");
        return NULL;
    }
    m->px = px;
    m->addr = *a;
    m->fd = net_tcp_listen(a, 64);
    if (m->fd < 0) {
        log_err("metrics: cannot listen on %s: %s", net_addr_str(a, as, sizeof as), strerror(errno));
        free(m);
        return NULL;
    }
    ev_io_init(&m->io, accept_cb, m->fd, EV_READ);
    m->io.data = m;
    ev_io_start(px->loop, &m->io);
    log_info("metrics: serving /metrics and /health on http://%s", net_addr_str(a, as, sizeof as));
    return m;
}

void metrics_http_free(struct metrics_http *m)
{
    if (!m)
        return;
    while (m->conns)
        conn_close(m->conns);
    ev_io_stop(m->px->loop, &m->io);
    close(m->fd);
    free(m);
}

const struct net_addr *metrics_http_addr(const struct metrics_http *m)
{
    return &m->addr;
}

void metrics_snapshot_of(const struct proxy *px, struct metrics_snapshot *out)
{
    *out = (struct metrics_snapshot){
        .stats = &px->stats, .probes = px->probes, .inflight = proxy_inflight(px),
        .tcp_clients = proxy_tcp_clients(px), .dot_connections = proxy_dot_connections(px),
        .draining = px->draining, .started = px->started,
    };
}
