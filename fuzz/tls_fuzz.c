/*
 * libFuzzer target: the TLS layer (csrc/tls/tls.c) and the STARTTLS/AUTH
 * parts of the session, with no libuv and no Lua.
 *
 * Byte 0 picks the mode and the session's options, byte 1 the piece size;
 * the rest is the client's bytes:
 *   mode 0  ciphertext: fed raw to a server-side TLS connection, whatever
 *           it decrypts goes to a session (a ClientHello parser's worst
 *           day, through our BIO);
 *   mode 1  plaintext through a real TLS connection: our client encrypts
 *           the bytes, our server decrypts them into a session with AUTH
 *           and STARTTLS on, its replies go back encrypted and must come
 *           out of the client as well-formed reply lines;
 *   mode 2  the session alone with STARTTLS/AUTH and their gates on, and
 *           every piece through the strict base64 decoder, which must
 *           round-trip exactly (decode, encode, compare).
 * Checked on every run: replies are well-formed, base64 round-trips, and
 * memory is freed (ASan/LSan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "smtp/smtp.h"
#include "tls/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static smtpd_tls_conf *conf;
static smtpd_tls_env *env;

/* A throwaway ECDSA certificate, written where the loader reads it. */
static void make_cert(const char *cert, const char *key) {
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  FILE *f;
  if (!pk || !x) abort();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pk);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  if (!X509_sign(x, pk, EVP_sha256())) abort();
  f = fopen(cert, "w");
  if (!f || !PEM_write_X509(f, x)) abort();
  fclose(f);
  f = fopen(key, "w");
  if (!f || !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL)) abort();
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pk);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char cert[64], key[64], err[300];
  smtpd_tls_pair pr;
  smtpd_tls_spec sp;
  (void)argc;
  (void)argv;
  snprintf(cert, sizeof cert, "/tmp/smtpd-fuzz-%d.crt", (int)getpid());
  snprintf(key, sizeof key, "/tmp/smtpd-fuzz-%d.key", (int)getpid());
  make_cert(cert, key);
  memset(&pr, 0, sizeof pr);
  memset(&sp, 0, sizeof sp);
  pr.cert[0] = cert;
  pr.key[0] = key;
  pr.n = 1;
  sp.pairs = &pr;
  sp.npairs = 1;
  env = smtpd_tls_env_new();
  conf = smtpd_tls_conf_new(&sp, err, sizeof err);
  unlink(cert);
  unlink(key);
  if (conf == NULL || env == NULL) {
    fprintf(stderr, "%s\n", err);
    abort();
  }
  return 0;
}

/* Every complete line is a reply line: ddd, ddd text or ddd-text, with
 * no CR, LF or NUL inside. */
static void check_replies(const char *p, size_t n, int partial_ok) {
  size_t i = 0;
  while (i < n) {
    const char *line = p + i, *crlf = NULL;
    size_t j;
    for (j = i; j + 1 < n; j++) {
      if (p[j] == '\r' && p[j + 1] == '\n') {
        crlf = p + j;
        break;
      }
    }
    if (crlf == NULL) {
      if (partial_ok) return;
      abort();
    }
    if (crlf - line < 3 || line[0] < '2' || line[0] > '5' ||
        line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9')
      abort();
    if (crlf - line > 3 && line[3] != ' ' && line[3] != '-') abort();
    for (j = 0; j < (size_t)(crlf - line); j++)
      if (line[j] == '\r' || line[j] == '\n' || line[j] == '\0') abort();
    i = (size_t)(crlf - p) + 2;
  }
}

static const char *on_message(smtpd_session *s, void *ctx) {
  (void)s;
  (void)ctx;
  return "250 OK";
}

static void session_open(smtpd_session *s, smtpd_buf *out, uint8_t opts) {
  if (smtpd_session_init(s, out, "fuzz.example", 12)) abort();
  s->tls_offer = opts & 4;
  s->tls_on = opts & 8;
  s->require_starttls = opts & 16;
  s->auth_required = opts & 32;
  s->auth_require_tls = opts & 64;
  s->auth_mechs = (opts & 128) ? NULL : "PLAIN LOGIN XOAUTH2";
  smtpd_session_sync(s);
}

/* Plaintext the server decrypted: run it through the session. */
typedef struct server_side {
  smtpd_session s;
  smtpd_buf replies;
} server_side;

static int to_session(void *ctx, const char *p, size_t n) {
  server_side *sv = ctx;
  if (sv->s.quit) return 0;
  if (smtpd_session_run(&sv->s, p, n, on_message, NULL)) abort();
  return 0;
}

static int collect(void *ctx, const char *p, size_t n) {
  return smtpd_buf_append(ctx, p, n) ? 1 : 0;
}

static void mode_raw(const uint8_t *d, size_t n, size_t piece, uint8_t o) {
  smtpd_buf wire = {NULL, 0, 0};
  server_side sv;
  smtpd_tls *t;
  size_t off;
  session_open(&sv.s, &sv.replies, o);
  memset(&sv.replies, 0, sizeof sv.replies);
  sv.s.out = &sv.replies;
  t = smtpd_tls_server(env, conf, &wire);
  if (t == NULL) abort();
  for (off = 0; off < n; off += piece) {
    size_t k = n - off < piece ? n - off : piece;
    if (smtpd_tls_input(t, (const char *)d + off, k, to_session, &sv) !=
        SMTPD_TLS_OK)
      break;
  }
  check_replies(sv.replies.p, sv.replies.len, 0);
  smtpd_tls_free(t);
  smtpd_session_free(&sv.s);
  smtpd_buf_free(&sv.replies);
  smtpd_buf_free(&wire);
}

/* Moves what one side wrote to the other until neither writes more. */
static void pump(smtpd_tls *c, smtpd_buf *c_out, smtpd_buf *plain,
                 smtpd_tls *s, smtpd_buf *s_out, server_side *sv) {
  int rounds = 0;
  while ((c_out->len || s_out->len) && rounds++ < 64) {
    if (c_out->len) {
      smtpd_buf tmp = *c_out;
      memset(c_out, 0, sizeof *c_out);
      if (smtpd_tls_input(s, tmp.p, tmp.len, to_session, sv) == SMTPD_TLS_ERROR)
        abort();
      smtpd_buf_free(&tmp);
      /* the session's replies, encrypted back */
      if (sv->replies.len && smtpd_tls_ready(s)) {
        check_replies(sv->replies.p, sv->replies.len, 0);
        if (smtpd_tls_write(s, sv->replies.p, sv->replies.len)) abort();
        sv->replies.len = 0;
      }
    }
    if (s_out->len) {
      smtpd_buf tmp = *s_out;
      memset(s_out, 0, sizeof *s_out);
      if (smtpd_tls_input(c, tmp.p, tmp.len, collect, plain) ==
          SMTPD_TLS_ERROR)
        abort();
      smtpd_buf_free(&tmp);
    }
  }
}

static void mode_tunnel(const uint8_t *d, size_t n, size_t piece,
                        uint8_t o) {
  smtpd_buf c_out = {NULL, 0, 0}, s_out = {NULL, 0, 0}, plain = {0, 0, 0};
  smtpd_tls_client_spec cs;
  server_side sv;
  smtpd_tls *c, *s;
  char err[200];
  size_t off;
  memset(&cs, 0, sizeof cs);
  session_open(&sv.s, &sv.replies, (uint8_t)(o | 8));   /* TLS is on */
  memset(&sv.replies, 0, sizeof sv.replies);
  sv.s.out = &sv.replies;
  s = smtpd_tls_server(env, conf, &s_out);
  c = smtpd_tls_client(env, &cs, &c_out, err, sizeof err);
  if (!s || !c) abort();
  if (smtpd_tls_start(c) != SMTPD_TLS_OK) abort();
  pump(c, &c_out, &plain, s, &s_out, &sv);
  if (!smtpd_tls_ready(c) || !smtpd_tls_ready(s)) abort();
  for (off = 0; off < n && !sv.s.quit; off += piece) {
    size_t k = n - off < piece ? n - off : piece;
    if (smtpd_tls_write(c, (const char *)d + off, k)) abort();
    pump(c, &c_out, &plain, s, &s_out, &sv);
  }
  check_replies(plain.p, plain.len, 0);
  smtpd_tls_free(c);
  smtpd_tls_free(s);
  smtpd_session_free(&sv.s);
  smtpd_buf_free(&sv.replies);
  smtpd_buf_free(&c_out);
  smtpd_buf_free(&s_out);
  smtpd_buf_free(&plain);
}

static void check_b64(const uint8_t *d, size_t n) {
  unsigned char *dec = malloc(n / 4 * 3 + 1);
  long k;
  if (dec == NULL) abort();
  k = smtpd_b64_decode((const char *)d, n, dec);
  if (k >= 0) {
    char *enc = malloc(((size_t)k + 2) / 3 * 4 + 1);
    size_t m;
    if (enc == NULL) abort();
    m = smtpd_b64_encode(dec, (size_t)k, enc);
    if (m != n || memcmp(enc, d, n) != 0) abort();   /* not canonical */
    free(enc);
  }
  free(dec);
}

static void mode_session(const uint8_t *d, size_t n, size_t piece,
                         uint8_t o) {
  smtpd_session s;
  smtpd_buf out = {NULL, 0, 0};
  size_t off;
  session_open(&s, &out, o);
  for (off = 0; off < n && !s.quit; off += piece) {
    size_t k = n - off < piece ? n - off : piece;
    check_b64(d + off, k);
    if (smtpd_session_run(&s, (const char *)d + off, k, on_message, NULL))
      abort();
  }
  check_replies(out.p, out.len, 0);
  smtpd_session_free(&s);
  smtpd_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t o;
  size_t piece;
  if (size < 2) return 0;
  o = data[0];
  piece = data[1] ? data[1] : 1;
  data += 2;
  size -= 2;
  switch (o & 3) {
  case 0: mode_raw(data, size, piece, o); break;
  case 1: mode_tunnel(data, size, piece, o); break;
  default: mode_session(data, size, piece, o); break;
  }
  return 0;
}
