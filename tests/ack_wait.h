/*
 * ack_wait.h - a server and a peer that put a connection in ACK_WAIT with bytes the
 * peer never acknowledges: the peer sends its request and its FIN at once, with a
 * tiny receive buffer, and never reads; the server answers 512 KiB (its send buffer is
 * made large enough to take them all), so its FIN follows and the peer's FIN is read:
 * both FINs done, SIOCOUTQ far from 0. Header-only; include after helper.h/netns.h.
 */
#ifndef LW_TEST_ACK_WAIT_H
#define LW_TEST_ACK_WAIT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define AW_RESP (512u * 1024u)

typedef struct aw_srv {
  lw_loop *loop;
  lw_listener *l;
  char *payload;
  uint32_t deadline_ms;
  int closes;
  lw_close_info last;
  uint64_t t_close;
  int reached_ack_wait; /* the peer's FIN was read (read callback saw nothing: discard) */
} aw_srv;

static inline void aw_on_close(lw_conn *c, const lw_close_info *in) {
  aw_srv *s = lw_conn_get_data(c);
  s->closes++;
  s->last = *in;
  s->t_close = lwt_now_ms();
}

static inline void aw_on_read(lw_conn *c, long n, const char *buf) {
  if (n <= 0 || memchr(buf, '\n', (size_t)n) == NULL)
    return;
  aw_srv *s = lw_conn_get_data(c);
  lw_conn_read_stop(c);
  int r = lw_conn_write(c, s->payload, AW_RESP, NULL, NULL);
  assert_true(r == 0 || r == 1);
  assert_int_equal(lw_close(c, s->deadline_ms), 0);
}

static inline void aw_on_accept(lw_listener *l, lw_conn *c, int status) {
  assert_int_equal(status, 0);
  int big = 4 * 1024 * 1024; /* the whole answer fits in the kernel: the FIN follows it */
  setsockopt(lw_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  lw_conn_set_data(c, lw_listener_get_data(l));
  lw_conn_on_close(c, aw_on_close);
  lw_conn_set_read_size(c, 1);
  assert_int_equal(lw_conn_read_start(c, aw_on_read), 0);
}

static inline void aw_start(aw_srv *s, const char *host, const lw_conn_options *o) {
  s->payload = calloc(1, AW_RESP);
  assert_int_equal(lw_loop_new(&s->loop, NULL), 0);
  lwt_check_backend(s->loop);
  assert_int_equal(lw_listener_new(s->loop, host, 0, 16, o, aw_on_accept, &s->l), 0);
  lw_listener_set_data(s->l, s);
}

static inline void aw_stop(aw_srv *s) {
  lw_listener_close(s->l);
  assert_int_equal(lw_loop_run(s->loop, LW_RUN_DEFAULT), 0);
  assert_int_equal(lw_loop_close(s->loop), 0);
  free(s->payload);
}

/* The peer: request + FIN, never reads; after hold_ms it resets (rst) or just closes. */
typedef struct aw_peer {
  const char *host;
  int port;
  int nsfd; /* >= 0: setns() into it first */
  int hold_ms;
  int rst;
  uint64_t t_end; /* when it reset or closed */
  atomic_int connected;
  atomic_int vanish_done; /* netns: the test dropped its packets; just close silently */
  atomic_int done;
  pthread_t thread;
} aw_peer;

static inline void *aw_peer_main(void *arg) {
  aw_peer *p = arg;
  if (p->nsfd >= 0 && setns(p->nsfd, CLONE_NEWNET) < 0)
    goto out;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
  inet_pton(AF_INET, p->host, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    goto out;
  }
  send(fd, "GET\n", 4, MSG_NOSIGNAL);
  usleep(100 * 1000); /* the server's FIN is asked for first: the initiator is it */
  shutdown(fd, SHUT_WR);
  atomic_store(&p->connected, 1);
  uint64_t end = lwt_now_ms() + (uint64_t)p->hold_ms;
  while (lwt_now_ms() < end)
    usleep(5000);
  if (p->rst) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  p->t_end = lwt_now_ms();
  close(fd);
out:
  atomic_store(&p->done, 1);
  return NULL;
}

static inline void aw_peer_start(aw_peer *p) {
  atomic_store(&p->done, 0);
  atomic_store(&p->connected, 0);
  assert_int_equal(pthread_create(&p->thread, NULL, aw_peer_main, p), 0);
}

#endif
