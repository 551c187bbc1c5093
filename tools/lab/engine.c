/*
 * engine.c - runs one scenario: a listener on 127.0.0.1 (or ::1) port 0, a capture
 * filtered to that port, the steps in order with raw socket calls, sock_diag snapshots,
 * then the expectations.
 *
 * Every call is bounded in time (poll with a timeout before any read or write that
 * could block, SO_RCVTIMEO for the helper thread) so that a scenario that goes wrong
 * ends in seconds instead of hanging the lab. Every send uses MSG_NOSIGNAL: a send after
 * the peer's RST must show up as EPIPE in the report, not kill the lab with SIGPIPE.
 *
 * Windows (_WIN32): the same code on Winsock through tools/win/lw_win.h (socket calls
 * wrapped to set errno from WSA codes, close() = closesocket()); the seams below skip the
 * network namespace scenarios (Linux-only) and keep a socket whose close() would block
 * (SO_LINGER on a non-blocking socket: WSAEWOULDBLOCK, the socket stays open) for cleanup.
 */
#include "lab.h"
#include "../sockdiag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LW_LAB_OLD_FDS 8

typedef struct {
  int fd;
  long timeout_ms;
  ssize_t ret;
  int err;
  double start_mono, end_mono;
  int running;
  pthread_t thr;
} lw_lab_async;

typedef struct {
  const lw_lab_scenario *sc;
  const lw_lab_opts *o;
  lw_lab_result *r;
  int family;
  int lfd;
  int fd[2];
  int lastfd[2];
  int oldfds[LW_LAB_OLD_FDS];
  int noldfds;
  struct sockaddr_storage addr;
  socklen_t alen;
  double t0_real, t0_mono;
  long long sendpos[2]; /* pattern offset per side */
  lw_lab_async as[2];
} lw_lab_ctx;

static double lw_now_ms(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void lw_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Appends a call record; text is formatted by the caller. */
static lw_lab_call *lw_lab_record(lw_lab_ctx *x, lw_lab_side side, lw_lab_op op, long ret,
                                  int err, double ms) {
  lw_lab_result *r = x->r;
  if (r->ncalls == LW_LAB_MAX_CALLS)
    return NULL;
  lw_lab_call *c = &r->calls[r->ncalls++];
  memset(c, 0, sizeof *c);
  c->t_ms = lw_now_ms(CLOCK_REALTIME) - x->t0_real;
  c->side = side;
  c->op = op;
  c->ret = ret;
  c->err = err;
  c->ms = ms;
  return c;
}

#define LW_TXT(c, ...)                                                                         \
  do {                                                                                         \
    if (c)                                                                                     \
      snprintf((c)->text, sizeof(c)->text, __VA_ARGS__);                                       \
  } while (0)

static const char *lw_lab_errstr(long ret, int err, char *buf, size_t len) {
  if (ret < 0)
    snprintf(buf, len, "-1 %s", lw_lab_errno_name(err));
  else
    snprintf(buf, len, "%ld", ret);
  return buf;
}

/* The descriptor an option step applies to: the side's socket, or for the server
 * before accept() the listener (accepted sockets inherit its options). */
static int lw_lab_optfd(lw_lab_ctx *x, lw_lab_side s) {
  if (s == LW_SIDE_SERVER && x->fd[s] < 0)
    return x->lfd;
  if (s == LW_SIDE_CLIENT && x->fd[s] < 0) {
    x->fd[s] = socket(x->family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    x->lastfd[s] = x->fd[s];
  }
  return x->fd[s];
}

static void lw_lab_pattern(unsigned char *buf, size_t n, long long pos) {
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)((pos + (long long)i) % 251);
}

/* Sends up to `want` bytes; waits for POLLOUT at most budget_ms in total. */
static long long lw_lab_send(lw_lab_ctx *x, lw_lab_side s, long long want, long budget_ms,
                             int *err) {
  static unsigned char buf[65536];
  long long total = 0;
  double end = lw_now_ms(CLOCK_MONOTONIC) + (double)budget_ms;
  *err = 0;
  while (total < want) {
    size_t chunk = want - total > (long long)sizeof buf ? sizeof buf : (size_t)(want - total);
    lw_lab_pattern(buf, chunk, x->sendpos[s]);
    ssize_t n = send(x->fd[s], buf, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      total += n;
      x->sendpos[s] += n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      double left = end - lw_now_ms(CLOCK_MONOTONIC);
      struct pollfd p = {.fd = x->fd[s], .events = POLLOUT};
      if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
        *err = EAGAIN;
        break;
      }
      continue;
    }
    *err = n < 0 ? errno : EIO;
    break;
  }
  x->r->sent[s] += total;
  return total;
}

/* recv with a poll bound: -1/EAGAIN when nothing arrived in time. */
static ssize_t lw_lab_recv1(int fd, void *buf, size_t len, long timeout_ms, int *err) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  *err = 0;
  int pr = poll(&p, 1, (int)timeout_ms);
  if (pr < 0) {
    *err = errno;
    return -1;
  }
  if (pr == 0) {
    *err = EAGAIN;
    return -1;
  }
  if (p.revents & POLLNVAL) {
    *err = EBADF;
    return -1;
  }
  ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
  if (n < 0)
    *err = errno;
  return n;
}

static void *lw_lab_async_thread(void *arg) {
  lw_lab_async *a = arg;
  char buf[4096];
  a->start_mono = lw_now_ms(CLOCK_MONOTONIC);
  /* A plain blocking recv(): that is the point (A2, B12: what wakes a blocked reader). */
  a->ret = recv(a->fd, buf, sizeof buf, 0);
  a->err = a->ret < 0 ? errno : 0;
  a->end_mono = lw_now_ms(CLOCK_MONOTONIC);
  return NULL;
}

static void lw_lab_join(lw_lab_ctx *x, lw_lab_side s, int record) {
  lw_lab_async *a = &x->as[s];
  if (!a->running)
    return;
  pthread_join(a->thr, NULL);
  a->running = 0;
  if (!record)
    return;
  double ms = a->end_mono - a->start_mono;
  lw_lab_call *c = lw_lab_record(x, s, LW_OP_JOIN, (long)a->ret, a->err, ms);
  char b[32];
  if (c) {
    /* The call returned at end_mono, not now: place it on the timeline there. */
    c->t_ms -= lw_now_ms(CLOCK_MONOTONIC) - a->end_mono;
    c->bytes = a->ret > 0 ? a->ret : 0;
  }
  LW_TXT(c, "recv() [blocked in a thread] = %s%s after %.0f ms",
         lw_lab_errstr(a->ret, a->err, b, sizeof b), a->ret == 0 ? " (EOF)" : "", ms);
}

#ifdef _WIN32
/* No nftables and no network namespaces: the scenarios that need them are skipped in
 * lw_lab_run before any step runs (a drop step outside them fails as on Linux). */
static int lw_lab_nft(const char *cmd) {
  (void)cmd;
  errno = ENOSYS;
  return -1;
}
#define LW_CLOSE_FINAL(fd) lw_w_close_final(fd)
#else
#define LW_CLOSE_FINAL(fd) close(fd)
/* Runs `nft` with one command line in the calling thread's network namespace (a
 * forked child inherits the namespaces of the thread that forked). */
static int lw_lab_nft(const char *cmd) {
  pid_t pid = fork();
  if (pid < 0)
    return -errno;
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    execlp("nft", "nft", cmd, (char *)NULL);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -errno;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}
#endif

static void lw_lab_diag(lw_lab_ctx *x) {
  lw_diag_sock socks[64];
  int n = lw_diag_query(x->family, x->r->port, socks, 64);
  if (n < 0) {
    /* No socket table: the state predictions are unknown, not "none". */
    x->r->diag_err = -n;
    return;
  }
  double t = lw_now_ms(CLOCK_REALTIME) - x->t0_real;
  for (int s = 0; s < 2 && x->r->nstates < LW_LAB_MAX_STATES; s++) {
    lw_lab_state *st = &x->r->states[x->r->nstates++];
    memset(st, 0, sizeof *st);
    st->t_ms = t;
    st->side = (lw_lab_side)s;
    st->state = LW_DIAG_STATE_NONE;
    for (int i = 0; i < n && i < 64; i++) {
      uint16_t want_l = s == LW_SIDE_CLIENT ? x->r->cport : x->r->port;
      uint16_t want_r = s == LW_SIDE_CLIENT ? x->r->port : x->r->cport;
      if (socks[i].state == 10 /* LISTEN */ || socks[i].lport != want_l ||
          socks[i].rport != want_r)
        continue;
      st->state = socks[i].state;
      st->timer = socks[i].timer;
      st->expires_ms = socks[i].expires_ms;
      break;
    }
  }
}

static void lw_lab_step_run(lw_lab_ctx *x, const lw_lab_step *st) {
  lw_lab_side s = st->side;
  double t0 = lw_now_ms(CLOCK_MONOTONIC);
  char b[32];
  int err = 0;
  long ret;
  lw_lab_call *c;
#define LW_DONE(r_) (ret = (r_), err = ret < 0 ? errno : 0)
#define LW_MS() (lw_now_ms(CLOCK_MONOTONIC) - t0)
  switch (st->op) {
  case LW_OP_CONNECT: {
    int fd = lw_lab_optfd(x, s);
    LW_DONE(fd < 0 ? -1 : connect(fd, (struct sockaddr *)&x->addr, x->alen));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "connect() = %s", lw_lab_errstr(ret, err, b, sizeof b));
    if (ret == 0) {
      struct sockaddr_storage me;
      socklen_t ml = sizeof me;
      if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
        x->r->cport = ntohs(((struct sockaddr_in *)&me)->sin_port); /* same offset in v6 */
    }
    break;
  }
  case LW_OP_ACCEPT: {
    struct pollfd p = {.fd = x->lfd, .events = POLLIN};
    int fd = -1;
    if (poll(&p, 1, 1000) == 1)
      fd = accept4(x->lfd, NULL, NULL, SOCK_CLOEXEC);
    else
      errno = ETIMEDOUT;
    LW_DONE(fd);
    if (fd >= 0 && x->fd[s] >= 0 && x->noldfds < LW_LAB_OLD_FDS)
      x->oldfds[x->noldfds++] = x->fd[s]; /* keep, do not disturb the wire: closed at the end */
    else if (fd >= 0 && x->fd[s] >= 0)
      close(x->fd[s]);
    if (fd >= 0)
      x->fd[s] = x->lastfd[s] = fd;
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "accept() = %s", ret >= 0 ? "new socket" : lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_SEND:
  case LW_OP_FILL: {
    int fill = st->op == LW_OP_FILL;
    long long n = lw_lab_send(x, s, fill ? 64LL << 20 : st->a[0], fill ? 0 : 500, &err);
    ret = n > 0 ? (long)n : -1;
    if (fill && err == EAGAIN)
      err = 0, ret = (long)n;
    c = lw_lab_record(x, s, st->op, ret, ret < 0 ? err : 0, LW_MS());
    if (c)
      c->bytes = n;
    if (fill)
      LW_TXT(c, "send() until EAGAIN = %lld bytes queued", n);
    else if (n == st->a[0])
      LW_TXT(c, "send(%ld) = %lld", st->a[0], n);
    else
      LW_TXT(c, "send(%ld) = %lld, then -1 %s", st->a[0], n, lw_lab_errno_name(err));
    break;
  }
  case LW_OP_RECV: {
    static char buf[65536];
    size_t want = st->nargs > 0 && st->a[0] > 0 && st->a[0] < (long)sizeof buf
                      ? (size_t)st->a[0]
                      : sizeof buf;
    long to = st->nargs > 1 ? st->a[1] : 1000;
    ret = lw_lab_recv1(x->fd[s], buf, want, to, &err);
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    if (c)
      c->bytes = ret > 0 ? ret : 0;
    double took = LW_MS();
    if (ret < 0 && err == EAGAIN)
      LW_TXT(c, "recv() = nothing within %ld ms", to);
    else if (took >= 50) /* it waited: say how long, that is the measurement */
      LW_TXT(c, "recv() = %s%s after %.0f ms", lw_lab_errstr(ret, err, b, sizeof b),
             ret == 0 ? " (EOF)" : "", took);
    else
      LW_TXT(c, "recv() = %s%s", lw_lab_errstr(ret, err, b, sizeof b),
             ret == 0 ? " (EOF)" : "");
    break;
  }
  case LW_OP_RECV_ALL: {
    static char buf[65536];
    long budget = st->nargs ? st->a[0] : 2000;
    double end = t0 + (double)budget;
    long long total = 0;
    int reads = 0;
    ret = -1;
    err = EAGAIN;
    for (;;) {
      double left = end - lw_now_ms(CLOCK_MONOTONIC);
      if (left <= 0)
        break;
      ssize_t n = lw_lab_recv1(x->fd[s], buf, sizeof buf, (long)left, &err);
      reads++;
      if (n > 0) {
        total += n;
        continue;
      }
      ret = (long)n;
      if (n == 0)
        err = 0;
      if (!(n < 0 && err == EAGAIN))
        break;
    }
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    if (c)
      c->bytes = total;
    if (ret < 0 && err == EAGAIN)
      LW_TXT(c, "recv() loop: %lld bytes, then nothing within %ld ms", total, budget);
    else
      LW_TXT(c, "recv() loop: %lld bytes, then %s%s", total,
             lw_lab_errstr(ret, err, b, sizeof b), ret == 0 ? " (EOF)" : "");
    break;
  }
  case LW_OP_SHUTDOWN: {
    static const char *const how[] = {"SHUT_RD", "SHUT_WR", "SHUT_RDWR"};
    LW_DONE(shutdown(x->fd[s], (int)st->a[0]));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "shutdown(%s) = %s", how[st->a[0]], lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_CLOSE: {
    int fd = x->fd[s];
    LW_DONE(close(fd));
    double ms = LW_MS();
#ifdef _WIN32
    /* closesocket() that fails WSAEWOULDBLOCK leaves the socket open (A8): kept for the
     * cleanup, which closes it the blocking way. */
    if (ret < 0 && err == EAGAIN && x->noldfds < LW_LAB_OLD_FDS)
      x->oldfds[x->noldfds++] = fd;
#endif
    if (fd >= 0)
      x->fd[s] = -1; /* after close() the number is gone whatever it returned */
    c = lw_lab_record(x, s, st->op, ret, err, ms);
    if (ms >= 5)
      LW_TXT(c, "close() = %s after %.0f ms", lw_lab_errstr(ret, err, b, sizeof b), ms);
    else
      LW_TXT(c, "close() = %s at once (%.2f ms)", lw_lab_errstr(ret, err, b, sizeof b), ms);
    break;
  }
  case LW_OP_LINGER: {
    struct linger l = {.l_onoff = (int)st->a[0], .l_linger = (int)st->a[1]};
    LW_DONE(setsockopt(lw_lab_optfd(x, s), SOL_SOCKET, SO_LINGER, &l, sizeof l));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "setsockopt(SO_LINGER, {%ld,%ld}) = %s", st->a[0], st->a[1],
           lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_GETLINGER: {
    struct linger l = {0, 0};
    socklen_t len = sizeof l;
    LW_DONE(getsockopt(lw_lab_optfd(x, s), SOL_SOCKET, SO_LINGER, &l, &len));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    if (c)
      c->v1 = l.l_onoff, c->v2 = l.l_linger;
    if (ret == 0)
      LW_TXT(c, "getsockopt(SO_LINGER) = {l_onoff %d, l_linger %d}", l.l_onoff, l.l_linger);
    else
      LW_TXT(c, "getsockopt(SO_LINGER) = %s", lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_NONBLOCK: {
    int fd = lw_lab_optfd(x, s);
    int fl = fcntl(fd, F_GETFL);
    LW_DONE(fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "fcntl(O_NONBLOCK) = %s", lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_RCVBUF:
  case LW_OP_SNDBUF: {
    int v = (int)st->a[0];
    int opt = st->op == LW_OP_RCVBUF ? SO_RCVBUF : SO_SNDBUF;
    LW_DONE(setsockopt(lw_lab_optfd(x, s), SOL_SOCKET, opt, &v, sizeof v));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "setsockopt(%s, %d) = %s", opt == SO_RCVBUF ? "SO_RCVBUF" : "SO_SNDBUF", v,
           lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_KEEPALIVE: {
    int fd = lw_lab_optfd(x, s), on = 1, idle = (int)st->a[0], intvl = (int)st->a[1],
        cnt = (int)st->a[2];
    LW_DONE((setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 ||
             setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
             setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
             setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
                ? -1
                : 0);
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "SO_KEEPALIVE idle %d s, intvl %d s, cnt %d = %s", idle, intvl, cnt,
           lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_USER_TIMEOUT: {
    unsigned v = (unsigned)st->a[0];
#ifdef _WIN32
    (void)lw_lab_optfd(x, s);
    errno = ENOPROTOOPT; /* Windows' nearest is TCP_MAXRT, in whole seconds */
    LW_DONE(-1);
#else
    LW_DONE(setsockopt(lw_lab_optfd(x, s), IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v));
#endif
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "setsockopt(TCP_USER_TIMEOUT, %u) = %s", v, lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_SOERROR: {
    int e = 0;
    socklen_t len = sizeof e;
    LW_DONE(getsockopt(x->fd[s], SOL_SOCKET, SO_ERROR, &e, &len));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    if (c)
      c->v1 = e;
    if (ret == 0)
      LW_TXT(c, "getsockopt(SO_ERROR) = %s", e ? lw_lab_errno_name(e) : "0");
    else
      LW_TXT(c, "getsockopt(SO_ERROR) = %s", lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_POLL: {
    struct pollfd p = {.fd = x->fd[s], .events = POLLIN | POLLOUT | POLLRDHUP};
    int pr = poll(&p, 1, st->nargs ? (int)st->a[0] : 0);
    LW_DONE(pr < 0 ? -1 : (long)p.revents);
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    char ev[96] = "";
    static const struct {
      short bit;
      const char *n;
    } names[] = {{POLLIN, "POLLIN"},   {POLLOUT, "POLLOUT"}, {POLLRDHUP, "POLLRDHUP"},
                 {POLLERR, "POLLERR"}, {POLLHUP, "POLLHUP"}, {POLLNVAL, "POLLNVAL"}};
    for (size_t i = 0; pr > 0 && i < sizeof names / sizeof names[0]; i++)
      if (p.revents & names[i].bit)
        snprintf(ev + strlen(ev), sizeof ev - strlen(ev), "%s%s", ev[0] ? "|" : "", names[i].n);
    LW_TXT(c, "poll() = %s",
           pr < 0  ? lw_lab_errstr(ret, err, b, sizeof b)
           : ev[0] ? ev
                   : "0 (no event)");
    break;
  }
  case LW_OP_ARECV: {
    lw_lab_async *a = &x->as[s];
    lw_lab_join(x, s, 1);
    struct timeval tv = {.tv_sec = (st->nargs ? st->a[0] : 3000) / 1000,
                         .tv_usec = ((st->nargs ? st->a[0] : 3000) % 1000) * 1000};
    setsockopt(x->fd[s], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    a->fd = x->fd[s];
    a->running = pthread_create(&a->thr, NULL, lw_lab_async_thread, a) == 0;
    /* Give the thread time to enter recv() before the next step acts on the socket. */
    lw_sleep_ms(20);
    c = lw_lab_record(x, s, st->op, a->running ? 0 : -1, a->running ? 0 : EAGAIN, LW_MS());
    LW_TXT(c, "recv() started in a helper thread (SO_RCVTIMEO %ld ms)",
           st->nargs ? st->a[0] : 3000);
    break;
  }
  case LW_OP_JOIN:
    lw_lab_join(x, s, 1);
    break;
  case LW_OP_DISCONNECT: {
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    LW_DONE(connect(x->fd[s], &sa, sizeof sa));
    c = lw_lab_record(x, s, st->op, ret, err, LW_MS());
    LW_TXT(c, "connect(AF_UNSPEC) = %s", lw_lab_errstr(ret, err, b, sizeof b));
    break;
  }
  case LW_OP_FDVALID: {
    LW_DONE(fcntl(x->lastfd[s], F_GETFD));
    c = lw_lab_record(x, s, st->op, ret >= 0 ? 1 : ret, err, LW_MS());
    LW_TXT(c, "fcntl(old fd, F_GETFD) = %s%s", lw_lab_errstr(ret, err, b, sizeof b),
           ret >= 0 ? " (descriptor still valid)" : " (descriptor gone)");
    break;
  }
  case LW_OP_REUSE: {
    int old = x->fd[s];
    int cr = close(old);
    x->fd[s] = -1;
    int nfd = socket(x->family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (nfd >= 0)
      x->fd[s] = x->lastfd[s] = nfd;
    ret = nfd >= 0 && nfd == old ? 1 : 0;
    c = lw_lab_record(x, s, st->op, ret, nfd < 0 ? errno : 0, LW_MS());
    if (c)
      c->v1 = cr;
    LW_TXT(c, "close(fd %d) = %d; socket() = fd %d%s", old, cr, nfd,
           ret ? " (the same number, at once)" : "");
    break;
  }
  case LW_OP_DROP: {
    char cmd[320];
    uint16_t p = x->r->port;
    snprintf(cmd, sizeof cmd,
             "add table inet lwlab ; add chain inet lwlab in { type filter hook input "
             "priority 0 ; } ; add rule inet lwlab in tcp dport %u drop ; "
             "add rule inet lwlab in tcp sport %u drop",
             p, p);
    ret = x->sc->netns ? lw_lab_nft(cmd) : -1;
    err = ret < 0 ? (x->sc->netns ? EPERM : EINVAL) : 0;
    c = lw_lab_record(x, LW_SIDE_NONE, st->op, ret, err, LW_MS());
    LW_TXT(c, "nft: drop every segment of port %u (the peer vanishes) = %s", p,
           ret == 0       ? "0"
           : x->sc->netns ? "failed"
                          : "refused outside a netns scenario");
    if (ret != 0) {
      /* Without the drop rule the peer does not vanish: the scenario cannot say anything
       * about the claim, so it is skipped (and says why), never judged. */
      x->r->skipped = 1;
      snprintf(x->r->note, sizeof x->r->note, "%s",
               x->sc->netns ? "nft failed or is not installed (apt-get install nftables)"
                            : "'drop' needs a netns scenario");
    }
    break;
  }
  case LW_OP_WAIT:
    lw_sleep_ms(st->a[0]);
    break;
  case LW_OP_DIAG:
    lw_lab_diag(x);
    break;
  case LW_OP__COUNT:
    break;
  }
#undef LW_DONE
#undef LW_MS
}

#ifndef _WIN32
/* Brings "lo" up in the (new) namespace of the calling thread. */
static int lw_lab_lo_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  close(fd);
  return rc;
}
#endif

static int lw_lab_listen(lw_lab_ctx *x) {
  x->family = x->sc->ipv6 ? AF_INET6 : AF_INET;
  memset(&x->addr, 0, sizeof x->addr);
  if (x->family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&x->addr;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    x->alen = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&x->addr;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    x->alen = sizeof *a;
  }
  x->lfd = socket(x->family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (x->lfd < 0)
    return -1;
  /* Port 0: the kernel picks a free ephemeral port, so parallel runs never collide. */
  if (bind(x->lfd, (struct sockaddr *)&x->addr, x->alen) < 0 || listen(x->lfd, 16) < 0)
    return -1;
  socklen_t l = x->alen;
  if (getsockname(x->lfd, (struct sockaddr *)&x->addr, &l) < 0)
    return -1;
  x->r->port = ntohs(((struct sockaddr_in *)&x->addr)->sin_port);
  return 0;
}

static void lw_lab_run_inner(lw_lab_ctx *x) {
  lw_lab_result *r = x->r;
  lw_cap *cap = NULL;
  char err[256];
#ifndef _WIN32
  if (x->sc->netns) {
    /* A fresh network namespace for this thread only: CLONE_NEWNET may be unshared by
     * one thread of a multi-threaded process (unshare(2)); its lo starts down. */
    if (unshare(CLONE_NEWNET) < 0 || lw_lab_lo_up() < 0) {
      r->skipped = 1;
      snprintf(r->note, sizeof r->note, "no network namespace: %s", strerror(errno));
      return;
    }
  }
#endif
  if (lw_lab_listen(x) < 0) {
    r->lab_error = 1;
    snprintf(r->note, sizeof r->note, "listener: %s", strerror(errno));
    goto out;
  }
  x->t0_real = lw_now_ms(CLOCK_REALTIME);
  x->t0_mono = lw_now_ms(CLOCK_MONOTONIC);
  if (x->o->capture_ok) {
    cap = lw_cap_start("lo", r->port, x->t0_real, x->o->dump, err, sizeof err);
    if (!cap)
      snprintf(r->note, sizeof r->note, "no capture: %s", err);
  }
  for (int i = 0; i < x->sc->nsteps; i++)
    lw_lab_step_run(x, &x->sc->steps[i]);
  for (int s = 0; s < 2; s++)
    lw_lab_join(x, s, 1); /* a helper thread still running is bounded by SO_RCVTIMEO */
  /* A joined call is stamped when it returned, which may precede calls recorded after
   * it; keep the list in time order for the timeline (insertion sort, stable). */
  for (int i = 1; i < r->ncalls; i++) {
    lw_lab_call tmp = r->calls[i];
    int k = i;
    for (; k > 0 && r->calls[k - 1].t_ms > tmp.t_ms; k--)
      r->calls[k] = r->calls[k - 1];
    r->calls[k] = tmp;
  }
  if (cap) {
    size_t n;
    const lw_cap_seg *segs = lw_cap_stop(cap, &n);
    r->segs = n ? malloc(n * sizeof *segs) : NULL;
    if (r->segs) {
      memcpy(r->segs, segs, n * sizeof *segs);
      r->nsegs = n;
      lw_cap_mark_retrans(r->segs, n);
    }
    r->captured = 1;
    lw_cap_free(cap);
  }
out:
  for (int s = 0; s < 2; s++)
    if (x->fd[s] >= 0)
      LW_CLOSE_FINAL(x->fd[s]);
  for (int i = 0; i < x->noldfds; i++)
    LW_CLOSE_FINAL(x->oldfds[i]);
  if (x->lfd >= 0)
    close(x->lfd);
}

static void *lw_lab_netns_thread(void *arg) {
  lw_lab_run_inner(arg);
  return NULL;
}

int lw_lab_run(const lw_lab_scenario *sc, const lw_lab_opts *o, lw_lab_result *r) {
  memset(r, 0, sizeof *r);
  r->sc = sc;
  lw_lab_ctx x;
  memset(&x, 0, sizeof x);
  x.sc = sc;
  x.o = o;
  x.r = r;
  x.lfd = x.fd[0] = x.fd[1] = x.lastfd[0] = x.lastfd[1] = -1;
#ifdef _WIN32
  if (sc->netns) {
    r->skipped = 1;
    snprintf(r->note, sizeof r->note,
             "Linux-only: the peer is made to vanish with nftables in a private network "
             "namespace; Windows has neither (run it on Linux)");
    return 0;
  }
#endif
  if (sc->netns) {
    if (!o->have_root) {
      r->skipped = 1;
      snprintf(r->note, sizeof r->note, "needs root (network namespace + nft)");
      return 0;
    }
    /* The namespace is unshared by a dedicated thread so the rest of the lab stays in
     * the original namespace; the namespace dies with its last socket. */
    pthread_t t;
    if (pthread_create(&t, NULL, lw_lab_netns_thread, &x) != 0) {
      r->skipped = 1;
      snprintf(r->note, sizeof r->note, "pthread_create failed");
      return 0;
    }
    pthread_join(t, NULL);
  } else {
    lw_lab_run_inner(&x);
  }
  lw_lab_evaluate(r);
  return r->lab_error ? -1 : 0;
}

void lw_lab_result_free(lw_lab_result *r) {
  free(r->segs);
  r->segs = NULL;
  r->nsegs = 0;
}

/* ---- expectations ---- */

static int lw_cmp(long a, lw_lab_cmp cmp, long b) {
  switch (cmp) {
  case LW_CMP_EQ:
    return a == b;
  case LW_CMP_NE:
    return a != b;
  case LW_CMP_LT:
    return a < b;
  case LW_CMP_LE:
    return a <= b;
  case LW_CMP_GT:
    return a > b;
  case LW_CMP_GE:
    return a >= b;
  }
  return 0;
}

static void lw_lab_check_one(lw_lab_result *r, const lw_lab_expect *e, lw_lab_check *k) {
  k->exp = e;
  k->res = LW_RES_FAIL;
  k->got[0] = 0;
  char fl[32];
  switch (e->kind) {
  case LW_EXP_SEG:
  case LW_EXP_NOSEG: {
    if (!r->captured) {
      k->res = LW_RES_SKIP;
      snprintf(k->got, sizeof k->got, "not captured");
      return;
    }
    const lw_cap_seg *hit = NULL;
    for (size_t i = 0; i < r->nsegs && !hit; i++) {
      const lw_cap_seg *g = &r->segs[i];
      int from = g->dir == LW_DIR_C2S ? LW_SIDE_CLIENT : LW_SIDE_SERVER;
      if ((e->side == LW_SIDE_NONE || (int)e->side == from) && (g->flags & e->flag))
        hit = g;
    }
    lw_cap_flags_str(e->flag, fl, sizeof fl);
    if (hit)
      snprintf(k->got, sizeof k->got, "%s sent %s at %.1f ms",
               hit->dir == LW_DIR_C2S ? "client" : "server", fl, hit->t_ms);
    else
      snprintf(k->got, sizeof k->got, "no %s from %s", fl, lw_lab_side_name(e->side));
    k->res = (hit != NULL) == (e->kind == LW_EXP_SEG) ? LW_RES_PASS : LW_RES_FAIL;
    return;
  }
  case LW_EXP_STATE: {
    const lw_lab_state *last = NULL;
    int seen = 0;
    for (int i = 0; i < r->nstates; i++) {
      if (r->states[i].side != e->side)
        continue;
      seen++;
      if (!e->nth || seen == e->nth)
        last = &r->states[i];
    }
    if (!last && r->diag_err) {
      k->res = LW_RES_SKIP;
      snprintf(k->got, sizeof k->got, "socket states unavailable (%s)", strerror(r->diag_err));
      return;
    }
    if (!last) {
      snprintf(k->got, sizeof k->got, "no diag step in the scenario");
      return;
    }
    snprintf(k->got, sizeof k->got, "%s %s", lw_lab_side_name(e->side),
             lw_diag_state_name(last->state));
    k->res = last->state == e->state ? LW_RES_PASS : LW_RES_FAIL;
    return;
  }
  case LW_EXP_CALL: {
    const lw_lab_call *hit = NULL;
    int seen = 0;
    for (int i = 0; i < r->ncalls; i++) {
      if (r->calls[i].side != e->side || r->calls[i].op != e->op)
        continue;
      seen++;
      if (!e->nth || seen == e->nth)
        hit = &r->calls[i];
      if (e->nth && seen == e->nth)
        break;
    }
    if (!hit) {
      snprintf(k->got, sizeof k->got, "no such call");
      return;
    }
    long v = 0;
    switch (e->field) {
    case LW_F_RET:
      v = hit->ret;
      break;
    case LW_F_ERRNO:
      v = hit->err;
      break;
    case LW_F_MS:
      v = (long)(hit->ms + 0.5);
      break;
    case LW_F_BYTES:
      v = (long)hit->bytes;
      break;
    case LW_F_V1:
      v = hit->v1;
      break;
    case LW_F_V2:
      v = hit->v2;
      break;
    }
    long want = e->val_peer_sent ? (long)r->sent[e->side == LW_SIDE_CLIENT] : e->val;
    k->res = lw_cmp(v, e->cmp, want) ? LW_RES_PASS : LW_RES_FAIL;
    snprintf(k->got, sizeof k->got, "%s %s", lw_lab_side_name(hit->side), hit->text);
    return;
  }
  }
}

void lw_lab_evaluate(lw_lab_result *r) {
  r->nchecks = 0;
  if (r->skipped || r->lab_error)
    return;
  for (int i = 0; i < r->sc->nexpects; i++)
    lw_lab_check_one(r, &r->sc->expects[i], &r->checks[r->nchecks++]);
}
