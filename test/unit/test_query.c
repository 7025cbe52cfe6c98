/* test/unit/test_query.c: the query pool through its interfaces, on a real
 * libev loop, with a fake transport behind `struct query_transports` and a
 * fake client behind `struct client_ops`. The test plays the upstreams: it
 * sees every try the pool starts, and answers, fails or ignores each one
 * through the pool's own sink, in any order, as a real transport would
 * (never from inside send). One scenario runs on the real UDP pool against
 * a socket the test binds on 127.0.0.1.
 *
 * Servers are documentation addresses (192.0.2.0/24): the fake transport
 * never sends a packet, so nothing leaves the process. Timeouts are tens
 * of milliseconds; each wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/flush.h"
#include "lib/rng.h"
#include "probe/table.h"
#include "proxy/health.h"
#include "proxy/query.h"
#include "proxy/route.h"
#include "proxy/stats.h"
#include "proxy/udp_pool.h"
#include "proxy/view.h"
#include "test/unit/scenario.h"

#define ATTEMPT 0.05   /* s: one try */
#define BUDGET 0.40    /* s: the whole query */
#define MAX_REQS 64

/* ---- the fake transport ------------------------------------------------ */

struct fake_req {
    struct treq *r;            /* the pool's, valid while live */
    enum try_kind kind;
    struct net_addr to;
    bool verbatim;
    uint16_t id;               /* the ID "on the wire" */
    uint8_t msg[1024];         /* what would have been sent */
    size_t len;
    bool live;                 /* held: not answered, failed or cancelled */
    bool cancelled;
    double at;                 /* mono() when sent */
};

struct fake_tx {
    const struct tsink *sink;
    struct fake_req reqs[MAX_REQS];
    unsigned n;
    unsigned refuse;           /* bit per try_kind: send fails at once */
    bool opening;              /* stream sends must set up a connection first */
    uint16_t next_id;
};

static int tx_send(void *arg, enum try_kind kind, struct treq *r, bool *opening)
{
    struct fake_tx *tx = arg;
    /* The pool must not hand over a request that is still held. */
    assert_null(r->owner);
    if (tx->refuse & (1u << kind))
        return -1;
    assert_true(tx->n < MAX_REQS);
    struct fake_req *f = &tx->reqs[tx->n++];
    memset(f, 0, sizeof *f);
    f->r = r;
    f->kind = kind;
    f->to = *r->to;
    f->verbatim = r->verbatim;
    assert_true(r->len <= sizeof f->msg);
    memcpy(f->msg, r->msg, r->len);
    f->len = r->len;
    f->id = (uint16_t)(0xa000 + ++tx->next_id);
    wire_set_id(f->msg, f->id);
    f->live = true;
    f->at = mono();
    r->id = f->id;
    r->owner = tx;
    *opening = kind != TRY_UDP && tx->opening;
    return 0;
}

static struct fake_req *live_req(struct fake_tx *tx, struct treq *r)
{
    for (unsigned i = tx->n; i-- > 0;)
        if (tx->reqs[i].live && tx->reqs[i].r == r)
            return &tx->reqs[i];
    return NULL;
}

static void tx_cancel(void *arg, enum try_kind kind, struct treq *r)
{
    struct fake_tx *tx = arg;
    struct fake_req *f = live_req(tx, r);
    /* Only held requests are cancelled, by the kind they were sent over. */
    assert_non_null(f);
    assert_int_equal(f->kind, kind);
    f->live = false;
    f->cancelled = true;
    r->owner = NULL;
}

/* The upstream answers request `i`: an answer to its own question, with
 * its wire ID, `n_a` A records and extra header `flags`. */
static void answer_req(struct fake_tx *tx, unsigned i, unsigned flags, unsigned n_a)
{
    assert_true(i < tx->n);
    struct fake_req *f = &tx->reqs[i];
    assert_true(f->live);
    char name[WIRE_MAX_NAME * 4 + 1];
    msg_qname(f->msg, f->len, name, sizeof name);
    uint8_t buf[4096];
    size_t len = make_answer(buf, f->id, name, flags, n_a);
    struct wire_msg wm;
    assert_int_equal(wire_parse_response(buf, len, &wm), WIRE_OK);
    f->live = false;
    f->r->owner = NULL;
    tx->sink->answer(tx->sink->arg, f->r, buf, len, &wm);
}

static void fail_req(struct fake_tx *tx, unsigned i, enum probe_outcome why)
{
    assert_true(i < tx->n);
    struct fake_req *f = &tx->reqs[i];
    assert_true(f->live);
    f->live = false;
    f->r->owner = NULL;
    tx->sink->failed(tx->sink->arg, f->r, why);
}

static unsigned live_count(const struct fake_tx *tx)
{
    unsigned n = 0;
    for (unsigned i = 0; i < tx->n; i++)
        n += tx->reqs[i].live;
    return n;
}

/* ---- the fake client --------------------------------------------------- */

#define MAX_GOT 8

struct fake_client {
    unsigned sends, dones, refs, unrefs;
    uint8_t got[MAX_GOT][4096];
    size_t got_len[MAX_GOT];
    double got_at[MAX_GOT];
};

static void fc_send(const struct client *cl, const uint8_t *msg, size_t len)
{
    struct fake_client *c = cl->conn;
    assert_true(c->sends < MAX_GOT);
    assert_true(len <= sizeof c->got[0]);
    memcpy(c->got[c->sends], msg, len);
    c->got_len[c->sends] = len;
    c->got_at[c->sends] = mono();
    c->sends++;
}

static void fc_done(void *conn) { ((struct fake_client *)conn)->dones++; }
static void fc_ref(void *conn) { ((struct fake_client *)conn)->refs++; }
static void fc_unref(void *conn)
{
    struct fake_client *c = conn;
    c->unrefs++;
    assert_true(c->unrefs <= c->refs);
}

static const struct client_ops udp_ops = { false, fc_send, fc_done, fc_ref, fc_unref, NULL };
static const struct client_ops tcp_ops = { true, fc_send, fc_done, fc_ref, fc_unref, NULL };

/* ---- the world --------------------------------------------------------- */

struct world {
    struct ev_loop *loop;
    struct rng rng;
    struct stats stats;
    struct probe_table *probes;
    struct health_table *health;
    struct view *view;
    struct route_server *srv[4];
    unsigned n_srv;
    struct fake_tx tx;
    struct query_pool *pool;
    struct fake_client client;
    unsigned idles;
};

static void on_idle(void *arg) { ((struct world *)arg)->idles++; }

/* `n` servers 192.0.2.1.. for ".", all with TLS policy `tls`. */
static struct world *world_new(unsigned n, enum server_tls tls)
{
    struct world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(w->loop);
    rng_init(&w->rng);
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    w->probes = probe_table_new(&pol, 1);
    w->health = health_table_new(64, 1);
    struct config *cfg = config_load(NULL, NULL, stderr);
    assert_non_null(cfg);
    cfg->timeout = BUDGET;
    cfg->attempt_timeout = ATTEMPT;
    struct route_table *rt = route_table_new(w->health);
    assert_non_null(rt);
    for (unsigned i = 0; i < n; i++) {
        char s[32];
        snprintf(s, sizeof s, "192.0.2.%u", i + 1);
        struct net_addr a;
        assert_int_equal(net_addr_parse(s, 53, &a), 0);
        w->srv[i] = route_table_add_server(rt, &a, tls, NULL, true, true);
        assert_non_null(w->srv[i]);
        assert_int_equal(route_table_add(rt, ".", w->srv[i]), 0);
    }
    w->n_srv = n;
    w->view = view_new(cfg, rt);
    assert_non_null(w->view);
    struct query_env env = {
        .loop = w->loop, .rng = &w->rng, .stats = &w->stats, .probes = w->probes,
        .tx = { tx_send, tx_cancel, &w->tx }, .idle = on_idle, .idle_arg = w,
    };
    w->pool = query_pool_new(&env);
    assert_non_null(w->pool);
    w->tx.sink = query_pool_sink(w->pool);
    ev_now_update(w->loop);
    return w;
}

static void world_free(struct world *w)
{
    query_pool_free(w->pool);
    /* Every query took a reference and gave it back. */
    assert_int_equal(w->client.refs, w->client.unrefs);
    view_unref(w->view);
    health_table_free(w->health);
    probe_table_free(w->probes);
    ev_loop_destroy(w->loop);
    free(w);
}

/* The server's address is Good in the DoT table (as after a probe). */
static void make_good(struct world *w, const struct route_server *s)
{
    double now = ev_now(w->loop);
    struct probe_saved sv = { .ip = s->addr, .status = PROBE_GOOD, .status_since = now, .first_seen = now,
                              .initiated = now, .completed = now, .last_response = now };
    assert_int_equal(probe_table_restore(w->probes, &sv, now), 0);
}

static void receive(struct world *w, const struct client_ops *ops, const uint8_t *msg, size_t len)
{
    struct client c = { .ops = ops, .conn = &w->client };
    assert_int_equal(net_addr_parse("127.0.0.1", 40000, &c.peer), 0);
    ev_now_update(w->loop); /* as if called from a watcher of this iteration */
    query_receive(w->pool, w->view, &c, msg, len);
}

struct want { struct world *w; unsigned reqs, sends; };

static bool reached(void *arg)
{
    struct want *x = arg;
    return x->w->tx.n >= x->reqs && x->w->client.sends >= x->sends;
}

/* Runs the loop until the pool has started `reqs` tries in all and the
 * client got `sends` messages, or `max` seconds. */
static void run_for(struct world *w, unsigned reqs, unsigned sends, double max)
{
    struct want x = { w, reqs, sends };
    run_until(w->loop, max, reached, &x);
}

static struct route_server *server_of(struct world *w, const struct fake_req *f)
{
    for (unsigned i = 0; i < w->n_srv; i++)
        if (net_addr_equal(&w->srv[i]->addr, &f->to))
            return w->srv[i];
    fail_msg("a try went to an address that is not a server");
    return NULL;
}

/* ---- scenarios --------------------------------------------------------- */

/* The answer reaches the client under the client's ID and letter case,
 * whatever ID and case travelled upstream. */
static void test_answer_relayed_with_client_id(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x1234, "WwW.ExAmple.ORG", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.n, 1);
    assert_int_equal(w->tx.reqs[0].kind, TRY_UDP);
    assert_false(w->tx.reqs[0].verbatim);
    assert_int_equal(query_pool_inflight(w->pool), 1);
    assert_int_equal(w->client.sends, 0);
    assert_int_equal(w->client.refs, 1);

    /* The upstream answers in lower case, with its own ID. */
    struct fake_req *f = &w->tx.reqs[0];
    for (size_t i = WIRE_HDR_LEN; i < f->len; i++)
        if (f->msg[i] >= 'A' && f->msg[i] <= 'Z')
            f->msg[i] = (uint8_t)(f->msg[i] + 32);
    answer_req(&w->tx, 0, 0, 2);

    assert_int_equal(w->client.sends, 1);
    assert_int_equal(w->client.dones, 1);
    const uint8_t *a = w->client.got[0];
    struct wire_msg wm;
    assert_int_equal(wire_parse_response(a, w->client.got_len[0], &wm), WIRE_OK);
    assert_int_equal(wm.id, 0x1234);
    assert_int_equal(wm.ancount, 2);
    assert_int_equal(WIRE_RCODE(wm.flags), WIRE_NOERROR);
    char name[256];
    assert_string_equal(msg_qname(a, w->client.got_len[0], name, sizeof name), "WwW.ExAmple.ORG.");
    assert_int_equal(query_pool_inflight(w->pool), 0);
    assert_int_equal(w->idles, 1);
    assert_int_equal(w->stats.answered, 1);
    assert_int_equal(w->client.unrefs, 1);
    /* The server learnt an RTT. */
    assert_true(health_srtt(server_of(w, f)->health) >= 0);
    world_free(w);
}

/* A UDP try that times out leaves room for the next server, and stays
 * pending: its late answer is still taken, and the other try cancelled. */
static void test_timeout_retries_next_server(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x2222, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    run_for(w, 2, 0, 1.0);
    assert_int_equal(w->tx.n, 2);
    struct fake_req *a = &w->tx.reqs[0], *b = &w->tx.reqs[1];
    /* Not before the attempt timeout, and not much later. */
    double gap = b->at - a->at;
    assert_true(gap >= ATTEMPT * 0.9);
    assert_true(gap < ATTEMPT + 0.1);
    assert_false(net_addr_equal(&a->to, &b->to));
    assert_int_equal(b->kind, TRY_UDP);
    assert_true(a->live); /* not given up */
    assert_int_equal(w->stats.upstream_timeouts, 1);
    assert_int_equal(server_of(w, a)->health->timeouts, 1);
    assert_true(server_of(w, a)->health->backoff_until > ev_now(w->loop));
    assert_int_equal(w->client.sends, 0);

    answer_req(&w->tx, 0, 0, 1);
    assert_int_equal(w->client.sends, 1);
    assert_int_equal(wire_get16(w->client.got[0]), 0x2222);
    assert_false(w->tx.reqs[1].live);
    assert_true(w->tx.reqs[1].cancelled);
    assert_int_equal(live_count(&w->tx), 0);
    world_free(w);
}

/* Nobody answers: every try is used (never more than the pool allows),
 * and the client gets SERVFAIL at the deadline, not before. */
static void test_servfail_after_budget(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x3333, "example.org", WIRE_RD, 1232);
    double t0 = mono();
    receive(w, &udp_ops, q, qlen);
    run_for(w, 0, 1, 2.0);
    assert_int_equal(w->client.sends, 1);
    double took = w->client.got_at[0] - t0;
    assert_true(took >= BUDGET * 0.95);
    assert_true(took < BUDGET + 0.2);
    struct wire_msg wm;
    assert_int_equal(wire_parse_response(w->client.got[0], w->client.got_len[0], &wm), WIRE_OK);
    assert_int_equal(wm.id, 0x3333);
    assert_int_equal(WIRE_RCODE(wm.flags), WIRE_SERVFAIL);
    assert_int_equal(w->client.dones, 1);
    /* Both servers got tries; at most 6 of them; none is left behind. */
    assert_true(w->tx.n >= 2 && w->tx.n <= 6);
    bool to[2] = { false, false };
    for (unsigned i = 0; i < w->tx.n; i++)
        to[server_of(w, &w->tx.reqs[i]) == w->srv[1]] = true;
    assert_true(to[0] && to[1]);
    assert_int_equal(live_count(&w->tx), 0);
    assert_int_equal(w->stats.servfail, 1);
    assert_int_equal(w->stats.answered, 0);
    assert_int_equal(query_pool_inflight(w->pool), 0);
    world_free(w);
}

/* TC=1 over UDP moves the query to TCP on the same server. A TC=1 answer
 * of an earlier UDP try that arrives while the TCP try is pending is not
 * relayed: the whole answer is on its way. */
static void test_tc_moves_to_tcp_late_tc_ignored(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x4444, "big.example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    run_for(w, 2, 0, 1.0); /* the first try times out, the second goes out */
    assert_int_equal(w->tx.n, 2);

    answer_req(&w->tx, 0, WIRE_TC, 0);
    assert_int_equal(w->tx.n, 3);
    struct fake_req *t = &w->tx.reqs[2];
    assert_int_equal(t->kind, TRY_TCP);
    assert_true(net_addr_equal(&t->to, &w->tx.reqs[0].to));
    assert_int_equal(w->client.sends, 0);
    assert_int_equal(w->stats.upstream_tc, 1);

    answer_req(&w->tx, 1, WIRE_TC, 0); /* the other server's late TC */
    assert_int_equal(w->client.sends, 0);
    assert_int_equal(query_pool_inflight(w->pool), 1);
    assert_true(t->live);

    answer_req(&w->tx, 2, 0, 3);
    assert_int_equal(w->client.sends, 1);
    struct wire_msg wm;
    assert_int_equal(wire_parse_response(w->client.got[0], w->client.got_len[0], &wm), WIRE_OK);
    assert_int_equal(wm.id, 0x4444);
    assert_false(wm.flags & WIRE_TC);
    assert_int_equal(wm.ancount, 3);
    assert_int_equal(live_count(&w->tx), 0);
    world_free(w);
}

/* TC=1 and no TCP to be had: the truncated answer is still an answer. */
static void test_tc_without_tcp_relays_truncated(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OFF);
    w->tx.refuse = 1u << TRY_TCP;
    uint8_t q[512];
    size_t qlen = make_query(q, 0x4545, "big.example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    answer_req(&w->tx, 0, WIRE_TC, 0);
    assert_int_equal(w->tx.n, 1);
    assert_int_equal(w->client.sends, 1);
    assert_true(wire_get16(w->client.got[0] + 2) & WIRE_TC);
    assert_int_equal(wire_get16(w->client.got[0]), 0x4545);
    assert_int_equal(w->stats.local_errors, 1);
    world_free(w);
}

/* A TCP client's query goes upstream over TCP; a UDP client gets an answer
 * too large for it truncated (TC=1, within 512 bytes without EDNS), a TCP
 * client gets it whole. */
static void test_client_transport_and_truncation(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x5151, "many.example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    answer_req(&w->tx, 0, 0, 40); /* 40 A records: 34 + 40 * 16 bytes */
    assert_int_equal(w->client.sends, 1);
    assert_true(w->client.got_len[0] <= 512);
    assert_true(wire_get16(w->client.got[0] + 2) & WIRE_TC);
    assert_int_equal(w->stats.truncated, 1);

    qlen = make_query(q, 0x5252, "many.example.org", WIRE_RD, 0);
    receive(w, &tcp_ops, q, qlen);
    assert_int_equal(w->tx.n, 2);
    assert_int_equal(w->tx.reqs[1].kind, TRY_TCP);
    answer_req(&w->tx, 1, 0, 40);
    assert_int_equal(w->client.sends, 2);
    assert_true(w->client.got_len[1] > 512);
    assert_false(wire_get16(w->client.got[1] + 2) & WIRE_TC);
    assert_int_equal(wire_get16(w->client.got[1] + 6), 40);
    assert_int_equal(w->stats.truncated, 1);
    world_free(w);
}

/* Opportunistic DoT that fails sends the same question to the same server
 * over Do53 at once, and counts the fallback by its reason. */
static void test_dot_failure_falls_back(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_OPPORTUNISTIC);
    make_good(w, w->srv[0]);
    make_good(w, w->srv[1]);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x6666, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.n, 1);
    assert_int_equal(w->tx.reqs[0].kind, TRY_DOT);
    struct route_server *s = server_of(w, &w->tx.reqs[0]);

    fail_req(&w->tx, 0, PROBE_CONNECT_REFUSED);
    assert_int_equal(w->tx.n, 2);
    assert_int_equal(w->tx.reqs[1].kind, TRY_UDP);
    assert_ptr_equal(server_of(w, &w->tx.reqs[1]), s);
    assert_int_equal(w->stats.fallback_connect, 1);
    struct probe_counters pc;
    probe_entry_counters(probe_table_find(w->probes, &s->addr), &pc);
    assert_int_equal(pc.fallbacks, 1);
    /* Not a strike against the server's Do53 health. */
    assert_int_equal(s->health->fails, 0);

    answer_req(&w->tx, 1, 0, 1);
    assert_int_equal(w->client.sends, 1);
    assert_int_equal(wire_get16(w->client.got[0]), 0x6666);
    world_free(w);
}

/* A DoT try past its RTO is slow, not failed: it keeps waiting on its
 * connection (nothing closed, nothing re-sent), and only in the last
 * attempt-timeout of the budget (dot-fallback = availability) does the
 * question also go over Do53; a DoT answer that comes first still wins. */
static void test_dot_slow_waits_then_falls_back_late(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OPPORTUNISTIC);
    make_good(w, w->srv[0]);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x6767, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.reqs[0].kind, TRY_DOT);
    double t0 = mono();
    run_for(w, 2, 0, 1.0);
    double took = mono() - t0;
    assert_int_equal(w->tx.n, 2);
    assert_true(took >= BUDGET - ATTEMPT - 0.02);
    assert_true(w->tx.reqs[0].live);             /* the DoT try still waits */
    assert_int_equal(w->tx.reqs[1].kind, TRY_UDP);
    assert_int_equal(w->stats.dot_slow, 1);
    assert_int_equal(w->stats.fallback_timeout, 1);
    assert_int_equal(w->stats.upstream_timeouts, 0);
    answer_req(&w->tx, 0, 0, 1);                 /* DoT answers after all */
    assert_int_equal(w->client.sends, 1);
    assert_true(w->tx.reqs[1].cancelled);
    world_free(w);
}

/* dot-fallback = privacy: a slow DoT answer is never re-sent in Do53; the
 * query gets SERVFAIL at the end of its budget. */
static void test_dot_slow_privacy_servfails(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OPPORTUNISTIC);
    w->view->cfg->dot_fallback = CONFIG_DOT_FALLBACK_PRIVACY;
    make_good(w, w->srv[0]);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x6868, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    double t0 = mono();
    run_for(w, 99, 1, 1.0);
    double took = mono() - t0;
    assert_int_equal(w->client.sends, 1);
    assert_true(took >= BUDGET - 0.02);
    assert_int_equal(WIRE_RCODE(wire_get16(w->client.got[0] + 2)), WIRE_SERVFAIL);
    assert_int_equal(w->tx.n, 1);                /* DoT only, never Do53 */
    assert_int_equal(w->stats.fallback_timeout, 0);
    world_free(w);
}

/* While a DoT answer is late, another server is asked at once, over DoT
 * only: a server that would be asked in Do53 waits for the fallback point. */
static void test_dot_slow_asks_others_over_dot_only(void **state)
{
    (void)state;
    struct world *w = world_new(3, SERVER_TLS_OPPORTUNISTIC);
    make_good(w, w->srv[0]);
    make_good(w, w->srv[1]);  /* srv[2] stays Unknown: Do53 */
    /* srv[0] first: fastest; srv[2] last: backed off. */
    health_rtt_sample(w->srv[0]->health, HEALTH_DOT, 0.001);
    health_rtt_sample(w->srv[1]->health, HEALTH_DOT, 0.002);
    health_rtt_sample(w->srv[2]->health, HEALTH_DO53, 0.003);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x6969, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.reqs[0].kind, TRY_DOT);
    run_for(w, 2, 0, 1.0);
    assert_int_equal(w->tx.reqs[1].kind, TRY_DOT);
    assert_false(net_addr_equal(&w->tx.reqs[0].to, &w->tx.reqs[1].to));
    double t0 = mono();
    run_for(w, 3, 0, 1.0);
    assert_int_equal(w->tx.n, 3);
    /* the plain try comes only at the fallback point, to a server waited on over DoT */
    assert_true(mono() - t0 >= BUDGET - ATTEMPT - 0.15);
    assert_int_equal(w->tx.reqs[2].kind, TRY_UDP);
    assert_true(net_addr_equal(&w->tx.reqs[2].to, &w->tx.reqs[0].to) ||
                net_addr_equal(&w->tx.reqs[2].to, &w->tx.reqs[1].to));
    answer_req(&w->tx, 2, 0, 1);
    assert_int_equal(w->client.sends, 1);
    world_free(w);
}

/* Strict servers never fall back to Do53: the next try is DoT to another. */
static void test_strict_no_fallback(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_STRICT);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x6868, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.reqs[0].kind, TRY_DOT);
    fail_req(&w->tx, 0, PROBE_TLS_FAILED);
    assert_int_equal(w->tx.n, 2);
    assert_int_equal(w->tx.reqs[1].kind, TRY_DOT);
    assert_false(net_addr_equal(&w->tx.reqs[0].to, &w->tx.reqs[1].to));
    assert_int_equal(w->stats.strict_failures, 1);
    assert_int_equal(w->stats.fallback_tls, 0);
    assert_int_equal(server_of(w, &w->tx.reqs[0])->health->fails, 1);
    answer_req(&w->tx, 1, 0, 1);
    assert_int_equal(w->client.sends, 1);
    world_free(w);
}

/* Answers that come back in another order than the queries went out each
 * reach the client under the right ID, with the right question and body. */
static void test_reordered_answers(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OFF);
    const char *names[3] = { "a.example.org", "b.example.org", "c.example.org" };
    uint8_t q[512];
    for (unsigned i = 0; i < 3; i++) {
        size_t qlen = make_query(q, (uint16_t)(0x7001 + i), names[i], WIRE_RD, 0);
        receive(w, &tcp_ops, q, qlen);
    }
    assert_int_equal(w->tx.n, 3);
    assert_int_equal(query_pool_inflight(w->pool), 3);
    /* Request i gets i + 1 records, so a mix-up shows in the count too. */
    unsigned order[3] = { 2, 0, 1 };
    for (unsigned k = 0; k < 3; k++)
        answer_req(&w->tx, order[k], 0, order[k] + 1);
    assert_int_equal(w->client.sends, 3);
    for (unsigned k = 0; k < 3; k++) {
        const uint8_t *a = w->client.got[k];
        struct wire_msg wm;
        assert_int_equal(wire_parse_response(a, w->client.got_len[k], &wm), WIRE_OK);
        unsigned i = order[k];
        assert_int_equal(wm.id, 0x7001 + i);
        char name[256];
        msg_qname(a, w->client.got_len[k], name, sizeof name);
        assert_int_equal(strncmp(name, names[i], strlen(names[i])), 0);
        assert_int_equal(wm.ancount, i + 1);
    }
    assert_int_equal(w->idles, 1);
    world_free(w);
}

/* UPDATE from a UDP client goes to the zone's server over UDP only (even
 * when the server is Good for DoT), byte for byte. */
static void test_update_from_udp_client(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OPPORTUNISTIC);
    make_good(w, w->srv[0]);
    uint8_t q[512];
    /* Control: a plain QUERY to the same server does go over DoT. */
    size_t qlen = make_query(q, 0x8080, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.reqs[0].kind, TRY_DOT);
    answer_req(&w->tx, 0, 0, 1);

    qlen = make_query(q, 0x8181, "example.org", (unsigned)WIRE_OP_UPDATE << 11, 1232);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.n, 2);
    struct fake_req *f = &w->tx.reqs[1];
    assert_int_equal(f->kind, TRY_UDP);
    assert_true(f->verbatim);
    assert_int_equal(f->len, qlen);
    assert_memory_equal(f->msg + 2, q + 2, qlen - 2); /* all but the ID */
    answer_req(&w->tx, 1, (unsigned)WIRE_OP_UPDATE << 11, 0);
    assert_int_equal(w->client.sends, 2);
    assert_int_equal(wire_get16(w->client.got[1]), 0x8181);

    /* Its retry after a timeout stays on UDP too. */
    qlen = make_query(q, 0x8282, "example.org", (unsigned)WIRE_OP_UPDATE << 11, 0);
    receive(w, &udp_ops, q, qlen);
    run_for(w, 4, 0, 1.0);
    assert_int_equal(w->tx.n, 4);
    assert_int_equal(w->tx.reqs[3].kind, TRY_UDP);
    assert_true(w->tx.reqs[3].verbatim);
    world_free(w);
}

/* A UDP client's UPDATE stays on UDP even when the answer has TC=1: the
 * server has already acted on it, so sending it again over TCP could
 * apply it twice (RFC 2136 updates need not be idempotent). The client
 * gets the truncated answer and decides, as it would without a forwarder. */
static void test_update_tc_relayed_not_resent(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x8383, "example.org", (unsigned)WIRE_OP_UPDATE << 11, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.n, 1);
    answer_req(&w->tx, 0, ((unsigned)WIRE_OP_UPDATE << 11) | WIRE_TC, 0);
    assert_int_equal(w->tx.n, 1);
    assert_int_equal(w->client.sends, 1);
    assert_int_equal(wire_get16(w->client.got[0]), 0x8383);
    assert_true(wire_get16(w->client.got[0] + 2) & WIRE_TC);
    assert_int_equal(w->stats.upstream_tc, 0);
    world_free(w);
}

/* Opcodes with nothing to forward get NOTIMP at once, without a try. */
static void test_status_opcode_notimp(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OFF);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x9090, "example.org", (unsigned)WIRE_OP_STATUS << 11, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.n, 0);
    assert_int_equal(w->client.sends, 1);
    assert_int_equal(w->client.dones, 1);
    assert_int_equal(WIRE_RCODE(wire_get16(w->client.got[0] + 2)), WIRE_NOTIMP);
    assert_int_equal(wire_get16(w->client.got[0]), 0x9090);
    assert_int_equal(w->stats.notimp_sent, 1);
    assert_int_equal(w->client.refs, 0); /* no query was started */
    world_free(w);
}

/* A send that fails at once (a local shortage: descriptors, memory, the
 * connection cap) is not waited for: the next server is tried in the same
 * call, and no server is held to blame. */
static void test_send_failure_tries_next_at_once(void **state)
{
    (void)state;
    struct world *w = world_new(2, SERVER_TLS_OFF);
    w->tx.refuse = 1u << TRY_UDP;
    uint8_t q[512];
    size_t qlen = make_query(q, 0x9191, "example.org", WIRE_RD, 0);
    receive(w, &udp_ops, q, qlen);
    assert_int_equal(w->tx.n, 0);
    /* Both servers were tried, within the query's limit of tries. */
    assert_true(w->stats.local_errors >= 2 && w->stats.local_errors <= 6);
    assert_int_equal(w->stats.upstream_errors, 0);
    assert_int_equal(w->srv[0]->health->fails, 0);
    assert_int_equal(w->srv[1]->health->fails, 0);
    assert_int_equal(w->client.sends, 0);
    /* Nothing to wait for but the deadline. */
    run_for(w, 0, 1, 2.0);
    assert_int_equal(w->client.sends, 1);
    assert_int_equal(WIRE_RCODE(wire_get16(w->client.got[0] + 2)), WIRE_SERVFAIL);
    world_free(w);
}

/* Freeing the pool answers what is still in flight with SERVFAIL and
 * cancels the tries; the client's references all come back. */
static void test_pool_free_fails_inflight(void **state)
{
    (void)state;
    struct world *w = world_new(1, SERVER_TLS_OFF);
    uint8_t q[512];
    for (unsigned i = 0; i < 3; i++) {
        size_t qlen = make_query(q, (uint16_t)(0xa0a0 + i), "example.org", WIRE_RD, 0);
        receive(w, &udp_ops, q, qlen);
    }
    assert_int_equal(w->client.refs, 3);
    query_fail_all(w->pool);
    assert_int_equal(w->client.sends, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(WIRE_RCODE(wire_get16(w->client.got[i] + 2)), WIRE_SERVFAIL);
    assert_int_equal(live_count(&w->tx), 0);
    assert_int_equal(w->client.unrefs, 3);
    world_free(w);
}

/* ---- on the real UDP pool ---------------------------------------------- */

struct real_tx { struct udp_pool *udp; };

static int rtx_send(void *arg, enum try_kind kind, struct treq *r, bool *opening)
{
    struct real_tx *t = arg;
    assert_int_equal(kind, TRY_UDP);
    *opening = false;
    return udp_pool_send(t->udp, r);
}

static void rtx_cancel(void *arg, enum try_kind kind, struct treq *r)
{
    struct real_tx *t = arg;
    (void)kind;
    udp_pool_cancel(t->udp, r);
}

static bool client_got(void *arg) { return ((struct fake_client *)arg)->sends > 0; }

/* The whole path over a real socket on 127.0.0.1: an answer to another
 * question with the right ID and source is not accepted, the right one
 * that follows is relayed. */
static void test_wrong_question_not_accepted(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rng rng;
    rng_init(&rng);
    struct stats stats;
    memset(&stats, 0, sizeof stats);
    struct flusher fl;
    flusher_init(&fl, loop);
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    struct probe_table *probes = probe_table_new(&pol, 1);
    struct health_table *health = health_table_new(8, 1);

    struct net_addr any;
    loopback(&any, 0);
    int srv_fd = net_udp_bind(&any);
    assert_true(srv_fd >= 0);
    struct net_addr srv_addr;
    sock_addr(srv_fd, &srv_addr);

    struct config *cfg = config_load(NULL, NULL, stderr);
    assert_non_null(cfg);
    cfg->timeout = 2.0;
    cfg->attempt_timeout = 1.0;
    struct route_table *rt = route_table_new(health);
    struct route_server *s = route_table_add_server(rt, &srv_addr, SERVER_TLS_OFF, NULL, true, true);
    assert_non_null(s);
    assert_int_equal(route_table_add(rt, ".", s), 0);
    struct view *v = view_new(cfg, rt);

    struct real_tx rtx;
    struct query_env env = { .loop = loop, .rng = &rng, .stats = &stats, .probes = probes,
                             .tx = { rtx_send, rtx_cancel, &rtx } };
    struct query_pool *pool = query_pool_new(&env);
    struct udp_pool_opts uo = { .sockets = 2, .socket_uses = 100, .edns_size = 1232 };
    rtx.udp = udp_pool_new(loop, &rng, &stats, &fl, query_pool_sink(pool), &uo);
    assert_non_null(rtx.udp);

    struct fake_client fc;
    memset(&fc, 0, sizeof fc);
    struct client c = { .ops = &udp_ops, .conn = &fc };
    loopback(&c.peer, 40000);
    uint8_t q[512];
    size_t qlen = make_query(q, 0x1357, "www.example.org", WIRE_RD, 0);
    ev_now_update(loop);
    query_receive(pool, v, &c, q, qlen);
    run_until(loop, 0.05, NULL, NULL); /* the batch leaves when the loop is about to block */

    assert_true(wait_readable(srv_fd, 1000));
    uint8_t buf[4096];
    struct net_addr from;
    from.len = sizeof from.u.ss;
    ssize_t n = recvfrom(srv_fd, buf, sizeof buf, 0, &from.u.sa, &from.len);
    assert_true(n >= (ssize_t)qlen);
    uint16_t wire_id = wire_get16(buf);

    uint8_t ans[512];
    size_t alen = make_answer(ans, wire_id, "evil.example.org", 0, 1);
    assert_int_equal(sendto(srv_fd, ans, alen, 0, &from.u.sa, from.len), (ssize_t)alen);
    run_until(loop, 0.1, client_got, &fc);
    assert_int_equal(fc.sends, 0);
    assert_int_equal(stats.spoofed_question, 1);

    alen = make_answer(ans, wire_id, "www.example.org", 0, 1);
    assert_int_equal(sendto(srv_fd, ans, alen, 0, &from.u.sa, from.len), (ssize_t)alen);
    run_until(loop, 1.0, client_got, &fc);
    assert_int_equal(fc.sends, 1);
    assert_int_equal(wire_get16(fc.got[0]), 0x1357);
    assert_int_equal(stats.answered, 1);

    query_pool_free(pool);
    udp_pool_free(rtx.udp);
    flusher_fini(&fl);
    view_unref(v);
    health_table_free(health);
    probe_table_free(probes);
    close(srv_fd);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_relayed_with_client_id),
        cmocka_unit_test(test_timeout_retries_next_server),
        cmocka_unit_test(test_servfail_after_budget),
        cmocka_unit_test(test_tc_moves_to_tcp_late_tc_ignored),
        cmocka_unit_test(test_tc_without_tcp_relays_truncated),
        cmocka_unit_test(test_client_transport_and_truncation),
        cmocka_unit_test(test_dot_failure_falls_back),
        cmocka_unit_test(test_dot_slow_waits_then_falls_back_late),
        cmocka_unit_test(test_dot_slow_privacy_servfails),
        cmocka_unit_test(test_dot_slow_asks_others_over_dot_only),
        cmocka_unit_test(test_strict_no_fallback),
        cmocka_unit_test(test_reordered_answers),
        cmocka_unit_test(test_update_from_udp_client),
        cmocka_unit_test(test_update_tc_relayed_not_resent),
        cmocka_unit_test(test_status_opcode_notimp),
        cmocka_unit_test(test_send_failure_tries_next_at_once),
        cmocka_unit_test(test_pool_free_fails_inflight),
        cmocka_unit_test(test_wrong_question_not_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
