/*
 * A SIGKILLed peer PROCESS is not a dead peer: its kernel closes the socket for it and
 * still answers. With dead_after_ms = 3000 set, the server must see peer-closed-first
 * (FIN: nothing was left unread on the peer) or peer-reset (RST: the peer died with
 * our answer unread) at once, never dead-peer -- and see the RST even though the
 * application stopped reading (errors-only registration). Peer in namespace B, a
 * forked process (netns.h).
 */
#include "netns.h"

#include <poll.h>

#define T 3000u

typedef struct ksrv {
  lw_loop *loop;
  lw_listener *l;
  int keep_reading;
  int replied;
  int closes;
  lw_close_info last;
} ksrv;

static void k_read(lw_conn *c, long n, const char *buf) {
  ksrv *k = lw_conn_get_data(c);
  if (n == LW_EOF)
    return;
  for (long i = 0; i < n; i++)
    if (buf[i] == '\n' && !k->replied) {
      k->replied = 1;
      lw_conn_write(c, "hello\n", 6, NULL, NULL);
      if (!k->keep_reading)
        lw_conn_read_stop(c);
    }
}

static void k_closed(lw_conn *c, const lw_close_info *in) {
  ksrv *k = lw_conn_get_data(c);
  k->closes++;
  k->last = *in;
}

static void k_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  lw_conn_set_data(c, lw_listener_get_data(l));
  lw_conn_on_close(c, k_closed);
  lw_conn_read_start(c, k_read);
}

/* The peer process: connect from B, send a line, read the answer or not, say so on
 * the pipe, then wait to be killed. */
static pid_t spawn_peer(int port, int read_answer, int wfd) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid > 0)
    return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(30);
  if (setns(lwn_fd_b, CLONE_NEWNET) < 0)
    _exit(1);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, LWN_ADDR_A, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || send(fd, "GET\n", 4, 0) != 4)
    _exit(1);
  char buf[6];
  size_t got = 0;
  while (read_answer && got < 6) {
    ssize_t n = recv(fd, buf + got, 6 - got, 0);
    if (n <= 0)
      _exit(1);
    got += (size_t)n;
  }
  if (!read_answer)
    lwn_msleep(100); /* the answer arrives and stays unread */
  if (write(wfd, "x", 1) != 1)
    _exit(1);
  for (;;)
    pause();
}

static int pipe_ready(void *a) {
  struct pollfd pf = {.fd = *(int *)a, .events = POLLIN};
  return poll(&pf, 1, 0) == 1;
}
static int closed(void *a) { return ((ksrv *)a)->closes >= 1; }

static void killed(int read_answer) {
  int fds = lwt_fd_count();
  ksrv k = {0};
  k.keep_reading = read_answer; /* the RST case also proves errors-only watching */
  lw_conn_options o = {0};
  o.dead_after_ms = T;
  assert_int_equal(lw_loop_new(&k.loop, NULL), 0);
  assert_int_equal(lw_listener_new(k.loop, LWN_ADDR_A, 0, 16, &o, k_accept, &k.l), 0);
  lw_listener_set_data(k.l, &k);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = spawn_peer(lw_listener_port(k.l), read_answer, pfd[1]);
  lwn_run_until(k.loop, pipe_ready, &pfd[0], 5000);
  uint64_t t0 = lwt_now_ms();
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  lwn_run_until(k.loop, closed, &k, (int)(2 * T));
  uint64_t dt = lwt_now_ms() - t0;
  close(pfd[0]);
  close(pfd[1]);
  lw_listener_close(k.l);
  assert_int_equal(lw_loop_run(k.loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(k.loop), 0);
  print_message("peer SIGKILLed (%s): on_close after %llu ms, reason %s\n",
                read_answer ? "nothing unread: FIN" : "answer unread: RST",
                (unsigned long long)dt, lw_reason_name(k.last.reason));
  assert_int_equal(k.closes, 1);
  assert_int_equal(k.last.reason,
                   read_answer ? LW_REASON_PEER_CLOSED_FIRST : LW_REASON_PEER_RESET);
  assert_true(dt < 1000);
  assert_int_equal(lwt_fd_count(), fds);
}

static void test_killed_fin(void **state) {
  (void)state;
  killed(1);
}
static void test_killed_rst(void **state) {
  (void)state;
  killed(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_killed_fin),
                                     cmocka_unit_test(test_killed_rst)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_peer_killed");
}
