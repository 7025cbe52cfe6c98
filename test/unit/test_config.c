/* test/unit/test_config.c: config/: defaults, every option, every error
 * message (exact text and line), list and override rules, dump round trip,
 * durations, and the example file. Config files go to a mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "lib/log.h"

static char tmpdir[] = "/tmp/dotward-test-config-XXXXXX";
static char conf_path[sizeof(tmpdir) + 32];
static char ca_path[sizeof(tmpdir) + 32]; /* a readable CA file for ca= */
static char errbuf[16384];
static char full_conf[4096]; /* full_conf_fmt with ca_path */

/* Every option away from its default (and the upstream options also at it);
 * line numbers matter: upstreams on lines 17..22. */
static const char full_conf_fmt[] =
    "[server]\n"
    "listen = 192.0.2.1\n"
    "listen = [2001:db8::1]:5300\n"
    "listen = 0.0.0.0:5353\n"
    "allow = 10.0.0.0/8\n"
    "allow = 2001:db8::/32\n"
    "allow = 192.0.2.7\n"
    "refused-action = drop\n"
    "tcp-clients = 1\n"
    "tcp-idle-timeout = 1h\n"
    "max-queries = 16\n"
    "log-level = warning\n"
    "log-syslog = yes\n"
    "drain-timeout = 0\n"
    "control-socket = /run/dotward/control.sock\n"
    "[forward]\n"
    "upstream = 9.9.9.9 tls=strict name=DNS.Quad9.net.\n"
    "upstream = corp.Example.ORG=10.0.0.53:5300 kind=authoritative tls=off\n"
    "upstream = [2620:fe::fe]:853 ca=%s\ttls=strict  name=dns.quad9.net kind=recursive\n"
    "upstream = dns.quad9.net tls=opportunistic\n"
    "upstream = _msdcs.corp.=dc1.corp.example:5353 kind=AUTHORITATIVE\n"
    "upstream = 2620:fe::9\n"
    "resolv-conf = /run/resolv.conf\n"
    "timeout = 30s\n"
    "attempt-timeout = 10ms\n"
    "udp-sockets = 1024\n"
    "udp-socket-uses = 1000000\n"
    "edns-buffer-size = 512\n"
    "upstream-tcp-idle = 0.1\n"
    "[probe]\n"
    "probe-after-visits = 1000\n"
    "probe-on-start = no\n"
    "max-busy-probes = 1\n"
    "probe-timeout = 100ms\n"
    "persistence = 365d\n"
    "damping = 1s\n"
    "dot-fail-threshold = 100\n"
    "max-entries = 16\n"
    "state-file = /var/lib/dotward/probes.state\n"
    "save-interval = 1d\n"
    "[server]\n"
    "metrics-listen = [::1]:9153\n"
    "user = dotward\n"
    "group = _dns-1\n";

static int group_setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(conf_path, sizeof(conf_path), "%s/test.conf", tmpdir);
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", tmpdir);
    {
        FILE *f = fopen(ca_path, "w");
        if (!f || fputs("-----BEGIN CERTIFICATE-----\n", f) < 0 || fclose(f) != 0)
            return -1;
    }
    snprintf(full_conf, sizeof(full_conf), full_conf_fmt, ca_path);
    return 0;
}

static int group_teardown(void **state)
{
    char p[sizeof(conf_path) + 16];
    (void)state;
    unlink(conf_path);
    unlink(ca_path);
    snprintf(p, sizeof(p), "%s/dump.conf", tmpdir);
    unlink(p);
    rmdir(tmpdir);
    return 0;
}

static void write_bytes(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Loads `text` as a file; the messages land in errbuf. */
static struct config *load_ov(const char *text, const struct config_overrides *ov)
{
    struct config *c;
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);

    assert_non_null(err);
    if (text)
        write_bytes(conf_path, text, strlen(text));
    c = config_load(text ? conf_path : NULL, ov, err);
    fclose(err);
    snprintf(errbuf, sizeof(errbuf), "%s", buf ? buf : "");
    free(buf);
    return c;
}

static struct config *load(const char *text)
{
    return load_ov(text, NULL);
}

/* The file must fail with exactly these messages; `want` uses "F" for the
 * file name: "F:3: ...\n". */
static void expect_errors(const char *text, const char *want)
{
    char expect[8192];
    const char *w;
    size_t n = 0;
    struct config *c;

    for (w = want; *w && n < sizeof(expect) - 256; w++) {
        if (*w == 'F' && (w == want || w[-1] == '\n'))
            n += (size_t)snprintf(expect + n, sizeof(expect) - n, "%s", conf_path);
        else
            expect[n++] = *w;
    }
    expect[n] = '\0';
    c = load(text);
    if (c) {
        config_free(c);
        fail_msg("config should not load:\n%s", text);
    }
    assert_string_equal(errbuf, expect);
}

/* ---- defaults and every option ---- */

static void assert_addr(const struct net_addr *a, const char *want)
{
    char buf[NET_ADDRSTRLEN];
    assert_string_equal(net_addr_str(a, buf, sizeof(buf)), want);
}

static void assert_prefix(const struct net_prefix *p, const char *want)
{
    char buf[NET_ADDRSTRLEN];
    assert_string_equal(net_prefix_str(p, buf, sizeof(buf)), want);
}

static void check_defaults(const struct config *c)
{
    assert_int_equal(c->n_listen, 2);
    assert_addr(&c->listen[0], "127.0.0.1:5353");
    assert_addr(&c->listen[1], "[::1]:5353");
    assert_int_equal(c->n_allow, 2);
    assert_prefix(&c->allow[0], "127.0.0.0/8");
    assert_prefix(&c->allow[1], "::1/128");
    assert_int_equal(c->acl_action, CONFIG_ACL_REFUSE);
    assert_int_equal(c->tcp_clients, 256);
    assert_true(c->tcp_idle_timeout == 10.0);
    assert_int_equal(c->max_queries, 4096);
    assert_int_equal(c->log_level, LOG_LVL_INFO);
    assert_false(c->log_syslog);
    assert_true(c->drain_timeout == 3.0);
    assert_int_equal(c->n_upstreams, 0);
    assert_string_equal(c->resolv_conf, "/etc/resolv.conf");
    assert_true(c->timeout == 2.5);
    assert_true(c->attempt_timeout == 0.8);
    assert_int_equal(c->udp_sockets, 64);
    assert_int_equal(c->udp_socket_uses, 64);
    assert_int_equal(c->edns_buffer_size, 1232);
    assert_true(c->upstream_tcp_idle == 10.0);
    assert_null(c->control_socket);
    assert_int_equal(c->probe_after_visits, 2);
    assert_true(c->probe_on_start);
    assert_int_equal(c->max_busy_probes, 16);
    assert_true(c->probe_timeout == 4.0);
    assert_true(c->persistence == 3 * 86400.0);
    assert_true(c->damping == 86400.0);
    assert_int_equal(c->dot_fail_threshold, 3);
    assert_int_equal(c->max_entries, 4096);
    assert_false(c->metrics_enabled);
    assert_null(c->user);
    assert_null(c->group);
    assert_null(c->state_file);
    assert_true(c->save_interval == 600);
}

static void test_defaults(void **state)
{
    struct config *c;

    (void)state;
    c = load(NULL);
    assert_non_null(c);
    assert_string_equal(errbuf, "");
    assert_null(c->path);
    check_defaults(c);
    config_free(c);

    /* An empty file, or one with only comments, is the defaults too. */
    c = load("");
    assert_non_null(c);
    assert_string_equal(c->path, conf_path);
    check_defaults(c);
    config_free(c);
    c = load("; nothing\n# here\n\n[server]\n[forward]\n");
    assert_non_null(c);
    check_defaults(c);
    config_free(c);
}

static void test_every_option(void **state)
{
    struct config *c;
    char line[sizeof(conf_path) + 16];

    (void)state;
    c = load(full_conf);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(c->n_listen, 3);
    assert_addr(&c->listen[0], "192.0.2.1:53"); /* port 53 when omitted */
    assert_addr(&c->listen[1], "[2001:db8::1]:5300");
    assert_addr(&c->listen[2], "0.0.0.0:5353");
    assert_int_equal(c->n_allow, 3);
    assert_prefix(&c->allow[0], "10.0.0.0/8");
    assert_prefix(&c->allow[1], "2001:db8::/32");
    assert_prefix(&c->allow[2], "192.0.2.7/32");
    assert_int_equal(c->acl_action, CONFIG_ACL_DROP);
    assert_int_equal(c->tcp_clients, 1);
    assert_true(c->tcp_idle_timeout == 3600);
    assert_int_equal(c->max_queries, 16);
    assert_int_equal(c->log_level, LOG_LVL_WARN);
    assert_true(c->log_syslog);
    assert_true(c->drain_timeout == 0);
    assert_string_equal(c->resolv_conf, "/run/resolv.conf");
    assert_true(c->timeout == 30);
    assert_true(c->attempt_timeout == 0.01);
    assert_int_equal(c->udp_sockets, 1024);
    assert_int_equal(c->udp_socket_uses, 1000000);
    assert_int_equal(c->edns_buffer_size, 512);
    assert_true(c->upstream_tcp_idle == 0.1);

    assert_int_equal(c->n_upstreams, 6);
    assert_string_equal(c->upstreams[0].zone, ".");
    assert_true(c->upstreams[0].addr_ok);
    assert_null(c->upstreams[0].host);
    assert_addr(&c->upstreams[0].addr, "9.9.9.9:53");
    assert_int_equal(c->upstreams[0].port, 53);
    snprintf(line, sizeof(line), "%s:17", conf_path);
    assert_string_equal(c->upstreams[0].origin, line);

    assert_string_equal(c->upstreams[1].zone, "corp.example.org.");
    assert_true(c->upstreams[1].addr_ok);
    assert_addr(&c->upstreams[1].addr, "10.0.0.53:5300");

    assert_string_equal(c->upstreams[2].zone, ".");
    assert_addr(&c->upstreams[2].addr, "[2620:fe::fe]:853");

    assert_false(c->upstreams[3].addr_ok);
    assert_string_equal(c->upstreams[3].host, "dns.quad9.net");
    assert_int_equal(c->upstreams[3].port, 53);
    assert_string_equal(c->upstreams[3].zone, ".");

    assert_string_equal(c->upstreams[4].zone, "_msdcs.corp.");
    assert_string_equal(c->upstreams[4].host, "dc1.corp.example");
    assert_int_equal(c->upstreams[4].port, 5353);
    snprintf(line, sizeof(line), "%s:21", conf_path);
    assert_string_equal(c->upstreams[4].origin, line);

    assert_true(c->upstreams[5].addr_ok);
    assert_addr(&c->upstreams[5].addr, "[2620:fe::9]:53");

    /* Upstream options: the name folds to lower case without the root dot. */
    assert_int_equal(c->upstreams[0].tls, CONFIG_TLS_STRICT);
    assert_string_equal(c->upstreams[0].auth_name, "dns.quad9.net");
    assert_null(c->upstreams[0].ca_file);
    assert_false(c->upstreams[0].authoritative);
    assert_int_equal(c->upstreams[1].tls, CONFIG_TLS_OFF);
    assert_null(c->upstreams[1].auth_name);
    assert_true(c->upstreams[1].authoritative);
    assert_int_equal(c->upstreams[2].tls, CONFIG_TLS_STRICT);
    assert_string_equal(c->upstreams[2].auth_name, "dns.quad9.net");
    assert_string_equal(c->upstreams[2].ca_file, ca_path);
    assert_false(c->upstreams[2].authoritative);
    assert_int_equal(c->upstreams[3].tls, CONFIG_TLS_OPPORTUNISTIC);
    assert_null(c->upstreams[3].auth_name);
    assert_null(c->upstreams[3].ca_file);
    assert_false(c->upstreams[3].authoritative);
    assert_int_equal(c->upstreams[4].tls, CONFIG_TLS_OPPORTUNISTIC);
    assert_true(c->upstreams[4].authoritative);
    assert_int_equal(c->upstreams[5].tls, CONFIG_TLS_OPPORTUNISTIC);
    assert_false(c->upstreams[5].authoritative);

    assert_string_equal(c->control_socket, "/run/dotward/control.sock");
    assert_int_equal(c->probe_after_visits, 1000);
    assert_false(c->probe_on_start);
    assert_int_equal(c->max_busy_probes, 1);
    assert_true(c->probe_timeout == 0.1);
    assert_true(c->persistence == 365 * 86400.0);
    assert_true(c->damping == 1);
    assert_int_equal(c->dot_fail_threshold, 100);
    assert_int_equal(c->max_entries, 16);
    assert_true(c->metrics_enabled);
    assert_addr(&c->metrics_listen, "[::1]:9153");
    assert_string_equal(c->user, "dotward");
    assert_string_equal(c->group, "_dns-1");
    assert_string_equal(c->state_file, "/var/lib/dotward/probes.state");
    assert_true(c->save_interval == 86400);
    config_free(c);
}

static void test_value_forms(void **state)
{
    struct config *c;

    (void)state;
    /* Booleans and enums in every spelling; blanks, tabs, CRLF, a BOM,
     * indented lines, inline comments, '#' inside a value. */
    c = load("\xef\xbb\xbf[server]\r\n"
             "\tlog-syslog = TRUE ; inline comment\r\n"
             "   refused-action\t=\tDrop\n"
             "log-level=DEBUG\n"
             "[ forward ]   ; comment after a header\n"
             "resolv-conf = /etc/x#y\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_true(c->log_syslog);
    assert_int_equal(c->acl_action, CONFIG_ACL_DROP);
    assert_int_equal(c->log_level, LOG_LVL_DEBUG);
    assert_string_equal(c->resolv_conf, "/etc/x#y");
    config_free(c);

    {
        static const char *const yes[] = { "yes", "true", "on", "1", "Yes", "ON" };
        static const char *const no[] = { "no", "false", "off", "0", "NO", "Off" };
        char text[128];
        size_t i;
        for (i = 0; i < 6; i++) {
            snprintf(text, sizeof(text), "[server]\nlog-syslog = %s\n", yes[i]);
            c = load(text);
            assert_non_null(c);
            assert_true(c->log_syslog);
            config_free(c);
            snprintf(text, sizeof(text), "[server]\nlog-syslog = on\nlog-syslog = %s\n", no[i]);
            c = load(text);
            assert_non_null(c);
            assert_false(c->log_syslog);
            config_free(c);
        }
    }
    {
        static const char *const lv[] = { "error", "warning", "notice", "info", "debug" };
        static const int want[] = { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_NOTICE, LOG_LVL_INFO, LOG_LVL_DEBUG };
        char text[128];
        size_t i;
        for (i = 0; i < 5; i++) {
            snprintf(text, sizeof(text), "[server]\nlog-level = %s\n", lv[i]);
            c = load(text);
            assert_non_null(c);
            assert_int_equal(c->log_level, want[i]);
            config_free(c);
        }
    }
    /* The range limits themselves are allowed. */
    c = load("[server]\ntcp-clients = 65535\nmax-queries = 1000000\ntcp-idle-timeout = 100ms\n"
             "drain-timeout = 60s\n[forward]\ntimeout = 100ms\nattempt-timeout = 10s\n"
             "udp-sockets = 1\nudp-socket-uses = 1\nedns-buffer-size = 4096\nupstream-tcp-idle = 3600\n"
             "[probe]\nprobe-after-visits = 1\nmax-busy-probes = 1024\nprobe-timeout = 1m\n"
             "persistence = 1s\ndamping = 365d\ndot-fail-threshold = 1\nmax-entries = 1000000\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(c->tcp_clients, 65535);
    assert_true(c->drain_timeout == 60);
    assert_true(c->attempt_timeout == 10);
    assert_int_equal(c->edns_buffer_size, 4096);
    assert_int_equal(c->probe_after_visits, 1);
    assert_int_equal(c->max_busy_probes, 1024);
    assert_true(c->probe_timeout == 60);
    assert_true(c->persistence == 1);
    assert_true(c->damping == 365 * 86400.0);
    assert_int_equal(c->dot_fail_threshold, 1);
    assert_int_equal(c->max_entries, 1000000);
    config_free(c);
    /* Durations in days, hours and fractions. */
    c = load("[probe]\npersistence = 1.5d\ndamping = 36h\nprobe-timeout = 2.5\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_true(c->persistence == 129600);
    assert_true(c->damping == 129600);
    assert_true(c->probe_timeout == 2.5);
    config_free(c);
}

/* ---- list rules ---- */

static void test_lists(void **state)
{
    struct config *c;

    (void)state;
    /* The first line of a list replaces the default, later lines append;
     * other keys in between do not matter. */
    c = load("[server]\nallow = 10.0.0.0/8\nlog-level = info\nallow = 192.168.0.0/16\n"
             "listen = 127.0.0.2:53\n[forward]\n[server]\nlisten = 127.0.0.3\n");
    assert_non_null(c);
    assert_int_equal(c->n_allow, 2);
    assert_prefix(&c->allow[0], "10.0.0.0/8");
    assert_prefix(&c->allow[1], "192.168.0.0/16");
    assert_int_equal(c->n_listen, 2);
    assert_addr(&c->listen[0], "127.0.0.2:53");
    assert_addr(&c->listen[1], "127.0.0.3:53");
    config_free(c);

    /* An empty value clears a list: no client allowed, no upstream. */
    c = load("[server]\nallow =\n[forward]\nupstream = 192.0.2.1\nupstream =\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(c->n_allow, 0);
    assert_int_equal(c->n_upstreams, 0);
    config_free(c);
    c = load("[server]\nallow = 10.0.0.0/8\nallow = ; clear\nallow = ::/0\n");
    assert_non_null(c);
    assert_int_equal(c->n_allow, 1);
    assert_prefix(&c->allow[0], "::/0");
    config_free(c);

    /* The same address and port twice cannot both be bound. */
    expect_errors("[server]\nlisten = 127.0.0.1\nlisten = 127.0.0.1:53\nlisten = [::1]:53\n",
                  "F:3: listen: '127.0.0.1:53' is listed twice\n");
    /* listen may not be empty. */
    expect_errors("[server]\nlisten =\n", "F:2: listen: '' is not a valid address\n");
}

/* ---- errors ---- */

static void test_error_messages(void **state)
{
    (void)state;
    expect_errors("lisen = 1\n", "F:1: key outside a section\n");
    expect_errors("[server]\n\nlisen = 127.0.0.1\n", "F:3: unknown key 'lisen' in section [server]\n");
    expect_errors("[forward]\nlisten = 127.0.0.1\n", "F:2: unknown key 'listen' in section [forward]\n");
    expect_errors("[server]\ntcp-clients = 0\n", "F:2: tcp-clients: '0' is out of range (1..65535)\n");
    expect_errors("[server]\ntcp-clients = 65536\n", "F:2: tcp-clients: '65536' is out of range (1..65535)\n");
    expect_errors("[server]\ntcp-clients = 99999999999999999999999\n",
                  "F:2: tcp-clients: '99999999999999999999999' is out of range (1..65535)\n");
    expect_errors("[server]\nmax-queries = 15\n", "F:2: max-queries: '15' is out of range (16..1000000)\n");
    expect_errors("[server]\ntcp-clients = -1\n", "F:2: tcp-clients: '-1' is not a number\n");
    expect_errors("[server]\ntcp-clients = 12k\n", "F:2: tcp-clients: '12k' is not a number\n");
    expect_errors("[server]\ntcp-clients =\n", "F:2: tcp-clients: '' is not a number\n");
    expect_errors("[forward]\nedns-buffer-size = 511\n", "F:2: edns-buffer-size: '511' is out of range (512..4096)\n");
    expect_errors("[forward]\nudp-sockets = 1025\n", "F:2: udp-sockets: '1025' is out of range (1..1024)\n");
    expect_errors("[forward]\nudp-socket-uses = 0\n", "F:2: udp-socket-uses: '0' is out of range (1..1000000)\n");
    expect_errors("[server]\ntcp-idle-timeout = 2h\n",
                  "F:2: tcp-idle-timeout: '2h' is out of range (100ms..1h)\n");
    expect_errors("[server]\ndrain-timeout = 61\n", "F:2: drain-timeout: '61' is out of range (0s..1m)\n");
    expect_errors("[forward]\ntimeout = 99ms\n", "F:2: timeout: '99ms' is out of range (100ms..30s)\n");
    expect_errors("[forward]\nattempt-timeout = 11s\n", "F:2: attempt-timeout: '11s' is out of range (10ms..10s)\n");
    expect_errors("[forward]\nupstream-tcp-idle = 0\n", "F:2: upstream-tcp-idle: '0' is out of range (100ms..1h)\n");
    expect_errors("[forward]\ntimeout = soon\n",
                  "F:2: timeout: 'soon' is not a valid duration (like 250ms, 2.5s, 1m)\n");
    expect_errors("[forward]\ntimeout = -1s\n",
                  "F:2: timeout: '-1s' is not a valid duration (like 250ms, 2.5s, 1m)\n");
    expect_errors("[server]\nlog-syslog = maybe\n", "F:2: log-syslog: 'maybe' is not a boolean (yes or no)\n");
    expect_errors("[server]\nrefused-action = ignore\n",
                  "F:2: refused-action: 'ignore' is not one of refuse, drop\n");
    expect_errors("[server]\nlog-level = verbose\n",
                  "F:2: log-level: 'verbose' is not one of error, warning, notice, info, debug\n");
    expect_errors("[server]\nlisten = 127.0.0.1:0\n", "F:2: listen: '127.0.0.1:0' is not a valid address\n");
    expect_errors("[server]\nlisten = 127.0.0.1:65536\n", "F:2: listen: '127.0.0.1:65536' is not a valid address\n");
    expect_errors("[server]\nlisten = localhost\n", "F:2: listen: 'localhost' is not a valid address\n");
    expect_errors("[server]\nlisten = 127.0.0.1 [::1]\n", "F:2: listen: '127.0.0.1 [::1]' is not a valid address\n");
    expect_errors("[server]\nallow = 10.0.0.0/33\n", "F:2: allow: '10.0.0.0/33' is not a valid address prefix\n");
    expect_errors("[server]\nallow = lan\n", "F:2: allow: 'lan' is not a valid address prefix\n");
    expect_errors("[forward]\nupstream = example.org=300.1.1.1:53\n",
                  "F:2: upstream: 'example.org=300.1.1.1:53' is not a valid address or host name\n");
    expect_errors("[forward]\nupstream = 192.0.2.1:0\n",
                  "F:2: upstream: '192.0.2.1:0' is not a valid address or host name\n");
    expect_errors("[forward]\nupstream = dns_x.example\n",
                  "F:2: upstream: 'dns_x.example' is not a valid address or host name\n");
    expect_errors("[forward]\nupstream = -dns.example\n",
                  "F:2: upstream: '-dns.example' is not a valid address or host name\n");
    expect_errors("[forward]\nupstream = example.org=\n",
                  "F:2: upstream: 'example.org=' is not a valid address or host name\n");
    /* An IPv6 address with a port needs brackets: "2001:db8::1:53" is an
     * address, but this one is neither address nor host:port. */
    expect_errors("[forward]\nupstream = 2001:db8::1::53\n",
                  "F:2: upstream: '2001:db8::1::53' is not a valid address or host name\n");
    expect_errors("[forward]\nupstream = a..b=192.0.2.1\n",
                  "F:2: upstream: 'a..b=192.0.2.1': zone 'a..b' is not a valid domain name\n");
    expect_errors("[forward]\nupstream = =192.0.2.1\n",
                  "F:2: upstream: '=192.0.2.1': zone '' is not a valid domain name\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=off\tx\n", "F:2: upstream: unknown option 'x'\n");
    expect_errors("[forward]\nresolv-conf =\n", "F:2: resolv-conf: a value is required\n");

    /* [probe] */
    expect_errors("[probe]\nprobe-after-visits = 0\n",
                  "F:2: probe-after-visits: '0' is out of range (1..1000)\n");
    expect_errors("[probe]\nprobe-after-visits = 1001\n",
                  "F:2: probe-after-visits: '1001' is out of range (1..1000)\n");
    expect_errors("[probe]\nprobe-on-start = sometimes\n",
                  "F:2: probe-on-start: 'sometimes' is not a boolean (yes or no)\n");
    expect_errors("[probe]\nmax-busy-probes = 0\n", "F:2: max-busy-probes: '0' is out of range (1..1024)\n");
    expect_errors("[probe]\nmax-busy-probes = 1025\n",
                  "F:2: max-busy-probes: '1025' is out of range (1..1024)\n");
    expect_errors("[probe]\nprobe-timeout = 99ms\n", "F:2: probe-timeout: '99ms' is out of range (100ms..1m)\n");
    expect_errors("[probe]\nprobe-timeout = 61s\n", "F:2: probe-timeout: '61s' is out of range (100ms..1m)\n");
    expect_errors("[probe]\npersistence = 999ms\n", "F:2: persistence: '999ms' is out of range (1s..365d)\n");
    expect_errors("[probe]\npersistence = 366d\n", "F:2: persistence: '366d' is out of range (1s..365d)\n");
    expect_errors("[probe]\ndamping = 0\n", "F:2: damping: '0' is out of range (1s..365d)\n");
    expect_errors("[probe]\ndamping = 1w\n",
                  "F:2: damping: '1w' is not a valid duration (like 250ms, 2.5s, 1m)\n");
    expect_errors("[probe]\ndot-fail-threshold = 0\n",
                  "F:2: dot-fail-threshold: '0' is out of range (1..100)\n");
    expect_errors("[probe]\ndot-fail-threshold = 101\n",
                  "F:2: dot-fail-threshold: '101' is out of range (1..100)\n");
    expect_errors("[probe]\nmax-entries = 15\n", "F:2: max-entries: '15' is out of range (16..1000000)\n");
    expect_errors("[probe]\nmax-entries = 1000001\n",
                  "F:2: max-entries: '1000001' is out of range (16..1000000)\n");
    expect_errors("[probe]\nmax-entries = many\n", "F:2: max-entries: 'many' is not a number\n");
    /* Keys stay in their own section. */
    expect_errors("[server]\ndamping = 1d\n[probe]\ntimeout = 1s\ncontrol-socket = /x\n",
                  "F:2: unknown key 'damping' in section [server]\n"
                  "F:4: unknown key 'timeout' in section [probe]\n"
                  "F:5: unknown key 'control-socket' in section [probe]\n");
}

/* ---- control-socket ---- */

static void test_control_socket(void **state)
{
    struct config_overrides ov;
    struct config *c;
    char text[512], path[200], want[1024];

    (void)state;
    c = load("[server]\ncontrol-socket = /run/dotward.sock\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_string_equal(c->control_socket, "/run/dotward.sock");
    config_free(c);

    /* An empty value means none, also after a path. */
    c = load("[server]\ncontrol-socket = /run/dotward.sock\ncontrol-socket =\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_null(c->control_socket);
    config_free(c);

    /* sun_path holds 107 bytes and the NUL. */
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[107] = '\0';
    snprintf(text, sizeof(text), "[server]\ncontrol-socket = %s\n", path);
    c = load(text);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(strlen(c->control_socket), 107);
    config_free(c);
    path[107] = 'a';
    path[108] = '\0';
    snprintf(text, sizeof(text), "[server]\n\ncontrol-socket = %s\n", path);
    snprintf(want, sizeof(want), "F:3: control-socket: '%s' is too long (max 107 bytes)\n", path);
    expect_errors(text, want);

    expect_errors("[server]\ncontrol-socket = run/dotward.sock\n",
                  "F:2: control-socket: 'run/dotward.sock' is not an absolute path\n");
    expect_errors("[server]\ncontrol-socket = ~/x.sock\ncontrol-socket = ./x\n",
                  "F:2: control-socket: '~/x.sock' is not an absolute path\n"
                  "F:3: control-socket: './x' is not an absolute path\n");

    /* --control overrides the file; "" turns the file's socket off. */
    memset(&ov, 0, sizeof(ov));
    ov.control_socket = "/tmp/ctl.sock";
    c = load_ov("[server]\ncontrol-socket = /run/dotward.sock\n", &ov);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_string_equal(c->control_socket, "/tmp/ctl.sock");
    config_free(c);
    c = load_ov(NULL, &ov);
    assert_non_null(c);
    assert_string_equal(c->control_socket, "/tmp/ctl.sock");
    config_free(c);
    ov.control_socket = "";
    c = load_ov("[server]\ncontrol-socket = /run/dotward.sock\n", &ov);
    assert_non_null(c);
    assert_null(c->control_socket);
    config_free(c);
    /* No --control: the file's value stays. */
    ov.control_socket = NULL;
    c = load_ov("[server]\ncontrol-socket = /run/dotward.sock\n", &ov);
    assert_non_null(c);
    assert_string_equal(c->control_socket, "/run/dotward.sock");
    config_free(c);

    ov.control_socket = "ctl.sock";
    c = load_ov(NULL, &ov);
    assert_null(c);
    assert_string_equal(errbuf, "command line: --control: 'ctl.sock' is not an absolute path\n");
    ov.control_socket = path; /* 108 bytes */
    c = load_ov(NULL, &ov);
    assert_null(c);
    snprintf(want, sizeof(want), "command line: --control: '%s' is too long (max 107 bytes)\n", path);
    assert_string_equal(errbuf, want);
}

/* ---- metrics-listen, user, group, state-file, save-interval ---- */

static void test_metrics_listen(void **state)
{
    struct config_overrides ov;
    struct config *c;

    (void)state;
    c = load("[server]\nmetrics-listen = 127.0.0.1:9153\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_true(c->metrics_enabled);
    assert_addr(&c->metrics_listen, "127.0.0.1:9153");
    config_free(c);
    c = load("[server]\nmetrics-listen = [2001:db8::1]:80\n");
    assert_non_null(c);
    assert_true(c->metrics_enabled);
    assert_addr(&c->metrics_listen, "[2001:db8::1]:80");
    config_free(c);
    /* Empty after a value: none again. */
    c = load("[server]\nmetrics-listen = 127.0.0.1:9153\nmetrics-listen =\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_false(c->metrics_enabled);
    config_free(c);

    /* The port is required: no default port is right for HTTP next to DNS. */
    expect_errors("[server]\nmetrics-listen = 127.0.0.1\n",
                  "F:2: metrics-listen: '127.0.0.1' needs a port (IP:PORT or [IPv6]:PORT)\n");
    expect_errors("[server]\nmetrics-listen = [::1]\nmetrics-listen = ::1\n",
                  "F:2: metrics-listen: '[::1]' needs a port (IP:PORT or [IPv6]:PORT)\n"
                  "F:3: metrics-listen: '::1' needs a port (IP:PORT or [IPv6]:PORT)\n");
    expect_errors("[server]\nmetrics-listen = localhost:9153\n",
                  "F:2: metrics-listen: 'localhost:9153' is not a valid address (IP:PORT)\n");
    expect_errors("[server]\nmetrics-listen = 127.0.0.1:0\n",
                  "F:2: metrics-listen: '127.0.0.1:0' is not a valid address (IP:PORT)\n");
    expect_errors("[server]\nmetrics-listen = 127.0.0.1:65536\n",
                  "F:2: metrics-listen: '127.0.0.1:65536' is not a valid address (IP:PORT)\n");
    expect_errors("[probe]\nmetrics-listen = 127.0.0.1:9153\n",
                  "F:2: unknown key 'metrics-listen' in section [probe]\n");

    /* --metrics-listen overrides the file; "" turns it off. */
    memset(&ov, 0, sizeof(ov));
    ov.metrics_listen = "127.0.0.2:9000";
    c = load_ov("[server]\nmetrics-listen = 127.0.0.1:9153\n", &ov);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_true(c->metrics_enabled);
    assert_addr(&c->metrics_listen, "127.0.0.2:9000");
    config_free(c);
    ov.metrics_listen = "";
    c = load_ov("[server]\nmetrics-listen = 127.0.0.1:9153\n", &ov);
    assert_non_null(c);
    assert_false(c->metrics_enabled);
    config_free(c);
    ov.metrics_listen = "127.0.0.1";
    c = load_ov(NULL, &ov);
    assert_null(c);
    assert_string_equal(errbuf,
                        "command line: --metrics-listen: '127.0.0.1' needs a port (IP:PORT or [IPv6]:PORT)\n");
}

static void test_user_group(void **state)
{
    static const char *const good[] = { "dotward", "_dotward", "nobody", "a", "dns-1", "u_2-x",
                                        "machine$", "abcdefghijklmnopqrstuvwxyz012345" };
    static const char *const bad[] = { "Dotward", "1dns", "-dns", "dns user", "d.w", "a$b", "$",
                                       "abcdefghijklmnopqrstuvwxyz0123456", "r\xc3\xb6ot", "0" };
    char text[256], want[512];
    struct config *c;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text), "[server]\nuser = %s\ngroup = %s\n", good[i], good[i]);
        c = load(text);
        if (!c)
            fail_msg("'%s': %s", good[i], errbuf);
        assert_string_equal(c->user, good[i]);
        assert_string_equal(c->group, good[i]);
        config_free(c);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "[server]\ngroup = %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "F:2: group: '%s' is not a valid name (letters a-z, digits, '_', '-'; at most 32 bytes)\n",
                 bad[i]);
        expect_errors(text, want);
    }
    /* Either one alone; empty is "unchanged". */
    c = load("[server]\ngroup = dns\n");
    assert_non_null(c);
    assert_null(c->user);
    assert_string_equal(c->group, "dns");
    config_free(c);
    c = load("[server]\nuser = dns\nuser =\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_null(c->user);
    config_free(c);
    /* Names only: the config module looks nothing up, so an unknown user loads. */
    c = load("[server]\nuser = no_such_user_here\n");
    assert_non_null(c);
    config_free(c);
}

static void test_state_file(void **state)
{
    struct config_overrides ov;
    struct config *c;
    char path[CONFIG_FILE_MAX + 2], want[256];

    (void)state;
    c = load("[probe]\nstate-file = /var/lib/dotward/state\nsave-interval = 10s\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_string_equal(c->state_file, "/var/lib/dotward/state");
    assert_true(c->save_interval == 10);
    config_free(c);
    c = load("[probe]\nstate-file = /x\nstate-file =\n");
    assert_non_null(c);
    assert_null(c->state_file);
    config_free(c);

    expect_errors("[probe]\nstate-file = var/lib/state\n",
                  "F:2: state-file: 'var/lib/state' is not an absolute path\n");
    expect_errors("[server]\nstate-file = /x\n", "F:2: unknown key 'state-file' in section [server]\n");
    expect_errors("[probe]\nsave-interval = 9s\n", "F:2: save-interval: '9s' is out of range (10s..1d)\n");
    expect_errors("[probe]\nsave-interval = 25h\n", "F:2: save-interval: '25h' is out of range (10s..1d)\n");
    expect_errors("[probe]\nsave-interval = often\n",
                  "F:2: save-interval: 'often' is not a valid duration (like 250ms, 2.5s, 1m)\n");

    /* --state-file overrides the file; "" turns saving off. */
    memset(&ov, 0, sizeof(ov));
    ov.state_file = "/tmp/s";
    c = load_ov("[probe]\nstate-file = /var/lib/dotward/state\n", &ov);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_string_equal(c->state_file, "/tmp/s");
    config_free(c);
    ov.state_file = "";
    c = load_ov("[probe]\nstate-file = /var/lib/dotward/state\n", &ov);
    assert_non_null(c);
    assert_null(c->state_file);
    config_free(c);
    ov.state_file = "state";
    c = load_ov(NULL, &ov);
    assert_null(c);
    assert_string_equal(errbuf, "command line: --state-file: 'state' is not an absolute path\n");
    /* A file path may be longer than a socket path, as long as the line
     * "state-file = PATH" fits in a line (199 bytes), so that the dump of
     * the config loads back: 186 bytes. */
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[CONFIG_LINE_MAX - 13] = '\0';
    ov.state_file = path;
    c = load_ov(NULL, &ov);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(strlen(c->state_file), 186);
    config_free(c);
    path[CONFIG_LINE_MAX - 13] = 'a';
    path[CONFIG_LINE_MAX - 12] = '\0';
    c = load_ov(NULL, &ov);
    assert_null(c);
    snprintf(want, sizeof(want),
             "command line: --state-file: '%.40s...' is too long: written as 'state-file = VALUE' it needs "
             "200 bytes, a line holds 199\n", path);
    assert_string_equal(errbuf, want);
    path[CONFIG_LINE_MAX - 12] = 'a';
    path[CONFIG_FILE_MAX] = 'a';
    path[CONFIG_FILE_MAX + 1] = '\0';
    c = load_ov(NULL, &ov);
    assert_null(c);
    snprintf(want, sizeof(want), "command line: --state-file: '%.40s...' is too long (max %d bytes)\n", path,
             CONFIG_FILE_MAX);
    assert_string_equal(errbuf, want);
}

/* ---- values that would not load back from the dump ---- */

#define COMMENT_MSG(c) "a '" c "' at the start of a value or after a blank reads as a comment " \
                       "(a comment after a value starts with ' ;')"

static void test_value_rules(void **state)
{
    struct config_overrides ov;
    struct config *c;
    char text[512], want[1024];

    (void)state;
    /* The fuzzer's find: inih hands over ";" (the " ;x" is its comment),
     * which config_dump() would write as "resolv-conf = ;", an empty value. */
    expect_errors("[forward]\nresolv-conf =; ;x\n",
                  "F:2: resolv-conf: ';': " COMMENT_MSG(";") "\n");
    expect_errors("[forward]\nresolv-conf =;x\n", "F:2: resolv-conf: ';x': " COMMENT_MSG(";") "\n");
    /* '#' is no inline comment to inih: a value would silently hold it. */
    expect_errors("[probe]\nstate-file = /srv/x # old\n",
                  "F:2: state-file: '/srv/x # old': " COMMENT_MSG("#") "\n");
    expect_errors("[probe]\nstate-file = /srv/x\t#old\n",
                  "F:2: state-file: '/srv/x\\x09#old' contains a control character\n");
    expect_errors("[server]\ncontrol-socket = #/run/x\nuser = #1\n",
                  "F:2: control-socket: '#/run/x': " COMMENT_MSG("#") "\n"
                  "F:3: user: '#1': " COMMENT_MSG("#") "\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 # quad9\nupstream = 192.0.2.2 tls=off\t#x\n",
                  "F:2: upstream: '192.0.2.1 # quad9': " COMMENT_MSG("#") "\n"
                  "F:3: upstream: '192.0.2.2 tls=off\\x09#x': " COMMENT_MSG("#") "\n");
    /* Control characters; a tab only between the words of an upstream. */
    expect_errors("[probe]\nstate-file = /a\x01" "b\n[server]\ncontrol-socket = /a\x7f\n",
                  "F:2: state-file: '/a\\x01b' contains a control character\n"
                  "F:4: control-socket: '/a\\x7f' contains a control character\n");
    expect_errors("[probe]\nstate-file = /a\tb\n", "F:2: state-file: '/a\\x09b' contains a control character\n");
    expect_errors("[forward]\nupstream = 192.0.2.1\x0btls=off\n",
                  "F:2: upstream: '192.0.2.1\\x0btls=off' contains a control character\n");

    /* Allowed: ';' and '#' inside a word, blanks inside a path, tabs
     * between the words of an upstream; each round-trips (test_dump_*). */
    c = load("[forward]\nresolv-conf = /etc/a;b#c\nupstream = 192.0.2.1\ttls=off\t kind=authoritative\n"
             "[probe]\nstate-file = /srv/my state;1/x#2\n[server]\ncontrol-socket = /run/#x;y\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_string_equal(c->resolv_conf, "/etc/a;b#c");
    assert_string_equal(c->state_file, "/srv/my state;1/x#2");
    assert_string_equal(c->control_socket, "/run/#x;y");
    assert_int_equal(c->upstreams[0].tls, CONFIG_TLS_OFF);
    assert_true(c->upstreams[0].authoritative);
    config_free(c);

    /* Every path is absolute: resolv-conf and ca= too. */
    expect_errors("[forward]\nresolv-conf = resolv.conf\nresolv-conf = ./r\n",
                  "F:2: resolv-conf: 'resolv.conf' is not an absolute path\n"
                  "F:3: resolv-conf: './r' is not an absolute path\n");
    snprintf(text, sizeof(text), "[forward]\nupstream = 192.0.2.1 tls=strict name=a.example ca=ca.pem\n"
             "upstream = 192.0.2.2 tls=strict name=a.example ca=~/ca.pem\n");
    expect_errors(text, "F:2: upstream: ca=ca.pem: not an absolute path\n"
                        "F:3: upstream: ca=~/ca.pem: not an absolute path\n");

    /* The command line: the same rules, and blanks at either end. */
    memset(&ov, 0, sizeof(ov));
    ov.state_file = "/x ";
    ov.resolv_conf = "/r ;y";
    ov.control_socket = "/a\nb";
    ov.metrics_listen = " 127.0.0.1:9153";
    c = load_ov(NULL, &ov);
    assert_null(c);
    assert_string_equal(errbuf,
                        "command line: --resolv-conf: '/r ;y': " COMMENT_MSG(";") "\n"
                        "command line: --control: '/a\\x0ab' contains a control character\n"
                        "command line: --state-file: '/x ' begins or ends with a blank\n"
                        "command line: --metrics-listen: ' 127.0.0.1:9153' begins or ends with a blank\n");
    {
        const char *ups[] = { "192.0.2.1 ;x", "192.0.2.2\t", "192.0.2.3\ttls=off" };
        const char *lis[] = { "127.0.0.1:5353\t" };
        memset(&ov, 0, sizeof(ov));
        ov.upstream = ups;
        ov.n_upstream = 3;
        ov.listen = lis;
        ov.n_listen = 1;
        ov.resolv_conf = "relative";
        c = load_ov(NULL, &ov);
        assert_null(c);
        assert_string_equal(errbuf,
                            "command line: --listen: '127.0.0.1:5353\\x09' contains a control character\n"
                            "command line: --upstream: '192.0.2.1 ;x': " COMMENT_MSG(";") "\n"
                            "command line: --upstream: '192.0.2.2\\x09' begins or ends with a blank\n"
                            "command line: --resolv-conf: 'relative' is not an absolute path\n");
    }

    /* A value that fits in the file's line but not in the dump's: the dump
     * adds blanks around '=' and the port. 188 + 9 = 197 bytes here. */
    {
        char host[200];
        memset(host, 'a', 188);
        host[188] = '\0';
        host[63] = host[127] = '.';
        snprintf(text, sizeof(text), "[forward]\nupstream=%s\nupstream=%.185s\n", host, host);
        snprintf(want, sizeof(want),
                 "F:2: upstream: '%.40s...' is too long: written as 'upstream = VALUE' it needs 202 bytes, "
                 "a line holds 199\n", host);
        expect_errors(text, want);
        snprintf(text, sizeof(text), "[forward]\nupstream=%.185s\n", host);
        c = load(text);
        assert_string_equal(errbuf, "");
        assert_non_null(c);
        config_free(c);
    }
}

/* ---- upstream options ---- */

static void test_upstream_options(void **state)
{
    struct config *c;
    char text[1024], want[2048];

    (void)state;
    /* Defaults; option values are case-insensitive; any order; tabs. */
    c = load("[forward]\nupstream = 192.0.2.1\n"
             "upstream = corp.example=ns1.corp.example:5300\tkind=Authoritative tls=OFF\n"
             "upstream = [2001:db8::1]:853 name=a-b.example tls=Strict\n");
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(c->n_upstreams, 3);
    assert_int_equal(c->upstreams[0].tls, CONFIG_TLS_OPPORTUNISTIC);
    assert_null(c->upstreams[0].auth_name);
    assert_null(c->upstreams[0].ca_file);
    assert_false(c->upstreams[0].authoritative);
    assert_int_equal(c->upstreams[1].tls, CONFIG_TLS_OFF);
    assert_true(c->upstreams[1].authoritative);
    assert_string_equal(c->upstreams[1].host, "ns1.corp.example");
    assert_int_equal(c->upstreams[1].port, 5300);
    assert_string_equal(c->upstreams[1].zone, "corp.example.");
    assert_int_equal(c->upstreams[2].tls, CONFIG_TLS_STRICT);
    assert_string_equal(c->upstreams[2].auth_name, "a-b.example");
    assert_null(c->upstreams[2].ca_file);
    assert_addr(&c->upstreams[2].addr, "[2001:db8::1]:853");
    config_free(c);

    /* Every error, with its line. */
    expect_errors("[forward]\n\nupstream = 192.0.2.1 dot=yes\n", "F:3: upstream: unknown option 'dot=yes'\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 strict\n", "F:2: upstream: unknown option 'strict'\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 =x\n", "F:2: upstream: unknown option '=x'\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 TLS=off\n", "F:2: upstream: unknown option 'TLS=off'\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=maybe\n",
                  "F:2: upstream: tls=maybe: not one of opportunistic, strict, off\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=\n",
                  "F:2: upstream: tls=: not one of opportunistic, strict, off\n");
    /* With a bad tls= value, name= is not also blamed. */
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strikt name=dns.example\n",
                  "F:2: upstream: tls=strikt: not one of opportunistic, strict, off\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict\n",
                  "F:2: upstream: tls=strict needs name=AUTH-NAME\n");
    expect_errors("[forward]\nupstream = dns.quad9.net tls=strict kind=recursive\n",
                  "F:2: upstream: tls=strict needs name=AUTH-NAME\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 name=dns.example\n",
                  "F:2: upstream: name= is only allowed with tls=strict\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=off name=dns.example\n",
                  "F:2: upstream: name= is only allowed with tls=strict\n");
    snprintf(text, sizeof(text), "[forward]\nupstream = 192.0.2.1 tls=opportunistic ca=%s\n", ca_path);
    expect_errors(text, "F:2: upstream: ca= is only allowed with tls=strict\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict name=dns..example\n",
                  "F:2: upstream: name=dns..example: not a valid host name\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict name=192.0.2.1\n",
                  "F:2: upstream: name=192.0.2.1: not a valid host name\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict name=\n",
                  "F:2: upstream: name=: not a valid host name\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict name=dns_x.example\n",
                  "F:2: upstream: name=dns_x.example: not a valid host name\n");
    snprintf(text, sizeof(text), "[forward]\nupstream = 192.0.2.1 tls=strict name=d.example ca=%s/nope.pem\n",
             tmpdir);
    snprintf(want, sizeof(want), "F:2: upstream: ca=%s/nope.pem: cannot read: %s\n", tmpdir, strerror(ENOENT));
    expect_errors(text, want);
    snprintf(text, sizeof(text), "[forward]\nupstream = 192.0.2.1 tls=strict name=d.example ca=%s\n", tmpdir);
    snprintf(want, sizeof(want), "F:2: upstream: ca=%s: cannot read: %s\n", tmpdir, strerror(EISDIR));
    expect_errors(text, want);
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict name=d.example ca=\n",
                  "F:2: upstream: ca=: a file name is required\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=off tls=off\n",
                  "F:2: upstream: option 'tls' given twice\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 tls=strict name=a.example name=b.example\n",
                  "F:2: upstream: option 'name' given twice\n");
    snprintf(text, sizeof(text), "[forward]\nupstream = 192.0.2.1 tls=strict name=a.example ca=%s ca=%s\n",
             ca_path, ca_path);
    expect_errors(text, "F:2: upstream: option 'ca' given twice\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 kind=recursive kind=authoritative\n",
                  "F:2: upstream: option 'kind' given twice\n");
    expect_errors("[forward]\nupstream = 192.0.2.1 kind=stub\n",
                  "F:2: upstream: kind=stub: not one of recursive, authoritative\n");

    /* All problems of a line, then those of the server, then the next line. */
    expect_errors("[forward]\n"
                  "upstream = 300.1.1.1 tls=strict name=x..y foo kind=auth\n"
                  "upstream = 192.0.2.1 name=a.example tls=off\n",
                  "F:2: upstream: name=x..y: not a valid host name\n"
                  "F:2: upstream: unknown option 'foo'\n"
                  "F:2: upstream: kind=auth: not one of recursive, authoritative\n"
                  "F:2: upstream: '300.1.1.1' is not a valid address or host name\n"
                  "F:3: upstream: name= is only allowed with tls=strict\n");

    /* The same rules and texts on the command line. */
    {
        const char *ups[] = { "192.0.2.1 tls=strict name=Dns.Example. kind=authoritative",
                              "192.0.2.2 tls=strict", "192.0.2.3 ca=/nonexistent/ca.pem", "192.0.2.4 x=1" };
        struct config_overrides ov;
        memset(&ov, 0, sizeof(ov));
        ov.upstream = ups;
        ov.n_upstream = 1;
        c = load_ov("[forward]\nupstream = 192.0.2.9 tls=off\n", &ov);
        assert_string_equal(errbuf, "");
        assert_non_null(c);
        assert_int_equal(c->n_upstreams, 1);
        assert_addr(&c->upstreams[0].addr, "192.0.2.1:53");
        assert_int_equal(c->upstreams[0].tls, CONFIG_TLS_STRICT);
        assert_string_equal(c->upstreams[0].auth_name, "dns.example");
        assert_true(c->upstreams[0].authoritative);
        assert_string_equal(c->upstreams[0].origin, "command line");
        config_free(c);
        ov.n_upstream = 4;
        c = load_ov(NULL, &ov);
        assert_null(c);
        snprintf(want, sizeof(want),
                 "command line: --upstream: tls=strict needs name=AUTH-NAME\n"
                 "command line: --upstream: ca=/nonexistent/ca.pem: cannot read: %s\n"
                 "command line: --upstream: ca= is only allowed with tls=strict\n"
                 "command line: --upstream: unknown option 'x=1'\n",
                 strerror(ENOENT));
        assert_string_equal(errbuf, want);
    }
}

static void test_zone_and_host_syntax(void **state)
{
    char text[700], label63[64], label64[65], name254[300];
    struct config *c;

    (void)state;
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'a', 64);
    label64[64] = '\0';

    snprintf(text, sizeof(text), "[forward]\nupstream = %s.example=%s.example:53\n", label63, label63);
    c = load(text);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    config_free(c);

    snprintf(text, sizeof(text), "[forward]\nupstream = %s.example=192.0.2.1\n", label64);
    c = load(text);
    assert_null(c);
    assert_non_null(strstr(errbuf, "is not a valid domain name"));
    snprintf(text, sizeof(text), "[forward]\nupstream = %s.example\n", label64);
    c = load(text);
    assert_null(c);
    assert_non_null(strstr(errbuf, "is not a valid address or host name"));

    /* 253 characters is the longest name; the trailing dot is not counted.
     * Such a name does not fit in a line of the file, and config_dump()
     * could not write it: the command line refuses it as too long. */
    {
        struct config_overrides ov;
        const char *ups[1];
        char *z;
        memset(&ov, 0, sizeof(ov));
        ov.upstream = ups;
        ov.n_upstream = 1;
        memset(name254, 0, sizeof(name254));
        snprintf(name254, sizeof(name254), "%s.%s.%s.%s", label63, label63, label63, label63);
        name254[253] = '\0'; /* 4*63+3 = 255 long: cut to 253, last label 61 */
        z = config_zone_normalize(name254);
        assert_non_null(z);
        assert_int_equal(strlen(z), 254);
        free(z);
        snprintf(text, sizeof(text), "%s.", name254); /* a host name of 253 */
        assert_true(config_host_name_valid(text));
        snprintf(text, sizeof(text), "%s.=192.0.2.1", name254);
        ups[0] = text;
        c = load_ov(NULL, &ov);
        assert_null(c);
        assert_non_null(strstr(errbuf, "command line: --upstream: '"));
        assert_non_null(strstr(errbuf, "...' is too long: written as 'upstream = VALUE' it needs 277 bytes, "
                                       "a line holds 199\n"));
        name254[253] = 'a';
        name254[254] = '\0';
        assert_null(config_zone_normalize(name254));
        assert_false(config_host_name_valid(name254));
        snprintf(text, sizeof(text), "%s=192.0.2.1", name254);
        c = load_ov(NULL, &ov);
        assert_null(c);
        assert_non_null(strstr(errbuf, "is not a valid domain name"));
        snprintf(text, sizeof(text), "%s", name254);
        c = load_ov(NULL, &ov);
        assert_null(c);
        assert_non_null(strstr(errbuf, "is not a valid address or host name"));
    }

    /* The root zone written out; an upper-case zone folds to lower case. */
    c = load("[forward]\nupstream = .=192.0.2.1\nupstream = ARPA=192.0.2.2\n");
    assert_non_null(c);
    assert_string_equal(c->upstreams[0].zone, ".");
    assert_string_equal(c->upstreams[1].zone, "arpa.");
    config_free(c);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_errors("[server]\nthis is junk\n",
                  "F:2: syntax error (expected 'key = value' or '[section]')\n");
    /* ':' is not a separator (inih's default would take "listen ::1" as
     * key "listen", value ":1"). */
    expect_errors("[server]\nlisten ::1\n", "F:2: syntax error (expected 'key = value' or '[section]')\n");
    expect_errors("[server]\nlog-level: info\n", "F:2: syntax error (expected 'key = value' or '[section]')\n");
    expect_errors("[server]\n= 1\n", "F:2: syntax error (expected 'key = value' or '[section]')\n");
    expect_errors("[server]\nkey ; = 1\n", "F:2: syntax error (expected 'key = value' or '[section]')\n");
    expect_errors("[server\nlisten = 127.0.0.1\n", "F:1: syntax error (expected 'key = value' or '[section]')\n");
    expect_errors("[server] junk\n", "F:1: syntax error (expected 'key = value' or '[section]')\n");
    expect_errors("[server ; x]\n", "F:1: syntax error (expected 'key = value' or '[section]')\n");
}

static void test_nul_byte(void **state)
{
    static const char text[] = "[server]\nlog-syslog = yes\0no\nlisten = x\n";
    struct config *c;
    char *buf = NULL, want[512];
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);

    (void)state;
    write_bytes(conf_path, text, sizeof(text) - 1);
    c = config_load(conf_path, NULL, err);
    fclose(err);
    assert_null(c);
    snprintf(want, sizeof(want), "%s:2: line contains a NUL byte\n%s:3: listen: 'x' is not a valid address\n",
             conf_path, conf_path);
    assert_string_equal(buf, want);
    free(buf);
}

static void test_unknown_section(void **state)
{
    (void)state;
    /* Reported once, on the header; its keys are not reported; the next
     * known section works again. */
    expect_errors("[foo]\nbar = 1\nbaz = 2\n[server]\nlisen = 1\n[]\nx = 1\n[ Server ]\n",
                  "F:1: unknown section [foo]\n"
                  "F:5: unknown key 'lisen' in section [server]\n"
                  "F:6: unknown section []\n"
                  "F:8: unknown section [Server]\n");
    /* An empty unknown section is reported too. */
    expect_errors("[server]\n[nothing]\n", "F:2: unknown section [nothing]\n");
}

static void test_long_lines(void **state)
{
    char text[1024];
    struct config *c;
    int n;

    (void)state;
    /* 199 bytes is the longest line; the line ending does not count. */
    n = snprintf(text, sizeof(text), "[forward]\nresolv-conf = /");
    memset(text + n, 'a', 199 - 15);
    snprintf(text + n + 199 - 15, sizeof(text) - (size_t)n - 184, "\r\nudp-sockets = 2\n");
    c = load(text);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(strlen(c->resolv_conf), 199 - 14);
    assert_int_equal(c->udp_sockets, 2);
    config_free(c);

    /* 200 bytes: one error for the line, nothing for its pieces, and the
     * next lines keep their numbers. */
    n = snprintf(text, sizeof(text), "[forward]\nresolv-conf = /");
    memset(text + n, 'a', 200 - 15);
    snprintf(text + n + 200 - 15, sizeof(text) - (size_t)n - 185, "\nudp-sockets = 0\n");
    expect_errors(text, "F:2: line too long (max 199 bytes)\n"
                        "F:3: udp-sockets: '0' is out of range (1..1024)\n");

    /* A very long comment line is still too long, and so is a last line
     * without a newline. */
    memset(text, ';', 600);
    snprintf(text + 600, sizeof(text) - 600, "\n[server]\n");
    memset(text + 610, 'x', 300);
    text[910] = '\0';
    expect_errors(text, "F:1: line too long (max 199 bytes)\nF:3: line too long (max 199 bytes)\n");
}

static void test_many_errors(void **state)
{
    (void)state;
    /* Every bad line is reported, in order, not only the first. */
    expect_errors("lisen = 1\n"
                  "[server]\n"
                  "lisen = 127.0.0.1\n"
                  "tcp-clients = 0\n"
                  "listen = 127.0.0.1\n"
                  "junk\n"
                  "[foo]\n"
                  "x = y\n"
                  "[forward]\n"
                  "upstream = example.org=300.1.1.1:53\n"
                  "timeout = 1y\n"
                  "udp-sockets = 64\n"
                  "edns-buffer-size = 100\n",
                  "F:1: key outside a section\n"
                  "F:3: unknown key 'lisen' in section [server]\n"
                  "F:4: tcp-clients: '0' is out of range (1..65535)\n"
                  "F:6: syntax error (expected 'key = value' or '[section]')\n"
                  "F:7: unknown section [foo]\n"
                  "F:10: upstream: 'example.org=300.1.1.1:53' is not a valid address or host name\n"
                  "F:11: timeout: '1y' is not a valid duration (like 250ms, 2.5s, 1m)\n"
                  "F:13: edns-buffer-size: '100' is out of range (512..4096)\n");
}

static void test_cannot_open(void **state)
{
    struct config *c;
    char path[256], want[512];

    (void)state;
    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    errbuf[0] = '\0';
    {
        char *buf = NULL;
        size_t len = 0;
        FILE *err = open_memstream(&buf, &len);
        c = config_load(path, NULL, err);
        fclose(err);
        assert_null(c);
        snprintf(want, sizeof(want), "%s: cannot open: %s\n", path, strerror(ENOENT));
        assert_string_equal(buf, want);
        free(buf);

        /* A directory opens but cannot be read. */
        buf = NULL;
        err = open_memstream(&buf, &len);
        c = config_load(tmpdir, NULL, err);
        fclose(err);
        assert_null(c);
        snprintf(want, sizeof(want), "%s: read error: %s\n", tmpdir, strerror(EISDIR));
        assert_string_equal(buf, want);
        free(buf);
    }
    /* A NULL error stream is allowed. */
    assert_null(config_load(path, NULL, NULL));
}

/* ---- overrides ---- */

static void test_overrides(void **state)
{
    const char *listen[] = { "127.0.0.9", "[::1]:5399" };
    const char *ups[] = { "192.0.2.53:5300", "corp.example=dns.corp.example" };
    struct config_overrides ov;
    struct config *c;

    (void)state;
    memset(&ov, 0, sizeof(ov));
    ov.listen = listen;
    ov.n_listen = 2;
    ov.upstream = ups;
    ov.n_upstream = 2;
    ov.resolv_conf = "/tmp/my-resolv.conf";
    ov.verbose = 1;
    c = load_ov("[server]\nlisten = 127.0.0.2\nlog-level = notice\n"
                "[forward]\nupstream = 9.9.9.9\nresolv-conf = /etc/other\n", &ov);
    assert_string_equal(errbuf, "");
    assert_non_null(c);
    assert_int_equal(c->n_listen, 2);
    assert_addr(&c->listen[0], "127.0.0.9:53");
    assert_addr(&c->listen[1], "[::1]:5399");
    assert_int_equal(c->n_upstreams, 2);
    assert_addr(&c->upstreams[0].addr, "192.0.2.53:5300");
    assert_string_equal(c->upstreams[0].origin, "command line");
    assert_string_equal(c->upstreams[1].zone, "corp.example.");
    assert_string_equal(c->upstreams[1].host, "dns.corp.example");
    assert_string_equal(c->resolv_conf, "/tmp/my-resolv.conf");
    assert_int_equal(c->log_level, LOG_LVL_INFO); /* notice + 1 */
    config_free(c);

    /* Without a file; verbose saturates at debug; empty override lists
     * leave the defaults. */
    memset(&ov, 0, sizeof(ov));
    ov.verbose = 5;
    c = load_ov(NULL, &ov);
    assert_non_null(c);
    assert_int_equal(c->log_level, LOG_LVL_DEBUG);
    assert_int_equal(c->n_listen, 2);
    assert_addr(&c->listen[0], "127.0.0.1:5353");
    config_free(c);
    ov.verbose = -9;
    c = load_ov(NULL, &ov);
    assert_non_null(c);
    assert_int_equal(c->log_level, LOG_LVL_ERR);
    config_free(c);

    /* Errors, all of them, after the file's. */
    {
        const char *bad_listen[] = { "nowhere", "127.0.0.1" };
        const char *bad_ups[] = { "x..y", "192.0.2.1 tls=strict", "" };
        char want[1024];
        memset(&ov, 0, sizeof(ov));
        ov.listen = bad_listen;
        ov.n_listen = 2;
        ov.upstream = bad_ups;
        ov.n_upstream = 3;
        ov.resolv_conf = "";
        c = load_ov("[server]\ntcp-clients = 0\n", &ov);
        assert_null(c);
        snprintf(want, sizeof(want),
                 "%s:2: tcp-clients: '0' is out of range (1..65535)\n"
                 "command line: --listen: 'nowhere' is not a valid address\n"
                 "command line: --upstream: 'x..y' is not a valid address or host name\n"
                 "command line: --upstream: tls=strict needs name=AUTH-NAME\n"
                 "command line: --upstream: '' is not a valid address or host name\n"
                 "command line: --resolv-conf: a value is required\n",
                 conf_path);
        assert_string_equal(errbuf, want);
    }
}

/* ---- dump ---- */

static struct config *dump_and_reload(const struct config *c, char **text)
{
    char path[sizeof(tmpdir) + 16];
    struct config *again;
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_dump(c, f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/dump.conf", tmpdir);
    write_bytes(path, buf, len);
    again = config_load(path, NULL, stderr);
    if (!again)
        fail_msg("dump does not load:\n%s", buf);
    if (text)
        *text = buf;
    else
        free(buf);
    return again;
}

static void test_dump_round_trip(void **state)
{
    static const char *const confs[] = {
        NULL,
        full_conf,
        "[server]\nallow =\n[forward]\ntimeout = 0.25m\nattempt-timeout = 10.5ms\n"
        "upstream-tcp-idle = 0.001h\nupstream = [::ffff:192.0.2.1]:53\nupstream = dns.example.:853\n"
        "upstream = A.B=[::1]:5353\n",
        "[server]\ndrain-timeout = 0.000001\ntcp-idle-timeout = 1m\n[forward]\ntimeout = 1.5\n"
        "upstream-tcp-idle = 1h\nupstream = x\n",
        "[server]\ncontrol-socket = /run/x.sock\n[forward]\nupstream = x tls=off kind=authoritative\n"
        "upstream = example=[::1]:853 tls=strict name=NS.example.\nupstream = 192.0.2.1 tls=opportunistic\n"
        "[probe]\npersistence = 1.5d\ndamping = 25h\nprobe-timeout = 0.1\nprobe-on-start = off\n",
        "[server]\nmetrics-listen = 127.0.0.1:9153\nuser = nobody\n[probe]\nstate-file = /s\n"
        "save-interval = 90s\n",
        /* ';' and '#' inside words, blanks inside paths, tabs in an upstream. */
        "[forward]\nresolv-conf = /etc/a;b#c\nupstream = 192.0.2.1\ttls=off\t kind=authoritative\n"
        "[probe]\nstate-file = /srv/my state;1/x#2\n[server]\ncontrol-socket = /run/#x;y\n",
    };
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof(confs) / sizeof(confs[0]); i++) {
        struct config *c = load(confs[i]), *again;
        char *text = NULL;
        if (!c)
            fail_msg("conf %zu: %s", i, errbuf);
        again = dump_and_reload(c, &text);
        if (!config_equal(c, again))
            fail_msg("conf %zu: dump differs after reload:\n%s", i, text);
        /* Every option appears in the dump. */
        assert_non_null(strstr(text, "\n[server]\n"));
        assert_non_null(strstr(text, "\n[forward]\n"));
        assert_non_null(strstr(text, "\n[probe]\n"));
        {
            static const char *const keys[] = {
                "listen", "allow", "refused-action", "tcp-clients", "tcp-idle-timeout", "max-queries",
                "log-level", "log-syslog", "drain-timeout", "upstream", "resolv-conf", "timeout",
                "attempt-timeout", "udp-sockets", "udp-socket-uses", "edns-buffer-size", "upstream-tcp-idle",
                "control-socket", "probe-after-visits", "probe-on-start", "max-busy-probes", "probe-timeout",
                "persistence", "damping", "dot-fail-threshold", "max-entries", "metrics-listen", "user",
                "group", "state-file", "save-interval",
            };
            char key[64];
            for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                snprintf(key, sizeof(key), "\n%s =", keys[k]);
                if (!strstr(text, key))
                    fail_msg("'%s' missing from dump:\n%s", keys[k], text);
            }
        }
        free(text);
        config_free(again);
        config_free(c);
    }
}

static void test_dump_text(void **state)
{
    struct config *c;
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    c = load("[server]\nlisten = 127.0.0.1\nallow = 10.1.2.3/8\nlog-syslog = on\n"
             "[forward]\nupstream = Corp.Example.=dns.corp.example\nupstream = 2620:fe::fe\n"
             "attempt-timeout = 0.5\ntimeout = 2\n");
    assert_non_null(c);
    f = open_memstream(&buf, &len);
    config_dump(c, f);
    fclose(f);
    assert_non_null(strstr(buf, "\nlisten = 127.0.0.1:53\n"));
    assert_non_null(strstr(buf, "\nallow = 10.0.0.0/8\n"));
    assert_non_null(strstr(buf, "\nlog-syslog = yes\n"));
    assert_non_null(strstr(buf, "\nupstream = corp.example=dns.corp.example:53\n"));
    assert_non_null(strstr(buf, "\nupstream = [2620:fe::fe]:53\n"));
    assert_non_null(strstr(buf, "\nattempt-timeout = 500ms\n"));
    assert_non_null(strstr(buf, "\ntimeout = 2s\n"));
    assert_non_null(strstr(buf, "\nrefused-action = refuse\n"));
    /* Unset control socket: an empty value, no trailing blank. */
    assert_non_null(strstr(buf, "\ncontrol-socket =\n"));
    assert_non_null(strstr(buf, "\nmetrics-listen =\nuser =\ngroup =\n"));
    assert_non_null(strstr(buf, "\nstate-file =\nsave-interval = 10m\n"));
    assert_non_null(strstr(buf, "\n[probe]\nprobe-after-visits = 2\nprobe-on-start = yes\n"
                                "max-busy-probes = 16\nprobe-timeout = 4s\npersistence = 3d\ndamping = 1d\n"
                                "dot-fail-threshold = 3\ndot-fallback = availability\nmax-entries = 4096\n"));
    free(buf);
    config_free(c);

    /* Upstream options: only those away from the default, in a fixed order. */
    c = load(full_conf);
    assert_non_null(c);
    buf = NULL;
    f = open_memstream(&buf, &len);
    config_dump(c, f);
    fclose(f);
    {
        char want[512];
        assert_non_null(strstr(buf, "\ncontrol-socket = /run/dotward/control.sock\n"));
        assert_non_null(strstr(buf, "\nupstream = 9.9.9.9:53 tls=strict name=dns.quad9.net\n"));
        assert_non_null(strstr(buf, "\nupstream = corp.example.org=10.0.0.53:5300 tls=off kind=authoritative\n"));
        snprintf(want, sizeof(want), "\nupstream = [2620:fe::fe]:853 tls=strict name=dns.quad9.net ca=%s\n",
                 ca_path);
        assert_non_null(strstr(buf, want));
        assert_non_null(strstr(buf, "\nupstream = dns.quad9.net:53\n"));
        assert_non_null(strstr(buf, "\nupstream = _msdcs.corp=dc1.corp.example:5353 kind=authoritative\n"));
        assert_non_null(strstr(buf, "\nupstream = [2620:fe::9]:53\n"));
        assert_non_null(strstr(buf, "\nprobe-on-start = no\n"));
        assert_non_null(strstr(buf, "\npersistence = 365d\n"));
        assert_non_null(strstr(buf, "\nprobe-timeout = 100ms\n"));
        assert_non_null(strstr(buf, "\nmetrics-listen = [::1]:9153\nuser = dotward\ngroup = _dns-1\n"));
        assert_non_null(strstr(buf, "\nstate-file = /var/lib/dotward/probes.state\nsave-interval = 1d\n"));
    }
    free(buf);
    config_free(c);

    /* The file name in the first line is a comment that must not break the
     * dump: control bytes escaped, a long name cut to fit in a line. */
    {
        char name[400], *nl;
        size_t first;
        FILE *in;
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        memcpy(name, "/a\n[server]\nlisten=", 19);
        in = fopen("/dev/null", "r");
        assert_non_null(in);
        c = config_load_stream(in, name, NULL, stderr);
        fclose(in);
        assert_non_null(c);
        buf = NULL;
        f = open_memstream(&buf, &len);
        config_dump(c, f);
        fclose(f);
        nl = strchr(buf, '\n');
        assert_non_null(nl);
        first = (size_t)(nl - buf);
        assert_int_equal(first, CONFIG_LINE_MAX);
        assert_memory_equal(buf, "# dotward effective configuration from /a\\x0a[server]\\x0alisten=nnn", 67);
        assert_memory_equal(buf + first - 4, "n...", 4);
        free(buf);
        config_free(c);
    }
}

static void test_equal(void **state)
{
    struct config *a, *b;

    (void)state;
    a = load(full_conf);
    b = load(full_conf);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(config_equal(a, b));
    b->udp_sockets++;
    assert_false(config_equal(a, b));
    b->udp_sockets--;
    b->timeout = 29.5;
    assert_false(config_equal(a, b));
    b->timeout = a->timeout;
    net_addr_set_port(&b->listen[2], 1);
    assert_false(config_equal(a, b));
    net_addr_set_port(&b->listen[2], 5353);
    assert_true(config_equal(a, b));
    b->upstreams[3].port = 54;
    assert_false(config_equal(a, b));
    b->upstreams[3].port = 53;
    b->allow[0].bits = 9;
    assert_false(config_equal(a, b));
    b->allow[0].bits = 8;
    b->n_upstreams--;
    assert_false(config_equal(a, b));
    b->n_upstreams++;
    b->upstreams[1].zone[0] = 'x';
    assert_false(config_equal(a, b));
    b->upstreams[1].zone[0] = 'c';
    assert_true(config_equal(a, b));

    /* Each new field counts. */
    b->upstreams[3].tls = CONFIG_TLS_OFF;
    assert_false(config_equal(a, b));
    b->upstreams[3].tls = CONFIG_TLS_OPPORTUNISTIC;
    b->upstreams[0].auth_name[0] = 'x';
    assert_false(config_equal(a, b));
    b->upstreams[0].auth_name[0] = 'd';
    free(b->upstreams[2].ca_file);
    b->upstreams[2].ca_file = NULL;
    assert_false(config_equal(a, b));
    b->upstreams[2].ca_file = strdup(a->upstreams[2].ca_file);
    assert_non_null(b->upstreams[2].ca_file);
    b->upstreams[4].authoritative = false;
    assert_false(config_equal(a, b));
    b->upstreams[4].authoritative = true;
    assert_true(config_equal(a, b));
    b->control_socket[1] = 'x';
    assert_false(config_equal(a, b));
    b->control_socket[1] = 'r';
    free(b->control_socket);
    b->control_socket = NULL;
    assert_false(config_equal(a, b));
    assert_false(config_equal(b, a));
    b->control_socket = strdup(a->control_socket);
    assert_true(config_equal(a, b));
    b->probe_on_start = true;
    assert_false(config_equal(a, b));
    b->probe_on_start = false;
    b->damping = 2;
    assert_false(config_equal(a, b));
    b->damping = 1;
    b->max_entries = 17;
    assert_false(config_equal(a, b));
    b->max_entries = 16;
    assert_true(config_equal(a, b));
    b->metrics_enabled = false;
    assert_false(config_equal(a, b));
    b->metrics_enabled = true;
    net_addr_set_port(&b->metrics_listen, 9154);
    assert_false(config_equal(a, b));
    net_addr_set_port(&b->metrics_listen, 9153);
    assert_true(config_equal(a, b));
    b->user[0] = 'x';
    assert_false(config_equal(a, b));
    b->user[0] = 'd';
    b->group[0] = 'x';
    assert_false(config_equal(a, b));
    b->group[0] = '_';
    free(b->state_file);
    b->state_file = NULL;
    assert_false(config_equal(a, b));
    b->state_file = strdup(a->state_file);
    assert_true(config_equal(a, b));
    b->save_interval = 10;
    assert_false(config_equal(a, b));
    b->save_interval = a->save_interval;
    assert_true(config_equal(a, b));
    /* Two unset addresses are equal whatever the (unused) field holds. */
    a->metrics_enabled = b->metrics_enabled = false;
    net_addr_set_port(&b->metrics_listen, 1);
    assert_true(config_equal(a, b));
    config_free(a);
    config_free(b);
}

/* ---- durations ---- */

static void test_durations(void **state)
{
    static const struct { const char *in; double want; } ok[] = {
        { "0", 0 }, { "0s", 0 }, { "1", 1 }, { "2.5", 2.5 }, { "2.5s", 2.5 }, { "250ms", 0.25 },
        { "800ms", 0.8 }, { "0.5ms", 0.0005 }, { "10m", 600 }, { "1.5m", 90 }, { "1h", 3600 },
        { "0.5h", 1800 }, { "3d", 259200 }, { ".5", 0.5 }, { "0.000001", 0.000001 },
        { "0.0000001h", 0.00036 }, { "007s", 7 }, { "1.000000000000s", 1 }, { "10000000d", 864e9 },
    };
    static const char *const bad[] = {
        "", "s", "ms", ".", "1.", "-1", "+1", "1e3", "1 s", " 1", "1s ", "1sec", "1S", "1us", "inf",
        "nan", "0x10", "1..2", "1.2.3", "1ms5", "0.0000001", "0.0001ms", "10000001d", "1234567890",
        "1.0000000000001",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        double v = config_parse_duration(ok[i].in);
        if (v != ok[i].want)
            fail_msg("'%s' -> %.17g, want %.17g", ok[i].in, v, ok[i].want);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_duration(bad[i]) != -1)
            fail_msg("'%s' should be invalid", bad[i]);
    assert_true(config_parse_duration(NULL) == -1);
}

static void test_duration_format(void **state)
{
    static const struct { double v; const char *want; } fmt[] = {
        { 0, "0s" }, { 0.25, "250ms" }, { 0.8, "800ms" }, { 0.01, "10ms" }, { 0.0005, "0.0005s" },
        { 0.000001, "0.000001s" }, { 0.0105, "0.0105s" }, { 1, "1s" }, { 1.5, "1.5s" }, { 2.5, "2.5s" },
        { 59, "59s" }, { 60, "1m" }, { 90, "90s" }, { 600, "10m" }, { 3600, "1h" }, { 5400, "90m" },
        { 86400, "1d" }, { 90000, "25h" }, { 3.6, "3.6s" },
    };
    char buf[64];
    size_t i;
    unsigned long long us;

    (void)state;
    for (i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        config_format_duration(fmt[i].v, buf, sizeof(buf));
        if (strcmp(buf, fmt[i].want) != 0)
            fail_msg("%.17g -> '%s', want '%s'", fmt[i].v, buf, fmt[i].want);
        assert_true(config_parse_duration(buf) == fmt[i].v);
    }
    /* Any whole number of microseconds prints as text that reads back exactly. */
    for (us = 1; us < 4000000000ull; us = us * 3 + 7) {
        double v = (double)us / 1e6;
        config_format_duration(v, buf, sizeof(buf));
        if (config_parse_duration(buf) != v)
            fail_msg("%llu us -> '%s' -> %.17g", us, buf, config_parse_duration(buf));
    }
}

/* The committed example file is what the option table generates, and it
 * loads to the defaults. meson runs tests from the build directory, which
 * __FILE__ is relative to; DOTWARD_SOURCE_ROOT overrides. */
static void test_example_file(void **state)
{
    const char *suffix = "test/unit/test_config.c";
    const char *root = getenv("DOTWARD_SOURCE_ROOT");
    char path[1024], *gen = NULL, *file = NULL;
    size_t gen_len = 0, file_len = 0, n;
    struct config *c, *d;
    FILE *f;

    (void)state;
    if (root) {
        snprintf(path, sizeof(path), "%s/config/dotward.conf.example", root);
    } else {
        n = strlen(__FILE__) - strlen(suffix);
        assert_string_equal(&__FILE__[n], suffix);
        snprintf(path, sizeof(path), "%.*sconfig/dotward.conf.example", (int)n, __FILE__);
    }
    f = fopen(path, "r");
    if (!f)
        fail_msg("%s: %s (set DOTWARD_SOURCE_ROOT when not run by meson test)", path, strerror(errno));
    {
        char chunk[4096];
        FILE *m = open_memstream(&file, &file_len);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            fwrite(chunk, 1, n, m);
        fclose(m);
        fclose(f);
    }
    f = open_memstream(&gen, &gen_len);
    config_write_example(f);
    fclose(f);
    if (strcmp(gen, file) != 0)
        fail_msg("%s is stale: regenerate it with config_write_example()", path);

    c = config_load(path, NULL, stderr);
    assert_non_null(c);
    d = config_load(NULL, NULL, stderr);
    assert_non_null(d);
    assert_true(config_equal(c, d));
    check_defaults(c);
    config_free(c);
    config_free(d);
    free(gen);
    free(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_value_forms),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_control_socket),
        cmocka_unit_test(test_metrics_listen),
        cmocka_unit_test(test_user_group),
        cmocka_unit_test(test_state_file),
        cmocka_unit_test(test_value_rules),
        cmocka_unit_test(test_upstream_options),
        cmocka_unit_test(test_zone_and_host_syntax),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_many_errors),
        cmocka_unit_test(test_cannot_open),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_dump_text),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_example_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
