/*
 * respond - the reference server that the tests, the lab and the benchmarks drive.
 *
 *   respond --listen HOST:PORT [--bytes N] [--close graceful|abort|naive]
 *           [--deadline-ms D] [--dead-after-ms T] [--idle-timeout-ms T]
 *           [--stall-timeout-ms T] [--threads N] [--drain-ms D] [--log]
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
 *
 * Serving a port for its whole life (lastword.h, "Drain" and "Sockets passed"):
 *   --threads N   N loops, one per thread, accepting from ONE shared listening socket
 *                 (each loop adopts a dup of it): one accept queue, so a loop that
 *                 pauses or drains never strands connections hashed to it, a
 *                 successor takes the queue over whole, and systemd's single socket
 *                 serves every thread as it is (README.md: the measurement).
 *   --reuseport   instead, an SO_REUSEPORT group of N sockets, one per loop: for that
 *                 measurement only (no SIGHUP hand-off: it passes loop 0's socket).
 *   started by systemd (or systemd-socket-activate): serves the sockets passed in
 *                 LISTEN_FDS instead of --listen (which may then be omitted), and
 *                 prints the same "listening on" line for each.
 *   SIGTERM/SIGINT  drain (lw_loop_drain on every loop, deadline --drain-ms, default
 *                 10000) and exit 0, printing one line: "drain conns=... <reason>=<n>
 *                 ... reset=... acked=... queued=... ms=...".
 *   SIGHUP        restart without loss: starts argv[0]'s path again (a binary
 *                 installed there since is the one that runs) with the same arguments;
 *                 it takes the listening sockets over (LW_LISTEN_FDS); once
 *                 it accepts (its ready byte), this copy drains and exits 0 (same
 *                 "drain" line); the connections waiting in the shared accept queue
 *                 are the successor's. If the successor dies first, this copy goes on.
 * All of that is examples/serve.h, shared with httpd.c (its top says what differs on
 * Windows); this file is the protocol, its options and --reuseport.
 */
#include "serve.h" /* the scaffolding shared with httpd.c: copy it with this file */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLOSE_GRACEFUL, CLOSE_ABORT, CLOSE_NAIVE };

/* What every loop shares (read-only once the threads run). */
struct config {
  char *payload;
  size_t bytes;
  int close_mode;
  uint32_t deadline_ms, drain_ms;
  lw_conn_options opts;
  int log;
  const char *backend;
};

typedef struct session {
  worker *w;
  size_t line;
} session;

static void on_close(lw_conn *c, const lw_close_info *in) {
  session *s = lw_conn_get_data(c);
  worker *w = s->w;
  if (w->cfg->log) {
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
  free(s);
  w->live--;
}

static void on_written(lw_conn *c, int status, void *arg) {
  const config *cfg = arg;
  if (status != 0)
    return; /* cancelled: the connection already ended; on_close tells why */
  if (cfg->close_mode == CLOSE_ABORT)
    lw_abort(c);
  else if (cfg->close_mode == CLOSE_NAIVE)
    lw_close_naive(c);
}

static void on_read(lw_conn *c, long nread, const char *buf) {
  session *s = lw_conn_get_data(c);
  const config *cfg = s->w->cfg;
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
    int r = lw_conn_write(c, cfg->payload, cfg->bytes, on_written, (void *)cfg);
    if (r < 0 && cfg->log)
      fprintf(stderr, "respond: write: %s\n", lw_strerror(r));
    if (cfg->close_mode == CLOSE_GRACEFUL)
      lw_close(c, cfg->deadline_ms);
    return;
  }
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  worker *w = lw_listener_get_data(l);
  if (status < 0) {
    fprintf(stderr, "respond: accept: %s\n", lw_strerror(status));
    return;
  }
  session *s = calloc(1, sizeof(*s));
  if (!s) {
    lw_abort(c);
    return;
  }
  s->w = w;
  w->live++;
  w->accepts++;
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, on_close);
  lw_conn_set_read_size(c, 1);
  lw_conn_read_start(c, on_read);
}

static int rp_fds[MAX_THREADS]; /* --reuseport: one socket per loop */
#ifndef _WIN32
/* --reuseport (for the measurement in README.md only; no SIGHUP hand-off with it: each
 * loop's socket has its own accept queue, and the hand-off passes loop 0's): an
 * SO_REUSEPORT group of n sockets on first's address, which is re-made with the option
 * set (the group needs it on every member, the first included). */
static int reuseport_group(int first, int n, int *out) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(first, (struct sockaddr *)&ss, &len) < 0)
    return -1;
  close(first);
  for (int t = 0; t < n; t++) {
    int one = 1, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
      perror("respond: --reuseport");
      return -1;
    }
    out[t] = fd;
  }
  return 0;
}
#endif

static void usage(void) {
  fprintf(stderr, "usage: respond --listen HOST:PORT [--bytes N] "
                  "[--close graceful|abort|naive] [--deadline-ms D] [--dead-after-ms T] "
                  "[--idle-timeout-ms T] [--stall-timeout-ms T] [--backend epoll|uring] "
                  "[--threads N [--reuseport]] [--drain-ms D] [--log]\n");
  serve_usage_more();
  exit(2);
}

int main(int argc, char **argv) {
  config cfg = {.bytes = 1024 * 1024,
                .close_mode = CLOSE_GRACEFUL,
                .deadline_ms = 5000,
                .drain_ms = 10000};
  const char *listen_arg = NULL;
  int threads = 1, reuseport = 0;
  serve_init(argv);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--listen") == 0 && i + 1 < argc)
      listen_arg = argv[++i];
    else if (strcmp(a, "--bytes") == 0 && i + 1 < argc)
      cfg.bytes = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "--deadline-ms") == 0 && i + 1 < argc)
      cfg.deadline_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--drain-ms") == 0 && i + 1 < argc)
      cfg.drain_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(a, "--reuseport") == 0)
      reuseport = 1;
    else if (strcmp(a, "--dead-after-ms") == 0 && i + 1 < argc)
      cfg.opts.dead_after_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--idle-timeout-ms") == 0 && i + 1 < argc)
      cfg.opts.idle_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--stall-timeout-ms") == 0 && i + 1 < argc)
      cfg.opts.stall_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(a, "--log") == 0)
      cfg.log = 1;
    else if (strcmp(a, "--backend") == 0 && i + 1 < argc)
      cfg.backend = argv[++i];
    else if (strcmp(a, "--close") == 0 && i + 1 < argc) {
      const char *m = argv[++i];
      if (strcmp(m, "graceful") == 0)
        cfg.close_mode = CLOSE_GRACEFUL;
      else if (strcmp(m, "abort") == 0)
        cfg.close_mode = CLOSE_ABORT;
      else if (strcmp(m, "naive") == 0)
        cfg.close_mode = CLOSE_NAIVE;
      else
        usage();
    } else
      usage();
  }
  if (threads < 1 || threads > MAX_THREADS || cfg.bytes == 0)
    usage();
#ifdef _WIN32
  if (threads > 1 || reuseport) {
    fprintf(stderr, "respond: --threads %d%s: not on Windows: %s\n", threads,
            reuseport ? " --reuseport" : "", WIN_NO_THREADS);
    return 2;
  }
#endif

  serve.name = "respond";
  serve.on_accept = on_accept;
  serve.usage = usage;
  serve.drain_ms = cfg.drain_ms;
  serve.backend = cfg.backend;
  serve.opts = &cfg.opts;
  int fds[MAX_LISTEN], made;
  int nfds = serve_listen(listen_arg, fds, &made);
  if (nfds < 0)
    return 1;
#ifndef _WIN32
  if (made && reuseport && reuseport_group(fds[0], threads, rp_fds) < 0)
    return 1;
#endif

  cfg.payload = malloc(cfg.bytes);
  if (!cfg.payload)
    return 1;
  for (size_t i = 0; i < cfg.bytes; i++)
    cfg.payload[i] = (char)(i % 251);

  if (reuseport && rp_fds[0] > 0)
    fds[0] = rp_fds[0];
  int r = serve_run(&cfg, threads, fds, nfds, reuseport ? rp_fds : NULL);
  if (r < 0) {
    free(cfg.payload);
    return 1;
  }
  fprintf(stderr, "respond: accepts per loop:");
  for (int t = 0; t < threads; t++)
    fprintf(stderr, " %llu", workers[t].accepts);
  fprintf(stderr, "\n");
  free(cfg.payload);
  return r;
}
