/*
 * dead_after_ms derives the socket options documented in lastword.h, on accepted
 * (inherited from the listener) and connected sockets; the expert knobs override each
 * derived value. Loopback only.
 */
#include "helper.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

typedef struct st {
  lw_conn *accepted, *connected;
  int connects, closes;
} st;

static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)in;
  ((st *)lw_conn_get_data(c))->closes++;
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  st *s = lw_listener_get_data(l);
  assert_int_equal(status, 0);
  s->accepted = c;
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, on_close);
}
static void on_connect(lw_conn *c, int status) {
  assert_int_equal(status, 0);
  ((st *)lw_conn_get_data(c))->connects++;
}

static void expect(int fd, int ka, int idle, int intvl, int cnt, unsigned ut) {
  int v = -1;
  socklen_t len = sizeof(v);
  assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &len), 0);
  assert_int_equal(v != 0, ka);
  if (ka) {
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len), 0);
    assert_int_equal(v, idle);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, &len), 0);
    assert_int_equal(v, intvl);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, &len), 0);
    assert_int_equal(v, cnt);
  }
  unsigned u = 0;
  len = sizeof(u);
  assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &u, &len), 0);
  assert_int_equal(u, ut);
}

static void check(const lw_conn_options *lo, const lw_conn_options *co, int ka1, int i1, int n1,
                  int c1, unsigned u1, int ka2, int i2, int n2, int c2, unsigned u2) {
  st s = {0};
  lw_loop *loop;
  lw_listener *l;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 16, lo, on_accept, &l), 0);
  lw_listener_set_data(l, &s);
  assert_int_equal(
      lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), co, on_connect, &s.connected), 0);
  lw_conn_set_data(s.connected, &s);
  lw_conn_on_close(s.connected, on_close);
  for (int i = 0; i < 200 && (!s.accepted || !s.connects); i++)
    lw_loop_run(loop, LW_RUN_ONCE);
  assert_non_null(s.accepted);
  expect(lw_conn_fd(s.accepted), ka1, i1, n1, c1, u1);
  expect(lw_conn_fd(s.connected), ka2, i2, n2, c2, u2);
  lw_abort(s.accepted);
  lw_abort(s.connected);
  lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(s.closes, 2);
  assert_int_equal(lw_loop_close(loop), 0);
}

static void test_derived(void **state) {
  (void)state;
  lw_conn_options lo = {0}, co = {0};
  lo.dead_after_ms = 3000;  /* idle 1 s, then 2 probes 1 s apart: 1 + 1 x 2 = 3 s */
  co.dead_after_ms = 60000; /* idle 30 s, probes every 4 s, 7 of them: 30 + 28 ~ 60 s */
  check(&lo, &co, 1, 1, 1, 2, 3000, 1, 30, 4, 7, 60000);
  lo.dead_after_ms = 10000; /* 5 + 1 x 5 */
  co.dead_after_ms = 1500;  /* below the keepalive's 1 s granularity: 1 + 1 x 1 */
  check(&lo, &co, 1, 5, 1, 5, 10000, 1, 1, 1, 1, 1500);
}

static void test_expert_and_off(void **state) {
  (void)state;
  lw_conn_options lo = {0}, co = {0};
  lo.dead_after_ms = 3000;
  lo.keepalive_cnt = 9;
  lo.user_timeout_ms = 4500;
  co.keepalive_idle_ms = 2500; /* rounded up to 3 s; other knobs: the kernel's */
  check(&lo, &co, 1, 1, 1, 9, 4500, 1, 3, 75, 9, 0);
  lw_conn_options off = {0};
  check(&off, &off, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_derived),
                                     cmocka_unit_test(test_expert_and_off)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
