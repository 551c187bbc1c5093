/* atk_cb_combo.c - termination calls stacked inside callbacks, and timers at extremes.
 * Each case checks the return codes the header promises, exactly one on_close, and the
 * reason. One line of facts per case; exit 1 on a broken promise.
 *   close_abort    read cb: write 256 KiB, lw_close, lw_abort -> 0, 0; abort, rst 1
 *   shut_close     read cb: write, lw_shutdown, lw_close, write -> 0, 0, ECLOSING;
 *                  the peer gets the bytes and a FIN; graceful
 *   abort_close    read cb: lw_abort, lw_close, lw_shutdown, lw_close_naive -> EALREADY x3
 *   naive_linger   lw_close with the peer flooding, then lw_close_naive from a timer:
 *                  naive, rst 1 (input unread), unread_discarded counted
 *   conn_close     lw_close on a connecting conn: ABORT, connect_cb status != 0, one on_close
 *   conn_shut_close lw_shutdown then lw_close on a connecting conn: ABORT, one on_close
 *   timer_max      lw_timer_start(UINT64_MAX, 0) must not fire; (1, UINT64_MAX) fires once
 *   deadline_1     lw_close(c, 1) with 8 MiB queued to a peer that does not read:
 *                  deadline, close_ms <= 20, on_close within 100 ms
 *   once_returns   a due timer and a guard timer 2 s out: lw_loop_run(LW_RUN_ONCE) runs
 *                  the due callback -- must it then sleep until the guard? Header: "one
 *                  iteration, waiting for events if needed". Reported as a fact; fails
 *                  if it blocks > 1 s after having run a callback. */
#include "atk.h"

static lw_loop *loop;
static lw_conn *srv;
static int closes, connst = 99, rets[4];
static lw_close_info info;
static const char *scen;
static char blob[8 << 20];

static uint64_t close_at;
static void scb(lw_conn *c, const lw_close_info *in) {
  (void)c;
  info = *in;
  close_at = atk_now();
  closes++;
}
static void rd(lw_conn *c, long n, const char *b) {
  (void)b;
  if (n <= 0)
    return;
  if (!strcmp(scen, "close_abort")) {
    lw_conn_write(c, blob, 256 * 1024, NULL, NULL);
    rets[0] = lw_close(c, 5000);
    rets[1] = lw_abort(c);
  } else if (!strcmp(scen, "shut_close")) {
    lw_conn_write(c, "reply", 5, NULL, NULL);
    rets[0] = lw_shutdown(c);
    rets[1] = lw_close(c, 5000);
    rets[2] = lw_conn_write(c, "late", 4, NULL, NULL);
  } else if (!strcmp(scen, "abort_close")) {
    rets[0] = lw_abort(c);
    rets[1] = lw_close(c, 5000);
    rets[2] = lw_shutdown(c);
    rets[3] = lw_close_naive(c);
  }
}
static void acc(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  if (!strncmp(scen, "conn_", 5)) {
    lw_conn_read_start(c, rd);
    return;
  } /* not counted */
  srv = c;
  lw_conn_on_close(c, scb);
  lw_conn_read_start(c, rd);
}
static void ccb(lw_conn *c, int st) {
  (void)c;
  connst = st;
}
static int fired;
static void tcb(lw_timer *t) {
  (void)t;
  fired++;
}

static void show(void) {
  printf("%s: closes=%d reason=%s init=%d rst=%d q=%llu s=%llu a=%llu ud=%llu rd=%llu "
         "close_ms=%llu rets=%s,%s,%s,%s connst=%s\n",
         scen, closes, lw_reason_name(info.reason), info.initiator, info.rst,
         (unsigned long long)info.bytes_queued, (unsigned long long)info.bytes_sent,
         (unsigned long long)info.bytes_acked, (unsigned long long)info.unsent_discarded,
         (unsigned long long)info.unread_discarded, (unsigned long long)info.close_ms,
         lw_err_name(rets[0]), lw_err_name(rets[1]), lw_err_name(rets[2]), lw_err_name(rets[3]),
         lw_err_name(connst));
  if (info.acked_known)
    CHECK(info.bytes_queued == info.bytes_acked + info.unsent_discarded, "queued != a + ud");
}

int main(int argc, char **argv) {
  scen = argc > 1 ? argv[1] : "close_abort";
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, acc, &l) < 0)
    return 2;
  int port = lw_listener_port(l);
  if (!strcmp(scen, "close_abort") || !strcmp(scen, "shut_close") ||
      !strcmp(scen, "abort_close")) {
    int p = atk_connect(port);
    CHECK(write(p, "go", 2) == 2, "write");
    char b[65536];
    uint64_t got = 0;
    int eof = 0;
    fcntl(p, F_SETFL, O_NONBLOCK);
    uint64_t end = atk_now() + 2000;
    while (atk_now() < end && !(closes && eof)) {
      lw_loop_run(loop, LW_RUN_NOWAIT);
      ssize_t n = recv(p, b, sizeof(b), 0);
      if (n > 0)
        got += (uint64_t)n;
      else if (n == 0) {
        if (!eof)
          close(p), p = -1;
        eof = 1;
      } else if (errno != EAGAIN)
        eof = 1;
      if (eof && p >= 0) {
        close(p);
        p = -1;
      }
      struct timespec ts = {0, 500000};
      nanosleep(&ts, NULL);
    }
    if (p >= 0)
      close(p);
    atk_run_for(loop, 50);
    show();
    CHECK(closes == 1, "on_close ran %d times", closes);
    if (!strcmp(scen, "close_abort")) {
      CHECK(rets[0] == 0 && rets[1] == 0, "lw_close %d lw_abort %d", rets[0], rets[1]);
      CHECK(info.reason == LW_REASON_ABORT && info.rst, "reason %s",
            lw_reason_name(info.reason));
    } else if (!strcmp(scen, "shut_close")) {
      CHECK(rets[0] == 0 && rets[1] == 0 && rets[2] == LW_ECLOSING, "rets");
      CHECK(got == 5 && eof, "peer got %llu eof %d", (unsigned long long)got, eof);
      CHECK(info.reason == LW_REASON_GRACEFUL && !info.rst, "reason %s rst %d",
            lw_reason_name(info.reason), info.rst);
    } else {
      CHECK(rets[1] == LW_EALREADY && rets[2] == LW_EALREADY && rets[3] == LW_EALREADY, "rets");
      CHECK(info.reason == LW_REASON_ABORT, "reason %s", lw_reason_name(info.reason));
    }
  } else if (!strcmp(scen, "naive_linger")) {
    int p = atk_connect(port);
    fcntl(p, F_SETFL, O_NONBLOCK);
    atk_run_for(loop, 20);
    lw_conn_write(srv, "bye", 3, NULL, NULL);
    lw_close(srv, 10000);
    uint64_t end = atk_now() + 200;
    while (atk_now() < end) {
      send(p, blob, 65536, MSG_NOSIGNAL);
      lw_loop_run(loop, LW_RUN_NOWAIT);
    }
    rets[0] = lw_close_naive(srv);
    for (int i = 0; i < 20; i++)
      send(p, blob, 65536, MSG_NOSIGNAL);
    atk_run_for(loop, 50);
    show();
    CHECK(closes == 1, "on_close ran %d times", closes);
    CHECK(rets[0] == 0, "naive during linger: %s", lw_err_name(rets[0]));
    CHECK(info.reason == LW_REASON_NAIVE, "reason %s", lw_reason_name(info.reason));
    close(p);
  } else if (!strcmp(scen, "conn_close") || !strcmp(scen, "conn_shut_close")) {
    lw_conn *c;
    int r = lw_conn_connect(loop, "127.0.0.1", port, NULL, ccb, &c);
    CHECK(r == 0, "connect %s", lw_err_name(r));
    lw_conn_on_close(c, scb);
    if (!strcmp(scen, "conn_shut_close"))
      rets[0] = lw_shutdown(c);
    rets[1] = lw_close(c, 1000);
    rets[2] = lw_close(c, 1000);
    atk_run_for(loop, 100);
    show();
    CHECK(closes == 1, "on_close ran %d times", closes);
    CHECK(info.reason == LW_REASON_ABORT, "reason %s", lw_reason_name(info.reason));
    CHECK(rets[2] == LW_EALREADY, "second close %s", lw_err_name(rets[2]));
    if (srv) {
      atk_run_for(loop, 50);
    }
  } else if (!strcmp(scen, "timer_max")) {
    lw_timer *t1, *t2;
    lw_timer_new(loop, &t1);
    lw_timer_new(loop, &t2);
    lw_timer_start(t1, tcb, UINT64_MAX, 0);
    atk_run_for(loop, 50);
    int f1 = fired;
    lw_timer_start(t2, tcb, 1, UINT64_MAX);
    atk_run_for(loop, 50);
    printf("timer_max: UINT64_MAX fired %d times; (1, UINT64_MAX) fired %d times\n", f1,
           fired - f1);
    CHECK(f1 == 0 && fired - f1 == 1, "timers at the extremes");
    lw_timer_free(t1);
    lw_timer_free(t2);
  } else if (!strcmp(scen, "once_returns")) {
    lw_timer *t1, *t2;
    lw_timer_new(loop, &t1);
    lw_timer_new(loop, &t2);
    lw_timer_start(t2, tcb, 2000, 0);
    lw_timer_start(t1, tcb, 0, 0);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* t1 is due before the run starts */
    uint64_t t0 = atk_now();
    lw_loop_run(loop, LW_RUN_ONCE);
    uint64_t took = atk_now() - t0;
    printf("once_returns: fired %d callback(s); LW_RUN_ONCE returned after %llu ms\n", fired,
           (unsigned long long)took);
    CHECK(!(fired >= 1 && took > 1000), "LW_RUN_ONCE slept %llu ms after running a due timer",
          (unsigned long long)took);
    lw_timer_free(t1);
    lw_timer_free(t2);
  } else if (!strcmp(scen, "deadline_1")) {
    int p = atk_connect(port);
    atk_run_for(loop, 20);
    lw_conn_write(srv, blob, sizeof(blob), NULL, NULL);
    uint64_t t0 = atk_now();
    lw_close(srv, 1);
    atk_run_until(loop, &closes,
                  3000); /* a guard timer 3 s out: on_close must not wait for it */
    show();
    uint64_t took = close_at - t0, ret = atk_now() - t0;
    printf(
        "deadline_1: on_close after %llu ms; lw_loop_run(LW_RUN_ONCE) returned after %llu ms\n",
        (unsigned long long)took, (unsigned long long)ret);
    CHECK(took <= 100, "on_close %llu ms after lw_close(c, 1) though close_ms is %llu",
          (unsigned long long)took, (unsigned long long)info.close_ms);
    CHECK(closes == 1 && info.reason == LW_REASON_DEADLINE && info.close_ms <= 20,
          "reason %s close_ms %llu", lw_reason_name(info.reason),
          (unsigned long long)info.close_ms);
    close(p);
  } else {
    fprintf(stderr, "unknown scenario\n");
    return 2;
  }
  if (srv && !closes)
    lw_abort(srv);
  lw_listener_close(l);
  atk_run_for(loop, 20);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  char name[64];
  snprintf(name, sizeof(name), "atk_cb_combo %s", scen);
  int rc = atk_end(name, loop);
  lw_loop_close(loop);
  return rc;
}
