/* config/config_value.c: parsing and printing of single option values. */
#include "config/config_internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    unsigned long long v = 0;
    bool big = false;
    const char *p;

    if (!s[0])
        return -1;
    /* Hexadecimal too, as firewall marks are written. */
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && s[2]) {
        base = 16;
        s += 2;
    }
    for (p = s; *p; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f'))
            d = (unsigned)((*p | 0x20) - 'a' + 10);
        else
            return -1;
        if (v > 0xffffffffull)
            big = true;
        else
            v = v * base + d;
    }
    if (big || v < min || v > max)
        return -2;
    *out = (unsigned)v;
    return 0;
}

int config_parse_choice(const struct config_choice *c, const char *s, int *out)
{
    for (; c->name; c++) {
        if (strcasecmp(c->name, s) == 0) {
            *out = c->value;
            return 0;
        }
    }
    return -1;
}

const char *config_choice_name(const struct config_choice *c, int value)
{
    for (; c->name; c++)
        if (c->value == value)
            return c->name;
    return "?";
}

/* Durations are whole microseconds. The value is computed from the text
 * with integer arithmetic and one final division, so that a value printed
 * by config_format_duration() reads back as exactly the same double. */
#define US_PER_S 1000000LL

static const struct config_unit {
    const char *suffix;
    long long us;
} config_units[] = {
    { "d", 86400 * US_PER_S },
    { "h", 3600 * US_PER_S },
    { "m", 60 * US_PER_S },
    { "s", US_PER_S },
    { "ms", 1000 },
};

double config_parse_duration(const char *s)
{
    long long ip = 0, frac = 0, unit = US_PER_S, frac_unit, scale = 1;
    size_t n_int = 0, n_frac = 0, i;
    const char *p = s;

    if (!s)
        return -1;
    for (; *p >= '0' && *p <= '9'; p++, n_int++) {
        /* 10^7 days and more are nonsense; the cap keeps the math in 64 bits. */
        if (n_int >= 9)
            return -1;
        ip = ip * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++, n_frac++) {
            if (n_frac >= 12)
                return -1;
            frac = frac * 10 + (*p - '0');
            scale *= 10;
        }
        if (n_frac == 0)
            return -1;
    }
    if (n_int == 0 && n_frac == 0)
        return -1;
    if (*p) {
        for (i = 0; i < sizeof(config_units) / sizeof(config_units[0]); i++)
            if (strcmp(p, config_units[i].suffix) == 0)
                break;
        if (i == sizeof(config_units) / sizeof(config_units[0]))
            return -1;
        unit = config_units[i].us;
    }
    frac_unit = unit;
    if (ip > 10000000LL)
        return -1;
    /* Drop trailing zeros of the fraction, then cancel factors of ten
     * between the unit and the fraction's scale; if any scale is left, the
     * fraction is finer than a microsecond. */
    while (scale > 1 && frac % 10 == 0) {
        frac /= 10;
        scale /= 10;
    }
    while (scale > 1 && frac_unit % 10 == 0) {
        frac_unit /= 10;
        scale /= 10;
    }
    if (scale > 1)
        return -1; /* finer than a microsecond */
    /* ip * unit <= 10^7 days; frac * frac_unit < unit: no overflow. */
    return (double)(ip * unit + frac * frac_unit) / (double)US_PER_S;
}

const char *config_format_duration(double v, char *buf, size_t bufsz)
{
    long long us;
    size_t i;

    if (!(v >= 0) || v > 1e12 || (double)(us = llround(v * (double)US_PER_S)) / (double)US_PER_S != v) {
        /* Not a whole number of microseconds: cannot come from the parser. */
        snprintf(buf, bufsz, "%.6fs", v);
        return buf;
    }
    if (us == 0) {
        snprintf(buf, bufsz, "0s");
        return buf;
    }
    for (i = 0; i < sizeof(config_units) / sizeof(config_units[0]); i++) {
        const struct config_unit *u = &config_units[i];
        /* Milliseconds only below one second: "1500ms" reads worse than "1.5s". */
        if (u->us < US_PER_S && us >= US_PER_S)
            break;
        if (us % u->us == 0) {
            snprintf(buf, bufsz, "%lld%s", us / u->us, u->suffix);
            return buf;
        }
    }
    {
        char frac[8];
        size_t n;
        snprintf(frac, sizeof(frac), "%06lld", us % US_PER_S);
        for (n = strlen(frac); n > 1 && frac[n - 1] == '0'; n--)
            frac[n - 1] = '\0';
        snprintf(buf, bufsz, "%lld.%ss", us / US_PER_S, frac);
    }
    return buf;
}

/* Labels of 1..63 characters from `extra` plus letters and digits, dots
 * between them, at most one trailing dot, 253 characters without it. */
static bool config_name_valid(const char *s, const char *extra, bool host)
{
    size_t len = strlen(s), label = 0, i;
    bool numeric = true;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (i = 0; i <= len; i++) {
        char ch = i < len ? s[i] : '.';
        if (ch == '.') {
            if (label == 0 || label > 63)
                return false;
            if (host && (s[i - 1] == '-' || s[i - label] == '-'))
                return false;
            if (i == len && host && numeric)
                return false; /* "300.1.1.1" is a broken address, not a host */
            label = 0;
            numeric = true;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(extra, ch))))
            return false;
        if (ch < '0' || ch > '9')
            numeric = false;
        label++;
    }
    return true;
}

bool config_account_name_valid(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > CONFIG_NAME_MAX)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (i = 1; i < n; i++) {
        char ch = s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')
            continue;
        if (ch == '$' && i == n - 1) /* Samba machine accounts */
            continue;
        return false;
    }
    return true;
}

bool config_host_name_valid(const char *s)
{
    return config_name_valid(s, "-", true);
}

char *config_zone_normalize(const char *s)
{
    size_t len = strlen(s), i;
    char *z;

    if (strcmp(s, ".") == 0)
        return strdup(".");
    /* Underscores appear in real zones (_tcp, _msdcs), so allow them. */
    if (!config_name_valid(s, "-_", false))
        return NULL;
    if (s[len - 1] == '.')
        len--;
    z = malloc(len + 2);
    if (!z)
        return NULL;
    for (i = 0; i < len; i++)
        z[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    z[len] = '.';
    z[len + 1] = '\0';
    return z;
}
