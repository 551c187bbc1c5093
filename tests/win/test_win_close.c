/* test_win_close.c - how connections end on the IOCP backend:
 *   1. RST-loss workload: the client sends 64 KiB the server never reads; the server
 *      answers 4 MiB and closes. lw_close delivers every byte; lw_close_naive
 *      (closesocket with input unread) loses some -- shown, not required.
 *   2. lw_abort: the peer's recv fails with WSAECONNRESET; reason ABORT, rst=1.
 *   3. the peer's SO_LINGER{1,0} close: reason PEER_RESET, os_error ECONNRESET.
 *   4. lw_close_naive with a WSARecv pending and no input unread: the peer gets FIN
 *      (recv 0), not RST: the close waited for the cancelled receive.
 *   5. on_close exactly once, after every write callback, no read callback after it,
 *      for connections closed every way with a WSASend and a WSARecv in flight and
 *      one closed while connecting; the loop then closes (nothing left in flight). */
#include "wtest.h"
#include "win.h" /* lw__iocp_get_stats */

#include <string.h>

#define RESP (4 * 1024 * 1024)
#define EXTRA (64 * 1024)
static char *resp;

typedef struct srv_case {
  int mode; /* 0 graceful, 1 naive, 2 abort on first read, 3 keep reading, 4 naive after 100 ms
             */
  int closes;
  lw_close_info info;
  lw_conn *conn;
} srv_case;
static srv_case sc;
static int done_flag;
int wt_done(void) { return done_flag; }

static void srv_close(lw_conn *c, const lw_close_info *in) {
  sc.closes++;
  sc.info = *in;
  done_flag = 1;
}
static void naive_later(lw_timer *t) {
  CHECK(lw_close_naive(sc.conn) == 0);
  lw_timer_free(t);
}
static void srv_read(lw_conn *c, long n, const char *buf) {
  if (n <= 0)
    return;
  switch (sc.mode) {
  case 0:
  case 1:
    CHECK(lw_conn_read_stop(c) == 0); /* the rest of the request stays unread */
    CHECK(lw_conn_write(c, resp, RESP, NULL, NULL) >= 0);
    CHECK((sc.mode == 0 ? lw_close(c, 10000) : lw_close_naive(c)) == 0);
    break;
  case 2:
    CHECK(lw_abort(c) == 0);
    break;
  default:
    break;
  }
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sc.conn = c;
  lw_conn_on_close(c, srv_close);
  if (sc.mode == 1 || sc.mode == 0)
    lw_conn_set_read_size(c, 16);
  CHECK(lw_conn_read_start(c, srv_read) == 0);
  if (sc.mode == 4) {
    lw_timer *t;
    CHECK(lw_timer_new(lw_conn_loop(c), &t) == 0);
    lw_timer_start(t, naive_later, 100, 0);
  }
}

/* ---- raw clients (threads) ---- */
typedef struct cli_res {
  int port;
  long long got;
  int err;
  int send_err;
} cli_res;

static DWORD WINAPI rstloss_client(void *p) {
  cli_res *r = p;
  SOCKET s = wt_connect(r->port);
  static char req[16 + EXTRA];
  memset(req, 'r', sizeof(req));
  r->send_err = wt_send_all(s, req, sizeof(req));
  Sleep(300); /* the server closes while most of the response is still on its side */
  r->got = wt_read_all(s, &r->err);
  closesocket(s);
  return 0;
}
static DWORD WINAPI abort_client(void *p) {
  cli_res *r = p;
  SOCKET s = wt_connect(r->port);
  r->send_err = wt_send_all(s, "x", 1);
  r->got = wt_read_all(s, &r->err);
  closesocket(s);
  return 0;
}
static DWORD WINAPI reset_client(void *p) {
  cli_res *r = p;
  SOCKET s = wt_connect(r->port);
  r->send_err = wt_send_all(s, "hello", 5);
  Sleep(100);
  struct linger lg = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg));
  closesocket(s);
  return 0;
}
static DWORD WINAPI fin_client(void *p) {
  cli_res *r = p;
  SOCKET s = wt_connect(r->port);
  r->got = wt_read_all(s, &r->err); /* sends nothing; waits for the server's close */
  closesocket(s);
  return 0;
}

static void run_case(lw_loop *loop, int mode, DWORD(WINAPI *fn)(void *), cli_res *r) {
  memset(&sc, 0, sizeof(sc));
  sc.mode = mode;
  done_flag = 0;
  lw_listener *l;
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, on_accept, &l) == 0);
  memset(r, 0, sizeof(*r));
  r->port = lw_listener_port(l);
  HANDLE h = wt_thread(fn, r);
  wt_run(loop, 30000);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
  wt_join(h, 30000);
  CHECK_EQ(sc.closes, 1);
}

/* ---- 5: every completion before on_close ---- */
#define NC 24
#define WCHUNK (1024 * 1024)
typedef struct cc {
  lw_conn *c;
  int closes, writes_queued, writes_cb, reads_after_close, connected, how;
  lw_close_info info;
} cc;
static cc conns[NC + 1];
static lw_conn *srv_conns[NC + 1];
static int nsrv, stress_closes, stress_srv_closes;
static char *big;

static void st_srv_close(lw_conn *c, const lw_close_info *in) {
  stress_srv_closes++;
  for (int i = 0; i < nsrv; i++)
    if (srv_conns[i] == c)
      srv_conns[i] = NULL;
}
static void st_accept(lw_listener *l, lw_conn *c, int status) {
  if (status != 0 || nsrv >= NC + 1)
    fprintf(stderr, "accept status %s nsrv %d\n", lw_err_name(status), nsrv);
  CHECK(status == 0 && nsrv < NC + 1);
  srv_conns[nsrv++] = c;
  lw_conn_on_close(c, st_srv_close); /* never reads: the client's sends stay pending */
}
static void st_read(lw_conn *c, long n, const char *buf) {
  cc *k = lw_conn_get_data(c);
  if (k->closes)
    k->reads_after_close++;
}
static void st_write_cb(lw_conn *c, int status, void *arg) {
  cc *k = lw_conn_get_data(c);
  CHECK(k->closes == 0);
  CHECK(status == 0 || status == LW_ECANCELED);
  k->writes_cb++;
}
static void st_close(lw_conn *c, const lw_close_info *in) {
  cc *k = lw_conn_get_data(c);
  k->closes++;
  k->info = *in;
  CHECK_EQ(k->writes_cb, k->writes_queued);
  stress_closes++;
  if (stress_closes == NC + 1)
    done_flag = 1;
}
static void st_connect(lw_conn *c, int status) {
  cc *k = lw_conn_get_data(c);
  CHECK(status == 0);
  k->connected = 1;
  CHECK(lw_conn_read_start(c, st_read) == 0);
  for (int i = 0; i < 8; i++) {
    CHECK(lw_conn_write(c, big, WCHUNK, st_write_cb, NULL) >= 0);
    k->writes_queued++;
  }
}
static void st_close_all(lw_timer *t) {
  for (int i = 0; i < NC; i++) {
    cc *k = &conns[i];
    CHECK(k->connected);
    switch (i % 3) {
    case 0:
      CHECK(lw_close(k->c, 200) == 0);
      break; /* cannot flush: DEADLINE */
    case 1:
      CHECK(lw_abort(k->c) == 0);
      break;
    case 2:
      CHECK(lw_close_naive(k->c) == 0);
      break;
    }
    /* A second close of any kind changes nothing. */
    CHECK(lw_close(k->c, 0) == LW_EALREADY || i % 3 == 0);
  }
  lw_timer_free(t);
}
static void st_abort_servers(lw_timer *t) {
  for (int i = 0; i < nsrv; i++)
    if (srv_conns[i])
      lw_abort(srv_conns[i]);
  lw_timer_free(t);
}

int main(void) {
  wt_init();
  resp = malloc(RESP);
  big = malloc(WCHUNK);
  CHECK(resp && big);
  memset(resp, 'R', RESP);
  memset(big, 'B', WCHUNK);
  lw_loop *loop;
  CHECK(lw_loop_new(&loop, NULL) == 0);
  cli_res r;

  /* 1. RST-loss workload */
  run_case(loop, 0, rstloss_client, &r);
  printf(
      "graceful close: client got %lld/%d bytes, err %d; server %s rst=%d unread_discarded=%llu"
      " acked_known=%d\n",
      r.got, RESP, r.err, wt_reason(&sc.info), sc.info.rst,
      (unsigned long long)sc.info.unread_discarded, sc.info.acked_known);
  CHECK_EQ(r.send_err, 0);
  CHECK_EQ(r.err, 0);
  CHECK_EQ(r.got, RESP);
  CHECK_EQ(sc.info.rst, 0);
  CHECK(sc.info.reason == LW_REASON_GRACEFUL || sc.info.reason == LW_REASON_PEER_CLOSED_FIRST);
  CHECK(sc.info.unread_discarded >= EXTRA - 16);
  run_case(loop, 1, rstloss_client, &r);
  printf("naive close:    client got %lld/%d bytes, err %d; server %s rst=%d  (%s)\n", r.got,
         RESP, r.err, wt_reason(&sc.info), sc.info.rst,
         r.got < RESP ? "bytes lost to the RST, as expected" : "NOTE: nothing lost this time");
  CHECK_EQ(sc.info.reason, LW_REASON_NAIVE);

  /* 2. abort */
  run_case(loop, 2, abort_client, &r);
  printf("abort: peer recv err %d (WSAECONNRESET=%d); server %s rst=%d\n", r.err, WSAECONNRESET,
         wt_reason(&sc.info), sc.info.rst);
  /* Under Wine a blocking recv() now and then returns 0 after an RST instead of
   * WSAECONNRESET (1 run in ~20 here; `lastword lab` under Wine sees it on every run:
   * A6, B13). The RST itself is sent (rst=1 below); real Windows must report
   * WSAECONNRESET. */
  if (r.err == 0 && wt_is_wine())
    printf("NOTE: under Wine the peer saw the RST as EOF (a Wine behaviour, see above)\n");
  else
    CHECK_EQ(r.err, WSAECONNRESET);
  CHECK_EQ(sc.info.reason, LW_REASON_ABORT);
  CHECK_EQ(sc.info.rst, 1);
  CHECK_EQ(sc.info.time_wait, 0);

  /* 3. the peer resets */
  run_case(loop, 3, reset_client, &r);
  printf("peer reset: server %s os_error %s rst=%d\n", wt_reason(&sc.info),
         lw_err_name(sc.info.os_error), sc.info.rst);
  CHECK_EQ(sc.info.reason, LW_REASON_PEER_RESET);
  CHECK_EQ(sc.info.os_error, LW_ECONNRESET);
  CHECK_EQ(sc.info.rst, 1);

  /* 4. FIN, not RST, when closing with a receive pending */
  lw__iocp_stats st0, st1;
  CHECK(lw__iocp_get_stats(loop, &st0) == 0);
  run_case(loop, 4, fin_client, &r);
  CHECK(lw__iocp_get_stats(loop, &st1) == 0);
  printf("close with WSARecv pending: peer recv -> %s (err %d); deferred closes %llu\n",
         r.err ? "error" : "0 (FIN)", r.err,
         (unsigned long long)(st1.deferred_closes - st0.deferred_closes));
  CHECK_EQ(r.err, 0);
  CHECK_EQ(sc.info.rst, 0);
  CHECK(st1.deferred_closes > st0.deferred_closes);

  /* 5. on_close exactly once after every completion */
  done_flag = 0;
  lw_listener *l;
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, st_accept, &l) == 0);
  for (int i = 0; i <= NC; i++) {
    conns[i].how = i % 3;
    CHECK(lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, st_connect,
                          &conns[i].c) == 0);
    lw_conn_set_data(conns[i].c, &conns[i]);
    lw_conn_on_close(conns[i].c, st_close);
  }
  /* The last one is closed while its ConnectEx is in flight. */
  CHECK(lw_close(conns[NC].c, 0) == 0);
  lw_timer *t1, *t2;
  CHECK(lw_timer_new(loop, &t1) == 0 && lw_timer_new(loop, &t2) == 0);
  lw_timer_start(t1, st_close_all, 300, 0);
  lw_timer_start(t2, st_abort_servers, 1500, 0);
  wt_run(loop, 30000);
  lw_listener_close(l);
  /* The server side never reads, so it learns of nothing: st_abort_servers (1.5 s after
   * the start) ends it. Wait for that, bounded (the clients may be done well before). */
  for (int i = 0; i < 400 && lw_loop_run(loop, LW_RUN_NOWAIT) == 0 && stress_srv_closes < nsrv;
       i++)
    Sleep(10);
  int reasons[LW_REASON__COUNT] = {0};
  for (int i = 0; i <= NC; i++) {
    CHECK_EQ(conns[i].closes, 1);
    CHECK_EQ(conns[i].reads_after_close, 0);
    reasons[conns[i].info.reason]++;
  }
  printf("stress: %d conns closed once each:", NC + 1);
  for (int i = 0; i < LW_REASON__COUNT; i++)
    if (reasons[i])
      printf(" %s=%d", lw_reason_name((lw_close_reason)i), reasons[i]);
  printf("; server side %d/%d closed\n", stress_srv_closes, nsrv);
  CHECK_EQ(reasons[LW_REASON_DEADLINE], NC / 3);
  CHECK_EQ(reasons[LW_REASON_ABORT], NC / 3 + 1);
  CHECK_EQ(reasons[LW_REASON_NAIVE], NC / 3);
  CHECK_EQ(stress_srv_closes, nsrv);
  CHECK_EQ(lw_loop_close(loop), 0);
  printf("PASS test_win_close\n");
  return 0;
}
