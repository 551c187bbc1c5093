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
      CHECK(n < 0 && errno == EAGAIN, "%zd stray bytes in a pipe that took a closed number",
            n);
    }
    close(p[0]), close(p[1]), close(p2[0]), close(p2[1]);
    rounds++;
    if (!uring)
      loop = NULL;
  }
  printf("wake_inflight: %d rounds\n", rounds);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
int main(int argc, char **argv) {
  scen = argc > 1 ? argv[1] : "wake_inflight";
  int r = 2;
  const char *be = getenv("LW_BACKEND");
  if (!strcmp(scen, "wake_inflight"))
    r = scen_wake_inflight();
  if (r == 2)
    return 2;
  printf("%s [%s]: %s (%d failure%s)\n", scen, be ? be : "epoll", atk_fails ? "FAIL" : "ok",
         atk_fails, atk_fails == 1 ? "" : "s");
  (void)nop_timer;
  return atk_fails ? 1 : 0;
}
