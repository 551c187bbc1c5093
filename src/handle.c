/*
 * handle.c - loop integration, the portable half: the cross-thread wake-up, the fd
 * watcher's state, unref, the walk over the live connections, the address accessors.
 * The backends do the OS half (lw__backend: wake_open, wake, watch_set); signals are in
 * signal.c. The contract is in lastword.h, "Loop integration".
 *
 * The wake channel is one per loop, shared by every wake-up and by the signal handler:
 * a send sets its handle's flag, then wakes the loop unless a wake is already on its way
 * (loop->wake_posted); the dispatch clears wake_posted BEFORE it scans the flags, so a
 * send that saw the flag set is always seen by the scan that follows (all seq_cst).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#endif

/* The signal handler and other threads touch these: they must not take a lock. */
void lw__relax(void) {
#ifdef _WIN32
  SwitchToThread();
#else
  sched_yield();
#endif
}

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "lock-free atomics are needed in a signal handler");

int lw__loop_wake_init(lw_loop *loop) {
  if (loop->wake_ready)
    return 0;
  if (!loop->backend->wake_open)
    return LW_ENOSYS;
  int r = loop->backend->wake_open(loop);
  if (r == 0)
    loop->wake_ready = 1;
  return r;
}

int lw__loop_wake(lw_loop *loop) {
  if (atomic_exchange(&loop->wake_posted, 1))
    return 0; /* one is on its way, and its dispatch scans after clearing the flag */
  int r = loop->backend->wake(loop);
  if (r < 0)
    atomic_store(&loop->wake_posted, 0); /* none is on its way after all */
  return r;
}

void lw__loop_wake_run(lw_loop *loop) {
  atomic_store(&loop->wake_posted, 0);
  lw__signal_dispatch(loop);
  /* Each wake-up that was sent runs once. Callbacks may free any wake-up or make new
   * ones: the batch is taken off the list and each node put back before its callback,
   * so a free removes it from whichever list holds it. */
  lw__list batch;
  lw__list_move_all(&batch, &loop->wakeups);
  while (!lw__list_empty(&batch)) {
    lw__list *n = batch.next;
    lw__list_remove(n);
    lw__list_push(&loop->wakeups, n);
    lw_wakeup *w = LW__CONTAINER_OF(n, lw_wakeup, node);
    if (atomic_exchange(&w->pending, 0))
      w->cb(w);
  }
}

/* ---- wake-ups ---- */

int lw_wakeup_new(lw_loop *loop, lw_wakeup_cb cb, lw_wakeup **out) {
  if (!loop || !cb || !out)
    return LW_EINVAL;
  *out = NULL;
  int r = lw__loop_wake_init(loop);
  if (r < 0)
    return r;
  lw_wakeup *w = calloc(1, sizeof(*w));
  if (!w)
    return LW_ENOMEM;
  w->loop = loop;
  w->cb = cb;
  atomic_init(&w->pending, 0);
  atomic_init(&w->senders, 0);
  lw__list_push(&loop->wakeups, &w->node);
  loop->nhandles++;
  loop->nactive++; /* active for life, as uv_async */
  *out = w;
  return 0;
}

int lw_wakeup_send(lw_wakeup *w) {
  if (!w)
    return LW_EINVAL;
  /* Counted in before pending is set: a callback that sees this send's flag (and may
   * free w, then close the loop) finds the count up until the send is out of w and of
   * the loop. The dispatch may run before the wake below is even written (another
   * wake-up's send woke it), so "the callback ran" does not mean "the send returned". */
  atomic_fetch_add(&w->senders, 1);
  int r = 0;
  if (!atomic_exchange(&w->pending, 1))
    r = lw__loop_wake(w->loop);
  /* else: its sender's wake (or a dispatch not yet past this flag) comes */
  atomic_fetch_sub(&w->senders, 1);
  return r;
}

void lw_wakeup_free(lw_wakeup *w) {
  if (!w)
    return;
  /* A send whose flag the dispatch already took may still be inside (see the send):
   * wait until it is out. Bounded by one send's length (an eventfd write); a send that
   * STARTS after this is the application's race, which the contract forbids. */
  while (atomic_load(&w->senders))
    lw__relax();
  lw__list_remove(&w->node);
  w->loop->nhandles--;
  if (!w->unref)
    w->loop->nactive--;
  free(w);
}

/* lw_wakeup_ref/unref/set_data/get_data: a wake-up counts in nactive from new to free. */
LW__HANDLE_REF_FNS(lw_wakeup, 1)

/* ---- fd watchers ---- */

int lw_watch_new(lw_loop *loop, lw_sock fd, lw_watch **out) {
  if (!loop || !out)
    return LW_EINVAL;
  *out = NULL;
  if (!loop->backend->watch_set)
    return LW_ENOSYS;
#ifdef _WIN32
  if (fd == (lw_sock)INVALID_SOCKET)
    return LW_EINVAL;
#else
  struct stat st;
  if (fd < 0)
    return LW_EINVAL;
  if (fstat(fd, &st) < 0)
    return errno == EBADF ? LW_EINVAL : lw__err_from_errno(errno);
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
    return LW_EPERM; /* always "ready": epoll refuses them (EPERM), poll lies */
#endif
  lw_watch *w = calloc(1, sizeof(*w));
  if (!w)
    return LW_ENOMEM;
#ifndef _WIN32
  w->file_dev = (uint64_t)st.st_dev;
  w->file_ino = (uint64_t)st.st_ino;
#endif
  w->loop = loop;
  w->io.fd = (int)fd;
  w->io.kind = LW__IO_WATCH;
  lw__list_init(&w->node);
  loop->nhandles++;
  *out = w;
  return 0;
}

int lw_watch_start(lw_watch *w, int events, lw_watch_cb cb) {
  if (!w || !cb || w->freed || (events & ~(LW_READABLE | LW_WRITABLE | LW_WATCH_ERROR)))
    return LW_EINVAL;
  events &= LW_READABLE | LW_WRITABLE;
  if (!events)
    return LW_EINVAL;
  int was = w->events;
  w->events = events;
  int r = w->loop->backend->watch_set(w);
  if (r < 0) {
    w->events = was;
    if (was)
      w->loop->backend->watch_set(w);
    return r;
  }
  w->cb = cb;
  if (!was && !w->unref)
    w->loop->nactive++;
  return 0;
}

void lw_watch_stop(lw_watch *w) {
  if (!w || !w->events)
    return;
  w->events = 0;
  w->loop->backend->watch_set(w);
  if (!w->unref)
    w->loop->nactive--;
}

void lw_watch_free(lw_watch *w) {
  if (!w || w->freed)
    return;
  lw_watch_stop(w);
  w->freed = 1;
  if (w->busy)
    w->loop->nwatch_busy++; /* released by lw__watch_ops_done */
  else
    lw__list_push(&w->loop->watch_endgame, &w->node);
}

void lw__watch_ops_done(lw_watch *w) {
  assert(w->busy);
  w->busy = 0;
  if (w->freed) {
    w->loop->nwatch_busy--;
    lw__list_push(&w->loop->watch_endgame, &w->node);
  }
}

int lw__watch_same_file(const lw_watch *w) {
#ifdef _WIN32
  (void)w;
  return 1;
#else
  struct stat st;
  return fstat(w->io.fd, &st) == 0 && (uint64_t)st.st_dev == w->file_dev &&
         (uint64_t)st.st_ino == w->file_ino;
#endif
}

void lw__watch_event(lw_watch *w, int events) {
  if (w->freed || !w->events)
    return; /* stale: stopped or freed earlier in this batch */
  int ev = events & (w->events | LW_WATCH_ERROR);
  if (ev)
    w->cb(w, ev);
}

void lw__watch_endgame(lw_loop *loop) {
  while (!lw__list_empty(&loop->watch_endgame)) {
    lw__list *n = loop->watch_endgame.next;
    lw__list_remove(n);
    lw_watch *w = LW__CONTAINER_OF(n, lw_watch, node);
    assert(w->freed && !w->busy);
    loop->nhandles--;
    free(w->backend_data);
    free(w);
  }
}

/* lw_watch_ref/unref/set_data/get_data: a watch counts while it has events. */
LW__HANDLE_REF_FNS(lw_watch, h->events)

/* ---- the walk: every conn not yet freed, in loop->conns; slots do not move while a
 * walk runs (a conn freed meanwhile leaves a NULL hole, closed up when the last walk
 * returns), and new conns are appended past the count the walk took at its start. ---- */

#define LW__CONN_SLOTS_MAX (1u << 26) /* lw__io.conn_slot's width */

int lw__loop_conn_add(lw_conn *c) {
  lw_loop *loop = c->loop;
  if (loop->nconn_slots == loop->conn_cap) {
    uint32_t cap = loop->conn_cap ? loop->conn_cap * 2 : 64;
    if (cap > LW__CONN_SLOTS_MAX)
      return LW_ENOMEM;
    lw_conn **v = realloc(loop->conns, cap * sizeof(*v));
    if (!v)
      return LW_ENOMEM;
    loop->conns = v;
    loop->conn_cap = cap;
  }
  c->io.conn_slot = loop->nconn_slots;
  loop->conns[loop->nconn_slots++] = c;
  return 0;
}

void lw__loop_conn_remove(lw_conn *c) {
  lw_loop *loop = c->loop;
  uint32_t i = c->io.conn_slot;
  assert(i < loop->nconn_slots && loop->conns[i] == c);
  if (loop->walking) {
    loop->conns[i] = NULL;
    loop->conn_holes = 1;
    return;
  }
  lw_conn *last = loop->conns[--loop->nconn_slots];
  loop->conns[i] = last;
  last->io.conn_slot = i;
}

void lw_loop_walk(lw_loop *loop, lw_walk_cb cb, void *arg) {
  if (!loop || !cb)
    return;
  uint32_t n = loop->nconn_slots;
  loop->walking++;
  for (uint32_t i = 0; i < n; i++) {
    lw_conn *c = loop->conns[i];
    if (c && !c->close_reported)
      cb(c, arg);
  }
  if (--loop->walking == 0 && loop->conn_holes) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < loop->nconn_slots; i++)
      if (loop->conns[i]) {
        loop->conns[k] = loop->conns[i];
        loop->conns[k]->io.conn_slot = k;
        k++;
      }
    loop->nconn_slots = k;
    loop->conn_holes = 0;
  }
}

/* ---- addresses ---- */

static int conn_addr(const lw_conn *c, int peer, char *host, size_t hostlen, int *port) {
  if (!c || (host && !hostlen))
    return LW_EINVAL;
  if (c->detached || c->connecting || c->io.fd < 0)
    return LW_ENOTCONN;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
#ifdef _WIN32
  SOCKET s = (SOCKET)(intptr_t)c->io.fd;
  int r = peer ? getpeername(s, (struct sockaddr *)&ss, &len)
               : getsockname(s, (struct sockaddr *)&ss, &len);
  if (r != 0)
    return WSAGetLastError() == WSAENOTCONN ? LW_ENOTCONN : LW_EIO;
#else
  int r = peer ? getpeername(c->io.fd, (struct sockaddr *)&ss, &len)
               : getsockname(c->io.fd, (struct sockaddr *)&ss, &len);
  if (r != 0)
    return lw__err_from_errno(errno);
#endif
  char buf[INET6_ADDRSTRLEN];
  int p;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    if (!inet_ntop(AF_INET, (void *)&a->sin_addr, buf, sizeof(buf)))
      return LW_EIO;
    p = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    if (!inet_ntop(AF_INET6, (void *)&a->sin6_addr, buf, sizeof(buf)))
      return LW_EIO;
    p = ntohs(a->sin6_port);
  } else {
    return LW_EAFNOSUPPORT;
  }
  if (host) {
    size_t l = strlen(buf);
    if (l >= hostlen)
      return LW_ENOSPC;
    memcpy(host, buf, l + 1);
  }
  if (port)
    *port = p;
  return 0;
}

int lw_conn_peer_addr(const lw_conn *c, char *host, size_t hostlen, int *port) {
  return conn_addr(c, 1, host, hostlen, port);
}
int lw_conn_local_addr(const lw_conn *c, char *host, size_t hostlen, int *port) {
  return conn_addr(c, 0, host, hostlen, port);
}
