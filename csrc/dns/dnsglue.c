/*
 * DNS on a map's loop: c-ares carries our queries (dns/dns.c builds them
 * and reads the answers) the way node's cares_wrap drives it, one
 * uv_poll_t per socket c-ares opens and one timer armed from
 * ares_timeout(). Only calls that newer c-ares releases keep are used
 * (ares_init_options with a socket-state callback, ares_send,
 * ares_process_fd, ares_timeout, ares_set_servers_ports_csv).
 *
 *   core.dns_query(map, name, qtype, flags, cb) -> handle (:cancel())
 *       cb(records) | cb(nil, err, info)
 *   core.dns_configure(map, {servers=, timeout=, tries=}) -> true | nil, err
 *   core.dns_answer(bytes, qtype) -> records | nil, err, info  (specs)
 *   core.dns_reverse_name(ip [, zone]) -> name | nil
 */
#define CARES_NO_DEPRECATED 1   /* ares_send: deprecated, kept */
#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"
#include "dns/dns.h"

#define QUERY_MT "smtpd.dnsquery"
#define DNS_SLOTS 32

typedef struct dns_slot {
  uv_poll_t poll;          /* first: the poll's address is the slot's */
  ares_socket_t fd;
  int state;               /* 0 free, 1 polling, 2 closing */
} dns_slot;

typedef struct dns_res {
  smtpd_handle h;
  uv_timer_t timer;
  ares_channel ch;
  int ready;
  int depth;               /* inside a c-ares call (its callbacks run) */
  dns_slot slots[DNS_SLOTS];
} dns_res;

typedef struct dns_query {
  smtpd_handle h;
  int cb_ref;
  uint16_t qtype;
} dns_query;

/* The resolver of each map, made on first use. */
typedef struct dns_conf {
  smtpd_map *map;
  dns_res *res;
  char servers[1024];
  int timeout_ms, tries;
  struct dns_conf *next;
} dns_conf;

static dns_conf *confs;

static dns_conf *dns_conf_of(smtpd_map *m, int make) {
  dns_conf *c;
  for (c = confs; c; c = c->next)
    if (c->map == m) return c;
  if (!make) return NULL;
  c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->map = m;
  c->next = confs;
  confs = c;
  return c;
}

static void dns_rearm(dns_res *r);
static void dns_destroy(dns_res *r);

/* c-ares must not be destroyed from inside its own calls (a callback
 * that reconfigures, or a map closed from Lua there): the resolver's
 * close waits for the outermost call to return. */
static void dns_enter(dns_res *r) {
  r->depth++;
}

static void dns_leave(dns_res *r) {
  if (--r->depth > 0) return;
  if (r->h.closing) {
    dns_destroy(r);
    smtpd_handle_done(&r->h);   /* the hold taken in dns_res_close */
  } else {
    dns_rearm(r);
  }
}

static void dns_slot_closed(uv_handle_t *u) {
  dns_slot *s = (dns_slot *)(void *)u;
  dns_res *r = SMTPD_OWNER(dns_res, u->data);
  s->state = 0;
  smtpd_handle_done(&r->h);    /* may free r */
}

static void dns_slot_close(dns_res *r, dns_slot *s) {
  (void)r;
  if (s->state != 1) return;
  s->state = 2;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, dns_slot_closed);
}

static void dns_on_poll(uv_poll_t *p, int status, int events) {
  dns_slot *s = (dns_slot *)(void *)p;
  dns_res *r = SMTPD_OWNER(dns_res, p->data);
  ares_socket_t rd = ARES_SOCKET_BAD, wr = ARES_SOCKET_BAD;
  if (status < 0) {
    /* An error: let c-ares find it out by reading and writing. */
    rd = wr = s->fd;
  } else {
    if (events & UV_READABLE) rd = s->fd;
    if (events & UV_WRITABLE) wr = s->fd;
  }
  dns_enter(r);
  ares_process_fd(r->ch, rd, wr);
  dns_leave(r);
}

static void dns_sock_state(void *data, ares_socket_t fd, int readable,
                           int writable) {
  dns_res *r = data;
  dns_slot *s = NULL, *free_slot = NULL;
  int i, ev = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  for (i = 0; i < DNS_SLOTS; i++) {
    if (r->slots[i].state == 1 && r->slots[i].fd == fd) s = &r->slots[i];
    else if (r->slots[i].state == 0 && free_slot == NULL)
      free_slot = &r->slots[i];
  }
  if (ev == 0) {
    if (s) dns_slot_close(r, s);
    return;
  }
  if (s == NULL) {
    if (free_slot == NULL || r->h.closing) {
      /* c-ares then times the query out. */
      smtpd_log(r->h.map, "dns: more than %d sockets at once", DNS_SLOTS);
      return;
    }
    s = free_slot;
    if (uv_poll_init_socket(&r->h.map->loop, &s->poll, fd)) return;
    s->fd = fd;
    s->state = 1;
    smtpd_handle_attach(&r->h, (uv_handle_t *)&s->poll);
  }
  uv_poll_start(&s->poll, ev, dns_on_poll);
}

static void dns_on_timer(uv_timer_t *t) {
  dns_res *r = SMTPD_OWNER(dns_res, t->data);
  dns_enter(r);
  ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  dns_leave(r);
}

static void dns_rearm(dns_res *r) {
  struct timeval tv, *tp = ares_timeout(r->ch, NULL, &tv);
  if (tp == NULL) {
    uv_timer_stop(&r->timer);
    return;
  }
  uv_timer_start(&r->timer, dns_on_timer,
                 (uint64_t)tp->tv_sec * 1000 + (uint64_t)(tp->tv_usec + 999) / 1000,
                 0);
}

static void dns_res_free(smtpd_handle *h) {
  free(SMTPD_OWNER(dns_res, h));
}

/* Closing the resolver ends its queries (their callbacks say
 * "cancelled"), then its sockets and timer. */
static void dns_destroy(dns_res *r) {
  int i;
  if (r->ready) {
    r->ready = 0;
    r->depth++;
    ares_destroy(r->ch);
    r->depth--;
  }
  for (i = 0; i < DNS_SLOTS; i++) dns_slot_close(r, &r->slots[i]);
  smtpd_handle_uv_close(&r->h, (uv_handle_t *)&r->timer);
}

static void dns_res_close(smtpd_handle *h) {
  dns_res *r = SMTPD_OWNER(dns_res, h);
  dns_conf *c = dns_conf_of(h->map, 0);
  if (c && c->res == r) c->res = NULL;
  if (r->depth == 0) dns_destroy(r);
  else r->h.pending++;      /* held until dns_leave destroys it */
}

static dns_res *dns_res_get(smtpd_map *m, char *err, size_t errlen) {
  dns_conf *c = dns_conf_of(m, 1);
  struct ares_options o;
  dns_res *r;
  int optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS, st;
  static int lib_ready;
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (c->res) return c->res;
  if (!lib_ready) {
    if ((st = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
      snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
      return NULL;
    }
    lib_ready = 1;
  }
  r = calloc(1, sizeof *r);
  if (r == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memset(&o, 0, sizeof o);
  o.sock_state_cb = dns_sock_state;
  o.sock_state_cb_data = r;
  /* NOCHECKRESP: a SERVFAIL or REFUSED reaches us as the answer it is
   * (otherwise c-ares says "connection refused" for both). */
  o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP;
  if (c->timeout_ms) {
    o.timeout = c->timeout_ms;
    optmask |= ARES_OPT_TIMEOUTMS;
  }
  if (c->tries) {
    o.tries = c->tries;
    optmask |= ARES_OPT_TRIES;
  }
  st = ares_init_options(&r->ch, &o, optmask);
  if (st != ARES_SUCCESS) {
    free(r);
    snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
    return NULL;
  }
  if (c->servers[0] &&
      (st = ares_set_servers_ports_csv(r->ch, c->servers)) != ARES_SUCCESS) {
    ares_destroy(r->ch);
    free(r);
    snprintf(err, errlen, "dns servers: %s", ares_strerror(st));
    return NULL;
  }
  r->ready = 1;
  smtpd_handle_init(&r->h, m, SMTPD_H_DNS, dns_res_close, dns_res_free);
  uv_timer_init(&m->loop, &r->timer);
  smtpd_handle_attach(&r->h, (uv_handle_t *)&r->timer);
  /* Neither keeps a loop alive: queries do, through their waits. */
  uv_unref((uv_handle_t *)&r->timer);
  c->res = r;
  return r;
}

/* ---- answers into Lua ------------------------------------------------ */

static const char *dns_type_name(unsigned t) {
  switch (t) {
  case SMTPD_DNS_A: return "A";
  case SMTPD_DNS_AAAA: return "AAAA";
  case SMTPD_DNS_MX: return "MX";
  case SMTPD_DNS_TXT: return "TXT";
  case SMTPD_DNS_PTR: return "PTR";
  case SMTPD_DNS_CNAME: return "CNAME";
  case SMTPD_DNS_NS: return "NS";
  case SMTPD_DNS_SOA: return "SOA";
  case SMTPD_DNS_SRV: return "SRV";
  case SMTPD_DNS_TLSA: return "TLSA";
  default: return NULL;
  }
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void push_record(lua_State *L, const smtpd_dns_rr *rr,
                        const smtpd_dns_rdata *rd) {
  const char *tn = dns_type_name(rr->type);
  lua_createtable(L, 0, 6);
  set_str(L, "owner", rr->name);
  if (tn) set_str(L, "type", tn);
  else set_int(L, "type", rr->type);
  set_int(L, "ttl", rr->ttl);
  switch (rr->type) {
  case SMTPD_DNS_A: case SMTPD_DNS_AAAA:
    set_str(L, "address", rd->addr);
    break;
  case SMTPD_DNS_CNAME: case SMTPD_DNS_NS: case SMTPD_DNS_PTR:
    set_str(L, "name", rd->name);
    break;
  case SMTPD_DNS_MX:
    set_int(L, "preference", rd->n[0]);
    set_str(L, "exchange", rd->name);
    break;
  case SMTPD_DNS_SRV:
    set_int(L, "priority", rd->n[0]);
    set_int(L, "weight", rd->n[1]);
    set_int(L, "port", rd->n[2]);
    set_str(L, "target", rd->name);
    break;
  case SMTPD_DNS_SOA:
    set_str(L, "mname", rd->name);
    set_str(L, "rname", rd->name2);
    set_int(L, "serial", rd->n[0]);
    set_int(L, "refresh", rd->n[1]);
    set_int(L, "retry", rd->n[2]);
    set_int(L, "expire", rd->n[3]);
    set_int(L, "minimum", rd->n[4]);
    break;
  case SMTPD_DNS_TXT: {
    luaL_Buffer b;
    size_t i;
    int k = 0;
    lua_newtable(L);
    for (i = 0; i < rd->dlen; i += 1 + rd->data[i]) {
      lua_pushlstring(L, (const char *)rd->data + i + 1, rd->data[i]);
      lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "strings");
    luaL_buffinit(L, &b);
    for (i = 0; i < rd->dlen; i += 1 + rd->data[i])
      luaL_addlstring(&b, (const char *)rd->data + i + 1, rd->data[i]);
    luaL_pushresult(&b);
    lua_setfield(L, -2, "text");
    break;
  }
  case SMTPD_DNS_TLSA: {
    static const char hex[] = "0123456789abcdef";
    luaL_Buffer b;
    size_t i;
    set_int(L, "usage", rd->n[0]);
    set_int(L, "selector", rd->n[1]);
    set_int(L, "mtype", rd->n[2]);
    luaL_buffinit(L, &b);
    for (i = 0; i < rd->dlen; i++) {
      luaL_addchar(&b, hex[rd->data[i] >> 4]);
      luaL_addchar(&b, hex[rd->data[i] & 15]);
    }
    luaL_pushresult(&b);
    lua_setfield(L, -2, "data");
    break;
  }
  default:
    lua_pushlstring(L, (const char *)rd->data, rd->dlen);
    lua_setfield(L, -2, "rdata");
  }
}

/* nil, err, {rcode=, temporary=, ttl=, ad=} */
static int push_error(lua_State *L, const char *err, int temporary,
                      int rcode, long ttl, int ad) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, temporary);
  lua_setfield(L, -2, "temporary");
  if (rcode >= 0) set_int(L, "rcode", rcode);
  if (ttl >= 0) set_int(L, "ttl", ttl);
  lua_pushboolean(L, ad);
  lua_setfield(L, -2, "ad");
  return 3;
}

static int push_rcode(lua_State *L, int rcode, long ttl, int ad) {
  switch (rcode) {
  case 1: return push_error(L, "formerr", 1, rcode, -1, ad);
  case 2: return push_error(L, "servfail", 1, rcode, -1, ad);
  case 3: return push_error(L, "nxdomain", 0, rcode, ttl, ad);
  case 4: return push_error(L, "notimp", 1, rcode, -1, ad);
  case 5: return push_error(L, "refused", 1, rcode, -1, ad);
  default: {
    char name[32];
    snprintf(name, sizeof name, "rcode %d", rcode);
    return push_error(L, name, 1, rcode, -1, ad);
  }
  }
}

/* The records of qtype that answer the question (following its CNAME
 * chain), as an array with ad, ttl (the smallest), rcode and, when a
 * CNAME led there, cname (the name answered). */
static int push_answer(lua_State *L, const unsigned char *p, size_t len,
                       unsigned qtype) {
  smtpd_dns_msg m;
  smtpd_dns_rr rr;
  smtpd_dns_rdata rd;
  char cur[SMTPD_DNS_NAME_MAX];
  int r = 0, k = 0, pass, moved;
  uint32_t minttl = UINT32_MAX;
  if (smtpd_dns_parse(&m, p, len) || m.qd != 1)
    return push_error(L, "formerr", 1, -1, -1, 0);
  if (m.rcode != 0) {
    long ttl = m.rcode == 3 ? smtpd_dns_negative_ttl(&m) : -1;
    return push_rcode(L, m.rcode, ttl, m.ad);
  }
  snprintf(cur, sizeof cur, "%s", m.qname);
  /* The CNAME chain, at most 16 links, in any order in the answer. */
  for (pass = 0, moved = 1; moved && pass < 16 && qtype != SMTPD_DNS_CNAME;
       pass++) {
    smtpd_dns_msg it = m;
    moved = 0;
    while ((r = smtpd_dns_next(&it, &rr)) == 1 &&
           rr.section == SMTPD_DNS_ANSWER) {
      if (rr.type == SMTPD_DNS_CNAME && smtpd_dns_name_eq(rr.name, cur) &&
          smtpd_dns_rdata_get(&it, &rr, &rd) == 0) {
        snprintf(cur, sizeof cur, "%s", rd.name);
        moved = 1;
        break;
      }
    }
    if (r < 0) {
      return push_error(L, "formerr", 1, -1, -1, m.ad);
    }
  }
  lua_newtable(L);
  {
    smtpd_dns_msg it = m;
    while ((r = smtpd_dns_next(&it, &rr)) == 1) {
      if (rr.section != SMTPD_DNS_ANSWER || rr.type != qtype ||
          !smtpd_dns_name_eq(rr.name, cur))
        continue;
      if (smtpd_dns_rdata_get(&it, &rr, &rd)) {
        r = -1;
        break;
      }
      push_record(L, &rr, &rd);
      lua_rawseti(L, -2, ++k);
      if (rr.ttl < minttl) minttl = rr.ttl;
    }
  }
  if (r < 0) {
    lua_pop(L, 1);
    return push_error(L, "formerr", 1, -1, -1, m.ad);
  }
  if (k == 0) {
    smtpd_dns_msg it = m;
    long ttl = smtpd_dns_negative_ttl(&it);
    lua_pop(L, 1);
    return push_error(L, "nodata", 0, 0, ttl, m.ad);
  }
  lua_pushboolean(L, m.ad);
  lua_setfield(L, -2, "ad");
  set_int(L, "ttl", minttl);
  set_int(L, "rcode", 0);
  if (!smtpd_dns_name_eq(cur, m.qname)) set_str(L, "cname", cur);
  return 1;
}

static int push_status(lua_State *L, int status) {
  switch (status) {
  case ARES_ETIMEOUT: return push_error(L, "timeout", 1, -1, -1, 0);
  case ARES_ESERVFAIL: return push_error(L, "servfail", 1, 2, -1, 0);
  case ARES_EREFUSED: return push_error(L, "refused", 1, 5, -1, 0);
  case ARES_ENOTIMP: return push_error(L, "notimp", 1, 4, -1, 0);
  case ARES_EFORMERR: case ARES_EBADRESP:
    return push_error(L, "formerr", 1, -1, -1, 0);
  case ARES_ECONNREFUSED: return push_error(L, "unreachable", 1, -1, -1, 0);
  case ARES_EDESTRUCTION: case ARES_ECANCELLED:
    return push_error(L, "cancelled", 1, -1, -1, 0);
  case ARES_ENOMEM: return push_error(L, "out of memory", 1, -1, -1, 0);
  default: return push_error(L, ares_strerror(status), 1, -1, -1, 0);
  }
}

/* ---- queries ---------------------------------------------------------- */

typedef struct dns_result {
  dns_query *q;
  int status;
  const unsigned char *abuf;
  int alen;
} dns_result;

static int dns_lua_report(lua_State *L) {
  dns_result *r = lua_touserdata(L, 1);
  int n;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->q->cb_ref);
  if (r->status == ARES_SUCCESS && r->abuf)
    n = push_answer(L, r->abuf, (size_t)r->alen, r->q->qtype);
  else
    n = push_status(L, r->status);
  lua_call(L, n, 0);
  return 0;
}

static void dns_query_close(smtpd_handle *h) {
  dns_query *q = SMTPD_OWNER(dns_query, h);
  smtpd_hook_unref(h->map->L, &q->cb_ref);
}

static void dns_query_free(smtpd_handle *h) {
  free(SMTPD_OWNER(dns_query, h));
}

static void dns_on_answer(void *arg, int status, int timeouts,
                          unsigned char *abuf, int alen) {
  dns_query *q = arg;
  lua_State *L = q->h.map->L;
  (void)timeouts;
  if (!q->h.closing && !q->h.map->dying && q->cb_ref != LUA_NOREF) {
    dns_result r;
    r.q = q;
    r.status = status;
    r.abuf = abuf;
    r.alen = alen;
    lua_pushcfunction(L, dns_lua_report);
    lua_pushlightuserdata(L, &r);
    smtpd_lua_calls++;
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      smtpd_log(q->h.map, "error in a dns callback: %s",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_pop(L, 1);
    }
  }
  smtpd_handle_close(&q->h);
  smtpd_handle_done(&q->h);     /* c-ares's hold: may free q */
}

/* dns_query(map, name, qtype, flags, cb) -> handle | nil, "badname" */
static int dns_query_(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *name = luaL_checkstring(L, 2);
  lua_Integer qtype = luaL_checkinteger(L, 3);
  lua_Integer flags = luaL_checkinteger(L, 4);
  unsigned char qbuf[512];
  char err[200];
  dns_res *r;
  dns_query *q;
  int qlen;
  luaL_checktype(L, 5, LUA_TFUNCTION);
  luaL_argcheck(L, qtype > 0 && qtype < 65536, 3, "qtype out of range");
  qlen = smtpd_dns_build(qbuf, sizeof qbuf, 0, name, (uint16_t)qtype,
                         (int)flags);
  if (qlen < 0) return push_error(L, "badname", 0, -1, -1, 0);
  r = dns_res_get(m, err, sizeof err);
  if (r == NULL) return luaL_error(L, "%s", err);
  luaL_checkstack(L, 4, NULL);
  q = calloc(1, sizeof *q);
  if (q == NULL) return luaL_error(L, "out of memory");
  smtpd_handle_init(&q->h, m, SMTPD_H_DNS, dns_query_close, dns_query_free);
  q->qtype = (uint16_t)qtype;
  lua_pushvalue(L, 5);
  q->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  smtpd_handle_push_box(L, &q->h, QUERY_MT, 0);
  q->h.pending++;               /* until c-ares calls back */
  /* May call back at once (no server, out of memory). */
  dns_enter(r);
  ares_send(r->ch, qbuf, qlen, dns_on_answer, q);
  dns_leave(r);
  return 1;
}

static int dns_query_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, QUERY_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

/* dns_configure(map, {servers = "ip[:port],...", timeout = ms, tries =}):
 * the map's next queries use these (its resolver is made again). */
static int dns_configure(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  dns_conf *c;
  const char *servers;
  lua_Integer timeout, tries;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "servers");
  servers = luaL_optstring(L, -1, "");
  lua_getfield(L, 2, "timeout");
  timeout = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 2, "tries");
  tries = luaL_optinteger(L, -1, 0);
  luaL_argcheck(L, strlen(servers) < sizeof c->servers, 2,
                "servers: too long");
  luaL_argcheck(L, timeout >= 0 && timeout <= 600000, 2,
                "timeout out of range");
  luaL_argcheck(L, tries >= 0 && tries <= 20, 2, "tries out of range");
  c = dns_conf_of(m, 1);
  if (c == NULL) return luaL_error(L, "out of memory");
  snprintf(c->servers, sizeof c->servers, "%s", servers);
  c->timeout_ms = (int)timeout;
  c->tries = (int)tries;
  if (c->res) smtpd_handle_close(&c->res->h);
  /* Made now, so that a bad server list is an error here. */
  {
    char err[200];
    if (dns_res_get(m, err, sizeof err) == NULL) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A map that is collected forgets its configuration. */
void smtpd_dns_map_gone(smtpd_map *m) {
  dns_conf **pc;
  for (pc = &confs; *pc; pc = &(*pc)->next) {
    if ((*pc)->map == m) {
      dns_conf *c = *pc;
      *pc = c->next;
      free(c);
      return;
    }
  }
}

static int dns_answer(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  lua_Integer qtype = luaL_checkinteger(L, 2);
  return push_answer(L, (const unsigned char *)p, len, (unsigned)qtype);
}

static int dns_reverse(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  const char *zone = luaL_optstring(L, 2, NULL);
  char out[SMTPD_DNS_NAME_MAX];
  if (smtpd_dns_reverse_name(ip, zone, out, sizeof out)) return 0;
  lua_pushstring(L, out);
  return 1;
}

/* build(name, qtype, flags) -> the query's bytes | nil (specs, fuzz
 * seeds). */
static int dns_build(lua_State *L) {
  unsigned char q[512];
  int n = smtpd_dns_build(q, sizeof q, (uint16_t)luaL_optinteger(L, 4, 0),
                          luaL_checkstring(L, 1),
                          (uint16_t)luaL_checkinteger(L, 2),
                          (int)luaL_optinteger(L, 3, 0));
  if (n < 0) return 0;
  lua_pushlstring(L, (const char *)q, (size_t)n);
  return 1;
}

void smtpd_open_dns(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"cancel", dns_query_cancel}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"dns_query", dns_query_}, {"dns_configure", dns_configure},
    {"dns_answer", dns_answer}, {"dns_reverse_name", dns_reverse},
    {"dns_build", dns_build}, {NULL, NULL}
  };
  smtpd_new_class(L, QUERY_MT, NULL, methods);
  luaL_setfuncs(L, funcs, 0);
}

/* ---- addresses for the C core (the relay client) ------------------------ */

typedef struct dns_ai {
  struct addrinfo ai;
  struct sockaddr_storage ss;
} dns_ai;

static struct addrinfo *dns_ai_new(int family, const void *addr, int port) {
  dns_ai *n = calloc(1, sizeof *n);
  if (n == NULL) return NULL;
  n->ai.ai_family = family;
  n->ai.ai_socktype = SOCK_STREAM;
  n->ai.ai_protocol = IPPROTO_TCP;
  n->ai.ai_addr = (struct sockaddr *)&n->ss;
  if (family == AF_INET) {
    struct sockaddr_in *s = (struct sockaddr_in *)&n->ss;
    s->sin_family = AF_INET;
    s->sin_port = htons((uint16_t)port);
    memcpy(&s->sin_addr, addr, 4);
    n->ai.ai_addrlen = sizeof *s;
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&n->ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons((uint16_t)port);
    memcpy(&s->sin6_addr, addr, 16);
    n->ai.ai_addrlen = sizeof *s;
  }
  return &n->ai;
}

void smtpd_dns_addrinfo_free(struct addrinfo *ai) {
  while (ai) {
    struct addrinfo *next = ai->ai_next;
    free(ai);
    ai = next;
  }
}

/* Appends src to *list's end. */
static void dns_ai_append(struct addrinfo **list, struct addrinfo *src) {
  while (*list) list = &(*list)->ai_next;
  *list = src;
}

typedef struct dns_sub {
  struct smtpd_dns_lookup *l;
  int family;
} dns_sub;

struct smtpd_dns_lookup {
  smtpd_dns_addr_cb cb;    /* NULL once cancelled */
  void *ctx;
  int refs;                /* the two queries, and the start's hold */
  int port;
  struct addrinfo *found[2];   /* IPv4, IPv6 */
  char why[2][64];
  char host[256];
  dns_sub sub[2];
};

static void lookup_release(smtpd_dns_lookup *l) {
  if (--l->refs > 0) return;
  smtpd_dns_addrinfo_free(l->found[0]);
  smtpd_dns_addrinfo_free(l->found[1]);
  free(l);
}

/* Both answers are in: the owner hears, once. */
static void lookup_deliver(smtpd_dns_lookup *l) {
  struct addrinfo *ai = NULL;
  smtpd_dns_addr_cb cb = l->cb;
  char why[400];
  if (cb == NULL) return;
  l->cb = NULL;
  dns_ai_append(&ai, l->found[0]);
  dns_ai_append(&ai, l->found[1]);
  l->found[0] = l->found[1] = NULL;
  if (ai) {
    cb(l->ctx, ai, NULL);
    return;
  }
  /* The IPv4 answer's failure says most (nodata for AAAA is common). */
  snprintf(why, sizeof why, "resolve %s: %s", l->host,
           l->why[0][0] ? l->why[0] : l->why[1][0] ? l->why[1] : "no address");
  cb(l->ctx, NULL, why);
}

static void lookup_on_answer(void *arg, int status, int timeouts,
                             unsigned char *abuf, int alen) {
  dns_sub *s = arg;
  smtpd_dns_lookup *l = s->l;
  int slot = s->family == AF_INET ? 0 : 1;
  (void)timeouts;
  if (status != ARES_SUCCESS || abuf == NULL) {
    snprintf(l->why[slot], sizeof l->why[slot], "%s",
             status == ARES_ETIMEOUT ? "timeout" :
             status == ARES_EDESTRUCTION ? "cancelled" : ares_strerror(status));
  } else {
    smtpd_dns_msg m;
    smtpd_dns_rr rr;
    unsigned want = slot ? SMTPD_DNS_AAAA : SMTPD_DNS_A;
    if (smtpd_dns_parse(&m, abuf, (size_t)alen)) {
      snprintf(l->why[slot], sizeof l->why[slot], "formerr");
    } else if (m.rcode) {
      static const char *const names[] = {"", "formerr", "servfail",
                                          "nxdomain", "notimp", "refused"};
      snprintf(l->why[slot], sizeof l->why[slot], "%s",
               m.rcode <= 5 ? names[m.rcode] : "error");
    } else {
      while (smtpd_dns_next(&m, &rr) == 1 && rr.section == SMTPD_DNS_ANSWER) {
        struct addrinfo *ai;
        if (rr.type != want || rr.rdlen != (slot ? 16 : 4)) continue;
        ai = dns_ai_new(s->family, m.p + rr.rdoff, l->port);
        if (ai) dns_ai_append(&l->found[slot], ai);
      }
      if (l->found[slot] == NULL)
        snprintf(l->why[slot], sizeof l->why[slot], "no address");
    }
  }
  s->l = NULL;
  if (l->sub[0].l == NULL && l->sub[1].l == NULL) lookup_deliver(l);
  lookup_release(l);
}

smtpd_dns_lookup *smtpd_dns_lookup_start(smtpd_map *m, const char *host,
                                         int port, smtpd_dns_addr_cb cb,
                                         void *ctx, char *err,
                                         size_t errlen) {
  smtpd_dns_lookup *l;
  unsigned char a[16];
  dns_res *r;
  int i;
  if (strlen(host) >= sizeof l->host) {
    snprintf(err, errlen, "resolve: the name is too long");
    return NULL;
  }
  r = dns_res_get(m, err, errlen);
  if (r == NULL) return NULL;
  l = calloc(1, sizeof *l);
  if (l == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  l->cb = cb;
  l->ctx = ctx;
  l->port = port;
  snprintf(l->host, sizeof l->host, "%s", host);
  l->refs = 1;                  /* the start's hold */
  /* An address, or a name in the hosts file: no query. */
  if (inet_pton(AF_INET, host, a) == 1) {
    l->found[0] = dns_ai_new(AF_INET, a, port);
  } else if (inet_pton(AF_INET6, host, a) == 1) {
    l->found[1] = dns_ai_new(AF_INET6, a, port);
  } else {
    for (i = 0; i < 2; i++) {
      struct hostent *he = NULL;
      int fam = i ? AF_INET6 : AF_INET;
      if (ares_gethostbyname_file(r->ch, host, fam, &he) == ARES_SUCCESS &&
          he) {
        char **p;
        for (p = he->h_addr_list; *p; p++) {
          struct addrinfo *ai = dns_ai_new(fam, *p, port);
          if (ai) dns_ai_append(&l->found[i], ai);
        }
        ares_free_hostent(he);
      }
    }
  }
  if (l->found[0] || l->found[1]) {
    lookup_deliver(l);
    lookup_release(l);
    return NULL;              /* done already */
  }
  for (i = 0; i < 2; i++) {
    unsigned char q[512];
    int qlen = smtpd_dns_build(q, sizeof q, 0, host,
                               i ? SMTPD_DNS_AAAA : SMTPD_DNS_A,
                               SMTPD_DNS_Q_EDNS);
    if (qlen < 0) {
      snprintf(l->why[0], sizeof l->why[0], "not a host name");
      break;
    }
    l->sub[i].l = l;
    l->sub[i].family = i ? AF_INET6 : AF_INET;
    l->refs++;
  }
  if (l->sub[0].l == NULL) {
    lookup_deliver(l);
    lookup_release(l);
    return NULL;
  }
  dns_enter(r);
  for (i = 0; i < 2; i++) {
    unsigned char q[512];
    int qlen = smtpd_dns_build(q, sizeof q, 0, host,
                               i ? SMTPD_DNS_AAAA : SMTPD_DNS_A,
                               SMTPD_DNS_Q_EDNS);
    ares_send(r->ch, q, qlen, lookup_on_answer, &l->sub[i]);
  }
  dns_leave(r);
  if (l->cb == NULL) {          /* answered while we sent */
    lookup_release(l);
    return NULL;
  }
  lookup_release(l);
  return l;
}

void smtpd_dns_lookup_cancel(smtpd_dns_lookup *l) {
  if (l) l->cb = NULL;
}
