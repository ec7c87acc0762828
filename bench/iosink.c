/*
 * bench/iosink: the fast local peers bench/io.lua measures against, so
 * that what is measured is our side, not a slow responder.
 *
 *   iosink dns PORT    UDP on 127.0.0.1: every question answered with one
 *                      A record (192.0.2.1, TTL 300), its id and question
 *                      echoed
 *   iosink http PORT   HTTP/1.1 on 127.0.0.1 with keep-alive: every
 *                      request (Content-Length bodies) answered 200 "ok"
 *
 * One thread, epoll; runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static int bind_to(int type, int port) {
  struct sockaddr_in sa;
  int one = 1;
  int fd = socket(AF_INET, type | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  if (type == SOCK_STREAM && listen(fd, 1024) < 0) return -1;
  return fd;
}

static int run_dns(int port) {
  unsigned char q[1500], r[1600];
  int fd = bind_to(SOCK_DGRAM, port);
  if (fd < 0) return perror("dns"), 1;
  for (;;) {
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    if (select(fd + 1, &set, NULL, NULL, NULL) < 0 && errno != EINTR) return 1;
    for (;;) {
      ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
      if (n < 0) break;
      if (n < 17) continue;
      size_t pos = 12;
      while (pos < (size_t)n && q[pos] != 0) pos += (size_t)q[pos] + 1;
      pos += 5; /* the root label, type, class */
      if (pos > (size_t)n) continue;
      memcpy(r, q, pos);
      r[2] = 0x81;
      r[3] = 0x80; /* a response, RD and RA */
      r[4] = 0; r[5] = 1; r[6] = 0; r[7] = 1;
      r[8] = r[9] = r[10] = r[11] = 0;
      static const unsigned char ans[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c,
                                          0, 4, 192, 0, 2, 1};
      memcpy(r + pos, ans, sizeof ans);
      sendto(fd, r, pos + sizeof ans, 0, (struct sockaddr *)&from, flen);
      flen = sizeof from;
    }
  }
}

typedef struct {
  int fd;
  size_t len;
  char buf[64 * 1024];
} conn;

static const char REPLY[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 2\r\n\r\nok";

/* Answers every whole request in c->buf; -1 when the connection must go. */
static int serve(conn *c) {
  size_t done = 0;
  for (;;) {
    char *start = c->buf + done;
    size_t avail = c->len - done;
    char *eoh = memmem(start, avail, "\r\n\r\n", 4);
    if (eoh == NULL) break;
    size_t head = (size_t)(eoh - start) + 4;
    size_t body = 0;
    char *cl = memmem(start, head, "\r\nContent-Length:", 17);
    if (cl == NULL) cl = memmem(start, head, "\r\ncontent-length:", 17);
    if (cl) body = strtoul(cl + 17, NULL, 10);
    if (head + body > sizeof c->buf) return -1;
    if (head + body > avail) break;
    if (write(c->fd, REPLY, sizeof REPLY - 1) != (ssize_t)(sizeof REPLY - 1))
      return -1;
    done += head + body;
  }
  memmove(c->buf, c->buf + done, c->len - done);
  c->len -= done;
  return c->len == sizeof c->buf ? -1 : 0;
}

static int run_http(int port) {
  int lfd = bind_to(SOCK_STREAM, port);
  int ep = epoll_create1(0);
  struct epoll_event ev, evs[256];
  if (lfd < 0 || ep < 0) return perror("http"), 1;
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c == NULL) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          if (c == NULL) { close(fd); continue; }
          c->fd = fd;
          ev.events = EPOLLIN;
          ev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      ssize_t got;
      int gone = 0;
      while ((got = read(c->fd, c->buf + c->len, sizeof c->buf - c->len)) > 0) {
        c->len += (size_t)got;
        if (serve(c) < 0) { gone = 1; break; }
      }
      if (got == 0 || (got < 0 && errno != EAGAIN)) gone = 1;
      if (gone) {
        close(c->fd);
        free(c);
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: iosink dns|http PORT\n");
    return 2;
  }
  int port = atoi(argv[2]);
  if (strcmp(argv[1], "dns") == 0) return run_dns(port);
  if (strcmp(argv[1], "http") == 0) return run_http(port);
  fprintf(stderr, "iosink: dns or http\n");
  return 2;
}
