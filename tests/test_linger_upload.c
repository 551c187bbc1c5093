/*
 * The discard policy (issue 14, item 3): a lingering close never resets because of
 * input while a byte we wrote is unacknowledged; input is discarded, bounded in time.
 *
 *   upload    the HTTP 413 pattern: the server answers as soon as it has the request
 *             line and calls lw_close without reading the body; the peer streams an
 *             8 MiB body without reading, and reads the answer only once it has sent
 *             all of it. 50 runs in a row: every byte of the 1 MiB answer, clean EOF.
 *   reading   the peer floods while it reads (poll on both directions), and stops
 *             sending once it has the whole 4 MiB answer and our FIN. 50 runs.
 *   endless   the peer reads everything but never stops sending: the close ends by
 *             linger_time_ms (1000 here), reason linger-timeout, with the answer
 *             delivered and unread_discarded reported.
 * With the old 1 MiB default byte bound (linger_discard_max) the first two reset the
 * connection before the peer had read the answer (discard-limit within ms of lw_close).
 */
#include "helper.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct srv {
  size_t resp;
  char *payload;
  int closes;
  lw_close_info last;
} srv;

static void on_close(lw_conn *c, const lw_close_info *in) {
  srv *s = lw_conn_get_data(c);
  s->closes++;
  s->last = *in;
}

static void on_read(lw_conn *c, long n, const char *buf) {
  if (n <= 0 || memchr(buf, '\n', (size_t)n) == NULL)
    return;
  srv *s = lw_conn_get_data(c);
  lw_conn_read_stop(c); /* the body is never read: the 413 pattern */
  int r = lw_conn_write(c, s->payload, s->resp, NULL, NULL);
  assert_true(r == 0 || r == LW_ABOVE_HIGH_WATER);
  assert_int_equal(lw_close(c, 0), 0);
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  lw_conn_set_data(c, lw_listener_get_data(l));
  lw_conn_on_close(c, on_close);
  lw_conn_set_read_size(c, 1); /* nothing past the request line is read */
  assert_int_equal(lw_conn_read_start(c, on_read), 0);
}

/* ---- the peer: one thread, non-blocking socket, poll() on both directions ---- */
typedef struct peer {
  int port;
  size_t body; /* bytes to send after the request line; SIZE_MAX: until max_ms */
  int read_while_sending;
  int after_eof; /* go on sending after our FIN arrived, until an error or max_ms */
  int max_ms;
  /* results */
  size_t sent, received;
  int pattern_ok, eof, err;
  atomic_int done;
  pthread_t thread;
} peer;

static void *peer_main(void *arg) {
  peer *p = arg;
  p->pattern_ok = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    p->err = errno;
    goto out;
  }
  send(fd, "POST\n", 5, MSG_NOSIGNAL);
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  static char junk[65536]; /* no '\n': the server would not look anyway */
  char buf[65536];
  uint64_t end = lwt_now_ms() + (uint64_t)p->max_ms;
  while ((!p->eof || p->after_eof) && !p->err && lwt_now_ms() < end) {
    int sending = p->sent < p->body;
    int reading = !p->eof && (!sending || p->read_while_sending);
    struct pollfd pf = {.fd = fd,
                        .events = (short)((sending ? POLLOUT : 0) | (reading ? POLLIN : 0))};
    if (poll(&pf, 1, 50) <= 0)
      continue;
    if (sending && (pf.revents & (POLLOUT | POLLERR | POLLHUP))) {
      size_t want = LWT_MIN(sizeof(junk), p->body - p->sent);
      ssize_t w = send(fd, junk, want, MSG_NOSIGNAL);
      if (w > 0)
        p->sent += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR)
        p->err = errno;
    }
    if (reading && (pf.revents & (POLLIN | POLLERR | POLLHUP))) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n == 0)
        p->eof = 1;
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        p->err = errno;
      for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] != (p->received + (size_t)i) % 251)
          p->pattern_ok = 0;
      if (n > 0)
        p->received += (size_t)n;
    }
  }
out:
  if (fd >= 0)
    close(fd);
  atomic_store(&p->done, 1);
  return NULL;
}

typedef struct world {
  lw_loop *loop;
  lw_listener *l;
  srv s;
} world;

static void world_start(world *w, size_t resp, const lw_conn_options *o) {
  memset(w, 0, sizeof(*w));
  w->s.resp = resp;
  w->s.payload = malloc(resp);
  for (size_t i = 0; i < resp; i++)
    w->s.payload[i] = (char)(i % 251);
  assert_int_equal(lw_loop_new(&w->loop, NULL), 0);
  lwt_check_backend(w->loop);
  assert_int_equal(lw_listener_new(w->loop, "127.0.0.1", 0, 16, o, on_accept, &w->l), 0);
  lw_listener_set_data(w->l, &w->s);
}

static void world_stop(world *w) {
  lw_listener_close(w->l);
  assert_int_equal(lw_loop_run(w->loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(w->loop), 0);
  free(w->s.payload);
}

/* One connection: returns after both the server's on_close and the peer are done. */
static void one(world *w, peer *p) {
  int before = w->s.closes;
  p->port = lw_listener_port(w->l);
  atomic_store(&p->done, 0);
  assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
  lwt_run_until(w->loop, NULL, &w->s.closes, before + 1, p->max_ms + 5000);
  lwt_run_until(w->loop, &p->done, NULL, 0, p->max_ms + 5000);
  pthread_join(p->thread, NULL);
}

static void runs(size_t resp, size_t body, int read_while_sending, const char *what) {
  int fds = lwt_fd_count();
  static world w;
  world_start(&w, resp, NULL); /* the defaults: this is what users get */
  int ok = 0;
  uint64_t discarded = 0;
  for (int i = 0; i < 50; i++) {
    peer p = {0};
    p.body = body;
    p.read_while_sending = read_while_sending;
    p.max_ms = 10000;
    one(&w, &p);
    int good = p.received == resp && p.pattern_ok && p.eof && p.err == 0 &&
               (body == SIZE_MAX || p.sent == body) && !w.s.last.rst &&
               w.s.last.bytes_acked == resp;
    if (!good)
      print_message("%s run %d: peer got %zu/%zu (pattern %d eof %d err %d, sent %zu/%zu); "
                    "server %s rst %d acked %llu discarded %llu\n",
                    what, i, p.received, resp, p.pattern_ok, p.eof, p.err, p.sent, body,
                    lw_reason_name(w.s.last.reason), w.s.last.rst,
                    (unsigned long long)w.s.last.bytes_acked,
                    (unsigned long long)w.s.last.unread_discarded);
    ok += good;
    discarded += w.s.last.unread_discarded;
  }
  print_message("%s: %d of 50 runs delivered the whole %zu-byte answer; %llu bytes discarded "
                "in all\n",
                what, ok, resp, (unsigned long long)discarded);
  world_stop(&w);
  assert_int_equal(ok, 50);
  assert_int_equal(lwt_fd_count(), fds);
}

static void upload(void **st) {
  (void)st;
  runs(1024 * 1024, 8u * 1024 * 1024, 0, "upload (reads after sending 8 MiB)");
}

static void reading_flood(void **st) {
  (void)st;
  runs(4u * 1024 * 1024, SIZE_MAX, 1, "reading flooder");
}

static void endless(void **st) {
  (void)st;
  int fds = lwt_fd_count();
  static world w;
  lw_conn_options o = {0};
  o.linger_time_ms = 1000;
  world_start(&w, 256 * 1024, &o);
  peer p = {0};
  p.body = SIZE_MAX;
  p.read_while_sending = 1;
  p.after_eof = 1;
  p.max_ms = 8000;
  uint64_t t0 = lwt_now_ms();
  one(&w, &p);
  uint64_t ms = w.s.last.close_ms;
  print_message("endless flood: %s rst %d after %llu ms (close_ms), %llu bytes discarded; peer "
                "got %zu/%zu, err %d, %llu ms in all\n",
                lw_reason_name(w.s.last.reason), w.s.last.rst, (unsigned long long)ms,
                (unsigned long long)w.s.last.unread_discarded, p.received, w.s.resp, p.err,
                (unsigned long long)(lwt_now_ms() - t0));
  world_stop(&w);
  assert_int_equal(w.s.last.reason, LW_REASON_LINGER_TIMEOUT);
  assert_int_equal(w.s.last.rst, 1);
  assert_true(ms >= 900 && ms <= 3000);
  assert_true(w.s.last.unread_discarded > 1024 * 1024);
  if (LWT_ACKS_KNOWN) /* Wine cannot count acknowledged bytes at an RST */
    assert_int_equal(w.s.last.bytes_acked, w.s.resp);
  assert_int_equal(p.received, w.s.resp); /* the answer arrived before the RST */
  assert_true(p.pattern_ok);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {cmocka_unit_test(upload), cmocka_unit_test(reading_flood),
                                     cmocka_unit_test(endless)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
