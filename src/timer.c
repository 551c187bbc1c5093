/*
 * timer.c - timers on a binary min-heap keyed by (due, seq).
 * Arm/disarm are O(log n) with no allocation once the array has grown, so 100k armed
 * timers (one idle timer per connection) cost ~1.6 MB of pointers and ~17 compares per
 * operation. Ties fire in arming order (seq), as libuv does.
 */
#include "internal.h"

#include <stdlib.h>

static int timer_less(const lw_timer *a, const lw_timer *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(lw__heap *h, size_t i, lw_timer *t) {
  h->v[i] = t;
  t->heap_idx = i;
}

static void sift_up(lw__heap *h, size_t i) {
  lw_timer *t = h->v[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!timer_less(t, h->v[p]))
      break;
    heap_set(h, i, h->v[p]);
    i = p;
  }
  heap_set(h, i, t);
}

static void sift_down(lw__heap *h, size_t i) {
  lw_timer *t = h->v[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    lw_timer *best = t;
    if (l < h->n && timer_less(h->v[l], best)) {
      m = l;
      best = h->v[l];
    }
    if (r < h->n && timer_less(h->v[r], best)) {
      m = r;
      best = h->v[r];
    }
    if (m == i)
      break;
    heap_set(h, i, best);
    i = m;
  }
  heap_set(h, i, t);
}

int lw__heap_push(lw__heap *h, lw_timer *t) {
  assert(t->heap_idx == LW__TIMER_IDLE);
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    lw_timer **v = realloc(h->v, cap * sizeof(*v));
    if (!v)
      return LW_ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  heap_set(h, h->n++, t);
  sift_up(h, h->n - 1);
  return 0;
}

void lw__heap_remove(lw__heap *h, lw_timer *t) {
  size_t i = t->heap_idx;
  assert(i < h->n && h->v[i] == t);
  t->heap_idx = LW__TIMER_IDLE;
  lw_timer *last = h->v[--h->n];
  if (i == h->n)
    return;
  heap_set(h, i, last);
  if (i > 0 && timer_less(last, h->v[(i - 1) / 2]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

void lw__heap_free(lw__heap *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}

static void timer_reset(lw_loop *loop, lw_timer *t) {
  t->loop = loop;
  t->cb = NULL;
  t->data = NULL;
  t->due = t->repeat = t->seq = 0;
  t->heap_idx = LW__TIMER_IDLE;
  t->internal = 0;
  t->freed = 0;
}

void lw__timer_init_internal(lw_loop *loop, lw_timer *t, lw_timer_cb cb, void *data) {
  timer_reset(loop, t);
  t->cb = cb;
  t->data = data;
  t->internal = 1;
}

int lw_timer_new(lw_loop *loop, lw_timer **out) {
  if (!loop || !out)
    return LW_EINVAL;
  lw_timer *t = malloc(sizeof(*t));
  if (!t)
    return LW_ENOMEM;
  timer_reset(loop, t);
  loop->ntimers++;
  *out = t;
  return 0;
}

int lw_timer_start(lw_timer *t, lw_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms) {
  if (!t || !cb)
    return LW_EINVAL;
  lw_loop *loop = t->loop;
  if (t->heap_idx != LW__TIMER_IDLE)
    lw_timer_stop(t);
  t->cb = cb;
  t->due = loop->now + timeout_ms;
  t->repeat = repeat_ms;
  t->seq = loop->timer_seq++;
  int r = lw__heap_push(&loop->timers, t);
  if (r == 0 && !t->internal)
    loop->ntimers_armed++;
  return r;
}

void lw_timer_stop(lw_timer *t) {
  if (!t || t->heap_idx == LW__TIMER_IDLE)
    return;
  lw__heap_remove(&t->loop->timers, t);
  if (!t->internal)
    t->loop->ntimers_armed--;
}

void lw_timer_free(lw_timer *t) {
  if (!t)
    return;
  assert(!t->internal);
  lw_timer_stop(t);
  t->loop->ntimers--;
  free(t);
}

void lw_timer_set_data(lw_timer *t, void *data) { t->data = data; }
void *lw_timer_get_data(const lw_timer *t) { return t->data; }

int lw__timers_run(lw_loop *loop) {
  int ran = 0;
  lw_timer *t;
  /* A timer re-armed with timeout 0 inside its callback gets a due time equal to now
   * and a larger seq; bounding the loop by the count at entry keeps it from starving
   * I/O. */
  size_t budget = loop->timers.n;
  while (budget-- > 0 && (t = lw__heap_min(&loop->timers)) != NULL && t->due <= loop->now) {
    lw_timer_stop(t);
    if (t->repeat)
      lw_timer_start(t, t->cb, t->repeat, t->repeat);
    ran++;
    t->cb(t);
  }
  return ran;
}

int lw__timers_next_ms(lw_loop *loop) {
  lw_timer *t = lw__heap_min(&loop->timers);
  if (!t)
    return -1;
  if (t->due <= loop->now)
    return 0;
  uint64_t d = t->due - loop->now;
  return d > INT32_MAX ? INT32_MAX : (int)d;
}
