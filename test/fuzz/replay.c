/* test/fuzz/replay.c: runs a libFuzzer target's LLVMFuzzerTestOneInput on
 * every file given, so seed corpora run as ordinary tests without clang.
 * Arguments are files or directories; a directory's files are run, and the
 * files of its subdirectories (one level). Exit 1 if nothing ran. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path, unsigned *count)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;

    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t n;
        if (size == cap) {
            uint8_t *grown;
            cap = cap ? cap * 2 : 4096;
            grown = realloc(data, cap);
            if (!grown)
                goto fail;
            data = grown;
        }
        n = fread(data + size, 1, cap - size, f);
        size += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    /* An exact-size copy, so that ASan sees reads past the input. */
    {
        uint8_t *exact = malloc(size ? size : 1);
        if (!exact) {
            free(data);
            return -1;
        }
        memcpy(exact, data, size);
        free(data);
        LLVMFuzzerTestOneInput(exact, size);
        free(exact);
    }
    (*count)++;
    return 0;
fail:
    fprintf(stderr, "%s: read failed\n", path);
    free(data);
    fclose(f);
    return -1;
}

static int replay_path(const char *path, int depth, unsigned *count)
{
    struct dirent **names;
    struct stat st;
    int n, i, rc = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return S_ISREG(st.st_mode) ? replay_file(path, count) : 0;
    if (depth > 1)
        return 0;
    /* Sorted, so a crash reproduces in the same order every run. */
    n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    for (i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (name[0] != '.') {
            size_t len = strlen(path) + strlen(name) + 2;
            char *full = malloc(len);
            if (!full) {
                rc = -1;
            } else {
                snprintf(full, len, "%s/%s", path, name);
                if (replay_path(full, depth + 1, count) < 0)
                    rc = -1;
                free(full);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int i, rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (i = 1; i < argc; i++)
        if (replay_path(argv[i], 0, &count) < 0)
            rc = 1;
    printf("%u inputs ran\n", count);
    if (count == 0) {
        fprintf(stderr, "no input files found\n");
        return 1;
    }
    return rc;
}
