/* scripts/bench.d/relay.c: the least a UDP DNS forwarder can do, as a floor for the benchmark.
 *
 * relay LISTEN_IP PORT UPSTREAM_IP UPSTREAM_PORT
 * One thread, one client socket, one upstream socket, recvmmsg/sendmmsg batches of 32. The
 * query ID is rewritten to a slot index (65536 slots, the client address and ID kept there), so
 * the relay does no parsing, no validation, no timeouts and no retries. Whatever it costs in CPU
 * and latency, any real forwarder pays too: the row says what the machine allows. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 32
#define MSGSZ 4096

struct slot {
    struct sockaddr_in client;
    uint16_t id;
};

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int udp_socket(const char *ip, int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int sz = 1 << 20;
    if (fd < 0 || inet_pton(AF_INET, ip, &a.sin_addr) != 1)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    return fd;
}

int main(int argc, char **argv)
{
    static struct slot slots[65536];
    static uint8_t buf[BATCH][MSGSZ];
    static struct sockaddr_in from[BATCH];
    struct mmsghdr mm[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in up = { .sin_family = AF_INET };
    uint16_t next = 0;
    if (argc != 5) {
        fprintf(stderr, "usage: relay LISTEN_IP PORT UPSTREAM_IP UPSTREAM_PORT\n");
        return 2;
    }
    up.sin_port = htons((uint16_t)atoi(argv[4]));
    inet_pton(AF_INET, argv[3], &up.sin_addr);
    int cfd = udp_socket(argv[1], atoi(argv[2]));
    int ufd = udp_socket("0.0.0.0", 0);
    if (cfd < 0 || ufd < 0) {
        perror("relay: socket");
        return 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    struct pollfd pf[2] = { { .fd = cfd, .events = POLLIN }, { .fd = ufd, .events = POLLIN } };
    while (!stop) {
        if (poll(pf, 2, 200) <= 0)
            continue;
        for (int side = 0; side < 2; side++) {
            int fd = side == 0 ? cfd : ufd;
            for (int i = 0; i < BATCH; i++) {
                iov[i] = (struct iovec){ buf[i], MSGSZ };
                mm[i].msg_hdr = (struct msghdr){ .msg_name = &from[i], .msg_namelen = sizeof from[i],
                                                 .msg_iov = &iov[i], .msg_iovlen = 1 };
            }
            int n = recvmmsg(fd, mm, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0)
                continue;
            int k = 0;
            for (int i = 0; i < n; i++) {
                uint8_t *m = buf[i];
                if (mm[i].msg_len < 12)
                    continue;
                uint16_t id = (uint16_t)(m[0] << 8 | m[1]);
                iov[k] = (struct iovec){ m, mm[i].msg_len };
                if (side == 0) { /* client -> upstream: remember who asked, send with a slot id */
                    slots[next] = (struct slot){ from[i], id };
                    m[0] = (uint8_t)(next >> 8);
                    m[1] = (uint8_t)next;
                    next++;
                    from[k] = up;
                } else { /* upstream -> client: restore the id */
                    m[0] = (uint8_t)(slots[id].id >> 8);
                    m[1] = (uint8_t)slots[id].id;
                    from[k] = slots[id].client;
                }
                mm[k].msg_hdr = (struct msghdr){ .msg_name = &from[k], .msg_namelen = sizeof from[k],
                                                 .msg_iov = &iov[k], .msg_iovlen = 1 };
                k++;
            }
            if (k > 0)
                sendmmsg(side == 0 ? ufd : cfd, mm, (unsigned)k, 0);
        }
    }
    return 0;
}
