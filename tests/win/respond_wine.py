#!/usr/bin/env python3
"""respond.exe (examples/respond.c cross-built with mingw-w64) under Wine, with the same
command line as on Linux, serving Linux clients on 127.0.0.1: a Python socket that sends
64 KiB more than the request line (left unread: the case a naive close loses data in)
and reads the whole 4 MiB answer, and curl (--http0.9: respond answers raw bytes). Checks
the byte pattern, the --log line, and the drain on Ctrl-C (SIGINT: Wine's console
control event; Windows has no SIGTERM): with an idle connection and one in the middle
of its response (a reader that stopped after 64 KiB) open, respond drains -- the idle
one gets a clean FIN (reason drain), the other its whole answer, then the FIN -- prints
one "drain conns=2 ... reset=0 ..." line and exits 0. Also: --threads 2 is refused with
its reason (one listening socket cannot serve two completion ports: tests/test_adopt.c).
With HTTPD_EXE (examples/httpd.c), the same for httpd.exe: curl's two GETs on one
keep-alive connection, then Ctrl-C: exit 0 and one "drain " line.
Run by scripts/win-test.sh. Usage: respond_wine.py RESPOND_EXE [HTTPD_EXE]"""
import os, re, shutil, signal, socket, subprocess, sys, threading, time

EXE = sys.argv[1]
N = 4 * 1024 * 1024
LOG_RE = re.compile(r"^close reason=(\S+) initiator=(\S+) rst=([01]) queued=(\d+) sent=(\d+) "
                    r"acked=(\d+) unsent_discarded=(\d+) unread_discarded=(\d+) ")

# --deadline-ms 30000: the mid-response connection's lw_close deadline (default 5000)
# must not end it while it waits for the drain to begin (Wine's Ctrl-C is slow to come).
def start(exe=EXE, args=("--bytes", str(N), "--log", "--deadline-ms", "30000")):
    p = subprocess.Popen(["wine", exe, "--listen", "127.0.0.1:0", *args],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", line)
    if not m:
        p.kill()
        sys.exit(f"respond_wine: FAIL: first line {line!r}")
    return p, int(m.group(1))

def read_all(s, out):
    """Reads s to its end into out (a list: [bytes, how it ended]), then closes it, as
    a client does (the server's lingering close waits for that FIN)."""
    got = bytearray()
    try:
        while True:
            d = s.recv(65536)
            if not d:
                out[:] = [got, "eof"]
                break
            got += d
    except OSError as e:
        out[:] = [got, type(e).__name__]
    s.close()

def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        return p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "timeout"

def check(what, got, log):
    lm = LOG_RE.match(log)
    pattern = all(b == i % 251 for i, b in enumerate(got))
    logged = (lm is not None and lm.group(1) == "graceful" and lm.group(3) == "0"
              and int(lm.group(6)) == N)
    print(f"  {what}: received {len(got)} of {N}, pattern {'ok' if pattern else 'WRONG'},"
          f" log {'ok' if logged else 'WRONG'} | {log}")
    return len(got) == N and pattern and logged

fails = 0
p, port = start()
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(b"GET\n" + b"x" * 65536)
got = bytearray()
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
s.close()
if not check("python socket, 64 KiB unread", got, p.stdout.readline().strip()):
    fails += 1
if shutil.which("curl"):
    r = subprocess.run(["curl", "-s", "--http0.9", "--max-time", "30", "-o", "-",
                        f"http://127.0.0.1:{port}/"], capture_output=True, timeout=60)
    if r.returncode != 0:
        print(f"  curl: exit {r.returncode}")
        fails += 1
    elif not check("curl --http0.9", r.stdout, p.stdout.readline().strip()):
        fails += 1
else:
    print("  curl: not installed, the curl client is not run")
# The drain: an idle connection and one mid-response, then Ctrl-C.
idle = socket.create_connection(("127.0.0.1", port), timeout=30)
mid = socket.create_connection(("127.0.0.1", port), timeout=30)
mid.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
mid.sendall(b"GET\n")
head = bytearray()
while len(head) < 65536:
    d = mid.recv(65536 - len(head))
    if not d:
        break
    head += d
time.sleep(0.3)  # both accepted; the rest of mid's answer waits in the server
t1 = time.monotonic()
r_idle, r_mid = [], []
ti = threading.Thread(target=read_all, args=(idle, r_idle))
tm = threading.Thread(target=read_all, args=(mid, r_mid))
p.send_signal(signal.SIGINT)
# The idle one's FIN comes only from the drain (respond has no idle timeout): once it is
# there the drain runs, and the mid-response reader reads on to its end, as a client
# does -- so that connection was covered while its answer was still on its way.
ti.start(); ti.join(35)
tm.start()
rc = stop(p)  # (a second SIGINT, during the drain: ignored)
took = time.monotonic() - t1
tm.join(35)
rest = [l.strip() for l in p.stdout.read().splitlines()]
drain = [l for l in rest if l.startswith("drain ")]
logs = [l for l in rest if l.startswith("close ")]
whole = bytes(head) + bytes(r_mid[0]) if r_mid else b""
ok_mid = (len(whole) == N and all(b == i % 251 for i, b in enumerate(whole))
          and r_mid[1] == "eof")
ok_idle = r_idle and len(r_idle[0]) == 0 and r_idle[1] == "eof"
print(f"  Ctrl-C (SIGINT) with an idle and a mid-response connection: exit {rc} after"
      f" {took:.1f} s (total {time.monotonic() - t0:.1f} s)")
print(f"    idle: {len(r_idle[0]) if r_idle else '?'} bytes, {r_idle[1] if r_idle else '?'};"
      f" mid-response: {len(whole)} of {N} bytes, {r_mid[1] if r_mid else '?'}")
for l in logs + drain:
    print(f"    {l}")
if rc != 0:
    print("  FAIL: exit status"); fails += 1
if not ok_idle:
    print("  FAIL: the idle connection did not get a clean FIN"); fails += 1
if not ok_mid:
    print("  FAIL: the mid-response connection did not get its whole answer and a FIN")
    fails += 1
if len(drain) != 1 or not re.match(r"^drain conns=2 .*\breset=0 .*\bms=\d+$", drain[0]) \
        or " drain=1 " not in drain[0]:
    print("  FAIL: want one line 'drain conns=2 ... drain=1 ... reset=0 ... ms=N'"); fails += 1
if len(logs) != 2 or not any(l.startswith("close reason=drain ") and " rst=0 " in l
                             for l in logs):
    print("  FAIL: want 2 close lines, the idle one with reason=drain rst=0"); fails += 1

# --threads 2: refused, with the reason, before anything listens.
r = subprocess.run(["wine", EXE, "--listen", "127.0.0.1:0", "--threads", "2"],
                   capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
err = [l for l in r.stderr.splitlines() if l.startswith("respond:")]
print(f"  --threads 2: exit {r.returncode} | {err[0] if err else r.stderr.strip()[:200]}")
if r.returncode != 2 or not err or "completion port" not in err[0] or r.stdout:
    print("  FAIL: want exit 2 and the reason on stderr, nothing on stdout"); fails += 1
# httpd.exe: keep-alive and the drain on Ctrl-C.
if len(sys.argv) > 2 and shutil.which("curl"):
    h, hport = start(sys.argv[2], ("--log",))
    url = f"http://127.0.0.1:{hport}"
    r = subprocess.run(["curl", "-sv", "--max-time", "30", f"{url}/1000", f"{url}/26",
                        "-o", os.devnull, "-o", "-"], capture_output=True, timeout=60)
    reused = b"Re-using existing connection" in r.stderr
    print(f"  httpd.exe: curl exit {r.returncode}, second body {r.stdout!r},"
          f" connection {'reused' if reused else 'NOT reused'}")
    if r.returncode != 0 or r.stdout != b"abcdefghijklmnopqrstuvwxyz" or not reused:
        print("  FAIL: httpd.exe keep-alive GETs"); fails += 1
    hrc = stop(h)
    hrest = [l.strip() for l in h.stdout.read().splitlines()]
    hdrain = [l for l in hrest if l.startswith("drain ")]
    print(f"  httpd.exe Ctrl-C: exit {hrc} | {hdrain[0] if hdrain else 'no drain line'}")
    if hrc != 0 or len(hdrain) != 1 or " reset=0 " not in hdrain[0]:
        print("  FAIL: want exit 0 and one 'drain ... reset=0 ...' line"); fails += 1
print("respond_wine: " + ("PASS" if fails == 0 else f"FAIL ({fails})"))
sys.exit(1 if fails else 0)
