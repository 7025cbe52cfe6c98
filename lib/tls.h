/* lib/tls.h: a non-blocking TLS client, back-end neutral. The only
 * implementation is tls_wolfssl.c, the one file that includes wolfSSL.
 *
 * Ownership: a tls_ctx is owned by whoever made it and must outlive every
 * tls_conn and tls_session made from it. A tls_conn borrows its fd (the
 * caller connects it and closes it after tls_conn_free). A tls_session is
 * owned by the caller of tls_get_session and freed with tls_session_free.
 * Nothing here blocks: every call returns TLS_IO_WANT_READ/WRITE instead. */
#ifndef DOTWARD_TLS_H
#define DOTWARD_TLS_H

#include <stdbool.h>
#include <stddef.h>

enum tls_mode {
    /* RFC 9539: accept any certificate, no SNI. If a CA file or the system
     * store is configured, the chain is still checked, for the record only. */
    TLS_MODE_OPPORTUNISTIC,
    /* RFC 8310 strict: the chain must verify and match the auth name. */
    TLS_MODE_STRICT,
};

struct tls_ctx_opts {
    enum tls_mode mode;
    const char *ca_file;  /* PEM bundle; NULL = see system_ca */
    /* Load the system CA store (about 230 KB of heap with Debian's wolfSSL).
     * Strict mode without ca_file always loads it. In opportunistic mode it
     * only feeds tls_verified(). */
    bool system_ca;
};

struct tls_ctx;
struct tls_conn;
struct tls_session;

/* Returns NULL and a message in err on failure. */
struct tls_ctx *tls_ctx_new(const struct tls_ctx_opts *o, char *err, size_t errsz);
void tls_ctx_free(struct tls_ctx *ctx);
/* Loads the system CA store into an existing context (it takes tens of
 * milliseconds: done after start-up, off the path to the first answer). */
int tls_ctx_load_system_ca(struct tls_ctx *ctx, char *err, size_t errsz);

/* `fd`: a connected (or connecting) non-blocking TCP socket, borrowed.
 * `auth_name`: strict mode: the name to verify and send as SNI (required);
 * ignored in opportunistic mode, which never sends SNI.
 * `resume`: borrowed, may be NULL; the connection tries to resume it.
 * Returns NULL on allocation or setup failure. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *auth_name,
                              const struct tls_session *resume);
/* Frees the TLS state; sends nothing and leaves the fd open. */
void tls_conn_free(struct tls_conn *c);

enum tls_io {
    TLS_IO_OK = 0,
    TLS_IO_WANT_READ = -1,   /* wait for EV_READ, then call again */
    TLS_IO_WANT_WRITE = -2,  /* wait for EV_WRITE, then call again */
    TLS_IO_CLOSED = -3,      /* peer closed (close_notify or TCP FIN) */
    TLS_IO_ERROR = -4,       /* see tls_error() */
};

/* Drives the handshake: TLS_IO_OK once done, else a negative tls_io. */
int tls_handshake(struct tls_conn *c);
/* Returns > 0 bytes read, or a negative tls_io. Reading may also consume
 * post-handshake messages (TLS 1.3 session tickets) and return WANT_READ. */
int tls_read(struct tls_conn *c, void *buf, size_t len);
/* Returns len once all of buf is written, or a negative tls_io. After
 * WANT_READ/WANT_WRITE, call again with the same buf and len. */
int tls_write(struct tls_conn *c, const void *buf, size_t len);
/* Decrypted bytes are buffered: read them before waiting for EV_READ. */
bool tls_pending(struct tls_conn *c);  /* bytes read ahead or decrypted, not yet returned */
/* Corked, each tls_write() makes its own record but nothing is sent until
 * tls_flush(): many small messages, one send(). (Some servers answer only
 * the first DNS message of a TLS record, so messages must not share one.) */
void tls_cork(struct tls_conn *c, bool on);
int tls_flush(struct tls_conn *c);      /* TLS_IO_OK, TLS_IO_WANT_WRITE or TLS_IO_ERROR */
/* Best effort close_notify, one non-blocking attempt. */
void tls_shutdown(struct tls_conn *c);

/* The last error as text ("" if none). */
const char *tls_error(const struct tls_conn *c);
/* Would the chain have verified (against ca_file/system store)? Always true
 * after a strict handshake; recorded only in opportunistic mode. A resumed
 * connection inherits the value of the session it resumed. */
bool tls_verified(const struct tls_conn *c);
const char *tls_version(struct tls_conn *c);  /* "TLSv1.3" */
const char *tls_cipher(struct tls_conn *c);   /* "TLS13-AES128-GCM-SHA256" */
const char *tls_alpn(struct tls_conn *c);     /* "dot", or NULL if none agreed */
bool tls_resumed(struct tls_conn *c);

/* A resumable session, or NULL if the server sent none (yet): TLS 1.3
 * tickets arrive after the handshake, so call this after the first
 * tls_read that returned data. The caller owns the result. */
struct tls_session *tls_get_session(struct tls_conn *c);
void tls_session_free(struct tls_session *s);

/* A session as bytes, to keep it across a restart (probe/state.c): an
 * opaque blob of this back end (a flags byte, then wolfSSL's serialized
 * session), only ever read back by tls_session_from_bytes. It holds the
 * resumption secret: store it where only dotward can read it. Returns a
 * malloc'd buffer (the caller frees it) with its length in *len, or NULL. */
unsigned char *tls_session_to_bytes(const struct tls_session *s, size_t *len);
/* The reverse. Returns a new session (the caller owns it), or NULL if the
 * bytes are not one (corrupt, or from another back end or version). A
 * session the server no longer accepts only costs a full handshake. */
struct tls_session *tls_session_from_bytes(const unsigned char *buf, size_t len);
/* The same as text, for a text file: base64 (RFC 4648, padded, one line)
 * of tls_session_to_bytes. Returns a malloc'd NUL-terminated string (the
 * caller frees it), or NULL. */
char *tls_session_to_text(const struct tls_session *s);
/* The reverse. Returns -1 if `text` is not padded base64; else 0, with
 * *out a new session (the caller owns it), or NULL if the bytes are not a
 * session this back end reads (only the resumption is lost). */
int tls_session_from_text(const char *text, size_t len, struct tls_session **out);

#endif
