/*
 * EMFILE on accept: with RLIMIT_NOFILE lowered, pending connections are shed with the
 * reserved descriptor (the peers see a reset), accept_cb hears LW_EMFILE a bounded
 * number of times (a level-triggered spin would call it thousands of times), and the
 * connection already open keeps being served.
 */
#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { NCLIENTS = 8 };
static struct {
  int accepted, emfile, echoed;
  lw_conn *first;
} st;

static void s_read(lw_conn *c, long n, const char *buf) {
  if (n > 0) {
    st.echoed += (int)n;
    lw_conn_write_copy(c, buf, (size_t)n);
  }
}

static void s_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  if (status == LW_EMFILE) {
    st.emfile++;
    return;
  }
  assert_int_equal(status, 0);
  st.accepted++;
  if (!st.first)
    st.first = c;
  lw_conn_read_start(c, s_read);
}

static void stop_cb(lw_timer *t) { lw_loop_stop(lw_timer_get_data(t)); }

static void test_emfile(void **state) {
  (void)state;
  memset(&st, 0, sizeof(st));
  lw_loop *loop;
  assert_int_equal(lw_loop_new(&loop, NULL), 0);
  lwt_check_backend(loop);
  /* Every client socket exists before the limit is lowered; only their handshakes
   * (which take no fd on this side) come after. The limit leaves room for exactly the
   * listener and one accepted connection. It is lowered BEFORE the listener exists:
   * io_uring's accept reads RLIMIT_NOFILE when its SQE is prepared (io_accept_prep),
   * so a multishot accept armed earlier would keep the old limit. */
  int first = socket(AF_INET, SOCK_STREAM, 0);
  int cl[NCLIENTS];
  for (int i = 0; i < NCLIENTS; i++)
    cl[i] = socket(AF_INET, SOCK_STREAM, 0);
  /* Fill every free number below the highest open one: the kernel hands out the
   * lowest free number, and a gap would let an accept succeed under the limit. */
  int gap[256], ngap = 0, hi = lwt_highest_fd();
  for (;;) {
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0 && ngap < 256);
    if (fd > hi) {
      close(fd);
      break;
    }
    gap[ngap++] = fd;
  }
  struct rlimit old, lim;
  getrlimit(RLIMIT_NOFILE, &old);
  lim = old;
  lim.rlim_cur = (rlim_t)(hi + 1 + 2);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
  lw_listener *l;
  assert_int_equal(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, s_accept, &l), 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)lw_listener_port(l))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(first, (struct sockaddr *)&a, sizeof(a)), 0);
  while (st.accepted < 1)
    lw_loop_run(loop, LW_RUN_ONCE);
  for (int i = 0; i < NCLIENTS; i++)
    assert_int_equal(connect(cl[i], (struct sockaddr *)&a, sizeof(a)), 0);

  lw_timer *t;
  assert_int_equal(lw_timer_new(loop, &t), 0);
  lw_timer_set_data(t, loop);
  lw_timer_start(t, stop_cb, 300, 0);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

  assert_true(st.emfile >= 1);
  print_message("emfile reports: %d, accepted: %d\n", st.emfile, st.accepted);
  assert_true(st.emfile <= NCLIENTS); /* no spin */
  /* Shed connections were reset, not left hanging. */
  int reset = 0;
  for (int i = 0; i < NCLIENTS; i++) {
    char b;
    if (recv(cl[i], &b, 1, MSG_DONTWAIT) < 0 && errno == ECONNRESET)
      reset++;
  }
  assert_true(reset >= 1);
  /* The established connection still works. */
  assert_int_equal(send(first, "ping", 4, 0), 4);
  lw_timer_start(t, stop_cb, 200, 0);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  char buf[8];
  assert_int_equal(recv(first, buf, sizeof(buf), MSG_DONTWAIT), 4);
  assert_int_equal(st.echoed, 4);

  lw_timer_free(t);
  close(first);
  for (int i = 0; i < NCLIENTS; i++)
    close(cl[i]);
  while (ngap > 0)
    close(gap[--ngap]);
  lw_listener_close(l);
  lw_abort(st.first);
  assert_int_equal(lw_loop_run(loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_emfile)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
