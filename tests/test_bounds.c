/*
 * The library's bounds (issue 7): what a misbehaving peer can cost.
 *   write_queue_max       a peer that never reads: lw_conn_write past the bound returns
 *                         LW_EQUEUEFULL and the connection is reset (QUEUE_FULL); the
 *                         queue never held more than the bound (explicit and default).
 *   linger_discard_max    a peer that floods during a lingering close, after reading
 *                         our whole answer, is cut off (DISCARD_LIMIT) long before the
 *                         close deadline; by default there is no byte bound and
 *                         linger_time_ms ends it (LINGER_TIMEOUT).
 *   first_byte_timeout_ms an accepted peer that sends nothing is reset
 *                         (FIRST_BYTE_TIMEOUT), a banner written by the server does not
 *                         count, and a peer that speaks before the bound is served.
 */
#include "fault.h"

static int nrec_at_least(void *a) { return ((ft_server *)a)->nrec >= 1; }

typedef struct two {
  ft_server *s;
  int n;
} two;
static int nrec_n(void *a) { return ((two *)a)->s->nrec >= ((two *)a)->n; }

/* One misbehaving peer against a server with opts; returns its record (copied). */
static ft_rec one_peer(ft_server *s, ft_peer *p, int timeout_ms) {
  int fds = lwt_fd_count();
  ft_server_start(s, "127.0.0.1");
  p->port = s->port;
  if (!p->max_ms)
    p->max_ms = timeout_ms;
  ft_peer_start(p);
  assert_true(ft_run_until(s, nrec_at_least, s, timeout_ms));
  ft_peer_join(p);
  const ft_rec *r = ft_find(s, p->lport);
  assert_non_null(r);
  ft_rec out = *r;
  ft_server_stop(s);
  assert_int_equal(lwt_fd_count(), fds);
  return out;
}

static void fill(size_t queue_max, size_t chunk, size_t expect_bound) {
  static ft_server s;
  memset(&s, 0, sizeof(s));
  s.opts.write_queue_max = queue_max;
  ft_peer p = {0};
  p.behaviour = FT_NEVER_READ;
  p.phase = FT_MID_RESPONSE;
  char req[64];
  snprintf(req, sizeof(req), "FILL %zu\n", chunk);
  p.request = req;
  p.rcvbuf = 16384;
  uint64_t t0 = lwt_now_ms();
  ft_rec r = one_peer(&s, &p, 10000);
  printf("write_queue_max %zu, chunk %zu: refused with %s after %zu bytes accepted, "
         "largest queue %zu, reason %s, %llu ms\n",
         queue_max, chunk, lw_err_name(r.fill_result), r.fill_queued, r.fill_max_queue,
         lw_reason_name(r.info.reason), (unsigned long long)(r.t_close - t0));
  assert_int_equal(r.fill_result, LW_EQUEUEFULL);
  assert_int_equal(r.info.reason, LW_REASON_QUEUE_FULL);
  assert_int_equal(r.info.rst, 1);
  assert_true(r.fill_max_queue <= expect_bound);
  if (chunk <= expect_bound)
    assert_true(r.fill_max_queue > expect_bound - chunk); /* it was the bound that hit */
  else
    assert_int_equal(r.fill_queued, 0); /* a single write larger than the bound */
  assert_int_equal(r.info.bytes_queued, r.fill_queued);
}

static void queue_max_explicit(void **st) {
  (void)st;
  fill(1024 * 1024, 65536, 1024 * 1024);
}

static void queue_max_default(void **st) {
  (void)st;
  fill(0, FT_PAYLOAD_MAX, 64u * 1024 * 1024); /* default: 64 MiB (16 x 1 MiB is less) */
}

static void queue_max_single_write(void **st) {
  (void)st;
  fill(100 * 1024, 128 * 1024, 100 * 1024);
}

/* A peer that reads the whole answer, then floods during the linger: everything we
 * wrote is acknowledged, so the linger bounds apply. */
static ft_rec linger_flood(ft_server *s, ft_peer *p) {
  s->opts.close_deadline_ms = 10000; /* the bound must end it, not the deadline */
  p->behaviour = FT_FLOOD;
  p->phase = FT_LINGER;
  p->resp = 65536;
  ft_rec r = one_peer(s, p, 8000);
  long long ms = (long long)r.t_close - (long long)p->t_phase;
  printf("linger_discard_max %zu, linger_time_ms %u: %s (rst %d) after %llu discarded bytes, "
         "%lld ms after the flood began; peer got %zu/%zu bytes\n",
         s->opts.linger_discard_max, (unsigned)s->opts.linger_time_ms,
         lw_reason_name(r.info.reason), r.info.rst, (unsigned long long)r.info.unread_discarded,
         ms, p->received, p->resp);
  assert_int_equal(p->received, p->resp); /* the answer itself was delivered first */
  assert_true(p->pattern_ok);
  return r;
}

static void discard_explicit(void **st) {
  (void)st;
  static ft_server s;
  memset(&s, 0, sizeof(s));
  s.opts.linger_discard_max = 128 * 1024;
  ft_peer p = {0};
  ft_rec r = linger_flood(&s, &p);
  assert_int_equal(r.info.reason, LW_REASON_DISCARD_LIMIT);
  assert_int_equal(r.info.rst, 1);
  assert_true(r.info.unread_discarded > 128 * 1024);
  assert_true((long long)r.t_close - (long long)p.t_phase < 3000);
}

/* No byte bound by default (it was 1 MiB, which reset uploads answered early before
 * their client had read the answer): the flood goes on until linger_time_ms. */
static void discard_default(void **st) {
  (void)st;
  static ft_server s;
  memset(&s, 0, sizeof(s));
  s.opts.linger_time_ms = 1000;
  ft_peer p = {0};
  ft_rec r = linger_flood(&s, &p);
  long long ms = (long long)r.t_close - (long long)p.t_phase;
  assert_int_equal(r.info.reason, LW_REASON_LINGER_TIMEOUT);
  assert_int_equal(r.info.rst, 1);
  assert_true(r.info.unread_discarded > 4u * 1024 * 1024); /* far past the old 1 MiB */
  assert_true(ms >= 700 && ms < 3000);
}

static void first_byte(int banner) {
  int fds = lwt_fd_count();
  static ft_server s;
  memset(&s, 0, sizeof(s));
  s.opts.first_byte_timeout_ms = 300;
  s.banner = banner;
  ft_server_start(&s, "127.0.0.1");
  ft_peer silent = {0}, late = {0};
  silent.behaviour = FT_NEVER_CLOSE; /* reads (the banner), never sends */
  silent.phase = FT_IDLE;
  silent.port = s.port;
  silent.max_ms = 5000;
  late.behaviour = FT_GOOD;
  late.resp = 100000;
  late.request_delay_ms = 150; /* speaks late, but before the bound */
  late.port = s.port;
  late.max_ms = 5000;
  ft_peer_start(&silent);
  ft_peer_start(&late);
  two t = {&s, 2};
  assert_true(ft_run_until(&s, nrec_n, &t, 5000));
  ft_peer_join(&silent);
  ft_peer_join(&late);
  const ft_rec *rs = ft_find(&s, silent.lport), *rl = ft_find(&s, late.lport);
  assert_non_null(rs);
  assert_non_null(rl);
  long long ms = (long long)rs->t_close - (long long)silent.t_phase;
  printf("first_byte_timeout 300 ms%s: silent peer %s after %lld ms (rst %d); "
         "late peer %s, %zu bytes, eof %d\n",
         banner ? " (server speaks first)" : "", lw_reason_name(rs->info.reason), ms,
         rs->info.rst, lw_reason_name(rl->info.reason), late.received, late.eof);
  assert_int_equal(rs->info.reason, LW_REASON_FIRST_BYTE_TIMEOUT);
  assert_int_equal(rs->info.rst, 1);
  assert_true(ms >= 250 && ms < 1500);
  assert_true(rl->info.reason == LW_REASON_GRACEFUL ||
              rl->info.reason == LW_REASON_PEER_CLOSED_FIRST);
  assert_true(late.eof);
  if (!banner) {
    assert_int_equal(late.received, late.resp);
    assert_true(late.pattern_ok);
  }
  ft_server_stop(&s);
  assert_int_equal(lwt_fd_count(), fds);
}

static void first_byte_plain(void **st) {
  (void)st;
  first_byte(0);
}

static void first_byte_banner(void **st) {
  (void)st;
  first_byte(1);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(queue_max_explicit),     cmocka_unit_test(queue_max_default),
      cmocka_unit_test(queue_max_single_write), cmocka_unit_test(discard_explicit),
      cmocka_unit_test(discard_default),        cmocka_unit_test(first_byte_plain),
      cmocka_unit_test(first_byte_banner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
