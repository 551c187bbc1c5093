/*
 * netns.h - two network namespaces joined by a veth pair, for the dead-peer tests.
 * Header-only (static inline): include it after helper.h in one test program.
 *
 *   int main(void) { return lwn_main(tests, n); }
 *
 * lwn_main skips (exit 77, reason printed) unless root with network namespaces, veth
 * and nftables; otherwise it forks a runner that unshare()s two ANONYMOUS namespaces:
 *   A (the runner's own; the library under test, 10.77.0.1 on "va")
 *   B (held by an fd; the raw peer threads/processes, 10.77.0.2 on "vb").
 * Nothing is named or created in the host's namespace, so there is nothing to clean
 * up: the namespaces, the veth pair and every rule vanish with the runner process,
 * even if it crashes or is killed (the parent kills it after LWN_RUNNER_TIMEOUT_S).
 * Peer processes forked into B die with the runner (PR_SET_PDEATHSIG).
 */
#ifndef LW_TEST_NETNS_H
#define LW_TEST_NETNS_H

#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LWN_ADDR_A "10.77.0.1"
#define LWN_ADDR_B "10.77.0.2"
#define LWN_RUNNER_TIMEOUT_S 100

static int lwn_fd_a = -1, lwn_fd_b = -1;

static inline void lwn_msleep(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Runs a shell command in namespace nsfd (-1: the caller's), bounded to 10 s.
 * Returns its exit status, or -1. */
static inline int lwn_sh(int nsfd, const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
      _exit(126);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0 && getenv("LWN_VERBOSE") == NULL) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  for (int i = 0; i < 1000; i++) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    lwn_msleep(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

/* In the runner: A = a fresh namespace for us, B = another, held by lwn_fd_b. */
static inline const char *lwn_setup(void) {
  if (unshare(CLONE_NEWNET) < 0)
    return "unshare(CLONE_NEWNET) failed: no network namespaces here";
  lwn_fd_a = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (unshare(CLONE_NEWNET) < 0)
    return "second unshare(CLONE_NEWNET) failed";
  lwn_fd_b = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (lwn_fd_a < 0 || lwn_fd_b < 0 || setns(lwn_fd_a, CLONE_NEWNET) < 0)
    return "cannot hold or enter the namespaces";
  if (lwn_sh(-1, "ip link set lo up") != 0 || lwn_sh(lwn_fd_b, "ip link set lo up") != 0)
    return "ip (iproute2) not usable";
  if (lwn_sh(-1, "ip link add va type veth peer name vb netns /proc/%d/fd/%d", (int)getpid(),
             lwn_fd_b) != 0)
    return "cannot create a veth pair (ip link add ... type veth)";
  if (lwn_sh(-1, "ip addr add " LWN_ADDR_A "/24 dev va && ip link set va up") != 0 ||
      lwn_sh(lwn_fd_b, "ip addr add " LWN_ADDR_B "/24 dev vb && ip link set vb up") != 0)
    return "cannot configure the veth pair";
  if (lwn_sh(lwn_fd_b, "nft add table inet lwt && nft delete table inet lwt") != 0)
    return "nft (nftables) not usable";
  /* veth carrier comes up asynchronously: wait until B answers. */
  for (int i = 0; i < 200; i++) {
    if (lwn_sh(-1, "ip link show va | grep -q LOWER_UP") == 0)
      return NULL;
    lwn_msleep(10);
  }
  return "veth link did not come up";
}

/* The peer vanishes: every packet in and out of B is dropped (nft), or B's link goes
 * down. The peer's kernel is then silent: no FIN, no RST, no ACK. */
static inline void lwn_vanish_nft(void) {
  int r = lwn_sh(
      lwn_fd_b, "nft 'add table inet lwt; "
                "add chain inet lwt in { type filter hook input priority 0; policy drop; }; "
                "add chain inet lwt out { type filter hook output priority 0; policy drop; }'");
  assert_int_equal(r, 0);
}

static inline void lwn_vanish_link(void) {
  assert_int_equal(lwn_sh(lwn_fd_b, "ip link set vb down"), 0);
}

/* The peer comes back (undoes either vanish), for the next case: a cmocka teardown. */
static inline int lwn_restore(void **state) {
  (void)state;
  lwn_sh(lwn_fd_b, "nft delete table inet lwt; ip link set vb up");
  for (int i = 0; i < 200 && lwn_sh(-1, "ip link show va | grep -q LOWER_UP") != 0; i++)
    lwn_msleep(10);
  return 0;
}

/* ---- a raw peer in a thread in B ---- */
typedef struct lwn_peer {
  int port;
  const char *request; /* sent after connecting (default "GET\n") */
  size_t read_limit;   /* stop reading after this many bytes (0: read until told) */
  int no_read;         /* never read */
  int rcvbuf;          /* SO_RCVBUF (0: autotuning) */
  int max_ms;          /* lifetime bound (default 15000) */
  size_t pace_chunk;   /* with pace_ms: read at most pace_chunk bytes per pace_ms */
  int pace_ms;
  int shut_at_limit; /* with read_limit: shutdown(SHUT_WR) once read_limit is read */
  atomic_int finned; /* ... done */
  atomic_size_t received;
  atomic_int stop;
  atomic_int done;
  int end_err; /* 0: EOF; errno; -1: stopped or timed out */
  pthread_t thread;
} lwn_peer;

static inline void *lwn_peer_main(void *arg) {
  lwn_peer *p = arg;
  p->end_err = -1;
  if (setns(lwn_fd_b, CLONE_NEWNET) < 0) {
    p->end_err = errno;
    atomic_store(&p->done, 1);
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &p->rcvbuf, sizeof(p->rcvbuf));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
  inet_pton(AF_INET, LWN_ADDR_A, &a.sin_addr);
  struct timeval tv = {0, 50 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    p->end_err = errno;
    close(fd);
    atomic_store(&p->done, 1);
    return NULL;
  }
  const char *req = p->request ? p->request : "GET\n";
  if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
    p->end_err = errno;
  uint64_t end = lwt_now_ms() + (uint64_t)(p->max_ms ? p->max_ms : 15000);
  char buf[65536];
  size_t in_period = 0;
  while (!atomic_load(&p->stop) && lwt_now_ms() < end) {
    if (p->pace_ms && in_period >= p->pace_chunk) {
      lwn_msleep(p->pace_ms);
      in_period = 0;
    }
    size_t got = atomic_load(&p->received);
    if (p->no_read || (p->read_limit && got >= p->read_limit)) {
      if (p->shut_at_limit && got >= p->read_limit && !atomic_load(&p->finned) &&
          shutdown(fd, SHUT_WR) == 0)
        atomic_store(&p->finned, 1);
      lwn_msleep(20);
      continue;
    }
    size_t want = sizeof(buf);
    if (p->read_limit && p->read_limit - got < want)
      want = p->read_limit - got;
    if (p->pace_ms && p->pace_chunk - in_period < want)
      want = p->pace_chunk - in_period;
    ssize_t n = recv(fd, buf, want, 0);
    if (n == 0) {
      p->end_err = 0;
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        continue;
      p->end_err = errno;
      break;
    }
    atomic_fetch_add(&p->received, (size_t)n);
    in_period += (size_t)n;
  }
  close(fd);
  atomic_store(&p->done, 1);
  return NULL;
}

static inline void lwn_peer_start(lwn_peer *p) {
  atomic_store(&p->received, 0);
  atomic_store(&p->stop, 0);
  atomic_store(&p->done, 0);
  atomic_store(&p->finned, 0);
  assert_int_equal(pthread_create(&p->thread, NULL, lwn_peer_main, p), 0);
}

static inline void lwn_peer_join(lwn_peer *p) {
  atomic_store(&p->stop, 1);
  pthread_join(p->thread, NULL);
}

static inline void lwn_noop(lw_timer *t) { (void)t; }

/* Runs the loop until pred(arg) holds; fails after timeout_ms. */
static inline void lwn_run_until(lw_loop *loop, int (*pred)(void *), void *arg,
                                 int timeout_ms) {
  uint64_t end = lwt_now_ms() + (uint64_t)timeout_ms;
  lw_timer *tick;
  assert_int_equal(lw_timer_new(loop, &tick), 0);
  lw_timer_start(tick, lwn_noop, 2, 2); /* wakes the loop to see other threads' flags */
  while (!pred(arg) && lwt_now_ms() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(tick);
  assert_true(pred(arg));
}

/* The program: skip unless possible, then run the cmocka group in a runner process
 * that owns the namespaces. */
static inline int lwn_main(const struct CMUnitTest *tests, size_t n, const char *name) {
  if (geteuid() != 0) {
    printf("SKIP %s: needs root (network namespaces, veth, nftables)\n", name);
    return 77;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    const char *why = lwn_setup();
    if (why) {
      printf("SKIP %s: %s\n", name, why);
      fflush(stdout);
      _exit(77);
    }
    int r = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    fflush(stdout);
    _exit(r == 0 ? 0 : 1);
  }
  int st = 0;
  for (int i = 0; i < LWN_RUNNER_TIMEOUT_S * 10; i++) {
    if (waitpid(pid, &st, WNOHANG) == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    lwn_msleep(100);
  }
  printf("FAIL %s: runner timed out after %d s\n", name, LWN_RUNNER_TIMEOUT_S);
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return 1;
}

#endif
