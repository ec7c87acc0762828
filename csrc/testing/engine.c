/*
 * smtpd.core.engine(opts): the protocol engine with no socket and no Lua
 * hooks, for specs that feed input split in every possible way. Each
 * message is answered with opts.reply (default "250 OK").
 *
 *   local e = core.engine{data_size_limit = 100}
 *   local out, msgs = e:feed("HELO x\r\n")
 */
#include <string.h>

#include "core/glue.h"

#ifdef SMTPD_TESTING

#define ENGINE_MT "smtpd.engine"

typedef struct engine {
  smtpd_session s;
  smtpd_buf out;
  char reply[512];
  int closed;
} engine;

static engine *engine_check(lua_State *L) {
  return luaL_checkudata(L, 1, ENGINE_MT);
}

/* engine(opts): a server's options (the session's part is used), plus
 * the reply every message gets; fqdn defaults to "test.example". */
static int engine_new(lua_State *L) {
  engine *e;
  smtpd_server_conf conf;
  const char *fqdn, *reply;
  size_t n, rn;
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  smtpd_opts_read(L, 1, smtpd_server_optdefs, &conf);
  lua_getfield(L, 1, "fqdn");
  fqdn = luaL_optlstring(L, -1, "test.example", &n);
  lua_getfield(L, 1, "reply");
  reply = luaL_optlstring(L, -1, "250 OK", &rn);
  luaL_argcheck(L, rn < sizeof e->reply, 1, "reply too long");
  e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, ENGINE_MT);
  if (smtpd_session_init(&e->s, &e->out, fqdn, n))
    return luaL_error(L, "out of memory");
  memcpy(e->reply, reply, rn + 1);
  smtpd_session_configure(&e->s, &conf.session);
  return 1;
}

typedef struct engine_ctx {
  lua_State *L;
  engine *e;
  int nmsg;
} engine_ctx;

/* A delivered message becomes a table in the list on top of the stack. */
static const char *engine_on_message(smtpd_session *s, void *arg) {
  engine_ctx *x = arg;
  lua_State *L = x->L;
  smtpd_parser *p = &s->parser;
  lua_createtable(L, 0, 5);
  if (s->has_mailfrom) lua_pushlstring(L, s->mailfrom.p, s->mailfrom.len);
  else lua_pushnil(L);
  lua_setfield(L, -2, "mailfrom");
  smtpd_push_strlist(L, &s->rcpttos);
  lua_setfield(L, -2, "rcpttos");
  lua_pushlstring(L, p->data.p ? p->data.p : "", p->data.len);
  lua_setfield(L, -2, "data");
  smtpd_push_strlist(L, &s->mail_options);
  lua_setfield(L, -2, "mail_options");
  smtpd_push_strlist(L, &s->rcpt_options);
  lua_setfield(L, -2, "rcpt_options");
  lua_rawseti(L, -2, ++x->nmsg);
  return x->e->reply;
}

/* feed(bytes) -> replies written, messages delivered, closed */
static int engine_feed(lua_State *L) {
  engine *e = engine_check(L);
  size_t len;
  const char *buf = luaL_checklstring(L, 2, &len);
  engine_ctx x = {L, e, 0};
  lua_newtable(L);
  if (!e->closed &&
      smtpd_session_run(&e->s, buf, len, engine_on_message, &x) != 0)
    return luaL_error(L, "out of memory");
  if (e->s.quit) e->closed = 1;
  lua_pushlstring(L, e->out.p ? e->out.p : "", e->out.len);
  e->out.len = 0;
  lua_insert(L, -2);
  lua_pushboolean(L, e->closed);
  return 3;
}

/* Memory the engine holds for the current line and message. */
static int engine_buffered(lua_State *L) {
  engine *e = engine_check(L);
  lua_pushinteger(L, (lua_Integer)(e->s.parser.line.cap +
                                   e->s.parser.data.cap));
  return 1;
}

static int engine_gc(lua_State *L) {
  engine *e = engine_check(L);
  smtpd_session_free(&e->s);
  smtpd_buf_free(&e->out);
  return 0;
}

/* chunk_size(digits, bits) -> n | nil: the BDAT size reader at a word
 * size of 32 or 64 bits (nil: too big for it). */
static int engine_chunk_size(lua_State *L) {
  size_t n, v;
  const char *p = luaL_checklstring(L, 1, &n);
  lua_Integer bits = luaL_checkinteger(L, 2);
  size_t max = bits == 32 ? (size_t)0xffffffffu : (size_t)-1;
  luaL_argcheck(L, bits == 32 || (bits == 64 && sizeof(size_t) == 8), 2,
                "32, or 64 on a 64-bit build");
  luaL_argcheck(L, n > 0 && strspn(p, "0123456789") == n, 1, "digits");
  if (!smtpd_digits(p, n, max, &v) || v > (size_t)LUA_MAXINTEGER)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

void smtpd_open_engine(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", engine_gc}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
    {"feed", engine_feed}, {"buffered", engine_buffered}, {NULL, NULL}
  };
  smtpd_new_class(L, ENGINE_MT, meta, methods);
  lua_pushcfunction(L, engine_new);
  lua_setfield(L, -2, "engine");
  lua_pushcfunction(L, engine_chunk_size);
  lua_setfield(L, -2, "chunk_size");
}

#endif
