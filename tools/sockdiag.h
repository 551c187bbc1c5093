/*
 * sockdiag.h - list TCP sockets on a port through sock_diag netlink (INET_DIAG).
 *
 * Why netlink and not `ss`: the kernel reports the state, the running timer and its
 * expiry directly (struct inet_diag_msg, linux/inet_diag.h), including sockets that no
 * longer have a file descriptor (TIME_WAIT, orphaned FIN_WAIT_2); parsing `ss` output
 * would tie us to a text format and to iproute2 being installed. Unprivileged users may
 * dump TCP sockets too, so this works without root.
 *
 * Reused by the lab, by `lastword inspect`, and by library tests ("after lw_abort there
 * is no TIME_WAIT on port P").
 */
#ifndef LW_SOCKDIAG_H
#define LW_SOCKDIAG_H

#include <stdint.h>
#include <netinet/in.h>

/* Timer codes of inet_diag_msg.idiag_timer (net/ipv4/tcp_diag.c, inet_diag.c). */
enum {
  LW_DIAG_TIMER_NONE = 0,
  LW_DIAG_TIMER_RETRANS = 1, /* retransmit (or RTO/TLP/probe0 ... in newer kernels) */
  LW_DIAG_TIMER_KEEPALIVE = 2,
  LW_DIAG_TIMER_TIMEWAIT = 3,
  LW_DIAG_TIMER_PROBE0 = 4 /* zero-window probe */
};

typedef struct lw_diag_sock {
  int family;                   /* AF_INET or AF_INET6 */
  int state;                    /* TCP state number, see lw_diag_state_name() */
  uint16_t lport, rport;        /* host byte order */
  struct in6_addr laddr, raddr; /* IPv4 addresses are stored in the first 4 bytes */
  int timer;                    /* LW_DIAG_TIMER_* */
  uint32_t expires_ms;          /* time left on that timer */
  uint32_t retrans;             /* timer retransmit / probe counter */
  uint32_t rqueue, wqueue;      /* bytes: unread (or accept backlog), unsent/unacked */
  uint32_t uid;
  uint64_t inode; /* 0 when no file refers to the socket (orphan, TIME_WAIT) */
} lw_diag_sock;

/*
 * Lists TCP sockets of `family` (AF_INET, AF_INET6, or AF_UNSPEC for both) whose local
 * or remote port equals `port` (0 = every socket). Writes up to `max` entries to `out`
 * and returns how many matched in total (which may exceed `max`), or -errno on failure.
 */
int lw_diag_query(int family, uint16_t port, lw_diag_sock *out, int max);

/* "ESTABLISHED", "TIME_WAIT", ... ; "none" for -1; "?" for an unknown number. */
const char *lw_diag_state_name(int state);
/* "retrans", "keepalive", "timewait", "probe0", "" (none). */
const char *lw_diag_timer_name(int timer);
/* Parses a state name (case-insensitive; "none" = -1). Returns -2 when unknown. */
int lw_diag_state_parse(const char *name);

#define LW_DIAG_STATE_NONE (-1)

#endif
