/*
 * The fault matrix, column (g): peers that VANISH -- no FIN, no RST, no ACK (nftables
 * drops everything in and out of their namespace) -- at each phase: idle (connected,
 * nothing sent), mid-request, mid-response (2 MiB answer, 64 KiB read), lingering close
 * (whole answer read, server waiting for the FIN). All four at once, beside
 * well-behaved peers in the server's own namespace that must be served in full.
 * dead_after_ms = 2000: each vanished connection ends with DEAD_PEER (ETIMEDOUT) within
 * a bound (the lingering one may instead hit its 6 s close deadline), no fd is left.
 * Two network namespaces (tests/netns.h); skips unless root.
 */
#include "netns.h"
#include "fault.h"

#define NGOOD 8
#define DEAD_MS 2000u

static const ft_phase phases[FT__NPHASE] = {FT_IDLE, FT_MID_REQUEST, FT_MID_RESPONSE,
                                            FT_LINGER};

typedef struct ctx {
  ft_server *s;
  ft_peer *v;
  int want;
} ctx;

static int phases_reached(void *a) {
  ctx *c = a;
  for (int i = 0; i < FT__NPHASE; i++)
    if (!atomic_load(&c->v[i].phase_reached))
      return 0;
  return 1;
}
static int all_closed(void *a) {
  ctx *c = a;
  return c->s->nrec >= c->want;
}

static void vanish_matrix(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  int fds = lwt_fd_count();
  static ft_server s;
  memset(&s, 0, sizeof(s));
  s.opts.dead_after_ms = DEAD_MS;
  s.opts.close_deadline_ms = 6000;
  ft_server_start(&s, "0.0.0.0");
  static ft_peer v[FT__NPHASE], good[NGOOD];
  memset(v, 0, sizeof(v));
  memset(good, 0, sizeof(good));
  for (int i = 0; i < FT__NPHASE; i++) {
    v[i].host = LWN_ADDR_A;
    v[i].port = s.port;
    v[i].nsfd = lwn_fd_b;
    v[i].behaviour = FT_VANISH;
    v[i].phase = phases[i];
    v[i].resp = phases[i] == FT_LINGER ? 65536 : FT_PAYLOAD_MAX;
    v[i].rcvbuf = phases[i] == FT_MID_RESPONSE ? 16384 : 0;
    v[i].max_ms = 15000;
    ft_peer_start(&v[i]);
  }
  ctx c = {&s, v, FT__NPHASE + NGOOD};
  assert_true(ft_run_until(&s, phases_reached, &c, 5000));
  ft_run_until(&s, phases_reached, &c, 50); /* the last ACKs leave */
  uint64_t t_vanish = lwt_now_ms();
  lwn_vanish_nft();
  for (int i = 0; i < NGOOD; i++) {
    good[i].host = LWN_ADDR_A; /* from the server's own namespace: unaffected */
    good[i].port = s.port;
    good[i].behaviour = i % 2 ? FT_GOOD_HALF : FT_GOOD;
    good[i].resp = (size_t)(1024 * 1024 + i * 777);
    good[i].max_ms = 10000;
    ft_peer_start(&good[i]);
  }
  int all = ft_run_until(&s, all_closed, &c, 12000);
  for (int i = 0; i < FT__NPHASE; i++)
    ft_peer_join(&v[i]);
  for (int i = 0; i < NGOOD; i++)
    ft_peer_join(&good[i]);
  int fails = 0;
  for (int i = 0; i < FT__NPHASE; i++) {
    const ft_rec *r = ft_find(&s, v[i].lport);
    long long ms = r ? (long long)r->t_close - (long long)t_vanish : -1;
    lw_close_reason reason = r ? r->info.reason : LW_REASON_NONE;
    int ok = r && ((reason == LW_REASON_DEAD_PEER && r->info.os_error == LW_ETIMEDOUT &&
                    ms <= (long long)DEAD_MS + 2500) ||
                   (phases[i] == FT_LINGER && reason == LW_REASON_DEADLINE && ms <= 7000));
    print_message("vanish %-13s -> %-10s %-10s after %5lld ms (peer silent %llu ms)  %s\n",
                  ft_phase_names[phases[i]], lw_reason_name(reason),
                  r ? lw_err_name(r->info.os_error) : "-", ms,
                  r ? (unsigned long long)r->info.peer_silent_ms : 0ull, ok ? "ok" : "FAIL");
    fails += !ok;
  }
  for (int i = 0; i < NGOOD; i++) {
    const ft_rec *r = ft_find(&s, good[i].lport);
    int ok = r && good[i].received == good[i].resp && good[i].pattern_ok && good[i].eof &&
             !good[i].end_err && !r->info.rst && r->info.bytes_acked == good[i].resp;
    if (!ok)
      print_message("good peer %d: %zu/%zu bytes eof %d err %d  FAIL\n", i, good[i].received,
                    good[i].resp, good[i].eof, good[i].end_err);
    fails += !ok;
  }
  assert_true(all);
  assert_int_equal(fails, 0);
  ft_server_stop(&s);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(vanish_matrix)};
  return lwn_main(tests, sizeof(tests) / sizeof(tests[0]), "test_fault_vanish");
}
