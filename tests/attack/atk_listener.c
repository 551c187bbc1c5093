/* atk_listener.c - a listener closed while accepts are queued (in the kernel's backlog
 * and as CQEs in the same batch), from inside its accept callback (mode a) or from a
 * timer (mode t), a new listener opened at once (takes the number), then the loop is
 * run dry and closed. Checks: lw_loop_close returns 0 after the loop runs dry; the
 * process has exactly the fds it had before the loop was made (once the raw clients are
 * closed); the new listener works; exactly one on_close per accepted connection. */
#include "atk.h"

#define NC 64
static lw_listener *l1, *l2;
static int mode, acc1, acc2, closes, accepted_conns;
static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  closes++;
}
static void rd(lw_conn *c, long n, const char *b) {
  (void)b;
  if (n == LW_EOF)
    lw_close(c, 100);
}
static void acc_new(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  acc2++;
  accepted_conns++;
  lw_conn_on_close(c, on_close);
  lw_conn_read_start(c, rd);
}
static void open_new(void) {
  if (!l2)
    lw_listener_new(lw_conn_loop(NULL) ? NULL : NULL, "127.0.0.1", 0, 16, NULL, acc_new, &l2);
}
static lw_loop *gl;
static void acc_old(lw_listener *l, lw_conn *c, int st) {
  if (st)
    return;
  acc1++;
  accepted_conns++;
  lw_conn_on_close(c, on_close);
  if (acc1 % 2)
    lw_abort(c);
  else
    lw_conn_read_start(c, rd);
  if (mode == 'a' && acc1 == 5) {
    lw_listener_close(l);
    lw_listener_new(gl, "127.0.0.1", 0, 16, NULL, acc_new, &l2);
  }
}
static void tcl(lw_timer *t) {
  (void)t;
  lw_listener_close(l1);
  lw_listener_new(gl, "127.0.0.1", 0, 16, NULL, acc_new, &l2);
}

int main(int argc, char **argv) {
  (void)open_new;
  mode = argc > 1 ? argv[1][0] : 'a';
  int before = atk_nfds();
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  gl = loop;
  lw_listener_new(loop, "127.0.0.1", 0, 128, NULL, acc_old, &l1);
  int port = lw_listener_port(l1);
  int cl[NC];
  for (int i = 0; i < NC; i++)
    cl[i] = atk_connect(port); /* all in the backlog first */
  lw_timer *t = NULL;
  if (mode == 't') {
    lw_timer_new(loop, &t);
    lw_timer_start(t, tcl, 0, 0);
  }
  atk_run_for(loop, 50);
  CHECK(l2 != NULL, "no second listener");
  int c2 = l2 ? atk_connect(lw_listener_port(l2)) : -1;
  atk_run_for(loop, 50);
  CHECK(acc2 == 1, "new listener accepted %d", acc2);
  for (int i = 0; i < NC; i++)
    close(cl[i]);
  if (c2 >= 0)
    close(c2);
  if (t)
    lw_timer_free(t);
  atk_run_for(loop, 100);
  lw_listener_close(l2);
  int rr = lw_loop_run(loop, LW_RUN_DEFAULT);
  CHECK(rr == 0, "run %d", rr);
  CHECK(closes == accepted_conns, "on_close %d for %d accepted", closes, accepted_conns);
  int r = lw_loop_close(loop);
  CHECK(r == 0, "lw_loop_close: %s", lw_err_name(r));
  int after = atk_nfds();
  printf("mode %c: accepted by the old listener %d (of %d queued), by the new %d; fds "
         "before %d after %d\n",
         mode, acc1, NC, acc2, before, after);
  CHECK(before == after, "fd count %d -> %d", before, after);
  return atk_end("atk_listener", NULL);
}
