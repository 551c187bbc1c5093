/*
 * conn.c - a TCP connection: write queue, reads, and the driver that carries out the
 * close state machine's actions (close_sm.c decides; this file does the syscalls).
 *
 * Order of a close, and why (cf. nginx ngx_close_connection, libuv uv__stream_destroy):
 *   1. snapshot what the kernel knows (TCP_INFO, SIOCOUTQ, SIOCINQ) while the fd exists;
 *   2. detach from the backend (so no event for this fd is acted on any more);
 *   3. SO_LINGER{1,0} if resetting, then close(fd);
 *   4. cancel the queued writes (their callbacks run deferred, status LW_ECANCELED);
 *   5. once nothing is in flight, on_close in the loop's endgame, then free.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LW__DEFAULT_HWM (1024u * 1024u)
#define LW__DEFAULT_READ (64u * 1024u)
#define LW__DEFAULT_DEADLINE 30000u
#define LW__ACK_POLL_MAX_MS 200u
/* LINGER: the first check whether everything we wrote is acknowledged (the linger
 * bounds start then), backing off to LW__ACK_POLL_MAX_MS. */
#define LW__LINGER_POLL_FIRST_MS 10u

/* An idle connection costs this struct and nothing else (bench/: RSS per idle
 * connection, target <= libuv's). Growing it past a 256-byte malloc chunk is a choice
 * to make knowingly, not by accident. */
#if defined(__linux__) && defined(__x86_64__)
_Static_assert(sizeof(struct lw_conn) <= 248, "lw_conn outgrew its 256-byte malloc chunk");
#endif

static void conn_apply(lw_conn *c, unsigned acts);

static int conn_event(lw_conn *c, lw__cs_event ev, int arg) {
  int result = 0;
  unsigned acts = lw__cs_step(&c->sm, ev, arg, &result);
  if (acts)
    conn_apply(c, acts);
  return result;
}

static void conn_update(lw_conn *c) {
  if (!c->detached)
    c->loop->backend->conn_update(c);
}

/* ---------------------------------------------------------------------------------
 * Creation
 * --------------------------------------------------------------------------------- */
static int ack_poll_step(lw_conn *c, uint64_t *next);
static int linger_step(lw_conn *c, uint64_t *next);
static void live_fire(lw_conn *c);
static void idle_start(lw_conn *c);
/* Bounds (write_queue_max, linger_discard_max, first_byte_timeout_ms): end of file. */
static void first_byte_start(lw_conn *c);
static int first_byte_check(lw_conn *c, uint64_t *next);
static void discard_check(lw_conn *c);
static int queue_full(lw_conn *c, size_t len);

/* dead_after_ms -> keepalive + TCP_USER_TIMEOUT, with the arithmetic documented in
 * lastword.h; the expert knobs override each derived value. */
static void liveness_setup(lw_conn *c) {
  const lw_conn_options *o = c->opts;
  unsigned idle = 0, intvl = 0, cnt = 0, ut = 0;
  if (o->dead_after_ms) {
    unsigned t = o->dead_after_ms / 1000u;
    idle = t / 2 ? t / 2 : 1;
    unsigned rest = t > idle ? t - idle : 1;
    intvl = (rest + 8) / 9;
    cnt = rest / intvl;
    ut = o->dead_after_ms;
  }
  if (o->keepalive_idle_ms)
    idle = (o->keepalive_idle_ms + 999u) / 1000u;
  if (o->keepalive_intvl_ms)
    intvl = (o->keepalive_intvl_ms + 999u) / 1000u;
  if (o->keepalive_cnt)
    cnt = o->keepalive_cnt;
  if (o->user_timeout_ms)
    ut = o->user_timeout_ms;
  int keepalive = idle || intvl || cnt;
  if (!keepalive && !ut)
    return;
  lw__sock_set_liveness(c->io.fd, keepalive, idle, intvl, cnt, ut);
  c->watch_errors = 1;
}

/* The options with the defaults filled in, shared by reference (lw__opts). */
static void bounds_defaults(lw_conn_options *o);
lw__opts *lw__opts_new(const lw_conn_options *user) {
  lw__opts *b = calloc(1, sizeof(*b));
  if (!b)
    return NULL;
  if (user)
    b->o = *user;
  lw_conn_options *o = &b->o;
  if (!o->write_high_water)
    o->write_high_water = LW__DEFAULT_HWM;
  if (!o->read_size || o->read_size > 1024 * 1024)
    o->read_size = o->read_size ? 1024 * 1024 : LW__DEFAULT_READ;
  if (!o->close_deadline_ms)
    o->close_deadline_ms = LW__DEFAULT_DEADLINE;
  bounds_defaults(o);
  b->refs = 1;
  return b;
}

void lw__opts_unref(lw__opts *o) {
  assert(o->refs > 0);
  if (--o->refs == 0)
    free(o);
}

/* Input a completion backend holds for a connection whose reading is stopped (the rule
 * at lw__backend.held_input): unread input, as the kernel's queue is. */
static size_t held_input(const lw_conn *c, int *fin) {
  int dummy = 0;
  if (!fin)
    fin = &dummy;
  *fin = 0;
  return c->loop->backend->held_input && !c->detached ? c->loop->backend->held_input(c, fin)
                                                      : 0;
}

/* The peer's FIN has arrived but has not been read: still in the kernel (CLOSE_WAIT,
 * POLLRDHUP), or held by a completion backend. */
static int peer_fin_waiting(const lw_conn *c) {
  int fin = 0;
  (void)held_input(c, &fin);
  return fin || lw__sock_peer_fin_queued(c->io.fd);
}

void lw__conn_deliver_due(lw_conn *c) {
  if (c->deliver_due || c->detached)
    return;
  c->deliver_due = 1;
  lw__loop_pending_add(c);
}

int lw__conn_read_late(lw_conn *c, size_t n, int held, size_t *inq_left) {
  assert(c->detached);
  size_t counted = held ? n : LW__MIN(n, *inq_left);
  if (!held)
    *inq_left -= counted;
  c->unread_discarded += n - counted;
  if (n == 0 || c->sm.reason != LW_REASON_NAIVE || c->sm.rst)
    return 0;
  c->rst_seen = 1;
  return 1;
}

static lw__opts *conn_opts(const lw_conn *c) { return LW__CONTAINER_OF(c->opts, lw__opts, o); }

/* Takes a reference on opts. */
static lw_conn *conn_new(lw_loop *loop, int fd, lw__opts *opts) {
  lw_conn *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->loop = loop;
  c->io.fd = fd;
  c->io.kind = LW__IO_CONN;
  c->opts = &lw__opts_ref(opts)->o;
  c->read_size = (uint32_t)c->opts->read_size;
  c->deadline_ms = c->opts->close_deadline_ms;
  lw__cs_init(&c->sm, c->opts->allow_half_close);
  lw__list_init(&c->wq);
  lw__list_init(&c->wdone);
  lw__list_init(&c->node);
  c->tnode.heap_idx = LW__TIMER_IDLE;
  c->tnode.kind = LW__TN_CONN;
  c->u.live.last_io = loop->now;
  if (c->opts->nodelay)
    lw__sock_set_nodelay(fd, 1);
  liveness_setup(c);
  if (lw__loop_conn_add(c) < 0) {
    lw__opts_unref(opts);
    free(c);
    return NULL;
  }
  loop->nconns++;
  return c;
}

/* Undoes conn_new for a connection that never reached the application. */
static void conn_unmake(lw_conn *c) {
  lw__loop_conn_remove(c);
  c->loop->nconns--;
  lw__opts_unref(conn_opts(c));
  free(c);
}

static void conn_free(lw_conn *c) {
  assert(c->detached);
  assert(lw__list_empty(&c->wq) && lw__list_empty(&c->wdone));
  assert(c->tnode.heap_idx == LW__TIMER_IDLE);
  if (c->loop->backend->conn_free)
    c->loop->backend->conn_free(c);
  conn_unmake(c);
}

/* Called by listener.c for each accepted fd. */
lw_conn *lw__conn_accepted(lw_loop *loop, int fd, lw__opts *opts, int *err) {
  lw_conn *c = conn_new(loop, fd, opts);
  if (!c) {
    *err = LW_ENOMEM;
    return NULL;
  }
  int r = loop->backend->conn_open(c);
  if (r < 0) {
    conn_unmake(c);
    *err = r;
    return NULL;
  }
  c->established = 1;
  idle_start(c);
  first_byte_start(c);
  return c;
}

/* Called by listener.c once the accept callback has returned. A connection that is to
 * be watched for errors (liveness options, the first-byte wait) and that the callback
 * did not start reading is watched from here on; one it started reading needs no
 * watch -- the receive carries the errors -- and is left as it is (no-op once closed). */
void lw__conn_accept_cb_done(lw_conn *c) {
  if (lw__conn_wants_errors(c))
    conn_update(c);
}

int lw_conn_connect(lw_loop *loop, const char *host, int port, const lw_conn_options *opts,
                    lw_connect_cb cb, lw_conn **out) {
  if (!loop || !host || !out)
    return LW_EINVAL;
  int fd = -1;
  int r = lw__sock_connect_start(host, port, &fd);
  if (r < 0)
    return r;
  lw__opts *o = lw__opts_new(opts);
  lw_conn *c = o ? conn_new(loop, fd, o) : NULL;
  if (o)
    lw__opts_unref(o); /* the conn holds its own reference */
  if (!c) {
    lw__sock_close(fd);
    return LW_ENOMEM;
  }
  c->connecting = 1;
  c->active_open = 1;
  c->connect_cb = cb;
  r = loop->backend->conn_open(c);
  if (r < 0) {
    conn_unmake(c);
    lw__sock_close(fd);
    return r;
  }
  conn_update(c);
  *out = c;
  return 0;
}

/* ---------------------------------------------------------------------------------
 * Accessors
 * --------------------------------------------------------------------------------- */
void lw_conn_set_data(lw_conn *c, void *data) { c->data = data; }
void *lw_conn_get_data(const lw_conn *c) { return c->data; }
lw_loop *lw_conn_loop(const lw_conn *c) { return c->loop; }
void lw_conn_on_close(lw_conn *c, lw_close_cb cb) { c->close_cb = cb; }
void lw_conn_on_drain(lw_conn *c, lw_drain_cb cb) { c->drain_cb = cb; }
size_t lw_conn_write_queue_size(const lw_conn *c) { return c->wq_bytes; }
int lw_conn_fd(const lw_conn *c) { return c->detached ? -1 : c->io.fd; }

int lw__conn_wants_read(const lw_conn *c) {
  if (c->detached || c->connecting || c->eof_seen)
    return 0;
  return c->discarding || (c->reading && lw__cs_delivers_input(&c->sm));
}

int lw__conn_wants_write(const lw_conn *c) {
  return !c->detached && !c->connecting && !lw__list_empty(&c->wq);
}

int lw__conn_last_before_fin(const lw_conn *c, lw__iov *iov, int *n) {
  if (c->sm.state != LW__CS_FLUSHING && c->sm.state != LW__CS_SHUT_PENDING)
    return 0;
  size_t total = 0;
  for (int i = 0; i < *n; i++)
    total += iov[i].iov_len;
  if (total != c->wq_bytes)
    return 0;
  if (total <= LW__FIN_TAIL)
    return 1;
  /* Everything but the tail now, pushed as usual; the tail in the next send. */
  size_t keep = total - LW__FIN_TAIL, acc = 0;
  for (int i = 0; i < *n; i++) {
    if (acc + iov[i].iov_len >= keep) {
      iov[i].iov_len = keep - acc;
      *n = i + 1;
      break;
    }
    acc += iov[i].iov_len;
  }
  return 0;
}

/* Liveness options on, or the first-byte timeout pending: a peer's reset (or its TCP
 * giving up) must end the connection even while nothing reads. For the first-byte wait
 * this is what hears a reset where the error is not kept for the timeout's own check
 * (Wine, nothing pending: after our lw_shutdown a FIN and an RST look alike there). */
int lw__conn_wants_errors(const lw_conn *c) {
  int first_byte = !c->close_begun && c->t0.first_byte_due != 0;
  return (c->watch_errors || first_byte) && !c->detached && !c->connecting &&
         lw__cs_live(&c->sm);
}

/* ---------------------------------------------------------------------------------
 * Liveness: the idle and stall timeouts share one timer per connection, re-armed
 * lazily: reads and writes only store loop->now in last_io; the timer, when it fires,
 * compares and re-arms for the remaining time. The stall clock runs only while output
 * is pending and samples the peer's progress (bytes_sent - SIOCOUTQ) every N/4.
 * --------------------------------------------------------------------------------- */
static uint64_t stall_period(const lw_conn *c) {
  uint64_t p = c->opts->stall_timeout_ms / 4u;
  return p ? p : 1;
}

/* The idle timeout is the application's: it stops once a close has begun. */
static int idle_applies(const lw_conn *c) {
  return c->opts->idle_timeout_ms && !c->connecting && !c->detached &&
         (c->sm.state == LW__CS_OPEN || c->sm.state == LW__CS_SHUT_PENDING ||
          c->sm.state == LW__CS_HALF_LOCAL || c->sm.state == LW__CS_HALF_PEER);
}

static uint64_t sat_u32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : v; }

/* The connection's one timer node is armed for the sooner of its two due times. */
static void conn_timer_sync(lw_conn *c) {
  uint64_t due = c->aux_due;
  if (c->deadline_armed) {
    uint64_t d = c->t0.close_start + c->deadline_ms;
    if (!due || d < due)
      due = d;
  }
  /* The only failure is the heap's growth (a realloc of its pointer array): the node is
   * then not armed until the next sync. Rare enough to accept rather than to abort the
   * connection from inside whatever called this. */
  (void)lw__tnode_set(c->loop, &c->tnode, due);
}

static void conn_timers_stop(lw_conn *c) {
  c->deadline_armed = 0;
  c->aux_due = 0;
  conn_timer_sync(c);
}

void lw__conn_timer_fire(lw_conn *c) {
  uint64_t now = c->loop->now;
  /* The node is out of the heap now; each part below may end the connection, which
   * clears both due times. */
  if (c->deadline_armed && c->t0.close_start + c->deadline_ms <= now) {
    c->deadline_armed = 0;
    conn_event(c, LW__CE_DEADLINE, 0);
  }
  if (c->aux_due && c->aux_due <= now) {
    c->aux_due = 0;
    live_fire(c); /* every clock of the slot, in every state: it re-arms the sooner */
  }
  conn_timer_sync(c);
}

/* Arms the liveness check for `ms` from now unless it is already due sooner. */
static void live_arm(lw_conn *c, uint64_t ms) {
  uint64_t due = c->loop->now + ms;
  if (c->aux_due && c->aux_due <= due)
    return;
  c->aux_due = due;
  conn_timer_sync(c);
}

static void idle_start(lw_conn *c) {
  c->u.live.last_io = c->loop->now;
  if (idle_applies(c))
    live_arm(c, c->opts->idle_timeout_ms);
}

/* Output became pending: everything sent so far has been acknowledged (the clock
 * stops only when SIOCOUTQ reads 0 with an empty queue). The baseline is the kernel's
 * count where it has one (lw__sock_progress: one TCP_INFO, only with stall_timeout_ms
 * set), else our own. */
static void stall_start(lw_conn *c) {
  uint64_t k;
  uint32_t quiet;
  c->stall_active = 1;
  c->u.live.stall_since = c->loop->now;
  c->stall_kernel = lw__sock_progress(c->io.fd, &k, &quiet) == 0;
  c->u.live.stall_acked = c->stall_kernel ? k : c->bytes_sent;
  live_arm(c, stall_period(c));
}

static void live_fire(lw_conn *c) {
  if (c->detached || !lw__cs_live(&c->sm))
    return;
  const lw_conn_options *o = c->opts;
  uint64_t now = c->loop->now, next = UINT64_MAX;
  /* The closing states' own clocks first; the stall clock below runs in them too
   * (lastword.h: stall_timeout_ms applies in every state until the fd is closed). */
  if (c->sm.state == LW__CS_ACK_WAIT && ack_poll_step(c, &next))
    return;
  if (c->sm.state == LW__CS_LINGER && linger_step(c, &next))
    return;
  /* The verdicts below judge the PEER, so they ask the kernel, not our bookkeeping:
   * the loop may be late (a long callback, a descheduled process), with completions and
   * readiness from meanwhile not dispatched yet -- last_io and bytes_sent lag, the
   * kernel's clock does not (test_loop_lag: a 900 ms callback made a reading peer
   * "stalled" on io_uring and a talking one "idle" on both backends). */
  uint64_t k_acked = 0;
  uint32_t k_quiet = 0;
  int k_known = -1; /* asked at most once, only when a verdict is due */
  if (idle_applies(c)) {
    uint64_t due = c->u.live.last_io + o->idle_timeout_ms;
    if (now >= due && (k_known = lw__sock_progress(c->io.fd, &k_acked, &k_quiet) == 0) &&
        k_quiet < o->idle_timeout_ms && k_quiet <= now) {
      c->u.live.last_io = now - k_quiet; /* data moved while the loop was away */
      due = c->u.live.last_io + o->idle_timeout_ms;
    } else if (now >= due && !k_known && lw__conn_wants_read(c) &&
               (lw__sock_inq(c->io.fd) > 0 || held_input(c, NULL) > 0)) {
      /* No kernel clock (Windows): input waiting while the application reads, in the
       * kernel or in a completion not dispatched yet, is the peer talking while the loop
       * was away. (With reading stopped, waiting input is old news: a peer that sent a
       * byte and went silent still times out.) */
      c->u.live.last_io = now;
      due = now + o->idle_timeout_ms;
    }
    if (now >= due) {
      if (o->idle_timeout_abort) {
        conn_event(c, LW__CE_TIMEOUT, LW_REASON_IDLE_TIMEOUT);
      } else {
        c->deadline_ms = o->close_deadline_ms;
        conn_event(c, LW__CE_CLOSE, LW_REASON_IDLE_TIMEOUT);
        conn_update(c);
      }
      return;
    }
    next = due;
  }
  if (o->stall_timeout_ms && c->stall_active) {
    long outq = lw__sock_outq(c->io.fd);
    if (outq == 0 && lw__list_empty(&c->wq)) {
      c->stall_active = 0;
    } else {
      /* SIOCOUTQ counts an unacknowledged FIN as 1: "acked" may dip by one, never
       * rise, so only a rise counts as progress. */
      /* Where the OS cannot count unacknowledged bytes (outq < 0: Windows without
       * SIO_TCP_INFO, Wine), progress is what the kernel keeps taking from our
       * queue: weaker, but a peer that reads is never mistaken for a stalled one. */
      /* Where the kernel counts acknowledged bytes (Linux), its count; the baseline's
       * units are in stall_kernel. */
      if (k_known < 0)
        k_known = lw__sock_progress(c->io.fd, &k_acked, &k_quiet) == 0;
      uint64_t acked = k_known                           ? k_acked
                       : outq < 0                        ? c->bytes_sent
                       : c->bytes_sent >= (uint64_t)outq ? c->bytes_sent - (uint64_t)outq
                                                         : c->u.live.stall_acked;
      if ((unsigned)k_known != c->stall_kernel) {
        /* The baseline was counted the other way (TCP_INFO failed at one of the two
         * reads): take this count as the new baseline; the clock keeps running. */
        c->stall_kernel = (unsigned)k_known;
        c->u.live.stall_acked = acked;
      }
      /* SIOCOUTQ 0: the peer has acknowledged all the kernel was given; what waits is
       * ours (queued, or a send whose completion is not dispatched yet): not a stall. */
      if (acked > c->u.live.stall_acked || outq == 0) {
        if (acked > c->u.live.stall_acked)
          c->u.live.stall_acked = acked;
        c->u.live.stall_since = now;
      }
      uint64_t due = c->u.live.stall_since + o->stall_timeout_ms;
      if (now >= due) {
        conn_event(c, LW__CE_TIMEOUT, LW_REASON_STALLED);
        return;
      }
      uint64_t chk = now + stall_period(c);
      next = LW__MIN(next, LW__MIN(chk, due));
    }
  }
  if (first_byte_check(c, &next))
    return;
  if (next != UINT64_MAX)
    c->aux_due = next; /* lw__conn_timer_fire syncs the node */
}

int lw__conn_fill_iov(const lw_conn *c, lw__iov *iov, int max) {
  int n = 0;
  for (const lw__list *p = c->wq.next; p != &c->wq && n < max; p = p->next) {
    const lw__wreq *w = LW__CONTAINER_OF(p, lw__wreq, node);
    iov[n].iov_base = (void *)(w->buf + w->off);
    iov[n].iov_len = w->len - w->off;
    n++;
  }
  return n;
}

/* ---------------------------------------------------------------------------------
 * Reading
 * --------------------------------------------------------------------------------- */
int lw_conn_read_start(lw_conn *c, lw_read_cb cb) {
  if (!c || !cb)
    return LW_EINVAL;
  if (!lw__cs_delivers_input(&c->sm))
    return lw__cs_live(&c->sm) ? LW_ECLOSING : LW_EALREADY;
  c->read_cb = cb;
  c->reading = 1;
  conn_update(c);
  return 0;
}

int lw_conn_read_stop(lw_conn *c) {
  if (!c)
    return LW_EINVAL;
  c->reading = 0;
  conn_update(c);
  return 0;
}

int lw_conn_set_read_size(lw_conn *c, size_t size) {
  if (!c || size == 0 || size > 1024 * 1024)
    return LW_EINVAL;
  c->read_size = size;
  return 0;
}

void lw__conn_read_done(lw_conn *c, const char *buf, ssize_t n) {
  if (c->detached)
    return;
  if (n > 0) {
    if (c->discarding || !lw__cs_delivers_input(&c->sm)) {
      c->unread_discarded += (uint64_t)n;
      c->u.live.last_io = c->loop->now; /* the linger silence clock (linger_timeout_ms) */
      if (c->linger_acked)
        c->linger_discarded = (uint32_t)LW__MIN((uint64_t)c->linger_discarded + (uint64_t)n,
                                                (uint64_t)UINT32_MAX);
      discard_check(c);
      return;
    }
    c->bytes_received += (uint64_t)n;
    c->u.live.last_io = c->loop->now;
    if (c->reading && c->read_cb)
      c->read_cb(c, (long)n, buf);
    return;
  }
  if (n == 0) {
    c->eof_seen = 1;
    int deliver = c->reading && c->read_cb && lw__cs_delivers_input(&c->sm);
    if (c->sm.state == LW__CS_OPEN) {
      /* Record the peer's FIN first, so that a close the application starts from
       * inside the EOF callback is rightly "peer closed first". */
      conn_event(c, LW__CE_PEER_FIN, 0);
      if (deliver && !c->detached)
        c->read_cb(c, LW_EOF, NULL);
    } else {
      /* After lw_shutdown the FIN may complete the close at once: tell the
       * application about the EOF while it can still act on the connection. */
      if (deliver)
        c->read_cb(c, LW_EOF, NULL);
      if (!c->detached)
        conn_event(c, LW__CE_PEER_FIN, 0);
    }
    if (!c->detached)
      conn_event(c, LW__CE_EOF_DELIVERED, 0);
    conn_update(c);
    return;
  }
  if (n == LW_ECONNRESET || n == LW_EPIPE)
    conn_event(c, LW__CE_PEER_RST, (int)n);
  else if (n != LW_EAGAIN)
    conn_event(c, LW__CE_ERROR, (int)n);
}

/* ---------------------------------------------------------------------------------
 * Writing
 * --------------------------------------------------------------------------------- */
static int queue_write(lw_conn *c, lw__wreq *w) {
  lw__list_push(&c->wq, &w->node);
  c->wq_bytes += w->len;
  if (c->sm.queue_empty)
    conn_event(c, LW__CE_QUEUE_BUSY, 0);
  if (c->opts->stall_timeout_ms && !c->stall_active && !c->detached)
    stall_start(c);
  /* Not sent from inside this call: the bytes go out once the callback that queued
   * them returns (the loop's pending step, before it waits again). A close that
   * follows in the same callback -- write, then lw_close: the usual end of a response
   * -- is then known when they go out, and the backend lets the FIN ride on the last
   * data segment (lw__conn_last_before_fin): one segment, one ACK and one wakeup of the
   * peer fewer per connection. Writes queued together leave in one sendmsg. */
  if (!c->detached && !c->flush_due) {
    c->flush_due = 1;
    lw__loop_pending_add(c);
  }
  if (c->wq_bytes >= c->opts->write_high_water) {
    c->over_hwm = 1;
    return LW_ABOVE_HIGH_WATER;
  }
  return 0;
}

int lw_conn_write(lw_conn *c, const void *buf, size_t len, lw_write_cb cb, void *arg) {
  if (!c || (!buf && len) || len == 0)
    return LW_EINVAL;
  int st = lw__cs_write_status(&c->sm);
  if (st)
    return st;
  if (queue_full(c, len))
    return LW_EQUEUEFULL;
  lw__wreq *w = malloc(sizeof(*w));
  if (!w)
    return LW_ENOMEM;
  w->buf = buf;
  w->len = len;
  w->off = 0;
  w->cb = cb;
  w->arg = arg;
  w->status = 0;
  return queue_write(c, w);
}

int lw_conn_write_copy(lw_conn *c, const void *buf, size_t len) {
  if (!c || !buf || len == 0)
    return LW_EINVAL;
  int st = lw__cs_write_status(&c->sm);
  if (st)
    return st;
  if (queue_full(c, len))
    return LW_EQUEUEFULL;
  /* No send from inside this call (there was a uv_try_write-like fast path here): the
   * bytes leave with lw_conn_write's, once the calling callback returns, so that a
   * close right after puts our FIN on their last segment. Sent at once, they reached a
   * peer on the same host before our shutdown() ran -- the wakeup of its reader can
   * preempt us between the two syscalls -- and a peer that closes when it has read
   * the answer sent its FIN first: the reason flipped between graceful and
   * peer-closed-first run to run (tests/test_write_copy_close.c). A copy is cheaper
   * than the extra syscall that holding the bytes in the kernel (MSG_MORE) and
   * pushing them later would cost. */
  lw__wreq *w = malloc(sizeof(*w) + len);
  if (!w)
    return LW_ENOMEM;
  memcpy(w + 1, buf, len);
  w->buf = (const char *)(w + 1);
  w->len = len;
  w->off = 0;
  w->cb = NULL;
  w->arg = NULL;
  w->status = 0;
  return queue_write(c, w);
}

void lw__conn_write_done(lw_conn *c, ssize_t n) {
  if (c->detached)
    return;
  if (n < 0) {
    if (n == LW_EAGAIN)
      return;
    if (n == LW_ECONNRESET || n == LW_EPIPE)
      conn_event(c, LW__CE_PEER_RST, (int)n);
    else
      conn_event(c, LW__CE_ERROR, (int)n);
    return;
  }
  size_t left = (size_t)n;
  c->bytes_sent += (uint64_t)n;
  if (n > 0)
    c->u.live.last_io = c->loop->now;
  assert(c->wq_bytes >= left);
  c->wq_bytes -= left;
  while (left > 0 && !lw__list_empty(&c->wq)) {
    lw__wreq *w = LW__CONTAINER_OF(c->wq.next, lw__wreq, node);
    size_t part = LW__MIN(left, w->len - w->off);
    w->off += part;
    left -= part;
    if (w->off == w->len) {
      lw__list_remove(&w->node);
      w->status = 0;
      lw__list_push(&c->wdone, &w->node);
      lw__loop_pending_add(c);
    }
  }
  if (c->over_hwm && c->wq_bytes <= c->opts->write_high_water / 2) {
    c->over_hwm = 0;
    c->drain_due = 1;
    lw__loop_pending_add(c);
  }
  if (lw__list_empty(&c->wq))
    conn_event(c, LW__CE_QUEUE_EMPTY, 0);
}

/* A send that completed after the close detached the connection (a completion backend
 * cannot always cancel it: IOCP's WSASend may finish, or be cancelled part-way, after
 * CancelIoEx; an io_uring sendmsg may complete before its cancel is issued). Its bytes
 * left: they move from "cancelled" to "sent", so that bytes_queued is unchanged and
 * bytes_sent is not short of what the peer received -- and a write all of whose bytes
 * left gets status 0, not LW_ECANCELED (its callback has not run: rule 2 holds every
 * callback of a detached connection until its last completion). */
void lw__conn_write_late(lw_conn *c, size_t n) {
  assert(c->detached);
  c->bytes_sent += n;
  c->u.end.cancelled -= LW__MIN((uint64_t)n, c->u.end.cancelled);
  for (lw__list *p = c->wdone.next; p != &c->wdone && n > 0; p = p->next) {
    lw__wreq *w = LW__CONTAINER_OF(p, lw__wreq, node);
    if (w->status != LW_ECANCELED)
      continue;
    size_t part = LW__MIN(n, w->len - w->off);
    w->off += part;
    n -= part;
    if (w->off == w->len)
      w->status = 0;
  }
}

static void shut_wr_now(lw_conn *c);

void lw__conn_connect_done(lw_conn *c, int status) {
  if (c->detached)
    return;
  c->connecting = 0;
  if (status >= 0) {
    c->established = 1;
    /* lw_shutdown before the handshake completed: its FIN goes now, before the
     * application hears of the connection (shutdown() in SYN_SENT would have killed
     * the connect: inet_shutdown() disconnects a socket in SYN_SENT). */
    if (c->fin_deferred) {
      c->fin_deferred = 0;
      shut_wr_now(c);
    }
    idle_start(c);
  }
  if (c->connect_cb)
    c->connect_cb(c, status);
  /* ECONNRESET / EPIPE from a connect: the handshake completed (a SYN answered by an RST
   * is ECONNREFUSED) and the peer reset the connection before the loop saw it done --
   * a listener that accepts and resets at once. It ends as what it is: the peer's
   * reset, not a failed connect (torture, reason-error-without-cause). */
  if (status == LW_ECONNRESET || status == LW_EPIPE)
    conn_event(c, LW__CE_PEER_RST, status);
  else if (status < 0)
    conn_event(c, LW__CE_ERROR, status);
  else
    conn_update(c);
}

/* Deferred callbacks: write completions in queue order, then drain. */
void lw__conn_run_pending(lw_conn *c) {
  if (c->flush_due) {
    c->flush_due = 0;
    conn_update(c); /* no-op once detached */
  }
  if (c->deliver_due) {
    c->deliver_due = 0; /* held input, asked for by lw__conn_deliver_due */
    if (!c->detached)
      c->loop->backend->deliver_held(c);
  }
  /* A2: after a close, a completion backend may still have a send in flight that
   * reads these buffers. Their callbacks (which may free them) wait until the backend
   * has reaped its last completion for this connection; the endgame runs them. Asked
   * before EVERY callback, not once: a write callback that aborts the connection turns
   * the writes after it into cancelled ones whose buffers the kernel may still read. */
  while (!lw__list_empty(&c->wdone) && !(c->detached && !c->ops_done)) {
    lw__wreq *w = LW__CONTAINER_OF(c->wdone.next, lw__wreq, node);
    lw__list_remove(&w->node);
    lw_write_cb cb = w->cb;
    void *arg = w->arg;
    int status = w->status;
    free(w);
    if (cb)
      cb(c, status, arg);
  }
  if (c->drain_due) {
    c->drain_due = 0;
    if (c->drain_cb && lw__cs_write_status(&c->sm) == 0)
      c->drain_cb(c);
  }
}

/* ---------------------------------------------------------------------------------
 * Termination: public calls
 * --------------------------------------------------------------------------------- */
int lw_shutdown(lw_conn *c) {
  if (!c)
    return LW_EINVAL;
  int r = conn_event(c, LW__CE_SHUTDOWN, 0);
  conn_update(c);
  return r;
}

int lw_close(lw_conn *c, uint32_t deadline_ms) {
  if (!c)
    return LW_EINVAL;
  /* Before the handshake completes there is nothing to flush and no FIN to send
   * (shutdown() fails with ENOTCONN): the only close there is, is to abort it. */
  if (c->connecting && !c->detached)
    return conn_event(c, LW__CE_ABORT, 0);
  if (lw__cs_live(&c->sm) && c->sm.state != LW__CS_FLUSHING && c->sm.state != LW__CS_LINGER &&
      c->sm.state != LW__CS_ACK_WAIT)
    c->deadline_ms = deadline_ms ? deadline_ms : c->opts->close_deadline_ms;
  /* A connection covered by a drain that the application closes is ended by the
   * drain (lastword.h: reason DRAIN). */
  int r = conn_event(c, LW__CE_CLOSE, c->draining ? LW_REASON_DRAIN : 0);
  conn_update(c);
  return r;
}

int lw_abort(lw_conn *c) {
  if (!c)
    return LW_EINVAL;
  return conn_event(c, LW__CE_ABORT, 0);
}

int lw_close_naive(lw_conn *c) {
  if (!c)
    return LW_EINVAL;
  return conn_event(c, LW__CE_CLOSE_NAIVE, 0);
}

/* ---------------------------------------------------------------------------------
 * Termination: carrying out the state machine's actions
 * --------------------------------------------------------------------------------- */
/* Linux has no event for "the peer acknowledged everything": poll SIOCOUTQ, starting
 * near one RTT and backing off, bounded by the close deadline. In the usual case the
 * peer's FIN carries the ACK of our FIN, so the first check (done at once) succeeds. */
static int ack_check(lw_conn *c) {
  long outq = lw__sock_outq(c->io.fd);
  c->acked_clean = outq == 0;
  /* outq < 0: this OS cannot tell. Nothing to wait for then; the close goes on and
   * lw_close_info says acked_known = 0 rather than waiting out the deadline. */
  return outq <= 0;
}

static uint64_t ack_poll_backoff(lw_conn *c) {
  c->ack_poll_ms =
      c->ack_poll_ms * 2 > LW__ACK_POLL_MAX_MS ? LW__ACK_POLL_MAX_MS : c->ack_poll_ms * 2;
  return c->loop->now + c->ack_poll_ms;
}

/* A socket that died while nobody was reading or writing it: in ACK_WAIT the
 * connection neither reads (the peer's FIN is in) nor writes (all is in the kernel),
 * epoll has parked the fd at its EPOLLHUP, and SIOCOUTQ keeps reading non-zero after
 * an RST or a TCP_USER_TIMEOUT (tcp_done does not purge the write queue's counters).
 * The kernel keeps the cause in sk_err (tcp_reset: ECONNRESET; tcp_write_err:
 * ETIMEDOUT) until SO_ERROR reads it. Returns 1 if the connection ended. */
static int socket_died(lw_conn *c) {
  int err = lw__sock_so_error(c->io.fd);
  if (!err)
    return 0;
  lw__conn_read_done(c, NULL, err); /* the same mapping as a failed read */
  return 1;
}

/* ACK_WAIT, from live_fire: acknowledged, dead, or poll again (backing off). */
static int ack_poll_step(lw_conn *c, uint64_t *next) {
  if (ack_check(c)) {
    conn_event(c, LW__CE_ACKED, 0);
    return 1;
  }
  if (socket_died(c))
    return 1;
  *next = LW__MIN(*next, ack_poll_backoff(c));
  return 0;
}

static void start_ack_poll(lw_conn *c) {
  if (ack_check(c)) {
    conn_event(c, LW__CE_ACKED, 0);
    return;
  }
  if (socket_died(c))
    return;
  lw__tcp_snapshot s;
  lw__sock_snapshot(c->io.fd, &s);
  uint32_t ms = s.rtt_us / 1000u;
  c->ack_poll_ms = ms < 1 ? 1 : ms;
  live_arm(c, c->ack_poll_ms); /* the slot keeps the sooner of this and the stall check */
}

/* LINGER, from live_fire: the lingering bounds of lastword.h ("The lingering close and
 * the peer's input"). None of them acts before everything we wrote is acknowledged
 * (SIOCOUTQ <= 1: at most our FIN outstanding, which follows every data byte in
 * sequence space); until then only the close deadline and the stall clock end it. */
static int linger_step(lw_conn *c, uint64_t *next) {
  uint64_t now = c->loop->now;
  if (!c->linger_acked) {
    long outq = lw__sock_outq(c->io.fd);
    if (outq > 1) {
      *next = LW__MIN(*next, ack_poll_backoff(c));
      return 0;
    }
    /* outq < 0: this OS cannot tell; the bounds apply from now (ack_check's policy). */
    c->linger_acked = 1;
    c->linger_discarded = 0;
    if (c->u.live.last_io < now)
      c->u.live.last_io = now; /* the silence clock starts no earlier than this */
  }
  const lw_conn_options *o = c->opts;
  uint64_t quiet_due = c->u.live.last_io + o->linger_timeout_ms;
  uint64_t total_due = c->t0.close_start + o->linger_time_ms;
  if (now >= quiet_due) {
    conn_event(c, LW__CE_LINGER_END, 0);
    return 1;
  }
  if (now >= total_due) {
    /* Reset only a peer still sending (input since everything was acknowledged); a
     * silent one -- linger_time_ms shorter than linger_timeout_ms -- gets the plain
     * close its silence would have got: nothing is unread, an RST would only destroy
     * what its kernel holds for it. */
    conn_event(c, LW__CE_LINGER_END, c->linger_discarded > 0 ? 1 : 0);
    return 1;
  }
  *next = LW__MIN(*next, LW__MIN(quiet_due, total_due));
  return 0;
}

static void cancel_writes(lw_conn *c) {
  assert(c->detached); /* the state machine cancels only as the fd closes (u.end) */
  c->u.end.cancelled += c->wq_bytes;
  while (!lw__list_empty(&c->wq)) {
    lw__wreq *w = LW__CONTAINER_OF(c->wq.next, lw__wreq, node);
    lw__list_remove(&w->node);
    /* A request partly written counts as cancelled: its bytes did not all arrive. */
    w->status = LW_ECANCELED;
    lw__list_push(&c->wdone, &w->node);
  }
  c->wq_bytes = 0;
  c->over_hwm = 0;
  c->drain_due = 0;
  if (!lw__list_empty(&c->wdone))
    lw__loop_pending_add(c);
}

/* The connection was dead before its close (final_snapshot): it ends as what killed
 * it, if err says -- the peer's reset or its TCP giving up. Returns 1 if it did. */
static int died_before_close(lw_conn *c, int err) {
  if (err != LW_ECONNRESET && err != LW_EPIPE && err != LW_ETIMEDOUT)
    return 0;
  c->sm.reason = err == LW_ETIMEDOUT ? LW_REASON_DEAD_PEER : LW_REASON_PEER_RESET;
  c->sm.err = err;
  if (err != LW_ETIMEDOUT) {
    c->sm.rst = 1;
    if (!c->sm.fin_sent)
      c->sm.initiator = LW_INITIATOR_PEER;
  }
  return 1;
}

void lw__conn_error_late(lw_conn *c, int err) {
  assert(c->detached && !c->ops_done); /* on_close waits for the last completion */
  if (c->dead_unexplained && died_before_close(c, err))
    c->dead_unexplained = 0;
}

/* Everything the kernel can tell us, read while the fd still exists. Ends the use of
 * c->u.live: from here on c->u.end holds the results. Returns 1 when the close must be
 * made an RST although the state machine asked for a plain close(): input the backend
 * holds (held_input) would have made the kernel send one, had it stayed there (B13). */
static int final_snapshot(lw_conn *c, int resetting, size_t *inq_counted) {
  int fd = c->io.fd;
  uint64_t acked = 0, silent = 0;
  if (!resetting && c->acked_clean && c->eof_seen && c->sm.state == LW__CS_CLOSING &&
      c->sm.reason != LW_REASON_NAIVE) {
    /* The clean end of a lingering close: SIOCOUTQ read 0 a moment ago (every byte and
     * our FIN acknowledged) and the peer's FIN was read, so nothing can be unread and
     * the state is CLOSE or TIME_WAIT. TCP_INFO, SIOCOUTQ and SIOCINQ would tell
     * nothing new: skip three syscalls on the path every connection takes. The peer
     * spoke last just now (its FIN). */
    c->acked_known = 1;
    c->time_wait = c->sm.fin_sent && c->sm.peer_fin && c->sm.initiator == LW_INITIATOR_LOCAL &&
                   !c->peer_fin_first;
    c->u.end.bytes_acked = c->bytes_sent;
    c->u.end.cancelled = 0;
    c->u.end.peer_silent_ms = 0;
    c->u.end.close_ms = 0;
    *inq_counted = 0;
    return 0;
  }
  lw__tcp_snapshot s;
  lw__sock_snapshot(fd, &s);
  long outq = lw__sock_outq(fd);
  /* Held input before the kernel's queue, never after: a receive in flight can take
   * bytes from the queue between the two reads (io_uring runs its task work at the
   * return of the SIOCINQ ioctl itself; Wine completes a WSARecv at any instant). In
   * this order bytes taken at the ioctl's return are in SIOCINQ, and conn_detach sees
   * the completion posted and knows they were counted; in the other order they were
   * counted twice (tests/test_inq_race.c). Bytes taken in the gap before the ioctl --
   * task work run at an interrupt's return: preemption, or NO_COOP's IPI; Wine -- are
   * in neither figure: counted short, never twice. Only DEFER_TASKRUN is exact. */
  int held_fin = 0;
  size_t held = held_input(c, &held_fin);
  long inq = lw__sock_inq(fd);
  *inq_counted = inq > 0 ? (size_t)inq : 0;
  int force_rst = 0;
  if (held > 0) {
    force_rst = !resetting && inq <= 0 && s.state != LW__TCP_CLOSE;
    inq = (inq > 0 ? inq : 0) + (long)held;
  }
  if (outq == 0 && s.state != LW__TCP_CLOSE) {
    /* Nothing left unacknowledged on a socket that did not die: exact. */
    acked = c->bytes_sent;
    c->acked_known = 1;
  } else if (s.acked_known) {
    acked = s.bytes_acked;
    if (c->active_open && acked > 0)
      acked--; /* the SYN */
    if (acked > c->bytes_sent)
      acked = c->bytes_sent;
    c->acked_known = 1;
  }
  /* A connect that never completed has no peer timestamps: TCP_INFO's last_ack_recv
   * then counts from jiffies 0 (days). The peer has been silent since the SYN. */
  if (s.silent_known && c->established)
    silent = s.silent_ms;
  else if (c->loop->now > c->u.live.last_io)
    silent = c->loop->now - c->u.live.last_io;
  /* The peer's FIN already in our kernel, unread, when we reset or close without a FIN
   * of ours: the peer ended first (the initiator rule, close_sm.h). */
  if (!c->sm.fin_sent && !c->sm.peer_fin && (s.state == LW__TCP_CLOSE_WAIT || held_fin))
    c->peer_fin_first = 1;
  /* The connection died before this close -- the peer's RST, or its TCP giving up --
   * and nothing was reading to hear of it (reading stopped, or nothing asked): the
   * close of a dead connection is not what ended it. It ends as what happened first,
   * read from SO_ERROR (which the kernel keeps until someone reads it). */
  if (s.state == LW__TCP_CLOSE && c->sm.reason != LW_REASON_PEER_RESET &&
      c->sm.reason != LW_REASON_DEAD_PEER && c->sm.reason != LW_REASON_ERROR) {
    /* Not found: an operation still in flight took it (lw__conn_error_late). */
    int err = lw__sock_so_error(fd);
    if (!died_before_close(c, err)) {
      c->dead_unexplained = 1;
      c->dead_silent = err == 0;
    }
  }
  if (inq > 0) {
    c->unread_discarded += (uint64_t)inq;
    /* close() with unread input: tcp_close() sends RST instead of FIN (RFC 2525,
     * 2.17; B13). Only a plain close can hit this; lingering close drained first. */
    if (!resetting && s.state != LW__TCP_CLOSE)
      c->rst_seen = 1;
  }
  /* TIME_WAIT belongs to the side whose FIN went first, and only if it did not reset.
   * Linux moves the socket itself to CLOSE when the peer's FIN arrives in FIN_WAIT2
   * and hands the 2MSL wait to a separate timewait sock (tcp_fin -> tcp_time_wait ->
   * tcp_done), so TCP_INFO on our fd shows CLOSE, not TIME_WAIT: decide from the
   * order of the FINs, confirmed by the state. */
  int fins_done = c->sm.fin_sent && c->sm.peer_fin && c->sm.initiator == LW_INITIATOR_LOCAL &&
                  !c->peer_fin_first;
  /* (A reset ends in CLOSE, never TIME_WAIT: one received -- in the ACK wait, after
   * both FINs -- counts as much as one sent.) */
  c->time_wait =
      !resetting && !c->sm.rst && fins_done &&
      (s.state == LW__TCP_TIME_WAIT || s.state == LW__TCP_CLOSE || s.state == LW__TCP_CLOSING);
  c->u.end.bytes_acked = acked;
  c->u.end.cancelled = 0;
  c->u.end.peer_silent_ms = (uint32_t)sat_u32(silent);
  c->u.end.close_ms = 0;
  return force_rst;
}

static void close_fd(lw_conn *c, int reset) {
  assert(!c->detached);
  /* The close ends on the wire here (the loop's clock, read before anything below can
   * take time: the TCP table read of final_snapshot without SIO_TCP_INFO, and a
   * completion backend's wait for cancelled operations, which on_close waits for). */
  uint64_t ms = c->close_begun ? c->loop->now - c->t0.close_start : 0;
  size_t inq_counted;
  if (final_snapshot(c, reset, &inq_counted))
    reset = 1;
  c->u.end.close_ms = (uint32_t)sat_u32(ms);
  c->loop->backend->conn_detach(c, inq_counted);
  c->detached = 1;
  c->reading = 0;
  c->discarding = 0;
  if (reset)
    lw__sock_set_linger0(c->io.fd);
  if (c->loop->backend->close_fd)
    c->loop->backend->close_fd(c->loop, &c->io); /* io_uring: after its queued SQEs */
  else
    lw__sock_close(c->io.fd); /* IOCP: may wait for the cancelled WSARecv (src/win) */
}

/* Nothing of the closed connection is left in the kernel: on_close is due. One last
 * verdict first. Found dead at the close (TCP state CLOSE) with SO_ERROR empty, and no
 * late completion said why: without a FIN of ours only an RST ends an established
 * connection (the TCP giving up sets SO_ERROR), so the peer reset it. On Linux an
 * empty SO_ERROR means an operation in flight took the error, and its completion
 * reports it (lw__conn_error_late): this is for where the error is not kept -- Wine,
 * with nothing pending, where a peer that reset during the first-byte wait ended as
 * first-byte-timeout. os_error stays 0: no call returned the error. */
static void ops_done_event(lw_conn *c) {
  if (c->dead_unexplained && c->dead_silent && c->established && !c->sm.fin_sent) {
    c->dead_unexplained = 0;
    c->sm.reason = LW_REASON_PEER_RESET;
    c->sm.rst = 1;
    c->sm.initiator = LW_INITIATOR_PEER;
  }
  conn_event(c, LW__CE_OPS_DONE, 0);
}

static void shut_wr_now(lw_conn *c) {
  /* The state machine knows of the peer's FIN only once it is read; the kernel may
   * already hold it (CLOSE_WAIT). Then the peer closed first, whatever the order of
   * our reads: no TIME_WAIT here, and the reason must say so. So it is when a
   * completion backend holds it (reading stopped, or its completion not reaped). */
  if (!c->sm.peer_fin && peer_fin_waiting(c))
    c->peer_fin_first = 1;
  lw__sock_shutdown_wr(c->io.fd); /* ENOTCONN after a reset: the read side reports it */
}

static void conn_apply(lw_conn *c, unsigned acts) {
  lw_loop *loop = c->loop;
  if ((acts & (LW__CA_ARM_DEADLINE | LW__CA_CLOSE_FD | LW__CA_RESET_FD)) && !c->close_begun) {
    c->close_begun = 1; /* t0 was first_byte_due: no longer applies */
    c->t0.close_start = loop->now;
  }
  if (acts & LW__CA_DISCARD)
    c->discarding = 1;
  if (acts & LW__CA_ARM_DEADLINE) {
    /* begin_close is the only source, once per connection: close_start is now */
    c->deadline_armed = 1;
    conn_timer_sync(c);
  }
  if (acts & LW__CA_SHUT_WR) {
    if (c->connecting)
      c->fin_deferred = 1; /* lw_shutdown before the handshake: lw__conn_connect_done */
    else
      shut_wr_now(c);
  }
  if (c->sm.state == LW__CS_LINGER && (acts & (LW__CA_SHUT_WR | LW__CA_ARM_DEADLINE))) {
    /* LINGER begins: its bounds wait for everything to be acknowledged (linger_step). */
    c->linger_acked = 0;
    c->ack_poll_ms = LW__LINGER_POLL_FIRST_MS / 2; /* backoff doubles it first */
    live_arm(c, LW__LINGER_POLL_FIRST_MS);
  }
  if (acts & (LW__CA_CLOSE_FD | LW__CA_RESET_FD)) {
    conn_timers_stop(c);
    close_fd(c, (acts & LW__CA_RESET_FD) != 0);
  }
  if (acts & LW__CA_CANCEL)
    cancel_writes(c);
  if (acts & (LW__CA_CLOSE_FD | LW__CA_RESET_FD)) {
    /* The backend reports ops done at once (epoll) or after its last completion. */
    if (c->ops_done)
      ops_done_event(c);
  }
  if (acts & LW__CA_EMIT_CLOSE) {
    if (!c->in_endgame) {
      /* The one list node moves from the pending list (if there) to the endgame,
       * which runs the pending callbacks itself. */
      if (c->in_pending) {
        lw__list_remove(&c->node);
        c->in_pending = 0;
      }
      c->in_endgame = 1;
      lw__list_push(&loop->endgame, &c->node);
    }
    return;
  }
  if (acts & LW__CA_POLL_ACK && !c->detached)
    start_ack_poll(c);
  if (!(acts & (LW__CA_CLOSE_FD | LW__CA_RESET_FD)))
    conn_update(c);
}

void lw__conn_ops_done(lw_conn *c) {
  c->ops_done = 1;
  if (c->detached)
    ops_done_event(c);
}

/* lw_close_info is built when it is delivered: the connection keeps only counters
 * and the few results final_snapshot measured. */
static void close_info_fill(const lw_conn *c, lw_close_info *in) {
  memset(in, 0, sizeof(*in));
  in->reason = (lw_close_reason)c->sm.reason;
  in->initiator = (lw_initiator)c->sm.initiator;
  /* The kernel had the peer's FIN before ours (or our RST) left: the peer was first,
   * whatever the order in which the state machine heard of the two. */
  if (c->peer_fin_first) {
    in->initiator = LW_INITIATOR_PEER;
    if (in->reason == LW_REASON_GRACEFUL)
      in->reason = LW_REASON_PEER_CLOSED_FIRST;
  }
  in->rst = c->sm.rst || c->rst_seen;
  in->os_error = c->sm.err;
  in->bytes_queued = c->bytes_sent + c->u.end.cancelled;
  in->bytes_sent = c->bytes_sent;
  in->acked_known = c->acked_known;
  in->bytes_acked = c->acked_known ? c->u.end.bytes_acked : 0;
  uint64_t delivered = in->acked_known ? in->bytes_acked : in->bytes_sent;
  in->unsent_discarded = in->bytes_queued > delivered ? in->bytes_queued - delivered : 0;
  in->unread_discarded = c->unread_discarded;
  in->bytes_received = c->bytes_received;
  in->time_wait = c->time_wait;
  in->close_ms = c->u.end.close_ms;
  in->peer_silent_ms = c->u.end.peer_silent_ms;
}

void lw__conn_endgame(lw_conn *c) {
  assert(c->sm.state == LW__CS_CLOSED);
  assert(!c->in_pending);
  c->in_endgame = 0;
  /* A2: every write callback before on_close. */
  c->drain_due = 0;
  lw__conn_run_pending(c);
  c->close_reported = 1; /* lw_loop_walk from on_close (or later) no longer sees it,
                          * nor does a drain started there */
  lw_loop *loop = c->loop;
  if (c->close_cb || c->draining) {
    lw_close_info info;
    close_info_fill(c, &info);
    if (c->draining)
      lw__drain_conn_ended(loop, &info);
    if (c->close_cb)
      c->close_cb(c, &info);
  }
  /* A write queued from inside on_close was refused (ECLOSING), so nothing is left. */
  lw__conn_run_pending(c);
  conn_free(c);
  if (loop->drain)
    lw__drain_check(loop);
}

/* ---------------------------------------------------------------------------------
 * The drain's hooks (drain.c holds the policy; these need the state machine).
 * --------------------------------------------------------------------------------- */
int lw__conn_drain_idle(lw_conn *c, uint64_t idle_min_ms) {
  if (c->detached || c->connecting || !c->established || c->sm.state != LW__CS_OPEN)
    return 0;
  if (!lw__list_empty(&c->wq) || c->loop->now - c->u.live.last_io < idle_min_ms)
    return 0;
  /* Input waiting unread (the application stopped reading, or the backend holds a
   * completion) is a request on its way: not idle. */
  int fin = 0;
  if (held_input(c, &fin) > 0 || fin)
    return 0;
  long inq = lw__sock_inq(c->io.fd);
  return inq <= 0;
}

void lw__conn_drain_close(lw_conn *c) {
  if (!lw__cs_live(&c->sm))
    return;
  if (c->sm.state == LW__CS_OPEN || c->sm.state == LW__CS_HALF_PEER ||
      c->sm.state == LW__CS_HALF_LOCAL || c->sm.state == LW__CS_SHUT_PENDING)
    c->deadline_ms = c->opts->close_deadline_ms;
  conn_event(c, LW__CE_CLOSE, LW_REASON_DRAIN);
  conn_update(c);
}

int lw__conn_drain_reset(lw_conn *c) {
  if (!lw__cs_live(&c->sm))
    return 0;
  /* A connect in progress has nothing to reset yet: it is aborted, as lw_close does. */
  conn_event(c, c->connecting && !c->detached ? LW__CE_ABORT : LW__CE_TIMEOUT, LW_REASON_DRAIN);
  return 1;
}

int lw_conn_draining(const lw_conn *c) { return c && c->draining && c->loop->drain; }

/* ---------------------------------------------------------------------------------
 * Bounds: what a misbehaving peer can cost (lastword.h, "Bounds").
 * --------------------------------------------------------------------------------- */
#define LW__DEFAULT_QUEUE_MAX (64u * 1024u * 1024u)
#define LW__DEFAULT_LINGER_TIMEOUT 5000u /* nginx lingering_timeout */
#define LW__DEFAULT_LINGER_TIME 30000u   /* nginx lingering_time */

static void bounds_defaults(lw_conn_options *o) {
  if (!o->write_queue_max) {
    size_t hwm16 = o->write_high_water <= SIZE_MAX / 16 ? o->write_high_water * 16 : SIZE_MAX;
    o->write_queue_max = hwm16 > LW__DEFAULT_QUEUE_MAX ? hwm16 : LW__DEFAULT_QUEUE_MAX;
  }
  if (!o->linger_discard_max)
    o->linger_discard_max = SIZE_MAX; /* no byte bound: time bounds it (lastword.h) */
  if (!o->linger_timeout_ms)
    o->linger_timeout_ms = LW__DEFAULT_LINGER_TIMEOUT;
  if (!o->linger_time_ms)
    o->linger_time_ms = LW__DEFAULT_LINGER_TIME;
}

/* A write of len bytes would take the queue past write_queue_max: reset the connection
 * (a refused write followed by an accepted one would be a hole in the stream). */
static int queue_full(lw_conn *c, size_t len) {
  size_t max = c->opts->write_queue_max;
  if (c->wq_bytes <= max && len <= max - c->wq_bytes)
    return 0;
  conn_event(c, LW__CE_TIMEOUT, LW_REASON_QUEUE_FULL);
  return 1;
}

/* Input read and thrown away while closing counts against linger_discard_max only
 * once everything we wrote was seen acknowledged (linger_acked, set by linger_step):
 * before that an RST would destroy our own unacknowledged bytes. linger_discarded
 * saturates at 4 GiB: a larger bound is no bound. */
static void discard_check(lw_conn *c) {
  if (!c->detached && c->linger_acked && c->sm.state == LW__CS_LINGER &&
      (uint64_t)c->linger_discarded > (uint64_t)c->opts->linger_discard_max)
    conn_event(c, LW__CE_TIMEOUT, LW_REASON_DISCARD_LIMIT);
}

/* Accepted connections only; shares the liveness timer (live_arm keeps the sooner). */
static void first_byte_start(lw_conn *c) {
  if (!c->opts->first_byte_timeout_ms || c->active_open)
    return;
  c->t0.first_byte_due = c->loop->now + c->opts->first_byte_timeout_ms;
  live_arm(c, c->opts->first_byte_timeout_ms);
}

/* From live_cb. Returns 1 if the connection was reset; else lowers *next to its due. */
static int first_byte_check(lw_conn *c, uint64_t *next) {
  if (c->close_begun || !c->t0.first_byte_due || c->detached)
    return 0;
  /* The peer spoke: bytes delivered or discarded, its FIN, or bytes still unread. */
  if (c->bytes_received || c->unread_discarded || c->eof_seen || c->sm.peer_fin ||
      !lw__cs_delivers_input(&c->sm)) {
    /* (or a close began: a banner-then-close is bounded by the close deadline) */
    c->t0.first_byte_due = 0;
    return 0;
  }
  uint64_t now = c->loop->now;
  if (now < c->t0.first_byte_due) {
    *next = LW__MIN(*next, c->t0.first_byte_due);
    return 0;
  }
  c->t0.first_byte_due = 0;
  /* A peer that reset has spoken too: it ends as what it is (SO_ERROR, read once
   * here), not as a first-byte timeout -- asked first, for after an RST a FIN seems
   * to wait (Linux's POLLRDHUP, Windows' readable socket), and the timeout, dropped
   * below for a peer whose FIN waits, would leave the dead connection open for good. */
  if (socket_died(c))
    return 1;
  /* Sent, not read yet (the application stopped reading): bytes or a FIN in the
   * kernel, or held by the backend. */
  int held_fin = 0;
  if (lw__sock_inq(c->io.fd) > 0 || held_input(c, &held_fin) > 0 || held_fin)
    return 0;
  if (lw__sock_peer_fin_queued(c->io.fd)) {
    /* A FIN, or an RST whose error is not kept (Wine, nothing pending). Without a FIN
     * of ours (lw_shutdown: LAST_ACK, then CLOSE, is a clean end) a socket in CLOSE
     * was reset: the timeout then resets it too, and the close, finding it dead and
     * silent, ends it as the peer's reset (ops_done_event). */
    if (c->sm.fin_sent)
      return 0;
    lw__tcp_snapshot s;
    lw__sock_snapshot(c->io.fd, &s);
    if (s.state != LW__TCP_CLOSE)
      return 0;
  }
  conn_event(c, LW__CE_TIMEOUT, LW_REASON_FIRST_BYTE_TIMEOUT);
  return 1;
}
