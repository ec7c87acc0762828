/*
 * Lua hooks: a command line or a message that Lua handles runs in a
 * coroutine. A hook that waits inside one of smtpd's helpers (sendmail,
 * sleep) yields the WAIT token: the channel parks (input is held, not
 * parsed) until the helper wakes it, so replies stay in order while every
 * other connection goes on.
 *
 * Built-in commands the channel class does not override never get here:
 * which ones it overrides is looked up once per class (smtpd_cls_cache),
 * and again only when some class gained a method (smtpd_class_gen).
 *
 * The Lua channel object is made only when something needs it (a hook
 * runs, or the channel class is not the plain SMTPChannel). A connection
 * of the plain class is a C struct and nothing else until its messages
 * reach process_message.
 */
#include <string.h>

#include "core/glue.h"

/* What a hook yields while it waits inside one of smtpd's helpers. */
static char hook_wait_token;
/* What the AUTH driver yields to wait for the client's next line. */
static char hook_line_token;

void smtpd_hook_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* The conn box keeps its three list views (conn.c) as user values. */
void smtpd_conn_push(lua_State *L, smtpd_channel *ch) {
  smtpd_handle_push_box(L, &ch->h, SMTPD_CONN_MT, 3);
}

/* ---- the class cache ------------------------------------------------------ */

/* Looks the class up again: which built-in verbs it overrides, whether it
 * adds any. The class is at the top of the stack, the server object below
 * it: a server that checks senders or recipients (check_sender,
 * check_recipient) has MAIL or RCPT go through Lua as if overridden. */
static void hook_class_info(lua_State *L, smtpd_cls_cache *c) {
  int cls = lua_gettop(L), v;
  char name[16];
  c->cls = lua_topointer(L, cls);
  c->gen = smtpd_class_gen;
  c->mask = 0;
  smtpd_setup_get(L, "base");
  c->custom = !lua_rawequal(L, -1, cls);
  lua_pop(L, 1);
  smtpd_setup_get(L, "builtins");
  for (v = 0; v < SMTPD_NVERBS; v++) {
    memcpy(name, "smtp_", 5);
    memcpy(name + 5, smtpd_verb_names[v], 5);
    lua_getfield(L, cls, name);
    lua_getfield(L, -2, smtpd_verb_names[v]);
    if (!lua_rawequal(L, -1, -2)) c->mask |= 1u << v;
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, cls - 1, "check_sender") != LUA_TNIL)
    c->mask |= 1u << SMTPD_VERB_MAIL;
  if (lua_getfield(L, cls - 1, "check_recipient") != LUA_TNIL)
    c->mask |= 1u << SMTPD_VERB_RCPT;
  lua_pop(L, 2);
  smtpd_setup_get(L, "scan");
  lua_pushvalue(L, cls);
  smtpd_lua_calls++;
  lua_call(L, 1, 1);
  c->has_extra = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

/* Pushes the Lua channel object, making it on first use. */
static void hook_push_obj(lua_State *L, smtpd_channel *ch) {
  if (ch->obj_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->obj_ref);
    return;
  }
  smtpd_setup_get(L, "make");
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->class_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  smtpd_conn_push(L, ch);
  smtpd_lua_calls++;
  lua_call(L, 3, 1);
  if (!lua_istable(L, -1)) luaL_error(L, "channel_class did not make a table");
  if (ch->h.closing) return;
  lua_pushvalue(L, -1);
  ch->obj_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int hook_lua_accept(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  smtpd_server *srv = lua_touserdata(L, 2);
  int cls;
  lua_rawgeti(L, LUA_REGISTRYINDEX, srv->obj_ref);
  lua_pushvalue(L, -1);
  ch->server_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "channel_class");
  cls = lua_gettop(L);
  if (!lua_istable(L, cls)) luaL_error(L, "channel_class is not a class");
  if (srv->cls.cls != lua_topointer(L, cls) || srv->cls.gen != smtpd_class_gen)
    hook_class_info(L, &srv->cls);
  ch->cls = srv->cls;
  lua_pushvalue(L, cls);
  ch->class_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Behind a proxy the object waits for the client's real address. */
  if (ch->cls.custom && !ch->proxy_wait) hook_push_obj(L, ch);
  return 0;
}

static int hook_lua_proxied(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  if (ch->cls.custom) hook_push_obj(L, ch);
  return 0;
}

static int hook_lua_recheck(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->class_ref);
  hook_class_info(L, &ch->cls);
  return 0;
}

/* Runs f(a, b) protected; logs and returns non-zero on error. */
static int hook_pcall(smtpd_channel *ch, lua_CFunction f, void *a, void *b) {
  lua_State *L = ch->h.map->L;
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    smtpd_channel_log(ch, "error", "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int smtpd_hook_accept(smtpd_channel *ch, smtpd_server *srv) {
  return hook_pcall(ch, hook_lua_accept, ch, srv);
}

int smtpd_hook_proxied(smtpd_channel *ch) {
  return hook_pcall(ch, hook_lua_proxied, ch, NULL);
}

static void hook_start(smtpd_channel *ch, int kind, int nargs);

/* connect(server, peer): channel.lua's, which calls
 * server:check_connection(peer). */
static int hook_lua_connect(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  if (smtpd_setup_get(L, "connect") != LUA_TFUNCTION)
    return luaL_error(L, "check_connection: no connect function");
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  smtpd_push_addr(L, (struct sockaddr *)&ch->peer);
  hook_start(ch, SMTPD_HOOK_CONNECT, 2);
  return 0;
}

int smtpd_hook_connect(smtpd_channel *ch) {
  return hook_pcall(ch, hook_lua_connect, ch, NULL);
}

/* ---- running hooks --------------------------------------------------------- */

/* The traceback of the error in co, as a string on L (protected: it
 * may need memory). */
static int hook_lua_traceback(lua_State *L) {
  lua_State *co = lua_touserdata(L, 1);
  const char *msg = lua_tostring(co, -1);
  luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
  return 1;
}

static void hook_error(smtpd_channel *ch, lua_State *co, const char *what,
                       int message) {
  lua_State *L = ch->h.map->L;
  lua_pushcfunction(L, hook_lua_traceback);
  lua_pushlightuserdata(L, co);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK)
    smtpd_channel_log(ch, "error", "error in %s: %s", what,
                      lua_tostring(L, -1));
  else
    smtpd_channel_log(ch, "error", "error in %s (no traceback: %s)", what,
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  if (message == 1)
    smtpd_say_message(&ch->s, SMTPD_R_LOCAL_ERROR);
  else if (message == 0)
    smtpd_say(&ch->s, SMTPD_R_LOCAL_ERROR);
}

int smtpd_hook_verdict(smtpd_channel *ch, lua_State *L, int idx,
                       const char *what, const char **reply, size_t *n) {
  int t = lua_type(L, idx), code;
  *reply = NULL;
  *n = 0;
  if (t == LUA_TNONE || t == LUA_TNIL ||
      (t == LUA_TBOOLEAN && !lua_toboolean(L, idx)))
    return 0;
  if (t == LUA_TSTRING) {
    *reply = lua_tolstring(L, idx, n);
    if ((code = smtpd_final_reply(*reply, *n, "245")) != 0) return code;
  }
  {
    /* What it returned, printable and short, for the log line. */
    char shown[84];
    size_t i, k = 0;
    for (i = 0; *reply && i < *n && k < 80; i++) {
      unsigned char c = (unsigned char)(*reply)[i];
      shown[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    shown[k] = '\0';
    smtpd_channel_log(ch, "error", "%s returned a malformed reply "
                      "(%s%s%s%s); answering %s", what,
                      *reply ? "\"" : luaL_typename(L, idx),
                      *reply ? shown : "", *reply && *n > 80 ? "..." : "",
                      *reply ? "\"" : "",
                      strcmp(what, "check_connection") ? "451" : "421");
  }
  *reply = SMTPD_TEXT(LOCAL_ERROR);
  *n = SMTPD_TEXT_LEN(LOCAL_ERROR);
  return -1;
}

/* LMTP: a table of replies, one per recipient in RCPT order; 0, or -1
 * (logged) when it has not exactly one entry per recipient. */
static int hook_lmtp_replies(smtpd_channel *ch, lua_State *co, int idx) {
  smtpd_session *s = &ch->s;
  size_t k, n = s->msg_rcpts;
  int closing = 0;
  idx = lua_absindex(co, idx);
  if (lua_rawlen(co, idx) != n) {
    smtpd_channel_log(ch, "error", "process_message returned %d replies "
                      "for %d recipients; answering 451 to each",
                      (int)lua_rawlen(co, idx), (int)n);
    return -1;
  }
  for (k = 1; k <= n; k++) {
    const char *r;
    size_t len;
    int code;
    lua_rawgeti(co, idx, (lua_Integer)k);
    code = smtpd_hook_verdict(ch, co, -1, "process_message", &r, &len);
    if (code == 0) SAY(s, OK);
    else smtpd_reply(s, r, len);
    if (code == 421) closing = 1;
    lua_pop(co, 1);
  }
  if (closing) ch->close_when_done = 1;
  return 0;
}

/* A finished message hook: its verdict is the reply (nil: 250 OK); under
 * LMTP the one reply goes to each recipient, or a table has one each. */
static void hook_message_result(smtpd_channel *ch, lua_State *co, int nres) {
  const char *r;
  size_t n;
  int idx = nres > 0 ? -nres : lua_gettop(co) + 1, code;
  if (ch->s.lmtp && nres > 0 && lua_istable(co, idx)) {
    smtpd_session_post_data(&ch->s);
    if (hook_lmtp_replies(ch, co, idx))
      smtpd_say_message(&ch->s, SMTPD_R_LOCAL_ERROR);
    return;
  }
  code = smtpd_hook_verdict(ch, co, idx, "process_message", &r, &n);
  smtpd_session_post_data(&ch->s);
  if (code == 0) smtpd_say_message(&ch->s, SMTPD_R_OK);
  else smtpd_session_message_reply(&ch->s, r, n);
  /* 421 says the server closes the session: it does. */
  if (code == 421) ch->close_when_done = 1;
}

/* A finished check_connection: nil (or a 2xx) greets the client; any
 * other reply refuses it and closes; an error or a bad verdict is our
 * fault: 421, try later. */
static void hook_connect_result(smtpd_channel *ch, lua_State *co,
                                int status, int nres) {
  const char *r;
  size_t n;
  int code = -1;
  if (status != LUA_OK) {
    hook_error(ch, co, "check_connection", 2);
  } else {
    code = smtpd_hook_verdict(ch, co, nres > 0 ? -nres : lua_gettop(co) + 1,
                              "check_connection", &r, &n);
  }
  if (code == 0 || (code >= 200 && code < 300)) {
    smtpd_channel_greet(ch);
    return;
  }
  if (code > 0) smtpd_reply(&ch->s, r, n);
  else smtpd_sayf(&ch->s, SMTPD_R_CONNECT_TEMPFAIL, ch->s.fqdn.p);
  ch->close_when_done = 1;
}

/* Resumes the hook coroutine; returns 1 when it finished. */
static int hook_resume(smtpd_channel *ch, lua_State *co, int nargs) {
  lua_State *L = ch->h.map->L;
  int nres = 0, status, kind = ch->hook;
  smtpd_lua_calls++;
  ch->in_process++;
  status = lua_resume(co, L, nargs, &nres);
  ch->in_process--;
  if (status == LUA_YIELD) {
    if (nres >= 1 && lua_touserdata(co, -nres) == &hook_wait_token) {
      lua_pop(co, nres);
      ch->parked = 1;
      return 0;
    }
    if (nres >= 1 && lua_touserdata(co, -nres) == &hook_line_token &&
        kind == SMTPD_HOOK_COMMAND) {
      /* Parsing goes on; the next line is the hook's (hook_answer). */
      lua_pop(co, nres);
      ch->awaiting = 1;
      return 0;
    }
    lua_pop(co, nres);
    lua_pushstring(co, "a hook yielded outside smtpd's waiting helpers");
    status = LUA_ERRRUN;
    nres = 1;
  }
  ch->parked = 0;
  ch->awaiting = 0;
  ch->hook = SMTPD_HOOK_NONE;
  if (!ch->h.closing) {
    if (kind == SMTPD_HOOK_CONNECT) {
      hook_connect_result(ch, co, status, nres);
    } else if (status != LUA_OK) {
      if (kind == SMTPD_HOOK_MESSAGE) smtpd_session_post_data(&ch->s);
      hook_error(ch, co, kind == SMTPD_HOOK_MESSAGE ? "process_message"
                                                    : "command handler",
                 kind == SMTPD_HOOK_MESSAGE);
    } else if (kind == SMTPD_HOOK_MESSAGE) {
      hook_message_result(ch, co, nres);
    }
    smtpd_session_sync(&ch->s);
    if (ch->s.quit) ch->close_when_done = 1;
    smtpd_channel_check_shutdown(ch);
  }
  lua_settop(co, 0);
  smtpd_hook_unref(L, &ch->thread_ref);
  return 1;
}

/* hooks[thread] = conn while a hook runs, so the waiting helpers find the
 * connection of the coroutine they run in (core.hook(co)). Weak keys. */
static void hook_push_hooks(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "smtpd.hooks") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "smtpd.hooks");
  }
}

/* Starts a hook: the stack of L holds the function and nargs arguments. */
static void hook_start(smtpd_channel *ch, int kind, int nargs) {
  lua_State *L = ch->h.map->L;
  lua_State *co = lua_newthread(L);
  hook_push_hooks(L);
  lua_pushvalue(L, -2);
  smtpd_conn_push(L, ch);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  ch->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_xmove(L, co, nargs + 1);
  ch->hook = kind;
  hook_resume(ch, co, nargs);
}

static int hook_lua_command(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  const smtpd_command *cmd = lua_touserdata(L, 2);
  smtpd_setup_get(L, "command");
  hook_push_obj(L, ch);
  if (ch->h.closing) return 0;
  lua_pushlstring(L, cmd->name, cmd->name_len);
  if (cmd->arg) lua_pushlstring(L, cmd->arg, cmd->arg_len);
  else lua_pushnil(L);
  hook_start(ch, SMTPD_HOOK_COMMAND, 3);
  return 0;
}

/* Pushes the value of key in parameters as sent ("K=V K=V"), upper-cased
 * when up; nil when absent. */
static void push_param(lua_State *L, const char *p, size_t n,
                       const char *key, int up) {
  const char *val;
  size_t vlen, i;
  if (p == NULL || !smtpd_param_raw(p, n, key, &val, &vlen)) {
    lua_pushnil(L);
    return;
  }
  if (!up) {
    lua_pushlstring(L, val, vlen);
    return;
  }
  {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (i = 0; i < vlen; i++) luaL_addchar(&b, smtpd_upper(val[i]));
    luaL_pushresult(&b);
  }
}

/* kwargs.dsn = {ret =, envid =, rcpt = {[address] = {notify =, orcpt =}}}:
 * what RFC 3461's parameters said (absent ones nil). */
static void hook_push_dsn(lua_State *L, const smtpd_session *s) {
  size_t i;
  lua_createtable(L, 0, 3);
  push_param(L, s->dsn_mail.p, s->dsn_mail.len, "RET", 1);
  lua_setfield(L, -2, "ret");
  push_param(L, s->dsn_mail.p, s->dsn_mail.len, "ENVID", 0);
  lua_setfield(L, -2, "envid");
  lua_createtable(L, 0, (int)s->rcpt_dsn.n);
  for (i = 0; i < s->rcpt_dsn.n; i++) {
    const char *e = s->rcpt_dsn.v[i].p;
    size_t n = s->rcpt_dsn.v[i].len;
    const char *nl = memchr(e, '\n', n);
    size_t pl;
    if (nl == NULL) continue;
    pl = (size_t)(nl - e);
    lua_pushlstring(L, nl + 1, n - pl - 1);
    lua_createtable(L, 0, 2);
    push_param(L, e, pl, "NOTIFY", 1);
    lua_setfield(L, -2, "notify");
    push_param(L, e, pl, "ORCPT", 0);
    lua_setfield(L, -2, "orcpt");
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "rcpt");
}

static int hook_lua_message(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  smtpd_session *s = &ch->s;
  smtpd_buf *d = &s->parser.data;
  if (ch->h.map->debug)
    smtpd_channel_log(ch, "debug", "message: %zu bytes from <%.*s> to %zu "
                      "recipient(s)", d->len, (int)s->mailfrom.len,
                      s->mailfrom.p ? s->mailfrom.p : "", s->rcpttos.n);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  lua_getfield(L, -1, "process_message");
  lua_insert(L, -2);
  smtpd_push_addr(L, (struct sockaddr *)&ch->peer);
  if (s->has_mailfrom) lua_pushlstring(L, s->mailfrom.p, s->mailfrom.len);
  else lua_pushnil(L);
  smtpd_push_strlist(L, &s->rcpttos);
  /* The one copy of the message bytes: into the Lua string. */
  lua_pushlstring(L, d->p ? d->p : "", d->len);
  /* The DKIM body hashes made while it arrived: whole before the data
   * goes (kwargs gets them below). */
  if (ch->shared->conf.dkim_body_hash) smtpd_dkim_stream_finish_channel(ch);
  /* received_data, for a channel object to read: the data buffer itself
   * moves there (no copy); the one it held is freed with the data. */
  if (ch->obj_ref != LUA_NOREF) {
    smtpd_buf old = ch->received;
    ch->received = *d;
    *d = old;
    ch->received_gen = s->rset_gen;
    smtpd_buf_fit(&ch->received);
  }
  smtpd_parser_end_data(&s->parser);
  if (s->decode_data) {
    lua_createtable(L, 0, 0);
  } else {
    lua_createtable(L, 0, 2);
    smtpd_push_strlist(L, &s->mail_options);
    lua_setfield(L, -2, "mail_options");
    smtpd_push_strlist(L, &s->rcpt_options);
    lua_setfield(L, -2, "rcpt_options");
  }
  /* Beside smtpd's keys, only when there is something to say. */
  if (s->dsn) {
    hook_push_dsn(L, s);
    lua_setfield(L, -2, "dsn");
  }
  if (ch->tls) {
    smtpd_push_tls(L, ch);
    lua_setfield(L, -2, "tls");
  }
  if (s->authed) {
    lua_pushlstring(L, s->auth_user.p ? s->auth_user.p : "",
                    s->auth_user.len);
    lua_setfield(L, -2, "auth_user");
  }
  if (ch->shared->conf.dkim_body_hash && smtpd_dkim_stream_push(L, ch))
    lua_setfield(L, -2, "_dkim_bodies");
  hook_start(ch, SMTPD_HOOK_MESSAGE, 6);
  return 0;
}

/* AUTH: auth(channel, mechanism, initial response or nil), the driver in
 * lua/smtpd/auth.lua, as a command hook. */
static int hook_lua_auth(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  const smtpd_command *cmd = lua_touserdata(L, 2);
  size_t mn = smtpd_word_len(cmd->arg, cmd->arg_len);
  const char *init;
  char up[64];
  size_t i;
  smtpd_setup_get(L, "auth");
  hook_push_obj(L, ch);
  if (ch->h.closing) return 0;
  for (i = 0; i < mn && i < sizeof up; i++) up[i] = smtpd_upper(cmd->arg[i]);
  lua_pushlstring(L, up, mn < sizeof up ? mn : sizeof up);
  init = mn < cmd->arg_len ? cmd->arg + mn + 1 : NULL;
  if (init) lua_pushlstring(L, init, cmd->arg_len - mn - 1);
  else lua_pushnil(L);
  hook_start(ch, SMTPD_HOOK_COMMAND, 3);
  return 0;
}

/* The client's answer to an AUTH challenge: the raw line, or nil when it
 * was longer than RFC 4954 allows. */
static void hook_answer(smtpd_channel *ch) {
  lua_State *L = ch->h.map->L, *co;
  smtpd_parser *p = &ch->s.parser;
  int nargs = 1;
  ch->awaiting = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->thread_ref);
  co = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (co == NULL) return;
  if (p->line_len > SMTPD_AUTH_LINE_MAX || p->line_len > p->line.len) {
    lua_pushnil(co);
    lua_pushliteral(co, "too long");
    nargs = 2;
  } else {
    lua_pushlstring(co, p->line.p ? p->line.p : "", p->line_len);
  }
  hook_resume(ch, co, nargs);
}

/* A hook that failed to start (an error making the channel object). */
static void hook_failed(smtpd_channel *ch) {
  ch->hook = SMTPD_HOOK_NONE;
  smtpd_hook_unref(ch->h.map->L, &ch->thread_ref);
  smtpd_say(&ch->s, SMTPD_R_LOCAL_ERROR);
}

/* A complete line, before the session reads it: logged under -d, and
 * taken when an AUTH hook waits for it (1). */
int smtpd_hook_on_line(smtpd_channel *ch) {
  smtpd_session *s = &ch->s;
  if (ch->h.map->debug) {
    /* Credentials never reach a log: AUTH shows its mechanism only. */
    const char *l = s->parser.line.p ? s->parser.line.p : "";
    size_t n = s->parser.line.len;
    if (ch->awaiting) n = 0;
    else if (s->auth_mechs && n > 5 && smtpd_has_keyword(l, n, "AUTH ")) {
      const char *sp = memchr(l + 5, ' ', n - 5);
      if (sp) n = (size_t)(sp - l);
    }
    smtpd_channel_log(ch, "debug", "< %.*s%s", (int)n, l,
                      n < s->parser.line.len ? " (hidden)" : "");
  }
  if (!ch->awaiting) return 0;
  hook_answer(ch);
  return 1;
}

void smtpd_hook_on_auth(smtpd_channel *ch, const smtpd_command *cmd) {
  if (hook_pcall(ch, hook_lua_auth, ch, (void *)cmd)) {
    ch->hook = SMTPD_HOOK_NONE;
    smtpd_hook_unref(ch->h.map->L, &ch->thread_ref);
    SAY(&ch->s, AUTH_TEMPFAIL);
  }
}

/* A command the session gated: 0 when the built-in runs it (not
 * overridden) or answers it (unknown, and the class adds no command);
 * else a Lua hook runs it (1). */
int smtpd_hook_on_command(smtpd_channel *ch, const smtpd_command *cmd) {
  if (ch->cls.gen != smtpd_class_gen &&
      hook_pcall(ch, hook_lua_recheck, ch, NULL)) {
    SAY(&ch->s, LOCAL_ERROR);
    return 1;
  }
  if (cmd->verb >= 0 && !(ch->cls.mask & (1u << cmd->verb))) return 0;
  if (cmd->verb < 0 && !ch->cls.has_extra) return 0;
  if (hook_pcall(ch, hook_lua_command, ch, (void *)cmd)) hook_failed(ch);
  return 1;
}

void smtpd_hook_message(smtpd_channel *ch) {
  if (hook_pcall(ch, hook_lua_message, ch, NULL)) {
    smtpd_session_post_data(&ch->s);
    ch->hook = SMTPD_HOOK_NONE;
    smtpd_hook_unref(ch->h.map->L, &ch->thread_ref);
    smtpd_say_message(&ch->s, SMTPD_R_LOCAL_ERROR);
  }
}

/* A parked hook that is given up (handler_timeout, its connection
 * closing) has what it waits for cancelled: wait.lua registered the
 * helper's handle for the coroutine, and its "abandon" function cancels
 * it (a DNS query, a socket call, an HTTP request). Only when the map is
 * not being collected: then callbacks are dropped anyway. */
void smtpd_hook_cancel_waits(smtpd_channel *ch) {
  lua_State *L = ch->h.map->L;
  if (ch->thread_ref == LUA_NOREF || !ch->parked || ch->h.map->dying)
    return;
  if (smtpd_setup_get(L, "abandon") != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->thread_ref);
  smtpd_lua_calls++;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(ch->h.map, "error cancelling a hook's wait: %s",
              lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

void smtpd_hook_abandon(smtpd_channel *ch) {
  smtpd_hook_cancel_waits(ch);
  ch->parked = 0;
  ch->awaiting = 0;
  ch->hook = SMTPD_HOOK_NONE;
  smtpd_hook_unref(ch->h.map->L, &ch->thread_ref);
}

/* ---- waiting and waking ------------------------------------------------------ */

/* wake(conn, co, ...): resumes hook coroutine co, parked on conn, with
 * these values. Returns false when there is nothing to resume: the
 * connection closed, or the hook was given up (handler_timeout). */
int smtpd_hook_wake(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SMTPD_CONN_MT);
  smtpd_channel *ch = h ? SMTPD_OWNER(smtpd_channel, h) : NULL;
  lua_State *co;
  int nargs = lua_gettop(L) - 2;
  luaL_checktype(L, 2, LUA_TTHREAD);
  if (ch == NULL || !ch->parked || ch->thread_ref == LUA_NOREF) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->thread_ref);
  co = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (co != lua_tothread(L, 2)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_xmove(L, co, nargs);
  ch->parked = 0;
  /* Finished, or waiting for the client's next line: parse again. */
  if ((hook_resume(ch, co, nargs) || ch->awaiting) && !ch->h.closing)
    smtpd_channel_process_input(ch);
  lua_pushboolean(L, 1);
  return 1;
}

/* hook(co) -> conn, server object | nil: the connection whose hook runs
 * in coroutine co. */
static int hook_of(lua_State *L) {
  smtpd_box *b;
  luaL_checktype(L, 1, LUA_TTHREAD);
  hook_push_hooks(L);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  b = lua_touserdata(L, -1);
  if (b == NULL || b->h == NULL) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX,
              SMTPD_OWNER(smtpd_channel, b->h)->server_ref);
  return 2;
}

void smtpd_open_hook(lua_State *L) {
  lua_pushlightuserdata(L, &hook_wait_token);
  lua_setfield(L, -2, "WAIT");
  lua_pushlightuserdata(L, &hook_line_token);
  lua_setfield(L, -2, "LINE");
  lua_pushcfunction(L, hook_of);
  lua_setfield(L, -2, "hook");
}
