/* lib/outbox.c: batched UDP sends. */
#include "lib/outbox.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"

static void flush_slots(struct outbox *ob);

static void flush_item_cb(struct flush_item *it)
{
    flush_slots((struct outbox *)((char *)it - offsetof(struct outbox, item)));
}

void outbox_init(struct outbox *ob, struct flusher *fl, int fd, uint64_t *send_errors)
{
    ob->fd = fd;
    ob->n = 0;
    ob->flusher = fl;
    ob->send_errors = send_errors;
    flush_item_init(&ob->item, flush_item_cb);
}

static int send_now(int fd, const struct net_addr *to, const struct net_local *from, const uint8_t *msg,
                    size_t len)
{
    uint64_t ctl[NET_LOCAL_CMSG / 8];
    struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
    struct msghdr mh = { .msg_name = (void *)&to->u.sa, .msg_namelen = to->len, .msg_iov = &iov,
                         .msg_iovlen = 1, .msg_control = ctl };
    mh.msg_controllen = net_local_cmsg(from, ctl);
    if (!mh.msg_controllen)
        mh.msg_control = NULL;
    for (;;) {
        ssize_t r = sendmsg(fd, &mh, 0);
        if (r >= 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

int outbox_add(struct outbox *ob, const struct net_addr *to, const struct net_local *from, const uint8_t *msg,
               size_t len)
{
    if (len > OUTBOX_SLOT_BYTES)
        return send_now(ob->fd, to, from, msg, len);
    if (ob->n == OUTBOX_SLOTS)
        outbox_flush(ob);
    if (ob->n == 0)
        flusher_queue(ob->flusher, &ob->item);
    ob->slot[ob->n].to = *to;
    ob->slot[ob->n].ctl_len = net_local_cmsg(from, ob->slot[ob->n].ctl);
    ob->slot[ob->n].len = len;
    memcpy(ob->slot[ob->n].data, msg, len);
    ob->n++;
    return 0;
}

static struct log_limit send_limit;

static void flush_slots(struct outbox *ob)
{
    struct mmsghdr mm[OUTBOX_SLOTS];
    struct iovec iov[OUTBOX_SLOTS];
    for (unsigned i = 0; i < ob->n; i++) {
        iov[i].iov_base = ob->slot[i].data;
        iov[i].iov_len = ob->slot[i].len;
        memset(&mm[i], 0, sizeof mm[i]);
        mm[i].msg_hdr.msg_name = &ob->slot[i].to.u.sa;
        mm[i].msg_hdr.msg_namelen = ob->slot[i].to.len;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        if (ob->slot[i].ctl_len) {
            mm[i].msg_hdr.msg_control = ob->slot[i].ctl;
            mm[i].msg_hdr.msg_controllen = ob->slot[i].ctl_len;
        }
    }
    unsigned done = 0;
    while (done < ob->n) {
        int r = sendmmsg(ob->fd, mm + done, ob->n - done, 0);
        if (r > 0) {
            done += (unsigned)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        /* The first message failed (a full buffer or an unreachable peer):
         * count it lost and go on with the rest. */
        char buf[NET_ADDRSTRLEN];
        log_limited(&send_limit, LOG_LVL_WARN, "send to %s failed: %s",
                    net_addr_str(&ob->slot[done].to, buf, sizeof buf), strerror(errno));
        if (ob->send_errors)
            (*ob->send_errors)++;
        done++;
    }
    ob->n = 0;
}

void outbox_flush(struct outbox *ob)
{
    if (ob->n == 0)
        return;
    flusher_cancel(ob->flusher, &ob->item);
    flush_slots(ob);
}

