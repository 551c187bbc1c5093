#include "helper.h"

#include <arpa/inet.h>
#ifndef _WIN32
#include <dirent.h>
#endif
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t lwt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#ifdef _WIN32
/* Windows (tests/win/posix/lwt_posix.h supplies the POSIX socket calls): sockets are
 * handles, so the leak check counts the process's handles. */
int lwt_fd_count(void) {
  DWORD n = 0;
  if (!GetProcessHandleCount(GetCurrentProcess(), &n))
    return -1;
  return (int)n;
}

int lwt_highest_fd(void) { return -1; } /* no descriptor table to scan */

const char *lwt_backend(void) { return "iocp"; } /* the only one there */
#else
int lwt_fd_count(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  while (readdir(d))
    n++;
  closedir(d);
  return n - 3; /* ".", "..", and the DIR's own fd */
}

const char *lwt_backend(void) {
  const char *b = getenv("LW_BACKEND");
  return b && *b ? b : "epoll";
}

int lwt_highest_fd(void) {
  int hi = -1;
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != self && fd > hi)
      hi = fd;
  }
  closedir(d);
  return hi;
}
#endif

void lwt_check_backend(lw_loop *loop) {
  if (strcmp(lw_loop_backend(loop), lwt_backend()) != 0) {
    printf("SKIP: asked for the %s backend, got %s (refused by this kernel)\n", lwt_backend(),
           lw_loop_backend(loop));
    exit(77);
  }
}

static void msleep(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static void *peer_main(void *arg) {
  lwt_peer *p = arg;
  const char *host = p->host ? p->host : "127.0.0.1";
  int v6 = strchr(host, ':') != NULL;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)p->port);
    inet_pton(AF_INET6, host, &a->sin6_addr);
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p->port);
    inet_pton(AF_INET, host, &a->sin_addr);
    len = sizeof(*a);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && p->rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &p->rcvbuf, sizeof(p->rcvbuf));
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
    p->connect_err = errno;
    if (fd >= 0)
      close(fd);
    atomic_store(&p->done, 1);
    return NULL;
  }
  size_t reqlen = 4 + p->extra;
  char *req = malloc(reqlen);
  memcpy(req, "GET\n", 4);
  memset(req + 4, 'x', p->extra);
  size_t off = 0;
  while (off < reqlen) {
    ssize_t w = send(fd, req + off, reqlen - off, MSG_NOSIGNAL);
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  free(req);
  if (p->shut_wr_after_send)
    shutdown(fd, SHUT_WR);
  if (p->delay_ms)
    msleep(p->delay_ms);
  char buf[65536];
  p->pattern_ok = 1;
  for (;;) {
    size_t want = p->read_pause_us ? 32768 : sizeof(buf);
    if (p->read_limit) {
      if (p->received >= p->read_limit)
        break;
      if (p->read_limit - p->received < want)
        want = p->read_limit - p->received;
    }
    ssize_t n = recv(fd, buf, want, 0);
    if (n == 0) {
      p->end_err = 0;
      goto out;
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      p->end_err = errno;
      goto out;
    }
    for (ssize_t i = 0; i < n; i++)
      if ((unsigned char)buf[i] != (p->received + (size_t)i) % 251)
        p->pattern_ok = 0;
    p->received += (size_t)n;
    if (p->read_pause_us)
      usleep((useconds_t)p->read_pause_us);
  }
  /* read_limit reached: hold, then end as told */
  p->end_err = -1;
  if (p->hold_ms)
    msleep(p->hold_ms);
  if (p->rst_after) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
out:
  close(fd);
  atomic_store(&p->done, 1);
  return NULL;
}

void lwt_peer_start(lwt_peer *p) {
  atomic_store(&p->done, 0);
  assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

void lwt_peer_join(lwt_peer *p) { pthread_join(p->thread, NULL); }

/* ---- server ---- */
static void srv_written(lw_conn *c, int status, void *arg) {
  lwt_server *s = arg;
  if (status == 0) {
    s->write_ok++;
    if (s->close_mode == LWT_CLOSE_NAIVE)
      assert_int_equal(lw_close_naive(c), 0);
    else if (s->close_mode == LWT_CLOSE_ABORT)
      assert_int_equal(lw_abort(c), 0);
  } else {
    assert_int_equal(status, LW_ECANCELED);
    s->write_cancelled++;
  }
}

static void srv_read(lw_conn *c, long nread, const char *buf) {
  lwt_server *s = lw_conn_get_data(c);
  if (nread == LW_EOF)
    return;
  for (long i = 0; i < nread; i++) {
    if (buf[i] != '\n')
      continue;
    lw_conn_read_stop(c);
    int r = 0;
    size_t chunk = s->write_chunk ? s->write_chunk : s->bytes;
    for (size_t off = 0; off < s->bytes && (r == 0 || r == LW_ABOVE_HIGH_WATER); off += chunk) {
      size_t n = LWT_MIN(chunk, s->bytes - off);
      int last = off + n == s->bytes; /* one callback: write_ok counts responses */
      r = lw_conn_write(c, s->payload + off, n, last ? srv_written : NULL, s);
    }
    assert_true(r == 0 || r == LW_ABOVE_HIGH_WATER);
    if (s->close_mode == LWT_CLOSE_GRACEFUL) {
      /* EALREADY: the first write already met the peer's RST and ended it. */
      r = lw_close(c, s->deadline_ms);
      assert_true(r == 0 || r == LW_EALREADY);
    }
    return;
  }
}

static void srv_closed(lw_conn *c, const lw_close_info *in) {
  lwt_server *s = lw_conn_get_data(c);
  s->closes++;
  s->last = *in;
  if (s->conn == c)
    s->conn = NULL;
}

static void srv_accept(lw_listener *l, lw_conn *c, int status) {
  lwt_server *s = lw_listener_get_data(l);
  assert_int_equal(status, 0);
  s->accepts++;
  s->conn = c;
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, srv_closed);
  lw_conn_set_read_size(c, 1);
  assert_int_equal(lw_conn_read_start(c, srv_read), 0);
}

void lwt_server_start(lwt_server *s, const char *host) {
  if (!s->bytes)
    s->bytes = 1024 * 1024;
  if (!s->deadline_ms)
    s->deadline_ms = 5000;
  s->payload = malloc(s->bytes);
  for (size_t i = 0; i < s->bytes; i++)
    s->payload[i] = (char)(i % 251);
  assert_int_equal(lw_loop_new(&s->loop, NULL), 0);
  lwt_check_backend(s->loop);
  assert_int_equal(lw_listener_new(s->loop, host ? host : "127.0.0.1", 0, 128, &s->opts,
                                   srv_accept, &s->listener),
                   0);
  lw_listener_set_data(s->listener, s);
  s->port = lw_listener_port(s->listener);
  assert_true(s->port > 0);
}

void lwt_server_stop(lwt_server *s) {
  lw_listener_close(s->listener);
  assert_int_equal(lw_loop_run(s->loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(s->loop), 0);
  free(s->payload);
}

static void guard_cb(lw_timer *t) { *(int *)lw_timer_get_data(t) = 1; }

void lwt_run_until(lw_loop *loop, atomic_int *flag, int *count, int want, int timeout_ms) {
  lw_timer *guard;
  int expired = 0;
  assert_int_equal(lw_timer_new(loop, &guard), 0);
  lw_timer_set_data(guard, &expired);
  lw_timer_start(guard, guard_cb, (uint64_t)timeout_ms, 0);
  /* A short ticker keeps the loop waking so a flag set by another thread is seen. */
  lw_timer *tick;
  assert_int_equal(lw_timer_new(loop, &tick), 0);
  lw_timer_start(tick, guard_cb, 5, 5);
  int ticked = 0;
  lw_timer_set_data(tick, &ticked);
  while (!expired) {
    int f = flag ? atomic_load(flag) : 1;
    int cnt_ok = count ? *count >= want : 1;
    if (f && cnt_ok)
      break;
    lw_loop_run(loop, LW_RUN_ONCE);
  }
  lw_timer_free(tick);
  lw_timer_free(guard);
  assert_false(expired);
}
