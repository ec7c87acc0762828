/*
 * DKIM (RFC 6376, RFC 8301, RFC 8463), the pure layer: tag lists, a
 * message's header fields, canonicalisation (the body's as a stream, so
 * that it can be hashed while the data arrives), and the signatures
 * themselves (rsa-sha256, rsa-sha1 for reporting, ed25519-sha256) on
 * OpenSSL 3. Which signatures to check, the keys from DNS and the
 * results are smtpd.dkim's (lua/smtpd/dkim.lua).
 */
#ifndef SMTPD_AUTH_DKIM_H
#define SMTPD_AUTH_DKIM_H

#include <stddef.h>

#include <openssl/evp.h>

#include "base/base.h"

/* ---- tag lists (RFC 6376 section 3.2) -------------------------------------- */

#define DKIM_MAX_TAGS 64

typedef struct dkim_tag {
  const char *name, *value;  /* value: FWS around it trimmed, inside kept */
  size_t name_len, value_len;
} dkim_tag;

/* Parses "a=b; c = d;": the number of tags, or -1 (a malformed list, a
 * tag twice, more than max; why in err). */
int dkim_tags(const char *s, size_t len, dkim_tag *tags, int max, char *err,
              size_t errlen);

/* Copies value without any whitespace (the FWS a base64 value may hold)
 * into out (room for len + 1): its length. */
size_t dkim_strip_ws(const char *value, size_t len, char *out);

/* ---- header fields ---------------------------------------------------------- */

#define DKIM_MAX_FIELDS 1000

typedef struct dkim_field {
  size_t start, len;         /* the whole field, without its line end */
  size_t name_len;           /* the name, before any WSP and the colon */
} dkim_field;

/* Splits data's header into fields (LF or CRLF line ends, folded lines
 * joined): the number of fields (at most max; more are counted in
 * *extra), *body the offset of the body (data's length if none). A line
 * that is neither a field nor a continuation ends the header there. */
int dkim_fields(const char *data, size_t len, dkim_field *f, int max,
                int *extra, size_t *body);

/* Canonicalises one field (name, colon, value, its folding) into out:
 * relaxed (RFC 6376 3.4.2) or simple (3.4.1, line ends written CRLF);
 * crlf: end it with CRLF. */
int dkim_canon_header(const char *field, size_t len, int relaxed, int crlf,
                      smtpd_buf *out);

/* ---- the body, as a stream ------------------------------------------------------ */

typedef struct dkim_body {
  int relaxed;
  long long limit;           /* l=: bytes of canonical body hashed; -1 all */
  long long hashed, total;   /* canonical bytes hashed, and in all */
  unsigned long empty;       /* empty lines held back */
  int wsp;                   /* relaxed: whitespace held back */
  int cr;                    /* a CR held back (a line end if LF follows) */
  int content;               /* the line so far has content */
  int any;                   /* anything was written */
  EVP_MD_CTX *md;
} dkim_body;

/* md: EVP_sha256() or EVP_sha1(). 0, or -1 (no memory). */
int dkim_body_init(dkim_body *b, int relaxed, const EVP_MD *md,
                   long long limit);
/* Feeds body bytes (LF or CRLF line ends; dot-stuffing already undone). */
int dkim_body_update(dkim_body *b, const char *p, size_t n);
/* Ends the body: the digest in out (EVP_MAX_MD_SIZE), its length, or -1. */
int dkim_body_final(dkim_body *b, unsigned char *out);
void dkim_body_free(dkim_body *b);

/* ---- the body hashes of a message as it arrives ---------------------------------- */

/* The different (canonicalisation, hash, l=) of a message's signatures
 * hashed while its data streams: once its header is whole, each
 * DKIM-Signature field's c=, a= and l= are read and every body byte that
 * arrives is hashed for each. */
#define DKIM_STREAM_MAX 8
#define DKIM_STREAM_HEADER_MAX (1024 * 1024)

typedef struct dkim_stream_hash {
  int relaxed, sha1;
  long long limit;             /* -1: no l= */
  dkim_body b;
  unsigned char digest[EVP_MAX_MD_SIZE];
  int dlen;                    /* set by dkim_stream_finish */
} dkim_stream_hash;

typedef struct dkim_stream {
  int state;        /* 0: the header is not whole; 1: hashing; 2: nothing */
  size_t fed;       /* bytes of the data looked at */
  size_t body;      /* where the body starts */
  int n;
  dkim_stream_hash h[DKIM_STREAM_MAX];
} dkim_stream;

/* data is the whole message so far (it only grows; shorter: a new one). */
void dkim_stream_feed(dkim_stream *st, const char *data, size_t len);
/* The message is whole: the digests, in h[i].digest. 1 when there are
 * any, 0 when there was nothing to hash (or no memory). */
int dkim_stream_finish(dkim_stream *st, const char *data, size_t len);
void dkim_stream_reset(dkim_stream *st);

/* ---- signatures -------------------------------------------------------------------- */

typedef enum { DKIM_RSA_SHA256 = 1, DKIM_RSA_SHA1, DKIM_ED25519_SHA256 } dkim_alg;

/* The public key of a key record's p= (decoded base64): RSA as
 * SubjectPublicKeyInfo or PKCS#1, Ed25519 as its 32 raw bytes. NULL with
 * why in err. *bits: the key's size. */
EVP_PKEY *dkim_public_key(dkim_alg alg, const unsigned char *p, size_t n,
                          int *bits, char *err, size_t errlen);

/* 1 when sig is alg's signature of data by key, 0 when it is not, -1 on
 * an error. Ed25519 signs data's SHA-256 (RFC 8463). */
int dkim_verify(dkim_alg alg, EVP_PKEY *key, const unsigned char *data,
                size_t n, const unsigned char *sig, size_t siglen);

/* Signs data: the signature's length in sig (room for 1024 bytes: RSA
 * keys up to 8192 bits), or -1. */
int dkim_sign(dkim_alg alg, EVP_PKEY *key, const unsigned char *data,
              size_t n, unsigned char *sig, size_t cap);

#endif
