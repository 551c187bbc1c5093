/*
 * lastword.h - the one public header of liblastword.
 *
 * liblastword is an event loop for TCP connections whose first concern is how a
 * connection ENDS: no response lost to an RST, no peer left in CLOSE_WAIT, a reason
 * for every connection that ends, and a count of the bytes the peer acknowledged.
 *
 * Everything not declared here is internal (lw__ prefix) and may change.
 *
 * ===================================================================================
 *  THE TERMINATION CONTRACT  (read this first; the implementation follows it)
 * ===================================================================================
 *
 * Three ways to end a connection, and one callback that always reports the ending.
 *
 * lw_shutdown(c)  -- half-close.
 *   Wire: a FIN goes out after the last byte already queued with lw_conn_write().
 *   The connection keeps reading: the peer may go on sending (B8, A12).
 *   After it, lw_conn_write() fails with LW_ESHUTDOWN. Nothing is freed.
 *   Called before a connect has completed, the FIN waits for the connection: it goes
 *   out as soon as the handshake completes (shutdown() in SYN_SENT would abort the
 *   connect instead), before connect_cb runs.
 *
 * lw_close(c, deadline_ms)  -- graceful ("lingering") close; the right default.
 *   1. New writes are refused (LW_ECLOSING); reading for the application stops.
 *   2. The write queue is flushed into the kernel.
 *   3. shutdown(SHUT_WR): the FIN follows the last byte (A14 step 1).
 *   4. Input is read and DISCARDED (counted) until the peer's FIN (A14 step 2). This is
 *      what keeps the kernel from answering our close() with an RST when input is left
 *      unread (B13; CLAIMS.md: 128 KB of a 3.9 MB response arrived after a naive close).
 *      Input never makes the close reset while a byte we wrote is unacknowledged; once
 *      all is acknowledged, linger_timeout_ms / linger_time_ms bound the wait for the
 *      peer's FIN (lw_conn_options: "The lingering close and the peer's input").
 *   5. The library waits until the peer has acknowledged every byte (Linux: SIOCOUTQ
 *      reaches 0), so that lw_close_info.bytes_acked is a delivery confirmation.
 *   6. close(fd).
 *   If deadline_ms passes before step 6, the connection is reset (RST, reason
 *   LW_REASON_DEADLINE) and the bytes not delivered are counted. It never blocks the
 *   loop: SO_LINGER with a positive timeout is never used, because on Linux close() then
 *   blocks even on a non-blocking socket (A8 describes Windows only).
 *   Called before a connect has completed, it aborts the attempt (reason ABORT).
 *   lw_close() on a connection already closing returns LW_EALREADY and changes nothing;
 *   after lw_shutdown() it is the normal way to finish.
 *
 * lw_close_naive(c) -- the plain close() most programs do, for comparison only.
 *
 * lw_abort(c)  -- hard close, now.
 *   Wire: RST (SO_LINGER{1,0} then close(), with no shutdown() before it: Windows
 *   ignores the reset after a shutdown). No TIME_WAIT on this side (A6, A9).
 *   Unsent and unread bytes are discarded and counted. Allowed while a lw_close() is
 *   lingering (escalates it to RST now); LW_EALREADY once the fd is closed.
 *
 * The peer ends first:
 *   - Peer FIN: the read callback gets nread == LW_EOF (B3, B14). Unless the connection
 *     was made with allow_half_close, the library then finishes the close by itself
 *     once every byte queued so far (including bytes queued from inside that EOF
 *     callback) is in the kernel: no connection is left in CLOSE_WAIT (B5).
 *     With allow_half_close the application keeps writing and ends it itself.
 *   - Peer RST (or any fatal socket error): queued writes are cancelled, the fd is
 *     closed, on_close reports LW_REASON_PEER_RESET (or DEAD_PEER for ETIMEDOUT, or
 *     ERROR).
 *   - The peer vanishes (no FIN, no RST): nothing happens unless liveness is set up --
 *     dead_after_ms (DEAD_PEER), idle_timeout_ms (IDLE_TIMEOUT), stall_timeout_ms
 *     (STALLED) in lw_conn_options below.
 *
 * Callbacks and memory (A2):
 *   - Every lw_conn gets exactly ONE on_close callback, whatever ended it, including a
 *     failed connect. It comes after every pending operation on the connection has
 *     completed or been cancelled: each write callback has fired first (status 0 if the
 *     bytes reached the kernel, LW_ECANCELED if they did not), and no read callback
 *     follows it. A buffer given to lw_conn_write() may be freed in its write callback,
 *     or in on_close at the latest -- never earlier.
 *   - The lw_conn pointer stays valid until on_close returns; the library frees it
 *     right after. Do not use it after that.
 *   - Every call documented here may be made from inside any callback of this library,
 *     including closing the very connection the callback is about: user callbacks that
 *     follow a close are not run, and memory is freed only after the callback returns
 *     (reference count + deferred free). Write callbacks, drain_cb, the drain's conn_cb
 *     and done_cb, and on_close are always deferred: they never run inside the lw_*
 *     call that caused them.
 *
 * What lw_close_info tells (the part no socket API reports):
 *   reason, initiator (who sent the first FIN or RST), whether it ended with an RST,
 *   the OS error, bytes queued / written to the kernel / ACKNOWLEDGED BY THE PEER /
 *   discarded unsent / discarded unread, whether this side entered TIME_WAIT (measured
 *   from TCP_INFO just before close()), and how long the close took.
 *
 * Threads: a loop and everything on it are used by one thread at a time, and the
 * library takes no lock for them. A loop may change threads between calls -- made in
 * one, run in another, closed in a third (examples/respond --threads) -- when the
 * application orders those calls itself (thread create/join). The one call any thread
 * (and, on Unix, a signal handler) may make at any time is lw_wakeup_send() (see "Loop
 * integration" below): the way to reach a loop that is running. Exception: with
 * LW_URING_DEFER=1 (io_uring's opt-in task-work mode, src/linux/uring.c) the ring
 * belongs for good to the first thread that waits on it or pauses/closes a listener on
 * it, so each loop must live its whole life, lw_loop_new to lw_loop_close, in one
 * thread. lw_listen_fds and the hand-off calls change the environment: not
 * thread-safe (call them before starting threads).
 * Signals: every send uses MSG_NOSIGNAL; SIGPIPE is never raised by the library.
 */
#ifndef LASTWORD_H
#define LASTWORD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------------------------------
 * Version. These three lines are the only place the version is written: CMake's
 * project(), the shared library's version, lastword.pc and the CMake package's version
 * file are all read from them at configure time.
 * ---------------------------------------------------------------------------------- */
#define LW_VERSION_MAJOR 0
#define LW_VERSION_MINOR 1
#define LW_VERSION_PATCH 0
/* The same number as lw_version() returns, for the header a program was compiled with. */
#define LW_VERSION_HEX ((LW_VERSION_MAJOR << 16) | (LW_VERSION_MINOR << 8) | LW_VERSION_PATCH)

/* The version of the library the program is RUNNING with (which may differ from the
 * header it was compiled with, for the shared library): (major << 16) | (minor << 8) |
 * patch, so versions compare as integers; e.g. 0.1.0 is 0x000100. A program that needs
 * the calls of minor version N of 0.N checks lw_version() >= (N << 8) at start. */
unsigned int lw_version(void);
/* The same as "MAJOR.MINOR.PATCH", e.g. "0.1.0". A static string; never NULL. */
const char *lw_version_string(void);

/* ----------------------------------------------------------------------------------
 * Errors: negative codes, one table. The values are the library's own (not errno), so
 * they are the same on every OS; lw__err_from_errno / lw__err_from_win map OS errors.
 * ---------------------------------------------------------------------------------- */
#define LW_ERRNO_MAP(X)                                                                        \
  X(EOF, -1, "end of stream: the peer sent FIN")                                               \
  X(EINVAL, -2, "invalid argument")                                                            \
  X(ENOMEM, -3, "out of memory")                                                               \
  X(EBUSY, -4, "resource busy: handles are still alive")                                       \
  X(EAGAIN, -5, "resource temporarily unavailable")                                            \
  X(ECANCELED, -6, "operation cancelled: the connection ended before it completed")            \
  X(ECONNRESET, -7, "connection reset by peer")                                                \
  X(ECONNREFUSED, -8, "connection refused")                                                    \
  X(ECONNABORTED, -9, "connection aborted")                                                    \
  X(ETIMEDOUT, -10, "connection timed out: the peer stopped answering")                        \
  X(EPIPE, -11, "broken pipe: the peer no longer accepts data")                                \
  X(ENOTCONN, -12, "socket is not connected")                                                  \
  X(EADDRINUSE, -13, "address already in use")                                                 \
  X(EADDRNOTAVAIL, -14, "address not available")                                               \
  X(EAFNOSUPPORT, -15, "address family not supported")                                         \
  X(EMFILE, -16, "too many open files in this process")                                        \
  X(ENFILE, -17, "too many open files in the system")                                          \
  X(EACCES, -18, "permission denied")                                                          \
  X(ENETUNREACH, -19, "network is unreachable")                                                \
  X(EHOSTUNREACH, -20, "host is unreachable")                                                  \
  X(ENOSYS, -21, "not supported by this backend or OS")                                        \
  X(ESHUTDOWN, -22, "write after lw_shutdown(): the FIN is already queued")                    \
  X(ECLOSING, -23, "the connection is closing: no new writes")                                 \
  X(EALREADY, -24, "already closing or closed")                                                \
  X(ENOBUFS, -25, "no buffer space available")                                                 \
  X(EIO, -26, "input/output error (unmapped OS error)")                                        \
  X(ENOENT, -27, "no such address or name")                                                    \
  X(EPERM, -28, "operation not permitted")                                                     \
  X(EQUEUEFULL, -29, "write queue full (write_queue_max): the connection is reset")            \
  X(ENOSPC, -30, "no space: the buffer given is too small")

typedef enum {
  LW_OK = 0,
#define LW__ERR_ENUM(name, val, msg) LW_##name = (val),
  LW_ERRNO_MAP(LW__ERR_ENUM)
#undef LW__ERR_ENUM
} lw_errno;

/* lw_conn_write / lw_conn_write_copy's one positive result: the bytes ARE queued (this
 * is not an error), and the write queue is now at or above write_high_water. The
 * application should stop producing until drain_cb fires. The errors above are all
 * negative, so `r < 0` tests for failure and `r >= 0` for "queued". */
#define LW_ABOVE_HIGH_WATER 1

/* Message for an error code or LW_ABOVE_HIGH_WATER ("unknown error" for anything
 * else). Never NULL. */
const char *lw_strerror(int err);
/* Symbolic name, e.g. "ECONNRESET"; "OK" for 0, "ABOVE_HIGH_WATER" for
 * LW_ABOVE_HIGH_WATER, "EUNKNOWN" for anything else. Never NULL. */
const char *lw_err_name(int err);

/* ----------------------------------------------------------------------------------
 * Close reasons
 * ---------------------------------------------------------------------------------- */
#define LW_REASON_MAP(X)                                                                       \
  X(NONE, "none")                           /* not closed yet */                               \
  X(GRACEFUL, "graceful")                   /* we sent FIN first, all acked, peer FIN seen */  \
  X(PEER_CLOSED_FIRST, "peer-closed-first") /* peer's FIN came before ours */                  \
  X(PEER_RESET, "peer-reset")               /* RST received (ECONNRESET / EPIPE) */            \
  X(DEAD_PEER, "dead-peer")                 /* keepalive or user timeout: ETIMEDOUT */         \
  X(IDLE_TIMEOUT, "idle-timeout")           /* application idle timer */                       \
  X(STALLED, "stalled")                     /* data queued, nothing acked for too long */      \
  X(DEADLINE, "deadline")                   /* lw_close() deadline passed: escalated to RST */ \
  X(ABORT, "abort")                         /* lw_abort() */                                   \
  X(DRAIN, "drain")                         /* server drain ended it */                        \
  X(NAIVE, "naive")                         /* lw_close_naive(): the OS default close */       \
  X(ERROR, "error")                         /* any other error; see os_error */                \
  X(QUEUE_FULL, "queue-full")               /* a write would pass write_queue_max: RST */      \
  X(DISCARD_LIMIT, "discard-limit")         /* linger input passed linger_discard_max: RST */  \
  X(FIRST_BYTE_TIMEOUT, "first-byte-timeout") /* accepted, peer silent: RST */                 \
  X(LINGER_TIMEOUT, "linger-timeout") /* all acked, peer never FINed: linger_time(out)_ms */

typedef enum {
#define LW__REASON_ENUM(name, str) LW_REASON_##name,
  LW_REASON_MAP(LW__REASON_ENUM)
#undef LW__REASON_ENUM
      LW_REASON__COUNT
} lw_close_reason;

const char *lw_reason_name(lw_close_reason r);

typedef enum { LW_INITIATOR_NONE = 0, LW_INITIATOR_LOCAL, LW_INITIATOR_PEER } lw_initiator;

typedef struct lw_close_info {
  lw_close_reason reason;
  /* Who ended it first, by what each side SENT: LOCAL if this side handed its kernel
   * a FIN (shutdown/close) or sent an RST before the peer's FIN or RST had reached this
   * side's kernel (read by the application or not), PEER if the
   * peer's arrived first (a refused connect: its RST); a connection our TCP gave up on
   * (ETIMEDOUT, other errors) is LOCAL. So lw_close() with bytes still queued is not
   * yet an ending -- a peer FIN that arrives before our FIN leaves makes it PEER -- and
   * our FIN followed by the peer's RST stays LOCAL. */
  lw_initiator initiator;
  int rst;                   /* 1 if the connection ended with an RST (sent or received) */
  int os_error;              /* LW_E* code of the error that ended it, or 0 */
  uint64_t bytes_queued;     /* accepted by lw_conn_write() over the connection's life */
  uint64_t bytes_sent;       /* written into the kernel */
  uint64_t bytes_acked;      /* acknowledged by the peer's TCP (a delivery confirmation) */
  int acked_known;           /* 0 where the OS cannot tell (bytes_acked is then 0) */
  uint64_t unsent_discarded; /* queued, never acknowledged: in our queue or the kernel's */
  uint64_t unread_discarded; /* input the application never saw (linger drain + RST) */
  uint64_t bytes_received;   /* delivered to the read callback */
  int time_wait;             /* 1 if this side's socket entered TIME_WAIT */
  uint64_t close_ms;         /* from the start of the close (ours or the peer's) to the
                                socket's close() (on_close may come later: IOCP/io_uring
                                wait for the cancelled operations first) */
  /* ms since the peer's TCP last sent us anything (data, ACK, keepalive answer) when
   * the connection ended (TCP_INFO last_ack_recv/last_data_recv, read just before
   * close). For DEAD_PEER: how long the peer had been silent when declared dead. Where
   * the OS cannot tell: since the last byte read or written. */
  uint64_t peer_silent_ms;
} lw_close_info;

/* ----------------------------------------------------------------------------------
 * Objects and callbacks
 * ---------------------------------------------------------------------------------- */
typedef struct lw_loop lw_loop;
typedef struct lw_conn lw_conn;
typedef struct lw_listener lw_listener;
typedef struct lw_timer lw_timer;

/* nread > 0: data (valid only during the call). nread == LW_EOF: the peer sent FIN.
 * Errors never come here: they end the connection and are reported by on_close. */
typedef void (*lw_read_cb)(lw_conn *c, long nread, const char *buf);
/* status 0: every byte of this write is in the kernel. LW_ECANCELED: it is not (the
 * connection ended first). The buffer may be freed from here on. */
typedef void (*lw_write_cb)(lw_conn *c, int status, void *arg);
/* The write queue fell to the low-water mark after having reached the high-water mark. */
typedef void (*lw_drain_cb)(lw_conn *c);
/* Exactly once per connection; see the contract above. */
typedef void (*lw_close_cb)(lw_conn *c, const lw_close_info *info);
/* status 0: connected. Otherwise the connect failed and on_close follows: reason ERROR
 * (os_error: LW_ECONNREFUSED, LW_ENETUNREACH, ...), or DEAD_PEER when it timed out
 * (status LW_ETIMEDOUT: no answer to the SYNs within dead_after_ms / user_timeout_ms,
 * or the kernel's SYN retries); peer_silent_ms is then the time since the connect
 * began. Status LW_ECONNRESET: the peer accepted and reset the connection before the
 * loop saw the connect complete; on_close says PEER_RESET. */
typedef void (*lw_connect_cb)(lw_conn *c, int status);
/* status 0: c is a new connection (set its callbacks, start reading). Otherwise c is NULL
 * and status tells what failed (e.g. LW_EMFILE: the pending connection was refused). */
typedef void (*lw_accept_cb)(lw_listener *l, lw_conn *c, int status);
typedef void (*lw_timer_cb)(lw_timer *t);

/* ----------------------------------------------------------------------------------
 * Loop
 * ---------------------------------------------------------------------------------- */
typedef enum {
  LW_RUN_DEFAULT = 0, /* until lw_loop_stop() or nothing is left alive */
  LW_RUN_ONCE,        /* one iteration: runs what is due; waits for events only if
                         nothing was (unlike uv_run(UV_RUN_ONCE), a due timer alone
                         does not make it sleep until the next one) */
  LW_RUN_NOWAIT       /* one iteration, no waiting */
} lw_run_mode;

/* backend: NULL or "" for the default ("epoll"); the environment variable LW_BACKEND
 * ("epoll", "uring" or "io_uring") overrides the default. Returns LW_ENOSYS for a
 * backend name passed here that this build does not know. An unknown LW_BACKEND value
 * is not an error: one line on stderr (once per process), and the default is used. A
 * backend the kernel refuses (io_uring disabled) falls back to epoll the same way. */
int lw_loop_new(lw_loop **out, const char *backend);
/* Returns 0 when stopped or when no handle is left alive, negative on error. */
int lw_loop_run(lw_loop *loop, lw_run_mode mode);
void lw_loop_stop(lw_loop *loop);
/* Frees the loop. LW_EBUSY (and nothing freed) while connections, listeners, timers,
 * signal watchers, wake-ups or fd watchers exist: close them and run the loop until
 * their close callbacks have fired. A freed fd watcher's memory goes at the end of a
 * loop iteration (a callback later in the same batch may still name it), so run the
 * loop once after lw_watch_free (LW_RUN_NOWAIT) before closing it; on io_uring it may
 * take more: the memory waits for the cancelled poll's completion. */
int lw_loop_close(lw_loop *loop);
uint64_t lw_loop_now(const lw_loop *loop); /* milliseconds, monotonic, cached per tick */
const char *lw_loop_backend(const lw_loop *loop);
void lw_loop_set_data(lw_loop *loop, void *data);
void *lw_loop_get_data(const lw_loop *loop);
/* Socket reuse (A15), Windows (IOCP) only. Keeps up to max_sockets accepted sockets
 * whose connection ended gracefully (both FINs, no RST, not lw_close_naive), recycled
 * with DisconnectEx(TF_REUSE_SOCKET) into a pool that AcceptEx draws from instead of
 * making new sockets. 0 (the default) turns it off; at most 1024. Sockets waiting in
 * DisconnectEx count against the bound.
 * TIME_WAIT caveat: a socket whose FIN went first is in TIME_WAIT, and Windows completes
 * its DisconnectEx only when that ends (2 x MSL: 240 s by default): reuse pays off for
 * servers whose clients close first.
 * LW_ENOSYS on other backends (Linux has no need: see claim A15 in the lab) and under
 * Wine, which cannot recycle a socket (src/win/README.md). */
int lw_loop_set_socket_reuse(lw_loop *loop, unsigned max_sockets);

/* ----------------------------------------------------------------------------------
 * Timers: a binary heap; start/stop are O(log n), 100k armed timers are cheap.
 * ---------------------------------------------------------------------------------- */
int lw_timer_new(lw_loop *loop, lw_timer **out);
/* (Re)arms: first expiry after timeout_ms, then every repeat_ms (0: once). */
int lw_timer_start(lw_timer *t, lw_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms);
void lw_timer_stop(lw_timer *t);
/* Stops and frees at once (a timer has no pending I/O). Safe inside its own callback. */
void lw_timer_free(lw_timer *t);
void lw_timer_set_data(lw_timer *t, void *data);
void *lw_timer_get_data(const lw_timer *t);

/* ----------------------------------------------------------------------------------
 * Loop integration: signals, a cross-thread wake-up, foreign descriptors, unref, a walk
 * over the live connections. Every handle below belongs to its loop's thread, is made
 * with _new, freed with _free (lw_loop_close returns LW_EBUSY while any exists), and may
 * be started, stopped and freed from inside any callback, its own included.
 *
 * Keeping the loop alive: lw_loop_run(LW_RUN_DEFAULT) returns when nothing alive is
 * left. Alive are: connections, listeners, armed timers, started signal and fd
 * watchers, and wake-ups (a wake-up is always active, as libuv's uv_async) -- each
 * unless _unref'd. An unref'd handle still works while the loop runs for other reasons
 * (its callback runs as usual); it only does not keep the loop running by itself. _ref
 * undoes _unref; both are idempotent and cheap, and survive stop/start.
 * ---------------------------------------------------------------------------------- */
#ifdef _WIN32
typedef uintptr_t lw_sock; /* a SOCKET */
#else
typedef int lw_sock; /* a file descriptor */
#endif

void lw_timer_unref(lw_timer *t);
void lw_timer_ref(lw_timer *t);

/* Signal watcher.
 * Every started watcher for signum, in EVERY loop of the process, runs once per
 * delivered signal (coalesced only as the OS coalesces: two identical signals that
 * arrive before the handler ran for the first are one), from its loop's thread, in the
 * loop's dispatch -- never inside the OS handler, so the callback may call anything.
 * Unix: one process-wide sigaction handler (SA_RESTART, every signal blocked while it
 * runs) installed when the first watcher of signum in the process starts; it is
 * async-signal-safe (atomics and one write(2) to each interested loop's eventfd) and
 * preserves errno. The previous disposition (handler, mask and flags) is restored when
 * the last watcher of signum in the process stops. Any thread may receive the signal;
 * nothing needs to be blocked (unlike signalfd, which needs the signal blocked in
 * EVERY thread). Not for SIGKILL/SIGSTOP (LW_EINVAL) nor for synchronous faults
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL: LW_EINVAL, a handler that returns would re-fault).
 * Windows: SetConsoleCtrlHandler, installed while any watcher runs: CTRL_C -> SIGINT
 * (2), CTRL_BREAK -> SIGBREAK (21), CTRL_CLOSE -> SIGHUP (1), as libuv; the event is
 * consumed (the default handler, which ends the process, is not run) only when some
 * watcher took it. Any other signum is LW_ENOSYS there (Windows has no SIGTERM event).
 * lw_signal_start on a started watcher changes its signum/callback.
 * At most 64 loops of a process may watch signals at once (LW_ENOSPC beyond).
 * fork() (Unix): a child must not use its parent's loops -- their epoll set, io_uring
 * ring and eventfd are the parent's too (lw_signal_start on one: LW_EINVAL; freeing
 * their watchers is harmless). The child starts with the dispositions the process had
 * before the library's first handler and no watcher, so a signal meant to end it does,
 * and it may make loops and watch signals of its own (a signal that reaches it before
 * fork() has returned there may still be taken by the library's handler). */
typedef struct lw_signal lw_signal;
typedef void (*lw_signal_cb)(lw_signal *s, int signum);
int lw_signal_new(lw_loop *loop, lw_signal **out);
int lw_signal_start(lw_signal *s, lw_signal_cb cb, int signum);
void lw_signal_stop(lw_signal *s);
void lw_signal_free(lw_signal *s); /* stop + free; safe inside its own callback */
void lw_signal_unref(lw_signal *s);
void lw_signal_ref(lw_signal *s);
void lw_signal_set_data(lw_signal *s, void *data);
void *lw_signal_get_data(const lw_signal *s);

/* Cross-thread wake-up.
 * lw_wakeup_send is THE ONLY call of this library that may be made from another thread
 * (and, on Unix, from a signal handler: it is async-signal-safe). Sends coalesce: after
 * any send, the callback runs at least once in the loop's thread, later than the send;
 * it never runs without a send before it (so calls <= sends). Publish data for the
 * callback before the send (the send is a release, the callback's start an acquire).
 * Linux: an eventfd (registered with epoll; read by an IORING_OP_READ on io_uring);
 * Windows: PostQueuedCompletionStatus. Returns 0, or an LW_E code if the OS refused.
 * lw_wakeup_free must not race a send: free it only once no other thread can START a
 * send (a send the free does not know of would touch freed memory; the library cannot
 * tell). A send already under way is waited for: the callback of a thread's last send
 * may free the wake-up (and the loop then be closed) while that send has not returned
 * yet -- the free spins until it has (the length of one write(2)). */
typedef struct lw_wakeup lw_wakeup;
typedef void (*lw_wakeup_cb)(lw_wakeup *w);
int lw_wakeup_new(lw_loop *loop, lw_wakeup_cb cb, lw_wakeup **out);
int lw_wakeup_send(lw_wakeup *w);
void lw_wakeup_free(lw_wakeup *w); /* safe inside its own callback */
void lw_wakeup_unref(lw_wakeup *w);
void lw_wakeup_ref(lw_wakeup *w);
void lw_wakeup_set_data(lw_wakeup *w, void *data);
void *lw_wakeup_get_data(const lw_wakeup *w);

/* Readiness watcher for a foreign descriptor (a socket, pipe, eventfd, tty... that the
 * application owns: never read, written or closed by the library). Level-triggered, as
 * poll(2): the callback runs in every iteration while the fd is ready for something
 * asked, with the events that are ready; LW_WATCH_ERROR (POLLERR, POLLHUP, POLLNVAL)
 * is delivered whether asked or not -- a watcher that ignores it is called again at
 * once (stop or free it). A peer that closed shows as READABLE (read returns 0) and/or
 * ERROR, as the OS reports it (a pipe: HUP; a Linux TCP socket: POLLIN|POLLRDHUP, and
 * POLLHUP once both directions are shut).
 * Rules: stop or free the watcher BEFORE closing the fd (on io_uring and IOCP the
 * library stops naming it by then; on epoll the registration belongs to the open file,
 * and a dup'ed or forked copy of it would keep reporting). Broken anyway (closed while
 * watched, the number then taken by another file -- often one of this loop's own
 * connections), the watcher never touches the new file: on Linux the library checks,
 * before it names the number to the kernel or reports readiness, that it still names
 * the file the watcher was made for (fstat: device and inode); if not, lw_watch_start
 * returns LW_EINVAL, stop/free leave the kernel alone, and a started watcher reports
 * no readiness any more (io_uring: LW_WATCH_ERROR once; epoll: nothing, the kernel
 * dropped the registration with the file). (eventfd, timerfd and the like share one
 * inode, so between two of those the check cannot tell.) Regular files are refused
 * (LW_EPERM: always ready, as epoll refuses them). One watcher per fd per loop (a
 * second one: LW_EBUSY on epoll; do not rely on it elsewhere).
 * lw_watch_start on a started watcher changes its events/callback. On Windows: sockets
 * only (see src/win/README.md for how, and its limits). Readiness consumed outside the
 * callback may still be reported once (io_uring, IOCP: the poll re-armed after the last
 * callback may have completed before that read): read/write non-blocking and take
 * EAGAIN as "not ready", as with any poll loop. */
#define LW_READABLE 1
#define LW_WRITABLE 2
#define LW_WATCH_ERROR 4 /* POLLERR/POLLHUP/POLLNVAL seen (also delivered unasked) */
typedef struct lw_watch lw_watch;
typedef void (*lw_watch_cb)(lw_watch *w, int events);
int lw_watch_new(lw_loop *loop, lw_sock fd, lw_watch **out);
int lw_watch_start(lw_watch *w, int events, lw_watch_cb cb);
void lw_watch_stop(lw_watch *w);
/* Never closes the fd; safe in its own callback. The memory is released once the
 * kernel no longer names it (io_uring: after the cancelled poll's completion), which
 * the loop waits for: the fd may be closed as soon as this returns. */
void lw_watch_free(lw_watch *w);
void lw_watch_unref(lw_watch *w);
void lw_watch_ref(lw_watch *w);
void lw_watch_set_data(lw_watch *w, void *data);
void *lw_watch_get_data(const lw_watch *w);

/* Walk: cb runs for every connection of the loop not yet reported to on_close (a
 * connection closing or closed but whose on_close has not run yet is visited), once
 * each, in an unspecified order. The callback may call anything: lw_close / lw_abort /
 * lw_close_naive of this or any other connection (the walk goes on over the rest;
 * nothing is freed before it returns), new connections (lw_conn_connect, accepts) are
 * not visited. Connections still connecting are visited. */
typedef void (*lw_walk_cb)(lw_conn *c, void *arg);
void lw_loop_walk(lw_loop *loop, lw_walk_cb cb, void *arg);

/* ---------------------------------------------------------------------------------- */
/* ----------------------------------------------------------------------------------
 * Connection options (given to lw_conn_connect, or to a listener: inherited by every
 * accepted connection). Zero-initialise, then set what you need; 0 means the default.
 * ---------------------------------------------------------------------------------- */
typedef struct lw_conn_options {
  size_t write_high_water;    /* drain_cb threshold; default 1 MiB (low water = half) */
  size_t read_size;           /* max bytes per read callback; default 64 KiB */
  int allow_half_close;       /* keep the connection writable after the peer's FIN */
  int nodelay;                /* TCP_NODELAY */
  uint32_t close_deadline_ms; /* deadline used when the library closes by itself (peer
                                FIN) or lw_close(c, 0) is called; default 30000 */

  /* ---- Liveness: telling a dead peer from a quiet one (all 0 = off, the OS default:
   * Linux finds a vanished peer after 2 h 11 min when idle -- keepalive 7200 s + 9 x 75 s
   * -- and, with data in flight, after ~15 min of retransmissions (tcp_retries2)). ----
   *
   * dead_after_ms = T: "the peer is dead if it has not answered for T ms", whether the
   * connection is idle or busy sending. It sets, on every connection (accepted ones
   * inherit it from the listener; on Linux it also bounds a connect):
   *   SO_KEEPALIVE, and in whole seconds (the kernel's unit, at least 1 s each):
   *     TCP_KEEPIDLE  = idle  = max(1, floor(T / 2000))          first probe after idle
   *     TCP_KEEPINTVL = intvl = max(1, ceil(rest / 9)), where rest = max(1, floor(T / 1000) -
   * idle) TCP_KEEPCNT   = cnt   = max(1, rest / intvl)             probes before giving up
   *   TCP_USER_TIMEOUT = T ms  (= idle + intvl x cnt, rounded to seconds)
   * so the two mechanisms agree instead of fighting. On Linux, with TCP_USER_TIMEOUT set:
   *   - idle connection: probes go out at idle, idle + intvl, ...; the connection is
   *     declared dead at the first probe sent once T ms have passed since the peer last
   *     sent anything, i.e. within [T, T + intvl] (3000 -> idle 1, intvl 1, cnt 2: ~3.0 s);
   *   - data in flight: dead once sent data has stayed unacknowledged for T ms (the
   *     retransmission timer is clamped to the user timeout), typically T + one RTO
   *     probe: 3000 -> ~3.4 s measured;
   *   - a peer that keeps its receive window closed for T ms is ended the same way
   *     (Linux >= 5.11 zero-window probes honour the user timeout): keep
   *     stall_timeout_ms below T if such peers must be reported as "stalled".
   * Either way on_close gets reason LW_REASON_DEAD_PEER, os_error LW_ETIMEDOUT, and
   * peer_silent_ms. Detection works whether or not the application is reading: the
   * connection stays registered for socket errors while it wants neither read nor write.
   * T below 2000 cannot be honoured exactly by keepalive (1 s granularity) in the idle
   * case: detection then comes at the first probe after T (at 2 s at the earliest).
   *
   * Expert knobs, each overriding its derived value when non-zero (they also work
   * without dead_after_ms; keepalive is switched on when any keepalive knob is set):
   *   keepalive_idle_ms / keepalive_intvl_ms (rounded up to whole seconds),
   *   keepalive_cnt, user_timeout_ms. */
  uint32_t dead_after_ms;
  uint32_t keepalive_idle_ms;
  uint32_t keepalive_intvl_ms;
  uint32_t keepalive_cnt;
  uint32_t user_timeout_ms;

  /* idle_timeout_ms = N: no byte read from or written into the socket for N ms (the
   * application's view: data moving in neither direction) ends the connection with
   * reason LW_REASON_IDLE_TIMEOUT. By default GRACEFULLY, as lw_close(c, 0) would (flush,
   * FIN, linger up to close_deadline_ms; a peer that does not finish in time is then
   * reset with reason DEADLINE); with idle_timeout_abort = 1, by lw_abort (RST at once).
   * A late loop (a long callback) does not make a talking peer idle: before the
   * verdict, Linux's TCP_INFO (tcpi_last_data_recv / _sent) says whether data moved
   * while the loop was away. Starts when the connection is established; stops once a
   * close has begun. One timer per connection, re-armed lazily (a read or write only
   * stores a timestamp), so 100k idle connections cost 100k heap entries and no work
   * per byte. */
  uint32_t idle_timeout_ms;
  int idle_timeout_abort;

  /* stall_timeout_ms = N: bytes are waiting to be delivered (in our queue or the
   * kernel's) but the peer has acknowledged none of them for N ms -- a peer that is
   * alive (its kernel answers) but stopped reading: zero window, slowloris reader.
   * The connection is aborted (RST) with reason LW_REASON_STALLED, within
   * [N, 1.25 N] of the last acknowledged byte (checked every N/4 while output is
   * pending: one SIOCOUTQ ioctl per check, and on Linux one TCP_INFO, whose
   * tcpi_bytes_acked is the acknowledged count -- the kernel's, so a loop that was late
   * dispatching completions cannot mistake a reading peer for a stalled one; SIOCOUTQ 0
   * with our own queue non-empty is never a stall). Applies in every state until the fd
   * is closed, including a lingering lw_close (whichever of it and the close deadline
   * comes first). */
  uint32_t stall_timeout_ms;

  /* ---- Bounds: what a peer that misbehaves can cost (hostile or broken peers). ----
   *
   * write_queue_max: the most bytes the user-space write queue may hold (beyond the
   * high-water mark, which only signals). Default (0): 64 MiB, or 16 x write_high_water
   * if that is larger; SIZE_MAX: no bound. A write that would take the queue past it
   * queues nothing (its callback is not called), returns LW_EQUEUEFULL, and the
   * connection is reset at once with reason LW_REASON_QUEUE_FULL (on_close follows,
   * deferred as always). Closing rather than only refusing is deliberate: refusing one
   * write and accepting the next would leave a hole in the byte stream, and a peer that
   * has left that much unread is not coming back for it in time. A single write larger
   * than the bound is refused the same way: chunk it, or raise the bound. */
  size_t write_queue_max;

  /* ---- The lingering close and the peer's input (lw_close, the library's own close
   * after the peer's FIN, a graceful idle timeout). THE RULE: a lingering close never
   * resets the connection because of input the peer is sending while any byte we
   * wrote is still unacknowledged. An RST then would throw away our response (the
   * kernel drops its send queue), and the peer that is still sending is usually the
   * one that has not read it yet: the upload answered early (HTTP 413), whose client
   * reads the answer only after it has sent the whole body. Input is discarded, not
   * feared: it costs no copy (Linux: recv(MSG_TRUNC)), and the time it takes is bounded
   * as nginx bounds lingering_close:
   *
   * linger_timeout_ms (nginx lingering_timeout): once every byte we wrote is
   *   acknowledged, a peer that sends nothing for this long -- and has not sent its FIN
   *   -- is closed: plain close(), no RST (nothing is left unread), reason
   *   LW_REASON_LINGER_TIMEOUT, rst 0. The silence is counted from the last input or
   *   from the moment everything was seen acknowledged, whichever is later.
   *   Default (0): 5000.
   * linger_time_ms (nginx lingering_time): once every byte we wrote is acknowledged, a
   *   peer still sending (input since then) this long after the close began is reset:
   *   reason LW_REASON_LINGER_TIMEOUT, rst 1; a silent one is closed plainly then (rst
   *   0), as linger_timeout_ms would. Default (0): 30000.
   * The close deadline (close_deadline_ms / lw_close's deadline_ms) bounds the whole
   * close in every case, acknowledged or not (reason DEADLINE, RST), and
   * stall_timeout_ms a peer that stops acknowledging: so a peer that floods without
   * ever reading our answer is ended by those two, not by its input.
   *
   * linger_discard_max: an optional byte bound on the input discarded AFTER every byte
   *   we wrote was seen acknowledged (checked with the linger timers, a few times per
   *   RTT at most); past it: RST, reason LW_REASON_DISCARD_LIMIT. Default (0): no
   *   bound (SIZE_MAX). Why acknowledged bytes are still at risk, and so why the
   *   default is time and not bytes: "acknowledged" means in the peer's kernel, not
   *   read by its application. Linux keeps those bytes readable after an RST (a recv
   *   returns them before it reports ECONNRESET), but a Windows peer discards its
   *   unread receive buffer when the RST arrives (A6: its recv fails with
   *   WSAECONNRESET instead of returning them), and a client that
   *   is still sending (curl) sees its send() fail with EPIPE and reports the failure
   *   before it reads the answer. Set it only where the peer's input costs more than
   *   that risk. All discarded input counts in lw_close_info.unread_discarded. */
  size_t linger_discard_max;
  uint32_t linger_timeout_ms;
  uint32_t linger_time_ms;

  /* first_byte_timeout_ms = N (accepted connections only): a peer that has sent nothing
   * at all -- no byte, no FIN -- N ms after the accept is reset (RST), reason
   * LW_REASON_FIRST_BYTE_TIMEOUT. Bytes the server writes first (a banner) do not count;
   * bytes the peer sent that the application has not read yet (reading stopped) do,
   * and so does its FIN. A peer that reset the connection in that time ends it as
   * LW_REASON_PEER_RESET when the timeout comes, even with reading stopped and nothing
   * else to hear of it (under Wine, where the error is not kept, os_error is then 0).
   * Default 0: off, because protocols where only the server talks (a push stream) are
   * legitimate; servers whose clients speak first should set it (e.g. 10000). It does
   * not bound a peer that sends slowly (one byte per second): idle_timeout_ms does not
   * either; that needs an application-level request deadline. */
  uint32_t first_byte_timeout_ms;
} lw_conn_options;

/* ----------------------------------------------------------------------------------
 * Listener
 * ---------------------------------------------------------------------------------- */
/* host (here and in lw_conn_connect), exactly one of:
 *   - an IPv4 dotted quad of four decimal parts ("127.0.0.1", "0.0.0.0");
 *   - an IPv6 address without brackets or zone ("::1", "::", "fe80::1");
 *   - "localhost" in any case, optionally with a trailing dot ("LOCALHOST", "localhost.")
 *     = 127.0.0.1 (IPv4 only).
 * No name resolution (no blocking DNS on the loop): any other name is LW_ENOENT
 * (resolve it yourself, pass the address). Something numeric that is not a valid
 * address is LW_EINVAL -- including inet_aton's shorthand "127.1" and
 * leading zeros ("010.0.0.1"), which inet_pton refuses because they read differently
 * in different parsers; an empty or NULL host or a port outside 0..65535 too.
 * port 0 picks a free port (see lw_listener_port). SO_REUSEADDR is set.
 * EMFILE/ENFILE on accept: the library closes the pending connection using a reserved
 * descriptor (so the kernel's queue empties and the loop does not spin), reports
 * LW_EMFILE/LW_ENFILE to accept_cb, and keeps serving existing connections. */
int lw_listener_new(lw_loop *loop, const char *host, int port, int backlog,
                    const lw_conn_options *opts, lw_accept_cb cb, lw_listener **out);
/* Adopts a socket that is already bound and listening (systemd socket activation's
 * LISTEN_FDS, a socket inherited from a previous process for a restart that drops
 * nothing). The listener owns fd from then on; LW_EINVAL if fd is not a listening
 * TCP socket. Windows: also LW_EINVAL for a socket another loop serves, or a duplicate
 * of one (WSADuplicateSocket): a socket belongs to one I/O completion port for life,
 * so one listening socket cannot be shared by several loops there. */
int lw_listener_adopt(lw_loop *loop, int fd, const lw_conn_options *opts, lw_accept_cb cb,
                      lw_listener **out);
int lw_listener_port(const lw_listener *l);
/* Stops accepting and frees the listener (deferred to the end of the loop iteration).
 * It closes this process's descriptor only: where the socket is shared (inherited by a
 * successor, or held by systemd for socket activation) the kernel's accept queue stays
 * with the other holder. Where this was the last descriptor, the connections still in
 * the queue are reset by the kernel: lw_listener_queued() beforehand tells how many.
 * io_uring / IOCP accept ahead of the application: a connection the backend already
 * accepted but has not yet delivered (see lw_listener_pause) is closed with the
 * listener -- an RST. To hand a socket over without loss, close it once its pause has
 * settled: a drain's done_cb is such a point (lw_loop_drain, step 4). */
void lw_listener_close(lw_listener *l);
/* Pause and resume accepting, without closing the listener. While paused the library
 * makes no accept: connections that complete their handshake wait in the kernel's
 * accept queue (up to the backlog; past it Linux drops the client's final ACK and the
 * client retransmits), to be accepted on resume -- or by another process that holds
 * the same socket (a successor after a hand-off; a separate SO_REUSEPORT socket has its
 * own queue, and closing it resets what is in it).
 *   epoll: the fd leaves the interest set.
 *   io_uring: the armed multishot accept is cancelled by its user_data
 *     (IORING_OP_ASYNC_CANCEL, submitted before the call returns, so the kernel has
 *     issued it by then). A connection the kernel accepted before that -- its CQE
 *     already posted, not yet reaped -- is still delivered to accept_cb: it is
 *     accepted already, and refusing it would lose it.
 *   IOCP: the posted AcceptEx operations are cancelled (CancelIoEx) and not posted
 *     again until resume. Windows completes a queued connection INTO a posted AcceptEx
 *     by itself, so one that completed before the cancel is delivered likewise; while
 *     paused, the backlog is the listen socket's own queue, as on Linux.
 * So accept_cb may run after lw_listener_pause only for such already-accepted
 * connections, within the next loop iteration. Both calls are idempotent and may be
 * made from any callback; LW_EINVAL on a listener being closed. */
int lw_listener_pause(lw_listener *l);
int lw_listener_resume(lw_listener *l);
int lw_listener_paused(const lw_listener *l);
/* The listening socket (int fd; a SOCKET on Windows). Do not close it. */
int lw_listener_fd(const lw_listener *l);
/* Connections waiting in the kernel's accept queue, not yet accepted (Linux: TCP_INFO
 * on a listening socket reports its accept-queue length in tcpi_unacked); LW_ENOSYS
 * where the OS cannot tell (Windows). */
int lw_listener_queued(const lw_listener *l);

/* ----------------------------------------------------------------------------------
 * Drain: ending a whole server (a deploy, a restart, a scale-down) with the same care
 * as one connection, and one report.
 *
 * lw_loop_drain(loop, opts) starts it and returns at once:
 *   1. Every listener of the loop is paused (lw_listener_pause: the kernel's accept
 *      queue keeps what arrives, for a successor sharing the socket or a resume); the
 *      listeners are not closed -- that is the application's call, see
 *      lw_listener_close and lw_listeners_handoff.
 *   2. Every connection of the loop not yet reported to on_close (accepted or
 *      connected; and one accepted later, io_uring/IOCP's already-accepted ones, as it
 *      comes) is marked draining, and then, from the loop (never inside lw_loop_drain):
 *      - with opts->conn_cb: conn_cb(c, arg) runs once for it. The application ends it
 *        at its own safe point -- after the response in progress, or with
 *        `Connection: close` on the next one -- by lw_close/lw_shutdown; or returns
 *        LW_DRAIN_WHEN_IDLE to have the library's policy below applied to it;
 *      - without conn_cb: the library's policy: the connection is closed gracefully
 *        (lw_close) once it is IDLE: nothing queued to write, no input waiting
 *        unread (the kernel's queue or the backend's), open in both directions, and no
 *        byte read or written for at least idle_min_ms.
 *   3. At deadline_ms after the start, every connection left is reset (RST).
 *   4. When the last of them has been reported to on_close, and no connection already
 *      accepted by the backend can still be delivered (io_uring: the paused multishot
 *      accept's last CQE; IOCP: the last cancelled AcceptEx; epoll: at once), done_cb
 *      gets the report (once, from the loop), and the drain is over:
 *      lw_loop_draining() says 0 again. done_cb may then close the listeners.
 * A connection the drain ends -- the policy's graceful close, the deadline's reset, and
 * any lw_close() of a draining connection -- reports reason LW_REASON_DRAIN (rst 1 for
 * the reset); one the peer or an error ended keeps its own reason (PEER_CLOSED_FIRST,
 * PEER_RESET, ...). Liveness options and lw_close deadlines keep working meanwhile;
 * the drain deadline bounds them all.
 *
 * THE RACE, and how it is bounded: closing an idle keep-alive connection races with a
 * request the client may be sending at that moment (RFC 9112 section 9.6: a client
 * must be ready to retry; nginx 1.27 keepalive_min_timeout, Node and Go lost requests
 * here). Three things bound it: (a) a connection that moved a byte in the last
 * idle_min_ms is never closed by the policy -- a client that answers a response with
 * its next request does so within it, and that request is served; (b) our close is
 * the lingering lw_close: a request that crosses our FIN is read and discarded, never
 * answered with an RST, so the client sees a clean FIN before any response and may
 * retry (an idempotent request at least); (c) with conn_cb, a protocol that can say
 * so (HTTP's `Connection: close` on the next response) needs no idle close at all:
 * only a client silent for idle_min_ms is closed, i.e. the race needs a client that
 * waited idle_min_ms and then sent within one RTT of our FIN.
 * ---------------------------------------------------------------------------------- */
#define LW_DRAIN_WHEN_IDLE 1
typedef int (*lw_drain_conn_cb)(lw_conn *c, void *arg);
typedef struct lw_drain_report {
  uint64_t conns;                       /* connections the drain covered */
  uint64_t by_reason[LW_REASON__COUNT]; /* how each ended (index: lw_close_reason) */
  uint64_t reset;                       /* of them, ended with an RST (sent or received) */
  uint64_t reset_at_deadline;           /* reset by the drain deadline */
  uint64_t bytes_acked;                 /* sums of their lw_close_info fields */
  uint64_t unsent_discarded, unread_discarded;
  uint64_t elapsed_ms;    /* from lw_loop_drain to the last on_close */
  uint64_t accept_queued; /* connections waiting in the paused listeners' accept queues
                             at the end (lw_listener_queued): served by whoever holds the
                             socket next, reset if nobody does */
} lw_drain_report;
typedef void (*lw_drain_done_cb)(lw_loop *loop, const lw_drain_report *r, void *arg);
typedef struct lw_drain_options {
  uint32_t deadline_ms;     /* default (0): 10000 */
  uint32_t idle_min_ms;     /* default (0): 1000; the policy's minimum idle window */
  lw_drain_conn_cb conn_cb; /* NULL: the library's policy for every connection */
  lw_drain_done_cb done_cb; /* may be NULL */
  void *arg;
} lw_drain_options;
/* 0, LW_EALREADY if a drain is already running on this loop, LW_EINVAL, LW_ENOMEM.
 * opts may be NULL (the defaults). The report is also the last word of a drain that
 * covered no connection. The loop stays alive (a timer) until done_cb has run. */
int lw_loop_drain(lw_loop *loop, const lw_drain_options *opts);
/* 1 while a drain runs on the loop (from lw_loop_drain until done_cb returned). */
int lw_loop_draining(const lw_loop *loop);
/* 1 if c is covered by a running drain (e.g. a server adds `Connection: close`). */
int lw_conn_draining(const lw_conn *c);

/* ----------------------------------------------------------------------------------
 * Sockets passed from one process to the next: systemd socket activation, and a
 * restart that drops nothing (a successor takes the listening sockets over).
 * Unix only (LW_ENOSYS on Windows).
 * ---------------------------------------------------------------------------------- */
/* The listening sockets this process was started with, by either protocol:
 *   - systemd's (sd_listen_fds(3)): when LISTEN_PID is this process's pid, LISTEN_FDS
 *     = n sockets at descriptors 3 .. 3+n-1, LISTEN_FDNAMES = their names, colon-
 *     separated (FileDescriptorName=);
 *   - a predecessor's hand-off (lw_listeners_handoff): LW_LISTEN_FDS = the descriptor
 *     numbers, comma-separated.
 * As sd_listen_fds(1): the variables are removed from the environment (so children do
 * not take the sockets for theirs), and FD_CLOEXEC is set on each descriptor. Stores up
 * to max descriptors in fds and, if names is not NULL, their names (systemd's, else "";
 * static storage, valid until the next call). Returns how many were passed (0: none;
 * more than max: the rest are left open and unnamed), or LW_EINVAL if the variables
 * are malformed (nothing unset then). The descriptors are the caller's: adopt each with
 * lw_listener_adopt (which checks it is a listening TCP socket) or close it. */
int lw_listen_fds(int *fds, const char **names, int max);
/* Hands the listening sockets of ls[0..n-1] to a successor that this process is about
 * to start (fork + exec, posix_spawn): clears FD_CLOEXEC on them, names them in
 * LW_LISTEN_FDS, and makes a pipe whose write end the successor inherits (LW_READY_FD);
 * *ready_fd gets the read end (non-blocking, close-on-exec): it becomes readable with a
 * byte when the successor calls lw_handoff_ready(), or with EOF when the successor
 * exits without calling it. Call lw_listeners_handoff_end() right after starting the
 * successor: it restores FD_CLOEXEC, closes this side's write end and removes the
 * variables, so later children inherit nothing. Not thread-safe (it changes the
 * environment; a fork by another thread in between inherits the sockets too).
 * THE PROTOCOL that drops nothing: the socket is then shared, one accept queue served
 * by whichever process accepts. The predecessor keeps accepting until ready_fd says
 * the successor accepts too (both serve meanwhile), then drains (lw_loop_drain: its
 * listeners pause) and closes its listeners from done_cb, once the pause has settled
 * (lw_listener_close: on io_uring/IOCP an earlier close resets what the backend had
 * accepted ahead). The close closes its descriptors only, and the queue stays with the
 * successor's -- no connection in it is lost. If the successor died instead (EOF on
 * ready_fd), the predecessor goes on serving (it never stopped) and
 * lw_listener_queued() still counts what waits. */
int lw_listeners_handoff(lw_listener *const *ls, int n, int *ready_fd);
void lw_listeners_handoff_end(lw_listener *const *ls, int n);
/* In the successor, once its adopted listeners are accepting (after lw_listener_adopt:
 * the accept is armed by then): tells the predecessor (LW_READY_FD), then closes and
 * unsets it. 0 if there was nothing to tell, 1 if told, or an LW_E code. On Windows,
 * where no predecessor can hand sockets over, always 0 (not LW_ENOSYS: a program may
 * call it unconditionally). */
int lw_handoff_ready(void);
void lw_listener_set_data(lw_listener *l, void *data);
void *lw_listener_get_data(const lw_listener *l);

/* ----------------------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------------------- */
int lw_conn_connect(lw_loop *loop, const char *host, int port, const lw_conn_options *opts,
                    lw_connect_cb cb, lw_conn **out);
void lw_conn_set_data(lw_conn *c, void *data);
void *lw_conn_get_data(const lw_conn *c);
lw_loop *lw_conn_loop(const lw_conn *c);
void lw_conn_on_close(lw_conn *c, lw_close_cb cb);
void lw_conn_on_drain(lw_conn *c, lw_drain_cb cb);
/* Starts delivering input to cb. LW_ECLOSING once a close has begun. */
int lw_conn_read_start(lw_conn *c, lw_read_cb cb);
int lw_conn_read_stop(lw_conn *c);
/* Maximum bytes per read callback from now on (1 .. 1 MiB). A server that must leave
 * everything after a request line unread reads with size 1 until the newline. Unread
 * means in the kernel, or held by the library: a completion backend's receive may
 * complete after lw_conn_read_stop (IOCP, io_uring), and io_uring receives a whole
 * buffer whatever the size. Every close counts held bytes as the kernel's queue -- a
 * naive close resets, a graceful one discards them -- and lw_close_info says so. */
int lw_conn_set_read_size(lw_conn *c, size_t size);

/* Queues len bytes WITHOUT copying: buf must stay valid until cb fires (cb may be NULL
 * for static data). Returns 0 when queued below the high-water mark,
 * LW_ABOVE_HIGH_WATER (1) when queued with the queue at or above it (drain_cb will fire
 * when it falls to low water), or
 * LW_ESHUTDOWN / LW_ECLOSING / LW_EINVAL (nothing queued, cb not called).
 * The bytes leave once the calling callback returns (before the loop waits again), so
 * writes queued together go out in one send, and a close right after them puts our FIN
 * on their last segment. */
int lw_conn_write(lw_conn *c, const void *buf, size_t len, lw_write_cb cb, void *arg);
/* Same, copying the bytes first (buf may be reused as soon as it returns). The bytes
 * leave exactly as lw_conn_write's do: once the calling callback returns, so that
 * write_copy + lw_close puts the FIN on the last segment and ends the same way every
 * time. */
int lw_conn_write_copy(lw_conn *c, const void *buf, size_t len);
/* Bytes queued in user space and not yet written into the kernel. */
size_t lw_conn_write_queue_size(const lw_conn *c);
/* The OS descriptor, for getsockopt and the like. -1 once closed. Do not close it. */
int lw_conn_fd(const lw_conn *c);
/* Addresses, numeric: host as text (IPv6 without brackets, an IPv4 peer of a
 * dual-stack IPv6 socket as "::ffff:a.b.c.d"), port in host order; either output may
 * be NULL. 0, or LW_ENOTCONN before the connect has completed and once the socket is
 * closed (detached: from on_close on, and after lw_abort/lw_close_naive), LW_ENOSPC
 * if hostlen is too small (46 bytes always suffice: INET6_ADDRSTRLEN), LW_EINVAL. */
int lw_conn_peer_addr(const lw_conn *c, char *host, size_t hostlen, int *port);
int lw_conn_local_addr(const lw_conn *c, char *host, size_t hostlen, int *port);

int lw_shutdown(lw_conn *c);
int lw_close(lw_conn *c, uint32_t deadline_ms);
int lw_abort(lw_conn *c);
/* The OS default, kept for comparison (respond --close naive, the lab): close(fd) now,
 * with no shutdown, no drain and no wait. Queued bytes not yet in the kernel are
 * cancelled. Linux then sends FIN if every input byte was read, but RST if input is
 * left unread (B13) -- and an RST throws away what the kernel had not yet delivered.
 * on_close reports reason LW_REASON_NAIVE, rst=1 when unread input made it an RST. */
int lw_close_naive(lw_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* LASTWORD_H */
