/* test_win_contract.c - the promises of issue 20 on the IOCP backend, one case per run
 * (argv[1]; ctest registers each as test_win_contract_<case>). Each case has a control:
 * the same scenario without the call that used to break it.
 *   readbuf  1. The read buffer is the application's until the read callback returns:
 *               with read_size 4 and "AAAABBBBCCCCDDDD" waiting, buf still reads "AAAA"
 *               after the callback called lw_conn_read_start / lw_shutdown / lw_close.
 *   ackwait  2. The close waits for the peer's ACK of our last bytes and FIN: a peer with
 *               a tiny receive window that sent its FIN first and reads 700 ms later:
 *               on_close comes after that, acked_known=1; a peer that never reads: the
 *               close deadline resets it; a peer that resets: never "all acknowledged"
 *               (asserted on Windows only, see there). Control: a peer that reads at once.
 *   late     3. Bytes a WSASend put on the wire are counted even when it completes after
 *               the connection was detached (lw_close_naive with a send in flight):
 *               bytes_sent >= what the peer received.
 *   held     4. Input the backend holds while reading is stopped is unread input: the
 *               first-byte timeout spares the peer, lw_abort counts it in
 *               unread_discarded, lw_close_naive resets (rst=1). Control: reading never
 *               started, so the bytes stayed in the kernel.
 *   eof      5. The peer's FIN is not consumed while reading is stopped: lw_conn_read_start
 *               later delivers LW_EOF and the response still goes out (also with
 *               allow_half_close). Control: reading all along.
 * Item 6 of the issue (the 1 MiB discard bound while the response is still flushed)
 * depends on the close-path redesign of issue 14 and is tested there. */
#include "wtest.h"

#include <string.h>

static int done_flag;
int wt_done(void) { return done_flag; }

static lw_loop *loop;
static int closes;
static lw_close_info info;
static lw_conn *conn; /* the server's connection, NULL once on_close ran */
static uint64_t t_start, t_closed;

static uint64_t now_ms(void) { return GetTickCount64(); }

static void srv_close(lw_conn *c, const lw_close_info *in) {
  closes++;
  t_closed = now_ms();
  info = *in;
  conn = NULL;
  done_flag = 1;
}

/* One-shot timers; serve() waits until every one has fired, so that none of them acts
 * on the next scenario. */
typedef void (*act_fn)(void);
static int timers_live;
static void tramp(lw_timer *t) {
  act_fn fn = (act_fn)(uintptr_t)lw_timer_get_data(t);
  lw_timer_free(t);
  timers_live--;
  fn();
}
static void after(unsigned ms, act_fn fn) {
  lw_timer *t;
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_set_data(t, (void *)(uintptr_t)fn);
  timers_live++;
  lw_timer_start(t, tramp, ms, 0);
}

/* Runs one scenario: a listener with acc, a raw client thread cli, the loop until the
 * server's on_close. */
typedef struct cli_arg {
  int port;
  int variant;
  long long got;
  int err;
  char head[16];
} cli_arg;
static cli_arg ca;

static void serve(const lw_conn_options *o, lw_accept_cb acc, DWORD(WINAPI *cli)(void *),
                  int variant) {
  done_flag = 0;
  closes = 0;
  conn = NULL;
  memset(&info, 0, sizeof(info));
  lw_listener *l;
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 16, o, acc, &l) == 0);
  memset(&ca, 0, sizeof(ca));
  ca.port = lw_listener_port(l);
  ca.variant = variant;
  t_start = now_ms();
  HANDLE h = wt_thread(cli, &ca);
  wt_run(loop, 20000);
  for (int i = 0; i < 500 && timers_live > 0; i++)
    CHECK(lw_loop_run(loop, LW_RUN_ONCE) == 0);
  CHECK_EQ(timers_live, 0);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
  wt_join(h, 20000);
  CHECK_EQ(closes, 1);
}

/* Reads until EOF or error, keeping the first bytes. */
static void read_rest(SOCKET s, cli_arg *a) {
  char buf[65536];
  for (;;) {
    int n = recv(s, buf, sizeof(buf), 0);
    if (n <= 0) {
      a->err = n < 0 ? WSAGetLastError() : 0;
      return;
    }
    if (a->got < (long long)sizeof(a->head) - 1)
      memcpy(a->head + a->got, buf,
             (size_t)(n < (long long)sizeof(a->head) - 1 - a->got
                          ? n
                          : (long long)sizeof(a->head) - 1 - a->got));
    a->got += n;
  }
}

/* ---------------------------------------------------------------------------------
 * 1. readbuf
 * --------------------------------------------------------------------------------- */
static const char *const rb_names[] = {"none (control)", "lw_conn_read_start", "lw_shutdown",
                                       "lw_close"};
static int rb_call, rb_first;
static char rb_before[5], rb_after[5];

static void rb_read(lw_conn *c, long n, const char *buf) {
  if (n <= 0 || rb_first)
    return;
  rb_first = 1;
  CHECK_EQ(n, 4);
  memcpy(rb_before, buf, 4);
  switch (rb_call) {
  case 1:
    CHECK(lw_conn_read_start(c, rb_read) == 0);
    break;
  case 2:
    CHECK(lw_shutdown(c) == 0);
    break;
  case 3:
    CHECK(lw_close(c, 2000) == 0);
    break;
  }
  Sleep(30); /* time for a receive posted into buf by the call to fill it */
  memcpy(rb_after, buf, 4);
  if (rb_call != 3)
    CHECK(lw_close(c, 2000) == 0);
}
static void rb_start(void) {
  CHECK(conn != NULL);
  CHECK(lw_conn_read_start(conn, rb_read) == 0);
}
static void rb_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  conn = c;
  lw_conn_on_close(c, srv_close);
  CHECK(lw_conn_set_read_size(c, 4) == 0);
  after(150, rb_start); /* all 16 bytes are waiting by then */
}
static DWORD WINAPI rb_client(void *p) {
  cli_arg *a = p;
  SOCKET s = wt_connect(a->port);
  CHECK_EQ(wt_send_all(s, "AAAABBBBCCCCDDDD", 16), 0);
  read_rest(s, a);
  closesocket(s);
  return 0;
}
static int case_readbuf(void) {
  int bad = 0;
  for (rb_call = 0; rb_call < 4; rb_call++) {
    rb_first = 0;
    memset(rb_before, 0, sizeof(rb_before));
    memset(rb_after, 0, sizeof(rb_after));
    serve(NULL, rb_accept, rb_client, rb_call);
    printf("readbuf: callback called %-20s buf before '%s' after '%s'%s\n", rb_names[rb_call],
           rb_before, rb_after, strcmp(rb_before, rb_after) ? "  <- CHANGED" : "");
    CHECK(strcmp(rb_before, "AAAA") == 0);
    if (strcmp(rb_before, rb_after) != 0)
      bad = 1;
  }
  CHECK(!bad);
  return 0;
}

/* ---------------------------------------------------------------------------------
 * 2. ackwait
 * --------------------------------------------------------------------------------- */
#define AW_RESP (128 * 1024)
static char aw_resp[AW_RESP];
static uint64_t aw_flushed; /* loop time the response was taken by the kernel */
static int aw_variant;
static void aw_written(lw_conn *c, int status, void *arg) {
  if (status == 0)
    aw_flushed = now_ms();
}
static void aw_read(lw_conn *c, long n, const char *buf) {
  if (n != LW_EOF)
    return;
  /* The peer closed first; the answer and our FIN follow: LAST_ACK with the answer
   * unacknowledged until the peer reads (its window is tiny). */
  CHECK(lw_conn_write(c, aw_resp, AW_RESP, aw_written, NULL) >= 0);
  CHECK(lw_close(c, aw_variant == 2 ? 500 : 5000) == 0);
}
static void aw_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  conn = c;
  lw_conn_on_close(c, srv_close);
  /* Room for the whole answer in the kernel, so the queue empties at once. */
  int sb = 4 * 1024 * 1024;
  setsockopt((SOCKET)(intptr_t)lw_conn_fd(c), SOL_SOCKET, SO_SNDBUF, (const char *)&sb,
             sizeof(sb));
  CHECK(lw_conn_read_start(c, aw_read) == 0);
}
static DWORD WINAPI aw_client(void *p) {
  cli_arg *a = p;
  SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  CHECK(s != INVALID_SOCKET);
  int rb = 4096; /* before connect: the window the peer sees stays tiny */
  setsockopt(s, SOL_SOCKET, SO_RCVBUF, (const char *)&rb, sizeof(rb));
  DWORD tmo = 20000;
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&tmo, sizeof(tmo));
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((u_short)a->port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  shutdown(s, SD_SEND);
  if (a->variant == 1)
    Sleep(700);
  else if (a->variant == 2)
    Sleep(1200);
  if (a->variant == 3) { /* resets instead of reading: no acknowledgement */
    Sleep(300);
    struct linger lg = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg));
    closesocket(s);
    return 0;
  }
  read_rest(s, a);
  closesocket(s);
  return 0;
}
static int case_ackwait(void) {
  static const char *const names[] = {"reads at once (control)", "reads after 700 ms",
                                      "never reads, deadline 500 ms", "resets after 300 ms"};
  memset(aw_resp, 'w', sizeof(aw_resp));
  for (aw_variant = 0; aw_variant < 4; aw_variant++) {
    aw_flushed = 0;
    serve(NULL, aw_accept, aw_client, aw_variant);
    long long wait = aw_flushed ? (long long)(t_closed - aw_flushed) : -1;
    printf("ackwait: peer %-30s server %s rst=%d close_ms=%llu acked_known=%d bytes_acked=%llu"
           " sent=%llu; on_close %lld ms after the kernel took the answer; client got %lld"
           " err %d\n",
           names[aw_variant], wt_reason(&info), info.rst, (unsigned long long)info.close_ms,
           info.acked_known, (unsigned long long)info.bytes_acked,
           (unsigned long long)info.bytes_sent, wait, ca.got, ca.err);
    CHECK_EQ(info.bytes_sent, AW_RESP);
    if (aw_variant < 2) {
      /* The precondition: the kernel took the whole answer before the peer read. */
      CHECK(aw_flushed != 0 && aw_flushed - t_start < 500);
      CHECK_EQ(ca.got, AW_RESP);
      CHECK_EQ(info.rst, 0);
      CHECK_EQ(info.reason, LW_REASON_PEER_CLOSED_FIRST);
      CHECK_EQ(info.acked_known, 1);
      CHECK_EQ(info.bytes_acked, AW_RESP);
      if (aw_variant == 1)
        CHECK(info.close_ms >= 400); /* waited for the peer's ACKs */
    } else if (aw_variant == 3) {
      /* A reset is no acknowledgement: never "all acknowledged" (README, suspicion 1).
       * Under Wine no Winsock query tells a reset after both FINs from a finished
       * connection (getpeername, SO_ERROR and a peeking recv all say "finished":
       * measured), so there it is shown, not asserted; real Windows must pass. */
      int claimed = info.acked_known && info.bytes_acked == AW_RESP;
      if (claimed && wt_is_wine())
        printf("NOTE: under Wine the reset in the ACK wait reads as all acknowledged"
               " (src/win/README.md, suspicion 1)\n");
      else
        CHECK(!claimed);
    } else {
      CHECK_EQ(info.reason, LW_REASON_DEADLINE);
      CHECK_EQ(info.rst, 1);
      CHECK(info.close_ms >= 450);
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------
 * 3. late
 * --------------------------------------------------------------------------------- */
#define LT_RESP (4 * 1024 * 1024)
static char *lt_resp;
static int lt_variant;
static void lt_naive(void) {
  CHECK(conn != NULL);
  CHECK(lw_close_naive(conn) == 0);
}
static void lt_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  conn = c;
  lw_conn_on_close(c, srv_close);
  /* control: an answer small enough to be taken (completed) before the close */
  CHECK(lw_conn_write(c, lt_resp, lt_variant ? LT_RESP : 16 * 1024, NULL, NULL) >= 0);
  after(200, lt_naive);
}
static DWORD WINAPI lt_client(void *p) {
  cli_arg *a = p;
  SOCKET s = wt_connect(a->port);
  Sleep(500); /* the server closes while its WSASend is still in flight */
  read_rest(s, a);
  closesocket(s);
  return 0;
}
static int case_late(void) {
  lt_resp = malloc(LT_RESP);
  CHECK(lt_resp);
  memset(lt_resp, 'l', LT_RESP);
  for (lt_variant = 0; lt_variant < 2; lt_variant++) {
    serve(NULL, lt_accept, lt_client, lt_variant);
    printf("late: %-34s server %s sent=%llu queued=%llu unsent_discarded=%llu; client got"
           " %lld err %d\n",
           lt_variant ? "WSASend in flight at the close:" : "WSASend done before (control):",
           wt_reason(&info), (unsigned long long)info.bytes_sent,
           (unsigned long long)info.bytes_queued, (unsigned long long)info.unsent_discarded,
           ca.got, ca.err);
    CHECK_EQ(info.reason, LW_REASON_NAIVE);
    CHECK(ca.got > 0);
    CHECK((long long)info.bytes_sent >= ca.got);
    CHECK_EQ(info.bytes_queued, lt_variant ? LT_RESP : 16 * 1024);
  }
  free(lt_resp);
  return 0;
}

/* ---------------------------------------------------------------------------------
 * 4. held
 * --------------------------------------------------------------------------------- */
static int hd_how;     /* 0 first-byte timeout, 1 lw_abort, 2 lw_close_naive */
static int hd_stopped; /* 1: reading started then stopped (the backend holds the bytes) */
static long long hd_read;
static void hd_read_cb(lw_conn *c, long n, const char *buf) {
  if (n > 0) {
    hd_read += n;
    CHECK(lw_close(c, 2000) == 0);
  }
}
static void hd_ignore(lw_conn *c, long n, const char *buf) { CHECK(0 && "reading is stopped"); }
static void hd_act(void) {
  /* The first-byte timeout (200 ms) is long past: the peer spoke, so no reset. */
  CHECK(conn != NULL);
  if (hd_how == 0)
    CHECK(lw_conn_read_start(conn, hd_read_cb) == 0);
  else if (hd_how == 1)
    CHECK(lw_abort(conn) == 0);
  else
    CHECK(lw_close_naive(conn) == 0);
}
static void hd_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  conn = c;
  lw_conn_on_close(c, srv_close);
  if (hd_stopped) { /* a WSARecv is posted, then reading stops: its data is held */
    CHECK(lw_conn_read_start(c, hd_ignore) == 0);
    CHECK(lw_conn_read_stop(c) == 0);
  }
  after(600, hd_act);
}
static DWORD WINAPI hd_client(void *p) {
  cli_arg *a = p;
  SOCKET s = wt_connect(a->port);
  CHECK_EQ(wt_send_all(s, "hello", 5), 0);
  read_rest(s, a);
  closesocket(s);
  return 0;
}
static int case_held(void) {
  static const char *const hows[] = {"first_byte_timeout", "lw_abort", "lw_close_naive"};
  for (hd_how = 0; hd_how < 3; hd_how++) {
    lw_conn_options o;
    memset(&o, 0, sizeof(o));
    o.first_byte_timeout_ms = hd_how == 0 ? 200 : 0;
    for (hd_stopped = 0; hd_stopped < 2; hd_stopped++) {
      hd_read = 0;
      serve(&o, hd_accept, hd_client, hd_how);
      printf("held: %-18s %-34s server %s rst=%d unread_discarded=%llu received=%llu; peer"
             " err %d\n",
             hows[hd_how],
             hd_stopped ? "bytes held (read_start, read_stop):"
                        : "bytes in the kernel (control):",
             wt_reason(&info), info.rst, (unsigned long long)info.unread_discarded,
             (unsigned long long)info.bytes_received, ca.err);
      if (hd_how == 0) {
        CHECK(info.reason != LW_REASON_FIRST_BYTE_TIMEOUT);
        CHECK_EQ(hd_read, 5);
        CHECK_EQ(info.rst, 0);
      } else if (hd_how == 1) {
        CHECK_EQ(info.reason, LW_REASON_ABORT);
        CHECK_EQ(info.unread_discarded, 5);
      } else {
        CHECK_EQ(info.reason, LW_REASON_NAIVE);
        CHECK_EQ(info.rst, 1); /* closesocket with unread input: an RST (B13) */
        CHECK_EQ(info.unread_discarded, 5);
        /* Under Wine a blocking recv() may read the RST as EOF (README, limits). */
        CHECK(ca.err == WSAECONNRESET || (ca.err == 0 && wt_is_wine()));
      }
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------
 * 5. eof
 * --------------------------------------------------------------------------------- */
static int ef_variant; /* 0 control: reading; 1 read_stop; 2 read_stop + allow_half_close */
static int ef_eofs, ef_data;
static void ef_read(lw_conn *c, long n, const char *buf) {
  if (n > 0) {
    ef_data++;
    return;
  }
  if (n != LW_EOF)
    return;
  ef_eofs++;
  CHECK(lw_conn_write_copy(c, "bye", 3) >= 0);
  CHECK(lw_close(c, 2000) == 0);
}
static void ef_start(void) {
  if (ef_variant == 0)
    return; /* the control ended long ago */
  /* The peer's FIN arrived 400 ms ago while reading was stopped: nothing ended. */
  CHECK_EQ(closes, 0);
  CHECK(conn != NULL);
  CHECK_EQ(ef_eofs, 0);
  int r = lw_conn_read_start(conn, ef_read);
  if (r != 0)
    printf("eof: lw_conn_read_start -> %s\n", lw_err_name(r));
  CHECK_EQ(r, 0);
}
static void ef_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  conn = c;
  lw_conn_on_close(c, srv_close);
  CHECK(lw_conn_read_start(c, ef_read) == 0);
  if (ef_variant)
    CHECK(lw_conn_read_stop(c) == 0); /* the WSARecv stays posted */
  after(400, ef_start);
}
static DWORD WINAPI ef_client(void *p) {
  cli_arg *a = p;
  SOCKET s = wt_connect(a->port);
  Sleep(50);
  shutdown(s, SD_SEND); /* FIN, nothing else */
  read_rest(s, a);
  closesocket(s);
  return 0;
}
static int case_eof(void) {
  static const char *const names[] = {"reading (control)", "read_stop",
                                      "read_stop + allow_half_close"};
  for (ef_variant = 0; ef_variant < 3; ef_variant++) {
    lw_conn_options o;
    memset(&o, 0, sizeof(o));
    o.allow_half_close = ef_variant == 2;
    ef_eofs = ef_data = 0;
    serve(&o, ef_accept, ef_client, ef_variant);
    printf("eof: %-30s EOF callbacks %d; server %s rst=%d; client got '%s' err %d\n",
           names[ef_variant], ef_eofs, wt_reason(&info), info.rst, ca.head, ca.err);
    CHECK_EQ(ef_eofs, 1);
    CHECK_EQ(ef_data, 0);
    CHECK_EQ(ca.got, 3);
    CHECK(strcmp(ca.head, "bye") == 0);
    CHECK_EQ(info.rst, 0);
  }
  return 0;
}

int main(int argc, char **argv) {
  wt_init();
  CHECK(argc == 2);
  CHECK(lw_loop_new(&loop, NULL) == 0);
  int r = -1;
  if (strcmp(argv[1], "readbuf") == 0)
    r = case_readbuf();
  else if (strcmp(argv[1], "ackwait") == 0)
    r = case_ackwait();
  else if (strcmp(argv[1], "late") == 0)
    r = case_late();
  else if (strcmp(argv[1], "held") == 0)
    r = case_held();
  else if (strcmp(argv[1], "eof") == 0)
    r = case_eof();
  CHECK_EQ(r, 0);
  CHECK_EQ(lw_loop_close(loop), 0);
  printf("PASS test_win_contract %s\n", argv[1]);
  return 0;
}
