/*
 * Mail authentication's C half for Lua (smtpd.spf):
 *
 *   core.spf_parse(record) -> {terms} | nil, err
 *     each term {kind = "all" | "include" | "a" | "mx" | "ptr" | "ip4" |
 *     "ip6" | "exists" | "redirect" | "exp" | "modifier", q = "+-~?",
 *     spec = string | nil, name = (a modifier's), cidr4 =, cidr6 =,
 *     addr = (ip4/ip6: the network, as text)}
 *   core.spf_expand(macro_string, ctx, exp, domain) -> string | nil, err
 *     ctx: {s =, l =, o =, d =, i =, p =, v =, h =, c =, r =, t =}
 *   core.ip_in(ip, network, prefix) -> boolean (an IPv4-mapped IPv6
 *     address is its IPv4 address; families that differ never match)
 *   core.ip_text(ip) -> the address as RFC 5952 writes it | nil
 *
 * and DKIM's (smtpd.dkim):
 *
 *   core.dkim_tags(s) -> {name = value}, {names in order} | nil, err
 *   core.dkim_fields(data) -> {{name = lower-case, raw = field}, ...},
 *     body_offset (1-based), extra (fields past the bound)
 *   core.dkim_canon_header(field, relaxed, crlf) -> string
 *   core.dkim_body_hash(data, offset, relaxed, alg, limit)
 *     -> base64 digest, canonical length, bytes hashed
 *   core.dkim_verify(alg, key_b64, data, sig_b64) -> true, bits |
 *     false, why, bits | nil, err (the key)
 *   core.dkim_sign(alg, pem, data) -> base64 signature | nil, err
 *   alg: "rsa-sha256", "rsa-sha1", "ed25519-sha256"
 *
 * and DMARC's:
 *
 *   core.psl_org_domain(name [, file]) -> the organizational domain (the
 *     registrable domain by the public suffix list) | nil (a public
 *     suffix itself); file: a list to load instead of the system's
 *   core.psl_info() -> where the list came from
 *   core.dmarc_parse(text) -> {p =, sp =, np =, pct =, adkim =, aspf =,
 *     rua = bool, ruf = bool, psd =} | nil, err
 *
 * and Authentication-Results':
 *
 *   core.authres_value(s [, max]) -> s as a token or a quoted string
 *   core.authres_id(field_value) -> the authserv-id | nil
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <libpsl.h>
#include <stdio.h>
#include <openssl/pem.h>

#include "auth/authres.h"
#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "auth/spf.h"
#include "core/glue.h"

static const char *const KINDS[] = {
  "", "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists",
  "redirect", "exp", "modifier"
};

static int spf_parse_l(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  char err[160];
  int i;
  /* A userdata, not malloc: nothing is lost if a push below raises. */
  spf_record *rec = lua_newuserdatauv(L, sizeof *rec, 0);
  if (spf_parse(text, len, rec, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, rec->n, 0);
  for (i = 0; i < rec->n; i++) {
    const spf_term *t = &rec->terms[i];
    char q[2] = {t->qualifier, '\0'};
    lua_createtable(L, 0, 6);
    lua_pushstring(L, KINDS[t->kind]);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, q);
    lua_setfield(L, -2, "q");
    if (t->spec && t->kind != SPF_IP4 && t->kind != SPF_IP6) {
      lua_pushlstring(L, t->spec, t->spec_len);
      lua_setfield(L, -2, "spec");
    }
    if (t->name) {
      lua_pushlstring(L, t->name, t->name_len);
      lua_setfield(L, -2, "name");
    }
    if (t->cidr4 >= 0) {
      lua_pushinteger(L, t->cidr4);
      lua_setfield(L, -2, "cidr4");
    }
    if (t->cidr6 >= 0) {
      lua_pushinteger(L, t->cidr6);
      lua_setfield(L, -2, "cidr6");
    }
    if (t->kind == SPF_IP4 || t->kind == SPF_IP6) {
      char buf[INET6_ADDRSTRLEN];
      inet_ntop(t->kind == SPF_IP4 ? AF_INET : AF_INET6, t->addr, buf,
                sizeof buf);
      lua_pushstring(L, buf);
      lua_setfield(L, -2, "addr");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const char *ctx_field(lua_State *L, int t, const char *k) {
  const char *v;
  lua_getfield(L, t, k);
  v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);          /* the context table keeps the string alive */
  return v;
}

static int spf_expand_l(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  spf_macro_ctx ctx;
  smtpd_buf out = {0};
  char err[160];
  int exp, domain, r;
  luaL_checktype(L, 2, LUA_TTABLE);
  exp = lua_toboolean(L, 3);
  domain = lua_toboolean(L, 4);
  ctx.s = ctx_field(L, 2, "s");
  ctx.l = ctx_field(L, 2, "l");
  ctx.o = ctx_field(L, 2, "o");
  ctx.d = ctx_field(L, 2, "d");
  ctx.i = ctx_field(L, 2, "i");
  ctx.p = ctx_field(L, 2, "p");
  ctx.v = ctx_field(L, 2, "v");
  ctx.h = ctx_field(L, 2, "h");
  ctx.c = ctx_field(L, 2, "c");
  ctx.r = ctx_field(L, 2, "r");
  ctx.t = ctx_field(L, 2, "t");
  r = spf_expand(s, len, &ctx, exp, domain, &out, err, sizeof err);
  if (r) {
    smtpd_buf_free(&out);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, out.p ? out.p : "", out.len);
  smtpd_buf_free(&out);
  return 1;
}

/* family (4 or 6) and the address bytes of text; 0 when it is none. */
static int ip_bytes(const char *text, unsigned char *a) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0xff, 0xff};
  if (inet_pton(AF_INET, text, a) == 1) return 4;
  if (inet_pton(AF_INET6, text, a) == 1) {
    if (memcmp(a, mapped, 12) == 0) {
      memmove(a, a + 12, 4);
      return 4;
    }
    return 6;
  }
  return 0;
}

static int ip_in_l(lua_State *L) {
  unsigned char a[16], b[16];
  int fa = ip_bytes(luaL_checkstring(L, 1), a);
  const char *net = luaL_checkstring(L, 2);
  int fb, bits, i;
  lua_Integer prefix;
  /* A network written as IPv4-mapped stays IPv6 (ip6:::ffff:1.2.3.4). */
  if (inet_pton(AF_INET, net, b) == 1) fb = 4;
  else if (inet_pton(AF_INET6, net, b) == 1) fb = 6;
  else return luaL_error(L, "ip_in: not an address: %s", net);
  bits = fb == 4 ? 32 : 128;
  prefix = luaL_optinteger(L, 3, bits);
  if (prefix < 0 || prefix > bits) return luaL_error(L, "ip_in: bad prefix");
  if (fa != fb) {
    lua_pushboolean(L, 0);
    return 1;
  }
  for (i = 0; i < (int)prefix; i++) {
    int m = 0x80 >> (i & 7);
    if ((a[i >> 3] & m) != (b[i >> 3] & m)) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int ip_text_l(lua_State *L) {
  unsigned char a[16];
  char buf[INET6_ADDRSTRLEN];
  const char *ip = luaL_checkstring(L, 1);
  if (inet_pton(AF_INET, ip, a) == 1) inet_ntop(AF_INET, a, buf, sizeof buf);
  else if (inet_pton(AF_INET6, ip, a) == 1) inet_ntop(AF_INET6, a, buf, sizeof buf);
  else return 0;
  lua_pushstring(L, buf);
  return 1;
}

/* ---- DKIM --------------------------------------------------------------------- */

static int dkim_tags_l(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  dkim_tag tags[DKIM_MAX_TAGS];
  char err[96];
  int n = dkim_tags(s, len, tags, DKIM_MAX_TAGS, err, sizeof err), i;
  if (n < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, n);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_pushlstring(L, tags[i].name, tags[i].name_len);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, i + 1);
    lua_pushlstring(L, tags[i].value, tags[i].value_len);
    lua_rawset(L, -4);
  }
  return 2;
}

static int dkim_fields_l(lua_State *L) {
  size_t len, body;
  const char *d = luaL_checklstring(L, 1, &len);
  int extra, n, i;
  dkim_field *f = lua_newuserdatauv(L, sizeof *f * DKIM_MAX_FIELDS, 0);
  n = dkim_fields(d, len, f, DKIM_MAX_FIELDS, &extra, &body);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    size_t k;
    char name[128];
    size_t nl = f[i].name_len < sizeof name ? f[i].name_len : sizeof name - 1;
    for (k = 0; k < nl; k++) {
      char c = d[f[i].start + k];
      name[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, name, nl);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, d + f[i].start, f[i].len);
    lua_setfield(L, -2, "raw");
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, (lua_Integer)body + 1);
  lua_pushinteger(L, extra);
  return 3;
}

static int dkim_canon_header_l(lua_State *L) {
  size_t len;
  const char *f = luaL_checklstring(L, 1, &len);
  smtpd_buf out = {0};
  if (dkim_canon_header(f, len, lua_toboolean(L, 2), lua_toboolean(L, 3),
                        &out)) {
    smtpd_buf_free(&out);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, out.p ? out.p : "", out.len);
  smtpd_buf_free(&out);
  return 1;
}

static dkim_alg check_alg(lua_State *L, int i) {
  static const char *const names[] = {"rsa-sha256", "rsa-sha1",
                                      "ed25519-sha256", NULL};
  return (dkim_alg)(luaL_checkoption(L, i, NULL, names) + 1);
}

static void push_b64(lua_State *L, const unsigned char *p, size_t n) {
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4 + 1);
  luaL_pushresultsize(&b, smtpd_b64_encode(p, n, out));
}

static int dkim_body_hash_l(lua_State *L) {
  size_t len;
  const char *d = luaL_checklstring(L, 1, &len);
  lua_Integer off = luaL_checkinteger(L, 2);
  int relaxed = lua_toboolean(L, 3);
  dkim_alg alg = check_alg(L, 4);
  lua_Integer limit = luaL_optinteger(L, 5, -1);
  dkim_body b;
  unsigned char md[EVP_MAX_MD_SIZE];
  int n;
  if (off < 1) off = 1;
  if ((size_t)off > len + 1) off = (lua_Integer)len + 1;
  if (dkim_body_init(&b, relaxed, alg == DKIM_RSA_SHA1 ? EVP_sha1() :
                     EVP_sha256(), limit < 0 ? -1 : (long long)limit))
    return luaL_error(L, "out of memory");
  dkim_body_update(&b, d + off - 1, len - (size_t)(off - 1));
  n = dkim_body_final(&b, md);
  if (n < 0) {
    dkim_body_free(&b);
    return luaL_error(L, "dkim: the body hash failed");
  }
  push_b64(L, md, (size_t)n);
  lua_pushinteger(L, (lua_Integer)b.total);
  lua_pushinteger(L, (lua_Integer)b.hashed);
  return 3;
}

/* Decodes base64 with whitespace in it: a malloc'd buffer, or NULL. */
static unsigned char *b64_ws(const char *s, size_t len, long *out_len) {
  char *clean = malloc(len + 1);
  unsigned char *out;
  size_t n;
  if (clean == NULL) return NULL;
  n = dkim_strip_ws(s, len, clean);
  out = malloc(n / 4 * 3 + 3);
  if (out == NULL) {
    free(clean);
    return NULL;
  }
  *out_len = smtpd_b64_decode(clean, n, out);
  free(clean);
  if (*out_len < 0) {
    free(out);
    return NULL;
  }
  return out;
}

/* Public keys decoded from their records, kept: OpenSSL 3's decoders
 * cost more than a verification. A few dozen, the oldest replaced. */
#define KEY_CACHE 64
static struct {
  char *b64;
  dkim_alg alg;
  EVP_PKEY *key;
  int bits;
} key_cache[KEY_CACHE];
static int key_next;

static EVP_PKEY *cached_key(dkim_alg alg, const char *kb, size_t klen, int *bits,
                            char *err, size_t errlen) {
  int i;
  long kn;
  unsigned char *der;
  EVP_PKEY *pk;
  for (i = 0; i < KEY_CACHE; i++)
    if (key_cache[i].key && key_cache[i].alg == alg &&
        strlen(key_cache[i].b64) == klen && memcmp(key_cache[i].b64, kb, klen) == 0) {
      *bits = key_cache[i].bits;
      return key_cache[i].key;
    }
  der = b64_ws(kb, klen, &kn);
  if (der == NULL) {
    snprintf(err, errlen, "the key is not base64");
    return NULL;
  }
  pk = dkim_public_key(alg, der, (size_t)kn, bits, err, errlen);
  free(der);
  if (pk == NULL || klen > 16384) return pk;   /* huge keys: not kept */
  i = key_next;
  key_next = (key_next + 1) % KEY_CACHE;
  EVP_PKEY_free(key_cache[i].key);
  free(key_cache[i].b64);
  key_cache[i].b64 = malloc(klen + 1);
  if (key_cache[i].b64 == NULL) {
    key_cache[i].key = NULL;
    return pk;                                  /* the caller frees it */
  }
  memcpy(key_cache[i].b64, kb, klen);
  key_cache[i].b64[klen] = '\0';
  key_cache[i].alg = alg;
  key_cache[i].key = pk;
  key_cache[i].bits = *bits;
  return pk;
}

static int is_cached(EVP_PKEY *pk) {
  int i;
  for (i = 0; i < KEY_CACHE; i++)
    if (key_cache[i].key == pk) return 1;
  return 0;
}

static int dkim_verify_l(lua_State *L) {
  dkim_alg alg = check_alg(L, 1);
  size_t klen, dlen, slen;
  const char *kb = luaL_checklstring(L, 2, &klen);
  const char *data = luaL_checklstring(L, 3, &dlen);
  const char *sb = luaL_checklstring(L, 4, &slen);
  long sn;
  unsigned char *sig;
  EVP_PKEY *pk;
  char err[96];
  int bits = 0, r;
  pk = cached_key(alg, kb, klen, &bits, err, sizeof err);
  if (pk == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  sig = b64_ws(sb, slen, &sn);
  if (sig == NULL) {
    if (!is_cached(pk)) EVP_PKEY_free(pk);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "the signature is not base64");
    lua_pushinteger(L, bits);
    return 3;
  }
  r = dkim_verify(alg, pk, (const unsigned char *)data, dlen, sig, (size_t)sn);
  free(sig);
  if (!is_cached(pk)) EVP_PKEY_free(pk);
  if (r == 1) {
    lua_pushboolean(L, 1);
    lua_pushinteger(L, bits);
    return 2;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, r == 0 ? "the signature does not verify" :
                 "the signature could not be checked");
  lua_pushinteger(L, bits);
  return 3;
}

static int dkim_sign_l(lua_State *L) {
  dkim_alg alg = check_alg(L, 1);
  size_t plen, dlen;
  const char *pem = luaL_checklstring(L, 2, &plen);
  const char *data = luaL_checklstring(L, 3, &dlen);
  BIO *bio = BIO_new_mem_buf(pem, (int)plen);
  EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  unsigned char sig[1024];
  int n, id;
  BIO_free(bio);
  if (k == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "the private key does not read (PEM)");
    return 2;
  }
  id = EVP_PKEY_get_base_id(k);
  if ((alg == DKIM_ED25519_SHA256) != (id == EVP_PKEY_ED25519) ||
      (alg != DKIM_ED25519_SHA256 && id != EVP_PKEY_RSA)) {
    EVP_PKEY_free(k);
    lua_pushnil(L);
    lua_pushliteral(L, "the key is not of the algorithm's kind");
    return 2;
  }
  n = dkim_sign(alg, k, (const unsigned char *)data, dlen, sig, sizeof sig);
  EVP_PKEY_free(k);
  if (n < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "signing failed");
    return 2;
  }
  push_b64(L, sig, (size_t)n);
  return 1;
}

/* The public key of a PEM private key, as a key record's p= wants it. */
static int dkim_public_l(lua_State *L) {
  size_t plen;
  const char *pem = luaL_checklstring(L, 1, &plen);
  BIO *bio = BIO_new_mem_buf(pem, (int)plen);
  EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  unsigned char buf[2048], *p = buf;
  size_t n = sizeof buf;
  int len;
  BIO_free(bio);
  if (k == NULL) return luaL_error(L, "dkim: the private key does not read");
  if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
    if (EVP_PKEY_get_raw_public_key(k, buf, &n) != 1) n = 0;
    len = (int)n;
  } else {
    len = i2d_PUBKEY(k, NULL) <= (int)sizeof buf ? i2d_PUBKEY(k, &p) : -1;
  }
  EVP_PKEY_free(k);
  if (len <= 0) return luaL_error(L, "dkim: no public key");
  push_b64(L, buf, (size_t)len);
  return 1;
}

/* ---- DKIM body hashes while a channel's data arrives ------------------------ */

/* The stream of a channel, made when first needed; NULL without memory. */
static dkim_stream *channel_stream(smtpd_channel *ch) {
  if (ch->dkim == NULL) ch->dkim = calloc(1, sizeof *ch->dkim);
  if (ch->dkim && ch->dkim_gen != ch->s.rset_gen) {
    dkim_stream_reset(ch->dkim);           /* RSET, HELO, EHLO: a new one */
    ch->dkim_gen = ch->s.rset_gen;
  }
  return ch->dkim;
}

void smtpd_dkim_stream_feed_channel(smtpd_channel *ch) {
  const smtpd_buf *d = &ch->s.parser.data;
  dkim_stream *st;
  if (d->len == 0 && ch->dkim == NULL) return;
  st = channel_stream(ch);
  if (st && !ch->s.parser.data_over) dkim_stream_feed(st, d->p, d->len);
}

void smtpd_dkim_stream_finish_channel(smtpd_channel *ch) {
  const smtpd_buf *d = &ch->s.parser.data;
  dkim_stream *st = channel_stream(ch);
  if (st == NULL) return;
  if (!dkim_stream_finish(st, d->p ? d->p : "", d->len)) {
    dkim_stream_reset(st);
    st->state = 3;                         /* nothing to give */
  }
}

int smtpd_dkim_stream_push(lua_State *L, smtpd_channel *ch) {
  dkim_stream *st = ch->dkim;
  int i, pushed = 0;
  if (st && st->state == 1) {
    lua_createtable(L, 0, st->n);
    for (i = 0; i < st->n; i++) {
      const dkim_stream_hash *h = &st->h[i];
      char key[64];
      if (h->limit < 0)
        snprintf(key, sizeof key, "%s %s nil", h->relaxed ? "relaxed" : "simple",
                 h->sha1 ? "rsa-sha1" : "rsa-sha256");
      else
        snprintf(key, sizeof key, "%s %s %lld", h->relaxed ? "relaxed" : "simple",
                 h->sha1 ? "rsa-sha1" : "rsa-sha256", h->limit);
      lua_createtable(L, 0, 3);
      push_b64(L, h->digest, (size_t)h->dlen);
      lua_setfield(L, -2, "digest");
      lua_pushinteger(L, (lua_Integer)h->b.total);
      lua_setfield(L, -2, "total");
      lua_pushinteger(L, (lua_Integer)h->b.hashed);
      lua_setfield(L, -2, "hashed");
      lua_setfield(L, -2, key);
    }
    pushed = 1;
  }
  if (st) dkim_stream_reset(st);
  return pushed;
}

void smtpd_dkim_stream_free(smtpd_channel *ch) {
  if (ch->dkim == NULL) return;
  dkim_stream_reset(ch->dkim);
  free(ch->dkim);
  ch->dkim = NULL;
}

/* ---- DMARC records ------------------------------------------------------------ */

static const char *const POLICY[] = {NULL, "none", "quarantine", "reject"};

static int dmarc_parse_l(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  dmarc_record r;
  char err[96];
  char m[2] = {0, 0};
  if (dmarc_parse(text, len, &r, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, 9);
  lua_pushstring(L, POLICY[r.p]);
  lua_setfield(L, -2, "p");
  if (r.sp) {
    lua_pushstring(L, POLICY[r.sp]);
    lua_setfield(L, -2, "sp");
  }
  if (r.np) {
    lua_pushstring(L, POLICY[r.np]);
    lua_setfield(L, -2, "np");
  }
  lua_pushinteger(L, r.pct);
  lua_setfield(L, -2, "pct");
  m[0] = r.adkim;
  lua_pushstring(L, m);
  lua_setfield(L, -2, "adkim");
  m[0] = r.aspf;
  lua_pushstring(L, m);
  lua_setfield(L, -2, "aspf");
  lua_pushboolean(L, r.has_rua);
  lua_setfield(L, -2, "rua");
  lua_pushboolean(L, r.has_ruf);
  lua_setfield(L, -2, "ruf");
  if (r.psd) {
    m[0] = r.psd;
    lua_pushstring(L, m);
    lua_setfield(L, -2, "psd");
  }
  return 1;
}

/* ---- the public suffix list (DMARC's organizational domains) -------------- */

static const psl_ctx_t *psl;
static psl_ctx_t *psl_loaded;
static char psl_source[256];

static const psl_ctx_t *psl_get(lua_State *L, const char *file) {
  if (file) {
    psl_ctx_t *p = psl_load_file(file);
    if (p == NULL) luaL_error(L, "psl: cannot load %s", file);
    psl_free(psl_loaded);
    psl = psl_loaded = p;
    snprintf(psl_source, sizeof psl_source, "%s", file);
    return psl;
  }
  if (psl == NULL) {
    /* Debian's publicsuffix package, else what libpsl was built with */
    psl = psl_loaded = psl_latest(NULL);
    if (psl) {
      snprintf(psl_source, sizeof psl_source, "%s", "the system's list");
    } else {
      psl = psl_builtin();
      snprintf(psl_source, sizeof psl_source, "%s", "libpsl's built-in list");
    }
    if (psl == NULL) luaL_error(L, "psl: no public suffix list");
  }
  return psl;
}

static int psl_org_domain_l(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *file = luaL_optstring(L, 2, NULL);
  const psl_ctx_t *p = psl_get(L, file);
  const char *r;
  char buf[256];
  size_t n = strlen(name), i;
  if (n == 0 || n >= sizeof buf) return 0;
  for (i = 0; i < n; i++) {
    char c = name[i];
    buf[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  if (buf[n - 1] == '.') n--;
  buf[n] = '\0';
  r = psl_registrable_domain(p, buf);
  if (r == NULL) return 0;
  lua_pushstring(L, r);
  return 1;
}

static int psl_info_l(lua_State *L) {
  psl_get(L, NULL);
  lua_pushstring(L, psl_source);
  return 1;
}

/* ---- Authentication-Results ------------------------------------------------ */

static int authres_value_l(lua_State *L) {
  size_t n;
  const char *v = luaL_checklstring(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, 256);
  smtpd_buf out = {0};
  if (max < 1) max = 1;
  if (authres_value(&out, v, n, (size_t)max)) {
    smtpd_buf_free(&out);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, out.p, out.len);
  smtpd_buf_free(&out);
  return 1;
}

static int authres_id_l(lua_State *L) {
  size_t n, st, len;
  const char *v = luaL_checklstring(L, 1, &n);
  if (authres_id(v, n, &st, &len)) return 0;
  lua_pushlstring(L, v + st, len);
  return 1;
}

/* The key cache and the public suffix list go with the Lua state (before
 * the core's code is unloaded). */
static int auth_caches_gc(lua_State *L) {
  int i;
  (void)L;
  for (i = 0; i < KEY_CACHE; i++) {
    EVP_PKEY_free(key_cache[i].key);
    free(key_cache[i].b64);
    key_cache[i].key = NULL;
    key_cache[i].b64 = NULL;
  }
  psl_free(psl_loaded);
  psl_loaded = NULL;
  psl = NULL;
  return 0;
}

void smtpd_open_auth(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"spf_parse", spf_parse_l}, {"spf_expand", spf_expand_l},
    {"ip_in", ip_in_l}, {"ip_text", ip_text_l},
    {"dkim_tags", dkim_tags_l}, {"dkim_fields", dkim_fields_l},
    {"dkim_canon_header", dkim_canon_header_l},
    {"dkim_body_hash", dkim_body_hash_l}, {"dkim_verify", dkim_verify_l},
    {"dkim_sign", dkim_sign_l}, {"dkim_public_key", dkim_public_l},
    {"psl_org_domain", psl_org_domain_l}, {"psl_info", psl_info_l},
    {"authres_value", authres_value_l}, {"authres_id", authres_id_l},
    {"dmarc_parse", dmarc_parse_l},
    {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
  smtpd_on_close(L, "smtpd.authcaches", auth_caches_gc);
}
