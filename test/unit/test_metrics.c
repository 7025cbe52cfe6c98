/* test/unit/test_metrics.c: the Prometheus text of a made-up proxy: exact
 * sample lines, every stats counter exposed once, cumulative histograms
 * ending in +Inf == _count, one HELP and one TYPE per family, families
 * contiguous. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics_http.h"
#include "lib/net.h"
#include "probe/table.h"
#include "proxy/stats.h"
#include "version.h"

#define T0 1000000.0
#define MAX_LINES 1024

struct text {
    char *buf;
    char *lines[MAX_LINES];
    size_t n;
};

/* What the proxy would show: a snapshot is made of it at each render. */
struct proxy {
    struct stats stats;
    struct probe_table *probes;
    unsigned inflight, tcp_clients, dot_connections;
    bool draining;
    double started;
};

static void render(const struct proxy *px, double now, struct text *t)
{
    struct metrics_snapshot snap = { .stats = &px->stats, .probes = px->probes, .inflight = px->inflight,
                                     .tcp_clients = px->tcp_clients, .dot_connections = px->dot_connections,
                                     .draining = px->draining, .started = px->started };
    size_t len = 0;
    memset(t, 0, sizeof *t);
    FILE *f = open_memstream(&t->buf, &len);
    assert_non_null(f);
    assert_int_equal(metrics_render(&snap, now, f), 0);
    assert_int_equal(fclose(f), 0);
    assert_true(len > 0);
    assert_int_equal(t->buf[len - 1], '\n');
    for (char *p = t->buf; *p; ) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = 0;
        assert_true(t->n < MAX_LINES);
        t->lines[t->n++] = p;
        p = nl + 1;
    }
}

static void text_free(struct text *t)
{
    free(t->buf);
}

static bool has_line(const struct text *t, const char *line)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->lines[i], line) == 0)
            return true;
    return false;
}

static void expect_line(const struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect_line(const struct text *t, const char *fmt, ...)
{
    char want[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    if (!has_line(t, want))
        fail_msg("missing line: %s", want);
}

/* A fake scheduler: probes start and stay running until reported. */
static struct probe_entry *started[8];
static unsigned nstarted;
static void sched_start(void *arg, struct probe_entry *e) { (void)arg; if (nstarted < 8) started[nstarted++] = e; }
static void sched_cancel(void *arg, struct probe_entry *e) { (void)arg; (void)e; }
static const struct probe_sched sched_ops = { sched_start, sched_cancel };

static struct net_addr addr(const char *s)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(s, 53, &a), 0);
    return a;
}

static struct proxy *fake_proxy(void)
{
    struct proxy *px = calloc(1, sizeof *px);
    assert_non_null(px);
    px->started = T0;
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.max_busy_probes = 2;
    px->probes = probe_table_new(&pol, 7);
    assert_non_null(px->probes);
    nstarted = 0;
    probe_table_set_sched(px->probes, &sched_ops, NULL, T0);
    return px;
}

static void fake_proxy_free(struct proxy *px)
{
    probe_table_free(px->probes);
    free(px);
}

static void test_exact_lines(void **state)
{
    (void)state;
    struct proxy *px = fake_proxy();
    px->stats.queries_udp = 7;
    px->stats.queries_tcp = 3;
    px->stats.upstream_udp = 5;
    px->stats.upstream_tcp = 2;
    px->stats.upstream_dot = 11;
    px->stats.rcodes[0] = 8;
    px->stats.rcodes[3] = 2;
    px->stats.rcodes[5] = 1;
    px->stats.answered = 11;
    px->stats.servfail = 4;
    px->stats.fallback_connect = 1;
    px->stats.fallback_bad_answer = 6;
    px->stats.refused_acl = 9;
    px->stats.dropped_acl = 10;
    px->stats.spoofed_id = 12;
    px->stats.dot_connections = 13;
    px->stats.dot_resumed = 14;
    px->stats.upstream_timeouts = 15;
    px->stats.truncated = 16;
    px->stats.malformed_dropped = 17;
    px->inflight = 21;
    px->tcp_clients = 22;
    px->dot_connections = 3;

    struct text t;
    render(px, T0 + 42.5, &t);
    expect_line(&t, "# HELP dotward_client_queries_total Client queries received, by client transport.");
    expect_line(&t, "# TYPE dotward_client_queries_total counter");
    expect_line(&t, "dotward_client_queries_total{transport=\"udp\"} 7");
    expect_line(&t, "dotward_client_queries_total{transport=\"tcp\"} 3");
    expect_line(&t, "dotward_upstream_queries_total{transport=\"udp\"} 5");
    expect_line(&t, "dotward_upstream_queries_total{transport=\"tcp\"} 2");
    expect_line(&t, "dotward_upstream_queries_total{transport=\"dot\"} 11");
    expect_line(&t, "# TYPE dotward_answers_total counter");
    expect_line(&t, "dotward_answers_total{rcode=\"NOERROR\"} 8");
    expect_line(&t, "dotward_answers_total{rcode=\"NXDOMAIN\"} 2");
    expect_line(&t, "dotward_answers_total{rcode=\"REFUSED\"} 1");
    expect_line(&t, "dotward_answers_total{rcode=\"SERVFAIL\"} 0");
    expect_line(&t, "dotward_answers_total{rcode=\"FORMERR\"} 0");
    expect_line(&t, "dotward_answers_total{rcode=\"NOTIMP\"} 0");
    expect_line(&t, "dotward_servfail_total 4");
    expect_line(&t, "# TYPE dotward_servfail_total counter");
    expect_line(&t, "dotward_dot_fallbacks_total{reason=\"connect\"} 1");
    expect_line(&t, "dotward_dot_fallbacks_total{reason=\"tls\"} 0");
    expect_line(&t, "dotward_dot_fallbacks_total{reason=\"timeout\"} 0");
    expect_line(&t, "dotward_dot_fallbacks_total{reason=\"closed\"} 0");
    expect_line(&t, "dotward_dot_fallbacks_total{reason=\"bad_answer\"} 6");
    expect_line(&t, "dotward_acl_denied_total{action=\"refused\"} 9");
    expect_line(&t, "dotward_acl_denied_total{action=\"dropped\"} 10");
    expect_line(&t, "dotward_upstream_spoofed_total{kind=\"id\"} 12");
    expect_line(&t, "dotward_upstream_spoofed_total{kind=\"source\"} 0");
    expect_line(&t, "dotward_dot_connections_opened_total 13");
    expect_line(&t, "dotward_dot_connections_resumed_total 14");
    expect_line(&t, "dotward_upstream_timeouts_total 15");
    expect_line(&t, "dotward_truncated_total 16");
    expect_line(&t, "dotward_malformed_dropped_total 17");
    expect_line(&t, "dotward_queries_in_flight 21");
    expect_line(&t, "# TYPE dotward_queries_in_flight gauge");
    expect_line(&t, "dotward_tcp_clients 22");
    expect_line(&t, "dotward_dot_connections_open 3");
    expect_line(&t, "dotward_uptime_seconds 42.500");
    expect_line(&t, "dotward_draining 0");
    expect_line(&t, "dotward_build_info{version=\"%s\"} 1", DOTWARD_VERSION);
    /* `answered` is the sum of the rcode family, not a second name. */
    assert_false(has_line(&t, "dotward_answered_total 11"));
    text_free(&t);

    px->draining = true;
    render(px, T0 - 5, &t); /* a clock step back must not give a negative uptime */
    expect_line(&t, "dotward_draining 1");
    expect_line(&t, "dotward_uptime_seconds 0.000");
    text_free(&t);
    fake_proxy_free(px);
}

/* Each counter of STATS_COUNTERS set to its own value shows up in exactly
 * one sample line (answered excepted, see above), and no sample is left
 * with a value nobody set. */
static void test_every_counter_once(void **state)
{
    (void)state;
    struct proxy *px = fake_proxy();
    struct { const char *name; uint64_t *p; } fields[] = {
#define F(n) { #n, &px->stats.n },
        STATS_COUNTERS(F)
#undef F
    };
    size_t nf = sizeof fields / sizeof fields[0];
    for (size_t i = 0; i < nf; i++)
        *fields[i].p = 100000 + i;
    struct text t;
    render(px, T0, &t);
    for (size_t i = 0; i < nf; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, " %" PRIu64, (uint64_t)(100000 + i));
        unsigned hits = 0;
        for (size_t l = 0; l < t.n; l++) {
            size_t ll = strlen(t.lines[l]), sl = strlen(suffix);
            if (t.lines[l][0] != '#' && ll > sl && strcmp(t.lines[l] + ll - sl, suffix) == 0)
                hits++;
        }
        if (strcmp(fields[i].name, "answered") == 0)
            assert_int_equal(hits, 0);
        else if (hits != 1)
            fail_msg("counter %s appears in %u samples, want 1", fields[i].name, hits);
    }
    text_free(&t);
    fake_proxy_free(px);
}

static const char *family_of(const char *sample, char *buf, size_t bufsz)
{
    size_t n = strcspn(sample, "{ ");
    assert_true(n < bufsz);
    memcpy(buf, sample, n);
    buf[n] = 0;
    static const char *const hist_suffixes[] = { "_bucket", "_sum", "_count" };
    for (size_t i = 0; i < 3; i++) {
        size_t sl = strlen(hist_suffixes[i]);
        if (n > sl && strcmp(buf + n - sl, hist_suffixes[i]) == 0 &&
            strncmp(buf, "dotward_upstream_latency_seconds", n - sl) == 0 &&
            n - sl == strlen("dotward_upstream_latency_seconds"))
            buf[n - sl] = 0;
    }
    return buf;
}

/* HELP then TYPE once per family, right before its samples; samples of a
 * family are contiguous; every family has samples; values parse. */
static void test_help_type_once(void **state)
{
    (void)state;
    struct proxy *px = fake_proxy();
    stats_latency_add(&px->stats, STATS_UDP, 0.003);
    struct text t;
    render(px, T0, &t);
    char names[128][96];
    size_t nn = 0;
    char current[96] = "";
    size_t samples_in_current = 0;
    for (size_t l = 0; l < t.n; l++) {
        const char *line = t.lines[l];
        if (strncmp(line, "# HELP ", 7) == 0) {
            if (current[0])
                assert_true(samples_in_current > 0);
            char name[96];
            assert_int_equal(sscanf(line + 7, "%95s", name), 1);
            for (size_t i = 0; i < nn; i++)
                if (strcmp(names[i], name) == 0)
                    fail_msg("family %s has two HELP lines", name);
            assert_true(nn < 128);
            strcpy(names[nn++], name);
            assert_true(l + 1 < t.n);
            char type_line[160];
            snprintf(type_line, sizeof type_line, "# TYPE %s ", name);
            assert_true(strncmp(t.lines[l + 1], type_line, strlen(type_line)) == 0);
            const char *type = t.lines[l + 1] + strlen(type_line);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                assert_true(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0);
            strcpy(current, name);
            samples_in_current = 0;
            l++;
            continue;
        }
        assert_true(line[0] != '#'); /* no stray comment or second TYPE */
        char fam[96];
        family_of(line, fam, sizeof fam);
        if (strcmp(fam, current) != 0)
            fail_msg("sample '%s' outside its family block (in %s)", line, current);
        assert_true(strncmp(fam, "dotward_", 8) == 0);
        const char *v = strrchr(line, ' ');
        assert_non_null(v);
        char *end;
        strtod(v + 1, &end);
        assert_true(end != v + 1 && *end == 0);
        samples_in_current++;
    }
    assert_true(samples_in_current > 0);
    assert_true(nn >= 30);
    text_free(&t);
    fake_proxy_free(px);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    struct proxy *px = fake_proxy();
    static const double udp[] = { 0.0001, 0.0003, 0.0009, 0.004, 0.004, 0.3, 1.0, 2.6, 99.0 };
    double sum = 0;
    for (size_t i = 0; i < sizeof udp / sizeof udp[0]; i++) {
        stats_latency_add(&px->stats, STATS_UDP, udp[i]);
        sum += udp[i];
    }
    stats_latency_add(&px->stats, STATS_DOT, 0.02);
    struct text t;
    render(px, T0, &t);

    /* Exact lines of the UDP series: bounds 0.00025 0.0005 0.001 0.002 0.005 ... 2.5 */
    const char *h = "dotward_upstream_latency_seconds";
    expect_line(&t, "# TYPE %s histogram", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.00025\"} 1", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.0005\"} 2", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.001\"} 3", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.002\"} 3", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.005\"} 5", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.25\"} 5", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"0.5\"} 6", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"1\"} 7", h);   /* le is inclusive */
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"2.5\"} 7", h);
    expect_line(&t, "%s_bucket{transport=\"udp\",le=\"+Inf\"} 9", h);
    expect_line(&t, "%s_count{transport=\"udp\"} 9", h);
    expect_line(&t, "%s_bucket{transport=\"dot\",le=\"0.01\"} 0", h);
    expect_line(&t, "%s_bucket{transport=\"dot\",le=\"0.025\"} 1", h);
    expect_line(&t, "%s_bucket{transport=\"dot\",le=\"+Inf\"} 1", h);
    expect_line(&t, "%s_count{transport=\"tcp\"} 0", h);
    expect_line(&t, "%s_bucket{transport=\"tcp\",le=\"+Inf\"} 0", h);

    /* Generic: per transport, STATS_LATENCY_BUCKETS + 1 buckets in order,
     * non-decreasing, le values the bounds, last +Inf == _count; _sum right. */
    for (int tr = 0; tr < STATS_TRANSPORTS; tr++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%s_bucket{transport=\"%s\",le=\"", h,
                 stats_transport_str((enum stats_transport)tr));
        uint64_t prev = 0, last = 0;
        int nb = 0;
        for (size_t l = 0; l < t.n; l++) {
            if (strncmp(t.lines[l], prefix, strlen(prefix)) != 0)
                continue;
            const char *le = t.lines[l] + strlen(prefix);
            uint64_t v = strtoull(strrchr(t.lines[l], ' ') + 1, NULL, 10);
            assert_true(v >= prev);
            if (nb < STATS_LATENCY_BUCKETS)
                assert_true(strtod(le, NULL) == stats_latency_bounds[nb]);
            else
                assert_true(strncmp(le, "+Inf\"}", 6) == 0);
            prev = last = v;
            nb++;
        }
        assert_int_equal(nb, STATS_LATENCY_BUCKETS + 1);
        expect_line(&t, "%s_count{transport=\"%s\"} %" PRIu64, h,
                    stats_transport_str((enum stats_transport)tr), last);
        assert_int_equal(last, px->stats.latency[tr].count);
    }
    char sum_prefix[128];
    snprintf(sum_prefix, sizeof sum_prefix, "%s_sum{transport=\"udp\"} ", h);
    bool found = false;
    for (size_t l = 0; l < t.n; l++)
        if (strncmp(t.lines[l], sum_prefix, strlen(sum_prefix)) == 0) {
            double s = strtod(t.lines[l] + strlen(sum_prefix), NULL);
            assert_true(s > sum - 1e-6 && s < sum + 1e-6);
            found = true;
        }
    assert_true(found);
    text_free(&t);
    fake_proxy_free(px);
}

static void test_probe_metrics(void **state)
{
    (void)state;
    struct proxy *px = fake_proxy();
    const char *ips[] = { "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13" };
    struct net_addr a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = addr(ips[i]);
        assert_int_equal(probe_table_request(px->probes, &a[i], ".", T0, false), 0);
    }
    /* max_busy_probes = 2: two run, two wait. */
    assert_int_equal(nstarted, 2);
    probe_table_probe_done(px->probes, started[0], PROBE_OK, NULL, false, T0 + 1);
    probe_table_probe_done(px->probes, started[1], PROBE_CONNECT_REFUSED, "refused", false, T0 + 1);
    assert_int_equal(nstarted, 4);
    struct net_addr fresh = addr("192.0.2.20");
    assert_non_null(probe_table_visit(px->probes, &fresh, ".", T0 + 2)); /* one visit: Unknown */
    probe_table_dot_result(px->probes, &a[0], PROBE_QUERY_TIMEOUT, "slow", T0 + 3);

    struct text t;
    render(px, T0 + 3, &t);
    expect_line(&t, "dotward_probes_started_total 4");
    expect_line(&t, "dotward_probes_ok_total 1");
    expect_line(&t, "dotward_dot_failures_total{outcome=\"connect-refused\"} 1");
    expect_line(&t, "dotward_dot_failures_total{outcome=\"query-timeout\"} 1");
    expect_line(&t, "dotward_dot_failures_total{outcome=\"tls-failed\"} 0");
    expect_line(&t, "dotward_dot_failures_total{outcome=\"reset\"} 0");
    assert_false(has_line(&t, "dotward_dot_failures_total{outcome=\"ok\"} 0"));
    expect_line(&t, "dotward_probe_entries{status=\"unknown\"} 1");
    expect_line(&t, "dotward_probe_entries{status=\"busy\"} 2");
    expect_line(&t, "dotward_probe_entries{status=\"good\"} 1");
    expect_line(&t, "dotward_probe_entries{status=\"bad\"} 1");
    expect_line(&t, "dotward_probes_running 2");
    expect_line(&t, "dotward_probes_queued 0");
    text_free(&t);

    /* An empty table: zeros, same families. */
    probe_table_free(px->probes);
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    px->probes = probe_table_new(&pol, 1);
    assert_non_null(px->probes);
    render(px, T0, &t);
    expect_line(&t, "dotward_probes_started_total 0");
    expect_line(&t, "dotward_probe_entries{status=\"good\"} 0");
    expect_line(&t, "dotward_probes_queued 0");
    text_free(&t);
    fake_proxy_free(px);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_lines),
        cmocka_unit_test(test_every_counter_once),
        cmocka_unit_test(test_help_type_once),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_probe_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
