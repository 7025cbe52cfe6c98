/* lib/ipkey.c */
#include "lib/ipkey.h"

int ip_key_of(const struct net_addr *a, struct ip_key *k)
{
    memset(k, 0, sizeof *k);
    if (a->u.sa.sa_family == AF_INET) {
        k->family = 4;
        memcpy(k->b, &a->u.in4.sin_addr, 4);
        return 0;
    }
    if (a->u.sa.sa_family == AF_INET6) {
        const uint8_t *p = a->u.in6.sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
            k->family = 4;
            memcpy(k->b, p + 12, 4);
        } else {
            k->family = 6;
            memcpy(k->b, p, 16);
        }
        return 0;
    }
    return -1;
}

uint32_t ip_key_hash(const struct ip_key *k, uint32_t seed, uint32_t extra)
{
    uint32_t h = seed ^ k->family ^ (extra * 0x9e3779b9u);
    size_t n = k->family == 4 ? 4 : 16;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w;
        memcpy(&w, k->b + i, 4);
        h ^= w * 0xcc9e2d51u;
        h = (h << 13) | (h >> 19);
        h = h * 5u + 0xe6546b64u;
    }
    return hash_mix32(h);
}
