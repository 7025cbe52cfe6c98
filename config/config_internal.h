/* config/config_internal.h: the option table and the value parsers and
 * formatters shared by config.c, config_value.c and config_dump.c.
 * Not for use outside config/. */
#ifndef DOTWARD_CONFIG_INTERNAL_H
#define DOTWARD_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config/config.h"

enum config_section { CONFIG_SEC_SERVER, CONFIG_SEC_FORWARD, CONFIG_SEC_PROBE, CONFIG_SEC_TRANSPARENT, CONFIG_SEC_COUNT };

enum config_type {
    CONFIG_T_BOOL,
    CONFIG_T_UINT,
    CONFIG_T_DURATION,
    CONFIG_T_ENUM,
    CONFIG_T_REQ_FILE, /* required absolute file path: char * */
    CONFIG_T_PATH,     /* optional absolute socket path: char *, NULL = none */
    CONFIG_T_FILE,     /* optional absolute file path: char *, NULL = none */
    CONFIG_T_ADDR,     /* optional IP:PORT: struct net_addr, with a bool "set" at n_off */
    CONFIG_T_NAME,     /* optional user or group name: char *, NULL = none */
    /* Lists last: code tests type >= CONFIG_T_LISTEN. */
    CONFIG_T_LISTEN,   /* list of struct net_addr */
    CONFIG_T_PREFIX,   /* list of struct net_prefix */
    CONFIG_T_UPSTREAM, /* list of struct config_upstream */
};

struct config_choice {
    const char *name;
    int value;
};

/* One row of options.def. `off` is the field's offset in struct config;
 * for lists `n_off` is the offset of the count, for CONFIG_T_ADDR the
 * offset of the bool that says whether the address is set. */
struct config_option {
    enum config_section section;
    const char *key;
    enum config_type type;
    size_t off, n_off;
    const char *def;
    double min, max;
    const struct config_choice *choices; /* NULL-name terminated */
    const char *help;
};

extern const struct config_choice config_acl_choices[];
extern const struct config_choice config_dot_fallback_choices[];
extern const struct config_choice config_log_level_choices[];
/* Upstream options tls= and kind= (kind: value 1 = authoritative). */
extern const struct config_choice config_tls_choices[];
extern const struct config_choice config_kind_choices[];
extern const struct config_option config_options[];
extern const size_t config_n_options;
extern const char *const config_section_names[CONFIG_SEC_COUNT];

/* Scalar value parsers (config_value.c): 0 on success, -1 if malformed. */
int config_parse_bool(const char *s, bool *out);
/* Digits only; -1 if not a number, -2 if a number beyond `max`/below `min`. */
int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
int config_parse_choice(const struct config_choice *c, const char *s, int *out);
const char *config_choice_name(const struct config_choice *c, int value);
/* Shortest text that config_parse_duration() reads back as exactly `v`. */
const char *config_format_duration(double v, char *buf, size_t bufsz);
/* Host name / zone syntax (letters, digits, hyphen; labels 1..63). */
bool config_host_name_valid(const char *s);
/* Longest line of a config file, without its line ending: inih's buffer
 * (INI_MAX_LINE, 200 by default) less the '\0'. config_dump() lines are
 * held to it too, so that what it writes always loads back. */
#define CONFIG_LINE_MAX 199
/* Longest control-socket path: sizeof(sun_path) - 1. */
#define CONFIG_PATH_MAX 107
/* Longest file path (CONFIG_T_FILE): room is left below PATH_MAX for
 * suffixes such as the state file's ".tmp.<pid>". */
#define CONFIG_FILE_MAX 1024
/* Longest user or group name (CONFIG_T_NAME), as useradd allows. */
#define CONFIG_NAME_MAX 32
/* User and group names: [a-z_][a-z0-9_-]*, optionally ending in '$'. */
bool config_account_name_valid(const char *s);
/* Zone text ("." or "example.org" or "example.org.") into a malloc'd
 * lower-case absolute name; NULL if invalid (errno ENOMEM on allocation). */
char *config_zone_normalize(const char *s);

/* The value of one option, written as config_dump() writes it. Lists:
 * entry `i`. Returns buf. */
const char *config_list_entry_str(const struct config *c, const struct config_option *o,
                                  size_t i, char *buf, size_t bufsz);
size_t config_list_count(const struct config *c, const struct config_option *o);
const char *config_scalar_str(const struct config *c, const struct config_option *o,
                              char *buf, size_t bufsz);

#endif
