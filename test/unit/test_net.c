/* test/unit/test_net.c: lib/net.c: address and prefix parsing, printing,
 * matching, and the socket helpers (loopback only, kernel-chosen ports). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include "lib/net.h"

/* ---- addresses ---- */

static void check_addr(const char *in, uint16_t def, const char *want_str, int family, uint16_t port)
{
    struct net_addr a;
    char buf[NET_ADDRSTRLEN];

    memset(&a, 0xa5, sizeof(a));
    if (net_addr_parse(in, def, &a) != 0)
        fail_msg("'%s' should parse", in);
    assert_int_equal(net_addr_family(&a), family);
    assert_int_equal(net_addr_port(&a), port);
    assert_int_equal(a.len, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    assert_string_equal(net_addr_str(&a, buf, sizeof(buf)), want_str);
}

static void test_addr_parse_ok(void **state)
{
    (void)state;
    check_addr("192.0.2.1", 53, "192.0.2.1:53", AF_INET, 53);
    check_addr("192.0.2.1:5353", 53, "192.0.2.1:5353", AF_INET, 5353);
    check_addr("192.0.2.1:65535", 53, "192.0.2.1:65535", AF_INET, 65535);
    check_addr("192.0.2.1:1", 53, "192.0.2.1:1", AF_INET, 1);
    check_addr("0.0.0.0", 53, "0.0.0.0:53", AF_INET, 53);
    check_addr("::1", 53, "[::1]:53", AF_INET6, 53);
    check_addr("2001:db8::1", 5300, "[2001:db8::1]:5300", AF_INET6, 5300);
    check_addr("[2001:db8::1]", 53, "[2001:db8::1]:53", AF_INET6, 53);
    check_addr("[2001:db8::1]:853", 53, "[2001:db8::1]:853", AF_INET6, 853);
    check_addr("[::]:53", 53, "[::]:53", AF_INET6, 53);
    check_addr("::ffff:192.0.2.1", 53, "[::ffff:192.0.2.1]:53", AF_INET6, 53);
    /* An unbracketed IPv6 address never has a port: ":53" is part of it. */
    check_addr("2001:db8::1:53", 53, "[2001:db8::1:53]:53", AF_INET6, 53);
    /* Leading zeros in a port are harmless. */
    check_addr("192.0.2.1:00053", 1, "192.0.2.1:53", AF_INET, 53);
    /* A default port of 0 parses a bare IP. */
    check_addr("192.0.2.1", 0, "192.0.2.1:0", AF_INET, 0);
}

static void test_addr_parse_bad(void **state)
{
    static const char *const bad[] = {
        "", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:99999", "192.0.2.1:123456",
        "192.0.2.1:", "192.0.2.1:53x", "192.0.2.1:-1", "192.0.2.1:+53", "192.0.2.1: 53",
        " 192.0.2.1", "192.0.2.1 ", "192.0.2", "256.0.0.1", "1.2.3.4.5", "example.org",
        "example.org:53", "[192.0.2.1]:53", "[::1", "[::1]x", "[::1]:", "[::1]:0",
        "[::1]:65536", "[]:53", "[]", "::1]:53", "::g", "1.2.3.4:53:53", ":53",
        "[::1]:53:53", "fe80::1%eth0", "0x7f.0.0.1", "localhost",
    };
    struct net_addr a;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (net_addr_parse(bad[i], 53, &a) != -1)
            fail_msg("'%s' should not parse", bad[i]);
    assert_int_equal(net_addr_parse(NULL, 53, &a), -1);
}

static void test_addr_round_trip(void **state)
{
    static const char *const in[] = {
        "192.0.2.1:53", "10.0.0.1:1", "[::1]:53", "[2001:db8:0:1::a]:65535", "[::ffff:1.2.3.4]:853",
    };
    struct net_addr a, b;
    char buf[NET_ADDRSTRLEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        assert_int_equal(net_addr_parse(in[i], 1, &a), 0);
        assert_string_equal(net_addr_str(&a, buf, sizeof(buf)), in[i]);
        assert_int_equal(net_addr_parse(buf, 1, &b), 0);
        assert_true(net_addr_equal(&a, &b));
    }
}

static void test_addr_ip_str_and_equal(void **state)
{
    struct net_addr a, b, c, d;
    char buf[NET_ADDRSTRLEN];

    (void)state;
    assert_int_equal(net_addr_parse("192.0.2.1:53", 53, &a), 0);
    assert_int_equal(net_addr_parse("192.0.2.1:54", 53, &b), 0);
    assert_int_equal(net_addr_parse("[::ffff:192.0.2.1]:53", 53, &c), 0);
    assert_int_equal(net_addr_parse("[2001:db8::1]:53", 53, &d), 0);
    assert_string_equal(net_ip_str(&a, buf, sizeof(buf)), "192.0.2.1");
    assert_string_equal(net_ip_str(&d, buf, sizeof(buf)), "2001:db8::1");

    assert_false(net_addr_equal(&a, &b));
    assert_true(net_ip_equal(&a, &b));
    /* A mapped address is a different address for equality. */
    assert_false(net_ip_equal(&a, &c));
    assert_false(net_addr_equal(&c, &d));

    net_addr_set_port(&b, 53);
    assert_true(net_addr_equal(&a, &b));
    net_addr_set_port(&d, 5353);
    assert_int_equal(net_addr_port(&d), 5353);
    assert_string_equal(net_addr_str(&d, buf, sizeof(buf)), "[2001:db8::1]:5353");

    /* A small buffer is truncated, never overrun. */
    memset(buf, 'x', sizeof(buf));
    net_addr_str(&d, buf, 6);
    assert_string_equal(buf, "[2001");
    assert_int_equal(buf[6], 'x');
}

static void test_host_port_split(void **state)
{
    char host[16];
    uint16_t port = 0;

    (void)state;
    assert_int_equal(net_host_port_split("dns.example", 53, host, sizeof(host), &port), 0);
    assert_string_equal(host, "dns.example");
    assert_int_equal(port, 53);
    assert_int_equal(net_host_port_split("dns.example:853", 53, host, sizeof(host), &port), 0);
    assert_string_equal(host, "dns.example");
    assert_int_equal(port, 853);
    assert_int_equal(net_host_port_split("[dns.example]:5353", 53, host, sizeof(host), &port), 0);
    assert_string_equal(host, "dns.example");
    assert_int_equal(port, 5353);
    assert_int_equal(net_host_port_split("[dns.example]", 53, host, sizeof(host), &port), 0);
    assert_int_equal(port, 53);

    assert_int_equal(net_host_port_split("dns.example:0", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("dns.example:65536", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("dns.example:", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("dns.example:x", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("a:b:c", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("[dns.example", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("[dns]x", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split(":53", 53, host, sizeof(host), &port), -1);
    assert_int_equal(net_host_port_split("", 53, host, sizeof(host), &port), -1);
    /* 15 characters fit in 16 bytes; 16 would be cut short, so refused. */
    assert_int_equal(net_host_port_split("abcdefghijklmno", 53, host, sizeof(host), &port), 0);
    assert_int_equal(net_host_port_split("abcdefghijklmnop:53", 53, host, sizeof(host), &port), -1);
}

/* ---- prefixes ---- */

static void check_prefix(const char *in, const char *want)
{
    struct net_prefix p;
    char buf[NET_ADDRSTRLEN];

    if (net_prefix_parse(in, &p) != 0)
        fail_msg("'%s' should parse", in);
    assert_string_equal(net_prefix_str(&p, buf, sizeof(buf)), want);
}

static void test_prefix_parse(void **state)
{
    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/x", "10.0.0.0/-1", "10.0.0.0/+8",
        "10.0.0.0/8/8", "10.0.0/8", "::/129", "::1/1000", "10.0.0.0/0008", "example.org/8",
        "[::1]/128", "10.0.0.0 /8", "10.0.0.0/ 8",
    };
    struct net_prefix p;
    size_t i;

    (void)state;
    check_prefix("10.0.0.0/8", "10.0.0.0/8");
    check_prefix("10.1.2.3/8", "10.0.0.0/8"); /* host bits cleared */
    check_prefix("192.0.2.255/23", "192.0.2.0/23");
    check_prefix("192.0.3.255/23", "192.0.2.0/23");
    check_prefix("192.0.2.7", "192.0.2.7/32");
    check_prefix("0.0.0.0/0", "0.0.0.0/0");
    check_prefix("255.255.255.255/0", "0.0.0.0/0");
    check_prefix("::1/128", "::1/128");
    check_prefix("::1", "::1/128");
    check_prefix("::/0", "::/0");
    check_prefix("2001:db8:ffff::1/33", "2001:db8:8000::/33");
    check_prefix("2001:db8::/032", "2001:db8::/32");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (net_prefix_parse(bad[i], &p) != -1)
            fail_msg("'%s' should not parse", bad[i]);
    assert_int_equal(net_prefix_parse("10.0.0.0/8", &p), 0);
    assert_int_equal(p.family, AF_INET);
    assert_int_equal(p.bits, 8);
    assert_int_equal(net_prefix_parse("::1", &p), 0);
    assert_int_equal(p.family, AF_INET6);
    assert_int_equal(p.bits, 128);
}

static bool match(const char *prefix, const char *addr)
{
    struct net_prefix p;
    struct net_addr a;

    assert_int_equal(net_prefix_parse(prefix, &p), 0);
    assert_int_equal(net_addr_parse(addr, 53, &a), 0);
    return net_prefix_match(&p, &a);
}

static void test_prefix_match(void **state)
{
    (void)state;
    assert_true(match("10.0.0.0/8", "10.255.1.2"));
    assert_false(match("10.0.0.0/8", "11.0.0.0"));
    assert_false(match("10.0.0.0/8", "9.255.255.255"));
    assert_true(match("192.0.2.0/23", "192.0.3.200"));
    assert_false(match("192.0.2.0/23", "192.0.4.0"));
    assert_false(match("192.0.2.0/23", "192.0.1.255"));
    assert_true(match("192.0.2.6/31", "192.0.2.7"));
    assert_false(match("192.0.2.6/31", "192.0.2.8"));
    assert_true(match("192.0.2.7", "192.0.2.7"));
    assert_false(match("192.0.2.7", "192.0.2.6"));
    assert_true(match("0.0.0.0/0", "203.0.113.9"));
    /* IPv4 and IPv6 are apart, except for IPv4-mapped sources. */
    assert_false(match("0.0.0.0/0", "2001:db8::1"));
    assert_false(match("::/0", "192.0.2.1"));
    assert_true(match("10.0.0.0/8", "::ffff:10.1.2.3"));
    assert_false(match("10.0.0.0/8", "::ffff:11.1.2.3"));
    assert_true(match("127.0.0.1", "::ffff:127.0.0.1"));
    assert_false(match("10.0.0.0/8", "::10.1.2.3"));       /* compatible, not mapped */
    assert_false(match("10.0.0.0/8", "64:ff9b::10.1.2.3")); /* NAT64, not mapped */
    assert_true(match("::ffff:0:0/96", "::ffff:10.1.2.3"));
    assert_true(match("0.0.0.0/0", "::ffff:1.2.3.4"));

    assert_true(match("::/0", "2001:db8::1"));
    assert_true(match("::/0", "::"));
    assert_true(match("::1/128", "::1"));
    assert_false(match("::1/128", "::2"));
    assert_false(match("::1/128", "::1:0"));
    assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(match("2001:db8::/32", "2001:db9::1"));
    assert_true(match("2001:db8:8000::/33", "2001:db8:ffff::"));
    assert_false(match("2001:db8:8000::/33", "2001:db8:7fff::"));
    assert_true(match("2001:db8::1/127", "2001:db8::"));
}

/* ---- sockets ---- */

static void check_fd_flags(int fd)
{
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static int getsockopt_int(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, opt, &v, &len), 0);
    return v;
}

static uint16_t bound_port(int fd, struct net_addr *out)
{
    struct net_addr tmp;
    struct net_addr *a = out ? out : &tmp;

    a->len = sizeof(a->u);
    assert_int_equal(getsockname(fd, &a->u.sa, &a->len), 0);
    return net_addr_port(a);
}

static void test_udp_bind(void **state)
{
    struct net_addr a, got;
    int fd, fd2, fd6;
    uint16_t port;

    (void)state;
    assert_int_equal(net_addr_parse("127.0.0.1", 0, &a), 0);
    fd = net_udp_bind(&a);
    check_fd_flags(fd);
    port = bound_port(fd, &got);
    assert_true(port != 0);
    assert_string_equal(inet_ntoa(got.u.in4.sin_addr), "127.0.0.1");
    /* The buffers were raised to 1 MiB, capped by net.core.rmem_max; the
     * kernel reports twice the value it was given. */
    {
        FILE *f = fopen("/proc/sys/net/core/rmem_max", "r");
        long max = 0;
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%ld", &max), 1);
        fclose(f);
        if (max > (1 << 20))
            max = 1 << 20;
        assert_true(getsockopt_int(fd, SOL_SOCKET, SO_RCVBUF) >= 2 * max);
    }

    /* A second bind of the same address fails loudly, rather than sharing. */
    net_addr_set_port(&a, port);
    errno = 0;
    fd2 = net_udp_bind(&a);
    assert_int_equal(fd2, -1);
    assert_int_equal(errno, EADDRINUSE);

    assert_int_equal(net_addr_parse("[::1]", 0, &a), 0);
    fd6 = net_udp_bind(&a);
    check_fd_flags(fd6);
    assert_int_equal(getsockopt_int(fd6, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    assert_true(bound_port(fd6, NULL) != 0);
    close(fd6);
    close(fd);
}

static void test_udp_ephemeral(void **state)
{
    struct net_addr a, dst;
    int fd, fd2, fd6, rx;
    char buf[8];

    (void)state;
    fd = net_udp_ephemeral(AF_INET);
    check_fd_flags(fd);
    fd2 = net_udp_ephemeral(AF_INET);
    check_fd_flags(fd2);
    assert_true(bound_port(fd, &a) != 0);
    assert_int_equal(a.u.in4.sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_not_equal(bound_port(fd, NULL), bound_port(fd2, NULL));

    /* It can send to a loopback socket, which sees the ephemeral port. */
    assert_int_equal(net_addr_parse("127.0.0.1", 0, &dst), 0);
    rx = net_udp_bind(&dst);
    assert_true(rx >= 0);
    net_addr_set_port(&dst, bound_port(rx, NULL));
    assert_int_equal(sendto(fd, "ping", 4, 0, &dst.u.sa, dst.len), 4);
    {
        struct pollfd pfd = { rx, POLLIN, 0 };
        struct net_addr from;
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        from.len = sizeof(from.u);
        assert_int_equal(recvfrom(rx, buf, sizeof(buf), 0, &from.u.sa, &from.len), 4);
        assert_int_equal(net_addr_port(&from), bound_port(fd, NULL));
    }
    /* Non-blocking: nothing more to read. */
    assert_int_equal(recv(rx, buf, sizeof(buf), 0), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

    fd6 = net_udp_ephemeral(AF_INET6);
    check_fd_flags(fd6);
    assert_int_equal(getsockopt_int(fd6, IPPROTO_IPV6, IPV6_V6ONLY), 1);

    errno = 0;
    assert_int_equal(net_udp_ephemeral(AF_UNIX), -1);
    assert_int_equal(errno, EAFNOSUPPORT);
    close(fd6);
    close(rx);
    close(fd2);
    close(fd);
}

static void test_tcp_listen_connect(void **state)
{
    const char *const addrs[] = { "127.0.0.1", "[::1]" };
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        struct net_addr a;
        struct pollfd pfd;
        int lfd, cfd, afd, err;
        socklen_t len = sizeof(err);

        assert_int_equal(net_addr_parse(addrs[i], 0, &a), 0);
        lfd = net_tcp_listen(&a, 16);
        check_fd_flags(lfd);
        assert_int_equal(getsockopt_int(lfd, SOL_SOCKET, SO_REUSEADDR), 1);
        if (i == 1)
            assert_int_equal(getsockopt_int(lfd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
        net_addr_set_port(&a, bound_port(lfd, NULL));

        cfd = net_tcp_connect(&a, 0);
        check_fd_flags(cfd);
        assert_int_equal(getsockopt_int(cfd, IPPROTO_TCP, TCP_NODELAY), 1);
        pfd.fd = cfd;
        pfd.events = POLLOUT;
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        assert_int_equal(getsockopt(cfd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
        assert_int_equal(err, 0);

        pfd.fd = lfd;
        pfd.events = POLLIN;
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        afd = accept(lfd, NULL, NULL);
        assert_true(afd >= 0);
        assert_int_equal(write(cfd, "abc", 3), 3);
        pfd.fd = afd;
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        {
            char buf[4];
            assert_int_equal(read(afd, buf, sizeof(buf)), 3);
            assert_memory_equal(buf, "abc", 3);
        }
        close(afd);
        close(cfd);
        close(lfd);
    }
}

static void test_tcp_connect_refused(void **state)
{
    struct net_addr a;
    struct pollfd pfd;
    int lfd, cfd, err = 0;
    socklen_t len = sizeof(err);
    uint16_t port;

    (void)state;
    /* Find a free loopback port: listen, note it, close. */
    assert_int_equal(net_addr_parse("127.0.0.1", 0, &a), 0);
    lfd = net_tcp_listen(&a, 1);
    assert_true(lfd >= 0);
    port = bound_port(lfd, NULL);
    close(lfd);
    net_addr_set_port(&a, port);

    /* The failure is reported now or, after EINPROGRESS, through SO_ERROR. */
    cfd = net_tcp_connect(&a, 0);
    if (cfd < 0) {
        assert_int_equal(errno, ECONNREFUSED);
        return;
    }
    pfd.fd = cfd;
    pfd.events = POLLOUT;
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    assert_int_equal(getsockopt(cfd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
    assert_int_equal(err, ECONNREFUSED);
    close(cfd);
}

static void test_bind_bad_family(void **state)
{
    struct net_addr a;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.u.sa.sa_family = AF_UNIX;
    a.len = sizeof(a.u.sa);
    errno = 0;
    assert_int_equal(net_udp_bind(&a), -1);
    assert_int_equal(errno, EAFNOSUPPORT);
    assert_int_equal(net_tcp_listen(&a, 1), -1);
    assert_int_equal(net_tcp_connect(&a, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_ok),
        cmocka_unit_test(test_addr_parse_bad),
        cmocka_unit_test(test_addr_round_trip),
        cmocka_unit_test(test_addr_ip_str_and_equal),
        cmocka_unit_test(test_host_port_split),
        cmocka_unit_test(test_prefix_parse),
        cmocka_unit_test(test_prefix_match),
        cmocka_unit_test(test_udp_bind),
        cmocka_unit_test(test_udp_ephemeral),
        cmocka_unit_test(test_tcp_listen_connect),
        cmocka_unit_test(test_tcp_connect_refused),
        cmocka_unit_test(test_bind_bad_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
