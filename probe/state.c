/* probe/state.c: saving and loading the probe table (format in state.h). */
#include "probe/state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "probe/table.h"
#include "lib/tls.h"
#include "version.h"

#define STATE_FIELDS 18
/* Times past this (year 5138) are not a clock reading. */
#define STATE_TIME_MAX 1e11

/* ---- escaping ------------------------------------------------------------ */

static bool esc_needed(unsigned char c) { return c < 0x20 || c >= 0x7f || c == '\\'; }

/* Escaped `s` into out (at least 4 * strlen(s) + 1 bytes). */
static void esc_encode(const char *s, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (esc_needed(c)) {
            *out++ = '\\';
            *out++ = 'x';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    *out = 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Unescapes in place. Rejects what esc_encode never writes: a raw byte that
 * needs escaping, an unknown escape, an escaped NUL. Returns 0 or -1. */
static int esc_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') {
            int h, l;
            if (s[1] != 'x' || (h = hex_value(s[2])) < 0 || (l = hex_value(s[3])) < 0 || (h | l) == 0)
                return -1;
            *o++ = (char)(h << 4 | l);
            s += 3;
        } else if (esc_needed(c)) {
            return -1;
        } else {
            *o++ = (char)c;
        }
    }
    *o = 0;
    return 0;
}

/* ---- numbers -------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || strlen(s) > 20)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned *out)
{
    uint64_t v;
    if (parse_u64(s, &v) < 0 || v > UINT_MAX)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* DIGITS[.DIGITS], at most 12 before and 9 after the point. The fraction
 * is dropped: the table keeps whole seconds anyway, and expiry at load
 * must see the times a later save writes, or a file would load with more
 * entries than the file it saves (and 0.5, kept as 0, would turn "never"). */
static int parse_time(const char *s, double *out)
{
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 12)
        return -1;
    if (s[n] == '.') {
        size_t f = strspn(s + n + 1, "0123456789");
        if (f == 0 || f > 9 || s[n + 1 + f])
            return -1;
    } else if (s[n]) {
        return -1;
    }
    double v = strtod(s, NULL);
    if (!isfinite(v) || v > STATE_TIME_MAX)
        return -1;
    *out = floor(v);
    return 0;
}

/* ---- saving --------------------------------------------------------------- */

static double time_out(double t) { return isfinite(t) && t > 0 && t <= STATE_TIME_MAX ? t : 0; }

/* One entry line (with "\n") into buf; `with_session` false leaves the
 * session out. Returns its length, or 0 if it does not fit. */
static size_t format_entry(const struct probe_table *t, const struct probe_entry *e, bool with_session,
                           char *buf, size_t sz)
{
    char ip[NET_ADDRSTRLEN], zone[4 * 1024 + 1], reason[4 * PROBE_REASON_MAX + 1], fails[512];
    const char *z = probe_entry_zone(t, e), *r = probe_entry_reason(t, e);
    size_t zl = strlen(z), fl = 0;
    if (zl > 1024 || strlen(r) > PROBE_REASON_MAX)
        return 0;  /* not a DNS name: cannot come from the data path */
    struct net_addr a;
    probe_entry_addr(e, &a);
    net_ip_str(&a, ip, sizeof ip);
    esc_encode(z, zone);
    esc_encode(r, reason);
    struct probe_counters c;
    probe_entry_counters(e, &c);
    for (int o = 0; o < PROBE_OUTCOME_MAX; o++)
        if (c.failures[o])
            fl += (size_t)snprintf(fails + fl, sizeof fails - fl, "%s%s=%llu", fl ? "," : "",
                                   probe_outcome_str((enum probe_outcome)o), (unsigned long long)c.failures[o]);
    if (fl == 0)
        snprintf(fails, sizeof fails, "-");
    char flags[3] = "", *fp = flags;
    if (e->verified)
        *fp++ = 'v';
    if (e->authoritative)
        *fp++ = 'a';
    *fp = 0;
    const char *status = probe_status_str(e->status == PROBE_BUSY ? PROBE_UNKNOWN : e->status);
    int n = snprintf(buf, sz, "%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%u\t%s\t%s\t%s\t%llu\t%llu\t%s\t%llu\t%llu\t",
                     ip, zone, status, time_out(probe_entry_time(t, e, PROBE_T_STATUS_SINCE)),
                     time_out(probe_entry_time(t, e, PROBE_T_FIRST_SEEN)),
                     time_out(probe_entry_time(t, e, PROBE_T_INITIATED)),
                     time_out(probe_entry_time(t, e, PROBE_T_COMPLETED)),
                     time_out(probe_entry_time(t, e, PROBE_T_LAST_RESPONSE)), (unsigned)e->visits,
                     flags[0] ? flags : "-", probe_outcome_str(e->last_outcome), reason,
                     (unsigned long long)c.probes, (unsigned long long)c.successes, fails,
                     (unsigned long long)c.dot_queries, (unsigned long long)c.fallbacks);
    if (n < 0 || (size_t)n >= sz)
        return 0;
    size_t len = (size_t)n;
    char *text = with_session && e->session ? tls_session_to_text(e->session) : NULL;
    size_t tlen = text ? strlen(text) : 0;
    if (text && len + tlen + 2 <= sz) {
        memcpy(buf + len, text, tlen);
        len += tlen;
    } else {
        buf[len++] = '-';
    }
    free(text);
    if (len + 2 > sz)
        return 0;
    buf[len++] = '\n';
    buf[len] = 0;
    return len;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

int probe_state_save(const struct probe_table *t, const char *path, double now, char *err, size_t errsz)
{
    char tmp[PATH_MAX], when[32];
    char *line = NULL;
    FILE *f = NULL;
    int fd = -1, count = 0;
    bool created = false;
    const char *what = "write";

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errsz, "%s: path too long", path);
        return -1;
    }
    line = malloc(PROBE_STATE_LINE_MAX + 1);
    if (!line) {
        snprintf(err, errsz, "%s: out of memory", path);
        return -1;
    }
    /* A stale file of an earlier process with our pid would make O_EXCL fail. */
    if (unlink(tmp) < 0 && errno != ENOENT) {
        what = "remove stale";
        goto fail_tmp;
    }
    errno = 0;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        what = "create";
        goto fail_tmp;
    }
    created = true;
    f = fdopen(fd, "w");
    if (!f) {
        what = "create";
        goto fail_tmp;
    }
    fd = -1;  /* f owns it */

    size_t total = (size_t)fprintf(f, "%s %d\n# saved %s by dotward %s; times are UTC epoch seconds\n",
                                   PROBE_STATE_MAGIC, PROBE_STATE_VERSION, log_iso_time(now, when, sizeof when),
                                   DOTWARD_VERSION);
    const size_t end_room = 32;  /* "end COUNT\n" */
    for (const struct probe_entry *e = probe_table_first(t); e; e = probe_table_next(t, e)) {
        size_t n = format_entry(t, e, true, line, PROBE_STATE_LINE_MAX + 1);
        if (n == 0 || total + n + end_room > PROBE_STATE_FILE_MAX)
            n = format_entry(t, e, false, line, PROBE_STATE_LINE_MAX + 1);
        if (n == 0)
            continue;
        if (total + n + end_room > PROBE_STATE_FILE_MAX)
            break;  /* the least recently visited ones do not fit */
        if (fwrite(line, 1, n, f) != n)
            goto fail_tmp;
        total += n;
        count++;
    }
    fprintf(f, "end %d\n", count);
    if (fflush(f) != 0 || ferror(f))
        goto fail_tmp;
    if (fsync(fileno(f)) < 0) {
        what = "fsync";
        goto fail_tmp;
    }
    int r = fclose(f);
    f = NULL;
    if (r != 0)
        goto fail_tmp;
    if (rename(tmp, path) < 0) {
        snprintf(err, errsz, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    created = false;
    /* The rename is only durable once the directory is on disk. */
    if (fsync_dir_of(path) < 0) {
        snprintf(err, errsz, "%s: saved, but the directory fsync failed: %s", path, strerror(errno));
        free(line);
        return -1;
    }
    free(line);
    return count;

fail_tmp:
    snprintf(err, errsz, "cannot %s %s: %s", what, tmp, strerror(errno ? errno : EIO));
fail:
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(line);
    return -1;
}

/* ---- loading -------------------------------------------------------------- */

struct staged {
    struct probe_saved s;
    char *zone;
    char *reason;           /* NULL = none */
};

struct loader {
    FILE *f;
    char *line;             /* PROBE_STATE_LINE_MAX + 1 */
    size_t total;           /* bytes read */
    unsigned lineno;
    struct staged *items;
    size_t n, cap;
    size_t max_keep;        /* the table's max_entries */
    unsigned expired, over;
};

/* Reads one line without its "\n". Returns its length, or -1 at the end of
 * the file, or -2 with a message in err. */
static long read_line(struct loader *ld, char *err, size_t errsz)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(ld->f)) != EOF) {
        if (++ld->total > PROBE_STATE_FILE_MAX) {
            snprintf(err, errsz, "larger than %u bytes", PROBE_STATE_FILE_MAX);
            return -2;
        }
        if (c == '\n') {
            ld->line[n] = 0;
            ld->lineno++;
            return (long)n;
        }
        if (c == 0) {
            snprintf(err, errsz, "line %u: NUL byte: not a text file", ld->lineno + 1);
            return -2;
        }
        if (n + 1 >= PROBE_STATE_LINE_MAX) {
            snprintf(err, errsz, "line %u: longer than %u bytes", ld->lineno + 1, PROBE_STATE_LINE_MAX);
            return -2;
        }
        ld->line[n++] = (char)c;
    }
    if (ferror(ld->f)) {
        snprintf(err, errsz, "read error: %s", strerror(errno ? errno : EIO));
        return -2;
    }
    if (n) {
        snprintf(err, errsz, "line %u: no end of line: the file is truncated", ld->lineno + 1);
        return -2;
    }
    return -1;
}

static void staged_free(struct staged *st)
{
    free(st->zone);
    free(st->reason);
    tls_session_free(st->s.session);
}

static int parse_status(const char *s, enum probe_status *out)
{
    static const enum probe_status ok[] = { PROBE_UNKNOWN, PROBE_GOOD, PROBE_BAD };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(s, probe_status_str(ok[i])) == 0) {
            *out = ok[i];
            return 0;
        }
    return -1;
}

static int parse_outcome(const char *s, size_t len, enum probe_outcome *out)
{
    for (int o = 0; o < PROBE_OUTCOME_MAX; o++) {
        const char *name = probe_outcome_str((enum probe_outcome)o);
        if (strlen(name) == len && memcmp(name, s, len) == 0) {
            *out = (enum probe_outcome)o;
            return 0;
        }
    }
    return -1;
}

static int parse_failures(char *s, uint64_t *failures)
{
    if (strcmp(s, "-") == 0)
        return 0;
    for (char *tok = s;;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = 0;
        char *eq = strchr(tok, '=');
        enum probe_outcome o;
        uint64_t v;
        if (!eq || parse_outcome(tok, (size_t)(eq - tok), &o) < 0 || parse_u64(eq + 1, &v) < 0 ||
            failures[o])
            return -1;
        failures[o] = v;
        if (!comma)
            return 0;
        tok = comma + 1;
    }
}

/* Parses one entry line into st (zone and session owned by st on success).
 * Returns 0, or -1 with the field's name in *what. */
static int parse_entry(char *line, struct staged *st, const char **what)
{
    char *f[STATE_FIELDS + 1];
    size_t nf = 0;
    for (char *p = line; nf <= STATE_FIELDS;) {
        f[nf++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            break;
        *tab = 0;
        p = tab + 1;
    }
    memset(st, 0, sizeof *st);
    *what = "field count";
    if (nf != STATE_FIELDS)
        return -1;
    struct probe_saved *s = &st->s;
    *what = "ip";
    char canon[NET_ADDRSTRLEN];
    /* Only the form the saver writes: no port, no brackets, no other spelling. */
    if (strlen(f[0]) >= NET_ADDRSTRLEN || net_addr_parse(f[0], 853, &s->ip) < 0 ||
        strcmp(net_ip_str(&s->ip, canon, sizeof canon), f[0]) != 0)
        return -1;
    *what = "zone";
    if (!f[1][0] || esc_decode(f[1]) < 0 || strlen(f[1]) > 1024)
        return -1;
    *what = "status";
    if (parse_status(f[2], &s->status) < 0)
        return -1;
    double *times[] = { &s->status_since, &s->first_seen, &s->initiated, &s->completed, &s->last_response };
    *what = "time";
    for (int i = 0; i < 5; i++)
        if (parse_time(f[3 + i], times[i]) < 0)
            return -1;
    *what = "visits";
    if (parse_uint(f[8], &s->visits) < 0)
        return -1;
    *what = "flags";
    if (strcmp(f[9], "-") != 0) {
        for (const char *p = f[9]; *p; p++) {
            if (*p == 'v' && !s->verified)
                s->verified = true;
            else if (*p == 'a' && !s->authoritative)
                s->authoritative = true;
            else
                return -1;
        }
        if (!f[9][0])
            return -1;
    }
    *what = "last outcome";
    if (parse_outcome(f[10], strlen(f[10]), &s->last_outcome) < 0)
        return -1;
    *what = "reason";
    if (esc_decode(f[11]) < 0 || strlen(f[11]) > PROBE_REASON_MAX)
        return -1;
    *what = "counters";
    if (parse_u64(f[12], &s->counters.probes) < 0 || parse_u64(f[13], &s->counters.successes) < 0 ||
        parse_failures(f[14], s->counters.failures) < 0 || parse_u64(f[15], &s->counters.dot_queries) < 0 ||
        parse_u64(f[16], &s->counters.fallbacks) < 0)
        return -1;
    *what = "session";
    /* A session the library no longer reads (an upgrade, a damaged
     * field) only costs the resumption: the entry is kept. */
    if (strcmp(f[17], "-") != 0 && tls_session_from_text(f[17], strlen(f[17]), &s->session) < 0)
        return -1;
    *what = "zone";
    st->zone = strdup(f[1]);
    st->reason = f[11][0] ? strdup(f[11]) : NULL;
    if (!st->zone || (f[11][0] && !st->reason)) {
        free(st->zone);
        free(st->reason);
        st->zone = st->reason = NULL;
        tls_session_free(s->session);
        s->session = NULL;
        return -1;
    }
    return 0;
}

/* Has the saved entry run out by `now`? Clamps its times to `now` first. */
static bool entry_expired(struct probe_saved *s, const struct probe_policy *pol, double now)
{
    double *times[] = { &s->status_since, &s->first_seen, &s->initiated, &s->completed, &s->last_response };
    double newest = 0;
    for (int i = 0; i < 5; i++) {
        if (*times[i] > now)
            *times[i] = now;
        if (*times[i] > newest)
            newest = *times[i];
    }
    switch (s->status) {
    case PROBE_GOOD: return now - s->last_response >= pol->persistence;
    case PROBE_BAD: return now - s->completed >= pol->damping;
    default: return now - newest >= pol->damping;
    }
}

/* Reads and checks the whole file into ld->items. Returns 0 or -1. */
static int load_all(struct loader *ld, const struct probe_policy *pol, double now, char *err, size_t errsz)
{
    long n = read_line(ld, err, errsz);
    if (n == -1) {
        snprintf(err, errsz, "empty file");
        return -1;
    }
    if (n < 0)
        return -1;
    const size_t ml = strlen(PROBE_STATE_MAGIC);
    if (strncmp(ld->line, PROBE_STATE_MAGIC, ml) != 0 || ld->line[ml] != ' ') {
        snprintf(err, errsz, "not a dotward probe state file (no '%s' header)", PROBE_STATE_MAGIC);
        return -1;
    }
    unsigned version;
    if (parse_uint(ld->line + ml + 1, &version) < 0) {
        snprintf(err, errsz, "line 1: malformed version");
        return -1;
    }
    if (version != PROBE_STATE_VERSION) {
        snprintf(err, errsz, "version %u, this dotward reads version %d", version, PROBE_STATE_VERSION);
        return -1;
    }
    unsigned entries = 0;
    for (;;) {
        n = read_line(ld, err, errsz);
        if (n == -1) {
            snprintf(err, errsz, "no 'end' line: the file is truncated");
            return -1;
        }
        if (n < 0)
            return -1;
        if (n == 0 || ld->line[0] == '#')
            continue;
        if (strncmp(ld->line, "end ", 4) == 0) {
            unsigned want;
            if (parse_uint(ld->line + 4, &want) < 0 || want != entries) {
                snprintf(err, errsz, "line %u: the 'end' count is not the %u entries read", ld->lineno,
                         entries);
                return -1;
            }
            break;
        }
        struct staged st;
        const char *what;
        if (parse_entry(ld->line, &st, &what) < 0) {
            snprintf(err, errsz, "line %u: bad %s", ld->lineno, what);
            return -1;
        }
        entries++;
        if (entry_expired(&st.s, pol, now)) {
            ld->expired++;
            staged_free(&st);
            continue;
        }
        if (ld->n >= ld->max_keep) {
            ld->over++;
            staged_free(&st);
            continue;
        }
        if (ld->n == ld->cap) {
            size_t cap = ld->cap ? ld->cap * 2 : 16;
            struct staged *grown = realloc(ld->items, cap * sizeof *grown);
            if (!grown) {
                staged_free(&st);
                snprintf(err, errsz, "out of memory");
                return -1;
            }
            ld->items = grown;
            ld->cap = cap;
        }
        ld->items[ld->n++] = st;
    }
    /* Only blank lines and comments may follow. */
    while ((n = read_line(ld, err, errsz)) >= 0) {
        if (n > 0 && ld->line[0] != '#') {
            snprintf(err, errsz, "line %u: data after the 'end' line", ld->lineno);
            return -1;
        }
    }
    return n == -1 ? 0 : -1;
}

int probe_state_load(struct probe_table *t, const char *path, double now, char *err, size_t errsz)
{
    char why[256] = "";
    struct loader ld;
    memset(&ld, 0, sizeof ld);
    int r = -1;

    /* O_NONBLOCK: a FIFO at `path` must not hang the start. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? PROBE_STATE_MISSING : -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errsz, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (sb.st_size > (off_t)PROBE_STATE_FILE_MAX) {
        snprintf(err, errsz, "%s: %lld bytes, larger than %u: not read", path, (long long)sb.st_size,
                 PROBE_STATE_FILE_MAX);
        close(fd);
        return -1;
    }
    ld.f = fdopen(fd, "r");
    ld.line = malloc(PROBE_STATE_LINE_MAX + 1);
    if (!ld.f || !ld.line) {
        if (!ld.f)
            close(fd);
        snprintf(err, errsz, "%s: out of memory", path);
        goto out;
    }
    const struct probe_policy *pol = probe_table_policy(t);
    ld.max_keep = pol->max_entries;
    if (load_all(&ld, pol, now, why, sizeof why) < 0) {
        snprintf(err, errsz, "%s: %s", path, why);
        goto out;
    }
    size_t by[PROBE_STATUS_MAX] = { 0 };
    unsigned present = 0, sessions = 0;
    r = 0;
    for (size_t i = 0; i < ld.n; i++) {
        struct staged *st = &ld.items[i];
        /* Set here, not in parse_entry: the staged copy has moved since. */
        st->s.zone = st->zone;
        st->s.reason = st->reason;
        bool has_session = st->s.session != NULL;
        int x = probe_table_restore(t, &st->s, now);
        if (x == 0) {
            st->s.session = NULL;  /* the table took it */
            by[st->s.status]++;
            sessions += has_session;
            r++;
        } else if (x == 1) {
            present++;
        } else {
            ld.over++;
        }
    }
    log_info("probe state: restored %d entries from %s (%zu good, %zu bad, %zu unknown; %u with a TLS "
             "session); dropped %u run out, %u over max-entries, %u already known",
             r, path, by[PROBE_GOOD], by[PROBE_BAD], by[PROBE_UNKNOWN], sessions, ld.expired, ld.over, present);
out:
    for (size_t i = 0; i < ld.n; i++)
        staged_free(&ld.items[i]);
    free(ld.items);
    free(ld.line);
    if (ld.f)
        fclose(ld.f);
    return r;
}
