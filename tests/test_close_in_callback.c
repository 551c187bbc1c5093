/* Closing from inside every kind of callback is safe: no use after free (ASan watches),
 * exact callback counts, and nothing after on_close. */
#include "helper.h"

#include <string.h>

enum { IN_READ_ABORT, IN_READ_CLOSE, IN_WRITE_CB, IN_CONNECT_CB, IN_EOF_CB };

static struct {
  int mode, reads, writes, cancelled, closes, closes_after, eofs, connects;
  int second_close_rc;
  lw_close_info info;
} st;

static void s_close(lw_conn *c, const lw_close_info *in) {
  st.closes++;
  st.info = *in;
  /* Inside on_close every termination call is refused politely. */
  assert_int_equal(lw_close(c, 10), LW_EALREADY);
  assert_int_equal(lw_abort(c), LW_EALREADY);
  assert_int_equal(lw_conn_write(c, "x", 1, NULL, NULL), LW_ECLOSING);
}

static void s_written(lw_conn *c, int status, void *arg) {
  (void)arg;
  if (status == 0)
    st.writes++;
  else
    st.cancelled++;
  if (st.mode == IN_WRITE_CB && status == 0)
    assert_int_equal(lw_close(c, 1000), 0);
}

static void s_read(lw_conn *c, long n, const char *buf) {
  (void)buf;
  assert_int_equal(st.closes, 0); /* no read callback after on_close */
  if (n == LW_EOF) {
    st.eofs++;
    if (st.mode == IN_EOF_CB) {
      /* Respond from inside the EOF callback, then close: the reply goes out first. */
      assert_int_equal(lw_conn_write(c, "bye", 3, s_written, NULL), 0);
      assert_int_equal(lw_close(c, 1000), 0);
    }
    return;
  }
  st.reads++;
  switch (st.mode) {
  case IN_READ_ABORT:
    assert_int_equal(lw_conn_write(c, "pending", 7, s_written, NULL) >= 0, 1);
    assert_int_equal(lw_abort(c), 0);
    st.second_close_rc = lw_close(c, 10);
    break;
  case IN_READ_CLOSE:
    assert_int_equal(lw_close(c, 1000), 0);
    st.second_close_rc = lw_close(c, 10);
    break;
  case IN_WRITE_CB:
    lw_conn_read_stop(c);
    assert_true(lw_conn_write(c, "reply", 5, s_written, NULL) >= 0);
    break;
  default:
    break;
  }
}

static void s_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  lw_conn_on_close(c, s_close);
  lw_conn_read_start(c, s_read);
  lw_listener_close(l);
}

static void c_connect(lw_conn *c, int status) {
  assert_int_equal(status, 0);
  st.connects++;
  if (st.mode == IN_CONNECT_CB) {
    assert_int_equal(lw_abort(c), 0);
    return;
  }
  if (st.mode == IN_EOF_CB) {
    lw_conn_write(c, "req", 3, NULL, NULL);
    lw_shutdown(c);
  } else {
    lw_conn_write(c, "req", 3, NULL, NULL);
  }
}

static int peer_closes;
static lw_close_info peer_info;
static char peer_got[16];
static int peer_len;
static void c_read(lw_conn *c, long n, const char *buf) {
  if (n == LW_EOF) {
    /* allow_half_close: this side ends it itself once the server is done. */
    int r = lw_close(c, 1000);
    assert_true(r == 0 || r == LW_EALREADY);
    return;
  }
  if (n > 0 && peer_len + n < (long)sizeof(peer_got)) {
    memcpy(peer_got + peer_len, buf, (size_t)n);
    peer_len += (int)n;
  }
}
static void c_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  peer_closes++;
  peer_info = *in;
}

static void run_mode(int mode) {
  memset(&st, 0, sizeof(st));
  peer_closes = 0;
  peer_len = 0;
  st.mode = mode;
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, s_accept, &l), 0);
  lw_conn *c;
  lw_conn_options copt = {.allow_half_close = 1};
  assert_int_equal(
      lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), &copt, c_connect, &c), 0);
  lw_conn_on_close(c, c_close);
  lw_conn_read_start(c, c_read);
  lwt_run_until(loop, NULL, &peer_closes, 1, 5000);
  if (mode == IN_CONNECT_CB) {
    /* The server may never see anything but a reset; close it if it is still open. */
    lw_loop_run(loop, LW_RUN_NOWAIT);
  } else {
    lwt_run_until(loop, NULL, &st.closes, 1, 5000);
  }
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(peer_closes, 1);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_abort_in_read(void **s) {
  (void)s;
  run_mode(IN_READ_ABORT);
  assert_int_equal(st.reads, 1);
  assert_int_equal(st.closes, 1);
  assert_int_equal(st.second_close_rc, LW_EALREADY);
  assert_int_equal(st.writes + st.cancelled, 1); /* the write's callback ran once */
  assert_int_equal(st.info.reason, LW_REASON_ABORT);
  assert_int_equal(peer_info.reason, LW_REASON_PEER_RESET);
}

static void test_close_in_read(void **s) {
  (void)s;
  run_mode(IN_READ_CLOSE);
  assert_int_equal(st.closes, 1);
  assert_int_equal(st.second_close_rc, LW_EALREADY);
  assert_int_equal(st.info.reason, LW_REASON_GRACEFUL);
}

static void test_close_in_write_cb(void **s) {
  (void)s;
  run_mode(IN_WRITE_CB);
  assert_int_equal(st.writes, 1);
  assert_int_equal(st.cancelled, 0);
  assert_int_equal(st.closes, 1);
  assert_int_equal(peer_len, 5);
  assert_memory_equal(peer_got, "reply", 5);
}

static void test_abort_in_connect_cb(void **s) {
  (void)s;
  run_mode(IN_CONNECT_CB);
  assert_int_equal(st.connects, 1);
  assert_int_equal(peer_info.reason, LW_REASON_ABORT);
}

static void test_reply_and_close_in_eof_cb(void **s) {
  (void)s;
  run_mode(IN_EOF_CB);
  assert_int_equal(st.eofs, 1);
  assert_int_equal(st.writes, 1);
  assert_int_equal(st.closes, 1);
  assert_int_equal(peer_len, 3);
  assert_memory_equal(peer_got, "bye", 3);
  assert_int_equal(st.info.reason, LW_REASON_PEER_CLOSED_FIRST);
  assert_int_equal(peer_info.reason, LW_REASON_GRACEFUL);
  assert_int_equal(peer_info.time_wait, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abort_in_read), cmocka_unit_test(test_close_in_read),
      cmocka_unit_test(test_close_in_write_cb), cmocka_unit_test(test_abort_in_connect_cb),
      cmocka_unit_test(test_reply_and_close_in_eof_cb)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
