/* Listening sockets: bind, listen, accept into channels. */
#define SMTPD_GLUE
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "smtpd.h"

smtpd_shared *smtpd_shared_new(void) {
  smtpd_shared *sh = calloc(1, sizeof *sh);
  if (sh) sh->refs = 1;
  return sh;
}

void smtpd_shared_unref(smtpd_shared *sh) {
  if (sh && --sh->refs == 0) {
    free(sh->ips);
    free(sh);
  }
}

static void shared_key(const struct sockaddr *sa, unsigned char *key,
                       int *fam) {
  memset(key, 0, 16);
  *fam = sa->sa_family;
  if (sa->sa_family == AF_INET)
    memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, 4);
  else if (sa->sa_family == AF_INET6)
    memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static smtpd_ipcount *shared_find(smtpd_shared *sh, const unsigned char *key,
                                  int fam) {
  size_t i;
  for (i = 0; i < sh->nips; i++) {
    if (sh->ips[i].family == fam && memcmp(sh->ips[i].addr, key, 16) == 0)
      return &sh->ips[i];
  }
  return NULL;
}

int smtpd_shared_admit(smtpd_shared *sh, const struct sockaddr *sa) {
  unsigned char key[16];
  int fam;
  smtpd_ipcount *e;
  if (sh->max_connections && sh->total >= sh->max_connections) return 0;
  shared_key(sa, key, &fam);
  e = shared_find(sh, key, fam);
  if (e && sh->max_per_ip && e->n >= sh->max_per_ip) return 0;
  if (e == NULL) {
    if (sh->nips == sh->capips) {
      size_t cap = sh->capips ? sh->capips * 2 : 16;
      smtpd_ipcount *v = realloc(sh->ips, cap * sizeof *v);
      if (v == NULL) return 0;
      sh->ips = v;
      sh->capips = cap;
    }
    e = &sh->ips[sh->nips++];
    memcpy(e->addr, key, 16);
    e->family = fam;
    e->n = 0;
  }
  e->n++;
  sh->total++;
  return 1;
}

void smtpd_shared_leave(smtpd_shared *sh, const struct sockaddr *sa) {
  unsigned char key[16];
  int fam;
  smtpd_ipcount *e;
  shared_key(sa, key, &fam);
  e = shared_find(sh, key, fam);
  if (e && --e->n == 0) *e = sh->ips[--sh->nips];
  sh->total--;
}

static smtpd_server *server_check(lua_State *L, int idx) {
  smtpd_server **ps = luaL_checkudata(L, idx, SMTPD_SERVER_MT);
  return *ps;
}

static void server_on_close(uv_handle_t *h) {
  smtpd_server *s = (smtpd_server *)h;
  smtpd_shared_unref(s->shared);
  smtpd_str_free(&s->fqdn);
  free(s);
}

/* Idempotent: stops listening and releases the Lua object. */
static void server_destroy(lua_State *L, smtpd_server **ps) {
  smtpd_server *s = *ps;
  if (s == NULL) return;
  *ps = NULL;
  if (s->closing) return;
  s->closing = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, s->obj_ref);
  s->obj_ref = LUA_NOREF;
  smtpd_map_unref(s->map);
  uv_close((uv_handle_t *)&s->tcp, server_on_close);
}

/* SO_REUSEPORT: several processes (lua-smtpd --workers) listen on one
 * port and the kernel spreads new connections over them. */
static int server_reuse_port(uv_tcp_t *t) {
#ifdef SO_REUSEPORT
  uv_os_fd_t fd;
  int on = 1, err = uv_fileno((uv_handle_t *)t, &fd);
  if (err) return err;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
    return uv_translate_sys_error(errno);
  return 0;
#else
  (void)t;
  return UV_ENOTSUP;
#endif
}

/* listen(map, obj, host, port, opts) -> handle | nil, err, name */
static int server_listen(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 3);
  int port = (int)luaL_checkinteger(L, 4);
  struct sockaddr_storage ss;
  smtpd_server *s, **ps;
  int err, reuse;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TTABLE);
  luaL_argcheck(L, port >= 0 && port <= 65535, 4, "port out of range");
  if (strchr(host, ':')) err = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else err = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (err) return smtpd_fail(L, err);
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->hdr.kind = SMTPD_H_SERVER;
  s->map = m;
  s->obj_ref = LUA_NOREF;
  lua_getfield(L, 5, "data_size_limit");
  s->data_size_limit = lua_toboolean(L, -1) ? (size_t)lua_tointeger(L, -1) : 0;
  lua_getfield(L, 5, "enable_SMTPUTF8");
  s->enable_smtputf8 = lua_toboolean(L, -1);
  lua_getfield(L, 5, "decode_data");
  s->decode_data = lua_toboolean(L, -1);
  lua_getfield(L, 5, "max_recipients");
  s->max_recipients = (size_t)luaL_optinteger(L, -1, SMTPD_MAX_RECIPIENTS);
  lua_getfield(L, 5, "max_bad_commands");
  s->max_bad = (unsigned)luaL_optinteger(L, -1, SMTPD_MAX_BAD_COMMANDS);
  lua_getfield(L, 5, "timeout");
  s->timeout_ms = (uint64_t)(luaL_optnumber(L, -1, 300) * 1000);
  lua_getfield(L, 5, "handler_timeout");
  s->handler_timeout_ms = (uint64_t)(luaL_optnumber(L, -1, 300) * 1000);
  lua_pop(L, 4);
  lua_getfield(L, 5, "data_timeout");
  s->data_timeout_ms = (uint64_t)(luaL_optnumber(L, -1, 600) * 1000);
  lua_getfield(L, 5, "data_rate_grace");
  s->data_grace_ms = (uint64_t)(luaL_optnumber(L, -1, 30) * 1000);
  lua_getfield(L, 5, "min_data_rate");
  s->min_data_rate = (size_t)luaL_optinteger(L, -1, 128);
  lua_getfield(L, 5, "max_data_memory");
  if (!lua_isnil(L, -1)) m->data_cap = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 4);
  s->shared = smtpd_shared_new();
  if (s->shared == NULL) {
    free(s);
    return luaL_error(L, "out of memory");
  }
  lua_getfield(L, 5, "max_connections");
  s->shared->max_connections = (size_t)luaL_optinteger(L, -1, 1000);
  lua_getfield(L, 5, "max_connections_per_ip");
  s->shared->max_per_ip = (size_t)luaL_optinteger(L, -1, 50);
  lua_pop(L, 2);
  lua_getfield(L, 5, "fqdn");
  {
    size_t n;
    const char *f = lua_tolstring(L, -1, &n);
    if (f == NULL) { f = smtpd_fqdn(); n = strlen(f); }
    smtpd_str_set(&s->fqdn, f, n);
  }
  lua_pop(L, 4);
  lua_getfield(L, 5, "reuse_port");
  reuse = lua_toboolean(L, -1);
  lua_pop(L, 1);
  /* The socket exists before bind, so SO_REUSEPORT can be set on it
   * (libuv before 1.49 has no flag for it). */
  err = uv_tcp_init_ex(&m->loop, &s->tcp, ss.ss_family);
  if (err) {
    /* No socket (EMFILE...): the handle is not in the loop, free it here */
    server_on_close((uv_handle_t *)&s->tcp);
    return smtpd_fail(L, err);
  }
  s->tcp.data = &s->hdr;
  err = reuse ? server_reuse_port(&s->tcp) : 0;
  if (!err) err = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
  if (!err) {
    lua_getfield(L, 5, "backlog");
    err = uv_listen((uv_stream_t *)&s->tcp,
                    (int)luaL_optinteger(L, -1, 1024),
                    smtpd_server_on_connection);
    lua_pop(L, 1);
  }
  if (err) {
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, server_on_close);
    return smtpd_fail(L, err);
  }
  lua_pushvalue(L, 2);
  s->obj_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  smtpd_map_ref(m);
  ps = lua_newuserdatauv(L, sizeof *ps, 0);
  *ps = s;
  luaL_setmetatable(L, SMTPD_SERVER_MT);
  return 1;
}

typedef struct shutdown_walk {
  smtpd_shared *shared;
  int force;
} shutdown_walk;

static void server_walk_shutdown(uv_handle_t *h, void *arg) {
  shutdown_walk *w = arg;
  smtpd_hdr *hdr = h->data;
  if (hdr && hdr->kind == SMTPD_H_CHANNEL && h->type == UV_TCP &&
      !uv_is_closing(h)) {
    smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, hdr);
    if (ch->shared == w->shared) smtpd_channel_shutdown(ch, w->force);
  }
}

/* The end of a shutdown's grace period. */
typedef struct grace_timer {
  uv_timer_t t;
  smtpd_hdr hdr;
  smtpd_shared *shared;
} grace_timer;

static void grace_on_close(uv_handle_t *h) {
  grace_timer *g = (grace_timer *)h;
  smtpd_shared_unref(g->shared);
  free(g);
}

static void grace_close_hdr(smtpd_hdr *h) {
  grace_timer *g = SMTPD_OWNER(grace_timer, h);
  if (!uv_is_closing((uv_handle_t *)&g->t))
    uv_close((uv_handle_t *)&g->t, grace_on_close);
}

static void grace_on_fire(uv_timer_t *t) {
  grace_timer *g = (grace_timer *)t;
  shutdown_walk w = {g->shared, 1};
  uv_walk(t->loop, server_walk_shutdown, &w);
  uv_close((uv_handle_t *)t, grace_on_close);
}

/* close(handle, grace): stops listening. With grace (seconds), also ends
 * the server's channels: idle ones get 421 now, those in DATA or in a
 * hook may finish their message within grace, then get 421. */
static int server_close(lua_State *L) {
  smtpd_server **ps = luaL_checkudata(L, 1, SMTPD_SERVER_MT);
  smtpd_server *s = *ps;
  double grace = luaL_optnumber(L, 2, -1);
  if (s && grace >= 0) {
    smtpd_map *m = s->map;
    shutdown_walk w = {s->shared, 0};
    s->shared->shutting_down = 1;
    uv_walk(&m->loop, server_walk_shutdown, &w);
    if (s->shared->total > 0) {
      grace_timer *g = calloc(1, sizeof *g);
      if (g) {
        uv_timer_init(&m->loop, &g->t);
        g->hdr.kind = SMTPD_H_OTHER;
        g->hdr.close = grace_close_hdr;
        g->t.data = &g->hdr;
        g->shared = s->shared;
        s->shared->refs++;
        smtpd_timer_start(&g->t, grace_on_fire, (uint64_t)(grace * 1000));
        uv_unref((uv_handle_t *)&g->t);
      }
    }
  }
  server_destroy(L, ps);
  return 0;
}

static int server_getsockname(lua_State *L) {
  smtpd_server *s = server_check(L, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss, err;
  if (s == NULL) return smtpd_fail(L, UV_EBADF);
  err = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len);
  if (err) return smtpd_fail(L, err);
  smtpd_push_addr(L, (struct sockaddr *)&ss);
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  return 2;
}

static int server_set_fqdn(lua_State *L) {
  smtpd_server *s = server_check(L, 1);
  size_t n;
  const char *f = luaL_checklstring(L, 2, &n);
  if (s) smtpd_str_set(&s->fqdn, f, n);
  return 0;
}

static int server_is_open(lua_State *L) {
  lua_pushboolean(L, server_check(L, 1) != NULL);
  return 1;
}

/* Closing happens through close(); a collected handle was closed already
 * (the registry anchors the object of an open server). */
static int server_gc(lua_State *L) {
  (void)L;
  return 0;
}

void smtpd_open_server(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", server_close}, {"getsockname", server_getsockname},
    {"set_fqdn", server_set_fqdn}, {"is_open", server_is_open}, {NULL, NULL}
  };
  luaL_newmetatable(L, SMTPD_SERVER_MT);
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, server_listen);
  lua_setfield(L, -2, "listen");
}
