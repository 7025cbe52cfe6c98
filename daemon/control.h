/* daemon/control.h: the control socket, served in the proxy's libev loop.
 *
 * A Unix stream socket, mode 0660 (owner and group), one command per
 * connection (protocol in control_proto.h). Owns the listening socket, the
 * socket file and every client connection. Borrows the proxy, which must
 * outlive it; reads the proxy's counters, routes and DoT table when a
 * command arrives, so a reload or a DoT table that comes and goes is seen
 * by the next command. Never blocks the loop: every client has a read
 * timeout, a bounded output buffer written on EV_WRITE, and at most
 * CONTROL_MAX_CLIENTS are served at once (lib/acceptor.h, lib/peer.h). */
#ifndef DOTWARD_CONTROL_H
#define DOTWARD_CONTROL_H

struct fd_waiters;
struct proxy;
struct control;

#define CONTROL_MAX_CLIENTS 16

/* Actions that belong to main, not to the proxy. Copied by control_new;
 * any function may be NULL (the command then answers an error). */
struct control_hooks {
    /* Start a reload of the configuration; the outcome is logged. */
    void (*reload)(void *arg);
    void *arg;
};

/* Creates the socket at `path` (copied) and starts accepting. A stale
 * socket file is replaced; a live one (something accepts on it) or a
 * file that is not a socket is not. `waiters` (borrowed, the loop's; must
 * outlive c) resumes accepting once descriptors are free again. `hooks`
 * may be NULL. Returns NULL after logging on failure. */
struct control *control_new(struct proxy *px, struct fd_waiters *waiters, const char *path,
                            const struct control_hooks *hooks);
/* The socket's path (owned by c), e.g. to tell whether a reload moved it. */
const char *control_path(const struct control *c);
/* Closes every client and the socket, and removes the socket file (if it
 * is still the one this control created). NULL is fine. Safe to call from
 * inside a command (the reload hook): the free then waits until the
 * command has returned and its short answer has been sent. */
void control_free(struct control *c);

#endif
