/* lib/peer.h: one accepted stream connection, the transport half of a
 * client: non-blocking reads into an input queue, an output queue written
 * on EV_WRITE, and the deadlines that keep a slow or silent client from
 * holding a slot for ever.
 *
 * The peer does not know where messages begin and end: the owner reads the
 * input queue, takes whole messages with peer_consume(), and tells the peer
 * how many answers it still owes. The peer measures time from that:
 *
 *   idle     nothing owed, no output queued, no input: closed after `idle`.
 *   message  input that is not consumed must become a whole message within
 *            `message` of its first byte. Trickled bytes do not restart the
 *            clock. After the owner consumed some and bytes remain, the
 *            clock restarts at the time of the last read (the remainder
 *            began in it). The clock does not run while reading is stopped
 *            on the owner's behalf (peer_pause, max_out): the client cannot
 *            finish a message we do not read.
 *   write    output queued and no send progress for `write`: closed (a
 *            client that does not read its answers).
 *   lifetime from peer_init to close, whatever happens.
 *   max_out  reading stops while this many bytes of output wait, and
 *            resumes below it.
 *   max_in   at most this many bytes of input are held; reading stops
 *            until the owner consumes (a message longer than this cannot
 *            arrive: the owner should answer or close when it sees a full
 *            queue).
 * Zero turns a limit off.
 *
 * struct peer is public only so the owner can embed it; its members are
 * private. The owner owns the memory; the peer owns the fd (taken by
 * peer_init) and its buffers until it closes.
 *
 * Closing and callbacks. The peer calls the owner's ops from the loop
 * (never from inside a peer_* call made by the owner, with the single
 * exception of peer_close, below). When it closes, for whatever reason, it
 * closes the fd, stops every watcher, frees the buffers, calls
 * fd_waiters_released(), and then calls ops->closed(arg, p, why) exactly
 * once, as the last thing peer code does with p: closed() may free the
 * memory that holds p.
 *   - peer_close() called by the owner outside the peer's callbacks calls
 *     closed() before it returns.
 *   - peer_close() called from inside one of p's own callbacks (input,
 *     eof, timeout, drained) tears down at once, but closed() waits until
 *     that callback has returned; the peer then calls it and never touches
 *     p again. So within the callback p stays valid (peer_closed() is
 *     true, every peer_* call on it is a harmless no-op).
 *   - A send that fails inside peer_send() tears down at once and delivers
 *     closed() from the loop shortly after, so peer_send never calls back.
 * After closed(), every peer_* function may still be called on p as long
 * as the owner keeps its memory (a reference-counted owner whose queries
 * answer late): they do nothing, and peer_send returns -1. */
#ifndef DOTWARD_PEER_H
#define DOTWARD_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ev.h>

#include "lib/bytebuf.h"
#include "lib/net.h"

struct fd_waiters;
struct peer;

enum peer_why {
    PEER_EOF,               /* the client closed its end */
    PEER_ERROR,             /* a read or write failed (reset, ...) */
    PEER_NOMEM,             /* a queue could not grow */
    PEER_IDLE,              /* the idle limit */
    PEER_MESSAGE_TIMEOUT,   /* a message did not arrive whole in time */
    PEER_WRITE_TIMEOUT,     /* the client stopped reading its answers */
    PEER_LIFETIME,          /* the lifetime limit */
    PEER_OWNER,             /* the owner is done with it */
    PEER_EVICTED,           /* the owner needed the slot */
    PEER_SHUTDOWN,          /* the owner is going away */
};
/* "eof", "error", ... for log lines. */
const char *peer_close_str(enum peer_why why);

struct peer_limits {
    double idle, message, write, lifetime;   /* seconds; 0 = off */
    size_t max_out, max_in;                   /* bytes; 0 = off */
};

struct peer_ops {
    /* Bytes were added to the input queue: look at peer_in(), take whole
     * messages with peer_consume(), leave a partial one. Not NULL. */
    void (*input)(void *arg, struct peer *p);
    /* The client closed its end; reading has stopped. NULL: close with
     * PEER_EOF (answers still owed are dropped). */
    void (*eof)(void *arg, struct peer *p);
    /* The idle or message deadline passed (why says which). The owner may
     * keep the peer by changing what that clock depends on (e.g. queue a
     * last word: output stops the idle clock; consume the input: that stops
     * the message clock); if the clock is still expired when this returns,
     * the peer closes with `why`. NULL: close at once. */
    void (*timeout)(void *arg, struct peer *p, enum peer_why why);
    /* The output queue has become empty after peer_send queued bytes (one
     * call per burst, always from the loop, never from inside peer_send).
     * NULL: not told. */
    void (*drained)(void *arg, struct peer *p);
    /* The last call (see above). Not NULL. */
    void (*closed)(void *arg, struct peer *p, enum peer_why why);
};

/* Reads per wake-up are at most this many bytes. */
#define PEER_READ_CHUNK 16384

struct peer {
    /* private: use the functions */
    struct ev_loop *loop;
    const struct peer_ops *ops;
    void *arg;
    struct fd_waiters *waiters;
    int fd;
    struct net_addr addr;
    struct peer_limits lim;
    ev_io rio, wio;
    ev_timer timer;
    double timer_at;            /* when the timer fires, if active */
    struct bytebuf in, out;
    unsigned owed;
    unsigned depth;             /* peer callbacks on the stack */
    enum peer_why why;
    uint8_t state;              /* open, closing (closed() pending), closed */
    bool paused;                /* peer_pause */
    bool blocked;               /* paused or output full: the message clock stops */
    bool eof;
    bool want_drained;
    bool was_idle;
    double born, idle_since, write_since, last_activity;
    /* The message clock runs on time when reading was not blocked:
     * vnow = now - blocked_total - (blocked ? now - blocked_since : 0). */
    double msg_vstart, last_read_v, blocked_total, blocked_since;
};

/* Starts reading `fd` (taken) on `loop` (borrowed). `addr` is copied;
 * `limits` copied; `ops` borrowed (usually static const); `waiters`
 * borrowed, may be NULL (then no one is told of the close). Calls no op
 * before it returns. */
void peer_init(struct peer *p, struct ev_loop *loop, int fd, const struct net_addr *addr,
               const struct peer_limits *limits, const struct peer_ops *ops, void *arg,
               struct fd_waiters *waiters);

/* The input queue: *len bytes at the returned pointer (borrowed, valid until
 * the next peer_* call or the callback returns). */
const uint8_t *peer_in(const struct peer *p, size_t *len);
/* The owner took `n` bytes from the head of the input. */
void peer_consume(struct peer *p, size_t n);
/* The owner owes `n` answers (queries in flight): the idle clock waits for 0. */
void peer_set_owed(struct peer *p, unsigned n);
/* Stops (true) or resumes (false) reading, e.g. too many queries in
 * flight, or draining. */
void peer_pause(struct peer *p, bool pause);

/* Queues `len` bytes (copied) and writes what it can at once; the rest
 * waits for EV_WRITE. Returns 0, or -1 if the peer is closed or closing
 * (then nothing is sent; a failure found here closes it, see above). */
int peer_send(struct peer *p, const void *data, size_t len);
/* The same for `n` pieces sent as one. */
int peer_sendv(struct peer *p, const struct iovec *iov, int n);
/* A DNS message over a stream: the 2-byte length, then `msg` (RFC 1035
 * 4.2.2). -1 also for a message over 65535 bytes. */
int peer_send_framed(struct peer *p, const uint8_t *msg, size_t len);
size_t peer_out_len(const struct peer *p);

/* Closes now (see the rules above). A closed peer is left alone. */
void peer_close(struct peer *p, enum peer_why why);
/* True once the peer has closed or is closing: no more I/O. */
bool peer_closed(const struct peer *p);

/* For an owner that is full and must evict someone, in ev_now() time:
 * when the idle clock started (0 if it is not running), when the partial
 * input started, net of the time reading was blocked on our side (0 if
 * there is none), and the last read, write progress or peer_send. */
double peer_idle_since(const struct peer *p);
double peer_partial_since(const struct peer *p);
double peer_last_activity(const struct peer *p);

/* The client's address (borrowed) and the fd (borrowed: for getsockopt,
 * shutdown; never close it). -1 once closed. */
const struct net_addr *peer_addr(const struct peer *p);
int peer_fd(const struct peer *p);

#endif
