/* test_win_echo.c - IOCP basics under the same API: accept + connect + echo of 1 MiB
 * over IPv4 (and IPv6 where the stack has it), graceful close on both ends with the
 * right reasons, write callbacks before on_close, a refused connect. */
#include "wtest.h"

#include <string.h>

#define PAYLOAD (1024 * 1024)
static char payload[PAYLOAD];
static int srv_closes, cli_closes, cli_writes_done, refused_closes, refused_status = 1;
static long long cli_received;
static lw_close_info srv_info, cli_info;
static int mismatch;
static int expected_closes;

int wt_done(void) { return srv_closes + cli_closes + refused_closes >= expected_closes; }

static void srv_read(lw_conn *c, long n, const char *buf) {
  if (n > 0)
    CHECK(lw_conn_write_copy(c, buf, (size_t)n) >= 0);
}
static void srv_close(lw_conn *c, const lw_close_info *in) {
  srv_closes++;
  srv_info = *in;
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0 && c);
  lw_conn_on_close(c, srv_close);
  CHECK(lw_conn_read_start(c, srv_read) == 0);
}

static void cli_read(lw_conn *c, long n, const char *buf) {
  CHECK(n > 0); /* the client closes first: no EOF before it */
  if (memcmp(buf, payload + cli_received, (size_t)n) != 0)
    mismatch = 1;
  cli_received += n;
  if (cli_received == PAYLOAD)
    CHECK(lw_close(c, 5000) == 0);
}
static void cli_write_cb(lw_conn *c, int status, void *arg) {
  CHECK(status == 0);
  CHECK(cli_closes == 0); /* A2: before on_close */
  cli_writes_done++;
}
static void cli_close(lw_conn *c, const lw_close_info *in) {
  cli_closes++;
  cli_info = *in;
}
static void cli_connect(lw_conn *c, int status) {
  CHECK(status == 0);
  CHECK(lw_conn_read_start(c, cli_read) == 0);
  for (int i = 0; i < 16; i++)
    CHECK(lw_conn_write(c, payload + i * (PAYLOAD / 16), PAYLOAD / 16, cli_write_cb, NULL) >=
          0);
}

static void refused_connect(lw_conn *c, int status) { refused_status = status; }
static void refused_close(lw_conn *c, const lw_close_info *in) {
  refused_closes++;
  CHECK(in->reason == LW_REASON_ERROR);
}

static void echo_once(lw_loop *loop, const char *host) {
  srv_closes = cli_closes = cli_writes_done = 0;
  cli_received = 0;
  mismatch = 0;
  expected_closes = 2;
  lw_listener *l;
  int r = lw_listener_new(loop, host, 0, 16, NULL, on_accept, &l);
  if (r < 0 && strchr(host, ':')) {
    printf("  %s: no IPv6 here (%s): skipped\n", host, lw_err_name(r));
    return;
  }
  CHECK(r == 0);
  lw_conn *c;
  CHECK(lw_conn_connect(loop, host, lw_listener_port(l), NULL, cli_connect, &c) == 0);
  lw_conn_on_close(c, cli_close);
  wt_run(loop, 20000);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
  CHECK_EQ(cli_closes, 1);
  CHECK_EQ(srv_closes, 1);
  CHECK_EQ(cli_received, PAYLOAD);
  CHECK(!mismatch);
  CHECK_EQ(cli_writes_done, 16);
  printf("  %s: client %s acked=%llu/%llu known=%d time_wait=%d; server %s rst=%d\n", host,
         wt_reason(&cli_info), (unsigned long long)cli_info.bytes_acked,
         (unsigned long long)cli_info.bytes_sent, cli_info.acked_known, cli_info.time_wait,
         wt_reason(&srv_info), srv_info.rst);
  CHECK_EQ(cli_info.reason, LW_REASON_GRACEFUL);
  CHECK_EQ(cli_info.rst, 0);
  CHECK_EQ(cli_info.bytes_sent, PAYLOAD);
  CHECK_EQ(srv_info.reason, LW_REASON_PEER_CLOSED_FIRST);
  CHECK_EQ(srv_info.rst, 0);
  CHECK_EQ(srv_info.bytes_received, PAYLOAD);
  /* Acknowledgements: claimed only when proven (our FIN acknowledged). */
  if (cli_info.acked_known)
    CHECK_EQ(cli_info.bytes_acked, PAYLOAD);
}

int main(void) {
  wt_init();
  for (int i = 0; i < PAYLOAD; i++)
    payload[i] = (char)(i * 7 + i / 251);
  lw_loop *loop;
  CHECK(lw_loop_new(&loop, NULL) == 0);
  printf("backend: %s\n", lw_loop_backend(loop));
  CHECK(strcmp(lw_loop_backend(loop), "iocp") == 0);
  echo_once(loop, "127.0.0.1");
  echo_once(loop, "::1");

  /* A refused connect: connect_cb with the error, then on_close (ERROR), once. */
  lw_listener *l;
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 1, NULL, on_accept, &l) == 0);
  int port = lw_listener_port(l);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
  srv_closes = cli_closes = 0;
  expected_closes = 1;
  lw_conn *c;
  CHECK(lw_conn_connect(loop, "127.0.0.1", port, NULL, refused_connect, &c) == 0);
  lw_conn_on_close(c, refused_close);
  wt_run(loop, 20000);
  printf("  refused connect: %s\n", lw_err_name(refused_status));
  CHECK_EQ(refused_status, LW_ECONNREFUSED);
  CHECK_EQ(refused_closes, 1);

  CHECK_EQ(lw_loop_close(loop), 0);
  printf("PASS test_win_echo\n");
  return 0;
}
