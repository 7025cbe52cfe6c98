/* lib/acceptor.c: accept4() in bounded batches; out of descriptors, wait in
 * the loop's fd_waiters instead of spinning on a readable listening socket. */
#include "lib/acceptor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"

struct fd_waiters {
    struct ev_loop *loop;
    struct acceptor *head;              /* waiting acceptors, not owned */
    unsigned n;
    ev_timer retry;                     /* runs while anyone waits */
};

struct acceptor {
    struct ev_loop *loop;
    int fd;                             /* borrowed */
    struct fd_waiters *waiters;         /* borrowed */
    struct acceptor *wprev, *wnext;     /* in waiters->head while waiting */
    acceptor_fn *fn;
    void *arg;
    char *name;
    ev_io io;
    bool stopped;                       /* by the owner */
    bool waiting;                       /* for a descriptor */
    bool in_fn;                         /* fn is on the stack */
    bool free_pending;                  /* acceptor_free was called from fn */
    struct log_limit lim;
};

/* ---- fd_waiters ---------------------------------------------------------- */

static void waiters_unlink(struct fd_waiters *w, struct acceptor *a)
{
    if (a->wprev)
        a->wprev->wnext = a->wnext;
    else
        w->head = a->wnext;
    if (a->wnext)
        a->wnext->wprev = a->wprev;
    a->wprev = a->wnext = NULL;
    a->waiting = false;
    if (--w->n == 0)
        ev_timer_stop(w->loop, &w->retry);
}

static void waiters_add(struct fd_waiters *w, struct acceptor *a)
{
    a->waiting = true;
    a->wprev = NULL;
    a->wnext = w->head;
    if (w->head)
        w->head->wprev = a;
    w->head = a;
    /* The retry timer counts from the first waiter: a steady trickle of new
     * waiters must not push it back for ever. */
    if (w->n++ == 0) {
        ev_timer_set(&w->retry, ACCEPTOR_RETRY, 0);
        ev_timer_start(w->loop, &w->retry);
    }
}

void fd_waiters_released(struct fd_waiters *w)
{
    if (!w)
        return;
    /* Only the watchers start here; the accept itself runs on the loop's
     * next turn, so this is safe from deep inside any close path. */
    while (w->head) {
        struct acceptor *a = w->head;
        waiters_unlink(w, a);
        ev_io_start(a->loop, &a->io);
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fd_waiters_released(t->data);
}

struct fd_waiters *fd_waiters_new(struct ev_loop *loop)
{
    struct fd_waiters *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->loop = loop;
    ev_timer_init(&w->retry, retry_cb, ACCEPTOR_RETRY, 0);
    w->retry.data = w;
    return w;
}

void fd_waiters_free(struct fd_waiters *w)
{
    if (!w)
        return;
    while (w->head) {
        struct acceptor *a = w->head;
        waiters_unlink(w, a);
        a->waiters = NULL;
        a->waiting = true; /* nobody is left to resume it */
    }
    ev_timer_stop(w->loop, &w->retry);
    free(w);
}

unsigned fd_waiters_count(const struct fd_waiters *w)
{
    return w ? w->n : 0;
}

/* ---- acceptor ------------------------------------------------------------ */

static void acceptor_wait(struct acceptor *a, int err)
{
    log_limited(&a->lim, LOG_LVL_WARN, "%s: accept: %s; paused until a descriptor is free", a->name,
                strerror(err));
    ev_io_stop(a->loop, &a->io);
    if (a->waiters)
        waiters_add(a->waiters, a);
    else
        a->waiting = true;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct acceptor *a = w->data;
    a->in_fn = true;
    for (int i = 0; i < ACCEPTOR_BATCH && !a->stopped && !a->free_pending; i++) {
        struct net_addr peer;
        memset(&peer, 0, sizeof peer);
        peer.len = sizeof peer.u;
        int fd = accept4(a->fd, &peer.u.sa, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            a->fn(a->arg, fd, &peer);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            break;
        /* Linux hands errors already pending on the new connection to
         * accept() (accept(2), "Error handling"): that one is lost, the
         * next may be fine. */
        if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN || err == ENOPROTOOPT ||
            err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH || err == EOPNOTSUPP || err == ENETUNREACH ||
            err == EPERM)
            continue;
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM, and anything unexpected: the
         * socket stays readable, so waiting is the only way not to spin. */
        acceptor_wait(a, err);
        break;
    }
    a->in_fn = false;
    if (a->free_pending)
        acceptor_free(a);
}

struct acceptor *acceptor_new(struct ev_loop *loop, int fd, struct fd_waiters *waiters, acceptor_fn *fn,
                              void *arg, const char *name)
{
    struct acceptor *a = calloc(1, sizeof *a);
    if (!a || !(a->name = strdup(name ? name : "listener"))) {
        free(a);
        return NULL;
    }
    a->loop = loop;
    a->fd = fd;
    a->waiters = waiters;
    a->fn = fn;
    a->arg = arg;
    ev_io_init(&a->io, accept_cb, fd, EV_READ);
    a->io.data = a;
    ev_io_start(loop, &a->io);
    return a;
}

void acceptor_stop(struct acceptor *a)
{
    a->stopped = true;
    ev_io_stop(a->loop, &a->io);
    if (a->waiting && a->waiters)
        waiters_unlink(a->waiters, a);
    a->waiting = false;
}

void acceptor_start(struct acceptor *a)
{
    if (!a->stopped)
        return;
    a->stopped = false;
    if (!a->waiting)
        ev_io_start(a->loop, &a->io);
}

bool acceptor_waiting(const struct acceptor *a)
{
    return a->waiting;
}

void acceptor_free(struct acceptor *a)
{
    if (!a)
        return;
    if (a->in_fn) {
        /* called from fn: accept_cb frees it once fn has returned */
        a->free_pending = true;
        ev_io_stop(a->loop, &a->io);
        return;
    }
    acceptor_stop(a);
    free(a->name);
    free(a);
}
