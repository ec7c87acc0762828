/*
 * libFuzzer target: the engine gives the same replies and messages
 * whatever way the input is split. The input is run once whole and once
 * cut at points taken from its first bytes; any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Appends each message to the trace: mailfrom NUL rcpts... NUL data. */
static const char *on_message(smtpd_session *s, void *ctx) {
  smtpd_buf *trace = ctx;
  size_t i;
  smtpd_buf_append(trace, "MSG", 4);
  smtpd_buf_append(trace, s->mailfrom.p ? s->mailfrom.p : "",
                   s->mailfrom.len + 1);
  for (i = 0; i < s->rcpttos.n; i++)
    smtpd_buf_append(trace, s->rcpttos.v[i].p, s->rcpttos.v[i].len + 1);
  smtpd_buf_append(trace, s->parser.data.p ? s->parser.data.p : "",
                   s->parser.data.len);
  smtpd_buf_append(trace, "", 1);
  return "250 OK";
}

/* Runs the session over input in pieces; returns replies and messages
 * in one buffer. */
static void run(const uint8_t *in, size_t len, const uint8_t *cuts,
                size_t ncuts, smtpd_buf *trace) {
  smtpd_session s;
  smtpd_buf out = {NULL, 0, 0};
  size_t off = 0, k = 0;
  smtpd_session_init(&s, &out, "fuzz.example", 12);
  s.data_size_limit = 200;
  s.chunking = 1;                 /* chunk boundaries must not matter either */
  smtpd_session_sync(&s);
  while (off < len && !s.quit) {
    size_t n = ncuts ? (size_t)cuts[k++ % ncuts] % 13 + 1 : len;
    if (n > len - off) n = len - off;
    if (smtpd_session_run(&s, (const char *)in + off, n, on_message, trace))
      abort();
    off += n;
  }
  smtpd_buf_append(trace, out.p ? out.p : "", out.len);
  smtpd_session_free(&s);
  smtpd_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  smtpd_buf a = {NULL, 0, 0}, b = {NULL, 0, 0};
  size_t ncuts;
  if (size < 1) return 0;
  ncuts = data[0] % 16;
  if (ncuts + 1 > size) return 0;
  run(data + 1 + ncuts, size - 1 - ncuts, NULL, 0, &a);
  run(data + 1 + ncuts, size - 1 - ncuts, data + 1, ncuts, &b);
  if (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len) != 0)) abort();
  smtpd_buf_free(&a);
  smtpd_buf_free(&b);
  return 0;
}
