/*
 * torture.c - a seeded, randomized, model-checking stress program (issue 15).
 *
 *   torture [--seed S] [--seconds N] [--backend epoll|uring] [--faults P] [--conns N]
 *           [--keep-going] [--quiet]
 *
 * One loop (the application side) on the main thread: a listener of the library's own
 * and lw_conn_connect to a raw listener, many connections at once, and random public
 * API calls made from random callback contexts (read, write, drain, connect, accept,
 * timer, on_close), on the connection the callback is about or on any other one.
 * One peer thread drives raw non-blocking sockets: each peer reads everything, slowly,
 * never or up to a point, sends (or floods) tagged bytes, half-closes, closes, resets
 * (SO_LINGER{1,0}) at a random point, and eventually ends by itself.
 *
 * Every byte either side writes encodes (connection id, direction, stream offset)
 * (tag()), so the receiver checks each byte it gets: a byte of another connection, a
 * reordered, duplicated or lost byte, or a byte from a write buffer the application
 * already got back (buffers are poisoned with 0xEE in their write callback) is caught
 * where it arrives. The model (check_*) holds each connection's promises: one on_close,
 * nothing after it, write callbacks in order and before it with 0 or LW_ECANCELED, the
 * byte counts of lw_close_info against what was written and read, the reason and the
 * initiator against what the peer did (the peer records its TCP state when it sends
 * its first FIN or RST), EOF only after all the peer's bytes, delivery to a
 * well-behaved peer of a graceful close. Spinning, fds and memory are checked too.
 *
 * The seed decides every choice: the run's schedule and, per connection, its own
 * streams of choices for the application and for its peer (so one connection's
 * choices do not depend on how the others interleave). Timing still comes from the
 * kernel, so a replay repeats the schedule, not necessarily the interleaving.
 *
 * On a failure: the seed, the connection, its options and plan, and its last events
 * (API calls and results, callbacks, peer actions) as a trace; exit status 1.
 *
 * Environment: LW_BACKEND (as --backend), TORTURE_KNOWN (see known_skip(): switches off
 * named checks for exploring past a known defect; the default checks everything).
 */
#include <lastword.h>

#ifndef _WIN32
#include "torture_fault.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#ifndef _WIN32
#include <linux/sockios.h>
#include <linux/tcp.h>
#endif
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#ifndef _WIN32
#include <sys/resource.h>
#endif
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#ifdef _WIN32
/* The Windows build (tests/win/CMakeLists.txt: torture_iocp, IOCP backend, run under
 * Wine): the socket calls are tools/win/lw_win.h's POSIX-on-Winsock wrappers (force-
 * included with tests/win/posix/lwt_posix.h). What Winsock has not, each printed at start
 * (win_notes()):
 * - no -Wl,--wrap fault injection (torture_fault.c is not built; --faults forced to 0);
 * - no TCP_INFO / SIOCOUTQ on the peer's raw sockets: the peer's TCP state at its first
 *   FIN/RST and what our kernel acknowledged are unknown, so the checks built on them
 *   (initiator, unread-not-counted, naive-unread-not-rst) have no input and are off;
 * - no /proc/self/fd: the fd baseline is a probe of the socket handle values;
 * - no RLIMIT_NOFILE: --burst defaults to 64 (the bursts are an io_uring matter).
 * The raw peer sockets are non-blocking for good (FIONBIO), so MSG_DONTWAIT is not used
 * (lw_win.c would toggle FIONBIO around each call). */
#undef fail /* cmocka.h's (force-included by lwt_posix.h); not used here */
#undef far  /* <windef.h>'s, used here as names */
#undef near
#define SOCK_NONBLOCK 0
#define TW_DONTWAIT 0
static void tf_enable(const void *c) { (void)c; }
static void tf_disable(void) {}
typedef struct tf_config {
  unsigned soft_permille, fatal_permille, emfile_permille;
  uint64_t seed;
  void (*note)(int fd, const char *what, int fatal);
} tf_config;
typedef struct tf_counts {
  uint64_t eintr, eagain, short_io, fatal, emfile, submit_eintr;
} tf_counts;
static void tf_get_counts(tf_counts *o) { memset(o, 0, sizeof(*o)); }
static void tw_nonblock(int fd) {
  u_long v = 1;
  if (fd >= 0)
    ioctlsocket((SOCKET)fd, FIONBIO, &v);
}
#else
#define TW_DONTWAIT MSG_DONTWAIT
static void tw_nonblock(int fd) { (void)fd; }
#endif

/* TCP states as TCP_INFO reports them (include/net/tcp_states.h) */
enum { TS_ESTABLISHED = 1, TS_CLOSE = 7, TS_CLOSE_WAIT = 8 };

/* ================================ basics ================================ */
static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
static uint64_t now_ms(void) { return now_us() / 1000u; }

typedef struct rng {
  uint64_t s;
} rng;
static uint64_t rng_next(rng *r) {
  /* splitmix64: one state word, good enough, and cheap to derive streams from */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
static int rng_chance(rng *r, unsigned permille) { return rng_below(r, 1000) < permille; }
static uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi) {
  return lo + rng_below(r, hi - lo + 1);
}
static rng rng_derive(uint64_t seed, uint64_t id, uint64_t stream) {
  rng r = {seed ^ (id * 0xD1B54A32D192ED03ull) ^ (stream * 0x8CB92BA72F3D8DD7ull)};
  rng_next(&r);
  return r;
}

/* The byte at stream offset off of connection id in direction dir (0: app -> peer,
 * 1: peer -> app). Never 0xEE-only by design? No: any value; 0xEE in a mismatch is
 * reported as "poison" only when the whole run of wrong bytes is 0xEE. */
static inline uint8_t tag(uint32_t id, int dir, uint64_t off) {
  uint64_t x = (((uint64_t)id << 1) | (uint64_t)dir) * 0x9E3779B97F4A7C15ull;
  x ^= off * 0xD1B54A32D192ED03ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return (uint8_t)x;
}
static void fill_tags(char *buf, uint32_t id, int dir, uint64_t off, size_t n) {
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)tag(id, dir, off + i);
}
/* Index of the first wrong byte, or -1. */
static long check_tags(const char *buf, uint32_t id, int dir, uint64_t off, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((uint8_t)buf[i] != tag(id, dir, off + i))
      return (long)i;
  return -1;
}

/* Connection kinds: random ones, and targeted schedules that the random mix reaches
 * too rarely (each names the defect it was added for):
 *   TK_SLOW    outbound to a listener whose accept queue is full (SYNs dropped, the
 *              connect stays in SYN_SENT ~1 s), lw_shutdown before it completes (14.4)
 *   TK_ANSWER  outbound; once connected the application answers with write_copy and
 *              lw_close at once; the peer reads exactly the answer, then close()s
 *              without waiting for EOF. Our FIN rides on the answer's last segment, so
 *              the reason must be graceful every time (14.6)
 *   TK_ACKWAIT outbound; the peer half-closes at once and never reads (a 4 KB receive
 *              buffer); the application writes 96 KB (its send buffer holds it all)
 *              and closes: our FIN leaves behind unacknowledged bytes, the ACK wait.
 *              Then the peer resets (the reason must be peer-reset, not deadline:
 *              14.1) or stays silent with stall_timeout_ms set (must be stalled, not
 *              deadline: 14.2)
 *   TK_BURST   one of --burst connections opened at once that start reading, stop
 *              reading from a timer while their recv is pending, then get 100 bytes
 *              each from their peers: more stopped readers than io_uring has provided
 *              buffers (512), while the loop must neither spin nor starve (13.4) */
enum { TK_RANDOM, TK_SLOW, TK_ANSWER, TK_ACKWAIT, TK_BURST };

/* ================================ options ================================ */
static struct {
  uint64_t seed;
  unsigned seconds;
  const char *backend;
  unsigned faults; /* soft permille; fatal and EMFILE are derived */
  unsigned max_conns;
  int keep_going;
  int quiet;
  const char *known;
  unsigned burst; /* TK_BURST connections per burst (0: none) */
} opt = {0, 10, NULL, 8, 48, 0, 0, "", 600};

/* TORTURE_KNOWN=kind,kind: failures of these kinds (the name fail() prints after the
 * seed, e.g. timer-overflow) are counted apart and do not fail the run -- to look past a
 * known defect while exploring. Printed at start and in the summary; never set in CI. */
static int known_skip(const char *name) {
  const char *k = opt.known;
  size_t n = strlen(name);
  while (k && *k) {
    if (strncmp(k, name, n) == 0 && (k[n] == ',' || k[n] == 0))
      return 1;
    k = strchr(k, ',');
    if (k)
      k++;
  }
  return 0;
}

/* ================================ the model ================================ */
#define TRACE_N 48
typedef struct tev {
  uint64_t t_us;
  char side; /* 'A' application, 'P' peer, 'F' fault */
  char msg[100];
} tev;

enum { RM_ALL, RM_SLOW, RM_NEVER, RM_STOP, RM__N };
static const char *const rm_names[] = {"read-all", "read-slow", "read-never", "read-stop"};
enum { PE_NONE, PE_SHUT, PE_CLOSE, PE_RST, PE__N };
static const char *const pe_names[] = {"none", "half-close", "close", "rst"};
enum { PA_CLOSE, PA_SENDMORE, PA_RST, PA__N };
static const char *const pa_names[] = {"close", "send-more-then-close", "rst"};

/* What the peer thread owns (read by the main thread only once peer_done is set). */
typedef struct tpeer {
  int fd;
  int connecting;
  /* plan */
  int read_mode;
  uint64_t read_limit; /* RM_STOP */
  unsigned slow_ms;
  size_t slow_chunk;
  uint64_t send_total;
  size_t send_chunk;
  unsigned pace_ms;
  int end_kind;
  unsigned end_after_ms; /* from connected */
  int after_eof;
  unsigned life_ms;
  uint64_t close_at; /* >0: close() once this many bytes are read, EOF or not */
  uint64_t rst_at;   /* >0: reset at this time (ms) */
  /* state */
  uint64_t t_start, t_connected, next_read, next_send;
  uint64_t recv_off, send_off;
  int eof, err, shut, closed, ended;
  int act;          /* first FIN/RST that reached the wire: PE_SHUT/CLOSE/RST, 0 none */
  int act_state;    /* our TCP state just before it (ESTABLISHED: we were first) */
  int act_rst;      /* that first act was an RST (linger0, or close with unread input) */
  long act_outq;    /* the peer's unsent + unacked bytes then (SIOCOUTQ): its FIN waits
                       behind them, so it reaches our kernel only once we have read them */
  uint64_t t_act;   /* ms */
  uint64_t t_rst;   /* ms of an RST we sent (0 none) */
  int closed_full;  /* close() called (later data from the app gets an RST) */
  uint64_t t_speak; /* first byte sent, or FIN (ms) */
  int speak_kind;   /* what that was: 1 data, 2 FIN, 3 RST */
  uint64_t sent_at_fin;
  /* history of "all of del_off acked by the app's kernel at t_del" (monotone) */
  uint64_t del_off[16], t_del[16];
  unsigned ndel;
  uint64_t t_eof, t_closed;
  int hup; /* POLLHUP/POLLERR seen while wanting nothing: left out of poll */
  int bad;
} tpeer;

typedef struct wrec wrec;
typedef struct tconn {
  uint32_t id;
  int outbound;        /* 1: lw_conn_connect to the raw listener; 0: accepted by our listener */
  int refused;         /* outbound to a port nobody listens on */
  int kind;            /* TK_*: a random connection, or one of the targeted schedules */
  uint64_t answer_len; /* TK_ANSWER: the answer's size (both sides derive it) */
  uint16_t port;
  int dst_port;
  uint64_t t_created, t_open;
  unsigned live_idx;
  int fd_reg;
  int end_tries;
  lw_timer *end_timer;
  struct tconn *next; /* all conns (main thread) */
  rng arng, prng;
  lw_conn_options o;
  /* ---- application side (main thread) ---- */
  lw_conn *c;
  int state; /* 0 none yet, 1 connecting, 2 open, 3 on_close seen */
  int reading;
  int first_close; /* 0, or 1 shutdown 2 close 3 abort 4 naive */
  uint64_t t_first_close, t_close_call, t_abort_call;
  int close_kinds; /* bit per successful call kind */
  uint64_t queued, in_off;
  int eof;
  unsigned wseq_next, wseq_cb;
  int nwrites_out;
  uint64_t ok_end, cancel_end;
  int saw_cancel;
  int queue_full;
  int connect_status, connect_cbs;
  int faulted;     /* an injected fault could have ended it */
  int soft_faults; /* injected soft faults seen on its fd */
  lw_timer *timer;
  lw_timer *far_timer;
  int on_close_count;
  lw_close_info info;
  uint64_t t_on_close;
  int reading_at_close;
  /* ---- peer side ---- */
  tpeer p;
  atomic_int peer_started, peer_done;
  int peer_matched; /* outbound: the peer thread found its socket (under map_mu) */
  unsigned listener_gen;
  /* ---- trace (under trace_mu) ---- */
  tev tr[TRACE_N];
  unsigned ntr;
  unsigned nreads_run, tr_read_at; /* a run of reads shown as one line */
  uint64_t read_run_from;
} tconn;

struct wrec {
  tconn *t;
  char *buf;
  size_t len;
  uint64_t start;
  unsigned seq;
};

static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static tconn *port_map[65536];

static struct {
  lw_loop *loop;
  lw_listener *listener;
  int lport;
  unsigned lgen;
  lw_conn_options lopts;
  int raw_lfd, raw_port, refuse_fd, refuse_port;
  int slow_lfd, slow_port; /* TK_SLOW: backlog 0, accepted slowly by the peer thread */
  uint64_t next_burst;
  unsigned burst_open, nbursts; /* TK_BURST connections not yet finalized; bursts */
  rng r;
  tconn *all;
  unsigned next_id;
  unsigned live; /* app side not yet on_close (or never accepted, still waiting) */
  unsigned target;
  uint64_t t0, t_end;
  int running; /* creating new connections */
  uint64_t iters, cbs, win_iters, win_cbs, win_t;
  tconn **by_fd;
  atomic_int failures;
  unsigned known_skipped; /* failures of a kind named in TORTURE_KNOWN */
  unsigned shown;
  /* stats */
  uint64_t n_conns, n_done, bytes_app_to_peer, bytes_peer_to_app, accept_errs;
  unsigned reasons[LW_REASON__COUNT];
  char fail_kinds[32][160];
  unsigned fail_kind_n[32];
  unsigned nfail_kinds;
  atomic_int peer_stop;
  pthread_t peer_thread;
} G;

static void tr(tconn *t, char side, const char *fmt, ...) {
  if (!t)
    return;
  pthread_mutex_lock(&trace_mu);
  tev *e = &t->tr[t->ntr++ % TRACE_N];
  e->t_us = now_us() - G.t0 * 1000u;
  e->side = side;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&trace_mu);
}

static void describe(tconn *t) {
  const lw_conn_options *o = &t->o;
  fprintf(stderr,
          "  conn #%u: %s port=%u created=+%" PRIu64 "ms app-state=%d reading=%d "
          "queued=%" PRIu64 " received=%" PRIu64 " eof=%d faulted=%d soft-faults=%d\n",
          t->id,
          t->refused    ? "outbound(refused port)"
          : t->outbound ? "outbound"
                        : "accepted",
          t->port, t->t_created - G.t0, t->state, t->reading, t->queued, t->in_off, t->eof,
          t->faulted, t->soft_faults);
  fprintf(stderr,
          "  options: close_deadline=%u hwm=%zu read_size=%zu half_close=%d "
          "queue_max=%zu discard_max=%zu first_byte=%u stall=%u idle=%u%s\n",
          o->close_deadline_ms, o->write_high_water, o->read_size, o->allow_half_close,
          o->write_queue_max, o->linger_discard_max, o->first_byte_timeout_ms,
          o->stall_timeout_ms, o->idle_timeout_ms, o->idle_timeout_abort ? "(abort)" : "");
  if (atomic_load(&t->peer_started)) {
    const tpeer *p = &t->p;
    fprintf(stderr,
            "  peer plan: %s limit=%" PRIu64 " send=%" PRIu64
            " chunk=%zu pace=%ums end=%s@%ums "
            "after-eof=%s life=%ums\n",
            rm_names[p->read_mode], p->read_limit, p->send_total, p->send_chunk, p->pace_ms,
            pe_names[p->end_kind], p->end_after_ms, pa_names[p->after_eof], p->life_ms);
    fprintf(stderr,
            "  peer saw: recv=%" PRIu64 " sent=%" PRIu64 " eof=%d err=%s act=%s(state %d, "
            "rst=%d) at +%" PRIu64 "ms done=%d\n",
            p->recv_off, p->send_off, p->eof, p->err ? strerror(p->err) : "-",
            p->act ? pe_names[p->act] : "-", p->act_state, p->act_rst,
            p->t_act ? p->t_act - G.t0 : 0, atomic_load(&t->peer_done));
  }
  if (t->state == 3) {
    const lw_close_info *in = &t->info;
    fprintf(stderr,
            "  on_close: reason=%s initiator=%d rst=%d os_error=%s queued=%" PRIu64
            " sent=%" PRIu64 " acked=%" PRIu64 "(known %d) unsent_discarded=%" PRIu64
            " unread_discarded=%" PRIu64 " received=%" PRIu64 " close_ms=%" PRIu64 "\n",
            lw_reason_name(in->reason), (int)in->initiator, in->rst,
            in->os_error ? lw_err_name(in->os_error) : "0", in->bytes_queued, in->bytes_sent,
            in->bytes_acked, in->acked_known, in->unsent_discarded, in->unread_discarded,
            in->bytes_received, in->close_ms);
  }
  pthread_mutex_lock(&trace_mu);
  unsigned n = t->ntr < TRACE_N ? t->ntr : TRACE_N;
  fprintf(stderr, "  last %u events (ms since start; A app, P peer, F injected fault):\n", n);
  for (unsigned i = t->ntr - n; i < t->ntr; i++) {
    const tev *e = &t->tr[i % TRACE_N];
    fprintf(stderr, "    %8.3f %c %s\n", (double)e->t_us / 1000.0, e->side, e->msg);
  }
  pthread_mutex_unlock(&trace_mu);
}

static char bname[16] = "?";
static const char *backend_name(void) { return bname; }

/* kind: a short constant naming the check (the summary groups by it). */
static void fail(tconn *t, const char *kind, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&fail_mu);
  if (known_skip(kind)) {
    G.known_skipped++;
    pthread_mutex_unlock(&fail_mu);
    return;
  }
  int nth = atomic_fetch_add(&G.failures, 1) + 1;
  unsigned k;
  for (k = 0; k < G.nfail_kinds; k++)
    if (strcmp(G.fail_kinds[k], kind) == 0)
      break;
  if (k == G.nfail_kinds && k < 32)
    snprintf(G.fail_kinds[G.nfail_kinds++], sizeof(G.fail_kinds[0]), "%s", kind);
  int first_of_kind = k < 32 && G.fail_kind_n[k]++ == 0;
  if (first_of_kind || G.shown < 3) {
    G.shown++;
    fprintf(stderr, "\nTORTURE FAIL [%s seed=%" PRIu64 "] %s: conn #%u: %s\n", backend_name(),
            opt.seed, kind, t ? t->id : 0, msg);
    if (t)
      describe(t);
    fprintf(stderr,
            "  replay: torture --seed %" PRIu64 " --backend %s --seconds %u --faults %u\n",
            opt.seed, backend_name(), opt.seconds, opt.faults);
  }
  if (nth == 1) /* the first failure of the run: the detection time */
    fprintf(stderr, "TORTURE DETECTED after %.3f s [%s seed=%" PRIu64 "] %s\n",
            (double)(now_us() - G.t0 * 1000u) / 1e6, backend_name(), opt.seed, kind);
  pthread_mutex_unlock(&fail_mu);
  if (!opt.keep_going) {
    fflush(stderr);
    _exit(1);
  }
}

/* ================================ the peer thread ================================ */
/* New accepted-role peers are handed over on this list (the peer connects). */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static tconn *q_head[4096];
static unsigned q_n;

static int tcp_state(int fd) {
#ifdef _WIN32
  (void)fd;
  return -1; /* no TCP_INFO: the initiator check is off (win_notes) */
#else
  struct tcp_info ti;
  socklen_t l = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
    return -1;
  return ti.tcpi_state;
#endif
}

static void peer_plan(tconn *t) {
  tpeer *p = &t->p;
  rng *r = &t->prng;
  unsigned x = (unsigned)rng_below(r, 100);
  p->read_mode = x < 55 ? RM_ALL : x < 70 ? RM_SLOW : x < 85 ? RM_STOP : RM_NEVER;
  p->read_limit = rng_range(r, 0, 256 * 1024);
  p->slow_ms = (unsigned)rng_range(r, 1, 40);
  p->slow_chunk = (size_t)rng_range(r, 1, 8192);
  x = (unsigned)rng_below(r, 100);
  p->send_total = x < 30   ? 0
                  : x < 70 ? rng_range(r, 1, 2000)
                  : x < 90 ? rng_range(r, 2000, 300000)
                           : rng_range(r, 300000, 4u << 20); /* a flood */
  p->send_chunk = (size_t)rng_range(r, 1, 65536);
  p->pace_ms = rng_chance(r, 300) ? (unsigned)rng_range(r, 1, 30) : 0;
  x = (unsigned)rng_below(r, 100);
  p->end_kind = x < 45 ? PE_NONE : x < 65 ? PE_SHUT : x < 85 ? PE_CLOSE : PE_RST;
  p->end_after_ms = (unsigned)rng_range(r, 0, 2500);
  x = (unsigned)rng_below(r, 100);
  p->after_eof = x < 75 ? PA_CLOSE : x < 90 ? PA_SENDMORE : PA_RST;
  p->life_ms = (unsigned)rng_range(r, 1500, 7000);
}

/* The peer's first FIN or RST on the wire: record who was first (our TCP state). */
static void peer_act(tconn *t, int kind, int rst) {
  tpeer *p = &t->p;
  int st = tcp_state(p->fd);
  uint64_t now = now_ms();
  if (rst)
    p->t_rst = p->t_rst ? p->t_rst : now;
  if (!p->t_speak) {
    p->t_speak = now;
    p->speak_kind = rst ? 3 : 2;
  }
  if (!p->act && (st == TS_ESTABLISHED || st == TS_CLOSE_WAIT)) {
    p->act = kind;
    p->act_state = st;
    p->act_rst = rst;
    p->t_act = now;
#ifndef _WIN32
    int q = 0;
    p->act_outq = ioctl(p->fd, SIOCOUTQ, &q) == 0 ? q : 0;
#endif
  }
  tr(t, 'P', "%s (tcp state %d) recv=%" PRIu64 " sent=%" PRIu64, rst ? "RST" : "FIN/close", st,
     p->recv_off, p->send_off);
}

static void peer_finish(tconn *t, int how) {
  tpeer *p = &t->p;
  if (p->fd >= 0) {
    if (how == PE_RST) {
      struct linger lg = {1, 0};
      setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      peer_act(t, PE_RST, 1);
    } else {
      int unread = 0;
#ifdef _WIN32
      u_long ur = 0;
      ioctlsocket((SOCKET)p->fd, FIONREAD, &ur);
      unread = (int)ur;
#else
      ioctl(p->fd, FIONREAD, &unread);
#endif
      if (!p->shut || unread > 0)
        peer_act(t, PE_CLOSE, unread > 0);
      tr(t, 'P', "close() unread=%d", unread);
    }
    if (!p->shut)
      __atomic_store_n(&p->sent_at_fin, p->send_off, __ATOMIC_RELEASE);
    p->closed_full = 1;
    p->t_closed = now_ms();
    close(p->fd);
    p->fd = -1;
  }
  p->ended = 1;
  atomic_store(&t->peer_done, 1);
}

static void peer_shut(tconn *t) {
  tpeer *p = &t->p;
  if (p->shut || p->fd < 0)
    return;
  __atomic_store_n(&p->sent_at_fin, p->send_off, __ATOMIC_RELEASE);
  peer_act(t, PE_SHUT, 0);
  shutdown(p->fd, SHUT_WR);
  p->shut = 1;
}

static int peer_wants_read(const tpeer *p, uint64_t now) {
  if (p->fd < 0 || p->connecting || p->eof || p->err)
    return 0;
  switch (p->read_mode) {
  case RM_ALL:
    return 1;
  case RM_SLOW:
    return now >= p->next_read;
  case RM_STOP:
    return p->recv_off < p->read_limit;
  default:
    return 0;
  }
}

static int peer_wants_send(const tpeer *p, uint64_t now) {
  return p->fd >= 0 && !p->connecting && !p->shut && !p->err && p->send_off < p->send_total &&
         now >= p->next_send;
}

static void peer_step(tconn *t, short rev) {
  tpeer *p = &t->p;
  uint64_t now = now_ms();
  if (rev & (POLLHUP | POLLERR))
    p->hup = 1;
  if (p->connecting) {
    if (!(rev & (POLLOUT | POLLERR | POLLHUP)))
      return;
    int e = 0;
    socklen_t l = sizeof(e);
    getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &l);
    if (e) {
      p->err = e;
      tr(t, 'P', "connect failed: %s", strerror(e));
      peer_finish(t, PE_CLOSE);
      return;
    }
    p->connecting = 0;
    p->t_connected = now;
    tr(t, 'P', "connected");
  }
  if (now >= p->t_start + p->life_ms) {
    tr(t, 'P', "life over (%ums)", p->life_ms);
    peer_finish(t, rng_chance(&t->prng, 300) ? PE_RST : PE_CLOSE);
    return;
  }
  if (p->rst_at && now >= p->rst_at) {
    tr(t, 'P', "planned RST");
    peer_finish(t, PE_RST);
    return;
  }
  if (p->end_kind != PE_NONE && now >= p->t_connected + p->end_after_ms) {
    int k = p->end_kind;
    p->end_kind = PE_NONE;
    tr(t, 'P', "planned end: %s", pe_names[k]);
    if (k == PE_SHUT)
      peer_shut(t);
    else {
      peer_finish(t, k);
      return;
    }
  }
  /* read */
  for (int i = 0; i < 8 && peer_wants_read(p, now); i++) {
    char buf[65536];
    size_t want = sizeof(buf);
    if (p->read_mode == RM_SLOW && want > p->slow_chunk)
      want = p->slow_chunk;
    if (p->read_mode == RM_STOP && want > p->read_limit - p->recv_off)
      want = (size_t)(p->read_limit - p->recv_off);
    ssize_t n = recv(p->fd, buf, want, TW_DONTWAIT);
    if (n > 0) {
      long bad = check_tags(buf, t->id, 0, p->recv_off, (size_t)n);
      if (bad >= 0 && !p->bad) {
        p->bad = 1;
        uint64_t off = p->recv_off + (uint64_t)bad;
        size_t run = 0, ee = 0;
        for (size_t j = (size_t)bad; j < (size_t)n && run < 64; j++, run++)
          ee += (uint8_t)buf[j] == 0xEE;
        tr(t, 'P', "recv %zd at %" PRIu64 ": WRONG byte at offset %" PRIu64, n, p->recv_off,
           off);
        fail(t, ee == run ? "peer-got-poisoned-bytes" : "peer-got-wrong-bytes",
             "the peer received a byte that is not this connection's byte at stream offset "
             "%" PRIu64 " (got 0x%02x, want 0x%02x; %zu of the next %zu bytes are the 0xEE "
             "poison of a buffer already returned by its write callback)",
             off, (uint8_t)buf[bad], tag(t->id, 0, off), ee, run);
      }
      p->recv_off += (uint64_t)n;
      if (p->close_at && p->recv_off >= p->close_at) {
        tr(t, 'P', "read the whole answer (%" PRIu64 " bytes): close()", p->recv_off);
        peer_finish(t, PE_CLOSE);
        return;
      }
      if (p->read_mode == RM_SLOW) {
        p->next_read = now + p->slow_ms;
        break;
      }
      continue;
    }
    if (n == 0) {
      p->eof = 1;
      p->t_eof = now;
      tr(t, 'P', "EOF after %" PRIu64 " bytes", p->recv_off);
      if (p->after_eof == PA_RST) {
        peer_finish(t, PE_RST);
        return;
      }
      if (p->after_eof == PA_CLOSE || p->send_off >= p->send_total) {
        peer_shut(t);
        peer_finish(t, PE_CLOSE);
        return;
      }
      break; /* PA_SENDMORE: finish sending first */
    }
    if (errno == EAGAIN || errno == EINTR)
      break;
    p->err = errno;
    tr(t, 'P', "recv error %s after %" PRIu64 " bytes", strerror(errno), p->recv_off);
    peer_finish(t, PE_CLOSE);
    return;
  }
  /* send */
  for (int i = 0; i < 8 && peer_wants_send(p, now); i++) {
    char buf[65536];
    size_t n = p->send_chunk;
    if (n > p->send_total - p->send_off)
      n = (size_t)(p->send_total - p->send_off);
    if (n > sizeof(buf))
      n = sizeof(buf);
    fill_tags(buf, t->id, 1, p->send_off, n);
    ssize_t w = send(p->fd, buf, n, TW_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      if (!p->t_speak) {
        p->t_speak = now;
        p->speak_kind = 1;
      }
      p->send_off += (uint64_t)w;
      if (p->pace_ms) {
        p->next_send = now + p->pace_ms;
        break;
      }
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
      break;
    p->err = w < 0 ? errno : EIO;
    tr(t, 'P', "send error %s after %" PRIu64 " bytes", strerror(p->err), p->send_off);
    peer_finish(t, PE_CLOSE);
    return;
  }
  if (p->eof && p->after_eof == PA_SENDMORE && p->send_off >= p->send_total) {
    peer_shut(t);
    peer_finish(t, PE_CLOSE);
    return;
  }
  /* everything sent so far acknowledged by the app's kernel (in its receive queue or
   * read): from then on the library holds or has delivered those bytes */
  uint64_t last = p->ndel ? p->del_off[(p->ndel - 1) % 16] : 0;
  if (p->send_off > last && p->fd >= 0) {
    int outq = -1;
#ifndef _WIN32 /* no SIOCOUTQ: nothing is known delivered (unread-not-counted is off) */
    if (ioctl(p->fd, SIOCOUTQ, &outq) == 0 && outq == 0) {
#else
    if ((void)outq, 0) {
#endif
      p->del_off[p->ndel % 16] = p->send_off;
      p->t_del[p->ndel % 16] = now;
      p->ndel++;
    }
  }
}

static void peer_start_connect(tconn *t) {
  tpeer *p = &t->p;
  p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  tw_nonblock(p->fd);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t al = sizeof(a);
  if (p->fd < 0 || bind(p->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      getsockname(p->fd, (struct sockaddr *)&a, &al) < 0) {
    p->err = errno;
    tr(t, 'P', "socket/bind failed: %s", strerror(errno));
    peer_finish(t, PE_CLOSE);
    return;
  }
  t->port = ntohs(a.sin_port);
  pthread_mutex_lock(&map_mu);
  port_map[t->port] = t;
  pthread_mutex_unlock(&map_mu);
  a.sin_port = htons((uint16_t)t->dst_port);
  p->connecting = 1;
  tr(t, 'P', "connect from port %u to %u", t->port, ntohs(a.sin_port));
  if (connect(p->fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
    p->connecting = 0;
    p->t_connected = now_ms();
  } else if (errno != EINPROGRESS && errno != EAGAIN) { /* Winsock: WSAEWOULDBLOCK */
    p->err = errno;
    tr(t, 'P', "connect: %s", strerror(errno));
    peer_finish(t, PE_CLOSE);
  }
}

static void peer_init(tconn *t) {
  memset(&t->p, 0, sizeof(t->p));
  t->p.fd = -1;
  peer_plan(t);
  t->p.t_start = now_ms();
  t->p.t_connected = t->p.t_start;
  tpeer *p = &t->p;
  if (t->kind == TK_ANSWER) {
    p->read_mode = RM_ALL;
    p->send_total = 0;
    p->end_kind = PE_NONE;
    p->after_eof = PA_CLOSE;
    p->life_ms = 6000;
    p->close_at = t->answer_len;
  } else if (t->kind == TK_ACKWAIT) {
    p->read_mode = RM_NEVER;
    p->send_total = 0;
    p->end_kind = PE_SHUT;
    p->end_after_ms = 20;
    p->life_ms = 7000;
    p->rst_at = t->o.stall_timeout_ms ? 0 : p->t_start + rng_range(&t->prng, 400, 1200);
  } else if (t->kind == TK_BURST) {
    p->read_mode = RM_ALL;
    p->send_total = 100;
    p->send_chunk = 100;
    p->pace_ms = 0;
    p->end_kind = PE_NONE;
    p->after_eof = PA_CLOSE;
    p->life_ms = 9000;
    p->next_send = p->t_start + 800; /* once the application has stopped reading */
  }
  atomic_store(&t->peer_started, 1);
}

static void *peer_main(void *arg) {
  (void)arg;
  tconn **act = calloc(8192, sizeof(*act));
  struct pollfd *pf = calloc(8192 + 1, sizeof(*pf));
  pf[0].revents = POLLIN;
  unsigned nact = 0;
  struct {
    int fd;
    uint16_t port;
    uint64_t t;
  } pend[256];
  unsigned npend = 0;
  uint64_t next_slow = 0;
  rng slow_r = rng_derive(opt.seed, 0, 3);
  while (!atomic_load(&G.peer_stop)) {
    /* new accepted-role peers */
    pthread_mutex_lock(&q_mu);
    tconn *newq[4096];
    unsigned nq = q_n;
    memcpy(newq, q_head, nq * sizeof(*newq));
    q_n = 0;
    pthread_mutex_unlock(&q_mu);
    for (unsigned i = 0; i < nq; i++) {
      tconn *t = newq[i];
      peer_init(t);
      peer_start_connect(t);
      if (!t->p.ended && nact < 8192)
        act[nact++] = t;
    }
    /* outbound connections of the application arrive at the raw listener (accept4
     * allocates a file even to say EAGAIN: only when poll said so) */
    for (int i = 0; i < 64 && npend < 256 && (pf[0].revents & POLLIN); i++) {
      struct sockaddr_in a;
      socklen_t al = sizeof(a);
      int fd = accept4(G.raw_lfd, (struct sockaddr *)&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        break;
      tw_nonblock(fd);
      pend[npend].fd = fd;
      pend[npend].port = ntohs(a.sin_port);
      pend[npend].t = now_ms();
      npend++;
    }
    /* TK_SLOW: one connection from the backlog-0 listener now and then, so that its
     * queue is full most of the time and the SYNs of the others are dropped */
    if (npend < 256 && now_ms() >= next_slow) {
      struct sockaddr_in a;
      socklen_t al = sizeof(a);
      int fd = accept4(G.slow_lfd, (struct sockaddr *)&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        tw_nonblock(fd);
        pend[npend].fd = fd;
        pend[npend].port = ntohs(a.sin_port);
        pend[npend].t = now_ms();
        npend++;
        next_slow = now_ms() + rng_range(&slow_r, 100, 600);
      } else {
        next_slow = now_ms() + 20;
      }
    }
    for (unsigned i = 0; i < npend;) {
      pthread_mutex_lock(&map_mu);
      tconn *t = port_map[pend[i].port];
      if (t) {
        port_map[pend[i].port] = NULL;
        t->peer_matched = 1;
      }
      pthread_mutex_unlock(&map_mu);
      if (t) {
        peer_init(t);
        t->p.fd = pend[i].fd;
        if (t->kind == TK_ACKWAIT) {
          int sz = 4096;
          setsockopt(t->p.fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        }
        tr(t, 'P', "accepted (port %u)", pend[i].port);
        if (nact < 8192)
          act[nact++] = t;
        pend[i] = pend[--npend];
        continue;
      }
      if (now_ms() > pend[i].t + 3000) {
        /* The app gave up on it before it was matched (aborted while connecting). */
        close(pend[i].fd);
        pend[i] = pend[--npend];
        continue;
      }
      i++;
    }
    /* poll */
    uint64_t now = now_ms();
    int timeout = 10;
    pf[0].fd = G.raw_lfd;
    pf[0].events = POLLIN;
    for (unsigned i = 0; i < nact; i++) {
      tpeer *p = &act[i]->p;
      pf[i + 1].fd = p->fd;
      pf[i + 1].events = 0;
      pf[i + 1].revents = 0;
      if (p->connecting)
        pf[i + 1].events = POLLOUT;
      else {
        /* only what is wanted now: poll is level-triggered, and a peer that does not
         * read (or sends paced) must not spin this thread */
        if (peer_wants_read(p, now))
          pf[i + 1].events |= POLLIN;
        if (peer_wants_send(p, now))
          pf[i + 1].events |= POLLOUT;
        /* POLLHUP/POLLERR come even for events 0: a peer that wants nothing from a
         * dead socket would spin this thread; it ends at its life time anyway */
        if (!pf[i + 1].events && p->hup)
          pf[i + 1].fd = -1;
      }
    }
    poll(pf, nact + 1, npend ? 1 : timeout);
    for (unsigned i = 0; i < nact;) {
      tconn *t = act[i];
      peer_step(t, pf[i + 1].revents);
      if (t->p.ended) {
        act[i] = act[--nact];
        pf[i + 1] = pf[nact + 1];
        continue;
      }
      i++;
    }
    /* pollfd and act move together: rebuilt next round anyway */
    if (nact == 0 && npend == 0 && !nq) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  /* stop: end whatever is left (the main thread has failed them already if late) */
  for (unsigned i = 0; i < nact; i++)
    peer_finish(act[i], PE_RST);
  for (unsigned i = 0; i < npend; i++)
    close(pend[i].fd);
  free(act);
  free(pf);
  return NULL;
}

/* ================================ the application ================================ */
enum { K_SHUT = 1, K_CLOSE = 2, K_ABORT = 4, K_NAIVE = 8, K_CLOSE_CONNECTING = 16 };
#define APP_QUEUE_CAP (3u << 20) /* bytes one connection may write in its life */

static tconn **livev;
static unsigned nlive, livecap;
/* Write buffers returned by their callbacks: poisoned, and freed only later, so that a
 * kernel still reading one sends 0xEE rather than whatever malloc reuses it for. */
static char *quar[512];
static unsigned nquar;

static void quarantine(char *buf) {
  unsigned i = nquar++ % 512;
  free(quar[i]);
  quar[i] = buf;
}

static void live_add(tconn *t) {
  if (nlive == livecap) {
    livecap = livecap ? livecap * 2 : 256;
    livev = realloc(livev, livecap * sizeof(*livev));
  }
  t->live_idx = nlive;
  livev[nlive++] = t;
}
static void live_del(tconn *t) {
  tconn *last = livev[--nlive];
  livev[t->live_idx] = last;
  last->live_idx = t->live_idx;
}

static void random_opts(rng *r, lw_conn_options *o) {
  memset(o, 0, sizeof(*o));
  o->close_deadline_ms = (uint32_t)rng_range(r, 200, 3000);
  if (rng_chance(r, 300))
    o->write_high_water = (size_t)rng_range(r, 1024, 1u << 20);
  if (rng_chance(r, 300))
    o->read_size = (size_t)rng_range(r, 1, 65536);
  o->allow_half_close = rng_chance(r, 150);
  o->nodelay = rng_chance(r, 500);
  if (rng_chance(r, 80))
    o->write_queue_max = (size_t)rng_range(r, 64 * 1024, 1u << 20);
  if (rng_chance(r, 120))
    o->linger_discard_max = (size_t)rng_range(r, 1, 512 * 1024);
  if (rng_chance(r, 80))
    o->stall_timeout_ms = (uint32_t)rng_range(r, 300, 2000);
  if (rng_chance(r, 80)) {
    o->idle_timeout_ms = (uint32_t)rng_range(r, 100, 2000);
    o->idle_timeout_abort = rng_chance(r, 500);
  }
  if (rng_chance(r, 120))
    o->first_byte_timeout_ms = (uint32_t)rng_range(r, 50, 1000);
}

static tconn *tconn_new(int outbound) {
  tconn *t = calloc(1, sizeof(*t));
  t->id = ++G.next_id;
  t->outbound = outbound;
  t->t_created = now_ms();
  t->arng = rng_derive(opt.seed, t->id, 1);
  t->prng = rng_derive(opt.seed, t->id, 2);
  t->cancel_end = UINT64_MAX;
  t->p.fd = -1;
  t->fd_reg = -1;
  t->next = G.all;
  G.all = t;
  G.live++;
  G.n_conns++;
  return t;
}

static void on_read(lw_conn *c, long n, const char *buf);
static void on_write(lw_conn *c, int status, void *arg);
static void on_close(lw_conn *c, const lw_close_info *in);
static void app_random(tconn *ctx, unsigned permille);
static void new_conn(void);
static void new_conn_x(unsigned x);
static void new_outbound(void);
static void connect_one(tconn *t, int port);
static void on_burst_step(lw_timer *tm);
static void abort_and_reuse(tconn *t, const char *where);
static void listener_cycle(void);

static int live(const tconn *t) { return t && (t->state == 1 || t->state == 2) && t->c; }

static void note_close_call(tconn *t, int kind, int r) {
  if (r != 0)
    return;
  uint64_t now = now_ms();
  if (!t->first_close) {
    t->first_close = kind;
    t->t_first_close = now;
  }
  if (kind == K_ABORT || kind == K_NAIVE || kind == K_CLOSE_CONNECTING)
    t->t_abort_call = t->t_abort_call ? t->t_abort_call : now;
  if (kind == K_CLOSE)
    t->t_close_call = t->t_close_call ? t->t_close_call : now;
  t->close_kinds |= kind;
}

static size_t pick_size(rng *r) {
  unsigned x = (unsigned)rng_below(r, 100);
  return x < 60   ? (size_t)rng_range(r, 1, 1024)
         : x < 85 ? (size_t)rng_range(r, 1024, 32768)
         : x < 97 ? (size_t)rng_range(r, 32768, 262144)
                  : (size_t)rng_range(r, 262144, 2u << 20);
}

static void check_write_ret(tconn *t, int r, const char *what) {
  if (r == 0 || r == 1) {
    if (t->close_kinds & (K_CLOSE | K_ABORT | K_NAIVE | K_CLOSE_CONNECTING))
      fail(t, "write-accepted-after-close", "%s accepted (%d) after a close call", what, r);
    else if (t->close_kinds & K_SHUT)
      fail(t, "write-accepted-after-shutdown", "%s accepted (%d) after lw_shutdown", what, r);
    return;
  }
  if (r == LW_EQUEUEFULL) {
    t->queue_full = 1;
    return;
  }
  if (r == LW_ESHUTDOWN && !(t->close_kinds & K_SHUT))
    fail(t, "write-eshutdown-without-shutdown",
         "%s returned ESHUTDOWN but lw_shutdown was never called", what);
  if (r != LW_ESHUTDOWN && r != LW_ECLOSING)
    fail(t, "write-unexpected-error", "%s returned %s", what, lw_err_name(r));
}

static void do_write_n(tconn *t, int copy, size_t n);
static void do_write(tconn *t, int copy) { do_write_n(t, copy, pick_size(&t->arng)); }

static void do_write_n(tconn *t, int copy, size_t n) {
  if (t->queued + n > APP_QUEUE_CAP)
    return;
  char *buf = malloc(n);
  fill_tags(buf, t->id, 0, t->queued, n);
  int r;
  if (copy) {
    r = lw_conn_write_copy(t->c, buf, n);
    tr(t, 'A', "write_copy(%zu) at %" PRIu64 " -> %d", n, t->queued, r);
    check_write_ret(t, r, "lw_conn_write_copy");
    if (r == 0 || r == 1)
      t->queued += n;
    memset(buf, 0xEE, n); /* the copy must not need it any more */
    free(buf);
    return;
  }
  wrec *w = malloc(sizeof(*w));
  w->t = t;
  w->buf = buf;
  w->len = n;
  w->start = t->queued;
  w->seq = t->wseq_next;
  r = lw_conn_write(t->c, buf, n, on_write, w);
  tr(t, 'A', "write#%u(%zu) at %" PRIu64 " -> %d", w->seq, n, t->queued, r);
  check_write_ret(t, r, "lw_conn_write");
  if (r == 0 || r == 1) {
    t->queued += n;
    t->wseq_next++;
    t->nwrites_out++;
  } else {
    free(buf);
    free(w);
  }
}

/* Input may be delivered from inside lw_conn_read_start (a completion backend's held
 * bytes): the model says "reading" before the call, and takes it back if refused. */
static int app_read_start(tconn *t) {
  int was = t->reading;
  t->reading = 1;
  int r = lw_conn_read_start(t->c, on_read);
  if (r != 0)
    t->reading = was;
  return r;
}

static void on_action_timer(lw_timer *tm);
static void on_far_timer(lw_timer *tm);

static void timer_churn(tconn *t) {
  unsigned x = (unsigned)rng_below(&t->arng, 4);
  if (x == 0 && t->timer) {
    lw_timer_free(t->timer);
    t->timer = NULL;
    tr(t, 'A', "timer freed");
  } else if (x == 1 && t->timer) {
    lw_timer_stop(t->timer);
    tr(t, 'A', "timer stopped");
  } else {
    if (!t->timer && lw_timer_new(G.loop, &t->timer) == 0)
      lw_timer_set_data(t->timer, t);
    if (t->timer) {
      uint64_t ms = rng_range(&t->arng, 0, 300);
      uint64_t rep = rng_chance(&t->arng, 500) ? rng_range(&t->arng, 1, 200) : 0;
      lw_timer_start(t->timer, on_action_timer, ms, rep);
      tr(t, 'A', "timer start %" PRIu64 "/%" PRIu64, ms, rep);
    }
  }
}

/* One random public call on a live connection. */
static void act_on(tconn *t) {
  if (!live(t) || t->kind >= TK_ANSWER) /* the targeted schedules run undisturbed */
    return;
  lw_conn *c = t->c;
  unsigned x = (unsigned)rng_below(&t->arng, 100);
  int r;
  if (x < 30) {
    do_write(t, 0);
  } else if (x < 42) {
    do_write(t, 1);
  } else if (x < 52) {
    r = lw_conn_read_stop(c);
    tr(t, 'A', "read_stop -> %d", r);
    if (r == 0)
      t->reading = 0;
  } else if (x < 64) {
    r = app_read_start(t);
    tr(t, 'A', "read_start -> %d", r);
  } else if (x < 68) {
    size_t sz = rng_chance(&t->arng, 300) ? (size_t)rng_range(&t->arng, 1, 16)
                                          : (size_t)rng_range(&t->arng, 1, 1u << 20);
    r = lw_conn_set_read_size(c, sz);
    tr(t, 'A', "set_read_size(%zu) -> %d", sz, r);
  } else if (x < 70) {
    r = lw_shutdown(c);
    tr(t, 'A', "lw_shutdown -> %d", r);
    note_close_call(t, K_SHUT, r);
  } else if (x < 73) {
    uint32_t d = (uint32_t)rng_range(&t->arng, 0, 3000);
    int connecting = t->state == 1;
    r = lw_close(c, d);
    tr(t, 'A', "lw_close(%u)%s -> %d", d, connecting ? " while connecting" : "", r);
    note_close_call(t, connecting ? K_CLOSE_CONNECTING : K_CLOSE, r);
  } else if (x < 74) {
    r = lw_abort(c);
    tr(t, 'A', "lw_abort -> %d", r);
    note_close_call(t, K_ABORT, r);
  } else if (x < 75) {
    r = lw_close_naive(c);
    tr(t, 'A', "lw_close_naive -> %d", r);
    note_close_call(t, K_NAIVE, r);
  } else if (x < 82) {
    timer_churn(t);
  }
}

/* The connection's own end: every connection ends, whatever its peer does. */
static void on_end_timer(lw_timer *tm) {
  tconn *t = lw_timer_get_data(tm);
  G.cbs++;
  if (t->state == 3) {
    fail(t, "callback-after-close", "a timer of a closed connection fired");
    return;
  }
  if (!live(t))
    return;
  t->end_tries++;
  unsigned x = (unsigned)rng_below(&t->arng, 100);
  int r;
  if (t->end_tries >= 3 || now_ms() > t->t_created + 9000) {
    /* last resort: a reading, lingering close */
    r = app_read_start(t);
    int connecting = t->state == 1;
    r = lw_close(t->c, 2000);
    tr(t, 'A', "end: read_start + lw_close(2000) -> %d", r);
    note_close_call(t, connecting ? K_CLOSE_CONNECTING : K_CLOSE, r);
    lw_timer_start(tm, on_end_timer, 2500, 0);
  } else if (x < 55) {
    uint32_t d = (uint32_t)rng_range(&t->arng, 20, 3000);
    int connecting = t->state == 1;
    r = lw_close(t->c, d);
    tr(t, 'A', "end: lw_close(%u) -> %d", d, r);
    note_close_call(t, connecting ? K_CLOSE_CONNECTING : K_CLOSE, r);
    lw_timer_start(tm, on_end_timer, 4000, 0);
  } else if (x < 65) {
    r = lw_shutdown(t->c);
    tr(t, 'A', "end: lw_shutdown -> %d", r);
    note_close_call(t, K_SHUT, r);
    lw_timer_start(tm, on_end_timer, rng_range(&t->arng, 10, 1500), 0);
  } else if (x < 75) {
    r = lw_abort(t->c);
    tr(t, 'A', "end: lw_abort -> %d", r);
    note_close_call(t, K_ABORT, r);
    lw_timer_start(tm, on_end_timer, 4000, 0);
  } else if (x < 83) {
    r = lw_close_naive(t->c);
    tr(t, 'A', "end: lw_close_naive -> %d", r);
    note_close_call(t, K_NAIVE, r);
    lw_timer_start(tm, on_end_timer, 4000, 0);
  } else {
    tr(t, 'A', "end: not yet");
    lw_timer_start(tm, on_end_timer, rng_range(&t->arng, 10, 2000), 0);
  }
  app_random(t, 300);
}

static void on_action_timer(lw_timer *tm) {
  tconn *t = lw_timer_get_data(tm);
  G.cbs++;
  if (t->state == 3) {
    fail(t, "callback-after-close", "a timer of a closed connection fired");
    return;
  }
  tr(t, 'A', "timer fired");
  if (t->nwrites_out > 0 && t->kind == TK_RANDOM && rng_chance(&t->arng, 100)) {
    abort_and_reuse(t, "timer");
    return;
  }
  app_random(t, 700);
}

static void on_far_timer(lw_timer *tm) {
  tconn *t = lw_timer_get_data(tm);
  G.cbs++;
  lw_timer_stop(tm); /* once is enough (a wrapped repeat would fire every turn) */
  fail(t, "timer-overflow",
       "a timer started with a timeout near UINT64_MAX fired (now + timeout wrapped: issue "
       "14.7)");
}

static void app_open(tconn *t) {
  lw_conn *c = t->c;
  t->t_open = now_ms();
  if (rng_chance(&t->arng, 850)) {
    int r = app_read_start(t);
    tr(t, 'A', "read_start -> %d", r);
  }
  if (rng_chance(&t->arng, 200)) {
    size_t sz = (size_t)rng_range(&t->arng, 1, 70000);
    tr(t, 'A', "set_read_size(%zu) -> %d", sz, lw_conn_set_read_size(c, sz));
  }
  if (rng_chance(&t->arng, 600))
    timer_churn(t);
  if (rng_chance(&t->arng, 30) && lw_timer_new(G.loop, &t->far_timer) == 0) {
    lw_timer_set_data(t->far_timer, t);
    uint64_t far = UINT64_MAX - rng_below(&t->arng, 1000);
    lw_timer_start(t->far_timer, on_far_timer, far, rng_chance(&t->arng, 500) ? far : 0);
    tr(t, 'A', "far timer start %" PRIu64, far);
  }
  app_random(t, 600);
}

/* Under Wine a receive may complete with 0 bytes (EOF) for a peer's RST instead of
 * WSAECONNRESET (src/win/README.md, LWT_RST_RELIABLE in tests/helper.h): an EOF after the
 * peer reset is then not checked against what the peer sent (counted and printed). */
#ifdef _WIN32
#define WINE_RST_AS_EOF() lw_w_is_wine()
#else
#define WINE_RST_AS_EOF() 0
#endif
static unsigned G_wine_rst_eof;

static void on_read(lw_conn *c, long n, const char *buf) {
  tconn *t = lw_conn_get_data(c);
  G.cbs++;
  if (t->state != 2) {
    fail(t, "callback-after-close", "read callback (%ld) in app state %d", n, t->state);
    return;
  }
  if (!t->reading) {
    tr(t, 'A', "read %ld while stopped", n);
    fail(t, "read-while-stopped", "read callback (%ld) while reading is stopped", n);
  }
  if (n == LW_EOF) {
    tr(t, 'A', "read EOF after %" PRIu64 " bytes", t->in_off);
    if (t->eof)
      fail(t, "eof-twice", "a second EOF");
    t->eof = 1;
    if (atomic_load(&t->peer_started) && !t->faulted) {
      uint64_t fin_at = __atomic_load_n(&t->p.sent_at_fin, __ATOMIC_ACQUIRE);
      if (t->in_off != fin_at && WINE_RST_AS_EOF() &&
          __atomic_load_n(&t->p.t_rst, __ATOMIC_ACQUIRE)) {
        /* Wine: the peer's RST read as EOF (src/win/README.md), what it discarded lost */
        G_wine_rst_eof++;
        tr(t, 'A',
           "Wine: EOF after the peer's RST (%" PRIu64 " of %" PRIu64 " bytes): not checked",
           t->in_off, fin_at);
      } else if (t->in_off != fin_at)
        fail(t, "eof-before-all-data",
             "EOF delivered after %" PRIu64 " bytes; the peer sent %" PRIu64 " before its FIN",
             t->in_off, fin_at);
    }
    app_random(t, 400);
    return;
  }
  if (n <= 0) {
    fail(t, "read-bad-length", "read callback with nread=%ld", n);
    return;
  }
  if (t->eof)
    fail(t, "data-after-eof", "%ld bytes after EOF", n);
  long bad = check_tags(buf, t->id, 1, t->in_off, (size_t)n);
  /* runs of reads are one trace line, so they do not push the calls out of the ring */
  if (bad < 0 && t->nreads_run && t->ntr == t->tr_read_at + 1) {
    t->nreads_run++;
    pthread_mutex_lock(&trace_mu);
    tev *e = &t->tr[t->tr_read_at % TRACE_N];
    snprintf(e->msg, sizeof(e->msg), "read x%u: %" PRIu64 "..%" PRIu64, t->nreads_run,
             t->read_run_from, t->in_off + (uint64_t)n);
    pthread_mutex_unlock(&trace_mu);
  } else {
    tr(t, 'A', "read %ld at %" PRIu64 "%s", n, t->in_off, bad >= 0 ? " WRONG" : "");
    t->nreads_run = 1;
    t->tr_read_at = t->ntr - 1;
    t->read_run_from = t->in_off;
  }
  if (bad >= 0)
    fail(t, "app-got-wrong-bytes",
         "the read callback got a byte that is not this peer's byte at offset %" PRIu64
         " (got 0x%02x, want 0x%02x): another connection's input, or lost/duplicated/"
         "reordered bytes",
         t->in_off + (uint64_t)bad, (uint8_t)buf[bad],
         tag(t->id, 1, t->in_off + (uint64_t)bad));
  t->in_off += (uint64_t)n;
  G.bytes_peer_to_app += (uint64_t)n;
  app_random(t, 60);
}

/* Abort with writes still queued (a send may be prepared and not yet submitted), then
 * new connections at once, in the same callback: their sockets take the number the
 * abort gave back. Bytes of the aborted connection on the new socket, or a callback of
 * a write whose buffer the kernel still reads, are caught by the tags and the poison
 * (issue 13.1, 13.2). */
static void abort_and_reuse(tconn *t, const char *where) {
  int fd = lw_conn_fd(t->c);
  int r = lw_abort(t->c);
  tr(t, 'A', "lw_abort in a %s with %d writes out (fd %d), then connects -> %d", where,
     t->nwrites_out, fd, r);
  note_close_call(t, K_ABORT, r);
  if (!G.running)
    return;
  unsigned k = (unsigned)rng_range(&t->arng, 1, 3);
  for (unsigned i = 0; i < k; i++)
    new_outbound();
}

static void on_write(lw_conn *c, int status, void *arg) {
  wrec *w = arg;
  tconn *t = w->t;
  G.cbs++;
  (void)c;
  tr(t, 'A', "write#%u cb status=%d", w->seq, status);
  if (t->state == 3)
    fail(t, "callback-after-close", "write callback #%u after on_close", w->seq);
  if (status != 0 && status != LW_ECANCELED)
    fail(t, "write-status", "write callback #%u with status %d", w->seq, status);
  if (w->seq != t->wseq_cb)
    fail(t, "write-cb-order", "write callback #%u, expected #%u next", w->seq, t->wseq_cb);
  t->wseq_cb = w->seq + 1;
  if (status == 0) {
    if (t->saw_cancel)
      fail(t, "write-ok-after-cancel",
           "write #%u completed with 0 after an earlier one was cancelled", w->seq);
    if (w->start + w->len > t->ok_end)
      t->ok_end = w->start + w->len;
  } else if (!t->saw_cancel) {
    t->saw_cancel = 1;
    t->cancel_end = w->start + w->len;
  }
  t->nwrites_out--;
  memset(w->buf, 0xEE, w->len); /* A2: the buffer is ours again */
  quarantine(w->buf);
  free(w);
  if (status == 0 && t->nwrites_out > 0 && t->kind == TK_RANDOM && live(t) &&
      rng_chance(&t->arng, 60)) {
    abort_and_reuse(t, "write callback");
    return;
  }
  if (t->state == 2 || t->state == 1)
    app_random(t, 150);
}

static void on_drain(lw_conn *c) {
  tconn *t = lw_conn_get_data(c);
  G.cbs++;
  if (t->state == 3) {
    fail(t, "callback-after-close", "drain callback after on_close");
    return;
  }
  tr(t, 'A', "drain");
  app_random(t, 500);
}

static void on_connect(lw_conn *c, int status) {
  tconn *t = lw_conn_get_data(c);
  G.cbs++;
  t->connect_cbs++;
  t->connect_status = status;
  tr(t, 'A', "connect cb status=%s", status ? lw_err_name(status) : "0");
  if (t->connect_cbs > 1)
    fail(t, "connect-cb-twice", "a second connect callback");
  if (t->state != 1) {
    fail(t, "callback-after-close", "connect callback in app state %d", t->state);
    return;
  }
  if (status != 0)
    return;
  t->state = 2;
  if (t->kind == TK_ANSWER) {
    /* the answer, then the close, in the same callback (14.6) */
    t->t_open = now_ms();
    app_read_start(t);
    char *buf = malloc(t->answer_len);
    fill_tags(buf, t->id, 0, 0, t->answer_len);
    int r = lw_conn_write_copy(c, buf, t->answer_len);
    tr(t, 'A', "answer: write_copy(%" PRIu64 ") -> %d", t->answer_len, r);
    check_write_ret(t, r, "lw_conn_write_copy");
    if (r == 0 || r == 1)
      t->queued += t->answer_len;
    free(buf);
    r = lw_close(c, 3000);
    tr(t, 'A', "answer: lw_close(3000) -> %d", r);
    note_close_call(t, K_CLOSE, r);
    return;
  }
  if (t->kind == TK_ACKWAIT) {
    t->t_open = now_ms();
    int sz = 400000, fd = lw_conn_fd(c);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    app_read_start(t);
    do_write_n(t, 0, 96 * 1024);
    int r = lw_close(c, 3000);
    tr(t, 'A', "ack-wait: lw_close(3000) -> %d (stall %u)", r, t->o.stall_timeout_ms);
    note_close_call(t, K_CLOSE, r);
    return;
  }
  if (t->kind == TK_BURST) {
    t->t_open = now_ms();
    int r = app_read_start(t);
    tr(t, 'A', "burst: read_start -> %d", r);
    lw_timer_start(t->end_timer, on_burst_step, 300, 0);
    return;
  }
  app_open(t);
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  G.cbs++;
  if (status < 0) {
    G.accept_errs++;
    return;
  }
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  uint16_t port = 0;
  if (getpeername(lw_conn_fd(c), (struct sockaddr *)&a, &al) == 0)
    port = ntohs(a.sin_port);
  pthread_mutex_lock(&map_mu);
  tconn *t = port ? port_map[port] : NULL;
  if (t)
    port_map[port] = NULL;
  pthread_mutex_unlock(&map_mu);
  if (!t || t->outbound || t->state != 0) {
    /* An accepted connection no peer of ours made (or whose getpeername failed: a
     * connection reset while queued) -- abort it, with a model entry of its own. */
    t = tconn_new(0);
    t->port = port;
    t->o = G.lopts;
    atomic_store(&t->peer_done, 1); /* no peer to wait for */
    t->c = c;
    t->state = 2;
    lw_conn_set_data(c, t);
    lw_conn_on_close(c, on_close);
    live_add(t);
    tr(t, 'A', "accepted an unmatched connection (port %u): abort", port);
    note_close_call(t, K_ABORT, lw_abort(c));
    return;
  }
  t->c = c;
  t->state = 2;
  int fd = lw_conn_fd(c);
  if (fd >= 0 && fd < 65536)
    G.by_fd[fd] = t;
  t->fd_reg = fd;
  lw_conn_set_data(c, t);
  lw_conn_on_close(c, on_close);
  lw_conn_on_drain(c, on_drain);
  live_add(t);
  if (lw_timer_new(G.loop, &t->end_timer) == 0) {
    lw_timer_set_data(t->end_timer, t);
    lw_timer_start(t->end_timer, on_end_timer, rng_range(&t->arng, 5, 3000), 0);
  }
  tr(t, 'A', "accepted fd=%d", fd);
  app_open(t);
}

static void on_close(lw_conn *c, const lw_close_info *in) {
  tconn *t = lw_conn_get_data(c);
  G.cbs++;
  t->on_close_count++;
  tr(t, 'A',
     "on_close reason=%s initiator=%d rst=%d err=%s q=%" PRIu64 " s=%" PRIu64 " a=%" PRIu64
     " ud=%" PRIu64 " rd=%" PRIu64,
     lw_reason_name(in->reason), (int)in->initiator, in->rst,
     in->os_error ? lw_err_name(in->os_error) : "0", in->bytes_queued, in->bytes_sent,
     in->bytes_acked, in->unsent_discarded, in->unread_discarded);
  if (t->on_close_count > 1) {
    fail(t, "on-close-twice", "a second on_close");
    return;
  }
  t->reading_at_close = t->reading;
  t->state = 3;
  t->info = *in;
  t->t_on_close = now_ms();
  if ((unsigned)in->reason < LW_REASON__COUNT)
    G.reasons[in->reason]++;
  if (t->nwrites_out)
    fail(t, "write-cb-after-on-close", "%d write callbacks had not run when on_close came",
         t->nwrites_out);
  if (t->fd_reg >= 0 && t->fd_reg < 65536 && G.by_fd[t->fd_reg] == t)
    G.by_fd[t->fd_reg] = NULL;
  if (t->timer)
    lw_timer_free(t->timer);
  if (t->end_timer)
    lw_timer_free(t->end_timer);
  if (t->far_timer)
    lw_timer_free(t->far_timer);
  t->timer = t->end_timer = t->far_timer = NULL;
  live_del(t);
  t->c = NULL;
  G.bytes_app_to_peer += in->bytes_sent;
  app_random(NULL, 250); /* inside this connection's on_close: act on others */
}

/* Random calls from a callback: on the connection it is about, on another one, a new
 * connection, rarely the listener. */
static void app_random(tconn *ctx, unsigned permille) {
  if (ctx && rng_chance(&ctx->arng, permille)) {
    unsigned k = (unsigned)rng_range(&ctx->arng, 1, 3);
    for (unsigned i = 0; i < k; i++)
      act_on(ctx);
  }
  if (nlive && rng_chance(&G.r, permille / 3)) {
    tconn *o = livev[rng_below(&G.r, nlive)];
    if (o != ctx) {
      tr(o, 'A', "(called from conn #%u's callback)", ctx ? ctx->id : 0);
      act_on(o);
    }
  }
  if (G.running && G.live - G.burst_open < opt.max_conns && rng_chance(&G.r, permille / 10))
    new_conn();
  if (G.running && rng_chance(&G.r, permille / 200))
    listener_cycle();
}

static void note_fault(int fd, const char *what, int fatal) {
  tconn *t = fd >= 0 && fd < 65536 ? G.by_fd[fd] : NULL;
  if (!t || t->state == 3)
    return;
  if (fatal)
    t->faulted = 1;
  else
    t->soft_faults++;
  tr(t, 'F', "%s", what);
}

static void new_conn(void) { new_conn_x((unsigned)rng_below(&G.r, 100)); }

/* An outbound connection of the random kind: its socket takes the lowest free fd
 * number, often the one a close just gave back. */
static void new_outbound(void) { new_conn_x((unsigned)rng_range(&G.r, 62, 96)); }

static void new_conn_x(unsigned x) {
  if (x < 50) {
    tconn *t = tconn_new(0);
    t->o = G.lopts;
    t->dst_port = G.lport;
    t->listener_gen = G.lgen;
    pthread_mutex_lock(&q_mu);
    if (q_n < 4096)
      q_head[q_n++] = t;
    else
      atomic_store(&t->peer_done, 1);
    pthread_mutex_unlock(&q_mu);
    return;
  }
  tconn *t = tconn_new(1);
  t->refused = x >= 97;
  t->kind = x < 54 ? TK_SLOW : x < 58 ? TK_ANSWER : x < 62 ? TK_ACKWAIT : TK_RANDOM;
  random_opts(&t->arng, &t->o);
  t->o.first_byte_timeout_ms = 0;
  if (t->kind == TK_ANSWER) {
    memset(&t->o, 0, sizeof(t->o));
    t->o.close_deadline_ms = 3000;
    t->o.nodelay = rng_chance(&t->arng, 500);
    /* Up to 256 KiB: an answer that ended on full segments used to leave before a
     * FIN of its own, and a peer that closed once it had read it closed first (seen on
     * both backends with 50-64 KB answers); the last send now keeps a small tail for
     * the FIN to ride on (lw__conn_last_before_fin, LW__FIN_TAIL). */
    t->answer_len = rng_range(&t->arng, 1, 256 * 1024);
  }
  if (t->kind == TK_ACKWAIT) {
    memset(&t->o, 0, sizeof(t->o));
    t->o.close_deadline_ms = 3000;
    if (rng_chance(&t->arng, 500))
      t->o.stall_timeout_ms = 500;
  }
  connect_one(t, t->refused ? G.refuse_port : t->kind == TK_SLOW ? G.slow_port : G.raw_port);
}

/* lw_conn_connect for an outbound model entry, and its registration. */
static void connect_one(tconn *t, int port) {
  lw_conn *c = NULL;
  int r = lw_conn_connect(G.loop, "127.0.0.1", (uint16_t)port, &t->o, on_connect, &c);
  if (r < 0) {
    tr(t, 'A', "lw_conn_connect -> %s", lw_err_name(r));
    fail(t, "connect-call-failed", "lw_conn_connect returned %s", lw_err_name(r));
    atomic_store(&t->peer_done, 1);
    t->state = 3;
    t->info.reason = LW_REASON_NONE;
    return;
  }
  t->c = c;
  t->state = 1;
  lw_conn_set_data(c, t);
  lw_conn_on_close(c, on_close);
  lw_conn_on_drain(c, on_drain);
  int fd = lw_conn_fd(c);
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  if (getsockname(fd, (struct sockaddr *)&a, &al) == 0)
    t->port = ntohs(a.sin_port);
  if (fd >= 0 && fd < 65536)
    G.by_fd[fd] = t;
  t->fd_reg = fd;
  if (t->refused) {
    atomic_store(&t->peer_done, 1); /* nobody answers */
  } else {
    pthread_mutex_lock(&map_mu);
    port_map[t->port] = t;
    pthread_mutex_unlock(&map_mu);
  }
  tr(t, 'A', "lw_conn_connect fd=%d port=%u%s", fd, t->port,
     t->refused             ? " (refused port)"
     : t->kind == TK_SLOW   ? " (slow listener)"
     : t->kind == TK_ANSWER ? " (answer + close)"
     : t->kind == TK_BURST  ? " (burst)"
                            : "");
  live_add(t);
  if (lw_timer_new(G.loop, &t->end_timer) == 0) {
    lw_timer_set_data(t->end_timer, t);
    /* the targeted kinds end by their own schedule; this is the fallback */
    lw_timer_start(t->end_timer, on_end_timer,
                   t->kind >= TK_ANSWER ? 9500 : rng_range(&t->arng, 5, 3000), 0);
  }
  /* calls made before the connect completes */
  if (t->kind == TK_SLOW && rng_chance(&t->arng, 600)) {
    /* the SYN waits in a full accept queue: lw_shutdown must defer its FIN (14.4) */
    if (rng_chance(&t->arng, 500))
      do_write(t, rng_chance(&t->arng, 300));
    r = lw_shutdown(c);
    tr(t, 'A', "lw_shutdown while connecting -> %d", r);
    note_close_call(t, K_SHUT, r);
  } else if (t->kind <= TK_SLOW && rng_chance(&t->arng, 300)) {
    act_on(t);
  }
}

/* TK_BURST: opt.burst connections at once (see TK_BURST). */
static void burst(void) {
  G.nbursts++;
  for (unsigned i = 0; i < opt.burst; i++) {
    tconn *t = tconn_new(1);
    t->kind = TK_BURST;
    G.burst_open++;
    t->o.close_deadline_ms = 3000;
    connect_one(t, G.raw_port);
  }
}

/* TK_BURST steps, on end_timer: stop reading (a recv is pending), read again once the
 * peer's 100 bytes have arrived, close; then the ordinary end's last resort. */
static void on_burst_step(lw_timer *tm) {
  tconn *t = lw_timer_get_data(tm);
  G.cbs++;
  if (t->state == 3) {
    fail(t, "callback-after-close", "a timer of a closed connection fired");
    return;
  }
  if (!live(t))
    return;
  int r;
  switch (t->end_tries++) {
  case 0:
    r = lw_conn_read_stop(t->c);
    tr(t, 'A', "burst: read_stop -> %d", r);
    if (r == 0)
      t->reading = 0;
    lw_timer_start(tm, on_burst_step, 1500, 0);
    break;
  case 1:
    r = app_read_start(t);
    tr(t, 'A', "burst: read_start -> %d", r);
    lw_timer_start(tm, on_burst_step, 300, 0);
    break;
  default:
    r = lw_close(t->c, 2000);
    tr(t, 'A', "burst: lw_close(2000) -> %d", r);
    note_close_call(t, K_CLOSE, r);
    t->end_tries = 3;
    lw_timer_start(tm, on_end_timer, 4000, 0);
    break;
  }
}

static void listener_cycle(void) {
  if (G.listener)
    lw_listener_close(G.listener);
  G.listener = NULL;
  random_opts(&G.r, &G.lopts);
  int r = lw_listener_new(G.loop, "127.0.0.1", 0, 64, &G.lopts, on_accept, &G.listener);
  if (r < 0) {
    fail(NULL, "listener-new-failed", "lw_listener_new: %s", lw_err_name(r));
    return;
  }
  G.lport = lw_listener_port(G.listener);
  G.lgen++;
}

/* ================================ the final checks ================================ */
#ifdef _WIN32
#define NO_PEER_TCP_STATE 1 /* no TCP_INFO on the peer's sockets (win_notes) */
#else
#define NO_PEER_TCP_STATE 0
#endif
/* The largest peer offset known to be in our kernel (acked by it) at least 2 ms before
 * time `at`, from the peer's history; 0 if none. */
static uint64_t delivered_before(const tpeer *p, uint64_t at) {
  uint64_t best = 0;
  unsigned n = p->ndel < 16 ? p->ndel : 16;
  for (unsigned i = p->ndel - n; i < p->ndel; i++)
    if (p->t_del[i % 16] + 2 <= at && p->del_off[i % 16] > best)
      best = p->del_off[i % 16];
  return best;
}

static void check_final(tconn *t) {
  if (t->state != 3 || !t->on_close_count)
    return;
  const lw_close_info *in = &t->info;
  const tpeer *p = &t->p;
  int peer = atomic_load(&t->peer_started) && !t->refused;
  int reason = in->reason;
  int k = t->close_kinds;
  int opened = t->t_open != 0;
  int f = t->faulted;

  /* ---- byte accounting ---- */
  if (in->bytes_queued != t->queued)
    fail(t, "bytes-queued", "bytes_queued=%" PRIu64 " but the application queued %" PRIu64,
         in->bytes_queued, t->queued);
  if (in->bytes_received != t->in_off)
    fail(t, "bytes-received", "bytes_received=%" PRIu64 " but the read callback got %" PRIu64,
         in->bytes_received, t->in_off);
  if (!(in->bytes_acked <= in->bytes_sent && in->bytes_sent <= in->bytes_queued))
    fail(t, "acked-sent-queued", "not acked <= sent <= queued");
  if (in->acked_known && in->bytes_queued != in->bytes_acked + in->unsent_discarded)
    fail(t, "queued-acked-discarded", "bytes_queued != bytes_acked + unsent_discarded");
  if (in->bytes_sent < t->ok_end)
    fail(t, "sent-below-completed-writes",
         "bytes_sent=%" PRIu64 " but writes up to offset %" PRIu64 " reported status 0",
         in->bytes_sent, t->ok_end);
  if (t->saw_cancel && in->bytes_sent >= t->cancel_end)
    fail(t, "cancelled-write-was-sent",
         "a write ending at offset %" PRIu64 " was cancelled but bytes_sent=%" PRIu64,
         t->cancel_end, in->bytes_sent);
  if (peer && p->recv_off > in->bytes_sent)
    fail(t, "peer-got-more-than-sent",
         "the peer received %" PRIu64 " bytes, bytes_sent=%" PRIu64, p->recv_off,
         in->bytes_sent);
  if (peer && in->bytes_received + in->unread_discarded > p->send_off && !f)
    fail(t, "unread-more-than-sent",
         "bytes_received + unread_discarded = %" PRIu64 " > the %" PRIu64
         " bytes the peer sent",
         in->bytes_received + in->unread_discarded, p->send_off);

  /* ---- input the application never read: abort and naive close count it (13.6) ---- */
  if (peer && !f && (k & (K_ABORT | K_NAIVE)) && !(k & K_CLOSE) && t->t_abort_call &&
      (t->first_close == K_ABORT || t->first_close == K_NAIVE)) {
    uint64_t d = delivered_before(p, t->t_abort_call);
    uint64_t got = in->bytes_received + in->unread_discarded;
    if (d > got && (!p->t_act || p->t_act > t->t_abort_call))
      fail(t, "unread-not-counted",
           "%s: bytes_received + unread_discarded = %" PRIu64 ", but %" PRIu64
           " bytes of the peer were in our kernel before the call (issue 13.6 if io_uring)",
           t->first_close == K_ABORT ? "lw_abort" : "lw_close_naive", got, d);
    /* (close_ms > 0: the library had begun a lingering close of its own before -- an
     * idle timeout, the peer's FIN -- and its discarding reads emptied the kernel's
     * queue, so the naive close that cut it short rightly sent a FIN.) */
    if (t->first_close == K_NAIVE && d > in->bytes_received && !in->rst && in->close_ms == 0 &&
        (!p->t_act || p->t_act > t->t_abort_call))
      fail(t, "naive-unread-not-rst",
           "lw_close_naive with %" PRIu64 " unread bytes reported rst=0 (B13: it is an RST)",
           d - in->bytes_received);
  }

  /* ---- the reason agrees with what happened ---- */
  int lib_close = (t->o.idle_timeout_ms != 0) || (t->o.stall_timeout_ms != 0) ||
                  (t->o.first_byte_timeout_ms != 0 && !t->outbound) || t->queue_full;
  switch (reason) {
  case LW_REASON_ABORT:
    if (!(k & (K_ABORT | K_CLOSE_CONNECTING)))
      fail(t, "reason-abort-without-abort", "reason abort without lw_abort");
    break;
  case LW_REASON_NAIVE:
    if (!(k & K_NAIVE))
      fail(t, "reason-naive-without-naive", "reason naive without lw_close_naive");
    break;
  case LW_REASON_QUEUE_FULL:
    if (!t->queue_full)
      fail(t, "reason-queue-full", "reason queue-full without a refused write");
    break;
  case LW_REASON_FIRST_BYTE_TIMEOUT:
    if (t->outbound || !t->o.first_byte_timeout_ms)
      fail(t, "reason-first-byte", "first-byte-timeout not configured");
    else if (peer && p->t_speak && p->t_speak + 30 < t->t_open + t->o.first_byte_timeout_ms)
      fail(t,
           p->speak_kind == 1   ? "first-byte-timeout-after-peer-data"
           : p->speak_kind == 2 ? "first-byte-timeout-after-peer-fin"
                                : "first-byte-timeout-after-peer-rst",
           "first-byte-timeout, but the peer sent its first %s %" PRIu64
           " ms after the accept (timeout %u ms; the header: a peer that sent no byte, no "
           "FIN; held input counts: issue 13.6 if io_uring)",
           p->speak_kind == 1   ? "byte"
           : p->speak_kind == 2 ? "FIN"
                                : "RST",
           p->t_speak - t->t_open, t->o.first_byte_timeout_ms);
    break;
  case LW_REASON_IDLE_TIMEOUT:
    if (!t->o.idle_timeout_ms)
      fail(t, "reason-idle", "idle-timeout not configured");
    break;
  case LW_REASON_STALLED:
    if (!t->o.stall_timeout_ms)
      fail(t, "reason-stalled", "stalled not configured");
    break;
  case LW_REASON_DISCARD_LIMIT:
    if (peer && p->send_off <= (t->o.linger_discard_max ? t->o.linger_discard_max : 1u << 20))
      fail(t, "reason-discard-limit", "discard-limit, but the peer sent only %" PRIu64,
           p->send_off);
    if (in->acked_known && in->bytes_acked < in->bytes_queued)
      fail(t, "discard-limit-before-delivery",
           "discard-limit reset with %" PRIu64 " of our %" PRIu64
           " bytes unacknowledged: the response is lost to the RST (issue 14.3)",
           in->bytes_queued - in->bytes_acked, in->bytes_queued);
    break;
  case LW_REASON_DEAD_PEER:
  case LW_REASON_DRAIN:
    if (!f)
      fail(t, "reason-unexpected", "reason %s: never configured", lw_reason_name(reason));
    break;
  case LW_REASON_ERROR:
    if (!f && !t->refused)
      fail(t, "reason-error-without-cause",
           "reason error (os_error %s) with no injected fault and a peer that listens "
           "(lw_shutdown while connecting: issue 14.4?)",
           in->os_error ? lw_err_name(in->os_error) : "0");
    break;
  case LW_REASON_PEER_RESET:
    /* (a TK_SLOW connection the peer thread never accepted: the listener's kernel was
     * its peer, and may reset it -- a handshake whose last ACK met a full queue; and an
     * accepted connection whose getpeername failed (port 0): it was reset while queued,
     * and the abort of a dead connection rightly reports the peer's reset) */
    if (!f && (!peer || (!p->t_rst && !p->closed_full)) &&
        !(t->kind == TK_SLOW && !atomic_load(&t->peer_started)) && !(!peer && t->port == 0))
      fail(t, "peer-reset-without-reset",
           "reason peer-reset, but the peer neither reset nor closed (%s)",
           t->connect_status ? "the connect failed: lw_shutdown while connecting, issue 14.4?"
                             : "no cause");
    break;
  case LW_REASON_GRACEFUL:
    if (!(k & (K_SHUT | K_CLOSE)) && !f)
      fail(t, "graceful-without-close", "reason graceful, but the application never closed");
    break;
  case LW_REASON_PEER_CLOSED_FIRST:
    if (peer && !f && !p->t_act && !p->closed_full && !p->shut)
      fail(t, "peer-closed-first-without-fin",
           "reason peer-closed-first, but the peer sent no FIN");
    break;
  case LW_REASON_DEADLINE:
    /* (with no close call and no EOF seen: closed-without-eof below) */
    if (!(k & (K_SHUT | K_CLOSE)) && t->eof && !t->o.idle_timeout_ms && !f &&
        t->o.allow_half_close)
      fail(t, "deadline-without-close", "reason deadline with no close begun");
    if (peer && !f && p->t_rst && t->t_first_close && p->t_rst > t->t_first_close &&
        p->t_rst + 400 < t->t_on_close) /* ACK_WAIT polls SO_ERROR every <= 200 ms */
      fail(t, "peer-reset-reported-as-deadline",
           "the peer reset %" PRIu64 " ms before on_close, during the close: reason must be "
           "peer-reset, not deadline (issue 14.1)",
           t->t_on_close - p->t_rst);
    break;
  default:
    fail(t, "reason-unknown", "reason %d", reason);
  }

  /* ---- a peer FIN ends a connection only after the application saw EOF (13.5) ---- */
  if (opened && !k && !f && !t->eof && !lib_close &&
      (reason == LW_REASON_PEER_CLOSED_FIRST || reason == LW_REASON_GRACEFUL ||
       reason == LW_REASON_DEADLINE))
    fail(t, "closed-without-eof",
         "ended %s with no close call and no EOF delivered (reading %s at the end): the "
         "peer's FIN was consumed while reading was stopped (issue 13.5 if io_uring)",
         lw_reason_name(reason), t->reading_at_close ? "started" : "stopped");

  /* ---- initiator: who sent the first FIN or RST ---- */
  if (peer && opened && !f && in->initiator != LW_INITIATOR_NONE && !NO_PEER_TCP_STATE) {
    int peer_first = p->act && p->act_state == TS_ESTABLISHED;
    uint64_t ours = t->t_first_close;
    uint64_t lib = t->t_on_close > in->close_ms ? t->t_on_close - in->close_ms : 0;
    int near = 0;
    if (p->act) {
      if (ours && (ours > p->t_act ? ours - p->t_act : p->t_act - ours) < 20)
        near = 1;
      if (lib && (lib > p->t_act ? lib - p->t_act : p->t_act - lib) < 20)
        near = 1;
    }
    int want = peer_first ? LW_INITIATOR_PEER : LW_INITIATOR_LOCAL;
    /* The peer acted while still ESTABLISHED although we had begun to close before:
     * our FIN may have been queued in the kernel behind bytes the peer did not read
     * (never on the wire), or not. Only the clear cases are checked: the peer acted
     * before any close of ours began (PEER), or after our FIN/RST reached it or never
     * (LOCAL). */
    int ambiguous = peer_first && ((ours && ours < p->t_act) || (lib && lib < p->t_act));
    /* The peer's FIN queued behind bytes our side had not read (its SIOCOUTQ > 0): it
     * was first to hand its kernel a FIN, but the FIN reaches our kernel only once we
     * read what is ahead of it -- maybe after our own FIN or RST left. Nothing on our
     * side can see it: not checked. (An RST is never queued.) */
    if (peer_first && !p->act_rst && p->act_outq > 0)
      ambiguous = 1;
    /* A local abort/naive close after a peer FIN/RST the library never read (reading
     * stopped): the peer was first on the wire, though the library was not told. */
    const char *kind = peer_first && (reason == LW_REASON_ABORT || reason == LW_REASON_NAIVE)
                           ? "initiator-after-unread-peer-end"
                           : "initiator";
    if (!near && !ambiguous && (int)in->initiator != want)
      fail(t, kind,
           "initiator=%s, but the %s (the peer's TCP state at its first FIN/RST: %d; "
           "issue 14.5)",
           in->initiator == LW_INITIATOR_PEER ? "peer" : "local",
           peer_first ? "peer's FIN/RST went first"
                      : "peer had seen our FIN/RST first or never acted",
           p->act_state);
  }

  /* ---- the ACK wait (our FIN behind unacknowledged bytes, the peer's FIN in): a
   * reset ends it at once as peer-reset, a peer that acknowledges nothing ends it as
   * stalled when stall_timeout_ms is set -- never the close deadline (14.1, 14.2) ---- */
  /* (the final snapshot reads SO_ERROR, so a reset the ACK wait missed still ends as
   * peer-reset -- at the deadline: the time tells) */
  if (t->kind == TK_ACKWAIT && peer && opened && !f && p->rst_at && p->t_rst &&
      t->t_close_call && t->t_close_call < p->t_rst && p->t_rst + 600 < t->t_on_close)
    fail(t, "ackwait-reset-seen-late",
         "the peer reset in the ACK wait; on_close (%s) came %" PRIu64 " ms later (the ACK "
         "wait polls SO_ERROR every <= 200 ms; issue 14.1)",
         lw_reason_name(reason), t->t_on_close - p->t_rst);
  if (t->kind == TK_ACKWAIT && peer && opened && !f && reason == LW_REASON_DEADLINE) {
    if (p->rst_at && p->t_rst && p->t_rst < t->t_on_close)
      fail(t, "ackwait-reset-as-deadline",
           "the peer reset %" PRIu64 " ms before on_close, in the ACK wait: reason deadline "
           "(issue 14.1: the ACK wait must watch for errors)",
           t->t_on_close - p->t_rst);
    else if (t->o.stall_timeout_ms)
      fail(t, "ackwait-stall-ignored",
           "stall_timeout_ms=%u, the peer acknowledged nothing, and the close ended at its "
           "deadline %" PRIu64
           " ms after lw_close (issue 14.2: the stall clock runs in the ACK "
           "wait)",
           t->o.stall_timeout_ms, t->t_on_close - t->t_close_call);
  }

  /* ---- write_copy + lw_close: the FIN rides on the answer's last segment, so a peer
   * that closes once it has read the answer closes second, every time (14.6) ---- */
  /* Windows has no MSG_MORE: the FIN follows the WSASend's completion, so a fast peer
   * may truly close first; then the report must say so, as the truth (src/win/README.md):
   * peer-closed-first, initiator peer, no RST, no TIME_WAIT. */
#ifdef _WIN32
  int answer_truth = reason == LW_REASON_PEER_CLOSED_FIRST &&
                     in->initiator == LW_INITIATOR_PEER && !in->rst && !in->time_wait;
#else
  int answer_truth = 0;
#endif
  if (t->kind == TK_ANSWER && peer && opened && !f && p->close_at &&
      p->recv_off >= p->close_at && !p->err && reason != LW_REASON_GRACEFUL && !answer_truth)
    fail(t, "write-copy-close-not-graceful",
         "write_copy(%" PRIu64 ") then lw_close in one callback, the peer closed once it had "
         "read the answer: reason %s, must be graceful (our FIN left with the answer; the "
         "reason flips run to run when the bytes leave before the FIN: issue 14.6)",
         t->answer_len, lw_reason_name(reason));

  /* ---- the headline promise: a graceful close delivers everything to a peer that
   * reads it all, then EOF ---- */
  int well = peer && p->read_mode == RM_ALL && p->after_eof != PA_RST &&
             (!p->t_closed || (p->eof && p->t_closed >= p->t_eof));
  if (well && !f && (reason == LW_REASON_GRACEFUL || reason == LW_REASON_PEER_CLOSED_FIRST)) {
    if (!p->eof || p->recv_off != in->bytes_queued || p->err)
      fail(t, "graceful-not-delivered",
           "reason %s, but the peer (reading everything) got %" PRIu64 " of %" PRIu64
           " bytes, eof=%d, err=%s",
           lw_reason_name(reason), p->recv_off, in->bytes_queued, p->eof,
           p->err ? strerror(p->err) : "-");
  }
  if (reason == LW_REASON_GRACEFUL && in->acked_known && in->bytes_acked != in->bytes_queued)
    fail(t, "graceful-not-acked", "reason graceful with bytes_acked < bytes_queued");
}

static void finalize(tconn *t) {
  check_final(t);
  pthread_mutex_lock(&map_mu);
  if (t->port && port_map[t->port] == t)
    port_map[t->port] = NULL;
  pthread_mutex_unlock(&map_mu);
  G.n_done++;
  if (t->kind == TK_BURST)
    G.burst_open--;
  G.live--;
  free(t);
}

/* Finalizes what is finished; returns how many are not. at_end: the listener is gone,
 * so an accepted-role peer that was never accepted is finished too. */
static unsigned sweep(int at_end) {
  unsigned left = 0;
  uint64_t now = now_ms();
  for (tconn **pp = &G.all; *pp;) {
    tconn *t = *pp;
    int pdone = atomic_load(&t->peer_done);
    int fin = 0;
    if (t->state == 3) {
      if (pdone)
        fin = 1;
      else if (t->outbound && !atomic_load(&t->peer_started) && now > t->t_on_close + 3500) {
        pthread_mutex_lock(&map_mu);
        if (!t->peer_matched) {
          if (port_map[t->port] == t)
            port_map[t->port] = NULL;
          fin = 1;
        }
        pthread_mutex_unlock(&map_mu);
      }
    } else if (t->state == 0 && pdone &&
               (at_end || t->p.err || t->listener_gen != G.lgen ||
                t->p.t_closed + 3000 < now)) {
      fin = 1; /* never accepted: its listener closed, or it gave up before (RST) */
    }
    if (!fin && (t->state == 1 || t->state == 2) && now > t->t_created + 30000) {
      fail(t, "never-ended", "still open %" PRIu64 " ms after it was made", now - t->t_created);
      t->t_created = now; /* once */
    }
    if (fin) {
      *pp = t->next;
      finalize(t);
      continue;
    }
    left++;
    pp = &t->next;
  }
  return left;
}

static void on_sched(lw_timer *tm) {
  (void)tm;
  G.cbs++;
  uint64_t now = now_ms();
  if (G.running && now >= G.t_end)
    G.running = 0;
  if (G.running) {
    if (!G.target || rng_chance(&G.r, 5))
      G.target = (unsigned)rng_range(&G.r, 4, opt.max_conns);
    for (int k = 0; k < 4 && G.live - G.burst_open < G.target; k++)
      new_conn();
    if (opt.burst && now >= G.next_burst && G.burst_open == 0) {
      burst();
      G.next_burst = now + rng_range(&G.r, 20000, 40000);
    }
    if (rng_chance(&G.r, 2))
      listener_cycle();
  }
  static unsigned tick;
  if (++tick % 10 == 0)
    sweep(0);
}

static int fd_count(void) {
#ifdef _WIN32
  /* No /proc/self/fd: the sockets of this process, by probing the handle values (socket
   * handles are kernel handles, multiples of 4; as tests/win/test_win_atk20.c). */
  int n = 0;
  for (uintptr_t h = 4; h < 0x20000; h += 4) {
    int ty = 0, len = sizeof(ty);
    if (getsockopt((int)h, SOL_SOCKET, SO_TYPE, (char *)&ty, &len) == 0)
      n++;
  }
  return n;
#else
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (!d)
    return -1;
  while (readdir(d))
    n++;
  closedir(d);
  return n;
#endif
}

static int raw_listen(int do_listen, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  tw_nonblock(fd);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t al = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      (do_listen && listen(fd, do_listen == 2 ? 0 : 1024) < 0) ||
      getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
    perror("torture: raw listener");
    exit(2);
  }
  *port = ntohs(a.sin_port);
  return fd;
}

#ifdef _WIN32
/* What the Windows build leaves out, printed at start (the header of this file). */
static void win_notes(void) {
  printf("torture: Windows%s%s: off: fault injection (-Wl,--wrap has no Winsock seam: "
         "--faults 0)\n",
         lw_w_is_wine() ? " under Wine " : "", lw_w_is_wine() ? lw_w_wine_version() : "");
  printf("torture: off: the initiator check (no TCP_INFO on the peer's sockets: its TCP "
         "state at its first FIN/RST is unknown)\n");
  printf("torture: off: unread-not-counted, naive-unread-not-rst (no SIOCOUTQ on the "
         "peer's sockets: what our kernel acknowledged is unknown)\n");
  if (lw_w_is_wine())
    printf("torture: Wine: an EOF after the peer's RST is not checked against what the peer "
           "sent (Wine may read an RST as EOF)\n");
  printf("torture: fd baseline = socket handles probed (no /proc/self/fd); --burst %u "
         "(no RLIMIT_NOFILE; bursts are an io_uring matter)\n",
         opt.burst);
}
#endif

static void usage(void) {
  fprintf(
      stderr,
      "usage: torture [--seed S] [--seconds N] [--backend epoll|uring] [--faults PERMILLE]\n"
      "               [--conns N] [--burst N] [--keep-going] [--quiet]\n"
      "env: LW_BACKEND, TORTURE_SEED, TORTURE_SECONDS, TORTURE_KNOWN=check,check\n");
  exit(2);
}

static double cpu_s(void) {
#ifdef _WIN32
  FILETIME c0, e0, k, u;
  if (!GetProcessTimes(GetCurrentProcess(), &c0, &e0, &k, &u))
    return 0;
  return ((double)(((uint64_t)k.dwHighDateTime << 32) | k.dwLowDateTime) +
          (double)(((uint64_t)u.dwHighDateTime << 32) | u.dwLowDateTime)) /
         1e7;
#else
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
#endif
}

int main(int argc, char **argv) {
  const char *e;
  opt.seed = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ now_us();
  opt.seed %= 1000000000000ull;
  if ((e = getenv("TORTURE_SEED")) && *e)
    opt.seed = strtoull(e, NULL, 0);
  if ((e = getenv("TORTURE_SECONDS")) && *e)
    opt.seconds = (unsigned)atoi(e);
  if ((e = getenv("TORTURE_KNOWN")))
    opt.known = e;
  opt.backend = getenv("LW_BACKEND");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--seed") && v)
      opt.seed = strtoull(v, NULL, 0), i++;
    else if (!strcmp(a, "--seconds") && v)
      opt.seconds = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--backend") && v)
      opt.backend = v, i++;
    else if (!strcmp(a, "--faults") && v)
      opt.faults = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--conns") && v)
      opt.max_conns = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--burst") && v)
      opt.burst = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--keep-going"))
      opt.keep_going = 1;
    else if (!strcmp(a, "--quiet"))
      opt.quiet = 1;
    else
      usage();
  }
  if (opt.max_conns < 4)
    opt.max_conns = 4;
#ifdef _WIN32
  int burst_given = 0;
  for (int i = 1; i < argc; i++)
    burst_given |= !strcmp(argv[i], "--burst");
  if (!burst_given)
    opt.burst = 64;
  opt.faults = 0;
#else
  if (opt.burst) {
    /* two fds per connection (ours and the peer's), for the burst and the rest */
    struct rlimit rl;
    rlim_t need = (rlim_t)(opt.burst + opt.max_conns) * 2 + 512;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
      rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need) {
      printf("torture: --burst %u needs %lu fds (RLIMIT_NOFILE): bursts off\n", opt.burst,
             (unsigned long)need);
      opt.burst = 0;
    }
  }
#endif
  int fd_base = fd_count();
  G.t0 = now_ms();
  G.r = rng_derive(opt.seed, 0, 0);
  G.by_fd = calloc(65536, sizeof(*G.by_fd));
  if (lw_loop_new(&G.loop, opt.backend) < 0) {
    fprintf(stderr, "torture: lw_loop_new(%s) failed\n", opt.backend ? opt.backend : "default");
    return 2;
  }
  if (opt.backend && *opt.backend && strcmp(lw_loop_backend(G.loop), opt.backend) != 0) {
    printf("SKIP torture: backend %s unavailable here (got %s)\n", opt.backend,
           lw_loop_backend(G.loop));
    lw_loop_close(G.loop);
    return 77;
  }
  snprintf(bname, sizeof(bname), "%s", lw_loop_backend(G.loop));
  printf("torture: backend=%s seed=%" PRIu64 " seconds=%u faults=%u conns<=%u burst=%u%s%s\n",
         lw_loop_backend(G.loop), opt.seed, opt.seconds, opt.faults, opt.max_conns, opt.burst,
         *opt.known ? " TORTURE_KNOWN=" : "", opt.known);
  printf("torture: replay with: torture --seed %" PRIu64
         " --backend %s --seconds %u --faults %u\n",
         opt.seed, lw_loop_backend(G.loop), opt.seconds, opt.faults);
  printf("torture: peer vanish (nft drop in a netns) is not exercised by this program\n");
#ifdef _WIN32
  win_notes();
#endif
  fflush(stdout);
  G.raw_lfd = raw_listen(1, &G.raw_port);
  G.slow_lfd = raw_listen(2, &G.slow_port);    /* backlog 0: TK_SLOW */
  G.refuse_fd = raw_listen(0, &G.refuse_port); /* bound, not listening: connect refused */
  listener_cycle();
  pthread_create(&G.peer_thread, NULL, peer_main, NULL);

  tf_config fc = {.soft_permille = opt.faults,
                  .fatal_permille = opt.faults / 8,
                  .emfile_permille = opt.faults * 2,
                  .seed = opt.seed,
                  .note = note_fault};
  if (opt.faults)
    tf_enable(&fc);

  lw_timer *sched;
  lw_timer_new(G.loop, &sched);
  lw_timer_start(sched, on_sched, 1, 5);
  G.running = 1;
  G.t_end = G.t0 + (uint64_t)opt.seconds * 1000u;
  G.next_burst = G.t0 + rng_range(&G.r, 2000, 6000);
  uint64_t drain_end = G.t_end + 45000;
  G.win_t = now_ms();
  double cpu0 = cpu_s();
  for (;;) {
    int r = lw_loop_run(G.loop, LW_RUN_ONCE);
    if (r < 0) {
      fail(NULL, "loop-run-error", "lw_loop_run: %s", lw_err_name(r));
      break;
    }
    G.iters++;
    G.win_iters++;
    uint64_t now = now_ms();
    if (now >= G.win_t + 1000) {
      /* No spinning: a loop that wakes far more often than it has anything to tell the
       * application about is burning CPU (the ENOBUFS resubmit spin of issue 13.4). */
      uint64_t cbs = G.cbs - G.win_cbs;
      if (G.win_iters > 20000 && cbs * 20 < G.win_iters)
        fail(NULL, "spin",
             "%" PRIu64 " loop iterations in %" PRIu64 " ms with only %" PRIu64
             " callbacks (%u connections open, %u live in the app)",
             G.win_iters, now - G.win_t, cbs, G.live, nlive);
      G.win_iters = 0;
      G.win_cbs = G.cbs;
      G.win_t = now;
    }
    if (!G.running && now > G.t_end) {
      unsigned left = sweep(0);
      int only_unaccepted = 1;
      for (tconn *t = G.all; t; t = t->next)
        if (!(t->state == 0 && atomic_load(&t->peer_done)))
          only_unaccepted = 0;
      if (left == 0 || only_unaccepted)
        break;
      if (now > drain_end) {
        for (tconn *t = G.all; t; t = t->next)
          if (t->state == 1 || t->state == 2 || !atomic_load(&t->peer_done))
            fail(t, "never-ended",
                 "not finished 45 s after the run (app state %d, peer done %d)", t->state,
                 atomic_load(&t->peer_done));
        break;
      }
    }
  }
  double cpu = cpu_s() - cpu0;
  tf_disable();
  /* Tear down: what is left is aborted, and must still end by itself. */
  lw_timer_free(sched);
  if (G.listener)
    lw_listener_close(G.listener);
  G.listener = NULL;
  for (unsigned i = 0; i < nlive; i++)
    if (livev[i]->c)
      lw_abort(livev[i]->c);
  for (unsigned i = 0; i < nlive; i++)
    if (livev[i]->timer)
      lw_timer_stop(livev[i]->timer);
  uint64_t td = now_ms() + 10000;
  while (nlive && now_ms() < td)
    lw_loop_run(G.loop, LW_RUN_NOWAIT), lw_loop_run(G.loop, LW_RUN_ONCE);
  atomic_store(&G.peer_stop, 1);
  pthread_join(G.peer_thread, NULL);
  sweep(1);
  int lr = lw_loop_run(G.loop, LW_RUN_DEFAULT);
  int cr = lw_loop_close(G.loop);
  if (lr != 0 || cr != 0)
    fail(NULL, "loop-not-empty", "lw_loop_run=%d lw_loop_close=%s: handles left", lr,
         lw_err_name(cr));
  close(G.raw_lfd);
  close(G.slow_lfd);
  close(G.refuse_fd);
  for (tconn *t = G.all, *n; t; t = n) {
    n = t->next;
    free(t);
  }
  for (unsigned i = 0; i < 512; i++)
    free(quar[i]);
  free(livev);
  free(G.by_fd);
  int fd_end = fd_count();
  if (fd_end != fd_base)
    fail(NULL, "fd-leak", "%d fds open at the start, %d at the end", fd_base, fd_end);

  tf_counts fcnt;
  tf_get_counts(&fcnt);
  unsigned secs = (unsigned)((now_ms() - G.t0) / 1000u);
  printf("torture: %s seed=%" PRIu64 ": %" PRIu64 " connections (%" PRIu64
         " finished), %" PRIu64 " bytes app->peer, %" PRIu64 " bytes peer->app checked, "
         "%" PRIu64 " loop iterations, %.1f s CPU in %u s\n",
         backend_name(), opt.seed, G.n_conns, G.n_done, G.bytes_app_to_peer,
         G.bytes_peer_to_app, G.iters, cpu, secs);
  printf("torture: faults injected: eintr=%" PRIu64 " eagain=%" PRIu64 " short=%" PRIu64
         " fatal=%" PRIu64 " emfile=%" PRIu64 " submit-eintr=%" PRIu64
         " (accept errors seen %" PRIu64 ")\n",
         fcnt.eintr, fcnt.eagain, fcnt.short_io, fcnt.fatal, fcnt.emfile, fcnt.submit_eintr,
         G.accept_errs);
  printf("torture: reasons:");
  for (int i = 1; i < LW_REASON__COUNT; i++)
    if (G.reasons[i])
      printf(" %s=%u", lw_reason_name((lw_close_reason)i), G.reasons[i]);
  printf("\n");
  if (WINE_RST_AS_EOF())
    printf("torture: Wine: %u EOFs after a peer's RST not checked against what it sent "
           "(Wine reads an RST as EOF)\n",
           G_wine_rst_eof);
  if (G.known_skipped)
    printf("torture: %u failures of the kinds in TORTURE_KNOWN=%s were not counted\n",
           G.known_skipped, opt.known);
  int nf = atomic_load(&G.failures);
  if (nf) {
    printf("torture: FAILED: %d failures, by check:", nf);
    for (unsigned i = 0; i < G.nfail_kinds; i++)
      printf(" %s=%u", G.fail_kinds[i], G.fail_kind_n[i]);
    printf("\ntorture: replay: torture --seed %" PRIu64
           " --backend %s --seconds %u --faults %u\n",
           opt.seed, backend_name(), opt.seconds, opt.faults);
    return 1;
  }
  printf("torture: OK\n");
  return 0;
}
