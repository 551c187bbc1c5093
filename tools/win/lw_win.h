/*
 * lw_win.h - the Windows build of the `lastword` tool (tools/CMakeLists.txt force-includes
 * it with -include, and puts tools/win/include first on the include path so
 * <sys/socket.h>, <arpa/inet.h>, <netinet/in.h>, <netinet/tcp.h>, <poll.h>,
 * <sys/ioctl.h>, <sys/wait.h>, <net/if.h> resolve to it). The same pattern as
 * tests/win/posix/lwt_posix.h (which the cmocka suite uses), with what the lab needs on
 * top: the lab's sources (engine.c, script.c, scenarios.c, report.c, lab.c, rstloss.c)
 * are compiled unchanged apart from a few #ifdef _WIN32 seams.
 *
 * Every socket call goes through a wrapper that sets errno from WSAGetLastError(), so the
 * scripts' `expect ... errno == ECONNRESET` lines work: WSAECONNRESET -> ECONNRESET,
 * WSAEWOULDBLOCK -> EAGAIN (= EWOULDBLOCK, as on Linux), WSAESHUTDOWN -> EPIPE (what the
 * seeds' translation to POSIX uses for "a send after shutdown fails"), a SO_RCVTIMEO
 * expiry (WSAETIMEDOUT) -> EAGAIN as Linux reports it, ... (lw_w_errno in lw_win.c).
 * Winsock has no O_NONBLOCK to read back: the wrappers remember what fcntl(F_SETFL) asked
 * (FIONBIO) so MSG_DONTWAIT calls restore it and A5/A8 close a socket that really is
 * non-blocking. close() of a socket is closesocket().
 */
#ifndef LW_WIN_H
#define LW_WIN_H
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <errno.h>
#include <io.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* As on Linux: one value, so `errno == EWOULDBLOCK` and `== EAGAIN` agree. */
#undef EWOULDBLOCK
#define EWOULDBLOCK EAGAIN

#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC 0 /* the sockets are created not inheritable */
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* no SIGPIPE on Windows */
#endif
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0x40000000 /* FIONBIO around the call (lw_w_send, lw_w_recv) */
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0 /* no such event on Windows: never reported */
#endif
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#ifndef O_NONBLOCK
#define O_NONBLOCK 0x4000
#endif
#ifndef F_GETFD
#define F_GETFD 1
#endif
#ifndef F_GETFL
#define F_GETFL 3
#endif
#ifndef F_SETFL
#define F_SETFL 4
#endif
/* Windows 10 1709+ (ws2ipdef.h of newer SDKs); Wine rejects them (src/win/README.md). */
#ifndef TCP_KEEPIDLE
#define TCP_KEEPIDLE 3
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 16
#endif
#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 17
#endif

int lw_w_socket(int af, int type, int proto);
int lw_w_accept(int fd, struct sockaddr *sa, int *len);
int lw_w_bind(int fd, const struct sockaddr *sa, int len);
int lw_w_listen(int fd, int backlog);
int lw_w_connect(int fd, const struct sockaddr *sa, int len);
ssize_t lw_w_send(int fd, const void *buf, size_t len, int flags);
ssize_t lw_w_recv(int fd, void *buf, size_t len, int flags);
int lw_w_setsockopt(int fd, int level, int name, const void *val, int len);
int lw_w_getsockopt(int fd, int level, int name, void *val, int *len);
int lw_w_getsockname(int fd, struct sockaddr *sa, int *len);
int lw_w_shutdown(int fd, int how);
int lw_w_close(int fd);
int lw_w_close_final(int fd); /* cleanup: a close that WOULDBLOCKs is retried blocking */
int lw_w_fcntl(int fd, int cmd, ...);
int lw_w_poll(struct pollfd *p, unsigned long n, int timeout_ms);
int lw_w_errno(int wsa); /* WSA error -> errno */
int lw_w_is_wine(void);  /* 1 under Wine (ntdll exports wine_get_version) */
const char *lw_w_wine_version(void);
int lw_w_setenv(const char *name, const char *value, int overwrite);
int lw_w_unsetenv(const char *name);

#define socket(a, t, p) lw_w_socket((a), (t), (p))
#define accept(f, s, l) lw_w_accept((f), (s), (int *)(l))
#define accept4(f, s, l, fl) lw_w_accept((f), (s), (int *)(l))
#define bind(f, s, l) lw_w_bind((f), (s), (int)(l))
#define listen(f, b) lw_w_listen((f), (b))
#define connect(f, s, l) lw_w_connect((f), (s), (int)(l))
#define send(f, b, l, fl) lw_w_send((f), (b), (l), (fl))
#define recv(f, b, l, fl) lw_w_recv((f), (b), (l), (fl))
#define setsockopt(f, lv, n, v, l) lw_w_setsockopt((f), (lv), (n), (v), (int)(l))
#define getsockopt(f, lv, n, v, l) lw_w_getsockopt((f), (lv), (n), (v), (int *)(l))
#define getsockname(f, s, l) lw_w_getsockname((f), (s), (int *)(l))
#define shutdown(f, h) lw_w_shutdown((f), (h))
#define close(f) lw_w_close(f)
#define fcntl lw_w_fcntl
#define poll(f, n, t) lw_w_poll((f), (n), (t))
#define setenv(n, v, o) lw_w_setenv((n), (v), (o))
#define unsetenv(n) lw_w_unsetenv(n)
#endif
#endif
