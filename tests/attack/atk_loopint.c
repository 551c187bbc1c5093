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

/* ------------------------------------------------------------------------------------
 * wake_storm: 8 threads send flat out, each to its own wake-up and to one shared one,
 * for 1 s, while the loop's callbacks make and free other wake-ups, timers and fd
 * watchers (and a wake-up of its own, freed in its callback). Per wake-up: callbacks
 * <= sends, and at least one callback after each thread's last send.
 * ------------------------------------------------------------------------------------ */
#define WS_THREADS 8
static lw_wakeup *ws_w[WS_THREADS], *ws_shared;
static atomic_long ws_sends[WS_THREADS], ws_shared_sends;
static long ws_calls[WS_THREADS], ws_shared_calls;
static atomic_int ws_stop, ws_errors;
static int ws_churn;
static int ws_efd;
static void ws_nop_wake(lw_wakeup *w) { lw_wakeup_free(w); }
static void ws_nop_watch(lw_watch *w, int ev) { (void)w, (void)ev; }
static void ws_cb(lw_wakeup *w) {
  long i = (long)(intptr_t)lw_wakeup_get_data(w);
  if (i < 0)
    ws_shared_calls++;
  else
    ws_calls[i]++;
  /* churn: other handles made and freed from inside the dispatch */
  lw_wakeup *x;
  if (lw_wakeup_new(loop, ws_nop_wake, &x) == 0) {
    if (ws_churn++ & 1)
      lw_wakeup_free(x);
    else
      lw_wakeup_send(x); /* frees itself in its callback */
  }
  lw_timer *t;
  if (lw_timer_new(loop, &t) == 0) {
    lw_timer_start(t, nop_timer, 1000, 0);
    lw_timer_free(t);
  }
  lw_watch *wt;
  if (lw_watch_new(loop, ws_efd, &wt) == 0) {
    lw_watch_start(wt, LW_READABLE, ws_nop_watch);
    lw_watch_free(wt);
  }
}
static void *ws_thread(void *arg) {
  long i = (long)(intptr_t)arg;
  while (!atomic_load(&ws_stop)) {
    if (lw_wakeup_send(ws_w[i]) != 0 || lw_wakeup_send(ws_shared) != 0)
      atomic_fetch_add(&ws_errors, 1);
    atomic_fetch_add(&ws_sends[i], 1);
    atomic_fetch_add(&ws_shared_sends, 1);
  }
  return NULL;
}
static int scen_wake_storm(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  ws_efd = eventfd(0, EFD_NONBLOCK);
  for (long i = 0; i < WS_THREADS; i++) {
    CHECK(lw_wakeup_new(loop, ws_cb, &ws_w[i]) == 0, "new");
    lw_wakeup_set_data(ws_w[i], (void *)(intptr_t)i);
  }
  CHECK(lw_wakeup_new(loop, ws_cb, &ws_shared) == 0, "new");
  lw_wakeup_set_data(ws_shared, (void *)(intptr_t)-1);
  pthread_t th[WS_THREADS];
  for (long i = 0; i < WS_THREADS; i++)
    pthread_create(&th[i], NULL, ws_thread, (void *)(intptr_t)i);
  uint64_t end = atk_now() + 1000;
  while (atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  atomic_store(&ws_stop, 1);
  for (int i = 0; i < WS_THREADS; i++)
    pthread_join(th[i], NULL);
  /* After the last sends: one more callback each is owed. */
  long before[WS_THREADS];
  for (int i = 0; i < WS_THREADS; i++)
    before[i] = ws_calls[i];
  long sb = ws_shared_calls;
  /* A send after the threads stopped: its callback must come (nothing is lost). */
  for (int i = 0; i < WS_THREADS; i++)
    lw_wakeup_send(ws_w[i]);
  lw_wakeup_send(ws_shared);
  end = atk_now() + 2000;
  int all = 0;
  while (!all && atk_now() < end) {
    lw_loop_run(loop, LW_RUN_ONCE);
    all = ws_shared_calls > sb;
    for (int i = 0; i < WS_THREADS; i++)
      all &= ws_calls[i] > before[i];
  }
  CHECK(all, "a send after the storm got no callback");
  long tot = 0;
  for (int i = 0; i < WS_THREADS; i++) {
    long sends = atomic_load(&ws_sends[i]) + 1;
    CHECK(ws_calls[i] >= 1 && ws_calls[i] <= sends, "thread %d: %ld calls, %ld sends", i,
          ws_calls[i], sends);
    tot += sends;
  }
  CHECK(ws_shared_calls <= atomic_load(&ws_shared_sends) + 1, "shared: %ld calls > sends",
        ws_shared_calls);
  CHECK(atomic_load(&ws_errors) == 0, "%d sends failed", atomic_load(&ws_errors));
  printf("wake_storm: %ld sends, shared %ld calls, churned %d handles\n", tot, ws_shared_calls,
         ws_churn);
  for (int i = 0; i < WS_THREADS; i++)
    lw_wakeup_free(ws_w[i]);
  lw_wakeup_free(ws_shared);
  end = atk_now() + 2000;
  while (lw_loop_close(loop) == LW_EBUSY && atk_now() < end)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  close(ws_efd);
  return 0;
}

/* ------------------------------------------------------------------------------------
 * walk: 20 connections. A walk whose callback starts a walk inside (visiting the same
 * live set), then closes every connection it visits (abort, close, naive, in turn)
 * and frees a wake-up, a timer and a watcher; a walk from on_close sees exactly the
 * connections not yet reported; each on_close once.
 * ------------------------------------------------------------------------------------ */
#define WK_N 20
static lw_conn *wk_srv[WK_N];
static int wk_nsrv, wk_closes[WK_N], wk_seen[WK_N], wk_inner_count, wk_bad;
static int wk_idx(lw_conn *c) {
  for (int i = 0; i < WK_N; i++)
    if (wk_srv[i] == c)
      return i;
  return -1;
}
static void wk_count(lw_conn *c, void *arg) {
  (void)c;
  (*(int *)arg)++;
}
static int wk_live(void) {
  int n = 0;
  for (int i = 0; i < wk_nsrv; i++)
    n += wk_closes[i] == 0;
  return n;
}
static void wk_on_close(lw_conn *c, const lw_close_info *in) {
  (void)in;
  int i = wk_idx(c);
  if (i < 0)
    return;
  wk_closes[i]++;
  int n = 0;
  lw_loop_walk(loop, wk_count, &n);
  if (n != wk_live())
    wk_bad++; /* the walk from on_close saw a connection already reported, or missed one */
}
static void wk_inner(lw_conn *c, void *arg) {
  (void)arg;
  int i = wk_idx(c);
  if (i >= 0 && wk_closes[i])
    wk_bad++;
  wk_inner_count++;
}
static lw_wakeup *wk_w;
static lw_timer *wk_t;
static void wk_outer(lw_conn *c, void *arg) {
  int *k = arg;
  int i = wk_idx(c);
  if (i < 0)
    return;
  wk_seen[i]++;
  if (*k == 0) {
    lw_loop_walk(loop, wk_inner, NULL); /* a walk inside a walk */
    lw_wakeup_free(wk_w);
    lw_timer_free(wk_t);
  }
  switch ((*k)++ % 3) {
  case 0:
    lw_abort(c);
    break;
  case 1:
    lw_close(c, 0);
    break;
  default:
    lw_close_naive(c);
  }
  /* and one more connection further on, from here */
  int j = (i + 7) % wk_nsrv;
  if (!wk_closes[j])
    lw_abort(wk_srv[j]);
}
static void wk_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st < 0 || wk_nsrv >= WK_N)
    return;
  wk_srv[wk_nsrv++] = c;
  lw_conn_on_close(c, wk_on_close);
}
static void wk_nop_wake(lw_wakeup *w) { (void)w; }
static int scen_walk(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, wk_accept, &l) < 0)
    return 2;
  int port = lw_listener_port(l);
  int cl[WK_N];
  for (int i = 0; i < WK_N; i++)
    cl[i] = atk_connect(port);
  uint64_t end = atk_now() + 2000;
  while (wk_nsrv < WK_N && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(wk_nsrv == WK_N, "accepted %d", wk_nsrv);
  CHECK(lw_wakeup_new(loop, wk_nop_wake, &wk_w) == 0 && lw_timer_new(loop, &wk_t) == 0, "new");
  lw_timer_start(wk_t, nop_timer, 100000, 0);
  int k = 0;
  lw_loop_walk(loop, wk_outer, &k);
  CHECK(wk_inner_count == WK_N, "inner walk visited %d of %d", wk_inner_count, WK_N);
  for (int i = 0; i < wk_nsrv; i++)
    CHECK(wk_seen[i] <= 1, "conn %d visited %d times", i, wk_seen[i]);
  lw_listener_close(l);
  for (int i = 0; i < WK_N; i++)
    close(cl[i]);
  end = atk_now() + 5000;
  while (wk_live() && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  for (int i = 0; i < wk_nsrv; i++)
    CHECK(wk_closes[i] == 1, "conn %d: %d on_close", i, wk_closes[i]);
  CHECK(wk_bad == 0, "%d walks saw the wrong set", wk_bad);
  int n = 0;
  lw_loop_walk(loop, wk_count, &n);
  CHECK(n == 0, "walk after all closed: %d", n);
  CHECK(lw_loop_run(loop, LW_RUN_DEFAULT) == 0, "run");
  CHECK(lw_loop_close(loop) == 0, "close");
  return 0;
}

/* ------------------------------------------------------------------------------------
 * unref: lw_loop_run(LW_RUN_DEFAULT) returns exactly when the last REF'd thing goes,
 * with unref'd ones still started: a self-re-arming unref'd timer (every 5 ms), an
 * unref'd wake-up, an unref'd signal watcher (unref'd before its start), an unref'd fd
 * watcher on a pipe that never becomes ready (stopped and restarted). A ref'd one-shot
 * timer at 100 ms is the last; the run must return within [95, 400) ms, the unref'd
 * timer having fired meanwhile. Then ref/unref toggled from timers, and RUN_ONCE.
 * ------------------------------------------------------------------------------------ */
static int ur_ticks;
static void ur_rearm(lw_timer *t) {
  ur_ticks++;
  lw_timer_start(t, ur_rearm, 5, 0); /* re-arms itself: must stay unref'd */
}
static void ur_sig(lw_signal *s, int n) { (void)s, (void)n; }
static void ur_wake(lw_wakeup *w) { (void)w; }
static void ur_watchcb(lw_watch *w, int e) { (void)w, (void)e; }
static lw_wakeup *ur_w;
static void ur_ref_wake(lw_timer *t) {
  lw_wakeup_ref(ur_w); /* from now the wake-up holds the loop... */
  lw_timer_free(t);
}
static void ur_unref_wake(lw_timer *t) {
  lw_wakeup_unref(ur_w); /* ...until here */
  lw_timer_free(t);
}
static int scen_unref(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_timer *rt, *last;
  lw_signal *sg;
  lw_watch *wt;
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  CHECK(lw_timer_new(loop, &rt) == 0 && lw_timer_new(loop, &last) == 0, "timers");
  lw_timer_unref(rt);
  lw_timer_start(rt, ur_rearm, 5, 0);
  CHECK(lw_wakeup_new(loop, ur_wake, &ur_w) == 0, "wakeup");
  lw_wakeup_unref(ur_w);
  CHECK(lw_signal_new(loop, &sg) == 0, "signal");
  lw_signal_unref(sg); /* unref before start: survives the start */
  CHECK(lw_signal_start(sg, ur_sig, SIGUSR1) == 0, "signal start");
  CHECK(lw_watch_new(loop, p[0], &wt) == 0, "watch");
  CHECK(lw_watch_start(wt, LW_READABLE, ur_watchcb) == 0, "watch start");
  lw_watch_unref(wt);
  lw_watch_stop(wt);
  CHECK(lw_watch_start(wt, LW_READABLE, ur_watchcb) == 0, "watch restart"); /* still unref */
  /* Nothing ref'd: returns at once. */
  uint64_t t0 = atk_now();
  CHECK(lw_loop_run(loop, LW_RUN_DEFAULT) == 0, "run");
  CHECK(atk_now() - t0 < 50, "run with only unref'd handles took %llu ms",
        (unsigned long long)(atk_now() - t0));
  lw_timer_start(last, nop_timer, 100, 0);
  t0 = atk_now();
  ur_ticks = 0;
  lw_loop_run(loop, LW_RUN_DEFAULT);
  uint64_t dt = atk_now() - t0;
  printf("unref: returned after %llu ms, %d unref'd ticks\n", (unsigned long long)dt, ur_ticks);
  CHECK(dt >= 95 && dt < 400, "run returned after %llu ms (the ref'd timer: 100)",
        (unsigned long long)dt);
  CHECK(ur_ticks >= 5, "the unref'd timer ran %d times", ur_ticks);
  /* The wake-up ref'd at 50 ms and unref'd again at 150 ms: the run ends at ~150. */
  lw_timer *a, *b;
  lw_timer_new(loop, &a);
  lw_timer_new(loop, &b);
  lw_timer_start(a, ur_ref_wake, 50, 0);
  lw_timer_start(b, ur_unref_wake, 150, 0);
  t0 = atk_now();
  lw_loop_run(loop, LW_RUN_DEFAULT);
  dt = atk_now() - t0;
  CHECK(dt >= 145 && dt < 450, "toggled ref: run returned after %llu ms (150 expected)",
        (unsigned long long)dt);
  /* LW_RUN_ONCE with a ref'd watcher and nothing ready: returns after the unref'd timer
   * fired (it ran something), not blocking forever. */
  lw_watch_ref(wt);
  t0 = atk_now();
  lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(atk_now() - t0 < 100, "RUN_ONCE waited %llu ms", (unsigned long long)(atk_now() - t0));
  lw_watch_free(wt);
  lw_signal_free(sg);
  lw_wakeup_free(ur_w);
  lw_timer_free(rt);
  lw_timer_free(last);
  uint64_t end = atk_now() + 2000;
  while (lw_loop_close(loop) == LW_EBUSY && atk_now() < end)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  close(p[0]);
  close(p[1]);
  return 0;
}

/* ------------------------------------------------------------------------------------
 * watch_cycles: an eventfd, a timerfd (1 ms) and a pipe, each watched and stopped /
 * restarted / freed and re-made 1000 times a second for 1 s, from inside their own
 * callbacks and from a timer. Readiness written once must be reported (level-
 * triggered) after any restart; nothing is reported for a stopped watcher; the loop
 * closes cleanly at the end (io_uring: every cancelled poll reaped).
 * ------------------------------------------------------------------------------------ */
static int wcy_fd[3];
static lw_watch *wcy_w[3];
static long wcy_calls[3], wcy_cycles, wcy_stale;
static void wcy_cb(lw_watch *w, int ev) {
  long i = (long)(intptr_t)lw_watch_get_data(w);
  if (!(ev & LW_READABLE))
    return;
  wcy_calls[i]++;
  if (i == 1) { /* the timerfd: consume its expirations */
    uint64_t v;
    if (read(wcy_fd[1], &v, sizeof(v)) < 0 && errno != EAGAIN)
      wcy_stale++;
  }
  switch (wcy_calls[i] % 4) {
  case 0:
    lw_watch_stop(w);
    CHECK(lw_watch_start(w, LW_READABLE, wcy_cb) == 0, "restart in cb");
    break;
  case 1:
    lw_watch_free(w);
    CHECK(lw_watch_new(loop, wcy_fd[i], &wcy_w[i]) == 0 &&
              lw_watch_start(wcy_w[i], LW_READABLE, wcy_cb) == 0,
          "re-made in cb");
    lw_watch_set_data(wcy_w[i], (void *)(intptr_t)i);
    break;
  case 2:
    lw_watch_start(w, LW_READABLE | LW_WRITABLE, wcy_cb); /* change of events */
    lw_watch_start(w, LW_READABLE, wcy_cb);
    break;
  default:
    break;
  }
}
static void wcy_tick(lw_timer *t) {
  (void)t;
  for (int i = 0; i < 3; i++) {
    lw_watch_stop(wcy_w[i]);
    lw_watch_start(wcy_w[i], LW_READABLE, wcy_cb);
  }
  wcy_cycles++;
}
static int scen_watch_cycles(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  int p[2];
  CHECK(pipe2(p, O_NONBLOCK) == 0, "pipe");
  wcy_fd[0] = eventfd(1, EFD_NONBLOCK); /* always readable: never read */
  wcy_fd[1] = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {{0, 1000000}, {0, 1000000}};
  timerfd_settime(wcy_fd[1], 0, &its, NULL);
  wcy_fd[2] = p[0];
  CHECK(write(p[1], "x", 1) == 1, "pipe write"); /* readable until read: never read */
  for (long i = 0; i < 3; i++) {
    CHECK(lw_watch_new(loop, wcy_fd[i], &wcy_w[i]) == 0 &&
              lw_watch_start(wcy_w[i], LW_READABLE, wcy_cb) == 0,
          "watch %ld", i);
    lw_watch_set_data(wcy_w[i], (void *)(intptr_t)i);
  }
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, wcy_tick, 1, 1);
  /* 1 s, or longer on a loaded machine (ASan, ctest -j2) until 300 cycles and 100
   * callbacks per fd have been seen -- at most 10 s. */
  uint64_t t0 = atk_now();
  while (atk_now() < t0 + 1000 ||
         (atk_now() < t0 + 10000 &&
          (wcy_cycles < 300 || wcy_calls[0] < 100 || wcy_calls[1] < 100 || wcy_calls[2] < 100)))
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(t);
  /* Stopped: nothing more is reported, whatever the fds do. */
  for (int i = 0; i < 3; i++)
    lw_watch_stop(wcy_w[i]);
  long c0 = wcy_calls[0] + wcy_calls[1] + wcy_calls[2];
  atk_run_for(loop, 30);
  long c1 = wcy_calls[0] + wcy_calls[1] + wcy_calls[2];
  printf("watch_cycles: %ld timer cycles; callbacks eventfd %ld timerfd %ld pipe %ld; "
         "%ld after stop\n",
         wcy_cycles, wcy_calls[0], wcy_calls[1], wcy_calls[2], c1 - c0);
  CHECK(c1 == c0, "%ld callbacks for stopped watchers", c1 - c0);
  CHECK(wcy_cycles >= 300, "only %ld cycles", wcy_cycles);
  for (int i = 0; i < 3; i++)
    CHECK(wcy_calls[i] >= 100, "fd %d: %ld callbacks", i, wcy_calls[i]);
  CHECK(wcy_stale == 0, "timerfd read errors");
  for (int i = 0; i < 3; i++)
    lw_watch_free(wcy_w[i]);
  uint64_t end = atk_now() + 2000;
  int r;
  while ((r = lw_loop_close(loop)) == LW_EBUSY && atk_now() < end)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(r == 0, "close: %s", lw_err_name(r));
  for (int i = 0; i < 3; i++)
    close(wcy_fd[i]);
  close(p[1]);
  return 0;
}

/* ------------------------------------------------------------------------------------
 * addr: a connection still connecting (ENOTCONN, not garbage), the same after connect
 * (the right ports), an accepted IPv6 connection (::1, the client's port), and the
 * addresses after the peer reset (still readable until the socket is closed, or
 * ENOTCONN: never a crash, never another connection's).
 * ------------------------------------------------------------------------------------ */
static lw_conn *ad_acc, *ad_cli;
static int ad_connected, ad_closed;
static void ad_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st == 0)
    ad_acc = c;
}
static void ad_connect(lw_conn *c, int st) {
  (void)c;
  ad_connected = st == 0 ? 1 : -1;
}
static void ad_close(lw_conn *c, const lw_close_info *in) {
  (void)in;
  char h[64];
  int port = 0;
  CHECK(lw_conn_peer_addr(c, h, sizeof(h), &port) == LW_ENOTCONN, "peer addr in on_close");
  ad_closed++;
}
static void ad_read(lw_conn *c, long n, const char *b) { (void)c, (void)n, (void)b; }
static int scen_addr(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  if (lw_listener_new(loop, "::1", 0, 16, NULL, ad_accept, &l) < 0) {
    printf("addr: no IPv6 loopback here\n");
    return 77;
  }
  int port = lw_listener_port(l);
  char h[64];
  int pt = -1;
  CHECK(lw_conn_connect(loop, "::1", port, NULL, ad_connect, &ad_cli) == 0, "connect");
  int r = lw_conn_peer_addr(ad_cli, h, sizeof(h), &pt);
  CHECK(r == LW_ENOTCONN, "peer addr while connecting: %s", lw_err_name(r));
  r = lw_conn_local_addr(ad_cli, h, sizeof(h), &pt);
  CHECK(r == LW_ENOTCONN, "local addr while connecting: %s", lw_err_name(r));
  uint64_t end = atk_now() + 2000;
  while ((!ad_connected || !ad_acc) && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(ad_connected == 1 && ad_acc, "connected");
  int cport = -1, aport = -1;
  CHECK(lw_conn_local_addr(ad_cli, h, sizeof(h), &cport) == 0 && !strcmp(h, "::1"),
        "client local %s", h);
  CHECK(lw_conn_peer_addr(ad_acc, h, sizeof(h), &aport) == 0 && !strcmp(h, "::1") &&
            aport == cport,
        "accepted peer %s port %d (client's %d)", h, aport, cport);
  CHECK(lw_conn_local_addr(ad_acc, h, sizeof(h), &aport) == 0 && aport == port,
        "accepted local");
  CHECK(lw_conn_peer_addr(ad_acc, h, 3, NULL) == LW_ENOSPC, "short buffer");
  CHECK(lw_conn_peer_addr(ad_acc, NULL, 0, &aport) == 0 && aport == cport, "port only");
  /* The client resets; the accepted side reads until it sees it. */
  lw_conn_on_close(ad_acc, ad_close);
  lw_conn_on_close(ad_cli, ad_close);
  lw_conn_read_start(ad_acc, ad_read);
  lw_abort(ad_cli);
  CHECK(lw_conn_peer_addr(ad_cli, h, sizeof(h), &pt) == LW_ENOTCONN, "after abort");
  end = atk_now() + 2000;
  while (ad_closed < 2 && atk_now() < end) {
    lw_loop_run(loop, LW_RUN_ONCE);
    if (ad_closed < 2) {
      r = lw_conn_peer_addr(ad_acc, h, sizeof(h), &pt);
      CHECK(r == 0 || r == LW_ENOTCONN, "peer addr after the reset: %s", lw_err_name(r));
    }
  }
  CHECK(ad_closed == 2, "closes %d", ad_closed);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_DEFAULT) == 0, "run");
  CHECK(lw_loop_close(loop) == 0, "close");
  return 0;
}

/* ------------------------------------------------------------------------------------
 * pipe_chld: a SIGPIPE watcher while the library writes 1 MiB into a connection whose
 * peer reset it (MSG_NOSIGNAL: the library raises no SIGPIPE, so no callback from it),
 * then the application's own write(2) into a broken pipe (one callback, the process
 * lives); a SIGCHLD watcher while 5 children exit (1..5 callbacks, all reaped).
 * ------------------------------------------------------------------------------------ */
static int pc_pipe, pc_chld, pc_closed;
static lw_conn *pc_conn;
static void pc_sig(lw_signal *s, int n) {
  (void)s;
  if (n == SIGPIPE)
    pc_pipe++;
  else
    pc_chld++;
}
static void pc_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st == 0)
    pc_conn = c;
}
static void pc_close(lw_conn *c, const lw_close_info *in) {
  (void)c, (void)in;
  pc_closed = 1;
}
static int scen_pipe_chld(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_signal *sp, *sc;
  CHECK(lw_signal_new(loop, &sp) == 0 && lw_signal_start(sp, pc_sig, SIGPIPE) == 0, "pipe");
  CHECK(lw_signal_new(loop, &sc) == 0 && lw_signal_start(sc, pc_sig, SIGCHLD) == 0, "chld");
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, pc_accept, &l) < 0)
    return 2;
  int p = atk_connect(lw_listener_port(l));
  uint64_t end = atk_now() + 2000;
  while (!pc_conn && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(pc_conn != NULL, "accept");
  if (!pc_conn)
    return 0;
  lw_conn_on_close(pc_conn, pc_close);
  struct linger lg = {1, 0};
  setsockopt(p, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(p); /* RST */
  static char big[1 << 20];
  for (int i = 0; i < 8 && !pc_closed; i++) {
    lw_conn_write(pc_conn, big, sizeof(big), NULL, NULL);
    atk_run_for(loop, 10);
  }
  atk_run_for(loop, 50);
  CHECK(pc_closed, "the reset connection did not end");
  CHECK(pc_pipe == 0, "%d SIGPIPE callbacks from the library's writes", pc_pipe);
  int pp[2];
  CHECK(pipe(pp) == 0, "pipe");
  close(pp[0]);
  CHECK(write(pp[1], "x", 1) < 0 && errno == EPIPE, "own write to a broken pipe");
  close(pp[1]);
  end = atk_now() + 2000;
  while (pc_pipe < 1 && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(pc_pipe == 1, "own SIGPIPE: %d callbacks", pc_pipe);
  for (int i = 0; i < 5; i++)
    if (fork() == 0)
      _exit(0);
  int reaped = 0;
  end = atk_now() + 3000;
  while (reaped < 5 && atk_now() < end) {
    lw_loop_run(loop, LW_RUN_ONCE);
    while (waitpid(-1, NULL, WNOHANG) > 0)
      reaped++;
  }
  atk_run_for(loop, 20);
  printf("pipe_chld: %d SIGCHLD callbacks for 5 children, %d reaped\n", pc_chld, reaped);
  CHECK(reaped == 5, "reaped %d", reaped);
  CHECK(pc_chld >= 1 && pc_chld <= 5, "%d SIGCHLD callbacks", pc_chld);
  lw_signal_free(sp);
  lw_signal_free(sc);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_DEFAULT) == 0, "run");
  CHECK(lw_loop_close(loop) == 0, "close");
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
  else if (!strcmp(scen, "wake_storm"))
    r = scen_wake_storm();
  else if (!strcmp(scen, "walk"))
    r = scen_walk();
  else if (!strcmp(scen, "unref"))
    r = scen_unref();
  else if (!strcmp(scen, "watch_cycles"))
    r = scen_watch_cycles();
  else if (!strcmp(scen, "addr"))
    r = scen_addr();
  else if (!strcmp(scen, "pipe_chld"))
    r = scen_pipe_chld();
  if (r == 77)
    return 77;
  if (r == 2)
    return 2;
  printf("%s [%s]: %s (%d failure%s)\n", scen, be ? be : "epoll", atk_fails ? "FAIL" : "ok",
         atk_fails, atk_fails == 1 ? "" : "s");
  (void)nop_timer;
  return atk_fails ? 1 : 0;
}
