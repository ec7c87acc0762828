/*
 * libFuzzer target: the PROXY protocol header parser and the CIDR lists
 * (csrc/smtp/proxy.c). Any bytes: a verdict, never a read past the input, a
 * used count inside it, and an address of a known family.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct sockaddr_storage src;
  size_t used = 0, max;
  int local = 0, r;
  unsigned char *p;
  char *s;
  smtpd_cidr c;
  if (size < 1) return 0;
  max = 16 + (size_t)data[0] * 4;
  p = malloc(size - 1 ? size - 1 : 1);
  if (p == NULL) return 0;
  memcpy(p, data + 1, size - 1);
  r = smtpd_proxy_parse(p, size - 1, max, &used, &src, &local);
  if (r < -1 || r > 1) abort();
  if (r == 1) {
    if (used == 0 || used > size - 1) abort();
    if (!local && src.ss_family != AF_INET && src.ss_family != AF_INET6)
      abort();
  }
  free(p);
  /* The same bytes as a trusted address. */
  s = malloc(size);
  if (s == NULL) return 0;
  memcpy(s, data + 1, size - 1);
  s[size - 1] = '\0';
  if (smtpd_cidr_parse(s, &c) == 0) {
    if (c.family != AF_INET && c.family != AF_INET6) abort();
    if (c.bits < 0 || c.bits > (c.family == AF_INET ? 32 : 128)) abort();
    if (r == 1 && !local) smtpd_cidr_match(&c, (struct sockaddr *)&src);
  }
  free(s);
  return 0;
}
