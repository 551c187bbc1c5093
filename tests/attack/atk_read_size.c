/* atk_read_size.c - lw_conn_set_read_size(c, 1) called from a timer (not a read
 * callback) while the connection is reading and idle. The header: "Maximum bytes per
 * read callback from now on ... A server that must leave everything after a request
 * line in the kernel reads with size 1". Then the peer sends 100 bytes.
 * Expected (epoll): every read callback gets 1 byte, 100 callbacks.
 * Variant 2: read_stop from a timer while idle, set_read_size(1), peer sends 100 bytes,
 * read_start: the held bytes must still come 1 per callback. */
#include "atk.h"

static lw_conn *srv;
static long maxn, total;
static int calls;
static void on_read(lw_conn *c, long n, const char *buf) {
  (void)c;
  (void)buf;
  if (n > 0) {
    calls++;
    total += n;
    if (n > maxn)
      maxn = n;
  }
}
static void on_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  srv = c;
  lw_conn_read_start(c, on_read);
}
static void shrink(lw_timer *t) {
  (void)t;
  lw_conn_set_read_size(srv, 1);
}

int main(void) {
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, on_accept, &l);
  int p = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 50); /* accepted, reading, a recv armed */
  CHECK(srv != NULL, "not accepted");
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, shrink, 1, 0);
  atk_run_for(loop, 30); /* set_read_size(1) from a timer */
  char buf[100];
  memset(buf, 'x', sizeof(buf));
  send(p, buf, sizeof(buf), 0);
  atk_run_for(loop, 200);
  printf("read size 1 set from a timer: %d callbacks, largest %ld bytes, total %ld\n", calls,
         maxn, total);
  CHECK(maxn == 1, "a read callback got %ld bytes after lw_conn_set_read_size(c, 1)", maxn);
  CHECK(total == 100, "total %ld", total);
  lw_timer_free(t);
  close(p);
  lw_abort(srv);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int r = atk_end("atk_read_size", loop);
  CHECK(lw_loop_close(loop) == 0, "loop close");
  return r;
}
