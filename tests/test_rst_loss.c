/*
 * The RST-loss case from CLAIMS.md (B13): the client sends "GET\n" plus 64 KiB the
 * server never reads, waits, then reads. A naive close() with that input unread makes
 * the kernel send RST and throw away what it had not delivered; lw_close drains first.
 */
#include "helper.h"

#include <errno.h>

static void run_case(int mode, lwt_peer *p, lwt_server *s) {
  s->bytes = 4 * 1024 * 1024;
  s->close_mode = mode;
  lwt_server_start(s, "127.0.0.1");
  p->port = s->port;
  p->extra = 64 * 1024;
  p->delay_ms = 200;
  /* A client slower than the server, as over a real network: the server still has
   * bytes queued when it closes, whatever autotuning would have allowed on lo. */
  p->rcvbuf = 64 * 1024;
  p->read_pause_us = 1000; /* ~32 MB/s: slower than the server even under ASan */
  lwt_peer_start(p);
  lwt_run_until(s->loop, &p->done, &s->closes, 1, 10000);
  lwt_peer_join(p);
  lwt_server_stop(s);
  assert_int_equal(s->accepts, 1);
  assert_int_equal(s->closes, 1);
  assert_int_equal(p->connect_err, 0);
}

static void test_graceful_delivers_everything(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_peer p = {0};
  lwt_server s = {0};
  run_case(LWT_CLOSE_GRACEFUL, &p, &s);
  print_message("graceful: client received %zu of %zu bytes, end=%s\n", p.received, s.bytes,
                p.end_err ? "reset" : "EOF");
  assert_int_equal(p.received, s.bytes);
  assert_true(p.pattern_ok);
  assert_int_equal(p.end_err, 0);
  assert_int_equal(s.write_ok, 1);
  assert_int_equal(s.write_cancelled, 0);
  assert_int_equal(s.last.reason, LW_REASON_GRACEFUL);
  assert_int_equal(s.last.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(s.last.rst, 0);
  assert_int_equal(s.last.bytes_queued, s.bytes);
  assert_int_equal(s.last.bytes_sent, s.bytes);
  assert_true(s.last.acked_known);
  assert_int_equal(s.last.bytes_acked, s.bytes);
  assert_int_equal(s.last.unsent_discarded, 0);
  assert_int_equal(s.last.unread_discarded, 64 * 1024);
  assert_int_equal(s.last.time_wait, 1);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_naive_loses_bytes(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_peer p = {0};
  lwt_server s = {0};
  run_case(LWT_CLOSE_NAIVE, &p, &s);
  print_message("naive: client received %zu of %zu bytes, end=%s\n", p.received, s.bytes,
                p.end_err ? "reset" : "EOF");
  /* The test discriminates: the same workload with a plain close loses data. */
  assert_true(p.received < s.bytes);
  assert_true(p.pattern_ok);
  assert_int_equal(p.end_err, ECONNRESET);
  assert_int_equal(s.last.reason, LW_REASON_NAIVE);
  assert_int_equal(s.last.rst, 1);
  assert_int_equal(s.last.unread_discarded, 64 * 1024);
  assert_true(s.last.unsent_discarded > 0);
  assert_int_equal(s.last.time_wait, 0);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_graceful_delivers_everything),
                                     cmocka_unit_test(test_naive_loses_bytes)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
