/*
 * Operations in flight when a connection ends (io_uring's hard cases, run on every
 * backend): close while a recv and a send are pending; a new socket reusing the fd
 * number between a cancel and its completion; a listener closed with its accept
 * pending. ASan watches for the kernel or us touching freed memory.
 */
#include "helper.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
  int order[8], norder; /* 1 = write callback, 2 = on_close */
  int cancelled, closes, b_reads, b_closes, accepts;
  lw_conn *srv, *a, *b;
  char *big;
  lw_close_info info;
} st;

static void w_cb(lw_conn *c, int status, void *arg) {
  (void)c;
  (void)arg;
  st.order[st.norder++] = 1;
  if (status == LW_ECANCELED)
    st.cancelled++;
}
static void s_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  st.order[st.norder++] = 2;
  st.closes++;
  st.info = *in;
}
static void s_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)n;
  (void)b;
}
static void s_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  st.accepts++;
  st.srv = c;
  lw_conn_on_close(c, s_close);
}
static void abort_cb(lw_timer *t) { lw_abort(lw_timer_get_data(t)); }

/* (a) abort with a recv (nothing to read) and a send (peer reads slowly) pending. */
static void test_abort_with_recv_and_send_pending(void **state) {
  (void)state;
  memset(&st, 0, sizeof(st));
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, s_accept, &l), 0);
  lwt_peer p = {0};
  p.port = lw_listener_port(l);
  p.read_limit = 1; /* reads one byte of the answer, then holds: the send stays pending */
  p.hold_ms = 800;
  lwt_peer_start(&p);
  while (!st.srv)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_listener_close(l);
  size_t big = 32u << 20;
  st.big = malloc(big);
  memset(st.big, 0, big);
  assert_int_equal(lw_conn_read_start(st.srv, s_read), 0);
  assert_true(lw_conn_write(st.srv, st.big, big, w_cb, NULL) >= 0);
  lw_timer *t;
  assert_int_equal(lw_timer_new(loop, &t), 0);
  lw_timer_set_data(t, st.srv);
  lw_timer_start(t, abort_cb, 150, 0);
  lwt_run_until(loop, NULL, &st.closes, 1, 5000);
  lw_timer_free(t);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  lwt_peer_join(&p);
  assert_int_equal(st.closes, 1);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.norder, 2);
  assert_int_equal(st.order[0], 1); /* the write callback before on_close (A2) */
  assert_int_equal(st.order[1], 2);
  assert_int_equal(st.info.reason, LW_REASON_ABORT);
  free(st.big); /* only now: after on_close the kernel no longer holds it */
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

static void b_read(lw_conn *c, long n, const char *buf) {
  (void)c;
  if (n > 0 && memcmp(buf, "pong", 4) == 0)
    st.b_reads++;
}
static void b_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  (void)in;
  st.b_closes++;
}
static void b_connect(lw_conn *c, int status) {
  assert_int_equal(status, 0);
  lw_conn_read_start(c, b_read);
}
static void echo_read(lw_conn *c, long n, const char *buf) {
  (void)buf;
  if (n > 0)
    lw_conn_write(c, "pong", 4, NULL, NULL);
}
static void s2_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  assert_int_equal(status, 0);
  st.accepts++;
  lw_conn_on_close(c, s_close);
  if (st.accepts == 1) {
    st.a = c; /* the victim: a recv pending, nothing will arrive */
    lw_conn_read_start(c, s_read);
  } else {
    lw_conn_read_start(c, echo_read);
  }
}

/* (b) the victim's fd number is taken by a new socket before the cancelled recv's
 * completion is reaped: that completion must not touch the new connection. */
static void test_fd_reuse_between_cancel_and_completion(void **state) {
  (void)state;
  memset(&st, 0, sizeof(st));
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, s2_accept, &l), 0);
  lw_conn *client_a;
  assert_int_equal(
      lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, NULL, &client_a), 0);
  while (!st.a)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_loop_run(loop, LW_RUN_NOWAIT); /* let the victim's recv be submitted */
  int victim_fd = lw_conn_fd(st.a);
  assert_int_equal(lw_abort(st.a), 0);
  /* io_uring closes through the ring, behind the victim's SQEs and after its recv's
   * CQE (uring.c rules 1 and 6): the number is free a turn or two later. */
  for (int i = 0; i < 100 && fcntl(victim_fd, F_GETFD) >= 0; i++)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  /* Take every lower free number so the next socket gets the victim's. */
  int fill[64], nfill = 0;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0 && nfill < 64);
    if (fd == victim_fd) {
      close(fd);
      break;
    }
    fill[nfill++] = fd;
  }
  assert_int_equal(
      lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, b_connect, &st.b), 0);
  assert_int_equal(lw_conn_fd(st.b), victim_fd);
  while (nfill > 0)
    close(fill[--nfill]);
  lw_conn_on_close(st.b, b_close);
  assert_int_equal(lw_conn_write(st.b, "ping", 4, NULL, NULL), 0);
  lwt_run_until(loop, NULL, &st.b_reads, 1, 5000);
  assert_int_equal(st.b_reads, 1);
  assert_int_equal(st.closes, 1); /* the victim, once */
  lw_abort(st.b);
  lw_abort(client_a);
  lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(st.b_closes, 1);
  assert_int_equal(lw_loop_close(loop), 0);
}

static void never_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  (void)c;
  (void)status;
  fail_msg("no connection was expected");
}

/* (c) a listener closed while its accept is pending. */
static void test_listener_closed_with_accept_pending(void **state) {
  (void)state;
  int fds = lwt_fd_count();
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, never_accept, &l), 0);
  lw_loop_run(loop, LW_RUN_NOWAIT); /* the accept is now in the kernel */
  lw_listener_close(l);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abort_with_recv_and_send_pending),
      cmocka_unit_test(test_fd_reuse_between_cancel_and_completion),
      cmocka_unit_test(test_listener_closed_with_accept_pending)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
