/* accept/connect/echo on 127.0.0.1 and ::1, both ends on the library, exact counts. */
#include "helper.h"

#include <string.h>

typedef struct echo_ctx {
  int accepts, connects, srv_bytes, cli_bytes, srv_closes, cli_closes, cli_eof;
  lw_close_info srv_info, cli_info;
  lw_listener *l;
} echo_ctx;

static echo_ctx ctx;

static void srv_read(lw_conn *c, long n, const char *buf) {
  if (n == LW_EOF)
    return; /* the library completes the close (no CLOSE_WAIT) */
  ctx.srv_bytes += (int)n;
  assert_true(lw_conn_write_copy(c, buf, (size_t)n) >= 0);
}

static void srv_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  ctx.srv_closes++;
  ctx.srv_info = *in;
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  ctx.accepts++;
  lw_conn_on_close(c, srv_close);
  assert_int_equal(lw_conn_read_start(c, srv_read), 0);
  lw_listener_close(l); /* one connection is all this test wants */
}

static void cli_read(lw_conn *c, long n, const char *buf) {
  (void)buf;
  if (n == LW_EOF) {
    ctx.cli_eof++;
    return;
  }
  ctx.cli_bytes += (int)n;
  if (ctx.cli_bytes == 5)
    assert_int_equal(lw_close(c, 2000), 0);
}

static void cli_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  ctx.cli_closes++;
  ctx.cli_info = *in;
}

static void on_connect(lw_conn *c, int status) {
  assert_int_equal(status, 0);
  ctx.connects++;
  assert_int_equal(lw_conn_read_start(c, cli_read), 0);
  assert_int_equal(lw_conn_write(c, "hello", 5, NULL, NULL), 0);
}

static void run_echo(const char *host) {
  memset(&ctx, 0, sizeof(ctx));
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  assert_string_equal(lw_loop_backend(loop), lwt_backend());
  int r = lw_listener_new(loop, host, 0, 16, NULL, on_accept, &ctx.l);
  if (r == LW_EADDRNOTAVAIL || r == LW_EAFNOSUPPORT) {
    lw_loop_close(loop);
    skip(); /* no IPv6 on this machine: cmocka reports the skip */
  }
  assert_int_equal(r, 0);
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, host, lw_listener_port(ctx.l), NULL, on_connect, &c),
                   0);
  lw_conn_on_close(c, cli_close);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(ctx.accepts, 1);
  assert_int_equal(ctx.connects, 1);
  assert_int_equal(ctx.srv_bytes, 5);
  assert_int_equal(ctx.cli_bytes, 5);
  assert_int_equal(ctx.cli_eof, 0); /* the client closed first: its reads had stopped */
  assert_int_equal(ctx.srv_closes, 1);
  assert_int_equal(ctx.cli_closes, 1);
  assert_int_equal(ctx.cli_info.reason, LW_REASON_GRACEFUL);
  assert_int_equal(ctx.cli_info.time_wait, 1);
  assert_int_equal(ctx.cli_info.bytes_acked, 5);
  assert_int_equal(ctx.srv_info.reason, LW_REASON_PEER_CLOSED_FIRST);
  assert_int_equal(ctx.srv_info.initiator, LW_INITIATOR_PEER);
  assert_int_equal(ctx.srv_info.time_wait, 0);
  assert_int_equal(ctx.srv_info.bytes_acked, 5);
  assert_int_equal(ctx.srv_info.bytes_received, 5);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_echo_v4(void **state) {
  (void)state;
  run_echo("127.0.0.1");
}
static void test_echo_v6(void **state) {
  (void)state;
  run_echo("::1");
}

static void refused_connect(lw_conn *c, int status) {
  (void)c;
  assert_int_equal(status, LW_ECONNREFUSED);
  ctx.connects++;
}

/* A failed connect still gets exactly one on_close, reason error. */
static void test_connect_refused(void **state) {
  (void)state;
  memset(&ctx, 0, sizeof(ctx));
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 1, NULL, on_accept, &l), 0);
  int port = lw_listener_port(l);
  lw_listener_close(l); /* now nobody listens there */
  lw_loop_run(loop, LW_RUN_NOWAIT);
  lw_conn *c;
  assert_int_equal(lw_conn_connect(loop, "127.0.0.1", port, NULL, refused_connect, &c), 0);
  lw_conn_on_close(c, cli_close);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(ctx.connects, 1);
  assert_int_equal(ctx.cli_closes, 1);
  assert_int_equal(ctx.cli_info.reason, LW_REASON_ERROR);
  assert_int_equal(ctx.cli_info.os_error, LW_ECONNREFUSED);
  assert_int_equal(lw_loop_close(loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_echo_v4),
                                     cmocka_unit_test(test_echo_v6),
                                     cmocka_unit_test(test_connect_refused)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
