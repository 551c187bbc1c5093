/*
 * sockopt.c - the Windows versions of the OS socket helpers the core calls (lw__sock_*,
 * declared in internal.h; src/linux/sockopt.c is the Linux twin). Each function says
 * what Windows offers and where it falls short of Linux.
 *
 * Descriptors: the core keeps sockets in an `int`. A SOCKET is a kernel handle value
 * (UINT_PTR) that in practice is small and a multiple of 4, so it fits; every cast
 * below is (SOCKET)(intptr_t)fd / (int)s. See README.md ("core changes").
 */
#include "win.h"

#include <errno.h>
#include <limits.h>
#include <iphlpapi.h>
#include <stdlib.h>
#include <string.h>

/* Not in mingw-w64's headers (Windows 10 1709+ values, ws2ipdef.h in the SDK). */
#ifndef TCP_KEEPALIVE
#define TCP_KEEPALIVE 3 /* = TCP_KEEPIDLE, seconds */
#endif
#ifndef TCP_MAXRT
#define TCP_MAXRT 5 /* seconds */
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 16
#endif
#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 17
#endif

#define SOCK(fd) ((SOCKET)(intptr_t)(fd))

/* ---------------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------------------- */
int lw__err_from_win(unsigned long e) {
  switch (e) {
  case 0:
    return 0;
  /* The peer's RST. An overlapped operation that fails because of it completes with
   * STATUS_CONNECTION_RESET, which GetQueuedCompletionStatus reports as
   * ERROR_NETNAME_DELETED (64) and WSAGetOverlappedResult as WSAECONNRESET. */
  case ERROR_NETNAME_DELETED:
  case WSAECONNRESET:
  case WSAEDISCON:
    return LW_ECONNRESET;
  /* Our own stack aborted it (retransmissions exhausted, local abort). */
  case WSAECONNABORTED:
  case ERROR_CONNECTION_ABORTED:
  case ERROR_REQUEST_ABORTED:
    return LW_ECONNABORTED;
  /* A dead peer: keepalive or TCP_MAXRT gave up. Real Windows documents WSAENETRESET
   * for a keepalive failure; Wine (Linux underneath) reports WSAETIMEDOUT. Both are
   * DEAD_PEER. ERROR_SEM_TIMEOUT is what STATUS_IO_TIMEOUT becomes in Win32 terms. */
  case WSAETIMEDOUT:
  case ERROR_SEM_TIMEOUT:
  case WSAENETRESET:
  case ERROR_TIMEOUT:
    return LW_ETIMEDOUT;
  case WSAECONNREFUSED:
  case ERROR_CONNECTION_REFUSED:
  case ERROR_PORT_UNREACHABLE:
    return LW_ECONNREFUSED;
  case ERROR_OPERATION_ABORTED: /* = WSA_OPERATION_ABORTED: CancelIoEx or closesocket */
    return LW_ECANCELED;
  case WSAESHUTDOWN:
    return LW_EPIPE;
  case WSAENOTCONN:
  case ERROR_NOT_CONNECTED:
    return LW_ENOTCONN;
  case WSAEWOULDBLOCK:
  case WSA_IO_PENDING:
    return LW_EAGAIN;
  case WSAEINVAL:
  case ERROR_INVALID_PARAMETER:
  case WSAENOTSOCK:
  case ERROR_INVALID_HANDLE:
    return LW_EINVAL;
  case WSAEADDRINUSE:
  case ERROR_ADDRESS_ALREADY_ASSOCIATED:
    return LW_EADDRINUSE;
  case WSAEADDRNOTAVAIL:
    return LW_EADDRNOTAVAIL;
  case WSAEAFNOSUPPORT:
    return LW_EAFNOSUPPORT;
  case WSAEMFILE:
    return LW_EMFILE;
  case WSAENOBUFS:
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
  case ERROR_NO_SYSTEM_RESOURCES:
    return LW_ENOBUFS;
  case WSAEACCES:
  case ERROR_ACCESS_DENIED:
    return LW_EACCES;
  case WSAENETUNREACH:
  case WSAENETDOWN:
  case ERROR_NETWORK_UNREACHABLE:
    return LW_ENETUNREACH;
  case WSAEHOSTUNREACH:
  case ERROR_HOST_UNREACHABLE:
    return LW_EHOSTUNREACH;
  case WSAEOPNOTSUPP:
  case WSAENOPROTOOPT:
  case ERROR_NOT_SUPPORTED:
    return LW_ENOSYS;
  case WSANOTINITIALISED:
    return LW_EINVAL;
  default:
    return LW_EIO;
  }
}

/* The usual NTSTATUS values of socket I/O, as the Winsock helper maps them (same table
 * as libuv's uv__ntstatus_to_winsock_error for these codes); anything else through
 * RtlNtStatusToDosError. */
unsigned long lw__win_err_from_ntstatus(long st) {
  switch ((unsigned long)st) {
  case 0x00000000UL:
    return 0; /* STATUS_SUCCESS */
  case 0xC0000120UL:
    return ERROR_OPERATION_ABORTED; /* STATUS_CANCELLED */
  case 0xC000020DUL:                /* STATUS_CONNECTION_RESET */
  case 0xC000013CUL:                /* STATUS_REMOTE_DISCONNECT */
  case 0xC000020CUL:                /* STATUS_CONNECTION_DISCONNECTED */
    return WSAECONNRESET;
  case 0xC0000140UL: /* STATUS_INVALID_CONNECTION: Wine completes an AcceptEx with it
                        when the pending connection was reset before it was taken */
  case 0xC000013BUL: /* STATUS_LOCAL_DISCONNECT */
  case 0xC0000241UL: /* STATUS_CONNECTION_ABORTED */
    return WSAECONNABORTED;
  case 0xC0000236UL:
    return WSAECONNREFUSED; /* STATUS_CONNECTION_REFUSED */
  case 0xC000023FUL:
    return WSAECONNREFUSED; /* STATUS_PORT_UNREACHABLE */
  case 0xC00000B5UL:
    return WSAETIMEDOUT; /* STATUS_IO_TIMEOUT */
  case 0xC000023CUL:
    return WSAENETUNREACH; /* STATUS_NETWORK_UNREACHABLE */
  case 0xC000023DUL:
    return WSAEHOSTUNREACH; /* STATUS_HOST_UNREACHABLE */
  case 0xC000009AUL:
    return WSAENOBUFS; /* STATUS_INSUFFICIENT_RESOURCES */
  case 0xC0000008UL:
    return WSAENOTSOCK; /* STATUS_INVALID_HANDLE */
  case 0xC0000237UL:
    return WSAEDISCON; /* STATUS_GRACEFUL_DISCONNECT */
  case 0xC000020AUL:
    return WSAEADDRINUSE; /* STATUS_ADDRESS_ALREADY_EXISTS */
  default:
    break;
  }
  typedef ULONG(WINAPI * rtl_fn)(LONG);
  static rtl_fn fn;
  if (!fn) {
    HMODULE nt = GetModuleHandleA("ntdll.dll");
    if (nt)
      fn = (rtl_fn)(void (*)(void))GetProcAddress(nt, "RtlNtStatusToDosError");
  }
  return fn ? fn(st) : ERROR_GEN_FAILURE;
}

/* errno values (from the CRT) and, above 10000, WSA codes the core may pass through. */
int lw__err_from_errno(int e) {
  if (e >= WSABASEERR)
    return lw__err_from_win((unsigned long)e);
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
  case EMFILE:
    return LW_EMFILE;
  case ENFILE:
    return LW_ENFILE;
  case EACCES:
    return LW_EACCES;
  case ENOENT:
    return LW_ENOENT;
  case EPERM:
    return LW_EPERM;
  case ENOSYS:
    return LW_ENOSYS;
  case EPIPE:
    return LW_EPIPE;
  default:
    return LW_EIO;
  }
}

static int wsa_err(void) { return lw__err_from_win((unsigned long)WSAGetLastError()); }

static INIT_ONCE startup_once = INIT_ONCE_STATIC_INIT;
static int startup_result;
static BOOL CALLBACK startup_fn(PINIT_ONCE o, PVOID p, PVOID *ctx) {
  WSADATA wd;
  int r = WSAStartup(MAKEWORD(2, 2), &wd);
  startup_result = r ? lw__err_from_win((unsigned long)r) : 0;
  return TRUE;
}
int lw__win_startup(void) {
  InitOnceExecuteOnce(&startup_once, startup_fn, NULL, NULL);
  return startup_result;
}

uint64_t lw__now_ms(void) {
  static LARGE_INTEGER freq;
  LARGE_INTEGER now;
  if (!freq.QuadPart)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  return (uint64_t)(now.QuadPart / (freq.QuadPart / 1000));
}

/* ---------------------------------------------------------------------------------
 * Creating sockets
 * --------------------------------------------------------------------------------- */
/* Overlapped (IOCP) and not inherited by child processes: the CLOEXEC of Windows. */
static SOCKET new_socket(int family) {
  return WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                    WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

/* Sockets stay in blocking mode on purpose: every I/O on them is overlapped (which
 * ignores the mode), and FIONBIO on a socket with overlapped I/O pending is refused.
 * "cloexec" = no handle inheritance. */
int lw__sock_nonblock_cloexec(int fd) {
  if (!SetHandleInformation((HANDLE)SOCK(fd), HANDLE_FLAG_INHERIT, 0))
    return lw__err_from_win(GetLastError());
  return 0;
}

/* SO_EXCLUSIVEADDRUSE, not SO_REUSEADDR: on Windows SO_REUSEADDR lets another socket
 * bind the same port and steal connections. Windows needs no option to rebind a port
 * with connections in TIME_WAIT (the Linux reason for SO_REUSEADDR). */
int lw__sock_listen(const char *host, int port, int backlog, int *out_fd, int *out_port) {
  int r = lw__win_startup();
  if (r < 0)
    return r;
  struct sockaddr_storage ss;
  int len;
  r = lw__addr_parse(host, port, &ss, &len);
  if (r < 0)
    return r;
  SOCKET s = new_socket(ss.ss_family);
  if (s == INVALID_SOCKET)
    return wsa_err();
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof(one));
  if (ss.ss_family == AF_INET6)
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&one, sizeof(one));
  if (bind(s, (struct sockaddr *)&ss, len) != 0 ||
      listen(s, backlog > 0 ? backlog : SOMAXCONN) != 0) {
    r = wsa_err();
    closesocket(s);
    return r;
  }
  len = sizeof(ss);
  getsockname(s, (struct sockaddr *)&ss, &len);
  *out_port = lw__addr_port(&ss);
  *out_fd = (int)s;
  return 0;
}

int lw__sock_check_listening(int fd, int *port) {
  int r = lw__win_startup();
  if (r < 0)
    return r;
  int v = 0, len = sizeof(v);
  if (getsockopt(SOCK(fd), SOL_SOCKET, SO_ACCEPTCONN, (char *)&v, &len) != 0 || !v)
    return LW_EINVAL;
  len = sizeof(v);
  if (getsockopt(SOCK(fd), SOL_SOCKET, SO_TYPE, (char *)&v, &len) != 0 || v != SOCK_STREAM)
    return LW_EINVAL;
  struct sockaddr_storage ss;
  len = sizeof(ss);
  if (getsockname(SOCK(fd), (struct sockaddr *)&ss, &len) != 0)
    return wsa_err();
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
    return LW_EINVAL;
  *port = lw__addr_port(&ss);
  return lw__sock_nonblock_cloexec(fd);
}

/* ---- the connect hand-off (see win.h) ---- */
static _Thread_local struct {
  int fd;
  int len;
  struct sockaddr_storage ss;
} connect_slot = {-1, 0, {0}};

int lw__win_take_connect_addr(int fd, struct sockaddr_storage *ss, int *len) {
  if (connect_slot.fd != fd || fd < 0)
    return 0;
  *ss = connect_slot.ss;
  *len = connect_slot.len;
  connect_slot.fd = -1;
  return 1;
}

void lw__win_drop_connect_addr(int fd) {
  if (connect_slot.fd == fd)
    connect_slot.fd = -1;
}

/* ConnectEx needs a bound socket and an OVERLAPPED: the socket is made and bound here,
 * the connect itself starts in the backend (conn_update while connecting). */
int lw__sock_connect_start(const char *host, int port, int *out_fd) {
  int r = lw__win_startup();
  if (r < 0)
    return r;
  struct sockaddr_storage ss;
  int len;
  r = lw__addr_parse(host, port, &ss, &len);
  if (r < 0)
    return r;
  SOCKET s = new_socket(ss.ss_family);
  if (s == INVALID_SOCKET)
    return wsa_err();
  struct sockaddr_storage any;
  memset(&any, 0, sizeof(any));
  any.ss_family = ss.ss_family;
  if (bind(s, (struct sockaddr *)&any,
           ss.ss_family == AF_INET ? (int)sizeof(struct sockaddr_in)
                                   : (int)sizeof(struct sockaddr_in6)) != 0) {
    r = wsa_err();
    closesocket(s);
    return r;
  }
  connect_slot.fd = (int)s;
  connect_slot.ss = ss;
  connect_slot.len = len;
  *out_fd = (int)s;
  return 0;
}

/* ---------------------------------------------------------------------------------
 * Options
 * --------------------------------------------------------------------------------- */
int lw__sock_so_error(int fd) {
  int err = 0, len = sizeof(err);
  if (getsockopt(SOCK(fd), SOL_SOCKET, SO_ERROR, (char *)&err, &len) != 0)
    return wsa_err();
  return lw__err_from_win((unsigned long)err);
}

int lw__sock_shutdown_wr(int fd) {
  if (shutdown(SOCK(fd), SD_SEND) != 0)
    return wsa_err();
  lw__win_mark(SOCK(fd), LW__WIN_FIN_SENT); /* for lw__sock_outq */
  return 0;
}

/* ---------------------------------------------------------------------------------
 * Socket marks (win.h): a set keyed by the socket value, for the whole process (loops
 * may run on several threads: one lock). Open addressing, linear probing, deletion by
 * backward shift; it holds only sockets whose FIN went and are not closed yet. If it
 * cannot grow, the mark is lost and lw__sock_outq answers "cannot tell": never a
 * wrong "acknowledged".
 * --------------------------------------------------------------------------------- */
typedef struct mark_slot {
  uintptr_t s; /* 0: empty (no socket handle is 0) */
  unsigned bits;
} mark_slot;
static SRWLOCK marks_lock = SRWLOCK_INIT;
static mark_slot *marks;
static size_t marks_cap, marks_n; /* cap: 0 or a power of two */

static size_t mark_home(uintptr_t s, size_t cap) {
  return (size_t)(((uint64_t)s >> 2) * 0x9E3779B97F4A7C15ull >> 17) & (cap - 1);
}
static mark_slot *mark_find(uintptr_t s) {
  if (!marks_cap)
    return NULL;
  for (size_t i = mark_home(s, marks_cap), k = 0; k < marks_cap;
       i = (i + 1) & (marks_cap - 1), k++) {
    if (marks[i].s == s)
      return &marks[i];
    if (!marks[i].s)
      return NULL;
  }
  return NULL;
}
static void mark_put(mark_slot *tab, size_t cap, uintptr_t s, unsigned bits) {
  size_t i = mark_home(s, cap);
  while (tab[i].s)
    i = (i + 1) & (cap - 1);
  tab[i].s = s;
  tab[i].bits = bits;
}

void lw__win_mark(SOCKET sock, unsigned bits) {
  uintptr_t s = (uintptr_t)sock;
  if (!s || sock == INVALID_SOCKET)
    return;
  AcquireSRWLockExclusive(&marks_lock);
  mark_slot *m = mark_find(s);
  if (m) {
    m->bits |= bits;
  } else {
    if ((marks_n + 1) * 2 > marks_cap) { /* load factor at most 1/2 */
      size_t cap = marks_cap ? marks_cap * 2 : 64;
      mark_slot *tab = calloc(cap, sizeof(*tab));
      if (!tab) {
        ReleaseSRWLockExclusive(&marks_lock);
        return;
      }
      for (size_t i = 0; i < marks_cap; i++)
        if (marks[i].s)
          mark_put(tab, cap, marks[i].s, marks[i].bits);
      free(marks);
      marks = tab;
      marks_cap = cap;
    }
    mark_put(marks, marks_cap, s, bits);
    marks_n++;
  }
  ReleaseSRWLockExclusive(&marks_lock);
}

unsigned lw__win_marks(SOCKET sock) {
  AcquireSRWLockShared(&marks_lock);
  const mark_slot *m = mark_find((uintptr_t)sock);
  unsigned bits = m ? m->bits : 0;
  ReleaseSRWLockShared(&marks_lock);
  return bits;
}

void lw__win_forget(SOCKET sock) {
  AcquireSRWLockExclusive(&marks_lock);
  mark_slot *m = mark_find((uintptr_t)sock);
  if (m) {
    size_t mask = marks_cap - 1, i = (size_t)(m - marks), j = i;
    /* Backward shift: move up every later entry of the run whose home is not in
     * (i, j], so that no lookup meets a hole before its entry. */
    for (;;) {
      j = (j + 1) & mask;
      if (!marks[j].s)
        break;
      size_t h = mark_home(marks[j].s, marks_cap);
      if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
        continue;
      marks[i] = marks[j];
      i = j;
    }
    marks[i].s = 0;
    marks[i].bits = 0;
    marks_n--;
  }
  ReleaseSRWLockExclusive(&marks_lock);
}

/* SO_LINGER{1,0} then closesocket: an abortive close (RST), no TIME_WAIT. Never after
 * shutdown(SD_SEND): Windows then sends no reset (the contract in lastword.h). */
int lw__sock_set_linger0(int fd) {
  struct linger lg = {1, 0};
  return setsockopt(SOCK(fd), SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg)) != 0
             ? wsa_err()
             : 0;
}

int lw__sock_set_nodelay(int fd, int on) {
  DWORD v = on ? 1 : 0;
  return setsockopt(SOCK(fd), IPPROTO_TCP, TCP_NODELAY, (const char *)&v, sizeof(v)) != 0
             ? wsa_err()
             : 0;
}

/* Keepalive: TCP_KEEPIDLE/KEEPINTVL/KEEPCNT where the stack has them (Windows 10 1709+);
 * otherwise (older Windows, and Wine, which answers WSAENOPROTOOPT) SIO_KEEPALIVE_VALS,
 * which sets idle and interval in ms but not the count (Windows fixes it at 10 probes
 * since Vista, so detection takes idle + 10 x intvl there). The user timeout is
 * TCP_MAXRT in whole seconds (rounded up); Wine refuses it too: the error is returned,
 * and the keepalive alone then bounds an idle connection. */
int lw__sock_set_liveness(int fd, int keepalive, unsigned idle_s, unsigned intvl_s,
                          unsigned cnt, unsigned user_timeout_ms) {
  SOCKET s = SOCK(fd);
  int r = 0;
  if (keepalive) {
    DWORD one = 1;
    if (setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (const char *)&one, sizeof(one)) != 0)
      return wsa_err();
    DWORD idle = idle_s, intvl = intvl_s, n = cnt;
    int ok = (!idle || setsockopt(s, IPPROTO_TCP, TCP_KEEPALIVE, (const char *)&idle,
                                  sizeof(idle)) == 0) &&
             (!intvl || setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, (const char *)&intvl,
                                   sizeof(intvl)) == 0) &&
             (!n || setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, (const char *)&n, sizeof(n)) == 0);
    if (!ok) {
      struct tcp_keepalive ka = {1, (idle ? idle : 7200u) * 1000u,
                                 (intvl ? intvl : 1u) * 1000u};
      DWORD got = 0;
      if (WSAIoctl(s, SIO_KEEPALIVE_VALS, &ka, sizeof(ka), NULL, 0, &got, NULL, NULL) != 0)
        r = wsa_err();
    }
  }
  if (user_timeout_ms) {
    DWORD secs = (user_timeout_ms + 999u) / 1000u;
    if (setsockopt(s, IPPROTO_TCP, TCP_MAXRT, (const char *)&secs, sizeof(secs)) != 0)
      r = wsa_err();
  }
  return r;
}

/* ---------------------------------------------------------------------------------
 * What the stack knows about a connection.
 *
 * SIO_TCP_INFO (Windows 10 1703+) gives the state, the RTT and BytesOut/BytesInFlight.
 * Where it is missing (older Windows; Wine 8 answers WSAEOPNOTSUPP/WSAEINVAL) the state
 * alone comes from the TCP table (GetExtendedTcpTable, looked up by the 4-tuple: it is
 * O(connections) per call, and is called only while a connection closes). From the
 * state one honest fact about acknowledgements follows: once our FIN is acknowledged
 * (FIN_WAIT_2, TIME_WAIT, or the connection gone after LAST_ACK) every byte before it
 * was acknowledged too. Anything else is "unknown" (-1, acked_known = 0).
 * --------------------------------------------------------------------------------- */
static int map_tcpstate(int winstate) { /* TCPSTATE (SIO_TCP_INFO) */
  switch (winstate) {
  case 0:
    return LW__TCP_CLOSE; /* TCPSTATE_CLOSED */
  case 4:
    return LW__TCP_ESTABLISHED;
  case 5:
    return LW__TCP_FIN_WAIT1;
  case 6:
    return LW__TCP_FIN_WAIT2;
  case 7:
    return LW__TCP_CLOSE_WAIT;
  case 8:
    return LW__TCP_CLOSING;
  case 9:
    return LW__TCP_LAST_ACK;
  case 10:
    return LW__TCP_TIME_WAIT;
  default:
    return -1;
  }
}

static int map_mibstate(DWORD st) { /* MIB_TCP_STATE */
  switch (st) {
  case MIB_TCP_STATE_CLOSED:
    return LW__TCP_CLOSE;
  case MIB_TCP_STATE_ESTAB:
    return LW__TCP_ESTABLISHED;
  case MIB_TCP_STATE_FIN_WAIT1:
    return LW__TCP_FIN_WAIT1;
  case MIB_TCP_STATE_FIN_WAIT2:
    return LW__TCP_FIN_WAIT2;
  case MIB_TCP_STATE_CLOSE_WAIT:
    return LW__TCP_CLOSE_WAIT;
  case MIB_TCP_STATE_CLOSING:
    return LW__TCP_CLOSING;
  case MIB_TCP_STATE_LAST_ACK:
    return LW__TCP_LAST_ACK;
  case MIB_TCP_STATE_TIME_WAIT:
    return LW__TCP_TIME_WAIT;
  case MIB_TCP_STATE_DELETE_TCB:
    return LW__TCP_CLOSE;
  default:
    return -1;
  }
}

/* The 4-tuple's state in the system TCP table; LW__TCP_CLOSE when the table no longer
 * lists it; -1 when it cannot be told. */
static int table_state(SOCKET s) {
  struct sockaddr_storage la, ra;
  int ll = sizeof(la), rl = sizeof(ra);
  if (getsockname(s, (struct sockaddr *)&la, &ll) != 0)
    return -1;
  if (getpeername(s, (struct sockaddr *)&ra, &rl) != 0) {
    /* Not connected any more, with no error pending: the stack finished the
     * connection (LAST_ACK -> CLOSED drops the peer's address). A reset that came in
     * while no receive was pending looks the same (README.md, limits). */
    int err = 0, len = sizeof(err);
    if (WSAGetLastError() == WSAENOTCONN &&
        getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &len) == 0 && err == 0)
      return LW__TCP_CLOSE;
    return -1;
  }
  int state = -1;
  ULONG size = 0;
  void *buf = NULL;
  int filled = 0;
  for (int tries = 0; tries < 4 && !filled; tries++) {
    DWORD r = GetExtendedTcpTable(
        buf, &size, FALSE, la.ss_family,
        la.ss_family == AF_INET ? TCP_TABLE_BASIC_ALL : TCP_TABLE_OWNER_PID_ALL, 0);
    if (r == NO_ERROR && buf) {
      filled = 1;
      break;
    }
    free(buf);
    buf = NULL;
    if (r != ERROR_INSUFFICIENT_BUFFER)
      return -1;
    size += 16384; /* the table may grow between the two calls */
    if (!(buf = malloc(size)))
      return -1;
  }
  if (!filled) {
    free(buf);
    return -1;
  }
  state = LW__TCP_CLOSE;
  if (la.ss_family == AF_INET) {
    const MIB_TCPTABLE *t = buf;
    const struct sockaddr_in *l4 = (const void *)&la, *r4 = (const void *)&ra;
    for (DWORD i = 0; i < t->dwNumEntries; i++) {
      const MIB_TCPROW *row = &t->table[i];
      if (row->dwLocalAddr == l4->sin_addr.s_addr &&
          (u_short)row->dwLocalPort == l4->sin_port &&
          row->dwRemoteAddr == r4->sin_addr.s_addr &&
          (u_short)row->dwRemotePort == r4->sin_port) {
        state = map_mibstate(row->dwState);
        break;
      }
    }
  } else {
    const MIB_TCP6TABLE_OWNER_PID *t = buf;
    const struct sockaddr_in6 *l6 = (const void *)&la, *r6 = (const void *)&ra;
    for (DWORD i = 0; i < t->dwNumEntries; i++) {
      const MIB_TCP6ROW_OWNER_PID *row = &t->table[i];
      if (memcmp(row->ucLocalAddr, &l6->sin6_addr, 16) == 0 &&
          (u_short)row->dwLocalPort == l6->sin6_port &&
          memcmp(row->ucRemoteAddr, &r6->sin6_addr, 16) == 0 &&
          (u_short)row->dwRemotePort == r6->sin6_port) {
        state = map_mibstate(row->dwState);
        break;
      }
    }
  }
  free(buf);
  return state;
}

/* Without SIO_TCP_INFO, the one state that can be told in O(1): a socket no longer
 * connected, with no error pending, is one whose connection the stack finished (after
 * LAST_ACK; under Wine, whose sockets are Linux's, also once the peer's FIN came in
 * FIN_WAIT_2). A reset that came in while no receive was pending looks the same. */
static int finished_state(SOCKET s) {
  struct sockaddr_storage ra;
  int rl = sizeof(ra);
  if (getpeername(s, (struct sockaddr *)&ra, &rl) == 0)
    return -1;
  int err = 0, len = sizeof(err);
  if (WSAGetLastError() == WSAENOTCONN &&
      getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &len) == 0 && err == 0)
    return LW__TCP_CLOSE;
  return -1;
}

/* Wine builds the TCP table by parsing /proc/net/tcp: seconds per read on a host with
 * 100,000 sockets in TIME_WAIT (a load test just before, on the same machine), several
 * reads per close. Under Wine only finished_state is used (acked_known is then 0 more
 * often: the suite's cases that assert it are skipped there, tests/win). */
static int under_wine(void) {
  static int w = -1;
  if (w < 0) {
    HMODULE nt = GetModuleHandleA("ntdll.dll");
    w = nt && GetProcAddress(nt, "wine_get_version") != NULL;
  }
  return w;
}

static int tcp_info_v0(SOCKET s, TCP_INFO_v0 *ti) {
  DWORD ver = 0, got = 0;
  memset(ti, 0, sizeof(*ti));
  return WSAIoctl(s, SIO_TCP_INFO, &ver, sizeof(ver), ti, sizeof(*ti), &got, NULL, NULL) == 0 &&
         got >= sizeof(*ti);
}

void lw__sock_snapshot(int fd, lw__tcp_snapshot *s) {
  memset(s, 0, sizeof(*s));
  s->state = -1;
  TCP_INFO_v0 ti;
  if (tcp_info_v0(SOCK(fd), &ti)) {
    s->state = map_tcpstate((int)ti.State);
    s->rtt_us = ti.RttUs;
    /* Data bytes the peer acknowledged: sent minus still in flight. Unlike Linux's
     * tcpi_bytes_acked it excludes the SYN, so conn.c's "minus the SYN" for
     * connections it opened undercounts those by one byte (see README.md). */
    if (ti.BytesOut >= ti.BytesInFlight) {
      s->bytes_acked = ti.BytesOut - ti.BytesInFlight;
      s->acked_known = 1;
    }
    return;
  }
  s->state = under_wine() ? finished_state(SOCK(fd)) : table_state(SOCK(fd));
}

/* Three answers, as SIOCOUTQ gives on Linux: > 0 bytes (or our FIN) not yet
 * acknowledged, 0 everything acknowledged (our FIN too once it went), -1 only when the
 * stack cannot tell. The close waits in ACK_WAIT while this is > 0 (conn.c ack_check)
 * and reports acked_known = 0 only for -1. Windows has no SIOCOUTQ:
 *   - SIO_TCP_INFO: the state names the answer once our FIN went: FIN_WAIT_1, CLOSING
 *     and LAST_ACK mean our FIN is unacknowledged (BytesInFlight + 1, the FIN counted
 *     as one like SIOCOUTQ); FIN_WAIT_2 and TIME_WAIT that it and everything before it
 *     was acknowledged. Before our FIN, BytesInFlight > 0 is bytes unacknowledged; 0 is
 *     "cannot tell" (bytes the stack buffered but did not transmit are not in it).
 *   - Without it (Windows before 10 1703, Wine): nothing before our FIN (-1). After it
 *     (LW__WIN_FIN_SENT): a socket no longer connected with no error is finished (0);
 *     one still connected after both FINs (LW__WIN_PEER_FIN) is in LAST_ACK or CLOSING,
 *     i.e. our FIN is unacknowledged (1) -- a stack that has both FINs keeps the
 *     connection only until ours is acknowledged (RFC 793; Linux, under Wine, moves it
 *     to CLOSE or TIME_WAIT then, and getpeername fails). After our FIN only, FIN_WAIT_1
 *     and FIN_WAIT_2 differ only in the TCP table: read on Windows (O(connections)),
 *     not under Wine (see under_wine), where the answer is then -1. */
static int connected_probe(SOCKET s) { /* 1 connected, 0 finished, -1 error/unknown */
  struct sockaddr_storage ra;
  int rl = sizeof(ra);
  if (getpeername(s, (struct sockaddr *)&ra, &rl) == 0)
    return 1;
  return finished_state(s) == LW__TCP_CLOSE ? 0 : -1;
}

long lw__sock_outq(int fd) {
  SOCKET s = SOCK(fd);
  TCP_INFO_v0 ti;
  if (tcp_info_v0(s, &ti)) {
    long inflight =
        ti.BytesInFlight > (ULONG)(LONG_MAX - 1) ? LONG_MAX - 1 : (long)ti.BytesInFlight;
    switch (map_tcpstate((int)ti.State)) {
    case LW__TCP_FIN_WAIT1:
    case LW__TCP_CLOSING:
    case LW__TCP_LAST_ACK:
      return inflight + 1;
    case LW__TCP_FIN_WAIT2:
    case LW__TCP_TIME_WAIT:
      return 0;
    case LW__TCP_CLOSE:
      /* Finished -- or reset: a reset is no acknowledgement (README: only real Windows
       * can say whether SO_ERROR tells them apart here). */
      return finished_state(s) == LW__TCP_CLOSE ? 0 : -1;
    case LW__TCP_ESTABLISHED:
    case LW__TCP_CLOSE_WAIT:
      return inflight > 0 ? inflight : -1;
    default:
      return -1;
    }
  }
  unsigned m = lw__win_marks(s);
  if (!(m & LW__WIN_FIN_SENT))
    return -1;
  int conn = connected_probe(s);
  if (conn == 0)
    return 0;
  if (conn < 0)
    return -1;
  if (m & LW__WIN_PEER_FIN)
    return 1;
  if (under_wine())
    return -1;
  switch (table_state(s)) {
  case LW__TCP_FIN_WAIT1:
  case LW__TCP_CLOSING:
  case LW__TCP_LAST_ACK:
    return 1;
  case LW__TCP_FIN_WAIT2:
  case LW__TCP_TIME_WAIT:
  case LW__TCP_CLOSE:
    return 0;
  default:
    return -1;
  }
}

long lw__sock_inq(int fd) {
  u_long n = 0;
  return ioctlsocket(SOCK(fd), FIONREAD, &n) != 0 ? -1 : (long)n;
}

/* SIO_TCP_INFO has no acknowledged-bytes count, and the snapshot that has walks every
 * socket of the machine: the liveness checks keep their own bookkeeping here. */
int lw__sock_progress(int fd, uint64_t *acked, uint32_t *quiet_ms) {
  (void)fd;
  (void)acked;
  (void)quiet_ms;
  return -1;
}

/* AcceptEx takes sockets made in advance, so fd exhaustion shows up as a failure to
 * make the next accept socket (the backend retries it), not as a listener that stays
 * readable: there is nothing to shed and no reserve descriptor. */
int lw__sock_reserve_open(void) { return -1; }
int lw__sock_accept_shed(int lfd, int *reserve) { return 0; }

/* Winsock's poll has no POLLRDHUP: the state from SIO_TCP_INFO (CLOSE_WAIT). Without
 * it, "no" (so a peer whose FIN was queued but not yet read is reported as a close we
 * began): this is asked on the way to every FIN, and the TCP table fallback of
 * lw__sock_snapshot is O(every socket of the machine), kept for the close's end. */
int lw__sock_peer_fin_queued(int fd) {
  SOCKET s = SOCK(fd);
  TCP_INFO_v0 ti;
  if (tcp_info_v0(s, &ti))
    return map_tcpstate((int)ti.State) == LW__TCP_CLOSE_WAIT;
  /* No SIO_TCP_INFO (Wine; Windows before 10 1703): a socket that selects readable
   * with nothing to read holds the peer's FIN -- or its RST, as Linux's POLLRDHUP
   * says for both: the peer ended first either way (shut_wr_now), and first_byte_check
   * tells a reset socket apart by its state. FIONREAD after select: bytes that came in
   * between make it "cannot tell" (0), as bytes ahead of a FIN do. Without this a
   * peer's FIN waiting while reading was stopped went unseen under Wine, and the
   * first-byte timeout reset a peer that had closed (torture_iocp,
   * first-byte-timeout-after-peer-fin). */
  fd_set r;
  FD_ZERO(&r);
  FD_SET(s, &r);
  struct timeval tv = {0, 0};
  u_long n = 0;
  return select(0, &r, NULL, NULL, &tv) == 1 && ioctlsocket(s, FIONREAD, &n) == 0 && n == 0;
}

/* Windows cannot tell a listen socket's backlog length; socket inheritance for a
 * successor (WSADuplicateSocket) is not implemented. */
int lw__sock_accept_queue(int fd) {
  (void)fd;
  return LW_ENOSYS;
}
int lw_listen_fds(int *fds, const char **names, int max) {
  (void)fds, (void)names, (void)max;
  return LW_ENOSYS;
}
int lw_listeners_handoff(lw_listener *const *ls, int n, int *ready_fd) {
  (void)ls, (void)n, (void)ready_fd;
  return LW_ENOSYS;
}
void lw_listeners_handoff_end(lw_listener *const *ls, int n) { (void)ls, (void)n; }
int lw_handoff_ready(void) { return 0; }
