/*
 * timer.c - timers on a binary min-heap keyed by (due, seq).
 * Arm/disarm are O(log n) with no allocation once the array has grown, so 100k armed
 * timers (one idle timer per connection) cost ~1.6 MB of pointers and ~17 compares per
 * operation. Ties fire in arming order (seq), as libuv does.
 */
#include "internal.h"

#include <stdlib.h>

static int timer_less(const lw__tnode *a, const lw__tnode *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(lw__heap *h, size_t i, lw__tnode *t) {
  h->v[i] = t;
  t->heap_idx = (uint32_t)i;
}

static void sift_up(lw__heap *h, size_t i) {
  lw__tnode *t = h->v[i];
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
  lw__tnode *t = h->v[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    lw__tnode *best = t;
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

int lw__heap_push(lw__heap *h, lw__tnode *t) {
  assert(t->heap_idx == LW__TIMER_IDLE);
  if (h->n == h->cap) {
    if (h->cap >= LW__TIMER_IDLE / 2)
      return LW_ENOMEM;
    size_t cap = h->cap ? h->cap * 2 : 64;
    lw__tnode **v = realloc(h->v, cap * sizeof(*v));
    if (!v)
      return LW_ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  heap_set(h, h->n++, t);
  sift_up(h, h->n - 1);
  return 0;
}

void lw__heap_remove(lw__heap *h, lw__tnode *t) {
  size_t i = t->heap_idx;
  assert(i < h->n && h->v[i] == t);
  t->heap_idx = LW__TIMER_IDLE;
  lw__tnode *last = h->v[--h->n];
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

int lw__tnode_set(lw_loop *loop, lw__tnode *t, uint64_t due) {
  if (t->heap_idx != LW__TIMER_IDLE) {
    if (t->due == due)
      return 0;
    lw__heap_remove(&loop->timers, t);
  }
  if (!due)
    return 0;
  t->due = due;
  t->seq = loop->timer_seq++;
  return lw__heap_push(&loop->timers, t);
}

static void timer_reset(lw_loop *loop, lw_timer *t) {
  t->node.due = t->node.seq = 0;
  t->node.heap_idx = LW__TIMER_IDLE;
  t->node.kind = LW__TN_USER;
  t->loop = loop;
  t->cb = NULL;
  t->data = NULL;
  t->repeat = 0;
  t->unref = 0;
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

/* now + ms, saturating: a timeout of UINT64_MAX ("never", in effect) must not wrap to
 * a due time in the past and fire at once. A saturated due time sorts last and is
 * never reached by the 64-bit millisecond clock. */
static uint64_t due_after(uint64_t now, uint64_t ms) {
  return ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
}

int lw_timer_start(lw_timer *t, lw_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms) {
  if (!t || !cb)
    return LW_EINVAL;
  lw_loop *loop = t->loop;
  if (t->node.heap_idx != LW__TIMER_IDLE)
    lw_timer_stop(t);
  t->cb = cb;
  t->node.due = due_after(loop->now, timeout_ms);
  t->node.seq = loop->timer_seq++;
  t->repeat = repeat_ms;
  int r = lw__heap_push(&loop->timers, &t->node);
  if (r == 0) {
    loop->ntimers_armed++;
    loop->ntimers_unref_armed += t->unref;
  }
  return r;
}

void lw_timer_stop(lw_timer *t) {
  if (!t || t->node.heap_idx == LW__TIMER_IDLE)
    return;
  lw__heap_remove(&t->loop->timers, &t->node);
  t->loop->ntimers_armed--;
  t->loop->ntimers_unref_armed -= t->unref;
}

/* An unref'd timer still fires; it only does not count as alive (loop.c loop_alive). */
void lw_timer_unref(lw_timer *t) {
  if (!t || t->unref)
    return;
  t->unref = 1;
  if (t->node.heap_idx != LW__TIMER_IDLE)
    t->loop->ntimers_unref_armed++;
}

void lw_timer_ref(lw_timer *t) {
  if (!t || !t->unref)
    return;
  t->unref = 0;
  if (t->node.heap_idx != LW__TIMER_IDLE)
    t->loop->ntimers_unref_armed--;
}

void lw_timer_free(lw_timer *t) {
  if (!t)
    return;
  lw_timer_stop(t);
  t->loop->ntimers--;
  free(t);
}

LW__HANDLE_DATA_FNS(lw_timer) /* lw_timer_set_data, lw_timer_get_data */

int lw__timers_run(lw_loop *loop) {
  int ran = 0;
  lw__tnode *n;
  /* A timer re-armed with timeout 0 inside its callback gets a due time equal to now
   * and a larger seq; bounding the loop by the count at entry keeps it from starving
   * I/O. */
  size_t budget = loop->timers.n;
  while (budget-- > 0 && (n = lw__heap_min(&loop->timers)) != NULL && n->due <= loop->now) {
    lw__heap_remove(&loop->timers, n);
    ran++;
    if (n->kind == LW__TN_CONN) {
      lw__conn_timer_fire(LW__CONTAINER_OF(n, lw_conn, tnode));
      continue;
    }
    lw_timer *t = LW__CONTAINER_OF(n, lw_timer, node);
    loop->ntimers_armed--;
    loop->ntimers_unref_armed -= t->unref;
    if (t->repeat)
      lw_timer_start(t, t->cb, t->repeat, t->repeat);
    t->cb(t);
  }
  return ran;
}

int lw__timers_next_ms(lw_loop *loop) {
  lw__tnode *t = lw__heap_min(&loop->timers);
  if (!t)
    return -1;
  if (t->due <= loop->now)
    return 0;
  uint64_t d = t->due - loop->now;
  return d > INT32_MAX ? INT32_MAX : (int)d;
}
