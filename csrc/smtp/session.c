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
#include <stdint.h>
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
  s->bdat_error = -1;
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
  smtpd_str_free(&s->bdat_reply);
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

static void session_drop_pending(smtpd_session *s);

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
    if (ext) SAY(s, SYNTAX_EHLO);
    else SAY(s, SYNTAX_HELO);
    return;
  }
  if (s->greeting.len) {
    SAY(s, DUP_HELO);
    return;
  }
  smtpd_session_rset(s);
  if (smtpd_str_set(&s->greeting, arg, n)) {
    SAY(s, LOCAL_ERROR);
    return;
  }
  if (!ext) {
    smtpd_sayf(s, SMTPD_R_HELO_OK, fq);
    return;
  }
  s->extended_smtp = 1;
  smtpd_sayf(s, SMTPD_R_EHLO_FIRST, fq);
  if (s->data_size_limit) {
    char size[32];
    snprintf(size, sizeof size, "%zu", s->data_size_limit);
    smtpd_sayf(s, SMTPD_R_EHLO_SIZE, size);
    s->mail_extra += 26;
  }
  if (!s->decode_data) SAY(s, EHLO_8BITMIME);
  if (s->enable_smtputf8) {
    SAY(s, EHLO_SMTPUTF8);
    s->mail_extra += 10;
  }
  /* Replies to a pipelined group are queued and leave together, and a
   * command waits for the one before it (hooks included). */
  if (s->pipelining) SAY(s, EHLO_PIPELINING);
  if (s->chunking) SAY(s, EHLO_CHUNKING);
  if (s->binarymime) SAY(s, EHLO_BINARYMIME);
  if (s->enhanced) SAY(s, EHLO_ENHANCED);
  if (s->dsn) SAY(s, EHLO_DSN);
  /* RFC 8689 2: only where the session is encrypted already. */
  if (s->requiretls && s->tls_on) SAY(s, EHLO_REQUIRETLS);
  if (s->tls_offer && !s->tls_on) SAY(s, EHLO_STARTTLS);
  if (s->auth_mechs && (s->tls_on || !s->auth_require_tls)) {
    smtpd_sayf(s, SMTPD_R_EHLO_AUTH, s->auth_mechs);
    s->mail_extra += 500;     /* AUTH=<mailbox> (RFC 4954 5) */
  }
  SAY(s, EHLO_LAST);
}

static void cmd_help(smtpd_session *s, const char *arg, size_t n) {
  static const struct {
    const char *verb;
    int reply;
  } simple[] = {
    {"EHLO", SMTPD_R_HELP_EHLO}, {"HELO", SMTPD_R_HELP_HELO},
    {"DATA", SMTPD_R_HELP_DATA}, {"RSET", SMTPD_R_HELP_RSET},
    {"NOOP", SMTPD_R_HELP_NOOP}, {"QUIT", SMTPD_R_HELP_QUIT},
    {"VRFY", SMTPD_R_HELP_VRFY}
  };
  size_t i;
  char up[8];
  if (!arg || n == 0) {
    SAY(s, HELP);
    return;
  }
  if (n == 4) {
    for (i = 0; i < 4; i++) up[i] = smtpd_upper(arg[i]);
    up[4] = '\0';
    for (i = 0; i < sizeof simple / sizeof simple[0]; i++) {
      if (strcmp(up, simple[i].verb) == 0) {
        smtpd_say(s, simple[i].reply);
        return;
      }
    }
    if (strcmp(up, "MAIL") == 0 || strcmp(up, "RCPT") == 0) {
      smtpd_sayf(s, SMTPD_R_HELP_PATH,
                 up[0] == 'M' ? "MAIL FROM" : "RCPT TO",
                 s->extended_smtp ? " [SP <mail-parameters>]" : "");
      return;
    }
  }
  SAY(s, HELP_BAD);
}

static void cmd_vrfy(smtpd_session *s, const char *arg, size_t n) {
  smtpd_addr o;
  const char *rest;
  size_t rn;
  if (!arg || n == 0) {
    SAY(s, SYNTAX_VRFY);
    return;
  }
  if (smtpd_addr_parse(arg, n, &o, &rest, &rn)) {
    SAY(s, VRFY_OK);
  } else {
    smtpd_say_echo(s, SMTPD_R_VRFY_FAIL, arg, n);
  }
}

void smtpd_syntax_reply(const smtpd_session *s, const char *kw, char *buf,
                        size_t size) {
  const char *what = strcmp(kw, "FROM:") == 0 ? "MAIL FROM" :
                     strcmp(kw, "TO:") == 0 ? "RCPT TO" : NULL;
  char verb[64];
  size_t kl = strlen(kw);
  if (what == NULL && kl && kw[kl - 1] == ':') kl--;
  snprintf(verb, sizeof verb, "%.*s", what ? (int)strlen(what) : (int)kl,
           what ? what : kw);
  snprintf(buf, size, SMTPD_TEXT(SYNTAX_PATH), verb,
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
    SAY(s, LOCAL_ERROR);
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
  int held = s->pending, verb = held - 1;
  if (!held) return -1;
  s->pending = 0;
  if (held == SMTPD_PENDING_BDAT) {
    smtpd_session_bdat_settle(s, accept, reply, n);
    return 0;
  }
  if (verb == SMTPD_VERB_DATA) {
    if (accept) s->state = SMTPD_DATA;
    if (reply) smtpd_reply(s, reply, n);
    else if (accept) SAY(s, DATA_GO);
    smtpd_session_sync(s);
    return 0;
  }
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
    reply = SMTPD_TEXT(LOCAL_ERROR);
    n = SMTPD_TEXT_LEN(LOCAL_ERROR);
  } else if (smtpd_dsn_rcpt_keep(s, s->pending_raw.p, s->pending_raw.len,
                           s->pending_path.p, s->pending_path.len)) {
    s->rcpttos.n--;
    smtpd_str_free(&s->rcpttos.v[s->rcpttos.n]);
    reply = SMTPD_TEXT(LOCAL_ERROR);
    n = SMTPD_TEXT_LEN(LOCAL_ERROR);
  } else {
    smtpd_strlist_clear(&s->rcpt_options);
    s->rcpt_options = s->pending_params;     /* taken over */
    memset(&s->pending_params, 0, sizeof s->pending_params);
  }
  session_drop_pending(s);
  if (reply) smtpd_reply(s, reply, n);
  else SAY(s, OK);
  return 0;
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
    SAY(s, NEED_HELO);
    return;
  }
  if (!smtpd_session_path(s, "FROM:", arg, n, &o, &rest, &rn)) {
    syntaxerr(s, "FROM:");
    return;
  }
  if (s->has_mailfrom) {
    SAY(s, NESTED_MAIL);
    return;
  }
  if (smtpd_params_split(rest, rn, &s->mail_options)) {
    smtpd_strlist_clear(&s->mail_options);
    SAY(s, LOCAL_ERROR);
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
        SAY(s, BODY_BAD_BINARY);
      else
        SAY(s, BODY_BAD);
      return;
    }
  }
  if (s->enable_smtputf8 &&
      smtpd_params_find(&s->mail_options, "SMTPUTF8", &val, &vlen) >= 0) {
    if (val) {
      SAY(s, SMTPUTF8_ARG);
      return;
    }
  }
  if (smtpd_params_find(&s->mail_options, "SIZE", &val, &vlen) >= 0) {
    size_t size = 0;
    int big;
    /* smtpd crashes on a SIZE with no value; that is a syntax error. */
    if (!val || vlen == 0 || strspn(val, "0123456789") < vlen) {
      syntaxerr(s, "FROM:");
      return;
    }
    big = !smtpd_digits(val, vlen, SIZE_MAX, &size);
    if (s->data_size_limit && (big || size > s->data_size_limit)) {
      SAY(s, SIZE_EXCEEDED);
      return;
    }
  }
  if (s->decode_data) k = s->enable_smtputf8 ? known_nobody : known_none;
  else k = s->enable_smtputf8 ? known : known_noutf8;
  if (s->auth_mechs &&
      smtpd_params_find(&s->mail_options, "AUTH", &val, &vlen) >= 0) {
    /* RFC 4954 5: accepted (and left in mail_options), <> or xtext. */
    if (!val || !smtpd_xtext_valid(val, vlen)) {
      SAY(s, AUTH_PARAM);
      return;
    }
  }
  if (smtpd_dsn_mail_check(s)) return;
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
      SAY(s, MAIL_PARAMS);
      return;
    }
  }
  smtputf8 = s->enable_smtputf8 &&
             smtpd_params_find(&s->mail_options, "SMTPUTF8", &val, &vlen) >= 0;
  if (s->check || s->relay) {
    session_hold(s, SMTPD_VERB_MAIL, &o, NULL, smtputf8);
    /* The parameters as sent, for DSN (failing that: no ENVID) and for
     * the upstream of a relay (failing that: 451). */
    if ((s->dsn || s->relay) && s->pending &&
        smtpd_str_set(&s->pending_raw, rest, rn)) {
      smtpd_str_free(&s->pending_raw);
      if (s->relay) {
        session_drop_pending(s);
        smtpd_strlist_clear(&s->mail_options);
        SAY(s, LOCAL_ERROR);
      }
    }
    return;
  }
  if (smtputf8) s->require_smtputf8 = 1;
  if (smtpd_str_set(&s->mailfrom, o.buf, o.len)) {
    SAY(s, LOCAL_ERROR);
    return;
  }
  s->has_mailfrom = 1;
  if (s->dsn && smtpd_str_set(&s->dsn_mail, rest, rn))
    smtpd_str_free(&s->dsn_mail);
  SAY(s, OK);
}

static void cmd_rcpt(smtpd_session *s, const char *arg, size_t n) {
  smtpd_addr o;
  const char *rest;
  size_t rn;
  smtpd_strlist opts = {NULL, 0, 0};
  if (!s->greeting.len) {
    SAY(s, NEED_HELO);
    return;
  }
  if (!s->has_mailfrom) {
    SAY(s, NEED_MAIL);
    return;
  }
  if (!smtpd_session_path(s, "TO:", arg, n, &o, &rest, &rn)) {
    syntaxerr(s, "TO:");
    return;
  }
  if (smtpd_params_split(rest, rn, &opts)) {
    smtpd_strlist_clear(&opts);
    SAY(s, LOCAL_ERROR);
    return;
  }
  if (!smtpd_params_valid(&opts)) {
    smtpd_strlist_clear(&opts);
    syntaxerr(s, "TO:");
    return;
  }
  if (opts.n > 0 && smtpd_dsn_rcpt_check(s, &opts)) {
    smtpd_strlist_clear(&opts);
    return;
  }
  /* RFC 5321 4.5.3.1.8: at least 100; past the limit 452, earlier ones
   * kept. */
  if (s->max_recipients && s->rcpttos.n >= s->max_recipients) {
    smtpd_strlist_clear(&opts);
    SAY(s, TOO_MANY_RCPTS);
    return;
  }
  if (s->check || s->relay) {
    session_hold(s, SMTPD_VERB_RCPT, &o, &opts, 0);
    if ((s->dsn || s->relay) && s->pending && rn &&
        smtpd_str_set(&s->pending_raw, rest, rn)) {
      /* Without the parameters the recipient cannot be kept as sent. */
      session_drop_pending(s);
      SAY(s, LOCAL_ERROR);
    }
    return;
  }
  if (smtpd_strlist_push(&s->rcpttos, o.buf, o.len)) {
    smtpd_strlist_clear(&opts);
    SAY(s, LOCAL_ERROR);
    return;
  }
  if (smtpd_dsn_rcpt_keep(s, rest, rn, o.buf, o.len)) {
    s->rcpttos.n--;
    smtpd_str_free(&s->rcpttos.v[s->rcpttos.n]);
    smtpd_strlist_clear(&opts);
    SAY(s, LOCAL_ERROR);
    return;
  }
  /* Only an accepted RCPT sets rcpt_options (smtpd leaks refused ones). */
  smtpd_strlist_clear(&s->rcpt_options);
  s->rcpt_options = opts;
  SAY(s, OK);
}

void smtpd_session_builtin(smtpd_session *s, int verb, const char *arg,
                           size_t n) {
  switch (verb) {
  case SMTPD_VERB_HELO: cmd_greet(s, arg, n, 0); break;
  case SMTPD_VERB_EHLO: cmd_greet(s, arg, n, 1); break;
  case SMTPD_VERB_NOOP:
    if (arg && n) SAY(s, SYNTAX_NOOP);
    else SAY(s, OK);
    break;
  case SMTPD_VERB_QUIT:
    SAY(s, BYE);
    s->quit = 1;
    break;
  case SMTPD_VERB_MAIL: cmd_mail(s, arg, n); break;
  case SMTPD_VERB_RCPT:
    if (s->bdat) SAY(s, RCPT_AFTER_BDAT);
    else cmd_rcpt(s, arg, n);
    break;
  case SMTPD_VERB_RSET:
    if (arg && n) {
      SAY(s, SYNTAX_RSET);
      break;
    }
    smtpd_session_rset(s);
    SAY(s, OK);
    break;
  case SMTPD_VERB_DATA:
    if (!s->greeting.len) {
      SAY(s, NEED_HELO);
    } else if (s->rcpttos.n == 0) {
      SAY(s, NEED_RCPT);
    } else if (arg && n) {
      SAY(s, SYNTAX_DATA);
    } else if (s->bdat || s->bdat_failed) {
      /* RFC 3030 3: no DATA in a transaction that used BDAT. */
      SAY(s, DATA_AFTER_BDAT);
    } else if (smtpd_session_binary(s)) {
      SAY(s, BINARYMIME_NEEDS_BDAT);
    } else if (s->data_blocked) {
      SAY(s, STORAGE);
    } else if (s->relay) {
      /* The upstream says first: its 354, or its refusal. */
      s->pending = SMTPD_VERB_DATA + 1;
    } else {
      s->state = SMTPD_DATA;
      SAY(s, DATA_GO);
    }
    break;
  case SMTPD_VERB_HELP: cmd_help(s, arg, n); break;
  case SMTPD_VERB_VRFY: cmd_vrfy(s, arg, n); break;
  case SMTPD_VERB_EXPN: SAY(s, EXPN); break;
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

void smtpd_say_message(smtpd_session *s, int id) {
  smtpd_session_message_reply(s, smtpd_replies[id].text,
                              smtpd_replies[id].len);
}

#define MESSAGE_SAY(s, id) smtpd_say_message((s), SMTPD_R_##id)

int smtpd_session_data_end(smtpd_session *s) {
  smtpd_parser *p = &s->parser;
  s->ctx = SMTPD_CTX_MESSAGE;
  s->msg_rcpts = s->rcpttos.n;
  s->num_bytes = smtpd_parser_data_size(p);
  if (s->state != SMTPD_DATA) {
    /* A hook changed smtp_state under the parser. */
    MESSAGE_SAY(s, CONFUSION);
  } else if (p->data_over) {
    MESSAGE_SAY(s, TOO_MUCH_DATA);
  } else if (s->decode_data && !smtpd_utf8_valid(p->data.p, p->data.len)) {
    MESSAGE_SAY(s, DATA_UTF8);
  } else {
    return 1;
  }
  smtpd_session_post_data(s);
  return 0;
}

/* ---- the dispatcher ---------------------------------------------------- */

/* A complete command line: read, gated by the extensions, then the
 * owner's (a hook) or the built-in command. */
static void session_dispatch_line(smtpd_session *s, const smtpd_events *ev,
                                  void *ctx) {
  smtpd_command cmd;
  if (!smtpd_session_line(s, &cmd)) return;
  switch (smtpd_session_ext(s, &cmd)) {
  case 1:
    if (s->pending && ev->held) ev->held(ctx);   /* a first BDAT */
    return;
  case 2:
    if (ev->auth) ev->auth(ctx, &cmd);
    else SAY(s, AUTH_TEMPFAIL);
    return;
  default: break;
  }
  if (ev->command && ev->command(ctx, &cmd)) return;
  if (cmd.verb >= 0) smtpd_session_builtin(s, cmd.verb, cmd.arg, cmd.arg_len);
  else smtpd_session_unknown(s, cmd.name, cmd.name_len);
  if (s->pending && ev->held) ev->held(ctx);
}

size_t smtpd_session_feed(smtpd_session *s, const char *buf, size_t len,
                          const smtpd_events *ev, void *ctx) {
  size_t off = 0, used;
  while ((off < len || smtpd_parser_chunk_ready(&s->parser)) && !s->quit &&
         !(ev->stop && ev->stop(ctx))) {
    int r;
    if (ev->step) ev->step(ctx);
    r = smtpd_parser_feed(&s->parser, buf + off, len - off, &used);
    off += used;
    if (r == SMTPD_PARSE_MORE) break;
    switch (r) {
    case SMTPD_PARSE_LINE:
      if (!(ev->line && ev->line(ctx))) session_dispatch_line(s, ev, ctx);
      break;
    case SMTPD_PARSE_DATA_END:
      if (smtpd_session_data_end(s)) ev->message(ctx);
      break;
    case SMTPD_PARSE_CHUNK:
      smtpd_session_chunk_end(s);
      break;
    default:
      SAY(s, NOMEM);
      s->quit = 1;
      break;
    }
    if (s->starttls) {
      /* What came after STARTTLS was sent before the handshake: it is
       * dropped (CVE-2011-0411). With no owner to switch, the session
       * goes on as if the handshake were done (the engine). */
      if (ev->starttls) ev->starttls(ctx);
      else smtpd_session_tls_reset(s);
      off = len;
    }
    if (ev->after) ev->after(ctx);
  }
  return off;
}

/* The engine's events: built-in commands only, each message answered by
 * on_message. */
typedef struct session_run {
  smtpd_session *s;
  smtpd_message_fn on_message;
  void *ctx;
} session_run;

static void session_run_message(void *arg) {
  session_run *x = arg;
  const char *reply = x->on_message(x->s, x->ctx);
  smtpd_session_message_reply(x->s, reply, strlen(reply));
  smtpd_session_post_data(x->s);
}

/* A relay's held command (s->relay set by the caller): settled at once,
 * as an upstream that takes everything would. */
static void session_run_held(void *arg) {
  session_run *x = arg;
  smtpd_session_settle(x->s, 1, NULL, 0);
}

int smtpd_session_run(smtpd_session *s, const char *buf, size_t len,
                      smtpd_message_fn on_message, void *ctx) {
  static const smtpd_events ev = {
    NULL, NULL, NULL, session_run_message, NULL, NULL, NULL, NULL,
    session_run_held
  };
  session_run x;
  x.s = s;
  x.on_message = on_message;
  x.ctx = ctx;
  smtpd_session_feed(s, buf, len, &ev, &x);
  return 0;
}

void smtpd_session_unknown(smtpd_session *s, const char *name, size_t len) {
  smtpd_say_echo(s, SMTPD_R_UNKNOWN, name, len);
}

int smtpd_session_line(smtpd_session *s, smtpd_command *cmd) {
  smtpd_parser *p = &s->parser;
  const char *line = p->line.p ? p->line.p : "";
  size_t kept = p->line.len, len = p->line_len, i, max;
  const char *sp;
  s->num_bytes = 0;  /* as smtpd: the count restarts with each line */
  s->ctx = SMTPD_CTX_OTHER;
  if (len == 0) {
    SAY(s, BAD_SYNTAX);
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
      SAY(s, AUTH_TOO_LONG);
    else
      SAY(s, LINE_TOO_LONG);
    return 0;
  }
  /* A bare CR or LF must not split a command, and a NUL must not cut it. */
  if (memchr(line, '\r', len) || memchr(line, '\n', len) ||
      memchr(line, '\0', len)) {
    SAY(s, BAD_SYNTAX);
    return 0;
  }
  if (!smtpd_utf8_valid(line, len)) {
    SAY(s, LINE_UTF8);
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
