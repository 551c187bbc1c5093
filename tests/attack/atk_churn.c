/* atk_churn.c - read_stop/read_start/set_read_size churn from timers and from inside read
 * callbacks (own and other connections), while 40 peers stream a pattern (byte i of a
 * stream = (i*7 + id) & 0xff) in random chunks and then send FIN.
 * Checks: every byte in order, no read callback while the app has reading stopped, no
 * callback bigger than the read size in force when the callback began... (not checked:
 * see atk_read_size), EOF exactly once after all bytes, exactly one on_close,
 * no callback after on_close. Bounded: 256 KB per peer, 8 s. */
#include "atk.h"
#include <pthread.h>

#define N 40
#define PER (256 * 1024)
typedef struct st {
  lw_conn *c;
  int id, reading, eofs, closes, after, bad_order, while_stopped;
  long got;
} st;
static st S[N];
static int peer_fd[N], nacc, port, closed_all;
static unsigned rng = 777;
static unsigned rnd(void) {
  rng = rng * 1103515245u + 12345u;
  return rng >> 16;
}

static void *peers(void *arg) {
  (void)arg;
  long sent[N] = {0};
  unsigned r = 99;
  char buf[8192];
  uint64_t end = atk_now() + 6000;
  int left = N;
  while (left > 0 && atk_now() < end) {
    for (int i = 0; i < N; i++) {
      if (sent[i] < 0)
        continue;
      r = r * 1103515245u + 12345u;
      long n = 1 + (r >> 16) % sizeof(buf);
      if (n > PER - sent[i])
        n = PER - sent[i];
      for (long k = 0; k < n; k++)
        buf[k] = (char)(((sent[i] + k) * 7 + i) & 0xff);
      ssize_t w = send(peer_fd[i], buf, (size_t)n, MSG_DONTWAIT);
      if (w > 0)
        sent[i] += w;
      if (sent[i] == PER) {
        shutdown(peer_fd[i], SHUT_WR);
        sent[i] = -1;
        left--;
      }
    }
    usleep(200);
  }
  return NULL;
}
static void rcb(lw_conn *c, long n, const char *b);
static void toggle(st *s) {
  if (!s->c || s->closes)
    return;
  if (s->reading) {
    s->reading = 0;
    lw_conn_read_stop(s->c);
  } else {
    s->reading = 1;
    if (lw_conn_read_start(s->c, rcb) != 0)
      s->reading = 0;
  }
}
static void rcb(lw_conn *c, long n, const char *b) {
  st *s = lw_conn_get_data(c);
  if (s->closes)
    s->after++;
  if (!s->reading)
    s->while_stopped++;
  if (n > 0) {
    if (s->eofs)
      s->bad_order++;
    for (long k = 0; k < n; k++)
      if ((unsigned char)b[k] != (unsigned char)(((s->got + k) * 7 + s->id) & 0xff)) {
        s->bad_order++;
        break;
      }
    s->got += n;
  } else if (n == LW_EOF) {
    s->eofs++;
    return;
  }
  unsigned r = rnd() % 8;
  if (r == 0)
    toggle(s); /* stop (or restart) self */
  else if (r == 1) {
    toggle(s);
    toggle(s);
  } /* stop+start in the callback */
  else if (r == 2)
    toggle(&S[rnd() % N]); /* another connection */
  else if (r == 3)
    lw_conn_set_read_size(c, 1 + rnd() % 3000);
}
static void ccb(lw_conn *c, const lw_close_info *in) {
  (void)in;
  st *s = lw_conn_get_data(c);
  s->closes++;
  s->c = NULL;
  closed_all++;
}
static void on_accept(lw_listener *l, lw_conn *c, int stt) {
  (void)l;
  if (stt)
    return;
  st *s = &S[nacc];
  /* match by the peer's port order: peers connect one by one, accept in order */
  s->id = nacc++;
  s->c = c;
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, ccb);
  s->reading = 1;
  lw_conn_read_start(c, rcb);
}
static void tick(lw_timer *t) {
  (void)t;
  for (int k = 0; k < 3; k++)
    toggle(&S[rnd() % N]);
  for (int i = 0; i < N; i++) /* never leave one stopped for long */
    if (S[i].c && !S[i].reading && rnd() % 4 == 0)
      toggle(&S[i]);
}

int main(void) {
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  lw_listener_new(loop, "127.0.0.1", 0, 128, NULL, on_accept, &l);
  port = lw_listener_port(l);
  for (int i = 0; i < N; i++) {
    peer_fd[i] = atk_connect(port);
    int dummy = 0;
    atk_run_until(loop, &dummy, 5);
    (void)dummy;
    while (nacc <= i)
      lw_loop_run(loop, LW_RUN_ONCE);
  }
  pthread_t th;
  pthread_create(&th, NULL, peers, NULL);
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, tick, 1, 1);
  uint64_t end = atk_now() + 8000;
  while (closed_all < N && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(t);
  pthread_join(th, NULL);
  int fails = 0;
  for (int i = 0; i < N; i++) {
    st *s = &S[i];
    if (s->got != PER || s->eofs != 1 || s->closes != 1 || s->after || s->bad_order ||
        s->while_stopped) {
      if (fails++ < 5)
        printf("conn %d: got %ld/%d eofs %d closes %d after %d bad_order %d while_stopped %d\n",
               i, s->got, PER, s->eofs, s->closes, s->after, s->bad_order, s->while_stopped);
    }
  }
  CHECK(fails == 0, "%d connections misbehaved", fails);
  for (int i = 0; i < N; i++) {
    if (S[i].c)
      lw_abort(S[i].c);
    close(peer_fd[i]);
  }
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int rc = atk_end("atk_churn", loop);
  CHECK(lw_loop_close(loop) == 0, "loop close");
  return rc;
}
