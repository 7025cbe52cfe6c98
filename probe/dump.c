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

/* The reason comes from the network and libraries: keep the line one line. */
static void put_reason(const char *r, FILE *out)
{
    if (!*r) {
        fputc('-', out);
        return;
    }
    for (; *r; r++)
        fputc(*r == '\t' || *r == '\n' ? ' ' : *r, out);
}

int probe_table_dump(const struct probe_table *t, FILE *out)
{
    char ip[NET_ADDRSTRLEN], t1[32], t2[32], t3[32], t4[32], t5[32], t6[32], t7[32];
    fprintf(out, "; DoT probing map follows\n"
                 "; ip\tdomain\tcount\tstatus\tttd\tfirst_seen\tinitiated\tcompleted\tlast_response"
                 "\tlast_activity\tprobes\tsuccesses\tfailures\tdot_queries\tfallbacks\tverified\tsince\treason\n");
    fprintf(out, "; %zu Busy entries\n", probe_table_count(t, PROBE_BUSY));
    for (const struct probe_entry *e = probe_table_first(t); e; e = probe_table_next(t, e)) {
        struct probe_counters c;
        probe_entry_counters(e, &c);
        unsigned long long fails = 0;
        for (int o = 0; o < PROBE_OUTCOME_MAX; o++)
            if (o != PROBE_OK && o != PROBE_CLOSED_CLEAN)
                fails += c.failures[o];
        struct net_addr a;
        probe_entry_addr(e, &a);
        const char *zone = probe_entry_zone(t, e);
        size_t zl = strlen(zone);
        const char *dot = zl > 0 && zone[zl - 1] == '.' ? "" : ".";
        fprintf(out, "%s\t%s%s\t%u\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%d\t%s\t",
                net_ip_str(&a, ip, sizeof ip), zone, dot, (unsigned)e->visits,
                dump_status[e->status], log_iso_time(probe_entry_expiry(t, e), t1, sizeof t1),
                log_iso_time(probe_entry_time(t, e, PROBE_T_FIRST_SEEN), t2, sizeof t2),
                log_iso_time(probe_entry_time(t, e, PROBE_T_INITIATED), t3, sizeof t3),
                log_iso_time(probe_entry_time(t, e, PROBE_T_COMPLETED), t4, sizeof t4),
                log_iso_time(probe_entry_time(t, e, PROBE_T_LAST_RESPONSE), t5, sizeof t5),
                log_iso_time(probe_entry_time(t, e, PROBE_T_LAST_ACTIVITY), t6, sizeof t6),
                (unsigned long long)c.probes, (unsigned long long)c.successes, fails,
                (unsigned long long)c.dot_queries, (unsigned long long)c.fallbacks,
                (int)e->verified, log_iso_time(probe_entry_time(t, e, PROBE_T_STATUS_SINCE), t7, sizeof t7));
        put_reason(probe_entry_reason(t, e), out);
        fputc('\n', out);
    }
    return ferror(out) ? -1 : 0;
}
