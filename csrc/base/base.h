/*
 * lua-smtpd's base layer: bytes and text, with no Lua and no libuv. Every
 * other part (the SMTP protocol, TLS, MIME, the glue) builds on it.
 *
 *   buffer.c   growable byte buffers and string lists
 *   text.c     UTF-8, Python's whitespace, reply lines
 *   codec.c    strict base64, xtext
 */
#ifndef SMTPD_BASE_H
#define SMTPD_BASE_H

#include <stddef.h>
#include <stdint.h>

/* ---- buffer.c ---------------------------------------------------------- */

typedef struct smtpd_buf {
  char *p;
  size_t len;
  size_t cap;
} smtpd_buf;

typedef struct smtpd_str {
  char *p;       /* NUL-terminated copy, may contain NULs before len */
  size_t len;
} smtpd_str;

typedef struct smtpd_strlist {
  smtpd_str *v;
  size_t n;
  size_t cap;
} smtpd_strlist;

/* Every function that allocates returns 0, or -1 with nothing changed. */

int smtpd_buf_reserve(smtpd_buf *b, size_t extra);
int smtpd_buf_append(smtpd_buf *b, const void *p, size_t n);
int smtpd_buf_appendc(smtpd_buf *b, char c);
void smtpd_buf_consume(smtpd_buf *b, size_t n);
void smtpd_buf_fit(smtpd_buf *b);
void smtpd_buf_free(smtpd_buf *b);

int smtpd_str_set(smtpd_str *s, const char *p, size_t n);
void smtpd_str_free(smtpd_str *s);
int smtpd_strlist_push(smtpd_strlist *l, const char *p, size_t n);
int smtpd_strlist_set(smtpd_strlist *l, size_t i, const char *p, size_t n);
void smtpd_strlist_remove(smtpd_strlist *l, size_t i);
void smtpd_strlist_clear(smtpd_strlist *l);

/* ---- text.c ------------------------------------------------------------ */

int smtpd_utf8_valid(const char *p, size_t n);
/* Length of the whitespace character (as Python's str.isspace) at p[0]. */
size_t smtpd_space_at(const unsigned char *p, size_t n);
/* Python's str.strip() over UTF-8. */
void smtpd_ustrip(const char **p, size_t *n);
char smtpd_upper(char c);
/* n digits at p (digits only) as a number of at most max: 1 with *v, 0
 * when larger. Never wraps. */
int smtpd_digits(const char *p, size_t n, size_t max, size_t *v);

/* Reply lines: the one place their form is checked. */
#define SMTPD_REPLY_MAX 510   /* bytes of a reply line without its CRLF */
/* The code of "ddd", "ddd text" or "ddd-text" (*more set: lines follow),
 * 100..599; -1 when the line does not start that way. */
int smtpd_reply_code(const char *p, size_t n, int *more);
/* No CR, LF or NUL, and at most SMTPD_REPLY_MAX bytes. */
int smtpd_reply_text_ok(const char *p, size_t n);
/* One final line of a class in classes ("245"), not 220 or 221, that we
 * may send as is: its code, or 0. */
int smtpd_final_reply(const char *p, size_t n, const char *classes);
/* Whether p (n bytes) is word, ASCII case aside (word in lower case). */
int smtpd_ieq(const char *p, size_t n, const char *word);

/* ---- codec.c ----------------------------------------------------------- */

/* xtext (RFC 3461 4), as the value of MAIL's AUTH= parameter. */
int smtpd_xtext_valid(const char *p, size_t n);
/* Strict base64 (RFC 4648 4, padding required, nothing else allowed):
 * the decoded length, or -1. out has room for n / 4 * 3 bytes. */
long smtpd_b64_decode(const char *p, size_t n, unsigned char *out);
/* Encodes into out (room for (n + 2) / 3 * 4 + 1); its length. */
size_t smtpd_b64_encode(const unsigned char *p, size_t n, char *out);

#endif
