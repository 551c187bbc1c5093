/* atk_drain.c - ending a server at the worst moments (lastword.h, "Drain", "Listener"):
 *   connect  the drain starts while the loop's own client connections (lw_conn_connect
 *            to its own paused listener) are still connecting: every one is covered,
 *            ends once, and the report's numbers are the ones counted here from each
 *            on_close (by reason, resets, total);
 *   twice    a second lw_loop_drain while one runs (LW_EALREADY), lw_loop_close during
 *            a drain (LW_EBUSY, nothing freed), the smallest deadline (1 ms) on live
 *            connections (all reset, counted), then the loop closes with no fd left;
 *   flood    10,000 pause/resume toggles (a 0 ms timer), pauses from inside accept_cb
 *            and resumes from inside on_close, under a bounded connect flood from 8
 *            threads: every connection is accepted and served exactly once, none is
 *            lost or reset, and the process ends with the fds it started with. */
#include "atk.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d)))
    n += e->d_name[0] != '.';
  if (d)
    closedir(d);
  return n - 1; /* the DIR's own */
}

static lw_loop *loop;
static lw_listener *lst;
static int done_calls;
static lw_drain_report rep;
static uint64_t mine_by_reason[LW_REASON__COUNT], mine_reset, mine_total;

static void on_done(lw_loop *lp, const lw_drain_report *r, void *arg) {
  (void)lp;
  (void)arg;
  done_calls++;
  rep = *r;
}

/* Counts, from the application's side, every connection the drain covered. */
static void count_close(lw_conn *c, const lw_close_info *in) {
  if (!lw_conn_draining(c))
    return;
  mine_total++;
  mine_by_reason[in->reason]++;
  mine_reset += in->rst;
}

static void check_report(void) {
  CHECK(done_calls == 1, "done_cb ran %d times", done_calls);
  CHECK(rep.conns == mine_total, "report conns=%llu, counted %llu",
        (unsigned long long)rep.conns, (unsigned long long)mine_total);
  for (int k = 0; k < LW_REASON__COUNT; k++)
    CHECK(rep.by_reason[k] == mine_by_reason[k], "reason %s: report %llu, counted %llu",
          lw_reason_name((lw_close_reason)k), (unsigned long long)rep.by_reason[k],
          (unsigned long long)mine_by_reason[k]);
  CHECK(rep.reset == mine_reset, "report reset=%llu, counted %llu",
        (unsigned long long)rep.reset, (unsigned long long)mine_reset);
}

static void finish_loop(void) {
  int r = lw_loop_close(loop);
  CHECK(r == 0, "lw_loop_close: %s", lw_strerror(r));
}

/* ---- server side: reads, closes gracefully at the peer's EOF ---- */
static int srv_accepts;
static void srv_read(lw_conn *c, long n, const char *b) {
  (void)b;
  if (n == LW_EOF)
    lw_close(c, 1000);
}
static void srv_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  srv_accepts++;
  lw_conn_on_close(c, count_close);
  lw_conn_read_start(c, srv_read);
}

/* ---- connect ---- */
#define NCLI 40
static int cli_connected, cli_failed, cli_closed;
static void cli_read(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)n;
  (void)b;
}
static void cli_close(lw_conn *c, const lw_close_info *in) {
  cli_closed++;
  count_close(c, in);
}
static void cli_connect(lw_conn *c, int st) {
  if (st < 0) {
    cli_failed++;
    return;
  }
  cli_connected++;
  lw_conn_read_start(c, cli_read);
}

static int mode_connect(void) {
  int fds0 = count_fds();
  CHECK(lw_loop_new(&loop, NULL) == 0, "loop");
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 128, NULL, srv_accept, &lst) == 0, "listen");
  int port = lw_listener_port(lst);
  for (int i = 0; i < NCLI; i++) {
    lw_conn *c;
    int r = lw_conn_connect(loop, "127.0.0.1", port, NULL, cli_connect, &c);
    CHECK(r == 0, "connect: %s", lw_strerror(r));
    lw_conn_on_close(c, cli_close);
  }
  /* Still connecting: no loop iteration has run since the connects. */
  lw_drain_options o = {.deadline_ms = 1500, .idle_min_ms = 100, .done_cb = on_done};
  CHECK(lw_loop_drain(loop, &o) == 0, "drain");
  CHECK(lw_loop_drain(loop, &o) == LW_EALREADY, "second drain not refused");
  /* One made during the drain is not covered, and ends on its own. */
  lw_conn *late;
  CHECK(lw_conn_connect(loop, "127.0.0.1", port, NULL, cli_connect, &late) == 0, "late");
  lw_conn_on_close(late, cli_close);
  uint64_t t0 = atk_now();
  while (!done_calls && atk_now() - t0 < 5000)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(done_calls == 1, "the drain never finished");
  CHECK(lw_conn_draining(late) == 0, "a connection made during the drain is covered");
  CHECK(rep.elapsed_ms <= 1500 + 300, "drain took %llu ms, deadline 1500",
        (unsigned long long)rep.elapsed_ms);
  /* Covered: every client (the listener was paused before any accept could run, but
   * io_uring may deliver accepts the kernel made before the cancel: covered too). */
  CHECK(rep.conns == (uint64_t)NCLI + (uint64_t)srv_accepts, "conns=%llu, clients %d + %d",
        (unsigned long long)rep.conns, NCLI, srv_accepts);
  check_report();
  CHECK(cli_failed == 0, "%d connects failed", cli_failed);
  lw_abort(late);
  lw_listener_close(lst);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  CHECK(cli_closed == NCLI + 1, "%d client on_close of %d", cli_closed, NCLI + 1);
  finish_loop();
  CHECK(count_fds() == fds0, "fds: %d before, %d after", fds0, count_fds());
  fprintf(stderr, "connect: conns=%llu drain=%llu reset=%llu deadline=%llu ms=%llu\n",
          (unsigned long long)rep.conns, (unsigned long long)rep.by_reason[LW_REASON_DRAIN],
          (unsigned long long)rep.reset, (unsigned long long)rep.reset_at_deadline,
          (unsigned long long)rep.elapsed_ms);
  return 0;
}

/* ---- twice ---- */
static int mode_twice(void) {
  int fds0 = count_fds();
  CHECK(lw_loop_new(&loop, NULL) == 0, "loop");
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 128, NULL, srv_accept, &lst) == 0, "listen");
  int port = lw_listener_port(lst);
  lw_drain_options o = {.done_cb = on_done};
  /* An empty drain, lw_loop_close in the middle of it. */
  CHECK(lw_loop_drain(loop, &o) == 0, "drain 1");
  CHECK(lw_loop_close(loop) == LW_EBUSY, "lw_loop_close during a drain not refused");
  CHECK(lw_loop_draining(loop) == 1, "not draining");
  uint64_t t0 = atk_now();
  while (!done_calls && atk_now() - t0 < 2000)
    lw_loop_run(loop, LW_RUN_ONCE);
  check_report();
  CHECK(rep.conns == 0, "empty drain covered %llu", (unsigned long long)rep.conns);
  CHECK(lw_listener_paused(lst) == 1, "listener not paused by the drain");
  /* Live connections, a 1 ms deadline: every one reset at the deadline. */
  CHECK(lw_listener_resume(lst) == 0, "resume");
  int raw[8];
  for (int i = 0; i < 8; i++) {
    raw[i] = atk_connect(port);
    (void)!write(raw[i], "busy", 4); /* not idle: the policy never closes them */
  }
  t0 = atk_now();
  while (srv_accepts < 8 && atk_now() - t0 < 2000)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(srv_accepts == 8, "accepted %d of 8", srv_accepts);
  done_calls = 0;
  o.deadline_ms = 1;
  CHECK(lw_loop_drain(loop, &o) == 0, "drain 2");
  t0 = atk_now();
  while (!done_calls && atk_now() - t0 < 2000)
    lw_loop_run(loop, LW_RUN_ONCE);
  check_report();
  CHECK(rep.conns == 8 && rep.reset_at_deadline == 8 && rep.by_reason[LW_REASON_DRAIN] == 8,
        "1 ms deadline: conns=%llu reset_at_deadline=%llu drain=%llu",
        (unsigned long long)rep.conns, (unsigned long long)rep.reset_at_deadline,
        (unsigned long long)rep.by_reason[LW_REASON_DRAIN]);
  CHECK(rep.elapsed_ms < 500, "1 ms deadline took %llu ms", (unsigned long long)rep.elapsed_ms);
  for (int i = 0; i < 8; i++) {
    char b;
    CHECK(read(raw[i], &b, 1) < 0 && errno == ECONNRESET, "client %d not reset", i);
    close(raw[i]);
  }
  lw_listener_close(lst);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  finish_loop();
  CHECK(count_fds() == fds0, "fds: %d before, %d after", fds0, count_fds());
  return 0;
}

/* ---- flood ---- */
#define FL_THREADS 8
#define FL_PER 250
#define FL_TOGGLES 10000
static atomic_int fl_served, fl_bad;
static int fl_port, fl_toggles, fl_accepts, fl_closes, fl_bad_close;
static void *fl_client(void *arg) {
  (void)arg;
  for (int i = 0; i < FL_PER; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fl_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b[4];
    ssize_t n = -1, z = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
      n = read(fd, b, sizeof(b));
      if (n == 1)
        z = read(fd, b, sizeof(b));
    }
    if (n == 1 && b[0] == 'x' && z == 0)
      atomic_fetch_add(&fl_served, 1);
    else
      atomic_fetch_add(&fl_bad, 1);
    close(fd);
  }
  return NULL;
}
static void fl_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  fl_closes++;
  fl_bad_close += in->rst || in->reason == LW_REASON_DEADLINE;
  /* Resume from inside on_close (a pause from accept_cb may be waiting for it). */
  lw_listener_resume(lst);
}
static void fl_accept(lw_listener *l, lw_conn *c, int st) {
  if (st) {
    fl_bad_close++;
    return;
  }
  fl_accepts++;
  lw_conn_on_close(c, fl_close);
  lw_conn_write_copy(c, "x", 1);
  lw_close(c, 5000);
  if (fl_accepts % 3 == 0)
    lw_listener_pause(l); /* from inside accept_cb */
}
static void fl_tick(lw_timer *t) {
  if (++fl_toggles >= FL_TOGGLES) {
    lw_listener_resume(lst);
    return;
  }
  if (fl_toggles & 1)
    lw_listener_pause(lst);
  else
    lw_listener_resume(lst);
  lw_timer_start(t, fl_tick, 0, 0);
}
static int mode_flood(void) {
  int fds0 = count_fds();
  CHECK(lw_loop_new(&loop, NULL) == 0, "loop");
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 4096, NULL, fl_accept, &lst) == 0, "listen");
  fl_port = lw_listener_port(lst);
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, fl_tick, 0, 0);
  pthread_t th[FL_THREADS];
  for (int i = 0; i < FL_THREADS; i++)
    pthread_create(&th[i], NULL, fl_client, NULL);
  const int total = FL_THREADS * FL_PER;
  uint64_t t0 = atk_now();
  while ((atomic_load(&fl_served) + atomic_load(&fl_bad) < total || fl_closes < fl_accepts ||
          fl_toggles < FL_TOGGLES) &&
         atk_now() - t0 < 30000)
    lw_loop_run(loop, LW_RUN_ONCE);
  for (int i = 0; i < FL_THREADS; i++)
    pthread_join(th[i], NULL);
  CHECK(fl_toggles >= FL_TOGGLES, "only %d toggles ran", fl_toggles);
  CHECK(atomic_load(&fl_served) == total, "served %d of %d (%d bad)", atomic_load(&fl_served),
        total, atomic_load(&fl_bad));
  CHECK(fl_accepts == total, "accepted %d of %d", fl_accepts, total);
  CHECK(fl_closes == fl_accepts, "%d on_close for %d accepts", fl_closes, fl_accepts);
  CHECK(fl_bad_close == 0, "%d reset/failed", fl_bad_close);
  lw_timer_free(t);
  lw_listener_close(lst);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  finish_loop();
  CHECK(count_fds() == fds0, "fds: %d before, %d after", fds0, count_fds());
  fprintf(stderr, "flood: served %d, toggles %d, %llu ms\n", atomic_load(&fl_served),
          fl_toggles, (unsigned long long)(atk_now() - t0));
  return 0;
}

/* ---- accepted ----
 * Connections the kernel has accepted for the loop (io_uring: the multishot accept's
 * CQEs posted, not yet reaped) when the drain starts, and a done_cb that closes the
 * listener (as respond and httpd do): each must be served by the drain, or at least
 * counted as waiting in the accept queue (epoll: never accepted) -- never silently
 * closed. */
#define AC_N 16
static int ac_raw[AC_N], ac_listener_closed, ac_served_srv;
static lw_drain_report ac_rep;
static void ac_done(lw_loop *lp, const lw_drain_report *r, void *arg) {
  (void)lp;
  (void)arg;
  done_calls++;
  ac_rep = *r;
  lw_listener_close(lst);
  ac_listener_closed = 1;
}
static void ac_read(lw_conn *c, long n, const char *b) {
  (void)b;
  if (n == 1) {
    ac_served_srv++;
    lw_conn_write_copy(c, "y", 1);
    lw_close(c, 2000);
  }
}
static void ac_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  srv_accepts++;
  lw_conn_read_start(c, ac_read);
}
static void ac_timer(lw_timer *t) {
  (void)t;
  /* Timers run between two waits: what the kernel accepts now is reaped at the next. */
  int port = lw_listener_port(lst);
  for (int i = 0; i < AC_N; i++) {
    ac_raw[i] = atk_connect(port);
    (void)!write(ac_raw[i], "x", 1);
  }
  lw_drain_options o = {.deadline_ms = 3000, .done_cb = ac_done};
  CHECK(lw_loop_drain(loop, &o) == 0, "drain");
}
static int mode_accepted(void) {
  int fds0 = count_fds();
  CHECK(lw_loop_new(&loop, NULL) == 0, "loop");
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 128, NULL, ac_accept, &lst) == 0, "listen");
  lw_timer *t;
  lw_timer_new(loop, &t);
  lw_timer_start(t, ac_timer, 20, 0);
  uint64_t t0 = atk_now();
  while (!ac_listener_closed && atk_now() - t0 < 5000)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(t);
  /* The clients read now (the loop is not running): run the loop's rest in bounded
   * steps while they wait in the kernel. */
  t0 = atk_now();
  while (atk_now() - t0 < 1000)
    lw_loop_run(loop, LW_RUN_NOWAIT);
  int served = 0;
  for (int i = 0; i < AC_N; i++) {
    struct timeval tv = {0, 300000}; /* the loop ran 1 s: an answer is there by now */
    setsockopt(ac_raw[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b = 0;
    served += read(ac_raw[i], &b, 1) == 1 && b == 'y';
    close(ac_raw[i]);
  }
  CHECK(done_calls == 1, "done_cb ran %d times", done_calls);
  CHECK((uint64_t)served + ac_rep.accept_queued == AC_N,
        "%d connections: %d served, %llu counted in the accept queue, %llu lost silently "
        "(accepted: %d, report conns=%llu)",
        AC_N, served, (unsigned long long)ac_rep.accept_queued,
        (unsigned long long)(AC_N - served - ac_rep.accept_queued), srv_accepts,
        (unsigned long long)ac_rep.conns);
  CHECK(ac_rep.conns == (uint64_t)srv_accepts, "report conns=%llu, accepted %d",
        (unsigned long long)ac_rep.conns, srv_accepts);
  finish_loop();
  CHECK(count_fds() == fds0, "fds: %d before, %d after", fds0, count_fds());
  fprintf(stderr, "accepted: served %d, queued %llu, conns %llu\n", served,
          (unsigned long long)ac_rep.accept_queued, (unsigned long long)ac_rep.conns);
  return 0;
}

int main(int argc, char **argv) {
  const char *m = argc > 1 ? argv[1] : "connect";
  if (!strcmp(m, "connect"))
    mode_connect();
  else if (!strcmp(m, "twice"))
    mode_twice();
  else if (!strcmp(m, "flood"))
    mode_flood();
  else if (!strcmp(m, "accepted"))
    mode_accepted();
  else {
    fprintf(stderr, "usage: atk_drain connect|twice|flood|accepted\n");
    return 2;
  }
  if (atk_fails)
    fprintf(stderr, "atk_drain %s: %d failure(s)\n", m, atk_fails);
  return atk_fails ? 1 : 0;
}
