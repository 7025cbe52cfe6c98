/* probe/prober.h: runs the probes the table asks for, on a libev loop.
 * A probe: non-blocking TCP connect to IP:853, TLS (opportunistic ctx),
 * one SOA query for the entry's zone with a 2-byte length prefix; a
 * well-formed answer matching ID and question (any RCODE) is OK. The whole
 * probe is bounded by the policy's probe_timeout.
 *
 * Owns the running probes (socket, TLS state, watchers). Borrows the loop,
 * the table, the TLS ctx and the rng, which must outlive it. */
#ifndef DOTWARD_PROBE_PROBER_H
#define DOTWARD_PROBE_PROBER_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "probe/table.h"

struct tls_ctx;
struct tls_conn;
struct rng;

struct prober_opts {
    uint16_t port;  /* 853; tests use others */
    bool rd;        /* RD bit in the probe query: 1 towards resolvers, 0 towards authoritatives */
    /* NULL for opportunistic probes. With a strict tls_ctx: the name to
     * verify and send as SNI (borrowed, must outlive the prober). */
    const char *auth_name;
};
void prober_opts_defaults(struct prober_opts *o);

/* What one probe saw, for logs and tools. Strings are valid during the callback only. */
struct prober_result {
    enum probe_outcome outcome;
    const char *reason;       /* "" if OK */
    const char *tls_version;  /* NULL if the handshake did not finish */
    const char *tls_cipher;
    const char *alpn;         /* "dot" or NULL */
    bool verified;
    bool resumed;
    uint16_t rcode;           /* of the answer, if OK */
    double elapsed;           /* seconds since the probe started */
};

/* Attaches itself to the table as its scheduler. NULL on no memory. */
struct prober *prober_new(struct ev_loop *loop, struct probe_table *tab, struct tls_ctx *tls,
                          struct rng *rng, const struct prober_opts *o);
/* Stops every running probe (their entries go back to Unknown) and detaches from the table. */
void prober_free(struct prober *p);
/* Called once per finished probe, after the table has been told. */
void prober_set_result_cb(struct prober *p,
                          void (*fn)(void *arg, const struct probe_entry *e, const struct prober_result *r),
                          void *arg);
/* The TLS connection of a successful probe: the callee takes `conn` and `fd`
 * (tls_conn_free, then close). Without this callback they are closed. The
 * entry's session has already been stored when it is called. */
void prober_set_adopt_cb(struct prober *p,
                         void (*fn)(void *arg, const struct probe_entry *e, int fd, struct tls_conn *conn),
                         void *arg);
unsigned prober_running(const struct prober *p);

#endif
