/*
 * close_sm.h - the termination state machine. PURE: no syscalls, no clock, no memory.
 * Events go in, a set of actions comes out; src/conn.c carries the actions out.
 * Keeping it pure is what lets tests/unit_close_sm.c walk every state x event pair and
 * tests/fuzz_close_sm.c drive random event orders against its invariants.
 *
 *   OPEN --lw_shutdown--> SHUT_PENDING --queue empty--> HALF_LOCAL (FIN sent)
 *   OPEN --peer FIN--> HALF_PEER --EOF delivered (unless allow_half_close)--> FLUSHING
 *   OPEN --lw_close--> FLUSHING --queue empty, FIN--> LINGER --peer FIN--> ACK_WAIT
 *   ACK_WAIT --peer acked all--> CLOSING (fd closed) --ops done--> CLOSED (on_close)
 *   LINGER --linger_timeout / linger_time (all acked)--> CLOSING
 *   any live state --abort/RST/error/deadline/timeout--> CLOSING
 *
 * The initiator (lw_close_info.initiator) has one rule: the side whose first FIN or RST
 * went out before the other side's FIN or RST reached it. The machine records it at the
 * first of: our FIN leaving (LW__CA_SHUT_WR), our RST, the peer's FIN read, the peer's
 * RST; conn.c corrects it with what the kernel knew earlier than the machine did (the
 * peer's FIN already queued, unread, when ours left or when we reset).
 */
#ifndef LW_CLOSE_SM_H
#define LW_CLOSE_SM_H

#include "lastword.h"

#include <stdint.h>

typedef enum lw__cs_state {
  LW__CS_OPEN = 0,     /* both directions open */
  LW__CS_SHUT_PENDING, /* lw_shutdown: FIN waits for the write queue to drain */
  LW__CS_HALF_LOCAL,   /* our FIN sent by lw_shutdown; reading goes on */
  LW__CS_HALF_PEER,    /* peer FIN received: we may still write (until the EOF callback
                          returns, or for good with allow_half_close) */
  LW__CS_FLUSHING,     /* closing: write queue draining, input discarded */
  LW__CS_LINGER,       /* closing: our FIN sent, discarding until the peer's FIN */
  LW__CS_ACK_WAIT,     /* closing: both FINs done, waiting for the peer's last ACK */
  LW__CS_CLOSING,      /* fd closed; waiting for in-flight operations to complete */
  LW__CS_CLOSED,       /* on_close delivered: terminal */
  LW__CS__COUNT
} lw__cs_state;

typedef enum lw__cs_event {
  LW__CE_SHUTDOWN = 0,  /* application: lw_shutdown */
  LW__CE_CLOSE,         /* application: lw_close (arg 0), or the library's graceful
                           idle close (arg: LW_REASON_IDLE_TIMEOUT) */
  LW__CE_ABORT,         /* application: lw_abort */
  LW__CE_CLOSE_NAIVE,   /* application: lw_close_naive */
  LW__CE_QUEUE_EMPTY,   /* every queued byte is in the kernel */
  LW__CE_QUEUE_BUSY,    /* bytes were queued */
  LW__CE_PEER_FIN,      /* read returned 0 */
  LW__CE_PEER_RST,      /* ECONNRESET / EPIPE (arg: LW_E code) */
  LW__CE_ERROR,         /* any other socket error (arg: LW_E code) */
  LW__CE_ACKED,         /* the peer acknowledged every byte and our FIN */
  LW__CE_DEADLINE,      /* the close deadline passed */
  LW__CE_TIMEOUT,       /* idle/stall/drain policy fired (arg: lw_close_reason) */
  LW__CE_OPS_DONE,      /* nothing of this connection is left in flight */
  LW__CE_EOF_DELIVERED, /* the read callback returned from its LW_EOF call */
  LW__CE_LINGER_END,    /* LINGER, every byte acknowledged: the peer stayed silent for
                           linger_timeout_ms (arg 0: close, no RST) or lingering took
                           linger_time_ms while it kept sending (arg 1: RST) */
  LW__CE__COUNT
} lw__cs_event;

/* Actions, a bit set; conn.c carries them out in this order. */
enum {
  LW__CA_SHUT_WR = 1u << 0,      /* shutdown(SHUT_WR): FIN after the last byte */
  LW__CA_DISCARD = 1u << 1,      /* read and discard input from now on */
  LW__CA_ARM_DEADLINE = 1u << 2, /* start the close deadline timer */
  LW__CA_POLL_ACK = 1u << 3,     /* watch SIOCOUTQ until the peer acked everything */
  LW__CA_CANCEL = 1u << 4,       /* cancel queued writes (LW_ECANCELED), stop timers */
  LW__CA_CLOSE_FD = 1u << 5,     /* close(fd): the connection is over on the wire */
  LW__CA_RESET_FD = 1u << 6,     /* SO_LINGER{1,0} + close(fd): RST */
  LW__CA_EMIT_CLOSE = 1u << 7    /* deliver on_close (deferred), then free */
};

typedef struct lw__cs {
  /* Packed into 8 bytes: one lives in every connection (lw__cs_state, lw_close_reason,
   * lw_initiator values, and an LW_E code). */
  uint8_t state;
  uint8_t reason;
  uint8_t initiator;
  uint8_t rst;
  unsigned queue_empty : 1;
  unsigned fin_sent : 1;
  unsigned peer_fin : 1;
  unsigned allow_half_close : 1;
  unsigned emitted : 1;
  signed int err : 16;
} lw__cs;

void lw__cs_init(lw__cs *m, int allow_half_close);
/* One event. Returns the actions; *result gets 0 or an LW_E code for application
 * events (LW_EALREADY for a second close, ...). result may be NULL. */
unsigned lw__cs_step(lw__cs *m, lw__cs_event ev, int arg, int *result);

/* What the application may do in a state. */
int lw__cs_write_status(const lw__cs *m); /* 0, LW_ESHUTDOWN or LW_ECLOSING */
/* Input goes to the read callback (inline: asked on every read and update). */
static inline int lw__cs_delivers_input(const lw__cs *m) {
  return m->state == LW__CS_OPEN || m->state == LW__CS_SHUT_PENDING ||
         m->state == LW__CS_HALF_LOCAL;
}
/* The fd is still open. */
static inline int lw__cs_live(const lw__cs *m) {
  return m->state != LW__CS_CLOSING && m->state != LW__CS_CLOSED;
}
const char *lw__cs_state_name(lw__cs_state s);
const char *lw__cs_event_name(lw__cs_event e);

#endif
