/*
 * lua-smtpd: TLS over byte buffers (OpenSSL 3), with no socket, no libuv
 * and no Lua. The owner feeds the ciphertext it read and gets plaintext
 * back; what TLS wants to send (handshake records, encrypted replies,
 * alerts) is appended to the owner's sink buffer, which the owner writes
 * to its socket. The channel (server side), the relay client (client
 * side) and the fuzzers use it alike.
 */
#ifndef SMTPD_TLS_H
#define SMTPD_TLS_H

#include "base/base.h"

/* A server's certificates: a default and, for SNI, more by host name.
 * Reference counted: each connection holds the set it started with, so a
 * reload never touches a live connection. */
typedef struct smtpd_tls_conf smtpd_tls_conf;

typedef struct smtpd_tls_pair {
  const char *name;        /* SNI name ("*.example.org" matches one label);
                              NULL for the default */
  const char *cert[2];     /* PEM chain files: an RSA and an ECDSA one may */
  const char *key[2];      /* be given together */
  int n;
} smtpd_tls_pair;

typedef struct smtpd_tls_spec {
  const smtpd_tls_pair *pairs;   /* pairs[0] is the default */
  size_t npairs;
  const char *client_ca;         /* request client certificates signed by */
  int verify_client;             /* no valid client certificate: no TLS */
  const char *ciphers;           /* TLS 1.2 cipher list (NULL: OpenSSL's) */
  int min_version;               /* 12 or 13 */
} smtpd_tls_spec;

/* NULL with why in err. */
smtpd_tls_conf *smtpd_tls_conf_new(const smtpd_tls_spec *sp, char *err,
                                   size_t errlen);
void smtpd_tls_conf_ref(smtpd_tls_conf *c);
void smtpd_tls_conf_unref(smtpd_tls_conf *c);

/* What connections share and what must outlive every one of them: our
 * BIO method and the client contexts (one per CA file). A map owns one
 * and frees it after its last connection. */
typedef struct smtpd_tls_env smtpd_tls_env;

smtpd_tls_env *smtpd_tls_env_new(void);
void smtpd_tls_env_free(smtpd_tls_env *e);

/* One connection's TLS. */
typedef struct smtpd_tls smtpd_tls;

typedef struct smtpd_tls_client_spec {
  int verify;              /* check the certificate chain and the name */
  const char *ca;          /* PEM file of trusted CAs (NULL: the system's) */
  const char *sni;         /* server name sent and checked (NULL: none) */
  const char *cert;        /* a client certificate (PEM chain), or NULL */
  const char *key;
} smtpd_tls_client_spec;

smtpd_tls *smtpd_tls_server(smtpd_tls_env *env, smtpd_tls_conf *c,
                            smtpd_buf *sink);
/* Loads the client context sp asks for (its CAs, its certificate) into
 * env now, so that connections find it made: 0, or -1 with why. */
int smtpd_tls_client_preload(smtpd_tls_env *env,
                             const smtpd_tls_client_spec *sp, char *err,
                             size_t errlen);
smtpd_tls *smtpd_tls_client(smtpd_tls_env *env,
                            const smtpd_tls_client_spec *sp,
                            smtpd_buf *sink, char *err, size_t errlen);
void smtpd_tls_free(smtpd_tls *t);

enum {
  SMTPD_TLS_OK = 0,        /* all input used; more may come */
  SMTPD_TLS_CLOSED,        /* the peer ended TLS (close_notify) */
  SMTPD_TLS_ERROR          /* fatal: smtpd_tls_error says why */
};

/* Plaintext as it is decrypted; non-zero stops (the owner closes). */
typedef int (*smtpd_tls_plain_fn)(void *ctx, const char *p, size_t n);

/* Starts the client's handshake (its ClientHello goes to the sink). */
int smtpd_tls_start(smtpd_tls *t);
/* Feeds ciphertext: runs the handshake, then hands each piece of
 * plaintext to fn. */
int smtpd_tls_input(smtpd_tls *t, const char *p, size_t n,
                    smtpd_tls_plain_fn fn, void *ctx);
/* Encrypts plaintext into the sink; only once smtpd_tls_ready. */
int smtpd_tls_write(smtpd_tls *t, const char *p, size_t n);
/* Queues close_notify (once). */
void smtpd_tls_shutdown(smtpd_tls *t);
int smtpd_tls_ready(const smtpd_tls *t);
const char *smtpd_tls_error(const smtpd_tls *t);

typedef struct smtpd_tls_info {
  const char *version;     /* "TLSv1.3" */
  const char *cipher;
  const char *sni;         /* the name the client asked for, or NULL */
  char subject[256];       /* the peer certificate's, "" when none */
  char issuer[256];
  char cn[128];            /* its common name */
  char fingerprint[65];    /* SHA-256, lower-case hex */
  int has_cert;
  int verified;            /* the peer's certificate chain verified */
  int resumed;
} smtpd_tls_info;

void smtpd_tls_get_info(const smtpd_tls *t, smtpd_tls_info *info);

/* Helpers for AUTH. */
int smtpd_random_bytes(unsigned char *p, size_t n);
/* HMAC-MD5 (CRAM-MD5) as 32 lower-case hex digits and a NUL. */
int smtpd_hmac_md5_hex(const char *key, size_t klen, const char *msg,
                       size_t mlen, char out[33]);
/* Equal, in time that depends on the lengths only. */
int smtpd_const_eq(const char *a, size_t an, const char *b, size_t bn);

#endif
