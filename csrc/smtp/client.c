/*
 * The outgoing SMTP/LMTP client of the relays: one connection to an
 * upstream (TCP, or unix:/path) on a map's loop, speaking through the
 * pure machine of relay.c, with a timeout on every step, implicit TLS or
 * STARTTLS, and AUTH.
 *
 *   core.relay_conf(map, host, port, opts) -> conf   the relay options,
 *       read once (with the TLS contexts loaded now); conf:options()
 *   core.client_send(map, conf, envelope, callback) -> handle
 *       one message, the outcome as one table (smtpd.sendmail, and
 *       PureProxy's message mode): handle:cancel(), handle:active()
 *
 * The RCPT-time relays (upstream.c) use the same client command by
 * command, through smtpd_client_open and its owner's callbacks.
 *
 * Nothing blocks the loop: the upstream's name, the host's FQDN (the
 * default HELO) and a password file are had on libuv's thread pool;
 * CA bundles and client certificates are loaded when the options are
 * read. Replies sent behind the 220 to STARTTLS fail the connection,
 * never read as replies to what we send over TLS (CVE-2021-38371).
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <openssl/crypto.h>

#include "core/glue.h"

#define CLIENT_MT "smtpd.client"
#define RELAYCONF_MT "smtpd.relayconf"

/* Back-pressure for the owner: past this many bytes not yet written to
 * the upstream, it should stop feeding the body until drained. */
#define CLIENT_HIGH (256 * 1024)

/* ---- the relay options, read once --------------------------------------- */

struct smtpd_relayconf {
  int refs;
  char *host;              /* NULL for a unix socket */
  int port;
  char *path;              /* unix:/path */
  smtpd_relay_opts o;      /* its strings point into strs */
  char *strs[10];
  smtpd_tls_client_spec tspec;
  int tls;                 /* TLS may be used (a context was loaded) */
};

static char *conf_keep(smtpd_relayconf *c, int i, const char *s,
                       int *failed) {
  if (s == NULL) return NULL;
  c->strs[i] = strdup(s);
  if (c->strs[i] == NULL) *failed = 1;
  return c->strs[i];
}

void smtpd_relayconf_ref(smtpd_relayconf *c) {
  c->refs++;
}

void smtpd_relayconf_unref(smtpd_relayconf *c) {
  size_t i;
  if (c == NULL || --c->refs > 0) return;
  for (i = 0; i < sizeof c->strs / sizeof c->strs[0]; i++) {
    if (c->strs[i]) {
      OPENSSL_cleanse(c->strs[i], strlen(c->strs[i]));   /* a password */
      free(c->strs[i]);
    }
  }
  free(c->host);
  free(c->path);
  free(c);
}

const smtpd_relay_opts *smtpd_relayconf_opts(const smtpd_relayconf *c) {
  return &c->o;
}

static smtpd_relayconf *conf_check(lua_State *L, int idx) {
  smtpd_relayconf **pc = luaL_checkudata(L, idx, RELAYCONF_MT);
  if (*pc == NULL) luaL_argerror(L, idx, "relay conf is gone");
  return *pc;
}

smtpd_relayconf *smtpd_relayconf_check(lua_State *L, int idx) {
  return conf_check(L, idx);
}

static int conf_gc(lua_State *L) {
  smtpd_relayconf **pc = luaL_checkudata(L, 1, RELAYCONF_MT);
  smtpd_relayconf_unref(*pc);
  *pc = NULL;
  return 0;
}

/* relay_conf(map, host, port, opts) -> conf | nil, err, name: host
 * "unix:/path" (port 0) for a unix socket. Bad options raise; a CA file
 * or client certificate that cannot be loaded is nil, "EINVAL: tls:
 * ...", "EINVAL". */
static int conf_new(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  smtpd_relay_opts o;
  smtpd_relayconf *c, **pc;
  smtpd_relay_auth_opts *a = &o.auth;
  int failed = 0, unix_sock = strncmp(host, "unix:", 5) == 0;
  char err[300];
  luaL_checktype(L, 4, LUA_TTABLE);
  memset(&o, 0, sizeof o);
  smtpd_opts_read(L, 4, smtpd_relay_optdefs, &o);
  if (unix_sock) {
    struct sockaddr_un un;
    if (host[5] == '\0' || strlen(host + 5) >= sizeof un.sun_path)
      return luaL_error(L, "a unix socket needs a path of at most %d bytes",
                        (int)sizeof un.sun_path - 1);
  } else {
    luaL_argcheck(L, port > 0 && port <= 65535, 3, "port out of range");
    luaL_argcheck(L, host[0] && strcspn(host, " \t\r\n") == strlen(host), 2,
                  "a host name or address");
  }
  if (o.implicit_tls && o.starttls)
    return luaL_error(L, "implicit_tls and starttls exclude each other");
  if (a->t.given) {
    int n = (a->password != NULL) + (a->password_env != NULL) +
            (a->password_file != NULL);
    if (a->user == NULL)
      return luaL_error(L, "auth.user must be a non-empty string");
    if (n != 1)
      return luaL_error(L, "auth needs one of password, password_env, "
                        "password_file");
  }
  pc = lua_newuserdatauv(L, sizeof *pc, 0);
  *pc = NULL;
  luaL_setmetatable(L, RELAYCONF_MT);
  c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "out of memory");
  c->refs = 1;
  *pc = c;
  c->o = o;
  c->port = (int)port;
  if (unix_sock) c->path = strdup(host + 5);
  else c->host = strdup(host);
  if ((unix_sock ? c->path : c->host) == NULL) failed = 1;
  c->o.helo = conf_keep(c, 0, o.helo, &failed);
  c->o.tls.ca = conf_keep(c, 1, o.tls.ca, &failed);
  c->o.tls.sni = conf_keep(c, 2, o.tls.sni, &failed);
  c->o.tls.cert = conf_keep(c, 3, o.tls.cert, &failed);
  c->o.tls.key = conf_keep(c, 4, o.tls.key, &failed);
  c->o.auth.user = conf_keep(c, 5, a->user, &failed);
  c->o.auth.password = conf_keep(c, 6, a->password, &failed);
  c->o.auth.password_env = conf_keep(c, 7, a->password_env, &failed);
  c->o.auth.password_file = conf_keep(c, 8, a->password_file, &failed);
  if (failed) return luaL_error(L, "out of memory");
  c->tspec.verify = c->o.tls.t.given ? c->o.tls.verify : 1;
  c->tspec.ca = c->o.tls.ca;
  c->tspec.sni = c->o.tls.sni ? c->o.tls.sni : c->host;
  c->tspec.cert = c->o.tls.cert;
  c->tspec.key = c->o.tls.key;
  c->tls = c->o.starttls || c->o.implicit_tls;
  if (c->tls) {
    /* The CA bundle and the client certificate, read now rather than at
     * the first message. */
    smtpd_tls_env *env = smtpd_map_tls(m);
    if (env == NULL) return luaL_error(L, "out of memory");
    if (smtpd_tls_client_preload(env, &c->tspec, err, sizeof err)) {
      /* luv's form: nil, "ENAME: message", "ENAME". */
      lua_pushnil(L);
      lua_pushfstring(L, "EINVAL: tls: %s", err);
      lua_pushliteral(L, "EINVAL");
      return 3;
    }
  }
  return 1;
}

/* conf:options() -> what was read (the password left out). */
static int conf_options(lua_State *L) {
  smtpd_relayconf *c = conf_check(L, 1);
  smtpd_relay_opts o = c->o;
  o.auth.password = o.auth.password ? "(set)" : NULL;
  smtpd_opts_push_read(L, smtpd_relay_optdefs, &o);
  if (c->path) lua_pushfstring(L, "unix:%s", c->path);
  else lua_pushstring(L, c->host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, c->port);
  lua_setfield(L, -2, "port");
  return 1;
}

/* ---- the connection ------------------------------------------------------- */

enum { C_RESOLVE, C_CONNECT, C_SETUP, C_READY, C_DONE };

struct smtpd_client {
  smtpd_handle h;
  smtpd_stream sock;       /* .pipe for a unix socket */
  uv_timer_t timer;
  uv_connect_t creq;
  uv_work_t work;          /* the FQDN and a password file on the pool */
  int working;
  smtpd_dns_lookup *lookup;    /* the host's addresses, through smtpd.dns */
  struct addrinfo *ai, *cur;
  char work_err[300];
  char *password;          /* had for this connection */
  char *helo;
  smtpd_relayconf *conf;
  smtpd_relay relay;
  int relay_live;
  int state;
  smtpd_tls *tls;
  int tls_up;              /* the handshake is done */
  smtpd_buf raw;           /* ciphertext read */
  smtpd_buf cout;          /* ciphertext to write */
  size_t queued;           /* bytes written, not yet sent */
  int high;                /* the owner was told to wait */
  const smtpd_client_owner *own;
  void *own_ctx;
  int reported;            /* failed was told */
};

typedef struct client_write {
  uv_write_t req;
  smtpd_client *c;
  smtpd_buf buf;
  int secret;              /* may hold credentials: wiped */
} client_write;

static void client_free(smtpd_handle *h) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, h);
  if (c->relay_live) smtpd_relay_free(&c->relay);
  smtpd_buf_free(&c->raw);
  smtpd_buf_free(&c->cout);
  smtpd_tls_free(c->tls);
  if (c->password) {
    OPENSSL_cleanse(c->password, strlen(c->password));
    free(c->password);
  }
  free(c->helo);
  smtpd_dns_addrinfo_free(c->ai);
  smtpd_relayconf_unref(c->conf);
  free(c);
}

static void client_close_handles(smtpd_handle *h) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, h);
  c->state = C_DONE;
  c->own = NULL;
  if (c->working) uv_cancel((uv_req_t *)&c->work);
  smtpd_dns_lookup_cancel(c->lookup);
  c->lookup = NULL;
  smtpd_handle_uv_close(h, (uv_handle_t *)&c->timer);
  smtpd_handle_uv_close(h, (uv_handle_t *)&c->sock);
}

void smtpd_client_close(smtpd_client *c) {
  smtpd_handle_close(&c->h);
}

/* The connection is of no more use: the owner hears why, once. */
static void client_fail(smtpd_client *c, const char *stage, int code,
                        int timeout, const char *fmt, ...) {
  char why[600];
  va_list ap;
  const smtpd_client_owner *own = c->own;
  if (c->h.closing || c->reported) return;
  c->reported = 1;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  c->state = C_DONE;
  if (own && own->failed) own->failed(c->own_ctx, c, stage, code, why,
                                      timeout);
  smtpd_client_close(c);
}

/* ---- writing --------------------------------------------------------------- */

static void client_on_write(uv_write_t *req, int status) {
  client_write *w = (client_write *)req;
  smtpd_client *c = w->c;
  c->queued -= w->buf.len;
  if (w->secret && w->buf.p) OPENSSL_cleanse(w->buf.p, w->buf.cap);
  smtpd_buf_free(&w->buf);
  free(w);
  if (c->h.closing) return;
  if (status < 0) {
    /* The server went away before it read everything. */
    if (status == UV_EPIPE || status == UV_ECONNRESET)
      client_fail(c, smtpd_relay_stage(&c->relay), 0, 0, "%s: connection "
                  "closed by the server", smtpd_relay_stage(&c->relay));
    else
      client_fail(c, smtpd_relay_stage(&c->relay), 0, 0, "%s: write failed: "
                  "%s", smtpd_relay_stage(&c->relay), uv_strerror(status));
    return;
  }
  if (c->high && c->queued < CLIENT_HIGH / 2) {
    c->high = 0;
    if (c->own && c->own->drained) c->own->drained(c->own_ctx, c);
  }
}

/* Sends what the machine queued (through TLS when it is on). */
static void client_flush(smtpd_client *c) {
  smtpd_buf *src = &c->relay.out;
  client_write *w;
  uv_buf_t b;
  int err, secret = c->state < C_READY;
  if (c->h.closing || c->state == C_DONE) return;
  if (c->tls) {
    if (c->tls_up && c->relay.out.len) {
      int bad = smtpd_tls_write(c->tls, c->relay.out.p, c->relay.out.len);
      if (secret) OPENSSL_cleanse(c->relay.out.p, c->relay.out.len);
      c->relay.out.len = 0;
      if (bad) {
        client_fail(c, "tls", 0, 0, "tls: %s", smtpd_tls_error(c->tls));
        return;
      }
    }
    src = &c->cout;
  }
  if (src->len == 0) return;
  w = calloc(1, sizeof *w);
  if (w == NULL) {
    client_fail(c, smtpd_relay_stage(&c->relay), 0, 0, "out of memory");
    return;
  }
  w->c = c;
  w->buf = *src;           /* taken over */
  w->secret = secret;
  memset(src, 0, sizeof *src);
  b = uv_buf_init(w->buf.p, (unsigned)w->buf.len);
  err = uv_write(&w->req, (uv_stream_t *)&c->sock, &b, 1, client_on_write);
  if (err) {
    smtpd_buf_free(&w->buf);
    free(w);
    client_fail(c, smtpd_relay_stage(&c->relay), 0, 0, "%s: write failed: "
                "%s", smtpd_relay_stage(&c->relay), uv_strerror(err));
    return;
  }
  c->queued += w->buf.len;
  if (c->queued > CLIENT_HIGH) c->high = 1;
}

size_t smtpd_client_queued(const smtpd_client *c) {
  return c->queued + c->relay.out.len;
}

/* ---- timeouts --------------------------------------------------------------- */

static void client_on_timer(uv_timer_t *t) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, t->data);
  const smtpd_relayconf *cf = c->conf;
  int early = c->state <= C_CONNECT;
  double s = (double)(early ? cf->o.connect_timeout_ms : cf->o.timeout_ms) /
             1000.0;
  const char *stage = c->state == C_RESOLVE ? "resolve"
                    : c->state == C_CONNECT ? "connect"
                    : smtpd_relay_stage(&c->relay);
  client_fail(c, stage, 0, 1, "%s: timed out after %.1f s", stage, s);
}

/* Waiting for the server: its next reply within the step timeout (the
 * connect timeout while connecting); nothing awaited, no timer. */
static void client_arm(smtpd_client *c) {
  uint64_t ms;
  if (c->h.closing) return;
  if (c->state <= C_CONNECT) ms = c->conf->o.connect_timeout_ms;
  else if (c->state == C_SETUP || c->relay.npend) ms = c->conf->o.timeout_ms;
  else ms = 0;
  if (ms) uv_timer_start(&c->timer, client_on_timer, ms, 0);
  else uv_timer_stop(&c->timer);
}

/* ---- the machine's events ---------------------------------------------------- */

static void client_start_tls(smtpd_client *c);

static void client_on_event(void *ctx, const smtpd_relay_event *ev) {
  smtpd_client *c = ctx;
  switch (ev->kind) {
  case SMTPD_RELAY_EV_STARTTLS:
    client_start_tls(c);
    break;
  case SMTPD_RELAY_EV_READY:
    c->state = C_READY;
    if (c->own && c->own->ready) c->own->ready(c->own_ctx, c);
    break;
  case SMTPD_RELAY_EV_REPLY:
    if (c->own && c->own->reply) c->own->reply(c->own_ctx, c, ev);
    break;
  case SMTPD_RELAY_EV_FAILED:
    client_fail(c, ev->stage, ev->code, 0, "%.*s", (int)ev->len, ev->text);
    break;
  default:
    break;
  }
}

/* ---- reading -------------------------------------------------------------- */

static void client_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, u->data);
  (void)size;
  if (smtpd_buf_reserve(&c->raw, 17 * 1024)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->raw.p, 17 * 1024);
}

static void client_tls_done(smtpd_client *c) {
  c->tls_up = 1;
  smtpd_relay_tls_up(&c->relay);
}

static int client_plain(void *ctx, const char *p, size_t n) {
  smtpd_client *c = ctx;
  /* Plaintext in the same read as the end of the handshake. */
  if (!c->tls_up) client_tls_done(c);
  if (!c->h.closing) smtpd_relay_input(&c->relay, p, n);
  return c->h.closing;
}

static void client_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  smtpd_client *c = SMTPD_OWNER(smtpd_client, st->data);
  (void)buf;
  if (c->h.closing) return;
  if (n < 0) {
    if (c->relay.closing) {
      smtpd_client_close(c);       /* after QUIT or 421: the end */
      return;
    }
    client_fail(c, smtpd_relay_stage(&c->relay), 0, 0, "%s: connection %s",
                smtpd_relay_stage(&c->relay), n == UV_EOF
                ? "closed by the server" : uv_strerror((int)n));
    return;
  }
  if (n == 0) return;
  if (c->tls) {
    int was = c->tls_up, r;
    r = smtpd_tls_input(c->tls, c->raw.p, (size_t)n, client_plain, c);
    if (c->h.closing) return;
    if (r != SMTPD_TLS_OK) {
      if (c->relay.closing) {
        smtpd_client_close(c);
        return;
      }
      client_fail(c, was ? smtpd_relay_stage(&c->relay) : "tls", 0, 0,
                  "%s: %s", was ? smtpd_relay_stage(&c->relay) : "tls",
                  r == SMTPD_TLS_CLOSED ? "the server ended TLS"
                                        : smtpd_tls_error(c->tls));
      return;
    }
    if (!was && smtpd_tls_ready(c->tls) && !c->tls_up) client_tls_done(c);
  } else {
    smtpd_relay_input(&c->relay, c->raw.p, (size_t)n);
  }
  if (c->h.closing) return;
  client_flush(c);
  client_arm(c);
}

/* The server said 220 to STARTTLS (or implicit TLS begins): the
 * handshake starts. */
static void client_start_tls(smtpd_client *c) {
  char err[200];
  smtpd_tls_env *env = smtpd_map_tls(c->h.map);
  snprintf(err, sizeof err, "out of memory");
  c->tls = env ? smtpd_tls_client(env, &c->conf->tspec, &c->cout, err,
                                  sizeof err)
               : NULL;
  if (c->tls == NULL) {
    client_fail(c, "tls", 0, 0, "tls: %s", err);
    return;
  }
  if (smtpd_tls_start(c->tls) != SMTPD_TLS_OK) {
    client_fail(c, "tls", 0, 0, "tls: %s", smtpd_tls_error(c->tls));
    return;
  }
}

/* ---- connecting -------------------------------------------------------------- */

static void client_try_connect(smtpd_client *c);

/* The socket of a failed attempt is closed: the next address. */
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
    if (c->cur && c->cur->ai_next) {
      /* The next address, on a new socket once this one is closed. */
      c->cur = c->cur->ai_next;
      uv_close((uv_handle_t *)&c->sock, client_on_retry_close);
      return;
    }
    if (c->conf->path)
      client_fail(c, "connect", 0, 0, "connect to unix:%s: %s",
                  c->conf->path, uv_strerror(status));
    else
      client_fail(c, "connect", 0, 0, "connect to %s:%d: %s", c->conf->host,
                  c->conf->port, uv_strerror(status));
    return;
  }
  c->state = C_SETUP;
  uv_read_start((uv_stream_t *)&c->sock, client_on_alloc, client_on_read);
  if (c->conf->o.implicit_tls) client_start_tls(c);
  client_flush(c);
  client_arm(c);
}

/* Connects to the current address (or the socket path) on a new socket,
 * attached to the client. */
static void client_try_connect(smtpd_client *c) {
  int err;
  memset(&c->sock, 0, sizeof c->sock);
  c->state = C_CONNECT;
  c->creq.data = c;
  if (c->conf->path) {
    uv_pipe_init(&c->h.map->loop, &c->sock.pipe, 0);
    smtpd_handle_attach(&c->h, (uv_handle_t *)&c->sock);
    uv_pipe_connect(&c->creq, &c->sock.pipe, c->conf->path,
                    client_on_connect);
    client_arm(c);
    return;
  }
  uv_tcp_init(&c->h.map->loop, &c->sock.tcp);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->sock);
  uv_tcp_nodelay(&c->sock.tcp, 1);
  err = uv_tcp_connect(&c->creq, &c->sock.tcp, c->cur->ai_addr,
                       client_on_connect);
  if (err) {
    client_fail(c, "connect", 0, 0, "connect to %s:%d: %s", c->conf->host,
                c->conf->port, uv_strerror(err));
    return;
  }
  client_arm(c);
}

/* On the thread pool: the FQDN when HELO is not given, a password from
 * its file (the upstream's addresses come from smtpd.dns, on the loop).
 * Touches nothing of the loop's. */
static void client_work(uv_work_t *req) {
  smtpd_client *c = req->data;
  const smtpd_relayconf *cf = c->conf;
  if (!cf->o.helo) smtpd_fqdn();
  if (cf->o.auth.password_file && !c->password) {
    FILE *f = fopen(cf->o.auth.password_file, "rb");
    char line[1024];
    size_t n;
    if (f == NULL) {
      snprintf(c->work_err, sizeof c->work_err, "auth: cannot read the "
               "password: %s: %s", cf->o.auth.password_file, strerror(errno));
      return;
    }
    n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') {
      snprintf(c->work_err, sizeof c->work_err, "auth: cannot read the "
               "password: %s is empty", cf->o.auth.password_file);
      return;
    }
    c->password = strdup(line);
    OPENSSL_cleanse(line, sizeof line);
    if (c->password == NULL) {
      snprintf(c->work_err, sizeof c->work_err, "out of memory");
      return;
    }
  }
}

static void client_start(smtpd_client *c) {
  const smtpd_relayconf *cf = c->conf;
  smtpd_relay_setup setup;
  const char *pw = cf->o.auth.password ? cf->o.auth.password : c->password;
  memset(&setup, 0, sizeof setup);
  setup.helo = cf->o.helo ? cf->o.helo : smtpd_fqdn();
  setup.lmtp = cf->o.lmtp;
  setup.starttls = cf->o.starttls;
  setup.tls_on = cf->o.implicit_tls;
  setup.user = cf->o.auth.user;
  setup.password = pw;
  setup.mechanism = cf->o.auth.mechanism;
  setup.plaintext = cf->o.auth.plaintext;
  if (smtpd_relay_init(&c->relay, &setup, client_on_event, c)) {
    client_fail(c, "connect", 0, 0, "out of memory");
    return;
  }
  c->relay_live = 1;
  c->cur = c->ai;
  client_try_connect(c);
}

static void client_on_addresses(void *ctx, struct addrinfo *ai,
                                const char *why) {
  smtpd_client *c = ctx;
  c->lookup = NULL;
  if (c->h.closing) {
    smtpd_dns_addrinfo_free(ai);
    return;
  }
  if (ai == NULL) {
    client_fail(c, "resolve", 0, 0, "%s", why);
    return;
  }
  c->ai = ai;
  client_start(c);
}

static void client_work_done(uv_work_t *req, int status) {
  smtpd_client *c = req->data;
  c->working = 0;
  if (c->h.closing) {
    smtpd_handle_done(&c->h);      /* may free c */
    return;
  }
  smtpd_handle_done(&c->h);
  if (status < 0) {
    client_fail(c, "resolve", 0, 0, "resolve: %s", uv_strerror(status));
    return;
  }
  if (c->work_err[0]) {
    client_fail(c, strncmp(c->work_err, "auth", 4) == 0 ? "auth"
                                                        : "resolve",
                0, 0, "%s", c->work_err);
    return;
  }
  if (c->conf->host) {
    /* Names through the map's resolver (c-ares), never getaddrinfo on
     * the thread pool; it may answer at once. */
    char err[200];
    err[0] = '\0';
    c->lookup = smtpd_dns_lookup_start(c->h.map, c->conf->host,
                                       c->conf->port, client_on_addresses,
                                       c, err, sizeof err);
    if (c->lookup == NULL && err[0])
      client_fail(c, "resolve", 0, 0, "%s", err);
    return;
  }
  client_start(c);
}

smtpd_client *smtpd_client_open(smtpd_map *m, smtpd_relayconf *conf,
                                const smtpd_client_owner *own, void *ctx) {
  smtpd_client *c = calloc(1, sizeof *c);
  const smtpd_relay_auth_opts *a = &conf->o.auth;
  int err;
  if (c == NULL) return NULL;
  smtpd_handle_init(&c->h, m, SMTPD_H_CLIENT, client_close_handles,
                    client_free);
  uv_timer_init(&m->loop, &c->timer);
  smtpd_handle_attach(&c->h, (uv_handle_t *)&c->timer);
  c->conf = conf;
  smtpd_relayconf_ref(conf);
  c->own = own;
  c->own_ctx = ctx;
  c->state = C_RESOLVE;
  if (a->password_env) {
    const char *v = getenv(a->password_env);
    if (v == NULL || !*v) {
      snprintf(c->work_err, sizeof c->work_err, "auth: cannot read the "
               "password: environment variable %s is not set",
               a->password_env);
    } else if ((c->password = strdup(v)) == NULL) {
      smtpd_client_close(c);
      return NULL;
    }
  }
  /* The thread pool has what the loop must not wait for; an address and
   * a socket path need none of it (still from the loop's next turn, so
   * the owner never hears from inside this call). */
  c->work.data = c;
  c->working = 1;
  c->h.pending++;
  err = uv_queue_work(&m->loop, &c->work, client_work, client_work_done);
  if (err) {
    c->working = 0;
    c->h.pending--;
    snprintf(c->work_err, sizeof c->work_err, "resolve: %s",
             uv_strerror(err));
    smtpd_client_close(c);
    return NULL;
  }
  if (conf->o.connect_timeout_ms)
    uv_timer_start(&c->timer, client_on_timer, conf->o.connect_timeout_ms,
                   0);
  return c;
}

/* ---- the owner's commands ---------------------------------------------------- */

int smtpd_client_send(smtpd_client *c, int cmd, const char *line, size_t n) {
  if (c->h.closing || smtpd_relay_send(&c->relay, cmd, line, n)) return -1;
  client_flush(c);
  client_arm(c);
  return 0;
}

int smtpd_client_sendf(smtpd_client *c, int cmd, const char *fmt, ...) {
  char tmp[2048];
  int n;
  va_list ap;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) return -1;
  return smtpd_client_send(c, cmd, tmp, (size_t)n);
}

int smtpd_client_body(smtpd_client *c, const char *p, size_t n) {
  if (c->h.closing || smtpd_relay_body(&c->relay, p, n)) return -1;
  client_flush(c);
  return 0;
}

int smtpd_client_dot(smtpd_client *c) {
  if (c->h.closing || smtpd_relay_dot(&c->relay)) return -1;
  client_flush(c);
  client_arm(c);
  return 0;
}

int smtpd_client_bdat(smtpd_client *c, const char *p, size_t n, int last) {
  if (c->h.closing || smtpd_relay_bdat(&c->relay, p, n, last)) return -1;
  client_flush(c);
  client_arm(c);
  return 0;
}

int smtpd_client_usable(const smtpd_client *c) {
  return !c->h.closing && c->state == C_READY &&
         smtpd_relay_usable(&c->relay);
}

unsigned smtpd_client_ext(const smtpd_client *c) {
  return c->relay.esmtp ? c->relay.ext : 0;
}

int smtpd_client_esmtp(const smtpd_client *c) {
  return c->relay.esmtp;
}

size_t smtpd_client_size_max(const smtpd_client *c) {
  return c->relay.size_max;
}

/* Ends the connection politely: QUIT, then close (the owner hears no
 * more). */
void smtpd_client_quit(smtpd_client *c) {
  if (c->h.closing) return;
  c->own = NULL;
  if (!smtpd_client_usable(c) ||
      smtpd_relay_send(&c->relay, SMTPD_RC_QUIT, "QUIT", 4)) {
    smtpd_client_close(c);
    return;
  }
  client_flush(c);
  client_arm(c);
}

/* ---- one message: core.client_send ------------------------------------------ */

typedef struct oneshot_rcpt {
  int code;                /* RCPT's reply, then (LMTP) the data's */
  char *msg;
  int accepted;
  int after_data;          /* refused by an LMTP reply after the data */
} oneshot_rcpt;

typedef struct oneshot {
  smtpd_handle h;          /* the Lua-visible handle */
  uv_timer_t anchor;       /* never started: makes it one of the map's
                              handles (close_all, collection) */
  smtpd_client *c;
  lua_State *L;
  int cb_ref, data_ref;
  const char *data;
  size_t data_len;
  char *mailfrom;
  smtpd_strlist rcpts, mail_options, dsn_mail, dsn_notify, dsn_orcpt;
  oneshot_rcpt *r;
  size_t sent, answered, accepted;
  int tempfail_aborts, lmtp;
  /* outcome */
  int done, failed, code, timed_out;
  char stage[32];
  char err[600];
  smtpd_buf reply;         /* the last reply's text */
} oneshot;

static void oneshot_free(smtpd_handle *h) {
  oneshot *o = SMTPD_OWNER(oneshot, h);
  size_t i;
  for (i = 0; i < o->rcpts.n; i++) free(o->r[i].msg);
  free(o->r);
  free(o->mailfrom);
  smtpd_strlist_clear(&o->rcpts);
  smtpd_strlist_clear(&o->mail_options);
  smtpd_strlist_clear(&o->dsn_mail);
  smtpd_strlist_clear(&o->dsn_notify);
  smtpd_strlist_clear(&o->dsn_orcpt);
  smtpd_buf_free(&o->reply);
  free(o);
}

static void oneshot_close(smtpd_handle *h) {
  oneshot *o = SMTPD_OWNER(oneshot, h);
  lua_State *L = h->map->L;
  luaL_unref(L, LUA_REGISTRYINDEX, o->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, o->data_ref);
  o->cb_ref = o->data_ref = LUA_NOREF;
  o->data = NULL;
  if (o->c) {
    /* Cancelled or done: the connection ends too (no more callbacks). */
    smtpd_client *c = o->c;
    o->c = NULL;
    if (o->done && !o->failed) smtpd_client_quit(c);
    else {
      c->own = NULL;
      smtpd_client_close(c);
    }
  }
  smtpd_handle_uv_close(h, (uv_handle_t *)&o->anchor);
}

static void oneshot_push_result(lua_State *L, oneshot *o) {
  size_t i;
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, !o->failed);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, o->code);
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, o->reply.p ? o->reply.p : "", o->reply.len);
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, (lua_Integer)o->accepted);
  lua_setfield(L, -2, "accepted");
  lua_newtable(L);
  for (i = 0; i < o->rcpts.n; i++) {
    const oneshot_rcpt *r = &o->r[i];
    if (r->accepted && !o->failed) continue;
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
      lua_pushinteger(L, o->code ? o->code : -1);
      lua_rawseti(L, -2, 1);
      lua_pushstring(L, o->err);
      lua_rawseti(L, -2, 2);
      lua_pushstring(L, o->stage);
    }
    lua_rawseti(L, -2, 3);
    lua_setfield(L, -2, o->rcpts.v[i].p);
  }
  lua_setfield(L, -2, "refused");
  if (o->failed) {
    lua_pushstring(L, o->stage);
    lua_setfield(L, -2, "stage");
    lua_pushstring(L, o->err);
    lua_setfield(L, -2, "error");
    lua_pushboolean(L, o->timed_out);
    lua_setfield(L, -2, "timeout");
  }
}

static int oneshot_lua_report(lua_State *L) {
  oneshot *o = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, o->cb_ref);
  oneshot_push_result(L, o);
  smtpd_lua_calls++;
  lua_call(L, 1, 0);
  return 0;
}

/* The outcome, once, to the Lua callback (protected), then the end. */
static void oneshot_finish(oneshot *o) {
  lua_State *L = o->h.map->L;
  if (o->done) return;
  o->done = 1;
  if (o->cb_ref != LUA_NOREF) {
    lua_pushcfunction(L, oneshot_lua_report);
    lua_pushlightuserdata(L, o);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      smtpd_log(o->h.map, "error in a relay callback: %s",
                lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  smtpd_handle_close(&o->h);
}

static void oneshot_fail(oneshot *o, const char *stage, int code,
                         const char *fmt, ...) {
  va_list ap;
  if (o->done) return;
  o->failed = 1;
  if (code) o->code = code;
  snprintf(o->stage, sizeof o->stage, "%s", stage);
  va_start(ap, fmt);
  vsnprintf(o->err, sizeof o->err, fmt, ap);
  va_end(ap);
  oneshot_finish(o);
}

static void oneshot_on_failed(void *ctx, smtpd_client *c, const char *stage,
                              int code, const char *why, int timeout) {
  oneshot *o = ctx;
  (void)c;
  o->c = NULL;             /* it closes itself */
  o->timed_out = timeout;
  oneshot_fail(o, stage, code, "%s", why);
}

static int has_8bit(const char *d, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)d[i] & 0x80) return 1;
  return 0;
}

static int oneshot_send_rcpt(oneshot *o) {
  const char *notify = "-", *orcpt = "-";
  size_t i = o->sent++;
  /* DSN's NOTIFY/ORCPT go on only to an upstream that offers DSN. */
  if ((smtpd_client_ext(o->c) & SMTPD_EXT_DSN) && i < o->dsn_notify.n &&
      i < o->dsn_orcpt.n) {
    notify = o->dsn_notify.v[i].p;
    orcpt = o->dsn_orcpt.v[i].p;
  }
  return smtpd_client_sendf(o->c, SMTPD_RC_RCPT, "RCPT TO:<%s>%s%s%s%s",
                            o->rcpts.v[i].p,
                            strcmp(notify, "-") ? " NOTIFY=" : "",
                            strcmp(notify, "-") ? notify : "",
                            strcmp(orcpt, "-") ? " ORCPT=" : "",
                            strcmp(orcpt, "-") ? orcpt : "");
}

static void oneshot_on_ready(void *ctx, smtpd_client *c) {
  oneshot *o = ctx;
  unsigned ext = smtpd_client_ext(c);
  smtpd_buf b = {NULL, 0, 0};
  size_t i;
  char tmp[64];
  int err = smtpd_buf_append(&b, "MAIL FROM:<", 11);
  if (!err && strcmp(o->mailfrom, "<>") != 0)
    err = smtpd_buf_append(&b, o->mailfrom, strlen(o->mailfrom));
  if (!err) err = smtpd_buf_append(&b, ">", 1);
  if (!err && (ext & SMTPD_EXT_SIZE)) {
    snprintf(tmp, sizeof tmp, " SIZE=%zu", o->data_len);
    err = smtpd_buf_append(&b, tmp, strlen(tmp));
  }
  if (!err && (ext & SMTPD_EXT_8BITMIME) && has_8bit(o->data, o->data_len))
    err = smtpd_buf_append(&b, " BODY=8BITMIME", 14);
  for (i = 0; !err && smtpd_client_esmtp(c) && i < o->mail_options.n; i++) {
    err = smtpd_buf_append(&b, " ", 1);
    if (!err) err = smtpd_buf_append(&b, o->mail_options.v[i].p,
                                     o->mail_options.v[i].len);
  }
  for (i = 0; !err && (ext & SMTPD_EXT_DSN) && i < o->dsn_mail.n; i++) {
    err = smtpd_buf_append(&b, " ", 1);
    if (!err) err = smtpd_buf_append(&b, o->dsn_mail.v[i].p,
                                     o->dsn_mail.v[i].len);
  }
  if (err || smtpd_client_send(c, SMTPD_RC_MAIL, b.p, b.len)) {
    smtpd_buf_free(&b);
    oneshot_fail(o, "mail", 0, "MAIL: cannot send the command");
    return;
  }
  smtpd_buf_free(&b);
  /* The recipients follow at once where the server pipelines; DATA
   * waits for their replies (a deferred one may keep it back). */
  do {
    if (oneshot_send_rcpt(o)) {
      oneshot_fail(o, "rcpt", 0, "RCPT: cannot send the command");
      return;
    }
  } while ((ext & SMTPD_EXT_PIPELINING) && o->sent < o->rcpts.n);
}

static void oneshot_keep_reply(oneshot *o, const smtpd_relay_event *ev) {
  o->reply.len = 0;
  smtpd_buf_append(&o->reply, ev->text, ev->len);
  o->code = ev->code;
}

/* The first recipient refused with a 4xx, or NULL. */
static const oneshot_rcpt *oneshot_tempfail(const oneshot *o) {
  size_t i;
  for (i = 0; i < o->rcpts.n; i++)
    if (o->r[i].code >= 400 && o->r[i].code < 500) return &o->r[i];
  return NULL;
}

static void oneshot_on_reply(void *ctx, smtpd_client *c,
                             const smtpd_relay_event *ev) {
  oneshot *o = ctx;
  const char *txt;
  oneshot_keep_reply(o, ev);
  txt = o->reply.p ? o->reply.p : "";
  switch (ev->cmd) {
  case SMTPD_RC_MAIL:
    if (ev->code != 250)
      oneshot_fail(o, "mail", ev->code, "MAIL: %d %s", ev->code, txt);
    return;
  case SMTPD_RC_RCPT: {
    oneshot_rcpt *r = &o->r[o->answered++];
    r->code = ev->code;
    if (ev->code == 250 || ev->code == 251) {
      r->accepted = 1;
      o->accepted++;
    } else {
      r->msg = strdup(txt);
    }
    if (o->sent < o->rcpts.n) {
      if (oneshot_send_rcpt(o))
        oneshot_fail(o, "rcpt", 0, "RCPT: cannot send the command");
      return;
    }
    if (o->answered < o->rcpts.n) return;
    if (o->tempfail_aborts && oneshot_tempfail(o)) {
      /* Which addresses the server takes later is not known: nothing is
       * sent, and the whole message fails (4xx). */
      const oneshot_rcpt *t = oneshot_tempfail(o);
      o->accepted = 0;
      oneshot_fail(o, "rcpt", t->code, "RCPT: %d %s (<%s>)", t->code,
                   t->msg ? t->msg : "", o->rcpts.v[t - o->r].p);
    } else if (o->accepted == 0) {
      oneshot_fail(o, "rcpt", ev->code, "RCPT: every recipient was refused");
    } else if (smtpd_client_send(c, SMTPD_RC_DATA, "DATA", 4)) {
      oneshot_fail(o, "data", 0, "DATA: cannot send the command");
    }
    return;
  }
  case SMTPD_RC_DATA:
    if (ev->code != 354) {
      oneshot_fail(o, "data", ev->code, "DATA: %d %s", ev->code, txt);
      return;
    }
    if (smtpd_client_body(c, o->data, o->data_len) || smtpd_client_dot(c))
      oneshot_fail(o, "message", 0, "message: cannot send it");
    return;
  case SMTPD_RC_DOT:
    if (!o->lmtp) {
      if (ev->code != 250)
        oneshot_fail(o, "message", ev->code, "message: %d %s", ev->code,
                     txt);
      else
        oneshot_finish(o);
      return;
    }
    {
      /* LMTP: one reply per accepted recipient, in RCPT order. */
      size_t i, k = 0;
      for (i = 0; i < o->rcpts.n; i++) {
        if (!o->r[i].accepted && !o->r[i].after_data) continue;
        if (k++ != ev->index) continue;
        o->r[i].code = ev->code;
        if (ev->code != 250) {
          o->r[i].accepted = 0;
          o->r[i].after_data = 1;
          o->accepted--;
          free(o->r[i].msg);
          o->r[i].msg = strdup(txt);
        }
        break;
      }
      if (!ev->last) return;
      if (o->accepted == 0)
        oneshot_fail(o, "message", ev->code, "message: every recipient was "
                     "refused");
      else
        oneshot_finish(o);
    }
    return;
  default:
    return;
  }
}

static const smtpd_client_owner oneshot_owner = {
  oneshot_on_ready, oneshot_on_reply, oneshot_on_failed, NULL
};

static int sendable(const char *s, size_t n) {
  return n > 0 && strcspn(s, "\r\n<> \t") == n && !memchr(s, '\0', n);
}

/* Checks the list at key of table t (a table, or a list-like value with
 * __len and __index such as a channel's rcpttos) and copies it into l,
 * which the caller's scratch owns until it is kept. */
static void oneshot_list(lua_State *L, int t, const char *key,
                         smtpd_strlist *l, int addresses) {
  lua_Integer i, n;
  int tt = lua_getfield(L, t, key);
  if (tt == LUA_TNIL) {
    lua_pop(L, 1);
    return;
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
    if (addresses ? !sendable(s, len) : (len == 0 || !sendable(s, len)))
      luaL_error(L, "%s: \"%s\" is not %s we can send", key, s,
                 addresses ? "an address" : "a parameter");
    if (smtpd_strlist_push(l, s, len)) luaL_error(L, "out of memory");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Lists read into a userdata the garbage collector frees, so that a
 * raise half way leaks nothing; kept lists are moved out of it. */
typedef struct oneshot_scratch {
  smtpd_strlist l[5];
} oneshot_scratch;

static int oneshot_scratch_gc(lua_State *L) {
  oneshot_scratch *s = lua_touserdata(L, 1);
  int i;
  for (i = 0; i < 5; i++) smtpd_strlist_clear(&s->l[i]);
  return 0;
}

/* client_send(map, conf, envelope, callback) -> handle; envelope =
 * {mailfrom =, rcpttos = {...}, data =, mail_options =, dsn_mail =,
 * dsn_notify =, dsn_orcpt =}. Everything is checked before anything is
 * opened: an error raised here leaks nothing. The callback gets one
 * table: ok (taken for at least one recipient), refused (recipient ->
 * {code, message, stage}), code and message of the last reply, and on
 * failure stage, error and timeout. */
static int oneshot_send(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  smtpd_relayconf *conf = conf_check(L, 2);
  oneshot_scratch *sc;
  oneshot *o;
  const char *mailfrom, *data;
  size_t mflen, datalen;
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_getfield(L, 3, "mailfrom");
  mailfrom = luaL_optlstring(L, -1, "<>", &mflen);
  if (strcmp(mailfrom, "<>") != 0 && !sendable(mailfrom, mflen))
    return luaL_error(L, "mailfrom \"%s\" is not an address we can send",
                      mailfrom);
  lua_getfield(L, 3, "data");
  data = lua_tolstring(L, -1, &datalen);
  if (data == NULL) return luaL_error(L, "data must be a string");
  lua_pop(L, 1);
  sc = lua_newuserdatauv(L, sizeof *sc, 0);
  memset(sc, 0, sizeof *sc);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, oneshot_scratch_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  oneshot_list(L, 3, "rcpttos", &sc->l[0], 1);
  if (sc->l[0].n == 0)
    return luaL_error(L, "rcpttos must hold at least one recipient");
  oneshot_list(L, 3, "mail_options", &sc->l[1], 0);
  oneshot_list(L, 3, "dsn_mail", &sc->l[2], 0);
  oneshot_list(L, 3, "dsn_notify", &sc->l[3], 0);
  oneshot_list(L, 3, "dsn_orcpt", &sc->l[4], 0);
  /* All valid: allocate. */
  o = calloc(1, sizeof *o);
  if (o == NULL || (o->r = calloc(sc->l[0].n, sizeof *o->r)) == NULL ||
      (o->mailfrom = strdup(mailfrom)) == NULL) {
    if (o) free(o->r);
    free(o);
    return luaL_error(L, "out of memory");
  }
  smtpd_handle_init(&o->h, m, SMTPD_H_CLIENT, oneshot_close, oneshot_free);
  uv_timer_init(&m->loop, &o->anchor);
  smtpd_handle_attach(&o->h, (uv_handle_t *)&o->anchor);
  uv_unref((uv_handle_t *)&o->anchor);
  o->cb_ref = o->data_ref = LUA_NOREF;
  o->rcpts = sc->l[0];
  o->mail_options = sc->l[1];
  o->dsn_mail = sc->l[2];
  o->dsn_notify = sc->l[3];
  o->dsn_orcpt = sc->l[4];
  memset(sc, 0, sizeof *sc);
  o->tempfail_aborts = conf->o.tempfail_aborts;
  o->lmtp = conf->o.lmtp;
  lua_getfield(L, 3, "data");
  o->data = lua_tolstring(L, -1, &o->data_len);
  o->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 4);
  o->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  smtpd_handle_push_box(L, &o->h, CLIENT_MT, 0);
  o->c = smtpd_client_open(m, conf, &oneshot_owner, o);
  if (o->c == NULL) {
    smtpd_handle_close(&o->h);
    return luaL_error(L, "out of memory");
  }
  return 1;
}

/* handle:cancel(): gives up; the callback is not called. */
static int oneshot_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, CLIENT_MT);
  if (h) {
    SMTPD_OWNER(oneshot, h)->done = 1;
    SMTPD_OWNER(oneshot, h)->failed = 1;
    smtpd_handle_close(h);
  }
  return 0;
}

static int oneshot_active(lua_State *L) {
  lua_pushboolean(L, smtpd_handle_get(L, 1, CLIENT_MT) != NULL);
  return 1;
}

void smtpd_open_client(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"cancel", oneshot_cancel}, {"active", oneshot_active}, {NULL, NULL}
  };
  static const luaL_Reg conf_meta[] = {{"__gc", conf_gc}, {NULL, NULL}};
  static const luaL_Reg conf_methods[] = {
    {"options", conf_options}, {NULL, NULL}
  };
  smtpd_new_class(L, CLIENT_MT, NULL, methods);
  smtpd_new_class(L, RELAYCONF_MT, conf_meta, conf_methods);
  lua_pushcfunction(L, oneshot_send);
  lua_setfield(L, -2, "client_send");
  lua_pushcfunction(L, conf_new);
  lua_setfield(L, -2, "relay_conf");
}
