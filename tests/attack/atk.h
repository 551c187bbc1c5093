/* atk.h - tiny kit for the hostile programs in tests/attack (public API only). */
#ifndef ATK_H
#define ATK_H
#include <lastword.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int atk_fails;
#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      atk_fails++;                                                                             \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                     \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fprintf(stderr, "\n");                                                                   \
    }                                                                                          \
  } while (0)

static inline uint64_t atk_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int atk_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    perror("connect");
    exit(2);
  }
  return fd;
}

static inline int atk_listen(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  bind(fd, (struct sockaddr *)&a, sizeof(a));
  listen(fd, 128);
  socklen_t len = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}

static inline void atk_flag(lw_timer *t) { *(int *)lw_timer_get_data(t) = 1; }
static inline void atk_run_for(lw_loop *loop, int ms) {
  lw_timer *t;
  int done = 0;
  lw_timer_new(loop, &t);
  lw_timer_set_data(t, &done);
  lw_timer_start(t, atk_flag, (uint64_t)ms, 0);
  while (!done)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(t);
}

/* Runs the loop until *flag or ms pass. */
static inline void atk_run_until(lw_loop *loop, int *flag, int ms) {
  uint64_t end = atk_now() + (uint64_t)ms;
  lw_timer *t;
  int done = 0;
  lw_timer_new(loop, &t);
  lw_timer_set_data(t, &done);
  lw_timer_start(t, atk_flag, (uint64_t)ms, 0);
  while (!*flag && !done && atk_now() < end)
    lw_loop_run(loop, LW_RUN_ONCE);
  lw_timer_free(t);
}

static inline int atk_nfds(void) {
  int n = 0;
  char path[64];
  for (int i = 0; i < 65536; i++) {
    snprintf(path, sizeof(path), "/proc/self/fd/%d", i);
    if (access(path, F_OK) == 0)
      n++;
  }
  return n;
}

static inline int atk_end(const char *name, lw_loop *loop) {
  printf("%s [%s]: %s (%d failure%s)\n", name, loop ? lw_loop_backend(loop) : "?",
         atk_fails ? "FAIL" : "ok", atk_fails, atk_fails == 1 ? "" : "s");
  return atk_fails ? 1 : 0;
}
#endif
