/*
 * sockdiag.c - sock_diag (NETLINK_SOCK_DIAG) TCP socket dump; see sockdiag.h.
 *
 * Protocol: one SOCK_DIAG_BY_FAMILY request with NLM_F_DUMP and an inet_diag_req_v2
 * asking for every TCP state; the kernel answers with a multipart stream of
 * inet_diag_msg records ended by NLMSG_DONE (Documentation: man 7 sock_diag).
 * Filtering on the port is done here, in user space, because the kernel's bytecode
 * filter language (INET_DIAG_REQ_BYTECODE) is more machinery than a lab needs.
 */
#include "sockdiag.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#ifdef _WIN32
/* Windows: the same list from the IP Helper TCP tables (tools/win/sockdiag_win.c). */
#else
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <netinet/tcp.h>
#endif

static const char *const lw_diag_states[] = {
    "none",  "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT_1", "FIN_WAIT_2",  "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",    "NEW_SYN_RECV"};

const char *lw_diag_state_name(int state) {
  if (state == LW_DIAG_STATE_NONE)
    return "none";
  if (state > 0 && state < (int)(sizeof lw_diag_states / sizeof lw_diag_states[0]))
    return lw_diag_states[state];
  return "?";
}

int lw_diag_state_parse(const char *name) {
  for (int i = 1; i < (int)(sizeof lw_diag_states / sizeof lw_diag_states[0]); i++)
    if (strcasecmp(name, lw_diag_states[i]) == 0)
      return i;
  if (strcasecmp(name, "none") == 0)
    return LW_DIAG_STATE_NONE;
  return -2;
}

const char *lw_diag_timer_name(int timer) {
  switch (timer) {
  case LW_DIAG_TIMER_RETRANS:
    return "retrans";
  case LW_DIAG_TIMER_KEEPALIVE:
    return "keepalive";
  case LW_DIAG_TIMER_TIMEWAIT:
    return "timewait";
  case LW_DIAG_TIMER_PROBE0:
    return "probe0";
  default:
    return "";
  }
}

#ifndef _WIN32
/* Sends one dump request for `family` and collects matches. Returns matches or -errno. */
static int lw_diag_dump_family(int family, uint16_t port, lw_diag_sock *out, int max,
                               int already) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0)
    return -errno;
  int found = 0, rc = 0;
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  memset(&msg, 0, sizeof msg);
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = (uint8_t)family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0u; /* every state, TIME_WAIT and SYN_RECV included */
  struct sockaddr_nl nladdr = {.nl_family = AF_NETLINK};
  if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&nladdr, sizeof nladdr) < 0) {
    rc = -errno;
    goto out;
  }
  /* Bounded: a dump is finite; the guard stops a misbehaving stream after 100k reads. */
  for (int guard = 0; guard < 100000; guard++) {
    long buf[8192 / sizeof(long)];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      goto out;
    }
    if (n == 0)
      break;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE)
        goto out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        rc = h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error ? e->error : -EIO;
        goto out;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
          h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
        continue;
      const struct inet_diag_msg *m = NLMSG_DATA(h);
      uint16_t lp = ntohs(m->id.idiag_sport), rp = ntohs(m->id.idiag_dport);
      if (port && lp != port && rp != port)
        continue;
      int idx = already + found;
      found++;
      if (idx >= max)
        continue;
      lw_diag_sock *s = &out[idx];
      memset(s, 0, sizeof *s);
      s->family = m->idiag_family;
      s->state = m->idiag_state;
      s->lport = lp;
      s->rport = rp;
      memcpy(&s->laddr, m->id.idiag_src, sizeof s->laddr);
      memcpy(&s->raddr, m->id.idiag_dst, sizeof s->raddr);
      s->timer = m->idiag_timer;
      s->expires_ms = m->idiag_expires;
      s->retrans = m->idiag_retrans;
      s->rqueue = m->idiag_rqueue;
      s->wqueue = m->idiag_wqueue;
      s->uid = m->idiag_uid;
      s->inode = m->idiag_inode;
    }
  }
out:
  close(fd);
  return rc < 0 ? rc : found;
}

int lw_diag_query(int family, uint16_t port, lw_diag_sock *out, int max) {
  if (max < 0 || (max > 0 && !out))
    return -EINVAL;
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
    return -EAFNOSUPPORT;
  int total = 0;
  if (family == AF_UNSPEC || family == AF_INET) {
    int r = lw_diag_dump_family(AF_INET, port, out, max, 0);
    if (r < 0)
      return r;
    total += r;
  }
  if (family == AF_UNSPEC || family == AF_INET6) {
    int r = lw_diag_dump_family(AF_INET6, port, out, max, total);
    if (r < 0 && family == AF_INET6)
      return r;
    if (r > 0) /* a kernel without IPv6 is not an error for AF_UNSPEC */
      total += r;
  }
  return total;
}
#endif
