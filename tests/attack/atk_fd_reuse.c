/* atk_fd_reuse.c - fd-number reuse right after lw_abort / lw_close_naive / lw_close,
 * from write callbacks, timers, read callbacks of another connection and on_close,
 * while sendmsgs and recvs are queued or in flight. Every byte is tagged with its
 * connection (each client writes buffers filled with its own id); a sink thread checks
 * that each accepted socket receives only one id and never 0xEE (the poison written
 * into every buffer in its write callback and in on_close). Pipes are opened right
 * after each abort to take the freed numbers: nothing may arrive in them.
 * Checks: exactly one on_close per connection, no callback after on_close, every write
 * callback before on_close. Bounded: ROUNDS connections, 5 s. */
#include "atk.h"
#include <pthread.h>
#include <stdatomic.h>

#define ROUNDS 300
#define WSZ (256 * 1024)
typedef struct cx {
  int id;
  lw_conn *c;
  char *small, *big;
  int closes, after_close, pending_writes, big_done;
  int how;
} cx;
static cx cxs[ROUNDS];
static lw_loop *loop;
static int sink_port, started, finished;
static atomic_int sink_poison, sink_mixed;
static atomic_long sink_bytes;
static atomic_int sink_stop;
static int pipes[ROUNDS * 2][2];
static int npipes;
static unsigned rng = 12345;
static unsigned rnd(void) {
  rng = rng * 1103515245u + 12345u;
  return rng >> 16;
}

static void *sink(void *arg) {
  int lfd = *(int *)arg;
  struct pollfd pf[1024];
  int first[1024];
  int n = 1;
  pf[0].fd = lfd;
  pf[0].events = POLLIN;
  fcntl(lfd, F_SETFL, O_NONBLOCK);
  char buf[65536];
  while (!atomic_load(&sink_stop)) {
    if (poll(pf, (nfds_t)n, 20) <= 0)
      continue;
    if (pf[0].revents & POLLIN) {
      int fd;
      while ((fd = accept(lfd, NULL, NULL)) >= 0 && n < 1024) {
        pf[n].fd = fd;
        pf[n].events = POLLIN;
        first[n] = -1;
        n++;
      }
    }
    for (int i = 1; i < n; i++) {
      if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t r = recv(pf[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (r <= 0) {
        if (r == 0 || errno != EAGAIN) {
          close(pf[i].fd);
          pf[i].fd = -1;
        }
        continue;
      }
      atomic_fetch_add(&sink_bytes, r);
      for (ssize_t k = 0; k < r; k++) {
        unsigned char b = (unsigned char)buf[k];
        if (b == 0xEE) {
          atomic_fetch_add(&sink_poison, 1);
          continue;
        }
        if (first[i] < 0)
          first[i] = b;
        else if (b != first[i]) {
          atomic_fetch_add(&sink_mixed, 1);
        }
      }
    }
  }
  for (int i = 1; i < n; i++)
    if (pf[i].fd >= 0)
      close(pf[i].fd);
  return NULL;
}

static void take_numbers(void) {
  if (npipes < ROUNDS * 2 && pipe2(pipes[npipes], O_NONBLOCK) == 0)
    npipes++;
}
static void end_it(cx *x, int how) {
  if (!x->c || x->closes)
    return;
  if (how == 0)
    lw_abort(x->c);
  else if (how == 1)
    lw_close_naive(x->c);
  else
    lw_close(x->c, 200);
  take_numbers();
}
static void connect_one(void);
static void wcb(lw_conn *c, int st, void *arg) {
  cx *x = lw_conn_get_data(c);
  (void)st;
  if (x->closes)
    x->after_close++;
  x->pending_writes--;
  /* the application reuses its buffer once no queued write names it any more */
  if (arg == x->small)
    memset(arg, 0xEE, 64);
  else if (++x->big_done == 2)
    memset(arg, 0xEE, WSZ);
  if (arg == x->small && (x->how % 3) == 0) {
    end_it(x, rnd() % 3);
    connect_one();
  }
}
static void rcb(lw_conn *c, long n, const char *b) {
  (void)b;
  (void)n;
  cx *x = lw_conn_get_data(c);
  if (x->closes)
    x->after_close++;
}
static void ccb(lw_conn *c, const lw_close_info *in) {
  (void)in;
  cx *x = lw_conn_get_data(c);
  x->closes++;
  if (x->pending_writes)
    x->after_close += 1000; /* a write callback still owed */
  memset(x->small, 0xEE, 64);
  memset(x->big, 0xEE, WSZ);
  x->c = NULL;
  finished++;
  if (x->how % 3 == 2)
    connect_one(); /* reuse from on_close */
  take_numbers();
}
static void concb(lw_conn *c, int st) {
  cx *x = lw_conn_get_data(c);
  if (st)
    return;
  memset(x->small, x->id, 64);
  memset(x->big, x->id, WSZ);
  x->pending_writes = 3;
  lw_conn_write(c, x->small, 64, wcb, x->small);
  lw_conn_write(c, x->big, WSZ, wcb, x->big);
  lw_conn_write(c, x->big, WSZ, wcb, x->big);
  lw_conn_read_start(c, rcb);
  /* end ANOTHER live connection from here, then connect (how 1) */
  if (x->how % 3 == 1) {
    for (int k = 0; k < started; k++)
      if (cxs[k].c && &cxs[k] != x && !cxs[k].closes) {
        end_it(&cxs[k], rnd() % 3);
        break;
      }
    connect_one();
  }
}
static void connect_one(void) {
  if (started >= ROUNDS)
    return;
  cx *x = &cxs[started];
  x->id = 1 + started % 200;
  x->how = (int)(rnd() % 6);
  x->small = malloc(64);
  x->big = malloc(WSZ);
  started++;
  if (lw_conn_connect(loop, "127.0.0.1", sink_port, NULL, concb, &x->c) < 0) {
    x->c = NULL;
    return;
  }
  lw_conn_set_data(x->c, x);
  lw_conn_on_close(x->c, ccb);
}
static void tick(lw_timer *t) {
  (void)t;
  for (int k = 0; k < started; k++)
    if (cxs[k].c && rnd() % 4 == 0) {
      end_it(&cxs[k], rnd() % 3);
      connect_one();
      break;
    }
  connect_one();
}

int main(void) {
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  int lfd = atk_listen(&sink_port);
  pthread_t th;
  pthread_create(&th, NULL, sink, &lfd);
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, tick, 1, 2);
  uint64_t end = atk_now() + 5000;
  while (atk_now() < end && (started < ROUNDS || finished < started)) {
    lw_loop_run(loop, LW_RUN_ONCE);
    if (started >= ROUNDS) {
      lw_timer_stop(t);
      for (int k = 0; k < started; k++)
        if (cxs[k].c && !cxs[k].closes)
          end_it(&cxs[k], 0);
    }
  }
  lw_timer_free(t);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  atomic_store(&sink_stop, 1);
  pthread_join(th, NULL);
  int bad = 0, after = 0, stray = 0;
  for (int k = 0; k < started; k++) {
    if (cxs[k].closes != 1)
      bad++;
    after += cxs[k].after_close;
  }
  char b[4096];
  for (int k = 0; k < npipes; k++) {
    ssize_t r = read(pipes[k][0], b, sizeof(b));
    if (r > 0)
      stray += (int)r;
    close(pipes[k][0]);
    close(pipes[k][1]);
  }
  printf("connections %d finished %d; sink bytes %ld, poisoned %d, mixed-tag %d; pipes %d "
         "with %d stray bytes; on_close!=1: %d; callbacks after/owed at on_close: %d\n",
         started, finished, (long)atomic_load(&sink_bytes), atomic_load(&sink_poison),
         atomic_load(&sink_mixed), npipes, stray, bad, after);
  CHECK(atomic_load(&sink_poison) == 0, "poison reached a peer");
  CHECK(atomic_load(&sink_mixed) == 0, "bytes of one connection reached another's peer");
  CHECK(stray == 0, "bytes in a pipe");
  CHECK(bad == 0 && after == 0, "on_close/callback order");
  close(lfd);
  int rc = atk_end("atk_fd_reuse", loop);
  CHECK(lw_loop_close(loop) == 0, "loop close");
  for (int k = 0; k < started; k++) {
    free(cxs[k].small);
    free(cxs[k].big);
  }
  return rc;
}
