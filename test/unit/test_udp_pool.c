/* test/unit/test_udp_pool.c: the upstream UDP pool on real sockets. The
 * "server" is a UDP socket the test binds on 127.0.0.1 and reads and
 * writes itself; nothing else is ever addressed. Checks what an answer
 * must match (socket, source address and port, ID, question), what is sent
 * (our EDNS size, hop options gone, or byte for byte), socket replacement,
 * and that the pool never reports a loss itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/flush.h"
#include "lib/rng.h"
#include "proxy/stats.h"
#include "proxy/udp_pool.h"
#include "test/unit/scenario.h"

#define EDNS_OURS 1232

/* ---- the sink ---------------------------------------------------------- */

struct got {
    struct treq *r;
    uint16_t id;          /* of the answer as the sink saw it */
    char qname[256];
    uint16_t ancount;
};

struct rec {
    unsigned answers, fails;
    struct got got[256];
    bool held_in_callback; /* a callback saw a request still held */
};

static void on_answer(void *arg, struct treq *r, uint8_t *msg, size_t len, const struct wire_msg *wm)
{
    struct rec *c = arg;
    if (r->owner)
        c->held_in_callback = true;
    assert_true(c->answers < 256);
    struct got *g = &c->got[c->answers++];
    g->r = r;
    g->id = wm->id;
    g->ancount = wm->ancount;
    msg_qname(msg, len, g->qname, sizeof g->qname);
}

static void on_failed(void *arg, struct treq *r, enum probe_outcome why)
{
    struct rec *c = arg;
    (void)r;
    (void)why;
    c->fails++;
}

/* ---- the fixture ------------------------------------------------------- */

struct fx {
    struct ev_loop *loop;
    struct rng rng;
    struct stats stats;
    struct flusher fl;
    struct rec rec;
    struct tsink sink;
    struct udp_pool *pool;
    int srv;                 /* the server's socket */
    struct net_addr srv_addr;
};

/* A request to the server: owns its message. */
struct req {
    struct treq r;
    uint8_t msg[512];
    struct wire_msg wm;
};

static struct fx *fx_new(unsigned sockets, unsigned uses)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    rng_init(&f->rng);
    flusher_init(&f->fl, f->loop);
    f->sink = (struct tsink){ on_answer, on_failed, &f->rec };
    struct udp_pool_opts o = { .sockets = sockets, .socket_uses = uses, .edns_size = EDNS_OURS };
    f->pool = udp_pool_new(f->loop, &f->rng, &f->stats, &f->fl, &f->sink, &o);
    assert_non_null(f->pool);
    struct net_addr a;
    loopback(&a, 0);
    f->srv = net_udp_bind(&a);
    assert_true(f->srv >= 0);
    sock_addr(f->srv, &f->srv_addr);
    return f;
}

static void fx_free(struct fx *f)
{
    udp_pool_free(f->pool);
    flusher_fini(&f->fl);
    close(f->srv);
    ev_loop_destroy(f->loop);
    assert_false(f->rec.held_in_callback);
    free(f);
}

static void req_init(struct fx *f, struct req *q, const char *name, unsigned edns)
{
    memset(q, 0, sizeof *q);
    q->r.len = make_query(q->msg, 0x4242, name, WIRE_RD, edns);
    assert_int_equal(wire_parse_query(q->msg, q->r.len, &q->wm), WIRE_OK);
    q->r.msg = q->msg;
    q->r.wm = &q->wm;
    q->r.to = &f->srv_addr;
}

static void send_req(struct fx *f, struct req *q)
{
    assert_int_equal(udp_pool_send(f->pool, &q->r), 0);
    assert_non_null(q->r.owner);
}

/* What the server received next (the queued batch is flushed first). */
static size_t srv_recv(struct fx *f, uint8_t *buf, size_t cap, struct net_addr *from)
{
    flusher_run(&f->fl);
    assert_true(wait_readable(f->srv, 1000));
    from->len = sizeof from->u.ss;
    ssize_t n = recvfrom(f->srv, buf, cap, 0, &from->u.sa, &from->len);
    assert_true(n > 0);
    return (size_t)n;
}

static void send_from(int fd, const struct net_addr *to, const uint8_t *msg, size_t len)
{
    assert_int_equal(sendto(fd, msg, len, 0, &to->u.sa, to->len), (ssize_t)len);
}

static bool answered(void *arg) { return ((struct rec *)arg)->answers > 0; }

/* Lets the pool read what arrived (at most `max` s, or until an answer). */
static void settle(struct fx *f, double max)
{
    run_until(f->loop, max, answered, &f->rec);
}

/* ---- tests ------------------------------------------------------------- */

static void test_answer_matched(void **state)
{
    (void)state;
    struct fx *f = fx_new(4, 100);
    struct req q;
    req_init(f, &q, "www.example.org", 4096);
    send_req(f, &q);
    uint8_t buf[4096];
    struct net_addr from;
    size_t n = srv_recv(f, buf, sizeof buf, &from);
    /* Our ID on the wire, our EDNS size in the client's OPT, the rest as it came. */
    assert_int_equal(n, q.r.len);
    assert_int_equal(wire_get16(buf), q.r.id);
    struct wire_msg wm;
    assert_int_equal(wire_parse_query(buf, n, &wm), WIRE_OK);
    assert_true(wm.has_opt);
    assert_int_equal(wm.edns_udp_size, EDNS_OURS);
    assert_true(wire_same_question(buf, &wm, q.msg, &q.wm));
    assert_int_equal(f->stats.upstream_udp, 1);
    assert_int_equal(f->rec.answers, 0);

    uint8_t a[512];
    size_t alen = make_answer(a, q.r.id, "www.example.org", 0, 2);
    send_from(f->srv, &from, a, alen);
    settle(f, 1.0);
    assert_int_equal(f->rec.answers, 1);
    assert_ptr_equal(f->rec.got[0].r, &q.r);
    assert_int_equal(f->rec.got[0].ancount, 2);
    assert_null(q.r.owner);
    /* The same answer again has nothing to go to. */
    send_from(f->srv, &from, a, alen);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, 1);
    assert_int_equal(f->stats.spoofed_id, 1);
    fx_free(f);
}

static void test_spoofed_id_dropped(void **state)
{
    (void)state;
    struct fx *f = fx_new(4, 100);
    struct req q;
    req_init(f, &q, "www.example.org", 0);
    send_req(f, &q);
    uint8_t buf[4096], a[512];
    struct net_addr from;
    srv_recv(f, buf, sizeof buf, &from);
    size_t alen = make_answer(a, (uint16_t)(q.r.id ^ 0x0101), "www.example.org", 0, 1);
    send_from(f->srv, &from, a, alen);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, 0);
    assert_int_equal(f->stats.spoofed_id, 1);
    assert_non_null(q.r.owner); /* still waiting */
    alen = make_answer(a, q.r.id, "www.example.org", 0, 1);
    send_from(f->srv, &from, a, alen);
    settle(f, 1.0);
    assert_int_equal(f->rec.answers, 1);
    fx_free(f);
}

/* The right ID and question from another port of the same IP is not the
 * server: dropped. */
static void test_wrong_source_dropped(void **state)
{
    (void)state;
    struct fx *f = fx_new(4, 100);
    struct req q;
    req_init(f, &q, "www.example.org", 0);
    send_req(f, &q);
    uint8_t buf[4096], a[512];
    struct net_addr from;
    srv_recv(f, buf, sizeof buf, &from);
    struct net_addr any;
    loopback(&any, 0);
    int other = net_udp_bind(&any);
    assert_true(other >= 0);
    size_t alen = make_answer(a, q.r.id, "www.example.org", 0, 1);
    send_from(other, &from, a, alen);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, 0);
    assert_int_equal(f->stats.spoofed_source, 1);
    send_from(f->srv, &from, a, alen);
    settle(f, 1.0);
    assert_int_equal(f->rec.answers, 1);
    close(other);
    fx_free(f);
}

/* Another question, or garbage, under the right ID and source: dropped,
 * and the request keeps waiting for the real answer. */
static void test_wrong_question_and_garbage_dropped(void **state)
{
    (void)state;
    struct fx *f = fx_new(4, 100);
    struct req q;
    req_init(f, &q, "www.example.org", 0);
    send_req(f, &q);
    uint8_t buf[4096], a[512];
    struct net_addr from;
    srv_recv(f, buf, sizeof buf, &from);
    size_t alen = make_answer(a, q.r.id, "www.example.com", 0, 1);
    send_from(f->srv, &from, a, alen);
    uint8_t junk[WIRE_HDR_LEN] = { 0 };
    wire_put16(junk, q.r.id);
    wire_put16(junk + 2, WIRE_QR);
    send_from(f->srv, &from, junk, 5);            /* shorter than a header */
    send_from(f->srv, &from, junk, sizeof junk);  /* a header without a question: answers nothing */
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, 0);
    assert_int_equal(f->stats.spoofed_question, 2);
    assert_int_equal(f->stats.upstream_malformed, 1);
    /* Letter case does not make another question (0x20). */
    alen = make_answer(a, q.r.id, "WWW.example.ORG", 0, 1);
    send_from(f->srv, &from, a, alen);
    settle(f, 1.0);
    assert_int_equal(f->rec.answers, 1);
    assert_int_equal(f->rec.fails, 0);
    fx_free(f);
}

/* A lost datagram is the caller's timeout: the pool reports nothing, and
 * holds the request until it is cancelled; after that its ID is unknown. */
static void test_no_failure_reported_then_cancel(void **state)
{
    (void)state;
    struct fx *f = fx_new(4, 100);
    struct req q;
    req_init(f, &q, "www.example.org", 0);
    send_req(f, &q);
    uint8_t buf[4096], a[512];
    struct net_addr from;
    srv_recv(f, buf, sizeof buf, &from);
    run_until(f->loop, 0.2, NULL, NULL);
    assert_int_equal(f->rec.fails, 0);
    assert_int_equal(f->rec.answers, 0);
    assert_non_null(q.r.owner);
    udp_pool_cancel(f->pool, &q.r);
    assert_null(q.r.owner);
    udp_pool_cancel(f->pool, &q.r); /* twice is harmless */
    size_t alen = make_answer(a, q.r.id, "www.example.org", 0, 1);
    send_from(f->srv, &from, a, alen);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, 0);
    assert_int_equal(f->stats.spoofed_id, 1);
    fx_free(f);
}

/* Many requests of one loop iteration: one socket, each ID once, and
 * answers in reverse order each reach their own request. */
static void test_batch_unique_ids_reordered(void **state)
{
    (void)state;
    enum { N = 100 };
    struct fx *f = fx_new(1, 1000);
    static struct req q[N];
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "n%d.example.org", i);
        req_init(f, &q[i], name, 0);
        send_req(f, &q[i]);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_int_not_equal(q[i].r.id, q[j].r.id);
    uint8_t buf[4096], a[512];
    struct net_addr from[N];
    for (int i = 0; i < N; i++) {
        size_t n = srv_recv(f, buf, sizeof buf, &from[i]);
        assert_true(n > WIRE_HDR_LEN);
        assert_true(net_addr_equal(&from[i], &from[0])); /* one socket */
    }
    for (int i = N; i-- > 0;) {
        snprintf(name, sizeof name, "n%d.example.org", i);
        size_t alen = make_answer(a, q[i].r.id, name, 0, (unsigned)(i % 3));
        send_from(f->srv, &from[0], a, alen);
    }
    double t0 = mono();
    while (f->rec.answers < N && mono() - t0 < 2.0)
        run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->rec.answers, N);
    for (unsigned k = 0; k < N; k++) {
        struct got *g = &f->rec.got[k];
        struct req *r = (struct req *)g->r; /* treq is the first member */
        int i = (int)(r - q);
        assert_true(i >= 0 && i < N);
        snprintf(name, sizeof name, "n%d.example.org.", i);
        assert_string_equal(g->qname, name);
        assert_int_equal(g->id, r->r.id);
        assert_int_equal(g->ancount, (unsigned)(i % 3));
    }
    assert_int_equal(f->stats.spoofed_id + f->stats.spoofed_question + f->stats.spoofed_source, 0);
    fx_free(f);
}

/* After `socket_uses` requests a socket is replaced: the next request
 * leaves from another port, and the old socket still takes the answer of
 * the request that waits on it. */
static void test_socket_replaced_keeps_pending(void **state)
{
    (void)state;
    struct fx *f = fx_new(1, 1);
    struct req q1, q2;
    req_init(f, &q1, "one.example.org", 0);
    req_init(f, &q2, "two.example.org", 0);
    uint8_t buf[4096], a[512];
    struct net_addr from1, from2;
    send_req(f, &q1);
    srv_recv(f, buf, sizeof buf, &from1);
    send_req(f, &q2);
    srv_recv(f, buf, sizeof buf, &from2);
    assert_false(net_addr_equal(&from1, &from2));
    /* An answer for q2 sent to q1's socket is not taken there. */
    size_t alen = make_answer(a, q2.r.id, "two.example.org", 0, 1);
    send_from(f->srv, &from1, a, alen);
    alen = make_answer(a, q1.r.id, "one.example.org", 0, 1);
    send_from(f->srv, &from1, a, alen);
    settle(f, 1.0);
    assert_int_equal(f->rec.answers, 1);
    assert_ptr_equal(f->rec.got[0].r, &q1.r);
    alen = make_answer(a, q2.r.id, "two.example.org", 0, 1);
    send_from(f->srv, &from2, a, alen);
    double t0 = mono();
    while (f->rec.answers < 2 && mono() - t0 < 1.0)
        run_until(f->loop, 0.02, NULL, NULL);
    assert_int_equal(f->rec.answers, 2);
    assert_ptr_equal(f->rec.got[1].r, &q2.r);
    fx_free(f);
}

/* A query with an OPT carrying Padding (a per-hop option): over plain UDP
 * the option goes and our size replaces the client's; verbatim, the bytes
 * leave as they came, only the ID changes. */
static void test_hop_options_and_verbatim(void **state)
{
    (void)state;
    struct fx *f = fx_new(2, 100);
    struct mb m;
    mb_hdr(&m, 0x5555, WIRE_RD, 1, 0, 0, 1);
    mb_name(&m, "www.example.org");
    mb_u16(&m, T_A);
    mb_u16(&m, WIRE_CLASS_IN);
    mb_u8(&m, 0);
    mb_u16(&m, WIRE_TYPE_OPT);
    mb_u16(&m, 4096);
    mb_u32(&m, 0);
    mb_u16(&m, 4 + 8);
    mb_u16(&m, WIRE_EDNS_PADDING);
    mb_u16(&m, 8);
    for (int i = 0; i < 8; i++)
        mb_u8(&m, 0);
    for (int verbatim = 0; verbatim < 2; verbatim++) {
        struct req q;
        memset(&q, 0, sizeof q);
        memcpy(q.msg, m.b, m.n);
        q.r.len = m.n;
        assert_int_equal(wire_parse_query(q.msg, q.r.len, &q.wm), WIRE_OK);
        assert_true(q.wm.hop_options);
        q.r.msg = q.msg;
        q.r.wm = &q.wm;
        q.r.to = &f->srv_addr;
        q.r.verbatim = verbatim;
        send_req(f, &q);
        uint8_t buf[4096];
        struct net_addr from;
        size_t n = srv_recv(f, buf, sizeof buf, &from);
        struct wire_msg wm;
        assert_int_equal(wire_parse_query(buf, n, &wm), WIRE_OK);
        assert_int_equal(wire_get16(buf), q.r.id);
        if (verbatim) {
            assert_int_equal(n, m.n);
            assert_memory_equal(buf + 2, m.b + 2, n - 2);
            assert_int_equal(wm.edns_udp_size, 4096);
        } else {
            assert_int_equal(n, m.n - 12);
            assert_false(wm.hop_options);
            assert_int_equal(wm.edns_udp_size, EDNS_OURS);
        }
        udp_pool_cancel(f->pool, &q.r);
    }
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_matched),
        cmocka_unit_test(test_spoofed_id_dropped),
        cmocka_unit_test(test_wrong_source_dropped),
        cmocka_unit_test(test_wrong_question_and_garbage_dropped),
        cmocka_unit_test(test_no_failure_reported_then_cancel),
        cmocka_unit_test(test_batch_unique_ids_reordered),
        cmocka_unit_test(test_socket_replaced_keeps_pending),
        cmocka_unit_test(test_hop_options_and_verbatim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
