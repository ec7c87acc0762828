/*
 * DNS messages, the pure layer: queries built and answers parsed by our
 * own code (no Lua, no libuv, no c-ares), so that the parser is fuzzed
 * (fuzz/dns_fuzz.c) and c-ares only carries the bytes. RFC 1035 names
 * with compression (pointers only backwards, a bounded number of jumps),
 * RFC 6891's OPT record in queries, RFC 2308's negative TTL.
 */
#ifndef SMTPD_DNS_H
#define SMTPD_DNS_H

#include <stddef.h>
#include <stdint.h>

enum {
  SMTPD_DNS_A = 1, SMTPD_DNS_NS = 2, SMTPD_DNS_CNAME = 5,
  SMTPD_DNS_SOA = 6, SMTPD_DNS_PTR = 12, SMTPD_DNS_MX = 15,
  SMTPD_DNS_TXT = 16, SMTPD_DNS_AAAA = 28, SMTPD_DNS_SRV = 33,
  SMTPD_DNS_OPT = 41, SMTPD_DNS_TLSA = 52
};

/* A name as text: at most 255 wire bytes, each shown as \DDD at worst. */
#define SMTPD_DNS_NAME_MAX 1024
/* The UDP payload size our queries offer (RFC 6891; the DNS flag day
 * 2020 value). */
#define SMTPD_DNS_EDNS_SIZE 1232

enum { SMTPD_DNS_Q_EDNS = 1, SMTPD_DNS_Q_AD = 2 };

/* Builds a recursive query for name (text, an optional final dot;
 * labels of 1 to 63 printable bytes, 253 in all) into out: its length,
 * or -1 when the name is not one. */
int smtpd_dns_build(unsigned char *out, size_t cap, uint16_t id,
                    const char *name, uint16_t qtype, int flags);

/* A text IP address as the name its PTR record has
 * (4.3.2.1.in-addr.arpa, nibbles under ip6.arpa); suffix replaces
 * "in-addr.arpa"/"ip6.arpa" when given (a DNS list's zone). 0, or -1
 * when ip is not an address. */
int smtpd_dns_reverse_name(const char *ip, const char *suffix, char *out,
                           size_t cap);

typedef struct smtpd_dns_msg {
  const unsigned char *p;
  size_t len;
  uint16_t id, flags;
  int rcode;               /* with the extended bits of an OPT record */
  int qr, aa, tc, ad;
  uint16_t qd, an, ns, ar;
  char qname[SMTPD_DNS_NAME_MAX];
  uint16_t qtype;
  size_t pos;              /* the next record */
  unsigned seen;           /* records read so far */
} smtpd_dns_msg;

/* Reads the header and the question. 0, or -1: not a DNS answer. */
int smtpd_dns_parse(smtpd_dns_msg *m, const unsigned char *p, size_t len);

enum { SMTPD_DNS_ANSWER = 1, SMTPD_DNS_AUTHORITY, SMTPD_DNS_ADDITIONAL };

typedef struct smtpd_dns_rr {
  int section;
  char name[SMTPD_DNS_NAME_MAX];
  uint16_t type, cls;
  uint32_t ttl;
  size_t rdoff;            /* its data, in the message */
  uint16_t rdlen;
} smtpd_dns_rr;

/* The next record: 1, 0 after the last, -1 when malformed. */
int smtpd_dns_next(smtpd_dns_msg *m, smtpd_dns_rr *rr);

/* A record's data, decoded. */
typedef struct smtpd_dns_rdata {
  char name[SMTPD_DNS_NAME_MAX];   /* CNAME/NS/PTR target, MX exchange,
                                      SRV target, SOA mname */
  char name2[SMTPD_DNS_NAME_MAX];  /* SOA rname */
  char addr[48];                   /* A, AAAA */
  uint32_t n[5];     /* MX preference; SRV priority, weight, port; SOA
                        serial, refresh, retry, expire, minimum; TLSA
                        usage, selector, matching type */
  const unsigned char *data;       /* TXT: the character-strings, each
                                      length-prefixed; TLSA: the data */
  size_t dlen;
} smtpd_dns_rdata;

/* 0, or -1 when the data does not fit the type. Types not listed in the
 * enum above give their raw data. */
int smtpd_dns_rdata_get(const smtpd_dns_msg *m, const smtpd_dns_rr *rr,
                        smtpd_dns_rdata *rd);

/* Reads the name at off into out (text): 0, or -1. *next is the offset
 * after the name where it starts (not after a pointer's target). */
int smtpd_dns_name(const unsigned char *p, size_t len, size_t off,
                   char *out, size_t cap, size_t *next);

/* Case-insensitive comparison of two names as text (a final dot
 * ignored). */
int smtpd_dns_name_eq(const char *a, const char *b);

/* The negative-caching TTL of an answer (RFC 2308 section 5: the SOA's
 * TTL or its minimum, the smaller), or -1 when it has no SOA. Leaves m
 * positioned after its last record. */
long smtpd_dns_negative_ttl(smtpd_dns_msg *m);

#endif
