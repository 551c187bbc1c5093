/*
 * fault.h - the fault-matrix kit (issue 7), header-only (static inline): include it
 * after helper.h (or netns.h) in one test program.
 *
 *   ft_server  a server on a real loop speaking a tiny protocol:
 *                "GET <n>\n"   -> n bytes of the pattern (i % 251), then lw_close(c, 0)
 *                "FILL <n>\n"  -> zero-copy writes of n bytes until lw_conn_write
 *                                 refuses (LW_EQUEUEFULL expected), bounded
 *              a request line longer than FT_REQ_MAX is refused with lw_close(c, 0).
 *              Every close is recorded with the peer's port, so each raw peer can be
 *              matched with the server's view of its connection (reason, time, bytes).
 *   ft_peer    a raw blocking-socket peer in a thread (or, for FT_KILL, a forked child
 *              process that the thread SIGKILLs) that reaches a PHASE of the exchange
 *              and then MISBEHAVES in one way: the fault matrix's cells.
 *
 * Every loop here is bounded in time (max_ms) and checks a stop flag.
 */
#ifndef LW_TEST_FAULT_H
#define LW_TEST_FAULT_H

#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FT_REQ_MAX 1024
#define FT_MAX_RECS 512
#define FT_PAYLOAD_MAX (2u * 1024u * 1024u)

static inline void ft_msleep(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* ================================ server ================================ */
typedef struct ft_rec {
  uint16_t peer_port;
  lw_close_info info;
  uint64_t t_close;      /* lwt_now_ms() at on_close */
  int fill_result;       /* FILL: the result of the refused write (LW_EQUEUEFULL) */
  size_t fill_queued;    /* FILL: bytes lw_conn_write accepted */
  size_t fill_max_queue; /* FILL: the largest lw_conn_write_queue_size seen */
} ft_rec;

typedef struct ft_server {
  lw_loop *loop;
  lw_listener *listener;
  int port;
  lw_conn_options opts;
  int banner; /* write "HI\n" on accept (the server speaks first) */
  char *payload;
  ft_rec recs[FT_MAX_RECS];
  int nrec;
  int accepts;
  int open;
  int backlog; /* default 512 */
  int accept_errors;
  unsigned reasons[LW_REASON__COUNT];
  uint64_t bytes_acked; /* sum over every closed connection */
} ft_server;

typedef struct ft_conn {
  ft_server *s;
  uint16_t peer_port;
  size_t reqlen;
  int answered;
  ft_rec rec;
  char req[FT_REQ_MAX + 1];
} ft_conn;

static inline void ft_srv_closed(lw_conn *c, const lw_close_info *in) {
  ft_conn *fc = lw_conn_get_data(c);
  ft_server *s = fc->s;
  fc->rec.peer_port = fc->peer_port;
  fc->rec.info = *in;
  fc->rec.t_close = lwt_now_ms();
  if (s->nrec < FT_MAX_RECS)
    s->recs[s->nrec++] = fc->rec;
  if ((unsigned)in->reason < LW_REASON__COUNT)
    s->reasons[in->reason]++;
  s->bytes_acked += in->bytes_acked;
  s->open--;
  if (getenv("FT_LOG_RST") && in->rst && in->bytes_queued != 1000 &&
      in->bytes_queued != 262144 && in->bytes_queued != 2097152) {
    static int logged;
    if (logged++ < 20)
      fprintf(stderr,
              "ft: %s rst: queued %llu sent %llu acked %llu unsent %llu unread %llu ms %llu "
              "silent %llu\n",
              lw_reason_name(in->reason), (unsigned long long)in->bytes_queued,
              (unsigned long long)in->bytes_sent, (unsigned long long)in->bytes_acked,
              (unsigned long long)in->unsent_discarded,
              (unsigned long long)in->unread_discarded, (unsigned long long)in->close_ms,
              (unsigned long long)in->peer_silent_ms);
  }
  free(fc);
}

static inline void ft_srv_answer(lw_conn *c, ft_conn *fc) {
  ft_server *s = fc->s;
  fc->answered = 1;
  lw_conn_read_stop(c);
  unsigned long n = 0;
  if (sscanf(fc->req, "GET %lu", &n) == 1) {
    if (n > FT_PAYLOAD_MAX)
      n = FT_PAYLOAD_MAX;
    if (n) {
      int r = lw_conn_write(c, s->payload, n, NULL, NULL);
      assert_true(r == 0 || r == 1 || r == LW_ECLOSING || r == LW_EALREADY);
    }
  } else if (sscanf(fc->req, "FILL %lu", &n) == 1 && n > 0 && n <= FT_PAYLOAD_MAX) {
    for (int i = 0; i < 100000; i++) {
      int r = lw_conn_write(c, s->payload, n, NULL, NULL);
      if (r < 0) {
        fc->rec.fill_result = r;
        return; /* LW_EQUEUEFULL: the library reset the connection itself */
      }
      fc->rec.fill_queued += n;
      size_t q = lw_conn_write_queue_size(c);
      if (q > fc->rec.fill_max_queue)
        fc->rec.fill_max_queue = q;
    }
  }
  int r = lw_close(c, 0);
  assert_true(r == 0 || r == LW_EALREADY);
}

static inline void ft_srv_read(lw_conn *c, long nread, const char *buf) {
  ft_conn *fc = lw_conn_get_data(c);
  if (nread == LW_EOF || fc->answered)
    return;
  for (long i = 0; i < nread; i++) {
    if (buf[i] == '\n') {
      fc->req[fc->reqlen] = 0;
      ft_srv_answer(c, fc);
      return;
    }
    if (fc->reqlen == FT_REQ_MAX) {
      /* A request line without end: refuse it. The peer may go on sending; the
       * lingering close discards that, up to linger_discard_max. */
      fc->answered = 1;
      lw_conn_read_stop(c);
      lw_close(c, 0);
      return;
    }
    fc->req[fc->reqlen++] = buf[i];
  }
}

static inline void ft_srv_accept(lw_listener *l, lw_conn *c, int status) {
  ft_server *s = lw_listener_get_data(l);
  if (status < 0) {
    s->accept_errors++; /* EMFILE shed */
    return;
  }
  ft_conn *fc = calloc(1, sizeof(*fc));
  assert_non_null(fc);
  fc->s = s;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getpeername(lw_conn_fd(c), (struct sockaddr *)&ss, &sl) == 0)
    fc->peer_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
  s->accepts++;
  s->open++;
  lw_conn_set_data(c, fc);
  lw_conn_on_close(c, ft_srv_closed);
  if (s->banner)
    lw_conn_write(c, "HI\n", 3, NULL, NULL);
  assert_int_equal(lw_conn_read_start(c, ft_srv_read), 0);
}

static inline void ft_server_start(ft_server *s, const char *host) {
  s->payload = malloc(FT_PAYLOAD_MAX);
  assert_non_null(s->payload);
  for (size_t i = 0; i < FT_PAYLOAD_MAX; i++)
    s->payload[i] = (char)(i % 251);
  assert_int_equal(lw_loop_new(&s->loop, NULL), 0);
  lwt_check_backend(s->loop);
  assert_int_equal(lw_listener_new(s->loop, host ? host : "127.0.0.1", 0,
                                   s->backlog ? s->backlog : 512, &s->opts, ft_srv_accept,
                                   &s->listener),
                   0);
  lw_listener_set_data(s->listener, s);
  s->port = lw_listener_port(s->listener);
  assert_true(s->port > 0);
}

/* Closes the listener, runs the loop dry (bounded), frees it: no handle may be left. */
static inline void ft_server_stop(ft_server *s) {
  lw_listener_close(s->listener);
  uint64_t end = lwt_now_ms() + 10000;
  while (s->open > 0 && lwt_now_ms() < end)
    lw_loop_run(s->loop, LW_RUN_ONCE);
  assert_int_equal(s->open, 0);
  assert_int_equal(lw_loop_run(s->loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(s->loop), 0);
  free(s->payload);
}

/* The newest record for a peer port: ephemeral ports are reused within one run (a
 * port whose connection ended, even in TIME_WAIT on loopback with tcp_tw_reuse), and
 * the older connection's record comes first, as it ended before the newer began. */
static inline const ft_rec *ft_find(const ft_server *s, uint16_t port) {
  for (int i = s->nrec - 1; i >= 0; i--)
    if (s->recs[i].peer_port == port)
      return &s->recs[i];
  return NULL;
}

static inline void ft_noop(lw_timer *t) { (void)t; }

/* Runs the server's loop until pred(arg) or timeout_ms; returns pred's last value. */
static inline int ft_run_until(ft_server *s, int (*pred)(void *), void *arg, int timeout_ms) {
  uint64_t end = lwt_now_ms() + (uint64_t)timeout_ms;
  lw_timer *tick;
  assert_int_equal(lw_timer_new(s->loop, &tick), 0);
  lw_timer_start(tick, ft_noop, 5, 5);
  int ok;
  while (!(ok = pred(arg)) && lwt_now_ms() < end)
    lw_loop_run(s->loop, LW_RUN_ONCE);
  lw_timer_free(tick);
  return ok;
}

/* ================================ peers ================================ */
typedef enum {
  FT_GOOD = 0,    /* request, read everything, clean EOF, close */
  FT_GOOD_HALF,   /* request, shutdown(SHUT_WR), read everything, clean EOF */
  FT_NEVER_READ,  /* (a) */
  FT_NEVER_CLOSE, /* (b) reads whatever comes, never sends FIN */
  FT_RST,         /* (c) SO_LINGER{1,0} + close */
  FT_HALF_CLOSE,  /* (d) shutdown(SHUT_WR), then read to the end */
  FT_SLOW_READ,   /* (e) one byte per second */
  FT_FLOOD,       /* (f) sends junk as fast as it can, reads nothing */
  FT_VANISH,      /* (g) silent from the phase on; the test drops its packets */
  FT_KILL,        /* (h) a child process, SIGKILLed at the phase */
  FT__NBEHAVIOUR
} ft_behaviour;

typedef enum { FT_IDLE = 0, FT_MID_REQUEST, FT_MID_RESPONSE, FT_LINGER, FT__NPHASE } ft_phase;

static const char *const ft_behaviour_names[FT__NBEHAVIOUR] = {
    "good",       "good-half", "never-read", "never-close", "rst-mid",
    "half-close", "slow-read", "flood",      "vanish",      "sigkill"};
static const char *const ft_phase_names[FT__NPHASE] = {"idle", "mid-request", "mid-response",
                                                       "linger"};

typedef struct ft_peer {
  /* what to do */
  const char *host; /* default 127.0.0.1 */
  int port;
  int nsfd; /* > 0: setns() into it first (netns tests) */
  ft_behaviour behaviour;
  ft_phase phase;
  size_t resp;          /* response size asked for (GET) */
  const char *request;  /* overrides the request line ("FILL 65536\n") */
  int request_delay_ms; /* wait this long after connect before the request */
  int rcvbuf;
  int max_ms; /* whole life bound (default 12000) */
  /* what happened */
  uint16_t lport;
  uint64_t t_phase; /* lwt_now_ms() when the phase was reached */
  atomic_int phase_reached;
  size_t received;
  int pattern_ok;
  int eof;     /* clean EOF seen */
  int end_err; /* errno of the first error seen (ECONNRESET...), 0 none */
  atomic_int stop;
  atomic_int done;
  pthread_t thread;
  pid_t kpid; /* FT_KILL: the preforked child (ft_kill_prefork) */
  int kcmd, kreply;
} ft_peer;

static inline int ft_expired(ft_peer *p, uint64_t end) {
  return atomic_load(&p->stop) || lwt_now_ms() >= end;
}

/* Reads until `want` more bytes (0: until EOF/error), EOF, error, stop or end. */
static inline void ft_read(ft_peer *p, int fd, size_t want, uint64_t end) {
  char buf[65536];
  size_t goal = want ? p->received + want : SIZE_MAX;
  while (p->received < goal && !ft_expired(p, end)) {
    size_t n = sizeof(buf);
    if (goal - p->received < n)
      n = goal - p->received;
    ssize_t r = recv(fd, buf, n, 0);
    if (r == 0) {
      p->eof = 1;
      return;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        continue;
      if (!p->end_err)
        p->end_err = errno;
      return;
    }
    for (ssize_t i = 0; i < r; i++)
      if ((unsigned char)buf[i] != (p->received + (size_t)i) % 251)
        p->pattern_ok = 0;
    p->received += (size_t)r;
  }
}

static inline void ft_send_all(ft_peer *p, int fd, const char *b, size_t n) {
  size_t off = 0;
  uint64_t end = lwt_now_ms() + 2000;
  while (off < n && lwt_now_ms() < end) {
    ssize_t w = send(fd, b + off, n - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR)
        continue;
      if (!p->end_err)
        p->end_err = errno;
      return;
    }
    off += (size_t)w;
  }
}

static inline void ft_wait(ft_peer *p, uint64_t end) {
  while (!ft_expired(p, end))
    ft_msleep(10);
}

static inline int ft_connect(ft_peer *p) {
  const char *host = p->host ? p->host : "127.0.0.1";
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (p->rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &p->rcvbuf, sizeof(p->rcvbuf));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    p->end_err = errno;
    close(fd);
    return -1;
  }
  struct sockaddr_in me;
  socklen_t ml = sizeof(me);
  getsockname(fd, (struct sockaddr *)&me, &ml);
  p->lport = ntohs(me.sin_port);
  /* short timeouts: every blocking call comes back to check stop and the end */
  struct timeval tv = {0, 20 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

/* Up to the phase. Returns with the phase reached (t_phase set by the caller). */
static inline void ft_prelude(ft_peer *p, int fd, uint64_t end) {
  char req[128];
  if (p->request_delay_ms)
    ft_msleep(p->request_delay_ms);
  switch (p->phase) {
  case FT_IDLE:
    return;
  case FT_MID_REQUEST:
    ft_send_all(p, fd, "GET 1", 5); /* no end of line */
    return;
  case FT_MID_RESPONSE:
  case FT_LINGER: {
    if (p->request)
      snprintf(req, sizeof(req), "%s", p->request);
    else
      snprintf(req, sizeof(req), "GET %zu\n", p->resp);
    ft_send_all(p, fd, req, strlen(req));
    if (p->behaviour == FT_HALF_CLOSE && p->phase == FT_MID_RESPONSE)
      shutdown(fd, SHUT_WR); /* right after the request */
    if (p->behaviour == FT_NEVER_READ ||
        (p->behaviour == FT_SLOW_READ && p->phase == FT_LINGER))
      return;
    size_t want = p->phase == FT_LINGER ? p->resp : (p->resp < 65536 ? p->resp : 65536);
    ft_read(p, fd, want, end);
    return;
  }
  default:
    return;
  }
}

static inline void ft_misbehave(ft_peer *p, int fd, uint64_t end) {
  switch (p->behaviour) {
  case FT_NEVER_READ:
  case FT_VANISH:
    ft_wait(p, end);
    break;
  case FT_NEVER_CLOSE:
    while (!p->eof && !p->end_err && !ft_expired(p, end))
      ft_read(p, fd, 0, end);
    ft_wait(p, end);
    break;
  case FT_RST: {
    if (p->phase <= FT_MID_REQUEST)
      ft_msleep(100); /* let the server accept it first (getpeername fails after RST) */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    break; /* the caller's close() sends the RST */
  }
  case FT_HALF_CLOSE:
    shutdown(fd, SHUT_WR);
    ft_read(p, fd, 0, end);
    break;
  case FT_SLOW_READ: {
    char b;
    while (!ft_expired(p, end)) {
      ssize_t r = recv(fd, &b, 1, 0);
      if (r == 0) {
        p->eof = 1;
        break;
      }
      if (r < 0 && errno != EAGAIN && errno != EINTR) {
        p->end_err = errno;
        break;
      }
      if (r == 1) {
        p->received++;
        for (int i = 0; i < 100 && !ft_expired(p, end); i++)
          ft_msleep(10); /* one byte per second */
      }
    }
    break;
  }
  case FT_FLOOD: {
    static const char junk[16384] = {0}; /* no '\n' in it */
    while (!ft_expired(p, end)) {
      ssize_t w = send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        p->end_err = errno;
        break;
      }
    }
    break;
  }
  default:
    break;
  }
}

static inline void ft_mark_phase(ft_peer *p) {
  p->t_phase = lwt_now_ms();
  atomic_store(&p->phase_reached, 1);
}

/* (h): the peer is a child process; SIGKILL at the phase. The kernel then closes its
 * socket: FIN if everything was read, RST if input was left unread.
 * The child is forked BEFORE the server exists (call this before ft_server_start): a
 * child forked later would inherit the server's sockets, keep their open files alive
 * after the server closes them, and so keep their epoll registrations (an epoll
 * registration belongs to the open file, not to the fd number). It waits for the port
 * on a pipe, does its part, reports its local port, and waits to be killed. */
static inline void ft_kill_prefork(ft_peer *p) {
  int cmd[2], rep[2];
  assert_int_equal(pipe(cmd), 0);
  assert_int_equal(pipe(rep), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(30); /* bounded even if nobody kills it */
    close(cmd[1]);
    close(rep[0]);
    int port = 0;
    if (read(cmd[0], &port, sizeof(port)) != (ssize_t)sizeof(port))
      _exit(0);
    p->port = port;
    p->pattern_ok = 1;
    int fd = ft_connect(p);
    if (fd >= 0)
      ft_prelude(p, fd, lwt_now_ms() + 5000);
    uint16_t lport = p->lport;
    if (write(rep[1], &lport, sizeof(lport)) != (ssize_t)sizeof(lport))
      _exit(1);
    for (;;)
      pause();
  }
  close(cmd[0]);
  close(rep[1]);
  p->kpid = pid;
  p->kcmd = cmd[1];
  p->kreply = rep[0];
}

static inline void ft_run_killed(ft_peer *p, uint64_t end) {
  if (!p->kpid)
    return;
  int port = p->port;
  if (write(p->kcmd, &port, sizeof(port)) == (ssize_t)sizeof(port)) {
    struct pollfd pf = {.fd = p->kreply, .events = POLLIN};
    uint16_t lport = 0;
    int left = (int)(end > lwt_now_ms() ? end - lwt_now_ms() : 0);
    if (poll(&pf, 1, left) == 1 &&
        read(p->kreply, &lport, sizeof(lport)) == (ssize_t)sizeof(lport))
      p->lport = lport;
  }
  ft_mark_phase(p);
  kill(p->kpid, SIGKILL);
  int st;
  waitpid(p->kpid, &st, 0);
  close(p->kcmd);
  close(p->kreply);
  p->kpid = 0;
}

static inline void *ft_peer_main(void *arg) {
  ft_peer *p = arg;
  uint64_t end = lwt_now_ms() + (uint64_t)(p->max_ms ? p->max_ms : 12000);
  p->pattern_ok = 1;
  if (p->nsfd > 0 && setns(p->nsfd, CLONE_NEWNET) < 0) {
    p->end_err = errno;
    atomic_store(&p->done, 1);
    return NULL;
  }
  if (p->behaviour == FT_KILL) {
    ft_run_killed(p, end);
    atomic_store(&p->done, 1);
    return NULL;
  }
  int fd = ft_connect(p);
  if (fd < 0) {
    atomic_store(&p->done, 1);
    return NULL;
  }
  if (p->behaviour == FT_GOOD || p->behaviour == FT_GOOD_HALF) {
    char req[64];
    snprintf(req, sizeof(req), "GET %zu\n", p->resp);
    if (p->request_delay_ms)
      ft_msleep(p->request_delay_ms);
    ft_send_all(p, fd, req, strlen(req));
    if (p->behaviour == FT_GOOD_HALF)
      shutdown(fd, SHUT_WR);
    ft_mark_phase(p);
    ft_read(p, fd, 0, end);
  } else {
    ft_prelude(p, fd, end);
    ft_mark_phase(p);
    ft_misbehave(p, fd, end);
  }
  close(fd);
  atomic_store(&p->done, 1);
  return NULL;
}

static inline void ft_peer_start(ft_peer *p) {
  atomic_store(&p->stop, 0);
  atomic_store(&p->done, 0);
  atomic_store(&p->phase_reached, 0);
  assert_int_equal(pthread_create(&p->thread, NULL, ft_peer_main, p), 0);
}

static inline void ft_peer_join(ft_peer *p) {
  atomic_store(&p->stop, 1);
  pthread_join(p->thread, NULL);
}

#endif
