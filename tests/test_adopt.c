/* lw_listener_adopt: a socket bound and listening elsewhere (systemd, a previous
 * process) is served by the loop; anything else is refused with LW_EINVAL. */
#include "helper.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, NULL, &c), 0);
  lw_conn_on_close(c, on_close);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(accepts, 1);
  assert_int_equal(closes, 2); /* both ends, once each */
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds); /* the adopted fd was closed with the listener */
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_adopt)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
