/* proxy/transport.h: what an upstream transport (proxy/udp_pool.h,
 * proxy/conns.h) knows of a request, and how it reports back.
 *
 * A transport never sees a query. It gets a `struct treq`, embedded in the
 * caller's own state, with the message to send and where to send it, and
 * reports the answer or the failure through the sink it was created with.
 * It never calls the sink from inside its send function: failures surface
 * from its own callbacks, so a caller is never re-entered while it chooses
 * a server. */
#ifndef DOTWARD_PROXY_TRANSPORT_H
#define DOTWARD_PROXY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/net.h"
#include "lib/wire.h"
#include "probe/table.h"

struct tls_profile;

struct treq {
    /* Set by the caller; borrowed by the transport until the request ends
     * (answer, failure, or cancel). */
    const uint8_t *msg;
    size_t len;
    const struct wire_msg *wm;       /* wire_parse_query of msg */
    const struct net_addr *to;       /* the server (Do53 address; DoT goes to its port 853) */
    struct tls_profile *tls;         /* DoT only: how to do TLS with it */
    /* Sent and answered byte for byte (a signed message, another opcode):
     * no EDNS size of ours, no per-hop option removed, no padding added or
     * stripped. Otherwise the plain legs lose the client's per-hop options
     * and the DoT leg is padded (RFC 8467). */
    bool verbatim;
    /* A zone transfer: every message with its ID is delivered (later ones
     * may carry no question), and the request stays held until cancelled. */
    bool multi;
    /* The transport's own, while it holds the request. */
    void *owner;                     /* the socket or connection it waits on; NULL when not held */
    uint16_t id;                     /* the ID on the wire */
};

/* Both callbacks are called with the request no longer held (owner NULL),
 * except answer() for a `multi` request, which stays held. */
struct tsink {
    /* `msg` is the transport's scratch buffer: the callee may change it in
     * place (ID, case, truncation). `wm` is its wire_parse_response. */
    void (*answer)(void *arg, struct treq *r, uint8_t *msg, size_t len, const struct wire_msg *wm);
    /* The request is lost (connection refused, closed, reset...). */
    void (*failed)(void *arg, struct treq *r, enum probe_outcome why);
    void *arg;
};

#endif
