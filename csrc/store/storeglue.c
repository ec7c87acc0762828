/*
 * The shared dictionary for Lua (smtpd.store's "shm:" backend):
 *
 *   local d = core.dict(bytes)     -- before the workers fork
 *   d:set(k, v [, ttl]), d:add(k, v [, ttl]) -> true | false, "exists"
 *   d:get(k) -> value, seconds left (nil: none) | nil
 *   d:incr(k, by [, ttl]) -> n | nil, err
 *   d:delete(k), d:flush(), d:count() -> used, capacity
 *
 * Values are strings or integers; ttl in seconds (0 or nil: none).
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/glue.h"
#include "store/dict.h"

#define DICT_MT "smtpd.dict"

typedef struct dict_box {
  smtpd_dict *d;
} dict_box;

static int64_t dict_now(void) {
  return (int64_t)(uv_hrtime() / 1000000u);
}

static smtpd_dict *dict_check(lua_State *L) {
  dict_box *b = luaL_checkudata(L, 1, DICT_MT);
  if (b->d == NULL) luaL_error(L, "the shared dictionary is closed");
  return b->d;
}

static int64_t dict_ttl(lua_State *L, int idx) {
  lua_Number t = luaL_optnumber(L, idx, 0);
  luaL_argcheck(L, t >= 0 && t < 1e10, idx, "ttl: seconds, 0 or more");
  return (int64_t)(t * 1000 + 0.5);
}

static const char *dict_key(lua_State *L, size_t *n) {
  const char *k = luaL_checklstring(L, 2, n);
  /* A key past SMTPD_DICT_ITEM bytes is absent, and too large to set. */
  luaL_argcheck(L, *n > 0, 2, "a non-empty key");
  return k;
}

static int dict_result(lua_State *L, int r) {
  switch (r) {
  case SMTPD_DICT_OK: lua_pushboolean(L, 1); return 1;
  case SMTPD_DICT_EXISTS:
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "exists");
    return 2;
  case SMTPD_DICT_TOO_LARGE:
    lua_pushnil(L);
    lua_pushliteral(L, "too large for the shared dictionary");
    return 2;
  case SMTPD_DICT_NOT_INT:
    lua_pushnil(L);
    lua_pushliteral(L, "not an integer");
    return 2;
  default:
    lua_pushnil(L);
    lua_pushliteral(L, "integer overflow");
    return 2;
  }
}

static int dict_set_(lua_State *L, int only_add) {
  smtpd_dict *d = dict_check(L);
  size_t kn, sn = 0;
  const char *k = dict_key(L, &kn), *s = NULL;
  int64_t ttl = dict_ttl(L, 4), iv = 0;
  int type;
  if (lua_isinteger(L, 3)) {
    type = SMTPD_DICT_INT;
    iv = (int64_t)lua_tointeger(L, 3);
  } else if (lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER) {
    type = SMTPD_DICT_STR;
    s = lua_tolstring(L, 3, &sn);
  } else {
    return luaL_argerror(L, 3, "a string or a number");
  }
  return dict_result(L, smtpd_dict_set(d, k, kn, type, s, sn, iv, ttl,
                                       dict_now(), only_add));
}

static int dict_set(lua_State *L) { return dict_set_(L, 0); }
static int dict_add(lua_State *L) { return dict_set_(L, 1); }

static int dict_get(lua_State *L) {
  smtpd_dict *d = dict_check(L);
  size_t kn;
  const char *k = dict_key(L, &kn);
  smtpd_dict_value *v = lua_newuserdatauv(L, sizeof *v, 0);
  int64_t now = dict_now();
  int t = smtpd_dict_get(d, k, kn, now, v);
  if (t == SMTPD_DICT_NONE) {
    lua_pushnil(L);
    return 1;
  }
  if (t == SMTPD_DICT_INT) lua_pushinteger(L, (lua_Integer)v->ival);
  else lua_pushlstring(L, v->sval, v->slen);
  if (v->expires_ms) lua_pushnumber(L, (lua_Number)(v->expires_ms - now) / 1e3);
  else lua_pushnil(L);
  return 2;
}

static int dict_incr(lua_State *L) {
  smtpd_dict *d = dict_check(L);
  size_t kn;
  const char *k = dict_key(L, &kn);
  lua_Integer by = luaL_optinteger(L, 3, 1);
  int64_t ttl = dict_ttl(L, 4), out = 0;
  int r = smtpd_dict_incr(d, k, kn, (int64_t)by, ttl, dict_now(), &out);
  if (r != SMTPD_DICT_OK) return dict_result(L, r);
  lua_pushinteger(L, (lua_Integer)out);
  return 1;
}

static int dict_delete(lua_State *L) {
  smtpd_dict *d = dict_check(L);
  size_t kn;
  const char *k = dict_key(L, &kn);
  lua_pushboolean(L, smtpd_dict_delete(d, k, kn));
  return 1;
}

static int dict_flush(lua_State *L) {
  smtpd_dict_flush(dict_check(L));
  return 0;
}

static int dict_count(lua_State *L) {
  size_t used, cap;
  smtpd_dict_count(dict_check(L), &used, &cap);
  lua_pushinteger(L, (lua_Integer)used);
  lua_pushinteger(L, (lua_Integer)cap);
  return 2;
}

/* Unmapped when collected (in a worker, its own mapping only). */
static int dict_gc(lua_State *L) {
  dict_box *b = luaL_checkudata(L, 1, DICT_MT);
  if (b->d) smtpd_dict_free(b->d);
  b->d = NULL;
  return 0;
}

/* dict(bytes) -> a shared dictionary | nil, err */
static int dict_new(lua_State *L) {
  lua_Integer bytes = luaL_checkinteger(L, 1);
  dict_box *b;
  char err[200];
  luaL_argcheck(L, bytes > 0, 1, "bytes: a positive size");
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->d = NULL;
  luaL_setmetatable(L, DICT_MT);
  b->d = smtpd_dict_new((size_t)bytes, err, sizeof err);
  if (b->d == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* worker() -> this process's worker number (0: not a forked worker). */
static int dict_worker(lua_State *L) {
  lua_pushinteger(L, smtpd_worker_index);
  return 1;
}

void smtpd_open_dict(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"set", dict_set}, {"add", dict_add}, {"get", dict_get},
    {"incr", dict_incr}, {"delete", dict_delete}, {"flush", dict_flush},
    {"count", dict_count}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {{"__gc", dict_gc}, {NULL, NULL}};
  smtpd_new_class(L, DICT_MT, meta, methods);
  lua_pushcfunction(L, dict_new);
  lua_setfield(L, -2, "dict");
  lua_pushcfunction(L, dict_worker);
  lua_setfield(L, -2, "worker_index");
}
