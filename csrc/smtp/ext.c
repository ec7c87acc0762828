/*
 * The SMTP extensions beside the base protocol, as gates and commands the
 * session runs before its built-in commands: STARTTLS (RFC 3207), AUTH
 * (RFC 4954), LHLO (LMTP, RFC 2033), CHUNKING/BDAT (RFC 3030, with
 * BINARYMIME), and the parameters of DSN (RFC 3461) and REQUIRETLS
 * (RFC 8689). No Lua, no libuv.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "smtp/smtp.h"

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
int smtpd_dsn_mail_check(smtpd_session *s) {
  const char *val;
  size_t vlen;
  if (s->dsn && smtpd_params_find(&s->mail_options, "RET", &val, &vlen) >= 0
      && !(val && (word_ieq(val, vlen, "FULL") || word_ieq(val, vlen, "HDRS")))) {
    SAY(s, RET_BAD);
    return 1;
  }
  if (s->dsn && smtpd_params_find(&s->mail_options, "ENVID", &val, &vlen) >= 0
      && !(val && vlen <= 100 && smtpd_xtext_valid(val, vlen) &&
           !(vlen == 2 && val[0] == '<'))) {
    SAY(s, ENVID_BAD);
    return 1;
  }
  if (s->requiretls && s->tls_on &&
      smtpd_params_find(&s->mail_options, "REQUIRETLS", &val, &vlen) >= 0 &&
      val) {
    SAY(s, REQUIRETLS_BAD);
    return 1;
  }
  return 0;
}

/* The RCPT parameters of DSN: 0 all known and valid, 555 unknown, or 501
 * (sent) for a bad value. */
int smtpd_dsn_rcpt_check(smtpd_session *s, const smtpd_strlist *opts) {
  static const char *const known[] = {"NOTIFY", "ORCPT", NULL};
  const char *val;
  size_t vlen;
  if (!s->dsn || smtpd_params_others_but(opts, known, NULL)) {
    SAY(s, RCPT_PARAMS);
    return 1;
  }
  if (smtpd_params_find(opts, "NOTIFY", &val, &vlen) >= 0 &&
      !(val && notify_valid(val, vlen))) {
    SAY(s, NOTIFY_BAD);
    return 1;
  }
  if (smtpd_params_find(opts, "ORCPT", &val, &vlen) >= 0 &&
      !(val && orcpt_valid(val, vlen))) {
    SAY(s, ORCPT_BAD);
    return 1;
  }
  return 0;
}

/* Remembers an accepted recipient's DSN parameters for kwargs.dsn. */
int smtpd_dsn_rcpt_keep(smtpd_session *s, const char *raw, size_t rn,
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
int smtpd_session_binary(const smtpd_session *s) {
  const char *val;
  size_t vlen;
  return s->binarymime && s->has_mailfrom &&
         smtpd_params_find(&s->mail_options, "BODY", &val, &vlen) >= 0 &&
         val && vlen == 10 && memcmp(val, "BINARYMIME", 10) == 0;
}

/* BDAT <size> [LAST]. The chunk's bytes are read whatever the verdict:
 * refused, they are discarded and the refusal answers them. Only a size
 * that cannot be read (or held) leaves no way to find the next command:
 * 501 (552 for a size too big), and the connection ends. */
static void session_bdat(smtpd_session *s, const smtpd_command *cmd) {
  const char *a = cmd->arg ? cmd->arg : "";
  size_t n = cmd->arg ? cmd->arg_len : 0, i = 0, size = 0;
  int last = 0, err = -1;
  while (i < n && a[i] >= '0' && a[i] <= '9') i++;
  if (i > 0 && i < n && a[i] == ' ') {
    size_t j = i;
    while (j < n && a[j] == ' ') j++;
    if (n - j == 4 && smtpd_has_keyword(a + j, 4, "LAST")) last = 1;
  }
  if (i == 0 || (i != n && !last)) {
    SAY(s, BDAT_SYNTAX);
    s->quit = 1;
    return;
  }
  if (!smtpd_digits(a, i, SIZE_MAX, &size)) {
    SAY(s, BDAT_TOO_BIG);
    s->quit = 1;
    return;
  }
  if (s->require_starttls && !s->tls_on) err = SMTPD_R_STARTTLS_FIRST;
  else if (!s->greeting.len) err = SMTPD_R_NEED_HELO;
  else if (s->rcpttos.n == 0) err = SMTPD_R_NEED_RCPT;
  else if (s->bdat_failed) err = SMTPD_R_TOO_MUCH_DATA;
  else if (!s->bdat && s->data_blocked) err = SMTPD_R_STORAGE;
  s->bdat_error = err;
  s->bdat_size = size;
  if (err < 0 && s->relay && !s->bdat) {
    /* A relay's first chunk waits for the upstream (its 354, or its
     * refusal); the chunk's bytes wait in the input meanwhile. */
    s->pending = SMTPD_PENDING_BDAT;
    s->pending_size = size;
    s->pending_last = last;
    s->pending_binary = smtpd_session_binary(s);
    return;
  }
  if (err < 0) {
    s->bdat = 1;
    s->state = SMTPD_DATA;
  }
  smtpd_parser_begin_chunk(&s->parser, size, err >= 0, last,
                           smtpd_session_binary(s), s->data_size_limit);
}

void smtpd_session_bdat_settle(smtpd_session *s, int accept,
                               const char *reply, size_t n) {
  s->bdat_error = -1;
  if (accept) {
    s->bdat = 1;
    s->state = SMTPD_DATA;
  } else if (smtpd_str_set(&s->bdat_reply, reply, n) == 0) {
    s->bdat_error = -2;
  } else {
    s->bdat_error = SMTPD_R_LOCAL_ERROR;
  }
  smtpd_parser_begin_chunk(&s->parser, s->pending_size, !accept,
                           s->pending_last, s->pending_binary,
                           s->data_size_limit);
}

void smtpd_session_chunk_end(smtpd_session *s) {
  int last = s->parser.chunk_last, err = s->bdat_error;
  s->ctx = SMTPD_CTX_MESSAGE;
  s->bdat_error = -1;
  if (err < 0 && s->parser.data_over) {
    /* Past the limit: this transaction can only fail now. */
    err = SMTPD_R_TOO_MUCH_DATA;
    s->bdat_failed = 1;
    s->bdat = 0;
    smtpd_parser_drop_data(&s->parser);
  }
  if (s->state == SMTPD_DATA) s->state = SMTPD_COMMAND;
  if (err == -2) {
    /* The upstream's refusal (a relay): it ends the transaction. */
    smtpd_reply(s, s->bdat_reply.p, s->bdat_reply.len);
    smtpd_str_free(&s->bdat_reply);
    smtpd_session_post_data(s);
    return;
  }
  if (err >= 0) {
    if (last && (s->bdat || s->bdat_failed)) {
      /* A refused last chunk answers the message (LMTP: once for each
       * recipient) and ends the transaction (RFC 3030 4.2). */
      s->msg_rcpts = s->rcpttos.n;
      smtpd_say_message(s, err);
      smtpd_session_post_data(s);
    } else {
      smtpd_say(s, err);
    }
    return;
  }
  {
    char sz[32];
    snprintf(sz, sizeof sz, "%zu", s->bdat_size);
    smtpd_sayf(s, SMTPD_R_BDAT_OK, sz);
  }
}

int smtpd_session_ext(smtpd_session *s, const smtpd_command *cmd) {
  int is_auth = s->auth_mechs && name_is(cmd, "AUTH");
  int is_tls = (s->tls_offer || s->tls_on) && name_is(cmd, "STARTTLS");
  if (s->require_starttls && !s->tls_on &&
      (cmd->verb == SMTPD_VERB_MAIL || cmd->verb == SMTPD_VERB_RCPT ||
       cmd->verb == SMTPD_VERB_DATA || is_auth)) {
    SAY(s, STARTTLS_FIRST);
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
    if (!cmd->arg || !cmd->arg_len) SAY(s, SYNTAX_LHLO);
    else smtpd_session_builtin(s, SMTPD_VERB_EHLO, cmd->arg, cmd->arg_len);
    return 1;
  }
  if (s->chunking && name_is(cmd, "BDAT")) {
    session_bdat(s, cmd);
    return 1;
  }
  if (s->auth_required && !s->authed && cmd->verb == SMTPD_VERB_MAIL) {
    SAY(s, AUTH_REQUIRED);
    return 1;
  }
  if (is_tls) {
    if (cmd->arg && cmd->arg_len) SAY(s, STARTTLS_SYNTAX);
    else if (s->tls_on) SAY(s, TLS_ACTIVE);
    else if (s->state != SMTPD_COMMAND)
      SAY(s, BAD_SEQUENCE);
    else {
      SAY(s, STARTTLS_GO);
      s->starttls = 1;
    }
    return 1;
  }
  if (is_auth) {
    size_t mn;
    if (!s->tls_on && s->auth_require_tls) {
      SAY(s, AUTH_ENCRYPT);
    } else if (s->authed) {
      SAY(s, AUTH_ALREADY);
    } else if (s->has_mailfrom) {
      SAY(s, AUTH_IN_MAIL);
    } else if (!s->greeting.len) {
      SAY(s, AUTH_NEED_EHLO);
    } else if (!cmd->arg || cmd->arg_len == 0 ||
               ((mn = smtpd_word_len(cmd->arg, cmd->arg_len)) <
                    cmd->arg_len &&
                memchr(cmd->arg + mn + 1, ' ', cmd->arg_len - mn - 1))) {
      SAY(s, AUTH_SYNTAX);
    } else {
      char up[64];
      size_t i;
      for (i = 0; i < mn && i < sizeof up; i++) up[i] = smtpd_upper(cmd->arg[i]);
      if (mn >= sizeof up || !smtpd_session_has_mech(s, up, mn)) {
        SAY(s, AUTH_UNKNOWN);
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

