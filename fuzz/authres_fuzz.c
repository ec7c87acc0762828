/*
 * libFuzzer target: the Authentication-Results writer and id reader
 * (csrc/auth/authres.c). Any bytes as a property value: what is written
 * is one token or one quoted string, never a CR, LF, NUL or 8-bit byte,
 * never a ";" outside quotes, and within its bound; and as a field's
 * value: the id found lies inside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/authres.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  smtpd_buf out = {0};
  size_t i, st, len;
  int quoted = 0;
  if (authres_value(&out, s, size, 64) == 0) {
    if (out.len > 2 * 64 + 2 && out.len > size + 2) abort();
    for (i = 0; i < out.len; i++) {
      unsigned char c = (unsigned char)out.p[i];
      if (c < 0x20 || c >= 0x7f) abort();
      if (quoted && c == '\\') {   /* an escaped character */
        i++;
        if (i >= out.len) abort();
        continue;
      }
      if (c == '"') quoted = !quoted;
      if (c == ';' && !quoted) abort();
    }
    if (quoted) abort();
  }
  smtpd_buf_free(&out);
  if (authres_id(s, size, &st, &len) == 0 && (st + len > size || len == 0))
    abort();
  return 0;
}
