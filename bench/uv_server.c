/*
 * uv_server - the bench protocols on libuv, closed with libuv's best graceful close:
 * uv_shutdown (FIN after the last queued byte), then read and discard to the peer's EOF,
 * then uv_close. Without the drain, unread input would turn the close into an RST.
 *
 *   uv_server --listen 127.0.0.1:PORT [--bytes N] [--mode respond|echo]
 *
 * The request line is read one byte at a time (alloc_cb hands out a 1-byte buffer), as
 * examples/respond.c does, so no byte after '\n' is consumed. SIGTERM: stop accepting,
 * end every open connection the same graceful way, exit when they are all gone.
 * SIGINT: stop at once (for callgrind).
 */
#define _GNU_SOURCE
#include "bench_args.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum { P_REQUEST, P_REPLY, P_DRAIN };

/* Allocated when the response starts (as lastword allocates its write request), so that
 * an idle connection costs what libuv needs: a uv_tcp_t and the application's state. */
typedef struct reqs {
  uv_write_t wreq;
  uv_shutdown_t sreq;
} reqs;

typedef struct client {
  uv_tcp_t tcp;
  reqs *rq;
  int phase;
  int closing;
  char ch;
  struct client *next, *prev;
} client;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigterm, sigint;
static char *payload;
static size_t nbytes = 64;
static int echo_mode;
static client live = {.next = &live, .prev = &live};
static char discard[65536];

static void on_closed(uv_handle_t *h) {
  client *c = (client *)h;
  c->prev->next = c->next;
  c->next->prev = c->prev;
  free(c->rq);
  free(c);
}

static void end_now(client *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  client *c = (client *)h;
  (void)suggested;
  if (c->phase == P_REQUEST)
    *buf = uv_buf_init(&c->ch, 1);
  else
    *buf = uv_buf_init(discard, sizeof(discard));
}

static void on_drain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0) /* UV_EOF: the peer's FIN, the graceful end; or an error */
    end_now((client *)s);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  client *c = req->data;
  if (status < 0 || c->closing) {
    end_now(c);
    return;
  }
  c->phase = P_DRAIN;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_drain_read) < 0)
    end_now(c);
}

static void graceful_end(client *c) {
  if (c->closing || c->phase == P_DRAIN)
    return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->phase = P_DRAIN; /* no second shutdown */
  if (!c->rq && !(c->rq = malloc(sizeof(reqs)))) {
    end_now(c);
    return;
  }
  c->rq->sreq.data = c;
  if (uv_shutdown(&c->rq->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
    end_now(c);
}

static void on_written(uv_write_t *req, int status) {
  if (status < 0)
    end_now(req->data);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client *c = (client *)s;
  if (n < 0) {
    if (n == UV_EOF)
      graceful_end(c);
    else
      end_now(c);
    return;
  }
  if (n == 0 || buf->base[0] != '\n')
    return;
  uv_read_stop(s);
  c->phase = P_REPLY;
  uv_buf_t b = uv_buf_init(payload, (unsigned)nbytes);
  c->rq = malloc(sizeof(reqs));
  if (!c->rq) {
    end_now(c);
    return;
  }
  c->rq->wreq.data = c;
  if (uv_write(&c->rq->wreq, s, &b, 1, on_written) < 0) {
    end_now(c);
    return;
  }
  graceful_end(c); /* uv_shutdown waits for the queued write */
}

typedef struct echo_wr {
  uv_write_t req;
  char data[];
} echo_wr;

static void echo_written(uv_write_t *req, int status) {
  if (status < 0)
    end_now((client *)req->handle);
  free(req);
}

static void echo_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char rb[65536];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(rb, sizeof(rb));
}

static void on_echo(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client *c = (client *)s;
  if (n < 0) {
    if (n == UV_EOF)
      graceful_end(c);
    else
      end_now(c);
    return;
  }
  if (n == 0)
    return;
  /* The usual libuv fast path: try to write at once, queue a copy of the rest. */
  uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
  int w = uv_try_write(s, &b, 1);
  if (w == n)
    return;
  if (w < 0 && w != UV_EAGAIN) {
    end_now(c);
    return;
  }
  if (w < 0)
    w = 0;
  echo_wr *ew = malloc(sizeof(*ew) + (size_t)(n - w));
  memcpy(ew->data, buf->base + w, (size_t)(n - w));
  uv_buf_t rest = uv_buf_init(ew->data, (unsigned)(n - w));
  if (uv_write(&ew->req, s, &rest, 1, echo_written) < 0) {
    free(ew);
    end_now(c);
  }
}

static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0)
    return;
  client *c = calloc(1, sizeof(*c));
  uv_tcp_init(loop, &c->tcp);
  c->next = live.next;
  c->prev = &live;
  live.next->prev = c;
  live.next = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
    end_now(c);
    return;
  }
  if (echo_mode)
    uv_read_start((uv_stream_t *)&c->tcp, echo_alloc, on_echo);
  else
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_sigterm(uv_signal_t *h, int sig) {
  (void)sig;
  uv_close((uv_handle_t *)&server, NULL);
  uv_close((uv_handle_t *)h, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  for (client *c = live.next, *n; c != &live; c = n) {
    n = c->next;
    graceful_end(c);
  }
}

static void on_sigint(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  uv_stop(loop);
}

int main(int argc, char **argv) {
  bench_args args;
  if (bench_args_parse(&args, argc, argv, "uv_server"))
    return 2;
  nbytes = args.nbytes;
  echo_mode = args.echo_mode;
  payload = args.payload;

  loop = uv_default_loop();
  struct sockaddr_in a;
  uv_ip4_addr(args.host, args.port, &a);
  uv_tcp_init(loop, &server);
  int r = uv_tcp_bind(&server, (const struct sockaddr *)&a, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&server, 4096, on_conn);
  if (r < 0) {
    fprintf(stderr, "uv_server: listen: %s\n", uv_strerror(r));
    return 1;
  }
  struct sockaddr_in got;
  int gl = sizeof(got);
  uv_tcp_getsockname(&server, (struct sockaddr *)&got, &gl);
  printf("listening on %s:%d\n", args.host, ntohs(got.sin_port));
  fflush(stdout);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_sigterm, SIGTERM);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_sigint, SIGINT);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
