/*
 * The fault matrix (issue 7): peers that (a) never read, (b) never close, (c) reset
 * mid-exchange, (d) half-close right after the request, (e) read one byte per second,
 * (f) flood input during the linger, (h) are SIGKILLed -- each at four phases: idle
 * (connected, nothing sent), mid-request (a request line without its end), mid-response
 * (part of a 2 MiB answer read), lingering close (the whole answer read, the server
 * waiting for the peer's FIN). (g), peers that vanish, needs network namespaces:
 * tests/test_fault_vanish.c.
 *
 * Every cell runs at the same time on one server loop, together with well-behaved
 * peers (two waves, one of them mid-way through the misbehaviour). Per cell: the
 * server's close reason is the expected one, it came within a bound of the phase, and
 * afterwards no connection, fd or timer is left (lw_loop_close succeeds; the ASan run
 * adds LSan). Every well-behaved peer got all its bytes, in order, then a clean EOF,
 * and the server saw each of them acknowledged.
 *
 * Server bounds: first_byte_timeout 400 ms, idle_timeout 600 ms (abort), stall_timeout
 * 500 ms, close deadline 1000 ms, linger_discard_max 64 KiB.
 */
#include "fault.h"

#define SLACK_MS 1500u
#define M(r) (1u << LW_REASON_##r)

typedef struct cell {
  ft_behaviour b;
  ft_phase ph;
  unsigned expect; /* allowed reasons */
  size_t resp;
  int rcvbuf;
} cell;

static const cell cells[] = {
    /* (a) never reads */
    {FT_NEVER_READ, FT_IDLE, M(FIRST_BYTE_TIMEOUT), 0, 0},
    {FT_NEVER_READ, FT_MID_REQUEST, M(IDLE_TIMEOUT), 0, 0},
    {FT_NEVER_READ, FT_MID_RESPONSE, M(STALLED), FT_PAYLOAD_MAX, 16384},
    {FT_NEVER_READ, FT_LINGER, M(DEADLINE), 65536, 0},
    /* (b) never closes */
    {FT_NEVER_CLOSE, FT_IDLE, M(FIRST_BYTE_TIMEOUT), 0, 0},
    {FT_NEVER_CLOSE, FT_MID_REQUEST, M(IDLE_TIMEOUT), 0, 0},
    {FT_NEVER_CLOSE, FT_MID_RESPONSE, M(DEADLINE), FT_PAYLOAD_MAX, 0},
    {FT_NEVER_CLOSE, FT_LINGER, M(DEADLINE), 65536, 0},
    /* (c) resets */
    {FT_RST, FT_IDLE, M(PEER_RESET), 0, 0},
    {FT_RST, FT_MID_REQUEST, M(PEER_RESET), 0, 0},
    {FT_RST, FT_MID_RESPONSE, M(PEER_RESET), FT_PAYLOAD_MAX, 0},
    {FT_RST, FT_LINGER, M(PEER_RESET), 65536, 0},
    /* (d) half-closes (at mid-response: right after the full request) */
    {FT_HALF_CLOSE, FT_IDLE, M(PEER_CLOSED_FIRST), 0, 0},
    {FT_HALF_CLOSE, FT_MID_REQUEST, M(PEER_CLOSED_FIRST), 0, 0},
    {FT_HALF_CLOSE, FT_MID_RESPONSE, M(GRACEFUL) | M(PEER_CLOSED_FIRST), FT_PAYLOAD_MAX, 0},
    {FT_HALF_CLOSE, FT_LINGER, M(GRACEFUL) | M(PEER_CLOSED_FIRST), 65536, 0},
    /* (e) reads one byte per second */
    {FT_SLOW_READ, FT_IDLE, M(FIRST_BYTE_TIMEOUT), 0, 0},
    {FT_SLOW_READ, FT_MID_REQUEST, M(IDLE_TIMEOUT), 0, 0},
    {FT_SLOW_READ, FT_MID_RESPONSE, M(STALLED), FT_PAYLOAD_MAX, 16384},
    {FT_SLOW_READ, FT_LINGER, M(STALLED), 65536, 4096},
    /* (f) floods */
    {FT_FLOOD, FT_IDLE, M(DISCARD_LIMIT), 0, 0},
    {FT_FLOOD, FT_MID_REQUEST, M(DISCARD_LIMIT), 0, 0},
    /* never reads the answer it floods over: never an RST for its input while our bytes
     * are unacknowledged (lastword.h); the stall clock ends it */
    {FT_FLOOD, FT_MID_RESPONSE, M(STALLED), FT_PAYLOAD_MAX, 16384},
    {FT_FLOOD, FT_LINGER, M(DISCARD_LIMIT), 65536, 0},
    /* (h) SIGKILLed: the kernel closes for it -- FIN, or RST when input is unread */
    {FT_KILL, FT_IDLE, M(PEER_CLOSED_FIRST), 0, 0},
    {FT_KILL, FT_MID_REQUEST, M(PEER_CLOSED_FIRST), 0, 0},
    {FT_KILL, FT_MID_RESPONSE, M(PEER_RESET), FT_PAYLOAD_MAX, 16384},
    {FT_KILL, FT_LINGER, M(GRACEFUL) | M(PEER_CLOSED_FIRST), 65536, 0},
};
#define NCELLS (sizeof(cells) / sizeof(cells[0]))
#define NGOOD 12 /* per wave */

static uint32_t nominal_ms(lw_close_reason r) {
  switch (r) {
  case LW_REASON_FIRST_BYTE_TIMEOUT:
    return 400;
  case LW_REASON_IDLE_TIMEOUT:
    return 600;
  case LW_REASON_STALLED:
    return 625;
  case LW_REASON_DEADLINE:
    return 1000;
  default:
    return 0;
  }
}

typedef struct run {
  ft_server *s;
  int want;
} run;

static int all_closed(void *a) {
  run *r = a;
  return r->s->nrec >= r->want;
}

static int phases_reached(void *a) {
  ft_peer *v = a;
  for (size_t i = 0; i < NCELLS; i++)
    if (!atomic_load(&v[i].phase_reached) && !atomic_load(&v[i].done))
      return 0;
  return 1;
}

static void check_good(const ft_server *s, const ft_peer *p, const char *what) {
  const ft_rec *r = ft_find(s, p->lport);
  int ok =
      p->received == p->resp && p->pattern_ok && p->eof && p->end_err == 0 && r &&
      (r->info.reason == LW_REASON_GRACEFUL || r->info.reason == LW_REASON_PEER_CLOSED_FIRST) &&
      !r->info.rst && r->info.acked_known && r->info.bytes_acked == p->resp;
  if (!ok)
    printf("FAIL %s peer :%u: received %zu/%zu pattern %d eof %d err %d; server %s rst %d "
           "acked %llu\n",
           what, p->lport, p->received, p->resp, p->pattern_ok, p->eof, p->end_err,
           r ? lw_reason_name(r->info.reason) : "(no record)", r ? r->info.rst : -1,
           r ? (unsigned long long)r->info.bytes_acked : 0ull);
  assert_true(ok);
}

static void fault_matrix(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  int fds = lwt_fd_count();
  static ft_server s;
  memset(&s, 0, sizeof(s));
  s.opts.first_byte_timeout_ms = 400;
  s.opts.idle_timeout_ms = 600;
  s.opts.idle_timeout_abort = 1;
  s.opts.stall_timeout_ms = 500;
  s.opts.close_deadline_ms = 1000;
  s.opts.linger_discard_max = 64 * 1024;
  static ft_peer bad[NCELLS], good[2][NGOOD];
  memset(bad, 0, sizeof(bad));
  memset(good, 0, sizeof(good));
  for (size_t i = 0; i < NCELLS; i++) {
    bad[i].behaviour = cells[i].b;
    bad[i].phase = cells[i].ph;
    bad[i].resp = cells[i].resp;
    bad[i].rcvbuf = cells[i].rcvbuf;
    bad[i].max_ms = 8000;
    if (bad[i].behaviour == FT_KILL)
      ft_kill_prefork(&bad[i]); /* before the server has a socket a child could inherit */
  }
  ft_server_start(&s, "127.0.0.1");
  for (size_t i = 0; i < NCELLS; i++) {
    bad[i].port = s.port;
    ft_peer_start(&bad[i]);
  }
  for (int w = 0; w < 2; w++) {
    if (w == 1) /* the second wave while the misbehaviour is under way */
      ft_run_until(&s, phases_reached, bad, 3000);
    for (int i = 0; i < NGOOD; i++) {
      ft_peer *p = &good[w][i];
      p->port = s.port;
      p->behaviour = i % 3 == 2 ? FT_GOOD_HALF : FT_GOOD;
      p->resp = (size_t)(1024 * 1024 + i * 4099);
      p->max_ms = 8000;
      ft_peer_start(p);
    }
  }
  run r = {&s, (int)NCELLS + 2 * NGOOD};
  int all = ft_run_until(&s, all_closed, &r, 10000);
  uint64_t t_end = lwt_now_ms();
  for (size_t i = 0; i < NCELLS; i++)
    ft_peer_join(&bad[i]);
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < NGOOD; i++)
      ft_peer_join(&good[w][i]);
  if (!all)
    printf("only %d of %d connections closed by the server within 10 s\n", s.nrec, r.want);

  int fails = 0;
  printf("%-12s %-13s %-19s %4s %8s %10s %10s\n", "peer", "phase", "server reason", "rst", "ms",
         "sent", "discarded");
  for (size_t i = 0; i < NCELLS; i++) {
    const ft_peer *p = &bad[i];
    const ft_rec *rec = p->lport ? ft_find(&s, p->lport) : NULL;
    if (!rec) {
      printf("%-12s %-13s (no record: peer port %u, err %d)  FAIL\n",
             ft_behaviour_names[p->behaviour], ft_phase_names[p->phase], p->lport, p->end_err);
      fails++;
      continue;
    }
    lw_close_reason reason = rec->info.reason;
    int64_t ms = (int64_t)rec->t_close - (int64_t)p->t_phase;
    int ok = (cells[i].expect & (1u << reason)) != 0 &&
             ms <= (int64_t)(nominal_ms(reason) + SLACK_MS);
    /* (b) and (d) read the whole answer before misbehaving: nothing may be missing */
    if ((p->behaviour == FT_NEVER_CLOSE || p->behaviour == FT_HALF_CLOSE) &&
        p->phase >= FT_MID_RESPONSE)
      ok = ok && p->received == p->resp && p->pattern_ok;
    if (p->behaviour == FT_HALF_CLOSE)
      ok = ok && p->eof && !rec->info.rst;
    printf("%-12s %-13s %-19s %4d %8lld %10llu %10llu  %s\n", ft_behaviour_names[p->behaviour],
           ft_phase_names[p->phase], lw_reason_name(reason), rec->info.rst, (long long)ms,
           (unsigned long long)rec->info.bytes_sent,
           (unsigned long long)rec->info.unread_discarded, ok ? "ok" : "FAIL");
    if (!ok)
      fails++;
  }
  printf("well-behaved: %d peers, 2 waves, all done %lld ms after the first\n", 2 * NGOOD,
         (long long)(t_end - bad[0].t_phase));
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < NGOOD; i++)
      check_good(&s, &good[w][i], w ? "wave-2" : "wave-1");
  assert_int_equal(fails, 0);
  assert_true(all);
  ft_server_stop(&s);
  assert_int_equal(lwt_fd_count(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(fault_matrix)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
