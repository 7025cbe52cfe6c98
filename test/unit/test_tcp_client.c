/* test/unit/test_tcp_client.c: clients' TCP connections through the set's
 * interface. Each client is one end of a socketpair the test holds (the
 * set gets the other end and a made-up peer address on 127.0.0.1); the
 * test plays the query pool behind `recv` and answers through the
 * client_ops it is handed, immediately or later, in any order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "proxy/query.h"
#include "proxy/stats.h"
#include "proxy/tcp_client.h"
#include "test/unit/scenario.h"

#define MAX_MSGS 128

/* ---- the query pool's side --------------------------------------------- */

struct held {
    struct client c;
    uint8_t msg[512];
    size_t len;
    bool answered;
};

struct pool {
    unsigned got;
    struct held h[MAX_MSGS];
    bool answer_at_once;
};

/* Answers as the pool does: the query's ID, QR set, then done. */
static void answer(struct held *h)
{
    assert_false(h->answered);
    uint8_t a[512];
    memcpy(a, h->msg, h->len);
    wire_put16(a + 2, wire_get16(a + 2) | WIRE_QR);
    h->c.ops->send(&h->c, a, h->len);
    h->c.ops->done(h->c.conn);
    h->answered = true;
}

static void on_recv(void *arg, const struct client *c, const uint8_t *msg, size_t len)
{
    struct pool *p = arg;
    assert_true(p->got < MAX_MSGS);
    assert_true(c->ops->stream);
    struct held *h = &p->h[p->got++];
    h->c = *c;
    assert_true(len <= sizeof h->msg);
    memcpy(h->msg, msg, len);
    h->len = len;
    if (p->answer_at_once) {
        answer(h);
    } else {
        c->ops->ref(c->conn); /* as a query in flight does */
    }
}

/* A held query's answer: sent, and its reference dropped. */
static void answer_later(struct held *h)
{
    answer(h);
    h->c.ops->unref(h->c.conn);
}

/* ---- the fixture ------------------------------------------------------- */

struct fx {
    struct ev_loop *loop;
    struct stats stats;
    struct pool pool;
    struct tcp_clients *set;
};

static struct fx *fx_new(unsigned max, unsigned per_source, double idle, double io)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    struct tcp_clients_opts o = { .max = max, .per_source = per_source, .idle = idle, .io = io };
    f->set = tcp_clients_new(f->loop, &f->stats, NULL, &o, on_recv, &f->pool, 1);
    assert_non_null(f->set);
    return f;
}

static void fx_free(struct fx *f)
{
    tcp_clients_free(f->set);
    ev_loop_destroy(f->loop);
    free(f);
}

/* A new client from `ip`: returns the test's end of the connection. */
static int connect_client(struct fx *f, const char *ip, uint16_t port)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct net_addr peer;
    assert_int_equal(net_addr_parse(ip, port, &peer), 0);
    tcp_clients_accept(f->set, sv[0], &peer, NULL);
    return sv[1];
}

static void put_frame(uint8_t *out, size_t *off, uint16_t id, const char *name)
{
    size_t n = make_query(out + *off + 2, id, name, WIRE_RD, 0);
    wire_put16(out + *off, (uint16_t)n);
    *off += n + 2;
}

/* The framed size of a query (and of its answer here) for a name of 13
 * characters such as "a.example.org". */
static int frame13(void)
{
    uint8_t b[512];
    return (int)make_query(b, 0, "a.example.org", WIRE_RD, 0) + 2;
}

static void write_all(int fd, const uint8_t *b, size_t n)
{
    assert_int_equal(write(fd, b, n), (ssize_t)n);
}

struct until { struct fx *f; unsigned got; int fd; int bytes; bool gone; };

static bool cond(void *arg)
{
    struct until *u = arg;
    if (u->f->pool.got < u->got)
        return false;
    if (u->bytes > 0) {
        int avail = 0;
        if (ioctl(u->fd, FIONREAD, &avail) < 0 || avail < u->bytes)
            return false;
    }
    return !u->gone || tcp_clients_count(u->f->set) == 0;
}

static void wait_msgs(struct fx *f, unsigned n)
{
    struct until u = { f, n, -1, 0, false };
    run_until(f->loop, 1.0, cond, &u);
    assert_int_equal(f->pool.got, n);
}

static void wait_bytes(struct fx *f, int fd, int bytes)
{
    struct until u = { f, 0, fd, bytes, false };
    run_until(f->loop, 1.0, cond, &u);
}

static double wait_gone(struct fx *f, double max)
{
    struct until u = { f, 0, -1, 0, true };
    return run_until(f->loop, max, cond, &u);
}

/* Reads one framed answer the set has written (the loop already ran). */
static uint16_t read_answer_id(int fd)
{
    uint8_t hdr[2], msg[512];
    assert_true(wait_readable(fd, 500));
    assert_int_equal(recv(fd, hdr, 2, MSG_WAITALL), 2);
    size_t n = wire_get16(hdr);
    assert_true(n >= WIRE_HDR_LEN && n <= sizeof msg);
    assert_int_equal(recv(fd, msg, n, MSG_WAITALL), (ssize_t)n);
    assert_true(wire_get16(msg + 2) & WIRE_QR);
    return wire_get16(msg);
}

static bool at_eof(int fd)
{
    if (!wait_readable(fd, 500))
        return false;
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* ---- tests ------------------------------------------------------------- */

/* Frames in any packaging (two in one write, one split over two) come out
 * as whole messages; answers leave framed, in the order they are ready. */
static void test_framing_and_completion_order(void **state)
{
    (void)state;
    struct fx *f = fx_new(8, 8, 5, 1);
    int fd = connect_client(f, "127.0.0.1", 40001);
    uint8_t buf[2048];
    size_t off = 0;
    put_frame(buf, &off, 0x0101, "a.example.org");
    put_frame(buf, &off, 0x0202, "b.example.org");
    size_t split = off + 7;
    put_frame(buf, &off, 0x0303, "c.example.org");
    write_all(fd, buf, split);
    wait_msgs(f, 2);
    write_all(fd, buf + split, off - split);
    wait_msgs(f, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(wire_get16(f->pool.h[i].msg), 0x0101 * (i + 1));
        char name[64];
        msg_qname(f->pool.h[i].msg, f->pool.h[i].len, name, sizeof name);
        assert_int_equal(name[0], 'a' + (int)i);
    }
    assert_int_equal(f->stats.queries_tcp, 3);
    answer_later(&f->pool.h[2]);
    answer_later(&f->pool.h[0]);
    answer_later(&f->pool.h[1]);
    wait_bytes(f, fd, 3 * frame13());
    assert_int_equal(read_answer_id(fd), 0x0303);
    assert_int_equal(read_answer_id(fd), 0x0101);
    assert_int_equal(read_answer_id(fd), 0x0202);
    assert_int_equal(tcp_clients_count(f->set), 1);
    close(fd);
    fx_free(f);
}

/* A client that sends its queries and half-closes still gets every
 * answer, then the connection closes. */
static void test_half_close_gets_answers(void **state)
{
    (void)state;
    struct fx *f = fx_new(8, 8, 5, 1);
    int fd = connect_client(f, "127.0.0.1", 40002);
    uint8_t buf[1024];
    size_t off = 0;
    put_frame(buf, &off, 0x1111, "a.example.org");
    put_frame(buf, &off, 0x2222, "b.example.org");
    write_all(fd, buf, off);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    wait_msgs(f, 2);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(tcp_clients_count(f->set), 1); /* owes two answers */
    answer_later(&f->pool.h[1]);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(tcp_clients_count(f->set), 1); /* still owes one */
    answer_later(&f->pool.h[0]);
    wait_gone(f, 1.0);
    assert_int_equal(tcp_clients_count(f->set), 0);
    assert_int_equal(read_answer_id(fd), 0x2222);
    assert_int_equal(read_answer_id(fd), 0x1111);
    assert_true(at_eof(fd));
    close(fd);
    fx_free(f);
}

/* A message begun must arrive whole within the io timeout of its first
 * byte: a partial one closes the client then, not before. */
static void test_partial_message_times_out(void **state)
{
    (void)state;
    const double io = 0.15;
    struct fx *f = fx_new(8, 8, 5, io);
    int fd = connect_client(f, "127.0.0.1", 40003);
    uint8_t part[3] = { 0, 30, 0 };
    write_all(fd, part, sizeof part);
    double took = wait_gone(f, 2.0);
    assert_int_equal(tcp_clients_count(f->set), 0);
    assert_true(took >= io * 0.9);
    assert_true(took < io + 0.3);
    assert_int_equal(f->stats.tcp_clients_timed_out, 1);
    assert_int_equal(f->pool.got, 0);
    assert_true(at_eof(fd));
    close(fd);
    fx_free(f);
}

/* Queries answer after their client has gone: the connection's memory
 * lives as long as the queries' references (ASan would see the rest). */
static void test_answer_after_client_gone(void **state)
{
    (void)state;
    struct fx *f = fx_new(8, 8, 5, 1);
    int fd = connect_client(f, "127.0.0.1", 40004);
    uint8_t buf[512];
    size_t off = 0;
    put_frame(buf, &off, 0x4444, "a.example.org");
    write_all(fd, buf, off);
    wait_msgs(f, 1);
    close(fd);
    tcp_clients_free(f->set); /* as at shutdown, with the query still in flight */
    f->set = NULL;
    answer_later(&f->pool.h[0]); /* sends nothing, frees the connection */
    assert_int_equal(f->stats.send_errors, 0);
    ev_loop_destroy(f->loop);
    free(f);
}

/* At most per_source connections from one IP; others still get in. */
static void test_per_source_limit(void **state)
{
    (void)state;
    struct fx *f = fx_new(8, 1, 5, 1);
    int a = connect_client(f, "127.0.0.1", 40005);
    int b = connect_client(f, "127.0.0.1", 40006);
    int c = connect_client(f, "127.0.0.2", 40007);
    assert_int_equal(tcp_clients_count(f->set), 2);
    assert_int_equal(f->stats.tcp_clients_rejected, 1);
    assert_true(at_eof(b));
    /* The one that got in from the same IP is served. */
    f->pool.answer_at_once = true;
    uint8_t buf[512];
    size_t off = 0;
    put_frame(buf, &off, 0x5555, "a.example.org");
    write_all(a, buf, off);
    wait_msgs(f, 1);
    wait_bytes(f, a, frame13());
    assert_int_equal(read_answer_id(a), 0x5555);
    /* When it leaves, its source may connect again. */
    close(a);
    run_until(f->loop, 0.1, NULL, NULL);
    assert_int_equal(tcp_clients_count(f->set), 1);
    int d = connect_client(f, "127.0.0.1", 40008);
    assert_int_equal(tcp_clients_count(f->set), 2);
    assert_int_equal(f->stats.tcp_clients_rejected, 1);
    close(b);
    close(c);
    close(d);
    fx_free(f);
}

/* Full: an idle client makes room for a new one; a busy one does not. */
static void test_full_evicts_idle_not_busy(void **state)
{
    (void)state;
    struct fx *f = fx_new(1, 4, 5, 1);
    int a = connect_client(f, "127.0.0.1", 40009);
    run_until(f->loop, 0.02, NULL, NULL);
    int b = connect_client(f, "127.0.0.1", 40010);
    assert_int_equal(f->stats.tcp_clients_evicted, 1);
    assert_int_equal(tcp_clients_count(f->set), 1);
    assert_true(at_eof(a));
    /* b owes an answer: the next one is turned away. */
    uint8_t buf[512];
    size_t off = 0;
    put_frame(buf, &off, 0x6666, "a.example.org");
    write_all(b, buf, off);
    wait_msgs(f, 1);
    int c = connect_client(f, "127.0.0.1", 40011);
    assert_int_equal(f->stats.tcp_clients_rejected, 1);
    assert_true(at_eof(c));
    assert_int_equal(tcp_clients_count(f->set), 1);
    answer_later(&f->pool.h[0]);
    wait_bytes(f, b, frame13());
    assert_int_equal(read_answer_id(b), 0x6666);
    close(a);
    close(b);
    close(c);
    fx_free(f);
}

/* A client with 64 queries in flight is not read further until one is
 * answered; then the next one is taken. */
static void test_inflight_cap(void **state)
{
    (void)state;
    enum { N = 70, CAP = 64 };
    struct fx *f = fx_new(8, 8, 5, 2);
    int fd = connect_client(f, "127.0.0.1", 40012);
    static uint8_t buf[N * 40];
    size_t off = 0;
    for (int i = 0; i < N; i++)
        put_frame(buf, &off, (uint16_t)(0x1000 + i), "a.example.org");
    assert_true(off <= sizeof buf);
    write_all(fd, buf, off);
    struct until u = { f, N, -1, 0, false };
    run_until(f->loop, 0.2, cond, &u);
    assert_int_equal(f->pool.got, CAP);
    answer_later(&f->pool.h[0]);
    wait_msgs(f, CAP + 1);
    assert_int_equal(wire_get16(f->pool.h[CAP].msg), 0x1000 + CAP);
    /* Answering takes in more at once (done() reads on): answer until all are. */
    for (int round = 0; round < 10; round++) {
        for (unsigned i = 0; i < f->pool.got; i++)
            if (!f->pool.h[i].answered)
                answer_later(&f->pool.h[i]);
        run_until(f->loop, 0.02, NULL, NULL);
    }
    assert_int_equal(f->pool.got, N);
    wait_bytes(f, fd, N * frame13());
    for (int i = 0; i < N; i++)
        read_answer_id(fd);
    close(fd);
    fx_free(f);
}

/* Drain: idle clients close at once, a client owed an answer gets it and
 * then closes; nothing new is read meanwhile. */
static void test_stop_reading_drains(void **state)
{
    (void)state;
    struct fx *f = fx_new(8, 8, 5, 1);
    int idle = connect_client(f, "127.0.0.1", 40013);
    int busy = connect_client(f, "127.0.0.1", 40014);
    uint8_t buf[512];
    size_t off = 0;
    put_frame(buf, &off, 0x7777, "a.example.org");
    write_all(busy, buf, off);
    wait_msgs(f, 1);
    tcp_clients_stop_reading(f->set);
    assert_int_equal(tcp_clients_count(f->set), 1);
    assert_true(at_eof(idle));
    off = 0;
    put_frame(buf, &off, 0x7878, "b.example.org");
    write_all(busy, buf, off);
    run_until(f->loop, 0.05, NULL, NULL);
    assert_int_equal(f->pool.got, 1);
    answer_later(&f->pool.h[0]);
    wait_gone(f, 1.0);
    assert_int_equal(tcp_clients_count(f->set), 0);
    assert_int_equal(read_answer_id(busy), 0x7777);
    close(idle);
    close(busy);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_and_completion_order),
        cmocka_unit_test(test_half_close_gets_answers),
        cmocka_unit_test(test_partial_message_times_out),
        cmocka_unit_test(test_answer_after_client_gone),
        cmocka_unit_test(test_per_source_limit),
        cmocka_unit_test(test_full_evicts_idle_not_busy),
        cmocka_unit_test(test_inflight_cap),
        cmocka_unit_test(test_stop_reading_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
