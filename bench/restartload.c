/*
 * restartload - the load client of the "restart" workload (bench/README.md): a load of
 * new connections AND keep-alive requests that runs without pause while the server is
 * restarted, and counts, per request, what a restart cost the clients.
 *
 *   restartload --port P --mode respond|http [--path /f] [--bytes N] [--new C] [--ka K]
 *               [--duration S] [--grace S] [--timeout-ms T] [--backoff-ms B]
 *   restartload --port P --mode kaidle --conns N [--path /f] [--bytes N]
 *               [--signal-pid PID] [--signal TERM] [--idle-ms I] [--src-addrs K]
 *
 * load (respond, http): C "new" slots, each a new connection per request (respond:
 * "GET\n", response N bytes then the server's close; http: HTTP/1.1 with "Connection:
 * close") and, http only, K "keep-alive" slots that send the next request on the same
 * connection as soon as a response is complete, and reconnect only after the server's
 * "Connection: close". It runs until SIGUSR1/SIGINT/SIGTERM or --duration (a bound),
 * then starts nothing new and waits at most --grace s for the requests in flight.
 * Every request ends as exactly one of:
 *   ok          the whole response, every byte checked (byte i == i % 251)
 *   connect     the connect failed (ECONNREFUSED, ...): the slot waits --backoff-ms
 *   noresp      the connection ended (EOF or RST) before the whole response
 *   bad         a wrong status or wrong bytes
 *   timeout     no complete response within --timeout-ms, or still in flight at the end
 * and the connection counts a reset if it ever saw one (ECONNRESET/EPIPE), even after a
 * complete response. noresp_retryable: the noresp on a reused keep-alive connection
 * with no byte of response (RFC 9112 9.3.1: the case a client may retry by itself).
 * max_gap_ms: the longest time with no complete response at all (the outage).
 *
 * kaidle: N connections, one HTTP/1.1 keep-alive request each (response checked), then
 * silence; --idle-ms later the server (--signal-pid) gets --signal: the time until
 * every connection has ended at the client (we answer the server's FIN with ours), how
 * (EOF or reset), and until the server process exits (pidfd).
 *
 * One thread, one epoll set; 127.0.0.0/8 only. Output: one line of key=value pairs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { M_RESPOND, M_HTTP, M_KAIDLE };
enum { S_WAIT, S_CONNECTING, S_SENDING, S_READING, S_TAIL, S_IDLE, S_ENDED };

typedef struct slot {
  int fd;
  int state;
  int ka;           /* keep-alive slot */
  int reused;       /* this connection already carried a complete response */
  int reset_seen;   /* the connection saw an RST (counted once) */
  int close_after;  /* the response in progress ends the connection */
  int hdr_done;     /* http: the head is parsed */
  uint64_t clen;    /* http: Content-Length; respond: --bytes */
  uint64_t got;     /* body bytes received and checked */
  size_t sent;      /* request bytes sent */
  size_t hlen;      /* head bytes collected */
  uint64_t t_start; /* when the request started (connect or send) */
  uint64_t wake_at; /* S_WAIT: retry after this */
  char head[2048];
} slot;

static struct {
  int port, mode, nnew, nka, conns, src_addrs, signal_pid, sig;
  const char *path;
  uint64_t bytes;
  double duration, grace;
  int timeout_ms, backoff_ms, idle_ms;
} opt = {.mode = M_HTTP,
         .nnew = 4,
         .nka = 4,
         .conns = 1000,
         .src_addrs = 1,
         .sig = SIGTERM,
         .path = "/f",
         .bytes = 512,
         .duration = 60,
         .grace = 5,
         .timeout_ms = 10000,
         .backoff_ms = 10,
         .idle_ms = 0};

static struct {
  uint64_t requests, ok, connect_fail, refused, noresp, noresp_retryable, bad, timeout;
  uint64_t resets, conns_opened, ka_requests, max_gap_ns, tail_timeout, max_lat_ns;
  uint64_t gap_at_ns, lat_at_ns; /* when the longest gap ended / the slowest response came */
} st;

static int epfd;
static slot *slots;
static int nslots;
static struct sockaddr_in dst;
static char rbuf[256 * 1024];
static char *pat;
static volatile sig_atomic_t stop_flag;
static uint64_t last_ok_ns, t_begin;
static char req_new[256], req_ka[256];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "restartload: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void on_stop(int sig) {
  (void)sig;
  stop_flag = 1;
}

static void ep_set(int op, slot *s, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = s};
  if (epoll_ctl(epfd, op, s->fd, &e) < 0)
    die("epoll_ctl");
}

/* Ends the connection (closing removes it from the epoll set); the slot waits. */
static void drop(slot *s, uint64_t wait_ns) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  s->state = S_WAIT;
  s->wake_at = now_ns() + wait_ns;
}

/* The request in flight ended as `outcome` (a counter), the connection with it. */
static void fail(slot *s, uint64_t *outcome) {
  (*outcome)++;
  if (outcome == &st.noresp && s->reused && s->got == 0 && s->hlen == 0)
    st.noresp_retryable++;
  drop(s, (uint64_t)opt.backoff_ms * 1000000u); /* as after a failed connect */
}

static void note_reset(slot *s) {
  if (!s->reset_seen) {
    s->reset_seen = 1;
    st.resets++;
  }
}

static const char *request_of(slot *s) {
  if (opt.mode == M_RESPOND)
    return "GET\n";
  return s->ka ? req_ka : req_new;
}

static void begin_request(slot *s, uint64_t now) {
  st.requests++;
  if (s->fd >= 0 && s->reused)
    st.ka_requests++;
  s->t_start = now;
  s->sent = 0;
  s->got = 0;
  s->hlen = 0;
  s->hdr_done = 0;
  s->close_after = !s->ka;
  s->clen = opt.bytes;
}

static void send_request(slot *s) {
  const char *req = request_of(s);
  size_t len = strlen(req);
  while (s->sent < len) {
    ssize_t w = send(s->fd, req + s->sent, len - s->sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        s->state = S_SENDING;
        ep_set(EPOLL_CTL_MOD, s, EPOLLOUT);
        return;
      }
      if (errno == ECONNRESET || errno == EPIPE)
        note_reset(s);
      fail(s, &st.noresp);
      return;
    }
    s->sent += (size_t)w;
  }
  s->state = S_READING;
  ep_set(EPOLL_CTL_MOD, s, EPOLLIN);
}

static int start_conn(slot *s, long idx) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  if (opt.src_addrs > 1) {
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(idx % opt.src_addrs));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
      die("bind");
  }
  s->fd = fd;
  s->reused = 0;
  s->reset_seen = 0;
  if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
    if (errno == ECONNREFUSED)
      st.refused++;
    return -1;
  }
  st.conns_opened++;
  s->state = S_CONNECTING;
  ep_set(EPOLL_CTL_ADD, s, EPOLLOUT);
  return 0;
}

/* A slot starts its next request: on its connection (keep-alive) or a new one. */
static void next_request(slot *s, uint64_t now) {
  begin_request(s, now);
  if (s->fd >= 0) {
    send_request(s);
    return;
  }
  if (start_conn(s, (long)(s - slots)) < 0) {
    st.connect_fail++;
    drop(s, (uint64_t)opt.backoff_ms * 1000000u);
  }
}

/* A response is complete: count it; the slot goes on (or ends the connection). */
static void complete(slot *s, uint64_t now) {
  st.ok++;
  if (last_ok_ns && now - last_ok_ns > st.max_gap_ns) {
    st.max_gap_ns = now - last_ok_ns;
    st.gap_at_ns = now - t_begin;
  }
  if (now - s->t_start > st.max_lat_ns) {
    st.max_lat_ns = now - s->t_start;
    st.lat_at_ns = now - t_begin;
  }
  last_ok_ns = now;
  s->reused = 1;
  if (s->close_after) {
    /* Read on to the server's EOF (a reset there still counts as a reset). */
    s->state = S_TAIL;
    return;
  }
  if (stop_flag || opt.mode == M_KAIDLE) {
    if (opt.mode == M_KAIDLE) {
      s->state = S_IDLE;
      return;
    }
    drop(s, 0);
    s->state = S_ENDED;
    return;
  }
  next_request(s, now);
}

/* http: the head in s->head[0..s->hlen) ends at `end`; 0 ok, -1 bad. */
static int parse_head(slot *s, const char *end) {
  (void)end;
  if (strncmp(s->head, "HTTP/1.1 200 ", 13) != 0 && strncmp(s->head, "HTTP/1.0 200 ", 13) != 0)
    return -1;
  int http10 = s->head[7] == '0';
  s->close_after = !s->ka || http10;
  int have_len = 0;
  for (char *p = strstr(s->head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
    char *h = p + 2;
    if (strncasecmp(h, "Content-Length:", 15) == 0) {
      s->clen = strtoull(h + 15, NULL, 10);
      have_len = 1;
    } else if (strncasecmp(h, "Connection:", 11) == 0) {
      char *v = h + 11;
      while (*v == ' ')
        v++;
      if (strncasecmp(v, "close", 5) == 0)
        s->close_after = 1;
      else if (strncasecmp(v, "keep-alive", 10) == 0 && s->ka)
        s->close_after = 0;
    }
  }
  return have_len && s->clen == opt.bytes ? 0 : -1;
}

static void do_read(slot *s, uint64_t now) {
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t n = recv(s->fd, rbuf, sizeof(rbuf), 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return;
      if (errno == ECONNRESET)
        note_reset(s);
      if (s->state == S_TAIL || s->state == S_IDLE) {
        drop(s, 0);
        return;
      }
      fail(s, &st.noresp);
      return;
    }
    if (n == 0) {
      if (s->state == S_TAIL || s->state == S_IDLE) {
        drop(s, 0); /* the server's close after the response: our FIN answers it */
        return;
      }
      fail(s, &st.noresp);
      return;
    }
    if (s->state != S_READING) {
      fail(s, &st.bad); /* bytes nobody asked for */
      return;
    }
    const char *p = rbuf;
    size_t len = (size_t)n;
    if (opt.mode != M_RESPOND && !s->hdr_done) {
      size_t room = sizeof(s->head) - 1 - s->hlen;
      size_t take = len < room ? len : room;
      memcpy(s->head + s->hlen, p, take);
      size_t old = s->hlen;
      s->hlen += take;
      s->head[s->hlen] = 0;
      char *end = strstr(s->head, "\r\n\r\n");
      if (!end) {
        if (s->hlen == sizeof(s->head) - 1) {
          fail(s, &st.bad);
          return;
        }
        continue;
      }
      size_t hdr_total = (size_t)(end - s->head) + 4;
      if (parse_head(s, end) < 0) {
        fail(s, &st.bad);
        return;
      }
      s->hdr_done = 1;
      p += hdr_total - old;
      len -= hdr_total - old;
    }
    if (opt.mode == M_RESPOND)
      s->hlen = 1; /* a byte of response arrived */
    if (s->got + len > s->clen || memcmp(p, pat + s->got % 251, len) != 0) {
      fail(s, &st.bad);
      return;
    }
    s->got += len;
    if (s->got == s->clen) {
      complete(s, now);
      if (s->state != S_TAIL)
        return;
    }
  }
}

static void handle(slot *s, uint32_t ev, uint64_t now) {
  if (s->state == S_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      st.connect_fail++;
      if (err == ECONNREFUSED)
        st.refused++;
      drop(s, (uint64_t)opt.backoff_ms * 1000000u);
      return;
    }
    send_request(s);
  } else if (s->state == S_SENDING) {
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      send_request(s);
  } else if (s->state == S_READING || s->state == S_TAIL || s->state == S_IDLE) {
    do_read(s, now);
  }
}

static void raise_nofile(long want) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((long)rl.rlim_cur >= want)
    return;
  rl.rlim_cur = (rlim_t)want;
  if ((long)rl.rlim_max < want)
    rl.rlim_max = (rlim_t)want;
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void usage(void) {
  fprintf(stderr, "usage: restartload --port P --mode respond|http|kaidle [--path /f] "
                  "[--bytes N] [--new C] [--ka K] [--conns N] [--duration S] [--grace S] "
                  "[--timeout-ms T] [--backoff-ms B] [--signal-pid PID] [--signal TERM|INT] "
                  "[--idle-ms I] [--src-addrs K]\n");
  exit(2);
}

static int run_load(void) {
  struct epoll_event evs[256];
  uint64_t t0 = t_begin = now_ns(), end = t0 + (uint64_t)(opt.duration * 1e9), stop_at = 0;
  uint64_t timeout_ns = (uint64_t)opt.timeout_ms * 1000000u;
  for (int i = 0; i < nslots; i++)
    next_request(&slots[i], t0);
  for (;;) {
    uint64_t now = now_ns();
    if (!stop_at && (stop_flag || now >= end)) {
      stop_flag = 1;
      stop_at = now;
    }
    int busy = 0;
    for (int i = 0; i < nslots; i++)
      if (slots[i].state != S_WAIT && slots[i].state != S_ENDED)
        busy++;
    if (stop_at && (busy == 0 || now >= stop_at + (uint64_t)(opt.grace * 1e9)))
      break;
    /* Retries due (after a failed connect or request: --backoff-ms), requests too
     * slow; the slots are few, a scan per round is cheap. */
    int waiting = 0;
    for (int i = 0; i < nslots; i++) {
      slot *s = &slots[i];
      if (s->state == S_WAIT && stop_flag)
        s->state = S_ENDED;
      else if (s->state == S_WAIT && now >= s->wake_at)
        next_request(s, now);
      else if ((s->state == S_CONNECTING || s->state == S_SENDING || s->state == S_READING) &&
               now - s->t_start > timeout_ns)
        fail(s, &st.timeout);
      else if (s->state == S_TAIL && now - s->t_start > timeout_ns) {
        st.tail_timeout++; /* answered, but the server never closed */
        drop(s, 0);
      }
      waiting += s->state == S_WAIT;
    }
    int n = epoll_wait(epfd, evs, 256, waiting ? 1 : 5);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    now = now_ns();
    for (int i = 0; i < n; i++)
      handle(evs[i].data.ptr, evs[i].events, now);
  }
  uint64_t t1 = now_ns();
  for (int i = 0; i < nslots; i++) {
    slot *s = &slots[i];
    if (s->state == S_CONNECTING || s->state == S_SENDING || s->state == S_READING)
      fail(s, &st.timeout); /* still in flight at the end of the grace */
    if (s->fd >= 0)
      drop(s, 0);
  }
  if (last_ok_ns && stop_at > last_ok_ns && stop_at - last_ok_ns > st.max_gap_ns)
    st.max_gap_ns = stop_at - last_ok_ns; /* an outage still going on at the end */
  uint64_t failed = st.connect_fail + st.noresp + st.bad + st.timeout;
  double el = (double)(t1 - t0) / 1e9;
  printf("mode=%s requests=%llu ok=%llu failed=%llu connect_fail=%llu refused=%llu "
         "noresp=%llu noresp_retryable=%llu bad=%llu timeout=%llu resets=%llu conns=%llu "
         "ka_requests=%llu tail_timeout=%llu max_gap_ms=%.1f gap_at_s=%.3f max_latency_ms=%.1f "
         "latency_at_s=%.3f elapsed_s=%.3f rate=%.1f\n",
         opt.mode == M_RESPOND ? "respond" : "http", (unsigned long long)st.requests,
         (unsigned long long)st.ok, (unsigned long long)failed,
         (unsigned long long)st.connect_fail, (unsigned long long)st.refused,
         (unsigned long long)st.noresp, (unsigned long long)st.noresp_retryable,
         (unsigned long long)st.bad, (unsigned long long)st.timeout,
         (unsigned long long)st.resets, (unsigned long long)st.conns_opened,
         (unsigned long long)st.ka_requests, (unsigned long long)st.tail_timeout,
         (double)st.max_gap_ns / 1e6, (double)st.gap_at_ns / 1e9, (double)st.max_lat_ns / 1e6,
         (double)st.lat_at_ns / 1e9, el, (double)st.ok / el);
  /* Accounting: every request ended as exactly one outcome. */
  return st.requests == st.ok + failed ? 0 : 3;
}

static int run_kaidle(void) {
  struct epoll_event evs[512];
  uint64_t t0 = now_ns(), settle_end = t0 + 30000000000ull;
  int next = 0, inflight = 0;
  /* Open them 512 at a time (the listen backlog); each one request, then idle. */
  for (;;) {
    uint64_t now = now_ns();
    while (next < nslots && inflight < 512) {
      next_request(&slots[next++], now);
      inflight++;
    }
    int idle = 0, gone = 0;
    for (int i = 0; i < next; i++) {
      idle += slots[i].state == S_IDLE;
      gone += slots[i].state == S_WAIT;
    }
    inflight = next - idle - gone;
    if ((next == nslots && inflight == 0) || now >= settle_end)
      break;
    int n = epoll_wait(epfd, evs, 512, 20);
    for (int i = 0; i < n; i++)
      handle(evs[i].data.ptr, evs[i].events, now_ns());
  }
  long est = 0;
  for (int i = 0; i < nslots; i++)
    est += slots[i].state == S_IDLE;
  double setup_s = (double)(now_ns() - t0) / 1e9;
  printf("mode=kaidle conns=%ld ok=%llu failed=%llu setup_s=%.3f", est,
         (unsigned long long)st.ok,
         (unsigned long long)(st.connect_fail + st.noresp + st.bad + st.timeout), setup_s);
  if (opt.signal_pid > 0) {
    if (opt.idle_ms)
      usleep((useconds_t)opt.idle_ms * 1000);
    int pidfd = (int)syscall(SYS_pidfd_open, opt.signal_pid, 0);
    uint64_t s0 = now_ns(), end = s0 + (uint64_t)(opt.grace * 1e9);
    kill(opt.signal_pid, opt.sig);
    uint64_t last_end = 0, exit_at = 0, resets0 = st.resets;
    long ended = 0;
    while (now_ns() < end && (ended < est || (pidfd >= 0 && !exit_at))) {
      if (pidfd >= 0 && !exit_at) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
          exit_at = now_ns();
      }
      int n = epoll_wait(epfd, evs, 512, 5);
      for (int i = 0; i < n; i++) {
        slot *s = evs[i].data.ptr;
        if (s->state != S_IDLE)
          continue;
        do_read(s, now_ns());
        if (s->state != S_IDLE) {
          ended++;
          last_end = now_ns();
        }
      }
    }
    printf(" ended=%ld resets=%llu drain_ms=%.1f server_exit_ms=%.1f", ended,
           (unsigned long long)(st.resets - resets0),
           last_end ? (double)(last_end - s0) / 1e6 : -1.0,
           exit_at ? (double)(exit_at - s0) / 1e6 : -1.0);
    if (pidfd >= 0)
      close(pidfd);
  }
  printf("\n");
  return 0;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc)
      usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--port"))
      opt.port = atoi(v);
    else if (!strcmp(a, "--mode"))
      opt.mode = !strcmp(v, "respond")  ? M_RESPOND
                 : !strcmp(v, "http")   ? M_HTTP
                 : !strcmp(v, "kaidle") ? M_KAIDLE
                                        : (usage(), 0);
    else if (!strcmp(a, "--path"))
      opt.path = v;
    else if (!strcmp(a, "--bytes"))
      opt.bytes = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--new"))
      opt.nnew = atoi(v);
    else if (!strcmp(a, "--ka"))
      opt.nka = atoi(v);
    else if (!strcmp(a, "--conns"))
      opt.conns = atoi(v);
    else if (!strcmp(a, "--duration"))
      opt.duration = atof(v);
    else if (!strcmp(a, "--grace"))
      opt.grace = atof(v);
    else if (!strcmp(a, "--timeout-ms"))
      opt.timeout_ms = atoi(v);
    else if (!strcmp(a, "--backoff-ms"))
      opt.backoff_ms = atoi(v);
    else if (!strcmp(a, "--idle-ms"))
      opt.idle_ms = atoi(v);
    else if (!strcmp(a, "--signal-pid"))
      opt.signal_pid = atoi(v);
    else if (!strcmp(a, "--signal"))
      opt.sig = !strcmp(v, "TERM") ? SIGTERM : !strcmp(v, "INT") ? SIGINT : (usage(), 0);
    else if (!strcmp(a, "--src-addrs"))
      opt.src_addrs = atoi(v);
    else
      usage();
  }
  if (opt.port <= 0 || opt.port > 65535 || opt.duration <= 0 || opt.duration > 600 ||
      opt.grace < 0 || opt.grace > 120 || opt.bytes == 0 || opt.bytes > (64u << 20) ||
      opt.src_addrs < 1 || opt.src_addrs > 250 || opt.nnew < 0 || opt.nka < 0 ||
      opt.nnew + opt.nka < 1 || opt.nnew + opt.nka > 4096 || opt.conns < 1 ||
      opt.conns > 200000 || (opt.mode == M_RESPOND && opt.nka))
    usage();
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)opt.port);
  dst.sin_addr.s_addr = htonl(0x7f000001u); /* loopback only */
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: epoll_wait returns */
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  snprintf(req_new, sizeof(req_new),
           "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", opt.path);
  snprintf(req_ka, sizeof(req_ka), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", opt.path);
  size_t patlen = sizeof(rbuf) + 251;
  pat = malloc(patlen);
  if (!pat)
    die("malloc");
  for (size_t i = 0; i < patlen; i++)
    pat[i] = (char)(i % 251);
  if (opt.mode == M_KAIDLE) {
    nslots = opt.conns;
    raise_nofile(nslots + 64);
  } else {
    nslots = opt.nnew + opt.nka;
  }
  slots = calloc((size_t)nslots, sizeof(slot));
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!slots || epfd < 0)
    die("setup");
  for (int i = 0; i < nslots; i++) {
    slots[i].fd = -1;
    slots[i].ka = opt.mode == M_KAIDLE || i >= opt.nnew;
  }
  return opt.mode == M_KAIDLE ? run_kaidle() : run_load();
}
