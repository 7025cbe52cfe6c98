/* test/fuzz/fuzz_state.c: the probe state file reader (probe/state.c) on
 * arbitrary bytes. Besides "no crash, no leak", checks a property: a file
 * that loads, saved (S1), loaded again and saved again (S2), gives S2 == S1
 * byte for byte, and the second load restores every entry of S1.
 *
 * probe_state_load() reads a path: the input is written to a file in a
 * private directory (under $TMPDIR, else /dev/shm, else /tmp), made once
 * and removed at exit. The clock is fixed, so expiry is the same on every
 * run: FUZZ_NOW, a little after 2023-11-14T22:13:20Z (1700000000). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "probe/state.h"
#include "probe/table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW 1700000100.0

static char fuzz_dir[64];
static char in_path[96], s1_path[96], s2_path[96];

static void fuzz_cleanup(void)
{
    char tmp[128];

    unlink(in_path);
    unlink(s1_path);
    unlink(s2_path);
    /* A save that failed half way removes its own temporary file. */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", s1_path, (long)getpid());
    unlink(tmp);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", s2_path, (long)getpid());
    unlink(tmp);
    rmdir(fuzz_dir);
}

static int fuzz_setup(void)
{
    static int done;
    const char *base = getenv("TMPDIR");
    struct stat sb;

    if (done)
        return done > 0 ? 0 : -1;
    done = -1;
    if (!base || !base[0] || strlen(base) > 32)
        base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                                 : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/dotward-fuzz-state.XXXXXX", base);
    if (!mkdtemp(fuzz_dir)) {
        fprintf(stderr, "fuzz_state: mkdtemp %s: %s\n", fuzz_dir, strerror(errno));
        return -1;
    }
    snprintf(in_path, sizeof in_path, "%s/in", fuzz_dir);
    snprintf(s1_path, sizeof s1_path, "%s/s1", fuzz_dir);
    snprintf(s2_path, sizeof s2_path, "%s/s2", fuzz_dir);
    atexit(fuzz_cleanup);
    /* probe_state_load() logs one info line per file it restores. */
    log_setup(LOG_LVL_ERR, false);
    done = 1;
    return 0;
}

static int write_all(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t off = 0;

    if (fd < 0)
        return -1;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    return close(fd);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb"), *m;
    char *buf = NULL, chunk[65536];
    size_t n;

    *len = 0;
    if (!f)
        return NULL;
    m = open_memstream(&buf, len);
    if (!m) {
        fclose(f);
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static struct probe_table *fuzz_table(void)
{
    struct probe_policy pol;

    probe_policy_defaults(&pol);
    return probe_table_new(&pol, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct probe_table *t = NULL, *u = NULL;
    char err[512], *s1 = NULL, *s2 = NULL;
    size_t l1, l2;
    int r, w1, r2, w2;

    if (fuzz_setup() < 0 || write_all(in_path, data, size) < 0)
        return 0;
    t = fuzz_table();
    if (!t)
        return 0;
    r = probe_state_load(t, in_path, FUZZ_NOW, err, sizeof err);
    if (r < 0)
        goto out;

    /* Out of memory or a full disk is not a finding: only compare files
     * that were written. */
    w1 = probe_state_save(t, s1_path, FUZZ_NOW, err, sizeof err);
    if (w1 < 0)
        goto out;
    if (w1 != r) {
        fprintf(stderr, "fuzz_state: %d entries restored, %d saved\n", r, w1);
        abort();
    }
    u = fuzz_table();
    if (!u)
        goto out;
    r2 = probe_state_load(u, s1_path, FUZZ_NOW, err, sizeof err);
    s1 = read_all(s1_path, &l1);
    if (r2 != w1) {
        fprintf(stderr, "fuzz_state: a saved file of %d entries loads as %d (%s):\n%.*s\n", w1, r2,
                r2 < 0 ? err : "", s1 ? (int)l1 : 0, s1 ? s1 : "");
        abort();
    }
    w2 = probe_state_save(u, s2_path, FUZZ_NOW, err, sizeof err);
    if (w2 < 0 || !s1)
        goto out;
    s2 = read_all(s2_path, &l2);
    if (s2 && (l1 != l2 || memcmp(s1, s2, l1) != 0)) {
        fprintf(stderr, "fuzz_state: save(load(S1)) differs from S1:\n--- S1\n%.*s\n--- S2\n%.*s\n", (int)l1, s1,
                (int)l2, s2);
        abort();
    }
out:
    free(s1);
    free(s2);
    probe_table_free(u);
    probe_table_free(t);
    return 0;
}
