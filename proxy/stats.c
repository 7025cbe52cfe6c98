/* proxy/stats.c: renders the counters; never changes them. */
#include "proxy/stats.h"

#include <inttypes.h>

void stats_format(const struct stats *s, char *buf, size_t bufsz)
{
    size_t o = 0;
    buf[0] = 0;
#define STATS_PRINT(name)                                                                        \
    if (o < bufsz)                                                                               \
        o += (size_t)snprintf(buf + o, bufsz - o, "%s" #name "=%" PRIu64, o ? " " : "", s->name);
    STATS_COUNTERS(STATS_PRINT)
#undef STATS_PRINT
}

const double stats_latency_bounds[STATS_LATENCY_BUCKETS] = {
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
};

const char *stats_transport_str(enum stats_transport t)
{
    static const char *const names[STATS_TRANSPORTS] = { "udp", "tcp", "dot" };
    return t < STATS_TRANSPORTS ? names[t] : "?";
}

void stats_latency_add(struct stats *s, enum stats_transport t, double seconds)
{
    struct stats_latency *l = &s->latency[t];
    int i = 0;
    while (i < STATS_LATENCY_BUCKETS && seconds > stats_latency_bounds[i])
        i++;
    l->buckets[i]++;
    l->count++;
    l->sum += seconds;
}

static double share(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

void stats_format_privacy(const struct stats *s, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz,
             "privacy: %.1f%% of queries to servers known to speak DoT went over DoT (%" PRIu64 " of %" PRIu64
             "), %.1f%% of all answered (%" PRIu64 " of %" PRIu64 ")",
             share(s->good_queries_dot, s->good_queries), s->good_queries_dot, s->good_queries,
             share(s->answered_dot, s->answered), s->answered_dot, s->answered);
}
