/*
 * RFC 5321 paths and MAIL/RCPT parameters, parsed the way CPython's smtpd
 * does (its _getaddr and _getparams over the email package's parser), with
 * RFC 5321's path syntax where smtpd would crash.
 */
#include <string.h>

#include "smtp/smtp.h"

static int is_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

/* Characters Python's email parser does not take as atext. */
static int atom_end(unsigned char c) {
  return c == ' ' || c == '\t' || strchr("()<>@,:;.\\\"[]", c) != NULL ||
         c == '\0';
}

static int addr_put(smtpd_addr *o, const char *p, size_t n) {
  if (o->len + n >= sizeof o->buf) return -1;
  memcpy(o->buf + o->len, p, n);
  o->len += n;
  return 0;
}

/* dot-atom: 1*atext *("." 1*atext). Returns bytes used, 0 if none. */
static size_t addr_dot_atom(const char *p, size_t n) {
  size_t i = 0;
  for (;;) {
    size_t start = i;
    while (i < n && !atom_end((unsigned char)p[i])) i++;
    if (i == start) return 0;
    if (i < n && p[i] == '.') { i++; continue; }
    return i;
  }
}

/* local-part = dot-atom / quoted-string, written to o the way Python's
 * AddrSpec.addr_spec spells it: quotes kept only where they are needed. */
static size_t addr_local(const char *p, size_t n, smtpd_addr *o) {
  size_t i, k;
  char raw[600];
  size_t rn = 0;
  int needq = 0;
  if (n == 0) return 0;
  if (p[0] != '"') {
    k = addr_dot_atom(p, n);
    if (k == 0 || addr_put(o, p, k)) return 0;
    return k;
  }
  for (i = 1; i < n && p[i] != '"'; i++) {
    if (p[i] == '\\') {
      if (++i >= n) return 0;
    }
    if (rn >= sizeof raw) return 0;
    raw[rn++] = p[i];
  }
  if (i >= n) return 0;  /* no closing quote */
  for (k = 0; k < rn; k++) {
    unsigned char c = (unsigned char)raw[k];
    if (c != '.' && atom_end(c)) needq = 1;
  }
  if (!needq) {
    if (rn == 0 || addr_put(o, raw, rn)) return 0;
    return i + 1;
  }
  if (addr_put(o, "\"", 1)) return 0;
  for (k = 0; k < rn; k++) {
    if ((raw[k] == '"' || raw[k] == '\\') && addr_put(o, "\\", 1)) return 0;
    if (addr_put(o, raw + k, 1)) return 0;
  }
  if (addr_put(o, "\"", 1)) return 0;
  return i + 1;
}

/* domain = dot-atom / "[" dtext "]" */
static size_t addr_domain(const char *p, size_t n, smtpd_addr *o) {
  size_t i;
  if (n && p[0] == '[') {
    for (i = 1; i < n && p[i] != ']'; i++) {
      if (p[i] == '[' || p[i] == '\\' || p[i] == ' ' || p[i] == '\t')
        return 0;
    }
    if (i >= n) return 0;
    if (addr_put(o, p, i + 1)) return 0;
    return i + 1;
  }
  i = addr_dot_atom(p, n);
  if (i == 0 || addr_put(o, p, i)) return 0;
  return i;
}

/* addr-spec = local-part ["@" domain] (smtpd also takes a bare local part,
 * e.g. "postmaster"). */
static size_t addr_spec(const char *p, size_t n, smtpd_addr *o) {
  size_t i = addr_local(p, n, o), k;
  if (i == 0) return 0;
  if (i < n && p[i] == '@') {
    if (addr_put(o, "@", 1)) return 0;
    k = addr_domain(p + i + 1, n - i - 1, o);
    if (k == 0) return 0;
    i += 1 + k;
  }
  return i;
}

/* See smtp.h. */
int smtpd_addr_parse(const char *p, size_t n, smtpd_addr *o,
                           const char **rest, size_t *rest_n) {
  size_t i = 0, k;
  o->len = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
  if (i == n) return 0;
  if (p[i] == '<') {
    i++;
    if (i < n && p[i] == '>') {
      addr_put(o, "<>", 2);
      i++;
    } else {
      /* Source route: "@" domain *("," "@" domain) ":", dropped. */
      if (i < n && p[i] == '@') {
        for (;;) {
          smtpd_addr junk;
          junk.len = 0;
          if (i >= n || p[i] != '@') return 0;
          k = addr_domain(p + i + 1, n - i - 1, &junk);
          if (k == 0) return 0;
          i += 1 + k;
          if (i < n && p[i] == ',') { i++; continue; }
          if (i < n && p[i] == ':') { i++; break; }
          return 0;
        }
      }
      k = addr_spec(p + i, n - i, o);
      if (k == 0) return 0;
      i += k;
      if (i >= n || p[i] != '>') return 0;
      i++;
    }
  } else {
    k = addr_spec(p + i, n - i, o);
    if (k == 0) return 0;
    i += k;
    /* A bare address must end where the parameters begin. */
    if (i < n && p[i] != ' ' && p[i] != '\t') return 0;
  }
  while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
  *rest = p + i;
  *rest_n = n - i;
  return 1;
}

/* Splits params on whitespace, upper-cased, into list (as
 * params.upper().split()). */
int smtpd_params_split(const char *p, size_t n, smtpd_strlist *l) {
  size_t i = 0, k;
  smtpd_strlist_clear(l);
  for (;;) {
    size_t start;
    char *w;
    while (i < n && (k = smtpd_space_at((const unsigned char *)p + i, n - i)) > 0)
      i += k;
    if (i >= n) return 0;
    start = i;
    while (i < n && smtpd_space_at((const unsigned char *)p + i, n - i) == 0) i++;
    if (smtpd_strlist_push(l, p + start, i - start)) return -1;
    w = l->v[l->n - 1].p;
    for (k = 0; k < i - start; k++) w[k] = smtpd_upper(w[k]);
  }
}

int smtpd_param_raw(const char *p, size_t n, const char *key,
                    const char **v, size_t *vl) {
  size_t i = 0, kl = strlen(key), k;
  while (i < n) {
    size_t start;
    while (i < n && (k = smtpd_space_at((const unsigned char *)p + i, n - i)) > 0)
      i += k;
    start = i;
    while (i < n && smtpd_space_at((const unsigned char *)p + i, n - i) == 0)
      i++;
    if (i - start > kl && p[start + kl] == '=') {
      for (k = 0; k < kl; k++)
        if (smtpd_upper(p[start + k]) != key[k]) break;
      if (k == kl) {
        *v = p + start + kl + 1;
        *vl = i - start - kl - 1;
        return 1;
      }
    }
  }
  return 0;
}

/* Checks every option is keyword[=value] as _getparams does. */
int smtpd_params_valid(const smtpd_strlist *l) {
  size_t i, j;
  for (i = 0; i < l->n; i++) {
    const char *s = l->v[i].p;
    size_t n = l->v[i].len;
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? (size_t)(eq - s) : n;
    if (klen == 0) return 0;
    for (j = 0; j < klen; j++)
      if (!is_alnum((unsigned char)s[j])) return 0;
    if (eq && eq + 1 == s + n) return 0;
  }
  return 1;
}

/* Finds the last option with keyword key (later ones win, as in a dict).
 * Returns its index or -1; *val is NULL when it has no "=". */
long smtpd_params_find(const smtpd_strlist *l, const char *key,
                        const char **val, size_t *vlen) {
  size_t i, kl = strlen(key);
  long found = -1;
  for (i = 0; i < l->n; i++) {
    const char *s = l->v[i].p;
    size_t n = l->v[i].len;
    if (n >= kl && memcmp(s, key, kl) == 0 && (n == kl || s[kl] == '=')) {
      found = (long)i;
      *val = n == kl ? NULL : s + kl + 1;
      *vlen = n == kl ? 0 : n - kl - 1;
    }
  }
  return found;
}

/* Whether some keyword is neither one of known nor extra (may be NULL). */
int smtpd_params_others_but(const smtpd_strlist *l, const char *const *known,
                            const char *extra) {
  size_t i, j;
  for (i = 0; i < l->n; i++) {
    const char *s = l->v[i].p;
    const char *eq = memchr(s, '=', l->v[i].len);
    size_t kl = eq ? (size_t)(eq - s) : l->v[i].len;
    int ok = extra && strlen(extra) == kl && memcmp(s, extra, kl) == 0;
    for (j = 0; known[j]; j++) {
      if (strlen(known[j]) == kl && memcmp(s, known[j], kl) == 0) ok = 1;
    }
    if (!ok) return 1;
  }
  return 0;
}


int smtpd_has_keyword(const char *arg, size_t n, const char *kw) {
  size_t i, kl = strlen(kw);
  if (n < kl) return 0;
  for (i = 0; i < kl; i++)
    if (smtpd_upper(arg[i]) != kw[i]) return 0;
  return 1;
}
