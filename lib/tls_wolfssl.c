/* lib/tls_wolfssl.c: tls.h on wolfSSL, the only file that includes it. */
#include <wolfssl/options.h> /* must precede every other wolfSSL header */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "lib/tls.h"

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward secrecy and AEAD only. The Debian build also enables RC4, NULL
 * and anonymous suites, so the list must be explicit. */
static const char tls_ciphers[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* X25519 first: the cheapest key share. Without a list wolfSSL offered
 * P-521 first, and servers picked it. */
static int tls_groups[] = { WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1 };

static const char tls_alpn_dot[] = "dot";

struct tls_ctx {
    WOLFSSL_CTX *ctx;
    enum tls_mode mode;
};

struct tls_session {
    WOLFSSL_SESSION *sess;
    bool verified;  /* the verification record of the connection it came from */
};

/* One recv() fills this; wolfSSL's small record reads are served from it,
 * so a burst of answers costs one syscall, not two per record. */
#define TLS_READ_AHEAD 4096

struct tls_conn {
    struct tls_ctx *ctx;
    WOLFSSL *ssl;
    int fd;
    uint8_t rbuf[TLS_READ_AHEAD];
    size_t rpos, rlen;
    /* Corked: records collect here and leave in one send() (tls_flush). */
    uint8_t *wbuf;
    size_t wlen, wcap;
    bool corked;
    bool cert_seen;    /* the verify callback ran at least once */
    bool cert_failed;  /* ... and saw a failure */
    bool resume_verified;
    bool done;         /* handshake finished */
    char err[160];
};

/* ex_data slot for the back pointer from WOLFSSL to tls_conn; slot 0 is
 * free for applications in wolfSSL. */
#define TLS_EXDATA_CONN 0

/* Opportunistic mode: record the verdict, accept anyway (RFC 9539 §4.6.3.4).
 * The build has WOLFSSL_ALWAYS_VERIFY_CB and WOLFSSL_VERIFY_CB_ALL_CERTS,
 * so this runs for good chains too, once per certificate. */
static int tls_record_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    WOLFSSL *ssl = wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *c = ssl ? wolfSSL_get_ex_data(ssl, TLS_EXDATA_CONN) : NULL;
    if (c) {
        c->cert_seen = true;
        if (!preverify)
            c->cert_failed = true;
    }
    return 1;
}

static void tls_err_text(char *buf, size_t sz, int code)
{
    char tmp[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)code, tmp, sizeof tmp);
    snprintf(buf, sz, "%d %s", code, tmp);
}

static int tls_io_errno(int err, int want)
{
    switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return want;
    case EINTR: return WOLFSSL_CBIO_ERR_ISR;
    case ECONNRESET:
    case EPIPE: return WOLFSSL_CBIO_ERR_CONN_RST;
    default: return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

static int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct tls_conn *c = arg;
    (void)ssl;
    if (c->rpos == c->rlen) {
        ssize_t n = recv(c->fd, c->rbuf, sizeof c->rbuf, 0);
        if (n == 0)
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        if (n < 0)
            return tls_io_errno(errno, WOLFSSL_CBIO_ERR_WANT_READ);
        c->rpos = 0;
        c->rlen = (size_t)n;
    }
    size_t n = c->rlen - c->rpos;
    if (n > (size_t)sz)
        n = (size_t)sz;
    memcpy(buf, c->rbuf + c->rpos, n);
    c->rpos += n;
    return (int)n;
}

/* Sends what is corked. Returns 0 when all is gone, 1 when some waits for
 * the socket, -1 on error (errno set). */
static int tls_wbuf_send(struct tls_conn *c)
{
    size_t done = 0;
    while (done < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + done, c->wlen - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        break;
    }
    memmove(c->wbuf, c->wbuf + done, c->wlen - done);
    c->wlen -= done;
    return c->wlen ? 1 : 0;
}

static int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct tls_conn *c = arg;
    (void)ssl;
    if (c->corked) {
        if (c->wcap - c->wlen < (size_t)sz) {
            size_t cap = c->wcap ? c->wcap : 4096;
            while (cap - c->wlen < (size_t)sz)
                cap *= 2;
            uint8_t *w = realloc(c->wbuf, cap);
            if (!w)
                return WOLFSSL_CBIO_ERR_GENERAL;
            c->wbuf = w;
            c->wcap = cap;
        }
        memcpy(c->wbuf + c->wlen, buf, (size_t)sz);
        c->wlen += (size_t)sz;
        return sz;
    }
    /* Corked records go first, or the stream would be out of order. */
    if (c->wlen) {
        int r = tls_wbuf_send(c);
        if (r < 0)
            return tls_io_errno(errno, WOLFSSL_CBIO_ERR_WANT_WRITE);
        if (r > 0)
            return WOLFSSL_CBIO_ERR_WANT_WRITE;
    }
    ssize_t n = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    return tls_io_errno(errno, WOLFSSL_CBIO_ERR_WANT_WRITE);
}

void tls_cork(struct tls_conn *c, bool on) { c->corked = on; }

int tls_flush(struct tls_conn *c)
{
    if (!c->wlen)
        return TLS_IO_OK;
    int r = tls_wbuf_send(c);
    if (r < 0) {
        snprintf(c->err, sizeof c->err, "send: %s", strerror(errno));
        return TLS_IO_ERROR;
    }
    return r ? TLS_IO_WANT_WRITE : TLS_IO_OK;
}

struct tls_ctx *tls_ctx_new(const struct tls_ctx_opts *o, char *err, size_t errsz)
{
    struct tls_ctx *t = calloc(1, sizeof *t);
    const char *what = "out of memory";
    int r = 0;
    if (!t)
        goto fail;
    /* Reference counted in wolfSSL: balanced by wolfSSL_Cleanup in tls_ctx_free. */
    wolfSSL_Init();
    t->mode = o->mode;
    t->ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (t->ctx) {
        wolfSSL_CTX_SetIORecv(t->ctx, tls_io_recv);
        wolfSSL_CTX_SetIOSend(t->ctx, tls_io_send);
    }
    what = "wolfSSL_CTX_new";
    if (!t->ctx)
        goto fail;
    what = "minimum version TLS 1.2";
    if ((r = wolfSSL_CTX_SetMinVersion(t->ctx, WOLFSSL_TLSV1_2)) != WOLFSSL_SUCCESS)
        goto fail;
    what = "cipher list";
    if ((r = wolfSSL_CTX_set_cipher_list(t->ctx, tls_ciphers)) != WOLFSSL_SUCCESS)
        goto fail;
    what = "groups";
    if ((r = wolfSSL_CTX_set_groups(t->ctx, tls_groups,
                                    (int)(sizeof tls_groups / sizeof tls_groups[0]))) != WOLFSSL_SUCCESS)
        goto fail;
    /* set_groups covers the TLS 1.3 key shares; the supported_groups
     * extension (also read by TLS 1.2 servers) needs the curves listed too. */
    for (size_t i = 0; i < sizeof tls_groups / sizeof tls_groups[0]; i++)
        if ((r = wolfSSL_CTX_UseSupportedCurve(t->ctx, (word16)tls_groups[i])) != WOLFSSL_SUCCESS)
            goto fail;
    if (o->ca_file) {
        what = o->ca_file;
        if ((r = wolfSSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL)) != WOLFSSL_SUCCESS)
            goto fail;
    }
    if (o->system_ca || (o->mode == TLS_MODE_STRICT && !o->ca_file)) {
        what = "system CA store";
        if ((r = wolfSSL_CTX_load_system_CA_certs(t->ctx)) != WOLFSSL_SUCCESS)
            goto fail;
    }
    if (o->mode == TLS_MODE_STRICT)
        wolfSSL_CTX_set_verify(t->ctx, WOLFSSL_VERIFY_PEER, NULL);
    else
        /* VERIFY_PEER plus a callback that always accepts: the chain is
         * checked and the result recorded, but never enforced. With no CA
         * loaded every chain is recorded as unverified. */
        wolfSSL_CTX_set_verify(t->ctx, WOLFSSL_VERIFY_PEER, tls_record_verify_cb);
    return t;
fail:
    if (err) {
        char e[120] = "";
        if (r != 0)
            tls_err_text(e, sizeof e, r);
        snprintf(err, errsz, "TLS setup: %s failed%s%s", what, r ? ": " : "", e);
    }
    tls_ctx_free(t);
    return NULL;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return;
    if (t->ctx)
        wolfSSL_CTX_free(t->ctx);
    free(t);
    wolfSSL_Cleanup();
}

struct tls_conn *tls_conn_new(struct tls_ctx *t, int fd, const char *auth_name,
                              const struct tls_session *resume)
{
    struct tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ctx = t;
    c->ssl = wolfSSL_new(t->ctx);
    if (!c->ssl)
        goto fail;
    c->fd = fd;
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    if (wolfSSL_set_ex_data(c->ssl, TLS_EXDATA_CONN, c) != WOLFSSL_SUCCESS)
        goto fail;
    /* RFC 9539 §4.4: ALPN "dot" is a MUST; servers that ignore ALPN still work. */
    if (wolfSSL_UseALPN(c->ssl, (char *)tls_alpn_dot, sizeof tls_alpn_dot - 1,
                        WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) != WOLFSSL_SUCCESS)
        goto fail;
    if (t->mode == TLS_MODE_STRICT) {
        if (!auth_name || !*auth_name)
            goto fail;
        if (wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, auth_name,
                           (word16)strlen(auth_name)) != WOLFSSL_SUCCESS)
            goto fail;
        if (wolfSSL_check_domain_name(c->ssl, auth_name) != WOLFSSL_SUCCESS)
            goto fail;
    }
    /* A session the library refuses (expired, other ctx) just means a full handshake. */
    if (resume && wolfSSL_set_session(c->ssl, resume->sess) == WOLFSSL_SUCCESS)
        c->resume_verified = resume->verified;
    return c;
fail:
    tls_conn_free(c);
    return NULL;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    if (c->ssl)
        wolfSSL_free(c->ssl);
    free(c->wbuf);
    free(c);
}

/* Maps a failed wolfSSL call to tls_io and records the error text. */
static int tls_map(struct tls_conn *c, int ret, const char *op)
{
    int saved_errno = errno;
    int e = wolfSSL_get_error(c->ssl, ret);
    switch (e) {
    case WOLFSSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case WOLFSSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SOCKET_PEER_CLOSED_E:
        /* wolfSSL folds a reset into "peer closed"; errno still tells them apart. */
        if (saved_errno == ECONNRESET || saved_errno == EPIPE) {
            snprintf(c->err, sizeof c->err, "%s: connection reset by peer", op);
            return TLS_IO_ERROR;
        }
        /* fall through */
    case WOLFSSL_ERROR_ZERO_RETURN:
        snprintf(c->err, sizeof c->err, "%s: closed by peer", op);
        return TLS_IO_CLOSED;
    case SOCKET_ERROR_E:
        /* The socket layer failed (reset, refused): errno says more. */
        if (saved_errno)
            snprintf(c->err, sizeof c->err, "%s: socket error: %s", op, strerror(saved_errno));
        else
            snprintf(c->err, sizeof c->err, "%s: socket error", op);
        return TLS_IO_ERROR;
    default: {
        char t[120];
        tls_err_text(t, sizeof t, e);
        snprintf(c->err, sizeof c->err, "%s: %s", op, t);
        return TLS_IO_ERROR;
    }
    }
}

int tls_handshake(struct tls_conn *c)
{
    errno = 0;
    int r = wolfSSL_connect(c->ssl);
    if (r == WOLFSSL_SUCCESS) {
        c->done = true;
        /* Debian's wolfSSL keeps a fixed-point ECC cache of about 2.5 MB per
         * point after the first verification; handshakes are rare here
         * (connections are long-lived), so memory matters more than speed. */
        wc_ecc_fp_free();
        return TLS_IO_OK;
    }
    if (r != WOLFSSL_ERROR_WANT_READ && r != WOLFSSL_ERROR_WANT_WRITE &&
        wolfSSL_get_error(c->ssl, r) != WOLFSSL_ERROR_WANT_READ &&
        wolfSSL_get_error(c->ssl, r) != WOLFSSL_ERROR_WANT_WRITE)
        wc_ecc_fp_free();
    return tls_map(c, r, "handshake");
}

int tls_read(struct tls_conn *c, void *buf, size_t len)
{
    if (len > (size_t)INT_MAX)
        len = INT_MAX;
    errno = 0;
    int r = wolfSSL_read(c->ssl, buf, (int)len);
    if (r > 0)
        return r;
    return tls_map(c, r, "read");
}

int tls_write(struct tls_conn *c, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (len > (size_t)INT_MAX)
        return TLS_IO_ERROR;
    errno = 0;
    int r = wolfSSL_write(c->ssl, buf, (int)len);
    if (r > 0)
        return r;
    return tls_map(c, r, "write");
}

bool tls_pending(struct tls_conn *c) { return wolfSSL_pending(c->ssl) > 0 || c->rpos < c->rlen; }

void tls_shutdown(struct tls_conn *c)
{
    /* Sends close_notify; on a non-blocking fd it does not wait for the peer's. */
    (void)wolfSSL_shutdown(c->ssl);
}

const char *tls_error(const struct tls_conn *c) { return c->err; }

bool tls_verified(const struct tls_conn *c)
{
    if (c->ctx->mode == TLS_MODE_STRICT)
        return c->done;
    if (wolfSSL_session_reused(c->ssl))
        return c->resume_verified;
    return c->cert_seen && !c->cert_failed;
}

const char *tls_version(struct tls_conn *c) { return wolfSSL_get_version(c->ssl); }

const char *tls_cipher(struct tls_conn *c)
{
    const char *n = wolfSSL_get_cipher_name(c->ssl);
    return n ? n : "none";
}

const char *tls_alpn(struct tls_conn *c)
{
    char *name = NULL;
    word16 len = 0;
    if (wolfSSL_ALPN_GetProtocol(c->ssl, &name, &len) != WOLFSSL_SUCCESS || !name)
        return NULL;
    /* Only one protocol is offered, so any agreed one is ours (and static). */
    return (len == sizeof tls_alpn_dot - 1 && memcmp(name, tls_alpn_dot, len) == 0) ? tls_alpn_dot : NULL;
}

bool tls_resumed(struct tls_conn *c) { return wolfSSL_session_reused(c->ssl) != 0; }

struct tls_session *tls_get_session(struct tls_conn *c)
{
    WOLFSSL_SESSION *s = wolfSSL_get1_session(c->ssl);
    if (!s)
        return NULL;
    if (!wolfSSL_SESSION_is_resumable(s)) {
        wolfSSL_SESSION_free(s);
        return NULL;
    }
    struct tls_session *ts = malloc(sizeof *ts);
    if (!ts) {
        wolfSSL_SESSION_free(s);
        return NULL;
    }
    ts->sess = s;
    ts->verified = tls_verified(c);
    return ts;
}

void tls_session_free(struct tls_session *s)
{
    if (!s)
        return;
    wolfSSL_SESSION_free(s->sess);
    free(s);
}

/* The blob: a flags byte, the first TLS_BLOB_SUM_LEN bytes of the SHA-256
 * of wolfSSL's form, then wolfSSL's form (wolfSSL_i2d_SSL_SESSION).
 * Flags: bit 0 = verified, bit 1 = the sum is there (always, since the
 * sum was added). A byte with other bits set, or without bit 1, is not
 * ours. The sum is there because wolfSSL_d2i_SSL_SESSION (5.5) trusts its
 * input: a damaged blob (a length field changed, bytes inserted) made it
 * crash (test/fuzz/fuzz_state.c). A file that a disk or an editor damaged
 * must cost its sessions, not the start. */
#define TLS_BLOB_VERIFIED 0x01u
#define TLS_BLOB_SUMMED 0x02u
#define TLS_BLOB_SUM_LEN 16
#define TLS_BLOB_HEAD (1 + TLS_BLOB_SUM_LEN)
/* wolfSSL's own form stays well below this (the peer chain included). */
#define TLS_BLOB_MAX 65536

static int tls_blob_sum(const unsigned char *data, size_t len, unsigned char sum[TLS_BLOB_SUM_LEN])
{
    unsigned char h[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(data, (word32)len, h) != 0)
        return -1;
    memcpy(sum, h, TLS_BLOB_SUM_LEN);
    return 0;
}

unsigned char *tls_session_to_bytes(const struct tls_session *s, size_t *len)
{
    if (!s || !s->sess)
        return NULL;
    int n = wolfSSL_i2d_SSL_SESSION(s->sess, NULL);
    if (n <= 0 || n > TLS_BLOB_MAX)
        return NULL;
    unsigned char *buf = malloc((size_t)n + TLS_BLOB_HEAD);
    if (!buf)
        return NULL;
    buf[0] = (s->verified ? TLS_BLOB_VERIFIED : 0) | TLS_BLOB_SUMMED;
    /* wolfSSL writes at *p without moving it (unlike OpenSSL); p is a copy
     * either way, and the length is checked against the first call. */
    unsigned char *p = buf + TLS_BLOB_HEAD;
    if (wolfSSL_i2d_SSL_SESSION(s->sess, &p) != n || tls_blob_sum(buf + TLS_BLOB_HEAD, (size_t)n, buf + 1) < 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n + TLS_BLOB_HEAD;
    return buf;
}

struct tls_session *tls_session_from_bytes(const unsigned char *buf, size_t len)
{
    unsigned char sum[TLS_BLOB_SUM_LEN];
    if (!buf || len < TLS_BLOB_HEAD + 1 || len > TLS_BLOB_MAX + TLS_BLOB_HEAD ||
        (buf[0] & ~(TLS_BLOB_VERIFIED | TLS_BLOB_SUMMED)) || !(buf[0] & TLS_BLOB_SUMMED))
        return NULL;
    if (tls_blob_sum(buf + TLS_BLOB_HEAD, len - TLS_BLOB_HEAD, sum) < 0 ||
        memcmp(sum, buf + 1, TLS_BLOB_SUM_LEN) != 0)
        return NULL;
    const unsigned char *p = buf + TLS_BLOB_HEAD;
    WOLFSSL_SESSION *sess = wolfSSL_d2i_SSL_SESSION(NULL, &p, (long)(len - TLS_BLOB_HEAD));
    if (!sess)
        return NULL;
    struct tls_session *ts = malloc(sizeof *ts);
    if (!ts) {
        wolfSSL_SESSION_free(sess);
        return NULL;
    }
    ts->sess = sess;
    ts->verified = (buf[0] & TLS_BLOB_VERIFIED) != 0;
    return ts;
}

char *tls_session_to_text(const struct tls_session *s)
{
    size_t len = 0;
    unsigned char *blob = tls_session_to_bytes(s, &len);
    if (!blob)
        return NULL;
    word32 out_len = (word32)((len + 2) / 3 * 4 + 1);
    char *out = malloc(out_len);
    if (out && Base64_Encode_NoNl(blob, (word32)len, (byte *)out, &out_len) == 0) {
        out[out_len] = 0;
    } else {
        free(out);
        out = NULL;
    }
    free(blob);
    return out;
}

/* Strict RFC 4648: whole quanta, the alphabet, '=' only as the last one or
 * two characters, unused bits zero (wolfSSL's decoder is lenient). */
static bool is_base64(const char *t, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len == 0 || len % 4)
        return false;
    size_t pad = t[len - 1] == '=' ? (t[len - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < len - pad; i++)
        if (!t[i] || !strchr(alphabet, t[i]))
            return false;
    if (pad == 0)
        return true;
    size_t last = (size_t)(strchr(alphabet, t[len - pad - 1]) - alphabet);
    return (last & (pad == 2 ? 0x0f : 0x03)) == 0;
}

int tls_session_from_text(const char *text, size_t len, struct tls_session **out)
{
    *out = NULL;
    if (!text || !is_base64(text, len))
        return -1;
    if (len > (TLS_BLOB_MAX + TLS_BLOB_HEAD + 2) / 3 * 4 + 4)
        return 0; /* no session of ours is this long */
    word32 out_len = (word32)(len / 4 * 3);
    unsigned char *blob = malloc(out_len);
    if (!blob)
        return 0;
    int r = 0;
    if (Base64_Decode((const byte *)text, (word32)len, blob, &out_len) == 0)
        *out = tls_session_from_bytes(blob, out_len);
    else
        r = -1;
    free(blob);
    return r;
}

int tls_ctx_load_system_ca(struct tls_ctx *t, char *err, size_t errsz)
{
    int r = wolfSSL_CTX_load_system_CA_certs(t->ctx);
    if (r == WOLFSSL_SUCCESS)
        return 0;
    char e[120] = "";
    tls_err_text(e, sizeof e, r);
    snprintf(err, errsz, "system CA store: %s", e);
    return -1;
}
