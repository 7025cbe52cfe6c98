/* test/unit/test_stream.c: one upstream Do53-over-TCP stream against a
 * listener the test binds on 127.0.0.1 and serves itself: pipelining,
 * answers in any order matched by ID and question, what kills the
 * connection (reset, close, garbage) failing every request still waiting
 * (the owner told first), idle close, refused connect, cancel. DoT needs a
 * TLS server and is left to the system tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/flush.h"
#include "lib/rng.h"
#include "proxy/stats.h"
#include "proxy/stream.h"
#include "test/unit/scenario.h"

/* ---- the owner and the sink -------------------------------------------- */

struct rec {
    unsigned answers, fails, closed;
    struct treq *answered[16];
    struct treq *failed[16];
    enum probe_outcome why[16];
    char order[64];             /* 'A'nswer, 'F'ailed, 'C'losed, in order */
    size_t n_order;
    double closed_at;
    bool held_in_callback;
};

static void note(struct rec *c, char e)
{
    if (c->n_order + 1 < sizeof c->order)
        c->order[c->n_order++] = e;
}

static void on_answer(void *arg, struct treq *r, uint8_t *msg, size_t len, const struct wire_msg *wm)
{
    struct rec *c = arg;
    (void)msg, (void)len;
    if (r->owner)
        c->held_in_callback = true;
    /* The sink is given the request's own ID: the match was by it. */
    assert_int_equal(wm->id, r->id);
    assert_true(c->answers < 16);
    c->answered[c->answers++] = r;
    note(c, 'A');
}

static void on_failed(void *arg, struct treq *r, enum probe_outcome why)
{
    struct rec *c = arg;
    if (r->owner)
        c->held_in_callback = true;
    assert_true(c->fails < 16);
    c->why[c->fails] = why;
    c->failed[c->fails++] = r;
    note(c, 'F');
}

static void on_closed(void *arg, struct stream *s)
{
    struct rec *c = arg;
    assert_false(stream_is_open(s));
    c->closed++;
    c->closed_at = mono();
    note(c, 'C');
}

struct fx {
    struct ev_loop *loop;
    struct rng rng;
    struct stats stats;
    struct flusher fl;
    struct rec rec;
    struct tsink sink;
    struct stream_env env;
    int lfd;                   /* the server's listener */
    struct net_addr addr;
    int sfd;                   /* the accepted connection, -1 before */
    uint8_t in[8192];          /* what the server has read */
    size_t in_len;
    struct stream *s;
};

struct req {
    struct treq r;             /* first: the sink's pointer is the req's */
    uint8_t msg[512];
    struct wire_msg wm;
};

static struct fx *fx_new(double idle)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    rng_init(&f->rng);
    flusher_init(&f->fl, f->loop);
    f->sink = (struct tsink){ on_answer, on_failed, &f->rec };
    f->env = (struct stream_env){ .loop = f->loop, .rng = &f->rng, .stats = &f->stats, .flusher = &f->fl,
                                  .sink = &f->sink, .closed = on_closed, .arg = &f->rec, .idle = idle,
                                  .setup = 1.0, .edns_size = 1232 };
    struct net_addr a;
    loopback(&a, 0);
    f->lfd = net_tcp_listen(&a, 8);
    assert_true(f->lfd >= 0);
    sock_addr(f->lfd, &f->addr);
    f->sfd = -1;
    f->s = stream_new(&f->env, &f->addr, STREAM_TCP, NULL);
    assert_non_null(f->s);
    return f;
}

static void fx_free(struct fx *f)
{
    stream_free(f->s);
    flusher_fini(&f->fl);
    if (f->sfd >= 0)
        close(f->sfd);
    close(f->lfd);
    ev_loop_destroy(f->loop);
    assert_false(f->rec.held_in_callback);
    free(f);
}

static void req_init(struct req *q, const char *name, struct fx *f)
{
    memset(q, 0, sizeof *q);
    q->r.len = make_query(q->msg, 0x4242, name, WIRE_RD, 0);
    assert_int_equal(wire_parse_query(q->msg, q->r.len, &q->wm), WIRE_OK);
    q->r.msg = q->msg;
    q->r.wm = &q->wm;
    q->r.to = &f->addr;
}

static void send_req(struct fx *f, struct req *q)
{
    assert_int_equal(stream_send(f->s, &q->r), 0);
    assert_ptr_equal(q->r.owner, f->s);
}

/* Runs the loop while the server accepts and reads, until it holds `n`
 * whole frames (bounded). Returns how many it holds. */
static unsigned srv_frames(struct fx *f, unsigned n)
{
    double t0 = mono();
    for (;;) {
        if (f->sfd < 0) {
            f->sfd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (f->sfd < 0)
                assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        }
        if (f->sfd >= 0) {
            ssize_t r = recv(f->sfd, f->in + f->in_len, sizeof f->in - f->in_len, MSG_DONTWAIT);
            if (r > 0)
                f->in_len += (size_t)r;
        }
        unsigned have = 0;
        for (size_t off = 0; off + 2 <= f->in_len;) {
            size_t l = wire_get16(f->in + off);
            if (off + 2 + l > f->in_len)
                break;
            have++;
            off += 2 + l;
        }
        if (have >= n || mono() - t0 > 1.0)
            return have;
        run_until(f->loop, 0.005, NULL, NULL);
    }
}

/* Frame `i` the server read: its message and length. */
static const uint8_t *srv_frame(struct fx *f, unsigned i, size_t *len)
{
    size_t off = 0;
    for (unsigned k = 0;; k++) {
        assert_true(off + 2 <= f->in_len);
        size_t l = wire_get16(f->in + off);
        if (k == i) {
            *len = l;
            return f->in + off + 2;
        }
        off += 2 + l;
    }
}

static void srv_write(struct fx *f, const uint8_t *b, size_t n)
{
    assert_int_equal(send(f->sfd, b, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A framed answer to `name` with ID `id` appended to out. */
static void put_answer(uint8_t *out, size_t *off, uint16_t id, const char *name, unsigned n_a)
{
    size_t n = make_answer(out + *off + 2, id, name, 0, n_a);
    wire_put16(out + *off, (uint16_t)n);
    *off += n + 2;
}

struct until { struct rec *c; unsigned answers, fails, closed; };

static bool cond(void *arg)
{
    struct until *u = arg;
    return u->c->answers >= u->answers && u->c->fails >= u->fails && u->c->closed >= u->closed;
}

static void wait_for(struct fx *f, unsigned answers, unsigned fails, unsigned closed, double max)
{
    struct until u = { &f->rec, answers, fails, closed };
    run_until(f->loop, max, cond, &u);
}

/* ---- tests ------------------------------------------------------------- */

/* Requests queued before the connection is up all leave on it, each with
 * an ID of its own; answers in reverse order reach their own requests. */
static void test_pipelined_reordered(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    const char *names[3] = { "a.example.org", "b.example.org", "c.example.org" };
    struct req q[3];
    for (int i = 0; i < 3; i++) {
        req_init(&q[i], names[i], f);
        send_req(f, &q[i]);
    }
    assert_false(stream_is_open(f->s));
    assert_int_equal(stream_inflight(f->s), 3);
    assert_int_equal(srv_frames(f, 3), 3);
    assert_true(stream_is_open(f->s));
    for (int i = 0; i < 3; i++) {
        size_t len;
        const uint8_t *m = srv_frame(f, (unsigned)i, &len);
        assert_int_equal(len, q[i].r.len);
        assert_int_equal(wire_get16(m), q[i].r.id);
        assert_memory_equal(m + 2, q[i].msg + 2, len - 2);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(q[i].r.id, q[j].r.id);
    }
    uint8_t out[2048];
    size_t off = 0;
    for (int i = 3; i-- > 0;)
        put_answer(out, &off, q[i].r.id, names[i], 1);
    srv_write(f, out, off);
    wait_for(f, 3, 0, 0, 1.0);
    assert_int_equal(f->rec.answers, 3);
    for (int k = 0; k < 3; k++)
        assert_ptr_equal(f->rec.answered[k], &q[2 - k].r);
    assert_int_equal(stream_inflight(f->s), 0);
    assert_int_equal(f->stats.upstream_tcp, 3);
    assert_int_equal(f->rec.closed, 0);
    fx_free(f);
}

/* Under the right ID, another question is not the answer; an unknown ID
 * is dropped; neither closes the connection. */
static void test_wrong_question_and_unknown_id(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q;
    req_init(&q, "www.example.org", f);
    send_req(f, &q);
    assert_int_equal(srv_frames(f, 1), 1);
    uint8_t out[1024];
    size_t off = 0;
    put_answer(out, &off, q.r.id, "www.example.com", 1);
    put_answer(out, &off, (uint16_t)(q.r.id ^ 0x8001), "www.example.org", 1);
    srv_write(f, out, off);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, 0);
    assert_int_equal(f->stats.spoofed_question, 1);
    assert_int_equal(f->stats.spoofed_id, 1);
    assert_ptr_equal(q.r.owner, f->s);
    assert_true(stream_is_open(f->s));
    off = 0;
    put_answer(out, &off, q.r.id, "www.example.org", 1);
    srv_write(f, out, off);
    wait_for(f, 1, 0, 0, 1.0);
    assert_int_equal(f->rec.answers, 1);
    assert_int_equal(f->rec.closed, 0);
    fx_free(f);
}

/* A reset fails every request still waiting, after the owner was told;
 * the stream is dead for good. */
static void test_reset_fails_all(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q[3];
    for (int i = 0; i < 3; i++) {
        req_init(&q[i], "www.example.org", f);
        send_req(f, &q[i]);
    }
    assert_int_equal(srv_frames(f, 3), 3);
    /* One is answered first: it must not come back as failed. */
    uint8_t out[512];
    size_t off = 0;
    put_answer(out, &off, q[1].r.id, "www.example.org", 1);
    srv_write(f, out, off);
    wait_for(f, 1, 0, 0, 1.0);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    assert_int_equal(setsockopt(f->sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(f->sfd);
    f->sfd = -1;
    wait_for(f, 1, 2, 1, 1.0);
    assert_int_equal(f->rec.closed, 1);
    assert_int_equal(f->rec.fails, 2);
    assert_string_equal(f->rec.order, "ACFF");
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(f->rec.why[i], PROBE_RESET);
        assert_true(f->rec.failed[i] == &q[0].r || f->rec.failed[i] == &q[2].r);
        assert_null(f->rec.failed[i]->owner);
    }
    assert_ptr_not_equal(f->rec.failed[0], f->rec.failed[1]);
    assert_int_equal(f->stats.upstream_errors, 2);
    assert_int_equal(stream_inflight(f->s), 0);
    struct req late;
    req_init(&late, "www.example.org", f);
    assert_int_equal(stream_send(f->s, &late.r), -1);
    assert_null(late.r.owner);
    fx_free(f);
}

/* The server closing with a request outstanding fails it as a clean close. */
static void test_server_close_fails_outstanding(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q;
    req_init(&q, "www.example.org", f);
    send_req(f, &q);
    assert_int_equal(srv_frames(f, 1), 1);
    close(f->sfd);
    f->sfd = -1;
    wait_for(f, 0, 1, 1, 1.0);
    assert_int_equal(f->rec.fails, 1);
    assert_int_equal(f->rec.why[0], PROBE_CLOSED_CLEAN);
    assert_string_equal(f->rec.order, "CF");
    fx_free(f);
}

/* Garbage on the stream: it cannot be trusted to stay in sync, so every
 * request fails with BAD_ANSWER. */
static void test_garbage_fails_all(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q[2];
    for (int i = 0; i < 2; i++) {
        req_init(&q[i], "www.example.org", f);
        send_req(f, &q[i]);
    }
    assert_int_equal(srv_frames(f, 2), 2);
    uint8_t junk[2 + WIRE_HDR_LEN] = { 0, WIRE_HDR_LEN };
    wire_put16(junk + 2, q[0].r.id);
    wire_put16(junk + 4, WIRE_QR);
    wire_put16(junk + 6, 1); /* QDCOUNT 1 and no question: garbage */
    srv_write(f, junk, sizeof junk);
    wait_for(f, 0, 2, 1, 1.0);
    assert_int_equal(f->rec.fails, 2);
    assert_int_equal(f->rec.why[0], PROBE_BAD_ANSWER);
    assert_int_equal(f->rec.why[1], PROBE_BAD_ANSWER);
    assert_int_equal(f->stats.upstream_malformed, 1);
    fx_free(f);
}

/* A message with no question under a waiting ID (a zone transfer's later
 * message, RFC 5936 2.2) answers nothing on a shared connection: dropped,
 * and the connection and its requests live on. */
static void test_no_question_dropped(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q;
    req_init(&q, "www.example.org", f);
    send_req(f, &q);
    assert_int_equal(srv_frames(f, 1), 1);
    uint8_t junk[2 + WIRE_HDR_LEN] = { 0, WIRE_HDR_LEN };
    wire_put16(junk + 2, q.r.id);
    wire_put16(junk + 4, WIRE_QR);
    srv_write(f, junk, sizeof junk);
    wait_for(f, 1, 0, 0, 0.1);
    assert_int_equal(f->rec.fails, 0);
    assert_int_equal(f->rec.answers, 0);
    assert_int_equal(f->stats.spoofed_question, 1);
    assert_int_equal(f->stats.upstream_malformed, 0);
    assert_true(q.r.owner != NULL);
    fx_free(f);
}

/* Idle: the connection closes `idle` after its last answer, not before,
 * and not while a request waits however long that takes. */
static void test_idle_close(void **state)
{
    (void)state;
    const double idle = 0.1;
    struct fx *f = fx_new(idle);
    struct req q;
    req_init(&q, "www.example.org", f);
    send_req(f, &q);
    assert_int_equal(srv_frames(f, 1), 1);
    run_until(f->loop, idle * 2.5, NULL, NULL);
    assert_int_equal(f->rec.closed, 0); /* waiting is not idle */
    uint8_t out[512];
    size_t off = 0;
    put_answer(out, &off, q.r.id, "www.example.org", 1);
    srv_write(f, out, off);
    wait_for(f, 1, 0, 0, 1.0);
    double answered_at = mono();
    wait_for(f, 1, 0, 1, 2.0);
    assert_int_equal(f->rec.closed, 1);
    double after = f->rec.closed_at - answered_at;
    assert_true(after >= idle * 0.8);
    assert_true(after < idle + 0.3);
    assert_int_equal(f->rec.fails, 0);
    assert_string_equal(f->rec.order, "AC");
    /* The server sees the close. */
    assert_true(wait_readable(f->sfd, 500));
    uint8_t b;
    assert_int_equal(recv(f->sfd, &b, 1, MSG_DONTWAIT), 0);
    fx_free(f);
}

/* Nobody listens on the port: the request fails as a refused connect. */
static void test_connect_refused(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    /* A TCP socket bound but not listening holds the port: connects get RST. */
    int hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(hold >= 0);
    struct net_addr a;
    loopback(&a, 0);
    assert_int_equal(bind(hold, &a.u.sa, a.len), 0);
    sock_addr(hold, &a);
    struct stream *s = stream_new(&f->env, &a, STREAM_TCP, NULL);
    assert_non_null(s);
    struct req q;
    req_init(&q, "www.example.org", f);
    q.r.to = &a;
    int r = stream_send(s, &q.r);
    if (r == 0) {
        wait_for(f, 0, 1, 1, 1.0);
        assert_int_equal(f->rec.fails, 1);
        assert_int_equal(f->rec.why[0], PROBE_CONNECT_REFUSED);
        assert_int_equal(f->rec.closed, 1);
    } else {
        /* Refused within connect() itself: a failed try, no callback. */
        assert_null(q.r.owner);
        assert_int_equal(f->rec.fails, 0);
    }
    stream_free(s);
    close(hold);
    fx_free(f);
}

/* A cancelled request is forgotten: its answer is an unknown ID, and the
 * other request on the connection is unaffected. */
static void test_cancel(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q[2];
    for (int i = 0; i < 2; i++) {
        req_init(&q[i], "www.example.org", f);
        send_req(f, &q[i]);
    }
    assert_int_equal(srv_frames(f, 2), 2);
    stream_cancel(f->s, &q[0].r);
    assert_null(q[0].r.owner);
    assert_int_equal(stream_inflight(f->s), 1);
    uint8_t out[1024];
    size_t off = 0;
    put_answer(out, &off, q[0].r.id, "www.example.org", 1);
    put_answer(out, &off, q[1].r.id, "www.example.org", 1);
    srv_write(f, out, off);
    wait_for(f, 1, 0, 0, 1.0);
    run_until(f->loop, 0.02, NULL, NULL);
    assert_int_equal(f->rec.answers, 1);
    assert_ptr_equal(f->rec.answered[0], &q[1].r);
    assert_int_equal(f->stats.spoofed_id, 1);
    fx_free(f);
}

/* Freeing a live stream (shutdown) fails what waits, without telling the
 * owner, which is the one freeing it. */
static void test_free_live_fails_waiting(void **state)
{
    (void)state;
    struct fx *f = fx_new(5);
    struct req q;
    req_init(&q, "www.example.org", f);
    send_req(f, &q);
    assert_int_equal(srv_frames(f, 1), 1);
    stream_free(f->s);
    f->s = NULL;
    assert_int_equal(f->rec.fails, 1);
    assert_int_equal(f->rec.why[0], PROBE_LOCAL_ERROR);
    assert_int_equal(f->rec.closed, 0);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_reordered),
        cmocka_unit_test(test_wrong_question_and_unknown_id),
        cmocka_unit_test(test_reset_fails_all),
        cmocka_unit_test(test_server_close_fails_outstanding),
        cmocka_unit_test(test_garbage_fails_all),
        cmocka_unit_test(test_no_question_dropped),
        cmocka_unit_test(test_idle_close),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_free_live_fails_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
