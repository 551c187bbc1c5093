/*
 * lwt_posix.h - Windows build of the cmocka suite only (tests/win/CMakeLists.txt
 * force-includes it with -include, and puts tests/win/posix first on the include path
 * so <sys/socket.h>, <arpa/inet.h>, <netinet/in.h>, <poll.h>, <sys/prctl.h>,
 * <sys/wait.h> resolve here). It lets tests/helper.c and tests/fault.h, written against
 * POSIX sockets, run on Winsock unchanged: the socket calls go through wrappers that set
 * errno from WSAGetLastError() (WSAECONNRESET -> ECONNRESET, a SO_RCVTIMEO timeout ->
 * EAGAIN, ...), close() closes a socket with closesocket(), and SO_RCVTIMEO/SO_SNDTIMEO
 * take a struct timeval as on Linux. fork/setns/prctl/kill/waitpid are stubs that fail
 * with ENOSYS: the tests that need them are not built for Windows (the skip list in
 * tests/win/CMakeLists.txt).
 */
#ifndef LWT_POSIX_H
#define LWT_POSIX_H
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <errno.h>
#include <io.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC 0 /* Winsock sockets are not inherited unless asked */
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* no SIGPIPE on Windows */
#endif
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0x40000000 /* handled by lwt_w_recv (FIONBIO around the call) */
#endif
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#ifndef SIGPIPE
#define SIGPIPE 13
#endif
#ifndef SIGKILL
#define SIGKILL 9
#endif
#define PR_SET_PDEATHSIG 1
#define CLONE_NEWNET 0x40000000
#ifndef WNOHANG
#define WNOHANG 1
#endif

int lwt_w_socket(int af, int type, int proto);
int lwt_w_connect(int fd, const struct sockaddr *sa, int len);
ssize_t lwt_w_send(int fd, const void *buf, size_t len, int flags);
ssize_t lwt_w_recv(int fd, void *buf, size_t len, int flags);
int lwt_w_setsockopt(int fd, int level, int name, const void *val, int len);
int lwt_w_getsockopt(int fd, int level, int name, void *val, int *len);
int lwt_w_getsockname(int fd, struct sockaddr *sa, int *len);
int lwt_w_shutdown(int fd, int how);
int lwt_w_close(int fd);
int lwt_w_errno(int wsa); /* WSA error -> errno */
void (*lwt_w_signal(int sig, void (*h)(int)))(int);
int lwt_w_fork(void);
int lwt_w_nosys(void);
unsigned lwt_w_alarm(unsigned s);

#define socket(a, t, p) lwt_w_socket((a), (t), (p))
#define connect(f, s, l) lwt_w_connect((f), (s), (int)(l))
#define send(f, b, l, fl) lwt_w_send((f), (b), (l), (fl))
#define recv(f, b, l, fl) lwt_w_recv((f), (b), (l), (fl))
#define setsockopt(f, lv, n, v, l) lwt_w_setsockopt((f), (lv), (n), (v), (int)(l))
#define getsockopt(f, lv, n, v, l) lwt_w_getsockopt((f), (lv), (n), (v), (int *)(l))
#define getsockname(f, s, l) lwt_w_getsockname((f), (s), (int *)(l))
#define shutdown(f, h) lwt_w_shutdown((f), (h))
#define close(f) lwt_w_close(f)
#define signal(s, h) lwt_w_signal((s), (h))
/* Linux-only process and namespace calls (only the skipped tests reach them). */
#define fork() lwt_w_fork()
#define setns(fd, t) ((void)(fd), (void)(t), lwt_w_nosys())
#define prctl(o, a) ((void)(o), (void)(a), lwt_w_nosys())
#define kill(p, s) ((void)(p), (void)(s), lwt_w_nosys())
#define waitpid(p, st, o) ((void)(p), (void)(st), (void)(o), lwt_w_nosys())
#define alarm(s) lwt_w_alarm(s)
#define pause() ((void)lwt_w_nosys())
#define pipe(fds) _pipe((fds), 4096, 0x8000 /* _O_BINARY */)
#define poll(f, n, t) WSAPoll((f), (n), (t))

/* Single test cases that cannot run here, each with its reason (the table is in
 * lwt_posix.c): cmocka_unit_test(f) asks lwt_w_unit, which hands back f, or a stand-in
 * that prints the reason and calls cmocka's skip() (reported as SKIPPED, not passed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>
CMUnitTestFunction lwt_w_unit(const char *name, CMUnitTestFunction f);
int lwt_w_is_wine(void);
#undef cmocka_unit_test
#define cmocka_unit_test(f) {#f, lwt_w_unit(#f, f), NULL, NULL, NULL}
#endif
#endif
