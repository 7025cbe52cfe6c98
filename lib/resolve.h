/* lib/resolve.h: everything dotward asks of c-ares (the only file that
 * includes it is resolve.c): the nameservers of a resolv.conf file, and the
 * addresses of upstream host names, looked up asynchronously on the loop. */
#ifndef DOTWARD_RESOLVE_H
#define DOTWARD_RESOLVE_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/net.h"

/* Reads the nameservers of `path` (port 53). Returns 0 with a malloc'd array
 * (taken by the caller), or -1 with a message in err. */
int resolve_nameservers(const char *path, struct net_addr **out, size_t *n, char *err, size_t errsz);

struct resolve_result {
    struct net_addr *addrs;   /* owned by the result array */
    size_t n;
    char error[128];          /* set when n == 0 */
};

/* Called once with one result per name, in order; `results` is taken
 * (free with resolve_results_free). */
typedef void (*resolve_done_cb)(void *arg, struct resolve_result *results, size_t n);

struct resolver;
/* Looks up A and AAAA of every name (`ports` gives each result's port),
 * through the hosts file and the nameservers of `resolv_conf`. `names` and
 * `ports` are copied. Returns NULL on set-up failure (cb is not called). */
struct resolver *resolve_start(struct ev_loop *loop, const char *resolv_conf, const char *const *names,
                               const uint16_t *ports, size_t n, resolve_done_cb cb, void *arg);
/* Stops lookups in progress; cb is not called. */
void resolve_cancel(struct resolver *r);
void resolve_results_free(struct resolve_result *results, size_t n);

#endif
