/*
 * raw_epoll - the floor: the cheapest server that speaks the bench protocols, written as
 * plainly as possible with a naive close() (no shutdown, no drain, no deadline).
 *
 *   raw_epoll --listen 127.0.0.1:PORT [--bytes N] [--mode respond|echo|respond-linger]
 *
 * respond: reads the request line one byte at a time up to '\n' and never past it (the
 * same reading as examples/respond.c), writes N bytes (byte i = i % 251), close().
 * respond-linger: the same, then the least a close that loses nothing must do, written
 * as plainly: shutdown(SHUT_WR), read and discard until the peer's FIN, close() -- the
 * graceful floor (no deadline, no accounting: the bench's peers always close). Set
 * against respond, it prices waiting for the peer's FIN, which no naive close pays.
 * echo: writes back whatever it reads. SIGTERM: the default (the kernel closes every
 * socket: the natural "drain" of a plain server). SIGINT: exit(0) (for callgrind).
 */
#define _GNU_SOURCE
#include "bench_args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct client {
  int fd;
  int replying; /* request line seen: writing the response */
  size_t off;   /* response bytes written */
  char *pend;   /* echo: bytes not yet written back */
  size_t pend_len;
  int lingering; /* respond-linger: our FIN sent, reading to the peer's FIN */
} client;

static char *payload;
static size_t nbytes = 64;
static int echo_mode;
static int linger_mode;
static int epfd;
static volatile sig_atomic_t stop;

static void on_int(int s) {
  (void)s;
  stop = 1;
}

static void drop(client *c) {
  close(c->fd);
  free(c->pend);
  free(c);
}

/* respond-linger: discard input until the peer's FIN (or an error), then close. */
static void on_linger(client *c) {
  static char sink[16384];
  for (;;) {
    ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
    if (n > 0)
      continue;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    drop(c);
    return;
  }
}

static void reply(client *c) {
  while (c->off < nbytes) {
    ssize_t w = send(c->fd, payload + c->off, nbytes - c->off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        return;
      }
      break;
    }
    c->off += (size_t)w;
  }
  if (linger_mode && c->off == nbytes) {
    shutdown(c->fd, SHUT_WR);
    c->lingering = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    on_linger(c);
    return;
  }
  drop(c); /* the naive close */
}

static void on_request(client *c) {
  for (;;) {
    char ch;
    ssize_t n = recv(c->fd, &ch, 1, 0);
    if (n == 1) {
      if (ch != '\n')
        continue;
      c->replying = 1;
      reply(c);
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    drop(c); /* EOF or error before the request line */
    return;
  }
}

static void on_echo(client *c, uint32_t events) {
  static char buf[65536];
  if (c->pend_len) {
    if (!(events & EPOLLOUT))
      return;
    ssize_t w = send(c->fd, c->pend, c->pend_len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno != EAGAIN)
        drop(c);
      return;
    }
    memmove(c->pend, c->pend + w, c->pend_len - (size_t)w);
    c->pend_len -= (size_t)w;
    if (c->pend_len == 0) {
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
      epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return;
  }
  ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    drop(c);
    return;
  }
  ssize_t w = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
  if (w < 0 && errno != EAGAIN) {
    drop(c);
    return;
  }
  if (w < 0)
    w = 0;
  if (w < n) {
    c->pend = realloc(c->pend, (size_t)(n - w));
    memcpy(c->pend, buf + w, (size_t)(n - w));
    c->pend_len = (size_t)(n - w);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_args_parse(&args, argc, argv, "raw_epoll"))
    return 2;
  nbytes = args.nbytes;
  echo_mode = args.echo_mode;
  linger_mode = args.linger;
  payload = args.payload;
  signal(SIGINT, on_int);

  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)args.port)};
  inet_pton(AF_INET, args.host, &a.sin_addr);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0) {
    perror("raw_epoll: listen");
    return 1;
  }
  socklen_t al = sizeof(a);
  getsockname(lfd, (struct sockaddr *)&a, &al);
  printf("listening on %s:%d\n", args.host, ntohs(a.sin_port));
  fflush(stdout);

  epfd = epoll_create1(0);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(epfd, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      client *c = evs[i].data.ptr;
      if (!c) {
        for (int k = 0; k < 128; k++) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0)
            break;
          client *nc = calloc(1, sizeof(*nc));
          nc->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        }
      } else if (echo_mode)
        on_echo(c, evs[i].events);
      else if (c->lingering)
        on_linger(c);
      else if (c->replying)
        reply(c);
      else
        on_request(c);
    }
  }
  return 0;
}
