/*
 * inspect.c - `lastword inspect --port P`: the TCP sockets on a port, counted by state,
 * with the patterns that mean trouble:
 *   CLOSE_WAIT   the peer closed and the local application never called close() (B5);
 *   TIME_WAIT    many of them on a server port mean the server closes first, at a high
 *                rate (each holds its 4-tuple for 60 s on Linux, TCP_TIMEWAIT_LEN);
 *   FIN_WAIT_2   with no file (inode 0): orphaned, waiting for a peer that never closes,
 *                until net.ipv4.tcp_fin_timeout;
 *   ESTABLISHED  with no keepalive timer: a vanished peer is never noticed (A17).
 */
#include "inspect.h"
#include "sockdiag.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LW_INSPECT_MAX 4096
#define LW_TIMEWAIT_PILEUP 100

static void lw_addr(const lw_diag_sock *s, const struct in6_addr *a, uint16_t port, char *buf,
                    size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  inet_ntop(s->family, a, ip, sizeof ip);
  snprintf(buf, len, s->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

int lw_inspect_main(int argc, char **argv) {
  long port = -1;
  int all = 0;
  static const struct option longopts[] = {{"port", required_argument, NULL, 'p'},
                                           {"all", no_argument, NULL, 'a'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "p:ah", longopts, NULL)) != -1;) {
    char *end;
    switch (ch) {
    case 'p':
      port = strtol(optarg, &end, 10);
      if (*end || end == optarg || port < 1 || port > 65535) {
        fprintf(stderr, "lastword inspect: bad port '%s'\n", optarg);
        return 2;
      }
      break;
    case 'a':
      all = 1;
      break;
    case 'h':
      puts("usage: lastword inspect --port P [--all]\n"
           "  TCP sockets whose local or remote port is P, by state (sock_diag), with\n"
           "  warnings for CLOSE_WAIT, TIME_WAIT pile-ups, orphaned FIN_WAIT_2 and\n"
           "  connections without keepalive. --all lists every socket.");
      return 0;
    default:
      return 2;
    }
  }
  if (port < 0) {
    fprintf(stderr, "lastword inspect: --port P is required\n");
    return 2;
  }
  lw_diag_sock *socks = calloc(LW_INSPECT_MAX, sizeof *socks);
  if (!socks)
    return 1;
  int n = lw_diag_query(AF_UNSPEC, (uint16_t)port, socks, LW_INSPECT_MAX);
  if (n < 0) {
    fprintf(stderr, "lastword inspect: sock_diag: %s\n", strerror(-n));
    free(socks);
    return 1;
  }
  int shown = n < LW_INSPECT_MAX ? n : LW_INSPECT_MAX;
  int count[16] = {0}, orphan_fw2 = 0, no_ka = 0;
  for (int i = 0; i < shown; i++) {
    const lw_diag_sock *s = &socks[i];
    if (s->state > 0 && s->state < 16)
      count[s->state]++;
    if (s->state == 5 && s->inode == 0)
      orphan_fw2++;
    if (s->state == 1 && s->timer != LW_DIAG_TIMER_KEEPALIVE)
      no_ka++;
  }
  printf("port %ld: %d TCP socket%s%s\n", port, n, n == 1 ? "" : "s",
         n > shown ? " (first 4096 examined)" : "");
  for (int st = 1; st < 16; st++)
    if (count[st])
      printf("  %-12s %6d\n", lw_diag_state_name(st), count[st]);
  if (count[8])
    printf("! %d CLOSE_WAIT: the peer closed, this host's application has not called "
           "close() (it will stay until it does)\n",
           count[8]);
  if (count[6] >= LW_TIMEWAIT_PILEUP)
    printf("! %d TIME_WAIT: this side closes first, often; each holds its 4-tuple 60 s\n",
           count[6]);
  if (orphan_fw2)
    printf("! %d orphaned FIN_WAIT_2: closed here, the peer never closed "
           "(net.ipv4.tcp_fin_timeout bounds it)\n",
           orphan_fw2);
  if (no_ka)
    printf("! %d ESTABLISHED without a keepalive timer: a vanished peer would go "
           "unnoticed (SO_KEEPALIVE / TCP_USER_TIMEOUT)\n",
           no_ka);
  if (all || shown <= 50) {
    for (int i = 0; i < shown && (all || i < 50); i++) {
      const lw_diag_sock *s = &socks[i];
      char l[64], r[64];
      lw_addr(s, &s->laddr, s->lport, l, sizeof l);
      lw_addr(s, &s->raddr, s->rport, r, sizeof r);
      printf("  %-12s %-28s %-28s rq %-6u wq %-6u %s%s%.1fs%s\n", lw_diag_state_name(s->state),
             l, r, s->rqueue, s->wqueue, lw_diag_timer_name(s->timer), s->timer ? " " : "",
             s->expires_ms / 1000.0, s->inode ? "" : " (no file)");
    }
  }
  free(socks);
  return 0;
}
