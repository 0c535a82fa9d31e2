/*
 * coil-proxy: a streaming reverse proxy, one pinned worker per core.
 *
 *   coil-proxy [-c FILE] [--cores LIST] [--backend io_uring|epoll]
 *   coil-proxy --check FILE
 *
 * Without a file it runs the built-in configuration: the proxy on :8080 in
 * front of a demo upstream it serves itself on 127.0.0.1:8081.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"
#include "metrics.h"
#include "proxy.h"

typedef struct core_slot {
    px_core core;
    coil_http_service front;      /* stable across reloads: brackets each request */
    coil_http_server **servers;
    coil_http_server *demo;
    coil_http_access_log log;
    bool log_on;
} core_slot;

/* A configuration shared read-only by every core; the last core to let go
 * of it frees it. */
typedef struct cfg_ref {
    px_config cfg;                /* first: a px_config * is a cfg_ref * */
    atomic_uint refs;
} cfg_ref;

static struct {
    px_config cfg;                /* the configuration parsed at start */
    const char *file;             /* NULL: built-in */
    bool builtin;
    core_slot *cores;
    unsigned ncores;
    int log_fd;
    coil_http_log_sink *log_sink;  /* writes the access log off the cores */
    px_metrics_ctx metrics;
    coil_http_server *metrics_server; /* core 0's */
} app = { .log_fd = -1 };

static uint64_t conns_open(unsigned core)
{
    uint64_t n = 0;
    core_slot *cs = &app.cores[core];
    for (unsigned i = 0; cs->servers && i < app.cfg.nlisteners; i++) {
        coil_http_server_stats st;
        if (!cs->servers[i])
            continue;
        coil_http_server_stats_get(cs->servers[i], &st);
        n += st.connections_open;
    }
    return n;
}

/* Posted to core 0 once every core runs: the scrape reaches all of them. */
static void start_metrics(coil_loop *loop, void *arg)
{
    (void)arg;
    int err = px_metrics_start(&app.metrics, loop, app.cfg.metrics_host, app.cfg.metrics_port,
                               &app.metrics_server);
    if (err < 0)
        fprintf(stderr, "coil-proxy: metrics on %s: %s (continuing without)\n",
                app.cfg.metrics_addr, strerror(-err));
}

static void usage(FILE *f)
{
    /* Kept in step with man/coil-proxy.1 (tests/install/man_test.py checks it). */
    fprintf(f, "usage: coil-proxy [-c FILE] [--cores LIST] [--backend io_uring|epoll]\n"
               "       coil-proxy --check FILE\n"
               "       coil-proxy --help\n"
               "\n"
               "  -c, --config FILE           run with the configuration in FILE\n"
               "  --cores LIST                CPUs to run a worker on, e.g. 0,1 (overrides cores)\n"
               "  --backend io_uring|epoll    force a backend (default: io_uring, else epoll)\n"
               "  --check FILE                check FILE, print a summary and exit\n"
               "  -h, --help                  print this help and exit\n"
               "\n"
               "Without -c, runs the built-in configuration: the proxy on 0.0.0.0:8080 in front\n"
               "of a demo upstream on 127.0.0.1:8081.\n"
               "SIGTERM/SIGINT stop gracefully; SIGHUP reloads the file.\n"
               "Exit status: 0 stopped or file valid, 1 configuration or start-up error,\n"
               "2 wrong usage. See coil-proxy(1) and docs/proxy.md.\n");
}

static void release_cfg(const px_config *cfg)
{
    if (cfg == &app.cfg)
        return; /* the start-up configuration lives as long as the program */
    cfg_ref *r = (cfg_ref *)cfg;
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        px_config_free(&r->cfg);
        free(r);
    }
}

static int front_call(coil_http_service *self, coil_http_request *req)
{
    core_slot *cs = self->data;
    unsigned gen;
    px_core_enter(&cs->core, &gen);
    int r = coil_http_call(&cs->core.svc, req);
    px_core_leave(&cs->core, gen);
    return r;
}

/* ---- reload on SIGHUP ---- */

/* Core 0 only: set by a message from the main thread once app.metrics.loops
 * is filled, which orders those writes before the reloader reads them. */
static bool reload_ready;

static void mark_ready(coil_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    reload_ready = true;
}

static core_slot *slot_of(coil_loop *loop)
{
    for (unsigned i = 0; i < app.ncores; i++)
        if (app.cores[i].core.loop == loop)
            return &app.cores[i];
    return NULL;
}

static int reload_core_task(void *arg)
{
    const px_config *cfg = arg;
    core_slot *cs = slot_of(coil_loop_current());
    if (!cs) {
        release_cfg(cfg);
        return 0;
    }
    if (px_core_reload(&cs->core, cfg) < 0) {
        fprintf(stderr, "coil-proxy: core %u: reload failed (no memory); keeping the old configuration\n",
                cs->core.index);
        release_cfg(cfg);
    }
    return 0;
}

static void reload_core_msg(coil_loop *loop, void *arg)
{
    if (coil_spawn(loop, reload_core_task, arg, NULL) < 0)
        release_cfg(arg);
}

static bool same_listeners(const px_config *a, const px_config *b)
{
    if (a->nlisteners != b->nlisteners)
        return false;
    for (unsigned i = 0; i < a->nlisteners; i++)
        if (strcmp(a->listeners[i].addr_text, b->listeners[i].addr_text))
            return false;
    return true;
}

/* Core 0 reads the file (small, rare) and hands the result to every core;
 * the listening sockets stay open throughout, so no connection, queued or
 * established, is lost. */
static int reload_task(void *arg)
{
    (void)arg;
    cfg_ref *r = calloc(1, sizeof(*r));
    char err[512];
    if (!r)
        return 0;
    if (px_config_load(&r->cfg, app.file, err, sizeof(err)) < 0) {
        fprintf(stderr, "coil-proxy: reload refused, the running configuration stays: %s\n", err);
        free(r);
        return 0;
    }
    const px_config *running = app.cores[0].core.cfg;
    if (!same_listeners(running, &r->cfg))
        fprintf(stderr, "coil-proxy: reload: [listen] changes take effect at the next restart\n");
    atomic_init(&r->refs, app.ncores);
    for (unsigned i = 0; i < app.ncores; i++)
        if (coil_post(app.metrics.loops[i], reload_core_msg, &r->cfg) < 0)
            release_cfg(&r->cfg);
    fprintf(stderr, "coil-proxy: reloaded %s (%u upstream(s), %u route(s))\n", app.file,
            r->cfg.nupstreams, r->cfg.nroutes);
    return 0;
}

static void on_signal(coil_loop *loop, unsigned core, int signo, void *data)
{
    (void)data;
    if (signo != SIGHUP) {
        coil_loop_stop(loop);
        return;
    }
    if (core != 0)
        return;
    if (!app.file) {
        fprintf(stderr, "coil-proxy: SIGHUP: running the built-in configuration, nothing to reload\n");
        return;
    }
    if (!reload_ready) {
        fprintf(stderr, "coil-proxy: SIGHUP during start-up ignored\n");
        return;
    }
    coil_spawn(loop, reload_task, NULL, NULL);
}

static int on_start(coil_loop *loop, unsigned index, void *data)
{
    (void)data;
    core_slot *cs = &app.cores[index];
    int err = px_core_init(&cs->core, &app.cfg, loop, index);
    if (err < 0)
        return err;
    cs->core.release_cfg = release_cfg;
    cs->front = (coil_http_service){ .call = front_call, .data = cs };
    err = px_core_start_health(&cs->core);
    if (err < 0)
        return err;
    coil_http_service *svc = &cs->front;
    if (app.log_fd >= 0) {
        svc = coil_http_access_log_init_sink(&cs->log, svc, loop, app.log_sink);
        cs->log_on = true;
    }
    if (app.builtin) {
        err = px_demo_start(loop, index, "127.0.0.1", 8081, &cs->demo);
        if (err < 0) {
            fprintf(stderr, "coil-proxy: demo upstream on 127.0.0.1:8081: %s\n", strerror(-err));
            return err;
        }
    }
    cs->servers = calloc(app.cfg.nlisteners, sizeof(*cs->servers));
    if (!cs->servers)
        return -ENOMEM;
    for (unsigned i = 0; i < app.cfg.nlisteners; i++) {
        const px_listener *l = &app.cfg.listeners[i];
        coil_http_server_config hc;
        coil_http_server_config_default(&hc);
        hc.host = l->host;
        hc.port = l->port;
        hc.reuseport = true;
        hc.service = svc;
        hc.core = index;
        /* Body limits are the routes' (forward.c), which may be higher than
         * the listener-wide one, and change on reload. */
        hc.limits.max_body = 0;
        if (app.cfg.max_header_bytes)
            hc.limits.max_header_bytes = app.cfg.max_header_bytes;
        if (app.cfg.max_headers)
            hc.limits.max_headers = app.cfg.max_headers;
        if (app.cfg.header_timeout_ns)
            hc.timeouts.header_ns = app.cfg.header_timeout_ns;
        if (app.cfg.keepalive_timeout_ns)
            hc.timeouts.keepalive_ns = app.cfg.keepalive_timeout_ns;
        if (app.cfg.send_timeout_ns)
            hc.timeouts.send_idle_ns = app.cfg.send_timeout_ns;
        if (app.cfg.body_timeout_ns)
            hc.timeouts.body_idle_ns = app.cfg.body_timeout_ns;
        hc.timeouts.body_min_rate = app.cfg.body_min_rate;
        if (app.cfg.drain_timeout_ns)
            hc.timeouts.drain_ns = app.cfg.drain_timeout_ns;
        err = coil_http_server_start(loop, &hc, &cs->servers[i]);
        if (err < 0) {
            fprintf(stderr, "coil-proxy: listen on %s: %s\n", l->addr_text, strerror(-err));
            return err;
        }
    }
    fprintf(stderr, "coil-proxy: core %u: %s, %u listener(s)\n", index, coil_loop_backend(loop),
            app.cfg.nlisteners);
    return 0;
}

static void on_stop(coil_loop *loop, unsigned index, void *data)
{
    (void)data;
    core_slot *cs = &app.cores[index];
    for (unsigned i = 0; cs->servers && i < app.cfg.nlisteners; i++)
        if (cs->servers[i])
            coil_http_server_stop(cs->servers[i]);
    if (cs->demo)
        coil_http_server_stop(cs->demo);
    if (index == 0 && app.metrics_server) {
        coil_http_server_stop(app.metrics_server);
        app.metrics_server = NULL;
    }
    px_core_stop(&cs->core);
    /* Finish the drain before the pools and the log go away. */
    coil_loop_run(loop);
    px_core_exit(&cs->core);
    if (cs->log_on)
        coil_http_access_log_exit(&cs->log);
    free(cs->servers);
}

static int parse_cores(const char *s, int *cpus, unsigned *n)
{
    *n = 0;
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(t, &end, 10);
        if (*end || v < 0 || v > 255 || *n >= 256) {
            free(copy);
            return -1;
        }
        cpus[(*n)++] = (int)v;
    }
    free(copy);
    return *n ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *cores = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--check")) {
            check = true;
            file = argv[++i];
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            file = argv[++i];
        } else if (!strcmp(a, "--cores")) {
            cores = argv[++i];
        } else if (!strcmp(a, "--backend")) {
            setenv("COIL_BACKEND", argv[++i], 1);
        } else {
            usage(stderr);
            return 2;
        }
    }
    char err[512];
    int rc = file ? px_config_load(&app.cfg, file, err, sizeof(err))
                  : px_config_parse(&app.cfg, "(built-in)", px_config_builtin(), err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check) {
        printf("%s: ok (%u listener(s), %u upstream(s), %u route(s))\n", file, app.cfg.nlisteners,
               app.cfg.nupstreams, app.cfg.nroutes);
        px_config_free(&app.cfg);
        return 0;
    }
    app.builtin = !file;
    if (cores && parse_cores(cores, app.cfg.cpus, &app.cfg.ncpus) < 0) {
        fprintf(stderr, "coil-proxy: --cores: expected a list like 0,1\n");
        return 2;
    }
    if (app.cfg.access_log[0]) {
        app.log_fd = !strcmp(app.cfg.access_log, "-")
                         ? dup(STDERR_FILENO)
                         : open(app.cfg.access_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (app.log_fd < 0) {
            fprintf(stderr, "coil-proxy: access log %s: %s\n", app.cfg.access_log, strerror(errno));
            return 1;
        }
        rc = coil_http_log_sink_start(app.log_fd, 0, &app.log_sink);
        if (rc < 0) {
            fprintf(stderr, "coil-proxy: access log writer: %s\n", strerror(-rc));
            return 1;
        }
    }
    if (app.builtin)
        px_demo_init();
    app.cores = calloc(COIL_RT_MAX_CORES, sizeof(core_slot));
    app.file = file;
    coil_rt_options o = { .on_start = on_start, .on_stop = on_stop, .on_signal = on_signal,
                          .handle_signals = true };
    coil_loop_options_default(&o.loop);
    if (app.cfg.ncpus) {
        o.cpus = app.cfg.cpus;
        o.ncpus = app.cfg.ncpus;
    }
    coil_rt *rt;
    rc = coil_rt_start(&rt, &o);
    if (rc < 0) {
        fprintf(stderr, "coil-proxy: cannot start: %s\n", strerror(-rc));
        return 1;
    }
    app.ncores = coil_rt_cores(rt);
    /* The loops are known to the reloader and the metrics (read-only from
     * here on; the cores learn of them through messages). */
    for (unsigned i = 0; i < app.ncores; i++)
        app.metrics.loops[i] = coil_rt_loop(rt, i);
    coil_post(coil_rt_loop(rt, 0), mark_ready, NULL);
    if (app.cfg.metrics_addr[0]) {
        app.metrics.ncores = app.ncores;
        app.metrics.conns_open = conns_open;
        for (unsigned i = 0; i < app.ncores; i++) {
            app.metrics.loops[i] = coil_rt_loop(rt, i);
            app.metrics.cores[i] = &app.cores[i].core;
        }
        coil_post(coil_rt_loop(rt, 0), start_metrics, NULL);
    }
    if (app.builtin)
        fprintf(stderr, "coil-proxy: built-in configuration: try curl http://127.0.0.1:8080/\n");
    rc = coil_rt_wait(rt);
    free(app.cores);
    if (app.log_sink) {
        uint64_t dropped = coil_http_log_sink_dropped(app.log_sink);
        if (dropped)
            fprintf(stderr, "coil-proxy: access log: %llu bytes dropped (the log fell behind)\n",
                    (unsigned long long)dropped);
        coil_http_log_sink_stop(app.log_sink);
    }
    if (app.log_fd >= 0)
        close(app.log_fd);
    px_config_free(&app.cfg);
    fprintf(stderr, "coil-proxy: stopped\n");
    return rc < 0 ? 1 : 0;
}
