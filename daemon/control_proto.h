/* daemon/control_proto.h: the control socket's protocol, shared by the daemon
 * (daemon/control.c) and the client (tools/dotward_control.c).
 *
 * The client connects to the Unix stream socket, sends one line
 * "COMMAND [ARGS...]\n" (at most CONTROL_MAX_LINE bytes, newline included;
 * words separated by blanks), and reads until the server closes. The first
 * line of the answer is "ok" or "error: MESSAGE"; the body follows an "ok". */
#ifndef DOTWARD_CONTROL_PROTO_H
#define DOTWARD_CONTROL_PROTO_H

#define CONTROL_DEFAULT_SOCKET "/run/dotward/control.sock"
#define CONTROL_SOCKET_ENV "DOTWARD_CONTROL"
#define CONTROL_MAX_LINE 1024
#define CONTROL_MAX_ARGS 8

/* Every command once: X(id, name, usage, min_args, max_args, help).
 * The server binds `id` to its handler; the client prints the list. */
#define CONTROL_COMMANDS(X) \
    X(stats, "stats", "", 0, 0, \
      "counters, one key=value per line") \
    X(status, "status", "", 0, 0, \
      "version, uptime, listeners, and each upstream with its RTT and DoT status") \
    X(dump_probes, "dump-probes", "[--json]", 0, 1, \
      "the per-IP DoT table (text: superset of rec_control dump-dot-probe-map)") \
    X(probe, "probe", "IP", 1, 1, \
      "probe an upstream IP for DoT now, whatever its status") \
    X(forget, "forget", "IP|all", 1, 1, \
      "drop the DoT table entry of IP (or every entry)") \
    X(reload, "reload", "", 0, 0, \
      "re-read the configuration file (like SIGHUP); the result is logged") \
    X(log_level, "log-level", "LEVEL", 1, 1, \
      "set the log level: error, warning, notice, info or debug") \
    X(help, "help", "", 0, 0, \
      "this list")

#endif
