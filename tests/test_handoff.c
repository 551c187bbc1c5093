/* lw_listen_fds (systemd's protocol and a predecessor's) and the hand-off of a
 * listening socket to a successor process: connections queued at the switch are
 * served by the successor. */
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

/* Reads the server's byte and its FIN: the connection was served. */
static void raw_served(int fd) {
  char b[8];
  struct pollfd p = {fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, 5000), 1);
  assert_int_equal(read(fd, b, sizeof(b)), 1);
  assert_int_equal(read(fd, b, sizeof(b)), 0);
  close(fd);
}

static void test_listen_fds_env(void **state) {
  (void)state;
  int fds[4];
  const char *names[4];
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  assert_int_equal(lw_listen_fds(fds, names, 4), 0);
  /* systemd's variables for another process: not ours, and unset. */
  setenv("LISTEN_PID", "1", 1);
  setenv("LISTEN_FDS", "2", 1);
  assert_int_equal(lw_listen_fds(fds, names, 4), 0);
  assert_null(getenv("LISTEN_FDS"));
  setenv("LISTEN_PID", "12x", 1);
  setenv("LISTEN_FDS", "1", 1);
  assert_int_equal(lw_listen_fds(fds, names, 4), LW_EINVAL);
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  /* systemd's for us, at fd 3 (only where 3 is free here). */
  if (fcntl(3, F_GETFD) < 0) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s != 3) {
      assert_int_equal(dup2(s, 3), 3);
      close(s);
    }
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "web", 1);
    assert_int_equal(lw_listen_fds(fds, names, 4), 1);
    assert_int_equal(fds[0], 3);
    assert_string_equal(names[0], "web");
    assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDNAMES"));
    close(3);
  } else {
    print_message("fd 3 in use: the LISTEN_FDS=1 case is not run here\n");
  }
  setenv("LW_LISTEN_FDS", "7,9", 1);
  int s1 = socket(AF_INET, SOCK_STREAM, 0);
  setenv("LW_LISTEN_FDS", "", 1);
  char v[32];
  snprintf(v, sizeof(v), "%d", s1);
  setenv("LW_LISTEN_FDS", v, 1);
  assert_int_equal(lw_listen_fds(fds, NULL, 4), 1);
  assert_int_equal(fds[0], s1);
  assert_null(getenv("LW_LISTEN_FDS"));
  close(s1);
  setenv("LW_LISTEN_FDS", "5,", 1);
  assert_int_equal(lw_listen_fds(fds, NULL, 4), LW_EINVAL);
  unsetenv("LW_LISTEN_FDS");
}

/* A forked "successor" takes the socket over through the environment; the
 * predecessor closes its listener only after the ready byte: connections queued at
 * that moment are served by the successor. */
static void test_handoff(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  accepts = closes = pause_in_cb = 0;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, on_accept, &l), 0);
  int port = lw_listener_port(l);
  assert_int_equal(lw_listener_pause(l), 0); /* so that the queue is the successor's */
  int q[3];
  for (int i = 0; i < 3; i++)
    q[i] = raw_connect(port);
  int ready = -1;
  assert_int_equal(lw_listeners_handoff(&l, 1, &ready), 0);
  assert_false(fcntl(lw_listener_fd(l), F_GETFD) & FD_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) {
    int got[2];
    int n = lw_listen_fds(got, NULL, 2);
    lw_loop *cl;
    lw_listener *cll;
    accepts = 0;
    if (n != 1 || lw_loop_new(&cl, NULL) < 0 ||
        lw_listener_adopt(cl, got[0], NULL, on_accept, &cll) < 0)
      _exit(2);
    if (lw_handoff_ready() != 1)
      _exit(3);
    uint64_t end = lwt_now_ms() + 5000;
    while (accepts < 4 && lwt_now_ms() < end)
      lw_loop_run(cl, LW_RUN_ONCE);
    lw_listener_close(cll);
    lw_loop_run(cl, LW_RUN_DEFAULT);
    _exit(accepts == 4 ? 0 : 4);
  }
  lw_listeners_handoff_end(&l, 1);
  assert_true(fcntl(lw_listener_fd(l), F_GETFD) & FD_CLOEXEC);
  assert_null(getenv("LW_LISTEN_FDS"));
  struct pollfd p = {ready, POLLIN, 0};
  assert_int_equal(poll(&p, 1, 5000), 1);
  char b = 0;
  if (read(ready, &b, 1) != 1) {
    int st = 0;
    waitpid(pid, &st, 0);
    fail_msg("no ready byte: successor exit status %d", WEXITSTATUS(st));
  }
  assert_int_equal(b, 'R');
  close(ready);
  /* The successor accepts: the predecessor closes its descriptor; the queue lives on. */
  lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  int late = raw_connect(port);
  for (int i = 0; i < 3; i++)
    raw_served(q[i]);
  raw_served(late);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(accepts, 0);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_listen_fds_env),
                                     cmocka_unit_test(test_handoff)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
