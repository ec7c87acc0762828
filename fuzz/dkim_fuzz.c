/*
 * libFuzzer target: DKIM's byte readers (csrc/auth/dkim.c). Any bytes as
 * a DKIM-Signature or key record tag list (every tag inside the input,
 * no tag twice), as a message (its fields inside the input and in order,
 * each canonicalised both ways), and as a body hashed both ways, with and
 * without an l= limit (never more hashed than the limit, the canonical
 * length never less than what was hashed); and as a message that grows
 * while its DKIM-Signature fields' body hashes are made (the stream).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dkim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  dkim_tag tags[DKIM_MAX_TAGS];
  dkim_field fields[64];
  char err[96];
  int n, i, j, extra, relaxed;
  size_t body;
  n = dkim_tags(s, size, tags, DKIM_MAX_TAGS, err, sizeof err);
  for (i = 0; i < n; i++) {
    if (tags[i].name < s || tags[i].name + tags[i].name_len > s + size ||
        tags[i].value < s || tags[i].value + tags[i].value_len > s + size)
      abort();
    for (j = 0; j < i; j++)
      if (tags[j].name_len == tags[i].name_len &&
          memcmp(tags[j].name, tags[i].name, tags[i].name_len) == 0)
        abort();
  }
  n = dkim_fields(s, size, fields, 64, &extra, &body);
  if (body > size) abort();
  for (i = 0; i < n; i++) {
    if (fields[i].start + fields[i].len > size || fields[i].name_len > fields[i].len)
      abort();
    if (i && fields[i].start <= fields[i - 1].start) abort();
    for (relaxed = 0; relaxed <= 1; relaxed++) {
      smtpd_buf out = {0};
      if (dkim_canon_header(s + fields[i].start, fields[i].len, relaxed, 1, &out) == 0 &&
          out.len < 3)
        abort();
      smtpd_buf_free(&out);
    }
  }
  for (relaxed = 0; relaxed <= 1; relaxed++) {
    long long limit;
    for (limit = -1; limit <= 7; limit += 8) {
      dkim_body b;
      unsigned char md[EVP_MAX_MD_SIZE];
      if (dkim_body_init(&b, relaxed, EVP_sha256(), limit)) return 0;
      /* fed in two pieces, as the data arrives */
      dkim_body_update(&b, s, size / 2);
      dkim_body_update(&b, s + size / 2, size - size / 2);
      if (dkim_body_final(&b, md) != 32) abort();
      if (limit >= 0 && b.hashed > limit) abort();
      if (b.hashed > b.total) abort();
    }
  }
  {
    /* the stream: the message grows in three steps, then is whole */
    static dkim_stream st;
    dkim_stream_feed(&st, s, size / 3);
    dkim_stream_feed(&st, s, size / 3 * 2);
    if (dkim_stream_finish(&st, s, size)) {
      for (i = 0; i < st.n; i++)
        if (st.h[i].dlen != 20 && st.h[i].dlen != 32) abort();
      if (st.body > size) abort();
    }
    dkim_stream_reset(&st);
  }
  return 0;
}
