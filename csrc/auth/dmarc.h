/*
 * DMARC policy records (RFC 7489 section 6.3, DMARCbis's np= and psd=),
 * the pure layer: a TXT record's text read into the policy it states.
 */
#ifndef SMTPD_AUTH_DMARC_H
#define SMTPD_AUTH_DMARC_H

#include <stddef.h>

typedef enum { DMARC_NONE = 1, DMARC_QUARANTINE, DMARC_REJECT } dmarc_policy;

typedef struct dmarc_record {
  dmarc_policy p, sp, np;    /* sp, np: 0 when not given */
  int pct;                   /* 0-100 (100 when absent or out of range) */
  char adkim, aspf;          /* 'r' or 's' */
  int has_rua, has_ruf;
  char psd;                  /* 'y', 'n', 'u', or 0 (DMARCbis) */
} dmarc_record;

/* Reads text (len bytes): 0, or -1 when it is not a DMARC record (why in
 * err): v=DMARC1 must come first; a p= that is missing or unknown makes
 * the record p=none when it has rua= (section 6.6.3), else no record. */
int dmarc_parse(const char *text, size_t len, dmarc_record *r, char *err,
                size_t errlen);

#endif
