/*
 * coil-proxy configuration: the file format (docs/proxy.md) parsed into
 * plain structs. Parsing never touches the network; every error names the
 * file and line.
 */
#ifndef COIL_PROXY_CONFIG_H
#define COIL_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PX_MAX_NAME 64

typedef enum px_balance {
    PX_BALANCE_ROUND_ROBIN,     /* weighted round robin (smooth, as nginx) */
    PX_BALANCE_LEAST_OUTSTANDING,
    PX_BALANCE_HASH_HEADER,     /* consistent hash of a request header */
    PX_BALANCE_HASH_CLIENT,     /* consistent hash of the client address */
} px_balance;

typedef struct px_server {
    char addr_text[128];              /* as written: "127.0.0.1:9001" */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned weight;                  /* default 1 */
} px_server;

typedef struct px_upstream {
    char name[PX_MAX_NAME];
    px_server *servers;
    unsigned nservers;
    px_balance balance;
    char hash_header[PX_MAX_NAME];    /* for PX_BALANCE_HASH_HEADER */
    unsigned keepalive;               /* idle pooled connections per core per server; default 32 */
    int64_t connect_timeout_ns;       /* default 2 s */
    int64_t response_timeout_ns;      /* until the response head: default 30 s */
    int64_t idle_timeout_ns;          /* between body bytes either way: default 60 s */
    int64_t tunnel_timeout_ns;        /* an upgraded connection with no byte either way: default 1 h */
    unsigned fail_threshold;          /* passive health: failures in a row to eject; default 3 */
    int64_t cooldown_ns;              /* ejected for; default 10 s */
    /* active health check; disabled when health_path is empty */
    char health_path[256];
    int64_t health_interval_ns;       /* default 5 s */
    int64_t health_timeout_ns;        /* default 2 s */
    unsigned retries;                 /* extra attempts when safe; default 1 */
    unsigned line;                    /* where it was declared */
} px_upstream;

typedef struct px_route {
    char host[256];                   /* "" = any host; exact match, case-insensitive, port ignored */
    char path_prefix[256];            /* default "/" */
    char upstream_name[PX_MAX_NAME];
    px_upstream *upstream;            /* resolved after parsing */
    uint64_t max_body;                /* 0 = the listener's */
    unsigned line;
} px_route;

typedef struct px_listener {
    char addr_text[128];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[64];                    /* numeric host part, for coil_http_server_config */
    uint16_t port;
    unsigned line;
} px_listener;

typedef struct px_config {
    px_listener *listeners;
    unsigned nlisteners;
    px_upstream *upstreams;
    unsigned nupstreams;
    px_route *routes;                 /* in file order; matching picks the longest prefix among host matches */
    unsigned nroutes;
    int cpus[256];                    /* "cores" */
    unsigned ncpus;                   /* 0 = all CPUs */
    char access_log[512];             /* path; "" = off (default); "-" = stderr */
    char metrics_addr[128];           /* "host:port" of the metrics listener; "" = off (default) */
    char metrics_host[64];
    uint16_t metrics_port;
    /* limits and timeouts of the client side (defaults as coil_http_server_config_default) */
    uint64_t max_body;                /* default 0 = unlimited (bodies stream); routes may
                                       * set their own, higher or lower */
    uint32_t max_header_bytes;        /* default 16 KiB; 256..1 MiB */
    uint32_t max_headers;             /* default 100; 1..10000 */
    int64_t header_timeout_ns;        /* default 10 s */
    int64_t keepalive_timeout_ns;     /* default 60 s */
    int64_t send_timeout_ns;          /* default 30 s */
    int64_t body_timeout_ns;          /* between request body bytes: default 30 s */
    uint64_t body_min_rate;           /* bytes/s a request body must average after body_timeout; 0 = off */
    int64_t drain_timeout_ns;         /* default 10 s */
    char forward_mode[16];            /* "buffers" (default) or "splice" */
} px_config;

/* Parses the file at path into *cfg (zeroed and filled with defaults first).
 * On error returns -1 and writes one line "FILE:LINE: message" (or
 * "FILE: message" when no line is to blame) into err (errlen bytes; err may
 * be NULL); *cfg is then left zeroed, owning nothing. Returns 0 on success. Resolves route -> upstream names and
 * checks: at least one listener, at least one route, every upstream has a
 * server, no duplicate names, valid addresses (numeric IPv4/IPv6 with port),
 * durations ("250ms", "2s", "1m"), sizes ("64k", "1m", "1g"), numbers in
 * range. */
int px_config_load(px_config *cfg, const char *path, char *err, size_t errlen);

/* Same, from text in memory; name is used in error messages. */
int px_config_parse(px_config *cfg, const char *name, const char *text, char *err, size_t errlen);

/* Frees what parsing allocated and zeroes *cfg; safe to call again, and on
 * a config whose parse failed. */
void px_config_free(px_config *cfg);

/* The configuration text used when coil-proxy runs without a file: listener
 * 0.0.0.0:8080, upstream "demo" at 127.0.0.1:8081, route / -> demo, access
 * log to stderr, metrics on 127.0.0.1:9100. Static storage; never NULL. */
const char *px_config_builtin(void);

#endif
