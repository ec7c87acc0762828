/*
 * libFuzzer target: the DNS answer parser (csrc/dns/dns.c). Any bytes:
 * the header and question, every record, each record's data decoded, the
 * negative TTL; never a read past the input, names always terminated and
 * inside their bound. The first byte picks the query type the answer is
 * read for.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *s) {
  if (strlen(s) >= SMTPD_DNS_NAME_MAX) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  smtpd_dns_msg m, again;
  smtpd_dns_rr rr;
  smtpd_dns_rdata rd;
  unsigned char *p;
  unsigned char q[512];
  char name[SMTPD_DNS_NAME_MAX];
  int r, n = 0;
  if (size < 1) return 0;
  p = malloc(size - 1 ? size - 1 : 1);
  if (p == NULL) return 0;
  memcpy(p, data + 1, size - 1);
  if (smtpd_dns_parse(&m, p, size - 1) == 0) {
    check_name(m.qname);
    again = m;
    while ((r = smtpd_dns_next(&m, &rr)) == 1) {
      check_name(rr.name);
      if (rr.rdoff + rr.rdlen > size - 1) abort();
      if (smtpd_dns_rdata_get(&m, &rr, &rd) == 0) {
        check_name(rd.name);
        check_name(rd.name2);
        if (rd.data < p || rd.data + rd.dlen > p + (size - 1)) abort();
      }
      n++;
    }
    if (r < -1 || n > 65535 * 3) abort();
    (void)smtpd_dns_negative_ttl(&again);
  }
  /* The same bytes as a name to query, and as an address to reverse. */
  if (size - 1 < sizeof name) {
    memcpy(name, data + 1, size - 1);
    name[size - 1] = '\0';
    r = smtpd_dns_build(q, sizeof q, 1, name, data[0], data[0] & 3);
    if (r > (int)sizeof q) abort();
    if (r > 0) {
      /* a query we built reads back as one question (as a response) */
      q[2] |= 0x80;
      if (smtpd_dns_parse(&m, q, (size_t)r) || m.qd != 1) abort();
    }
    (void)smtpd_dns_reverse_name(name, NULL, (char *)q, sizeof q);
  }
  free(p);
  return 0;
}
