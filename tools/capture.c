/*
 * capture.c - libpcap capture thread and TCP header parser; see capture.h.
 *
 * On Linux "lo" every segment is seen exactly once by a packet socket (it is delivered
 * to taps on transmit, tagged PACKET_OUTGOING, and loopback_xmit's receive copy is
 * not delivered again), so no de-duplication is needed; the lab's own checks verify it
 * (no two segments with the same direction, seq, flags and length in a clean exchange).
 */
#include "capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef LW_NO_PCAP
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <pcap/pcap.h>

struct lw_cap {
  pcap_t *p;
  pcap_dumper_t *dump;
  pthread_t thr;
  int running; /* set by lw_cap_start, cleared to ask the thread to stop */
  pthread_mutex_t mu;
  uint16_t server_port;
  double t0_ms;
  int linktype;
  lw_cap_seg *segs;
  size_t nsegs, cap;
  int oom;
};
#define LW_CAP_SNAPLEN 262144 /* libpcap's MAXIMUM_SNAPLEN */
#else
/* The link types lw_cap_parse knows (pcap/dlt.h), for a build without libpcap. */
#define DLT_NULL 0
#define DLT_EN10MB 1
#define DLT_RAW 12
#define DLT_LINUX_SLL 113
#endif

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int lw_cap_parse(const uint8_t *pkt, size_t caplen, int linktype, lw_cap_seg *seg) {
  size_t off;
  uint16_t ethertype;
  if (linktype == DLT_EN10MB) {
    if (caplen < 14)
      return -1;
    ethertype = rd16(pkt + 12);
    off = 14;
  } else if (linktype == DLT_LINUX_SLL) {
    if (caplen < 16)
      return -1;
    ethertype = rd16(pkt + 14);
    off = 16;
  } else if (linktype == DLT_NULL || linktype == DLT_RAW) {
    off = linktype == DLT_NULL ? 4 : 0;
    if (caplen < off + 1)
      return -1;
    ethertype = (pkt[off] >> 4) == 6 ? 0x86dd : 0x0800;
  } else {
    return -1;
  }
  size_t ip_payload_len, l4;
  if (ethertype == 0x0800) {
    if (caplen < off + 20 || (pkt[off] >> 4) != 4)
      return -1;
    size_t ihl = (size_t)(pkt[off] & 0x0f) * 4;
    size_t tot = rd16(pkt + off + 2);
    if (ihl < 20 || tot < ihl || pkt[off + 9] != 6 /* TCP */)
      return -1;
    ip_payload_len = tot - ihl;
    l4 = off + ihl;
  } else if (ethertype == 0x86dd) {
    /* Extension headers are not walked: the lab's own traffic never carries any. */
    if (caplen < off + 40 || (pkt[off] >> 4) != 6 || pkt[off + 6] != 6)
      return -1;
    ip_payload_len = rd16(pkt + off + 4);
    l4 = off + 40;
  } else {
    return -1;
  }
  if (caplen < l4 + 20)
    return -1;
  const uint8_t *t = pkt + l4;
  size_t doff = (size_t)(t[12] >> 4) * 4;
  if (doff < 20 || doff > ip_payload_len)
    return -1;
  memset(seg, 0, sizeof *seg);
  seg->sport = rd16(t);
  seg->dport = rd16(t + 2);
  seg->seq = rd32(t + 4);
  seg->ack = rd32(t + 8);
  seg->flags = t[13] & 0x3f;
  seg->win = rd16(t + 14);
  seg->len = (uint32_t)(ip_payload_len - doff);
  return 0;
}

#ifndef LW_NO_PCAP
static void lw_cap_on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
  lw_cap *c = (lw_cap *)user;
  if (c->dump)
    pcap_dump((u_char *)c->dump, h, bytes);
  lw_cap_seg s;
  if (lw_cap_parse(bytes, h->caplen, c->linktype, &s) != 0)
    return;
  s.dir = s.sport == c->server_port ? LW_DIR_S2C : LW_DIR_C2S;
  s.t_ms = (double)h->ts.tv_sec * 1e3 + (double)h->ts.tv_usec / 1e3 - c->t0_ms;
  pthread_mutex_lock(&c->mu);
  if (c->nsegs == c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 256;
    lw_cap_seg *n = ncap <= 1u << 20 ? realloc(c->segs, ncap * sizeof *n) : NULL;
    if (!n) {
      c->oom = 1;
      pthread_mutex_unlock(&c->mu);
      return;
    }
    c->segs = n;
    c->cap = ncap;
  }
  c->segs[c->nsegs++] = s;
  pthread_mutex_unlock(&c->mu);
}

static void *lw_cap_thread(void *arg) {
  lw_cap *c = arg;
  int fd = pcap_get_selectable_fd(c->p);
  for (;;) {
    pthread_mutex_lock(&c->mu);
    int run = c->running;
    pthread_mutex_unlock(&c->mu);
    /* Poll with a short timeout so a stop request is seen within 20 ms. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, 20);
    if (r > 0)
      pcap_dispatch(c->p, -1, lw_cap_on_packet, (u_char *)c);
    else if (!run)
      break; /* stop requested and nothing more pending */
  }
  return NULL;
}

lw_cap *lw_cap_start(const char *ifname, uint16_t server_port, double t0_real_ms, void *dump,
                     char *err, size_t errlen) {
  char ebuf[PCAP_ERRBUF_SIZE] = "";
  char filter[64];
  struct bpf_program prog;
  int have_prog = 0;
  lw_cap *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&c->mu, NULL);
  c->server_port = server_port;
  c->t0_ms = t0_real_ms;
  c->dump = dump;
  c->p = pcap_create(ifname, ebuf);
  if (!c->p) {
    snprintf(err, errlen, "pcap_create(%s): %s", ifname, ebuf);
    goto fail;
  }
  /* Immediate mode: deliver each packet at once instead of waiting for a full buffer
   * (TPACKET_V3 blocks otherwise wait for the buffer timeout). */
  pcap_set_immediate_mode(c->p, 1);
  /* The whole frame: lo's MTU is 65536, and a pcap file with payloads cut at a few hundred
   * bytes cannot be dissected (Wireshark shows "[Packet size limited during capture]"). */
  pcap_set_snaplen(c->p, LW_CAP_SNAPLEN);
  /* Full frames on lo are up to 64 KiB: 32 MiB of buffer holds a burst of ~500 of them
   * (the RST-loss workload's 4 MiB) while the thread catches up. */
  pcap_set_buffer_size(c->p, 32 << 20);
  int ar = pcap_activate(c->p);
  if (ar < 0) {
    snprintf(err, errlen, "pcap_activate(%s): %s", ifname, pcap_geterr(c->p));
    goto fail;
  }
  c->linktype = pcap_datalink(c->p);
  snprintf(filter, sizeof filter, "tcp port %u", (unsigned)server_port);
  if (pcap_compile(c->p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
    snprintf(err, errlen, "pcap_compile: %s", pcap_geterr(c->p));
    goto fail;
  }
  have_prog = 1;
  if (pcap_setfilter(c->p, &prog) < 0) {
    snprintf(err, errlen, "pcap_setfilter: %s", pcap_geterr(c->p));
    goto fail;
  }
  pcap_freecode(&prog);
  have_prog = 0;
  if (pcap_setnonblock(c->p, 1, ebuf) < 0) {
    snprintf(err, errlen, "pcap_setnonblock: %s", ebuf);
    goto fail;
  }
  c->running = 1;
  if (pthread_create(&c->thr, NULL, lw_cap_thread, c) != 0) {
    snprintf(err, errlen, "pthread_create failed");
    goto fail;
  }
  return c;
fail:
  if (have_prog)
    pcap_freecode(&prog);
  if (c->p)
    pcap_close(c->p);
  pthread_mutex_destroy(&c->mu);
  free(c);
  return NULL;
}

const lw_cap_seg *lw_cap_stop(lw_cap *c, size_t *n) {
  /* Segments still in flight (e.g. the ACK of a FIN) reach the tap within
   * microseconds on lo; 30 ms of grace is plenty and keeps the lab fast. */
  struct timespec ts = {0, 30 * 1000 * 1000};
  nanosleep(&ts, NULL);
  pthread_mutex_lock(&c->mu);
  c->running = 0;
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->thr, NULL);
  *n = c->nsegs;
  return c->segs;
}

void lw_cap_free(lw_cap *c) {
  if (!c)
    return;
  if (c->p)
    pcap_close(c->p);
  pthread_mutex_destroy(&c->mu);
  free(c->segs);
  free(c);
}

void *lw_cap_dump_open(const char *path, char *err, size_t errlen) {
  /* A dead handle with the link type of lo (Ethernet header on Linux) lets the file be
   * opened before any scenario, and in a namespace-independent way. */
  pcap_t *dead = pcap_open_dead(DLT_EN10MB, LW_CAP_SNAPLEN);
  if (!dead) {
    snprintf(err, errlen, "pcap_open_dead failed");
    return NULL;
  }
  pcap_dumper_t *d = pcap_dump_open(dead, path);
  if (!d)
    snprintf(err, errlen, "%s: %s", path, pcap_geterr(dead));
  pcap_close(dead);
  return d;
}

int lw_cap_dump_close(void *dump) {
  int rc = 0;
  if (dump) {
    /* A write error (a full disk) shows at the flush or in the stream's error flag. */
    if (pcap_dump_flush(dump) < 0 || ferror(pcap_dump_file(dump)))
      rc = -1;
    pcap_dump_close(dump);
  }
  return rc;
}

#else
/* Built without libpcap (the Windows build: Npcap is not linked). Every start fails with
 * the reason; the lab then reports packet-level predictions as not observed. */
struct lw_cap {
  int unused;
};

lw_cap *lw_cap_start(const char *ifname, uint16_t server_port, double t0_real_ms, void *dump,
                     char *err, size_t errlen) {
  (void)ifname, (void)server_port, (void)t0_real_ms, (void)dump;
  snprintf(err, errlen, "%s", LW_CAP_NONE);
  return NULL;
}

const lw_cap_seg *lw_cap_stop(lw_cap *cap, size_t *n) {
  (void)cap;
  *n = 0;
  return NULL;
}

void lw_cap_free(lw_cap *cap) { (void)cap; }

void *lw_cap_dump_open(const char *path, char *err, size_t errlen) {
  (void)path;
  snprintf(err, errlen, "%s", LW_CAP_NONE);
  return NULL;
}

int lw_cap_dump_close(void *dump) {
  (void)dump;
  return 0;
}
#endif

void lw_cap_mark_retrans(lw_cap_seg *segs, size_t n) {
  /* One high-water mark per sender (source and destination port); a capture holds few
   * flows, so a small table searched linearly is enough. */
  enum { LW_FLOWS = 256 };
  struct {
    uint16_t sport, dport;
    uint32_t high;
  } fl[LW_FLOWS];
  size_t nfl = 0;
  for (size_t i = 0; i < n; i++) {
    lw_cap_seg *g = &segs[i];
    g->retrans = 0;
    uint32_t span = g->len + !!(g->flags & LW_TH_SYN) + !!(g->flags & LW_TH_FIN);
    if (span == 0 || (g->flags & LW_TH_RST))
      continue;
    uint32_t end = g->seq + span;
    size_t k = 0;
    while (k < nfl && !(fl[k].sport == g->sport && fl[k].dport == g->dport))
      k++;
    if (k == nfl) {
      if (nfl == LW_FLOWS)
        continue; /* too many flows to track: leave unmarked rather than guess */
      fl[nfl].sport = g->sport, fl[nfl].dport = g->dport, fl[nfl].high = end;
      nfl++;
      continue;
    }
    /* Sequence numbers wrap: compare as a signed 32-bit distance (RFC 793 arithmetic). */
    if ((int32_t)(end - fl[k].high) <= 0)
      g->retrans = 1;
    else
      fl[k].high = end;
  }
}

const char *lw_cap_flags_str(uint8_t flags, char *buf, size_t len) {
  static const struct {
    uint8_t bit;
    const char *name;
  } names[] = {{LW_TH_SYN, "SYN"}, {LW_TH_FIN, "FIN"}, {LW_TH_RST, "RST"},
               {LW_TH_PSH, "PSH"}, {LW_TH_ACK, "ACK"}, {LW_TH_URG, "URG"}};
  size_t o = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(flags & names[i].bit))
      continue;
    int w = snprintf(buf + o, len - o, "%s%s", o ? " " : "", names[i].name);
    if (w < 0 || (size_t)w >= len - o)
      break;
    o += (size_t)w;
  }
  return buf;
}
