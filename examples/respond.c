/*
 * respond - the reference server that the tests, the lab and the benchmarks drive.
 *
 *   respond --listen HOST:PORT [--bytes N] [--close graceful|abort|naive]
 *           [--deadline-ms D] [--dead-after-ms T] [--idle-timeout-ms T]
 *           [--stall-timeout-ms T] [--log]
 *
 * Prints "listening on HOST:PORT" (the real port, so :0 works). For each connection:
 * reads up to the first '\n' and never a byte after it (reads of size 1), writes N bytes
 * (default 1 MiB) where byte i is i % 251, then ends the connection:
 *   graceful  lw_close(c, D): flush, FIN, drain input to the peer's FIN, wait for the
 *             peer's ACK of every byte, close; RST if D ms pass first
 *   abort     lw_abort() once the response is in the kernel: RST
 *   naive     lw_close_naive() once the response is in the kernel: a plain close()
 * --dead-after-ms, --idle-timeout-ms, --stall-timeout-ms set the liveness options of
 * the same names (lw_conn_options in lastword.h) on every accepted connection.
 * --log prints one line per ended connection (fields documented in README.md).
 * SIGTERM/SIGINT: stop accepting, close every connection gracefully, exit 0 (lw_signal
 * watchers; the drain is lw_loop_walk + lw_close).
 */
#include <lastword.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLOSE_GRACEFUL, CLOSE_ABORT, CLOSE_NAIVE };

typedef struct server {
  lw_loop *loop;
  lw_listener *listener;
  char *payload;
  size_t bytes;
  int close_mode;
  uint32_t deadline_ms;
  lw_conn_options opts;
  int log;
  unsigned live;
  int stopping;
} server;

typedef struct session {
  server *srv;
  struct session *next, *prev;
  lw_conn *conn;
  size_t line;
} session;

static session sessions = {.next = &sessions, .prev = &sessions};

static void on_close(lw_conn *c, const lw_close_info *in) {
  session *s = lw_conn_get_data(c);
  server *srv = s->srv;
  if (srv->log) {
    printf("close reason=%s initiator=%s rst=%d queued=%llu sent=%llu acked=%llu "
           "unsent_discarded=%llu unread_discarded=%llu time_wait=%d ms=%llu silent_ms=%llu\n",
           lw_reason_name(in->reason),
           in->initiator == LW_INITIATOR_PEER    ? "peer"
           : in->initiator == LW_INITIATOR_LOCAL ? "local"
                                                 : "none",
           in->rst, (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_sent,
           (unsigned long long)in->bytes_acked, (unsigned long long)in->unsent_discarded,
           (unsigned long long)in->unread_discarded, in->time_wait,
           (unsigned long long)in->close_ms, (unsigned long long)in->peer_silent_ms);
    fflush(stdout);
  }
  s->prev->next = s->next;
  s->next->prev = s->prev;
  free(s);
  srv->live--;
}

static void on_written(lw_conn *c, int status, void *arg) {
  server *srv = arg;
  if (status != 0)
    return; /* cancelled: the connection already ended; on_close tells why */
  if (srv->close_mode == CLOSE_ABORT)
    lw_abort(c);
  else if (srv->close_mode == CLOSE_NAIVE)
    lw_close_naive(c);
}

static void on_read(lw_conn *c, long nread, const char *buf) {
  session *s = lw_conn_get_data(c);
  server *srv = s->srv;
  if (nread == LW_EOF)
    return; /* the peer closed before its request line: the library finishes it */
  for (long i = 0; i < nread; i++) {
    if (buf[i] != '\n') {
      if (++s->line > 8192)
        lw_abort(c); /* no newline within 8 KiB: not our protocol */
      continue;
    }
    /* The request line is complete. Stop reading: everything after it stays in the
     * kernel, which is what makes a naive close send RST (B13). */
    lw_conn_read_stop(c);
    /* The whole response is queued at once, so LW_ABOVE_HIGH_WATER (queued, the queue
     * at or above write_high_water) is the usual answer for large --bytes: with one
     * response per connection there is nothing to hold back until drain_cb. Below 0,
     * nothing was queued (the connection is already ending) and on_close tells why. */
    int r = lw_conn_write(c, srv->payload, srv->bytes, on_written, srv);
    if (r < 0 && srv->log)
      fprintf(stderr, "respond: write: %s\n", lw_strerror(r));
    if (srv->close_mode == CLOSE_GRACEFUL)
      lw_close(c, srv->deadline_ms);
    return;
  }
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  server *srv = lw_listener_get_data(l);
  if (status < 0) {
    fprintf(stderr, "respond: accept: %s\n", lw_strerror(status));
    return;
  }
  session *s = calloc(1, sizeof(*s));
  if (!s) {
    lw_abort(c);
    return;
  }
  s->srv = srv;
  s->conn = c;
  s->next = sessions.next;
  s->prev = &sessions;
  sessions.next->prev = s;
  sessions.next = s;
  srv->live++;
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, on_close);
  lw_conn_set_read_size(c, 1);
  lw_conn_read_start(c, on_read);
}

/* Drain: every connection still open ends gracefully (LW_EALREADY for those already
 * closing); the loop then ends by itself once the last on_close has run. */
static void drain_one(lw_conn *c, void *arg) {
  server *srv = arg;
  lw_close(c, srv->deadline_ms);
}

/* SIGTERM / SIGINT, delivered by the loop (lw_signal: the callback runs in the loop, so
 * it may call anything). A second signal during the drain changes nothing. */
static void on_signal(lw_signal *sg, int signum) {
  (void)signum;
  server *srv = lw_signal_get_data(sg);
  if (srv->stopping)
    return;
  srv->stopping = 1;
  lw_listener_close(srv->listener);
  lw_loop_walk(srv->loop, drain_one, srv);
}

static int parse_hostport(const char *arg, char *host, size_t hostlen, int *port) {
  const char *colon = strrchr(arg, ':');
  if (!colon || colon == arg)
    return -1;
  size_t n = (size_t)(colon - arg);
  if (arg[0] == '[' && n >= 2 && arg[n - 1] == ']') {
    arg++;
    n -= 2;
  }
  if (n >= hostlen)
    return -1;
  memcpy(host, arg, n);
  host[n] = 0;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535)
    return -1;
  *port = (int)p;
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: respond --listen HOST:PORT [--bytes N] "
                  "[--close graceful|abort|naive] [--deadline-ms D] [--dead-after-ms T] "
                  "[--idle-timeout-ms T] [--stall-timeout-ms T] [--backend epoll|uring] "
                  "[--log]\n");
  exit(2);
}

int main(int argc, char **argv) {
  server srv = {.bytes = 1024 * 1024, .close_mode = CLOSE_GRACEFUL, .deadline_ms = 5000};
  const char *listen_arg = NULL;
  const char *backend = NULL; /* NULL: LW_BACKEND, else epoll */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--listen") == 0 && i + 1 < argc)
      listen_arg = argv[++i];
    else if (strcmp(a, "--bytes") == 0 && i + 1 < argc)
      srv.bytes = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "--deadline-ms") == 0 && i + 1 < argc)
      srv.deadline_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--dead-after-ms") == 0 && i + 1 < argc)
      srv.opts.dead_after_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--idle-timeout-ms") == 0 && i + 1 < argc)
      srv.opts.idle_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--stall-timeout-ms") == 0 && i + 1 < argc)
      srv.opts.stall_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--log") == 0)
      srv.log = 1;
    else if (strcmp(a, "--backend") == 0 && i + 1 < argc)
      backend = argv[++i];
    else if (strcmp(a, "--close") == 0 && i + 1 < argc) {
      const char *m = argv[++i];
      if (strcmp(m, "graceful") == 0)
        srv.close_mode = CLOSE_GRACEFUL;
      else if (strcmp(m, "abort") == 0)
        srv.close_mode = CLOSE_ABORT;
      else if (strcmp(m, "naive") == 0)
        srv.close_mode = CLOSE_NAIVE;
      else
        usage();
    } else
      usage();
  }
  if (!listen_arg || srv.bytes == 0)
    usage();
  char host[128];
  int port;
  if (parse_hostport(listen_arg, host, sizeof(host), &port) < 0)
    usage();

  srv.payload = malloc(srv.bytes);
  if (!srv.payload)
    return 1;
  for (size_t i = 0; i < srv.bytes; i++)
    srv.payload[i] = (char)(i % 251);

  int r = lw_loop_new(&srv.loop, backend);
  if (r < 0) {
    fprintf(stderr, "respond: loop: %s\n", lw_strerror(r));
    return 1;
  }
  r = lw_listener_new(srv.loop, host, port, 1024, &srv.opts, on_accept, &srv.listener);
  if (r < 0) {
    fprintf(stderr, "respond: listen %s: %s\n", listen_arg, lw_strerror(r));
    return 1;
  }
  lw_listener_set_data(srv.listener, &srv);
  printf(strchr(host, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n", host,
         lw_listener_port(srv.listener));
  /* The backend actually in use (io_uring may have been refused): on stderr, so the
   * first stdout line stays the documented "listening on" line. */
  fprintf(stderr, "respond: backend %s\n", lw_loop_backend(srv.loop));
  fflush(stdout);

  /* SIGTERM and SIGINT start the drain. Unref'd: they do not keep the loop running
   * by themselves, so lw_loop_run returns once the drain is over (listener closed, last
   * connection reported), while a second signal still finds them watching. Windows has
   * no SIGTERM event (LW_ENOSYS there): Ctrl-C (SIGINT) drains. */
  static const int sigs[2] = {SIGTERM, SIGINT};
  lw_signal *sw[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    r = lw_signal_new(srv.loop, &sw[i]);
    if (r == 0) {
      lw_signal_set_data(sw[i], &srv);
      r = lw_signal_start(sw[i], on_signal, sigs[i]);
      lw_signal_unref(sw[i]);
    }
    if (r < 0 && r != LW_ENOSYS) {
      fprintf(stderr, "respond: signal %d: %s\n", sigs[i], lw_strerror(r));
      return 1;
    }
  }

  r = lw_loop_run(srv.loop, LW_RUN_DEFAULT);
  for (int i = 0; i < 2; i++)
    lw_signal_free(sw[i]);
  if (!srv.stopping)
    lw_listener_close(srv.listener);
  lw_loop_run(srv.loop, LW_RUN_NOWAIT);
  r = lw_loop_close(srv.loop);
  free(srv.payload);
  return r == 0 ? 0 : 1;
}
