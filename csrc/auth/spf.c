/*
 * SPF records and macros (RFC 7208 sections 4.6, 5, 6, 7 and 12): the
 * grammar of section 12, checked whole before anything is evaluated.
 */
#include "auth/spf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, const char *s,
                size_t n) {
  if (err && errlen) {
    if (n > 60) n = 60;
    snprintf(err, errlen, fmt, (int)n, s);
  }
  return -1;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static int is_alpha(int c) { c = lower(c); return c >= 'a' && c <= 'z'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }


int spf_is_record(const char *text, size_t len) {
  return len >= 6 && smtpd_ieq(text, 6, "v=spf1") && (len == 6 || text[6] == ' ');
}

/* ---- macros ---------------------------------------------------------------- */

static int is_delim(int c) {
  return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' ||
         c == '_' || c == '=';
}

/* Reads one macro-expand at s[*i] == '%': letter, digits, reverse and
 * the delimiters; advances *i past it. Returns 0 or -1. */
typedef struct {
  int letter;               /* 0 for %%, %_, %- (then lit holds it) */
  const char *lit;
  int upper, reverse;
  long digits;              /* 0: all */
  char delims[8];
  int ndelims;
} spf_macro;

static int read_macro(const char *s, size_t len, size_t *i, int exp,
                      spf_macro *m, char *err, size_t errlen) {
  size_t j = *i + 1;
  memset(m, 0, sizeof *m);
  if (j >= len) return fail(err, errlen, "a lone %% at the end of %.*s", s, len);
  if (s[j] == '%' || s[j] == '_' || s[j] == '-') {
    m->lit = s[j] == '%' ? "%" : s[j] == '_' ? " " : "%20";
    *i = j + 1;
    return 0;
  }
  if (s[j] != '{') return fail(err, errlen, "a bad macro in %.*s", s, len);
  j++;
  if (j >= len) return fail(err, errlen, "an unended macro in %.*s", s, len);
  {
    int c = (unsigned char)s[j];
    int l = lower(c);
    if (!strchr("slodiphcrtv", l) || l == 0)
      return fail(err, errlen, "an unknown macro letter in %.*s", s, len);
    if ((l == 'c' || l == 'r' || l == 't') && !exp)
      return fail(err, errlen, "the c, r and t macros only go in exp "
                  "text: %.*s", s, len);
    m->letter = l;
    m->upper = c != l;
    j++;
  }
  if (j < len && is_digit(s[j])) {
    long d = 0;
    while (j < len && is_digit(s[j])) {
      d = d * 10 + (s[j] - '0');
      if (d > 1000) d = 1000;   /* more parts than any name has */
      j++;
    }
    if (d == 0)
      return fail(err, errlen, "a macro keeps 0 parts in %.*s", s, len);
    m->digits = d;
  }
  if (j < len && lower(s[j]) == 'r') {
    m->reverse = 1;
    j++;
  }
  while (j < len && is_delim(s[j])) {
    if (m->ndelims < (int)sizeof m->delims) m->delims[m->ndelims++] = s[j];
    j++;
  }
  if (j >= len || s[j] != '}')
    return fail(err, errlen, "a malformed macro in %.*s", s, len);
  *i = j + 1;
  return 0;
}

/* A top label (section 12): alphanumerics with a letter, or alphanumerics
 * around inner hyphens. */
static int is_toplabel(const char *s, size_t n) {
  size_t i;
  int alpha = 0, hyphen = 0;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    if (s[i] == '-') hyphen = 1;
    else if (is_alpha((unsigned char)s[i])) alpha = 1;
    else if (!is_digit((unsigned char)s[i])) return 0;
  }
  if (!hyphen) return alpha;
  return s[0] != '-' && s[n - 1] != '-';
}

int spf_check_macros(const char *s, size_t len, int exp, int domain,
                     char *err, size_t errlen) {
  size_t i = 0, last_macro_end = (size_t)-1;
  while (i < len) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%') {
      spf_macro m;
      if (read_macro(s, len, &i, exp, &m, err, errlen)) return -1;
      if (m.letter) last_macro_end = i;
      continue;
    }
    /* macro-literal: visible characters but %; exp text may hold spaces */
    if (c < 0x21 || c > 0x7e) {
      if (!(exp && c == ' '))
        return fail(err, errlen, "a character that is not allowed in %.*s",
                    s, len);
    }
    i++;
  }
  if (!domain) return 0;
  if (last_macro_end == len) return 0;       /* domain-end = macro-expand */
  {
    /* domain-end = "." toplabel [ "." ] */
    size_t end = len, dot;
    if (end && s[end - 1] == '.') end--;
    dot = end;
    while (dot > 0 && s[dot - 1] != '.') dot--;
    if (dot == 0 || (last_macro_end != (size_t)-1 && last_macro_end > dot) ||
        !is_toplabel(s + dot, end - dot))
      return fail(err, errlen, "a domain that does not end in a top label: "
                  "%.*s", s, len);
  }
  return 0;
}

/* Appends the value of one macro: split on the delimiters, reversed,
 * the rightmost parts kept, joined with dots, URL-escaped for upper-case
 * letters. */
static int expand_one(const spf_macro *m, const char *value, smtpd_buf *out) {
  const char *parts[256];
  size_t lens[256];
  int n = 0, i, first;
  const char *p = value;
  const char *delims = m->ndelims ? m->delims : ".";
  int nd = m->ndelims ? m->ndelims : 1;
  for (;;) {
    const char *q = p;
    while (*q && !memchr(delims, *q, (size_t)nd)) q++;
    if (n < 256) {
      parts[n] = p;
      lens[n] = (size_t)(q - p);
      n++;
    }
    if (!*q) break;
    p = q + 1;
  }
  if (m->reverse)
    for (i = 0; i < n / 2; i++) {
      const char *t = parts[i];
      size_t tl = lens[i];
      parts[i] = parts[n - 1 - i];
      lens[i] = lens[n - 1 - i];
      parts[n - 1 - i] = t;
      lens[n - 1 - i] = tl;
    }
  first = (m->digits && m->digits < n) ? n - (int)m->digits : 0;
  for (i = first; i < n; i++) {
    size_t k;
    if (i > first && smtpd_buf_appendc(out, '.')) return -1;
    for (k = 0; k < lens[i]; k++) {
      unsigned char c = (unsigned char)parts[i][k];
      if (m->upper && !(is_alnum(c) || c == '-' || c == '.' || c == '_' ||
                        c == '~')) {
        char hex[4];
        snprintf(hex, sizeof hex, "%%%02X", c);
        if (smtpd_buf_append(out, hex, 3)) return -1;
      } else if (smtpd_buf_appendc(out, (char)c)) {
        return -1;
      }
    }
  }
  return 0;
}

int spf_expand(const char *s, size_t len, const spf_macro_ctx *ctx,
               int exp, int domain, smtpd_buf *out, char *err,
               size_t errlen) {
  size_t i = 0, start = out->len;
  while (i < len) {
    if (s[i] == '%') {
      spf_macro m;
      const char *v = NULL;
      if (read_macro(s, len, &i, exp, &m, err, errlen)) return -1;
      if (!m.letter) {
        if (smtpd_buf_append(out, m.lit, strlen(m.lit))) goto nomem;
        continue;
      }
      switch (m.letter) {
        case 's': v = ctx->s; break;
        case 'l': v = ctx->l; break;
        case 'o': v = ctx->o; break;
        case 'd': v = ctx->d; break;
        case 'i': v = ctx->i; break;
        case 'p': v = ctx->p; break;
        case 'v': v = ctx->v; break;
        case 'h': v = ctx->h; break;
        case 'c': v = ctx->c; break;
        case 'r': v = ctx->r; break;
        case 't': v = ctx->t; break;
        default: break;
      }
      if (v == NULL) return fail(err, errlen, "no value for a macro in %.*s",
                                 s, len);
      if (expand_one(&m, v, out)) goto nomem;
      continue;
    }
    if (smtpd_buf_appendc(out, s[i])) goto nomem;
    i++;
  }
  if (domain && out->len - start > 253) {
    /* Section 4.8: labels off the left until it fits. */
    char *p = out->p + start;
    size_t n = out->len - start, cut = 0;
    while (n - cut > 253) {
      char *dot = memchr(p + cut, '.', n - cut);
      if (dot == NULL) break;
      cut = (size_t)(dot - p) + 1;
    }
    memmove(p, p + cut, n - cut);
    out->len = start + (n - cut);
  }
  return 0;
nomem:
  return fail(err, errlen, "out of memory%.*s", "", 0);
}

/* ---- records ---------------------------------------------------------------- */

/* A prefix length: "0" or 1-3 digits without a leading zero, at most max. */
static int read_cidr(const char *s, size_t n, int max) {
  size_t i;
  int v = 0;
  if (n == 0 || n > 3 || (n > 1 && s[0] == '0')) return -1;
  for (i = 0; i < n; i++) {
    if (!is_digit((unsigned char)s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v <= max ? v : -1;
}

/* Takes a dual-cidr-length off the end of s..*n: "/4", "//6" or "/4//6". */
static int take_dual_cidr(const char *s, size_t *n, int *c4, int *c6) {
  size_t len = *n, j = len;
  *c4 = *c6 = -1;
  while (j > 0 && is_digit((unsigned char)s[j - 1])) j--;
  if (j == len || j == 0 || s[j - 1] != '/') return 0;  /* no cidr */
  if (j >= 2 && s[j - 2] == '/') {
    if ((*c6 = read_cidr(s + j, len - j, 128)) < 0) return -1;
    len = j - 2;
    j = len;
    while (j > 0 && is_digit((unsigned char)s[j - 1])) j--;
    if (j == len || j == 0 || s[j - 1] != '/') {
      *n = len;
      return 0;
    }
  }
  if (j >= 2 && s[j - 2] == '/') return -1;
  if ((*c4 = read_cidr(s + j, len - j, 32)) < 0) return -1;
  *n = j - 1;
  return 0;
}

static int parse_term(const char *t, size_t n, spf_term *term, char *err,
                      size_t errlen) {
  size_t i = 0, nm;
  memset(term, 0, sizeof *term);
  term->cidr4 = term->cidr6 = -1;
  term->qualifier = '+';
  if (n && (t[0] == '+' || t[0] == '-' || t[0] == '~' || t[0] == '?')) {
    term->qualifier = t[0];
    i = 1;
  }
  nm = i;
  if (nm >= n || !is_alpha((unsigned char)t[nm]))
    return fail(err, errlen, "a term that is neither a mechanism nor a "
                "modifier: %.*s", t, n);
  while (nm < n && (is_alnum((unsigned char)t[nm]) || t[nm] == '-' ||
                    t[nm] == '_' || t[nm] == '.'))
    nm++;
  if (nm < n && t[nm] == '=') {
    const char *name = t + i, *v = t + nm + 1;
    size_t namelen = nm - i, vlen = n - nm - 1;
    if (i != 0)
      return fail(err, errlen, "a modifier with a qualifier: %.*s", t, n);
    term->name = name;
    term->name_len = namelen;
    term->spec = v;
    term->spec_len = vlen;
    if (smtpd_ieq(name, namelen, "redirect")) term->kind = SPF_REDIRECT;
    else if (smtpd_ieq(name, namelen, "exp")) term->kind = SPF_EXP;
    else term->kind = SPF_MODIFIER;
    if (term->kind != SPF_MODIFIER && vlen == 0)
      return fail(err, errlen, "a modifier without its domain: %.*s", t, n);
    return spf_check_macros(v, vlen, 0, term->kind != SPF_MODIFIER, err,
                            errlen);
  }
  {
    const char *name = t + i, *rest = t + nm;
    size_t namelen = nm - i, rlen = n - nm;
    if (smtpd_ieq(name, namelen, "all")) term->kind = SPF_ALL;
    else if (smtpd_ieq(name, namelen, "include")) term->kind = SPF_INCLUDE;
    else if (smtpd_ieq(name, namelen, "a")) term->kind = SPF_A;
    else if (smtpd_ieq(name, namelen, "mx")) term->kind = SPF_MX;
    else if (smtpd_ieq(name, namelen, "ptr")) term->kind = SPF_PTR;
    else if (smtpd_ieq(name, namelen, "ip4")) term->kind = SPF_IP4;
    else if (smtpd_ieq(name, namelen, "ip6")) term->kind = SPF_IP6;
    else if (smtpd_ieq(name, namelen, "exists")) term->kind = SPF_EXISTS;
    else return fail(err, errlen, "an unknown mechanism: %.*s", t, n);
    if (rlen && rest[0] != ':' && rest[0] != '/')
      return fail(err, errlen, "a malformed mechanism: %.*s", t, n);
    switch (term->kind) {
      case SPF_ALL:
        if (rlen) return fail(err, errlen, "all takes nothing: %.*s", t, n);
        return 0;
      case SPF_INCLUDE:
      case SPF_EXISTS:
        if (rlen < 2 || rest[0] != ':')
          return fail(err, errlen, "a mechanism without its domain: %.*s",
                      t, n);
        term->spec = rest + 1;
        term->spec_len = rlen - 1;
        return spf_check_macros(term->spec, term->spec_len, 0, 1, err, errlen);
      case SPF_PTR:
        if (rlen == 0) return 0;
        if (rest[0] != ':' || rlen < 2)
          return fail(err, errlen, "a malformed ptr: %.*s", t, n);
        term->spec = rest + 1;
        term->spec_len = rlen - 1;
        return spf_check_macros(term->spec, term->spec_len, 0, 1, err, errlen);
      case SPF_A:
      case SPF_MX: {
        size_t len = rlen;
        if (take_dual_cidr(rest, &len, &term->cidr4, &term->cidr6))
          return fail(err, errlen, "a bad prefix length: %.*s", t, n);
        if (len == 0) return 0;
        if (rest[0] != ':' || len < 2)
          return fail(err, errlen, "a malformed mechanism: %.*s", t, n);
        term->spec = rest + 1;
        term->spec_len = len - 1;
        return spf_check_macros(term->spec, term->spec_len, 0, 1, err, errlen);
      }
      case SPF_IP4:
      case SPF_IP6: {
        char buf[64];
        const char *slash;
        size_t alen;
        int v6 = term->kind == SPF_IP6, max = v6 ? 128 : 32;
        if (rlen < 2 || rest[0] != ':')
          return fail(err, errlen, "a network is missing: %.*s", t, n);
        term->spec = rest + 1;
        term->spec_len = rlen - 1;
        slash = memchr(term->spec, '/', term->spec_len);
        alen = slash ? (size_t)(slash - term->spec) : term->spec_len;
        if (alen == 0 || alen >= sizeof buf)
          return fail(err, errlen, "a bad network: %.*s", t, n);
        memcpy(buf, term->spec, alen);
        buf[alen] = '\0';
        if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, term->addr) != 1)
          return fail(err, errlen, "a bad address: %.*s", t, n);
        if (slash) {
          int c = read_cidr(slash + 1,
                            term->spec_len - alen - 1, max);
          if (c < 0) return fail(err, errlen, "a bad prefix length: %.*s", t, n);
          if (v6) term->cidr6 = c;
          else term->cidr4 = c;
        }
        return 0;
      }
      default:
        return 0;
    }
  }
}

int spf_parse(const char *text, size_t len, spf_record *rec, char *err,
              size_t errlen) {
  size_t i = 6;
  int redirects = 0, exps = 0;
  rec->n = 0;
  if (!spf_is_record(text, len))
    return fail(err, errlen, "not an SPF record: %.*s", text, len);
  while (i < len) {
    size_t start;
    if (text[i] != ' ')
      return fail(err, errlen, "terms are separated by spaces: %.*s",
                  text + i, len - i);
    while (i < len && text[i] == ' ') i++;
    if (i >= len) break;
    start = i;
    while (i < len && text[i] != ' ') i++;
    if (rec->n >= SPF_MAX_TERMS)
      return fail(err, errlen, "too many terms%.*s", "", 0);
    if (parse_term(text + start, i - start, &rec->terms[rec->n], err, errlen))
      return -1;
    if (rec->terms[rec->n].kind == SPF_REDIRECT) redirects++;
    if (rec->terms[rec->n].kind == SPF_EXP) exps++;
    rec->n++;
  }
  if (redirects > 1 || exps > 1)
    return fail(err, errlen, "redirect or exp given twice%.*s", "", 0);
  return 0;
}
