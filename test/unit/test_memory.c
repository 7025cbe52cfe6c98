/* test/unit/test_memory.c: what the per-IP tables cost, measured on the
 * heap (glibc mallinfo2: bytes in chunks in use plus mmapped blocks, so
 * allocator overhead, hash buckets, pooled strings and the table itself are
 * all counted), per IP, for 100,000 and 1,000,000 distinct upstream IPs.
 *
 * Budget: 256 bytes per IP for the probe table and the per-address health
 * table together (one subject fills both for the same IPs), of which the
 * probe table alone may take PROBE_BYTES_PER_IP and the health table
 * HEALTH_BYTES_PER_IP.
 *
 * Under AddressSanitizer, malloc is ASan's and mallinfo2 does not see it:
 * the tables are still filled and freed (so ASan checks the code), only
 * the size assertion is skipped (cmocka skip). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/net.h"
#include "probe/table.h"
#include "proxy/health.h"

#define PROBE_BYTES_PER_IP 150.0
#define HEALTH_BYTES_PER_IP 106.0
#define BYTES_PER_IP 256.0

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* ---- the reusable measuring part ---------------------------------------- */

/* Something whose memory is measured: build() makes it hold n items (and
 * returns it), destroy() frees it. Everything build() allocates counts.
 * For the combined budget, one subject builds both per-IP tables for the
 * same n IPs; mem_measure() and mem_assert_at_most() stay as they are. */
struct mem_subject {
    const char *name;
    void *(*build)(size_t n);
    void (*destroy)(void *obj);
};

struct mem_result {
    size_t items;
    size_t bytes;       /* heap growth while built */
    double per_item;
    bool measured;      /* false: the allocator is not glibc's (ASan), bytes is 0 */
};

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Does mallinfo2 see this process's malloc? Not under ASan (or another
 * replacement allocator): then 1 MB allocated does not show. */
static bool heap_measurable(void)
{
    if (UNDER_ASAN)
        return false;
    size_t before = heap_in_use();
    void *p = malloc(1 << 20);
    assert_non_null(p);
    memset(p, 1, 1 << 20);
    bool seen = heap_in_use() >= before + (1 << 20);
    free(p);
    return seen;
}

/* Builds s with n items, measures, destroys it; prints one line. */
static struct mem_result mem_measure(const struct mem_subject *s, size_t n)
{
    struct mem_result r = { .items = n, .measured = heap_measurable() };
    malloc_trim(0);
    size_t before = heap_in_use();
    void *obj = s->build(n);
    assert_non_null(obj);
    size_t after = heap_in_use();
    s->destroy(obj);
    if (r.measured) {
        r.bytes = after > before ? after - before : 0;
        r.per_item = (double)r.bytes / (double)n;
        printf("memory: %s: %zu items, %zu bytes, %.1f bytes per item\n", s->name, n, r.bytes, r.per_item);
    } else {
        printf("memory: %s: %zu items built and freed; heap not measurable (ASan)\n", s->name, n);
    }
    fflush(stdout);
    return r;
}

/* Fails if the figure is over `budget`; skips (cmocka) if nothing was measured. */
static void mem_assert_at_most(const struct mem_result *r, double budget)
{
    if (!r->measured) {
        skip();
        return;
    }
    if (r->per_item > budget)
        fail_msg("%.1f bytes per item, budget %.1f", r->per_item, budget);
}

/* ---- the probe table ------------------------------------------------------ */

#define T0 1700000000.0

/* The i-th distinct upstream IP: one in four IPv6 (2001:db8::/32), the rest
 * IPv4 (10.0.0.0/8). Only table keys: nothing is ever sent to them. */
static void nth_ip(size_t i, struct net_addr *a)
{
    memset(a, 0, sizeof *a);
    if (i % 4 == 3) {
        a->u.in6.sin6_family = AF_INET6;
        uint8_t *b = a->u.in6.sin6_addr.s6_addr;
        b[0] = 0x20, b[1] = 0x01, b[2] = 0x0d, b[3] = 0xb8;
        b[4] = (uint8_t)(i >> 24), b[5] = (uint8_t)(i >> 16), b[6] = (uint8_t)(i >> 8), b[7] = (uint8_t)i;
        b[15] = 0x53;
        a->u.in6.sin6_port = htons(53);
        a->len = sizeof a->u.in6;
    } else {
        a->u.in4.sin_family = AF_INET;
        a->u.in4.sin_addr.s_addr = htonl(0x0a000000u | (uint32_t)(i & 0xffffff));
        a->u.in4.sin_port = htons(53);
        a->len = sizeof a->u.in4;
    }
}

static const char *const zones[] = { ".", "example.org.", "corp.example.", "a.rather.longer.zone.example.net." };
static const char *const reasons[] = { "query timed out", "malformed answer", "closed by the server",
                                       "no answer after 4.0 s (0 bytes read)" };

static void *probe_build(size_t n)
{
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.max_entries = (unsigned)n;
    struct probe_table *t = probe_table_new(&pol, 0x5eed);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++) {
        struct net_addr a;
        nth_ip(i, &a);
        double now = T0 + (double)i / 1000;
        assert_non_null(probe_table_visit(t, &a, zones[i % 4], now));
        /* One in eight had a failed DoT exchange: it has a reason. */
        if (i % 8 == 5)
            probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, reasons[(i / 8) % 4], now);
    }
    assert_int_equal(probe_table_size(t), n);
    return t;
}

static void probe_destroy(void *obj) { probe_table_free(obj); }

static const struct mem_subject probe_subject = { "probe table", probe_build, probe_destroy };

static void *health_build(size_t n)
{
    struct health_table *t = health_table_new((unsigned)n, 0x5eed);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++) {
        struct net_addr a;
        nth_ip(i, &a);
        struct health *h = health_get(t, &a);
        assert_non_null(h);
        health_rtt_sample(h, HEALTH_DO53, 0.001 * (double)(i % 50 + 1));
    }
    assert_int_equal(health_table_size(t), n);
    return t;
}

static void health_destroy(void *obj) { health_table_free(obj); }

static const struct mem_subject health_subject = { "health table", health_build, health_destroy };

/* Both tables for the same IPs, as a server known to the data path has. */
struct both { void *probe, *health; };

static void *both_build(size_t n)
{
    struct both *b = malloc(sizeof *b);
    assert_non_null(b);
    b->probe = probe_build(n);
    b->health = health_build(n);
    return b;
}

static void both_destroy(void *obj)
{
    struct both *b = obj;
    probe_destroy(b->probe);
    health_destroy(b->health);
    free(b);
}

static const struct mem_subject both_subject = { "probe and health tables", both_build, both_destroy };

static void test_health_table_100k(void **state)
{
    struct mem_result r = mem_measure(&health_subject, 100000);
    mem_assert_at_most(&r, HEALTH_BYTES_PER_IP);
}

static void test_health_table_1m(void **state)
{
    struct mem_result r = mem_measure(&health_subject, 1000000);
    mem_assert_at_most(&r, HEALTH_BYTES_PER_IP);
}

static void test_both_100k(void **state)
{
    struct mem_result r = mem_measure(&both_subject, 100000);
    mem_assert_at_most(&r, BYTES_PER_IP);
}

static void test_both_1m(void **state)
{
    struct mem_result r = mem_measure(&both_subject, 1000000);
    mem_assert_at_most(&r, BYTES_PER_IP);
}

static void test_probe_table_100k(void **state)
{
    struct mem_result r = mem_measure(&probe_subject, 100000);
    mem_assert_at_most(&r, PROBE_BYTES_PER_IP);
}

static void test_probe_table_1m(void **state)
{
    struct mem_result r = mem_measure(&probe_subject, 1000000);
    mem_assert_at_most(&r, PROBE_BYTES_PER_IP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_table_100k),
        cmocka_unit_test(test_probe_table_1m),
        cmocka_unit_test(test_health_table_100k),
        cmocka_unit_test(test_health_table_1m),
        cmocka_unit_test(test_both_100k),
        cmocka_unit_test(test_both_1m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
