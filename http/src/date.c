/* The Date field value, formatted once per second per thread (per core),
 * and the status line that goes with it. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_impl.h"

static _Thread_local time_t cached_sec = -1;
static _Thread_local char cached[32];
static _Thread_local size_t cached_len;

/* "Sun, 06 Nov 1994 08:49:37 GMT", cached per thread and second; its
 * length in *len. */
static const char *http_date(size_t *len)
{
    time_t now = time(NULL);
    if (now != cached_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        cached_len = strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_sec = now;
    }
    *len = cached_len;
    return cached;
}

/* The status line and Date field of the last answer on this thread: the
 * next mostly repeats both. */
static _Thread_local struct {
    int status; /* 0: none yet */
    time_t sec;
    size_t len;
    char text[192];
} head;

const char *coil__http_status_date(int status, size_t *len)
{
    size_t date_len;
    const char *date = http_date(&date_len);
    if (status != head.status || cached_sec != head.sec) {
        const char *reason = coil_http_reason(status); /* short, static */
        size_t reason_len = strlen(reason);
        if (reason_len >= 128)
            reason_len = 0;
        char *e = head.text;
        memcpy(e, "HTTP/1.1 ", 9);
        e += 9;
        *e++ = (char)('0' + status / 100 % 10);
        *e++ = (char)('0' + status / 10 % 10);
        *e++ = (char)('0' + status % 10);
        *e++ = ' ';
        memcpy(e, reason, reason_len);
        e += reason_len;
        memcpy(e, "\r\nDate: ", 8);
        e += 8;
        memcpy(e, date, date_len);
        e += date_len;
        memcpy(e, "\r\n", 2);
        e += 2;
        head.len = (size_t)(e - head.text);
        head.status = status;
        head.sec = cached_sec;
    }
    *len = head.len;
    return head.text;
}

const char *coil_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}
