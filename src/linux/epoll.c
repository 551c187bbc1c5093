/*
 * epoll.c - the epoll backend: emulates completions from readiness.
 *
 * The core asks "I want to read / write / connect"; this backend registers interest,
 * performs the syscall when the fd is ready, and reports the result through the
 * lw__*_done completion functions, exactly as a completion kernel would.
 *
 * Writes are tried as soon as the core flushes its queue (the loop's pending step: no
 * round trip through epoll_wait for a socket that has room, as libuv's uv__write);
 * EPOLLOUT is registered only after EAGAIN.
 *
 * Level-triggered, and an fd with no interest is removed from the set: an fd that has
 * seen both FINs reports EPOLLHUP on every epoll_wait (tcp_poll sets it once
 * sk_shutdown == SHUTDOWN_MASK), which would spin a loop that only waits for an ACK.
 * Except with liveness on (keepalive / TCP_USER_TIMEOUT, lw__conn_wants_errors): then
 * an fd with no interest stays registered with events = EPOLLET alone, for the
 * EPOLLERR|EPOLLHUP that epoll always reports, so that an ETIMEDOUT (or an RST) ends
 * the connection even while the application is not reading. Edge-triggered, and
 * parked for good (removed) at its first EPOLLHUP without EPOLLERR: both FINs done or
 * CLOSE, states that never clear, so it cannot spin.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define EP_MAX_EVENTS 256
#define EP_MAX_IOV 64
/* Reads per readiness event: enough to drain a socket buffer, bounded so one busy
 * connection cannot starve the others. */
#define EP_READS_PER_EVENT 16
#define EP_ACCEPTS_PER_EVENT 128

typedef struct ep_state {
  int epfd;
  /* The loop's wake channel (lw_wakeup_send, signals): an eventfd, made at the first
   * lw_wakeup_new / lw_signal_new, level-triggered EPOLLIN until read. kind 0. */
  int wakefd;
  lw__io wake_io;
  struct epoll_event events[EP_MAX_EVENTS];
} ep_state;

static ep_state *ep(lw_loop *loop) { return loop->backend_data; }

static int ep_init(lw_loop *loop) {
  ep_state *s = calloc(1, sizeof(*s));
  if (!s)
    return LW_ENOMEM;
  s->wakefd = -1;
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) {
    int r = lw__err_from_errno(errno);
    free(s);
    return r;
  }
  loop->backend_data = s;
  return 0;
}

static void ep_destroy(lw_loop *loop) {
  ep_state *s = ep(loop);
  if (s->wakefd >= 0)
    close(s->wakefd);
  close(s->epfd);
  free(s);
  loop->backend_data = NULL;
}

/* Brings the registration of io to `want` (0 removes it from the set). */
static int ep_set(lw_loop *loop, lw__io *io, uint32_t want) {
  if (io->added && io->registered == want)
    return 0;
  if (!io->added && want == 0)
    return 0;
  struct epoll_event ev = {.events = want, .data.ptr = io};
  int op = !io->added ? EPOLL_CTL_ADD : (want ? EPOLL_CTL_MOD : EPOLL_CTL_DEL);
  if (epoll_ctl(ep(loop)->epfd, op, io->fd, &ev) < 0)
    return lw__err_from_errno(errno);
  io->added = want != 0;
  io->registered = want;
  return 0;
}

/* ---- connections ---- */

/* Set on EAGAIN, cleared by EPOLLOUT: only a blocked writer registers EPOLLOUT. */
#define EP_WBLOCKED(c) ((c)->io.wblocked)

static void ep_do_write(lw_conn *c) {
  struct iovec iov[EP_MAX_IOV];
  for (int rounds = 0; rounds < 16 && lw__conn_wants_write(c); rounds++) {
    int n = lw__conn_fill_iov(c, iov, EP_MAX_IOV);
    /* MSG_NOSIGNAL (lw__sock_send_now): an RST'd peer must give EPIPE, not kill the
     * process (SIGPIPE). MSG_MORE: the FIN rides on the last segment
     * (lw__conn_last_before_fin, which may keep a small tail for the next round). If not
     * everything is taken, the rest goes the same way on EPOLLOUT (level-triggered: an
     * EINTR, also 0 here, is retried at once). */
    int more = lw__conn_last_before_fin(c, iov, &n);
    ssize_t w = lw__sock_send_now(c->io.fd, iov, n, more);
    if (w == 0) {
      c->io.wblocked = 1;
      ep_set(c->loop, &c->io, c->io.registered | EPOLLOUT);
      return;
    }
    lw__conn_write_done(c, w);
    if (w < 0)
      return;
  }
  /* The rounds are bounded so one connection cannot hold the loop; if bytes are left
   * although the socket took everything offered (thousands of small writes queued in
   * one callback), nothing else would come back for them: ask for EPOLLOUT, which is
   * level-triggered and reports at once while there is room. */
  if (!c->detached && lw__conn_wants_write(c) && !c->io.wblocked) {
    c->io.wblocked = 1;
    ep_set(c->loop, &c->io, c->io.registered | EPOLLOUT);
  }
}

static uint32_t ep_conn_want(const lw_conn *c) {
  uint32_t want = 0;
  if (c->connecting)
    want = EPOLLOUT;
  else {
    if (lw__conn_wants_read(c))
      want |= EPOLLIN;
    if (lw__conn_wants_write(c) && EP_WBLOCKED(c))
      want |= EPOLLOUT;
    if (!want && !c->io.hup && lw__conn_wants_errors(c))
      want = EPOLLET; /* errors only: EPOLLERR|EPOLLHUP are implied */
  }
  return want;
}

static void ep_conn_update(lw_conn *c) {
  if (c->detached)
    return;
  if (!c->connecting && lw__conn_wants_write(c) && !EP_WBLOCKED(c)) {
    ep_do_write(c);
    if (c->detached)
      return;
  }
  uint32_t want = ep_conn_want(c);
  /* Interest dropping to nothing (read_stop before a write and lw_close) is common
   * and usually brief: leave the registration, and remove it lazily if an event comes
   * for it (ep_conn_event). Saves an EPOLL_CTL_DEL + ADD pair per connection. */
  if (want == 0 && c->io.added)
    return;
  int r = ep_set(c->loop, &c->io, want);
  assert(r == 0 || c->detached);
  (void)r;
}

static int ep_conn_open(lw_conn *c) {
  c->io.added = 0;
  c->io.registered = 0;
  c->io.wblocked = 0;
  return 0;
}

static void ep_conn_detach(lw_conn *c, size_t inq_counted) {
  (void)inq_counted; /* nothing is ever in flight */
  /* EPOLL_CTL_DEL before close(), always: the registration belongs to the open file,
   * and a child forked by the application (fork, system, popen) keeps that file open
   * after our close(), so a registration left behind would deliver events for a
   * connection already freed (seen as a heap-use-after-free in ep_poll). */
  ep_set(c->loop, &c->io, 0);
  /* Nothing is ever in flight in the kernel for a readiness backend. */
  lw__conn_ops_done(c);
}

static void ep_conn_read(lw_conn *c) {
  lw_loop *loop = c->loop;
  for (int i = 0; i < EP_READS_PER_EVENT && lw__conn_wants_read(c); i++) {
    size_t size = c->discarding ? loop->rbuf_size : LW__MIN(c->read_size, loop->rbuf_size);
    /* Discarding (a lingering close): MSG_TRUNC makes Linux TCP drop the bytes without
     * copying them (tcp(7): "MSG_TRUNC ... the received data is discarded"; since
     * 2.4), frees the receive queue and opens the window as a read does. The length
     * stays the buffer's, so that a kernel that copied anyway would stay inside it. */
    ssize_t n = recv(c->io.fd, loop->rbuf, size, c->discarding ? MSG_TRUNC : 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      lw__conn_read_done(c, NULL, lw__err_from_errno(errno));
      return;
    }
    lw__conn_read_done(c, loop->rbuf, n);
    if (n == 0 || (size_t)n < size)
      return; /* EOF, or the socket buffer is empty: wait for the next event */
  }
}

static void ep_conn_event(lw_conn *c, uint32_t ev) {
  if (c->detached)
    return; /* stale: closed earlier in this batch (memory is freed only later) */
  if (c->connecting) {
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
      int st = lw__sock_so_error(c->io.fd);
      lw__conn_connect_done(c, st);
      if (!c->detached)
        ep_conn_update(c);
    }
    return;
  }
  uint32_t want = ep_conn_want(c);
  if (!(want & (EPOLLIN | EPOLLOUT)) && !(ev & EPOLLERR)) {
    /* An event for a registration kept lazily, or a HUP on an errors-only watch:
     * nothing to read or write. Bring the registration to what is wanted now (none,
     * or errors only; a HUP parks the errors-only watch for good, see the top). */
    if (ev & EPOLLHUP) {
      c->io.hup = 1;
      want = ep_conn_want(c); /* hup parks the errors-only watch */
    }
    ep_set(c->loop, &c->io, want);
    return;
  }
  int handled = 0;
  if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && lw__conn_wants_read(c)) {
    ep_conn_read(c);
    handled = 1;
  }
  if (c->detached)
    return;
  if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && EP_WBLOCKED(c)) {
    c->io.wblocked = 0;
    ep_do_write(c);
    handled = 1;
  }
  if (c->detached)
    return;
  if ((ev & EPOLLERR) && !handled) {
    /* An error with no read or write to report it through (e.g. a keepalive timeout
     * while the application is not reading): SO_ERROR says which. */
    int st = lw__sock_so_error(c->io.fd);
    lw__conn_read_done(c, NULL, st ? st : LW_EIO);
    return;
  }
  if ((ev & EPOLLHUP) && !handled)
    c->io.hup = 1; /* nothing to do about it: park the errors-only registration */
  ep_conn_update(c);
}

/* ---- listeners ---- */

/* EPOLLEXCLUSIVE (Linux 4.5): a listening socket shared by several loops (one per
 * thread, each with a dup of it) wakes one of them per connection, not all (the
 * thundering herd: measured in README.md, "--threads"). It cannot be changed by
 * EPOLL_CTL_MOD; a listener's registration only ever goes ADD <-> DEL (pause), so
 * ep_set never needs to. */
#define EP_LISTEN_EVENTS (EPOLLIN | EPOLLEXCLUSIVE)
static int ep_listener_open(lw_listener *l) {
  return ep_set(l->loop, &l->io, EP_LISTEN_EVENTS);
}

static void ep_listener_close(lw_listener *l) { ep_set(l->loop, &l->io, 0); }

/* Out of the interest set while paused: the queue fills in the kernel, nothing wakes us. */
static void ep_listener_pause(lw_listener *l, int paused) {
  ep_set(l->loop, &l->io, paused ? 0 : EP_LISTEN_EVENTS);
}

static void ep_listener_event(lw_listener *l) {
  for (int i = 0; i < EP_ACCEPTS_PER_EVENT && !l->closing && !l->paused; i++) {
    int fd = accept4(l->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      lw__listener_accept_done(l, fd, 0);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    int err = lw__err_from_errno(errno);
    if (errno == EMFILE || errno == ENFILE) {
      /* Empty the accept queue with the reserved fd; otherwise the listener stays
       * readable and level-triggered epoll spins at 100% CPU. */
      l->shed += (uint64_t)lw__sock_accept_shed(l->io.fd, &l->loop->reserve_fd);
    }
    lw__listener_accept_done(l, -1, err);
    return;
  }
}

/* ---- loop integration: the wake channel and foreign fd watchers ---- */

static int ep_wake_open(lw_loop *loop) {
  ep_state *s = ep(loop);
  s->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wakefd < 0)
    return lw__err_from_errno(errno);
  s->wake_io.fd = s->wakefd;
  s->wake_io.kind = 0;
  int r = ep_set(loop, &s->wake_io, EPOLLIN);
  if (r < 0) {
    close(s->wakefd);
    s->wakefd = -1;
  }
  return r;
}

/* Any thread, or a signal handler: write(2) is async-signal-safe, and an eventfd
 * write fails only when its counter would pass 2^64 - 2 (EAGAIN: a wake is pending
 * anyway). */
static int ep_wake(lw_loop *loop) {
  uint64_t one = 1;
  ssize_t n;
  do
    n = write(ep(loop)->wakefd, &one, sizeof(one));
  while (n < 0 && errno == EINTR);
  return n == sizeof(one) || errno == EAGAIN ? 0 : lw__err_from_errno(errno);
}

static void ep_wake_event(lw_loop *loop) {
  uint64_t v;
  /* Read (reset) before the dispatch: a send during it writes again and is seen. */
  while (read(ep(loop)->wakefd, &v, sizeof(v)) < 0 && errno == EINTR)
    ;
  lw__loop_wake_run(loop);
}

/* Level-triggered, as poll(2). EPOLL_CTL_DEL when stopped, at once: the application
 * may close the fd as soon as lw_watch_stop/free returns. */
static int ep_watch_set(lw_watch *w) {
  uint32_t want = 0;
  if (w->events & LW_READABLE)
    want |= EPOLLIN;
  if (w->events & LW_WRITABLE)
    want |= EPOLLOUT;
  /* The fd closed by the application first (against the rule), its number perhaps
   * reused by a connection of this loop: epoll_ctl by number would DEL or MOD THAT
   * registration (the key is the number and the file it names now). The watcher's own
   * registration went with the last reference to its file; touch nothing. */
  if ((want || w->io.added) && !lw__watch_same_file(w)) {
    w->io.added = 0;
    w->io.registered = 0;
    return want ? LW_EINVAL : 0;
  }
  if (!want && w->io.added) {
    if (epoll_ctl(ep(w->loop)->epfd, EPOLL_CTL_DEL, w->io.fd, NULL) < 0 && errno != EBADF &&
        errno != ENOENT)
      return lw__err_from_errno(errno);
    w->io.added = 0;
    w->io.registered = 0;
    return 0;
  }
  int r = ep_set(w->loop, &w->io, want);
  if (r < 0 && errno == EEXIST)
    return LW_EBUSY; /* this fd is in the set already: a connection or another watch */
  if (r < 0 && errno == EBADF)
    return LW_EINVAL;
  return r;
}

static void ep_watch_event(lw_watch *w, uint32_t ev) {
  int e = 0;
  if (ev & EPOLLIN)
    e |= LW_READABLE;
  if (ev & EPOLLOUT)
    e |= LW_WRITABLE;
  if (ev & (EPOLLERR | EPOLLHUP))
    e |= LW_WATCH_ERROR;
  lw__watch_event(w, e);
}

static int ep_poll(lw_loop *loop, int timeout_ms) {
  ep_state *s = ep(loop);
  int n = epoll_wait(s->epfd, s->events, EP_MAX_EVENTS, timeout_ms);
  if (n < 0)
    return errno == EINTR ? 0 : lw__err_from_errno(errno);
  loop->now = lw__now_ms();
  for (int i = 0; i < n; i++) {
    lw__io *io = s->events[i].data.ptr;
    uint32_t ev = s->events[i].events;
    switch (io->kind) {
    case LW__IO_CONN:
      ep_conn_event(LW__CONTAINER_OF(io, lw_conn, io), ev);
      break;
    case LW__IO_LISTENER:
      ep_listener_event(LW__CONTAINER_OF(io, lw_listener, io));
      break;
    case LW__IO_WATCH:
      ep_watch_event(LW__CONTAINER_OF(io, lw_watch, io), ev);
      break;
    default:
      ep_wake_event(loop);
    }
  }
  return n;
}

const lw__backend lw__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .poll = ep_poll,
    .listener_open = ep_listener_open,
    .listener_close = ep_listener_close,
    .listener_pause = ep_listener_pause,
    .conn_open = ep_conn_open,
    .conn_update = ep_conn_update,
    .conn_detach = ep_conn_detach,
    .wake_open = ep_wake_open,
    .wake = ep_wake,
    .watch_set = ep_watch_set,
};
