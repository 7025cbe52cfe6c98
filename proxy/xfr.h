/* proxy/xfr.h: zone transfers (AXFR, IXFR) relayed whole.
 *
 * A transfer asked by a TCP client goes to one server on a connection of
 * its own, never the shared pipelined one (RFC 5936 4.2): over Do53 TCP,
 * or over DoT where the server is strict or Good (XoT, RFC 9103). Every
 * message comes back to the client, with the client's ID and otherwise
 * byte for byte, until the SOA count says the transfer is complete
 * (lib/wire.h wire_xfr_scan). A DoT connection that fails before the
 * first message falls back to TCP for an opportunistic server.
 *
 * Bounds: the first message within the query budget (`timeout`), each
 * next one within `upstream-tcp-idle` of the previous, at most
 * `max-transfer-mb` in all. A transfer that breaks after its first message
 * (the connection fails, a bound is hit, garbage) closes the client's
 * connection once what was relayed is out, so the client sees a cut
 * transfer, never a hanging one; before the first message it gets
 * SERVFAIL.
 *
 * The pool owns its transfers and their connections; each holds a
 * reference to its view and its client. */
#ifndef DOTWARD_PROXY_XFR_H
#define DOTWARD_PROXY_XFR_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/query.h"
#include "proxy/stream.h"

struct route_server;
struct xfr_pool;

/* `env` is copied (its sink and closed are the pool's own); what it points
 * to is borrowed and must outlive the pool. */
struct xfr_pool *xfr_pool_new(const struct stream_env *env);
/* Ends every transfer (clients closed), then frees the pool. */
void xfr_pool_free(struct xfr_pool *p);
unsigned xfr_pool_active(const struct xfr_pool *p);

/* Starts the transfer `msg` (borrowed; parsed in `wm`) of client `c` from
 * `srv` (borrowed from view `v`, which gets a reference) over `kind`.
 * Returns 0, or -1 (no memory, no connection): nothing was taken. */
int xfr_start(struct xfr_pool *p, struct view *v, const struct client *c, const uint8_t *msg, size_t len,
              const struct wire_msg *wm, struct route_server *srv, enum try_kind kind);

#endif
