/*
 * Option tables. Each option the C core reads is defined once, here: its
 * name, its kind (which values it takes) and its default, nested tables
 * (relay.tls, relay.auth, proxy_protocol, mailman) included. Everything is
 * read by one reader, once, into a C struct; the Lua side gets the same
 * definitions (core.OPTIONS: the names and defaults) and what C read
 * (core.read_options and the handles' options()), so it never re-derives
 * a default. The README documents them.
 *
 * Reading validates only: strings stay in the caller's table and what a
 * reader must build goes into garbage-collected scratch, so an error
 * raised half way leaks nothing. The owner allocates after the read.
 */
#include <stddef.h>
#include <string.h>

#include "core/glue.h"

#define SRV(field) offsetof(smtpd_server_conf, field)
#define SES(field) (offsetof(smtpd_server_conf, session) + \
                    offsetof(smtpd_session_conf, field))
#define REL(field) offsetof(smtpd_relay_opts, field)
#define RTLS(field) offsetof(smtpd_relay_tls_opts, field)
#define RAUTH(field) offsetof(smtpd_relay_auth_opts, field)
#define PROXY(field) offsetof(smtpd_proxy_opts, field)
#define MM(field) offsetof(smtpd_mailman_opts, field)
#define TLS(field) offsetof(smtpd_tls_opts, field)

static void proxy_trusted_read(lua_State *L, int idx, void *at,
                               const char *name);
static void proxy_trusted_push(lua_State *L, const void *at);
static const smtpd_optcustom proxy_trusted = {
  proxy_trusted_read, proxy_trusted_push
};

static const smtpd_optdef proxy_opts[] = {
  {"trusted", SMTPD_OPT_CUSTOM, 0, 0, PROXY(trusted), &proxy_trusted, 0},
  {"timeout", SMTPD_OPT_SECONDS, 5, 0, PROXY(timeout_ms), NULL,
   SMTPD_OPTF_POSITIVE},
  {"max_header", SMTPD_OPT_COUNT, 536, 16, PROXY(max_header), NULL,
   SMTPD_OPTF_REQUIRED},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

static const char *const tls_versions[] = {"TLSv1.2", "TLSv1.3", "1.2",
                                           "1.3", NULL};

const smtpd_optdef smtpd_tls_optdefs[] = {
  {"cert", SMTPD_OPT_CUSTOM, 0, 0, TLS(cert), &smtpd_tls_files_opt, 0},
  {"key", SMTPD_OPT_CUSTOM, 0, 0, TLS(key), &smtpd_tls_files_opt, 0},
  {"implicit", SMTPD_OPT_BOOL, 0, 0, TLS(implicit), NULL, 0},
  {"sni", SMTPD_OPT_CUSTOM, 0, 0, TLS(sni), &smtpd_tls_sni_opt, 0},
  {"client_ca", SMTPD_OPT_STRING, 0, 0, TLS(client_ca), NULL,
   SMTPD_OPTF_LINE},
  {"verify_client", SMTPD_OPT_BOOL, 0, 0, TLS(verify_client), NULL, 0},
  {"handshake_timeout", SMTPD_OPT_SECONDS, 30, 0, TLS(handshake_ms), NULL,
   SMTPD_OPTF_POSITIVE},
  {"ciphers", SMTPD_OPT_STRING, 0, 0, TLS(ciphers), NULL, SMTPD_OPTF_LINE},
  {"min_version", SMTPD_OPT_ENUM, 0, 0, TLS(min_version), tls_versions, 0},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

const smtpd_optdef smtpd_server_optdefs[] = {
  {"data_size_limit", SMTPD_OPT_SIZE, SMTPD_DATA_SIZE_DEFAULT, 0,
   SES(data_size_limit), NULL, 0},
  {"enable_SMTPUTF8", SMTPD_OPT_BOOL, 0, 0, SES(enable_smtputf8), NULL, 0},
  {"decode_data", SMTPD_OPT_BOOL, 0, 0, SES(decode_data), NULL, 0},
  /* RFC 5321 4.5.3.1.8: a server must take at least 100 recipients. */
  {"max_recipients", SMTPD_OPT_COUNT, SMTPD_MAX_RECIPIENTS, 100,
   SES(max_recipients), NULL, 0},
  {"max_bad_commands", SMTPD_OPT_COUNT, SMTPD_MAX_BAD_COMMANDS, 1,
   SES(max_bad), NULL, 0},
  {"timeout", SMTPD_OPT_SECONDS, 300, 0, SRV(timeout_ms), NULL, 0},
  {"handler_timeout", SMTPD_OPT_SECONDS, 300, 0, SRV(handler_timeout_ms),
   NULL, 0},
  {"data_timeout", SMTPD_OPT_SECONDS, 600, 0, SRV(data_timeout_ms), NULL, 0},
  {"data_rate_grace", SMTPD_OPT_SECONDS, 30, 0, SRV(data_grace_ms), NULL, 0},
  {"min_data_rate", SMTPD_OPT_COUNT, 128, 1, SRV(min_data_rate), NULL, 0},
  /* The map's cap: a server that does not say keeps it (256 MiB at
   * first, see map.c). */
  {"max_data_memory", SMTPD_OPT_SIZE, -1, 0, SRV(max_data_memory), NULL, 0},
  {"max_connections", SMTPD_OPT_COUNT, 1000, 1, SRV(max_connections), NULL,
   0},
  {"max_connections_per_ip", SMTPD_OPT_COUNT, 50, 1, SRV(max_per_ip), NULL,
   0},
  {"backlog", SMTPD_OPT_COUNT, 1024, 1, SRV(backlog), NULL, 0},
  {"reuse_port", SMTPD_OPT_BOOL, 0, 0, SRV(reuse_port), NULL, 0},
  {"dkim_body_hash", SMTPD_OPT_BOOL, 0, 0, SRV(dkim_body_hash), NULL, 0},
  {"unix_mode", SMTPD_OPT_COUNT, 0666, 0, SRV(unix_mode), NULL, 0},
  {"fqdn", SMTPD_OPT_STRING, 0, 0, SRV(fqdn), NULL, SMTPD_OPTF_WORD},
  {"require_starttls", SMTPD_OPT_BOOL, 0, 0, SES(require_starttls), NULL, 0},
  {"auth_require_tls", SMTPD_OPT_BOOL, 1, 0, SES(auth_require_tls), NULL, 0},
  {"auth_required", SMTPD_OPT_BOOL, 0, 0, SES(auth_required), NULL, 0},
  {"pipelining", SMTPD_OPT_BOOL, 1, 0, SES(pipelining), NULL, 0},
  {"chunking", SMTPD_OPT_BOOL, 1, 0, SES(chunking), NULL, 0},
  {"binarymime", SMTPD_OPT_BOOL, 0, 0, SES(binarymime), NULL, 0},
  {"enhanced_status_codes", SMTPD_OPT_BOOL, 0, 0, SES(enhanced), NULL, 0},
  {"lmtp", SMTPD_OPT_BOOL, 0, 0, SES(lmtp), NULL, 0},
  {"dsn", SMTPD_OPT_BOOL, 0, 0, SES(dsn), NULL, 0},
  {"requiretls", SMTPD_OPT_BOOL, 0, 0, SES(requiretls), NULL, 0},
  /* RFC 4954 9: never fewer than 3 attempts. */
  {"max_auth_failures", SMTPD_OPT_COUNT, 3, 3, SRV(max_auth_failures), NULL,
   0},
  {"auth_failure_delay", SMTPD_OPT_SECONDS, 1, 0,
   SRV(auth_failure_delay_ms), NULL, 0},
  {"proxy_protocol", SMTPD_OPT_TABLE, 0, 0, SRV(proxy), proxy_opts,
   SMTPD_OPTF_OPTIONAL},
  {"tls", SMTPD_OPT_TABLE, 0, 0, SRV(tls), smtpd_tls_optdefs,
   SMTPD_OPTF_OPTIONAL},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

static const char *const starttls_modes[] = {"require", "opportunistic",
                                             NULL};
static const char *const auth_mechanisms[] = {"PLAIN", "LOGIN", NULL};
static const char *const relay_modes[] = {"rcpt", "message", NULL};

static const smtpd_optdef relay_tls_opts[] = {
  {"verify", SMTPD_OPT_BOOL, 1, 0, RTLS(verify), NULL, 0},
  {"ca", SMTPD_OPT_STRING, 0, 0, RTLS(ca), NULL, SMTPD_OPTF_LINE},
  {"sni", SMTPD_OPT_STRING, 0, 0, RTLS(sni), NULL, SMTPD_OPTF_WORD},
  {"cert", SMTPD_OPT_STRING, 0, 0, RTLS(cert), NULL, SMTPD_OPTF_LINE},
  {"key", SMTPD_OPT_STRING, 0, 0, RTLS(key), NULL, SMTPD_OPTF_LINE},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

static const smtpd_optdef relay_auth_opts[] = {
  {"user", SMTPD_OPT_STRING, 0, 0, RAUTH(user), NULL, SMTPD_OPTF_LINE},
  {"password", SMTPD_OPT_STRING, 0, 0, RAUTH(password), NULL,
   SMTPD_OPTF_LINE},
  {"password_env", SMTPD_OPT_STRING, 0, 0, RAUTH(password_env), NULL,
   SMTPD_OPTF_WORD},
  {"password_file", SMTPD_OPT_STRING, 0, 0, RAUTH(password_file), NULL,
   SMTPD_OPTF_LINE},
  {"mechanism", SMTPD_OPT_ENUM, 0, 0, RAUTH(mechanism), auth_mechanisms, 0},
  {"plaintext", SMTPD_OPT_BOOL, 0, 0, RAUTH(plaintext), NULL, 0},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

const smtpd_optdef smtpd_relay_optdefs[] = {
  {"helo", SMTPD_OPT_STRING, 0, 0, REL(helo), NULL, SMTPD_OPTF_WORD},
  {"timeout", SMTPD_OPT_SECONDS, 60, 0, REL(timeout_ms), NULL, 0},
  {"connect_timeout", SMTPD_OPT_SECONDS, 30, 0, REL(connect_timeout_ms),
   NULL, 0},
  {"lmtp", SMTPD_OPT_BOOL, 0, 0, REL(lmtp), NULL, 0},
  /* The message mode: a 4xx to any RCPT sends no data and fails the
   * whole message (451), so no recipient is lost. */
  {"tempfail_aborts", SMTPD_OPT_BOOL, 1, 0, REL(tempfail_aborts), NULL, 0},
  {"at", SMTPD_OPT_ENUM, 0, 0, REL(at), relay_modes, 0},
  {"starttls", SMTPD_OPT_ENUM, 0, 0, REL(starttls), starttls_modes, 0},
  {"implicit_tls", SMTPD_OPT_BOOL, 0, 0, REL(implicit_tls), NULL, 0},
  {"tls", SMTPD_OPT_TABLE, 0, 0, REL(tls), relay_tls_opts,
   SMTPD_OPTF_OPTIONAL},
  {"auth", SMTPD_OPT_TABLE, 0, 0, REL(auth), relay_auth_opts,
   SMTPD_OPTF_OPTIONAL},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

const smtpd_optdef smtpd_mailman_optdefs[] = {
  {"lmtp", SMTPD_OPT_STRING, 0, 0, MM(lmtp), NULL, SMTPD_OPTF_WORD},
  {"helo", SMTPD_OPT_STRING, 0, 0, MM(helo), NULL, SMTPD_OPTF_WORD},
  {"timeout", SMTPD_OPT_SECONDS, 60, 0, MM(timeout_ms), NULL, 0},
  {"connect_timeout", SMTPD_OPT_SECONDS, 30, 0, MM(connect_timeout_ms),
   NULL, 0},
  {NULL, 0, 0, 0, 0, NULL, 0}
};

/* ---- errors ---------------------------------------------------------- */

/* The option's full name ("relay.tls.ca") into buf. */
static const char *opts_name(const char *prefix, const smtpd_optdef *d,
                             char *buf, size_t size) {
  if (prefix && *prefix) snprintf(buf, size, "%s.%s", prefix, d->name);
  else snprintf(buf, size, "%s", d->name);
  return buf;
}

/* Raises "name must be ..." with no position: the Lua side re-raises it
 * where the user's call is. */
static int opts_error(lua_State *L, const char *prefix, const smtpd_optdef *d,
                      const char *what) {
  char name[200];
  lua_pushfstring(L, "%s must be %s", opts_name(prefix, d, name,
                                                sizeof name), what);
  return lua_error(L);
}

/* Levenshtein distance of two short names (at most 63 bytes), for "did
 * you mean". */
static size_t opts_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j, prev[64], cur[64];
  if (la > 63 || lb > 63) return 64;
  for (j = 0; j <= lb; j++) prev[j] = j;
  for (i = 1; i <= la; i++) {
    cur[0] = i;
    for (j = 1; j <= lb; j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1, best = prev[j] + 1;
      if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
      if (prev[j - 1] + cost < best) best = prev[j - 1] + cost;
      cur[j] = best;
    }
    memcpy(prev, cur, (lb + 1) * sizeof *cur);
  }
  return prev[lb];
}

/* Every key of the nested table at t is one of defs: else an error that
 * names it, with the nearest known name when it is close. */
static void opts_known(lua_State *L, int t, const smtpd_optdef *defs,
                       const char *prefix) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const smtpd_optdef *d, *near = NULL;
    size_t best = 3;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                   : NULL;
    for (d = defs; k && d->name; d++) {
      size_t dist;
      if (strcmp(k, d->name) == 0) break;
      dist = opts_distance(k, d->name);
      if (dist < best) {
        best = dist;
        near = d;
      }
    }
    if (!k || !d->name) {
      if (k && near)
        lua_pushfstring(L, "unknown %s option \"%s\" (did you mean \"%s\"?)",
                        prefix, k, near->name);
      else if (k)
        lua_pushfstring(L, "unknown %s option \"%s\"", prefix, k);
      else
        lua_pushfstring(L, "unknown %s option (a %s key)", prefix,
                        luaL_typename(L, -2));
      lua_error(L);
    }
    lua_pop(L, 1);
  }
}

/* 0 or false mean "none" for sizes, counts and seconds. */
static int opts_none(lua_State *L, int idx) {
  return (lua_isboolean(L, idx) && !lua_toboolean(L, idx)) ||
         (lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) == 0);
}

/* ---- the reader ---------------------------------------------------------- */

static void opts_read_defs(lua_State *L, int t, const smtpd_optdef *defs,
                           char *conf, const char *prefix);

static void opts_read_string(lua_State *L, const smtpd_optdef *d, void *at,
                             const char *prefix) {
  size_t n;
  const char *s;
  if (lua_isnil(L, -1)) {
    *(const char **)at = NULL;
    return;
  }
  if (lua_type(L, -1) != LUA_TSTRING) opts_error(L, prefix, d, "a string");
  s = lua_tolstring(L, -1, &n);
  if ((d->flags & (SMTPD_OPTF_WORD | SMTPD_OPTF_LINE)) &&
      (n == 0 || memchr(s, '\0', n) || strcspn(s, "\r\n") != n ||
       ((d->flags & SMTPD_OPTF_WORD) && strcspn(s, " \t") != n)))
    opts_error(L, prefix, d, (d->flags & SMTPD_OPTF_WORD)
               ? "one word (no spaces, CR or LF)"
               : "a non-empty string with no CR, LF or NUL");
  *(const char **)at = s;
}

static void opts_read_one(lua_State *L, const smtpd_optdef *d, char *conf,
                          const char *prefix) {
  void *at = conf + d->off;
  int absent = lua_isnil(L, -1);
  switch (d->kind) {
  case SMTPD_OPT_BOOL:
    if (!absent && !lua_isboolean(L, -1))
      opts_error(L, prefix, d, "true or false");
    *(int *)at = absent ? d->def != 0 : lua_toboolean(L, -1);
    break;
  case SMTPD_OPT_SIZE:
  case SMTPD_OPT_COUNT: {
    size_t v;
    if (absent) {
      v = d->def < 0 ? (size_t)-1 : (size_t)d->def;
    } else if (opts_none(L, -1) && !(d->flags & SMTPD_OPTF_REQUIRED)) {
      v = 0;
    } else {
      lua_Integer i = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
      char name[200];
      if (d->kind == SMTPD_OPT_SIZE && i < 0)
        opts_error(L, prefix, d, "a non-negative integer, 0 or false");
      if (d->kind == SMTPD_OPT_COUNT && i < (lua_Integer)d->min) {
        lua_pushfstring(L, "%s must be an integer of at least %d%s",
                        opts_name(prefix, d, name, sizeof name), (int)d->min,
                        (d->flags & SMTPD_OPTF_REQUIRED) ? ""
                        : " (0 or false: no limit)");
        lua_error(L);
      }
      v = (size_t)i;
    }
    *(size_t *)at = v;
    break;
  }
  case SMTPD_OPT_SECONDS: {
    double s;
    if (absent) {
      s = d->def;
    } else if (opts_none(L, -1) && !(d->flags & SMTPD_OPTF_POSITIVE)) {
      s = 0;
    } else {
      s = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
      if (!(s >= 0 && s < 1e9) || ((d->flags & SMTPD_OPTF_POSITIVE) &&
                                   !(s > 0)))
        opts_error(L, prefix, d, (d->flags & SMTPD_OPTF_POSITIVE)
                   ? "a positive number of seconds"
                   : "a number of seconds (0 or false: none)");
    }
    *(uint64_t *)at = (uint64_t)(s * 1000 + 0.5);
    break;
  }
  case SMTPD_OPT_STRING:
    opts_read_string(L, d, at, prefix);
    break;
  case SMTPD_OPT_ENUM: {
    const char *const *c = d->more;
    int i;
    *(int *)at = 0;
    if (absent || (lua_isboolean(L, -1) && !lua_toboolean(L, -1))) break;
    if (lua_type(L, -1) == LUA_TSTRING) {
      for (i = 0; c[i]; i++) {
        if (strcmp(lua_tostring(L, -1), c[i]) == 0) {
          *(int *)at = i + 1;
          break;
        }
      }
    }
    if (*(int *)at == 0) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (i = 0; c[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addchar(&b, '"');
        luaL_addstring(&b, c[i]);
        luaL_addchar(&b, '"');
      }
      luaL_addstring(&b, " or false");
      luaL_pushresult(&b);
      opts_error(L, prefix, d, lua_tostring(L, -1));
    }
    break;
  }
  case SMTPD_OPT_TABLE: {
    char name[200];
    int t = lua_gettop(L);
    opts_name(prefix, d, name, sizeof name);
    if (absent || (lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
      if (!(d->flags & SMTPD_OPTF_OPTIONAL))
        opts_error(L, prefix, d, "a table");
      /* Defaults all the same, with given = 0. */
      lua_pushnil(L);
      opts_read_defs(L, lua_gettop(L), d->more, at, name);
      lua_pop(L, 1);
      ((smtpd_opt_table *)at)->given = 0;
      break;
    }
    if (!lua_istable(L, -1)) opts_error(L, prefix, d, "a table");
    opts_known(L, t, d->more, name);
    opts_read_defs(L, t, d->more, at, name);
    ((smtpd_opt_table *)at)->given = 1;
    break;
  }
  case SMTPD_OPT_CUSTOM: {
    char name[200];
    const smtpd_optcustom *c = d->more;
    c->read(L, lua_gettop(L), at, opts_name(prefix, d, name, sizeof name));
    break;
  }
  default:
    break;
  }
}

static void opts_read_defs(lua_State *L, int t, const smtpd_optdef *defs,
                           char *conf, const char *prefix) {
  const smtpd_optdef *d;
  for (d = defs; d->name; d++) {
    if (lua_isnoneornil(L, t)) lua_pushnil(L);
    else lua_getfield(L, t, d->name);
    opts_read_one(L, d, conf, prefix);
    lua_pop(L, 1);
  }
}

/* Strings read stay valid while the table holds them. */
void smtpd_opts_read(lua_State *L, int t, const smtpd_optdef *defs,
                     void *conf) {
  opts_read_defs(L, lua_absindex(L, t), defs, conf, "");
}

void smtpd_opts_read_table(lua_State *L, int t, const smtpd_optdef *defs,
                           void *conf, const char *prefix) {
  t = lua_absindex(L, t);
  opts_known(L, t, defs, prefix);
  opts_read_defs(L, t, defs, conf, prefix);
  ((smtpd_opt_table *)conf)->given = 1;
}

/* ---- what C read, and the defaults, for Lua -------------------------- */

void smtpd_opts_push_read(lua_State *L, const smtpd_optdef *defs,
                          const void *conf) {
  const smtpd_optdef *d;
  const char *c = conf;
  lua_newtable(L);
  for (d = defs; d->name; d++) {
    const void *at = c + d->off;
    switch (d->kind) {
    case SMTPD_OPT_BOOL: lua_pushboolean(L, *(const int *)at); break;
    case SMTPD_OPT_SIZE:
    case SMTPD_OPT_COUNT: {
      size_t v = *(const size_t *)at;
      if (v == (size_t)-1 || (v == 0 && d->kind == SMTPD_OPT_SIZE) ||
          (v == 0 && d->min > 0))
        lua_pushboolean(L, 0);
      else
        lua_pushinteger(L, (lua_Integer)v);
      break;
    }
    case SMTPD_OPT_SECONDS: {
      uint64_t ms = *(const uint64_t *)at;
      if (ms) lua_pushnumber(L, (lua_Number)ms / 1000);
      else lua_pushboolean(L, 0);
      break;
    }
    case SMTPD_OPT_STRING: {
      const char *s = *(const char *const *)at;
      if (s) lua_pushstring(L, s);
      else lua_pushnil(L);
      break;
    }
    case SMTPD_OPT_ENUM: {
      int v = *(const int *)at;
      if (v) lua_pushstring(L, ((const char *const *)d->more)[v - 1]);
      else lua_pushboolean(L, 0);
      break;
    }
    case SMTPD_OPT_TABLE:
      if (((const smtpd_opt_table *)at)->given)
        smtpd_opts_push_read(L, d->more, at);
      else
        lua_pushnil(L);
      break;
    case SMTPD_OPT_CUSTOM:
      ((const smtpd_optcustom *)d->more)->push(L, at);
      break;
    default:
      lua_pushnil(L);
      break;
    }
    lua_setfield(L, -2, d->name);
  }
}

void smtpd_opts_push(lua_State *L, const smtpd_optdef *defs) {
  const smtpd_optdef *d;
  lua_newtable(L);
  for (d = defs; d->name; d++) {
    if (d->kind == SMTPD_OPT_BOOL) lua_pushboolean(L, d->def != 0);
    else if (d->kind == SMTPD_OPT_TABLE) smtpd_opts_push(L, d->more);
    else if (d->kind == SMTPD_OPT_STRING || d->kind == SMTPD_OPT_ENUM ||
             d->kind == SMTPD_OPT_CUSTOM || d->def < 0)
      lua_pushboolean(L, 0);
    else if (d->kind == SMTPD_OPT_SECONDS) lua_pushnumber(L, d->def);
    else lua_pushinteger(L, (lua_Integer)d->def);
    lua_setfield(L, -2, d->name);
  }
}

/* ---- proxy_protocol.trusted ------------------------------------------- */

/* A string or a list of addresses and CIDR ranges, parsed into scratch
 * the garbage collector owns (anchored in the registry by the caller's
 * table of scratch: the list's own userdata sits on the stack until the
 * owner copies it, see smtpd_opts_scratch). */
static void proxy_trusted_read(lua_State *L, int idx, void *at,
                               const char *name) {
  smtpd_cidr_list *out = at;
  size_t i, n;
  int list;
  out->v = NULL;
  out->n = 0;
  if (lua_isnil(L, idx)) return;
  if (lua_type(L, idx) == LUA_TSTRING) {
    n = 1;
    list = 0;
  } else if (lua_istable(L, idx) && (n = lua_rawlen(L, idx)) > 0) {
    list = 1;
  } else {
    lua_pushfstring(L, "%s must list the proxies' addresses (\"127.0.0.1\", "
                    "\"10.0.0.0/8\", ...)", name);
    lua_error(L);
    return;
  }
  out->v = smtpd_opts_scratch(L, n * sizeof *out->v);
  for (i = 0; i < n; i++) {
    const char *s;
    if (list) lua_rawgeti(L, idx, (lua_Integer)i + 1);
    else lua_pushvalue(L, idx);
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (s == NULL || smtpd_cidr_parse(s, &out->v[i])) {
      lua_pushfstring(L, "%s: bad address %s", name,
                      s ? s : luaL_typename(L, -1));
      lua_error(L);
    }
    lua_pop(L, 1);
  }
  out->n = n;
}

static void proxy_trusted_push(lua_State *L, const void *at) {
  const smtpd_cidr_list *l = at;
  size_t i;
  lua_createtable(L, (int)l->n, 0);
  for (i = 0; i < l->n; i++) {
    char buf[64];
    smtpd_cidr_name(&l->v[i], buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* Scratch memory for readers: a userdata kept alive in the registry's
 * "smtpd.scratch" table until the next smtpd_opts_scratch_release (the
 * owner copies what it keeps first). */
void *smtpd_opts_scratch(lua_State *L, size_t n) {
  void *p;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "smtpd.scratch") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "smtpd.scratch");
  }
  p = lua_newuserdatauv(L, n ? n : 1, 0);
  memset(p, 0, n ? n : 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
  return p;
}

void smtpd_opts_scratch_release(lua_State *L) {
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "smtpd.scratch");
}

/* ---- Lua --------------------------------------------------------------- */

static const struct {
  const char *name;
  const smtpd_optdef *defs;
  size_t size;
} opts_kinds[] = {
  {"server", smtpd_server_optdefs, sizeof(smtpd_server_conf)},
  {"relay", smtpd_relay_optdefs, sizeof(smtpd_relay_opts)},
  {"mailman", smtpd_mailman_optdefs, sizeof(smtpd_mailman_opts)},
  {NULL, NULL, 0}
};

static int opts_kind(lua_State *L, int idx) {
  static const char *const names[] = {"server", "relay", "mailman", NULL};
  return luaL_checkoption(L, idx, NULL, names);
}

/* read_options(kind, t) -> what the core reads of t as kind's options
 * ("server", "relay" or "mailman"), every default filled in; raises as
 * the core would (the Lua side checks names before it listens). */
static int opts_read_lua(lua_State *L) {
  int k = opts_kind(L, 1);
  void *conf;
  luaL_checktype(L, 2, LUA_TTABLE);
  conf = lua_newuserdatauv(L, opts_kinds[k].size, 0);
  memset(conf, 0, opts_kinds[k].size);
  smtpd_opts_read(L, 2, opts_kinds[k].defs, conf);
  smtpd_opts_push_read(L, opts_kinds[k].defs, conf);
  smtpd_opts_scratch_release(L);
  return 1;
}

/* check_options(kind, t): raises as the core would on reading t. */
static int opts_check(lua_State *L) {
  opts_read_lua(L);
  return 0;
}

/* core.OPTIONS = {server = {...}, relay = {...}, mailman = {...}}: every
 * option name the core reads, with its default (false: none, or decided
 * elsewhere; a nested table for nested options). */
void smtpd_open_opts(lua_State *L) {
  int k;
  lua_pushcfunction(L, opts_check);
  lua_setfield(L, -2, "check_options");
  lua_pushcfunction(L, opts_read_lua);
  lua_setfield(L, -2, "read_options");
  lua_createtable(L, 0, 3);
  for (k = 0; opts_kinds[k].name; k++) {
    smtpd_opts_push(L, opts_kinds[k].defs);
    lua_setfield(L, -2, opts_kinds[k].name);
  }
  lua_setfield(L, -2, "OPTIONS");
}
