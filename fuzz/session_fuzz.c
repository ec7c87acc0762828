/*
 * libFuzzer target: whole SMTP sessions through the protocol engine
 * (parser + session, no libuv, no Lua), fed in pieces the input chooses.
 *
 * Input: byte 0 picks options (SMTPUTF8, decode_data, size limit), byte 1
 * the piece size (odd: the session is a relay's, its held commands
 * settled at once); the rest is the client's bytes. Checked on every run:
 * every reply is a well-formed SMTP reply line, the message buffer never
 * holds more than the limit allows, and memory is freed (ASan/LSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* With enhanced codes on, every 2xx/4xx/5xx line but EHLO's and HELO's
 * 250s (and the greeting, which the engine does not send) has one whose
 * class is the reply's. */
static int enhanced_ok(const char *l, size_t n) {
  size_t i = 4;
  if (l[0] == '3' || (l[0] == '2' && l[1] == '5' && l[2] == '0' &&
                      (n < 10 || l[4] != '2')))
    return 1;                      /* 3xx, or a HELO/EHLO 250 */
  if (n < 9 || l[4] != l[0] || l[5] != '.') return 0;
  for (i = 6; i < n && l[i] != ' '; i++)
    if (!((l[i] >= '0' && l[i] <= '9') || l[i] == '.')) return 0;
  return 1;
}

static void check_replies(const smtpd_buf *out, int enhanced) {
  size_t i = 0;
  while (i < out->len) {
    const char *line = out->p + i;
    const char *crlf = NULL;
    size_t j;
    for (j = i; j + 1 < out->len; j++) {
      if (out->p[j] == '\r' && out->p[j + 1] == '\n') {
        crlf = out->p + j;
        break;
      }
    }
    if (crlf == NULL) abort();                     /* unterminated reply */
    if (crlf - line < 3 || line[0] < '2' || line[0] > '5') abort();
    if (line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9')
      abort();
    if (crlf - line > 3 && line[3] != ' ' && line[3] != '-') abort();
    if (enhanced && !enhanced_ok(line, (size_t)(crlf - line))) abort();
    for (j = 0; j < (size_t)(crlf - line); j++) {
      if (line[j] == '\r' || line[j] == '\n' || line[j] == '\0') abort();
    }
    i = (size_t)(crlf - out->p) + 2;
  }
}

/* A message must respect the limit it was taken under. */
static const char *on_message(smtpd_session *s, void *ctx) {
  size_t limit = *(const size_t *)ctx;
  if (limit && s->parser.data.len > limit) abort();
  return "250 OK";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  smtpd_session s;
  smtpd_buf out = {NULL, 0, 0};
  size_t off, piece, limit;
  if (size < 2) return 0;
  smtpd_session_init(&s, &out, "fuzz.example", 12);
  s.enable_smtputf8 = data[0] & 1;
  s.decode_data = !s.enable_smtputf8 && (data[0] & 2);
  limit = (data[0] & 4) ? (size_t)(data[0] >> 3) * 16 : 0;
  s.data_size_limit = limit;
  s.chunking = 1;                 /* BDAT, as servers offer it by default */
  s.enhanced = (data[0] >> 7) & 1;  /* enhanced status codes on half the time */
  s.dsn = (data[0] >> 6) & 1;       /* DSN parameters on half the time */
  smtpd_session_sync(&s);
  /* A relay's held commands (MAIL, RCPT, DATA, a first BDAT), settled
   * at once, when the piece size is odd. */
  s.relay = data[1] & 1;
  piece = data[1] ? data[1] : 1;
  data += 2;
  size -= 2;
  for (off = 0; off < size && !s.quit; off += piece) {
    size_t n = size - off < piece ? size - off : piece;
    if (smtpd_session_run(&s, (const char *)data + off, n, on_message,
                          &limit) != 0)
      abort();
    /* The message buffer never holds more than the limit allows. */
    if (limit && s.parser.data.len > limit + 5) abort();
  }
  check_replies(&out, s.enhanced);
  smtpd_session_free(&s);
  smtpd_buf_free(&out);
  return 0;
}
