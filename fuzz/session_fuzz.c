/*
 * libFuzzer target: whole SMTP sessions through the protocol engine
 * (parser + session, no libuv, no Lua), fed in pieces the input chooses.
 *
 * Input: byte 0 picks options (SMTPUTF8, decode_data, size limit), byte 1
 * the piece size; the rest is the client's bytes. Checked on every run:
 * every reply is a well-formed SMTP reply line, the message buffer never
 * holds more than the limit allows, and memory is freed (ASan/LSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/smtpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_replies(const smtpd_buf *out) {
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
    for (j = 0; j < (size_t)(crlf - line); j++) {
      if (line[j] == '\r' || line[j] == '\n' || line[j] == '\0') abort();
    }
    i = (size_t)(crlf - out->p) + 2;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  smtpd_session s;
  smtpd_buf out = {NULL, 0, 0};
  size_t off, piece, limit;
  int closed = 0;
  if (size < 2) return 0;
  smtpd_session_init(&s, &out, "fuzz.example", 12);
  s.enable_smtputf8 = data[0] & 1;
  s.decode_data = !s.enable_smtputf8 && (data[0] & 2);
  limit = (data[0] & 4) ? (size_t)(data[0] >> 3) * 16 : 0;
  s.data_size_limit = limit;
  smtpd_session_sync(&s);
  piece = data[1] ? data[1] : 1;
  data += 2;
  size -= 2;
  for (off = 0; off < size && !closed;) {
    size_t n = size - off < piece ? size - off : piece, used = 0, pos = 0;
    while (pos < n && !closed) {
      int r = smtpd_parser_feed(&s.parser, (const char *)data + off + pos,
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
      } else {
        if (smtpd_session_data_end(&s)) {
          if (limit && s.parser.data.len > limit) abort();
          smtpd_reply(&s, "250 OK", 6);
          smtpd_session_post_data(&s);
        }
      }
      /* The message buffer never holds more than the limit allows. */
      if (limit && s.parser.data.len > limit + 5) abort();
    }
    off += n;
  }
  check_replies(&out);
  smtpd_session_free(&s);
  smtpd_buf_free(&out);
  return 0;
}
