/*
 * bench/pipeload: the pipelining load generator of `make bench`. PROCS
 * processes each keep one connection and send MSGS messages of SIZE bytes:
 *
 *   lockstep  one command, one reply (what smtp-source does)
 *   pipeline  when PIPELINING is offered: MAIL, RCPT and DATA in one write,
 *             then the message, its dot and the next MAIL/RCPT/DATA in one
 *             write (one round trip a message, as Postfix's client does)
 *   bdat      when CHUNKING is offered too: MAIL, RCPT, BDAT n LAST and the
 *             message in one write
 *
 * The same generator for every server. Usage:
 *   pipeload lockstep|pipeline|bdat HOST PORT PROCS MSGS SIZE
 * Prints "messages seconds failures" once every process is done; a server
 * that does not offer what the mode needs is a failure.
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

typedef struct conn {
  int fd;
  char buf[65536];
  size_t len;
} conn;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int c_write(conn *c, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(c->fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads one whole reply (every line of it); its code, or -1. With
 * offers, notes the EHLO keywords. */
static int c_reply(conn *c, int *pipelining, int *chunking) {
  for (;;) {
    size_t i, start = 0;
    for (i = 0; i + 1 < c->len; i++) {
      if (c->buf[i] != '\r' || c->buf[i + 1] != '\n') continue;
      if (pipelining && i - start >= 14 &&
          strncmp(c->buf + start + 4, "PIPELINING", 10) == 0)
        *pipelining = 1;
      if (chunking && i - start >= 12 &&
          strncmp(c->buf + start + 4, "CHUNKING", 8) == 0)
        *chunking = 1;
      if (i - start >= 3 && (i - start == 3 || c->buf[start + 3] == ' ')) {
        int code = atoi(c->buf + start);
        memmove(c->buf, c->buf + i + 2, c->len - i - 2);
        c->len -= i + 2;
        return code;
      }
      start = i + 2;
    }
    if (c->len == sizeof c->buf) return -1;
    {
      ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
      if (r <= 0) return -1;
      c->len += (size_t)r;
    }
  }
}

static int expect(conn *c, int n, const int *codes) {
  int k;
  for (k = 0; k < n; k++)
    if (c_reply(c, NULL, NULL) != codes[k]) return -1;
  return 0;
}

static const char ENV[] = "MAIL FROM:<bench@example.org>\r\n"
                          "RCPT TO:<sink@example.net>\r\n";

/* One connection, msgs messages; 0 or -1. */
static int session(const char *host, int port, const char *mode, int msgs,
                   const char *body, size_t blen) {
  struct sockaddr_in a;
  conn *c = calloc(1, sizeof *c);
  int on = 1, pipelining = 0, chunking = 0, m, ok = -1;
  static const int r250x2_354[] = {250, 250, 354};
  static const int r250x3[] = {250, 250, 250};
  static const int r250x3_354[] = {250, 250, 250, 354};
  char *buf = malloc(blen + 256);
  if (c == NULL || buf == NULL) goto out;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a)) goto out;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (c_reply(c, NULL, NULL) != 220) goto out;
  if (c_write(c, "EHLO pipeload.example\r\n", 23) ||
      c_reply(c, &pipelining, &chunking) != 250)
    goto out;
  if (strcmp(mode, "lockstep") == 0) {
    for (m = 0; m < msgs; m++) {
      if (c_write(c, "MAIL FROM:<bench@example.org>\r\n", 31) ||
          c_reply(c, NULL, NULL) != 250 ||
          c_write(c, "RCPT TO:<sink@example.net>\r\n", 28) ||
          c_reply(c, NULL, NULL) != 250 || c_write(c, "DATA\r\n", 6) ||
          c_reply(c, NULL, NULL) != 354 || c_write(c, body, blen) ||
          c_write(c, ".\r\n", 3) || c_reply(c, NULL, NULL) != 250)
        goto out;
    }
  } else if (strcmp(mode, "pipeline") == 0) {
    if (!pipelining) goto out;
    if (c_write(c, ENV, sizeof ENV - 1) || c_write(c, "DATA\r\n", 6) ||
        expect(c, 3, r250x2_354))
      goto out;
    for (m = 0; m < msgs; m++) {
      size_t n = blen;
      memcpy(buf, body, blen);
      memcpy(buf + n, ".\r\n", 3);
      n += 3;
      if (m + 1 < msgs) {
        memcpy(buf + n, ENV, sizeof ENV - 1);
        n += sizeof ENV - 1;
        memcpy(buf + n, "DATA\r\n", 6);
        n += 6;
      }
      if (c_write(c, buf, n)) goto out;
      if (m + 1 < msgs ? expect(c, 4, r250x3_354)
                       : expect(c, 1, r250x3))
        goto out;
    }
  } else if (strcmp(mode, "bdat") == 0) {
    if (!pipelining || !chunking) goto out;
    for (m = 0; m < msgs; m++) {
      int h = snprintf(buf, 256, "%sBDAT %zu LAST\r\n", ENV, blen);
      memcpy(buf + h, body, blen);
      if (c_write(c, buf, (size_t)h + blen) || expect(c, 3, r250x3))
        goto out;
    }
  } else {
    goto out;
  }
  c_write(c, "QUIT\r\n", 6);
  c_reply(c, NULL, NULL);
  ok = 0;
out:
  if (c && c->fd > 0) close(c->fd);
  free(c);
  free(buf);
  return ok;
}

int main(int argc, char **argv) {
  const char *mode, *host;
  int port, procs, msgs, i, fails = 0;
  size_t size, blen = 0;
  char *body;
  double t0;
  if (argc != 7) {
    fprintf(stderr, "usage: pipeload lockstep|pipeline|bdat HOST PORT PROCS "
                    "MSGS SIZE\n");
    return 2;
  }
  mode = argv[1];
  host = argv[2];
  port = atoi(argv[3]);
  procs = atoi(argv[4]);
  msgs = atoi(argv[5]);
  size = (size_t)atol(argv[6]);
  /* Headers, then lines of 78 bytes and CRLF, no line starting with '.'. */
  body = malloc(size + 200);
  blen = (size_t)sprintf(body, "Subject: pipeload\r\n\r\n");
  while (blen + 80 <= size) {
    memset(body + blen, 'x', 78);
    memcpy(body + blen + 78, "\r\n", 2);
    blen += 80;
  }
  t0 = now();
  for (i = 0; i < procs; i++) {
    if (fork() == 0)
      _exit(session(host, port, mode, msgs, body, blen) ? 1 : 0);
  }
  for (i = 0; i < procs; i++) {
    int st;
    wait(&st);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fails++;
  }
  printf("%d %.3f %d\n", (procs - fails) * msgs, now() - t0, fails);
  free(body);
  return 0;
}
