/* atk_loopint.c - the loop-integration calls (lastword.h, "Loop integration") used as
 * a hostile program would: wake-ups freed while a send is still inside the library,
 * sends from 8 threads while the loop makes and frees handles, signal storms and
 * watchers restarted in their own callback, fork, foreign fds closed or reused under a
 * watcher, walks inside walks. One scenario per run (argv[1]); public API only; exit 1
 * on a broken promise. Every loop here is bounded in count and time. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "atk.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

static lw_loop *loop;
static const char *scen;

static void nop_timer(lw_timer *t) { (void)t; }

/* ------------------------------------------------------------------------------------
 * wake_inflight: lw_wakeup_free from the callback of the one send a thread made, while
 * that send has not returned yet (the loop saw its flag; the sender is still inside the
 * library), and then lw_loop_close. The contract allows it: no thread sends after the
 * free. The sender is held inside the send deterministically on io_uring, whose eventfd
 * is blocking: the counter is filled to its maximum first, so the send's write(2)
 * blocks; a signal then interrupts that write and its handler waits until the loop
 * thread has run the callback (or 300 ms pass). A library that lets the free go ahead
 * has the send touch the freed wake-up / loop when the write is retried (ASan:
 * heap-use-after-free; otherwise its write goes to a closed fd number: an error, or 8
 * bytes into the pipe that took the number). On epoll the eventfd is non-blocking and
 * the send cannot be held; the same sequence then runs without the hold.
 * ------------------------------------------------------------------------------------ */
static lw_wakeup *wi_w;
static atomic_int wi_in_handler, wi_cb_done, wi_send_rc = 99, wi_send_returned;
static pthread_t wi_sender_tid;

static void wi_handler(int sig) {
  (void)sig;
  atomic_store(&wi_in_handler, 1);
  uint64_t end = atk_now() + 300;
  while (!atomic_load(&wi_cb_done) && atk_now() < end)
    sched_yield();
  /* A little longer: the loop thread closes the loop after the callback. */
  end = atk_now() + 20;
  while (atk_now() < end)
    sched_yield();
}

static void *wi_sender(void *arg) {
  (void)arg;
  atomic_store(&wi_send_rc, lw_wakeup_send(wi_w));
  atomic_store(&wi_send_returned, 1);
  return NULL;
}

static void wi_cb(lw_wakeup *w) {
  lw_wakeup_free(w);
  atomic_store(&wi_cb_done, 1);
}

static int find_eventfd(void) {
  char path[64], target[128];
  for (int fd = 3; fd < 1024; fd++) {
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n > 0) {
      target[n] = 0;
      if (strstr(target, "eventfd"))
        return fd;
    }
  }
  return -1;
}

static int scen_wake_inflight(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = wi_handler; /* no SA_RESTART: the write returns EINTR and is retried */
  sigaction(SIGUSR2, &sa, NULL);
  int rounds = 0;
  for (int round = 0; round < 3; round++) {
    if (lw_loop_new(&loop, NULL) < 0)
      return 2;
    int uring = strcmp(lw_loop_backend(loop), "uring") == 0;
    CHECK(lw_wakeup_new(loop, wi_cb, &wi_w) == 0, "wakeup_new");
    atomic_store(&wi_in_handler, 0);
    atomic_store(&wi_cb_done, 0);
    atomic_store(&wi_send_returned, 0);
    atomic_store(&wi_send_rc, 99);
    int efd = find_eventfd();
    CHECK(efd >= 0, "the loop's eventfd");
    if (uring && efd >= 0) {
      uint64_t max = 0xfffffffffffffffeULL; /* the counter's maximum: the next write blocks */
      CHECK(write(efd, &max, sizeof(max)) == sizeof(max), "fill eventfd: %s", strerror(errno));
    }
    pthread_create(&wi_sender_tid, NULL, wi_sender, NULL);
    if (uring) {
      /* The sender is blocked in write(2) inside lw_wakeup_send: interrupt it there. */
      usleep(50 * 1000);
      CHECK(!atomic_load(&wi_send_returned), "the send did not block");
      pthread_kill(wi_sender_tid, SIGUSR2);
      uint64_t end = atk_now() + 1000;
      while (!atomic_load(&wi_in_handler) && atk_now() < end)
        sched_yield();
      CHECK(atomic_load(&wi_in_handler), "handler ran");
    }
    /* The loop reads the eventfd (the sender's write may then go on), sees the flag,
     * runs wi_cb, which frees the wake-up; then the loop is closed at once. */
    uint64_t end = atk_now() + 2000;
    while (!atomic_load(&wi_cb_done) && atk_now() < end)
      lw_loop_run(loop, LW_RUN_ONCE);
    CHECK(atomic_load(&wi_cb_done), "callback ran");
    int r = lw_loop_close(loop);
    CHECK(r == 0, "lw_loop_close: %s", lw_err_name(r));
    /* A pipe takes the numbers the loop just closed: a late write would land here. */
    int p[2], p2[2];
    CHECK(pipe(p) == 0 && pipe(p2) == 0, "pipe");
    pthread_join(wi_sender_tid, NULL);
    int rc = atomic_load(&wi_send_rc);
    CHECK(rc == 0, "lw_wakeup_send returned %s after the free", lw_err_name(rc));
    int fds[2] = {p[0], p2[0]};
    for (int i = 0; i < 2; i++) {
      fcntl(fds[i], F_SETFL, O_NONBLOCK);
      char b[16];
      ssize_t n = read(fds[i], b, sizeof(b));
      CHECK(n < 0 && errno == EAGAIN, "%zd stray bytes in a pipe that took a closed number", n);
    }
    close(p[0]), close(p[1]), close(p2[0]), close(p2[1]);
    rounds++;
    if (!uring)
      loop = NULL;
  }
  printf("wake_inflight: %d rounds\n", rounds);
  return 0;
}

/* ------------------------------------------------------------------------------------
 * fork_sig: a process that watches SIGTERM forks a child that does not exec. The
 * child was never told about the parent's watcher: SIGTERM must end it as it would
 * have without the library (the previous disposition, here SIG_DFL), and must not wake
 * the parent's loop (the eventfd is shared across fork). Then a child that starts a
 * watcher of its own in a new loop gets its own signals, and the parent's still work.
 * ------------------------------------------------------------------------------------ */
static int fs_calls;
static void fs_cb(lw_signal *s, int signum) {
  (void)s, (void)signum;
  fs_calls++;
}

static int scen_fork_sig(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_signal *s;
  CHECK(lw_signal_new(loop, &s) == 0 && lw_signal_start(s, fs_cb, SIGTERM) == 0, "start");
  /* 1. A child that never touches the library: SIGTERM ends it. */
  pid_t pid = fork();
  if (pid == 0) {
    kill(getpid(), SIGTERM);
    usleep(200 * 1000);
    _exit(0); /* still alive: the signal was swallowed */
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
        "child without watchers: SIGTERM did not end it (exit %d)",
        WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  /* The parent's loop saw nothing: no callback, and its wake channel was not written
   * (a NOWAIT run finds nothing ready). */
  lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(fs_calls == 0, "parent's callback ran for the child's signal (%d)", fs_calls);

  /* 2. A child that watches SIGUSR1 in a loop of its own. */
  int pfd[2];
  CHECK(pipe(pfd) == 0, "pipe");
  pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    lw_loop *cl;
    lw_signal *cs;
    int ok = lw_loop_new(&cl, NULL) == 0 && lw_signal_new(cl, &cs) == 0 &&
             lw_signal_start(cs, fs_cb, SIGUSR1) == 0;
    fs_calls = 0;
    for (int i = 0; ok && i < 3; i++) {
      kill(getpid(), SIGUSR1);
      uint64_t end = atk_now() + 1000;
      while (fs_calls <= i && atk_now() < end)
        lw_loop_run(cl, LW_RUN_NOWAIT);
    }
    char b = (char)('0' + (ok ? fs_calls : 9));
    if (write(pfd[1], &b, 1) != 1)
      _exit(3);
    if (ok) {
      lw_signal_free(cs);
      ok = lw_loop_close(cl) == 0;
    }
    /* Its watcher gone, SIGUSR1 is back to SIG_DFL in the child: it ends it. */
    kill(getpid(), SIGUSR1);
    usleep(200 * 1000);
    _exit(ok ? 0 : 4);
  }
  close(pfd[1]);
  char b = 0;
  CHECK(read(pfd[0], &b, 1) == 1 && b == '3', "child's own watcher: %c calls of 3", b);
  close(pfd[0]);
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR1,
        "child after freeing its watcher: SIGUSR1 did not end it (exit %d)",
        WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  /* 3. The parent's watcher still works. */
  kill(getpid(), SIGTERM);
  uint64_t end = atk_now() + 2000;
  while (fs_calls < 1 && atk_now() < end)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(fs_calls == 1, "parent's watcher after the forks: %d calls", fs_calls);
  lw_signal_free(s);
  CHECK(lw_loop_close(loop) == 0, "close");
  return 0;
}

/* ------------------------------------------------------------------------------------
 * sig_storm: 1000 kill()s as fast as a thread can make them, at two watchers of the
 * same signal in one loop; one of them stops and restarts itself (and a third watcher)
 * inside its callback. Each watcher: at least one callback, never more than the sends;
 * the two always-started ones equal counts.
 * ------------------------------------------------------------------------------------ */
static int ss_a, ss_b, ss_c;
static lw_signal *ss_sc;
static void ss_cb_c(lw_signal *s, int signum) {
  (void)s, (void)signum;
  ss_c++;
}
static void ss_cb_a(lw_signal *s, int signum) {
  ss_a++;
  lw_signal_stop(s);
  lw_signal_stop(ss_sc);
  CHECK(lw_signal_start(s, ss_cb_a, signum) == 0, "restart in own callback");
  CHECK(lw_signal_start(ss_sc, ss_cb_c, signum) == 0, "restart another");
  lw_signal_stop(s);
  CHECK(lw_signal_start(s, ss_cb_a, signum) == 0, "restart in own callback");
}
static void ss_cb_b(lw_signal *s, int signum) {
  (void)s, (void)signum;
  ss_b++;
}
static atomic_int ss_sent;
static void *ss_killer(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++)
    if (kill(getpid(), SIGTERM) == 0)
      atomic_fetch_add(&ss_sent, 1);
  return NULL;
}
static int scen_sig_storm(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_signal *a, *b;
  CHECK(lw_signal_new(loop, &a) == 0 && lw_signal_new(loop, &b) == 0 &&
            lw_signal_new(loop, &ss_sc) == 0,
        "new");
  CHECK(lw_signal_start(a, ss_cb_a, SIGTERM) == 0 &&
            lw_signal_start(b, ss_cb_b, SIGTERM) == 0 &&
            lw_signal_start(ss_sc, ss_cb_c, SIGTERM) == 0,
        "start");
  pthread_t t;
  pthread_create(&t, NULL, ss_killer, NULL);
  uint64_t end = atk_now() + 3000;
  while (atk_now() < end && !(atomic_load(&ss_sent) == 1000 && ss_a > 0 && ss_b == ss_a)) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
  }
  pthread_join(t, NULL);
  atk_run_for(loop, 50);
  int sent = atomic_load(&ss_sent);
  printf("sig_storm: %d sent, callbacks a %d b %d c %d\n", sent, ss_a, ss_b, ss_c);
  CHECK(sent == 1000, "sent %d", sent);
  CHECK(ss_a >= 1 && ss_a <= sent, "a %d", ss_a);
  CHECK(ss_b >= 1 && ss_b <= sent, "b %d", ss_b);
  CHECK(ss_a == ss_b, "a %d != b %d", ss_a, ss_b);
  CHECK(ss_c <= ss_a, "c %d > a %d", ss_c, ss_a);
  lw_signal_free(a);
  lw_signal_free(b);
  lw_signal_free(ss_sc);
  CHECK(lw_loop_close(loop) == 0, "close");
  /* SIGTERM is back to SIG_DFL. */
  struct sigaction cur;
  sigaction(SIGTERM, NULL, &cur);
  CHECK(cur.sa_handler == SIG_DFL, "SIGTERM disposition not restored");
  return 0;
}

/* ------------------------------------------------------------------------------------
 * sig_misc: the previous disposition restored exactly (an SA_SIGINFO handler with its
 * mask and flags; SIG_IGN); lw_loop_close while a watcher exists (EBUSY, and then the
 * watcher still works); a signal that arrives while the loop is not running is
 * delivered at the next run, once; a stopped watcher's signals are not delivered to a
 * watcher started later.
 * ------------------------------------------------------------------------------------ */
static volatile sig_atomic_t sm_info_calls;
static void sm_info(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)si, (void)uc;
  sm_info_calls++;
}
static int sm_calls;
static void sm_cb(lw_signal *s, int signum) {
  (void)s, (void)signum;
  sm_calls++;
}
static int scen_sig_misc(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  struct sigaction sa, got;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = sm_info;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &(struct sigaction){.sa_handler = SIG_IGN}, NULL);
  lw_signal *s1, *s2;
  CHECK(lw_signal_new(loop, &s1) == 0 && lw_signal_new(loop, &s2) == 0, "new");
  CHECK(lw_signal_start(s1, sm_cb, SIGUSR1) == 0, "start");
  CHECK(lw_signal_start(s2, sm_cb, SIGUSR2) == 0, "start");
  CHECK(lw_loop_close(loop) == LW_EBUSY, "close with watchers: not EBUSY");
  /* Not running: two signals arrive, then the loop runs. */
  kill(getpid(), SIGUSR1);
  kill(getpid(), SIGUSR2);
  CHECK(sm_calls == 0, "callback outside the loop");
  lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(sm_calls == 2, "signals sent while not running: %d callbacks of 2", sm_calls);
  lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(sm_calls == 2, "delivered twice: %d", sm_calls);
  CHECK(sm_info_calls == 0, "the previous handler ran while watched");
  /* Signal pending while stopped: not delivered to a watcher started later. */
  kill(getpid(), SIGUSR2);
  lw_signal_stop(s2);
  /* SIGUSR2 back to SIG_IGN at this point; s1 still holds SIGUSR1. */
  sigaction(SIGUSR2, NULL, &got);
  CHECK(got.sa_handler == SIG_IGN, "SIG_IGN not restored");
  CHECK(lw_signal_start(s2, sm_cb, SIGUSR2) == 0, "restart");
  lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(sm_calls == 2, "a signal from before the start delivered: %d", sm_calls);
  lw_signal_free(s1);
  lw_signal_free(s2);
  sigaction(SIGUSR1, NULL, &got);
  CHECK(got.sa_sigaction == sm_info &&
            (got.sa_flags & (SA_SIGINFO | SA_ONSTACK)) == (SA_SIGINFO | SA_ONSTACK) &&
            sigismember(&got.sa_mask, SIGHUP) && !sigismember(&got.sa_mask, SIGINT),
        "SA_SIGINFO handler not restored exactly (flags %#x)", (unsigned)got.sa_flags);
  sigaction(SIGUSR2, NULL, &got);
  CHECK(got.sa_handler == SIG_IGN, "SIG_IGN not restored");
  kill(getpid(), SIGUSR1);
  CHECK(sm_info_calls == 1, "restored handler did not run (%d)", (int)sm_info_calls);
  CHECK(lw_loop_close(loop) == 0, "close");
  return 0;
}

/* ------------------------------------------------------------------------------------
 * watch_closed: a watcher whose fd the application closes WITHOUT stopping it first
 * (misuse by the contract), and the number is then taken by a new connection the
 * library registers. Whatever the watcher does, the connection must not be harmed: its
 * bytes reach it, not the watcher, and the later lw_watch_stop/free must not take the
 * connection's registration away.
 * ------------------------------------------------------------------------------------ */
static int wc_watch_calls, wc_read_bytes, wc_closed;
static lw_conn *wc_conn;
static int wc_num, wc_stolen, wc_fd_closed, wc_ready_after;
static void wc_watch_cb(lw_watch *w, int ev) {
  (void)w;
  wc_watch_calls++;
  if (wc_fd_closed && (ev & (LW_READABLE | LW_WRITABLE)))
    wc_ready_after++;     /* readiness of whatever file the number names now */
  if (ev & LW_READABLE) { /* what its owner does: read the fd it watches */
    char b[64];
    ssize_t n = recv(wc_num, b, sizeof(b), MSG_DONTWAIT);
    if (n > 0)
      wc_stolen += (int)n;
  }
}
static void wc_read(lw_conn *c, long n, const char *buf) {
  (void)c, (void)buf;
  if (n > 0)
    wc_read_bytes += (int)n;
}
static void wc_close(lw_conn *c, const lw_close_info *in) {
  (void)c, (void)in;
  wc_closed++;
}
static void wc_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st < 0)
    return;
  wc_conn = c;
  lw_conn_on_close(c, wc_close);
  lw_conn_read_start(c, wc_read);
}
static int scen_watch_closed(int how) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, wc_accept, &l) < 0)
    return 2;
  int port = lw_listener_port(l);
  int sp[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) == 0, "socketpair");
  int num = sp[0];
  wc_num = num;
  lw_watch *w;
  CHECK(lw_watch_new(loop, num, &w) == 0 && lw_watch_start(w, LW_READABLE, wc_watch_cb) == 0,
        "watch");
  /* The client connects first (its socket must not take `num`); then, the watch in
   * place, the application closes the fd without stopping the watcher (misuse), and
   * the next socket the process makes takes `num`: the accepted connection's. */
  int p = socket(AF_INET, SOCK_STREAM, 0);
  lw_loop_run(loop, LW_RUN_NOWAIT);
  close(sp[0]);
  wc_fd_closed = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  CHECK(connect(p, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
  int done = 0;
  uint64_t end = atk_now() + 2000;
  while (!wc_conn && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(wc_conn && lw_conn_fd(wc_conn) == num, "the connection did not take the number %d (%d)",
        num, wc_conn ? (int)lw_conn_fd(wc_conn) : -1);
  (void)done;
  if (how == 4) {
    /* The old file's peer writes: a poll still holding the old file fires; the watcher
     * must not then be re-armed on the number (the connection's socket now). */
    send(sp[1], "x", 1, MSG_NOSIGNAL); /* EPIPE on epoll: nothing holds the old file */
    uint64_t e2 = atk_now() + 300;
    while (atk_now() < e2)
      lw_loop_run(loop, LW_RUN_NOWAIT);
  }
  if (how == 1)
    lw_watch_stop(w);
  else if (how == 2)
    (void)lw_watch_start(w, LW_READABLE | LW_WRITABLE, wc_watch_cb); /* refused or not */
  else if (how == 3)
    lw_watch_free(w), w = NULL;
  int before = wc_watch_calls;
  /* The connection's bytes go to it. */
  CHECK(write(p, "hello", 5) == 5, "write");
  end = atk_now() + 1500;
  while (wc_read_bytes < 5 && atk_now() < end)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  printf("watch_closed %d: conn got %d bytes, watcher calls %d (+%d after), %d stolen\n", how,
         wc_read_bytes, wc_watch_calls, wc_watch_calls - before, wc_stolen);
  CHECK(wc_stolen == 0, "the watcher's callback read %d bytes of the connection", wc_stolen);
  CHECK(wc_ready_after == 0, "%d readiness reports for a number the connection took",
        wc_ready_after);
  CHECK(wc_read_bytes == 5, "the connection got %d of 5 bytes", wc_read_bytes);
  if (w)
    lw_watch_free(w);
  if (wc_conn)
    lw_abort(wc_conn);
  lw_listener_close(l);
  close(p);
  close(sp[1]);
  end = atk_now() + 2000;
  while (lw_loop_close(loop) == LW_EBUSY && atk_now() < end)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
int main(int argc, char **argv) {
  scen = argc > 1 ? argv[1] : "wake_inflight";
  int r = 2;
  const char *be = getenv("LW_BACKEND");
  if (!strcmp(scen, "wake_inflight"))
    r = scen_wake_inflight();
  else if (!strcmp(scen, "fork_sig"))
    r = scen_fork_sig();
  else if (!strcmp(scen, "sig_storm"))
    r = scen_sig_storm();
  else if (!strcmp(scen, "sig_misc"))
    r = scen_sig_misc();
  else if (!strcmp(scen, "watch_closed_stop"))
    r = scen_watch_closed(1);
  else if (!strcmp(scen, "watch_closed_start"))
    r = scen_watch_closed(2);
  else if (!strcmp(scen, "watch_closed_free"))
    r = scen_watch_closed(3);
  else if (!strcmp(scen, "watch_closed_fire"))
    r = scen_watch_closed(4);
  if (r == 2)
    return 2;
  printf("%s [%s]: %s (%d failure%s)\n", scen, be ? be : "epoll", atk_fails ? "FAIL" : "ok",
         atk_fails, atk_fails == 1 ? "" : "s");
  (void)nop_timer;
  return atk_fails ? 1 : 0;
}
