/* test_win_reuse.c - socket reuse (A15): DisconnectEx(TF_REUSE_SOCKET) into a pool of 8
 * sockets that AcceptEx draws from.
 *
 * Phase 1 (counted everywhere): N sequential connections (argv[1], default 1000) whose
 * traffic is client -> server only. Each client connects, sends "ping <i>\n" and its
 * FIN, and waits for the server's FIN (a clean recv() == 0, no RST); the server checks
 * the line byte for byte, sees the EOF and closes gracefully (lw_close). The client's
 * FIN goes first, so the server's socket has no TIME_WAIT and DisconnectEx recycles it
 * at once. Checks: every request arrived intact on the right connection, every close
 * was peer-closed-first without RST, every client saw a clean EOF, the sockets held for
 * reuse (pool + DisconnectEx in flight + recycled-but-not-freed) never exceeded 8
 * (pool_peak), recycled sockets served the connections (sockets_reused counted: at
 * least N - 16), and at most 8 + 8 sockets were ever created.
 *
 * UNDER WINE this program skips (exit 77, reason printed) unless LW_WIN_REUSE_UNDER_WINE=1:
 * Wine 8 cannot recycle a socket. Its DisconnectEx is shutdown(SD_SEND) only
 * (dlls/ws2_32/socket.c WS2_DisconnectEx: FIXME "Reusing socket not supported yet"), and
 * AcceptEx into the old socket (server/sock.c accept_into_socket) resets the state and
 * events but not wr_shutdown nor hangup (the old peer's FIN). With both flags stale,
 * sock_get_poll_events() returns -1: the wineserver stops polling that socket, so a
 * WSARecv posted before the request arrives never completes (measured: phase 1 hangs on
 * ~1 connection in 60, the client times out waiting for the server's FIN), and a WSASend
 * fails with WSAESHUTDOWN (phase 2). No library-side change can avoid either: our own
 * shutdown(SD_SEND) is not the cause (DisconnectEx sets wr_shutdown itself).
 *
 * Phase 2 (server -> client on recycled sockets, 30 connections): on real Windows every
 * answer must arrive. Under Wine 8 it cannot: Wine's DisconnectEx is only
 * shutdown(SD_SEND) (dlls/ws2_32: "Reusing socket not supported yet") and AcceptEx into
 * that socket (server/sock.c accept_into_socket) does not reset its wr_shutdown flag, so
 * the first WSASend on a recycled socket fails with WSAESHUTDOWN. Under Wine this phase
 * therefore ASSERTS that signature: answers on fresh sockets arrive, every lost answer
 * is a WSAESHUTDOWN (LW_EPIPE) on a recycled socket, and at least one was lost. If
 * Wine fixes its bug, the phase fails and says so (then drop the Wine branch).
 */
#include "wtest.h"
#include "win.h"

#include <string.h>

static int answer;  /* phase 2: the server answers "pong <i>\n" */
static int n_conns; /* connections in the current phase */
static int srv_closes, srv_bad, srv_lines, srv_eofs, srv_shutdown_send, srv_other;
static volatile LONG client_done;
int wt_done(void) { return client_done && srv_closes == n_conns; }

typedef struct sconn {
  char line[64];
  int len;
  int answered;
} sconn;

static void srv_read(lw_conn *c, long n, const char *buf) {
  sconn *s = lw_conn_get_data(c);
  if (n == LW_EOF) {
    srv_eofs++;
    if (!answer) {
      int r = lw_close(c, 5000);
      CHECK(r == 0 || r == LW_EALREADY);
    }
    return;
  }
  for (long i = 0; i < n; i++) {
    if (s->answered || s->len >= (int)sizeof(s->line) - 1) {
      srv_bad++; /* bytes after the line, or a line too long */
      continue;
    }
    s->line[s->len++] = buf[i];
    if (buf[i] != '\n')
      continue;
    s->answered = 1;
    srv_lines++;
    if (strncmp(s->line, "ping ", 5) != 0)
      srv_bad++;
    if (answer) {
      char out[80];
      int k = snprintf(out, sizeof(out), "pong %.*s", s->len - 5, s->line + 5);
      CHECK(lw_conn_write_copy(c, out, (size_t)k) >= 0);
    }
  }
}
static void srv_close(lw_conn *c, const lw_close_info *in) {
  srv_closes++;
  if (in->os_error == LW_EPIPE)
    srv_shutdown_send++; /* WSASend failed WSAESHUTDOWN (Wine, see above) */
  else if (in->rst || in->reason != LW_REASON_PEER_CLOSED_FIRST) {
    srv_other++;
    fprintf(stderr, "server conn %d: %s os_error %s rst=%d received=%llu\n", srv_closes,
            lw_reason_name(in->reason), lw_err_name(in->os_error), in->rst,
            (unsigned long long)in->bytes_received);
  }
  free(lw_conn_get_data(c));
}
static void on_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  sconn *s = calloc(1, sizeof(*s));
  CHECK(s);
  lw_conn_set_data(c, s);
  lw_conn_on_close(c, srv_close);
  CHECK(lw_conn_read_start(c, srv_read) == 0);
}

typedef struct cres {
  int port, ok, eof_clean, early_eof, errors;
} cres;

static DWORD WINAPI client_c2s(void *p) {
  cres *r = p;
  for (int i = 0; i < n_conns; i++) {
    SOCKET s = wt_connect(r->port);
    char req[32];
    int k = snprintf(req, sizeof(req), "ping %d\n", i);
    CHECK(wt_send_all(s, req, k) == 0);
    CHECK(shutdown(s, SD_SEND) == 0); /* our FIN first: no TIME_WAIT on the server */
    int err = 0;
    long long extra = wt_read_all(s, &err); /* the server's FIN: EOF, nothing else */
    if (err == 0 && extra == 0)
      r->eof_clean++;
    else {
      r->errors++;
      fprintf(stderr, "conn %d: %lld bytes, error %d before EOF\n", i, extra, err);
    }
    closesocket(s);
  }
  InterlockedExchange(&client_done, 1);
  return 0;
}

static DWORD WINAPI client_s2c(void *p) {
  cres *r = p;
  for (int i = 0; i < n_conns; i++) {
    SOCKET s = wt_connect(r->port);
    char req[32], want[32], got[64];
    int k = snprintf(req, sizeof(req), "ping %d\n", i);
    snprintf(want, sizeof(want), "pong %d\n", i);
    CHECK(wt_send_all(s, req, k) == 0);
    int len = 0;
    while (len < (int)strlen(want)) {
      int n = recv(s, got + len, (int)sizeof(got) - 1 - len, 0);
      if (n == 0) {
        r->early_eof++;
        break;
      }
      if (n < 0) {
        r->errors++;
        fprintf(stderr, "conn %d: recv error %d\n", i, WSAGetLastError());
        break;
      }
      len += n;
    }
    got[len] = 0;
    if (len == (int)strlen(want) && strcmp(got, want) == 0)
      r->ok++;
    closesocket(s); /* our FIN first: the server's socket gets no TIME_WAIT */
  }
  InterlockedExchange(&client_done, 1);
  return 0;
}

/* wt_done is polled between loop iterations: wake the loop now and then. */
static void tick(lw_timer *t) {}

static void run_phase(int n, int with_answer, cres *r, lw__iocp_stats *st, DWORD *ms) {
  n_conns = n;
  answer = with_answer;
  srv_closes = srv_bad = srv_lines = srv_eofs = srv_shutdown_send = srv_other = 0;
  client_done = 0;
  lw_loop *loop;
  CHECK(lw_loop_new(&loop, NULL) == 0);
  CHECK(lw_loop_set_socket_reuse(loop, 8) == 0); /* the public option */
  lw_listener *l;
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, on_accept, &l) == 0);
  memset(r, 0, sizeof(*r));
  r->port = lw_listener_port(l);
  lw_timer *t;
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_start(t, tick, 20, 20);
  DWORD t0 = GetTickCount();
  HANDLE h = wt_thread(with_answer ? client_s2c : client_c2s, r);
  wt_run(loop, 60000);
  wt_join(h, 30000);
  *ms = GetTickCount() - t0;
  lw_timer_free(t);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
  CHECK(lw__iocp_get_stats(loop, st) == 0);
  printf("sockets: created=%llu reused=%llu disconnects ok=%llu failed=%llu pool=%u "
         "peak held=%u (bound 8)\n",
         (unsigned long long)st->sockets_created, (unsigned long long)st->sockets_reused,
         (unsigned long long)st->disconnects_ok, (unsigned long long)st->disconnects_failed,
         st->pool_size, st->pool_peak);
  CHECK(lw_loop_run(loop, LW_RUN_DEFAULT) == 0);
  CHECK_EQ(lw_loop_close(loop), 0);
}

int main(int argc, char **argv) {
  wt_init();
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  CHECK(n >= 32);
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  int wine = nt && GetProcAddress(nt, "wine_get_version") != NULL;
  if (wine && !getenv("LW_WIN_REUSE_UNDER_WINE")) {
    printf("SKIP test_win_reuse under Wine: Wine 8 cannot recycle a socket (DisconnectEx is "
           "shutdown(SD_SEND) only; AcceptEx keeps the old wr_shutdown and hangup flags, so "
           "a read posted before data arrives never completes and sends fail "
           "WSAESHUTDOWN). Must pass on real Windows; LW_WIN_REUSE_UNDER_WINE=1 runs it.\n");
    return 77;
  }
  if (wine)
    _putenv("LW_WIN_REUSE_FORCE=1"); /* the library refuses reuse under Wine otherwise */
  cres r;
  lw__iocp_stats st;
  DWORD ms;

  /* ---- phase 1: client -> server only, N connections, pool of 8 ---- */
  run_phase(n, 0, &r, &st, &ms);
  printf("phase 1: %d connections in %lu ms, client->server only: lines %d (bad %d), "
         "server EOFs %d closes %d (other %d), clients clean EOF %d errors %d\n",
         n, (unsigned long)ms, srv_lines, srv_bad, srv_eofs, srv_closes, srv_other, r.eof_clean,
         r.errors);
  CHECK_EQ(srv_lines, n);
  CHECK_EQ(srv_bad, 0);
  CHECK_EQ(srv_eofs, n);
  CHECK_EQ(srv_closes, n);
  CHECK_EQ(srv_other, 0); /* every close: peer-closed-first, no RST */
  CHECK_EQ(srv_shutdown_send, 0);
  CHECK_EQ(r.eof_clean, n); /* every client: the server's FIN, clean */
  CHECK_EQ(r.errors, 0);
  CHECK(st.pool_peak <= 8); /* the bound held */
  CHECK(st.pool_peak >= 1);
  CHECK(st.sockets_reused >= (uint64_t)n - 16); /* recycled sockets did the serving */
  CHECK(st.sockets_created <= 16 + st.disconnects_failed);
  CHECK_EQ(st.sockets_created + st.sockets_reused, (uint64_t)n + 8); /* 8 slots left posted */
  printf("PASS phase 1: %d connections served by %llu sockets (%llu accepts on recycled "
         "sockets), pool peak %u <= 8\n",
         n, (unsigned long long)st.sockets_created, (unsigned long long)st.sockets_reused,
         st.pool_peak);

  /* ---- phase 2: the server answers on recycled sockets ---- */
  int n2 = 30;
  run_phase(n2, 1, &r, &st, &ms);
  printf("phase 2: %d connections in %lu ms, server answers: client ok=%d early_eof=%d "
         "errors=%d; server lines=%d, WSASend refused (WSAESHUTDOWN)=%d, other=%d\n",
         n2, (unsigned long)ms, r.ok, r.early_eof, r.errors, srv_lines, srv_shutdown_send,
         srv_other);
  CHECK_EQ(srv_lines, n2); /* every request arrived, recycled socket or not */
  CHECK_EQ(srv_bad, 0);
  CHECK_EQ(r.errors, 0);
  CHECK_EQ(srv_other, 0);
  CHECK(st.pool_peak <= 8);
  CHECK(st.sockets_reused > 0);
  if (wine) {
    if (srv_shutdown_send == 0) {
      fprintf(stderr, "FAIL: no WSAESHUTDOWN on a recycled socket: has Wine fixed "
                      "AcceptEx reuse? Then drop the Wine branch of this test.\n");
      exit(1);
    }
    /* Each lost answer: a WSAESHUTDOWN on a recycled socket, seen by the client as
     * recv() == 0; never more losses than accepts on recycled sockets. */
    CHECK_EQ(r.early_eof, srv_shutdown_send);
    CHECK_EQ(r.ok + r.early_eof, n2);
    CHECK((uint64_t)srv_shutdown_send <= st.sockets_reused);
    printf("KNOWN WINE BUG asserted: %d of %d answers refused with WSAESHUTDOWN on recycled "
           "sockets (%llu accepts on recycled sockets)\n",
           srv_shutdown_send, n2, (unsigned long long)st.sockets_reused);
  } else {
    CHECK_EQ(r.ok, n2);
    CHECK_EQ(srv_shutdown_send, 0);
  }
  printf("PASS test_win_reuse\n");
  return 0;
}
