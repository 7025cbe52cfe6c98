/* lib/resolve.c: c-ares on libev (sock_state_cb drives one ev_io per socket). */
#include "lib/resolve.h"

#include <ares.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"

#define RESOLVE_TIMEOUT_MS 2000
#define RESOLVE_TRIES 2

static int init_channel(ares_channel *ch, const char *resolv_conf, struct ares_options *o, int mask,
                        char *err, size_t errsz)
{
    static int lib_ready;
    /* Part of process set-up, done once; not per-loop state. */
    if (!lib_ready) {
        int r = ares_library_init(ARES_LIB_INIT_ALL);
        if (r != ARES_SUCCESS) {
            snprintf(err, errsz, "c-ares: %s", ares_strerror(r));
            return -1;
        }
        lib_ready = 1;
    }
    /* c-ares quietly falls back to 127.0.0.1 for a missing file: say so instead. */
    FILE *f = fopen(resolv_conf, "r");
    if (!f) {
        snprintf(err, errsz, "%s: cannot open: %s", resolv_conf, strerror(errno));
        return -1;
    }
    fclose(f);
    o->resolvconf_path = (char *)resolv_conf;
    o->lookups = (char *)"fb";
    int r = ares_init_options(ch, o, mask | ARES_OPT_RESOLVCONF | ARES_OPT_LOOKUPS);
    if (r != ARES_SUCCESS) {
        snprintf(err, errsz, "%s: %s", resolv_conf, ares_strerror(r));
        return -1;
    }
    return 0;
}

int resolve_nameservers(const char *path, struct net_addr **out, size_t *n, char *err, size_t errsz)
{
    ares_channel ch;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    if (init_channel(&ch, path, &o, 0, err, errsz) < 0)
        return -1;
    struct ares_addr_port_node *list = NULL;
    int r = ares_get_servers_ports(ch, &list);
    if (r != ARES_SUCCESS) {
        snprintf(err, errsz, "%s: %s", path, ares_strerror(r));
        ares_destroy(ch);
        return -1;
    }
    size_t count = 0;
    for (struct ares_addr_port_node *s = list; s; s = s->next)
        count++;
    struct net_addr *a = calloc(count ? count : 1, sizeof *a);
    if (!a) {
        ares_free_data(list);
        ares_destroy(ch);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (struct ares_addr_port_node *s = list; s; s = s->next) {
        uint16_t port = s->udp_port ? (uint16_t)s->udp_port : 53;
        if (s->family == AF_INET) {
            a[k].u.in4.sin_family = AF_INET;
            memcpy(&a[k].u.in4.sin_addr, &s->addr.addr4, 4);
            a[k].len = sizeof a[k].u.in4;
        } else if (s->family == AF_INET6) {
            a[k].u.in6.sin6_family = AF_INET6;
            memcpy(&a[k].u.in6.sin6_addr, &s->addr.addr6, 16);
            a[k].len = sizeof a[k].u.in6;
        } else {
            continue;
        }
        net_addr_set_port(&a[k], port);
        k++;
    }
    ares_free_data(list);
    ares_destroy(ch);
    *out = a;
    *n = k;
    return 0;
}

struct watch {
    ev_io io;
    struct resolver *r;
    struct watch *next;
};

struct resolver {
    struct ev_loop *loop;
    ares_channel ch;
    ev_timer timer;
    struct watch *watches;
    struct resolve_result *results;
    uint16_t *ports;
    size_t n, outstanding;
    resolve_done_cb cb;
    void *arg;
    struct lookup {
        struct resolver *r;
        size_t index;
    } *lookups;
};

static void rearm(struct resolver *r)
{
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
    ev_timer_stop(r->loop, &r->timer);
    if (tvp) {
        ev_timer_set(&r->timer, (double)tv.tv_sec + (double)tv.tv_usec / 1e6, 0);
        ev_timer_start(r->loop, &r->timer);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct watch *wt = (struct watch *)w;
    struct resolver *r = wt->r;
    (void)loop;
    ares_process_fd(r->ch, (revents & EV_READ) ? w->fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? w->fd : ARES_SOCKET_BAD);
    if (r->outstanding)
        rearm(r);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resolver *r = w->data;
    (void)loop;
    (void)revents;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    if (r->outstanding)
        rearm(r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct watch **pp = &r->watches;
    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    struct watch *w = *pp;
    if (!readable && !writable) {
        if (w) {
            ev_io_stop(r->loop, &w->io);
            *pp = w->next;
            free(w);
        }
        return;
    }
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return; /* the lookup times out instead */
        w->r = r;
        w->next = r->watches;
        r->watches = w;
        ev_init(&w->io, io_cb);
    }
    ev_io_stop(r->loop, &w->io);
    ev_io_set(&w->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(r->loop, &w->io);
}

static void finish_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct lookup *lk = arg;
    struct resolver *r = lk->r;
    struct resolve_result *res = &r->results[lk->index];
    (void)timeouts;
    if (status == ARES_SUCCESS && ai) {
        size_t count = 0;
        for (struct ares_addrinfo_node *n = ai->nodes; n; n = n->ai_next)
            count++;
        res->addrs = calloc(count ? count : 1, sizeof *res->addrs);
        for (struct ares_addrinfo_node *n = ai->nodes; res->addrs && n; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > sizeof res->addrs[0].u.ss)
                continue;
            struct net_addr *a = &res->addrs[res->n];
            memcpy(&a->u.ss, n->ai_addr, n->ai_addrlen);
            a->len = n->ai_addrlen;
            net_addr_set_port(a, r->ports[lk->index]);
            bool dup = false;
            for (size_t i = 0; i < res->n; i++)
                dup |= net_addr_equal(&res->addrs[i], a);
            if (!dup)
                res->n++;
        }
    }
    if (res->n == 0)
        snprintf(res->error, sizeof res->error, "%s",
                 status == ARES_SUCCESS ? "no addresses" : ares_strerror(status));
    if (ai)
        ares_freeaddrinfo(ai);
    if (--r->outstanding == 0) {
        /* Report from a fresh callback: c-ares is still on the stack here. */
        ev_timer_stop(r->loop, &r->timer);
        ev_timer_init(&r->timer, finish_cb, 0, 0);
        ev_timer_start(r->loop, &r->timer);
    }
}

static void resolver_free(struct resolver *r)
{
    ev_timer_stop(r->loop, &r->timer);
    ares_destroy(r->ch); /* cancels lookups, closes sockets via sock_state_cb */
    while (r->watches) {
        struct watch *w = r->watches;
        r->watches = w->next;
        ev_io_stop(r->loop, &w->io);
        free(w);
    }
    free(r->lookups);
    free(r->ports);
    free(r);
}

static void finish_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resolver *r = w->data;
    (void)loop;
    (void)revents;
    struct resolve_result *res = r->results;
    size_t n = r->n;
    resolve_done_cb cb = r->cb;
    void *arg = r->arg;
    r->results = NULL;
    resolver_free(r);
    cb(arg, res, n);
}

struct resolver *resolve_start(struct ev_loop *loop, const char *resolv_conf, const char *const *names,
                               const uint16_t *ports, size_t n, resolve_done_cb cb, void *arg)
{
    struct resolver *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->cb = cb;
    r->arg = arg;
    r->n = n;
    r->results = calloc(n ? n : 1, sizeof *r->results);
    r->ports = calloc(n ? n : 1, sizeof *r->ports);
    r->lookups = calloc(n ? n : 1, sizeof *r->lookups);
    if (!r->results || !r->ports || !r->lookups) {
        free(r->results);
        free(r->ports);
        free(r->lookups);
        free(r);
        return NULL;
    }
    ev_init(&r->timer, timer_cb);
    r->timer.data = r;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    o.timeout = RESOLVE_TIMEOUT_MS;
    o.tries = RESOLVE_TRIES;
    char err[256];
    if (init_channel(&r->ch, resolv_conf, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES,
                     err, sizeof err) < 0) {
        log_err("%s", err);
        free(r->results);
        free(r->ports);
        free(r->lookups);
        free(r);
        return NULL;
    }
    r->outstanding = n + 1; /* held until every lookup is started */
    for (size_t i = 0; i < n; i++) {
        r->ports[i] = ports[i];
        r->lookups[i].r = r;
        r->lookups[i].index = i;
        struct ares_addrinfo_hints hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        ares_getaddrinfo(r->ch, names[i], NULL, &hints, gai_cb, &r->lookups[i]);
    }
    if (--r->outstanding == 0) {
        ev_timer_init(&r->timer, finish_cb, 0, 0);
        ev_timer_start(loop, &r->timer);
    } else {
        rearm(r);
    }
    return r;
}

void resolve_cancel(struct resolver *r)
{
    if (!r)
        return;
    /* ares_destroy calls every gai_cb with ARES_EDESTRUCTION: keep them from finishing. */
    r->outstanding += r->n + 1;
    struct resolve_result *res = r->results;
    size_t n = r->n;
    resolver_free(r);
    resolve_results_free(res, n);
}

void resolve_results_free(struct resolve_result *results, size_t n)
{
    for (size_t i = 0; results && i < n; i++)
        free(results[i].addrs);
    free(results);
}
