/* The close state machine, every state x every event: next state, result, key actions. */
#include "helper.h"
#include "close_sm.h"

enum {
  O = LW__CS_OPEN,
  SP = LW__CS_SHUT_PENDING,
  HL = LW__CS_HALF_LOCAL,
  HP = LW__CS_HALF_PEER,
  FL = LW__CS_FLUSHING,
  LI = LW__CS_LINGER,
  AW = LW__CS_ACK_WAIT,
  CG = LW__CS_CLOSING,
  CD = LW__CS_CLOSED
};

/* How to reach each state from a fresh machine (terminated by -1). */
static const int path[LW__CS__COUNT][4] = {
    [O] = {-1},
    [SP] = {LW__CE_QUEUE_BUSY, LW__CE_SHUTDOWN, -1},
    [HL] = {LW__CE_SHUTDOWN, -1},
    [HP] = {LW__CE_PEER_FIN, -1},
    [FL] = {LW__CE_QUEUE_BUSY, LW__CE_CLOSE, -1},
    [LI] = {LW__CE_CLOSE, -1},
    [AW] = {LW__CE_CLOSE, LW__CE_PEER_FIN, -1},
    [CG] = {LW__CE_ABORT, -1},
    [CD] = {LW__CE_ABORT, LW__CE_OPS_DONE, -1},
};

/* expected[state][event] = next state. Event order is lw__cs_event's. */
static const int expected[LW__CS__COUNT][LW__CE__COUNT] = {
    /*        SHUT CLOSE ABRT NAIV QE  QB  PFIN PRST ERR ACK DEAD TMO OPS EOFD LEND */
    [O] = {HL, LI, CG, CG, O, O, HP, CG, CG, O, O, CG, O, O, O},
    [SP] = {SP, FL, CG, CG, HL, SP, FL, CG, CG, SP, SP, CG, SP, SP, SP},
    [HL] = {HL, LI, CG, CG, HL, HL, AW, CG, CG, HL, HL, CG, HL, HL, HL},
    [HP] = {AW, AW, CG, CG, HP, HP, HP, CG, CG, HP, HP, CG, HP, AW, HP},
    [FL] = {FL, FL, CG, CG, LI, FL, FL, CG, CG, FL, CG, CG, FL, FL, FL},
    [LI] = {LI, LI, CG, CG, LI, LI, AW, CG, CG, LI, CG, CG, LI, LI, CG},
    [AW] = {AW, AW, CG, CG, AW, AW, AW, CG, CG, CG, CG, CG, AW, AW, AW},
    [CG] = {CG, CG, CG, CG, CG, CG, CG, CG, CG, CG, CG, CG, CD, CG, CG},
    [CD] = {CD, CD, CD, CD, CD, CD, CD, CD, CD, CD, CD, CD, CD, CD, CD},
};

static void reach(lw__cs *m, int s) {
  lw__cs_init(m, 0);
  for (int i = 0; path[s][i] >= 0; i++)
    lw__cs_step(m, (lw__cs_event)path[s][i], 0, NULL);
  assert_int_equal(m->state, s);
}

static int arg_for(int ev) {
  if (ev == LW__CE_PEER_RST)
    return LW_ECONNRESET;
  if (ev == LW__CE_ERROR)
    return LW_ETIMEDOUT;
  if (ev == LW__CE_TIMEOUT)
    return LW_REASON_IDLE_TIMEOUT;
  return 0;
}

static void test_every_pair(void **state) {
  (void)state;
  int pairs = 0;
  for (int s = 0; s < LW__CS__COUNT; s++) {
    for (int e = 0; e < LW__CE__COUNT; e++) {
      lw__cs m;
      reach(&m, s);
      int result = 12345;
      unsigned a = lw__cs_step(&m, (lw__cs_event)e, arg_for(e), &result);
      if ((int)m.state != expected[s][e])
        fail_msg("%s + %s -> %s, expected %s", lw__cs_state_name((lw__cs_state)s),
                 lw__cs_event_name((lw__cs_event)e), lw__cs_state_name(m.state),
                 lw__cs_state_name((lw__cs_state)expected[s][e]));
      int app = e == LW__CE_SHUTDOWN || e == LW__CE_CLOSE || e == LW__CE_ABORT ||
                e == LW__CE_CLOSE_NAIVE;
      /* Application calls on a connection already closing say so; others succeed. */
      int closing = s == FL || s == LI || s == AW || s == CG || s == CD;
      if (app && (s == CG || s == CD))
        assert_int_equal(result, LW_EALREADY);
      else if ((e == LW__CE_SHUTDOWN || e == LW__CE_CLOSE) && closing)
        assert_int_equal(result, LW_EALREADY);
      else if (e == LW__CE_SHUTDOWN && (s == SP || s == HL))
        assert_int_equal(result, LW_EALREADY);
      else
        assert_int_equal(result, 0);
      /* Whatever enters CLOSING closes the fd exactly then, and cancels. */
      if (s != CG && s != CD && m.state == LW__CS_CLOSING) {
        assert_true(a & LW__CA_CANCEL);
        assert_true((a & LW__CA_CLOSE_FD) || (a & LW__CA_RESET_FD));
        assert_int_not_equal(m.reason, LW_REASON_NONE);
      } else {
        assert_false(a & (LW__CA_CLOSE_FD | LW__CA_RESET_FD));
      }
      assert_int_equal(!!(a & LW__CA_EMIT_CLOSE), s == CG && e == LW__CE_OPS_DONE);
      if (s == CD)
        assert_int_equal(a, 0);
      pairs++;
    }
  }
  assert_int_equal(pairs, LW__CS__COUNT * LW__CE__COUNT);
}

static void test_reasons_and_actions(void **state) {
  (void)state;
  lw__cs m;
  unsigned a;
  /* lw_close with an empty queue: FIN now, discard input, arm the deadline. */
  lw__cs_init(&m, 0);
  a = lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  assert_int_equal(a, LW__CA_SHUT_WR | LW__CA_DISCARD | LW__CA_ARM_DEADLINE);
  a = lw__cs_step(&m, LW__CE_PEER_FIN, 0, NULL);
  assert_int_equal(a, LW__CA_POLL_ACK);
  a = lw__cs_step(&m, LW__CE_ACKED, 0, NULL);
  assert_int_equal(a, LW__CA_CANCEL | LW__CA_CLOSE_FD);
  assert_int_equal(m.reason, LW_REASON_GRACEFUL);
  assert_int_equal(m.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(m.rst, 0);

  /* Peer FIN first, application writes from the EOF callback, library closes. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_PEER_FIN, 0, NULL);
  assert_int_equal(lw__cs_write_status(&m), 0); /* still writable inside the callback */
  lw__cs_step(&m, LW__CE_QUEUE_BUSY, 0, NULL);
  a = lw__cs_step(&m, LW__CE_EOF_DELIVERED, 0, NULL);
  assert_int_equal(m.state, LW__CS_FLUSHING);
  assert_false(a & LW__CA_SHUT_WR); /* FIN waits for the queued response */
  a = lw__cs_step(&m, LW__CE_QUEUE_EMPTY, 0, NULL);
  assert_int_equal(a, LW__CA_SHUT_WR | LW__CA_POLL_ACK);
  assert_int_equal(m.reason, LW_REASON_PEER_CLOSED_FIRST);
  assert_int_equal(m.initiator, LW_INITIATOR_PEER);

  /* allow_half_close: the EOF does not close; the application does, later. */
  lw__cs_init(&m, 1);
  lw__cs_step(&m, LW__CE_PEER_FIN, 0, NULL);
  assert_int_equal(lw__cs_step(&m, LW__CE_EOF_DELIVERED, 0, NULL), 0);
  assert_int_equal(m.state, LW__CS_HALF_PEER);

  /* Close started locally, but the peer's FIN arrives before ours left. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_QUEUE_BUSY, 0, NULL);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  lw__cs_step(&m, LW__CE_PEER_FIN, 0, NULL);
  assert_int_equal(m.reason, LW_REASON_PEER_CLOSED_FIRST);

  /* Deadline escalates to RST. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  a = lw__cs_step(&m, LW__CE_DEADLINE, 0, NULL);
  assert_true(a & LW__CA_RESET_FD);
  assert_int_equal(m.reason, LW_REASON_DEADLINE);
  assert_int_equal(m.rst, 1);

  /* Errors: ETIMEDOUT is a dead peer, others are errors; RST is the peer's doing. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_ERROR, LW_ETIMEDOUT, NULL);
  assert_int_equal(m.reason, LW_REASON_DEAD_PEER);
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_ERROR, LW_EHOSTUNREACH, NULL);
  assert_int_equal(m.reason, LW_REASON_ERROR);
  assert_int_equal(m.err, LW_EHOSTUNREACH);
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_PEER_RST, LW_ECONNRESET, NULL);
  assert_int_equal(m.reason, LW_REASON_PEER_RESET);
  assert_int_equal(m.initiator, LW_INITIATOR_PEER);

  /* Abort during a lingering close is the abort's reason, with RST. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  a = lw__cs_step(&m, LW__CE_ABORT, 0, NULL);
  assert_true(a & LW__CA_RESET_FD);
  assert_int_equal(m.reason, LW_REASON_ABORT);

  /* The initiator is who SENT first (close_sm.h). Our FIN, then the peer's RST: ours. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  lw__cs_step(&m, LW__CE_PEER_RST, LW_ECONNRESET, NULL);
  assert_int_equal(m.reason, LW_REASON_PEER_RESET);
  assert_int_equal(m.initiator, LW_INITIATOR_LOCAL);
  /* lw_shutdown (FIN out), then the peer resets: ours too. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_SHUTDOWN, 0, NULL);
  lw__cs_step(&m, LW__CE_PEER_RST, LW_ECONNRESET, NULL);
  assert_int_equal(m.initiator, LW_INITIATOR_LOCAL);
  /* lw_close with bytes queued sends no FIN: the peer's RST meanwhile is first. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_QUEUE_BUSY, 0, NULL);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  assert_int_equal(m.initiator, LW_INITIATOR_NONE);
  lw__cs_step(&m, LW__CE_PEER_RST, LW_ECONNRESET, NULL);
  assert_int_equal(m.initiator, LW_INITIATOR_PEER);
  /* ... and the peer's FIN meanwhile too, and stays first after ours leaves. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_QUEUE_BUSY, 0, NULL);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  lw__cs_step(&m, LW__CE_PEER_FIN, 0, NULL);
  lw__cs_step(&m, LW__CE_QUEUE_EMPTY, 0, NULL);
  assert_int_equal(m.initiator, LW_INITIATOR_PEER);
  assert_int_equal(m.reason, LW_REASON_PEER_CLOSED_FIRST);
  /* A refused connect is the peer's RST; a timed-out one this side giving up. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_ERROR, LW_ECONNREFUSED, NULL);
  assert_int_equal(m.initiator, LW_INITIATOR_PEER);
  assert_int_equal(m.reason, LW_REASON_ERROR);
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_ERROR, LW_ETIMEDOUT, NULL);
  assert_int_equal(m.initiator, LW_INITIATOR_LOCAL);
  assert_int_equal(m.reason, LW_REASON_DEAD_PEER);

  /* LINGER ends on its time bounds: silence closes (no RST), time while sending resets;
   * other states ignore the event. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  a = lw__cs_step(&m, LW__CE_LINGER_END, 0, NULL);
  assert_int_equal(a, LW__CA_CANCEL | LW__CA_CLOSE_FD);
  assert_int_equal(m.reason, LW_REASON_LINGER_TIMEOUT);
  assert_int_equal(m.rst, 0);
  assert_int_equal(m.initiator, LW_INITIATOR_LOCAL);
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  a = lw__cs_step(&m, LW__CE_LINGER_END, 1, NULL);
  assert_int_equal(a, LW__CA_CANCEL | LW__CA_RESET_FD);
  assert_int_equal(m.reason, LW_REASON_LINGER_TIMEOUT);
  assert_int_equal(m.rst, 1);
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_QUEUE_BUSY, 0, NULL);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  assert_int_equal(lw__cs_step(&m, LW__CE_LINGER_END, 1, NULL), 0);
  assert_int_equal(m.state, LW__CS_FLUSHING);

  /* Write status per state. */
  lw__cs_init(&m, 0);
  lw__cs_step(&m, LW__CE_SHUTDOWN, 0, NULL);
  assert_int_equal(lw__cs_write_status(&m), LW_ESHUTDOWN);
  lw__cs_step(&m, LW__CE_CLOSE, 0, NULL);
  assert_int_equal(lw__cs_write_status(&m), LW_ECLOSING);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_pair),
                                     cmocka_unit_test(test_reasons_and_actions)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
