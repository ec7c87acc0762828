/*
 * A strict HTTP/1.1 request reader for the catcher's web server: the pure
 * layer (no Lua, no libuv), fuzzed by fuzz/http_fuzz.c.
 *
 * httpd_parse() reads the head of the request at the start of a buffer
 * (RFC 9112): it is stateless, so a caller with more bytes calls it again
 * from the start (the head is at most HTTPD_HEAD_MAX bytes). What it
 * refuses, it refuses with the status to answer, and the connection is
 * closed after that answer:
 *   - a request line other than METHOD SP origin-form SP HTTP/1.0|1.1
 *     (or OPTIONS *), a method that is not a token;
 *   - a line end other than CRLF, a NUL, a CR or any control byte in a
 *     field, a field name that is not a token, space before the colon,
 *     an obsolete line folding;
 *   - Content-Length that is not digits, or given twice (even the same),
 *     or beyond the caller's bound (413);
 *   - any Transfer-Encoding (501: the API never takes chunked bodies);
 *   - HTTP/1.1 without exactly one Host, or two Hosts in HTTP/1.0;
 *   - a head beyond HTTPD_HEAD_MAX, a request line beyond HTTPD_LINE_MAX
 *     (431 and 414), more than HTTPD_FIELDS_MAX fields (431).
 */
#ifndef SMTPD_WEB_HTTPD_H
#define SMTPD_WEB_HTTPD_H

#include <stddef.h>

#define HTTPD_LINE_MAX 8192        /* the request line */
#define HTTPD_HEAD_MAX 16384       /* the request line and every field */
#define HTTPD_FIELDS_MAX 100

typedef struct httpd_slice {
  const char *p;
  size_t n;
} httpd_slice;

typedef struct httpd_field {
  httpd_slice name;                /* as sent (names are case-blind) */
  httpd_slice value;               /* without its leading and trailing space */
} httpd_field;

typedef struct httpd_request {
  httpd_slice method, target, path, query;  /* query: after '?', or n = 0 */
  int minor;                       /* HTTP/1.<minor> */
  int keep_alive;                  /* the connection may serve another */
  size_t content_length;
  httpd_slice host;                /* n = 0 when none (HTTP/1.0) */
  int nfields;
  httpd_field fields[HTTPD_FIELDS_MAX];
  size_t head_len;                 /* bytes of the head, its blank line too */
} httpd_request;

/* The head at p[0..n): > 0 its length (r filled), 0 when more bytes are
 * needed, or -status (-400, -413, -414, -431, -501, -505) when it must be
 * refused. max_body bounds Content-Length. */
int httpd_parse(const char *p, size_t n, size_t max_body, httpd_request *r);

/* The value of the field named name (case-blind), or NULL. */
const httpd_slice *httpd_field_get(const httpd_request *r, const char *name);

/* The standard reason phrase of a status ("OK"), "" for others. */
const char *httpd_reason(int status);

/* Decodes %XX escapes of s into out (at least s.n bytes); plus_space
 * turns '+' into a space (query strings). -1 on a malformed escape;
 * otherwise the decoded length. */
long httpd_unescape(httpd_slice s, char *out, int plus_space);

#endif
