/*
 * The parked socket's C half: a TCP (or unix-domain) stream on a map's
 * loop whose calls complete through a callback, so that lua/smtpd/socket.lua
 * can park a hook on each of them (wait.lua). Every call has its own
 * timeout; reads are buffered here and handed to Lua only when a whole
 * line, a whole count or everything up to the close is there, so a reply
 * costs one call into Lua, not one per packet.
 *
 *   local s = core.sock_connect(map, "127.0.0.1", 6379, 5, cb)  -- cb(true)
 *   s:send(data, timeout, cb)    -> true (written at once) | nothing: cb
 *   s:receive(kind, n, timeout, cb) -> data (buffered) | nothing: cb(data)
 *                                     or cb(nil, err, partial)
 *   s:receive(kind, n, timeout)  -> data | false (not there yet)
 *   s:starttls(opts, timeout, cb), s:idle(seconds), s:wake(), s:cancel()
 *
 * kind is "l" (a line, its CR LF removed, at most n bytes), "n" (exactly
 * n bytes) or "a" (everything until the peer closes, at most n bytes).
 * A call cancelled (its hook given up) or timed out while connecting or
 * in the TLS handshake closes the socket; a read that times out leaves it
 * open, as ngx.socket.tcp does.
 */
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"

#define SOCK_MT "smtpd.sock"
/* Past this much unread input, reading pauses until a receive wants
 * more (a peer cannot fill our memory while nobody reads). */
#define SOCK_HIGH (256 * 1024)

enum { SK_NONE, SK_CONNECT, SK_SEND, SK_RECV, SK_TLS };

typedef struct sock {
  smtpd_handle h;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t st;
  } u;
  uv_connect_t creq;
  uv_timer_t rtimer;       /* the read slot's timeout (and idle time) */
  uv_timer_t wtimer;       /* the write slot's timeout */
  smtpd_buf in;            /* plaintext not yet received by Lua */
  smtpd_buf raw;           /* ciphertext read, while TLS is on */
  smtpd_buf cout;          /* ciphertext to write */
  smtpd_tls *tls;
  int connected, eof, err, reading, idle;
  size_t writes;           /* uv writes in flight */
  int rd_op, rd_ref;       /* SK_RECV or SK_TLS, its callback */
  int rx_kind;             /* 'l', 'n' or 'a' */
  size_t rx_n;
  int wr_op, wr_ref;       /* SK_CONNECT or SK_SEND, its callback */
  size_t received, sent;   /* bytes, for stats */
  char tls_err[200];
} sock;

typedef struct sock_write {
  uv_write_t req;
  sock *s;
  char data[1];
} sock_write;

static void sock_free(smtpd_handle *h) {
  sock *s = SMTPD_OWNER(sock, h);
  smtpd_buf_free(&s->in);
  smtpd_buf_free(&s->raw);
  smtpd_buf_free(&s->cout);
  smtpd_tls_free(s->tls);
  free(s);
}

/* Calls the callback at *ref (taken from it first: the callback may start
 * the next call) with the nargs values on top of the stack. */
static void sock_call(sock *s, int *ref, int nargs) {
  lua_State *L = s->h.map->L;
  int r = *ref;
  *ref = LUA_NOREF;
  if (r == LUA_NOREF || s->h.map->dying) {
    lua_pop(L, nargs);
    if (r != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r);
  luaL_unref(L, LUA_REGISTRYINDEX, r);
  lua_insert(L, -1 - nargs);
  smtpd_lua_calls++;
  if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
    smtpd_log(s->h.map, "error in a socket callback: %s",
              lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static void sock_fail_rd(sock *s, const char *why, int partial) {
  lua_State *L = s->h.map->L;
  uv_timer_stop(&s->rtimer);
  s->rd_op = SK_NONE;
  lua_pushnil(L);
  lua_pushstring(L, why);
  if (partial) {
    lua_pushlstring(L, s->in.p ? s->in.p : "", s->in.len);
    s->in.len = 0;
  } else {
    lua_pushliteral(L, "");
  }
  sock_call(s, &s->rd_ref, 3);
}

static void sock_fail_wr(sock *s, const char *why) {
  lua_State *L = s->h.map->L;
  uv_timer_stop(&s->wtimer);
  s->wr_op = SK_NONE;
  lua_pushnil(L);
  lua_pushstring(L, why);
  sock_call(s, &s->wr_ref, 2);
}

static const char *sock_errstr(sock *s) {
  if (s->tls_err[0]) return s->tls_err;
  if (s->err) return uv_strerror(s->err);
  return "closed";
}

/* Closing fails what still waits with "closed" (a socket closed by
 * another coroutine, or by its map), then closes the handles. */
static void sock_close(smtpd_handle *h) {
  sock *s = SMTPD_OWNER(sock, h);
  if (s->rd_op) sock_fail_rd(s, "closed", 0);
  if (s->wr_op) sock_fail_wr(s, "closed");
  smtpd_hook_unref(h->map->L, &s->rd_ref);
  smtpd_hook_unref(h->map->L, &s->wr_ref);
  smtpd_handle_uv_close(h, (uv_handle_t *)&s->rtimer);
  smtpd_handle_uv_close(h, (uv_handle_t *)&s->wtimer);
  smtpd_handle_uv_close(h, (uv_handle_t *)&s->u.st);
}

/* What a receive of this kind takes from the buffer: its length (and in
 * *skip what follows it and is dropped: the line end), 0 when not there
 * yet, -1 when it can never be (a line past its bound). */
static long sock_ready(sock *s, size_t *skip) {
  *skip = 0;
  if (s->rx_kind == 'l') {
    char *nl = s->in.len ? memchr(s->in.p, '\n', s->in.len) : NULL;
    size_t len;
    if (nl == NULL) return s->in.len > s->rx_n ? -1 : 0;
    len = (size_t)(nl - s->in.p);
    *skip = 1;
    if (len && s->in.p[len - 1] == '\r') {
      len--;
      *skip = 2;
    }
    if (len > s->rx_n) return -1;
    return (long)len + 1;   /* +1: an empty line is ready too */
  }
  if (s->rx_kind == 'n') return s->in.len >= s->rx_n ? (long)s->rx_n + 1 : 0;
  /* 'a' */
  if (s->in.len > s->rx_n) return -1;
  return s->eof ? (long)s->in.len + 1 : 0;
}

static void sock_consume(sock *s, size_t n) {
  memmove(s->in.p, s->in.p + n, s->in.len - n);
  s->in.len -= n;
}

static void sock_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf);
static void sock_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void sock_read_start(sock *s) {
  if (!s->reading && s->connected && !s->eof && !s->h.closing &&
      uv_read_start(&s->u.st, sock_on_alloc, sock_on_read) == 0)
    s->reading = 1;
}

static void sock_read_stop(sock *s) {
  if (s->reading) uv_read_stop(&s->u.st);
  s->reading = 0;
}

/* After input (or its end): completes the receive or the handshake that
 * waits, pauses reading when enough is buffered. */
static void sock_progress(sock *s) {
  lua_State *L = s->h.map->L;
  if (s->idle && (s->in.len || s->eof)) {
    /* A pooled connection that speaks or closes is not reusable. */
    smtpd_handle_close(&s->h);
    return;
  }
  if (s->rd_op == SK_TLS) {
    if (s->tls_err[0] || (s->eof && !smtpd_tls_ready(s->tls))) {
      sock_fail_rd(s, sock_errstr(s), 0);
      smtpd_handle_close(&s->h);
      return;
    }
    if (smtpd_tls_ready(s->tls)) {
      uv_timer_stop(&s->rtimer);
      s->rd_op = SK_NONE;
      lua_pushboolean(L, 1);
      sock_call(s, &s->rd_ref, 1);
      return;
    }
  } else if (s->rd_op == SK_RECV) {
    size_t skip;
    long r = sock_ready(s, &skip);
    if (r < 0) {
      sock_fail_rd(s, s->rx_kind == 'l' ? "line too long" : "too large", 1);
      return;
    }
    if (r > 0) {
      size_t len = (size_t)r - 1;
      uv_timer_stop(&s->rtimer);
      s->rd_op = SK_NONE;
      lua_pushlstring(L, s->in.p, len);
      sock_consume(s, len + skip);
      sock_call(s, &s->rd_ref, 1);
      return;
    }
    if (s->eof) {
      sock_fail_rd(s, s->err ? sock_errstr(s) : "closed", 1);
      return;
    }
  }
  if (s->in.len >= SOCK_HIGH && s->rd_op != SK_RECV) sock_read_stop(s);
}

static void sock_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf) {
  sock *s = SMTPD_OWNER(sock, u->data);
  smtpd_buf *b = s->tls ? &s->raw : &s->in;
  (void)size;
  if (smtpd_buf_reserve(b, 65536)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(b->p + b->len, 65536);
}

static int sock_plain(void *ctx, const char *p, size_t n) {
  sock *s = ctx;
  return smtpd_buf_append(&s->in, p, n);
}

static int sock_flush(sock *s);

static void sock_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  sock *s = SMTPD_OWNER(sock, st->data);
  (void)buf;
  if (n > 0) {
    s->received += (size_t)n;
    if (s->tls) {
      int r;
      s->raw.len += (size_t)n;
      r = smtpd_tls_input(s->tls, s->raw.p, s->raw.len, sock_plain, s);
      s->raw.len = 0;
      if (r == SMTPD_TLS_ERROR && !s->tls_err[0])
        snprintf(s->tls_err, sizeof s->tls_err, "%s",
                 smtpd_tls_error(s->tls));
      if (r != SMTPD_TLS_OK) {
        s->eof = 1;
        sock_read_stop(s);
      }
      if (sock_flush(s) && !s->err) s->err = UV_EPIPE;
    } else {
      s->in.len += (size_t)n;
    }
  } else if (n < 0) {
    s->eof = 1;
    if (n != UV_EOF) s->err = (int)n;
    sock_read_stop(s);
  } else {
    return;
  }
  sock_progress(s);
}

static void sock_on_write(uv_write_t *req, int status) {
  sock_write *w = (sock_write *)req;
  sock *s = w->s;
  free(w);
  s->writes--;
  if (!s->h.closing) {
    if (status < 0 && !s->err) s->err = status;
    if (s->wr_op == SK_SEND && status < 0) {
      sock_fail_wr(s, uv_strerror(status));
    } else if (s->wr_op == SK_SEND && s->writes == 0) {
      uv_timer_stop(&s->wtimer);
      s->wr_op = SK_NONE;
      lua_pushboolean(s->h.map->L, 1);
      sock_call(s, &s->wr_ref, 1);
    }
  }
  smtpd_handle_done(&s->h);    /* may free s */
}

/* Writes p: what the kernel takes now, the rest queued. 0 or an error. */
static int sock_write_bytes(sock *s, const char *p, size_t n) {
  sock_write *w;
  uv_buf_t b;
  int r, err;
  if (n == 0) return 0;
  b = uv_buf_init((char *)p, (unsigned)n);
  r = s->writes ? UV_EAGAIN : uv_try_write(&s->u.st, &b, 1);
  if (r >= 0) {
    s->sent += (size_t)r;
    if ((size_t)r == n) return 0;
    p += r;
    n -= (size_t)r;
  } else if (r != UV_EAGAIN) {
    return r;
  }
  w = malloc(sizeof *w + n);
  if (w == NULL) return UV_ENOMEM;
  memcpy(w->data, p, n);
  w->s = s;
  b = uv_buf_init(w->data, (unsigned)n);
  err = uv_write(&w->req, &s->u.st, &b, 1, sock_on_write);
  if (err) {
    free(w);
    return err;
  }
  s->sent += n;
  s->writes++;
  s->h.pending++;
  return 0;
}

/* Writes the ciphertext TLS queued. */
static int sock_flush(sock *s) {
  int err = 0;
  if (s->cout.len && !s->h.closing) {
    err = sock_write_bytes(s, s->cout.p, s->cout.len);
    s->cout.len = 0;
  }
  return err;
}

static void sock_on_rtimer(uv_timer_t *t) {
  sock *s = SMTPD_OWNER(sock, t->data);
  if (s->idle) {
    smtpd_handle_close(&s->h);
  } else if (s->rd_op == SK_TLS) {
    sock_fail_rd(s, "timeout", 0);
    smtpd_handle_close(&s->h);
  } else if (s->rd_op == SK_RECV) {
    sock_fail_rd(s, "timeout", 1);
  }
}

static void sock_on_wtimer(uv_timer_t *t) {
  sock *s = SMTPD_OWNER(sock, t->data);
  int op = s->wr_op;
  if (op == SK_NONE) return;
  sock_fail_wr(s, "timeout");
  /* A connect or a write cut short leaves the stream in no known state. */
  smtpd_handle_close(&s->h);
}

static void sock_on_connect(uv_connect_t *req, int status) {
  sock *s = req->data;
  if (s->h.closing) {
    /* closed meanwhile */
  } else if (status < 0) {
    s->err = status;
    s->eof = 1;
    sock_fail_wr(s, uv_strerror(status));
    smtpd_handle_close(&s->h);
  } else {
    s->connected = 1;
    sock_read_start(s);
    uv_timer_stop(&s->wtimer);
    s->wr_op = SK_NONE;
    lua_pushboolean(s->h.map->L, 1);
    sock_call(s, &s->wr_ref, 1);
  }
  smtpd_handle_done(&s->h);    /* may free s */
}

static uint64_t sock_ms(lua_State *L, int idx) {
  lua_Number t = luaL_checknumber(L, idx);
  luaL_argcheck(L, t > 0 && t < 1e7, idx, "timeout out of range");
  return (uint64_t)(t * 1000 + 0.5);
}

static int sock_ref_cb(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TFUNCTION);
  lua_pushvalue(L, idx);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* sock_connect(map, host, port, timeout, cb) -> sock | nil, err, name.
 * host is an IP address or "unix:/path" (port then ignored). */
static int sock_connect(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int unix_path = strncmp(host, "unix:", 5) == 0;
  lua_Integer port = unix_path ? 0 : luaL_checkinteger(L, 3);
  uint64_t ms = sock_ms(L, 4);
  struct sockaddr_storage ss;
  sock *s;
  int err;
  luaL_checktype(L, 5, LUA_TFUNCTION);
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
  if (unix_path) {
    luaL_argcheck(L, host[5] != '\0' && strlen(host + 5) < 100, 2,
                  "a unix socket path of 1 to 99 bytes");
  } else {
    err = smtpd_sockaddr(host, (int)port, &ss);
    if (err) return smtpd_fail(L, err);
  }
  luaL_checkstack(L, 4, NULL);
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->rd_ref = s->wr_ref = LUA_NOREF;
  smtpd_handle_init(&s->h, m, SMTPD_H_SOCK, sock_close, sock_free);
  if (unix_path) uv_pipe_init(&m->loop, &s->u.pipe, 0);
  else uv_tcp_init(&m->loop, &s->u.tcp);
  smtpd_handle_attach(&s->h, (uv_handle_t *)&s->u.st);
  uv_timer_init(&m->loop, &s->rtimer);
  smtpd_handle_attach(&s->h, (uv_handle_t *)&s->rtimer);
  uv_timer_init(&m->loop, &s->wtimer);
  smtpd_handle_attach(&s->h, (uv_handle_t *)&s->wtimer);
  s->creq.data = s;
  if (unix_path) {
    uv_pipe_connect(&s->creq, &s->u.pipe, host + 5, sock_on_connect);
    err = 0;
  } else {
    uv_tcp_nodelay(&s->u.tcp, 1);
    err = uv_tcp_connect(&s->creq, &s->u.tcp, (struct sockaddr *)&ss,
                         sock_on_connect);
  }
  if (err) {
    smtpd_handle_close(&s->h);
    return smtpd_fail(L, err);
  }
  s->h.pending++;
  s->wr_op = SK_CONNECT;
  s->wr_ref = sock_ref_cb(L, 5);
  smtpd_timer_start(&s->wtimer, sock_on_wtimer, ms);
  smtpd_handle_push_box(L, &s->h, SOCK_MT, 0);
  return 1;
}

static sock *sock_check(lua_State *L) {
  return SMTPD_OWNER(sock, smtpd_handle_check(L, 1, SOCK_MT, "socket"));
}

/* send(data, timeout, cb) -> true when it was all written at once;
 * nothing when cb will tell; nil, err when it cannot be sent. */
static int sock_send(lua_State *L) {
  sock *s = sock_check(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  uint64_t ms = sock_ms(L, 3);
  int err;
  if (s->wr_op) return luaL_error(L, "socket: a send or connect is under way");
  if (!s->connected) return luaL_error(L, "socket: not connected");
  if (s->err || s->eof) {
    lua_pushnil(L);
    lua_pushstring(L, sock_errstr(s));
    return 2;
  }
  if (s->tls) {
    if (!smtpd_tls_ready(s->tls))
      return luaL_error(L, "socket: the TLS handshake is not done");
    if (smtpd_tls_write(s->tls, p, n)) {
      lua_pushnil(L);
      lua_pushstring(L, smtpd_tls_error(s->tls));
      return 2;
    }
    err = sock_flush(s);
  } else {
    err = sock_write_bytes(s, p, n);
  }
  if (err == UV_ENOMEM) return luaL_error(L, "out of memory");
  if (err) {
    s->err = err;
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(err));
    return 2;
  }
  if (s->writes == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* Without a callback the caller waits for nothing more. */
  if (lua_isnoneornil(L, 4)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  s->wr_op = SK_SEND;
  s->wr_ref = sock_ref_cb(L, 4);
  smtpd_timer_start(&s->wtimer, sock_on_wtimer, ms);
  return 0;
}

/* receive(kind, n, timeout, cb) -> data when it is buffered; nothing
 * when cb will get it (or nil, err, partial). */
static int sock_receive(lua_State *L) {
  sock *s = sock_check(L);
  const char *kind = luaL_checkstring(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  uint64_t ms = sock_ms(L, 4);
  size_t skip;
  long r;
  luaL_argcheck(L, (kind[0] == 'l' || kind[0] == 'n' || kind[0] == 'a') &&
                kind[1] == '\0', 2, "\"l\", \"n\" or \"a\"");
  luaL_argcheck(L, n >= 0 && (lua_Unsigned)n <= (SIZE_MAX >> 2), 3,
                "size out of range");
  if (s->rd_op) return luaL_error(L, "socket: a receive is under way");
  if (s->idle) return luaL_error(L, "socket: idle in its pool");
  s->rx_kind = kind[0];
  s->rx_n = (size_t)n;
  r = sock_ready(s, &skip);
  if (r > 0) {
    size_t len = (size_t)r - 1;
    lua_pushlstring(L, s->in.p ? s->in.p : "", len);
    sock_consume(s, len + skip);
    return 1;
  }
  if (r < 0 || s->eof) {
    lua_pushnil(L);
    lua_pushstring(L, r < 0 ? (s->rx_kind == 'l' ? "line too long"
                                                 : "too large")
                            : s->err ? sock_errstr(s) : "closed");
    lua_pushlstring(L, s->in.p ? s->in.p : "", s->in.len);
    s->in.len = 0;
    return 3;
  }
  if (lua_isnoneornil(L, 5)) {
    /* Only asked whether it is there: not yet. */
    lua_pushboolean(L, 0);
    sock_read_start(s);
    return 1;
  }
  s->rd_op = SK_RECV;
  s->rd_ref = sock_ref_cb(L, 5);
  smtpd_timer_start(&s->rtimer, sock_on_rtimer, ms);
  sock_read_start(s);
  return 0;
}

/* starttls({verify=, ca=, sni=, cert=, key=}, timeout, cb): cb(true) once
 * the handshake is done, cb(nil, why) (the socket then closes). */
static int sock_starttls(lua_State *L) {
  sock *s = sock_check(L);
  smtpd_tls_client_spec sp;
  uint64_t ms;
  char err[200];
  luaL_checktype(L, 2, LUA_TTABLE);
  ms = sock_ms(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  if (s->tls) return luaL_error(L, "socket: TLS is already on");
  if (s->rd_op || s->wr_op || !s->connected)
    return luaL_error(L, "socket: busy or not connected");
  memset(&sp, 0, sizeof sp);
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
  lua_pop(L, 5);    /* the strings stay in the table */
  snprintf(err, sizeof err, "out of memory");
  s->tls = smtpd_map_tls(s->h.map) ?
           smtpd_tls_client(s->h.map->tls_env, &sp, &s->cout, err,
                            sizeof err) : NULL;
  if (s->tls == NULL || smtpd_tls_start(s->tls) != SMTPD_TLS_OK) {
    lua_pushnil(L);
    lua_pushstring(L, s->tls ? smtpd_tls_error(s->tls) : err);
    return 2;
  }
  /* Plaintext already buffered came before the handshake: kept. */
  if (sock_flush(s)) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  s->rd_op = SK_TLS;
  s->rd_ref = sock_ref_cb(L, 4);
  smtpd_timer_start(&s->rtimer, sock_on_rtimer, ms);
  sock_read_start(s);
  return 0;
}

/* idle(seconds) -> true: the socket waits in a pool; data, the peer's
 * close or the time running out close it. false when it cannot idle
 * (unread input, a call under way, closed). */
static int sock_idle(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SOCK_MT);
  sock *s = h ? SMTPD_OWNER(sock, h) : NULL;
  uint64_t ms = sock_ms(L, 2);
  if (s == NULL || s->rd_op || s->wr_op || s->in.len || s->eof || s->err ||
      !s->connected) {
    lua_pushboolean(L, 0);
    return 1;
  }
  s->idle = 1;
  smtpd_timer_start(&s->rtimer, sock_on_rtimer, ms);
  sock_read_start(s);
  uv_unref((uv_handle_t *)&s->u.st);
  uv_unref((uv_handle_t *)&s->rtimer);
  lua_pushboolean(L, 1);
  return 1;
}

/* wake() -> true when an idle socket is still good (and now in use). */
static int sock_wake(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SOCK_MT);
  sock *s = h ? SMTPD_OWNER(sock, h) : NULL;
  if (s == NULL || !s->idle || s->eof || s->err || s->in.len) {
    if (s) smtpd_handle_close(&s->h);
    lua_pushboolean(L, 0);
    return 1;
  }
  s->idle = 0;
  uv_timer_stop(&s->rtimer);
  uv_ref((uv_handle_t *)&s->u.st);
  uv_ref((uv_handle_t *)&s->rtimer);
  lua_pushboolean(L, 1);
  return 1;
}

/* cancel(): what waits is dropped without its callback; the socket closes
 * (a call cut short leaves the protocol in no known state). */
static int sock_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SOCK_MT);
  sock *s = h ? SMTPD_OWNER(sock, h) : NULL;
  if (s == NULL) return 0;
  smtpd_hook_unref(L, &s->rd_ref);
  smtpd_hook_unref(L, &s->wr_ref);
  s->rd_op = s->wr_op = SK_NONE;
  smtpd_handle_close(h);
  return 0;
}

static int sock_close_(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SOCK_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

/* info() -> {buffered=, received=, sent=, connected=, tls = {...} | nil,
 *            peer = {host, port}, sock = {host, port}} | nil when closed */
static int sock_info(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, SOCK_MT);
  sock *s = h ? SMTPD_OWNER(sock, h) : NULL;
  struct sockaddr_storage ss;
  int len;
  if (s == NULL) return 0;
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)s->in.len);
  lua_setfield(L, -2, "buffered");
  lua_pushinteger(L, (lua_Integer)s->received);
  lua_setfield(L, -2, "received");
  lua_pushinteger(L, (lua_Integer)s->sent);
  lua_setfield(L, -2, "sent");
  lua_pushboolean(L, s->connected && !s->eof && !s->err);
  lua_setfield(L, -2, "connected");
  if (s->u.st.type == UV_TCP && s->connected) {
    len = sizeof ss;
    if (uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0) {
      smtpd_push_addr(L, (struct sockaddr *)&ss);
      lua_setfield(L, -2, "peer");
    }
    len = sizeof ss;
    if (uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0) {
      smtpd_push_addr(L, (struct sockaddr *)&ss);
      lua_setfield(L, -2, "sock");
    }
  }
  if (s->tls && smtpd_tls_ready(s->tls)) {
    smtpd_tls_info in;
    smtpd_tls_get_info(s->tls, &in);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, in.version);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, in.cipher ? in.cipher : "");
    lua_setfield(L, -2, "cipher");
    lua_pushstring(L, in.subject);
    lua_setfield(L, -2, "peer_subject");
    lua_pushboolean(L, in.verified);
    lua_setfield(L, -2, "verified");
    lua_setfield(L, -2, "tls");
  }
  return 1;
}

void smtpd_open_sock(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"send", sock_send}, {"receive", sock_receive},
    {"starttls", sock_starttls}, {"idle", sock_idle}, {"wake", sock_wake},
    {"cancel", sock_cancel}, {"close", sock_close_}, {"info", sock_info},
    {NULL, NULL}
  };
  smtpd_new_class(L, SOCK_MT, NULL, methods);
  lua_pushcfunction(L, sock_connect);
  lua_setfield(L, -2, "sock_connect");
}
