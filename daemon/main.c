/* daemon/main.c: command line, start-up, signals, reload and shutdown. */
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "daemon/control.h"
#include "lib/acceptor.h"
#include "proxy/listener.h"
#include "lib/log.h"
#include "daemon/metrics_http.h"
#include "daemon/privs.h"
#include "proxy/proxy.h"
#include "daemon/setup.h"
#include "proxy/upstream.h"
#include "version.h"

#define EXIT_CONFIG 2
#define MAX_ARGS 64

struct app {
    struct ev_loop *loop;
    struct fd_waiters *waiters;    /* the loop's; borrowed by control and metrics */
    const char *config_path;
    struct config_overrides ov;
    const char *listen_args[MAX_ARGS];
    const char *upstream_args[MAX_ARGS];
    struct proxy *px;
    struct metrics_http *metrics;  /* HTTP /metrics and /health, or NULL; borrows px */
    struct setup *setup;           /* start-up or reload in progress */
    struct config *setup_cfg;      /* the config that setup is for (owned) */
    bool reload_again;
    bool stopping;
    int exit_code;
    ev_signal sig_term, sig_int, sig_hup, sig_usr1;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dotward [options]\n"
            "  -c, --config FILE          read the configuration file\n"
            "  -l, --listen ADDR[:PORT]   listen on ADDR (repeatable; default 127.0.0.1:5353, [::1]:5353)\n"
            "  -u, --upstream [ZONE=]SERVER\n"
            "                             forward ZONE (default \".\") to SERVER: IP, IP:PORT,\n"
            "                             [IPv6]:PORT or a host name (repeatable)\n"
            "      --resolv-conf FILE     nameservers for \".\" when no upstream serves it\n"
            "                             (default /etc/resolv.conf)\n"
            "      --control PATH         control socket for dotward-control\n"
            "      --state-file PATH      keep the DoT probe table here across restarts\n"
            "      --metrics-listen ADDR:PORT\n"
            "                             serve Prometheus /metrics and /health over HTTP\n"
            "      --check-config         validate, print the effective configuration, exit\n"
            "  -v, --verbose              more logging (repeatable)\n"
            "      --version              print the version and exit\n"
            "  -h, --help                 this text\n"
            "Flags override the file. Signals: HUP reloads the file, TERM/INT drain and stop,\n"
            "USR1 logs the counters.\n");
}

/* Logs each line config_load wrote to `errs` (a reload must not write to a
 * stderr nobody reads when logging goes to syslog). */
static void log_lines(char *text)
{
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        log_err("%s", line);
}

static struct config *load_config_logged(struct app *app)
{
    char *text = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&text, &len);
    if (!errs)
        return config_load(app->config_path, &app->ov, stderr);
    struct config *cfg = config_load(app->config_path, &app->ov, errs);
    fclose(errs);
    if (text && *text)
        log_lines(text);
    free(text);
    return cfg;
}

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
    setup_describe_routes(px->routes, rbuf, sizeof rbuf);
    log_notice("dotward %s listening on %s; forwarding %s", DOTWARD_VERSION, lbuf, rbuf);
}

static void on_drained(struct proxy *px)
{
    ev_break(px->loop, EVBREAK_ALL);
}

static void reload(struct app *app);

/* The control socket's `reload` command: like SIGHUP. */
static void control_reload(void *arg)
{
    struct app *app = arg;
    if (app->px && !app->stopping)
        reload(app);
}

/* Opens, moves or closes the control socket to match the running config.
 * At start a failure is fatal (returns -1); on reload it is logged and the
 * proxy runs without a socket. */
static int control_update(struct app *app)
{
    struct proxy *px = app->px;
    const char *want = px->cfg->control_socket;
    if (px->control && want && strcmp(control_path(px->control), want) == 0)
        return 0;
    control_free(px->control); /* safe even from inside the reload command */
    px->control = NULL;
    if (!want)
        return 0;
    struct control_hooks hooks = { .reload = control_reload, .arg = app };
    px->control = control_new(px, app->waiters, want, &hooks);
    return px->control ? 0 : -1;
}

/* Start-up cannot go on: the loop ends and dotward exits 1. */
static void start_failed(struct app *app)
{
    app->exit_code = 1;
    ev_break(app->loop, EVBREAK_ALL);
}

static void start_done(void *arg, const struct config *cfg_const, struct route_table *routes)
{
    struct app *app = arg;
    struct config *cfg = app->setup_cfg;
    (void)cfg_const;
    app->setup = NULL;
    app->setup_cfg = NULL;
    if (!routes) {
        config_free(cfg);
        start_failed(app);
        return;
    }
    app->px = proxy_new(app->loop, cfg, routes);
    route_table_unref(routes);
    if (!app->px) {
        start_failed(app);
        return;
    }
    app->px->on_drained = on_drained;
    if (metrics_http_apply(&app->metrics, app->px, app->waiters, cfg) < 0) {
        start_failed(app);
        return;
    }
    if (cfg->user || cfg->group) {
        char err[256];
        if (privs_drop(cfg->user, cfg->group, err, sizeof err) < 0) {
            /* Running on as root after the operator asked otherwise is worse than not running. */
            log_err("cannot drop privileges: %s", err);
            start_failed(app);
            return;
        }
        log_info("running as user %s, group %s", cfg->user ? cfg->user : "(unchanged)",
                 cfg->group ? cfg->group : "(the user's)");
    }
    log_started(app->px);
    if (control_update(app) < 0) {
        start_failed(app);
        return;
    }
    proxy_start_probing(app->px);
    if (app->stopping)
        proxy_drain(app->px);
}


static void reload_done(void *arg, const struct config *cfg_const, struct route_table *routes)
{
    struct app *app = arg;
    struct config *cfg = app->setup_cfg;
    (void)cfg_const;
    app->setup = NULL;
    app->setup_cfg = NULL;
    if (!routes) {
        log_err("reload failed: keeping the running configuration");
        config_free(cfg);
    } else {
        int level = cfg->log_level;
        bool use_syslog = cfg->log_syslog;
        if (proxy_reconfigure(app->px, cfg, routes) < 0) {
            log_err("reload failed: keeping the running configuration");
        } else {
            log_setup((enum log_level)level, use_syslog);
            log_notice("reloaded %s", app->config_path ? app->config_path : "the configuration");
            log_started(app->px);
            control_update(app);
            if (metrics_http_apply(&app->metrics, app->px, app->waiters, app->px->cfg) < 0)
                log_err("reload: keeping the previous metrics endpoint");
            proxy_start_probing(app->px);
        }
    }
    if (app->reload_again && !app->stopping) {
        app->reload_again = false;
        reload(app);
    }
}

static void reload(struct app *app)
{
    if (app->setup) {
        app->reload_again = true; /* one more once this one is done */
        return;
    }
    struct config *cfg = load_config_logged(app);
    if (!cfg) {
        log_err("reload failed: keeping the running configuration");
        return;
    }
    app->setup_cfg = cfg;
    app->setup = setup_start(app->loop, cfg, app->px->routes, reload_done, app);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *app = w->data;
    (void)loop;
    (void)revents;
    switch (w->signum) {
    case SIGTERM:
    case SIGINT:
        if (app->stopping)
            return;
        app->stopping = true;
        log_notice("signal %d: stopping", w->signum);
        if (app->setup && app->px) {
            setup_cancel(app->setup); /* an unfinished reload is dropped */
            app->setup = NULL;
            config_free(app->setup_cfg);
            app->setup_cfg = NULL;
        }
        if (app->px)
            proxy_drain(app->px);
        break;
    case SIGHUP:
        if (app->px && !app->stopping)
            reload(app);
        break;
    case SIGUSR1:
        if (app->px)
            proxy_log_stats(app->px);
        break;
    }
}

static int parse_args(struct app *app, int argc, char **argv, bool *check_only)
{
    enum { OPT_RESOLV_CONF = 256, OPT_CHECK, OPT_VERSION, OPT_CONTROL, OPT_STATE_FILE, OPT_METRICS };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "upstream", required_argument, NULL, 'u' },
        { "resolv-conf", required_argument, NULL, OPT_RESOLV_CONF },
        { "check-config", no_argument, NULL, OPT_CHECK },
        { "control", required_argument, NULL, OPT_CONTROL },
        { "state-file", required_argument, NULL, OPT_STATE_FILE },
        { "metrics-listen", required_argument, NULL, OPT_METRICS },
        { "verbose", no_argument, NULL, 'v' },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:l:u:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            app->config_path = optarg;
            break;
        case 'l':
            if (app->ov.n_listen == MAX_ARGS) {
                fprintf(stderr, "command line: too many --listen (max %d)\n", MAX_ARGS);
                return EXIT_CONFIG;
            }
            app->listen_args[app->ov.n_listen++] = optarg;
            break;
        case 'u':
            if (app->ov.n_upstream == MAX_ARGS) {
                fprintf(stderr, "command line: too many --upstream (max %d)\n", MAX_ARGS);
                return EXIT_CONFIG;
            }
            app->upstream_args[app->ov.n_upstream++] = optarg;
            break;
        case OPT_RESOLV_CONF:
            app->ov.resolv_conf = optarg;
            break;
        case OPT_CHECK:
            *check_only = true;
            break;
        case OPT_CONTROL:
            app->ov.control_socket = optarg;
            break;
        case OPT_STATE_FILE:
            app->ov.state_file = optarg;
            break;
        case OPT_METRICS:
            app->ov.metrics_listen = optarg;
            break;
        case 'v':
            app->ov.verbose++;
            break;
        case OPT_VERSION:
            printf("dotward %s\n", DOTWARD_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "command line: unexpected argument '%s'\n", argv[optind]);
        return EXIT_CONFIG;
    }
    app->ov.listen = app->listen_args;
    app->ov.upstream = app->upstream_args;
    return 0;
}

int main(int argc, char **argv)
{
    struct app app;
    memset(&app, 0, sizeof app);
    bool check_only = false;
    int r = parse_args(&app, argc, argv, &check_only);
    if (r)
        return r;
    struct config *cfg = config_load(app.config_path, &app.ov, stderr);
    if (!cfg)
        return EXIT_CONFIG;
    if (check_only) {
        config_dump(cfg, stdout);
        config_free(cfg);
        return 0;
    }
    log_setup((enum log_level)cfg->log_level, cfg->log_syslog);
    signal(SIGPIPE, SIG_IGN);

    app.loop = ev_default_loop(EVFLAG_AUTO);
    app.waiters = fd_waiters_new(app.loop);
    if (!app.waiters) {
        log_err("out of memory");
        config_free(cfg);
        return 1;
    }
    struct { ev_signal *w; int sig; } sigs[] = {
        { &app.sig_term, SIGTERM }, { &app.sig_int, SIGINT }, { &app.sig_hup, SIGHUP }, { &app.sig_usr1, SIGUSR1 },
    };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        ev_signal_init(sigs[i].w, signal_cb, sigs[i].sig);
        sigs[i].w->data = &app;
        ev_signal_start(app.loop, sigs[i].w);
    }

    app.setup_cfg = cfg;
    app.setup = setup_start(app.loop, cfg, NULL, start_done, &app);
    if (app.exit_code == 0)
        ev_run(app.loop, 0);

    if (app.setup) {
        setup_cancel(app.setup);
        config_free(app.setup_cfg);
    }
    if (app.px) {
        proxy_state_save(app.px); /* after the drain: the table's last word */
        proxy_log_stats(app.px);
        metrics_http_free(app.metrics);
        app.metrics = NULL;
        control_free(app.px->control);
        app.px->control = NULL;
        proxy_free(app.px);
        log_notice("stopped");
    }
    fd_waiters_free(app.waiters);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        ev_signal_stop(app.loop, sigs[i].w);
    ev_loop_destroy(app.loop);
    return app.exit_code;
}
