/*
 * report.c - human and JSON output of the lab.
 *
 * Human output: one block per claim, with one merged timeline per scenario where the
 * application's calls and the captured segments are sorted by time (both clocks are
 * CLOCK_REALTIME, as pcap stamps are), so a reader sees which call put which segment on
 * the wire. Runs of plain data/ACK segments are summarised to keep blocks short; the
 * pcap file (--pcap) has every one of them.
 *
 * JSON output: one object per claim per line; field names are documented in
 * tools/README-lab.md and are stable.
 */
#include "lab.h"
#include "../sockdiag.h"

#include <string.h>

static const char *const lw_verdict_names[LW_V__COUNT] = {
    "HOLDS", "WINDOWS-ONLY", "CONTRADICTED", "NOT-TESTABLE", "SKIPPED", "NEEDS-CAPTURE"};
static const char *const lw_verdict_colors[LW_V__COUNT] = {
    "\033[1;32m", "\033[1;33m", "\033[1;31m", "\033[1;36m", "\033[2m", "\033[1;35m"};

const char *lw_lab_verdict_name(lw_lab_verdict v) { return lw_verdict_names[v]; }

#define C(o, code) ((o)->color ? (code) : "")
#define RESET(o) C(o, "\033[0m")
#define DIM(o) C(o, "\033[2m")
#define BOLD(o) C(o, "\033[1m")

static void lw_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch == '\n')
      fputs("\\n", f);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static const char *lw_side_word(lw_lab_side s) {
  return s == LW_SIDE_CLIENT ? "client" : s == LW_SIDE_SERVER ? "server" : "lab";
}

static int lw_seg_plain(const lw_cap_seg *g) {
  return !(g->flags & (LW_TH_SYN | LW_TH_FIN | LW_TH_RST));
}

static void lw_print_seg(const lw_lab_opts *o, const lw_cap_seg *g) {
  char fl[32];
  lw_cap_flags_str(g->flags, fl, sizeof fl);
  const char *col = g->flags & LW_TH_RST                 ? C(o, "\033[31m")
                    : g->flags & (LW_TH_FIN | LW_TH_SYN) ? C(o, "\033[36m")
                                                         : "";
  if (g->dir == LW_DIR_C2S)
    fprintf(o->out, "  %9.3f          client → %s%-12s%s", g->t_ms, col, fl, RESET(o));
  else
    fprintf(o->out, "  %9.3f          client ← %s%-12s%s", g->t_ms, col, fl, RESET(o));
  if (g->len)
    fprintf(o->out, " %s%u bytes%s", DIM(o), g->len, RESET(o));
  if (g->retrans)
    fprintf(o->out, " %s(retransmission)%s", C(o, "\033[33m"), RESET(o));
  fputc('\n', o->out);
}

/* Prints the segments [a, b) all plain: individually if few, else as a summary. */
static void lw_print_plain_run(const lw_lab_opts *o, const lw_cap_seg *s, size_t a, size_t b) {
  if (b - a <= 3) {
    for (size_t i = a; i < b; i++)
      lw_print_seg(o, &s[i]);
    return;
  }
  /* New data and retransmissions apart: a retransmitted segment carries bytes already
   * counted, and summing it again would overstate what was sent. */
  unsigned long n[2] = {0, 0}, rn[2] = {0, 0};
  unsigned long long bytes[2] = {0, 0}, rbytes[2] = {0, 0};
  for (size_t i = a; i < b; i++) {
    if (s[i].retrans) {
      rn[s[i].dir]++;
      rbytes[s[i].dir] += s[i].len;
    } else {
      n[s[i].dir]++;
      bytes[s[i].dir] += s[i].len;
    }
  }
  fprintf(o->out, "  %9.3f          %s… until %.3f:", s[a].t_ms, DIM(o), s[b - 1].t_ms);
  for (int d = 0; d < 2; d++) {
    fprintf(o->out, "%s client %s %lu segments (%llu bytes)", d ? "," : "", d ? "←" : "→", n[d],
            bytes[d]);
    if (rn[d])
      fprintf(o->out, " + %lu retransmissions (%llu bytes again)", rn[d], rbytes[d]);
  }
  fprintf(o->out, "%s\n", RESET(o));
}

static void lw_print_timeline(const lw_lab_opts *o, const lw_lab_result *r) {
  size_t si = 0;
  int ci = 0, ki = 0;
  /* Merge three time-sorted streams: calls, segments, state snapshots. */
  for (;;) {
    double tc = ci < r->ncalls ? r->calls[ci].t_ms : 1e300;
    double ts = si < r->nsegs ? r->segs[si].t_ms : 1e300;
    double tk = ki < r->nstates ? r->states[ki].t_ms : 1e300;
    if (tc == 1e300 && ts == 1e300 && tk == 1e300)
      break;
    if (ts <= tc && ts <= tk) {
      size_t e = si;
      while (e < r->nsegs && lw_seg_plain(&r->segs[e]) &&
             (ci >= r->ncalls || r->segs[e].t_ms < r->calls[ci].t_ms) &&
             (ki >= r->nstates || r->segs[e].t_ms < r->states[ki].t_ms))
        e++;
      if (e > si) {
        lw_print_plain_run(o, r->segs, si, e);
        si = e;
      } else {
        lw_print_seg(o, &r->segs[si++]);
      }
    } else if (tk <= tc) {
      int n = (ki + 1 < r->nstates && r->states[ki + 1].t_ms == tk) ? 2 : 1;
      fprintf(o->out, "  %9.3f  %sstate%s   ", tk, BOLD(o), RESET(o));
      for (int k = ki; k < ki + n; k++) {
        const lw_lab_state *st = &r->states[k];
        fprintf(o->out, "%s%s %s%s%s", k > ki ? " · " : "", lw_side_word(st->side),
                st->state == LW_DIAG_STATE_NONE ? "" : C(o, "\033[1m"),
                lw_diag_state_name(st->state), RESET(o));
        if (st->timer)
          fprintf(o->out, " (%s %.1f s)", lw_diag_timer_name(st->timer),
                  st->expires_ms / 1000.0);
      }
      fputc('\n', o->out);
      ki += n;
    } else {
      const lw_lab_call *c = &r->calls[ci++];
      fprintf(o->out, "  %9.3f  %-6s  %s\n", c->t_ms, lw_side_word(c->side), c->text);
    }
  }
}

static void lw_human_claim(const lw_lab_opts *o, const lw_lab_claim *c, lw_lab_verdict v,
                           const lw_lab_result *rs, int nr, const char *note) {
  FILE *f = o->out;
  fprintf(f, "\n%s%-4s%s %s%-13s%s %s\n", BOLD(o), c->id, RESET(o), C(o, lw_verdict_colors[v]),
          lw_verdict_names[v], RESET(o), c->seed);
  for (int i = 0; i < nr; i++) {
    const lw_lab_result *r = &rs[i];
    fprintf(f, "  %s── %s%s: %s", DIM(o), r->sc->name, RESET(o), r->sc->title);
    if (r->port)
      fprintf(f, "  %s(port %u%s)%s", DIM(o), r->port, r->sc->netns ? ", own netns" : "",
              RESET(o));
    fputc('\n', f);
    if (r->skipped || r->lab_error) {
      fprintf(f, "  %s%s: %s%s\n", C(o, "\033[33m"), r->skipped ? "skipped" : "lab error",
              r->note, RESET(o));
      continue;
    }
    if (r->ncalls || r->nsegs)
      fprintf(f, "  %s%9s  %-6s  %s%s\n", DIM(o), "t (ms)", "who", "call = result / segment",
              RESET(o));
    lw_print_timeline(o, r);
    if (!r->captured)
      fprintf(f, "  %s(no capture%s%s)%s\n", DIM(o), r->note[0] ? ": " : "", r->note, RESET(o));
    else if (!r->nsegs)
      fprintf(f, "  %s(captured: no segment on port %u)%s\n", DIM(o), r->port, RESET(o));
    for (int k = 0; k < r->nchecks; k++) {
      const lw_lab_check *ck = &r->checks[k];
      const char *mark = ck->res == LW_RES_PASS ? "✔" : ck->res == LW_RES_FAIL ? "✘" : "·";
      const char *col = ck->res == LW_RES_PASS   ? C(o, "\033[32m")
                        : ck->res == LW_RES_FAIL ? C(o, "\033[31m")
                                                 : DIM(o);
      fprintf(f, "  %s%s%s seed predicts %-40s %shere: %s%s\n", col, mark, RESET(o),
              ck->exp->text, DIM(o), ck->got, RESET(o));
    }
    if (r->sc->nexpects == 0)
      fprintf(f, "  %s(shown for information; no prediction)%s\n", DIM(o), RESET(o));
  }
  if (note && *note)
    fprintf(f, "  %s→%s %s\n", C(o, lw_verdict_colors[v]), RESET(o), note);
}

static void lw_json_claim(const lw_lab_opts *o, const lw_lab_claim *c, lw_lab_verdict v,
                          const lw_lab_result *rs, int nr, const char *note) {
  FILE *f = o->out;
  fputs("{\"id\":", f);
  lw_json_str(f, c->id);
  fputs(",\"seed\":", f);
  lw_json_str(f, c->seed);
  fputs(",\"verdict\":", f);
  lw_json_str(f, lw_verdict_names[v]);
  fputs(",\"notes\":", f);
  lw_json_str(f, note ? note : "");
  fputs(",\"scenarios\":[", f);
  for (int i = 0; i < nr; i++) {
    const lw_lab_result *r = &rs[i];
    fprintf(f, "%s{\"name\":", i ? "," : "");
    lw_json_str(f, r->sc->name);
    fputs(",\"title\":", f);
    lw_json_str(f, r->sc->title);
    /* "captured": segments were captured; "capture_ran": the capture was on (a scenario
     * with no traffic has it on and captured nothing). */
    fprintf(f,
            ",\"port\":%u,\"netns\":%s,\"captured\":%s,\"capture_ran\":%s,\"skipped\":%s,"
            "\"note\":",
            r->port, r->sc->netns ? "true" : "false",
            r->captured && r->nsegs ? "true" : "false", r->captured ? "true" : "false",
            r->skipped ? "true" : "false");
    lw_json_str(f, r->note);
    fprintf(f, ",\"bytes_sent\":{\"client\":%lld,\"server\":%lld}}", r->sent[0], r->sent[1]);
  }
  fputs("],\"calls\":[", f);
  int first = 1;
  for (int i = 0; i < nr; i++)
    for (int k = 0; k < rs[i].ncalls; k++) {
      const lw_lab_call *cl = &rs[i].calls[k];
      fprintf(f, "%s{\"scenario\":", first ? "" : ",");
      first = 0;
      lw_json_str(f, rs[i].sc->name);
      fprintf(f,
              ",\"t_ms\":%.3f,\"side\":\"%s\",\"call\":\"%s\",\"ret\":%ld,\"errno\":\"%s\","
              "\"ms\":%.3f,\"bytes\":%lld,\"v1\":%ld,\"v2\":%ld,\"text\":",
              cl->t_ms, lw_side_word(cl->side),
              cl->op == LW_OP_JOIN ? "recv_thread" : lw_lab_op_name(cl->op), cl->ret,
              cl->err ? lw_lab_errno_name(cl->err) : "", cl->ms, cl->bytes, cl->v1, cl->v2);
      lw_json_str(f, cl->text);
      fputc('}', f);
    }
  fputs("],\"segments\":[", f);
  first = 1;
  for (int i = 0; i < nr; i++)
    for (size_t k = 0; k < rs[i].nsegs; k++) {
      const lw_cap_seg *g = &rs[i].segs[k];
      char fl[32];
      fprintf(f, "%s{\"scenario\":", first ? "" : ",");
      first = 0;
      lw_json_str(f, rs[i].sc->name);
      fprintf(f,
              ",\"t_ms\":%.3f,\"from\":\"%s\",\"flags\":\"%s\",\"seq\":%u,\"ack\":%u,"
              "\"len\":%u,\"retrans\":%s}",
              g->t_ms, g->dir == LW_DIR_C2S ? "client" : "server",
              lw_cap_flags_str(g->flags, fl, sizeof fl), g->seq, g->ack, g->len,
              g->retrans ? "true" : "false");
    }
  fputs("],\"states\":[", f);
  first = 1;
  for (int i = 0; i < nr; i++)
    for (int k = 0; k < rs[i].nstates; k++) {
      const lw_lab_state *st = &rs[i].states[k];
      fprintf(f, "%s{\"scenario\":", first ? "" : ",");
      first = 0;
      lw_json_str(f, rs[i].sc->name);
      fprintf(f,
              ",\"t_ms\":%.3f,\"side\":\"%s\",\"state\":\"%s\",\"timer\":\"%s\","
              "\"expires_ms\":%u}",
              st->t_ms, lw_side_word(st->side), lw_diag_state_name(st->state),
              lw_diag_timer_name(st->timer), st->expires_ms);
    }
  fputs("],\"checks\":[", f);
  first = 1;
  for (int i = 0; i < nr; i++)
    for (int k = 0; k < rs[i].nchecks; k++) {
      const lw_lab_check *ck = &rs[i].checks[k];
      fprintf(f, "%s{\"scenario\":", first ? "" : ",");
      first = 0;
      lw_json_str(f, rs[i].sc->name);
      fputs(",\"expect\":", f);
      lw_json_str(f, ck->exp->text);
      fprintf(f, ",\"result\":\"%s\",\"observed\":",
              ck->res == LW_RES_PASS   ? "pass"
              : ck->res == LW_RES_FAIL ? "fail"
                                       : "skip");
      lw_json_str(f, ck->got);
      fputc('}', f);
    }
  fputs("]}\n", f);
}

void lw_lab_report_claim(const lw_lab_opts *o, const lw_lab_claim *c, lw_lab_verdict v,
                         const lw_lab_result *rs, int nr, const char *note) {
  if (o->json)
    lw_json_claim(o, c, v, rs, nr, note);
  else
    lw_human_claim(o, c, v, rs, nr, note);
  fflush(o->out);
}

void lw_lab_report_summary(const lw_lab_opts *o, const int counts[LW_V__COUNT], int nclaims) {
  if (o->json) {
    fprintf(o->out,
            "{\"summary\":{\"claims\":%d,\"held\":%d,\"windows_only\":%d,"
            "\"contradicted\":%d,\"not_testable\":%d,\"skipped\":%d,\"needs_capture\":%d}}\n",
            nclaims, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
    return;
  }
  FILE *f = o->out;
  fprintf(f, "\n%sSummary%s (%d claims)\n", BOLD(o), RESET(o), nclaims);
  fprintf(f, "  ┌──────────────────────┬───────┐\n");
  static const char *const labels[LW_V__COUNT] = {
      "held",    "Windows-only", "contradicted here", "not testable here",
      "skipped", "needs capture"};
  for (int i = 0; i < LW_V__COUNT; i++) {
#ifdef _WIN32
    if (i == LW_V_WINDOWS_ONLY)
      continue; /* on Windows a seed claim that fails is contradicted here */
#endif
    if (i == LW_V_NEEDS_CAPTURE && counts[i] == 0)
      continue; /* only without a capture */
    fprintf(f, "  │ %s%-20s%s │ %5d │\n", C(o, lw_verdict_colors[i]), labels[i], RESET(o),
            counts[i]);
  }
  fprintf(f, "  └──────────────────────┴───────┘\n");
}
