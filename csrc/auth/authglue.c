/*
 * Mail authentication's C half for Lua (smtpd.spf):
 *
 *   core.spf_parse(record) -> {terms} | nil, err
 *     each term {kind = "all" | "include" | "a" | "mx" | "ptr" | "ip4" |
 *     "ip6" | "exists" | "redirect" | "exp" | "modifier", q = "+-~?",
 *     spec = string | nil, name = (a modifier's), cidr4 =, cidr6 =,
 *     addr = (ip4/ip6: the network, as text)}
 *   core.spf_expand(macro_string, ctx, exp, domain) -> string | nil, err
 *     ctx: {s =, l =, o =, d =, i =, p =, v =, h =, c =, r =, t =}
 *   core.ip_in(ip, network, prefix) -> boolean (an IPv4-mapped IPv6
 *     address is its IPv4 address; families that differ never match)
 *   core.ip_text(ip) -> the address as RFC 5952 writes it | nil
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "auth/spf.h"
#include "core/glue.h"

static const char *const KINDS[] = {
  "", "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists",
  "redirect", "exp", "modifier"
};

static int spf_parse_l(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  char err[160];
  int i;
  spf_record *rec = malloc(sizeof *rec);
  if (rec == NULL) return luaL_error(L, "out of memory");
  if (spf_parse(text, len, rec, err, sizeof err)) {
    free(rec);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, rec->n, 0);
  for (i = 0; i < rec->n; i++) {
    const spf_term *t = &rec->terms[i];
    char q[2] = {t->qualifier, '\0'};
    lua_createtable(L, 0, 6);
    lua_pushstring(L, KINDS[t->kind]);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, q);
    lua_setfield(L, -2, "q");
    if (t->spec && t->kind != SPF_IP4 && t->kind != SPF_IP6) {
      lua_pushlstring(L, t->spec, t->spec_len);
      lua_setfield(L, -2, "spec");
    }
    if (t->name) {
      lua_pushlstring(L, t->name, t->name_len);
      lua_setfield(L, -2, "name");
    }
    if (t->cidr4 >= 0) {
      lua_pushinteger(L, t->cidr4);
      lua_setfield(L, -2, "cidr4");
    }
    if (t->cidr6 >= 0) {
      lua_pushinteger(L, t->cidr6);
      lua_setfield(L, -2, "cidr6");
    }
    if (t->kind == SPF_IP4 || t->kind == SPF_IP6) {
      char buf[INET6_ADDRSTRLEN];
      inet_ntop(t->kind == SPF_IP4 ? AF_INET : AF_INET6, t->addr, buf,
                sizeof buf);
      lua_pushstring(L, buf);
      lua_setfield(L, -2, "addr");
    }
    lua_rawseti(L, -2, i + 1);
  }
  free(rec);
  return 1;
}

static const char *ctx_field(lua_State *L, int t, const char *k) {
  const char *v;
  lua_getfield(L, t, k);
  v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);          /* the context table keeps the string alive */
  return v;
}

static int spf_expand_l(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  spf_macro_ctx ctx;
  smtpd_buf out = {0};
  char err[160];
  int exp, domain, r;
  luaL_checktype(L, 2, LUA_TTABLE);
  exp = lua_toboolean(L, 3);
  domain = lua_toboolean(L, 4);
  ctx.s = ctx_field(L, 2, "s");
  ctx.l = ctx_field(L, 2, "l");
  ctx.o = ctx_field(L, 2, "o");
  ctx.d = ctx_field(L, 2, "d");
  ctx.i = ctx_field(L, 2, "i");
  ctx.p = ctx_field(L, 2, "p");
  ctx.v = ctx_field(L, 2, "v");
  ctx.h = ctx_field(L, 2, "h");
  ctx.c = ctx_field(L, 2, "c");
  ctx.r = ctx_field(L, 2, "r");
  ctx.t = ctx_field(L, 2, "t");
  r = spf_expand(s, len, &ctx, exp, domain, &out, err, sizeof err);
  if (r) {
    smtpd_buf_free(&out);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, out.p ? out.p : "", out.len);
  smtpd_buf_free(&out);
  return 1;
}

/* family (4 or 6) and the address bytes of text; 0 when it is none. */
static int ip_bytes(const char *text, unsigned char *a) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0xff, 0xff};
  if (inet_pton(AF_INET, text, a) == 1) return 4;
  if (inet_pton(AF_INET6, text, a) == 1) {
    if (memcmp(a, mapped, 12) == 0) {
      memmove(a, a + 12, 4);
      return 4;
    }
    return 6;
  }
  return 0;
}

static int ip_in_l(lua_State *L) {
  unsigned char a[16], b[16];
  int fa = ip_bytes(luaL_checkstring(L, 1), a);
  const char *net = luaL_checkstring(L, 2);
  int fb, bits, i;
  lua_Integer prefix;
  /* A network written as IPv4-mapped stays IPv6 (ip6:::ffff:1.2.3.4). */
  if (inet_pton(AF_INET, net, b) == 1) fb = 4;
  else if (inet_pton(AF_INET6, net, b) == 1) fb = 6;
  else return luaL_error(L, "ip_in: not an address: %s", net);
  bits = fb == 4 ? 32 : 128;
  prefix = luaL_optinteger(L, 3, bits);
  if (prefix < 0 || prefix > bits) return luaL_error(L, "ip_in: bad prefix");
  if (fa != fb) {
    lua_pushboolean(L, 0);
    return 1;
  }
  for (i = 0; i < (int)prefix; i++) {
    int m = 0x80 >> (i & 7);
    if ((a[i >> 3] & m) != (b[i >> 3] & m)) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int ip_text_l(lua_State *L) {
  unsigned char a[16];
  char buf[INET6_ADDRSTRLEN];
  const char *ip = luaL_checkstring(L, 1);
  if (inet_pton(AF_INET, ip, a) == 1) inet_ntop(AF_INET, a, buf, sizeof buf);
  else if (inet_pton(AF_INET6, ip, a) == 1) inet_ntop(AF_INET6, a, buf, sizeof buf);
  else return 0;
  lua_pushstring(L, buf);
  return 1;
}

void smtpd_open_auth(lua_State *L) {
  lua_pushcfunction(L, ip_text_l);
  lua_setfield(L, -2, "ip_text");
  lua_pushcfunction(L, spf_parse_l);
  lua_setfield(L, -2, "spf_parse");
  lua_pushcfunction(L, spf_expand_l);
  lua_setfield(L, -2, "spf_expand");
  lua_pushcfunction(L, ip_in_l);
  lua_setfield(L, -2, "ip_in");
}
