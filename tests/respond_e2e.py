#!/usr/bin/env python3
"""End to end: the respond binary as a user runs it. Starts it on port 0, reads the
"listening on" line, runs the RST-loss workload against graceful and naive, checks the
byte pattern, how each connection ended, the --log line, and exit 0 on SIGTERM."""
import re, signal, socket, subprocess, sys, time

RESPOND = sys.argv[1]
LOG_RE = re.compile(r"^close reason=(\S+) initiator=(local|peer|none) rst=([01]) queued=(\d+) "
                    r"sent=(\d+) acked=(\d+) unsent_discarded=(\d+) unread_discarded=(\d+) "
                    r"time_wait=([01]) ms=(\d+) silent_ms=(\d+)$")

def client(port, extra, nbytes):
    s = socket.socket()
    s.settimeout(10)
    # Small receive buffer: the server still holds bytes when it closes (deterministic loss).
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET\n" + b"x" * extra)
    time.sleep(0.2)
    got, end = bytearray(), "eof"
    try:
        while True:
            d = s.recv(32768)
            time.sleep(0.001)  # a client slower than the server, whatever the build
            if not d:
                break
            got += d
    except ConnectionResetError:
        end = "reset"
    s.close()
    ok = all(b == i % 251 for i, b in enumerate(got))
    return len(got), ok, end

def run(mode, nbytes, extra):
    p = subprocess.Popen([RESPOND, "--listen", "127.0.0.1:0", "--bytes", str(nbytes),
                          "--close", mode, "--log"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", line)
    assert m, line
    got, ok, end = client(int(m.group(1)), extra, nbytes)
    log = p.stdout.readline().strip()
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=10)
    assert rc == 0, f"respond exited {rc} on SIGTERM"
    lm = LOG_RE.match(log)
    assert lm, f"bad log line: {log!r}"
    print(f"{mode:9} received {got:>8} of {nbytes} pattern_ok={ok} end={end} | {log}")
    return got, ok, end, lm

N = 4 * 1024 * 1024
got, ok, end, lm = run("graceful", N, 65536)
assert (got, ok, end) == (N, True, "eof")
assert lm.group(1) == "graceful" and lm.group(3) == "0" and int(lm.group(6)) == N
assert int(lm.group(8)) == 65536 and lm.group(9) == "1"
got, ok, end, lm = run("naive", N, 65536)
assert got < N and ok and end == "reset", (got, ok, end)
assert lm.group(1) == "naive" and lm.group(3) == "1"
got, ok, end, lm = run("graceful", 1024 * 1024, 0)   # the default size, nothing unread
assert (got, ok, end) == (1024 * 1024, True, "eof")
# --idle-timeout-ms: a client that connects and says nothing is closed gracefully.
p = subprocess.Popen([RESPOND, "--listen", "127.0.0.1:0", "--idle-timeout-ms", "300",
                      "--dead-after-ms", "3000", "--stall-timeout-ms", "3000", "--log"],
                     stdout=subprocess.PIPE, text=True)
m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", p.stdout.readline().strip())
assert m
c = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10)
t0 = time.monotonic()
assert c.recv(100) == b""                  # a FIN, not a reset
waited = time.monotonic() - t0
c.close()
log = p.stdout.readline().strip()
p.send_signal(signal.SIGTERM)
assert p.wait(timeout=10) == 0
lm = LOG_RE.match(log)
assert lm and lm.group(1) == "idle-timeout" and lm.group(3) == "0", log
assert 0.25 <= waited <= 2.0, waited
print(f"idle      closed after {waited * 1000:.0f} ms | {log}")
print("respond_e2e: 4 passed, 0 failed")
