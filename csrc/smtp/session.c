/*
 * The SMTP state machine: per-connection protocol state and the built-in
 * commands, with CPython smtpd's replies byte for byte. No Lua, no libuv:
 * replies are appended to s->out.
 *
 * Where smtpd crashes or breaks RFC 5321 we follow the RFC (README.md,
 * "Where it differs from CPython's smtpd"):
 * invalid UTF-8, bare CR/LF/NUL in a command line, a SIZE without a value
 * and addresses outside RFC 5321's path syntax get a 500/501 reply.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

#define SMTPD_VERB_NAME(v) #v,
const char *const smtpd_verb_names[SMTPD_NVERBS] = {
  SMTPD_VERBS(SMTPD_VERB_NAME)
};
#undef SMTPD_VERB_NAME

int smtpd_session_init(smtpd_session *s, smtpd_buf *out, const char *fqdn,
                       size_t fqdn_len) {
  memset(s, 0, sizeof *s);
  smtpd_parser_init(&s->parser, SMTPD_LINE_KEEP);
  s->out = out;
  s->data_size_limit = SMTPD_DATA_SIZE_DEFAULT;
  s->command_size_limit = SMTPD_COMMAND_SIZE_LIMIT;
  s->max_recipients = SMTPD_MAX_RECIPIENTS;
  s->max_bad = SMTPD_MAX_BAD_COMMANDS;
  s->ctx = SMTPD_CTX_GREETING;
  return smtpd_str_set(&s->fqdn, fqdn, fqdn_len);
}

void smtpd_session_configure(smtpd_session *s, const smtpd_session_conf *c) {
  s->data_size_limit = c->data_size_limit;
  s->enable_smtputf8 = c->enable_smtputf8;
  s->decode_data = c->decode_data;
  s->max_recipients = c->max_recipients;
  s->max_bad = c->max_bad;
  s->require_starttls = c->require_starttls;
  s->auth_require_tls = c->auth_require_tls;
  s->auth_required = c->auth_required;
  s->pipelining = c->pipelining;
  s->chunking = c->chunking;
  s->binarymime = c->binarymime && c->chunking;
  s->enhanced = c->enhanced;
  s->lmtp = c->lmtp;
  s->dsn = c->dsn;
  s->requiretls = c->requiretls;
  smtpd_session_sync(s);
}

void smtpd_session_free(smtpd_session *s) {
  smtpd_str_free(&s->pending_path);
  smtpd_strlist_clear(&s->pending_params);
  smtpd_str_free(&s->pending_raw);
  smtpd_str_free(&s->dsn_mail);
  smtpd_parser_free(&s->parser);
  smtpd_str_free(&s->greeting);
  smtpd_str_free(&s->mailfrom);
  smtpd_strlist_clear(&s->rcpttos);
  smtpd_strlist_clear(&s->rcpt_dsn);
  smtpd_strlist_clear(&s->mail_options);
  smtpd_strlist_clear(&s->rcpt_options);
  smtpd_str_free(&s->fqdn);
  smtpd_str_free(&s->auth_user);
}

/* Appends one reply line as given (hooks' push, handler replies). */
/* ---- enhanced status codes (RFC 2034, RFC 3463) ------------------------- */

/* Does the reply carry class.subject.detail already (after "NNN ")? */
static int has_enhanced(const char *l, size_t n) {
  size_t i = 4, k;
  int part;
  if (n < 9 || l[4] != l[0]) return 0;
  for (part = 0; part < 3; part++) {
    k = i;
    while (i < n && i - k < 3 && l[i] >= '0' && l[i] <= '9') i++;
    if (i == k) return 0;
    if (part < 2) {
      if (i >= n || l[i] != '.') return 0;
      i++;
    }
  }
  return i == n || l[i] == ' ';
}

/* The code for a reply that has none, from its code and what it answers. */
static const char *enhanced_for(const smtpd_session *s, const char *l) {
  int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
  int ctx = s->ctx;
  switch (code) {
  case 250:
    if (ctx == SMTPD_VERB_MAIL) return "2.1.0";
    if (ctx == SMTPD_VERB_RCPT) return "2.1.5";
    if (ctx == SMTPD_CTX_MESSAGE) return "2.6.0";
    return "2.0.0";
  case 251: return "2.1.5";
  case 252: return "2.0.0";
  case 235: return "2.7.0";
  case 421: return "4.3.2";
  case 450: return "4.2.0";
  case 451: return "4.3.0";
  case 452: return ctx == SMTPD_VERB_RCPT ? "4.5.3" : "4.3.1";
  case 454: return "4.7.0";
  case 500: return "5.5.2";
  case 501:
    return ctx == SMTPD_VERB_MAIL || ctx == SMTPD_VERB_RCPT ? "5.5.4" : "5.5.2";
  case 502: return "5.5.1";
  case 503: return "5.5.1";
  case 504: return "5.5.4";
  case 530: return "5.7.0";
  case 534: return "5.7.9";
  case 535: return "5.7.8";
  case 538: return "5.7.11";
  case 550:
    if (ctx == SMTPD_VERB_RCPT) return "5.1.1";
    if (ctx == SMTPD_VERB_MAIL) return "5.1.0";
    if (ctx == SMTPD_CTX_MESSAGE) return "5.6.0";
    return "5.0.0";
  case 551: return "5.1.6";
  case 552: return "5.3.4";
  case 553: return "5.1.3";
  case 554: return ctx == SMTPD_CTX_MESSAGE ? "5.6.0" : "5.0.0";
  case 555: return "5.5.4";
  default: break;
  }
  if (l[0] == '2') return "2.0.0";
  if (l[0] == '4') return "4.0.0";
  return "5.0.0";
}

/* Writes one reply line, with an enhanced code put in when they are on:
 * every 2xx, 4xx and 5xx reply but the greeting and HELO/EHLO's 250. */
static int reply_enhanced(smtpd_session *s, const char *line, size_t len) {
  const char *e;
  size_t el;
  if (smtpd_buf_reserve(s->out, len + 16)) return -1;
  e = enhanced_for(s, line);
  el = strlen(e);
  smtpd_buf_append(s->out, line, 3);
  smtpd_buf_appendc(s->out, len > 3 && line[3] == '-' ? '-' : ' ');
  smtpd_buf_append(s->out, e, el);
  if (len > 4) {
    /* The code must not push the line past RFC 5321's 512 octets. */
    size_t room = SMTPD_REPLY_MAX - 5 - el, text = len - 4;
    smtpd_buf_appendc(s->out, ' ');
    smtpd_buf_append(s->out, line + 4, text < room ? text : room);
  }
  return smtpd_buf_append(s->out, "\r\n", 2);
}

int smtpd_reply_raw(smtpd_session *s, const char *line, size_t len) {
  if (s->enhanced && len >= 3 &&
      (line[0] == '2' || line[0] == '4' || line[0] == '5') &&
      !has_enhanced(line, len) &&
      !(s->ctx == SMTPD_CTX_GREETING && line[0] == '2') &&
      !((s->ctx == SMTPD_VERB_HELO || s->ctx == SMTPD_VERB_EHLO) &&
        line[0] == '2'))
    return reply_enhanced(s, line, len);
  if (smtpd_buf_reserve(s->out, len + 2)) return -1;
  smtpd_buf_append(s->out, line, len);
  return smtpd_buf_append(s->out, "\r\n", 2);
}

/* 500 and 501 replies count as bad commands: past max_bad the session
 * says 421 and ends (smtpd had no such limit). */
static void session_count_bad(smtpd_session *s, const char *line, size_t len) {
  if (len >= 4 && line[0] == '5' && line[1] == '0' &&
      (line[2] == '0' || line[2] == '1') && !s->quit && s->max_bad &&
      ++s->bad > s->max_bad) {
    smtpd_replyf(s, "421 4.7.0 %s Error: too many bad commands, closing",
                 s->fqdn.p ? s->fqdn.p : "");
    s->quit = 1;
  }
}

/* A reply of the engine's own. */
int smtpd_reply(smtpd_session *s, const char *line, size_t len) {
  int r = smtpd_reply_raw(s, line, len);
  session_count_bad(s, line, len);
  return r;
}

int smtpd_replyf(smtpd_session *s, const char *fmt, ...) {
  char tmp[1024];
  int n;
  va_list ap;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
  return smtpd_reply(s, tmp, (size_t)n);
}

#define REPLY(s, lit) smtpd_reply((s), lit, sizeof(lit) - 1)

/* Appends text that echoes client input into a reply: anything that is not
 * printable ASCII becomes '?', so a reply can never be split or smuggled. */
static int session_reply_echo(smtpd_session *s, const char *pre,
                              const char *p, size_t n, const char *post) {
  size_t i, lp = strlen(pre), lq = strlen(post);
  char line[1100];
  if (n > 1000) n = 1000;
  if (lp + n + lq > sizeof line) return -1;
  memcpy(line, pre, lp);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    line[lp + i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  memcpy(line + lp + n, post, lq);
  if (smtpd_reply_raw(s, line, lp + n + lq)) return -1;
  session_count_bad(s, pre, lp);
  return 0;
}

static void session_drop_pending(smtpd_session *s);
static int session_binary(const smtpd_session *s);
static int rcpt_dsn_keep(smtpd_session *s, const char *raw, size_t rn,
                         const char *addr, size_t alen);

/* Clears the transaction, as smtpd's _set_post_data_state. */
void smtpd_session_post_data(smtpd_session *s) {
  s->state = SMTPD_COMMAND;
  smtpd_str_free(&s->mailfrom);
  s->has_mailfrom = 0;
  smtpd_strlist_clear(&s->rcpttos);
  smtpd_strlist_clear(&s->rcpt_dsn);
  smtpd_str_free(&s->dsn_mail);
  s->require_smtputf8 = 0;
  s->num_bytes = 0;
  if (s->parser.data_mode) smtpd_parser_end_data(&s->parser);
  if (s->bdat || s->bdat_failed) smtpd_parser_drop_data(&s->parser);
  s->bdat = s->bdat_failed = 0;
  session_drop_pending(s);
}

/* As smtpd's _set_rset_state: everything but the greeting. */
void smtpd_session_rset(smtpd_session *s) {
  smtpd_session_post_data(s);
  s->rset_gen++;
}

void smtpd_session_sync(smtpd_session *s) {
  size_t keep = s->command_size_limit + s->mail_extra;
  if (s->auth_mechs && keep < SMTPD_AUTH_LINE_MAX) keep = SMTPD_AUTH_LINE_MAX;
  s->parser.line_keep = keep + 1;
  if (s->state == SMTPD_DATA && !s->parser.data_mode) {
    smtpd_parser_begin_data(&s->parser, s->data_size_limit);
  } else if (s->state != SMTPD_DATA && s->parser.data_mode) {
    smtpd_parser_end_data(&s->parser);
  }
}

/* ---- text helpers ------------------------------------------------------ */

int smtpd_verb_lookup(const char *name, size_t len) {
  int i;
  if (len != 4) return -1;
  for (i = 0; i < SMTPD_NVERBS; i++) {
    if (memcmp(name, smtpd_verb_names[i], 4) == 0) return i;
  }
  return -1;
}


/* _strip_command_keyword: the rest after "FROM:"/"TO:", stripped, or "". */
static void strip_keyword(const char *kw, const char **arg, size_t *n) {
  size_t kl = strlen(kw);
  if (*arg && smtpd_has_keyword(*arg, *n, kw)) {
    *arg += kl;
    *n -= kl;
    smtpd_ustrip(arg, n);
  } else {
    *arg = "";
    *n = 0;
  }
}

static void cmd_greet(smtpd_session *s, const char *arg, size_t n, int ext) {
  const char *fq = s->fqdn.p ? s->fqdn.p : "";
  if (!arg || n == 0) {
    if (ext) REPLY(s, "501 Syntax: EHLO hostname");
    else REPLY(s, "501 Syntax: HELO hostname");
    return;
  }
  if (s->greeting.len) {
    REPLY(s, "503 Duplicate HELO/EHLO");
    return;
  }
  smtpd_session_rset(s);
  if (smtpd_str_set(&s->greeting, arg, n)) {
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  if (!ext) {
    smtpd_replyf(s, "250 %s", fq);
    return;
  }
  s->extended_smtp = 1;
  smtpd_replyf(s, "250-%s", fq);
  if (s->data_size_limit) {
    smtpd_replyf(s, "250-SIZE %zu", s->data_size_limit);
    s->mail_extra += 26;
  }
  if (!s->decode_data) REPLY(s, "250-8BITMIME");
  if (s->enable_smtputf8) {
    REPLY(s, "250-SMTPUTF8");
    s->mail_extra += 10;
  }
  /* Replies to a pipelined group are queued and leave together, and a
   * command waits for the one before it (hooks included). */
  if (s->pipelining) REPLY(s, "250-PIPELINING");
  if (s->chunking) REPLY(s, "250-CHUNKING");
  if (s->binarymime) REPLY(s, "250-BINARYMIME");
  if (s->enhanced) REPLY(s, "250-ENHANCEDSTATUSCODES");
  if (s->dsn) REPLY(s, "250-DSN");
  /* RFC 8689 2: only where the session is encrypted already. */
  if (s->requiretls && s->tls_on) REPLY(s, "250-REQUIRETLS");
  if (s->tls_offer && !s->tls_on) REPLY(s, "250-STARTTLS");
  if (s->auth_mechs && (s->tls_on || !s->auth_require_tls)) {
    smtpd_replyf(s, "250-AUTH %s", s->auth_mechs);
    s->mail_extra += 500;     /* AUTH=<mailbox> (RFC 4954 5) */
  }
  REPLY(s, "250 HELP");
}

static void cmd_help(smtpd_session *s, const char *arg, size_t n) {
  static const char *const simple[][2] = {
    {"EHLO", "250 Syntax: EHLO hostname"}, {"HELO", "250 Syntax: HELO hostname"},
    {"DATA", "250 Syntax: DATA"}, {"RSET", "250 Syntax: RSET"},
    {"NOOP", "250 Syntax: NOOP"}, {"QUIT", "250 Syntax: QUIT"},
    {"VRFY", "250 Syntax: VRFY <address>"}
  };
  size_t i;
  char up[8];
  if (!arg || n == 0) {
    REPLY(s, "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP "
             "QUIT VRFY");
    return;
  }
  if (n == 4) {
    for (i = 0; i < 4; i++) up[i] = smtpd_upper(arg[i]);
    up[4] = '\0';
    for (i = 0; i < sizeof simple / sizeof simple[0]; i++) {
      if (strcmp(up, simple[i][0]) == 0) {
        smtpd_reply(s, simple[i][1], strlen(simple[i][1]));
        return;
      }
    }
    if (strcmp(up, "MAIL") == 0 || strcmp(up, "RCPT") == 0) {
      smtpd_replyf(s, "250 Syntax: %s: <address>%s",
                   up[0] == 'M' ? "MAIL FROM" : "RCPT TO",
                   s->extended_smtp ? " [SP <mail-parameters>]" : "");
      return;
    }
  }
  REPLY(s, "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT "
           "VRFY");
}

static void cmd_vrfy(smtpd_session *s, const char *arg, size_t n) {
  smtpd_addr o;
  const char *rest;
  size_t rn;
  if (!arg || n == 0) {
    REPLY(s, "501 Syntax: VRFY <address>");
    return;
  }
  if (smtpd_addr_parse(arg, n, &o, &rest, &rn)) {
    REPLY(s, "252 Cannot VRFY user, but will accept message and attempt "
             "delivery");
  } else {
    session_reply_echo(s, "502 Could not VRFY ", arg, n, "");
  }
}

void smtpd_syntax_reply(const smtpd_session *s, const char *kw, char *buf,
                        size_t size) {
  const char *what = strcmp(kw, "FROM:") == 0 ? "MAIL FROM" :
                     strcmp(kw, "TO:") == 0 ? "RCPT TO" : NULL;
  size_t kl = strlen(kw);
  if (what == NULL && kl && kw[kl - 1] == ':') kl--;
  snprintf(buf, size, "501 Syntax: %.*s: <address>%s",
           what ? (int)strlen(what) : (int)kl, what ? what : kw,
           s->extended_smtp ? " [SP <mail-parameters>]" : "");
}

static void syntaxerr(smtpd_session *s, const char *kw) {
  char buf[128];
  smtpd_syntax_reply(s, kw, buf, sizeof buf);
  smtpd_reply(s, buf, strlen(buf));
}

int smtpd_session_path(const smtpd_session *s, const char *kw,
                       const char *arg, size_t n, smtpd_addr *o,
                       const char **rest, size_t *rn) {
  if (!arg) return 0;
  strip_keyword(kw, &arg, &n);
  if (!smtpd_addr_parse(arg, n, o, rest, rn)) return 0;
  /* A null reverse-path is not a recipient (RFC 5321 4.1.1.3). */
  if (strcmp(kw, "TO:") == 0 && o->len == 2 && memcmp(o->buf, "<>", 2) == 0)
    return 0;
  return s->extended_smtp || *rn == 0;
}

/* A MAIL or RCPT that passed every built-in check, while a script checks
 * them: kept until smtpd_session_settle, nothing answered. */
static void session_hold(smtpd_session *s, int verb, const smtpd_addr *o,
                         smtpd_strlist *params, int smtputf8) {
  if (smtpd_str_set(&s->pending_path, o->buf, o->len)) {
    if (params) smtpd_strlist_clear(params);
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  smtpd_strlist_clear(&s->pending_params);
  if (params) s->pending_params = *params;
  s->pending = verb + 1;
  s->pending_smtputf8 = smtputf8;
}

static void session_drop_pending(smtpd_session *s) {
  s->pending = 0;
  smtpd_str_free(&s->pending_raw);
  smtpd_str_free(&s->pending_path);
  smtpd_strlist_clear(&s->pending_params);
}

int smtpd_session_settle(smtpd_session *s, int accept, const char *reply,
                         size_t n) {
  int verb = s->pending - 1;
  if (!s->pending) return -1;
  s->pending = 0;
  if (!accept) {
    if (verb == SMTPD_VERB_MAIL) smtpd_strlist_clear(&s->mail_options);
  } else if (verb == SMTPD_VERB_MAIL) {
    smtpd_str_free(&s->mailfrom);
    s->mailfrom = s->pending_path;           /* taken over */
    s->pending_path.p = NULL;
    s->pending_path.len = 0;
    s->has_mailfrom = 1;
    s->require_smtputf8 = s->pending_smtputf8;
    smtpd_str_free(&s->dsn_mail);
    s->dsn_mail = s->pending_raw;            /* taken over */
    s->pending_raw.p = NULL;
    s->pending_raw.len = 0;
  } else if (smtpd_strlist_push(&s->rcpttos, s->pending_path.p,
                                s->pending_path.len)) {
    reply = SMTPD_ERR_REPLY;
    n = sizeof SMTPD_ERR_REPLY - 1;
  } else if (rcpt_dsn_keep(s, s->pending_raw.p, s->pending_raw.len,
                           s->pending_path.p, s->pending_path.len)) {
    s->rcpttos.n--;
    smtpd_str_free(&s->rcpttos.v[s->rcpttos.n]);
    reply = SMTPD_ERR_REPLY;
    n = sizeof SMTPD_ERR_REPLY - 1;
  } else {
    smtpd_strlist_clear(&s->rcpt_options);
    s->rcpt_options = s->pending_params;     /* taken over */
    memset(&s->pending_params, 0, sizeof s->pending_params);
  }
  session_drop_pending(s);
  if (reply) smtpd_reply(s, reply, n);
  else REPLY(s, "250 OK");
  return 0;
}

/* ---- DSN (RFC 3461) and REQUIRETLS (RFC 8689) parameters ---------------- */

static int word_ieq(const char *p, size_t n, const char *w) {
  size_t i, wl = strlen(w);
  if (n != wl) return 0;
  for (i = 0; i < n; i++)
    if (smtpd_upper(p[i]) != w[i]) return 0;
  return 1;
}

/* NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE, DELAY (once each). */
static int notify_valid(const char *v, size_t n) {
  int seen = 0;
  size_t i = 0;
  if (word_ieq(v, n, "NEVER")) return 1;
  while (i <= n) {
    size_t j = i;
    int bit;
    while (j < n && v[j] != ',') j++;
    if (word_ieq(v + i, j - i, "SUCCESS")) bit = 1;
    else if (word_ieq(v + i, j - i, "FAILURE")) bit = 2;
    else if (word_ieq(v + i, j - i, "DELAY")) bit = 4;
    else return 0;
    if (seen & bit) return 0;
    seen |= bit;
    if (j == n) return 1;
    i = j + 1;
  }
  return 0;
}

/* ORCPT=addr-type;xtext, addr-type an atom (rfc822, utf-8, ...). */
static int orcpt_valid(const char *v, size_t n) {
  const char *semi = memchr(v, ';', n);
  size_t i, tl;
  if (!semi || n > 500) return 0;
  tl = (size_t)(semi - v);
  if (tl == 0) return 0;
  for (i = 0; i < tl; i++) {
    unsigned char c = (unsigned char)v[i];
    if (!(isalnum(c) || c == '-')) return 0;
  }
  return n - tl - 1 > 0 && smtpd_xtext_valid(semi + 1, n - tl - 1) &&
         !(n - tl - 1 == 2 && semi[1] == '<');
}

/* The MAIL parameters DSN and REQUIRETLS add: 0, or a reply sent. */
static int mail_dsn_check(smtpd_session *s) {
  const char *val;
  size_t vlen;
  if (s->dsn && smtpd_params_find(&s->mail_options, "RET", &val, &vlen) >= 0
      && !(val && (word_ieq(val, vlen, "FULL") || word_ieq(val, vlen, "HDRS")))) {
    REPLY(s, "501 Syntax: RET=FULL or RET=HDRS");
    return 1;
  }
  if (s->dsn && smtpd_params_find(&s->mail_options, "ENVID", &val, &vlen) >= 0
      && !(val && vlen <= 100 && smtpd_xtext_valid(val, vlen) &&
           !(vlen == 2 && val[0] == '<'))) {
    REPLY(s, "501 Syntax: ENVID=xtext (100 characters at most)");
    return 1;
  }
  if (s->requiretls && s->tls_on &&
      smtpd_params_find(&s->mail_options, "REQUIRETLS", &val, &vlen) >= 0 &&
      val) {
    REPLY(s, "501 Syntax: REQUIRETLS takes no value");
    return 1;
  }
  return 0;
}

/* The RCPT parameters of DSN: 0 all known and valid, 555 unknown, or 501
 * (sent) for a bad value. */
static int rcpt_dsn_check(smtpd_session *s, const smtpd_strlist *opts) {
  static const char *const known[] = {"NOTIFY", "ORCPT", NULL};
  const char *val;
  size_t vlen;
  if (!s->dsn || smtpd_params_others_but(opts, known, NULL)) {
    REPLY(s, "555 RCPT TO parameters not recognized or not implemented");
    return 1;
  }
  if (smtpd_params_find(opts, "NOTIFY", &val, &vlen) >= 0 &&
      !(val && notify_valid(val, vlen))) {
    REPLY(s, "501 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY");
    return 1;
  }
  if (smtpd_params_find(opts, "ORCPT", &val, &vlen) >= 0 &&
      !(val && orcpt_valid(val, vlen))) {
    REPLY(s, "501 Syntax: ORCPT=addr-type;xtext");
    return 1;
  }
  return 0;
}

/* Remembers an accepted recipient's DSN parameters for kwargs.dsn. */
static int rcpt_dsn_keep(smtpd_session *s, const char *raw, size_t rn,
                         const char *addr, size_t alen) {
  smtpd_buf b = {NULL, 0, 0};
  int r;
  const char *v;
  size_t vl;
  if (!s->dsn || !raw || (!smtpd_param_raw(raw, rn, "NOTIFY", &v, &vl) &&
                          !smtpd_param_raw(raw, rn, "ORCPT", &v, &vl)))
    return 0;
  /* As sent: ORCPT's address keeps its case. */
  r = smtpd_buf_append(&b, raw, rn);
  if (r == 0) r = smtpd_buf_appendc(&b, '\n');
  if (r == 0) r = smtpd_buf_append(&b, addr, alen);
  if (r == 0) r = smtpd_strlist_push(&s->rcpt_dsn, b.p, b.len);
  smtpd_buf_free(&b);
  return r;
}

static void cmd_mail(smtpd_session *s, const char *arg, size_t n) {
  static const char *const known[] = {"BODY", "SMTPUTF8", "SIZE", NULL};
  static const char *const known_nobody[] = {"SMTPUTF8", "SIZE", NULL};
  static const char *const known_noutf8[] = {"BODY", "SIZE", NULL};
  static const char *const known_none[] = {"SIZE", NULL};
  const char *const *k;
  smtpd_addr o;
  const char *rest, *val;
  size_t rn, vlen;
  int smtputf8;
  if (!s->greeting.len) {
    REPLY(s, "503 Error: send HELO first");
    return;
  }
  if (!smtpd_session_path(s, "FROM:", arg, n, &o, &rest, &rn)) {
    syntaxerr(s, "FROM:");
    return;
  }
  if (s->has_mailfrom) {
    REPLY(s, "503 Error: nested MAIL command");
    return;
  }
  if (smtpd_params_split(rest, rn, &s->mail_options)) {
    smtpd_strlist_clear(&s->mail_options);
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  if (!smtpd_params_valid(&s->mail_options)) {
    syntaxerr(s, "FROM:");
    return;
  }
  if (!s->decode_data && smtpd_params_find(&s->mail_options, "BODY", &val, &vlen) >= 0) {
    if (!val || !((vlen == 4 && memcmp(val, "7BIT", 4) == 0) ||
                  (vlen == 8 && memcmp(val, "8BITMIME", 8) == 0) ||
                  (s->binarymime && vlen == 10 &&
                   memcmp(val, "BINARYMIME", 10) == 0))) {
      if (s->binarymime)
        REPLY(s, "501 Error: BODY can only be one of 7BIT, 8BITMIME, "
                 "BINARYMIME");
      else
        REPLY(s, "501 Error: BODY can only be one of 7BIT, 8BITMIME");
      return;
    }
  }
  if (s->enable_smtputf8 &&
      smtpd_params_find(&s->mail_options, "SMTPUTF8", &val, &vlen) >= 0) {
    if (val) {
      REPLY(s, "501 Error: SMTPUTF8 takes no arguments");
      return;
    }
  }
  if (smtpd_params_find(&s->mail_options, "SIZE", &val, &vlen) >= 0) {
    size_t i, size = 0;
    int big = 0;
    /* smtpd crashes on a SIZE with no value; that is a syntax error. */
    if (!val) {
      syntaxerr(s, "FROM:");
      return;
    }
    for (i = 0; i < vlen; i++) {
      if (val[i] < '0' || val[i] > '9') {
        syntaxerr(s, "FROM:");
        return;
      }
      if (size > ((size_t)-1 - 9) / 10) big = 1;
      else size = size * 10 + (size_t)(val[i] - '0');
    }
    if (s->data_size_limit && (big || size > s->data_size_limit)) {
      REPLY(s, "552 Error: message size exceeds fixed maximum message size");
      return;
    }
  }
  if (s->decode_data) k = s->enable_smtputf8 ? known_nobody : known_none;
  else k = s->enable_smtputf8 ? known : known_noutf8;
  if (s->auth_mechs &&
      smtpd_params_find(&s->mail_options, "AUTH", &val, &vlen) >= 0) {
    /* RFC 4954 5: accepted (and left in mail_options), <> or xtext. */
    if (!val || !smtpd_xtext_valid(val, vlen)) {
      REPLY(s, "501 5.5.4 Syntax: AUTH=<mailbox> takes an xtext value");
      return;
    }
  }
  if (mail_dsn_check(s)) return;
  {
    /* AUTH, RET, ENVID and REQUIRETLS where offered. */
    static const char *const dsn_known[] = {"RET", "ENVID", NULL};
    const char *const *k2 = s->dsn ? dsn_known : NULL;
    size_t i;
    for (i = 0; i < s->mail_options.n; i++) {
      smtpd_strlist one = {&s->mail_options.v[i], 1, 1};
      const char *p = s->mail_options.v[i].p;
      size_t kl = strcspn(p, "=");
      if (s->auth_mechs && kl == 4 && memcmp(p, "AUTH", 4) == 0) continue;
      if (s->requiretls && s->tls_on && kl == 10 &&
          memcmp(p, "REQUIRETLS", 10) == 0)
        continue;
      if (k2 && !smtpd_params_others_but(&one, k2, NULL)) continue;
      if (!smtpd_params_others_but(&one, k, NULL)) continue;
      REPLY(s, "555 MAIL FROM parameters not recognized or not implemented");
      return;
    }
  }
  smtputf8 = s->enable_smtputf8 &&
             smtpd_params_find(&s->mail_options, "SMTPUTF8", &val, &vlen) >= 0;
  if (s->check) {
    session_hold(s, SMTPD_VERB_MAIL, &o, NULL, smtputf8);
    /* The parameters as sent, for DSN (failing that: no ENVID). */
    if (s->dsn && s->pending && smtpd_str_set(&s->pending_raw, rest, rn))
      smtpd_str_free(&s->pending_raw);
    return;
  }
  if (smtputf8) s->require_smtputf8 = 1;
  if (smtpd_str_set(&s->mailfrom, o.buf, o.len)) {
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  s->has_mailfrom = 1;
  if (s->dsn && smtpd_str_set(&s->dsn_mail, rest, rn))
    smtpd_str_free(&s->dsn_mail);
  REPLY(s, "250 OK");
}

static void cmd_rcpt(smtpd_session *s, const char *arg, size_t n) {
  smtpd_addr o;
  const char *rest;
  size_t rn;
  smtpd_strlist opts = {NULL, 0, 0};
  if (!s->greeting.len) {
    REPLY(s, "503 Error: send HELO first");
    return;
  }
  if (!s->has_mailfrom) {
    REPLY(s, "503 Error: need MAIL command");
    return;
  }
  if (!smtpd_session_path(s, "TO:", arg, n, &o, &rest, &rn)) {
    syntaxerr(s, "TO:");
    return;
  }
  if (smtpd_params_split(rest, rn, &opts)) {
    smtpd_strlist_clear(&opts);
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  if (!smtpd_params_valid(&opts)) {
    smtpd_strlist_clear(&opts);
    syntaxerr(s, "TO:");
    return;
  }
  if (opts.n > 0 && rcpt_dsn_check(s, &opts)) {
    smtpd_strlist_clear(&opts);
    return;
  }
  /* RFC 5321 4.5.3.1.8: at least 100; past the limit 452, earlier ones
   * kept. */
  if (s->max_recipients && s->rcpttos.n >= s->max_recipients) {
    smtpd_strlist_clear(&opts);
    REPLY(s, "452 4.5.3 Error: too many recipients");
    return;
  }
  if (s->check) {
    session_hold(s, SMTPD_VERB_RCPT, &o, &opts, 0);
    if (s->dsn && s->pending && rn &&
        smtpd_str_set(&s->pending_raw, rest, rn)) {
      /* Without the parameters the recipient cannot be kept as sent. */
      session_drop_pending(s);
      REPLY(s, SMTPD_ERR_REPLY);
    }
    return;
  }
  if (smtpd_strlist_push(&s->rcpttos, o.buf, o.len)) {
    smtpd_strlist_clear(&opts);
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  if (rcpt_dsn_keep(s, rest, rn, o.buf, o.len)) {
    s->rcpttos.n--;
    smtpd_str_free(&s->rcpttos.v[s->rcpttos.n]);
    smtpd_strlist_clear(&opts);
    REPLY(s, SMTPD_ERR_REPLY);
    return;
  }
  /* Only an accepted RCPT sets rcpt_options (smtpd leaks refused ones). */
  smtpd_strlist_clear(&s->rcpt_options);
  s->rcpt_options = opts;
  REPLY(s, "250 OK");
}

void smtpd_session_builtin(smtpd_session *s, int verb, const char *arg,
                           size_t n) {
  switch (verb) {
  case SMTPD_VERB_HELO: cmd_greet(s, arg, n, 0); break;
  case SMTPD_VERB_EHLO: cmd_greet(s, arg, n, 1); break;
  case SMTPD_VERB_NOOP:
    if (arg && n) REPLY(s, "501 Syntax: NOOP");
    else REPLY(s, "250 OK");
    break;
  case SMTPD_VERB_QUIT:
    REPLY(s, "221 Bye");
    s->quit = 1;
    break;
  case SMTPD_VERB_MAIL: cmd_mail(s, arg, n); break;
  case SMTPD_VERB_RCPT:
    if (s->bdat) REPLY(s, "503 Error: RCPT after BDAT");
    else cmd_rcpt(s, arg, n);
    break;
  case SMTPD_VERB_RSET:
    if (arg && n) {
      REPLY(s, "501 Syntax: RSET");
      break;
    }
    smtpd_session_rset(s);
    REPLY(s, "250 OK");
    break;
  case SMTPD_VERB_DATA:
    if (!s->greeting.len) {
      REPLY(s, "503 Error: send HELO first");
    } else if (s->rcpttos.n == 0) {
      REPLY(s, "503 Error: need RCPT command");
    } else if (arg && n) {
      REPLY(s, "501 Syntax: DATA");
    } else if (s->bdat || s->bdat_failed) {
      /* RFC 3030 3: no DATA in a transaction that used BDAT. */
      REPLY(s, "503 Error: DATA after BDAT");
    } else if (session_binary(s)) {
      REPLY(s, "503 Error: BODY=BINARYMIME needs BDAT");
    } else if (s->data_blocked) {
      REPLY(s, "451 4.3.1 Error: insufficient system storage, try again "
               "later");
    } else {
      s->state = SMTPD_DATA;
      REPLY(s, "354 End data with <CR><LF>.<CR><LF>");
    }
    break;
  case SMTPD_VERB_HELP: cmd_help(s, arg, n); break;
  case SMTPD_VERB_VRFY: cmd_vrfy(s, arg, n); break;
  case SMTPD_VERB_EXPN: REPLY(s, "502 EXPN not implemented"); break;
  default: break;
  }
  smtpd_session_sync(s);
}

/* After DATA_END: 1 when the message goes to the handler, else 0 with the
 * reply sent and the transaction cleared. */
void smtpd_session_message_reply(smtpd_session *s, const char *line,
                                 size_t len) {
  size_t k, n = s->lmtp && s->msg_rcpts ? s->msg_rcpts : 1;
  for (k = 0; k < n; k++) smtpd_reply(s, line, len);
}

#define MESSAGE_REPLY(s, lit) \
  smtpd_session_message_reply((s), lit, sizeof(lit) - 1)

int smtpd_session_data_end(smtpd_session *s) {
  smtpd_parser *p = &s->parser;
  s->ctx = SMTPD_CTX_MESSAGE;
  s->msg_rcpts = s->rcpttos.n;
  s->num_bytes = smtpd_parser_data_size(p);
  if (s->state != SMTPD_DATA) {
    /* A hook changed smtp_state under the parser. */
    MESSAGE_REPLY(s, "451 Internal confusion");
  } else if (p->data_over) {
    MESSAGE_REPLY(s, "552 Error: Too much mail data");
  } else if (s->decode_data && !smtpd_utf8_valid(p->data.p, p->data.len)) {
    MESSAGE_REPLY(s, "500 Error: message data is not valid UTF-8");
  } else {
    return 1;
  }
  smtpd_session_post_data(s);
  return 0;
}

int smtpd_session_run(smtpd_session *s, const char *buf, size_t len,
                      smtpd_message_fn on_message, void *ctx) {
  size_t off = 0, used;
  while ((off < len || smtpd_parser_chunk_ready(&s->parser)) && !s->quit) {
    int r = smtpd_parser_feed(&s->parser, buf + off, len - off, &used);
    off += used;
    if (r == SMTPD_PARSE_MORE) break;
    if (r == SMTPD_PARSE_NOMEM) return -1;
    if (r == SMTPD_PARSE_CHUNK) {
      smtpd_session_chunk_end(s);
      continue;
    }
    if (r == SMTPD_PARSE_LINE) {
      smtpd_command cmd;
      if (!smtpd_session_line(s, &cmd)) continue;
      switch (smtpd_session_ext(s, &cmd)) {
      case 1:
        /* STARTTLS: what came after it is dropped, as on a socket (the
         * engine has no TLS: it resets as if the handshake were done). */
        if (s->starttls) {
          smtpd_session_tls_reset(s);
          off = len;
        }
        continue;
      case 2:
        REPLY(s, "454 4.7.0 Temporary authentication failure");
        continue;
      default: break;
      }
      if (cmd.verb >= 0)
        smtpd_session_builtin(s, cmd.verb, cmd.arg, cmd.arg_len);
      else
        smtpd_session_unknown(s, cmd.name, cmd.name_len);
    } else if (smtpd_session_data_end(s)) {
      const char *reply = on_message(s, ctx);
      smtpd_session_message_reply(s, reply, strlen(reply));
      smtpd_session_post_data(s);
    }
  }
  return 0;
}

void smtpd_session_unknown(smtpd_session *s, const char *name, size_t len) {
  session_reply_echo(s, "500 Error: command \"", name, len,
                     "\" not recognized");
}

/* ---- STARTTLS and AUTH -------------------------------------------------- */

size_t smtpd_word_len(const char *p, size_t n) {
  const char *sp = memchr(p, ' ', n);
  return sp ? (size_t)(sp - p) : n;
}

static int name_is(const smtpd_command *cmd, const char *name) {
  size_t n = strlen(name);
  return cmd->name_len == n && memcmp(cmd->name, name, n) == 0;
}

int smtpd_session_has_mech(const smtpd_session *s, const char *mech,
                           size_t n) {
  const char *p = s->auth_mechs;
  while (p && *p) {
    size_t k = strcspn(p, " ");
    if (k == n && n > 0 && memcmp(p, mech, n) == 0) return 1;
    p += k;
    while (*p == ' ') p++;
  }
  return 0;
}

/* ---- CHUNKING (RFC 3030) ------------------------------------------------ */

/* The transaction's MAIL said BODY=BINARYMIME (and it was offered). */
static int session_binary(const smtpd_session *s) {
  const char *val;
  size_t vlen;
  return s->binarymime && s->has_mailfrom &&
         smtpd_params_find(&s->mail_options, "BODY", &val, &vlen) >= 0 &&
         val && vlen == 10 && memcmp(val, "BINARYMIME", 10) == 0;
}

/* BDAT <size> [LAST]. The chunk's bytes are read whatever the verdict:
 * refused, they are discarded and the refusal answers them. Only a size
 * that cannot be read leaves no way to find the next command: 501, and
 * the connection ends. */
static void session_bdat(smtpd_session *s, const smtpd_command *cmd) {
  const char *a = cmd->arg ? cmd->arg : "";
  size_t n = cmd->arg ? cmd->arg_len : 0, i = 0, size = 0;
  int last = 0;
  const char *err = NULL;
  while (i < n && a[i] >= '0' && a[i] <= '9' && i < 18)
    size = size * 10 + (size_t)(a[i++] - '0');
  if (i > 0 && i < n && a[i] == ' ') {
    size_t j = i;
    while (j < n && a[j] == ' ') j++;
    if (n - j == 4 && smtpd_has_keyword(a + j, 4, "LAST")) {
      last = 1;
      i = n;
    }
  }
  if (i == 0 || i != n) {
    REPLY(s, "501 Syntax: BDAT <size> [LAST] (closing: the chunk cannot be "
             "found)");
    s->quit = 1;
    return;
  }
  if (s->require_starttls && !s->tls_on)
    err = "530 5.7.0 Must issue a STARTTLS command first";
  else if (!s->greeting.len)
    err = "503 Error: send HELO first";
  else if (s->rcpttos.n == 0)
    err = "503 Error: need RCPT command";
  else if (s->bdat_failed)
    err = "552 Error: Too much mail data";
  else if (!s->bdat && s->data_blocked)
    err = "451 4.3.1 Error: insufficient system storage, try again later";
  s->bdat_error = err;
  s->bdat_size = size;
  if (!err) {
    s->bdat = 1;
    s->state = SMTPD_DATA;
  }
  smtpd_parser_begin_chunk(&s->parser, size, err != NULL, last,
                           session_binary(s), s->data_size_limit);
}

void smtpd_session_chunk_end(smtpd_session *s) {
  int last = s->parser.chunk_last;
  s->ctx = SMTPD_CTX_MESSAGE;
  const char *err = s->bdat_error;
  s->bdat_error = NULL;
  if (!err && s->parser.data_over) {
    /* Past the limit: this transaction can only fail now. */
    err = "552 Error: Too much mail data";
    s->bdat_failed = 1;
    s->bdat = 0;
    smtpd_parser_drop_data(&s->parser);
  }
  if (s->state == SMTPD_DATA) s->state = SMTPD_COMMAND;
  if (err) {
    if (last && (s->bdat || s->bdat_failed)) {
      /* A refused last chunk answers the message (LMTP: once for each
       * recipient) and ends the transaction (RFC 3030 4.2). */
      s->msg_rcpts = s->rcpttos.n;
      smtpd_session_message_reply(s, err, strlen(err));
      smtpd_session_post_data(s);
    } else {
      smtpd_reply(s, err, strlen(err));
    }
    return;
  }
  smtpd_replyf(s, "250 OK %zu octets received", s->bdat_size);
}

int smtpd_session_ext(smtpd_session *s, const smtpd_command *cmd) {
  int is_auth = s->auth_mechs && name_is(cmd, "AUTH");
  int is_tls = (s->tls_offer || s->tls_on) && name_is(cmd, "STARTTLS");
  if (s->require_starttls && !s->tls_on &&
      (cmd->verb == SMTPD_VERB_MAIL || cmd->verb == SMTPD_VERB_RCPT ||
       cmd->verb == SMTPD_VERB_DATA || is_auth)) {
    REPLY(s, "530 5.7.0 Must issue a STARTTLS command first");
    return 1;
  }
  if (s->lmtp && (cmd->verb == SMTPD_VERB_HELO ||
                  cmd->verb == SMTPD_VERB_EHLO)) {
    /* RFC 2033 4.1: LMTP has LHLO instead. */
    smtpd_session_unknown(s, cmd->name, cmd->name_len);
    return 1;
  }
  if (s->lmtp && name_is(cmd, "LHLO")) {
    s->ctx = SMTPD_VERB_EHLO;
    if (!cmd->arg || !cmd->arg_len) REPLY(s, "501 Syntax: LHLO hostname");
    else smtpd_session_builtin(s, SMTPD_VERB_EHLO, cmd->arg, cmd->arg_len);
    return 1;
  }
  if (s->chunking && name_is(cmd, "BDAT")) {
    session_bdat(s, cmd);
    return 1;
  }
  if (s->auth_required && !s->authed && cmd->verb == SMTPD_VERB_MAIL) {
    REPLY(s, "530 5.7.0 Authentication required");
    return 1;
  }
  if (is_tls) {
    if (cmd->arg && cmd->arg_len) REPLY(s, "501 5.5.4 Syntax: STARTTLS");
    else if (s->tls_on) REPLY(s, "503 5.5.1 Error: TLS already active");
    else if (s->state != SMTPD_COMMAND)
      REPLY(s, "503 5.5.1 Error: bad sequence of commands");
    else {
      REPLY(s, "220 2.0.0 Ready to start TLS");
      s->starttls = 1;
    }
    return 1;
  }
  if (is_auth) {
    size_t mn;
    if (!s->tls_on && s->auth_require_tls) {
      REPLY(s, "538 5.7.11 Encryption required for requested "
               "authentication mechanism");
    } else if (s->authed) {
      REPLY(s, "503 5.5.1 Error: already authenticated");
    } else if (s->has_mailfrom) {
      REPLY(s, "503 5.5.1 Error: AUTH not permitted during a mail "
               "transaction");
    } else if (!s->greeting.len) {
      REPLY(s, "503 5.5.1 Error: send EHLO first");
    } else if (!cmd->arg || cmd->arg_len == 0 ||
               ((mn = smtpd_word_len(cmd->arg, cmd->arg_len)) <
                    cmd->arg_len &&
                memchr(cmd->arg + mn + 1, ' ', cmd->arg_len - mn - 1))) {
      REPLY(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
    } else {
      char up[64];
      size_t i;
      for (i = 0; i < mn && i < sizeof up; i++) up[i] = smtpd_upper(cmd->arg[i]);
      if (mn >= sizeof up || !smtpd_session_has_mech(s, up, mn)) {
        REPLY(s, "504 5.5.4 Unrecognized authentication type");
      } else {
        return 2;
      }
    }
    return 1;
  }
  return 0;
}

void smtpd_session_tls_reset(smtpd_session *s) {
  s->starttls = 0;
  s->tls_on = 1;
  smtpd_session_rset(s);
  smtpd_str_free(&s->greeting);
  s->extended_smtp = 0;
  s->mail_extra = 0;
  s->authed = 0;
  smtpd_str_free(&s->auth_user);
  smtpd_session_sync(s);
}

int smtpd_xtext_valid(const char *p, size_t n) {
  size_t i;
  if (n == 2 && p[0] == '<' && p[1] == '>') return 1;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '+') {
      if (i + 2 >= n || !strchr("0123456789ABCDEF", p[i + 1]) ||
          !strchr("0123456789ABCDEF", p[i + 2]) || !p[i + 1] || !p[i + 2])
        return 0;
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return 0;
    }
  }
  return 1;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

long smtpd_b64_decode(const char *p, size_t n, unsigned char *out) {
  size_t i, k = 0;
  if (n % 4) return -1;
  for (i = 0; i < n; i += 4) {
    int v[4], j, pad = 0;
    for (j = 0; j < 4; j++) {
      unsigned char c = (unsigned char)p[i + j];
      if (c == '=' && i + 4 == n && j >= 2) {
        v[j] = 0;
        pad++;
      } else if (pad || (v[j] = b64_value(c)) < 0) {
        return -1;        /* a character after '=', or not base64 */
      }
    }
    if (pad == 1 && p[i + 2] == '=') return -1;
    /* The bits the padding drops must be zero (RFC 4648 3.5). */
    if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3))) return -1;
    out[k++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
    if (pad < 2) out[k++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
    if (pad < 1) out[k++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
  }
  return (long)k;
}

size_t smtpd_b64_encode(const unsigned char *p, size_t n, char *out) {
  static const char al[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, k = 0;
  for (i = 0; i + 2 < n; i += 3) {
    out[k++] = al[p[i] >> 2];
    out[k++] = al[(p[i] & 3) << 4 | p[i + 1] >> 4];
    out[k++] = al[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
    out[k++] = al[p[i + 2] & 63];
  }
  if (i < n) {
    out[k++] = al[p[i] >> 2];
    if (i + 1 < n) {
      out[k++] = al[(p[i] & 3) << 4 | p[i + 1] >> 4];
      out[k++] = al[(p[i + 1] & 15) << 2];
    } else {
      out[k++] = al[(p[i] & 3) << 4];
      out[k++] = '=';
    }
    out[k++] = '=';
  }
  out[k] = '\0';
  return k;
}

int smtpd_session_line(smtpd_session *s, smtpd_command *cmd) {
  smtpd_parser *p = &s->parser;
  const char *line = p->line.p ? p->line.p : "";
  size_t kept = p->line.len, len = p->line_len, i, max;
  const char *sp;
  s->num_bytes = 0;  /* as smtpd: the count restarts with each line */
  s->ctx = SMTPD_CTX_OTHER;
  if (len == 0) {
    REPLY(s, "500 Error: bad syntax");
    return 0;
  }
  sp = memchr(line, ' ', kept);
  cmd->name_len = sp ? (size_t)(sp - line) : kept;
  /* The verb is upper-cased in place: only the argument is used as sent. */
  for (i = 0; i < cmd->name_len; i++) p->line.p[i] = smtpd_upper(line[i]);
  cmd->name = line;
  cmd->verb = smtpd_verb_lookup(cmd->name, cmd->name_len);
  s->ctx = cmd->verb;
  max = s->command_size_limit;
  if (s->extended_smtp && cmd->verb == SMTPD_VERB_MAIL) max += s->mail_extra;
  if (s->auth_mechs && cmd->name_len == 4 && memcmp(cmd->name, "AUTH", 4) == 0)
    max = SMTPD_AUTH_LINE_MAX;
  if (len > max) {
    if (max == SMTPD_AUTH_LINE_MAX)
      REPLY(s, "500 5.5.6 Authentication exchange line is too long");
    else
      REPLY(s, "500 Error: line too long");
    return 0;
  }
  /* A bare CR or LF must not split a command, and a NUL must not cut it. */
  if (memchr(line, '\r', len) || memchr(line, '\n', len) ||
      memchr(line, '\0', len)) {
    REPLY(s, "500 Error: bad syntax");
    return 0;
  }
  if (!smtpd_utf8_valid(line, len)) {
    REPLY(s, "500 Error: command line is not valid UTF-8");
    return 0;
  }
  if (sp) {
    cmd->arg = sp + 1;
    cmd->arg_len = len - (size_t)(sp + 1 - line);
    smtpd_ustrip(&cmd->arg, &cmd->arg_len);
  } else {
    cmd->arg = NULL;
    cmd->arg_len = 0;
  }
  return 1;
}
