/* The catcher's HTTP/1.1 request reader: see httpd.h. */
#include <string.h>
#include <strings.h>

#include "web/httpd.h"

/* RFC 9110 5.6.2 tchar */
static int is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return 1;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field value's byte: VCHAR, SP, HT or obs-text. */
static int is_vbyte(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int ieq(httpd_slice s, const char *w) {
  size_t n = strlen(w);
  return s.n == n && strncasecmp(s.p, w, n) == 0;
}

/* Where "\r\n\r\n" starts in p[0..n), or -1. */
static long head_end(const char *p, size_t n) {
  size_t i;
  for (i = 0; i + 3 < n; i++) {
    const char *q = memchr(p + i, '\r', n - 3 - i);
    if (q == NULL) return -1;
    i = (size_t)(q - p);
    if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n') return (long)i;
  }
  return -1;
}

/* The Connection field's tokens, comma-separated. */
static void connection_tokens(httpd_slice v, httpd_request *r) {
  size_t i = 0;
  while (i < v.n) {
    size_t s, e;
    while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) i++;
    s = i;
    while (i < v.n && v.p[i] != ',') i++;
    e = i;
    while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) e--;
    if (e > s) {
      httpd_slice t = {v.p + s, e - s};
      if (ieq(t, "close")) r->keep_alive = 0;
      else if (ieq(t, "keep-alive") && r->minor == 0) r->keep_alive = 1;
    }
  }
}

static int request_line(const char *p, size_t n, httpd_request *r) {
  size_t i = 0, s;
  while (i < n && is_tchar((unsigned char)p[i])) i++;
  if (i == 0 || i >= n || p[i] != ' ') return -400;
  r->method.p = p;
  r->method.n = i;
  s = ++i;
  while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f) i++;
  if (i == s || i >= n || p[i] != ' ') return -400;
  r->target.p = p + s;
  r->target.n = i - s;
  i++;
  if (n - i != 8 || memcmp(p + i, "HTTP/", 5) != 0) return -400;
  if (p[i + 5] < '0' || p[i + 5] > '9' || p[i + 6] != '.' ||
      p[i + 7] < '0' || p[i + 7] > '9')
    return -400;
  if (p[i + 5] != '1' || (p[i + 7] != '0' && p[i + 7] != '1')) return -505;
  r->minor = p[i + 7] - '0';
  /* origin-form, or the asterisk of OPTIONS; never a fragment */
  if (memchr(r->target.p, '#', r->target.n)) return -400;
  if (r->target.p[0] == '*') {
    if (r->target.n != 1 || !ieq(r->method, "OPTIONS")) return -400;
    r->path = r->target;
    return 0;
  }
  if (r->target.p[0] != '/') return -400;
  {
    const char *q = memchr(r->target.p, '?', r->target.n);
    r->path.p = r->target.p;
    r->path.n = q ? (size_t)(q - r->target.p) : r->target.n;
    if (q) {
      r->query.p = q + 1;
      r->query.n = r->target.n - r->path.n - 1;
    }
  }
  return 0;
}

/* Digits only, one value (a list of equal values is refused too), never
 * past max_body (the guard holds on every word size). */
static int content_length(httpd_slice v, size_t max_body, size_t *out) {
  size_t i, x = 0;
  int big = 0;
  if (v.n == 0) return -400;
  for (i = 0; i < v.n; i++) {
    size_t d;
    if (v.p[i] < '0' || v.p[i] > '9') return -400;
    d = (size_t)(v.p[i] - '0');
    if (big || d > max_body || x > (max_body - d) / 10) big = 1;
    else x = x * 10 + d;
  }
  if (big) return -413;
  *out = x;
  return 0;
}

int httpd_parse(const char *p, size_t n, size_t max_body, httpd_request *r) {
  size_t start = 0, i, line_end;
  long end;
  int hosts = 0, lengths = 0, rc;
  memset(r, 0, sizeof *r);
  /* empty lines before the request line are passed over (RFC 9112 2.2) */
  while (start < 8 && start + 1 < n && p[start] == '\r' && p[start + 1] == '\n')
    start += 2;
  {
    size_t look = n - start < HTTPD_HEAD_MAX ? n - start : HTTPD_HEAD_MAX;
    const char *lf = memchr(p + start, '\n', look < HTTPD_LINE_MAX + 2
                                             ? look : HTTPD_LINE_MAX + 2);
    if (lf == NULL && look > HTTPD_LINE_MAX + 1) return -414;
    end = head_end(p + start, look);
    if (end < 0) {
      /* a line end other than CRLF is refused now, not after a timeout */
      const char *q = p + start, *lim = p + start + look;
      while ((q = memchr(q, '\n', (size_t)(lim - q))) != NULL) {
        if (q == p + start || q[-1] != '\r') return -400;
        q++;
      }
      q = p + start;
      while ((q = memchr(q, '\r', (size_t)(lim - q))) != NULL) {
        if (q + 1 < lim && q[1] != '\n') return -400;
        q++;
      }
      return look >= HTTPD_HEAD_MAX ? -431 : 0;
    }
  }
  /* p[start .. start+end) is the request line and the fields, CRLF apart */
  line_end = start;
  {
    const char *q = p + start, *lim = p + start + end;
    const char *e = memchr(q, '\n', (size_t)(lim - q));
    size_t ln;
    if (e == NULL) e = lim; else if (e == q || e[-1] != '\r') return -400;
    else e--;
    ln = (size_t)(e - q);
    if (ln > HTTPD_LINE_MAX) return -414;
    if (memchr(q, '\r', ln)) return -400;
    if ((rc = request_line(q, ln, r)) != 0) return rc;
    line_end = (size_t)(e - p) + 2;
  }
  r->keep_alive = r->minor == 1;
  i = line_end;
  while (i < start + (size_t)end + 2) {
    const char *q = p + i, *lim = p + start + end;
    const char *e, *colon;
    size_t ln, k, vs, ve;
    httpd_field *f;
    if (q >= lim) break;
    e = memchr(q, '\n', (size_t)(lim - q));
    if (e == NULL) e = lim; else if (e == q || e[-1] != '\r') return -400;
    else e--;
    ln = (size_t)(e - q);
    if (memchr(q, '\r', ln)) return -400;          /* a bare CR */
    if (q[0] == ' ' || q[0] == '\t') return -400;   /* obs-fold */
    colon = memchr(q, ':', ln);
    if (colon == NULL || colon == q) return -400;
    for (k = 0; q + k < colon; k++)
      if (!is_tchar((unsigned char)q[k])) return -400;
    vs = (size_t)(colon - q) + 1;
    ve = ln;
    for (k = vs; k < ve; k++)
      if (!is_vbyte((unsigned char)q[k])) return -400;
    while (vs < ve && (q[vs] == ' ' || q[vs] == '\t')) vs++;
    while (ve > vs && (q[ve - 1] == ' ' || q[ve - 1] == '\t')) ve--;
    if (r->nfields >= HTTPD_FIELDS_MAX) return -431;
    f = &r->fields[r->nfields++];
    f->name.p = q;
    f->name.n = (size_t)(colon - q);
    f->value.p = q + vs;
    f->value.n = ve - vs;
    if (ieq(f->name, "content-length")) {
      if (lengths++) return -400;
      if ((rc = content_length(f->value, max_body, &r->content_length)) != 0)
        return rc;
    } else if (ieq(f->name, "transfer-encoding")) {
      return -501;
    } else if (ieq(f->name, "host")) {
      hosts++;
      r->host = f->value;
    } else if (ieq(f->name, "connection")) {
      connection_tokens(f->value, r);
    }
    i = (size_t)(e - p) + 2;
  }
  if (hosts > 1 || (r->minor == 1 && hosts != 1)) return -400;
  r->head_len = start + (size_t)end + 4;
  return (int)r->head_len;
}

const httpd_slice *httpd_field_get(const httpd_request *r, const char *name) {
  int i;
  for (i = 0; i < r->nfields; i++)
    if (ieq(r->fields[i].name, name)) return &r->fields[i].value;
  return NULL;
}

const char *httpd_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
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
  case 422: return "Unprocessable Content";
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

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = (char)(c | 0x20);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

long httpd_unescape(httpd_slice s, char *out, int plus_space) {
  size_t i, o = 0;
  for (i = 0; i < s.n; i++) {
    char c = s.p[i];
    if (c == '%') {
      int h, l;
      if (i + 2 >= s.n) return -1;
      h = hexval(s.p[i + 1]);
      l = hexval(s.p[i + 2]);
      if (h < 0 || l < 0) return -1;
      out[o++] = (char)(h * 16 + l);
      i += 2;
    } else if (c == '+' && plus_space) {
      out[o++] = ' ';
    } else {
      out[o++] = c;
    }
  }
  return (long)o;
}
