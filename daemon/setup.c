/* daemon/setup.c: from config to route table. */
#include "daemon/setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/resolve.h"
#include "proxy/route.h"
#include "proxy/tls_profile.h"

struct setup {
    struct ev_loop *loop;
    const struct config *cfg;
    struct setup_env env;
    setup_done_cb cb;
    void *arg;
    struct resolver *resolver;
    size_t *name_index;        /* config upstream index of each looked-up name */
};

static bool is_listen_addr(const struct config *cfg, const struct net_addr *a)
{
    for (size_t i = 0; i < cfg->n_listen; i++)
        if (net_addr_equal(&cfg->listen[i], a))
            return true;
    return false;
}

static enum server_tls tls_policy(enum config_tls t)
{
    switch (t) {
    case CONFIG_TLS_STRICT: return SERVER_TLS_STRICT;
    case CONFIG_TLS_OFF: return SERVER_TLS_OFF;
    case CONFIG_TLS_OPPORTUNISTIC: break;
    }
    return SERVER_TLS_OPPORTUNISTIC;
}

/* A strict server's profile: the running one's if it verifies the same
 * way, else a new one. Returns a new reference, or NULL after logging. */
static struct tls_profile *strict_profile(const struct setup_env *env, const struct net_addr *a,
                                          const char *name, const char *auth_name, const char *ca_file)
{
    const struct route_server *old = route_table_find(env->reuse, a);
    if (old && old->profile && tls_profile_matches(old->profile, auth_name, ca_file))
        return tls_profile_ref(old->profile);
    char err[256];
    struct tls_profile *p = tls_profile_strict(auth_name, ca_file, err, sizeof err);
    if (!p)
        log_err("upstream %s: %s", name, err);
    return p;
}

/* `cu` is NULL for a resolv.conf nameserver. */
static int add_server(struct route_table *t, const struct setup_env *env, const struct config *cfg,
                      const char *zone, const struct net_addr *a, const char *origin,
                      const struct config_upstream *cu)
{
    char name[NET_ADDRSTRLEN];
    net_addr_str(a, name, sizeof name);
    if (is_listen_addr(cfg, a)) {
        /* Forwarding to ourselves would loop every query until its deadline. */
        log_warn("%s: upstream %s is one of dotward's own listen addresses: skipped", origin, name);
        return 0;
    }
    /* The same server listed twice: the later line cannot change its policy. */
    struct route_server *s = route_table_find(t, a);
    if (!s) {
        enum server_tls tls = cu ? tls_policy(cu->tls) : SERVER_TLS_OPPORTUNISTIC;
        struct tls_profile *profile = NULL;
        if (tls == SERVER_TLS_STRICT && !(profile = strict_profile(env, a, name, cu->auth_name, cu->ca_file)))
            return -1;
        if (tls == SERVER_TLS_OPPORTUNISTIC)
            profile = tls_profile_ref(env->opportunistic);
        s = route_table_add_server(t, a, tls, profile, !(cu && cu->authoritative), cu != NULL);
        tls_profile_unref(profile);
        if (!s) {
            log_err("%s: upstream %s: out of memory", origin, name);
            return -1;
        }
    }
    int r = route_table_add(t, zone, s);
    if (r < 0)
        log_err("%s: cannot add upstream %s to zone %s", origin, name, zone);
    return r;
}

static bool has_root(const struct route_table *t)
{
    for (size_t i = 0; i < t->n_zones; i++)
        if (t->zones[i].name_len == 1 && t->zones[i].n_servers > 0)
            return true;
    return false;
}

static struct route_table *build(const struct config *cfg, const struct setup_env *env,
                                 const struct resolve_result *res, const size_t *name_index, size_t n_names)
{
    struct route_table *t = route_table_new(env->health);
    if (!t)
        return NULL;
    bool root_configured = false;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        root_configured |= strcmp(u->zone, ".") == 0;
        if (u->addr_ok) {
            if (add_server(t, env, cfg, u->zone, &u->addr, u->origin, u) < 0)
                goto fail;
            continue;
        }
        for (size_t k = 0; k < n_names; k++) {
            if (name_index[k] != i)
                continue;
            if (res[k].n == 0)
                log_err("%s: upstream %s: cannot resolve: %s", u->origin, u->host, res[k].error);
            for (size_t j = 0; j < res[k].n; j++)
                if (add_server(t, env, cfg, u->zone, &res[k].addrs[j], u->origin, u) < 0)
                    goto fail;
        }
    }
    if (!root_configured) {
        struct net_addr *ns = NULL;
        size_t n = 0;
        char err[512];
        if (resolve_nameservers(cfg->resolv_conf, &ns, &n, err, sizeof err) < 0) {
            log_err("no upstream for \".\" and %s", err);
            goto fail;
        }
        for (size_t j = 0; j < n; j++)
            if (add_server(t, env, cfg, ".", &ns[j], cfg->resolv_conf, NULL) < 0) {
                free(ns);
                goto fail;
            }
        free(ns);
    }
    if (t->n_zones == 0) {
        log_err("no usable upstream server");
        goto fail;
    }
    if (!has_root(t))
        log_warn("no upstream serves \".\": names outside the configured zones get SERVFAIL");
    return t;
fail:
    route_table_free(t);
    return NULL;
}

static void resolved_cb(void *arg, struct resolve_result *res, size_t n)
{
    struct setup *s = arg;
    struct route_table *t = build(s->cfg, &s->env, res, s->name_index, n);
    resolve_results_free(res, n);
    setup_done_cb cb = s->cb;
    void *cb_arg = s->arg;
    free(s->name_index);
    free(s);
    cb(cb_arg, t);
}

struct setup *setup_start(struct ev_loop *loop, const struct config *cfg, const struct setup_env *env,
                          setup_done_cb cb, void *arg)
{
    size_t n_names = 0;
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        n_names += !cfg->upstreams[i].addr_ok;
    if (n_names == 0) {
        cb(arg, build(cfg, env, NULL, NULL, 0));
        return NULL;
    }
    struct setup *s = calloc(1, sizeof *s);
    const char **names = calloc(n_names, sizeof *names);
    uint16_t *ports = calloc(n_names, sizeof *ports);
    if (s)
        s->name_index = calloc(n_names, sizeof *s->name_index);
    if (!s || !names || !ports || !s->name_index) {
        if (s)
            free(s->name_index);
        free(s);
        free(names);
        free(ports);
        log_err("out of memory");
        cb(arg, NULL);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        if (cfg->upstreams[i].addr_ok)
            continue;
        names[k] = cfg->upstreams[i].host;
        ports[k] = cfg->upstreams[i].port;
        s->name_index[k++] = i;
    }
    s->loop = loop;
    s->cfg = cfg;
    s->env = *env;
    s->cb = cb;
    s->arg = arg;
    s->resolver = resolve_start(loop, cfg->resolv_conf, names, ports, n_names, resolved_cb, s);
    free(names);
    free(ports);
    if (!s->resolver) {
        free(s->name_index);
        free(s);
        cb(arg, NULL);
        return NULL;
    }
    return s;
}

void setup_cancel(struct setup *s)
{
    if (!s)
        return;
    resolve_cancel(s->resolver);
    free(s->name_index);
    free(s);
}

