/* lwt_posix.c - the Winsock wrappers behind lwt_posix.h (Windows build of the cmocka
 * suite only). Every wrapper sets errno from WSAGetLastError() on failure. */
#include "lwt_posix.h"

#include <stdlib.h>
#include <string.h>

#undef socket
#undef connect
#undef send
#undef recv
#undef setsockopt
#undef getsockopt
#undef getsockname
#undef shutdown
#undef close
#undef signal

static void lwt_w_startup(void) {
  static LONG done;
  if (InterlockedCompareExchange(&done, 1, 0) == 0) {
    WSADATA wd;
    WSAStartup(MAKEWORD(2, 2), &wd); /* reference-counted; never cleaned up */
  }
}

int lwt_w_errno(int wsa) {
  switch (wsa) {
  case WSAECONNRESET:
    return ECONNRESET;
  case WSAECONNABORTED:
    return ECONNABORTED;
  case WSAECONNREFUSED:
    return ECONNREFUSED;
  case WSAETIMEDOUT: /* a SO_RCVTIMEO/SO_SNDTIMEO timeout, as Linux's EAGAIN */
  case WSAEWOULDBLOCK:
    return EAGAIN;
  case WSAEINTR:
    return EINTR;
  case WSAESHUTDOWN:
    return EPIPE;
  case WSAENOTCONN:
    return ENOTCONN;
  case WSAEADDRINUSE:
    return EADDRINUSE;
  case WSAEMFILE:
    return EMFILE;
  case WSAENOBUFS:
    return ENOBUFS;
  case WSAEINVAL:
    return EINVAL;
  case WSAENOTSOCK:
    return EBADF;
  default:
    return EIO;
  }
}

static int wfail(void) {
  errno = lwt_w_errno(WSAGetLastError());
  return -1;
}

int lwt_w_socket(int af, int type, int proto) {
  lwt_w_startup();
  SOCKET s = WSASocketW(af, type, proto, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET)
    return wfail();
  return (int)s; /* socket handles fit in an int (Windows keeps them below 2^24) */
}

int lwt_w_connect(int fd, const struct sockaddr *sa, int len) {
  return connect((SOCKET)fd, sa, len) == 0 ? 0 : wfail();
}

ssize_t lwt_w_send(int fd, const void *buf, size_t len, int flags) {
  if (len > 0x7fffffff)
    len = 0x7fffffff;
  int n = send((SOCKET)fd, buf, (int)len, flags);
  return n == SOCKET_ERROR ? wfail() : n;
}

ssize_t lwt_w_recv(int fd, void *buf, size_t len, int flags) {
  if (len > 0x7fffffff)
    len = 0x7fffffff;
  u_long nb = 1;
  if (flags & MSG_DONTWAIT)
    ioctlsocket((SOCKET)fd, FIONBIO, &nb);
  int n = recv((SOCKET)fd, buf, (int)len, flags & ~MSG_DONTWAIT);
  int e = WSAGetLastError();
  if (flags & MSG_DONTWAIT) {
    nb = 0;
    ioctlsocket((SOCKET)fd, FIONBIO, &nb);
  }
  if (n == SOCKET_ERROR) {
    errno = lwt_w_errno(e);
    return -1;
  }
  return n;
}

int lwt_w_setsockopt(int fd, int level, int name, const void *val, int len) {
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO) &&
      len == (int)sizeof(struct timeval)) {
    const struct timeval *tv = val;
    DWORD ms = (DWORD)(tv->tv_sec * 1000 + tv->tv_usec / 1000);
    if (ms == 0 && tv->tv_usec > 0)
      ms = 1;
    return setsockopt((SOCKET)fd, level, name, (const char *)&ms, sizeof(ms)) == 0 ? 0 : wfail();
  }
  return setsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : wfail();
}

int lwt_w_getsockopt(int fd, int level, int name, void *val, int *len) {
  return getsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : wfail();
}

int lwt_w_getsockname(int fd, struct sockaddr *sa, int *len) {
  return getsockname((SOCKET)fd, sa, len) == 0 ? 0 : wfail();
}

int lwt_w_shutdown(int fd, int how) { return shutdown((SOCKET)fd, how) == 0 ? 0 : wfail(); }

int lwt_w_close(int fd) {
  if (closesocket((SOCKET)fd) == 0)
    return 0;
  if (WSAGetLastError() == WSAENOTSOCK)
    return _close(fd); /* a CRT descriptor (a pipe) */
  return wfail();
}

void (*lwt_w_signal(int sig, void (*h)(int)))(int) {
  if (sig == SIGPIPE)
    return SIG_DFL; /* Windows has no SIGPIPE: nothing to ignore */
  return signal(sig, h);
}

int lwt_w_fork(void) {
  errno = ENOSYS;
  return -1;
}

int lwt_w_nosys(void) {
  errno = ENOSYS;
  return -1;
}

unsigned lwt_w_alarm(unsigned s) {
  (void)s;
  return 0;
}

/* ---- test cases skipped on Windows, or only under Wine, with the reason ---- */
static const struct {
  const char *test;
  int wine_only; /* 1: Wine cannot emulate it; real Windows must run it */
  const char *why;
} skips[] = {
    {"test_never_reads_never_closes", 1,
     "asserts bytes_acked (acked_known): needs SIO_TCP_INFO (Windows 10 1703+), which Wine 8 "
     "lacks; without it the backend proves acks only from FIN_WAIT_2/TIME_WAIT "
     "(src/win/README.md, Acknowledgements)"},
    {"test_naive_loses_bytes", 1,
     "what a naive closesocket() discards is the TCP stack's business: Wine's is Linux's, "
     "and with the IOCP backend's 64 KiB WSARecv already holding the unread request the "
     "client received all 4 MiB before the RST (measured); confirm on real Windows"},
    {"test_fd_reuse_between_cancel_and_completion", 0,
     "reuses a POSIX fd number via open(\"/dev/null\"); Windows socket handles are not CRT "
     "descriptors, and IOCP completions carry their OVERLAPPED, not a number"},
};

int lwt_w_is_wine(void) {
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  return nt && GetProcAddress(nt, "wine_get_version") != NULL;
}

#define NSKIPPER 8
static const char *skipper_why[NSKIPPER];
static int nskipper;
#define SKIPPER(i)                                                                             \
  static void skipper##i(void **state) {                                                       \
    (void)state;                                                                               \
    print_message("SKIP on %s: %s\n", lwt_w_is_wine() ? "Wine" : "Windows", skipper_why[i]);  \
    skip();                                                                                    \
  }
SKIPPER(0)
SKIPPER(1)
SKIPPER(2)
SKIPPER(3)
SKIPPER(4)
SKIPPER(5)
SKIPPER(6)
SKIPPER(7)
static const CMUnitTestFunction skippers[NSKIPPER] = {skipper0, skipper1, skipper2, skipper3,
                                                     skipper4, skipper5, skipper6, skipper7};

CMUnitTestFunction lwt_w_unit(const char *name, CMUnitTestFunction f) {
  for (size_t i = 0; i < sizeof(skips) / sizeof(skips[0]); i++) {
    if (strcmp(skips[i].test, name) != 0 || (skips[i].wine_only && !lwt_w_is_wine()))
      continue;
    if (nskipper == NSKIPPER)
      return f;
    skipper_why[nskipper] = skips[i].why;
    return skippers[nskipper++];
  }
  return f;
}
