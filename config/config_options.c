/* config/config_options.c: the option table, built from options.def. */
#include "config/config_internal.h"

#include "lib/log.h"

const char *const config_section_names[CONFIG_SEC_COUNT] = { "server", "forward", "probe", "transparent" };

const struct config_choice config_acl_choices[] = {
    { "refuse", CONFIG_ACL_REFUSE },
    { "drop", CONFIG_ACL_DROP },
    { NULL, 0 },
};

const struct config_choice config_dot_fallback_choices[] = {
    { "availability", CONFIG_DOT_FALLBACK_AVAILABILITY },
    { "privacy", CONFIG_DOT_FALLBACK_PRIVACY },
    { NULL, 0 },
};

/* Parsing code prints the names in this order. */
const struct config_choice config_tls_choices[] = {
    { "opportunistic", CONFIG_TLS_OPPORTUNISTIC },
    { "strict", CONFIG_TLS_STRICT },
    { "off", CONFIG_TLS_OFF },
    { NULL, 0 },
};

const struct config_choice config_kind_choices[] = {
    { "recursive", 0 },
    { "authoritative", 1 },
    { NULL, 0 },
};

/* The names log_level_parse() accepts, kept here so that config/ does not
 * depend on the logging state. */
const struct config_choice config_log_level_choices[] = {
    { "error", LOG_LVL_ERR },
    { "warning", LOG_LVL_WARN },
    { "notice", LOG_LVL_NOTICE },
    { "info", LOG_LVL_INFO },
    { "debug", LOG_LVL_DEBUG },
    { NULL, 0 },
};

/* Compile-time check that each row's field has the type its macro stores. */
#define CONFIG_FIELD(f) (((struct config *)0)->f)
#define CONFIG_IS(f, t) __builtin_types_compatible_p(__typeof__(CONFIG_FIELD(f)), t)
#define CONFIG_LIST(s, k, kind, f, d, h)                                                    \
    _Static_assert(CONFIG_IS(n_##f, size_t) &&                                               \
                   (CONFIG_T_##kind != CONFIG_T_LISTEN || CONFIG_IS(f, struct net_addr *)) &&  \
                   (CONFIG_T_##kind != CONFIG_T_PREFIX || CONFIG_IS(f, struct net_prefix *)) && \
                   (CONFIG_T_##kind != CONFIG_T_UPSTREAM || CONFIG_IS(f, struct config_upstream *)), \
                   "list field type: " k);
#define CONFIG_BOOL(s, k, f, d, h) _Static_assert(CONFIG_IS(f, bool), "bool field: " k);
#define CONFIG_UINT(s, k, f, d, lo, hi, h) _Static_assert(CONFIG_IS(f, unsigned), "unsigned field: " k);
#define CONFIG_DURATION(s, k, f, d, lo, hi, h) _Static_assert(CONFIG_IS(f, double), "double field: " k);
#define CONFIG_REQ_FILE(s, k, f, d, h) _Static_assert(CONFIG_IS(f, char *), "file field: " k);
#define CONFIG_PATH(s, k, f, d, h) _Static_assert(CONFIG_IS(f, char *), "path field: " k);
#define CONFIG_FILE(s, k, f, d, h) _Static_assert(CONFIG_IS(f, char *), "file field: " k);
#define CONFIG_ADDR(s, k, f, flag, d, h) \
    _Static_assert(CONFIG_IS(f, struct net_addr) && CONFIG_IS(flag, bool), "address field: " k);
#define CONFIG_NAME(s, k, f, d, h) _Static_assert(CONFIG_IS(f, char *), "name field: " k);
/* Enum fields are stored through an int *. */
#define CONFIG_ENUM(s, k, f, d, c, h) _Static_assert(sizeof(CONFIG_FIELD(f)) == sizeof(int), "enum field: " k);
#include "config/options.def"
#undef CONFIG_LIST
#undef CONFIG_BOOL
#undef CONFIG_UINT
#undef CONFIG_DURATION
#undef CONFIG_REQ_FILE
#undef CONFIG_PATH
#undef CONFIG_FILE
#undef CONFIG_ADDR
#undef CONFIG_NAME
#undef CONFIG_ENUM

#define CONFIG_OFF(f) offsetof(struct config, f)
#define CONFIG_LIST(s, k, kind, f, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_##kind, CONFIG_OFF(f), CONFIG_OFF(n_##f), d, 0, 0, NULL, h },
#define CONFIG_BOOL(s, k, f, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_BOOL, CONFIG_OFF(f), 0, d, 0, 0, NULL, h },
#define CONFIG_UINT(s, k, f, d, lo, hi, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_UINT, CONFIG_OFF(f), 0, d, lo, hi, NULL, h },
#define CONFIG_DURATION(s, k, f, d, lo, hi, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_DURATION, CONFIG_OFF(f), 0, d, lo, hi, NULL, h },
#define CONFIG_REQ_FILE(s, k, f, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_REQ_FILE, CONFIG_OFF(f), 0, d, 0, 0, NULL, h },
#define CONFIG_PATH(s, k, f, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_PATH, CONFIG_OFF(f), 0, d, 0, 0, NULL, h },
#define CONFIG_FILE(s, k, f, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_FILE, CONFIG_OFF(f), 0, d, 0, 0, NULL, h },
#define CONFIG_ADDR(s, k, f, flag, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_ADDR, CONFIG_OFF(f), CONFIG_OFF(flag), d, 0, 0, NULL, h },
#define CONFIG_NAME(s, k, f, d, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_NAME, CONFIG_OFF(f), 0, d, 0, 0, NULL, h },
#define CONFIG_ENUM(s, k, f, d, c, h) \
    { CONFIG_SEC_##s, k, CONFIG_T_ENUM, CONFIG_OFF(f), 0, d, 0, 0, c, h },
const struct config_option config_options[] = {
#include "config/options.def"
};
#undef CONFIG_LIST
#undef CONFIG_BOOL
#undef CONFIG_UINT
#undef CONFIG_DURATION
#undef CONFIG_REQ_FILE
#undef CONFIG_PATH
#undef CONFIG_FILE
#undef CONFIG_ADDR
#undef CONFIG_NAME
#undef CONFIG_ENUM

const size_t config_n_options = sizeof(config_options) / sizeof(config_options[0]);
