/* proxy/view.h: one generation of what the configuration tells the data
 * path: the settings and the route table. Built whole (daemon/), swapped in
 * at once (proxy_swap), never changed afterwards. Each query holds a
 * reference to the view it started with, so a reload never changes a query
 * in flight, and an old view's servers and TLS profiles live until its last
 * query ends. */
#ifndef DOTWARD_PROXY_VIEW_H
#define DOTWARD_PROXY_VIEW_H

struct config;
struct route_table;

struct view {
    unsigned refs;
    struct config *cfg;          /* owned */
    struct route_table *routes;  /* owned */
};

/* Takes `cfg` and `routes` (both freed on failure too). refs = 1. */
struct view *view_new(struct config *cfg, struct route_table *routes);
struct view *view_ref(struct view *v);
void view_unref(struct view *v);

#endif
