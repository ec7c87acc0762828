/*
 * Option tables. Each option the C core reads is defined once, here: its
 * name, its kind (which values it takes) and its default. The Lua side
 * gets the same tables (core.OPTIONS) to know which names exist, and the
 * README documents them.
 */
#include <stddef.h>
#include <string.h>

#include "core/glue.h"

#define SRV(field) offsetof(smtpd_server_conf, field)
#define SES(field) (offsetof(smtpd_server_conf, session) + \
                    offsetof(smtpd_session_conf, field))

const smtpd_optdef smtpd_server_opts[] = {
  {"data_size_limit", SMTPD_OPT_SIZE, SMTPD_DATA_SIZE_DEFAULT, 0,
   SES(data_size_limit)},
  {"enable_SMTPUTF8", SMTPD_OPT_BOOL, 0, 0, SES(enable_smtputf8)},
  {"decode_data", SMTPD_OPT_BOOL, 0, 0, SES(decode_data)},
  /* RFC 5321 4.5.3.1.8: a server must take at least 100 recipients. */
  {"max_recipients", SMTPD_OPT_COUNT, SMTPD_MAX_RECIPIENTS, 100,
   SES(max_recipients)},
  {"max_bad_commands", SMTPD_OPT_COUNT, SMTPD_MAX_BAD_COMMANDS, 1,
   SES(max_bad)},
  {"timeout", SMTPD_OPT_SECONDS, 300, 0, SRV(timeout_ms)},
  {"handler_timeout", SMTPD_OPT_SECONDS, 300, 0, SRV(handler_timeout_ms)},
  {"data_timeout", SMTPD_OPT_SECONDS, 600, 0, SRV(data_timeout_ms)},
  {"data_rate_grace", SMTPD_OPT_SECONDS, 30, 0, SRV(data_grace_ms)},
  {"min_data_rate", SMTPD_OPT_COUNT, 128, 1, SRV(min_data_rate)},
  /* The map's cap: a server that does not say keeps it (256 MiB at
   * first, see map.c). */
  {"max_data_memory", SMTPD_OPT_SIZE, -1, 0, SRV(max_data_memory)},
  {"max_connections", SMTPD_OPT_COUNT, 1000, 1, SRV(max_connections)},
  {"max_connections_per_ip", SMTPD_OPT_COUNT, 50, 1, SRV(max_per_ip)},
  {"backlog", SMTPD_OPT_COUNT, 1024, 1, SRV(backlog)},
  {"reuse_port", SMTPD_OPT_BOOL, 0, 0, SRV(reuse_port)},
  {"unix_mode", SMTPD_OPT_COUNT, 0666, 0, SRV(unix_mode)},
  {"fqdn", SMTPD_OPT_STRING, 0, 0, SRV(fqdn)},
  {"require_starttls", SMTPD_OPT_BOOL, 0, 0, SES(require_starttls)},
  {"auth_require_tls", SMTPD_OPT_BOOL, 1, 0, SES(auth_require_tls)},
  {"auth_required", SMTPD_OPT_BOOL, 0, 0, SES(auth_required)},
  {"pipelining", SMTPD_OPT_BOOL, 1, 0, SES(pipelining)},
  {"chunking", SMTPD_OPT_BOOL, 1, 0, SES(chunking)},
  {"binarymime", SMTPD_OPT_BOOL, 0, 0, SES(binarymime)},
  {"enhanced_status_codes", SMTPD_OPT_BOOL, 0, 0, SES(enhanced)},
  {"lmtp", SMTPD_OPT_BOOL, 0, 0, SES(lmtp)},
  {"dsn", SMTPD_OPT_BOOL, 0, 0, SES(dsn)},
  {"requiretls", SMTPD_OPT_BOOL, 0, 0, SES(requiretls)},
  /* RFC 4954 9: never fewer than 3 attempts. */
  {"max_auth_failures", SMTPD_OPT_COUNT, 3, 3, SRV(max_auth_failures)},
  {"auth_failure_delay", SMTPD_OPT_SECONDS, 1, 0,
   SRV(auth_failure_delay_ms)},
  {NULL, 0, 0, 0, 0}
};

#define REL(field) offsetof(smtpd_relay_conf, field)

const smtpd_optdef smtpd_relay_opts[] = {
  {"helo", SMTPD_OPT_STRING, 0, 0, REL(helo)},
  {"timeout", SMTPD_OPT_SECONDS, 60, 0, REL(timeout_ms)},
  {"connect_timeout", SMTPD_OPT_SECONDS, 30, 0, REL(connect_timeout_ms)},
  {"lmtp", SMTPD_OPT_BOOL, 0, 0, REL(lmtp)},
  {"tempfail_aborts", SMTPD_OPT_BOOL, 0, 0, REL(tempfail_aborts)},
  {NULL, 0, 0, 0, 0}
};

/* Raises "name must be ..." with no position: the Lua side re-raises it
 * where the user's call is. */
static int opts_error(lua_State *L, const smtpd_optdef *d, const char *what) {
  lua_pushfstring(L, "%s must be %s", d->name, what);
  return lua_error(L);
}

/* 0 or false mean "none" for sizes, counts and seconds. */
static int opts_none(lua_State *L, int idx) {
  return (lua_isboolean(L, idx) && !lua_toboolean(L, idx)) ||
         (lua_isinteger(L, idx) && lua_tointeger(L, idx) == 0) ||
         (lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) == 0);
}

static void opts_read_one(lua_State *L, const smtpd_optdef *d, char *conf) {
  void *at = conf + d->off;
  int absent = lua_isnil(L, -1);
  switch (d->kind) {
  case SMTPD_OPT_BOOL:
    if (!absent && !lua_isboolean(L, -1)) opts_error(L, d, "true or false");
    *(int *)at = absent ? d->def != 0 : lua_toboolean(L, -1);
    break;
  case SMTPD_OPT_SIZE:
  case SMTPD_OPT_COUNT: {
    size_t v;
    if (absent) {
      v = d->def < 0 ? (size_t)-1 : (size_t)d->def;
    } else if (opts_none(L, -1)) {
      v = 0;
    } else {
      lua_Integer i = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
      if (d->kind == SMTPD_OPT_SIZE && i < 0)
        opts_error(L, d, "a non-negative integer, 0 or false");
      if (d->kind == SMTPD_OPT_COUNT && i < (lua_Integer)d->min) {
        lua_pushfstring(L, "%s must be an integer of at least %d (0 or "
                        "false: no limit)", d->name, (int)d->min);
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
    } else if (opts_none(L, -1)) {
      s = 0;
    } else {
      s = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
      if (!(s >= 0 && s < 1e9))
        opts_error(L, d, "a number of seconds (0 or false: none)");
    }
    *(uint64_t *)at = (uint64_t)(s * 1000 + 0.5);
    break;
  }
  case SMTPD_OPT_STRING:
    if (!absent && lua_type(L, -1) != LUA_TSTRING)
      opts_error(L, d, "a string");
    *(const char **)at = absent ? NULL : lua_tostring(L, -1);
    break;
  default:
    break;
  }
}

/* Strings read stay valid while the table holds them. */
void smtpd_opts_read(lua_State *L, int t, const smtpd_optdef *defs,
                     void *conf) {
  const smtpd_optdef *d;
  t = lua_absindex(L, t);
  for (d = defs; d->name; d++) {
    if (lua_isnoneornil(L, t)) lua_pushnil(L);
    else lua_getfield(L, t, d->name);
    opts_read_one(L, d, conf);
    lua_pop(L, 1);
  }
}

void smtpd_opts_push(lua_State *L, const smtpd_optdef *defs) {
  const smtpd_optdef *d;
  lua_newtable(L);
  for (d = defs; d->name; d++) {
    if (d->kind == SMTPD_OPT_BOOL) lua_pushboolean(L, d->def != 0);
    else if (d->kind == SMTPD_OPT_STRING || d->def < 0) lua_pushboolean(L, 0);
    else if (d->kind == SMTPD_OPT_SECONDS) lua_pushnumber(L, d->def);
    else lua_pushinteger(L, (lua_Integer)d->def);
    lua_setfield(L, -2, d->name);
  }
}

/* check_options(kind, t): raises as the core would on reading t as
 * kind's options ("server" or "relay"). */
static int opts_check(lua_State *L) {
  static const char *const kinds[] = {"server", "relay", NULL};
  smtpd_server_conf sc;
  smtpd_relay_conf rc;
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (kind == 0) smtpd_opts_read(L, 2, smtpd_server_opts, &sc);
  else smtpd_opts_read(L, 2, smtpd_relay_opts, &rc);
  return 0;
}

/* core.OPTIONS = {server = {...}, relay = {...}}: every option name the
 * core reads, with its default (false: none, or decided elsewhere). */
void smtpd_open_opts(lua_State *L) {
  lua_pushcfunction(L, opts_check);
  lua_setfield(L, -2, "check_options");
  lua_createtable(L, 0, 2);
  smtpd_opts_push(L, smtpd_server_opts);
  lua_setfield(L, -2, "server");
  smtpd_opts_push(L, smtpd_relay_opts);
  lua_setfield(L, -2, "relay");
  lua_setfield(L, -2, "OPTIONS");
}
