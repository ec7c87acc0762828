/*
 * Codecs the protocol needs: strict base64 (RFC 4648, for AUTH) and xtext
 * (RFC 3461, for DSN and AUTH= parameters).
 */
#include <string.h>

#include "base/base.h"

int smtpd_xtext_valid(const char *p, size_t n) {
  size_t i;
  if (n == 2 && p[0] == '<' && p[1] == '>') return 1;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '+') {
      if (i + 2 >= n || !strchr("0123456789ABCDEF", p[i + 1]) ||
          !strchr("0123456789ABCDEF", p[i + 2]) || !p[i + 1] || !p[i + 2])
        return 0;
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return 0;
    }
  }
  return 1;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

long smtpd_b64_decode(const char *p, size_t n, unsigned char *out) {
  size_t i, k = 0;
  if (n % 4) return -1;
  for (i = 0; i < n; i += 4) {
    int v[4], j, pad = 0;
    for (j = 0; j < 4; j++) {
      unsigned char c = (unsigned char)p[i + j];
      if (c == '=' && i + 4 == n && j >= 2) {
        v[j] = 0;
        pad++;
      } else if (pad || (v[j] = b64_value(c)) < 0) {
        return -1;        /* a character after '=', or not base64 */
      }
    }
    if (pad == 1 && p[i + 2] == '=') return -1;
    /* The bits the padding drops must be zero (RFC 4648 3.5). */
    if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3))) return -1;
    out[k++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
    if (pad < 2) out[k++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
    if (pad < 1) out[k++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
  }
  return (long)k;
}

size_t smtpd_b64_encode(const unsigned char *p, size_t n, char *out) {
  static const char al[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, k = 0;
  for (i = 0; i + 2 < n; i += 3) {
    out[k++] = al[p[i] >> 2];
    out[k++] = al[(p[i] & 3) << 4 | p[i + 1] >> 4];
    out[k++] = al[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
    out[k++] = al[p[i + 2] & 63];
  }
  if (i < n) {
    out[k++] = al[p[i] >> 2];
    if (i + 1 < n) {
      out[k++] = al[(p[i] & 3) << 4 | p[i + 1] >> 4];
      out[k++] = al[(p[i + 1] & 15) << 2];
    } else {
      out[k++] = al[(p[i] & 3) << 4];
      out[k++] = '=';
    }
    out[k++] = '=';
  }
  out[k] = '\0';
  return k;
}
