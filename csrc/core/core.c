/* luaopen_smtpd_core: the C core as the module smtpd.core. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/glue.h"
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

/* resolve(host, port) -> ip, family | nil, err, name: blocking, used once
 * per server (as smtpd's getaddrinfo in SMTPServer.__init__). */
static int core_resolve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  char ip[64];
  int err;
  uv_loop_t loop;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (uv_loop_init(&loop)) return smtpd_fail(L, UV_ENOMEM);
  err = uv_getaddrinfo(&loop, &req, NULL, host, NULL, &hints);
  uv_loop_close(&loop);
  if (err) return smtpd_fail(L, err);
  if (req.addrinfo->ai_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)req.addrinfo->ai_addr, ip, sizeof ip);
  else
    uv_ip4_name((struct sockaddr_in *)req.addrinfo->ai_addr, ip, sizeof ip);
  uv_freeaddrinfo(req.addrinfo);
  lua_pushstring(L, ip);
  return 1;
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
    {NULL, NULL}
  };
  /* A peer that closes while we write must give EPIPE, not kill us. */
  signal(SIGPIPE, SIG_IGN);
  luaL_newlib(L, funcs);
  smtpd_open_map(L);
  smtpd_open_server(L);
  smtpd_open_conn(L);
  smtpd_open_hook(L);
  smtpd_open_tcp(L);
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
