/* atk_http.c - a tiny lastword HTTP/1.1 server against real clients (curl, wrk).
 *
 *   atk_http MODE RUNS 'CLIENT COMMAND with %p for the port'
 *
 * MODE (the server's behaviour):
 *   413    answer 413 (4 KiB body, Connection: close) as soon as the request head is in,
 *          without reading the body, then lw_close(c, 0)
 *   close  read the whole body (Content-Length), answer 200 with /SIZE bytes (default 2),
 *          Connection: close, then lw_close(c, 0)
 *   ka     keep-alive: answer every request, never close; idle_timeout_ms from env
 *          ATK_IDLE (default 300)
 * The client command runs RUNS times in sequence (sh -c, stdout captured); ATK_EXPECT
 * (default "200") must appear in each run's stdout and the exit status must be 0 unless
 * ATK_ANY_EXIT=1. Every server on_close is checked: acked <= sent <= queued, queued ==
 * acked + unsent_discarded (acked_known), rst counted; ATK_MAX_RST (default 0) bounds the
 * connections that ended in an RST. One line of facts; exit 1 on a broken promise. */
#include "atk.h"

#include <signal.h>
#include <sys/wait.h>

typedef struct {
  char head[8192];
  size_t hlen;
  uint64_t body_left;
  int in_body;
  int keep;
  size_t resp_size;
} req_t;

static const char *mode;
static int n_closed, n_rst, n_accept, reasons[LW_REASON__COUNT];
static uint64_t unread_total;
static char *bigbody;
#define BIG (8u << 20)

static void on_close(lw_conn *c, const lw_close_info *in) {
  free(lw_conn_get_data(c));
  n_closed++;
  if (in->rst)
    n_rst++;
  if (in->reason < LW_REASON__COUNT)
    reasons[in->reason]++;
  unread_total += in->unread_discarded;
  CHECK(in->bytes_acked <= in->bytes_sent && in->bytes_sent <= in->bytes_queued,
        "acked %llu sent %llu queued %llu", (unsigned long long)in->bytes_acked,
        (unsigned long long)in->bytes_sent, (unsigned long long)in->bytes_queued);
  if (in->acked_known)
    CHECK(in->bytes_queued == in->bytes_acked + in->unsent_discarded,
          "queued %llu != acked %llu + unsent %llu (reason %s)",
          (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_acked,
          (unsigned long long)in->unsent_discarded, lw_reason_name(in->reason));
  if (getenv("ATK_VERBOSE") || in->rst)
    fprintf(
        stderr,
        "  on_close: %s init=%d rst=%d err=%s q=%llu s=%llu a=%llu ud=%llu rd=%llu rcv=%llu "
        "tw=%d close_ms=%llu\n",
        lw_reason_name(in->reason), in->initiator, in->rst, lw_err_name(in->os_error),
        (unsigned long long)in->bytes_queued, (unsigned long long)in->bytes_sent,
        (unsigned long long)in->bytes_acked, (unsigned long long)in->unsent_discarded,
        (unsigned long long)in->unread_discarded, (unsigned long long)in->bytes_received,
        in->time_wait, (unsigned long long)in->close_ms);
}

static void respond(lw_conn *c, req_t *r, int code) {
  char h[256];
  size_t body = code == 413 ? 4096 : r->resp_size;
  int n = snprintf(
      h, sizeof(h), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n", code,
      code == 413 ? "Payload Too Large" : "OK", body, r->keep ? "keep-alive" : "close");
  lw_conn_write_copy(c, h, (size_t)n);
  if (body)
    lw_conn_write(c, bigbody, body, NULL, NULL);
  if (!r->keep)
    lw_close(c, 0);
}

static void parse_head(req_t *r) {
  r->body_left = 0;
  r->resp_size = 2;
  r->keep = !strcmp(mode, "ka");
  char *cl = strcasestr(r->head, "\r\ncontent-length:");
  if (cl)
    r->body_left = strtoull(cl + 17, NULL, 10);
  char *sp = strchr(r->head, ' ');
  if (sp && sp[1] == '/' && sp[2] >= '0' && sp[2] <= '9') {
    r->resp_size = strtoul(sp + 2, NULL, 10);
    if (r->resp_size > BIG)
      r->resp_size = BIG;
  }
  if (strcasestr(r->head, "\r\nconnection: close"))
    r->keep = 0;
}

static void on_read(lw_conn *c, long n, const char *buf) {
  req_t *r = lw_conn_get_data(c);
  if (n < 0)
    return; /* EOF: the library finishes the close */
  size_t off = 0;
  while (off < (size_t)n) {
    if (r->in_body) {
      uint64_t take =
          (r->body_left < (uint64_t)((size_t)n - off) ? r->body_left
                                                      : (uint64_t)((size_t)n - off));
      r->body_left -= take;
      off += (size_t)take;
      if (r->body_left == 0) {
        r->in_body = 0;
        r->hlen = 0;
        respond(c, r, 200);
        if (!r->keep)
          return;
      }
      continue;
    }
    if (r->hlen + 1 >= sizeof(r->head)) {
      lw_abort(c);
      return;
    }
    r->head[r->hlen++] = buf[off++];
    r->head[r->hlen] = 0;
    if (r->hlen >= 4 && !memcmp(r->head + r->hlen - 4, "\r\n\r\n", 4)) {
      parse_head(r);
      if (!strcmp(mode, "413")) {
        respond(c, r, 413);
        return;
      }
      if (r->body_left) {
        r->in_body = 1;
        continue;
      }
      r->hlen = 0;
      respond(c, r, 200);
      if (!r->keep)
        return;
    }
  }
}

static void on_accept(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  n_accept++;
  req_t *r = calloc(1, sizeof(*r));
  lw_conn_set_data(c, r);
  lw_conn_on_close(c, on_close);
  lw_conn_read_start(c, on_read);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: atk_http 413|close|ka RUNS 'cmd %%p'\n");
    return 2;
  }
  mode = argv[1];
  int runs = atoi(argv[2]);
  signal(SIGPIPE, SIG_IGN);
  bigbody = malloc(BIG);
  memset(bigbody, 'b', BIG);
  lw_loop *loop;
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  if (!strcmp(mode, "ka"))
    o.idle_timeout_ms = getenv("ATK_IDLE") ? atoi(getenv("ATK_IDLE")) : 300;
  if (getenv("ATK_LINGER_TIME"))
    o.linger_time_ms = (uint32_t)atoi(getenv("ATK_LINGER_TIME"));
  if (getenv("ATK_DEADLINE"))
    o.close_deadline_ms = (uint32_t)atoi(getenv("ATK_DEADLINE"));
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 128, &o, on_accept, &l) < 0)
    return 2;
  int port = lw_listener_port(l);
  const char *expect = getenv("ATK_EXPECT") ? getenv("ATK_EXPECT") : "200";
  int any_exit = getenv("ATK_ANY_EXIT") != NULL;
  int max_rst = getenv("ATK_MAX_RST") ? atoi(getenv("ATK_MAX_RST")) : 0;
  char cmd[2048], out[64];
  snprintf(out, sizeof(out), "/tmp/atk_http.%d.out", (int)getpid());
  int bad = 0;
  for (int i = 0; i < runs; i++) {
    char *d = cmd;
    for (const char *s = argv[3]; *s && d < cmd + sizeof(cmd) - 16; s++) {
      if (s[0] == '%' && s[1] == 'p') {
        d += sprintf(d, "%d", port);
        s++;
      } else
        *d++ = *s;
    }
    *d = 0;
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, 1);
      int ef = open("/dev/null", O_WRONLY);
      if (!getenv("ATK_VERBOSE"))
        dup2(ef, 2);
      execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
      _exit(127);
    }
    int st = 0;
    uint64_t end = atk_now() + 60000;
    while (waitpid(pid, &st, WNOHANG) == 0 && atk_now() < end)
      atk_run_for(loop, 5);
    if (atk_now() >= end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
    }
    atk_run_for(loop, 20);
    char buf[65536] = {0};
    int fd = open(out, O_RDONLY);
    ssize_t k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : 0;
    if (fd >= 0)
      close(fd);
    (void)k;
    int ex = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if ((!any_exit && ex != 0) || !strstr(buf, expect)) {
      bad++;
      fprintf(stderr, "  run %d: exit %d, stdout '%.200s'\n", i, ex, buf);
    }
  }
  /* let the lingering closes finish (bounded) */
  uint64_t end = atk_now() + 40000;
  while (n_closed < n_accept && atk_now() < end)
    atk_run_for(loop, 20);
  unlink(out);
  int stuck = n_accept - n_closed;
  printf("atk_http %s: runs=%d client_failures=%d accepted=%d closed=%d stuck=%d rst=%d "
         "unread=%llu reasons:",
         mode, runs, bad, n_accept, n_closed, stuck, n_rst, (unsigned long long)unread_total);
  for (int r = 0; r < LW_REASON__COUNT; r++)
    if (reasons[r])
      printf(" %s=%d", lw_reason_name((lw_close_reason)r), reasons[r]);
  printf("\n");
  CHECK(bad == 0, "%d of %d client runs failed", bad, runs);
  CHECK(stuck == 0, "%d connections never reported on_close", stuck);
  CHECK(n_rst <= max_rst, "%d connections ended with an RST (allowed %d)", n_rst, max_rst);
  lw_listener_close(l);
  atk_run_for(loop, 20);
  int rc = atk_end("atk_http", loop);
  lw_loop_close(loop);
  return rc;
}
