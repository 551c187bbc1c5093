/*
 * uring.c - the io_uring backend: a completion kernel behind the same seam as epoll.
 *
 * Operations and what each one is for:
 *   accept   multishot accept (one SQE, a CQE per connection; re-armed when the kernel
 *            drops IORING_CQE_F_MORE, e.g. after EMFILE)
 *   recv     one in flight per connection, into a provided-buffer ring shared by the
 *            loop (IOSQE_BUFFER_SELECT): an idle connection pins no buffer
 *   sendmsg  one in flight per connection, gathering the head of the write queue
 *   poll     POLLOUT, for a non-blocking connect() in progress; POLLERR alone, to watch
 *            for errors (liveness) while nothing else is in flight; POLLIN on a
 *            listener that hit EMFILE (see ur_arm_poll)
 *   (send)   the last bytes before a FIN go by a direct sendmsg (ur_submit_send)
 *   cancel   IORING_OP_ASYNC_CANCEL of each op still in flight, by user_data, when the
 *            connection is detached (never by fd: see ur_submit_cancels)
 *   close    IORING_OP_CLOSE of a detached connection's or listener's fd (rule 1)
 *   read     8 bytes of the loop's wake eventfd (lw_wakeup_send, signals), re-armed
 *            after each completion; the eventfd is blocking, so the read waits in the
 *            kernel (an O_NONBLOCK file would complete at once with -EAGAIN)
 *   poll     (watch) one single-shot POLL_ADD per started lw_watch, re-armed after its
 *            callback: level-triggered as poll(2). The fd is the application's: never
 *            closed here; lw_watch_stop/free cancel the poll by user_data and submit at
 *            once, so no unissued SQE names the fd when they return (rule 1: the
 *            application closes it next), and the lw_watch is freed only after the
 *            poll's CQE (the kernel holds its user_data until then)
 *
 * THE RULES that make whole classes of bugs impossible here (docs/architecture.md):
 *   1. No fd number is closed while an SQE that names it may still be unissued. An SQE
 *      takes its file only when the kernel issues it (io_assign_file, at submit); until
 *      then it names a NUMBER, and a close() in between lets the next socket(), accept()
 *      or connect() take that number: the queued sendmsg then sends one connection's
 *      bytes to another peer, a queued recv steals another connection's input. So this
 *      backend never close()s a connection's or a listener's fd itself: .close_fd
 *      queues an IORING_OP_CLOSE behind every SQE of that fd, and the kernel issues the
 *      ring in order. An op already issued holds its own reference to the file, so the
 *      socket lives (and an RST from SO_LINGER{1,0} waits) until its cancel completes.
 *      The close is an op of the connection: on_close comes after its CQE, so on_close
 *      also means "the fd is closed".
 *   2. A write callback runs only once the kernel is done with its buffer: the core
 *      holds every callback of a detached connection until lw__conn_ops_done, asked
 *      before each one (conn.c lw__conn_run_pending).
 *   3. A provided buffer has one owner at a time: the ring (the kernel may pick it), or
 *      this file between the CQE that names it and ur_buf_return right after its
 *      dispatch. It is never kept past that: input that must wait (reading stopped) is
 *      COPIED into the connection's own stash. So all UR_BUFS buffers are back in the
 *      ring at the end of every dispatch (asserted), a connection that stops reading
 *      cannot starve the others, and ur_buf_take/ur_buf_return assert each handover.
 *   4. Running out of buffers is backpressure, not a spin: a recv that completes with
 *      -ENOBUFS (a burst larger than the ring completed before we reaped) is re-armed
 *      once per wait, after the dispatch has given every buffer back (the starved
 *      list, at the end of ur_poll).
 *   5. lw_conn_read_stop holds any result of a recv already in flight -- data or the
 *      peer's FIN -- in the stash until lw_conn_read_start (the core's held_input rule,
 *      internal.h); errors still end the connection at once. A completion's bytes go
 *      to the application read_size at a time, as far as it reads; the rest is held.
 *      Held input is delivered from the loop's pending step (deliver_held), never
 *      inside lw_conn_read_start or another lw_* call.
 *   6. A receive's bytes are never lost from the count: a connection's close waits for
 *      its recv's CQE (cancelled, or completed with bytes that then count as unread;
 *      a naive close over them resets, as the kernel would: lw__conn_read_late).
 *
 * The A2 contract on a real completion kernel: after close(fd) the in-flight requests
 * still hold the file (and the kernel may still write into our buffers), so the
 * connection is freed -- and on_close runs -- only after the last CQE that names it
 * has been reaped (lw__conn_ops_done). A CQE that arrives for a connection already
 * detached is consumed and ignored; its fd number may already belong to someone else,
 * which does not matter because CQEs are matched by user_data (our op), never by fd.
 *
 * Task work: a completion that needs our task to finish it (a recv woken by incoming
 * data, a cancelled accept that still holds its listener) runs as task work. By default
 * the kernel interrupts the thread for it, inside whatever syscall it is in (on churn,
 * 19% of the server's CPU went through get_signal under shutdown, sendmsg, ioctl).
 * COOP_TASKRUN | TASKRUN_FLAG (5.19), the default, lets it wait for our next entry into
 * the kernel (any syscall; the flag tells liburing to enter): no interrupt, and no tie
 * between the ring and a thread. SINGLE_ISSUER | DEFER_TASKRUN (6.1) runs it only
 * inside our io_uring_enter(GETEVENTS), in a batch, and is cheaper again (bench/ab.sh,
 * 64 B churn: 31.4 vs 36.1 us/conn), but ties the ring to ONE thread: every later
 * io_uring_enter from another fails with -EEXIST. A loop may be made, and closed, by a
 * thread other than the one that runs it (examples/respond --threads makes its loops in
 * main, runs them in workers, closes them in main), so it is opt-in: LW_URING_DEFER=1,
 * for programs whose every loop lives its whole life -- lw_loop_new to lw_loop_close --
 * in one thread. The ring is then set up R_DISABLED and enabled by the first wait or
 * ur_submit_now (a listener close or pause, whose effect must be immediate), in the
 * calling thread, which becomes its single issuer. Switches (ur_ring_setup), each with
 * a ctest run: LW_URING_DEFER=1 -> defer; LW_URING_NO_COOP=1 -> neither (the kernel's
 * default: each completion interrupts the thread).
 *
 * Feature probing: io_uring_queue_init fails where the kernel lacks io_uring or a
 * seccomp filter / sysctl (kernel.io_uring_disabled) refuses it; the opcodes are checked
 * with io_uring_get_probe_ring; the provided-buffer ring needs Linux 5.19. Any refusal
 * makes lw_loop_new fall back to epoll (see loop.c).
 */
#include "internal.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define UR_ENTRIES 1024
#define UR_BUFS 512             /* provided buffers (power of two) */
#define UR_BUF_SIZE (16 * 1024) /* 8 MiB for the loop, shared by every connection */
#define UR_BGID 7
#define UR_DISCARD_LEN (256 * 1024) /* per discarding recv (MSG_TRUNC: nothing copied) */
#define UR_MAX_IOV 16
#define UR_BATCH 256
#define UR_ROUNDS 4

enum {
  UR_OP_RECV = 1,
  UR_OP_SEND,
  UR_OP_POLL,
  UR_OP_ACCEPT,
  UR_OP_LPOLL,
  UR_OP_ERRPOLL,
  UR_OP_CLOSE,
  UR_OP_LCLOSE,
  UR_OP_WAKE,
  UR_OP_WATCH
};

typedef struct ur_op {
  int kind;
  void *owner; /* lw_conn* or lw_listener*; NULL: orphan (listener gone) */
} ur_op;

typedef struct ur_conn {
  ur_op recv, send, poll, epoll_, close;
  unsigned inflight;
  unsigned recv_inflight : 1, send_inflight : 1, poll_inflight : 1, err_inflight : 1;
  /* Rule 5: what a recv brought after the application stopped reading -- a copy of the
   * bytes (rule 3: never the provided buffer) and/or the peer's FIN -- kept until
   * reading resumes. Freed with the connection (ur_conn_free), never at detach: a read
   * callback fed from it may be running when the connection is aborted. */
  char *stash;
  unsigned stash_off, stash_len;
  /* The completion being delivered (in its provided buffer, during its dispatch):
   * what is left of it is held input too (a read callback may close naively). */
  unsigned cqe_off, cqe_len;
  unsigned stash_eof : 1;
  unsigned delivering : 1;      /* input is being handed over: no nested delivery, no recv */
  unsigned close_wait_recv : 1; /* detached: its close waits for the recv's CQE (rule 6) */
  size_t inq_counted; /* SIOCINQ the close counted (conn_detach): a late recv took it */
  unsigned
      recv_seen_detach : 1; /* its recv's CQE was posted at detach: held_input counted it */
  struct iovec iov[UR_MAX_IOV];
  struct msghdr msg;
  lw__list retry_node; /* in ur_state.retry while a submission is owed */
  unsigned retry : 1;
  unsigned cancel_owed : 1; /* detached, and its cancels still wait for SQEs */
  unsigned close_owed : 1;  /* detached, and its IORING_OP_CLOSE still waits for an SQE */
  unsigned starved : 1;     /* its recv got -ENOBUFS: re-armed after the dispatch */
  lw__list starved_node;
} ur_conn;

/* A completion copied out of the CQ, waiting for its dispatch (ur_poll). */
typedef struct ur_ev {
  void *data;
  int res;
  unsigned flags;
} ur_ev;

typedef struct ur_state {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  char *bufs;
  int orphans; /* accept ops of closed listeners whose last CQE is still due */
  /* Connections whose SQE could not be had (SQ full and the kernel busy flushing a
   * CQ overflow): their update is retried after the batch, never dropped -- a dropped
   * recv would leave a connection waiting forever. */
  lw__list retry;
  lw__list starved; /* rule 4: recvs that got -ENOBUFS, re-armed after the dispatch */
  /* Rule 3's bookkeeping: who owns each provided buffer (0: the ring, 1: this file,
   * between its CQE and ur_buf_return), and how many this file holds. */
  unsigned char buf_out[UR_BUFS];
  unsigned bufs_out;
  char *scratch; /* UR_DISCARD_LEN bytes, never read (discarding recvs, MSG_TRUNC) */
  /* The batch being dispatched (ur_poll): entries from batch_next on are completions
   * the kernel has posted but this file has not yet handed on (ur_recv_pending). */
  const ur_ev *batch;
  unsigned batch_n, batch_next;
  /* Listener fds whose IORING_OP_CLOSE found no SQE (rule 1): queued at the next wait. */
  int *close_owed;
  unsigned nclose_owed, close_owed_cap;
  /* The loop's wake channel: an eventfd and the read that waits on it. */
  int wakefd;
  ur_op wake_op;
  uint64_t wake_buf;
  unsigned wake_inflight : 1, wake_owed : 1;
  /* Set up R_DISABLED (DEFER_TASKRUN, ur_ring_setup) and not yet enabled: until the
   * first wait, io_uring_enter fails (-EBADFD) and every SQE stays queued in order. */
  unsigned disabled : 1;
} ur_state;

/* A started lw_watch's poll (lw_watch.backend_data, freed by the core). */
typedef struct ur_watch {
  ur_op op;
  unsigned inflight : 1, cancelled : 1;
  unsigned mask; /* poll events of the poll in flight */
} ur_watch;

static ur_state *ur(lw_loop *loop) { return loop->backend_data; }
static ur_conn *urc(lw_conn *c) { return c->backend_data; }

/* ---- ring plumbing ---- */

static struct io_uring_sqe *ur_sqe(ur_state *s) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
  if (!sqe) {
    /* SQ full: hand what we have to the kernel and take a slot again. This can fail
     * (-EBUSY while the kernel flushes a CQ overflow): callers then defer. */
    io_uring_submit(&s->ring);
    sqe = io_uring_get_sqe(&s->ring);
  }
  return sqe;
}

static void ur_defer(lw_conn *c) {
  ur_conn *u = c->backend_data;
  if (u->retry)
    return;
  u->retry = 1;
  lw__list_push(&((ur_state *)c->loop->backend_data)->retry, &u->retry_node);
}

/* Rule 3: a CQE handed buffer bid to us. */
static void ur_buf_take(ur_state *s, int bid) {
  assert(bid >= 0 && bid < UR_BUFS);
  assert(!s->buf_out[bid] && "provided buffer reported twice");
  s->buf_out[bid] = 1;
  s->bufs_out++;
}

static void ur_buf_return(ur_state *s, int bid) {
  assert(bid >= 0 && bid < UR_BUFS);
  assert(s->buf_out[bid] && "provided buffer returned twice");
  s->buf_out[bid] = 0;
  s->bufs_out--;
  io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * UR_BUF_SIZE, UR_BUF_SIZE,
                        (unsigned short)bid, io_uring_buf_ring_mask(UR_BUFS), 0);
  io_uring_buf_ring_advance(s->br, 1);
}

/* 1 if the environment switch `name` is set (to anything but "" or "0"): forces the
 * fallback of a feature, so that each fallback path can be run on a kernel that has the
 * feature (tests/README-torture.md). */
static int ur_env_off(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Task work (see the top comment): the setup flags, best first, each refused with
 * -EINVAL by a kernel that lacks it; defer only when LW_URING_DEFER=1 asks for it.
 *   defer  SINGLE_ISSUER | DEFER_TASKRUN (6.1): completions run only inside our
 *          io_uring_enter(GETEVENTS), in a batch. R_DISABLED: the single issuer is the
 *          thread that enables the ring (first wait or ur_submit_now), not the one
 *          that made the loop.
 *   coop   COOP_TASKRUN | TASKRUN_FLAG (5.19): no interrupt, the work waits for our
 *          next entry into the kernel (any syscall); the flag tells liburing to enter.
 *   plain  the default: each completion interrupts the thread (TWA_SIGNAL), whatever
 *          syscall it is in -- measured as 19% of the server's CPU on churn (perf:
 *          get_signal under shutdown, sendmsg, ioctl). */
static int ur_ring_setup(ur_state *s) {
  static const unsigned modes[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                       IORING_SETUP_R_DISABLED,
                                   IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, 0};
  unsigned first = ur_env_off("LW_URING_DEFER") ? 0 : 1;
  if (ur_env_off("LW_URING_NO_COOP"))
    first = 2;
  int r = -EINVAL;
  for (unsigned m = first; m < sizeof(modes) / sizeof(modes[0]); m++) {
    /* A CQ far larger than the SQ: every connection keeps a recv in flight, and a burst
     * can complete thousands at once; overflowing the CQ makes the kernel stall
     * submissions while it flushes (-EBUSY). 64k CQEs cost 1 MiB. */
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    params.flags = IORING_SETUP_CQSIZE | modes[m];
    params.cq_entries = 65536;
    r = io_uring_queue_init_params(UR_ENTRIES, &s->ring, &params);
    if (r != -EINVAL)
      break;
  }
  if (r == 0)
    s->disabled = (s->ring.flags & IORING_SETUP_R_DISABLED) != 0;
  return r;
}

/* Enables a ring set up R_DISABLED (ur_ring_setup), once, from the loop's thread: the
 * calling thread becomes its single issuer. io_uring_enable_rings is declared by
 * Debian's liburing 2.3 but not exported: the register call itself (Linux 5.10). */
static int ur_enable(ur_state *s) {
  if (!s->disabled)
    return 0;
  long r =
      syscall(__NR_io_uring_register, s->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
  if (r < 0)
    return -errno;
  s->disabled = 0;
  return 0;
}

static int ur_init(lw_loop *loop) {
  ur_state *s = calloc(1, sizeof(*s));
  if (!s)
    return LW_ENOMEM;
  lw__list_init(&s->retry);
  lw__list_init(&s->starved);
  s->wakefd = -1;
  int r = ur_ring_setup(s);
  if (r < 0) {
    free(s);
    return lw__err_from_errno(-r);
  }
  struct io_uring_probe *p = io_uring_get_probe_ring(&s->ring);
  int ok = p && io_uring_opcode_supported(p, IORING_OP_RECV) &&
           io_uring_opcode_supported(p, IORING_OP_SENDMSG) &&
           io_uring_opcode_supported(p, IORING_OP_ACCEPT) &&
           io_uring_opcode_supported(p, IORING_OP_POLL_ADD) &&
           io_uring_opcode_supported(p, IORING_OP_ASYNC_CANCEL) &&
           io_uring_opcode_supported(p, IORING_OP_READ);
  if (p)
    io_uring_free_probe(p);
  if (!ok) {
    io_uring_queue_exit(&s->ring);
    free(s);
    return LW_ENOSYS;
  }
  /* The provided-buffer ring (Linux 5.19+): page-aligned ring of buffer descriptors. */
  size_t ring_size = UR_BUFS * sizeof(struct io_uring_buf);
  void *mem = NULL;
  if (posix_memalign(&mem, 4096, ring_size) != 0 ||
      !(s->bufs = malloc((size_t)UR_BUFS * UR_BUF_SIZE)) ||
      !(s->scratch = malloc(UR_DISCARD_LEN))) {
    free(s->bufs);
    free(mem);
    io_uring_queue_exit(&s->ring);
    free(s);
    return LW_ENOMEM;
  }
  s->br = mem;
  io_uring_buf_ring_init(s->br);
  struct io_uring_buf_reg reg = {
      .ring_addr = (unsigned long)s->br, .ring_entries = UR_BUFS, .bgid = UR_BGID};
  r = io_uring_register_buf_ring(&s->ring, &reg, 0);
  if (r < 0) {
    free(s->scratch);
    free(s->bufs);
    free(mem);
    io_uring_queue_exit(&s->ring);
    free(s);
    return LW_ENOSYS;
  }
  for (int i = 0; i < UR_BUFS; i++)
    io_uring_buf_ring_add(s->br, s->bufs + (size_t)i * UR_BUF_SIZE, UR_BUF_SIZE,
                          (unsigned short)i, io_uring_buf_ring_mask(UR_BUFS), i);
  io_uring_buf_ring_advance(s->br, UR_BUFS);
  loop->backend_data = s;
  return 0;
}

static int ur_poll(lw_loop *loop, int timeout_ms);

static void ur_destroy(lw_loop *loop) {
  ur_state *s = ur(loop);
  /* Only accepts of closed listeners can still be in flight (every connection waited
   * for its last CQE before it was freed). Reap their cancellations, bounded, so
   * their ops are freed; exiting the ring cancels anything left. */
  for (int i = 0; i < 100 && (s->orphans > 0 || s->nclose_owed > 0); i++)
    ur_poll(loop, 10);
  io_uring_submit(&s->ring);
  /* Closes still owed now can never be issued by this ring: SQEs it holds die with it,
   * so nothing can name these numbers any more. */
  for (unsigned i = 0; i < s->nclose_owed; i++)
    close(s->close_owed[i]);
  free(s->close_owed);
  io_uring_queue_exit(&s->ring);
  /* After the exit: the read that named it died with the ring (rule 1). */
  if (s->wakefd >= 0)
    close(s->wakefd);
  free(s->bufs);
  free(s->br);
  free(s->scratch);
  free(s);
  loop->backend_data = NULL;
}

/* ---- connections ---- */

static int ur_conn_open(lw_conn *c) {
  ur_conn *u = calloc(1, sizeof(*u));
  if (!u)
    return LW_ENOMEM;
  u->recv = (ur_op){UR_OP_RECV, c};
  u->send = (ur_op){UR_OP_SEND, c};
  u->poll = (ur_op){UR_OP_POLL, c};
  u->epoll_ = (ur_op){UR_OP_ERRPOLL, c};
  u->close = (ur_op){UR_OP_CLOSE, c};
  lw__list_init(&u->starved_node);
  c->backend_data = u;
  return 0;
}

static void ur_conn_free(lw_conn *c) {
  ur_conn *u = c->backend_data;
  if (u && u->retry)
    lw__list_remove(&u->retry_node);
  if (u && u->starved)
    lw__list_remove(&u->starved_node);
  if (u)
    free(u->stash);
  free(c->backend_data);
  c->backend_data = NULL;
}

static void ur_submit_recv(lw_conn *c) {
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe) {
    ur_defer(c);
    return;
  }
  if (c->discarding) {
    /* A lingering close throws input away: MSG_TRUNC makes TCP drop it from the queue
     * without copying (tcp_recvmsg), so no provided buffer is taken. The scratch
     * buffer is never read: it is there only so that a kernel that copied anyway
     * would write somewhere harmless. */
    io_uring_prep_recv(sqe, c->io.fd, s->scratch, UR_DISCARD_LEN, MSG_TRUNC);
  } else {
    /* A whole buffer, whatever read_size: the application still gets read_size bytes
     * per callback (ur_feed) and what it does not take is held (rule 5), which every
     * close counts as the kernel's queue (held_input). A recv of read_size bytes cost
     * one trip around the ring per read_size bytes: with read_size 1 (respond's request
     * line), four for "GET\n" (bench/ab.sh 64 64 5, medians: 25.2 -> 24.1 us/conn). */
    io_uring_prep_recv(sqe, c->io.fd, NULL, UR_BUF_SIZE, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UR_BGID;
  }
  io_uring_sqe_set_data(sqe, &u->recv);
  u->recv_inflight = 1;
  u->inflight++;
}

static void ur_submit_send(lw_conn *c) {
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  int n = lw__conn_fill_iov(c, u->iov, UR_MAX_IOV);
  /* MSG_NOSIGNAL: EPIPE instead of SIGPIPE, as on every other path. MSG_MORE: the FIN
   * rides on the last segment (lw__conn_last_before_fin, which may keep a small tail
   * for the next send). That last send is made here, directly (nothing else is in
   * flight, so nothing can be overtaken): the shutdown then follows it at once, inside
   * lw__conn_write_done, as on epoll. Through the ring it would follow only once the
   * CQE was reaped, and an ACK arriving meanwhile pushes the corked tail out alone
   * (MSG_MORE holds it only until the next push): a peer that closes on reading the
   * answer would close first (torture: a 92670-byte answer, peer-closed-first). What
   * the socket does not take now goes by the ring. */
  int more = lw__conn_last_before_fin(c, u->iov, &n);
  if (more) {
    ssize_t w = lw__sock_send_now(c->io.fd, u->iov, n, 1);
    if (w != 0) {
      lw__conn_write_done(c, w); /* may shut down, or end the connection */
      if (c->detached || !lw__conn_wants_write(c) || u->send_inflight)
        return;
      n = lw__conn_fill_iov(c, u->iov, UR_MAX_IOV);
      more = lw__conn_last_before_fin(c, u->iov, &n);
    }
  }
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe) {
    ur_defer(c);
    return;
  }
  memset(&u->msg, 0, sizeof(u->msg));
  u->msg.msg_iov = u->iov;
  u->msg.msg_iovlen = (size_t)n;
  io_uring_prep_sendmsg(sqe, c->io.fd, &u->msg, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
  io_uring_sqe_set_data(sqe, &u->send);
  u->send_inflight = 1;
  u->inflight++;
}

static int ur_stash_held(const ur_conn *u) { return u->stash != NULL || u->stash_eof; }

/* Hands bytes [*off, len) of p to the core, read_size at a time (the size in force at
 * each callback), while the application wants them. p stays valid throughout. */
static void ur_feed(lw_conn *c, const char *p, unsigned *off, unsigned len) {
  while (*off < len && !c->detached && lw__conn_wants_read(c)) {
    size_t n = LW__MIN((size_t)(len - *off), c->discarding ? (size_t)len : c->read_size);
    const char *q = p + *off;
    *off += (unsigned)n;
    lw__conn_read_done(c, q, (ssize_t)n);
  }
}

/* Delivers held input (rule 5) while the application wants it, bytes first, then the
 * FIN; from the pending step only (ur_deliver_held). Not reentrant by design: a read
 * callback fed from here that calls lw_conn_read_start (a parser switch) lands in
 * ur_conn_update, which must neither deliver the next piece inside this one nor submit
 * a recv ahead of it: the loop here goes on once the callback returns. The stash is
 * freed only here, once consumed and no callback reads it, or with the connection. */
static void ur_deliver_stash(lw_conn *c) {
  ur_conn *u = urc(c);
  if (u->delivering)
    return;
  u->delivering = 1;
  if (u->stash) {
    ur_feed(c, u->stash, &u->stash_off, u->stash_len);
    if (u->stash_off == u->stash_len) {
      free(u->stash);
      u->stash = NULL;
      u->stash_off = u->stash_len = 0;
    }
  }
  if (!u->stash && u->stash_eof && !c->detached && lw__conn_wants_read(c)) {
    u->stash_eof = 0;
    lw__conn_read_done(c, NULL, 0);
  }
  u->delivering = 0;
}

static void ur_conn_update(lw_conn *c);

static void ur_deliver_held(lw_conn *c) {
  ur_deliver_stash(c);
  ur_conn_update(c); /* the next recv, once nothing is held */
}

/* Rule 6's eyes: c's recv has completed in the kernel but its CQE has not been handed
 * on yet -- it waits in the batch being dispatched or in the CQ. Its bytes (or its FIN)
 * left the kernel's queue: SIOCINQ no longer shows them, and only this can. The scan
 * is bounded by the completions not yet reaped, and is made only where the answer
 * matters (a close's final snapshot, a first-byte timeout). */
static int ur_recv_pending(const lw_conn *c, int *res) {
  ur_state *s = ur(c->loop);
  const ur_conn *u = c->backend_data;
  if (!u->recv_inflight)
    return 0;
  for (unsigned i = s->batch_next; i < s->batch_n; i++)
    if (s->batch[i].data == &u->recv) {
      *res = s->batch[i].res;
      return 1;
    }
  unsigned head;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&s->ring, head, cqe) {
    if (io_uring_cqe_get_data(cqe) == &u->recv) {
      *res = cqe->res;
      return 1;
    }
  }
  return 0;
}

static size_t ur_held_input(const lw_conn *c, int *fin) {
  const ur_conn *u = c->backend_data;
  size_t n = (size_t)(u->stash_len - u->stash_off) + (size_t)(u->cqe_len - u->cqe_off);
  *fin = u->stash_eof;
  int res;
  if (ur_recv_pending(c, &res)) {
    if (res > 0)
      n += (size_t)res;
    else if (res == 0)
      *fin = 1;
  }
  return n;
}

static void ur_conn_update(lw_conn *c) {
  if (c->detached)
    return;
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  if (c->connecting) {
    if (!u->poll_inflight) {
      struct io_uring_sqe *sqe = ur_sqe(s);
      if (!sqe) {
        ur_defer(c);
        return;
      }
      io_uring_prep_poll_add(sqe, c->io.fd, POLLOUT);
      io_uring_sqe_set_data(sqe, &u->poll);
      u->poll_inflight = 1;
      u->inflight++;
    }
    return;
  }
  /* Held input (rule 5) stops new receives, never our writes: a server that stopped
   * reading still answers. Wanted again, it is delivered from the pending step. */
  int held = ur_stash_held(u) || u->delivering;
  if (ur_stash_held(u) && !u->delivering && lw__conn_wants_read(c))
    lw__conn_deliver_due(c);
  if (!held && lw__conn_wants_read(c) && !u->recv_inflight && !u->starved)
    ur_submit_recv(c);
  /* A recv in flight after read_stop is left alone: if it completes with data, the
   * bytes wait in the stash (cancelling it would race with its completion anyway). */
  if (lw__conn_wants_write(c) && !u->send_inflight)
    ur_submit_send(c);
  /* Liveness on (or the first-byte wait) and nothing in flight to carry an error (a
   * pending recv or send completes with ETIMEDOUT by itself): poll for POLLERR, so a
   * dead peer ends the connection while the application is not reading. Multishot:
   * the kernel reports POLLRDHUP and POLLHUP whatever the mask (IO_POLL_UNMASK) and
   * neither clears, so a one-shot poll re-armed on a peer's FIN waiting unread would
   * complete at once, forever (torture: a spin of 190,000 loop iterations a second);
   * armed once, the multishot poll reports again only on a wakeup -- the error that
   * comes later included (a peer that sent its FIN, then vanished: test_dead_peer
   * halfclosed_nft_drop). It stays armed until the close cancels it. */
  if (lw__conn_wants_errors(c) && !c->io.hup && !u->recv_inflight && !u->send_inflight &&
      !u->err_inflight) {
    struct io_uring_sqe *sqe = ur_sqe(s);
    if (!sqe)
      ur_defer(c);
    if (sqe) {
      io_uring_prep_poll_multishot(sqe, c->io.fd, POLLERR);
      io_uring_sqe_set_data(sqe, &u->epoll_);
      u->err_inflight = 1;
      u->inflight++;
    }
  }
}

/* Cancels each op of c still in flight, by its user_data. Not by fd: a cancel by fd
 * (IORING_ASYNC_CANCEL_FD) walks every pending request of the ring, so closing 10k
 * connections that each have a recv pending costs 10k x 10k steps -- measured as a
 * 10-second stall of the loop in tests/test_soak.c. By user_data it is a hash lookup.
 * And since an in-flight request holds its own reference to the file, the core may
 * close(fd) before these cancels reach the kernel: they go with the next submit. */
static void ur_submit_cancels(lw_conn *c) {
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  ur_op *ops[4] = {u->recv_inflight ? &u->recv : NULL, u->send_inflight ? &u->send : NULL,
                   u->poll_inflight ? &u->poll : NULL, u->err_inflight ? &u->epoll_ : NULL};
  u->cancel_owed = 0;
  for (int i = 0; i < 4; i++) {
    if (!ops[i])
      continue;
    struct io_uring_sqe *sqe = ur_sqe(s);
    if (!sqe) {
      /* Owed, never dropped: an uncancelled recv would keep the socket (and this
       * connection) alive for as long as the peer stays silent. */
      u->cancel_owed = 1;
      ur_defer(c);
      return;
    }
    io_uring_prep_cancel(sqe, ops[i], 0);
    io_uring_sqe_set_data(sqe, NULL); /* the cancel's own CQE is ignored */
  }
}

/* The core calls .close_fd right after this: the connection's ops done come with the
 * CQE of its IORING_OP_CLOSE (or of a cancelled op, if later). */
static void ur_conn_detach(lw_conn *c, size_t inq_counted) {
  ur_conn *u = urc(c);
  if (u->retry) {
    lw__list_remove(&u->retry_node); /* nothing more is owed to a closed fd */
    u->retry = 0;
  }
  if (u->starved) {
    lw__list_remove(&u->starved_node);
    u->starved = 0;
  }
  if (u->recv_inflight) {
    /* The final snapshot counted the recv's completion as held input if it was
     * posted then (ur_held_input, read before SIOCINQ). Posted now but not then, its
     * task work ran at the SIOCINQ ioctl's return and took bytes SIOCINQ counted (or,
     * preempted just before the ioctl, bytes neither counted: short, never twice). */
    int res;
    u->recv_seen_detach = ur_recv_pending(c, &res);
    u->inq_counted = inq_counted;
  }
  if (u->inflight)
    ur_submit_cancels(c);
}

/* Rule 1: the close goes through the ring, behind every SQE that names the fd. */
static void ur_submit_close(lw_conn *c) {
  ur_conn *u = urc(c);
  if (u->recv_inflight) {
    u->close_wait_recv = 1; /* rule 6: ur_recv_done queues it */
    return;
  }
  struct io_uring_sqe *sqe = ur_sqe(ur(c->loop));
  if (!sqe) {
    u->close_owed = 1; /* owed, never dropped: the fd would leak */
    ur_defer(c);
    return;
  }
  u->close_owed = 0;
  io_uring_prep_close(sqe, c->io.fd);
  io_uring_sqe_set_data(sqe, &u->close);
  u->inflight++;
}

static void ur_lis_close_fd(ur_state *s, int fd);

static void ur_close_fd(lw_loop *loop, lw__io *io) {
  if (io->kind == LW__IO_CONN)
    ur_submit_close(LW__CONTAINER_OF(io, lw_conn, io));
  else
    ur_lis_close_fd(ur(loop), io->fd);
}

/* The end of every connection completion: one op fewer in flight, then either the
 * last CQE of a closed connection (ops done) or a live one asking for its next ops.
 * c is freed only in the endgame, after this batch: safe to look at it here. */
static void ur_op_finished(lw_conn *c) {
  ur_conn *u = urc(c);
  assert(u->inflight > 0);
  /* The last CQE that names this connection -- its close's included (rule 1: while the
   * close is owed, inflight can touch 0 before it is queued). */
  if (--u->inflight == 0 && c->detached && !u->close_owed && !u->close_wait_recv)
    lw__conn_ops_done(c);
  if (!c->detached)
    ur_conn_update(c);
}

static void ur_recv_done(lw_conn *c, int res, unsigned flags) {
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  u->recv_inflight = 0;
  int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
  if (bid >= 0)
    ur_buf_take(s, bid);
  if (c->detached) {
    /* Rule 6: the close overtook this completion; its bytes are unread input. The
     * close waited for it, so SO_LINGER{1,0} still reaches the socket. */
    if (res > 0) {
      /* Counted already if it was posted at the detach (held input); else its bytes
       * came from the queue the snapshot measured, or arrived since. */
      if (lw__conn_read_late(c, (size_t)res, u->recv_seen_detach, &u->inq_counted))
        lw__sock_set_linger0(c->io.fd);
    } else if (res < 0 && res != -ECANCELED) {
      lw__conn_error_late(c, lw__err_from_errno(-res)); /* it took the socket's error */
    }
    if (u->close_wait_recv) {
      u->close_wait_recv = 0;
      ur_submit_close(c);
    }
  } else if (res > 0 && bid < 0) {
    /* A discarding recv (MSG_TRUNC): res bytes dropped by the kernel, none copied. */
    assert(c->discarding);
    lw__conn_read_done(c, NULL, res);
  } else if (res > 0 && bid >= 0) {
    /* Only one recv is ever in flight and none while input is held: nothing is. */
    assert(!ur_stash_held(u) && !u->delivering);
    const char *data = s->bufs + (size_t)bid * UR_BUF_SIZE;
    u->cqe_off = 0;
    u->cqe_len = (unsigned)res;
    u->delivering = 1;
    ur_feed(c, data, &u->cqe_off, u->cqe_len); /* valid until each callback returns */
    u->delivering = 0;
    if (u->cqe_off < u->cqe_len && !c->detached) {
      /* Reading stopped (or the read size shrank) part-way, or before: keep a copy
       * of the rest, give the buffer back (rule 3). (Detached part-way: the close
       * counted the rest as held input.) */
      unsigned rest = u->cqe_len - u->cqe_off;
      u->stash = malloc(rest);
      if (!u->stash) {
        u->cqe_off = u->cqe_len = 0;
        ur_buf_return(s, bid);
        lw__conn_read_done(c, NULL, LW_ENOMEM);
        ur_op_finished(c);
        return;
      }
      memcpy(u->stash, data + u->cqe_off, rest);
      u->stash_off = 0;
      u->stash_len = rest;
    }
    u->cqe_off = u->cqe_len = 0;
  } else if (res == 0) {
    if (!lw__conn_wants_read(c))
      u->stash_eof = 1; /* the peer's FIN waits for read_start as well (rule 5) */
    else
      lw__conn_read_done(c, NULL, 0);
  } else if (res == -ENOBUFS) {
    /* Rule 4: not re-armed now (it would fail again at once while the burst holds
     * the buffers), but once the dispatch has given every buffer back. */
    u->starved = 1;
    lw__list_push(&s->starved, &u->starved_node);
  } else if (res != -ECANCELED && res != -EAGAIN && res != -EINTR) {
    lw__conn_read_done(c, NULL, lw__err_from_errno(-res));
  }
  if (bid >= 0)
    ur_buf_return(s, bid);
  ur_op_finished(c);
}

static void ur_close_done(lw_conn *c) {
  assert(c->detached);
  ur_op_finished(c);
}

static void ur_send_done(lw_conn *c, int res) {
  ur_conn *u = urc(c);
  u->send_inflight = 0;
  if (c->detached && res > 0)
    lw__conn_write_late(c, (size_t)res); /* it completed before its cancel was issued */
  else if (c->detached && res < 0 && res != -ECANCELED)
    lw__conn_error_late(c, lw__err_from_errno(-res));
  else if (!c->detached && res != -ECANCELED)
    lw__conn_write_done(c, res >= 0 ? res : lw__err_from_errno(-res));
  ur_op_finished(c);
}

static void ur_poll_done(lw_conn *c, int res) {
  ur_conn *u = urc(c);
  u->poll_inflight = 0;
  if (!c->detached && c->connecting && res != -ECANCELED)
    lw__conn_connect_done(c, lw__sock_so_error(c->io.fd));
  ur_op_finished(c);
}

static void ur_errpoll_done(lw_conn *c, int res, unsigned flags) {
  ur_conn *u = urc(c);
  int more = (flags & IORING_CQE_F_MORE) != 0; /* the multishot poll is still armed */
  if (!more)
    u->err_inflight = 0;
  if (!c->detached && res > 0) {
    if (res & POLLERR) {
      /* sk_err is handed out once: a recv or send in flight may have taken it in the
       * kernel already (its CQE, in this batch or the next, reports it: e.g. ETIMEDOUT
       * during a lingering close). Only with none in flight is a missing error EIO. */
      int st = lw__sock_so_error(c->io.fd);
      if (st || !(u->recv_inflight || u->send_inflight))
        lw__conn_read_done(c, NULL, st ? st : LW_EIO);
    } else if (res & POLLHUP) {
      /* Both FINs, or CLOSE: nothing more can come. Parked, as on epoll: not armed
       * again once this poll ends. (POLLRDHUP alone, the peer's FIN waiting: the poll
       * stays armed for an error that may follow.) */
      c->io.hup = 1;
    }
  }
  if (more)
    return; /* one op in flight still: not finished */
  ur_op_finished(c);
}

/* ---- listeners ---- */

/* A listener's ops live apart from the listener: the listener is freed at the end of
 * the iteration that closes it, but its accept (or poll) may still complete later. The
 * last CQE of an orphaned ur_lis frees it. */
typedef struct ur_lis {
  ur_op acc, poll;
  unsigned inflight;
  unsigned acc_armed : 1;  /* the multishot accept is live (until its CQE without F_MORE) */
  unsigned poll_armed : 1; /* the EMFILE poll is live */
} ur_lis;

static int ur_arm_accept(lw_listener *l) {
  ur_state *s = ur(l->loop);
  ur_lis *u = l->backend_data;
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe)
    return LW_ENOBUFS;
  io_uring_prep_multishot_accept(sqe, l->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, &u->acc);
  u->inflight++;
  u->acc_armed = 1;
  return 0;
}

/* Under fd exhaustion: wait for the next connection before trying accept again.
 * io_uring's accept allocates the fd BEFORE it looks for a pending connection
 * (io_accept), so an accept re-armed at EMFILE fails at once, forever: a spin. */
static void ur_arm_poll(lw_listener *l) {
  ur_state *s = ur(l->loop);
  ur_lis *u = l->backend_data;
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe)
    return;
  io_uring_prep_poll_add(sqe, l->io.fd, POLLIN);
  io_uring_sqe_set_data(sqe, &u->poll);
  u->inflight++;
  u->poll_armed = 1;
}

static int ur_listener_open(lw_listener *l) {
  ur_lis *u = calloc(1, sizeof(*u));
  if (!u)
    return LW_ENOMEM;
  u->acc = (ur_op){UR_OP_ACCEPT, l};
  u->poll = (ur_op){UR_OP_LPOLL, l};
  l->backend_data = u;
  return ur_arm_accept(l);
}

static void ur_listener_close(lw_listener *l) {
  ur_state *s = ur(l->loop);
  ur_lis *u = l->backend_data;
  l->backend_data = NULL;
  u->acc.owner = u->poll.owner = NULL;
  if (u->inflight == 0) {
    free(u);
    return;
  }
  s->orphans++;
  /* By user_data, like a connection's (a cancel of an op not in flight is -ENOENT,
   * harmless). An accept re-armed in this very batch may still sit unissued in the SQ:
   * the close that .close_fd queues next comes after it (rule 1). */
  ur_op *ops[2] = {&u->acc, &u->poll};
  for (int i = 0; i < 2; i++) {
    struct io_uring_sqe *sqe = ur_sqe(s);
    if (!sqe)
      break; /* the ring's exit cancels what is left (ur_destroy) */
    io_uring_prep_cancel(sqe, ops[i], 0);
    io_uring_sqe_set_data(sqe, NULL);
  }
}

/* Submits what is queued and runs the task work it made, now: a cancelled accept
 * holds the listening socket until its completion has run, and with DEFER_TASKRUN that
 * happens only inside an io_uring_enter(GETEVENTS). Called from the loop's thread (a
 * call on one of its objects): a ring not yet enabled is enabled here (ur_ring_setup). */
static void ur_submit_now(ur_state *s) {
  /* LW_URING_DEFER only: the calling thread becomes the ring's single issuer (the
   * thread rule in the top comment). */
  if (ur_enable(s) < 0)
    return; /* left queued, in order, for the first wait */
  io_uring_submit_and_get_events(&s->ring);
}

/* lw_listener_pause: cancel what is armed, by user_data as always (never by fd). The
 * cancel is submitted here, so the kernel has issued it -- and the multishot accept
 * takes no more connections -- when the call returns; connections it took before that
 * have their CQEs posted already and are delivered (the header's contract). The
 * accept's last CQE (-ECANCELED, no F_MORE) clears acc_armed and re-arms only if the
 * listener was resumed meanwhile. Resume arms again only what is not still live: a
 * multishot whose cancel has not completed yet re-arms from its last CQE. */
static void ur_listener_pause(lw_listener *l, int paused) {
  ur_state *s = ur(l->loop);
  ur_lis *u = l->backend_data;
  if (!paused) {
    if (!u->acc_armed && !u->poll_armed)
      ur_arm_accept(l);
    return;
  }
  ur_op *ops[2] = {u->acc_armed ? &u->acc : NULL, u->poll_armed ? &u->poll : NULL};
  for (int i = 0; i < 2; i++) {
    if (!ops[i])
      continue;
    struct io_uring_sqe *sqe = ur_sqe(s);
    if (!sqe)
      continue; /* the ring refuses SQEs: an accept taken meanwhile is delivered */
    io_uring_prep_cancel(sqe, ops[i], 0);
    io_uring_sqe_set_data(sqe, NULL);
  }
  ur_submit_now(s);
}

/* Rule 1 for a listener: IORING_OP_CLOSE (its CQE is ignored), submitted now so the
 * listener is gone from the kernel when lw_listener_close returns; one that finds no
 * SQE is queued at the next wait. */
static void ur_lis_close_fd(ur_state *s, int fd) {
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe) {
    if (s->nclose_owed == s->close_owed_cap) {
      unsigned cap = s->close_owed_cap ? s->close_owed_cap * 2 : 8;
      int *v = realloc(s->close_owed, cap * sizeof(*v));
      if (!v) {
        /* No memory to defer it: an SQE that names fd may be unissued, so the number
         * must not be freed. Leaking one fd is the lesser harm. */
        return;
      }
      s->close_owed = v;
      s->close_owed_cap = cap;
    }
    s->close_owed[s->nclose_owed++] = fd;
    return;
  }
  io_uring_prep_close(sqe, fd);
  io_uring_sqe_set_data(sqe, NULL);
  ur_submit_now(s);
}

/* One op of u finished for good; frees an orphaned ur_lis after its last one. */
static void ur_lis_finished(lw_loop *loop, ur_lis *u) {
  assert(u->inflight > 0);
  if (--u->inflight == 0 && !u->acc.owner) {
    free(u);
    ur(loop)->orphans--;
  }
}

static void ur_accept_done(lw_loop *loop, ur_lis *u, int res, unsigned flags) {
  lw_listener *l = u->acc.owner;
  int more = (flags & IORING_CQE_F_MORE) != 0;
  if (!l) {
    if (res >= 0)
      close(res); /* accepted after the listener went away */
    if (!more)
      ur_lis_finished(loop, u);
    return;
  }
  int exhausted = res == -EMFILE || res == -ENFILE;
  if (res >= 0) {
    lw__listener_accept_done(l, res, 0);
  } else if (exhausted && !l->paused) {
    /* Refuse what is pending with the reserved fd, and tell the application only if
     * a connection was really refused (a re-armed accept fails at once, see above). */
    int n = lw__sock_accept_shed(l->io.fd, &loop->reserve_fd);
    l->shed += (uint64_t)n;
    if (n > 0)
      lw__listener_accept_done(l, -1, lw__err_from_errno(-res));
  } else if (res != -ECANCELED) {
    lw__listener_accept_done(l, -1, lw__err_from_errno(-res));
  }
  /* The callback may have closed the listener (owner now NULL): its cancel is on the
   * way. A multishot that ended on its own is armed again -- after a poll if it ended
   * for want of fds. */
  lw_listener *still = u->acc.owner;
  if (!more) {
    u->acc_armed = 0;
    int settled = still && still->paused;
    if (settled)
      ; /* lw_listener_resume arms it again */
    else if (still && exhausted)
      ur_arm_poll(still);
    else if (still)
      ur_arm_accept(still);
    ur_lis_finished(loop, u);
    /* Last: a drain waiting for this paused listener may finish, and its done_cb may
     * close the listener (u is then freed). */
    if (settled)
      lw__drain_check(loop);
  }
}

/* After a pause the multishot accept stays live until its last CQE (-ECANCELED, no
 * F_MORE); the CQEs before it are connections already accepted (backend seam). */
static int ur_listener_accepting(const lw_listener *l) {
  const ur_lis *u = l->backend_data;
  return u && u->acc_armed;
}

static void ur_lpoll_done(lw_loop *loop, ur_lis *u, int res) {
  lw_listener *l = u->poll.owner;
  u->poll_armed = 0;
  if (l && !l->paused && !u->acc_armed)
    ur_arm_accept(l); /* also after a cancel by a pause that was resumed since */
  ur_lis_finished(loop, u);
}

/* ---- loop integration: the wake channel and foreign fd watchers ---- */

static void ur_wake_arm(lw_loop *loop) {
  ur_state *s = ur(loop);
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe) {
    s->wake_owed = 1; /* retried after the next dispatch (ur_poll) */
    return;
  }
  s->wake_owed = 0;
  io_uring_prep_read(sqe, s->wakefd, &s->wake_buf, sizeof(s->wake_buf), 0);
  io_uring_sqe_set_data(sqe, &s->wake_op);
  s->wake_inflight = 1;
}

static int ur_wake_open(lw_loop *loop) {
  ur_state *s = ur(loop);
  s->wakefd = eventfd(0, EFD_CLOEXEC); /* blocking: see the top */
  if (s->wakefd < 0)
    return lw__err_from_errno(errno);
  s->wake_op = (ur_op){UR_OP_WAKE, loop};
  ur_wake_arm(loop);
  return 0;
}

/* Any thread, or a signal handler: one write(2). */
static int ur_wake(lw_loop *loop) {
  uint64_t one = 1;
  ssize_t n;
  do
    n = write(ur(loop)->wakefd, &one, sizeof(one));
  while (n < 0 && errno == EINTR);
  return n == sizeof(one) || errno == EAGAIN ? 0 : lw__err_from_errno(errno);
}

static void ur_wake_done(lw_loop *loop, int res) {
  ur_state *s = ur(loop);
  s->wake_inflight = 0;
  ur_wake_arm(loop); /* before the dispatch: a send during it completes the next read */
  (void)res;         /* the count read, or an error: either way, look */
  lw__loop_wake_run(loop);
}

static unsigned ur_watch_mask(const lw_watch *w) {
  return ((w->events & LW_READABLE) ? POLLIN : 0) | ((w->events & LW_WRITABLE) ? POLLOUT : 0);
}

static int ur_watch_arm(lw_watch *w) {
  ur_state *s = ur(w->loop);
  ur_watch *uw = w->backend_data;
  /* The fd closed by the application without a stop (against the rule) and its number
   * taken by another file, perhaps a connection of this loop: a poll by number would
   * report THAT file's readiness to the watcher, whose callback would then read the
   * connection's bytes. */
  if (!lw__watch_same_file(w))
    return LW_EINVAL;
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe)
    return LW_ENOBUFS;
  io_uring_prep_poll_add(sqe, w->io.fd, ur_watch_mask(w));
  io_uring_sqe_set_data(sqe, &uw->op);
  uw->inflight = 1;
  uw->cancelled = 0;
  uw->mask = ur_watch_mask(w);
  w->busy = 1;
  return 0;
}

/* Cancels the poll in flight (by user_data) and submits NOW, the poll's SQE too if it
 * was still unissued: once this returns nothing queued names the fd (rule 1). */
static void ur_watch_cancel(lw_watch *w) {
  ur_state *s = ur(w->loop);
  ur_watch *uw = w->backend_data;
  if (!uw->inflight || uw->cancelled)
    return;
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (sqe) {
    io_uring_prep_cancel(sqe, &uw->op, 0);
    io_uring_sqe_set_data(sqe, NULL);
    uw->cancelled = 1;
  }
  /* No SQE even after a submit (the kernel is flushing a CQ overflow): the poll stays
   * until it fires; its CQE is then ignored (stopped) or frees the watch (freed). The
   * submit below still issues the poll's own SQE, so the fd is named by no number. */
  io_uring_submit(&s->ring);
}

static int ur_watch_set(lw_watch *w) {
  ur_watch *uw = w->backend_data;
  if (!uw) {
    if (!w->events)
      return 0;
    uw = calloc(1, sizeof(*uw));
    if (!uw)
      return LW_ENOMEM;
    uw->op = (ur_op){UR_OP_WATCH, w};
    w->backend_data = uw;
  }
  if (!w->events) {
    ur_watch_cancel(w);
    return 0;
  }
  if (uw->inflight) {
    if (uw->mask != ur_watch_mask(w))
      ur_watch_cancel(w); /* its CQE re-arms with the new mask */
    return 0;
  }
  return ur_watch_arm(w);
}

static void ur_watch_done(lw_watch *w, int res) {
  ur_watch *uw = w->backend_data;
  uw->inflight = 0;
  uw->cancelled = 0;
  if (w->freed) {
    lw__watch_ops_done(w);
    return;
  }
  w->busy = 0;
  if (res > 0 && !lw__watch_same_file(w)) {
    /* The poll was issued on the old file, which it kept alive after the application
     * closed the number (against the rule); the number may name another file now:
     * report the close, not readiness that a read by number would misdirect, and do
     * not re-arm (ur_watch_arm refuses). */
    lw__watch_event(w, LW_WATCH_ERROR);
    return;
  }
  if (res > 0) {
    int e = ((res & POLLIN) ? LW_READABLE : 0) | ((res & POLLOUT) ? LW_WRITABLE : 0) |
            ((res & (POLLERR | POLLHUP | POLLNVAL)) ? LW_WATCH_ERROR : 0);
    lw__watch_event(w, e); /* may stop, restart or free w: memory stays until endgame */
  } else if (res < 0 && res != -ECANCELED) {
    lw__watch_event(w, LW_WATCH_ERROR); /* -EBADF: the fd was closed (POLLNVAL) */
  }
  if (!w->freed && w->events && !uw->inflight && ur_watch_arm(w) < 0)
    lw__watch_event(w, LW_WATCH_ERROR); /* no SQE: say so rather than go silent */
}

/* ---- the wait ---- */

static int ur_poll(lw_loop *loop, int timeout_ms) {
  ur_state *s = ur(loop);
  struct io_uring_cqe *cqe = NULL;
  int r;
  if ((r = ur_enable(s)) < 0)
    return lw__err_from_errno(-r);
  /* DEFER_TASKRUN: completions the kernel has ready but not yet run reach the CQ only
   * inside an io_uring_enter(GETEVENTS), and liburing's wait does not enter while the
   * CQ already holds a CQE: run them first, so a wait sees everything that is ready
   * (as a readiness backend's does) and none waits behind the ones already posted. */
  if ((s->ring.flags & IORING_SETUP_DEFER_TASKRUN) && io_uring_cq_ready(&s->ring))
    io_uring_get_events(&s->ring);
  if (timeout_ms < 0) {
    r = io_uring_submit_and_wait(&s->ring, 1);
  } else {
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    r = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
  }
  if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
    return lw__err_from_errno(-r);
  loop->now = lw__now_ms();
  int total = 0;
  /* At most UR_ROUNDS batches per wait, as epoll takes at most EP_MAX_EVENTS: with a
   * 64k-entry CQ, draining it whole could keep timers (deadlines, idle checks) waiting
   * for a second or more; what is left is reaped on the next turn, without waiting. */
  for (int round = 0; round < UR_ROUNDS; round++) {
    struct io_uring_cqe *batch[UR_BATCH];
    unsigned n = io_uring_peek_batch_cqe(&s->ring, batch, UR_BATCH);
    if (n == 0)
      break;
    /* Copy out and release the CQ slots before dispatching: handlers submit SQEs and
     * call user code, which must not see a half-consumed completion queue. */
    ur_ev ev[UR_BATCH];
    for (unsigned i = 0; i < n; i++) {
      ev[i].data = io_uring_cqe_get_data(batch[i]);
      ev[i].res = batch[i]->res;
      ev[i].flags = batch[i]->flags;
    }
    io_uring_cq_advance(&s->ring, n);
    s->batch = ev;
    s->batch_n = n;
    for (unsigned i = 0; i < n; i++) {
      s->batch_next = i + 1;
      ur_op *op = ev[i].data;
      if (!op)
        continue; /* a cancel request's own completion */
      switch (op->kind) {
      case UR_OP_RECV:
        ur_recv_done(op->owner, ev[i].res, ev[i].flags);
        break;
      case UR_OP_SEND:
        ur_send_done(op->owner, ev[i].res);
        break;
      case UR_OP_POLL:
        ur_poll_done(op->owner, ev[i].res);
        break;
      case UR_OP_ERRPOLL:
        ur_errpoll_done(op->owner, ev[i].res, ev[i].flags);
        break;
      case UR_OP_CLOSE:
        ur_close_done(op->owner);
        break;
      case UR_OP_ACCEPT:
        ur_accept_done(loop, LW__CONTAINER_OF(op, ur_lis, acc), ev[i].res, ev[i].flags);
        break;
      case UR_OP_LPOLL:
        ur_lpoll_done(loop, LW__CONTAINER_OF(op, ur_lis, poll), ev[i].res);
        break;
      case UR_OP_WAKE:
        ur_wake_done(loop, ev[i].res);
        break;
      case UR_OP_WATCH:
        ur_watch_done(op->owner, ev[i].res);
        break;
      default:
        assert(0 && "unknown io_uring op");
      }
    }
    s->batch_n = s->batch_next = 0;
    total += (int)n;
    if (n < UR_BATCH)
      break;
  }
  /* Rule 3: every buffer a CQE handed us went back during its dispatch. */
  assert(s->bufs_out == 0);
  /* Rule 4: recvs that found the ring empty, re-armed once now that it is full again. */
  lw__list starved;
  lw__list_move_all(&starved, &s->starved);
  while (!lw__list_empty(&starved)) {
    ur_conn *u = LW__CONTAINER_OF(starved.next, ur_conn, starved_node);
    lw__list_remove(&u->starved_node);
    u->starved = 0;
    ur_conn_update(u->recv.owner); /* a no-op once detached */
  }
  /* Submissions owed from this batch; one that still finds no SQE re-queues itself
   * for the next round. Cancels before the close, which must come last (rule 1). */
  lw__list owed;
  lw__list_move_all(&owed, &s->retry);
  while (!lw__list_empty(&owed)) {
    ur_conn *u = LW__CONTAINER_OF(owed.next, ur_conn, retry_node);
    lw__list_remove(&u->retry_node);
    u->retry = 0;
    lw_conn *c = u->recv.owner;
    if (!c->detached)
      ur_conn_update(c);
    else {
      if (u->cancel_owed)
        ur_submit_cancels(c);
      if (u->close_owed && !u->cancel_owed)
        ur_submit_close(c);
    }
  }
  if (s->wake_owed)
    ur_wake_arm(loop);
  while (s->nclose_owed > 0) {
    struct io_uring_sqe *sqe = ur_sqe(s);
    if (!sqe)
      break;
    io_uring_prep_close(sqe, s->close_owed[--s->nclose_owed]);
    io_uring_sqe_set_data(sqe, NULL);
  }
  return total;
}

unsigned lw__uring_setup_flags(const lw_loop *loop) {
  if (loop->backend != &lw__backend_uring)
    return 0;
  return ((const ur_state *)loop->backend_data)->ring.flags;
}

/* The conn's backend data is freed with the conn (conn.c calls this via detach path). */
const lw__backend lw__backend_uring = {
    .name = "uring",
    .init = ur_init,
    .destroy = ur_destroy,
    .poll = ur_poll,
    .listener_open = ur_listener_open,
    .listener_close = ur_listener_close,
    .listener_pause = ur_listener_pause,
    .listener_accepting = ur_listener_accepting,
    .conn_open = ur_conn_open,
    .conn_update = ur_conn_update,
    .conn_detach = ur_conn_detach,
    .close_fd = ur_close_fd,
    .conn_free = ur_conn_free,
    .held_input = ur_held_input,
    .deliver_held = ur_deliver_held,
    .wake_open = ur_wake_open,
    .wake = ur_wake,
    .watch_set = ur_watch_set,
};
