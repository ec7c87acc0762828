/*
 * DKIM's byte work: tag lists, header fields, canonicalisation and the
 * signatures (RFC 6376 sections 3.2, 3.4, 3.7; RFC 8463).
 */
#include "auth/dkim.h"

#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

static int fail(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  return -1;
}

static int is_wsp(int c) { return c == ' ' || c == '\t'; }
static int is_fws(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* ---- tag lists ------------------------------------------------------------------ */

int dkim_tags(const char *s, size_t len, dkim_tag *tags, int max, char *err,
              size_t errlen) {
  size_t i = 0;
  int n = 0, k;
  for (;;) {
    size_t ns, ne, vs, ve;
    while (i < len && is_fws((unsigned char)s[i])) i++;
    if (i >= len) break;                     /* a trailing ";" is allowed */
    ns = i;
    if (!is_alpha((unsigned char)s[i]))
      return fail(err, errlen, "a tag name must start with a letter");
    while (i < len && (is_alpha((unsigned char)s[i]) ||
                       is_digit((unsigned char)s[i]) || s[i] == '_'))
      i++;
    ne = i;
    while (i < len && is_fws((unsigned char)s[i])) i++;
    if (i >= len || s[i] != '=') return fail(err, errlen, "a tag without =");
    i++;
    while (i < len && is_fws((unsigned char)s[i])) i++;
    vs = i;
    while (i < len && s[i] != ';') {
      unsigned char c = (unsigned char)s[i];
      /* tval: VALCHAR (%x21-3A / %x3C-7E) and FWS between them */
      if (!(c >= 0x21 && c <= 0x7e) && !is_fws(c))
        return fail(err, errlen, "a character a tag value may not hold");
      i++;
    }
    ve = i;
    while (ve > vs && is_fws((unsigned char)s[ve - 1])) ve--;
    for (k = 0; k < n; k++)
      if (tags[k].name_len == ne - ns &&
          memcmp(tags[k].name, s + ns, ne - ns) == 0)
        return fail(err, errlen, "a tag given twice");
    if (n >= max) return fail(err, errlen, "too many tags");
    tags[n].name = s + ns;
    tags[n].name_len = ne - ns;
    tags[n].value = s + vs;
    tags[n].value_len = ve - vs;
    n++;
    if (i < len) i++;                        /* the ";" */
  }
  return n;
}

size_t dkim_strip_ws(const char *value, size_t len, char *out) {
  size_t i, o = 0;
  for (i = 0; i < len; i++)
    if (!is_fws((unsigned char)value[i])) out[o++] = value[i];
  out[o] = '\0';
  return o;
}

/* ---- header fields ----------------------------------------------------------------- */

/* The end of the line at i (the offset of its LF, or len) */
static size_t line_end(const char *d, size_t len, size_t i) {
  const char *lf = memchr(d + i, '\n', len - i);
  return lf ? (size_t)(lf - d) : len;
}

int dkim_fields(const char *data, size_t len, dkim_field *f, int max,
                int *extra, size_t *body) {
  size_t i = 0;
  int n = 0;
  *extra = 0;
  *body = len;
  while (i < len) {
    size_t e = line_end(data, len, i), content_end = e, name = i;
    /* An empty line ends the header. */
    if (e == i || (e == i + 1 && data[i] == '\r')) {
      *body = e < len ? e + 1 : len;
      return n;
    }
    while (name < e && data[name] != ':' && !is_wsp((unsigned char)data[name]) &&
           (unsigned char)data[name] > 0x20 && (unsigned char)data[name] < 0x7f)
      name++;
    {
      size_t c = name;
      while (c < e && is_wsp((unsigned char)data[c])) c++;
      if (name == i || c >= e || data[c] != ':') {
        /* Not a field: the header ends here (a body without its blank
         * line). */
        *body = i;
        return n;
      }
    }
    /* Continuation lines (starting with WSP) belong to this field. */
    while (e < len && e + 1 < len && is_wsp((unsigned char)data[e + 1])) {
      e = line_end(data, len, e + 1);
    }
    content_end = e;
    if (content_end > i && data[content_end - 1] == '\r') content_end--;
    if (n < max) {
      f[n].start = i;
      f[n].len = content_end - i;
      f[n].name_len = name - i;
      n++;
    } else {
      (*extra)++;
    }
    i = e < len ? e + 1 : len;
  }
  *body = len;
  return n;
}

int dkim_canon_header(const char *field, size_t len, int relaxed, int crlf,
                      smtpd_buf *out) {
  size_t i = 0;
  if (!relaxed) {
    for (i = 0; i < len; i++) {
      if (field[i] == '\n' && (i == 0 || field[i - 1] != '\r')) {
        if (smtpd_buf_append(out, "\r\n", 2)) return -1;
      } else if (smtpd_buf_appendc(out, field[i])) {
        return -1;
      }
    }
  } else {
    int wsp = 0, started = 0;
    /* the name, lower-cased, without the WSP before the colon */
    while (i < len && field[i] != ':') {
      unsigned char c = (unsigned char)field[i];
      if (!is_fws(c) &&
          smtpd_buf_appendc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c)))
        return -1;
      i++;
    }
    if (smtpd_buf_appendc(out, ':')) return -1;
    if (i < len) i++;
    for (; i < len; i++) {
      unsigned char c = (unsigned char)field[i];
      if (c == '\r' || c == '\n') continue;      /* unfolded */
      if (is_wsp(c)) {
        wsp = 1;
        continue;
      }
      if (wsp && started && smtpd_buf_appendc(out, ' ')) return -1;
      wsp = 0;
      started = 1;
      if (smtpd_buf_appendc(out, (char)c)) return -1;
    }
  }
  if (crlf && smtpd_buf_append(out, "\r\n", 2)) return -1;
  return 0;
}

/* ---- the body ------------------------------------------------------------------------- */

int dkim_body_init(dkim_body *b, int relaxed, const EVP_MD *md,
                   long long limit) {
  memset(b, 0, sizeof *b);
  b->relaxed = relaxed;
  b->limit = limit;
  b->md = EVP_MD_CTX_new();
  if (b->md == NULL || EVP_DigestInit_ex(b->md, md, NULL) != 1) {
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
    return -1;
  }
  return 0;
}

/* Canonical bytes out: hashed up to the limit, all counted. */
static void emit(dkim_body *b, const char *p, size_t n) {
  b->any = 1;
  if (b->limit < 0 || b->hashed < b->limit) {
    size_t take = n;
    if (b->limit >= 0 && (long long)take > b->limit - b->hashed)
      take = (size_t)(b->limit - b->hashed);
    EVP_DigestUpdate(b->md, p, take);
    b->hashed += (long long)take;
  }
  b->total += (long long)n;
}

/* The first content byte of a line: the empty lines held back come
 * first, then (relaxed) one SP for whitespace held back. */
static void content(dkim_body *b, const char *p, size_t n) {
  while (b->empty) {
    emit(b, "\r\n", 2);
    b->empty--;
  }
  if (b->wsp) {
    emit(b, " ", 1);
    b->wsp = 0;
  }
  b->content = 1;
  emit(b, p, n);
}

static void end_line(dkim_body *b) {
  b->wsp = 0;                        /* trailing whitespace goes */
  if (b->content) emit(b, "\r\n", 2);
  else b->empty++;
  b->content = 0;
}

int dkim_body_update(dkim_body *b, const char *p, size_t n) {
  size_t i = 0;
  if (b->md == NULL) return -1;
  while (i < n) {
    char c = p[i];
    if (b->cr) {
      b->cr = 0;
      if (c == '\n') {
        end_line(b);
        i++;
        continue;
      }
      content(b, "\r", 1);           /* a lone CR is content */
    }
    if (c == '\r') {
      b->cr = 1;
      i++;
    } else if (c == '\n') {
      end_line(b);
      i++;
    } else if (b->relaxed && is_wsp((unsigned char)c)) {
      b->wsp = 1;
      i++;
    } else {
      /* a run of plain bytes in one go */
      size_t j = i + 1;
      while (j < n && p[j] != '\r' && p[j] != '\n' &&
             !(b->relaxed && is_wsp((unsigned char)p[j])))
        j++;
      if (!b->content || b->empty || b->wsp) {
        content(b, p + i, 1);
        i++;
      } else {
        emit(b, p + i, j - i);
        i = j;
      }
    }
  }
  return 0;
}

int dkim_body_final(dkim_body *b, unsigned char *out) {
  unsigned int len = 0;
  if (b->md == NULL) return -1;
  if (b->cr) {
    b->cr = 0;
    content(b, "\r", 1);
  }
  if (b->content) end_line(b);       /* a CRLF is added */
  if (!b->relaxed && !b->any) emit(b, "\r\n", 2);   /* simple: empty is CRLF */
  if (EVP_DigestFinal_ex(b->md, out, &len) != 1) return -1;
  EVP_MD_CTX_free(b->md);
  b->md = NULL;
  return (int)len;
}

void dkim_body_free(dkim_body *b) {
  EVP_MD_CTX_free(b->md);
  b->md = NULL;
}

/* ---- the body hashes of a message as it arrives ------------------------------------------ */

void dkim_stream_reset(dkim_stream *st) {
  int i;
  for (i = 0; i < st->n; i++) dkim_body_free(&st->h[i].b);
  memset(st, 0, sizeof *st);
}


/* One DKIM-Signature field's body hash, added unless it is there. */
static void stream_add(dkim_stream *st, const char *field, size_t len) {
  const char *colon = memchr(field, ':', len);
  dkim_tag tags[DKIM_MAX_TAGS];
  int n, i, relaxed = 0, sha1 = 0;
  long long limit = -1;
  if (colon == NULL) return;
  n = dkim_tags(colon + 1, len - (size_t)(colon + 1 - field), tags,
                DKIM_MAX_TAGS, NULL, 0);
  for (i = 0; i < n; i++) {
    const dkim_tag *t = &tags[i];
    if (t->name_len == 1 && t->name[0] == 'c') {
      const char *slash = memchr(t->value, '/', t->value_len);
      if (slash)
        relaxed = smtpd_ieq(slash + 1,
                            t->value_len - (size_t)(slash + 1 - t->value),
                            "relaxed");
    } else if (t->name_len == 1 && t->name[0] == 'a') {
      sha1 = smtpd_ieq(t->value, t->value_len, "rsa-sha1");
    } else if (t->name_len == 1 && t->name[0] == 'l') {
      size_t k;
      limit = 0;
      for (k = 0; k < t->value_len && k < 18; k++) {
        if (!is_digit((unsigned char)t->value[k])) return;   /* malformed */
        limit = limit * 10 + (t->value[k] - '0');
      }
      if (t->value_len == 0 || t->value_len >= 18) return;
    }
  }
  if (n < 0) return;
  for (i = 0; i < st->n; i++)
    if (st->h[i].relaxed == relaxed && st->h[i].sha1 == sha1 &&
        st->h[i].limit == limit)
      return;
  if (st->n >= DKIM_STREAM_MAX) return;
  if (dkim_body_init(&st->h[st->n].b, relaxed, sha1 ? EVP_sha1() : EVP_sha256(),
                     limit))
    return;
  st->h[st->n].relaxed = relaxed;
  st->h[st->n].sha1 = sha1;
  st->h[st->n].limit = limit;
  st->n++;
}

/* The header is whole at len: read its signatures' hashes. */
static void stream_header(dkim_stream *st, const char *data, size_t len) {
  dkim_field f[64];
  int n, i, extra;
  size_t body;
  n = dkim_fields(data, len, f, 64, &extra, &body);
  st->body = body;
  for (i = 0; i < n; i++)
    if (smtpd_ieq(data + f[i].start, f[i].name_len, "dkim-signature"))
      stream_add(st, data + f[i].start, f[i].len);
  st->state = st->n ? 1 : 2;
  st->fed = body;
}

void dkim_stream_feed(dkim_stream *st, const char *data, size_t len) {
  int i;
  if (len < st->fed) dkim_stream_reset(st);        /* a new message */
  if (st->state == 0) {
    /* the blank line that ends the header (LF or CRLF line ends) */
    size_t from = st->fed > 3 ? st->fed - 3 : 0, k, end = 0;
    if (len && data[0] == '\n') end = 1;
    else if (len > 1 && data[0] == '\r' && data[1] == '\n') end = 2;
    for (k = from; !end && k + 1 < len; k++) {
      if (data[k] != '\n') continue;
      if (data[k + 1] == '\n') end = k + 2;
      else if (k + 2 < len && data[k + 1] == '\r' && data[k + 2] == '\n') end = k + 3;
    }
    if (!end) {
      st->fed = len;
      if (len > DKIM_STREAM_HEADER_MAX) st->state = 2;
      return;
    }
    stream_header(st, data, end);
  }
  if (st->state != 1 || len <= st->fed) return;
  for (i = 0; i < st->n; i++)
    dkim_body_update(&st->h[i].b, data + st->fed, len - st->fed);
  st->fed = len;
}

int dkim_stream_finish(dkim_stream *st, const char *data, size_t len) {
  int i;
  if (st->state == 0) {
    /* a message that is all header: its body is empty */
    dkim_stream_feed(st, data, len);
    if (st->state == 0) {
      stream_header(st, data, len);
    }
  } else {
    dkim_stream_feed(st, data, len);
  }
  if (st->state != 1) return 0;
  for (i = 0; i < st->n; i++) {
    st->h[i].dlen = dkim_body_final(&st->h[i].b, st->h[i].digest);
    if (st->h[i].dlen < 0) return 0;
  }
  return 1;
}

/* ---- signatures ----------------------------------------------------------------------------- */

EVP_PKEY *dkim_public_key(dkim_alg alg, const unsigned char *p, size_t n,
                          int *bits, char *err, size_t errlen) {
  EVP_PKEY *k = NULL;
  const unsigned char *q = p;
  if (alg == DKIM_ED25519_SHA256) {
    if (n != 32) {
      fail(err, errlen, "an Ed25519 key is 32 bytes");
      return NULL;
    }
    k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, n);
  } else {
    k = d2i_PUBKEY(NULL, &q, (long)n);
    if (k == NULL) {
      q = p;
      k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)n);
    }
    if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
      EVP_PKEY_free(k);
      k = NULL;
    }
  }
  if (k == NULL) {
    fail(err, errlen, "the key does not decode");
    return NULL;
  }
  *bits = EVP_PKEY_get_bits(k);
  return k;
}

static const EVP_MD *alg_md(dkim_alg alg) {
  return alg == DKIM_RSA_SHA1 ? EVP_sha1() : EVP_sha256();
}

int dkim_verify(dkim_alg alg, EVP_PKEY *key, const unsigned char *data,
                size_t n, const unsigned char *sig, size_t siglen) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int r = -1;
  if (ctx == NULL) return -1;
  if (alg == DKIM_ED25519_SHA256) {
    unsigned char digest[32];
    if (EVP_Digest(data, n, digest, NULL, EVP_sha256(), NULL) == 1 &&
        EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1)
      r = EVP_DigestVerify(ctx, sig, siglen, digest, sizeof digest) == 1;
  } else if (EVP_DigestVerifyInit(ctx, NULL, alg_md(alg), NULL, key) == 1) {
    r = EVP_DigestVerify(ctx, sig, siglen, data, n) == 1;
  }
  EVP_MD_CTX_free(ctx);
  return r;
}

int dkim_sign(dkim_alg alg, EVP_PKEY *key, const unsigned char *data,
              size_t n, unsigned char *sig, size_t cap) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  size_t len = cap;
  int r = -1;
  if (ctx == NULL) return -1;
  if (alg == DKIM_ED25519_SHA256) {
    unsigned char digest[32];
    if (EVP_Digest(data, n, digest, NULL, EVP_sha256(), NULL) == 1 &&
        EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
        EVP_DigestSign(ctx, sig, &len, digest, sizeof digest) == 1)
      r = (int)len;
  } else if (EVP_DigestSignInit(ctx, NULL, alg_md(alg), NULL, key) == 1 &&
             EVP_DigestSign(ctx, NULL, &len, data, n) == 1 && len <= cap &&
             EVP_DigestSign(ctx, sig, &len, data, n) == 1) {
    r = (int)len;
  }
  EVP_MD_CTX_free(ctx);
  return r;
}
