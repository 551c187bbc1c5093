/*
 * compat.h - lets the portable core (written against POSIX) build with mingw-w64
 * WITHOUT editing it. Force-included (-include) into every file of the library in the
 * Windows build only (CMakeLists.txt, WIN32 branch); shim/ supplies <sys/uio.h> and
 * <unistd.h>, which mingw lacks or which would bring the CRT's close().
 *
 * Each item here stands for a core change listed in src/win/README.md ("Core changes
 * that would remove this file").
 */
#ifndef LW_WIN_COMPAT_H
#define LW_WIN_COMPAT_H
#ifdef _WIN32
#include <stddef.h>
#include <sys/types.h> /* ssize_t: mingw-w64 defines it (corecrt.h) */

/* conn.c fills struct iovec for the backend (lw__conn_fill_iov); iocp.c copies it into
 * WSABUFs. */
#ifndef LW_WIN_IOVEC_DEFINED
#define LW_WIN_IOVEC_DEFINED
struct iovec {
  void *iov_base;
  size_t iov_len;
};
#endif

/* The core closes sockets with close(fd). On Windows that must be closesocket(), and
 * for a connection the IOCP backend must decide WHEN (after the cancelled WSARecv has
 * completed: an early closesocket with a receive pending can turn the FIN into an RST,
 * libuv #3034) and HOW (closesocket or DisconnectEx(TF_REUSE_SOCKET) into the reuse
 * pool). lw__win_close (src/win/iocp.c) does both. */
int lw__win_close(int fd);
#define close(fd) lw__win_close(fd)

/* loop.c names the default backend lw__backend_epoll; on Windows it is IOCP. */
#define lw__backend_epoll lw__backend_iocp
#endif
#endif
