/*
 * HTTP(S) on a map's loop: libcurl's multi-socket interface, the way its
 * multi-uv example drives it (one poll per socket curl names, keyed by
 * the socket; one timer from curl's timer callback), with the pitfalls
 * avoided: curl is never called from its own callbacks, poll errors reach
 * curl as CURL_CSELECT_ERR, bodies are buffered here up to a bound, the
 * request body is anchored until the transfer ends, and names never reach
 * curl's resolver thread (lua/smtpd/http.lua resolves with smtpd.dns and
 * hands the addresses over with CURLOPT_RESOLVE; no proxy, no redirect).
 *
 *   core.http_request(map, {url=, method=, headers={"K: v"}, body=,
 *       timeout=ms, connect_timeout=ms, max_body=, verify=, ca=,
 *       resolve={"host:port:addr,..."}}, cb) -> handle (:cancel())
 *   cb(status, header_lines, body) | cb(nil, err, {curl_code=})
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"

#define REQ_MT "smtpd.httpreq"
/* The response's header block, bounded (a server sending headers
 * forever). */
#define HTTP_MAX_HEADERS (256 * 1024)

/* Finished easy handles kept for the next transfers (curl_easy_reset):
 * a new one costs more than a whole request to a local server. */
#define HTTP_SPARE 16

typedef struct http_req http_req;

typedef struct http_multi {
  smtpd_handle h;
  uv_timer_t timer;
  CURLM *multi;
  http_req *reqs;          /* transfers in it */
  CURL *spare[HTTP_SPARE]; /* finished easy handles, reset for the next */
  int nspare;
  struct http_multi *next;
} http_multi;

typedef struct http_poll {
  uv_poll_t poll;          /* first: the poll's address is this one's */
  curl_socket_t fd;
  http_multi *m;
} http_poll;

struct http_req {
  smtpd_handle h;
  http_multi *m;
  http_req *prev, *next;
  CURL *easy;
  int cb_ref, body_ref;
  struct curl_slist *headers, *resolve;
  smtpd_buf hdr, body;
  size_t max_body;
  int too_large, hdr_too_large;
  char err[CURL_ERROR_SIZE];
};

static http_multi *multis;

static http_multi *http_multi_of(smtpd_map *map) {
  http_multi *m;
  for (m = multis; m; m = m->next)
    if (m->h.map == map && !m->h.closing) return m;
  return NULL;
}

static void http_check_done(http_multi *m);

static void http_poll_closed(uv_handle_t *u) {
  http_poll *p = (http_poll *)(void *)u;
  http_multi *m = p->m;
  free(p);
  smtpd_handle_done(&m->h);     /* may free m */
}

static void http_on_poll(uv_poll_t *u, int status, int events) {
  http_poll *p = (http_poll *)(void *)u;
  http_multi *m = p->m;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(m->multi, p->fd, flags, &running);
  http_check_done(m);
}

/* CURLMOPT_SOCKETFUNCTION: no curl call here but curl_multi_assign. */
static int http_on_socket(CURL *e, curl_socket_t s, int what, void *userp,
                          void *socketp) {
  http_multi *m = userp;
  http_poll *p = socketp;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    if (p) {
      uv_poll_stop(&p->poll);
      uv_close((uv_handle_t *)&p->poll, http_poll_closed);
      curl_multi_assign(m->multi, s, NULL);
    }
    return 0;
  }
  if (p == NULL) {
    p = calloc(1, sizeof *p);
    if (p == NULL) return -1;
    if (uv_poll_init_socket(&m->h.map->loop, &p->poll, s)) {
      free(p);
      return -1;
    }
    p->fd = s;
    p->m = m;
    p->poll.data = &m->h;
    m->h.pending++;             /* released by http_poll_closed */
    curl_multi_assign(m->multi, s, p);
  }
  uv_poll_start(&p->poll,
                (what & CURL_POLL_IN ? UV_READABLE : 0) |
                (what & CURL_POLL_OUT ? UV_WRITABLE : 0), http_on_poll);
  return 0;
}

static void http_on_timer(uv_timer_t *t) {
  http_multi *m = SMTPD_OWNER(http_multi, t->data);
  int running;
  curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  http_check_done(m);
}

/* CURLMOPT_TIMERFUNCTION */
static int http_on_curl_timer(CURLM *multi, long ms, void *userp) {
  http_multi *m = userp;
  (void)multi;
  if (ms < 0) uv_timer_stop(&m->timer);
  else uv_timer_start(&m->timer, http_on_timer, (uint64_t)ms, 0);
  return 0;
}

static void http_multi_free(smtpd_handle *h) {
  free(SMTPD_OWNER(http_multi, h));
}

/* ---- transfers ------------------------------------------------------- */

/* Takes the easy handle out of the multi and frees what curl had. */
static void http_req_detach(http_req *r) {
  if (r->easy == NULL) return;
  curl_multi_remove_handle(r->m->multi, r->easy);
  if (!r->m->h.closing && r->m->nspare < HTTP_SPARE) {
    curl_easy_reset(r->easy);
    r->m->spare[r->m->nspare++] = r->easy;
  } else {
    curl_easy_cleanup(r->easy);
  }
  r->easy = NULL;
  curl_slist_free_all(r->headers);
  curl_slist_free_all(r->resolve);
  r->headers = r->resolve = NULL;
  if (r->prev) r->prev->next = r->next;
  else r->m->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  /* Idle, the multi keeps no loop alive (its kept-alive connections
   * are not polled by then). */
  if (r->m->reqs == NULL) uv_unref((uv_handle_t *)&r->m->timer);
}

static void http_req_close(smtpd_handle *h) {
  http_req *r = SMTPD_OWNER(http_req, h);
  http_req_detach(r);
  smtpd_hook_unref(h->map->L, &r->cb_ref);
  smtpd_hook_unref(h->map->L, &r->body_ref);
}

static void http_req_free(smtpd_handle *h) {
  http_req *r = SMTPD_OWNER(http_req, h);
  smtpd_buf_free(&r->hdr);
  smtpd_buf_free(&r->body);
  free(r);
}

typedef struct http_done {
  http_req *r;
  CURLcode code;
  long status;
} http_done;

static int http_lua_report(lua_State *L) {
  http_done *d = lua_touserdata(L, 1);
  http_req *r = d->r;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->cb_ref);
  if (d->code == CURLE_OK) {
    lua_pushinteger(L, d->status);
    lua_pushlstring(L, r->hdr.p ? r->hdr.p : "", r->hdr.len);
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_call(L, 3, 0);
    return 0;
  }
  lua_pushnil(L);
  if (r->too_large) lua_pushliteral(L, "body too large");
  else if (r->hdr_too_large) lua_pushliteral(L, "headers too large");
  else if (d->code == CURLE_OPERATION_TIMEDOUT) lua_pushliteral(L, "timeout");
  else if (r->err[0]) lua_pushstring(L, r->err);
  else lua_pushstring(L, curl_easy_strerror(d->code));
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)d->code);
  lua_setfield(L, -2, "curl_code");
  lua_pushstring(L, curl_easy_strerror(d->code));
  lua_setfield(L, -2, "curl_error");
  lua_call(L, 3, 0);
  return 0;
}

/* A transfer ended: its owner hears (never from inside curl), then it
 * closes. */
static void http_req_finish(http_req *r, CURLcode code) {
  lua_State *L = r->h.map->L;
  http_done d;
  d.r = r;
  d.code = code;
  d.status = 0;
  if (r->easy) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &d.status);
  http_req_detach(r);
  if (!r->h.closing && !r->h.map->dying && r->cb_ref != LUA_NOREF) {
    lua_pushcfunction(L, http_lua_report);
    lua_pushlightuserdata(L, &d);
    smtpd_lua_calls++;
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      smtpd_log(r->h.map, "error in an http callback: %s",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_pop(L, 1);
    }
  }
  smtpd_handle_close(&r->h);
}

static void http_check_done(http_multi *m) {
  CURLMsg *msg;
  int left;
  while (!m->h.closing && (msg = curl_multi_info_read(m->multi, &left))) {
    if (msg->msg == CURLMSG_DONE) {
      char *priv = NULL;
      CURLcode code = msg->data.result;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      if (priv) http_req_finish((http_req *)(void *)priv, code);
    }
  }
}

/* Closing the multi (its map closes) ends every transfer in it. */
static void http_multi_close(smtpd_handle *h) {
  http_multi *m = SMTPD_OWNER(http_multi, h);
  http_multi **pm;
  for (pm = &multis; *pm; pm = &(*pm)->next)
    if (*pm == m) {
      *pm = m->next;
      break;
    }
  while (m->reqs) {
    http_req *r = m->reqs;
    snprintf(r->err, sizeof r->err, "cancelled");
    http_req_finish(r, CURLE_ABORTED_BY_CALLBACK);
  }
  while (m->nspare) curl_easy_cleanup(m->spare[--m->nspare]);
  /* Closes the cached connections: their polls get REMOVE. */
  curl_multi_cleanup(m->multi);
  m->multi = NULL;
  smtpd_handle_uv_close(h, (uv_handle_t *)&m->timer);
}

static http_multi *http_multi_get(smtpd_map *map) {
  http_multi *m = http_multi_of(map);
  static int global_ready;
  if (m) return m;
  if (!global_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
    global_ready = 1;
  }
  m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  m->multi = curl_multi_init();
  if (m->multi == NULL) {
    free(m);
    return NULL;
  }
  smtpd_handle_init(&m->h, map, SMTPD_H_HTTP, http_multi_close,
                    http_multi_free);
  uv_timer_init(&map->loop, &m->timer);
  smtpd_handle_attach(&m->h, (uv_handle_t *)&m->timer);
  uv_unref((uv_handle_t *)&m->timer);
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, http_on_curl_timer);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
  curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
  curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 256L);
  m->next = multis;
  multis = m;
  return m;
}

static size_t http_on_body(char *p, size_t size, size_t n, void *ud) {
  http_req *r = ud;
  size_t len = size * n;
  if (r->body.len + len > r->max_body) {
    r->too_large = 1;
    return 0;                   /* curl aborts: CURLE_WRITE_ERROR */
  }
  if (smtpd_buf_append(&r->body, p, len)) return 0;
  return len;
}

static size_t http_on_header(char *p, size_t size, size_t n, void *ud) {
  http_req *r = ud;
  size_t len = size * n;
  /* A new response (after 100 Continue): its headers only. */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) r->hdr.len = 0;
  if (r->hdr.len + len > HTTP_MAX_HEADERS) {
    r->hdr_too_large = 1;
    return 0;
  }
  if (smtpd_buf_append(&r->hdr, p, len)) return 0;
  return len;
}

static struct curl_slist *http_list(lua_State *L, int t, const char *key,
                                    int *bad) {
  struct curl_slist *list = NULL, *nl;
  lua_Integer i, n;
  if (lua_getfield(L, t, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (!lua_isstring(L, -1) ||
        (nl = curl_slist_append(list, lua_tostring(L, -1))) == NULL) {
      lua_pop(L, 2);
      curl_slist_free_all(list);
      *bad = 1;
      return NULL;
    }
    list = nl;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return list;
}

static lua_Integer http_int(lua_State *L, int t, const char *key,
                            lua_Integer dflt) {
  lua_Integer v;
  lua_getfield(L, t, key);
  v = luaL_optinteger(L, -1, dflt);
  lua_pop(L, 1);
  return v;
}

/* http_request(map, spec, cb) -> handle | nil, err */
static int http_request(lua_State *L) {
  smtpd_map *map = smtpd_check_map(L, 1);
  http_multi *m;
  http_req *r;
  const char *url, *method, *ca;
  size_t blen = 0;
  int bad = 0, verify;
  CURL *e;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_checkstack(L, 8, NULL);
  lua_getfield(L, 2, "url");
  url = luaL_checkstring(L, -1);
  lua_getfield(L, 2, "method");
  method = luaL_optstring(L, -1, "GET");
  lua_getfield(L, 2, "ca");
  ca = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 2, "verify");
  verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  /* url, method and ca stay on the stack (curl copies them). */
  m = http_multi_get(map);
  if (m == NULL) return luaL_error(L, "http: libcurl did not start");
  r = calloc(1, sizeof *r);
  if (r == NULL) return luaL_error(L, "out of memory");
  r->cb_ref = r->body_ref = LUA_NOREF;
  r->m = m;
  r->max_body = (size_t)http_int(L, 2, "max_body", 16 * 1024 * 1024);
  smtpd_handle_init(&r->h, map, SMTPD_H_HTTP, http_req_close, http_req_free);
  r->headers = http_list(L, 2, "headers", &bad);
  if (!bad) r->resolve = http_list(L, 2, "resolve", &bad);
  e = bad ? NULL : m->nspare ? m->spare[--m->nspare] : curl_easy_init();
  if (e == NULL) {
    smtpd_handle_close(&r->h);
    return luaL_error(L, bad ? "http: headers and resolve are arrays of "
                             "strings" : "out of memory");
  }
  r->easy = e;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROXY, "");          /* no env proxies */
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)http_int(L, 2, "timeout", 30000));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)http_int(L, 2, "connect_timeout", 10000));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
  if (r->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  if (r->resolve) curl_easy_setopt(e, CURLOPT_RESOLVE, r->resolve);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  lua_getfield(L, 2, "body");
  if (lua_isstring(L, -1)) {
    const char *b = lua_tolstring(L, -1, &blen);
    /* curl reads the body in place: anchored until the end. */
    lua_pushvalue(L, -1);
    r->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, b);
  }
  lua_pop(L, 1);
  if (strcmp(method, "GET") == 0) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  else if (strcmp(method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "POST") != 0 || r->body_ref == LUA_NOREF)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (strcmp(method, "POST") == 0 && r->body_ref == LUA_NOREF) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
  }
  lua_pushvalue(L, 3);
  r->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->next = m->reqs;
  if (m->reqs) m->reqs->prev = r;
  m->reqs = r;
  /* A transfer in flight keeps the loop alive, its first step included:
   * curl starts with a timer, and a loop stepped with UV_RUN_NOWAIT (the
   * luv attachment) runs no timer while nothing it counts is active. */
  uv_ref((uv_handle_t *)&m->timer);
  if (curl_multi_add_handle(m->multi, e) != CURLM_OK) {
    smtpd_handle_close(&r->h);
    lua_pushnil(L);
    lua_pushliteral(L, "http: the transfer could not start");
    return 2;
  }
  smtpd_handle_push_box(L, &r->h, REQ_MT, 0);
  return 1;
}

static int http_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, REQ_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

/* http_version() -> libcurl's version string */
static int http_version(lua_State *L) {
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  return 1;
}

void smtpd_open_http(lua_State *L) {
  static const luaL_Reg methods[] = {{"cancel", http_cancel}, {NULL, NULL}};
  smtpd_new_class(L, REQ_MT, NULL, methods);
  lua_pushcfunction(L, http_request);
  lua_setfield(L, -2, "http_request");
  lua_pushcfunction(L, http_version);
  lua_setfield(L, -2, "http_version");
}
