/*
 * respond - the reference server that the tests, the lab and the benchmarks drive.
 *
 *   respond --listen HOST:PORT [--bytes N] [--close graceful|abort|naive]
 *           [--deadline-ms D] [--dead-after-ms T] [--idle-timeout-ms T]
 *           [--stall-timeout-ms T] [--threads N] [--drain-ms D] [--log]
 *
 * Prints "listening on HOST:PORT" (the real port, so :0 works). For each connection:
 * reads up to the first '\n' and never a byte after it (reads of size 1), writes N bytes
 * (default 1 MiB) where byte i is i % 251, then ends the connection:
 *   graceful  lw_close(c, D): flush, FIN, drain input to the peer's FIN, wait for the
 *             peer's ACK of every byte, close; RST if D ms pass first
 *   abort     lw_abort() once the response is in the kernel: RST
 *   naive     lw_close_naive() once the response is in the kernel: a plain close()
 * --dead-after-ms, --idle-timeout-ms, --stall-timeout-ms set the liveness options of
 * the same names (lw_conn_options in lastword.h) on every accepted connection.
 * --log prints one line per ended connection (fields documented in README.md).
 *
 * Serving a port for its whole life (lastword.h, "Drain" and "Sockets passed"):
 *   --threads N   N loops, one per thread, accepting from ONE shared listening socket
 *                 (each loop adopts a dup of it): one accept queue, so a loop that
 *                 pauses or drains never strands connections hashed to it, a
 *                 successor takes the queue over whole, and systemd's single socket
 *                 serves every thread as it is (README.md: the measurement).
 *   --reuseport   instead, an SO_REUSEPORT group of N sockets, one per loop: for that
 *                 measurement only (no SIGHUP hand-off: it passes loop 0's socket).
 *   started by systemd (or systemd-socket-activate): serves the sockets passed in
 *                 LISTEN_FDS instead of --listen (which may then be omitted), and
 *                 prints the same "listening on" line for each.
 *   SIGTERM/SIGINT  drain (lw_loop_drain on every loop, deadline --drain-ms, default
 *                 10000) and exit 0, printing one line: "drain conns=... <reason>=<n>
 *                 ... reset=... acked=... queued=... ms=...".
 *   SIGHUP        restart without loss: starts argv[0]'s path again (a binary
 *                 installed there since is the one that runs) with the same arguments;
 *                 it takes the listening sockets over (LW_LISTEN_FDS); once
 *                 it accepts (its ready byte), this copy drains and exits 0 (same
 *                 "drain" line); the connections waiting in the shared accept queue
 *                 are the successor's. If the successor dies first, this copy goes on.
 */
#include <lastword.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;
#endif

#ifdef _WIN32
/* Windows (mingw-w64; run under Wine by scripts/win-test.sh), what differs:
 *  - stop: Ctrl-C (SIGINT) or Ctrl-Break (SIGBREAK: GenerateConsoleCtrlEvent, what
 *    another program sends) drains and exits 0, through lw_signal's console control
 *    handler. Windows has no SIGTERM to catch and no SIGHUP: no restart, and no socket
 *    activation (lw_listen_fds, lw_listeners_handoff: LW_ENOSYS).
 *  - one loop: a socket is tied to ONE I/O completion port for its life
 *    (CreateIoCompletionPort), and its duplicates (WSADuplicateSocket, DuplicateHandle)
 *    are the same socket, so a second loop cannot adopt it (tests/win/test_win_server,
 *    "shared"); nor is there an SO_REUSEPORT group. So loop 0 makes the listener itself
 *    (lw_listener_new) and --threads must be 1. */
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

enum { CLOSE_GRACEFUL, CLOSE_ABORT, CLOSE_NAIVE };
#define MAX_THREADS 64
#define MAX_LISTEN 16

/* What every loop shares (read-only once the threads run, except the atomics). */
typedef struct config {
  char *payload;
  size_t bytes;
  int close_mode;
  uint32_t deadline_ms, drain_ms;
  lw_conn_options opts;
  int log;
  const char *backend;
} config;

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

typedef struct session {
  worker *w;
  size_t line;
} session;

static void on_close(lw_conn *c, const lw_close_info *in) {
  session *s = lw_conn_get_data(c);
  worker *w = s->w;
  if (w->cfg->log) {
    printf("close reason=%s initiator=%s rst=%d queued=%llu sent=%llu acked=%llu "
           "unsent_discarded=%llu unread_discarded=%llu time_wait=%d ms=%llu silent_ms=%llu\n",
           lw_reason_name(in->reason),
           in->initiator == LW_INITIATOR_PEER    ? "peer"
           : in->initiator == LW_INITIATOR_LOCAL ? "local"
                                                 : "none",
           in->rst, (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_sent,
           (unsigned long long)in->bytes_acked, (unsigned long long)in->unsent_discarded,
           (unsigned long long)in->unread_discarded, in->time_wait,
           (unsigned long long)in->close_ms, (unsigned long long)in->peer_silent_ms);
    fflush(stdout);
  }
  free(s);
  w->live--;
}

static void on_written(lw_conn *c, int status, void *arg) {
  const config *cfg = arg;
  if (status != 0)
    return; /* cancelled: the connection already ended; on_close tells why */
  if (cfg->close_mode == CLOSE_ABORT)
    lw_abort(c);
  else if (cfg->close_mode == CLOSE_NAIVE)
    lw_close_naive(c);
}

static void on_read(lw_conn *c, long nread, const char *buf) {
  session *s = lw_conn_get_data(c);
  const config *cfg = s->w->cfg;
  if (nread == LW_EOF)
    return; /* the peer closed before its request line: the library finishes it */
  for (long i = 0; i < nread; i++) {
    if (buf[i] != '\n') {
      if (++s->line > 8192)
        lw_abort(c); /* no newline within 8 KiB: not our protocol */
      continue;
    }
    /* The request line is complete. Stop reading: everything after it stays in the
     * kernel, which is what makes a naive close send RST (B13). */
    lw_conn_read_stop(c);
    /* The whole response is queued at once, so LW_ABOVE_HIGH_WATER (queued, the queue
     * at or above write_high_water) is the usual answer for large --bytes: with one
     * response per connection there is nothing to hold back until drain_cb. Below 0,
     * nothing was queued (the connection is already ending) and on_close tells why. */
    int r = lw_conn_write(c, cfg->payload, cfg->bytes, on_written, (void *)cfg);
    if (r < 0 && cfg->log)
      fprintf(stderr, "respond: write: %s\n", lw_strerror(r));
    if (cfg->close_mode == CLOSE_GRACEFUL)
      lw_close(c, cfg->deadline_ms);
    return;
  }
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  worker *w = lw_listener_get_data(l);
  if (status < 0) {
    fprintf(stderr, "respond: accept: %s\n", lw_strerror(status));
    return;
  }
  session *s = calloc(1, sizeof(*s));
  if (!s) {
    lw_abort(c);
    return;
  }
  s->w = w;
  w->live++;
  w->accepts++;
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, on_close);
  lw_conn_set_read_size(c, 1);
  lw_conn_read_start(c, on_read);
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
  lw_drain_options o = {.deadline_ms = w->cfg->drain_ms, .done_cb = on_drained, .arg = w};
  int r = lw_loop_drain(w->loop, &o);
  if (r < 0 && r != LW_EALREADY)
    fprintf(stderr, "respond: drain: %s\n", lw_strerror(r));
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
    fprintf(stderr, "respond: restart: %s\n", lw_strerror(r));
    return;
  }
  /* Children of failed restarts are reaped here at the latest (on_ready tries first). */
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
  r = self_path_search ? posix_spawnp(&successor, self_path, NULL, NULL, g_argv, environ)
                       : posix_spawn(&successor, self_path, NULL, NULL, g_argv, environ);
  lw_listeners_handoff_end(w->ls, w->nls);
  if (r != 0) {
    fprintf(stderr, "respond: restart: spawn: %s\n", strerror(r));
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
          "respond: restart: the new copy exited before accepting (status %d); "
          "this one goes on serving\n",
          st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
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
    fprintf(stderr, "respond: restart: cannot watch the new copy; draining\n");
    drain_all();
  }
#endif
}

static int worker_setup(worker *w) {
  int r = w->loop ? 0 : lw_loop_new(&w->loop, w->cfg->backend); /* Windows: made in main */
  if (r < 0) {
    fprintf(stderr, "respond: loop: %s\n", lw_strerror(r));
    return r;
  }
  for (int i = 0; i < w->nls; i++) {
    if (!w->ls[i])
      r = lw_listener_adopt(w->loop, w->fds[i], &w->cfg->opts, on_accept, &w->ls[i]);
    if (r < 0) {
      fprintf(stderr, "respond: listening socket %d: %s\n", w->fds[i], lw_strerror(r));
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

#ifndef _WIN32
/* --reuseport (for the measurement in README.md only; no SIGHUP hand-off with it: each
 * loop's socket has its own accept queue, and the hand-off passes loop 0's): an
 * SO_REUSEPORT group of n sockets on first's address, which is re-made with the option
 * set (the group needs it on every member, the first included). */
static int rp_fds[MAX_THREADS];
static int reuseport_group(int first, int n, int *out) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(first, (struct sockaddr *)&ss, &len) < 0)
    return -1;
  close(first);
  for (int t = 0; t < n; t++) {
    int one = 1, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
      perror("respond: --reuseport");
      return -1;
    }
    out[t] = fd;
  }
  return 0;
}
#endif

static void usage(void) {
  fprintf(stderr, "usage: respond --listen HOST:PORT [--bytes N] "
                  "[--close graceful|abort|naive] [--deadline-ms D] [--dead-after-ms T] "
                  "[--idle-timeout-ms T] [--stall-timeout-ms T] [--backend epoll|uring] "
                  "[--threads N [--reuseport]] [--drain-ms D] [--log]\n");
#ifdef _WIN32
  fprintf(stderr,
          "Windows: Ctrl-C or Ctrl-Break drains and exits 0 (Windows has no SIGTERM); "
          "there is no SIGHUP restart and no socket activation (LISTEN_FDS), and "
          "--threads is 1 (%s)\n",
          WIN_NO_THREADS);
#endif
  exit(2);
}

int main(int argc, char **argv) {
  config cfg = {.bytes = 1024 * 1024,
                .close_mode = CLOSE_GRACEFUL,
                .deadline_ms = 5000,
                .drain_ms = 10000};
  const char *listen_arg = NULL;
  int threads = 1, reuseport = 0;
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
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--listen") == 0 && i + 1 < argc)
      listen_arg = argv[++i];
    else if (strcmp(a, "--bytes") == 0 && i + 1 < argc)
      cfg.bytes = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "--deadline-ms") == 0 && i + 1 < argc)
      cfg.deadline_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--drain-ms") == 0 && i + 1 < argc)
      cfg.drain_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(a, "--reuseport") == 0)
      reuseport = 1;
    else if (strcmp(a, "--dead-after-ms") == 0 && i + 1 < argc)
      cfg.opts.dead_after_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--idle-timeout-ms") == 0 && i + 1 < argc)
      cfg.opts.idle_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--stall-timeout-ms") == 0 && i + 1 < argc)
      cfg.opts.stall_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--log") == 0)
      cfg.log = 1;
    else if (strcmp(a, "--backend") == 0 && i + 1 < argc)
      cfg.backend = argv[++i];
    else if (strcmp(a, "--close") == 0 && i + 1 < argc) {
      const char *m = argv[++i];
      if (strcmp(m, "graceful") == 0)
        cfg.close_mode = CLOSE_GRACEFUL;
      else if (strcmp(m, "abort") == 0)
        cfg.close_mode = CLOSE_ABORT;
      else if (strcmp(m, "naive") == 0)
        cfg.close_mode = CLOSE_NAIVE;
      else
        usage();
    } else
      usage();
  }
  if (threads < 1 || threads > MAX_THREADS || cfg.bytes == 0)
    usage();
#ifdef _WIN32
  if (threads > 1 || reuseport) {
    fprintf(stderr, "respond: --threads %d%s: not on Windows: %s\n", threads,
            reuseport ? " --reuseport" : "", WIN_NO_THREADS);
    return 2;
  }
#endif

  /* The listening sockets: passed (systemd, or a predecessor's SIGHUP), else ours. */
  int fds[MAX_LISTEN];
  int nfds = lw_listen_fds(fds, NULL, MAX_LISTEN);
  if (nfds == LW_ENOSYS)
    nfds = 0; /* Windows: nothing is ever passed */
  if (nfds < 0 || nfds > MAX_LISTEN) {
    fprintf(stderr, "respond: LISTEN_FDS / LW_LISTEN_FDS: %s\n",
            nfds < 0 ? lw_strerror(nfds) : "too many sockets");
    return 1;
  }
  if (nfds == 0) {
    if (!listen_arg)
      usage();
    char host[128];
    int port;
    if (parse_hostport(listen_arg, host, sizeof(host), &port) < 0)
      usage();
#ifdef _WIN32
    /* Loop 0 makes it and keeps it (see the top of the file). */
    int r = lw_loop_new(&workers[0].loop, cfg.backend);
    if (r == 0)
      r = lw_listener_new(workers[0].loop, host, port, 1024, &cfg.opts, on_accept,
                          &workers[0].ls[0]);
    if (r < 0) {
      fprintf(stderr, "respond: listen %s: %s\n", listen_arg, lw_strerror(r));
      return 1;
    }
    fds[0] = lw_listener_fd(workers[0].ls[0]);
    nfds = 1;
#else
    /* A throw-away loop makes the socket (bind, listen, the address rules of
     * lw_listener_new); the workers adopt dups of it. */
    lw_loop *tmp;
    lw_listener *l;
    int r = lw_loop_new(&tmp, "epoll");
    if (r == 0)
      r = lw_listener_new(tmp, host, port, 1024, NULL, on_accept, &l);
    if (r < 0) {
      fprintf(stderr, "respond: listen %s: %s\n", listen_arg, lw_strerror(r));
      return 1;
    }
    fds[0] = fcntl(lw_listener_fd(l), F_DUPFD_CLOEXEC, 3);
    nfds = 1;
    lw_listener_close(l);
    lw_loop_run(tmp, LW_RUN_NOWAIT);
    lw_loop_close(tmp);
    if (reuseport && reuseport_group(fds[0], threads, rp_fds) < 0)
      return 1;
#endif
  }

  cfg.payload = malloc(cfg.bytes);
  if (!cfg.payload)
    return 1;
  for (size_t i = 0; i < cfg.bytes; i++)
    cfg.payload[i] = (char)(i % 251);

  nworkers = threads;
#ifndef _WIN32
  if (reuseport && rp_fds[0] > 0)
    fds[0] = rp_fds[0];
#endif
  for (int t = 0; t < threads; t++) {
    worker *w = &workers[t];
    w->cfg = &cfg;
    w->idx = t;
    w->nls = nfds;
#ifdef _WIN32
    w->fds[0] = fds[0]; /* threads == 1: loop 0's own listener */
#else
    for (int i = 0; i < nfds; i++)
      w->fds[i] = t == 0 ? fds[i] : reuseport ? rp_fds[t] : fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
#endif
  }
  for (int t = 0; t < threads; t++)
    if (worker_setup(&workers[t]) < 0) {
      free(cfg.payload); /* the loops made so far are reachable (workers[]); the exit frees them
                          */
      return 1;
    }
  /* Signals, in loop 0: SIGTERM/SIGINT drain, SIGHUP restarts (Windows: SIGNALS above).
   * Unref'd (the listeners keep the loop alive), and kept until every loop has drained:
   * a second SIGTERM during the drain is then ignored instead of killing the process. */
  const int signums[] = SIGNALS;
  enum { NSIGS = sizeof(signums) / sizeof(signums[0]) };
  lw_signal *sigs[NSIGS];
  for (int i = 0; i < NSIGS; i++) {
    if (lw_signal_new(workers[0].loop, &sigs[i]) < 0 ||
        lw_signal_start(sigs[i], on_sig, signums[i]) < 0) {
      fprintf(stderr, "respond: signal watcher failed\n");
      return 1;
    }
    lw_signal_unref(sigs[i]);
  }
  for (int i = 0; i < nfds; i++)
    print_listening(fds[i]);
  /* The backend actually in use (io_uring may have been refused): on stderr, so that
   * stdout's first line stays the documented "listening on" line. */
  fprintf(stderr, "respond: pid %d backend %s threads %d\n", (int)getpid(),
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
      fprintf(stderr, "respond: loop %d: handles left at exit\n", t);
      r = 1;
    }
  }
  uint64_t ms = 0;
  for (int t = 0; t < threads; t++)
    ms = workers[t].rep.elapsed_ms > ms ? workers[t].rep.elapsed_ms : ms;
  print_drain(ms);
  fprintf(stderr, "respond: accepts per loop:");
  for (int t = 0; t < threads; t++)
    fprintf(stderr, " %llu", workers[t].accepts);
  fprintf(stderr, "\n");
  free(cfg.payload);
  return r;
}
