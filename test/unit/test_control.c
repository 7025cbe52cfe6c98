/* test/unit/test_control.c: the control socket's server side in-process: a
 * bare struct proxy (loop, routes, DoT table with a fake scheduler), a real
 * Unix socket in a temp dir, and a client that runs the loop while it waits.
 * Covers what the system tests cannot set up: JSON escaping of hostile
 * failure reasons, the text dump being exactly probe_table_dump(), a proxy
 * without a DoT table, and control_free() from inside the reload hook. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/control.h"
#include "lib/acceptor.h"
#include "lib/log.h"
#include "proxy/proxy.h"
#include "probe/table.h"
#include "proxy/route.h"
#include "proxy/view.h"
#include "config/config.h"

struct fixture {
    char dir[64], path[128];
    struct ev_loop *loop;
    struct fd_waiters *waiters;
    struct proxy *px;
    struct probe_table *probes;
    struct probe_entry *started[8];
    unsigned nstarted;
    struct control *ctl;
    unsigned reloads;
    bool free_in_reload;
};

static void fake_start(void *arg, struct probe_entry *e)
{
    struct fixture *f = arg;
    if (f->nstarted < 8)
        f->started[f->nstarted++] = e;
}

static void fake_cancel(void *arg, struct probe_entry *e)
{
    (void)arg;
    (void)e;
}

static const struct probe_sched fake_ops = { fake_start, fake_cancel };

static void reload_hook(void *arg)
{
    struct fixture *f = arg;
    f->reloads++;
    if (f->free_in_reload) {
        control_free(f->ctl);
        f->ctl = NULL;
    }
}

static struct net_addr addr(const char *s)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(s, 53, &a), 0);
    return a;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/dwctl-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/c.sock", f->dir);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->waiters = fd_waiters_new(f->loop);
    assert_non_null(f->waiters);
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    f->probes = probe_table_new(&pol, 1);
    probe_table_set_sched(f->probes, &fake_ops, f, ev_now(f->loop));
    f->px = proxy_new(f->loop, f->probes, f->waiters);
    assert_non_null(f->px);
    struct route_table *rt = route_table_new(f->px->health);
    struct net_addr a = addr("192.0.2.1");
    struct route_server *srv = route_table_add_server(rt, &a, SERVER_TLS_OPPORTUNISTIC, NULL, true, true);
    assert_non_null(srv);
    assert_int_equal(route_table_add(rt, ".", srv), 0);
    struct config *cfg = config_load(NULL, NULL, stderr);
    assert_non_null(cfg);
    struct view *v = view_new(cfg, rt);
    assert_non_null(v);
    proxy_swap(f->px, v, NULL, 0);
    struct control_hooks h = { .reload = reload_hook, .arg = f };
    f->ctl = control_new(f->px, f->waiters, f->path, &h);
    assert_non_null(f->ctl);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    control_free(f->ctl);
    proxy_free(f->px);
    if (f->probes)
        probe_table_free(f->probes);
    fd_waiters_free(f->waiters);
    ev_loop_destroy(f->loop);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Sends `line`, runs the loop until the server closes; returns the answer (malloc'd). */
static char *ask_raw(struct fixture *f, const char *data, size_t len)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    strcpy(sun.sun_path, f->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < 5000; i++) {
        ev_run(f->loop, EVRUN_NOWAIT);
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r == 0)
            break;
        if (r > 0) {
            n += (size_t)r;
            if (cap - n < 1024)
                assert_non_null(buf = realloc(buf, cap *= 2));
            continue;
        }
        assert_true(errno == EAGAIN);
        poll(NULL, 0, 1);
    }
    close(fd);
    buf[n] = 0;
    return buf;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static char *ask(struct fixture *f, const char *line)
{
    return ask_raw(f, line, strlen(line));
}

/* An entry made Bad by a failure whose text is hostile to JSON and to lines. */
static const struct probe_entry *hostile_entry(struct fixture *f)
{
    struct net_addr a = addr("192.0.2.1");
    double now = ev_now(f->loop);
    assert_int_equal(probe_table_request(f->probes, &a, ".", now, false), 0);
    assert_int_equal(f->nstarted, 1);
    probe_table_probe_done(f->probes, f->started[0], PROBE_TLS_FAILED,
                           "q\"b\\s\nnl\ttab\x01 \xff\xc3 caf\xc3\xa9 \xe2\x82\xac", false, now);
    const struct probe_entry *e = probe_table_find(f->probes, &a);
    assert_non_null(e);
    assert_int_equal(e->status, PROBE_BAD);
    return e;
}

static void test_json_escaping(void **state)
{
    struct fixture *f = *state;
    hostile_entry(f);
    char *out = ask(f, "dump-probes --json\n");
    assert_true(starts_with(out, "ok\n[\n{\"ip\":\"192.0.2.1\",\"domain\":\".\","));
    /* quote, backslash, newline, tab, control byte escaped; invalid UTF-8
     * (a lone 0xff, a truncated 0xc3) replaced; valid UTF-8 kept */
    assert_non_null(strstr(out, "\"reason\":\"tls-failed: q\\\"b\\\\s\\nnl\\ttab\\u0001 \\ufffd\\ufffd caf\xc3\xa9 "
                                "\xe2\x82\xac\""));
    assert_non_null(strstr(out, "\"status\":\"bad\""));
    assert_non_null(strstr(out, "\"last_outcome\":\"tls-failed\""));
    assert_non_null(strstr(out, "\"last_response\":null"));
    assert_non_null(strstr(out, "\"failures\":{\"connect-refused\":0,"));
    assert_non_null(strstr(out, "\"tls-failed\":1"));
    assert_non_null(strstr(out, ",\"local-error\":0,\"reset\":0}"));
    assert_true(ends_with(out, "}}\n]\n"));
    /* no raw control character anywhere in the JSON */
    for (const char *p = out + 3; *p; p++)
        assert_true((unsigned char)*p >= 0x20 || *p == '\n');
    free(out);
}

static void test_text_dump_is_probe_table_dump(void **state)
{
    struct fixture *f = *state;
    hostile_entry(f);
    char *want = NULL;
    size_t wlen = 0;
    FILE *m = open_memstream(&want, &wlen);
    assert_int_equal(probe_table_dump(f->probes, m), 0);
    fclose(m);
    char *out = ask(f, "dump-probes\n");
    assert_true(starts_with(out, "ok\n"));
    assert_string_equal(out + 3, want);
    free(out);
    free(want);
}

static void test_status_and_stats(void **state)
{
    struct fixture *f = *state;
    hostile_entry(f);
    char *out = ask(f, "status\n");
    assert_non_null(strstr(out, "\nupstream: zone=. addr=192.0.2.1:53 tls=opportunistic srtt_ms=- dot_srtt_ms=- fails=0 "));
    assert_non_null(strstr(out, " dot=bad dot_expiry="));
    /* the reason's newline does not break the line */
    assert_non_null(strstr(out, "dot_reason=\"tls-failed: q\"b\\s nl\ttab"));
    free(out);
    out = ask(f, "stats\n");
    assert_non_null(strstr(out, "\nprobes_started=1\nprobes_ok=0\n"));
    assert_non_null(strstr(out, "\nprobes_failed_tls_failed=1\n"));
    assert_non_null(strstr(out, "\nprobes_failed_reset=0\n"));
    assert_non_null(strstr(out, "\nprobe_entries_bad=1\n"));
    free(out);
}

static void test_empty_dot_table(void **state)
{
    struct fixture *f = *state;
    char *out = ask(f, "stats\n");
    assert_non_null(strstr(out, "\nprobes_started=0\n"));
    assert_non_null(strstr(out, "\nprobe_entries_bad=0\n"));
    free(out);
    out = ask(f, "dump-probes --json\n");
    assert_string_equal(out, "ok\n[]\n");
    free(out);
    out = ask(f, "dump-probes\n");
    assert_true(starts_with(out, "ok\n; DoT probing map follows\n; ip\t"));
    assert_non_null(strstr(out, "; 0 Busy entries\n"));
    free(out);
    out = ask(f, "status\n");
    assert_non_null(strstr(out, "\ndot: on, 0 entries (good 0, bad 0, busy 0, unknown 0)"));
    assert_non_null(strstr(out, " dot=unseen\n"));
    free(out);
    out = ask(f, "forget all\n");
    assert_string_equal(out, "ok\nforgot 0 entries\n");
    free(out);
}

static void test_probe_forget(void **state)
{
    struct fixture *f = *state;
    char *out = ask(f, "probe 192.0.2.1\n");
    assert_string_equal(out, "ok\nprobe of 192.0.2.1 requested; status now busy\n");
    assert_int_equal(f->nstarted, 1);
    free(out);
    out = ask(f, "probe [2001:db8::1]\n");
    assert_string_equal(out, "error: unknown upstream IP 2001:db8::1\n");
    free(out);
    out = ask(f, "probe 192.0.2.1:53\n");
    assert_string_equal(out, "error: '192.0.2.1:53' is not an IP address\n");
    free(out);
    out = ask(f, "forget 192.0.2.1\n");
    assert_string_equal(out, "ok\nforgot 192.0.2.1\n");
    free(out);
    out = ask(f, "forget 192.0.2.1\n");
    assert_string_equal(out, "error: unknown IP 192.0.2.1: not in the DoT table\n");
    free(out);
    out = ask(f, "forget all\n");
    assert_string_equal(out, "ok\nforgot 0 entries\n");
    free(out);
}

static void test_free_inside_reload_hook(void **state)
{
    struct fixture *f = *state;
    f->free_in_reload = true;
    char *out = ask(f, "reload\n");
    assert_int_equal(f->reloads, 1);
    assert_null(f->ctl);
    assert_string_equal(out, "ok\nreload started; the result is logged\n");
    free(out);
    struct stat st;
    assert_int_equal(stat(f->path, &st), -1); /* unlinked */
}

static void test_line_limits(void **state)
{
    struct fixture *f = *state;
    char line[1100];
    memset(line, ' ', sizeof line);
    memcpy(line, "help", 4);
    line[1023] = '\n';
    char *out = ask_raw(f, line, 1024);
    assert_true(starts_with(out, "ok\nstats"));
    free(out);
    line[1023] = ' ';
    line[1024] = '\n';
    out = ask_raw(f, line, 1025);
    assert_string_equal(out, "error: command line too long (at most 1024 bytes)\n");
    free(out);
    out = ask(f, "nope\n");
    assert_string_equal(out, "error: unknown command 'nope' (try help)\n");
    free(out);
}

static void test_path_rules(void **state)
{
    struct fixture *f = *state;
    /* a live socket (ours) is not taken over */
    assert_null(control_new(f->px, f->waiters, f->path, NULL));
    /* a regular file is not replaced */
    char file[160];
    snprintf(file, sizeof file, "%s/file", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_null(control_new(f->px, f->waiters, file, NULL));
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    unlink(file);
    /* mode 0660, and the file goes with control_free */
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    control_free(f->ctl);
    f->ctl = NULL;
    assert_int_equal(stat(f->path, &st), -1);
    /* too long a path */
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    assert_null(control_new(f->px, f->waiters, longp, NULL));
}

int main(void)
{
    log_setup(LOG_LVL_ERR, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_dump_is_probe_table_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_dot_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_reload_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
