/*
 * coil-proxy configuration parser (proxy/src/config.c): a full file with
 * every field checked, the defaults, the built-in configuration, and every
 * rejection with its exact "FILE:LINE: message".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define MS_NS (1000LL * 1000)
#define S_NS (1000 * MS_NS)

static const char full_example[] =
    "# comment (also ; comments)\n"                                       /* 1 */
    "; another comment\n"                                                 /* 2 */
    "\n"                                                                  /* 3 */
    "[proxy]\n"                                                           /* 4 */
    "cores = 0,1            # or \"all\"\n"                               /* 5 */
    "access_log = /var/log/coil-proxy/access.log   # or \"-\"\n"          /* 6 */
    "metrics = 127.0.0.1:9100                       # or \"off\"\n"       /* 7 */
    "max_body = 0           # sizes: 0, 512, 64k, 1m, 1g\n"               /* 8 */
    "max_header_bytes = 16k\n"                                            /* 9 */
    "max_headers = 100\n"                                                 /* 10 */
    "header_timeout = 10s   # durations: 250ms, 10s, 1m\n"                /* 11 */
    "keepalive_timeout = 60s\n"                                           /* 12 */
    "send_timeout = 30s\n"                                                /* 13 */
    "drain_timeout = 10s\n"                                               /* 14 */
    "forward = buffers      # or splice\n"                                /* 15 */
    "\n"                                                                  /* 16 */
    "[listen]               # may appear several times\n"                 /* 17 */
    "address = 0.0.0.0:8080 # IPv6 as [::]:8080\n"                        /* 18 */
    "[listen]\n"                                                          /* 19 */
    "address = [::]:8443\n"                                               /* 20 */
    "\n"                                                                  /* 21 */
    "[upstream app]         # the name follows the section keyword\n"     /* 22 */
    "server = 127.0.0.1:9001 weight=3   # one line per server\n"          /* 23 */
    "server = 127.0.0.1:9002\n"                                           /* 24 */
    "balance = round_robin  # least_outstanding | hash_header X-User\n"   /* 25 */
    "keepalive = 32\n"                                                    /* 26 */
    "connect_timeout = 2s\n"                                              /* 27 */
    "response_timeout = 30s\n"                                            /* 28 */
    "idle_timeout = 60s\n"                                                /* 29 */
    "fail_threshold = 3\n"                                                /* 30 */
    "cooldown = 10s\n"                                                    /* 31 */
    "health_check = /healthz     # path; \"off\" disables\n"              /* 32 */
    "health_interval = 5s\n"                                              /* 33 */
    "health_timeout = 2s\n"                                               /* 34 */
    "retries = 1\n"                                                       /* 35 */
    "\n"                                                                  /* 36 */
    "[upstream users]\n"                                                  /* 37 */
    "server = [::1]:9100 weight=1000\n"                                   /* 38 */
    "balance = hash_header X-User\n"                                      /* 39 */
    "keepalive = 0\n"                                                     /* 40 */
    "connect_timeout = 250ms\n"                                           /* 41 */
    "response_timeout = 1m\n"                                             /* 42 */
    "idle_timeout = 90s\n"                                                /* 43 */
    "fail_threshold = 0\n"                                                /* 44 */
    "cooldown = 1500ms\n"                                                 /* 45 */
    "health_check = off\n"                                                /* 46 */
    "retries = 0\n"                                                       /* 47 */
    "\n"                                                                  /* 48 */
    "[route]                # may appear several times; order kept\n"     /* 49 */
    "host = example.com     # optional\n"                                 /* 50 */
    "path = /api/           # prefix, default /\n"                        /* 51 */
    "upstream = app\n"                                                    /* 52 */
    "max_body = 10m         # optional\n"                                 /* 53 */
    "[route]\n"                                                           /* 54 */
    "path = /users/\n"                                                    /* 55 */
    "upstream = users\n"                                                  /* 56 */
    "[route]\n"                                                           /* 57 */
    "upstream = app\n";                                                   /* 58 */

static void check_in(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                     uint16_t port)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    struct in_addr want;
    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(a->sin_family, AF_INET);
    assert_int_equal(ntohs(a->sin_port), port);
    assert_memory_equal(&a->sin_addr, &want, sizeof(want));
}

static void check_in6(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                      uint16_t port)
{
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    struct in6_addr want;
    assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(a->sin6_family, AF_INET6);
    assert_int_equal(ntohs(a->sin6_port), port);
    assert_memory_equal(&a->sin6_addr, &want, sizeof(want));
}

static void parse_ok(px_config *cfg, const char *text)
{
    char err[512] = "";
    int rc = px_config_parse(cfg, "proxy.conf", text, err, sizeof(err));
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
}

/* A failed parse leaves *c zeroed, owning nothing. */
static void check_nothing_kept(px_config *c)
{
    assert_null(c->listeners);
    assert_null(c->upstreams);
    assert_null(c->routes);
    assert_int_equal(c->nlisteners + c->nupstreams + c->nroutes, 0);
    px_config_free(c);
}

/* Parses text as proxy.conf, which must fail and keep nothing; returns the
 * message (static storage, until the next call). */
static const char *parse_error(const char *text)
{
    static char err[512];
    px_config c;
    err[0] = '\0';
    assert_int_equal(px_config_parse(&c, "proxy.conf", text, err, sizeof(err)), -1);
    check_nothing_kept(&c);
    return err;
}

/* The [proxy] limits and timeouts at their defaults (which full_example
 * writes out). */
static void check_default_limits(const px_config *c)
{
    assert_int_equal(c->max_body, 0);
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->max_headers, 100);
    assert_int_equal(c->header_timeout_ns, 10 * S_NS);
    assert_int_equal(c->keepalive_timeout_ns, 60 * S_NS);
    assert_int_equal(c->send_timeout_ns, 30 * S_NS);
    assert_int_equal(c->drain_timeout_ns, 10 * S_NS);
    assert_string_equal(c->forward_mode, "buffers");
}

/* An upstream's settings at their defaults, but for health_path (the one
 * full_example sets to a value of its own). */
static void check_default_upstream(const px_upstream *u, const char *health_path)
{
    assert_int_equal(u->balance, PX_BALANCE_ROUND_ROBIN);
    assert_string_equal(u->hash_header, "");
    assert_int_equal(u->keepalive, 32);
    assert_int_equal(u->connect_timeout_ns, 2 * S_NS);
    assert_int_equal(u->response_timeout_ns, 30 * S_NS);
    assert_int_equal(u->idle_timeout_ns, 60 * S_NS);
    assert_int_equal(u->fail_threshold, 3);
    assert_int_equal(u->cooldown_ns, 10 * S_NS);
    assert_string_equal(u->health_path, health_path);
    assert_int_equal(u->health_interval_ns, 5 * S_NS);
    assert_int_equal(u->health_timeout_ns, 2 * S_NS);
    assert_int_equal(u->retries, 1);
}

static void test_full_example(void **state)
{
    (void)state;
    px_config c;
    parse_ok(&c, full_example);

    assert_int_equal(c.ncpus, 2);
    assert_int_equal(c.cpus[0], 0);
    assert_int_equal(c.cpus[1], 1);
    assert_string_equal(c.access_log, "/var/log/coil-proxy/access.log");
    assert_string_equal(c.metrics_addr, "127.0.0.1:9100");
    assert_string_equal(c.metrics_host, "127.0.0.1");
    assert_int_equal(c.metrics_port, 9100);
    check_default_limits(&c);

    assert_int_equal(c.nlisteners, 2);
    assert_string_equal(c.listeners[0].addr_text, "0.0.0.0:8080");
    assert_string_equal(c.listeners[0].host, "0.0.0.0");
    assert_int_equal(c.listeners[0].port, 8080);
    assert_int_equal(c.listeners[0].line, 17);
    check_in(&c.listeners[0].addr, c.listeners[0].addr_len, "0.0.0.0", 8080);
    assert_string_equal(c.listeners[1].addr_text, "[::]:8443");
    assert_string_equal(c.listeners[1].host, "::");
    assert_int_equal(c.listeners[1].port, 8443);
    assert_int_equal(c.listeners[1].line, 19);
    check_in6(&c.listeners[1].addr, c.listeners[1].addr_len, "::", 8443);

    assert_int_equal(c.nupstreams, 2);
    const px_upstream *u = &c.upstreams[0];
    assert_string_equal(u->name, "app");
    assert_int_equal(u->line, 22);
    assert_int_equal(u->nservers, 2);
    assert_string_equal(u->servers[0].addr_text, "127.0.0.1:9001");
    check_in(&u->servers[0].addr, u->servers[0].addr_len, "127.0.0.1", 9001);
    assert_int_equal(u->servers[0].weight, 3);
    assert_string_equal(u->servers[1].addr_text, "127.0.0.1:9002");
    check_in(&u->servers[1].addr, u->servers[1].addr_len, "127.0.0.1", 9002);
    assert_int_equal(u->servers[1].weight, 1);
    check_default_upstream(u, "/healthz");

    u = &c.upstreams[1];
    assert_string_equal(u->name, "users");
    assert_int_equal(u->line, 37);
    assert_int_equal(u->nservers, 1);
    assert_string_equal(u->servers[0].addr_text, "[::1]:9100");
    check_in6(&u->servers[0].addr, u->servers[0].addr_len, "::1", 9100);
    assert_int_equal(u->servers[0].weight, 1000);
    assert_int_equal(u->balance, PX_BALANCE_HASH_HEADER);
    assert_string_equal(u->hash_header, "X-User");
    assert_int_equal(u->keepalive, 0);
    assert_int_equal(u->connect_timeout_ns, 250 * MS_NS);
    assert_int_equal(u->response_timeout_ns, 60 * S_NS);
    assert_int_equal(u->idle_timeout_ns, 90 * S_NS);
    assert_int_equal(u->fail_threshold, 0);
    assert_int_equal(u->cooldown_ns, 1500 * MS_NS);
    assert_string_equal(u->health_path, "");
    assert_int_equal(u->retries, 0);

    assert_int_equal(c.nroutes, 3);
    assert_string_equal(c.routes[0].host, "example.com");
    assert_string_equal(c.routes[0].path_prefix, "/api/");
    assert_string_equal(c.routes[0].upstream_name, "app");
    assert_ptr_equal(c.routes[0].upstream, &c.upstreams[0]);
    assert_int_equal(c.routes[0].max_body, 10 << 20);
    assert_int_equal(c.routes[0].line, 49);
    assert_string_equal(c.routes[1].host, "");
    assert_string_equal(c.routes[1].path_prefix, "/users/");
    assert_ptr_equal(c.routes[1].upstream, &c.upstreams[1]);
    assert_int_equal(c.routes[1].max_body, 0);
    assert_int_equal(c.routes[1].line, 54);
    assert_string_equal(c.routes[2].path_prefix, "/");
    assert_ptr_equal(c.routes[2].upstream, &c.upstreams[0]);
    assert_int_equal(c.routes[2].line, 57);

    px_config_free(&c);
    assert_null(c.upstreams);
    assert_int_equal(c.nroutes, 0);
    px_config_free(&c); /* idempotent */
}

static void test_defaults(void **state)
{
    (void)state;
    px_config c;
    parse_ok(&c, "[listen]\naddress = 127.0.0.1:8080\n"
                 "[upstream a]\nserver = 127.0.0.1:9001\n"
                 "[route]\nupstream = a\n");
    assert_int_equal(c.ncpus, 0);
    assert_string_equal(c.access_log, "");
    assert_string_equal(c.metrics_addr, "");
    assert_string_equal(c.metrics_host, "");
    assert_int_equal(c.metrics_port, 0);
    check_default_limits(&c);

    const px_upstream *u = &c.upstreams[0];
    assert_int_equal(u->servers[0].weight, 1);
    check_default_upstream(u, "");

    assert_string_equal(c.routes[0].host, "");
    assert_string_equal(c.routes[0].path_prefix, "/");
    assert_int_equal(c.routes[0].max_body, 0);
    assert_ptr_equal(c.routes[0].upstream, u);
    px_config_free(&c);
}

static void test_builtin(void **state)
{
    (void)state;
    px_config c;
    char err[256] = "";
    assert_int_equal(px_config_parse(&c, "(built-in)", px_config_builtin(), err, sizeof(err)), 0);
    assert_int_equal(c.nlisteners, 1);
    assert_string_equal(c.listeners[0].host, "0.0.0.0");
    assert_int_equal(c.listeners[0].port, 8080);
    assert_int_equal(c.nupstreams, 1);
    assert_string_equal(c.upstreams[0].name, "demo");
    assert_int_equal(c.upstreams[0].nservers, 1);
    check_in(&c.upstreams[0].servers[0].addr, c.upstreams[0].servers[0].addr_len, "127.0.0.1",
             8081);
    assert_int_equal(c.nroutes, 1);
    assert_string_equal(c.routes[0].path_prefix, "/");
    assert_string_equal(c.routes[0].host, "");
    assert_ptr_equal(c.routes[0].upstream, &c.upstreams[0]);
    assert_string_equal(c.access_log, "-");
    assert_string_equal(c.metrics_host, "127.0.0.1");
    assert_int_equal(c.metrics_port, 9100);
    assert_int_equal(c.ncpus, 0);
    px_config_free(&c);
}

/* Comment, whitespace and line-ending rules. */
static void test_lexical_ok(void **state)
{
    (void)state;
    px_config c;
    parse_ok(&c, "\xef\xbb\xbf# BOM first\r\n"
                 "  [ proxy ]  ; trailing comment\r\n"
                 "\tcores\t=\t all \t\r\n"
                 "access_log = /var/log/caf\xc3\xa9;b#c.log ;comment\r\n"
                 "   ; indented comment\r\n"
                 "\r\n"
                 "[listen]\n"
                 "address=127.0.0.1:80\n"
                 "[upstream  u-1.x_y ]\n"
                 "server =   127.0.0.1:1\t weight=2  \n"
                 "[route]\n"
                 "host = [::1]\n"
                 "path = /a;b\n"
                 "upstream = u-1.x_y" /* no final newline */
    );
    assert_int_equal(c.ncpus, 0);
    assert_string_equal(c.access_log, "/var/log/caf\xc3\xa9;b#c.log");
    assert_int_equal(c.listeners[0].port, 80);
    assert_string_equal(c.upstreams[0].name, "u-1.x_y");
    assert_int_equal(c.upstreams[0].servers[0].weight, 2);
    assert_string_equal(c.routes[0].host, "[::1]");
    assert_string_equal(c.routes[0].path_prefix, "/a;b");
    assert_ptr_equal(c.routes[0].upstream, &c.upstreams[0]);
    px_config_free(&c);
}

#define BASE_LISTEN "[listen]\naddress = 127.0.0.1:8080\n"
#define BASE_UP "[upstream app]\nserver = 127.0.0.1:9001\n"
#define BASE_ROUTE "[route]\nupstream = app\n"

/* Values that parse, and what they become. */
static void test_values(void **state)
{
    (void)state;
    static const struct {
        const char *line; /* in [proxy] */
        uint64_t max_body;
        int64_t header_timeout_ns;
        uint32_t max_header_bytes;
    } t[] = {
        { "max_body = 512", 512, 10 * S_NS, 16384 },
        { "max_body = 64k", 64 << 10, 10 * S_NS, 16384 },
        { "max_body = 64K", 64 << 10, 10 * S_NS, 16384 },
        { "max_body = 1m", 1 << 20, 10 * S_NS, 16384 },
        { "max_body = 1g", 1 << 30, 10 * S_NS, 16384 },
        { "max_body = 16777215g", 16777215ULL << 30, 10 * S_NS, 16384 },
        { "max_body = 18446744073709551615", UINT64_MAX, 10 * S_NS, 16384 },
        { "max_body = 007", 7, 10 * S_NS, 16384 },
        { "header_timeout = 1ms", 0, MS_NS, 16384 },
        { "header_timeout = 250ms", 0, 250 * MS_NS, 16384 },
        { "header_timeout = 1m", 0, 60 * S_NS, 16384 },
        { "header_timeout = 1440m", 0, 1440 * 60 * S_NS, 16384 },
        { "header_timeout = 86400s", 0, 86400 * S_NS, 16384 },
        { "max_header_bytes = 256", 0, 10 * S_NS, 256 },
        { "max_header_bytes = 1m", 0, 10 * S_NS, 1 << 20 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "[proxy]\n%s\n" BASE_LISTEN BASE_UP BASE_ROUTE, t[i].line);
        px_config c;
        char err[256] = "";
        if (px_config_parse(&c, "proxy.conf", text, err, sizeof(err)) != 0)
            fail_msg("'%s': %s", t[i].line, err);
        if (c.max_body != t[i].max_body || c.header_timeout_ns != t[i].header_timeout_ns ||
            c.max_header_bytes != t[i].max_header_bytes)
            fail_msg("'%s': got max_body %llu header_timeout %lld max_header_bytes %u", t[i].line,
                     (unsigned long long)c.max_body, (long long)c.header_timeout_ns,
                     c.max_header_bytes);
        px_config_free(&c);
    }

    px_config c;
    parse_ok(&c, "[proxy]\ncores = 3, 1 ,255\nforward = splice\nmetrics = [::1]:1\n"
                 "access_log = off\n" BASE_LISTEN
                 "[upstream app]\nserver = 127.0.0.1:65535\nbalance = least_outstanding\n"
                 "[upstream b]\nserver = 10.0.0.1:1\nbalance = hash_client\n" BASE_ROUTE
                 "[route]\nhost = Example.COM\nupstream = b\n");
    assert_int_equal(c.ncpus, 3);
    assert_int_equal(c.cpus[0], 3);
    assert_int_equal(c.cpus[1], 1);
    assert_int_equal(c.cpus[2], 255);
    assert_string_equal(c.forward_mode, "splice");
    assert_string_equal(c.metrics_addr, "[::1]:1");
    assert_string_equal(c.metrics_host, "::1");
    assert_int_equal(c.metrics_port, 1);
    assert_string_equal(c.access_log, "");
    assert_int_equal(c.upstreams[0].balance, PX_BALANCE_LEAST_OUTSTANDING);
    assert_int_equal(c.upstreams[0].servers[0].weight, 1);
    assert_int_equal(ntohs(((struct sockaddr_in *)&c.upstreams[0].servers[0].addr)->sin_port),
                     65535);
    assert_int_equal(c.upstreams[1].balance, PX_BALANCE_HASH_CLIENT);
    assert_string_equal(c.routes[1].host, "Example.COM");
    assert_ptr_equal(c.routes[1].upstream, &c.upstreams[1]);
    px_config_free(&c);
}

/* A route may name an upstream declared after it. */
static void test_forward_reference(void **state)
{
    (void)state;
    px_config c;
    parse_ok(&c, BASE_LISTEN "[route]\nupstream = late\n"
                             "[upstream early]\nserver = 127.0.0.1:1\n"
                             "[upstream late]\nserver = 127.0.0.1:2\n");
    assert_ptr_equal(c.routes[0].upstream, &c.upstreams[1]);
    px_config_free(&c);
}

static const struct {
    const char *text;
    const char *err;
} errors[] = {
    /* structure */
    { "[proxy]\ncores = 0\n[bogus]\n", "proxy.conf:3: unknown section '[bogus]'" },
    { "[Proxy]\n", "proxy.conf:1: unknown section '[Proxy]'" },
    { "[proxy\n", "proxy.conf:1: missing ']' in section header" },
    { "[proxy] x\n", "proxy.conf:1: unexpected text after ']'" },
    { "[listen main]\n", "proxy.conf:1: [listen] takes no name" },
    { "[route x]\n", "proxy.conf:1: [route] takes no name" },
    { "[proxy x]\n", "proxy.conf:1: [proxy] takes no name" },
    { "[upstream]\n", "proxy.conf:1: [upstream] needs a name, as [upstream app]" },
    { "[upstream a b]\n",
      "proxy.conf:1: bad upstream name 'a b' (letters, digits, '-', '_', '.')" },
    { "[upstream a/b]\n",
      "proxy.conf:1: bad upstream name 'a/b' (letters, digits, '-', '_', '.')" },
    { "\n\ncores = 0\n", "proxy.conf:3: key 'cores' outside any section" },
    { "[proxy]\ncores 0,1\n", "proxy.conf:2: missing '=' in 'cores 0,1'" },
    { "[proxy]\n= 1\n", "proxy.conf:2: missing key before '='" },
    { "[proxy]\ncores =\n", "proxy.conf:2: missing value for 'cores'" },
    { "[proxy]\ncores =   # nothing\n", "proxy.conf:2: missing value for 'cores'" },
    { "[proxy]\n\nCores = 1\n", "proxy.conf:3: unknown key 'Cores' in [proxy]" },
    { "[listen]\nport = 1\n", "proxy.conf:2: unknown key 'port' in [listen]" },
    { "[route]\nprefix = /\n", "proxy.conf:2: unknown key 'prefix' in [route]" },
    { BASE_LISTEN "[upstream app]\nserver = 127.0.0.1:1\n\n\n\n\n\n\nbalanse = round_robin\n",
      "proxy.conf:11: unknown key 'balanse' in [upstream app]" },
    { "[proxy]\ncores = 0\ncores = 1\n", "proxy.conf:3: duplicate key 'cores' (first at line 2)" },
    { "[proxy]\n[listen]\naddress = 127.0.0.1:1\n[proxy]\n",
      "proxy.conf:4: duplicate [proxy] section (first at line 1)" },
    { "[upstream app]\nserver = 127.0.0.1:1\n[upstream app]\n",
      "proxy.conf:3: duplicate upstream 'app' (first at line 1)" },
    { BASE_LISTEN "[upstream app]\n\n[route]\nupstream = app\n",
      "proxy.conf:3: upstream 'app' has no server" },
    { BASE_LISTEN BASE_UP "[route]\npath = /\n", "proxy.conf:5: [route] has no upstream" },
    { BASE_LISTEN BASE_UP "[route]\npath = /\n[listen]\naddress = 127.0.0.1:2\n",
      "proxy.conf:5: [route] has no upstream" },
    { "[listen]\n[route]\n", "proxy.conf:1: [listen] has no address" },
    { BASE_LISTEN BASE_UP "[route]\nupstream = app\n\n[route]\npath = /b/\n\nupstream = ap\n",
      "proxy.conf:11: route uses unknown upstream 'ap'" },
    { BASE_LISTEN "[route]\nupstream = a b\n", "proxy.conf:4: route uses unknown upstream 'a b'" },
    { BASE_LISTEN BASE_UP BASE_ROUTE "[route]\npath = /\nupstream = app\n",
      "proxy.conf:7: duplicate route for host '' path '/' (first at line 5)" },
    { BASE_LISTEN BASE_UP "[route]\nhost = a.com\nupstream = app\n[route]\nhost = A.com\n"
                          "upstream = app\n",
      "proxy.conf:8: duplicate route for host 'A.com' path '/' (first at line 5)" },
    { BASE_UP BASE_ROUTE, "proxy.conf: no [listen] section" },
    { "[proxy]\n", "proxy.conf: no [listen] section" },
    { "", "proxy.conf: no [listen] section" },
    { BASE_LISTEN BASE_UP, "proxy.conf: no [route] section" },
    { BASE_LISTEN "[listen]\naddress = 127.0.0.1:8080\n",
      "proxy.conf:4: duplicate listener '127.0.0.1:8080' (first at line 1)" },
    { "[listen]\naddress = 1.2.3.4:1\naddress = 1.2.3.4:2\n",
      "proxy.conf:3: duplicate key 'address' (first at line 2)" },

    /* numbers, sizes, durations */
    { "[upstream app]\nserver = 127.0.0.1:1\nretries = -1\n", "proxy.conf:3: bad number '-1'" },
    { "[upstream app]\nserver = 127.0.0.1:1\nretries = +1\n", "proxy.conf:3: bad number '+1'" },
    { "[upstream app]\nserver = 127.0.0.1:1\nretries = 1x\n", "proxy.conf:3: bad number '1x'" },
    { "[upstream app]\nserver = 127.0.0.1:1\nretries = 1 2\n", "proxy.conf:3: bad number '1 2'" },
    { "[upstream app]\nserver = 127.0.0.1:1\nretries = 11\n",
      "proxy.conf:3: number '11' out of range for 'retries' (0..10)" },
    { "[upstream app]\nserver = 127.0.0.1:1\nkeepalive = 99999999999999999999999\n",
      "proxy.conf:3: number '99999999999999999999999' out of range for 'keepalive' (0..10000)" },
    { "[upstream app]\nserver = 127.0.0.1:1\nkeepalive = 4294967296\n",
      "proxy.conf:3: number '4294967296' out of range for 'keepalive' (0..10000)" },
    { "[proxy]\nmax_headers = 0\n",
      "proxy.conf:2: number '0' out of range for 'max_headers' (1..10000)" },
    { "[proxy]\nmax_body = 10x\n", "proxy.conf:2: bad size '10x' (use k, m or g)" },
    { "[proxy]\nmax_body = -1\n", "proxy.conf:2: bad size '-1' (use k, m or g)" },
    { "[proxy]\nmax_body = k\n", "proxy.conf:2: bad size 'k' (use k, m or g)" },
    { "[proxy]\nmax_body = 1.5m\n", "proxy.conf:2: bad size '1.5m' (use k, m or g)" },
    { "[proxy]\nmax_body = 17179869184g\n",
      "proxy.conf:2: size '17179869184g' out of range for 'max_body' (any size)" },
    { "[proxy]\nmax_body = 18446744073709551616\n",
      "proxy.conf:2: size '18446744073709551616' out of range for 'max_body' (any size)" },
    { "[proxy]\nmax_header_bytes = 255\n",
      "proxy.conf:2: size '255' out of range for 'max_header_bytes' (256..1m)" },
    { "[proxy]\nmax_header_bytes = 4g\n",
      "proxy.conf:2: size '4g' out of range for 'max_header_bytes' (256..1m)" },
    { BASE_LISTEN BASE_UP "[route]\nupstream = app\nmax_body = 1t\n",
      "proxy.conf:7: bad size '1t' (use k, m or g)" },
    { "[proxy]\n\n\n\n\n\nheader_timeout = 10x\n",
      "proxy.conf:7: bad duration '10x' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = 10\n", "proxy.conf:2: bad duration '10' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = s\n", "proxy.conf:2: bad duration 's' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = ms\n", "proxy.conf:2: bad duration 'ms' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = 1d\n", "proxy.conf:2: bad duration '1d' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = 25h\n", "proxy.conf:2: duration '25h' out of range for 'header_timeout' (1ms..1440m)" },
    { "[proxy]\nheader_timeout = -1s\n", "proxy.conf:2: bad duration '-1s' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = 1.5s\n", "proxy.conf:2: bad duration '1.5s' (use ms, s, m or h)" },
    { "[proxy]\nheader_timeout = 0s\n",
      "proxy.conf:2: duration '0s' out of range for 'header_timeout' (1ms..1440m)" },
    { "[proxy]\nsend_timeout = 1441m\n",
      "proxy.conf:2: duration '1441m' out of range for 'send_timeout' (1ms..1440m)" },
    { "[proxy]\ndrain_timeout = 99999999999999999999s\n",
      "proxy.conf:2: duration '99999999999999999999s' out of range for 'drain_timeout' "
      "(1ms..1440m)" },
    { "[upstream app]\nserver = 127.0.0.1:1\ncooldown = 10\n",
      "proxy.conf:3: bad duration '10' (use ms, s, m or h)" },

    /* addresses */
    { "[listen]\naddress = localhost:8080\n",
      "proxy.conf:2: bad address 'localhost:8080' (use a numeric IPv4:port or [IPv6]:port)" },
    { "[listen]\naddress = 127.0.0.1\n",
      "proxy.conf:2: bad address '127.0.0.1' (use a numeric IPv4:port or [IPv6]:port)" },
    { "[listen]\naddress = 127.0.0.256:80\n",
      "proxy.conf:2: bad address '127.0.0.256:80' (use a numeric IPv4:port or [IPv6]:port)" },
    { "[listen]\naddress = :80\n",
      "proxy.conf:2: bad address ':80' (use a numeric IPv4:port or [IPv6]:port)" },
    { "[listen]\naddress = ::1:80\n",
      "proxy.conf:2: bad address '::1:80' (IPv6 needs brackets, as [::1]:8080)" },
    { "[listen]\naddress = [::1]80\n",
      "proxy.conf:2: bad address '[::1]80' (use a numeric IPv4:port or [IPv6]:port)" },
    { "[listen]\naddress = [1.2.3.4]:80\n",
      "proxy.conf:2: bad address '[1.2.3.4]:80' (use a numeric IPv4:port or [IPv6]:port)" },
    { "[listen]\naddress = 0.0.0.0:0\n", "proxy.conf:2: bad port in '0.0.0.0:0' (1..65535)" },
    { "[listen]\naddress = 0.0.0.0:65536\n",
      "proxy.conf:2: bad port in '0.0.0.0:65536' (1..65535)" },
    { "[listen]\naddress = 0.0.0.0:\n", "proxy.conf:2: bad port in '0.0.0.0:' (1..65535)" },
    { "[listen]\naddress = 0.0.0.0:http\n",
      "proxy.conf:2: bad port in '0.0.0.0:http' (1..65535)" },
    { "[listen]\naddress = [::]:-1\n", "proxy.conf:2: bad port in '[::]:-1' (1..65535)" },
    { "[upstream app]\nserver = 127.0.0.1:0\n",
      "proxy.conf:2: bad port in '127.0.0.1:0' (1..65535)" },
    { "[proxy]\nmetrics = 127.0.0.1\n",
      "proxy.conf:2: bad address '127.0.0.1' (use a numeric IPv4:port or [IPv6]:port)" },

    /* servers and balance */
    { "[upstream app]\nserver = 127.0.0.1:1 weight=0\n", "proxy.conf:2: bad weight '0' (1..1000)" },
    { "[upstream app]\nserver = 127.0.0.1:1 weight=1001\n",
      "proxy.conf:2: bad weight '1001' (1..1000)" },
    { "[upstream app]\nserver = 127.0.0.1:1 weight=\n", "proxy.conf:2: bad weight '' (1..1000)" },
    { "[upstream app]\nserver = 127.0.0.1:1 weight=-3\n",
      "proxy.conf:2: bad weight '-3' (1..1000)" },
    { "[upstream app]\nserver = 127.0.0.1:1 weight=2 weight=3\n",
      "proxy.conf:2: weight given twice" },
    { "[upstream app]\nserver = 127.0.0.1:1 max_fails=3\n",
      "proxy.conf:2: unknown server option 'max_fails=3' (weight=N)" },
    { "[upstream app]\nserver = 127.0.0.1:1\nbalance = random\n",
      "proxy.conf:3: unknown balance 'random' (round_robin, least_outstanding, hash_header NAME "
      "or hash_client)" },
    { "[upstream app]\nserver = 127.0.0.1:1\nbalance = round_robin x\n",
      "proxy.conf:3: unknown balance 'round_robin x' (round_robin, least_outstanding, "
      "hash_header NAME or hash_client)" },
    { "[upstream app]\nserver = 127.0.0.1:1\nbalance = hash_headerX\n",
      "proxy.conf:3: unknown balance 'hash_headerX' (round_robin, least_outstanding, "
      "hash_header NAME or hash_client)" },
    { "[upstream app]\nserver = 127.0.0.1:1\nbalance = hash_header\n",
      "proxy.conf:3: hash_header needs a header name" },
    { "[upstream app]\nserver = 127.0.0.1:1\nbalance = hash_header X User\n",
      "proxy.conf:3: bad header name 'X User'" },
    { "[upstream app]\nserver = 127.0.0.1:1\nbalance = hash_header X:User\n",
      "proxy.conf:3: bad header name 'X:User'" },
    { "[upstream app]\nserver = 127.0.0.1:1\nhealth_check = healthz\n",
      "proxy.conf:3: bad health_check 'healthz' (a path starting with /, or off)" },

    /* [proxy] values */
    { "[proxy]\ncores = 256\n", "proxy.conf:2: CPU 256 in cores is over 255" },
    { "[proxy]\ncores = 0,99999999999999999999999\n",
      "proxy.conf:2: CPU 99999999999999999999999 in cores is over 255" },
    { "[proxy]\ncores = 0,1,0\n", "proxy.conf:2: duplicate CPU 0 in cores" },
    { "[proxy]\ncores = 0,,1\n", "proxy.conf:2: bad cores '0,,1' (use a list like 0,1 or all)" },
    { "[proxy]\ncores = 0,\n", "proxy.conf:2: bad cores '0,' (use a list like 0,1 or all)" },
    { "[proxy]\ncores = -1\n", "proxy.conf:2: bad cores '-1' (use a list like 0,1 or all)" },
    { "[proxy]\ncores = 0-3\n", "proxy.conf:2: bad cores '0-3' (use a list like 0,1 or all)" },
    { "[proxy]\ncores = none\n", "proxy.conf:2: bad cores 'none' (use a list like 0,1 or all)" },
    { "[proxy]\nforward = zerocopy\n",
      "proxy.conf:2: unknown forward mode 'zerocopy' (buffers or splice)" },

    /* [route] values */
    { "[route]\npath = api/\n", "proxy.conf:2: bad path 'api/' (a prefix starting with /)" },
    { "[route]\npath = /a?b\n", "proxy.conf:2: bad path '/a?b' (a prefix starting with /)" },
    { "[route]\npath = /a b\n", "proxy.conf:2: bad path '/a b' (a prefix starting with /)" },
    { "[route]\nhost = example.com:8080\n",
      "proxy.conf:2: bad host 'example.com:8080' (a name or [IPv6] without port)" },
    { "[route]\nhost = [::1\n", "proxy.conf:2: bad host '[::1' (a name or [IPv6] without port)" },
    { "[route]\nhost = a b\n", "proxy.conf:2: bad host 'a b' (a name or [IPv6] without port)" },

    /* bytes */
    { "[proxy]\naccess_log = /tmp/a\x01.log\n", "proxy.conf:2: control character 0x01" },
    { "[proxy]\naccess_log = /tmp/a\x7f.log\n", "proxy.conf:2: control character 0x7f" },
    { "[proxy]\naccess_log = /tmp/a\r.log\n", "proxy.conf:2: control character 0x0d" },
    { "[proxy]\naccess_log = /tmp/\xff.log\n", "proxy.conf:2: invalid UTF-8" },
    { "[proxy]\naccess_log = /tmp/\xc3.log\n", "proxy.conf:2: invalid UTF-8" },
    { "[proxy]\naccess_log = /tmp/\xc0\xaf.log\n", "proxy.conf:2: invalid UTF-8" },     /* overlong */
    { "[proxy]\naccess_log = /tmp/\xed\xa0\x80.log\n", "proxy.conf:2: invalid UTF-8" }, /* surrogate */
    { "[proxy]\naccess_log = /tmp/\xf4\x90\x80\x80\n", "proxy.conf:2: invalid UTF-8" }, /* > U+10FFFF */
    { "[proxy]\n# comment \xff\n", "proxy.conf:2: invalid UTF-8" },
};

static void test_errors(void **state)
{
    (void)state;
    unsigned bad = 0;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        px_config c;
        char err[512] = "";
        int rc = px_config_parse(&c, "proxy.conf", errors[i].text, err, sizeof(err));
        if (rc != -1 || strcmp(err, errors[i].err)) {
            print_error("case %zu: rc %d\n  want: %s\n  got:  %s\n", i, rc, errors[i].err, err);
            bad++;
            continue;
        }
        check_nothing_kept(&c);
    }
    assert_int_equal(bad, 0);
}

static void test_line_length(void **state)
{
    (void)state;
    /* 4096 bytes are fine, 4097 are not; the newline and a CR do not count. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t len = 4096 + (size_t)extra;
        char *text = malloc(len + 256);
        assert_non_null(text);
        int n = sprintf(text, BASE_LISTEN BASE_UP BASE_ROUTE "[proxy]\n");
        memset(text + n, '#', len);
        strcpy(text + n + len, "\r\n");
        if (extra) {
            assert_string_equal(parse_error(text), "proxy.conf:8: line longer than 4096 bytes");
        } else {
            px_config c;
            parse_ok(&c, text);
            px_config_free(&c);
        }
        free(text);
    }
}

static void test_value_too_long(void **state)
{
    (void)state;
    char text[1024];
    char path[600];
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = 0;
    snprintf(text, sizeof(text), "[proxy]\naccess_log = %s\n", path);
    assert_string_equal(parse_error(text), "proxy.conf:2: value too long (max 511 bytes)");
    snprintf(text, sizeof(text), "[route]\npath = %.300s\n", path);
    assert_string_equal(parse_error(text), "proxy.conf:2: value too long (max 255 bytes)");
    /* A name one byte over PX_MAX_NAME - 1. */
    char name[PX_MAX_NAME + 1];
    memset(name, 'n', PX_MAX_NAME);
    name[PX_MAX_NAME] = 0;
    snprintf(text, sizeof(text), "[upstream %s]\n", name);
    const char *err = parse_error(text);
    assert_true(strstr(err, "proxy.conf:1: bad upstream name") == err);
}

/* A short error buffer truncates; a NULL one is allowed. */
static void test_err_buffer(void **state)
{
    (void)state;
    px_config c;
    char err[12];
    memset(err, 'x', sizeof(err));
    assert_int_equal(px_config_parse(&c, "proxy.conf", "[x]\n", err, sizeof(err)), -1);
    assert_string_equal(err, "proxy.conf:");
    assert_int_equal(px_config_parse(&c, "proxy.conf", "[x]\n", NULL, 0), -1);
    assert_int_equal(px_config_parse(&c, NULL, "[x]\n", err, sizeof(err)), -1);
    assert_string_equal(err, "(config):1:");
}

static char *write_temp(const char *data, size_t len)
{
    char *path = strdup("/tmp/coil-proxy-conf-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loading data from a file fails with "PATH:line: msg", naming the path
 * as given. */
static void load_fails(const char *data, size_t len, unsigned line, const char *msg)
{
    char *path = write_temp(data, len);
    px_config c;
    char err[512] = "", want[600];
    assert_int_equal(px_config_load(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:%u: %s", path, line, msg);
    assert_string_equal(err, want);
    unlink(path);
    free(path);
}

static void test_load(void **state)
{
    (void)state;
    px_config c;
    char err[512] = "";

    char *path = write_temp(full_example, strlen(full_example));
    assert_int_equal(px_config_load(&c, path, err, sizeof(err)), 0);
    assert_int_equal(c.nroutes, 3);
    assert_int_equal(c.upstreams[0].servers[0].weight, 3);
    px_config_free(&c);
    unlink(path);
    free(path);

    static const char bad[] = "[listen]\naddress = 127.0.0.1:1\n[route]\nupstream = nowhere\n";
    load_fails(bad, strlen(bad), 4, "route uses unknown upstream 'nowhere'");
    /* A NUL byte is a control character, not the end of the file. */
    static const char nul[] = "[listen]\naddress = 127.0.0.1:1\n[route]\npath = /\0a\n";
    load_fails(nul, sizeof(nul) - 1, 4, "control character 0x00");

    assert_int_equal(px_config_load(&c, "/nonexistent/proxy.conf", err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/proxy.conf: No such file or directory");
    assert_null(c.listeners);

    assert_int_equal(px_config_load(&c, "/tmp", err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp: not a regular file");
}

/* The "Full example" block of docs/proxy.md parses. */
static void test_docs_example(void **state)
{
    (void)state;
    FILE *f = fopen(COIL_PROXY_DOC, "r");
    if (!f)
        fail_msg("cannot open %s", COIL_PROXY_DOC);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = 0;
    char *sec = strstr(doc, "\n## Full example\n");
    assert_non_null(sec);
    char *start = strstr(sec, "```ini\n");
    assert_non_null(start);
    start += 7;
    char *end = strstr(start, "```\n");
    assert_non_null(end);
    *end = 0;
    px_config c;
    parse_ok(&c, start);
    assert_int_equal(c.nlisteners, 2);
    assert_int_equal(c.nupstreams, 2);
    assert_int_equal(c.nroutes, 3);
    assert_int_equal(c.upstreams[1].balance, PX_BALANCE_HASH_HEADER);
    px_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_builtin),
        cmocka_unit_test(test_lexical_ok),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_forward_reference),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_line_length),
        cmocka_unit_test(test_value_too_long),
        cmocka_unit_test(test_err_buffer),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_docs_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
