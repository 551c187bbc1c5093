/*
 * A late loop is never blamed on the peer.
 *
 * A callback that takes long (CPU work, a blocking call, a descheduled process on a loaded
 * machine) delays everything behind it: completions wait in the kernel, readiness waits in
 * epoll. When the loop comes back, the liveness clocks (stall_timeout_ms, idle_timeout_ms)
 * must judge what the PEER did meanwhile, which the kernel knows, not what the loop has
 * dispatched so far, which lags:
 *   stall: the response was queued and the loop froze before it (or its completion) was
 *     dispatched; the peer read everything the kernel was given. Before the fix, io_uring
 *     ended it "stalled" (bytes_sent had not moved, SIOCOUTQ was 0: no progress seen), the
 *     failure the soak showed under load (good clients cut at 128000 bytes).
 *   idle: the peer kept sending while the loop was frozen; its bytes wait in the kernel.
 *     Before the fix, both backends ended it "idle-timeout" (last_io had not moved).
 * The freeze is a usleep inside the callback: 3x the timeout.
 */
#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 300
#define FREEZE_US (3 * TIMEOUT_MS * 1000)
#define RESP (2u * 1024 * 1024)

typedef struct lag {
  lw_loop *loop;
  lw_listener *l;
  int mode; /* 0 stall, 1 idle */
  int reads, closes;
  lw_close_info info;
  char *resp;
} lag;

typedef struct peer {
  int port, mode;
  size_t received;
  int end_err;
  atomic_int done;
  pthread_t th;
} peer;

static void on_close(lw_conn *c, const lw_close_info *in) {
  lag *g = lw_conn_get_data(c);
  g->info = *in;
  g->closes++;
}

static void on_read(lw_conn *c, long nread, const char *buf) {
  (void)buf;
  lag *g = lw_conn_get_data(c);
  if (nread <= 0)
    return; /* EOF: the library finishes the close (not allow_half_close) */
  if (g->reads++ > 0)
    return;
  if (g->mode == 0) {
    /* The whole response, then the graceful close; then the loop is late. */
    assert_true(lw_conn_write(c, g->resp, RESP, NULL, NULL) >= 0);
    assert_int_equal(lw_close(c, 20000), 0);
  }
  usleep(FREEZE_US);
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  lag *g = lw_listener_get_data(l);
  assert_int_equal(status, 0);
  lw_conn_set_data(c, g);
  lw_conn_on_close(c, on_close);
  assert_int_equal(lw_conn_read_start(c, on_read), 0);
}

static void *peer_main(void *arg) {
  peer *p = arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    p->end_err = errno;
    close(fd);
    atomic_store(&p->done, 1);
    return NULL;
  }
  if (p->mode == 0) {
    (void)!send(fd, "GET\n", 4, MSG_NOSIGNAL);
  } else {
    /* A byte every 100 ms for 1.5 s: never silent for TIMEOUT_MS; then FIN. */
    for (int i = 0; i < 15; i++) {
      (void)!send(fd, "x", 1, MSG_NOSIGNAL);
      usleep(100 * 1000);
    }
    shutdown(fd, SHUT_WR);
  }
  char buf[65536];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r > 0) {
      p->received += (size_t)r;
      continue;
    }
    p->end_err = r == 0 ? 0 : errno;
    break;
  }
  close(fd);
  atomic_store(&p->done, 1);
  return NULL;
}

static void lag_case(int mode) {
  int fds = lwt_fd_count();
  lag g;
  memset(&g, 0, sizeof(g));
  g.mode = mode;
  g.resp = malloc(RESP);
  assert_non_null(g.resp);
  memset(g.resp, 'r', RESP);
  assert_int_equal(lw_loop_new(&g.loop, NULL), 0);
  lwt_check_backend(g.loop);
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  if (mode == 0) {
    o.stall_timeout_ms = TIMEOUT_MS;
  } else {
    o.idle_timeout_ms = TIMEOUT_MS;
    o.idle_timeout_abort = 1;
  }
  assert_int_equal(lw_listener_new(g.loop, "127.0.0.1", 0, 16, &o, on_accept, &g.l), 0);
  lw_listener_set_data(g.l, &g);
  peer p;
  memset(&p, 0, sizeof(p));
  p.port = lw_listener_port(g.l);
  p.mode = mode;
  assert_int_equal(pthread_create(&p.th, NULL, peer_main, &p), 0);
  lwt_run_until(g.loop, NULL, &g.closes, 1, 15000);
  lwt_run_until(g.loop, &p.done, NULL, 0, 15000);
  pthread_join(p.th, NULL);
  lw_listener_close(g.l);
  lw_loop_run(g.loop, LW_RUN_NOWAIT);
  assert_int_equal(lw_loop_close(g.loop), 0);
  print_message("%s: loop frozen %d ms in a callback, timeout %d ms: reason %s, rst %d; peer "
                "got %zu bytes, ended %s\n",
                mode ? "idle" : "stall", FREEZE_US / 1000, TIMEOUT_MS,
                lw_reason_name(g.info.reason), g.info.rst, p.received,
                p.end_err ? strerror(p.end_err) : "EOF");
  assert_int_equal(g.closes, 1);
  if (mode == 0) {
    assert_int_equal(g.info.reason, LW_REASON_GRACEFUL);
    assert_int_equal(p.received, RESP);
  } else {
    assert_int_equal(g.info.reason, LW_REASON_PEER_CLOSED_FIRST);
  }
  assert_int_equal(p.end_err, 0);
  free(g.resp);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_stall_not_blamed(void **state) {
  (void)state;
#ifdef _WIN32
  /* Windows has no cheap count of acknowledged bytes (lw__sock_progress), and a send
   * completion the late loop has not dispatched yet is invisible to the stall check:
   * a known limit there (src/win/README.md, "Liveness after a late loop"). */
  print_message("SKIP on Windows: the stall verdict after a late loop needs the kernel's "
                "acknowledged count (src/win/README.md)\n");
  skip();
#else
  lag_case(0);
#endif
}

static void test_idle_not_blamed(void **state) {
  (void)state;
  lag_case(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stall_not_blamed),
      cmocka_unit_test(test_idle_not_blamed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
