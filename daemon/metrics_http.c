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

#include "config/config.h"
#include "lib/acceptor.h"
#include "lib/log.h"
#include "lib/peer.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

/* After the response, input is read and thrown away (so closing does not
 * reset the connection and lose the response), up to this much. */
#define METRICS_LINGER_MAX (64 * 1024)

/* From accept to close, whatever the state; the request fits in max_in. */
static const struct peer_limits conn_limits = {
    .lifetime = METRICS_HTTP_DEADLINE,
    .max_in = METRICS_HTTP_MAX_REQUEST,
};

enum conn_state { CONN_READ, CONN_WRITE, CONN_LINGER };

struct metrics_conn {
    struct peer peer;
    struct metrics_conn *prev, *next;   /* m->conns */
    struct metrics_http *m;             /* NULL once the endpoint has gone */
    enum conn_state state;
    size_t discarded;
};

struct metrics_http {
    struct proxy *px;                   /* borrowed */
    struct fd_waiters *waiters;         /* borrowed */
    struct net_addr addr;
    int fd;
    struct acceptor *acc;
    struct metrics_conn *conns;         /* owned */
    unsigned n_conns;
    struct log_limit full_lim;
};

static void conn_unlink(struct metrics_conn *c)
{
    struct metrics_http *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    m->n_conns--;
    c->m = NULL;
}

static void conn_closed(void *arg, struct peer *p, enum peer_why why)
{
    struct metrics_conn *c = arg;
    if (why == PEER_LIFETIME)
        log_debug("metrics: connection cut after %.0f s", METRICS_HTTP_DEADLINE);
    if (c->m)
        conn_unlink(c);
    free(c);
}

/* Everything queued is sent: half-close and wait for the client's end. */
static void conn_drained(void *arg, struct peer *p)
{
    struct metrics_conn *c = arg;
    if (shutdown(peer_fd(p), SHUT_WR) < 0) {
        peer_close(p, PEER_ERROR);
        return;
    }
    c->state = CONN_LINGER;
    peer_pause(p, false);
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
    size_t in;
    peer_in(&c->peer, &in);
    peer_consume(&c->peer, in);
    peer_pause(&c->peer, true);
    c->state = CONN_WRITE;
    if (hl < 0 || (size_t)hl >= sizeof head) {
        peer_close(&c->peer, PEER_ERROR);
        return;
    }
    struct iovec iov[2] = { { head, (size_t)hl }, { (void *)body, len } };
    peer_sendv(&c->peer, iov, 2);
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

/* The request head is complete in `req`: "METHOD SP TARGET SP HTTP/1.x". */
static void handle_request(struct metrics_conn *c, const char *req, size_t req_len)
{
    const char *p = req, *end = memchr(p, '\n', req_len);
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

static void conn_input(void *arg, struct peer *p)
{
    struct metrics_conn *c = arg;
    size_t len;
    const char *req = (const char *)peer_in(p, &len);
    if (c->state != CONN_READ) {
        peer_consume(p, len);
        if ((c->discarded += len) > METRICS_LINGER_MAX)
            peer_close(p, PEER_OWNER);
        return;
    }
    if (head_end(req, len)) {
        handle_request(c, req, len);
        return;
    }
    if (len >= METRICS_HTTP_MAX_REQUEST)
        respond_text(c, 431, "request too large\n");
}

/* EOF (closed before a whole request came, or the client's end after the
 * answer) closes: no eof hook. */
static const struct peer_ops conn_ops = {
    .input = conn_input,
    .drained = conn_drained,
    .closed = conn_closed,
};

static void metrics_accept(void *arg, int fd, const struct net_addr *peer)
{
    struct metrics_http *m = arg;
    struct metrics_conn *c = m->n_conns < METRICS_HTTP_MAX_CONNS ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        if (m->n_conns >= METRICS_HTTP_MAX_CONNS)
            log_limited(&m->full_lim, LOG_LVL_WARN, "metrics: %d connections open, closing a new one",
                        METRICS_HTTP_MAX_CONNS);
        close(fd);
        fd_waiters_released(m->waiters);
        return;
    }
    c->m = m;
    c->state = CONN_READ;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->n_conns++;
    peer_init(&c->peer, m->px->loop, fd, peer, &conn_limits, &conn_ops, c, m->waiters);
}

struct metrics_http *metrics_http_new(struct proxy *px, struct fd_waiters *waiters, const struct net_addr *a)
{
    char as[NET_ADDRSTRLEN];
    struct metrics_http *m = calloc(1, sizeof *m);
    if (!m) {
        log_err("metrics: out of memory");
        return NULL;
    }
    m->px = px;
    m->waiters = waiters;
    m->addr = *a;
    m->fd = net_tcp_listen(a, 64);
    if (m->fd < 0) {
        log_err("metrics: cannot listen on %s: %s", net_addr_str(a, as, sizeof as), strerror(errno));
        free(m);
        return NULL;
    }
    if (!(m->acc = acceptor_new(px->loop, m->fd, waiters, metrics_accept, m, "metrics"))) {
        log_err("metrics: out of memory");
        close(m->fd);
        free(m);
        return NULL;
    }
    log_info("metrics: serving /metrics and /health on http://%s", net_addr_str(a, as, sizeof as));
    return m;
}

void metrics_http_free(struct metrics_http *m)
{
    if (!m)
        return;
    while (m->conns) {
        struct metrics_conn *c = m->conns;
        conn_unlink(c);
        peer_close(&c->peer, PEER_SHUTDOWN);
    }
    acceptor_free(m->acc);
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
