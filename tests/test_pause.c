/* lw_listener_pause / resume: no accept while paused, the kernel's queue keeps the
 * connections and they are served on resume. */
#include "helper.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int accepts, closes, pause_in_cb;
static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  closes++;
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  accepts++;
  lw_conn_on_close(c, on_close);
  lw_conn_write_copy(c, "x", 1);
  lw_close(c, 2000);
  if (pause_in_cb)
    assert_int_equal(lw_listener_pause(l), 0);
}

static int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return fd;
}

/* Reads the server's byte and its FIN: the connection was served. The loop runs
 * meanwhile: on IOCP the FIN follows the WSASend's completion, which the loop reaps. */
static void raw_served(lw_loop *loop, int fd) {
  char b[8];
  int got = 0;
  uint64_t end = lwt_now_ms() + 5000;
  for (;;) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2) == 1) {
      ssize_t r = recv(fd, b, sizeof(b), 0);
      if (r == 0)
        break;
      assert_int_equal(r, 1);
      got += (int)r;
    }
    assert_true(lwt_now_ms() < end);
  }
  assert_int_equal(got, 1);
  close(fd);
}

/* The kernel's accept queue holds n. Windows cannot tell a listen socket's queue
 * length (lastword.h: LW_ENOSYS there): that the connections wait is shown there by
 * no accept while paused and each one served after the resume. */
static void assert_queued(const lw_listener *l, int n) {
#ifdef _WIN32
  (void)n;
  assert_int_equal(lw_listener_queued(l), LW_ENOSYS);
#else
  assert_int_equal(lw_listener_queued(l), n);
#endif
}

static void run_for(lw_loop *loop, int ms) {
  uint64_t end = lwt_now_ms() + (uint64_t)ms;
  while (lwt_now_ms() < end) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    usleep(2000);
  }
}

static void run_until_accepts(lw_loop *loop, int want) {
  uint64_t end = lwt_now_ms() + 5000;
  while (accepts < want && lwt_now_ms() < end) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(accepts, want);
}

static void test_pause_keeps_queue(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  accepts = closes = pause_in_cb = 0;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, on_accept, &l), 0);
  assert_true(lw_listener_fd(l) >= 0);
  run_for(loop, 20); /* io_uring: the multishot accept is issued */
  assert_int_equal(lw_listener_pause(l), 0);
  assert_int_equal(lw_listener_pause(l), 0); /* idempotent */
  assert_int_equal(lw_listener_paused(l), 1);
  int cl[5];
  for (int i = 0; i < 5; i++)
    cl[i] = raw_connect(lw_listener_port(l)); /* the kernel completes the handshake */
  run_for(loop, 200);
  assert_int_equal(accepts, 0);
  assert_queued(l, 5);
  assert_int_equal(lw_listener_resume(l), 0);
  run_until_accepts(loop, 5);
  assert_queued(l, 0);
  for (int i = 0; i < 5; i++)
    raw_served(loop, cl[i]);
  /* Paused from inside accept_cb: one more is accepted, the next two wait. */
  pause_in_cb = 1;
  int a = raw_connect(lw_listener_port(l));
  run_until_accepts(loop, 6);
  raw_served(loop, a);
  int b = raw_connect(lw_listener_port(l)), c = raw_connect(lw_listener_port(l));
  run_for(loop, 200);
  assert_int_equal(accepts, 6);
  assert_queued(l, 2);
  /* Pause + resume in a row (io_uring: the cancel in flight must not leave it dead). */
  pause_in_cb = 0;
  assert_int_equal(lw_listener_resume(l), 0);
  assert_int_equal(lw_listener_pause(l), 0);
  assert_int_equal(lw_listener_resume(l), 0);
  run_until_accepts(loop, 8);
  raw_served(loop, b);
  raw_served(loop, c);
  lw_listener_close(l);
  assert_int_equal(lw_listener_pause(l), LW_EINVAL);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(closes, 8);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_pause_keeps_queue)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
