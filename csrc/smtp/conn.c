/*
 * The connection as Lua sees it: a smtpd.conn box over the channel, whose
 * fields (smtpd's channel attributes) read and write the C state, and
 * whose lists (rcpttos, mail_options, rcpt_options) are live views of it.
 * The Lua channel class (lua/smtpd/channel.lua) maps its fields here by
 * the names of core.FIELDS.
 */
#include <string.h>

#include "core/glue.h"

#define SMTPD_FIELDS(X) \
  X(smtp_state, 1) X(seen_greeting, 1) X(mailfrom, 1) X(rcpttos, 1) \
  X(mail_options, 1) X(rcpt_options, 1) X(received_data, 1) \
  X(received_lines, 1) X(fqdn, 1) X(peer, 0) X(addr, 0) \
  X(extended_smtp, 1) X(require_SMTPUTF8, 1) X(enable_SMTPUTF8, 1) \
  X(data_size_limit, 1) X(num_bytes, 1) X(command_size_limit, 1) \
  X(tls, 0) X(auth_user, 0) X(auth_failures, 0)

#define FIELD_ENUM(name, rw) F_##name,
enum { SMTPD_FIELDS(FIELD_ENUM) NFIELDS };
#undef FIELD_ENUM

#define FIELD_DEF(name, rw) {#name, rw},
static const struct {
  const char *name;
  int writable;
} conn_fields[NFIELDS] = { SMTPD_FIELDS(FIELD_DEF) };
#undef FIELD_DEF

static smtpd_channel *conn_check(lua_State *L, int idx) {
  return SMTPD_OWNER(smtpd_channel, smtpd_handle_check(L, idx, SMTPD_CONN_MT,
                                                       "the connection"));
}

/* The field keeps its old value. */
static int conn_nomem(lua_State *L) {
  return luaL_error(L, "out of memory");
}

static int conn_field(lua_State *L, int idx) {
  const char *k = luaL_checkstring(L, idx);
  int i;
  for (i = 0; i < NFIELDS; i++)
    if (strcmp(k, conn_fields[i].name) == 0) return i;
  return luaL_argerror(L, idx, "not a channel field");
}

/* A string list the garbage collector frees: scratch that a raise (a
 * user's __index or __len, memory) cannot leak. */
static int scratch_list_gc(lua_State *L) {
  smtpd_strlist_clear(lua_touserdata(L, 1));
  return 0;
}

static smtpd_strlist *scratch_list(lua_State *L) {
  smtpd_strlist *l = lua_newuserdatauv(L, sizeof *l, 0);
  memset(l, 0, sizeof *l);
  if (luaL_newmetatable(L, "smtpd.scratchlist")) {
    lua_pushcfunction(L, scratch_list_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return l;
}

/* ---- methods --------------------------------------------------------------- */

static int conn_push_line(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n;
  const char *line = luaL_checklstring(L, 2, &n);
  if (!smtpd_reply_text_ok(line, n))
    return luaL_argerror(L, 2, n > SMTPD_REPLY_MAX ?
                         "a reply line is at most 510 bytes" :
                         "a reply line must not contain CR, LF or NUL");
  smtpd_reply_raw(&ch->s, line, n);
  smtpd_channel_after_lua(ch);
  return 0;
}

/* challenge(conn, text): "334 " .. text (base64 already), which RFC 4954
 * lets be as long as an AUTH line. The caller then yields core.LINE. */
static int conn_challenge(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n;
  const char *t = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, n <= SMTPD_AUTH_LINE_MAX && strcspn(t, "\r\n") == n, 2,
                "a challenge is one line of base64");
  luaL_argcheck(L, ch->hook == SMTPD_HOOK_COMMAND, 1,
                "a challenge is sent from AUTH only");
  if (smtpd_buf_reserve(&ch->out, n + 6)) return conn_nomem(L);
  smtpd_buf_append(&ch->out, "334 ", 4);
  smtpd_buf_append(&ch->out, t, n);
  smtpd_buf_append(&ch->out, "\r\n", 2);
  smtpd_channel_after_lua(ch);
  return 0;
}

/* auth_done(conn, user): AUTH succeeded for user (the reply is the
 * caller's). auth_failed(conn) -> failures so far in this session. */
static int conn_auth_done(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n;
  const char *u = luaL_checklstring(L, 2, &n);
  if (smtpd_str_set(&ch->s.auth_user, u, n)) return conn_nomem(L);
  ch->s.authed = 1;
  return 0;
}

static int conn_auth_failed(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  lua_pushinteger(L, (lua_Integer)++ch->s.auth_failures);
  return 1;
}

static int conn_close_when_done(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  ch->close_when_done = 1;
  smtpd_channel_after_lua(ch);
  return 0;
}

static int conn_close(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SMTPD_CONN_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

/* Pushes {KEYWORD = value or true, ...}, as smtpd's _getparams. */
static void conn_push_params(lua_State *L, const smtpd_strlist *l) {
  size_t i;
  lua_createtable(L, 0, (int)l->n);
  for (i = 0; i < l->n; i++) {
    const char *p = l->v[i].p, *eq = memchr(p, '=', l->v[i].len);
    if (eq) {
      lua_pushlstring(L, p, (size_t)(eq - p));
      lua_pushlstring(L, eq + 1, l->v[i].len - (size_t)(eq - p) - 1);
    } else {
      lua_pushlstring(L, p, l->v[i].len);
      lua_pushboolean(L, 1);
    }
    lua_rawset(L, -3);
  }
}

/* builtin(conn, verb, arg, check): the built-in command. With check, a
 * MAIL or RCPT that passes the built-in checks is not stored or answered:
 * it returns address, params for the script's check, then settle(). */
static int conn_builtin(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  smtpd_session *s = &ch->s;
  size_t n, an = 0;
  const char *verb = luaL_checklstring(L, 2, &n);
  const char *arg = luaL_optlstring(L, 3, NULL, &an);
  int v = smtpd_verb_lookup(verb, n);
  luaL_argcheck(L, v >= 0, 2, "not a built-in command");
  s->check = lua_toboolean(L, 4) &&
             (v == SMTPD_VERB_MAIL || v == SMTPD_VERB_RCPT);
  smtpd_session_builtin(s, v, arg, an);
  if (s->pending && !s->check) {
    /* A relay's command: the upstream settles it (the hook goes on, the
     * channel waits). */
    smtpd_relaying_held(ch);
    return 0;
  }
  s->check = 0;
  if (s->quit) ch->close_when_done = 1;
  smtpd_channel_after_lua(ch);
  if (!s->pending) return 0;
  lua_pushlstring(L, s->pending_path.p, s->pending_path.len);
  conn_push_params(L, v == SMTPD_VERB_MAIL ? &s->mail_options
                                          : &s->pending_params);
  return 2;
}

/* settle(conn, what, ok, result): the verdict of a script's check on the
 * pending MAIL or RCPT (what: "check_sender"...), as xpcall gave it: nil or
 * false accept with 250 OK, a 2xx reply accepts with it, a 4xx or 5xx
 * refuses with it; an error or anything else is logged and refused with
 * 451. */
static int conn_settle(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  const char *what = luaL_checkstring(L, 2), *r;
  size_t n;
  int code;
  luaL_argcheck(L, ch->s.pending, 1, "no MAIL or RCPT waits for a verdict");
  if (!lua_toboolean(L, 3)) {
    smtpd_channel_log(ch, "error", "error in %s: %s", what,
                      lua_isstring(L, 4) ? lua_tostring(L, 4)
                                         : luaL_typename(L, 4));
    code = -1;
    r = SMTPD_TEXT(LOCAL_ERROR);
    n = SMTPD_TEXT_LEN(LOCAL_ERROR);
  } else {
    code = smtpd_hook_verdict(ch, L, 4, what, &r, &n);
  }
  /* Accepted: nil (250 OK) or a 2xx; refused: 4xx, 5xx or our 451. A
   * relay asks its upstream about what the script accepted. */
  if (ch->s.relay && code >= 0 && code < 400) {
    smtpd_relaying_held(ch);
    return 0;
  }
  smtpd_session_settle(&ch->s, code >= 0 && code < 400, code ? r : NULL, n);
  if (code == 421) ch->close_when_done = 1;
  smtpd_channel_after_lua(ch);
  return 0;
}

/* getaddr(conn, keyword, arg) -> address, params | nil, reply: the core's
 * own parsing of a MAIL FROM:/RCPT TO: argument (keyword "FROM:", "TO:"),
 * as smtpd's _getaddr and _getparams; reply is the 501 the built-in
 * command would send. */
static int conn_getaddr(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  const char *kw = luaL_checkstring(L, 2);
  size_t n = 0, rn;
  const char *arg = luaL_optlstring(L, 3, NULL, &n), *rest;
  smtpd_addr o;
  smtpd_strlist *params;
  char reply[128];
  luaL_argcheck(L, *kw && kw[strlen(kw) - 1] == ':', 2,
                "a keyword such as \"FROM:\" or \"TO:\"");
  if (smtpd_session_path(&ch->s, kw, arg, n, &o, &rest, &rn)) {
    params = scratch_list(L);     /* freed by the collector, raise or not */
    if (smtpd_params_split(rest, rn, params)) return conn_nomem(L);
    if (smtpd_params_valid(params)) {
      lua_pushlstring(L, o.buf, o.len);
      conn_push_params(L, params);
      return 2;
    }
    lua_pop(L, 1);
  }
  smtpd_syntax_reply(&ch->s, kw, reply, sizeof reply);
  lua_pushnil(L);
  lua_pushstring(L, reply);
  return 2;
}

static int conn_unknown(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n;
  const char *verb = luaL_checklstring(L, 2, &n);
  smtpd_session_unknown(&ch->s, verb, n);
  smtpd_channel_after_lua(ch);
  return 0;
}

static int conn_is_open(lua_State *L) {
  lua_pushboolean(L, smtpd_handle_get(L, 1, SMTPD_CONN_MT) != NULL);
  return 1;
}

static int conn_getpeername(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  smtpd_push_addr(L, (struct sockaddr *)&ch->peer);
  return 1;
}

static int conn_getsockname(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss, err;
  if (ch->shared->unix_path) {
    /* The same {host, port} as the peer's: {"unix:/path", 0}. */
    smtpd_push_addr(L, (struct sockaddr *)&ch->peer);
    return 1;
  }
  err = uv_tcp_getsockname(&ch->tcp.tcp, (struct sockaddr *)&ss, &len);
  if (err) return smtpd_fail(L, err);
  smtpd_push_addr(L, (struct sockaddr *)&ss);
  return 1;
}

/* server(conn) -> the Lua server object */
static int conn_server(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  return 1;
}

static int conn_tostring(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SMTPD_CONN_MT);
  if (h == NULL) lua_pushliteral(L, "smtpd.conn (closed)");
  else lua_pushfstring(L, "smtpd.conn (%s)",
                       SMTPD_OWNER(smtpd_channel, h)->s.state ? "DATA"
                                                              : "COMMAND");
  return 1;
}

/* ---- live lists ------------------------------------------------------------- */

typedef struct list_ud {
  int which;               /* F_rcpttos, F_mail_options or F_rcpt_options */
} list_ud;

static smtpd_strlist *list_get(smtpd_channel *ch, int which) {
  if (which == F_rcpttos) return &ch->s.rcpttos;
  if (which == F_mail_options) return &ch->s.mail_options;
  return &ch->s.rcpt_options;
}

static smtpd_strlist *list_check(lua_State *L, int idx) {
  list_ud *lu = luaL_checkudata(L, idx, SMTPD_LIST_MT);
  smtpd_channel *ch;
  lua_getiuservalue(L, idx, 1);
  ch = conn_check(L, -1);
  lua_pop(L, 1);
  return list_get(ch, lu->which);
}

/* Pushes the view of list `which` of the conn box at index 1: one per
 * list and connection, so self.rcpttos == self.rcpttos. */
static void list_push(lua_State *L, int which) {
  int slot = which == F_rcpttos ? 1 : which == F_mail_options ? 2 : 3;
  list_ud *lu;
  if (lua_getiuservalue(L, 1, slot) == LUA_TUSERDATA) return;
  lua_pop(L, 1);
  lu = lua_newuserdatauv(L, sizeof *lu, 1);
  lu->which = which;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, SMTPD_LIST_MT);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, slot);
}

static int list_index(lua_State *L) {
  smtpd_strlist *l = list_check(L, 1);
  lua_Integer i = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 0;
  if (i >= 1 && (size_t)i <= l->n)
    lua_pushlstring(L, l->v[i - 1].p, l->v[i - 1].len);
  else
    lua_pushnil(L);
  return 1;
}

static int list_newindex(lua_State *L) {
  smtpd_strlist *l = list_check(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && (size_t)i <= l->n + 1, 2,
                "index out of range (lists have no holes)");
  if (lua_isnil(L, 3)) {
    luaL_argcheck(L, (size_t)i >= l->n, 2,
                  "only the last element can be set to nil");
    if ((size_t)i == l->n) smtpd_strlist_remove(l, (size_t)i - 1);
  } else {
    size_t n;
    const char *v = luaL_checklstring(L, 3, &n);
    if (smtpd_strlist_set(l, (size_t)i - 1, v, n))
      return luaL_error(L, "out of memory");
  }
  return 0;
}

static int list_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)list_check(L, 1)->n);
  return 1;
}

static int list_next(lua_State *L) {
  smtpd_strlist *l = list_check(L, 1);
  lua_Integer i = luaL_optinteger(L, 2, 0) + 1;
  if (i < 1 || (size_t)i > l->n) return 0;
  lua_pushinteger(L, i);
  lua_pushlstring(L, l->v[i - 1].p, l->v[i - 1].len);
  return 2;
}

static int list_pairs(lua_State *L) {
  list_check(L, 1);
  lua_pushcfunction(L, list_next);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  return 3;
}

static int list_tostring(lua_State *L) {
  smtpd_strlist *l = list_check(L, 1);
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '{');
  for (i = 0; i < l->n; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addchar(&b, '"');
    luaL_addlstring(&b, l->v[i].p, l->v[i].len);
    luaL_addchar(&b, '"');
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  return 1;
}

/* Replaces l with the strings of the list at idx: a table, or a list-like
 * value (__len and __index), such as another of these views. l changes
 * only once every string is had. */
static void list_assign(lua_State *L, smtpd_strlist *l, int idx) {
  lua_Integer i, n;
  smtpd_strlist *fresh;
  idx = lua_absindex(L, idx);
  if (lua_isnoneornil(L, idx)) {
    smtpd_strlist_clear(l);
    return;
  }
  if (!lua_istable(L, idx)) {
    if (!luaL_getmetafield(L, idx, "__len"))
      luaL_error(L, "a list of strings is needed");
    lua_pop(L, 1);
  }
  fresh = scratch_list(L);
  n = luaL_len(L, idx);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_geti(L, idx, i);
    s = lua_tolstring(L, -1, &len);
    if (s == NULL) luaL_error(L, "a list of strings is needed");
    if (smtpd_strlist_push(fresh, s, len)) conn_nomem(L);
    lua_pop(L, 1);
  }
  smtpd_strlist_clear(l);
  *l = *fresh;                 /* taken over: the scratch is left empty */
  memset(fresh, 0, sizeof *fresh);
  lua_pop(L, 1);
}

/* ---- fields ------------------------------------------------------------------ */

/* get(conn, field) */
static int conn_get(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  smtpd_session *s = &ch->s;
  int f = conn_field(L, 2);
  switch (f) {
  case F_smtp_state: lua_pushinteger(L, s->state); break;
  case F_seen_greeting:
    lua_pushlstring(L, s->greeting.p ? s->greeting.p : "", s->greeting.len);
    break;
  case F_mailfrom:
    if (s->has_mailfrom) lua_pushlstring(L, s->mailfrom.p, s->mailfrom.len);
    else lua_pushnil(L);
    break;
  case F_rcpttos:
  case F_mail_options:
  case F_rcpt_options: list_push(L, f); break;
  case F_received_data:
    if (ch->received.p && ch->received_gen == s->rset_gen)
      lua_pushlstring(L, ch->received.p, ch->received.len);
    else
      lua_pushliteral(L, "");
    break;
  case F_received_lines:
    lua_createtable(L, 1, 0);
    if (!s->parser.data_mode && s->parser.st == 0 && s->parser.line.len) {
      lua_pushlstring(L, s->parser.line.p, s->parser.line.len);
      lua_rawseti(L, -2, 1);
    }
    break;
  case F_fqdn: lua_pushlstring(L, s->fqdn.p ? s->fqdn.p : "", s->fqdn.len);
    break;
  case F_peer:
  case F_addr: smtpd_push_addr(L, (struct sockaddr *)&ch->peer); break;
  case F_extended_smtp: lua_pushboolean(L, s->extended_smtp); break;
  case F_require_SMTPUTF8: lua_pushboolean(L, s->require_smtputf8); break;
  case F_enable_SMTPUTF8: lua_pushboolean(L, s->enable_smtputf8); break;
  case F_data_size_limit:
    lua_pushinteger(L, (lua_Integer)s->data_size_limit);
    break;
  case F_num_bytes: lua_pushinteger(L, (lua_Integer)s->num_bytes); break;
  case F_command_size_limit:
    lua_pushinteger(L, (lua_Integer)s->command_size_limit);
    break;
  case F_tls: smtpd_push_tls(L, ch); break;
  case F_auth_user:
    if (s->authed) lua_pushlstring(L, s->auth_user.p, s->auth_user.len);
    else lua_pushnil(L);
    break;
  case F_auth_failures:
    lua_pushinteger(L, (lua_Integer)s->auth_failures);
    break;
  default: break;
  }
  return 1;
}

static size_t conn_size_arg(lua_State *L, int idx) {
  lua_Integer v;
  if (!lua_toboolean(L, idx)) return 0;
  v = luaL_checkinteger(L, idx);
  luaL_argcheck(L, v >= 0, idx, "must not be negative");
  return (size_t)v;
}

/* set(conn, field, value) */
static int conn_set(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  smtpd_session *s = &ch->s;
  int f = conn_field(L, 2);
  size_t n;
  const char *v;
  luaL_argcheck(L, conn_fields[f].writable, 2, "read-only channel field");
  switch (f) {
  case F_smtp_state: {
    lua_Integer st = luaL_checkinteger(L, 3);
    luaL_argcheck(L, st == SMTPD_COMMAND || st == SMTPD_DATA, 3,
                  "smtp_state is COMMAND (0) or DATA (1)");
    s->state = (int)st;
    break;
  }
  case F_seen_greeting:
    v = lua_toboolean(L, 3) ? luaL_checklstring(L, 3, &n) : "";
    if (!lua_toboolean(L, 3)) n = 0;
    if (smtpd_str_set(&s->greeting, v, n)) return conn_nomem(L);
    break;
  case F_mailfrom:
    if (!lua_toboolean(L, 3)) {
      smtpd_str_free(&s->mailfrom);
      s->has_mailfrom = 0;
    } else {
      v = luaL_checklstring(L, 3, &n);
      if (smtpd_str_set(&s->mailfrom, v, n)) return conn_nomem(L);
      s->has_mailfrom = 1;
    }
    break;
  case F_rcpttos: list_assign(L, &s->rcpttos, 3); break;
  case F_mail_options: list_assign(L, &s->mail_options, 3); break;
  case F_rcpt_options: list_assign(L, &s->rcpt_options, 3); break;
  case F_received_data:
    if (!lua_isnoneornil(L, 3)) {
      smtpd_buf b = {0};
      luaL_checktype(L, 3, LUA_TSTRING);
      v = lua_tolstring(L, 3, &n);
      if (smtpd_buf_reserve(&b, n)) return conn_nomem(L);
      if (n) memcpy(b.p, v, n);
      b.len = n;
      b.p[n] = '\0';
      smtpd_buf_free(&ch->received);
      ch->received = b;
      ch->received_gen = s->rset_gen;
    } else {
      smtpd_buf_free(&ch->received);
    }
    break;
  case F_received_lines: luaL_checktype(L, 3, LUA_TTABLE); break;
  case F_fqdn:
    v = luaL_checklstring(L, 3, &n);
    if (smtpd_str_set(&s->fqdn, v, n)) return conn_nomem(L);
    break;
  case F_extended_smtp: s->extended_smtp = lua_toboolean(L, 3); break;
  case F_require_SMTPUTF8: s->require_smtputf8 = lua_toboolean(L, 3); break;
  case F_enable_SMTPUTF8: s->enable_smtputf8 = lua_toboolean(L, 3); break;
  case F_data_size_limit: s->data_size_limit = conn_size_arg(L, 3); break;
  case F_num_bytes: s->num_bytes = conn_size_arg(L, 3); break;
  case F_command_size_limit: {
    size_t limit = conn_size_arg(L, 3);
    luaL_argcheck(L, limit > 0 && limit <= 1048576, 3,
                  "command_size_limit must be 1..1048576");
    s->command_size_limit = limit;
    break;
  }
  default: break;
  }
  smtpd_channel_after_lua(ch);
  return 0;
}

void smtpd_open_conn(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"push", conn_push_line}, {"close_when_done", conn_close_when_done},
    {"close", conn_close}, {"builtin", conn_builtin},
    {"unknown", conn_unknown}, {"get", conn_get}, {"set", conn_set},
    {"is_open", conn_is_open}, {"getpeername", conn_getpeername},
    {"getsockname", conn_getsockname}, {"wake", smtpd_hook_wake},
    {"server", conn_server}, {"settle", conn_settle},
    {"getaddr", conn_getaddr}, {"challenge", conn_challenge},
    {"auth_done", conn_auth_done}, {"auth_failed", conn_auth_failed},
    {NULL, NULL}
  };
  static const luaL_Reg listmeta[] = {
    {"__index", list_index}, {"__newindex", list_newindex},
    {"__len", list_len}, {"__pairs", list_pairs},
    {"__tostring", list_tostring}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {{"__tostring", conn_tostring},
                                  {NULL, NULL}};
  int i;
  smtpd_new_class(L, SMTPD_CONN_MT, meta, methods);
  smtpd_new_class(L, SMTPD_LIST_MT, listmeta, NULL);
  /* core.FIELDS: name -> "rw" or "ro"; core.VERBS: the built-in verbs. */
  lua_createtable(L, 0, NFIELDS);
  for (i = 0; i < NFIELDS; i++) {
    lua_pushstring(L, conn_fields[i].writable ? "rw" : "ro");
    lua_setfield(L, -2, conn_fields[i].name);
  }
  lua_setfield(L, -2, "FIELDS");
  lua_createtable(L, SMTPD_NVERBS, 0);
  for (i = 0; i < SMTPD_NVERBS; i++) {
    lua_pushstring(L, smtpd_verb_names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "VERBS");
  /* core.REPLIES: name -> text of every reply the core sends (a %s in a
   * text is a string argument, for string.format). */
  lua_createtable(L, 0, SMTPD_NREPLIES);
  for (i = 0; i < SMTPD_NREPLIES; i++) {
    lua_pushlstring(L, smtpd_replies[i].text, smtpd_replies[i].len);
    lua_setfield(L, -2, smtpd_replies[i].name);
  }
  lua_setfield(L, -2, "REPLIES");
}
