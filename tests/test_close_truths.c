/*
 * Smaller truths of the close path (issue 14, items 4, 5 and 7), each a case that
 * failed before its fix:
 *   shutdown_connecting  lw_shutdown before the handshake completes defers the FIN:
 *                        the connect succeeds and the server reads EOF (before: the
 *                        shutdown() in SYN_SENT aborted the connect, ECONNRESET).
 *   initiator_fin_rst    we send FIN (lw_close), the peer closes without reading (its
 *                        kernel answers RST): peer-reset, initiator LOCAL (before: PEER).
 *   refused              a refused connect: error ECONNREFUSED, initiator PEER (its RST),
 *                        peer_silent_ms small (before: 675300, from jiffies 0).
 *   backend_env          LW_BACKEND=bogus: a warning and the default backend (before:
 *                        every lw_loop_new failed with LW_ENOSYS); a bogus name passed by
 *                        the application is still LW_ENOSYS.
 *   hosts                the accepted host strings (lastword.h, lw_listener_new).
 *   timer_saturates      a timer started with UINT64_MAX never fires, and a huge repeat
 *                        fires once, not every turn (before: now + timeout wrapped).
 */
#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct cli {
  int connect_status;
  int connects;
  int closes;
  int eof;
  lw_close_info last;
} cli;

static void cli_close(lw_conn *c, const lw_close_info *in) {
  cli *x = lw_conn_get_data(c);
  x->closes++;
  x->last = *in;
}

static void cli_read(lw_conn *c, long n, const char *buf) {
  (void)buf;
  cli *x = lw_conn_get_data(c);
  if (n == LW_EOF)
    x->eof = 1;
}

static void cli_connected(lw_conn *c, int status) {
  cli *x = lw_conn_get_data(c);
  x->connects++;
  x->connect_status = status;
  if (status == 0)
    assert_int_equal(lw_conn_read_start(c, cli_read), 0);
}

static int raw_listen(int backlog, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(0x7f000001);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, backlog), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}

static int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return fd;
}

static void shutdown_connecting(void **st) {
  (void)st;
  int fds = lwt_fd_count();
  /* A listener whose accept queue is full drops our SYN (tcp_conn_request): the
   * connect stays in SYN_SENT until the SYN is retransmitted (~1 s). */
  int port, lfd = raw_listen(0, &port);
  int filler = raw_connect(port);
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  static cli x;
  memset(&x, 0, sizeof(x));
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", port, NULL, cli_connected, &c), 0);
  lw_conn_set_data(c, &x);
  lw_conn_on_close(c, cli_close);
  for (int i = 0; i < 5; i++)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  assert_int_equal(x.connects, 0); /* still connecting */
  assert_int_equal(lw_shutdown(c), 0);
  assert_int_equal(lw_conn_write(c, "x", 1, NULL, NULL), LW_ESHUTDOWN);
  /* Make room: the retransmitted SYN is taken. */
  int a1 = accept(lfd, NULL, NULL);
  assert_true(a1 >= 0);
  close(a1);
  close(filler);
  int srv = -1, got_eof = 0;
  uint64_t end = lwt_now_ms() + 6000;
  while (lwt_now_ms() < end && (!got_eof || x.closes == 0)) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    if (srv < 0) {
      struct pollfd p = {.fd = lfd, .events = POLLIN};
      if (poll(&p, 1, 5) == 1)
        srv = accept(lfd, NULL, NULL);
      continue;
    }
    char b[16];
    struct pollfd p = {.fd = srv, .events = POLLIN};
    if (!got_eof && poll(&p, 1, 5) == 1) {
      ssize_t n = recv(srv, b, sizeof(b), 0);
      if (n == 0) {
        got_eof = 1;
        close(srv); /* our FIN back: the client's close completes */
        srv = -2;
      }
    } else if (got_eof) {
      usleep(2000);
    }
  }
  print_message("lw_shutdown while connecting: connect_cb %s, server read EOF %d, client %s "
                "(initiator %d)\n",
                lw_err_name(x.connect_status), got_eof, lw_reason_name(x.last.reason),
                x.last.initiator);
  close(lfd);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(x.connects, 1);
  assert_int_equal(x.connect_status, 0);
  assert_true(got_eof);
  assert_int_equal(x.closes, 1);
  assert_int_equal(x.last.reason, LW_REASON_GRACEFUL);
  assert_int_equal(x.last.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(lwt_fd_count(), fds);
}

static void initiator_fin_rst(void **st) {
  (void)st;
  int fds = lwt_fd_count();
  lwt_server s = {0};
  s.bytes = 256 * 1024;
  lwt_server_start(&s, "127.0.0.1");
  lwt_peer p = {0};
  p.port = s.port;
  p.read_limit = 1; /* reads one byte, waits for our FIN, closes with the rest unread */
  p.hold_ms = 200;
  lwt_peer_start(&p);
  lwt_run_until(s.loop, NULL, &s.closes, 1, 10000);
  lwt_run_until(s.loop, &p.done, NULL, 0, 10000);
  lwt_peer_join(&p);
  lwt_server_stop(&s);
  print_message("our FIN, then the peer's RST: %s initiator %d\n",
                lw_reason_name(s.last.reason), s.last.initiator);
  assert_int_equal(s.last.reason, LW_REASON_PEER_RESET);
  assert_int_equal(s.last.rst, 1);
  assert_int_equal(s.last.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(lwt_fd_count(), fds);
}

static void refused(void **st) {
  (void)st;
  int fds = lwt_fd_count();
  int port, lfd = raw_listen(1, &port);
  close(lfd); /* nobody listens there now: RST to the SYN */
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  static cli x;
  memset(&x, 0, sizeof(x));
  lw_conn *c;
  int r = lw_conn_connect(loop, "127.0.0.1", port, NULL, cli_connected, &c);
  assert_int_equal(r, 0);
  lw_conn_set_data(c, &x);
  lw_conn_on_close(c, cli_close);
  lwt_run_until(loop, NULL, &x.closes, 1, 5000);
  assert_int_equal(lw_loop_close(loop), 0);
  print_message("refused connect: connect_cb %s, %s, initiator %d, peer_silent_ms %llu\n",
                lw_err_name(x.connect_status), lw_reason_name(x.last.reason), x.last.initiator,
                (unsigned long long)x.last.peer_silent_ms);
  assert_int_equal(x.connect_status, LW_ECONNREFUSED);
  assert_int_equal(x.last.reason, LW_REASON_ERROR);
  assert_int_equal(x.last.os_error, LW_ECONNREFUSED);
  assert_int_equal(x.last.initiator, LW_INITIATOR_PEER);
  assert_true(x.last.peer_silent_ms < 1000);
  assert_int_equal(lwt_fd_count(), fds);
}

static char *saved_backend; /* LW_BACKEND as the suite set it, restored by the teardown */

static int backend_restore(void **st) {
  (void)st;
  if (saved_backend) {
    setenv("LW_BACKEND", saved_backend, 1);
    free(saved_backend);
    saved_backend = NULL;
  } else {
    unsetenv("LW_BACKEND");
  }
  return 0;
}

static void backend_env(void **st) {
  (void)st;
  const char *cur = getenv("LW_BACKEND");
  saved_backend = cur ? strdup(cur) : NULL;
  setenv("LW_BACKEND", "bogus", 1);
  lw_loop *loop = NULL;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
#ifdef _WIN32
  assert_string_equal(lw_loop_backend(loop), "iocp"); /* the default, with a warning */
#else
  assert_string_equal(lw_loop_backend(loop), "epoll");
#endif
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lw_loop_new(&loop, NULL), 0); /* again: warned once, works again */
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lw_loop_new(&loop, "bogus"), LW_ENOSYS); /* the application's own name */
  assert_null(loop);
}

static void no_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  (void)c;
  (void)status;
}

static void hosts(void **st) {
  (void)st;
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  static const struct {
    const char *host;
    int want;
  } cases[] = {{"127.0.0.1", 0},         {"::1", 0},
               {"localhost", 0},         {"LOCALHOST", 0},
               {"LocalHost.", 0},        {"127.1", LW_EINVAL},
               {"010.0.0.1", LW_EINVAL}, {"1.2.3.256", LW_EINVAL},
               {"", LW_EINVAL},          {"[::1]", LW_EINVAL},
               {"::1::2", LW_EINVAL},    {"example.invalid", LW_ENOENT},
               {"localhostx", LW_ENOENT}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    lw_listener *l = NULL;
    int r = lw_listener_new(loop, cases[i].host, 0, 4, NULL, no_accept, &l);
    if (r != cases[i].want)
      fail_msg("host \"%s\": %s, expected %s", cases[i].host, lw_err_name(r),
               lw_err_name(cases[i].want));
    if (r == 0)
      lw_listener_close(l);
    lw_conn *c = NULL;
    if (cases[i].want != 0) /* lw_conn_connect parses the same way */
      assert_int_equal(lw_conn_connect(loop, cases[i].host, 9, NULL, NULL, &c), cases[i].want);
  }
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

static int fired_never, fired_huge;
static void never_cb(lw_timer *t) {
  (void)t;
  fired_never++;
}
static void huge_cb(lw_timer *t) {
  (void)t;
  fired_huge++;
}

static void timer_saturates(void **st) {
  (void)st;
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_timer *never, *huge;
  assert_int_equal(lw_timer_new(loop, &never), 0);
  assert_int_equal(lw_timer_new(loop, &huge), 0);
  assert_int_equal(lw_timer_start(never, never_cb, UINT64_MAX, 0), 0);
  assert_int_equal(lw_timer_start(huge, huge_cb, 0, UINT64_MAX - 1), 0);
  for (int i = 0; i < 20; i++)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  assert_int_equal(fired_never, 0);
  assert_int_equal(fired_huge, 1);
  lw_timer_free(never);
  lw_timer_free(huge);
  assert_int_equal(lw_loop_close(loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(shutdown_connecting),
                                     cmocka_unit_test(initiator_fin_rst),
                                     cmocka_unit_test(refused),
                                     cmocka_unit_test_teardown(backend_env, backend_restore),
                                     cmocka_unit_test(hosts),
                                     cmocka_unit_test(timer_saturates)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
