/*
 * Replies: the one catalogue of every reply text the core sends (also
 * core.REPLIES, for the Lua side), the writers every reply goes through,
 * and the enhanced status codes (RFC 2034, RFC 3463) they add when the
 * session has them on. No Lua, no libuv: replies are appended to s->out.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "smtp/smtp.h"

#define SMTPD_REPLY_DEF(name, text) {#name, text, sizeof(text) - 1},
const smtpd_reply_text smtpd_replies[SMTPD_NREPLIES] = {
  SMTPD_REPLIES(SMTPD_REPLY_DEF)
};
#undef SMTPD_REPLY_DEF

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
    smtpd_sayf(s, SMTPD_R_TOO_MANY_BAD, s->fqdn.p ? s->fqdn.p : "");
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

/* Appends text that echoes client input into a reply: anything that is not
 * printable ASCII becomes '?', so a reply can never be split or smuggled. */
int smtpd_reply_echo(smtpd_session *s, const char *pre, const char *p,
                     size_t n, const char *post) {
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

int smtpd_say(smtpd_session *s, int id) {
  return smtpd_reply(s, smtpd_replies[id].text, smtpd_replies[id].len);
}

int smtpd_sayf(smtpd_session *s, int id, ...) {
  char tmp[1024];
  int n;
  va_list ap;
  va_start(ap, id);
  n = vsnprintf(tmp, sizeof tmp, smtpd_replies[id].text, ap);
  va_end(ap);
  if (n < 0) return -1;
  if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
  return smtpd_reply(s, tmp, (size_t)n);
}

int smtpd_say_echo(smtpd_session *s, int id, const char *p, size_t n) {
  const char *t = smtpd_replies[id].text, *at = strstr(t, "%s");
  char pre[128], post[128];
  size_t lp = (size_t)(at - t), lq = strlen(at + 2);
  if (lp >= sizeof pre || lq >= sizeof post) return -1;
  memcpy(pre, t, lp);
  pre[lp] = '\0';
  memcpy(post, at + 2, lq + 1);
  return smtpd_reply_echo(s, pre, p, n, post);
}
