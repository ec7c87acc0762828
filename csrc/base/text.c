/* Text: UTF-8 validity, Python's notion of whitespace, reply lines. */
#include <string.h>
#include <strings.h>

#include "base/base.h"

int smtpd_utf8_valid(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k;
    unsigned cp, min;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n - i <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += k + 1;
  }
  return 1;
}

/* Length of the whitespace character (as Python's str.isspace) at p[0],
 * or 0. Input is valid UTF-8. */
size_t smtpd_space_at(const unsigned char *p, size_t n) {
  if (n == 0) return 0;
  if (p[0] == ' ' || (p[0] >= 0x09 && p[0] <= 0x0d) ||
      (p[0] >= 0x1c && p[0] <= 0x1f))
    return 1;
  if (n >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
  if (n >= 3) {
    if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;
    if (p[0] == 0xe2 && p[1] == 0x80 &&
        (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
      return 3;
    if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;
    if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;
  }
  return 0;
}

/* Length of the whitespace character ending at p[n-1], or 0. */
static size_t space_before(const unsigned char *p, size_t n) {
  size_t k;
  for (k = 1; k <= 3 && k <= n; k++) {
    if (smtpd_space_at(p + n - k, k) == k) return k;
  }
  return 0;
}

/* Python's str.strip() over UTF-8. */
void smtpd_ustrip(const char **pp, size_t *pn) {
  const unsigned char *p = (const unsigned char *)*pp;
  size_t n = *pn, k;
  while ((k = smtpd_space_at(p, n)) > 0) { p += k; n -= k; }
  while ((k = space_before(p, n)) > 0) n -= k;
  *pp = (const char *)p;
  *pn = n;
}

/* n decimal digits at p as a number of at most max: 1 with *v, 0 when
 * it is larger (whatever the word size, nothing wraps: a 32-bit build
 * must not read BDAT 4294967297 as 1). p holds digits only. */
int smtpd_digits(const char *p, size_t n, size_t max, size_t *v) {
  size_t i, x = 0;
  for (i = 0; i < n; i++) {
    size_t d = (size_t)(p[i] - '0');
    if (x > (max - d) / 10) return 0;
    x = x * 10 + d;
  }
  *v = x;
  return 1;
}

char smtpd_upper(char c) {
  return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
}

/* ---- reply lines ------------------------------------------------------- */

/* Reads the code of one reply line: "ddd", "ddd text" or "ddd-text" (more
 * lines follow: *more is set). Returns 100..599, or -1 when the line does
 * not start that way. Looks at the first 4 bytes only. */
int smtpd_reply_code(const char *p, size_t n, int *more) {
  if (n < 3 || p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
      p[2] < '0' || p[2] > '9')
    return -1;
  if (n > 3 && p[3] != ' ' && p[3] != '-') return -1;
  if (more) *more = n > 3 && p[3] == '-';
  return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* A line we may send as is: no CR, LF or NUL, and within RFC 5321's 512
 * bytes with its CRLF. */
int smtpd_reply_text_ok(const char *p, size_t n) {
  return n <= SMTPD_REPLY_MAX && !memchr(p, '\r', n) && !memchr(p, '\n', n) &&
         !memchr(p, '\0', n);
}

/* The reply a handler returned (process_message, a sender or recipient
 * check) when it ends a command: one final line whose class is one of
 * classes (a string of first digits, e.g. "245"), and not 220 or 221,
 * which open and close a session. The code, or 0. */
int smtpd_final_reply(const char *p, size_t n, const char *classes) {
  int more = 0, code = smtpd_reply_code(p, n, &more);
  if (code < 0 || more || !strchr(classes, p[0]) || code == 220 ||
      code == 221 || !smtpd_reply_text_ok(p, n))
    return 0;
  return code;
}

int smtpd_ieq(const char *p, size_t n, const char *word) {
  return strlen(word) == n && strncasecmp(p, word, n) == 0;
}
