/* consumer.c - a program built against an installed (or embedded) liblastword by the
 * packaging test (tests/packaging/run.sh): through pkg-config (shared and --static),
 * find_package, add_subdirectory and FetchContent. It checks that the library it runs
 * with is the header's version, then runs one connection on 127.0.0.1: the client
 * writes 5 bytes and lw_close()s; the server reads them, sees the FIN, and the library
 * ends its side. Exit 0 only if both on_close reports say what the contract says. */
#include <lastword.h>

#include <stdio.h>
#include <string.h>

static struct {
  int closed;
  int fail;
  long server_read;
  lw_close_info client, server;
} st;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "consumer: FAILED: %s (line %d)\n", #cond, __LINE__);                    \
      st.fail = 1;                                                                             \
    }                                                                                          \
  } while (0)

static void client_closed(lw_conn *c, const lw_close_info *in) {
  (void)c;
  st.client = *in;
  st.closed++;
}

static void server_closed(lw_conn *c, const lw_close_info *in) {
  (void)c;
  st.server = *in;
  st.closed++;
}

static void server_read(lw_conn *c, long nread, const char *buf) {
  (void)c;
  (void)buf;
  if (nread > 0)
    st.server_read += nread;
}

static void on_accept(lw_listener *l, lw_conn *c, int status) {
  CHECK(status == 0);
  if (status != 0)
    return;
  lw_conn_on_close(c, server_closed);
  lw_conn_read_start(c, server_read);
  lw_listener_close(l); /* one connection is the whole test */
}

static void on_connect(lw_conn *c, int status) {
  CHECK(status == 0);
  if (status != 0)
    return;
  CHECK(lw_conn_write_copy(c, "ping\n", 5) == 0);
  CHECK(lw_close(c, 2000) == 0);
}

int main(void) {
  printf("consumer: lastword %s (0x%06x), header %d.%d.%d\n", lw_version_string(), lw_version(),
         LW_VERSION_MAJOR, LW_VERSION_MINOR, LW_VERSION_PATCH);
  CHECK(lw_version() == (unsigned)LW_VERSION_HEX);
  char want[32];
  snprintf(want, sizeof(want), "%d.%d.%d", LW_VERSION_MAJOR, LW_VERSION_MINOR,
           LW_VERSION_PATCH);
  CHECK(strcmp(lw_version_string(), want) == 0);
  CHECK(strcmp(lw_err_name(LW_ABOVE_HIGH_WATER), "ABOVE_HIGH_WATER") == 0);

  lw_loop *loop;
  lw_listener *l;
  lw_conn *c;
  if (lw_loop_new(&loop, NULL) != 0 ||
      lw_listener_new(loop, "127.0.0.1", 0, 16, NULL, on_accept, &l) != 0 ||
      lw_conn_connect(loop, "127.0.0.1", lw_listener_port(l), NULL, on_connect, &c) != 0) {
    fprintf(stderr, "consumer: FAILED: loop/listener/connect setup\n");
    return 1;
  }
  lw_conn_on_close(c, client_closed);
  uint64_t t0 = lw_loop_now(loop);
  while (st.closed < 2 && lw_loop_now(loop) - t0 < 5000)
    lw_loop_run(loop, LW_RUN_ONCE);
  CHECK(st.closed == 2);
  CHECK(st.client.reason == LW_REASON_GRACEFUL && st.client.rst == 0);
  CHECK(st.client.bytes_acked == 5);
  CHECK(st.server.reason == LW_REASON_PEER_CLOSED_FIRST && st.server.rst == 0);
  CHECK(st.server_read == 5);
  const char *backend = lw_loop_backend(loop);
  printf("consumer: backend %s, client %s acked=%llu, server %s read=%ld: %s\n", backend,
         lw_reason_name(st.client.reason), (unsigned long long)st.client.bytes_acked,
         lw_reason_name(st.server.reason), st.server_read, st.fail ? "FAIL" : "OK");
  lw_loop_run(loop, LW_RUN_NOWAIT);
  CHECK(lw_loop_close(loop) == 0);
  return st.fail;
}
