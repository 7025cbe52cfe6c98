/* test/unit/test_health.c: the per-address health table: LRU eviction of
 * unpinned entries, pins that survive any amount of traffic and come on
 * top of the limit, RTT smoothing, RTO and backoff. Pure logic, no loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/net.h"
#include "proxy/health.h"

static struct net_addr addr(const char *s)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(s, 53, &a), 0);
    return a;
}

static struct health *get(struct health_table *t, const char *s)
{
    struct net_addr a = addr(s);
    struct health *h = health_get(t, &a);
    assert_non_null(h);
    return h;
}

static struct health *pin(struct health_table *t, const char *s)
{
    struct net_addr a = addr(s);
    struct health *h = health_pin(t, &a);
    assert_non_null(h);
    return h;
}

static bool known(struct health_table *t, const char *s)
{
    struct net_addr a = addr(s);
    return health_find(t, &a) != NULL;
}

static void test_lru_evicts_least_recent(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(3, 7);
    assert_non_null(t);
    get(t, "192.0.2.1");
    get(t, "192.0.2.2");
    get(t, "192.0.2.3");
    get(t, "192.0.2.1"); /* used again: .2 is now the oldest */
    get(t, "192.0.2.4");
    assert_int_equal(health_table_size(t), 3);
    assert_false(known(t, "192.0.2.2"));
    assert_true(known(t, "192.0.2.1"));
    assert_true(known(t, "192.0.2.3"));
    assert_true(known(t, "192.0.2.4"));
    /* health_find is a look, not a use: it does not save .3 from eviction. */
    assert_true(known(t, "192.0.2.3"));
    get(t, "192.0.2.5");
    assert_false(known(t, "192.0.2.3"));
    health_table_free(t);
}

static void test_same_entry_and_port_matters(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(16, 7);
    struct health *a = get(t, "192.0.2.1:53");
    struct health *b = get(t, "192.0.2.1:5353");
    struct health *c = get(t, "[2001:db8::1]:53");
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_equal(get(t, "192.0.2.1:53"), a);
    assert_int_equal(a->port, 53);
    assert_int_equal(b->port, 5353);
    assert_true(a->rtt[HEALTH_DO53].srtt < 0); /* never measured */
    assert_int_equal(health_table_size(t), 3);
    /* Not an IP address: no entry. */
    struct net_addr none;
    memset(&none, 0, sizeof none);
    assert_null(health_get(t, &none));
    assert_null(health_find(t, &none));
    assert_int_equal(health_table_size(t), 3);
    health_table_free(t);
}

static void test_pins_survive_traffic(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(2, 7);
    struct health *p = pin(t, "198.51.100.1");
    health_rtt_sample(p, HEALTH_DO53, 0.02);
    p->sent = 5; /* as the query code counts */
    char buf[64];
    for (int i = 0; i < 50; i++) {
        snprintf(buf, sizeof buf, "192.0.2.%d", i + 1);
        get(t, buf);
    }
    /* Pinned: same memory, same knowledge; the unpinned ones stay at the limit. */
    struct net_addr pa = addr("198.51.100.1");
    assert_ptr_equal(health_find(t, &pa), p);
    assert_int_equal(p->answers, 1);
    assert_int_equal(p->sent, 5);
    assert_true(p->rtt[HEALTH_DO53].srtt > 0.019 && p->rtt[HEALTH_DO53].srtt < 0.021);
    assert_int_equal(health_table_size(t), 3);
    assert_true(known(t, "192.0.2.50"));
    assert_true(known(t, "192.0.2.49"));
    assert_false(known(t, "192.0.2.48"));
    health_table_free(t);
}

/* Pinned entries come on top of the limit (health.h): pinning a new
 * address must not push an unpinned one out of a table that is exactly
 * full. Route tables pin their servers on every reload while the old
 * table's entries are unpinned, so this decided whether a reload forgot
 * what was known of other servers. */
static void test_pin_into_full_table_evicts_nothing(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(2, 7);
    get(t, "192.0.2.1");
    get(t, "192.0.2.2");
    pin(t, "198.51.100.1");
    pin(t, "198.51.100.2");
    assert_true(known(t, "192.0.2.1"));
    assert_true(known(t, "192.0.2.2"));
    assert_int_equal(health_table_size(t), 4);
    /* An address already known and then pinned stops counting too. */
    pin(t, "192.0.2.1");
    get(t, "192.0.2.3");
    assert_true(known(t, "192.0.2.1"));
    assert_true(known(t, "192.0.2.2"));
    assert_true(known(t, "192.0.2.3"));
    assert_int_equal(health_table_size(t), 5);
    health_table_free(t);
}

static void test_unpin_makes_evictable(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(2, 7);
    struct health *p = pin(t, "198.51.100.1");
    assert_ptr_equal(pin(t, "198.51.100.1"), p); /* two route tables */
    assert_int_equal(p->pins, 2);
    get(t, "192.0.2.1");
    get(t, "192.0.2.2");
    health_unpin(t, p);
    assert_int_equal(p->pins, 1);
    assert_int_equal(health_table_size(t), 3); /* still pinned once */
    health_unpin(t, p);
    /* Now three unpinned for a limit of two: the oldest goes, not the one
     * just unpinned, which counts as the most recent. */
    assert_int_equal(health_table_size(t), 2);
    assert_true(known(t, "198.51.100.1"));
    assert_false(known(t, "192.0.2.1"));
    assert_true(known(t, "192.0.2.2"));
    health_unpin(t, NULL); /* harmless, as route_table_free may do */
    health_table_free(t);
}

static void test_set_max_shrinks_but_keeps_pins(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(10, 7);
    pin(t, "198.51.100.1");
    char buf[64];
    for (int i = 0; i < 10; i++) {
        snprintf(buf, sizeof buf, "192.0.2.%d", i + 1);
        get(t, buf);
    }
    assert_int_equal(health_table_size(t), 11);
    health_table_set_max(t, 3);
    assert_int_equal(health_table_size(t), 4);
    assert_true(known(t, "198.51.100.1"));
    assert_true(known(t, "192.0.2.10"));
    assert_true(known(t, "192.0.2.8"));
    assert_false(known(t, "192.0.2.7"));
    health_table_free(t);
}

static void test_many_entries_after_growth(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(5000, 7);
    char buf[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(buf, sizeof buf, "[2001:db8::%x]:53", i + 1);
        struct health *h = get(t, buf);
        h->sent = (uint32_t)i;
    }
    assert_int_equal(health_table_size(t), 3000);
    /* Every entry is found again after the buckets doubled several times. */
    for (int i = 0; i < 3000; i++) {
        snprintf(buf, sizeof buf, "[2001:db8::%x]:53", i + 1);
        struct net_addr a = addr(buf);
        struct health *h = health_find(t, &a);
        assert_non_null(h);
        assert_int_equal(h->sent, (uint32_t)i);
    }
    health_table_free(t);
}

static void test_rtt_and_rto(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(4, 7);
    struct health *h = get(t, "192.0.2.1");
    /* Unmeasured: the whole attempt. */
    assert_true(health_rto(h, HEALTH_DO53, 0.8) == 0.8);
    health_rtt_sample(h, HEALTH_DO53, 0.05);
    /* RFC 6298: srtt = r, rttvar = r/2, rto = srtt + 4 rttvar. */
    assert_true(h->rtt[HEALTH_DO53].srtt > 0.0499 && h->rtt[HEALTH_DO53].srtt < 0.0501);
    assert_true(h->rtt[HEALTH_DO53].rttvar > 0.0249 && h->rtt[HEALTH_DO53].rttvar < 0.0251);
    double rto = health_rto(h, HEALTH_DO53, 0.8);
    assert_true(rto > 0.149 && rto < 0.151);
    assert_true(health_rto(h, HEALTH_DO53, 0.12) == 0.12); /* capped */
    health_rtt_sample(h, HEALTH_DO53, 0.01);
    assert_true(h->rtt[HEALTH_DO53].srtt > 0.0449 && h->rtt[HEALTH_DO53].srtt < 0.0451); /* 7/8 old + 1/8 new */
    assert_int_equal(h->answers, 2);
    /* Tiny RTTs still get the floor. */
    struct health *f = get(t, "192.0.2.2");
    health_rtt_sample(f, HEALTH_DO53, 0.0001);
    assert_true(health_rto(f, HEALTH_DO53, 0.8) >= 0.1);
    health_table_free(t);
}

static void test_backoff_doubles_and_resets(void **state)
{
    (void)state;
    struct health_table *t = health_table_new(4, 7);
    struct health *h = get(t, "192.0.2.1");
    double want[] = { 1, 2, 4, 8, 16, 32, 60, 60 };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        health_failed(h, 100);
        assert_true(h->backoff_until > 100 + want[i] - 1e-9 && h->backoff_until < 100 + want[i] + 1e-9);
        assert_int_equal(h->fails, i + 1);
    }
    /* A timeout with an estimate widens the variance. */
    health_rtt_sample(h, HEALTH_DO53, 0.05);
    assert_int_equal(h->fails, 0);
    assert_true(h->backoff_until == 0);
    float var = h->rtt[HEALTH_DO53].rttvar;
    health_failed(h, 200);
    assert_true(h->rtt[HEALTH_DO53].rttvar > var * 2);
    assert_true(h->backoff_until > 200.999 && h->backoff_until < 201.001);
    health_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_evicts_least_recent),
        cmocka_unit_test(test_same_entry_and_port_matters),
        cmocka_unit_test(test_pins_survive_traffic),
        cmocka_unit_test(test_pin_into_full_table_evicts_nothing),
        cmocka_unit_test(test_unpin_makes_evictable),
        cmocka_unit_test(test_set_max_shrinks_but_keeps_pins),
        cmocka_unit_test(test_many_entries_after_growth),
        cmocka_unit_test(test_rtt_and_rto),
        cmocka_unit_test(test_backoff_doubles_and_resets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
