/*
 * The message parser: see mime.h. Learned from how mail clients and
 * Python's email package read real, often broken, mail; written here.
 *
 * Lines end in LF or CRLF. A header line is a field name of printable
 * ASCII without ':' followed by ':', or a continuation (starting with a
 * blank); "From " lines among the headers (mbox envelopes) are skipped;
 * any other line ends the headers and starts the body. A multipart body
 * is cut at its boundary lines ("--b", "--b--", trailing blanks allowed);
 * the line break before a boundary line belongs to the boundary. A
 * multipart whose boundary never appears is read as one leaf; a missing
 * close boundary ends the last part at the end of the body.
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mime/mime.h"

#define WSP(c) ((c) == ' ' || (c) == '\t')

/* ---- indexing ------------------------------------------------------------ */

static int push_part(smtpd_mime *m) {
  if (m->nparts == m->pcap) {
    size_t cap = m->pcap ? m->pcap * 2 : 8;
    smtpd_mime_part *n = realloc(m->parts, cap * sizeof *n);
    if (n == NULL) return -1;
    m->parts = n;
    m->pcap = cap;
  }
  memset(&m->parts[m->nparts], 0, sizeof *m->parts);
  return (int)m->nparts++;
}

static int push_header(smtpd_mime *m, size_t name, size_t nlen, size_t value,
                       size_t vlen) {
  smtpd_mime_header *h;
  if (m->nhdrs >= SMTPD_MIME_MAX_HEADERS) return 0;   /* past the cap: dropped */
  if (m->nhdrs == m->hcap) {
    size_t cap = m->hcap ? m->hcap * 2 : 32;
    smtpd_mime_header *n = realloc(m->hdrs, cap * sizeof *n);
    if (n == NULL) return -1;
    m->hdrs = n;
    m->hcap = cap;
  }
  h = &m->hdrs[m->nhdrs++];
  h->name = name;
  h->name_len = nlen;
  h->value = value;
  h->value_len = vlen;
  return 0;
}

/* The end of the line starting at i (the index of its LF, or end). */
static size_t line_end(const char *p, size_t i, size_t end) {
  const char *nl = memchr(p + i, '\n', end - i);
  return nl ? (size_t)(nl - p) : end;
}

/* Length of the field name if line [i, e) is a header line, else -1. */
static long header_name(const char *p, size_t i, size_t e) {
  size_t j;
  for (j = i; j < e; j++) {
    unsigned char c = (unsigned char)p[j];
    if (c == ':') return (long)(j - i);
    if (c < 33 || c > 126) return -1;
  }
  return -1;
}

/* Reads the header block of part pi from p[start..end): its headers and
 * where its body starts. */
static int read_headers(smtpd_mime *m, int pi, size_t start, size_t end) {
  const char *p = m->p;
  size_t i = start, body = end;
  long cur = -1;                      /* the header being continued */
  m->parts[pi].hfirst = m->nhdrs;
  while (i < end) {
    size_t e = line_end(p, i, end), le = e;
    long nl;
    if (le > i && p[le - 1] == '\r') le--;
    if (le == i) {                    /* the blank line */
      body = e < end ? e + 1 : end;
      break;
    }
    if (WSP(p[i]) && cur >= 0) {
      smtpd_mime_header *h = &m->hdrs[cur];
      h->value_len = le - h->value;
    } else if (WSP(p[i])) {
      /* A continuation with nothing to continue: ignored. */
    } else if (le - i >= 5 && memcmp(p + i, "From ", 5) == 0) {
      cur = -1;                       /* an mbox envelope line */
    } else if ((nl = header_name(p, i, le)) >= 0) {
      size_t v = i + (size_t)nl + 1;
      size_t before = m->nhdrs;
      if (push_header(m, i, (size_t)nl, v, le - v)) return -1;
      cur = m->nhdrs > before ? (long)before : -1;
    } else {
      body = i;                       /* not a header: the body starts */
      break;
    }
    i = e < end ? e + 1 : end;
  }
  m->parts[pi].hcount = m->nhdrs - m->parts[pi].hfirst;
  m->parts[pi].body = body > end ? end : body;
  m->parts[pi].body_end = end;
  return 0;
}

long smtpd_mime_find(const smtpd_mime *m, int part, const char *name,
                     size_t nlen, size_t from) {
  const smtpd_mime_part *pt = &m->parts[part];
  size_t k;
  for (k = from; k < pt->hcount; k++) {
    const smtpd_mime_header *h = &m->hdrs[pt->hfirst + k];
    if (h->name_len == nlen && strncasecmp(m->p + h->name, name, nlen) == 0)
      return (long)k;
  }
  return -1;
}

const smtpd_mime_header *smtpd_mime_first(const smtpd_mime *m, int part,
                                          const char *name, size_t nlen) {
  long k = smtpd_mime_find(m, part, name, nlen, 0);
  return k < 0 ? NULL : &m->hdrs[m->parts[part].hfirst + (size_t)k];
}

static const smtpd_mime_header *first_header(const smtpd_mime *m, int part,
                                             const char *name) {
  return smtpd_mime_first(m, part, name, strlen(name));
}

int smtpd_mime_ctype(const smtpd_mime *m, int part, smtpd_buf *out) {
  const smtpd_mime_header *h = first_header(m, part, "content-type");
  const char *dflt = m->parts[part].digest_child ? "message/rfc822"
                                                   : "text/plain";
  size_t start = out->len, k, slashes = 0;
  if (h) {
    if (smtpd_mime_main_value(m->p + h->value, h->value_len, out)) return -1;
    for (k = start; k < out->len; k++) {
      unsigned char c = (unsigned char)out->p[k];
      if (c == '/') slashes++;
      else if (c <= 32 || c >= 127) slashes = 2;   /* not a media type */
    }
    if (slashes == 1 && out->p[start] != '/' && out->p[out->len - 1] != '/')
      return 0;
    out->len = start;
    /* An invalid type is text/plain, even in a digest (RFC 2045 5.2). */
    dflt = "text/plain";
  }
  return smtpd_buf_append(out, dflt, strlen(dflt));
}

/* Is line [i, le) a boundary line of b? 1 delimiter, 2 close, 0 no. */
static int boundary_line(const char *p, size_t i, size_t le, const char *b,
                         size_t blen) {
  size_t j;
  int close = 0;
  if (le - i < blen + 2 || p[i] != '-' || p[i + 1] != '-' ||
      memcmp(p + i + 2, b, blen) != 0)
    return 0;
  j = i + 2 + blen;
  if (le - j >= 2 && p[j] == '-' && p[j + 1] == '-') {
    close = 1;
    j += 2;
  }
  while (j < le && WSP(p[j])) j++;
  if (j != le) return 0;
  return close ? 2 : 1;
}

static int parse_part(smtpd_mime *m, int pi, int depth);

static int add_child(smtpd_mime *m, int pi, size_t start, size_t end,
                     int depth, int digest, int *last) {
  int ci;
  if (m->nparts >= SMTPD_MIME_MAX_PARTS) return 0;
  ci = push_part(m);
  if (ci < 0) return -1;
  m->parts[ci].start = start;
  m->parts[ci].end = end;
  m->parts[ci].parent = pi;
  m->parts[ci].depth = depth;
  m->parts[ci].first_child = m->parts[ci].next = -1;
  m->parts[ci].digest_child = digest;
  if (*last < 0) m->parts[pi].first_child = ci;
  else m->parts[*last].next = ci;
  *last = ci;
  m->parts[pi].nchildren++;
  m->parts[pi].has_children = 1;
  return parse_part(m, ci, depth);
}

/* pos less one line break (LF or CRLF) right before it, not before start. */
static size_t before_break(const char *p, size_t start, size_t pos) {
  if (pos > start && p[pos - 1] == '\n') pos--;
  if (pos > start && p[pos - 1] == '\r') pos--;
  return pos;
}

/* Cuts the multipart body of part pi at its boundary lines. */
static int split_multipart(smtpd_mime *m, int pi, const char *b, size_t blen,
                           int digest, int depth) {
  const char *p = m->p;
  size_t i = m->parts[pi].body, end = m->parts[pi].body_end;
  size_t part_start = 0;
  int open = 0, last = -1;
  while (i < end) {
    size_t e = line_end(p, i, end), le = e, next = e < end ? e + 1 : end;
    int kind;
    if (le > i && p[le - 1] == '\r') le--;
    kind = boundary_line(p, i, le, b, blen);
    if (kind) {
      if (open) {
        /* The line break before the boundary line is the boundary's. */
        size_t pend = before_break(p, part_start, i);
        if (add_child(m, pi, part_start, pend, depth + 1, digest, &last))
          return -1;
      }
      if (kind == 2) {
        open = 0;
        break;                        /* the epilogue follows */
      }
      open = 1;
      part_start = next;
    }
    i = next;
  }
  if (open) {
    /* No close boundary: the last part runs to the end, less its final
     * line break (as if the boundary had followed). */
    size_t pend = before_break(p, part_start, end);
    if (add_child(m, pi, part_start, pend, depth + 1, digest, &last))
      return -1;
  }
  return 0;
}

static int parse_part(smtpd_mime *m, int pi, int depth) {
  smtpd_buf ct = {NULL, 0, 0}, bnd = {NULL, 0, 0};
  const smtpd_mime_header *h;
  int r = 0;
  if (read_headers(m, pi, m->parts[pi].start, m->parts[pi].end)) return -1;
  if (depth >= SMTPD_MIME_MAX_DEPTH) return 0;
  if (smtpd_mime_ctype(m, pi, &ct)) return -1;
  if (ct.len > 10 && memcmp(ct.p, "multipart/", 10) == 0) {
    h = first_header(m, pi, "content-type");
    if (h) {
      int f = smtpd_mime_param(m->p + h->value, h->value_len, "boundary", 8,
                               &bnd);
      if (f < 0) r = -1;
      /* Trailing blanks of a boundary are not part of it. */
      while (f > 0 && bnd.len && WSP(bnd.p[bnd.len - 1])) bnd.len--;
      if (f > 0 && bnd.len > 0 && bnd.len <= 200)
        r = split_multipart(m, pi, bnd.p, bnd.len,
                            ct.len == 16 && memcmp(ct.p + 10, "digest", 6) == 0,
                            depth);
    }
  } else if (ct.len > 8 && memcmp(ct.p, "message/", 8) == 0 &&
             !(ct.len == 23 && memcmp(ct.p + 8, "delivery-status", 15) == 0)) {
    /* message/rfc822 and its kin: the body is a message of its own. */
    if (m->nparts < SMTPD_MIME_MAX_PARTS) {
      int last = -1;
      r = add_child(m, pi, m->parts[pi].body, m->parts[pi].body_end,
                    depth + 1, 0, &last);
    }
  }
  smtpd_buf_free(&ct);
  smtpd_buf_free(&bnd);
  return r;
}

void smtpd_mime_free(smtpd_mime *m) {
  free(m->parts);
  free(m->hdrs);
  memset(m, 0, sizeof *m);
}

int smtpd_mime_parse(smtpd_mime *m, const char *p, size_t len) {
  int root;
  memset(m, 0, sizeof *m);
  m->p = p;
  m->len = len;
  root = push_part(m);
  if (root < 0) return -1;
  m->parts[root].start = 0;
  m->parts[root].end = len;
  m->parts[root].parent = -1;
  m->parts[root].first_child = m->parts[root].next = -1;
  if (parse_part(m, root, 0)) {
    smtpd_mime_free(m);
    return -1;
  }
  return 0;
}

/* ---- charsets ------------------------------------------------------------ */

static int put_utf8(smtpd_buf *out, unsigned long cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) { b[0] = (char)cp; n = 1; }
  else if (cp < 0x800) {
    b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
  } else {
    b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  return smtpd_buf_append(out, b, n);
}

#define REPLACEMENT 0xFFFD

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned long cp;
  size_t k, len;
  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xC2 && p[0] <= 0xDF) { len = 2; cp = p[0] & 0x1F; }
  else if (p[0] >= 0xE0 && p[0] <= 0xEF) { len = 3; cp = p[0] & 0x0F; }
  else if (p[0] >= 0xF0 && p[0] <= 0xF4) { len = 4; cp = p[0] & 0x07; }
  else return 0;
  if (n < len) return 0;
  for (k = 1; k < len; k++) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

/* Valid UTF-8 is kept; each byte that is not becomes U+FFFD. */
static int utf8_lenient(const char *p, size_t n, smtpd_buf *out) {
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    size_t k;
    while (run < n && (k = utf8_seq((const unsigned char *)p + run,
                                    n - run)) > 0)
      run += k;
    if (run > i && smtpd_buf_append(out, p + i, run - i)) return -1;
    i = run;
    if (i < n) {
      if (put_utf8(out, REPLACEMENT)) return -1;
      i++;
    }
  }
  return 0;
}

/* Windows-1252's 0x80..0x9F (0: undefined). */
static const unsigned short cp1252[32] = {
  0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030,
  0x0160, 0x2039, 0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D,
  0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E,
  0x0178
};

static int cs_is(const char *cs, size_t n, const char *name) {
  return strlen(name) == n && strncasecmp(cs, name, n) == 0;
}

/* iconv descriptors, kept by charset name: opening one reads glibc's
 * gconv modules from disk, which must not happen for every value of
 * every message. A few names cover nearly all mail; the least recently
 * used goes when a new one comes. A name iconv does not know is kept too
 * (as (iconv_t)-1), so it is not asked again. One cache per thread (a
 * descriptor holds conversion state), emptied by smtpd_mime_iconv_flush. */
#define ICONV_CACHE 8

static __thread struct {
  char name[64];
  iconv_t cd;
  unsigned long used;
} iconv_cache[ICONV_CACHE];
static __thread unsigned long iconv_clock;
static __thread unsigned long iconv_opens;

unsigned long smtpd_mime_iconv_opens(void) {
  return iconv_opens;
}

void smtpd_mime_iconv_flush(void) {
  size_t i;
  for (i = 0; i < ICONV_CACHE; i++) {
    if (iconv_cache[i].used && iconv_cache[i].cd != (iconv_t)-1)
      iconv_close(iconv_cache[i].cd);
    iconv_cache[i].used = 0;
  }
}

static iconv_t iconv_for(const char *name) {
  size_t i, victim = 0;
  for (i = 0; i < ICONV_CACHE; i++) {
    if (iconv_cache[i].used && strcasecmp(iconv_cache[i].name, name) == 0) {
      iconv_cache[i].used = ++iconv_clock;
      if (iconv_cache[i].cd != (iconv_t)-1)
        iconv(iconv_cache[i].cd, NULL, NULL, NULL, NULL);   /* reset */
      return iconv_cache[i].cd;
    }
    if (iconv_cache[i].used < iconv_cache[victim].used) victim = i;
  }
  if (iconv_cache[victim].used && iconv_cache[victim].cd != (iconv_t)-1)
    iconv_close(iconv_cache[victim].cd);
  iconv_opens++;
  snprintf(iconv_cache[victim].name, sizeof iconv_cache[victim].name, "%s",
           name);
  iconv_cache[victim].cd = iconv_open("UTF-8", name);
  iconv_cache[victim].used = ++iconv_clock;
  return iconv_cache[victim].cd;
}

int smtpd_mime_to_utf8(const char *cs, size_t cslen, const char *p, size_t n,
                       smtpd_buf *out) {
  char name[64];
  iconv_t cd;
  size_t i;
  if (cslen == 0 || cs_is(cs, cslen, "utf-8") || cs_is(cs, cslen, "utf8") ||
      cs_is(cs, cslen, "us-ascii") || cs_is(cs, cslen, "ascii") ||
      cslen >= sizeof name)
    return utf8_lenient(p, n, out);
  if (cs_is(cs, cslen, "iso-8859-1") || cs_is(cs, cslen, "latin1") ||
      cs_is(cs, cslen, "latin-1") || cs_is(cs, cslen, "windows-1252") ||
      cs_is(cs, cslen, "cp1252")) {
    /* Labelled Latin-1 is nearly always Windows-1252 (as browsers and
     * mail clients read it); the two agree outside 0x80..0x9F. */
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)p[i];
      unsigned long cp = c;
      if (c >= 0x80 && c < 0xA0 && !cs_is(cs, cslen, "iso-8859-1") &&
          !cs_is(cs, cslen, "latin1") && !cs_is(cs, cslen, "latin-1"))
        cp = cp1252[c - 0x80] ? cp1252[c - 0x80] : REPLACEMENT;
      if (put_utf8(out, cp)) return -1;
    }
    return 0;
  }
  memcpy(name, cs, cslen);
  name[cslen] = '\0';
  if (memchr(name, '\0', cslen)) return utf8_lenient(p, n, out);
  cd = iconv_for(name);
  if (cd == (iconv_t)-1) return utf8_lenient(p, n, out);
  {
    char *in = (char *)p;
    size_t left = n;
    while (left > 0) {
      char chunk[1024], *o = chunk;
      size_t room = sizeof chunk, r;
      r = iconv(cd, &in, &left, &o, &room);
      if (smtpd_buf_append(out, chunk, (size_t)(o - chunk))) return -1;
      if (r == (size_t)-1 && errno != E2BIG) {
        /* A byte that does not convert (or a truncated sequence). */
        if (put_utf8(out, REPLACEMENT)) return -1;
        in++;
        left--;
        iconv(cd, NULL, NULL, NULL, NULL);
      }
    }
    /* Flush any shift state. */
    {
      char chunk[64], *o = chunk;
      size_t room = sizeof chunk;
      iconv(cd, NULL, NULL, &o, &room);
      if (smtpd_buf_append(out, chunk, (size_t)(o - chunk))) return -1;
    }
  }
  return 0;
}

/* ---- transfer encodings -------------------------------------------------- */

/* Base64 digit values; 64 marks everything else. */
static const unsigned char b64tab[256] = {
#define X64 64,64,64,64,64,64,64,64,64,64,64,64,64,64,64,64
  X64, X64,
  64,64,64,64,64,64,64,64,64,64,64,62,64,64,64,63,
  52,53,54,55,56,57,58,59,60,61,64,64,64,64,64,64,
  64, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,10,11,12,13,14,
  15,16,17,18,19,20,21,22,23,24,25,64,64,64,64,64,
  64,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,
  41,42,43,44,45,46,47,48,49,50,51,64,64,64,64,64,
  X64, X64, X64, X64, X64, X64, X64, X64
#undef X64
};

int smtpd_mime_base64(const char *p, size_t n, smtpd_buf *out) {
  const unsigned char *s = (const unsigned char *)p;
  unsigned long acc = 0;
  int bits = 0;
  size_t i = 0;
  unsigned char *o;
  if (smtpd_buf_reserve(out, n / 4 * 3 + 3)) return -1;
  o = (unsigned char *)out->p + out->len;
  while (i < n) {
    /* Whole quanta of four digits: the common case, a line at a time. */
    if (bits == 0) {
      while (i + 4 <= n) {
        unsigned a = b64tab[s[i]], b = b64tab[s[i + 1]],
                 c = b64tab[s[i + 2]], d = b64tab[s[i + 3]];
        unsigned long v;
        if ((a | b | c | d) & 64) break;
        v = (unsigned long)a << 18 | b << 12 | c << 6 | d;
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
        i += 4;
      }
      if (i >= n) break;
    }
    {
      /* One digit at a time; line breaks, '=' and junk are skipped. */
      unsigned v = b64tab[s[i++]];
      if (v & 64) continue;
      acc = (acc << 6 | v) & 0xFFFFFF;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        *o++ = (unsigned char)(acc >> bits);
        if (bits == 0) acc = 0;
      }
    }
  }
  out->len = (size_t)((char *)o - out->p);
  return 0;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int smtpd_mime_qp(const char *p, size_t n, smtpd_buf *out) {
  size_t i = 0;
  if (smtpd_buf_reserve(out, n)) return -1;
  while (i < n) {
    /* Line by line: trailing blanks go (RFC 2045 6.7 rule 3). */
    size_t e = line_end(p, i, n), le = e, j;
    int soft = 0;
    if (le > i && p[le - 1] == '\r') le--;
    while (le > i && WSP(p[le - 1])) le--;
    if (le > i && p[le - 1] == '=') {
      soft = 1;
      le--;
    }
    for (j = i; j < le; j++) {
      int h1, h2;
      const char *eq = memchr(p + j, '=', le - j);
      size_t run = eq ? (size_t)(eq - (p + j)) : le - j;
      if (run) {                      /* plain bytes up to the next '=' */
        memcpy(out->p + out->len, p + j, run);
        out->len += run;
        j += run;
        if (j >= le) break;
      }
      if (p[j] == '=' && j + 2 < le &&
          (h1 = hexval((unsigned char)p[j + 1])) >= 0 &&
          (h2 = hexval((unsigned char)p[j + 2])) >= 0) {
        out->p[out->len++] = (char)(h1 * 16 + h2);
        j += 2;
      } else {
        out->p[out->len++] = p[j];
      }
    }
    if (e < n && !soft) {
      /* The line break as it was (CRLF or LF). */
      if (e > i && p[e - 1] == '\r') out->p[out->len++] = '\r';
      out->p[out->len++] = '\n';
    }
    i = e < n ? e + 1 : n;
  }
  return 0;
}

/* ---- header values ------------------------------------------------------- */

int smtpd_mime_unfold(const char *v, size_t n, smtpd_buf *out) {
  size_t i = 0;
  while (i < n && WSP(v[i])) i++;
  while (i < n) {
    size_t j = i;
    while (j < n && v[j] != '\r' && v[j] != '\n') j++;
    if (smtpd_buf_append(out, v + i, j - i)) return -1;
    while (j < n && (v[j] == '\r' || v[j] == '\n')) j++;
    i = j;
  }
  return 0;
}

/* An encoded word at v[0..n): =?charset[*lang]?B|Q?text?= decoded into
 * out; its length, or 0 if there is none there (out unchanged). */
static size_t encoded_word(const char *v, size_t n, smtpd_buf *out) {
  size_t i = 2, cs, cslen, enc, text, end, start = out->len, k;
  if (n < 8 || v[0] != '=' || v[1] != '?') return 0;
  cs = i;
  while (i < n && v[i] != '?' && !WSP(v[i])) i++;
  if (i >= n || v[i] != '?' || i == cs) return 0;
  cslen = i - cs;
  for (k = cs; k < cs + cslen; k++)
    if (v[k] == '*') {
      cslen = k - cs;                 /* RFC 2231 language: dropped */
      break;
    }
  enc = ++i;
  if (i + 1 >= n || v[i + 1] != '?') return 0;
  if (v[enc] != 'B' && v[enc] != 'b' && v[enc] != 'Q' && v[enc] != 'q')
    return 0;
  text = i + 2;
  end = text;
  while (end + 1 < n && !(v[end] == '?' && v[end + 1] == '=')) end++;
  if (end + 1 >= n) return 0;
  {
    smtpd_buf raw = {NULL, 0, 0};
    int r;
    if (v[enc] == 'B' || v[enc] == 'b') {
      r = smtpd_mime_base64(v + text, end - text, &raw);
    } else {
      size_t j;
      r = smtpd_buf_reserve(&raw, end - text + 1);
      for (j = text; r == 0 && j < end; j++) {
        int h1, h2;
        if (v[j] == '_') raw.p[raw.len++] = ' ';
        else if (v[j] == '=' && j + 2 < end &&
                 (h1 = hexval((unsigned char)v[j + 1])) >= 0 &&
                 (h2 = hexval((unsigned char)v[j + 2])) >= 0) {
          raw.p[raw.len++] = (char)(h1 * 16 + h2);
          j += 2;
        } else {
          raw.p[raw.len++] = v[j];
        }
      }
    }
    if (r == 0) r = smtpd_mime_to_utf8(v + cs, cslen, raw.p ? raw.p : "",
                                       raw.len, out);
    smtpd_buf_free(&raw);
    if (r) {
      out->len = start;
      return 0;
    }
  }
  return end + 2;
}

/* Decodes the encoded words of already unfolded text u[0..n). */
static int decode_words(const char *u, size_t n, smtpd_buf *out) {
  size_t i = 0;
  int after_ew = 0;
  while (i < n) {
    if (WSP(u[i])) {
      size_t j = i;
      while (j < n && WSP(u[j])) j++;
      if (after_ew && j < n && u[j] == '=' && j + 1 < n && u[j + 1] == '?') {
        /* Blanks between two encoded words are dropped (RFC 2047 6.2). */
        size_t mark = out->len, w = encoded_word(u + j, n - j, out);
        if (w) {
          i = j + w;
          continue;
        }
        out->len = mark;
      }
      if (smtpd_buf_append(out, u + i, j - i)) return -1;
      after_ew = 0;
      i = j;
      continue;
    }
    if (u[i] == '=' && i + 1 < n && u[i + 1] == '?') {
      size_t w = encoded_word(u + i, n - i, out);
      if (w) {
        i += w;
        after_ew = 1;
        continue;
      }
    }
    {
      /* Plain text up to the next blank or encoded word. */
      size_t j = i + 1;
      while (j < n && !WSP(u[j]) && !(u[j] == '=' && j + 1 < n &&
                                       u[j + 1] == '?'))
        j++;
      if (utf8_lenient(u + i, j - i, out)) return -1;
      after_ew = 0;
      i = j;
    }
  }
  return 0;
}

int smtpd_mime_decode_header(const char *v, size_t n, smtpd_buf *out) {
  smtpd_buf u = {NULL, 0, 0};
  int r = smtpd_mime_unfold(v, n, &u);
  if (r == 0) r = decode_words(u.p ? u.p : "", u.len, out);
  smtpd_buf_free(&u);
  return r;
}

int smtpd_mime_main_value(const char *v, size_t n, smtpd_buf *out) {
  size_t i = 0, e, k, start = out->len;
  while (i < n && (WSP(v[i]) || v[i] == '\r' || v[i] == '\n')) i++;
  e = i;
  while (e < n && v[e] != ';') e++;
  for (k = i; k < e; k++) {
    unsigned char c = (unsigned char)v[k];
    if (c == '(') {                   /* a comment: skipped */
      int depth = 1;
      for (k++; k < e && depth > 0; k++) {
        if (v[k] == '\\') k++;
        else if (v[k] == '(') depth++;
        else if (v[k] == ')') depth--;
      }
      k--;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (smtpd_buf_appendc(out, (char)tolower(c))) return -1;
  }
  (void)start;
  return 0;
}

/* ---- parameters (RFC 2045, RFC 2231) ------------------------------------- */

typedef struct section {
  int num;                           /* -1: the plain name=value */
  int ext;                           /* charset'lang'%XX form */
  size_t vstart, vlen;               /* in the value buffer */
} section;

static int pct_decode(const char *p, size_t n, smtpd_buf *out) {
  size_t i;
  for (i = 0; i < n; i++) {
    int h1, h2;
    if (p[i] == '%' && i + 2 < n &&
        (h1 = hexval((unsigned char)p[i + 1])) >= 0 &&
        (h2 = hexval((unsigned char)p[i + 2])) >= 0) {
      if (smtpd_buf_appendc(out, (char)(h1 * 16 + h2))) return -1;
      i += 2;
    } else if (smtpd_buf_appendc(out, p[i])) {
      return -1;
    }
  }
  return 0;
}

static int cmp_sections(const void *a, const void *b) {
  const section *x = a, *y = b;
  return (x->num > y->num) - (x->num < y->num);
}

int smtpd_mime_param(const char *v, size_t n, const char *name, size_t nlen,
                     smtpd_buf *out) {
  smtpd_buf vals = {NULL, 0, 0};
  section secs[64];
  int nsec = 0, r = 0, k;
  size_t i = 0;
  /* Skip the main value. */
  while (i < n && v[i] != ';') {
    if (v[i] == '"') {
      for (i++; i < n && v[i] != '"'; i++)
        if (v[i] == '\\') i++;
    }
    i++;
  }
  while (i < n) {
    size_t a, ae, vs;
    int num = -1, ext = 0, quoted = 0;
    i++;                              /* the ';' */
    while (i < n && (WSP(v[i]) || v[i] == '\r' || v[i] == '\n')) i++;
    a = i;
    while (i < n && v[i] != '=' && v[i] != ';') i++;
    ae = i;
    while (ae > a && (WSP(v[ae - 1]) || v[ae - 1] == '\r' ||
                      v[ae - 1] == '\n'))
      ae--;
    if (i >= n || v[i] != '=') continue;      /* no value: ignored */
    i++;
    while (i < n && (WSP(v[i]) || v[i] == '\r' || v[i] == '\n')) i++;
    vs = vals.len;
    if (i < n && v[i] == '"') {
      quoted = 1;
      for (i++; i < n && v[i] != '"'; i++) {
        if (v[i] == '\\' && i + 1 < n) i++;
        if (v[i] == '\r' || v[i] == '\n') continue;
        if (smtpd_buf_appendc(&vals, v[i])) { r = -1; goto done; }
      }
      if (i < n) i++;                 /* the closing quote */
      while (i < n && v[i] != ';') i++;
    } else {
      size_t s = i, e;
      while (i < n && v[i] != ';') i++;
      e = i;
      while (e > s && (WSP(v[e - 1]) || v[e - 1] == '\r' || v[e - 1] == '\n'))
        e--;
      if (smtpd_buf_append(&vals, v + s, e - s)) { r = -1; goto done; }
    }
    (void)quoted;
    /* Is it our name, plain or RFC 2231? */
    if (ae - a < nlen || strncasecmp(v + a, name, nlen) != 0) continue;
    if (ae - a == nlen) {
      num = -1;
    } else if (v[a + nlen] == '*') {
      size_t j = a + nlen + 1;
      if (j == ae) {
        num = 0;
        ext = 1;                      /* name*=charset'lang'value */
      } else {
        long sn = 0;
        size_t d = j;
        while (j < ae && isdigit((unsigned char)v[j]) && sn < 1000)
          sn = sn * 10 + (v[j++] - '0');
        if (j == d) continue;
        if (j < ae && v[j] == '*') { ext = 1; j++; }
        if (j != ae) continue;
        num = (int)sn;
      }
    } else {
      continue;
    }
    if (nsec < (int)(sizeof secs / sizeof *secs)) {
      secs[nsec].num = num;
      secs[nsec].ext = ext;
      secs[nsec].vstart = vs;
      secs[nsec].vlen = vals.len - vs;
      nsec++;
    }
  }
  if (nsec == 0) goto done;
  if (vals.p == NULL && smtpd_buf_reserve(&vals, 1)) { r = -1; goto done; }
  {
    /* RFC 2231 sections win over a plain value of the same name. */
    int have2231 = 0, plain = -1;
    for (k = 0; k < nsec; k++) {
      if (secs[k].num >= 0) have2231 = 1;
      else if (plain < 0) plain = k;
    }
    if (!have2231) {
      r = decode_words(vals.p + secs[plain].vstart, secs[plain].vlen, out);
      if (r == 0) r = 1;
      goto done;
    }
    {
      smtpd_buf raw = {NULL, 0, 0};
      const char *cs = NULL;
      size_t cslen = 0;
      int m = 0, expect = 0;
      for (k = 0; k < nsec; k++)
        if (secs[k].num >= 0) secs[m++] = secs[k];
      qsort(secs, (size_t)m, sizeof *secs, cmp_sections);
      for (k = 0; k < m && r == 0; k++) {
        const char *s = vals.p + secs[k].vstart;
        size_t sl = secs[k].vlen;
        if (secs[k].num != expect) {
          if (secs[k].num < expect) continue;   /* a repeated section */
          break;                               /* a gap: stop there */
        }
        expect++;
        if (secs[k].ext && k == 0) {
          /* charset'language'value */
          const char *q1 = memchr(s, '\'', sl), *q2;
          if (q1 && (q2 = memchr(q1 + 1, '\'', sl - (size_t)(q1 + 1 - s)))) {
            cs = s;
            cslen = (size_t)(q1 - s);
            sl -= (size_t)(q2 + 1 - s);
            s = q2 + 1;
          }
        }
        if (secs[k].ext) r = pct_decode(s, sl, &raw);
        else r = smtpd_buf_append(&raw, s, sl);
      }
      if (r == 0) {
        if (cs) {
          r = smtpd_mime_to_utf8(cs, cslen, raw.p ? raw.p : "", raw.len, out);
        } else {
          r = decode_words(raw.p ? raw.p : "", raw.len, out);
        }
      }
      smtpd_buf_free(&raw);
      if (r == 0) r = 1;
    }
  }
done:
  smtpd_buf_free(&vals);
  return r;
}

/* ---- address lists (RFC 5322 3.4) ---------------------------------------- */

/* Skips a comment starting at v[i] == '('; returns the index after it. */
static size_t skip_comment(const char *v, size_t i, size_t n) {
  int depth = 0;
  for (; i < n; i++) {
    if (v[i] == '\\') { i++; continue; }
    if (v[i] == '(') depth++;
    else if (v[i] == ')' && --depth == 0) return i + 1;
  }
  return n;
}

typedef struct mbox_acc {
  smtpd_buf phrase;    /* display-name words, joined by one space */
  smtpd_buf plain;     /* the text outside <>, blanks dropped */
  smtpd_buf angle;     /* the addr-spec inside <> */
  smtpd_buf tail;      /* words after the <>: the next mailbox's name */
  int have_angle;
} mbox_acc;

static int mbox_emit(mbox_acc *a, smtpd_mime_addr_cb cb, void *ud) {
  smtpd_buf name = {NULL, 0, 0};
  int r = 0;
  if (a->have_angle) {
    r = decode_words(a->phrase.p ? a->phrase.p : "", a->phrase.len, &name);
    if (r == 0)
      r = cb(name.p ? name.p : "", name.len, a->angle.p ? a->angle.p : "",
             a->angle.len, ud);
  } else if (a->plain.len) {
    r = cb("", 0, a->plain.p, a->plain.len, ud);
  }
  smtpd_buf_free(&name);
  a->phrase.len = a->plain.len = a->angle.len = a->tail.len = 0;
  a->have_angle = 0;
  return r;
}

/* A word of a display name: to the phrase, or after a complete <> (a
 * missing comma) to the tail that names the next mailbox. */
static int add_word(mbox_acc *a, const char *w, size_t n) {
  smtpd_buf *b = a->have_angle ? &a->tail : &a->phrase;
  if (b->len && smtpd_buf_appendc(b, ' ')) return -1;
  return smtpd_buf_append(b, w, n);
}

int smtpd_mime_addresses(const char *v, size_t n, smtpd_mime_addr_cb cb,
                         void *ud) {
  mbox_acc a;
  size_t i = 0;
  int r = 0;
  memset(&a, 0, sizeof a);
  while (i < n && r == 0) {
    char c = v[i];
    if (WSP(c) || c == '\r' || c == '\n') {
      i++;
    } else if (c == '(') {
      i = skip_comment(v, i, n);
    } else if (c == ',' || c == ';') {
      r = mbox_emit(&a, cb, ud);
      i++;
    } else if (c == ':' && !a.have_angle) {
      /* A group's name: not a mailbox. */
      a.phrase.len = a.plain.len = 0;
      i++;
    } else if (c == '<') {
      size_t j = i + 1;
      if (a.have_angle) {
        /* "A <a@x> B <b@x>": the comma is missing; both are kept, the
         * words between naming the second. */
        smtpd_buf next = a.tail;
        memset(&a.tail, 0, sizeof a.tail);
        r = mbox_emit(&a, cb, ud);
        smtpd_buf_free(&a.phrase);
        a.phrase = next;
        if (r) break;
      }
      a.angle.len = 0;
      /* The words before <> are the display name. */
      while (j < n && v[j] != '>') {
        if (v[j] == '(') { j = skip_comment(v, j, n); continue; }
        if (v[j] == '"') {
          size_t s = j;
          for (j++; j < n && v[j] != '"'; j++)
            if (v[j] == '\\') j++;
          if (j < n) j++;
          if (smtpd_buf_append(&a.angle, v + s, (j > n ? n : j) - s)) r = -1;
          continue;
        }
        if (!WSP(v[j]) && v[j] != '\r' && v[j] != '\n' &&
            smtpd_buf_appendc(&a.angle, v[j]))
          r = -1;
        j++;
      }
      /* An obsolete route (@a,@b:) is dropped. */
      if (a.angle.len && a.angle.p[0] == '@') {
        char *colon = memchr(a.angle.p, ':', a.angle.len);
        if (colon) {
          size_t cut = (size_t)(colon + 1 - a.angle.p);
          memmove(a.angle.p, colon + 1, a.angle.len - cut);
          a.angle.len -= cut;
        }
      }
      a.have_angle = 1;
      i = j < n ? j + 1 : n;
    } else if (c == '"') {
      size_t j;
      smtpd_buf q = {NULL, 0, 0};
      for (j = i + 1; j < n && v[j] != '"'; j++) {
        if (v[j] == '\\' && j + 1 < n) j++;
        if (v[j] == '\r' || v[j] == '\n') continue;
        if (smtpd_buf_appendc(&q, v[j])) r = -1;
      }
      if (r == 0 && (add_word(&a, q.p ? q.p : "", q.len) ||
                     smtpd_buf_appendc(&a.plain, '"') ||
                     smtpd_buf_append(&a.plain, q.p ? q.p : "", q.len) ||
                     smtpd_buf_appendc(&a.plain, '"')))
        r = -1;
      smtpd_buf_free(&q);
      i = j < n ? j + 1 : n;
    } else {
      /* An atom (or dot-atom, or an address without <>). */
      size_t j = i;
      while (j < n && !WSP(v[j]) && v[j] != '\r' && v[j] != '\n' &&
             v[j] != ',' && v[j] != ';' && v[j] != '<' && v[j] != '(' &&
             v[j] != '"' && !(v[j] == ':' && !a.have_angle))
        j++;
      if (j == i) j++;
      if (add_word(&a, v + i, j - i) ||
          smtpd_buf_append(&a.plain, v + i, j - i))
        r = -1;
      i = j;
    }
  }
  if (r == 0) r = mbox_emit(&a, cb, ud);
  smtpd_buf_free(&a.phrase);
  smtpd_buf_free(&a.plain);
  smtpd_buf_free(&a.angle);
  smtpd_buf_free(&a.tail);
  return r;
}
