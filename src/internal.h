/*
 * internal.h - what the portable core, the close state machine and the backends share.
 * Nothing here is public; names are lw__ (internal) or LW__.
 */
#ifndef LW_INTERNAL_H
#define LW_INTERNAL_H

#include "lastword.h"
#include "close_sm.h"

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t (mingw-w64 has it too) */

#ifdef _WIN32
/* The core gathers writes as {base, len} pairs; Winsock has no struct iovec (its
 * WSABUF is {len, buf}): the IOCP backend copies them into WSABUFs. */
struct iovec {
  void *iov_base;
  size_t iov_len;
};
#else
#include <sys/uio.h>
#endif
typedef struct iovec lw__iov;

#define LW__CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define LW__MIN(a, b) ((a) < (b) ? (a) : (b))

/* The public lw_<type>_set_data / _get_data pair of a handle type with a `data` field. */
#define LW__HANDLE_DATA_FNS(type)                                                              \
  void type##_set_data(type *h, void *data) { h->data = data; }                                \
  void *type##_get_data(const type *h) { return h->data; }

/* The public lw_<type>_ref / _unref (lastword.h: an unref'd handle does not keep its loop
 * alive) and _set_data / _get_data of a handle type whose `unref` flag and loop->nactive
 * move together: `active` (an expression of h) says whether the handle counts in
 * nactive now (started), so that a ref/unref while stopped changes only the flag and
 * its start/stop does the counting. Defines lw_wakeup_*, lw_watch_*, lw_signal_*. */
#define LW__HANDLE_REF_FNS(type, active)                                                       \
  void type##_unref(type *h) {                                                                 \
    if (h && !h->unref) {                                                                      \
      h->unref = 1;                                                                            \
      if (active)                                                                              \
        h->loop->nactive--;                                                                    \
    }                                                                                          \
  }                                                                                            \
  void type##_ref(type *h) {                                                                   \
    if (h && h->unref) {                                                                       \
      h->unref = 0;                                                                            \
      if (active)                                                                              \
        h->loop->nactive++;                                                                    \
    }                                                                                          \
  }                                                                                            \
  LW__HANDLE_DATA_FNS(type)

/* ---- intrusive doubly linked list (circular, with a head node) ---- */
typedef struct lw__list {
  struct lw__list *next, *prev;
} lw__list;

static inline void lw__list_init(lw__list *h) { h->next = h->prev = h; }
static inline int lw__list_empty(const lw__list *h) { return h->next == h; }
static inline void lw__list_push(lw__list *h, lw__list *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}
/* Moves every node of src to the empty list dst, leaving src empty: for "process what
 * is queued now; what the processing queues waits for the next round". */
static inline void lw__list_move_all(lw__list *dst, lw__list *src) {
  lw__list_init(dst);
  if (lw__list_empty(src))
    return;
  dst->next = src->next;
  dst->prev = src->prev;
  dst->next->prev = dst;
  dst->prev->next = dst;
  lw__list_init(src);
}
static inline void lw__list_remove(lw__list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

/* ---- timers: a binary min-heap of nodes; each node knows its slot ----
 * A node is either a user timer (lw_timer) or the one timer every connection embeds
 * (lw_conn.tnode: close deadline, ACK polling and liveness multiplexed on one node, so
 * an idle connection pays 24 bytes for its timer, not three full timers). */
#define LW__TIMER_IDLE UINT32_MAX
enum { LW__TN_USER = 0, LW__TN_CONN = 1 };
typedef struct lw__tnode {
  uint64_t due;
  uint64_t seq;      /* insertion order: equal deadlines fire first-armed first */
  uint32_t heap_idx; /* LW__TIMER_IDLE when not armed */
  uint32_t kind;     /* LW__TN_* */
} lw__tnode;

struct lw_timer {
  lw__tnode node;
  lw_loop *loop;
  lw_timer_cb cb;
  void *data;
  uint64_t repeat;
  int unref; /* lw_timer_unref: armed, it does not keep the loop alive */
};

typedef struct lw__heap {
  lw__tnode **v;
  size_t n, cap;
} lw__heap;

int lw__heap_push(lw__heap *h, lw__tnode *t);
void lw__heap_remove(lw__heap *h, lw__tnode *t);
static inline lw__tnode *lw__heap_min(const lw__heap *h) { return h->n ? h->v[0] : NULL; }
void lw__heap_free(lw__heap *h);
/* Arms (or re-arms) a node for loop time `due`; due 0 disarms it. */
int lw__tnode_set(lw_loop *loop, lw__tnode *t, uint64_t due);
/* Runs every due timer; returns how many ran. */
int lw__timers_run(lw_loop *loop);
/* Milliseconds until the next due timer, -1 if none. */
int lw__timers_next_ms(lw_loop *loop);
/* A connection's node came due (conn.c). */
void lw__conn_timer_fire(lw_conn *c);

/* ---- connection options, shared: a listener's connections all point at one copy
 * (reference counted: it outlives the listener while its connections live) ---- */
typedef struct lw__opts {
  lw_conn_options o; /* with the defaults filled in */
  unsigned refs;
} lw__opts;
lw__opts *lw__opts_new(const lw_conn_options *user);
static inline lw__opts *lw__opts_ref(lw__opts *o) {
  o->refs++;
  return o;
}
void lw__opts_unref(lw__opts *o);

/* ---- a write request: user bytes (or a copy that trails the struct) ---- */
typedef struct lw__wreq {
  lw__list node;
  const char *buf;
  size_t len;
  size_t off; /* bytes already written into the kernel */
  lw_write_cb cb;
  void *arg;
  int status;
} lw__wreq;

/* ---- the registration a backend keeps for each fd ---- */
enum { LW__IO_CONN = 1, LW__IO_LISTENER = 2 };
enum { LW__IO_WATCH = 3 };
typedef struct lw__io {
  int fd;
  uint32_t registered; /* epoll: events currently registered */
  /* lw_conn only: its slot in loop->conns (lw_loop_walk). Here because these bits were
   * free: lw_conn is kept within a 256-byte malloc chunk (conn.c). */
  unsigned conn_slot : 26;
  unsigned kind : 2;     /* LW__IO_* */
  unsigned added : 1;    /* epoll: the fd is in the interest list */
  unsigned wblocked : 1; /* readiness backends: the last write hit EAGAIN */
  unsigned hup : 1;      /* epoll: EPOLLHUP seen with nothing wanted (both FINs, or CLOSE) */
} lw__io;

/* ---- the backend seam: completion-shaped (see docs/architecture.md) ----
 * The core asks for operations; the backend reports their completion through the
 * lw__*_done functions below. A readiness backend (epoll) performs the syscall when
 * the fd is ready and then reports it as a completion. */
typedef struct lw__backend {
  const char *name;
  int (*init)(lw_loop *loop);
  void (*destroy)(lw_loop *loop);
  /* Waits up to timeout_ms (-1: forever) and reports completions. */
  int (*poll)(lw_loop *loop, int timeout_ms);
  int (*listener_open)(lw_listener *l);
  void (*listener_close)(lw_listener *l);
  /* Stops (paused 1) or restarts (0) taking connections from the listener's queue
   * (lw_listener_pause); called only on a change, never on a closing listener. */
  void (*listener_pause)(lw_listener *l, int paused);
  /* Optional (NULL: never). After listener_pause(l, 1): may a connection the kernel
   * already accepted for this process still be delivered (io_uring's multishot accept
   * until its last CQE, IOCP's AcceptEx until its completion)? Such a connection is in
   * no accept queue a successor could take it from: it is served here or lost. A drain
   * does not finish while one may come (drain.c); the backend calls lw__drain_check
   * when a paused listener settles. */
  int (*listener_accepting)(const lw_listener *l);
  int (*conn_open)(lw_conn *c);
  /* Re-evaluates what the conn wants (reading, writing, connecting) and submits or
   * cancels operations to match. Called after every state change of the conn. */
  void (*conn_update)(lw_conn *c);
  /* Removes the fd from the loop and cancels what is in flight. The core closes the fd
   * after this returns. The backend calls lw__conn_ops_done once nothing of this conn
   * is left in the kernel (at once for epoll; after the last CQE for io_uring).
   * inq_counted: the kernel's receive queue as the close's final snapshot just counted
   * it in unread_discarded (held input apart). A receive still in flight may take part
   * of it: its late completion passes what is left to lw__conn_read_late. The backend
   * never measures the queue again here: a receive completing between two
   * measurements would be counted twice (torture_iocp, unread-more-than-sent). */
  void (*conn_detach)(lw_conn *c, size_t inq_counted);
  /* Optional (NULL: lw__sock_close at once). Closes the fd of a connection or listener
   * just detached (conn_detach / listener_close), for a backend whose queued requests
   * name fds by number: io_uring's submission queue holds SQEs that take their file only
   * when the kernel issues them, so a close() before that would let a new socket take
   * the number and receive them (bytes sent to the wrong peer). Such a backend closes
   * through its own queue, after every request that names the fd. */
  void (*close_fd)(lw_loop *loop, lw__io *io);
  /* Frees the backend's per-connection data (NULL if it keeps none). */
  void (*conn_free)(lw_conn *c);
  /* Optional (NULL: holds none). Input bytes the backend has taken from the kernel but
   * not delivered: a receive that completed after lw_conn_read_stop (io_uring's stash,
   * an IOCP WSARecv buffer). THE RULE, for every backend: while reading is stopped, any
   * result of a receive -- data or the peer's FIN -- is held by the backend and
   * delivered only after lw_conn_read_start (or discarded by a lingering close); and
   * held bytes are unread input exactly as the kernel's receive queue is: the core adds
   * them to SIOCINQ for lw_abort's and lw_close_naive's unread_discarded, makes a naive
   * close an RST when any are held (the kernel would, had they stayed there: B13), and
   * counts them as the peer having spoken for first_byte_timeout_ms (as is a held FIN:
   * *fin set). A readiness backend (epoll) never reads unless asked, so it holds
   * nothing. Held input is DELIVERED only from the loop's pending step, never inside
   * the lw_* call that made the connection want it (lw_conn_read_start, lw_close...):
   * the backend asks with lw__conn_deliver_due and the core calls deliver_held. */
  size_t (*held_input)(const lw_conn *c, int *fin);
  void (*deliver_held)(lw_conn *c);
  /* Optional (NULL: LW_ENOSYS): lw_loop_set_socket_reuse. */
  int (*set_socket_reuse)(lw_loop *loop, unsigned max_sockets);

  /* ---- loop integration (src/handle.c, src/signal.c) ----
   * wake_open makes the loop's wake channel, once, at the first lw_wakeup_new or
   * lw_signal_new (a loop that never asks pays no descriptor); destroy closes it.
   * wake makes the backend call lw__loop_wake_run from its dispatch soon: it may be
   * called from ANY thread and from a signal handler (Unix), so it is one
   * async-signal-safe syscall (write to an eventfd, PostQueuedCompletionStatus) and
   * touches nothing else; the core coalesces calls (loop->wake_posted). */
  int (*wake_open)(lw_loop *loop);
  int (*wake)(lw_loop *loop); /* 0, or an LW_E code */
  /* Brings the OS registration of a watch to w->events (0 = stopped). A backend that
   * still has a request naming the fd after the call (io_uring's cancelled poll)
   * sets w->busy and calls lw__watch_ops_done when it is gone; the fd must not be
   * named by anything unissued once watch_set(w, 0) returns (rule 1: the application
   * closes it next). watch_set for events != 0 may fail (LW_E code). */
  int (*watch_set)(lw_watch *w);
} lw__backend;

#ifdef _WIN32
extern const lw__backend lw__backend_iocp;
#define LW__BACKEND_DEFAULT (&lw__backend_iocp)
#else
extern const lw__backend lw__backend_epoll;
#define LW__BACKEND_DEFAULT (&lw__backend_epoll)
#endif
#ifdef LW_HAVE_URING
extern const lw__backend lw__backend_uring;
/* The IORING_SETUP_* flags of loop's ring (uring.c ur_ring_setup), 0 for another
 * backend: for the tests that check each fallback is taken when its switch is set. */
unsigned lw__uring_setup_flags(const lw_loop *loop);
#endif

/* ---- loop integration handles (src/handle.c, src/signal.c) ---- */
/* Gives the CPU away inside a spin on an atomic: the handles' registries and counters
 * are shared with a signal handler and other threads, so they spin, never lock. */
void lw__relax(void);
#ifdef _WIN32
#define LW__NSIG 32
#else
#define LW__NSIG 65
#endif

struct lw_signal {
  lw_loop *loop;
  lw__list node; /* in loop->signals */
  lw_signal_cb cb;
  void *data;
  int signum; /* 0: stopped */
  int unref;
};

struct lw_wakeup {
  lw_loop *loop;
  lw__list node; /* in loop->wakeups */
  lw_wakeup_cb cb;
  void *data;
  atomic_int pending; /* set by a send, taken by the dispatch */
  /* Sends inside lw_wakeup_send right now (any thread). A send sets pending before it
   * wakes the loop, so its callback (and a free in it) can run while the send still
   * reads w and the loop: lw_wakeup_free waits for this to reach 0 (as libuv's
   * uv__async_spin in uv_close). */
  atomic_int senders;
  int unref;
};

struct lw_watch {
  lw_loop *loop;
  lw__io io; /* kind LW__IO_WATCH; fd is the application's */
  lw_watch_cb cb;
  void *data;
  void *backend_data; /* io_uring / IOCP: the poll in flight */
  int events;         /* LW_READABLE | LW_WRITABLE asked; 0: stopped */
  unsigned unref : 1, freed : 1, busy : 1;
  lw__list node; /* in loop->watch_endgame once freed and not busy */
  /* The file the fd named at lw_watch_new (Unix: st_dev, st_ino; 0 on Windows). */
  uint64_t file_dev, file_ino;
};

/* The backend, before it names w's fd NUMBER to the kernel (epoll_ctl, a POLL_ADD):
 * 1 if the number still names the file w was made for. An application that closed the
 * fd without stopping the watcher (against the contract) may have let a connection of
 * this very loop take the number: an EPOLL_CTL_DEL or MOD by number would then remove
 * or steal that connection's registration, a POLL_ADD would report its readiness to
 * the watcher. Sockets and pipes have an inode each; anonymous inodes (eventfd,
 * timerfd) all share one, so between two of those the check cannot tell. */
int lw__watch_same_file(const lw_watch *w);

/* The backend: a request that named w's fd is gone (w->busy cleared). */
void lw__watch_ops_done(lw_watch *w);
/* The backend: w's fd is ready for `events` (LW_READABLE | LW_WRITABLE |
 * LW_WATCH_ERROR, as the OS said). Runs the callback with what was asked (+ ERROR). */
void lw__watch_event(lw_watch *w, int events);
/* The backend: its wake channel fired; runs due signal and wake-up callbacks. */
void lw__loop_wake_run(lw_loop *loop);
/* Asks the backend to wake the loop (coalesced): any thread, signal handlers. */
int lw__loop_wake(lw_loop *loop);
/* Makes the loop's wake channel if it has none yet (lw_wakeup_new, lw_signal_new). */
int lw__loop_wake_init(lw_loop *loop);
/* signal.c: runs the callbacks of the signals delivered since the last call. */
void lw__signal_dispatch(lw_loop *loop);
/* loop.c's endgame: releases freed watches. */
void lw__watch_endgame(lw_loop *loop);
/* handle.c: the walk's bookkeeping (conn.c). */
int lw__loop_conn_add(lw_conn *c);
void lw__loop_conn_remove(lw_conn *c);

struct lw_loop {
  const lw__backend *backend;
  void *backend_data;
  uint64_t now;
  lw__heap timers;
  uint64_t timer_seq;
  int stop;
  unsigned nconns, nlisteners, ntimers, ntimers_armed;
  lw__list pending; /* conns with deferred write/drain callbacks */
  lw__list endgame; /* conns waiting for on_close + free */
  lw__list endgame_listeners;
  lw__list listeners;      /* open listeners (not closing) */
  struct lw__drain *drain; /* the running drain, or NULL (drain.c) */
  int reserve_fd;          /* kept for EMFILE on accept (lw__sock_accept_shed) */
  char *rbuf;              /* shared read buffer for readiness backends */
  size_t rbuf_size;
  void *data;

  /* loop integration (src/handle.c, src/signal.c) */
  unsigned ntimers_unref_armed; /* armed and unref'd: not alive */
  unsigned nhandles;            /* signals, wake-ups, watches not yet freed (EBUSY) */
  unsigned nactive;             /* started/active and ref'd: keep lw_loop_run alive */
  unsigned nwatch_busy;         /* freed watches whose poll is still in the kernel */
  int wake_ready;               /* backend->wake_open done */
  atomic_int wake_posted;       /* a wake is on its way: no second one (coalescing) */
  lw__list wakeups, signals;
  lw__list watch_endgame;          /* freed watches, memory released in the endgame */
  int sig_slot;                    /* in signal.c's registry, -1: none */
  unsigned sig_gen;                /* the registry's generation when the slot was taken */
  unsigned nsig_started;           /* started signal watchers of this loop */
  atomic_uint sig_want[LW__NSIG];  /* started watchers per signum (read by the handler) */
  atomic_uint sig_count[LW__NSIG]; /* deliveries not yet dispatched */
  lw_conn **conns;                 /* every conn not yet freed (lw_loop_walk) */
  uint32_t nconn_slots, conn_cap;
  unsigned walking; /* lw_loop_walk running: slots are not moved */
  int conn_holes;   /* a conn freed during a walk left a NULL slot */
};

struct lw_listener {
  lw_loop *loop;
  lw__io io;
  lw_accept_cb cb;
  lw__opts *opts;
  int port;
  int closing;
  int paused;
  lw__list endgame_node;
  lw__list node; /* in loop->listeners while open (lw_loop_drain pauses them all) */
  void *data;
  uint64_t shed; /* connections refused under fd exhaustion */
  void *backend_data;
};

/* Laid out for size: an idle connection is this struct and nothing else (the bench's
 * idle-memory figure). Fields used only while the fd is open share storage with the
 * results of the close (u.live / u.end). */
struct lw_conn {
  lw_loop *loop;
  const lw_conn_options *opts; /* inside a shared lw__opts */
  lw__io io;
  lw__cs sm;
  /* Input discarded in LINGER since every byte we wrote was seen acknowledged (the
   * only input linger_discard_max counts), saturating: it fills what was padding. */
  uint32_t linger_discarded;
  lw_read_cb read_cb;
  lw_close_cb close_cb;
  lw_drain_cb drain_cb;
  lw_connect_cb connect_cb;
  void *data;
  void *backend_data;

  lw__list wq;    /* queued writes, head first */
  lw__list wdone; /* writes finished or cancelled, callbacks not yet run */
  lw__list node;  /* in loop->pending, or (once in_endgame) in loop->endgame */
  size_t wq_bytes;
  uint32_t read_size;
  uint32_t deadline_ms;    /* the close deadline in force */
  unsigned reading : 1;    /* the application wants input */
  unsigned discarding : 1; /* lingering close: read and throw away */
  unsigned connecting : 1;
  unsigned over_hwm : 1;
  unsigned drain_due : 1;
  unsigned eof_seen : 1;
  unsigned detached : 1; /* fd removed from the backend and closed */
  unsigned ops_done : 1;
  unsigned in_pending : 1;
  unsigned in_endgame : 1;
  unsigned active_open : 1;    /* made by lw_conn_connect: its SYN is in bytes_acked */
  unsigned peer_fin_first : 1; /* the kernel had the peer's FIN before ours left */
  unsigned acked_clean : 1;    /* the last SIOCOUTQ read 0: peer acked all, FIN too */
  unsigned stall_active : 1;   /* output pending: the stall clock runs */
  unsigned stall_kernel : 1;   /* stall_acked is the kernel's count (lw__sock_progress) */
  unsigned watch_errors : 1;   /* keepalive/user timeout on: keep the fd registered */
  unsigned acked_known : 1;    /* results of the close, for lw_close_info */
  unsigned time_wait : 1;
  unsigned rst_seen : 1;    /* close() with unread input turned into an RST */
  unsigned close_begun : 1; /* t0 holds close_start (else first_byte_due) */
  unsigned deadline_armed : 1;
  unsigned flush_due : 1;        /* queued bytes wait for the pending step (queue_write) */
  unsigned deliver_due : 1;      /* held input waits for the pending step (deliver_held) */
  unsigned established : 1;      /* accepted, or our connect completed */
  unsigned fin_deferred : 1;     /* lw_shutdown while connecting: FIN once connected */
  unsigned linger_acked : 1;     /* LINGER: every byte we wrote seen acknowledged */
  unsigned dead_unexplained : 1; /* the close found the socket dead, SO_ERROR taken */
  unsigned dead_silent : 1;      /* ... and empty (ops_done_event) */
  unsigned close_reported : 1;   /* on_close has run (lw_loop_walk skips it) */
  unsigned draining : 1;         /* covered by the loop's drain (drain.c) */
  unsigned drain_cb_due : 1;     /* its drain conn_cb has not run yet */
  unsigned drain_idle : 1;       /* the drain's idle-close policy applies to it */
  uint32_t ack_poll_ms;          /* ACK_WAIT / LINGER: SIOCOUTQ poll interval (backs off) */

  /* One timer node, armed for the sooner of two due times (conn_timer_sync): the close
   * deadline (close_start + deadline_ms) and aux_due, the sooner of every other clock
   * (live_fire): idle, stall, first byte, and while closing the linger bounds (LINGER)
   * and the SIOCOUTQ / SO_ERROR poll (ACK_WAIT). */
  lw__tnode tnode;
  uint64_t aux_due; /* 0: off */

  /* counters for lw_close_info; bytes queued = bytes_sent + wq_bytes (+ cancelled) */
  uint64_t bytes_sent, bytes_received, unread_discarded;

  union {
    uint64_t first_byte_due; /* !close_begun: first_byte_timeout_ms due time, 0: off */
    uint64_t close_start;    /* close_begun: loop time when the close began */
  } t0;
  union {
    struct {                /* while the fd is open */
      uint64_t last_io;     /* loop time of the last byte read, discarded or written
                               (LINGER: or when everything was seen acknowledged) */
      uint64_t stall_since; /* loop time of the last progress of the peer's ACKs */
      uint64_t stall_acked; /* acknowledged at stall_since: lw__sock_progress's count,
                               or sent - SIOCOUTQ where the OS has none */
    } live;
    struct { /* from final_snapshot on */
      uint64_t bytes_acked;
      uint64_t cancelled;      /* queued bytes that never reached the kernel */
      uint32_t peer_silent_ms; /* (ms values saturate at UINT32_MAX: 49 days) */
      uint32_t close_ms;       /* set when on_close is due */
    } end;
  } u;
};

/* ---- completions, called by backends ---- */
/* n > 0 data, 0 peer FIN, < 0 LW_E* error. */
void lw__conn_read_done(lw_conn *c, const char *buf, ssize_t n);
/* n >= 0 bytes taken by the kernel, < 0 LW_E* error. */
void lw__conn_write_done(lw_conn *c, ssize_t n);
/* n bytes of a send that completed after the connection was detached (conn.c). */
void lw__conn_write_late(lw_conn *c, size_t n);
void lw__conn_connect_done(lw_conn *c, int status);
/* The backend holds input the connection now wants: deliver_held from the pending step. */
void lw__conn_deliver_due(lw_conn *c);
/* n input bytes a receive brought after the connection was detached (a completion the
 * close overtook): unread input, counted once. held: the close counted them already as
 * held input (the completion was posted when conn_detach looked). Otherwise they came
 * from the kernel's queue the close counted -- *inq_left, what is left of the
 * inq_counted conn_detach was given, which this lowers -- or arrived since: only those
 * are added. Returns 1 if the close must be an RST -- a naive close, which the kernel
 * would have made one had the bytes stayed queued (B13), but the receive took them:
 * the backend then sets SO_LINGER{1,0} before its close. */
int lw__conn_read_late(lw_conn *c, size_t n, int held, size_t *inq_left);
/* err (LW_E*): the error a receive or send still in flight at the close completed with.
 * The kernel hands a socket's error out once (sock_error), so an operation in flight
 * can take it before the close's snapshot reads SO_ERROR -- io_uring runs its task
 * work at any syscall's return unless the ring has DEFER_TASKRUN. When the snapshot
 * found the socket already dead but no error left, this names what killed it. */
void lw__conn_error_late(lw_conn *c, int err);
void lw__conn_ops_done(lw_conn *c);
/* fd >= 0: a new connection; fd < 0: an LW_E* error (EMFILE...). */
void lw__listener_accept_done(lw_listener *l, int fd, int status);

/* What the conn wants from its backend right now. */
int lw__conn_wants_read(const lw_conn *c);
int lw__conn_wants_write(const lw_conn *c);
/* Neither read nor write wanted, but socket errors must still end the connection (a
 * keepalive or user timeout while the application is not reading). */
int lw__conn_wants_errors(const lw_conn *c);
/* 1 when these *n iovecs (from lw__conn_fill_iov) hold everything queued and our FIN
 * follows once they are sent (lw_close / lw_shutdown with bytes queued): the backend
 * then sends them with MSG_MORE, so that the kernel holds the last partial segment and
 * the shutdown(SHUT_WR) right after (tcp_send_fin) sets FIN on it and pushes it.
 * MSG_MORE holds only a segment smaller than a full one: a big last send ends on full
 * segments that leave at once, and the FIN then follows alone -- a peer that reads the
 * answer and closes could close first (the reason would flip: issue 14.6). So when
 * more than LW__FIN_TAIL bytes are left, it trims the iovecs (*n and the last length)
 * to all but the last LW__FIN_TAIL bytes and returns 0: those go now, the tail with
 * MSG_MORE in the next send. */
#define LW__FIN_TAIL 1024u
int lw__conn_last_before_fin(const lw_conn *c, lw__iov *iov, int *n);
/* Fills up to max iovecs from the write queue; returns the count. */
int lw__conn_fill_iov(const lw_conn *c, lw__iov *iov, int max);

void lw__loop_pending_add(lw_conn *c);

/* ---- drain (drain.c) ---- */
/* A connection accepted while a drain runs: covered too. */
void lw__drain_accepted(lw_loop *loop, lw_conn *c);
/* A draining connection's on_close is about to run (its info): counted in the report. */
void lw__drain_conn_ended(lw_loop *loop, const lw_close_info *info);
/* After an endgame: finishes the drain if nothing it covers is left. */
void lw__drain_check(lw_loop *loop);
/* conn.c, for the drain: the idle test of the policy; the policy's graceful close and
 * the deadline's reset, both with reason DRAIN. */
int lw__conn_drain_idle(lw_conn *c, uint64_t idle_min_ms);
void lw__conn_drain_close(lw_conn *c);
int lw__conn_drain_reset(lw_conn *c);

/* ---- OS socket helpers (src/linux/sockopt.c; src/win/ on Windows) ---- */
int lw__err_from_errno(int e);
int lw__sock_nonblock_cloexec(int fd);
/* close() on POSIX. On Windows closesocket() -- and for the socket of a connection
 * just detached, the IOCP backend's close: at once for an abort (SO_LINGER{1,0} set),
 * else after the cancelled WSARecv completes (src/win/iocp.c, libuv #3034). */
int lw__sock_close(int fd);
/* One non-blocking sendmsg of n iovecs (MSG_NOSIGNAL, and MSG_MORE if more): bytes
 * taken, 0 if none could be (EAGAIN, EINTR), or an LW_E code. epoll's every send, and
 * io_uring's last send before a FIN (uring.c ur_submit_send). */
ssize_t lw__sock_send_now(int fd, const lw__iov *iov, int n, int more);
int lw__sock_listen(const char *host, int port, int backlog, int *out_fd, int *out_port);
/* SO_ACCEPTCONN + SOCK_STREAM, made non-blocking; *port from getsockname. */
int lw__sock_check_listening(int fd, int *port);
/* Accept-queue length of a listening socket; LW_ENOSYS where the OS cannot tell. */
int lw__sock_accept_queue(int fd);
int lw__sock_connect_start(const char *host, int port, int *out_fd);
int lw__sock_so_error(int fd);
int lw__sock_shutdown_wr(int fd);
int lw__sock_set_linger0(int fd);
int lw__sock_set_nodelay(int fd, int on);
/* SO_KEEPALIVE (if keepalive) + TCP_KEEPIDLE/KEEPINTVL (seconds) / KEEPCNT, and
 * TCP_USER_TIMEOUT (ms); a 0 value leaves that knob at the kernel's default. */
int lw__sock_set_liveness(int fd, int keepalive, unsigned idle_s, unsigned intvl_s,
                          unsigned cnt, unsigned user_timeout_ms);
/* Unacknowledged bytes in the send queue (SIOCOUTQ); -1 if unknown. */
long lw__sock_outq(int fd);
/* Unread bytes in the receive queue (SIOCINQ); -1 if unknown. */
long lw__sock_inq(int fd);
/* The kernel's own clock of the connection, for the liveness verdicts (conn.c live_fire):
 * *acked, sequence space the peer has acknowledged so far (tcpi_bytes_acked, raw: only
 * its increases mean anything) and *quiet_ms, since data last went either way
 * (tcpi_last_data_recv / _sent). 0, or -1 where the OS cannot tell cheaply (Windows:
 * its snapshot walks every socket of the machine). */
int lw__sock_progress(int fd, uint64_t *acked, uint32_t *quiet_ms);
typedef struct lw__tcp_snapshot {
  int state;            /* LW__TCP_* below, -1 unknown */
  uint64_t bytes_acked; /* tcpi_bytes_acked, raw (see lw__sock_snapshot) */
  int acked_known;
  uint32_t rtt_us;
  uint32_t silent_ms; /* since the peer last sent anything (min of last ack/data recv) */
  int silent_known;
} lw__tcp_snapshot;
enum {
  LW__TCP_ESTABLISHED = 1,
  LW__TCP_FIN_WAIT1 = 4,
  LW__TCP_FIN_WAIT2 = 5,
  LW__TCP_TIME_WAIT = 6,
  LW__TCP_CLOSE = 7,
  LW__TCP_CLOSE_WAIT = 8,
  LW__TCP_LAST_ACK = 9,
  LW__TCP_CLOSING = 11
};
void lw__sock_snapshot(int fd, lw__tcp_snapshot *s);
/* 1 if the kernel already holds the peer's FIN (read side shut down by the peer), 0 if
 * not or unknown. Asked once per graceful close, just before our FIN. */
int lw__sock_peer_fin_queued(int fd);
/* Accepts and closes every pending connection using a reserved descriptor, so that a
 * listener at EMFILE does not stay readable forever (libuv's trick). Returns how many. */
int lw__sock_accept_shed(int lfd, int *reserve);
int lw__sock_reserve_open(void);
uint64_t lw__now_ms(void);
/* src/addr.c: numeric host (or "localhost") + port -> address; its port back. */
struct sockaddr_storage;
int lw__addr_parse(const char *host, int port, struct sockaddr_storage *ss, int *len);
int lw__addr_port(const struct sockaddr_storage *ss);

#endif
