/* proxy/targets.h: the servers of transparent mode, made on demand.
 *
 * An intercepted query goes to the address it was sent to: no route table,
 * no choice of server. Each such address gets a route_server (opportunistic
 * TLS with the process's profile, authoritative) when a query first needs
 * it (no name; its profile borrowed from the table, which outlives it),
 * held by every query and transfer that uses it (route_server_hold);
 * once none does, it waits in a small idle cache, least recently used
 * evicted. What is learnt about the address lives on in the health and
 * probe tables, which are sized for the Internet; this cache only spares
 * rebuilding a server per query.
 *
 * Owns its servers; borrows the health table (pins an entry per server). */
#ifndef DOTWARD_PROXY_TARGETS_H
#define DOTWARD_PROXY_TARGETS_H

#include "lib/net.h"

struct health_table;
struct route_server;
struct targets;
struct tls_profile;

/* Keeps at most `idle_max` servers nobody holds. `seed` keys the hash. */
struct targets *targets_new(struct health_table *health, unsigned idle_max, uint32_t seed);
/* Every server must have been released. */
void targets_free(struct targets *t);
/* The opportunistic profile new servers use (a reference is taken). */
void targets_set_profile(struct targets *t, struct tls_profile *opportunistic);
/* The server for `to` (IP and port), held once for the caller: release it
 * with route_server_release. NULL on no memory or without a profile. */
struct route_server *targets_get(struct targets *t, const struct net_addr *to);
unsigned targets_count(const struct targets *t);

#endif
