/*
 * TLS and AUTH as Lua sees them: the tls = {...} option table, a
 * connection's TLS facts, and the helpers the AUTH driver
 * (lua/smtpd/auth.lua) and scripts use:
 *
 *   core.b64encode(s)  core.b64decode(s) -> s | nil (strict)
 *   core.hmac_md5_hex(key, msg)  core.random(n)  core.compare_digest(a, b)
 */
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"

/* ---- the tls = {...} options (described in core/opts.c) ------------- */

/* cert or key: a PEM file, or a list of two (an RSA and an ECDSA one). */
static void tls_files_read(lua_State *L, int idx, void *at,
                           const char *name) {
  smtpd_tls_files *f = at;
  int t = lua_type(L, idx);
  memset(f, 0, sizeof *f);
  if (t == LUA_TNIL) return;
  if (t == LUA_TSTRING) {
    f->v[0] = lua_tostring(L, idx);
    f->n = 1;
    return;
  }
  if (t == LUA_TTABLE) {
    lua_Integer i, len = luaL_len(L, idx);
    if (len >= 1 && len <= 2) {
      for (i = 1; i <= len; i++) {
        if (lua_geti(L, idx, i) != LUA_TSTRING) break;
        f->v[f->n++] = lua_tostring(L, -1);   /* the table keeps it alive */
        lua_pop(L, 1);
      }
      if (f->n == len) return;
    }
  }
  luaL_error(L, "%s must be a PEM file name or a list of two (an RSA and "
             "an ECDSA one)", name);
}

static void tls_files_push(lua_State *L, const void *at) {
  const smtpd_tls_files *f = at;
  int i;
  if (f->n == 0) {
    lua_pushnil(L);
    return;
  }
  if (f->n == 1) {
    lua_pushstring(L, f->v[0]);
    return;
  }
  lua_createtable(L, f->n, 0);
  for (i = 0; i < f->n; i++) {
    lua_pushstring(L, f->v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

const smtpd_optcustom smtpd_tls_files_opt = {tls_files_read, tls_files_push};

/* One {cert =, key =} pair (the server's, or one of SNI's). */
static void tls_pair_read(lua_State *L, int t, const char *prefix,
                          smtpd_tls_pair *pr) {
  char what[300];
  smtpd_tls_files c, k;
  t = lua_absindex(L, t);
  lua_getfield(L, t, "cert");
  lua_getfield(L, t, "key");
  if (lua_isnil(L, -2) || lua_isnil(L, -1))
    luaL_error(L, "%s needs both cert and key", prefix);
  snprintf(what, sizeof what, "%.280s.cert", prefix);
  tls_files_read(L, lua_gettop(L) - 1, &c, what);
  snprintf(what, sizeof what, "%.280s.key", prefix);
  tls_files_read(L, lua_gettop(L), &k, what);
  if (c.n != k.n) luaL_error(L, "%s: as many keys as certificates", prefix);
  pr->cert[0] = c.v[0];
  pr->cert[1] = c.v[1];
  pr->key[0] = k.v[0];
  pr->key[1] = k.v[1];
  pr->n = c.n;
  lua_pop(L, 2);
}

/* sni = {["host"] = {cert =, key =}, ...}: pairs in scratch. */
static void tls_sni_read(lua_State *L, int idx, void *at, const char *name) {
  smtpd_tls_sni *sni = at;
  size_t n = 0;
  sni->pairs = NULL;
  sni->n = 0;
  if (lua_isnil(L, idx)) return;
  if (!lua_istable(L, idx))
    luaL_error(L, "%s must be a table of host name -> {cert=, key=}", name);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n++;
    lua_pop(L, 1);
  }
  sni->pairs = smtpd_opts_scratch(L, n * sizeof *sni->pairs);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    char what[300];
    const char *host;
    if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
      luaL_error(L, "%s must be a table of host name -> {cert=, key=}",
                 name);
    host = lua_tostring(L, -2);
    snprintf(what, sizeof what, "%s[\"%.200s\"]", name, host);
    tls_pair_read(L, -1, what, &sni->pairs[sni->n]);
    sni->pairs[sni->n++].name = host;
    lua_pop(L, 1);
  }
}

static void tls_sni_push(lua_State *L, const void *at) {
  const smtpd_tls_sni *sni = at;
  size_t i;
  if (sni->n == 0) {
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, 0, (int)sni->n);
  for (i = 0; i < sni->n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, sni->pairs[i].cert[0]);
    lua_setfield(L, -2, "cert");
    lua_pushstring(L, sni->pairs[i].key[0]);
    lua_setfield(L, -2, "key");
    lua_setfield(L, -2, sni->pairs[i].name);
  }
}

const smtpd_optcustom smtpd_tls_sni_opt = {tls_sni_read, tls_sni_push};

/* The spec of the tls options conf read (core/opts.c: a server's tls):
 * raises when something is missing or contradicts. Pairs are scratch. */
void smtpd_tls_spec_from(lua_State *L, const smtpd_tls_opts *o,
                         smtpd_tls_spec *sp) {
  smtpd_tls_pair *pairs;
  size_t i;
  memset(sp, 0, sizeof *sp);
  if (o->cert.n == 0 || o->key.n == 0)
    luaL_error(L, "tls needs both cert and key");
  if (o->cert.n != o->key.n)
    luaL_error(L, "tls: as many keys as certificates");
  if (o->verify_client && !o->client_ca)
    luaL_error(L, "tls.verify_client needs tls.client_ca");
  pairs = smtpd_opts_scratch(L, (o->sni.n + 1) * sizeof *pairs);
  pairs[0].cert[0] = o->cert.v[0];
  pairs[0].cert[1] = o->cert.v[1];
  pairs[0].key[0] = o->key.v[0];
  pairs[0].key[1] = o->key.v[1];
  pairs[0].n = o->cert.n;
  for (i = 0; i < o->sni.n; i++) pairs[i + 1] = o->sni.pairs[i];
  sp->pairs = pairs;
  sp->npairs = o->sni.n + 1;
  sp->client_ca = o->client_ca;
  sp->verify_client = o->verify_client;
  sp->ciphers = o->ciphers;
  sp->min_version = o->min_version >= 3 ? (o->min_version == 3 ? 12 : 13)
                  : o->min_version == 2 ? 13 : 12;
}

smtpd_tls_conf *smtpd_tls_read(lua_State *L, int idx, int *implicit,
                               uint64_t *handshake_ms, char *err,
                               size_t errlen) {
  smtpd_tls_opts o;
  smtpd_tls_spec sp;
  smtpd_tls_conf *c;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) luaL_error(L, "tls must be a table");
  memset(&o, 0, sizeof o);
  smtpd_opts_read_table(L, idx, smtpd_tls_optdefs, &o, "tls");
  smtpd_tls_spec_from(L, &o, &sp);
  *implicit = o.implicit;
  *handshake_ms = o.handshake_ms;
  c = smtpd_tls_conf_new(&sp, err, errlen);
  smtpd_opts_scratch_release(L);
  return c;
}

/* ---- a connection's TLS facts -------------------------------------------- */

void smtpd_push_tls(lua_State *L, smtpd_channel *ch) {
  smtpd_tls_info in;
  if (ch->tls == NULL || !smtpd_tls_ready(ch->tls)) {
    lua_pushnil(L);
    return;
  }
  smtpd_tls_get_info(ch->tls, &in);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, in.version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, in.cipher ? in.cipher : "");
  lua_setfield(L, -2, "cipher");
  if (in.sni) {
    lua_pushstring(L, in.sni);
    lua_setfield(L, -2, "sni");
  }
  lua_pushboolean(L, in.resumed);
  lua_setfield(L, -2, "resumed");
  if (in.has_cert) {
    lua_pushstring(L, in.subject);
    lua_setfield(L, -2, "peer_subject");
    lua_pushstring(L, in.issuer);
    lua_setfield(L, -2, "peer_issuer");
    lua_pushstring(L, in.cn);
    lua_setfield(L, -2, "peer_cn");
    lua_pushstring(L, in.fingerprint);
    lua_setfield(L, -2, "peer_fingerprint");
    lua_pushboolean(L, in.verified);
    lua_setfield(L, -2, "peer_verified");
  }
}

/* ---- helpers --------------------------------------------------------------- */

static int tls_b64encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4 + 1);
  luaL_pushresultsize(&b, smtpd_b64_encode((const unsigned char *)s, n,
                                           out));
  return 1;
}

static int tls_b64decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b,
                                                          n / 4 * 3 + 1);
  long k = smtpd_b64_decode(s, n, out);
  if (k < 0) {
    lua_pushnil(L);
    return 1;
  }
  luaL_pushresultsize(&b, (size_t)k);
  return 1;
}

static int tls_hmac_md5_hex(lua_State *L) {
  size_t kn, mn;
  const char *k = luaL_checklstring(L, 1, &kn);
  const char *m = luaL_checklstring(L, 2, &mn);
  char out[33];
  if (smtpd_hmac_md5_hex(k, kn, m, mn, out))
    return luaL_error(L, "HMAC-MD5 is not available");
  lua_pushlstring(L, out, 32);
  return 1;
}

static int tls_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[256];
  luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof buf, 1, "1..256");
  if (smtpd_random_bytes(buf, (size_t)n))
    return luaL_error(L, "no random bytes");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

/* compare_digest(a, b): equality of two strings in time that does not
 * depend on where they differ (for secrets, tokens, digests). */
static int tls_compare_digest(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, smtpd_const_eq(a, an, b, bn));
  return 1;
}

void smtpd_open_tls(lua_State *L) {
  static const luaL_Reg f[] = {
    {"b64encode", tls_b64encode}, {"b64decode", tls_b64decode},
    {"hmac_md5_hex", tls_hmac_md5_hex}, {"random", tls_random},
    {"compare_digest", tls_compare_digest}, {NULL, NULL}
  };
  luaL_setfuncs(L, f, 0);
}
