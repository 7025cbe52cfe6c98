/* test/fuzz/fuzz_config.c: the config parser on arbitrary bytes.
 * Besides "no crash, no leak", checks the promise of --check-config: a
 * config that loads, dumped (config_dump) and loaded again, is the same
 * config, and dumps to the same text. Any difference aborts, with both
 * dumps on stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config *fuzz_load(const void *data, size_t size, FILE *err)
{
    struct config *c;
    FILE *f;

    /* fmemopen() refuses a zero-length buffer on some libcs. */
    f = size ? fmemopen((void *)data, size, "r") : fopen("/dev/null", "r");
    if (!f)
        return NULL;
    c = config_load_stream(f, "fuzz.conf", NULL, err);
    fclose(f);
    return c;
}

/* config_dump() into a malloc'd string; NULL when out of memory. */
static char *fuzz_dump(const struct config *c, size_t *len)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len);

    if (!out)
        return NULL;
    config_dump(c, out);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *c, *again;
    char *msgs = NULL, *dump, *dump2;
    size_t msgs_len = 0, dump_len = 0, dump2_len = 0;
    FILE *err;

    /* Messages go to memory, so that the formatting code runs too. */
    err = open_memstream(&msgs, &msgs_len);
    if (!err)
        return 0;
    c = fuzz_load(data, size, err);
    fclose(err);
    free(msgs);
    if (!c)
        return 0;

    dump = fuzz_dump(c, &dump_len);
    if (!dump) {
        config_free(c);
        return 0;
    }
    again = fuzz_load(dump, dump_len, stderr);
    if (!again) {
        fprintf(stderr, "the dump does not load:\n%s\n", dump);
        abort();
    }
    if (!config_equal(c, again)) {
        fprintf(stderr, "the dump loads as another config:\n%s\n", dump);
        abort();
    }
    dump2 = fuzz_dump(again, &dump2_len);
    if (dump2 && (dump2_len != dump_len || memcmp(dump, dump2, dump_len) != 0)) {
        fprintf(stderr, "the dump of the dump differs:\n--- first\n%s\n--- second\n%s\n", dump, dump2);
        abort();
    }
    free(dump2);
    config_free(again);
    config_free(c);
    free(dump);
    return 0;
}
