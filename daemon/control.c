/* daemon/control.c: the control socket. One command per connection: read a
 * line (bounded, with a timeout), run the command into a bounded buffer,
 * write it out on EV_WRITE, close. Commands only read the proxy, except the
 * few that ask the DoT table, the log or main (through a hook) to act. */
#include "daemon/control.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/control_proto.h"
#include "lib/acceptor.h"
#include "lib/log.h"
#include "lib/peer.h"
#include "probe/table.h"
#include "proxy/health.h"
#include "proxy/listener.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"
#include "proxy/route.h"
#include "proxy/view.h"
#include "version.h"

/* A client has this long before its first byte, its line this long from
 * its first byte, and its answer this long for each bit of send progress. */
#define CONTROL_TIMEOUT 2.0
/* Largest answer. A full DoT table (4096 entries) as JSON is about 3 MB. */
#define CONTROL_MAX_OUTPUT (8u << 20)

static const struct peer_limits client_limits = {
    .idle = CONTROL_TIMEOUT,
    .message = CONTROL_TIMEOUT,
    .write = CONTROL_TIMEOUT,
    .max_in = CONTROL_MAX_LINE,
};

/* The answer being built. Commands write to it through a FILE
 * (fopencookie) that fails once the buffer would pass CONTROL_MAX_OUTPUT;
 * the peer then takes a copy to send. */
struct control_out {
    char *data;
    size_t len, cap;
    bool overflow, nomem;
};

struct control_client {
    struct peer peer;
    struct control_client *prev, *next;
    struct control *ctl;             /* NULL once the control has gone */
    uid_t uid;                       /* peer's uid (SO_PEERCRED), for the log */
    bool replied;                    /* one command per connection */
    char line[CONTROL_MAX_LINE + 1]; /* + 1 for the terminating NUL */
    struct control_out out;
};

struct control {
    struct proxy *px;
    struct fd_waiters *waiters;      /* borrowed */
    char *path;
    int fd;
    dev_t dev;                       /* of the socket file we bound, so we */
    ino_t ino;                       /* never unlink someone else's */
    struct acceptor *acc;
    struct control_hooks hooks;
    struct control_client *clients;
    unsigned n_clients;
    bool dispatching;                /* a command runs: control_free waits */
    bool free_pending;
    struct log_limit loglim;
};

typedef int control_cmd_fn(struct control *c, struct control_client *cl, int argc, char **argv,
                           FILE *out, char *err, size_t errsz);

#define CONTROL_DECL(id, name, usage, min, max, help) static control_cmd_fn cmd_##id;
CONTROL_COMMANDS(CONTROL_DECL)
#undef CONTROL_DECL

struct control_cmd {
    const char *name, *usage;
    int min_args, max_args;
    control_cmd_fn *fn;
    const char *help;
};

static const struct control_cmd control_cmds[] = {
#define CONTROL_ROW(id, name, usage, min, max, help) { name, usage, min, max, cmd_##id, help },
    CONTROL_COMMANDS(CONTROL_ROW)
#undef CONTROL_ROW
};

static void control_destroy(struct control *c);

/* ---- output buffer ------------------------------------------------------- */

static ssize_t out_write(void *cookie, const char *buf, size_t n)
{
    struct control_out *o = cookie;
    if (o->overflow || o->nomem)
        return 0;
    if (n > CONTROL_MAX_OUTPUT - o->len) {
        o->overflow = true;
        return 0;
    }
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n)
            cap *= 2;
        if (cap > CONTROL_MAX_OUTPUT)
            cap = CONTROL_MAX_OUTPUT;
        char *p = realloc(o->data, cap);
        if (!p) {
            o->nomem = true;
            return 0;
        }
        o->data = p;
        o->cap = cap;
    }
    memcpy(o->data + o->len, buf, n);
    o->len += n;
    return (ssize_t)n;
}

static FILE *out_open(struct control_out *o)
{
    cookie_io_functions_t fns = { .read = NULL, .write = out_write, .seek = NULL, .close = NULL };
    return fopencookie(o, "w", fns);
}

/* Replaces whatever was built with "error: MSG\n" (short, so it always fits). */
static void out_error(struct control_out *o, const char *msg)
{
    char line[320];
    int n = snprintf(line, sizeof line, "error: %s\n", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = (int)sizeof line - 1, line[n - 1] = '\n';
    o->len = 0;
    o->overflow = o->nomem = false;
    out_write(o, line, (size_t)n);
}

/* ---- small helpers ------------------------------------------------------- */

/* Client text echoed in a message: printable ASCII, at most 64 bytes. */
static const char *clean(const char *s, char *buf, size_t sz)
{
    size_t i = 0;
    for (; s[i] && i < sz - 1 && i < 64; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[i] = 0;
    return buf;
}

/* "connect-refused" -> "connect_refused", for key names. */
static const char *key_name(const char *s, char *buf, size_t sz)
{
    size_t i = 0;
    for (; s[i] && i < sz - 1; i++)
        buf[i] = s[i] == '-' ? '_' : s[i];
    buf[i] = 0;
    return buf;
}

/* A bare IPv4 or IPv6 address ("[v6]" too), port set to 853. */
static int parse_ip(const char *s, struct net_addr *a)
{
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(s);
    memset(a, 0, sizeof *a);
    if (n >= sizeof tmp)
        return -1;
    if (n > 2 && s[0] == '[' && s[n - 1] == ']') {
        memcpy(tmp, s + 1, n - 2);
        tmp[n - 2] = 0;
    } else {
        memcpy(tmp, s, n + 1);
    }
    if (inet_pton(AF_INET, tmp, &a->u.in4.sin_addr) == 1) {
        a->u.in4.sin_family = AF_INET;
        a->len = sizeof a->u.in4;
    } else if (inet_pton(AF_INET6, tmp, &a->u.in6.sin6_addr) == 1) {
        a->u.in6.sin6_family = AF_INET6;
        a->len = sizeof a->u.in6;
    } else {
        return -1;
    }
    net_addr_set_port(a, 853);
    return 0;
}

/* The zone of the first route that lists an upstream with this IP, or NULL. */
static const char *upstream_zone(const struct route_table *rt, const struct net_addr *ip)
{
    if (!rt)
        return NULL;
    for (size_t z = 0; z < rt->n_zones; z++)
        for (size_t i = 0; i < rt->zones[z].n_servers; i++)
            if (net_ip_equal(&rt->zones[z].servers[i]->addr, ip))
                return rt->zones[z].text;
    return NULL;
}

static double control_now(const struct control *c)
{
    return ev_now(c->px->loop);
}

/* ---- JSON ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string; bytes that are not valid UTF-8 become U+FFFD. */
static void json_str(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    while (*p) {
        unsigned char ch = *p;
        size_t n;
        if (ch == '"' || ch == '\\') {
            fputc('\\', out);
            fputc(ch, out);
            p++;
        } else if (ch < 0x20 || ch == 0x7f) {
            switch (ch) {
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            case '\t': fputs("\\t", out); break;
            default: fprintf(out, "\\u%04x", ch); break;
            }
            p++;
        } else if ((n = utf8_len(p)) > 0) {
            fwrite(p, 1, n, out);
            p += n;
        } else {
            fputs("\\ufffd", out);
            p++;
        }
    }
    fputc('"', out);
}

static void json_time(FILE *out, const char *key, double ts)
{
    char buf[32];
    fprintf(out, ",\"%s\":", key);
    if (ts > 0)
        fprintf(out, "\"%s\"", log_iso_time(ts, buf, sizeof buf));
    else
        fputs("null", out);
}

static void json_entry(FILE *out, const struct probe_table *t, const struct probe_entry *e)
{
    char ip[NET_ADDRSTRLEN], domain[WIRE_MAX_NAME * 4 + 2];
    const char *zone = probe_entry_zone(t, e), *reason = probe_entry_reason(t, e);
    size_t zl = strlen(zone);
    snprintf(domain, sizeof domain, "%s%s", zone, zl > 0 && zone[zl - 1] == '.' ? "" : ".");
    struct net_addr a;
    probe_entry_addr(e, &a);
    struct probe_counters c;
    probe_entry_counters(e, &c);
    fputs("{\"ip\":", out);
    json_str(out, net_ip_str(&a, ip, sizeof ip));
    fputs(",\"domain\":", out);
    json_str(out, domain);
    fprintf(out, ",\"count\":%u,\"status\":\"%s\"", (unsigned)e->visits, probe_status_str(e->status));
    json_time(out, "expiry", probe_entry_expiry(t, e));
    json_time(out, "since", probe_entry_time(t, e, PROBE_T_STATUS_SINCE));
    json_time(out, "first_seen", probe_entry_time(t, e, PROBE_T_FIRST_SEEN));
    json_time(out, "initiated", probe_entry_time(t, e, PROBE_T_INITIATED));
    json_time(out, "completed", probe_entry_time(t, e, PROBE_T_COMPLETED));
    json_time(out, "last_response", probe_entry_time(t, e, PROBE_T_LAST_RESPONSE));
    json_time(out, "last_activity", probe_entry_time(t, e, PROBE_T_LAST_ACTIVITY));
    /* last_outcome starts as OK: it means something only once a probe ended
     * or DoT carried traffic. */
    fputs(",\"last_outcome\":", out);
    if (probe_entry_time(t, e, PROBE_T_COMPLETED) > 0 || probe_entry_time(t, e, PROBE_T_LAST_ACTIVITY) > 0)
        json_str(out, probe_outcome_str(e->last_outcome));
    else
        fputs("null", out);
    fputs(",\"reason\":", out);
    if (reason[0])
        json_str(out, reason);
    else
        fputs("null", out);
    uint64_t total = 0;
    for (int o = 0; o < PROBE_OUTCOME_MAX; o++)
        if (o != PROBE_OK && o != PROBE_CLOSED_CLEAN)
            total += c.failures[o];
    fprintf(out, ",\"verified\":%s,\"visits\":%u,\"dot_consecutive_failures\":%u,\"session\":%s",
            e->verified ? "true" : "false", (unsigned)e->visits, (unsigned)e->dot_consecutive_failures,
            e->session ? "true" : "false");
    fprintf(out, ",\"probes\":%" PRIu64 ",\"successes\":%" PRIu64 ",\"dot_queries\":%" PRIu64
                 ",\"fallbacks\":%" PRIu64 ",\"failures_total\":%" PRIu64 ",\"failures\":{",
            c.probes, c.successes, c.dot_queries, c.fallbacks, total);
    bool first = true;
    for (int o = 0; o < PROBE_OUTCOME_MAX; o++) {
        if (o == PROBE_OK)
            continue;
        fprintf(out, "%s\"%s\":%" PRIu64, first ? "" : ",", probe_outcome_str((enum probe_outcome)o),
                c.failures[o]);
        first = false;
    }
    fputs("}}", out);
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_stats(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                     char *err, size_t errsz)
{
    const struct proxy *px = c->px;
    const struct probe_table *t = px->probes;
    const struct probe_counters *tot = probe_table_totals(t);
    char key[64];

#define CONTROL_STAT(name) fprintf(out, #name "=%" PRIu64 "\n", px->stats.name);
    STATS_COUNTERS(CONTROL_STAT)
#undef CONTROL_STAT
    /* RFC 6895 names; the rest by number. */
    static const char *const rcode_names[16] = {
        "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "yxdomain", "yxrrset",
        "nxrrset", "notauth", "notzone", "dsotypeni",
    };
    for (int i = 0; i < 16; i++) {
        if (rcode_names[i])
            fprintf(out, "answers_rcode_%s=%" PRIu64 "\n", rcode_names[i], px->stats.rcodes[i]);
        else
            fprintf(out, "answers_rcode_%d=%" PRIu64 "\n", i, px->stats.rcodes[i]);
    }
    for (int i = 0; i < STATS_TRANSPORTS; i++)
        fprintf(out, "latency_%s_count=%" PRIu64 "\nlatency_%s_sum_us=%.0f\n",
                stats_transport_str((enum stats_transport)i), px->stats.latency[i].count,
                stats_transport_str((enum stats_transport)i), px->stats.latency[i].sum * 1e6);
    fprintf(out, "probes_started=%" PRIu64 "\nprobes_ok=%" PRIu64 "\n", tot->probes, tot->successes);
    for (int o = 0; o < PROBE_OUTCOME_MAX; o++)
        if (o != PROBE_OK)
            fprintf(out, "probes_failed_%s=%" PRIu64 "\n",
                    key_name(probe_outcome_str((enum probe_outcome)o), key, sizeof key), tot->failures[o]);
    for (int s = 0; s < PROBE_STATUS_MAX; s++)
        fprintf(out, "probe_entries_%s=%zu\n", key_name(probe_status_str((enum probe_status)s), key, sizeof key),
                probe_table_count(t, (enum probe_status)s));
    fprintf(out, "probes_running=%u\nprobes_queued=%u\n", probe_table_running(t), probe_table_queued(t));
    fprintf(out, "dot_queries=%" PRIu64 "\ndot_fallbacks=%" PRIu64 "\n", tot->dot_queries, tot->fallbacks);
    double up = px->started > 0 ? control_now(c) - px->started : 0;
    fprintf(out, "inflight=%u\ntcp_clients=%u\ncontrol_clients=%u\nuptime_seconds=%.0f\n", proxy_inflight(px),
            proxy_tcp_clients(px), c->n_clients, up > 0 ? up : 0);
    return 0;
}

static int cmd_status(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                      char *err, size_t errsz)
{
    const struct proxy *px = c->px;
    struct probe_table *t = px->probes;
    double now = control_now(c);
    char buf[NET_ADDRSTRLEN], tbuf[32];

    fprintf(out, "version: dotward %s\n", DOTWARD_VERSION);
    if (px->started > 0) {
        unsigned long up = now > px->started ? (unsigned long)(now - px->started) : 0;
        fprintf(out, "started: %s\nuptime: %lud %02luh %02lum %02lus (%lu s)\n",
                log_iso_time(px->started, tbuf, sizeof tbuf), up / 86400, up / 3600 % 24, up / 60 % 60, up % 60, up);
    }
    fprintf(out, "log-level: %s\n", log_level_str(log_get_level()));
    fprintf(out, "state: %s\n", px->draining ? "draining" : "running");
    fprintf(out, "queries-in-flight: %u\ntcp-clients: %u\n", proxy_inflight(px), proxy_tcp_clients(px));
    char privacy[256];
    stats_format_privacy(&px->stats, privacy, sizeof privacy);
    fprintf(out, "%s\n", privacy);
    fprintf(out, "dot: on, %zu entries (good %zu, bad %zu, busy %zu, unknown %zu), %u probes running, "
                 "%u queued\n",
            probe_table_size(t), probe_table_count(t, PROBE_GOOD), probe_table_count(t, PROBE_BAD),
            probe_table_count(t, PROBE_BUSY), probe_table_count(t, PROBE_UNKNOWN), probe_table_running(t),
            probe_table_queued(t));
    fprintf(out, "tables: probe %zu entries (%" PRIu64 " evicted), health %zu (%" PRIu64 " evicted)\n",
            probe_table_size(t), probe_table_evictions(t), health_table_size(px->health),
            health_table_evictions(px->health));
    for (size_t i = 0; i < px->n_listeners; i++)
        fprintf(out, "listener: %s %s\n", net_addr_str(&px->listeners[i]->addr, buf, sizeof buf),
                px->listeners[i]->tcp ? "tcp" : "udp");
    const struct route_table *rt = px->view ? px->view->routes : NULL;
    for (size_t z = 0; rt && z < rt->n_zones; z++) {
        const struct route_zone *zone = &rt->zones[z];
        for (size_t i = 0; i < zone->n_servers; i++) {
            const struct route_server *u = zone->servers[i];
            const struct health *h = u->health;
            fprintf(out, "upstream: zone=%s addr=%s tls=%s", zone->text, u->name, server_tls_str(u->tls));
            for (int p = 0; p < HEALTH_PATHS; p++) {
                const char *label = p == HEALTH_DOT ? " dot_srtt_ms=" : " srtt_ms=";
                if (h->rtt[p].srtt >= 0)
                    fprintf(out, "%s%.1f", label, h->rtt[p].srtt * 1000.0);
                else
                    fprintf(out, "%s-", label);
            }
            fprintf(out, " fails=%u sent=%" PRIu32 " answers=%" PRIu32 " timeouts=%" PRIu32, h->fails, h->sent,
                    h->answers, h->timeouts);
            if (h->backoff_until > now)
                fprintf(out, " backoff_s=%.1f", h->backoff_until - now);
            /* Only opportunistic upstreams live in the probe table. */
            if (u->tls != SERVER_TLS_OPPORTUNISTIC) {
                fputs(u->tls == SERVER_TLS_STRICT ? " dot=always\n" : " dot=off\n", out);
                continue;
            }
            const struct probe_entry *e = probe_table_find(t, &u->addr);
            if (!e) {
                fputs(" dot=unseen\n", out);
                continue;
            }
            fprintf(out, " dot=%s", probe_status_str(e->status));
            double exp = probe_entry_expiry(t, e);
            if (exp > 0)
                fprintf(out, " dot_expiry=%s", log_iso_time(exp, tbuf, sizeof tbuf));
            const char *why = probe_entry_reason(t, e);
            if (e->status == PROBE_BAD && why[0]) {
                /* the reason is free text: keep the line one line */
                fputs(" dot_reason=\"", out);
                for (; *why; why++)
                    fputc(*why == '\n' || *why == '\r' ? ' ' : *why, out);
                fputc('"', out);
            }
            fputc('\n', out);
        }
    }
    return 0;
}

static int cmd_dump_probes(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                           char *err, size_t errsz)
{
    bool json = false;
    char tmp[80];
    if (argc == 1) {
        if (strcmp(argv[0], "--json") != 0) {
            snprintf(err, errsz, "unknown option '%s' (usage: dump-probes [--json])", clean(argv[0], tmp, sizeof tmp));
            return -1;
        }
        json = true;
    }
    const struct probe_table *t = c->px->probes;
    if (json) {
        fputs("[", out);
        bool first = true;
        for (const struct probe_entry *e = probe_table_first(t); e; e = probe_table_next(t, e)) {
            fputs(first ? "\n" : ",\n", out);
            json_entry(out, t, e);
            first = false;
        }
        fputs(first ? "]\n" : "\n]\n", out);
        return 0;
    }
    if (probe_table_dump(t, out) < 0) {
        snprintf(err, errsz, "answer too large");
        return -1;
    }
    return 0;
}

static int cmd_probe(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                     char *err, size_t errsz)
{
    struct probe_table *t = c->px->probes;
    struct net_addr ip;
    char tmp[80], ipbuf[NET_ADDRSTRLEN];
    if (parse_ip(argv[0], &ip) < 0) {
        snprintf(err, errsz, "'%s' is not an IP address", clean(argv[0], tmp, sizeof tmp));
        return -1;
    }
    net_ip_str(&ip, ipbuf, sizeof ipbuf);
    const char *zone = upstream_zone(c->px->view ? c->px->view->routes : NULL, &ip);
    const struct probe_entry *e = probe_table_find(t, &ip);
    if (!zone && e)
        zone = probe_entry_zone(t, e); /* seen on the data path (transparent mode) */
    if (!zone) {
        snprintf(err, errsz, "unknown upstream IP %s", ipbuf);
        return -1;
    }
    if (probe_table_request(t, &ip, zone, control_now(c), true) < 0) {
        snprintf(err, errsz, "cannot probe %s now (probe queue full or out of memory)", ipbuf);
        return -1;
    }
    log_info("control (uid %u): probe %s requested", (unsigned)cl->uid, ipbuf);
    e = probe_table_find(t, &ip);
    fprintf(out, "probe of %s requested; status now %s\n", ipbuf, e ? probe_status_str(e->status) : "unknown");
    return 0;
}

static int cmd_forget(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                      char *err, size_t errsz)
{
    struct probe_table *t = c->px->probes;
    struct net_addr ip;
    char tmp[80], ipbuf[NET_ADDRSTRLEN];
    bool all = strcmp(argv[0], "all") == 0;
    if (!all && parse_ip(argv[0], &ip) < 0) {
        snprintf(err, errsz, "'%s' is not an IP address or 'all'", clean(argv[0], tmp, sizeof tmp));
        return -1;
    }
    if (all) {
        size_t n = probe_table_size(t);
        probe_table_forget_all(t);
        log_info("control (uid %u): forgot all %zu DoT table entries", (unsigned)cl->uid, n);
        fprintf(out, "forgot %zu %s\n", n, n == 1 ? "entry" : "entries");
        return 0;
    }
    net_ip_str(&ip, ipbuf, sizeof ipbuf);
    if (probe_table_forget(t, &ip) < 0) {
        snprintf(err, errsz, "unknown IP %s: not in the DoT table", ipbuf);
        return -1;
    }
    log_info("control (uid %u): forgot the DoT table entry of %s", (unsigned)cl->uid, ipbuf);
    fprintf(out, "forgot %s\n", ipbuf);
    return 0;
}

static int cmd_reload(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                      char *err, size_t errsz)
{
    if (!c->hooks.reload) {
        snprintf(err, errsz, "reload is not available");
        return -1;
    }
    log_info("control (uid %u): reload requested", (unsigned)cl->uid);
    c->hooks.reload(c->hooks.arg);
    fputs("reload started; the result is logged\n", out);
    return 0;
}

static int cmd_log_level(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                         char *err, size_t errsz)
{
    char tmp[80];
    int lvl = log_level_parse(argv[0]);
    if (lvl < 0) {
        snprintf(err, errsz, "unknown log level '%s' (error, warning, notice, info, debug)",
                 clean(argv[0], tmp, sizeof tmp));
        return -1;
    }
    enum log_level old = log_get_level();
    log_set_level((enum log_level)lvl);
    log_notice("control (uid %u): log level %s (was %s)", (unsigned)cl->uid, log_level_str((enum log_level)lvl),
               log_level_str(old));
    fprintf(out, "log level %s (was %s)\n", log_level_str((enum log_level)lvl), log_level_str(old));
    return 0;
}

static int cmd_help(struct control *c, struct control_client *cl, int argc, char **argv, FILE *out,
                    char *err, size_t errsz)
{
    for (size_t i = 0; i < sizeof control_cmds / sizeof control_cmds[0]; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", control_cmds[i].name, control_cmds[i].usage);
        fprintf(out, "%-20s %s\n", head, control_cmds[i].help);
    }
    return 0;
}

/* ---- clients ------------------------------------------------------------- */

/* Hands the answer to the peer (which copies it) and stops reading: one
 * command per connection. The peer writes it out; drained() closes. */
static void client_reply(struct control_client *cl)
{
    size_t len;
    peer_in(&cl->peer, &len);
    peer_consume(&cl->peer, len);
    peer_pause(&cl->peer, true);
    cl->replied = true;
    peer_send(&cl->peer, cl->out.data, cl->out.len);
    free(cl->out.data);
    memset(&cl->out, 0, sizeof cl->out);
}

static void client_error(struct control_client *cl, const char *msg)
{
    out_error(&cl->out, msg);
    client_reply(cl);
}

/* Splits cl->line in place into words; runs the command into cl->out. */
static void client_dispatch(struct control_client *cl)
{
    struct control *c = cl->ctl;
    char *argv[CONTROL_MAX_ARGS + 1], tmp[80], msg[300];
    int argc = 0;
    char *p = cl->line;

    for (char *q = p; *q; q++) {
        if ((unsigned char)*q < 0x20 && *q != '\t' && *q != '\r') {
            client_error(cl, "control characters in the command line");
            return;
        }
    }
    while (*p) {
        p += strspn(p, " \t\r");
        if (!*p)
            break;
        if (argc == CONTROL_MAX_ARGS) {
            snprintf(msg, sizeof msg, "too many arguments (at most %d words)", CONTROL_MAX_ARGS);
            client_error(cl, msg);
            return;
        }
        argv[argc++] = p;
        p += strcspn(p, " \t\r");
        if (*p)
            *p++ = 0;
    }
    argv[argc] = NULL;
    if (argc == 0) {
        client_error(cl, "empty command (try help)");
        return;
    }
    const struct control_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof control_cmds / sizeof control_cmds[0]; i++)
        if (strcmp(argv[0], control_cmds[i].name) == 0)
            cmd = &control_cmds[i];
    if (!cmd) {
        snprintf(msg, sizeof msg, "unknown command '%s' (try help)", clean(argv[0], tmp, sizeof tmp));
        client_error(cl, msg);
        return;
    }
    if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args) {
        snprintf(msg, sizeof msg, "wrong number of arguments (usage: %s%s%s)", cmd->name,
                 cmd->usage[0] ? " " : "", cmd->usage);
        client_error(cl, msg);
        return;
    }
    log_debug("control (uid %u): %s", (unsigned)cl->uid, cmd->name);

    FILE *out = out_open(&cl->out);
    if (!out) {
        client_error(cl, "out of memory");
        return;
    }
    fputs("ok\n", out);
    msg[0] = 0;
    c->dispatching = true;
    int rc = cmd->fn(c, cl, argc - 1, argv + 1, out, msg, sizeof msg);
    c->dispatching = false;
    bool failed = fclose(out) != 0;
    if (rc < 0)
        out_error(&cl->out, msg[0] ? msg : "failed");
    else if (failed || cl->out.overflow || cl->out.nomem)
        out_error(&cl->out, cl->out.overflow ? "answer too large" : "out of memory");
    if (c->free_pending) {
        /* A hook freed the control meanwhile. The answer is short: the
         * peer sends what it can at once, then everything goes. */
        client_reply(cl);
        control_destroy(c);
        return;
    }
    client_reply(cl);
}

/* The line, without its newline, into cl->line; then the command. */
static void client_line(struct control_client *cl, const uint8_t *data, size_t len)
{
    if (memchr(data, 0, len)) {
        client_error(cl, "NUL byte in the command line");
        return;
    }
    memcpy(cl->line, data, len);
    cl->line[len] = 0;
    client_dispatch(cl);
}

static void client_input(void *arg, struct peer *p)
{
    struct control_client *cl = arg;
    size_t len;
    const uint8_t *data = peer_in(p, &len);
    if (cl->replied) {
        peer_consume(p, len);
        return;
    }
    const uint8_t *nl = memchr(data, '\n', len);
    if (nl) {
        client_line(cl, data, (size_t)(nl - data));
    } else if (len >= CONTROL_MAX_LINE) {
        char msg[80];
        snprintf(msg, sizeof msg, "command line too long (at most %d bytes)", CONTROL_MAX_LINE);
        client_error(cl, msg);
    }
}

/* A last line without a newline still counts ("printf stats | nc -U"). */
static void client_eof(void *arg, struct peer *p)
{
    struct control_client *cl = arg;
    size_t len;
    const uint8_t *data = peer_in(p, &len);
    if (len == 0 || cl->replied) {
        peer_close(p, PEER_EOF);
        return;
    }
    client_line(cl, data, len);
}

/* Silent before the line, or the line unfinished: both get an answer. */
static void client_timeout(void *arg, struct peer *p, enum peer_why why)
{
    struct control_client *cl = arg;
    if (!cl->replied)
        client_error(cl, "timed out waiting for a command line");
}

static void client_drained(void *arg, struct peer *p)
{
    peer_close(p, PEER_OWNER);
}

static void client_unlink(struct control *c, struct control_client *cl)
{
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        c->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    cl->prev = cl->next = NULL;
    c->n_clients--;
    cl->ctl = NULL;
}

static void client_closed(void *arg, struct peer *p, enum peer_why why)
{
    struct control_client *cl = arg;
    if (why == PEER_WRITE_TIMEOUT)
        log_debug("control: client stopped reading its answer; closed");
    if (cl->ctl)
        client_unlink(cl->ctl, cl);
    free(cl->out.data);
    free(cl);
}

static const struct peer_ops client_ops = {
    .input = client_input,
    .eof = client_eof,
    .timeout = client_timeout,
    .drained = client_drained,
    .closed = client_closed,
};

/* ---- the listening socket ------------------------------------------------ */

/* Closes a connection it will not serve; a full house is told why. */
static void refuse(struct control *c, int fd, bool full)
{
    static const char busy[] = "error: too many control clients, try again\n";
    if (full) {
        ssize_t r = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
    }
    close(fd);
    fd_waiters_released(c->waiters);
    if (full)
        log_limited(&c->loglim, LOG_LVL_WARN, "control socket %s: %d clients already; refused one", c->path,
                    CONTROL_MAX_CLIENTS);
    else
        log_limited(&c->loglim, LOG_LVL_WARN, "control socket %s: out of memory; refused one", c->path);
}

static void control_accept(void *arg, int fd, const struct net_addr *peer)
{
    struct control *c = arg;
    if (c->n_clients >= CONTROL_MAX_CLIENTS) {
        refuse(c, fd, true);
        return;
    }
    struct control_client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        refuse(c, fd, false);
        return;
    }
    cl->ctl = c;
    cl->uid = (uid_t)-1;
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
        cl->uid = cred.uid;
    cl->next = c->clients;
    if (c->clients)
        c->clients->prev = cl;
    c->clients = cl;
    c->n_clients++;
    peer_init(&cl->peer, c->px->loop, fd, peer, &client_limits, &client_ops, cl, c->waiters);
}

/* A socket file left at `path`: remove it if nothing listens on it. */
static int control_clear_path(const char *path, const struct sockaddr_un *sun)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        log_err("control socket %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_err("control socket %s: the file exists and is not a socket; not replacing it", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_err("control socket %s: socket: %s", path, strerror(errno));
        return -1;
    }
    /* A Unix connect does not wait: accepted, backlog full (EAGAIN), or refused. */
    int r = connect(fd, (const struct sockaddr *)sun, sizeof *sun);
    int e = errno;
    close(fd);
    if (r == 0 || e == EAGAIN) {
        log_err("control socket %s: another process is listening on it", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        log_err("control socket %s: removing the stale socket: %s", path, strerror(errno));
        return -1;
    }
    log_info("control socket %s: removed a stale socket file", path);
    return 0;
}

struct control *control_new(struct proxy *px, struct fd_waiters *waiters, const char *path,
                            const struct control_hooks *hooks)
{
    struct control *c = calloc(1, sizeof *c);
    struct sockaddr_un sun;
    struct stat st;
    if (!c) {
        log_err("control socket %s: out of memory", path);
        return NULL;
    }
    c->fd = -1;
    c->px = px;
    c->waiters = waiters;
    if (hooks)
        c->hooks = *hooks;
    if (!(c->path = strdup(path))) {
        log_err("control socket %s: out of memory", path);
        goto fail;
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (!*path || strlen(path) >= sizeof sun.sun_path) {
        log_err("control socket '%s': the path must have 1 to %zu bytes", path, sizeof sun.sun_path - 1);
        goto fail;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (control_clear_path(path, &sun) < 0)
        goto fail;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        log_err("control socket %s: socket: %s", path, strerror(errno));
        goto fail;
    }
    /* bind() creates the file with the umask applied: owner and group only,
     * with no window in which others could connect. */
    mode_t old_mask = umask(0117);
    int r = bind(c->fd, (struct sockaddr *)&sun, sizeof sun);
    int e = errno;
    umask(old_mask);
    if (r < 0) {
        log_err("control socket %s: bind: %s", path, strerror(e));
        goto fail;
    }
    if (lstat(path, &st) == 0) {
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    if (listen(c->fd, CONTROL_MAX_CLIENTS) < 0) {
        log_err("control socket %s: listen: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    char name[sizeof sun.sun_path + 32];
    snprintf(name, sizeof name, "control socket %s", path);
    if (!(c->acc = acceptor_new(px->loop, c->fd, waiters, control_accept, c, name))) {
        log_err("control socket %s: out of memory", path);
        unlink(path);
        goto fail;
    }
    log_info("control socket on %s", path);
    return c;
fail:
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    free(c);
    return NULL;
}

const char *control_path(const struct control *c)
{
    return c->path;
}

static void control_destroy(struct control *c)
{
    struct stat st;
    /* Unlinked first: a client whose callback is on the stack (the command
     * that freed us) hears closed() only after we are gone. */
    while (c->clients) {
        struct control_client *cl = c->clients;
        client_unlink(c, cl);
        peer_close(&cl->peer, PEER_SHUTDOWN);
    }
    acceptor_free(c->acc);
    close(c->fd);
    if (lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    free(c->path);
    free(c);
}

void control_free(struct control *c)
{
    if (!c)
        return;
    if (c->dispatching) {
        /* called from inside a command (through a hook): finish it first */
        c->free_pending = true;
        return;
    }
    control_destroy(c);
}
