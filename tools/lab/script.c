/*
 * script.c - the lab's scenario text format (see README-lab.md for the grammar).
 *
 * Robustness rules, because scripts come from users and are fuzzed: the input is a
 * byte buffer with a length (NUL bytes are rejected, never treated as an end), lines
 * are bounded, every number is range-checked, every table is bounded, and any error
 * stops the parse with "line N: reason" and leaves the list as it was before the call.
 */
#include "lab.h"
#include "../sockdiag.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LW_SCRIPT_LINE_MAX 512
#define LW_SCRIPT_MAX_TOKENS 12
#define LW_SCRIPT_MAX_SCENARIOS 1024

static const struct {
  const char *name;
  int min_args, max_args;
  int sided; /* 1: needs a side prefix; 0: a bare word (wait, diag) */
} lw_lab_ops[LW_OP__COUNT] = {
    [LW_OP_CONNECT] = {"connect", 0, 0, 1},
    [LW_OP_ACCEPT] = {"accept", 0, 0, 1},
    [LW_OP_SEND] = {"send", 1, 1, 1},
    [LW_OP_FILL] = {"fill", 0, 0, 1},
    [LW_OP_RECV] = {"recv", 0, 2, 1},
    [LW_OP_RECV_ALL] = {"recv_all", 0, 1, 1},
    [LW_OP_SHUTDOWN] = {"shutdown", 1, 1, 1},
    [LW_OP_CLOSE] = {"close", 0, 0, 1},
    [LW_OP_LINGER] = {"linger", 2, 2, 1},
    [LW_OP_GETLINGER] = {"getlinger", 0, 0, 1},
    [LW_OP_NONBLOCK] = {"nonblock", 0, 0, 1},
    [LW_OP_RCVBUF] = {"rcvbuf", 1, 1, 1},
    [LW_OP_SNDBUF] = {"sndbuf", 1, 1, 1},
    [LW_OP_KEEPALIVE] = {"keepalive", 3, 3, 1},
    [LW_OP_USER_TIMEOUT] = {"user_timeout", 1, 1, 1},
    [LW_OP_SOERROR] = {"soerror", 0, 0, 1},
    [LW_OP_POLL] = {"poll", 0, 1, 1},
    [LW_OP_ARECV] = {"arecv", 0, 1, 1},
    [LW_OP_JOIN] = {"join", 0, 0, 1},
    [LW_OP_DISCONNECT] = {"disconnect", 0, 0, 1},
    [LW_OP_FDVALID] = {"fdvalid", 0, 0, 1},
    [LW_OP_REUSE] = {"reuse", 0, 0, 1},
    [LW_OP_DROP] = {"drop", 0, 0, 0},
    [LW_OP_WAIT] = {"wait", 1, 1, 0},
    [LW_OP_DIAG] = {"diag", 0, 0, 0},
};

const char *lw_lab_op_name(lw_lab_op op) {
  return (unsigned)op < LW_OP__COUNT ? lw_lab_ops[op].name : "?";
}

const char *lw_lab_side_name(lw_lab_side s) {
  return s == LW_SIDE_CLIENT ? "client" : s == LW_SIDE_SERVER ? "server" : "any";
}

static const struct {
  const char *name;
  int e;
} lw_lab_errnos[] = {
    {"none", 0},
    {"ECONNRESET", ECONNRESET},
    {"EPIPE", EPIPE},
    {"ETIMEDOUT", ETIMEDOUT},
    {"EAGAIN", EAGAIN},
    {"EWOULDBLOCK", EWOULDBLOCK},
    {"EISCONN", EISCONN},
    {"EBADF", EBADF},
    {"ENOTCONN", ENOTCONN},
    {"EINPROGRESS", EINPROGRESS},
    {"EINVAL", EINVAL},
    {"ECONNREFUSED", ECONNREFUSED},
    {"ECONNABORTED", ECONNABORTED},
    {"EALREADY", EALREADY},
    {"EINTR", EINTR},
    {"ENETUNREACH", ENETUNREACH},
    {"EHOSTUNREACH", EHOSTUNREACH},
    {"ENOBUFS", ENOBUFS},
    {"EADDRINUSE", EADDRINUSE},
    {"EAFNOSUPPORT", EAFNOSUPPORT},
    {"ENOPROTOOPT", ENOPROTOOPT},
    {"EOPNOTSUPP", EOPNOTSUPP},
    {"ECANCELED", ECANCELED},
    {"EIO", EIO},
};

const char *lw_lab_errno_name(int e) {
  for (size_t i = 1; i < sizeof lw_lab_errnos / sizeof lw_lab_errnos[0]; i++)
    if (lw_lab_errnos[i].e == e)
      return lw_lab_errnos[i].name;
  return e ? "E?" : "0";
}

static int lw_script_num(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int lw_script_op(const char *s) {
  for (int i = 0; i < LW_OP__COUNT; i++)
    if (strcmp(s, lw_lab_ops[i].name) == 0)
      return i;
  return -1;
}

static int lw_script_side(const char *s, int allow_any) {
  if (strcmp(s, "client") == 0)
    return LW_SIDE_CLIENT;
  if (strcmp(s, "server") == 0)
    return LW_SIDE_SERVER;
  if (allow_any && strcmp(s, "any") == 0)
    return LW_SIDE_NONE;
  return -1;
}

static int lw_script_flag(const char *s) {
  static const struct {
    const char *n;
    int f;
  } f[] = {{"SYN", LW_TH_SYN}, {"FIN", LW_TH_FIN}, {"RST", LW_TH_RST},
           {"PSH", LW_TH_PSH}, {"ACK", LW_TH_ACK}, {"URG", LW_TH_URG}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (strcmp(s, f[i].n) == 0)
      return f[i].f;
  return -1;
}

/* Parses "expect ..." tokens (tok[0] == "expect"). Returns NULL or an error string. */
static const char *lw_script_expect(char **tok, int nt, lw_lab_expect *e) {
  memset(e, 0, sizeof *e);
  if (nt < 2)
    return "expect: missing kind (call, seg, noseg, state)";
  if (strcmp(tok[1], "seg") == 0 || strcmp(tok[1], "noseg") == 0) {
    if (nt != 4)
      return "expect seg|noseg: want SIDE|any FLAG";
    e->kind = tok[1][0] == 's' ? LW_EXP_SEG : LW_EXP_NOSEG;
    int s = lw_script_side(tok[2], 1), f = lw_script_flag(tok[3]);
    if (s < 0)
      return "expect seg: unknown side";
    if (f < 0)
      return "expect seg: unknown flag (SYN FIN RST PSH ACK URG)";
    e->side = (lw_lab_side)s;
    e->flag = (uint8_t)f;
  } else if (strcmp(tok[1], "state") == 0) {
    if (nt != 4)
      return "expect state: want SIDE STATE";
    char *hash = strchr(tok[2], '#'); /* "server#2": the side's 2nd diag snapshot */
    if (hash) {
      long n;
      *hash = 0;
      if (lw_script_num(hash + 1, 1, LW_LAB_MAX_STATES, &n) < 0)
        return "expect state: bad #N";
      e->nth = (int)n;
    }
    int s = lw_script_side(tok[2], 0), st = lw_diag_state_parse(tok[3]);
    if (s < 0)
      return "expect state: unknown side";
    if (st == -2)
      return "expect state: unknown TCP state";
    e->kind = LW_EXP_STATE;
    e->side = (lw_lab_side)s;
    e->state = st;
  } else if (strcmp(tok[1], "call") == 0) {
    if (nt != 7)
      return "expect call: want SIDE OP[#N] FIELD CMP VALUE";
    e->kind = LW_EXP_CALL;
    int s = lw_script_side(tok[2], 0);
    if (s < 0)
      return "expect call: unknown side";
    e->side = (lw_lab_side)s;
    char *hash = strchr(tok[3], '#');
    if (hash) {
      long n;
      *hash = 0;
      if (lw_script_num(hash + 1, 1, LW_LAB_MAX_CALLS, &n) < 0)
        return "expect call: bad #N";
      e->nth = (int)n;
    }
    int op = lw_script_op(tok[3]);
    if (op < 0 || !lw_lab_ops[op].sided)
      return "expect call: unknown operation";
    e->op = (lw_lab_op)op;
    static const char *const fields[] = {"ret", "errno", "ms", "bytes", "v1", "v2"};
    int fi = -1;
    for (int i = 0; i < 6; i++)
      if (strcmp(tok[4], fields[i]) == 0)
        fi = i;
    if (fi < 0)
      return "expect call: unknown field (ret errno ms bytes v1 v2)";
    e->field = (lw_lab_field)fi;
    static const char *const cmps[] = {"==", "!=", "<", "<=", ">", ">="};
    int ci = -1;
    for (int i = 0; i < 6; i++)
      if (strcmp(tok[5], cmps[i]) == 0)
        ci = i;
    if (ci < 0)
      return "expect call: unknown comparison (== != < <= > >=)";
    e->cmp = (lw_lab_cmp)ci;
    if (strcmp(tok[6], "peer_sent") == 0) {
      if (e->field != LW_F_BYTES && e->field != LW_F_RET)
        return "expect call: peer_sent compares with ret or bytes only";
      e->val_peer_sent = 1;
    } else if (e->field == LW_F_ERRNO && tok[6][0] >= 'A' && tok[6][0] <= 'z') {
      size_t i, n = sizeof lw_lab_errnos / sizeof lw_lab_errnos[0];
      for (i = 0; i < n; i++)
        if (strcmp(tok[6], lw_lab_errnos[i].name) == 0)
          break;
      if (i == n)
        return "expect call: unknown errno name";
      e->val = lw_lab_errnos[i].e;
    } else if (lw_script_num(tok[6], -1000000000L, 1000000000L, &e->val) < 0) {
      return "expect call: bad number";
    }
  } else {
    return "expect: unknown kind (call, seg, noseg, state)";
  }
  /* Keep the expectation's own words for the report. */
  size_t o = 0;
  for (int i = 1; i < nt && o < sizeof e->text - 1; i++) {
    int w = snprintf(e->text + o, sizeof e->text - o, "%s%s", i > 1 ? " " : "", tok[i]);
    if (w < 0)
      break;
    o += (size_t)w;
    int at = e->kind == LW_EXP_CALL ? 3 : 2;
    if (i == at && e->kind != LW_EXP_SEG && e->nth && o < sizeof e->text - 1) {
      w = snprintf(e->text + o, sizeof e->text - o, "#%d", e->nth);
      if (w > 0)
        o += (size_t)w;
    }
  }
  if (o >= sizeof e->text)
    e->text[sizeof e->text - 1] = 0;
  return NULL;
}

static const char *lw_script_step(char **tok, int nt, lw_lab_step *st) {
  memset(st, 0, sizeof *st);
  int side = lw_script_side(tok[0], 0);
  int first = side >= 0 ? 1 : 0;
  if (first >= nt)
    return "missing operation after side";
  int op = lw_script_op(tok[first]);
  if (op < 0)
    return "unknown operation or keyword";
  if (lw_lab_ops[op].sided && side < 0)
    return "this operation needs a side (client or server)";
  if (!lw_lab_ops[op].sided && side >= 0)
    return "this operation takes no side";
  st->side = side >= 0 ? (lw_lab_side)side : LW_SIDE_NONE;
  st->op = (lw_lab_op)op;
  int na = nt - first - 1;
  if (na < lw_lab_ops[op].min_args || na > lw_lab_ops[op].max_args)
    return "wrong number of arguments";
  for (int i = 0; i < na; i++) {
    const char *a = tok[first + 1 + i];
    if (op == LW_OP_SHUTDOWN) {
      if (strcmp(a, "rd") == 0)
        st->a[i] = 0; /* SHUT_RD */
      else if (strcmp(a, "wr") == 0)
        st->a[i] = 1; /* SHUT_WR */
      else if (strcmp(a, "rdwr") == 0)
        st->a[i] = 2; /* SHUT_RDWR */
      else
        return "shutdown: want rd, wr or rdwr";
    } else {
      /* Every numeric argument is a size, a count or a time: bound them so a script
       * cannot make the lab allocate or sleep without limit. */
      long hi = op == LW_OP_SEND ? 64L << 20 : op == LW_OP_WAIT ? 10000 : 1L << 26;
      if (lw_script_num(a, 0, hi, &st->a[i]) < 0)
        return "bad number (or out of range)";
    }
  }
  st->nargs = na;
  return NULL;
}

static int lw_script_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= LW_LAB_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

int lw_lab_script_parse(const char *text, size_t len, lw_lab_scenario_list *list, char *err,
                        size_t errlen) {
  int n0 = list->n, lineno = 0;
  lw_lab_scenario *cur = NULL;
  const char *why = NULL;
  char line[LW_SCRIPT_LINE_MAX + 1];
  size_t pos = 0;
  while (pos < len) {
    lineno++;
    size_t start = pos;
    while (pos < len && text[pos] != '\n')
      pos++;
    size_t ll = pos - start;
    if (pos < len)
      pos++; /* skip '\n' */
    if (ll > LW_SCRIPT_LINE_MAX) {
      why = "line too long";
      goto fail;
    }
    memcpy(line, text + start, ll);
    line[ll] = 0;
    if (memchr(line, 0, ll)) {
      why = "NUL byte in script";
      goto fail;
    }
    if (ll && line[ll - 1] == '\r')
      line[--ll] = 0;
    /* "title" keeps the rest of the line verbatim. */
    char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncmp(p, "title", 5) == 0 && (p[5] == ' ' || p[5] == '\t' || p[5] == 0)) {
      if (!cur) {
        why = "title outside a scenario";
        goto fail;
      }
      p += 5;
      while (*p == ' ' || *p == '\t')
        p++;
      snprintf(cur->title, sizeof cur->title, "%s", p);
      continue;
    }
    char *hash = strchr(p, '#');
    /* '#' starts a comment only at the start of a word, so "recv#2" stays one token. */
    while (hash && hash != p && hash[-1] != ' ' && hash[-1] != '\t')
      hash = strchr(hash + 1, '#');
    if (hash)
      *hash = 0;
    char *tok[LW_SCRIPT_MAX_TOKENS];
    int nt = 0;
    for (char *save = NULL, *t = strtok_r(p, " \t", &save); t;
         t = strtok_r(NULL, " \t", &save)) {
      if (nt == LW_SCRIPT_MAX_TOKENS) {
        why = "too many words on the line";
        goto fail;
      }
      tok[nt++] = t;
    }
    if (nt == 0)
      continue;
    if (strcmp(tok[0], "scenario") == 0) {
      if (cur) {
        why = "scenario inside a scenario (missing 'end')";
        goto fail;
      }
      if (nt < 2 || !lw_script_name_ok(tok[1])) {
        why = "scenario: want a name of [A-Za-z0-9_.-], at most 23 characters";
        goto fail;
      }
      if (list->n >= LW_SCRIPT_MAX_SCENARIOS) {
        why = "too many scenarios";
        goto fail;
      }
      if (list->n == list->cap) {
        int nc = list->cap ? list->cap * 2 : 16;
        lw_lab_scenario *nv = realloc(list->v, (size_t)nc * sizeof *nv);
        if (!nv) {
          why = "out of memory";
          goto fail;
        }
        list->v = nv;
        list->cap = nc;
      }
      cur = &list->v[list->n++];
      memset(cur, 0, sizeof *cur);
      snprintf(cur->name, sizeof cur->name, "%s", tok[1]);
      for (int i = 2; i < nt; i++) {
        if (strcmp(tok[i], "netns") == 0) {
          cur->netns = 1;
        } else if (strcmp(tok[i], "ipv6") == 0) {
          cur->ipv6 = 1;
        } else if (strcmp(tok[i], "claim") == 0 && i + 1 < nt &&
                   lw_script_name_ok(tok[i + 1])) {
          snprintf(cur->claim, sizeof cur->claim, "%s", tok[++i]);
        } else {
          why = "scenario: unknown option (claim ID, netns, ipv6)";
          goto fail;
        }
      }
      continue;
    }
    if (!cur) {
      why = "statement outside a scenario";
      goto fail;
    }
    if (strcmp(tok[0], "end") == 0) {
      if (nt != 1) {
        why = "end takes nothing";
        goto fail;
      }
      cur = NULL;
      continue;
    }
    if (strcmp(tok[0], "expect") == 0) {
      if (cur->nexpects == LW_LAB_MAX_EXPECTS) {
        why = "too many expectations in one scenario";
        goto fail;
      }
      why = lw_script_expect(tok, nt, &cur->expects[cur->nexpects]);
      if (why)
        goto fail;
      cur->nexpects++;
      continue;
    }
    if (cur->nsteps == LW_LAB_MAX_STEPS) {
      why = "too many steps in one scenario";
      goto fail;
    }
    why = lw_script_step(tok, nt, &cur->steps[cur->nsteps]);
    if (why)
      goto fail;
    cur->nsteps++;
  }
  if (cur) {
    why = "missing 'end' at end of script";
    lineno++;
    goto fail;
  }
  return 0;
fail:
  snprintf(err, errlen, "line %d: %s", lineno, why);
  list->n = n0; /* drop whatever this call appended */
  return -1;
}

void lw_lab_scenario_list_free(lw_lab_scenario_list *list) {
  free(list->v);
  list->v = NULL;
  list->n = list->cap = 0;
}
