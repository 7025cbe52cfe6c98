/* test/system/probe_cli.c: run DoT probes against one IP and print what each
 * saw, one line per probe. Used by test_prober.py; handy by hand too:
 *   probe_cli [-t SECONDS] [-z ZONE] [-n COUNT] [-c CAFILE] [-s] [-S NAME] [-R] [-a]
 *             [-x SECONDS [-F]] [-v] IP [PORT]
 * -n COUNT probes run one after another on the same table entry, so the
 * second one offers the session ticket of the first (resumed=1). -a takes
 * over each successful probe's connection (prober_set_adopt_cb) and sends
 * one more query on it. -x stops after SECONDS with the probe still running,
 * and frees the prober (or, with -F, forgets the entry first), to exercise
 * the cancel paths under the sanitizers. */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "lib/log.h"
#include "lib/net.h"
#include "probe/prober.h"
#include "lib/rng.h"
#include "probe/table.h"
#include "lib/tls.h"
#include "lib/wire.h"

struct cli {
    struct ev_loop *loop;
    struct probe_table *tab;
    struct net_addr ip;
    const char *zone;
    int left;      /* probes still to start */
    int done;
    ev_timer next; /* starts the next probe outside the result callback */
    bool adopt;    /* -a: reuse the probe's connection for one more query */
    bool forget;   /* -F: at the -x stop, forget the entry (cancels the probe) */
    struct prober *prober;
};

static void cli_stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cli *c = w->data;
    struct probe_entry *e = probe_table_find(c->tab, &c->ip);
    printf("stopped: status=%s running=%u\n", e ? probe_status_str(e->status) : "-",
           prober_running(c->prober));
    if (c->forget) {
        probe_table_forget(c->tab, &c->ip);
        printf("forgotten: entries=%zu running=%u\n", probe_table_size(c->tab), prober_running(c->prober));
    }
    ev_break(loop, EVBREAK_ALL);
}

/* Waits (poll, at most 2 s) until the socket is ready for what TLS wants. */
static int cli_wait(int fd, int want)
{
    struct pollfd pfd = { .fd = fd, .events = want == TLS_IO_WANT_WRITE ? POLLOUT : POLLIN };
    return poll(&pfd, 1, 2000) == 1 ? 0 : -1;
}

/* -a: an A query for the zone over the adopted connection, so the test can
 * see that a handed-over connection is usable. Blocking is fine in a tool. */
static void cli_adopt(void *arg, const struct probe_entry *e, int fd, struct tls_conn *conn)
{
    struct cli *c = arg;
    uint8_t q[2 + WIRE_HDR_LEN + WIRE_MAX_NAME + 4] = { 0 }, a[2 + 4096];
    int nlen = wire_name_from_str(c->zone, q + 2 + WIRE_HDR_LEN);
    size_t len = WIRE_HDR_LEN + (size_t)(nlen > 0 ? nlen : 0) + 4;
    wire_put16(q + 2, 0x4242);
    wire_put16(q + 4, WIRE_RD);
    wire_put16(q + 6, 1);
    wire_put16(q + 2 + len - 4, 1);  /* A */
    wire_put16(q + 2 + len - 2, WIRE_CLASS_IN);
    wire_put16(q, (uint16_t)len);
    int r;
    while ((r = tls_write(conn, q, len + 2)) < 0 && (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE))
        if (cli_wait(fd, r) < 0)
            break;
    size_t got = 0;
    while (r > 0 && (got < 2 || got < 2u + wire_get16(a))) {
        r = tls_read(conn, a + got, sizeof a - got);
        if (r > 0)
            got += (size_t)r;
        else if ((r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) && cli_wait(fd, r) == 0)
            r = 1;
    }
    struct wire_msg m;
    if (got >= 2 && wire_parse_response(a + 2, got - 2, &m) == WIRE_OK && m.id == 0x4242)
        printf("adopted: answer id=%u rcode=%u\n", m.id, WIRE_RCODE(m.flags));
    else
        printf("adopted: no answer (%s)\n", tls_error(conn));
    tls_shutdown(conn);
    tls_conn_free(conn);
    close(fd);
}

static void cli_result(void *arg, const struct probe_entry *e, const struct prober_result *r)
{
    struct cli *c = arg;
    c->done++;
    printf("probe %d: outcome=%s status=%s version=%s cipher=%s alpn=%s verified=%d resumed=%d "
           "rcode=%u elapsed=%.3f reason=\"%s\"\n",
           c->done, probe_outcome_str(r->outcome), probe_status_str(e->status),
           r->tls_version ? r->tls_version : "-", r->tls_cipher ? r->tls_cipher : "-",
           r->alpn ? r->alpn : "-", r->verified, r->resumed, r->rcode, r->elapsed, r->reason);
    fflush(stdout);
    if (c->left > 0) {
        ev_timer_set(&c->next, 0.05, 0.);
        ev_timer_start(c->loop, &c->next);
    } else {
        ev_break(c->loop, EVBREAK_ALL);
    }
}

static void cli_next_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cli *c = w->data;
    c->left--;
    if (probe_table_request(c->tab, &c->ip, c->zone, ev_now(loop), true) < 0) {
        fprintf(stderr, "probe_cli: could not start probe %d\n", c->done + 1);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void cli_guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    fprintf(stderr, "probe_cli: no result in time (prober deadline broken?)\n");
    ev_break(loop, EVBREAK_ALL);
}

static void usage(void)
{
    fprintf(stderr, "usage: probe_cli [-t SECONDS] [-z ZONE] [-n COUNT] [-c CAFILE] [-s] [-S NAME] [-R] [-a]\n"
                    "                 [-x SECONDS [-F]] [-v] IP [PORT]\n"
                    "  -c/-s  check the certificate against CAFILE / the system store (record only)\n"
                    "  -S     strict: the certificate must verify and match NAME (sent as SNI)\n"
                    "  -R     RD=0 in the probe query\n"
                    "  -a     after an OK probe, send one more query over the same connection\n"
                    "  -x/-F  stop after SECONDS and free the prober / forget the entry first\n");
}

int main(int argc, char **argv)
{
    struct cli c = { .zone = "." };
    struct tls_ctx_opts to = { .mode = TLS_MODE_OPPORTUNISTIC };
    struct prober_opts po;
    struct probe_policy pol;
    int count = 1, ch, rc = 1;
    double timeout = 4.0, stop_after = 0;
    prober_opts_defaults(&po);
    probe_policy_defaults(&pol);
    log_setup(LOG_LVL_WARN, false);
    while ((ch = getopt(argc, argv, "t:z:n:c:sS:Rax:Fv")) != -1) {
        switch (ch) {
        case 't': timeout = atof(optarg); break;
        case 'z': c.zone = optarg; break;
        case 'n': count = atoi(optarg); break;
        case 'c': to.ca_file = optarg; break;
        case 's': to.system_ca = true; break;
        case 'S':
            to.mode = TLS_MODE_STRICT;
            po.auth_name = optarg;
            break;
        case 'R': po.rd = false; break;
        case 'a': c.adopt = true; break;
        case 'x': stop_after = atof(optarg); break;
        case 'F': c.forget = true; break;
        case 'v': log_set_level(LOG_LVL_DEBUG); break;
        default: usage(); return 2;
        }
    }
    if (optind >= argc || argc - optind > 2 || count < 1 || timeout <= 0) {
        usage();
        return 2;
    }
    if (net_addr_parse(argv[optind], 853, &c.ip) < 0) {
        fprintf(stderr, "probe_cli: %s is not an IP address\n", argv[optind]);
        return 2;
    }
    if (optind + 1 < argc)
        po.port = (uint16_t)atoi(argv[optind + 1]);
    pol.probe_timeout = timeout;
    pol.probe_after_visits = 1;

    char err[256];
    struct rng rng;
    struct tls_ctx *tls = NULL;
    struct prober *p = NULL;
    ev_timer guard, stop;
    rng_init(&rng);
    c.loop = ev_loop_new(EVFLAG_AUTO);
    c.tab = probe_table_new(&pol, rng_u32(&rng));
    tls = tls_ctx_new(&to, err, sizeof err);
    if (!c.loop || !c.tab || !tls) {
        fprintf(stderr, "probe_cli: setup: %s\n", tls ? "out of memory" : err);
        goto fail;
    }
    p = prober_new(c.loop, c.tab, tls, &rng, &po);
    if (!p)
        goto fail;
    c.prober = p;
    prober_set_result_cb(p, cli_result, &c);
    if (c.adopt)
        prober_set_adopt_cb(p, cli_adopt, &c);
    ev_timer_init(&c.next, cli_next_cb, 0., 0.);
    c.next.data = &c;
    ev_timer_init(&guard, cli_guard_cb, count * (timeout + 1.0) + 5.0, 0.);
    ev_timer_start(c.loop, &guard);
    ev_timer_init(&stop, cli_stop_cb, stop_after, 0.);
    stop.data = &c;
    if (stop_after > 0)
        ev_timer_start(c.loop, &stop);

    c.left = count - 1;
    if (!probe_table_visit(c.tab, &c.ip, c.zone, ev_now(c.loop)) || probe_table_running(c.tab) != 1) {
        /* The first probe may already have ended (refused at connect). */
        if (c.done == 0) {
            fprintf(stderr, "probe_cli: probe did not start\n");
            goto fail;
        }
    }
    if (c.done < count)
        ev_run(c.loop, 0);
    ev_timer_stop(c.loop, &guard);
    ev_timer_stop(c.loop, &stop);
    ev_timer_stop(c.loop, &c.next);
    rc = c.done == count || stop_after > 0 ? 0 : 1;
    if (stop_after > 0) {
        prober_free(p);
        p = NULL;
        struct probe_entry *e = probe_table_find(c.tab, &c.ip);
        printf("after free: status=%s\n", e ? probe_status_str(e->status) : "-");
    }
fail:
    prober_free(p);
    probe_table_free(c.tab);
    tls_ctx_free(tls);
    if (c.loop)
        ev_loop_destroy(c.loop);
    return rc;
}
