/*
 * libFuzzer target: the engine gives the same replies and messages
 * whatever way the input is split. The input is run once whole and once
 * cut at points taken from its first bytes; any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/smtpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the session over input in pieces; returns replies and messages
 * (each message as mailfrom NUL rcpts... NUL data) in one buffer. */
static void run(const uint8_t *in, size_t len, const uint8_t *cuts,
                size_t ncuts, smtpd_buf *trace) {
  smtpd_session s;
  smtpd_buf out = {NULL, 0, 0};
  size_t off = 0, k = 0;
  int closed = 0;
  smtpd_session_init(&s, &out, "fuzz.example", 12);
  s.data_size_limit = 200;
  smtpd_session_sync(&s);
  while (off < len && !closed) {
    size_t n = ncuts ? (size_t)cuts[k++ % ncuts] % 13 + 1 : len;
    size_t pos = 0, used;
    if (n > len - off) n = len - off;
    while (pos < n && !closed) {
      int r = smtpd_parser_feed(&s.parser, (const char *)in + off + pos,
                                n - pos, &used);
      pos += used;
      if (r == SMTPD_PARSE_MORE) break;
      if (r == SMTPD_PARSE_NOMEM) abort();
      if (r == SMTPD_PARSE_LINE) {
        smtpd_command cmd;
        if (!smtpd_session_line(&s, &cmd)) continue;
        if (cmd.verb >= 0)
          smtpd_session_builtin(&s, cmd.verb, cmd.arg, cmd.arg_len);
        else
          smtpd_session_unknown(&s, cmd.name, cmd.name_len);
        if (s.quit) closed = 1;
      } else if (smtpd_session_data_end(&s)) {
        size_t i;
        smtpd_buf_append(trace, "MSG", 4);
        smtpd_buf_append(trace, s.mailfrom.p ? s.mailfrom.p : "",
                         s.mailfrom.len + 1);
        for (i = 0; i < s.rcpttos.n; i++)
          smtpd_buf_append(trace, s.rcpttos.v[i].p, s.rcpttos.v[i].len + 1);
        smtpd_buf_append(trace, s.parser.data.p ? s.parser.data.p : "",
                         s.parser.data.len);
        smtpd_buf_append(trace, "", 1);
        smtpd_reply(&s, "250 OK", 6);
        smtpd_session_post_data(&s);
      }
    }
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
