/*
 * A raw TCP client on a map's loop: connect, write bytes as given, collect
 * what the peer sends. The specs drive servers with it (input split any
 * way, on the same loop as the server), and so can a REPL.
 *
 *   local c = core.tcp_connect(map, "127.0.0.1", port)
 *   c:write("HELO x\r\n"); map:loop(0.1, 1); print(c:read())
 */
#define SMTPD_GLUE
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

#define TCP_MT "smtpd.tcp"

typedef struct tcp_client {
  uv_tcp_t tcp;
  smtpd_hdr hdr;
  smtpd_map *map;
  uv_connect_t creq;
  smtpd_buf in;
  int connected;
  int eof;
  int err;
  int closing;
  int refs;                /* the userdata and the handle */
  size_t writes;           /* writes in flight */
} tcp_client;

typedef struct tcp_write {
  uv_write_t req;
  tcp_client *c;
  char data[1];
} tcp_write;

typedef struct tcp_ud {
  tcp_client *c;
} tcp_ud;

static void tcp_release(tcp_client *c) {
  if (--c->refs == 0) {
    smtpd_buf_free(&c->in);
    free(c);
  }
}

static void tcp_on_close(uv_handle_t *h) {
  tcp_client *c = (tcp_client *)h;
  smtpd_map_unref(c->map);
  tcp_release(c);
}

static void tcp_close(tcp_client *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, tcp_on_close);
}

static void tcp_close_hdr(smtpd_hdr *h) {
  tcp_close(SMTPD_OWNER(tcp_client, h));
}

static void tcp_on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  tcp_client *c = (tcp_client *)h;
  (void)size;
  if (smtpd_buf_reserve(&c->in, 65536)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->in.p + c->in.len, 65536);
}

static void tcp_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  tcp_client *c = (tcp_client *)st;
  (void)buf;
  if (n > 0) {
    c->in.len += (size_t)n;
    c->in.p[c->in.len] = '\0';
  } else if (n < 0) {
    c->eof = 1;
    if (n != UV_EOF) c->err = (int)n;
    uv_read_stop(st);
  }
}

static void tcp_on_connect(uv_connect_t *req, int status) {
  tcp_client *c = req->data;
  if (status < 0) {
    c->err = status;
    c->eof = 1;
    return;
  }
  c->connected = 1;
  if (!c->closing) uv_read_start((uv_stream_t *)&c->tcp, tcp_on_alloc,
                                 tcp_on_read);
}

/* tcp_connect(map, host, port) */
static int tcp_connect(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int port = (int)luaL_checkinteger(L, 3);
  struct sockaddr_storage ss;
  tcp_client *c;
  tcp_ud *ud;
  int err;
  if (strchr(host, ':')) err = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else err = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (err) return smtpd_fail(L, err);
  c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "out of memory");
  c->hdr.kind = SMTPD_H_OTHER;
  c->hdr.close = tcp_close_hdr;
  c->map = m;
  c->refs = 2;
  uv_tcp_init(&m->loop, &c->tcp);
  c->tcp.data = &c->hdr;
  smtpd_map_ref(m);
  c->creq.data = c;
  err = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss,
                       tcp_on_connect);
  if (err) {
    tcp_close(c);
    tcp_release(c);
    return smtpd_fail(L, err);
  }
  ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->c = c;
  luaL_setmetatable(L, TCP_MT);
  return 1;
}

static tcp_client *tcp_check(lua_State *L) {
  tcp_ud *ud = luaL_checkudata(L, 1, TCP_MT);
  if (ud->c == NULL) luaL_error(L, "tcp client is closed");
  return ud->c;
}

static void tcp_on_write(uv_write_t *req, int status) {
  tcp_write *w = (tcp_write *)req;
  if (status < 0 && !w->c->err) w->c->err = status;
  w->c->writes--;
  tcp_release(w->c);
  free(w);
}

static int tcp_write_(lua_State *L) {
  tcp_client *c = tcp_check(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  tcp_write *w;
  uv_buf_t b;
  int err;
  if (c->closing) return smtpd_fail(L, UV_EPIPE);
  w = malloc(sizeof *w + n);
  if (w == NULL) return luaL_error(L, "out of memory");
  memcpy(w->data, s, n);
  w->c = c;
  b = uv_buf_init(w->data, (unsigned)n);
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tcp_on_write);
  if (err) {
    free(w);
    return smtpd_fail(L, err);
  }
  c->refs++;
  c->writes++;
  lua_pushboolean(L, 1);
  return 1;
}

/* read() -> everything received so far (and clears it) */
static int tcp_read(lua_State *L) {
  tcp_client *c = tcp_check(L);
  lua_pushlstring(L, c->in.p ? c->in.p : "", c->in.len);
  c->in.len = 0;
  return 1;
}

/* peek() -> everything received so far, kept */
static int tcp_peek(lua_State *L) {
  tcp_client *c = tcp_check(L);
  lua_pushlstring(L, c->in.p ? c->in.p : "", c->in.len);
  return 1;
}

/* status() -> connected, eof, error name or nil, writes in flight */
static int tcp_status(lua_State *L) {
  tcp_client *c = tcp_check(L);
  lua_pushboolean(L, c->connected);
  lua_pushboolean(L, c->eof);
  if (c->err) lua_pushstring(L, uv_err_name(c->err));
  else lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)c->writes);
  return 4;
}

static void tcp_on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static int tcp_shutdown_write(lua_State *L) {
  tcp_client *c = tcp_check(L);
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL) return luaL_error(L, "out of memory");
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, tcp_on_shutdown)) free(req);
  return 0;
}

/* set_rcvbuf(bytes): a small receive buffer, so a paused client cannot
 * hide the server's output in its kernel buffer. */
static int tcp_set_rcvbuf(lua_State *L) {
  tcp_client *c = tcp_check(L);
  int v = (int)luaL_checkinteger(L, 2);
  int err = uv_recv_buffer_size((uv_handle_t *)&c->tcp, &v);
  if (err) return smtpd_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* pause()/resume(): stop and start reading (a client that does not read
 * its replies). */
static int tcp_pause(lua_State *L) {
  tcp_client *c = tcp_check(L);
  if (c->connected && !c->closing) uv_read_stop((uv_stream_t *)&c->tcp);
  return 0;
}

static int tcp_resume(lua_State *L) {
  tcp_client *c = tcp_check(L);
  if (c->connected && !c->closing && !c->eof)
    uv_read_start((uv_stream_t *)&c->tcp, tcp_on_alloc, tcp_on_read);
  return 0;
}

static int tcp_close_(lua_State *L) {
  tcp_ud *ud = luaL_checkudata(L, 1, TCP_MT);
  if (ud->c) {
    tcp_close(ud->c);
    tcp_release(ud->c);
    ud->c = NULL;
  }
  return 0;
}

void smtpd_open_tcp(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", tcp_write_}, {"read", tcp_read}, {"peek", tcp_peek},
    {"status", tcp_status}, {"shutdown", tcp_shutdown_write},
    {"pause", tcp_pause}, {"resume", tcp_resume},
    {"set_rcvbuf", tcp_set_rcvbuf},
    {"close", tcp_close_}, {NULL, NULL}
  };
  luaL_newmetatable(L, TCP_MT);
  lua_pushcfunction(L, tcp_close_);
  lua_setfield(L, -2, "__gc");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, tcp_connect);
  lua_setfield(L, -2, "tcp_connect");
}
