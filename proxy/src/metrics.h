#ifndef COIL_PROXY_METRICS_H
#define COIL_PROXY_METRICS_H

#include "proxy.h"

/* What a scrape needs to reach every core. Set up before the cores start
 * and read-only afterwards (cores[i] is only read on core i's thread). */
typedef struct px_metrics_ctx {
    coil_loop *loops[COIL_RT_MAX_CORES];
    px_core *cores[COIL_RT_MAX_CORES];
    unsigned ncores;
    /* open client connections of core i, called on core i's thread */
    uint64_t (*conns_open)(unsigned core);
    coil_http_fn_service svc;
} px_metrics_ctx;

/* Serves GET on host:port with every core's counters (Prometheus text),
 * from this loop only (core 0). */
int px_metrics_start(px_metrics_ctx *ctx, coil_loop *loop, const char *host, uint16_t port,
                     coil_http_server **out);

#endif
