/*
 * Listening sockets: bind, listen, accept into channels, the connection
 * limits a server shares with its channels, and graceful shutdown.
 *
 *   local h = core.listen(map, server_object, ip, port, opts)
 *   h:getsockname()  h:close(grace)  h:is_open()
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/glue.h"
#include "testing/testing.h"

/* ---- what a server shares with its channels ----------------------------- */

static smtpd_shared *shared_new(void) {
  smtpd_shared *sh = calloc(1, sizeof *sh);
  if (sh) sh->refs = 1;
  return sh;
}

void smtpd_shared_unref(smtpd_shared *sh) {
  if (sh && --sh->refs == 0) {
    size_t i;
    for (i = 0; i < sh->nupstreams; i++) {
      smtpd_relayconf_unref(sh->upstreams[i]);
      free(sh->upstream_name[i]);
    }
    smtpd_tls_conf_unref(sh->tls);
    free(sh->auth_mechs);
    free(sh->unix_path);
    free(sh->proxy_trusted);
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

/* Counts one more connection from sa's address; 0 if the per-address
 * limit says no (or memory ran out). */
int smtpd_shared_admit_ip(smtpd_shared *sh, const struct sockaddr *sa) {
  unsigned char key[16];
  int fam;
  smtpd_ipcount *e;
  shared_key(sa, key, &fam);
  e = shared_find(sh, key, fam);
  if (e && sh->conf.max_per_ip && e->n >= sh->conf.max_per_ip) return 0;
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
  return 1;
}

/* Counts a new connection from sa; 0 if a limit says no. Local clients
 * have no address to count per; behind a proxy the address is the
 * proxy's, and the client's is counted once its header names it
 * (smtpd_shared_admit_ip from the channel). */
static int shared_admit(smtpd_shared *sh, const struct sockaddr *sa,
                        int *ip_counted) {
  *ip_counted = 0;
  if (sh->conf.max_connections && sh->total >= sh->conf.max_connections)
    return 0;
  if (sa->sa_family != AF_UNIX && !sh->nproxy) {
    if (!smtpd_shared_admit_ip(sh, sa)) return 0;
    *ip_counted = 1;
  }
  sh->total++;
  return 1;
}

void smtpd_shared_leave(smtpd_shared *sh, const struct sockaddr *sa,
                        int ip_counted) {
  unsigned char key[16];
  int fam;
  smtpd_ipcount *e;
  if (ip_counted) {
    shared_key(sa, key, &fam);
    e = shared_find(sh, key, fam);
    if (e && --e->n == 0) *e = sh->ips[--sh->nips];
  }
  sh->total--;
}

/* ---- lifetime ----------------------------------------------------------- */

static void server_free(smtpd_handle *h) {
  smtpd_server *s = SMTPD_OWNER(smtpd_server, h);
  smtpd_shared_unref(s->shared);
  smtpd_str_free(&s->fqdn);
  free(s);
}

/* Stops listening and releases the Lua object; live channels go on. */
static void server_close_handles(smtpd_handle *h) {
  smtpd_server *s = SMTPD_OWNER(smtpd_server, h);
  const char *path = s->shared->unix_path;
  struct stat st;
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, s->obj_ref);
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, s->opts_ref);
  s->obj_ref = s->opts_ref = LUA_NOREF;
  smtpd_handle_uv_close(h, (uv_handle_t *)&s->tcp);
  /* The socket file goes with us, unless someone replaced it since. */
  if (path && s->unix_ino && lstat(path, &st) == 0 &&
      st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
    unlink(path);
}

/* ---- accept ------------------------------------------------------------- */

static void server_on_connection(uv_stream_t *st, int status);

/* The spare socket took a connection we had no memory for, and is
 * closed: the next one that waited is taken now. */
static void server_spare_closed(uv_handle_t *u) {
  smtpd_server *srv = SMTPD_OWNER(smtpd_server, u->data);
  int closing = srv->h.closing, again = srv->refuse_pending;
  srv->spare_busy = 0;
  srv->refuse_pending = 0;
  smtpd_handle_done(&srv->h);          /* may free srv when closing */
  if (!closing && again)
    server_on_connection((uv_stream_t *)&srv->tcp, 0);
}

/* No channel could be made (out of memory): the connection is still
 * accepted, on a spare socket of the server's, told 421 and closed, so
 * that libuv goes on accepting (a listener whose connection is never
 * accepted stops listening). */
static void server_refuse(smtpd_server *srv) {
  uv_buf_t b[2];
  uv_loop_t *loop = &srv->h.map->loop;
  if (srv->spare_busy) {
    srv->refuse_pending = 1;     /* after the spare's close */
    return;
  }
  memset(&srv->spare, 0, sizeof srv->spare);
  if (srv->shared->unix_path) uv_pipe_init(loop, &srv->spare.pipe, 0);
  else uv_tcp_init(loop, &srv->spare.tcp);
  srv->spare_busy = 1;
  smtpd_handle_attach(&srv->h, (uv_handle_t *)&srv->spare);
  b[0] = uv_buf_init((char *)SMTPD_TEXT(ACCEPT_NOMEM),
                     (unsigned)SMTPD_TEXT_LEN(ACCEPT_NOMEM));
  b[1] = uv_buf_init((char *)"\r\n", 2);
  if (uv_accept((uv_stream_t *)&srv->tcp, (uv_stream_t *)&srv->spare) == 0)
    uv_try_write((uv_stream_t *)&srv->spare, b, 2);
  uv_close((uv_handle_t *)&srv->spare, server_spare_closed);
  smtpd_log_to(srv->h.map, srv->obj_ref, "error", "out of memory: a "
               "connection refused with 421");
}

static void server_on_connection(uv_stream_t *st, int status) {
  smtpd_server *srv = SMTPD_OWNER(smtpd_server, st->data);
  smtpd_channel *ch;
  int len = sizeof ch->peer;
  if (status < 0) {
    smtpd_log_to(srv->h.map, srv->obj_ref, "error", uv_strerror(status));
    return;
  }
  ch = SMTPD_FAULT(SMTPD_FAULT_ACCEPT) ? NULL : smtpd_channel_new(srv);
  if (ch == NULL) {
    server_refuse(srv);
    return;
  }
  if (uv_accept(st, (uv_stream_t *)&ch->tcp)) {
    smtpd_channel_close(ch);
    return;
  }
  if (srv->shared->unix_path) {
    /* A unix client has no name: the peer is the socket's path. */
    struct sockaddr_un *un = (struct sockaddr_un *)&ch->peer;
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    strncpy(un->sun_path, srv->shared->unix_path, sizeof un->sun_path - 1);
  } else if (uv_tcp_getpeername(&ch->tcp.tcp, (struct sockaddr *)&ch->peer,
                                &len)) {
    smtpd_channel_close(ch);
    return;
  } else {
    uv_tcp_nodelay(&ch->tcp.tcp, 1);
  }
  if (!shared_admit(ch->shared, (struct sockaddr *)&ch->peer,
                    &ch->ip_counted)) {
    /* Over a connection limit: say so and close, no Lua involved. */
    smtpd_sayf(&ch->s, SMTPD_R_TOO_MANY_CONN, srv->fqdn.p);
    ch->close_when_done = 1;
    smtpd_channel_flush(ch);
    return;
  }
  ch->counted = 1;
  if (srv->shared->nproxy) {
    /* Only the proxies may connect, and they speak first. */
    size_t k = 0;
    /* On a unix socket the file's permissions say who may connect. */
    if (ch->peer.ss_family != AF_UNIX)
      for (k = 0; k < srv->shared->nproxy; k++)
      if (smtpd_cidr_match(&srv->shared->proxy_trusted[k],
                           (struct sockaddr *)&ch->peer))
        break;
    if (ch->peer.ss_family != AF_UNIX && k == srv->shared->nproxy) {
      if (srv->h.map->debug)
        smtpd_channel_log(ch, "debug", "not a trusted proxy: closed");
      smtpd_channel_close(ch);
      return;
    }
    ch->proxy_wait = 1;
  }
  if (smtpd_hook_accept(ch, srv)) {
    smtpd_channel_close(ch);
    return;
  }
  if (ch->h.closing) return;
  if (ch->proxy_wait) smtpd_channel_await_proxy(ch);
  else smtpd_channel_start(ch);
}

/* ---- listen ------------------------------------------------------------- */

/* Whether a socket file at path is live (a server answers there). */
static int unix_live(const char *path) {
  struct sockaddr_un un;
  int fd, r;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  r = connect(fd, (struct sockaddr *)&un, sizeof un);
  close(fd);
  return r == 0;
}

/* A unix socket path to listen on: a socket file left by a server that
 * is gone may be replaced; a live one, or any other file, is an error
 * (raised, nothing touched). */
static void unix_check(lua_State *L, const char *path) {
  struct stat st;
  struct sockaddr_un un;
  if (strlen(path) >= sizeof un.sun_path)
    luaL_error(L, "unix socket path too long (%d bytes at most): %s",
               (int)sizeof un.sun_path - 1, path);
  if (lstat(path, &st) != 0) return;
  if (!S_ISSOCK(st.st_mode))
    luaL_error(L, "cannot listen on unix:%s: the file exists and is not a "
               "socket", path);
  if (unix_live(path))
    luaL_error(L, "cannot listen on unix:%s: another server listens there",
               path);
}

/* The stale socket file unix_check allowed, removed before bind. */
static void unix_unlink_stale(const char *path) {
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && !unix_live(path))
    unlink(path);
}

/* SO_REUSEPORT: several processes (lua-smtpd --workers) listen on one
 * port and the kernel spreads new connections over them. */
static int server_reuse_port(uv_tcp_t *t) {
#if defined(SO_REUSEPORT_LB) || defined(SO_REUSEPORT)
  /* FreeBSD balances connections over the sockets only with
   * SO_REUSEPORT_LB; elsewhere SO_REUSEPORT does. */
#ifdef SO_REUSEPORT_LB
  int opt = SO_REUSEPORT_LB;
#else
  int opt = SO_REUSEPORT;
#endif
  uv_os_fd_t fd;
  int on = 1, err = uv_fileno((uv_handle_t *)t, &fd);
  if (err) return err;
  if (setsockopt(fd, SOL_SOCKET, opt, &on, sizeof on) != 0)
    return uv_translate_sys_error(errno);
  return 0;
#else
  (void)t;
  return UV_ENOTSUP;
#endif
}

/* listen(map, obj, ip, port, opts, mechs, upstreams) -> handle | nil,
 * err, name. A bad option (or a certificate that cannot be used) raises
 * its message (no position: the caller re-raises it). mechs: the AUTH
 * mechanisms to advertise, space separated, or nil for no AUTH.
 * upstreams: nil, or {{conf, route}, ...} (core.relay_conf objects) for a
 * relay at RCPT time. Every value is checked before anything is
 * allocated or touched on disk. */
static int server_listen(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *ip = luaL_checkstring(L, 3);
  lua_Integer port = luaL_checkinteger(L, 4);
  const char *mechs = luaL_optstring(L, 6, NULL), *unix_path, *fqdn;
  struct sockaddr_storage ss;
  smtpd_server_conf conf;
  smtpd_tls_spec tspec;
  smtpd_server *s;
  smtpd_tls_conf *tls = NULL;
  smtpd_cidr *trusted = NULL;
  int implicit = 0, has_tls, err, opts_idx;
  uint64_t hs_ms = 0;
  char why[300];
  smtpd_relayconf *ups[SMTPD_MAX_UPSTREAMS];
  int routes[SMTPD_MAX_UPSTREAMS];
  const char *names[SMTPD_MAX_UPSTREAMS];
  size_t nups = 0, i;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TTABLE);
  luaL_argcheck(L, port >= 0 && port <= 65535, 4, "port out of range");
  if (!lua_isnoneornil(L, 7)) {
    luaL_checktype(L, 7, LUA_TTABLE);
    nups = lua_rawlen(L, 7);
    luaL_argcheck(L, nups >= 1 && nups <= SMTPD_MAX_UPSTREAMS, 7,
                  "one or two upstreams");
    for (i = 0; i < nups; i++) {
      lua_rawgeti(L, 7, (lua_Integer)i + 1);
      luaL_argcheck(L, lua_istable(L, -1), 7, "{conf, route} each");
      lua_rawgeti(L, -1, 1);
      ups[i] = smtpd_relayconf_check(L, -1);
      lua_rawgeti(L, -2, 2);
      routes[i] = lua_toboolean(L, -1);
      lua_rawgeti(L, -3, 3);
      names[i] = lua_tostring(L, -1);  /* the table keeps it alive */
      luaL_argcheck(L, names[i] == NULL || (strlen(names[i]) < 40 &&
                    strcspn(names[i], "\r\n") == strlen(names[i])), 7,
                    "an upstream's name is a short line");
      lua_pop(L, 4);
    }
  }
  unix_path = strncmp(ip, "unix:", 5) == 0 ? ip + 5 : NULL;
  memset(&conf, 0, sizeof conf);
  smtpd_opts_read(L, 5, smtpd_server_optdefs, &conf);
  if (conf.proxy.t.given && conf.proxy.trusted.n == 0)
    return luaL_error(L, "proxy_protocol.trusted must list the proxies' "
                      "addresses (\"127.0.0.1\", \"10.0.0.0/8\", ...)");
  if (conf.proxy.max_header > 65551)
    return luaL_error(L, "proxy_protocol.max_header must be 16 to 65551 "
                      "bytes");
  has_tls = conf.tls.t.given;
  if (has_tls) {
    smtpd_tls_spec_from(L, &conf.tls, &tspec);
    implicit = conf.tls.implicit;
    hs_ms = conf.tls.handshake_ms;
  }
  if (unix_path) {
    if (!*unix_path) return luaL_error(L, "unix: needs a path");
    if (conf.reuse_port)
      return luaL_error(L, "reuse_port (--workers) needs a TCP port, not "
                        "a unix socket");
    unix_check(L, unix_path);
  } else {
    err = smtpd_sockaddr(ip, (int)port, &ss);
    if (err) return smtpd_fail(L, err);
  }
  /* What was read, for the Lua side (server.options): pushed while the
   * strings and the scratch it points into are alive. */
  smtpd_opts_push_read(L, smtpd_server_optdefs, &conf);
  opts_idx = lua_gettop(L);
  /* Everything is valid: now allocate, load and touch the disk. */
  if (has_tls && (tls = smtpd_tls_conf_new(&tspec, why, sizeof why)) == NULL)
    return luaL_error(L, "tls: %s", why);
  fqdn = conf.fqdn ? conf.fqdn : smtpd_fqdn();
  conf.fqdn = NULL;
  s = calloc(1, sizeof *s);
  if (conf.proxy.trusted.n &&
      (trusted = malloc(conf.proxy.trusted.n * sizeof *trusted)) != NULL)
    memcpy(trusted, conf.proxy.trusted.v,
           conf.proxy.trusted.n * sizeof *trusted);
  smtpd_opts_scratch_release(L);
  if (s == NULL || (s->shared = shared_new()) == NULL ||
      (conf.proxy.trusted.n && trusted == NULL) ||
      smtpd_str_set(&s->fqdn, fqdn, strlen(fqdn)) ||
      (mechs && mechs[0] && (s->shared->auth_mechs = strdup(mechs)) == NULL) ||
      (unix_path && (s->shared->unix_path = strdup(unix_path)) == NULL)) {
    if (s) smtpd_shared_unref(s->shared);
    if (s) smtpd_str_free(&s->fqdn);
    free(s);
    free(trusted);
    smtpd_tls_conf_unref(tls);
    return luaL_error(L, "out of memory");
  }
  if (unix_path) unix_unlink_stale(unix_path);
  /* Nothing kept points into Lua's memory. */
  conf.proxy.trusted.v = NULL;
  memset(&conf.tls, 0, sizeof conf.tls);
  s->shared->conf = conf;
  s->shared->proxy_trusted = trusted;
  s->shared->nproxy = conf.proxy.trusted.n;
  s->shared->proxy_timeout_ms = conf.proxy.timeout_ms;
  s->shared->proxy_max = conf.proxy.max_header;
  for (i = 0; i < nups; i++) {
    s->shared->upstreams[i] = ups[i];
    s->shared->upstream_route[i] = routes[i];
    s->shared->upstream_name[i] = names[i] ? strdup(names[i]) : NULL;
    smtpd_relayconf_ref(ups[i]);
  }
  s->shared->nupstreams = nups;
  s->shared->tls = tls;
  s->shared->tls_implicit = implicit;
  s->shared->tls_handshake_ms = hs_ms;
  lua_getfield(L, 2, "check_connection");
  s->shared->check_connect = !lua_isnil(L, -1);
  lua_pop(L, 1);
  s->obj_ref = s->opts_ref = LUA_NOREF;
  if (conf.max_data_memory != (size_t)-1) m->data_cap = conf.max_data_memory;
  smtpd_handle_init(&s->h, m, SMTPD_H_SERVER, server_close_handles,
                    server_free);
  /* The socket exists before bind, so SO_REUSEPORT can be set on it
   * (libuv before 1.49 has no flag for it). */
  if (unix_path) {
    struct stat st;
    err = uv_pipe_init(&m->loop, &s->tcp.pipe, 0);
    if (!err) {
      smtpd_handle_attach(&s->h, (uv_handle_t *)&s->tcp);
      err = uv_pipe_bind(&s->tcp.pipe, unix_path);
      if (!err && lstat(unix_path, &st) == 0) {
        s->unix_dev = st.st_dev;
        s->unix_ino = st.st_ino;
        if (chmod(unix_path, (mode_t)conf.unix_mode) != 0)
          err = uv_translate_sys_error(errno);
      }
      if (!err) err = uv_listen((uv_stream_t *)&s->tcp, (int)conf.backlog,
                                server_on_connection);
    }
  } else {
    err = uv_tcp_init_ex(&m->loop, &s->tcp.tcp, ss.ss_family);
    if (!err) {
      smtpd_handle_attach(&s->h, (uv_handle_t *)&s->tcp);
      if (conf.reuse_port) err = server_reuse_port(&s->tcp.tcp);
      if (!err) err = uv_tcp_bind(&s->tcp.tcp, (struct sockaddr *)&ss, 0);
      if (!err) err = uv_listen((uv_stream_t *)&s->tcp, (int)conf.backlog,
                                server_on_connection);
    }
  }
  if (err) {
    /* With no socket (EMFILE) nothing was attached: closing frees it. */
    smtpd_handle_close(&s->h);
    return smtpd_fail(L, err);
  }
  lua_pushvalue(L, 2);
  s->obj_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, opts_idx);
  s->opts_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  smtpd_handle_push_box(L, &s->h, SMTPD_SERVER_MT, 0);
  return 1;
}

/* options(handle) -> what the core read of the server's options, every
 * default filled in (false: none), for the Lua side to use as it is. */
static int server_options(lua_State *L) {
  smtpd_handle *h = smtpd_handle_check(L, 1, SMTPD_SERVER_MT, "the server");
  lua_rawgeti(L, LUA_REGISTRYINDEX, SMTPD_OWNER(smtpd_server, h)->opts_ref);
  return 1;
}

/* ---- shutdown ------------------------------------------------------------ */

typedef struct shutdown_walk {
  smtpd_shared *shared;
  int force;
} shutdown_walk;

static void server_walk_shutdown(uv_handle_t *u, void *arg) {
  shutdown_walk *w = arg;
  smtpd_handle *h = u->data;
  if (h && h->kind == SMTPD_H_CHANNEL &&
      (u->type == UV_TCP || u->type == UV_NAMED_PIPE) && !h->closing) {
    smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, h);
    if (ch->shared == w->shared) smtpd_channel_shutdown(ch, w->force);
  }
}

/* The end of a shutdown's grace period. */
typedef struct grace_timer {
  smtpd_handle h;
  uv_timer_t t;
  smtpd_shared *shared;
} grace_timer;

static void grace_free(smtpd_handle *h) {
  grace_timer *g = SMTPD_OWNER(grace_timer, h);
  smtpd_shared_unref(g->shared);
  free(g);
}

static void grace_close(smtpd_handle *h) {
  smtpd_handle_uv_close(h, (uv_handle_t *)&SMTPD_OWNER(grace_timer, h)->t);
}

static void grace_on_fire(uv_timer_t *t) {
  grace_timer *g = SMTPD_OWNER(grace_timer, t->data);
  shutdown_walk w;
  w.shared = g->shared;
  w.force = 1;
  uv_walk(t->loop, server_walk_shutdown, &w);
  smtpd_handle_close(&g->h);
}

static void server_start_grace(smtpd_server *s, double grace) {
  smtpd_map *m = s->h.map;
  grace_timer *g = calloc(1, sizeof *g);
  if (g == NULL) return;
  smtpd_handle_init(&g->h, m, SMTPD_H_TIMER, grace_close, grace_free);
  uv_timer_init(&m->loop, &g->t);
  smtpd_handle_attach(&g->h, (uv_handle_t *)&g->t);
  g->shared = s->shared;
  s->shared->refs++;
  smtpd_timer_start(&g->t, grace_on_fire, (uint64_t)(grace * 1000));
  /* The grace period alone does not keep loop() running. */
  uv_unref((uv_handle_t *)&g->t);
}

/* close(handle, grace): stops listening. With grace (seconds), also ends
 * the server's channels: idle ones get 421 now, those in DATA or in a
 * hook may finish their message within grace, then get 421. */
static int server_close(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SMTPD_SERVER_MT);
  double grace = luaL_optnumber(L, 2, -1);
  if (h == NULL) return 0;
  if (grace >= 0) {
    smtpd_server *s = SMTPD_OWNER(smtpd_server, h);
    shutdown_walk w;
    w.shared = s->shared;
    w.force = 0;
    s->shared->shutting_down = 1;
    uv_walk(&h->map->loop, server_walk_shutdown, &w);
    if (s->shared->total > 0) server_start_grace(s, grace);
  }
  smtpd_handle_close(h);
  return 0;
}

static int server_getsockname(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SMTPD_SERVER_MT);
  struct sockaddr_storage ss;
  int len = sizeof ss, err;
  if (h == NULL) return smtpd_fail(L, UV_EBADF);
  if (SMTPD_OWNER(smtpd_server, h)->shared->unix_path) {
    lua_pushfstring(L, "unix:%s",
                    SMTPD_OWNER(smtpd_server, h)->shared->unix_path);
    lua_pushinteger(L, 0);
    return 2;
  }
  err = uv_tcp_getsockname(&SMTPD_OWNER(smtpd_server, h)->tcp.tcp,
                           (struct sockaddr *)&ss, &len);
  if (err) return smtpd_fail(L, err);
  smtpd_push_addr(L, (struct sockaddr *)&ss);
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  return 2;
}

/* reload_tls(handle, tls) -> true | nil, why: new connections get the
 * certificates of tls; live ones keep theirs. On failure nothing
 * changes. */
static int server_reload_tls(lua_State *L) {
  smtpd_handle *h = smtpd_handle_check(L, 1, SMTPD_SERVER_MT, "the server");
  smtpd_shared *sh = SMTPD_OWNER(smtpd_server, h)->shared;
  smtpd_tls_conf *tls;
  char why[300];
  int implicit;
  uint64_t hs_ms;
  luaL_checktype(L, 2, LUA_TTABLE);
  tls = smtpd_tls_read(L, 2, &implicit, &hs_ms, why, sizeof why);
  if (tls == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  if (sh->tls == NULL || implicit != sh->tls_implicit) {
    smtpd_tls_conf_unref(tls);
    lua_pushnil(L);
    lua_pushstring(L, sh->tls == NULL ? "the server was made without tls"
                                      : "tls.implicit cannot change");
    return 2;
  }
  smtpd_tls_conf_unref(sh->tls);
  sh->tls = tls;
  sh->tls_handshake_ms = hs_ms;
  lua_pushboolean(L, 1);
  return 1;
}

static int server_is_open(lua_State *L) {
  lua_pushboolean(L, smtpd_handle_get(L, 1, SMTPD_SERVER_MT) != NULL);
  return 1;
}

void smtpd_open_server(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", server_close}, {"getsockname", server_getsockname},
    {"is_open", server_is_open}, {"reload_tls", server_reload_tls},
    {"options", server_options},
    {NULL, NULL}
  };
  smtpd_new_class(L, SMTPD_SERVER_MT, NULL, methods);
  lua_pushcfunction(L, server_listen);
  lua_setfield(L, -2, "listen");
}
