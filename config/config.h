/* config/config.h: the parsed, validated configuration.
 * config/ owns struct config: config_load() builds one, config_free() frees it.
 * Nothing else writes it; main swaps whole configs on reload.
 * Options are defined once, in config/options.def. */
#ifndef DOTWARD_CONFIG_H
#define DOTWARD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/net.h"

enum config_acl_action { CONFIG_ACL_REFUSE, CONFIG_ACL_DROP };

/* What a query does when its DoT answer is slow and the budget runs out (dot-fallback). */
enum config_dot_fallback { CONFIG_DOT_FALLBACK_AVAILABILITY, CONFIG_DOT_FALLBACK_PRIVACY };

/* Per-upstream transport policy (option tls=...). */
enum config_tls { CONFIG_TLS_OPPORTUNISTIC, CONFIG_TLS_STRICT, CONFIG_TLS_OFF };

/* One `upstream = [ZONE=]SERVER` line. SERVER is an address (IP, IP:PORT,
 * [IPv6]:PORT) or a host name (resolved at start, every address becomes a server). */
struct config_upstream {
    char *zone;          /* lower case, absolute with trailing dot: "." or "example.org." */
    char *host;          /* the host part as written, without port; NULL when `addr_ok` */
    bool addr_ok;        /* `addr` holds a literal address */
    struct net_addr addr;/* with port (default 53) */
    uint16_t port;       /* port for a host name */
    char *origin;        /* "FILE:LINE" or "command line", for messages */
    /* Options after the server: tls=opportunistic|strict|off, name=AUTH-NAME,
     * ca=FILE (strict only), kind=recursive|authoritative. */
    enum config_tls tls; /* opportunistic */
    char *auth_name;     /* strict: required, the name the certificate must match; NULL otherwise */
    char *ca_file;       /* strict: PEM bundle; NULL = the system store */
    bool authoritative;  /* probe without RD */
};

struct config {
    char *path;                  /* config file, or NULL */

    /* [server] */
    struct net_addr *listen; size_t n_listen;        /* default 127.0.0.1:5353, [::1]:5353 */
    struct net_addr *transparent_listen; size_t n_transparent_listen; /* TPROXY targets; none: off */
    unsigned transparent_mark;                       /* SO_MARK on upstream sockets; 0: none */
    unsigned transparent_max_entries;                /* probe/health table size while intercepting */
    unsigned max_dot_connections;                    /* DoT connections at most while intercepting */
    struct net_prefix *allow; size_t n_allow;        /* default 127.0.0.0/8, ::1/128 */
    enum config_acl_action acl_action;               /* refused-action = refuse|drop */
    enum config_dot_fallback dot_fallback;           /* dot-fallback = availability|privacy */
    unsigned tcp_clients;                            /* max concurrent TCP clients, 256 */
    unsigned tcp_clients_per_source;                 /* 0 = tcp_clients / 4, at least 1 */
    double tcp_idle_timeout;                         /* s, 10 */
    double tcp_io_timeout;                           /* s, 5: whole message once begun; writes */
    unsigned max_queries;                            /* in-flight client queries, 4096 */
    int log_level;                                   /* enum log_level, info */
    bool log_syslog;                                 /* no */
    double drain_timeout;                            /* s, 3: wait for in-flight queries on stop */
    char *control_socket;                            /* control socket path; NULL = none */
    bool metrics_enabled;                            /* metrics-listen is set */
    struct net_addr metrics_listen;                  /* HTTP /metrics and /health; none by default */
    char *user, *group;                              /* drop to these after binding; NULL = stay */

    /* [forward] */
    struct config_upstream *upstreams; size_t n_upstreams;
    char *resolv_conf;                               /* /etc/resolv.conf */
    double timeout;                                  /* s, 2.5: total budget per client query */
    double attempt_timeout;                          /* s, 0.8: upper bound of one upstream try */
    unsigned udp_sockets;                            /* 64: upstream UDP source-port pool */
    unsigned udp_socket_uses;                        /* 1000: queries sent before a pool socket is replaced */
    unsigned edns_buffer_size;                       /* 1232: our UDP size towards upstreams */
    double upstream_tcp_idle;                        /* s, 10: idle upstream TCP connections close */
    unsigned max_upstream_connections;               /* 256: TCP and DoT together */
    unsigned max_transfer_mb;                        /* 1024: AXFR/IXFR relayed at most, MiB */

    /* [probe]: the RFC 9539 per-IP DoT table */
    unsigned probe_after_visits;                     /* 2 */
    bool probe_on_start;                             /* yes */
    unsigned max_busy_probes;                        /* 16 */
    double probe_timeout;                            /* s, 4 */
    double persistence;                              /* s, 3d */
    double damping;                                  /* s, 1d */
    unsigned dot_fail_threshold;                     /* 3 */
    unsigned max_entries;                            /* 4096 */
    char *state_file;                                /* probe table saved here; NULL = not saved */
    double save_interval;                            /* s, 10m */
};

/* Command-line values, applied on top of the file (flags override the file). */
struct config_overrides {
    const char **listen; size_t n_listen;
    const char **upstream; size_t n_upstream;
    const char *resolv_conf;
    const char *control_socket;  /* --control PATH */
    const char *state_file;      /* --state-file PATH */
    const char *metrics_listen;  /* --metrics-listen ADDR:PORT */
    int verbose;                 /* each -v raises the log level one step */
};

/* Loads `path` (NULL: defaults only), applies `ov` (may be NULL), validates.
 * On success returns a new config (taken by the caller, free with config_free).
 * On failure returns NULL after writing every problem as "FILE:LINE: message\n"
 * (or "command line: message\n") to `err`. */
struct config *config_load(const char *path, const struct config_overrides *ov, FILE *err);
void config_free(struct config *c);

/* Like config_load(), from an open stream (borrowed, not closed); `name` is
 * the file name used in messages. `f` NULL: defaults only. */
struct config *config_load_stream(FILE *f, const char *name, const struct config_overrides *ov, FILE *err);

/* Same effective settings (path and upstream origins are not compared);
 * lets a reload tell whether anything changed. */
bool config_equal(const struct config *a, const struct config *b);

/* Writes the commented example file (config/dotward.conf.example): every
 * option with its help text and default, from config/options.def. */
void config_write_example(FILE *out);
/* How many IPs the probe and health tables keep: max-entries, or more
 * while interception is on ([transparent] max-entries). */
unsigned config_table_entries(const struct config *c);
/* The mark for upstream sockets: [transparent] mark while interception is on, else 0. */
unsigned config_upstream_mark(const struct config *c);

/* Prints the effective configuration in the file's own syntax (re-loadable). */
void config_dump(const struct config *c, FILE *out);

/* "250ms", "2.5s", "10m", "1h", "3d", or a bare number of seconds. -1 if invalid. */
double config_parse_duration(const char *s);

#endif
