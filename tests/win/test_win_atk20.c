/* test_win_atk20.c - hostile checks of the IOCP backend after issue 20 (attack branch
 * atk20). Builds for Windows (tests/win/CMakeLists.txt, run under Wine) AND for Linux
 * (the epoll control):
 *   cc -O1 -g -Iinclude -Isrc tests/win/test_win_atk20.c build-lin/liblastword.a -lpthread
 * One case per run (argv[1]); exit 0 = behaved as the contract says, 1 = defect.
 *   fbt [fin]     first_byte_timeout_ms=300; the peer sends "hello" (or only its FIN) at
 *                 150 ms while the loop is busy (the accept callback computes for 400 ms).
 *                 The bytes were in this host's TCP at 150 ms: the peer spoke, it must not
 *                 be reset as silent (lastword.h: "bytes the peer sent that the application
 *                 has not read yet ... do" count).
 *   fbtrst        first_byte_timeout_ms=300, reading never started; the peer resets at
 *                 100 ms: the timeout's check finds the RST, the connection ends as
 *                 peer_reset (before: a readable socket with nothing to read was taken
 *                 for a FIN waiting, the timeout dropped, the connection left open).
 *   fbtrst shut   the same after the application's lw_shutdown at the accept: our FIN
 *                 went, then the peer's RST. The connection must still end (peer_reset),
 *                 as on Linux, where SO_ERROR keeps ECONNRESET.
 *   abortcount [naive]  read_size 4, the peer sends 16 bytes at once; lw_abort (or
 *                 lw_close_naive) from a timer while the loop was busy:
 *                 bytes_received + unread_discarded must be 16.
 *   heldfin {close|abort|naive}  the peer's FIN arrives while reading is stopped with a
 *                 receive pending (held by the backend); then the application ends the
 *                 connection: the peer closed first (initiator PEER, no TIME_WAIT here).
 *   poison {close|abort|naive|none}  64 writes of 256 KiB, each buffer poisoned (0xEE) in
 *                 its write callback; the peer reads slowly and must never see 0xEE;
 *                 byte accounting checked.
 *   churn         read_stop / read_start / set_read_size churn from read callbacks and
 *                 timers with 300 KB + FIN arriving: every byte once, in order, EOF once,
 *                 after the last byte; the answer reaches the peer.
 *   cross         callbacks ending other connections (abort, naive, close, shutdown) and
 *                 themselves: one on_close each, nothing after it.
 *   lisclose      listener closed in its accept callback with clients connecting; loop
 *                 run dry, lw_loop_close: handles back to the baseline.
 */
#include "lastword.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include "wtest.h"
typedef SOCKET sk_t;
static void msleep(unsigned ms) { Sleep(ms); }
static uint64_t now_ms(void) { return GetTickCount64(); }
typedef HANDLE thr_t;
#define THR_FN(name) static DWORD WINAPI name(void *arg)
#define THR_RET return 0
static thr_t thr_start(DWORD(WINAPI *fn)(void *), void *a) { return wt_thread(fn, a); }
static void thr_join(thr_t h) { wt_join(h, 30000); }
static int sk_errno(void) { return WSAGetLastError(); }
static void sk_close(sk_t s) { closesocket(s); }
static void sk_shut(sk_t s) { shutdown(s, SD_SEND); }
#define ERR_RESET WSAECONNRESET
static int wt_done_flag;
int wt_done(void) { return wt_done_flag; }
/* Open sockets of this process: GetProcessHandleCount is 0 under Wine, so probe the
 * handle values (socket handles are kernel handles, multiples of 4). */
static long handles_now(void) {
  long n = 0;
  for (uintptr_t h = 4; h < 0x20000; h += 4) {
    int ty = 0, len = sizeof(ty);
    if (getsockopt((SOCKET)h, SOL_SOCKET, SO_TYPE, (char *)&ty, &len) == 0)
      n++;
  }
  DWORD hc = 0;
  GetProcessHandleCount(GetCurrentProcess(), &hc);
  return n * 100000 + (long)hc; /* sockets, then the handle count where there is one */
}
#else
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
typedef int sk_t;
#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                          \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)
static void msleep(unsigned ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}
static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}
typedef pthread_t thr_t;
#define THR_FN(name) static void *name(void *arg)
#define THR_RET return NULL
static thr_t thr_start(void *(*fn)(void *), void *a) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fn, a) == 0);
  return t;
}
static void thr_join(thr_t h) { pthread_join(h, NULL); }
static int sk_errno(void) { return errno; }
static void sk_close(sk_t s) { close(s); }
static void sk_shut(sk_t s) { shutdown(s, SHUT_WR); }
#define ERR_RESET ECONNRESET
static sk_t wt_connect(int port) {
  sk_t s = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(s >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {20, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  CHECK(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0);
  return s;
}
static int wt_send_all(sk_t s, const char *buf, int len) {
  int off = 0;
  while (off < len) {
    ssize_t n = send(s, buf + off, (size_t)(len - off), MSG_NOSIGNAL);
    if (n <= 0)
      return errno;
    off += (int)n;
  }
  return 0;
}
static void wt_init(void) { setvbuf(stdout, NULL, _IONBF, 0); }
static long handles_now(void) {
  long n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d)))
    n++;
  if (d)
    closedir(d);
  return n;
}
#endif

#define LW__MINI(a, b) ((a) < (b) ? (a) : (b))
static lw_loop *loop;
static int defects;
#define DEFECT(...)                                                                            \
  do {                                                                                         \
    printf("DEFECT: " __VA_ARGS__);                                                            \
    printf("\n");                                                                              \
    defects++;                                                                                 \
  } while (0)

static const char *ini(int i) { return i == 1 ? "local" : i == 2 ? "peer" : "none"; }
static void print_info(const char *tag, const lw_close_info *in) {
  printf("%s: reason=%s initiator=%s rst=%d os_error=%s queued=%llu sent=%llu acked=%llu "
         "acked_known=%d unsent_disc=%llu unread_disc=%llu received=%llu time_wait=%d "
         "close_ms=%llu\n",
         tag, lw_reason_name(in->reason), ini(in->initiator), in->rst,
         in->os_error ? lw_err_name(in->os_error) : "0", (unsigned long long)in->bytes_queued,
         (unsigned long long)in->bytes_sent, (unsigned long long)in->bytes_acked,
         in->acked_known, (unsigned long long)in->unsent_discarded,
         (unsigned long long)in->unread_discarded, (unsigned long long)in->bytes_received,
         in->time_wait, (unsigned long long)in->close_ms);
}
/* The invariants of lw_close_info that hold on every backend. */
static void check_accounting(const char *tag, const lw_close_info *in) {
  if (in->acked_known && in->bytes_acked > in->bytes_sent)
    DEFECT("%s: acked %llu > sent %llu", tag, (unsigned long long)in->bytes_acked,
           (unsigned long long)in->bytes_sent);
  if (in->bytes_sent > in->bytes_queued)
    DEFECT("%s: sent %llu > queued %llu", tag, (unsigned long long)in->bytes_sent,
           (unsigned long long)in->bytes_queued);
  if (in->acked_known && in->bytes_queued != in->bytes_acked + in->unsent_discarded)
    DEFECT("%s: queued %llu != acked %llu + unsent_discarded %llu", tag,
           (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_acked,
           (unsigned long long)in->unsent_discarded);
}

/* Runs the loop until *flag, bounded. */
static void run_until(int *flag, unsigned limit_ms) {
  uint64_t t0 = now_ms();
  while (!*flag) {
    CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
    if (!*flag)
      msleep(1);
    if (now_ms() - t0 > limit_ms) {
      printf("FAIL: timeout after %u ms\n", limit_ms);
      exit(2);
    }
  }
}
/* Runs until the loop has nothing left (bounded). */
static void run_dry(unsigned limit_ms) {
  uint64_t t0 = now_ms();
  for (;;) {
    CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
    if (lw_loop_close(loop) == 0) {
      loop = NULL;
      return;
    }
    msleep(1);
    if (now_ms() - t0 > limit_ms) {
      printf("FAIL: loop not dry after %u ms\n", limit_ms);
      exit(2);
    }
  }
}

/* ---- client thread shared by the cases ---- */
typedef struct cli {
  int port;
  int mode;
  unsigned delay_ms;
  const char *send;
  int send_len;
  int fin; /* shutdown after sending */
  int rst; /* after sending: SO_LINGER{1,0} and close (the peer resets) */
  unsigned read_delay_ms;
  long long got;
  int err;
  int poison_seen;
  int pattern_bad;
  char head[64];
  atomic_int connected; /* set once its connect returned */
} cli;

THR_FN(client_fn) {
  cli *a = arg;
  sk_t s = wt_connect(a->port);
  atomic_store(&a->connected, 1);
  if (a->delay_ms)
    msleep(a->delay_ms);
  if (a->send_len && wt_send_all(s, a->send, a->send_len) != 0) {
    a->err = sk_errno(); /* the server may already have reset it (cross) */
    sk_close(s);
    THR_RET;
  }
  if (a->rst) {
    struct linger lg = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg));
    sk_close(s);
    THR_RET;
  }
  if (a->fin)
    sk_shut(s);
  char *buf = malloc(65536);
  for (;;) {
    if (a->read_delay_ms)
      msleep(a->read_delay_ms);
    int n = (int)recv(s, buf, 65536, 0);
    if (n <= 0) {
      a->err = n < 0 ? sk_errno() : 0;
      break;
    }
    for (int i = 0; i < n; i++)
      if ((unsigned char)buf[i] == 0xEE)
        a->poison_seen++;
    if (a->got < (long long)sizeof(a->head) - 1)
      memcpy(a->head + a->got, buf,
             (size_t)LW__MINI(n, (long long)sizeof(a->head) - 1 - a->got));
    a->got += n;
  }
  free(buf);
  sk_close(s);
  THR_RET;
}

/* One server connection per scenario. */
static lw_conn *sc;
static int sc_closes, sc_after_close;
static lw_close_info sc_info;
static void sc_on_close(lw_conn *c, const lw_close_info *in) {
  sc_closes++;
  sc_info = *in;
  sc = NULL;
}
static void busy(unsigned ms) { /* the loop computes: nothing is reaped meanwhile */
  uint64_t t0 = now_ms();
  while (now_ms() - t0 < ms)
    msleep(5);
}
static lw_listener *lis;
static cli ca;
static thr_t serve_start(const lw_conn_options *o, lw_accept_cb acc) {
  sc = NULL;
  sc_closes = sc_after_close = 0;
  memset(&sc_info, 0, sizeof(sc_info));
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 16, o, acc, &lis) == 0);
  ca.port = lw_listener_port(lis);
  return thr_start(client_fn, &ca);
}
static void serve_end(thr_t h) {
  run_until(&sc_closes, 20000);
  lw_listener_close(lis);
  thr_join(h);
  for (int i = 0; i < 20; i++) {
    CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
    msleep(2);
  }
  if (sc_closes != 1)
    DEFECT("on_close ran %d times", sc_closes);
}

/* ---------------------------------------------------------------------------------
 * fbt: the first-byte timeout and bytes taken by a receive whose completion is queued.
 * --------------------------------------------------------------------------------- */
static long fbt_got;
static void fbt_read(lw_conn *c, long n, const char *buf) {
  if (n > 0) {
    fbt_got += n;
    lw_close(c, 2000);
  } else if (n == LW_EOF) {
    lw_close(c, 2000);
  }
}
static void fbt_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sc = c;
  lw_conn_on_close(c, sc_on_close);
  CHECK(lw_conn_read_start(c, fbt_read) == 0);
  busy(400); /* the peer speaks at 150 ms, the deadline is 300 ms */
}
static int case_fbt(int fin_only) {
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  o.first_byte_timeout_ms = 300;
  memset(&ca, 0, sizeof(ca));
  ca.delay_ms = 150;
  ca.send = fin_only ? NULL : "hello";
  ca.send_len = fin_only ? 0 : 5;
  ca.fin = fin_only;
  fbt_got = 0;
  thr_t h = serve_start(&o, fbt_accept);
  serve_end(h);
  print_info("fbt server", &sc_info);
  printf("fbt peer: err=%d (reset=%d)\n", ca.err, ca.err == ERR_RESET);
  if (sc_info.reason == LW_REASON_FIRST_BYTE_TIMEOUT)
    DEFECT("the peer sent %s at 150 ms (deadline 300 ms) and was reset as silent",
           fin_only ? "its FIN" : "5 bytes");
  return 0;
}

/* ---------------------------------------------------------------------------------
 * fbtrst: the first-byte timeout of a connection the application does not read, whose
 * peer reset it. Nothing is in flight to hear the RST; the timeout's check does
 * (socket_died, SO_ERROR): the connection ends as the peer's reset, as on Linux. A
 * "peer spoke" test that takes the RST for a FIN waiting drops the timeout and
 * leaves the dead connection open for good.
 * --------------------------------------------------------------------------------- */
static int fbtrst_shut;
static void fbtrst_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  CHECK(status == 0);
  sc = c;
  lw_conn_on_close(c, sc_on_close); /* reading never started: nothing in flight */
  if (fbtrst_shut)
    CHECK(lw_shutdown(c) == 0); /* our FIN goes now, before the peer's RST */
}
static int case_fbtrst(int shut) {
  fbtrst_shut = shut;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  o.first_byte_timeout_ms = 300;
  memset(&ca, 0, sizeof(ca));
  ca.delay_ms = 100; /* the RST at 100 ms, the timeout at 300 ms */
  ca.rst = 1;
  thr_t h = serve_start(&o, fbtrst_accept);
  uint64_t t0 = now_ms();
  while (!sc_closes && now_ms() - t0 < 3000) {
    CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
    msleep(2);
  }
  if (!sc_closes) {
    DEFECT("the peer reset at 100 ms%s, first_byte_timeout_ms=300: no on_close after 3 s "
           "(the timeout was dropped, the RST never reported)",
           shut ? " (after our lw_shutdown)" : "");
    CHECK(sc && lw_abort(sc) == 0);
  }
  serve_end(h);
  print_info("fbtrst server", &sc_info);
  if (sc_info.reason != LW_REASON_PEER_RESET)
    DEFECT("reason %s, want peer_reset", lw_reason_name(sc_info.reason));
  return 0;
}

/* ---------------------------------------------------------------------------------
 * abortcount: the unread count when the receive's completion is still queued.
 * --------------------------------------------------------------------------------- */
static int ac_naive;
static void ac_read(lw_conn *c, long n, const char *buf) {}
static void ac_timer(lw_timer *t) {
  lw_timer_free(t);
  if (sc)
    CHECK((ac_naive ? lw_close_naive(sc) : lw_abort(sc)) == 0);
}
static void ac_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sc = c;
  lw_conn_on_close(c, sc_on_close);
  CHECK(lw_conn_set_read_size(c, 4) == 0);
  CHECK(lw_conn_read_start(c, ac_read) == 0);
  lw_timer *t;
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_start(t, ac_timer, 100, 0);
  busy(250); /* the 16 bytes arrive at ~50 ms */
}
static int case_abortcount(int naive) {
  ac_naive = naive;
  memset(&ca, 0, sizeof(ca));
  ca.delay_ms = 50;
  ca.send = "AAAABBBBCCCCDDDD";
  ca.send_len = 16;
  thr_t h = serve_start(NULL, ac_accept);
  serve_end(h);
  print_info(naive ? "abortcount naive" : "abortcount abort", &sc_info);
  printf("abortcount peer: err=%d\n", ca.err);
  if (sc_info.bytes_received + sc_info.unread_discarded != 16)
    DEFECT("peer sent 16 bytes: received %llu + unread_discarded %llu != 16",
           (unsigned long long)sc_info.bytes_received,
           (unsigned long long)sc_info.unread_discarded);
  if (!sc_info.rst)
    DEFECT("rst=0 for %s with unread input", naive ? "lw_close_naive" : "lw_abort");
  return 0;
}

/* ---------------------------------------------------------------------------------
 * heldfin: the peer's FIN held by the backend (reading stopped), then we end it.
 * --------------------------------------------------------------------------------- */
static int hf_how;
static int hf_eof;
static void hf_read(lw_conn *c, long n, const char *buf) {
  if (n == LW_EOF)
    hf_eof++;
}
static void hf_stop(lw_timer *t) {
  lw_timer_free(t);
  if (sc)
    CHECK(lw_conn_read_stop(sc) == 0);
}
static void hf_end(lw_timer *t) {
  lw_timer_free(t);
  if (!sc)
    return;
  if (hf_how == 0)
    CHECK(lw_close(sc, 2000) == 0);
  else if (hf_how == 1)
    CHECK(lw_abort(sc) == 0);
  else
    CHECK(lw_close_naive(sc) == 0);
}
static void hf_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sc = c;
  lw_conn_on_close(c, sc_on_close);
  CHECK(lw_conn_read_start(c, hf_read) == 0); /* a receive is posted */
  lw_timer *t;
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_start(t, hf_stop, 50, 0);
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_start(t, hf_end, 400, 0);
}
static int case_heldfin(int how) {
  hf_how = how;
  hf_eof = 0;
  memset(&ca, 0, sizeof(ca));
  ca.delay_ms = 150;
  ca.fin = 1;
  thr_t h = serve_start(NULL, hf_accept);
  serve_end(h);
  static const char *nm[] = {"lw_close", "lw_abort", "lw_close_naive"};
  char tag[64];
  snprintf(tag, sizeof(tag), "heldfin %s", nm[how]);
  print_info(tag, &sc_info);
  printf("heldfin peer: err=%d eof_cb=%d\n", ca.err, hf_eof);
  if (sc_info.initiator != LW_INITIATOR_PEER)
    DEFECT("%s after the peer's FIN (held 250 ms): initiator %s, want peer", nm[how],
           ini(sc_info.initiator));
  if (sc_info.time_wait)
    DEFECT("%s after the peer's FIN: time_wait=1 (our FIN went second: LAST_ACK, no TIME_WAIT)",
           nm[how]);
  if (how == 0 && sc_info.reason != LW_REASON_PEER_CLOSED_FIRST)
    DEFECT("lw_close after the peer's FIN: reason %s, want peer-closed-first",
           lw_reason_name(sc_info.reason));
  return 0;
}

/* ---------------------------------------------------------------------------------
 * poison: write buffers poisoned in their callbacks.
 * --------------------------------------------------------------------------------- */
#define PZ_N 64
#define PZ_LEN (256 * 1024)
static char *pz_buf[PZ_N];
static int pz_how, pz_cbs, pz_ok, pz_cancel, pz_cb_after_close;
static uint64_t pz_queued;
static void pz_wcb(lw_conn *c, int status, void *arg) {
  char *b = arg;
  pz_cbs++;
  if (sc_closes)
    pz_cb_after_close++;
  if (status == 0)
    pz_ok++;
  else
    pz_cancel++;
  memset(b, 0xEE, PZ_LEN); /* the peer must never see this */
  if (pz_cbs == 3 && sc) {
    if (pz_how == 1)
      lw_abort(c);
    else if (pz_how == 2)
      lw_close_naive(c);
    else if (pz_how == 0)
      lw_close(c, 3000);
  }
}
static void pz_read(lw_conn *c, long n, const char *buf) {}
static void pz_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sc = c;
  lw_conn_on_close(c, sc_on_close);
  CHECK(lw_conn_read_start(c, pz_read) == 0);
  pz_queued = 0;
  for (int i = 0; i < PZ_N; i++) {
    memset(pz_buf[i], 'a' + i % 26, PZ_LEN);
    int r = lw_conn_write(c, pz_buf[i], PZ_LEN, pz_wcb, pz_buf[i]);
    CHECK(r >= 0);
    pz_queued += PZ_LEN;
  }
  if (pz_how == 3)
    lw_close(c, 5000);
}
static int case_poison(int how) {
  static const char *nm[] = {"close", "abort", "naive", "none(close after writes)"};
  for (int i = 0; i < PZ_N; i++)
    if (!pz_buf[i])
      pz_buf[i] = malloc(PZ_LEN);
  pz_how = how;
  pz_cbs = pz_ok = pz_cancel = pz_cb_after_close = 0;
  memset(&ca, 0, sizeof(ca));
  ca.read_delay_ms = 2;
  thr_t h = serve_start(NULL, pz_accept);
  serve_end(h);
  char tag[64];
  snprintf(tag, sizeof(tag), "poison %s", nm[how]);
  print_info(tag, &sc_info);
  printf("poison peer: got=%lld err=%d poison=%d; write cbs %d (ok %d, cancelled %d)\n", ca.got,
         ca.err, ca.poison_seen, pz_cbs, pz_ok, pz_cancel);
  check_accounting(tag, &sc_info);
  if (ca.poison_seen)
    DEFECT("the peer received %d poison bytes", ca.poison_seen);
  if (pz_cbs != PZ_N)
    DEFECT("%d write callbacks for %d writes", pz_cbs, PZ_N);
  if (pz_cb_after_close)
    DEFECT("%d write callbacks after on_close", pz_cb_after_close);
  if ((uint64_t)ca.got > sc_info.bytes_sent)
    DEFECT("the peer received %lld > bytes_sent %llu", ca.got,
           (unsigned long long)sc_info.bytes_sent);
  if (sc_info.bytes_queued != pz_queued)
    DEFECT("bytes_queued %llu != %llu", (unsigned long long)sc_info.bytes_queued,
           (unsigned long long)pz_queued);
  if ((uint64_t)pz_ok * PZ_LEN > sc_info.bytes_sent)
    DEFECT("%d writes reported status 0 (%llu bytes) but bytes_sent %llu", pz_ok,
           (unsigned long long)pz_ok * PZ_LEN, (unsigned long long)sc_info.bytes_sent);
  if ((how == 0 || how == 3) && ca.got != (long long)pz_queued)
    DEFECT("graceful close: the peer got %lld of %llu", ca.got, (unsigned long long)pz_queued);
  return 0;
}

/* ---------------------------------------------------------------------------------
 * churn: read_stop / read_start / set_read_size churn with data and FIN arriving.
 * --------------------------------------------------------------------------------- */
#define CH_TOTAL (300 * 1000)
static char *ch_data;
static uint64_t ch_off;
static int ch_eof, ch_bad, ch_after_eof, ch_after_close;
static unsigned ch_rng = 12345;
static lw_timer *ch_t;
static int ch_half;
static unsigned rnd(void) {
  ch_rng = ch_rng * 1103515245u + 12345u;
  return (ch_rng >> 8) & 0xffffff;
}
static void ch_read(lw_conn *c, long n, const char *buf);
static void ch_restart(lw_timer *t) {
  if (sc && !ch_eof) {
    int r = lw_conn_read_start(sc, ch_read);
    if (r != 0)
      printf("churn: read_start from timer returned %s\n", lw_err_name(r));
  }
}
static void ch_read(lw_conn *c, long n, const char *buf) {
  if (sc_closes)
    ch_after_close++;
  if (ch_eof)
    ch_after_eof++;
  if (n == LW_EOF) {
    ch_eof++;
    if (ch_off != CH_TOTAL) {
      printf("churn: EOF after %llu of %d bytes\n", (unsigned long long)ch_off, CH_TOTAL);
      ch_bad++;
    }
    CHECK(lw_conn_write_copy(c, "OK-ANSWER", 9) >= 0);
    if (ch_half)
      CHECK(lw_close(c, 3000) == 0);
    return;
  }
  if (n <= 0)
    return;
  if (ch_off + (uint64_t)n > CH_TOTAL || memcmp(buf, ch_data + ch_off, (size_t)n) != 0) {
    if (!ch_bad)
      printf("churn: bytes %llu..%llu wrong\n", (unsigned long long)ch_off,
             (unsigned long long)ch_off + (unsigned long long)n);
    ch_bad++;
  }
  ch_off += (uint64_t)n;
  switch (rnd() % 6) {
  case 0:
    CHECK(lw_conn_set_read_size(c, 1 + rnd() % 5000) == 0);
    break;
  case 1:
    lw_conn_read_stop(c);
    lw_timer_start(ch_t, ch_restart, rnd() % 4, 0);
    break;
  case 2:
    lw_conn_read_stop(c);
    CHECK(lw_conn_read_start(c, ch_read) == 0);
    break;
  case 3:
    lw_conn_read_stop(c);
    CHECK(lw_conn_read_start(c, ch_read) == 0);
    lw_conn_read_stop(c);
    CHECK(lw_conn_set_read_size(c, 1 + rnd() % 64) == 0);
    lw_timer_start(ch_t, ch_restart, 0, 0);
    break;
  default:
    break;
  }
}
static void ch_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sc = c;
  lw_conn_on_close(c, sc_on_close);
  CHECK(lw_conn_set_read_size(c, 7) == 0);
  CHECK(lw_conn_read_start(c, ch_read) == 0);
}
THR_FN(ch_client) {
  cli *a = arg;
  sk_t s = wt_connect(a->port);
  unsigned r = 777;
  for (int off = 0; off < CH_TOTAL;) {
    r = r * 1103515245u + 12345u;
    int n = 1 + (int)((r >> 8) % 9000);
    if (n > CH_TOTAL - off)
      n = CH_TOTAL - off;
    CHECK(wt_send_all(s, ch_data + off, n) == 0);
    off += n;
    if ((r >> 20) % 4 == 0)
      msleep(1);
  }
  sk_shut(s);
  static char buf[256];
  for (;;) {
    int n = (int)recv(s, buf, sizeof(buf), 0);
    if (n <= 0) {
      a->err = n < 0 ? sk_errno() : 0;
      break;
    }
    if (a->got + n < (long long)sizeof(a->head))
      memcpy(a->head + a->got, buf, (size_t)n);
    a->got += n;
  }
  sk_close(s);
  THR_RET;
}
static int case_churn(int rounds) {
  if (!ch_data) {
    ch_data = malloc(CH_TOTAL);
    for (int i = 0; i < CH_TOTAL; i++)
      ch_data[i] = (char)((i * 7 + 3) % 251);
  }
  CHECK(lw_timer_new(loop, &ch_t) == 0);
  for (int k = 0; k < rounds; k++) {
    ch_half = k % 2;
    lw_conn_options o;
    memset(&o, 0, sizeof(o));
    o.allow_half_close = ch_half;
    ch_off = 0;
    ch_eof = ch_bad = ch_after_eof = ch_after_close = 0;
    ch_rng = 1000u + (unsigned)k;
    memset(&ca, 0, sizeof(ca));
    sc = NULL;
    sc_closes = 0;
    CHECK(lw_listener_new(loop, "127.0.0.1", 0, 16, &o, ch_accept, &lis) == 0);
    ca.port = lw_listener_port(lis);
    thr_t h = thr_start(ch_client, &ca);
    run_until(&sc_closes, 20000);
    lw_timer_stop(ch_t);
    lw_listener_close(lis);
    thr_join(h);
    CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
    char tag[64];
    snprintf(tag, sizeof(tag), "churn %d half=%d", k, ch_half);
    if (ch_bad || ch_eof != 1 || ch_after_eof || ch_after_close || ca.got != 9 ||
        memcmp(ca.head, "OK-ANSWER", 9) != 0 || sc_info.reason != LW_REASON_PEER_CLOSED_FIRST) {
      print_info(tag, &sc_info);
      DEFECT("%s: bad=%d eof=%d after_eof=%d after_close=%d got=%lld '%.9s' off=%llu", tag,
             ch_bad, ch_eof, ch_after_eof, ch_after_close, ca.got, ca.head,
             (unsigned long long)ch_off);
    }
  }
  lw_timer_free(ch_t);
  printf("churn: %d rounds done\n", rounds);
  return 0;
}

/* ---------------------------------------------------------------------------------
 * cross: callbacks that end other connections and themselves.
 * --------------------------------------------------------------------------------- */
#define CR_N 6
static lw_conn *cr_c[CR_N];
static int cr_closes[CR_N], cr_bad, cr_accepted, cr_total_closes;
static int idx_of(lw_conn *c) { return (int)(intptr_t)lw_conn_get_data(c); }
static void cr_close(lw_conn *c, const lw_close_info *in) {
  int i = idx_of(c);
  cr_closes[i]++;
  cr_total_closes++;
  cr_c[i] = NULL;
  /* Calls on a connection in its on_close: all refused, none may run anything. */
  if (lw_abort(c) == 0 || lw_close(c, 10) == 0 || lw_close_naive(c) == 0 ||
      lw_conn_write_copy(c, "z", 1) >= 0 || lw_conn_read_start(c, NULL) == 0) {
    printf("cross: a call inside on_close of #%d succeeded\n", i);
    cr_bad++;
  }
  /* and end a neighbour from here */
  int j = (i + 2) % CR_N;
  if (cr_c[j])
    lw_close_naive(cr_c[j]);
  check_accounting("cross", in);
}
static void cr_write_cb(lw_conn *c, int status, void *arg) {
  int i = idx_of(c);
  if (cr_closes[i]) {
    printf("cross: write callback of #%d after its on_close\n", i);
    cr_bad++;
  }
  int j = (i + 1) % CR_N;
  if (cr_c[j])
    lw_abort(cr_c[j]);
}
static void cr_read(lw_conn *c, long n, const char *buf) {
  int i = idx_of(c);
  if (cr_closes[i]) {
    printf("cross: read callback of #%d after its on_close\n", i);
    cr_bad++;
  }
  switch (i % 6) {
  case 0:
    if (cr_c[1])
      lw_abort(cr_c[1]);
    if (cr_c[2])
      lw_close_naive(cr_c[2]);
    lw_conn_write(c, "abc", 3, cr_write_cb, NULL);
    lw_close(c, 1000);
    break;
  case 1:
    lw_conn_read_stop(c);
    lw_conn_read_start(c, cr_read);
    lw_shutdown(c);
    lw_close_naive(c);
    break;
  case 2:
    lw_conn_write(c, "abc", 3, cr_write_cb, NULL);
    lw_abort(c);
    lw_conn_read_start(c, cr_read);
    break;
  case 3:
    if (cr_c[4]) {
      lw_conn_read_stop(cr_c[4]);
      lw_shutdown(cr_c[4]);
    }
    lw_conn_set_read_size(c, 1);
    lw_conn_write(c, "abc", 3, cr_write_cb, NULL);
    break;
  case 4:
    lw_close(c, 500);
    if (cr_c[5])
      lw_conn_read_start(cr_c[5], cr_read);
    break;
  case 5:
    if (n == LW_EOF)
      lw_close(c, 500);
    else if (cr_c[0])
      lw_close(cr_c[0], 500);
    break;
  }
}
static void cr_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  int i = cr_accepted++;
  CHECK(i < CR_N);
  cr_c[i] = c;
  lw_conn_set_data(c, (void *)(intptr_t)i);
  lw_conn_on_close(c, cr_close);
  lw_conn_read_start(c, cr_read);
  if (cr_accepted == CR_N) {
    lw_listener_close(l);
    lis = NULL;
  }
}
static int case_cross(int rounds) {
  static cli cc[CR_N];
  for (int k = 0; k < rounds; k++) {
    memset(cr_c, 0, sizeof(cr_c));
    memset(cr_closes, 0, sizeof(cr_closes));
    cr_bad = cr_accepted = cr_total_closes = 0;
    CHECK(lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, cr_accept, &lis) == 0);
    thr_t h[CR_N];
    for (int i = 0; i < CR_N; i++) {
      memset(&cc[i], 0, sizeof(cc[i]));
      cc[i].port = lw_listener_port(lis);
      cc[i].delay_ms = 100;
      cc[i].send = "xyzxyzxyz";
      cc[i].send_len = 9;
      cc[i].fin = (i + k) % 2;
      h[i] = thr_start(client_fn, &cc[i]);
    }
    int want = CR_N;
    uint64_t t0 = now_ms();
    while (cr_total_closes < want) {
      CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
      msleep(1);
      /* The ones nothing ended (a peer that did not FIN): end them after 1.5 s. */
      if (now_ms() - t0 > 1500)
        for (int i = 0; i < CR_N; i++)
          if (cr_c[i])
            lw_abort(cr_c[i]);
      if (now_ms() - t0 > 15000) {
        printf("FAIL: cross round %d: %d of %d on_close\n", k, cr_total_closes, want);
        exit(2);
      }
    }
    for (int i = 0; i < CR_N; i++)
      thr_join(h[i]);
    for (int i = 0; i < 20; i++) {
      CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
      msleep(1);
    }
    for (int i = 0; i < CR_N; i++)
      if (cr_closes[i] != 1)
        DEFECT("cross round %d: #%d had %d on_close", k, i, cr_closes[i]);
    if (cr_bad)
      DEFECT("cross round %d: %d callbacks/calls broke the rules", k, cr_bad);
  }
  printf("cross: %d rounds done\n", rounds);
  return 0;
}

/* ---------------------------------------------------------------------------------
 * lisclose: a listener closed in its accept callback with accepts pending; loop_close.
 * --------------------------------------------------------------------------------- */
static int lc_accepts, lc_after, lc_closes, lc_closed;
static void lc_close(lw_conn *c, const lw_close_info *in) { lc_closes++; }
static void lc_accept(lw_listener *l, lw_conn *c, int status) {
  if (lc_closed) {
    lc_after++;
    return;
  }
  if (status != 0)
    return;
  lc_accepts++;
  lw_conn_on_close(c, lc_close);
  lw_conn_write_copy(c, "hi", 2);
  lw_close(c, 1000);
  lc_closed = 1;
  lw_listener_close(l);
}
static int case_lisclose(int rounds) {
  long base = -1, after1 = -1;
  static cli cc[8];
  for (int k = 0; k < rounds; k++) {
    CHECK(lw_loop_new(&loop, NULL) == 0);
    if (base < 0) {
      CHECK(lw_loop_close(loop) == 0);
      base = handles_now();
      CHECK(lw_loop_new(&loop, NULL) == 0);
    }
    lc_accepts = lc_after = lc_closes = lc_closed = 0;
    CHECK(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, lc_accept, &lis) == 0);
    long open_now = handles_now();
    thr_t h[8];
    for (int i = 0; i < 8; i++) {
      memset(&cc[i], 0, sizeof(cc[i]));
      cc[i].port = lw_listener_port(lis);
      h[i] = thr_start(client_fn, &cc[i]);
    }
    /* All 8 connected (backlog / AcceptEx) before the loop runs: waited for, not slept
     * (a fixed 100 ms was too short under ctest -j2 on Wine: a late client's connect
     * met the closed listener and failed). */
    for (uint64_t t1 = now_ms(); now_ms() - t1 < 10000;) {
      int n = 0;
      for (int i = 0; i < 8; i++)
        n += atomic_load(&cc[i].connected);
      if (n == 8)
        break;
      msleep(1);
    }
    for (int i = 0; i < 8; i++)
      CHECK(atomic_load(&cc[i].connected));
    msleep(20); /* the last handshakes reach the accept queue / AcceptEx */
    uint64_t t0 = now_ms();
    while (!lc_closes && now_ms() - t0 < 10000) {
      CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
      msleep(1);
    }
    for (int i = 0; i < 8; i++)
      thr_join(h[i]);
    run_dry(10000);
    long hn = handles_now();
    int hi = 0, reset = 0, eof0 = 0;
    for (int i = 0; i < 8; i++) {
      if (cc[i].got == 2)
        hi++;
      else if (cc[i].err)
        reset++;
      else
        eof0++;
    }
    printf("lisclose %d: accepts %d (after close %d), on_close %d; clients: answered %d, "
           "reset %d, plain EOF %d; handles %ld (baseline %ld, with the listener %ld)\n",
           k, lc_accepts, lc_after, lc_closes, hi, reset, eof0, hn, base, open_now);
    if (lc_after)
      DEFECT("accept callback ran %d times after lw_listener_close", lc_after);
    if (k == 0)
      after1 = hn;
    if (k == rounds - 1 && hn > after1)
      DEFECT("handles grew from %ld to %ld over %d rounds (leak)", after1, hn, rounds);
    if (hn > base)
      DEFECT("round %d: %ld handles after lw_loop_close, baseline %ld", k, hn, base);
  }
  return 0;
}

int main(int argc, char **argv) {
  wt_init();
  const char *c = argc > 1 ? argv[1] : "";
  const char *v = argc > 2 ? argv[2] : "";
  if (strcmp(c, "lisclose") == 0) {
    case_lisclose(argc > 2 ? atoi(v) : 10);
  } else {
    CHECK(lw_loop_new(&loop, NULL) == 0);
    printf("backend %s\n", lw_loop_backend(loop));
    if (strcmp(c, "fbt") == 0)
      case_fbt(strcmp(v, "fin") == 0);
    else if (strcmp(c, "fbtrst") == 0)
      case_fbtrst(strcmp(v, "shut") == 0);
    else if (strcmp(c, "abortcount") == 0)
      case_abortcount(strcmp(v, "naive") == 0);
    else if (strcmp(c, "heldfin") == 0)
      case_heldfin(strcmp(v, "abort") == 0 ? 1 : strcmp(v, "naive") == 0 ? 2 : 0);
    else if (strcmp(c, "poison") == 0)
      case_poison(strcmp(v, "abort") == 0   ? 1
                  : strcmp(v, "naive") == 0 ? 2
                  : strcmp(v, "none") == 0  ? 3
                                            : 0);
    else if (strcmp(c, "churn") == 0)
      case_churn(argc > 2 ? atoi(v) : 10);
    else if (strcmp(c, "cross") == 0)
      case_cross(argc > 2 ? atoi(v) : 10);
    else {
      fprintf(stderr,
              "usage: %s fbt|fbtrst [shut]|abortcount|heldfin|poison|churn|cross|lisclose "
              "[variant]\n",
              argv[0]);
      return 2;
    }
    run_dry(10000);
  }
  printf("%s %s: %d defect(s)\n", defects ? "FAIL" : "PASS", c, defects);
  return defects ? 1 : 0;
}
