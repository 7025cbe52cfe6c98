/* lib/rng.h: unpredictable numbers for query IDs and port choice (RFC 5452).
 * Bytes come from getrandom(2), fetched in blocks; one rng per thread/loop. */
#ifndef DOTWARD_RNG_H
#define DOTWARD_RNG_H

#include <stddef.h>
#include <stdint.h>

struct rng {
    uint8_t buf[512];
    size_t pos;
};

void rng_init(struct rng *r);
void rng_bytes(struct rng *r, void *out, size_t len);
uint16_t rng_u16(struct rng *r);
uint32_t rng_u32(struct rng *r);
/* Uniform in [0, n), n > 0. */
uint32_t rng_below(struct rng *r, uint32_t n);

#endif
