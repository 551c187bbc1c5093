/*
 * win.h - what src/win/sockopt.c and src/win/iocp.c share (Windows build only).
 */
#ifndef LW_WIN_H
#define LW_WIN_H

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <mstcpip.h>
#include <windows.h>

#include "internal.h"

/* The one place Windows errors become LW_E* codes: Win32 ERROR_* codes, WSAE* codes and
 * (through lw__win_err_from_ntstatus) the NTSTATUS an overlapped operation completed
 * with. The close reason follows from the code in the core: LW_ECONNRESET/LW_EPIPE ->
 * PEER_RESET, LW_ETIMEDOUT -> DEAD_PEER, anything else -> ERROR. */
int lw__err_from_win(unsigned long err);
/* NTSTATUS (OVERLAPPED.Internal) -> Win32/WSA error code (0 for success). */
unsigned long lw__win_err_from_ntstatus(long status);

/* WSAStartup once per process (never undone: WSACleanup at exit is the OS's job). */
int lw__win_startup(void);

/* lw__sock_connect_start cannot start ConnectEx (no OVERLAPPED to give it yet): it
 * creates and binds the socket and parks the destination here; the backend's
 * conn_open, called right after on the same thread, takes it. */
int lw__win_take_connect_addr(int fd, struct sockaddr_storage *ss, int *len);
/* Drops a parked address whose socket was closed before conn_open took it. */
void lw__win_drop_connect_addr(int fd);

/* What Winsock cannot be asked about a socket without SIO_TCP_INFO, remembered by the
 * socket's value (sockopt.c): our FIN was sent (lw__sock_shutdown_wr) and the peer's
 * FIN arrived (the backend's 0-byte WSARecv completion). lw__sock_outq needs them to
 * tell "not yet acknowledged" from "cannot tell". Forgotten (lw__win_forget) before the
 * socket is closed or recycled, so that a new socket with the same value starts clean. */
enum { LW__WIN_FIN_SENT = 1, LW__WIN_PEER_FIN = 2 };
void lw__win_mark(SOCKET s, unsigned bits);
unsigned lw__win_marks(SOCKET s);
void lw__win_forget(SOCKET s);

/* Reuse pool (A15): the backend's set_socket_reuse, i.e. lw_loop_set_socket_reuse (see
 * lastword.h and README.md). The environment variable LW_WIN_REUSE=N sets it for every
 * new loop. */
int lw__iocp_set_reuse(lw_loop *loop, unsigned pool_max);
typedef struct lw__iocp_stats {
  uint64_t sockets_created; /* accept sockets made with WSASocket */
  uint64_t sockets_reused;  /* accept sockets taken from the reuse pool */
  uint64_t disconnects_ok;  /* DisconnectEx(TF_REUSE_SOCKET) that completed */
  uint64_t disconnects_failed;
  unsigned pool_size;       /* sockets in the pool now */
  unsigned recycling;       /* DisconnectEx in flight now */
  uint64_t deferred_closes; /* closes that waited for a cancelled WSARecv */
  unsigned ready;           /* recycled, waiting for their lw_conn to be freed */
  unsigned pool_peak;       /* the most sockets ever held for reuse at once (pool +
                               DisconnectEx in flight + ready): never above pool_max */
} lw__iocp_stats;
int lw__iocp_get_stats(lw_loop *loop, lw__iocp_stats *out);

#endif
