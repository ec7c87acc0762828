/*
 * The lifecycle every owner of libuv handles shares (servers, channels,
 * relay clients, timers, signal handlers, raw TCP clients), written once
 * as luv's lhandle.c does it:
 *
 *   init    the owner counts in its map (map->handles)
 *   attach  each uv handle's data points at the owner's smtpd_handle
 *   box     the Lua object is a box anchored in the registry while open
 *   close   once: the box is emptied and released, the owner's close
 *           function drops its references and closes its uv handles
 *   free    in the close callback of its last uv handle, never earlier
 */
#include "core/glue.h"

/* Owners allocated and not yet freed, in every map (core.stats). */
size_t smtpd_handles_live = 0;

void smtpd_handle_init(smtpd_handle *h, smtpd_map *m, int kind,
                       smtpd_handle_fn close, smtpd_handle_fn free) {
  h->kind = kind;
  h->closing = 0;
  h->pending = 0;
  h->box_ref = LUA_NOREF;
  h->map = m;
  h->close = close;
  h->free = free;
  m->handles++;
  smtpd_handles_live++;
}

void smtpd_handle_attach(smtpd_handle *h, uv_handle_t *u) {
  u->data = h;
  h->pending++;
}

void smtpd_handle_done(smtpd_handle *h) {
  if (--h->pending == 0 && h->closing) {
    smtpd_handles_live--;
    h->free(h);
  }
}

static void handle_on_close(uv_handle_t *u) {
  smtpd_handle_done(u->data);
}

/* Only a handle that was attached is closed: an owner whose uv_*_init
 * failed (EMFILE) closes what it has. */
void smtpd_handle_uv_close(smtpd_handle *h, uv_handle_t *u) {
  if (u->data == h && !uv_is_closing(u)) uv_close(u, handle_on_close);
}

void smtpd_handle_close(smtpd_handle *h) {
  lua_State *L = h->map->L;
  if (h->closing) return;
  h->closing = 1;
  h->map->handles--;
  if (h->box_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->box_ref);
    ((smtpd_box *)lua_touserdata(L, -1))->h = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, h->box_ref);
    h->box_ref = LUA_NOREF;
  }
  /* Held while the owner closes its handles: none may free it early. */
  h->pending++;
  h->close(h);
  smtpd_handle_done(h);
}

smtpd_box *smtpd_handle_push_box(lua_State *L, smtpd_handle *h,
                                 const char *mt, int nuv) {
  smtpd_box *b;
  if (h->box_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->box_ref);
    return lua_touserdata(L, -1);
  }
  b = lua_newuserdatauv(L, sizeof *b, nuv);
  b->h = h;
  luaL_setmetatable(L, mt);
  if (!h->closing) {
    lua_pushvalue(L, -1);
    h->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    b->h = NULL;
  }
  return b;
}

smtpd_handle *smtpd_handle_get(lua_State *L, int idx, const char *mt) {
  return ((smtpd_box *)luaL_checkudata(L, idx, mt))->h;
}

smtpd_handle *smtpd_handle_check(lua_State *L, int idx, const char *mt,
                                 const char *what) {
  smtpd_handle *h = smtpd_handle_get(L, idx, mt);
  if (h == NULL) luaL_error(L, "%s is closed", what);
  return h;
}
