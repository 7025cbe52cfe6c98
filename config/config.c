/* config/config.c: loading a configuration: defaults, the INI file (through
 * inih), command-line overrides, validation, and config_free/config_equal.
 *
 * inih is driven through ini_parse_stream() with our own line reader. The
 * reader counts lines (so messages have a line number on any inih build),
 * rejects lines inih would split (over its buffer) or misread, tracks the
 * current [section], and hands inih only well-formed lines. Every problem
 * is reported, not only the first. */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

#define CONFIG_SEC_NONE (-1) /* before the first [section] */
#define CONFIG_SEC_BAD (-2)  /* inside an unknown or broken [section] */

/* Where a value comes from, for messages: "FILE:LINE" + key, or
 * "command line" + "--flag". */
struct config_src {
    const char *where;
    const char *label;
    bool cli;
};

struct config_parse {
    struct config *c;
    FILE *err;
    unsigned errors;

    /* while reading a file */
    FILE *f;
    const char *name;
    char *buf;
    size_t bufsz;
    int lineno;
    int section;
    int read_errno;
    bool *list_seen; /* per option: the file has set this list already */
};

/* Control characters in user text would garble a terminal: print \xNN. */
static void config_put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f)
            fprintf(out, "\\x%02x", ch);
        else
            fputc(ch, out);
    }
}

__attribute__((format(printf, 3, 4)))
static void config_error(struct config_parse *p, const char *where, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p->errors++;
    if (!p->err)
        return;
    config_put_escaped(p->err, where);
    fputs(": ", p->err);
    config_put_escaped(p->err, msg);
    fputc('\n', p->err);
}

static void *config_field(struct config *c, size_t off)
{
    return (char *)c + off;
}

static const struct config_option *config_option_find(int section, const char *key)
{
    size_t i;

    for (i = 0; i < config_n_options; i++)
        if ((int)config_options[i].section == section && strcmp(config_options[i].key, key) == 0)
            return &config_options[i];
    return NULL;
}

/* ---- lists ---- */

static size_t config_list_elem_size(enum config_type t)
{
    switch (t) {
    case CONFIG_T_LISTEN: return sizeof(struct net_addr);
    case CONFIG_T_PREFIX: return sizeof(struct net_prefix);
    case CONFIG_T_UPSTREAM: return sizeof(struct config_upstream);
    default: return 0;
    }
}

static void config_upstream_fini(struct config_upstream *u)
{
    free(u->zone);
    free(u->host);
    free(u->origin);
    free(u->auth_name);
    free(u->ca_file);
}

static void config_list_clear(struct config *c, const struct config_option *o)
{
    void **arr = config_field(c, o->off);
    size_t *n = config_field(c, o->n_off), i;

    if (o->type == CONFIG_T_UPSTREAM)
        for (i = 0; i < *n; i++)
            config_upstream_fini(&((struct config_upstream *)*arr)[i]);
    free(*arr);
    *arr = NULL;
    *n = 0;
}

/* Appends a copy of `elem` (taken: on failure the caller still owns what
 * the element points to). */
static int config_list_append(struct config *c, const struct config_option *o, const void *elem)
{
    void **arr = config_field(c, o->off);
    size_t *n = config_field(c, o->n_off);
    size_t sz = config_list_elem_size(o->type);
    void *grown = realloc(*arr, (*n + 1) * sz);

    if (!grown)
        return -1;
    *arr = grown;
    memcpy((char *)grown + *n * sz, elem, sz);
    (*n)++;
    return 0;
}

static int config_add_listen(struct config_parse *p, const struct config_option *o,
                             const char *value, const struct config_src *src)
{
    struct net_addr a;
    size_t i;

    if (net_addr_parse(value, 53, &a) < 0) {
        config_error(p, src->where, "%s: '%s' is not a valid address", src->label, value);
        return -1;
    }
    const struct net_addr *have = *(struct net_addr *const *)((const char *)p->c + o->off);
    size_t n = config_list_count(p->c, o);
    for (i = 0; i < n; i++) {
        if (net_addr_equal(&have[i], &a)) {
            config_error(p, src->where, "%s: '%s' is listed twice", src->label, value);
            return -1;
        }
    }
    if (config_list_append(p->c, o, &a) < 0) {
        config_error(p, src->where, "out of memory");
        return -1;
    }
    return 0;
}

static int config_add_prefix(struct config_parse *p, const struct config_option *o,
                             const char *value, const struct config_src *src)
{
    struct net_prefix pf;

    if (net_prefix_parse(value, &pf) < 0) {
        config_error(p, src->where, "%s: '%s' is not a valid address prefix", src->label, value);
        return -1;
    }
    if (config_list_append(p->c, o, &pf) < 0) {
        config_error(p, src->where, "out of memory");
        return -1;
    }
    return 0;
}

static void config_choices_str(const struct config_choice *ch, char *buf, size_t bufsz)
{
    size_t used = 0;

    buf[0] = '\0';
    for (; ch->name && used < bufsz; ch++)
        used += (size_t)snprintf(buf + used, bufsz - used, "%s%s", used ? ", " : "", ch->name);
}

/* Upstream options, in the order config_dump() writes them. */
enum config_upopt { CONFIG_UPOPT_TLS, CONFIG_UPOPT_NAME, CONFIG_UPOPT_CA, CONFIG_UPOPT_KIND, CONFIG_UPOPT_COUNT };
static const char *const config_upopt_names[CONFIG_UPOPT_COUNT] = { "tls", "name", "ca", "kind" };

/* Error about upstream entry: "WHERE: LABEL: message". */
#define config_upstream_error(p, src, fmt, ...) \
    config_error((p), (src)->where, "%s: " fmt, (src)->label, __VA_ARGS__)

/* The CA bundle is read by the TLS code much later, possibly after a
 * privilege drop; reading one byte now turns a typo into a config error. */
static int config_file_readable(const char *path, int *err)
{
    char byte;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        *err = errno;
        return -1;
    }
    n = read(fd, &byte, 1);
    *err = n < 0 ? errno : 0;
    close(fd);
    if (n < 0)
        return -1;
    return 0;
}

/* Options after the server (`opts`, blank separated NAME=VALUE) into `u`.
 * Reports every problem; returns the number reported, or -1 when out of
 * memory (not reported). */
static int config_upstream_options(struct config_parse *p, const struct config_src *src,
                                   const char *opts, struct config_upstream *u)
{
    bool seen[CONFIG_UPOPT_COUNT] = { false };
    bool tls_ok = true;
    unsigned errors = p->errors;
    char names[128];
    const char *opt;

    u->tls = CONFIG_TLS_OPPORTUNISTIC;
    u->authoritative = false;
    for (opt = opts; *opt;) {
        size_t n, k;
        const char *eq;
        char *val;
        int v, e;

        opt += strspn(opt, " \t");
        n = strcspn(opt, " \t");
        if (!n)
            break;
        eq = memchr(opt, '=', n);
        for (k = 0; eq && k < CONFIG_UPOPT_COUNT; k++)
            if (strlen(config_upopt_names[k]) == (size_t)(eq - opt) &&
                memcmp(opt, config_upopt_names[k], (size_t)(eq - opt)) == 0)
                break;
        if (!eq || k == CONFIG_UPOPT_COUNT) {
            config_upstream_error(p, src, "unknown option '%.*s'", (int)n, opt);
            opt += n;
            continue;
        }
        if (seen[k]) {
            config_upstream_error(p, src, "option '%s' given twice", config_upopt_names[k]);
            if (k == CONFIG_UPOPT_TLS)
                tls_ok = false;
            opt += n;
            continue;
        }
        seen[k] = true;
        val = strndup(eq + 1, n - (size_t)(eq - opt) - 1);
        if (!val)
            return -1;
        opt += n;
        switch ((enum config_upopt)k) {
        case CONFIG_UPOPT_TLS:
            if (config_parse_choice(config_tls_choices, val, &v) == 0) {
                u->tls = (enum config_tls)v;
            } else {
                config_choices_str(config_tls_choices, names, sizeof(names));
                config_upstream_error(p, src, "tls=%s: not one of %s", val, names);
                tls_ok = false;
            }
            break;
        case CONFIG_UPOPT_NAME: {
            size_t len = strlen(val), i;
            if (!config_host_name_valid(val)) {
                config_upstream_error(p, src, "name=%s: not a valid host name", val);
                break;
            }
            /* Certificates name hosts without the root dot, in any case. */
            if (val[len - 1] == '.')
                val[len - 1] = '\0';
            for (i = 0; val[i]; i++)
                if (val[i] >= 'A' && val[i] <= 'Z')
                    val[i] = (char)(val[i] - 'A' + 'a');
            u->auth_name = val;
            val = NULL;
            break;
        }
        case CONFIG_UPOPT_CA:
            if (!val[0]) {
                config_upstream_error(p, src, "ca=: %s", "a file name is required");
            } else if (val[0] != '/') {
                config_upstream_error(p, src, "ca=%s: not an absolute path", val);
            } else if (config_file_readable(val, &e) < 0) {
                config_upstream_error(p, src, "ca=%s: cannot read: %s", val, strerror(e));
            } else {
                u->ca_file = val;
                val = NULL;
            }
            break;
        case CONFIG_UPOPT_KIND:
            if (config_parse_choice(config_kind_choices, val, &v) == 0) {
                u->authoritative = v != 0;
            } else {
                config_choices_str(config_kind_choices, names, sizeof(names));
                config_upstream_error(p, src, "kind=%s: not one of %s", val, names);
            }
            break;
        case CONFIG_UPOPT_COUNT:
            break;
        }
        free(val);
    }
    /* With a broken tls= the intended mode is unknown: no follow-up errors. */
    if (tls_ok) {
        if (u->tls == CONFIG_TLS_STRICT && !seen[CONFIG_UPOPT_NAME])
            config_upstream_error(p, src, "%s", "tls=strict needs name=AUTH-NAME");
        if (u->tls != CONFIG_TLS_STRICT && seen[CONFIG_UPOPT_NAME])
            config_upstream_error(p, src, "%s", "name= is only allowed with tls=strict");
        if (u->tls != CONFIG_TLS_STRICT && seen[CONFIG_UPOPT_CA])
            config_upstream_error(p, src, "%s", "ca= is only allowed with tls=strict");
    }
    return (int)(p->errors - errors);
}

/* "[ZONE=]SERVER [OPTION...]": see options.def. */
static int config_add_upstream(struct config_parse *p, const struct config_option *o,
                               const char *value, const struct config_src *src)
{
    struct config_upstream u;
    char host[256];
    char *spec = NULL, *server, *eq;
    bool oom = false;
    int bad_options;
    size_t len;

    memset(&u, 0, sizeof(u));
    len = strcspn(value, " \t");
    spec = strndup(value, len);
    if (!spec) {
        oom = true;
        goto fail;
    }

    /* Report the option errors, then go on checking the server itself. */
    bad_options = config_upstream_options(p, src, value + len, &u);
    if (bad_options < 0) {
        oom = true;
        goto fail;
    }

    eq = strchr(spec, '=');
    server = spec;
    if (eq) {
        *eq = '\0';
        server = eq + 1;
        errno = 0;
        u.zone = config_zone_normalize(spec);
        if (!u.zone) {
            if (errno == ENOMEM) {
                oom = true;
                goto fail;
            }
            *eq = '=';
            config_error(p, src->where, "%s: '%s': zone '%.*s' is not a valid domain name",
                         src->label, spec, (int)(eq - spec), spec);
            goto fail;
        }
    } else {
        u.zone = strdup(".");
        if (!u.zone) {
            oom = true;
            goto fail;
        }
    }

    if (net_addr_parse(server, 53, &u.addr) == 0) {
        u.addr_ok = true;
        u.port = net_addr_port(&u.addr);
    } else if (net_host_port_split(server, 53, host, sizeof(host), &u.port) == 0 &&
               config_host_name_valid(host)) {
        u.host = strdup(host);
        if (!u.host) {
            oom = true;
            goto fail;
        }
    } else {
        if (eq)
            *eq = '=';
        config_error(p, src->where, "%s: '%s' is not a valid address or host name", src->label, spec);
        goto fail;
    }
    if (bad_options)
        goto fail;
    u.origin = strdup(src->where);
    if (!u.origin || config_list_append(p->c, o, &u) < 0) {
        oom = true;
        goto fail;
    }
    free(spec);
    return 0;
fail:
    if (oom)
        config_error(p, src->where, "out of memory");
    config_upstream_fini(&u);
    free(spec);
    return -1;
}

static int config_list_add(struct config_parse *p, const struct config_option *o,
                           const char *value, const struct config_src *src)
{
    switch (o->type) {
    case CONFIG_T_LISTEN: return config_add_listen(p, o, value, src);
    case CONFIG_T_PREFIX: return config_add_prefix(p, o, value, src);
    case CONFIG_T_UPSTREAM: return config_add_upstream(p, o, value, src);
    default: return -1;
    }
}

/* ---- one value ---- */

/* An absolute path of at most `max` bytes, or empty for none. */
static int config_set_abs_path(struct config_parse *p, const struct config_src *src, void *field,
                               const char *value, size_t max)
{
    char *s = NULL;
    if (value[0] && value[0] != '/') {
        config_error(p, src->where, "%s: '%s' is not an absolute path", src->label, value);
        return -1;
    }
    if (strlen(value) > max) {
        /* A value near a long limit would drown the message: show its start. */
        if (max > 200)
            config_error(p, src->where, "%s: '%.40s...' is too long (max %zu bytes)", src->label, value, max);
        else
            config_error(p, src->where, "%s: '%s' is too long (max %zu bytes)", src->label, value, max);
        return -1;
    }
    if (value[0] && !(s = strdup(value))) {
        config_error(p, src->where, "out of memory");
        return -1;
    }
    free(*(char **)field);
    *(char **)field = s;
    return 0;
}

/* What any value must be so that config_dump() writes it in a form that
 * reads back the same: inih strips blanks at both ends and cuts a value
 * at a ';' after a blank (its inline comment); a ';' or '#' at the start
 * of a value, or '#' after a blank, reads as a comment to people and to
 * other INI readers; a control character would break the line or the
 * terminal. A value read from the file never has blanks at its ends or a
 * ';' after a blank (inih took them away); one from the command line can
 * hold anything. Tabs separate the words of an upstream line, and are
 * refused everywhere else. */
static int config_value_check(struct config_parse *p, const struct config_option *o, const char *value,
                              const struct config_src *src)
{
    size_t len = strlen(value), i;

    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && !(ch == '\t' && o->type == CONFIG_T_UPSTREAM)) || ch == 0x7f) {
            config_error(p, src->where, "%s: '%s' contains a control character", src->label, value);
            return -1;
        }
    }
    if (len && (value[0] == ' ' || value[0] == '\t' || value[len - 1] == ' ' || value[len - 1] == '\t')) {
        config_error(p, src->where, "%s: '%s' begins or ends with a blank", src->label, value);
        return -1;
    }
    for (i = 0; i < len; i++) {
        if ((value[i] == ';' || value[i] == '#') && (i == 0 || value[i - 1] == ' ' || value[i - 1] == '\t')) {
            config_error(p, src->where,
                         "%s: '%s': a '%c' at the start of a value or after a blank reads as a comment "
                         "(a comment after a value starts with ' ;')",
                         src->label, value, value[i]);
            return -1;
        }
    }
    return 0;
}

/* After option `o` took a value: the line config_dump() writes for it
 * (lists: for the entry just added) must fit in a line, or the dump would
 * not load. A value from the file can still be too long when the dump
 * spells it out ("upstream=h" is written "upstream = h:53"). */
static int config_dump_line_check(struct config_parse *p, const struct config_option *o,
                                  const struct config_src *src)
{
    char buf[8192];
    const char *v;
    size_t n;

    if (o->type >= CONFIG_T_LISTEN) {
        size_t count = config_list_count(p->c, o);
        if (!count)
            return 0;
        v = config_list_entry_str(p->c, o, count - 1, buf, sizeof(buf));
    } else {
        v = config_scalar_str(p->c, o, buf, sizeof(buf));
    }
    n = strlen(o->key) + strlen(" = ") + strlen(v);
    if (n > CONFIG_LINE_MAX) {
        config_error(p, src->where, "%s: '%.40s...' is too long: written as '%s = VALUE' it needs %zu bytes, "
                     "a line holds %d", src->label, v, o->key, n, CONFIG_LINE_MAX);
        return -1;
    }
    return 0;
}

static int config_set_value(struct config_parse *p, const struct config_option *o, const char *value,
                            const struct config_src *src);

/* Sets option `o` from `value`. Lists: appends (an empty value clears the
 * list, except `listen` which may not be empty). */
static int config_set(struct config_parse *p, const struct config_option *o, const char *value,
                      const struct config_src *src)
{
    if (config_value_check(p, o, value, src) < 0 || config_set_value(p, o, value, src) < 0)
        return -1;
    return config_dump_line_check(p, o, src);
}

static int config_set_value(struct config_parse *p, const struct config_option *o, const char *value,
                            const struct config_src *src)
{
    struct config *c = p->c;
    void *field = config_field(c, o->off);
    char lo[32], hi[32];

    switch (o->type) {
    case CONFIG_T_BOOL:
        if (config_parse_bool(value, field) < 0) {
            config_error(p, src->where, "%s: '%s' is not a boolean (yes or no)", src->label, value);
            return -1;
        }
        return 0;
    case CONFIG_T_UINT: {
        int r = config_parse_uint(value, (unsigned)o->min, (unsigned)o->max, field);
        if (r == -1)
            config_error(p, src->where, "%s: '%s' is not a number", src->label, value);
        else if (r < 0)
            config_error(p, src->where, "%s: '%s' is out of range (%u..%u)", src->label, value,
                         (unsigned)o->min, (unsigned)o->max);
        return r < 0 ? -1 : 0;
    }
    case CONFIG_T_DURATION: {
        double v = config_parse_duration(value);
        if (v < 0) {
            config_error(p, src->where, "%s: '%s' is not a valid duration (like 250ms, 2.5s, 1m)",
                         src->label, value);
            return -1;
        }
        if (v < o->min || v > o->max) {
            config_error(p, src->where, "%s: '%s' is out of range (%s..%s)", src->label, value,
                         config_format_duration(o->min, lo, sizeof(lo)),
                         config_format_duration(o->max, hi, sizeof(hi)));
            return -1;
        }
        *(double *)field = v;
        return 0;
    }
    case CONFIG_T_REQ_FILE:
        if (!value[0]) {
            config_error(p, src->where, "%s: a value is required", src->label);
            return -1;
        }
        return config_set_abs_path(p, src, field, value, CONFIG_FILE_MAX);
    case CONFIG_T_PATH:
        return config_set_abs_path(p, src, field, value, CONFIG_PATH_MAX);
    case CONFIG_T_FILE:
        return config_set_abs_path(p, src, field, value, CONFIG_FILE_MAX);
    case CONFIG_T_ADDR: {
        bool *set = config_field(c, o->n_off);
        struct net_addr a;
        if (!value[0]) {
            memset(field, 0, sizeof(struct net_addr));
            *set = false;
            return 0;
        }
        /* Port 0 cannot be written, so it stands for "no port given". */
        if (net_addr_parse(value, 0, &a) < 0) {
            config_error(p, src->where, "%s: '%s' is not a valid address (IP:PORT)", src->label, value);
            return -1;
        }
        if (net_addr_port(&a) == 0) {
            config_error(p, src->where, "%s: '%s' needs a port (IP:PORT or [IPv6]:PORT)", src->label, value);
            return -1;
        }
        memcpy(field, &a, sizeof(a));
        *set = true;
        return 0;
    }
    case CONFIG_T_NAME: {
        char *s = NULL;
        if (value[0] && !config_account_name_valid(value)) {
            config_error(p, src->where,
                         "%s: '%s' is not a valid name (letters a-z, digits, '_', '-'; at most %d bytes)",
                         src->label, value, CONFIG_NAME_MAX);
            return -1;
        }
        if (value[0] && !(s = strdup(value))) {
            config_error(p, src->where, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = s;
        return 0;
    }
    case CONFIG_T_ENUM:
        if (config_parse_choice(o->choices, value, field) < 0) {
            char names[128];
            config_choices_str(o->choices, names, sizeof(names));
            config_error(p, src->where, "%s: '%s' is not one of %s", src->label, value, names);
            return -1;
        }
        return 0;
    case CONFIG_T_LISTEN:
    case CONFIG_T_PREFIX:
    case CONFIG_T_UPSTREAM:
        if (p->list_seen && !src->cli) {
            /* The file's first line for a list replaces the defaults. */
            size_t idx = (size_t)(o - config_options);
            if (!p->list_seen[idx])
                config_list_clear(c, o);
            p->list_seen[idx] = true;
        }
        /* dotward answers somewhere: only [server] listen cannot be emptied. */
        if (!value[0] && !(o->type == CONFIG_T_LISTEN && o->section == CONFIG_SEC_SERVER)) {
            config_list_clear(c, o);
            return 0;
        }
        return config_list_add(p, o, value, src);
    }
    return -1;
}

static int config_set_defaults(struct config_parse *p)
{
    struct config_src src = { "default", NULL, true };
    unsigned before = p->errors;
    size_t i;

    for (i = 0; i < config_n_options; i++) {
        const struct config_option *o = &config_options[i];
        src.label = o->key;
        if (config_list_elem_size(o->type)) {
            const char *d = o->def;
            while (*d) {
                size_t n = strcspn(d, ",");
                char *item = strndup(d, n);
                if (!item) {
                    config_error(p, "default", "out of memory");
                    break;
                }
                config_list_add(p, o, item, &src);
                free(item);
                d += n;
                if (*d == ',')
                    d++;
            }
        } else {
            config_set(p, o, o->def, &src);
        }
    }
    return p->errors == before ? 0 : -1;
}

/* ---- the file ---- */

static char *config_trim(char *s)
{
    char *e;

    while (*s && isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static const char config_syntax_msg[] = "syntax error (expected 'key = value' or '[section]')";

/* Checks one trimmed line the way inih will split it. Returns the line for
 * inih, or "" when the line is a comment, a section header (tracked here),
 * or an error (reported here). */
static const char *config_line_check(struct config_parse *p, char *s, const char *where)
{
    const char *scan;
    bool was_space = false;
    int i;

    if (!s[0] || s[0] == ';' || s[0] == '#')
        return "";

    if (s[0] == '[') {
        char *end = s + 1, *name, *rest;
        /* Like inih: ']' ends the name, " ;" starts a comment. */
        for (; *end && *end != ']' && !(was_space && *end == ';'); end++)
            was_space = isspace((unsigned char)*end);
        rest = end + 1;
        if (*end != ']' || (*(rest = config_trim(rest)) && *rest != ';' && *rest != '#')) {
            config_error(p, where, "%s", config_syntax_msg);
            p->section = CONFIG_SEC_BAD;
            return "";
        }
        *end = '\0';
        name = config_trim(s + 1);
        p->section = CONFIG_SEC_BAD;
        for (i = 0; i < CONFIG_SEC_COUNT; i++)
            if (strcmp(name, config_section_names[i]) == 0)
                p->section = i;
        if (p->section == CONFIG_SEC_BAD)
            config_error(p, where, "unknown section [%s]", name);
        return "";
    }

    /* inih splits at the first '=' or ':'; we allow only '=', so that
     * "listen ::1" is not read as key "listen", value ":1". */
    for (scan = s; *scan && *scan != '=' && *scan != ':' && !(was_space && *scan == ';'); scan++)
        was_space = isspace((unsigned char)*scan);
    if (*scan != '=' || scan == s) {
        config_error(p, where, "%s", config_syntax_msg);
        return "";
    }
    return s;
}

/* ini_reader: one line per call, fgets-style, into inih's buffer. */
static char *config_reader(char *str, int num, void *stream)
{
    struct config_parse *p = stream;
    char where[512];
    const char *line;
    ssize_t n;
    size_t len;
    char *s;

    if (num < 2)
        return NULL;
    errno = 0;
    n = getline(&p->buf, &p->bufsz, p->f);
    if (n < 0) {
        if (ferror(p->f))
            p->read_errno = errno ? errno : EIO;
        return NULL;
    }
    p->lineno++;
    snprintf(where, sizeof(where), "%s:%d", p->name, p->lineno);
    len = (size_t)n;
    if (len && p->buf[len - 1] == '\n')
        len--;
    if (len && p->buf[len - 1] == '\r')
        len--;
    p->buf[len] = '\0';

    str[0] = '\0';
    /* inih would cut a longer line in pieces and parse each piece. A
     * larger inih buffer does not raise the limit: files stay portable,
     * and config_dump() keeps to the same one. */
    if (len > (size_t)num - 1 || len > CONFIG_LINE_MAX) {
        config_error(p, where, "line too long (max %d bytes)", num - 1 < CONFIG_LINE_MAX ? num - 1 : CONFIG_LINE_MAX);
        return str;
    }
    if (strlen(p->buf) != len) {
        config_error(p, where, "line contains a NUL byte");
        return str;
    }
    s = p->buf;
    if (p->lineno == 1 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb &&
        (unsigned char)s[2] == 0xbf)
        s += 3;
    /* Without leading blanks, inih never takes a line as the continuation
     * of the previous value (its "multiline" mode). */
    s = config_trim(s);
    line = config_line_check(p, s, where);
    memcpy(str, line, strlen(line) + 1);
    return str;
}

/* ini_handler: called for each checked "key = value" line. */
static int config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config_parse *p = user;
    const struct config_option *o;
    struct config_src src;
    char where[512];

    (void)section; /* the reader tracks it, with full names */
    snprintf(where, sizeof(where), "%s:%d", p->name, p->lineno);
    if (p->section == CONFIG_SEC_NONE) {
        config_error(p, where, "key outside a section");
        return 1;
    }
    if (p->section == CONFIG_SEC_BAD)
        return 1; /* the header line has been reported */
    o = config_option_find(p->section, name);
    if (!o) {
        config_error(p, where, "unknown key '%s' in section [%s]", name, config_section_names[p->section]);
        return 1;
    }
    src.where = where;
    src.label = o->key;
    src.cli = false;
    config_set(p, o, value ? value : "", &src);
    return 1;
}

static void config_parse_file(struct config_parse *p, FILE *f, const char *name)
{
    int r;

    p->f = f;
    p->name = name;
    p->lineno = 0;
    p->section = CONFIG_SEC_NONE;
    p->list_seen = calloc(config_n_options, sizeof(bool));
    if (!p->list_seen) {
        config_error(p, name, "out of memory");
        return;
    }
    r = ini_parse_stream(config_reader, p, config_handler, p);
    if (r == -2) {
        config_error(p, name, "out of memory");
    } else if (r > 0 && p->errors == 0) {
        /* The reader should have caught every line inih rejects. */
        char where[512];
        snprintf(where, sizeof(where), "%s:%d", name, r);
        config_error(p, where, "%s", config_syntax_msg);
    }
    if (p->read_errno)
        config_error(p, name, "read error: %s", strerror(p->read_errno));
    free(p->list_seen);
    p->list_seen = NULL;
    free(p->buf);
    p->buf = NULL;
    p->bufsz = 0;
}

/* ---- overrides and whole configs ---- */

static void config_apply_overrides(struct config_parse *p, const struct config_overrides *ov)
{
    struct config_src src = { "command line", NULL, true };
    const struct config_option *o;
    size_t i;
    int level;

    if (ov->n_listen) {
        o = config_option_find(CONFIG_SEC_SERVER, "listen");
        src.label = "--listen";
        config_list_clear(p->c, o);
        for (i = 0; i < ov->n_listen; i++)
            config_set(p, o, ov->listen[i] ? ov->listen[i] : "", &src);
    }
    if (ov->n_upstream) {
        o = config_option_find(CONFIG_SEC_FORWARD, "upstream");
        src.label = "--upstream";
        config_list_clear(p->c, o);
        for (i = 0; i < ov->n_upstream; i++) {
            const char *v = ov->upstream[i] ? ov->upstream[i] : "";
            /* On the command line an empty value is a mistake, not "clear". */
            if (!v[0])
                config_error(p, src.where, "%s: '' is not a valid address or host name", src.label);
            else
                config_set(p, o, v, &src);
        }
    }
    /* Single-valued flags; "" turns off a socket, file or listener named in the file. */
    const struct {
        const char *value, *label, *key;
        enum config_section section;
    } scalars[] = {
        { ov->resolv_conf, "--resolv-conf", "resolv-conf", CONFIG_SEC_FORWARD },
        { ov->control_socket, "--control", "control-socket", CONFIG_SEC_SERVER },
        { ov->state_file, "--state-file", "state-file", CONFIG_SEC_PROBE },
        { ov->metrics_listen, "--metrics-listen", "metrics-listen", CONFIG_SEC_SERVER },
    };
    for (i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        if (!scalars[i].value)
            continue;
        o = config_option_find(scalars[i].section, scalars[i].key);
        src.label = scalars[i].label;
        config_set(p, o, scalars[i].value, &src);
    }
    level = p->c->log_level + ov->verbose;
    if (level > LOG_LVL_DEBUG)
        level = LOG_LVL_DEBUG;
    if (level < LOG_LVL_ERR)
        level = LOG_LVL_ERR;
    p->c->log_level = level;
}

struct config *config_load_stream(FILE *f, const char *name, const struct config_overrides *ov, FILE *err)
{
    struct config_parse p;

    memset(&p, 0, sizeof(p));
    p.err = err;
    p.c = calloc(1, sizeof(*p.c));
    if (!p.c) {
        if (err)
            fprintf(err, "%s: out of memory\n", name ? name : "config");
        return NULL;
    }
    if (config_set_defaults(&p) < 0)
        goto fail;
    if (f) {
        if (!name)
            name = "config";
        p.c->path = strdup(name);
        if (!p.c->path) {
            config_error(&p, name, "out of memory");
            goto fail;
        }
        config_parse_file(&p, f, name);
    }
    if (ov)
        config_apply_overrides(&p, ov);
    if (p.errors == 0 && p.c->n_listen == 0)
        config_error(&p, name ? name : "config", "no listen address");
    if (p.errors)
        goto fail;
    return p.c;
fail:
    config_free(p.c);
    return NULL;
}

struct config *config_load(const char *path, const struct config_overrides *ov, FILE *err)
{
    struct config *c;
    FILE *f = NULL;

    if (path) {
        f = fopen(path, "re");
        if (!f) {
            if (err)
                fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
            return NULL;
        }
    }
    c = config_load_stream(f, path, ov, err);
    if (f)
        fclose(f);
    return c;
}

void config_free(struct config *c)
{
    size_t i;

    if (!c)
        return;
    for (i = 0; i < config_n_options; i++) {
        const struct config_option *o = &config_options[i];
        if (config_list_elem_size(o->type))
            config_list_clear(c, o);
        else if (o->type == CONFIG_T_REQ_FILE || o->type == CONFIG_T_PATH || o->type == CONFIG_T_FILE ||
                 o->type == CONFIG_T_NAME)
            free(*(char **)config_field(c, o->off));
    }
    free(c->path);
    free(c);
}

static bool config_str_equal(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool config_entry_equal(enum config_type t, const void *x, const void *y)
{
    switch (t) {
    case CONFIG_T_LISTEN:
        return net_addr_equal(x, y);
    case CONFIG_T_PREFIX: {
        const struct net_prefix *a = x, *b = y;
        return a->family == b->family && a->bits == b->bits && memcmp(a->bytes, b->bytes, 16) == 0;
    }
    case CONFIG_T_UPSTREAM: {
        const struct config_upstream *a = x, *b = y;
        return config_str_equal(a->zone, b->zone) && config_str_equal(a->host, b->host) &&
               a->addr_ok == b->addr_ok && a->port == b->port &&
               (!a->addr_ok || net_addr_equal(&a->addr, &b->addr)) && a->tls == b->tls &&
               config_str_equal(a->auth_name, b->auth_name) && config_str_equal(a->ca_file, b->ca_file) &&
               a->authoritative == b->authoritative;
    }
    default:
        return false;
    }
}

bool config_equal(const struct config *a, const struct config *b)
{
    size_t i, j;

    for (i = 0; i < config_n_options; i++) {
        const struct config_option *o = &config_options[i];
        const void *fa = (const char *)a + o->off, *fb = (const char *)b + o->off;
        size_t sz = config_list_elem_size(o->type);

        if (sz) {
            size_t na = *(const size_t *)((const char *)a + o->n_off);
            size_t nb = *(const size_t *)((const char *)b + o->n_off);
            const char *ea = *(const char *const *)fa, *eb = *(const char *const *)fb;
            if (na != nb)
                return false;
            for (j = 0; j < na; j++)
                if (!config_entry_equal(o->type, ea + j * sz, eb + j * sz))
                    return false;
            continue;
        }
        switch (o->type) {
        case CONFIG_T_BOOL:
            if (*(const bool *)fa != *(const bool *)fb)
                return false;
            break;
        case CONFIG_T_UINT:
            if (*(const unsigned *)fa != *(const unsigned *)fb)
                return false;
            break;
        case CONFIG_T_DURATION:
            if (*(const double *)fa != *(const double *)fb)
                return false;
            break;
        case CONFIG_T_ADDR: {
            bool sa = *(const bool *)((const char *)a + o->n_off);
            bool sb = *(const bool *)((const char *)b + o->n_off);
            if (sa != sb || (sa && !net_addr_equal(fa, fb)))
                return false;
            break;
        }
        case CONFIG_T_REQ_FILE:
        case CONFIG_T_PATH:
        case CONFIG_T_FILE:
        case CONFIG_T_NAME:
            if (!config_str_equal(*(char *const *)fa, *(char *const *)fb))
                return false;
            break;
        case CONFIG_T_ENUM:
            if (*(const int *)fa != *(const int *)fb)
                return false;
            break;
        default:
            break;
        }
    }
    return true;
}

unsigned config_table_entries(const struct config *c)
{
    if (c->n_transparent_listen && c->transparent_max_entries > c->max_entries)
        return c->transparent_max_entries;
    return c->max_entries;
}

unsigned config_upstream_mark(const struct config *c)
{
    return c->n_transparent_listen ? c->transparent_mark : 0;
}
