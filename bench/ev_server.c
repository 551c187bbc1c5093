/*
 * ev_server - the bench protocols on libevent 2.1, closed gracefully: the response goes
 * out through a bufferevent (a reference to the payload, no copy), and once the output
 * buffer has flushed (write callback at low-water 0): shutdown(SHUT_WR), read and
 * discard to the peer's EOF, then bufferevent_free (which closes the fd).
 *
 *   ev_server --listen 127.0.0.1:PORT [--bytes N] [--mode respond|echo]
 *
 * libevent caps each read and write at 16 KiB by default: raised to 1 MiB
 * (bufferevent_set_max_single_read/write), or it spends 2-3x the CPU on big responses.
 * The request line is read one byte at a time from a plain event (a bufferevent reads
 * as much as it can, past the '\n'), as examples/respond.c does; the bufferevent is
 * made once the line is complete. SIGTERM: stop accepting, end every connection the
 * same graceful way, exit when all are gone. SIGINT: stop at once (for callgrind).
 */
#define _GNU_SOURCE
#include "bench_args.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct client {
  struct event rev; /* request phase: a plain read event */
  struct bufferevent *bev;
  evutil_socket_t fd;
  int draining;
  struct client *next, *prev;
} client;

static struct event_base *base;
static struct evconnlistener *listener;
static char *payload;
static size_t nbytes = 64;
static int echo_mode, stopping;
static client live = {.next = &live, .prev = &live};

static void client_free(client *c) {
  c->prev->next = c->next;
  c->next->prev = c->prev;
  if (c->bev)
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE */
  else {
    event_del(&c->rev);
    close(c->fd);
  }
  free(c);
  if (stopping && live.next == &live)
    event_base_loopexit(base, NULL);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  (void)what; /* EOF (the graceful end) or an error */
  client_free(arg);
}

static void on_discard(struct bufferevent *bev, void *arg) {
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

/* Output flushed: FIN, then discard input until the peer's EOF. */
static void start_drain(client *c) {
  if (c->draining)
    return;
  c->draining = 1;
  shutdown(c->fd, SHUT_WR);
  bufferevent_setcb(c->bev, on_discard, NULL, on_event, c);
  bufferevent_enable(c->bev, EV_READ);
}

static void on_flushed(struct bufferevent *bev, void *arg) {
  (void)bev;
  start_drain(arg);
}

static struct bufferevent *make_bev(client *c) {
  c->bev = bufferevent_socket_new(base, c->fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_set_max_single_read(c->bev, 1 << 20);
  bufferevent_set_max_single_write(c->bev, 1 << 20);
  return c->bev;
}

static void on_request(evutil_socket_t fd, short what, void *arg) {
  client *c = arg;
  (void)what;
  for (;;) {
    char ch;
    ssize_t n = recv(fd, &ch, 1, 0);
    if (n == 1) {
      if (ch != '\n')
        continue;
      event_del(&c->rev);
      make_bev(c);
      bufferevent_setcb(c->bev, NULL, on_flushed, on_event, c);
      evbuffer_add_reference(bufferevent_get_output(c->bev), payload, nbytes, NULL, NULL);
      bufferevent_enable(c->bev, EV_WRITE);
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    client_free(c); /* EOF or error before the request line */
    return;
  }
}

static void on_echo(struct bufferevent *bev, void *arg) {
  (void)arg;
  bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

static void on_echo_event(struct bufferevent *bev, short what, void *arg) {
  client *c = arg;
  (void)bev;
  if (what & BEV_EVENT_EOF) {
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
      start_drain(c);
    else
      bufferevent_setcb(c->bev, NULL, on_flushed, on_event, c);
    return;
  }
  client_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int len, void *arg) {
  (void)l;
  (void)sa;
  (void)len;
  (void)arg;
  client *c = calloc(1, sizeof(*c));
  c->fd = fd;
  c->next = live.next;
  c->prev = &live;
  live.next->prev = c;
  live.next = c;
  if (echo_mode) {
    make_bev(c);
    bufferevent_setcb(c->bev, on_echo, NULL, on_echo_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  } else {
    event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, on_request, c);
    event_add(&c->rev, NULL);
  }
}

static void on_sigterm(evutil_socket_t s, short w, void *arg) {
  (void)s;
  (void)w;
  (void)arg;
  stopping = 1;
  evconnlistener_disable(listener);
  for (client *c = live.next, *n; c != &live; c = n) {
    n = c->next;
    if (!c->bev) {
      event_del(&c->rev);
      make_bev(c);
      bufferevent_setcb(c->bev, NULL, on_flushed, on_event, c);
      start_drain(c);
    } else if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
      start_drain(c);
  }
  if (live.next == &live)
    event_base_loopexit(base, NULL);
}

static void on_sigint(evutil_socket_t s, short w, void *arg) {
  (void)s;
  (void)w;
  (void)arg;
  event_base_loopbreak(base);
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_args_parse(&args, argc, argv, "ev_server"))
    return 2;
  nbytes = args.nbytes;
  echo_mode = args.echo_mode;
  payload = args.payload;

  base = event_base_new();
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  int alen = sizeof(a);
  if (evutil_parse_sockaddr_port(args.listen, (struct sockaddr *)&a, &alen) < 0)
    return 2;
  listener =
      evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                              4096, (struct sockaddr *)&a, sizeof(a));
  if (!listener) {
    perror("ev_server: listen");
    return 1;
  }
  struct sockaddr_in got;
  socklen_t gl = sizeof(got);
  getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&got, &gl);
  printf("listening on %s:%d\n", args.host, ntohs(got.sin_port));
  fflush(stdout);
  struct event *st = evsignal_new(base, SIGTERM, on_sigterm, NULL);
  struct event *si = evsignal_new(base, SIGINT, on_sigint, NULL);
  event_add(st, NULL);
  event_add(si, NULL);
  event_base_dispatch(base);
  return 0;
}
