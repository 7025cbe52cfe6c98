/* lib/rng.c: kernel randomness in blocks, so a query ID costs no syscall. */
#include "lib/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void rng_refill(struct rng *r)
{
    size_t got = 0;
    while (got < sizeof r->buf) {
        ssize_t n = getrandom(r->buf + got, sizeof r->buf - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* no kernel randomness: IDs would be guessable, nothing safe to do */
        }
        got += (size_t)n;
    }
    r->pos = 0;
}

void rng_init(struct rng *r) { rng_refill(r); }

void rng_bytes(struct rng *r, void *out, size_t len)
{
    uint8_t *o = out;
    while (len > 0) {
        if (r->pos == sizeof r->buf)
            rng_refill(r);
        size_t n = sizeof r->buf - r->pos;
        if (n > len)
            n = len;
        memcpy(o, r->buf + r->pos, n);
        /* Used bytes are wiped so a later memory disclosure cannot reveal past IDs. */
        memset(r->buf + r->pos, 0, n);
        r->pos += n;
        o += n;
        len -= n;
    }
}

uint16_t rng_u16(struct rng *r)
{
    uint16_t v;
    rng_bytes(r, &v, sizeof v);
    return v;
}

uint32_t rng_u32(struct rng *r)
{
    uint32_t v;
    rng_bytes(r, &v, sizeof v);
    return v;
}

uint32_t rng_below(struct rng *r, uint32_t n)
{
    /* Rejection sampling avoids modulo bias. */
    uint32_t limit = UINT32_MAX - UINT32_MAX % n;
    for (;;) {
        uint32_t v = rng_u32(r);
        if (v < limit)
            return v % n;
    }
}
