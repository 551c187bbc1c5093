/*
 * drain.c - ending a whole loop's worth of connections (lastword.h, "Drain"): pause
 * the listeners, let the application (or the idle policy) end each connection at a
 * safe point, reset what is left at the deadline, and report once.
 *
 * One lw_timer drives it: its first run (at 0 ms, so that no callback runs inside
 * lw_loop_drain) calls the application's conn_cb for each covered connection; every
 * tick after that closes those the policy finds idle, and the tick at the deadline
 * resets the rest. The report is counted in the endgame, from each covered
 * connection's close info, and handed over when the last one has been reported.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define LW__DRAIN_DEADLINE 10000u
#define LW__DRAIN_IDLE_MIN 1000u

typedef struct lw__drain {
  lw_drain_options o;
  lw_timer *timer;
  uint64_t start, deadline;
  uint64_t live; /* covered connections not yet reported to on_close */
  int past_deadline;
  int finishing;
  lw_drain_report rep;
} lw__drain;

static void cover(lw__drain *d, lw_conn *c) {
  if (c->draining)
    return;
  c->draining = 1;
  c->drain_cb_due = 1;
  c->drain_idle = d->o.conn_cb == NULL;
  d->live++;
  d->rep.conns++;
}

/* The tick period: a few per idle window, so an idle connection is closed within
 * [idle_min, 1.25 idle_min] of its last byte; bounded so that 10k connections cost a
 * walk every 250 ms at most. */
static uint64_t tick_ms(const lw__drain *d) {
  uint64_t t = d->o.idle_min_ms / 4;
  return t < 10 ? 10 : t > 250 ? 250 : t;
}

/* A paused listener whose accept is still in flight (io_uring: the cancelled multishot
 * accept's last CQE not reaped yet) may still deliver connections the kernel accepted
 * before the pause. The drain does not end before they have come and been covered:
 * done_cb typically closes the listeners, and a connection accepted for a closed
 * listener can only be closed -- lost without a trace (neither served nor in the
 * accept queue that the report counts). Until the deadline only: a cancel the ring
 * could not take (no SQE) leaves the accept armed. */
static int accepts_in_flight(const lw_loop *loop) {
  if (!loop->backend->listener_pause_pending)
    return 0;
  const lw__list *n;
  for (n = loop->listeners.next; n != &loop->listeners; n = n->next) {
    const lw_listener *l = LW__CONTAINER_OF(n, lw_listener, node);
    if (l->paused && loop->backend->listener_pause_pending(l))
      return 1;
  }
  return 0;
}

static int may_finish(const lw_loop *loop) {
  const lw__drain *d = loop->drain;
  return d->live == 0 &&
         (d->past_deadline || loop->now >= d->deadline || !accepts_in_flight(loop));
}

static void tick(lw_timer *t);

static void finish(lw_loop *loop) {
  lw__drain *d = loop->drain;
  if (d->finishing)
    return;
  d->finishing = 1;
  lw_drain_report rep = d->rep;
  rep.elapsed_ms = loop->now - d->start;
  lw__list *n;
  for (n = loop->listeners.next; n != &loop->listeners; n = n->next) {
    int q = lw_listener_queued(LW__CONTAINER_OF(n, lw_listener, node));
    if (q > 0)
      rep.accept_queued += (uint64_t)q;
  }
  lw_drain_options o = d->o;
  lw_timer_free(d->timer);
  /* Cleared before done_cb, so that done_cb may start another drain or close all. */
  loop->drain = NULL;
  free(d);
  if (o.done_cb)
    o.done_cb(loop, &rep, o.arg);
}

typedef struct tick_ctx {
  lw__drain *d;
  int at_deadline;
} tick_ctx;

/* One covered connection, per tick: its conn_cb once, then the idle policy; at the
 * deadline, the reset. lw_loop_walk lets it close anything (conn_cb too). */
static void tick_conn(lw_conn *c, void *arg) {
  tick_ctx *x = arg;
  lw__drain *d = x->d;
  if (!c->draining)
    return; /* made by lw_conn_connect during the drain: not covered */
  if (x->at_deadline) {
    c->drain_cb_due = 0;
    if (lw__conn_drain_reset(c))
      d->rep.reset_at_deadline++;
    return;
  }
  if (c->drain_cb_due) {
    c->drain_cb_due = 0;
    if (d->o.conn_cb && lw__cs_live(&c->sm) && d->o.conn_cb(c, d->o.arg) == LW_DRAIN_WHEN_IDLE)
      c->drain_idle = 1;
  }
  if (c->drain_idle && lw__conn_drain_idle(c, d->o.idle_min_ms))
    lw__conn_drain_close(c);
}

static void tick(lw_timer *t) {
  lw_loop *loop = lw_timer_get_data(t);
  lw__drain *d = loop->drain;
  uint64_t now = loop->now;
  tick_ctx x = {d, !d->past_deadline && now >= d->deadline};
  if (x.at_deadline)
    d->past_deadline = 1;
  /* Connections are freed only in the endgame, never inside this walk: d stays valid
   * (the drain finishes from the endgame or below). */
  lw_loop_walk(loop, tick_conn, &x);
  if (may_finish(loop)) {
    finish(loop);
    return;
  }
  if (d->live == 0) {
    lw_timer_start(t, tick, 1, 0); /* the accepts in flight come with the next wait */
    return;
  }
  if (d->past_deadline) {
    lw_timer_stop(t); /* the resets end them; the last on_close finishes the drain */
    return;
  }
  uint64_t next = now + tick_ms(d);
  lw_timer_start(t, tick, (next > d->deadline ? d->deadline : next) - now, 0);
}

static void cover_conn(lw_conn *c, void *arg) { cover(arg, c); }

int lw_loop_drain(lw_loop *loop, const lw_drain_options *opts) {
  if (!loop)
    return LW_EINVAL;
  if (loop->drain)
    return LW_EALREADY;
  lw__drain *d = calloc(1, sizeof(*d));
  if (!d)
    return LW_ENOMEM;
  if (opts)
    d->o = *opts;
  if (!d->o.deadline_ms)
    d->o.deadline_ms = LW__DRAIN_DEADLINE;
  if (!d->o.idle_min_ms)
    d->o.idle_min_ms = LW__DRAIN_IDLE_MIN;
  int r = lw_timer_new(loop, &d->timer);
  if (r < 0) {
    free(d);
    return r;
  }
  lw_timer_set_data(d->timer, loop);
  loop->now = lw__now_ms();
  d->start = loop->now;
  d->deadline = d->start + d->o.deadline_ms;
  loop->drain = d;
  lw__list *n;
  for (n = loop->listeners.next; n != &loop->listeners; n = n->next)
    lw_listener_pause(LW__CONTAINER_OF(n, lw_listener, node));
  lw_loop_walk(loop, cover_conn, d);
  lw_timer_start(d->timer, tick, 0, 0);
  return 0;
}

int lw_loop_draining(const lw_loop *loop) { return loop && loop->drain != NULL; }

void lw__drain_accepted(lw_loop *loop, lw_conn *c) {
  lw__drain *d = loop->drain;
  if (d->past_deadline) {
    cover(d, c);
    c->drain_cb_due = 0;
    if (lw__conn_drain_reset(c))
      d->rep.reset_at_deadline++;
    return;
  }
  cover(d, c); /* its conn_cb / idle check at the next tick */
}

void lw__drain_conn_ended(lw_loop *loop, const lw_close_info *in) {
  lw__drain *d = loop->drain;
  if (!d)
    return; /* covered by a drain that already finished: cannot happen (live > 0) */
  assert(d->live > 0);
  d->live--;
  if ((unsigned)in->reason < LW_REASON__COUNT)
    d->rep.by_reason[in->reason]++;
  if (in->rst)
    d->rep.reset++;
  d->rep.bytes_acked += in->bytes_acked;
  d->rep.unsent_discarded += in->unsent_discarded;
  d->rep.unread_discarded += in->unread_discarded;
}

void lw__drain_check(lw_loop *loop) {
  if (!loop->drain || loop->drain->live != 0)
    return;
  if (may_finish(loop))
    finish(loop);
  else
    lw_timer_start(loop->drain->timer, tick, 1, 0); /* accepts in flight: see above */
}
