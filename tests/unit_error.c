/* The error table: every code has a distinct value, a name and a message; the write
 * result LW_ABOVE_HIGH_WATER is named and not reported as an unknown error; lw_version()
 * agrees with the header. */
#include "helper.h"

#include <stdio.h>
#include <string.h>

static void test_table(void **state) {
  (void)state;
  static const int codes[] = {
#define X(name, val, msg) LW_##name,
      LW_ERRNO_MAP(X)
#undef X
  };
  size_t n = sizeof(codes) / sizeof(codes[0]);
  assert_true(n >= 20);
  for (size_t i = 0; i < n; i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(lw_err_name(codes[i]), "EUNKNOWN");
    assert_string_not_equal(lw_strerror(codes[i]), "unknown error");
    for (size_t j = i + 1; j < n; j++)
      assert_int_not_equal(codes[i], codes[j]);
  }
  assert_string_equal(lw_err_name(LW_ECONNRESET), "ECONNRESET");
  assert_string_equal(lw_err_name(0), "OK");
  assert_string_equal(lw_err_name(-9999), "EUNKNOWN");
  assert_string_equal(lw_strerror(12345), "unknown error");
}

static void test_above_high_water(void **state) {
  (void)state;
  assert_int_equal(LW_ABOVE_HIGH_WATER, 1); /* the documented value: r >= 0 is "queued" */
  assert_string_equal(lw_err_name(LW_ABOVE_HIGH_WATER), "ABOVE_HIGH_WATER");
  assert_string_not_equal(lw_strerror(LW_ABOVE_HIGH_WATER), "unknown error");
  assert_non_null(strstr(lw_strerror(LW_ABOVE_HIGH_WATER), "not an error"));
  assert_string_equal(lw_err_name(2), "EUNKNOWN");
}

static void test_version(void **state) {
  (void)state;
  assert_int_equal(lw_version(),
                   (LW_VERSION_MAJOR << 16) | (LW_VERSION_MINOR << 8) | LW_VERSION_PATCH);
  assert_int_equal(lw_version(), LW_VERSION_HEX);
  char want[32];
  snprintf(want, sizeof(want), "%d.%d.%d", LW_VERSION_MAJOR, LW_VERSION_MINOR,
           LW_VERSION_PATCH);
  assert_string_equal(lw_version_string(), want);
}

static void test_reasons(void **state) {
  (void)state;
  assert_string_equal(lw_reason_name(LW_REASON_GRACEFUL), "graceful");
  assert_string_equal(lw_reason_name(LW_REASON_PEER_CLOSED_FIRST), "peer-closed-first");
  assert_string_equal(lw_reason_name(LW_REASON_DEADLINE), "deadline");
  assert_string_equal(lw_reason_name(LW_REASON__COUNT), "unknown");
  for (int r = 0; r < LW_REASON__COUNT; r++)
    for (int q = r + 1; q < LW_REASON__COUNT; q++)
      assert_string_not_equal(lw_reason_name((lw_close_reason)r),
                              lw_reason_name((lw_close_reason)q));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table), cmocka_unit_test(test_reasons),
      cmocka_unit_test(test_above_high_water), cmocka_unit_test(test_version)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
