/* atk_close_truths.c - what lw_close_info says against what happened on the wire.
 * One scenario per argument (ctest runs each on both backends):
 *   rst_unseen   the peer sends 10 bytes and resets while the server is not reading; the
 *                server then lw_close()s. Header: initiator = who sent the first FIN or RST
 *                "before the peer's FIN or RST had reached this side's kernel (read by the
 *                application or not)": expected peer-reset, initiator PEER, rst 1,
 *                unread_discarded 10.
 *   shut_refused lw_shutdown() on a connect to a closed port. Header: a refused connect is
 *                the peer's RST: initiator PEER (nothing of ours was sent).
 *   linger_quiet linger_time_ms (100) < linger_timeout_ms (3000); the peer reads our bytes
 *                and then stays silent (no byte, no FIN). Header: linger_time_ms resets "a
 *                peer still sending"; a silent peer gets "plain close(), no RST".
 *   shut_connect lw_shutdown() before the connect completes, then lw_conn_write (must be
 *                refused: LW_ESHUTDOWN); the server must see EOF with 0 bytes; the client
 *                ends graceful, initiator LOCAL, time_wait 1 once the server closes.
 *   eof_write    peer sends "x" + FIN; from the EOF callback the server writes 1 MiB and
 *                lw_close()s; the peer reads all then closes: peer-closed-first,
 *                initiator PEER, time_wait 0, bytes_acked == 1 MiB, peer got 1 MiB.
 * Every scenario also checks acked <= sent <= queued and queued == acked +
 * unsent_discarded when acked_known. */
#include "atk.h"

static lw_loop *loop;
static lw_conn *srv;
static int closed, cclosed, connst = 99;
static lw_close_info info, cinfo;
static uint64_t rcvd;
static const char *scen;

static void invariants(const char *who, const lw_close_info *in) {
  CHECK(in->bytes_acked <= in->bytes_sent && in->bytes_sent <= in->bytes_queued,
        "%s: acked %llu sent %llu queued %llu", who, (unsigned long long)in->bytes_acked,
        (unsigned long long)in->bytes_sent, (unsigned long long)in->bytes_queued);
  if (in->acked_known)
    CHECK(in->bytes_queued == in->bytes_acked + in->unsent_discarded,
          "%s: queued %llu != acked %llu + unsent_discarded %llu", who,
          (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_acked,
          (unsigned long long)in->unsent_discarded);
  CHECK(!(in->rst && in->time_wait), "%s: time_wait=1 on a connection that ended with an RST",
        who);
}

static void show(const char *who, const lw_close_info *in) {
  printf("%s %s: reason=%s init=%d rst=%d err=%s q=%llu s=%llu a=%llu(k%d) ud=%llu rd=%llu "
         "rcv=%llu tw=%d close_ms=%llu\n",
         scen, who, lw_reason_name(in->reason), in->initiator, in->rst,
         lw_err_name(in->os_error), (unsigned long long)in->bytes_queued,
         (unsigned long long)in->bytes_sent, (unsigned long long)in->bytes_acked,
         in->acked_known, (unsigned long long)in->unsent_discarded,
         (unsigned long long)in->unread_discarded, (unsigned long long)in->bytes_received,
         in->time_wait, (unsigned long long)in->close_ms);
}

static void scb(lw_conn *c, const lw_close_info *in) {
  (void)c;
  info = *in;
  closed = 1;
}
static void ccb(lw_conn *c, const lw_close_info *in) {
  (void)c;
  cinfo = *in;
  cclosed = 1;
}
static void rd_count(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (n > 0)
    rcvd += (uint64_t)n;
}
static char big[1 << 20];
static void rd_eof_write(lw_conn *c, long n, const char *b) {
  (void)b;
  if (n > 0) {
    rcvd += (uint64_t)n;
    return;
  }
  int r = lw_conn_write(c, big, sizeof(big), NULL, NULL);
  CHECK(r >= 0, "write from EOF callback: %s", lw_err_name(r));
  lw_close(c, 5000);
}
static lw_read_cb acc_rd;
static void acc(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  srv = c;
  lw_conn_on_close(c, scb);
  if (acc_rd)
    lw_conn_read_start(c, acc_rd);
}
static void conn_cb(lw_conn *c, int st) {
  (void)c;
  connst = st;
}

static void linger0_close(int fd) {
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
}

static int sc_rst_unseen(lw_listener *l) {
  acc_rd = NULL; /* never reads */
  int p = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 30);
  CHECK(write(p, "0123456789", 10) == 10, "write");
  atk_run_for(loop, 20);
  linger0_close(p);
  atk_run_for(loop, 50);
  CHECK(srv && !closed, "accepted and not closed yet");
  if (!srv || closed)
    return 0;
  int r = lw_close(srv, 2000);
  atk_run_until(loop, &closed, 3000);
  CHECK(closed, "no on_close within 3 s (lw_close returned %s)", lw_err_name(r));
  if (!closed)
    return 0;
  show("server", &info);
  invariants("server", &info);
  CHECK(info.reason == LW_REASON_PEER_RESET, "reason %s, expected peer-reset",
        lw_reason_name(info.reason));
  CHECK(info.initiator == LW_INITIATOR_PEER, "initiator %d, expected PEER (its RST came first)",
        info.initiator);
  CHECK(info.rst == 1, "rst %d", info.rst);
  CHECK(info.unread_discarded == 10, "unread_discarded %llu, expected 10",
        (unsigned long long)info.unread_discarded);
  return 0;
}

static int sc_shut_refused(void) {
  int port;
  int lfd = atk_listen(&port);
  close(lfd); /* a port nobody listens on */
  lw_conn *c;
  int r = lw_conn_connect(loop, "127.0.0.1", port, NULL, conn_cb, &c);
  if (r < 0) {
    CHECK(0, "connect: %s", lw_err_name(r));
    return 0;
  }
  lw_conn_on_close(c, ccb);
  r = lw_shutdown(c);
  CHECK(r == 0, "lw_shutdown while connecting: %s", lw_err_name(r));
  atk_run_until(loop, &cclosed, 2000);
  CHECK(cclosed, "no on_close");
  if (!cclosed)
    return 0;
  show("client", &cinfo);
  invariants("client", &cinfo);
  CHECK(connst == LW_ECONNREFUSED, "connect status %s", lw_err_name(connst));
  CHECK(cinfo.os_error == LW_ECONNREFUSED, "os_error %s", lw_err_name(cinfo.os_error));
  CHECK(cinfo.initiator == LW_INITIATOR_PEER,
        "initiator %d, expected PEER (refused: its RST; our FIN never left)", cinfo.initiator);
  return 0;
}

static int sc_linger_quiet(lw_listener *l) {
  acc_rd = rd_count;
  int p = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 30);
  if (!srv) {
    CHECK(0, "no accept");
    return 0;
  }
  lw_conn_write(srv, "hello", 5, NULL, NULL);
  uint64_t t0 = atk_now();
  lw_close(srv, 10000);
  atk_run_for(loop, 30);
  char b[64];
  ssize_t n = recv(p, b, sizeof(b), MSG_DONTWAIT);
  CHECK(n == 5, "peer read %zd", n);
  atk_run_until(loop, &closed, 6000);
  uint64_t took = atk_now() - t0;
  CHECK(closed, "no on_close in 6 s");
  if (!closed)
    return 0;
  show("server", &info);
  invariants("server", &info);
  /* what the peer sees after our FIN: nothing more (plain close) or an RST */
  struct pollfd pf = {p, POLLIN, 0};
  poll(&pf, 1, 200);
  n = recv(p, b, sizeof(b), MSG_DONTWAIT); /* our FIN: 0 */
  struct tcp_info ti;
  socklen_t tl = sizeof(ti);
  memset(&ti, 0, sizeof(ti));
  getsockopt(p, IPPROTO_TCP, TCP_INFO, &ti, &tl);
  int pst = ti.tcpi_state; /* 8 CLOSE_WAIT after a plain close; 7 CLOSE after an RST */
  int perr = pst == 7 ? ECONNRESET : 0;
  printf("linger_quiet: on_close after %llu ms; peer recv=%zd, peer tcp state %d (%s)\n",
         (unsigned long long)took, n, pst, pst == 7 ? "CLOSE: reset" : "not reset");
  CHECK(info.reason == LW_REASON_LINGER_TIMEOUT, "reason %s", lw_reason_name(info.reason));
  CHECK(info.rst == 0 && perr != ECONNRESET,
        "a silent peer (nothing unread, no byte sent) was reset after linger_time_ms: rst=%d "
        "peer errno=%s (header: linger_time_ms is for a peer still sending)",
        info.rst, perr ? strerror(perr) : "none");
  close(p);
  return 0;
}

static int sc_shut_connect(lw_listener *l) {
  acc_rd = rd_count;
  lw_conn *c;
  int r = lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, conn_cb, &c);
  if (r < 0) {
    CHECK(0, "connect: %s", lw_err_name(r));
    return 0;
  }
  lw_conn_on_close(c, ccb);
  r = lw_shutdown(c);
  CHECK(r == 0, "lw_shutdown while connecting: %s", lw_err_name(r));
  r = lw_conn_write(c, "late", 4, NULL, NULL);
  CHECK(r == LW_ESHUTDOWN, "write after lw_shutdown while connecting: %s (expected ESHUTDOWN)",
        lw_err_name(r));
  lw_conn_read_start(c, rd_count);
  atk_run_until(loop, &closed, 3000);
  atk_run_until(loop, &cclosed, 3000);
  CHECK(connst == 0, "connect status %s", lw_err_name(connst));
  CHECK(closed && cclosed, "closed srv %d cli %d", closed, cclosed);
  if (!closed || !cclosed)
    return 0;
  show("server", &info);
  show("client", &cinfo);
  invariants("server", &info);
  invariants("client", &cinfo);
  CHECK(info.bytes_received == 0, "server received %llu",
        (unsigned long long)info.bytes_received);
  CHECK(info.reason == LW_REASON_PEER_CLOSED_FIRST && info.initiator == LW_INITIATOR_PEER,
        "server reason %s init %d", lw_reason_name(info.reason), info.initiator);
  CHECK(cinfo.reason == LW_REASON_GRACEFUL && cinfo.initiator == LW_INITIATOR_LOCAL &&
            cinfo.time_wait == 1 && cinfo.rst == 0,
        "client reason %s init %d tw %d rst %d", lw_reason_name(cinfo.reason), cinfo.initiator,
        cinfo.time_wait, cinfo.rst);
  CHECK(info.time_wait == 0, "server time_wait %d", info.time_wait);
  return 0;
}

static int sc_eof_write(lw_listener *l) {
  acc_rd = rd_eof_write;
  int p = atk_connect(lw_listener_port(l));
  CHECK(write(p, "x", 1) == 1, "write");
  shutdown(p, SHUT_WR);
  uint64_t got = 0, end = atk_now() + 5000;
  char b[65536];
  int eof = 0;
  fcntl(p, F_SETFL, O_NONBLOCK);
  while (!eof && atk_now() < end) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    ssize_t n = recv(p, b, sizeof(b), 0);
    if (n > 0)
      got += (uint64_t)n;
    else if (n == 0)
      eof = 1;
    else if (errno != EAGAIN) {
      CHECK(0, "peer recv: %s", strerror(errno));
      break;
    } else {
      struct pollfd pf = {p, POLLIN, 0};
      poll(&pf, 1, 1);
    }
  }
  close(p);
  atk_run_until(loop, &closed, 3000);
  CHECK(closed, "no on_close");
  if (!closed)
    return 0;
  show("server", &info);
  invariants("server", &info);
  printf("eof_write: peer got %llu eof=%d\n", (unsigned long long)got, eof);
  CHECK(got == sizeof(big) && eof, "peer got %llu of %zu, eof %d", (unsigned long long)got,
        sizeof(big), eof);
  CHECK(info.reason == LW_REASON_PEER_CLOSED_FIRST && info.initiator == LW_INITIATOR_PEER &&
            info.time_wait == 0 && info.rst == 0,
        "reason %s init %d tw %d rst %d", lw_reason_name(info.reason), info.initiator,
        info.time_wait, info.rst);
  CHECK(info.bytes_acked == sizeof(big) && info.acked_known, "acked %llu known %d",
        (unsigned long long)info.bytes_acked, info.acked_known);
  return 0;
}

int main(int argc, char **argv) {
  scen = argc > 1 ? argv[1] : "rst_unseen";
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  if (!strcmp(scen, "linger_quiet")) {
    o.linger_time_ms = 100;
    o.linger_timeout_ms = 3000;
  }
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 16, &o, acc, &l) < 0)
    return 2;
  if (!strcmp(scen, "rst_unseen"))
    sc_rst_unseen(l);
  else if (!strcmp(scen, "shut_refused"))
    sc_shut_refused();
  else if (!strcmp(scen, "linger_quiet"))
    sc_linger_quiet(l);
  else if (!strcmp(scen, "shut_connect"))
    sc_shut_connect(l);
  else if (!strcmp(scen, "eof_write"))
    sc_eof_write(l);
  else {
    fprintf(stderr, "unknown scenario %s\n", scen);
    return 2;
  }
  if (srv && !closed)
    lw_abort(srv);
  lw_listener_close(l);
  atk_run_for(loop, 50);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  char name[64];
  snprintf(name, sizeof(name), "atk_close_truths %s", scen);
  int rc = atk_end(name, loop);
  lw_loop_close(loop);
  return rc;
}
