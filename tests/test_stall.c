/*
 * A peer that is alive but stopped reading (zero window; its kernel answers every
 * probe, so no keepalive or user timeout ends it quickly): with stall_timeout_ms = 3000
 * the server aborts it with reason stalled within [T, 1.5 T] of the last acknowledged
 * byte -- even with dead_after_ms set (longer), which must not call it dead. A slow
 * reader that keeps making progress is NOT stalled. Two namespaces + veth (netns.h).
 */
#include "netns.h"

#define T 3000u

static int closed(void *a) { return ((lwt_server *)a)->closes >= 1; }

static void test_zero_window_stalled(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_server s = {0};
  s.bytes = 16 * 1024 * 1024; /* far more than both kernels' buffers */
  s.close_mode = LWT_CLOSE_NONE;
  s.opts.stall_timeout_ms = T;
  s.opts.dead_after_ms = 2 * T;
  lwt_server_start(&s, LWN_ADDR_A);
  lwn_peer p = {0};
  p.port = s.port;
  p.no_read = 1;
  p.rcvbuf = 64 * 1024;
  uint64_t t0 = lwt_now_ms();
  lwn_peer_start(&p);
  lwn_run_until(s.loop, closed, &s, (int)(3 * T));
  uint64_t dt = lwt_now_ms() - t0;
  lwn_peer_join(&p);
  lwt_server_stop(&s);
  print_message("zero window: on_close after %llu ms, reason %s, rst %d, sent %llu acked %llu, "
                "peer silent %llu ms\n",
                (unsigned long long)dt, lw_reason_name(s.last.reason), s.last.rst,
                (unsigned long long)s.last.bytes_sent, (unsigned long long)s.last.bytes_acked,
                (unsigned long long)s.last.peer_silent_ms);
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.last.reason, LW_REASON_STALLED);
  assert_int_equal(s.last.rst, 1);
  assert_int_equal(s.last.initiator, LW_INITIATOR_LOCAL);
  assert_true(dt >= T && dt <= T * 3 / 2);
  assert_true(s.last.bytes_acked > 0 && s.last.bytes_acked < s.bytes);
  assert_int_equal(s.write_cancelled, 1);
  assert_true(s.last.peer_silent_ms < T); /* alive: it answered the window probes */
  assert_int_equal(lwt_fd_count(), fds);
}

static int read_enough(void *a) {
  void **v = a;
  lwn_peer *p = v[0];
  lwt_server *s = v[1];
  return atomic_load(&p->received) >= 2u * 1024 * 1024 || s->closes;
}

/* ~1 MiB/s through a 64 KiB window with a 1 s stall timeout: slow, never stalled. */
static void test_slow_reader_not_stalled(void **state) {
  (void)state;
  lwt_server s = {0};
  s.bytes = 64 * 1024 * 1024;
  s.close_mode = LWT_CLOSE_NONE;
  s.opts.stall_timeout_ms = 1000;
  lwt_server_start(&s, LWN_ADDR_A);
  lwn_peer p = {0};
  p.port = s.port;
  p.rcvbuf = 64 * 1024;
  p.pace_chunk = 32 * 1024;
  p.pace_ms = 30;
  lwn_peer_start(&p);
  void *both[2] = {&p, &s};
  lwn_run_until(s.loop, read_enough, both, 10000);
  int closes_while_reading = s.closes;
  size_t got = atomic_load(&p.received);
  if (s.conn)
    lw_abort(s.conn);
  lwn_run_until(s.loop, closed, &s, 2000);
  lwn_peer_join(&p);
  lwt_server_stop(&s);
  print_message("slow reader: %zu bytes read, closed while reading: %d, then %s\n", got,
                closes_while_reading, lw_reason_name(s.last.reason));
  assert_int_equal(closes_while_reading, 0);
  assert_true(got >= 2u * 1024 * 1024);
  assert_int_equal(s.last.reason, LW_REASON_ABORT);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_zero_window_stalled),
                                     cmocka_unit_test(test_slow_reader_not_stalled)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_stall");
}
