/*
 * Signal handlers on a map's loop (lua-smtpd's SIGTERM and SIGINT):
 *
 *   local s = core.on_signal(map, "SIGTERM", function(signum) ... end)
 *   s:close()
 *
 * A handler alone does not keep loop() running.
 */
#include <signal.h>
#include <stdlib.h>

#include "core/glue.h"

#define SIGNAL_MT "smtpd.signal"

typedef struct smtpd_signal {
  smtpd_handle h;
  uv_signal_t sig;
  int cb_ref;
  int signum;
} smtpd_signal;

static void signal_free(smtpd_handle *h) {
  free(SMTPD_OWNER(smtpd_signal, h));
}

static void signal_close(smtpd_handle *h) {
  smtpd_signal *s = SMTPD_OWNER(smtpd_signal, h);
  if (s->signum == SIGINT) smtpd_sigint_users--;
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, s->cb_ref);
  s->cb_ref = LUA_NOREF;
  smtpd_handle_uv_close(h, (uv_handle_t *)&s->sig);
}

static void signal_on_fire(uv_signal_t *us, int signum) {
  smtpd_signal *s = SMTPD_OWNER(smtpd_signal, us->data);
  lua_State *L = s->h.map->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->cb_ref);
  lua_pushinteger(L, signum);
  smtpd_lua_calls++;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(s->h.map, "error in a signal callback: %s",
              lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int signal_on(lua_State *L) {
  static const char *const names[] = {"SIGTERM", "SIGINT", "SIGHUP",
                                      "SIGUSR1", "SIGUSR2", NULL};
  static const int nums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
  smtpd_map *m = smtpd_check_map(L, 1);
  int which = luaL_checkoption(L, 2, NULL, names);
  smtpd_signal *s;
  int ref;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  /* What may raise comes before anything is opened. */
  luaL_checkstack(L, 4, NULL);
  lua_pushvalue(L, 3);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  smtpd_handle_init(&s->h, m, SMTPD_H_SIGNAL, signal_close, signal_free);
  uv_signal_init(&m->loop, &s->sig);
  smtpd_handle_attach(&s->h, (uv_handle_t *)&s->sig);
  s->cb_ref = ref;
  s->signum = nums[which];
  if (s->signum == SIGINT) smtpd_sigint_users++;
  uv_signal_start(&s->sig, signal_on_fire, s->signum);
  uv_unref((uv_handle_t *)&s->sig);
  smtpd_handle_push_box(L, &s->h, SIGNAL_MT, 0);
  return 1;
}

static int signal_close_(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SIGNAL_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

void smtpd_open_signal(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", signal_close_}, {NULL, NULL}};
  smtpd_new_class(L, SIGNAL_MT, NULL, methods);
  lua_pushcfunction(L, signal_on);
  lua_setfield(L, -2, "on_signal");
}
