/*
 * Framing of the SMTP input stream: command lines and message data.
 *
 * The parser is a resumable state machine over whatever bytes a read
 * delivered. It knows nothing of sockets or Lua and gives the same result
 * however the input is split. It stops at each complete command line and at
 * the end of each message so the caller can act before reading on.
 *
 * Command lines end at CRLF only; a bare CR or LF stays inside the line
 * (the session rejects such lines). At most line_keep bytes of a line are
 * kept, however long it grows, so memory stays bounded.
 *
 * Message data ends at CRLF "." CRLF only (the CRLF that ended the DATA
 * command counts as the first CRLF, so "." alone on the first line ends an
 * empty message). Lines are dot-unstuffed and joined with LF while the data
 * streams; once the raw size passes the limit the data is dropped, never
 * buffered.
 */
#include <string.h>

#include "smtp/smtp.h"

enum {
  /* command mode */
  C_TEXT = 0, C_CR, C_DONE,
  /* data mode */
  D_FIRST, D_FIRSTDOT, D_FIRSTDOTCR, D_TEXT, D_CR, D_LS, D_DOT, D_DOTCR
};

void smtpd_parser_init(smtpd_parser *p, size_t line_keep) {
  memset(p, 0, sizeof *p);
  p->line_keep = line_keep;
  p->st = C_TEXT;
}

void smtpd_parser_free(smtpd_parser *p) {
  smtpd_buf_free(&p->line);
  smtpd_buf_free(&p->data);
}

void smtpd_parser_begin_data(smtpd_parser *p, size_t limit) {
  p->data_mode = 1;
  p->st = D_FIRST;
  p->data.len = 0;
  p->data_raw = 0;
  p->data_limit = limit;
  p->data_over = 0;
  p->term_len = 0;
}

/* Back to command lines; the message buffer is released. */
void smtpd_parser_end_data(smtpd_parser *p) {
  p->data_mode = 0;
  p->st = C_TEXT;
  smtpd_buf_free(&p->data);
  p->data_raw = 0;
  p->data_over = 0;
}

void smtpd_parser_begin_chunk(smtpd_parser *p, size_t n, int discard,
                              int last, int raw, size_t limit) {
  p->data_mode = 2;
  p->chunk_raw = raw;
  p->chunk_left = n;
  p->chunk_discard = discard;
  p->chunk_last = last;
  p->data_limit = limit;
  p->term_len = 0;
}

int smtpd_parser_chunk_ready(const smtpd_parser *p) {
  return p->data_mode == 2 && p->chunk_left == 0;
}

void smtpd_parser_drop_data(smtpd_parser *p) {
  smtpd_buf_free(&p->data);
  p->data_raw = 0;
  p->data_over = 0;
  p->chunk_cr = 0;
}

size_t smtpd_parser_data_size(const smtpd_parser *p) {
  return p->data_raw - p->term_len;
}

static int parser_keep(smtpd_parser *p, const char *s, size_t n) {
  size_t room = p->line_keep > p->line.len ? p->line_keep - p->line.len : 0;
  p->line_len += n;
  if (n > room) n = room;
  return smtpd_buf_append(&p->line, s, n);
}

/* Appends message bytes unless the message already went past its limit.
 * The 5 bytes of slack cover a terminator not yet recognised as one. */
static int parser_emit(smtpd_parser *p, const char *s, size_t n) {
  if (p->data_over) return 0;
  if (p->data_limit && p->data_raw > p->data_limit + 5) {
    p->data_over = 1;
    smtpd_buf_free(&p->data);
    return 0;
  }
  return smtpd_buf_append(&p->data, s, n);
}

static int parser_feed_command(smtpd_parser *p, const char *buf, size_t len,
                               size_t *consumed) {
  size_t i = 0;
  if (p->st == C_DONE) {
    p->line.len = 0;
    p->line_len = 0;
    p->st = C_TEXT;
  }
  while (i < len) {
    if (p->st == C_TEXT) {
      const char *cr = memchr(buf + i, '\r', len - i);
      size_t run = cr ? (size_t)(cr - (buf + i)) : len - i;
      if (run && parser_keep(p, buf + i, run)) goto nomem;
      i += run;
      if (cr) {
        p->st = C_CR;
        i++;
      }
    } else { /* C_CR */
      char c = buf[i++];
      if (c == '\n') {
        p->st = C_DONE;
        *consumed = i;
        return SMTPD_PARSE_LINE;
      }
      if (parser_keep(p, "\r", 1)) goto nomem;
      if (c != '\r') {
        if (parser_keep(p, &c, 1)) goto nomem;
        p->st = C_TEXT;
      }
    }
  }
  *consumed = i;
  return SMTPD_PARSE_MORE;
nomem:
  *consumed = i;
  return SMTPD_PARSE_NOMEM;
}

#define EMIT(s, n) \
  do { if (parser_emit(p, (s), (n))) goto nomem; } while (0)

static int parser_feed_data(smtpd_parser *p, const char *buf, size_t len,
                            size_t *consumed) {
  size_t i = 0;
  while (i < len) {
    char c;
    if (p->st == D_TEXT) {
      /* Fast path: copy everything up to the next CR in one go. */
      const char *cr = memchr(buf + i, '\r', len - i);
      size_t run = cr ? (size_t)(cr - (buf + i)) : len - i;
      p->data_raw += run;
      if (run) EMIT(buf + i, run);
      i += run;
      if (cr) {
        p->data_raw++;
        p->st = D_CR;
        i++;
      }
      continue;
    }
    c = buf[i++];
    p->data_raw++;
    switch (p->st) {
    case D_FIRST:
      if (c == '.') p->st = D_FIRSTDOT;
      else if (c == '\r') p->st = D_CR;
      else { EMIT(&c, 1); p->st = D_TEXT; }
      break;
    case D_FIRSTDOT:
      if (c == '\r') p->st = D_FIRSTDOTCR;
      else { EMIT(&c, 1); p->st = D_TEXT; }
      break;
    case D_FIRSTDOTCR:
      if (c == '\n') {
        p->term_len = 3;
        goto done;
      }
      EMIT("\r", 1);
      if (c == '\r') p->st = D_CR;
      else { EMIT(&c, 1); p->st = D_TEXT; }
      break;
    case D_CR:
      if (c == '\n') p->st = D_LS;
      else if (c == '\r') EMIT("\r", 1);
      else { EMIT("\r", 1); EMIT(&c, 1); p->st = D_TEXT; }
      break;
    case D_LS:
      if (c == '.') p->st = D_DOT;
      else if (c == '\r') { EMIT("\n", 1); p->st = D_CR; }
      else { EMIT("\n", 1); EMIT(&c, 1); p->st = D_TEXT; }
      break;
    case D_DOT:
      if (c == '\r') p->st = D_DOTCR;
      else { EMIT("\n", 1); EMIT(&c, 1); p->st = D_TEXT; }
      break;
    case D_DOTCR:
      if (c == '\n') {
        p->term_len = 5;
        goto done;
      }
      EMIT("\n\r", 2);
      if (c == '\r') p->st = D_CR;
      else { EMIT(&c, 1); p->st = D_TEXT; }
      break;
    default:
      break;
    }
  }
  *consumed = i;
  return SMTPD_PARSE_MORE;
done:
  if (p->data_limit && smtpd_parser_data_size(p) > p->data_limit) {
    p->data_over = 1;
    smtpd_buf_free(&p->data);
  }
  /* Command lines follow; the message stays in p->data for the caller. */
  p->data_mode = 0;
  p->st = C_TEXT;
  p->line.len = 0;
  p->line_len = 0;
  *consumed = i;
  return SMTPD_PARSE_DATA_END;
nomem:
  *consumed = i;
  return SMTPD_PARSE_NOMEM;
}

/* Keeps chunk bytes: CRLF becomes LF (as in DATA, also across chunks);
 * a lone CR or LF stays. Nothing is kept past the size limit. */
static int chunk_keep(smtpd_parser *p, const char *s, size_t n) {
  size_t i = 0;
  p->data_raw += n;
  if (p->data_limit && p->data_raw > p->data_limit && !p->data_over) {
    p->data_over = 1;
    smtpd_buf_free(&p->data);
  }
  if (p->data_over) {
    p->chunk_cr = n ? s[n - 1] == '\r' : p->chunk_cr;
    return 0;
  }
  if (p->chunk_raw) return smtpd_buf_append(&p->data, s, n);
  if (p->chunk_cr && n) {
    p->chunk_cr = 0;
    if (s[0] == '\n') {
      i = 1;
      if (smtpd_buf_appendc(&p->data, '\n')) return -1;
    } else if (smtpd_buf_appendc(&p->data, '\r')) {
      return -1;
    }
  }
  while (i < n) {
    const char *cr = memchr(s + i, '\r', n - i);
    size_t run = cr ? (size_t)(cr - (s + i)) : n - i;
    if (run && smtpd_buf_append(&p->data, s + i, run)) return -1;
    i += run;
    if (!cr) break;
    if (i + 1 == n) {              /* its LF may start the next chunk */
      p->chunk_cr = 1;
      break;
    }
    if (s[i + 1] == '\n') {
      if (smtpd_buf_appendc(&p->data, '\n')) return -1;
      i += 2;
    } else {
      if (smtpd_buf_appendc(&p->data, '\r')) return -1;
      i++;
    }
  }
  return 0;
}

static int parser_feed_chunk(smtpd_parser *p, const char *buf, size_t len,
                             size_t *consumed) {
  size_t take = len < p->chunk_left ? len : p->chunk_left;
  if (!p->chunk_discard && take && chunk_keep(p, buf, take)) {
    *consumed = 0;
    return SMTPD_PARSE_NOMEM;
  }
  p->chunk_left -= take;
  *consumed = take;
  if (p->chunk_left) return SMTPD_PARSE_MORE;
  if (p->chunk_last && !p->chunk_discard) {
    /* The message is whole, in DATA's form (its last line break counts
     * as the terminator's); it stays in p->data for the caller, as after
     * DATA, and command lines follow. */
    if (p->chunk_cr && !p->data_over && !p->chunk_raw &&
        smtpd_buf_appendc(&p->data, '\r'))
      return SMTPD_PARSE_NOMEM;
    p->chunk_cr = 0;
    if (!p->data_over && !p->chunk_raw && p->data.len &&
        p->data.p[p->data.len - 1] == '\n')
      p->data.len--;
    p->data_mode = 0;
    p->st = C_TEXT;
    p->line.len = 0;
    p->line_len = 0;
    return SMTPD_PARSE_DATA_END;
  }
  p->data_mode = 0;
  p->st = C_DONE;                  /* the next line starts afresh */
  return SMTPD_PARSE_CHUNK;
}

int smtpd_parser_feed(smtpd_parser *p, const char *buf, size_t len,
                      size_t *consumed) {
  if (p->data_mode == 2) return parser_feed_chunk(p, buf, len, consumed);
  if (p->data_mode) return parser_feed_data(p, buf, len, consumed);
  return parser_feed_command(p, buf, len, consumed);
}
