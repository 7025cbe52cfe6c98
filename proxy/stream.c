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
#include "lib/flush.h"
#include "lib/idmap.h"
#include "lib/log.h"
#include "lib/rng.h"
#include "lib/tls.h"
#include "lib/wire.h"
#include "proxy/stats.h"
#include "proxy/tls_profile.h"

#define STREAM_MAX_INFLIGHT 1024
#define STREAM_READ_CHUNK 16384
#define DOT_PORT 853
#define DOT_PAD_BLOCK 128            /* RFC 8467 4.1 */
#define KEEPALIVE_MARGIN 0.5         /* s: close before the server says it will */
#define QUICKACK_MAX_PENDING 8
/* While requests wait, the path is looked at this often (TCP_INFO). */
#define PATH_CHECK_PERIOD 0.2
/* Unacknowledged bytes mean a dead path after this many of the kernel's
 * smoothed RTTs without an ACK, and never before the floor: a server that
 * acknowledges and answers late is slow, not gone, and is waited for. */
#define DEAD_PATH_RTTS 4
#define DEAD_PATH_MIN 0.2
/* Nothing at all back for this many query budgets while requests wait is a
 * dead connection too. More than one: a query still inside its own budget
 * when the connection goes quiet must end (answer, SERVFAIL, its own
 * fallback) before that is decided, so lateness alone never triggers it. */
#define SILENT_BUDGETS 2

enum stream_state { STREAM_NEW, STREAM_CONNECTING, STREAM_HANDSHAKE, STREAM_OPEN, STREAM_DEAD };

struct stream {
    const struct stream_env *env;
    enum stream_kind kind;
    struct net_addr addr;      /* where it connects */
    char name[NET_ADDRSTRLEN];
    struct tls_profile *profile; /* DoT: a reference */
    enum stream_state state;
    int fd;
    struct tls_conn *tls;
    bool want_write;           /* TLS needs EV_WRITE to make progress */
    bool session_saved;
    double idle_limit;         /* s; from env, lowered by the server's keepalive */
    ev_io io;
    ev_timer timer;            /* connect/handshake deadline, then path checks or idle timeout */
    bool checking;             /* the timer checks the path (requests wait) */
    int connect_err;           /* connect() refused at once: reported from the timer */
    double waiting_since;      /* oldest request sent and not answered since anything came back; 0: none */
    struct bytebuf in, out;
    struct idmap pending;      /* ID + 1 -> struct treq * (0 is the empty key) */
    struct flush_item flush;
    struct stream_link link;
};

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void flush_cb(struct flush_item *it);

struct stream *stream_new(const struct stream_env *env, const struct net_addr *server, enum stream_kind kind,
                          struct tls_profile *tls)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->env = env;
    s->kind = kind;
    s->addr = *server;
    if (kind == STREAM_DOT) {
        net_addr_set_port(&s->addr, DOT_PORT);
        s->profile = tls ? tls_profile_ref(tls) : NULL;
    }
    net_addr_str(&s->addr, s->name, sizeof s->name);
    s->fd = -1;
    ev_init(&s->io, io_cb);
    ev_set_priority(&s->io, EV_MAXPRI); /* answers before query timers: see udp_pool.c */
    ev_init(&s->timer, timer_cb);
    s->io.data = s->timer.data = s;
    flush_item_init(&s->flush, flush_cb);
    return s;
}

bool stream_is_open(const struct stream *s) { return s->state == STREAM_OPEN; }
unsigned stream_inflight(const struct stream *s) { return (unsigned)s->pending.used; }
enum stream_kind stream_kind(const struct stream *s) { return s->kind; }
const struct net_addr *stream_addr(const struct stream *s) { return &s->addr; }
struct tls_profile *stream_profile(const struct stream *s) { return s->profile; }
struct stream_link *stream_link(struct stream *s) { return &s->link; }

static bool opportunistic(const struct stream *s)
{
    return s->kind == STREAM_DOT && s->profile && !s->profile->strict;
}

static double idle_timeout(const struct stream *s)
{
    double cfg = s->env->idle;
    return s->idle_limit > 0 && s->idle_limit < cfg ? s->idle_limit : cfg;
}

static void update_io(struct stream *s)
{
    struct ev_loop *loop = s->env->loop;
    int ev = EV_READ;
    if (s->state == STREAM_CONNECTING || s->want_write ||
        (s->state == STREAM_OPEN && bytebuf_len(&s->out) > 0 && !s->flush.queued))
        ev |= EV_WRITE;
    if (s->io.events != ev || !ev_is_active(&s->io)) {
        ev_io_stop(loop, &s->io);
        ev_io_set(&s->io, s->fd, ev);
        ev_io_start(loop, &s->io);
    }
    if (s->state == STREAM_OPEN) {
        if (s->pending.used == 0 && bytebuf_len(&s->out) == 0) {
            s->checking = false;
            s->timer.repeat = idle_timeout(s);
            ev_timer_again(loop, &s->timer);
        } else if (!s->checking) {
            s->checking = true;
            s->timer.repeat = PATH_CHECK_PERIOD;
            ev_timer_again(loop, &s->timer);
        }
    }
}

static const char *kind_str(const struct stream *s) { return s->kind == STREAM_DOT ? "DoT" : "TCP"; }

/* Closes the connection for good. Requests still waiting go back through
 * the sink, after the owner was told (unless `tell_owner` is false: the
 * owner is freeing it). */
static void teardown(struct stream *s, enum probe_outcome why, const char *why_text, bool tell_owner)
{
    /* The text may live in the TLS connection freed below. */
    char reason[160];
    snprintf(reason, sizeof reason, "%s", why_text ? why_text : "");
    const struct stream_env *env = s->env;
    bool was_connected = s->state == STREAM_OPEN;
    bool was_live = s->state != STREAM_NEW && s->state != STREAM_DEAD;
    s->state = STREAM_DEAD;
    flusher_cancel(env->flusher, &s->flush);
    ev_io_stop(env->loop, &s->io);
    ev_timer_stop(env->loop, &s->timer);
    if (s->tls) {
        if (why == PROBE_CLOSED_CLEAN && was_connected)
            tls_shutdown(s->tls);
        tls_conn_free(s->tls);
        s->tls = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    bytebuf_free(&s->in);
    bytebuf_free(&s->out);
    size_t n = s->pending.used;
    if (was_live && opportunistic(s) && env->dot_outcome && (n > 0 || why != PROBE_CLOSED_CLEAN))
        env->dot_outcome(env->arg, &s->addr, why, reason);
    if (n > 0)
        log_debug("upstream %s: %s connection closed with %zu queries waiting: %s", s->name, kind_str(s), n,
                  reason);
    struct idmap old = s->pending;
    memset(&s->pending, 0, sizeof s->pending);
    if (tell_owner && env->closed)
        env->closed(env->arg, s);
    for (size_t i = 0; i < old.cap; i++) {
        struct treq *r = old.slots[i].value;
        if (!old.slots[i].key || !r)
            continue;
        r->owner = NULL;
        env->stats->upstream_errors++;
        env->sink->failed(env->sink->arg, r, why);
    }
    idmap_free(&old);
}

void stream_abort(struct stream *s, enum probe_outcome why, const char *reason)
{
    if (s->state != STREAM_DEAD)
        teardown(s, why, reason, true);
}

void stream_free(struct stream *s)
{
    if (!s)
        return;
    if (s->state != STREAM_DEAD)
        teardown(s, PROBE_LOCAL_ERROR, "shutting down", false);
    tls_profile_unref(s->profile);
    free(s);
}

static void tls_begin(struct stream *s)
{
    const struct stream_env *env = s->env;
    const struct tls_session *resume = NULL;
    if (!s->profile) {
        s->state = STREAM_HANDSHAKE;
        return;
    }
    if (s->profile->strict)
        resume = s->profile->session;
    else if (env->session_get)
        resume = env->session_get(env->arg, &s->addr);
    s->tls = tls_conn_new(s->profile->ctx, s->fd, s->profile->auth_name, resume);
    s->state = STREAM_HANDSHAKE;
}

static int stream_connect(struct stream *s)
{
    s->fd = net_tcp_connect(&s->addr, s->env->mark);
    if (s->fd < 0) {
        /* Short of descriptors or memory ourselves: the caller's failure,
         * not the server's. A refusal or no route is the server's, and is
         * reported as connect failures are, from the loop. */
        if (net_errno_local(errno))
            return -1;
        s->connect_err = errno;
        s->state = STREAM_CONNECTING;
        ev_timer_set(&s->timer, 0, 0);
        ev_timer_start(s->env->loop, &s->timer);
        return 0;
    }
    s->state = STREAM_CONNECTING;
    /* The whole set-up, TCP and TLS, must finish within one query budget. */
    s->timer.repeat = s->env->setup;
    ev_timer_again(s->env->loop, &s->timer);
    update_io(s);
    return 0;
}

/* Writes what it can. Returns 0, or -1 on a broken connection (the caller
 * decides when to close, so stream_send never calls the sink). */
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

static void flush_cb(struct flush_item *it)
{
    struct stream *s = (struct stream *)((char *)it - offsetof(struct stream, flush));
    /* On a write error the EV_WRITE watcher meets the error again and closes. */
    if (s->state == STREAM_OPEN && flush_out(s) < 0) {
        s->want_write = true;
        update_io(s);
    }
}

int stream_send(struct stream *s, struct treq *r)
{
    const struct stream_env *env = s->env;
    if (s->state == STREAM_DEAD || s->pending.used >= STREAM_MAX_INFLIGHT || r->len > WIRE_MAX_MSG - 2)
        return -1;
    if (s->state == STREAM_NEW && stream_connect(s) < 0)
        return -1;
    uint16_t id;
    do {
        id = rng_u16(env->rng);
    } while (idmap_get(&s->pending, (uint64_t)id + 1));
    uint8_t *p = bytebuf_reserve(&s->out, WIRE_MAX_MSG + 2);
    if (!p || idmap_put(&s->pending, (uint64_t)id + 1, r) < 0)
        return -1;
    size_t len = r->len;
    if (r->verbatim)
        memcpy(p + 2, r->msg, len);
    else if (s->kind == STREAM_DOT)
        len = wire_pad_query(p + 2, WIRE_MAX_MSG, r->msg, r->len, r->wm, env->edns_size, DOT_PAD_BLOCK);
    else
        len = wire_strip_hop_options(p + 2, WIRE_MAX_MSG, r->msg, r->wm);
    if (len == 0) {
        idmap_del(&s->pending, (uint64_t)id + 1);
        return -1;
    }
    wire_put16(p, (uint16_t)len);
    wire_set_id(p + 2, id);
    bytebuf_commit(&s->out, len + 2);
    r->id = id;
    r->owner = s;
    if (s->waiting_since == 0)
        s->waiting_since = ev_now(env->loop);
    if (s->kind == STREAM_DOT)
        env->stats->upstream_dot++;
    else
        env->stats->upstream_tcp++;
    if (s->state == STREAM_OPEN) {
        flusher_queue(env->flusher, &s->flush);
        update_io(s);
    }
    return 0;
}

void stream_cancel(struct stream *s, struct treq *r)
{
    if (idmap_get(&s->pending, (uint64_t)r->id + 1) == r)
        idmap_del(&s->pending, (uint64_t)r->id + 1);
    r->owner = NULL;
    if (s->state == STREAM_OPEN)
        update_io(s);
}

static void handle_frame(struct stream *s, uint8_t *msg, size_t len)
{
    const struct stream_env *env = s->env;
    struct wire_msg wm;
    /* Anything from the server, even an answer to a query given up on, shows it is there. */
    s->waiting_since = s->pending.used ? ev_now(env->loop) : 0;
    if (wire_parse_response(msg, len, &wm) != WIRE_OK) {
        /* A stream that carries garbage cannot be trusted to stay in sync. */
        env->stats->upstream_malformed++;
        teardown(s, PROBE_BAD_ANSWER, "malformed answer", true);
        return;
    }
    struct treq *r = idmap_get(&s->pending, (uint64_t)wm.id + 1);
    if (!r) {
        env->stats->spoofed_id++;
        return;
    }
    if (!wire_same_question(msg, &wm, r->msg, r->wm) && !(r->multi && wm.qdcount == 0)) {
        env->stats->spoofed_question++;
        return;
    }
    if (s->kind == STREAM_DOT && !r->verbatim) {
        int keepalive;
        size_t n = wire_strip_dot_answer(msg, len, &wm, r->wm->has_opt, &keepalive);
        if (n == 0) {
            env->stats->upstream_malformed++;
            teardown(s, PROBE_BAD_ANSWER, "malformed answer", true);
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
    }
    if (s->kind == STREAM_DOT) {
        env->stats->dot_answers++;
        if (opportunistic(s) && env->dot_outcome)
            env->dot_outcome(env->arg, &s->addr, PROBE_OK, NULL);
    }
    if (!r->multi) {
        idmap_del(&s->pending, (uint64_t)wm.id + 1);
        r->owner = NULL;
    }
    if (s->pending.used == 0)
        s->waiting_since = 0;
    env->sink->answer(env->sink->arg, r, msg, len, &wm);
}

/* TLS 1.3 tickets arrive after the handshake: the session is worth keeping
 * once something has been read. */
static void save_session(struct stream *s)
{
    if (s->session_saved || !s->tls || !s->profile)
        return;
    struct tls_session *sess = tls_get_session(s->tls);
    if (!sess)
        return;
    s->session_saved = true;
    if (s->profile->strict)
        tls_profile_set_session(s->profile, sess);
    else if (s->env->session_put)
        s->env->session_put(s->env->arg, &s->addr, sess);
    else
        tls_session_free(sess);
}

static void handle_frames(struct stream *s)
{
    long flen;
    while (s->state == STREAM_OPEN && (flen = bytebuf_frame(&s->in)) >= 0) {
        /* Copy out: handling may close the stream, freeing its buffers. */
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
            teardown(s, PROBE_LOCAL_ERROR, "out of memory", true);
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
                teardown(s, PROBE_CLOSED_CLEAN, "closed by the server", true);
                return;
            }
            if (n < 0) {
                teardown(s, PROBE_RESET, tls_error(s->tls), true);
                return;
            }
        } else {
            n = read(s->fd, p, STREAM_READ_CHUNK);
            if (n == 0) {
                teardown(s, PROBE_CLOSED_CLEAN, "closed by the server", true);
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    break;
                teardown(s, PROBE_RESET, strerror(errno), true);
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
        ev_feed_event(s->env->loop, &s->io, EV_READ);
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
    const struct stream_env *env = s->env;
    s->state = STREAM_OPEN;
    ev_timer_stop(env->loop, &s->timer);
    if (s->kind == STREAM_DOT) {
        env->stats->dot_connections++;
        if (tls_resumed(s->tls))
            env->stats->dot_resumed++;
        log_debug("upstream %s: DoT connection up (%s, %s%s)", s->name, tls_version(s->tls),
                  tls_cipher(s->tls), tls_resumed(s->tls) ? ", resumed" : "");
    }
    if (flush_out(s) < 0)
        teardown(s, PROBE_RESET, strerror(errno), true);
}

static void handshake(struct stream *s)
{
    if (!s->tls) {
        teardown(s, PROBE_LOCAL_ERROR, "cannot create a TLS connection", true);
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
    teardown(s, PROBE_TLS_FAILED, tls_error(s->tls), true);
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
            teardown(s, PROBE_CONNECT_REFUSED, strerror(err), true);
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
        teardown(s, PROBE_RESET, strerror(errno), true);
        return;
    }
    if (s->state == STREAM_OPEN && (revents & EV_READ))
        read_some(s);
}

/* Tells a dead path from a slow server by the transport, not by how late an
 * answer is: bytes the server's TCP has not acknowledged for several round
 * trips (the kernel retransmits them), or nothing at all back for
 * SILENT_BUDGETS query budgets while requests wait. Returns true if it
 * closed the stream. */
static bool path_dead(struct stream *s, double now)
{
    char why[96];
    if (s->waiting_since > 0 && now - s->waiting_since >= SILENT_BUDGETS * s->env->setup) {
        snprintf(why, sizeof why, "nothing received for %.1f s with queries waiting", now - s->waiting_since);
        s->env->stats->upstream_dead_path++;
        teardown(s, PROBE_QUERY_TIMEOUT, why, true);
        return true;
    }
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (s->pending.used == 0 || getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        ti.tcpi_unacked == 0 || ti.tcpi_retransmits == 0)
        return false;
    double limit = DEAD_PATH_RTTS * (double)ti.tcpi_rtt / 1e6;
    if (limit < DEAD_PATH_MIN)
        limit = DEAD_PATH_MIN;
    if ((double)ti.tcpi_last_ack_recv / 1000.0 < limit)
        return false;
    snprintf(why, sizeof why, "dead path: %u segments unacknowledged, no ACK for %u ms", ti.tcpi_unacked,
             ti.tcpi_last_ack_recv);
    s->env->stats->upstream_dead_path++;
    teardown(s, PROBE_QUERY_TIMEOUT, why, true);
    return true;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct stream *s = w->data;
    (void)revents;
    switch (s->state) {
    case STREAM_CONNECTING:
        if (s->connect_err)
            teardown(s, PROBE_CONNECT_REFUSED, strerror(s->connect_err), true);
        else
            teardown(s, PROBE_CONNECT_TIMEOUT, "connect timed out", true);
        break;
    case STREAM_HANDSHAKE:
        teardown(s, PROBE_TLS_FAILED, "TLS handshake timed out", true);
        break;
    default:
        /* Idle, with what it was last asked unanswered for a whole budget, is a failure too. */
        if (!path_dead(s, ev_now(loop)) && !s->checking)
            teardown(s, PROBE_CLOSED_CLEAN, "idle", true);
        break;
    }
}

int stream_adopt(struct stream *s, int fd, struct tls_conn *conn)
{
    if (s->state != STREAM_NEW || s->kind != STREAM_DOT)
        return -1;
    s->fd = fd;
    s->tls = conn;
    s->session_saved = true; /* the prober stored it */
    s->state = STREAM_OPEN;
    s->env->stats->dot_connections++;
    update_io(s);
    return 0;
}
