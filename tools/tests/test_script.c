/*
 * test_script.c - unit test of the lab's scenario parser (lab/script.c).
 * Valid input parses to the expected steps; every kind of bad input is rejected with
 * the right line number and leaves the list unchanged; arbitrary bytes never crash it
 * (a bounded, deterministic mutation loop; run it under ASan/valgrind for teeth).
 */
#include "lab/lab.h"
#include "sockdiag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                 \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

static int parse(const char *s, size_t len, lw_lab_scenario_list *l, char *err) {
  return lw_lab_script_parse(s, len, l, err, 256);
}

static void test_valid(void) {
  const char *s = "# comment\n"
                  "scenario one claim X1 ipv6\r\n"
                  "  title   hello # not a comment\n"
                  "client connect\n"
                  "server accept\n"
                  "server shutdown rdwr\n"
                  "client recv 100 200  # trailing comment\n"
                  "wait 30\n"
                  "diag\n"
                  "expect call client recv#2 errno == ECONNRESET\n"
                  "expect seg any RST\n"
                  "expect noseg server FIN\n"
                  "expect state server#2 TIME_WAIT\n"
                  "expect call client recv_all bytes < peer_sent\n"
                  "end\n"
                  "scenario two netns\nend";
  lw_lab_scenario_list l = {0};
  char err[256] = "";
  CHECK(parse(s, strlen(s), &l, err) == 0);
  if (l.n != 2) {
    fprintf(stderr, "parse: %s (n=%d)\n", err, l.n);
    failures++;
    lw_lab_scenario_list_free(&l);
    return;
  }
  const lw_lab_scenario *a = &l.v[0];
  CHECK(strcmp(a->name, "one") == 0 && strcmp(a->claim, "X1") == 0 && a->ipv6 && !a->netns);
  CHECK(strcmp(a->title, "hello # not a comment") == 0);
  CHECK(a->nsteps == 6);
  CHECK(a->steps[0].side == LW_SIDE_CLIENT && a->steps[0].op == LW_OP_CONNECT);
  CHECK(a->steps[2].op == LW_OP_SHUTDOWN && a->steps[2].a[0] == 2);
  CHECK(a->steps[3].op == LW_OP_RECV && a->steps[3].a[0] == 100 && a->steps[3].a[1] == 200 &&
        a->steps[3].nargs == 2);
  CHECK(a->steps[4].op == LW_OP_WAIT && a->steps[4].side == LW_SIDE_NONE);
  CHECK(a->nexpects == 5);
  CHECK(a->expects[0].kind == LW_EXP_CALL && a->expects[0].nth == 2 &&
        a->expects[0].field == LW_F_ERRNO && a->expects[0].op == LW_OP_RECV);
  CHECK(a->expects[1].kind == LW_EXP_SEG && a->expects[1].side == LW_SIDE_NONE);
  CHECK(a->expects[2].kind == LW_EXP_NOSEG && a->expects[2].side == LW_SIDE_SERVER);
  CHECK(a->expects[3].kind == LW_EXP_STATE && a->expects[3].nth == 2 &&
        a->expects[3].state == lw_diag_state_parse("TIME_WAIT"));
  CHECK(a->expects[4].val_peer_sent && a->expects[4].cmp == LW_CMP_LT);
  CHECK(strstr(a->expects[0].text, "recv#2") != NULL);
  CHECK(l.v[1].netns && l.v[1].nsteps == 0);
  lw_lab_scenario_list_free(&l);
}

static void test_errors(void) {
  static const struct {
    const char *text;
    int line;
  } bad[] = {
      {"client connect\n", 1},
      {"scenario a\nclient fly\nend\n", 2},
      {"scenario a\nclient connect 5\nend\n", 2},
      {"scenario a\nwait\nend\n", 2},
      {"scenario a\nwait 999999999\nend\n", 2},
      {"scenario a\nclient send -1\nend\n", 2},
      {"scenario a\nclient send 12abc\nend\n", 2},
      {"scenario a\nclient wait 5\nend\n", 2},
      {"scenario a\nconnect\nend\n", 2},
      {"scenario a\nclient shutdown sideways\nend\n", 2},
      {"scenario a\nscenario b\nend\n", 2},
      {"scenario a\nclient connect\n", 3},
      {"scenario\nend\n", 1},
      {"scenario a/b\nend\n", 1},
      {"scenario aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nend\n", 1},
      {"scenario a bogus\nend\n", 1},
      {"scenario a\nexpect\nend\n", 2},
      {"scenario a\nexpect call client recv ret ~ 0\nend\n", 2},
      {"scenario a\nexpect call client recv#0 ret == 0\nend\n", 2},
      {"scenario a\nexpect call client recv errno == ENOPE\nend\n", 2},
      {"scenario a\nexpect call client recv ms == peer_sent\nend\n", 2},
      {"scenario a\nexpect seg client BOGUS\nend\n", 2},
      {"scenario a\nexpect state client FLYING\nend\n", 2},
      {"scenario a\nexpect call client wait ret == 0\nend\n", 2},
      {"title x\n", 1},
      {"end\n", 1},
      {"scenario a\nend extra\n", 2},
      {"scenario a\nclient a b c d e f g h i j k l m n\nend\n", 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lw_lab_scenario_list l = {0};
    char err[256] = "", want[32];
    int r = parse(bad[i].text, strlen(bad[i].text), &l, err);
    snprintf(want, sizeof want, "line %d:", bad[i].line);
    if (r != -1 || strncmp(err, want, strlen(want)) != 0 || l.n != 0) {
      fprintf(stderr, "bad script %zu: r=%d err='%s' want '%s' n=%d\n", i, r, err, want, l.n);
      failures++;
    }
    lw_lab_scenario_list_free(&l);
  }
  /* A NUL byte inside the buffer is an error, not an end of input. */
  const char nul[] = "scenario a\nclient con\0nect\nend\n";
  lw_lab_scenario_list l = {0};
  char err[256];
  CHECK(parse(nul, sizeof nul - 1, &l, err) == -1 && strstr(err, "line 2") != NULL);
  /* A line longer than the limit. */
  char *longl = malloc(2000);
  memset(longl, 'x', 1999);
  longl[1999] = 0;
  CHECK(parse(longl, 1999, &l, err) == -1 && strstr(err, "too long") != NULL);
  free(longl);
  /* A failed parse leaves what an earlier parse appended. */
  const char *good = "scenario g\nend\n";
  CHECK(parse(good, strlen(good), &l, err) == 0 && l.n == 1);
  CHECK(parse("scenario h\n", 11, &l, err) == -1 && l.n == 1);
  /* Length is honoured: the text after len is not read. */
  CHECK(parse("scenario z\nend\ngarbage", 15, &l, err) == 0 && l.n == 2);
  lw_lab_scenario_list_free(&l);
}

static void test_builtin(void) {
  lw_lab_scenario_list l = {0};
  char err[256] = "";
  CHECK(parse(lw_lab_builtin_script, strlen(lw_lab_builtin_script), &l, err) == 0);
  CHECK(l.n >= 32);
  /* Every built-in scenario belongs to a known claim. */
  for (int i = 0; i < l.n; i++) {
    int found = 0;
    for (size_t k = 0; k < lw_lab_nclaims; k++)
      found |= strcmp(l.v[i].claim, lw_lab_claims[k].id) == 0;
    if (!found) {
      fprintf(stderr, "scenario %s: unknown claim '%s'\n", l.v[i].name, l.v[i].claim);
      failures++;
    }
  }
  lw_lab_scenario_list_free(&l);
}

/* Deterministic mutations of the built-in script: must never crash or hang. */
static void test_mutations(void) {
  size_t n = strlen(lw_lab_builtin_script);
  char *buf = malloc(n);
  unsigned long long x = 88172645463325252ull;
  int ok = 0, bad = 0;
  for (int iter = 0; iter < 3000; iter++) {
    memcpy(buf, lw_lab_builtin_script, n);
    for (int m = 0; m < 1 + iter % 8; m++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      buf[x % n] = (char)(x >> 32);
    }
    size_t len = iter % 5 == 0 ? (size_t)(x % n) : n;
    lw_lab_scenario_list l = {0};
    char err[256];
    if (parse(buf, len, &l, err) == 0)
      ok++;
    else
      bad++;
    lw_lab_scenario_list_free(&l);
  }
  CHECK(ok + bad == 3000 && bad > 0);
  free(buf);
}

int main(void) {
  test_valid();
  test_errors();
  test_builtin();
  test_mutations();
  if (failures)
    fprintf(stderr, "%d failure(s)\n", failures);
  else
    printf("script parser: all checks passed\n");
  return failures ? 1 : 0;
}
