/*
 * lab.c - `lastword lab`: loads the scenarios (built-in or --script), runs them claim by
 * claim, decides each verdict from the checks, prints the report and the summary, then
 * the RST-loss comparison.
 *
 * Exit status: 0 when the lab ran (whatever the verdicts), 1 when the lab itself failed
 * (no socket, no listener), 2 on bad usage or an unreadable/invalid script.
 *
 * Windows (_WIN32): no capture (Npcap is not linked: packet-level predictions are not
 * observed, and a claim with nothing else to check is NEEDS-CAPTURE), no network
 * namespaces, and a failed seed prediction is CONTRADICTED: the seeds describe Winsock,
 * so on Windows nothing is "Windows-only". Under Wine the TCP stack is the host's (Linux):
 * the lab says so before anything else.
 */
#include "lab.h"

#include <errno.h>
#include <getopt.h>
#ifndef LW_NO_PCAP
#include <pcap/pcap.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void lw_lab_usage(FILE *f) {
  fputs("usage: lastword lab [--list] [--only ID[,ID...]] [--json] [--pcap FILE]\n"
        "                    [--no-color] [--script FILE] [--backend epoll|uring]\n"
        "  Runs every claim of the seed documents on real sockets (127.0.0.1; a private\n"
        "  network namespace where a peer must vanish) and prints what happened.\n"
        "  --list          list the claims and their scenarios, run nothing\n"
        "  --only IDS      run only these claims (or scenario names); 'rstloss' = the\n"
        "                  comparison section only\n"
        "  --json          one JSON object per claim per line (tools/README-lab.md)\n"
        "  --pcap FILE     write every captured packet to FILE (open it in Wireshark)\n"
        "  --no-color      no ANSI colors even on a terminal\n"
        "  --script FILE   run the scenarios of FILE instead of the built-in ones\n"
        "  --backend NAME  event loop backend for the lw_close row (epoll, uring)\n",
        f);
}

/* Matches `id` against a comma-separated list. */
static int lw_in_list(const char *list, const char *id) {
  if (!list)
    return 1;
  size_t n = strlen(id);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == n && strncasecmp(p, id, n) == 0)
      return 1;
    if (!e)
      break;
    p = e + 1;
  }
  return 0;
}

static char *lw_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0)
      break;
    if (n == cap) {
      if (cap >= (8u << 20)) { /* a scenario file has no business being this big */
        free(buf);
        buf = NULL;
        errno = EFBIG;
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

static int lw_capture_probe(char *why, size_t len) {
#ifdef LW_NO_PCAP
  snprintf(why, len, "%s", LW_CAP_NONE);
  return 0;
#else
  char eb[PCAP_ERRBUF_SIZE] = "";
  pcap_t *p = pcap_create("lo", eb);
  if (!p) {
    snprintf(why, len, "%s", eb);
    return 0;
  }
  int rc = pcap_activate(p);
  if (rc < 0)
    snprintf(why, len, "%s", pcap_geterr(p));
  pcap_close(p);
  return rc >= 0;
#endif
}

/* Builds the note shown under a verdict: the failed predictions, then the reason. */
static void lw_lab_note(const lw_lab_claim *c, lw_lab_verdict v, const lw_lab_result *rs,
                        int nr, char *note, size_t len) {
  size_t o = 0;
  note[0] = 0;
#define ADD(...)                                                                               \
  do {                                                                                         \
    if (o < len) {                                                                             \
      int w_ = snprintf(note + o, len - o, __VA_ARGS__);                                       \
      if (w_ > 0)                                                                              \
        o += (size_t)w_;                                                                       \
    }                                                                                          \
  } while (0)
  if (v == LW_V_SKIPPED) {
    for (int i = 0; i < nr; i++)
      if (rs[i].skipped) {
        ADD("skipped: %s", rs[i].note);
        break;
      }
    return;
  }
  if (v != LW_V_HOLDS && v != LW_V_NOT_TESTABLE) {
    int shown = 0;
    for (int i = 0; i < nr && shown < 3; i++)
      for (int k = 0; k < rs[i].nchecks && shown < 3; k++)
        if (rs[i].checks[k].res == LW_RES_FAIL) {
          ADD("%s%s: seed predicts \"%s\", here: %s", shown ? "; " : "", rs[i].sc->name,
              rs[i].checks[k].exp->text, rs[i].checks[k].got);
          shown++;
        }
    if (shown && c->why)
      ADD(". ");
  }
  if (c->why && v != LW_V_HOLDS)
    ADD("%s", c->why);
  int unseen = 0;
  for (int i = 0; i < nr; i++)
    for (int k = 0; k < rs[i].nchecks; k++)
      unseen += rs[i].checks[k].res == LW_RES_SKIP;
  if (unseen && v == LW_V_NEEDS_CAPTURE)
    ADD("%severy prediction is about segments on the wire (FIN/RST seen), and nothing was "
        "captured here: run it where packets can be captured",
        o ? " " : "");
  else if (unseen && v != LW_V_NOT_TESTABLE)
    ADD("%s(%d prediction%s not observed: no capture)", o ? " " : "", unseen,
        unseen > 1 ? "s" : "");
  for (int i = 0; i < nr; i++)
    if (rs[i].skipped && v != LW_V_SKIPPED) {
      ADD("%s(%s skipped: %s)", o ? " " : "", rs[i].sc->name, rs[i].note);
      break;
    }
#undef ADD
}

static lw_lab_verdict lw_lab_verdict_of(const lw_lab_claim *c, const lw_lab_result *rs,
                                        int nr) {
  if (c->if_not == LW_V_NOT_TESTABLE || nr == 0)
    return LW_V_NOT_TESTABLE;
  int ran = 0, failed = 0, passed = 0, unseen = 0;
  for (int i = 0; i < nr; i++) {
    if (rs[i].skipped || rs[i].lab_error)
      continue;
    ran++;
    for (int k = 0; k < rs[i].nchecks; k++) {
      failed += rs[i].checks[k].res == LW_RES_FAIL;
      passed += rs[i].checks[k].res == LW_RES_PASS;
      unseen += rs[i].checks[k].res == LW_RES_SKIP;
    }
  }
  if (!ran)
    return LW_V_SKIPPED;
  if (failed)
    return c->if_not;
  /* Nothing observed either way: the only evidence was on the wire, not captured. */
  return passed || !unseen ? LW_V_HOLDS : LW_V_NEEDS_CAPTURE;
}

static void lw_progress(const lw_lab_opts *o, int i, int n, const char *what) {
  if (!o->progress)
    return;
  if (what)
    fprintf(stderr, "\r\033[K[%2d/%d] running %s …", i, n, what);
  else
    fputs("\r\033[K", stderr);
  fflush(stderr);
}

int lw_lab_main(int argc, char **argv) {
  const char *only = NULL, *pcap_path = NULL, *script = NULL;
  int list = 0, json = 0, nocolor = 0, rc = 0;
  static const struct option longopts[] = {{"list", no_argument, NULL, 'l'},
                                           {"only", required_argument, NULL, 'o'},
                                           {"json", no_argument, NULL, 'j'},
                                           {"pcap", required_argument, NULL, 'p'},
                                           {"no-color", no_argument, NULL, 'n'},
                                           {"script", required_argument, NULL, 's'},
                                           {"backend", required_argument, NULL, 'b'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "lo:jp:ns:b:h", longopts, NULL)) != -1;) {
    switch (ch) {
    case 'l':
      list = 1;
      break;
    case 'o':
      only = optarg;
      break;
    case 'j':
      json = 1;
      break;
    case 'p':
      pcap_path = optarg;
      break;
    case 'n':
      nocolor = 1;
      break;
    case 's':
      script = optarg;
      break;
    /* The library part of the lab (the lw_close row) runs on this backend; the claim
     * scenarios are raw socket calls and need no event loop. */
    case 'b':
      setenv("LW_BACKEND", optarg, 1);
      break;
    case 'h':
      lw_lab_usage(stdout);
      return 0;
    default:
      lw_lab_usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "lastword lab: unexpected argument '%s'\n", argv[optind]);
    lw_lab_usage(stderr);
    return 2;
  }

  lw_lab_scenario_list sl = {0};
  lw_lab_claim *claims = NULL;
  lw_lab_result *rs = NULL;
  size_t nclaims;
  char err[256];
  lw_lab_opts o = {0};
  o.out = stdout;
  o.json = json;
  o.color = !nocolor && !json && isatty(1) && !getenv("NO_COLOR");
  o.progress = isatty(2);
#ifdef _WIN32
  o.have_root = 0; /* gates capture and network namespaces: neither exists here */
#else
  o.have_root = geteuid() == 0;
#endif

  if (script) {
    size_t len = 0;
    char *text = lw_read_file(script, &len);
    if (!text) {
      fprintf(stderr, "lastword lab: %s: %s\n", script, strerror(errno));
      return 2;
    }
    int pr = lw_lab_script_parse(text, len, &sl, err, sizeof err);
    free(text);
    if (pr < 0) {
      fprintf(stderr, "lastword lab: %s: %s\n", script, err);
      lw_lab_scenario_list_free(&sl);
      return 2;
    }
    /* User scenarios: one "claim" per distinct claim id (or scenario name); a claim
     * whose predictions fail is reported CONTRADICTED. */
    claims = calloc((size_t)sl.n + 1, sizeof *claims);
    nclaims = 0;
    for (int i = 0; claims && i < sl.n; i++) {
      lw_lab_scenario *s = &sl.v[i];
      if (!s->claim[0])
        memcpy(s->claim, s->name, sizeof s->claim);
      size_t k;
      for (k = 0; k < nclaims; k++)
        if (strcmp(claims[k].id, s->claim) == 0)
          break;
      if (k == nclaims)
        claims[nclaims++] =
            (lw_lab_claim){s->claim, s->title[0] ? s->title : s->name, LW_V_CONTRADICTED, NULL};
    }
  } else {
    if (lw_lab_script_parse(lw_lab_builtin_script, strlen(lw_lab_builtin_script), &sl, err,
                            sizeof err) < 0) {
      fprintf(stderr, "lastword lab: built-in scenarios: %s\n", err);
      return 1; /* a bug in the lab itself */
    }
    claims = malloc(lw_lab_nclaims * sizeof *claims);
    if (claims)
      memcpy(claims, lw_lab_claims, lw_lab_nclaims * sizeof *claims);
    nclaims = lw_lab_nclaims;
#ifdef _WIN32
    /* The seeds describe Winsock: here a failed prediction contradicts the seed, and the
     * `why` texts (which explain Linux) give way to the Windows reasons. */
    for (size_t i = 0; claims && i < nclaims; i++) {
      if (claims[i].if_not == LW_V_WINDOWS_ONLY)
        claims[i].if_not = LW_V_CONTRADICTED;
      claims[i].why = lw_lab_claim_why_win(claims[i].id);
    }
#endif
  }
  rs = calloc((size_t)sl.n + 1, sizeof *rs);
  if (!claims || !rs) {
    fprintf(stderr, "lastword lab: out of memory\n");
    rc = 1;
    goto out;
  }

  if (list) {
    for (size_t i = 0; i < nclaims; i++) {
      printf("%-4s %s\n", claims[i].id, claims[i].seed);
      for (int k = 0; k < sl.n; k++)
        if (strcmp(sl.v[k].claim, claims[i].id) == 0)
          printf("       %-16s %s%s\n", sl.v[k].name, sl.v[k].title,
                 sl.v[k].netns ? "  [netns, root]" : "");
    }
    if (!script)
      printf("rstloss  comparison: naive close() vs shutdown + drain + close()\n");
    goto out;
  }

#ifdef _WIN32
  if (lw_w_is_wine()) {
    const char *wv = lw_w_wine_version();
    fprintf(json ? stderr : stdout,
            "lastword lab: running under Wine: the TCP behaviour is the host's (Linux), "
            "not Windows' (Wine %s). The verdicts below are not Windows facts; run "
            "lastword.exe on real Windows for those.\n",
            wv ? wv : "?");
  }
  fprintf(stderr,
          "lastword lab: %s: predictions about segments on the wire (FIN/RST "
          "seen) are not observed; the dead-peer scenarios (netns + nftables) are "
          "Linux-only and skipped; everything else runs on Winsock.\n",
          LW_CAP_NONE);
  if (!o.have_root) { /* always on Windows: no capture was even tried */
#else
  if (!o.have_root) {
    fprintf(stderr, "lastword lab: not root: no packet capture and no network namespace; "
                    "the dead-peer scenarios are skipped, everything else runs.\n");
#endif
  } else {
    o.capture_ok = lw_capture_probe(err, sizeof err);
    if (!o.capture_ok)
      fprintf(stderr,
              "lastword lab: packet capture on lo unavailable (%s): running "
              "without segments.\n",
              err);
  }
  if (pcap_path && o.capture_ok) {
    o.dump = lw_cap_dump_open(pcap_path, err, sizeof err);
    if (!o.dump) {
      fprintf(stderr, "lastword lab: --pcap: %s\n", err);
      rc = 2;
      goto out;
    }
  } else if (pcap_path) {
    fprintf(stderr, "lastword lab: --pcap ignored: no capture\n");
  }

  int counts[LW_V__COUNT] = {0}, ran_claims = 0, total_sel = 0, done = 0;
  for (size_t i = 0; i < nclaims; i++) {
    int sel = !only || lw_in_list(only, claims[i].id);
    for (int k = 0; !sel && k < sl.n; k++)
      sel = strcmp(sl.v[k].claim, claims[i].id) == 0 && lw_in_list(only, sl.v[k].name);
    total_sel += sel;
  }
  for (size_t i = 0; i < nclaims; i++) {
    const lw_lab_claim *c = &claims[i];
    int claim_sel = !only || lw_in_list(only, c->id);
    int nr = 0;
    for (int k = 0; k < sl.n; k++) {
      if (strcmp(sl.v[k].claim, c->id) != 0)
        continue;
      if (!claim_sel && !lw_in_list(only, sl.v[k].name))
        continue;
      lw_progress(&o, done + 1, total_sel, sl.v[k].name);
      if (lw_lab_run(&sl.v[k], &o, &rs[nr]) < 0) {
        fprintf(stderr, "%slastword lab: %s: %s\n", o.progress ? "\r\033[K" : "", sl.v[k].name,
                rs[nr].note);
        rc = 1;
      }
      nr++;
    }
    if (!claim_sel && nr == 0)
      continue;
    done++;
    lw_progress(&o, 0, 0, NULL);
    lw_lab_verdict v = lw_lab_verdict_of(c, rs, nr);
    char note[1024];
    lw_lab_note(c, v, rs, nr, note, sizeof note);
    lw_lab_report_claim(&o, c, v, rs, nr, note);
    counts[v]++;
    ran_claims++;
    for (int k = 0; k < nr; k++)
      lw_lab_result_free(&rs[k]);
  }
  if (ran_claims)
    lw_lab_report_summary(&o, counts, ran_claims);
#ifdef _WIN32
  if (ran_claims && !json)
    printf("  %s; verdicts about packets on the wire need a capture.\n",
           lw_w_is_wine() ? "under Wine: these are the host's (Linux) TCP facts, not Windows'"
                          : "Windows (Winsock)");
#endif
  if (!script && (!only || lw_in_list(only, "rstloss"))) {
    lw_progress(&o, 1, 1, "rstloss comparison");
    if (lw_lab_rstloss(&o) < 0)
      rc = 1;
    lw_progress(&o, 0, 0, NULL);
  }
out:
  if (o.dump)
    lw_cap_dump_close(o.dump);
  free(rs);
  free(claims);
  lw_lab_scenario_list_free(&sl);
  return rc;
}
