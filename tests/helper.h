/*
 * helper.h - what the integration tests share: a test server that speaks the respond
 * protocol on a real loop, and a raw-socket peer in a thread that can read, stop
 * reading, half-close, reset or vanish on command. Assertions are cmocka's.
 */
#ifndef LW_TEST_HELPER_H
#define LW_TEST_HELPER_H

#include <lastword.h>

#include <setjmp.h> /* cmocka needs these before it */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

/* Whether this OS tells, in every TCP state, how many bytes the peer acknowledged:
 * Linux yes (SIOCOUTQ, TCP_INFO); Windows with SIO_TCP_INFO; Wine 8 no, only once a
 * connection is finished (src/win/README.md). Assertions on bytes_acked / acked_known
 * in states before that are made only where it can (tests/win/posix sets it). */
#define LWT_MIN(a, b) ((a) < (b) ? (a) : (b))

/* Whether a raw peer's blocking recv() always reports a reset as ECONNRESET: Wine now
 * and then returns 0 instead (src/win/README.md); there an RST may read as EOF. */
#ifndef LWT_RST_RELIABLE
#define LWT_RST_RELIABLE 1
#endif

#ifndef LWT_ACKS_KNOWN
#define LWT_ACKS_KNOWN 1
#endif

/* ---- the raw peer (a client on blocking sockets, in its own thread) ---- */
typedef struct lwt_peer {
  /* what to do */
  const char *host; /* default "127.0.0.1" */
  int port;
  size_t extra;           /* bytes sent after "GET\n", never read by the server */
  int shut_wr_after_send; /* half-close right after the request */
  int delay_ms;           /* sleep between sending and reading */
  size_t read_limit;      /* stop reading after this many bytes (0: read to the end) */
  int hold_ms;            /* after read_limit: keep the socket open this long */
  int rst_after;          /* 1: after read_limit, close with SO_LINGER{1,0} (RST) */
  int rcvbuf;             /* SO_RCVBUF before connect (0: the kernel's autotuning) */
  int read_pause_us;      /* pause after each read: a client slower than the server */
  /* what happened */
  size_t received;
  int pattern_ok;
  int end_err; /* 0: clean EOF; else errno (ECONNRESET...) */
  int connect_err;
  atomic_int done;
  pthread_t thread;
} lwt_peer;

void lwt_peer_start(lwt_peer *p);
void lwt_peer_join(lwt_peer *p);

/* ---- the in-process server ---- */
enum { LWT_CLOSE_GRACEFUL, LWT_CLOSE_NAIVE, LWT_CLOSE_ABORT, LWT_CLOSE_NONE };
typedef struct lwt_server {
  lw_loop *loop;
  lw_listener *listener;
  int port;
  size_t bytes;
  char *payload;
  size_t write_chunk; /* 0: the response in one lw_conn_write; else in writes of this size */
  int close_mode;
  uint32_t deadline_ms;
  lw_conn_options opts;
  /* counts */
  int accepts;
  int write_ok, write_cancelled;
  int closes;
  lw_close_info last;
  lw_conn *conn; /* the last accepted, while open */
} lwt_server;

void lwt_server_start(lwt_server *s, const char *host);
void lwt_server_stop(
    lwt_server *s); /* closes the listener, runs the loop dry, asserts no leak */

/* Runs the loop until *flag (or the peer) says done, failing after timeout_ms. */
void lwt_run_until(lw_loop *loop, atomic_int *flag, int *count, int want, int timeout_ms);

uint64_t lwt_now_ms(void);
/* The backend the suite runs on (LW_BACKEND, default "epoll"); a loop that got another
 * one (io_uring refused by this kernel) makes the test skip with exit code 77. */
const char *lwt_backend(void);
void lwt_check_backend(lw_loop *loop);
int lwt_fd_count(void);
int lwt_highest_fd(void);

#endif
