/*
 * signal.c - signal watchers (lastword.h, "Signal watcher").
 *
 * One process-wide OS handler per signal number, installed when the first watcher of
 * that number in the process starts and replaced by the previous disposition when the
 * last one stops. The handler does not know watchers, only loops: a fixed registry of
 * the loops that watch any signal (sig_loops), each with a per-signum count of started
 * watchers (sig_want) and of deliveries not yet dispatched (sig_count). For every
 * interested loop the handler adds one to the count and wakes the loop (handle.c:
 * lw__loop_wake, one write(2) to its eventfd on Linux). The loop's dispatch then runs
 * each started watcher of that signum once per counted delivery, in its own thread.
 *
 * Why not signalfd: it sees a signal only if EVERY thread of the process blocks it
 * (otherwise the kernel delivers it to a thread that does not, by its disposition), a
 * library cannot arrange that, and only one signalfd reader gets each signal: two loops
 * could not both see it. Why not a self-pipe per signal: the loop already has its wake
 * channel, and an eventfd write cannot fill up.
 *
 * The handler is async-signal-safe: lock-free atomics, the backend's one wake syscall,
 * errno saved and restored. Its only shared state with the rest is the registry; a loop
 * leaves it (its last watcher stops) by clearing its slot and then waiting until no
 * handler is running (in_handler): a handler that counts itself in before it reads the
 * slots either read the slot before it was cleared -- and is waited for -- or reads
 * NULL. So a loop is never touched by a handler after lw_signal_stop returns.
 * Starting and stopping take a spinlock (reg_lock), never taken by the handler.
 *
 * fork(): the child gets a copy of the registry and of the OS handlers, but its loops'
 * kernel objects (epoll set, io_uring ring, eventfd) are shared with the parent, so the
 * child must not use the parent's loops (lastword.h). The library's handler must not
 * stay in it either: a SIGTERM meant to end a child that never asked for a watcher
 * would be swallowed (counted for a copy of a loop nobody runs, its wake written to the
 * PARENT's eventfd). A pthread_atfork child handler, registered with the first OS
 * handler, gives the child the dispositions the process had before its first watcher
 * and an empty registry (a new generation: the parent's loop copies are no longer in
 * it, and stopping their watchers leaves the child's registry alone).
 *
 * Windows: the console control handler (SetConsoleCtrlHandler), which Windows runs on
 * a thread of its own, plays the handler's part with the same registry.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <pthread.h>
#include <signal.h>
#endif

#define LW__SIG_SLOTS 64

_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2,
               "lock-free atomics are needed in a signal handler");

static _Atomic(lw_loop *) sig_loops[LW__SIG_SLOTS];
static atomic_int in_handler;
static atomic_flag reg_lock = ATOMIC_FLAG_INIT;
static unsigned sig_users[LW__NSIG]; /* started watchers per signum, process-wide */
#ifdef _WIN32
#define LW__SIGHUP 1
#define LW__SIGINT 2
#define LW__SIGBREAK 21
static unsigned console_users; /* started watchers of the three console signals */
#else
static struct sigaction sig_old[LW__NSIG];
static int atfork_registered;
#endif
static unsigned sig_gen; /* +1 in a forked child: the registry starts over */

static void reg_take(void) {
  while (atomic_flag_test_and_set(&reg_lock))
    lw__relax();
}
static void reg_give(void) { atomic_flag_clear(&reg_lock); }

/* Any thread, in a signal handler: counts the delivery for every interested loop. */
static int sig_deliver(int signum) {
  int any = 0;
  atomic_fetch_add(&in_handler, 1);
  for (int i = 0; i < LW__SIG_SLOTS; i++) {
    lw_loop *l = atomic_load(&sig_loops[i]);
    if (l && atomic_load(&l->sig_want[signum])) {
      atomic_fetch_add(&l->sig_count[signum], 1);
      lw__loop_wake(l);
      any = 1;
    }
  }
  atomic_fetch_sub(&in_handler, 1);
  return any;
}

#ifdef _WIN32
static BOOL WINAPI sig_console(DWORD type) {
  int signum;
  switch (type) {
  case CTRL_C_EVENT:
    signum = LW__SIGINT;
    break;
  case CTRL_BREAK_EVENT:
    signum = LW__SIGBREAK;
    break;
  case CTRL_CLOSE_EVENT:
    signum = LW__SIGHUP;
    break;
  default:
    return FALSE;
  }
  /* TRUE: handled, the next handler (the default one ends the process) is not run. */
  return sig_deliver(signum) ? TRUE : FALSE;
}
#else
static void sig_handler(int signum) {
  int saved = errno;
  if (signum > 0 && signum < LW__NSIG)
    sig_deliver(signum);
  errno = saved;
}
#endif

static int sig_check(int signum) {
#ifdef _WIN32
  if (signum == LW__SIGINT || signum == LW__SIGBREAK || signum == LW__SIGHUP)
    return 0;
  return signum > 0 && signum < LW__NSIG ? LW_ENOSYS : LW_EINVAL;
#else
  if (signum <= 0 || signum >= LW__NSIG || signum == SIGKILL || signum == SIGSTOP ||
      signum == SIGSEGV || signum == SIGBUS || signum == SIGFPE || signum == SIGILL)
    return LW_EINVAL;
  return 0;
#endif
}

#ifndef _WIN32
/* In the child of a fork(), single-threaded, before fork() returns there: see the top.
 * sigaction is async-signal-safe; nothing here allocates. */
static void sig_atfork_child(void) {
  for (int i = 0; i < LW__SIG_SLOTS; i++)
    atomic_store(&sig_loops[i], NULL);
  for (int signum = 1; signum < LW__NSIG; signum++)
    if (sig_users[signum]) {
      sigaction(signum, &sig_old[signum], NULL);
      sig_users[signum] = 0;
    }
  atomic_store(&in_handler, 0);
  atomic_flag_clear(&reg_lock); /* a thread of the parent may have held it: gone here */
  sig_gen++;
}
#endif

/* Under reg_lock: the OS handler for signum, when its first watcher starts. */
static int os_install(int signum) {
#ifdef _WIN32
  if (console_users == 0 && !SetConsoleCtrlHandler(sig_console, TRUE))
    return LW_EIO;
  console_users++;
  return 0;
#else
  if (sig_users[signum] > 0)
    return 0;
  if (!atfork_registered) {
    int r = pthread_atfork(NULL, NULL, sig_atfork_child);
    if (r != 0)
      return lw__err_from_errno(r);
    atfork_registered = 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = sig_handler;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(signum, &sa, &sig_old[signum]) != 0)
    return lw__err_from_errno(errno);
  return 0;
#endif
}

/* Under reg_lock: the previous disposition back, when the last watcher stops. */
static void os_restore(int signum) {
#ifdef _WIN32
  (void)signum;
  if (--console_users == 0)
    SetConsoleCtrlHandler(sig_console, FALSE);
#else
  if (sig_users[signum] == 0)
    sigaction(signum, &sig_old[signum], NULL);
#endif
}

int lw_signal_new(lw_loop *loop, lw_signal **out) {
  if (!loop || !out)
    return LW_EINVAL;
  *out = NULL;
  int r = lw__loop_wake_init(loop);
  if (r < 0)
    return r;
  lw_signal *s = calloc(1, sizeof(*s));
  if (!s)
    return LW_ENOMEM;
  s->loop = loop;
  lw__list_push(&loop->signals, &s->node);
  loop->nhandles++;
  *out = s;
  return 0;
}

int lw_signal_start(lw_signal *s, lw_signal_cb cb, int signum) {
  if (!s || !cb)
    return LW_EINVAL;
  int r = sig_check(signum);
  if (r < 0)
    return r;
  if (s->signum == signum) {
    s->cb = cb;
    return 0;
  }
  lw_signal_stop(s);
  lw_loop *loop = s->loop;
  reg_take();
  if (loop->nsig_started > 0 && loop->sig_gen != sig_gen) {
    reg_give();
    return LW_EINVAL; /* a copy of the parent's loop, in a forked child: see the top */
  }
  int took_slot = 0;
  if (loop->nsig_started == 0) {
    int i = 0;
    while (i < LW__SIG_SLOTS && atomic_load(&sig_loops[i]))
      i++;
    if (i == LW__SIG_SLOTS) {
      reg_give();
      return LW_ENOSPC;
    }
    atomic_store(&sig_loops[i], loop);
    loop->sig_slot = i;
    loop->sig_gen = sig_gen;
    took_slot = 1;
  }
  /* Wanted before the handler is in: a signal right after the install is counted. */
  atomic_fetch_add(&loop->sig_want[signum], 1);
  r = os_install(signum);
  if (r < 0) {
    atomic_fetch_sub(&loop->sig_want[signum], 1);
    if (took_slot) {
      atomic_store(&sig_loops[loop->sig_slot], NULL);
      while (atomic_load(&in_handler))
        lw__relax();
      loop->sig_slot = -1;
    }
    reg_give();
    return r;
  }
  sig_users[signum]++;
  loop->nsig_started++;
  reg_give();
  s->signum = signum;
  s->cb = cb;
  if (!s->unref)
    loop->nactive++;
  return 0;
}

void lw_signal_stop(lw_signal *s) {
  if (!s || !s->signum)
    return;
  lw_loop *loop = s->loop;
  int signum = s->signum;
  reg_take();
  if (atomic_fetch_sub(&loop->sig_want[signum], 1) == 1)
    atomic_store(&loop->sig_count[signum], 0); /* not for a watcher started later */
  if (loop->sig_gen != sig_gen) {
    /* A copy of the parent's loop in a forked child: the child's registry and OS
     * handlers never had it (sig_atfork_child); only the loop's own counts go. */
    if (--loop->nsig_started == 0)
      loop->sig_slot = -1;
  } else {
    sig_users[signum]--;
    os_restore(signum);
    if (--loop->nsig_started == 0) {
      atomic_store(&sig_loops[loop->sig_slot], NULL);
      while (atomic_load(&in_handler))
        lw__relax(); /* a handler that read the slot before it was cleared is done */
      loop->sig_slot = -1;
    }
  }
  reg_give();
  s->signum = 0;
  if (!s->unref)
    loop->nactive--;
}

void lw_signal_free(lw_signal *s) {
  if (!s)
    return;
  lw_signal_stop(s);
  lw__list_remove(&s->node);
  s->loop->nhandles--;
  free(s);
}

void lw__signal_dispatch(lw_loop *loop) {
  if (!loop->nsig_started)
    return;
  for (int signum = 1; signum < LW__NSIG; signum++) {
    if (!atomic_load(&loop->sig_want[signum]))
      continue;
    unsigned n = atomic_exchange(&loop->sig_count[signum], 0);
    /* Each delivery runs every watcher of signum once. A callback may stop, free or
     * start any watcher: the batch is taken off the list and each node put back before
     * its callback (a free removes it from whichever list holds it). */
    for (unsigned k = 0; k < n; k++) {
      lw__list batch;
      lw__list_move_all(&batch, &loop->signals);
      while (!lw__list_empty(&batch)) {
        lw__list *node = batch.next;
        lw__list_remove(node);
        lw__list_push(&loop->signals, node);
        lw_signal *s = LW__CONTAINER_OF(node, lw_signal, node);
        if (s->signum == signum)
          s->cb(s, signum);
      }
    }
  }
}

/* lw_signal_ref/unref/set_data/get_data: a signal watcher counts while started. */
LW__HANDLE_REF_FNS(lw_signal, h->signum)
