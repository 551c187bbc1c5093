/*
 * loadgen - the load generator of bench/ (see bench/README.md).
 *
 * One thread, one epoll set, many connections; bounded in count (--count) AND in time
 * (--duration, then at most --grace seconds for the connections still in flight); it
 * always stops by itself. Traffic goes to 127.0.0.0/8 only (refused otherwise).
 *
 * Modes:
 *   respond  connect, send "GET\n" (+ --extra unread bytes), read the --bytes response
 *            checking byte i == i % 251, record how it ended (EOF or reset), close.
 *   http     the same over HTTP/1.0 ("GET /f HTTP/1.0"), for nginx: headers skipped, body
 *            checked with the same pattern.
 *   echo     --conc connections, each sends --msg bytes, waits for them back (checked),
 *            sends again; counts round trips for --duration seconds.
 *   idle     opens --conc connections that send nothing; measures the server's RSS
 *            growth (--server-pid); with --signal, then signals the server and times the
 *            drain: until every connection has ended and until the server process exits.
 *
 * --server-pid PID: the server's CPU time over the measured window is read with
 * clock_getcpuclockid() (nanosecond accounting, unlike /proc/PID/stat ticks).
 *
 * Output: one line of key=value pairs on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { M_RESPOND, M_HTTP, M_ECHO, M_IDLE };
enum { S_FREE, S_CONNECTING, S_SENDING, S_READING, S_OPEN, S_DONE };

typedef struct conn {
  int fd;
  int state;
  uint64_t got;   /* response body bytes received and checked */
  size_t sent;    /* request bytes sent */
  size_t hdr_len; /* http: header bytes seen so far */
  int hdr_done;
  uint64_t ready_at; /* read-delay: do not read before this time (ns) */
  char hdr[1024];
} conn;

static struct {
  const char *host;
  int port;
  int mode;
  long conc;
  long count;
  double duration, grace;
  uint64_t bytes;
  size_t extra;
  size_t msg;
  int src_addrs;
  int rcvbuf;
  int read_delay_ms;
  int server_pid;
  int signal_pid; /* default: server_pid (nginx: the master, while RSS is the worker's) */
  int sig;
  double settle_timeout;
} opt = {.host = "127.0.0.1",
         .port = 0,
         .mode = M_RESPOND,
         .conc = 64,
         .count = 0,
         .duration = 2,
         .grace = 5,
         .bytes = 64,
         .extra = 0,
         .msg = 64,
         .src_addrs = 1,
         .rcvbuf = 0,
         .read_delay_ms = 0,
         .server_pid = 0,
         .sig = 0,
         .settle_timeout = 20};

static struct {
  uint64_t started, ok, eof, reset, short_eof, bad, errors, connect_err;
  uint64_t bytes_ok, bytes_lost, roundtrips;
} st;

static int epfd;
static conn *conns;
static char *reqbuf;
static size_t reqlen;
static char *pat; /* pattern: pat[i] = i % 251, long enough for any read at any offset */
static char rbuf[256 * 1024];
static struct sockaddr_in dst;
static long active;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t server_cpu_ns(void) {
  if (!opt.server_pid)
    return 0;
  clockid_t clk;
  struct timespec ts;
  if (clock_getcpuclockid(opt.server_pid, &clk) != 0 || clock_gettime(clk, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t self_cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static long server_rss_kb(void) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", opt.server_pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long kb = -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static long server_nfds(void) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", opt.server_pid);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  long n = 0;
  while (readdir(d))
    n++;
  closedir(d);
  return n - 2;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void ep_set(int op, conn *c, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(epfd, op, c->fd, &e) < 0 && op != EPOLL_CTL_DEL)
    die("epoll_ctl");
}

static void conn_end(conn *c) {
  close(c->fd); /* closing removes it from the epoll set */
  c->fd = -1;
  c->state = S_FREE;
  active--;
}

/* Checks n response bytes at body offset c->got against the pattern. */
static int check(conn *c, const char *buf, size_t n) {
  if (memcmp(buf, pat + (c->got % 251), n) != 0)
    return -1;
  c->got += n;
  return 0;
}

static int start_conn(conn *c, long idx) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    st.connect_err++;
    return -1;
  }
  if (opt.rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt.rcvbuf, sizeof(opt.rcvbuf));
  if (opt.src_addrs > 1) {
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(idx % opt.src_addrs));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
      close(fd);
      st.connect_err++;
      return -1;
    }
  }
  if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
    close(fd);
    st.connect_err++;
    return -1;
  }
  memset(c, 0, offsetof(conn, hdr));
  c->fd = fd;
  c->state = S_CONNECTING;
  ep_set(EPOLL_CTL_ADD, c, EPOLLOUT);
  active++;
  st.started++;
  return 0;
}

static void send_request(conn *c) {
  while (c->sent < reqlen) {
    ssize_t w = send(c->fd, reqbuf + c->sent, reqlen - c->sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        ep_set(EPOLL_CTL_MOD, c, EPOLLOUT | EPOLLIN);
        c->state = S_SENDING;
        return;
      }
      /* The server reset or closed before taking all the extra bytes: that is
       * expected in the RST-loss workload; the read side tells what happened. */
      break;
    }
    c->sent += (size_t)w;
  }
  c->state = S_READING;
  ep_set(EPOLL_CTL_MOD, c, EPOLLIN);
}

static void finish(conn *c, int reset) {
  uint64_t want = opt.bytes;
  if (reset)
    st.reset++;
  else
    st.eof++;
  if (c->got >= want && !reset) {
    st.ok++;
  } else {
    if (!reset)
      st.short_eof++;
  }
  st.bytes_ok += c->got;
  if (c->got < want)
    st.bytes_lost += want - c->got;
  conn_end(c);
}

/* Reads response bytes; returns when the socket is empty or the connection ended. */
static void do_read(conn *c) {
  for (int rounds = 0; rounds < 64; rounds++) {
    ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return;
      finish(c, errno == ECONNRESET);
      return;
    }
    if (n == 0) {
      finish(c, 0);
      return;
    }
    const char *p = rbuf;
    size_t len = (size_t)n;
    if (opt.mode == M_HTTP && !c->hdr_done) {
      /* Collect the header (it is small) and find its end. */
      size_t take =
          len < sizeof(c->hdr) - 1 - c->hdr_len ? len : sizeof(c->hdr) - 1 - c->hdr_len;
      memcpy(c->hdr + c->hdr_len, p, take);
      size_t old = c->hdr_len;
      c->hdr_len += take;
      c->hdr[c->hdr_len] = 0;
      char *end = strstr(c->hdr, "\r\n\r\n");
      if (!end) {
        if (c->hdr_len >= sizeof(c->hdr) - 1) {
          st.bad++;
          finish(c, 0);
          return;
        }
        continue;
      }
      if (strncmp(c->hdr, "HTTP/1.1 200", 12) != 0 &&
          strncmp(c->hdr, "HTTP/1.0 200", 12) != 0) {
        st.bad++;
        finish(c, 0);
        return;
      }
      size_t hdr_total = (size_t)(end - c->hdr) + 4;
      c->hdr_done = 1;
      p += hdr_total - old;
      len -= hdr_total - old;
    }
    if (len && (c->got + len > opt.bytes || check(c, p, len) < 0)) {
      st.bad++;
      finish(c, 0);
      return;
    }
  }
}

/* ---- echo ---- */
static void echo_send(conn *c) {
  ssize_t w = send(c->fd, pat, opt.msg, MSG_NOSIGNAL);
  if (w != (ssize_t)opt.msg) {
    st.errors++;
    conn_end(c);
    return;
  }
  c->got = 0;
}

static void echo_read(conn *c, int go_on) {
  for (;;) {
    ssize_t n = recv(c->fd, rbuf, opt.msg - c->got, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return;
      st.errors++;
      conn_end(c);
      return;
    }
    if (n == 0) {
      st.errors++;
      conn_end(c);
      return;
    }
    if (memcmp(rbuf, pat + c->got, (size_t)n) != 0) {
      st.bad++;
      conn_end(c);
      return;
    }
    c->got += (uint64_t)n;
    if (c->got == opt.msg) {
      st.roundtrips++;
      if (go_on)
        echo_send(c);
      else
        c->state = S_DONE;
      return;
    }
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host 127.0.0.x] [--mode respond|http|echo|idle]\n"
          "  [--conc C] [--count N] [--duration S] [--grace S] [--bytes N] [--extra N]\n"
          "  [--msg N] [--src-addrs K] [--rcvbuf N] [--read-delay-ms MS]\n"
          "  [--server-pid PID] [--signal TERM|INT|QUIT] [--signal-pid PID]\n");
  exit(2);
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

/* Connects opt.conc connections; returns how many are established. Bounded in time. */
static long connect_all(double timeout_s) {
  uint64_t end = now_ns() + (uint64_t)(timeout_s * 1e9);
  long next = 0, established = 0, pending = 0;
  struct epoll_event evs[512];
  while ((next < opt.conc || pending > 0) && now_ns() < end) {
    /* keep at most 512 connects in flight (the listen backlog) */
    while (next < opt.conc && pending < 512) {
      if (start_conn(&conns[next], next) < 0) {
        next++;
        continue;
      }
      next++;
      pending++;
    }
    int n = epoll_wait(epfd, evs, 512, 50);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c->state != S_CONNECTING)
        continue;
      int err = 0;
      socklen_t l = sizeof(err);
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
      pending--;
      if (err) {
        st.connect_err++;
        conn_end(c);
        continue;
      }
      c->state = S_OPEN;
      ep_set(EPOLL_CTL_MOD, c, EPOLLIN);
      established++;
    }
  }
  return established;
}

static int parse_sig(const char *s) {
  if (!strcmp(s, "TERM"))
    return SIGTERM;
  if (!strcmp(s, "INT"))
    return SIGINT;
  if (!strcmp(s, "QUIT"))
    return SIGQUIT;
  return atoi(s);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      usage();
    i++;
    if (!strcmp(a, "--host"))
      opt.host = v;
    else if (!strcmp(a, "--port"))
      opt.port = atoi(v);
    else if (!strcmp(a, "--mode"))
      opt.mode = !strcmp(v, "respond") ? M_RESPOND
                 : !strcmp(v, "http")  ? M_HTTP
                 : !strcmp(v, "echo")  ? M_ECHO
                 : !strcmp(v, "idle")  ? M_IDLE
                                       : (usage(), 0);
    else if (!strcmp(a, "--conc"))
      opt.conc = atol(v);
    else if (!strcmp(a, "--count"))
      opt.count = atol(v);
    else if (!strcmp(a, "--duration"))
      opt.duration = atof(v);
    else if (!strcmp(a, "--grace"))
      opt.grace = atof(v);
    else if (!strcmp(a, "--bytes"))
      opt.bytes = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--extra"))
      opt.extra = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--msg"))
      opt.msg = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--src-addrs"))
      opt.src_addrs = atoi(v);
    else if (!strcmp(a, "--rcvbuf"))
      opt.rcvbuf = atoi(v);
    else if (!strcmp(a, "--read-delay-ms"))
      opt.read_delay_ms = atoi(v);
    else if (!strcmp(a, "--server-pid"))
      opt.server_pid = atoi(v);
    else if (!strcmp(a, "--signal-pid"))
      opt.signal_pid = atoi(v);
    else if (!strcmp(a, "--signal"))
      opt.sig = parse_sig(v);
    else if (!strcmp(a, "--settle-timeout"))
      opt.settle_timeout = atof(v);
    else
      usage();
  }
  if (opt.port <= 0 || opt.conc <= 0 || opt.duration <= 0 || opt.duration > 600 ||
      opt.msg == 0 || opt.msg > 65536 || opt.src_addrs < 1 || opt.src_addrs > 250)
    usage();
  memset(&dst, 0, sizeof(dst));
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &dst.sin_addr) != 1 ||
      (ntohl(dst.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "loadgen: only 127.0.0.0/8 targets are allowed\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  raise_nofile(opt.conc + 64);

  size_t patlen = sizeof(rbuf) + 65536 + 251;
  pat = malloc(patlen);
  for (size_t i = 0; i < patlen; i++)
    pat[i] = (char)(i % 251);
  const char *line =
      opt.mode == M_HTTP ? "GET /f HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" : "GET\n";
  reqlen = strlen(line) + opt.extra;
  reqbuf = malloc(reqlen + 1);
  memcpy(reqbuf, line, strlen(line));
  memset(reqbuf + strlen(line), 'x', opt.extra);

  conns = calloc((size_t)opt.conc, sizeof(conn));
  for (long i = 0; i < opt.conc; i++)
    conns[i].fd = -1;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0 || !conns || !pat || !reqbuf)
    die("setup");

  struct epoll_event evs[512];

  if (opt.mode == M_IDLE) {
    long rss0 = opt.server_pid ? server_rss_kb() : -1;
    long fds0 = opt.server_pid ? server_nfds() : -1;
    uint64_t t0 = now_ns();
    long est = connect_all(opt.settle_timeout);
    double connect_s = (double)(now_ns() - t0) / 1e9;
    /* Wait until the server has accepted them all (its fd count), bounded. */
    uint64_t settle_end = now_ns() + (uint64_t)(opt.settle_timeout * 1e9);
    long fds1 = fds0;
    if (opt.server_pid) {
      while (now_ns() < settle_end) {
        fds1 = server_nfds();
        if (fds1 < 0 || fds1 >= fds0 + est)
          break;
        usleep(50000);
      }
      usleep(200000);
    }
    long rss1 = opt.server_pid ? server_rss_kb() : -1;
    double per_conn = est > 0 && rss0 >= 0 ? (double)(rss1 - rss0) * 1024.0 / (double)est : 0;
    printf("mode=idle conns=%ld connect_err=%llu connect_s=%.3f server_fds_before=%ld "
           "server_fds_after=%ld rss_before_kb=%ld rss_after_kb=%ld rss_bytes_per_conn=%.1f",
           est, (unsigned long long)st.connect_err, connect_s, fds0, fds1, rss0, rss1,
           per_conn);
    if (opt.sig && opt.server_pid) {
      int spid = opt.signal_pid ? opt.signal_pid : opt.server_pid;
      int pidfd = (int)syscall(SYS_pidfd_open, spid, 0);
      uint64_t cpu0 = server_cpu_ns();
      uint64_t s0 = now_ns();
      kill(spid, opt.sig);
      uint64_t end = s0 + (uint64_t)(opt.grace * 1e9);
      uint64_t last_end = 0, exit_at = 0;
      long ended = 0, resets = 0;
      while (now_ns() < end && (active > 0 || (pidfd >= 0 && !exit_at))) {
        if (pidfd >= 0 && !exit_at) {
          struct pollfd p = {.fd = pidfd, .events = POLLIN};
          if (poll(&p, 1, 0) == 1)
            exit_at = now_ns();
        }
        int n = epoll_wait(epfd, evs, 512, 10);
        for (int i = 0; i < n; i++) {
          conn *c = evs[i].data.ptr;
          if (c->state != S_OPEN)
            continue;
          ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
          if (r > 0 || (r < 0 && errno == EAGAIN))
            continue;
          if (r < 0)
            resets++;
          ended++;
          last_end = now_ns();
          conn_end(c); /* our FIN answers the server's: its graceful close completes */
        }
      }
      if (pidfd >= 0 && !exit_at) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
          exit_at = now_ns();
      }
      printf(" drain_ended=%ld drain_resets=%ld drain_ms=%.2f server_exit_ms=%.2f "
             "server_drain_cpu_ms=%.2f",
             ended, resets, last_end ? (double)(last_end - s0) / 1e6 : -1.0,
             exit_at ? (double)(exit_at - s0) / 1e6 : -1.0,
             server_cpu_ns() > cpu0 ? (double)(server_cpu_ns() - cpu0) / 1e6 : -1.0);
    }
    printf("\n");
    return 0;
  }

  if (opt.mode == M_ECHO) {
    long est = connect_all(opt.settle_timeout);
    uint64_t cpu0 = server_cpu_ns(), self0 = self_cpu_ns();
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(opt.duration * 1e9);
    for (long i = 0; i < opt.conc; i++)
      if (conns[i].state == S_OPEN)
        echo_send(&conns[i]);
    uint64_t limit = opt.count > 0 ? (uint64_t)opt.count : UINT64_MAX;
    while (now_ns() < end && st.roundtrips < limit && active > 0) {
      int n = epoll_wait(epfd, evs, 512, 50);
      for (int i = 0; i < n; i++) {
        conn *c = evs[i].data.ptr;
        if (c->state == S_OPEN)
          echo_read(c, 1);
      }
    }
    uint64_t t1 = now_ns();
    uint64_t cpu1 = server_cpu_ns(), self1 = self_cpu_ns();
    double el = (double)(t1 - t0) / 1e9;
    for (long i = 0; i < opt.conc; i++)
      if (conns[i].fd >= 0)
        conn_end(&conns[i]);
    printf("mode=echo conns=%ld roundtrips=%llu elapsed_s=%.3f rate=%.1f errors=%llu bad=%llu "
           "connect_err=%llu server_cpu_ms=%.2f server_us_per_op=%.3f client_cpu_ms=%.2f\n",
           est, (unsigned long long)st.roundtrips, el, (double)st.roundtrips / el,
           (unsigned long long)st.errors, (unsigned long long)st.bad,
           (unsigned long long)st.connect_err, (double)(cpu1 - cpu0) / 1e6,
           st.roundtrips ? (double)(cpu1 - cpu0) / 1e3 / (double)st.roundtrips : 0,
           (double)(self1 - self0) / 1e6);
    return 0;
  }

  /* respond / http: churn. */
  uint64_t cpu0 = server_cpu_ns(), self0 = self_cpu_ns();
  uint64_t t0 = now_ns();
  uint64_t end = t0 + (uint64_t)(opt.duration * 1e9);
  uint64_t hard_end = end + (uint64_t)(opt.grace * 1e9);
  uint64_t limit = opt.count > 0 ? (uint64_t)opt.count : UINT64_MAX;
  uint64_t done_at = 0;
  long next_slot = 0;
  uint64_t delay_ns = (uint64_t)opt.read_delay_ms * 1000000u;
  for (;;) {
    uint64_t now = now_ns();
    int starting = now < end && st.started < limit;
    if (!starting && active == 0)
      break;
    if (now >= hard_end)
      break;
    if (starting && !done_at) {
      /* Fill the free slots, bounded per round so events get served. */
      for (long k = 0; k < opt.conc && active < opt.conc && st.started < limit; k++) {
        conn *c = &conns[next_slot];
        next_slot = (next_slot + 1) % opt.conc;
        if (c->state != S_FREE)
          continue;
        if (start_conn(c, (long)st.started) < 0) {
          if (st.connect_err > 100000)
            break;
          break; /* e.g. EADDRNOTAVAIL: wait for ports to come back */
        }
      }
    }
    if (!starting && !done_at)
      done_at = now;
    int n = epoll_wait(epfd, evs, 512, delay_ns ? 1 : 20);
    now = delay_ns ? now_ns() : now;
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
          st.connect_err++;
          conn_end(c);
          continue;
        }
        c->ready_at = now + delay_ns;
        send_request(c);
      } else if (c->state == S_SENDING) {
        if (evs[i].events & EPOLLOUT)
          send_request(c);
        if (c->state == S_SENDING && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
          /* the server answered (or reset) before taking all the extra bytes */
          c->state = S_READING;
          ep_set(EPOLL_CTL_MOD, c, EPOLLIN);
        }
        if (c->state == S_READING && (!delay_ns || now >= c->ready_at))
          do_read(c);
      } else if (c->state == S_READING) {
        if (delay_ns && now < c->ready_at)
          continue; /* level-triggered: it comes back */
        do_read(c);
      }
    }
  }
  uint64_t t1 = done_at && active == 0 ? now_ns() : now_ns();
  uint64_t cpu1 = server_cpu_ns(), self1 = self_cpu_ns();
  uint64_t unfinished = (uint64_t)active;
  for (long i = 0; i < opt.conc; i++)
    if (conns[i].fd >= 0)
      conn_end(&conns[i]);
  double el = (double)(t1 - t0) / 1e9;
  uint64_t completed = st.eof + st.reset;
  printf("mode=%s conns=%llu ok=%llu eof=%llu reset=%llu short=%llu bad=%llu unfinished=%llu "
         "connect_err=%llu bytes_ok=%llu bytes_lost=%llu elapsed_s=%.3f rate=%.1f "
         "server_cpu_ms=%.2f server_us_per_op=%.3f client_cpu_ms=%.2f\n",
         opt.mode == M_HTTP ? "http" : "respond", (unsigned long long)completed,
         (unsigned long long)st.ok, (unsigned long long)st.eof, (unsigned long long)st.reset,
         (unsigned long long)st.short_eof, (unsigned long long)st.bad,
         (unsigned long long)unfinished, (unsigned long long)st.connect_err,
         (unsigned long long)st.bytes_ok, (unsigned long long)st.bytes_lost, el,
         (double)st.ok / el, (double)(cpu1 - cpu0) / 1e6,
         completed ? (double)(cpu1 - cpu0) / 1e3 / (double)completed : 0,
         (double)(self1 - self0) / 1e6);
  return 0;
}
