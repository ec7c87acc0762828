/*
 * DNS messages: building queries, reading answers (dns/dns.h). Every
 * read is checked against the message's length; names are bounded (255
 * wire bytes, 127 labels) and their compression pointers must point
 * before the label that holds them, so a message cannot loop us.
 */
#include <arpa/inet.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>

#include "dns/dns.h"

static uint16_t get16(const unsigned char *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void put16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

int smtpd_dns_build(unsigned char *out, size_t cap, uint16_t id,
                    const char *name, uint16_t qtype, int flags) {
  size_t n = strlen(name), pos = 12, i = 0;
  if (n && name[n - 1] == '.') n--;
  if (n == 0 || n > 253 || cap < 12 + n + 2 + 4 + 11) return -1;
  memset(out, 0, 12);
  put16(out, id);
  out[2] = 0x01;                                   /* RD */
  if (flags & SMTPD_DNS_Q_AD) out[3] = 0x20;       /* AD: tell us */
  put16(out + 4, 1);
  while (i < n) {
    size_t start = i, len;
    while (i < n && name[i] != '.') {
      unsigned char c = (unsigned char)name[i];
      /* Printable ASCII and the space (an SPF macro can make one); no
       * control bytes, no 8-bit ones. */
      if (c < 0x20 || c >= 0x7f) return -1;
      i++;
    }
    len = i - start;
    if (len == 0 || len > 63) return -1;
    out[pos++] = (unsigned char)len;
    memcpy(out + pos, name + start, len);
    pos += len;
    if (i < n && ++i == n) return -1;              /* "a..": empty */
  }
  out[pos++] = 0;
  put16(out + pos, qtype);
  put16(out + pos + 2, 1);                         /* IN */
  pos += 4;
  if (flags & SMTPD_DNS_Q_EDNS) {
    put16(out + 10, 1);                            /* ARCOUNT */
    out[pos++] = 0;                                /* root */
    put16(out + pos, SMTPD_DNS_OPT);
    put16(out + pos + 2, SMTPD_DNS_EDNS_SIZE);
    memset(out + pos + 4, 0, 6);                   /* rcode, ver, flags,
                                                      rdlen */
    pos += 10;
  }
  return (int)pos;
}

int smtpd_dns_reverse_name(const char *ip, const char *suffix, char *out,
                           size_t cap) {
  unsigned char a[16];
  int w = -1;
  if (inet_pton(AF_INET, ip, a) == 1) {
    w = snprintf(out, cap, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0],
                 suffix ? suffix : "in-addr.arpa");
  } else if (inet_pton(AF_INET6, ip, a) == 1) {
    static const char hex[] = "0123456789abcdef";
    size_t pos = 0;
    int i;
    if (cap < 64 + 1) return -1;
    for (i = 15; i >= 0; i--) {
      out[pos++] = hex[a[i] & 15];
      out[pos++] = '.';
      out[pos++] = hex[a[i] >> 4];
      out[pos++] = '.';
    }
    w = snprintf(out + pos, cap - pos, "%s", suffix ? suffix : "ip6.arpa");
    if (w >= 0) w += (int)pos;
  }
  return w < 0 || (size_t)w >= cap ? -1 : 0;
}

int smtpd_dns_name(const unsigned char *p, size_t len, size_t off,
                   char *out, size_t cap, size_t *next) {
  size_t o = 0, wire = 0, at = off;
  int jumped = 0, labels = 0;
  if (cap < 2) return -1;
  for (;;) {
    unsigned c;
    if (at >= len) return -1;
    c = p[at];
    if ((c & 0xc0) == 0xc0) {
      size_t target;
      if (at + 1 >= len) return -1;
      target = ((size_t)(c & 0x3f) << 8) | p[at + 1];
      /* Backwards only: every jump lands strictly before the last. */
      if (target >= at) return -1;
      if (!jumped) *next = at + 2;
      jumped = 1;
      at = target;
      continue;
    }
    if (c & 0xc0) return -1;                       /* 0x40, 0x80: none */
    if (c == 0) {
      if (!jumped) *next = at + 1;
      break;
    }
    if (at + 1 + c > len || ++labels > 127) return -1;
    wire += c + 1;
    if (wire > 255) return -1;
    if (o) out[o++] = '.';
    {
      size_t i;
      for (i = 0; i < c; i++) {
        unsigned char b = p[at + 1 + i];
        if (o + 5 >= cap) return -1;
        if (b == '.' || b == '\\') {
          out[o++] = '\\';
          out[o++] = (char)b;
        } else if (b <= 0x20 || b >= 0x7f) {
          o += (size_t)snprintf(out + o, cap - o, "\\%03u", b);
        } else {
          out[o++] = (char)b;
        }
      }
    }
    at += 1 + c;
  }
  if (o == 0) out[o++] = '.';
  out[o] = '\0';
  return 0;
}

int smtpd_dns_name_eq(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i;
  if (la > 1 && a[la - 1] == '.') la--;
  if (lb > 1 && b[lb - 1] == '.') lb--;
  if (la != lb) return 0;
  for (i = 0; i < la; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
    if (x != y) return 0;
  }
  return 1;
}

int smtpd_dns_parse(smtpd_dns_msg *m, const unsigned char *p, size_t len) {
  size_t next;
  memset(m, 0, sizeof *m);
  if (len < 12) return -1;
  m->p = p;
  m->len = len;
  m->id = get16(p);
  m->flags = get16(p + 2);
  m->qr = (p[2] & 0x80) != 0;
  m->aa = (p[2] & 0x04) != 0;
  m->tc = (p[2] & 0x02) != 0;
  m->ad = (p[3] & 0x20) != 0;
  m->rcode = p[3] & 0x0f;
  m->qd = get16(p + 4);
  m->an = get16(p + 6);
  m->ns = get16(p + 8);
  m->ar = get16(p + 10);
  m->pos = 12;
  if (!m->qr || m->qd > 1) return -1;
  if (m->qd == 1) {
    if (smtpd_dns_name(p, len, 12, m->qname, sizeof m->qname, &next))
      return -1;
    if (next + 4 > len) return -1;
    m->qtype = get16(p + next);
    m->pos = next + 4;
  }
  return 0;
}

int smtpd_dns_next(smtpd_dns_msg *m, smtpd_dns_rr *rr) {
  size_t next;
  unsigned total = (unsigned)m->an + m->ns + m->ar;
  if (m->seen >= total) return 0;
  rr->section = m->seen < m->an ? SMTPD_DNS_ANSWER :
                m->seen < (unsigned)m->an + m->ns ? SMTPD_DNS_AUTHORITY :
                SMTPD_DNS_ADDITIONAL;
  if (smtpd_dns_name(m->p, m->len, m->pos, rr->name, sizeof rr->name, &next))
    return -1;
  if (next + 10 > m->len) return -1;
  rr->type = get16(m->p + next);
  rr->cls = get16(m->p + next + 2);
  rr->ttl = get32(m->p + next + 4);
  /* RFC 2181 section 8: a TTL with the top bit set means zero. */
  if (rr->ttl & 0x80000000u) rr->ttl = 0;
  rr->rdlen = get16(m->p + next + 8);
  rr->rdoff = next + 10;
  if (rr->rdoff + rr->rdlen > m->len) return -1;
  m->pos = rr->rdoff + rr->rdlen;
  m->seen++;
  if (rr->type == SMTPD_DNS_OPT && rr->section == SMTPD_DNS_ADDITIONAL)
    m->rcode |= (int)((rr->ttl >> 24) & 0xff) << 4;   /* extended RCODE */
  return 1;
}

/* A name inside the record's data: it must end inside the data. */
static int rd_name(const smtpd_dns_msg *m, const smtpd_dns_rr *rr,
                   size_t off, char *out, size_t *next) {
  size_t end = rr->rdoff + rr->rdlen;
  if (off >= end) return -1;
  if (smtpd_dns_name(m->p, m->len, off, out, SMTPD_DNS_NAME_MAX, next))
    return -1;
  return *next > end ? -1 : 0;
}

int smtpd_dns_rdata_get(const smtpd_dns_msg *m, const smtpd_dns_rr *rr,
                        smtpd_dns_rdata *rd) {
  const unsigned char *d = m->p + rr->rdoff;
  size_t n = rr->rdlen, end = rr->rdoff + rr->rdlen, next, i;
  rd->name[0] = rd->name2[0] = rd->addr[0] = '\0';
  memset(rd->n, 0, sizeof rd->n);
  rd->data = d;
  rd->dlen = n;
  switch (rr->type) {
  case SMTPD_DNS_A:
    if (n != 4) return -1;
    inet_ntop(AF_INET, d, rd->addr, sizeof rd->addr);
    return 0;
  case SMTPD_DNS_AAAA:
    if (n != 16) return -1;
    inet_ntop(AF_INET6, d, rd->addr, sizeof rd->addr);
    return 0;
  case SMTPD_DNS_CNAME: case SMTPD_DNS_NS: case SMTPD_DNS_PTR:
    if (rd_name(m, rr, rr->rdoff, rd->name, &next)) return -1;
    return next == end ? 0 : -1;
  case SMTPD_DNS_MX:
    if (n < 3) return -1;
    rd->n[0] = get16(d);
    if (rd_name(m, rr, rr->rdoff + 2, rd->name, &next)) return -1;
    return next == end ? 0 : -1;
  case SMTPD_DNS_SRV:
    if (n < 7) return -1;
    rd->n[0] = get16(d);
    rd->n[1] = get16(d + 2);
    rd->n[2] = get16(d + 4);
    if (rd_name(m, rr, rr->rdoff + 6, rd->name, &next)) return -1;
    return next == end ? 0 : -1;
  case SMTPD_DNS_SOA:
    if (rd_name(m, rr, rr->rdoff, rd->name, &next)) return -1;
    {
      size_t r2;
      if (rd_name(m, rr, next, rd->name2, &r2)) return -1;
      if (r2 + 20 != end) return -1;
      for (i = 0; i < 5; i++) rd->n[i] = get32(m->p + r2 + 4 * i);
    }
    return 0;
  case SMTPD_DNS_TXT:
    if (n == 0) return -1;           /* at least one string */
    for (i = 0; i < n; i += 1 + d[i])
      if (i + 1 + d[i] > n) return -1;
    return 0;
  case SMTPD_DNS_TLSA:
    if (n < 3) return -1;
    rd->n[0] = d[0];
    rd->n[1] = d[1];
    rd->n[2] = d[2];
    rd->data = d + 3;
    rd->dlen = n - 3;
    return 0;
  default:
    return 0;
  }
}

long smtpd_dns_negative_ttl(smtpd_dns_msg *m) {
  smtpd_dns_rr rr;
  smtpd_dns_rdata rd;
  long ttl = -1;
  int r;
  while ((r = smtpd_dns_next(m, &rr)) == 1) {
    if (rr.section != SMTPD_DNS_AUTHORITY || rr.type != SMTPD_DNS_SOA)
      continue;
    if (smtpd_dns_rdata_get(m, &rr, &rd)) continue;
    ttl = (long)(rr.ttl < rd.n[4] ? rr.ttl : rd.n[4]);
  }
  return ttl;
}
