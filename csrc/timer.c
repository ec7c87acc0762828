/*
 * One-shot timers on a map's loop, for smtpd.sleep and for anything a
 * script wants to run later:
 *
 *   local t = core.after(map, 1.5, function() ... end)  -- t:cancel()
 */
#define SMTPD_GLUE
#include <signal.h>
#include <stdlib.h>

#include "smtpd.h"

#define TIMER_MT "smtpd.timer"

typedef struct smtpd_timer {
  uv_timer_t t;
  smtpd_hdr hdr;
  smtpd_map *map;
  int cb_ref;
  int ud_ref;
  int closing;
} smtpd_timer;

typedef struct timer_ud {
  smtpd_timer *t;
} timer_ud;

static void timer_on_close(uv_handle_t *h) {
  smtpd_timer *t = SMTPD_OWNER(smtpd_timer, (smtpd_hdr *)h->data);
  smtpd_map_unref(t->map);
  free(t);
}

static void timer_close(smtpd_timer *t) {
  lua_State *L = t->map->L;
  if (t->closing) return;
  t->closing = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ud_ref);
  ((timer_ud *)lua_touserdata(L, -1))->t = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ud_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, t->cb_ref);
  uv_close((uv_handle_t *)&t->t, timer_on_close);
}

static void timer_close_hdr(smtpd_hdr *h) {
  timer_close(SMTPD_OWNER(smtpd_timer, h));
}

static void timer_on_fire(uv_timer_t *ut) {
  smtpd_timer *t = SMTPD_OWNER(smtpd_timer, (smtpd_hdr *)ut->data);
  lua_State *L = t->map->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_ref);
  timer_close(t);
  smtpd_lua_calls++;
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    smtpd_log(t->map, "error in a timer callback: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* after(map, seconds, fn) -> handle */
static int timer_after(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  lua_Number secs = luaL_checknumber(L, 2);
  smtpd_timer *t;
  timer_ud *ud;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 2, "seconds out of range");
  t = calloc(1, sizeof *t);
  if (t == NULL) return luaL_error(L, "out of memory");
  t->hdr.kind = SMTPD_H_OTHER;
  t->hdr.close = timer_close_hdr;
  t->map = m;
  uv_timer_init(&m->loop, &t->t);
  t->t.data = &t->hdr;
  smtpd_map_ref(m);
  lua_pushvalue(L, 3);
  t->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->t = t;
  luaL_setmetatable(L, TIMER_MT);
  lua_pushvalue(L, -1);
  t->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  smtpd_timer_start(&t->t, timer_on_fire, (uint64_t)(secs * 1000 + 0.5));
  return 1;
}

static int timer_cancel(lua_State *L) {
  timer_ud *ud = luaL_checkudata(L, 1, TIMER_MT);
  if (ud->t) timer_close(ud->t);
  return 0;
}

static int timer_active(lua_State *L) {
  timer_ud *ud = luaL_checkudata(L, 1, TIMER_MT);
  lua_pushboolean(L, ud->t != NULL);
  return 1;
}

/* ---- signals: on_signal(map, "SIGTERM", fn) -> handle (:close()) ---- */

#define SIGNAL_MT "smtpd.signal"

typedef struct smtpd_signal {
  uv_signal_t sig;
  smtpd_hdr hdr;
  smtpd_map *map;
  int cb_ref;
  int closing;
  int signum;
} smtpd_signal;

typedef struct signal_ud {
  smtpd_signal *s;
} signal_ud;

static void signal_on_close(uv_handle_t *h) {
  smtpd_signal *s = SMTPD_OWNER(smtpd_signal, (smtpd_hdr *)h->data);
  smtpd_map_unref(s->map);
  free(s);
}

static void signal_close(smtpd_signal *s) {
  if (s->closing) return;
  s->closing = 1;
  if (s->signum == SIGINT) smtpd_sigint_users--;
  luaL_unref(s->map->L, LUA_REGISTRYINDEX, s->cb_ref);
  uv_close((uv_handle_t *)&s->sig, signal_on_close);
}

static void signal_close_hdr(smtpd_hdr *h) {
  signal_close(SMTPD_OWNER(smtpd_signal, h));
}

static void signal_on_fire(uv_signal_t *us, int signum) {
  smtpd_signal *s = SMTPD_OWNER(smtpd_signal, (smtpd_hdr *)us->data);
  lua_State *L = s->map->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->cb_ref);
  lua_pushinteger(L, signum);
  smtpd_lua_calls++;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(s->map, "error in a signal callback: %s", lua_tostring(L, -1));
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
  signal_ud *ud;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->hdr.kind = SMTPD_H_OTHER;
  s->hdr.close = signal_close_hdr;
  s->map = m;
  uv_signal_init(&m->loop, &s->sig);
  s->sig.data = &s->hdr;
  smtpd_map_ref(m);
  lua_pushvalue(L, 3);
  s->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->signum = nums[which];
  if (s->signum == SIGINT) smtpd_sigint_users++;
  uv_signal_start(&s->sig, signal_on_fire, nums[which]);
  /* A signal handler alone does not keep the loop running. */
  uv_unref((uv_handle_t *)&s->sig);
  ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->s = s;
  luaL_setmetatable(L, SIGNAL_MT);
  return 1;
}

static int signal_close_(lua_State *L) {
  signal_ud *ud = luaL_checkudata(L, 1, SIGNAL_MT);
  if (ud->s) signal_close(ud->s);
  ud->s = NULL;
  return 0;
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
  luaL_newmetatable(L, TIMER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, timer_after);
  lua_setfield(L, -2, "after");
  lua_pushcfunction(L, timer_hrtime);
  lua_setfield(L, -2, "hrtime");
  luaL_newmetatable(L, SIGNAL_MT);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, signal_close_);
  lua_setfield(L, -2, "close");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, signal_on);
  lua_setfield(L, -2, "on_signal");
}
