/* daemon/main.c: command line, start-up, signals, reload and shutdown. */
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "daemon/daemon.h"
#include "daemon/rules.h"
#include "lib/log.h"
#include "version.h"

#define EXIT_CONFIG 2
#define MAX_ARGS 64

struct app {
    const char *config_path;
    struct config_overrides ov;
    const char *listen_args[MAX_ARGS];
    const char *upstream_args[MAX_ARGS];
    const char *print_rules;  /* --print-rules MODE; NULL: run */
    struct rules_opts rules;
    struct daemon d;
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
            "      --example-config       print every option with its default and help, exit\n"
            "      --print-rules host|gateway\n"
            "                             print the nftables ruleset and policy routing that\n"
            "                             send DNS to the [transparent] listen addresses, exit\n"
            "      --rules-iface IFNAME   gateway: a LAN interface whose DNS is intercepted\n"
            "                             (repeatable; required)\n"
            "      --rules-uid USER       host: intercept only USER's DNS\n"
            "      --rules-fail-open      gateway: while dotward is down, DNS goes to its\n"
            "                             servers directly (default: dropped)\n"
            "  -v, --verbose              more logging (repeatable)\n"
            "      --version              print the version and exit\n"
            "  -h, --help                 this text\n"
            "Flags override the file. Signals: HUP reloads the file, TERM/INT drain and stop,\n"
            "USR1 logs the counters.\n");
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *app = w->data;
    (void)loop;
    (void)revents;
    switch (w->signum) {
    case SIGTERM:
    case SIGINT:
        daemon_stop(&app->d, w->signum);
        break;
    case SIGHUP:
        daemon_reload(&app->d);
        break;
    case SIGUSR1:
        daemon_log_stats(&app->d);
        break;
    }
}

static int parse_args(struct app *app, int argc, char **argv, bool *check_only)
{
    enum { OPT_RESOLV_CONF = 256, OPT_CHECK, OPT_EXAMPLE, OPT_VERSION, OPT_CONTROL, OPT_STATE_FILE, OPT_METRICS,
           OPT_PRINT_RULES, OPT_RULES_IFACE, OPT_RULES_UID, OPT_RULES_FAIL_OPEN };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "upstream", required_argument, NULL, 'u' },
        { "resolv-conf", required_argument, NULL, OPT_RESOLV_CONF },
        { "check-config", no_argument, NULL, OPT_CHECK },
        { "example-config", no_argument, NULL, OPT_EXAMPLE },
        { "control", required_argument, NULL, OPT_CONTROL },
        { "state-file", required_argument, NULL, OPT_STATE_FILE },
        { "metrics-listen", required_argument, NULL, OPT_METRICS },
        { "print-rules", required_argument, NULL, OPT_PRINT_RULES },
        { "rules-iface", required_argument, NULL, OPT_RULES_IFACE },
        { "rules-uid", required_argument, NULL, OPT_RULES_UID },
        { "rules-fail-open", no_argument, NULL, OPT_RULES_FAIL_OPEN },
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
        case OPT_PRINT_RULES:
            if (rules_parse_mode(optarg, &app->rules.mode) != 0) {
                fprintf(stderr, "command line: --print-rules '%s': the mode is host or gateway\n", optarg);
                return EXIT_CONFIG;
            }
            app->print_rules = optarg;
            break;
        case OPT_RULES_IFACE:
            if (app->rules.n_ifaces == RULES_MAX_IFACES) {
                fprintf(stderr, "command line: too many --rules-iface (max %d)\n", RULES_MAX_IFACES);
                return EXIT_CONFIG;
            }
            app->rules.ifaces[app->rules.n_ifaces++] = optarg;
            break;
        case OPT_RULES_UID:
            app->rules.uid = optarg;
            break;
        case OPT_RULES_FAIL_OPEN:
            app->rules.fail_open = true;
            break;
        case 'v':
            app->ov.verbose++;
            break;
        case OPT_EXAMPLE:
            config_write_example(stdout);
            exit(0);
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
    if (!app->print_rules && (app->rules.n_ifaces || app->rules.uid || app->rules.fail_open)) {
        fprintf(stderr, "command line: --rules-iface, --rules-uid and --rules-fail-open go with --print-rules\n");
        return EXIT_CONFIG;
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
    if (app.print_rules) {
        /* Only the ruleset goes to stdout, so that it can be redirected to a file. */
        r = rules_print(cfg, &app.rules, app.config_path, stdout, stderr);
        config_free(cfg);
        return r;
    }
    if (check_only) {
        config_dump(cfg, stdout);
        config_free(cfg);
        return 0;
    }
    log_setup((enum log_level)cfg->log_level, cfg->log_syslog);
    signal(SIGPIPE, SIG_IGN);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    struct { ev_signal *w; int sig; } sigs[] = {
        { &app.sig_term, SIGTERM }, { &app.sig_int, SIGINT }, { &app.sig_hup, SIGHUP }, { &app.sig_usr1, SIGUSR1 },
    };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        ev_signal_init(sigs[i].w, signal_cb, sigs[i].sig);
        sigs[i].w->data = &app;
        ev_signal_start(loop, sigs[i].w);
    }
    if (daemon_start(&app.d, loop, app.config_path, &app.ov, cfg) == 0)
        ev_run(loop, 0);
    daemon_fini(&app.d);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        ev_signal_stop(loop, sigs[i].w);
    ev_loop_destroy(loop);
    return app.d.exit_code;
}
