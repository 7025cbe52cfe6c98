/* tools/dotward_control.c: dotward-control, the client of dotward's control
 * socket. Small and blocking on purpose (no libev): connect, send one line,
 * copy the answer to stdout, exit with its status. Every wait is bounded by
 * one overall deadline. Protocol: daemon/control_proto.h. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/control_proto.h"
#include "version.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define CTL_TIMEOUT_MS 5000
#define CTL_MAX_HEADER 4096

static const struct { const char *name, *usage, *help; } ctl_cmds[] = {
#define CTL_ROW(id, name, usage, min, max, help) { name, usage, help },
    CONTROL_COMMANDS(CTL_ROW)
#undef CTL_ROW
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dotward-control [-s|--socket PATH] COMMAND [ARGS...]\n"
            "  -s, --socket PATH   dotward's control socket (default: $" CONTROL_SOCKET_ENV ",\n"
            "                      else " CONTROL_DEFAULT_SOCKET ")\n"
            "      --version       print the version and exit\n"
            "  -h, --help          this text\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", ctl_cmds[i].name, ctl_cmds[i].usage);
        fprintf(out, "  %-18s %s\n", head, ctl_cmds[i].help);
    }
    fprintf(out, "exit status: 0 ok, 1 the command failed, 2 usage error, 3 dotward cannot be reached\n");
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline. Returns 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r;
    }
}

/* Joins the words into "w1 w2 ...\n". Returns 0, or -1 after a message. */
static int build_line(int argc, char **argv, char *line, size_t sz)
{
    size_t o = 0;
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        size_t n = strlen(w);
        if (n == 0) {
            fprintf(stderr, "dotward-control: empty argument\n");
            return -1;
        }
        for (size_t k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)w[k];
            if (ch <= 0x20 || ch == 0x7f) {
                fprintf(stderr, "dotward-control: argument %d contains blanks or control characters\n", i + 1);
                return -1;
            }
        }
        if (o + n + 2 > sz) { /* the separator or newline, and the NUL */
            fprintf(stderr, "dotward-control: command line too long (at most %d bytes)\n", CONTROL_MAX_LINE);
            return -1;
        }
        if (i > 0)
            line[o++] = ' ';
        memcpy(line + o, w, n);
        o += n;
    }
    line[o++] = '\n';
    line[o] = 0;
    return 0;
}

static int ctl_connect(const char *path, long long deadline)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "dotward-control: socket: %s\n", strerror(errno));
        return -1;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
            return fd;
        if (errno == EINTR)
            continue;
        /* A full backlog: dotward is busy, not gone. Retry until the deadline. */
        if (errno == EAGAIN && now_ms() + 20 < deadline) {
            poll(NULL, 0, 20);
            continue;
        }
        fprintf(stderr, "dotward-control: cannot connect to %s: %s\n", path,
                errno == EAGAIN ? "connection queue full (dotward busy)" : strerror(errno));
        close(fd);
        return -1;
    }
}

/* Returns 0, or an errno value (ETIMEDOUT when the deadline passed). */
static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r > 0)
                continue;
            return r == 0 ? ETIMEDOUT : errno;
        }
        return errno;
    }
    return 0;
}

/* Reads the answer: the status line, then the body (copied to stdout).
 * `send_err`: our line could not be sent in full (dotward may still have
 * answered, with an error, before reading it all); reported if no answer. */
static int read_answer(int fd, const char *path, long long deadline, int send_err)
{
    char head[CTL_MAX_HEADER];
    size_t hlen = 0;
    int status = -1; /* -1 status line not complete yet, else the exit code */
    char buf[16384];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_fd(fd, POLLIN, deadline);
                if (r > 0)
                    continue;
                fprintf(stderr, "dotward-control: %s: %s\n", path,
                        r == 0 ? "no complete answer within 5 s" : strerror(errno));
                return EXIT_UNREACHABLE;
            }
            if (errno == ECONNRESET && status >= 0)
                break; /* the answer is complete; dotward closed with our bytes unread */
            if (send_err && status < 0)
                break;
            fprintf(stderr, "dotward-control: reading from %s: %s\n", path, strerror(errno));
            return status >= 0 ? EXIT_FAILED : EXIT_UNREACHABLE;
        }
        if (n == 0)
            break;
        const char *p = buf;
        size_t len = (size_t)n;
        if (status < 0) {
            const char *nl = memchr(buf, '\n', len);
            size_t take = nl ? (size_t)(nl - buf) + 1 : len;
            if (hlen + take >= sizeof head) {
                fprintf(stderr, "dotward-control: %s: malformed answer (status line too long)\n", path);
                return EXIT_FAILED;
            }
            memcpy(head + hlen, buf, take);
            hlen += take;
            p += take;
            len -= take;
            if (!nl)
                continue;
            head[hlen - 1] = 0;
            if (strcmp(head, "ok") == 0) {
                status = EXIT_OK;
            } else if (strncmp(head, "error: ", 7) == 0) {
                fprintf(stderr, "dotward-control: %s\n", head + 7);
                status = EXIT_FAILED;
            } else {
                fprintf(stderr, "dotward-control: %s: malformed answer '%.80s'\n", path, head);
                return EXIT_FAILED;
            }
        }
        if (len > 0 && fwrite(p, 1, len, status == EXIT_OK ? stdout : stderr) != len) {
            fprintf(stderr, "dotward-control: writing the answer: %s\n", strerror(errno));
            return EXIT_FAILED;
        }
    }
    if (status < 0 && send_err) {
        fprintf(stderr, "dotward-control: sending to %s: %s\n", path, strerror(send_err));
        return EXIT_UNREACHABLE;
    }
    if (status < 0) {
        fprintf(stderr, "dotward-control: %s closed the connection without %s\n", path,
                hlen ? "a complete answer" : "an answer");
        return EXIT_FAILED;
    }
    return status;
}

int main(int argc, char **argv)
{
    enum { OPT_VERSION = 256 };
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    const char *path = getenv(CONTROL_SOCKET_ENV);
    char line[CONTROL_MAX_LINE + 1];
    int c;

    if (!path || !*path)
        path = CONTROL_DEFAULT_SOCKET;
    /* '+': stop at the command, so its own options ("--json") stay its arguments. */
    while ((c = getopt_long(argc, argv, "+s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            path = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf("dotward-control %s\n", DOTWARD_VERSION);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "dotward-control: no command given\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (build_line(argc - optind, argv + optind, line, sizeof line) < 0)
        return EXIT_USAGE;
    if (!*path || strlen(path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
        fprintf(stderr, "dotward-control: socket path '%s' is empty or too long\n", path);
        return EXIT_USAGE;
    }

    long long deadline = now_ms() + CTL_TIMEOUT_MS;
    int fd = ctl_connect(path, deadline);
    if (fd < 0)
        return EXIT_UNREACHABLE;
    int rc, err = send_all(fd, line, strlen(line), deadline);
    if (err == ETIMEDOUT) {
        fprintf(stderr, "dotward-control: sending to %s: timed out\n", path);
        rc = EXIT_UNREACHABLE;
    } else {
        rc = read_answer(fd, path, deadline, err);
    }
    close(fd);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        fprintf(stderr, "dotward-control: writing the answer: %s\n", strerror(errno));
        rc = EXIT_FAILED;
    }
    return rc;
}
