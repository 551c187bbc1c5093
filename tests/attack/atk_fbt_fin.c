/* atk_fbt_fin.c - first_byte_timeout_ms and a peer that sent only its FIN while reading
 * is stopped. Header: "a peer that has sent nothing at all -- no byte, no FIN -- N ms
 * after the accept is reset". The server stops reading from a timer (io_uring: a recv is
 * armed, so the FIN is held in the stash, rule 5); the peer half-closes; the timeout
 * (100 ms) passes. Expected: no FIRST_BYTE_TIMEOUT reset (the peer did speak: FIN). */
#include "atk.h"
static lw_conn *a;
static int closed;
static lw_close_info info;
static void rd(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)n;
  (void)b;
}
static void cc(lw_conn *c, const lw_close_info *in) {
  (void)c;
  info = *in;
  closed = 1;
}
static void acc(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  a = c;
  lw_conn_on_close(c, cc);
  lw_conn_read_start(c, rd);
}
static void stop(lw_timer *t) {
  (void)t;
  lw_conn_read_stop(a);
}
int main(void) {
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  o.first_byte_timeout_ms = 100;
  lw_listener *l;
  lw_listener_new(loop, "127.0.0.1", 0, 16, &o, acc, &l);
  int p = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 20);
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, stop, 1, 0);
  atk_run_for(loop, 10);
  shutdown(p, SHUT_WR);
  atk_run_for(loop, 250);
  printf("after 250 ms: closed=%d reason=%s rst=%d\n", closed,
         closed ? lw_reason_name(info.reason) : "-", info.rst);
  CHECK(!(closed && info.reason == LW_REASON_FIRST_BYTE_TIMEOUT),
        "a peer that sent its FIN was reset for first-byte-timeout");
  lw_timer_free(t);
  if (!closed)
    lw_abort(a);
  close(p);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int rc = atk_end("atk_fbt_fin", loop);
  lw_loop_close(loop);
  return rc;
}
