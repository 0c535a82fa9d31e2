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
#include <string.h>

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


/* ---- eight bytes at a time ----
 *
 * Every head passes through the functions below, several times per field:
 * they are inline, and work on a word of eight bytes at once. */

#define COIL__HTTP_ONES 0x0101010101010101ull
#define COIL__HTTP_HIGHS (COIL__HTTP_ONES * 0x80)

/* s[0..8) with s[0] in the low byte, whatever the machine's byte order:
 * the flags computed below are read lowest first. */
static inline uint64_t coil__http_load8(const char *s)
{
    uint64_t w;
    memcpy(&w, s, sizeof(w)); /* one unaligned load */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The same for s[0..4), in the low half. */
static inline uint64_t coil__http_load4(const char *s)
{
    uint32_t w;
    memcpy(&w, s, sizeof(w));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap32(w);
#endif
    return w;
}

/* Bit 7 set in every byte of the result whose byte of w is below n
 * (n <= 0x80). The lowest such flag is exact; a higher one may be false (a
 * borrow from the byte below), never missing. */
static inline uint64_t coil__http_bytes_below(uint64_t w, unsigned n)
{
    return (w - COIL__HTTP_ONES * n) & ~w & COIL__HTTP_HIGHS;
}

/* The eight bytes of w in ASCII lower case: a byte in 'A'..'Z' gains 0x20.
 * The range test runs on the low seven bits of every byte at once (no
 * carry crosses a byte), and bytes >= 0x80 are left alone. */
static inline uint64_t coil__http_lower8(uint64_t w)
{
    uint64_t low7 = w & ~COIL__HTTP_HIGHS;
    uint64_t ge_a = low7 + COIL__HTTP_ONES * (0x80 - 'A');     /* bit 7 set: >= 'A' */
    uint64_t gt_z = low7 + COIL__HTTP_ONES * (0x80 - 'Z' - 1); /* bit 7 set: > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~w & COIL__HTTP_HIGHS;
    return w | (upper >> 2); /* 0x80 >> 2 == 0x20 */
}

/* True if s[0..n) equals lower[0..n), ignoring the case of s: lower must be
 * lower case (a literal). See COIL__HTTP_IS. */
static inline bool coil__http_ieq_lower(const char *s, const char *lower, size_t n)
{
    /* Whole words, the last one overlapping the one before when n is not a
     * multiple of their size (lower8 leaves the zero upper half of a
     * four-byte word alone). */
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (coil__http_lower8(coil__http_load8(s + i)) != coil__http_load8(lower + i))
                return false;
        return coil__http_lower8(coil__http_load8(s + n - 8)) == coil__http_load8(lower + n - 8);
    }
    if (n >= 4)
        return coil__http_lower8(coil__http_load4(s)) == coil__http_load4(lower) &&
               coil__http_lower8(coil__http_load4(s + n - 4)) == coil__http_load4(lower + n - 4);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c) != (unsigned char)lower[i])
            return false;
    }
    return true;
}

/* True if s[0..n) is the lower-case string literal lit, ignoring ASCII case.
 * The lengths are compared first, so a name of another length costs one
 * comparison: the parser and the server ask this of every field. */
#define COIL__HTTP_IS(s, n, lit) \
    ((n) == sizeof(lit) - 1 && coil__http_ieq_lower((s), (lit), sizeof(lit) - 1))

/* The bytes that end a run (coil__http_run), by kind of run: in a value
 * received, in a token (a received field name, a word of the request
 * line), in a line written (CR, LF) and in a field name written (also
 * ':'). */
enum {
    COIL__HTTP_ENDS_VALUE = 1,
    COIL__HTTP_ENDS_TOKEN = 2,
    COIL__HTTP_ENDS_LINE = 4,
    COIL__HTTP_ENDS_NAME = 8,
};
extern const unsigned char coil__http_run_end[256];

/* Bit 7 of each byte of w that may end a run of the kind: CR, LF and NUL
 * are below 0x0e, and with HTAB and SP below 0x21. Flags may be false (a
 * HTAB in a value, a control byte in a name, a borrow): each is checked
 * against coil__http_run_end. */
static inline uint64_t coil__http_run_candidates(uint64_t w, unsigned kind)
{
    uint64_t colon = coil__http_bytes_below(w ^ (COIL__HTTP_ONES * ':'), 1);
    switch (kind) {
    case COIL__HTTP_ENDS_TOKEN:
        return coil__http_bytes_below(w, 0x21) | colon;
    case COIL__HTTP_ENDS_NAME:
        return coil__http_bytes_below(w, 0x0e) | colon;
    default:
        return coil__http_bytes_below(w, 0x0e);
    }
}

/* The length of the run at the start of s[0..n) free of the bytes that end
 * the kind (n if there is none of them). */
static inline size_t coil__http_run(const char *s, size_t n, unsigned kind)
{
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t m = coil__http_run_candidates(coil__http_load8(s + i), kind);
        if (!m) {
            i += 8;
            continue;
        }
        size_t j = i + (size_t)(__builtin_ctzll(m) / 8);
        if (coil__http_run_end[(unsigned char)s[j]] & kind)
            return j;
        i = j + 1; /* flagged only: the next word starts after it */
    }
    if (i < n && n >= 8) {
        /* The tail at once: the last word, overlapping, with the flags of
         * the bytes already passed shifted out. */
        uint64_t m = coil__http_run_candidates(coil__http_load8(s + n - 8), kind) >> (8 * (i + 8 - n));
        if (!m)
            return n;
        i += (size_t)(__builtin_ctzll(m) / 8);
    }
    for (; i < n; i++)
        if (coil__http_run_end[(unsigned char)s[i]] & kind)
            return i;
    return n;
}

/* The run free of CR, LF and NUL: the rest of a field value's line. */
static inline size_t coil__http_value_run(const char *s, size_t n)
{
    return coil__http_run(s, n, COIL__HTTP_ENDS_VALUE);
}

/* The run free of CR, LF, NUL, SP, HTAB and ':', the bytes that end a
 * field name or a word of the request line. */
static inline size_t coil__http_token_run(const char *s, size_t n)
{
    return coil__http_run(s, n, COIL__HTTP_ENDS_TOKEN);
}

/* True if a field value contains none of CR, LF, NUL (RFC 9110 5.5: a
 * recipient must reject or replace them; coil rejects). */
static inline bool coil__http_value_safe(const char *s, size_t n)
{
    return coil__http_value_run(s, n) == n;
}

#endif
