/* test/unit/scenario.h: what the scenario tests (test_query, test_udp_pool,
 * test_tcp_client, test_stream) share: a DNS message builder, a loop runner
 * bounded in time, and a few socket helpers on loopback.
 *
 * Everything is `static inline` so that a program that uses only part of it
 * still builds under -Werror. Include after <cmocka.h>. Every address a
 * helper sends to is a loopback one the test itself bound. */
#ifndef DOTWARD_TEST_SCENARIO_H
#define DOTWARD_TEST_SCENARIO_H

#include <ev.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/net.h"
#include "lib/wire.h"

/* ---- messages ---------------------------------------------------------- */

struct mb {
    uint8_t b[4096];
    size_t n;
};

static inline void mb_u8(struct mb *m, unsigned v)
{
    assert_true(m->n < sizeof m->b);
    m->b[m->n++] = (uint8_t)v;
}

static inline void mb_u16(struct mb *m, unsigned v)
{
    mb_u8(m, (v >> 8) & 0xff);
    mb_u8(m, v & 0xff);
}

static inline void mb_u32(struct mb *m, uint32_t v)
{
    mb_u16(m, v >> 16);
    mb_u16(m, v & 0xffff);
}

static inline void mb_hdr(struct mb *m, unsigned id, unsigned flags, unsigned qd, unsigned an, unsigned ns,
                          unsigned ar)
{
    m->n = 0;
    mb_u16(m, id);
    mb_u16(m, flags);
    mb_u16(m, qd);
    mb_u16(m, an);
    mb_u16(m, ns);
    mb_u16(m, ar);
}

/* Uncompressed name from "a.b.c" (no escapes). */
static inline void mb_name(struct mb *m, const char *s)
{
    while (*s && strcmp(s, ".") != 0) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        mb_u8(m, (unsigned)l);
        assert_true(m->n + l <= sizeof m->b);
        memcpy(m->b + m->n, s, l);
        m->n += l;
        s += l;
        if (*s == '.')
            s++;
    }
    mb_u8(m, 0);
}

#define T_A 1

/* A query for `name` type A with `flags` (opcode included); an OPT RR with
 * UDP size `edns` when edns is not 0. */
static inline size_t make_query(uint8_t *out, uint16_t id, const char *name, unsigned flags, unsigned edns)
{
    struct mb m;
    mb_hdr(&m, id, flags, 1, 0, 0, edns ? 1 : 0);
    mb_name(&m, name);
    mb_u16(&m, T_A);
    mb_u16(&m, WIRE_CLASS_IN);
    if (edns) {
        mb_u8(&m, 0);
        mb_u16(&m, WIRE_TYPE_OPT);
        mb_u16(&m, edns);
        mb_u32(&m, 0);
        mb_u16(&m, 0);
    }
    memcpy(out, m.b, m.n);
    return m.n;
}

/* An answer to a question for `name` with `n_a` A records (192.0.2.x,
 * owner compressed to the question), QR set plus `flags`. */
static inline size_t make_answer(uint8_t *out, uint16_t id, const char *name, unsigned flags, unsigned n_a)
{
    struct mb m;
    mb_hdr(&m, id, WIRE_QR | WIRE_RA | flags, 1, n_a, 0, 0);
    mb_name(&m, name);
    mb_u16(&m, T_A);
    mb_u16(&m, WIRE_CLASS_IN);
    for (unsigned i = 0; i < n_a; i++) {
        mb_u16(&m, 0xc000u | WIRE_HDR_LEN);
        mb_u16(&m, T_A);
        mb_u16(&m, WIRE_CLASS_IN);
        mb_u32(&m, 300);
        mb_u16(&m, 4);
        mb_u8(&m, 192);
        mb_u8(&m, 0);
        mb_u8(&m, 2);
        mb_u8(&m, (i + 1) & 0xff);
    }
    memcpy(out, m.b, m.n);
    return m.n;
}

/* The question name of a message, in presentation form. */
static inline const char *msg_qname(const uint8_t *msg, size_t len, char *buf, size_t bufsz)
{
    size_t off = WIRE_HDR_LEN;
    uint8_t name[WIRE_MAX_NAME];
    int n = wire_read_name(msg, len, &off, name);
    assert_true(n > 0);
    return wire_name_str(name, (size_t)n, buf, bufsz);
}

/* ---- the loop ---------------------------------------------------------- */

static inline double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void scen_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* Runs `loop` for at most `max` seconds, and returns early once `done`
 * (may be NULL) says so. A 5 ms tick keeps EVRUN_ONCE from blocking for
 * longer than that, so the condition is looked at often. */
typedef bool scen_done_fn(void *arg);
static inline double run_until(struct ev_loop *loop, double max, scen_done_fn *done, void *arg)
{
    ev_timer tick;
    ev_timer_init(&tick, scen_tick_cb, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    double t0 = mono();
    while (mono() - t0 < max && !(done && done(arg)))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return mono() - t0;
}

/* ---- loopback sockets -------------------------------------------------- */

static inline void loopback(struct net_addr *a, uint16_t port)
{
    assert_int_equal(net_addr_parse("127.0.0.1", port, a), 0);
}

/* The address a socket is bound to. */
static inline void sock_addr(int fd, struct net_addr *a)
{
    memset(a, 0, sizeof *a);
    a->len = sizeof a->u.ss;
    assert_int_equal(getsockname(fd, &a->u.sa, &a->len), 0);
}

/* Waits up to `ms` for `fd` to be readable. */
static inline bool wait_readable(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, ms) == 1;
}

#endif
