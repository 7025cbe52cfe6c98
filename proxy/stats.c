/* proxy/stats.c: renders the counters; never changes them. */
#include "stats.h"

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
