/* test/unit/test_probe_state.c: probe/state.c, the probe table across
 * restarts. Round trip of every field on a fake clock, expiry on load,
 * every prefix and many one-byte corruptions of a valid file, garbage,
 * wrong versions, oversized files, and the atomic save (stale temporary
 * files, failed writes leave the previous file). Files go to a mkdtemp
 * directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/net.h"
#include "probe/state.h"
#include "probe/table.h"
#include "lib/tls.h"

#define DAY 86400.0
/* A realistic wall clock: state files hold epoch seconds. */
#define T0 1700000000.0

static char tmpdir[] = "/tmp/dotward-test-state-XXXXXX";
static char path[sizeof tmpdir + 64];
static char err[1024];

/* A TLS 1.3 session from a real handshake with NSD (tls_session_to_bytes,
 * base64): its ticket, resumption secret and the server's self-signed
 * test certificate. Nothing here is secret. */
static const char session_b64[] =
    "AlLdjdJTQIrL7on6d8qB3XgBawwctAAAHCAgiT1GSzE9YNQXcsOAWlvq5M/k/Wx6NQ5dEhhVAtU/42mUnqUQ0QyLpE76+W7z"
    "omCFQzXC18CxWLUOEqSFfrv0AZCv/gc/YdqefqnER1lzr50AAAIBgjCCAX4wggEloAMCAQICFE+f4fayK0MtqU7Cz8OBJkSS"
    "ZhWIMAoGCCqGSM49BAMCMBUxEzARBgNVBAMMCnN0YXRlLnRlc3QwHhcNMjYxMTI5MTIzODExWhcNMjYxMjI5MTIzODExWjAV"
    "MRMwEQYDVQQDDApzdGF0ZS50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMuPUk+agSI+AiZW0d5Gf9ZcK8iAR9oSp"
    "R0lFdUkoc4lc7RYEsaFwC4QtuUTFMzAJBsgLzBaVit+DqpcsEU3i06NTMFEwHQYDVR0OBBYEFMEWqSs8ZfpdabIGP5RoCioY"
    "ItQhMB8GA1UdIwQYMBaAFMEWqSs8ZfpdabIGP5RoCioYItQhMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg"
    "Ww9SLVzFphj8WDzEba953AE+nJTobk7sWzVMBtAmKAgCIHpfIerY5KaawFvbobKLoPg7/ekcvPE7XYjvfozdbKpdAYIwggF+"
    "MIIBJaADAgECAhRPn+H2sitDLalOws/DgSZEkmYViDAKBggqhkjOPQQDAjAVMRMwEQYDVQQDDApzdGF0ZS50ZXN0MB4XDTI2"
    "MTEyOTEyMzgxMVoXDTI2MTIyOTEyMzgxMVowFTETMBEGA1UEAwwKc3RhdGUudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEH"
    "A0IABDLj1JPmoEiPgImVtHeRn/WXCvIgEfaEqUdJRXVJKHOJXO0WBLGhcAuELblExTMwCQbIC8wWlYrfg6qXLBFN4tOjUzBR"
    "MB0GA1UdDgQWBBTBFqkrPGX6XWmyBj+UaAoqGCLUITAfBgNVHSMEGDAWgBTBFqkrPGX6XWmyBj+UaAoqGCLUITAPBgNVHRMB"
    "Af8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIFsPUi1cxaYY/Fg8xG2vedwBPpyU6G5O7Fs1TAbQJigIAiB6XyHq2OSmmsBb"
    "26Gyi6D4O/3pHLzxO12I736M3WyqXQMEEwIAAAAVAB0AAAGiJ1AhhsKzZfMIAAAAAAAAAAEA0LB6jlYX5OXRlMJKCPNAHZ/C"
    "ElIcFq67Y1QqcsBuqD1TvX2iOhMEuwkVcvUFCrNifBHx7sDKqKqh7KtkE+qLJ72mPb6rQzxQEnynLeSPDrEcYNmDiSnfccJ1"
    "d8OVUeqYm2OQ4ehMYwSXfTQTArV2j8XKYjx518nzrXqKrq9McRqdThCoJKsqmErznoo+O09cZeAsJR+sjh6QgxIBW2Vl9BB2"
    "IhTaUS646owCoS/lDNKoiT1GSzE9YNQXcsOAWlvq5M/k/Wx6NQ5dEhhVAtU/42k=";

/* The same session as tls_session_to_bytes wrote it before the blob had a
 * checksum (flags byte, then wolfSSL's form): no longer read. */
static const char session_b64_unsummed[] =
    "AAFrDBy0AAAcICCJPUZLMT1g1Bdyw4BaW+rkz+T9bHo1Dl0SGFUC1T/jaZSepRDRDIukTvr5bvOiYIVDNcLXwLFYtQ4SpIV+"
    "u/QBkK/+Bz9h2p5+qcRHWXOvnQAAAgGCMIIBfjCCASWgAwIBAgIUT5/h9rIrQy2pTsLPw4EmRJJmFYgwCgYIKoZIzj0EAwIw"
    "FTETMBEGA1UEAwwKc3RhdGUudGVzdDAeFw0yNjExMjkxMjM4MTFaFw0yNjEyMjkxMjM4MTFaMBUxEzARBgNVBAMMCnN0YXRl"
    "LnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQy49ST5qBIj4CJlbR3kZ/1lwryIBH2hKlHSUV1SShziVztFgSxoXAL"
    "hC25RMUzMAkGyAvMFpWK34OqlywRTeLTo1MwUTAdBgNVHQ4EFgQUwRapKzxl+l1psgY/lGgKKhgi1CEwHwYDVR0jBBgwFoAU"
    "wRapKzxl+l1psgY/lGgKKhgi1CEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBbD1ItXMWmGPxYPMRtr3nc"
    "AT6clOhuTuxbNUwG0CYoCAIgel8h6tjkpprAW9uhsoug+Dv96Ry88TtdiO9+jN1sql0BgjCCAX4wggEloAMCAQICFE+f4fay"
    "K0MtqU7Cz8OBJkSSZhWIMAoGCCqGSM49BAMCMBUxEzARBgNVBAMMCnN0YXRlLnRlc3QwHhcNMjYxMTI5MTIzODExWhcNMjYx"
    "MjI5MTIzODExWjAVMRMwEQYDVQQDDApzdGF0ZS50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMuPUk+agSI+AiZW0"
    "d5Gf9ZcK8iAR9oSpR0lFdUkoc4lc7RYEsaFwC4QtuUTFMzAJBsgLzBaVit+DqpcsEU3i06NTMFEwHQYDVR0OBBYEFMEWqSs8"
    "ZfpdabIGP5RoCioYItQhMB8GA1UdIwQYMBaAFMEWqSs8ZfpdabIGP5RoCioYItQhMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI"
    "zj0EAwIDRwAwRAIgWw9SLVzFphj8WDzEba953AE+nJTobk7sWzVMBtAmKAgCIHpfIerY5KaawFvbobKLoPg7/ekcvPE7XYjv"
    "fozdbKpdAwQTAgAAABUAHQAAAaInUCGGwrNl8wgAAAAAAAAAAQDQsHqOVhfk5dGUwkoI80Adn8ISUhwWrrtjVCpywG6oPVO9"
    "faI6EwS7CRVy9QUKs2J8EfHuwMqoqqHsq2QT6osnvaY9vqtDPFASfKct5I8OsRxg2YOJKd9xwnV3w5VR6pibY5Dh6ExjBJd9"
    "NBMCtXaPxcpiPHnXyfOteoqur0xxGp1OEKgkqyqYSvOeij47T1xl4CwlH6yOHpCDEgFbZWX0EHYiFNpRLrjqjAKhL+UM0qiJ"
    "PUZLMT1g1Bdyw4BaW+rkz+T9bHo1Dl0SGFUC1T/jaQ==";

/* ---- helpers --------------------------------------------------------------- */

struct fake_sched {
    struct probe_table *tab;
    struct probe_entry *started[64];
    unsigned nstarted;
};

static void fake_start(void *arg, struct probe_entry *e)
{
    struct fake_sched *f = arg;
    assert_true(f->nstarted < 64);
    f->started[f->nstarted++] = e;
}

static void fake_cancel(void *arg, struct probe_entry *e)
{
    (void)arg;
    (void)e;
}

static const struct probe_sched fake_ops = { fake_start, fake_cancel };

static struct probe_counters cnt(const struct probe_entry *e)
{
    struct probe_counters c;
    probe_entry_counters(e, &c);
    return c;
}

/* The entry's address (port 853); four calls may be alive at once. */
static const struct net_addr *ip_of(const struct probe_entry *e)
{
    static struct net_addr ring[4];
    static unsigned n;
    struct net_addr *a = &ring[n++ % 4];
    probe_entry_addr(e, a);
    return a;
}

static struct net_addr addr(const char *s)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse(s, 53, &a), 0);
    return a;
}

static struct probe_table *mk(struct fake_sched *f, const struct probe_policy *pol)
{
    struct probe_policy def;
    if (!pol) {
        probe_policy_defaults(&def);
        pol = &def;
    }
    struct probe_table *t = probe_table_new(pol, 777);
    assert_non_null(t);
    if (f) {
        memset(f, 0, sizeof *f);
        f->tab = t;
        probe_table_set_sched(t, &fake_ops, f, T0);
    }
    return t;
}

static long b64_dec(const char *in, unsigned char *out)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (; *in && *in != '='; in++) {
        const char *p = strchr(chars, *in);
        if (!p)
            return -1;
        acc = acc << 6 | (uint32_t)(p - chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

static struct tls_session *fixture_session(void)
{
    unsigned char blob[4096];
    long n = b64_dec(session_b64, blob);
    assert_true(n > 100);
    struct tls_session *s = tls_session_from_bytes(blob, (size_t)n);
    assert_non_null(s);
    return s;
}

static void write_file(const char *p, const void *data, size_t len)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t sz = 0;
    FILE *m = open_memstream(&buf, &sz);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(m);
    fclose(f);
    if (len)
        *len = sz;
    return buf;
}

/* Loads `text` from the state file into a fresh default table; returns the
 * result, the table in *out (freed if out is NULL). */
static int load_text(const char *text, size_t len, double now, struct probe_table **out)
{
    write_file(path, text, len);
    struct probe_table *t = mk(NULL, NULL);
    err[0] = 0;
    int r = probe_state_load(t, path, now, err, sizeof err);
    if (out)
        *out = t;
    else
        probe_table_free(t);
    return r;
}

#define HDR "dotward-probe-state 1\n"
/* A valid Good entry of 192.0.2.1, last answer at T0. */
#define GOOD_LINE(ip) ip "\texample.org.\tgood\t1700000000.000\t1699999000.000\t1699999999.000\t1700000000.000" \
    "\t1700000000.000\t7\tv\tok\t\t2\t2\t-\t10\t1\t-\n"

/* The file must be rejected, with `want` in the message, and nothing restored. */
static void expect_reject(const char *text, const char *want)
{
    struct probe_table *t;
    int r = load_text(text, strlen(text), T0 + 10, &t);
    if (r != -1)
        fail_msg("loaded (%d) but should not:\n%s", r, text);
    if (want && !strstr(err, want))
        fail_msg("message '%s' lacks '%s' for:\n%s", err, want, text);
    assert_int_equal(probe_table_size(t), 0);
    probe_table_free(t);
}

/* ---- setup ------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    log_setup(LOG_LVL_ERR, false);
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof path, "%s/probes.state", tmpdir);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[sizeof tmpdir + 32];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- round trip --------------------------------------------------------------- */

/* Builds a table with one entry of each kind; returns it. */
static struct probe_table *build_table(struct fake_sched *f)
{
    struct probe_table *t = mk(f, NULL);
    struct net_addr a = addr("192.0.2.1"), b = addr("192.0.2.2"), c = addr("192.0.2.3"),
                    d = addr("2001:db8::53"), e6 = addr("::ffff:192.0.2.5");

    /* Good, verified, authoritative, with a session and a failure on record. */
    probe_table_visit(t, &a, "example.org.", T0 + 0.25);
    struct probe_entry *ea = probe_table_visit(t, &a, "example.org.", T0 + 1.5);
    assert_int_equal(f->nstarted, 1);
    probe_table_probe_done(t, ea, PROBE_OK, NULL, true, T0 + 2.75);
    probe_table_set_authoritative(ea, true);
    probe_table_set_session(ea, fixture_session());
    probe_table_dot_result(t, &a, PROBE_OK, NULL, T0 + 10.5);
    probe_table_dot_result(t, &a, PROBE_QUERY_TIMEOUT, "slow\tand\\odd\n\xc3\xa9", T0 + 11);
    probe_table_dot_result(t, &a, PROBE_OK, NULL, T0 + 12.125);
    probe_table_count_fallbacks(t, &a, 3);

    /* Bad, a reason with every character that needs escaping. */
    probe_table_visit(t, &b, "corp.example.", T0 + 3);
    struct probe_entry *eb = probe_table_visit(t, &b, "corp.example.", T0 + 3);
    assert_int_equal(f->nstarted, 2);
    probe_table_probe_done(t, eb, PROBE_CONNECT_REFUSED, "Connection refused \x01\x7f\\x41", false, T0 + 4);

    /* Unknown, seen once, an odd zone. */
    probe_table_visit(t, &c, "we\\ird\tzone.", T0 + 5);

    /* IPv6 Good. */
    probe_table_visit(t, &d, NULL, T0 + 6);
    struct probe_entry *ed = probe_table_visit(t, &d, NULL, T0 + 6);
    probe_table_probe_done(t, ed, PROBE_OK, NULL, false, T0 + 7);

    /* Busy: saved as unknown. The v4-mapped form is the IPv4 server. */
    probe_table_visit(t, &e6, ".", T0 + 8);
    probe_table_visit(t, &e6, ".", T0 + 8);
    assert_int_equal(f->nstarted, 4);
    assert_int_equal(probe_table_count(t, PROBE_BUSY), 1);
    return t;
}

static void assert_same_session(const struct tls_session *x, const struct tls_session *y)
{
    size_t lx = 0, ly = 0;
    unsigned char *bx = tls_session_to_bytes(x, &lx), *by = tls_session_to_bytes(y, &ly);
    assert_non_null(bx);
    assert_non_null(by);
    assert_int_equal(lx, ly);
    assert_memory_equal(bx, by, lx);
    free(bx);
    free(by);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct fake_sched f, g;
    struct probe_table *t = build_table(&f);
    const double now = T0 + 100;

    assert_int_equal(probe_state_save(t, path, now, err, sizeof err), 5);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600); /* resumption secrets inside */

    struct probe_table *u = mk(&g, NULL);
    assert_int_equal(probe_state_load(u, path, now, err, sizeof err), 5);
    assert_int_equal(g.nstarted, 0); /* restoring starts no probe */
    assert_int_equal(probe_table_size(u), 5);
    assert_int_equal(probe_table_count(u, PROBE_GOOD), 2);
    assert_int_equal(probe_table_count(u, PROBE_BAD), 1);
    assert_int_equal(probe_table_count(u, PROBE_UNKNOWN), 2);
    assert_int_equal(probe_table_count(u, PROBE_BUSY), 0);
    assert_int_equal(probe_table_running(u), 0);
    assert_int_equal(probe_table_queued(u), 0);

    /* Same entries in the same (most recently visited first) order, every saved field equal. */
    const struct probe_entry *x = probe_table_first(t), *y = probe_table_first(u);
    for (; x && y; x = probe_table_next(t, x), y = probe_table_next(u, y)) {
        char ipx[NET_ADDRSTRLEN], ipy[NET_ADDRSTRLEN];
        assert_string_equal(net_addr_str(ip_of(x), ipx, sizeof ipx), net_addr_str(ip_of(y), ipy, sizeof ipy));
        assert_string_equal(probe_entry_zone(t, x), probe_entry_zone(u, y));
        assert_int_equal(y->status, x->status == PROBE_BUSY ? PROBE_UNKNOWN : x->status);
        assert_true(probe_entry_time(t, x, PROBE_T_STATUS_SINCE) == probe_entry_time(u, y, PROBE_T_STATUS_SINCE));
        assert_true(probe_entry_time(t, x, PROBE_T_FIRST_SEEN) == probe_entry_time(u, y, PROBE_T_FIRST_SEEN));
        assert_true(probe_entry_time(t, x, PROBE_T_INITIATED) == probe_entry_time(u, y, PROBE_T_INITIATED));
        assert_true(probe_entry_time(t, x, PROBE_T_COMPLETED) == probe_entry_time(u, y, PROBE_T_COMPLETED));
        assert_true(probe_entry_time(t, x, PROBE_T_LAST_RESPONSE) == probe_entry_time(u, y, PROBE_T_LAST_RESPONSE));
        assert_int_equal(x->visits, y->visits);
        assert_int_equal(x->last_outcome, y->last_outcome);
        assert_string_equal(probe_entry_reason(t, x), probe_entry_reason(u, y));
        assert_int_equal(x->verified, y->verified);
        assert_int_equal(x->authoritative, y->authoritative);
        struct probe_counters cx = cnt(x), cy = cnt(y);
        assert_memory_equal(&cx, &cy, sizeof cx);
        assert_int_equal(x->session != NULL, y->session != NULL);
        if (x->session)
            assert_same_session(x->session, y->session);
        assert_true(probe_entry_time(u, y, PROBE_T_LAST_ACTIVITY) == 0); /* not kept (RFC 9539 §4.5) */
    }
    assert_null(x);
    assert_null(y);

    /* The fields that matter, spelled out once. */
    struct net_addr a = addr("192.0.2.1"), b = addr("192.0.2.2");
    struct probe_entry *ea = probe_table_find(u, &a), *eb = probe_table_find(u, &b);
    assert_int_equal(ea->status, PROBE_GOOD);
    assert_true(ea->verified && ea->authoritative);
    /* The table keeps whole seconds, rounded down. */
    assert_true(probe_entry_time(u, ea, PROBE_T_LAST_RESPONSE) == T0 + 12);
    assert_true(probe_entry_time(u, ea, PROBE_T_FIRST_SEEN) == T0);
    assert_true(probe_entry_time(u, ea, PROBE_T_INITIATED) == T0 + 1);
    assert_true(probe_entry_time(u, ea, PROBE_T_COMPLETED) == T0 + 2);
    assert_int_equal(cnt(ea).failures[PROBE_QUERY_TIMEOUT], 1);
    assert_int_equal(cnt(ea).fallbacks, 3); /* count_fallbacks only */
    assert_int_equal(cnt(ea).dot_queries, 3);
    assert_string_equal(probe_entry_reason(u, ea), "query-timeout: slow\tand\\odd\n\xc3\xa9");
    assert_non_null(ea->session);
    assert_int_equal(eb->status, PROBE_BAD);
    assert_string_equal(probe_entry_reason(u, eb), "connect-refused: Connection refused \x01\x7f\\x41");
    struct net_addr c = addr("192.0.2.3");
    assert_string_equal(probe_entry_zone(u, probe_table_find(u, &c)), "we\\ird\tzone.");
    /* The totals are this process's metrics: restored history is not in them. */
    assert_int_equal(probe_table_totals(u)->probes, 0);

    /* Usable at once: DoT without a visit, and probe-on-start leaves it alone. */
    assert_true(probe_table_use_dot(u, ea, now));
    assert_int_equal(probe_table_request(u, &a, ".", now, false), -1);
    assert_false(probe_table_use_dot(u, eb, now));
    assert_int_equal(probe_table_request(u, &b, ".", now, false), -1); /* still damped */
    probe_table_visit(u, &a, NULL, now);
    assert_int_equal(g.nstarted, 0);
    /* The restored Unknown entries probe on their next visits as usual. */
    probe_table_visit(u, &c, NULL, now);
    probe_table_visit(u, &c, NULL, now);
    assert_int_equal(g.nstarted, 1);

    /* save(load(save(t))) is save(t), byte for byte. */
    char path2[sizeof path + 8];
    snprintf(path2, sizeof path2, "%s.2", path);
    struct probe_table *v = mk(NULL, NULL);
    assert_int_equal(probe_state_load(v, path, now, err, sizeof err), 5);
    assert_int_equal(probe_state_save(v, path2, now, err, sizeof err), 5);
    size_t l1, l2;
    char *t1 = read_file(path, &l1), *t2 = read_file(path2, &l2);
    assert_non_null(t1);
    assert_non_null(t2);
    assert_int_equal(l1, l2);
    assert_memory_equal(t1, t2, l1);
    /* ... and it is the documented format. */
    assert_true(strncmp(t1, "dotward-probe-state 1\n# saved 2023-11-14T22:15:00Z by dotward ", 62) == 0);
    assert_non_null(strstr(t1, "\n192.0.2.2\tcorp.example.\tbad\t1700000004.000\t1700000003.000\t"
                               "1700000003.000\t1700000004.000\t0.000\t2\t-\tconnect-refused\t"
                               "connect-refused: Connection refused \\x01\\x7f\\x5cx41\t1\t0\t"
                               "connect-refused=1\t0\t0\t-\n"));
    assert_non_null(strstr(t1, "\n192.0.2.5\t.\tunknown\t"));
    assert_non_null(strstr(t1, "\t" "we\\x5cird\\x09zone.\tunknown\t"));
    assert_non_null(strstr(t1, "\n2001:db8::53\t.\tgood\t"));
    assert_non_null(strstr(t1, "\nend 5\n"));
    free(t1);
    free(t2);
    unlink(path2);
    probe_table_free(v);
    probe_table_free(u);
    probe_table_free(t);
}

static void test_session_bytes(void **state)
{
    (void)state;
    unsigned char blob[4096];
    long n = b64_dec(session_b64, blob);
    struct tls_session *s = tls_session_from_bytes(blob, (size_t)n);
    assert_non_null(s);
    size_t len = 0;
    unsigned char *again = tls_session_to_bytes(s, &len);
    assert_non_null(again);
    assert_int_equal(len, (size_t)n);
    assert_memory_equal(again, blob, len);
    free(again);
    tls_session_free(s);

    /* Not ours, or cut short, or damaged: NULL, never a crash (ASan). */
    assert_null(tls_session_from_bytes(NULL, 0));
    assert_null(tls_session_from_bytes(blob, 1));
    unsigned char bad[4096];
    memcpy(bad, blob, (size_t)n);
    bad[0] = 0x80;
    assert_null(tls_session_from_bytes(bad, (size_t)n));
    for (long cut = 1; cut < n; cut += 7) {
        s = tls_session_from_bytes(blob, (size_t)cut);
        tls_session_free(s);
    }
    srand(1);
    for (int i = 0; i < 300; i++) {
        memcpy(bad, blob, (size_t)n);
        for (int k = 0; k < 3; k++)
            bad[1 + rand() % (n - 1)] = (unsigned char)rand();
        s = tls_session_from_bytes(bad, (size_t)n);
        tls_session_free(s);
    }
    assert_null(tls_session_to_bytes(NULL, &len));

    /* Bytes inserted or dropped inside wolfSSL's form (a length field no
     * longer matches what follows) once crashed wolfSSL_d2i_SSL_SESSION;
     * the blob's checksum turns every such damage away first. */
    for (long at = 1; at < n; at += 5) {
        memcpy(bad, blob, (size_t)at);
        bad[at] = (unsigned char)(at * 37);
        bad[at + 1] = 0x79;
        memcpy(bad + at + 2, blob + at, (size_t)(n - at));
        assert_null(tls_session_from_bytes(bad, (size_t)n + 2));
        memcpy(bad, blob, (size_t)at);
        memcpy(bad + at, blob + at + 1, (size_t)(n - at - 1));
        assert_null(tls_session_from_bytes(bad, (size_t)n - 1));
    }
    /* A blob from before the checksum is not read (the session is lost). */
    unsigned char old_blob[4096];
    long on = b64_dec(session_b64_unsummed, old_blob);
    assert_true(on == n - 16);
    assert_null(tls_session_from_bytes(old_blob, (size_t)on));

    /* In a file: a session the library cannot read only loses the session. */
    char text[512];
    snprintf(text, sizeof text, HDR "192.0.2.1\t.\tgood\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t1\t-\tok\t\t1\t1\t-\t0\t0\t"
             "AAECAwQFBgcICQ==\nend 1\n", T0, T0, T0, T0, T0);
    struct probe_table *t;
    assert_int_equal(load_text(text, strlen(text), T0 + 1, &t), 1);
    struct net_addr a = addr("192.0.2.1");
    assert_non_null(probe_table_find(t, &a));
    assert_null(probe_table_find(t, &a)->session);
    assert_int_equal(probe_table_find(t, &a)->status, PROBE_GOOD);
    probe_table_free(t);
}

/* ---- the reset outcome ------------------------------------------------------------ */

static void test_reset_outcome(void **state)
{
    (void)state;
    /* Read: as last_outcome and in the failures. */
    const char *text = HDR "192.0.2.1\texample.org.\tgood\t1700000000.000\t1699999000.000\t1699999999.000"
                           "\t1700000000.000\t1700000000.000\t7\tv\treset\treset: Connection reset by peer"
                           "\t2\t2\treset=4,query-timeout=1\t10\t1\t-\nend 1\n";
    struct probe_table *t;
    assert_int_equal(load_text(text, strlen(text), T0 + 1, &t), 1);
    struct net_addr a = addr("192.0.2.1");
    struct probe_entry *e = probe_table_find(t, &a);
    assert_non_null(e);
    assert_int_equal(e->last_outcome, PROBE_RESET);
    assert_int_equal(cnt(e).failures[PROBE_RESET], 4);
    assert_int_equal(cnt(e).failures[PROBE_QUERY_TIMEOUT], 1);
    assert_string_equal(probe_entry_reason(t, e), "reset: Connection reset by peer");

    /* Written back the same way (failures in outcome order). */
    assert_int_equal(probe_state_save(t, path, T0 + 2, err, sizeof err), 1);
    size_t len;
    char *saved = read_file(path, &len);
    assert_non_null(strstr(saved, "\t7\tv\treset\treset: Connection reset by peer\t2\t2\t"
                                  "query-timeout=1,reset=4\t10\t1\t-\n"));
    free(saved);
    probe_table_free(t);
    expect_reject(HDR "192.0.2.1\t.\tgood\t0\t0\t0\t0\t0\t1\t-\treset\t\t0\t0\treset=1,reset=2\t0\t0\t-\nend 1\n",
                  "counters");
}

/* ---- long reasons ---------------------------------------------------------------- */

static void test_long_reason(void **state)
{
    (void)state;
    /* A reason past the old 111 bytes, with bytes to escape, saved and read back whole. */
    struct fake_sched f, g;
    struct probe_table *t = mk(&f, NULL);
    struct net_addr a = addr("192.0.2.1");
    probe_table_visit(t, &a, "example.org.", T0);
    struct probe_entry *e = probe_table_visit(t, &a, "example.org.", T0);
    char why[401];
    for (int i = 0; i < 400; i++)
        why[i] = i % 50 == 49 ? '\t' : (char)('A' + i % 26);
    why[400] = 0;
    probe_table_probe_done(t, e, PROBE_BAD_ANSWER, why, false, T0 + 1);
    assert_int_equal(strlen(probe_entry_reason(t, e)), strlen("bad-answer: ") + 400);
    assert_int_equal(probe_state_save(t, path, T0 + 2, err, sizeof err), 1);
    struct probe_table *u = mk(&g, NULL);
    assert_int_equal(probe_state_load(u, path, T0 + 2, err, sizeof err), 1);
    assert_string_equal(probe_entry_reason(u, probe_table_find(u, &a)), probe_entry_reason(t, e));
    /* Both tables hold two strings: the zone and the reason. */
    assert_int_equal(probe_table_strings(u, NULL), 2);
    probe_table_free(u);
    probe_table_free(t);

    /* In a file: PROBE_REASON_MAX bytes load, one more is a bad file. */
    char *text = malloc(4 * PROBE_REASON_MAX + 512);
    char *r = malloc(PROBE_REASON_MAX + 2);
    assert_non_null(text);
    assert_non_null(r);
    for (int extra = 0; extra <= 1; extra++) {
        memset(r, 'r', PROBE_REASON_MAX + extra);
        r[PROBE_REASON_MAX + extra] = 0;
        snprintf(text, 4 * PROBE_REASON_MAX + 512,
                 HDR "192.0.2.1\t.\tbad\t0\t0\t0\t%.3f\t0\t1\t-\ttls-failed\t%s\t1\t0\ttls-failed=1\t0\t0\t-\nend 1\n",
                 T0, r);
        if (extra) {
            expect_reject(text, "reason");
        } else {
            struct probe_table *x;
            assert_int_equal(load_text(text, strlen(text), T0 + 1, &x), 1);
            assert_string_equal(probe_entry_reason(x, probe_table_find(x, &a)), r);
            probe_table_free(x);
        }
    }
    free(r);
    free(text);
}

/* ---- expiry ---------------------------------------------------------------------- */

static void test_expiry(void **state)
{
    (void)state;
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.persistence = 100;
    pol.damping = 50;
    const double now = T0 + 1000;
    char text[4096];
    /* ip, status, completed, last_response, first_seen */
    snprintf(text, sizeof text, HDR
             "192.0.2.1\t.\tgood\t0\t0\t0\t0\t%.3f\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"      /* run out: exactly 100 s */
             "192.0.2.2\t.\tgood\t0\t0\t0\t0\t%.3f\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"      /* kept: 99 s */
             "192.0.2.3\t.\tbad\t0\t0\t0\t%.3f\t0\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"       /* run out: 50 s */
             "192.0.2.4\t.\tbad\t0\t0\t0\t%.3f\t0\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"       /* kept: 49 s */
             "192.0.2.5\t.\tunknown\t0\t%.3f\t0\t0\t0\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"   /* run out */
             "192.0.2.6\t.\tunknown\t0\t%.3f\t0\t0\t0\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"   /* kept */
             "192.0.2.7\t.\tgood\t0\t0\t0\t0\t%.3f\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"      /* from the future */
             "192.0.2.8\t.\tgood\t0\t0\t0\t0\t0\t1\t-\tok\t\t0\t0\t-\t0\t0\t-\n"         /* never answered */
             "end 8\n",
             now - 100, now - 99, now - 50, now - 49, now - 50, now - 49, now + 1e6);
    write_file(path, text, strlen(text));
    struct probe_table *t = probe_table_new(&pol, 1);
    assert_non_null(t);
    assert_int_equal(probe_state_load(t, path, now, err, sizeof err), 4);
    const char *kept[] = { "192.0.2.2", "192.0.2.4", "192.0.2.6", "192.0.2.7" };
    const char *gone[] = { "192.0.2.1", "192.0.2.3", "192.0.2.5", "192.0.2.8" };
    for (int i = 0; i < 4; i++) {
        struct net_addr k = addr(kept[i]), g = addr(gone[i]);
        if (!probe_table_find(t, &k))
            fail_msg("%s should be kept", kept[i]);
        if (probe_table_find(t, &g))
            fail_msg("%s should be dropped", gone[i]);
    }
    /* A time after `now` is taken as `now`: Good for one persistence, not for ever. */
    struct net_addr a7 = addr("192.0.2.7");
    struct probe_entry *e = probe_table_find(t, &a7);
    assert_true(probe_entry_time(t, e, PROBE_T_LAST_RESPONSE) == now);
    assert_true(probe_table_use_dot(t, e, now + 99));
    assert_false(probe_table_use_dot(t, e, now + 100));
    probe_table_free(t);

    /* max-entries: the first (most recently visited) entries are kept. */
    pol.max_entries = 2;
    t = probe_table_new(&pol, 1);
    assert_int_equal(probe_state_load(t, path, now, err, sizeof err), 2);
    struct net_addr a2 = addr("192.0.2.2"), a4 = addr("192.0.2.4");
    assert_non_null(probe_table_find(t, &a2));
    assert_non_null(probe_table_find(t, &a4));
    probe_table_free(t);

    /* An IP already in the table keeps its live entry. */
    struct fake_sched f;
    pol.max_entries = 4096;
    t = mk(&f, &pol);
    probe_table_visit(t, &a2, "live.", now);
    assert_int_equal(probe_state_load(t, path, now, err, sizeof err), 3);
    assert_string_equal(probe_entry_zone(t, probe_table_find(t, &a2)), "live.");
    assert_int_equal(probe_table_find(t, &a2)->status, PROBE_UNKNOWN);
    probe_table_free(t);
}

/* ---- damaged files ----------------------------------------------------------------------- */

/* A valid file of a few entries with a session, as saved. */
static char *valid_file(size_t *len)
{
    struct fake_sched f;
    struct probe_table *t = build_table(&f);
    assert_int_equal(probe_state_save(t, path, T0 + 100, err, sizeof err), 5);
    probe_table_free(t);
    return read_file(path, len);
}

static void test_every_prefix(void **state)
{
    (void)state;
    size_t len;
    char *full = valid_file(&len);
    assert_non_null(full);
    assert_true(len > 1000);
    /* Every prefix is rejected whole: nothing half-restored. */
    for (size_t n = 0; n < len; n++) {
        struct probe_table *t;
        int r = load_text(full, n, T0 + 100, &t);
        if (r != -1 || probe_table_size(t) != 0)
            fail_msg("prefix of %zu/%zu bytes: %d, %zu entries (%s)", n, len, r, probe_table_size(t), err);
        probe_table_free(t);
    }
    assert_int_equal(load_text(full, len, T0 + 100, NULL), 5);
    free(full);
}

static void test_byte_corruption(void **state)
{
    (void)state;
    size_t len;
    char *full = valid_file(&len);
    char *bad = malloc(len);
    assert_non_null(bad);
    static const unsigned char vals[] = { '\t', '\n', '\0', 'x', '9', 0xff, '\\' };
    unsigned loaded = 0, rejected = 0;
    /* Each damaged file either loads in full or not at all, and never crashes. */
    for (size_t i = 0; i < len; i += (i < 300 ? 1 : 7)) {
        for (size_t v = 0; v < sizeof vals; v++) {
            if ((unsigned char)full[i] == vals[v])
                continue;
            memcpy(bad, full, len);
            bad[i] = (char)vals[v];
            struct probe_table *t;
            int r = load_text(bad, len, T0 + 100, &t);
            if (r == -1) {
                rejected++;
                assert_int_equal(probe_table_size(t), 0);
                assert_true(err[0] != 0);
            } else {
                loaded++;
                assert_true(r >= 0 && r <= 5);
                assert_int_equal(probe_table_size(t), (size_t)r);
            }
            probe_table_free(t);
        }
    }
    assert_true(rejected > 0 && loaded > 0);
    free(bad);
    free(full);
}

static void test_garbage(void **state)
{
    (void)state;
    char text[PROBE_STATE_LINE_MAX + 512];

    expect_reject("", "empty file");
    expect_reject("\n", "not a dotward probe state file");
    expect_reject("[server]\nlisten = 127.0.0.1\n", "not a dotward probe state file");
    expect_reject("dotward-probe-state 2\n" GOOD_LINE("192.0.2.1") "end 1\n", "version 2, this dotward reads version 1");
    expect_reject("dotward-probe-state 0\nend 0\n", "version 0");
    expect_reject("dotward-probe-state x\nend 0\n", "malformed version");
    expect_reject("dotward-probe-state\nend 0\n", "not a dotward probe state file");
    expect_reject(HDR, "no 'end' line");
    expect_reject(HDR GOOD_LINE("192.0.2.1"), "no 'end' line");
    expect_reject(HDR GOOD_LINE("192.0.2.1") "end 1", "truncated");
    expect_reject(HDR GOOD_LINE("192.0.2.1") "end 2\n", "'end' count");
    expect_reject(HDR GOOD_LINE("192.0.2.1") "end 0\n", "'end' count");
    expect_reject(HDR GOOD_LINE("192.0.2.1") "end 1\nmore\n", "data after the 'end' line");
    expect_reject(HDR "end 0\n" GOOD_LINE("192.0.2.1"), "data after the 'end' line");
    {
        static const char nul[] = HDR "192.0.2.1\0\nend 0\n";
        struct probe_table *t;
        assert_int_equal(load_text(nul, sizeof nul - 1, T0, &t), -1);
        assert_non_null(strstr(err, "NUL byte"));
        probe_table_free(t);
    }
    /* Field by field. */
    expect_reject(HDR "192.0.2.1\t.\tgood\n" "end 1\n", "line 2: bad field count");
    expect_reject(HDR "# c\n" GOOD_LINE("1.2.3.4:53") "end 1\n", "line 3: bad ip");
    expect_reject(HDR GOOD_LINE("[2001:db8::1]") "end 1\n", "bad ip");
    expect_reject(HDR GOOD_LINE("2001:DB8::1") "end 1\n", "bad ip");
    expect_reject(HDR GOOD_LINE("192.0.2.256") "end 1\n", "bad ip");
    expect_reject(HDR GOOD_LINE("dns.example") "end 1\n", "bad ip");
    const char *line = GOOD_LINE("192.0.2.1");
    static const struct { int field; const char *value; const char *what; } bad[] = {
        { 1, "", "zone" }, { 1, "a\\q", "zone" }, { 1, "a\\x0", "zone" }, { 1, "a\\x00b", "zone" },
        { 1, "a\x01", "zone" }, { 1, "\xc3\xa9", "zone" },
        { 2, "Good", "status" }, { 2, "busy", "status" }, { 2, "", "status" },
        { 3, "1e9", "time" }, { 3, "-1", "time" }, { 3, "1.", "time" }, { 3, ".5", "time" },
        { 3, "nan", "time" }, { 3, "1234567890123", "time" }, { 3, "1.1234567890", "time" }, { 3, "", "time" },
        { 7, "0x10", "time" }, { 8, "-1", "visits" }, { 8, "4294967296", "visits" }, { 8, "", "visits" },
        { 9, "vv", "flags" }, { 9, "x", "flags" }, { 9, "", "flags" }, { 9, "v-", "flags" },
        { 10, "OK", "last outcome" }, { 10, "", "last outcome" },
        { 11, "a\\", "reason" }, { 11, "\x1f", "reason" },
        { 12, "18446744073709551616", "counters" }, { 12, "1 ", "counters" },
        { 14, "ok=1,ok=2", "counters" }, { 14, "nope=1", "counters" }, { 14, "ok=", "counters" },
        { 14, "ok", "counters" }, { 14, "", "counters" }, { 16, "x", "counters" },
        { 17, "AAA", "session" }, { 17, "AA=A", "session" }, { 17, "A===", "session" }, { 17, "AB==", "session" },
        { 17, "", "session" }, { 17, "!!!!", "session" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* Rebuild the line with field `field` replaced. */
        char copy[512], out[1024], want[64];
        snprintf(copy, sizeof copy, "%s", line);
        copy[strlen(copy) - 1] = 0;
        size_t o = (size_t)snprintf(out, sizeof out, "%s", HDR);
        int k = 0;
        for (char *p = copy;; k++) {
            char *tab = strchr(p, '\t');
            if (tab)
                *tab = 0;
            o += (size_t)snprintf(out + o, sizeof out - o, "%s%s", k ? "\t" : "", k == bad[i].field ? bad[i].value : p);
            if (!tab)
                break;
            p = tab + 1;
        }
        snprintf(out + o, sizeof out - o, "\nend 1\n");
        snprintf(want, sizeof want, "line 2: bad %s", bad[i].what);
        expect_reject(out, want);
    }
    /* Nineteen fields. */
    snprintf(text, sizeof text, HDR "%.*s\t-\nend 1\n", (int)strlen(line) - 1, line);
    expect_reject(text, "bad field count");

    /* A line one byte over the limit; the longest allowed line is fine. */
    memset(text, 0, sizeof text);
    memcpy(text, HDR "#", strlen(HDR) + 1);
    size_t n = strlen(text);
    memset(text + n, 'x', PROBE_STATE_LINE_MAX - 2);
    n += PROBE_STATE_LINE_MAX - 2;
    memcpy(text + n, "\nend 0\n", 8);
    assert_int_equal(load_text(text, strlen(text), T0, NULL), 0);
    text[n] = 'x';
    memcpy(text + n + 1, "\nend 0\n", 8);
    expect_reject(text, "line 2: longer than 16384 bytes");

    /* Random bytes, with and without a valid header. */
    static const char alphabet[] = "0123456789.\t\n-abcdefgnorstuvx:=";
    srand(2);
    for (int i = 0; i < 200; i++) {
        size_t len = (size_t)(rand() % 3000), off = 0;
        if (i & 1) {
            memcpy(text, HDR, strlen(HDR));
            off = strlen(HDR);
        }
        for (size_t k = off; k < off + len; k++)
            text[k] = (char)(i % 4 < 2 ? rand() : alphabet[rand() % (int)(sizeof alphabet - 1)]);
        struct probe_table *t;
        int r = load_text(text, off + len, T0, &t);
        assert_int_equal(r, -1);
        assert_int_equal(probe_table_size(t), 0);
        probe_table_free(t);
    }

    /* Blank lines and comments anywhere, a duplicate IP keeps the first. */
    struct probe_table *t;
    const char *ok = HDR "\n# a comment\n" GOOD_LINE("192.0.2.1") "\n" GOOD_LINE("192.0.2.1")
        GOOD_LINE("192.0.2.9") "end 3\n\n# trailing comment\n";
    assert_int_equal(load_text(ok, strlen(ok), T0 + 10, &t), 2);
    probe_table_free(t);
}

static void test_not_a_file(void **state)
{
    (void)state;
    char p[sizeof path + 16];
    struct probe_table *t = mk(NULL, NULL);

    /* Missing: its own code, for an info line instead of a warning. */
    snprintf(p, sizeof p, "%s/missing", tmpdir);
    assert_int_equal(probe_state_load(t, p, T0, err, sizeof err), PROBE_STATE_MISSING);
    /* A directory, a FIFO (must not block), a 100 MiB sparse file (not read). */
    assert_int_equal(probe_state_load(t, tmpdir, T0, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    snprintf(p, sizeof p, "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(probe_state_load(t, p, T0, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(p);

    snprintf(p, sizeof p, "%s/huge", tmpdir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 100 << 20), 0);
    close(fd);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(probe_state_load(t, p, T0, err, sizeof err), -1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(strstr(err, "104857600 bytes, larger than 16777216: not read"));
    assert_true((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < 0.1);
    /* One byte over the cap is over; a file growing while read is stopped at the cap. */
    fd = open(p, O_WRONLY | O_TRUNC);
    assert_int_equal(ftruncate(fd, PROBE_STATE_FILE_MAX + 1), 0);
    close(fd);
    assert_int_equal(probe_state_load(t, p, T0, err, sizeof err), -1);
    assert_non_null(strstr(err, "not read"));
    unlink(p);
    assert_int_equal(probe_table_size(t), 0);
    probe_table_free(t);
}

/* ---- saving -------------------------------------------------------------------------------- */

static bool file_equals(const char *p, const char *want, size_t len)
{
    size_t n;
    char *got = read_file(p, &n);
    bool same = got && n == len && memcmp(got, want, len) == 0;
    free(got);
    return same;
}

static bool tmp_left(void)
{
    char cmd[sizeof path + 64];
    snprintf(cmd, sizeof cmd, "ls '%s'.tmp.* >/dev/null 2>&1", path);
    return system(cmd) == 0;
}

static void test_atomic_save(void **state)
{
    (void)state;
    struct fake_sched f;
    struct probe_table *t = build_table(&f);
    char tmp[sizeof path + 32], other[sizeof path + 32];
    static const char previous[] = HDR "# the previous file\nend 0\n";

    /* A stale temporary file of ours (pid reuse) and one of another process. */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    snprintf(other, sizeof other, "%s.tmp.1", path);
    write_file(tmp, "junk", 4);
    write_file(other, "junk", 4);
    assert_int_equal(probe_state_save(t, path, T0 + 100, err, sizeof err), 5);
    assert_int_equal(access(tmp, F_OK), -1);
    struct probe_table *u = mk(NULL, NULL);
    assert_int_equal(probe_state_load(u, path, T0 + 100, err, sizeof err), 5);
    probe_table_free(u);
    unlink(other);

    /* The temporary path is taken by a directory: the save fails, the previous file stays. */
    write_file(path, previous, sizeof previous - 1);
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(probe_state_save(t, path, T0, err, sizeof err), -1);
    assert_non_null(strstr(err, tmp));
    assert_true(file_equals(path, previous, sizeof previous - 1));
    assert_int_equal(rmdir(tmp), 0);

    /* The write fails half way (file size limit): the previous file stays, no temporary is left. */
    struct rlimit old, small = { 4096, 4096 };
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct probe_table *big = mk(NULL, NULL);
    for (int i = 0; i < 200; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 256, i % 256);
        struct net_addr a = addr(ip);
        probe_table_visit(big, &a, "a-rather-long-zone-name.example.", T0);
    }
    int r = probe_state_save(big, path, T0, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    assert_int_equal(r, -1);
    assert_non_null(strstr(err, "File too large"));
    assert_true(file_equals(path, previous, sizeof previous - 1));
    assert_false(tmp_left());
    /* Without the limit the same table saves. */
    assert_int_equal(probe_state_save(big, path, T0, err, sizeof err), 200);
    probe_table_free(big);

    /* No such directory. */
    char nodir[sizeof path + 32];
    snprintf(nodir, sizeof nodir, "%s/nope/state", tmpdir);
    assert_int_equal(probe_state_save(t, nodir, T0, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file or directory"));

    /* A directory we may not write to (only meaningful when not root). */
    if (geteuid() != 0) {
        write_file(path, previous, sizeof previous - 1);
        assert_int_equal(chmod(tmpdir, 0500), 0);
        assert_int_equal(probe_state_save(t, path, T0, err, sizeof err), -1);
        assert_int_equal(chmod(tmpdir, 0700), 0);
        assert_true(file_equals(path, previous, sizeof previous - 1));
    }
    assert_false(tmp_left());
    probe_table_free(t);
}

/* The file stays under PROBE_STATE_FILE_MAX however big the table: the
 * least recently visited entries are left out, and the file loads back. */
static void test_file_cap(void **state)
{
    (void)state;
    struct probe_policy pol;
    probe_policy_defaults(&pol);
    pol.max_entries = 20000;
    struct probe_table *t = probe_table_new(&pol, 3);
    assert_non_null(t);
    unsigned char blob[4096];
    long bl = b64_dec(session_b64, blob);
    const int n = 16000; /* about 1.6 KB each with its session: over 16 MiB */
    for (int i = 0; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        struct net_addr a = addr(ip);
        struct probe_entry *e = probe_table_visit(t, &a, NULL, T0 + i);
        assert_non_null(e);
        probe_table_set_session(e, tls_session_from_bytes(blob, (size_t)bl));
    }
    int written = probe_state_save(t, path, T0 + n, err, sizeof err);
    assert_true(written > 1000 && written < n);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size <= (off_t)PROBE_STATE_FILE_MAX);
    assert_true(sb.st_size > (off_t)PROBE_STATE_FILE_MAX - 64 * 1024);
    struct probe_table *u = probe_table_new(&pol, 4);
    assert_int_equal(probe_state_load(u, path, T0 + n, err, sizeof err), written);
    /* The most recently visited one is in, the least recently visited one is not. */
    struct net_addr last = addr("10.0.62.127"), first = addr("10.0.0.0");
    assert_non_null(probe_table_find(u, &last));
    assert_non_null(probe_table_find(u, &last)->session);
    assert_null(probe_table_find(u, &first));
    probe_table_free(u);
    probe_table_free(t);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_session_bytes),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_reset_outcome),
        cmocka_unit_test(test_long_reason),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_byte_corruption),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_not_a_file),
        cmocka_unit_test(test_atomic_save),
        cmocka_unit_test(test_file_cap),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
