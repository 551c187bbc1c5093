/* The peer resets mid-response: reason peer-reset, the pending write cancelled once,
 * on_close once. */
#include "helper.h"

static void test_peer_rst_mid_response(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_peer p = {0};
  lwt_server s = {0};
  s.bytes = 32 * 1024 * 1024;
  lwt_server_start(&s, "127.0.0.1");
  p.port = s.port;
  p.read_limit = 64 * 1024;
  p.rst_after = 1;
  lwt_peer_start(&p);
  lwt_run_until(s.loop, &p.done, &s.closes, 1, 10000);
  lwt_peer_join(&p);
  lwt_server_stop(&s);
  print_message("server: reason=%s initiator=%d rst=%d os_error=%s sent=%llu close_ms=%llu "
                "unread=%llu; peer got %zu, end_err=%d\n",
                lw_reason_name(s.last.reason), s.last.initiator, s.last.rst,
                lw_err_name(s.last.os_error), (unsigned long long)s.last.bytes_sent,
                (unsigned long long)s.last.close_ms,
                (unsigned long long)s.last.unread_discarded, p.received, p.end_err);
  assert_int_equal(s.accepts, 1);
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.write_cancelled, 1);
  assert_int_equal(s.write_ok, 0);
  assert_int_equal(s.last.reason, LW_REASON_PEER_RESET);
  assert_int_equal(s.last.initiator, LW_INITIATOR_PEER);
  assert_int_equal(s.last.rst, 1);
  assert_true(s.last.os_error == LW_ECONNRESET || s.last.os_error == LW_EPIPE);
  assert_true(s.last.unsent_discarded > 0);
  assert_int_equal(s.last.time_wait, 0);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_peer_rst_mid_response)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
