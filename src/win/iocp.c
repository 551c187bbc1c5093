/*
 * iocp.c - the Windows backend: an I/O completion port behind the same completion-
 * shaped seam as io_uring (src/linux/uring.c is the model).
 *
 * Operations:
 *   AcceptEx   a small pool of accepts posted on each listener (LW__IOCP_ACCEPTS); each
 *              takes its socket from the reuse pool when there is one (A15), else a
 *              new WSASocket. SO_UPDATE_ACCEPT_CONTEXT on completion.
 *   ConnectEx  on a socket made and bound by lw__sock_connect_start.
 *   WSARecv    one in flight per connection, into a per-socket buffer. Every result
 *              (data or the peer's FIN) is first held in the socket record and then
 *              delivered by one function (deliver_held) as far as the application wants
 *              it now: while reading is stopped it stays held (the rule at
 *              lw__backend.held_input), never lost and never acted on.
 *              The buffer is lent to the read callback: no WSARecv is posted into it
 *              until the callback returns (`delivering`, checked in post_recv).
 *              A zero-byte WSARecv watches for errors (dead peer) while the application
 *              does not read, as uring.c's POLLERR watch does.
 *   WSASend    one in flight per connection, gathering the head of the write queue.
 *   DisconnectEx(TF_REUSE_SOCKET)  when reuse is on and a connection ended gracefully.
 *   GetQueuedCompletionStatusEx    the wait, up to LW__IOCP_BATCH completions at once.
 *   PostQueuedCompletionStatus     the loop's wake channel (lw_wakeup_send, the console
 *              control handler of signal.c): a packet with the loop's own wake op.
 *   IOCTL_AFD_POLL  lw_watch on a foreign SOCKET (wepoll's and libuv's way): one poll
 *              per started watch, issued with DeviceIoControl on a socket of the loop's
 *              own (afd_sock, associated with the port) and naming the watched socket's
 *              base handle, so the application's socket is never associated with our
 *              port (a handle can be associated with one port, for life). Single-shot,
 *              re-armed after its callback: level-triggered. Stopped by CancelIoEx; the
 *              lw_watch is freed only after the poll's completion. src/win/README.md.
 *
 * Closing (A2 and libuv #3034). The core detaches the connection, optionally sets
 * SO_LINGER{1,0}, and calls lw__sock_close(fd) (below) at once. Here:
 *   - conn_detach: CancelIoEx on the socket if anything is in flight; otherwise
 *     lw__conn_ops_done at once (as epoll does).
 *   - lw__sock_close: an abort (SO_LINGER{1,0} set) is closesocket NOW -- the RST must
 *     go now, and the cancelled operations complete afterwards. Otherwise, with an
 *     operation still in flight, the closesocket WAITS for its completion: closesocket
 *     with a pending overlapped WSARecv can make Windows send RST instead of FIN.
 *   - the last completion: closesocket (or DisconnectEx into the pool), then
 *     lw__conn_ops_done: on_close comes only after every completion was reaped.
 * A completion is matched to its socket record by its OVERLAPPED (never by handle), so
 * a socket value reused by the system after closesocket cannot be confused.
 *
 * Socket records (iocp_sock) live apart from the lw_conn: a recycled socket outlives
 * its connection (DisconnectEx in flight, then the pool), and is freed by whichever of
 * "the conn was freed" and "its last operation completed" comes last.
 */
#include "win.h"

#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LW__IOCP_ACCEPTS 8   /* AcceptEx posted per listener */
#define LW__IOCP_BATCH 128   /* completions per GetQueuedCompletionStatusEx */
#define LW__IOCP_MAX_BUFS 64 /* WSABUFs per WSASend */
#define LW__IOCP_RBUF (64 * 1024)
#define LW__IOCP_POOL_MAX 1024 /* hard bound on the reuse pool */
#define LW__IOCP_ADDRLEN ((DWORD)sizeof(struct sockaddr_storage) + 16)

#define SOCK(fd) ((SOCKET)(intptr_t)(fd))

enum { OP_RECV = 1, OP_SEND, OP_CONNECT, OP_DISCONNECT, OP_ACCEPT, OP_WAKE, OP_WATCH };

/* AFD's poll, as ntifs/afd.h have it (not in mingw's headers; wepoll and libuv declare
 * the same). Wine implements it (ws2_32's WSAPoll is built on it). */
#define LW__IOCTL_AFD_POLL 0x00012024
#define LW__AFD_POLL_RECEIVE 0x0001
#define LW__AFD_POLL_SEND 0x0004
#define LW__AFD_POLL_DISCONNECT 0x0008
#define LW__AFD_POLL_ABORT 0x0010
#define LW__AFD_POLL_LOCAL_CLOSE 0x0020
#define LW__AFD_POLL_ACCEPT 0x0080
#define LW__AFD_POLL_CONNECT_FAIL 0x0100
typedef struct lw__afd_poll_info {
  LARGE_INTEGER Timeout;
  ULONG NumberOfHandles;
  ULONG Exclusive;
  struct {
    HANDLE Handle;
    ULONG Events;
    LONG Status;
  } Handles[1];
} lw__afd_poll_info;

typedef struct iocp_op {
  OVERLAPPED ov;
  int kind;
  void *owner; /* iocp_sock* or iocp_acc* */
} iocp_op;

typedef struct iocp_sock {
  SOCKET s;
  int family;
  lw_loop *loop;
  lw_conn *conn; /* NULL once the conn is freed */
  iocp_op recv, send, connect, disc;
  unsigned inflight; /* recv + send + connect in flight (not the disconnect) */
  unsigned recv_inflight : 1, send_inflight : 1, connect_inflight : 1, disc_inflight : 1;
  unsigned recv_zero : 1;     /* the pending recv is the zero-byte error watch */
  unsigned err_parked : 1;    /* the watch saw input; not re-armed until a read */
  unsigned associated : 1;    /* on the completion port (a handle is, for life) */
  unsigned accepted : 1;      /* came from AcceptEx: may be recycled */
  unsigned detached : 1;      /* conn_detach done */
  unsigned released : 1;      /* closesocket or DisconnectEx done */
  unsigned ops_reported : 1;  /* lw__conn_ops_done called */
  unsigned recycle_ready : 1; /* DisconnectEx completed while the conn still existed */
  unsigned delivering : 1;    /* a read callback holds rbuf: no WSARecv into it */
  unsigned held_eof : 1;      /* the peer's FIN came while the application did not read */
  size_t inq_counted; /* FIONREAD the close counted (conn_detach): a late WSARecv took it */
  unsigned
      recv_seen_detach : 1; /* its WSARecv had completed at detach: held_input counted it */
  unsigned uses;            /* connections served by this socket */
  char *rbuf;
  size_t stash_off, stash_len; /* input received but not yet delivered (held) */
  WSABUF wbufs[LW__IOCP_MAX_BUFS];
  struct iovec iov[LW__IOCP_MAX_BUFS];
  struct sockaddr_storage peer; /* ConnectEx destination */
  int peer_len;
  lw__list node; /* in the reuse pool */
} iocp_sock;

typedef struct iocp_lis iocp_lis;
typedef struct iocp_acc {
  iocp_op op;
  iocp_lis *lis;
  iocp_sock *ws;
  int inflight;
  char addrs[2 * (sizeof(struct sockaddr_storage) + 16)];
} iocp_acc;

struct iocp_lis {
  lw_listener *l; /* NULL: orphaned (listener closed, accepts still completing) */
  SOCKET ls;
  int family;
  unsigned inflight;
  int want_rearm; /* a slot could not be posted (no socket): retried every poll */
  lw__list node;  /* in the loop's rearm list */
  iocp_acc acc[LW__IOCP_ACCEPTS];
};

typedef struct iocp_state {
  HANDLE port;
  LPFN_ACCEPTEX acceptex;
  LPFN_CONNECTEX connectex;
  LPFN_DISCONNECTEX disconnectex;
  LPFN_GETACCEPTEXSOCKADDRS gaesa;
  unsigned pool_max; /* 0: reuse off */
  int wine;          /* running under Wine: reuse is broken there (README.md) */
  lw__list pool;     /* recycled sockets ready for AcceptEx */
  unsigned orphans;  /* orphaned listener states */
  lw__list rearm;    /* listeners with a slot to post again */
  lw__iocp_stats st;
  iocp_op wake;    /* the wake channel's packet (never in the kernel: only posted) */
  SOCKET afd_sock; /* lw_watch: the socket its AFD polls are issued on (lazily) */
} iocp_state;

/* A started lw_watch's poll (lw_watch.backend_data, freed by the core). */
typedef struct iocp_watch {
  iocp_op op; /* owner: the lw_watch */
  lw__afd_poll_info info;
  HANDLE base; /* the watched socket's base handle (SIO_BASE_HANDLE) */
  ULONG mask;  /* AFD events of the poll in flight */
  unsigned inflight : 1, cancelled : 1;
} iocp_watch;

static iocp_state *st_of(lw_loop *loop) { return loop->backend_data; }
/* Sockets held for reuse: pooled, in DisconnectEx, or recycled but still tied to an
 * lw_conn not yet freed. The bound (pool_max) applies to all three. */
static unsigned held(const iocp_state *st) {
  return st->st.pool_size + st->st.recycling + st->st.ready;
}
static void note_held(iocp_state *st) {
  if (held(st) > st->st.pool_peak)
    st->st.pool_peak = held(st);
}
static iocp_sock *ws_of(lw_conn *c) { return c->backend_data; }

/* The hand-offs between the core's calls (see the README): the socket
 * just detached (its lw__sock_close follows at once), and the accepted socket whose lw_conn
 * is being made (its conn_open follows at once, or its lw__sock_close on failure). */
static _Thread_local iocp_sock *tls_detached;
static _Thread_local iocp_sock *tls_accepted;

static void ws_release(iocp_sock *ws, int reset);
static void iocp_conn_update(lw_conn *c);

/* ---------------------------------------------------------------------------------
 * Plumbing
 * --------------------------------------------------------------------------------- */
static int associate(iocp_state *st, iocp_sock *ws) {
  if (ws->associated)
    return 0;
  if (!CreateIoCompletionPort((HANDLE)ws->s, st->port, 0, 0))
    return lw__err_from_win(GetLastError());
  ws->associated = 1;
  return 0;
}

static iocp_sock *ws_new(lw_loop *loop, SOCKET s, int family) {
  iocp_sock *ws = calloc(1, sizeof(*ws));
  if (!ws)
    return NULL;
  ws->s = s;
  ws->family = family;
  ws->loop = loop;
  ws->recv.kind = OP_RECV;
  ws->send.kind = OP_SEND;
  ws->connect.kind = OP_CONNECT;
  ws->disc.kind = OP_DISCONNECT;
  ws->recv.owner = ws->send.owner = ws->connect.owner = ws->disc.owner = ws;
  lw__list_init(&ws->node);
  return ws;
}

static void ws_free(iocp_sock *ws) {
  if (ws->s != INVALID_SOCKET) {
    lw__win_forget(ws->s);
    closesocket(ws->s);
  }
  free(ws->rbuf);
  free(ws);
}

/* An operation that failed at once: no completion packet is queued for it, so post
 * one ourselves carrying the error in the completion key. Every operation then ends
 * through the same path, inflight counting included. */
static void post_failure(iocp_state *st, iocp_op *op, DWORD err) {
  memset(&op->ov, 0, sizeof(op->ov));
  if (!PostQueuedCompletionStatus(st->port, 0, (ULONG_PTR)(err ? err : WSAEINVAL), &op->ov))
    abort(); /* the port itself is broken: nothing sane is left to do */
}

static void *ext_fn(SOCKET s, GUID g) {
  void *fn = NULL;
  DWORD got = 0;
  if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof(g), &fn, sizeof(fn), &got,
               NULL, NULL) != 0)
    return NULL;
  return fn;
}

/* ---------------------------------------------------------------------------------
 * Loop
 * --------------------------------------------------------------------------------- */
static int iocp_init(lw_loop *loop) {
  int r = lw__win_startup();
  if (r < 0)
    return r;
  iocp_state *st = calloc(1, sizeof(*st));
  if (!st)
    return LW_ENOMEM;
  lw__list_init(&st->pool);
  lw__list_init(&st->rearm);
  st->wake.kind = OP_WAKE;
  st->afd_sock = INVALID_SOCKET;
  st->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
  if (!st->port) {
    free(st);
    return lw__err_from_win(GetLastError());
  }
  SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
  if (s == INVALID_SOCKET) {
    CloseHandle(st->port);
    free(st);
    return lw__err_from_win((unsigned long)WSAGetLastError());
  }
  GUID ga = WSAID_ACCEPTEX, gc = WSAID_CONNECTEX, gd = WSAID_DISCONNECTEX,
       gs = WSAID_GETACCEPTEXSOCKADDRS;
  st->acceptex = (LPFN_ACCEPTEX)ext_fn(s, ga);
  st->connectex = (LPFN_CONNECTEX)ext_fn(s, gc);
  st->disconnectex = (LPFN_DISCONNECTEX)ext_fn(s, gd);
  st->gaesa = (LPFN_GETACCEPTEXSOCKADDRS)ext_fn(s, gs);
  closesocket(s);
  if (!st->acceptex || !st->connectex || !st->gaesa) {
    CloseHandle(st->port);
    free(st);
    return LW_ENOSYS;
  }
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  st->wine = nt && GetProcAddress(nt, "wine_get_version") != NULL;
  const char *reuse = getenv("LW_WIN_REUSE");
  if (reuse && *reuse && (!st->wine || getenv("LW_WIN_REUSE_FORCE"))) {
    long n = strtol(reuse, NULL, 10);
    st->pool_max = n <= 0 ? 0 : n > LW__IOCP_POOL_MAX ? LW__IOCP_POOL_MAX : (unsigned)n;
  }
  loop->backend_data = st;
  return 0;
}

static int iocp_poll(lw_loop *loop, int timeout_ms);

static void pool_drain(iocp_state *st) {
  while (!lw__list_empty(&st->pool)) {
    iocp_sock *ws = LW__CONTAINER_OF(st->pool.next, iocp_sock, node);
    lw__list_remove(&ws->node);
    st->st.pool_size--;
    ws_free(ws);
  }
}

static void iocp_destroy(lw_loop *loop) {
  iocp_state *st = st_of(loop);
  pool_drain(st);
  /* Orphaned accepts and disconnects in flight still point into memory we own: reap
   * them (closing the listener already cancelled the accepts; a DisconnectEx delayed
   * by TIME_WAIT is cut short by closing its socket in disc_done's path). */
  for (int i = 0; i < 200 && (st->orphans > 0 || st->st.recycling > 0); i++) {
    st->pool_max = 0; /* whatever completes now is closed, not pooled */
    iocp_poll(loop, 10);
  }
  pool_drain(st);
  /* Every watch was freed, and a freed watch waits for its poll's completion: no
   * poll is left on afd_sock. */
  if (st->afd_sock != INVALID_SOCKET)
    closesocket(st->afd_sock);
  CloseHandle(st->port);
  free(st);
  loop->backend_data = NULL;
}

int lw__iocp_set_reuse(lw_loop *loop, unsigned pool_max) {
  if (!loop || loop->backend != &lw__backend_iocp)
    return LW_EINVAL;
  iocp_state *st = st_of(loop);
  if (pool_max && !st->disconnectex)
    return LW_ENOSYS;
  /* Wine (8.0 .. at least 9.x): AcceptEx into a recycled socket does not clear the
   * shutdown state the socket had (server/sock.c accept_into_socket resets the state,
   * not wr_shutdown), so the new connection's first WSASend fails with WSAESHUTDOWN
   * after our graceful close did shutdown(SD_SEND). Off there unless forced (tests). */
  if (pool_max && st->wine && !getenv("LW_WIN_REUSE_FORCE"))
    return LW_ENOSYS;
  st->pool_max = pool_max > LW__IOCP_POOL_MAX ? LW__IOCP_POOL_MAX : pool_max;
  if (!st->pool_max)
    pool_drain(st);
  return 0;
}

int lw__iocp_get_stats(lw_loop *loop, lw__iocp_stats *out) {
  if (!loop || loop->backend != &lw__backend_iocp || !out)
    return LW_EINVAL;
  *out = st_of(loop)->st;
  return 0;
}

/* ---------------------------------------------------------------------------------
 * Connections
 * --------------------------------------------------------------------------------- */
static int iocp_conn_open(lw_conn *c) {
  iocp_state *st = st_of(c->loop);
  iocp_sock *ws = NULL;
  if (tls_accepted && (int)tls_accepted->s == c->io.fd) {
    ws = tls_accepted; /* made (or recycled) by the accept path, already on the port */
    tls_accepted = NULL;
  } else {
    WSAPROTOCOL_INFOW pi;
    int len = sizeof(pi);
    int family = AF_INET;
    if (getsockopt(SOCK(c->io.fd), SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pi, &len) == 0)
      family = pi.iAddressFamily;
    ws = ws_new(c->loop, SOCK(c->io.fd), family);
    if (!ws)
      return LW_ENOMEM;
    lw__win_take_connect_addr(c->io.fd, &ws->peer, &ws->peer_len);
    int r = associate(st, ws);
    if (r < 0) {
      ws->s = INVALID_SOCKET; /* the core closes the fd */
      ws_free(ws);
      return r;
    }
  }
  ws->conn = c;
  ws->uses++;
  c->backend_data = ws;
  return 0;
}

static void iocp_conn_free(lw_conn *c) {
  iocp_sock *ws = ws_of(c);
  if (!ws)
    return;
  c->backend_data = NULL;
  ws->conn = NULL;
  iocp_state *st = st_of(ws->loop);
  if (ws->disc_inflight)
    return; /* the DisconnectEx completion decides */
  if (ws->recycle_ready) {
    ws->recycle_ready = 0;
    st->st.ready--;
    lw__list_push(&st->pool, &ws->node);
    st->st.pool_size++;
    note_held(st);
    return;
  }
  ws_free(ws);
}

static int ensure_rbuf(iocp_sock *ws) {
  if (!ws->rbuf)
    ws->rbuf = malloc(LW__IOCP_RBUF);
  return ws->rbuf ? 0 : LW_ENOMEM;
}

static int holds(const iocp_sock *ws) { return ws->stash_len > ws->stash_off || ws->held_eof; }

static void post_recv(lw_conn *c, int zero) {
  iocp_state *st = st_of(c->loop);
  iocp_sock *ws = ws_of(c);
  assert(!ws->recv_inflight);
  /* The one place rbuf is handed to the kernel. While a read callback holds it (the
   * header: buf is valid during the call), or while it still holds undelivered input,
   * it is not posted: whatever the callback calls (lw_conn_read_start, lw_shutdown,
   * lw_close...), the receive is posted after the callback returns (iocp_conn_update,
   * called then). A WSARecv with data waiting fills its buffer before it returns. */
  if (!zero && (ws->delivering || holds(ws)))
    return;
  WSABUF b;
  if (zero) {
    b.buf = NULL;
    b.len = 0;
  } else {
    if (ensure_rbuf(ws) < 0)
      return;
    b.buf = ws->rbuf;
    b.len =
        (ULONG)(c->discarding ? LW__IOCP_RBUF : LW__MIN(c->read_size, (size_t)LW__IOCP_RBUF));
  }
  DWORD flags = 0;
  memset(&ws->recv.ov, 0, sizeof(ws->recv.ov));
  ws->recv_inflight = 1;
  ws->recv_zero = zero ? 1 : 0;
  ws->inflight++;
  if (WSARecv(ws->s, &b, 1, NULL, &flags, &ws->recv.ov, NULL) != 0) {
    DWORD e = (DWORD)WSAGetLastError();
    if (e != WSA_IO_PENDING)
      post_failure(st, &ws->recv, e);
  }
}

static void post_send(lw_conn *c) {
  iocp_state *st = st_of(c->loop);
  iocp_sock *ws = ws_of(c);
  int n = lw__conn_fill_iov(c, ws->iov, LW__IOCP_MAX_BUFS);
  DWORD total = 0;
  int k = 0;
  for (int i = 0; i < n; i++) {
    size_t len = ws->iov[i].iov_len;
    if (len > 0x40000000u)
      len = 0x40000000u; /* a WSABUF length is a ULONG; send big buffers in pieces */
    ws->wbufs[k].buf = ws->iov[i].iov_base;
    ws->wbufs[k].len = (ULONG)len;
    total += (DWORD)len;
    k++;
    if (len != ws->iov[i].iov_len || total >= 0x40000000u)
      break;
  }
  memset(&ws->send.ov, 0, sizeof(ws->send.ov));
  ws->send_inflight = 1;
  ws->inflight++;
  if (WSASend(ws->s, ws->wbufs, (DWORD)k, NULL, 0, &ws->send.ov, NULL) != 0) {
    DWORD e = (DWORD)WSAGetLastError();
    if (e != WSA_IO_PENDING)
      post_failure(st, &ws->send, e);
  }
}

static void post_connect(lw_conn *c) {
  iocp_state *st = st_of(c->loop);
  iocp_sock *ws = ws_of(c);
  memset(&ws->connect.ov, 0, sizeof(ws->connect.ov));
  ws->connect_inflight = 1;
  ws->inflight++;
  if (!ws->peer_len) {
    post_failure(st, &ws->connect, WSAEINVAL);
    return;
  }
  if (!st->connectex(ws->s, (struct sockaddr *)&ws->peer, ws->peer_len, NULL, 0, NULL,
                     &ws->connect.ov)) {
    DWORD e = (DWORD)WSAGetLastError();
    if (e != ERROR_IO_PENDING)
      post_failure(st, &ws->connect, e);
  }
}

/* Delivers what the socket holds -- input, then the peer's FIN -- for as long as the
 * application wants it (lw__conn_wants_read: reading, or a lingering close discarding).
 * What it does not want now stays held (the rule at lw__backend.held_input). Every
 * receive result goes through here, so none can reach the core while reading is
 * stopped. Not re-entered: a read callback that calls lw_conn_read_start comes back
 * here through iocp_conn_update and returns at once; the outer loop goes on, in order. */
static void deliver_held(lw_conn *c) {
  iocp_sock *ws = ws_of(c);
  if (ws->delivering)
    return;
  ws->delivering = 1;
  while (!c->detached && lw__conn_wants_read(c)) {
    if (ws->stash_len > ws->stash_off) {
      size_t n = LW__MIN(ws->stash_len - ws->stash_off,
                         c->discarding ? (size_t)LW__IOCP_RBUF : c->read_size);
      const char *p = ws->rbuf + ws->stash_off;
      ws->stash_off += n;
      if (ws->stash_off == ws->stash_len)
        ws->stash_off = ws->stash_len = 0;
      lw__conn_read_done(c, p, (ssize_t)n); /* rbuf is lent until this returns */
    } else if (ws->held_eof) {
      ws->held_eof = 0;
      lw__conn_read_done(c, NULL, 0);
    } else {
      break;
    }
  }
  ws->delivering = 0;
}

/* lw__backend.held_input: the bytes received but not delivered, and a held FIN. */
/* The posted WSARecv has completed (its OVERLAPPED says so: HasOverlappedIoCompleted)
 * but its completion packet is still in the port: its bytes (or the FIN) left the
 * stack's queue, so FIONREAD no longer shows them. *bytes gets the count. */
static int recv_completed_unreaped(const iocp_sock *ws, size_t *bytes) {
  if (!ws->recv_inflight || ws->recv_zero || !HasOverlappedIoCompleted(&ws->recv.ov) ||
      ws->recv.ov.Internal != 0 /* STATUS_SUCCESS */)
    return 0;
  *bytes = (size_t)ws->recv.ov.InternalHigh;
  return 1;
}

static size_t iocp_held_input(const lw_conn *c, int *fin) {
  const iocp_sock *ws = c->backend_data;
  if (!ws || ws->detached)
    return 0;
  size_t n = ws->stash_len - ws->stash_off, got;
  *fin = ws->held_eof;
  if (recv_completed_unreaped(ws, &got)) {
    n += got;
    if (got == 0)
      *fin = 1;
  }
  return n;
}

static void iocp_conn_update(lw_conn *c);

/* lw__backend.deliver_held: from the loop's pending step (lw__conn_deliver_due). */
static void iocp_deliver_held(lw_conn *c) {
  deliver_held(c);
  iocp_conn_update(c);
}

static void iocp_conn_update(lw_conn *c) {
  if (c->detached)
    return;
  iocp_sock *ws = ws_of(c);
  if (c->connecting) {
    if (!ws->connect_inflight)
      post_connect(c);
    return;
  }
  /* Held input the connection wants again is delivered from the pending step, never
   * inside the lw_* call that got here (lw_conn_read_start, lw_close...). */
  int want_read = lw__conn_wants_read(c);
  if (want_read && holds(ws) && !ws->delivering)
    lw__conn_deliver_due(c);
  if (want_read)
    ws->err_parked = 0;
  /* A read callback holds rbuf: nothing is posted until it returns (its caller comes
   * back here then), the send included, so that the receive goes first as it did when
   * it was posted from inside the callback: under Wine a WSASend posted ahead of the
   * WSARecv made a peer's RST read as EOF while the send hung (cm_test_peer_rst ended
   * at the deadline in 5 runs of 9; in 0 of 8 with the receive first). */
  if (ws->delivering)
    return;
  /* (post_recv declines while input is still held.) */
  if (want_read && !ws->recv_inflight)
    post_recv(c, 0);
  if (lw__conn_wants_write(c) && !ws->send_inflight)
    post_send(c);
  /* Liveness on and nothing in flight to carry an error: a zero-byte WSARecv completes
   * with the error (keepalive gave up, RST) without consuming input. When it completes
   * with success, input (or a FIN) is waiting for a reader: it parks until the
   * application reads again. */
  if (!want_read && lw__conn_wants_errors(c) && !ws->recv_inflight && !ws->send_inflight &&
      !ws->err_parked)
    post_recv(c, 1);
}

static void iocp_conn_detach(lw_conn *c, size_t inq_counted) {
  iocp_sock *ws = ws_of(c);
  ws->detached = 1;
  ws->stash_off = ws->stash_len = 0; /* counted as unread by the core's final snapshot */
  ws->held_eof = 0;
  tls_detached = ws; /* the core's lw__sock_close(fd) follows at once */
  if (ws->recv_inflight && !ws->recv_zero) {
    /* Completed now: the final snapshot counted its result as held input
     * (iocp_held_input), or it completed since and took bytes of the FIONREAD the
     * snapshot read after that (or, Wine, bytes it took before: uncounted, never
     * twice). Not completed: its bytes come from that FIONREAD, or arrived since. */
    size_t got;
    ws->recv_seen_detach = recv_completed_unreaped(ws, &got);
    ws->inq_counted = inq_counted;
  }
  if (ws->inflight) {
    /* Cancel what is pending (the WSARecv above all); the close waits for the
     * completions (lw__sock_close / op_finished). */
    CancelIoEx((HANDLE)ws->s, NULL);
    return;
  }
  ws->ops_reported = 1;
  lw__conn_ops_done(c);
}

static int linger0_set(SOCKET s) {
  struct linger lg = {0, 0};
  int len = sizeof(lg);
  return getsockopt(s, SOL_SOCKET, SO_LINGER, (char *)&lg, &len) == 0 && lg.l_onoff &&
         lg.l_linger == 0;
}

/* The core's lw__sock_close(fd) for a detached connection. */
static void ws_core_close(iocp_sock *ws) {
  int reset = linger0_set(ws->s);
  if (reset || ws->inflight == 0) {
    ws_release(ws, reset);
    return;
  }
  st_of(ws->loop)->st.deferred_closes++;
  /* else: released by the last completion (op_finished) */
}

/* closesocket, or DisconnectEx(TF_REUSE_SOCKET) on the way to the reuse pool. */
static void ws_release(iocp_sock *ws, int reset) {
  if (ws->released)
    return;
  ws->released = 1;
  lw__win_forget(ws->s); /* the FIN marks are this connection's, not the socket's next */
  iocp_state *st = st_of(ws->loop);
  lw_conn *c = ws->conn;
  int graceful = c && !reset && c->sm.fin_sent && c->sm.peer_fin && !c->sm.rst &&
                 c->sm.reason != LW_REASON_NAIVE;
  if (graceful && ws->accepted && st->disconnectex && held(st) < st->pool_max) {
    memset(&ws->disc.ov, 0, sizeof(ws->disc.ov));
    ws->disc_inflight = 1;
    st->st.recycling++;
    note_held(st);
    if (!st->disconnectex(ws->s, &ws->disc.ov, TF_REUSE_SOCKET, 0)) {
      DWORD e = (DWORD)WSAGetLastError();
      if (e != ERROR_IO_PENDING)
        post_failure(st, &ws->disc, e);
    }
    return;
  }
  closesocket(ws->s);
  ws->s = INVALID_SOCKET;
}

/* One operation of ws finished for good. */
static void op_finished(iocp_sock *ws) {
  ws->inflight--;
  if (ws->detached && ws->inflight == 0 && !ws->ops_reported) {
    ws_release(ws, 0); /* no-op if already released (abort) */
    ws->ops_reported = 1;
    if (ws->conn)
      lw__conn_ops_done(ws->conn); /* the last completion that names this conn */
  }
}

/* Every socket the core closes comes here (internal.h). */
int lw__sock_close(int fd) {
  if (fd < 0)
    return -1;
  iocp_sock *ws = tls_detached;
  if (ws && (int)ws->s == fd) {
    tls_detached = NULL;
    ws_core_close(ws);
    return 0;
  }
  ws = tls_accepted;
  if (ws && (int)ws->s == fd) { /* accepted, but no lw_conn was made for it */
    tls_accepted = NULL;
    ws_free(ws);
    return 0;
  }
  lw__win_drop_connect_addr(fd);
  lw__win_forget(SOCK(fd));
  if (closesocket(SOCK(fd)) == 0)
    return 0;
  if (WSAGetLastError() == WSAENOTSOCK)
    return _close(fd);
  return -1;
}

/* ---- completions ---- */
static void recv_done(iocp_sock *ws, DWORD bytes, DWORD err) {
  lw_conn *c = ws->conn;
  int zero = ws->recv_zero;
  ws->recv_inflight = 0;
  ws->recv_zero = 0;
  if (c && !c->detached) {
    if (zero) {
      if (err == 0)
        ws->err_parked = 1; /* input or FIN waits for a reader */
      else if (err != ERROR_OPERATION_ABORTED)
        lw__conn_read_done(c, NULL, lw__err_from_win(err));
    } else if (err == 0) {
      /* Held first, delivered by deliver_held (iocp_conn_update, below) as far as the
       * application reads now: a result that completes after lw_conn_read_stop waits
       * for lw_conn_read_start, the peer's FIN included. */
      assert(!holds(ws));
      if (bytes > 0) {
        ws->stash_off = 0;
        ws->stash_len = bytes;
      } else {
        ws->held_eof = 1;
        lw__win_mark(ws->s, LW__WIN_PEER_FIN);
      }
      deliver_held(c); /* in the dispatch, as far as the application reads now */
    } else if (err != ERROR_OPERATION_ABORTED) {
      lw__conn_read_done(c, NULL, lw__err_from_win(err));
    }
  } else if (c && !zero && err == 0 && bytes > 0) {
    /* The close overtook this completion: its bytes are unread input, and a naive
     * close over them resets, as the stack would have with them still queued. The
     * closesocket waits for this completion (lw__sock_close), so the linger lands. */
    if (lw__conn_read_late(c, bytes, ws->recv_seen_detach, &ws->inq_counted))
      linger0_set(ws->s);
  } else if (c && err != 0 && err != ERROR_OPERATION_ABORTED) {
    lw__conn_error_late(c, lw__err_from_win(err)); /* it may have taken the error */
  }
  op_finished(ws);
  if (c && !c->detached)
    iocp_conn_update(c);
}

static void send_done(iocp_sock *ws, DWORD bytes, DWORD err) {
  lw_conn *c = ws->conn;
  ws->send_inflight = 0;
  if (c && c->detached) {
    /* A WSASend that finished (or was cancelled part-way: the count is what it
     * transferred) after the close detached the connection: those bytes left, so
     * bytes_sent says so (lw__conn_write_late). One that failed may have taken the
     * error that killed the connection, as the io_uring send does. */
    if (bytes > 0)
      lw__conn_write_late(c, bytes);
    if (err != 0 && err != ERROR_OPERATION_ABORTED)
      lw__conn_error_late(c, lw__err_from_win(err));
  } else if (c && !c->detached && err != ERROR_OPERATION_ABORTED) {
    /* A send that failed part-way (the peer's RST while it was in flight) still
     * transferred `bytes`: they left, so bytes_sent counts them before the error is
     * reported (Wine keeps a large WSASend pending until every byte is in the Linux
     * socket, so a reset meets it half done: torture_iocp peer-got-more-than-sent). */
    if (err && bytes > 0)
      lw__conn_write_done(c, (ssize_t)bytes);
    if (!c->detached)
      lw__conn_write_done(c, err ? (ssize_t)lw__err_from_win(err) : (ssize_t)bytes);
  }
  op_finished(ws);
  if (c && !c->detached)
    iocp_conn_update(c);
}

static void connect_done(iocp_sock *ws, DWORD err) {
  lw_conn *c = ws->conn;
  ws->connect_inflight = 0;
  if (c && !c->detached && c->connecting && err != ERROR_OPERATION_ABORTED) {
    if (err == 0)
      setsockopt(ws->s, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
    lw__conn_connect_done(c, err ? lw__err_from_win(err) : 0);
  }
  op_finished(ws);
  if (c && !c->detached)
    iocp_conn_update(c);
}

static void disc_done(iocp_state *st, iocp_sock *ws, DWORD err) {
  ws->disc_inflight = 0;
  st->st.recycling--;
  if (err == 0)
    st->st.disconnects_ok++;
  else
    st->st.disconnects_failed++;
  int keep = err == 0 && held(st) < st->pool_max; /* recycling already decremented */
  if (!keep) {
    closesocket(ws->s);
    ws->s = INVALID_SOCKET;
    if (!ws->conn)
      ws_free(ws);
    return;
  }
  /* Ready for AcceptEx: forget the previous connection. */
  ws->detached = ws->released = ws->ops_reported = 0;
  ws->err_parked = 0;
  ws->stash_off = ws->stash_len = 0;
  ws->held_eof = 0;
  if (ws->conn) {
    ws->recycle_ready = 1; /* iocp_conn_free pools it */
    st->st.ready++;
    note_held(st);
    return;
  }
  lw__list_push(&st->pool, &ws->node);
  st->st.pool_size++;
  note_held(st);
}

/* ---------------------------------------------------------------------------------
 * Listeners
 * --------------------------------------------------------------------------------- */
static iocp_sock *accept_socket(iocp_state *st, lw_loop *loop, int family) {
  for (lw__list *p = st->pool.next; p != &st->pool; p = p->next) {
    iocp_sock *ws = LW__CONTAINER_OF(p, iocp_sock, node);
    if (ws->family == family) {
      lw__list_remove(&ws->node);
      st->st.pool_size--;
      st->st.sockets_reused++;
      return ws;
    }
  }
  SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET)
    return NULL;
  iocp_sock *ws = ws_new(loop, s, family);
  if (!ws) {
    closesocket(s);
    return NULL;
  }
  ws->accepted = 1;
  if (associate(st, ws) < 0) {
    ws_free(ws);
    return NULL;
  }
  st->st.sockets_created++;
  return ws;
}

/* Posts AcceptEx on one slot. Returns 0, or an LW_E* error (slot left idle). */
static int post_accept(iocp_state *st, lw_loop *loop, iocp_acc *a) {
  iocp_lis *lis = a->lis;
  for (int tries = 0; tries < 16; tries++) {
    iocp_sock *ws = accept_socket(st, loop, lis->family);
    if (!ws)
      return lw__err_from_win((unsigned long)WSAGetLastError());
    a->ws = ws;
    memset(&a->op.ov, 0, sizeof(a->op.ov));
    DWORD got = 0;
    a->inflight = 1;
    lis->inflight++;
    if (st->acceptex(lis->ls, ws->s, a->addrs, 0, LW__IOCP_ADDRLEN, LW__IOCP_ADDRLEN, &got,
                     &a->op.ov))
      return 0; /* completed at once: the packet is queued all the same */
    DWORD e = (DWORD)WSAGetLastError();
    if (e == ERROR_IO_PENDING)
      return 0;
    a->inflight = 0;
    lis->inflight--;
    a->ws = NULL;
    ws_free(ws);
    if (e != WSAECONNRESET) /* a pending connection reset before it was taken: next */
      return lw__err_from_win(e);
  }
  return LW_EIO;
}

static void want_rearm(iocp_state *st, iocp_lis *lis) {
  if (!lis->want_rearm) {
    lis->want_rearm = 1;
    lw__list_push(&st->rearm, &lis->node);
  }
}

static int iocp_listener_open(lw_listener *l) {
  iocp_state *st = st_of(l->loop);
  iocp_lis *lis = calloc(1, sizeof(*lis));
  if (!lis)
    return LW_ENOMEM;
  lis->l = l;
  lis->ls = SOCK(l->io.fd);
  lw__list_init(&lis->node);
  WSAPROTOCOL_INFOW pi;
  int len = sizeof(pi);
  lis->family = AF_INET;
  if (getsockopt(lis->ls, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pi, &len) == 0)
    lis->family = pi.iAddressFamily;
  if (!CreateIoCompletionPort((HANDLE)lis->ls, st->port, 0, 0)) {
    int r = lw__err_from_win(GetLastError());
    free(lis);
    return r;
  }
  l->backend_data = lis;
  int posted = 0, r = 0;
  for (int i = 0; i < LW__IOCP_ACCEPTS; i++) {
    lis->acc[i].op.kind = OP_ACCEPT;
    lis->acc[i].op.owner = &lis->acc[i];
    lis->acc[i].lis = lis;
    int e = post_accept(st, l->loop, &lis->acc[i]);
    if (e == 0)
      posted++;
    else
      r = e;
  }
  if (!posted) {
    /* Nothing in flight: the listener socket is closed by the core. */
    l->backend_data = NULL;
    free(lis);
    return r ? r : LW_EIO;
  }
  if (posted < LW__IOCP_ACCEPTS)
    want_rearm(st, lis);
  return 0;
}

static void iocp_listener_close(lw_listener *l) {
  iocp_state *st = st_of(l->loop);
  iocp_lis *lis = l->backend_data;
  l->backend_data = NULL;
  if (!lis)
    return;
  lis->l = NULL;
  if (lis->want_rearm) {
    lw__list_remove(&lis->node);
    lis->want_rearm = 0;
  }
  if (lis->inflight == 0) {
    free(lis);
    return;
  }
  /* The core's closesocket of the listener cancels the AcceptEx; each completes
   * (aborted) and frees its socket; the last one frees lis. */
  CancelIoEx((HANDLE)lis->ls, NULL);
  st->orphans++;
}

/* lw_listener_pause: cancel each posted AcceptEx (it completes with
 * ERROR_OPERATION_ABORTED and frees its socket in accept_done); one that completed
 * with a connection first is delivered (the header's contract). Nothing is posted
 * again while paused: queued connections wait in the listen socket's backlog. */
static void iocp_listener_pause(lw_listener *l, int paused) {
  iocp_state *st = st_of(l->loop);
  iocp_lis *lis = l->backend_data;
  if (!lis)
    return;
  if (paused) {
    if (lis->want_rearm) {
      lw__list_remove(&lis->node);
      lis->want_rearm = 0;
    }
    for (int i = 0; i < LW__IOCP_ACCEPTS; i++)
      if (lis->acc[i].inflight)
        CancelIoEx((HANDLE)lis->ls, &lis->acc[i].op.ov);
    return;
  }
  int failed = 0;
  for (int i = 0; i < LW__IOCP_ACCEPTS; i++)
    if (!lis->acc[i].inflight && post_accept(st, l->loop, &lis->acc[i]) != 0)
      failed = 1;
  if (failed)
    want_rearm(st, lis); /* retried at each poll, as after fd exhaustion */
}

static void accept_done(iocp_state *st, lw_loop *loop, iocp_acc *a, DWORD err) {
  iocp_lis *lis = a->lis;
  iocp_sock *ws = a->ws;
  a->ws = NULL;
  a->inflight = 0;
  lis->inflight--;
  lw_listener *l = lis->l;
  if (!l) {
    ws_free(ws);
    if (lis->inflight == 0) {
      free(lis);
      st->orphans--;
    }
    return;
  }
  if (err == 0 && setsockopt(ws->s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                             (const char *)&lis->ls, sizeof(lis->ls)) != 0)
    err = (DWORD)WSAGetLastError();
  if (err == 0) {
    tls_accepted = ws;
    lw__listener_accept_done(l, (int)ws->s, 0);
    tls_accepted = NULL; /* consumed by conn_open, or freed by the core's lw__sock_close */
  } else {
    ws_free(ws);
    /* A connection reset while queued, or the listener cancelled: nothing to tell. */
    if (err != ERROR_OPERATION_ABORTED && err != WSAECONNRESET &&
        err != ERROR_NETNAME_DELETED && err != WSAECONNABORTED &&
        err != ERROR_CONNECTION_ABORTED)
      lw__listener_accept_done(l, -1, lw__err_from_win(err));
  }
  /* The callback may have closed the listener: then lis is orphaned (l == NULL). */
  int settled = 0;
  if (lis->l) {
    if (!lis->l->paused) {
      if (post_accept(st, loop, a) != 0)
        want_rearm(st, lis);
    } else {
      settled = lis->inflight == 0;
    }
  } else if (lis->inflight == 0) {
    free(lis);
    st->orphans--;
  }
  /* Last: a drain waiting for this paused listener may finish (its done_cb may close
   * the listener). */
  if (settled)
    lw__drain_check(loop);
}

/* After a pause, a cancelled AcceptEx may still complete with a connection (Windows
 * completes a queued connection into it by itself): until every one has completed,
 * the drain waits (backend seam). */
static int iocp_listener_accepting(const lw_listener *l) {
  const iocp_lis *lis = l->backend_data;
  return lis && lis->inflight > 0;
}

static void rearm_listeners(iocp_state *st, lw_loop *loop) {
  lw__list batch; /* a listener that fails again re-queues itself for the next round */
  lw__list_move_all(&batch, &st->rearm);
  while (!lw__list_empty(&batch)) {
    iocp_lis *lis = LW__CONTAINER_OF(batch.next, iocp_lis, node);
    lw__list_remove(&lis->node);
    lis->want_rearm = 0;
    int failed = 0;
    for (int i = 0; i < LW__IOCP_ACCEPTS; i++) {
      if (!lis->acc[i].inflight && post_accept(st, loop, &lis->acc[i]) != 0)
        failed = 1;
    }
    if (failed)
      want_rearm(st, lis);
  }
}

/* ---------------------------------------------------------------------------------
 * The wait
 * --------------------------------------------------------------------------------- */
/* ---------------------------------------------------------------------------------
 * Loop integration: the wake channel and foreign socket watchers
 * --------------------------------------------------------------------------------- */
static int iocp_wake_open(lw_loop *loop) {
  (void)loop; /* the port is the channel */
  return 0;
}

/* Any thread (the console control handler's too). The packet carries the loop's wake
 * op; PostQueuedCompletionStatus does not touch the OVERLAPPED, and the core makes
 * sends coalesce, so one op serves every packet. */
static int iocp_wake(lw_loop *loop) {
  iocp_state *st = st_of(loop);
  if (!PostQueuedCompletionStatus(st->port, 0, 0, &st->wake.ov))
    return lw__err_from_win(GetLastError());
  return 0;
}

static ULONG watch_afd_mask(const lw_watch *w) {
  ULONG m = LW__AFD_POLL_ABORT | LW__AFD_POLL_CONNECT_FAIL | LW__AFD_POLL_LOCAL_CLOSE;
  if (w->events & LW_READABLE)
    m |= LW__AFD_POLL_RECEIVE | LW__AFD_POLL_DISCONNECT | LW__AFD_POLL_ACCEPT;
  if (w->events & LW_WRITABLE)
    m |= LW__AFD_POLL_SEND;
  return m;
}

static int watch_arm(lw_watch *w) {
  iocp_state *st = st_of(w->loop);
  iocp_watch *iw = w->backend_data;
  memset(&iw->op.ov, 0, sizeof(iw->op.ov));
  memset(&iw->info, 0, sizeof(iw->info));
  iw->info.Timeout.QuadPart = INT64_MAX;
  iw->info.NumberOfHandles = 1;
  iw->info.Exclusive = FALSE;
  iw->info.Handles[0].Handle = iw->base;
  iw->info.Handles[0].Events = watch_afd_mask(w);
  iw->mask = iw->info.Handles[0].Events;
  if (!DeviceIoControl((HANDLE)st->afd_sock, LW__IOCTL_AFD_POLL, &iw->info, sizeof(iw->info),
                       &iw->info, sizeof(iw->info), NULL, &iw->op.ov)) {
    DWORD e = GetLastError();
    if (e != ERROR_IO_PENDING)
      return lw__err_from_win(e);
  }
  /* Pending, or done at once: either way its packet comes through the port. */
  iw->inflight = 1;
  iw->cancelled = 0;
  w->busy = 1;
  return 0;
}

static void watch_cancel(lw_watch *w) {
  iocp_state *st = st_of(w->loop);
  iocp_watch *iw = w->backend_data;
  if (!iw->inflight || iw->cancelled)
    return;
  iw->cancelled = 1;
  /* ERROR_NOT_FOUND: it completed already; its packet is on the way either way. */
  CancelIoEx((HANDLE)st->afd_sock, &iw->op.ov);
}

static int iocp_watch_set(lw_watch *w) {
  iocp_state *st = st_of(w->loop);
  iocp_watch *iw = w->backend_data;
  if (!iw) {
    if (!w->events)
      return 0;
    SOCKET s = SOCK(w->io.fd);
    int type;
    int tl = sizeof(type);
    if (getsockopt(s, SOL_SOCKET, SO_TYPE, (char *)&type, &tl) != 0)
      return LW_EINVAL; /* not a socket: AFD polls sockets only */
    if (st->afd_sock == INVALID_SOCKET) {
      SOCKET a = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
      if (a == INVALID_SOCKET)
        return lw__err_from_win((unsigned long)WSAGetLastError());
      if (!CreateIoCompletionPort((HANDLE)a, st->port, 0, 0)) {
        int r = lw__err_from_win(GetLastError());
        closesocket(a);
        return r;
      }
      st->afd_sock = a;
    }
    iw = calloc(1, sizeof(*iw));
    if (!iw)
      return LW_ENOMEM;
    iw->op.kind = OP_WATCH;
    iw->op.owner = w;
    /* A layered service provider wraps the socket: AFD knows only the base one. */
    SOCKET base = INVALID_SOCKET;
    DWORD got = 0;
    if (WSAIoctl(s, SIO_BASE_HANDLE, NULL, 0, &base, sizeof(base), &got, NULL, NULL) != 0 ||
        base == INVALID_SOCKET)
      base = s;
    iw->base = (HANDLE)base;
    w->backend_data = iw;
  }
  if (!w->events) {
    watch_cancel(w);
    return 0;
  }
  if (iw->inflight) {
    if (iw->mask != watch_afd_mask(w))
      watch_cancel(w); /* its completion re-arms with the new events */
    return 0;
  }
  return watch_arm(w);
}

static void watch_done(lw_watch *w, DWORD err) {
  iocp_watch *iw = w->backend_data;
  iw->inflight = 0;
  iw->cancelled = 0;
  if (w->freed) {
    lw__watch_ops_done(w);
    return;
  }
  w->busy = 0;
  if (!err && iw->info.NumberOfHandles >= 1) {
    ULONG ev = iw->info.Handles[0].Events;
    int e = 0;
    if (ev & (LW__AFD_POLL_RECEIVE | LW__AFD_POLL_DISCONNECT | LW__AFD_POLL_ACCEPT))
      e |= LW_READABLE;
    if (ev & LW__AFD_POLL_SEND)
      e |= LW_WRITABLE;
    if (ev & (LW__AFD_POLL_ABORT | LW__AFD_POLL_CONNECT_FAIL | LW__AFD_POLL_LOCAL_CLOSE))
      e |= LW_WATCH_ERROR;
    lw__watch_event(w, e); /* may stop, restart or free w: memory stays until endgame */
  } else if (err && err != ERROR_OPERATION_ABORTED) {
    lw__watch_event(w, LW_WATCH_ERROR);
  }
  if (!w->freed && w->events && !iw->inflight && watch_arm(w) < 0)
    lw__watch_event(w, LW_WATCH_ERROR); /* the socket is gone: say so, do not spin */
}

static int iocp_poll(lw_loop *loop, int timeout_ms) {
  iocp_state *st = st_of(loop);
  /* Listeners waiting for an accept socket (fd/memory exhaustion) retry every 100 ms
   * at most: no spin while the system has no sockets to give. */
  if (!lw__list_empty(&st->rearm) && (timeout_ms < 0 || timeout_ms > 100))
    timeout_ms = 100;
  OVERLAPPED_ENTRY ents[LW__IOCP_BATCH];
  ULONG n = 0;
  if (!GetQueuedCompletionStatusEx(st->port, ents, LW__IOCP_BATCH, &n,
                                   timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms, FALSE)) {
    DWORD e = GetLastError();
    if (e != WAIT_TIMEOUT && e != WAIT_IO_COMPLETION)
      return lw__err_from_win(e);
    n = 0;
  }
  loop->now = lw__now_ms();
  for (ULONG i = 0; i < n; i++) {
    iocp_op *op = LW__CONTAINER_OF(ents[i].lpOverlapped, iocp_op, ov);
    DWORD err = ents[i].lpCompletionKey
                    ? (DWORD)ents[i].lpCompletionKey /* post_failure */
                    : (DWORD)lw__win_err_from_ntstatus((long)op->ov.Internal);
    DWORD bytes = ents[i].dwNumberOfBytesTransferred;
    switch (op->kind) {
    case OP_RECV:
      recv_done(op->owner, bytes, err);
      break;
    case OP_SEND:
      send_done(op->owner, bytes, err);
      break;
    case OP_CONNECT:
      connect_done(op->owner, err);
      break;
    case OP_DISCONNECT:
      disc_done(st, op->owner, err);
      break;
    case OP_ACCEPT:
      accept_done(st, loop, op->owner, err);
      break;
    case OP_WAKE:
      lw__loop_wake_run(loop);
      break;
    case OP_WATCH:
      watch_done(op->owner, err);
      break;
    default:
      assert(0 && "unknown IOCP op");
    }
  }
  if (!lw__list_empty(&st->rearm))
    rearm_listeners(st, loop);
  return (int)n;
}

const lw__backend lw__backend_iocp = {
    .name = "iocp",
    .init = iocp_init,
    .destroy = iocp_destroy,
    .poll = iocp_poll,
    .listener_open = iocp_listener_open,
    .listener_close = iocp_listener_close,
    .listener_pause = iocp_listener_pause,
    .listener_accepting = iocp_listener_accepting,
    .conn_open = iocp_conn_open,
    .conn_update = iocp_conn_update,
    .conn_detach = iocp_conn_detach,
    .conn_free = iocp_conn_free,
    .held_input = iocp_held_input,
    .deliver_held = iocp_deliver_held,
    .set_socket_reuse = lw__iocp_set_reuse,
    .wake_open = iocp_wake_open,
    .wake = iocp_wake,
    .watch_set = iocp_watch_set,
};
