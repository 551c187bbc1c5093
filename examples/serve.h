/*
 * serve.h - the server scaffolding that examples/respond.c and examples/httpd.c share:
 * copy it with either of them. Everything here is static: each program includes it once.
 *
 * What it does (lastword.h, "Drain" and "Sockets passed"; respond.c's top says it for
 * the user):
 *   - the listening sockets: those passed in LISTEN_FDS / LW_LISTEN_FDS (systemd, or a
 *     predecessor's SIGHUP), else one made from --listen HOST:PORT (serve_listen);
 *   - --threads N: N loops, one per thread, each adopting a dup of the same sockets (one
 *     accept queue); loop 0 owns the signal watchers and tells the others to drain
 *     through their lw_wakeup;
 *   - SIGTERM/SIGINT (Windows: Ctrl-C, Ctrl-Break): every loop drains, the process
 *     prints one "drain ..." line and exits;
 *   - SIGHUP: argv[0]'s path is started again with the same arguments and takes the
 *     sockets over (lw_listeners_handoff); once it accepts (its ready byte) this copy
 *     drains; if it dies first, this copy goes on serving;
 *   - the "listening on HOST:PORT" line for each socket, from the socket itself.
 *
 * The program provides, before including this file, `struct config` (its own settings:
 * this file never reads them), and fills `serve` (its name for messages, its accept
 * callback, its usage(), the drain deadline and conn_cb, the backend and the options of
 * accepted connections) before calling serve_listen and serve_run.
 *
 * Windows (mingw-w64; run under Wine by scripts/win-test.sh), what differs:
 *  - stop: Ctrl-C (SIGINT) or Ctrl-Break (SIGBREAK: GenerateConsoleCtrlEvent, what
 *    another program sends) drains and exits 0, through lw_signal's console control
 *    handler. Windows has no SIGTERM to catch and no SIGHUP: no restart, and no socket
 *    activation (lw_listen_fds, lw_listeners_handoff: LW_ENOSYS).
 *  - one loop: a socket is tied to ONE I/O completion port for its life
 *    (CreateIoCompletionPort), and its duplicates (WSADuplicateSocket, DuplicateHandle)
 *    are the same socket, so a second loop cannot adopt it (tests/test_adopt.c,
 *    test_adopt_shared); nor is there an SO_REUSEPORT group. So loop 0 makes the listener
 *    itself (lw_listener_new) and --threads must be 1.
 */
#ifndef LW_EXAMPLES_SERVE_H
#define LW_EXAMPLES_SERVE_H

#include <lastword.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;
#endif

#ifdef _WIN32
#define WIN_NO_THREADS                                                                         \
  "a socket belongs to one I/O completion port, its duplicates too, so loops cannot "          \
  "share a listening socket; Windows has no SO_REUSEPORT"
#define SIGNALS                                                                                \
  { SIGINT, SIGBREAK }
#define SOCK(fd) ((SOCKET)(fd))
#else
#define SIGNALS                                                                                \
  { SIGTERM, SIGINT, SIGHUP }
#define SOCK(fd) (fd)
#endif

#define MAX_THREADS 64
#define MAX_LISTEN 16

typedef struct config config; /* the program's settings (its own file defines them) */

/* What the program tells the scaffolding (set in main, before serve_listen). */
static struct {
  const char *name;            /* prefix of every message: "respond", "httpd" */
  lw_accept_cb on_accept;      /* the program's: the listener's data is its worker */
  void (*usage)(void);         /* a bad --listen: prints the usage and exits */
  uint32_t drain_ms;           /* the drain's deadline */
  lw_drain_conn_cb drain_conn; /* the drain's conn_cb (NULL: the library's policy) */
  const char *backend;         /* --backend, or NULL */
  const lw_conn_options *opts; /* of every accepted connection */
} serve;

/* One loop, one thread. */
typedef struct worker {
  const config *cfg;
  int idx;
  lw_loop *loop;
  lw_listener *ls[MAX_LISTEN];
  int nls;
  int fds[MAX_LISTEN]; /* the listening sockets it adopts (loop 0: the originals) */
  lw_wakeup *wake;     /* loops 1..N-1: loop 0 tells them to drain */
  unsigned live;
  unsigned long long accepts;
  int drained; /* its drain has reported */
  lw_drain_report rep;
  pthread_t thread;
} worker;

static worker workers[MAX_THREADS];
static int nworkers;
static char **g_argv;
/* The program to start on SIGHUP: argv[0] as the user gave it (made absolute against
 * the starting directory), looked up again at each restart -- so a new binary installed
 * at that path (a deploy) is what the successor runs. Not /proc/self/exe: that is the
 * running inode, the OLD binary once the file has been replaced. */
static char self_path[4096];
static int self_path_search; /* argv[0] had no '/': searched in PATH (posix_spawnp) */

/* Set once, by loop 0: the drain of every loop has been asked for. */
static atomic_int cmd_drain;
static atomic_int drains_done;

static void serve_init(char **argv) {
  g_argv = argv;
  if (!strchr(argv[0], '/')) {
    self_path_search = 1;
    snprintf(self_path, sizeof(self_path), "%s", argv[0]);
  } else if (argv[0][0] == '/' || !getcwd(self_path, sizeof(self_path) - 1)) {
    snprintf(self_path, sizeof(self_path), "%s", argv[0]);
  } else {
    size_t l = strlen(self_path);
    snprintf(self_path + l, sizeof(self_path) - l, "/%s", argv[0]);
  }
}

/* ---- drain: every loop drains itself; loop 0 prints the sum ---- */
static void on_drained(lw_loop *loop, const lw_drain_report *r, void *arg) {
  (void)loop;
  worker *w = arg;
  w->rep = *r;
  w->drained = 1;
  /* The accept queue is left to whoever holds the socket next (a successor, systemd);
   * closing this loop's descriptor does not touch it while another one is open. */
  for (int i = 0; i < w->nls; i++)
    lw_listener_close(w->ls[i]);
  w->nls = 0;
  atomic_fetch_add(&drains_done, 1);
}

static void start_drain(worker *w) {
  lw_drain_options o = {.deadline_ms = serve.drain_ms,
                        .conn_cb = serve.drain_conn,
                        .done_cb = on_drained,
                        .arg = w};
  int r = lw_loop_drain(w->loop, &o);
  if (r < 0 && r != LW_EALREADY)
    fprintf(stderr, "%s: drain: %s\n", serve.name, lw_strerror(r));
}

static void print_drain(uint64_t ms) {
  lw_drain_report t;
  memset(&t, 0, sizeof(t));
  for (int i = 0; i < nworkers; i++) {
    const lw_drain_report *r = &workers[i].rep;
    t.conns += r->conns;
    for (int k = 0; k < LW_REASON__COUNT; k++)
      t.by_reason[k] += r->by_reason[k];
    t.reset += r->reset;
    t.reset_at_deadline += r->reset_at_deadline;
    t.bytes_acked += r->bytes_acked;
    t.unsent_discarded += r->unsent_discarded;
    t.accept_queued = r->accept_queued > t.accept_queued ? r->accept_queued : t.accept_queued;
  }
  printf("drain conns=%llu", (unsigned long long)t.conns);
  for (int k = 1; k < LW_REASON__COUNT; k++)
    if (t.by_reason[k])
      printf(" %s=%llu", lw_reason_name((lw_close_reason)k),
             (unsigned long long)t.by_reason[k]);
  printf(" reset=%llu reset_at_deadline=%llu acked=%llu unsent_discarded=%llu queued=%llu "
         "ms=%llu\n",
         (unsigned long long)t.reset, (unsigned long long)t.reset_at_deadline,
         (unsigned long long)t.bytes_acked, (unsigned long long)t.unsent_discarded,
         (unsigned long long)t.accept_queued, (unsigned long long)ms);
  fflush(stdout);
}

/* Loop 0: every loop drains (the others through their wake-up: lw_wakeup_send is the
 * one call another thread may make). */
static void drain_all(void) {
  if (atomic_exchange(&cmd_drain, 1))
    return;
  start_drain(&workers[0]);
  for (int t = 1; t < nworkers; t++)
    lw_wakeup_send(workers[t].wake);
}

#ifndef _WIN32
/* ---- restart: hand the listening sockets to a new copy of ourselves ---- */
static int ready_fd = -1;
static pid_t successor;

static void start_successor(worker *w) {
  if (ready_fd >= 0)
    return; /* one restart at a time */
  int r = lw_listeners_handoff(w->ls, w->nls, &ready_fd);
  if (r < 0) {
    fprintf(stderr, "%s: restart: %s\n", serve.name, lw_strerror(r));
    return;
  }
  /* Children of failed restarts are reaped here at the latest (on_ready tries first). */
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
  r = self_path_search ? posix_spawnp(&successor, self_path, NULL, NULL, g_argv, environ)
                       : posix_spawn(&successor, self_path, NULL, NULL, g_argv, environ);
  lw_listeners_handoff_end(w->ls, w->nls);
  if (r != 0) {
    fprintf(stderr, "%s: restart: spawn: %s\n", serve.name, strerror(r));
    close(ready_fd);
    ready_fd = -1;
  }
}

static lw_watch *ready_watch;

/* The successor's answer on ready_fd: a byte when it accepts (then we drain), EOF if
 * it died (then we go on: we never stopped accepting). */
static void on_ready(lw_watch *wt, int events) {
  (void)events;
  char b;
  ssize_t n = read(ready_fd, &b, 1);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  lw_watch_free(wt); /* before the close: the watcher must not outlive its fd */
  ready_watch = NULL;
  close(ready_fd);
  ready_fd = -1;
  if (n == 1) {
    drain_all();
    return;
  }
  /* EOF: the new copy closed its end without a byte -- it is exiting (the kernel
   * closes a process's files just before it becomes a zombie). Reap it, waiting a
   * little at most: a program that closes inherited descriptors and runs on must not
   * block this loop. */
  int st = -1;
  for (int i = 0; i < 200 && waitpid(successor, &st, WNOHANG) == 0; i++) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  fprintf(stderr,
          "%s: restart: the new copy exited before accepting (status %d); "
          "this one goes on serving\n",
          serve.name, st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}
#endif

static void on_wake(lw_wakeup *wk) {
  worker *w = lw_wakeup_get_data(wk);
  if (!w->drained)
    start_drain(w);
}

static void on_sig(lw_signal *sg, int signum) {
  (void)sg;
#ifdef _WIN32
  (void)signum; /* Ctrl-C, Ctrl-Break: no restart signal on Windows */
  drain_all();
#else
  if (signum != SIGHUP) {
    drain_all();
    return;
  }
  if (atomic_load(&cmd_drain) || ready_fd >= 0)
    return; /* draining, or a restart already under way */
  start_successor(&workers[0]);
  if (ready_fd >= 0 && (lw_watch_new(workers[0].loop, ready_fd, &ready_watch) < 0 ||
                        lw_watch_start(ready_watch, LW_READABLE, on_ready) < 0)) {
    fprintf(stderr, "%s: restart: cannot watch the new copy; draining\n", serve.name);
    drain_all();
  }
#endif
}

static int worker_setup(worker *w) {
  int r = w->loop ? 0 : lw_loop_new(&w->loop, serve.backend); /* Windows: made in main */
  if (r < 0) {
    fprintf(stderr, "%s: loop: %s\n", serve.name, lw_strerror(r));
    return r;
  }
  for (int i = 0; i < w->nls; i++) {
    if (!w->ls[i])
      r = lw_listener_adopt(w->loop, w->fds[i], serve.opts, serve.on_accept, &w->ls[i]);
    if (r < 0) {
      fprintf(stderr, "%s: listening socket %d: %s\n", serve.name, w->fds[i], lw_strerror(r));
      return r;
    }
    lw_listener_set_data(w->ls[i], w);
  }
  if (w->idx > 0) {
    /* Unref'd: the listeners keep the loop alive until its drain closes them. */
    r = lw_wakeup_new(w->loop, on_wake, &w->wake);
    if (r < 0)
      return r;
    lw_wakeup_set_data(w->wake, w);
    lw_wakeup_unref(w->wake);
  }
  return 0;
}

/* Loops 1..N-1, each in its thread (set up by the main thread before it starts). */
static void *worker_main(void *arg) {
  worker *w = arg;
  lw_loop_run(w->loop, LW_RUN_DEFAULT);
  return NULL;
}

static int parse_hostport(const char *arg, char *host, size_t hostlen, int *port) {
  const char *colon = strrchr(arg, ':');
  if (!colon || colon == arg)
    return -1;
  size_t n = (size_t)(colon - arg);
  if (arg[0] == '[' && n >= 2 && arg[n - 1] == ']') {
    arg++;
    n -= 2;
  }
  if (n >= hostlen)
    return -1;
  memcpy(host, arg, n);
  host[n] = 0;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535)
    return -1;
  *port = (int)p;
  return 0;
}

/* "listening on HOST:PORT" for a socket, from the socket itself (an adopted one too). */
static void print_listening(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (getsockname(SOCK(fd), (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      port = ntohs(a->sin6_port);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      port = ntohs(a->sin_port);
    }
  }
  printf(strchr(host, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n", host, port);
}

/* The end of a usage message: what differs on Windows. */
static void serve_usage_more(void) {
#ifdef _WIN32
  fprintf(stderr,
          "Windows: Ctrl-C or Ctrl-Break drains and exits 0 (Windows has no SIGTERM); "
          "there is no SIGHUP restart and no socket activation (LISTEN_FDS), and "
          "--threads is 1 (%s)\n",
          WIN_NO_THREADS);
#endif
}

/* The listening sockets into fds[]: passed (systemd, or a predecessor's SIGHUP), else
 * one made from listen_arg (*made = 1). Returns how many, or -1 (the reason printed). */
static int serve_listen(const char *listen_arg, int *fds, int *made) {
  *made = 0;
  int nfds = lw_listen_fds(fds, NULL, MAX_LISTEN);
  if (nfds == LW_ENOSYS)
    nfds = 0; /* Windows: nothing is ever passed */
  if (nfds < 0 || nfds > MAX_LISTEN) {
    fprintf(stderr, "%s: LISTEN_FDS / LW_LISTEN_FDS: %s\n", serve.name,
            nfds < 0 ? lw_strerror(nfds) : "too many sockets");
    return -1;
  }
  if (nfds > 0)
    return nfds;
  if (!listen_arg)
    serve.usage();
  char host[128];
  int port = 0; /* serve.usage() exits, which the compiler cannot see */
  if (parse_hostport(listen_arg, host, sizeof(host), &port) < 0)
    serve.usage();
#ifdef _WIN32
  /* Loop 0 makes it and keeps it (see the top of the file). */
  int r = lw_loop_new(&workers[0].loop, serve.backend);
  if (r == 0)
    r = lw_listener_new(workers[0].loop, host, port, 1024, serve.opts, serve.on_accept,
                        &workers[0].ls[0]);
  if (r < 0) {
    fprintf(stderr, "%s: listen %s: %s\n", serve.name, listen_arg, lw_strerror(r));
    return -1;
  }
  fds[0] = lw_listener_fd(workers[0].ls[0]);
#else
  /* A throw-away loop makes the socket (bind, listen, the address rules of
   * lw_listener_new); the workers adopt dups of it. */
  lw_loop *tmp;
  lw_listener *l;
  int r = lw_loop_new(&tmp, "epoll");
  if (r == 0)
    r = lw_listener_new(tmp, host, port, 1024, NULL, serve.on_accept, &l);
  if (r < 0) {
    fprintf(stderr, "%s: listen %s: %s\n", serve.name, listen_arg, lw_strerror(r));
    return -1;
  }
  fds[0] = fcntl(lw_listener_fd(l), F_DUPFD_CLOEXEC, 3);
  lw_listener_close(l);
  lw_loop_run(tmp, LW_RUN_NOWAIT);
  lw_loop_close(tmp);
#endif
  *made = 1;
  return 1;
}

/* Runs `threads` loops on fds[0..nfds) until they have drained: loop 0 adopts fds
 * itself, loop t > 0 per_loop[t] if given (one socket each: --reuseport), else dups.
 * Prints the "listening on" lines and, at the end, the "drain" line. Returns -1 if the
 * set-up failed (the reason printed; nothing ran), else 0, or 1 if a loop had handles
 * left at exit. */
static int serve_run(const config *cfg, int threads, const int *fds, int nfds,
                     const int *per_loop) {
  nworkers = threads;
  for (int t = 0; t < threads; t++) {
    worker *w = &workers[t];
    w->cfg = cfg;
    w->idx = t;
    w->nls = nfds;
#ifdef _WIN32
    (void)per_loop;
    w->fds[0] = fds[0]; /* threads == 1: loop 0's own listener */
#else
    for (int i = 0; i < nfds; i++)
      w->fds[i] = t == 0 ? fds[i] : per_loop ? per_loop[t] : fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
#endif
  }
  for (int t = 0; t < threads; t++)
    if (worker_setup(&workers[t]) < 0)
      return -1; /* the loops made so far are reachable (workers[]); the exit frees them */
  /* Signals, in loop 0: SIGTERM/SIGINT drain, SIGHUP restarts (Windows: SIGNALS above).
   * Unref'd (the listeners keep the loop alive), and kept until every loop has drained:
   * a second SIGTERM during the drain is then ignored instead of killing the process. */
  const int signums[] = SIGNALS;
  enum { NSIGS = sizeof(signums) / sizeof(signums[0]) };
  lw_signal *sigs[NSIGS];
  for (int i = 0; i < NSIGS; i++) {
    if (lw_signal_new(workers[0].loop, &sigs[i]) < 0 ||
        lw_signal_start(sigs[i], on_sig, signums[i]) < 0) {
      fprintf(stderr, "%s: signal watcher failed\n", serve.name);
      return -1;
    }
    lw_signal_unref(sigs[i]);
  }
  for (int i = 0; i < nfds; i++)
    print_listening(fds[i]);
  /* The backend actually in use (io_uring may have been refused): on stderr, so that
   * stdout's first line stays the documented "listening on" line. */
  fprintf(stderr, "%s: pid %d backend %s threads %d\n", serve.name, (int)getpid(),
          lw_loop_backend(workers[0].loop), threads);
  fflush(stdout);
  for (int t = 1; t < threads; t++)
    pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
  /* Accepting (the accept is armed on every adopted socket): tell a predecessor. */
  lw_handoff_ready();

  lw_loop_run(workers[0].loop, LW_RUN_DEFAULT);
  for (int t = 1; t < threads; t++)
    pthread_join(workers[t].thread, NULL);
#ifndef _WIN32
  /* Freeing the watchers restores the default action (termination): a SIGTERM that
   * came now -- an operator who presses Ctrl-C again, a supervisor that repeats
   * itself -- would kill the process while it exits, without its drain line and with
   * status 143. Blocked, they stay pending and go with the process. (The other
   * threads have been joined: this one is the only one left.) */
  sigset_t ss;
  sigemptyset(&ss);
  for (int i = 0; i < NSIGS; i++)
    sigaddset(&ss, signums[i]);
  pthread_sigmask(SIG_BLOCK, &ss, NULL);
#endif
  for (int i = 0; i < NSIGS; i++)
    lw_signal_free(sigs[i]);
#ifndef _WIN32
  if (ready_watch)
    lw_watch_free(ready_watch);
#endif
  int r = 0;
  for (int t = threads - 1; t >= 0; t--) {
    if (workers[t].wake)
      lw_wakeup_free(workers[t].wake); /* no thread sends any more */
    lw_loop_run(workers[t].loop, LW_RUN_NOWAIT);
    if (lw_loop_close(workers[t].loop) < 0) {
      fprintf(stderr, "%s: loop %d: handles left at exit\n", serve.name, t);
      r = 1;
    }
  }
  uint64_t ms = 0;
  for (int t = 0; t < threads; t++)
    ms = workers[t].rep.elapsed_ms > ms ? workers[t].rep.elapsed_ms : ms;
  print_drain(ms);
  return r;
}

#endif /* LW_EXAMPLES_SERVE_H */
