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
 *   send     a plain send() when nothing is queued or in flight (ur_try_write)
 *   cancel   IORING_OP_ASYNC_CANCEL of each op still in flight, by user_data, when the
 *            connection is detached (never by fd: see ur_submit_cancels)
 *
 * The A2 contract on a real completion kernel: after close(fd) the in-flight requests
 * still hold the file (and the kernel may still write into our buffers), so the
 * connection is freed -- and on_close runs -- only after the last CQE that names it
 * has been reaped (lw__conn_ops_done). A CQE that arrives for a connection already
 * detached is consumed and ignored; its fd number may already belong to someone else,
 * which does not matter because CQEs are matched by user_data (our op), never by fd.
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
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define UR_ENTRIES 1024
#define UR_BUFS 512             /* provided buffers (power of two) */
#define UR_BUF_SIZE (16 * 1024) /* 8 MiB for the loop, shared by every connection */
#define UR_BGID 7
#define UR_MAX_IOV 16
#define UR_BATCH 256
#define UR_ROUNDS 4

enum { UR_OP_RECV = 1, UR_OP_SEND, UR_OP_POLL, UR_OP_ACCEPT, UR_OP_LPOLL, UR_OP_ERRPOLL };

typedef struct ur_op {
  int kind;
  void *owner; /* lw_conn* or lw_listener*; NULL: orphan (listener gone) */
} ur_op;

typedef struct ur_conn {
  ur_op recv, send, poll, epoll_;
  unsigned inflight;
  unsigned recv_inflight : 1, send_inflight : 1, poll_inflight : 1, err_inflight : 1;
  /* Input that arrived after the application stopped reading: kept (in its provided
   * buffer) until reading resumes, so no byte is dropped between recv and read_stop. */
  int stash_bid;
  unsigned stash_off, stash_len;
  struct iovec iov[UR_MAX_IOV];
  struct msghdr msg;
  lw__list retry_node; /* in ur_state.retry while a submission is owed */
  unsigned retry : 1;
  unsigned cancel_owed : 1; /* detached, and its cancels still wait for SQEs */
} ur_conn;

typedef struct ur_state {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  char *bufs;
  int orphans; /* accept ops of closed listeners whose last CQE is still due */
  /* Connections whose SQE could not be had (SQ full and the kernel busy flushing a
   * CQ overflow): their update is retried after the batch, never dropped -- a dropped
   * recv would leave a connection waiting forever. */
  lw__list retry;
} ur_state;

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

static void ur_buf_return(ur_state *s, int bid) {
  io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * UR_BUF_SIZE, UR_BUF_SIZE,
                        (unsigned short)bid, io_uring_buf_ring_mask(UR_BUFS), 0);
  io_uring_buf_ring_advance(s->br, 1);
}

static int ur_init(lw_loop *loop) {
  ur_state *s = calloc(1, sizeof(*s));
  if (!s)
    return LW_ENOMEM;
  /* A CQ far larger than the SQ: every connection keeps a recv in flight, and a burst
   * can complete thousands at once; overflowing the CQ makes the kernel stall
   * submissions while it flushes (-EBUSY). 64k CQEs cost 1 MiB. */
  struct io_uring_params params;
  memset(&params, 0, sizeof(params));
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = 65536;
  lw__list_init(&s->retry);
  int r = io_uring_queue_init_params(UR_ENTRIES, &s->ring, &params);
  if (r < 0) {
    free(s);
    return lw__err_from_errno(-r);
  }
  struct io_uring_probe *p = io_uring_get_probe_ring(&s->ring);
  int ok = p && io_uring_opcode_supported(p, IORING_OP_RECV) &&
           io_uring_opcode_supported(p, IORING_OP_SENDMSG) &&
           io_uring_opcode_supported(p, IORING_OP_ACCEPT) &&
           io_uring_opcode_supported(p, IORING_OP_POLL_ADD) &&
           io_uring_opcode_supported(p, IORING_OP_ASYNC_CANCEL);
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
      !(s->bufs = malloc((size_t)UR_BUFS * UR_BUF_SIZE))) {
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
  for (int i = 0; i < 100 && s->orphans > 0; i++)
    ur_poll(loop, 10);
  io_uring_queue_exit(&s->ring);
  free(s->bufs);
  free(s->br);
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
  u->stash_bid = -1;
  c->backend_data = u;
  return 0;
}

static void ur_conn_free(lw_conn *c) {
  ur_conn *u = c->backend_data;
  if (u && u->retry)
    lw__list_remove(&u->retry_node);
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
  size_t len = c->discarding ? UR_BUF_SIZE : LW__MIN(c->read_size, (size_t)UR_BUF_SIZE);
  io_uring_prep_recv(sqe, c->io.fd, NULL, len, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = UR_BGID;
  io_uring_sqe_set_data(sqe, &u->recv);
  u->recv_inflight = 1;
  u->inflight++;
}

static void ur_submit_send(lw_conn *c) {
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (!sqe) {
    ur_defer(c);
    return;
  }
  int n = lw__conn_fill_iov(c, u->iov, UR_MAX_IOV);
  memset(&u->msg, 0, sizeof(u->msg));
  u->msg.msg_iov = u->iov;
  u->msg.msg_iovlen = (size_t)n;
  /* MSG_NOSIGNAL: EPIPE instead of SIGPIPE, as on every other path. MSG_MORE: the FIN
   * rides on the last segment (lw__conn_last_before_fin); the shutdown follows this
   * send's completion within the same loop iteration. */
  io_uring_prep_sendmsg(sqe, c->io.fd, &u->msg,
                        MSG_NOSIGNAL | (lw__conn_last_before_fin(c, u->iov, n) ? MSG_MORE : 0));
  io_uring_sqe_set_data(sqe, &u->send);
  u->send_inflight = 1;
  u->inflight++;
}

/* Delivers stashed input while the application wants it. Returns 1 if some remains. */
static int ur_deliver_stash(lw_conn *c) {
  ur_conn *u = urc(c);
  ur_state *s = ur(c->loop);
  while (u->stash_bid >= 0 && lw__conn_wants_read(c) && !c->detached) {
    size_t n = LW__MIN((size_t)(u->stash_len - u->stash_off),
                       c->discarding ? (size_t)UR_BUF_SIZE : c->read_size);
    const char *p = s->bufs + (size_t)u->stash_bid * UR_BUF_SIZE + u->stash_off;
    u->stash_off += (unsigned)n;
    int bid = u->stash_bid;
    if (u->stash_off == u->stash_len)
      u->stash_bid = -1;
    lw__conn_read_done(c, p, (ssize_t)n);
    if (u->stash_bid < 0)
      ur_buf_return(s, bid);
  }
  return u->stash_bid >= 0;
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
  if (ur_deliver_stash(c) || c->detached)
    return;
  if (lw__conn_wants_read(c) && !u->recv_inflight)
    ur_submit_recv(c);
  /* A recv in flight after read_stop is left alone: if it completes with data, the
   * bytes wait in the stash (cancelling it would race with its completion anyway). */
  if (lw__conn_wants_write(c) && !u->send_inflight)
    ur_submit_send(c);
  /* Liveness on and nothing in flight to carry an error (a pending recv or send
   * completes with ETIMEDOUT by itself): poll for POLLERR alone, so a dead peer ends
   * the connection while the application is not reading. POLLHUP without POLLERR
   * (both FINs, or CLOSE) never clears: the watch is then parked, as on epoll. */
  if (lw__conn_wants_errors(c) && !c->io.hup && !u->recv_inflight && !u->send_inflight &&
      !u->err_inflight) {
    struct io_uring_sqe *sqe = ur_sqe(s);
    if (!sqe)
      ur_defer(c);
    if (sqe) {
      io_uring_prep_poll_add(sqe, c->io.fd, POLLERR);
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

static void ur_conn_detach(lw_conn *c) {
  if (urc(c)->retry) {
    lw__list_remove(&urc(c)->retry_node); /* nothing more is owed to a closed fd */
    urc(c)->retry = 0;
  }
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  if (u->stash_bid >= 0) {
    ur_buf_return(s, u->stash_bid);
    u->stash_bid = -1;
  }
  if (u->inflight) {
    ur_submit_cancels(c);
    return;
  }
  lw__conn_ops_done(c);
}

/* A direct send() when no sendmsg is in flight: bytes cannot overtake queued ones, and
 * a small reply then costs one syscall instead of an SQE, a CQE and a callback. */
static ssize_t ur_try_write(lw_conn *c, const void *buf, size_t len) {
  if (urc(c)->send_inflight)
    return 0;
  return lw__sock_send_now(c->io.fd, buf, len);
}

/* The end of every connection completion: one op fewer in flight, then either the
 * last CQE of a closed connection (ops done) or a live one asking for its next ops.
 * c is freed only in the endgame, after this batch: safe to look at it here. */
static void ur_op_finished(lw_conn *c) {
  ur_conn *u = urc(c);
  assert(u->inflight > 0);
  if (--u->inflight == 0 && c->detached)
    lw__conn_ops_done(c); /* the last CQE that names this connection */
  if (!c->detached)
    ur_conn_update(c);
}

static void ur_recv_done(lw_conn *c, int res, unsigned flags) {
  ur_state *s = ur(c->loop);
  ur_conn *u = urc(c);
  u->recv_inflight = 0;
  int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
  if (c->detached) {
    if (bid >= 0)
      ur_buf_return(s, bid);
  } else if (res > 0 && bid >= 0) {
    if (!lw__conn_wants_read(c)) {
      u->stash_bid = bid; /* read_stop raced with this completion: keep the bytes */
      u->stash_off = 0;
      u->stash_len = (unsigned)res;
    } else {
      lw__conn_read_done(c, s->bufs + (size_t)bid * UR_BUF_SIZE, res);
      ur_buf_return(s, bid);
    }
  } else {
    if (bid >= 0)
      ur_buf_return(s, bid);
    /* ENOBUFS: every provided buffer is held by a stash; the update below submits the
     * recv again. Buffers are returned right after each read callback, so this only
     * happens with more than UR_BUFS connections stopped mid-read (see README). */
    if (res != -ECANCELED && res != -EAGAIN && res != -EINTR && res != -ENOBUFS)
      lw__conn_read_done(c, NULL, res == 0 ? 0 : lw__err_from_errno(-res));
  }
  ur_op_finished(c);
}

static void ur_send_done(lw_conn *c, int res) {
  ur_conn *u = urc(c);
  u->send_inflight = 0;
  if (!c->detached && res != -ECANCELED)
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

static void ur_errpoll_done(lw_conn *c, int res) {
  ur_conn *u = urc(c);
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
      c->io.hup = 1;
    }
  }
  ur_op_finished(c);
}

/* ---- listeners ---- */

/* A listener's ops live apart from the listener: the listener is freed at the end of
 * the iteration that closes it, but its accept (or poll) may still complete later. The
 * last CQE of an orphaned ur_lis frees it. */
typedef struct ur_lis {
  ur_op acc, poll;
  unsigned inflight;
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
  struct io_uring_sqe *sqe = ur_sqe(s);
  if (sqe) {
    io_uring_prep_cancel_fd(sqe, l->io.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(sqe, NULL);
  }
  io_uring_submit(&s->ring); /* before the core closes the fd */
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
  } else if (exhausted) {
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
    if (still && exhausted)
      ur_arm_poll(still);
    else if (still)
      ur_arm_accept(still);
    ur_lis_finished(loop, u);
  }
}

static void ur_lpoll_done(lw_loop *loop, ur_lis *u, int res) {
  lw_listener *l = u->poll.owner;
  if (l && res != -ECANCELED)
    ur_arm_accept(l);
  ur_lis_finished(loop, u);
}

/* ---- the wait ---- */

static int ur_poll(lw_loop *loop, int timeout_ms) {
  ur_state *s = ur(loop);
  struct io_uring_cqe *cqe = NULL;
  int r;
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
    struct {
      void *data;
      int res;
      unsigned flags;
    } ev[UR_BATCH];
    for (unsigned i = 0; i < n; i++) {
      ev[i].data = io_uring_cqe_get_data(batch[i]);
      ev[i].res = batch[i]->res;
      ev[i].flags = batch[i]->flags;
    }
    io_uring_cq_advance(&s->ring, n);
    for (unsigned i = 0; i < n; i++) {
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
        ur_errpoll_done(op->owner, ev[i].res);
        break;
      case UR_OP_ACCEPT:
        ur_accept_done(loop, LW__CONTAINER_OF(op, ur_lis, acc), ev[i].res, ev[i].flags);
        break;
      case UR_OP_LPOLL:
        ur_lpoll_done(loop, LW__CONTAINER_OF(op, ur_lis, poll), ev[i].res);
        break;
      default:
        assert(0 && "unknown io_uring op");
      }
    }
    total += (int)n;
    if (n < UR_BATCH)
      break;
  }
  /* Submissions owed from this batch; one that still finds no SQE re-queues itself
   * for the next round. */
  lw__list owed;
  lw__list_move_all(&owed, &s->retry);
  while (!lw__list_empty(&owed)) {
    ur_conn *u = LW__CONTAINER_OF(owed.next, ur_conn, retry_node);
    lw__list_remove(&u->retry_node);
    u->retry = 0;
    lw_conn *c = u->recv.owner;
    if (!c->detached)
      ur_conn_update(c);
    else if (u->cancel_owed)
      ur_submit_cancels(c);
  }
  return total;
}

/* The conn's backend data is freed with the conn (conn.c calls this via detach path). */
const lw__backend lw__backend_uring = {
    .name = "uring",
    .init = ur_init,
    .destroy = ur_destroy,
    .poll = ur_poll,
    .listener_open = ur_listener_open,
    .listener_close = ur_listener_close,
    .conn_open = ur_conn_open,
    .conn_update = ur_conn_update,
    .conn_detach = ur_conn_detach,
    .conn_free = ur_conn_free,
    .try_write = ur_try_write,
};
