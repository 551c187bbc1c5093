/* atk_sync_read.c - a read callback must come from the backend's dispatch, never from
 * inside an lw_* call (docs/architecture.md "Safety of callbacks": user callbacks run
 * at three places only: dispatch, the deferred list, the endgame).
 * Connection A reads; a timer stops its reading (a recv is armed); the peer sends 100
 * bytes and FIN; a second timer calls lw_conn_read_start(A) and only then sets the
 * application's per-connection state (a common order: resume, then record why).
 * Expected (epoll): no read callback runs inside lw_conn_read_start; the EOF too comes
 * later from the loop. Also checks: the EOF comes exactly once, after the bytes. */
#include "atk.h"

static lw_conn *a;
static int inside, cb_inside, data_cbs, eofs, closed, bytes, eof_before_data;
static const char *state = "old";
static int bad_state;
static void on_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (inside)
    cb_inside++;
  if (strcmp(state, "new") != 0)
    bad_state++;
  if (n > 0) {
    data_cbs++;
    bytes += (int)n;
    if (eofs)
      eof_before_data++;
  } else if (n == LW_EOF)
    eofs++;
}
static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  closed = 1;
}
static void on_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  a = c;
  lw_conn_on_close(c, on_close);
  lw_conn_read_start(c, on_read);
}
static void stop(lw_timer *t) {
  (void)t;
  lw_conn_read_stop(a);
}
static void resume(lw_timer *t) {
  (void)t;
  inside = 1;
  int r = lw_conn_read_start(a, on_read);
  inside = 0;
  CHECK(r == 0, "read_start: %d", r);
  state = "new";
}

int main(void) {
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, on_accept, &l);
  int p = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 30);
  lw_timer *t1, *t2;
  lw_timer_new(loop, &t1);
  lw_timer_new(loop, &t2);
  lw_timer_start(t1, stop, 1, 0);
  atk_run_for(loop, 20);
  char buf[100];
  memset(buf, 'x', sizeof(buf));
  send(p, buf, sizeof(buf), 0);
  shutdown(p, SHUT_WR);
  atk_run_for(loop, 50);
  lw_timer_start(t2, resume, 1, 0);
  atk_run_until(loop, &closed, 1000);
  printf("callbacks inside lw_conn_read_start: %d; with the app's state not yet set: %d; "
         "data cbs %d (%d bytes), EOFs %d, closed %d\n",
         cb_inside, bad_state, data_cbs, bytes, eofs, closed);
  CHECK(cb_inside == 0, "%d read callback(s) ran inside lw_conn_read_start", cb_inside);
  CHECK(bytes == 100 && eofs == 1 && !eof_before_data, "bytes %d eofs %d", bytes, eofs);
  lw_timer_free(t1);
  lw_timer_free(t2);
  close(p);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int rc = atk_end("atk_sync_read", loop);
  CHECK(lw_loop_close(loop) == 0, "loop close");
  return rc;
}
