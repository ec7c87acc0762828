/* Small things every part of the glue uses. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <sys/un.h>

#include "core/glue.h"

unsigned long smtpd_lua_calls = 0;
unsigned smtpd_class_gen = 1;

/* A failure as luv reports one: nil, "ENAME: message", "ENAME". */
int smtpd_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

static void log_stderr(const char *msg) {
  fprintf(stderr, "smtpd: %s\n", msg);
  fflush(stderr);
}

/* What a log call passes to the protected function that does it: every
 * push (a string, the function) happens inside lua_pcall, so no error,
 * out of memory included, can leave from a libuv callback. */
typedef struct log_call {
  int ref;                 /* the map's function, or the server object */
  const char *level, *msg;
} log_call;

static int util_map_log(lua_State *L) {
  log_call *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  lua_pushstring(L, c->level);
  lua_pushstring(L, c->msg);
  lua_call(L, 2, 0);
  return 0;
}

static int util_server_log(lua_State *L) {
  log_call *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  lua_getfield(L, -1, "log");
  lua_insert(L, -2);
  lua_pushstring(L, c->level);
  lua_pushliteral(L, "%s");
  lua_pushstring(L, c->msg);
  lua_call(L, 4, 0);
  return 0;
}

/* Runs fn(c) protected; 0, or -1 (why on stderr). */
static int util_log_call(lua_State *L, lua_CFunction fn, log_call *c,
                         const char *what) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return 0;
  fprintf(stderr, "smtpd: %s failed: %s\n", what,
          lua_isstring(L, -1) ? lua_tostring(L, -1) : "(an error object)");
  lua_settop(L, top);
  return -1;
}

/* The map's own messages: to map:set_log's function, else stderr. */
void smtpd_log(smtpd_map *m, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (m && m->log_ref != LUA_NOREF && m->log_ref != LUA_REFNIL) {
    log_call c;
    c.ref = m->log_ref;
    c.level = "error";
    c.msg = msg;
    if (util_log_call(m->L, util_map_log, &c, "the map's log function"))
      log_stderr(msg);
    return;
  }
  log_stderr(msg);
}

void smtpd_log_to(smtpd_map *m, int ref, const char *level, const char *msg) {
  if (ref != LUA_NOREF && ref != LUA_REFNIL) {
    log_call c;
    c.ref = ref;
    c.level = level;
    c.msg = msg;
    if (util_log_call(m->L, util_server_log, &c, "server:log"))
      log_stderr(msg);
    return;
  }
  smtpd_log(m, "%s", msg);
}

/* host:port, [v6]:port, or "?" into buf. */
void smtpd_addr_name(const struct sockaddr *sa, char *buf, size_t size) {
  char host[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, host, sizeof host);
    snprintf(buf, size, "%s:%d", host, ntohs(a->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, host, sizeof host);
    snprintf(buf, size, "[%s]:%d", host, ntohs(a->sin6_port));
  } else if (sa->sa_family == AF_UNIX) {
    snprintf(buf, size, "unix:%s", ((const struct sockaddr_un *)sa)->sun_path);
  } else {
    snprintf(buf, size, "?");
  }
}

/* Pushes {host, port}. */
void smtpd_push_addr(lua_State *L, const struct sockaddr *sa) {
  char host[INET6_ADDRSTRLEN] = "";
  int port = 0;
  lua_createtable(L, 2, 0);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else if (sa->sa_family == AF_UNIX) {
    lua_pushfstring(L, "unix:%s", ((const struct sockaddr_un *)sa)->sun_path);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, 0);
    lua_rawseti(L, -2, 2);
    return;
  }
  lua_pushstring(L, host);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, port);
  lua_rawseti(L, -2, 2);
}

/* Pushes a copy of a string list as a Lua array. */
void smtpd_push_strlist(lua_State *L, const smtpd_strlist *l) {
  size_t i;
  lua_createtable(L, (int)l->n, 0);
  for (i = 0; i < l->n; i++) {
    lua_pushlstring(L, l->v[i].p, l->v[i].len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

void smtpd_on_close(lua_State *L, const char *key, lua_CFunction fn) {
  /* a sentinel in the registry: collected only when the state closes */
  if (lua_getfield(L, LUA_REGISTRYINDEX, key) == LUA_TNIL) {
    lua_newuserdatauv(L, 1, 0);
    lua_newtable(L);
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, key);
  }
  lua_pop(L, 1);
}

void smtpd_new_class(lua_State *L, const char *mt, const luaL_Reg *meta,
                     const luaL_Reg *methods) {
  luaL_newmetatable(L, mt);
  if (meta) luaL_setfuncs(L, meta, 0);
  if (methods) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

int smtpd_setup_get(lua_State *L, const char *key) {
  lua_getfield(L, LUA_REGISTRYINDEX, "smtpd.setup");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_getfield(L, -1, key);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

int smtpd_sockaddr(const char *host, int port, struct sockaddr_storage *ss) {
  if (strchr(host, ':'))
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

/* The host's fully qualified name, found once per process the way Python's
 * socket.getfqdn() finds it: the first of the canonical name and its
 * aliases that has a dot, else the canonical name, else the host name.
 * Safe from any thread (the relay client asks on the thread pool, so the
 * loop never waits for the resolver); glibc's gethostbyaddr_r gives the
 * aliases, elsewhere getnameinfo gives the canonical name. */
static char fqdn_buf[256];
static pthread_once_t fqdn_once = PTHREAD_ONCE_INIT;

static void fqdn_find(void) {
  char host[256];
  struct addrinfo hints, *res = NULL;
  size_t size = sizeof host;
  if (uv_os_gethostname(host, &size) != 0) strcpy(host, "localhost");
  snprintf(fqdn_buf, sizeof fqdn_buf, "%s", host);
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) return;
#if defined(__GLIBC__)
  {
    char buf[8192];
    struct hostent he, *hp = NULL;
    int herr = 0;
    const void *addr;
    socklen_t alen;
    int fam = res->ai_family;
    if (fam == AF_INET) {
      addr = &((struct sockaddr_in *)res->ai_addr)->sin_addr;
      alen = sizeof(struct in_addr);
    } else {
      addr = &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
      alen = sizeof(struct in6_addr);
    }
    if (gethostbyaddr_r(addr, alen, fam, &he, buf, sizeof buf, &hp,
                        &herr) == 0 && hp) {
      const char *pick = hp->h_name;
      if (!strchr(pick, '.')) {
        char **a;
        for (a = hp->h_aliases; a && *a; a++) {
          if (strchr(*a, '.')) { pick = *a; break; }
        }
      }
      snprintf(fqdn_buf, sizeof fqdn_buf, "%s", pick);
    }
  }
#else
  {
    char name[NI_MAXHOST];
    if (getnameinfo(res->ai_addr, res->ai_addrlen, name, sizeof name, NULL,
                    0, NI_NAMEREQD) == 0)
      snprintf(fqdn_buf, sizeof fqdn_buf, "%s", name);
  }
#endif
  freeaddrinfo(res);
}

const char *smtpd_fqdn(void) {
  pthread_once(&fqdn_once, fqdn_find);
  return fqdn_buf;
}
