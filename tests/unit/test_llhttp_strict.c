/* llhttp is built in strict mode and behaves the way the HTTP layer relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

#if !defined(LLHTTP_STRICT_MODE) || LLHTTP_STRICT_MODE != 1
#error "llhttp must be compiled with LLHTTP_STRICT_MODE=1 (coil_llhttp sets it PUBLIC)"
#endif

struct seen {
    char method[16];
    char url[64];
    char fields[128]; /* "name=value;" for each header */
    int headers_complete;
    int messages;
};

static void append(char *dst, size_t cap, const char *at, size_t len)
{
    size_t have = strlen(dst);
    assert_true(have + len < cap);
    memcpy(dst + have, at, len);
    dst[have + len] = '\0';
}

static struct seen *S(llhttp_t *p) { return (struct seen *)p->data; }

static int on_method(llhttp_t *p, const char *at, size_t len)
{ append(S(p)->method, sizeof S(p)->method, at, len); return 0; }
static int on_url(llhttp_t *p, const char *at, size_t len)
{ append(S(p)->url, sizeof S(p)->url, at, len); return 0; }
static int on_field(llhttp_t *p, const char *at, size_t len)
{ append(S(p)->fields, sizeof S(p)->fields, at, len); return 0; }
static int on_field_done(llhttp_t *p)
{ append(S(p)->fields, sizeof S(p)->fields, "=", 1); return 0; }
static int on_value(llhttp_t *p, const char *at, size_t len)
{ append(S(p)->fields, sizeof S(p)->fields, at, len); return 0; }
static int on_value_done(llhttp_t *p)
{ append(S(p)->fields, sizeof S(p)->fields, ";", 1); return 0; }
static int on_headers_complete(llhttp_t *p) { S(p)->headers_complete++; return 0; }
static int on_message_complete(llhttp_t *p) { S(p)->messages++; return 0; }

/* Parses req in one llhttp_execute call; returns the error code. */
static llhttp_errno_t parse(const char *req, struct seen *out)
{
    static llhttp_settings_t settings;
    llhttp_t parser;

    llhttp_settings_init(&settings);
    settings.on_method = on_method;
    settings.on_url = on_url;
    settings.on_header_field = on_field;
    settings.on_header_field_complete = on_field_done;
    settings.on_header_value = on_value;
    settings.on_header_value_complete = on_value_done;
    settings.on_headers_complete = on_headers_complete;
    settings.on_message_complete = on_message_complete;

    memset(out, 0, sizeof *out);
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = out;
    return llhttp_execute(&parser, req, strlen(req));
}

static void test_strict_mode_macro(void **state)
{
    (void)state;
    assert_int_equal(LLHTTP_STRICT_MODE, 1);
}

static void test_valid_request(void **state)
{
    struct seen s;
    (void)state;
    assert_int_equal(parse("GET /a/b?c=d HTTP/1.1\r\nHost: example\r\nX-Y: z\r\n\r\n", &s), HPE_OK);
    assert_string_equal(s.method, "GET");
    assert_string_equal(s.url, "/a/b?c=d");
    assert_string_equal(s.fields, "Host=example;X-Y=z;");
    assert_int_equal(s.headers_complete, 1);
    assert_int_equal(s.messages, 1);
}

/* A header line ending in a bare LF is rejected. (llhttp 8.1 as patched in
 * Debian rejects this in both modes; we still rely on it.) */
static void test_bare_lf_header_rejected(void **state)
{
    struct seen s;
    (void)state;
    assert_int_not_equal(parse("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", &s), HPE_OK);
    assert_int_equal(s.messages, 0);
}

/* The following are accepted when LLHTTP_STRICT_MODE=0 and rejected in
 * strict mode: they prove strict mode is really compiled in. */

/* CR at the end of the header block must be followed by LF. */
static void test_strict_cr_without_lf_after_headers(void **state)
{
    struct seen s;
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n\rX", &s), HPE_STRICT);
    assert_int_equal(s.messages, 0);
}

/* Control characters (TAB, FF) in the request target. */
static void test_strict_url_control_chars(void **state)
{
    struct seen s;
    (void)state;
    assert_int_equal(parse("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", &s), HPE_INVALID_URL);
    assert_int_equal(parse("GET /a\fb HTTP/1.1\r\nHost: a\r\n\r\n", &s), HPE_INVALID_URL);
    assert_int_equal(s.messages, 0);
}

/* Chunk data must be followed by CRLF. */
static void test_strict_chunk_crlf(void **state)
{
    struct seen s;
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "1\r\naXX0\r\n\r\n", &s), HPE_STRICT);
    assert_int_equal(s.messages, 0);
}

/* Bytes after a message with "Connection: close" are an error. */
static void test_strict_data_after_connection_close(void **state)
{
    struct seen s;
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                           "GET / HTTP/1.1\r\n\r\n", &s), HPE_CLOSED_CONNECTION);
    assert_int_equal(s.messages, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_mode_macro),
        cmocka_unit_test(test_valid_request),
        cmocka_unit_test(test_bare_lf_header_rejected),
        cmocka_unit_test(test_strict_cr_without_lf_after_headers),
        cmocka_unit_test(test_strict_url_control_chars),
        cmocka_unit_test(test_strict_chunk_crlf),
        cmocka_unit_test(test_strict_data_after_connection_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
