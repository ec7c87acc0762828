/*
 * libFuzzer target: the SPF record and macro parser (csrc/auth/spf.c).
 * Any bytes as a record: parsed, every term's fields inside the input;
 * then as a macro-string, checked and expanded (as a domain-spec and as
 * exp text) against fixed values, the expansion bounded: a domain-spec
 * never longer than 253 bytes once it has a dot to cut at.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static spf_record rec;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s;
  char err[160];
  char *copy = malloc(size ? size : 1);
  int i, exp;
  static const spf_macro_ctx ctx = {
    "strong-bad@email.example.com", "strong-bad", "email.example.com",
    "email.example.com", "192.0.2.3", "mx.example.org", "in-addr",
    "mx.example.org", "192.0.2.3", "receiver.example.net", "1700000000"};
  if (copy == NULL) return 0;
  memcpy(copy, data, size);
  s = copy;
  if (spf_is_record(s, size) && spf_parse(s, size, &rec, err, sizeof err) == 0) {
    for (i = 0; i < rec.n; i++) {
      const spf_term *t = &rec.terms[i];
      if (t->spec && (t->spec < s || t->spec + t->spec_len > s + size)) abort();
      if (t->name && (t->name < s || t->name + t->name_len > s + size)) abort();
      if (t->cidr4 > 32 || t->cidr6 > 128) abort();
    }
  }
  for (exp = 0; exp <= 1; exp++) {
    smtpd_buf out = {0};
    int domain = !exp;
    if (spf_check_macros(s, size, exp, domain, err, sizeof err) == 0 &&
        spf_expand(s, size, &ctx, exp, domain, &out, err, sizeof err) == 0) {
      if (domain && out.len > 253 && memchr(out.p, '.', out.len) &&
          memchr(out.p, '.', out.len - 253))
        abort();
    }
    smtpd_buf_free(&out);
  }
  free(copy);
  return 0;
}
