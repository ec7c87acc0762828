/*
 * Socket maps: each owns one uv_loop_t. loop() runs it the way asyncore's
 * loop() runs a map; close_all() closes every server and channel in it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"

/* max_data_memory when no server of the map says otherwise. */
#define SMTPD_MAP_DATA_CAP ((size_t)256 * 1024 * 1024)

static smtpd_map *all_maps;
int smtpd_sigint_users = 0;

/* In a forked child: every map's loop gets its own epoll and signal
 * descriptors (libuv's rule for a loop used across fork). */
int smtpd_maps_after_fork(void) {
  smtpd_map *m;
  int err;
  for (m = all_maps; m; m = m->next_map) {
    err = uv_loop_fork(&m->loop);
    if (err) return err;
  }
  return 0;
}

smtpd_map *smtpd_check_map(lua_State *L, int idx) {
  smtpd_map **pm = luaL_checkudata(L, idx, SMTPD_MAP_MT);
  if (*pm == NULL) luaL_argerror(L, idx, "map is closed");
  return *pm;
}

static int map_new(lua_State *L) {
  smtpd_map **pm = lua_newuserdatauv(L, sizeof *pm, 1);
  smtpd_map *m = calloc(1, sizeof *m);
  int err;
  *pm = NULL;
  if (m == NULL) return luaL_error(L, "out of memory");
  err = uv_loop_init(&m->loop);
  if (err) {
    free(m);
    return smtpd_fail(L, err);
  }
  uv_timer_init(&m->loop, &m->timer);
  m->timer.data = NULL;
  uv_signal_init(&m->loop, &m->sigint);
  m->sigint.data = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  m->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  m->data_cap = SMTPD_MAP_DATA_CAP;
  m->log_ref = LUA_NOREF;
  m->loop.data = m;
  m->next_map = all_maps;
  if (all_maps) all_maps->prev_map = m;
  all_maps = m;
  *pm = m;
  luaL_setmetatable(L, SMTPD_MAP_MT);
  return 1;
}

/* What one walk found to close. Nothing of Lua runs inside uv_walk: an
 * error (a user's __index, out of memory) would longjmp out of it and
 * leave the loop's handle queue pointing into a dead frame. The servers
 * found are closed after the walk, each close() protected. */
typedef struct close_walk {
  smtpd_handle **found;
  size_t n, cap;
  int failed;                  /* out of memory for the list */
} close_walk;

static void map_walk_collect(uv_handle_t *u, void *arg) {
  close_walk *w = arg;
  smtpd_handle *h = u->data;
  size_t i;
  if (uv_is_closing(u) || h == NULL || h->closing) return;
  for (i = 0; i < w->n; i++)
    if (w->found[i] == h) return;    /* a channel has two uv handles */
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    smtpd_handle **v = realloc(w->found, cap * sizeof *v);
    if (v == NULL) {
      w->failed = 1;
      return;
    }
    w->found = v;
    w->cap = cap;
  }
  w->found[w->n++] = h;
}

/* server:close() of the Lua object, which releases its references. */
static int map_lua_close_server(lua_State *L) {
  smtpd_server *s = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->obj_ref);
  if (lua_getfield(L, -1, "close") == LUA_TFUNCTION) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

static void map_close_one(smtpd_handle *h) {
  if (h->closing) return;
  if (h->kind == SMTPD_H_SERVER) {
    smtpd_server *s = SMTPD_OWNER(smtpd_server, h);
    lua_State *L = h->map->L;
    lua_pushcfunction(L, map_lua_close_server);
    lua_pushlightuserdata(L, s);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      smtpd_log(h->map, "close: %s", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  smtpd_handle_close(h);
}

/* Closes every handle of ours, and those closing made (a server's grace
 * timer). */
static void map_close_handles(smtpd_map *m) {
  for (;;) {
    close_walk w = {NULL, 0, 0, 0};
    size_t i;
    uv_walk(&m->loop, map_walk_collect, &w);
    /* Servers first: their channels then see them gone. */
    for (i = 0; i < w.n; i++)
      if (w.found[i]->kind == SMTPD_H_SERVER) map_close_one(w.found[i]);
    for (i = 0; i < w.n; i++) map_close_one(w.found[i]);
    free(w.found);
    if (w.n == 0 && !w.failed) break;
  }
}

static int map_close_all(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  map_close_handles(m);
  /* Run the close callbacks so memory is freed now. */
  if (!m->running) uv_run(&m->loop, UV_RUN_NOWAIT);
  return 0;
}

/* A step's time is up. The timer may fire before the step's poll (its
 * deadline passed while the step ran timers or callbacks): uv_stop makes
 * that poll return at once instead of waiting for some later timer. */
static void map_on_timer(uv_timer_t *t) {
  uv_stop(t->loop);
}

/* Starts a timer armed from outside the loop's own callbacks (a Lua call,
 * a step of loop()). libuv measures timeouts from the time it cached at
 * the start of its last iteration, which is stale by however long Lua ran
 * since: read the clock first, so the timer waits as long as asked. */
void smtpd_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms) {
  uv_update_time(t->loop);
  uv_timer_start(t, cb, ms, 0);
}

/* Ctrl-C while loop() runs ends the loop with the error "interrupted";
 * the servers stay as they are, so a REPL user is back at the prompt and
 * can loop again. The signal arrives through the loop like any event, so
 * no Lua code of a hook is ever cut short by it (the Lua interpreter's own
 * SIGINT handler would make the next Lua code raise, wherever it runs).
 * While a script handles SIGINT itself (on_signal), loop() leaves it be. */
static void map_on_sigint(uv_signal_t *s, int signum) {
  smtpd_map *m = s->loop->data;
  (void)signum;
  m->interrupted = 1;
  uv_stop(s->loop);
}

static int sigint_depth = 0;           /* maps whose loop() watches */
static struct sigaction sigint_saved;  /* what SIGINT did before */

static int map_watch_sigint(smtpd_map *m) {
  if (smtpd_sigint_users > 0) return 0;
  if (sigint_depth++ == 0) sigaction(SIGINT, NULL, &sigint_saved);
  m->interrupted = 0;
  uv_signal_start(&m->sigint, map_on_sigint, SIGINT);
  uv_unref((uv_handle_t *)&m->sigint);
  return 1;
}

static void map_unwatch_sigint(smtpd_map *m) {
  uv_signal_stop(&m->sigint);
  /* libuv leaves SIGINT at SIG_DFL: give back what was there (lua.c's
   * handler, in the middle of a chunk), unless a script's own handler
   * (on_signal, made while we ran) still needs libuv's. */
  if (--sigint_depth == 0 && smtpd_sigint_users == 0)
    sigaction(SIGINT, &sigint_saved, NULL);
}

/* loop(map, timeout, count): count nil runs until nothing is left. */
static int map_loop(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  double timeout = luaL_optnumber(L, 2, 30.0);
  lua_Integer count = luaL_optinteger(L, 3, -1);
  int watching, interrupted;
  if (m->running) return luaL_error(L, "loop: this map is already running "
                                       "(a hook must not call loop)");
  m->running = 1;
  watching = map_watch_sigint(m);
  if (count < 0) {
    uv_run(&m->loop, UV_RUN_DEFAULT);
  } else {
    while (count-- > 0 && m->handles > 0 && !m->interrupted) {
      if (timeout <= 0) {
        uv_run(&m->loop, UV_RUN_NOWAIT);
      } else {
        smtpd_timer_start(&m->timer, map_on_timer,
                          (uint64_t)(timeout * 1000));
        uv_run(&m->loop, UV_RUN_ONCE);
        uv_timer_stop(&m->timer);
      }
    }
    /* Close callbacks of what closed in the last iteration. */
    uv_run(&m->loop, UV_RUN_NOWAIT);
  }
  if (watching) map_unwatch_sigint(m);
  interrupted = m->interrupted;
  m->interrupted = 0;
  m->running = 0;
  if (interrupted) {
    /* Without a position: it is the user's Ctrl-C, not a line's error. */
    lua_pushliteral(L, "interrupted");
    return lua_error(L);
  }
  return 0;
}

/* For embedding in another event loop (smtpd.luv): the fd to poll for
 * readability, the milliseconds until the next timer (-1: none), and one
 * NOWAIT step. step() -> whether anything of ours is left. */
static int map_backend_fd(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  lua_pushinteger(L, uv_backend_fd(&m->loop));
  return 1;
}

static int map_backend_timeout(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  /* libuv says 0 for a loop with nothing to wait for: here that is "no
   * timer" (-1), not "step again at once". */
  if (!uv_loop_alive(&m->loop)) {
    lua_pushinteger(L, -1);
    return 1;
  }
  uv_update_time(&m->loop);
  lua_pushinteger(L, uv_backend_timeout(&m->loop));
  return 1;
}

static int map_step(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  if (m->running) return luaL_error(L, "step: this map is already running");
  m->running = 1;
  uv_run(&m->loop, UV_RUN_NOWAIT);
  m->running = 0;
  lua_pushboolean(L, m->handles > 0);
  return 1;
}

static int map_count(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  lua_pushinteger(L, (lua_Integer)m->handles);
  return 1;
}

static void map_walk_force(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h) && h->data == NULL) uv_close(h, NULL);
}

smtpd_tls_env *smtpd_map_tls(smtpd_map *m) {
  if (m->tls_env == NULL) m->tls_env = smtpd_tls_env_new();
  return m->tls_env;
}

static int map_gc(lua_State *L) {
  smtpd_map **pm = luaL_checkudata(L, 1, SMTPD_MAP_MT);
  smtpd_map *m = *pm;
  if (m == NULL) return 0;
  *pm = NULL;
  smtpd_hook_unref(L, &m->log_ref);
  if (m->prev_map) m->prev_map->next_map = m->next_map;
  else all_maps = m->next_map;
  if (m->next_map) m->next_map->prev_map = m->prev_map;
  m->next_map = m->prev_map = NULL;
  m->dying = 1;
  map_close_handles(m);
  uv_walk(&m->loop, map_walk_force, NULL);
  uv_run(&m->loop, UV_RUN_DEFAULT);
  smtpd_dns_map_gone(m);
  if (uv_loop_close(&m->loop) == 0) {
    /* Every connection of the map is gone: so can their TLS be. */
    smtpd_tls_env_free(m->tls_env);
    free(m);
  }
  /* else a handle is still open: leak the loop rather than free it live */
  return 0;
}

/* close(): closes everything in the map and the loop itself. */
static int map_close(lua_State *L) {
  smtpd_map **pm = luaL_checkudata(L, 1, SMTPD_MAP_MT);
  if (*pm && (*pm)->running)
    return luaL_error(L, "close: the map is running");
  return map_gc(L);
}

static int map_tostring(lua_State *L) {
  smtpd_map **pm = luaL_checkudata(L, 1, SMTPD_MAP_MT);
  if (*pm == NULL) lua_pushstring(L, "smtpd.map (closed)");
  else lua_pushfstring(L, "smtpd.map (%d open)", (int)(*pm)->handles);
  return 1;
}

static void map_walk_stats(uv_handle_t *u, void *arg) {
  smtpd_handle *h = u->data;
  size_t *st = arg;
  if (h && h->kind == SMTPD_H_CHANNEL &&
      (u->type == UV_TCP || u->type == UV_NAMED_PIPE) && !h->closing) {
    smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, h);
    size_t out = ch->out.len + ch->wbuf.len;
    st[0]++;
    st[1] += out;
    if (out > st[2]) st[2] = out;
    st[3] += ch->in.len + ch->s.parser.line.cap + ch->s.parser.data.cap;
  }
}

/* stats() -> {channels, out_queued, out_max, in_held} */
static int map_stats(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  size_t st[4] = {0, 0, 0, 0};
  uv_walk(&m->loop, map_walk_stats, st);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)st[0]);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, (lua_Integer)st[1]);
  lua_setfield(L, -2, "out_queued");
  lua_pushinteger(L, (lua_Integer)st[2]);
  lua_setfield(L, -2, "out_max");
  lua_pushinteger(L, (lua_Integer)st[3]);
  lua_setfield(L, -2, "in_held");
  lua_pushinteger(L, (lua_Integer)m->data_held);
  lua_setfield(L, -2, "data_held");
  return 1;
}

static int map_set_debug(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  m->debug = lua_toboolean(L, 2);
  return 0;
}

/* set_log(fn | nil) -> the previous fn or nil: fn(level, line) receives
 * the map's own messages (errors in timer, signal and relay callbacks),
 * which have no server; nil sends them to stderr again. */
static int map_set_log(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  if (m->log_ref != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, m->log_ref);
  else lua_pushnil(L);
  smtpd_hook_unref(L, &m->log_ref);
  if (!lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    m->log_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 1;
}

void smtpd_open_map(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", map_gc}, {"__close", map_gc}, {"__tostring", map_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"loop", map_loop}, {"close_all", map_close_all}, {"count", map_count},
    {"set_debug", map_set_debug}, {"set_log", map_set_log},
    {"close", map_close},
    {"stats", map_stats}, {"backend_fd", map_backend_fd},
    {"backend_timeout", map_backend_timeout}, {"step", map_step},
    {NULL, NULL}
  };
  smtpd_new_class(L, SMTPD_MAP_MT, meta, methods);
  lua_pushcfunction(L, map_new);
  lua_setfield(L, -2, "map");
}
