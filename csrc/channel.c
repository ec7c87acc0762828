/*
 * One client connection: reads into the parser, runs built-in commands in
 * C, runs Lua hooks (overridden commands, process_message) in coroutines,
 * and writes the replies of each read with one uv_write.
 *
 * The Lua channel object is made only when something needs it (a hook
 * runs, or the channel class is not the plain SMTPChannel). A connection
 * of the plain class is a C struct and nothing else until its messages
 * reach process_message.
 */
#define SMTPD_GLUE
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

#define HOOK_COMMAND 1
#define HOOK_MESSAGE 2

/* What a hook yields while it waits inside one of smtpd's helpers. */
static char channel_wait_token;

#define ERR_REPLY "451 4.3.0 Requested action aborted: local error in " \
                  "processing"

/* Back-pressure: past this many unsent reply bytes the channel stops
 * parsing and reading until the client drains them. */
#define OUT_HIGH (64 * 1024)
#define IN_HIGH (64 * 1024)

static int channel_blocked(const smtpd_channel *ch) {
  return ch->out.len + ch->wbuf.len > OUT_HIGH;
}

static void channel_process_input(smtpd_channel *ch);
static void channel_flush(smtpd_channel *ch);
static void channel_on_read(uv_stream_t *st, ssize_t nread,
                            const uv_buf_t *buf);
static void channel_update_reading(smtpd_channel *ch);
static void channel_check_shutdown(smtpd_channel *ch);

/* ---- lifetime ---------------------------------------------------------- */

static void channel_on_close(uv_handle_t *h) {
  smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, (smtpd_hdr *)h->data);
  if (--ch->handles > 0) return;
  if (ch->counted) smtpd_shared_leave(ch->shared, (struct sockaddr *)&ch->peer);
  smtpd_shared_unref(ch->shared);
  smtpd_session_free(&ch->s);
  smtpd_buf_free(&ch->in);
  smtpd_buf_free(&ch->out);
  smtpd_buf_free(&ch->wbuf);
  free(ch);
}

static void channel_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* The one way a channel closes: idempotent, frees in the close callback. */
void smtpd_channel_close(smtpd_channel *ch) {
  lua_State *L = ch->map->L;
  if (ch->closing) return;
  ch->closing = 1;
  ch->map->data_held -= ch->data_counted;
  ch->data_counted = 0;
  if (ch->ud_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->ud_ref);
    ((smtpd_conn_ud *)lua_touserdata(L, -1))->ch = NULL;
    lua_pop(L, 1);
  }
  channel_unref(L, &ch->ud_ref);
  channel_unref(L, &ch->obj_ref);
  channel_unref(L, &ch->class_ref);
  channel_unref(L, &ch->server_ref);
  channel_unref(L, &ch->thread_ref);
  channel_unref(L, &ch->received_ref);
  if (ch->map->debug) smtpd_log(ch->map, "channel closed");
  smtpd_map_unref(ch->map);
  uv_close((uv_handle_t *)&ch->timer, channel_on_close);
  uv_close((uv_handle_t *)&ch->tcp, channel_on_close);
}

static void channel_close_hdr(smtpd_hdr *h) {
  smtpd_channel_close(SMTPD_OWNER(smtpd_channel, h));
}

/* ---- Lua helpers (all run protected) ----------------------------------- */

static void channel_push_ud(lua_State *L, smtpd_channel *ch) {
  smtpd_conn_ud *ud;
  if (ch->ud_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->ud_ref);
    return;
  }
  ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->ch = ch;
  luaL_setmetatable(L, SMTPD_CONN_MT);
  lua_pushvalue(L, -1);
  ch->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Looks the class up again: which built-in verbs it overrides, whether it
 * adds any. The class is at the top of the stack. */
static void channel_class_info(lua_State *L, smtpd_cls_cache *c) {
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
  smtpd_setup_get(L, "scan");
  lua_pushvalue(L, cls);
  smtpd_lua_calls++;
  lua_call(L, 1, 1);
  c->has_extra = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

/* Pushes the Lua channel object, making it on first use. */
static void channel_push_obj(lua_State *L, smtpd_channel *ch) {
  if (ch->obj_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->obj_ref);
    return;
  }
  smtpd_setup_get(L, "make");
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->class_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  channel_push_ud(L, ch);
  smtpd_lua_calls++;
  lua_call(L, 3, 1);
  if (!lua_istable(L, -1)) luaL_error(L, "channel_class did not make a table");
  if (ch->closing) return;
  lua_pushvalue(L, -1);
  ch->obj_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int channel_lua_accept(lua_State *L) {
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
    channel_class_info(L, &srv->cls);
  ch->cls = srv->cls;
  lua_pushvalue(L, cls);
  ch->class_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (ch->cls.custom) channel_push_obj(L, ch);
  return 0;
}

static int channel_lua_recheck(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->class_ref);
  channel_class_info(L, &ch->cls);
  return 0;
}

/* Runs f protected; logs and returns non-zero on error. */
static int channel_pcall(smtpd_channel *ch, lua_CFunction f, void *a,
                         void *b) {
  lua_State *L = ch->map->L;
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, b);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    smtpd_log(ch->map, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* ---- hooks ------------------------------------------------------------- */

static void channel_hook_error(smtpd_channel *ch, lua_State *co,
                               const char *what) {
  lua_State *L = ch->map->L;
  const char *msg = lua_tostring(co, -1);
  luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
  smtpd_log(ch->map, "error in %s: %s", what, lua_tostring(L, -1));
  lua_pop(L, 1);
  smtpd_reply(&ch->s, ERR_REPLY, sizeof ERR_REPLY - 1);
}

/* A finished message hook: its result is the reply. nil (or false, for
 * `return cond and "550 ..."`) is 250 OK; anything else must be one final
 * reply line of class 2, 4 or 5. */
static void channel_message_result(smtpd_channel *ch, lua_State *co,
                                   int nres) {
  size_t n = 0;
  const char *r = NULL;
  int t = nres > 0 ? lua_type(co, -nres) : LUA_TNIL, code;
  if (t == LUA_TSTRING) r = lua_tolstring(co, -nres, &n);
  smtpd_session_post_data(&ch->s);
  if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(co, -nres))) {
    smtpd_reply(&ch->s, "250 OK", 6);
  } else if (r && (code = smtpd_final_reply(r, n, "245")) != 0) {
    smtpd_reply_raw(&ch->s, r, n);
    /* 421 says the server closes the session: it does. */
    if (code == 421) ch->close_when_done = 1;
  } else {
    char shown[84];
    size_t i, k = 0;
    for (i = 0; r && i < n && k < 80; i++) {
      unsigned char c = (unsigned char)r[i];
      shown[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    shown[k] = '\0';
    smtpd_log(ch->map, "process_message returned a malformed reply (%s%s%s%s)"
              "; answering 451", r ? "\"" : luaL_typename(co, -nres),
              r ? shown : "", r && n > 80 ? "..." : "", r ? "\"" : "");
    smtpd_reply(&ch->s, ERR_REPLY, sizeof ERR_REPLY - 1);
  }
}

/* Resumes the hook coroutine; returns 1 when it finished. */
static int channel_resume(smtpd_channel *ch, lua_State *co, int nargs) {
  lua_State *L = ch->map->L;
  int nres = 0, status, kind = ch->hook;
  smtpd_lua_calls++;
  ch->in_process++;
  status = lua_resume(co, L, nargs, &nres);
  ch->in_process--;
  if (status == LUA_YIELD) {
    if (nres >= 1 && lua_touserdata(co, -nres) == &channel_wait_token) {
      lua_pop(co, nres);
      ch->parked = 1;
      return 0;
    }
    lua_pop(co, nres);
    lua_pushstring(co, "a hook yielded outside smtpd's waiting helpers");
    status = LUA_ERRRUN;
    nres = 1;
  }
  ch->parked = 0;
  ch->hook = 0;
  if (!ch->closing) {
    if (status != LUA_OK) {
      if (kind == HOOK_MESSAGE) smtpd_session_post_data(&ch->s);
      channel_hook_error(ch, co, kind == HOOK_MESSAGE ? "process_message"
                                                      : "command handler");
    } else if (kind == HOOK_MESSAGE) {
      channel_message_result(ch, co, nres);
    }
    smtpd_session_sync(&ch->s);
    if (ch->s.quit) ch->close_when_done = 1;
    channel_check_shutdown(ch);
  }
  lua_settop(co, 0);
  channel_unref(L, &ch->thread_ref);
  return 1;
}

/* hooks[thread] = conn while a hook runs, so the waiting helpers find the
 * connection of the coroutine they run in (core.hook(co)). Weak keys. */
static void channel_push_hooks(lua_State *L) {
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

/* Starts a hook: stack of L holds the function and nargs arguments. */
static void channel_start_hook(smtpd_channel *ch, int kind, int nargs) {
  lua_State *L = ch->map->L;
  lua_State *co = lua_newthread(L);
  channel_push_hooks(L);
  lua_pushvalue(L, -2);
  channel_push_ud(L, ch);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  ch->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_xmove(L, co, nargs + 1);
  ch->hook = kind;
  channel_resume(ch, co, nargs);
}

static int channel_lua_command(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  smtpd_command *cmd = lua_touserdata(L, 2);
  smtpd_setup_get(L, "command");
  channel_push_obj(L, ch);
  if (ch->closing) return 0;
  lua_pushlstring(L, cmd->name, cmd->name_len);
  if (cmd->arg) lua_pushlstring(L, cmd->arg, cmd->arg_len);
  else lua_pushnil(L);
  channel_start_hook(ch, HOOK_COMMAND, 3);
  return 0;
}

static int channel_lua_message(lua_State *L) {
  smtpd_channel *ch = lua_touserdata(L, 1);
  smtpd_session *s = &ch->s;
  smtpd_buf *d = &s->parser.data;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  lua_getfield(L, -1, "process_message");
  lua_insert(L, -2);
  smtpd_push_addr(L, (struct sockaddr *)&ch->peer);
  if (s->has_mailfrom) lua_pushlstring(L, s->mailfrom.p, s->mailfrom.len);
  else lua_pushnil(L);
  smtpd_push_strlist(L, &s->rcpttos);
  /* The one copy of the message bytes: into the Lua string. */
  lua_pushlstring(L, d->p ? d->p : "", d->len);
  smtpd_parser_end_data(&s->parser);
  if (ch->obj_ref != LUA_NOREF) {
    channel_unref(L, &ch->received_ref);
    lua_pushvalue(L, -1);
    ch->received_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->received_gen = s->rset_gen;
  }
  if (s->decode_data) {
    lua_createtable(L, 0, 0);
  } else {
    lua_createtable(L, 0, 2);
    smtpd_push_strlist(L, &s->mail_options);
    lua_setfield(L, -2, "mail_options");
    smtpd_push_strlist(L, &s->rcpt_options);
    lua_setfield(L, -2, "rcpt_options");
  }
  channel_start_hook(ch, HOOK_MESSAGE, 6);
  return 0;
}

/* ---- message memory, shared by the map ---------------------------------- */

/* Brings this channel's share of map->data_held up to date. */
static void channel_account(smtpd_channel *ch) {
  size_t now = ch->s.parser.data.cap;
  smtpd_map *m = ch->map;
  m->data_held = m->data_held - ch->data_counted + now;
  ch->data_counted = now;
  ch->s.data_blocked = m->data_cap && m->data_held > m->data_cap;
}

/* ---- timeouts ----------------------------------------------------------- */

static void channel_on_timer(uv_timer_t *t);

/* Idle timeout while we wait for the client; the hook's deadline while a
 * hook waits. */
static void channel_arm(smtpd_channel *ch) {
  uint64_t now = uv_now(&ch->map->loop), at = 0;
  if (ch->closing) return;
  if (ch->parked) {
    at = ch->handler_timeout_ms ? now + ch->handler_timeout_ms : 0;
  } else {
    if (ch->timeout_ms) at = ch->last_read + ch->timeout_ms;
    if (ch->s.parser.data_mode) {
      uint64_t d;
      if (ch->data_started == 0) ch->data_started = now ? now : 1;
      if (ch->data_timeout_ms) {
        d = ch->data_started + ch->data_timeout_ms;
        if (at == 0 || d < at) at = d;
      }
      if (ch->min_data_rate) {
        /* Reads check the rate as data comes; this covers silence. */
        d = ch->data_started + ch->data_grace_ms;
        if (d < now + 1000) d = now + 1000;
        if (at == 0 || d < at) at = d;
      }
    } else {
      ch->data_started = 0;
    }
  }
  if (at == 0) uv_timer_stop(&ch->timer);
  else uv_timer_start(&ch->timer, channel_on_timer, at > now ? at - now : 0,
                      0);
}

/* 421 and close, for a limit the client went past. */
static void channel_cut(smtpd_channel *ch, const char *why) {
  smtpd_replyf(&ch->s, "421 4.4.2 %s Error: %s", ch->s.fqdn.p, why);
  ch->close_when_done = 1;
  channel_flush(ch);
  if (!ch->closing) channel_update_reading(ch);
}

/* The DATA deadline and the minimum rate; 1 when the client was cut. */
static int channel_check_data(smtpd_channel *ch, uint64_t now) {
  uint64_t spent;
  if (!ch->s.parser.data_mode || !ch->data_started || ch->parked) return 0;
  spent = now - ch->data_started;
  if (ch->data_timeout_ms && spent >= ch->data_timeout_ms) {
    channel_cut(ch, "DATA took too long");
    return 1;
  }
  if (ch->min_data_rate && spent >= ch->data_grace_ms && spent > 0 &&
      ch->s.parser.data_raw * 1000 / spent < ch->min_data_rate) {
    channel_cut(ch, "data arrives too slowly");
    return 1;
  }
  return 0;
}

static void channel_on_timer(uv_timer_t *t) {
  smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, (smtpd_hdr *)t->data);
  lua_State *L = ch->map->L;
  if (ch->closing) return;
  if (ch->parked) {
    /* The hook waited too long: give it up. It is never resumed (wake
     * checks the coroutine), and the session goes on. */
    int kind = ch->hook;
    smtpd_log(ch->map, "a %s still waited after %.1f s; answering 451",
              kind == HOOK_MESSAGE ? "process_message" : "command handler",
              (double)ch->handler_timeout_ms / 1000.0);
    ch->parked = 0;
    ch->hook = 0;
    channel_unref(L, &ch->thread_ref);
    if (kind == HOOK_MESSAGE) smtpd_session_post_data(&ch->s);
    smtpd_reply(&ch->s, ERR_REPLY, sizeof ERR_REPLY - 1);
    smtpd_session_sync(&ch->s);
    channel_process_input(ch);
    return;
  }
  {
    uint64_t now = uv_now(&ch->map->loop);
    if (channel_check_data(ch, now)) return;
    if (ch->timeout_ms && now - ch->last_read >= ch->timeout_ms) {
      channel_cut(ch, "timeout exceeded");
      return;
    }
    channel_arm(ch);
  }
}

/* ---- shutdown ---------------------------------------------------------- */

static void channel_say_shutdown(smtpd_channel *ch) {
  smtpd_replyf(&ch->s, "421 4.3.2 %s Service shutting down, closing "
               "channel", ch->s.fqdn.p);
  ch->close_when_done = 1;
}

/* After each event: a channel of a server that is shutting down ends as
 * soon as it is between transactions' DATA. */
static void channel_check_shutdown(smtpd_channel *ch) {
  if (ch->shared && ch->shared->shutting_down && !ch->closing &&
      !ch->close_when_done && !ch->hook && !ch->s.parser.data_mode &&
      ch->s.state == SMTPD_COMMAND)
    channel_say_shutdown(ch);
}

void smtpd_channel_shutdown(smtpd_channel *ch, int force) {
  if (ch->closing || ch->close_when_done) return;
  if (force) {
    if (ch->parked) {
      ch->parked = 0;
      ch->hook = 0;
      channel_unref(ch->map->L, &ch->thread_ref);
    }
    channel_say_shutdown(ch);
  } else {
    channel_check_shutdown(ch);
  }
  if (!ch->in_process) {
    channel_flush(ch);
    if (!ch->closing) channel_update_reading(ch);
  }
}

/* ---- protocol events --------------------------------------------------- */

static void channel_on_line(smtpd_channel *ch) {
  smtpd_command cmd;
  smtpd_session *s = &ch->s;
  if (ch->map->debug) {
    smtpd_log(ch->map, "Data: %.*s", (int)s->parser.line.len,
              s->parser.line.p ? s->parser.line.p : "");
  }
  if (!smtpd_session_line(s, &cmd)) return;
  if (ch->cls.gen != smtpd_class_gen &&
      channel_pcall(ch, channel_lua_recheck, ch, NULL)) {
    smtpd_reply(s, ERR_REPLY, sizeof ERR_REPLY - 1);
    return;
  }
  if (cmd.verb >= 0 && !(ch->cls.mask & (1u << cmd.verb))) {
    smtpd_session_builtin(s, cmd.verb, cmd.arg, cmd.arg_len);
    return;
  }
  if (cmd.verb < 0 && !ch->cls.has_extra) {
    smtpd_session_unknown(s, cmd.name, cmd.name_len);
    return;
  }
  if (channel_pcall(ch, channel_lua_command, ch, &cmd)) {
    ch->hook = 0;
    channel_unref(ch->map->L, &ch->thread_ref);
    smtpd_reply(s, ERR_REPLY, sizeof ERR_REPLY - 1);
  }
}

static void channel_on_data_end(smtpd_channel *ch) {
  if (!smtpd_session_data_end(&ch->s)) return;
  if (channel_pcall(ch, channel_lua_message, ch, NULL)) {
    ch->hook = 0;
    channel_unref(ch->map->L, &ch->thread_ref);
    smtpd_session_post_data(&ch->s);
    smtpd_reply(&ch->s, ERR_REPLY, sizeof ERR_REPLY - 1);
  }
}

/* Feeds input to the parser until it is used up or the channel must stop
 * (a hook waits, QUIT, close). Returns the bytes consumed. */
static size_t channel_feed(smtpd_channel *ch, const char *buf, size_t len) {
  size_t off = 0, used;
  ch->in_process++;
  while (off < len && !ch->parked && !ch->closing && !ch->close_when_done &&
         !channel_blocked(ch)) {
    int r;
    channel_account(ch);
    r = smtpd_parser_feed(&ch->s.parser, buf + off, len - off, &used);
    off += used;
    if (r == SMTPD_PARSE_MORE) break;
    if (r == SMTPD_PARSE_LINE) {
      channel_on_line(ch);
      if (ch->s.quit) ch->close_when_done = 1;
    } else if (r == SMTPD_PARSE_DATA_END) {
      channel_on_data_end(ch);
    } else {
      smtpd_reply(&ch->s, "451 Out of memory", 17);
      ch->close_when_done = 1;
    }
    channel_check_shutdown(ch);
  }
  channel_account(ch);
  if (!ch->s.parser.data_mode) ch->data_started = 0;
  ch->in_process--;
  return off;
}

/* ---- I/O --------------------------------------------------------------- */

static void channel_on_write(uv_write_t *req, int status) {
  smtpd_channel *ch = req->data;
  ch->writing = 0;
  ch->wbuf.len = 0;
  if (ch->wbuf.cap > 65536) smtpd_buf_free(&ch->wbuf);
  if (ch->closing) return;
  if (status < 0) {
    smtpd_channel_close(ch);
    return;
  }
  channel_flush(ch);
  if (ch->closing) return;
  /* The client drained its replies: go on with what it sent meanwhile. */
  if (!channel_blocked(ch) && !ch->parked && ch->in.len && !ch->in_process)
    channel_process_input(ch);
  else
    channel_update_reading(ch);
}

static void channel_flush(smtpd_channel *ch) {
  smtpd_buf tmp;
  uv_buf_t b;
  int err;
  if (ch->writing || ch->closing) return;
  if (ch->out.len == 0) {
    if (ch->close_when_done && !ch->hook) smtpd_channel_close(ch);
    return;
  }
  /* Replies nearly always fit the socket buffer: write them now. A libuv
   * write request would cost a deferred callback and, in libuv before
   * 1.45, an epoll_ctl per reply. */
  b = uv_buf_init(ch->out.p, (unsigned)ch->out.len);
  err = uv_try_write((uv_stream_t *)&ch->tcp, &b, 1);
  if (err == (int)ch->out.len) {
    ch->out.len = 0;
    if (ch->out.cap > 65536) smtpd_buf_free(&ch->out);
    if (ch->close_when_done && !ch->hook) smtpd_channel_close(ch);
    return;
  }
  if (err < 0 && err != UV_EAGAIN) {
    smtpd_channel_close(ch);
    return;
  }
  if (err > 0) smtpd_buf_consume(&ch->out, (size_t)err);
  tmp = ch->wbuf;
  ch->wbuf = ch->out;
  ch->out = tmp;
  ch->out.len = 0;
  b = uv_buf_init(ch->wbuf.p, (unsigned)ch->wbuf.len);
  ch->wreq.data = ch;
  ch->writing = 1;
  err = uv_write(&ch->wreq, (uv_stream_t *)&ch->tcp, &b, 1, channel_on_write);
  if (err) {
    ch->writing = 0;
    smtpd_channel_close(ch);
  }
}

static void channel_on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  smtpd_channel *ch = (smtpd_channel *)h;
  (void)size;
  if (ch->map->rbuf_busy) {
    /* Cannot happen in one thread, but never hand out the buffer twice. */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  ch->map->rbuf_busy = 1;
  *buf = uv_buf_init(ch->map->rbuf, sizeof ch->map->rbuf);
}

static void channel_update_reading(smtpd_channel *ch) {
  /* Held input is bounded too: no reading while more than a read's worth
   * waits to be parsed. */
  int want = !ch->closing && !ch->parked && !ch->close_when_done &&
             !channel_blocked(ch) && ch->in.len <= IN_HIGH;
  if (want && !ch->reading) {
    if (uv_read_start((uv_stream_t *)&ch->tcp, channel_on_alloc,
                      channel_on_read) == 0)
      ch->reading = 1;
  } else if (!want && ch->reading && !ch->closing) {
    uv_read_stop((uv_stream_t *)&ch->tcp);
    ch->reading = 0;
  }
}

static void channel_on_read(uv_stream_t *st, ssize_t nread,
                            const uv_buf_t *buf) {
  smtpd_channel *ch = (smtpd_channel *)st;
  if (buf->base == ch->map->rbuf) ch->map->rbuf_busy = 0;
  if (ch->closing) return;
  if (nread < 0) {
    /* EOF or error: a message not ended by CRLF.CRLF is dropped. */
    smtpd_channel_close(ch);
    return;
  }
  if (nread == 0) return;
  ch->last_read = uv_now(&ch->map->loop);
  if (channel_check_data(ch, ch->last_read)) return;
  channel_arm(ch);
  if (ch->in.len) {
    if (smtpd_buf_append(&ch->in, buf->base, (size_t)nread)) {
      smtpd_channel_close(ch);
      return;
    }
    channel_process_input(ch);
    return;
  } else {
    size_t used = channel_feed(ch, buf->base, (size_t)nread);
    if (used < (size_t)nread && !ch->closing &&
        smtpd_buf_append(&ch->in, buf->base + used, (size_t)nread - used)) {
      smtpd_channel_close(ch);
      return;
    }
  }
  if (ch->closing) return;
  if (ch->parked) channel_arm(ch);
  channel_flush(ch);
  if (ch->closing) return;
  /* What this read left over, now that its replies are out. */
  if (ch->in.len && !ch->writing && !ch->parked && !ch->in_process)
    channel_process_input(ch);
  else
    channel_update_reading(ch);
}

/* Parses input held back (while a hook waited, or while replies were
 * blocked). Replies usually go straight into the socket (try_write), so
 * no write callback would come to resume: keep going until the input is
 * used up or something really waits (a write, a hook, a close). */
static void channel_process_input(smtpd_channel *ch) {
  for (;;) {
    size_t used = channel_feed(ch, ch->in.p, ch->in.len);
    if (ch->closing) return;
    smtpd_buf_consume(&ch->in, used);
    channel_flush(ch);
    if (ch->closing) return;
    if (ch->in.len == 0 || used == 0 || ch->writing || ch->parked ||
        ch->close_when_done || channel_blocked(ch))
      break;
  }
  channel_arm(ch);
  if (ch->in.len == 0) smtpd_buf_free(&ch->in);
  channel_update_reading(ch);
}

void smtpd_server_on_connection(uv_stream_t *st, int status) {
  smtpd_server *srv = (smtpd_server *)st;
  smtpd_map *m = srv->map;
  smtpd_channel *ch;
  int len = sizeof ch->peer;
  if (status < 0) {
    smtpd_log(m, "accept: %s", uv_strerror(status));
    return;
  }
  ch = calloc(1, sizeof *ch);
  if (ch == NULL) return;
  ch->hdr.kind = SMTPD_H_CHANNEL;
  ch->hdr.close = channel_close_hdr;
  ch->map = m;
  ch->server_ref = ch->obj_ref = ch->ud_ref = ch->class_ref = LUA_NOREF;
  ch->thread_ref = ch->received_ref = LUA_NOREF;
  uv_tcp_init(&m->loop, &ch->tcp);
  ch->tcp.data = &ch->hdr;
  uv_timer_init(&m->loop, &ch->timer);
  ch->timer.data = &ch->hdr;
  ch->handles = 2;
  ch->timeout_ms = srv->timeout_ms;
  ch->handler_timeout_ms = srv->handler_timeout_ms;
  ch->data_timeout_ms = srv->data_timeout_ms;
  ch->data_grace_ms = srv->data_grace_ms;
  ch->min_data_rate = srv->min_data_rate;
  ch->last_read = uv_now(&m->loop);
  smtpd_map_ref(m);
  if (smtpd_session_init(&ch->s, &ch->out, srv->fqdn.p, srv->fqdn.len) ||
      uv_accept(st, (uv_stream_t *)&ch->tcp) ||
      uv_tcp_getpeername(&ch->tcp, (struct sockaddr *)&ch->peer, &len)) {
    smtpd_channel_close(ch);
    return;
  }
  uv_tcp_nodelay(&ch->tcp, 1);
  ch->shared = srv->shared;
  ch->shared->refs++;
  if (!smtpd_shared_admit(ch->shared, (struct sockaddr *)&ch->peer)) {
    /* Over a connection limit: say so and close, no Lua involved. */
    smtpd_replyf(&ch->s, "421 4.7.0 %s Error: too many connections, try "
                 "again later", srv->fqdn.p);
    ch->close_when_done = 1;
    channel_flush(ch);
    return;
  }
  ch->counted = 1;
  ch->s.data_size_limit = srv->data_size_limit;
  ch->s.enable_smtputf8 = srv->enable_smtputf8;
  ch->s.decode_data = srv->decode_data;
  ch->s.max_recipients = srv->max_recipients;
  ch->s.max_bad = srv->max_bad;
  smtpd_session_sync(&ch->s);
  if (channel_pcall(ch, channel_lua_accept, ch, srv)) {
    smtpd_channel_close(ch);
    return;
  }
  if (ch->closing) return;
  if (m->debug) smtpd_log(m, "Incoming connection");
  smtpd_replyf(&ch->s, "220 %s %s", ch->s.fqdn.p, SMTPD_VERSION);
  channel_arm(ch);
  channel_flush(ch);
  if (!ch->closing) channel_update_reading(ch);
}

/* ---- the conn userdata: the channel as Lua sees it --------------------- */

static smtpd_channel *conn_check(lua_State *L, int idx) {
  smtpd_conn_ud *ud = luaL_checkudata(L, idx, SMTPD_CONN_MT);
  if (ud->ch == NULL || ud->ch->closing)
    luaL_error(L, "the connection is closed");
  return ud->ch;
}

/* After Lua changed state from outside channel_process (a REPL, a timer):
 * send what is queued. */
static void conn_after(smtpd_channel *ch) {
  if (ch->in_process || ch->closing) return;
  smtpd_session_sync(&ch->s);
  channel_flush(ch);
}

static int conn_push(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n;
  const char *line = luaL_checklstring(L, 2, &n);
  if (!smtpd_reply_text_ok(line, n))
    return luaL_argerror(L, 2, n > SMTPD_REPLY_MAX ?
                         "a reply line is at most 510 bytes" :
                         "a reply line must not contain CR, LF or NUL");
  smtpd_reply_raw(&ch->s, line, n);
  conn_after(ch);
  return 0;
}

static int conn_close_when_done(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  ch->close_when_done = 1;
  conn_after(ch);
  return 0;
}

static int conn_close(lua_State *L) {
  smtpd_conn_ud *ud = luaL_checkudata(L, 1, SMTPD_CONN_MT);
  if (ud->ch) smtpd_channel_close(ud->ch);
  return 0;
}

static int conn_builtin(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n, an = 0;
  const char *verb = luaL_checklstring(L, 2, &n);
  const char *arg = luaL_optlstring(L, 3, NULL, &an);
  int v = smtpd_verb_lookup(verb, n);
  luaL_argcheck(L, v >= 0, 2, "not a built-in command");
  smtpd_session_builtin(&ch->s, v, arg, an);
  if (ch->s.quit) ch->close_when_done = 1;
  conn_after(ch);
  return 0;
}

static int conn_unknown(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  size_t n;
  const char *verb = luaL_checklstring(L, 2, &n);
  smtpd_session_unknown(&ch->s, verb, n);
  conn_after(ch);
  return 0;
}

static int conn_is_open(lua_State *L) {
  smtpd_conn_ud *ud = luaL_checkudata(L, 1, SMTPD_CONN_MT);
  lua_pushboolean(L, ud->ch != NULL && !ud->ch->closing);
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
  err = uv_tcp_getsockname(&ch->tcp, (struct sockaddr *)&ss, &len);
  if (err) return smtpd_fail(L, err);
  smtpd_push_addr(L, (struct sockaddr *)&ss);
  return 1;
}

/* Lists (rcpttos, mail_options, rcpt_options) are live views of C state. */
enum { LIST_RCPTTOS = 0, LIST_MAIL_OPTIONS, LIST_RCPT_OPTIONS };

typedef struct list_ud {
  int which;
} list_ud;

static smtpd_strlist *list_get(smtpd_channel *ch, int which) {
  if (which == LIST_RCPTTOS) return &ch->s.rcpttos;
  if (which == LIST_MAIL_OPTIONS) return &ch->s.mail_options;
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

static void list_push(lua_State *L, int conn_idx, int which) {
  list_ud *lu = lua_newuserdatauv(L, sizeof *lu, 1);
  lu->which = which;
  lua_pushvalue(L, conn_idx);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, SMTPD_LIST_MT);
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
    lua_pushlstring(L, l->v[i].p, l->v[i].len);
    luaL_addchar(&b, '"');
    luaL_addvalue(&b);
    luaL_addchar(&b, '"');
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  return 1;
}

static void list_assign(lua_State *L, smtpd_strlist *l, int idx) {
  lua_Integer i, n;
  smtpd_strlist fresh = {NULL, 0, 0};
  if (lua_isnoneornil(L, idx)) {
    smtpd_strlist_clear(l);
    return;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  n = luaL_len(L, idx);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_geti(L, idx, i);
    s = lua_tolstring(L, -1, &len);
    if (s == NULL || smtpd_strlist_push(&fresh, s, len)) {
      smtpd_strlist_clear(&fresh);
      luaL_error(L, "a list of strings is needed");
    }
    lua_pop(L, 1);
  }
  smtpd_strlist_clear(l);
  *l = fresh;
}

/* get(conn, field) */
static int conn_get(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  smtpd_session *s = &ch->s;
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "smtp_state") == 0) lua_pushinteger(L, s->state);
  else if (strcmp(k, "seen_greeting") == 0)
    lua_pushlstring(L, s->greeting.p ? s->greeting.p : "", s->greeting.len);
  else if (strcmp(k, "mailfrom") == 0) {
    if (s->has_mailfrom) lua_pushlstring(L, s->mailfrom.p, s->mailfrom.len);
    else lua_pushnil(L);
  } else if (strcmp(k, "rcpttos") == 0) list_push(L, 1, LIST_RCPTTOS);
  else if (strcmp(k, "mail_options") == 0) list_push(L, 1, LIST_MAIL_OPTIONS);
  else if (strcmp(k, "rcpt_options") == 0) list_push(L, 1, LIST_RCPT_OPTIONS);
  else if (strcmp(k, "received_data") == 0) {
    if (ch->received_ref != LUA_NOREF && ch->received_gen == s->rset_gen)
      lua_rawgeti(L, LUA_REGISTRYINDEX, ch->received_ref);
    else
      lua_pushliteral(L, "");
  } else if (strcmp(k, "received_lines") == 0) {
    lua_createtable(L, 1, 0);
    if (!s->parser.data_mode && s->parser.st == 0 && s->parser.line.len) {
      lua_pushlstring(L, s->parser.line.p, s->parser.line.len);
      lua_rawseti(L, -2, 1);
    }
  } else if (strcmp(k, "fqdn") == 0)
    lua_pushlstring(L, s->fqdn.p ? s->fqdn.p : "", s->fqdn.len);
  else if (strcmp(k, "peer") == 0 || strcmp(k, "addr") == 0)
    smtpd_push_addr(L, (struct sockaddr *)&ch->peer);
  else if (strcmp(k, "extended_smtp") == 0)
    lua_pushboolean(L, s->extended_smtp);
  else if (strcmp(k, "require_SMTPUTF8") == 0)
    lua_pushboolean(L, s->require_smtputf8);
  else if (strcmp(k, "enable_SMTPUTF8") == 0)
    lua_pushboolean(L, s->enable_smtputf8);
  else if (strcmp(k, "data_size_limit") == 0)
    lua_pushinteger(L, (lua_Integer)s->data_size_limit);
  else if (strcmp(k, "num_bytes") == 0)
    lua_pushinteger(L, (lua_Integer)s->num_bytes);
  else if (strcmp(k, "command_size_limit") == 0)
    lua_pushinteger(L, (lua_Integer)s->command_size_limit);
  else
    return luaL_argerror(L, 2, "not a channel field");
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
  const char *k = luaL_checkstring(L, 2);
  size_t n;
  const char *v;
  if (strcmp(k, "smtp_state") == 0) {
    lua_Integer st = luaL_checkinteger(L, 3);
    luaL_argcheck(L, st == SMTPD_COMMAND || st == SMTPD_DATA, 3,
                  "smtp_state is COMMAND (0) or DATA (1)");
    s->state = (int)st;
  } else if (strcmp(k, "seen_greeting") == 0) {
    v = lua_toboolean(L, 3) ? luaL_checklstring(L, 3, &n) : "";
    if (!lua_toboolean(L, 3)) n = 0;
    smtpd_str_set(&s->greeting, v, n);
  } else if (strcmp(k, "mailfrom") == 0) {
    if (!lua_toboolean(L, 3)) {
      smtpd_str_free(&s->mailfrom);
      s->has_mailfrom = 0;
    } else {
      v = luaL_checklstring(L, 3, &n);
      smtpd_str_set(&s->mailfrom, v, n);
      s->has_mailfrom = 1;
    }
  } else if (strcmp(k, "rcpttos") == 0) list_assign(L, &s->rcpttos, 3);
  else if (strcmp(k, "mail_options") == 0) list_assign(L, &s->mail_options, 3);
  else if (strcmp(k, "rcpt_options") == 0) list_assign(L, &s->rcpt_options, 3);
  else if (strcmp(k, "received_data") == 0) {
    channel_unref(L, &ch->received_ref);
    if (!lua_isnoneornil(L, 3)) {
      luaL_checktype(L, 3, LUA_TSTRING);
      lua_pushvalue(L, 3);
      ch->received_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      ch->received_gen = s->rset_gen;
    }
  } else if (strcmp(k, "received_lines") == 0) {
    luaL_checktype(L, 3, LUA_TTABLE);
  } else if (strcmp(k, "fqdn") == 0) {
    v = luaL_checklstring(L, 3, &n);
    smtpd_str_set(&s->fqdn, v, n);
  } else if (strcmp(k, "extended_smtp") == 0) {
    s->extended_smtp = lua_toboolean(L, 3);
  } else if (strcmp(k, "require_SMTPUTF8") == 0) {
    s->require_smtputf8 = lua_toboolean(L, 3);
  } else if (strcmp(k, "enable_SMTPUTF8") == 0) {
    s->enable_smtputf8 = lua_toboolean(L, 3);
  } else if (strcmp(k, "data_size_limit") == 0) {
    s->data_size_limit = conn_size_arg(L, 3);
  } else if (strcmp(k, "num_bytes") == 0) {
    s->num_bytes = conn_size_arg(L, 3);
  } else if (strcmp(k, "command_size_limit") == 0) {
    s->command_size_limit = conn_size_arg(L, 3);
    luaL_argcheck(L, s->command_size_limit > 0 &&
                  s->command_size_limit <= 1048576, 3,
                  "command_size_limit must be 1..1048576");
  } else {
    return luaL_argerror(L, 2, "not a channel field");
  }
  conn_after(ch);
  return 0;
}

/* The token a waiting helper yields; wake(conn, ...) resumes the hook. */
static int conn_wait_token(lua_State *L) {
  lua_pushlightuserdata(L, &channel_wait_token);
  return 1;
}

/* wake(conn, co, ...): resumes hook coroutine co, parked on conn, with
 * these values. Returns false when there is nothing to resume: the
 * connection closed, or the hook was given up (handler_timeout). */
static int conn_wake(lua_State *L) {
  smtpd_conn_ud *ud = luaL_checkudata(L, 1, SMTPD_CONN_MT);
  smtpd_channel *ch = ud->ch;
  lua_State *co;
  int nargs = lua_gettop(L) - 2;
  luaL_checktype(L, 2, LUA_TTHREAD);
  if (ch == NULL || ch->closing || !ch->parked ||
      ch->thread_ref == LUA_NOREF) {
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
  if (channel_resume(ch, co, nargs) && !ch->closing) {
    channel_process_input(ch);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* hook(co) -> conn, server object | nil: the connection whose hook runs
 * in coroutine co. */
static int conn_hook(lua_State *L) {
  smtpd_conn_ud *ud;
  luaL_checktype(L, 1, LUA_TTHREAD);
  channel_push_hooks(L);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  ud = lua_touserdata(L, -1);
  if (ud == NULL || ud->ch == NULL || ud->ch->closing) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ud->ch->server_ref);
  return 2;
}

/* server(conn) -> the Lua server object */
static int conn_server(lua_State *L) {
  smtpd_channel *ch = conn_check(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->server_ref);
  return 1;
}

static int conn_tostring(lua_State *L) {
  smtpd_conn_ud *ud = luaL_checkudata(L, 1, SMTPD_CONN_MT);
  if (ud->ch == NULL) lua_pushliteral(L, "smtpd.conn (closed)");
  else lua_pushfstring(L, "smtpd.conn (%s)",
                       ud->ch->s.state ? "DATA" : "COMMAND");
  return 1;
}

void smtpd_open_channel(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"push", conn_push}, {"close_when_done", conn_close_when_done},
    {"close", conn_close}, {"builtin", conn_builtin},
    {"unknown", conn_unknown}, {"get", conn_get}, {"set", conn_set},
    {"is_open", conn_is_open}, {"getpeername", conn_getpeername},
    {"getsockname", conn_getsockname}, {"wake", conn_wake},
    {"server", conn_server}, {NULL, NULL}
  };
  static const luaL_Reg listmeta[] = {
    {"__index", list_index}, {"__newindex", list_newindex},
    {"__len", list_len}, {"__pairs", list_pairs},
    {"__tostring", list_tostring}, {NULL, NULL}
  };
  luaL_newmetatable(L, SMTPD_CONN_MT);
  lua_pushcfunction(L, conn_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, SMTPD_LIST_MT);
  luaL_setfuncs(L, listmeta, 0);
  lua_pop(L, 1);
  lua_pushcfunction(L, conn_wait_token);
  lua_call(L, 0, 1);
  lua_setfield(L, -2, "WAIT");
  lua_pushcfunction(L, conn_hook);
  lua_setfield(L, -2, "hook");
}
