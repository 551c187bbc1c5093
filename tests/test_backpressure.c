/* A peer that stops reading makes the queue reach the high-water mark; the drain
 * callback fires once after it resumes, and every byte arrives. */
#include "helper.h"

#include <stdlib.h>
#include <string.h>

enum { CHUNK = 64 * 1024, TOTAL = 16 * 1024 * 1024 };

typedef struct bp {
  char *buf;
  size_t queued;
  int over, drains, closes, writes_done;
  size_t max_queue;
  lw_close_info info;
} bp;
static bp st;

static void fill(lw_conn *c);

static void on_drain(lw_conn *c) {
  st.drains++;
  assert_true(lw_conn_write_queue_size(c) <= 256 * 1024 / 2);
  fill(c);
}

static void on_written(lw_conn *c, int status, void *arg) {
  (void)c;
  (void)arg;
  assert_int_equal(status, 0);
  st.writes_done++;
}

static void fill(lw_conn *c) {
  while (st.queued < TOTAL) {
    int r = lw_conn_write(c, st.buf + st.queued, CHUNK, on_written, NULL);
    assert_true(r == 0 || r == LW_ABOVE_HIGH_WATER);
    st.queued += CHUNK;
    if (lw_conn_write_queue_size(c) > st.max_queue)
      st.max_queue = lw_conn_write_queue_size(c);
    if (r == LW_ABOVE_HIGH_WATER) {
      st.over++;
      return; /* wait for the drain callback */
    }
  }
  assert_int_equal(lw_close(c, 5000), 0);
}

static void on_read(lw_conn *c, long n, const char *b) {
  (void)b;
  if (n > 0 && memchr(b, '\n', (size_t)n)) {
    lw_conn_read_stop(c);
    fill(c);
  }
}

static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  st.closes++;
  st.info = *in;
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  lw_conn_on_drain(c, on_drain);
  lw_conn_on_close(c, on_close);
  lw_conn_read_start(c, on_read);
  lw_listener_close(l);
}

static void test_backpressure(void **state) {
  (void)state;
  st = (bp){0};
  /* Pattern i % 251 must continue across chunks: a 2-chunk buffer whose offsets are
   * multiples of CHUNK works only if CHUNK % 251 == 0 -- it is not, so fill a buffer
   * long enough and index it by absolute position instead. */
  st.buf = malloc(TOTAL);
  for (size_t i = 0; i < TOTAL; i++)
    st.buf[i] = (char)(i % 251);
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_conn_options o = {.write_high_water = 256 * 1024};
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, &o, on_accept, &l), 0);
  lwt_peer p = {0};
  p.port = lw_listener_port(l);
  p.delay_ms = 300; /* stop reading long enough for the queue to fill */
  lwt_peer_start(&p);
  lwt_run_until(loop, &p.done, &st.closes, 1, 20000);
  lwt_peer_join(&p);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_true(st.over >= 1);
  assert_int_equal(st.drains, st.over); /* one drain per time the mark was reached */
  assert_int_equal(st.writes_done, TOTAL / CHUNK);
  assert_int_equal(p.received, TOTAL);
  assert_true(p.pattern_ok);
  assert_int_equal(p.end_err, 0);
  assert_int_equal(st.closes, 1);
  assert_int_equal(st.info.reason, LW_REASON_GRACEFUL);
  assert_int_equal(st.info.bytes_acked, TOTAL);
  free(st.buf);
}

/* Thousands of small writes queued in one callback, then lw_close: every byte must leave
 * and the close must end gracefully, however many sendmsg rounds the queue takes (a
 * readiness backend bounds the rounds per wakeup; what is left must not wait for an
 * event that never comes). */
static void test_many_small_writes_then_close(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lwt_server s = {0};
  lwt_peer p = {0};
  s.bytes = 5000 * 10;
  s.write_chunk = 10;
  s.close_mode = LWT_CLOSE_GRACEFUL;
  s.deadline_ms = 5000;
  lwt_server_start(&s, "127.0.0.1");
  p.port = s.port;
  lwt_peer_start(&p);
  lwt_run_until(s.loop, &p.done, &s.closes, 1, 10000);
  lwt_peer_join(&p);
  lwt_server_stop(&s);
  print_message(
      "5000 writes of 10 B, then lw_close: client got %zu/%zu, server %s, sent %llu\n",
      p.received, s.bytes, lw_reason_name(s.last.reason),
      (unsigned long long)s.last.bytes_sent);
  assert_int_equal(p.received, s.bytes);
  assert_true(p.pattern_ok);
  assert_int_equal(p.end_err, 0);
  assert_int_equal(s.last.bytes_queued, s.bytes);
  assert_int_equal(s.last.bytes_sent, s.bytes);
  assert_int_equal(s.last.rst, 0);
  assert_true(s.last.reason == LW_REASON_GRACEFUL ||
              s.last.reason == LW_REASON_PEER_CLOSED_FIRST);
  assert_int_equal(s.write_ok, 1);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_backpressure),
                                     cmocka_unit_test(test_many_small_writes_then_close)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
