/* proxy/listener.c: UDP client sockets and TCP accept. */
#include "proxy/listener.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/acceptor.h"
#include "lib/log.h"
#include "lib/outbox.h"
#include "proxy/query.h"
#include "proxy/stats.h"

static struct log_limit recv_limit, reply_limit;

#define REPLY_SOCKS 128
struct reply_socks {
    struct {
        struct net_addr from;
        int fd;                 /* 0: unused (0 is never ours: stdin) */
        uint64_t used;
    } s[REPLY_SOCKS];
    uint64_t clock;
};

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *l = w->data;
    const struct listener_hooks *h = l->hooks;
    struct net_batch b;
    (void)loop;
    (void)revents;

    /* Bounded: a flood cannot keep this callback from returning to the loop. */
    for (int round = 0; round < 4 && l->open; round++) {
        int n = net_recv_batch(l->fd, &b);
        if (n < 0)
            log_limited(&recv_limit, LOG_LVL_WARN, "recv on a UDP listener: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            h->stats->queries_udp++;
            if (b.truncated[i]) {
                h->stats->malformed_dropped++;
                continue;
            }
            h->udp(h->arg, l, &b.from[i], &b.local[i], &b.orig[i], b.buf[i], b.len[i]);
        }
        if (n < NET_BATCH)
            break;
    }
}

static void tcp_accepted(void *arg, int fd, const struct net_addr *peer)
{
    struct listener *l = arg;
    l->hooks->tcp(l->hooks->arg, l, fd, peer);
}

bool listener_is_v6_loopback(const struct net_addr *a)
{
    return net_addr_family(a) == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
}

struct listener *listener_open(const struct listener_hooks *hooks, const struct net_addr *a, bool tcp,
                               bool transparent)
{
    char name[NET_ADDRSTRLEN];
    net_addr_str(a, name, sizeof name);
    int fd = transparent ? (tcp ? net_tcp_listen_transparent(a, 256) : net_udp_bind_transparent(a))
                         : (tcp ? net_tcp_listen(a, 256) : net_udp_bind(a));
    if (fd < 0) {
        int err = errno;
        if (listener_is_v6_loopback(a) && (err == EADDRNOTAVAIL || err == EAFNOSUPPORT))
            log_warn("no IPv6 on this host: not listening on %s/%s", name, tcp ? "tcp" : "udp");
        else
            log_err("cannot listen on %s/%s: %s", name, tcp ? "tcp" : "udp", strerror(err));
        errno = err;
        return NULL;
    }
    struct listener *l = calloc(1, sizeof *l);
    if (!l || (!tcp && !(l->out = malloc(sizeof *l->out))) ||
        (transparent && !tcp && !(l->replies = calloc(1, sizeof *l->replies)))) {
        if (l)
            free(l->out);
        free(l);
        close(fd);
        log_err("out of memory");
        errno = ENOMEM;
        return NULL;
    }
    l->hooks = hooks;
    l->refs = 1;
    l->tcp = tcp;
    l->transparent = transparent;
    l->addr = *a;
    l->fd = fd;
    if (tcp) {
        /* Out of descriptors, it waits instead of spinning (lib/acceptor.h). */
        if (!(l->acceptor = acceptor_new(hooks->loop, fd, hooks->waiters, tcp_accepted, l, name))) {
            close(fd);
            free(l);
            log_err("out of memory");
            errno = ENOMEM;
            return NULL;
        }
        acceptor_stop(l->acceptor); /* until listener_start */
    } else {
        /* On 0.0.0.0 or [::] an answer must leave from the address it was
         * asked on, not from the one the route prefers. */
        if (!transparent && net_addr_is_wildcard(a) && net_udp_want_local(fd, net_addr_family(a)) < 0)
            log_warn("%s/udp: no IP_PKTINFO (%s): answers leave from the routed address", name,
                     strerror(errno));
        outbox_init(l->out, hooks->flusher, fd, &hooks->stats->send_errors);
        ev_io_init(&l->io, udp_read_cb, fd, EV_READ);
        l->io.data = l;
    }
    return l;
}

void listener_stop(struct listener *l)
{
    l->open = false;
    if (l->acceptor)
        acceptor_stop(l->acceptor);
    else
        ev_io_stop(l->hooks->loop, &l->io);
}

void listener_start(struct listener *l)
{
    l->open = true;
    if (l->acceptor)
        acceptor_start(l->acceptor);
    else
        ev_io_start(l->hooks->loop, &l->io);
}

struct listener *listener_ref(struct listener *l)
{
    l->refs++;
    return l;
}

void listener_unref(struct listener *l)
{
    if (!l || --l->refs > 0)
        return;
    listener_stop(l);
    acceptor_free(l->acceptor);
    if (l->out) {
        outbox_flush(l->out);
        free(l->out);
    }
    if (l->replies) {
        for (unsigned i = 0; i < REPLY_SOCKS; i++)
            if (l->replies->s[i].fd > 0)
                close(l->replies->s[i].fd);
        free(l->replies);
    }
    close(l->fd);
    free(l);
}

/* An intercepted query's answer must come from the address and port it was
 * sent to: a socket bound there (IP_TRANSPARENT). Some are kept, as a
 * resolver talks to the same servers again and again: two places per
 * address (a hash picks them), the one used the longer ago replaced. */
static int reply_socket(struct listener *l, const struct net_addr *from)
{
    struct reply_socks *r = l->replies;
    const uint8_t *b = (const uint8_t *)&from->u.ss;
    uint32_t h = 2166136261u;
    for (socklen_t i = 0; i < from->len; i++)
        h = (h ^ b[i]) * 16777619u;
    unsigned first = (h % (REPLY_SOCKS / 2)) * 2, oldest = first;
    for (unsigned i = first; i < first + 2; i++) {
        if (r->s[i].fd > 0 && net_addr_equal(&r->s[i].from, from)) {
            r->s[i].used = ++r->clock;
            return r->s[i].fd;
        }
        if (r->s[i].used < r->s[oldest].used)
            oldest = i;
    }
    int fd = net_udp_reply_from(from);
    if (fd < 0)
        return -1;
    if (r->s[oldest].fd > 0)
        close(r->s[oldest].fd);
    r->s[oldest].fd = fd;
    r->s[oldest].from = *from;
    r->s[oldest].used = ++r->clock;
    return fd;
}

static void udp_send(const struct client *c, const uint8_t *msg, size_t len)
{
    struct listener *l = c->conn;
    if (c->to.len && l->replies) {
        int fd = reply_socket(l, &c->to);
        if (fd < 0 || sendto(fd, msg, len, 0, &c->peer.u.sa, c->peer.len) < 0) {
            char name[NET_ADDRSTRLEN];
            log_limited(&reply_limit, LOG_LVL_WARN, "cannot answer from intercepted address %s: %s",
                        net_addr_str(&c->to, name, sizeof name), strerror(errno));
            l->hooks->stats->send_errors++;
        }
        return;
    }
    if (outbox_add(l->out, &c->peer, &c->local, msg, len) < 0)
        l->hooks->stats->send_errors++;
}

static void udp_done(void *conn) { (void)conn; }
static void udp_ref(void *conn) { listener_ref(conn); }
static void udp_unref(void *conn) { listener_unref(conn); }

const struct client_ops listener_udp_client = {
    .stream = false, .send = udp_send, .done = udp_done, .ref = udp_ref, .unref = udp_unref,
};
