/* lib/bytebuf.c */
#include "lib/bytebuf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *bytebuf_reserve(struct bytebuf *b, size_t n)
{
    if (b->cap - b->tail >= n)
        return b->data + b->tail;
    size_t used = b->tail - b->head;
    if (b->head > 0 && b->cap - used >= n) {
        memmove(b->data, b->data + b->head, used);
    } else {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - used < n)
            cap *= 2;
        uint8_t *d = malloc(cap);
        if (!d)
            return NULL;
        if (used)
            memcpy(d, b->data + b->head, used);
        free(b->data);
        b->data = d;
        b->cap = cap;
    }
    b->head = 0;
    b->tail = used;
    return b->data + b->tail;
}

int bytebuf_append(struct bytebuf *b, const void *p, size_t n)
{
    uint8_t *t = bytebuf_reserve(b, n);
    if (!t)
        return -1;
    memcpy(t, p, n);
    b->tail += n;
    return 0;
}

void bytebuf_consume(struct bytebuf *b, size_t n)
{
    b->head += n;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}

void bytebuf_free(struct bytebuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

long bytebuf_frame(const struct bytebuf *b)
{
    size_t avail = bytebuf_len(b);
    if (avail < 2)
        return -1;
    const uint8_t *h = bytebuf_head(b);
    size_t len = ((size_t)h[0] << 8) | h[1];
    return avail - 2 >= len ? (long)len : -1;
}
