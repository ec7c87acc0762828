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

static const char *const tls_keys[] = {
  "cert", "key", "implicit", "sni", "client_ca", "verify_client",
  "handshake_timeout", "ciphers", "min_version", NULL
};

#define TLS_HANDSHAKE_DEFAULT_MS 30000

/* The strings of value at idx (a string or a list of one or two) into
 * v; their count. Raises "tls.<what> ...". */
static int tls_files(lua_State *L, int idx, const char *what,
                     const char *v[2]) {
  int t = lua_type(L, idx), n = 0;
  if (t == LUA_TSTRING) {
    v[0] = lua_tostring(L, idx);
    return 1;
  }
  if (t == LUA_TTABLE) {
    lua_Integer i, len = luaL_len(L, idx);
    if (len >= 1 && len <= 2) {
      for (i = 1; i <= len; i++) {
        if (lua_geti(L, idx, i) != LUA_TSTRING) break;
        v[n++] = lua_tostring(L, -1);   /* the table keeps it alive */
        lua_pop(L, 1);
      }
      if (n == len) return n;
    }
  }
  return luaL_error(L, "%s must be a PEM file name or a list of two "
                    "(an RSA and an ECDSA one)", what);
}

static void tls_pair(lua_State *L, int t, const char *prefix,
                     smtpd_tls_pair *pr) {
  char what[300];
  int nc, nk;
  t = lua_absindex(L, t);
  lua_getfield(L, t, "cert");
  lua_getfield(L, t, "key");
  if (lua_isnil(L, -2) || lua_isnil(L, -1))
    luaL_error(L, "%s needs both cert and key", prefix);
  snprintf(what, sizeof what, "%s.cert", prefix);
  nc = tls_files(L, -2, what, pr->cert);
  snprintf(what, sizeof what, "%s.key", prefix);
  nk = tls_files(L, -1, what, pr->key);
  if (nc != nk) luaL_error(L, "%s: as many keys as certificates", prefix);
  pr->n = nc;
  lua_pop(L, 2);
}

void smtpd_tls_read_spec(lua_State *L, int idx, smtpd_tls_spec *spec,
                         int *implicit, uint64_t *handshake_ms) {
  smtpd_tls_spec sp;
  smtpd_tls_pair *pairs;
  size_t n = 1;
  int t;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) luaL_error(L, "tls must be a table");
  memset(&sp, 0, sizeof sp);
  /* Unknown keys are refused by name. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int i, known = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      for (i = 0; tls_keys[i]; i++)
        if (strcmp(lua_tostring(L, -2), tls_keys[i]) == 0) known = 1;
    }
    if (!known)
      luaL_error(L, "unknown tls option %s", lua_type(L, -2) == LUA_TSTRING ?
                 lua_pushfstring(L, "\"%s\"", lua_tostring(L, -2)) :
                 luaL_typename(L, -2));
    lua_pop(L, 1);
  }
  t = lua_getfield(L, idx, "sni");
  if (t != LUA_TNIL && t != LUA_TTABLE)
    luaL_error(L, "tls.sni must be a table of host name -> {cert=, key=}");
  if (t == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      n++;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  /* Garbage collected scratch: an error below leaks nothing. */
  pairs = smtpd_opts_scratch(L, n * sizeof *pairs);
  tls_pair(L, idx, "tls", &pairs[0]);
  n = 1;
  if (lua_getfield(L, idx, "sni") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      char what[300];
      const char *name;
      if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
        luaL_error(L, "tls.sni must be a table of host name -> "
                   "{cert=, key=}");
      name = lua_tostring(L, -2);
      snprintf(what, sizeof what, "tls.sni[\"%.200s\"]", name);
      tls_pair(L, -1, what, &pairs[n]);
      pairs[n++].name = name;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  sp.pairs = pairs;
  sp.npairs = n;
  t = lua_getfield(L, idx, "client_ca");
  if (t != LUA_TNIL && t != LUA_TSTRING)
    luaL_error(L, "tls.client_ca must be a PEM file name");
  sp.client_ca = lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "verify_client");
  sp.verify_client = lua_toboolean(L, -1);
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "tls.verify_client must be true or false");
  lua_pop(L, 1);
  if (sp.verify_client && !sp.client_ca)
    luaL_error(L, "tls.verify_client needs tls.client_ca");
  t = lua_getfield(L, idx, "ciphers");
  if (t != LUA_TNIL && t != LUA_TSTRING)
    luaL_error(L, "tls.ciphers must be a string");
  sp.ciphers = lua_tostring(L, -1);
  lua_pop(L, 1);
  t = lua_getfield(L, idx, "min_version");
  sp.min_version = 12;
  if (t != LUA_TNIL) {
    const char *v = lua_tostring(L, -1);
    if (v && (strcmp(v, "TLSv1.3") == 0 || strcmp(v, "1.3") == 0))
      sp.min_version = 13;
    else if (!v || (strcmp(v, "TLSv1.2") != 0 && strcmp(v, "1.2") != 0))
      luaL_error(L, "tls.min_version must be \"TLSv1.2\" or \"TLSv1.3\"");
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "implicit");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "tls.implicit must be true or false");
  if (implicit) *implicit = lua_toboolean(L, -1);
  lua_pop(L, 1);
  t = lua_getfield(L, idx, "handshake_timeout");
  if (handshake_ms) *handshake_ms = TLS_HANDSHAKE_DEFAULT_MS;
  if (t != LUA_TNIL) {
    double s = lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || !(s > 0 && s < 1e6))
      luaL_error(L, "tls.handshake_timeout must be a positive number of "
                 "seconds");
    if (handshake_ms) *handshake_ms = (uint64_t)(s * 1000 + 0.5);
  }
  lua_pop(L, 1);
  *spec = sp;
}

smtpd_tls_conf *smtpd_tls_read(lua_State *L, int idx, int *implicit,
                               uint64_t *handshake_ms, char *err,
                               size_t errlen) {
  smtpd_tls_spec sp;
  smtpd_tls_conf *c;
  smtpd_tls_read_spec(L, idx, &sp, implicit, handshake_ms);
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
