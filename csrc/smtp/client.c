/*
 * The outgoing SMTP/LMTP client used by the relays: one transaction per
 * client, on a map's loop, with a timeout on every step.
 *
 *   core.client_send(map, {host=, port=, mailfrom=, rcpttos={...}, data=,
 *                          helo=, lmtp=false, timeout=60,
 *                          connect_timeout=30, mail_options={...}},
 *                    function(result) ... end) -> handle
 *
 * The callback gets one table: ok (the message was taken for at least one
 * recipient), refused (recipient -> {code, message}), code and message of
 * the last reply, and on failure stage, error and timeout.
 *
 * TLS and AUTH (the relay = {...} options, flattened by sendmail.lua):
 * starttls (0 no, 1 when offered, 2 required), implicit_tls, tls_verify,
 * tls_ca, tls_sni, tls_cert, tls_key, auth_user, auth_password,
 * auth_mechanism (PLAIN or LOGIN), auth_plaintext. Credentials are never
 * sent before TLS unless auth_plaintext says so. Replies the server sent
 * behind its 220 to STARTTLS are dropped, never read as replies to what
 * we send over TLS (the injection of CVE-2021-38371).
 *
 * The data is sent with every line ending made CRLF (a bare CR or LF never
 * reaches the upstream as such: that is how SMTP smuggling crosses relays)
 * and lines starting with "." doubled, as RFC 5321 4.5.2 asks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/glue.h"

#define CLIENT_MT "smtpd.client"


enum {
  ST_RESOLVE, ST_CONNECT, ST_GREETING, ST_EHLO, ST_HELO, ST_STARTTLS,
  ST_TLS, ST_AUTH, ST_AUTH_USER, ST_AUTH_PASS, ST_MAIL, ST_RCPT, ST_DATA,
  ST_BODY, ST_QUIT, ST_DONE
};

static const char *const client_stage[] = {
  "resolve", "connect", "greeting", "ehlo", "helo", "starttls", "tls",
  "auth", "auth", "auth", "mail", "rcpt", "data", "message", "quit", "done"
};

typedef struct client_rcpt {
  int code;               /* RCPT reply, then (LMTP) the data reply */
  char *msg;
  int accepted;
  int after_data;         /* refused by an LMTP reply after the data */
} client_rcpt;

typedef struct smtpd_client {
  smtpd_handle h;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  struct addrinfo *ai, *cur;  /* resolved addresses, the one being tried */
  int resolving;           /* uv_getaddrinfo in flight */
  int state;
  int lmtp;
  int tempfail_aborts;     /* a 4xx to any RCPT: no DATA, fail the lot */
  int cb_ref;              /* the Lua callback */
  int data_ref;            /* keeps the data string alive */
  int reported;
  uint64_t timeout_ms, connect_timeout_ms;
  char *host;
  int port;
  char *helo;
  char *mailfrom;
  smtpd_strlist rcpts;
  smtpd_strlist mail_options;
  client_rcpt *r;
  size_t rcpt_i;           /* next RCPT to send / next LMTP reply */
  size_t accepted;
  const char *data;
  size_t data_len;
  /* what the upstream offered */
  int esmtp, has_size, has_8bitmime, has_smtputf8, has_starttls;
  int has_dsn;
  smtpd_strlist dsn_mail;  /* RET=, ENVID= for MAIL when DSN is offered */
  smtpd_strlist dsn_notify; /* per recipient: NOTIFY's value, or "-" */
  smtpd_strlist dsn_orcpt;  /* per recipient: ORCPT's value, or "-" */
  int has_plain, has_login;
  /* TLS and AUTH */
  int starttls;            /* 0 no, 1 opportunistic, 2 required */
  int implicit;
  int auth_plaintext;
  int tls_tried;           /* STARTTLS was refused: go on in plaintext */
  int authed;
  smtpd_tls_client_spec tspec;   /* strings owned: tls_strs */
  char *tls_strs[4];
  char *auth_user, *auth_pass;
  int auth_login;          /* LOGIN rather than PLAIN */
  int auth_forced;         /* the mechanism was chosen by the caller */
  smtpd_tls *tls;
  smtpd_buf raw;           /* ciphertext read */
  smtpd_buf cout;          /* ciphertext to write */
  /* reply being read */
  smtpd_buf in;
  smtpd_buf reply;         /* text of the lines so far, joined by \n */
  int reply_lines;
  /* outcome */
  int code;
  int failed;
  int timed_out;
  char err[256];
} smtpd_client;

typedef struct client_write {
  uv_write_t req;
  char *buf;
} client_write;

static void client_fail(smtpd_client *c, int code, const char *fmt, ...);

/* ---- lifetime ---------------------------------------------------------- */

static void client_free(smtpd_handle *h) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, h);
  size_t i;
  for (i = 0; i < c->rcpts.n; i++) free(c->r[i].msg);
  free(c->r);
  smtpd_strlist_clear(&c->rcpts);
  smtpd_strlist_clear(&c->mail_options);
  smtpd_strlist_clear(&c->dsn_mail);
  smtpd_strlist_clear(&c->dsn_notify);
  smtpd_strlist_clear(&c->dsn_orcpt);
  smtpd_buf_free(&c->in);
  smtpd_buf_free(&c->reply);
  smtpd_buf_free(&c->raw);
  smtpd_buf_free(&c->cout);
  smtpd_tls_free(c->tls);
  for (i = 0; i < 4; i++) free(c->tls_strs[i]);
  if (c->auth_pass) {
    OPENSSL_cleanse(c->auth_pass, strlen(c->auth_pass));   /* wiped */
    free(c->auth_pass);
  }
  free(c->auth_user);
  free(c->host);
  free(c->helo);
  free(c->mailfrom);
  if (c->ai) uv_freeaddrinfo(c->ai);
  free(c);
}

/* Closed (done, failed, cancelled or by its map): nobody more to tell. */
static void client_close_handles(smtpd_handle *h) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, h);
  lua_State *L = h->map->L;
  c->reported = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, c->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->data_ref);
  c->cb_ref = c->data_ref = LUA_NOREF;
  c->data = NULL;
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai);
  smtpd_handle_uv_close(h, (uv_handle_t *)&c->timer);
  smtpd_handle_uv_close(h, (uv_handle_t *)&c->tcp);
}

static void client_close(smtpd_client *c) {
  smtpd_handle_close(&c->h);
}

/* ---- reporting --------------------------------------------------------- */

static void client_push_result(lua_State *L, smtpd_client *c) {
  size_t i;
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, !c->failed);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, c->code);
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, c->reply.p ? c->reply.p : "", c->reply.len);
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, (lua_Integer)c->accepted);
  lua_setfield(L, -2, "accepted");
  lua_newtable(L);
  for (i = 0; i < c->rcpts.n; i++) {
    const client_rcpt *r = &c->r[i];
    if (r->accepted && !c->failed) continue;
    lua_createtable(L, 3, 0);
    if (!r->accepted && r->code) {
      /* Refused on its own: at RCPT, or (LMTP) after the data. */
      lua_pushinteger(L, r->code);
      lua_rawseti(L, -2, 1);
      lua_pushstring(L, r->msg ? r->msg : "");
      lua_rawseti(L, -2, 2);
      lua_pushstring(L, r->after_data ? "message" : "rcpt");
    } else {
      /* The whole transaction failed: smtpd's -1 when there is no code. */
      lua_pushinteger(L, c->code ? c->code : -1);
      lua_rawseti(L, -2, 1);
      lua_pushstring(L, c->err);
      lua_rawseti(L, -2, 2);
      lua_pushstring(L, client_stage[c->state]);
    }
    lua_rawseti(L, -2, 3);
    lua_setfield(L, -2, c->rcpts.v[i].p);
  }
  lua_setfield(L, -2, "refused");
  if (c->failed) {
    lua_pushstring(L, client_stage[c->state]);
    lua_setfield(L, -2, "stage");
    lua_pushstring(L, c->err);
    lua_setfield(L, -2, "error");
    lua_pushboolean(L, c->timed_out);
    lua_setfield(L, -2, "timeout");
  }
}

static int client_lua_report(lua_State *L) {
  smtpd_client *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->cb_ref);
  client_push_result(L, c);
  smtpd_lua_calls++;
  lua_call(L, 1, 0);
  return 0;
}

/* Calls the Lua callback once, protected. */
static void client_report(smtpd_client *c) {
  lua_State *L = c->h.map->L;
  if (c->reported) return;
  c->reported = 1;
  if (c->cb_ref == LUA_NOREF) return;
  lua_pushcfunction(L, client_lua_report);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(c->h.map, "error in a relay callback: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static void client_fail(smtpd_client *c, int code, const char *fmt, ...) {
  va_list ap;
  if (c->h.closing) return;
  c->failed = 1;
  if (code) c->code = code;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  client_report(c);
  client_close(c);
}

/* ---- I/O --------------------------------------------------------------- */

static void client_on_timer(uv_timer_t *t) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, t->data);
  if (c->failed) {
    /* A failure found while starting, reported from the loop. */
    client_report(c);
    client_close(c);
    return;
  }
  c->timed_out = 1;
  client_fail(c, 0, "%s: timed out after %.1f s", client_stage[c->state],
              (double)(c->state <= ST_CONNECT ? c->connect_timeout_ms
                                              : c->timeout_ms) / 1000.0);
}

static void client_arm(smtpd_client *c) {
  uint64_t ms = c->state <= ST_CONNECT ? c->connect_timeout_ms
                                       : c->timeout_ms;
  uv_timer_start(&c->timer, client_on_timer, ms, 0);
}

static void client_on_write(uv_write_t *req, int status) {
  client_write *w = (client_write *)req;
  smtpd_client *c = SMTPD_OWNER(smtpd_client, req->handle->data);
  free(w->buf);
  free(w);
  if (status < 0 && !c->h.closing)
    client_fail(c, 0, "%s: write failed: %s", client_stage[c->state],
                uv_strerror(status));
}

/* Writes buf (taken over) to the socket: 0, or -1 and failed. */
static int client_write_raw(smtpd_client *c, char *buf, size_t len) {
  client_write *w = malloc(sizeof *w);
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  int err;
  if (w == NULL) {
    free(buf);
    client_fail(c, 0, "out of memory");
    return -1;
  }
  w->buf = buf;
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, client_on_write);
  if (err) {
    free(buf);
    free(w);
    client_fail(c, 0, "%s: write failed: %s", client_stage[c->state],
                uv_strerror(err));
    return -1;
  }
  return 0;
}

/* Writes what TLS queued (handshake records, encrypted commands). */
static int client_flush_tls(smtpd_client *c) {
  char *p = c->cout.p;
  size_t n = c->cout.len;
  if (n == 0) return 0;
  c->cout.p = NULL;
  c->cout.len = c->cout.cap = 0;
  return client_write_raw(c, p, n);
}

/* Sends buf (taken over) and waits for the reply with a fresh timeout. */
static void client_send_buf(smtpd_client *c, char *buf, size_t len) {
  client_write *w;
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  int err;
  if (c->tls) {
    int bad = smtpd_tls_write(c->tls, buf, len);
    OPENSSL_cleanse(buf, len);   /* it may hold credentials */
    free(buf);
    if (bad) {
      client_fail(c, 0, "%s: %s", client_stage[c->state],
                  smtpd_tls_error(c->tls));
      return;
    }
    if (client_flush_tls(c)) return;
    c->reply.len = 0;
    c->reply_lines = 0;
    client_arm(c);
    return;
  }
  w = malloc(sizeof *w);
  if (w == NULL) {
    free(buf);
    client_fail(c, 0, "out of memory");
    return;
  }
  w->buf = buf;
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, client_on_write);
  if (err) {
    free(buf);
    free(w);
    client_fail(c, 0, "%s: write failed: %s", client_stage[c->state],
                uv_strerror(err));
    return;
  }
  c->reply.len = 0;
  c->reply_lines = 0;
  client_arm(c);
}

static void client_sendf(smtpd_client *c, const char *fmt, ...) {
  va_list ap;
  int n;
  char tmp[1024], *buf;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  buf = n < 0 ? NULL : malloc((size_t)n + 1);
  if (buf == NULL) {
    client_fail(c, 0, "out of memory");
    return;
  }
  if ((size_t)n < sizeof tmp) {
    memcpy(buf, tmp, (size_t)n + 1);
  } else {
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  client_send_buf(c, buf, (size_t)n);
}

/* The message in wire form: CRLF line ends only, dots doubled, ended by
 * CRLF "." CRLF. */
static char *client_wire(const char *d, size_t n, size_t *outlen) {
  size_t i, k = 0, cap = n + n / 8 + 8;
  int bol = 1;
  char *o = malloc(cap);
  if (o == NULL) return NULL;
  for (i = 0; i < n; i++) {
    char ch = d[i];
    if (k + 5 > cap) {
      char *g;
      cap = cap * 2;
      g = realloc(o, cap);
      if (g == NULL) { free(o); return NULL; }
      o = g;
    }
    if (bol && ch == '.') o[k++] = '.';
    bol = 0;
    if (ch == '\r') {
      if (i + 1 < n && d[i + 1] == '\n') i++;
      o[k++] = '\r'; o[k++] = '\n';
      bol = 1;
    } else if (ch == '\n') {
      o[k++] = '\r'; o[k++] = '\n';
      bol = 1;
    } else {
      o[k++] = ch;
    }
  }
  if (k + 5 > cap) {
    char *g = realloc(o, k + 5);
    if (g == NULL) { free(o); return NULL; }
    o = g;
  }
  if (!bol) { o[k++] = '\r'; o[k++] = '\n'; }
  memcpy(o + k, ".\r\n", 3);
  *outlen = k + 3;
  return o;
}

static int has_8bit(const char *d, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)d[i] & 0x80) return 1;
  return 0;
}

static int kw_is(const char *line, size_t n, const char *kw) {
  size_t i, kl = strlen(kw);
  if (n < kl) return 0;
  for (i = 0; i < kl; i++) {
    char ch = line[i];
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 32);
    if (ch != kw[i]) return 0;
  }
  return n == kl || line[kl] == ' ' || line[kl] == '=';
}

/* Notes what an EHLO reply line offers. */
static void client_ehlo_line(smtpd_client *c, const char *t, size_t n) {
  if (kw_is(t, n, "SIZE")) c->has_size = 1;
  else if (kw_is(t, n, "8BITMIME")) c->has_8bitmime = 1;
  else if (kw_is(t, n, "SMTPUTF8")) c->has_smtputf8 = 1;
  else if (kw_is(t, n, "STARTTLS")) c->has_starttls = 1;
  else if (kw_is(t, n, "DSN")) c->has_dsn = 1;
  else if (kw_is(t, n, "AUTH")) {
    /* AUTH mech mech ... (or the old AUTH=mech form) */
    size_t i = 5;
    while (i < n) {
      size_t k = i;
      while (k < n && t[k] != ' ') k++;
      if (kw_is(t + i, k - i, "PLAIN")) c->has_plain = 1;
      if (kw_is(t + i, k - i, "LOGIN")) c->has_login = 1;
      i = k + 1;
    }
  }
}

static void client_send_mail(smtpd_client *c);
static void client_parse(smtpd_client *c);

static void client_send_b64(smtpd_client *c, const char *pre,
                            const char *p, size_t n) {
  size_t lp = strlen(pre), cap = lp + (n + 2) / 3 * 4 + 3;
  char *buf = malloc(cap);
  if (buf == NULL) {
    client_fail(c, 0, "out of memory");
    return;
  }
  memcpy(buf, pre, lp);
  lp += smtpd_b64_encode((const unsigned char *)p, n, buf + lp);
  memcpy(buf + lp, "\r\n", 3);
  client_send_buf(c, buf, lp + 2);
}

/* AUTH PLAIN with the initial response, or AUTH LOGIN. */
static void client_auth(smtpd_client *c) {
  size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
  char *msg;
  c->state = ST_AUTH;
  if (c->auth_login) {
    client_sendf(c, "AUTH LOGIN\r\n");
    return;
  }
  msg = malloc(ul + pl + 2);
  if (msg == NULL) {
    client_fail(c, 0, "out of memory");
    return;
  }
  msg[0] = '\0';
  memcpy(msg + 1, c->auth_user, ul);
  msg[ul + 1] = '\0';
  memcpy(msg + ul + 2, c->auth_pass, pl);
  client_send_b64(c, "AUTH PLAIN ", msg, ul + pl + 2);
  OPENSSL_cleanse(msg, ul + pl + 2);
  free(msg);
}

/* After the EHLO (or HELO) reply: STARTTLS, AUTH, then MAIL. */
static void client_after_hello(smtpd_client *c) {
  int tls_on = c->tls != NULL;
  if (!tls_on && c->starttls && !c->tls_tried) {
    if (c->has_starttls) {
      c->state = ST_STARTTLS;
      client_sendf(c, "STARTTLS\r\n");
      return;
    }
    if (c->starttls == 2) {
      c->state = ST_STARTTLS;
      client_fail(c, 0, "starttls: the server does not offer STARTTLS "
                  "(relay.starttls = \"require\")");
      return;
    }
  }
  if (c->auth_user && !c->authed) {
    if (!tls_on && !c->auth_plaintext) {
      c->state = ST_AUTH;
      client_fail(c, 0, "auth: no TLS, so no credentials sent (set "
                  "relay.auth.plaintext = true to send them anyway)");
      return;
    }
    if (!c->auth_forced) c->auth_login = !c->has_plain && c->has_login;
    if (!(c->auth_login ? c->has_login : c->has_plain)) {
      c->state = ST_AUTH;
      client_fail(c, 0, "auth: the server offers no AUTH %s",
                  c->auth_forced ? (c->auth_login ? "LOGIN" : "PLAIN")
                                 : "PLAIN or LOGIN");
      return;
    }
    client_auth(c);
    return;
  }
  client_send_mail(c);
}

/* The server said 220 to STARTTLS: whatever else it sent is dropped, and
 * the handshake starts. */
static void client_start_tls(smtpd_client *c) {
  char err[200];
  c->in.len = 0;
  smtpd_tls_env *env = smtpd_map_tls(c->h.map);
  snprintf(err, sizeof err, "out of memory");
  c->tls = env ? smtpd_tls_client(env, &c->tspec, &c->cout, err, sizeof err)
               : NULL;
  c->state = ST_TLS;
  if (c->tls == NULL) {
    client_fail(c, 0, "tls: %s", err);
    return;
  }
  if (smtpd_tls_start(c->tls) != SMTPD_TLS_OK) {
    client_fail(c, 0, "tls: %s", smtpd_tls_error(c->tls));
    return;
  }
  if (client_flush_tls(c)) return;
  client_arm(c);
}

static void client_send_rcpt(smtpd_client *c) {
  const char *notify = "-", *orcpt = "-";
  /* DSN's NOTIFY/ORCPT go on only to an upstream that offers DSN. */
  if (c->esmtp && c->has_dsn && c->rcpt_i < c->dsn_notify.n &&
      c->rcpt_i < c->dsn_orcpt.n) {
    notify = c->dsn_notify.v[c->rcpt_i].p;
    orcpt = c->dsn_orcpt.v[c->rcpt_i].p;
  }
  client_sendf(c, "RCPT TO:<%s>%s%s%s%s\r\n", c->rcpts.v[c->rcpt_i].p,
               strcmp(notify, "-") ? " NOTIFY=" : "",
               strcmp(notify, "-") ? notify : "",
               strcmp(orcpt, "-") ? " ORCPT=" : "",
               strcmp(orcpt, "-") ? orcpt : "");
}

static void client_send_mail(smtpd_client *c) {
  smtpd_buf b = {NULL, 0, 0};
  size_t i;
  char tmp[64];
  c->state = ST_MAIL;
  smtpd_buf_append(&b, "MAIL FROM:<", 11);
  if (strcmp(c->mailfrom, "<>") != 0)
    smtpd_buf_append(&b, c->mailfrom, strlen(c->mailfrom));
  smtpd_buf_append(&b, ">", 1);
  if (c->esmtp && c->has_size) {
    snprintf(tmp, sizeof tmp, " SIZE=%zu", c->data_len);
    smtpd_buf_append(&b, tmp, strlen(tmp));
  }
  if (c->esmtp && c->has_8bitmime && has_8bit(c->data, c->data_len))
    smtpd_buf_append(&b, " BODY=8BITMIME", 14);
  for (i = 0; c->esmtp && i < c->mail_options.n; i++) {
    smtpd_buf_append(&b, " ", 1);
    smtpd_buf_append(&b, c->mail_options.v[i].p, c->mail_options.v[i].len);
  }
  for (i = 0; c->esmtp && c->has_dsn && i < c->dsn_mail.n; i++) {
    smtpd_buf_append(&b, " ", 1);
    smtpd_buf_append(&b, c->dsn_mail.v[i].p, c->dsn_mail.v[i].len);
  }
  if (smtpd_buf_append(&b, "\r\n", 2)) {
    smtpd_buf_free(&b);
    client_fail(c, 0, "out of memory");
    return;
  }
  client_send_buf(c, b.p, b.len);
}

static void client_send_body(smtpd_client *c) {
  size_t n;
  char *wire = client_wire(c->data, c->data_len, &n);
  if (wire == NULL) {
    client_fail(c, 0, "out of memory");
    return;
  }
  c->state = ST_BODY;
  c->rcpt_i = 0;
  client_send_buf(c, wire, n);
}

static void client_quit(smtpd_client *c) {
  c->state = ST_QUIT;
  client_sendf(c, "QUIT\r\n");
}

static void client_success(smtpd_client *c) {
  client_report(c);
  if (!c->h.closing) client_quit(c);
}

/* The first recipient refused with a 4xx, or NULL. */
static const client_rcpt *client_tempfail(const smtpd_client *c) {
  size_t i;
  for (i = 0; i < c->rcpts.n; i++)
    if (c->r[i].code >= 400 && c->r[i].code < 500) return &c->r[i];
  return NULL;
}

/* A whole reply arrived: code and the text of its lines. */
static void client_on_reply(smtpd_client *c, int code) {
  const char *txt = c->reply.p ? c->reply.p : "";
  uv_timer_stop(&c->timer);
  c->code = code;
  switch (c->state) {
  case ST_GREETING:
    if (code != 220) {
      client_fail(c, code, "greeting: %d %s", code, txt);
      return;
    }
    c->state = ST_EHLO;
    client_sendf(c, "%s %s\r\n", c->lmtp ? "LHLO" : "EHLO", c->helo);
    return;
  case ST_EHLO:
    if (code == 250) {
      c->esmtp = 1;
      client_after_hello(c);
    } else if (!c->lmtp && code >= 500) {
      c->state = ST_HELO;
      client_sendf(c, "HELO %s\r\n", c->helo);
    } else {
      client_fail(c, code, "%s: %d %s", c->lmtp ? "LHLO" : "EHLO", code, txt);
    }
    return;
  case ST_HELO:
    if (code != 250) {
      client_fail(c, code, "HELO: %d %s", code, txt);
      return;
    }
    client_after_hello(c);
    return;
  case ST_STARTTLS:
    if (code == 220) {
      client_start_tls(c);
    } else if (c->starttls == 2) {
      client_fail(c, code, "starttls: %d %s", code, txt);
    } else {
      c->tls_tried = 1;
      client_after_hello(c);
    }
    return;
  case ST_AUTH:
    if (code == 334 && c->auth_login) {
      c->state = ST_AUTH_USER;
      client_send_b64(c, "", c->auth_user, strlen(c->auth_user));
      return;
    }
    /* fall through */
  case ST_AUTH_PASS:
    if (code != 235) {
      client_fail(c, code, "auth: %d %s", code, txt);
      return;
    }
    c->authed = 1;
    client_send_mail(c);
    return;
  case ST_AUTH_USER:
    if (code != 334) {
      client_fail(c, code, "auth: %d %s", code, txt);
      return;
    }
    c->state = ST_AUTH_PASS;
    client_send_b64(c, "", c->auth_pass, strlen(c->auth_pass));
    return;
  case ST_MAIL:
    if (code != 250) {
      client_fail(c, code, "MAIL: %d %s", code, txt);
      return;
    }
    c->state = ST_RCPT;
    c->rcpt_i = 0;
    client_send_rcpt(c);
    return;
  case ST_RCPT: {
    client_rcpt *r = &c->r[c->rcpt_i];
    r->code = code;
    if (code == 250 || code == 251) {
      r->accepted = 1;
      c->accepted++;
    } else {
      r->msg = strdup(txt);
    }
    if (++c->rcpt_i < c->rcpts.n) {
      client_send_rcpt(c);
    } else if (c->tempfail_aborts && client_tempfail(c)) {
      /* Which addresses the server takes is not known: send nothing. */
      const client_rcpt *t = client_tempfail(c);
      c->state = ST_RCPT;
      c->accepted = 0;
      client_fail(c, t->code, "RCPT: %d %s (<%s>)", t->code,
                  t->msg ? t->msg : "", c->rcpts.v[t - c->r].p);
    } else if (c->accepted == 0) {
      /* Every recipient refused: the transaction is over. */
      c->state = ST_RCPT;
      client_fail(c, code, "RCPT: every recipient was refused");
    } else {
      c->state = ST_DATA;
      client_sendf(c, "DATA\r\n");
    }
    return;
  }
  case ST_DATA:
    if (code != 354) {
      client_fail(c, code, "DATA: %d %s", code, txt);
      return;
    }
    client_send_body(c);
    return;
  case ST_BODY:
    if (!c->lmtp) {
      if (code != 250) {
        client_fail(c, code, "message: %d %s", code, txt);
        return;
      }
      client_success(c);
      return;
    }
    /* LMTP: one reply per accepted recipient, in RCPT order. */
    while (c->rcpt_i < c->rcpts.n && !c->r[c->rcpt_i].accepted) c->rcpt_i++;
    if (c->rcpt_i < c->rcpts.n) {
      client_rcpt *r = &c->r[c->rcpt_i++];
      r->code = code;
      if (code != 250) {
        r->accepted = 0;
        r->after_data = 1;
        c->accepted--;
        free(r->msg);
        r->msg = strdup(txt);
      }
    }
    while (c->rcpt_i < c->rcpts.n && !c->r[c->rcpt_i].accepted) c->rcpt_i++;
    if (c->rcpt_i < c->rcpts.n) {
      client_arm(c);        /* more replies to come */
      c->reply.len = 0;
      c->reply_lines = 0;
      return;
    }
    if (c->accepted == 0) {
      client_fail(c, code, "message: every recipient was refused");
      return;
    }
    client_success(c);
    return;
  case ST_QUIT:
    client_close(c);
    return;
  default:
    return;
  }
}

/* Reads reply lines: "ddd-text" continues, "ddd text" or "ddd" ends. */
static void client_parse(smtpd_client *c) {
  for (;;) {
    char *lf = c->in.p ? memchr(c->in.p, '\n', c->in.len) : NULL;
    size_t n;
    int code, more = 0;
    if (lf == NULL) {
      if (c->in.len > 4096) client_fail(c, 0, "%s: reply line too long",
                                        client_stage[c->state]);
      return;
    }
    n = (size_t)(lf - c->in.p);
    if (n && c->in.p[n - 1] == '\r') n--;
    code = smtpd_reply_code(c->in.p, n, &more);
    if (code < 0) {
      client_fail(c, 0, "%s: malformed reply from the server",
                  client_stage[c->state]);
      return;
    }
    if (c->reply_lines++) smtpd_buf_append(&c->reply, "\n", 1);
    if (n > 4) smtpd_buf_append(&c->reply, c->in.p + 4, n - 4);
    /* After EHLO's first line (the server's name) come the extensions. */
    if (c->state == ST_EHLO && c->reply_lines > 1 && n > 4)
      client_ehlo_line(c, c->in.p + 4, n - 4);
    smtpd_buf_consume(&c->in, (size_t)(lf - c->in.p) + 1);
    if (!more) {
      client_on_reply(c, code);
      if (c->h.closing) return;
    }
  }
}

static void client_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, u->data);
  smtpd_buf *b = c->tls ? &c->raw : &c->in;
  size_t want = c->tls ? 17 * 1024 : 4096;
  (void)size;
  if (smtpd_buf_reserve(b, want)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(b->p + b->len, (unsigned)want);
}

/* The handshake just finished: implicit TLS now waits for the greeting;
 * after STARTTLS, what the server offered is forgotten and EHLO goes
 * again. */
static void client_tls_up(smtpd_client *c) {
  uv_timer_stop(&c->timer);
  if (c->implicit && !c->esmtp) {
    c->state = ST_GREETING;
    client_arm(c);
    return;
  }
  c->has_size = c->has_8bitmime = c->has_smtputf8 = 0;
  c->has_starttls = c->has_plain = c->has_login = 0;
  c->state = ST_EHLO;
  client_sendf(c, "%s %s\r\n", c->lmtp ? "LHLO" : "EHLO", c->helo);
}

static int client_plain(void *ctx, const char *p, size_t n) {
  smtpd_client *c = ctx;
  /* Plaintext in the same read as the end of the handshake. */
  if (c->state == ST_TLS) client_tls_up(c);
  if (c->h.closing || smtpd_buf_append(&c->in, p, n)) return 1;
  client_parse(c);
  return c->h.closing;
}

/* Ciphertext from the server: the handshake, then replies. */
static void client_tls_read(smtpd_client *c, size_t n) {
  int was = smtpd_tls_ready(c->tls), r;
  c->raw.len += n;
  r = smtpd_tls_input(c->tls, c->raw.p, c->raw.len, client_plain, c);
  c->raw.len = 0;
  if (c->h.closing) return;
  if (r != SMTPD_TLS_OK) {
    if (c->state == ST_QUIT) {
      client_close(c);
      return;
    }
    client_fail(c, 0, "%s: %s", was ? client_stage[c->state] : "tls",
                r == SMTPD_TLS_CLOSED ? "the server ended TLS"
                                      : smtpd_tls_error(c->tls));
    return;
  }
  if (client_flush_tls(c)) return;
  if (!was && smtpd_tls_ready(c->tls) && c->state == ST_TLS)
    client_tls_up(c);
}

static void client_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, st->data);
  (void)buf;
  if (c->h.closing) return;
  if (n > 0 && c->tls) {
    client_tls_read(c, (size_t)n);
    return;
  }
  if (n < 0) {
    if (c->state == ST_QUIT) {
      client_close(c);
      return;
    }
    client_fail(c, 0, "%s: connection %s", client_stage[c->state],
                n == UV_EOF ? "closed by the server" : uv_strerror((int)n));
    return;
  }
  c->in.len += (size_t)n;
  client_parse(c);
}

static void client_try_connect(smtpd_client *c);

/* The handle of a failed attempt is closed; try the next address. */
static void client_on_retry_close(uv_handle_t *u) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, u->data);
  if (c->h.closing) {
    smtpd_handle_done(&c->h);   /* may free c */
    return;
  }
  smtpd_handle_done(&c->h);
  client_try_connect(c);
}

static void client_on_connect(uv_connect_t *req, int status) {
  smtpd_client *c = req->data;
  if (c->h.closing) return;
  if (status < 0) {
    if (c->cur->ai_next) {
      c->cur = c->cur->ai_next;
      uv_close((uv_handle_t *)&c->tcp, client_on_retry_close);
      return;
    }
    client_fail(c, 0, "connect to %s:%d: %s", c->host, c->port,
                uv_strerror(status));
    return;
  }
  c->state = ST_GREETING;
  uv_read_start((uv_stream_t *)&c->tcp, client_on_alloc, client_on_read);
  if (c->implicit) {
    client_start_tls(c);
    return;
  }
  client_arm(c);
}

static void client_try_connect(smtpd_client *c) {
  int err;
  c->state = ST_CONNECT;
  uv_tcp_init(&c->h.map->loop, &c->tcp);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->tcp);
  uv_tcp_nodelay(&c->tcp, 1);
  c->creq.data = c;
  err = uv_tcp_connect(&c->creq, &c->tcp, c->cur->ai_addr, client_on_connect);
  if (err) {
    client_fail(c, 0, "connect to %s:%d: %s", c->host, c->port,
                uv_strerror(err));
    return;
  }
  client_arm(c);
}

static void client_on_resolve(uv_getaddrinfo_t *req, int status,
                              struct addrinfo *res) {
  smtpd_client *c = req->data;
  c->resolving = 0;
  if (c->h.closing) {
    if (res) uv_freeaddrinfo(res);
    smtpd_handle_done(&c->h);   /* may free c */
    return;
  }
  smtpd_handle_done(&c->h);
  if (status < 0) {
    client_fail(c, 0, "resolve %s: %s", c->host, uv_strerror(status));
    return;
  }
  c->ai = c->cur = res;
  client_try_connect(c);
}

/* ---- Lua API ------------------------------------------------------------ */

static int sendable(const char *s, size_t n) {
  return n > 0 && strcspn(s, "\r\n<> \t") == n;
}

/* Checks the list at key of table t (a table, or a list-like value with
 * __len and __index such as a channel's rcpttos) and returns its length.
 * Allocates nothing, so it may raise. */
static size_t client_check_list(lua_State *L, int t, const char *key) {
  lua_Integer i, n;
  int tt = lua_getfield(L, t, key);
  if (tt == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (tt != LUA_TTABLE && !luaL_getmetafield(L, -1, "__len"))
    luaL_error(L, "%s must be a list of strings", key);
  else if (tt != LUA_TTABLE)
    lua_pop(L, 1);
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_geti(L, -1, i);
    s = lua_tolstring(L, -1, &len);
    if (s == NULL) luaL_error(L, "%s must hold strings", key);
    if (!sendable(s, len))
      luaL_error(L, "%s: %q is not an address we can send", key, s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return (size_t)n;
}

/* Copies a list client_check_list accepted; -1 when out of memory. */
static int client_copy_list(lua_State *L, int t, const char *key,
                            smtpd_strlist *l) {
  lua_Integer i, n;
  int err = 0;
  if (lua_getfield(L, t, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  n = luaL_len(L, -1);
  for (i = 1; i <= n && !err; i++) {
    size_t len;
    const char *s;
    lua_geti(L, -1, i);
    s = lua_tolstring(L, -1, &len);
    err = s == NULL || smtpd_strlist_push(l, s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return err ? -1 : 0;
}

static const char *client_string(lua_State *L, int t, const char *key,
                                 const char *def, size_t *len) {
  const char *s;
  int tt = lua_getfield(L, t, key);
  if (tt != LUA_TNIL && tt != LUA_TSTRING)
    luaL_error(L, "%s must be a string", key);
  s = tt == LUA_TNIL ? def : lua_tolstring(L, -1, len);
  if (tt == LUA_TNIL && len) *len = def ? strlen(def) : 0;
  lua_pop(L, 1);   /* the string stays alive in the table */
  return s;
}

/* client_send(map, spec, callback) -> handle. Everything is checked
 * before anything is allocated: an error raised here leaks nothing. */
static int client_send(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  smtpd_relay_conf conf;
  smtpd_client *c;
  struct addrinfo hints;
  char portstr[16];
  const char *host, *mailfrom, *helo, *data;
  const char *tstr[4], *auth_user, *auth_pass, *auth_mech;
  int starttls, i;
  size_t mflen, datalen, nrcpts;
  lua_Integer port;
  int err;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  smtpd_opts_read(L, 2, smtpd_relay_opts, &conf);
  host = client_string(L, 2, "host", "localhost", NULL);
  lua_getfield(L, 2, "port");
  port = luaL_optinteger(L, -1, 25);
  lua_pop(L, 1);
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port out of range");
  mailfrom = client_string(L, 2, "mailfrom", "<>", &mflen);
  if (strcmp(mailfrom, "<>") != 0 && !sendable(mailfrom, mflen))
    return luaL_error(L, "mailfrom %s is not an address we can send",
                      mailfrom);
  helo = conf.helo ? conf.helo : smtpd_fqdn();
  if (!helo[0] || strcspn(helo, "\r\n \t") != strlen(helo))
    return luaL_error(L, "helo must be one word");
  nrcpts = client_check_list(L, 2, "rcpttos");
  if (nrcpts == 0)
    return luaL_error(L, "rcpttos must hold at least one recipient");
  client_check_list(L, 2, "mail_options");
  client_check_list(L, 2, "dsn_mail");
  client_check_list(L, 2, "dsn_notify");
  client_check_list(L, 2, "dsn_orcpt");
  data = client_string(L, 2, "data", NULL, &datalen);
  if (data == NULL) return luaL_error(L, "data must be a string");
  lua_getfield(L, 2, "starttls");
  starttls = (int)luaL_optinteger(L, -1, 0);
  lua_pop(L, 1);
  luaL_argcheck(L, starttls >= 0 && starttls <= 2, 2, "starttls is 0..2");
  tstr[0] = client_string(L, 2, "tls_ca", NULL, NULL);
  tstr[1] = client_string(L, 2, "tls_sni", NULL, NULL);
  tstr[2] = client_string(L, 2, "tls_cert", NULL, NULL);
  tstr[3] = client_string(L, 2, "tls_key", NULL, NULL);
  auth_user = client_string(L, 2, "auth_user", NULL, NULL);
  auth_pass = client_string(L, 2, "auth_password", NULL, NULL);
  auth_mech = client_string(L, 2, "auth_mechanism", NULL, NULL);
  if (auth_user && (!auth_pass || strpbrk(auth_user, "\r\n") ||
                    strpbrk(auth_pass, "\r\n")))
    return luaL_error(L, "auth needs user and password, with no CR or LF");
  if (auth_mech && strcmp(auth_mech, "PLAIN") != 0 &&
      strcmp(auth_mech, "LOGIN") != 0)
    return luaL_error(L, "auth.mechanism must be PLAIN or LOGIN");

  c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "out of memory");
  smtpd_handle_init(&c->h, m, SMTPD_H_CLIENT, client_close_handles,
                    client_free);
  c->cb_ref = c->data_ref = LUA_NOREF;
  uv_timer_init(&m->loop, &c->timer);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->timer);
  c->port = (int)port;
  c->lmtp = conf.lmtp;
  c->tempfail_aborts = conf.tempfail_aborts;
  c->timeout_ms = conf.timeout_ms;
  c->connect_timeout_ms = conf.connect_timeout_ms;
  c->host = strdup(host);
  c->helo = strdup(helo);
  c->mailfrom = strdup(mailfrom);
  c->r = calloc(nrcpts, sizeof *c->r);
  c->starttls = starttls;
  lua_getfield(L, 2, "implicit_tls");
  c->implicit = lua_toboolean(L, -1);
  lua_getfield(L, 2, "tls_verify");
  c->tspec.verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_getfield(L, 2, "auth_plaintext");
  c->auth_plaintext = lua_toboolean(L, -1);
  lua_pop(L, 3);
  for (i = 0; i < 4; i++)
    if (tstr[i] && (c->tls_strs[i] = strdup(tstr[i])) == NULL) c->failed = 1;
  c->tspec.ca = c->tls_strs[0];
  c->tspec.sni = c->tls_strs[1] ? c->tls_strs[1] : c->host;
  c->tspec.cert = c->tls_strs[2];
  c->tspec.key = c->tls_strs[3];
  if (auth_user) {
    c->auth_user = strdup(auth_user);
    c->auth_pass = strdup(auth_pass);
    if (!c->auth_user || !c->auth_pass) c->failed = 1;
    c->auth_forced = auth_mech != NULL;
    c->auth_login = auth_mech && strcmp(auth_mech, "LOGIN") == 0;
  }
  if (c->failed || !c->host || !c->helo || !c->mailfrom || !c->r ||
      client_copy_list(L, 2, "rcpttos", &c->rcpts) ||
      client_copy_list(L, 2, "mail_options", &c->mail_options) ||
      client_copy_list(L, 2, "dsn_mail", &c->dsn_mail) ||
      client_copy_list(L, 2, "dsn_notify", &c->dsn_notify) ||
      client_copy_list(L, 2, "dsn_orcpt", &c->dsn_orcpt)) {
    client_close(c);
    return luaL_error(L, "out of memory");
  }
  lua_getfield(L, 2, "data");
  c->data = lua_tolstring(L, -1, &c->data_len);
  c->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  c->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(portstr, sizeof portstr, "%d", c->port);
  c->gai.data = c;
  c->state = ST_RESOLVE;
  smtpd_handle_push_box(L, &c->h, CLIENT_MT, 0);
  c->resolving = 1;
  c->h.pending++;
  err = uv_getaddrinfo(&m->loop, &c->gai, client_on_resolve, c->host,
                       portstr, &hints);
  if (err) {
    /* Report on the next loop turn, never from inside this call. */
    c->resolving = 0;
    c->h.pending--;
    c->failed = 1;
    snprintf(c->err, sizeof c->err, "resolve %s: %s", c->host,
             uv_strerror(err));
    smtpd_timer_start(&c->timer, client_on_timer, 0);
  } else {
    smtpd_timer_start(&c->timer, client_on_timer, c->connect_timeout_ms);
  }
  return 1;
}

/* handle:cancel(): gives up; the callback is not called. */
static int client_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, CLIENT_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

static int client_active(lua_State *L) {
  lua_pushboolean(L, smtpd_handle_get(L, 1, CLIENT_MT) != NULL);
  return 1;
}

void smtpd_open_client(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"cancel", client_cancel}, {"active", client_active}, {NULL, NULL}
  };
  smtpd_new_class(L, CLIENT_MT, NULL, methods);
  lua_pushcfunction(L, client_send);
  lua_setfield(L, -2, "client_send");
}
