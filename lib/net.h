/* lib/net.h: addresses, prefixes and the socket calls. Owns nothing;
 * every function works on caller-provided storage. */
#ifndef DOTWARD_NET_H
#define DOTWARD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

struct net_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
};

/* "IP", "IP:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 literal.
 * Returns 0, or -1 if `s` is not an address (it may be a host name). */
int net_addr_parse(const char *s, uint16_t default_port, struct net_addr *out);
/* Splits "HOST[:PORT]" / "[HOST]:PORT" into host and port; for a host name.
 * Returns 0, or -1 on a malformed port. `host` gets at most hostsz-1 bytes. */
int net_host_port_split(const char *s, uint16_t default_port, char *host, size_t hostsz, uint16_t *port);
/* "1.2.3.4:53" / "[::1]:53" into buf; returns buf. */
const char *net_addr_str(const struct net_addr *a, char *buf, size_t bufsz);
/* "1.2.3.4" / "::1", no port. */
const char *net_ip_str(const struct net_addr *a, char *buf, size_t bufsz);
#define NET_ADDRSTRLEN 64
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b); /* ip and port */
bool net_ip_equal(const struct net_addr *a, const struct net_addr *b);   /* ip only */
uint16_t net_addr_port(const struct net_addr *a);
void net_addr_set_port(struct net_addr *a, uint16_t port);
int net_addr_family(const struct net_addr *a);

struct net_prefix {
    int family; /* AF_INET or AF_INET6 */
    uint8_t bytes[16];
    unsigned bits;
};
/* "10.0.0.0/8", "::1/128", or a bare address (full length). Returns 0 or -1. */
int net_prefix_parse(const char *s, struct net_prefix *out);
/* IPv4-mapped IPv6 sources match IPv4 prefixes. */
bool net_prefix_match(const struct net_prefix *p, const struct net_addr *a);
const char *net_prefix_str(const struct net_prefix *p, char *buf, size_t bufsz);

/* Sockets: always non-blocking and close-on-exec. Return fd or -1 with errno. */
int net_udp_bind(const struct net_addr *a);
int net_tcp_listen(const struct net_addr *a, int backlog);
/* Unbound UDP socket of the family, on a random ephemeral port the kernel picks. */
int net_udp_ephemeral(int family);
/* Starts a non-blocking connect from a socket with firewall mark `mark`
 * (0: none); returns fd (connect may be in progress) or -1. */
int net_tcp_connect(const struct net_addr *a, unsigned mark);
/* An errno that says this host ran short (descriptors, buffers, memory,
 * local ports), not that the peer or the path failed. */
bool net_errno_local(int err);

/* The local address a datagram arrived on, from IP_PKTINFO/IPV6_PKTINFO on
 * a socket bound to a wildcard address: its answer leaves from there, not
 * from whichever address the route would pick (a multi-homed host).
 * family 0: not known (the socket is bound to one address anyway). */
struct net_local {
    int family;
    int ifindex;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } a;
};
/* Transparent proxying (TPROXY): a UDP socket that receives datagrams for
 * any address the firewall steers to it, each with its original
 * destination (IP_RECVORIGDSTADDR); a TCP listener whose accepted sockets
 * carry the original destination as their local address; and a socket
 * bound to an address that is not this host's, to answer from it. Each
 * needs CAP_NET_ADMIN. */
int net_udp_bind_transparent(const struct net_addr *a);
int net_tcp_listen_transparent(const struct net_addr *a, int backlog);
int net_udp_reply_from(const struct net_addr *from);
/* SO_MARK, so the interception rules let our own traffic pass. 0: nothing done. */
int net_set_mark(int fd, unsigned mark);

/* Asks the kernel for each datagram's local address (listeners on 0.0.0.0 or [::]). */
int net_udp_want_local(int fd, int family);
/* Is `a` 0.0.0.0 or [::] (any port)? */
bool net_addr_is_wildcard(const struct net_addr *a);
/* A control message that sends a datagram from `local`: fills `buf` (at
 * least NET_LOCAL_CMSG bytes) and returns its length, 0 when local is unknown. */
#define NET_LOCAL_CMSG 64
size_t net_local_cmsg(const struct net_local *local, void *buf);

/* One recvmmsg(2) worth of datagrams. Each carries at most NET_BATCH_BYTES;
 * a longer one is marked truncated. About 130 KB: callers keep it on their
 * stack, which is fine in the loop's own thread. */
#define NET_BATCH 32
#define NET_BATCH_BYTES 4096
struct net_batch {
    uint8_t buf[NET_BATCH][NET_BATCH_BYTES];
    size_t len[NET_BATCH];
    bool truncated[NET_BATCH];
    struct net_addr from[NET_BATCH];
    struct net_local local[NET_BATCH];   /* family 0 unless net_udp_want_local */
    struct net_addr orig[NET_BATCH];     /* original destination (len 0 unless transparent) */
};
/* Reads up to NET_BATCH datagrams without blocking. Returns how many (0 when
 * none are waiting), or -1 with errno on a real error. */
int net_recv_batch(int fd, struct net_batch *b);

#endif
