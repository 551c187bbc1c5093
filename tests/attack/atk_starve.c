/* atk_starve.c - 700 accepted connections stop reading from a timer (recvs armed) while
 * their peers keep sending 4 KB every 5 ms (a flood the application ignores), then one
 * more connection that reads must get its 5 bytes at once and the loop must stay
 * mostly idle (CPU measured over 1 s with getrusage). Streams of 10 other connections
 * that do read are pattern-checked (provided buffers never corrupted). Bounded: 3 s. */
#include "atk.h"
#include <sys/resource.h>

#define NS 700
#define NR 10
static lw_conn *sc[NS + NR + 1];
static int nacc, peers[NS + NR + 1], reader_got, corrupt;
static long rgot[NR];
static long rsent[NR];
static void rd_stop(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)n;
  (void)b;
}
static void rd_pat(lw_conn *c, long n, const char *b) {
  long i = (long)(intptr_t)lw_conn_get_data(c);
  for (long k = 0; n > 0 && k < n; k++)
    if ((unsigned char)b[k] != (unsigned char)((rgot[i] + k) * 13 + i)) {
      corrupt++;
      break;
    }
  if (n > 0)
    rgot[i] += n;
}
static void rd_last(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)b;
  if (n > 0)
    reader_got += (int)n;
}
static void acc(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  int i = nacc++;
  sc[i] = c;
  if (i < NS)
    lw_conn_read_start(c, rd_stop);
  else if (i < NS + NR) {
    lw_conn_set_data(c, (void *)(intptr_t)(i - NS));
    lw_conn_read_start(c, rd_pat);
  } else
    lw_conn_read_start(c, rd_last);
}
static void stop_all(lw_timer *t) {
  (void)t;
  for (int i = 0; i < NS; i++)
    lw_conn_read_stop(sc[i]);
}
static char junk[4096];
static void flood(lw_timer *t) {
  (void)t;
  for (int i = 0; i < NS; i++)
    send(peers[i], junk, sizeof(junk), MSG_DONTWAIT);
  char b[4096];
  for (int i = 0; i < NR; i++) {
    for (int k = 0; k < (int)sizeof(b); k++)
      b[k] = (char)((rsent[i] + k) * 13 + i);
    ssize_t w = send(peers[NS + i], b, sizeof(b), MSG_DONTWAIT);
    if (w > 0)
      rsent[i] += w;
  }
}
static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
int main(void) {
  struct rlimit rl = {4096, 4096};
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    perror("rlimit");
    return 77;
  }
  memset(junk, 'j', sizeof(junk));
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_listener *l;
  lw_listener_new(loop, "127.0.0.1", 0, 1024, NULL, acc, &l);
  for (int i = 0; i < NS + NR; i++) {
    peers[i] = atk_connect(lw_listener_port(l));
    if (i % 50 == 49)
      atk_run_for(loop, 5);
  }
  uint64_t e = atk_now() + 2000;
  while (nacc < NS + NR && atk_now() < e)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer *t1, *t2;
  lw_timer_new(loop, &t1);
  lw_timer_new(loop, &t2);
  lw_timer_start(t1, stop_all, 1, 0);
  atk_run_for(loop, 20);
  lw_timer_start(t2, flood, 1, 5);
  atk_run_for(loop, 300);
  peers[NS + NR] = atk_connect(lw_listener_port(l));
  atk_run_for(loop, 20);
  send(peers[NS + NR], "hello", 5, 0);
  double c0 = cpu();
  uint64_t w0 = atk_now();
  atk_run_for(loop, 1000);
  double used = (cpu() - c0) / ((atk_now() - w0) / 1000.0) * 100;
  lw_timer_stop(t2);
  atk_run_for(loop, 100);
  long rtot = 0, stot = 0;
  for (int i = 0; i < NR; i++) {
    rtot += rgot[i];
    stot += rsent[i];
  }
  printf("accepted %d; last reader got %d/5; CPU %.0f%% during flood; pattern streams %ld/%ld "
         "bytes, corrupt %d\n",
         nacc, reader_got, used, rtot, stot, corrupt);
  CHECK(reader_got == 5, "reader starved");
  CHECK(used < 95, "CPU %.0f%% (includes the in-process flood sender: epoll measures ~70%%)",
        used);
  CHECK(corrupt == 0 && rtot == stot, "pattern streams");
  lw_timer_free(t1);
  lw_timer_free(t2);
  for (int i = 0; i < nacc; i++)
    lw_abort(sc[i]);
  for (int i = 0; i <= NS + NR; i++)
    close(peers[i]);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  int rc = atk_end("atk_starve", loop);
  CHECK(lw_loop_close(loop) == 0, "loop close");
  return rc;
}
