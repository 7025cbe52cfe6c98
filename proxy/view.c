/* proxy/view.c */
#include "proxy/view.h"

#include <stdlib.h>

#include "config/config.h"
#include "proxy/route.h"

struct view *view_new(struct config *cfg, struct route_table *routes)
{
    struct view *v = calloc(1, sizeof *v);
    if (!v) {
        config_free(cfg);
        route_table_free(routes);
        return NULL;
    }
    v->refs = 1;
    v->cfg = cfg;
    v->routes = routes;
    return v;
}

struct view *view_ref(struct view *v)
{
    v->refs++;
    return v;
}

void view_unref(struct view *v)
{
    if (!v || --v->refs > 0)
        return;
    route_table_free(v->routes);
    config_free(v->cfg);
    free(v);
}
