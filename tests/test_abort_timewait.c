/*
 * lw_abort: the peer sees ECONNRESET and this side has no TIME_WAIT; a graceful active
 * close does leave TIME_WAIT here. Socket states are read with sock_diag netlink
 * (tools/sockdiag.c), not by parsing ss.
 */
#include "helper.h"
#include "sockdiag.h"

#include <errno.h>
#include <sys/socket.h>

/* Sockets in `state` whose local port is the server's and remote port the peer's. */
static int count_state(uint16_t lport, int state) {
  lw_diag_sock socks[256];
  int n = lw_diag_query(AF_INET, lport, socks, 256);
  assert_true(n >= 0);
  int hits = 0;
  for (int i = 0; i < n && i < 256; i++)
    if (socks[i].lport == lport && socks[i].state == state)
      hits++;
  return hits;
}

static void run(int mode, lwt_server *s, lwt_peer *p) {
  s->bytes = 64 * 1024;
  s->close_mode = mode;
  lwt_server_start(s, "127.0.0.1");
  p->port = s->port;
  p->delay_ms = 100;
  lwt_peer_start(p);
  lwt_run_until(s->loop, &p->done, &s->closes, 1, 5000);
  lwt_peer_join(p);
}

static void test_abort_no_time_wait(void **state) {
  (void)state;
  lwt_server s = {0};
  lwt_peer p = {0};
  run(LWT_CLOSE_ABORT, &s, &p);
  assert_int_equal(p.end_err, ECONNRESET);
  assert_int_equal(s.last.reason, LW_REASON_ABORT);
  assert_int_equal(s.last.rst, 1);
  assert_int_equal(s.last.time_wait, 0);
  /* TIME_WAIT is 6 in the kernel's numbering (include/net/tcp_states.h). */
  assert_int_equal(count_state((uint16_t)s.port, 6), 0);
  lwt_server_stop(&s);
}

static void test_graceful_leaves_time_wait(void **state) {
  (void)state;
  lwt_server s = {0};
  lwt_peer p = {0};
  run(LWT_CLOSE_GRACEFUL, &s, &p);
  assert_int_equal(p.end_err, 0);
  assert_int_equal(p.received, s.bytes);
  assert_int_equal(s.last.reason, LW_REASON_GRACEFUL);
  assert_int_equal(s.last.time_wait, 1);
  /* The report agrees with the kernel: one TIME_WAIT socket on the server's port. */
  assert_int_equal(count_state((uint16_t)s.port, 6), 1);
  lwt_server_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_abort_no_time_wait),
                                     cmocka_unit_test(test_graceful_leaves_time_wait)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
