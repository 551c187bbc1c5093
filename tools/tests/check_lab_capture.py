#!/usr/bin/env python3
"""The lab's capture, checked against the pcap file it writes and its own JSON:

- retransmitted segments are marked ("retrans": true) and not counted as new data
  (A17-busy: the client sends 1000 bytes into a dropped path and retransmits them);
- a scenario with no traffic says "captured": false (A3, A4-analogue);
- --pcap has whole frames (caplen == wire length: Wireshark can dissect the payloads);
- --pcap has the RST-loss comparison's traffic too (three 4 MiB responses).
Exit 77 (ctest: skipped) when not root: no capture, no namespace.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    print(("ok   " if cond else "FAIL ") + what)


def read_pcap(path):
    """Yields (caplen, origlen, frame) for each record of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, origlen = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        yield caplen, origlen, data[off:off + caplen]
        off += caplen


def tcp_payload_len(frame):
    """TCP payload bytes of an Ethernet + IPv4/IPv6 frame (from the IP lengths), or -1."""
    if len(frame) < 14:
        return -1
    et = struct.unpack(">H", frame[12:14])[0]
    ip = frame[14:]
    if et == 0x0800 and len(ip) >= 20 and ip[9] == 6:
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:]
        return tot - ihl - (tcp[12] >> 4) * 4 if len(tcp) >= 20 else -1
    if et == 0x86DD and len(ip) >= 60 and ip[6] == 6:
        plen = struct.unpack(">H", ip[4:6])[0]
        return plen - (ip[40 + 12] >> 4) * 4
    return -1


def main():
    if len(sys.argv) != 2:
        print("usage: check_lab_capture.py path/to/lastword", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("skip: not root; packet capture and network namespaces need root")
        return 77
    with tempfile.TemporaryDirectory() as td:
        pcap = os.path.join(td, "lab.pcap")
        p = subprocess.run([sys.argv[1], "lab", "--json", "--no-color", "--only",
                            "A3,A4,A7,A17,rstloss", "--pcap", pcap],
                           capture_output=True, text=True, timeout=110)
        if p.returncode != 0:
            print("lab failed, exit %d\n%s" % (p.returncode, p.stderr))
            return 1
        if "capture on lo unavailable" in p.stderr:
            print("skip: packet capture unavailable: " + p.stderr.strip())
            return 77
        claims = {}
        for line in p.stdout.splitlines():
            o = json.loads(line)
            if "id" in o:
                claims[o["id"]] = o
        records = list(read_pcap(pcap))

    segs = [g for c in claims.values() for g in c["segments"]]
    check(segs and all("retrans" in g for g in segs), "every segment says whether it is a retransmission")

    busy = [g for g in claims["A17"]["segments"] if g["scenario"] == "A17-busy"
            and g["from"] == "client" and g["len"] > 0]
    sent = [s for s in claims["A17"]["scenarios"] if s["name"] == "A17-busy"][0]["bytes_sent"]["client"]
    new = sum(g["len"] for g in busy if not g.get("retrans"))
    again = [g for g in busy if g.get("retrans")]
    check(sent == 1000 and new == sent,
          "A17-busy: new client data on the wire = bytes sent (%d, sent %d)" % (new, sent))
    check(len(again) >= 1 and all(g["seq"] == busy[0]["seq"] for g in again),
          "A17-busy: the dropped 1000 bytes are retransmitted (%d retransmissions)" % len(again))
    for cid in ("A7",):
        for s in claims[cid]["scenarios"]:
            d = [g for g in claims[cid]["segments"] if g["scenario"] == s["name"]
                 and g["from"] == "server" and not g.get("retrans")]
            check(sum(g["len"] for g in d) <= s["bytes_sent"]["server"],
                  "%s: new server data on the wire <= bytes the server sent" % s["name"])

    for c in claims.values():
        for s in c["scenarios"]:
            n = len([g for g in c["segments"] if g["scenario"] == s["name"]])
            check(s["captured"] == (n > 0) and s.get("capture_ran") is True,
                  "%s: \"captured\" is %s with %d segments (capture ran)" %
                  (s["name"], s["captured"], n))
    check(any(not s["captured"] for c in claims.values() for s in c["scenarios"]),
          "a scenario with no traffic (A3 / A4-analogue) says captured: false")

    cut = [r for r in records if r[0] < r[1]]
    check(records and not cut, "pcap: every frame whole (%d records, %d cut)" % (len(records), len(cut)))
    payload = sum(max(tcp_payload_len(r[2]), 0) for r in records)
    check(payload >= 2 * (4 << 20),
          "pcap has the RST-loss comparison's traffic (%d payload bytes; the two graceful rows send 4 MiB each)" % payload)

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
