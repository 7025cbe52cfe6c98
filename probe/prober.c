/* probe/prober.c: the probe scheduler's hands. Each run walks
 * CONNECT -> HANDSHAKE -> WRITE -> READ under one deadline timer, and ends
 * in exactly one run_finish(), which reports to the table. */
#include "probe/prober.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/net.h"
#include "lib/rng.h"
#include "lib/tls.h"
#include "lib/wire.h"

/* RFC 8467 §4.1: pad queries to a multiple of 128 octets. */
#define PROBE_PAD_BLOCK 128
#define PROBE_EDNS_SIZE 1232
#define PROBE_QUERY_MAX (2 + WIRE_HDR_LEN + WIRE_MAX_NAME + 4 + 11 + 4 + PROBE_PAD_BLOCK)

enum run_state { RUN_CONNECT, RUN_HANDSHAKE, RUN_WRITE, RUN_READ };

struct probe_run {
    struct prober *p;
    struct probe_entry *e;
    struct probe_run *prev, *next;
    enum run_state state;
    int fd;
    struct tls_conn *tls;
    ev_io io;
    ev_timer timer;
    double started;
    uint16_t id;
    uint8_t query[PROBE_QUERY_MAX];  /* with its 2-byte length prefix */
    size_t qlen;
    uint8_t lenbuf[2];
    size_t got;                      /* bytes of lenbuf + answer read so far */
    uint8_t *answer;
    size_t answer_len;
};

struct prober {
    struct ev_loop *loop;
    struct probe_table *tab;
    struct tls_ctx *tls;
    struct rng *rng;
    struct prober_opts opts;
    struct probe_run *runs;
    unsigned nruns;
    void (*result_fn)(void *arg, const struct probe_entry *e, const struct prober_result *r);
    void *result_arg;
    void (*adopt_fn)(void *arg, const struct probe_entry *e, int fd, struct tls_conn *conn);
    void *adopt_arg;
};

void prober_opts_defaults(struct prober_opts *o)
{
    *o = (struct prober_opts){ .port = 853, .rd = true };
}

/* Query: header, the question (`name` in wire form, `qtype`/IN), OPT with
 * padding. Returns the length including the 2-byte prefix. */
static size_t build_query(uint8_t *out, uint16_t id, bool rd, const uint8_t *name, size_t nlen, uint16_t qtype)
{
    uint8_t *m = out + 2;
    memset(m, 0, WIRE_HDR_LEN);
    wire_put16(m, id);
    wire_put16(m + 2, rd ? WIRE_RD : 0);
    wire_put16(m + 4, 1);   /* QDCOUNT */
    wire_put16(m + 10, 1);  /* ARCOUNT: the OPT RR */
    size_t n = WIRE_HDR_LEN;
    memcpy(m + n, name, nlen);
    n += nlen;
    wire_put16(m + n, qtype);
    wire_put16(m + n + 2, WIRE_CLASS_IN);
    n += 4;
    /* OPT: root owner, type, UDP size, TTL 0, RDLEN, then the padding option. */
    size_t opt = n;
    m[n++] = 0;
    wire_put16(m + n, WIRE_TYPE_OPT);
    wire_put16(m + n + 2, PROBE_EDNS_SIZE);
    memset(m + n + 4, 0, 4);
    n += 10;
    size_t unpadded = n + 4;
    size_t pad = (PROBE_PAD_BLOCK - unpadded % PROBE_PAD_BLOCK) % PROBE_PAD_BLOCK;
    wire_put16(m + opt + 9, (uint16_t)(4 + pad));
    wire_put16(m + n, WIRE_EDNS_PADDING);
    wire_put16(m + n + 2, (uint16_t)pad);
    n += 4;
    memset(m + n, 0, pad);
    n += pad;
    wire_put16(out, (uint16_t)n);
    return n + 2;
}

static void run_unlink(struct prober *p, struct probe_run *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        p->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    p->nruns--;
}

/* Stops the watchers and frees the run; the socket and TLS state go with
 * it unless they were handed over (fd = -1, tls = NULL). */
static void run_free(struct probe_run *r)
{
    ev_io_stop(r->p->loop, &r->io);
    ev_timer_stop(r->p->loop, &r->timer);
    if (r->tls)
        tls_conn_free(r->tls);
    if (r->fd >= 0)
        close(r->fd);
    free(r->answer);
    free(r);
}

static void run_finish(struct probe_run *r, enum probe_outcome o, const char *reason)
{
    struct prober *p = r->p;
    struct probe_entry *e = r->e;
    double now = ev_now(p->loop);
    bool handshake_done = r->tls && r->state > RUN_HANDSHAKE;
    struct prober_result res = {
        .outcome = o,
        .reason = reason ? reason : "",
        .tls_version = handshake_done ? tls_version(r->tls) : NULL,
        .tls_cipher = handshake_done ? tls_cipher(r->tls) : NULL,
        .alpn = handshake_done ? tls_alpn(r->tls) : NULL,
        .verified = handshake_done && tls_verified(r->tls),
        .resumed = handshake_done && tls_resumed(r->tls),
        .rcode = o == PROBE_OK ? WIRE_RCODE(wire_get16(r->answer + 2)) : 0,
        .elapsed = now - r->started,
    };
    if (o == PROBE_OK) {
        /* The ticket (TLS 1.3) came before the answer, so it is there now. */
        struct tls_session *s = tls_get_session(r->tls);
        if (s)
            probe_table_set_session(e, s);
    } else if (o == PROBE_TLS_FAILED) {
        probe_table_set_session(e, NULL);  /* do not offer a ticket that may be the problem */
    }
    char ip[NET_ADDRSTRLEN];
    struct net_addr ea;
    probe_entry_addr(e, &ea);
    log_debug("dot-probe: %s: %s%s%s after %.3f s (%s, %s, resumed=%d)", net_ip_str(&ea, ip, sizeof ip),
              probe_outcome_str(o), *res.reason ? ": " : "", res.reason, res.elapsed,
              res.tls_version ? res.tls_version : "no TLS", res.tls_cipher ? res.tls_cipher : "-",
              res.resumed);

    ev_io_stop(p->loop, &r->io);
    ev_timer_stop(p->loop, &r->timer);
    run_unlink(p, r);
    /* May start the next queued probe, which may even finish at once. */
    probe_table_probe_done(p->tab, e, o, reason, res.verified, now);
    if (p->result_fn)
        p->result_fn(p->result_arg, e, &res);
    if (o == PROBE_OK && p->adopt_fn) {
        struct tls_conn *c = r->tls;
        int fd = r->fd;
        r->tls = NULL;
        r->fd = -1;
        p->adopt_fn(p->adopt_arg, e, fd, c);
    } else if (handshake_done) {
        tls_shutdown(r->tls);
    }
    run_free(r);
}

static void run_want(struct probe_run *r, int events)
{
    if (ev_is_active(&r->io) && (r->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(r->p->loop, &r->io);
    ev_io_set(&r->io, r->fd, events);
    ev_io_start(r->p->loop, &r->io);
}

static void run_check_answer(struct probe_run *r)
{
    char why[96];
    struct wire_msg ans, q;
    int err = wire_parse_response(r->answer, r->answer_len, &ans);
    if (err != WIRE_OK) {
        snprintf(why, sizeof why, "answer of %zu bytes: %s", r->answer_len, wire_err_str(err));
        run_finish(r, PROBE_BAD_ANSWER, why);
        return;
    }
    if (ans.id != r->id) {
        snprintf(why, sizeof why, "answer ID %u, query ID %u", ans.id, r->id);
        run_finish(r, PROBE_BAD_ANSWER, why);
        return;
    }
    if (wire_parse_query(r->query + 2, r->qlen - 2, &q) != WIRE_OK ||
        !wire_same_question(r->answer, &ans, r->query + 2, &q)) {
        run_finish(r, PROBE_BAD_ANSWER, "answer is for another question");
        return;
    }
    run_finish(r, PROBE_OK, NULL);
}

/* Advances the run as far as the socket allows; ends by waiting on a
 * watcher or in run_finish (after which r is gone). */
static void run_step(struct probe_run *r)
{
    char why[200];
    for (;;) {
        switch (r->state) {
        case RUN_CONNECT:
            return;
        case RUN_HANDSHAKE: {
            int x = tls_handshake(r->tls);
            if (x == TLS_IO_OK) {
                r->state = RUN_WRITE;
                continue;
            }
            if (x == TLS_IO_WANT_READ || x == TLS_IO_WANT_WRITE) {
                run_want(r, x == TLS_IO_WANT_READ ? EV_READ : EV_WRITE);
                return;
            }
            run_finish(r, PROBE_TLS_FAILED, tls_error(r->tls));
            return;
        }
        case RUN_WRITE: {
            /* RD follows the entry as it is now: it may have been marked
             * authoritative after the probe was queued. (2-byte length first.) */
            uint16_t fl = wire_get16(r->query + 4);
            fl = r->p->opts.rd && !r->e->authoritative ? (uint16_t)(fl | WIRE_RD) : (uint16_t)(fl & ~WIRE_RD);
            wire_put16(r->query + 4, fl);
            int x = tls_write(r->tls, r->query, r->qlen);
            if (x > 0) {
                r->state = RUN_READ;
                continue;
            }
            if (x == TLS_IO_WANT_READ || x == TLS_IO_WANT_WRITE) {
                run_want(r, x == TLS_IO_WANT_READ ? EV_READ : EV_WRITE);
                return;
            }
            snprintf(why, sizeof why, "no answer (%s)", tls_error(r->tls));
            run_finish(r, PROBE_BAD_ANSWER, why);
            return;
        }
        case RUN_READ: {
            uint8_t *dst;
            size_t want;
            if (r->got < 2) {
                dst = r->lenbuf + r->got;
                want = 2 - r->got;
            } else {
                dst = r->answer + (r->got - 2);
                want = r->answer_len - (r->got - 2);
            }
            int x = tls_read(r->tls, dst, want);
            if (x > 0) {
                r->got += (size_t)x;
                if (r->got == 2) {
                    r->answer_len = wire_get16(r->lenbuf);
                    if (r->answer_len < WIRE_HDR_LEN) {
                        snprintf(why, sizeof why, "answer of %zu bytes", r->answer_len);
                        run_finish(r, PROBE_BAD_ANSWER, why);
                        return;
                    }
                    r->answer = malloc(r->answer_len);
                    if (!r->answer) {
                        r->answer_len = 0;
                        run_finish(r, PROBE_LOCAL_ERROR, "out of memory");
                        return;
                    }
                } else if (r->got > 2 && r->got - 2 == r->answer_len) {
                    run_check_answer(r);
                    return;
                }
                continue;
            }
            if (x == TLS_IO_WANT_READ || x == TLS_IO_WANT_WRITE) {
                run_want(r, x == TLS_IO_WANT_READ ? EV_READ : EV_WRITE);
                return;
            }
            snprintf(why, sizeof why, "no answer, %zu bytes read (%s)", r->got, tls_error(r->tls));
            run_finish(r, PROBE_BAD_ANSWER, why);
            return;
        }
        }
    }
}

static void run_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct probe_run *r = w->data;
    if (r->state == RUN_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            run_finish(r, PROBE_CONNECT_REFUSED, strerror(err));
            return;
        }
        r->tls = tls_conn_new(r->p->tls, r->fd, r->p->opts.auth_name, r->e->session);
        if (!r->tls) {
            run_finish(r, PROBE_LOCAL_ERROR, "TLS setup failed");
            return;
        }
        r->state = RUN_HANDSHAKE;
    }
    run_step(r);
}

static void run_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct probe_run *r = w->data;
    double t = ev_now(loop) - r->started;
    char why[96];
    switch (r->state) {
    case RUN_CONNECT:
        snprintf(why, sizeof why, "no connection after %.1f s", t);
        run_finish(r, PROBE_CONNECT_TIMEOUT, why);
        return;
    case RUN_HANDSHAKE:
        snprintf(why, sizeof why, "handshake not done after %.1f s", t);
        run_finish(r, PROBE_TLS_FAILED, why);
        return;
    default:
        snprintf(why, sizeof why, "no answer after %.1f s (%zu bytes read)", t, r->got);
        run_finish(r, PROBE_QUERY_TIMEOUT, why);
        return;
    }
}

static void prober_start_cb(void *arg, struct probe_entry *e)
{
    struct prober *p = arg;
    struct probe_run *r = calloc(1, sizeof *r);
    if (!r) {
        probe_table_probe_done(p->tab, e, PROBE_LOCAL_ERROR, "out of memory", false, ev_now(p->loop));
        return;
    }
    r->p = p;
    r->e = e;
    r->fd = -1;
    /* Probes on start follow slow setup (CA store, config): a stale ev_now
     * would make the deadline fire early. */
    ev_now_update(p->loop);
    r->started = ev_now(p->loop);
    r->next = p->runs;
    if (p->runs)
        p->runs->prev = r;
    p->runs = r;
    p->nruns++;
    ev_init(&r->io, run_io_cb);
    r->io.data = r;
    ev_timer_init(&r->timer, run_timer_cb, probe_table_policy(p->tab)->probe_timeout, 0.);
    r->timer.data = r;

    r->id = rng_u16(p->rng);
    /* The question the IP last answered over Do53, if one was noted (a probe
     * should succeed where a real query would), else SOA of its zone. */
    uint8_t name[WIRE_MAX_NAME];
    size_t nlen;
    uint16_t qtype = WIRE_TYPE_SOA;
    bool rd = p->opts.rd && !e->authoritative;
    struct net_addr a;
    probe_entry_addr(e, &a);
    if (!probe_table_question(p->tab, &a, name, &nlen, &qtype, &rd)) {
        int n = wire_name_from_str(probe_entry_zone(p->tab, e), name);
        nlen = n < 0 ? 0 : (size_t)n;
        qtype = WIRE_TYPE_SOA;
    }
    r->qlen = nlen ? build_query(r->query, r->id, rd, name, nlen, qtype) : 0;
    if (r->qlen == 0) {
        run_finish(r, PROBE_LOCAL_ERROR, "zone is not a valid name");
        return;
    }
    net_addr_set_port(&a, p->opts.port);
    r->fd = net_tcp_connect(&a, 0); /* port 853 is never intercepted */
    if (r->fd < 0) {
        int err = errno;
        run_finish(r, net_errno_local(err) ? PROBE_LOCAL_ERROR : PROBE_CONNECT_REFUSED, strerror(err));
        return;
    }
    r->state = RUN_CONNECT;
    ev_io_set(&r->io, r->fd, EV_WRITE);
    ev_io_start(p->loop, &r->io);
    ev_timer_start(p->loop, &r->timer);
}

static void prober_cancel_cb(void *arg, struct probe_entry *e)
{
    struct prober *p = arg;
    for (struct probe_run *r = p->runs; r; r = r->next) {
        if (r->e == e) {
            run_unlink(p, r);
            run_free(r);
            return;
        }
    }
}

static const struct probe_sched prober_sched = {
    .start = prober_start_cb,
    .cancel = prober_cancel_cb,
};

struct prober *prober_new(struct ev_loop *loop, struct probe_table *tab, struct tls_ctx *tls,
                          struct rng *rng, const struct prober_opts *o)
{
    struct prober *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->tab = tab;
    p->tls = tls;
    p->rng = rng;
    if (o)
        p->opts = *o;
    else
        prober_opts_defaults(&p->opts);
    probe_table_set_sched(tab, &prober_sched, p, ev_now(loop));
    return p;
}

void prober_free(struct prober *p)
{
    if (!p)
        return;
    double now = ev_now(p->loop);
    probe_table_set_sched(p->tab, NULL, NULL, now);
    while (p->runs) {
        struct probe_run *r = p->runs;
        run_unlink(p, r);
        probe_table_probe_done(p->tab, r->e, PROBE_LOCAL_ERROR, "prober stopped", false, now);
        run_free(r);
    }
    free(p);
}

void prober_set_result_cb(struct prober *p,
                          void (*fn)(void *arg, const struct probe_entry *e, const struct prober_result *r),
                          void *arg)
{
    p->result_fn = fn;
    p->result_arg = arg;
}

void prober_set_adopt_cb(struct prober *p,
                         void (*fn)(void *arg, const struct probe_entry *e, int fd, struct tls_conn *conn),
                         void *arg)
{
    p->adopt_fn = fn;
    p->adopt_arg = arg;
}

unsigned prober_running(const struct prober *p) { return p->nruns; }
