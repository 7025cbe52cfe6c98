/* proxy/tls_profile.c */
#include "proxy/tls_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/tls.h"

/* FNV-1a over the file: enough to see that a CA file was rewritten (not a
 * security check: the file itself is trusted). Returns 0 if unreadable. */
static uint64_t file_digest(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    unsigned char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 0x100000001b3ull;
    fclose(f);
    return h ? h : 1;
}

static struct tls_profile *make(const struct tls_ctx_opts *o, const char *auth_name, const char *ca_file,
                                char *err, size_t errsz)
{
    struct tls_profile *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    p->refs = 1;
    p->strict = o->mode == TLS_MODE_STRICT;
    if ((auth_name && !(p->auth_name = strdup(auth_name))) || (ca_file && !(p->ca_file = strdup(ca_file)))) {
        snprintf(err, errsz, "out of memory");
        tls_profile_unref(p);
        return NULL;
    }
    if (ca_file)
        p->ca_digest = file_digest(ca_file);
    if (!(p->ctx = tls_ctx_new(o, err, errsz))) {
        tls_profile_unref(p);
        return NULL;
    }
    return p;
}

struct tls_profile *tls_profile_opportunistic(char *err, size_t errsz)
{
    struct tls_ctx_opts o = { .mode = TLS_MODE_OPPORTUNISTIC, .ca_file = NULL, .system_ca = false };
    return make(&o, NULL, NULL, err, errsz);
}

struct tls_profile *tls_profile_strict(const char *auth_name, const char *ca_file, char *err, size_t errsz)
{
    struct tls_ctx_opts o = { .mode = TLS_MODE_STRICT, .ca_file = ca_file, .system_ca = ca_file == NULL };
    return make(&o, auth_name, ca_file, err, errsz);
}

struct tls_profile *tls_profile_ref(struct tls_profile *p)
{
    p->refs++;
    return p;
}

void tls_profile_unref(struct tls_profile *p)
{
    if (!p || --p->refs > 0)
        return;
    tls_session_free(p->session);
    tls_ctx_free(p->ctx);
    free(p->auth_name);
    free(p->ca_file);
    free(p);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool tls_profile_matches(const struct tls_profile *p, const char *auth_name, const char *ca_file)
{
    return p->strict && same_str(p->auth_name, auth_name) && same_str(p->ca_file, ca_file) &&
           (!ca_file || (p->ca_digest && file_digest(ca_file) == p->ca_digest));
}

void tls_profile_set_session(struct tls_profile *p, struct tls_session *s)
{
    if (p->session == s)
        return;
    tls_session_free(p->session);
    p->session = s;
}
