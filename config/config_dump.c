/* config/config_dump.c: writing a configuration back in the file's own
 * syntax (config_dump) and the commented example file, both from the
 * option table. */
#include "config/config_internal.h"

#include <string.h>

size_t config_list_count(const struct config *c, const struct config_option *o)
{
    return *(const size_t *)((const char *)c + o->n_off);
}

const char *config_list_entry_str(const struct config *c, const struct config_option *o,
                                  size_t i, char *buf, size_t bufsz)
{
    const void *arr;

    memcpy(&arr, (const char *)c + o->off, sizeof(arr));
    switch (o->type) {
    case CONFIG_T_LISTEN:
        return net_addr_str(&((const struct net_addr *)arr)[i], buf, bufsz);
    case CONFIG_T_PREFIX:
        return net_prefix_str(&((const struct net_prefix *)arr)[i], buf, bufsz);
    case CONFIG_T_UPSTREAM: {
        const struct config_upstream *u = &((const struct config_upstream *)arr)[i];
        char server[300];
        char zone[300] = "";
        size_t used;
        if (u->addr_ok)
            net_addr_str(&u->addr, server, sizeof(server));
        else
            snprintf(server, sizeof(server), "%s:%u", u->host, (unsigned)u->port);
        /* "example.org." is written "example.org=": the form people type. */
        if (u->zone && strcmp(u->zone, ".") != 0)
            snprintf(zone, sizeof(zone), "%.*s=", (int)strlen(u->zone) - 1, u->zone);
        used = (size_t)snprintf(buf, bufsz, "%s%s", zone, server);
        /* Only the options that differ from the defaults, in a fixed order. */
        if (u->tls != CONFIG_TLS_OPPORTUNISTIC && used < bufsz)
            used += (size_t)snprintf(buf + used, bufsz - used, " tls=%s",
                                     config_choice_name(config_tls_choices, (int)u->tls));
        if (u->auth_name && used < bufsz)
            used += (size_t)snprintf(buf + used, bufsz - used, " name=%s", u->auth_name);
        if (u->ca_file && used < bufsz)
            used += (size_t)snprintf(buf + used, bufsz - used, " ca=%s", u->ca_file);
        if (u->authoritative && used < bufsz)
            snprintf(buf + used, bufsz - used, " kind=%s", config_choice_name(config_kind_choices, 1));
        return buf;
    }
    default:
        snprintf(buf, bufsz, "?");
        return buf;
    }
}

const char *config_scalar_str(const struct config *c, const struct config_option *o,
                              char *buf, size_t bufsz)
{
    const void *f = (const char *)c + o->off;

    switch (o->type) {
    case CONFIG_T_BOOL:
        snprintf(buf, bufsz, "%s", *(const bool *)f ? "yes" : "no");
        break;
    case CONFIG_T_UINT:
        snprintf(buf, bufsz, "%u", *(const unsigned *)f);
        break;
    case CONFIG_T_DURATION:
        config_format_duration(*(const double *)f, buf, bufsz);
        break;
    case CONFIG_T_ADDR:
        /* Unset: empty, which reads back as "none". */
        if (*(const bool *)((const char *)c + o->n_off))
            net_addr_str(f, buf, bufsz);
        else
            snprintf(buf, bufsz, "%s", "");
        break;
    case CONFIG_T_REQ_FILE:
    case CONFIG_T_PATH:
    case CONFIG_T_FILE:
    case CONFIG_T_NAME: {
        const char *s;
        memcpy(&s, f, sizeof(s));
        snprintf(buf, bufsz, "%s", s ? s : "");
        break;
    }
    case CONFIG_T_ENUM:
        snprintf(buf, bufsz, "%s", config_choice_name(o->choices, *(const int *)f));
        break;
    default:
        snprintf(buf, bufsz, "?");
        break;
    }
    return buf;
}

void config_dump(const struct config *c, FILE *out)
{
    char buf[8192]; /* an upstream with a long zone, host, name and ca path */
    size_t i, j;
    int s;

    /* The file name is only a comment, but it must keep the dump loadable:
     * control bytes escaped, cut to fit in a line. */
    {
        static const char head[] = "# dotward effective configuration";
        char name[CONFIG_LINE_MAX + 1];
        size_t used = 0, room = CONFIG_LINE_MAX - strlen(head) - strlen(" from ");
        const char *q;
        for (q = c->path ? c->path : ""; *q; q++) {
            unsigned char ch = (unsigned char)*q;
            bool ctl = ch < 0x20 || ch == 0x7f;
            if (used + (ctl ? 4 : 1) > room)
                break;
            if (ctl)
                used += (size_t)snprintf(name + used, sizeof(name) - used, "\\x%02x", ch);
            else
                name[used++] = (char)ch;
        }
        if (*q) { /* cut: end in "..." */
            if (used > room - 3)
                used = room - 3;
            memcpy(name + used, "...", 3);
            used += 3;
        }
        name[used] = '\0';
        fprintf(out, "%s%s%s\n", head, c->path ? " from " : "", name);
    }
    for (s = 0; s < CONFIG_SEC_COUNT; s++) {
        fprintf(out, "\n[%s]\n", config_section_names[s]);
        for (i = 0; i < config_n_options; i++) {
            const struct config_option *o = &config_options[i];
            if ((int)o->section != s)
                continue;
            if (o->type >= CONFIG_T_LISTEN) {
                size_t n = config_list_count(c, o);
                /* An empty value clears the list: the default may not be empty. */
                if (n == 0)
                    fprintf(out, "%s =\n", o->key);
                for (j = 0; j < n; j++)
                    fprintf(out, "%s = %s\n", o->key, config_list_entry_str(c, o, j, buf, sizeof(buf)));
            } else {
                const char *v = config_scalar_str(c, o, buf, sizeof(buf));
                fprintf(out, "%s =%s%s\n", o->key, v[0] ? " " : "", v);
            }
        }
    }
}

/* Writes `text` as "# " comment lines of at most 78 columns; a '\n' in
 * the text starts a new line (for an example that must stay whole). */
static void config_write_wrapped(FILE *out, const char *text)
{
    const size_t width = 76;

    while (*text) {
        size_t n = strcspn(text, "\n"), cut = n;
        if (n > width) {
            for (cut = width; cut > 0 && text[cut] != ' '; cut--)
                ;
            if (cut == 0)
                cut = width;
        }
        fprintf(out, "# %.*s\n", (int)cut, text);
        text += cut;
        while (*text == ' ')
            text++;
        if (cut == n && *text == '\n')
            text++;
    }
}

void config_write_example(FILE *out)
{
    char help[2048], lo[32], hi[32];
    size_t i;
    int s;

    fputs("# dotward example configuration.\n"
          "#\n"
          "# Generated from config/options.def (config_write_example); do not edit by hand.\n"
          "# Every option is shown with its default value. Syntax: INI; '#' or ';' starts a\n"
          "# comment line, ' ;' starts a comment after a value. Durations: 250ms, 2.5s, 10m,\n"
          "# 1h, 1d, or a bare number of seconds. No value holds a control character, or\n"
          "# a ';' or '#' at its start or after a blank; paths are absolute.\n",
          out);
    for (s = 0; s < CONFIG_SEC_COUNT; s++) {
        fprintf(out, "\n[%s]\n", config_section_names[s]);
        for (i = 0; i < config_n_options; i++) {
            const struct config_option *o = &config_options[i];
            const char *d;
            if ((int)o->section != s)
                continue;
            if (o->type == CONFIG_T_UINT)
                snprintf(help, sizeof(help), "%s Range: %u..%u.", o->help, (unsigned)o->min, (unsigned)o->max);
            else if (o->type == CONFIG_T_DURATION)
                snprintf(help, sizeof(help), "%s Range: %s..%s.", o->help,
                         config_format_duration(o->min, lo, sizeof(lo)),
                         config_format_duration(o->max, hi, sizeof(hi)));
            else
                snprintf(help, sizeof(help), "%s", o->help);
            fputc('\n', out);
            config_write_wrapped(out, help);
            if (o->type < CONFIG_T_LISTEN) {
                fprintf(out, "%s =%s%s\n", o->key, o->def[0] ? " " : "", o->def);
                continue;
            }
            for (d = o->def; *d;) {
                size_t n = strcspn(d, ",");
                fprintf(out, "%s = %.*s\n", o->key, (int)n, d);
                d += n;
                if (*d == ',')
                    d++;
            }
        }
    }
}
