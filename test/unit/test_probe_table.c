/* test/unit/test_probe_table.c: the per-IP DoT table on a fake clock, with
 * a fake scheduler that records which probes the table starts and cancels. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/net.h"
#include "probe/table.h"

#define DAY 86400.0
#define T0 1000000.0

struct fake_sched {
    struct probe_table *tab;
    struct probe_entry *started[64];
    unsigned nstarted;
    struct probe_entry *cancelled[16];
    unsigned ncancelled;
    /* If set, start() reports this outcome at once (re-entrancy check). */
    bool sync_report;
    enum probe_outcome sync_outcome;
};

static void fake_start(void *arg, struct probe_entry *e)
{
    struct fake_sched *f = arg;
    assert_true(f->nstarted < 64);
    f->started[f->nstarted++] = e;
    assert_int_equal(e->status, PROBE_BUSY);
    if (f->sync_report)
        probe_table_probe_done(f->tab, e, f->sync_outcome, "sync", false, probe_entry_time(f->tab, e, PROBE_T_INITIATED));
}

static void fake_cancel(void *arg, struct probe_entry *e)
{
    struct fake_sched *f = arg;
    f->cancelled[f->ncancelled++] = e;
}

static const struct probe_sched fake_ops = { fake_start, fake_cancel };

static struct net_addr addr(const char *s)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(s, 53, &a), 0);
    return a;
}

/* The table mk() made last: the entry readers below go through it (one
 * table per test). */
static struct probe_table *cur;

static double tm(const struct probe_entry *e, enum probe_time w) { return probe_entry_time(cur, e, w); }
static const char *reason_of(const struct probe_entry *e) { return probe_entry_reason(cur, e); }
static const char *zone_of(const struct probe_entry *e) { return probe_entry_zone(cur, e); }

static struct probe_counters cnt(const struct probe_entry *e)
{
    struct probe_counters c;
    probe_entry_counters(e, &c);
    return c;
}

/* The entry's address (port 853); four calls may be alive at once. */
static const struct net_addr *ip_of(const struct probe_entry *e)
{
    static struct net_addr ring[4];
    static unsigned n;
    struct net_addr *a = &ring[n++ % 4];
    probe_entry_addr(e, a);
    return a;
}

static struct probe_table *mk(struct fake_sched *f, struct probe_policy *pol)
{
    struct probe_policy def;
    if (!pol) {
        probe_policy_defaults(&def);
        pol = &def;
    }
    memset(f, 0, sizeof *f);
    f->tab = cur = probe_table_new(pol, 12345);
    assert_non_null(f->tab);
    probe_table_set_sched(f->tab, &fake_ops, f, T0);
    return f->tab;
}

/* Visits until the probe starts; returns the entry. */
static struct probe_entry *probe_started(struct fake_sched *f, const char *ip, double now)
{
    struct net_addr a = addr(ip);
    unsigned before = f->nstarted;
    struct probe_entry *e = NULL;
    for (int i = 0; i < 10 && f->nstarted == before; i++)
        e = probe_table_visit(f->tab, &a, "example.org", now);
    assert_int_equal(f->nstarted, before + 1);
    assert_ptr_equal(f->started[before], e);
    return e;
}

static struct probe_entry *make_good(struct fake_sched *f, const char *ip, double now)
{
    struct probe_entry *e = probe_started(f, ip, now);
    probe_table_probe_done(f->tab, e, PROBE_OK, NULL, true, now + 0.1);
    assert_int_equal(e->status, PROBE_GOOD);
    return e;
}

static void test_defaults_and_strings(void **state)
{
    struct probe_policy p;
    probe_policy_defaults(&p);
    assert_int_equal(p.probe_after_visits, 2);
    assert_true(p.probe_on_start);
    assert_int_equal(p.max_busy_probes, 16);
    assert_true(p.max_queued_probes > 0);
    assert_true(p.probe_timeout == 4.0);
    assert_true(p.persistence == 3 * DAY);
    assert_true(p.damping == DAY);
    assert_int_equal(p.dot_fail_threshold, 3);
    assert_int_equal(p.max_entries, 4096);
    for (int i = 0; i < PROBE_OUTCOME_MAX; i++) {
        assert_string_not_equal(probe_outcome_str(i), "?");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(probe_outcome_str(i), probe_outcome_str(j));
    }
    assert_string_equal(probe_outcome_str(PROBE_CONNECT_TIMEOUT), "connect-timeout");
    assert_string_equal(probe_status_str(PROBE_UNKNOWN), "unknown");
    assert_string_equal(probe_status_str(PROBE_BUSY), "busy");
    assert_string_equal(probe_status_str(PROBE_GOOD), "good");
    assert_string_equal(probe_status_str(PROBE_BAD), "bad");
    assert_string_equal(probe_status_str(PROBE_STATUS_MAX), "?");
}

static void test_visit_threshold(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = probe_table_visit(t, &a, "example.org", T0);
    assert_non_null(e);
    assert_int_equal(e->status, PROBE_UNKNOWN);
    assert_int_equal(e->visits, 1);
    assert_int_equal(f.nstarted, 0);
    assert_false(probe_table_use_dot(t, e, T0));
    assert_string_equal(zone_of(e), "example.org");
    assert_int_equal(net_addr_port(ip_of(e)), 853);
    assert_true(tm(e, PROBE_T_FIRST_SEEN) == T0);

    /* The second visit, 10 s later, reaches probe_after_visits = 2. */
    assert_ptr_equal(probe_table_visit(t, &a, "other.zone", T0 + 10), e);
    assert_int_equal(e->status, PROBE_BUSY);
    assert_int_equal(f.nstarted, 1);
    assert_ptr_equal(f.started[0], e);
    assert_true(tm(e, PROBE_T_INITIATED) == T0 + 10);
    assert_int_equal(cnt(e).probes, 1);
    assert_string_equal(zone_of(e), "example.org");  /* first zone kept */
    assert_false(probe_table_use_dot(t, e, T0 + 10));
    assert_int_equal(probe_table_running(t), 1);

    /* Busy: more visits start nothing. */
    probe_table_visit(t, &a, NULL, T0 + 11);
    assert_int_equal(f.nstarted, 1);
    assert_int_equal(e->visits, 3);
    probe_table_free(t);
}

static void test_visit_window_expires(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    probe_table_visit(t, &a, NULL, T0);
    /* Visits further apart than the damping window do not add up. */
    struct probe_entry *e = probe_table_visit(t, &a, NULL, T0 + DAY + 1);
    assert_int_equal(e->status, PROBE_UNKNOWN);
    assert_int_equal(f.nstarted, 0);
    assert_int_equal(e->visits, 2);
    probe_table_visit(t, &a, NULL, T0 + DAY + 2);
    assert_int_equal(e->status, PROBE_BUSY);
    assert_string_equal(zone_of(e), ".");
    probe_table_free(t);
}

/* A question an Unknown IP answered over Do53 is kept for its probe; none
 * for an IP not in the table or already Good; another IP's is not it. */
static void test_noted_question(void **state)
{
    (void)state;
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    const uint8_t www[] = "\3www\7example\3org";   /* with its root label: 17 bytes */
    uint8_t name[255];
    size_t len;
    uint16_t qtype;
    bool rd;
    struct net_addr a = addr("192.0.2.1"), b = addr("192.0.2.2"), c = addr("192.0.2.3");
    probe_table_note_question(t, &a, www, sizeof www, 1, false);  /* not in the table yet */
    assert_false(probe_table_question(t, &a, name, &len, &qtype, &rd));
    probe_table_visit(t, &a, "example.org", T0);                  /* Unknown now */
    probe_table_note_question(t, &a, www, sizeof www, 28, false);
    assert_true(probe_table_question(t, &a, name, &len, &qtype, &rd));
    assert_int_equal(len, sizeof www);
    assert_memory_equal(name, www, sizeof www);
    assert_int_equal(qtype, 28);
    assert_false(rd);
    assert_false(probe_table_question(t, &b, name, &len, &qtype, &rd));
    struct probe_entry *e = make_good(&f, "192.0.2.3", T0);
    (void)e;
    probe_table_note_question(t, &c, www, sizeof www, 1, true);   /* Good: nothing to probe */
    assert_false(probe_table_question(t, &c, name, &len, &qtype, &rd));
    probe_table_free(t);
}

static void test_probe_ok_and_persistence(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct probe_entry *e = probe_started(&f, "192.0.2.1", T0);
    probe_table_probe_done(t, e, PROBE_OK, NULL, true, T0 + 1);
    assert_int_equal(e->status, PROBE_GOOD);
    assert_true(tm(e, PROBE_T_COMPLETED) == T0 + 1);
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == T0 + 1);
    assert_true(e->verified);
    assert_int_equal(cnt(e).successes, 1);
    assert_int_equal(probe_table_running(t), 0);
    assert_true(probe_table_use_dot(t, e, T0 + 1));
    assert_true(probe_entry_expiry(t, e) == T0 + 1 + 3 * DAY);

    /* Within persistence: visits start nothing and DoT is used. */
    struct net_addr a = addr("192.0.2.1");
    probe_table_visit(t, &a, NULL, T0 + 3 * DAY);
    assert_int_equal(f.nstarted, 1);
    assert_true(probe_table_use_dot(t, e, T0 + 3 * DAY));
    /* A DoT answer pushes persistence out. */
    probe_table_dot_result(t, &a, PROBE_OK, NULL, T0 + 2 * DAY);
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == T0 + 2 * DAY);
    assert_true(probe_table_use_dot(t, e, T0 + 5 * DAY - 1));
    assert_false(probe_table_use_dot(t, e, T0 + 5 * DAY));
    assert_int_equal(e->status, PROBE_GOOD);

    /* Past persistence: the next visit goes Unknown and re-probes at once. */
    probe_table_visit(t, &a, NULL, T0 + 5 * DAY + 5);
    assert_int_equal(e->status, PROBE_BUSY);
    assert_int_equal(f.nstarted, 2);
    assert_int_equal(cnt(e).probes, 2);
    probe_table_free(t);
}

static void test_probe_failures_and_damping(void **state)
{
    static const enum probe_outcome fails[] = {
        PROBE_CONNECT_REFUSED, PROBE_CONNECT_TIMEOUT, PROBE_TLS_FAILED,
        PROBE_QUERY_TIMEOUT, PROBE_BAD_ANSWER,
    };
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        struct fake_sched f;
        struct probe_table *t = mk(&f, NULL);
        struct net_addr a = addr("2001:db8::53");
        struct probe_entry *e = probe_started(&f, "2001:db8::53", T0);
        probe_table_probe_done(t, e, fails[i], "why not", false, T0 + 4);
        assert_int_equal(e->status, PROBE_BAD);
        assert_int_equal(e->last_outcome, fails[i]);
        assert_int_equal(cnt(e).failures[fails[i]], 1);
        assert_int_equal(probe_table_totals(t)->failures[fails[i]], 1);
        assert_non_null(strstr(reason_of(e), probe_outcome_str(fails[i])));
        assert_non_null(strstr(reason_of(e), "why not"));
        assert_true(tm(e, PROBE_T_COMPLETED) == T0 + 4);
        assert_true(probe_entry_expiry(t, e) == T0 + 4 + DAY);
        assert_false(probe_table_use_dot(t, e, T0 + 5));

        /* Damped: visits inside the day start nothing. */
        probe_table_visit(t, &a, NULL, T0 + 4 + DAY - 1);
        probe_table_visit(t, &a, NULL, T0 + 4 + DAY - 0.5);
        assert_int_equal(e->status, PROBE_BAD);
        assert_int_equal(f.nstarted, 1);
        /* After the day, the next visit re-probes. */
        probe_table_visit(t, &a, NULL, T0 + 4 + DAY);
        assert_int_equal(e->status, PROBE_BUSY);
        assert_int_equal(f.nstarted, 2);
        probe_table_probe_done(t, e, PROBE_OK, NULL, false, T0 + 5 + DAY);
        assert_int_equal(e->status, PROBE_GOOD);
        probe_table_free(t);
    }
}

static void test_local_error_back_to_unknown(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = probe_started(&f, "192.0.2.1", T0);
    probe_table_probe_done(t, e, PROBE_LOCAL_ERROR, "EMFILE", false, T0 + 1);
    assert_int_equal(e->status, PROBE_UNKNOWN);
    /* Not damped, but the visit count starts again. */
    probe_table_visit(t, &a, NULL, T0 + 2);
    assert_int_equal(f.nstarted, 1);
    probe_table_visit(t, &a, NULL, T0 + 3);
    assert_int_equal(f.nstarted, 2);
    probe_table_free(t);
}

static void test_stale_report_ignored(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct probe_entry *e = make_good(&f, "192.0.2.1", T0);
    /* A second report for the same probe changes nothing. */
    probe_table_probe_done(t, e, PROBE_CONNECT_REFUSED, NULL, false, T0 + 2);
    assert_int_equal(e->status, PROBE_GOOD);
    assert_int_equal(cnt(e).failures[PROBE_CONNECT_REFUSED], 0);
    assert_int_equal(probe_table_running(t), 0);
    probe_table_free(t);
}

static void test_dot_results_on_good(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = make_good(&f, "192.0.2.1", T0);

    /* Two failures, then an answer: the run is broken, still Good. */
    probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, "2 s", T0 + 10);
    probe_table_dot_result(t, &a, PROBE_BAD_ANSWER, "garbage", T0 + 11);
    assert_int_equal(e->status, PROBE_GOOD);
    assert_int_equal(e->dot_consecutive_failures, 2);
    probe_table_dot_result(t, &a, PROBE_OK, NULL, T0 + 12);
    assert_int_equal(e->dot_consecutive_failures, 0);
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == T0 + 12);
    /* A clean close changes nothing. */
    probe_table_dot_result(t, &a, PROBE_CLOSED_CLEAN, NULL, T0 + 13);
    assert_int_equal(e->status, PROBE_GOOD);
    assert_int_equal(e->dot_consecutive_failures, 0);
    assert_true(tm(e, PROBE_T_LAST_ACTIVITY) == T0 + 13);
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == T0 + 12);

    /* Three in a row: Bad, damped from the third failure. */
    probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, NULL, T0 + 20);
    probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, NULL, T0 + 21);
    assert_int_equal(e->status, PROBE_GOOD);
    probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, "no answer", T0 + 22);
    assert_int_equal(e->status, PROBE_BAD);
    assert_true(tm(e, PROBE_T_COMPLETED) == T0 + 22);
    assert_false(probe_table_use_dot(t, e, T0 + 23));
    assert_int_equal(cnt(e).dot_queries, 6);
    /* Fallbacks are the data path's to count (it knows if it re-sent). */
    assert_int_equal(cnt(e).fallbacks, 0);
    assert_int_equal(probe_table_totals(t)->fallbacks, 0);
    assert_int_equal(cnt(e).failures[PROBE_QUERY_TIMEOUT], 4);
    assert_int_equal(cnt(e).failures[PROBE_BAD_ANSWER], 1);

    /* Failures on a Bad entry only count. */
    probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, NULL, T0 + 30);
    assert_int_equal(e->status, PROBE_BAD);
    assert_true(tm(e, PROBE_T_COMPLETED) == T0 + 22);
    probe_table_count_fallbacks(t, &a, 4);
    assert_int_equal(cnt(e).fallbacks, 4);
    assert_int_equal(probe_table_totals(t)->fallbacks, 4);
    /* The data path's sequence for one failed query: result, then one re-send. */
    probe_table_dot_result(t, &a, PROBE_BAD_ANSWER, "garbage", T0 + 31);
    probe_table_count_fallbacks(t, &a, 1);
    assert_int_equal(cnt(e).fallbacks, 5);
    assert_int_equal(probe_table_totals(t)->fallbacks, 5);
    probe_table_free(t);
}

static void test_dot_reset_counts_like_bad_answer(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = make_good(&f, "192.0.2.1", T0);
    assert_string_equal(probe_outcome_str(PROBE_RESET), "reset");

    /* A reset is a failure of the run, not of the server at once. */
    probe_table_dot_result(t, &a, PROBE_RESET, "Connection reset by peer", T0 + 10);
    assert_int_equal(e->status, PROBE_GOOD);
    assert_int_equal(e->dot_consecutive_failures, 1);
    assert_int_equal(e->last_outcome, PROBE_RESET);
    assert_string_equal(reason_of(e), "reset: Connection reset by peer");
    probe_table_dot_result(t, &a, PROBE_OK, NULL, T0 + 11);
    assert_int_equal(e->dot_consecutive_failures, 0);

    /* Mixed with the other query failures, the threshold (3) makes it Bad. */
    probe_table_dot_result(t, &a, PROBE_RESET, NULL, T0 + 20);
    probe_table_dot_result(t, &a, PROBE_BAD_ANSWER, "garbage", T0 + 21);
    assert_int_equal(e->status, PROBE_GOOD);
    probe_table_dot_result(t, &a, PROBE_RESET, "read error", T0 + 22);
    assert_int_equal(e->status, PROBE_BAD);
    assert_true(tm(e, PROBE_T_COMPLETED) == T0 + 22);
    assert_string_equal(reason_of(e), "reset: read error");
    assert_int_equal(cnt(e).failures[PROBE_RESET], 3);
    assert_int_equal(probe_table_totals(t)->failures[PROBE_RESET], 3);
    assert_int_equal(cnt(e).dot_queries, 5);
    assert_int_equal(cnt(e).fallbacks, 0);
    probe_table_free(t);
}

static void test_dot_connect_failures_make_bad(void **state)
{
    static const enum probe_outcome kinds[] = { PROBE_CONNECT_REFUSED, PROBE_CONNECT_TIMEOUT, PROBE_TLS_FAILED };
    for (size_t i = 0; i < 3; i++) {
        struct fake_sched f;
        struct probe_table *t = mk(&f, NULL);
        struct net_addr a = addr("192.0.2.9");
        struct probe_entry *e = make_good(&f, "192.0.2.9", T0);
        probe_table_dot_result(t, &a, kinds[i], "reset", T0 + 50);
        assert_int_equal(e->status, PROBE_BAD);
        assert_true(tm(e, PROBE_T_COMPLETED) == T0 + 50);
        assert_int_equal(e->last_outcome, kinds[i]);
        probe_table_free(t);
    }
    /* Results for IPs the table does not know are ignored. */
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr b = addr("192.0.2.10");
    probe_table_dot_result(t, &b, PROBE_TLS_FAILED, NULL, T0);
    assert_int_equal(probe_table_size(t), 0);
    probe_table_free(t);
}

static void test_dot_results_while_reprobing(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = make_good(&f, "192.0.2.1", T0);
    assert_int_equal(probe_table_request(t, &a, NULL, T0 + 5, true), 0);
    assert_int_equal(e->status, PROBE_BUSY);
    /* A late data-path failure must not be taken for the probe's result. */
    probe_table_dot_result(t, &a, PROBE_TLS_FAILED, NULL, T0 + 6);
    assert_int_equal(e->status, PROBE_BUSY);
    assert_int_equal(probe_table_running(t), 1);
    probe_table_probe_done(t, e, PROBE_OK, NULL, false, T0 + 7);
    assert_int_equal(e->status, PROBE_GOOD);
    probe_table_free(t);
}

static void test_request(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    /* Probe-on-start: no visits needed, no visit counted. */
    assert_int_equal(probe_table_request(t, &a, "zone.example", T0, false), 0);
    struct probe_entry *e = probe_table_find(t, &a);
    assert_non_null(e);
    assert_int_equal(e->visits, 0);
    assert_int_equal(e->status, PROBE_BUSY);
    assert_int_equal(f.nstarted, 1);
    assert_int_equal(probe_table_request(t, &a, NULL, T0, false), 0);  /* already busy */
    assert_int_equal(f.nstarted, 1);
    probe_table_probe_done(t, e, PROBE_TLS_FAILED, NULL, false, T0 + 1);
    /* Bad and damped: only a forced recheck probes. */
    assert_int_equal(probe_table_request(t, &a, NULL, T0 + 2, false), -1);
    assert_int_equal(probe_table_request(t, &a, NULL, T0 + 2, true), 0);
    assert_int_equal(f.nstarted, 2);
    probe_table_probe_done(t, e, PROBE_OK, NULL, false, T0 + 3);
    assert_int_equal(probe_table_request(t, &a, NULL, T0 + 4, false), -1);  /* Good */
    assert_int_equal(e->status, PROBE_GOOD);
    assert_int_equal(probe_table_request(t, &a, NULL, T0 + 4, true), 0);
    assert_int_equal(f.nstarted, 3);
    probe_table_free(t);
}

static void test_busy_limit_and_queue(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.probe_after_visits = 1;
    pol.max_busy_probes = 2;
    pol.max_queued_probes = 2;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    const char *ips[] = { "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5" };
    struct probe_entry *e[5];
    for (int i = 0; i < 5; i++) {
        struct net_addr a = addr(ips[i]);
        e[i] = probe_table_visit(t, &a, NULL, T0 + i);
    }
    /* Two run, two wait (Busy), the fifth found the queue full. */
    assert_int_equal(f.nstarted, 2);
    assert_ptr_equal(f.started[0], e[0]);
    assert_ptr_equal(f.started[1], e[1]);
    assert_int_equal(probe_table_running(t), 2);
    assert_int_equal(probe_table_queued(t), 2);
    assert_int_equal(e[2]->status, PROBE_BUSY);
    assert_int_equal(e[3]->status, PROBE_BUSY);
    assert_int_equal(e[4]->status, PROBE_UNKNOWN);
    assert_int_equal(probe_table_count(t, PROBE_BUSY), 4);
    assert_int_equal(probe_table_count(t, PROBE_UNKNOWN), 1);

    /* A finished probe lets the oldest waiting one start (FIFO). */
    probe_table_probe_done(t, e[1], PROBE_OK, NULL, false, T0 + 10);
    assert_int_equal(f.nstarted, 3);
    assert_ptr_equal(f.started[2], e[2]);
    assert_true(tm(e[2], PROBE_T_INITIATED) == T0 + 10);
    assert_int_equal(probe_table_queued(t), 1);
    /* Now there is room: the fifth IP queues on its next visit. */
    struct net_addr a4 = addr(ips[4]);
    probe_table_visit(t, &a4, NULL, T0 + 11);
    assert_int_equal(e[4]->status, PROBE_BUSY);
    assert_int_equal(probe_table_queued(t), 2);
    probe_table_probe_done(t, e[0], PROBE_CONNECT_REFUSED, NULL, false, T0 + 12);
    probe_table_probe_done(t, e[2], PROBE_OK, NULL, false, T0 + 13);
    assert_int_equal(f.nstarted, 5);
    assert_ptr_equal(f.started[3], e[3]);
    assert_ptr_equal(f.started[4], e[4]);
    assert_int_equal(probe_table_queued(t), 0);
    assert_int_equal(probe_table_running(t), 2);
    assert_int_equal(probe_table_count(t, PROBE_GOOD), 2);
    assert_int_equal(probe_table_count(t, PROBE_BAD), 1);
    probe_table_free(t);
}

static void test_no_scheduler_queues_then_starts(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.probe_after_visits = 1;
    struct fake_sched f;
    memset(&f, 0, sizeof f);
    struct probe_table *t = f.tab = cur = probe_table_new(&pol, 1);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = probe_table_visit(t, &a, NULL, T0);
    assert_int_equal(e->status, PROBE_BUSY);
    assert_int_equal(probe_table_queued(t), 1);
    probe_table_set_sched(t, &fake_ops, &f, T0 + 1);
    assert_int_equal(f.nstarted, 1);
    assert_true(tm(e, PROBE_T_INITIATED) == T0 + 1);
    probe_table_free(t);
}

static void test_sync_report_from_start(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.probe_after_visits = 1;
    pol.max_busy_probes = 1;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    f.sync_report = true;
    f.sync_outcome = PROBE_CONNECT_REFUSED;
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = probe_table_visit(t, &a, NULL, T0);
    assert_int_equal(f.nstarted, 1);
    assert_int_equal(e->status, PROBE_BAD);
    assert_int_equal(probe_table_running(t), 0);
    /* Queued probes drain through the same path without a leak of slots. */
    f.sync_report = false;
    struct net_addr b = addr("192.0.2.2"), c = addr("192.0.2.3");
    struct probe_entry *eb = probe_table_visit(t, &b, NULL, T0 + 1);
    struct probe_entry *ec = probe_table_visit(t, &c, NULL, T0 + 1);
    assert_int_equal(eb->status, PROBE_BUSY);
    assert_int_equal(ec->status, PROBE_BUSY);
    assert_int_equal(probe_table_queued(t), 1);
    f.sync_report = true;
    f.sync_outcome = PROBE_TLS_FAILED;
    probe_table_probe_done(t, eb, PROBE_OK, NULL, false, T0 + 2);
    assert_int_equal(eb->status, PROBE_GOOD);
    assert_int_equal(ec->status, PROBE_BAD);
    assert_int_equal(probe_table_running(t), 0);
    assert_int_equal(probe_table_queued(t), 0);
    probe_table_free(t);
}

static void test_lru_eviction_never_busy(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.max_entries = 3;
    pol.probe_after_visits = 5;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    struct net_addr a = addr("192.0.2.1"), b = addr("192.0.2.2"), c = addr("192.0.2.3"),
                    d = addr("192.0.2.4"), x = addr("192.0.2.5");
    assert_int_equal(probe_table_request(t, &a, NULL, T0, false), 0);  /* Busy, oldest */
    struct probe_entry *ea = probe_table_find(t, &a);
    assert_int_equal(ea->status, PROBE_BUSY);
    probe_table_visit(t, &b, NULL, T0 + 1);
    probe_table_visit(t, &c, NULL, T0 + 2);
    assert_int_equal(probe_table_size(t), 3);
    /* b is visited again: c is now the least recent non-Busy entry. */
    probe_table_visit(t, &b, NULL, T0 + 3);
    assert_non_null(probe_table_visit(t, &d, NULL, T0 + 4));
    assert_int_equal(probe_table_size(t), 3);
    assert_ptr_equal(probe_table_find(t, &a), ea);
    assert_non_null(probe_table_find(t, &b));
    assert_null(probe_table_find(t, &c));
    assert_non_null(probe_table_find(t, &d));
    assert_int_equal(ea->status, PROBE_BUSY);

    /* Iteration: most recently visited first. */
    const struct probe_entry *it = probe_table_first(t);
    assert_true(net_ip_equal(ip_of(it), &d));
    it = probe_table_next(cur, it);
    assert_true(net_ip_equal(ip_of(it), &b));
    it = probe_table_next(cur, it);
    assert_ptr_equal(it, ea);
    assert_null(probe_table_next(cur, it));

    /* All Busy: no room, the visit gets NULL (the query goes Do53). */
    assert_int_equal(probe_table_request(t, &b, NULL, T0 + 5, false), 0);
    assert_int_equal(probe_table_request(t, &d, NULL, T0 + 6, false), 0);
    assert_null(probe_table_visit(t, &x, NULL, T0 + 7));
    assert_int_equal(probe_table_size(t), 3);
    assert_int_equal(probe_table_count(t, PROBE_BUSY), 3);
    /* A probe ends: its entry can go, and the newcomer gets its place. */
    probe_table_probe_done(t, ea, PROBE_TLS_FAILED, NULL, false, T0 + 8);
    assert_non_null(probe_table_visit(t, &x, NULL, T0 + 9));
    assert_null(probe_table_find(t, &a));
    probe_table_free(t);
}

static void test_v4_v6_apart(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr v4 = addr("192.0.2.1"), v4port = addr("192.0.2.1:5300"),
                    mapped = addr("::ffff:192.0.2.1"), v6 = addr("2001:db8::1"),
                    v6b = addr("[2001:db8::1]:53"), v6other = addr("2001:db8::2");
    struct probe_entry *e4 = probe_table_visit(t, &v4, NULL, T0);
    struct probe_entry *e6 = probe_table_visit(t, &v6, NULL, T0);
    assert_ptr_not_equal(e4, e6);
    assert_int_equal(net_addr_family(ip_of(e4)), AF_INET);
    assert_int_equal(net_addr_family(ip_of(e6)), AF_INET6);
    /* The port does not matter; a v4-mapped address is the v4 server. */
    assert_ptr_equal(probe_table_find(t, &v4port), e4);
    assert_ptr_equal(probe_table_find(t, &mapped), e4);
    assert_ptr_equal(probe_table_find(t, &v6b), e6);
    assert_null(probe_table_find(t, &v6other));
    assert_int_equal(probe_table_size(t), 2);
    /* Status is per entry: v6 Good, v4 untouched. */
    probe_table_visit(t, &v6, NULL, T0 + 1);
    probe_table_probe_done(t, e6, PROBE_OK, NULL, false, T0 + 2);
    assert_true(probe_table_use_dot(t, e6, T0 + 3));
    assert_false(probe_table_use_dot(t, e4, T0 + 3));
    assert_int_equal(e4->status, PROBE_UNKNOWN);
    probe_table_free(t);
}

static void test_many_entries_hash(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.max_entries = 1000;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    char buf[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof buf, "10.%d.%d.1", i / 256, i % 256);
        struct net_addr a = addr(buf);
        assert_non_null(probe_table_visit(t, &a, NULL, T0 + i));
    }
    assert_int_equal(probe_table_size(t), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof buf, "10.%d.%d.1", i / 256, i % 256);
        struct net_addr a = addr(buf);
        const struct probe_entry *e = probe_table_find(t, &a);
        assert_non_null(e);
        assert_true(net_ip_equal(ip_of(e), &a));
    }
    /* One more evicts exactly the oldest. */
    struct net_addr n = addr("10.200.0.1"), oldest = addr("10.0.0.1"), second = addr("10.0.1.1");
    probe_table_visit(t, &n, NULL, T0 + 2000);
    assert_int_equal(probe_table_size(t), 1000);
    assert_null(probe_table_find(t, &oldest));
    assert_non_null(probe_table_find(t, &second));
    probe_table_free(t);
}

static void test_forget(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.probe_after_visits = 1;
    pol.max_busy_probes = 1;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    struct net_addr a = addr("192.0.2.1"), b = addr("192.0.2.2"), c = addr("192.0.2.3"),
                    z = addr("192.0.2.99");
    struct probe_entry *ea = probe_table_visit(t, &a, NULL, T0);  /* running */
    struct probe_entry *eb = probe_table_visit(t, &b, NULL, T0);  /* queued */
    struct probe_entry *ec = probe_table_visit(t, &c, NULL, T0);  /* queued */
    assert_int_equal(probe_table_running(t), 1);
    assert_int_equal(probe_table_queued(t), 2);
    assert_int_equal(probe_table_forget(t, &z), -1);

    /* A queued entry leaves the queue. */
    assert_int_equal(probe_table_forget(t, &b), 0);
    assert_null(probe_table_find(t, &b));
    assert_int_equal(probe_table_queued(t), 1);
    assert_int_equal(f.ncancelled, 0);
    /* A running one is cancelled, and its slot goes to the next in line. */
    assert_int_equal(probe_table_forget(t, &a), 0);
    assert_int_equal(f.ncancelled, 1);
    assert_ptr_equal(f.cancelled[0], ea);
    assert_int_equal(f.nstarted, 2);
    assert_ptr_equal(f.started[1], ec);
    assert_int_equal(probe_table_running(t), 1);
    assert_int_equal(probe_table_size(t), 1);
    (void)eb;

    probe_table_visit(t, &a, NULL, T0 + 1);  /* back, as a new entry: queued */
    assert_int_equal(probe_table_size(t), 2);
    struct probe_counters before = *probe_table_totals(t);
    probe_table_forget_all(t);
    assert_int_equal(probe_table_size(t), 0);
    assert_int_equal(probe_table_running(t), 0);
    assert_int_equal(probe_table_queued(t), 0);
    assert_int_equal(f.ncancelled, 2);
    for (int s = 0; s < PROBE_STATUS_MAX; s++)
        assert_int_equal(probe_table_count(t, s), 0);
    /* Totals keep counting what forgotten entries did. */
    assert_int_equal(probe_table_totals(t)->probes, before.probes);
    assert_int_equal(before.probes, 2);
    probe_table_free(t);
}

/* ---- the compact entry: string pool, ring, slabs, times ------------------- */

static void test_reason_longer_than_old_field(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = probe_started(&f, "192.0.2.1", T0);
    /* 300 bytes: the entry used to keep 111. */
    char longer[301];
    for (int i = 0; i < 300; i++)
        longer[i] = (char)('a' + i % 26);
    longer[300] = 0;
    probe_table_probe_done(t, e, PROBE_TLS_FAILED, longer, false, T0 + 1);
    const char *r = reason_of(e);
    assert_int_equal(strlen(r), strlen("tls-failed: ") + 300);
    assert_memory_equal(r, "tls-failed: ", 12);
    assert_string_equal(r + 12, longer);
    /* The dump carries it whole. */
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(probe_table_dump(t, out), 0);
    fclose(out);
    assert_non_null(strstr(buf, longer));
    free(buf);

    /* Past PROBE_REASON_MAX it is cut there. */
    char huge[2000];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    probe_table_dot_result(t, &a, PROBE_CONNECT_TIMEOUT, huge, T0 + 2);
    assert_int_equal(strlen(reason_of(e)), PROBE_REASON_MAX);
    assert_memory_equal(reason_of(e), "connect-timeout: xxx", 20);
    probe_table_free(t);
}

static void test_strings_shared_and_released(void **state)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.max_entries = 300;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    size_t bytes;
    assert_int_equal(probe_table_strings(t, &bytes), 0);
    assert_int_equal(bytes, 0);

    /* 300 entries, three zones, two reasons: five strings. */
    static const char *const zones[] = { "example.org.", "corp.example.", "." };
    char buf[64];
    for (int i = 0; i < 300; i++) {
        snprintf(buf, sizeof buf, "198.51.100.%d", i % 250);
        if (i >= 250)
            snprintf(buf, sizeof buf, "2001:db8::%x", i);
        struct net_addr a = addr(buf);
        assert_non_null(probe_table_visit(t, &a, zones[i % 3], T0));
        if (i % 2)
            probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, i % 4 == 1 ? "slow" : "slower", T0);
    }
    assert_int_equal(probe_table_size(t), 300);
    assert_int_equal(probe_table_strings(t, &bytes), 5);
    assert_int_equal(bytes, strlen("example.org.") + strlen("corp.example.") + strlen(".") +
                                strlen("query-timeout: slow") + strlen("query-timeout: slower"));
    struct net_addr a0 = addr("198.51.100.0");
    assert_string_equal(zone_of(probe_table_find(t, &a0)), "example.org.");

    /* A new reason replaces the old one; the old string goes with its last user. */
    struct net_addr a1 = addr("198.51.100.1");
    probe_table_dot_result(t, &a1, PROBE_BAD_ANSWER, "garbage", T0 + 1);
    assert_string_equal(reason_of(probe_table_find(t, &a1)), "bad-answer: garbage");
    assert_int_equal(probe_table_strings(t, NULL), 6);

    /* Eviction gives the evicted entry's strings back: a new zone for 300
     * new IPs evicts every old entry, so only the new zone is left. */
    for (int i = 0; i < 300; i++) {
        snprintf(buf, sizeof buf, "203.0.113.%d", i % 250);
        if (i >= 250)
            snprintf(buf, sizeof buf, "2001:db8:1::%x", i);
        struct net_addr a = addr(buf);
        assert_non_null(probe_table_visit(t, &a, "new.example.", T0 + 2));
    }
    assert_int_equal(probe_table_size(t), 300);
    assert_null(probe_table_find(t, &a0));
    assert_int_equal(probe_table_strings(t, &bytes), 1);
    assert_int_equal(bytes, strlen("new.example."));

    /* Forget one: its zone stays for the others; forget all: nothing left. */
    struct net_addr n0 = addr("203.0.113.0");
    assert_int_equal(probe_table_forget(t, &n0), 0);
    assert_int_equal(probe_table_strings(t, NULL), 1);
    probe_table_forget_all(t);
    assert_int_equal(probe_table_size(t), 0);
    assert_int_equal(probe_table_strings(t, &bytes), 0);
    assert_int_equal(bytes, 0);
    assert_null(probe_table_first(t));
    /* The table works as new afterwards. */
    assert_non_null(probe_table_visit(t, &n0, "again.", T0 + 3));
    assert_string_equal(zone_of(probe_table_find(t, &n0)), "again.");
    assert_int_equal(probe_table_strings(t, NULL), 1);
    probe_table_free(t);
}

static void test_queue_ring_order(void **state)
{
    /* One probe at a time, 32 waiting: the ring grows past its first size
     * (16), fills, wraps, and keeps FIFO order when an entry in the middle
     * is forgotten. */
    enum { Q = 32, MORE = 40 };
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.probe_after_visits = 1;
    pol.max_busy_probes = 1;
    pol.max_queued_probes = Q;
    struct fake_sched f;
    struct probe_table *t = mk(&f, &pol);
    char buf[64];
    struct net_addr ip[Q + 1 + MORE];
    struct probe_entry *e[Q + 1 + MORE];
    unsigned n = 0;
    for (; n < Q + 1; n++) {
        snprintf(buf, sizeof buf, "192.0.2.%u", n + 1);
        ip[n] = addr(buf);
        e[n] = probe_table_visit(t, &ip[n], NULL, T0);
    }
    assert_int_equal(probe_table_running(t), 1);
    assert_int_equal(probe_table_queued(t), Q);
    /* Full: the next one stays Unknown. */
    struct net_addr extra = addr("192.0.2.250");
    assert_int_equal(probe_table_visit(t, &extra, NULL, T0)->status, PROBE_UNKNOWN);
    assert_int_equal(probe_table_queued(t), Q);
    /* Forget the 10th in line. */
    assert_int_equal(probe_table_forget(t, &ip[10]), 0);
    assert_int_equal(probe_table_queued(t), Q - 1);
    /* Finish a probe, queue one more, MORE times: they start in order. */
    unsigned expect = 1;
    for (int k = 0; k < MORE; k++) {
        probe_table_probe_done(t, f.started[f.nstarted - 1], PROBE_OK, NULL, false, T0 + 1 + k);
        if (expect == 10)
            expect++;
        assert_ptr_equal(f.started[f.nstarted - 1], e[expect]);
        expect++;
        snprintf(buf, sizeof buf, "198.51.100.%u", n);
        ip[n] = addr(buf);
        e[n] = probe_table_visit(t, &ip[n], NULL, T0 + 1 + k);
        assert_int_equal(e[n]->status, PROBE_BUSY);
        n++;
        assert_int_equal(probe_table_queued(t), Q - 1);
    }
    probe_table_free(t);
}

static void test_times_whole_seconds(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    probe_table_visit(t, &a, NULL, T0 + 0.9);
    struct probe_entry *e = probe_table_visit(t, &a, NULL, T0 + 1.2);
    assert_true(tm(e, PROBE_T_FIRST_SEEN) == T0);
    assert_true(tm(e, PROBE_T_INITIATED) == T0 + 1);
    assert_true(tm(e, PROBE_T_COMPLETED) == 0);      /* never */
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == 0);
    assert_true(tm(e, PROBE_T_MAX) == 0);            /* not a time */
    probe_table_probe_done(t, e, PROBE_OK, NULL, false, T0 + 1.99);
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == T0 + 1);
    assert_true(probe_entry_expiry(t, e) == T0 + 1 + 3 * DAY);
    /* Rounded down, so Good ends at most one second early, never late. */
    assert_true(probe_table_use_dot(t, e, T0 + 3 * DAY + 0.99));
    assert_false(probe_table_use_dot(t, e, T0 + 3 * DAY + 1));
    /* Far from the epoch (decades) still exact to the second. */
    probe_table_dot_result(t, &a, PROBE_OK, NULL, T0 + 40 * 365 * DAY + 0.5);
    assert_true(tm(e, PROBE_T_LAST_RESPONSE) == T0 + 40 * 365 * DAY);
    probe_table_free(t);
}

static void test_scope_and_counters(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    /* A link-local server keeps its interface. */
    struct net_addr ll = addr("fe80::53");
    ll.u.in6.sin6_scope_id = 7;
    struct probe_entry *e = probe_table_visit(t, &ll, NULL, T0);
    const struct net_addr *back = ip_of(e);
    assert_int_equal(back->u.sa.sa_family, AF_INET6);
    assert_int_equal(back->u.in6.sin6_scope_id, 7);
    assert_int_equal(net_addr_port(back), 853);
    assert_int_equal(back->len, sizeof back->u.in6);
    /* An IPv4 entry reads back as AF_INET, whichever form visited it. */
    struct net_addr mapped = addr("::ffff:192.0.2.7"), v4 = addr("192.0.2.7");
    e = probe_table_visit(t, &mapped, NULL, T0);
    assert_ptr_equal(probe_table_find(t, &v4), e);
    assert_int_equal(ip_of(e)->u.sa.sa_family, AF_INET);
    assert_int_equal(ip_of(e)->len, sizeof ip_of(e)->u.in4);
    /* Restored counters over 32 bits saturate; the entry keeps counting from there. */
    struct probe_saved s = { .ip = addr("192.0.2.8"), .status = PROBE_BAD, .completed = T0, .visits = 1,
                             .last_outcome = PROBE_TLS_FAILED, .reason = "tls-failed: x" };
    s.counters.probes = 5000000000ull;
    s.counters.failures[PROBE_TLS_FAILED] = 12;
    assert_int_equal(probe_table_restore(t, &s, T0), 0);
    struct net_addr a8 = addr("192.0.2.8");
    e = probe_table_find(t, &a8);
    assert_int_equal(cnt(e).probes, UINT32_MAX);
    assert_int_equal(cnt(e).failures[PROBE_TLS_FAILED], 12);
    assert_int_equal(cnt(e).failures[PROBE_OK], 0);
    assert_string_equal(reason_of(e), "tls-failed: x");
    probe_table_free(t);
}

static void test_dump(void **state)
{
    struct fake_sched f;
    struct probe_table *t = mk(&f, NULL);
    make_good(&f, "192.0.2.1", T0);  /* two visits at T0, OK at T0 + 0.1 */
    struct net_addr b = addr("2001:db8::53");
    probe_table_visit(t, &b, "test.", T0 + 5);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(probe_table_dump(t, out), 0);
    fclose(out);
    assert_non_null(strstr(buf, "; DoT probing map follows\n; ip\tdomain\tcount\tstatus\tttd\t"));
    assert_non_null(strstr(buf, "; 0 Busy entries\n"));
    /* T0 = 1970-01-12T13:46:40Z; Good lasts 3 days after the answer. */
    assert_non_null(strstr(buf, "\n192.0.2.1\texample.org.\t2\tGood\t1970-01-15T13:46:40Z\t"
                                "1970-01-12T13:46:40Z\t"));
    assert_non_null(strstr(buf, "\n2001:db8::53\ttest.\t1\tUnknown\t-\t1970-01-12T13:46:45Z\t-\t"));
    /* Most recently visited first. */
    assert_true(strstr(buf, "2001:db8::53") < strstr(buf, "192.0.2.1"));
    free(buf);
    probe_table_free(t);
}

int main(void)
{
    log_setup(LOG_LVL_WARN, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_strings),
        cmocka_unit_test(test_visit_threshold),
        cmocka_unit_test(test_visit_window_expires),
        cmocka_unit_test(test_noted_question),
        cmocka_unit_test(test_probe_ok_and_persistence),
        cmocka_unit_test(test_probe_failures_and_damping),
        cmocka_unit_test(test_local_error_back_to_unknown),
        cmocka_unit_test(test_stale_report_ignored),
        cmocka_unit_test(test_dot_results_on_good),
        cmocka_unit_test(test_dot_reset_counts_like_bad_answer),
        cmocka_unit_test(test_dot_connect_failures_make_bad),
        cmocka_unit_test(test_dot_results_while_reprobing),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_busy_limit_and_queue),
        cmocka_unit_test(test_no_scheduler_queues_then_starts),
        cmocka_unit_test(test_sync_report_from_start),
        cmocka_unit_test(test_lru_eviction_never_busy),
        cmocka_unit_test(test_v4_v6_apart),
        cmocka_unit_test(test_many_entries_hash),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_reason_longer_than_old_field),
        cmocka_unit_test(test_strings_shared_and_released),
        cmocka_unit_test(test_queue_ring_order),
        cmocka_unit_test(test_times_whole_seconds),
        cmocka_unit_test(test_scope_and_counters),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
