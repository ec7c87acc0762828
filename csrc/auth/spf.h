/*
 * SPF records and macros (RFC 7208), the pure layer: no Lua, no libuv, no
 * DNS. spf_parse reads a record into its terms, checking the whole syntax
 * first (section 4.6: any syntax error is a permerror before anything is
 * evaluated); spf_expand expands a macro-string (section 7). The
 * evaluation, which asks DNS, is smtpd.spf's (lua/smtpd/spf.lua).
 */
#ifndef SMTPD_AUTH_SPF_H
#define SMTPD_AUTH_SPF_H

#include <stddef.h>

#include "base/base.h"

/* At most this many terms in a record (a record is at most a few KiB:
 * RFC 7208 limits the DNS lookups, not the terms; 512 is far past any
 * real record and bounds the work). */
#define SPF_MAX_TERMS 512

typedef enum {
  SPF_ALL = 1, SPF_INCLUDE, SPF_A, SPF_MX, SPF_PTR, SPF_IP4, SPF_IP6,
  SPF_EXISTS, SPF_REDIRECT, SPF_EXP, SPF_MODIFIER /* unknown: ignored */
} spf_kind;

typedef struct spf_term {
  spf_kind kind;
  char qualifier;           /* '+', '-', '~', '?' (mechanisms only) */
  const char *name;         /* the modifier's name (SPF_MODIFIER) */
  size_t name_len;
  const char *spec;         /* domain-spec, macro-string or network; NULL */
  size_t spec_len;
  int cidr4, cidr6;         /* prefix lengths; -1 when not given */
  unsigned char addr[16];   /* ip4 / ip6: the network */
} spf_term;

typedef struct spf_record {
  spf_term terms[SPF_MAX_TERMS];
  int n;
} spf_record;

/* 1 when text (len bytes) is an SPF record: "v=spf1" (any case) then a
 * space or its end. */
int spf_is_record(const char *text, size_t len);

/* Parses a record (spf_is_record first): 0, or -1 with why in err.
 * Terms point into text. */
int spf_parse(const char *text, size_t len, spf_record *rec, char *err,
              size_t errlen);

/* Checks a macro-string: 0 or -1 (why in err). exp: the "exp" text,
 * where c, r and t are allowed too. domain: a domain-spec (its end must
 * be a macro or a top label). */
int spf_check_macros(const char *s, size_t len, int exp, int domain,
                     char *err, size_t errlen);

/* What the macro letters stand for (NUL-terminated; NULL: unknown). */
typedef struct spf_macro_ctx {
  const char *s, *l, *o, *d, *i, *p, *v, *h, *c, *r, *t;
} spf_macro_ctx;

/* Expands a macro-string into out (appended): 0, or -1 (a malformed
 * macro, a letter with no value, or no memory; why in err). A
 * domain-spec's expansion longer than 253 bytes loses labels from its
 * left (section 4.8) when domain is set. */
int spf_expand(const char *s, size_t len, const spf_macro_ctx *ctx,
               int exp, int domain, smtpd_buf *out, char *err,
               size_t errlen);

#endif
