/*
 * Prometheus text metrics. Each core counts into its own px_metrics; nothing
 * is shared. A scrape, served on core 0, asks every core for a snapshot with
 * a message, each core copies its counters on its own thread and answers
 * with a message, and core 0 prints them per core and summed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

typedef struct peer_snap {
    uint64_t requests, failures;
    bool up;
} peer_snap;

typedef struct core_snap {
    px_metrics m;
    uint64_t conns_open;
    peer_snap *peers;             /* every peer of every group, in order */
} core_snap;

typedef struct scrape {
    px_metrics_ctx *ctx;
    coil_loop *home;
    unsigned pending;
    coil_event done;
    core_snap *snaps;
    unsigned npeers;
} scrape;

typedef struct snap_req {
    scrape *sc;
    unsigned core;
} snap_req;

static void reply_arrived(coil_loop *home, void *arg)
{
    (void)home;
    scrape *sc = arg;
    if (--sc->pending == 0)
        coil_event_set(&sc->done);
}

/* Runs on the scraped core's own thread: the only place its counters may be
 * read. */
static void take_snapshot(coil_loop *loop, void *arg)
{
    snap_req *r = arg;
    scrape *sc = r->sc;
    px_core *core = sc->ctx->cores[r->core];
    core_snap *cs = &sc->snaps[r->core];
    cs->m = core->metrics;
    cs->conns_open = sc->ctx->conns_open ? sc->ctx->conns_open(r->core) : 0;
    unsigned k = 0;
    /* Mid-reload another core may still run a configuration with a
     * different set of peers: copy no more than the scrape made room for. */
    for (unsigned g = 0; g < core->ngroups; g++)
        for (unsigned p = 0; p < core->groups[g].npeers && k < sc->npeers; p++, k++) {
            const px_peer *peer = &core->groups[g].peers[p];
            cs->peers[k] = (peer_snap){ peer->requests, peer->failures,
                                        !peer->ejected_until || coil_now(loop) >= peer->ejected_until };
        }
    free(r);
    coil_post(sc->home, reply_arrived, sc);
}

typedef struct out_buf {
    char *p;
    size_t len, cap;
} out_buf;

__attribute__((format(printf, 2, 3))) static void outf(out_buf *o, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *np = realloc(o->p, cap);
        if (!np)
            return;
        o->p = np;
        o->cap = cap;
    }
}

static void print_core(out_buf *o, const char *core, const px_metrics *m, uint64_t conns)
{
    static const char *const cls[] = { "none", "1xx", "2xx", "3xx", "4xx", "5xx" };
    for (int c = 0; c < 6; c++)
        outf(o, "coil_proxy_requests_total{core=\"%s\",class=\"%s\"} %llu\n", core, cls[c],
             (unsigned long long)m->by_class[c]);
    outf(o, "coil_proxy_bytes_total{core=\"%s\",direction=\"in\"} %llu\n", core,
         (unsigned long long)m->bytes_in);
    outf(o, "coil_proxy_bytes_total{core=\"%s\",direction=\"out\"} %llu\n", core,
         (unsigned long long)m->bytes_out);
    outf(o, "coil_proxy_upstream_errors_total{core=\"%s\"} %llu\n", core,
         (unsigned long long)m->upstream_errors);
    outf(o, "coil_proxy_upstream_timeouts_total{core=\"%s\"} %llu\n", core,
         (unsigned long long)m->upstream_timeouts);
    outf(o, "coil_proxy_connections_active{core=\"%s\"} %llu\n", core, (unsigned long long)conns);
    static const char *const le[] = { "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                      "0.1",   "0.25",   "0.5",   "1",    "2.5",   "+Inf" };
    uint64_t cum = 0;
    for (int b = 0; b < 12; b++) {
        cum += m->latency_buckets[b];
        outf(o, "coil_proxy_request_duration_seconds_bucket{core=\"%s\",le=\"%s\"} %llu\n", core,
             le[b], (unsigned long long)cum);
    }
    outf(o, "coil_proxy_request_duration_seconds_sum{core=\"%s\"} %.6f\n", core,
         (double)m->latency_sum_us / 1e6);
    outf(o, "coil_proxy_request_duration_seconds_count{core=\"%s\"} %llu\n", core,
         (unsigned long long)cum);
}

static void add(px_metrics *sum, const px_metrics *m)
{
    sum->requests += m->requests;
    for (int c = 0; c < 6; c++)
        sum->by_class[c] += m->by_class[c];
    sum->bytes_in += m->bytes_in;
    sum->bytes_out += m->bytes_out;
    sum->upstream_errors += m->upstream_errors;
    sum->upstream_timeouts += m->upstream_timeouts;
    for (int b = 0; b < 12; b++)
        sum->latency_buckets[b] += m->latency_buckets[b];
    sum->latency_sum_us += m->latency_sum_us;
}

static int metrics_handler(coil_http_request *req, void *data)
{
    px_metrics_ctx *ctx = data;
    unsigned n = ctx->ncores;
    const px_config *cfg = ctx->cores[0]->cfg;
    unsigned npeers = 0;
    for (unsigned u = 0; u < cfg->nupstreams; u++)
        npeers += cfg->upstreams[u].nservers;
    scrape *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    *sc = (scrape){ .ctx = ctx, .home = req->loop, .pending = n, .npeers = npeers };
    coil_event_init(&sc->done);
    sc->snaps = calloc(n, sizeof(core_snap));
    bool ok = sc->snaps != NULL;
    for (unsigned i = 0; ok && i < n; i++)
        ok = (sc->snaps[i].peers = calloc(npeers ? npeers : 1, sizeof(peer_snap))) != NULL;
    unsigned posted = 0;
    for (unsigned i = 0; ok && i < n; i++) {
        snap_req *r = malloc(sizeof(*r));
        if (!r || coil_post(ctx->loops[i], take_snapshot, r) < 0) {
            free(r);
            ok = false;
            break;
        }
        r->sc = sc;
        r->core = i;
        posted++;
    }
    /* Every posted request answers: wait for all of them even on failure,
     * since they write into sc. Not cancellable for the same reason. */
    sc->pending -= n - posted;
    while (sc->pending)
        coil_event_wait(&sc->done, coil_deadline_in(req->loop, 100LL * 1000 * 1000));
    int err = 0;
    if (ok) {
        out_buf o = { .p = malloc(8192), .cap = 8192 };
        if (!o.p) {
            err = -ENOMEM;
        } else {
            outf(&o, "# TYPE coil_proxy_requests_total counter\n"
                     "# TYPE coil_proxy_bytes_total counter\n"
                     "# TYPE coil_proxy_upstream_errors_total counter\n"
                     "# TYPE coil_proxy_upstream_timeouts_total counter\n"
                     "# TYPE coil_proxy_connections_active gauge\n"
                     "# TYPE coil_proxy_request_duration_seconds histogram\n"
                     "# TYPE coil_proxy_upstream_up gauge\n"
                     "# TYPE coil_proxy_upstream_requests_total counter\n"
                     "# TYPE coil_proxy_upstream_failures_total counter\n");
            px_metrics sum = { 0 };
            uint64_t conns = 0;
            for (unsigned i = 0; i < n; i++) {
                char core[16];
                snprintf(core, sizeof(core), "%u", i);
                print_core(&o, core, &sc->snaps[i].m, sc->snaps[i].conns_open);
                add(&sum, &sc->snaps[i].m);
                conns += sc->snaps[i].conns_open;
            }
            print_core(&o, "all", &sum, conns);
            unsigned k = 0;
            for (unsigned u = 0; u < cfg->nupstreams; u++)
                for (unsigned s = 0; s < cfg->upstreams[u].nservers; s++, k++)
                    for (unsigned i = 0; i < n; i++) {
                        const peer_snap *p = &sc->snaps[i].peers[k];
                        const char *un = cfg->upstreams[u].name;
                        const char *sv = cfg->upstreams[u].servers[s].addr_text;
                        outf(&o, "coil_proxy_upstream_up{upstream=\"%s\",server=\"%s\",core=\"%u\"} %d\n",
                             un, sv, i, p->up);
                        outf(&o, "coil_proxy_upstream_requests_total{upstream=\"%s\",server=\"%s\",core=\"%u\"} %llu\n",
                             un, sv, i, (unsigned long long)p->requests);
                        outf(&o, "coil_proxy_upstream_failures_total{upstream=\"%s\",server=\"%s\",core=\"%u\"} %llu\n",
                             un, sv, i, (unsigned long long)p->failures);
                    }
            coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain; version=0.0.4");
            err = coil_http_respond(req, 200, &ct, 1, o.p, o.len);
            free(o.p);
        }
    } else {
        err = -ENOMEM;
    }
    for (unsigned i = 0; sc->snaps && i < n; i++)
        free(sc->snaps[i].peers);
    free(sc->snaps);
    free(sc);
    return err;
}

int px_metrics_start(px_metrics_ctx *ctx, coil_loop *loop, const char *host, uint16_t port,
                     coil_http_server **out)
{
    coil_http_fn_init(&ctx->svc, metrics_handler, ctx);
    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = host;
    cfg.port = port;
    cfg.service = &ctx->svc.svc;
    return coil_http_server_start(loop, &cfg, out);
}
