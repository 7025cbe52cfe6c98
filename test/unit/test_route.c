/* Unit tests: zone routes (longest suffix wins) and the choice of a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/net.h"
#include "lib/rng.h"
#include "lib/wire.h"
#include "proxy/health.h"
#include "proxy/route.h"

/* Each test gets a table of its own (setup/teardown): what one test
 * teaches about an address must not leak into the next. */
static struct health_table *health;

static int setup(void **state)
{
    (void)state;
    health = health_table_new(64, 1);
    return health ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    health_table_free(health);
    health = NULL;
    return 0;
}

static struct route_table *table_new(void)
{
    struct route_table *t = route_table_new(health);
    assert_non_null(t);
    return t;
}

static const struct route_zone *lookup(const struct route_table *t, const char *name)
{
    uint8_t w[WIRE_MAX_NAME];
    int n = wire_name_from_str(name, w);
    assert_true(n > 0);
    return route_lookup(t, w, (size_t)n);
}

static void add(struct route_table *t, const char *zone, const char *addr)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(addr, 53, &a), 0);
    struct route_server *s = route_table_find(t, &a);
    if (!s)
        s = route_table_add_server(t, &a, SERVER_TLS_OFF, NULL, true, true);
    assert_non_null(s);
    assert_int_equal(route_table_add(t, zone, s), 0);
}

/* A server's health entry, pinned until the test's table goes. */
static struct health *h_new(const char *addr)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(addr, 53, &a), 0);
    struct health *h = health_pin(health, &a);
    assert_non_null(h);
    return h;
}

static void test_longest_suffix(void **state)
{
    (void)state;
    struct route_table *t = table_new();
    add(t, ".", "192.0.2.1");
    add(t, "example.org", "192.0.2.2");
    add(t, "Sub.Example.ORG.", "192.0.2.3");
    add(t, "org", "192.0.2.4");
    assert_string_equal(lookup(t, "www.sub.example.org")->text, "sub.example.org.");
    assert_string_equal(lookup(t, "SUB.example.org.")->text, "sub.example.org.");
    assert_string_equal(lookup(t, "www.example.org")->text, "example.org.");
    assert_string_equal(lookup(t, "example.org")->text, "example.org.");
    assert_string_equal(lookup(t, "xsub.example.org")->text, "example.org."); /* label boundary */
    assert_string_equal(lookup(t, "notexample.org")->text, "org.");
    assert_string_equal(lookup(t, "example.com")->text, ".");
    assert_string_equal(lookup(t, ".")->text, ".");
    route_table_free(t);
}

static void test_no_root(void **state)
{
    (void)state;
    struct route_table *t = table_new();
    add(t, "example.org", "192.0.2.2");
    assert_null(lookup(t, "example.com"));
    assert_non_null(lookup(t, "a.example.org"));
    route_table_free(t);
}

static void test_duplicates_and_find(void **state)
{
    (void)state;
    struct route_table *t = table_new();
    add(t, ".", "192.0.2.1");
    add(t, ".", "192.0.2.1");
    add(t, ".", "192.0.2.1:5300");
    assert_int_equal(t->n_zones, 1);
    assert_int_equal(t->zones[0].n_servers, 2);
    struct net_addr a;
    net_addr_parse("192.0.2.1:5300", 53, &a);
    assert_ptr_equal(route_table_find(t, &a), t->zones[0].servers[1]);
    net_addr_parse("192.0.2.9", 53, &a);
    assert_null(route_table_find(t, &a));
    assert_int_equal(route_table_add(t, "bad..zone", t->zones[0].servers[0]), -1);
    route_table_free(t);
}

/* Picks `n` times and counts where each pick went. */
static void pick_counts(const struct route_zone *z, uint32_t tried, double now, int n, int *counts)
{
    struct rng r;
    rng_init(&r);
    for (int i = 0; i < n; i++) {
        int idx = route_select(z, tried, now, &r);
        assert_true(idx >= 0 && (size_t)idx < z->n_servers);
        counts[idx]++;
    }
}

static void test_select_fastest_with_exploration(void **state)
{
    (void)state;
    struct route_table *t = table_new();
    add(t, ".", "192.0.2.1");
    add(t, ".", "192.0.2.2");
    add(t, ".", "192.0.2.3");
    struct route_zone *z = &t->zones[0];
    health_rtt_sample(z->servers[0]->health, HEALTH_DO53, 0.050);
    health_rtt_sample(z->servers[1]->health, HEALTH_DO53, 0.005);
    health_rtt_sample(z->servers[2]->health, HEALTH_DO53, 0.020);
    int counts[3] = { 0 };
    pick_counts(z, 0, 100, 4000, counts);
    /* The fastest wins most; the others still get explored now and then. */
    assert_true(counts[1] > 3400);
    assert_true(counts[0] > 10 && counts[2] > 10);
    route_table_free(t);
}

static void test_select_skips_tried_and_backed_off(void **state)
{
    (void)state;
    struct route_table *t = table_new();
    add(t, ".", "192.0.2.1");
    add(t, ".", "192.0.2.2");
    struct route_zone *z = &t->zones[0];
    health_rtt_sample(z->servers[0]->health, HEALTH_DO53, 0.001);
    health_rtt_sample(z->servers[1]->health, HEALTH_DO53, 0.100);
    int counts[2] = { 0 };
    pick_counts(z, 1u << 0, 100, 200, counts);   /* server 0 already tried */
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 200);

    health_failed(z->servers[0]->health, 100);          /* backed off until 101 */
    memset(counts, 0, sizeof counts);
    pick_counts(z, 0, 100.5, 500, counts);
    assert_int_equal(counts[0], 0);
    memset(counts, 0, sizeof counts);
    pick_counts(z, 0, 102, 500, counts);          /* backoff over */
    assert_true(counts[0] > 400);

    /* Every server tried: start over rather than give up. */
    memset(counts, 0, sizeof counts);
    pick_counts(z, 3, 102, 10, counts);
    assert_int_equal(counts[0] + counts[1], 10);
    route_table_free(t);
}

static void test_backoff_grows_and_resets(void **state)
{
    (void)state;
    struct health *u = h_new("192.0.2.1");
    health_failed(u, 0);
    double first = u->backoff_until;
    health_failed(u, 0);
    health_failed(u, 0);
    assert_true(u->backoff_until > first);
    for (int i = 0; i < 20; i++)
        health_failed(u, 0);
    assert_true(u->backoff_until <= 60.0 + 1e-9);
    health_rtt_sample(u, HEALTH_DO53, 0.01);
    assert_int_equal(u->fails, 0);
    assert_true(u->backoff_until == 0);
}

static void test_rto(void **state)
{
    (void)state;
    struct health *u = h_new("192.0.2.1");
    assert_true(health_rto(u, HEALTH_DO53, 0.8) == 0.8);     /* unmeasured: the maximum */
    health_rtt_sample(u, HEALTH_DO53, 0.0001);
    assert_true(health_rto(u, HEALTH_DO53, 0.8) >= 0.1);     /* floor */
    for (int i = 0; i < 50; i++)
        health_rtt_sample(u, HEALTH_DO53, 0.3);
    double r = health_rto(u, HEALTH_DO53, 0.8);
    assert_true(r >= 0.3 && r <= 0.8);
    for (int i = 0; i < 50; i++)
        health_rtt_sample(u, HEALTH_DO53, 2.0);
    assert_true(health_rto(u, HEALTH_DO53, 0.8) == 0.8);     /* capped */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_longest_suffix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_and_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_fastest_with_exploration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_skips_tried_and_backed_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_grows_and_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rto, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
