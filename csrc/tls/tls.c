/*
 * TLS over byte buffers with OpenSSL 3.
 *
 * Each connection's SSL talks to one small BIO of ours: reads take the
 * ciphertext the owner is feeding right now (no copy into a memory BIO
 * that would keep its capacity), writes append to the owner's sink. With
 * SSL_MODE_RELEASE_BUFFERS an idle connection then holds only the SSL
 * itself, about 16 KiB, instead of 48.
 *
 * Contexts: minimum TLS 1.2, no renegotiation, no compression, an
 * unexpected EOF is not an error (SMTP ends with QUIT), session tickets
 * for resumption.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <openssl/crypto.h>

#include "tls/tls.h"

struct smtpd_tls_conf {
  int refs;
  SSL_CTX *def;            /* the default certificates */
  size_t n;                /* SNI names */
  char **names;
  SSL_CTX **ctxs;
};

struct smtpd_tls {
  SSL *ssl;
  smtpd_tls_conf *conf;    /* server side: the set it started with */
  smtpd_buf *sink;
  const char *in_p;        /* ciphertext being fed */
  size_t in_n;
  int ready;
  int shut;
  char err[200];
};

/* ---- the BIO: reads from the feed, writes to the sink ------------------- */

static int bio_write(BIO *b, const char *p, int n) {
  smtpd_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  if (smtpd_buf_append(t->sink, p, (size_t)n)) return -1;
  return n;
}

static int bio_read(BIO *b, char *p, int n) {
  smtpd_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->in_n == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  if ((size_t)n > t->in_n) n = (int)t->in_n;
  memcpy(p, t->in_p, (size_t)n);
  t->in_p += n;
  t->in_n -= (size_t)n;
  return n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  smtpd_tls *t = BIO_get_data(b);
  (void)num;
  (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_PENDING: return t ? (long)t->in_n : 0;
  default: return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int bio_destroy(BIO *b) {
  (void)b;
  return 1;
}

static BIO_METHOD *tls_bio_new(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                               "smtpd");
  if (m == NULL) return NULL;
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  BIO_meth_set_destroy(m, bio_destroy);
  return m;
}

/* ---- errors -------------------------------------------------------------- */

/* OpenSSL's reason for the last failure, after prefix; clears the queue. */
static void tls_errstr(char *err, size_t n, const char *prefix) {
  unsigned long e = ERR_peek_last_error();
  char buf[160];
  if (e) {
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, n, "%s: %s", prefix, buf);
  } else {
    snprintf(err, n, "%s", prefix);
  }
  ERR_clear_error();
}

/* ---- server contexts ------------------------------------------------------- */

static int tls_accept_any(int ok, X509_STORE_CTX *x) {
  (void)ok;
  (void)x;
  return 1;   /* asked for, not required: the result is in the session */
}

static SSL_CTX *tls_ctx_base(int server, int min_version) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method()
                                    : TLS_client_method());
  if (ctx == NULL) return NULL;
  SSL_CTX_set_min_proto_version(ctx, min_version == 13 ? TLS1_3_VERSION
                                                       : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                      SSL_OP_IGNORE_UNEXPECTED_EOF |
                      SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

/* A file we cannot open is said plainly (OpenSSL says "system lib"). */
static int tls_readable(const char *path, const char *what, char *err,
                        size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, errlen, "cannot read %s %s: %s", what, path,
             strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

static SSL_CTX *tls_server_ctx(const smtpd_tls_spec *sp,
                               const smtpd_tls_pair *pr, char *err,
                               size_t errlen) {
  static const unsigned char sid[] = "lua-smtpd";
  SSL_CTX *ctx = tls_ctx_base(1, sp->min_version);
  int i;
  if (ctx == NULL) {
    tls_errstr(err, errlen, "cannot make a TLS context");
    return NULL;
  }
  SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
  SSL_CTX_set_num_tickets(ctx, 1);
  if (sp->ciphers && !SSL_CTX_set_cipher_list(ctx, sp->ciphers)) {
    tls_errstr(err, errlen, "tls.ciphers");
    SSL_CTX_free(ctx);
    return NULL;
  }
  for (i = 0; i < pr->n; i++) {
    char what[1100];
    if (!tls_readable(pr->cert[i], "certificate", err, errlen) ||
        !tls_readable(pr->key[i], "key", err, errlen)) {
      SSL_CTX_free(ctx);
      return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, pr->cert[i]) != 1) {
      snprintf(what, sizeof what, "cannot load certificate %s", pr->cert[i]);
      tls_errstr(err, errlen, what);
      SSL_CTX_free(ctx);
      return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, pr->key[i], SSL_FILETYPE_PEM) != 1) {
      snprintf(what, sizeof what, "cannot load key %s", pr->key[i]);
      tls_errstr(err, errlen, what);
      SSL_CTX_free(ctx);
      return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      snprintf(what, sizeof what, "key %s does not match certificate %s",
               pr->key[i], pr->cert[i]);
      tls_errstr(err, errlen, what);
      SSL_CTX_free(ctx);
      return NULL;
    }
  }
  if (sp->client_ca) {
    STACK_OF(X509_NAME) *names;
    if (!tls_readable(sp->client_ca, "tls.client_ca", err, errlen)) {
      SSL_CTX_free(ctx);
      return NULL;
    }
    names = SSL_load_client_CA_file(sp->client_ca);
    if (names == NULL ||
        SSL_CTX_load_verify_locations(ctx, sp->client_ca, NULL) != 1) {
      char what[1100];
      if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
      snprintf(what, sizeof what, "cannot load tls.client_ca %s",
               sp->client_ca);
      tls_errstr(err, errlen, what);
      SSL_CTX_free(ctx);
      return NULL;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    if (sp->verify_client)
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
                         SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_accept_any);
  }
  ERR_clear_error();
  return ctx;
}

static int tls_name_match(const char *pat, const char *name) {
  if (pat[0] == '*' && pat[1] == '.') {
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcasecmp(pat + 1, dot) == 0;
  }
  return strcasecmp(pat, name) == 0;
}

/* SNI: switch to the context of the name asked for (exact names first). */
static int tls_on_servername(SSL *ssl, int *al, void *arg) {
  smtpd_tls_conf *c = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  size_t i;
  int pass;
  (void)al;
  if (name == NULL) return SSL_TLSEXT_ERR_NOACK;
  for (pass = 0; pass < 2; pass++) {
    for (i = 0; i < c->n; i++) {
      int wild = c->names[i][0] == '*';
      if (wild != pass || !tls_name_match(c->names[i], name)) continue;
      SSL_set_SSL_CTX(ssl, c->ctxs[i]);
      SSL_set_verify(ssl, SSL_CTX_get_verify_mode(c->ctxs[i]),
                     SSL_CTX_get_verify_callback(c->ctxs[i]));
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK;   /* an unknown name gets the default */
}

smtpd_tls_conf *smtpd_tls_conf_new(const smtpd_tls_spec *sp, char *err,
                                   size_t errlen) {
  smtpd_tls_conf *c;
  size_t i;
  if (sp->npairs == 0 || sp->pairs[0].n == 0) {
    snprintf(err, errlen, "tls needs cert and key");
    return NULL;
  }
  c = calloc(1, sizeof *c);
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->refs = 1;
  c->def = tls_server_ctx(sp, &sp->pairs[0], err, errlen);
  if (c->def == NULL) goto fail;
  if (sp->npairs > 1) {
    c->names = calloc(sp->npairs - 1, sizeof *c->names);
    c->ctxs = calloc(sp->npairs - 1, sizeof *c->ctxs);
    if (!c->names || !c->ctxs) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
    for (i = 1; i < sp->npairs; i++) {
      SSL_CTX *x = tls_server_ctx(sp, &sp->pairs[i], err, errlen);
      if (x == NULL) goto fail;
      c->ctxs[c->n] = x;
      c->names[c->n] = strdup(sp->pairs[i].name ? sp->pairs[i].name : "");
      c->n++;
      if (c->names[c->n - 1] == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
      }
    }
    SSL_CTX_set_tlsext_servername_callback(c->def, tls_on_servername);
    SSL_CTX_set_tlsext_servername_arg(c->def, c);
  }
  return c;
fail:
  smtpd_tls_conf_unref(c);
  return NULL;
}

void smtpd_tls_conf_ref(smtpd_tls_conf *c) {
  c->refs++;
}

void smtpd_tls_conf_unref(smtpd_tls_conf *c) {
  size_t i;
  if (c == NULL || --c->refs > 0) return;
  for (i = 0; i < c->n; i++) {
    SSL_CTX_free(c->ctxs[i]);
    free(c->names[i]);
  }
  free(c->ctxs);
  free(c->names);
  SSL_CTX_free(c->def);
  free(c);
}

/* ---- the environment: our BIO method, client contexts per CA file -------- */

typedef struct client_ctx {
  char *ca;                /* NULL: the system's store */
  char *cert, *key;        /* the client certificate, or NULL */
  int verify;
  SSL_CTX *ctx;
  struct client_ctx *next;
} client_ctx;

struct smtpd_tls_env {
  BIO_METHOD *bio;
  client_ctx *clients;
};

smtpd_tls_env *smtpd_tls_env_new(void) {
  smtpd_tls_env *e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  e->bio = tls_bio_new();
  if (e->bio == NULL) {
    free(e);
    return NULL;
  }
  return e;
}

static void client_ctx_free(client_ctx *c) {
  SSL_CTX_free(c->ctx);
  free(c->ca);
  free(c->cert);
  free(c->key);
  free(c);
}

void smtpd_tls_env_free(smtpd_tls_env *e) {
  if (e == NULL) return;
  while (e->clients) {
    client_ctx *c = e->clients;
    e->clients = c->next;
    client_ctx_free(c);
  }
  BIO_meth_free(e->bio);
  free(e);
}

static int same(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static char *dup_or_null(const char *s, int *failed) {
  char *c;
  if (s == NULL) return NULL;
  c = strdup(s);
  if (c == NULL) *failed = 1;
  return c;
}

/* The client context for these CAs and this client certificate: loaded
 * once per map (the CA bundle and the files are read here, not at each
 * connection), then shared by every connection that asks the same. */
static SSL_CTX *tls_client_ctx(smtpd_tls_env *env,
                               const smtpd_tls_client_spec *sp, char *err,
                               size_t errlen) {
  client_ctx *e;
  SSL_CTX *ctx;
  const char *ca = sp->verify ? sp->ca : NULL;
  const char *key = sp->cert ? (sp->key ? sp->key : sp->cert) : NULL;
  int failed = 0;
  for (e = env->clients; e; e = e->next) {
    if (e->verify == sp->verify && same(e->ca, ca) && same(e->cert, sp->cert)
        && same(e->key, key))
      return e->ctx;
  }
  ctx = tls_ctx_base(0, 12);
  if (ctx == NULL) {
    tls_errstr(err, errlen, "cannot make a TLS context");
    return NULL;
  }
  if (sp->verify && (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
                        : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
    char what[1100];
    snprintf(what, sizeof what, "cannot load CA file %s",
             ca ? ca : "(system)");
    tls_errstr(err, errlen, what);
    SSL_CTX_free(ctx);
    return NULL;
  }
  if (sp->cert) {
    if (!tls_readable(sp->cert, "certificate", err, errlen) ||
        !tls_readable(key, "key", err, errlen)) {
      SSL_CTX_free(ctx);
      return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, sp->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      tls_errstr(err, errlen, "cannot use the client certificate");
      SSL_CTX_free(ctx);
      return NULL;
    }
  }
  e = calloc(1, sizeof *e);
  if (e) {
    e->ca = dup_or_null(ca, &failed);
    e->cert = dup_or_null(sp->cert, &failed);
    e->key = dup_or_null(key, &failed);
  }
  if (e == NULL || failed) {
    if (e) {
      e->ctx = NULL;
      client_ctx_free(e);
    }
    SSL_CTX_free(ctx);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  e->verify = sp->verify;
  e->ctx = ctx;
  e->next = env->clients;
  env->clients = e;
  return ctx;
}

int smtpd_tls_client_preload(smtpd_tls_env *env,
                             const smtpd_tls_client_spec *sp, char *err,
                             size_t errlen) {
  return tls_client_ctx(env, sp, err, errlen) ? 0 : -1;
}

/* ---- connections ------------------------------------------------------------ */

static smtpd_tls *tls_new(smtpd_tls_env *env, SSL_CTX *ctx,
                          smtpd_buf *sink) {
  smtpd_tls *t = calloc(1, sizeof *t);
  BIO *b;
  if (t == NULL) return NULL;
  t->sink = sink;
  t->ssl = SSL_new(ctx);
  b = BIO_new(env->bio);
  if (t->ssl == NULL || b == NULL) {
    if (b) BIO_free(b);
    if (t->ssl) SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b);   /* one BIO both ways: one reference taken */
  return t;
}

smtpd_tls *smtpd_tls_server(smtpd_tls_env *env, smtpd_tls_conf *c,
                            smtpd_buf *sink) {
  smtpd_tls *t = tls_new(env, c->def, sink);
  if (t == NULL) return NULL;
  SSL_set_accept_state(t->ssl);
  t->conf = c;
  smtpd_tls_conf_ref(c);
  return t;
}

/* An IPv6 address, or only digits and dots: verified as an IP address
 * and never sent as SNI (RFC 6066 3). */
static int tls_is_ip(const char *h) {
  return strchr(h, ':') != NULL || strspn(h, "0123456789.") == strlen(h);
}

smtpd_tls *smtpd_tls_client(smtpd_tls_env *env,
                            const smtpd_tls_client_spec *sp,
                            smtpd_buf *sink, char *err, size_t errlen) {
  SSL_CTX *ctx = tls_client_ctx(env, sp, err, errlen);
  smtpd_tls *t;
  if (ctx == NULL) return NULL;
  t = tls_new(env, ctx, sink);
  if (t == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  SSL_set_connect_state(t->ssl);
  if (sp->sni && sp->sni[0]) {
    int ip = tls_is_ip(sp->sni);
    if (!ip) SSL_set_tlsext_host_name(t->ssl, sp->sni);
    if (sp->verify) {
      if (ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), sp->sni)
             : !SSL_set1_host(t->ssl, sp->sni)) {
        tls_errstr(err, errlen, "cannot set the name to verify");
        smtpd_tls_free(t);
        return NULL;
      }
    }
  }
  SSL_set_verify(t->ssl, sp->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                 NULL);
  return t;
}

void smtpd_tls_free(smtpd_tls *t) {
  if (t == NULL) return;
  SSL_free(t->ssl);
  smtpd_tls_conf_unref(t->conf);
  free(t);
}

int smtpd_tls_ready(const smtpd_tls *t) {
  return t->ready;
}

const char *smtpd_tls_error(const smtpd_tls *t) {
  return t->err;
}

/* Why an SSL call failed, into t->err: SMTPD_TLS_ERROR or _CLOSED. */
static int tls_fail(smtpd_tls *t, int r, const char *what) {
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return SMTPD_TLS_CLOSED;
  }
  if (e == SSL_ERROR_SSL && !SSL_is_server(t->ssl) &&
      SSL_get_verify_result(t->ssl) != X509_V_OK) {
    snprintf(t->err, sizeof t->err, "%s: certificate verify failed: %s",
             what, X509_verify_cert_error_string(
                       SSL_get_verify_result(t->ssl)));
    ERR_clear_error();
    return SMTPD_TLS_ERROR;
  }
  tls_errstr(t->err, sizeof t->err, what);
  return SMTPD_TLS_ERROR;
}

int smtpd_tls_start(smtpd_tls *t) {
  int r;
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->ready = 1;
    return SMTPD_TLS_OK;
  }
  if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ) return SMTPD_TLS_OK;
  return tls_fail(t, r, "TLS handshake failed");
}

int smtpd_tls_input(smtpd_tls *t, const char *p, size_t n,
                    smtpd_tls_plain_fn fn, void *ctx) {
  char buf[16384];
  int r = SMTPD_TLS_OK;
  t->in_p = p;
  t->in_n = n;
  if (!t->ready) {
    r = smtpd_tls_start(t);
    if (r != SMTPD_TLS_OK || !t->ready) goto done;
  }
  for (;;) {
    size_t got = 0;
    int ok;
    ERR_clear_error();
    ok = SSL_read_ex(t->ssl, buf, sizeof buf, &got);
    if (!ok) {
      if (SSL_get_error(t->ssl, 0) == SSL_ERROR_WANT_READ) break;
      r = tls_fail(t, 0, "TLS read failed");
      break;
    }
    if (got && fn(ctx, buf, got)) break;
  }
done:
  t->in_p = NULL;
  t->in_n = 0;
  return r;
}

int smtpd_tls_write(smtpd_tls *t, const char *p, size_t n) {
  while (n > 0) {
    size_t done = 0;
    ERR_clear_error();
    if (!SSL_write_ex(t->ssl, p, n, &done)) {
      tls_fail(t, 0, "TLS write failed");
      return -1;
    }
    p += done;
    n -= done;
  }
  return 0;
}

void smtpd_tls_shutdown(smtpd_tls *t) {
  if (t->shut || !t->ready) return;
  t->shut = 1;
  ERR_clear_error();
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

static void tls_name_line(X509_NAME *nm, char *out, size_t n) {
  BIO *b = BIO_new(BIO_s_mem());
  int len;
  out[0] = '\0';
  if (b == NULL) return;
  if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253) >= 0) {
    len = BIO_read(b, out, (int)n - 1);
    if (len > 0) out[len] = '\0';
  }
  BIO_free(b);
}

void smtpd_tls_get_info(const smtpd_tls *t, smtpd_tls_info *in) {
  X509 *peer;
  memset(in, 0, sizeof *in);
  in->version = SSL_get_version(t->ssl);
  in->cipher = SSL_get_cipher_name(t->ssl);
  in->sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  in->resumed = SSL_session_reused(t->ssl);
  peer = SSL_get1_peer_certificate(t->ssl);
  if (peer) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    in->has_cert = 1;
    in->verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
    tls_name_line(X509_get_subject_name(peer), in->subject,
                  sizeof in->subject);
    tls_name_line(X509_get_issuer_name(peer), in->issuer, sizeof in->issuer);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
                              in->cn, sizeof in->cn);
    if (X509_digest(peer, EVP_sha256(), md, &mdlen)) {
      for (i = 0; i < mdlen && i < 32; i++)
        snprintf(in->fingerprint + 2 * i, 3, "%02x", md[i]);
    }
    X509_free(peer);
  }
  ERR_clear_error();
}

/* ---- helpers for AUTH --------------------------------------------------------- */

int smtpd_random_bytes(unsigned char *p, size_t n) {
  return RAND_bytes(p, (int)n) == 1 ? 0 : -1;
}

int smtpd_hmac_md5_hex(const char *key, size_t klen, const char *msg,
                       size_t mlen, char out[33]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0, i;
  if (HMAC(EVP_md5(), key, (int)klen, (const unsigned char *)msg, mlen, md,
           &n) == NULL || n != 16) {
    ERR_clear_error();
    return -1;
  }
  for (i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
  return 0;
}

int smtpd_const_eq(const char *a, size_t an, const char *b, size_t bn) {
  /* Compare against a itself when the lengths differ: the same work. */
  int same = an == bn;
  return CRYPTO_memcmp(a, same ? b : a, an) == 0 && same;
}
