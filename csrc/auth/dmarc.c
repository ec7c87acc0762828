/*
 * DMARC records: tag=value pairs read by the DKIM tag-list reader (the
 * same grammar, RFC 7489 section 6.4), then their meaning.
 */
#include "auth/dmarc.h"

#include <stdio.h>
#include <string.h>

#include "auth/dkim.h"


static dmarc_policy policy(const char *v, size_t n) {
  if (smtpd_ieq(v, n, "none")) return DMARC_NONE;
  if (smtpd_ieq(v, n, "quarantine")) return DMARC_QUARANTINE;
  if (smtpd_ieq(v, n, "reject")) return DMARC_REJECT;
  return 0;
}

int dmarc_parse(const char *text, size_t len, dmarc_record *r, char *err,
                size_t errlen) {
  dkim_tag tags[DKIM_MAX_TAGS];
  int n, i;
  memset(r, 0, sizeof *r);
  r->pct = 100;
  r->adkim = r->aspf = 'r';
  n = dkim_tags(text, len, tags, DKIM_MAX_TAGS, err, errlen);
  if (n < 0) return -1;
  if (n == 0 || !(tags[0].name_len == 1 && tags[0].name[0] == 'v') ||
      !(tags[0].value_len == 6 && memcmp(tags[0].value, "DMARC1", 6) == 0)) {
    if (err && errlen) snprintf(err, errlen, "v=DMARC1 does not come first");
    return -1;
  }
  for (i = 1; i < n; i++) {
    const dkim_tag *t = &tags[i];
    if (smtpd_ieq(t->name, t->name_len, "p")) {
      r->p = policy(t->value, t->value_len);
    } else if (smtpd_ieq(t->name, t->name_len, "sp")) {
      r->sp = policy(t->value, t->value_len);
    } else if (smtpd_ieq(t->name, t->name_len, "np")) {
      r->np = policy(t->value, t->value_len);
    } else if (smtpd_ieq(t->name, t->name_len, "pct")) {
      size_t k;
      int v = 0, ok = t->value_len > 0 && t->value_len <= 3;
      for (k = 0; ok && k < t->value_len; k++) {
        if (t->value[k] < '0' || t->value[k] > '9') ok = 0;
        else v = v * 10 + (t->value[k] - '0');
      }
      r->pct = ok && v <= 100 ? v : 100;
    } else if (smtpd_ieq(t->name, t->name_len, "adkim") ||
               smtpd_ieq(t->name, t->name_len, "aspf")) {
      char m = smtpd_ieq(t->value, t->value_len, "s") ? 's' : 'r';
      if (t->name_len == 5) r->adkim = m;
      else r->aspf = m;
    } else if (smtpd_ieq(t->name, t->name_len, "rua")) {
      r->has_rua = 1;
    } else if (smtpd_ieq(t->name, t->name_len, "ruf")) {
      r->has_ruf = 1;
    } else if (smtpd_ieq(t->name, t->name_len, "psd")) {
      if (t->value_len == 1 && strchr("ynu", t->value[0])) r->psd = t->value[0];
    }
  }
  if (r->p == 0) {
    if (!r->has_rua) {
      if (err && errlen) snprintf(err, errlen, "no valid p=");
      return -1;
    }
    r->p = DMARC_NONE;
  }
  return 0;
}
