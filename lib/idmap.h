/* lib/idmap.h: pending tries by key (upstream ID, plus a socket serial for
 * UDP). Open addressing with linear probing; the map owns its array, not the
 * values. Key 0 is reserved for empty slots. */
#ifndef DOTWARD_IDMAP_H
#define DOTWARD_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap_entry {
    uint64_t key;
    void *value;
};

struct idmap {
    struct idmap_entry *slots;
    size_t cap, used;          /* cap: 0 or a power of two */
};

void *idmap_get(const struct idmap *m, uint64_t key);
int idmap_put(struct idmap *m, uint64_t key, void *value);   /* 0, or -1 on no memory */
/* Removes `key`; returns its value or NULL. */
void *idmap_del(struct idmap *m, uint64_t key);
void idmap_free(struct idmap *m);

#endif
