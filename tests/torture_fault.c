/*
 * torture_fault.c - link-time (--wrap) fault injection for tests/torture.c only.
 *
 * What is injected, and why each is a fault the real OS can produce:
 *   recv       EINTR (signal), EAGAIN (a spurious wakeup), a short read, ECONNRESET
 *   sendmsg    EINTR, EAGAIN (buffer full), a short write, ENOBUFS/ENOMEM, ECONNRESET
 *              (lw__sock_send_now's: every epoll send, io_uring's last one before a FIN)
 *   accept4    EINTR, EMFILE (fd exhaustion: the library must shed, not spin)
 *   io_uring_submit_and_wait[_timeout]  -EINTR before anything is submitted
 * EAGAIN on recv/sendmsg is safe to fake because epoll is level-triggered for both
 * (src/linux/epoll.c): the event comes again; io_uring's direct send falls back to the
 * ring. Faults that end a connection are
 * reported through tf_config.note so the model knows its ending was ours.
 */
#include "torture_fault.h"

#include "internal.h"

#include <errno.h>
#ifdef LW_HAVE_URING
#include <liburing.h>
#endif
#include <string.h>
#include <sys/socket.h>

ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
int __real_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags);
int __real_lw__sock_accept_shed(int lfd, int *reserve);
#ifdef LW_HAVE_URING
int __real_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
int __real_io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe,
                                            unsigned wait_nr, struct __kernel_timespec *ts,
                                            sigset_t *sigmask);
#endif

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags);
int __wrap_lw__sock_accept_shed(int lfd, int *reserve);
#ifdef LW_HAVE_URING
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
int __wrap_io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe,
                                            unsigned wait_nr, struct __kernel_timespec *ts,
                                            sigset_t *sigmask);
#endif

static _Thread_local int tf_on;
static _Thread_local int tf_suspended; /* inside the library's EMFILE shed: real calls */
static _Thread_local uint64_t tf_rng;
static tf_config tf_cfg;
static tf_counts tf_n;

void tf_enable(const tf_config *cfg) {
  tf_cfg = *cfg;
  tf_rng = cfg->seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  tf_on = 1;
}
void tf_disable(void) { tf_on = 0; }
void tf_get_counts(tf_counts *out) { *out = tf_n; }

static uint64_t tf_next(void) {
  uint64_t x = tf_rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return tf_rng = x;
}

static int tf_roll(unsigned permille) {
  return tf_on && !tf_suspended && permille && tf_next() % 1000 < permille;
}

static void tf_note(int fd, const char *what, int fatal) {
  if (tf_cfg.note)
    tf_cfg.note(fd, what, fatal);
}

/* One decision for a transfer call: 0 none, else the fault. */
enum { TF_NONE, TF_EINTR, TF_EAGAIN, TF_SHORT, TF_FATAL };
static int tf_pick(size_t len) {
  if (tf_roll(tf_cfg.fatal_permille))
    return TF_FATAL;
  if (!tf_roll(tf_cfg.soft_permille))
    return TF_NONE;
  switch (tf_next() % 3) {
  case 0:
    return TF_EINTR;
  case 1:
    return TF_EAGAIN;
  default:
    return len > 1 ? TF_SHORT : TF_EINTR;
  }
}

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags) {
  switch (tf_pick(len)) {
  case TF_EINTR:
    tf_n.eintr++;
    errno = EINTR;
    return -1;
  case TF_EAGAIN:
    tf_n.eagain++;
    errno = EAGAIN;
    return -1;
  case TF_SHORT:
    tf_n.short_io++;
    len = 1 + (size_t)(tf_next() % (len - 1));
    break;
  case TF_FATAL:
    tf_n.fatal++;
    tf_note(fd, "recv: injected ECONNRESET", 1);
    errno = ECONNRESET;
    return -1;
  default:
    break;
  }
  return __real_recv(fd, buf, len, flags);
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags) {
  size_t total = 0;
  for (size_t i = 0; i < msg->msg_iovlen; i++)
    total += msg->msg_iov[i].iov_len;
  switch (tf_pick(total)) {
  case TF_EINTR:
    tf_n.eintr++;
    errno = EINTR;
    return -1;
  case TF_EAGAIN:
    tf_n.eagain++;
    errno = EAGAIN;
    return -1;
  case TF_SHORT: {
    tf_n.short_io++;
    /* Offer fewer bytes: the kernel then takes at most that many, as it does when
     * the send buffer has only that much room. */
    size_t want = 1 + (size_t)(tf_next() % (total - 1));
    struct iovec iov[64];
    size_t n = 0, got = 0;
    for (size_t i = 0; i < msg->msg_iovlen && n < 64 && got < want; i++, n++) {
      iov[n] = msg->msg_iov[i];
      if (iov[n].iov_len > want - got)
        iov[n].iov_len = want - got;
      got += iov[n].iov_len;
    }
    struct msghdr m = *msg;
    m.msg_iov = iov;
    m.msg_iovlen = n;
    return __real_sendmsg(fd, &m, flags & ~MSG_MORE);
  }
  case TF_FATAL: {
    tf_n.fatal++;
    static const int errs[] = {ECONNRESET, ENOBUFS, ENOMEM};
    int e = errs[tf_next() % 3];
    tf_note(fd,
            e == ECONNRESET ? "sendmsg: injected ECONNRESET"
            : e == ENOBUFS  ? "sendmsg: injected ENOBUFS"
                            : "sendmsg: injected ENOMEM",
            1);
    errno = e;
    return -1;
  }
  default:
    return __real_sendmsg(fd, msg, flags);
  }
}

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags) {
  if (tf_roll(tf_cfg.emfile_permille)) {
    tf_n.emfile++;
    tf_note(-1, "accept4: injected EMFILE", 0);
    errno = EMFILE;
    return -1;
  }
  if (tf_roll(tf_cfg.soft_permille)) {
    tf_n.eintr++;
    errno = EINTR;
    return -1;
  }
  return __real_accept4(fd, addr, alen, flags);
}

int __wrap_lw__sock_accept_shed(int lfd, int *reserve) {
  tf_suspended++;
  int r = __real_lw__sock_accept_shed(lfd, reserve);
  tf_suspended--;
  return r;
}

#ifdef LW_HAVE_URING
/* A signal during the wait: nothing is submitted, the SQEs stay queued for the next
 * call (liburing returns -EINTR from io_uring_enter before or while waiting). */
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr) {
  if (tf_roll(tf_cfg.soft_permille)) {
    tf_n.submit_eintr++;
    return -EINTR;
  }
  return __real_io_uring_submit_and_wait(ring, wait_nr);
}

int __wrap_io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe,
                                            unsigned wait_nr, struct __kernel_timespec *ts,
                                            sigset_t *sigmask) {
  if (tf_roll(tf_cfg.soft_permille)) {
    tf_n.submit_eintr++;
    return -EINTR;
  }
  return __real_io_uring_submit_and_wait_timeout(ring, cqe, wait_nr, ts, sigmask);
}
#endif
