/*
 * test_completion_rules.c - the rules a completion backend (io_uring) must keep, one
 * case per defect seen, run on every backend like the rest of the suite (on epoll each
 * case is the control: the same calls, a readiness backend).
 *
 *   fd_reuse_no_foreign_bytes  abort inside a write callback, then a new socket: it
 *                              must not get the old connection's fd number while an SQE
 *                              may still name it, nor receive its bytes (rule 1 + 2)
 *   stash_no_nested_delivery   lw_conn_read_start inside a read callback fed from held
 *                              input: no nested callback, the buffer stays valid, and
 *                              no provided buffer returned twice (rule 3)
 *   stopped_readers_no_starve  600 connections stop reading with input arriving: a
 *                              reading connection still gets its bytes, no spin (rule 4)
 *   eof_held_while_stopped     the peer's FIN while reading is stopped waits for
 *                              read_start; a reply written in the EOF callback arrives
 *   held_input_is_unread       held input counts for abort, naive close, first byte
 *
 * Rules: src/linux/uring.c (top) and lw__backend.held_input (src/internal.h).
 */
#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#ifndef _WIN32
#include <sys/resource.h>
#include <sys/time.h>
#endif
#include <unistd.h>
#ifdef LW_HAVE_URING
#include "internal.h" /* lw__uring_setup_flags */
#include <linux/io_uring.h>
#include <sys/utsname.h>
#endif

/* ---- small raw-socket kit ---- */
static int raw_connect(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  if (rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return fd;
}

static int raw_listen(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 16), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}

/* Reads until EOF, an error or timeout_ms; returns bytes read (*err: errno or 0). */
static size_t raw_drain(int fd, int timeout_ms, int *err, size_t *poisoned, char want) {
  char buf[65536];
  size_t total = 0;
  uint64_t end = lwt_now_ms() + (uint64_t)timeout_ms;
  *err = 0;
  while (lwt_now_ms() < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0)
      continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0)
      break;
    if (n < 0) {
      *err = errno;
      break;
    }
    for (ssize_t i = 0; poisoned && i < n; i++)
      if (buf[i] != want)
        (*poisoned)++;
    total += (size_t)n;
  }
  return total;
}

static void fire_flag(lw_timer *t) { *(int *)lw_timer_get_data(t) = 1; }

/* Runs the loop for ms milliseconds. */
static void run_for(lw_loop *loop, int ms) {
  lw_timer *t;
  int done = 0;
  assert_int_equal(lw_timer_new(loop, &t), 0);
  lw_timer_set_data(t, &done);
  lw_timer_start(t, fire_flag, (uint64_t)ms, 0);
  while (!done)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(t);
}

static void finish(lw_loop *loop, lw_listener *l) {
  if (l)
    lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
}

static int is_uring(lw_loop *loop) { return strcmp(lw_loop_backend(loop), "uring") == 0; }

/* ---------------------------------------------------------------------------------
 * 1. An abort inside a write callback, then a new connection.
 * --------------------------------------------------------------------------------- */
#define BIG (4u * 1024u * 1024u)
static struct {
  lw_loop *loop;
  lw_conn *a, *b;
  int a_fd, b_fd, sink_port;
  char *small, *big;
  int a_closes, b_closes, cancelled;
  lw_close_info b_info;
} r1;

static void r1_b_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  r1.b_closes++;
  r1.b_info = *in;
}
static void r1_b_connect(lw_conn *c, int status) {
  assert_int_equal(status, 0);
  lw_close(c, 1000); /* writes nothing */
}
static void r1_a_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  r1.a_closes++;
}
static void r1_big_done(lw_conn *c, int status, void *arg) {
  (void)c;
  (void)arg;
  assert_int_equal(r1.a_closes, 0); /* every write callback before on_close */
  if (status == LW_ECANCELED) {
    r1.cancelled++;
    memset(r1.big, 0xEE, BIG); /* the application reuses its buffer at once */
  }
}
static void r1_small_done(lw_conn *c, int status, void *arg) {
  (void)arg;
  assert_int_equal(status, 0);
  r1.a_fd = lw_conn_fd(c);
  assert_int_equal(lw_abort(c), 0);
  assert_int_equal(
      lw_conn_connect(r1.loop, "127.0.0.1", r1.sink_port, NULL, r1_b_connect, &r1.b), 0);
  lw_conn_on_close(r1.b, r1_b_close);
  r1.b_fd = lw_conn_fd(r1.b);
}
static void r1_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  r1.a = c;
  lw_conn_on_close(c, r1_a_close);
  assert_true(lw_conn_write(c, r1.small, 100, r1_small_done, NULL) >= 0);
  assert_true(lw_conn_write(c, r1.big, BIG, r1_big_done, NULL) >= 0);
}

static void test_fd_reuse_no_foreign_bytes(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  for (int round = 0; round < 5; round++) {
    memset(&r1, 0, sizeof(r1));
    r1.small = malloc(100);
    r1.big = malloc(BIG);
    memset(r1.small, 'a', 100);
    memset(r1.big, 'b', BIG);
    assert_int_equal(lw_loop_new(&r1.loop, NULL), 0);
    lwt_check_backend(r1.loop);
    lw_listener *l;
    assert_int_equal(lw_listener_new(r1.loop, "127.0.0.1", 0, 4, NULL, r1_accept, &l), 0);
    int sink = raw_listen(&r1.sink_port);
    /* A peer that never reads, with a small window: the big write stays partly
     * queued, so a sendmsg for it is prepared when the small write's callback runs. */
    int peer = raw_connect(lw_listener_port(l), 4096);
    uint64_t until = lwt_now_ms() + 5000;
    while (!r1.b && lwt_now_ms() < until)
      lw_loop_run(r1.loop, LW_RUN_ONCE);
    assert_non_null(r1.b);
    int sfd = accept(sink, NULL, NULL);
    assert_true(sfd >= 0);
    lwt_run_until(r1.loop, NULL, &r1.b_closes, 1, 5000);
    int err;
    size_t got = raw_drain(sfd, 500, &err, NULL, 0);
    /* B wrote nothing: its peer must receive nothing (A's bytes, poisoned or not). */
    assert_int_equal(got, 0);
    assert_int_equal(r1.b_info.bytes_sent, 0);
    assert_int_equal(r1.a_closes, 1);
    assert_int_equal(r1.cancelled, 1);
    /* io_uring: A's number is not free while an SQE may name it (rule 1). */
    if (is_uring(r1.loop))
      assert_int_not_equal(r1.b_fd, r1.a_fd);
    close(sfd);
    close(sink);
    close(peer);
    finish(r1.loop, l);
    free(r1.small);
    free(r1.big);
  }
  assert_int_equal(lwt_fd_count(), fds);
}

/* ---------------------------------------------------------------------------------
 * 2. Held input delivered in pieces; read_start called inside a piece's callback.
 * --------------------------------------------------------------------------------- */
static struct {
  lw_conn *a;
  int depth, max_depth, calls;
  char got[64];
  size_t ngot;
  int eof;
} r2;

static void r2_second(lw_conn *c, long n, const char *buf) {
  (void)c;
  r2.depth++;
  if (r2.depth > r2.max_depth)
    r2.max_depth = r2.depth;
  if (n > 0 && r2.ngot + (size_t)n <= sizeof(r2.got)) {
    memcpy(r2.got + r2.ngot, buf, (size_t)n);
    r2.ngot += (size_t)n;
  }
  if (n == LW_EOF)
    r2.eof = 1;
  r2.depth--;
}
static void r2_first(lw_conn *c, long n, const char *buf) {
  r2.depth++;
  if (r2.depth > r2.max_depth)
    r2.max_depth = r2.depth;
  r2.calls++;
  assert_int_equal(n, 4);
  char before[4];
  memcpy(before, buf, 4);
  /* A parser switch: legal from inside a read callback. */
  assert_int_equal(lw_conn_read_start(c, r2_second), 0);
  /* The data is valid during the whole call (lastword.h). */
  assert_memory_equal(buf, before, 4);
  memcpy(r2.got + r2.ngot, buf, 4);
  r2.ngot += 4;
  r2.depth--;
}
static void r2_never(lw_conn *c, long n, const char *buf) {
  (void)c;
  (void)n;
  (void)buf;
}
static void r2_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  r2.a = c;
  lw_conn_read_start(c, r2_never); /* a recv is in flight on a completion backend */
}
static void r2_stop(lw_timer *t) {
  (void)t;
  lw_conn_read_stop(r2.a); /* from outside a read callback: the recv stays */
}
static void r2_start(lw_timer *t) {
  (void)t;
  /* The held input (16 bytes, one recv) now goes out 4 bytes per callback. */
  lw_conn_set_read_size(r2.a, 4);
  lw_conn_read_start(r2.a, r2_first);
}

/* Streams checked after the nested delivery: a buffer returned twice would hand one
 * buffer to two receives and corrupt one of them. */
#define R2_STREAMS 4
#define R2_STREAM_BYTES (4u * 1024u * 1024u)
static struct {
  uint64_t got[R2_STREAMS];
  int bad, nacc, closes;
  lw_conn *c[R2_STREAMS];
} r2s;
static int r2s_idx(lw_conn *c) {
  for (int i = 0; i < R2_STREAMS; i++)
    if (r2s.c[i] == c)
      return i;
  return -1;
}
static void r2s_read(lw_conn *c, long n, const char *buf) {
  int i = r2s_idx(c);
  if (n == LW_EOF) {
    lw_close(c, 1000);
    return;
  }
  for (long k = 0; k < n; k++)
    if ((unsigned char)buf[k] != (unsigned char)((r2s.got[i] + (uint64_t)k) % 251u))
      r2s.bad++;
  r2s.got[i] += (uint64_t)n;
}
static void r2s_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  r2s.closes++;
}
static void r2s_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  r2s.c[r2s.nacc++] = c;
  lw_conn_on_close(c, r2s_close);
  lw_conn_read_start(c, r2s_read);
}
static void *r2s_writer(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[65536];
  uint64_t off = 0;
  while (off < R2_STREAM_BYTES) {
    for (size_t k = 0; k < sizeof(buf); k++)
      buf[k] = (char)((off + k) % 251u);
    ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
    if (w <= 0)
      break;
    off += (uint64_t)w; /* the next round starts where the kernel stopped */
  }
  shutdown(fd, SHUT_WR);
  return NULL;
}

static void test_stash_no_nested_delivery(void **state) {
  (void)state;
  memset(&r2, 0, sizeof(r2));
  memset(&r2s, 0, sizeof(r2s));
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, r2_accept, &l), 0);
  int peer = raw_connect(lw_listener_port(l), 0);
  while (!r2.a)
    lw_loop_run(loop, LW_RUN_ONCE);
  run_for(loop, 20);
  lw_timer *t1, *t2;
  lw_timer_new(loop, &t1);
  lw_timer_new(loop, &t2);
  lw_timer_start(t1, r2_stop, 1, 0);
  run_for(loop, 30);
  assert_int_equal(send(peer, "AAAABBBBCCCCDDDD", 16, 0), 16);
  run_for(loop, 50); /* the recv in flight completes while reading is stopped */
  lw_timer_start(t2, r2_start, 1, 0);
  run_for(loop, 50);
  assert_int_equal(r2.max_depth, 1); /* no read callback inside another */
  assert_int_equal(r2.ngot, 16);
  assert_memory_equal(r2.got, "AAAABBBBCCCCDDDD", 16);
  assert_int_equal(r2.calls, 1);
  lw_timer_free(t1);
  lw_timer_free(t2);
  lw_abort(r2.a);
  close(peer);

  /* The loop's receive buffers are still sound: streams arrive intact. */
  lw_listener *l2;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 8, NULL, r2s_accept, &l2), 0);
  int sfd[R2_STREAMS];
  pthread_t th[R2_STREAMS];
  for (int i = 0; i < R2_STREAMS; i++)
    sfd[i] = raw_connect(lw_listener_port(l2), 0);
  for (int i = 0; i < R2_STREAMS; i++)
    pthread_create(&th[i], NULL, r2s_writer, (void *)(intptr_t)sfd[i]);
  lwt_run_until(loop, NULL, &r2s.closes, R2_STREAMS, 20000);
  for (int i = 0; i < R2_STREAMS; i++) {
    pthread_join(th[i], NULL);
    close(sfd[i]);
  }
  assert_int_equal(r2s.bad, 0);
  for (int i = 0; i < R2_STREAMS; i++)
    assert_int_equal(r2s.got[i], R2_STREAM_BYTES);
  lw_listener_close(l2);
  finish(loop, l);
}

/* ---------------------------------------------------------------------------------
 * 3. Many stopped readers with input arriving; one reader must not starve.
 * --------------------------------------------------------------------------------- */
#ifndef _WIN32
#define R3_N 600
static struct {
  lw_conn *c[R3_N + 1];
  int nacc, got5;
} r3;
static void r3_read(lw_conn *c, long n, const char *buf) {
  (void)buf;
  if (c == r3.c[R3_N] && n > 0)
    r3.got5 += (int)n;
}
static void r3_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  r3.c[r3.nacc++] = c;
  lw_conn_read_start(c, r3_read);
}
static void r3_stop_all(lw_timer *t) {
  (void)t;
  for (int i = 0; i < R3_N; i++)
    lw_conn_read_stop(r3.c[i]);
}
static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void test_stopped_readers_no_starve(void **state) {
  (void)state;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2 * R3_N + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < 2 * R3_N + 64) {
    printf("skip: needs %d fds, RLIMIT_NOFILE is %lu\n", 2 * R3_N + 64,
           (unsigned long)rl.rlim_cur);
    skip();
  }
  memset(&r3, 0, sizeof(r3));
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 1024, NULL, r3_accept, &l), 0);
  static int peers[R3_N + 1];
  for (int i = 0; i <= R3_N; i++) {
    peers[i] = raw_connect(lw_listener_port(l), 0);
    if (i % 64 == 63)
      lw_loop_run(loop, LW_RUN_NOWAIT);
  }
  lwt_run_until(loop, NULL, &r3.nacc, R3_N + 1, 10000);
  run_for(loop, 20); /* every connection has a recv in flight */
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, r3_stop_all, 1, 0);
  run_for(loop, 20);
  char hundred[100];
  memset(hundred, 'x', sizeof(hundred));
  for (int i = 0; i < R3_N; i++)
    assert_int_equal(send(peers[i], hundred, sizeof(hundred), 0), 100);
  run_for(loop, 100);
  /* The unrelated reader sends 5 bytes: they arrive, without the loop spinning. */
  double cpu0 = cpu_ms();
  uint64_t t0 = lwt_now_ms();
  assert_int_equal(send(peers[R3_N], "hello", 5, 0), 5);
  lwt_run_until(loop, NULL, &r3.got5, 5, 3000);
  run_for(loop, 500);
  double used = cpu_ms() - cpu0, wall = (double)(lwt_now_ms() - t0);
  printf("reader got its 5 bytes; CPU %.0f ms over %.0f ms while 600 readers are stopped\n",
         used, wall);
  assert_int_equal(r3.got5, 5);
  assert_true(used < 0.5 * wall);
  lw_timer_free(t);
  for (int i = 0; i <= R3_N; i++)
    lw_abort(r3.c[i]);
  for (int i = 0; i <= R3_N; i++)
    close(peers[i]);
  finish(loop, l);
}

#else
static void test_stopped_readers_no_starve(void **state) {
  (void)state;
  /* 1200 loopback sockets and a CPU measure (getrusage): the provided-buffer ring it
   * guards is io_uring's; IOCP gives each socket its own buffer. */
  print_message(
      "SKIP on Windows: io_uring's shared buffer ring; IOCP buffers are per socket\n");
  skip();
}
#endif

/* ---------------------------------------------------------------------------------
 * 4-6: one accepted connection whose reading is stopped from a timer while its receive
 * is pending (on a completion backend); then the peer acts.
 * --------------------------------------------------------------------------------- */
static struct {
  lw_conn *a;
  int eofs, closes, got, start_rc;
  lw_close_info info;
} hs;
static void hs_read(lw_conn *c, long n, const char *buf) {
  (void)buf;
  if (n > 0)
    hs.got += (int)n;
  if (n == LW_EOF) {
    hs.eofs++;
    assert_int_equal(lw_conn_write(c, "response!", 9, NULL, NULL), 0);
  }
}
static void hs_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  hs.closes++;
  hs.info = *in;
}
static void hs_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  hs.a = c;
  lw_conn_on_close(c, hs_close);
  lw_conn_read_start(c, hs_read);
}
static void hs_stop(lw_timer *t) {
  (void)t;
  lw_conn_read_stop(hs.a);
}
static void hs_start(lw_timer *t) {
  (void)t;
  hs.start_rc = lw_conn_read_start(hs.a, hs_read);
}

/* The connection accepted and reading (a receive pending), then stopped from a timer
 * (*t, left for the caller to reuse and free). */
static void hs_setup(const lw_conn_options *o, lw_loop **loop, lw_listener **l, int *peer,
                     lw_timer **t) {
  memset(&hs, 0, sizeof(hs));
  assert_int_equal(lw_loop_new(loop, NULL), 0);
  lwt_check_backend(*loop);
  assert_int_equal(lw_listener_new(*loop, "127.0.0.1", 0, 4, o, hs_accept, l), 0);
  *peer = raw_connect(lw_listener_port(*l), 0);
  while (!hs.a)
    lw_loop_run(*loop, LW_RUN_ONCE);
  run_for(*loop, 10);
  lw_timer_new(*loop, t);
  lw_timer_start(*t, hs_stop, 1, 0);
  run_for(*loop, 10);
}

/* The peer reads n bytes into buf while the loop runs (2 s at most); returns the count. */
static size_t hs_peer_read(lw_loop *loop, int peer, char *buf, size_t n) {
  size_t got = 0;
  uint64_t end = lwt_now_ms() + 2000;
  while (got < n && lwt_now_ms() < end) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    ssize_t r = recv(peer, buf + got, n - got, MSG_DONTWAIT);
    if (r > 0)
      got += (size_t)r;
    else
      usleep(1000);
  }
  return got;
}

/* 4. The peer's FIN while reading is stopped. */
static void test_eof_held_while_stopped(void **state) {
  (void)state;
  for (int round = 0; round < 5; round++) {
    lw_loop *loop;
    lw_listener *l;
    lw_timer *t;
    int peer;
    hs_setup(NULL, &loop, &l, &peer, &t);
    shutdown(peer, SHUT_WR); /* FIN while reading is stopped */
    run_for(loop, 50);
    assert_int_equal(hs.closes, 0); /* nothing ends before the application saw EOF */
    assert_int_equal(hs.eofs, 0);
    lw_timer_start(t, hs_start, 1, 0);
    run_for(loop, 20);
    assert_int_equal(hs.start_rc, 0);
    assert_int_equal(hs.eofs, 1);
    char buf[16];
    assert_int_equal(hs_peer_read(loop, peer, buf, 9), 9);
    assert_memory_equal(buf, "response!", 9);
    lwt_run_until(loop, NULL, &hs.closes, 1, 3000);
    assert_int_equal(hs.info.reason, LW_REASON_PEER_CLOSED_FIRST);
    assert_int_equal(hs.info.rst, 0);
    int err;
    assert_int_equal(raw_drain(peer, 500, &err, NULL, 0), 0);
    assert_int_equal(err, 0);
    lw_timer_free(t);
    close(peer);
    finish(loop, l);
  }
}

/* 5. Input that arrived while reading was stopped is unread input. */
enum { R5_ABORT, R5_NAIVE, R5_FIRST_BYTE };

static void r5_case(int mode) {
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  if (mode == R5_FIRST_BYTE)
    o.first_byte_timeout_ms = 200;
  lw_loop *loop;
  lw_listener *l;
  lw_timer *t;
  int peer;
  hs_setup(&o, &loop, &l, &peer, &t);
  char hundred[100];
  memset(hundred, 'y', sizeof(hundred));
  assert_int_equal(send(peer, hundred, sizeof(hundred), 0), 100);
  run_for(loop, 50);
  int err = 0;
  if (mode == R5_ABORT) {
    assert_int_equal(lw_abort(hs.a), 0);
    lwt_run_until(loop, NULL, &hs.closes, 1, 2000);
    assert_int_equal(hs.info.reason, LW_REASON_ABORT);
    assert_int_equal(hs.info.unread_discarded, 100);
  } else if (mode == R5_NAIVE) {
    assert_int_equal(lw_close_naive(hs.a), 0);
    lwt_run_until(loop, NULL, &hs.closes, 1, 2000);
    assert_int_equal(hs.info.reason, LW_REASON_NAIVE);
    assert_int_equal(hs.info.unread_discarded, 100);
    assert_int_equal(hs.info.rst, 1); /* as the kernel does with unread input (B13) */
    raw_drain(peer, 1000, &err, NULL, 0);
    if (LWT_RST_RELIABLE) /* Wine's recv may read an RST as EOF (helper.h) */
      assert_int_equal(err, ECONNRESET);
  } else {
    run_for(loop, 400); /* past the first-byte timeout: the peer did speak */
    assert_int_equal(hs.closes, 0);
    assert_int_equal(lw_conn_read_start(hs.a, hs_read), 0);
    run_for(loop, 50);
    assert_int_equal(hs.got, 100);
    lw_abort(hs.a);
    lwt_run_until(loop, NULL, &hs.closes, 1, 2000);
    assert_int_equal(hs.info.reason, LW_REASON_ABORT);
  }
  lw_timer_free(t);
  close(peer);
  finish(loop, l);
}

static void test_held_input_abort(void **state) {
  (void)state;
  r5_case(R5_ABORT);
}
static void test_held_input_naive(void **state) {
  (void)state;
  r5_case(R5_NAIVE);
}
static void test_held_input_first_byte(void **state) {
  (void)state;
  r5_case(R5_FIRST_BYTE);
}

/* 5b. The peer's FIN alone, to a connection that never started reading (nothing in
 * flight on any backend: the FIN waits in the kernel): the peer spoke, so the first-byte
 * timeout does not reset it, and read_start delivers the EOF. Under Wine (no
 * SIO_TCP_INFO) the FIN in the queue went unseen and the connection was reset as
 * first-byte-timeout (torture_iocp first-byte-timeout-after-peer-fin): failed there
 * before lw__sock_peer_fin_queued's select() fallback (src/win/sockopt.c). */
static void fb_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  hs.a = c;
  lw_conn_on_close(c, hs_close); /* reading not started */
}

/* 5c. The same with the peer's RST instead (SO_LINGER{1,0} close): the timeout's check
 * hears it and the connection ends as peer-reset at once. Linux's poll reports
 * POLLRDHUP after an RST as after a FIN, and the check took it for a FIN waiting and
 * dropped the timeout: on epoll and io_uring no on_close came at all (failed before
 * first_byte_check asked SO_ERROR first). */
/* 5d. The peer's FIN, then the application's lw_shutdown (reading still not started):
 * both FINs done, the socket is in CLOSE -- a clean end, not a reset. Failed while
 * first_byte_check took any socket in CLOSE with a FIN waiting for a reset one (the
 * timeout reset it: reason first-byte-timeout; torture first-byte-timeout-after-
 * peer-fin on io_uring under load). */
enum { FB_FIN, FB_RST, FB_FIN_SHUT };
static void fin_or_rst_first_byte(int mode);

static void test_fin_only_first_byte(void **state) {
  (void)state;
  fin_or_rst_first_byte(FB_FIN);
}

static void test_rst_only_first_byte(void **state) {
  (void)state;
  fin_or_rst_first_byte(FB_RST);
}

static void test_fin_then_shutdown_first_byte(void **state) {
  (void)state;
  fin_or_rst_first_byte(FB_FIN_SHUT);
}

static void fb_read_eof(lw_conn *c, long n, const char *buf) {
  (void)c;
  (void)buf;
  if (n == LW_EOF)
    hs.eofs++;
}

static void fin_or_rst_first_byte(int mode) {
  int rst = mode == FB_RST;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  o.first_byte_timeout_ms = 200;
  memset(&hs, 0, sizeof(hs));
  lw_loop *loop;
  lw_listener *l;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, &o, fb_accept, &l), 0);
  int peer = raw_connect(lw_listener_port(l), 0);
  uint64_t end = lwt_now_ms() + 2000;
  while (!hs.a && lwt_now_ms() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  assert_non_null(hs.a);
  if (rst) {
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    assert_int_equal(close(peer), 0); /* the RST, and nothing else */
    lwt_run_until(loop, NULL, &hs.closes, 1, 1000);
    if (hs.closes != 1)
      fail_msg("the peer reset, first_byte_timeout_ms=200: no on_close after 1 s");
    assert_int_equal(hs.info.reason, LW_REASON_PEER_RESET);
    assert_int_equal(hs.info.initiator, LW_INITIATOR_PEER);
    finish(loop, l);
    return;
  }
  assert_int_equal(shutdown(peer, SHUT_WR), 0); /* the FIN, and nothing else */
  if (mode == FB_FIN_SHUT) {
    run_for(loop, 50);
    assert_int_equal(lw_shutdown(hs.a), 0); /* our FIN: LAST_ACK, then CLOSE */
  }
  run_for(loop, 500); /* well past the first-byte timeout */
  if (hs.closes)
    fail_msg("closed as %s while the peer's FIN waited unread", lw_reason_name(hs.info.reason));
  if (mode == FB_FIN_SHUT) {
    assert_int_equal(lw_conn_read_start(hs.a, fb_read_eof), 0);
    lwt_run_until(loop, NULL, &hs.closes, 1, 3000);
    assert_int_equal(hs.eofs, 1);
    assert_int_not_equal(hs.info.reason, LW_REASON_FIRST_BYTE_TIMEOUT);
    assert_int_equal(hs.info.rst, 0);
    close(peer);
    finish(loop, l);
    return;
  }
  assert_int_equal(lw_conn_read_start(hs.a, hs_read), 0);
  run_for(loop, 50);
  assert_int_equal(hs.eofs, 1); /* hs_read answers "response!" */
  char buf[16];
  assert_int_equal(hs_peer_read(loop, peer, buf, 9), 9);
  assert_memory_equal(buf, "response!", 9);
  /* (No half-close allowed: the EOF began the graceful close. hs.a may be gone already:
   * no call on it here.) */
  lwt_run_until(loop, NULL, &hs.closes, 1, 3000);
  assert_int_equal(hs.closes, 1);
  assert_int_equal(hs.info.reason, LW_REASON_PEER_CLOSED_FIRST);
  assert_int_equal(hs.info.rst, 0);
  close(peer);
  finish(loop, l);
}

/* 5e. A listener that accepts and resets before the loop saw the connect complete:
 * the connect's SO_ERROR is ECONNRESET, and the connection ends as the peer's reset, not
 * as a failed connect (reason ERROR before: torture reason-error-without-cause). */
static int cr_status; /* what the connect callback was told */
static void cr_connect(lw_conn *c, int status) {
  cr_status = status;
  if (status == 0) /* connected as far as the loop saw: reading hears the reset */
    assert_int_equal(lw_conn_read_start(c, fb_read_eof), 0);
}

static void test_connect_then_reset(void **state) {
  (void)state;
  memset(&hs, 0, sizeof(hs));
  cr_status = 0;
  int port;
  int lfd = raw_listen(&port);
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", port, NULL, cr_connect, &c), 0);
  lw_conn_on_close(c, hs_close);
  int s = accept(lfd, NULL, NULL); /* the handshake is done in the kernel */
  assert_true(s >= 0);
  struct linger lg = {1, 0};
  assert_int_equal(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  assert_int_equal(close(s), 0); /* the RST, before the loop ran once */
  lwt_run_until(loop, NULL, &hs.closes, 1, 2000);
  assert_int_equal(hs.closes, 1);
  /* (The connect callback may say 0 -- the loop saw the handshake first on a backend
   * that completes it by itself -- or ECONNRESET; the end is the peer's reset.) */
  assert_true(cr_status == 0 || cr_status == LW_ECONNRESET);
  /* (Wine's recv may read an RST as EOF, helper.h: the connect completed there, and
   * the reset read as the peer's FIN.) */
  int wine_eof =
      !LWT_RST_RELIABLE && cr_status == 0 && hs.info.reason == LW_REASON_PEER_CLOSED_FIRST;
  if (hs.info.reason != LW_REASON_PEER_RESET && !wine_eof)
    fail_msg("connect status %s, then reason %s (os_error %s): want peer-reset",
             lw_err_name(cr_status), lw_reason_name(hs.info.reason),
             lw_err_name(hs.info.os_error));
  assert_int_equal(hs.info.initiator, LW_INITIATOR_PEER);
  close(lfd);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
}

/* 6. Input held while reading is stopped does not hold back our writes. */
static void test_write_while_input_held(void **state) {
  (void)state;
  lw_loop *loop;
  lw_listener *l;
  lw_timer *t;
  int peer;
  hs_setup(NULL, &loop, &l, &peer, &t);
  assert_int_equal(send(peer, "request", 7, 0), 7);
  run_for(loop, 50); /* held (io_uring) or left in the kernel (epoll) */
  assert_int_equal(lw_conn_write(hs.a, "reply", 5, NULL, NULL), 0);
  char buf[8];
  assert_int_equal(hs_peer_read(loop, peer, buf, 5), 5);
  assert_memory_equal(buf, "reply", 5);
  assert_int_equal(lw_conn_read_start(hs.a, hs_read), 0);
  run_for(loop, 20);
  assert_int_equal(hs.got, 7);
  lw_abort(hs.a);
  lw_timer_free(t);
  close(peer);
  finish(loop, l);
}

/* 7. The peer's reset while reading is stopped, and the application's close before the
 * loop heard of it: the connection ends as the peer's reset, initiator the peer (the
 * torture harness's initiator rule, issue 14.5). The kernel hands the error out once;
 * on io_uring the receive left in flight by read_stop takes it as soon as its task
 * work runs -- without COOP_TASKRUN that is the return of the peer's own close() here
 * -- so the close's SO_ERROR read finds nothing and only the receive's completion,
 * reaped after the close, can say what happened (lw__conn_error_late). Failed before
 * that under LW_URING_NO_COOP=1 (reason naive/abort, initiator local). */
static struct { int peer, mode; } r7;
static void r7_reset_then_close(lw_timer *t) {
  (void)t;
  struct linger lg = {1, 0};
  assert_int_equal(setsockopt(r7.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  assert_int_equal(close(r7.peer), 0); /* RST, processed by loopback before it returns */
  r7.peer = -1;
  if (r7.mode == 2)
    assert_int_equal(lw_close(hs.a, 1000), 0);
  else
    assert_int_equal(r7.mode ? lw_abort(hs.a) : lw_close_naive(hs.a), 0);
}

static void test_reset_unheard_before_close(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    lw_loop *loop;
    lw_listener *l;
    lw_timer *t;
    hs_setup(NULL, &loop, &l, &r7.peer, &t);
    r7.mode = mode;
    lw_timer_start(t, r7_reset_then_close, 1, 0);
    lwt_run_until(loop, NULL, &hs.closes, 1, 2000);
    assert_int_equal(hs.closes, 1);
    assert_int_equal(hs.info.reason, LW_REASON_PEER_RESET);
    assert_int_equal(hs.info.initiator, LW_INITIATOR_PEER);
    assert_int_equal(hs.info.rst, 1);
    assert_int_equal(hs.info.os_error, LW_ECONNRESET);
    lw_timer_free(t);
    finish(loop, l);
  }
}

/* 7b. The same with the graceful lw_close: the peer's RST came before it, and our FIN
 * never left (shutdown() on the dead socket fails), so the connection ends as the
 * peer's reset with the peer as initiator (close_sm.c: what was SENT names it), as on
 * epoll and io_uring. Under Wine (no SIO_TCP_INFO) shut_wr_now's "peer FIN waiting?"
 * check is lw__sock_peer_fin_queued's select() fallback, which now answers 0 for a
 * reset socket (getpeername: WSAENOTCONN), so peer_fin_first stays 0, fin_sent=1 keeps
 * died_before_close from naming the peer, and the initiator is reported local. */
static void test_reset_unheard_before_graceful_close(void **state) {
  (void)state;
  lw_loop *loop;
  lw_listener *l;
  lw_timer *t;
  hs_setup(NULL, &loop, &l, &r7.peer, &t);
  r7.mode = 2;
  lw_timer_start(t, r7_reset_then_close, 1, 0);
  lwt_run_until(loop, NULL, &hs.closes, 1, 3000);
  assert_int_equal(hs.closes, 1);
  if (hs.info.reason != LW_REASON_PEER_RESET || !hs.info.rst ||
      hs.info.initiator != LW_INITIATOR_PEER)
    fail_msg("the peer reset before lw_close: reason %s rst %d initiator %s os_error %d, "
             "want peer-reset rst 1 initiator peer",
             lw_reason_name(hs.info.reason), hs.info.rst,
             hs.info.initiator == LW_INITIATOR_PEER    ? "peer"
             : hs.info.initiator == LW_INITIATOR_LOCAL ? "local"
                                                       : "none",
             hs.info.os_error);
  lw_timer_free(t);
  finish(loop, l);
}

#ifdef LW_HAVE_URING
static int env_on(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Each task-work mode of the ring is the one asked for (uring.c ur_ring_setup): COOP by
 * default, DEFER under LW_URING_DEFER, neither under LW_URING_NO_COOP, where the kernel
 * has them -- so that the runs of this file and of the torture harness under each switch
 * (ctest *_defer, *_nocoop) really exercise those paths. */
static void test_uring_setup_mode(void **state) {
  (void)state;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  if (!is_uring(loop)) {
    assert_int_equal(lw__uring_setup_flags(loop), 0);
    assert_int_equal(lw_loop_close(loop), 0);
    return;
  }
  unsigned f = lw__uring_setup_flags(loop);
  struct utsname u;
  int major = 0, minor = 0;
  assert_int_equal(uname(&u), 0);
  sscanf(u.release, "%d.%d", &major, &minor);
  int kv = major * 100 + minor;
  if (env_on("LW_URING_NO_COOP")) {
    assert_int_equal(f & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN), 0);
  } else if (env_on("LW_URING_DEFER")) {
    if (kv >= 601) {
      assert_true(f & IORING_SETUP_DEFER_TASKRUN);
      assert_true(f & IORING_SETUP_SINGLE_ISSUER);
    }
  } else {
    assert_int_equal(f & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER), 0);
    if (kv >= 519)
      assert_true(f & IORING_SETUP_COOP_TASKRUN);
  }
  assert_int_equal(lw_loop_close(loop), 0);
}
#endif

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_reuse_no_foreign_bytes),
      cmocka_unit_test(test_stash_no_nested_delivery),
      cmocka_unit_test(test_stopped_readers_no_starve),
      cmocka_unit_test(test_eof_held_while_stopped),
      cmocka_unit_test(test_held_input_abort),
      cmocka_unit_test(test_held_input_naive),
      cmocka_unit_test(test_held_input_first_byte),
      cmocka_unit_test(test_fin_only_first_byte),
      cmocka_unit_test(test_rst_only_first_byte),
      cmocka_unit_test(test_fin_then_shutdown_first_byte),
      cmocka_unit_test(test_connect_then_reset),
      cmocka_unit_test(test_write_while_input_held),
      cmocka_unit_test(test_reset_unheard_before_close),
      cmocka_unit_test(test_reset_unheard_before_graceful_close),
#ifdef LW_HAVE_URING
      cmocka_unit_test(test_uring_setup_mode),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
