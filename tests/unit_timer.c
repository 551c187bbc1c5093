/* The timer heap: order, ties, stop/restart, repeat, free inside a callback, 100k. */
#include "helper.h"
#include "internal.h"

#include <stdlib.h>

static int order[64];
static int norder;

static void record_cb(lw_timer *t) { order[norder++] = (int)(intptr_t)lw_timer_get_data(t); }

static void test_order_and_ties(void **state) {
  (void)state;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_timer *t[5];
  static const int due[5] = {30, 10, 20, 10, 0};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(lw_timer_new(loop, &t[i]), 0);
    lw_timer_set_data(t[i], (void *)(intptr_t)i);
    assert_int_equal(lw_timer_start(t[i], record_cb, (uint64_t)due[i], 0), 0);
  }
  lw_timer_stop(t[2]); /* stopped: never fires */
  norder = 0;
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(norder, 4);
  assert_int_equal(order[0], 4);
  assert_int_equal(order[1], 1); /* ties fire in arming order */
  assert_int_equal(order[2], 3);
  assert_int_equal(order[3], 0);
  assert_int_equal(lw_loop_close(loop), LW_EBUSY); /* timers still allocated */
  for (int i = 0; i < 5; i++)
    lw_timer_free(t[i]);
  assert_int_equal(lw_loop_close(loop), 0);
}

static int reps;
static void repeat_cb(lw_timer *t) {
  if (++reps == 3)
    lw_timer_free(t); /* freeing itself from inside its callback is allowed */
}

static void test_repeat_and_self_free(void **state) {
  (void)state;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_timer *t;
  assert_int_equal(lw_timer_new(loop, &t), 0);
  reps = 0;
  assert_int_equal(lw_timer_start(t, repeat_cb, 1, 1), 0);
  uint64_t t0 = lwt_now_ms();
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(reps, 3);
  assert_true(lwt_now_ms() - t0 < 1000);
  assert_int_equal(lw_loop_close(loop), 0);
}

/* The heap directly: random arm/disarm against a sorted check, and 100k timers. */
static void test_heap_random(void **state) {
  (void)state;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  enum { N = 100000 };
  lw__tnode *t = calloc(N, sizeof(*t));
  srand(7);
  for (int i = 0; i < N; i++) {
    t[i].heap_idx = LW__TIMER_IDLE;
    t[i].due = (uint64_t)(rand() % 100000);
    t[i].seq = (uint64_t)i;
    assert_int_equal(lw__heap_push(&loop->timers, &t[i]), 0);
  }
  for (int i = 0; i < N; i += 3)
    lw__heap_remove(&loop->timers, &t[i]);
  uint64_t last_due = 0, last_seq = 0;
  size_t popped = 0;
  lw__tnode *m;
  while ((m = lw__heap_min(&loop->timers)) != NULL) {
    assert_true(m->due > last_due || (m->due == last_due && m->seq >= last_seq) || popped == 0);
    last_due = m->due;
    last_seq = m->seq;
    lw__heap_remove(&loop->timers, m);
    popped++;
  }
  assert_int_equal(popped, N - (N + 2) / 3);
  free(t);
  assert_int_equal(lw_loop_close(loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_order_and_ties),
                                     cmocka_unit_test(test_repeat_and_self_free),
                                     cmocka_unit_test(test_heap_random)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
