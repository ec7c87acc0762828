/*
 * Authentication-Results values and ids (RFC 8601 section 2.2, RFC 2045's
 * token, RFC 5322's quoted-string and comments).
 */
#include "auth/authres.h"

#include <string.h>

/* RFC 2045 token characters: printable, no space, no tspecials. */
static int is_token(unsigned char c) {
  return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

int authres_value(smtpd_buf *out, const char *v, size_t n, size_t max) {
  size_t i, ats = 0, kept = 0;
  int plain = n > 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c == '@') ats++;
    else if (!is_token(c)) plain = 0;
  }
  if (ats > 1 || (ats == 1 && (v[0] == '@' || v[n - 1] == '@'))) plain = 0;
  if (n > max) plain = 0;
  if (plain) return smtpd_buf_append(out, v, n);
  if (smtpd_buf_appendc(out, '"')) return -1;
  for (i = 0; i < n && kept < max; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < 0x20 || c >= 0x7f) continue;       /* CR, LF, NUL, 8-bit: out */
    if ((c == '"' || c == '\\') && smtpd_buf_appendc(out, '\\')) return -1;
    if (smtpd_buf_appendc(out, (char)c)) return -1;
    kept++;
  }
  return smtpd_buf_appendc(out, '"');
}

/* Skips whitespace and (nested) comments from i. */
static size_t skip_cfws(const char *s, size_t n, size_t i) {
  for (;;) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
      i++;
    if (i < n && s[i] == '(') {
      int depth = 0;
      while (i < n) {
        if (s[i] == '\\' && i + 1 < n) {
          i += 2;
          continue;
        }
        if (s[i] == '(') depth++;
        if (s[i] == ')' && --depth == 0) {
          i++;
          break;
        }
        i++;
      }
      continue;
    }
    return i;
  }
}

int authres_id(const char *value, size_t n, size_t *start, size_t *len) {
  size_t i = skip_cfws(value, n, 0), j;
  if (i < n && value[i] == '"') {
    /* a quoted-string id */
    j = i + 1;
    while (j < n && value[j] != '"') j += value[j] == '\\' ? 2 : 1;
    if (j >= n || j == i + 1) return -1;       /* unended, or empty */
    *start = i + 1;
    *len = j - i - 1;
    return 0;
  }
  j = i;
  while (j < n && value[j] != ';' && value[j] != '(' && value[j] != ' ' &&
         value[j] != '\t' && value[j] != '\r' && value[j] != '\n')
    j++;
  if (j == i) return -1;
  *start = i;
  *len = j - i;
  return 0;
}
