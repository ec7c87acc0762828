/*
 * bench/tlsload: the TLS load generator of `make bench` (smtp-source has
 * no TLS). PROCS processes each send MSGS messages of SIZE bytes with
 * STARTTLS and AUTH PLAIN (user bench, password bench):
 *
 *   new     a new connection, handshake and login for every message
 *   reuse   one connection, handshake and login, then every message on it
 *
 * Usage: tlsload new|reuse HOST PORT PROCS MSGS SIZE
 * Prints "messages seconds failures" when every process is done.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct conn {
  int fd;
  SSL *ssl;
  char buf[8192];
  size_t len;
} conn;

static SSL_CTX *ctx;
static const char *host;
static int port;
static char *body;
static size_t body_len;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int c_write(conn *c, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = c->ssl ? SSL_write(c->ssl, p, (int)n) : write(c->fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads one whole reply; its code, or -1. */
static int c_reply(conn *c) {
  for (;;) {
    size_t i, start = 0;
    for (i = 0; i + 1 < c->len; i++) {
      if (c->buf[i] == '\r' && c->buf[i + 1] == '\n') {
        if (i - start >= 3 && (i - start == 3 || c->buf[start + 3] == ' ')) {
          int code = atoi(c->buf + start);
          memmove(c->buf, c->buf + i + 2, c->len - i - 2);
          c->len -= i + 2;
          return code;
        }
        start = i + 2;
      }
    }
    if (c->len == sizeof c->buf) return -1;
    {
      ssize_t r = c->ssl ? SSL_read(c->ssl, c->buf + c->len,
                                    (int)(sizeof c->buf - c->len))
                         : read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
      if (r <= 0) return -1;
      c->len += (size_t)r;
    }
  }
}

static int c_cmd(conn *c, const char *line, int want) {
  if (c_write(c, line, strlen(line))) return -1;
  return c_reply(c) == want ? 0 : -1;
}

/* Connect, EHLO, STARTTLS, EHLO, AUTH PLAIN. */
static int c_open(conn *c) {
  struct sockaddr_in sa;
  int one = 1;
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  inet_pton(AF_INET, host, &sa.sin_addr);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa)) return -1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (c_reply(c) != 220 || c_cmd(c, "EHLO load.example\r\n", 250) ||
      c_cmd(c, "STARTTLS\r\n", 220))
    return -1;
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, c->fd);
  if (SSL_connect(c->ssl) != 1) return -1;
  /* "\0bench\0bench" in base64 */
  return c_cmd(c, "EHLO load.example\r\n", 250) ||
         c_cmd(c, "AUTH PLAIN AGJlbmNoAGJlbmNo\r\n", 235) ? -1 : 0;
}

static void c_close(conn *c) {
  if (c->ssl) {
    c_cmd(c, "QUIT\r\n", 221);
    SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
  }
  if (c->fd >= 0) close(c->fd);
}

static int c_message(conn *c) {
  return c_cmd(c, "MAIL FROM:<load@example.org>\r\n", 250) ||
         c_cmd(c, "RCPT TO:<sink@example.net>\r\n", 250) ||
         c_cmd(c, "DATA\r\n", 354) || c_write(c, body, body_len) ||
         c_reply(c) != 250 ? -1 : 0;
}

static int worker(int reuse, int msgs) {
  conn c;
  int i, failed = 0;
  if (reuse && c_open(&c)) return msgs;
  for (i = 0; i < msgs; i++) {
    if (!reuse && c_open(&c)) {
      failed++;
      c_close(&c);
      continue;
    }
    if (c_message(&c)) failed++;
    if (!reuse) c_close(&c);
  }
  if (reuse) c_close(&c);
  return failed;
}

int main(int argc, char **argv) {
  int reuse, procs, msgs, i, failed = 0;
  size_t size, k;
  double t0;
  if (argc != 7) {
    fprintf(stderr, "usage: tlsload new|reuse HOST PORT PROCS MSGS SIZE\n");
    return 2;
  }
  reuse = strcmp(argv[1], "reuse") == 0;
  host = argv[2];
  port = atoi(argv[3]);
  procs = atoi(argv[4]);
  msgs = atoi(argv[5]);
  size = (size_t)atol(argv[6]);
  /* The message: a header, lines of 'x', ended by CRLF . CRLF. */
  body = malloc(size + 64);
  k = (size_t)sprintf(body, "Subject: tlsload\r\n\r\n");
  while (k + 2 < size) {
    size_t line = size - k - 2 < 76 ? size - k - 2 : 76;
    memset(body + k, 'x', line);
    k += line;
    memcpy(body + k, "\r\n", 2);
    k += 2;
  }
  memcpy(body + k, ".\r\n", 3);
  body_len = k + 3;
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  t0 = now();
  for (i = 0; i < procs; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      int f = worker(reuse, msgs);
      _exit(f > 255 ? 255 : f);
    }
  }
  for (i = 0; i < procs; i++) {
    int st;
    if (wait(&st) > 0 && WIFEXITED(st)) failed += WEXITSTATUS(st);
    else failed += msgs;
  }
  printf("%d %.3f %d\n", procs * msgs, now() - t0, failed);
  return 0;
}
