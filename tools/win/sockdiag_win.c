/*
 * sockdiag_win.c - lw_diag_query (sockdiag.h) on Windows: the IP Helper TCP tables
 * (GetTcpTable, GetTcp6Table), which list every TCP connection with its state,
 * TIME_WAIT ones included. Windows reports no timers, queues or inodes: those
 * fields stay 0. States are translated to Linux's numbering (the lab's and inspect's).
 * Under Wine the table is the host's (Wine reads Linux's /proc/net/tcp*).
 */
#include "sockdiag.h"

#include <iphlpapi.h>
#include <stdlib.h>
#include <string.h>

/* MIB_TCP_STATE_* (1 CLOSED .. 12 DELETE_TCB) -> Linux TCP_* numbers. */
static int lw_diag_state_from_mib(DWORD st) {
  static const int map[] = {-1,
                            7 /* CLOSED: CLOSE */,
                            10 /* LISTEN */,
                            2 /* SYN_SENT */,
                            3 /* SYN_RCVD */,
                            1 /* ESTAB */,
                            4 /* FIN_WAIT1 */,
                            5 /* FIN_WAIT2 */,
                            8 /* CLOSE_WAIT */,
                            11 /* CLOSING */,
                            9 /* LAST_ACK */,
                            6 /* TIME_WAIT */,
                            7 /* DELETE_TCB: CLOSE */};
  return st < sizeof map / sizeof map[0] ? map[st] : 0;
}

/* GetTcpTable / GetTcp6Table: the basic tables (no owning process: looking it up is
 * what makes the OWNER_PID tables slow under Wine, which scans /proc for every socket). */
static void *lw_diag_table(int af, int *err) {
  ULONG size = 0;
  void *t = NULL;
  for (int tries = 0; tries < 4; tries++) {
    ULONG r = af == AF_INET ? GetTcpTable(t, &size, FALSE) : GetTcp6Table(t, &size, FALSE);
    if (r == NO_ERROR)
      return t;
    free(t);
    t = NULL;
    if (r != ERROR_INSUFFICIENT_BUFFER) {
      *err = r == ERROR_NOT_SUPPORTED ? ENOSYS : EIO;
      return NULL;
    }
    size += 4096; /* the table may grow between the two calls */
    t = malloc(size);
    if (!t) {
      *err = ENOMEM;
      return NULL;
    }
  }
  free(t);
  *err = EAGAIN;
  return NULL;
}

/* One row of either table, if it is on `port` (0: any). */
static void lw_diag_add(lw_diag_sock *out, int max, int *n, uint16_t port, int family, DWORD st,
                        DWORD lport, DWORD rport, const void *la, const void *ra, size_t alen) {
  uint16_t lp = ntohs((u_short)lport), rp = ntohs((u_short)rport);
  if (port && lp != port && rp != port)
    return;
  if (*n < max) {
    lw_diag_sock *s = &out[*n];
    memset(s, 0, sizeof *s);
    s->family = family;
    s->state = lw_diag_state_from_mib(st);
    s->lport = lp;
    s->rport = st == MIB_TCP_STATE_LISTEN ? 0 : rp;
    memcpy(&s->laddr, la, alen);
    memcpy(&s->raddr, ra, alen);
  }
  (*n)++;
}

int lw_diag_query(int family, uint16_t port, lw_diag_sock *out, int max) {
  int n = 0, err = 0, ok = 0;
  if (family == AF_INET || family == AF_UNSPEC) {
    MIB_TCPTABLE *t = lw_diag_table(AF_INET, &err);
    for (DWORD i = 0; t && i < t->dwNumEntries; i++) {
      const MIB_TCPROW *row = &t->table[i];
      lw_diag_add(out, max, &n, port, AF_INET, (DWORD)row->dwState, row->dwLocalPort,
                  row->dwRemotePort, &row->dwLocalAddr, &row->dwRemoteAddr, 4);
    }
    ok |= t != NULL;
    free(t);
  }
  if (family == AF_INET6 || family == AF_UNSPEC) {
    MIB_TCP6TABLE *t = lw_diag_table(AF_INET6, &err);
    for (DWORD i = 0; t && i < t->dwNumEntries; i++) {
      const MIB_TCP6ROW *row = &t->table[i];
      lw_diag_add(out, max, &n, port, AF_INET6, (DWORD)row->State, row->dwLocalPort,
                  row->dwRemotePort, &row->LocalAddr, &row->RemoteAddr, 16);
    }
    ok |= t != NULL;
    free(t);
  }
  return ok || !err ? n : -err;
}
