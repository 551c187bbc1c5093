#include "wtest.h"

#include <string.h>

void wt_init(void) {
  WSADATA wd;
  CHECK(WSAStartup(MAKEWORD(2, 2), &wd) == 0);
  setvbuf(stdout, NULL, _IONBF, 0);
}

static void watchdog_cb(lw_timer *t) {
  fprintf(stderr, "FAIL: the loop did not finish in time\n");
  exit(1);
}

void wt_run(lw_loop *loop, unsigned limit_ms) {
  lw_timer *t;
  CHECK(lw_timer_new(loop, &t) == 0);
  lw_timer_start(t, watchdog_cb, limit_ms, 0);
  /* The watchdog keeps the loop alive: run until only it is left. */
  for (int i = 0; i < 10000000; i++) {
    CHECK(lw_loop_run(loop, LW_RUN_ONCE) == 0);
    if (wt_done())
      break;
  }
  lw_timer_free(t);
  CHECK(lw_loop_run(loop, LW_RUN_NOWAIT) == 0);
}

SOCKET wt_connect(int port) {
  SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  CHECK(s != INVALID_SOCKET);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((u_short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  DWORD tmo = 20000; /* no test blocks forever */
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&tmo, sizeof(tmo));
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&tmo, sizeof(tmo));
  CHECK(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0);
  return s;
}

int wt_send_all(SOCKET s, const char *buf, int len) {
  int off = 0;
  while (off < len) {
    int n = send(s, buf + off, len - off, 0);
    if (n <= 0)
      return WSAGetLastError();
    off += n;
  }
  return 0;
}

long long wt_read_all(SOCKET s, int *err) {
  static char buf[65536];
  long long total = 0;
  *err = 0;
  for (;;) {
    int n = recv(s, buf, sizeof(buf), 0);
    if (n == 0)
      return total;
    if (n < 0) {
      *err = WSAGetLastError();
      return total;
    }
    total += n;
  }
}

HANDLE wt_thread(DWORD(WINAPI *fn)(void *), void *arg) {
  HANDLE h = CreateThread(NULL, 0, fn, arg, 0, NULL);
  CHECK(h != NULL);
  return h;
}

void wt_join(HANDLE h, DWORD limit_ms) {
  CHECK(WaitForSingleObject(h, limit_ms) == WAIT_OBJECT_0);
  CloseHandle(h);
}

const char *wt_reason(const lw_close_info *in) { return lw_reason_name(in->reason); }

int wt_is_wine(void) {
  HMODULE nt = GetModuleHandleA("ntdll.dll");
  return nt && GetProcAddress(nt, "wine_get_version") != NULL;
}
