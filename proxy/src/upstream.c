/*
 * Upstream groups on one core: peer selection (smooth weighted round robin,
 * least outstanding, rendezvous hashing on a header or the client address),
 * passive health (ejection after failures in a row, for a cool-down), and a
 * keep-alive pool per peer. Nothing here is shared with other cores.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

static void groups_free(px_group *groups, unsigned n)
{
    for (unsigned i = 0; groups && i < n; i++) {
        px_group *g = &groups[i];
        for (unsigned j = 0; g->peers && j < g->npeers; j++) {
            px_peer *p = &g->peers[j];
            while (p->nidle)
                coil_http_client_close(p->idle[--p->nidle]);
            free(p->idle);
        }
        free(g->peers);
    }
    free(groups);
}

static px_group *groups_build(const px_config *cfg)
{
    px_group *groups = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(px_group));
    if (!groups)
        return NULL;
    for (unsigned i = 0; i < cfg->nupstreams; i++) {
        px_group *g = &groups[i];
        g->conf = &cfg->upstreams[i];
        g->npeers = g->conf->nservers;
        g->peers = calloc(g->npeers, sizeof(px_peer));
        if (!g->peers)
            goto fail;
        for (unsigned j = 0; j < g->npeers; j++) {
            g->peers[j].conf = &g->conf->servers[j];
            g->peers[j].idle = calloc(g->conf->keepalive ? g->conf->keepalive : 1,
                                      sizeof(coil_http_client *));
            if (!g->peers[j].idle)
                goto fail;
        }
    }
    return groups;
fail:
    groups_free(groups, cfg->nupstreams);
    return NULL;
}

int px_core_init(px_core *core, const px_config *cfg, coil_loop *loop, unsigned index)
{
    *core = (px_core){ .loop = loop, .index = index, .cfg = cfg };
    core->groups = groups_build(cfg);
    if (!core->groups)
        return -ENOMEM;
    core->ngroups = cfg->nupstreams;
    px_service_init(core);
    return 0;
}

void px_core_exit(px_core *core)
{
    groups_free(core->groups, core->ngroups);
    core->groups = NULL;
    if (core->release_cfg && core->cfg)
        core->release_cfg(core->cfg);
    core->cfg = NULL;
    while (core->retired) {
        px_retired *r = core->retired;
        core->retired = r->next;
        groups_free(r->groups, r->ngroups);
        if (core->release_cfg)
            core->release_cfg(r->cfg);
        free(r);
    }
}

void px_core_enter(px_core *core, unsigned *gen)
{
    *gen = core->gen;
    core->inflight++;
}

void px_core_leave(px_core *core, unsigned gen)
{
    if (gen == core->gen) {
        core->inflight--;
        return;
    }
    /* A request that began under an earlier configuration: the last one
     * out frees that configuration's groups (from this task, which may
     * wait for their pooled connections to close). */
    for (px_retired **pr = &core->retired; *pr; pr = &(*pr)->next) {
        px_retired *r = *pr;
        if (r->gen != gen)
            continue;
        if (--r->inflight == 0) {
            *pr = r->next;
            groups_free(r->groups, r->ngroups);
            if (core->release_cfg)
                core->release_cfg(r->cfg);
            free(r);
        }
        return;
    }
}

int px_core_reload(px_core *core, const px_config *cfg)
{
    px_group *groups = groups_build(cfg);
    px_retired *r = calloc(1, sizeof(*r));
    if (!groups || !r) {
        groups_free(groups, cfg->nupstreams);
        free(r);
        return -ENOMEM;
    }
    px_core_stop(core);
    *r = (px_retired){ .gen = core->gen, .inflight = core->inflight, .groups = core->groups,
                       .ngroups = core->ngroups, .cfg = core->cfg };
    core->groups = groups;
    core->ngroups = cfg->nupstreams;
    core->cfg = cfg;
    core->gen++;
    core->inflight = 0;
    if (r->inflight) {
        r->next = core->retired;
        core->retired = r;
    } else {
        groups_free(r->groups, r->ngroups);
        if (core->release_cfg)
            core->release_cfg(r->cfg);
        free(r);
    }
    return px_core_start_health(core);
}

static bool in_service(px_core *core, const px_peer *p)
{
    return !p->health_down && (!p->ejected_until || coil_now(core->loop) >= p->ejected_until);
}

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
    const unsigned char *s = data;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Rendezvous (highest random weight) hashing: each key picks the peer with
 * the best weighted score, so adding or removing a peer moves only the keys
 * that belonged to it. */
static px_peer *pick_hash(px_core *core, px_group *g, const void *key, size_t len,
                          const px_peer *exclude, bool healthy_only)
{
    px_peer *best = NULL;
    double best_score = 0;
    uint64_t kh = fnv1a(key, len, 0xcbf29ce484222325ull);
    for (unsigned i = 0; i < g->npeers; i++) {
        px_peer *p = &g->peers[i];
        if (p == exclude || (healthy_only && !in_service(core, p)))
            continue;
        uint64_t h = fnv1a(p->conf->addr_text, strlen(p->conf->addr_text), kh);
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0,1) */
        double score = -(double)p->conf->weight / log(u);
        if (!best || score > best_score) {
            best = p;
            best_score = score;
        }
    }
    return best;
}

static px_peer *pick_among(px_core *core, px_group *g, coil_http_request *req,
                           const px_peer *exclude, bool healthy_only)
{
    const px_upstream *u = g->conf;
    if (u->balance == PX_BALANCE_HASH_HEADER || u->balance == PX_BALANCE_HASH_CLIENT) {
        const void *key = "";
        size_t len = 0;
        char addr[64];
        if (u->balance == PX_BALANCE_HASH_HEADER) {
            const coil_http_field *f = coil_http_field_find(req, u->hash_header);
            if (f) {
                key = f->value;
                len = f->value_len;
            }
        } else {
            const struct sockaddr_storage *ss = req->peer;
            if (ss->ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, addr, sizeof(addr));
            else
                inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, addr, sizeof(addr));
            key = addr;
            len = strlen(addr);
        }
        return pick_hash(core, g, key, len, exclude, healthy_only);
    }
    px_peer *best = NULL;
    if (u->balance == PX_BALANCE_LEAST_OUTSTANDING) {
        /* Fewest in flight relative to weight; ties go to the first. */
        for (unsigned i = 0; i < g->npeers; i++) {
            px_peer *p = &g->peers[i];
            if (p == exclude || (healthy_only && !in_service(core, p)))
                continue;
            if (!best || (uint64_t)p->outstanding * best->conf->weight <
                             (uint64_t)best->outstanding * p->conf->weight)
                best = p;
        }
        return best;
    }
    /* Smooth weighted round robin (as nginx): every candidate gains its
     * weight, the richest is picked and pays the total. */
    int total = 0;
    for (unsigned i = 0; i < g->npeers; i++) {
        px_peer *p = &g->peers[i];
        if (p == exclude || (healthy_only && !in_service(core, p)))
            continue;
        p->current_weight += (int)p->conf->weight;
        total += (int)p->conf->weight;
        if (!best || p->current_weight > best->current_weight)
            best = p;
    }
    if (best)
        best->current_weight -= total;
    return best;
}

px_peer *px_pick(px_core *core, px_group *g, coil_http_request *req, const px_peer *exclude)
{
    px_peer *p = pick_among(core, g, req, exclude, true);
    /* Everyone ejected: trying one beats failing every request. */
    return p ? p : pick_among(core, g, req, exclude, false);
}

/* One active check: a GET of the health path on a fresh connection; any
 * 2xx or 3xx within the timeout is healthy. */
static bool check_peer(px_core *core, px_group *g, px_peer *p)
{
    const px_upstream *u = g->conf;
    int64_t deadline = coil_deadline_in(core->loop, u->health_timeout_ns);
    coil_http_client *c;
    if (coil_http_client_connect(core->loop, (const struct sockaddr *)&p->conf->addr,
                                 p->conf->addr_len, 0, deadline, &c) < 0)
        return false;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: coil-proxy-health\r\n"
                     "Connection: close\r\n\r\n",
                     u->health_path, p->conf->addr_text);
    bool ok = false;
    coil_http_response_head h;
    if (coil_send(coil_http_client_sock(c), req, (size_t)n, deadline) == n &&
        coil_http_client_read_head(c, "GET", deadline, &h) == 0) {
        ok = h.status >= 200 && h.status < 400;
        coil_buf b;
        while (ok && coil_http_client_read_body(c, &b, deadline) > 0)
            coil_buf_release(&b);
    }
    coil_http_client_close(c);
    return ok;
}

typedef struct health_arg {
    px_core *core;
    px_group *group;
} health_arg;

static int health_task(void *arg)
{
    health_arg *ha = arg;
    px_core *core = ha->core;
    px_group *g = ha->group;
    free(ha);
    while (!coil_cancelled()) {
        for (unsigned i = 0; i < g->npeers && !coil_cancelled(); i++) {
            px_peer *p = &g->peers[i];
            bool ok = check_peer(core, g, p);
            if (ok && p->health_down)
                px_peer_ok(p);
            p->health_down = !ok;
        }
        coil_sleep(g->conf->health_interval_ns);
    }
    return 0;
}

int px_core_start_health(px_core *core)
{
    for (unsigned i = 0; i < core->ngroups; i++) {
        px_group *g = &core->groups[i];
        if (!g->conf->health_path[0])
            continue;
        health_arg *ha = malloc(sizeof(*ha));
        if (!ha)
            return -ENOMEM;
        *ha = (health_arg){ core, g };
        int err = coil_spawn(core->loop, health_task, ha, &g->health);
        if (err < 0) {
            free(ha);
            return err;
        }
    }
    return 0;
}

void px_core_stop(px_core *core)
{
    for (unsigned i = 0; i < core->ngroups; i++) {
        px_group *g = &core->groups[i];
        if (!g->health)
            continue;
        coil_cancel(g->health);
        /* From a task, wait until the checker let go of the group (its
         * connection closed); elsewhere it finishes on its own. */
        if (coil_self())
            coil_join(g->health, NULL);
        else
            coil_detach(g->health);
        g->health = NULL;
    }
}

int px_connect(px_core *core, px_group *g, px_peer *p, coil_http_client **out, bool *reused)
{
    while (p->nidle) {
        coil_http_client *c = p->idle[--p->nidle];
        if (!coil_http_client_stale(c)) {
            *out = c;
            *reused = true;
            return 0;
        }
        coil_http_client_close(c);
    }
    *reused = false;
    return coil_http_client_connect(core->loop, (const struct sockaddr *)&p->conf->addr,
                                    p->conf->addr_len, core->cfg->max_header_bytes,
                                    coil_deadline_in(core->loop, g->conf->connect_timeout_ns), out);
}

void px_release(px_core *core, px_group *g, px_peer *p, coil_http_client *c)
{
    (void)core;
    if (coil_http_client_reusable(c) && p->nidle < g->conf->keepalive) {
        p->idle[p->nidle++] = c;
        return;
    }
    coil_http_client_close(c);
}

void px_peer_failed(px_core *core, px_group *g, px_peer *p)
{
    p->failures++;
    if (++p->fails >= g->conf->fail_threshold && g->conf->fail_threshold) {
        p->ejected_until = coil_now(core->loop) + g->conf->cooldown_ns;
        p->fails = 0;
    }
}

void px_peer_ok(px_peer *p)
{
    p->fails = 0;
    p->ejected_until = 0;
}
