/*
 * The PROXY protocol header (HAProxy's, versions 1 and 2), with no Lua
 * and no libuv: what a load balancer in front of us sends first, to name
 * the real client. Also the address lists (CIDR) of who may send one.
 *
 * Version 1: "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n", at most
 * 107 bytes. Version 2: a 12-byte signature, version/command, family,
 * a 16-bit length, the addresses, then TLVs (skipped).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

static const unsigned char v2sig[12] = {
  0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

#define V1_MAX 107

/* A decimal port (no sign, no leading zero but "0"); -1 if bad. */
static long v1_port(const char *s) {
  long v = 0;
  size_t i, n = strlen(s);
  if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) return -1;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v <= 65535 ? v : -1;
}

static int parse_v1(const unsigned char *p, size_t n, size_t *used,
                    struct sockaddr_storage *src, int *local) {
  char line[V1_MAX + 1], *f[6], *save = NULL, *tok;
  const unsigned char *cr;
  size_t len;
  int k = 0;
  cr = memchr(p, '\r', n < V1_MAX ? n : V1_MAX);
  if (cr == NULL) return n >= V1_MAX ? -1 : 0;
  len = (size_t)(cr - p);
  if (len + 1 >= n) return 0;                  /* the LF is still to come */
  if (cr[1] != '\n') return -1;
  memcpy(line, p, len);
  line[len] = '\0';
  if (memchr(line, '\0', len)) return -1;
  for (tok = strtok_r(line, " ", &save); tok && k < 6;
       tok = strtok_r(NULL, " ", &save))
    f[k++] = tok;
  if (tok || k < 2 || strcmp(f[0], "PROXY") != 0) return -1;
  *used = len + 2;
  if (strcmp(f[1], "UNKNOWN") == 0) {          /* the proxy's own check */
    *local = 1;
    return 1;
  }
  if (k != 6) return -1;
  memset(src, 0, sizeof *src);
  if (strcmp(f[1], "TCP4") == 0) {
    struct sockaddr_in *a = (struct sockaddr_in *)src;
    struct in_addr dst;
    long sp = v1_port(f[4]), dp = v1_port(f[5]);
    if (inet_pton(AF_INET, f[2], &a->sin_addr) != 1 ||
        inet_pton(AF_INET, f[3], &dst) != 1 || sp < 0 || dp < 0)
      return -1;
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)sp);
  } else if (strcmp(f[1], "TCP6") == 0) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)src;
    struct in6_addr dst;
    long sp = v1_port(f[4]), dp = v1_port(f[5]);
    if (inet_pton(AF_INET6, f[2], &a->sin6_addr) != 1 ||
        inet_pton(AF_INET6, f[3], &dst) != 1 || sp < 0 || dp < 0)
      return -1;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((unsigned short)sp);
  } else {
    return -1;
  }
  *local = 0;
  return 1;
}

static int parse_v2(const unsigned char *p, size_t n, size_t max,
                    size_t *used, struct sockaddr_storage *src, int *local) {
  size_t len, total;
  int cmd, fam;
  if (n < 16) return 0;
  if ((p[12] >> 4) != 2) return -1;            /* version 2 only */
  cmd = p[12] & 0x0F;
  fam = p[13];
  len = (size_t)p[14] << 8 | p[15];
  total = 16 + len;
  if (total > max) return -1;
  if (n < total) return 0;
  *used = total;
  if (cmd == 0) {                              /* LOCAL: the proxy itself */
    *local = 1;
    return 1;
  }
  if (cmd != 1) return -1;
  memset(src, 0, sizeof *src);
  if (fam == 0x11 || fam == 0x12) {            /* TCP or UDP over IPv4 */
    struct sockaddr_in *a = (struct sockaddr_in *)src;
    if (len < 12) return -1;
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, p + 16, 4);
    memcpy(&a->sin_port, p + 24, 2);
  } else if (fam == 0x21 || fam == 0x22) {     /* over IPv6 */
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)src;
    if (len < 36) return -1;
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_addr, p + 16, 16);
    memcpy(&a->sin6_port, p + 48, 2);
  } else {
    *local = 1;                                /* UNSPEC, unix: no address */
    return 1;
  }
  *local = 0;
  return 1;
}

int smtpd_proxy_parse(const unsigned char *p, size_t n, size_t max,
                      size_t *used, struct sockaddr_storage *src, int *local) {
  size_t k = n < 12 ? n : 12;
  if (n == 0) return 0;
  if (memcmp(p, v2sig, k) == 0) {
    if (n < 12) return 0;
    return parse_v2(p, n, max, used, src, local);
  }
  k = n < 6 ? n : 6;
  if (memcmp(p, "PROXY ", k) != 0) return -1;
  if (n < 6) return 0;
  return parse_v1(p, n, used, src, local);
}

/* ---- trusted addresses -------------------------------------------------- */

int smtpd_cidr_parse(const char *s, smtpd_cidr *c) {
  char buf[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  long bits;
  char *end;
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  memset(c, 0, sizeof *c);
  if (inet_pton(AF_INET, buf, c->addr) == 1) {
    c->family = AF_INET;
    bits = 32;
  } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
    c->family = AF_INET6;
    bits = 128;
  } else {
    return -1;
  }
  if (slash) {
    long b = strtol(slash + 1, &end, 10);
    if (slash[1] == '\0' || *end != '\0' || b < 0 || b > bits) return -1;
    bits = b;
  }
  c->bits = (int)bits;
  return 0;
}

int smtpd_cidr_match(const smtpd_cidr *c, const struct sockaddr *sa) {
  const unsigned char *a;
  unsigned char mapped[16];
  int bits = c->bits, i;
  if (sa->sa_family == AF_INET && c->family == AF_INET) {
    a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (sa->sa_family == AF_INET6 && c->family == AF_INET6) {
    a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
  } else if (sa->sa_family == AF_INET6 && c->family == AF_INET) {
    /* ::ffff:a.b.c.d against an IPv4 range. */
    const unsigned char *v6 =
      (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    static const unsigned char prefix[12] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff};
    if (memcmp(v6, prefix, 12) != 0) return 0;
    memcpy(mapped, v6 + 12, 4);
    a = mapped;
  } else {
    return 0;
  }
  for (i = 0; bits >= 8; i++, bits -= 8)
    if (a[i] != c->addr[i]) return 0;
  if (bits > 0) {
    unsigned char mask = (unsigned char)(0xFF << (8 - bits));
    if ((a[i] & mask) != (c->addr[i] & mask)) return 0;
  }
  return 1;
}

void smtpd_cidr_name(const smtpd_cidr *c, char *buf, size_t size) {
  char host[64] = "?";
  inet_ntop(c->family, c->addr, host, sizeof host);
  snprintf(buf, size, "%s/%d", host, c->bits);
}
