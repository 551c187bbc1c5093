/*
 * handoff.c - listening sockets passed from one process to the next (Unix): systemd
 * socket activation (sd_listen_fds(3)) and the hand-off to a successor for a restart
 * that drops nothing. Only environment variables and inherited descriptors: no daemon,
 * no Unix socket, nothing the library links beyond libc.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SD_LISTEN_FDS_START 3
#define LW__NAMES_MAX 4096

/* Linux: on a LISTENING socket, tcp_get_info() reports the accept-queue length
 * (sk_ack_backlog) in tcpi_unacked and the backlog bound in tcpi_sacked. */
int lw__sock_accept_queue(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  memset(&ti, 0, sizeof(ti));
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
    return lw__err_from_errno(errno);
  if (ti.tcpi_state != 10 /* TCP_LISTEN */)
    return LW_EINVAL;
  return ti.tcpi_unacked > INT_MAX ? INT_MAX : (int)ti.tcpi_unacked;
}

/* A decimal number that fits an int, nothing else (sd_listen_fds refuses "3x"). */
static int parse_int(const char *s, const char **end, int *out) {
  if (!s || *s < '0' || *s > '9')
    return -1;
  long v = 0;
  while (*s >= '0' && *s <= '9') {
    v = v * 10 + (*s++ - '0');
    if (v > INT_MAX)
      return -1;
  }
  *end = s;
  *out = (int)v;
  return 0;
}

static int set_cloexec(int fd, int on) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0)
    return lw__err_from_errno(errno);
  int nf = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
  if (nf != fl && fcntl(fd, F_SETFD, nf) < 0)
    return lw__err_from_errno(errno);
  return 0;
}

static char names_buf[LW__NAMES_MAX];

int lw_listen_fds(int *fds, const char **names, int max) {
  if (max < 0 || (max > 0 && !fds))
    return LW_EINVAL;
  const char *pid_s = getenv("LISTEN_PID");
  const char *n_s = getenv("LISTEN_FDS");
  const char *own = getenv("LW_LISTEN_FDS");
  int n = 0;
  if (pid_s && n_s) {
    /* systemd's: for this very process only (a child that inherited the environment
     * must not take its parent's sockets: LISTEN_PID says whose they are). */
    const char *e;
    int pid, cnt;
    if (parse_int(pid_s, &e, &pid) < 0 || *e || parse_int(n_s, &e, &cnt) < 0 || *e)
      return LW_EINVAL;
    if (pid != (int)getpid()) {
      /* Not ours (inherited from a parent): unset all the same, as sd_listen_fds(1). */
      unsetenv("LISTEN_PID");
      unsetenv("LISTEN_FDS");
      unsetenv("LISTEN_FDNAMES");
      return 0;
    }
    if (cnt > INT_MAX - SD_LISTEN_FDS_START)
      return LW_EINVAL;
    const char *fdnames = getenv("LISTEN_FDNAMES");
    size_t used = 0;
    const char *p = fdnames;
    for (int i = 0; i < cnt; i++) {
      int fd = SD_LISTEN_FDS_START + i;
      int r = set_cloexec(fd, 1);
      if (r < 0)
        return r;
      if (i >= max)
        continue;
      fds[i] = fd;
      if (names) {
        /* The i-th colon-separated name, copied into names_buf. */
        const char *q = p ? strchr(p, ':') : NULL;
        size_t len = p ? (q ? (size_t)(q - p) : strlen(p)) : 0;
        if (used + len + 1 > sizeof(names_buf))
          len = 0;
        memcpy(names_buf + used, p ? p : "", len);
        names_buf[used + len] = '\0';
        names[i] = names_buf + used;
        used += len + 1;
        p = q ? q + 1 : NULL;
      }
    }
    n = cnt;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
  } else if (own && *own) {
    const char *p = own;
    for (;;) {
      int fd;
      if (parse_int(p, &p, &fd) < 0 || (*p && *p != ','))
        return LW_EINVAL;
      if (n < max)
        fds[n] = fd;
      if (names && n < max)
        names[n] = "";
      n++;
      if (!*p)
        break;
      p++;
    }
    for (int i = 0; i < n && i < max; i++) {
      int r = set_cloexec(fds[i], 1);
      if (r < 0)
        return r;
    }
  }
  unsetenv("LW_LISTEN_FDS");
  return n;
}

static int handoff_wfd = -1;

int lw_listeners_handoff(lw_listener *const *ls, int n, int *ready_fd) {
  if (!ls || n <= 0 || !ready_fd)
    return LW_EINVAL;
  char list[1024];
  size_t used = 0;
  for (int i = 0; i < n; i++) {
    int fd = ls[i] ? lw_listener_fd(ls[i]) : -1;
    if (fd < 0)
      return LW_EINVAL;
    int w = snprintf(list + used, sizeof(list) - used, "%s%d", i ? "," : "", fd);
    if (w < 0 || (size_t)w >= sizeof(list) - used)
      return LW_EINVAL;
    used += (size_t)w;
  }
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
    return lw__err_from_errno(errno);
  /* The successor's end: inherited, and blocking is irrelevant (one write of 1 byte). */
  int r = set_cloexec(p[1], 0);
  char wfd[16];
  snprintf(wfd, sizeof(wfd), "%d", p[1]);
  if (r == 0 && (setenv("LW_LISTEN_FDS", list, 1) < 0 || setenv("LW_READY_FD", wfd, 1) < 0))
    r = lw__err_from_errno(errno);
  for (int i = 0; r == 0 && i < n; i++)
    r = set_cloexec(lw_listener_fd(ls[i]), 0);
  if (r < 0) {
    lw_listeners_handoff_end(ls, n);
    close(p[0]);
    close(p[1]);
    return r;
  }
  if (handoff_wfd >= 0)
    close(handoff_wfd);
  handoff_wfd = p[1];
  *ready_fd = p[0];
  return 0;
}

void lw_listeners_handoff_end(lw_listener *const *ls, int n) {
  for (int i = 0; ls && i < n; i++) {
    int fd = ls[i] ? lw_listener_fd(ls[i]) : -1;
    if (fd >= 0)
      set_cloexec(fd, 1);
  }
  unsetenv("LW_LISTEN_FDS");
  unsetenv("LW_READY_FD");
  if (handoff_wfd >= 0) {
    close(handoff_wfd); /* the successor holds its own copy: EOF when it exits */
    handoff_wfd = -1;
  }
}

int lw_handoff_ready(void) {
  const char *s = getenv("LW_READY_FD");
  if (!s || !*s)
    return 0;
  const char *e;
  int fd;
  int bad = parse_int(s, &e, &fd) < 0 || *e;
  unsetenv("LW_READY_FD");
  if (bad)
    return LW_EINVAL;
  char b = 'R';
  ssize_t w;
  do
    w = write(fd, &b, 1);
  while (w < 0 && errno == EINTR);
  int err = w == 1 ? 0 : lw__err_from_errno(errno);
  close(fd);
  return err < 0 ? err : 1;
}
