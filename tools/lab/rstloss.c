/*
 * rstloss.c - the comparison section: the RST-loss workload, served in several ways.
 *
 * Workload (DESIGN.md, CLAIMS.md last section): the client sends the request line
 * "GET\n" followed by 64 KiB it never expects to be read; the server reads only the
 * request line, writes a 4 MiB response whose byte i is i % 251, then ends the
 * connection. The client reads to the end and checks the pattern.
 *
 * Why the naive close loses data: Linux close() with unread input (the 64 KiB) sends
 * RST instead of FIN (tcp_close: "data_was_unread" -> tcp_send_active_reset), and an RST
 * makes the client's kernel drop what it had not yet handed to the application. The
 * graceful server does shutdown(SHUT_WR), reads and discards to EOF, then close(): the
 * input is consumed, so close() has nothing to reset.
 *
 * Each row is a server function run against the same client; adding the library's
 * `examples/respond --close graceful` is one more row (lw_rst_server_respond below).
 */
#include "lab.h"

#include <lastword.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LW_RST_RESPONSE (4 << 20)
#define LW_RST_EXTRA (64 << 10)
#define LW_RST_BOUND_MS 8000

typedef struct {
  const char *label;
  long long written;  /* bytes the server's send() calls accepted */
  long long received; /* bytes the client read */
  int pattern_ok;     /* every received byte matched i % 251 */
  char ending[48];    /* "EOF", "ECONNRESET", ... */
  double close_ms;    /* how long the server's ending took */
  char note[128];     /* why a row could not run */
  int ran;
} lw_rst_row;

/* A server: gets the listening socket, serves one connection, fills row. Returns 0, or
 * -1 when it could not run (row->note says why; that is not a lab failure). */
typedef int (*lw_rst_server_fn)(int lfd, uint16_t port, lw_rst_row *row);

typedef struct {
  uint16_t port;
  long long received;
  int pattern_ok;
  char ending[48];
} lw_rst_client;

static double lw_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Waits for `ev` on fd until deadline; 1 ready, 0 timeout, -1 error. */
static int lw_wait(int fd, short ev, double deadline) {
  double left = deadline - lw_ms();
  if (left <= 0)
    return 0;
  struct pollfd p = {.fd = fd, .events = ev};
  int r = poll(&p, 1, (int)left);
  return r < 0 ? (errno == EINTR ? 0 : -1) : r;
}

static void *lw_rst_client_thread(void *arg) {
  lw_rst_client *c = arg;
  double deadline = lw_ms() + LW_RST_BOUND_MS;
  snprintf(c->ending, sizeof c->ending, "client failed");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return NULL;
  /* A client slower than the server, as over any real network: a 64 KiB receive
   * buffer and a 1 ms pause per 32 KiB read. The server's send buffer is then never
   * empty when it closes, so what an RST destroys does not depend on thread timing. */
  int rcv = 64 << 10;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons(c->port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
    goto out;
  static char req[4 + LW_RST_EXTRA];
  memcpy(req, "GET\n", 4);
  memset(req + 4, 'x', LW_RST_EXTRA);
  size_t off = 0;
  while (off < sizeof req) {
    ssize_t n = send(fd, req + off, sizeof req - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (lw_wait(fd, POLLOUT, deadline) <= 0)
        break;
    } else {
      break;
    }
  }
  c->pattern_ok = 1;
  static unsigned char buf[32768];
  for (;;) {
    struct timespec pause = {0, 1000 * 1000};
    nanosleep(&pause, NULL);
    int w = lw_wait(fd, POLLIN, deadline);
    if (w <= 0) {
      snprintf(c->ending, sizeof c->ending, "no end within %d ms", LW_RST_BOUND_MS);
      break;
    }
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      for (ssize_t i = 0; i < n && c->pattern_ok; i++)
        if (buf[i] != (unsigned char)((c->received + i) % 251))
          c->pattern_ok = 0;
      c->received += n;
    } else if (n == 0) {
      snprintf(c->ending, sizeof c->ending, "EOF");
      break;
    } else if (errno != EAGAIN && errno != EINTR) {
      snprintf(c->ending, sizeof c->ending, "%s", lw_lab_errno_name(errno));
      break;
    }
  }
out:
  close(fd);
  return NULL;
}

/* Accepts, reads the request line, writes the response. Returns the fd or -1. */
static int lw_rst_serve_prefix(int lfd, lw_rst_row *row, double deadline) {
  if (lw_wait(lfd, POLLIN, deadline) <= 0)
    return -1;
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0)
    return -1;
  char line[4];
  size_t got = 0;
  while (got < sizeof line) { /* exactly the request line: the rest stays unread */
    if (lw_wait(fd, POLLIN, deadline) <= 0)
      break;
    ssize_t n = recv(fd, line + got, sizeof line - got, MSG_DONTWAIT);
    if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
      break;
    if (n > 0)
      got += (size_t)n;
  }
  static unsigned char out[65536];
  long long pos = 0;
  while (pos < LW_RST_RESPONSE) {
    size_t chunk = sizeof out;
    if ((long long)chunk > LW_RST_RESPONSE - pos)
      chunk = (size_t)(LW_RST_RESPONSE - pos);
    for (size_t i = 0; i < chunk; i++)
      out[i] = (unsigned char)((pos + (long long)i) % 251);
    ssize_t n = send(fd, out, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
      pos += n;
    else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (lw_wait(fd, POLLOUT, deadline) <= 0)
        break;
    } else
      break;
  }
  row->written = pos;
  return fd;
}

static int lw_rst_server_naive(int lfd, uint16_t port, lw_rst_row *row) {
  (void)port;
  int fd = lw_rst_serve_prefix(lfd, row, lw_ms() + LW_RST_BOUND_MS);
  if (fd < 0)
    return -1;
  double t = lw_ms();
  close(fd);
  row->close_ms = lw_ms() - t;
  return 0;
}

static int lw_rst_server_graceful(int lfd, uint16_t port, lw_rst_row *row) {
  (void)port;
  double deadline = lw_ms() + LW_RST_BOUND_MS;
  int fd = lw_rst_serve_prefix(lfd, row, deadline);
  if (fd < 0)
    return -1;
  double t = lw_ms();
  shutdown(fd, SHUT_WR); /* FIN after the last response byte (A14 step 1) */
  static char sink[65536];
  for (;;) { /* read and discard to EOF (A14 step 2), bounded by the deadline */
    if (lw_wait(fd, POLLIN, deadline) <= 0)
      break;
    ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
      break;
  }
  close(fd);
  row->close_ms = lw_ms() - t;
  return 0;
}

/*
 * HOOK for the library row: serve the same workload with the library's
 * `examples/respond --close graceful` (lw_close). To wire it: spawn that binary on the
 * listening socket (or on `port`), wait for it, and fill row->written from its report.
 * Until then the row says why it did not run.
 */
/* The library's answer, in process: the same listening socket adopted by a lastword
 * loop, the respond protocol (read the request line byte by byte, never past it), a
 * 4 MiB response, then lw_close() with a 5 s deadline. */
typedef struct {
  char *payload;
  int closes;
  lw_close_info info;
} lw_rst_lib;

static void lw_rst_lib_closed(lw_conn *c, const lw_close_info *in) {
  lw_rst_lib *st = lw_conn_get_data(c);
  st->closes++;
  st->info = *in;
}

static void lw_rst_lib_read(lw_conn *c, long n, const char *buf) {
  lw_rst_lib *st = lw_conn_get_data(c);
  for (long i = 0; i < n; i++) {
    if (buf[i] != '\n')
      continue;
    lw_conn_read_stop(c);
    lw_conn_write(c, st->payload, LW_RST_RESPONSE, NULL, NULL);
    lw_close(c, 5000);
    return;
  }
}

static void lw_rst_lib_accept(lw_listener *l, lw_conn *c, int status) {
  if (status < 0)
    return;
  lw_conn_set_data(c, lw_listener_get_data(l));
  lw_conn_on_close(c, lw_rst_lib_closed);
  lw_conn_set_read_size(c, 1);
  lw_conn_read_start(c, lw_rst_lib_read);
  lw_listener_close(l); /* one connection is the whole workload */
}

#ifndef _WIN32
static int lw_rst_server_respond(int lfd, uint16_t port, lw_rst_row *row) {
  (void)port;
  lw_rst_lib st = {0};
  lw_loop *loop = NULL;
  lw_listener *l = NULL;
  int fd = dup(lfd); /* the listener owns what it adopts; the caller closes lfd */
  st.payload = malloc(LW_RST_RESPONSE);
  if (fd < 0 || !st.payload || lw_loop_new(&loop, NULL) < 0 ||
      lw_listener_adopt(loop, fd, NULL, lw_rst_lib_accept, &l) < 0) {
    snprintf(row->note, sizeof row->note, "could not start a lastword loop");
    if (loop)
      lw_loop_close(loop);
    if (fd >= 0)
      close(fd);
    free(st.payload);
    return -1;
  }
  for (int i = 0; i < LW_RST_RESPONSE; i++)
    st.payload[i] = (char)(i % 251);
  lw_listener_set_data(l, &st);
  const char *backend = lw_loop_backend(loop);
  lw_loop_run(loop, LW_RUN_DEFAULT); /* ends when the connection's on_close has run */
  lw_loop_close(loop);
  free(st.payload);
  row->written = (long long)st.info.bytes_sent;
  row->close_ms = (double)st.info.close_ms;
  snprintf(row->note, sizeof row->note, "reason=%s acked=%llu backend=%s",
           lw_reason_name(st.info.reason), (unsigned long long)st.info.bytes_acked, backend);
  return 0;
}
#endif

static int lw_rst_run_row(const lw_lab_opts *o, lw_rst_server_fn fn, lw_rst_row *row) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4) < 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
    close(lfd);
    return -1;
  }
  lw_rst_client cl = {.port = ntohs(a.sin_port)};
  /* With --pcap the comparison's traffic goes to the file too (nothing is parsed from
   * it here: the rows are measured by the client and the server themselves). */
  lw_cap *cap = NULL;
  if (o->dump && o->capture_ok) {
    struct timespec now;
    char err[256];
    clock_gettime(CLOCK_REALTIME, &now);
    cap = lw_cap_start("lo", cl.port, (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6,
                       o->dump, err, sizeof err);
    if (!cap)
      fprintf(stderr, "lastword lab: rstloss: no capture: %s\n", err);
  }
  pthread_t t;
  if (pthread_create(&t, NULL, lw_rst_client_thread, &cl) != 0) {
    close(lfd);
    if (cap) {
      size_t n;
      lw_cap_stop(cap, &n);
      lw_cap_free(cap);
    }
    return -1;
  }
  int r = fn(lfd, cl.port, row);
  if (r < 0) {
    /* Unblock the client: it connected to a listener nobody serves. Closing the
     * listener resets the queued connection, so the client ends within its bound. */
    close(lfd);
    lfd = -1;
  }
  pthread_join(t, NULL);
  if (lfd >= 0)
    close(lfd);
  if (cap) {
    size_t n;
    lw_cap_stop(cap, &n);
    lw_cap_free(cap);
  }
  if (r == 0) {
    row->ran = 1;
    row->received = cl.received;
    row->pattern_ok = cl.pattern_ok;
    snprintf(row->ending, sizeof row->ending, "%s", cl.ending);
  }
  return 0;
}

#ifdef _WIN32
/* Windows: the IOCP backend cannot adopt a listening socket (lw_listener_adopt), so the
 * library row listens by itself (lw_listener_new on 127.0.0.1, port 0) and the same client
 * connects to it. Same workload, same lw_close() with a 5 s deadline. */
static int lw_rst_run_lib_row(lw_rst_row *row) {
  lw_rst_lib st = {0};
  lw_loop *loop = NULL;
  lw_listener *l = NULL;
  st.payload = malloc(LW_RST_RESPONSE);
  if (!st.payload || lw_loop_new(&loop, NULL) < 0 ||
      lw_listener_new(loop, "127.0.0.1", 0, 4, NULL, lw_rst_lib_accept, &l) < 0) {
    snprintf(row->note, sizeof row->note, "could not start a lastword loop");
    if (loop)
      lw_loop_close(loop);
    free(st.payload);
    return 0;
  }
  for (int i = 0; i < LW_RST_RESPONSE; i++)
    st.payload[i] = (char)(i % 251);
  lw_listener_set_data(l, &st);
  lw_rst_client cl = {.port = (uint16_t)lw_listener_port(l)};
  pthread_t t;
  if (pthread_create(&t, NULL, lw_rst_client_thread, &cl) != 0) {
    lw_listener_close(l);
    lw_loop_close(loop);
    free(st.payload);
    return -1;
  }
  const char *backend = lw_loop_backend(loop);
  lw_loop_run(loop, LW_RUN_DEFAULT); /* ends when the connection's on_close has run */
  pthread_join(t, NULL);
  lw_loop_close(loop);
  free(st.payload);
  row->ran = 1;
  row->written = (long long)st.info.bytes_sent;
  row->close_ms = (double)st.info.close_ms;
  row->received = cl.received;
  row->pattern_ok = cl.pattern_ok;
  snprintf(row->ending, sizeof row->ending, "%s", cl.ending);
  snprintf(row->note, sizeof row->note, "reason=%s acked=%llu backend=%s",
           lw_reason_name(st.info.reason), (unsigned long long)st.info.bytes_acked, backend);
  return 0;
}
#endif

int lw_lab_rstloss(const lw_lab_opts *o) {
  struct {
    const char *label;
    lw_rst_server_fn fn;
  } rows[] = {
      {"naive close()", lw_rst_server_naive},
      {"shutdown + drain + close()", lw_rst_server_graceful},
#ifdef _WIN32
      {"lw_close (liblastword)", NULL}, /* lw_rst_run_lib_row */
#else
      {"lw_close (liblastword)", lw_rst_server_respond},
#endif
  };
  enum { N = sizeof rows / sizeof rows[0] };
  lw_rst_row res[N];
  memset(res, 0, sizeof res);
  for (int i = 0; i < N; i++) {
    res[i].label = rows[i].label;
#ifdef _WIN32
    if (!rows[i].fn) {
      if (lw_rst_run_lib_row(&res[i]) < 0) {
        fprintf(stderr, "lastword lab: rstloss: cannot start a thread\n");
        return -1;
      }
      continue;
    }
#endif
    if (lw_rst_run_row(o, rows[i].fn, &res[i]) < 0) {
      fprintf(stderr, "lastword lab: rstloss: cannot set up sockets: %s\n", strerror(errno));
      return -1;
    }
  }
  FILE *f = o->out;
  if (o->json) {
    fputs(
        "{\"comparison\":\"rstloss\",\"response_bytes\":4194304,\"unread_request_bytes\":65536,"
        "\"rows\":[",
        f);
    for (int i = 0; i < N; i++)
      fprintf(f,
              "%s{\"server\":\"%s\",\"ran\":%s,\"written\":%lld,\"received\":%lld,"
              "\"pattern_ok\":%s,\"ending\":\"%s\",\"close_ms\":%.3f,\"note\":\"%s\"}",
              i ? "," : "", res[i].label, res[i].ran ? "true" : "false", res[i].written,
              res[i].received, res[i].pattern_ok ? "true" : "false", res[i].ending,
              res[i].close_ms, res[i].note);
    fputs("]}\n", f);
    return 0;
  }
  const char *b = o->color ? "\033[1m" : "", *z = o->color ? "\033[0m" : "";
  fprintf(f,
          "\n%sComparison: the RST-loss workload%s (request \"GET\\n\" + 64 KiB never "
          "read; 4 MiB response)\n",
          b, z);
  fprintf(f, "  %-28s %10s %10s %8s  %-12s %s\n", "server ends with", "written", "received",
          "pattern", "client saw", "ending took");
  for (int i = 0; i < N; i++) {
    if (!res[i].ran) {
      fprintf(f, "  %-28s %s(not run: %s)%s\n", res[i].label, o->color ? "\033[2m" : "",
              res[i].note, z);
      continue;
    }
    int lost = res[i].received < res[i].written;
    fprintf(f, "  %-28s %10lld %s%10lld%s %8s  %-12s %.1f ms\n", res[i].label, res[i].written,
            o->color ? (lost ? "\033[31m" : "\033[32m") : "", res[i].received, z,
            res[i].pattern_ok ? "ok" : "BAD", res[i].ending, res[i].close_ms);
  }
  return 0;
}
