/*
 * Router: method and path, exact and prefix routes. Exact matches win over
 * prefixes, longer prefixes over shorter; a path that matches only under
 * other methods gets 405 with Allow.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http_impl.h"

static bool path_matches(const coil_http_route *r, const coil_http_request *req, size_t *score)
{
    if (!r->prefix) {
        *score = SIZE_MAX;
        /* Byte by byte, without a strlen first (most routes differ early):
         * the path holds no NUL (the parser refuses it in a head), so a
         * shorter route differs at its end. */
        for (uint32_t i = 0; i < req->path_len; i++)
            if (req->path[i] != r->path[i])
                return false;
        return r->path[req->path_len] == '\0';
    }
    size_t n = strlen(r->path);
    *score = n;
    return req->path_len >= n && memcmp(req->path, r->path, n) == 0;
}

static int router_call(coil_http_service *self, coil_http_request *req)
{
    coil_http_router *rt = (coil_http_router *)self;
    const coil_http_route *best = NULL;
    size_t best_score = 0;
    bool path_seen = false;
    char allow[256]; /* written only for a 405, up to allow_len */
    size_t allow_len = 0;
    for (unsigned i = 0; i < rt->nroutes; i++) {
        const coil_http_route *r = &rt->routes[i];
        size_t score;
        if (!path_matches(r, req, &score))
            continue;
        path_seen = true;
        /* A GET route answers HEAD too: the server drops the body. */
        bool method_ok = !r->method || coil_http_method_is(req, r->method) ||
                         (!strcmp(r->method, "GET") && coil_http_method_is(req, "HEAD"));
        if (!method_ok) {
            int n = snprintf(allow + allow_len, sizeof(allow) - allow_len, "%s%s",
                             allow_len ? ", " : "", r->method);
            if (n > 0 && (size_t)n < sizeof(allow) - allow_len)
                allow_len += (size_t)n;
            continue;
        }
        if (!best || score > best_score) {
            best = r;
            best_score = score;
        }
    }
    if (best) {
        if (best->max_body)
            coil_http_set_body_limit(req, best->max_body);
        return coil_http_call(best->service, req);
    }
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    if (path_seen) {
        coil_http_field f[2] = { ct, { "Allow", 5, allow, (uint32_t)allow_len } };
        static const char body[] = "405 Method Not Allowed\n";
        return coil_http_respond(req, 405, f, 2, body, sizeof(body) - 1);
    }
    static const char body[] = "404 Not Found\n";
    return coil_http_respond(req, 404, &ct, 1, body, sizeof(body) - 1);
}

coil_http_service *coil_http_router_init(coil_http_router *r, const coil_http_route *routes,
                                         unsigned nroutes)
{
    *r = (coil_http_router){ .svc = { .call = router_call }, .routes = routes, .nroutes = nroutes };
    return &r->svc;
}
