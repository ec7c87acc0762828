/*
 * Standard input on a map's loop, for the live prompt (smtpd.interact):
 *
 *   local w = core.stdin_watch(map, function(chunk) ... end)  -- w:close()
 *
 * fn gets what each read returned, then nil at end of input. A poll
 * handle watches fd 0 and we read(2) it ourselves, so fd 0 stays what it
 * was: libuv makes it non-blocking, and its flags are put back on close
 * (a prompt that returns to lua5.4 -i must leave a blocking stdin). The
 * terminal's modes are never touched: cooked mode, as the caller had it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "glue.h"

#define STDIN_MT "smtpd.stdin"

typedef struct stdin_watch {
  smtpd_handle h;
  uv_poll_t poll;
  int cb_ref;
  int flags;               /* fd 0's flags before we came */
} stdin_watch;

static void stdin_free(smtpd_handle *h) {
  free(SMTPD_OWNER(stdin_watch, h));
}

static void stdin_close(smtpd_handle *h) {
  stdin_watch *w = SMTPD_OWNER(stdin_watch, h);
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, w->cb_ref);
  w->cb_ref = LUA_NOREF;
  smtpd_handle_uv_close(h, (uv_handle_t *)&w->poll);
  if (w->flags != -1) fcntl(0, F_SETFL, w->flags);
}

/* Calls fn(chunk) (nil: end of input), protected. */
static void stdin_deliver(stdin_watch *w, const char *p, ssize_t n) {
  lua_State *L = w->h.map->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->cb_ref);
  if (p) lua_pushlstring(L, p, (size_t)n);
  else lua_pushnil(L);
  smtpd_lua_calls++;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(w->h.map, "error reading stdin: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static void stdin_on_poll(uv_poll_t *p, int status, int events) {
  stdin_watch *w = SMTPD_OWNER(stdin_watch, p->data);
  char buf[4096];
  ssize_t n;
  (void)events;
  if (w->h.closing) return;
  if (status < 0) {
    n = 0;
  } else {
    n = read(0, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  }
  if (n <= 0) {
    /* End of input (or an error): say so once, then stop watching. */
    uv_poll_stop(&w->poll);
    stdin_deliver(w, NULL, 0);
    smtpd_handle_close(&w->h);
    return;
  }
  stdin_deliver(w, buf, n);
}

/* stdin_watch(map, fn) -> handle | nil, err */
static int stdin_watch_new(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  stdin_watch *w;
  int err;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  w = calloc(1, sizeof *w);
  if (w == NULL) return luaL_error(L, "out of memory");
  w->flags = fcntl(0, F_GETFL);
  smtpd_handle_init(&w->h, m, SMTPD_H_TIMER, stdin_close, stdin_free);
  err = uv_poll_init(&m->loop, &w->poll, 0);
  if (err) {
    /* A regular file cannot be polled: nothing was attached. */
    if (w->flags != -1) fcntl(0, F_SETFL, w->flags);
    w->flags = -1;
    w->cb_ref = LUA_NOREF;
    smtpd_handle_close(&w->h);
    return smtpd_fail(L, err);
  }
  smtpd_handle_attach(&w->h, (uv_handle_t *)&w->poll);
  lua_pushvalue(L, 2);
  w->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, stdin_on_poll);
  smtpd_handle_push_box(L, &w->h, STDIN_MT, 0);
  return 1;
}

static int stdin_watch_close(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, STDIN_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

void smtpd_open_stdin(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", stdin_watch_close}, {NULL, NULL}
  };
  smtpd_new_class(L, STDIN_MT, NULL, methods);
  lua_pushcfunction(L, stdin_watch_new);
  lua_setfield(L, -2, "stdin_watch");
}
