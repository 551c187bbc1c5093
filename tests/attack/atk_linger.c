/* atk_linger.c - the lingering close under attack by raw-socket peers (same thread,
 * non-blocking, driven between loop iterations). One scenario per argument:
 *   flood_noread  server writes 4 MiB, lw_close(c, 1500); the peer floods and never reads.
 *                 Expected: DEADLINE at ~1500 ms (close_ms in [1500, 1800]), rst 1,
 *                 unread_discarded > 0, queued == acked + unsent_discarded.
 *   flood_slow    server writes 2 MiB, lw_close(c, 10000), linger_time_ms 1000; the peer
 *                 floods while reading 64 KiB every 20 ms. Expected: the peer gets all
 *                 2 MiB (the rule: no RST while a byte we wrote is unacknowledged) and the
 *                 close ends linger-timeout, rst 1 (still sending), within ~1 s of acked.
 *   drip          linger_timeout_ms 200: the peer reads our 5 bytes, then sends 1 byte
 *                 every 190..210 ms (at the boundary) for 3 s. Whatever ends it, rst must
 *                 match the wire: rst 0 only if the peer's socket was not reset.
 *   rst_flush     peer with a 4 KiB receive buffer; server writes 8 MiB, lw_close(c, 20000);
 *                 the peer resets (FLUSHING). Expected: peer-reset within 300 ms,
 *                 initiator PEER (no FIN of ours had reached the kernel), rst 1.
 *   rst_linger    server writes 5 bytes, lw_close(c, 20000); the peer reads, keeps sending
 *                 (no FIN) then resets (LINGER). Expected: peer-reset within 300 ms,
 *                 initiator LOCAL (our FIN first), rst 1, acked 5.
 *   rst_ackwait   peer with a 4 KiB receive buffer; server writes 300 KiB, lw_close; the
 *                 peer sends its FIN without reading, then resets (ACK_WAIT). Expected:
 *                 peer-reset within 300 ms, rst 1, initiator LOCAL, time_wait 0 (every
 *                 scenario: an RST leaves no TIME_WAIT, so rst 1 with time_wait 1 is a lie).
 *   halfclose_send the server lw_shutdown()s; the peer goes on sending 1 MiB, then FIN;
 *                 the server reads it all. Expected: graceful, initiator LOCAL,
 *                 time_wait 1, bytes_received 1 MiB, unread_discarded 0. */
#include "atk.h"

static lw_loop *loop;
static lw_conn *srv;
static int closed;
static lw_close_info info;
static uint64_t srv_rcvd, closed_at;
static const char *scen;
static char blob[8 << 20];

static void show(const lw_close_info *in) {
  printf("%s: reason=%s init=%d rst=%d err=%s q=%llu s=%llu a=%llu(k%d) ud=%llu rd=%llu "
         "rcv=%llu tw=%d close_ms=%llu\n",
         scen, lw_reason_name(in->reason), in->initiator, in->rst, lw_err_name(in->os_error),
         (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_sent,
         (unsigned long long)in->bytes_acked, in->acked_known,
         (unsigned long long)in->unsent_discarded, (unsigned long long)in->unread_discarded,
         (unsigned long long)in->bytes_received, in->time_wait,
         (unsigned long long)in->close_ms);
  CHECK(in->bytes_acked <= in->bytes_sent && in->bytes_sent <= in->bytes_queued,
        "acked <= sent <= queued broken");
  if (in->acked_known)
    CHECK(in->bytes_queued == in->bytes_acked + in->unsent_discarded,
          "queued != acked + unsent_discarded");
  CHECK(!(in->rst && in->time_wait),
        "time_wait=1 on a connection that ended with an RST (an RST leaves no TIME_WAIT)");
}
static void scb(lw_conn *c, const lw_close_info *in) {
  (void)c;
  info = *in;
  closed = 1;
  closed_at = atk_now();
}
static void rd(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (n > 0)
    srv_rcvd += (uint64_t)n;
}
static void acc(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  srv = c;
  lw_conn_on_close(c, scb);
  lw_conn_read_start(c, rd);
}

static int peer_connect(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    perror("connect");
    exit(2);
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}
static void peer_rst(int fd) {
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
}
static int peer_state(int fd) {
  struct tcp_info ti;
  socklen_t tl = sizeof(ti);
  memset(&ti, 0, sizeof(ti));
  getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
  return ti.tcpi_state;
}
static uint64_t peer_drain(int fd, size_t max, int *eof, int *err) {
  static char b[65536];
  uint64_t got = 0;
  while (max > 0) {
    ssize_t n = recv(fd, b, max < sizeof(b) ? max : sizeof(b), 0);
    if (n > 0) {
      got += (uint64_t)n;
      max -= (size_t)n;
      continue;
    }
    if (n == 0)
      *eof = 1;
    else if (errno != EAGAIN)
      *err = errno;
    break;
  }
  return got;
}
static void spin(int ms) { /* the loop, without blocking for long */
  uint64_t end = atk_now() + (uint64_t)ms;
  while (atk_now() < end) {
    lw_loop_run(loop, LW_RUN_NOWAIT);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}
static void accept_wait(void) {
  uint64_t end = atk_now() + 1000;
  while (!srv && atk_now() < end)
    spin(1);
  if (!srv) {
    fprintf(stderr, "no accept\n");
    exit(2);
  }
}

static void sc_flood_noread(int port) {
  int p = peer_connect(port, 0);
  accept_wait();
  lw_conn_write(srv, blob, 4 << 20, NULL, NULL);
  lw_close(srv, 1500);
  uint64_t t0 = atk_now(), sent = 0;
  while (!closed && atk_now() < t0 + 4000) {
    ssize_t n = send(p, blob, 65536, MSG_NOSIGNAL);
    if (n > 0)
      sent += (uint64_t)n;
    spin(1);
  }
  CHECK(closed, "no on_close within 4 s");
  if (!closed)
    return;
  show(&info);
  printf("flood_noread: peer sent %llu; on_close after %llu ms\n", (unsigned long long)sent,
         (unsigned long long)(closed_at - t0));
  CHECK(info.reason == LW_REASON_DEADLINE && info.rst, "reason %s rst %d",
        lw_reason_name(info.reason), info.rst);
  CHECK(info.close_ms >= 1500 && info.close_ms <= 1800, "close_ms %llu",
        (unsigned long long)info.close_ms);
  CHECK(info.unread_discarded > 0, "unread_discarded 0 though the peer flooded");
  close(p);
}

static void sc_flood_slow(int port) {
  int p = peer_connect(port, 0);
  accept_wait();
  lw_conn_write(srv, blob, 2 << 20, NULL, NULL);
  lw_close(srv, 10000);
  uint64_t t0 = atk_now(), got = 0, sent = 0, last_read = 0;
  int eof = 0, err = 0;
  while (atk_now() < t0 + 8000 && !err) {
    ssize_t n = send(p, blob, 65536, MSG_NOSIGNAL);
    if (n > 0)
      sent += (uint64_t)n;
    if (atk_now() >= last_read + 20) {
      got += peer_drain(p, 65536, &eof, &err);
      last_read = atk_now();
    }
    spin(1);
    if (closed && atk_now() > closed_at + 200)
      break;
  }
  /* what the peer's kernel still holds for it */
  for (int i = 0; i < 100 && !eof && !err; i++)
    got += peer_drain(p, 1 << 20, &eof, &err);
  CHECK(closed, "no on_close");
  if (!closed)
    return;
  show(&info);
  printf("flood_slow: peer got %llu of %u (eof %d err %s), sent %llu; on_close after %llu ms\n",
         (unsigned long long)got, 2u << 20, eof, err ? strerror(err) : "-",
         (unsigned long long)sent, (unsigned long long)(closed_at - t0));
  CHECK(got == (2u << 20), "the peer lost part of the response: %llu of %u",
        (unsigned long long)got, 2u << 20);
  CHECK(info.reason == LW_REASON_LINGER_TIMEOUT && info.rst, "reason %s rst %d",
        lw_reason_name(info.reason), info.rst);
  close(p);
}

static void sc_drip(int port) {
  int p = peer_connect(port, 0);
  accept_wait();
  lw_conn_write(srv, "hello", 5, NULL, NULL);
  lw_close(srv, 10000);
  uint64_t t0 = atk_now(), next = t0 + 30;
  int eof = 0, err = 0, i = 0, sent = 0;
  while (!closed && atk_now() < t0 + 3000) {
    peer_drain(p, 65536, &eof, &err);
    if (atk_now() >= next) {
      if (send(p, "d", 1, MSG_NOSIGNAL) == 1)
        sent++;
      next = atk_now() + 190 + (uint64_t)(i++ % 3) * 10;
    }
    spin(1);
  }
  spin(50);
  int st = peer_state(p);
  if (!closed) {
    printf("drip: still lingering after 3 s (sent %d)\n", sent);
    close(p);
    return;
  }
  show(&info);
  printf("drip: peer sent %d bytes, peer state %d (7 = CLOSE: reset)\n", sent, st);
  CHECK((st == 7) == (info.rst != 0), "rst=%d but the peer's socket is %s", info.rst,
        st == 7 ? "reset" : "not reset");
  close(p);
}

static void sc_rst_stage(int port, const char *stage) {
  int rb = !strcmp(stage, "linger") ? 0 : 4096;
  int p = peer_connect(port, rb);
  accept_wait();
  size_t len = !strcmp(stage, "flush") ? (8u << 20) : !strcmp(stage, "linger") ? 5 : 300 * 1024;
  lw_conn_write(srv, blob, len, NULL, NULL);
  lw_close(srv, 20000);
  int eof = 0, err = 0;
  spin(100);
  if (!strcmp(stage, "linger")) {
    peer_drain(p, 65536, &eof, &err);
    send(p, "more input", 10, MSG_NOSIGNAL);
    spin(50);
  } else if (!strcmp(stage, "ackwait")) {
    shutdown(p, SHUT_WR);
    spin(100);
  }
  CHECK(!closed, "closed before the reset (%s)", closed ? lw_reason_name(info.reason) : "");
  uint64_t t0 = atk_now();
  peer_rst(p);
  while (!closed && atk_now() < t0 + 3000)
    spin(1);
  CHECK(closed, "no on_close within 3 s of the peer's RST");
  if (!closed)
    return;
  show(&info);
  printf("rst_%s: on_close %llu ms after the peer's RST\n", stage,
         (unsigned long long)(closed_at - t0));
  CHECK(closed_at - t0 <= 300, "on_close %llu ms after the RST",
        (unsigned long long)(closed_at - t0));
  CHECK(info.reason == LW_REASON_PEER_RESET && info.rst, "reason %s rst %d",
        lw_reason_name(info.reason), info.rst);
  lw_initiator want = !strcmp(stage, "flush") ? LW_INITIATOR_PEER : LW_INITIATOR_LOCAL;
  CHECK(info.initiator == want, "initiator %d, expected %d", info.initiator, want);
  if (!strcmp(stage, "linger"))
    CHECK(info.bytes_acked == 5 && info.unread_discarded == 10, "acked %llu unread %llu",
          (unsigned long long)info.bytes_acked, (unsigned long long)info.unread_discarded);
}

static void sc_halfclose_send(int port) {
  int p = peer_connect(port, 0);
  accept_wait();
  int r = lw_shutdown(srv);
  CHECK(r == 0, "lw_shutdown %s", lw_err_name(r));
  uint64_t t0 = atk_now(), sent = 0;
  int eof = 0, err = 0;
  while (sent < (1u << 20) && atk_now() < t0 + 3000) {
    ssize_t n =
        send(p, blob, (1u << 20) - sent < 65536 ? (1u << 20) - sent : 65536, MSG_NOSIGNAL);
    if (n > 0)
      sent += (uint64_t)n;
    peer_drain(p, 65536, &eof, &err);
    spin(1);
  }
  shutdown(p, SHUT_WR);
  while (!closed && atk_now() < t0 + 4000) {
    peer_drain(p, 65536, &eof, &err);
    spin(1);
  }
  CHECK(closed, "no on_close");
  if (!closed)
    return;
  show(&info);
  CHECK(eof, "peer saw no FIN");
  CHECK(info.reason == LW_REASON_GRACEFUL && info.initiator == LW_INITIATOR_LOCAL &&
            info.time_wait == 1 && !info.rst,
        "reason %s init %d tw %d rst %d", lw_reason_name(info.reason), info.initiator,
        info.time_wait, info.rst);
  CHECK(info.bytes_received == (1u << 20) && srv_rcvd == (1u << 20) &&
            info.unread_discarded == 0,
        "received %llu (cb %llu) unread %llu", (unsigned long long)info.bytes_received,
        (unsigned long long)srv_rcvd, (unsigned long long)info.unread_discarded);
  close(p);
}

int main(int argc, char **argv) {
  scen = argc > 1 ? argv[1] : "flood_noread";
  memset(blob, 'z', sizeof(blob));
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  if (!strcmp(scen, "flood_slow"))
    o.linger_time_ms = 1000;
  if (!strcmp(scen, "drip"))
    o.linger_timeout_ms = 200;
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 16, &o, acc, &l) < 0)
    return 2;
  int port = lw_listener_port(l);
  if (!strcmp(scen, "flood_noread"))
    sc_flood_noread(port);
  else if (!strcmp(scen, "flood_slow"))
    sc_flood_slow(port);
  else if (!strcmp(scen, "drip"))
    sc_drip(port);
  else if (!strcmp(scen, "rst_flush"))
    sc_rst_stage(port, "flush");
  else if (!strcmp(scen, "rst_linger"))
    sc_rst_stage(port, "linger");
  else if (!strcmp(scen, "rst_ackwait"))
    sc_rst_stage(port, "ackwait");
  else if (!strcmp(scen, "halfclose_send"))
    sc_halfclose_send(port);
  else {
    fprintf(stderr, "unknown scenario\n");
    return 2;
  }
  if (srv && !closed)
    lw_abort(srv);
  lw_listener_close(l);
  spin(20);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  char name[64];
  snprintf(name, sizeof(name), "atk_linger %s", scen);
  int rc = atk_end(name, loop);
  lw_loop_close(loop);
  return rc;
}
