/* atk_sync_eof.c - consequence of a read callback run inside lw_conn_read_start: the
 * peer's FIN held while reading was stopped (rule 5) is delivered INSIDE read_start, the
 * library then closes (no allow_half_close), and a reply the application writes right
 * after read_start returns is refused.
 * Timer 1 stops reading (a recv is armed); the peer sends its request and FIN; timer 2
 * calls lw_conn_read_start and then writes a 6-byte reply ("resume, then answer what
 * was parked"). Expected (epoll): the write returns 0 and the peer receives "reply\n"
 * before EOF (the EOF callback comes from the loop later; the library's own close
 * flushes what was queued, B5). */
#include "atk.h"

static lw_conn *a;
static int closed, wr = 99, eofs;
static void on_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (n == LW_EOF)
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
  lw_conn_read_start(a, on_read);
  wr = lw_conn_write_copy(a, "reply\n", 6);
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
  shutdown(p, SHUT_WR);
  atk_run_for(loop, 50);
  lw_timer_start(t2, resume, 1, 0);
  atk_run_until(loop, &closed, 1000);
  char buf[64];
  size_t got = 0;
  for (int i = 0; i < 20; i++) {
    struct pollfd pfd = {.fd = p, .events = POLLIN};
    if (poll(&pfd, 1, 50) <= 0)
      continue;
    ssize_t r = recv(p, buf + got, sizeof(buf) - got, 0);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  printf("write after read_start: %d (%s); peer received %zu bytes; EOF callbacks %d\n", wr,
         wr < 0 ? lw_err_name(wr) : "ok", got, eofs);
  CHECK(wr == 0, "lw_conn_write_copy right after lw_conn_read_start returned %s",
        lw_err_name(wr));
  CHECK(got == 6, "peer got %zu of 6 reply bytes", got);
  CHECK(eofs == 1, "EOFs %d", eofs);
  lw_timer_free(t1);
  lw_timer_free(t2);
  close(p);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int rc = atk_end("atk_sync_eof", loop);
  lw_loop_close(loop);
  return rc;
}
