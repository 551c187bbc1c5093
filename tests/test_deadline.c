/*
 * Peers that do not finish: lw_close must escalate to RST at its deadline (±20%),
 * say why, and count what was not delivered.
 */
#include "helper.h"

#include <errno.h>

/* A peer that reads one byte, then neither reads nor closes. */
static void test_never_reads_never_closes(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_peer p = {0};
  lwt_server s = {0};
  s.bytes = 16 * 1024 * 1024; /* more than the two kernel buffers hold */
  s.deadline_ms = 1000;
  lwt_server_start(&s, "127.0.0.1");
  p.port = s.port;
  p.read_limit = 1;
  p.hold_ms = 2500;
  lwt_peer_start(&p);
  lwt_run_until(s.loop, NULL, &s.closes, 1, 10000);
  lwt_run_until(s.loop, &p.done, NULL, 0, 10000);
  lwt_peer_join(&p);
  lwt_server_stop(&s);
  print_message("deadline 1000 ms: closed after %llu ms, sent %llu acked %llu unsent %llu\n",
                (unsigned long long)s.last.close_ms, (unsigned long long)s.last.bytes_sent,
                (unsigned long long)s.last.bytes_acked,
                (unsigned long long)s.last.unsent_discarded);
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.last.reason, LW_REASON_DEADLINE);
  assert_int_equal(s.last.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(s.last.rst, 1);
  assert_true(s.last.close_ms >= 800 && s.last.close_ms <= 1200);
  assert_true(s.last.bytes_sent < s.bytes); /* the queue never drained */
  assert_int_equal(s.write_cancelled, 1);   /* its write callback said so */
  assert_int_equal(s.write_ok, 0);
  assert_true(s.last.unsent_discarded > 0);
  /* The peer's kernel acknowledged what its receive buffer took: some, not all. */
  assert_true(s.last.acked_known);
  assert_true(s.last.bytes_acked >= 1 && s.last.bytes_acked < s.last.bytes_sent);
  assert_int_equal(s.last.unsent_discarded, s.bytes - s.last.bytes_acked);
  assert_int_equal(s.last.time_wait, 0);
  assert_int_equal(lwt_fd_count(), fds);
}

/* A peer that reads everything but never sends FIN: every byte is acknowledged (the
 * delivery confirmation holds), and the connection is still reset at the deadline. */
static void test_reads_all_never_fins(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_peer p = {0};
  lwt_server s = {0};
  s.bytes = 1024 * 1024;
  s.deadline_ms = 800;
  lwt_server_start(&s, "127.0.0.1");
  p.port = s.port;
  p.read_limit = s.bytes;
  p.hold_ms = 1500;
  lwt_peer_start(&p);
  lwt_run_until(s.loop, NULL, &s.closes, 1, 10000);
  lwt_run_until(s.loop, &p.done, NULL, 0, 10000);
  lwt_peer_join(&p);
  lwt_server_stop(&s);
  assert_int_equal(p.received, s.bytes);
  assert_true(p.pattern_ok);
  assert_int_equal(s.last.reason, LW_REASON_DEADLINE);
  assert_int_equal(s.last.rst, 1);
  assert_true(s.last.close_ms >= 640 && s.last.close_ms <= 960);
  assert_int_equal(s.last.bytes_sent, s.bytes);
  if (LWT_ACKS_KNOWN) { /* the peer read all and holds its FIN: FIN_WAIT_2 */
    assert_true(s.last.acked_known);
    assert_int_equal(s.last.bytes_acked, s.last.bytes_sent);
  }
  assert_int_equal(s.last.unsent_discarded, 0);
  assert_int_equal(s.write_ok, 1);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_never_reads_never_closes),
                                     cmocka_unit_test(test_reads_all_never_fins)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
