/*
 * The RCPT-time relay (PureProxy, MailmanProxy): a client's session paired
 * with transactions on upstream servers, command by command, as a
 * before-queue proxy does (Postfix's smtpd_proxy_filter is the model).
 *
 *   MAIL   opens the upstream transaction (connecting first, once per
 *          client session: a connection serves the session's next
 *          transactions too)
 *   RCPT   is answered with the upstream's own verdict for it, text and
 *          all; with a chain of upstreams (MailmanProxy: Mailman's LMTP,
 *          then the relay), a 5xx from a routing upstream means "not
 *          mine" and the next one is asked
 *   DATA   (or the first BDAT) is answered with the upstreams' 354, or
 *          their refusal; the message then streams to them as it arrives,
 *          X-Peer inserted after its headers where smtpd's PureProxy puts
 *          it, and the end of it gets their final reply
 *
 * The session holds each of these commands (s->relay) until the upstream
 * settles it, and the channel waits meanwhile (relay_wait), so replies
 * stay in order. Whatever goes wrong upstream (no reply in time, a
 * connection that goes away, a message that cannot be finished) is a 4xx
 * to the client and never a 250: a transaction that lost its upstream
 * answers 451 to everything until it ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/glue.h"

/* Lines of an upstream reply passed on, and their length. */
#define REPLY_LINES 10
#define REPLY_LINE_MAX 500
/* Past this many bytes not yet written upstream, the client is not read
 * (back-pressure through the relay). */
#define UPSTREAM_HIGH (256 * 1024)

enum { W_NONE, W_CONNECT, W_MAIL, W_RCPT, W_DATA, W_DOT };
enum { D_NONE, D_ASKED, D_STREAM };

typedef struct upstream {
  smtpd_relaying *r;
  smtpd_relayconf *conf;
  int route;               /* a 5xx to RCPT: ask the next upstream */
  const char *name;        /* for messages: "Upstream", "Mailman" */
  smtpd_client *c;         /* NULL: not connected */
  int ready;               /* greeted: commands may go */
  int failed_now;          /* failed during the held MAIL: no retry */
  int in_mail;             /* a transaction is open there */
  int mail_code;           /* this transaction's MAIL reply, 0 before */
  size_t rcpts;            /* recipients it took in this transaction */
  int data;                /* D_* */
  int binary;              /* the message goes by BDAT (BINARYMIME) */
  size_t chunks;           /* BDAT chunks sent, not yet answered */
  size_t due;              /* commands sent, not yet answered */
  int code;                /* the last reply's code */
  smtpd_buf reply;         /* its lines for the client: "ddd text\n"... */
  int final_code;          /* the end of the message: the worst reply */
  smtpd_buf final;
} upstream;

struct smtpd_relaying {
  smtpd_channel *ch;
  upstream up[SMTPD_MAX_UPSTREAMS];
  size_t n;
  int wait;                /* W_*: what the held command waits for */
  int target;              /* the upstream the RCPT went to */
  int broken;              /* the transaction lost an upstream: 451 */
  char why[300];
  const char *why_name;    /* whose failure why says */
  int in_call;             /* inside a call to a client: no step yet */
  int bol, peer_done;      /* X-Peer after the headers, as it streams */
  int binary;              /* a BINARYMIME message */
  char peer_line[80];
};

static void relaying_step(smtpd_relaying *r);
static void relaying_mail(smtpd_relaying *r);
static const smtpd_client_owner up_owner;

/* ---- replies to the client ------------------------------------------------ */

/* A reply (code, its lines joined by "\n") as lines the client may be
 * sent, into out: "ddd text\n" each, non-printable bytes made '?'. */
static void reply_lines(smtpd_buf *out, int code, const char *text,
                        size_t len) {
  const char *p = text, *end = text + len;
  int line = 0;
  out->len = 0;
  do {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p), i;
    char buf[REPLY_LINE_MAX + 8];
    int k = snprintf(buf, sizeof buf, "%03d ", code);
    if (n > REPLY_LINE_MAX - 4) n = REPLY_LINE_MAX - 4;
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)p[i];
      buf[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n == 0) k--;           /* "ddd" alone */
    buf[k++] = '\n';
    smtpd_buf_append(out, buf, (size_t)k);
    p = nl ? nl + 1 : end;
  } while (p < end && ++line < REPLY_LINES);
}

/* Our own text as u's reply. */
static void up_own_reply(upstream *u, const char *text) {
  u->code = atoi(text);
  reply_lines(&u->reply, u->code, text + 4, strlen(text + 4));
}

/* Sends every line of reply but the last (as "ddd-text"), and returns
 * the last (its length in *n). */
static const char *reply_lead(smtpd_session *s, const smtpd_buf *reply,
                              size_t *n) {
  const char *p = reply->p ? reply->p : "", *end = p + reply->len;
  *n = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    char buf[REPLY_LINE_MAX + 8];
    if (!nl || nl + 1 >= end) {
      *n = len;
      return p;
    }
    memcpy(buf, p, len);
    if (len > 3) buf[3] = '-';
    smtpd_reply_raw(s, buf, len);
    p = nl + 1;
  }
  return p;
}

/* Settles the held command with reply (accepted: a 2xx; 354 for DATA). */
static void relaying_settle(smtpd_relaying *r, int accept,
                            const smtpd_buf *reply) {
  smtpd_session *s = &r->ch->s;
  size_t n = 0;
  const char *last = NULL;
  if (reply && reply->len) last = reply_lead(s, reply, &n);
  smtpd_session_settle(s, accept, last, n);
}

/* The held command is answered: the channel reads on. */
static void relaying_done(smtpd_relaying *r) {
  smtpd_channel *ch = r->ch;
  r->wait = W_NONE;
  ch->relay_wait = 0;
  smtpd_session_sync(&ch->s);
  smtpd_channel_arm(ch);
  if (!ch->in_process && !ch->h.closing) smtpd_channel_process_input(ch);
}

/* Our 451 for a transaction that cannot go on. */
static void unavailable(const smtpd_relaying *r, char *buf, size_t size) {
  snprintf(buf, size, SMTPD_TEXT(UPSTREAM_UNAVAILABLE),
           r->why_name ? r->why_name : "Upstream",
           r->why[0] ? r->why : "the relay failed");
}

static void relaying_refuse_unavailable(smtpd_relaying *r) {
  char buf[400];
  smtpd_buf b = {NULL, 0, 0};
  unavailable(r, buf, sizeof buf);
  reply_lines(&b, 451, buf + 4, strlen(buf + 4));
  relaying_settle(r, 0, &b);
  smtpd_buf_free(&b);
}

/* ---- the connections --------------------------------------------------------- */

static void up_reset(upstream *u) {
  u->ready = 0;
  u->in_mail = 0;
  u->data = D_NONE;
  u->chunks = 0;
  u->due = 0;
}

static void up_close(upstream *u, int polite) {
  smtpd_client *c = u->c;
  u->c = NULL;
  up_reset(u);
  if (c == NULL) return;
  if (polite) smtpd_client_quit(c);
  else smtpd_client_close(c);   /* an unfinished message is dropped */
}

/* u is lost (a failure, or a reply that leaves it in no known state):
 * whatever it owed answers 451, and a transaction it was part of is
 * broken. */
static void up_lost(upstream *u, const char *why) {
  smtpd_relaying *r = u->r;
  int part = u->in_mail || u->due || u->data != D_NONE;
  char buf[400];
  up_close(u, 0);
  u->failed_now = 1;
  snprintf(r->why, sizeof r->why, "%s", why);
  r->why_name = u->name;
  unavailable(r, buf, sizeof buf);
  up_own_reply(u, buf);
  if (u->mail_code == 0 && (r->wait == W_MAIL || r->wait == W_CONNECT))
    u->mail_code = 451;
  u->final_code = 451;
  smtpd_buf_free(&u->final);
  if (part && r->wait != W_MAIL && r->wait != W_CONNECT) r->broken = 1;
  if (r->wait == W_CONNECT) relaying_mail(r);
  else relaying_step(r);
}

static int up_connect(upstream *u) {
  u->ready = 0;
  u->c = smtpd_client_open(u->r->ch->h.map, u->conf, &up_owner, u);
  return u->c ? 0 : -1;
}

/* Sends a command to u: 0, or -1 (lost: up_lost ran, or will). */
static int up_send(upstream *u, int cmd, const char *line, size_t n) {
  int err;
  if (u->c == NULL) return -1;
  u->r->in_call++;
  err = smtpd_client_send(u->c, cmd, line, n);
  u->r->in_call--;
  if (err == 0) u->due++;
  return err;
}

/* The parameters of the held MAIL or RCPT (as sent) that u takes,
 * appended to b; -1 with *why when one that must not be dropped is not
 * offered there. AUTH= and what only we offer stay here; DSN's go where
 * DSN is offered. */
static int up_params(upstream *u, const smtpd_session *s, int mail,
                     smtpd_buf *b, const char **why) {
  const char *p = s->pending_raw.p ? s->pending_raw.p : "";
  size_t n = s->pending_raw.len, i = 0;
  unsigned ext = smtpd_client_ext(u->c);
  while (i < n) {
    size_t j = i, k;
    const char *w = p + i;
    int keep = 0;
    while (j < n && p[j] != ' ') j++;
    k = 0;
    while (i + k < j && w[k] != '=') k++;
#define IS(kw) (k == sizeof(kw) - 1 && strncasecmp(w, kw, k) == 0)
    if (mail && IS("SIZE")) {
      keep = (ext & SMTPD_EXT_SIZE) != 0;
    } else if (mail && IS("BODY")) {
      int binary = j - i == 15 && strncasecmp(w, "BODY=BINARYMIME", 15) == 0;
      if (binary && !((ext & SMTPD_EXT_BINARYMIME) &&
                      (ext & SMTPD_EXT_CHUNKING))) {
        *why = SMTPD_TEXT(UPSTREAM_BINARYMIME);
        return -1;
      }
      keep = binary || (ext & SMTPD_EXT_8BITMIME) != 0;
    } else if (mail && IS("SMTPUTF8")) {
      if (!(ext & SMTPD_EXT_SMTPUTF8)) {
        *why = SMTPD_TEXT(UPSTREAM_SMTPUTF8);
        return -1;
      }
      keep = 1;
    } else if (mail && IS("REQUIRETLS")) {
      if (!(ext & SMTPD_EXT_REQUIRETLS)) {
        *why = SMTPD_TEXT(UPSTREAM_REQUIRETLS);
        return -1;
      }
      keep = 1;
    } else if ((mail && (IS("RET") || IS("ENVID"))) ||
               (!mail && (IS("NOTIFY") || IS("ORCPT")))) {
      keep = (ext & SMTPD_EXT_DSN) != 0;
    }
#undef IS
    if (keep && (smtpd_buf_appendc(b, ' ') || smtpd_buf_append(b, w, j - i)))
      return -1;
    i = j;
    while (i < n && p[i] == ' ') i++;
  }
  return 0;
}

/* The held MAIL to u: RSET first when an older transaction is open
 * there (the client's RSET, HELO or a message it never ended). */
static void up_send_mail(upstream *u) {
  smtpd_session *s = &u->r->ch->s;
  smtpd_buf b = {NULL, 0, 0};
  const char *why = NULL;
  if (u->in_mail && up_send(u, SMTPD_RC_RSET, "RSET", 4)) return;
  u->in_mail = 0;
  u->rcpts = 0;
  u->data = D_NONE;
  u->binary = smtpd_session_binary(s) ||
              (s->pending_raw.p && strcasestr(s->pending_raw.p,
                                              "BODY=BINARYMIME"));
  smtpd_buf_append(&b, "MAIL FROM:<", 11);
  if (!(s->pending_path.len == 2 && memcmp(s->pending_path.p, "<>", 2) == 0))
    smtpd_buf_append(&b, s->pending_path.p, s->pending_path.len);
  smtpd_buf_appendc(&b, '>');
  if (up_params(u, s, 1, &b, &why)) {
    if (why == NULL) why = SMTPD_TEXT(LOCAL_ERROR);
    up_own_reply(u, why);
    u->mail_code = u->code;
  } else if (up_send(u, SMTPD_RC_MAIL, b.p, b.len) == 0) {
    u->in_mail = 1;
  }
  smtpd_buf_free(&b);
}

/* ---- the held commands --------------------------------------------------------- */

static int any_due(const smtpd_relaying *r) {
  size_t i;
  for (i = 0; i < r->n; i++)
    if (r->up[i].due) return 1;
  return 0;
}

/* MAIL: every upstream connected and greeted, then asked. */
static void relaying_mail(smtpd_relaying *r) {
  size_t i;
  r->wait = W_CONNECT;
  for (i = 0; i < r->n; i++) {
    upstream *u = &r->up[i];
    if (u->c == NULL && !u->failed_now && up_connect(u)) {
      char buf[400];
      snprintf(r->why, sizeof r->why, "out of memory");
      r->why_name = u->name;
      unavailable(r, buf, sizeof buf);
      up_own_reply(u, buf);
      u->mail_code = 451;
      u->failed_now = 1;
    }
    if (u->c && !u->ready) return;        /* its ready() goes on */
  }
  r->wait = W_MAIL;
  for (i = 0; i < r->n; i++) {
    upstream *u = &r->up[i];
    u->mail_code = u->failed_now ? u->mail_code : 0;
    if (u->c) up_send_mail(u);
  }
  relaying_step(r);
}

static void relaying_mail_done(smtpd_relaying *r) {
  upstream *ok = NULL, *last = &r->up[r->n - 1];
  size_t i;
  for (i = 0; i < r->n; i++)
    if (r->up[i].mail_code >= 200 && r->up[i].mail_code < 300 &&
        (ok == NULL || &r->up[i] == last))
      ok = &r->up[i];
  if (ok) relaying_settle(r, 1, &ok->reply);
  else relaying_settle(r, 0, &last->reply);
  relaying_done(r);
}

/* RCPT: to the first upstream that took the MAIL; after a routing
 * upstream's 5xx, to the next. */
static void relaying_rcpt_to(smtpd_relaying *r, size_t from) {
  smtpd_session *s = &r->ch->s;
  size_t i;
  r->wait = W_RCPT;
  for (i = from; i < r->n; i++) {
    upstream *u = &r->up[i];
    smtpd_buf b = {NULL, 0, 0};
    const char *why = NULL;
    if (!(u->mail_code >= 200 && u->mail_code < 300) || u->c == NULL) {
      /* A routing upstream that is not there cannot say which addresses
       * are its own: its 4xx, never a guess. */
      if (i + 1 < r->n && !(u->route && u->mail_code < 500)) continue;
      /* The last one refused the transaction: its refusal again. */
      r->target = (int)i;
      relaying_step(r);
      return;
    }
    r->target = (int)i;
    if (smtpd_buf_append(&b, "RCPT TO:<", 9) ||
        smtpd_buf_append(&b, s->pending_path.p, s->pending_path.len) ||
        smtpd_buf_appendc(&b, '>') || up_params(u, s, 0, &b, &why)) {
      up_own_reply(u, SMTPD_TEXT(LOCAL_ERROR));
    } else {
      up_send(u, SMTPD_RC_RCPT, b.p, b.len);
    }
    smtpd_buf_free(&b);
    relaying_step(r);
    return;
  }
}

static void relaying_rcpt_done(smtpd_relaying *r) {
  upstream *u = &r->up[r->target];
  if (u->code >= 200 && u->code < 300) {
    u->rcpts++;
    relaying_settle(r, 1, &u->reply);
  } else if (u->route && u->code >= 500 && (size_t)r->target + 1 < r->n) {
    relaying_rcpt_to(r, (size_t)r->target + 1);   /* not its address */
    return;
  } else {
    relaying_settle(r, 0, &u->reply);
  }
  relaying_done(r);
}

/* DATA (or a first BDAT): to every upstream that took a recipient. */
static void relaying_data(smtpd_relaying *r) {
  size_t i;
  r->wait = W_DATA;
  for (i = 0; i < r->n; i++) {
    upstream *u = &r->up[i];
    if (u->rcpts == 0 || u->c == NULL) continue;
    if (u->binary) {
      u->data = D_STREAM;        /* BDAT chunks need no 354 */
    } else {
      u->data = D_ASKED;
      up_send(u, SMTPD_RC_DATA, "DATA", 4);
    }
  }
  relaying_step(r);
}

static void relaying_data_done(smtpd_relaying *r) {
  upstream *refused = NULL;
  size_t i, streaming = 0;
  for (i = 0; i < r->n; i++) {
    upstream *u = &r->up[i];
    if (u->rcpts == 0) continue;
    if (u->data == D_STREAM) streaming++;
    else if (refused == NULL) refused = u;
  }
  if (refused || streaming == 0) {
    /* Refused somewhere, or nowhere to go: no message goes anywhere. */
    for (i = 0; i < r->n; i++)
      if (r->up[i].data == D_STREAM) up_close(&r->up[i], 0);
    if (refused && refused->reply.len) {
      relaying_settle(r, 0, &refused->reply);
    } else {
      if (!r->why[0])
        snprintf(r->why, sizeof r->why, "no upstream took the message");
      relaying_refuse_unavailable(r);
    }
  } else {
    r->bol = 1;
    r->peer_done = 0;
    r->binary = smtpd_session_binary(&r->ch->s);
    relaying_settle(r, 1, NULL);
  }
  relaying_done(r);
}

/* ---- the message, as it streams ------------------------------------------------ */

static void up_body(upstream *u, const char *p, size_t n) {
  int err;
  if (u->c == NULL || u->data != D_STREAM || n == 0) return;
  u->r->in_call++;
  if (u->binary) {
    err = smtpd_client_bdat(u->c, p, n, 0);
    if (err == 0) {
      u->due++;
      u->chunks++;
    }
  } else {
    err = smtpd_client_body(u->c, p, n);
  }
  u->r->in_call--;
}

/* Bytes of the message to every upstream that takes it, with X-Peer
 * where smtpd puts it: before the first empty line (after the headers),
 * or at the end when there is none. A BINARYMIME message (its bytes as
 * they are, CRLF and all) gets it first, with CRLF. */
static void relaying_feed(smtpd_relaying *r, const char *p, size_t n) {
  size_t i, k, start = 0;
  if (!r->peer_done && r->binary) {
    char line[96];
    size_t len = strlen(r->peer_line);
    snprintf(line, sizeof line, "%.*s\r\n", (int)len - 1, r->peer_line);
    for (i = 0; i < r->n; i++) up_body(&r->up[i], line, strlen(line));
    r->peer_done = 1;
  }
  if (!r->peer_done) {
    for (k = 0; k < n; k++) {
      if (r->bol && p[k] == '\n') {
        for (i = 0; i < r->n; i++) {
          up_body(&r->up[i], p, k);
          up_body(&r->up[i], r->peer_line, strlen(r->peer_line));
        }
        start = k;
        r->peer_done = 1;
        break;
      }
      r->bol = p[k] == '\n';
    }
    if (!r->peer_done) start = 0;
  }
  if (start < n)
    for (i = 0; i < r->n; i++) up_body(&r->up[i], p + start, n - start);
}

static int any_streaming(const smtpd_relaying *r) {
  size_t i;
  for (i = 0; i < r->n; i++)
    if (r->up[i].data == D_STREAM && r->up[i].c) return 1;
  return 0;
}

void smtpd_relaying_pump(smtpd_channel *ch) {
  smtpd_relaying *r = ch->relay;
  smtpd_parser *p = &ch->s.parser;
  size_t i;
  if (r == NULL || r->wait == W_DOT || !any_streaming(r)) return;
  if (p->data_over || (!p->data_mode && ch->s.state != SMTPD_DATA)) {
    /* Too big (552), or the message ended here without reaching its
     * end upstream: the upstreams must never get a cut message ended. */
    for (i = 0; i < r->n; i++)
      if (r->up[i].data == D_STREAM) up_close(&r->up[i], 0);
    return;
  }
  if (!p->data_mode || ch->s.decode_data) return;
  if (p->data.len == 0) return;
  relaying_feed(r, p->data.p, p->data.len);
  p->data.len = 0;
}

int smtpd_relaying_blocked(const smtpd_channel *ch) {
  const smtpd_relaying *r = ch->relay;
  size_t i;
  if (r == NULL) return 0;
  for (i = 0; i < r->n; i++)
    if (r->up[i].c && smtpd_client_queued(r->up[i].c) > UPSTREAM_HIGH)
      return 1;
  return 0;
}

/* The end of the message: what is left of it, then the end to each
 * upstream; the client waits for their replies. */
void smtpd_relaying_message(smtpd_channel *ch) {
  smtpd_relaying *r = ch->relay;
  smtpd_parser *p = &ch->s.parser;
  size_t i;
  if (r == NULL) {
    smtpd_session_post_data(&ch->s);
    smtpd_say_message(&ch->s, SMTPD_R_LOCAL_ERROR);
    return;
  }
  if (p->data.len && any_streaming(r)) relaying_feed(r, p->data.p,
                                                     p->data.len);
  smtpd_parser_end_data(p);
  if (!r->peer_done && !r->binary) {
    /* No empty line: X-Peer at the end, as smtpd adds it. */
    char tail[96];
    size_t len = strlen(r->peer_line);
    if (r->bol) snprintf(tail, sizeof tail, "%s", r->peer_line);
    else snprintf(tail, sizeof tail, "\n%.*s", (int)len - 1, r->peer_line);
    for (i = 0; i < r->n; i++) up_body(&r->up[i], tail, strlen(tail));
    r->peer_done = 1;
  }
  r->wait = W_DOT;
  ch->relay_wait = 1;
  for (i = 0; i < r->n; i++) {
    upstream *u = &r->up[i];
    int err;
    u->final_code = 0;
    smtpd_buf_free(&u->final);
    if (u->rcpts == 0) continue;
    if (u->data != D_STREAM || u->c == NULL) {
      u->final_code = 451;
      continue;
    }
    r->in_call++;
    err = u->binary ? smtpd_client_bdat(u->c, "", 0, 1)
                    : smtpd_client_dot(u->c);
    r->in_call--;
    if (err == 0) u->due++;
    else u->final_code = 451;
  }
  smtpd_channel_arm(ch);
  relaying_step(r);
}

/* The replies to the end of the message, as one reply to the client:
 *   taken everywhere: the upstream's reply (ours when there are several)
 *   a 4xx anywhere, or a lost upstream: 4xx, and the client sends it
 *     again (upstreams that took it get it twice: logged)
 *   refused everywhere: the first refusal
 *   refused by some, taken by others: 250, the refusals logged */
static void relaying_dot_done(smtpd_relaying *r) {
  smtpd_channel *ch = r->ch;
  upstream *ok = NULL, *temp = NULL, *perm = NULL;
  size_t i, took = 0, sent = 0, n;
  const char *last;
  for (i = 0; i < r->n; i++) {
    upstream *u = &r->up[i];
    if (u->rcpts == 0) continue;
    sent++;
    if (u->final_code >= 200 && u->final_code < 300) {
      took++;
      if (!ok) ok = u;
    } else if (u->final_code >= 500 && u->final_code < 600) {
      if (!perm) perm = u;
    } else if (!temp) {
      temp = u;
    }
  }
  smtpd_session_post_data(&ch->s);
  if (temp || sent == 0 || r->broken) {
    if (took)
      smtpd_channel_log(ch, "warning", "%zu upstream(s) took a message "
                        "the client will send again", took);
    if (temp && temp->final.len) {
      last = reply_lead(&ch->s, &temp->final, &n);
      smtpd_session_message_reply(&ch->s, last, n);
    } else {
      char buf[400];
      if (!r->why[0])
        snprintf(r->why, sizeof r->why, "the message did not reach it");
      unavailable(r, buf, sizeof buf);
      smtpd_session_message_reply(&ch->s, buf, strlen(buf));
    }
  } else if (ok && sent == 1) {
    last = reply_lead(&ch->s, &ok->final, &n);
    smtpd_session_message_reply(&ch->s, last, n);
  } else if (ok) {
    if (perm)
      smtpd_channel_log(ch, "warning", "an upstream refused a message "
                        "others took: %d", perm->final_code);
    smtpd_say_message(&ch->s, SMTPD_R_OK);
  } else {
    last = reply_lead(&ch->s, &perm->final, &n);
    smtpd_session_message_reply(&ch->s, last, n);
  }
  for (i = 0; i < r->n; i++) {
    r->up[i].in_mail = 0;
    r->up[i].rcpts = 0;
    r->up[i].data = D_NONE;
  }
  r->broken = 0;
  r->why[0] = '\0';
  r->why_name = NULL;
  relaying_done(r);
}

/* When nothing more is due, the held command (or the message) gets its
 * answer. */
static void relaying_step(smtpd_relaying *r) {
  if (r->in_call || any_due(r)) return;
  switch (r->wait) {
  case W_MAIL: relaying_mail_done(r); break;
  case W_RCPT: relaying_rcpt_done(r); break;
  case W_DATA: relaying_data_done(r); break;
  case W_DOT: relaying_dot_done(r); break;
  default: break;
  }
}

/* ---- the client's callbacks ------------------------------------------------------ */

static void up_on_ready(void *ctx, smtpd_client *c) {
  upstream *u = ctx;
  (void)c;
  u->ready = 1;
  if (u->r->wait == W_CONNECT) relaying_mail(u->r);
}

static void up_on_reply(void *ctx, smtpd_client *c,
                        const smtpd_relay_event *ev) {
  upstream *u = ctx;
  smtpd_relaying *r = u->r;
  (void)c;
  if (ev->last && u->due) u->due--;
  switch (ev->cmd) {
  case SMTPD_RC_RSET:
    /* Between transactions: anything but 250 leaves it in no known
     * state. */
    if (ev->code != 250) up_lost(u, "the upstream refused RSET");
    return;
  case SMTPD_RC_MAIL:
    reply_lines(&u->reply, ev->code, ev->text, ev->len);
    u->code = u->mail_code = ev->code;
    if (!(ev->code >= 200 && ev->code < 300)) u->in_mail = 0;
    break;
  case SMTPD_RC_RCPT:
    reply_lines(&u->reply, ev->code, ev->text, ev->len);
    u->code = ev->code;
    break;
  case SMTPD_RC_DATA:
    reply_lines(&u->reply, ev->code, ev->text, ev->len);
    u->code = ev->code;
    u->data = ev->code == 354 ? D_STREAM : D_NONE;
    break;
  case SMTPD_RC_BDAT:
    if (u->chunks) {
      /* A chunk on the way: only a refusal matters. */
      u->chunks--;
      if (!(ev->code >= 200 && ev->code < 300)) {
        reply_lines(&u->final, ev->code, ev->text, ev->len);
        u->final_code = ev->code;
        up_lost(u, "the upstream refused a chunk");
        return;
      }
      break;
    }
    /* The last chunk is the end of the message. */
    /* fall through */
  case SMTPD_RC_DOT:
    /* LMTP: the worst of the recipients' replies. */
    if (u->final_code == 0 || ev->code > u->final_code) {
      reply_lines(&u->final, ev->code, ev->text, ev->len);
      u->final_code = ev->code;
    }
    if (ev->last) u->in_mail = 0;
    break;
  default:
    break;
  }
  if (ev->code == 421) {
    /* It closes: the next transaction gets a new connection. */
    u->in_mail = 0;
  }
  relaying_step(r);
}

static void up_on_failed(void *ctx, smtpd_client *c, const char *stage,
                         int code, const char *why, int timeout) {
  upstream *u = ctx;
  (void)c;
  (void)code;
  u->c = NULL;                 /* it closes itself */
  smtpd_channel_log(u->r->ch, "warning", "upstream: %s%s", why,
                    timeout ? " (timeout)" : "");
  (void)stage;
  up_lost(u, why);
}

static void up_on_drained(void *ctx, smtpd_client *c) {
  upstream *u = ctx;
  smtpd_channel *ch = u->r->ch;
  (void)c;
  if (!ch->in_process && !ch->h.closing && !smtpd_relaying_blocked(ch))
    smtpd_channel_process_input(ch);
}

static const smtpd_client_owner up_owner = {
  up_on_ready, up_on_reply, up_on_failed, up_on_drained
};

/* ---- the channel's side ------------------------------------------------------------ */

static smtpd_relaying *relaying_get(smtpd_channel *ch) {
  smtpd_relaying *r = ch->relay;
  const smtpd_shared *sh = ch->shared;
  size_t i;
  char host[128] = "";
  if (r) return r;
  r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->ch = ch;
  r->n = sh->nupstreams;
  for (i = 0; i < r->n; i++) {
    r->up[i].r = r;
    r->up[i].conf = sh->upstreams[i];
    r->up[i].route = sh->upstream_route[i];
    r->up[i].name = sh->upstream_name[i];
  }
  /* smtpd's peer[0]: the address without its port. */
  smtpd_addr_name((const struct sockaddr *)&ch->peer, host, sizeof host);
  if (host[0] == '[') {
    char *e = strchr(host, ']');
    if (e) *e = '\0';
    memmove(host, host + 1, strlen(host));
  } else if (strncmp(host, "unix:", 5) != 0) {
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
  }
  snprintf(r->peer_line, sizeof r->peer_line, "X-Peer: %.64s\n", host);
  ch->relay = r;
  return r;
}

void smtpd_relaying_held(smtpd_channel *ch) {
  smtpd_session *s = &ch->s;
  smtpd_relaying *r;
  int held = s->pending;
  size_t i;
  if (!held || !s->relay || ch->relay_wait) return;
  r = relaying_get(ch);
  if (r == NULL) {
    smtpd_session_settle(s, 0, SMTPD_TEXT(LOCAL_ERROR),
                         SMTPD_TEXT_LEN(LOCAL_ERROR));
    return;
  }
  ch->relay_wait = 1;
  smtpd_channel_arm(ch);
  if (held == SMTPD_VERB_MAIL + 1) {
    /* A message that never reached its end upstream is dropped there. */
    for (i = 0; i < r->n; i++)
      if (r->up[i].data != D_NONE) up_close(&r->up[i], 0);
    r->broken = 0;
    r->why[0] = '\0';
    r->why_name = NULL;
    for (i = 0; i < r->n; i++) r->up[i].failed_now = 0;
    relaying_mail(r);
    return;
  }
  if (r->broken) {
    relaying_refuse_unavailable(r);
    relaying_done(r);
    return;
  }
  if (held == SMTPD_VERB_RCPT + 1) relaying_rcpt_to(r, 0);
  else relaying_data(r);
}

/* The channel's handler_timeout while an upstream did not answer: it is
 * given up, and the client hears 451. */
void smtpd_relaying_abandon(smtpd_channel *ch) {
  smtpd_relaying *r = ch->relay;
  size_t i;
  if (r == NULL || !ch->relay_wait) return;
  r->in_call++;
  for (i = 0; i < r->n; i++)
    if (r->up[i].due || (r->wait == W_CONNECT && r->up[i].c &&
                         !r->up[i].ready))
      up_lost(&r->up[i], "the upstream did not answer in time");
  r->in_call--;
  if (r->wait == W_CONNECT) relaying_mail(r);
  else relaying_step(r);
}

/* The channel closes: so do the upstreams (an unfinished message is
 * dropped there, never ended). */
void smtpd_relaying_close(smtpd_channel *ch) {
  smtpd_relaying *r = ch->relay;
  size_t i;
  if (r == NULL) return;
  for (i = 0; i < r->n; i++)
    up_close(&r->up[i], r->up[i].data == D_NONE && !r->up[i].due);
}

void smtpd_relaying_free(smtpd_channel *ch) {
  smtpd_relaying *r = ch->relay;
  size_t i;
  if (r == NULL) return;
  for (i = 0; i < r->n; i++) {
    up_close(&r->up[i], 0);
    smtpd_buf_free(&r->up[i].reply);
    smtpd_buf_free(&r->up[i].final);
  }
  free(r);
  ch->relay = NULL;
}
