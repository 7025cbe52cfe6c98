/* daemon/metrics_render.c: the proxy's counters as Prometheus text (format
 * 0.0.4). Reads struct stats, the probe table and the route table; changes
 * nothing. Every counter of STATS_COUNTERS appears exactly once: either in a
 * labelled family below or, if none claims it, as dotward_<name>_total, so a
 * counter added to stats.h shows up here without an edit. */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "daemon/metrics_http.h"
#include "probe/table.h"
#include "proxy/stats.h"
#include "version.h"

#define STAT_OFF(field) offsetof(struct stats, field)

static uint64_t stat_at(const struct stats *s, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)s + off, sizeof v);
    return v;
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Counters of struct stats grouped under one name with a label. A family
 * with label NULL has one member and only renames a counter. */
struct member { const char *value; size_t off; };
struct counter_family {
    const char *name, *label, *help;
    struct member members[6];
};

static const struct counter_family families[] = {
    { "dotward_client_queries_total", "transport", "Client queries received, by client transport.",
      { { "udp", STAT_OFF(queries_udp) }, { "tcp", STAT_OFF(queries_tcp) } } },
    { "dotward_upstream_queries_total", "transport", "Queries sent to upstreams, by transport.",
      { { "udp", STAT_OFF(upstream_udp) }, { "tcp", STAT_OFF(upstream_tcp) },
        { "dot", STAT_OFF(upstream_dot) } } },
    { "dotward_dot_fallbacks_total", "reason",
      "Queries re-sent over plain DNS after their DoT try failed, by reason.",
      { { "connect", STAT_OFF(fallback_connect) }, { "tls", STAT_OFF(fallback_tls) },
        { "timeout", STAT_OFF(fallback_timeout) }, { "closed", STAT_OFF(fallback_closed) },
        { "bad_answer", STAT_OFF(fallback_bad_answer) }, { "reset", STAT_OFF(fallback_reset) } } },
    { "dotward_acl_denied_total", "action",
      "Client queries from sources outside 'allow', by what they got.",
      { { "refused", STAT_OFF(refused_acl) }, { "dropped", STAT_OFF(dropped_acl) } } },
    { "dotward_upstream_spoofed_total", "kind",
      "Upstream answers discarded as possibly spoofed: wrong source address or port, unknown ID, "
      "or a question that does not match.",
      { { "source", STAT_OFF(spoofed_source) }, { "id", STAT_OFF(spoofed_id) },
        { "question", STAT_OFF(spoofed_question) } } },
    { "dotward_dot_connections_opened_total", NULL, "DoT connections opened (TLS handshake done).",
      { { NULL, STAT_OFF(dot_connections) } } },
    { "dotward_dot_connections_resumed_total", NULL,
      "DoT connections opened that resumed a TLS session.",
      { { NULL, STAT_OFF(dot_resumed) } } },
};

/* Counters that appear under another family without a member of their own. */
static const size_t covered_elsewhere[] = {
    STAT_OFF(answered), /* the sum of dotward_answers_total */
};

struct plain_counter { const char *name; size_t off; };
static const struct plain_counter plain_counters[] = {
#define PLAIN(name) { #name, STAT_OFF(name) },
    STATS_COUNTERS(PLAIN)
#undef PLAIN
};

/* Help for the counters rendered under their own name; a counter missing
 * here still appears, with a generic help line. */
static const struct { const char *name, *help; } plain_help[] = {
    { "servfail", "SERVFAIL answers made by dotward: the query's deadline passed or no upstream was left." },
    { "malformed_dropped", "Client packets dropped: too short, QR=1, or oversized." },
    { "formerr_sent", "FORMERR answers to malformed client queries." },
    { "notimp_sent", "NOTIMP answers to opcodes other than QUERY." },
    { "overload", "SERVFAIL answers because max-queries queries were in flight." },
    { "dot_answers", "Upstream answers that came back over DoT." },
    { "strict_failures", "Tries to strict (DoT only) upstreams that failed; no fallback is made." },
    { "upstream_tc", "Truncated upstream UDP answers retried over TCP." },
    { "upstream_timeouts", "Upstream tries that timed out." },
    { "upstream_errors", "Upstream tries that failed: send error or connection lost." },
    { "upstream_malformed", "Upstream answers that did not parse." },
    { "truncated", "Answers truncated (TC=1) to fit a UDP client's buffer size." },
    { "tcp_clients_rejected", "TCP client connections closed at once because tcp-clients were open." },
    { "tcp_clients_evicted", "TCP client connections closed to make room for a new one: idle or slow ones, when tcp-clients were open." },
    { "tcp_clients_timed_out", "TCP client connections closed because a message, or the reading of answers, took longer than tcp-io-timeout." },
    { "upstream_conn_limit", "Upstream TCP or DoT connections not opened because max-upstream-connections were open and none was idle." },
    { "send_errors", "Answers that could not be sent to a client." },
};

static bool claimed(size_t off)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const struct counter_family *fam = &families[i];
        size_t n = fam->label ? sizeof fam->members / sizeof fam->members[0] : 1;
        for (size_t j = 0; j < n && (!fam->label || fam->members[j].value); j++)
            if (fam->members[j].off == off)
                return true;
    }
    for (size_t i = 0; i < sizeof covered_elsewhere / sizeof covered_elsewhere[0]; i++)
        if (covered_elsewhere[i] == off)
            return true;
    return false;
}

static void render_counters(FILE *f, const struct stats *s)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const struct counter_family *fam = &families[i];
        family(f, fam->name, "counter", fam->help);
        if (!fam->label) {
            fprintf(f, "%s %" PRIu64 "\n", fam->name, stat_at(s, fam->members[0].off));
            continue;
        }
        for (size_t j = 0; j < sizeof fam->members / sizeof fam->members[0] && fam->members[j].value; j++)
            fprintf(f, "%s{%s=\"%s\"} %" PRIu64 "\n", fam->name, fam->label, fam->members[j].value,
                    stat_at(s, fam->members[j].off));
    }

    static const char *const rcode_names[16] = {
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
    };
    family(f, "dotward_answers_total", "counter",
           "Upstream answers relayed to clients, by RCODE (answers dotward makes itself are counted apart).");
    for (size_t r = 0; r < 16; r++)
        fprintf(f, "dotward_answers_total{rcode=\"%s\"} %" PRIu64 "\n", rcode_names[r], s->rcodes[r]);

    for (size_t i = 0; i < sizeof plain_counters / sizeof plain_counters[0]; i++) {
        const struct plain_counter *c = &plain_counters[i];
        if (claimed(c->off))
            continue;
        const char *help = "dotward counter (see proxy/stats.h).";
        for (size_t h = 0; h < sizeof plain_help / sizeof plain_help[0]; h++)
            if (strcmp(plain_help[h].name, c->name) == 0)
                help = plain_help[h].help;
        char name[96];
        snprintf(name, sizeof name, "dotward_%s_total", c->name);
        family(f, name, "counter", help);
        fprintf(f, "%s %" PRIu64 "\n", name, stat_at(s, c->off));
    }
}

static void render_probes(FILE *f, const struct probe_table *t)
{
    const struct probe_counters *pc = probe_table_totals(t);

    family(f, "dotward_probes_started_total", "counter", "DoT probes started.");
    fprintf(f, "dotward_probes_started_total %" PRIu64 "\n", pc->probes);
    family(f, "dotward_probes_ok_total", "counter", "DoT probes that ended with a matching answer over TLS.");
    fprintf(f, "dotward_probes_ok_total %" PRIu64 "\n", pc->successes);
    family(f, "dotward_dot_failures_total", "counter",
           "Failed DoT probes and failed DoT exchanges on the data path, by outcome.");
    for (int o = 0; o < PROBE_OUTCOME_MAX; o++)
        if (o != PROBE_OK)
            fprintf(f, "dotward_dot_failures_total{outcome=\"%s\"} %" PRIu64 "\n",
                    probe_outcome_str((enum probe_outcome)o), pc->failures[o]);

    family(f, "dotward_probe_entries", "gauge", "Entries of the per-IP DoT table, by status.");
    for (int st = 0; st < PROBE_STATUS_MAX; st++)
        fprintf(f, "dotward_probe_entries{status=\"%s\"} %zu\n", probe_status_str((enum probe_status)st),
                probe_table_count(t, (enum probe_status)st));
    family(f, "dotward_probes_running", "gauge", "DoT probes running now.");
    fprintf(f, "dotward_probes_running %u\n", probe_table_running(t));
    family(f, "dotward_probes_queued", "gauge", "DoT probes waiting for a free slot.");
    fprintf(f, "dotward_probes_queued %u\n", probe_table_queued(t));
}

/* Upstreams are shared between zones: each is counted once. */

static void render_gauges(FILE *f, const struct metrics_snapshot *px, double now)
{
    family(f, "dotward_queries_in_flight", "gauge", "Client queries waiting for an answer.");
    fprintf(f, "dotward_queries_in_flight %u\n", px->inflight);
    family(f, "dotward_tcp_clients", "gauge", "Client TCP connections open.");
    fprintf(f, "dotward_tcp_clients %u\n", px->tcp_clients);
    family(f, "dotward_dot_connections_open", "gauge", "DoT connections to upstreams open now.");
    fprintf(f, "dotward_dot_connections_open %u\n", px->dot_connections);
    family(f, "dotward_draining", "gauge", "1 while dotward stops: no new queries are accepted.");
    fprintf(f, "dotward_draining %d\n", px->draining ? 1 : 0);
    family(f, "dotward_uptime_seconds", "gauge", "Seconds since dotward started serving.");
    double up = now - px->started;
    fprintf(f, "dotward_uptime_seconds %.3f\n", up > 0 ? up : 0.0);
    family(f, "dotward_build_info", "gauge", "Always 1; the version is in the label.");
    fprintf(f, "dotward_build_info{version=\"%s\"} 1\n", DOTWARD_VERSION);
}

static void render_latency(FILE *f, const struct stats *s)
{
    const char *name = "dotward_upstream_latency_seconds";
    family(f, name, "histogram", "Time from sending a query upstream to its answer, by the transport "
                                 "that carried the answer.");
    for (int t = 0; t < STATS_TRANSPORTS; t++) {
        const struct stats_latency *l = &s->latency[t];
        const char *tr = stats_transport_str((enum stats_transport)t);
        uint64_t cum = 0;
        for (int b = 0; b < STATS_LATENCY_BUCKETS; b++) {
            cum += l->buckets[b];
            fprintf(f, "%s_bucket{transport=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, tr,
                    stats_latency_bounds[b], cum);
        }
        cum += l->buckets[STATS_LATENCY_BUCKETS];
        fprintf(f, "%s_bucket{transport=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, tr, cum);
        fprintf(f, "%s_sum{transport=\"%s\"} %.9g\n", name, tr, l->sum);
        fprintf(f, "%s_count{transport=\"%s\"} %" PRIu64 "\n", name, tr, l->count);
    }
}

int metrics_render(const struct metrics_snapshot *px, double now, FILE *out)
{
    render_counters(out, px->stats);
    render_probes(out, px->probes);
    render_gauges(out, px, now);
    render_latency(out, px->stats);
    return ferror(out) ? -1 : 0;
}
