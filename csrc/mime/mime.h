/*
 * A forgiving Internet message parser (RFC 5322 headers, the MIME tree of
 * RFC 2045/2046, RFC 2047 encoded words, RFC 2231 parameters), with no Lua
 * and no libuv: what the fuzzer drives.
 *
 * smtpd_mime_parse indexes one copy of the bytes (offsets only, nothing is
 * copied); the decoding functions write into an smtpd_buf on demand.
 * Nothing here fails on malformed input: it gives a best-effort reading,
 * as a mail client does. Memory is bounded by the caps below.
 */
#ifndef SMTPD_MIME_H
#define SMTPD_MIME_H

#include <stddef.h>

#include "base/base.h"

#define SMTPD_MIME_MAX_PARTS 10000
#define SMTPD_MIME_MAX_DEPTH 64
#define SMTPD_MIME_MAX_HEADERS 100000   /* in the whole message */

typedef struct smtpd_mime_header {
  size_t name, name_len;     /* the field name */
  size_t value, value_len;   /* raw: after the colon, folds kept */
} smtpd_mime_header;

typedef struct smtpd_mime_part {
  size_t start, end;         /* the whole part */
  size_t body, body_end;     /* its body */
  size_t hfirst, hcount;     /* its headers: hdrs[hfirst .. + hcount] */
  int parent;                /* -1 for the message */
  int depth;
  int first_child, next;     /* -1 when none */
  int nchildren;
  int digest_child;          /* a part of multipart/digest */
  int has_children;          /* multipart with parts, or message/<x> */
} smtpd_mime_part;

typedef struct smtpd_mime {
  const char *p;
  size_t len;
  smtpd_mime_part *parts;
  size_t nparts, pcap;
  smtpd_mime_header *hdrs;
  size_t nhdrs, hcap;
} smtpd_mime;

/* 0, or -1 when out of memory (m is then freed). */
int smtpd_mime_parse(smtpd_mime *m, const char *p, size_t len);
void smtpd_mime_free(smtpd_mime *m);

/* The index of part i's first header named name (case-insensitive) from
 * header index `from` on, or -1. */
long smtpd_mime_find(const smtpd_mime *m, int part, const char *name,
                     size_t nlen, size_t from);

/* Part i's first header named name (case-insensitive), or NULL. */
const smtpd_mime_header *smtpd_mime_first(const smtpd_mime *m, int part,
                                          const char *name, size_t nlen);

/* The content type of part i, lower case, defaulted as RFC 2045 says
 * (text/plain; message/rfc822 in a multipart/digest), into out. */
int smtpd_mime_ctype(const smtpd_mime *m, int part, smtpd_buf *out);

/* A header value unfolded and its encoded words decoded to UTF-8. */
int smtpd_mime_decode_header(const char *v, size_t n, smtpd_buf *out);
/* Unfolded only (line breaks removed, leading blanks dropped). */
int smtpd_mime_unfold(const char *v, size_t n, smtpd_buf *out);

/* The value of parameter name of a Content-Type or Content-Disposition
 * value (RFC 2045 quoting, RFC 2231 continuations and charsets, encoded
 * words in quoted strings), UTF-8, into out: 1 found, 0 not, -1 no
 * memory. */
int smtpd_mime_param(const char *v, size_t n, const char *name, size_t nlen,
                     smtpd_buf *out);
/* The value before the first ';', trimmed and lower-cased. */
int smtpd_mime_main_value(const char *v, size_t n, smtpd_buf *out);

/* Each mailbox of an address list: cb(name, nlen, addr, alen, ud) with
 * the display name decoded to UTF-8. Groups are flattened. */
typedef int (*smtpd_mime_addr_cb)(const char *name, size_t nlen,
                                  const char *addr, size_t alen, void *ud);
int smtpd_mime_addresses(const char *v, size_t n, smtpd_mime_addr_cb cb,
                         void *ud);

/* Bodies: base64 (lenient: other bytes skipped) and quoted-printable. */
int smtpd_mime_base64(const char *p, size_t n, smtpd_buf *out);
int smtpd_mime_qp(const char *p, size_t n, smtpd_buf *out);

/* Bytes in charset to UTF-8; bytes that do not convert become U+FFFD. An
 * unknown charset is read as UTF-8. */
int smtpd_mime_to_utf8(const char *cs, size_t cslen, const char *p, size_t n,
                       smtpd_buf *out);

/* iconv descriptors this thread opened so far (they are cached by
 * charset, per thread); smtpd_mime_iconv_flush closes this thread's. */
unsigned long smtpd_mime_iconv_opens(void);
void smtpd_mime_iconv_flush(void);

#endif
