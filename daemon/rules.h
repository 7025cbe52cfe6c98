/* daemon/rules.h: `dotward --print-rules host|gateway`: the nftables ruleset
 * and the policy-routing commands that hand a legacy resolver's DNS to the
 * [transparent] listen addresses (kernel TPROXY). Only writes text; nothing
 * is loaded, bound or resolved. docs/TRANSPARENT.md explains the rules. */
#ifndef DOTWARD_DAEMON_RULES_H
#define DOTWARD_DAEMON_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config;

enum rules_mode {
    RULES_HOST,    /* DNS that processes of this host send */
    RULES_GATEWAY, /* DNS forwarded through this host from LAN interfaces */
};

#define RULES_MAX_IFACES 16

struct rules_opts {
    enum rules_mode mode;
    const char *ifaces[RULES_MAX_IFACES]; /* gateway: the LAN side; borrowed */
    size_t n_ifaces;
    bool fail_open;  /* gateway: DNS goes to its servers directly while dotward is down */
    const char *uid; /* host: only this user's DNS (name or number); NULL: everyone's */
};

/* The packets the rules hand to dotward carry this mark, and the policy
 * routing sends packets with it to the local host (table RULES_TABLE). */
#define RULES_ROUTE_MARK 0xd54u
#define RULES_TABLE 53

/* "host" or "gateway". Returns 0, or -1 if `s` is neither. */
int rules_parse_mode(const char *s, enum rules_mode *out);

/* Checks `o` against `cfg` and writes the whole ruleset to `out`. Returns 0,
 * or 2 after writing every problem to `err` (then nothing was written to
 * `out`, so `dotward --print-rules host > rules.nft` never leaves half a
 * ruleset). `config_path` (may be NULL) is only named in a comment. */
int rules_print(const struct config *cfg, const struct rules_opts *o, const char *config_path, FILE *out,
                FILE *err);

#endif
