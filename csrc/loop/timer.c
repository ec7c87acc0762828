/*
 * One-shot timers on a map's loop, for smtpd.sleep and for anything a
 * script wants to run later:
 *
 *   local t = core.after(map, 1.5, function() ... end)  -- t:cancel()
 */
#include <stdlib.h>

#include "core/glue.h"

#define TIMER_MT "smtpd.timer"

typedef struct smtpd_timer {
  smtpd_handle h;
  uv_timer_t t;
  int cb_ref;
} smtpd_timer;

static void timer_free(smtpd_handle *h) {
  free(SMTPD_OWNER(smtpd_timer, h));
}

static void timer_close(smtpd_handle *h) {
  smtpd_timer *t = SMTPD_OWNER(smtpd_timer, h);
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, t->cb_ref);
  t->cb_ref = LUA_NOREF;
  smtpd_handle_uv_close(h, (uv_handle_t *)&t->t);
}

static void timer_on_fire(uv_timer_t *ut) {
  smtpd_timer *t = SMTPD_OWNER(smtpd_timer, ut->data);
  lua_State *L = t->h.map->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_ref);
  smtpd_handle_close(&t->h);
  smtpd_lua_calls++;
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    smtpd_log(t->h.map, "error in a timer callback: %s",
              lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* after(map, seconds, fn) -> handle */
static int timer_after(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  lua_Number secs = luaL_checknumber(L, 2);
  smtpd_timer *t;
  int ref;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 2, "seconds out of range");
  /* What may raise comes before anything is opened. */
  luaL_checkstack(L, 4, NULL);
  lua_pushvalue(L, 3);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t = calloc(1, sizeof *t);
  if (t == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  smtpd_handle_init(&t->h, m, SMTPD_H_TIMER, timer_close, timer_free);
  uv_timer_init(&m->loop, &t->t);
  smtpd_handle_attach(&t->h, (uv_handle_t *)&t->t);
  t->cb_ref = ref;
  smtpd_handle_push_box(L, &t->h, TIMER_MT, 0);
  smtpd_timer_start(&t->t, timer_on_fire, (uint64_t)(secs * 1000 + 0.5));
  return 1;
}

static int timer_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, TIMER_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

static int timer_active(lua_State *L) {
  lua_pushboolean(L, smtpd_handle_get(L, 1, TIMER_MT) != NULL);
  return 1;
}

/* hrtime() -> seconds on a monotonic clock, nanosecond resolution. */
static int timer_hrtime(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

void smtpd_open_timer(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"cancel", timer_cancel}, {"active", timer_active}, {NULL, NULL}
  };
  smtpd_new_class(L, TIMER_MT, NULL, methods);
  lua_pushcfunction(L, timer_after);
  lua_setfield(L, -2, "after");
  lua_pushcfunction(L, timer_hrtime);
  lua_setfield(L, -2, "hrtime");
}
