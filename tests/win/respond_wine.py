#!/usr/bin/env python3
"""respond.exe (examples/respond.c cross-built with mingw-w64) under Wine, with the same
command line as on Linux, serving Linux clients on 127.0.0.1: a Python socket that sends
64 KiB more than the request line (left unread: the case a naive close loses data in)
and reads the whole 4 MiB answer, and curl (--http0.9: respond answers raw bytes). Checks
the byte pattern, the --log line, and exit 0 on Ctrl-C (SIGINT: Wine's console control
event). Run by scripts/win-test.sh. Usage: respond_wine.py RESPOND_EXE"""
import os, re, shutil, signal, socket, subprocess, sys, time

EXE = sys.argv[1]
N = 4 * 1024 * 1024
LOG_RE = re.compile(r"^close reason=(\S+) initiator=(\S+) rst=([01]) queued=(\d+) sent=(\d+) "
                    r"acked=(\d+) unsent_discarded=(\d+) unread_discarded=(\d+) ")

def start():
    p = subprocess.Popen(["wine", EXE, "--listen", "127.0.0.1:0", "--bytes", str(N), "--log"],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", line)
    if not m:
        p.kill()
        sys.exit(f"respond_wine: FAIL: first line {line!r}")
    return p, int(m.group(1))

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
rc = stop(p)
print(f"  Ctrl-C (SIGINT): exit {rc} after {time.monotonic() - t0:.1f} s")
if rc != 0:
    fails += 1
print("respond_wine: " + ("PASS" if fails == 0 else f"FAIL ({fails})"))
sys.exit(1 if fails else 0)
