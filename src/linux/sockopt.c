/*
 * sockopt.c - Linux socket helpers used by the core (not backend-specific: the epoll
 * and io_uring backends share them). Each function says which kernel behaviour it
 * relies on.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's is older) */
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int lw__err_from_errno(int e) {
  switch (e) {
  case 0:
    return 0;
  case EINVAL:
    return LW_EINVAL;
  case ENOMEM:
    return LW_ENOMEM;
  case EBUSY:
    return LW_EBUSY;
  case EAGAIN:
    return LW_EAGAIN;
  case ECANCELED:
    return LW_ECANCELED;
  case ECONNRESET:
    return LW_ECONNRESET;
  case ECONNREFUSED:
    return LW_ECONNREFUSED;
  case ECONNABORTED:
    return LW_ECONNABORTED;
  case ETIMEDOUT:
    return LW_ETIMEDOUT;
  case EPIPE:
    return LW_EPIPE;
  case ENOTCONN:
    return LW_ENOTCONN;
  case EADDRINUSE:
    return LW_EADDRINUSE;
  case EADDRNOTAVAIL:
    return LW_EADDRNOTAVAIL;
  case EAFNOSUPPORT:
    return LW_EAFNOSUPPORT;
  case EMFILE:
    return LW_EMFILE;
  case ENFILE:
    return LW_ENFILE;
  case EACCES:
    return LW_EACCES;
  case ENETUNREACH:
    return LW_ENETUNREACH;
  case EHOSTUNREACH:
    return LW_EHOSTUNREACH;
  case ENOSYS:
    return LW_ENOSYS;
  case ENOBUFS:
    return LW_ENOBUFS;
  case ENOENT:
    return LW_ENOENT;
  case EPERM:
    return LW_EPERM;
  default:
    return LW_EIO;
  }
}

uint64_t lw__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int lw__sock_close(int fd) { return close(fd); }

ssize_t lw__sock_send_now(int fd, const lw__iov *iov, int n_iov, int more) {
  struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n_iov};
  ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
               ? 0
               : lw__err_from_errno(errno);
  return n;
}

int lw__sock_nonblock_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return lw__err_from_errno(errno);
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
    return lw__err_from_errno(errno);
  return 0;
}

int lw__sock_listen(const char *host, int port, int backlog, int *out_fd, int *out_port) {
  struct sockaddr_storage ss;
  int len;
  int r = lw__addr_parse(host, port, &ss, &len);
  if (r < 0)
    return r;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return lw__err_from_errno(errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 ||
      listen(fd, backlog > 0 ? backlog : 511) < 0) {
    r = lw__err_from_errno(errno);
    close(fd);
    return r;
  }
  socklen_t slen = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &slen);
  *out_port = lw__addr_port(&ss);
  *out_fd = fd;
  return 0;
}

int lw__sock_check_listening(int fd, int *port) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || !v)
    return LW_EINVAL;
  len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0 || v != SOCK_STREAM)
    return LW_EINVAL;
  struct sockaddr_storage ss;
  len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return lw__err_from_errno(errno);
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
    return LW_EINVAL;
  *port = lw__addr_port(&ss);
  return lw__sock_nonblock_cloexec(fd);
}

/* Starts a non-blocking connect. Returns 0 (connected or in progress) or an error. */
int lw__sock_connect_start(const char *host, int port, int *out_fd) {
  struct sockaddr_storage ss;
  int len;
  int r = lw__addr_parse(host, port, &ss, &len);
  if (r < 0)
    return r;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return lw__err_from_errno(errno);
  if (connect(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 && errno != EINPROGRESS) {
    r = lw__err_from_errno(errno);
    close(fd);
    return r;
  }
  *out_fd = fd;
  return 0;
}

/* Reading SO_ERROR clears it (FINDINGS.md): call it once, when the error is needed. */
int lw__sock_so_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    return lw__err_from_errno(errno);
  return lw__err_from_errno(err);
}

int lw__sock_shutdown_wr(int fd) {
  return shutdown(fd, SHUT_WR) < 0 ? lw__err_from_errno(errno) : 0;
}

/* SO_LINGER{1,0}: close() then sends RST and frees the socket at once, no TIME_WAIT
 * (tcp_close -> tcp_disconnect when sk_lingertime == 0; A6, A9). */
int lw__sock_set_linger0(int fd) {
  struct linger lg = {1, 0};
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0 ? lw__err_from_errno(errno)
                                                                    : 0;
}

int lw__sock_set_nodelay(int fd, int on) {
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0
             ? lw__err_from_errno(errno)
             : 0;
}

/* The kernel's limits: MAX_TCP_KEEPIDLE/KEEPINTVL 32767 s, MAX_TCP_KEEPCNT 127. */
int lw__sock_set_liveness(int fd, int keepalive, unsigned idle_s, unsigned intvl_s,
                          unsigned cnt, unsigned user_timeout_ms) {
  int r = 0;
  if (keepalive) {
    int one = 1, idle = (int)LW__MIN(idle_s, 32767u), intvl = (int)LW__MIN(intvl_s, 32767u),
        n = (int)LW__MIN(cnt, 127u);
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
        (idle && setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0) ||
        (intvl && setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0) ||
        (n && setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &n, sizeof(n)) < 0))
      r = lw__err_from_errno(errno);
  }
  if (user_timeout_ms) {
    unsigned ut = user_timeout_ms;
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut)) < 0)
      r = lw__err_from_errno(errno);
  }
  return r;
}

/* SIOCOUTQ = write_seq - snd_una: bytes not yet acknowledged, plus 1 for a FIN sent
 * and not yet acknowledged (tcp_send_fin advances write_seq). 0 means the peer's TCP
 * has acknowledged every byte and our FIN. */
long lw__sock_outq(int fd) {
  int n = 0;
  return ioctl(fd, SIOCOUTQ, &n) < 0 ? -1 : (long)n;
}

long lw__sock_inq(int fd) {
  int n = 0;
  return ioctl(fd, SIOCINQ, &n) < 0 ? -1 : (long)n;
}

/* tcpi_bytes_acked (RFC 4898 HCThruOctetsAcked, Linux >= 4.1) counts sequence space
 * acknowledged through tcp_snd_una_update(): on an actively opened socket that includes
 * the SYN (tcp_ack in SYN_SENT), on an accepted one it does not (SYN_RECV sets snd_una
 * directly); and, once acknowledged, the FIN. Returned raw; conn.c removes the SYN for
 * connections it opened and clamps to the data bytes sent (removing the FIN). */
void lw__sock_snapshot(int fd, lw__tcp_snapshot *s) {
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  memset(&ti, 0, sizeof(ti));
  s->state = -1;
  s->bytes_acked = 0;
  s->acked_known = 0;
  s->rtt_us = 0;
  s->silent_ms = 0;
  s->silent_known = 0;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
    return;
  s->state = ti.tcpi_state;
  s->rtt_us = ti.tcpi_rtt;
  /* tcpi_last_ack_recv: since the last segment that advanced rcv_tstamp (any ACK,
   * keepalive answers included); tcpi_last_data_recv: since the last data segment. */
  s->silent_ms = LW__MIN(ti.tcpi_last_ack_recv, ti.tcpi_last_data_recv);
  s->silent_known = 1;
  if (len >= offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked)) {
    s->bytes_acked = ti.tcpi_bytes_acked;
    s->acked_known = 1;
  }
}

int lw__sock_progress(int fd, uint64_t *acked, uint32_t *quiet_ms) {
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  memset(&ti, 0, sizeof(ti));
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
      len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
    return -1;
  *acked = ti.tcpi_bytes_acked;
  *quiet_ms = LW__MIN(ti.tcpi_last_data_recv, ti.tcpi_last_data_sent);
  return 0;
}

/* One descriptor per loop kept open for the EMFILE dance: close it, accept(), close
 * what was accepted (the peer sees a reset), reopen it (libuv's uv__emfile_trick). */
int lw__sock_reserve_open(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

int lw__sock_accept_shed(int lfd, int *reserve) {
  int n = 0;
  if (*reserve < 0)
    return 0;
  close(*reserve);
  *reserve = -1;
  for (int i = 0; i < 1024; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      break;
    /* linger0: tell the peer at once (RST) instead of leaving it a half-open socket
     * that looks like a dead server. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    n++;
  }
  *reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return n;
}

/* poll() with a zero timeout: tcp_poll reports POLLRDHUP once the peer's FIN has been
 * taken in order (RCV_SHUTDOWN, the CLOSE_WAIT transition), without the socket lock
 * that TCP_INFO takes: ~0.65 us against ~1.3 us for TCP_INFO here (a syscall alone is
 * ~0.38 us), on the path every graceful close takes. */
int lw__sock_peer_fin_queued(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP) != 0;
}
