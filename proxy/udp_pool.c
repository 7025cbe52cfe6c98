/* proxy/udp_pool.c: the upstream UDP sockets and their pending-answer map. */
#include "proxy/udp_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/idmap.h"
#include "lib/log.h"
#include "lib/outbox.h"
#include "lib/rng.h"
#include "lib/wire.h"
#include "proxy/stats.h"

#define UDP_ANSWER_MAX NET_BATCH_BYTES   /* edns-buffer-size is at most this */
/* A batch socket is kept for this long or this many queries, so answers come
 * back in larger recvmmsg batches. Each query's port stays uniformly random
 * among the pool to an off-path attacker: only the choice is made less often. */
#define BATCH_SECONDS 0.005
#define BATCH_QUERIES 128

struct udp_sock {
    struct udp_pool *pool;
    int fd;
    int fam;                  /* 0: IPv4, 1: IPv6 */
    uint32_t serial;          /* distinguishes sockets in pending keys */
    unsigned uses;            /* queries sent */
    unsigned pending;         /* tries waiting for an answer on it */
    bool retiring;            /* replaced: no new queries, closes when pending is 0 */
    ev_io io;
    struct udp_sock *next_retiring;
};

struct udp_pool {
    struct ev_loop *loop;
    struct rng *rng;
    struct stats *stats;
    const struct tsink *sink;
    struct udp_pool_opts opts;
    struct udp_sock **socks[2];    /* per family, opts.sockets slots, lazily filled */
    unsigned n_socks[2];
    struct udp_sock *batch[2];     /* socket of the batch being queued */
    double batch_until[2];
    unsigned batch_queries[2];
    struct outbox out[2];
    struct udp_sock *retiring;
    uint32_t next_serial;
    struct idmap pending;          /* pkey() -> struct treq * */
};

/* Serials start at 1, so a key is never 0. */
static inline uint64_t pkey(const struct udp_sock *s, uint16_t id) { return ((uint64_t)s->serial << 16) | id; }

static void read_cb(struct ev_loop *loop, ev_io *w, int revents);

static struct udp_sock *sock_new(struct udp_pool *p, int fam)
{
    int fd = net_udp_ephemeral(fam ? AF_INET6 : AF_INET);
    if (fd < 0)
        return NULL;
    /* Unmarked, our own queries would be intercepted again (a loop): no socket then. */
    if (net_set_mark(fd, p->opts.mark) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return NULL;
    }
    struct udp_sock *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return NULL;
    }
    s->pool = p;
    s->fd = fd;
    s->fam = fam;
    s->serial = ++p->next_serial;
    if (s->serial == 0) /* 0 would make an empty map key */
        s->serial = ++p->next_serial;
    ev_io_init(&s->io, read_cb, fd, EV_READ);
    /* Answers already waiting are read before any query timer of the same
     * loop pass fires, so a stalled process does not time out answered queries. */
    ev_set_priority(&s->io, EV_MAXPRI);
    s->io.data = s;
    ev_io_start(p->loop, &s->io);
    return s;
}

static void sock_close(struct udp_sock *s)
{
    ev_io_stop(s->pool->loop, &s->io);
    close(s->fd);
    free(s);
}

/* Closes a retired socket once nothing waits on it, flushing its batch first
 * so no queued datagram is sent on a closed descriptor. */
static void retire_check(struct udp_sock *s)
{
    struct udp_pool *p = s->pool;
    if (!s->retiring || s->pending > 0)
        return;
    if (p->batch[s->fam] == s) {
        outbox_flush(&p->out[s->fam]);
        p->batch[s->fam] = NULL;
    }
    for (struct udp_sock **pp = &p->retiring; *pp; pp = &(*pp)->next_retiring) {
        if (*pp == s) {
            *pp = s->next_retiring;
            break;
        }
    }
    sock_close(s);
}

static void retire(struct udp_sock *s)
{
    struct udp_pool *p = s->pool;
    s->retiring = true;
    s->next_retiring = p->retiring;
    p->retiring = s;
    retire_check(s);
}

static struct log_limit sock_limit;

/* Takes socket `i` of family `fam` out of service and puts a fresh one in its place. */
static void sock_replace(struct udp_pool *p, int fam, unsigned i)
{
    struct udp_sock *old = p->socks[fam][i];
    struct udp_sock *s = sock_new(p, fam);
    if (!s) {
        log_limited(&sock_limit, LOG_LVL_WARN, "cannot open an upstream UDP socket: %s", strerror(errno));
        if (old)
            old->uses = 0; /* keep using it rather than none */
        return;
    }
    p->socks[fam][i] = s;
    if (old)
        retire(old);
}

struct udp_pool *udp_pool_new(struct ev_loop *loop, struct rng *rng, struct stats *stats, struct flusher *fl,
                              const struct tsink *sink, const struct udp_pool_opts *o)
{
    struct udp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->rng = rng;
    p->stats = stats;
    p->sink = sink;
    udp_pool_set_opts(p, o);
    for (int f = 0; f < 2; f++)
        outbox_init(&p->out[f], fl, -1, &stats->upstream_errors);
    return p;
}

void udp_pool_set_opts(struct udp_pool *p, const struct udp_pool_opts *o)
{
    p->opts = *o;
    if (p->opts.sockets == 0)
        p->opts.sockets = 1;
    if (p->opts.socket_uses == 0)
        p->opts.socket_uses = 1;
}

static struct udp_sock *pick_batch_socket(struct udp_pool *p, int fam)
{
    unsigned want = p->opts.sockets;
    if (p->n_socks[fam] != want) {
        /* First use, or udp-sockets changed on reload: resize the slot array. */
        for (unsigned i = want; i < p->n_socks[fam]; i++) {
            if (p->socks[fam][i])
                retire(p->socks[fam][i]);
        }
        struct udp_sock **ns = realloc(p->socks[fam], want * sizeof *ns);
        if (!ns)
            return p->batch[fam];
        for (unsigned i = p->n_socks[fam]; i < want; i++)
            ns[i] = NULL;
        p->socks[fam] = ns;
        p->n_socks[fam] = want;
    }
    unsigned i = rng_below(p->rng, want);
    if (!p->socks[fam][i])
        sock_replace(p, fam, i);
    return p->socks[fam][i];
}

int udp_pool_send(struct udp_pool *p, struct treq *r)
{
    int fam = net_addr_family(r->to) == AF_INET6 ? 1 : 0;
    struct outbox *ob = &p->out[fam];
    double now = ev_now(p->loop);
    if (!p->batch[fam] || p->batch[fam]->retiring || now >= p->batch_until[fam] ||
        p->batch_queries[fam] >= BATCH_QUERIES) {
        outbox_flush(ob);
        p->batch[fam] = pick_batch_socket(p, fam);
        if (!p->batch[fam])
            return -1;
        ob->fd = p->batch[fam]->fd;
        p->batch_until[fam] = now + BATCH_SECONDS;
        p->batch_queries[fam] = 0;
    }
    p->batch_queries[fam]++;
    struct udp_sock *s = p->batch[fam];
    uint16_t id;
    do {
        id = rng_u16(p->rng);
    } while (idmap_get(&p->pending, pkey(s, id)));
    if (r->len > UDP_ANSWER_MAX || idmap_put(&p->pending, pkey(s, id), r) < 0)
        return -1;

    uint8_t buf[UDP_ANSWER_MAX];
    size_t len = r->len;
    if (r->verbatim) {
        memcpy(buf, r->msg, len);
    } else {
        len = wire_strip_hop_options(buf, sizeof buf, r->msg, r->wm);
        wire_set_edns_size(buf, r->wm, p->opts.edns_size); /* the OPT starts where it did */
    }
    if (len == 0) {
        idmap_del(&p->pending, pkey(s, id));
        return -1;
    }
    wire_set_id(buf, id);
    r->id = id;
    r->owner = s;
    s->pending++;
    if (outbox_add(ob, r->to, NULL, buf, len) < 0) {
        idmap_del(&p->pending, pkey(s, id));
        s->pending--;
        r->owner = NULL;
        return -1;
    }
    p->stats->upstream_udp++;
    if (++s->uses >= p->opts.socket_uses) {
        for (unsigned i = 0; i < p->n_socks[fam]; i++)
            if (p->socks[fam][i] == s)
                sock_replace(p, fam, i);
    }
    return 0;
}

static void forget(struct udp_pool *p, struct treq *r)
{
    struct udp_sock *s = r->owner;
    idmap_del(&p->pending, pkey(s, r->id));
    r->owner = NULL;
    s->pending--;
    retire_check(s);
}

void udp_pool_cancel(struct udp_pool *p, struct treq *r)
{
    if (r->owner)
        forget(p, r);
}

static void handle_answer(struct udp_pool *p, struct udp_sock *s, uint8_t *msg, size_t len,
                          const struct net_addr *from, bool truncated)
{
    struct stats *st = p->stats;
    struct wire_msg wm;
    if (len < WIRE_HDR_LEN) {
        st->upstream_malformed++;
        return;
    }
    struct treq *r = idmap_get(&p->pending, pkey(s, wire_get16(msg)));
    if (!r) {
        st->spoofed_id++;
        return;
    }
    if (!net_addr_equal(from, r->to)) {
        st->spoofed_source++;
        return;
    }
    if (truncated || wire_parse_response(msg, len, &wm) != WIRE_OK) {
        st->upstream_malformed++;
        return;
    }
    if (!wire_same_question(msg, &wm, r->msg, r->wm)) {
        st->spoofed_question++;
        return;
    }
    forget(p, r);
    p->sink->answer(p->sink->arg, r, msg, len, &wm);
}

static struct log_limit recv_limit;

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct udp_sock *s = w->data;
    struct udp_pool *p = s->pool;
    struct net_batch b;
    (void)loop;
    (void)revents;
    /* The socket may retire and be freed while answers are handled: keep it
     * alive until this batch is done by counting the batch as pending. */
    s->pending++;
    for (int round = 0; round < 4; round++) {
        /* ECONNREFUSED and friends do not reach unconnected sockets; anything
         * else is transient. */
        int n = net_recv_batch(s->fd, &b);
        if (n < 0)
            log_limited(&recv_limit, LOG_LVL_WARN, "upstream UDP recv: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            handle_answer(p, s, b.buf[i], b.len[i], &b.from[i], b.truncated[i]);
        if (n < NET_BATCH)
            break;
    }
    s->pending--;
    retire_check(s);
}

void udp_pool_free(struct udp_pool *p)
{
    if (!p)
        return;
    for (int f = 0; f < 2; f++) {
        outbox_flush(&p->out[f]);
        for (unsigned i = 0; i < p->n_socks[f]; i++)
            if (p->socks[f][i])
                sock_close(p->socks[f][i]);
        free(p->socks[f]);
    }
    while (p->retiring) {
        struct udp_sock *s = p->retiring;
        p->retiring = s->next_retiring;
        sock_close(s);
    }
    idmap_free(&p->pending);
    free(p);
}
