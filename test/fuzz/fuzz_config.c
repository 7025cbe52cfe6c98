/* test/fuzz/fuzz_config.c: the config parser on arbitrary bytes.
 * Besides "no crash, no leak", checks a property: a config that loads,
 * dumped and loaded again, is equal to itself (when the dump's lines fit
 * the reader's line limit). */
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

#define FUZZ_MAX_LINE 199

static size_t fuzz_longest_line(const char *s, size_t len)
{
    size_t longest = 0, cur = 0, i;

    for (i = 0; i < len; i++) {
        if (s[i] == '\n') {
            cur = 0;
            continue;
        }
        if (++cur > longest)
            longest = cur;
    }
    return longest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *c, *again;
    char *dump = NULL;
    size_t dump_len = 0;
    FILE *err, *out;

    /* Messages go to memory, so that the formatting code runs too. */
    err = open_memstream(&dump, &dump_len);
    if (!err)
        return 0;
    c = fuzz_load(data, size, err);
    fclose(err);
    free(dump);
    dump = NULL;
    if (!c)
        return 0;

    out = open_memstream(&dump, &dump_len);
    if (!out) {
        config_free(c);
        return 0;
    }
    config_dump(c, out);
    fclose(out);
    /* The dump spells values out ("upstream=h" becomes "upstream = h:53"),
     * so a line near the reader's limit (inih's buffer: 199 bytes) can come
     * back too long. That is a known limit of the dump, not a parser bug. */
    if (fuzz_longest_line(dump, dump_len) > FUZZ_MAX_LINE) {
        config_free(c);
        free(dump);
        return 0;
    }
    again = fuzz_load(dump, dump_len, stderr);
    if (!again || !config_equal(c, again)) {
        fprintf(stderr, "dump does not load back to the same config:\n%s\n", dump);
        abort();
    }
    config_free(again);
    config_free(c);
    free(dump);
    return 0;
}
