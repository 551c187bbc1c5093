/*
 * capture.h - libpcap capture of one scenario's TCP segments on the loopback.
 *
 * A capture is opened on "lo" of the calling thread's network namespace (the pcap
 * socket belongs to the namespace it is created in), filtered to one TCP port, in
 * immediate mode so segments are delivered as they happen. A background thread reads
 * them; lw_cap_stop() joins it and leaves a parsed list of segments.
 */
#ifndef LW_CAPTURE_H
#define LW_CAPTURE_H

#include <stdint.h>
#include <stddef.h>

enum {
  LW_TH_FIN = 0x01,
  LW_TH_SYN = 0x02,
  LW_TH_RST = 0x04,
  LW_TH_PSH = 0x08,
  LW_TH_ACK = 0x10,
  LW_TH_URG = 0x20
};

enum { LW_DIR_C2S = 0, LW_DIR_S2C = 1 };

typedef struct lw_cap_seg {
  double t_ms;   /* from lw_cap_start()'s t0 (CLOCK_REALTIME, as pcap stamps are) */
  int dir;       /* LW_DIR_C2S: from a port other than the server port */
  uint8_t flags; /* LW_TH_* */
  uint32_t seq, ack;
  uint32_t len; /* TCP payload bytes (from the IP lengths, not the snap length) */
  uint16_t sport, dport;
  uint32_t win;
  uint8_t retrans; /* set by lw_cap_mark_retrans: carries no sequence space not sent before */
} lw_cap_seg;

typedef struct lw_cap lw_cap;

/*
 * Starts capturing TCP segments to or from `server_port` on `ifname`. `t0_real_ms`
 * is the scenario's origin on CLOCK_REALTIME in ms. `dump` (may be NULL) is a
 * pcap_dumper_t* opened by the caller to receive every packet. On failure returns NULL
 * and writes a reason to err.
 */
lw_cap *lw_cap_start(const char *ifname, uint16_t server_port, double t0_real_ms, void *dump,
                     char *err, size_t errlen);
/* Stops after letting in-flight segments arrive, returns the segments (owned by cap). */
const lw_cap_seg *lw_cap_stop(lw_cap *cap, size_t *n);
void lw_cap_free(lw_cap *cap);

/* Opens a pcap file for everything captured (linktype of "lo": DLT_EN10MB). */
void *lw_cap_dump_open(const char *path, char *err, size_t errlen);
/* 0, or -1 when writing the file failed (a full disk). */
int lw_cap_dump_close(void *dump);

#ifdef LW_NO_PCAP
/* Why there is no capture in a build without libpcap (Windows: no Npcap linked). */
#define LW_CAP_NONE "no capture (Npcap not linked)"
#endif

/*
 * Marks the retransmissions among n segments in capture order: a segment whose data (or
 * SYN/FIN) ends at or before the highest sequence number already seen from the same
 * sender (same ports) carries nothing new. Bare ACKs and zero-window probes (no sequence
 * space) are never marked. Lets reports count new data once (a peer that vanished makes
 * the sender retransmit the same bytes several times).
 */
void lw_cap_mark_retrans(lw_cap_seg *segs, size_t n);

/* "SYN ACK", "FIN ACK", "RST" ... into buf. */
const char *lw_cap_flags_str(uint8_t flags, char *buf, size_t len);

/* Parses one link-layer frame (Ethernet, as on lo, or Linux cooked) into seg;
 * returns 0 when it is IPv4/IPv6 + TCP. Exposed for tests. */
int lw_cap_parse(const uint8_t *pkt, size_t caplen, int linktype, lw_cap_seg *seg);

#endif
