/* wtest.h - the little the Windows tests share: CHECK, a watchdog, raw Winsock clients. */
#ifndef LW_WTEST_H
#define LW_WTEST_H
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

#include "lastword.h"

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                          \
      fflush(stderr);                                                                          \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)
#define CHECK_EQ(a, b)                                                                         \
  do {                                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                                        \
    if (a_ != b_) {                                                                            \
      fprintf(stderr, "FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, a_, \
              b_);                                                                             \
      fflush(stderr);                                                                          \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

void wt_init(void);
/* Each test defines it: 1 when the scenario is over (wt_run stops). */
int wt_done(void);
/* Runs the loop until it has nothing left, failing the test after limit_ms. */
void wt_run(lw_loop *loop, unsigned limit_ms);
/* Blocking client socket connected to 127.0.0.1:port (fails the test otherwise). */
SOCKET wt_connect(int port);
int wt_send_all(SOCKET s, const char *buf, int len);
/* Reads until EOF or error; *err = 0 for a clean EOF, else the WSA error. */
long long wt_read_all(SOCKET s, int *err);
HANDLE wt_thread(DWORD(WINAPI *fn)(void *), void *arg);
void wt_join(HANDLE h, DWORD limit_ms);
const char *wt_reason(const lw_close_info *in);
/* 1 under Wine (ntdll exports wine_get_version). */
int wt_is_wine(void);
#endif
