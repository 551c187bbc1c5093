/* test_win_reuse.c - socket reuse (A15): with the reuse pool on (8 sockets), a server
 * answers N sequential connections; each ends with the client's FIN first, so the
 * server's socket has no TIME_WAIT and DisconnectEx(TF_REUSE_SOCKET) returns it to
 * the pool at once. Checks: every connection got its answer (no premature EOF on a
 * recycled socket: the "~2 in 600 recv returns 0" note of issue 9), the pool served
 * most accepts, no more than pool + accept-slot sockets were ever made.
 * N: argv[1], default 1000. */
#include "wtest.h"
#include "win.h"

#include <string.h>

static int n_conns = 1000;
static int srv_closes, srv_early_eof, srv_answered, client_done, srv_shutdown_send;
static lw_close_info last;
int wt_done(void) { return client_done && srv_closes == n_conns; }

typedef struct sconn {
  char line[64];
  int len;
  int answered;
} sconn;

static void srv_read(lw_conn *c, long n, const char *buf) {
  sconn *s = lw_conn_get_data(c);
  if (n == LW_EOF) {
    if (!s->answered)
      srv_early_eof++;
    return;
  }
  for (long i = 0; i < n && !s->answered; i++) {
    if (s->len < (int)sizeof(s->line) - 1)
      s->line[s->len++] = buf[i];
    if (buf[i] == '\n') {
      s->answered = 1;
      srv_answered++;
      char out[80];
      int k = snprintf(out, sizeof(out), "pong %.*s", s->len - 5, s->line + 5);
      CHECK(lw_conn_write_copy(c, out, (size_t)k) >= 0);
    }
  }
}
static void srv_close(lw_conn *c, const lw_close_info *in) {
  srv_closes++;
  last = *in;
  if (in->os_error == LW_EPIPE)
    srv_shutdown_send++; /* WSASend failed WSAESHUTDOWN (Wine, see below) */
  else if (in->rst || in->reason != LW_REASON_PEER_CLOSED_FIRST)
    fprintf(stderr, "server conn %d: %s os_error %s rst=%d received=%llu\n", srv_closes,
            lw_reason_name(in->reason), lw_err_name(in->os_error), in->rst,
            (unsigned long long)in->bytes_received);
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
  int port, ok, early_eof, bad, errors;
} cres;
static DWORD WINAPI client(void *p) {
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
        fprintf(stderr, "conn %d: recv 0 after %d bytes\n", i, len);
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
    if (len == (int)strlen(want)) {
      if (strcmp(got, want) == 0)
        r->ok++;
      else
        r->bad++;
    }
    closesocket(s); /* our FIN first: the server's socket gets no TIME_WAIT */
  }
  InterlockedExchange((volatile LONG *)&client_done, 1);
  return 0;
}
/* wt_done is polled between loop iterations: wake the loop now and then. */
static void tick(lw_timer *t) {}

int main(int argc, char **argv) {
  wt_init();
  if (argc > 1)
    n_conns = atoi(argv[1]);
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  int wine = nt && GetProcAddress(nt, "wine_get_version") != NULL;
  if (wine)
    _putenv("LW_WIN_REUSE_FORCE=1"); /* the library refuses reuse under Wine otherwise */
  lw_loop *loop;
  CHECK(lw_loop_new(&loop, NULL) == 0);
  CHECK(lw__iocp_set_reuse(loop, 8) == 0);
  lw_listener *l;
  CHECK(lw_listener_new(loop, "127.0.0.1", 0, 64, NULL, on_accept, &l) == 0);
  cres r;
  memset(&r, 0, sizeof(r));
  r.port = lw_listener_port(l);
  lw_timer *t;
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_start(t, tick, 20, 20);
  DWORD t0 = GetTickCount();
  HANDLE h = wt_thread(client, &r);
  wt_run(loop, 15000);
  wt_join(h, 30000);
  lw_timer_free(t);
  lw_listener_close(l);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
  lw__iocp_stats st;
  CHECK(lw__iocp_get_stats(loop, &st) == 0);
  printf("%d connections in %lu ms: client ok=%d early_eof=%d bad=%d errors=%d; server "
         "answered=%d early_eof=%d closes=%d (last: %s)\n",
         n_conns, (unsigned long)(GetTickCount() - t0), r.ok, r.early_eof, r.bad, r.errors,
         srv_answered, srv_early_eof, srv_closes, lw_reason_name(last.reason));
  printf("sockets: created=%llu reused=%llu disconnects ok=%llu failed=%llu pool=%u\n",
         (unsigned long long)st.sockets_created, (unsigned long long)st.sockets_reused,
         (unsigned long long)st.disconnects_ok, (unsigned long long)st.disconnects_failed,
         st.pool_size);
  CHECK_EQ(srv_early_eof, 0);
  CHECK_EQ(srv_answered, n_conns); /* every request arrived, recycled socket or not */
  CHECK_EQ(r.bad + r.errors, 0);
  if (wine && r.ok < n_conns) {
    /* The Wine bug (README.md): each lost answer is a server WSASend refused with
     * WSAESHUTDOWN on a recycled socket, seen by the client as recv() == 0. That is
     * the "recv returns 0 on a DisconnectEx-recycled socket" of issue 9. */
    printf("KNOWN WINE BUG: %d of %d answers refused with WSAESHUTDOWN on recycled "
           "sockets (client saw recv 0: %d)\n",
           srv_shutdown_send, n_conns, r.early_eof);
    CHECK_EQ(r.early_eof, srv_shutdown_send);
    CHECK_EQ(r.ok + r.early_eof, n_conns);
  } else {
    CHECK_EQ(r.ok, n_conns);
  }
  CHECK_EQ(srv_closes, n_conns);
  CHECK(st.sockets_reused > 0);
  /* 8 accept slots + 8 pooled: every other accept socket was a recycled one. */
  /* 8 accept slots + 8 pooled; a socket that ended in error is closed, not pooled. */
  CHECK(st.sockets_created <= 8 + 8 + st.disconnects_failed + (uint64_t)srv_shutdown_send);
  CHECK_EQ(lw_loop_close(loop), 0);
  printf("PASS test_win_reuse\n");
  return 0;
}
