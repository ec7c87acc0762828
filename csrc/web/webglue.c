/*
 * The catcher's HTTP/1.1 server on a map's loop (no threads): connections
 * read by csrc/web/httpd.c, each request handed to Lua once it is whole
 * (head and body), answered whole or streamed (Server-Sent Events), kept
 * alive between requests, answered one at a time in their order.
 *
 *   local srv = core.web_listen(map, host, port, opts, function(req, x)
 *     x:respond(200, {["Content-Type"] = "text/plain"}, "hello")
 *   end)
 *   srv:address() -> host, port;  srv:stats() -> {connections =, requests =}
 *   srv:close()
 *
 * req = {method =, target =, path =, query =, version = "1.1", headers =
 * {lower-case name = value (repeated fields joined by ", ")}, body =,
 * peer = ip, port =}. The exchange x answers it, now or later (a long
 * poll): x:respond(status, headers, body), or x:stream(status, headers)
 * then x:write(data) ... x:finish(); x:on_close(fn) runs fn when the
 * client goes while the exchange is open; x:open() says whether it is.
 * An answered exchange is spent: its calls then return nil, "answered".
 *
 * Limits (opts, with their defaults): max_connections 256 (past it a
 * connection gets 503 and is closed), max_body 1 MiB (413), timeout 10 s
 * for a whole request from its first byte (408: a slow sender costs at
 * most one head of HTTPD_HEAD_MAX bytes per connection for that long),
 * idle 60 s between requests, max_pending 8 MiB of a stream the client
 * has not read (past it the connection is closed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/glue.h"
#include "web/httpd.h"

#define WEB_SERVER_MT "smtpd.web_server"
#define WEB_X_MT "smtpd.web_exchange"
#define WEB_CONN_MT "smtpd.web_conn"

enum { W_READ, W_BUSY, W_STREAM, W_CLOSING };

typedef struct web_conn web_conn;

typedef struct web_server {
  smtpd_handle h;
  uv_tcp_t tcp;
  int req_ref;                 /* on_request(req, x) */
  size_t max_conns, conns, max_body, max_pending;
  uint64_t timeout_ms, idle_ms;
  unsigned long requests;
  web_conn *list;              /* the open connections */
} web_server;

struct web_conn {
  smtpd_handle h;
  uv_tcp_t tcp;
  uv_timer_t timer;            /* request/idle deadline, or the next request */
  web_server *srv;             /* NULL once the server closed */
  web_conn *next, *prev;
  smtpd_buf in;
  size_t pending;              /* bytes handed to uv_write, not written yet */
  size_t writes;
  unsigned gen;                /* the exchange being answered */
  int state, keep_alive, head, reading, timing_request, next_soon;
  int close_ref;               /* the exchange's on_close, or LUA_NOREF */
  struct sockaddr_storage peer;
};

typedef struct web_x {
  unsigned gen;                /* the conn box is the user value */
} web_x;

typedef struct web_write_req {
  uv_write_t req;
  web_conn *c;
  size_t n;
  char data[1];
} web_write_req;

static void conn_try(web_conn *c);
static void conn_on_timer(uv_timer_t *t);

/* ---- connections ---------------------------------------------------------------- */

static void conn_free(smtpd_handle *h) {
  web_conn *c = SMTPD_OWNER(web_conn, h);
  smtpd_buf_free(&c->in);
  free(c);
}

static void conn_unlink(web_conn *c) {
  if (c->srv) {
    if (c->prev) c->prev->next = c->next;
    else c->srv->list = c->next;
    if (c->next) c->next->prev = c->prev;
    c->srv->conns--;
    c->srv = NULL;
  }
  c->next = c->prev = NULL;
}

static void conn_close(smtpd_handle *h) {
  web_conn *c = SMTPD_OWNER(web_conn, h);
  lua_State *L = h->map->L;
  int ref = c->close_ref;
  conn_unlink(c);
  c->close_ref = LUA_NOREF;
  c->state = W_CLOSING;
  if (ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (!h->map->dying) {
      smtpd_lua_calls++;
      if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        smtpd_log(h->map, "web: error in an on_close callback: %s",
                  lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else {
      lua_pop(L, 1);
    }
  }
  smtpd_handle_uv_close(h, (uv_handle_t *)&c->timer);
  smtpd_handle_uv_close(h, (uv_handle_t *)&c->tcp);
}

static void conn_on_write(uv_write_t *req, int status) {
  web_write_req *w = (web_write_req *)req;
  web_conn *c = w->c;
  c->pending -= w->n;
  c->writes--;
  free(w);
  if (!c->h.closing) {
    if (status < 0) smtpd_handle_close(&c->h);
    else if (c->state == W_CLOSING && c->writes == 0) smtpd_handle_close(&c->h);
  }
  smtpd_handle_done(&c->h);
}

/* Writes p: what the kernel takes now, the rest queued. 0, or -1 when the
 * connection cannot take it (then closed). */
static int conn_write(web_conn *c, const char *p, size_t n) {
  web_write_req *w;
  uv_buf_t b;
  int r;
  if (c->h.closing) return -1;
  if (n == 0) return 0;
  b = uv_buf_init((char *)p, (unsigned)n);
  r = c->writes ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r >= 0) {
    if ((size_t)r == n) return 0;
    p += r;
    n -= (size_t)r;
  } else if (r != UV_EAGAIN) {
    smtpd_handle_close(&c->h);
    return -1;
  }
  if (c->srv && c->pending + n > c->srv->max_pending) {
    smtpd_handle_close(&c->h);            /* a client that does not read */
    return -1;
  }
  w = malloc(sizeof *w + n);
  if (w == NULL) {
    smtpd_handle_close(&c->h);
    return -1;
  }
  memcpy(w->data, p, n);
  w->c = c;
  w->n = n;
  b = uv_buf_init(w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write)) {
    free(w);
    smtpd_handle_close(&c->h);
    return -1;
  }
  c->pending += n;
  c->writes++;
  c->h.pending++;
  return 0;
}

/* After the last byte of an answer: close, or wait for the next request. */
static void conn_after_answer(web_conn *c) {
  if (c->h.closing) return;
  smtpd_hook_unref(c->h.map->L, &c->close_ref);   /* the exchange is spent */
  if (!c->keep_alive || !c->srv) {
    c->state = W_CLOSING;
    if (c->writes == 0) smtpd_handle_close(&c->h);
    return;
  }
  c->state = W_READ;
  c->next_soon = 1;              /* a pipelined request: from the loop */
  uv_timer_start(&c->timer, conn_on_timer, 0, 0);
}

/* An answer of our own (an error): always the last on the connection. */
static void conn_error(web_conn *c, int status) {
  char buf[256];
  int n = snprintf(buf, sizeof buf,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%d %s\n",
                   status, httpd_reason(status),
                   strlen(httpd_reason(status)) + 5, status, httpd_reason(status));
  c->keep_alive = 0;
  c->state = W_BUSY;
  if (conn_write(c, buf, (size_t)n) == 0) conn_after_answer(c);
}

static void conn_on_timer(uv_timer_t *t) {
  web_conn *c = SMTPD_OWNER(web_conn, t->data);
  if (c->next_soon) {
    c->next_soon = 0;
    conn_try(c);
    return;
  }
  if (c->state != W_READ) return;
  if (c->timing_request) conn_error(c, 408);
  else smtpd_handle_close(&c->h);           /* idle: closed quietly */
}

static void conn_arm(web_conn *c) {
  web_server *s = c->srv;
  if (s == NULL || c->state != W_READ) return;
  if (c->in.len) {
    if (!c->timing_request) {
      c->timing_request = 1;
      uv_timer_start(&c->timer, conn_on_timer, s->timeout_ms, 0);
    }
  } else {
    c->timing_request = 0;
    uv_timer_start(&c->timer, conn_on_timer, s->idle_ms, 0);
  }
}

static void conn_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf) {
  web_conn *c = SMTPD_OWNER(web_conn, u->data);
  (void)size;
  if (smtpd_buf_reserve(&c->in, 16384)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->in.p + c->in.len, 16384);
}

static void conn_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  web_conn *c = SMTPD_OWNER(web_conn, st->data);
  (void)buf;
  if (n < 0) {
    smtpd_handle_close(&c->h);     /* the client went: its exchange too */
    return;
  }
  if (n == 0) return;
  c->in.len += (size_t)n;
  /* While an answer is under way, a client may send a little ahead
   * (pipelining); past a head's worth, reading waits. */
  if (c->state != W_READ && c->in.len > HTTPD_HEAD_MAX && c->reading) {
    uv_read_stop(st);
    c->reading = 0;
  }
  conn_try(c);
}

static void push_request(lua_State *L, web_conn *c, const httpd_request *r,
                         const char *body) {
  int i;
  char host[64];
  lua_createtable(L, 0, 10);
  lua_pushlstring(L, r->method.p, r->method.n);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, r->target.p, r->target.n);
  lua_setfield(L, -2, "target");
  lua_pushlstring(L, r->path.p, r->path.n);
  lua_setfield(L, -2, "path");
  lua_pushlstring(L, r->query.n ? r->query.p : "", r->query.n);
  lua_setfield(L, -2, "query");
  lua_pushstring(L, r->minor ? "1.1" : "1.0");
  lua_setfield(L, -2, "version");
  lua_createtable(L, 0, r->nfields);
  for (i = 0; i < r->nfields; i++) {
    const httpd_field *f = &r->fields[i];
    char name[256];
    size_t k, nn = f->name.n < sizeof name ? f->name.n : sizeof name - 1;
    for (k = 0; k < nn; k++)
      name[k] = (char)((f->name.p[k] >= 'A' && f->name.p[k] <= 'Z')
                       ? f->name.p[k] + 32 : f->name.p[k]);
    lua_pushlstring(L, name, nn);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, f->value.p, f->value.n);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, f->value.p, f->value.n);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, body, r->content_length);
  lua_setfield(L, -2, "body");
  if (c->peer.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&c->peer, host, sizeof host);
  else
    uv_ip4_name((struct sockaddr_in *)&c->peer, host, sizeof host);
  lua_pushstring(L, host);
  lua_setfield(L, -2, "peer");
  if (c->peer.ss_family == AF_INET)
    lua_pushinteger(L, ntohs(((struct sockaddr_in *)&c->peer)->sin_port));
  else
    lua_pushinteger(L, ntohs(((struct sockaddr_in6 *)&c->peer)->sin6_port));
  lua_setfield(L, -2, "port");
}

/* The next request, if it is whole. */
static void conn_try(web_conn *c) {
  web_server *s = c->srv;
  lua_State *L = c->h.map->L;
  static httpd_request req;        /* read and pushed before any Lua runs */
  httpd_request *r = &req;
  int rc;
  web_x *x;
  if (c->h.closing || s == NULL || c->state != W_READ || c->h.map->dying) return;
  if (!c->reading) {
    uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read);
    c->reading = 1;
  }
  rc = httpd_parse(c->in.p ? c->in.p : "", c->in.len, s->max_body, r);
  if (rc < 0) {
    conn_error(c, -rc);
    return;
  }
  if (rc == 0 || c->in.len - r->head_len < r->content_length) {
    conn_arm(c);
    return;
  }
  /* whole: to Lua */
  uv_timer_stop(&c->timer);
  c->timing_request = 0;
  c->state = W_BUSY;
  c->gen++;
  c->keep_alive = r->keep_alive;
  c->head = r->method.n == 4 && memcmp(r->method.p, "HEAD", 4) == 0;
  s->requests++;
  luaL_checkstack(L, 8, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->req_ref);
  push_request(L, c, r, c->in.p + r->head_len);
  smtpd_buf_consume(&c->in, r->head_len + r->content_length);
  x = lua_newuserdatauv(L, sizeof *x, 1);
  x->gen = c->gen;
  smtpd_handle_push_box(L, &c->h, WEB_CONN_MT, 0);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, WEB_X_MT);
  smtpd_lua_calls++;
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    smtpd_log(c->h.map, "web: error in the request handler: %s",
              lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!c->h.closing && c->state == W_BUSY) conn_error(c, 500);
    else if (!c->h.closing && c->state == W_STREAM) smtpd_handle_close(&c->h);
  }
}

/* ---- the exchange --------------------------------------------------------------- */

/* The exchange's connection while it is x's to answer (state), or NULL
 * with nil, why pushed. */
static web_conn *x_conn(lua_State *L, int state) {
  web_x *x = luaL_checkudata(L, 1, WEB_X_MT);
  smtpd_handle *h;
  web_conn *c;
  lua_getiuservalue(L, 1, 1);
  h = smtpd_handle_get(L, -1, WEB_CONN_MT);
  lua_pop(L, 1);
  c = h ? SMTPD_OWNER(web_conn, h) : NULL;
  if (c == NULL || c->h.closing) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return NULL;
  }
  if (c->gen != x->gen || c->state != state) {
    lua_pushnil(L);
    lua_pushstring(L, c->gen != x->gen || c->state == W_READ ? "answered"
                      : state == W_BUSY ? "streaming" : "not streaming");
    return NULL;
  }
  return c;
}

static int bad_field_byte(const char *p, size_t n, int name) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch == '\r' || ch == '\n' || ch == 0) return 1;
    if (name && (ch <= ' ' || ch == ':' || ch >= 0x7f)) return 1;
  }
  return 0;
}

/* The fields of the table at idx, checked (a Lua error for a bad one);
 * the bytes they take as "Name: value\r\n" lines. */
static size_t head_check(lua_State *L, int idx) {
  size_t total = 0;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kn, vn;
    const char *k, *v;
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "web: headers are name = value strings");
    k = lua_tolstring(L, -2, &kn);
    v = lua_tolstring(L, -1, &vn);
    if (kn == 0 || bad_field_byte(k, kn, 1) || bad_field_byte(v, vn, 0))
      luaL_error(L, "web: a header with a CR, LF, NUL or a bad name: %s", k);
    if (smtpd_ieq(k, kn, "content-length") || smtpd_ieq(k, kn, "connection") ||
        smtpd_ieq(k, kn, "transfer-encoding"))
      luaL_error(L, "web: %s is the server's to write", k);
    total += kn + vn + 4;
    lua_pop(L, 1);
  }
  return total;
}

/* The status line, then the fields (checked already) into b. */
static void head_write(lua_State *L, int idx, int status, smtpd_buf *b) {
  char line[64];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status,
                   httpd_reason(status));
  memcpy(b->p + b->len, line, (size_t)n);
  b->len += (size_t)n;
  if (lua_isnoneornil(L, idx)) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kn, vn;
    const char *k = lua_tolstring(L, -2, &kn), *v = lua_tolstring(L, -1, &vn);
    memcpy(b->p + b->len, k, kn);
    memcpy(b->p + b->len + kn, ": ", 2);
    memcpy(b->p + b->len + kn + 2, v, vn);
    memcpy(b->p + b->len + kn + 2 + vn, "\r\n", 2);
    b->len += kn + vn + 4;
    lua_pop(L, 1);
  }
}

/* Status line, fields, tail and body, written as one. 0, or -1 (closed,
 * or no memory). */
static int answer(lua_State *L, web_conn *c, int status, size_t fields,
                  const char *tail, const char *body, size_t bn) {
  smtpd_buf b = {0};
  size_t tn = strlen(tail);
  int r;
  if (smtpd_buf_reserve(&b, 64 + fields + tn + bn)) return -1;
  head_write(L, 3, status, &b);
  memcpy(b.p + b.len, tail, tn);
  b.len += tn;
  if (bn) memcpy(b.p + b.len, body, bn);
  b.len += bn;
  r = conn_write(c, b.p, b.len);
  smtpd_buf_free(&b);
  return r;
}

static int check_status(lua_State *L) {
  lua_Integer st = luaL_checkinteger(L, 2);
  luaL_argcheck(L, st >= 100 && st <= 599, 2, "a status of 100 to 599");
  return (int)st;
}

/* x:respond(status, headers, body) -> true | nil, why */
static int x_respond(lua_State *L) {
  int status = check_status(L);
  size_t bn = 0, fields;
  const char *body = lua_isnoneornil(L, 4) ? "" : luaL_checklstring(L, 4, &bn);
  web_conn *c;
  char tail[96];
  int nobody = status == 204 || status == 304 || status < 200;
  lua_settop(L, 4);
  fields = head_check(L, 3);
  c = x_conn(L, W_BUSY);
  if (c == NULL) return 2;
  if (nobody)
    snprintf(tail, sizeof tail, "Connection: %s\r\n\r\n",
             c->keep_alive ? "keep-alive" : "close");
  else
    snprintf(tail, sizeof tail, "Content-Length: %zu\r\nConnection: %s\r\n\r\n",
             bn, c->keep_alive ? "keep-alive" : "close");
  if (answer(L, c, status, fields, tail, body, nobody || c->head ? 0 : bn)) {
    if (!c->h.closing) smtpd_handle_close(&c->h);
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  conn_after_answer(c);           /* the exchange is spent */
  lua_pushboolean(L, 1);
  return 1;
}

/* x:stream(status, headers) -> true | nil, why: the head now, the body
 * in x:write()s, the end with x:finish() (or the connection's close). */
static int x_stream(lua_State *L) {
  int status = check_status(L);
  size_t fields;
  web_conn *c;
  lua_settop(L, 3);
  fields = head_check(L, 3);
  c = x_conn(L, W_BUSY);
  if (c == NULL) return 2;
  c->keep_alive = 0;
  if (answer(L, c, status, fields, "Connection: close\r\n\r\n", "", 0)) {
    if (!c->h.closing) smtpd_handle_close(&c->h);
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  c->state = W_STREAM;
  lua_pushboolean(L, 1);
  return 1;
}

/* x:write(data) -> true | nil, why ("closed" when the client went or read
 * too slowly) */
static int x_write(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  web_conn *c = x_conn(L, W_STREAM);
  if (c == NULL) return 2;
  if (c->head) n = 0;
  if (conn_write(c, p, n)) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int x_finish(lua_State *L) {
  web_conn *c = x_conn(L, W_STREAM);
  if (c == NULL) return 2;
  conn_after_answer(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* x:on_close(fn): fn() when the connection closes while x is open. */
static int x_on_close(lua_State *L) {
  web_conn *c;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  c = x_conn(L, W_BUSY);
  if (c == NULL) {
    lua_settop(L, 2);
    c = x_conn(L, W_STREAM);
    if (c == NULL) return 2;
  }
  smtpd_hook_unref(L, &c->close_ref);
  lua_pushvalue(L, 2);
  c->close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 1);
  return 1;
}

static int x_open(lua_State *L) {
  web_x *x = luaL_checkudata(L, 1, WEB_X_MT);
  smtpd_handle *h;
  web_conn *c;
  lua_getiuservalue(L, 1, 1);
  h = smtpd_handle_get(L, -1, WEB_CONN_MT);
  c = h ? SMTPD_OWNER(web_conn, h) : NULL;
  lua_pushboolean(L, c && !c->h.closing && c->gen == x->gen &&
                     (c->state == W_BUSY || c->state == W_STREAM));
  return 1;
}

/* x:close(): the connection, at once. */
static int x_close(lua_State *L) {
  web_x *x = luaL_checkudata(L, 1, WEB_X_MT);
  smtpd_handle *h;
  lua_getiuservalue(L, 1, 1);
  h = smtpd_handle_get(L, -1, WEB_CONN_MT);
  if (h && SMTPD_OWNER(web_conn, h)->gen == x->gen) smtpd_handle_close(h);
  return 0;
}

/* ---- the server ----------------------------------------------------------------- */

static void server_free(smtpd_handle *h) {
  free(SMTPD_OWNER(web_server, h));
}

static void server_close(smtpd_handle *h) {
  web_server *s = SMTPD_OWNER(web_server, h);
  while (s->list) {
    web_conn *c = s->list;
    conn_unlink(c);
    smtpd_handle_close(&c->h);
  }
  smtpd_hook_unref(h->map->L, &s->req_ref);
  smtpd_handle_uv_close(h, (uv_handle_t *)&s->tcp);
}

static void on_refused_close(uv_handle_t *u) {
  free(u);
}

static void server_on_connection(uv_stream_t *st, int status) {
  web_server *s = SMTPD_OWNER(web_server, st->data);
  smtpd_map *m = s->h.map;
  web_conn *c;
  int len = sizeof c->peer;
  if (status < 0 || s->h.closing) return;
  c = calloc(1, sizeof *c);
  if (c == NULL || s->conns >= s->max_conns) {
    /* no room: taken and closed, so the backlog does not fill */
    uv_tcp_t *t = malloc(sizeof *t);
    free(c);
    if (t == NULL || uv_tcp_init(&m->loop, t)) {
      free(t);
      return;
    }
    if (uv_accept(st, (uv_stream_t *)t) == 0 && s->conns >= s->max_conns) {
      static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n";
      uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
      uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, on_refused_close);
    return;
  }
  c->close_ref = LUA_NOREF;
  smtpd_handle_init(&c->h, m, SMTPD_H_WEB, conn_close, conn_free);
  uv_tcp_init(&m->loop, &c->tcp);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->tcp);
  uv_timer_init(&m->loop, &c->timer);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->timer);
  if (uv_accept(st, (uv_stream_t *)&c->tcp)) {
    smtpd_handle_close(&c->h);
    return;
  }
  uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
  uv_tcp_nodelay(&c->tcp, 1);
  c->srv = s;
  c->next = s->list;
  if (s->list) s->list->prev = c;
  s->list = c;
  s->conns++;
  c->state = W_READ;
  conn_try(c);
}

static lua_Integer opt_int(lua_State *L, int idx, const char *k, lua_Integer def,
                           lua_Integer lo, lua_Integer hi) {
  lua_Integer v;
  int isnum;
  if (lua_getfield(L, idx, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isnum);
  if (!isnum || v < lo || v > hi)
    luaL_error(L, "web: %s must be an integer from %I to %I", k, lo, hi);
  lua_pop(L, 1);
  return v;
}

static double opt_secs(lua_State *L, int idx, const char *k, double def) {
  double v = 0;
  if (lua_getfield(L, idx, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (!lua_isnumber(L, -1) || (v = lua_tonumber(L, -1)) <= 0 || v > 86400)
    luaL_error(L, "web: %s must be seconds above 0 (at most a day)", k);
  lua_pop(L, 1);
  return v;
}

/* web_listen(map, host, port, opts, on_request) -> server | nil, err */
static int web_listen(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  struct sockaddr_storage ss;
  web_server *s;
  int err;
  size_t max_conns, max_body, max_pending;
  double timeout, idle;
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
  if (lua_isnoneornil(L, 4)) {
    lua_newtable(L);
    lua_replace(L, 4);
  }
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  max_conns = (size_t)opt_int(L, 4, "max_connections", 256, 1, 100000);
  max_body = (size_t)opt_int(L, 4, "max_body", 1 << 20, 0, (lua_Integer)1 << 30);
  max_pending = (size_t)opt_int(L, 4, "max_pending", 8 << 20, 4096,
                                (lua_Integer)1 << 30);
  timeout = opt_secs(L, 4, "timeout", 10);
  idle = opt_secs(L, 4, "idle", 60);
  err = smtpd_sockaddr(host, (int)port, &ss);
  if (err) return smtpd_fail(L, err);
  s = calloc(1, sizeof *s);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->req_ref = LUA_NOREF;
  smtpd_handle_init(&s->h, m, SMTPD_H_WEB, server_close, server_free);
  uv_tcp_init(&m->loop, &s->tcp);
  smtpd_handle_attach(&s->h, (uv_handle_t *)&s->tcp);
  err = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss,
                    ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
  if (!err) err = uv_listen((uv_stream_t *)&s->tcp, 128, server_on_connection);
  if (err) {
    smtpd_handle_close(&s->h);
    return smtpd_fail(L, err);
  }
  s->max_conns = max_conns;
  s->max_body = max_body;
  s->max_pending = max_pending;
  s->timeout_ms = (uint64_t)(timeout * 1000);
  s->idle_ms = (uint64_t)(idle * 1000);
  lua_pushvalue(L, 5);
  s->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  smtpd_handle_push_box(L, &s->h, WEB_SERVER_MT, 0);
  return 1;
}

static web_server *server_get(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, WEB_SERVER_MT);
  return h ? SMTPD_OWNER(web_server, h) : NULL;
}

/* address() -> host, port | nil when closed */
static int server_address(lua_State *L) {
  web_server *s = server_get(L);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char host[64];
  if (s == NULL || uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len))
    return 0;
  if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
  else
    uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
  lua_pushstring(L, host);
  lua_pushinteger(L, ntohs(ss.ss_family == AF_INET
                           ? ((struct sockaddr_in *)&ss)->sin_port
                           : ((struct sockaddr_in6 *)&ss)->sin6_port));
  return 2;
}

static int server_stats(lua_State *L) {
  web_server *s = server_get(L);
  if (s == NULL) return 0;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)s->conns);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, (lua_Integer)s->requests);
  lua_setfield(L, -2, "requests");
  return 1;
}

static int server_close_(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, WEB_SERVER_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

/* web_unescape(s [, plus]) -> the %XX-decoded string | nil */
static int web_unescape(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  httpd_slice s;
  char *out = lua_newuserdatauv(L, n + 1, 0);
  long r;
  s.p = p;
  s.n = n;
  r = httpd_unescape(s, out, lua_toboolean(L, 2));
  if (r < 0) return 0;
  lua_pushlstring(L, out, (size_t)r);
  return 1;
}

/* web_ifind(haystack, needle) -> whether needle (ASCII, any case) is in
 * haystack: the catcher's free-text search, without a lower-cased copy. */
static int web_ifind(lua_State *L) {
  size_t hn, nn, i;
  const char *h = luaL_checklstring(L, 1, &hn);
  const char *n = luaL_checklstring(L, 2, &nn);
  int found = nn == 0;
  if (!found && nn <= hn) {
    int c0 = n[0] >= 'A' && n[0] <= 'Z' ? n[0] + 32 : (unsigned char)n[0];
    for (i = 0; i + nn <= hn && !found; i++) {
      int c = h[i] >= 'A' && h[i] <= 'Z' ? h[i] + 32 : (unsigned char)h[i];
      if (c == c0 && strncasecmp(h + i, n, nn) == 0) found = 1;
    }
  }
  lua_pushboolean(L, found);
  return 1;
}

/* The length of the UTF-8 character at p[0..n) (1-4), or 0 when the
 * bytes there are not one (overlong, surrogate, past U+10FFFF, cut). */
static size_t utf8_char(const unsigned char *p, size_t n) {
  size_t len, i;
  unsigned cp;
  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xc2 && p[0] <= 0xdf) { len = 2; cp = p[0] & 0x1f; }
  else if (p[0] >= 0xe0 && p[0] <= 0xef) { len = 3; cp = p[0] & 0x0f; }
  else if (p[0] >= 0xf0 && p[0] <= 0xf4) { len = 4; cp = p[0] & 0x07; }
  else return 0;
  if (n < len) return 0;
  for (i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

/* web_json_string(s) -> s as a JSON string, quoted: control characters,
 * '"' and '\' escaped, U+2028 and U+2029 too (the text may end up in a
 * script), each byte that is not part of a UTF-8 character as U+FFFD. */
static int web_json_string(lua_State *L) {
  size_t n, i = 0;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  while (i < n) {
    size_t run = i, len;
    while (run < n && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '"' && p[run] != '\\')
      run++;
    if (run > i) luaL_addlstring(&b, (const char *)p + i, run - i);
    i = run;
    if (i >= n) break;
    if (p[i] < 0x80) {
      char esc[8];
      switch (p[i]) {
      case '"': luaL_addstring(&b, "\\\""); break;
      case '\\': luaL_addstring(&b, "\\\\"); break;
      case '\n': luaL_addstring(&b, "\\n"); break;
      case '\r': luaL_addstring(&b, "\\r"); break;
      case '\t': luaL_addstring(&b, "\\t"); break;
      default:
        snprintf(esc, sizeof esc, "\\u%04x", p[i]);
        luaL_addstring(&b, esc);
      }
      i++;
      continue;
    }
    len = utf8_char(p + i, n - i);
    if (len == 0) {
      luaL_addstring(&b, "\xef\xbf\xbd");
      i++;
    } else if (len == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 && (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
      luaL_addstring(&b, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
      i += 3;
    } else {
      luaL_addlstring(&b, (const char *)p + i, len);
      i += len;
    }
  }
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
  return 1;
}

/* web_now() -> the wall clock in seconds, with milliseconds */
static int web_now(lua_State *L) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv)) return 0;
  lua_pushnumber(L, (double)tv.tv_sec + (double)(tv.tv_usec / 1000) / 1000.0);
  return 1;
}

void smtpd_open_web(lua_State *L) {
  static const luaL_Reg server_methods[] = {
    {"address", server_address}, {"stats", server_stats},
    {"close", server_close_}, {NULL, NULL}
  };
  static const luaL_Reg x_methods[] = {
    {"respond", x_respond}, {"stream", x_stream}, {"write", x_write},
    {"finish", x_finish}, {"on_close", x_on_close}, {"open", x_open},
    {"close", x_close}, {NULL, NULL}
  };
  smtpd_new_class(L, WEB_SERVER_MT, NULL, server_methods);
  smtpd_new_class(L, WEB_X_MT, NULL, x_methods);
  smtpd_new_class(L, WEB_CONN_MT, NULL, NULL);
  lua_pushcfunction(L, web_listen);
  lua_setfield(L, -2, "web_listen");
  lua_pushcfunction(L, web_unescape);
  lua_setfield(L, -2, "web_unescape");
  lua_pushcfunction(L, web_ifind);
  lua_setfield(L, -2, "web_ifind");
  lua_pushcfunction(L, web_now);
  lua_setfield(L, -2, "web_now");
  lua_pushcfunction(L, web_json_string);
  lua_setfield(L, -2, "web_json_string");
}
