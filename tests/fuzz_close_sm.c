/*
 * Random event orders against the close state machine's invariants.
 * Built two ways: as a libFuzzer target (-DLW_LIBFUZZER, clang -fsanitize=fuzzer; CI
 * runs it for a bounded time with the corpus in tests/corpus/close_sm) and, here, as a
 * plain program that replays the corpus and 200k pseudo-random sequences.
 */
#include "close_sm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);                    \
      abort();                                                                                 \
    }                                                                                          \
  } while (0)

static const int args[] = {0,
                           LW_ECONNRESET,
                           LW_EPIPE,
                           LW_ETIMEDOUT,
                           LW_EHOSTUNREACH,
                           LW_REASON_IDLE_TIMEOUT,
                           LW_REASON_STALLED,
                           LW_REASON_DRAIN};

/* One run: each input byte is an event (low 4 bits) and an argument (high bits). */
static void run(const uint8_t *data, size_t size) {
  if (size == 0)
    return;
  lw__cs m;
  lw__cs_init(&m, data[0] & 1);
  int emitted = 0, fd_closed = 0, fin = 0;
  for (size_t i = 1; i < size; i++) {
    int ev = data[i] % LW__CE__COUNT;
    int arg = args[(data[i] >> 4) % (sizeof(args) / sizeof(args[0]))];
    lw__cs_state before = m.state;
    int result = 0;
    unsigned a = lw__cs_step(&m, (lw__cs_event)ev, arg, &result);
    if (before == LW__CS_CLOSED)
      CHECK(a == 0); /* nothing after on_close */
    if (a & LW__CA_EMIT_CLOSE) {
      CHECK(!emitted);  /* on_close exactly once ... */
      CHECK(fd_closed); /* ... and only after the fd is closed */
      CHECK(m.reason != LW_REASON_NONE);
      emitted = 1;
    }
    if (a & (LW__CA_CLOSE_FD | LW__CA_RESET_FD)) {
      CHECK(!fd_closed); /* the fd is closed once */
      CHECK(!((a & LW__CA_CLOSE_FD) && (a & LW__CA_RESET_FD)));
      CHECK(a & LW__CA_CANCEL); /* pending writes are always cancelled */
      CHECK(m.state == LW__CS_CLOSING);
      fd_closed = 1;
    }
    if (fd_closed && !(a & (LW__CA_CLOSE_FD | LW__CA_RESET_FD)))
      CHECK((a & ~(unsigned)LW__CA_EMIT_CLOSE) == 0); /* no socket action after close */
    if (a & LW__CA_SHUT_WR) {
      CHECK(!fin); /* one FIN */
      fin = 1;
    }
    if (m.state == LW__CS_ACK_WAIT)
      CHECK(m.fin_sent && m.peer_fin);
    if (m.state == LW__CS_LINGER)
      CHECK(m.fin_sent && !m.peer_fin);
    if (m.state == LW__CS_CLOSING || m.state == LW__CS_CLOSED)
      CHECK(fd_closed);
    if (m.rst)
      CHECK(m.state == LW__CS_CLOSING || m.state == LW__CS_CLOSED);
    CHECK(result == 0 || result == LW_EALREADY);
  }
  /* Every connection ends: abort + ops done must always reach exactly one on_close. */
  unsigned a = lw__cs_step(&m, LW__CE_ABORT, 0, NULL);
  if (a & (LW__CA_CLOSE_FD | LW__CA_RESET_FD))
    fd_closed = 1;
  a = lw__cs_step(&m, LW__CE_OPS_DONE, 0, NULL);
  if (a & LW__CA_EMIT_CLOSE) {
    CHECK(!emitted);
    emitted = 1;
  }
  CHECK(emitted && fd_closed && m.state == LW__CS_CLOSED);
}

#ifdef LW_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  run(data, size);
  return 0;
}
#else
int main(int argc, char **argv) {
  /* Replay corpus files given on the command line, then random sequences. */
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (!f)
      continue;
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    run(buf, n);
  }
  uint64_t x = 0x9E3779B97F4A7C15ull;
  uint8_t buf[64];
  long runs = 200000;
  for (long r = 0; r < runs; r++) {
    size_t n = 1 + (size_t)(r % 63);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[i] = (uint8_t)x;
    }
    run(buf, n);
  }
  printf("fuzz_close_sm: %ld random sequences, invariants held\n", runs);
  return 0;
}
#endif
