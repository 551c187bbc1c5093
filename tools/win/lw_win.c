/* lw_win.c - the Winsock wrappers behind lw_win.h (Windows build of the lastword tool).
 * Every wrapper sets errno from WSAGetLastError() on failure. */
#include "lw_win.h"

#include <stdarg.h>
#include <stdlib.h>

#undef socket
#undef accept
#undef accept4
#undef bind
#undef listen
#undef connect
#undef send
#undef recv
#undef setsockopt
#undef getsockopt
#undef getsockname
#undef shutdown
#undef close
#undef fcntl
#undef poll
#undef setenv

static void lw_w_startup(void) {
  static LONG done;
  if (InterlockedCompareExchange(&done, 1, 0) == 0) {
    WSADATA wd;
    WSAStartup(MAKEWORD(2, 2), &wd); /* reference-counted; never cleaned up */
  }
}

int lw_w_errno(int wsa) {
  switch (wsa) {
  case WSAECONNRESET:
  case WSAENETRESET:
    return ECONNRESET;
  case WSAECONNABORTED:
    return ECONNABORTED;
  case WSAECONNREFUSED:
    return ECONNREFUSED;
  case WSAETIMEDOUT:
    return ETIMEDOUT;
  case WSAEWOULDBLOCK:
    return EAGAIN;
  case WSAEINTR:
    return EINTR;
  case WSA_OPERATION_ABORTED:
    return ECANCELED;
  case WSAESHUTDOWN:
    return EPIPE;
  case WSAENOTCONN:
    return ENOTCONN;
  case WSAEISCONN:
    return EISCONN;
  case WSAEINPROGRESS:
    return EINPROGRESS;
  case WSAEALREADY:
    return EALREADY;
  case WSAEADDRINUSE:
    return EADDRINUSE;
  case WSAEAFNOSUPPORT:
    return EAFNOSUPPORT;
  case WSAENETUNREACH:
    return ENETUNREACH;
  case WSAEHOSTUNREACH:
    return EHOSTUNREACH;
  case WSAEMFILE:
    return EMFILE;
  case WSAENOBUFS:
    return ENOBUFS;
  case WSAEINVAL:
  case WSAEFAULT:
    return EINVAL;
  case WSAENOPROTOOPT:
    return ENOPROTOOPT;
  case WSAEOPNOTSUPP:
    return EOPNOTSUPP;
  case WSAENOTSOCK:
    return EBADF;
  default:
    return EIO;
  }
}

static int lw_w_fail(void) {
  errno = lw_w_errno(WSAGetLastError());
  return -1;
}

/* What fcntl(F_SETFL, O_NONBLOCK) asked for each socket (Winsock cannot report FIONBIO). */
#define LW_W_NB_MAX 256
static struct { int fd, nb; } lw_w_nb[LW_W_NB_MAX];
static SRWLOCK lw_w_nb_lock = SRWLOCK_INIT;

static int lw_w_nb_get(int fd) {
  int nb = 0;
  AcquireSRWLockShared(&lw_w_nb_lock);
  for (int i = 0; i < LW_W_NB_MAX; i++)
    if (lw_w_nb[i].fd == fd && lw_w_nb[i].nb)
      nb = 1;
  ReleaseSRWLockShared(&lw_w_nb_lock);
  return nb;
}

static void lw_w_nb_set(int fd, int nb) {
  AcquireSRWLockExclusive(&lw_w_nb_lock);
  int slot = -1;
  for (int i = 0; i < LW_W_NB_MAX; i++) {
    if (lw_w_nb[i].nb && lw_w_nb[i].fd == fd) {
      lw_w_nb[i].nb = 0; /* forget, set again below */
      slot = i;
    } else if (slot < 0 && !lw_w_nb[i].nb) {
      slot = i;
    }
  }
  if (nb && slot >= 0) {
    lw_w_nb[slot].fd = fd;
    lw_w_nb[slot].nb = 1;
  }
  ReleaseSRWLockExclusive(&lw_w_nb_lock);
}

int lw_w_socket(int af, int type, int proto) {
  lw_w_startup();
  SOCKET s =
      WSASocketW(af, type, proto, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET)
    return lw_w_fail();
  lw_w_nb_set((int)s, 0); /* a reused handle value starts blocking */
  return (int)s;          /* socket handles fit in an int (Windows keeps them below 2^24) */
}

int lw_w_accept(int fd, struct sockaddr *sa, int *len) {
  SOCKET s = accept((SOCKET)fd, sa, len);
  if (s == INVALID_SOCKET)
    return lw_w_fail();
  /* The accepted socket inherits the listener's blocking mode. */
  lw_w_nb_set((int)s, lw_w_nb_get(fd));
  return (int)s;
}

int lw_w_bind(int fd, const struct sockaddr *sa, int len) {
  return bind((SOCKET)fd, sa, len) == 0 ? 0 : lw_w_fail();
}

int lw_w_listen(int fd, int backlog) {
  return listen((SOCKET)fd, backlog) == 0 ? 0 : lw_w_fail();
}

int lw_w_connect(int fd, const struct sockaddr *sa, int len) {
  return connect((SOCKET)fd, sa, len) == 0 ? 0 : lw_w_fail();
}

static void lw_w_fionbio(int fd, int on) {
  u_long v = (u_long)on;
  ioctlsocket((SOCKET)fd, FIONBIO, &v);
}

/* A blocking call that ran out its SO_RCVTIMEO / SO_SNDTIMEO: Linux says EAGAIN, Winsock
 * WSAETIMEDOUT (which otherwise means a dead peer: ETIMEDOUT). */
static int lw_w_timeout_is_eagain(int fd, int opt, int e) {
  DWORD to = 0;
  int tl = (int)sizeof to;
  if (e == WSAETIMEDOUT && getsockopt((SOCKET)fd, SOL_SOCKET, opt, (char *)&to, &tl) == 0 &&
      to > 0)
    return WSAEWOULDBLOCK;
  return e;
}

ssize_t lw_w_send(int fd, const void *buf, size_t len, int flags) {
  if (len > 0x7fffffff)
    len = 0x7fffffff;
  int dw = (flags & MSG_DONTWAIT) && !lw_w_nb_get(fd);
  if (dw)
    lw_w_fionbio(fd, 1);
  int n = send((SOCKET)fd, buf, (int)len, flags & ~MSG_DONTWAIT);
  int e = WSAGetLastError();
  if (dw)
    lw_w_fionbio(fd, 0);
  if (n == SOCKET_ERROR) {
    errno = lw_w_errno(lw_w_timeout_is_eagain(fd, SO_SNDTIMEO, e));
    return -1;
  }
  return n;
}

ssize_t lw_w_recv(int fd, void *buf, size_t len, int flags) {
  if (len > 0x7fffffff)
    len = 0x7fffffff;
  int dw = (flags & MSG_DONTWAIT) && !lw_w_nb_get(fd);
  if (dw)
    lw_w_fionbio(fd, 1);
  int n = recv((SOCKET)fd, buf, (int)len, flags & ~MSG_DONTWAIT);
  int e = WSAGetLastError();
  if (dw)
    lw_w_fionbio(fd, 0);
  if (n == SOCKET_ERROR) {
    errno = lw_w_errno(lw_w_timeout_is_eagain(fd, SO_RCVTIMEO, e));
    return -1;
  }
  return n;
}

int lw_w_setsockopt(int fd, int level, int name, const void *val, int len) {
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO) &&
      len == (int)sizeof(struct timeval)) {
    const struct timeval *tv = val;
    DWORD ms = (DWORD)(tv->tv_sec * 1000 + tv->tv_usec / 1000);
    if (ms == 0 && tv->tv_usec > 0)
      ms = 1;
    return setsockopt((SOCKET)fd, level, name, (const char *)&ms, sizeof(ms)) == 0
               ? 0
               : lw_w_fail();
  }
  return setsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : lw_w_fail();
}

int lw_w_getsockopt(int fd, int level, int name, void *val, int *len) {
  return getsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : lw_w_fail();
}

int lw_w_getsockname(int fd, struct sockaddr *sa, int *len) {
  return getsockname((SOCKET)fd, sa, len) == 0 ? 0 : lw_w_fail();
}

int lw_w_shutdown(int fd, int how) { return shutdown((SOCKET)fd, how) == 0 ? 0 : lw_w_fail(); }

int lw_w_close(int fd) {
  if (closesocket((SOCKET)fd) == 0) {
    lw_w_nb_set(fd, 0);
    return 0;
  }
  if (WSAGetLastError() == WSAENOTSOCK && fd >= 0 && fd < 64)
    return _close(fd); /* a CRT descriptor */
  return lw_w_fail();
}

int lw_w_close_final(int fd) {
  int r = lw_w_close(fd);
  if (r == 0 || errno != EAGAIN)
    return r;
  /* SO_LINGER{1,N} on a non-blocking socket: WSAEWOULDBLOCK and the socket stays open
   * (A8). At cleanup, close it the blocking way (waits at most N s). */
  lw_w_fionbio(fd, 0);
  lw_w_nb_set(fd, 0);
  return lw_w_close(fd);
}

int lw_w_fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  int arg = cmd == F_SETFL ? va_arg(ap, int) : 0;
  va_end(ap);
  switch (cmd) {
  case F_GETFD: { /* "is this still a socket": getsockopt(SO_TYPE) */
    int type = 0, tl = (int)sizeof type;
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &tl) == 0)
      return 0;
    errno = EBADF;
    return -1;
  }
  case F_GETFL:
    return lw_w_nb_get(fd) ? O_NONBLOCK : 0;
  case F_SETFL: {
    u_long v = (arg & O_NONBLOCK) ? 1 : 0;
    if (ioctlsocket((SOCKET)fd, FIONBIO, &v) != 0)
      return lw_w_fail();
    lw_w_nb_set(fd, (int)v);
    return 0;
  }
  default:
    errno = EINVAL;
    return -1;
  }
}

int lw_w_poll(struct pollfd *p, unsigned long n, int timeout_ms) {
  int r = WSAPoll(p, n, timeout_ms);
  return r == SOCKET_ERROR ? lw_w_fail() : r;
}

int lw_w_is_wine(void) {
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  return nt && GetProcAddress(nt, "wine_get_version") != NULL;
}

const char *lw_w_wine_version(void) {
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  typedef const char *(*fn_t)(void);
  FARPROC f = nt ? GetProcAddress(nt, "wine_get_version") : NULL;
  fn_t v;
  if (!f)
    return NULL;
  memcpy(&v, &f, sizeof v); /* function pointer types differ: no direct cast warning */
  return v();
}

int lw_w_setenv(const char *name, const char *value, int overwrite) {
  if (!overwrite && getenv(name))
    return 0;
  return _putenv_s(name, value) == 0 ? 0 : -1;
}

/* The CRT removes a variable set to the empty string. */
int lw_w_unsetenv(const char *name) { return _putenv_s(name, "") == 0 ? 0 : -1; }
