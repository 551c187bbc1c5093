/*
 * lwt_posix.h - Windows build of the cmocka suite only (tests/win/CMakeLists.txt
 * force-includes it with -include, after tools/win/lw_win.h, and puts tests/win/posix and
 * tools/win/include first on the include path so <sys/socket.h>, <poll.h>, <sys/prctl.h>,
 * <sys/wait.h> ... resolve to them). It lets tests/helper.c and tests/fault.h, written
 * against POSIX sockets, run on Winsock unchanged: the socket calls are lw_win.h's
 * wrappers (errno from WSAGetLastError(), closesocket() for close(), SO_RCVTIMEO and
 * SO_SNDTIMEO as a struct timeval); fork/setns/prctl/kill/waitpid are stubs that fail
 * with ENOSYS (the tests that need them are not built for Windows: cmocka-skip.txt).
 */
#ifndef LWT_POSIX_H
#define LWT_POSIX_H
#ifdef _WIN32
/* The socket layer (Winsock wrappers that set errno, the POSIX names) is the one the
 * lastword tool uses: tools/win/lw_win.h. This file adds what only the tests need. */
#include "lw_win.h"

#include <signal.h>

#ifndef SIGPIPE
#define SIGPIPE 13
#endif
#ifndef SIGKILL
#define SIGKILL 9
#endif
/* tests/helper.h: acknowledged-byte counts in every state need SIO_TCP_INFO. */
#define LWT_ACKS_KNOWN (!lw_w_is_wine())
#define LWT_RST_RELIABLE (!lw_w_is_wine())
#define PR_SET_PDEATHSIG 1
#define CLONE_NEWNET 0x40000000
#ifndef WNOHANG
#define WNOHANG 1
#endif

void (*lwt_w_signal(int sig, void (*h)(int)))(int);
int lwt_w_fork(void);
int lwt_w_nosys(void);
unsigned lwt_w_alarm(unsigned s);

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

/* Single test cases that cannot run here, each with its reason (the table is in
 * lwt_posix.c): cmocka_unit_test(f) asks lwt_w_unit, which hands back f, or a stand-in
 * that prints the reason and calls cmocka's skip() (reported as SKIPPED, not passed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>
CMUnitTestFunction lwt_w_unit(const char *name, CMUnitTestFunction f);
#undef cmocka_unit_test
#define cmocka_unit_test(f)                                                                    \
  { #f, lwt_w_unit(#f, f), NULL, NULL, NULL }
#endif
#endif
