/* lib/acceptor.h: accepting stream connections without spinning.
 *
 * A listening socket stays readable while connections wait in its backlog,
 * so an accept() that fails for lack of descriptors (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM) must not leave the watcher armed: the loop would spin at full
 * CPU. The acceptor stops its watcher instead and waits in the loop's
 * fd_waiters until a descriptor is released (or a fallback timer fires,
 * since descriptors can be freed by code that never says so).
 *
 * What to accept (client limits, per-source limits, ACLs) is the owner's
 * business: it gets every accepted fd and may close it at once. */
#ifndef DOTWARD_ACCEPTOR_H
#define DOTWARD_ACCEPTOR_H

#include <stdbool.h>

#include <ev.h>

#include "lib/net.h"

/* Accepted per wake-up, so a connect flood cannot hold the loop. */
#define ACCEPTOR_BATCH 64
/* A paused acceptor tries again at least this often. */
#define ACCEPTOR_RETRY 1.0

/* ---- fd_waiters: one per loop ------------------------------------------ */

/* Acceptors that ran out of descriptors. Made and freed by the loop's owner;
 * must outlive every acceptor and peer (lib/peer.h) given it. */
struct fd_waiters;

/* Returns NULL when out of memory. `loop` is borrowed. */
struct fd_waiters *fd_waiters_new(struct ev_loop *loop);
/* NULL is fine. Acceptors still waiting stay paused for good. */
void fd_waiters_free(struct fd_waiters *w);
/* A descriptor was closed somewhere: every waiting acceptor tries again on
 * the loop's next turn (once: if accept fails again, it waits again). Never
 * calls back into anyone, so it is safe anywhere. NULL is fine. */
void fd_waiters_released(struct fd_waiters *w);
/* How many acceptors wait (for tests and logs). */
unsigned fd_waiters_count(const struct fd_waiters *w);

/* ---- acceptor: one listening socket ------------------------------------ */

/* The new connection: `fd` is taken (non-blocking, close-on-exec); `peer`
 * is borrowed for the call. The callback may call acceptor_stop or
 * acceptor_free on its own acceptor. */
typedef void acceptor_fn(void *arg, int fd, const struct net_addr *peer);

struct acceptor;

/* Watches the listening socket `fd` (borrowed: the owner made it and closes
 * it after acceptor_free) on `loop`; `waiters` borrowed, not NULL; `name`
 * copied, for log lines. Starts accepting at once. Returns NULL when out of
 * memory. */
struct acceptor *acceptor_new(struct ev_loop *loop, int fd, struct fd_waiters *waiters, acceptor_fn *fn,
                              void *arg, const char *name);
/* Stops accepting until acceptor_start; also cancels a pending resume
 * (stop wins over fd_waiters_released). */
void acceptor_stop(struct acceptor *a);
/* Accepts again after acceptor_stop. An acceptor that waits for a
 * descriptor keeps waiting. */
void acceptor_start(struct acceptor *a);
/* True while it waits for a descriptor. */
bool acceptor_waiting(const struct acceptor *a);
/* Stops and frees (the listening fd stays open). NULL is fine. */
void acceptor_free(struct acceptor *a);

#endif
