/*
 * The client side of SMTP and LMTP, as the relays speak it: a resumable
 * state machine over the server's bytes, with no socket, no Lua and no
 * libuv (relay_fuzz drives it; smtp/client.c gives it a socket).
 *
 * The machine greets the server (EHLO, or HELO when EHLO is refused;
 * LHLO for LMTP), starts TLS when asked to (the owner runs the handshake
 * and calls smtpd_relay_tls_up), authenticates (PLAIN or LOGIN), and then
 * says READY. From there the owner sends commands (MAIL, RCPT, DATA, the
 * body, RSET, QUIT; several at once when the server pipelines) and gets
 * one REPLY event for each, in order: under LMTP, one for each accepted
 * recipient after the data. Anything the server does that the protocol
 * does not allow (a malformed line, a reply nobody asked for, a reply
 * longer than the bounds below) is a FAILED event, after which the
 * machine is done.
 *
 * The body is sent in wire form as it is given, in pieces: every line
 * end becomes CRLF (a bare CR or LF never reaches the server as such:
 * that is how SMTP smuggling crosses relays) and a line that starts with
 * "." gets one more (RFC 5321 4.5.2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

/* Bounds on one reply: a flood of "250-" lines costs this much memory
 * and then fails the connection. */
#define RELAY_LINE_MAX 4096
#define RELAY_REPLY_LINES 100
#define RELAY_REPLY_BYTES 16384

enum {
  PH_GREETING, PH_EHLO, PH_HELO, PH_STARTTLS, PH_TLS, PH_AUTH, PH_AUTH_USER,
  PH_AUTH_PASS, PH_READY, PH_DONE
};

static const char *const phase_names[] = {
  "greeting", "ehlo", "helo", "starttls", "tls", "auth", "auth", "auth",
  "reply", "done"
};

static const char *const cmd_names[] = {
  "", "mail", "rcpt", "data", "message", "message", "rset", "noop", "quit"
};

const char *smtpd_relay_stage(const smtpd_relay *r) {
  if (r->phase == PH_READY && r->npend)
    return cmd_names[r->pend[r->pend_head].cmd];
  return phase_names[r->phase];
}

static char *relay_strdup(const char *s) {
  size_t n;
  char *c;
  if (s == NULL) return NULL;
  n = strlen(s);
  c = malloc(n + 1);
  if (c) memcpy(c, s, n + 1);
  return c;
}

/* Overwrites secrets so that freed memory does not keep them. */
static void relay_wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

static void relay_free_str(char **s) {
  if (*s) {
    relay_wipe(*s, strlen(*s));
    free(*s);
    *s = NULL;
  }
}

int smtpd_relay_init(smtpd_relay *r, const smtpd_relay_setup *cfg,
                     smtpd_relay_fn fn, void *ctx) {
  memset(r, 0, sizeof *r);
  r->setup = *cfg;
  r->setup.helo = relay_strdup(cfg->helo ? cfg->helo : "localhost");
  r->setup.user = relay_strdup(cfg->user);
  r->setup.password = relay_strdup(cfg->password);
  r->tls_on = cfg->tls_on;
  r->fn = fn;
  r->ctx = ctx;
  r->bol = 1;
  if (r->setup.helo == NULL || (cfg->user && r->setup.user == NULL) ||
      (cfg->password && r->setup.password == NULL)) {
    smtpd_relay_free(r);
    return -1;
  }
  return 0;
}

void smtpd_relay_free(smtpd_relay *r) {
  free((char *)r->setup.helo);
  r->setup.helo = NULL;
  relay_free_str((char **)&r->setup.user);
  relay_free_str((char **)&r->setup.password);
  if (r->out.p) relay_wipe(r->out.p, r->out.cap);
  smtpd_buf_free(&r->out);
  smtpd_buf_free(&r->line);
  smtpd_buf_free(&r->text);
  free(r->pend);
  r->pend = NULL;
  r->npend = r->pend_cap = r->pend_head = 0;
}

/* ---- events ------------------------------------------------------------- */

static void relay_fail(smtpd_relay *r, int code, const char *fmt,
                       const char *detail) {
  smtpd_relay_event ev;
  char why[600];
  const char *stage = smtpd_relay_stage(r);
  if (r->phase == PH_DONE) return;
  snprintf(why, sizeof why, fmt, detail ? detail : "");
  r->phase = PH_DONE;
  memset(&ev, 0, sizeof ev);
  ev.kind = SMTPD_RELAY_EV_FAILED;
  ev.code = code;
  ev.text = why;
  ev.len = strlen(why);
  ev.stage = stage;
  r->fn(r->ctx, &ev);
}

/* Fails with the reply that did it in the message. */
static void relay_fail_reply(smtpd_relay *r, int code, const char *what) {
  char msg[300];
  snprintf(msg, sizeof msg, "%s: %d %.200s", what, code,
           r->text.p ? r->text.p : "");
  relay_fail(r, code, "%s", msg);
}

static void relay_event(smtpd_relay *r, int kind) {
  smtpd_relay_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.text = "";
  ev.stage = phase_names[r->phase];
  r->fn(r->ctx, &ev);
}

/* ---- output ------------------------------------------------------------- */

static int relay_out(smtpd_relay *r, const char *p, size_t n) {
  if (smtpd_buf_append(&r->out, p, n)) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return -1;
  }
  return 0;
}

static int relay_line(smtpd_relay *r, const char *a, const char *b) {
  size_t la = strlen(a), lb = b ? strlen(b) : 0;
  if (smtpd_buf_reserve(&r->out, la + lb + 2)) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return -1;
  }
  smtpd_buf_append(&r->out, a, la);
  if (lb) smtpd_buf_append(&r->out, b, lb);
  return smtpd_buf_append(&r->out, "\r\n", 2);
}

static int relay_b64_line(smtpd_relay *r, const char *pre, const char *p,
                          size_t n) {
  size_t lp = strlen(pre), cap = lp + (n + 2) / 3 * 4 + 3;
  char *buf = malloc(cap);
  int err;
  if (buf == NULL) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return -1;
  }
  memcpy(buf, pre, lp);
  lp += smtpd_b64_encode((const unsigned char *)p, n, buf + lp);
  memcpy(buf + lp, "\r\n", 2);
  err = relay_out(r, buf, lp + 2);
  relay_wipe(buf, cap);
  free(buf);
  return err;
}

static int relay_expect(smtpd_relay *r, int cmd, size_t count) {
  if (r->npend == r->pend_cap || r->pend_head + r->npend == r->pend_cap) {
    /* Compact, then grow. */
    if (r->pend_head) {
      memmove(r->pend, r->pend + r->pend_head, r->npend * sizeof *r->pend);
      r->pend_head = 0;
    }
    if (r->npend == r->pend_cap) {
      size_t cap = r->pend_cap ? r->pend_cap * 2 : 8;
      smtpd_relay_pend *v = realloc(r->pend, cap * sizeof *v);
      if (v == NULL) {
        relay_fail(r, 0, "out of memory%s", NULL);
        return -1;
      }
      r->pend = v;
      r->pend_cap = cap;
    }
  }
  r->pend[r->pend_head + r->npend].cmd = cmd;
  r->pend[r->pend_head + r->npend].count = count;
  r->pend[r->pend_head + r->npend].left = count;
  r->npend++;
  return 0;
}

/* ---- setup -------------------------------------------------------------- */

static void relay_hello(smtpd_relay *r) {
  r->phase = PH_EHLO;
  r->ext = 0;
  r->size_max = 0;
  relay_line(r, r->setup.lmtp ? "LHLO " : "EHLO ", r->setup.helo);
}

static void relay_auth(smtpd_relay *r) {
  const char *u = r->setup.user, *pw = r->setup.password;
  size_t ul = strlen(u), pl = strlen(pw);
  int login = r->setup.mechanism == 2 ||
              (r->setup.mechanism == 0 && !(r->ext & SMTPD_EXT_AUTH_PLAIN));
  char *msg;
  if (login) {
    r->phase = PH_AUTH;              /* waiting for 334 */
    r->auth_login = 1;
    relay_line(r, "AUTH LOGIN", NULL);
    return;
  }
  r->phase = PH_AUTH;
  r->auth_login = 0;
  msg = malloc(ul + pl + 2);
  if (msg == NULL) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return;
  }
  msg[0] = '\0';
  memcpy(msg + 1, u, ul);
  msg[ul + 1] = '\0';
  memcpy(msg + ul + 2, pw, pl);
  relay_b64_line(r, "AUTH PLAIN ", msg, ul + pl + 2);
  relay_wipe(msg, ul + pl + 2);
  free(msg);
}

/* After EHLO or HELO: STARTTLS, AUTH, then READY. */
static void relay_after_hello(smtpd_relay *r) {
  if (!r->tls_on && r->setup.starttls && !r->tls_tried) {
    if (r->ext & SMTPD_EXT_STARTTLS) {
      r->phase = PH_STARTTLS;
      relay_line(r, "STARTTLS", NULL);
      return;
    }
    if (r->setup.starttls == SMTPD_STARTTLS_REQUIRE) {
      r->phase = PH_STARTTLS;
      relay_fail(r, 0, "starttls: the server does not offer STARTTLS%s",
                 " (relay.starttls = \"require\")");
      return;
    }
  }
  if (r->setup.user && !r->authed) {
    unsigned want;
    r->phase = PH_AUTH;
    if (!r->tls_on && !r->setup.plaintext) {
      relay_fail(r, 0, "auth: no TLS, so no credentials sent%s",
                 " (set relay.auth.plaintext = true to send them anyway)");
      return;
    }
    want = r->setup.mechanism == 1 ? SMTPD_EXT_AUTH_PLAIN
         : r->setup.mechanism == 2 ? SMTPD_EXT_AUTH_LOGIN
         : SMTPD_EXT_AUTH_PLAIN | SMTPD_EXT_AUTH_LOGIN;
    if (!(r->ext & want)) {
      relay_fail(r, 0, "auth: the server offers no AUTH %s",
                 r->setup.mechanism == 1 ? "PLAIN" :
                 r->setup.mechanism == 2 ? "LOGIN" : "PLAIN or LOGIN");
      return;
    }
    relay_auth(r);
    return;
  }
  r->phase = PH_READY;
  relay_event(r, SMTPD_RELAY_EV_READY);
}

static int kw_is(const char *line, size_t n, const char *kw) {
  size_t i, kl = strlen(kw);
  if (n < kl) return 0;
  for (i = 0; i < kl; i++)
    if (smtpd_upper(line[i]) != kw[i]) return 0;
  return n == kl || line[kl] == ' ' || line[kl] == '=';
}

/* What one EHLO line (after the first) offers. */
static void relay_ehlo_line(smtpd_relay *r, const char *t, size_t n) {
  static const struct { const char *kw; unsigned bit; } exts[] = {
    {"SIZE", SMTPD_EXT_SIZE}, {"8BITMIME", SMTPD_EXT_8BITMIME},
    {"SMTPUTF8", SMTPD_EXT_SMTPUTF8}, {"STARTTLS", SMTPD_EXT_STARTTLS},
    {"DSN", SMTPD_EXT_DSN}, {"PIPELINING", SMTPD_EXT_PIPELINING},
    {"CHUNKING", SMTPD_EXT_CHUNKING}, {"BINARYMIME", SMTPD_EXT_BINARYMIME},
    {"ENHANCEDSTATUSCODES", SMTPD_EXT_ENHANCED},
    {"REQUIRETLS", SMTPD_EXT_REQUIRETLS}
  };
  size_t i;
  for (i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    if (kw_is(t, n, exts[i].kw)) {
      r->ext |= exts[i].bit;
      if (exts[i].bit == SMTPD_EXT_SIZE && n > 5) {
        size_t k = 5, v;
        while (k < n && t[k] == ' ') k++;
        if (k < n && strspn(t + k, "0123456789") >= n - k &&
            smtpd_digits(t + k, n - k, (size_t)-1, &v))
          r->size_max = v;
      }
      return;
    }
  }
  if (kw_is(t, n, "AUTH")) {
    /* AUTH mech mech ... (or the old AUTH=mech form) */
    i = 5;
    while (i < n) {
      size_t k = i;
      while (k < n && t[k] != ' ') k++;
      if (kw_is(t + i, k - i, "PLAIN")) r->ext |= SMTPD_EXT_AUTH_PLAIN;
      if (kw_is(t + i, k - i, "LOGIN")) r->ext |= SMTPD_EXT_AUTH_LOGIN;
      i = k + 1;
    }
  }
}

/* What each setup phase waits for, and what a failure there is called
 * (an AUTH phase waits for 334 while a LOGIN exchange goes on). */
static const struct {
  int want;
  const char *what;
} setup_wants[] = {
  [PH_GREETING] = {220, "greeting"}, [PH_EHLO] = {250, "EHLO"},
  [PH_HELO] = {250, "HELO"},         [PH_STARTTLS] = {220, "starttls"},
  [PH_AUTH] = {235, "auth"},         [PH_AUTH_USER] = {334, "auth"},
  [PH_AUTH_PASS] = {235, "auth"},
};

/* The reply that is not the one waited for: EHLO refused by an SMTP
 * server falls back to HELO, an opportunistic STARTTLS refused goes on
 * in the clear; 1 when handled so. */
static int relay_setup_fallback(smtpd_relay *r, int code) {
  if (r->phase == PH_EHLO && !r->setup.lmtp && code >= 500) {
    r->phase = PH_HELO;
    r->ext = 0;
    relay_line(r, "HELO ", r->setup.helo);
    return 1;
  }
  if (r->phase == PH_STARTTLS &&
      r->setup.starttls != SMTPD_STARTTLS_REQUIRE) {
    r->tls_tried = 1;
    relay_after_hello(r);
    return 1;
  }
  return 0;
}

/* A whole reply during setup. */
static void relay_setup_reply(smtpd_relay *r, int code) {
  int want;
  if ((size_t)r->phase >= sizeof setup_wants / sizeof setup_wants[0] ||
      setup_wants[r->phase].what == NULL)
    return;
  want = setup_wants[r->phase].want;
  if (r->phase == PH_AUTH && r->auth_login) want = 334;
  if (code != want) {
    if (!relay_setup_fallback(r, code))
      relay_fail_reply(r, code, r->phase == PH_EHLO && r->setup.lmtp
                                    ? "LHLO" : setup_wants[r->phase].what);
    return;
  }
  switch (r->phase) {
  case PH_GREETING:
    relay_hello(r);
    return;
  case PH_EHLO:
    r->esmtp = 1;
    /* fall through */
  case PH_HELO:
    relay_after_hello(r);
    return;
  case PH_STARTTLS:
    r->phase = PH_TLS;
    relay_event(r, SMTPD_RELAY_EV_STARTTLS);
    return;
  case PH_AUTH:
    if (r->auth_login) {
      r->phase = PH_AUTH_USER;
      relay_b64_line(r, "", r->setup.user, strlen(r->setup.user));
      return;
    }
    /* fall through */
  case PH_AUTH_PASS:
    r->authed = 1;
    r->phase = PH_READY;
    relay_event(r, SMTPD_RELAY_EV_READY);
    return;
  case PH_AUTH_USER:
    r->phase = PH_AUTH_PASS;
    relay_b64_line(r, "", r->setup.password, strlen(r->setup.password));
    return;
  default:
    return;
  }
}

void smtpd_relay_tls_up(smtpd_relay *r) {
  if (r->phase == PH_DONE) return;
  r->tls_on = 1;
  if (r->phase == PH_GREETING) return;    /* implicit TLS: the greeting */
  r->authed = 0;
  relay_hello(r);
}

/* ---- replies to the owner's commands ------------------------------------ */

static void relay_command_reply(smtpd_relay *r, int code) {
  smtpd_relay_event ev;
  smtpd_relay_pend *pd;
  int cmd;
  if (r->npend == 0) {
    if (code == 421) relay_fail_reply(r, code, "the server closed");
    else relay_fail_reply(r, code, "a reply nobody asked for");
    return;
  }
  pd = &r->pend[r->pend_head];
  cmd = pd->cmd;
  memset(&ev, 0, sizeof ev);
  ev.kind = SMTPD_RELAY_EV_REPLY;
  ev.cmd = cmd;
  ev.code = code;
  ev.text = r->text.p ? r->text.p : "";
  ev.len = r->text.len;
  ev.lines = r->lines;
  ev.stage = cmd_names[cmd];
  /* LMTP: the end of the data has one reply for each accepted
   * recipient, in RCPT order (index). */
  ev.index = pd->count - pd->left;
  ev.last = pd->left == 1;
  if (--pd->left == 0) {
    r->pend_head++;
    r->npend--;
    if (r->npend == 0) r->pend_head = 0;
  }
  if (cmd == SMTPD_RC_RCPT && code >= 200 && code < 300) r->rcpt_ok++;
  if (cmd == SMTPD_RC_RSET || cmd == SMTPD_RC_MAIL) r->rcpt_ok = 0;
  if (code == 421 || cmd == SMTPD_RC_QUIT) r->closing = 1;
  r->fn(r->ctx, &ev);
}

/* ---- input -------------------------------------------------------------- */

/* One complete reply line (without its line end). */
static void relay_reply_line(smtpd_relay *r, const char *p, size_t n) {
  int more = 0, code = smtpd_reply_code(p, n, &more);
  if (code < 0) {
    relay_fail(r, 0, "%s: a malformed reply from the server",
               smtpd_relay_stage(r));
    return;
  }
  if (r->lines && code != r->code) {
    relay_fail(r, 0, "%s: a reply whose lines disagree on its code",
               smtpd_relay_stage(r));
    return;
  }
  if (++r->lines > RELAY_REPLY_LINES ||
      r->text.len + n > RELAY_REPLY_BYTES) {
    relay_fail(r, 0, "%s: a reply of more than 100 lines or 16 KiB from "
               "the server", smtpd_relay_stage(r));
    return;
  }
  r->code = code;
  if ((r->lines > 1 && smtpd_buf_appendc(&r->text, '\n')) ||
      (n > 4 && smtpd_buf_append(&r->text, p + 4, n - 4))) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return;
  }
  if (r->phase == PH_EHLO && r->lines > 1 && n > 4)
    relay_ehlo_line(r, p + 4, n - 4);
  if (more) return;
  /* The reply is whole. */
  if (r->phase == PH_READY) relay_command_reply(r, code);
  else relay_setup_reply(r, code);
  r->lines = 0;
  r->text.len = 0;
  if (r->text.p) r->text.p[0] = '\0';
  if (r->text.cap > RELAY_REPLY_BYTES) smtpd_buf_free(&r->text);
}

void smtpd_relay_input(smtpd_relay *r, const char *p, size_t n) {
  size_t i = 0;
  while (i < n && r->phase != PH_DONE) {
    const char *lf;
    if (r->phase == PH_TLS) {
      /* Whatever came in plaintext behind the 220 to STARTTLS is
       * dropped: read as a reply to what we send over TLS, it would be
       * the injection of CVE-2021-38371. */
      r->line.len = 0;
      return;
    }
    lf = memchr(p + i, '\n', n - i);
    size_t run = lf ? (size_t)(lf - (p + i)) : n - i;
    if (r->line.len + run > RELAY_LINE_MAX) {
      relay_fail(r, 0, "%s: a reply line longer than 4096 bytes",
                 smtpd_relay_stage(r));
      return;
    }
    if (run && smtpd_buf_append(&r->line, p + i, run)) {
      relay_fail(r, 0, "out of memory%s", NULL);
      return;
    }
    i += run;
    if (!lf) return;
    i++;
    {
      size_t len = r->line.len;
      if (len && r->line.p[len - 1] == '\r') len--;
      relay_reply_line(r, r->line.p ? r->line.p : "", len);
      r->line.len = 0;
    }
  }
}

/* ---- the owner's commands ----------------------------------------------- */

int smtpd_relay_usable(const smtpd_relay *r) {
  return r->phase == PH_READY && !r->closing;
}

int smtpd_relay_send(smtpd_relay *r, int cmd, const char *line, size_t n) {
  if (!smtpd_relay_usable(r) || n == 0 || memchr(line, '\r', n) ||
      memchr(line, '\n', n) || memchr(line, '\0', n))
    return -1;
  if (smtpd_buf_reserve(&r->out, n + 2)) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return -1;
  }
  smtpd_buf_append(&r->out, line, n);
  smtpd_buf_append(&r->out, "\r\n", 2);
  if (cmd == SMTPD_RC_MAIL) r->rcpt_ok = 0;
  if (cmd == SMTPD_RC_DATA) {
    r->bol = 1;
    r->cr = 0;
  }
  return relay_expect(r, cmd, 1);
}

int smtpd_relay_body(smtpd_relay *r, const char *p, size_t n) {
  size_t i = 0;
  if (!smtpd_relay_usable(r)) return -1;
  if (smtpd_buf_reserve(&r->out, n + n / 16 + 8)) {
    relay_fail(r, 0, "out of memory%s", NULL);
    return -1;
  }
  if (r->cr && n) {
    /* A CR ended the last piece: its LF may start this one. */
    r->cr = 0;
    if (p[0] == '\n') i = 1;
    if (smtpd_buf_append(&r->out, "\r\n", 2)) goto nomem;
    r->bol = 1;
  }
  while (i < n) {
    size_t run = i;
    if (r->bol && p[i] == '.' && smtpd_buf_appendc(&r->out, '.')) goto nomem;
    while (run < n && p[run] != '\r' && p[run] != '\n') run++;
    if (run > i && smtpd_buf_append(&r->out, p + i, run - i)) goto nomem;
    r->bol = 0;
    if (run == n) break;
    if (p[run] == '\r' && run + 1 == n) {
      r->cr = 1;                    /* decide with the next piece */
      return 0;
    }
    if (smtpd_buf_append(&r->out, "\r\n", 2)) goto nomem;
    r->bol = 1;
    i = run + (p[run] == '\r' && p[run + 1] == '\n' ? 2 : 1);
  }
  return 0;
nomem:
  relay_fail(r, 0, "out of memory%s", NULL);
  return -1;
}

int smtpd_relay_dot(smtpd_relay *r) {
  if (!smtpd_relay_usable(r)) return -1;
  if ((r->cr || !r->bol) && relay_out(r, "\r\n", 2)) return -1;
  r->cr = 0;
  r->bol = 1;
  if (relay_out(r, ".\r\n", 3)) return -1;
  return relay_expect(r, SMTPD_RC_DOT,
                      r->setup.lmtp && r->rcpt_ok ? r->rcpt_ok : 1);
}

int smtpd_relay_bdat(smtpd_relay *r, const char *p, size_t n, int last) {
  char head[64];
  int k;
  if (!smtpd_relay_usable(r)) return -1;
  k = snprintf(head, sizeof head, "BDAT %zu%s\r\n", n, last ? " LAST" : "");
  if (relay_out(r, head, (size_t)k) || relay_out(r, p, n)) return -1;
  return relay_expect(r, SMTPD_RC_BDAT, last && r->setup.lmtp && r->rcpt_ok
                                        ? r->rcpt_ok : 1);
}
