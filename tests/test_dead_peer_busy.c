/*
 * A dead peer with UNACKNOWLEDGED DATA IN FLIGHT (issue 4): the server answers the
 * first part of a response (acknowledged), the peer's host vanishes (nftables drop, or
 * link down), and the server goes on writing: nothing more is ever acknowledged.
 * Keepalive never fires on a busy connection and Linux retransmits for ~15 min by
 * default (tcp_retries2); with dead_after_ms = 3000 TCP_USER_TIMEOUT must end it with
 * reason dead-peer (ETIMEDOUT) within [T, 1.5 T] of the first unacknowledged byte, the
 * writes cancelled, the acknowledged count exact, no fd left behind.
 */
#include "netns.h"

#define T 3000u
#define PART2 (4u * 1024u * 1024u)

static int served(void *a) {
  void **v = a;
  lwt_server *s = v[0];
  lwn_peer *p = v[1];
  return s->write_ok == 1 && atomic_load(&p->received) >= s->bytes;
}
static int closed(void *a) { return ((lwt_server *)a)->closes >= 1; }

static void busy_dead(int link) {
  int fds = lwt_fd_count();
  lwt_server s = {0};
  s.bytes = 64 * 1024;
  s.close_mode = LWT_CLOSE_NONE;
  s.opts.dead_after_ms = T;
  lwt_server_start(&s, LWN_ADDR_A);
  lwn_peer p = {0};
  p.port = s.port; /* reads everything, until told to stop */
  lwn_peer_start(&p);
  void *both[2] = {&s, &p};
  lwn_run_until(s.loop, served, both, 5000);
  lwn_msleep(20);
  if (link)
    lwn_vanish_link();
  else
    lwn_vanish_nft();
  /* The rest of the response: every byte of it stays unacknowledged. */
  char *part2 = malloc(PART2);
  memset(part2, 'y', PART2);
  assert_non_null(s.conn);
  uint64_t t0 = lwt_now_ms();
  int r = lw_conn_write_copy(s.conn, part2, PART2);
  assert_true(r == 0 || r == LW_ABOVE_HIGH_WATER);
  free(part2);
  lwn_run_until(s.loop, closed, &s, (int)(3 * T));
  uint64_t dt = lwt_now_ms() - t0;
  lwn_peer_join(&p);
  lwt_server_stop(&s);
  print_message("dead peer, data in flight, %s: on_close %llu ms after the write "
                "(peer silent %llu ms), reason %s, os_error %s, sent %llu acked %llu\n",
                link ? "link down" : "nft drop", (unsigned long long)dt,
                (unsigned long long)s.last.peer_silent_ms, lw_reason_name(s.last.reason),
                lw_err_name(s.last.os_error), (unsigned long long)s.last.bytes_sent,
                (unsigned long long)s.last.bytes_acked);
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.last.reason, LW_REASON_DEAD_PEER);
  assert_int_equal(s.last.os_error, LW_ETIMEDOUT);
  assert_true(dt >= T && dt <= T * 3 / 2);
  assert_true(s.last.peer_silent_ms >= T);
  assert_true(s.last.acked_known);
  assert_int_equal(s.last.bytes_acked, s.bytes); /* the first part, not a byte more */
  assert_int_equal(s.last.unsent_discarded, PART2);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_busy_nft_drop(void **state) {
  (void)state;
  busy_dead(0);
}
static void test_busy_link_down(void **state) {
  (void)state;
  busy_dead(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_busy_nft_drop, lwn_restore),
      cmocka_unit_test_teardown(test_busy_link_down, lwn_restore)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_dead_peer_busy");
}
