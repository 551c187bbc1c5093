/* API misuse returns codes, never crashes, never leaks. */
#include "helper.h"

#include <string.h>

static struct {
  lw_conn *srv;
  int closes, wcb, cancelled;
  lw_close_info info;
} st;

static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  st.closes++;
  st.info = *in;
}
static void wcb(lw_conn *c, int status, void *arg) {
  (void)c;
  (void)arg;
  st.wcb++;
  if (status == LW_ECANCELED)
    st.cancelled++;
}
static void on_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)n;
  (void)b;
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  st.srv = c;
  lw_conn_on_close(c, on_close);
  lw_listener_close(l);
}

static void test_misuse(void **state) {
  (void)state;
  memset(&st, 0, sizeof(st));
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, on_accept, &l), 0);
  /* A name (no DNS here) is LW_ENOENT; a malformed address LW_EINVAL (lastword.h). */
  assert_int_equal(lw_listener_new(loop, "not-an-address", 0, 4, NULL, on_accept, &l),
                   LW_ENOENT);
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, NULL, &c), 0);
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", 70000, NULL, NULL, &c), LW_EINVAL);
  while (!st.srv)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_conn *s = st.srv;

  /* Arguments */
  assert_int_equal(lw_conn_write(s, NULL, 1, NULL, NULL), LW_EINVAL);
  assert_int_equal(lw_conn_write(s, "x", 0, NULL, NULL), LW_EINVAL);
  assert_int_equal(lw_conn_read_start(s, NULL), LW_EINVAL);
  assert_int_equal(lw_conn_set_read_size(s, 0), LW_EINVAL);
  assert_int_equal(lw_close(NULL, 0), LW_EINVAL);
  assert_int_equal(lw_abort(NULL), LW_EINVAL);
  assert_int_equal(lw_shutdown(NULL), LW_EINVAL);

  /* Write after shutdown; shutdown twice; close after shutdown is the normal end. */
  assert_int_equal(lw_conn_write(s, "a", 1, wcb, NULL), 0);
  assert_int_equal(lw_shutdown(s), 0);
  assert_int_equal(lw_shutdown(s), LW_EALREADY);
  assert_int_equal(lw_conn_write(s, "b", 1, wcb, NULL), LW_ESHUTDOWN);
  assert_int_equal(lw_conn_read_start(s, on_read), 0); /* reading goes on after shutdown */
  assert_int_equal(lw_close(s, 500), 0);
  assert_int_equal(lw_close(s, 500), LW_EALREADY); /* double close */
  assert_int_equal(lw_conn_write(s, "c", 1, wcb, NULL), LW_ECLOSING);
  assert_int_equal(lw_conn_read_start(s, on_read), LW_ECLOSING);
  assert_int_equal(lw_shutdown(s), LW_EALREADY);
  /* Abort while lingering escalates; abort again is refused. */
  assert_int_equal(lw_abort(s), 0);
  assert_int_equal(lw_abort(s), LW_EALREADY);
  assert_int_equal(lw_close(s, 0), LW_EALREADY);
  assert_int_equal(lw_conn_fd(s), -1);

  lw_abort(c);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(st.closes, 1);
  assert_int_equal(st.wcb, 1); /* only the accepted write has a callback, once */
  /* The byte left before the RST on both: epoll wrote it inside lw_shutdown; io_uring
   * issues the queued sendmsg before the cancel and the close queued behind it, and a
   * send that completes after the detach counts (lw__conn_write_late): status 0. */
  assert_int_equal(st.cancelled, 0);
  assert_int_equal(st.info.reason, LW_REASON_ABORT);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

/* lw_close before the connect completed: nothing to flush, so it aborts the attempt. */
static void test_close_while_connecting(void **state) {
  (void)state;
  memset(&st, 0, sizeof(st));
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, on_accept, &l), 0);
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, NULL, &c), 0);
  lw_conn_on_close(c, on_close);
  assert_int_equal(lw_close(c, 1000), 0);
  assert_int_equal(lw_close(c, 1000), LW_EALREADY);
  lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_null(st.srv); /* the listener closed before the loop ever ran */
  assert_int_equal(st.closes, 1);
  assert_int_equal(st.info.reason, LW_REASON_ABORT);
  assert_int_equal(lw_loop_close(loop), 0);
}

/* Socket reuse (A15) exists on IOCP only; elsewhere it says so instead of pretending. */
static void test_socket_reuse_option(void **state) {
  (void)state;
  assert_int_equal(lw_loop_set_socket_reuse(NULL, 8), LW_EINVAL);
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  int r = lw_loop_set_socket_reuse(loop, 8);
  if (strcmp(lw_loop_backend(loop), "iocp") == 0) {
    /* Wine cannot recycle sockets (LW_ENOSYS there); real Windows takes it. */
    assert_true(r == 0 || r == LW_ENOSYS);
    if (r == 0)
      assert_int_equal(lw_loop_set_socket_reuse(loop, 0), 0);
  } else {
    assert_int_equal(r, LW_ENOSYS);
    assert_int_equal(lw_loop_set_socket_reuse(loop, 0), LW_ENOSYS);
  }
  assert_int_equal(lw_loop_close(loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_misuse),
                                     cmocka_unit_test(test_close_while_connecting),
                                     cmocka_unit_test(test_socket_reuse_option)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
