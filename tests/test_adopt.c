/* lw_listener_adopt: a socket bound and listening elsewhere (systemd, a previous
 * process) is served by the loop; anything else is refused with LW_EINVAL. And one
 * socket adopted by two loops (respond --threads): served by both on Linux, refused on
 * Windows (test_adopt_shared says why). */
#include "helper.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static int accepts, closes;
static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  closes++;
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  accepts++;
  lw_conn_on_close(c, on_close);
  assert_int_equal(lw_abort(c), 0);
  lw_listener_close(l);
}

/* The client reads, so the server's RST ends it on every backend (IOCP learns of an RST
 * on a connection that nobody reads only with liveness options: src/win/README.md). */
static void c_read(lw_conn *c, long n, const char *buf) { (void)c, (void)n, (void)buf; }
static void c_connected(lw_conn *c, int status) {
  if (status == 0)
    lw_conn_read_start(c, c_read);
}

static void test_adopt(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  int plain = socket(AF_INET, SOCK_STREAM, 0); /* not listening */
  assert_int_equal(lw_listener_adopt(loop, plain, NULL, on_accept, &l), LW_EINVAL);
  close(plain);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t len = sizeof(a);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 4), 0);
  getsockname(fd, (struct sockaddr *)&a, &len);
  assert_int_equal(lw_listener_adopt(loop, fd, NULL, on_accept, &l), 0);
  assert_int_equal(lw_listener_port(l), ntohs(a.sin_port));
  lw_conn *c;
  assert_int_equal(
      lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, c_connected, &c), 0);
  lw_conn_on_close(c, on_close);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(accepts, 1);
  assert_int_equal(closes, 2); /* both ends, once each */
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds); /* the adopted fd was closed with the listener */
}

/* ---- one listening socket, two loops ---- */
static int shared_accepts[2];
static void sh_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  shared_accepts[*(int *)lw_listener_get_data(l)]++;
  lw_conn_write_copy(c, "x", 1);
  lw_close(c, 2000);
}

/* A second descriptor of the same socket, as respond --threads makes for each loop. */
static int dup_socket(int fd) {
#ifdef _WIN32
  WSAPROTOCOL_INFOW pi;
  if (WSADuplicateSocketW((SOCKET)fd, GetCurrentProcessId(), &pi) != 0)
    return -1;
  SOCKET s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &pi, 0,
                        WSA_FLAG_OVERLAPPED);
  return s == INVALID_SOCKET ? -1 : (int)s;
#else
  return fcntl(fd, F_DUPFD_CLOEXEC, 3);
#endif
}

/* Linux: a dup is one socket, one accept queue; each loop adopts its descriptor and
 * each connection is accepted by exactly one of them. Windows: a socket is associated
 * with ONE I/O completion port for its whole life (CreateIoCompletionPort), and a
 * duplicate (WSADuplicateSocket) is the same socket, so the second loop's adopt fails
 * -- which is why respond and httpd refuse --threads N > 1 there -- and the first loop
 * goes on serving everything. */
static void test_adopt_shared(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lw_loop *loops[2];
  lw_listener *ls[2] = {NULL, NULL};
  int idx[2] = {0, 1};
  for (int i = 0; i < 2; i++)
    assert_int_equal(lw_loop_new(&loops[i], NULL), 0);
  assert_int_equal(lw_listener_new(loops[0], "127.0.0.1", 0, 16, NULL, sh_accept, &ls[0]), 0);
  lw_listener_set_data(ls[0], &idx[0]);
  int port = lw_listener_port(ls[0]);
  int d = dup_socket(lw_listener_fd(ls[0]));
  assert_true(d >= 0);
  int acc = 0;
  socklen_t alen = sizeof(acc);
  assert_int_equal(getsockopt(d, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen), 0);
  assert_int_equal(acc, 1); /* a listening socket: any refusal below is not about that */
  int r = lw_listener_adopt(loops[1], d, NULL, sh_accept, &ls[1]);
#ifdef _WIN32
  /* The OS fact itself: the duplicate cannot join another completion port. */
  HANDLE other = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
  assert_non_null(other);
  assert_null(CreateIoCompletionPort((HANDLE)(uintptr_t)d, other, 0, 0));
  assert_int_equal(GetLastError(), ERROR_INVALID_PARAMETER);
  CloseHandle(other);
  print_message("adopt of a duplicate of a socket another loop serves: %s\n", lw_strerror(r));
  assert_int_equal(r, LW_EINVAL); /* ERROR_INVALID_PARAMETER from CreateIoCompletionPort */
  close(d);                       /* refused: still the caller's */
#else
  assert_int_equal(r, 0);
  lw_listener_set_data(ls[1], &idx[1]);
#endif
  /* 8 clients, each served once (a byte, then the FIN) by whichever loop accepted it. */
  enum { N = 8 };
  int cl[N], got[N], eof[N];
  for (int i = 0; i < N; i++) {
    cl[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(cl[i], (struct sockaddr *)&a, sizeof(a)), 0);
    got[i] = eof[i] = 0;
  }
  uint64_t end = lwt_now_ms() + 10000;
  for (int left = N; left > 0;) {
    assert_true(lwt_now_ms() < end);
    for (int i = 0; i < 2; i++)
      lw_loop_run(loops[i], LW_RUN_NOWAIT);
    for (int i = 0; i < N; i++) {
      struct pollfd p = {cl[i], POLLIN, 0};
      if (eof[i] || poll(&p, 1, 0) != 1)
        continue;
      char b[8];
      ssize_t n = recv(cl[i], b, sizeof(b), 0);
      assert_true(n >= 0);
      if (n == 0) {
        eof[i] = 1;
        left--;
      }
      got[i] += (int)n;
    }
    usleep(1000);
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(got[i], 1);
    close(cl[i]);
  }
  print_message("accepts: loop 0 %d, loop 1 %d\n", shared_accepts[0], shared_accepts[1]);
  assert_int_equal(shared_accepts[0] + shared_accepts[1], N);
#ifdef _WIN32
  assert_int_equal(shared_accepts[0], N);
#endif
  for (int i = 0; i < 2; i++) {
    if (ls[i])
      lw_listener_close(ls[i]);
    assert_int_equal(lw_loop_run(loops[i], LW_RUN_DEFAULT), 0);
    assert_int_equal(lw_loop_close(loops[i]), 0);
  }
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_adopt),
                                     cmocka_unit_test(test_adopt_shared)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
