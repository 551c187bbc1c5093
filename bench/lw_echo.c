/*
 * lw_echo - the echo workload's lastword server, on the public API only.
 *
 *   lw_echo --listen 127.0.0.1:PORT
 *
 * Writes back whatever it reads (lw_conn_write_copy). On the peer's FIN the library
 * finishes the close by itself (graceful, no CLOSE_WAIT). SIGTERM/SIGINT: stop
 * accepting, lw_close() every connection, exit when all have ended.
 */
#define _POSIX_C_SOURCE 200809L
#include <lastword.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
  struct node *next, *prev;
  lw_conn *conn;
} node;

static node live = {.next = &live, .prev = &live};
static volatile sig_atomic_t got_signal;
static lw_listener *listener;
static int stopping;

static void on_signal(int s) {
  (void)s;
  got_signal = 1;
}

static void on_close(lw_conn *c, const lw_close_info *info) {
  node *n = lw_conn_get_data(c);
  (void)info;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  free(n);
}

static void on_read(lw_conn *c, long nread, const char *buf) {
  if (nread > 0 && lw_conn_write_copy(c, buf, (size_t)nread) < 0)
    lw_abort(c);
  /* LW_EOF: the library ends the connection gracefully once the queue is flushed. */
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  if (status < 0)
    return;
  node *n = malloc(sizeof(*n));
  if (!n) {
    lw_abort(c);
    return;
  }
  n->conn = c;
  n->next = live.next;
  n->prev = &live;
  live.next->prev = n;
  live.next = n;
  lw_conn_set_data(c, n);
  lw_conn_on_close(c, on_close);
  lw_conn_read_start(c, on_read);
}

static void sig_check(lw_timer *t) {
  if (!got_signal || stopping)
    return;
  stopping = 1;
  lw_listener_close(listener);
  lw_timer_free(t);
  for (node *n = live.next; n != &live; n = n->next)
    lw_close(n->conn, 5000);
}

int main(int argc, char **argv) {
  const char *listen_arg = "127.0.0.1:0";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--listen"))
      listen_arg = argv[i + 1];
    else if (strcmp(argv[i], "--mode") != 0 && strcmp(argv[i], "--bytes") != 0) {
      fprintf(stderr, "usage: lw_echo --listen HOST:PORT\n");
      return 2;
    }
  }
  char host[64];
  const char *colon = strrchr(listen_arg, ':');
  if (!colon || (size_t)(colon - listen_arg) >= sizeof(host))
    return 2;
  memcpy(host, listen_arg, (size_t)(colon - listen_arg));
  host[colon - listen_arg] = 0;

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 1;
  int r = lw_listener_new(loop, host, atoi(colon + 1), 4096, NULL, on_accept, &listener);
  if (r < 0) {
    fprintf(stderr, "lw_echo: listen: %s\n", lw_strerror(r));
    return 1;
  }
  printf("listening on %s:%d\n", host, lw_listener_port(listener));
  fflush(stdout);
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, sig_check, 50, 50);
  while (!stopping || live.next != &live)
    if (lw_loop_run(loop, LW_RUN_ONCE) < 0)
      break;
  lw_loop_run(loop, LW_RUN_NOWAIT);
  lw_loop_close(loop);
  return 0;
}
