/*
 * The pure SMTP layer as a program, for specs that build it in ways the
 * module is not built (spec/bits32_spec.lua: with gcc -m32): reads a
 * client's bytes on stdin, runs them through the one dispatcher with the
 * built-in commands, and writes the replies to stdout, then one line per
 * message the handler got ("MESSAGE <bytes>").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

static size_t messages[64];
static size_t nmessages;

static const char *on_message(smtpd_session *s, void *ctx) {
  (void)ctx;
  if (nmessages < 64) messages[nmessages++] = s->parser.data.len;
  return "250 OK";
}

int main(void) {
  smtpd_session s;
  smtpd_buf out = {NULL, 0, 0};
  static char in[1 << 20];
  size_t n = fread(in, 1, sizeof in, stdin), i;
  smtpd_session_conf conf;
  memset(&conf, 0, sizeof conf);
  conf.data_size_limit = SMTPD_DATA_SIZE_DEFAULT;
  conf.max_recipients = SMTPD_MAX_RECIPIENTS;
  conf.max_bad = SMTPD_MAX_BAD_COMMANDS;
  conf.pipelining = conf.chunking = 1;
  if (smtpd_session_init(&s, &out, "test.example", 12)) return 2;
  smtpd_session_configure(&s, &conf);
  smtpd_session_run(&s, in, n, on_message, NULL);
  fwrite(out.p ? out.p : "", 1, out.len, stdout);
  for (i = 0; i < nmessages; i++) printf("MESSAGE %zu\n", messages[i]);
  printf("WORD %d\n", (int)(sizeof(size_t) * 8));
  smtpd_session_free(&s);
  smtpd_buf_free(&out);
  return 0;
}
