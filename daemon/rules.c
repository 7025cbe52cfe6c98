/* daemon/rules.c: the ruleset of `dotward --print-rules host|gateway`.
 *
 * What the kernel does, and why the rules look the way they do (measured on
 * Linux 6.18 with nft 1.0.6, test/system/test_transparent_rules.py):
 * - `tproxy` looks up a socket for the packet (an established one, then a
 *   listener on the target address). Without one it does not drop the
 *   packet: the rule simply does not match and the next rule is evaluated.
 *   So "fail closed" needs an explicit drop after the tproxy rules, and
 *   without it a gateway forwards the query to its server as if there were
 *   no rules ("fail open").
 * - Locally generated packets reach prerouting only by looping through lo:
 *   the output chain marks them, policy routing sends marked packets to a
 *   `local` route, and they keep that route on lo. A packet whose tproxy
 *   found no socket can no longer be sent to its server, so host mode can
 *   only fail closed.
 * - A TCP segment that is not a SYN, sent while dotward was down, must not
 *   go to dotward's listener (it would answer with a reset): in gateway
 *   mode only new connections go to tproxy, and the later segments of the
 *   connections dotward accepted are found with `socket transparent 1`. */
#include "daemon/rules.h"

#include <ctype.h>
#include <string.h>
#include <sys/socket.h>

#include "config/config.h"
#include "lib/net.h"

/* The one address per family that tproxy delivers to (the first listed). */
struct targets {
    const struct net_addr *v4, *v6;
};

static const char *mode_name(enum rules_mode m)
{
    return m == RULES_HOST ? "host" : "gateway";
}

int rules_parse_mode(const char *s, enum rules_mode *out)
{
    if (strcmp(s, "host") == 0)
        *out = RULES_HOST;
    else if (strcmp(s, "gateway") == 0)
        *out = RULES_GATEWAY;
    else
        return -1;
    return 0;
}

static struct targets find_targets(const struct config *cfg)
{
    struct targets t = { NULL, NULL };
    for (size_t i = 0; i < cfg->n_transparent_listen; i++) {
        const struct net_addr *a = &cfg->transparent_listen[i];
        if (net_addr_family(a) == AF_INET && !t.v4)
            t.v4 = a;
        else if (net_addr_family(a) == AF_INET6 && !t.v6)
            t.v6 = a;
    }
    return t;
}

/* An interface name goes into the ruleset inside double quotes: allow what
 * interface names are made of, and nft's trailing wildcard ("lan*"). */
static bool iface_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && !strchr("._-@", c) && !(c == '*' && i == n - 1))
            return false;
    }
    return true;
}

/* A user name (resolved by nft when the rules are loaded) or a number. */
static bool uid_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '-' && !(c == '.' && i > 0))
            return false;
    }
    return s[0] != '-';
}

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Every problem is reported, not only the first. Returns their number. */
static int check(const struct config *cfg, const struct rules_opts *o, FILE *err)
{
    int bad = 0;
    if (cfg->n_transparent_listen == 0) {
        fprintf(err, "--print-rules: no [transparent] listen address in the configuration; the rules need "
                     "the address where tproxy delivers (e.g. listen = 127.0.0.1:5301)\n");
        bad++;
    }
    if (o->mode == RULES_GATEWAY && o->n_ifaces == 0) {
        fprintf(err, "--print-rules gateway: name the LAN interface(s) whose DNS is intercepted with "
                     "--rules-iface IFNAME\n");
        bad++;
    }
    if (o->mode == RULES_HOST && o->n_ifaces > 0) {
        fprintf(err, "--print-rules host: --rules-iface is for gateway mode (host mode intercepts "
                     "what this host sends)\n");
        bad++;
    }
    for (size_t i = 0; i < o->n_ifaces; i++)
        if (!iface_ok(o->ifaces[i])) {
            fprintf(err, "--rules-iface: '%s' is not an interface name\n", o->ifaces[i]);
            bad++;
        }
    if (o->uid && o->mode != RULES_HOST) {
        fprintf(err, "--print-rules gateway: --rules-uid is for host mode (forwarded packets have no "
                     "local user)\n");
        bad++;
    } else if (o->uid && !uid_ok(o->uid)) {
        fprintf(err, "--rules-uid: '%s' is not a user name or number\n", o->uid);
        bad++;
    }
    if (o->fail_open && o->mode == RULES_HOST) {
        fprintf(err, "--print-rules host: --rules-fail-open is for gateway mode; a query this host "
                     "sends is routed to loopback before any rule can tell whether dotward listens, "
                     "and cannot be sent on from there (docs/TRANSPARENT.md)\n");
        bad++;
    }
    if (o->mode == RULES_HOST && cfg->transparent_mark == 0) {
        fprintf(err, "--print-rules host: [transparent] mark is 0; host mode needs it, or dotward's own "
                     "upstream queries would be intercepted again (a loop)\n");
        bad++;
    }
    if (cfg->transparent_mark == RULES_ROUTE_MARK) {
        fprintf(err, "--print-rules: [transparent] mark 0x%x is the mark the rules use for routing; "
                     "choose another\n", RULES_ROUTE_MARK);
        bad++;
    }
    return bad;
}

/* "ip to 127.0.0.1:5301", "ip6 to [::1]:5301"; a wildcard address leaves
 * the address out, so that tproxy uses the incoming interface's own
 * (where a socket bound to the wildcard listens too). */
static const char *tproxy_to(const struct net_addr *a, char *buf, size_t n)
{
    const char *fam = net_addr_family(a) == AF_INET ? "ip" : "ip6";
    char where[80];
    if (net_addr_is_wildcard(a))
        snprintf(where, sizeof where, ":%u", (unsigned)net_addr_port(a));
    else
        net_addr_str(a, where, sizeof where);
    snprintf(buf, n, "%s to %s", fam, where);
    return buf;
}

static void print_header(const struct config *cfg, const struct rules_opts *o, const char *config_path,
                         const struct targets *t, FILE *out)
{
    char a[80];
    fprintf(out, "#!/usr/sbin/nft -f\n");
    fprintf(out, "# dotward --print-rules %s: transparent DNS interception (kernel TPROXY).\n", mode_name(o->mode));
    fprintf(out, "# Configuration: %s\n", config_path ? config_path : "(none: defaults and flags)");
    fprintf(out, "# [transparent] listen:");
    for (size_t i = 0; i < cfg->n_transparent_listen; i++)
        fprintf(out, " %s", net_addr_str(&cfg->transparent_listen[i], a, sizeof a));
    fprintf(out, "; mark 0x%x\n", cfg->transparent_mark);
    if (o->mode == RULES_HOST)
        fprintf(out, "# Host mode: DNS (port 53, UDP and TCP) that %s%s%s sends from this host goes to dotward.\n",
                o->uid ? "user " : "every process", o->uid ? o->uid : "", o->uid ? "" : " but dotward");
    else {
        fprintf(out, "# Gateway mode: DNS (port 53, UDP and TCP) forwarded from");
        for (size_t i = 0; i < o->n_ifaces; i++)
            fprintf(out, " %s", o->ifaces[i]);
        fprintf(out, " goes to dotward.\n");
    }
    if (o->fail_open)
        fprintf(out, "# Fail open: while dotward does not listen, the DNS goes to its servers directly (cleartext).\n");
    else
        fprintf(out, "# Fail closed: while dotward does not listen, the DNS is dropped.\n");
    if (!t->v4 || !t->v6)
        fprintf(out, "# No IPv%c listen address: IPv%c DNS is %s.\n", t->v4 ? '6' : '4', t->v4 ? '6' : '4',
                o->fail_open ? "not intercepted" : "dropped");
    for (size_t i = 0; i < cfg->n_transparent_listen; i++) {
        const struct net_addr *l = &cfg->transparent_listen[i];
        if (l != t->v4 && l != t->v6)
            fprintf(out, "# listen %s is not used: tproxy hands each family to one address.\n",
                    net_addr_str(l, a, sizeof a));
    }
    fprintf(out, "# Load with: nft -f FILE (it replaces an earlier table inet dotward). docs/TRANSPARENT.md\n\n");
}

/* ip(8) commands, as comments with a fixed prefix: the file stays one
 * `nft -f` input, and `sed -n 's/^# setup: //p' FILE | sh` runs them. */
static void print_routing(const struct rules_opts *o, const struct targets *t, FILE *out)
{
    fprintf(out, "# Policy routing (ip(8), not nftables): the packets marked 0x%x below must be\n"
                 "# routed to this host, where the listener takes them. Run as root after every boot:\n",
            RULES_ROUTE_MARK);
    if (t->v4)
        fprintf(out, "# setup: ip rule add fwmark 0x%x lookup %d\n"
                     "# setup: ip route replace local 0.0.0.0/0 dev lo table %d\n",
                RULES_ROUTE_MARK, RULES_TABLE, RULES_TABLE);
    if (t->v6)
        fprintf(out, "# setup: ip -6 rule add fwmark 0x%x lookup %d\n"
                     "# setup: ip -6 route replace local ::/0 dev lo table %d\n",
                RULES_ROUTE_MARK, RULES_TABLE, RULES_TABLE);
    fprintf(out, "#   e.g. sed -n 's/^# setup: //p' rules.nft | sh\n");
    if (o->mode == RULES_GATEWAY)
        fprintf(out, "# The gateway must forward: sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n");
    fprintf(out, "# To stop intercepting:\n# undo: nft delete table inet dotward\n");
    if (t->v4)
        fprintf(out, "# undo: ip rule del fwmark 0x%x lookup %d\n# undo: ip route flush table %d\n",
                RULES_ROUTE_MARK, RULES_TABLE, RULES_TABLE);
    if (t->v6)
        fprintf(out, "# undo: ip -6 rule del fwmark 0x%x lookup %d\n# undo: ip -6 route flush table %d\n",
                RULES_ROUTE_MARK, RULES_TABLE, RULES_TABLE);
    /* `delete` of a table that does not exist fails, so declare it first:
     * loading the file again replaces the rules instead of adding to them. */
    fprintf(out, "\ntable inet dotward\ndelete table inet dotward\n\n");
}

/* Host mode, output: mark what is to be intercepted (the route chain
 * re-routes a packet whose mark it changed). */
static void print_host_output(const struct config *cfg, const struct rules_opts *o, const struct targets *t,
                              FILE *out)
{
    fprintf(out,
            "\t# DNS sent by this host gets mark 0x%x: the policy routing sends it to lo,\n"
            "\t# where the prerouting chain hands it to dotward.\n"
            "\tchain output {\n"
            "\t\ttype route hook output priority mangle; policy accept;\n"
            "\t\tmeta l4proto != { tcp, udp } return\n"
            "\t\tth dport != 53 return\n"
            "\t\t# dotward's own upstream queries carry its mark: they leave as they are (no loop).\n"
            "\t\tmeta mark 0x%x return\n"
            "\t\t# DNS to this host itself (loopback, a local stub resolver, dotward's own\n"
            "\t\t# [server] listen addresses) is not intercepted.\n"
            "\t\tfib daddr type local return\n",
            RULES_ROUTE_MARK, cfg->transparent_mark);
    if (o->uid) {
        fprintf(out, "\t\t# Only user %s's DNS is intercepted.\n", o->uid);
        if (all_digits(o->uid))
            fprintf(out, "\t\tmeta skuid != %s return\n", o->uid);
        else
            fprintf(out, "\t\tmeta skuid != \"%s\" return\n", o->uid);
    }
    const struct { const struct net_addr *a; const char *nfproto; } fam[] = {
        { t->v4, "ipv4" }, { t->v6, "ipv6" },
    };
    for (size_t i = 0; i < 2; i++) {
        if (fam[i].a)
            fprintf(out, "\t\tmeta nfproto %s counter meta mark set 0x%x\n", fam[i].nfproto, RULES_ROUTE_MARK);
        else
            fprintf(out, "\t\t# No %s listen address: that family's DNS is dropped (fail closed).\n"
                         "\t\tmeta nfproto %s counter drop\n",
                    fam[i].nfproto, fam[i].nfproto);
    }
    fprintf(out, "\t}\n\n");
}

static void print_host_prerouting(const struct targets *t, FILE *out)
{
    char to[120];
    fprintf(out,
            "\t# The marked packets come back in on lo; tproxy hands each to dotward's\n"
            "\t# listener with its destination (the server it was sent to) unchanged.\n"
            "\tchain prerouting {\n"
            "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
            "\t\tmeta mark != 0x%x return\n"
            "\t\tiif != \"lo\" return\n",
            RULES_ROUTE_MARK);
    if (t->v4)
        fprintf(out, "\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } counter tproxy %s accept\n", tproxy_to(t->v4, to, sizeof to));
    if (t->v6)
        fprintf(out, "\t\tmeta nfproto ipv6 meta l4proto { tcp, udp } counter tproxy %s accept\n", tproxy_to(t->v6, to, sizeof to));
    fprintf(out,
            "\t\t# Here tproxy found no socket: dotward is not running. Fail closed: drop, rather\n"
            "\t\t# than deliver the query to whatever else listens on port 53 of this host.\n"
            "\t\tcounter drop\n"
            "\t}\n");
}

static void print_gateway_prerouting(const struct rules_opts *o, const struct targets *t, FILE *out)
{
    char to[120];
    fprintf(out,
            "\t# DNS arriving on the LAN side, to any server, goes to dotward's listener\n"
            "\t# with its destination unchanged; mark 0x%x routes it to this host.\n"
            "\tchain prerouting {\n"
            "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
            "\t\tiifname != {",
            RULES_ROUTE_MARK);
    for (size_t i = 0; i < o->n_ifaces; i++)
        fprintf(out, "%s \"%s\"", i ? "," : "", o->ifaces[i]);
    fprintf(out,
            " } return\n"
            "\t\tmeta l4proto != { tcp, udp } return\n"
            "\t\tth dport != 53 return\n"
            "\t\t# DNS to this host itself (a resolver or dotward [server] listening here) is not intercepted.\n"
            "\t\tfib daddr type local return\n"
            "\t\t# UDP: every datagram; TCP: new connections (a segment of a connection made while\n"
            "\t\t# dotward was down would get a reset from its listener).\n");
    const struct { const struct net_addr *a; const char *nfproto; } fam[] = {
        { t->v4, "ipv4" }, { t->v6, "ipv6" },
    };
    for (size_t i = 0; i < 2; i++) {
        if (!fam[i].a)
            continue;
        tproxy_to(fam[i].a, to, sizeof to);
        fprintf(out,
                "\t\tmeta nfproto %s meta l4proto udp counter tproxy %s meta mark set 0x%x accept\n"
                "\t\tmeta nfproto %s meta l4proto tcp ct state new counter tproxy %s meta mark set 0x%x accept\n",
                fam[i].nfproto, to, RULES_ROUTE_MARK, fam[i].nfproto, to, RULES_ROUTE_MARK);
    }
    fprintf(out,
            "\t\t# The rest of the TCP connections dotward accepted.\n"
            "\t\tmeta l4proto tcp socket transparent 1 counter meta mark set 0x%x accept\n",
            RULES_ROUTE_MARK);
    if (o->fail_open)
        fprintf(out,
                "\t\t# Here tproxy found no socket: dotward is not running. Fail open: the query is\n"
                "\t\t# forwarded to its server as it is, in cleartext.\n"
                "\t\tcounter accept\n");
    else
        fprintf(out,
                "\t\t# Here tproxy found no socket: dotward is not running. Fail closed: drop\n"
                "\t\t# (without this rule the gateway would forward the query in cleartext).\n"
                "\t\tcounter drop\n");
    fprintf(out, "\t}\n");
}

int rules_print(const struct config *cfg, const struct rules_opts *o, const char *config_path, FILE *out,
                FILE *err)
{
    if (check(cfg, o, err))
        return 2;
    struct targets t = find_targets(cfg);
    print_header(cfg, o, config_path, &t, out);
    print_routing(o, &t, out);
    fprintf(out, "table inet dotward {\n");
    if (o->mode == RULES_HOST) {
        print_host_output(cfg, o, &t, out);
        print_host_prerouting(&t, out);
    } else {
        print_gateway_prerouting(o, &t, out);
    }
    fprintf(out, "}\n");
    return fflush(out) == 0 && !ferror(out) ? 0 : 1;
}
