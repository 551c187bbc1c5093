/*
 * A dead peer during the final ACK wait (issue 14, item 1): both FINs done, 512 KiB of
 * our answer unacknowledged (the peer never reads), then the peer's host vanishes (nft
 * drop in its namespace). With dead_after_ms = 3000 the kernel gives up after ~T of
 * unanswered zero-window probes (TCP_USER_TIMEOUT) and keeps ETIMEDOUT in sk_err; the
 * ACK poll must see it: reason dead-peer within [T, 2T] of the vanishing -- before the
 * fix, `deadline` at the 10 s close deadline.
 */
#include "netns.h"
#include "ack_wait.h"

#define T 3000u

static int peer_in(void *a) { return atomic_load(&((aw_peer *)a)->connected); }
static int closed(void *a) { return ((aw_srv *)a)->closes >= 1; }

static void dead_in_ack_wait(void **st) {
  (void)st;
  int fds = lwt_fd_count();
  static aw_srv s;
  memset(&s, 0, sizeof(s));
  s.deadline_ms = 10000;
  lw_conn_options o = {0};
  o.dead_after_ms = T;
  aw_start(&s, LWN_ADDR_A, &o);
  aw_peer p = {.host = LWN_ADDR_A, .nsfd = lwn_fd_b, .hold_ms = 12000, .rst = 0};
  p.port = lw_listener_port(s.l);
  aw_peer_start(&p);
  lwn_run_until(s.loop, peer_in, &p, 5000);
  /* Let the server answer, send its FIN and read the peer's: the ACK wait. */
  uint64_t settle = lwt_now_ms() + 300;
  while (lwt_now_ms() < settle)
    lw_loop_run(s.loop, LW_RUN_NOWAIT);
  assert_int_equal(s.closes, 0);
  lwn_vanish_nft();
  uint64_t t0 = lwt_now_ms();
  lwn_run_until(s.loop, closed, &s, (int)(3 * T));
  uint64_t dt = s.t_close - t0;
  pthread_join(p.thread, NULL);
  aw_stop(&s);
  print_message("dead peer during the ACK wait: %s (os_error %s) %llu ms after it vanished, "
                "peer silent %llu ms; sent %llu acked %llu\n",
                lw_reason_name(s.last.reason), lw_err_name(s.last.os_error),
                (unsigned long long)dt, (unsigned long long)s.last.peer_silent_ms,
                (unsigned long long)s.last.bytes_sent, (unsigned long long)s.last.bytes_acked);
  assert_int_equal(s.last.reason, LW_REASON_DEAD_PEER);
  assert_int_equal(s.last.os_error, LW_ETIMEDOUT);
  assert_true(dt >= T - 500 && dt <= 2 * T);
  assert_true(s.last.bytes_acked < AW_RESP);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test_teardown(dead_in_ack_wait, lwn_restore)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_ack_wait_dead");
}
