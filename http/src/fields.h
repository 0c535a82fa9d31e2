/*
 * Private: byte-level helpers for HTTP field syntax (RFC 9110 5 and 5.6,
 * RFC 9112 3.2). Pure functions over (pointer, length) pairs that need not
 * be NUL-terminated; nothing here allocates or keeps a pointer.
 */
#ifndef COIL_HTTP_FIELDS_H
#define COIL_HTTP_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* tchar (RFC 9110 5.6.2): the bytes of a token. */
bool coil__http_is_tchar(unsigned char c);

/* True if s[0..n) is a non-empty token. */
bool coil__http_is_token(const char *s, size_t n);

/* True if s[0..n) equals the NUL-terminated lit, ignoring ASCII case. */
bool coil__http_ieq(const char *s, size_t n, const char *lit);

/* Trims SP and HTAB (OWS) from both ends of *s / *n in place. */
void coil__http_trim(const char **s, size_t *n);

/* Walks a comma-separated list (RFC 9110 5.6.1): on each call stores the
 * next non-empty element, OWS-trimmed, in *elem / *elem_len and returns
 * true; returns false at the end. Empty elements are skipped, as the RFC
 * asks recipients to do. *cur starts at the value and advances to end. */
bool coil__http_list_next(const char **cur, const char *end, const char **elem, size_t *elem_len);

/* Content-Length (RFC 9110 8.6): 1*DIGIT that fits in an int64_t. Returns
 * 0 and stores the value, or -1. */
int coil__http_parse_length(const char *s, size_t n, int64_t *out);

/* uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2): an IP-literal in
 * brackets or a reg-name (unreserved, pct-encoded, sub-delims), an optional
 * port of at most 5 digits up to 65535. No userinfo. An empty value is
 * valid only with allow_empty; need_port demands ":port" (authority-form). */
bool coil__http_valid_authority(const char *s, size_t n, bool allow_empty, bool need_port);

/* reason-phrase (RFC 9112 4): HTAB, SP, VCHAR, obs-text. */
bool coil__http_valid_reason(const char *s, size_t n);

/* True if a field value contains none of CR, LF, NUL (RFC 9110 5.5: a
 * recipient must reject or replace them; coil rejects). */
bool coil__http_value_safe(const char *s, size_t n);

#endif
