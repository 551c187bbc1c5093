/*
 * close_sm.c - the termination state machine (see close_sm.h for the picture).
 *
 * Naming the initiator: whoever's FIN (or RST) went first -- what was SENT, not what was
 * asked for. lw_close() with bytes still queued sends no FIN yet, so a peer FIN that
 * arrives meanwhile makes the peer the initiator and the reason PEER_CLOSED_FIRST. Once
 * our FIN is out we are the initiator for good, even if the peer then resets. This
 * matches the wire and TIME_WAIT: the first FIN's sender is the side that ends in
 * TIME_WAIT (B2).
 */
#include "close_sm.h"

#include <assert.h>
#include <stddef.h>

void lw__cs_init(lw__cs *m, int allow_half_close) {
  m->state = LW__CS_OPEN;
  m->queue_empty = 1;
  m->fin_sent = 0;
  m->peer_fin = 0;
  m->allow_half_close = allow_half_close ? 1 : 0;
  m->emitted = 0;
  m->reason = LW_REASON_NONE;
  m->initiator = LW_INITIATOR_NONE;
  m->rst = 0;
  m->err = 0;
}

/* The first FIN or RST on the connection, from either side, names the initiator. */
static void first_to_end(lw__cs *m, lw_initiator who) {
  if (m->initiator == LW_INITIATOR_NONE)
    m->initiator = who;
}

/* Every path to CLOSING goes through here: one place decides reason and cancel. */
static unsigned to_closing(lw__cs *m, lw_close_reason reason, lw_initiator who, int rst,
                           int err, unsigned fd_action) {
  m->state = LW__CS_CLOSING;
  m->reason = reason;
  first_to_end(m, who);
  m->rst = rst;
  if (err)
    m->err = err;
  return LW__CA_CANCEL | fd_action;
}

static lw_close_reason reason_for_error(int err) {
  return err == LW_ETIMEDOUT ? LW_REASON_DEAD_PEER : LW_REASON_ERROR;
}

/* Events every live state (OPEN .. ACK_WAIT) treats alike. */
static unsigned common_fatal(lw__cs *m, lw__cs_event ev, int arg, int *handled) {
  *handled = 1;
  switch (ev) {
  case LW__CE_ABORT:
    return to_closing(m, LW_REASON_ABORT, LW_INITIATOR_LOCAL, 1, 0, LW__CA_RESET_FD);
  case LW__CE_CLOSE_NAIVE:
    /* Whether the kernel sends FIN or RST depends on unread input; conn.c measures it
     * (SIOCINQ) just before close() and sets rst. */
    return to_closing(m, LW_REASON_NAIVE, LW_INITIATOR_LOCAL, 0, 0, LW__CA_CLOSE_FD);
  case LW__CE_PEER_RST:
    /* The kernel already tore the connection down; close() sends nothing more. */
    return to_closing(m, LW_REASON_PEER_RESET, LW_INITIATOR_PEER, 1, arg ? arg : LW_ECONNRESET,
                      LW__CA_CLOSE_FD);
  case LW__CE_ERROR:
    /* Our TCP gave up (ETIMEDOUT) or failed: the end is this side's -- except a
     * refused connect, which is the peer's RST, whatever was asked before it: nothing
     * of ours ever left (a FIN lw_shutdown asked for waits for the handshake). */
    if (arg == LW_ECONNREFUSED)
      m->initiator = LW_INITIATOR_PEER;
    return to_closing(m, reason_for_error(arg),
                      arg == LW_ECONNREFUSED ? LW_INITIATOR_PEER : LW_INITIATOR_LOCAL, 0,
                      arg ? arg : LW_EIO, LW__CA_CLOSE_FD);
  case LW__CE_TIMEOUT: {
    lw_close_reason r = (arg > LW_REASON_NONE && arg < LW_REASON__COUNT) ? (lw_close_reason)arg
                                                                         : LW_REASON_ERROR;
    return to_closing(m, r, LW_INITIATOR_LOCAL, 1, 0, LW__CA_RESET_FD);
  }
  case LW__CE_QUEUE_EMPTY:
    m->queue_empty = 1;
    *handled = 0; /* the state may want to act on it too */
    return 0;
  case LW__CE_QUEUE_BUSY:
    m->queue_empty = 0;
    return 0;
  default:
    *handled = 0;
    return 0;
  }
}

/* Our FIN goes now: to LINGER (wait for the peer's) or ACK_WAIT (already have it). */
static unsigned send_fin(lw__cs *m) {
  assert(!m->fin_sent);
  m->fin_sent = 1;
  first_to_end(m, LW_INITIATOR_LOCAL);
  if (m->peer_fin) {
    m->state = LW__CS_ACK_WAIT;
    return LW__CA_SHUT_WR | LW__CA_POLL_ACK;
  }
  m->state = LW__CS_LINGER;
  return LW__CA_SHUT_WR;
}

/* LW__CE_CLOSE's arg: 0 for lw_close(), or the reason of a library-initiated graceful
 * close (LW_REASON_IDLE_TIMEOUT). */
static lw_close_reason close_reason(int arg, lw_close_reason dflt) {
  return arg > LW_REASON_NONE && arg < LW_REASON__COUNT ? (lw_close_reason)arg : dflt;
}

/* Begin a close that flushes, sends FIN, and lingers. The initiator is not decided
 * here but by the first FIN or RST that goes either way (first_to_end). */
static unsigned begin_close(lw__cs *m, lw_close_reason reason) {
  if (m->reason == LW_REASON_NONE)
    m->reason = reason;
  unsigned a = LW__CA_ARM_DEADLINE | LW__CA_DISCARD;
  if (m->fin_sent) {
    m->state = m->peer_fin ? LW__CS_ACK_WAIT : LW__CS_LINGER;
    return a | (m->peer_fin ? LW__CA_POLL_ACK : 0);
  }
  if (m->queue_empty)
    return a | send_fin(m);
  m->state = LW__CS_FLUSHING;
  return a;
}

unsigned lw__cs_step(lw__cs *m, lw__cs_event ev, int arg, int *result) {
  int dummy;
  if (!result)
    result = &dummy;
  *result = 0;
  assert(m->state < LW__CS__COUNT);
  assert(ev < LW__CE__COUNT);

  /* Terminal and near-terminal states first: they refuse everything. */
  if (m->state == LW__CS_CLOSED || m->state == LW__CS_CLOSING) {
    if (ev == LW__CE_SHUTDOWN || ev == LW__CE_CLOSE || ev == LW__CE_ABORT ||
        ev == LW__CE_CLOSE_NAIVE)
      *result = LW_EALREADY;
    if (ev == LW__CE_OPS_DONE && m->state == LW__CS_CLOSING) {
      assert(!m->emitted);
      m->state = LW__CS_CLOSED;
      m->emitted = 1;
      return LW__CA_EMIT_CLOSE;
    }
    return 0;
  }

  if (ev == LW__CE_PEER_FIN)
    first_to_end(m, LW_INITIATOR_PEER);
  int handled;
  unsigned a = common_fatal(m, ev, arg, &handled);
  if (handled)
    return a;

  switch (m->state) {
  case LW__CS_OPEN:
    switch (ev) {
    case LW__CE_SHUTDOWN:
      if (m->queue_empty) {
        m->fin_sent = 1;
        first_to_end(m, LW_INITIATOR_LOCAL);
        m->state = LW__CS_HALF_LOCAL;
        return LW__CA_SHUT_WR;
      }
      m->state = LW__CS_SHUT_PENDING;
      return 0;
    case LW__CE_CLOSE:
      return begin_close(m, close_reason(arg, LW_REASON_GRACEFUL));
    case LW__CE_PEER_FIN:
      /* Writable until the application has seen the EOF: a response written from
       * inside the EOF callback still goes out before our FIN. */
      m->peer_fin = 1;
      m->state = LW__CS_HALF_PEER;
      return 0;
    default:
      return 0;
    }

  case LW__CS_SHUT_PENDING:
    switch (ev) {
    case LW__CE_SHUTDOWN:
      *result = LW_EALREADY;
      return 0;
    case LW__CE_CLOSE:
      return begin_close(m, close_reason(arg, LW_REASON_GRACEFUL));
    case LW__CE_QUEUE_EMPTY:
      m->fin_sent = 1;
      first_to_end(m, LW_INITIATOR_LOCAL);
      m->state = LW__CS_HALF_LOCAL;
      return LW__CA_SHUT_WR;
    case LW__CE_PEER_FIN:
      /* Both directions are finished or finishing: nothing is left for the
       * application, so the library completes the close. */
      m->peer_fin = 1;
      return begin_close(m, LW_REASON_PEER_CLOSED_FIRST);
    default:
      return 0;
    }

  case LW__CS_HALF_LOCAL:
    switch (ev) {
    case LW__CE_SHUTDOWN:
      *result = LW_EALREADY;
      return 0;
    case LW__CE_CLOSE:
      return begin_close(m, close_reason(arg, LW_REASON_GRACEFUL));
    case LW__CE_PEER_FIN:
      m->peer_fin = 1;
      return begin_close(m, LW_REASON_GRACEFUL);
    default:
      return 0;
    }

  case LW__CS_HALF_PEER:
    switch (ev) {
    case LW__CE_SHUTDOWN:
    case LW__CE_CLOSE:
      return begin_close(
          m, close_reason(ev == LW__CE_CLOSE ? arg : 0, LW_REASON_PEER_CLOSED_FIRST));
    case LW__CE_EOF_DELIVERED:
      /* Default: finish by ourselves so nothing sits in CLOSE_WAIT (B5). */
      if (m->allow_half_close)
        return 0;
      return begin_close(m, LW_REASON_PEER_CLOSED_FIRST);
    default:
      return 0;
    }

  case LW__CS_FLUSHING:
    switch (ev) {
    case LW__CE_SHUTDOWN:
    case LW__CE_CLOSE:
      *result = LW_EALREADY;
      return 0;
    case LW__CE_QUEUE_EMPTY:
      return send_fin(m);
    case LW__CE_PEER_FIN:
      m->peer_fin = 1;
      if (!m->fin_sent && m->reason == LW_REASON_GRACEFUL)
        m->reason = LW_REASON_PEER_CLOSED_FIRST;
      return 0;
    case LW__CE_DEADLINE:
      return to_closing(m, LW_REASON_DEADLINE, LW_INITIATOR_LOCAL, 1, 0, LW__CA_RESET_FD);
    default:
      return 0;
    }

  case LW__CS_LINGER:
    switch (ev) {
    case LW__CE_SHUTDOWN:
    case LW__CE_CLOSE:
      *result = LW_EALREADY;
      return 0;
    case LW__CE_PEER_FIN:
      m->peer_fin = 1;
      m->state = LW__CS_ACK_WAIT;
      return LW__CA_POLL_ACK;
    case LW__CE_DEADLINE:
      return to_closing(m, LW_REASON_DEADLINE, LW_INITIATOR_LOCAL, 1, 0, LW__CA_RESET_FD);
    case LW__CE_LINGER_END:
      /* Every byte we wrote is acknowledged: what is left to lose is the peer's input,
       * which nobody reads. A silent peer gets a plain close (nothing unread, so no
       * RST: our FIN is already out); one still sending after linger_time an RST. */
      return arg ? to_closing(m, LW_REASON_LINGER_TIMEOUT, LW_INITIATOR_LOCAL, 1, 0,
                              LW__CA_RESET_FD)
                 : to_closing(m, LW_REASON_LINGER_TIMEOUT, LW_INITIATOR_LOCAL, 0, 0,
                              LW__CA_CLOSE_FD);
    default:
      return 0;
    }

  case LW__CS_ACK_WAIT:
    switch (ev) {
    case LW__CE_SHUTDOWN:
    case LW__CE_CLOSE:
      *result = LW_EALREADY;
      return 0;
    case LW__CE_ACKED:
      /* Keep the reason chosen at the start of the close. */
      m->state = LW__CS_CLOSING;
      return LW__CA_CANCEL | LW__CA_CLOSE_FD;
    case LW__CE_DEADLINE:
      return to_closing(m, LW_REASON_DEADLINE, LW_INITIATOR_LOCAL, 1, 0, LW__CA_RESET_FD);
    default:
      return 0;
    }

  default:
    assert(0 && "unreachable state");
    return 0;
  }
}

int lw__cs_write_status(const lw__cs *m) {
  switch (m->state) {
  case LW__CS_OPEN:
  case LW__CS_HALF_PEER:
    return 0;
  case LW__CS_SHUT_PENDING:
  case LW__CS_HALF_LOCAL:
    return LW_ESHUTDOWN;
  default:
    return LW_ECLOSING;
  }
}

const char *lw__cs_state_name(lw__cs_state s) {
  static const char *const names[LW__CS__COUNT] = {"OPEN",      "SHUT_PENDING", "HALF_LOCAL",
                                                   "HALF_PEER", "FLUSHING",     "LINGER",
                                                   "ACK_WAIT",  "CLOSING",      "CLOSED"};
  return s < LW__CS__COUNT ? names[s] : "?";
}

const char *lw__cs_event_name(lw__cs_event e) {
  static const char *const names[LW__CE__COUNT] = {
      "SHUTDOWN",   "CLOSE",    "ABORT",    "CLOSE_NAIVE",   "QUEUE_EMPTY",
      "QUEUE_BUSY", "PEER_FIN", "PEER_RST", "ERROR",         "ACKED",
      "DEADLINE",   "TIMEOUT",  "OPS_DONE", "EOF_DELIVERED", "LINGER_END"};
  return e < LW__CE__COUNT ? names[e] : "?";
}
