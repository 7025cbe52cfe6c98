/* daemon/setup.h: turns a config into a route table. Host names are looked
 * up first (asynchronously); with no upstream for ".", the nameservers of the
 * resolv.conf file serve it. Upstreams already known to `reuse` are shared,
 * keeping their RTT history and connections across a reload. */
#ifndef DOTWARD_SETUP_H
#define DOTWARD_SETUP_H

#include <ev.h>

struct config;
struct route_table;

/* `cfg` is passed back as given (still owned by the caller); `routes` is a new
 * table (taken by the callee) or NULL after the problems were logged. */
typedef void (*setup_done_cb)(void *arg, const struct config *cfg, struct route_table *routes);

struct setup;
/* May call `cb` before returning (nothing to look up). `reuse` may be NULL; it
 * must stay valid until cb runs. Returns NULL if cb was already called. */
struct setup *setup_start(struct ev_loop *loop, const struct config *cfg, const struct route_table *reuse,
                          setup_done_cb cb, void *arg);
void setup_cancel(struct setup *s);

/* "forwarding . to 192.0.2.1:53, [2001:db8::1]:53; example.org. to ..." */
void setup_describe_routes(const struct route_table *t, char *buf, size_t bufsz);

#endif
