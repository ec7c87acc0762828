/*
 * libFuzzer target: the DMARC record reader (csrc/auth/dmarc.c). Any
 * bytes: a record is read or refused, never a crash; a record read has a
 * policy, a pct within 0..100 and alignment modes of r or s.
 */
#include <stdint.h>
#include <stdlib.h>

#include "auth/dmarc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dmarc_record r;
  char err[96];
  if (dmarc_parse((const char *)data, size, &r, err, sizeof err) == 0) {
    if (r.p < DMARC_NONE || r.p > DMARC_REJECT || r.sp > DMARC_REJECT ||
        r.np > DMARC_REJECT || r.pct < 0 || r.pct > 100 ||
        (r.adkim != 'r' && r.adkim != 's') || (r.aspf != 'r' && r.aspf != 's'))
      abort();
  }
  return 0;
}
