/* daemon/daemon.h: the running process: its one data path (proxy/), the
 * DoT table (dot.h), the control socket and the metrics endpoint, and the
 * life cycle that joins them: the first start, reloads (built aside with
 * build.h, then swapped in at once), and the drain at the end.
 *
 * Owns everything it names. One per process, on the default loop. */
#ifndef DOTWARD_DAEMON_DAEMON_H
#define DOTWARD_DAEMON_DAEMON_H

#include <ev.h>
#include <stdbool.h>

#include "config/config.h"

struct build;
struct control;
struct dot;
struct fd_waiters;
struct metrics_http;
struct proxy;

struct daemon {
    struct ev_loop *loop;
    const char *config_path;              /* borrowed (argv) */
    const struct config_overrides *ov;    /* borrowed */
    struct fd_waiters *waiters;           /* the loop's: accepting waits here for descriptors */
    struct proxy *px;
    struct dot *dot;
    struct control *control;
    struct metrics_http *metrics;
    struct build *build;                  /* a build in progress, or NULL */
    bool building;                        /* build_start has not called back yet */
    bool serving;                         /* the first configuration is in */
    bool reload_again, stopping;
    char *user, *group;                   /* what privileges were dropped to */
    int exit_code;                        /* 0, or 1: the start failed */
};

/* Starts with `cfg` (taken): the first build runs on the loop; a failure
 * ends the loop with exit_code 1. Returns 0, or -1 (logged, exit_code 1). */
int daemon_start(struct daemon *d, struct ev_loop *loop, const char *config_path,
                 const struct config_overrides *ov, struct config *cfg);
/* Re-reads the configuration file; the outcome is logged. */
void daemon_reload(struct daemon *d);
/* Stops accepting queries and drains; the loop ends once drained. */
void daemon_stop(struct daemon *d, int signum);
void daemon_log_stats(const struct daemon *d);
/* After the loop: saves the probe table, frees everything. */
void daemon_fini(struct daemon *d);

#endif
