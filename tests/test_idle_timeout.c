/*
 * idle_timeout_ms: no byte read or written for N ms ends the connection with reason
 * idle-timeout -- gracefully by default (the peer reads a clean EOF), by RST with
 * idle_timeout_abort. Activity (here: writes) pushes the timeout back (the timer is
 * re-armed lazily, from the last activity). Loopback only: no namespace needed.
 */
#include "helper.h"

#include <errno.h>
#include <string.h>

#define T 1000u

static void tick_write(lw_timer *t) {
  lwt_server *s = lw_timer_get_data(t);
  if (s->conn)
    lw_conn_write_copy(s->conn, "z", 1);
}

static void idle_case(int abort_mode, int activity) {
  int fds = lwt_fd_count();
  lwt_server s = {0};
  s.bytes = 100;
  s.close_mode = LWT_CLOSE_NONE;
  s.opts.idle_timeout_ms = T;
  s.opts.idle_timeout_abort = abort_mode;
  lwt_server_start(&s, "127.0.0.1");
  lwt_peer p = {0};
  p.port = s.port; /* reads until EOF or reset */
  uint64_t t0 = lwt_now_ms();
  lwt_peer_start(&p);
  lw_timer *w = NULL;
  if (activity) {
    /* One byte every 300 ms for 1.5 s: never idle for T until then. */
    assert_int_equal(lw_timer_new(s.loop, &w), 0);
    lw_timer_set_data(w, &s);
    lw_timer_start(w, tick_write, 300, 300);
    uint64_t until = t0 + 1500;
    while (lwt_now_ms() < until && s.closes == 0)
      lw_loop_run(s.loop, LW_RUN_ONCE);
    lw_timer_free(w);
    assert_int_equal(s.closes, 0);
  }
  lwt_run_until(s.loop, NULL, &s.closes, 1, 5000);
  uint64_t dt = lwt_now_ms() - t0;
  lwt_run_until(s.loop, &p.done, NULL, 0, 5000);
  lwt_peer_join(&p);
  lwt_server_stop(&s);
  print_message("idle timeout %u ms (%s%s): on_close after %llu ms, reason %s, rst %d, peer "
                "end %s\n",
                T, abort_mode ? "abort" : "graceful", activity ? ", writes until 1.5 s" : "",
                (unsigned long long)dt, lw_reason_name(s.last.reason), s.last.rst,
                p.end_err == 0 ? "EOF" : strerror(p.end_err));
  assert_int_equal(s.closes, 1);
  assert_int_equal(s.last.reason, LW_REASON_IDLE_TIMEOUT);
  assert_int_equal(s.last.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(s.last.rst, abort_mode);
  if (abort_mode && !LWT_RST_RELIABLE)
    assert_true(p.end_err == ECONNRESET || p.end_err == 0); /* the RST is rst=1 above */
  else
    assert_int_equal(p.end_err, abort_mode ? ECONNRESET : 0);
  uint64_t lo = activity ? 1500 + T - 300 : T, hi = activity ? 1500 + T * 3 / 2 : T * 3 / 2;
  assert_true(dt >= lo && dt <= hi);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_idle_graceful(void **state) {
  (void)state;
  idle_case(0, 0);
}
static void test_idle_abort(void **state) {
  (void)state;
  idle_case(1, 0);
}
static void test_idle_activity_defers(void **state) {
  (void)state;
  idle_case(0, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_idle_graceful),
                                     cmocka_unit_test(test_idle_abort),
                                     cmocka_unit_test(test_idle_activity_defers)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
