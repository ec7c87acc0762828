/*
 * libFuzzer target: the catcher's HTTP request reader (csrc/web/httpd.c).
 * Any bytes: a head read lies within them, within the limits, its field
 * names are tokens and its values carry no CR, LF or NUL, Content-Length
 * stays under the bound; a refusal is one of the statuses httpd.h lists;
 * and the reader is stateless: every prefix that ends before the head
 * does asks for more. The unescaper never writes more than it reads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const char *base, size_t n, httpd_slice s) {
  if (s.n && (s.p < base || s.p + s.n > base + n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  static httpd_request r, r2;
  size_t max_body = size % 4096;
  int rc = httpd_parse(p, size, max_body, &r), i;
  char *out;
  if (rc > 0) {
    size_t h = (size_t)rc, cut;
    if (h > size || h != r.head_len || h > HTTPD_HEAD_MAX + 20) abort();
    if (r.content_length > max_body || r.method.n == 0 || r.target.n == 0) abort();
    inside(p, h, r.method);
    inside(p, h, r.target);
    inside(p, h, r.path);
    inside(p, h, r.query);
    inside(p, h, r.host);
    if (r.nfields > HTTPD_FIELDS_MAX) abort();
    for (i = 0; i < r.nfields; i++) {
      const httpd_field *f = &r.fields[i];
      size_t k;
      inside(p, h, f->name);
      inside(p, h, f->value);
      if (f->name.n == 0) abort();
      for (k = 0; k < f->name.n; k++)
        if (f->name.p[k] == ':' || f->name.p[k] == ' ' || (unsigned char)f->name.p[k] < 0x21)
          abort();
      if (memchr(f->value.p, '\r', f->value.n) || memchr(f->value.p, '\n', f->value.n) ||
          memchr(f->value.p, '\0', f->value.n))
        abort();
    }
    for (cut = 0; cut < h; cut += 1 + h / 7)
      if (httpd_parse(p, cut, max_body, &r2) != 0) abort();
  } else if (rc < 0) {
    switch (-rc) {
    case 400: case 413: case 414: case 431: case 501: case 505: break;
    default: abort();
    }
  } else if (size >= HTTPD_HEAD_MAX + 8) {
    abort();                       /* more than a head can be: decided */
  }
  out = malloc(size + 1);
  if (out) {
    httpd_slice s = {p, size};
    long n = httpd_unescape(s, out, size & 1);
    if (n > (long)size) abort();
    free(out);
  }
  return 0;
}
