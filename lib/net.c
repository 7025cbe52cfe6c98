/* lib/net.c: address parsing and formatting, prefixes, socket setup.
 * Owns nothing; see net.h. */
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Socket buffers for UDP: enough for bursts of a few hundred answers.
 * The kernel caps this at net.core.rmem_max; failure is harmless. */
#define NET_UDP_BUFSZ (1 << 20)

/* "1".."65535", digits only (no sign, no spaces); -1 otherwise. */
static int net_port_parse(const char *s, uint16_t *out)
{
    unsigned long v = 0;
    size_t i;

    if (!s[0])
        return -1;
    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5)
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static void net_addr_set4(struct net_addr *out, const struct in_addr *ip, uint16_t port)
{
    memset(out, 0, sizeof(*out));
    out->u.in4.sin_family = AF_INET;
    out->u.in4.sin_addr = *ip;
    out->u.in4.sin_port = htons(port);
    out->len = sizeof(struct sockaddr_in);
}

static void net_addr_set6(struct net_addr *out, const struct in6_addr *ip, uint16_t port)
{
    memset(out, 0, sizeof(*out));
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_addr = *ip;
    out->u.in6.sin6_port = htons(port);
    out->len = sizeof(struct sockaddr_in6);
}

/* A default_port of 0 lets callers parse a bare IP (port 0); an explicit
 * ":0" is always rejected. */
int net_addr_parse(const char *s, uint16_t default_port, struct net_addr *out)
{
    char ip[INET6_ADDRSTRLEN + 1];
    struct in_addr a4;
    struct in6_addr a6;
    uint16_t port = default_port;
    const char *colon;
    size_t n;

    if (!s || !s[0])
        return -1;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return -1;
        n = (size_t)(end - s - 1);
        if (n == 0 || n >= sizeof(ip))
            return -1;
        memcpy(ip, s + 1, n);
        ip[n] = '\0';
        if (end[1] == ':') {
            if (net_port_parse(end + 2, &port) < 0)
                return -1;
        } else if (end[1] != '\0') {
            return -1;
        }
        /* Brackets are for IPv6 only. */
        if (inet_pton(AF_INET6, ip, &a6) != 1)
            return -1;
        net_addr_set6(out, &a6, port);
        return 0;
    }

    /* A bare IPv6 literal: its colons cannot be a port separator. */
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        net_addr_set6(out, &a6, port);
        return 0;
    }

    colon = strchr(s, ':');
    if (colon) {
        if (strchr(colon + 1, ':'))
            return -1;
        n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof(ip))
            return -1;
        memcpy(ip, s, n);
        ip[n] = '\0';
        if (net_port_parse(colon + 1, &port) < 0)
            return -1;
    } else {
        n = strlen(s);
        if (n >= sizeof(ip))
            return -1;
        memcpy(ip, s, n + 1);
    }
    if (inet_pton(AF_INET, ip, &a4) != 1)
        return -1;
    net_addr_set4(out, &a4, port);
    return 0;
}

int net_host_port_split(const char *s, uint16_t default_port, char *host, size_t hostsz, uint16_t *port)
{
    const char *h, *colon;
    size_t n;
    uint16_t p = default_port;

    if (!s || !s[0] || hostsz == 0)
        return -1;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return -1;
        h = s + 1;
        n = (size_t)(end - h);
        if (end[1] == ':') {
            if (net_port_parse(end + 2, &p) < 0)
                return -1;
        } else if (end[1] != '\0') {
            return -1;
        }
    } else {
        h = s;
        colon = strchr(s, ':');
        if (colon) {
            /* Several colons: an IPv6-like thing without brackets, not HOST:PORT. */
            if (strchr(colon + 1, ':'))
                return -1;
            n = (size_t)(colon - s);
            if (net_port_parse(colon + 1, &p) < 0)
                return -1;
        } else {
            n = strlen(s);
        }
    }
    /* A silently shortened host name would be a different host: refuse. */
    if (n == 0 || n >= hostsz)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = p;
    return 0;
}

const char *net_ip_str(const struct net_addr *a, char *buf, size_t bufsz)
{
    char ip[INET6_ADDRSTRLEN];
    const char *r = NULL;

    if (a->u.sa.sa_family == AF_INET)
        r = inet_ntop(AF_INET, &a->u.in4.sin_addr, ip, sizeof(ip));
    else if (a->u.sa.sa_family == AF_INET6)
        r = inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
    snprintf(buf, bufsz, "%s", r ? r : "?");
    return buf;
}

const char *net_addr_str(const struct net_addr *a, char *buf, size_t bufsz)
{
    char ip[INET6_ADDRSTRLEN + 1];

    net_ip_str(a, ip, sizeof(ip));
    if (a->u.sa.sa_family == AF_INET6)
        snprintf(buf, bufsz, "[%s]:%u", ip, (unsigned)net_addr_port(a));
    else
        snprintf(buf, bufsz, "%s:%u", ip, (unsigned)net_addr_port(a));
    return buf;
}

bool net_ip_equal(const struct net_addr *a, const struct net_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0 &&
               a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id;
    return false;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    return net_ip_equal(a, b) && net_addr_port(a) == net_addr_port(b);
}

uint16_t net_addr_port(const struct net_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in4.sin_port);
    if (a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return 0;
}

void net_addr_set_port(struct net_addr *a, uint16_t port)
{
    if (a->u.sa.sa_family == AF_INET)
        a->u.in4.sin_port = htons(port);
    else if (a->u.sa.sa_family == AF_INET6)
        a->u.in6.sin6_port = htons(port);
}

int net_addr_family(const struct net_addr *a)
{
    return a->u.sa.sa_family;
}

/* Prefixes */

int net_prefix_parse(const char *s, struct net_prefix *out)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash;
    unsigned bits, max, i;
    size_t n;

    if (!s || !s[0])
        return -1;
    memset(out, 0, sizeof(*out));
    slash = strchr(s, '/');
    n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(ip))
        return -1;
    memcpy(ip, s, n);
    ip[n] = '\0';

    if (inet_pton(AF_INET, ip, out->bytes) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, ip, out->bytes) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }

    bits = max;
    if (slash) {
        const char *d = slash + 1;
        if (!d[0] || strlen(d) > 3)
            return -1;
        bits = 0;
        for (; *d; d++) {
            if (*d < '0' || *d > '9')
                return -1;
            bits = bits * 10 + (unsigned)(*d - '0');
        }
        if (bits > max)
            return -1;
    }
    out->bits = bits;

    /* Host bits set ("10.1.2.3/8") are accepted and cleared, so that
     * matching and printing see the network address. */
    for (i = 0; i < max / 8; i++) {
        unsigned keep = bits > i * 8 ? bits - i * 8 : 0;
        if (keep < 8)
            out->bytes[i] &= (uint8_t)(0xff00u >> keep);
    }
    return 0;
}

static bool net_bits_match(const uint8_t *p, const uint8_t *a, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (memcmp(p, a, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff00u >> rest);
        if ((p[full] & mask) != (a[full] & mask))
            return false;
    }
    return true;
}

bool net_prefix_match(const struct net_prefix *p, const struct net_addr *a)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    int fam = a->u.sa.sa_family;

    if (p->family == AF_INET) {
        if (fam == AF_INET)
            return net_bits_match(p->bytes, (const uint8_t *)&a->u.in4.sin_addr, p->bits);
        /* An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d. */
        if (fam == AF_INET6 && memcmp(a->u.in6.sin6_addr.s6_addr, mapped, 12) == 0)
            return net_bits_match(p->bytes, a->u.in6.sin6_addr.s6_addr + 12, p->bits);
        return false;
    }
    if (p->family == AF_INET6 && fam == AF_INET6)
        return net_bits_match(p->bytes, a->u.in6.sin6_addr.s6_addr, p->bits);
    return false;
}

const char *net_prefix_str(const struct net_prefix *p, char *buf, size_t bufsz)
{
    char ip[INET6_ADDRSTRLEN];

    if (!inet_ntop(p->family, p->bytes, ip, sizeof(ip)))
        snprintf(ip, sizeof(ip), "?");
    snprintf(buf, bufsz, "%s/%u", ip, p->bits);
    return buf;
}

/* Sockets */

static void net_close_keep_errno(int fd)
{
    int e = errno;
    close(fd);
    errno = e;
}

static void net_udp_buffers(int fd)
{
    int sz = NET_UDP_BUFSZ;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

/* V6ONLY so that "::" and "0.0.0.0" on one port can both be bound.
 * SO_REUSEADDR for TCP only, so a restart does not wait for TIME_WAIT:
 * on a UDP socket Linux would let a second process bind the same port and
 * silently take its traffic, instead of failing with EADDRINUSE. */
static int net_listen_opts(int fd, int family, bool reuse)
{
    int one = 1;

    if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -1;
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        return -1;
    return 0;
}

static int net_family_ok(int family)
{
    if (family != AF_INET && family != AF_INET6) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    return 0;
}

static int set_transparent(int fd, int family)
{
    int one = 1;
    if (family == AF_INET6)
        return setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one);
    return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
}

/* TPROXY targets also learn where each datagram was sent to. */
static int want_origdst(int fd, int family)
{
    int one = 1;
    if (family == AF_INET6)
        return setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof one);
    return setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof one);
}

static int udp_bind(const struct net_addr *a, bool transparent)
{
    int fam = net_addr_family(a);
    int fd;

    if (net_family_ok(fam) < 0)
        return -1;
    fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (net_listen_opts(fd, fam, false) < 0 ||
        (transparent && (set_transparent(fd, fam) < 0 || want_origdst(fd, fam) < 0)))
        goto fail;
    net_udp_buffers(fd);
    if (bind(fd, &a->u.sa, a->len) < 0)
        goto fail;
    return fd;
fail:
    net_close_keep_errno(fd);
    return -1;
}

int net_udp_bind(const struct net_addr *a) { return udp_bind(a, false); }
int net_udp_bind_transparent(const struct net_addr *a) { return udp_bind(a, true); }

static int tcp_listen(const struct net_addr *a, int backlog, bool transparent)
{
    int fam = net_addr_family(a);
    int fd;

    if (net_family_ok(fam) < 0)
        return -1;
    fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (net_listen_opts(fd, fam, true) < 0 || (transparent && set_transparent(fd, fam) < 0))
        goto fail;
    if (bind(fd, &a->u.sa, a->len) < 0)
        goto fail;
    if (listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    net_close_keep_errno(fd);
    return -1;
}

int net_tcp_listen(const struct net_addr *a, int backlog) { return tcp_listen(a, backlog, false); }
int net_tcp_listen_transparent(const struct net_addr *a, int backlog) { return tcp_listen(a, backlog, true); }

int net_udp_ephemeral(int family)
{
    struct net_addr any;
    int fd, one = 1;

    if (net_family_ok(family) < 0)
        return -1;
    memset(&any, 0, sizeof(any));
    if (family == AF_INET) {
        any.u.in4.sin_family = AF_INET;
        any.u.in4.sin_addr.s_addr = htonl(INADDR_ANY);
        any.len = sizeof(struct sockaddr_in);
    } else {
        any.u.in6.sin6_family = AF_INET6;
        any.u.in6.sin6_addr = in6addr_any;
        any.len = sizeof(struct sockaddr_in6);
    }
    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    net_udp_buffers(fd);
    /* Port 0: the kernel picks a random port from the ephemeral range,
     * which is part of our defence against spoofed answers. */
    if (bind(fd, &any.u.sa, any.len) < 0)
        goto fail;
    return fd;
fail:
    net_close_keep_errno(fd);
    return -1;
}

bool net_errno_local(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM || err == EAGAIN ||
           err == EADDRINUSE || err == EINTR || err == EAFNOSUPPORT;
}

int net_tcp_connect(const struct net_addr *a, unsigned mark)
{
    int fam = net_addr_family(a);
    int fd, one = 1;

    if (net_family_ok(fam) < 0)
        return -1;
    fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* DNS messages are small and written whole: do not wait for Nagle. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 || net_set_mark(fd, mark) < 0)
        goto fail;
    if (connect(fd, &a->u.sa, a->len) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:
    net_close_keep_errno(fd);
    return -1;
}

int net_udp_want_local(int fd, int family)
{
    int one = 1;
    if (family == AF_INET6)
        return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
}

bool net_addr_is_wildcard(const struct net_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->u.sa.sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
    return false;
}

size_t net_local_cmsg(const struct net_local *local, void *buf)
{
    if (!local || !local->family)
        return 0;
    struct msghdr mh = { .msg_control = buf, .msg_controllen = NET_LOCAL_CMSG };
    memset(buf, 0, NET_LOCAL_CMSG);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (local->family == AF_INET) {
        struct in_pktinfo pi = { .ipi_spec_dst = local->a.v4 };
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(c), &pi, sizeof pi);
        return CMSG_SPACE(sizeof pi);
    }
    struct in6_pktinfo pi6 = { .ipi6_addr = local->a.v6, .ipi6_ifindex = (unsigned)local->ifindex };
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi6);
    memcpy(CMSG_DATA(c), &pi6, sizeof pi6);
    return CMSG_SPACE(sizeof pi6);
}


int net_set_mark(int fd, unsigned mark)
{
    return mark ? setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) : 0;
}

int net_udp_reply_from(const struct net_addr *from)
{
    int fam = net_addr_family(from), one = 1;
    if (net_family_ok(fam) < 0)
        return -1;
    int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Several replies may leave from one address at once: reuse it. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 || set_transparent(fd, fam) < 0 ||
        (fam == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(fd, &from->u.sa, from->len) < 0)
        goto fail;
    return fd;
fail:
    net_close_keep_errno(fd);
    return -1;
}

static void read_local(struct msghdr *mh, struct net_local *out, struct net_addr *orig)
{
    out->family = 0;
    orig->len = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) {
            memcpy(&orig->u.in4, CMSG_DATA(c), sizeof orig->u.in4);
            orig->len = sizeof orig->u.in4;
            continue;
        }
        if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR) {
            memcpy(&orig->u.in6, CMSG_DATA(c), sizeof orig->u.in6);
            orig->len = sizeof orig->u.in6;
            continue;
        }
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            out->family = AF_INET;
            out->ifindex = pi.ipi_ifindex;
            out->a.v4 = pi.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi6;
            memcpy(&pi6, CMSG_DATA(c), sizeof pi6);
            out->family = AF_INET6;
            out->ifindex = (int)pi6.ipi6_ifindex;
            out->a.v6 = pi6.ipi6_addr;
        }
    }
}

int net_recv_batch(int fd, struct net_batch *b)
{
    struct mmsghdr mm[NET_BATCH];
    struct iovec iov[NET_BATCH];
    /* Room for the local address, filled only where the socket asked for it. */
    uint64_t ctl[NET_BATCH][(NET_LOCAL_CMSG + 64) / 8];
    for (int i = 0; i < NET_BATCH; i++) {
        iov[i].iov_base = b->buf[i];
        iov[i].iov_len = sizeof b->buf[i];
        memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
        mm[i].msg_hdr.msg_name = &b->from[i].u.ss;
        mm[i].msg_hdr.msg_namelen = sizeof b->from[i].u.ss;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_control = ctl[i];
        mm[i].msg_hdr.msg_controllen = sizeof ctl[i];
    }
    int n = recvmmsg(fd, mm, NET_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    for (int i = 0; i < n; i++) {
        b->from[i].len = mm[i].msg_hdr.msg_namelen;
        b->len[i] = mm[i].msg_len;
        b->truncated[i] = (mm[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        read_local(&mm[i].msg_hdr, &b->local[i], &b->orig[i]);
    }
    return n;
}
