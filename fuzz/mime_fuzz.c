/*
 * libFuzzer target: the message parser (csrc/mime/mime.c) over any bytes. Every
 * part is walked, every header decoded, every parameter, address list and
 * body decoded; the index must stay inside the input and the tree must be
 * well formed. Crashes, leaks, overreads and UB are what it looks for.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_addr(const char *name, size_t nlen, const char *addr,
                      size_t alen, void *ud) {
  (void)name; (void)nlen; (void)addr; (void)alen;
  ++*(size_t *)ud;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  smtpd_mime m;
  size_t i, k, addrs = 0;
  static const char *const params[] = {"boundary", "charset", "name",
                                       "filename"};
  /* A copy without slack, so that any overread is caught. */
  char *p = malloc(size ? size : 1);
  if (p == NULL) return 0;
  memcpy(p, data, size);
  if (smtpd_mime_parse(&m, p, size)) {
    free(p);
    return 0;
  }
  if (m.nparts < 1 || m.nparts > SMTPD_MIME_MAX_PARTS) abort();
  for (i = 0; i < m.nparts; i++) {
    const smtpd_mime_part *pt = &m.parts[i];
    smtpd_buf b = {NULL, 0, 0};
    int c, n = 0;
    if (pt->start > pt->end || pt->end > size || pt->body < pt->start ||
        pt->body > pt->body_end || pt->body_end > pt->end ||
        pt->hfirst + pt->hcount > m.nhdrs || pt->depth > SMTPD_MIME_MAX_DEPTH)
      abort();
    if (i > 0 && (pt->parent < 0 || (size_t)pt->parent >= i)) abort();
    for (c = pt->first_child; c >= 0; c = m.parts[c].next) {
      if ((size_t)c <= i || (size_t)c >= m.nparts || m.parts[c].parent != (int)i)
        abort();
      n++;
    }
    if (n != pt->nchildren) abort();
    smtpd_mime_ctype(&m, (int)i, &b);
    for (k = 0; k < pt->hcount; k++) {
      const smtpd_mime_header *h = &m.hdrs[pt->hfirst + k];
      size_t j;
      if (h->value + h->value_len > size || h->name + h->name_len > size)
        abort();
      b.len = 0;
      smtpd_mime_decode_header(p + h->value, h->value_len, &b);
      smtpd_mime_addresses(p + h->value, h->value_len, count_addr, &addrs);
      b.len = 0;
      smtpd_mime_main_value(p + h->value, h->value_len, &b);
      for (j = 0; j < sizeof params / sizeof *params; j++) {
        b.len = 0;
        smtpd_mime_param(p + h->value, h->value_len, params[j],
                         strlen(params[j]), &b);
      }
    }
    b.len = 0;
    smtpd_mime_base64(p + pt->body, pt->body_end - pt->body, &b);
    b.len = 0;
    smtpd_mime_qp(p + pt->body, pt->body_end - pt->body, &b);
    if (b.len > pt->body_end - pt->body) abort();   /* QP never grows */
    b.len = 0;
    smtpd_mime_to_utf8("koi8-r", 6, p + pt->body, pt->body_end - pt->body, &b);
    smtpd_buf_free(&b);
  }
  smtpd_mime_free(&m);
  free(p);
  return 0;
}
