/* test/unit/test_peer.c: lib/peer and lib/acceptor on a real libev loop,
 * with socketpair()s and loopback TCP inside this process, and limits of a
 * few hundred milliseconds. Each test would fail if its feature broke: the
 * deadlines are checked both ways (not before, and by when), the EMFILE
 * test counts loop iterations to see a spin. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/acceptor.h"
#include "lib/net.h"
#include "lib/peer.h"

/* ---- helpers ------------------------------------------------------------- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* Runs the loop for up to `max` seconds, or until *until is not 0. */
static void run(struct ev_loop *loop, double max, const unsigned *until)
{
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    double t0 = mono();
    while (mono() - t0 < max && !(until && *until))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

/* A socketpair: sv[0] for the peer (non-blocking), sv[1] for the test. */
static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static size_t drain(int fd, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        uint8_t sink[65536];
        ssize_t r = recv(fd, buf ? buf + n : sink, buf ? cap - n : sizeof sink, MSG_DONTWAIT);
        if (r <= 0)
            return n;
        n += (size_t)r;
        if (buf && n == cap)
            return n;
    }
}

/* ---- an owner ------------------------------------------------------------ */

enum mode { MODE_LINES, MODE_FRAMES, MODE_KEEP };

struct owner {
    struct peer peer;
    enum mode mode;
    unsigned inputs, eofs, timeouts, drains, closed;
    size_t in_bytes;                 /* seen by input(), new bytes only */
    size_t seen;                     /* bytes seen so far in the queue */
    unsigned msgs;
    uint8_t msg[8][64];
    size_t msg_len[8];
    enum peer_why why;
    double closed_at;
    size_t reply_per_byte;           /* input(): send this much per new byte */
    bool pause_in_input;
    bool close_in_input, close_in_drained, word_on_timeout;
    bool in_callback;
};

/* Freed owners report here (the owner is gone by the time the test looks). */
static unsigned g_closed;
static enum peer_why g_why;
static bool g_closed_inside_callback;

static void take(struct owner *o, const uint8_t *m, size_t len)
{
    if (o->msgs < 8) {
        size_t l = len < 64 ? len : 64;
        memcpy(o->msg[o->msgs], m, l);
        o->msg_len[o->msgs] = l;
    }
    o->msgs++;
}

static void on_input(void *arg, struct peer *p)
{
    struct owner *o = arg;
    o->in_callback = true;
    o->inputs++;
    size_t len;
    const uint8_t *d = peer_in(p, &len);
    assert_true(len > o->seen);
    o->in_bytes += len - o->seen;
    size_t fresh = len - o->seen;
    o->seen = len;
    if (o->close_in_input) {
        peer_close(p, PEER_OWNER);
        /* p stays valid until this callback returns, and harmless */
        assert_true(peer_closed(p));
        assert_int_equal(peer_send(p, "x", 1), -1);
        peer_consume(p, 1);
        peer_set_owed(p, 3);
        assert_int_equal(o->closed, 0);
        o->in_callback = false;
        return;
    }
    if (o->reply_per_byte) {
        static uint8_t big[1 << 20];
        for (size_t i = 0; i < fresh; i++)
            assert_int_equal(peer_send(p, big, o->reply_per_byte), 0);
    }
    if (o->pause_in_input)
        peer_pause(p, true);
    if (o->mode == MODE_LINES) {
        const uint8_t *nl;
        while (len > 0 && (nl = memchr(d, '\n', len))) {
            size_t n = (size_t)(nl - d) + 1;
            take(o, d, n - 1);
            peer_consume(p, n);
            o->seen -= n;
            d = peer_in(p, &len);
        }
    } else if (o->mode == MODE_FRAMES) {
        while (len >= 2) {
            size_t flen = ((size_t)d[0] << 8) | d[1];
            if (len - 2 < flen)
                break;
            take(o, d + 2, flen);
            peer_consume(p, flen + 2);
            o->seen -= flen + 2;
            peer_set_owed(p, o->msgs);
            d = peer_in(p, &len);
        }
    }
    o->in_callback = false;
}

static void on_eof(void *arg, struct peer *p)
{
    struct owner *o = arg;
    o->eofs++;
    size_t len;
    const uint8_t *d = peer_in(p, &len);
    if (len)
        take(o, d, len);
    peer_consume(p, len);
    o->seen = 0;
    peer_send(p, "bye\n", 4);
    o->close_in_drained = true;
}

static void on_timeout(void *arg, struct peer *p, enum peer_why why)
{
    struct owner *o = arg;
    o->timeouts++;
    o->why = why;
    if (o->word_on_timeout) {
        o->in_callback = true;
        size_t len;
        peer_in(p, &len);
        peer_consume(p, len);
        o->seen = 0;
        peer_pause(p, true);
        peer_send(p, "timeout\n", 8);
        o->close_in_drained = true;
        o->in_callback = false;
    }
}

static void on_drained(void *arg, struct peer *p)
{
    struct owner *o = arg;
    o->drains++;
    if (o->close_in_drained) {
        o->in_callback = true;
        peer_close(p, PEER_OWNER);
        assert_true(peer_closed(p));
        o->in_callback = false;
    }
}

static void on_closed(void *arg, struct peer *p, enum peer_why why)
{
    struct owner *o = arg;
    assert_ptr_equal(p, &o->peer);
    assert_true(peer_closed(p));
    assert_int_equal(peer_fd(p), -1);
    g_closed_inside_callback |= o->in_callback;
    o->closed++;
    o->why = why;
    o->closed_at = mono();
    g_closed++;
    g_why = why;
}

/* The owner that frees itself in closed(): ASan sees any later touch. */
static void on_closed_free(void *arg, struct peer *p, enum peer_why why)
{
    on_closed(arg, p, why);
    free(arg);
}

static const struct peer_ops ops_plain = { .input = on_input, .closed = on_closed };
static const struct peer_ops ops_full = {
    .input = on_input, .eof = on_eof, .timeout = on_timeout, .drained = on_drained, .closed = on_closed,
};
static const struct peer_ops ops_free = {
    .input = on_input, .timeout = on_timeout, .drained = on_drained, .closed = on_closed_free,
};

struct fix {
    struct ev_loop *loop;
    struct fd_waiters *w;
    int sv[2];
    struct owner *o;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->w = fd_waiters_new(f->loop);
    assert_non_null(f->w);
    pair(f->sv);
    f->o = calloc(1, sizeof *f->o);
    assert_non_null(f->o);
    g_closed = 0;
    g_closed_inside_callback = false;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    if (f->o) {
        if (!peer_closed(&f->o->peer))
            peer_close(&f->o->peer, PEER_SHUTDOWN);
        free(f->o);
    }
    if (f->sv[1] >= 0)
        close(f->sv[1]);
    fd_waiters_free(f->w);
    ev_loop_destroy(f->loop);
    free(f);
    assert_false(g_closed_inside_callback);
    return 0;
}

static void start(struct fix *f, const struct peer_limits *lim, const struct peer_ops *ops)
{
    struct net_addr a;
    memset(&a, 0, sizeof a);
    ev_now_update(f->loop);
    peer_init(&f->o->peer, f->loop, f->sv[0], &a, lim, ops, f->o, f->w);
}

static void say(struct fix *f, const void *data, size_t len)
{
    assert_int_equal(send(f->sv[1], data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* ---- tests --------------------------------------------------------------- */

/* DNS framing: two whole messages and half a third in one write; the half
 * stays until the rest comes. Answers go out later, out of order, framed. */
static void test_framing_and_consume(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_FRAMES;
    struct peer_limits lim = { .idle = 5, .message = 5 };
    start(f, &lim, &ops_plain);
    static const uint8_t wire[] = { 0, 3, 'a', 'b', 'c', 0, 1, 'd', 0, 4, 'e', 'f' };
    say(f, wire, sizeof wire);
    run(f->loop, 0.1, NULL);
    assert_int_equal(o->msgs, 2);
    assert_memory_equal(o->msg[0], "abc", 3);
    assert_memory_equal(o->msg[1], "d", 1);
    size_t len;
    const uint8_t *in = peer_in(&o->peer, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(in, "\0\4ef", 4);
    assert_true(peer_partial_since(&o->peer) > 0);
    assert_int_equal(peer_idle_since(&o->peer), 0);
    say(f, "gh", 2);
    run(f->loop, 0.1, NULL);
    assert_int_equal(o->msgs, 3);
    assert_int_equal(o->msg_len[2], 4);
    assert_memory_equal(o->msg[2], "efgh", 4);
    assert_int_equal(peer_in(&o->peer, &len) == NULL, 1);
    assert_int_equal(len, 0);
    assert_int_equal(peer_partial_since(&o->peer), 0);
    /* three owed: not idle; answer the last first, from outside any callback */
    assert_int_equal(peer_idle_since(&o->peer), 0);
    assert_int_equal(peer_send_framed(&o->peer, (const uint8_t *)"C", 1), 0);
    assert_int_equal(peer_send_framed(&o->peer, (const uint8_t *)"AA", 2), 0);
    peer_set_owed(&o->peer, 1);
    assert_int_equal(peer_send_framed(&o->peer, (const uint8_t *)"B", 1), 0);
    peer_set_owed(&o->peer, 0);
    assert_true(peer_idle_since(&o->peer) > 0);
    uint8_t buf[64];
    size_t n = drain(f->sv[1], buf, sizeof buf);
    static const uint8_t want[] = { 0, 1, 'C', 0, 2, 'A', 'A', 0, 1, 'B' };
    assert_int_equal(n, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    uint8_t huge[65536];
    assert_int_equal(peer_send_framed(&o->peer, huge, sizeof huge), -1);
    assert_int_equal(o->closed, 0);
    /* the client's end closes: EOF, no eof hook, so closed(eof) */
    close(f->sv[1]);
    f->sv[1] = -1;
    run(f->loop, 0.5, NULL);
    assert_int_equal(o->closed, 1);
    assert_int_equal(o->why, PEER_EOF);
}

/* One byte every 50 ms never completes a line: closed `message` after the
 * FIRST byte, although bytes keep coming. */
struct trickle { int fd; unsigned sent; };

static void trickle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct trickle *t = w->data;
    if (send(t->fd, "x", 1, MSG_NOSIGNAL) == 1)
        t->sent++;
}

static void test_message_deadline_not_rearmed(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    struct peer_limits lim = { .idle = 5, .message = 0.3 };
    start(f, &lim, &ops_plain);
    struct trickle t = { f->sv[1], 0 };
    ev_timer tw;
    ev_timer_init(&tw, trickle_cb, 0, 0.05);
    tw.data = &t;
    double t0 = mono();
    ev_timer_start(f->loop, &tw);
    run(f->loop, 0.25, NULL);
    assert_int_equal(o->closed, 0); /* not before */
    run(f->loop, 1.5, &o->closed);
    ev_timer_stop(f->loop, &tw);
    assert_int_equal(o->closed, 1);
    assert_int_equal(o->why, PEER_MESSAGE_TIMEOUT);
    double took = o->closed_at - t0;
    assert_true(took >= 0.28 && took < 0.5);
    assert_true(t.sent >= 5);
    assert_true(o->in_bytes >= 5);
}

/* After a whole message is consumed, the clock of the rest starts at the
 * read it came in, not at the first byte of the connection. */
static void test_message_clock_restarts_at_consume(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    struct peer_limits lim = { .message = 0.3 };
    start(f, &lim, &ops_plain);
    double t0 = mono();
    say(f, "ab", 2);
    run(f->loop, 0.2, NULL);
    say(f, "c\nd", 3); /* completes "abc", starts "d" at t0 + 0.2 */
    run(f->loop, 0.2, NULL);
    assert_int_equal(o->msgs, 1);
    assert_int_equal(o->closed, 0); /* 0.4 s after "ab", but 0.2 after "d" */
    run(f->loop, 1.0, &o->closed);
    assert_int_equal(o->why, PEER_MESSAGE_TIMEOUT);
    double took = o->closed_at - t0;
    assert_true(took >= 0.45 && took < 0.7);
}

/* The message clock stops while the owner has reading paused. */
static void test_message_clock_frozen_while_paused(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_KEEP;
    o->pause_in_input = true;
    struct peer_limits lim = { .message = 0.2 };
    start(f, &lim, &ops_plain);
    say(f, "partial", 7);
    run(f->loop, 0.5, NULL);
    assert_int_equal(o->inputs, 1);
    assert_int_equal(o->closed, 0);
    double t1 = mono();
    o->pause_in_input = false;
    peer_pause(&o->peer, false);
    run(f->loop, 1.0, &o->closed);
    assert_int_equal(o->why, PEER_MESSAGE_TIMEOUT);
    /* the 0.5 s paused did not count: the whole 0.2 s runs after the resume */
    assert_true(o->closed_at - t1 >= 0.15 && o->closed_at - t1 < 0.3);
}

/* Idle: nothing owed, nothing queued, nothing partial. */
static void test_idle_deadline(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    struct peer_limits lim = { .idle = 0.2 };
    start(f, &lim, &ops_plain);
    peer_set_owed(&o->peer, 1); /* a query in flight: the clock waits */
    run(f->loop, 0.4, NULL);
    assert_int_equal(o->closed, 0);
    assert_int_equal(peer_idle_since(&o->peer), 0);
    say(f, "q\n", 2);
    run(f->loop, 0.05, NULL);
    assert_int_equal(o->msgs, 1);
    double t1 = mono();
    peer_set_owed(&o->peer, 0);
    assert_true(peer_idle_since(&o->peer) > 0);
    run(f->loop, 0.15, NULL);
    assert_int_equal(o->closed, 0);
    run(f->loop, 1.0, &o->closed);
    assert_int_equal(o->why, PEER_IDLE);
    double took = o->closed_at - t1;
    assert_true(took >= 0.18 && took < 0.4);
}

/* A timeout hook that queues a last word keeps the peer until drained. */
static void test_timeout_hook_last_word(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    o->word_on_timeout = true;
    struct peer_limits lim = { .idle = 0.1, .message = 0.1, .write = 1 };
    start(f, &lim, &ops_full);
    say(f, "sta", 3);
    run(f->loop, 1.0, &o->closed);
    assert_int_equal(o->timeouts, 1);
    assert_int_equal(o->drains, 1);
    assert_int_equal(o->why, PEER_OWNER);
    uint8_t buf[32];
    assert_int_equal(drain(f->sv[1], buf, sizeof buf), 8);
    assert_memory_equal(buf, "timeout\n", 8);
}

/* EOF with an eof hook: the last partial line still counts. */
static void test_eof_hook(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    struct peer_limits lim = { .idle = 1, .message = 1 };
    start(f, &lim, &ops_full);
    say(f, "help", 4);
    shutdown(f->sv[1], SHUT_WR);
    run(f->loop, 1.0, &o->closed);
    assert_int_equal(o->eofs, 1);
    assert_int_equal(o->msgs, 1);
    assert_memory_equal(o->msg[0], "help", 4);
    assert_int_equal(o->why, PEER_OWNER);
    uint8_t buf[16];
    assert_int_equal(drain(f->sv[1], buf, sizeof buf), 4);
}

/* A client that never reads: closed `write` after the last progress. One
 * that reads slowly but steadily is not. */
static void test_write_deadline(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    struct peer_limits lim = { .write = 0.2 };
    start(f, &lim, &ops_plain);
    static uint8_t big[1 << 20];
    for (int i = 0; i < 4; i++)
        assert_int_equal(peer_send(&o->peer, big, sizeof big), 0);
    assert_true(peer_out_len(&o->peer) > 0);
    /* steady reading for longer than the limit */
    size_t got = 0;
    for (int i = 0; i < 8; i++) {
        run(f->loop, 0.1, NULL);
        got += drain(f->sv[1], NULL, 0) > 0;
    }
    assert_int_equal(o->closed, 0);
    assert_true(got >= 6);
    assert_true(peer_out_len(&o->peer) > 0);
    double t1 = mono();
    run(f->loop, 1.0, &o->closed);
    assert_int_equal(o->closed, 1);
    assert_int_equal(o->why, PEER_WRITE_TIMEOUT);
    double took = o->closed_at - t1;
    assert_true(took >= 0.03 && took < 0.45);
}

/* max_out: reading stops while the answers pile up, resumes below it. */
static void test_max_out_pauses_input(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    o->reply_per_byte = 60000;
    int small = 4096;
    setsockopt(f->sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(f->sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct peer_limits lim = { .max_out = 100000 };
    start(f, &lim, &ops_plain);
    say(f, "a", 1);
    run(f->loop, 0.05, NULL);
    say(f, "b", 1);
    run(f->loop, 0.05, NULL);
    assert_int_equal(o->in_bytes, 2);
    assert_true(peer_out_len(&o->peer) >= 100000);
    say(f, "c", 1);
    run(f->loop, 0.2, NULL);
    assert_int_equal(o->in_bytes, 2); /* not read: the answers wait */
    /* the client reads its answers: below max_out, "c" is read */
    for (int i = 0; i < 200 && o->in_bytes < 3; i++) {
        drain(f->sv[1], NULL, 0);
        run(f->loop, 0.01, NULL);
    }
    assert_int_equal(o->in_bytes, 3);
    assert_int_equal(o->closed, 0);
}

/* The owner closes from inside input() and frees its memory in closed():
 * closed() comes once, after input() has returned (ASan checks the rest). */
static void test_close_inside_input_owner_frees(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->close_in_input = true;
    struct peer_limits lim = { .idle = 1 };
    start(f, &lim, &ops_free);
    f->o = NULL; /* freed by on_closed_free */
    say(f, "bye\n", 4);
    run(f->loop, 0.5, NULL);
    assert_int_equal(g_closed, 1);
    assert_int_equal(g_why, PEER_OWNER);
    /* the fd is closed: the client sees EOF */
    uint8_t b;
    assert_int_equal(recv(f->sv[1], &b, 1, MSG_DONTWAIT), 0);
}

/* The same from drained(), with a lifetime limit running. */
static void test_close_inside_drained_owner_frees(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->close_in_drained = true;
    struct peer_limits lim = { .lifetime = 2 };
    start(f, &lim, &ops_free);
    f->o = NULL; /* freed by on_closed_free */
    assert_int_equal(peer_send(&o->peer, "answer", 6), 0);
    assert_int_equal(g_closed, 0); /* drained() never runs inside peer_send */
    run(f->loop, 0.5, NULL);
    assert_int_equal(g_closed, 1);
    assert_int_equal(g_why, PEER_OWNER);
}

/* A send that fails inside peer_send() does not call closed() there. */
static void test_send_failure_deferred(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    start(f, NULL, &ops_plain);
    close(f->sv[1]);
    f->sv[1] = -1;
    assert_int_equal(peer_send(&o->peer, "x", 1), -1);
    assert_true(peer_closed(&o->peer));
    assert_int_equal(o->closed, 0);
    run(f->loop, 0.2, NULL);
    assert_int_equal(o->closed, 1);
    assert_int_equal(o->why, PEER_ERROR);
    peer_close(&o->peer, PEER_OWNER); /* left alone */
    assert_int_equal(o->closed, 1);
}

/* The lifetime limit closes whatever happens. */
static void test_lifetime(void **state)
{
    struct fix *f = *state;
    struct owner *o = f->o;
    o->mode = MODE_LINES;
    struct peer_limits lim = { .lifetime = 0.2 };
    start(f, &lim, &ops_plain);
    double t0 = mono();
    for (int i = 0; i < 10 && !o->closed; i++) {
        say(f, "q\n", 2);
        run(f->loop, 0.05, NULL);
    }
    run(f->loop, 0.5, &o->closed);
    assert_int_equal(o->why, PEER_LIFETIME);
    assert_true(o->closed_at - t0 < 0.35);
    assert_true(o->msgs >= 2);
}

/* ---- acceptor ------------------------------------------------------------ */

struct accepted {
    int fds[64];
    unsigned n;
};

static void on_accept(void *arg, int fd, const struct net_addr *peer)
{
    struct accepted *a = arg;
    assert_int_equal(net_addr_family(peer), AF_INET);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_true(a->n < 64);
    a->fds[a->n++] = fd;
}

static int connect_to(const struct net_addr *a)
{
    int fd = net_tcp_connect(a, 0);
    assert_true(fd >= 0);
    return fd;
}

/* The EMFILE test lowers the limit and fills the table: a failure must not
 * leave the tests after it without descriptors. */
static struct rlimit g_old_limit;
static int g_filler[16];
static unsigned g_nfill;

static int limit_setup(void **state)
{
    (void)state;
    g_nfill = 0;
    return getrlimit(RLIMIT_NOFILE, &g_old_limit);
}

static int limit_teardown(void **state)
{
    (void)state;
    while (g_nfill > 0)
        close(g_filler[--g_nfill]);
    return setrlimit(RLIMIT_NOFILE, &g_old_limit);
}

/* Out of descriptors, the acceptor stops (no spin: the loop sleeps),
 * resumes once on fd_waiters_released() and pauses again when accept fails
 * again; stop wins over a pending resume; the fallback timer resumes it
 * when a descriptor is freed without a word. */
static void test_emfile_pause_and_resume(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct fd_waiters *w = fd_waiters_new(loop);
    struct net_addr la;
    assert_int_equal(net_addr_parse("127.0.0.1", 0, &la), 0);
    int lfd = net_tcp_listen(&la, 16);
    assert_true(lfd >= 0);
    la.len = sizeof la.u;
    assert_int_equal(getsockname(lfd, &la.u.sa, &la.len), 0);
    struct accepted got = { .n = 0 };
    struct acceptor *acc = acceptor_new(loop, lfd, w, on_accept, &got, "test listener");
    assert_non_null(acc);

    /* four connections wait in the backlog; then no descriptor is left */
    int cl[4];
    for (int i = 0; i < 4; i++)
        cl[i] = connect_to(&la);
    struct rlimit low;
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    low = g_old_limit;
    low.rlim_cur = (rlim_t)probe + 8;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int *filler = g_filler;
    unsigned nfill = 0;
    int d;
    while (nfill < 16 && (d = dup(0)) >= 0)
        filler[nfill++] = d;
    g_nfill = nfill;
    assert_true(nfill < 16);
    assert_int_equal(errno, EMFILE);

    unsigned it0 = ev_iteration(loop);
    run(loop, 0.3, NULL);
    unsigned spins = ev_iteration(loop) - it0;
    assert_true(spins < 100); /* the 10 ms tick only; a spin would be thousands */
    assert_true(acceptor_waiting(acc));
    assert_int_equal(fd_waiters_count(w), 1);
    assert_int_equal(got.n, 0);

    /* one descriptor back: one accepted, then it waits again */
    close(filler[--nfill]);
    g_nfill = nfill;
    fd_waiters_released(w);
    assert_false(acceptor_waiting(acc));
    run(loop, 0.1, NULL);
    assert_int_equal(got.n, 1);
    assert_true(acceptor_waiting(acc));

    /* stop wins over a pending resume */
    close(filler[--nfill]);
    g_nfill = nfill;
    fd_waiters_released(w);
    acceptor_stop(acc);
    run(loop, 0.1, NULL);
    assert_int_equal(got.n, 1);
    assert_false(acceptor_waiting(acc));
    assert_int_equal(fd_waiters_count(w), 0);

    /* started again: it takes the free descriptor, then waits */
    acceptor_start(acc);
    run(loop, 0.1, NULL);
    assert_int_equal(got.n, 2);
    assert_true(acceptor_waiting(acc));

    /* a descriptor freed without fd_waiters_released(): the fallback timer */
    double t0 = mono();
    close(filler[--nfill]);
    g_nfill = nfill;
    run(loop, 0.3, NULL);
    assert_int_equal(got.n, 2);
    while (got.n == 2 && mono() - t0 < 2.5)
        run(loop, 0.05, NULL);
    assert_int_equal(got.n, 3);
    assert_true(mono() - t0 < ACCEPTOR_RETRY + 0.5);
    assert_true(acceptor_waiting(acc));

    for (unsigned i = 0; i < nfill; i++)
        close(filler[i]);
    g_nfill = 0;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &g_old_limit), 0);
    fd_waiters_released(w);
    run(loop, 0.1, NULL);
    assert_int_equal(got.n, 4);
    assert_false(acceptor_waiting(acc));
    for (unsigned i = 0; i < got.n; i++)
        close(got.fds[i]);
    for (int i = 0; i < 4; i++)
        close(cl[i]);
    acceptor_free(acc);
    close(lfd);
    fd_waiters_free(w);
    ev_loop_destroy(loop);
}

/* acceptor_free from inside the callback. */
struct self_free { struct acceptor *acc; unsigned n; int fd; };

static void on_accept_free(void *arg, int fd, const struct net_addr *peer)
{
    (void)peer;
    struct self_free *s = arg;
    s->n++;
    s->fd = fd;
    acceptor_free(s->acc);
}

static void test_acceptor_free_inside_callback(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct fd_waiters *w = fd_waiters_new(loop);
    struct net_addr la;
    assert_int_equal(net_addr_parse("127.0.0.1", 0, &la), 0);
    int lfd = net_tcp_listen(&la, 16);
    la.len = sizeof la.u;
    assert_int_equal(getsockname(lfd, &la.u.sa, &la.len), 0);
    struct self_free s = { NULL, 0, -1 };
    s.acc = acceptor_new(loop, lfd, w, on_accept_free, &s, "self-free");
    int c1 = connect_to(&la), c2 = connect_to(&la);
    run(loop, 0.1, NULL);
    assert_int_equal(s.n, 1); /* freed after the first: the second stays queued */
    close(s.fd);
    close(c1);
    close(c2);
    close(lfd);
    fd_waiters_free(w);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_framing_and_consume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_deadline_not_rearmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_clock_restarts_at_consume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_clock_frozen_while_paused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_hook_last_word, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_out_pauses_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_input_owner_frees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_drained_owner_frees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_failure_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emfile_pause_and_resume, limit_setup, limit_teardown),
        cmocka_unit_test(test_acceptor_free_inside_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
