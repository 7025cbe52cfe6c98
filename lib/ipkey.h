/* lib/ipkey.h: an IP address as a compact hash key (17 bytes instead of a
 * 128-byte sockaddr_storage), for the per-IP tables that grow with every
 * server a resolver contacts. A v4-mapped IPv6 address is its IPv4 address. */
#ifndef DOTWARD_LIB_IPKEY_H
#define DOTWARD_LIB_IPKEY_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lib/net.h"

struct ip_key {
    uint8_t family;   /* 4 or 6; 0 = not an IP */
    uint8_t b[16];
};

/* Returns 0, or -1 (k zeroed) if `a` is not IPv4 or IPv6. */
int ip_key_of(const struct net_addr *a, struct ip_key *k);

static inline bool ip_key_equal(const struct ip_key *a, const struct ip_key *b)
{
    return a->family == b->family && memcmp(a->b, b->b, a->family == 4 ? 4 : 16) == 0;
}

/* murmur3's finaliser: every input bit reaches every output bit. */
static inline uint32_t hash_mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* Keyed multiply-rotate mix with a murmur3 finaliser: not cryptographic,
 * but a secret seed stops anyone from choosing IPs that share a chain.
 * `extra` mixes in more of the key (a port). */
uint32_t ip_key_hash(const struct ip_key *k, uint32_t seed, uint32_t extra);

#endif
