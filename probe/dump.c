/* probe/dump.c: the table as text, a superset of PowerDNS's
 * `rec_control dump-dot-probe-map` (ip, domain, count, status, expiry come
 * first, tab-separated, so scripts written for it keep working), with UTC
 * ISO 8601 times instead of local time. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "probe/table.h"

/* PowerDNS prints the status capitalised. */
static const char *const dump_status[PROBE_STATUS_MAX] = {
    [PROBE_UNKNOWN] = "Unknown", [PROBE_BUSY] = "Busy", [PROBE_GOOD] = "Good", [PROBE_BAD] = "Bad",
};

int probe_table_dump(const struct probe_table *t, FILE *out)
{
    char ip[NET_ADDRSTRLEN], t1[32], t2[32], t3[32], t4[32], t5[32], t6[32], t7[32];
    char reason[sizeof ((struct probe_entry *)0)->reason];
    fprintf(out, "; DoT probing map follows\n"
                 "; ip\tdomain\tcount\tstatus\tttd\tfirst_seen\tinitiated\tcompleted\tlast_response"
                 "\tlast_activity\tprobes\tsuccesses\tfailures\tdot_queries\tfallbacks\tverified\tsince\treason\n");
    fprintf(out, "; %zu Busy entries\n", probe_table_count(t, PROBE_BUSY));
    for (const struct probe_entry *e = probe_table_first(t); e; e = probe_table_next(e)) {
        unsigned long long fails = 0;
        for (int o = 0; o < PROBE_OUTCOME_MAX; o++)
            if (o != PROBE_OK && o != PROBE_CLOSED_CLEAN)
                fails += e->counters.failures[o];
        /* The reason comes from the network and libraries: keep the line one line. */
        size_t i = 0;
        for (; e->reason[i] && i < sizeof reason - 1; i++)
            reason[i] = (e->reason[i] == '\t' || e->reason[i] == '\n') ? ' ' : e->reason[i];
        reason[i] = 0;
        size_t zl = strlen(e->zone);
        const char *dot = zl > 0 && e->zone[zl - 1] == '.' ? "" : ".";
        fprintf(out, "%s\t%s%s\t%u\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%d\t%s\t%s\n",
                net_ip_str(&e->ip, ip, sizeof ip), e->zone, dot, e->visits,
                dump_status[e->status], log_iso_time(probe_entry_expiry(t, e), t1, sizeof t1),
                log_iso_time(e->first_seen, t2, sizeof t2), log_iso_time(e->initiated, t3, sizeof t3),
                log_iso_time(e->completed, t4, sizeof t4), log_iso_time(e->last_response, t5, sizeof t5),
                log_iso_time(e->last_activity, t6, sizeof t6),
                (unsigned long long)e->counters.probes, (unsigned long long)e->counters.successes, fails,
                (unsigned long long)e->counters.dot_queries, (unsigned long long)e->counters.fallbacks,
                e->verified, log_iso_time(e->status_since, t7, sizeof t7), *reason ? reason : "-");
    }
    return ferror(out) ? -1 : 0;
}
