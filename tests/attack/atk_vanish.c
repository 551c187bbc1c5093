/* atk_vanish.c - the peer vanishes (nft drops every packet of its port) while a lingering
 * close still has bytes in flight. Runs in a private network namespace on its own
 * loopback (root only; otherwise prints why and exits 0). Scenarios:
 *   dead   dead_after_ms 3000, lw_close(c, 20000) with 2 MiB unacknowledged (peer
 *          receive buffer 4 KiB, not reading). Expected dead-peer within [3000, 5000] ms
 *          of the vanishing, not deadline at 20 s.
 *   stall  stall_timeout_ms 500, same setup. Expected stalled within ~[500, 800] ms.
 *   quiet  dead_after_ms 3000; the peer read our 5 bytes (all acknowledged), no FIN, then
 *          vanishes. Expected linger-timeout (rst 0) or dead-peer, within 6 s. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "atk.h"

#include <sched.h>

static lw_loop *loop;
static lw_conn *srv;
static int closed;
static uint64_t closed_at;
static lw_close_info info;
static char blob[2 << 20];

static void scb(lw_conn *c, const lw_close_info *in) {
  (void)c;
  info = *in;
  closed = 1;
  closed_at = atk_now();
}
static void rd(lw_conn *c, long n, const char *b) {
  (void)c;
  (void)n;
  (void)b;
}
static void acc(lw_listener *l, lw_conn *c, int st) {
  (void)l;
  if (st)
    return;
  srv = c;
  lw_conn_on_close(c, scb);
  lw_conn_read_start(c, rd);
}

int main(int argc, char **argv) {
  const char *scen = argc > 1 ? argv[1] : "dead";
  if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
    printf("atk_vanish %s: skipped (needs root and network namespaces)\n", scen);
    return 0;
  }
  if (system("ip link set lo up") != 0 ||
      system("nft add table inet atkv >/dev/null 2>&1") != 0) {
    printf("atk_vanish %s: skipped (ip/nft unavailable)\n", scen);
    return 0;
  }
  if (lw_loop_new(&loop, NULL) < 0)
    return 2;
  lw_conn_options o;
  memset(&o, 0, sizeof(o));
  if (!strcmp(scen, "stall"))
    o.stall_timeout_ms = 500;
  else
    o.dead_after_ms = 3000;
  lw_listener *l;
  if (lw_listener_new(loop, "127.0.0.1", 0, 16, &o, acc, &l) < 0)
    return 2;
  int quiet = !strcmp(scen, "quiet");
  int p = socket(AF_INET, SOCK_STREAM, 0);
  int rb = 4096;
  if (!quiet)
    setsockopt(p, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)lw_listener_port(l))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(p, (struct sockaddr *)&a, sizeof(a)) != 0)
    return 2;
  struct sockaddr_in me;
  socklen_t ml = sizeof(me);
  getsockname(p, (struct sockaddr *)&me, &ml);
  atk_run_for(loop, 30);
  if (!srv)
    return 2;
  if (quiet)
    lw_conn_write(srv, "hello", 5, NULL, NULL);
  else
    lw_conn_write(srv, blob, sizeof(blob), NULL, NULL);
  lw_close(srv, 20000);
  atk_run_for(loop, 200);
  if (quiet) {
    char b[16];
    CHECK(recv(p, b, sizeof(b), MSG_DONTWAIT) == 5, "peer read");
    atk_run_for(loop, 50);
  }
  char cmd[256];
  snprintf(cmd, sizeof(cmd),
           "nft 'add chain inet atkv c { type filter hook output priority 0; }; "
           "add rule inet atkv c tcp sport %d drop; add rule inet atkv c tcp dport %d drop'",
           ntohs(me.sin_port), ntohs(me.sin_port));
  CHECK(system(cmd) == 0, "nft rule");
  uint64_t t0 = atk_now();
  uint64_t end = t0 + 25000;
  while (!closed && atk_now() < end)
    atk_run_for(loop, 20);
  CHECK(closed, "no on_close in 25 s");
  if (closed) {
    uint64_t took = closed_at - t0;
    printf("atk_vanish %s: reason=%s init=%d rst=%d err=%s q=%llu s=%llu a=%llu ud=%llu "
           "silent=%llu close_ms=%llu; %llu ms after the peer vanished\n",
           scen, lw_reason_name(info.reason), info.initiator, info.rst,
           lw_err_name(info.os_error), (unsigned long long)info.bytes_queued,
           (unsigned long long)info.bytes_sent, (unsigned long long)info.bytes_acked,
           (unsigned long long)info.unsent_discarded, (unsigned long long)info.peer_silent_ms,
           (unsigned long long)info.close_ms, (unsigned long long)took);
    if (info.acked_known)
      CHECK(info.bytes_queued == info.bytes_acked + info.unsent_discarded, "queued != a + ud");
    if (!strcmp(scen, "dead"))
      CHECK(info.reason == LW_REASON_DEAD_PEER && took >= 2900 && took <= 5000,
            "expected dead-peer in [3000, 5000] ms");
    else if (!strcmp(scen, "stall"))
      CHECK(info.reason == LW_REASON_STALLED && took <= 800, "expected stalled within 800 ms");
    else
      CHECK((info.reason == LW_REASON_LINGER_TIMEOUT && !info.rst) ||
                info.reason == LW_REASON_DEAD_PEER,
            "expected linger-timeout (rst 0) or dead-peer");
  }
  close(p);
  if (srv && !closed)
    lw_abort(srv);
  lw_listener_close(l);
  atk_run_for(loop, 20);
  lw_loop_run(loop, LW_RUN_DEFAULT);
  char name[64];
  snprintf(name, sizeof(name), "atk_vanish %s", scen);
  int rc = atk_end(name, loop);
  lw_loop_close(loop);
  return rc;
}
