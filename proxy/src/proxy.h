/*
 * coil-proxy internals: per-core state, upstream selection and pooling, the
 * forwarding service.
 */
#ifndef COIL_PROXY_H
#define COIL_PROXY_H

#include "coil/http.h"
#include "coil/http_client.h"
#include "config.h"

/* One upstream server as seen by one core. */
typedef struct px_peer {
    const px_server *conf;
    coil_http_client **idle;      /* pooled keep-alive connections */
    unsigned nidle;
    unsigned outstanding;         /* requests in flight to it */
    int current_weight;           /* smooth weighted round robin */
    unsigned fails;               /* in a row */
    int64_t ejected_until;        /* loop clock; 0 = in service */
    bool health_down;             /* the last active check failed */
    uint64_t requests, failures;
} px_peer;

typedef struct px_group {
    const px_upstream *conf;
    px_peer *peers;
    unsigned npeers;
    coil_task *health;            /* active health checker, if configured */
} px_group;

typedef struct px_metrics {
    uint64_t requests;
    uint64_t by_class[6];         /* 1xx..5xx by status / 100; [0] = no response */
    uint64_t bytes_in, bytes_out;
    uint64_t upstream_errors, upstream_timeouts;
    uint64_t latency_buckets[12]; /* <= 1,2.5,5,10,25,50,100,250,500,1000,2500 ms, +Inf */
    uint64_t latency_sum_us;
} px_metrics;

/* Groups of an earlier configuration, kept until the requests that began
 * under it have finished. */
typedef struct px_retired {
    unsigned gen;
    unsigned inflight;
    px_group *groups;
    unsigned ngroups;
    const px_config *cfg;
    struct px_retired *next;
} px_retired;

typedef struct px_core {
    coil_loop *loop;
    unsigned index;
    const px_config *cfg;         /* the current configuration */
    px_group *groups;
    unsigned ngroups;
    unsigned gen;                 /* configuration generation */
    unsigned inflight;            /* requests begun under this generation */
    px_retired *retired;
    void (*release_cfg)(const px_config *cfg); /* a configuration this core no longer uses */
    coil_http_service svc;        /* the forwarding service */
    px_metrics metrics;
} px_core;

/* upstream.c */
int px_core_init(px_core *core, const px_config *cfg, coil_loop *loop, unsigned index);
/* Starts the active health checkers (from the core's thread). */
int px_core_start_health(px_core *core);
/* Brackets one request, so that a reload frees the old groups only after
 * the requests that use them are done. */
void px_core_enter(px_core *core, unsigned *gen);
void px_core_leave(px_core *core, unsigned gen);
/* Switches this core to cfg (from a task on the core): new groups and health
 * checkers; the old ones go once their requests are done. Pooled
 * connections are not carried over. Returns 0 or -ENOMEM (nothing changed). */
int px_core_reload(px_core *core, const px_config *cfg);
/* Stops them: call before the loop is run down. */
void px_core_stop(px_core *core);
void px_core_exit(px_core *core);
/* Picks a peer of g for req (skipping ejected ones while any is in
 * service); NULL if the group has none. exclude: a peer already tried. */
px_peer *px_pick(px_core *core, px_group *g, coil_http_request *req, const px_peer *exclude);
/* A connection to p: from the pool when a fresh one is there (*reused set),
 * else a new one. */
int px_connect(px_core *core, px_group *g, px_peer *p, coil_http_client **out, bool *reused);
/* Gives a connection back: pooled if reusable and there is room, else closed. */
void px_release(px_core *core, px_group *g, px_peer *p, coil_http_client *c);
void px_peer_failed(px_core *core, px_group *g, px_peer *p);
void px_peer_ok(px_peer *p);

/* forward.c */
void px_service_init(px_core *core);

#endif
