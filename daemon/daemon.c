/* daemon/daemon.c: start, reload, drain. */
#include "daemon/daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/build.h"
#include "daemon/control.h"
#include "daemon/dot.h"
#include "daemon/metrics_http.h"
#include "daemon/privs.h"
#include "lib/acceptor.h"
#include "lib/log.h"
#include "proxy/proxy.h"
#include "proxy/route.h"
#include "proxy/view.h"
#include "version.h"

static void log_started(const struct proxy *px)
{
    char lbuf[1024] = "", rbuf[2048];
    size_t o = 0;
    for (size_t i = 0; i < px->n_listeners && o < sizeof lbuf; i++) {
        const struct listener *l = px->listeners[i];
        char a[NET_ADDRSTRLEN];
        o += (size_t)snprintf(lbuf + o, sizeof lbuf - o, "%s%s/%s", o ? ", " : "",
                              net_addr_str(&l->addr, a, sizeof a), l->tcp ? "tcp" : "udp");
    }
    route_table_describe(px->view->routes, rbuf, sizeof rbuf);
    log_notice("dotward %s listening on %s; forwarding %s", DOTWARD_VERSION, lbuf, rbuf);
}

/* Logs each line config_load wrote to `errs` (a reload must not write to a
 * stderr nobody reads when logging goes to syslog). */
static void log_lines(char *text)
{
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        log_err("%s", line);
}

static struct config *load_config_logged(struct daemon *d)
{
    char *text = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&text, &len);
    if (!errs)
        return config_load(d->config_path, d->ov, stderr);
    struct config *cfg = config_load(d->config_path, d->ov, errs);
    fclose(errs);
    if (text && *text)
        log_lines(text);
    free(text);
    return cfg;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void control_reload(void *arg)
{
    struct daemon *d = arg;
    daemon_reload(d);
}

/* The control socket of `cfg`: the running one if the path is the same,
 * else a new one (NULL in *out when there is none). Returns 0, or -1
 * after logging, with nothing changed. */
static int control_for(struct daemon *d, const struct config *cfg, struct control **out)
{
    const char *want = cfg->control_socket;
    *out = NULL;
    if (!want || (d->control && strcmp(control_path(d->control), want) == 0)) {
        *out = want ? d->control : NULL;
        return 0;
    }
    struct control_hooks hooks = { .reload = control_reload, .arg = d };
    *out = control_new(d->px, d->waiters, want, &hooks);
    return *out ? 0 : -1;
}

static void start_failed(struct daemon *d)
{
    d->exit_code = 1;
    ev_break(d->loop, EVBREAK_ALL);
}

/* The first start keeps the order that lets an unprivileged process own
 * what it made: listeners and metrics bound as root, then the drop, then
 * the control socket (whose file the process must be able to remove). */
static int first_commit_privileges(struct daemon *d, const struct config *cfg)
{
    if (!cfg->user && !cfg->group)
        return 0;
    char err[256];
    if (privs_drop(cfg->user, cfg->group, err, sizeof err) < 0) {
        /* Running on as root after the operator asked otherwise is worse than not running. */
        log_err("cannot drop privileges: %s", err);
        return -1;
    }
    log_info("running as user %s, group %s", cfg->user ? cfg->user : "(unchanged)",
             cfg->group ? cfg->group : "(the user's)");
    d->user = cfg->user ? strdup(cfg->user) : NULL;
    d->group = cfg->group ? strdup(cfg->group) : NULL;
    return 0;
}

/* Everything is built: swap it in, all at once. */
static void commit(struct daemon *d, struct generation *g, struct control *ctl)
{
    struct config *cfg = g->cfg;
    struct view *v = view_new(cfg, g->routes);
    g->cfg = NULL;
    g->routes = NULL;
    if (!v) {
        log_err("out of memory: keeping the running configuration");
        if (ctl != d->control)
            control_free(ctl);
        generation_free(g);
        return;
    }
    if (g->metrics || !cfg->metrics_enabled) {
        if (d->metrics && !cfg->metrics_enabled)
            log_info("metrics: endpoint closed (metrics-listen is no longer set)");
        metrics_http_free(d->metrics);
        d->metrics = g->metrics;
        g->metrics = NULL;
    }
    if (ctl != d->control) {
        control_free(d->control); /* safe from inside its own reload command */
        d->control = ctl;
    }
    proxy_swap(d->px, v, g->listeners, g->n_listeners);
    g->listeners = NULL;
    g->n_listeners = 0;
    generation_free(g);
    log_setup((enum log_level)cfg->log_level, cfg->log_syslog);
    dot_apply(d->dot, cfg, v->routes);
}

static void reload(struct daemon *d);

static void build_done(void *arg, struct generation *g)
{
    struct daemon *d = arg;
    d->build = NULL;
    d->building = false;
    if (!d->serving) {
        struct control *ctl = NULL;
        if (!g || first_commit_privileges(d, g->cfg) < 0 || control_for(d, g->cfg, &ctl) < 0) {
            generation_free(g);
            start_failed(d);
            return;
        }
        commit(d, g, ctl);
        d->serving = true;
        log_started(d->px);
        if (d->stopping)
            daemon_stop(d, 0);
        return;
    }
    struct control *ctl = NULL;
    if (!g || control_for(d, g->cfg, &ctl) < 0) {
        log_err("reload failed: keeping the running configuration");
        generation_free(g);
    } else {
        if (!same_str(g->cfg->user, d->user) || !same_str(g->cfg->group, d->group))
            log_warn("reload: a new user or group takes a restart; still running as before");
        commit(d, g, ctl);
        log_notice("reloaded %s", d->config_path ? d->config_path : "the configuration");
        log_started(d->px);
    }
    if (d->reload_again && !d->stopping) {
        d->reload_again = false;
        reload(d);
    }
}

static void start_build(struct daemon *d, struct config *cfg)
{
    d->building = true;
    struct build *b = build_start(d->loop, cfg, d->px, d->dot, d->metrics, build_done, d);
    if (b)
        d->build = b;
}

static void adopt_dot(void *arg, const struct net_addr *ip, struct tls_profile *tls, int fd, struct tls_conn *conn)
{
    proxy_adopt_dot(arg, ip, tls, fd, conn);
}

int daemon_start(struct daemon *d, struct ev_loop *loop, const char *config_path,
                 const struct config_overrides *ov, struct config *cfg)
{
    memset(d, 0, sizeof *d);
    d->loop = loop;
    d->config_path = config_path;
    d->ov = ov;
    if (!(d->waiters = fd_waiters_new(loop)) || !(d->dot = dot_new(loop, cfg)) ||
        !(d->px = proxy_new(loop, d->dot->table, d->waiters))) {
        log_err("cannot start: out of memory");
        config_free(cfg);
        d->exit_code = 1;
        return -1;
    }
    proxy_set_opportunistic(d->px, d->dot->opportunistic);
    d->dot->adopt = adopt_dot;
    d->dot->adopt_arg = d->px;
    dot_load_state(d->dot, cfg);
    start_build(d, cfg);
    return d->exit_code ? -1 : 0;
}

static void reload(struct daemon *d)
{
    if (d->building) {
        d->reload_again = true; /* one more once this one is done */
        return;
    }
    struct config *cfg = load_config_logged(d);
    if (!cfg) {
        log_err("reload failed: keeping the running configuration");
        return;
    }
    start_build(d, cfg);
}

void daemon_reload(struct daemon *d)
{
    if (d->serving && !d->stopping)
        reload(d);
}

static void drained(void *arg)
{
    struct daemon *d = arg;
    ev_break(d->loop, EVBREAK_ALL);
}

void daemon_stop(struct daemon *d, int signum)
{
    if (signum) {
        if (d->stopping)
            return;
        log_notice("signal %d: stopping", signum);
    }
    d->stopping = true;
    if (!d->serving)
        return; /* the start finishes first, then drains */
    if (d->building) {
        build_cancel(d->build); /* an unfinished reload is dropped */
        d->build = NULL;
        d->building = false;
    }
    proxy_drain(d->px, d->px->view->cfg->drain_timeout, drained, d);
}

void daemon_log_stats(const struct daemon *d)
{
    if (d->px)
        proxy_log_stats(d->px);
}

void daemon_fini(struct daemon *d)
{
    build_cancel(d->build);
    d->build = NULL;
    if (d->serving) {
        dot_save(d->dot); /* after the drain: the table's last word */
        proxy_log_stats(d->px);
    }
    metrics_http_free(d->metrics);
    control_free(d->control);
    proxy_free(d->px);
    dot_free(d->dot);
    fd_waiters_free(d->waiters);
    if (d->serving)
        log_notice("stopped");
    free(d->user);
    free(d->group);
}
