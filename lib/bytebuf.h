/* lib/bytebuf.h: a growable byte queue for stream reads and writes.
 * The buffer owns its memory; bytes are appended at the tail and consumed
 * from the head. */
#ifndef DOTWARD_BYTEBUF_H
#define DOTWARD_BYTEBUF_H

#include <stddef.h>
#include <stdint.h>

struct bytebuf {
    uint8_t *data;
    size_t head, tail, cap;
};

static inline size_t bytebuf_len(const struct bytebuf *b) { return b->tail - b->head; }
static inline uint8_t *bytebuf_head(const struct bytebuf *b) { return b->data + b->head; }
/* Makes room for `n` more bytes at the tail; returns the tail or NULL (no memory). */
uint8_t *bytebuf_reserve(struct bytebuf *b, size_t n);
static inline void bytebuf_commit(struct bytebuf *b, size_t n) { b->tail += n; }
int bytebuf_append(struct bytebuf *b, const void *p, size_t n);
void bytebuf_consume(struct bytebuf *b, size_t n);
void bytebuf_free(struct bytebuf *b);

/* DNS over a stream: a 2-byte length, then the message (RFC 1035 4.2.2).
 * Returns the length of the first complete message at the head (its bytes
 * start at head + 2), or -1 if more bytes are needed. */
long bytebuf_frame(const struct bytebuf *b);

#endif
