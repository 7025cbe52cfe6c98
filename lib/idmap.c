/* lib/idmap.c */
#include "lib/idmap.h"

#include <stdlib.h>
#include <string.h>

static inline size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 29;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 32;
    return (size_t)k & (cap - 1);
}

static struct idmap_entry *find(const struct idmap *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key)
            return &m->slots[i];
        if (m->slots[i].key == 0)
            return NULL;
    }
}

void *idmap_get(const struct idmap *m, uint64_t key)
{
    struct idmap_entry *e = find(m, key);
    return e ? e->value : NULL;
}

static int grow(struct idmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct idmap_entry *s = calloc(cap, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = slot_of(m->slots[i].key, cap);
        while (s[j].key)
            j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

int idmap_put(struct idmap *m, uint64_t key, void *value)
{
    if ((m->used + 1) * 2 > m->cap && grow(m) < 0)
        return -1;
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].key)
        m->used++;
    m->slots[i].key = key;
    m->slots[i].value = value;
    return 0;
}

void *idmap_del(struct idmap *m, uint64_t key)
{
    struct idmap_entry *e = find(m, key);
    if (!e)
        return NULL;
    void *value = e->value;
    size_t mask = m->cap - 1;
    size_t i = (size_t)(e - m->slots), j = i;
    /* Backward-shift deletion: later entries of the probe run move into the
     * hole unless their home slot lies cyclically in (i, j]. */
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key)
            break;
        size_t home = slot_of(m->slots[j].key, m->cap);
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].value = NULL;
    m->used--;
    return value;
}

void idmap_free(struct idmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}
