/* lw_loop_close refuses while handles are alive, and succeeds once they are gone. */
#include "helper.h"

static int closes;
static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  closes++;
}
static int accepted;
static lw_conn *srv_conn;
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  accepted++;
  lw_conn_on_close(c, on_close);
  srv_conn = c;
}

static void test_busy(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  assert_int_equal(lw_loop_close(loop), 0); /* an empty loop closes */

  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, on_accept, &l), 0);
  assert_int_equal(lw_loop_close(loop), LW_EBUSY);
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, NULL, &c), 0);
  lw_conn_on_close(c, on_close);
  while (!accepted)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_listener_close(l);
  assert_int_equal(lw_loop_close(loop), LW_EBUSY); /* listener frees at the endgame */
  lw_loop_run(loop, LW_RUN_NOWAIT);
  assert_int_equal(lw_loop_close(loop), LW_EBUSY); /* the client connection is alive */
  assert_int_equal(closes, 0);
  assert_int_equal(lw_abort(c), 0);
  assert_int_equal(lw_abort(srv_conn), 0);
  assert_int_equal(lw_loop_close(loop), LW_EBUSY); /* on_close has not run yet */
  assert_int_equal(closes, 0);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(closes, 2);
  lw_timer *t;
  assert_int_equal(lw_timer_new(loop, &t), 0);
  assert_int_equal(lw_loop_close(loop), LW_EBUSY); /* a timer, even unarmed */
  lw_timer_free(t);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_bad_backend(void **state) {
  (void)state;
  lw_loop *loop = (lw_loop *)0x1;
  assert_int_equal(lw_loop_new(&loop, "no-such-backend"), LW_ENOSYS);
  assert_null(loop);
  assert_int_equal(lw_loop_new(NULL, NULL), LW_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_busy),
                                     cmocka_unit_test(test_bad_backend)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
