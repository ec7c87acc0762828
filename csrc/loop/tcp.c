/*
 * A raw TCP client on a map's loop: connect, write bytes as given, collect
 * what the peer sends. The specs drive servers with it (input split any
 * way, on the same loop as the server), and so can a REPL.
 *
 *   local c = core.tcp_connect(map, "127.0.0.1", port)
 *   c:write("HELO x\r\n"); map:loop(0.1, 1); print(c:read())
 *
 * c:starttls{verify=, ca=, sni=} turns TLS on (after the server's 220 to
 * STARTTLS, or at once for implicit TLS): from then on reads give the
 * decrypted bytes and writes are encrypted (held until the handshake is
 * done); c:tls() -> info table, or nil and why it failed.
 */
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"

#define TCP_MT "smtpd.tcp"

typedef struct tcp_client {
  smtpd_handle h;
  uv_tcp_t tcp;
  uv_connect_t creq;
  smtpd_buf in;
  int connected;
  int eof;
  int err;
  size_t writes;           /* writes in flight */
  smtpd_tls *tls;
  smtpd_buf raw;           /* ciphertext read, while TLS is on */
  smtpd_buf cout;          /* ciphertext to write */
  smtpd_buf pend;          /* plaintext written before the handshake */
  char tls_err[200];
} tcp_client;

/* Write callbacks (ECANCELED after a close) all come before the close
 * callback that frees the client. */
typedef struct tcp_write {
  uv_write_t req;
  tcp_client *c;
  char data[1];
} tcp_write;

static void tcp_free(smtpd_handle *h) {
  tcp_client *c = SMTPD_OWNER(tcp_client, h);
  smtpd_buf_free(&c->in);
  smtpd_buf_free(&c->raw);
  smtpd_buf_free(&c->cout);
  smtpd_buf_free(&c->pend);
  smtpd_tls_free(c->tls);
  free(c);
}

static void tcp_close(smtpd_handle *h) {
  smtpd_handle_uv_close(h, (uv_handle_t *)&SMTPD_OWNER(tcp_client, h)->tcp);
}

static void tcp_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf) {
  tcp_client *c = SMTPD_OWNER(tcp_client, u->data);
  smtpd_buf *b = c->tls ? &c->raw : &c->in;
  (void)size;
  if (smtpd_buf_reserve(b, 65536)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(b->p + b->len, 65536);
}

static void tcp_on_write(uv_write_t *req, int status);
static int tcp_send(tcp_client *c, const char *s, size_t n);

static int tcp_plain(void *ctx, const char *p, size_t n) {
  tcp_client *c = ctx;
  return smtpd_buf_append(&c->in, p, n);
}

/* Writes what TLS queued (handshake records, encrypted data). */
static void tcp_wire(tcp_client *c) {
  if (c->tls && smtpd_tls_ready(c->tls) && c->pend.len) {
    smtpd_tls_write(c->tls, c->pend.p, c->pend.len);
    smtpd_buf_free(&c->pend);
  }
  if (c->cout.len && !c->h.closing) {
    tcp_send(c, c->cout.p, c->cout.len);
    c->cout.len = 0;
  }
}

static void tcp_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  tcp_client *c = SMTPD_OWNER(tcp_client, st->data);
  (void)buf;
  if (n > 0 && c->tls) {
    int r;
    c->raw.len += (size_t)n;
    r = smtpd_tls_input(c->tls, c->raw.p, c->raw.len, tcp_plain, c);
    c->raw.len = 0;
    if (r == SMTPD_TLS_ERROR && !c->tls_err[0])
      snprintf(c->tls_err, sizeof c->tls_err, "%s",
               smtpd_tls_error(c->tls));
    tcp_wire(c);
    if (c->in.p) c->in.p[c->in.len] = '\0';
    if (r != SMTPD_TLS_OK) {
      c->eof = 1;
      uv_read_stop(st);
    }
  } else if (n > 0) {
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
  if (!c->h.closing) uv_read_start((uv_stream_t *)&c->tcp, tcp_on_alloc,
                                 tcp_on_read);
}

/* tcp_connect(map, host, port) */
static int tcp_connect(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int port = (int)luaL_checkinteger(L, 3);
  struct sockaddr_storage ss;
  tcp_client *c;
  int err;
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
  err = smtpd_sockaddr(host, port, &ss);
  if (err) return smtpd_fail(L, err);
  c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "out of memory");
  smtpd_handle_init(&c->h, m, SMTPD_H_TCP, tcp_close, tcp_free);
  uv_tcp_init(&m->loop, &c->tcp);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->tcp);
  c->creq.data = c;
  err = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss,
                       tcp_on_connect);
  if (err) {
    smtpd_handle_close(&c->h);
    return smtpd_fail(L, err);
  }
  smtpd_handle_push_box(L, &c->h, TCP_MT, 0);
  return 1;
}

/* The client, or NULL once closed (by :close() or by its map): then
 * reads give "", status() says eof and writes fail with EPIPE. */
static tcp_client *tcp_check(lua_State *L) {
  return SMTPD_OWNER(tcp_client, smtpd_handle_get(L, 1, TCP_MT));
}

static void tcp_on_write(uv_write_t *req, int status) {
  tcp_write *w = (tcp_write *)req;
  if (status < 0 && !w->c->err) w->c->err = status;
  w->c->writes--;
  free(w);
}

static int tcp_send(tcp_client *c, const char *s, size_t n) {
  tcp_write *w = malloc(sizeof *w + n);
  uv_buf_t b;
  int err;
  if (w == NULL) return UV_ENOMEM;
  memcpy(w->data, s, n);
  w->c = c;
  b = uv_buf_init(w->data, (unsigned)n);
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tcp_on_write);
  if (err) {
    free(w);
    return err;
  }
  c->writes++;
  return 0;
}

static int tcp_write_(lua_State *L) {
  tcp_client *c = tcp_check(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  int err;
  if (c == NULL) return smtpd_fail(L, UV_EPIPE);
  if (c->tls) {
    if (!smtpd_tls_ready(c->tls)) {
      if (smtpd_buf_append(&c->pend, s, n))
        return luaL_error(L, "out of memory");
    } else if (smtpd_tls_write(c->tls, s, n)) {
      return smtpd_fail(L, UV_EPROTO);
    }
    tcp_wire(c);
    lua_pushboolean(L, 1);
    return 1;
  }
  err = tcp_send(c, s, n);
  if (err == UV_ENOMEM) return luaL_error(L, "out of memory");
  if (err) return smtpd_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* starttls(c, {verify=false, ca=, sni=}) -> true | nil, why */
static int tcp_starttls(lua_State *L) {
  tcp_client *c = tcp_check(L);
  smtpd_tls_client_spec sp;
  char err[200];
  if (c == NULL) return smtpd_fail(L, UV_EPIPE);
  if (c->tls) return luaL_error(L, "TLS is already on");
  memset(&sp, 0, sizeof sp);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "verify");
    sp.verify = lua_toboolean(L, -1);
    lua_getfield(L, 2, "ca");
    sp.ca = lua_tostring(L, -1);
    lua_getfield(L, 2, "sni");
    sp.sni = lua_tostring(L, -1);
    lua_getfield(L, 2, "cert");
    sp.cert = lua_tostring(L, -1);
    lua_getfield(L, 2, "key");
    sp.key = lua_tostring(L, -1);
    lua_pop(L, 5);   /* the strings stay in the table */
  }
  snprintf(err, sizeof err, "out of memory");
  c->tls = smtpd_map_tls(c->h.map) ?
           smtpd_tls_client(c->h.map->tls_env, &sp, &c->cout, err,
                            sizeof err) : NULL;
  if (c->tls == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  if (smtpd_tls_start(c->tls) != SMTPD_TLS_OK) {
    lua_pushnil(L);
    lua_pushstring(L, smtpd_tls_error(c->tls));
    return 2;
  }
  tcp_wire(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* tls(c) -> {version=, cipher=, ...} once the handshake is done; nil,
 * why when it failed; nil while it runs or without TLS. */
static int tcp_tls(lua_State *L) {
  tcp_client *c = tcp_check(L);
  smtpd_tls_info in;
  if (c == NULL || c->tls == NULL) return 0;
  if (c->tls_err[0]) {
    lua_pushnil(L);
    lua_pushstring(L, c->tls_err);
    return 2;
  }
  if (!smtpd_tls_ready(c->tls)) return 0;
  smtpd_tls_get_info(c->tls, &in);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, in.version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, in.cipher ? in.cipher : "");
  lua_setfield(L, -2, "cipher");
  lua_pushstring(L, in.subject);
  lua_setfield(L, -2, "peer_subject");
  lua_pushboolean(L, in.resumed);
  lua_setfield(L, -2, "resumed");
  return 1;
}

/* read() -> everything received so far (and clears it) */
static int tcp_read(lua_State *L) {
  tcp_client *c = tcp_check(L);
  if (c == NULL) {
    lua_pushliteral(L, "");
    return 1;
  }
  lua_pushlstring(L, c->in.p ? c->in.p : "", c->in.len);
  c->in.len = 0;
  return 1;
}

/* peek() -> everything received so far, kept */
static int tcp_peek(lua_State *L) {
  tcp_client *c = tcp_check(L);
  if (c == NULL) {
    lua_pushliteral(L, "");
    return 1;
  }
  lua_pushlstring(L, c->in.p ? c->in.p : "", c->in.len);
  return 1;
}

/* status() -> connected, eof, error name or nil, writes in flight */
static int tcp_status(lua_State *L) {
  tcp_client *c = tcp_check(L);
  lua_pushboolean(L, c && c->connected);
  lua_pushboolean(L, c == NULL || c->eof);
  if (c && c->err) lua_pushstring(L, uv_err_name(c->err));
  else lua_pushnil(L);
  lua_pushinteger(L, c ? (lua_Integer)c->writes : 0);
  return 4;
}

/* getsockname() -> host, port of our end (once connected) */
static int tcp_getsockname(lua_State *L) {
  tcp_client *c = tcp_check(L);
  struct sockaddr_storage ss;
  int len = sizeof ss, err;
  if (c == NULL) return smtpd_fail(L, UV_EBADF);
  err = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
  if (err) return smtpd_fail(L, err);
  smtpd_push_addr(L, (struct sockaddr *)&ss);
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  return 2;
}

static void tcp_on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static int tcp_shutdown_write(lua_State *L) {
  tcp_client *c = tcp_check(L);
  uv_shutdown_t *req;
  if (c == NULL) return 0;
  req = malloc(sizeof *req);
  if (req == NULL) return luaL_error(L, "out of memory");
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, tcp_on_shutdown)) free(req);
  return 0;
}

/* set_rcvbuf(bytes): a small receive buffer, so a paused client cannot
 * hide the server's output in its kernel buffer. */
static int tcp_set_rcvbuf(lua_State *L) {
  tcp_client *c = tcp_check(L);
  int v = (int)luaL_checkinteger(L, 2), err;
  if (c == NULL) return smtpd_fail(L, UV_EBADF);
  err = uv_recv_buffer_size((uv_handle_t *)&c->tcp, &v);
  if (err) return smtpd_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* pause()/resume(): stop and start reading (a client that does not read
 * its replies). */
static int tcp_pause(lua_State *L) {
  tcp_client *c = tcp_check(L);
  if (c && c->connected) uv_read_stop((uv_stream_t *)&c->tcp);
  return 0;
}

static int tcp_resume(lua_State *L) {
  tcp_client *c = tcp_check(L);
  if (c && c->connected && !c->eof)
    uv_read_start((uv_stream_t *)&c->tcp, tcp_on_alloc, tcp_on_read);
  return 0;
}

static int tcp_close_(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, TCP_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

void smtpd_open_tcp(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", tcp_write_}, {"read", tcp_read}, {"peek", tcp_peek},
    {"status", tcp_status}, {"shutdown", tcp_shutdown_write},
    {"pause", tcp_pause}, {"resume", tcp_resume},
    {"set_rcvbuf", tcp_set_rcvbuf}, {"starttls", tcp_starttls},
    {"tls", tcp_tls}, {"getsockname", tcp_getsockname},
    {"close", tcp_close_}, {NULL, NULL}
  };
  smtpd_new_class(L, TCP_MT, NULL, methods);
  lua_pushcfunction(L, tcp_connect);
  lua_setfield(L, -2, "tcp_connect");
}
