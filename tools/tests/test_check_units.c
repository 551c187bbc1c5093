/*
 * test_check_units.c - unit tests of `lastword check`'s request escapes
 * (lw_check_unescape) and of the capture's retransmission marker (lw_cap_mark_retrans),
 * including sequence numbers that wrap and several flows interleaved.
 */
#include "capture.h"
#include "check.h"

#include <stdio.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                 \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

static void test_unescape(void) {
  char b[16];
  CHECK(lw_check_unescape("GET\\r\\n", b, sizeof b) == 5 && memcmp(b, "GET\r\n", 5) == 0);
  CHECK(lw_check_unescape("a\\x41\\0\\\\\\t", b, sizeof b) == 5 &&
        memcmp(b, "aA\0\\\t", 5) == 0);
  CHECK(lw_check_unescape("x\\", b, sizeof b) == -1);               /* trailing backslash */
  CHECK(lw_check_unescape("\\q", b, sizeof b) == -1);               /* unknown escape */
  CHECK(lw_check_unescape("\\x4", b, sizeof b) == -1);              /* short hex */
  CHECK(lw_check_unescape("0123456789abcdefX", b, sizeof b) == -1); /* overflow */
  CHECK(lw_check_unescape("", b, sizeof b) == 0);
}

static lw_cap_seg seg(uint16_t sp, uint16_t dp, uint32_t seq, uint32_t len, uint8_t fl) {
  lw_cap_seg g;
  memset(&g, 0, sizeof g);
  g.sport = sp, g.dport = dp, g.seq = seq, g.len = len, g.flags = fl;
  g.retrans = 7; /* stale value: the marker must overwrite it */
  return g;
}

static void test_retrans(void) {
  lw_cap_seg s[] = {
      seg(1, 2, 100, 0, LW_TH_SYN),                /* 0 SYN */
      seg(1, 2, 100, 0, LW_TH_SYN),                /* 1 SYN again: retransmission */
      seg(2, 1, 500, 0, LW_TH_SYN | LW_TH_ACK),    /* 2 the other flow */
      seg(1, 2, 101, 1000, LW_TH_ACK),             /* 3 data */
      seg(2, 1, 501, 0, LW_TH_ACK),                /* 4 bare ACK: never marked */
      seg(1, 2, 101, 1000, LW_TH_ACK | LW_TH_PSH), /* 5 the same data: retransmission */
      seg(1, 2, 601, 500, LW_TH_ACK),              /* 6 inside sent data: retransmission */
      seg(1, 2, 1101, 10, LW_TH_ACK),              /* 7 new */
      seg(1, 2, 1110, 0, LW_TH_ACK),               /* 8 zero-window probe: no space */
      seg(1, 2, 1111, 0, LW_TH_FIN | LW_TH_ACK),   /* 9 FIN */
      seg(1, 2, 1111, 0, LW_TH_FIN | LW_TH_ACK),   /* 10 FIN again */
      seg(2, 1, 501, 0, LW_TH_RST),                /* 11 RST: never marked */
      seg(3, 2, 0xfffffff0u, 0x10, LW_TH_ACK),     /* 12 flow 3, ends at 2^32 */
      seg(3, 2, 0, 100, LW_TH_ACK),                /* 13 after the wrap: new */
      seg(3, 2, 0xfffffff8u, 8, LW_TH_ACK),        /* 14 before the wrap: retransmission */
  };
  size_t n = sizeof s / sizeof s[0];
  lw_cap_mark_retrans(s, n);
  static const uint8_t want[] = {0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1};
  for (size_t i = 0; i < n; i++)
    if (s[i].retrans != want[i]) {
      fprintf(stderr, "segment %zu: retrans %u, want %u\n", i, s[i].retrans, want[i]);
      failures++;
    }
}

int main(void) {
  test_unescape();
  test_retrans();
  if (failures)
    fprintf(stderr, "%d failure(s)\n", failures);
  else
    puts("ok");
  return failures ? 1 : 0;
}
