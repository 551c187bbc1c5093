/*
 * check.c - `lastword check HOST:PORT`: the lab's machinery pointed at any server.
 *
 * The lab proves what the OS does; this runs client behaviours against a server and says
 * how *that server* ends connections: a response cut by an RST because input was left
 * unread (B13), an early answer to an upload, a half-closing client (B3), CLOSE_WAIT
 * (B5), idle and stalled connections, a client that vanishes (A17), a client that resets,
 * TIME_WAIT, and HTTP's keep-alive close race. Each check gives a verdict (pass, warn,
 * fail, n-a), its evidence (bytes received against a clean run's, how the connection
 * ended, the segments seen when it can capture, the server socket's state when sock_diag
 * can see it) and what to change. Fields of --json: tools/README-check.md.
 *
 * Every wait is bounded by --patience (default 3000 ms): a server that does not end an
 * idle or stalled connection is reported "not within N s", never waited for.
 *
 * Root-only actions (capture on the interface; the nftables drop rule of the vanished-
 * client check, scoped to this client's 4-tuple in a table created for the run and always
 * deleted) are announced once and skipped without root. Exit status: 0 when no check
 * failed, 1 when one did, 2 when the tool could not run (bad usage, server unreachable).
 */
#include "check.h"
#include "capture.h"
#include "lab/lab.h" /* lw_lab_errno_name */
#include "sockdiag.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CK_EXTRA (64 << 10)       /* unread bytes after the request (as the lab's B13) */
#define CK_UPLOAD (8 << 20)       /* the upload's body */
#define CK_SLOW_RCVBUF (64 << 10) /* a reader slower than the server, as on a real network */
#define CK_NCHECKS 10

typedef enum { CK_PASS, CK_WARN, CK_FAIL, CK_NA } ck_verdict;
static const char *const ck_vname[] = {"pass", "warn", "fail", "n-a"};
static const char *const ck_vcolor[] = {"\033[1;32m", "\033[1;33m", "\033[1;31m", "\033[2m"};

typedef struct {
  struct sockaddr_storage addr;
  socklen_t alen;
  int family;
  char target[300];
  uint16_t port;
  char *req;
  size_t reqlen;
  const char *http; /* the path with --http, else NULL */
  char hosthdr[300];
  long patience;
  int root, local, json, color, progress;
  void *dump;
  lw_cap *cap;
  double t0_real;
  long long expected; /* the clean run's bytes */
  char base_end[24];
  double base_ms;
  char nft_table[48];
  int nft_made;
  FILE *out;
} ck_ctx;

typedef struct {
  int n;
  const char *id, *title;
  ck_verdict v;
  int ran;
  char summary[240];
  char ev[8][240];
  int nev;
  char advice[400];
  long long expected, received;
  char ending[24];
  double value_ms; /* the time a check measures (when the server ended it), -1 none */
  char server_state[24];
  uint16_t cports[64];
  int ncports;
  double t_real; /* the check's start on CLOCK_REALTIME (capture times are relative) */
} ck_res;

typedef struct {
  long long bytes;
  int err;         /* 0 EOF, ECONNRESET, ETIMEDOUT = still open at the budget's end */
  double ms;       /* when it ended, from the start of the read */
  double first_ms; /* first byte, -1 none */
  double last_ms;  /* last byte, -1 none */
  char head[4096]; /* the first bytes (HTTP header) */
  size_t nhead;
} ck_read;

static volatile sig_atomic_t ck_stop;
static void ck_on_signal(int sig) {
  (void)sig;
  ck_stop = 1;
}

static double ck_now(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
static double ck_ms(void) { return ck_now(CLOCK_MONOTONIC); }

/* The running check's deadline (CLOCK_MONOTONIC ms, 0: none). Every wait is clipped to
 * it, so a check ends within its budget whatever the server does: without it the waits
 * compound (a connect that stalls a patience period, then a send, then a read). */
static double ck_deadline;
static int ck_clipped; /* a wait was cut short by the deadline */

static long ck_clip(long ms) {
  if (ck_deadline <= 0)
    return ms;
  double left = ck_deadline - ck_ms();
  if (left < (double)ms) {
    ck_clipped = 1;
    return left > 0 ? (long)left : 0;
  }
  return ms;
}

static void ck_sleep(long ms) {
  ms = ck_clip(ms);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (!ck_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

#define EV(r, ...)                                                                             \
  do {                                                                                         \
    if ((r)->nev < 8)                                                                          \
      snprintf((r)->ev[(r)->nev++], sizeof(r)->ev[0], __VA_ARGS__);                            \
  } while (0)
#define SUM(r, ...) snprintf((r)->summary, sizeof(r)->summary, __VA_ARGS__)
#define ADV(r, ...) snprintf((r)->advice, sizeof(r)->advice, __VA_ARGS__)

long lw_check_unescape(const char *s, char *d, size_t cap) {
  size_t n = 0;
  for (; *s; s++) {
    int ch = (unsigned char)*s;
    if (ch == '\\') {
      s++;
      switch (*s) {
      case 'r':
        ch = '\r';
        break;
      case 'n':
        ch = '\n';
        break;
      case 't':
        ch = '\t';
        break;
      case '0':
        ch = 0;
        break;
      case '\\':
        ch = '\\';
        break;
      case '"':
        ch = '"';
        break;
      case '\'':
        ch = '\'';
        break;
      case 'x': {
        if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
          return -1;
        char h[3] = {s[1], s[2], 0};
        ch = (int)strtol(h, NULL, 16);
        s += 2;
        break;
      }
      default:
        return -1; /* includes a trailing backslash */
      }
    }
    if (n == cap)
      return -1;
    d[n++] = (char)ch;
  }
  return (long)n;
}

/* ---- sockets ---- */

static void ck_note_port(ck_res *r, int fd) {
  struct sockaddr_storage me;
  socklen_t ml = sizeof me;
  if (r && r->ncports < 64 && getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
    r->cports[r->ncports++] = ntohs(((struct sockaddr_in *)&me)->sin_port); /* same in v6 */
}

static uint16_t ck_cport(int fd) {
  struct sockaddr_storage me;
  socklen_t ml = sizeof me;
  if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
    return 0;
  return ntohs(((struct sockaddr_in *)&me)->sin_port);
}

/* Non-blocking connect bounded by the patience; rcvbuf > 0 is set before connect (the
 * window scale is chosen at the handshake). Returns the fd or -1 with errno. */
static int ck_connect(ck_ctx *x, int rcvbuf, ck_res *r) {
  int fd = socket(x->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
  if (fd < 0)
    return -1;
  if (rcvbuf > 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (connect(fd, (struct sockaddr *)&x->addr, x->alen) < 0 && errno != EINPROGRESS)
    goto fail;
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  int pr = poll(&p, 1, (int)ck_clip(x->patience));
  int e = 0;
  socklen_t el = sizeof e;
  if (pr <= 0) {
    errno = pr == 0 ? ETIMEDOUT : errno;
    goto fail;
  }
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
  if (e) {
    errno = e;
    goto fail;
  }
  ck_note_port(r, fd);
  return fd;
fail:;
  int save = errno;
  close(fd);
  errno = save;
  return -1;
}

/* Ends our side with an RST (SO_LINGER {1, 0}): leaves nothing behind on either host. */
static void ck_abort(int fd) {
  if (fd < 0)
    return;
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

/* Ends our side after a read: a plain close() once the server's FIN was read (nothing
 * is left, so it is a FIN, and the capture shows no RST of ours), else an RST. */
static void ck_finish(int fd, const ck_read *rd) {
  if (rd->err == 0)
    close(fd);
  else
    ck_abort(fd);
}

/* Sends up to len bytes; stops at an error or when nothing moved for stall_ms, or at
 * budget_ms. Returns what the kernel accepted; *err = 0, EAGAIN (stalled) or errno. */
static long long ck_send(int fd, const char *buf, size_t len, long budget_ms, long stall_ms,
                         int *err) {
  long long off = 0;
  double end = ck_ms() + (double)ck_clip(budget_ms);
  *err = 0;
  while ((size_t)off < len && !ck_stop) {
    ssize_t n = send(fd, buf + off, len - (size_t)off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      double left = end - ck_ms();
      if (left > stall_ms)
        left = (double)stall_ms;
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
        *err = EAGAIN;
        break;
      }
      continue;
    }
    *err = n < 0 ? errno : EIO;
    break;
  }
  return off;
}

static long long ck_http_total(const char *h, size_t n);
#define CK_WANT_HTTP (-2) /* read until the HTTP response (Content-Length) is complete */

/* Reads until EOF, an error, `want` bytes (>= 0; CK_WANT_HTTP: one whole HTTP response),
 * or budget_ms. slow: a 1 ms pause
 * before each 32 KiB read (the RST-loss client's pace), so the server's send buffer is
 * not empty when it ends the connection, as with any client behind a real network. */
static void ck_read_end(int fd, long budget_ms, int slow, long long want, ck_read *rd) {
  static char buf[32768];
  double t0 = ck_ms(), end = t0 + (double)ck_clip(budget_ms);
  memset(rd, 0, sizeof *rd);
  rd->first_ms = rd->last_ms = -1;
  rd->err = ETIMEDOUT;
  while (!ck_stop) {
    if (want >= 0 && rd->bytes >= want) {
      rd->err = EAGAIN; /* got what was asked, the connection is still open */
      break;
    }
    if (slow)
      ck_sleep(1);
    double left = end - ck_ms();
    if (left <= 0)
      break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)left + 1);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      break;
    size_t cap = sizeof buf;
    if (want >= 0 && (long long)cap > want - rd->bytes)
      cap = (size_t)(want - rd->bytes);
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
    if (n > 0) {
      rd->last_ms = ck_ms() - t0;
      if (rd->first_ms < 0)
        rd->first_ms = rd->last_ms;
      if (rd->nhead < sizeof rd->head) {
        size_t k = sizeof rd->head - rd->nhead;
        if (k > (size_t)n)
          k = (size_t)n;
        memcpy(rd->head + rd->nhead, buf, k);
        rd->nhead += k;
      }
      rd->bytes += n;
      if (want == CK_WANT_HTTP) {
        long long t = ck_http_total(rd->head, rd->nhead);
        if (t >= 0 && rd->bytes >= t) {
          rd->err = EAGAIN; /* the response is complete, the connection still open */
          break;
        }
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    rd->err = n == 0 ? 0 : errno;
    break;
  }
  rd->ms = ck_ms() - t0;
}

static const char *ck_ending(int err) {
  switch (err) {
  case 0:
    return "EOF";
  case ECONNRESET:
    return "RST";
  case ETIMEDOUT:
    return "open";
  case EAGAIN:
    return "open";
  default:
    return lw_lab_errno_name(err);
  }
}

/* The server-side socket of this client's connection, when sock_diag can see it (the
 * server is on this host). 1 found, 0 not there, -1 no view. */
static int ck_srv_sock(ck_ctx *x, uint16_t cport, lw_diag_sock *out) {
  if (!x->local || !cport)
    return -1;
  lw_diag_sock socks[32];
  /* Both families: a dual-stack server (an AF_INET6 socket bound to [::]) holds an IPv4
   * client's connection in an AF_INET6 socket with a v4-mapped address. */
  int n = lw_diag_query(AF_UNSPEC, cport, socks, 32);
  if (n < 0)
    return -1;
  for (int i = 0; i < n && i < 32; i++)
    if (socks[i].lport == x->port && socks[i].rport == cport && socks[i].state != 10) {
      *out = socks[i];
      return 1;
    }
  return 0;
}

static void ck_srv_state_ev(ck_ctx *x, ck_res *r, uint16_t cport, const char *when) {
  lw_diag_sock s;
  int f = ck_srv_sock(x, cport, &s);
  if (f < 0)
    return;
  if (f == 0) {
    snprintf(r->server_state, sizeof r->server_state, "none");
    EV(r, "server socket %s: gone", when);
    return;
  }
  snprintf(r->server_state, sizeof r->server_state, "%s", lw_diag_state_name(s.state));
  EV(r, "server socket %s: %s%s, %u bytes unread, %u unsent/unacked%s%s%s", when,
     lw_diag_state_name(s.state), s.inode ? "" : " (closed by the application)", s.rqueue,
     s.wqueue, s.timer ? ", " : "", lw_diag_timer_name(s.timer), s.timer ? " timer" : "");
}

/* A clean exchange: connect, the request, optionally SHUT_WR, read to the end. */
static int ck_fetch(ck_ctx *x, const char *req, size_t len, int rcvbuf, int slow, int shut_wr,
                    ck_res *r, ck_read *rd, int *fdp) {
  int fd = ck_connect(x, rcvbuf, r);
  if (fd < 0)
    return -1;
  int err;
  ck_send(fd, req, len, x->patience, x->patience, &err);
  if (shut_wr)
    shutdown(fd, SHUT_WR);
  ck_read_end(fd, x->patience, slow, -1, rd);
  if (fdp)
    *fdp = fd;
  else
    ck_finish(fd, rd);
  return 0;
}

/* Total length of an HTTP response from its header (header + Content-Length), -1 when
 * the header is incomplete or has no Content-Length. */
static long long ck_http_total(const char *h, size_t n) {
  const char *e = NULL;
  for (size_t i = 0; i + 3 < n; i++)
    if (memcmp(h + i, "\r\n\r\n", 4) == 0) {
      e = h + i + 4;
      break;
    }
  if (!e)
    return -1;
  for (const char *p = h; p < e; p++) {
    if ((p == h || p[-1] == '\n') && (size_t)(e - p) > 15 &&
        strncasecmp(p, "content-length:", 15) == 0) {
      /* The server's number, not ours: digits only, and bounded (1 PiB) so that the
       * sum cannot overflow. Anything else is "length unknown". */
      const char *q = p + 15;
      while (*q == ' ' || *q == '\t')
        q++;
      long long v = 0;
      int nd = 0;
      for (; *q >= '0' && *q <= '9'; q++, nd++) {
        if (v > (1LL << 50) / 10)
          return -1;
        v = v * 10 + (*q - '0');
      }
      if (!nd || (*q != '\r' && *q != '\n' && *q != ' ' && *q != '\t'))
        return -1;
      return (long long)(e - h) + v;
    }
  }
  return -1;
}

static int ck_http_closes(const char *h, size_t n) {
  char tmp[4097];
  memcpy(tmp, h, n);
  tmp[n] = 0;
  for (char *p = tmp; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return strncmp(tmp, "http/1.0", 8) == 0 || strstr(tmp, "\nconnection: close") != NULL;
}

/* Is the response of rd complete? Against the clean run's length. */
/* The length this response should have: its own Content-Length when it has one (a server
 * may answer each request with a different length: a counter, a date, a page that
 * changes), else the clean run's. */
static long long ck_expect(const ck_ctx *x, const ck_read *rd) {
  long long t = x->http ? ck_http_total(rd->head, rd->nhead) : -1;
  return t > 0 ? t : x->expected;
}

/* Is the response of rd complete? */
static int ck_complete(const ck_ctx *x, const ck_read *rd) {
  return rd->bytes >= ck_expect(x, rd);
}

/* ---- the checks ---- */

static void ck_unread(ck_ctx *x, ck_res *r) {
  size_t len = x->reqlen + CK_EXTRA;
  char *buf = malloc(len);
  if (!buf) {
    r->v = CK_NA;
    SUM(r, "out of memory");
    return;
  }
  memcpy(buf, x->req, x->reqlen);
  memset(buf + x->reqlen, 'x', CK_EXTRA);
  int fd = ck_connect(x, CK_SLOW_RCVBUF, r), err;
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    free(buf);
    return;
  }
  long long sent = ck_send(fd, buf, len, x->patience, 500, &err);
  free(buf);
  ck_read rd;
  ck_read_end(fd, x->patience, 1, -1, &rd);
  r->expected = ck_expect(x, &rd);
  r->received = rd.bytes;
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  EV(r,
     "sent the request + %d bytes the protocol does not ask the server to read (%lld "
     "accepted); read slowly (64 KiB buffer)",
     CK_EXTRA, sent - (long long)x->reqlen);
  EV(r, "received %lld of %lld bytes, then %s after %.0f ms", rd.bytes, r->expected, r->ending,
     rd.ms);
  ck_srv_state_ev(x, r, ck_cport(fd), "after");
  ck_finish(fd, &rd);
  int full = ck_complete(x, &rd);
  if (full && rd.err == 0) {
    r->v = CK_PASS;
    SUM(r,
        "the whole response (%lld bytes), then FIN: the unread input was drained or "
        "read",
        rd.bytes);
  } else if (!full && rd.err == ECONNRESET) {
    r->v = CK_FAIL;
    SUM(r, "response cut by an RST: %lld of %lld bytes", rd.bytes, r->expected);
    ADV(r, "the server closes with input unread, so the kernel sends RST and the client "
           "loses what it had not read (B13): after the response, shut down writing, read "
           "and discard the input to EOF (bounded), then close (nginx: lingering_close on; "
           "liblastword: lw_close)");
  } else if (full && rd.err == ECONNRESET) {
    r->v = CK_WARN;
    SUM(r, "the whole response arrived, but the connection ended with an RST");
    ADV(r, "a slower client would lose the end of the response: drain the input before "
           "close (B13)");
  } else if (!full) {
    r->v = CK_FAIL;
    SUM(r, "short response: %lld of %lld bytes, then %s", rd.bytes, r->expected, r->ending);
    ADV(r, "extra input after the request changes what the server answers");
  } else {
    r->v = CK_WARN;
    SUM(r, "the whole response, but the connection was still open after %.1f s",
        x->patience / 1000.0);
    ADV(r, "the server waits for the client to close after a response it meant to be the "
           "last; bound that wait");
  }
}

static void ck_upload(ck_ctx *x, ck_res *r) {
  char hdr[1500]; /* the path is at most 1000 bytes, the Host header 300 */
  int hl;
  if (x->http)
    hl = snprintf(hdr, sizeof hdr,
                  "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: "
                  "close\r\n\r\n",
                  x->http, x->hosthdr, CK_UPLOAD);
  else
    hl = 0;
  assert(hl >= 0 && (size_t)hl < sizeof hdr);
  size_t len = (size_t)(x->http ? (size_t)hl : x->reqlen) + CK_UPLOAD;
  char *buf = malloc(len);
  if (!buf) {
    r->v = CK_NA;
    SUM(r, "out of memory");
    return;
  }
  if (x->http)
    memcpy(buf, hdr, (size_t)hl);
  else
    memcpy(buf, x->req, x->reqlen);
  memset(buf + len - CK_UPLOAD, 'u', CK_UPLOAD);
  int fd = ck_connect(x, CK_SLOW_RCVBUF, r), err;
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    free(buf);
    return;
  }
  double t0 = ck_ms();
  long long sent = ck_send(fd, buf, len, x->patience, 300, &err);
  free(buf);
  EV(r, "streamed a %d-byte body without reading: %lld bytes accepted in %.0f ms%s%s",
     CK_UPLOAD, sent, ck_ms() - t0,
     err == EAGAIN ? ", then the server stopped reading"
     : err         ? ", then "
                   : "",
     err && err != EAGAIN ? lw_lab_errno_name(err) : "");
  ck_read rd;
  ck_read_end(fd, x->patience, 1, -1, &rd);
  long long want = x->http ? ck_http_total(rd.head, rd.nhead) : x->expected;
  r->expected = want;
  r->received = rd.bytes;
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  EV(r, "answer: %lld bytes%s, then %s after %.0f ms", rd.bytes,
     want >= 0 ? "" : " (length unknown)", r->ending, rd.ms);
  if (x->http && rd.nhead) {
    char line[80];
    size_t k = 0;
    /* The server's bytes: printable ASCII only (no terminal escapes, valid JSON). */
    while (k < rd.nhead && k < sizeof line - 1 && rd.head[k] != '\r' && rd.head[k] != '\n')
      line[k] = rd.head[k] >= 0x20 && rd.head[k] < 0x7f ? rd.head[k] : '?', k++;
    line[k] = 0;
    EV(r, "status line: %s", line);
  }
  ck_srv_state_ev(x, r, ck_cport(fd), "after");
  ck_finish(fd, &rd);
  int full = want >= 0 ? rd.bytes >= want : rd.bytes > 0;
  /* A reset the upload's send met counts even when the reads then saw EOF (the send
   * consumed the error). */
  int reset = err == ECONNRESET || err == EPIPE;
  if (rd.bytes > 0 && full && rd.err == 0 && reset) {
    r->v = CK_WARN;
    SUM(r, "the answer (%lld bytes) arrived, but the server reset the upload", rd.bytes);
    ADV(r, "here the answer was read before the RST; on a real network the RST can arrive "
           "first and destroy it: drain the body (bounded) before close");
  } else if (rd.bytes > 0 && full && rd.err == 0) {
    r->v = CK_PASS;
    SUM(r, "the answer (%lld bytes) arrived, then FIN", rd.bytes);
  } else if (rd.bytes == 0 && rd.err != ETIMEDOUT) {
    r->v = CK_FAIL;
    SUM(r, "no answer: the connection ended (%s) before any byte", r->ending);
    ADV(r, "the server answers early and closes while the body is still coming: the "
           "close resets and the answer is lost; drain the body (bounded) before close");
  } else if (rd.bytes > 0 && !full) {
    r->v = CK_FAIL;
    SUM(r, "the answer was cut: %lld of %lld bytes, then %s", rd.bytes, want, r->ending);
    ADV(r, "drain the rest of the body (bounded in bytes and time) before closing, or the "
           "RST destroys the answer in flight");
  } else if (rd.bytes > 0 && rd.err == ECONNRESET) {
    r->v = CK_WARN;
    SUM(r, "the answer (%lld bytes) arrived, then an RST", rd.bytes);
    ADV(r, "a slower client would lose the answer: drain the body before close");
  } else {
    r->v = CK_WARN;
    SUM(r, "%s within %.1f s", rd.bytes ? "no end of the answer" : "no answer",
        x->patience / 1000.0);
    ADV(r, "answer an upload the server will not take early, then drain or close");
  }
}

static void ck_halfclose(ck_ctx *x, ck_res *r) {
  ck_read rd;
  int fd;
  if (ck_fetch(x, x->req, x->reqlen, CK_SLOW_RCVBUF, 1, 1, r, &rd, &fd) < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  r->expected = ck_expect(x, &rd);
  r->received = rd.bytes;
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  EV(r,
     "sent the request, then shutdown(SHUT_WR) (FIN); received %lld of %lld bytes, then "
     "%s after %.0f ms",
     rd.bytes, r->expected, r->ending, rd.ms);
  ck_srv_state_ev(x, r, ck_cport(fd), "after");
  ck_finish(fd, &rd);
  int full = ck_complete(x, &rd);
  if (full && rd.err == 0) {
    r->v = CK_PASS;
    SUM(r, "the whole response (%lld bytes) to a half-closed client, then FIN", rd.bytes);
  } else if (!full) {
    r->v = CK_FAIL;
    SUM(r, "%lld of %lld bytes, then %s: the half-close was taken for a departure", rd.bytes,
        r->expected, r->ending);
    ADV(r, "a FIN means the client will send nothing more, not that it stopped reading (B3): "
           "keep writing the response, then close");
  } else {
    r->v = CK_WARN;
    SUM(r, "the whole response, then %s", r->ending);
    ADV(r, "end a half-closed connection with your own FIN once the response is written");
  }
}

static void ck_closewait(ck_ctx *x, ck_res *r) {
  int fd = ck_connect(x, 0, r);
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  shutdown(fd, SHUT_WR);
  ck_read rd;
  ck_read_end(fd, x->patience, 0, -1, &rd);
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  EV(r, "connected, sent FIN at once (no request); %lld bytes came back, then %s after %.0f ms",
     rd.bytes, r->ending, rd.ms);
  ck_srv_state_ev(x, r, ck_cport(fd), rd.err == ETIMEDOUT ? "at the end" : "after");
  ck_finish(fd, &rd);
  if (rd.err == ETIMEDOUT) {
    r->v = CK_FAIL;
    SUM(r, "the server did not close within %.1f s of the client's FIN (CLOSE_WAIT)",
        x->patience / 1000.0);
    ADV(r, "a read that returns 0 (EOF) must lead to close(): until it does the socket stays "
           "in CLOSE_WAIT with its buffers (B5)");
    return;
  }
  r->value_ms = rd.ms;
  r->v = CK_PASS;
  SUM(r, "the server closed %.0f ms after the client's FIN (%s)", rd.ms, r->ending);
}

static void ck_idle(ck_ctx *x, ck_res *r) {
  int fd = ck_connect(x, 0, r);
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  ck_read rd;
  ck_read_end(fd, x->patience, 0, -1, &rd);
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  EV(r, "connected and sent nothing; %lld bytes came back, then %s after %.0f ms", rd.bytes,
     r->ending, rd.ms);
  ck_srv_state_ev(x, r, ck_cport(fd), rd.err == ETIMEDOUT ? "at the end" : "after");
  ck_finish(fd, &rd);
  if (rd.err == ETIMEDOUT) {
    r->v = CK_WARN;
    SUM(r, "not within %.1f s: the server keeps a connection that sends nothing",
        x->patience / 1000.0);
    ADV(r, "every connection that sends nothing holds a descriptor and memory (slowloris): "
           "bound the time to the first request (nginx client_header_timeout; liblastword "
           "idle_timeout_ms / first_byte_timeout_ms)");
    return;
  }
  r->value_ms = rd.ms;
  r->v = CK_PASS;
  SUM(r, "the server ended the idle connection after %.0f ms (%s)", rd.ms, r->ending);
}

static void ck_stall(ck_ctx *x, ck_res *r) {
  int fd = ck_connect(x, 4096, r), err;
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  uint16_t cport = ck_cport(fd);
  ck_send(fd, x->req, x->reqlen, x->patience, x->patience, &err);
  EV(r, "sent the request with a 4 KiB receive buffer and never read (zero window)");
  double t0 = ck_ms();
  const char *outcome = NULL;
  lw_diag_sock s;
  while (!ck_stop && ck_ms() - t0 < (double)x->patience && ck_clip(1) > 0) {
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) > 0) {
      if (p.revents & (POLLERR | POLLHUP)) {
        outcome = "reset";
        break;
      }
      if (p.revents & POLLRDHUP) {
        outcome = "fin";
        break;
      }
    }
    /* Closed: the server's socket is gone, or no file refers to it any more (an orphan:
     * FIN_WAIT1 behind the unsent rest). One with no file still ESTABLISHED has not
     * been accepted yet -- a busy server's accept queue (python's http.server under
     * a loaded ctest run: "gave the stalled reader up after 5 ms") -- not closed. */
    int f = ck_srv_sock(x, cport, &s);
    if (f == 0 || (f == 1 && !s.inode && s.state != 1 /* TCP_ESTABLISHED */)) {
      outcome = "closed";
      break;
    }
    ck_sleep(50);
  }
  double ms = ck_ms() - t0;
  int inbuf = 0, fits = 0;
  if (outcome && strcmp(outcome, "closed") == 0 && ck_srv_sock(x, cport, &s) == 1 &&
      ioctl(fd, FIONREAD, &inbuf) == 0)
    /* The application closed with the rest of the response in the kernel: it was not
     * stalled, it finished (the kernel's orphan now waits on the window). */
    fits = (long long)inbuf + s.wqueue >= x->expected;
  ck_srv_state_ev(x, r, cport, outcome ? "then" : "at the end");
  ck_abort(fd);
  if (fits) {
    r->v = CK_NA;
    SUM(r,
        "the whole response (%lld bytes) fit in the server's socket buffers: the "
        "application finished and closed, nothing stalled it (use a larger --http PATH)",
        x->expected);
    return;
  }
  if (outcome && strcmp(outcome, "fin") == 0) {
    r->v = CK_NA;
    SUM(r,
        "the whole response (%lld bytes) fits in the socket buffers: nothing stalled "
        "(use a larger --http PATH to test this)",
        x->expected);
    return;
  }
  if (!outcome) {
    r->v = CK_WARN;
    SUM(r, "not within %.1f s: the server waits on a reader that never reads",
        x->patience / 1000.0);
    ADV(r, "a client that stops reading holds the response's buffers and the connection "
           "forever: bound the time without write progress (nginx send_timeout; liblastword "
           "stall_timeout_ms)");
    return;
  }
  r->value_ms = ms;
  snprintf(r->ending, sizeof r->ending, "%s", strcmp(outcome, "reset") == 0 ? "RST" : "closed");
  r->v = CK_PASS;
  if (strcmp(outcome, "reset") == 0)
    SUM(r, "the server reset the stalled reader after %.0f ms", ms);
  else
    SUM(r, "the server gave the stalled reader up after %.0f ms (closed its socket)", ms);
}

static int ck_nft(const char *cmd) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    /* A ^C reaches the whole foreground process group: an nft killed by it in the middle
     * of "delete table" would leave the drop rule behind. The parent stops on the
     * signal; nft finishes (ignored dispositions survive exec). */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
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
      return -1;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void ck_nft_cleanup(ck_ctx *x) {
  if (!x->nft_made)
    return;
  char cmd[96];
  snprintf(cmd, sizeof cmd, "delete table inet %s", x->nft_table);
  if (ck_nft(cmd) < 0)
    fprintf(stderr, "lastword check: could not delete nft table inet %s: delete it by hand\n",
            x->nft_table);
  x->nft_made = 0;
}

static void ck_vanish(ck_ctx *x, ck_res *r) {
  if (!x->local) {
    r->v = CK_NA;
    SUM(r, "the server is not on this host: a drop rule here would not reach its socket");
    return;
  }
  if (!x->root) {
    r->v = CK_NA;
    SUM(r, "needs root (an nftables drop rule for this client's port)");
    return;
  }
  int fd = ck_connect(x, 16384, r), err;
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  uint16_t cport = ck_cport(fd);
  ck_send(fd, x->req, x->reqlen, x->patience, x->patience, &err);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  poll(&p, 1, (int)ck_clip(x->patience));
  ck_sleep(20);
  lw_diag_sock s;
  int f = ck_srv_sock(x, cport, &s);
  struct pollfd q = {.fd = fd, .events = POLLRDHUP};
  if (f == 0 || (f == 1 && !s.inode) || (poll(&q, 1, 0) > 0 && (q.revents & POLLRDHUP))) {
    ck_abort(fd);
    r->v = CK_NA;
    SUM(r,
        "the server had handed the whole response (%lld bytes) to the kernel and closed "
        "before the client vanished (use a larger --http PATH)",
        x->expected);
    return;
  }
  char cmd[400];
  snprintf(x->nft_table, sizeof x->nft_table, "lastword_check_%ld", (long)getpid());
  snprintf(cmd, sizeof cmd,
           "add table inet %s ; add chain inet %s in { type filter hook input priority 0 ; } "
           "; add rule inet %s in tcp sport %u tcp dport %u drop ; add rule inet %s in tcp "
           "sport %u tcp dport %u drop",
           x->nft_table, x->nft_table, x->nft_table, cport, x->port, x->nft_table, x->port,
           cport);
  if (ck_nft(cmd) < 0) {
    x->nft_made = 1; /* a half-made table is deleted too */
    ck_nft_cleanup(x);
    ck_abort(fd);
    r->v = CK_NA;
    SUM(r, "nft failed or is not installed (apt-get install nftables)");
    return;
  }
  x->nft_made = 1;
  EV(r, "mid-response, every segment of port %u <-> %u dropped (nft table inet %s)", cport,
     x->port, x->nft_table);
  double t0 = ck_ms();
  int gone = 0;
  while (!ck_stop && ck_ms() - t0 < (double)x->patience && ck_clip(1) > 0) {
    f = ck_srv_sock(x, cport, &s);
    if (f == 0 || (f == 1 && !s.inode)) {
      gone = 1;
      break;
    }
    ck_sleep(50);
  }
  double ms = ck_ms() - t0;
  ck_srv_state_ev(x, r, cport, gone ? "then" : "at the end");
  ck_nft_cleanup(x);
  EV(r, "drop rule deleted; the client's socket reset");
  ck_abort(fd);
  if (!gone) {
    r->v = CK_WARN;
    SUM(r, "not within %.1f s: the server holds a connection whose client vanished",
        x->patience / 1000.0);
    ADV(r, "a client that vanishes (cable, NAT timeout, crash) leaves a ghost session until "
           "the retransmissions give up (~15 min): bound it (TCP_USER_TIMEOUT, a send "
           "timeout; liblastword dead_after_ms)");
    return;
  }
  r->value_ms = ms;
  r->v = CK_PASS;
  snprintf(r->ending, sizeof r->ending, "closed");
  SUM(r, "the server let the vanished client go after %.0f ms", ms);
}

static void ck_reset(ck_ctx *x, ck_res *r) {
  int fd = ck_connect(x, 16384, r), err;
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  uint16_t cport = ck_cport(fd);
  ck_send(fd, x->req, x->reqlen, x->patience, x->patience, &err);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  double t0 = ck_ms();
  int got = poll(&p, 1, (int)ck_clip(x->patience)) > 0;
  EV(r, "client A: %s after %.0f ms, then reset (SO_LINGER {1,0} + close)",
     got ? "first response bytes" : "no response", ck_ms() - t0);
  ck_abort(fd);
  ck_sleep(50);
  ck_srv_state_ev(x, r, cport, "of client A");
  ck_read rd;
  if (ck_fetch(x, x->req, x->reqlen, 0, 0, 0, r, &rd, NULL) < 0) {
    r->v = CK_FAIL;
    SUM(r, "after a client's reset, the next client cannot connect: %s", strerror(errno));
    ADV(r, "an ECONNRESET from one connection must end that connection only");
    return;
  }
  r->expected = ck_expect(x, &rd);
  r->received = rd.bytes;
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  EV(r, "client B: %lld of %lld bytes, then %s", rd.bytes, r->expected, r->ending);
  if (ck_complete(x, &rd) && strcmp(r->ending, x->base_end) == 0) {
    r->v = CK_PASS;
    SUM(r, "after a client reset mid-response, the next client got its whole response");
  } else {
    r->v = CK_FAIL;
    SUM(r, "after a client reset, the next client got %lld of %lld bytes, then %s", rd.bytes,
        r->expected, r->ending);
    ADV(r, "an ECONNRESET/EPIPE from one connection must end that connection only");
  }
}

static void ck_timewait(ck_ctx *x, ck_res *r) {
  ck_read rd;
  int fd;
  if (ck_fetch(x, x->req, x->reqlen, 0, 0, 0, r, &rd, &fd) < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  uint16_t cport = ck_cport(fd);
  close(fd); /* a plain close: whoever closed first keeps TIME_WAIT */
  int cli = LW_DIAG_STATE_NONE, srv = LW_DIAG_STATE_NONE, seen_srv = 0;
  /* Until either side is in TIME_WAIT or neither has a socket left: on a loaded host the
   * last FIN/ACK may not have been processed yet (FIN_WAIT_2, LAST_ACK, CLOSING), and a
   * single look 30 ms after the close read that as "no TIME_WAIT". Bounded: 1 s. */
  for (double tq = ck_ms(); !ck_stop;) {
    ck_sleep(10);
    cli = srv = LW_DIAG_STATE_NONE;
    lw_diag_sock socks[32];
    int n = lw_diag_query(AF_UNSPEC, cport, socks, 32); /* both: see ck_srv_sock */
    for (int i = 0; i < n && i < 32; i++) {
      if (socks[i].lport == cport && socks[i].rport == x->port)
        cli = socks[i].state;
      if (x->local && socks[i].lport == x->port && socks[i].rport == cport)
        srv = socks[i].state, seen_srv = 1;
    }
    if (cli == 6 || srv == 6 || (cli == LW_DIAG_STATE_NONE && srv == LW_DIAG_STATE_NONE) ||
        ck_ms() - tq > 1000 || ck_clip(1) == 0)
      break;
  }
  snprintf(r->ending, sizeof r->ending, "%s", ck_ending(rd.err));
  snprintf(r->server_state, sizeof r->server_state, "%s",
           x->local ? lw_diag_state_name(srv) : "");
  EV(r, "a clean exchange ended %s; then: client socket %s%s%s", r->ending,
     lw_diag_state_name(cli), x->local ? ", server socket " : "",
     x->local ? lw_diag_state_name(srv) : "");
  /* The server's rate here: sequential exchanges, at most 50 or 1 s. */
  double t0 = ck_ms();
  int k = 0;
  /* Not when the exchange did not end: the "rate" would be one per patience period. */
  while (k < 50 && ck_ms() - t0 < 1000 && !ck_stop && rd.err != ETIMEDOUT) {
    if (ck_fetch(x, x->req, x->reqlen, 0, 0, 0, NULL, &rd, &fd) < 0)
      break;
    close(fd);
    k++;
  }
  double rate = k ? k / ((ck_ms() - t0) / 1000.0) : 0;
  int lo = 32768, hi = 60999;
  FILE *pf = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (pf) {
    if (fscanf(pf, "%d %d", &lo, &hi) != 2)
      lo = 32768, hi = 60999;
    fclose(pf);
  }
  int ports = hi - lo + 1;
  EV(r, "rate here: %d sequential exchanges at %.0f per second", k, rate);
  const int tw = 60; /* TCP_TIMEWAIT_LEN on Linux */
  if (cli == 6) {
    r->v = rate > ports / (double)tw ? CK_WARN : CK_PASS;
    SUM(r,
        "the client keeps TIME_WAIT: one client address can open at most %d/%d = %d "
        "connections per second to this server",
        ports, tw, ports / tw);
    if (r->v == CK_WARN)
      ADV(r,
          "at the %.0f/s measured here a single client would run out of ports: let the "
          "server close first, or reuse connections (keep-alive)",
          rate);
  } else if (srv == 6 || (!x->local && rd.err == 0)) {
    r->v = CK_PASS;
    SUM(r,
        "the server keeps TIME_WAIT%s: at %.0f connections per second that is %.0f "
        "sockets (~%.0f KiB of kernel memory), no port cost",
        seen_srv ? "" : " (it closed first)", rate, rate * tw, rate * tw * 0.25);
  } else {
    r->v = CK_WARN;
    SUM(r, "no TIME_WAIT on either side: the exchange ended %s", r->ending);
    ADV(r, "a connection ended by RST skips TIME_WAIT but may lose data in flight; end "
           "with FIN");
  }
}

static void ck_keepalive(ck_ctx *x, ck_res *r) {
  if (!x->http) {
    r->v = CK_NA;
    SUM(r, "HTTP only (--http PATH)");
    return;
  }
  char req[1500]; /* as ck_upload's */
  int rl =
      snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", x->http, x->hosthdr);
  assert(rl > 0 && (size_t)rl < sizeof req);
  int fd = ck_connect(x, 0, r), err;
  if (fd < 0) {
    r->v = CK_FAIL;
    SUM(r, "connect: %s", strerror(errno));
    return;
  }
  ck_send(fd, req, (size_t)rl, x->patience, x->patience, &err);
  ck_read rd;
  /* Up to the end of the response, not a fixed count: the idle time T is measured from
   * there (a wait for bytes that never come would be counted out of T). */
  ck_read_end(fd, x->patience, 0, CK_WANT_HTTP, &rd);
  long long total = ck_http_total(rd.head, rd.nhead);
  if (total < 0 || ck_http_closes(rd.head, rd.nhead)) {
    ck_abort(fd);
    r->v = CK_NA;
    SUM(r, "%s",
        total < 0 ? "no Content-Length in the response: the race is not tried"
                  : "the server closes after every response (no keep-alive)");
    return;
  }
  if (rd.err != EAGAIN) {
    ck_abort(fd);
    r->v = CK_NA;
    SUM(r,
        "the first response on a keep-alive connection did not complete (%lld of %lld "
        "bytes, then %s): the race is not tried",
        rd.bytes, total, ck_ending(rd.err));
    return;
  }
  ck_read idle;
  ck_read_end(fd, x->patience, 0, -1, &idle);
  ck_abort(fd);
  if (idle.err != ETIMEDOUT && idle.ms < 30) {
    r->v = CK_NA;
    SUM(r,
        "the server ends a keep-alive connection right after the response (%.0f ms, "
        "%s): no idle timeout to race",
        idle.ms, ck_ending(idle.err));
    return;
  }
  if (idle.err == ETIMEDOUT) {
    r->v = CK_NA;
    SUM(r,
        "the server keeps an idle keep-alive connection longer than %.1f s: the race "
        "is not tried",
        x->patience / 1000.0);
    return;
  }
  double T = idle.ms;
  r->value_ms = T;
  EV(r, "idle keep-alive connection ended by the server after %.0f ms (%s)", T,
     ck_ending(idle.err));
  static const int offs[] = {-20, -5, 0, 5};
  int resets = 0, closes = 0, answers = 0;
  for (size_t i = 0; i < sizeof offs / sizeof offs[0] && !ck_stop; i++) {
    fd = ck_connect(x, 0, r);
    if (fd < 0)
      break;
    ck_send(fd, req, (size_t)rl, x->patience, x->patience, &err);
    ck_read_end(fd, x->patience, 0, CK_WANT_HTTP, &rd);
    double at = T + offs[i];
    ck_sleep(at > 0 ? (long)at : 0);
    long long s2 = ck_send(fd, req, (size_t)rl, 1000, 1000, &err);
    ck_read_end(fd, 2000, 0, -1, &rd);
    const char *o;
    if (rd.bytes > 0 && rd.err != ECONNRESET)
      o = "a response", answers++;
    else if (rd.err == ECONNRESET || (s2 < rl && err))
      o = "an RST", resets++;
    else if (rd.err == 0)
      o = "a clean close (FIN)", closes++;
    else
      o = "nothing", closes++;
    EV(r, "request %+d ms from the idle timeout: %s (%lld bytes)", offs[i], o, rd.bytes);
    ck_abort(fd);
  }
  if (resets) {
    r->v = CK_WARN;
    SUM(r, "%d of %d requests sent at the idle timeout met an RST", resets,
        resets + closes + answers);
    ADV(r, "the server closes an idle connection with a request unread: the client cannot "
           "tell whether it was processed; clients must retry only idempotent requests; a "
           "server can half-close and drain before close");
  } else {
    r->v = CK_PASS;
    SUM(r, "at the idle timeout (%.0f ms) requests got a response (%d) or a clean close (%d)",
        T, answers, closes);
  }
}

/* ---- report ---- */

typedef struct {
  unsigned long segs, rsegs;
  unsigned long long bytes, rbytes;
  double fin_ms, rst_ms; /* -1: none */
} ck_dirsum;

static int ck_has_port(const ck_res *r, uint16_t p) {
  for (int i = 0; i < r->ncports; i++)
    if (r->cports[i] == p)
      return 1;
  return 0;
}

static void ck_wire(const ck_ctx *x, const ck_res *r, const lw_cap_seg *segs, size_t n,
                    ck_dirsum d[2]) {
  memset(d, 0, 2 * sizeof *d);
  d[0].fin_ms = d[0].rst_ms = d[1].fin_ms = d[1].rst_ms = -1;
  double off = r->t_real - x->t0_real;
  for (size_t i = 0; i < n; i++) {
    const lw_cap_seg *g = &segs[i];
    uint16_t cp = g->dir == LW_DIR_C2S ? g->sport : g->dport;
    if (!ck_has_port(r, cp))
      continue;
    ck_dirsum *s = &d[g->dir];
    if (g->len) {
      if (g->retrans)
        s->rsegs++, s->rbytes += g->len;
      else
        s->segs++, s->bytes += g->len;
    }
    if ((g->flags & LW_TH_FIN) && s->fin_ms < 0)
      s->fin_ms = g->t_ms - off;
    if ((g->flags & LW_TH_RST) && s->rst_ms < 0)
      s->rst_ms = g->t_ms - off;
  }
}

static void ck_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void ck_report(const ck_ctx *x, const ck_res *r, const lw_cap_seg *segs, size_t nsegs,
                      int captured) {
  FILE *f = x->out;
  ck_dirsum d[2];
  ck_wire(x, r, segs, nsegs, d);
  if (x->json) {
    fprintf(f, "{\"check\":\"%s\",\"n\":%d,\"title\":", r->id, r->n);
    ck_json_str(f, r->title);
    fprintf(f, ",\"verdict\":\"%s\",\"summary\":", ck_vname[r->v]);
    ck_json_str(f, r->summary);
    fputs(",\"evidence\":[", f);
    for (int i = 0; i < r->nev; i++) {
      if (i)
        fputc(',', f);
      ck_json_str(f, r->ev[i]);
    }
    fputs("],\"advice\":", f);
    ck_json_str(f, r->advice);
    fprintf(f,
            ",\"expected_bytes\":%lld,\"received_bytes\":%lld,\"ending\":\"%s\","
            "\"value_ms\":%.1f,\"server_state\":\"%s\",\"captured\":%s,\"wire\":{",
            r->expected, r->received, r->ending, r->value_ms, r->server_state,
            captured && (d[0].segs || d[1].segs || d[0].fin_ms >= 0 || d[0].rst_ms >= 0 ||
                         d[1].fin_ms >= 0 || d[1].rst_ms >= 0)
                ? "true"
                : "false");
    for (int k = 0; k < 2; k++)
      fprintf(f,
              "%s\"%s\":{\"segments\":%lu,\"bytes\":%llu,\"retrans_segments\":%lu,"
              "\"retrans_bytes\":%llu,\"fin_ms\":%.1f,\"rst_ms\":%.1f}",
              k ? "," : "", k ? "server" : "client", d[k].segs, d[k].bytes, d[k].rsegs,
              d[k].rbytes, d[k].fin_ms, d[k].rst_ms);
    fputs("}}\n", f);
    return;
  }
  const char *b = x->color ? "\033[1m" : "", *z = x->color ? "\033[0m" : "",
             *dim = x->color ? "\033[2m" : "";
  fprintf(f, "\n%s%2d %-10s%s %s%-4s%s  %s\n", b, r->n, r->id, z,
          x->color ? ck_vcolor[r->v] : "",
          r->v == CK_NA     ? "n/a"
          : r->v == CK_PASS ? "PASS"
          : r->v == CK_WARN ? "WARN"
                            : "FAIL",
          z, r->summary);
  for (int i = 0; i < r->nev; i++)
    fprintf(f, "%20s%s%s%s\n", "", dim, r->ev[i], z);
  if (captured && (d[0].segs || d[1].segs || d[0].fin_ms >= 0 || d[1].fin_ms >= 0 ||
                   d[0].rst_ms >= 0 || d[1].rst_ms >= 0)) {
    fprintf(f, "%20s%swire:", "", dim);
    for (int k = 0; k < 2; k++) {
      fprintf(f, "%s client %s %lu segments (%llu bytes)", k ? " ·" : "", k ? "←" : "→",
              d[k].segs, d[k].bytes);
      if (d[k].rsegs)
        fprintf(f, " + %lu retransmissions", d[k].rsegs);
      if (d[k].fin_ms >= 0)
        fprintf(f, ", FIN at %.0f ms", d[k].fin_ms);
      if (d[k].rst_ms >= 0)
        fprintf(f, ", %sRST%s%s at %.0f ms", x->color ? "\033[31m" : "", z, dim, d[k].rst_ms);
    }
    fprintf(f, "%s\n", z);
  }
  if (r->advice[0] && (r->v == CK_WARN || r->v == CK_FAIL))
    fprintf(f, "%20s%s→%s %s\n", "", x->color ? ck_vcolor[r->v] : "", z, r->advice);
}

/* ---- main ---- */

static const struct {
  const char *id, *title;
  void (*fn)(ck_ctx *, ck_res *);
} ck_checks[CK_NCHECKS] = {
    {"unread", "the request followed by bytes the server never reads (B13)", ck_unread},
    {"upload", "a large body streamed without reading: the early answer", ck_upload},
    {"halfclose", "the client half-closes after the request (B3)", ck_halfclose},
    {"closewait", "the client sends FIN and waits: does the server close? (B5)", ck_closewait},
    {"idle", "a connection that sends nothing", ck_idle},
    {"stall", "a reader that never reads (zero window)", ck_stall},
    {"vanish", "the client vanishes mid-response (A17, ghost sessions)", ck_vanish},
    {"reset", "a client resets mid-response: are others still served?", ck_reset},
    {"timewait", "which side keeps TIME_WAIT, and its cost at this rate", ck_timewait},
    {"keepalive", "a request at the keep-alive idle timeout: response, FIN or RST?",
     ck_keepalive},
};

static int ck_selected(const char *only, int i) {
  if (!only)
    return 1;
  char num[12];
  snprintf(num, sizeof num, "%d", i + 1);
  for (const char *p = only; *p;) {
    const char *e = strchr(p, ',');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if ((l == strlen(ck_checks[i].id) && strncasecmp(p, ck_checks[i].id, l) == 0) ||
        (l == strlen(num) && strncmp(p, num, l) == 0))
      return 1;
    if (!e)
      break;
    p = e + 1;
  }
  return 0;
}

static int ck_only_valid(const char *only) {
  for (const char *p = only; *p;) {
    const char *e = strchr(p, ',');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    int ok = 0;
    for (int i = 0; i < CK_NCHECKS && !ok; i++) {
      char num[12];
      snprintf(num, sizeof num, "%d", i + 1);
      ok = (l == strlen(ck_checks[i].id) && strncasecmp(p, ck_checks[i].id, l) == 0) ||
           (l == strlen(num) && strncmp(p, num, l) == 0);
    }
    if (!ok)
      return 0;
    if (!e)
      break;
    p = e + 1;
  }
  return 1;
}

static void ck_usage(FILE *f) {
  fputs("usage: lastword check HOST:PORT [--request STR | --http PATH] [--only IDS]\n"
        "                      [--json] [--pcap FILE] [--patience MS] [--no-color]\n"
        "  Runs client behaviours against a server and says how it ends connections.\n"
        "  --request STR   the request (C escapes: \\r \\n \\t \\xHH); the server must answer\n"
        "                  it and close. Default: --http /\n"
        "  --http PATH     HTTP/1.1 GET PATH with Connection: close (and the keep-alive race)\n"
        "  --only IDS      checks by name or number: unread,upload,halfclose,closewait,idle,\n"
        "                  stall,vanish,reset,timewait,keepalive (1-10)\n"
        "  --patience MS   bound of every wait (default 3000): 'not within N s'\n"
        "  --json          one JSON object per line (tools/README-check.md)\n"
        "  --pcap FILE     write the captured packets (root)\n"
        "Exit status: 0 no check failed, 1 a check failed, 2 the tool could not run.\n",
        f);
}

static int ck_resolve(ck_ctx *x, const char *hp) {
  char host[256];
  const char *colon = strrchr(hp, ':');
  if (!colon || colon == hp || !colon[1])
    return -1;
  size_t hl = (size_t)(colon - hp);
  if (hp[0] == '[' && hl >= 2 && hp[hl - 1] == ']')
    memcpy(host, hp + 1, hl - 2), host[hl - 2] = 0;
  else if (hl < sizeof host)
    memcpy(host, hp, hl), host[hl] = 0;
  else
    return -1;
  char *end;
  if (!isdigit((unsigned char)colon[1])) /* strtol would take " 80" and "+80" */
    return -1;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535)
    return -1;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
    return -2;
  memcpy(&x->addr, ai->ai_addr, ai->ai_addrlen);
  x->alen = ai->ai_addrlen;
  x->family = ai->ai_family;
  freeaddrinfo(ai);
  x->port = (uint16_t)port;
  snprintf(x->target, sizeof x->target, "%s", hp);
  snprintf(x->hosthdr, sizeof x->hosthdr, "%s", hp);
  /* Local: the address is one of this host's (a bind to it works), so sock_diag sees the
   * server's socket and a drop rule here reaches it. */
  int t = socket(x->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (t >= 0) {
    struct sockaddr_storage a = x->addr;
    ((struct sockaddr_in *)&a)->sin_port = 0; /* same offset in v6 */
    x->local = bind(t, (struct sockaddr *)&a, x->alen) == 0;
    close(t);
  }
  return 0;
}

int lw_check_main(int argc, char **argv) {
  const char *request = NULL, *http = NULL, *only = NULL, *pcap = NULL;
  int nocolor = 0, rc = 0;
  char errmsg[400] = "";
  ck_ctx x;
  memset(&x, 0, sizeof x);
  x.patience = 3000;
  x.out = stdout;
  static const struct option longopts[] = {{"request", required_argument, NULL, 'r'},
                                           {"http", required_argument, NULL, 'H'},
                                           {"only", required_argument, NULL, 'o'},
                                           {"json", no_argument, NULL, 'j'},
                                           {"pcap", required_argument, NULL, 'p'},
                                           {"patience", required_argument, NULL, 'P'},
                                           {"no-color", no_argument, NULL, 'n'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "r:H:o:jp:P:nh", longopts, NULL)) != -1;) {
    char *end;
    switch (ch) {
    case 'r':
      request = optarg;
      break;
    case 'H':
      http = optarg;
      break;
    case 'o':
      only = optarg;
      break;
    case 'j':
      x.json = 1;
      break;
    case 'p':
      pcap = optarg;
      break;
    case 'P':
      x.patience = strtol(optarg, &end, 10);
      if (*end || end == optarg || x.patience < 100 || x.patience > 600000) {
        fprintf(stderr, "lastword check: --patience takes 100..600000 ms\n");
        return 2;
      }
      break;
    case 'n':
      nocolor = 1;
      break;
    case 'h':
      ck_usage(stdout);
      return 0;
    default:
      ck_usage(stderr);
      return 2;
    }
  }
  if (optind + 1 != argc || (request && http)) {
    ck_usage(stderr);
    return 2;
  }
  if (only && (!*only || !ck_only_valid(only))) {
    fprintf(stderr, "lastword check: --only: unknown check in '%s'\n", only);
    return 2;
  }
  int rr = ck_resolve(&x, argv[optind]);
  if (rr < 0) {
    fprintf(stderr, "lastword check: %s: %s\n", argv[optind],
            rr == -1 ? "expected HOST:PORT" : "cannot resolve the host");
    return 2;
  }
  if (!request && !http)
    http = "/";
  char reqbuf[4096];
  if (http) {
    if (strchr(http, ' ') || strchr(http, '\r') || strchr(http, '\n') || strlen(http) > 1000) {
      fprintf(stderr, "lastword check: --http: a path without spaces or line ends\n");
      return 2;
    }
    x.http = http;
    x.reqlen = (size_t)snprintf(reqbuf, sizeof reqbuf,
                                "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                                http, x.hosthdr);
  } else {
    long l = lw_check_unescape(request, reqbuf, sizeof reqbuf);
    if (l <= 0) {
      fprintf(stderr, "lastword check: --request: empty, too long or a bad escape\n");
      return 2;
    }
    x.reqlen = (size_t)l;
  }
  x.req = reqbuf;
  x.color = !nocolor && !x.json && isatty(1) && !getenv("NO_COLOR");
  x.progress = isatty(2);
  x.root = geteuid() == 0;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = ck_on_signal; /* no SA_RESTART: a wait returns at once */
  /* Every signal that ends a run from a terminal or a supervisor: the drop rule's table
   * must be deleted, so none of them may kill the process outright. */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);

  char err[256];
  x.t0_real = ck_now(CLOCK_REALTIME);
  if (!x.root) {
    fprintf(stderr, "lastword check: not root: no packet capture, and the vanished-client "
                    "check (an nftables drop rule) is skipped; everything else runs.\n");
    if (pcap)
      fprintf(stderr, "lastword check: --pcap ignored: no capture\n");
  } else {
    const char *ifname = x.local ? "lo" : "any";
    /* A server on a local non-loopback address is still reached through lo on Linux. */
    if (pcap) {
      x.dump = lw_cap_dump_open(pcap, err, sizeof err);
      if (!x.dump) {
        fprintf(stderr, "lastword check: --pcap: %s\n", err);
        return 2;
      }
    }
    x.cap = lw_cap_start(ifname, x.port, x.t0_real, x.dump, err, sizeof err);
    if (!x.cap)
      fprintf(stderr, "lastword check: no capture (%s): running without segments.\n", err);
  }

  /* The clean run every comparison is made against. */
  ck_read base;
  double bt = ck_ms();
  const double budget = 2.0 * (double)x.patience + 1000; /* of one check (and the clean run) */
  ck_deadline = bt + budget;
  if (ck_fetch(&x, x.req, x.reqlen, 0, 0, 0, NULL, &base, NULL) < 0) {
    snprintf(errmsg, sizeof errmsg, "%s", strerror(errno));
    goto fail;
  }
  x.base_ms = ck_ms() - bt;
  x.expected = base.bytes;
  snprintf(x.base_end, sizeof x.base_end, "%s", ck_ending(base.err));
  long long base_total = x.http ? ck_http_total(base.head, base.nhead) : -1;
  if (base.bytes == 0) {
    snprintf(errmsg, sizeof errmsg,
             "no response to the request (the connection ended %s after %.0f ms): nothing "
             "to compare with",
             x.base_end, x.base_ms);
    goto fail;
  }
  if (base.err == ETIMEDOUT && base.ms - base.last_ms < (double)x.patience / 4 &&
      base.bytes != base_total) {
    /* Bytes were still coming when the wait ended: what was read is not the response's
     * length, and every comparison with it would be false. */
    snprintf(errmsg, sizeof errmsg,
             "the response was still arriving after %.1f s (%lld bytes): an endless "
             "response, or one slower than the patience; nothing to compare with (use a "
             "request with a finite answer, or a larger --patience)",
             base.ms / 1000.0, base.bytes);
    goto fail;
  }
  if (base.err != ETIMEDOUT && !ck_stop) {
    /* A second clean run: a length that changes from one answer to the next (a counter,
     * a page that changes) would make every comparison false, unless each response says
     * its own length (HTTP Content-Length, see ck_expect). */
    ck_read again;
    if (ck_fetch(&x, x.req, x.reqlen, 0, 0, 0, NULL, &again, NULL) == 0 &&
        again.bytes != base.bytes &&
        (base_total < 0 || ck_http_total(again.head, again.nhead) < 0)) {
      snprintf(errmsg, sizeof errmsg,
               "two clean runs gave %lld and %lld bytes, with no Content-Length: the "
               "response's length varies, and the checks compare lengths (use a request "
               "whose answer does not change)",
               base.bytes, again.bytes);
      goto fail;
    }
  }
  ck_deadline = 0;
  if (ck_stop) {
    snprintf(errmsg, sizeof errmsg, "interrupted");
    goto fail;
  }
  if (!x.json) {
    char what[1100] = "";
    if (x.http)
      snprintf(what, sizeof what, " (HTTP GET %s)", x.http);
    fprintf(x.out,
            "%slastword check %s%s  request %zu bytes%s; clean run: %lld bytes, then %s "
            "after %.0f ms; patience %.1f s%s\n",
            x.color ? "\033[1m" : "", x.target, x.color ? "\033[0m" : "", x.reqlen, what,
            x.expected, x.base_end, x.base_ms, x.patience / 1000.0,
            x.local ? "; server on this host" : "");
  } else {
    fprintf(x.out, "{\"target\":");
    ck_json_str(x.out, x.target);
    fprintf(x.out,
            ",\"request_bytes\":%zu,\"http\":%s,\"patience_ms\":%ld,\"root\":%s,\"local\":%s,"
            "\"baseline\":{\"received_bytes\":%lld,\"ending\":\"%s\",\"ms\":%.1f}}\n",
            x.reqlen, x.http ? "true" : "false", x.patience, x.root ? "true" : "false",
            x.local ? "true" : "false", x.expected, x.base_end, x.base_ms);
  }
  if (base.err != 0)
    fprintf(stderr,
            "lastword check: note: the clean run ended %s, not with FIN: comparisons "
            "are made with its %lld bytes\n",
            x.base_end, x.expected);

  static ck_res res[CK_NCHECKS];
  int nsel = 0, done = 0;
  for (int i = 0; i < CK_NCHECKS; i++)
    nsel += ck_selected(only, i);
  for (int i = 0; i < CK_NCHECKS && !ck_stop; i++) {
    ck_res *r = &res[i];
    memset(r, 0, sizeof *r);
    r->n = i + 1;
    r->id = ck_checks[i].id;
    r->title = ck_checks[i].title;
    r->expected = r->received = -1;
    r->value_ms = -1;
    if (!ck_selected(only, i))
      continue;
    if (x.progress) {
      fprintf(stderr, "\r\033[K[%d/%d] %s …", ++done, nsel, r->id);
      fflush(stderr);
    }
    r->t_real = ck_now(CLOCK_REALTIME);
    ck_clipped = 0;
    ck_deadline = ck_ms() + (i == 9 ? 3 * budget + 12000 : budget);
    ck_checks[i].fn(&x, r);
    ck_deadline = 0;
    r->ran = 1;
    if (ck_clipped)
      EV(r, "the check's time budget (%.1f s) ran out: its waits were cut short",
         (i == 9 ? 3 * budget + 12000 : budget) / 1000.0);
    if (ck_stop) {
      /* A wait cut by the signal says nothing about the server. */
      r->v = CK_NA;
      SUM(r, "interrupted before the check ended: no verdict");
      r->advice[0] = 0;
      r->value_ms = -1;
    }
  }
  if (x.progress)
    fputs("\r\033[K", stderr);
  ck_nft_cleanup(&x);
  size_t nsegs = 0;
  lw_cap_seg *segs = NULL;
  int cap_ran = x.cap != NULL;
  if (x.cap) {
    const lw_cap_seg *s = lw_cap_stop(x.cap, &nsegs);
    segs = nsegs ? malloc(nsegs * sizeof *segs) : NULL;
    if (segs) {
      memcpy(segs, s, nsegs * sizeof *segs);
      lw_cap_mark_retrans(segs, nsegs);
    } else {
      nsegs = 0;
    }
    lw_cap_free(x.cap);
    x.cap = NULL;
  }
  int count[4] = {0};
  for (int i = 0; i < CK_NCHECKS; i++) {
    if (!res[i].ran)
      continue;
    ck_report(&x, &res[i], segs, nsegs, cap_ran);
    count[res[i].v]++;
  }
  free(segs);
  rc = count[CK_FAIL] ? 1 : 0;
  if (ck_stop) {
    fprintf(stderr, "lastword check: interrupted\n");
    rc = 2;
  }
  if (x.json) {
    fputs("{\"summary\":{\"target\":", x.out);
    ck_json_str(x.out, x.target);
    fprintf(x.out, ",\"pass\":%d,\"warn\":%d,\"fail\":%d,\"na\":%d,\"exit\":%d}}\n", count[0],
            count[1], count[2], count[3], rc);
  } else {
    const char *b = x.color ? "\033[1m" : "", *z = x.color ? "\033[0m" : "";
    fprintf(x.out, "\n%sSummary%s (%s, %d checks)\n", b, z, x.target,
            count[0] + count[1] + count[2] + count[3]);
    fprintf(x.out, "  ┌──────────┬───────┐\n");
    static const char *const lab[] = {"pass", "warn", "fail", "n/a"};
    for (int v = 0; v < 4; v++)
      fprintf(x.out, "  │ %s%-8s%s │ %5d │\n", x.color ? ck_vcolor[v] : "", lab[v], z,
              count[v]);
    fprintf(x.out, "  └──────────┴───────┘\n");
  }
  goto out;
fail:
  /* The tool could not run: said on stderr, and with --json as a summary line too (a
   * reader of the JSON alone learns why there is nothing else). */
  fprintf(stderr, "lastword check: %s: %s\n", x.target, errmsg);
  if (x.json) {
    fputs("{\"summary\":{\"target\":", x.out);
    ck_json_str(x.out, x.target);
    fputs(",\"pass\":0,\"warn\":0,\"fail\":0,\"na\":0,\"exit\":2,\"error\":", x.out);
    ck_json_str(x.out, errmsg);
    fputs("}}\n", x.out);
  }
  rc = 2;
out:
  ck_deadline = 0;
  ck_nft_cleanup(&x);
  if (x.cap) {
    size_t n;
    lw_cap_stop(x.cap, &n);
    lw_cap_free(x.cap);
  }
  if (x.dump && lw_cap_dump_close(x.dump) < 0) {
    fprintf(stderr, "lastword check: --pcap: %s: write error\n", pcap);
    rc = 2;
  }
  /* A report that could not be written (a full disk, a closed pipe) is no report. */
  if (fflush(x.out) != 0 || ferror(x.out)) {
    fprintf(stderr, "lastword check: writing the report failed\n");
    rc = 2;
  }
  return rc;
}
