/*
 * lab.h - the lab's data model: scenarios are data (steps + expectations), one engine
 * runs them, the report prints them.
 *
 * A scenario is a list of steps, each done by one side (client or server) with raw
 * socket calls, plus expectations that translate one seed claim into observable facts
 * (a call's result, a segment on the wire, a socket state from sock_diag). Built-in
 * scenarios are written in the same text format users can load with --script (see
 * script.c and README-lab.md), so the parser is exercised by every run.
 */
#ifndef LW_LAB_H
#define LW_LAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../capture.h"

#define LW_LAB_MAX_STEPS 48
#define LW_LAB_MAX_EXPECTS 16
#define LW_LAB_MAX_CALLS 64
#define LW_LAB_MAX_STATES 12
#define LW_LAB_NAME_MAX 24
#define LW_LAB_TITLE_MAX 120

typedef enum { LW_SIDE_CLIENT = 0, LW_SIDE_SERVER = 1, LW_SIDE_NONE = 2 } lw_lab_side;

/* Operations. Keep lw_lab_op_names (script.c) in the same order. */
typedef enum {
  LW_OP_CONNECT,      /* client: socket() if needed, blocking connect() to the listener */
  LW_OP_ACCEPT,       /* server: poll + accept() (1 s bound) */
  LW_OP_SEND,         /* a0 bytes; non-blocking send with MSG_NOSIGNAL, poll up to 500 ms */
  LW_OP_FILL,         /* send until EAGAIN (cap 64 MiB): fills both kernel buffers */
  LW_OP_RECV,         /* one recv() of up to a0 bytes (default 64 KiB), poll up to a1 ms */
  LW_OP_RECV_ALL,     /* recv until 0 or error, bounded by a0 ms (default 2000) */
  LW_OP_SHUTDOWN,     /* a0: SHUT_RD, SHUT_WR or SHUT_RDWR */
  LW_OP_CLOSE,        /* close(), timed */
  LW_OP_LINGER,       /* setsockopt SO_LINGER {a0, a1} */
  LW_OP_GETLINGER,    /* getsockopt SO_LINGER -> v1 = l_onoff, v2 = l_linger */
  LW_OP_NONBLOCK,     /* O_NONBLOCK on */
  LW_OP_RCVBUF,       /* SO_RCVBUF a0 (before connect/listen to matter) */
  LW_OP_SNDBUF,       /* SO_SNDBUF a0 */
  LW_OP_KEEPALIVE,    /* SO_KEEPALIVE + TCP_KEEPIDLE a0 s, TCP_KEEPINTVL a1 s, TCP_KEEPCNT a2 */
  LW_OP_USER_TIMEOUT, /* TCP_USER_TIMEOUT a0 ms */
  LW_OP_SOERROR,      /* getsockopt SO_ERROR -> v1 */
  LW_OP_POLL,         /* poll(POLLIN|POLLOUT|POLLRDHUP) with a0 ms -> ret = revents */
  LW_OP_ARECV,        /* recv() in a helper thread (blocking, SO_RCVTIMEO a0 ms) */
  LW_OP_JOIN,         /* wait for that thread; its result is recorded as "recv" */
  LW_OP_DISCONNECT,   /* connect(AF_UNSPEC): Linux's way to dissolve a TCP association */
  LW_OP_FDVALID,      /* fcntl(F_GETFD) on the last fd number (never closes anything) */
  LW_OP_REUSE,        /* close() then socket(): ret = 1 when the same number came back */
  LW_OP_DROP,         /* nft drop rule on the test port (netns scenarios only) */
  LW_OP_WAIT,         /* sleep a0 ms (no side) */
  LW_OP_DIAG,         /* sock_diag snapshot of both sides (no side) */
  LW_OP__COUNT
} lw_lab_op;

typedef struct {
  lw_lab_side side;
  lw_lab_op op;
  long a[3];
  int nargs;
} lw_lab_step;

typedef enum { LW_EXP_CALL, LW_EXP_SEG, LW_EXP_NOSEG, LW_EXP_STATE } lw_lab_expect_kind;
typedef enum { LW_F_RET, LW_F_ERRNO, LW_F_MS, LW_F_BYTES, LW_F_V1, LW_F_V2 } lw_lab_field;
typedef enum { LW_CMP_EQ, LW_CMP_NE, LW_CMP_LT, LW_CMP_LE, LW_CMP_GT, LW_CMP_GE } lw_lab_cmp;

typedef struct {
  lw_lab_expect_kind kind;
  lw_lab_side side; /* LW_SIDE_NONE = either side (segments) */
  lw_lab_op op;     /* LW_EXP_CALL: which call (the nth, or the last when nth == 0) */
  int nth;
  lw_lab_field field;
  lw_lab_cmp cmp;
  long val;
  int val_peer_sent; /* compare with the bytes the other side's sends were accepted */
  uint8_t flag;      /* LW_EXP_SEG / NOSEG: LW_TH_* bit */
  int state;         /* LW_EXP_STATE: TCP state, LW_DIAG_STATE_NONE */
  char text[96];     /* the expectation as written, for reports */
} lw_lab_expect;

typedef struct {
  char name[LW_LAB_NAME_MAX];
  char claim[LW_LAB_NAME_MAX]; /* claim id it belongs to ("" = user scenario) */
  char title[LW_LAB_TITLE_MAX];
  int netns; /* run in a fresh network namespace (needs root) */
  int ipv6;  /* ::1 instead of 127.0.0.1 */
  lw_lab_step steps[LW_LAB_MAX_STEPS];
  int nsteps;
  lw_lab_expect expects[LW_LAB_MAX_EXPECTS];
  int nexpects;
} lw_lab_scenario;

/* ---- results ---- */
typedef struct {
  double t_ms; /* when the call returned, from the scenario's t0 */
  lw_lab_side side;
  lw_lab_op op;
  long ret;
  int err;   /* errno, 0 if none */
  double ms; /* how long the call took */
  long long bytes;
  long v1, v2;
  char text[112]; /* "recv() = -1 ECONNRESET" */
} lw_lab_call;

typedef struct {
  double t_ms;
  lw_lab_side side;
  int state; /* LW_DIAG_STATE_NONE when the socket is gone */
  int timer;
  uint32_t expires_ms;
} lw_lab_state;

typedef enum { LW_RES_PASS, LW_RES_FAIL, LW_RES_SKIP } lw_lab_res;

typedef struct {
  const lw_lab_expect *exp;
  lw_lab_res res;
  char got[136]; /* what was observed */
} lw_lab_check;

typedef struct {
  const lw_lab_scenario *sc;
  lw_lab_call calls[LW_LAB_MAX_CALLS];
  int ncalls;
  lw_cap_seg *segs; /* owned copy */
  size_t nsegs;
  int captured; /* 1 when segments were captured */
  lw_lab_state states[LW_LAB_MAX_STATES];
  int nstates;
  lw_lab_check checks[LW_LAB_MAX_EXPECTS];
  int nchecks;
  long long sent[2]; /* bytes accepted by send() per side */
  int skipped;       /* whole scenario skipped (e.g. netns needs root) */
  int lab_error;     /* the lab itself failed (no socket, no listener) */
  int diag_err;      /* errno of a failed socket-state query (state checks unknown) */
  char note[300];    /* skip reason or lab error */
  uint16_t port, cport;
} lw_lab_result;

/* ---- claims ---- */
typedef enum {
  LW_V_HOLDS,
  LW_V_WINDOWS_ONLY,
  LW_V_CONTRADICTED,
  LW_V_NOT_TESTABLE,
  LW_V_SKIPPED,
  LW_V_NEEDS_CAPTURE, /* every prediction that could be checked is on the wire, and
                         nothing was captured (Windows without Npcap; Linux not root) */
  LW_V__COUNT
} lw_lab_verdict;

typedef struct {
  const char *id;
  const char *seed;      /* one line: what the seed says */
  lw_lab_verdict if_not; /* verdict when a seed prediction fails here */
  const char *why;       /* the OS behaviour behind a non-HOLDS verdict, or the
                            reason a claim cannot be tested here */
} lw_lab_claim;

/* Options shared by the engine and the report. */
typedef struct {
  int json, color, progress, have_root, capture_ok;
  void *dump; /* pcap_dumper_t* or NULL */
  FILE *out;
} lw_lab_opts;

/* engine.c */
int lw_lab_run(const lw_lab_scenario *sc, const lw_lab_opts *o, lw_lab_result *r);
void lw_lab_result_free(lw_lab_result *r);
void lw_lab_evaluate(lw_lab_result *r);

/* script.c */
typedef struct {
  lw_lab_scenario *v;
  int n, cap;
} lw_lab_scenario_list;
/* Parses text (len bytes, need not be NUL-terminated) and appends to list. Returns 0,
 * or -1 with "line N: reason" in err. Never reads past len. */
int lw_lab_script_parse(const char *text, size_t len, lw_lab_scenario_list *list, char *err,
                        size_t errlen);
void lw_lab_scenario_list_free(lw_lab_scenario_list *list);
const char *lw_lab_op_name(lw_lab_op op);
const char *lw_lab_side_name(lw_lab_side s);
const char *lw_lab_errno_name(int e);

/* scenarios.c */
extern const lw_lab_claim lw_lab_claims[];
extern const size_t lw_lab_nclaims;
extern const char lw_lab_builtin_script[];
#ifdef _WIN32
/* The reason shown for a claim on Windows (the `why` texts explain Linux), or NULL. */
const char *lw_lab_claim_why_win(const char *id);
#endif

/* report.c */
const char *lw_lab_verdict_name(lw_lab_verdict v);
void lw_lab_report_claim(const lw_lab_opts *o, const lw_lab_claim *c, lw_lab_verdict v,
                         const lw_lab_result *rs, int nr, const char *note);
void lw_lab_report_summary(const lw_lab_opts *o, const int counts[LW_V__COUNT], int nclaims);

/* rstloss.c */
int lw_lab_rstloss(const lw_lab_opts *o);

/* lab entry point (lab.c) */
int lw_lab_main(int argc, char **argv);

#endif
