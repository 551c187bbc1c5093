/*
 * test_inq_race.c - input that a receive in flight takes while the close is measuring
 * it is counted once in unread_discarded, never twice.
 *
 * A close counts the input the application never read: the kernel's queue (SIOCINQ)
 * and what a completion backend holds (a receive completed but not delivered). On
 * io_uring a receive still in flight completes in task work, which the kernel runs at
 * the return of any syscall -- the SIOCINQ ioctl's own included (unless the ring has
 * DEFER_TASKRUN). So bytes that reach the socket just as the close reads SIOCINQ are
 * in that figure, and the receive's completion, posted at the ioctl's return, holds
 * them too. The close used to read SIOCINQ first and the completions second: both had
 * them, and unread_discarded said twice what the peer sent (torture: unread-more-than-
 * sent; Wine, where a WSARecv completes at any instant, hit it in CI).
 *
 * The test puts the bytes there at that moment: -Wl,--wrap=lw__sock_inq (this program
 * only; the library is linked unchanged) makes the close's SIOCINQ wait, spinning in
 * user space without a syscall, until another thread has sent them and seen them in
 * the socket's queue. Each round asserts unread_discarded == what the peer sent.
 * On epoll (nothing in flight) it is the control. Before the fix (SIOCINQ read before
 * the held-input scan) it failed on io_uring, default ring: unread_discarded=3000 for
 * 1500 sent.
 *
 * The limit it shows: on a ring without COOP_TASKRUN (LW_URING_NO_COOP) the task work
 * comes with an IPI and runs at the return of any interrupt, so the receive can take
 * bytes in the few instructions between the scan and the ioctl. They are then in
 * neither figure and go uncounted -- never counted twice. The wrapper's spin stretches
 * that gap to milliseconds, so under NO_COOP most rounds land in it: there the test
 * asserts only unread_discarded <= what was sent, and prints how often it was short.
 */
#include "helper.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#define ROUNDS 20
#define PAYLOAD 1500

long __real_lw__sock_inq(int fd);
long __wrap_lw__sock_inq(int fd);

static struct {
  atomic_int armed_fd; /* -1: pass through */
  atomic_int go, sent, quit;
  int peer;        /* the peer's socket (the thread sends on it) */
  int server;      /* our accepted socket's fd (the thread watches its SIOCINQ) */
  atomic_int seen; /* SIOCINQ the thread saw, or -1 if it never reached PAYLOAD */
} w = {.armed_fd = -1};

static uint64_t mono_ns(void) { /* clock_gettime is a vDSO call: no syscall, no task work */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long __wrap_lw__sock_inq(int fd) {
  int want = atomic_load(&w.armed_fd);
  if (want >= 0 && fd == want) {
    atomic_store(&w.armed_fd, -1);
    atomic_store(&w.go, 1);
    /* Spin without entering the kernel: the receive's task work must not run before
     * the SIOCINQ below (bounded: 2 s). */
    uint64_t end = mono_ns() + 2000000000u;
    while (!atomic_load(&w.sent) && mono_ns() < end)
      ;
  }
  return __real_lw__sock_inq(fd);
}

/* The peer's thread: spins on go (so that it is running on the other core when the
 * close arms it), sends PAYLOAD bytes, waits for them in our socket's queue. */
static void *peer_thread(void *arg) {
  (void)arg;
  char buf[PAYLOAD];
  memset(buf, 'x', sizeof(buf));
  while (!atomic_load(&w.quit)) {
    if (!atomic_load(&w.go))
      continue;
    atomic_store(&w.go, 0);
    int q = -1; /* (no cmocka assert off the main thread: -1 fails the round) */
    if (send(w.peer, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
      atomic_store(&w.seen, q);
      atomic_store(&w.sent, 1);
      continue;
    }
    uint64_t end = mono_ns() + 100000000u; /* 100 ms */
    while (mono_ns() < end) {
      int n = 0;
      if (ioctl(w.server, SIOCINQ, &n) == 0 && n >= PAYLOAD) {
        q = n;
        break;
      }
    }
    atomic_store(&w.seen, q);
    atomic_store(&w.sent, 1);
  }
  return NULL;
}

static struct {
  lw_conn *c;
  int closes;
  lw_close_info info;
  int naive;
} r;

static void on_read(lw_conn *c, long n, const char *buf) {
  (void)c;
  (void)buf;
  fail_msg("the read callback ran (%ld): the close came before any input", n);
}

static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  r.closes++;
  r.info = *in;
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  r.c = c;
  lw_conn_on_close(c, on_close);
  assert_int_equal(lw_conn_read_start(c, on_read), 0); /* a receive in flight */
}

static void close_now(lw_timer *t) {
  (void)t;
  atomic_store(&w.sent, 0);
  atomic_store(&w.armed_fd, lw_conn_fd(r.c));
  assert_int_equal(r.naive ? lw_close_naive(r.c) : lw_abort(r.c), 0);
}

static int r_made;  /* rounds in which the moment was made */
static int r_ipi;   /* NO_COOP ring: task work may run at any interrupt's return */
static int r_under; /* NO_COOP rounds counted short (the limit named at the top) */

static void run_round(lw_loop *loop, lw_listener *l, int naive) {
  memset(&r, 0, sizeof(r));
  r.naive = naive;
  int peer = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(peer >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)lw_listener_port(l))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(peer, (struct sockaddr *)&a, sizeof(a)), 0);
  uint64_t end = lwt_now_ms() + 2000;
  while (!r.c && lwt_now_ms() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  assert_non_null(r.c);
  w.peer = peer;
  w.server = lw_conn_fd(r.c);
  atomic_store(&w.seen, 0);
  lw_timer *t;
  assert_int_equal(lw_timer_new(loop, &t), 0);
  lw_timer_start(t, close_now, 20, 0); /* the receive is in flight by then */
  lwt_run_until(loop, NULL, &r.closes, 1, 3000);
  lw_timer_free(t);
  assert_int_equal(r.closes, 1);
  /* The bytes were in our socket's queue before the close read it -- unless the
   * receive took them first (the task work ran on an interrupt's return: at once under
   * NO_COOP, whose task work comes with an IPI); they were held input then. */
  if (atomic_load(&w.seen) == PAYLOAD)
    r_made++;
  assert_int_equal(r.info.reason, naive ? LW_REASON_NAIVE : LW_REASON_ABORT);
  assert_int_equal(r.info.bytes_received, 0);
  if (r.info.unread_discarded < PAYLOAD && r_ipi)
    r_under++; /* the limit named at the top */
  else if (r.info.unread_discarded != PAYLOAD)
    fail_msg("%s: unread_discarded=%llu, the peer sent %d (backend %s)",
             naive ? "lw_close_naive" : "lw_abort", (unsigned long long)r.info.unread_discarded,
             PAYLOAD, lw_loop_backend(loop));
  assert_int_equal(r.info.rst, 1); /* unread input: the close is an RST either way (B13) */
  close(peer);
}

static void test_inq_counted_once(void **state) {
  (void)state;
  lw_loop *loop;
  lw_listener *l;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, on_accept, &l), 0);
  pthread_t th;
  atomic_store(&w.quit, 0);
  assert_int_equal(pthread_create(&th, NULL, peer_thread, NULL), 0);
  const char *nc = getenv("LW_URING_NO_COOP");
  int ipi = strcmp(lw_loop_backend(loop), "uring") == 0 && nc && *nc && strcmp(nc, "0") != 0;
  r_made = r_under = 0;
  r_ipi = ipi;
  for (int i = 0; i < ROUNDS; i++)
    run_round(loop, l, i & 1);
  atomic_store(&w.quit, 1);
  pthread_join(th, NULL);
  printf("test_inq_race: backend %s: the bytes were seen in the queue just before the close's "
         "SIOCINQ in "
         "%d of %d rounds%s",
         lw_loop_backend(loop), r_made, ROUNDS,
         ipi ? " (NO_COOP: the task work comes with an IPI, so the receive mostly takes "
               "them inside the wrapper's spin, between the held-input scan and SIOCINQ)"
             : "");
  if (ipi)
    printf("; counted short (never twice) in %d rounds", r_under);
  printf("\n");
  if (!ipi && r_made < ROUNDS / 2)
    fail_msg("the moment was made in only %d of %d rounds: the test did not test", r_made,
             ROUNDS);
  lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inq_counted_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
