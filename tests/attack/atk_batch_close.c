/* atk_batch_close.c - input the kernel handed to a recv whose CQE is still unreaped is
 * neither delivered nor counted. Two accepted connections A and B, both reading. From a
 * timer, B's peer sends 1 byte, then A's peer sends 100 bytes (same thread: both
 * receives complete before the loop waits again). B's read callback ends A with
 * lw_close_naive (mode n) or lw_abort (mode a).
 * Expected (epoll, the held_input rule): A's 100 bytes were never seen by the
 * application, so on_close(A) reports unread_discarded=100, and a naive close is an RST
 * (rst=1), and A's peer reads ECONNRESET. Unless A's read callback got them first
 * (then 0 is right; the program says which). */
#include "atk.h"

static lw_conn *ca, *cb;
static int pa, pb, mode, a_seen, a_closed;
static lw_close_info a_info;
static int nacc;
static void a_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (n > 0)
    a_seen += (int)n;
}
static void b_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (n > 0 && ca) {
    if (mode == 'n')
      lw_close_naive(ca);
    else
      lw_abort(ca);
  }
}
static void a_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  a_info = *in;
  a_closed = 1;
}
static void on_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  if (nacc++ == 0) {
    ca = c;
    lw_conn_on_close(c, a_close);
    lw_conn_read_start(c, a_read);
  } else {
    cb = c;
    lw_conn_read_start(c, b_read);
  }
}
static void fire(lw_timer *t) {
  (void)t;
  char x = 'b', y[100];
  memset(y, 'a', sizeof(y));
  send(pb, &x, 1, 0);
  send(pa, y, sizeof(y), 0);
}

int main(int argc, char **argv) {
  mode = argc > 1 ? argv[1][0] : 'n';
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, on_accept, &l);
  pa = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 30);
  pb = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 30);
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, fire, 1, 0);
  atk_run_until(loop, &a_closed, 500);
  char buf[16];
  struct pollfd pfd = {.fd = pa, .events = POLLIN};
  poll(&pfd, 1, 200);
  ssize_t r = recv(pa, buf, sizeof(buf), MSG_DONTWAIT);
  int perr = r < 0 ? errno : 0;
  printf("mode %s: A's read callback saw %d bytes; on_close(A): reason=%s rst=%d "
         "unread_discarded=%llu; A's peer: recv=%zd %s\n",
         mode == 'n' ? "naive" : "abort", a_seen, lw_reason_name(a_info.reason), a_info.rst,
         (unsigned long long)a_info.unread_discarded, r, perr ? strerror(perr) : "");
  CHECK(a_closed, "A not closed");
  CHECK(a_seen + (int)a_info.unread_discarded == 100,
        "100 bytes sent to A: %d delivered + %llu counted unread", a_seen,
        (unsigned long long)a_info.unread_discarded);
  if (mode == 'n' && a_seen == 0)
    CHECK(a_info.rst == 1 && perr == ECONNRESET, "naive close with unread input: no RST");
  lw_timer_free(t);
  close(pa);
  close(pb);
  lw_abort(cb);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int rc = atk_end(mode == 'n' ? "atk_batch_close naive" : "atk_batch_close abort", loop);
  lw_loop_close(loop);
  return rc;
}
