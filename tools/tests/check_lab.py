#!/usr/bin/env python3
"""Runs `lastword lab --json` and checks, claim by claim, what Linux must show.

These are facts about Linux (FINDINGS.md, kernel net/ipv4/tcp.c), checked on the
lab's own evidence: segments captured on lo, calls' return values, sock_diag states.
A regression in the lab or a change in the kernel makes this fail.
Exit 77 (ctest: skipped) when not root: without capture the wire facts are unknowable.
"""
import json
import os
import subprocess
import sys

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    print(("ok   " if cond else "FAIL ") + what)


def main():
    if len(sys.argv) != 2:
        print("usage: check_lab.py path/to/lastword", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("skip: not root; packet capture and network namespaces need root")
        return 77
    p = subprocess.run([sys.argv[1], "lab", "--json", "--no-color"], capture_output=True,
                       text=True, timeout=110)
    if p.returncode != 0:
        print("lab failed, exit %d\n%s" % (p.returncode, p.stderr))
        return 1
    claims, summary, comparison = {}, None, None
    for line in p.stdout.splitlines():
        o = json.loads(line)
        if "id" in o:
            claims[o["id"]] = o
        elif "summary" in o:
            summary = o["summary"]
        elif "comparison" in o:
            comparison = o
    if "capture on lo unavailable" in p.stderr:
        print("skip: packet capture unavailable: " + p.stderr.strip())
        return 77

    want = ["A%d" % i for i in range(1, 19)] + ["B%d" % i for i in range(1, 15)]
    check(sorted(claims) == sorted(want), "every claim of CLAIMS.md has a result")
    check(summary is not None and summary["claims"] == len(want), "summary line present")
    for c in claims.values():
        for f in ("id", "seed", "verdict", "notes", "calls", "segments", "states", "checks"):
            check(f in c, "%s has field %s" % (c["id"], f))

    def segs(cid, sc, frm=None, flag=None):
        return [s for s in claims[cid]["segments"] if s["scenario"] == sc
                and (frm is None or s["from"] == frm)
                and (flag is None or flag in s["flags"].split())]

    def calls(cid, sc, side, call):
        return [c for c in claims[cid]["calls"] if c["scenario"] == sc
                and c["side"] == side and c["call"] == call]

    def last_state(cid, sc, side):
        st = [s for s in claims[cid]["states"] if s["scenario"] == sc and s["side"] == side]
        return st[-1]["state"] if st else None

    def verdict(cid):
        return claims[cid]["verdict"]

    # B13: unread input -> RST on the wire, the peer's recv fails ECONNRESET, no FIN.
    check(segs("B13", "B13-unread", "server", "RST"), "B13: server sends RST with input unread")
    check(not segs("B13", "B13-unread", "server", "FIN"), "B13: and no FIN")
    r = calls("B13", "B13-unread", "client", "recv")
    check(r and r[0]["ret"] == -1 and r[0]["errno"] == "ECONNRESET",
          "B13: the peer's first recv() = -1 ECONNRESET")
    check(r and len(r) > 1 and r[1]["ret"] == 0, "B13: then recv() = 0 (the error is consumed)")
    check(segs("B13", "B13-read", "server", "FIN") and not segs("B13", "B13-read", "server", "RST"),
          "B13: reading first makes the close a FIN")
    check(verdict("B13") == "HOLDS", "B13 HOLDS")

    # A6: SO_LINGER{1,0} -> RST, no FIN, no TIME_WAIT, unsent data lost.
    check(segs("A6", "A6", "server", "RST"), "A6: RST on the wire")
    check(not segs("A6", "A6", "server", "FIN"), "A6: no FIN")
    check(last_state("A6", "A6", "server") == "none", "A6: no TIME_WAIT (socket gone)")
    r = calls("A6", "A6", "client", "recv_all")
    check(r and r[-1]["errno"] == "ECONNRESET", "A6: the peer gets ECONNRESET")
    sent = [s for s in claims["A6"]["scenarios"] if s["name"] == "A6"][0]["bytes_sent"]["server"]
    check(r and r[-1]["bytes"] < sent, "A6: queued data was lost")
    check(verdict("A6") == "HOLDS", "A6 HOLDS")

    # A12: shutdown(SHUT_WR) -> FIN, the peer reads 0, a later send fails EPIPE.
    check(segs("A12", "A12", "server", "FIN"), "A12: FIN on the wire")
    r = calls("A12", "A12", "client", "recv")
    check(r and r[0]["ret"] == 0, "A12: the peer's read() = 0")
    r = calls("A12", "A12", "server", "send")
    check(r and r[0]["errno"] == "EPIPE", "A12: send() after shutdown = EPIPE")

    # B10 vs A5/A10: the default close sends FIN and delivers everything.
    check(verdict("B10") == "CONTRADICTED", "B10 (default close sends RST) is CONTRADICTED")
    check(not segs("B10", "B10", "server", "RST"), "B10: no RST with nothing unread")
    check(segs("B10", "B10", "server", "FIN"), "B10: FIN instead")
    r = calls("B10", "B10", "client", "recv_all")
    sent = [s for s in claims["B10"]["scenarios"] if s["name"] == "B10"][0]["bytes_sent"]["server"]
    check(r and r[-1]["ret"] == 0 and r[-1]["bytes"] == sent,
          "B10: the peer received every queued byte, then EOF")
    check(segs("B10", "B10-unread", "server", "RST"), "B10: ...but RST when input is unread")
    for cid in ("A5", "A10"):
        check(segs(cid, cid, "server", "FIN"), "%s: default close sends FIN" % cid)
        check(not segs(cid, cid, None, "RST"), "%s: no RST" % cid)
        check(last_state(cid, cid, "server") == "TIME_WAIT", "%s: TIME_WAIT on the closer" % cid)
        check(verdict(cid) == "HOLDS", "%s HOLDS" % cid)
    # On lo each segment is captured once: one FIN from the server in A10.
    check(len(segs("A10", "A10", "server", "FIN")) == 1, "capture: each segment seen once on lo")

    # A9: reset -> no TIME_WAIT; completed -> TIME_WAIT.
    check(segs("A9", "A9-reset", "server", "RST") and
          last_state("A9", "A9-reset", "server") == "none", "A9: reset leaves no TIME_WAIT")
    check(last_state("A9", "A9-graceful", "server") == "TIME_WAIT",
          "A9: a completed close leaves TIME_WAIT")

    # A7 / A8: SO_LINGER{1,1} blocks ~1 s, even non-blocking; returns 0; no RST at timeout.
    for cid, sc in (("A7", "A7-timeout"), ("A8", "A8")):
        r = calls(cid, sc, "server", "close")
        check(r and r[0]["ret"] == 0 and 900 <= r[0]["ms"] <= 2500,
              "%s: close() = 0 after ~1 s (blocked)" % sc)
        check(not segs(cid, sc, "server", "RST"), "%s: no RST when the linger time runs out" % sc)
        check(verdict(cid) == "WINDOWS-ONLY", "%s is WINDOWS-ONLY" % cid)

    # A11: SHUT_RD -> recv() = 0, later data still readable, no RST.
    r = calls("A11", "A11", "server", "recv")
    check(len(r) == 2 and r[0]["ret"] == 0 and r[1]["ret"] == 1000,
          "A11: recv() = 0 after SHUT_RD, later data still read")
    check(not segs("A11", "A11", None, "RST"), "A11: no reset")

    # B12: shutdown wakes a blocked recv() at once.
    r = calls("B12", "B12", "client", "recv_thread")
    check(r and r[0]["ret"] == 0 and r[0]["ms"] < 250, "B12: shutdown wakes the blocked recv()")
    # B14: the 0-byte receive comes with the FIN.
    r = calls("B14", "B14", "client", "recv_thread")
    check(r and r[0]["ret"] == 0 and r[0]["ms"] >= 150, "B14: recv() = 0 when the FIN arrives")
    # B7: the receive queue survives shutdown.
    r = calls("B7", "B7", "server", "recv")
    check(r and r[0]["ret"] == 1000, "B7: bytes queued before SHUT_RDWR are still read")
    # B2 / B5: states.
    st = [s["state"] for s in claims["B5"]["states"]]
    check("CLOSE_WAIT" in st and "FIN_WAIT_2" in st, "B5: CLOSE_WAIT and FIN_WAIT_2")
    # A2: close() does not wake a recv() blocked in another thread.
    r = calls("A2", "A2", "client", "recv_thread")
    check(r and r[0]["ms"] >= 600, "A2: close() leaves a blocked recv() waiting")
    # A15: connect(AF_UNSPEC) then connect() works on the same descriptor.
    r = calls("A15", "A15", "client", "connect")
    check(len(r) == 3 and r[1]["errno"] == "EISCONN" and r[2]["ret"] == 0,
          "A15: EISCONN, then reconnect after connect(AF_UNSPEC)")
    for cid in ("A4", "A18"):
        check(verdict(cid) == "NOT-TESTABLE", "%s is NOT-TESTABLE here" % cid)

    # A17: dead peer in a private namespace.
    sc = claims["A17"]["scenarios"]
    if any(s["skipped"] for s in sc):
        print("note: A17 skipped: " + "; ".join(s["note"] for s in sc))
    else:
        r = calls("A17", "A17-keepalive", "client", "recv")
        check(r and r[0]["errno"] == "ETIMEDOUT" and 3000 <= r[0]["ms"] <= 6000,
              "A17: keepalive 1/1/3 -> ETIMEDOUT after ~4 s")
        r = calls("A17", "A17-busy", "client", "recv")
        check(r and r[0]["errno"] == "ETIMEDOUT" and r[0]["ms"] < 3500,
              "A17: TCP_USER_TIMEOUT bounds a busy connection")

    # The comparison: a naive close loses data to the RST; the graceful one does not.
    check(comparison is not None, "comparison present")
    if comparison:
        naive, grace = comparison["rows"][0], comparison["rows"][1]
        check(naive["ending"] == "ECONNRESET" and naive["received"] < naive["written"],
              "rstloss: naive close() ends in ECONNRESET and loses bytes")
        check(grace["ending"] == "EOF" and grace["received"] == grace["written"] == 4194304
              and grace["pattern_ok"], "rstloss: graceful close delivers all 4 MiB, then EOF")

    print("\n%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
