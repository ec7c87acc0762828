/* luaopen_smtpd_core: the C core as the module smtpd.core. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/glue.h"
#include "mime/mime.h"
#include "testing/testing.h"

/* setup{base=, builtins=, make=, scan=, command=}: the Lua side's parts
 * the C core calls back into. */
static int core_setup(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "smtpd.setup");
  smtpd_class_gen++;
  return 0;
}

/* Called when any class gains a method: channels look their class up
 * again before their next command. */
static int core_class_changed(lua_State *L) {
  (void)L;
  smtpd_class_gen++;
  return 0;
}

#ifdef SMTPD_TESTING
/* fault(site, n): the n-th event at site from now fails (specs). Sites:
 * "alloc" (strings and string lists), "accept" (a new channel). */
static int core_fault(lua_State *L) {
  static const char *const sites[] = {"alloc", "accept", NULL};
  int site = luaL_checkoption(L, 1, NULL, sites);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "must not be negative");
  smtpd_fault_set(site, (unsigned long)n);
  return 0;
}

/* fault_alloc(n): fault("alloc", n). */
static int core_fault_alloc(lua_State *L) {
  lua_settop(L, 1);
  lua_pushliteral(L, "alloc");
  lua_insert(L, 1);
  return core_fault(L);
}
#endif

static int core_stats(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)smtpd_handles_live);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, (lua_Integer)smtpd_lua_calls);
  lua_setfield(L, -2, "lua_calls");
  lua_pushinteger(L, (lua_Integer)smtpd_class_gen);
  lua_setfield(L, -2, "class_gen");
  lua_pushinteger(L, (lua_Integer)smtpd_mime_iconv_opens());
  lua_setfield(L, -2, "iconv_opens");
  return 1;
}

static int core_getfqdn(lua_State *L) {
  lua_pushstring(L, smtpd_fqdn());
  return 1;
}

/* setuid_nobody() -> true | nil, err, name: the privilege drop of
 * lua-smtpd without -n. Root's supplementary groups go first (CWE-273),
 * then the group, then the user; each step is checked. */
static int core_setuid_nobody(lua_State *L) {
  struct passwd *pw = getpwnam("nobody");
  gid_t gid;
  if (pw == NULL) return smtpd_fail(L, UV_ENOENT);
  gid = pw->pw_gid;
  if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0)
    return smtpd_fail(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* The first address of host (numeric text), from res. */
static void core_first_ip(const struct addrinfo *res, char *ip, size_t n) {
  if (res->ai_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, n);
  else
    uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, n);
}

/* Whether host is an address already (nothing to look up). */
static int core_numeric(const char *host) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, host, buf) == 0 ||
         uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* resolve(host) -> ip | nil, err, name. An address is returned as it is,
 * with no lookup; a name is looked up here and now (blocking: for a
 * server made before its loop runs; hooks use resolve_async). */
static int core_resolve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  char ip[64];
  int err;
  uv_loop_t loop;
  if (core_numeric(host)) {
    lua_pushvalue(L, 1);
    return 1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (uv_loop_init(&loop)) return smtpd_fail(L, UV_ENOMEM);
  err = uv_getaddrinfo(&loop, &req, NULL, host, NULL, &hints);
  uv_loop_close(&loop);
  if (err) return smtpd_fail(L, err);
  core_first_ip(req.addrinfo, ip, sizeof ip);
  uv_freeaddrinfo(req.addrinfo);
  lua_pushstring(L, ip);
  return 1;
}

/* resolve_async(map, host, fn) -> handle: fn(ip | nil, err, name) from
 * the loop, the lookup on libuv's thread pool (handle:cancel()). */
typedef struct lookup {
  smtpd_handle h;
  uv_timer_t anchor;         /* never started: one of the map's handles */
  uv_getaddrinfo_t req;
  int busy;
  int cb_ref;
} lookup;

static void lookup_free(smtpd_handle *h) {
  free(SMTPD_OWNER(lookup, h));
}

static void lookup_close(smtpd_handle *h) {
  lookup *l = SMTPD_OWNER(lookup, h);
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, l->cb_ref);
  l->cb_ref = LUA_NOREF;
  if (l->busy) uv_cancel((uv_req_t *)&l->req);
  smtpd_handle_uv_close(h, (uv_handle_t *)&l->anchor);
}

typedef struct lookup_result {
  lookup *l;
  int status;
  struct addrinfo *res;
} lookup_result;

static int lookup_lua_report(lua_State *L) {
  lookup_result *r = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->l->cb_ref);
  if (r->status == 0 && r->res) {
    char ip[64];
    core_first_ip(r->res, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_call(L, 1, 0);
  } else {
    int n = smtpd_fail(L, r->status ? r->status : UV_EAI_NONAME);
    lua_call(L, n, 0);
  }
  return 0;
}

static void lookup_done(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  lookup *l = req->data;
  lookup_result r;
  lua_State *L = l->h.map->L;
  int closing = l->h.closing;
  l->busy = 0;
  if (!closing) {
    r.l = l;
    r.status = status;
    r.res = res;
    lua_pushcfunction(L, lookup_lua_report);
    lua_pushlightuserdata(L, &r);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      smtpd_log(l->h.map, "error in a lookup callback: %s",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_pop(L, 1);
    }
  }
  if (res) uv_freeaddrinfo(res);
  smtpd_handle_done(&l->h);          /* frees l when it was closed */
  if (!closing) smtpd_handle_close(&l->h);
}

static int core_resolve_async(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 2);
  struct addrinfo hints;
  lookup *l;
  int ref, err;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_pushvalue(L, 3);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  l = calloc(1, sizeof *l);
  if (l == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "out of memory");
  }
  smtpd_handle_init(&l->h, m, SMTPD_H_TIMER, lookup_close, lookup_free);
  uv_timer_init(&m->loop, &l->anchor);
  smtpd_handle_attach(&l->h, (uv_handle_t *)&l->anchor);
  uv_unref((uv_handle_t *)&l->anchor);
  l->cb_ref = ref;
  smtpd_handle_push_box(L, &l->h, "smtpd.lookup", 0);
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  l->req.data = l;
  l->busy = 1;
  l->h.pending++;
  err = uv_getaddrinfo(&m->loop, &l->req, lookup_done, host, NULL, &hints);
  if (err) {
    l->busy = 0;
    l->h.pending--;
    smtpd_handle_close(&l->h);
    lua_pop(L, 1);
    return smtpd_fail(L, err);
  }
  return 1;
}

static int lookup_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, "smtpd.lookup");
  if (h) smtpd_handle_close(h);
  return 0;
}

/* The one symbol the module exports (the Makefile hides the rest). */
#if defined(__GNUC__)
#define SMTPD_API __attribute__((visibility("default")))
#else
#define SMTPD_API
#endif

SMTPD_API int luaopen_smtpd_core(lua_State *L);

SMTPD_API int luaopen_smtpd_core(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"setup", core_setup}, {"class_changed", core_class_changed},
    {"stats", core_stats}, {"getfqdn", core_getfqdn},
    {"setuid_nobody", core_setuid_nobody}, {"resolve", core_resolve},
    {"resolve_async", core_resolve_async},
    {NULL, NULL}
  };
  /* A peer that closes while we write must give EPIPE, not kill us. */
  signal(SIGPIPE, SIG_IGN);
  luaL_newlib(L, funcs);
  {
    static const luaL_Reg lookup_methods[] = {{"cancel", lookup_cancel},
                                              {NULL, NULL}};
    smtpd_new_class(L, "smtpd.lookup", NULL, lookup_methods);
  }
  smtpd_open_map(L);
  smtpd_open_server(L);
  smtpd_open_conn(L);
  smtpd_open_hook(L);
  smtpd_open_tcp(L);
  smtpd_open_sock(L);
  smtpd_open_dns(L);
  smtpd_open_dict(L);
  smtpd_open_http(L);
  smtpd_open_web(L);
  smtpd_open_auth(L);
  smtpd_open_client(L);
  smtpd_open_timer(L);
  smtpd_open_signal(L);
  smtpd_open_workers(L);
  smtpd_open_opts(L);
  smtpd_open_tls(L);
  smtpd_open_stdin(L);
  smtpd_open_deliver(L);
  smtpd_open_mime(L);
#ifdef SMTPD_TESTING
  /* What only a test build has (make test): the engine, fault sites. */
  lua_pushcfunction(L, core_fault);
  lua_setfield(L, -2, "fault");
  lua_pushcfunction(L, core_fault_alloc);
  lua_setfield(L, -2, "fault_alloc");
  smtpd_open_engine(L);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "TESTING");
#endif
  lua_pushliteral(L, SMTPD_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, SMTPD_VERSION_NUM);
  lua_setfield(L, -2, "VERSION");
  lua_pushinteger(L, SMTPD_DATA_SIZE_DEFAULT);
  lua_setfield(L, -2, "DATA_SIZE_DEFAULT");
  return 1;
}
