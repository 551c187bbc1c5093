/*
 * A dead peer on an IDLE connection (issue 4): the peer's host vanishes -- nftables
 * drops everything in and out of its namespace, or its link goes down -- and sends
 * neither FIN nor RST. With dead_after_ms = 3000 the library must end the connection
 * with reason dead-peer (ETIMEDOUT) within [T, 1.5 T] of the peer's last segment
 * (Linux default: 2 h 11 min), leave no fd behind, and see it although the
 * application stopped reading (the fd stays registered for errors only).
 * Runs in two network namespaces joined by a veth pair (tests/netns.h); skips unless
 * root.
 */
#include "netns.h"

#define T 3000u

static int served(void *a) {
  void **v = a;
  lwt_server *s = v[0];
  lwn_peer *p = v[1];
  return s->write_ok == 1 && atomic_load(&p->received) >= s->bytes;
}
static int closed(void *a) { return ((lwt_server *)a)->closes >= 1; }

static void idle_dead(int link) {
  int fds = lwt_fd_count();
  lwt_server s = {0};
  s.bytes = 100;
  s.close_mode = LWT_CLOSE_NONE; /* answer, stop reading, keep the connection open */
  s.opts.dead_after_ms = T;
  lwt_server_start(&s, LWN_ADDR_A);
  lwn_peer p = {0};
  p.port = s.port;
  p.read_limit = s.bytes;
  lwn_peer_start(&p);
  void *both[2] = {&s, &p};
  lwn_run_until(s.loop, served, both, 5000);
  lwn_msleep(20); /* the peer's ACK of the answer is its last word */
  uint64_t t0 = lwt_now_ms();
  if (link)
    lwn_vanish_link();
  else
    lwn_vanish_nft();
  lwn_run_until(s.loop, closed, &s, (int)(3 * T));
  uint64_t dt = lwt_now_ms() - t0;
  lwn_peer_join(&p);
  lwt_server_stop(&s);
  print_message("dead peer, idle, %s: on_close after %llu ms (peer silent %llu ms), reason %s, "
                "os_error %s\n",
                link ? "link down" : "nft drop", (unsigned long long)dt,
                (unsigned long long)s.last.peer_silent_ms, lw_reason_name(s.last.reason),
                lw_err_name(s.last.os_error));
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.last.reason, LW_REASON_DEAD_PEER);
  assert_int_equal(s.last.os_error, LW_ETIMEDOUT);
  assert_true(s.last.peer_silent_ms >= T && s.last.peer_silent_ms <= T * 3 / 2);
  assert_true(dt >= T - 100 && dt <= T * 3 / 2);
  assert_int_equal(s.last.bytes_acked, s.bytes);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_idle_nft_drop(void **state) {
  (void)state;
  idle_dead(0);
}
static void test_idle_link_down(void **state) {
  (void)state;
  idle_dead(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_idle_nft_drop, lwn_restore),
      cmocka_unit_test_teardown(test_idle_link_down, lwn_restore)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_dead_peer");
}
