/* lib/flush.c */
#include "lib/flush.h"

#include <stddef.h>

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    flusher_run(w->data);
}

void flusher_init(struct flusher *f, struct ev_loop *loop)
{
    f->loop = loop;
    f->head = NULL;
    ev_prepare_init(&f->watcher, prepare_cb);
    f->watcher.data = f;
    ev_prepare_start(loop, &f->watcher);
}

void flusher_fini(struct flusher *f)
{
    flusher_run(f);
    ev_prepare_stop(f->loop, &f->watcher);
}

void flusher_run(struct flusher *f)
{
    while (f->head) {
        struct flush_item *it = f->head;
        f->head = it->next;
        it->next = NULL;
        it->queued = false;
        it->fn(it);
    }
}

void flusher_queue(struct flusher *f, struct flush_item *it)
{
    if (it->queued)
        return;
    it->queued = true;
    it->next = f->head;
    f->head = it;
}

void flusher_cancel(struct flusher *f, struct flush_item *it)
{
    if (!it->queued)
        return;
    for (struct flush_item **pp = &f->head; *pp; pp = &(*pp)->next) {
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    }
    it->next = NULL;
    it->queued = false;
}
