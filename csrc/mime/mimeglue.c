/*
 * smtpd.message's C half: a Lua view over one copy of a message's bytes.
 *
 *   local m = core.mime_parse(data)   -- the index; parts are 1..m:count()
 *   m:header(i, name, "get" | "all" | "raw")   m:keys(i)
 *   m:ctype(i)   m:param(i, header, name)   m:main_value(i, header)
 *   m:children(i)   m:payload(i, decode)   m:addresses(i, name)
 *
 * lua/smtpd/message.lua turns this into Python's email.message names.
 */
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"
#include "mime/mime.h"

#define MIME_MT "smtpd.mime"

static smtpd_mime *check_mime(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, MIME_MT);
}

/* The 1-based part index at idx, checked; 0-based back. */
static int check_part(lua_State *L, smtpd_mime *m, int idx) {
  lua_Integer i = luaL_checkinteger(L, idx);
  luaL_argcheck(L, i >= 1 && (size_t)i <= m->nparts, idx, "no such part");
  return (int)i - 1;
}

static int mime_gc(lua_State *L) {
  smtpd_mime_free(check_mime(L, 1));
  return 0;
}

static int push_buf(lua_State *L, smtpd_buf *b, int r) {
  if (r < 0) {
    smtpd_buf_free(b);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, b->p ? b->p : "", b->len);
  smtpd_buf_free(b);
  return 1;
}

/* mime_parse(data) -> index */
static int mime_parse(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  smtpd_mime *m = lua_newuserdatauv(L, sizeof *m, 1);
  memset(m, 0, sizeof *m);
  luaL_setmetatable(L, MIME_MT);
  lua_pushvalue(L, 1);                /* the bytes live as long as we do */
  lua_setiuservalue(L, -2, 1);
  if (smtpd_mime_parse(m, p, len)) return luaL_error(L, "out of memory");
  return 1;
}

static int mime_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_mime(L, 1)->nparts);
  return 1;
}

/* header(i, name, mode) */
static int mime_header(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  size_t nlen;
  const char *name = luaL_checklstring(L, 3, &nlen);
  static const char *const modes[] = {"get", "all", "raw", NULL};
  int mode = luaL_checkoption(L, 4, "get", modes);
  long k = smtpd_mime_find(m, pi, name, nlen, 0);
  lua_Integer n = 0;
  if (mode == 1) lua_newtable(L);
  while (k >= 0) {
    const smtpd_mime_header *h = &m->hdrs[m->parts[pi].hfirst + (size_t)k];
    const char *v = m->p + h->value;
    if (mode == 2) {
      size_t i = 0;
      while (i < h->value_len && (v[i] == ' ' || v[i] == '\t')) i++;
      lua_pushlstring(L, v + i, h->value_len - i);
      return 1;
    } else {
      smtpd_buf b = {NULL, 0, 0};
      push_buf(L, &b, smtpd_mime_decode_header(v, h->value_len, &b));
      if (mode == 0) return 1;
      lua_rawseti(L, -2, ++n);
    }
    k = smtpd_mime_find(m, pi, name, nlen, (size_t)k + 1);
  }
  if (mode != 1) lua_pushnil(L);
  return 1;
}

static int mime_keys(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  const smtpd_mime_part *pt = &m->parts[pi];
  size_t k;
  lua_createtable(L, (int)pt->hcount, 0);
  for (k = 0; k < pt->hcount; k++) {
    const smtpd_mime_header *h = &m->hdrs[pt->hfirst + k];
    lua_pushlstring(L, m->p + h->name, h->name_len);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

static int mime_ctype(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  smtpd_buf b = {NULL, 0, 0};
  return push_buf(L, &b, smtpd_mime_ctype(m, pi, &b));
}

/* param(i, header, name) -> value | nil */
static int mime_param(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  size_t hlen, nlen;
  const char *hname = luaL_checklstring(L, 3, &hlen);
  const char *name = luaL_checklstring(L, 4, &nlen);
  const smtpd_mime_header *h = smtpd_mime_first(m, pi, hname, hlen);
  smtpd_buf b = {NULL, 0, 0};
  int r;
  if (h == NULL) return 0;
  r = smtpd_mime_param(m->p + h->value, h->value_len, name, nlen, &b);
  if (r == 0) {
    smtpd_buf_free(&b);
    return 0;
  }
  return push_buf(L, &b, r);
}

/* main_value(i, header) -> the value before ';', lower case | nil */
static int mime_main_value(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  size_t hlen;
  const char *hname = luaL_checklstring(L, 3, &hlen);
  const smtpd_mime_header *h = smtpd_mime_first(m, pi, hname, hlen);
  smtpd_buf b = {NULL, 0, 0};
  if (h == NULL) return 0;
  return push_buf(L, &b, smtpd_mime_main_value(m->p + h->value,
                                               h->value_len, &b));
}

static int mime_children(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2), c;
  lua_Integer n = 0;
  lua_createtable(L, m->parts[pi].nchildren, 0);
  for (c = m->parts[pi].first_child; c >= 0; c = m->parts[c].next) {
    lua_pushinteger(L, c + 1);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static int mime_has_children(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  lua_pushboolean(L, m->parts[pi].has_children);
  return 1;
}

/* payload(i, decode) -> the body, with its transfer encoding undone when
 * decode is true (base64, quoted-printable; anything else as it is). */
static int mime_payload(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  const smtpd_mime_part *pt = &m->parts[pi];
  const char *body = m->p + pt->body;
  size_t blen = pt->body_end - pt->body;
  smtpd_buf cte = {NULL, 0, 0}, out = {NULL, 0, 0};
  const smtpd_mime_header *h;
  int r = 0;
  if (!lua_toboolean(L, 3)) {
    lua_pushlstring(L, body, blen);
    return 1;
  }
  h = smtpd_mime_first(m, pi, "content-transfer-encoding", 25);
  if (h) {
    if (smtpd_mime_main_value(m->p + h->value, h->value_len, &cte)) {
      smtpd_buf_free(&cte);
      return luaL_error(L, "out of memory");
    }
  }
  if (cte.len == 6 && memcmp(cte.p, "base64", 6) == 0)
    r = smtpd_mime_base64(body, blen, &out);
  else if (cte.len == 16 && memcmp(cte.p, "quoted-printable", 16) == 0)
    r = smtpd_mime_qp(body, blen, &out);
  else
    r = smtpd_buf_append(&out, body, blen);
  smtpd_buf_free(&cte);
  return push_buf(L, &out, r);
}

typedef struct addr_ctx {
  lua_State *L;
  lua_Integer n;
} addr_ctx;

static int addr_push(const char *name, size_t nlen, const char *addr,
                     size_t alen, void *ud) {
  addr_ctx *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, name, nlen);
  lua_setfield(L, -2, "name");
  lua_pushlstring(L, addr, alen);
  lua_setfield(L, -2, "address");
  lua_rawseti(L, -2, ++c->n);
  return 0;
}

/* addresses(i, name) -> {{name=, address=}, ...} from every such header */
static int mime_addresses(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  size_t nlen;
  const char *name = luaL_checklstring(L, 3, &nlen);
  long k = smtpd_mime_find(m, pi, name, nlen, 0);
  addr_ctx c = {L, 0};
  lua_newtable(L);
  while (k >= 0) {
    const smtpd_mime_header *h = &m->hdrs[m->parts[pi].hfirst + (size_t)k];
    if (smtpd_mime_addresses(m->p + h->value, h->value_len, addr_push, &c))
      return luaL_error(L, "out of memory");
    k = smtpd_mime_find(m, pi, name, nlen, (size_t)k + 1);
  }
  return 1;
}

/* range(i) -> start, end, body (1-based string positions of the part and
 * of its body), for as_string and sizes. */
static int mime_range(lua_State *L) {
  smtpd_mime *m = check_mime(L, 1);
  int pi = check_part(L, m, 2);
  lua_pushinteger(L, (lua_Integer)m->parts[pi].start + 1);
  lua_pushinteger(L, (lua_Integer)m->parts[pi].end);
  lua_pushinteger(L, (lua_Integer)m->parts[pi].body + 1);
  return 3;
}

/* decode_header(s) -> s unfolded, its encoded words in UTF-8 */
static int mime_decode_header(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  smtpd_buf b = {NULL, 0, 0};
  return push_buf(L, &b, smtpd_mime_decode_header(s, n, &b));
}

/* to_utf8(bytes [, charset]) -> UTF-8 (bytes that do not convert become
 * U+FFFD; no charset or an unknown one reads the bytes as UTF-8) */
static int mime_to_utf8_l(lua_State *L) {
  size_t n, cn = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *cs = luaL_optlstring(L, 2, "utf-8", &cn);
  smtpd_buf b = {NULL, 0, 0};
  return push_buf(L, &b, smtpd_mime_to_utf8(cs, cn, s, n, &b));
}

/* The iconv cache goes with the Lua state (before the core's code is
 * unloaded). */
static int mime_iconv_gc(lua_State *L) {
  (void)L;
  smtpd_mime_iconv_flush();
  return 0;
}

void smtpd_open_mime(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", mime_gc}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
    {"count", mime_count}, {"header", mime_header}, {"keys", mime_keys},
    {"ctype", mime_ctype}, {"param", mime_param},
    {"main_value", mime_main_value}, {"children", mime_children},
    {"has_children", mime_has_children}, {"payload", mime_payload},
    {"addresses", mime_addresses}, {"range", mime_range}, {NULL, NULL}
  };
  smtpd_new_class(L, MIME_MT, meta, methods);
  lua_pushcfunction(L, mime_parse);
  lua_setfield(L, -2, "mime_parse");
  lua_pushcfunction(L, mime_decode_header);
  lua_setfield(L, -2, "mime_decode_header");
  lua_pushcfunction(L, mime_to_utf8_l);
  lua_setfield(L, -2, "mime_to_utf8");
  smtpd_on_close(L, "smtpd.iconv", mime_iconv_gc);
}
