/* proxy/tls_profile.h: how to do TLS with a DoT server.
 *
 * Opportunistic (RFC 9539): one profile for the whole process, any
 * certificate, no SNI; its resumption sessions live in the probe table.
 * Strict (RFC 8310): one per server and configuration, the certificate
 * verified for `auth_name` (against `ca_file`, or the system store); its
 * session lives here. Reference-counted: the route table that names it,
 * and every connection made with it. A profile never changes once built,
 * so a connection made under one policy never carries a query of another:
 * a reload that changes a server's policy builds a new profile. */
#ifndef DOTWARD_PROXY_TLS_PROFILE_H
#define DOTWARD_PROXY_TLS_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_ctx;
struct tls_session;

struct tls_profile {
    unsigned refs;
    bool strict;
    struct tls_ctx *ctx;          /* owned */
    char *auth_name;              /* strict: verified and sent as SNI; owned */
    char *ca_file;                /* strict: NULL = system store; owned */
    uint64_t ca_digest;           /* strict with ca_file: its content when the profile was built */
    struct tls_session *session;  /* strict: to resume, owned; NULL if none */
};

/* Both return refs = 1, or NULL with a message in err. The opportunistic
 * context loads no CA store (tls_ctx_load_system_ca, later, off the path to
 * the first answer). */
struct tls_profile *tls_profile_opportunistic(char *err, size_t errsz);
/* `auth_name` and `ca_file` are copied. */
struct tls_profile *tls_profile_strict(const char *auth_name, const char *ca_file, char *err, size_t errsz);
struct tls_profile *tls_profile_ref(struct tls_profile *p);
void tls_profile_unref(struct tls_profile *p);
/* Is `p` a strict profile for this name and CA file, the file's content
 * unchanged (a reload may keep it)? A CA file rewritten under the same
 * path is read again. */
bool tls_profile_matches(const struct tls_profile *p, const char *auth_name, const char *ca_file);
/* Strict: the session to resume next time (taken). */
void tls_profile_set_session(struct tls_profile *p, struct tls_session *s);

#endif
