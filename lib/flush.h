/* lib/flush.h: work deferred to the end of a loop iteration.
 *
 * Senders queue their output during an iteration (UDP datagrams, stream
 * writes) and register an item here; when the loop is about to block, an
 * ev_prepare watcher runs every registered item once, so the output of one
 * iteration leaves in as few system calls as possible. The flusher owns its
 * watcher, not the items: each item is embedded in its owner, which must
 * cancel it before the memory goes. */
#ifndef DOTWARD_LIB_FLUSH_H
#define DOTWARD_LIB_FLUSH_H

#include <ev.h>
#include <stdbool.h>

struct flush_item {
    struct flush_item *next;
    bool queued;
    void (*fn)(struct flush_item *it);   /* runs once per queueing */
};

struct flusher {
    struct ev_loop *loop;    /* borrowed */
    ev_prepare watcher;
    struct flush_item *head;
};

void flusher_init(struct flusher *f, struct ev_loop *loop);
/* Runs what is still queued, then stops the watcher. */
void flusher_fini(struct flusher *f);
/* Runs every queued item now (items queued meanwhile run too). */
void flusher_run(struct flusher *f);

static inline void flush_item_init(struct flush_item *it, void (*fn)(struct flush_item *))
{
    it->next = 0;
    it->queued = false;
    it->fn = fn;
}
/* Queues `it` (borrowed until it runs or is cancelled); once per iteration. */
void flusher_queue(struct flusher *f, struct flush_item *it);
void flusher_cancel(struct flusher *f, struct flush_item *it);

#endif
