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

/* The server of every case here: answers 100 bytes, stops reading, keeps the
 * connection open, and asks the kernel to declare the peer dead after T. */
static void quiet_server_start(lwt_server *s) {
  memset(s, 0, sizeof(*s));
  s->bytes = 100;
  s->close_mode = LWT_CLOSE_NONE;
  s->opts.dead_after_ms = T;
  lwt_server_start(s, LWN_ADDR_A);
}

static void idle_dead(int link) {
  int fds = lwt_fd_count();
  lwt_server s;
  quiet_server_start(&s);
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

/* The peer half-closes, then vanishes, while the application is not reading (the
 * header's promise holds "whether or not the application is reading"): the peer asks, reads the
 * answer, sends its FIN (shutdown(SHUT_WR), as a client that has said all it will) and
 * its host then drops everything. Our side sits in CLOSE_WAIT with the FIN unread;
 * keepalive still probes there and TCP_USER_TIMEOUT ends it with ETIMEDOUT, which the
 * errors-only watch must hear. */
static int finned(void *a) { return atomic_load(&((lwn_peer *)a)->finned); }

static void test_halfclosed_nft_drop(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_server s;
  quiet_server_start(&s);
  lwn_peer p = {0};
  p.port = s.port;
  p.read_limit = s.bytes;
  p.shut_at_limit = 1; /* reads the answer, then its FIN */
  lwn_peer_start(&p);
  lwn_run_until(s.loop, finned, &p, 5000);
  /* The FIN reaches our side and is acknowledged; the loop sees whatever it will. */
  lw_timer *tick;
  assert_int_equal(lw_timer_new(s.loop, &tick), 0);
  lw_timer_start(tick, lwn_noop, 2, 2); /* wakes the loop to look at the clock */
  uint64_t until = lwt_now_ms() + 100;
  while (lwt_now_ms() < until)
    lw_loop_run(s.loop, LW_RUN_ONCE);
  assert_int_equal(s.closes, 0); /* the FIN is unread: nothing ended yet */
  uint64_t t0 = lwt_now_ms();
  lwn_vanish_nft();
  uint64_t end = t0 + 3 * T;
  while (s.closes < 1 && lwt_now_ms() < end)
    lw_loop_run(s.loop, LW_RUN_ONCE);
  lw_timer_free(tick);
  uint64_t dt = lwt_now_ms() - t0;
  print_message("dead peer after its FIN, not reading (%s): on_close %s after %llu ms, "
                "reason %s, os_error %s\n",
                lwt_backend(), s.closes ? "came" : "NEVER came", (unsigned long long)dt,
                lw_reason_name(s.last.reason), lw_err_name(s.last.os_error));
  int closes = s.closes;
  if (!closes && s.conn)
    lw_abort(s.conn); /* lets the server stop cleanly on failure */
  lwn_peer_join(&p);
  lwt_server_stop(&s);
  assert_int_equal(closes, 1);
  assert_int_equal(s.last.reason, LW_REASON_DEAD_PEER);
  assert_int_equal(s.last.os_error, LW_ETIMEDOUT);
  /* The peer's last segment (its FIN) came up to ~100 ms before the vanish. */
  assert_true(dt >= T - 400 && dt <= T * 3 / 2);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_idle_nft_drop, lwn_restore),
      cmocka_unit_test_teardown(test_idle_link_down, lwn_restore),
      cmocka_unit_test_teardown(test_halfclosed_nft_drop, lwn_restore)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_dead_peer");
}
