/*
 * discard_cpu - the server CPU a lingering close spends per MiB of input it discards
 * (issue 14: recv(MSG_TRUNC) on epoll discards without copying).
 *
 *   cc -O2 -Iinclude bench/discard_cpu.c build/liblastword.a -luring -lpthread \
 *      -o /tmp/discard_cpu
 *   LW_BACKEND=epoll /tmp/discard_cpu [MiB]        (default 4096)
 *
 * A client thread connects, sends "GET\n", then floods MiB mebibytes and its FIN; the
 * server (the main thread, its own loop) calls lw_close at the request line, so every
 * byte after it is discarded by the lingering close. Printed: the server thread's CPU
 * (getrusage RUSAGE_THREAD, user + system) from the lw_close to on_close, per MiB.
 */
#define _GNU_SOURCE
#include <lastword.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;
static size_t mib = 4096;
static double cpu0, cpu1;
static lw_close_info info;
static int closed;

static double thread_cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void *flood(void *arg) {
  (void)arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
    return NULL;
  send(fd, "GET\n", 4, 0);
  static char junk[1 << 20];
  for (size_t i = 0; i < mib; i++)
    for (size_t off = 0; off < sizeof(junk);) {
      ssize_t w = send(fd, junk + off, sizeof(junk) - off, MSG_NOSIGNAL);
      if (w <= 0)
        goto out;
      off += (size_t)w;
    }
  shutdown(fd, SHUT_WR);
  char b[4096];
  while (recv(fd, b, sizeof(b), 0) > 0) {
  }
out:
  close(fd);
  return NULL;
}

static void on_close(lw_conn *c, const lw_close_info *in) {
  (void)c;
  cpu1 = thread_cpu_ms();
  info = *in;
  closed = 1;
}

static void on_read(lw_conn *c, long n, const char *buf) {
  if (n > 0 && memchr(buf, '\n', (size_t)n)) {
    cpu0 = thread_cpu_ms();
    lw_close(c, 600000);
  }
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  (void)l;
  if (status)
    return;
  lw_conn_on_close(c, on_close);
  lw_conn_set_read_size(c, 1);
  lw_conn_read_start(c, on_read);
}

int main(int argc, char **argv) {
  if (argc > 1)
    mib = strtoul(argv[1], NULL, 10);
  lw_loop *loop;
  lw_listener *l;
  lw_conn_options o = {0};
  o.linger_time_ms = 600000;
  o.close_deadline_ms = 600000;
  if (lw_loop_new(&loop, NULL) || lw_listener_new(loop, "127.0.0.1", 0, 4, &o, on_accept, &l))
    return 1;
  port = lw_listener_port(l);
  const char *backend = lw_loop_backend(loop); /* a static string */
  pthread_t t;
  pthread_create(&t, NULL, flood, NULL);
  while (!closed)
    lw_loop_run(loop, LW_RUN_ONCE);
  pthread_join(t, NULL);
  lw_listener_close(l);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  lw_loop_close(loop);
  double mb = (double)info.unread_discarded / (1024.0 * 1024.0);
  printf("%s: %s, %.0f MiB discarded, server CPU %.1f ms = %.3f ms/MiB\n", backend,
         lw_reason_name(info.reason), mb, cpu1 - cpu0, (cpu1 - cpu0) / mb);
  return 0;
}
