/*
 * libFuzzer target: the relay client's protocol (csrc/smtp/relay.c) over
 * any bytes a server may send, fed in pieces the input chooses, while an
 * owner runs two transactions (MAIL, three RCPTs, DATA, a body with every
 * awkward line ending, the end; RSET; QUIT).
 *
 * Input: byte 0 picks the setup (LMTP, STARTTLS, AUTH and its mechanism),
 * byte 1 the piece size; the rest is the server's bytes. Checked on every
 * run: each command gets exactly the replies it is owed, in order, and
 * nothing after FAILED; no reply text is longer than the bounds; what we
 * write is lines ended by CRLF only (no bare CR or LF, the body
 * dot-stuffed); memory is freed (ASan/LSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
  smtpd_relay r;
  int failed;
  int ready;
  int transaction;         /* 0, 1: which one; 2: quitting */
  int rcpts_sent, rcpts_answered;
  int dot_sent;
  size_t dot_replies;
  int owed;                /* commands sent, not fully answered */
  size_t written;          /* bytes of r.out already checked */
  int bol;                 /* at a line start in what we wrote */
} run;

static const char *const rcpts[] = {
  "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net> NOTIFY=NEVER",
  "RCPT TO:<c@example.net>"
};

/* What we wrote: CRLF line ends only. */
static void check_out(run *x) {
  const char *p = x->r.out.p;
  size_t i;
  for (i = x->written; i < x->r.out.len; i++) {
    if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) abort();
    if (p[i] == '\r' && i + 1 < x->r.out.len && p[i + 1] != '\n') abort();
  }
  /* A CR at the very end waits for its LF: check it next time. */
  x->written = x->r.out.len && p[x->r.out.len - 1] == '\r'
               ? x->r.out.len - 1 : x->r.out.len;
}

static void send_body(run *x) {
  static const char *const pieces[] = {
    "Subject: t\n\n", ".leading dot\n", "bare\rcr\n", "crlf\r", "\n.\n",
    "..two\r\n", "last line, no end"
  };
  size_t i;
  for (i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
    if (smtpd_relay_body(&x->r, pieces[i], strlen(pieces[i]))) return;
  if (smtpd_relay_dot(&x->r) == 0) {
    x->dot_sent = 1;
    x->owed++;
  }
}

static void start(run *x) {
  char mail[64];
  int i;
  memcpy(mail, "MAIL FROM:<s@example.org>", 26);
  if (smtpd_relay_send(&x->r, SMTPD_RC_MAIL, mail, strlen(mail))) return;
  x->owed++;
  x->rcpts_sent = x->rcpts_answered = 0;
  x->dot_sent = 0;
  x->dot_replies = 0;
  for (i = 0; i < 3; i++) {
    if (!(x->r.ext & SMTPD_EXT_PIPELINING) && i > 0) break;
    if (smtpd_relay_send(&x->r, SMTPD_RC_RCPT, rcpts[i],
                         strlen(rcpts[i])) == 0) {
      x->rcpts_sent++;
      x->owed++;
    }
  }
}

static void on_event(void *ctx, const smtpd_relay_event *ev) {
  run *x = ctx;
  if (x->failed) abort();              /* nothing after FAILED */
  if (ev->len > 16384 || ev->text[ev->len] != '\0') abort();
  switch (ev->kind) {
  case SMTPD_RELAY_EV_STARTTLS:
    smtpd_relay_tls_up(&x->r);
    break;
  case SMTPD_RELAY_EV_READY:
    if (x->ready) abort();
    x->ready = 1;
    start(x);
    break;
  case SMTPD_RELAY_EV_FAILED:
    x->failed = 1;
    break;
  case SMTPD_RELAY_EV_REPLY:
    if (x->owed <= 0) abort();         /* a reply to nothing */
    if (ev->code < 100 || ev->code > 599) abort();
    if (ev->last) x->owed--;
    switch (ev->cmd) {
    case SMTPD_RC_MAIL:
      break;
    case SMTPD_RC_RCPT:
      if (++x->rcpts_answered > x->rcpts_sent) abort();
      if (x->rcpts_sent < 3 && smtpd_relay_send(&x->r, SMTPD_RC_RCPT,
          rcpts[x->rcpts_sent], strlen(rcpts[x->rcpts_sent])) == 0) {
        x->rcpts_sent++;
        x->owed++;
      } else if (x->rcpts_answered == 3 &&
                 smtpd_relay_send(&x->r, SMTPD_RC_DATA, "DATA", 4) == 0) {
        x->owed++;
      }
      break;
    case SMTPD_RC_DATA:
      if (ev->code == 354) send_body(x);
      break;
    case SMTPD_RC_DOT:
      if (!x->dot_sent) abort();
      if (++x->dot_replies > 3) abort();
      if (!ev->last) break;
      if (x->transaction++ == 0) {
        if (smtpd_relay_send(&x->r, SMTPD_RC_RSET, "RSET", 4) == 0)
          x->owed++;
        start(x);
      } else if (smtpd_relay_send(&x->r, SMTPD_RC_QUIT, "QUIT", 4) == 0) {
        x->owed++;
      }
      break;
    default:
      break;
    }
    break;
  default:
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  run x;
  smtpd_relay_setup setup;
  size_t off = 2, piece;
  if (size < 2) return 0;
  memset(&x, 0, sizeof x);
  memset(&setup, 0, sizeof setup);
  setup.helo = "fuzz.example";
  setup.lmtp = data[0] & 1;
  setup.starttls = (data[0] >> 1) % 3;
  if (data[0] & 8) {
    setup.user = "user";
    setup.password = "secret";
    setup.mechanism = (data[0] >> 4) % 3;
    setup.plaintext = 1;
  }
  piece = (size_t)data[1] + 1;
  if (smtpd_relay_init(&x.r, &setup, on_event, &x)) return 0;
  while (off < size && !x.failed) {
    size_t n = size - off < piece ? size - off : piece;
    smtpd_relay_input(&x.r, (const char *)data + off, n);
    off += n;
    check_out(&x);
    if (x.r.out.len > 1 << 20) abort();   /* we never queue that much */
  }
  if (x.r.line.len > 4096 || x.r.text.len > 16384) abort();
  smtpd_relay_free(&x.r);
  return 0;
}
