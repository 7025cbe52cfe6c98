/* lib/outbox.h: UDP datagrams queued for one socket and sent together with
 * sendmmsg(2) when the loop is about to block (lib/flush.h). Messages are
 * copied in, so the caller's buffer is free again at once. */
#ifndef DOTWARD_LIB_OUTBOX_H
#define DOTWARD_LIB_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "lib/flush.h"
#include "lib/net.h"

#define OUTBOX_SLOTS 32
#define OUTBOX_SLOT_BYTES 1500  /* larger datagrams are sent at once, unbatched */

struct outbox {
    int fd;                     /* borrowed from the socket's owner */
    unsigned n;
    struct flush_item item;
    struct flusher *flusher;    /* borrowed */
    uint64_t *send_errors;      /* borrowed counter, bumped per lost datagram */
    struct {
        struct net_addr to;
        size_t len, ctl_len;
        uint64_t ctl[NET_LOCAL_CMSG / 8];   /* where it leaves from (a wildcard listener) */
        uint8_t data[OUTBOX_SLOT_BYTES];
    } slot[OUTBOX_SLOTS];
};

void outbox_init(struct outbox *ob, struct flusher *fl, int fd, uint64_t *send_errors);
/* Queues a datagram (copied), sent from `from` when known (NULL: the
 * socket's own address). Returns 0, or -1 if it could not be sent. */
int outbox_add(struct outbox *ob, const struct net_addr *to, const struct net_local *from, const uint8_t *msg,
               size_t len);
/* Sends everything queued on this outbox now. */
void outbox_flush(struct outbox *ob);

#endif
