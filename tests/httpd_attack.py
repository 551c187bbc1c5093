#!/usr/bin/env python3
"""examples/httpd against hostile clients (raw sockets and curl), as a user runs it.
   http    never outside --root (.., %2e%2e, //, absolute-form, a symlink out, a FIFO
           that must not block the loop); framing (pipelined, byte by byte, HEAD then a
           bad request, huge head, Content-Length empty / + / - / overflow / twice /
           hidden behind a NUL, trailing whitespace, a query string); Expect:
           100-continue under and over --max-body (raw and curl); HTTP/1.0 keep-alive;
           slowloris (a head trickled a byte at a time ends with 408, bounded)
   drain   SIGTERM with 1000 idle keep-alive connections and clients that send a request
           at the very moment of the idle window: no request answered by an RST or
           closed into unanswered, and the "drain" line's numbers equal the ones the
           clients count themselves
   wrk     a bounded wrk run (-t2 -c100 -d2s): no socket error, no non-2xx
Usage: httpd_attack.py HTTPD_BINARY [case...]"""
import os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time, resource

BIN = os.path.abspath(sys.argv[1])
CASES = sys.argv[2:] or ["http", "drain", "wrk"]
failures = []

def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)

PROCS = []
def kill_left():
    """A failed run must not leave a server behind (one stuck on a FIFO ignores SIGTERM)."""
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()
import atexit
atexit.register(kill_left)

def start(args):
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    PROCS.append(p)
    line = p.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), line + p.stderr.read()
    return p, int(line.rsplit(":", 1)[1])

def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    check("Sanitizer" not in err, f"no sanitizer report from httpd: {err[-500:]!r}")
    return p.returncode, out, err

def conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def rd(s, t=1.0):
    """Everything until EOF (+ '<EOF>'), an RST ('<RST>') or t seconds of silence."""
    s.settimeout(t)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return out + b"<EOF>"
            out += d
    except socket.timeout:
        return out + b"<TIMEOUT>"
    except ConnectionResetError:
        return out + b"<RST>"

def exchange(port, data, t=0.5):
    s = conn(port)
    s.sendall(data)
    r = rd(s, t)
    s.close()
    return r

def status(r):
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", r)]

def case_http():
    d = tempfile.mkdtemp()
    root = os.path.join(d, "root")
    os.makedirs(os.path.join(root, "sub"))
    open(os.path.join(root, "index.html"), "w").write("hello\n")
    open(os.path.join(root, "sub", "f.txt"), "w").write("subf\n")
    open(os.path.join(d, "secret.txt"), "w").write("SECRET\n")
    os.symlink(os.path.join(d, "secret.txt"), os.path.join(root, "out"))
    os.symlink("sub/f.txt", os.path.join(root, "in"))
    os.mkfifo(os.path.join(root, "fifo"))
    p, port = start(["--root", root, "--max-body", "1000", "--idle-timeout-ms", "3000",
                     "--header-timeout-ms", "1000"])
    # Never outside the root.
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt",
                 "//" + d.lstrip("/") + "/secret.txt", "/out", "/..%2fsecret.txt",
                 "/sub/%2e%2e/%2e%2e/secret.txt", "/fifo", "/sub"]:
        r = exchange(port, f"GET {path} HTTP/1.1\r\n\r\n".encode(), 2.0)
        check(b"SECRET" not in r and status(r) == [404] and r.endswith(b"<EOF>"),
              f"http: GET {path}: 404, nothing from outside the root: {r[:60]!r}")
    r = exchange(port, b"GET http://x/../secret.txt HTTP/1.1\r\n\r\n")
    check(status(r) == [400], f"http: absolute-form: 400 {r[:40]!r}")
    r = exchange(port, b"GET /in HTTP/1.1\r\nConnection: close\r\n\r\n")
    check(r.endswith(b"subf\n<EOF>"), f"http: a symlink inside the root is served {r[-20:]!r}")
    r = exchange(port, b"GET /index.html?a=../../x HTTP/1.1\r\nConnection: close\r\n\r\n")
    check(status(r) == [200] and r.endswith(b"hello\n<EOF>"), f"http: a query string is ignored {r[:40]!r}")
    # Framing.
    r = exchange(port, b"GET / HTTP/1.1\r\n\r\nGET /sub/f.txt HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
    check(status(r) == [200, 200, 200] and r.endswith(b"\r\n\r\n<EOF>") and r.count(b"hello") == 1,
          f"http: three pipelined requests, HEAD without a body {r[-40:]!r}")
    s = conn(port)
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
        s.send(bytes([b]))
        time.sleep(0.001)
    r = rd(s)
    s.close()
    check(status(r) == [200] and r.endswith(b"hello\n<EOF>"), f"http: a request a byte at a time {r[-20:]!r}")
    for what, req in [("400", b"BAD\r\n\r\n"), ("431", b"A" * 9000)]:
        r = exchange(port, b"HEAD / HTTP/1.1\r\n\r\n" + req)
        body = r.split(b"\r\n\r\n")[-1]
        m = re.findall(rb"Content-Length: (\d+)", r)
        check(len(m) == 2 and body == b"x" * 0 + body and len(body) - len(b"<EOF>") == int(m[1]),
              f"http: HEAD then a {what}: the {what}'s body matches its Content-Length {r[-60:]!r}")
    for what, cl in [("empty", b""), ("plus", b"+3"), ("minus", b"-1"), ("space inside", b"1 2"),
                     ("twice, different", b"0\r\nContent-Length: 5")]:
        r = exchange(port, b"POST / HTTP/1.1\r\nContent-Length: " + cl + b"\r\n\r\nabcdeGET /index.html HTTP/1.1\r\n\r\n")
        check(status(r) == [400] and r.endswith(b"<EOF>"), f"http: Content-Length {what}: 400 and close {r[:40]!r}")
    r = exchange(port, b"POST / HTTP/1.1\r\nX: a\x00b\r\nContent-Length: 5\r\n\r\nGET /index.html HTTP/1.1\r\n\r\n")
    check(status(r) == [400], f"http: a NUL in the head: 400 (no request smuggled behind it) {r[:40]!r}")
    r = exchange(port, b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n")
    check(status(r) == [413], f"http: Content-Length overflow: 413 {r[:40]!r}")
    r = exchange(port, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nConnection: close \r\n\r\n")
    check(status(r) == [200, 200] and r.endswith(b"hello\n<EOF>"),
          f"http: the same Content-Length twice, trailing whitespace in Connection: close {r[-30:]!r}")
    r = exchange(port, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    heads = [h for h in r.split(b"hello\n") if h.startswith(b"HTTP")]
    check(status(r) == [200, 200] and b"Connection: keep-alive" in heads[0] and
          b"Connection: close" in heads[1] and r.endswith(b"<EOF>"),
          f"http: HTTP/1.0 keep-alive is said so in the response, then closed {r!r}")
    # Expect: 100-continue.
    s = conn(port)
    s.sendall(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    r = rd(s, 0.5)
    check(r.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), f"http: Expect under the limit: 100 Continue at once {r!r}")
    s.sendall(b"abcde")
    r = rd(s, 0.5)
    check(status(r) == [200], f"http: then the body's 200 {r!r}")
    s.close()
    for expect in [True, False]:
        s = conn(port)
        s.sendall(b"PUT /up HTTP/1.1\r\nContent-Length: 5000000\r\n" +
                  (b"Expect: 100-continue\r\n" if expect else b"") + b"\r\n")
        sent, err = 0, None
        try:
            s.settimeout(5)
            while sent < 5000000:
                sent += s.send(b"x" * 65536)
        except OSError as e:
            err = type(e).__name__
        r = rd(s, 3.0)
        s.close()
        check(status(r) == [413] and r.endswith(b"<EOF>"),
              f"http: a body over the limit ({'with' if expect else 'without'} Expect, raw): 413 then FIN, no RST {r[:40]!r} sent={sent} err={err}")
    if shutil.which("curl"):
        up = os.path.join(d, "up")
        with open(up, "wb") as f:
            f.write(b"y" * 3000000)
        for hdr in ["Expect: 100-continue", "Expect:"]:
            c = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", hdr,
                                "-T", up, f"http://127.0.0.1:{port}/up"], capture_output=True, text=True, timeout=20)
            check(c.stdout == "413" and c.returncode == 0, f"http: curl -T over the limit ({hdr}): {c.stdout} rc={c.returncode}")
        t0 = time.time()
        c = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect: 100-continue",
                            "--data-binary", "z" * 900, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=20)
        check(c.stdout == "200" and time.time() - t0 < 0.8,
              f"http: curl with Expect under the limit: 200 without curl's 1 s wait ({time.time() - t0:.2f} s)")
        c = subprocess.run(["curl", "-s", "-I", f"http://127.0.0.1:{port}/index.html"], capture_output=True, text=True, timeout=20)
        check("Content-Length: 6" in c.stdout and c.returncode == 0, f"http: curl -I (HEAD) {c.stdout!r}")
    # Slowloris: header timeout 1000 ms, idle timeout 3000 ms.
    s = conn(port)
    t0, r = time.time(), b""
    s.settimeout(0.3)
    try:
        for b in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            s.send(bytes([b]))
            try:
                d2 = s.recv(4096)
                r += d2
                if not d2:
                    r += b"<EOF>"
                    break
            except socket.timeout:
                pass
            if time.time() - t0 > 6:
                break
    except OSError as e:
        r += type(e).__name__.encode()
    el = time.time() - t0
    s.close()
    check(status(r) == [408] and el < 1.0 + 3.0, f"http: slowloris ended with 408 after {el:.1f} s (bound 4 s) {r[:40]!r}")
    # The FIFO did not block the loop: still serving.
    r = exchange(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    check(r.endswith(b"hello\n<EOF>"), "http: still serving at the end")
    rc, out, err = stop(p)
    check(rc == 0, f"http: SIGTERM exit 0 ({rc}) {err}")
    shutil.rmtree(d)

def case_drain():
    N = 2000
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    p, port = start(["--drain-ms", "4000", "--idle-timeout-ms", "60000"])
    socks = []
    for i in range(N):
        s = conn(port)
        s.sendall(b"GET /10 HTTP/1.1\r\n\r\n")
        socks.append(s)
    got = 0  # bytes the clients received: the report's acked must be exactly this
    for s in socks:
        r = b""
        s.settimeout(5)
        while not r.endswith(b"abcdefghij"):
            r += s.recv(4096)
        got += len(r)
    # 20 "racers" send their next request when the drain's idle window (1000 ms, the
    # library's default) has just passed: the closes and their requests cross.
    racers = socks[:20]
    time.sleep(0.05)
    t_sig = time.time()
    p.send_signal(signal.SIGTERM)
    results = {}
    def racer(i, s, delay):
        time.sleep(max(0, t_sig + delay - time.time()))
        try:
            s.sendall(b"GET /10 HTTP/1.1\r\n\r\n")
        except OSError as e:
            results[i] = "send " + type(e).__name__
            return
        r = rd(s, 8)
        results[i] = r
    ts = [threading.Thread(target=racer, args=(i, s, 0.95 + 0.005 * i)) for i, s in enumerate(racers)]
    [t.start() for t in ts]
    ends = {"eof": 0, "rst": 0, "other": 0}
    for s in socks[20:]:
        r = rd(s, 10)
        got += len(r.replace(b"<EOF>", b"").replace(b"<RST>", b"").replace(b"<TIMEOUT>", b""))
        ends["eof" if r == b"<EOF>" else "rst" if r.endswith(b"<RST>") else "other"] += 1
        s.close()
    [t.join() for t in ts]
    served = unanswered = rst = 0
    for i, r in results.items():
        if isinstance(r, str):
            rst += 1
            continue
        got += len(r.replace(b"<EOF>", b"").replace(b"<RST>", b"").replace(b"<TIMEOUT>", b""))
        if False:
            pass
        elif r.endswith(b"<RST>"):
            rst += 1
        elif b"HTTP/1.1 200" in r:
            served += 1
            check(b"Connection: close" in r and r.endswith(b"<EOF>"), f"drain: racer {i} served with Connection: close then FIN {r!r}")
        else:
            unanswered += 1  # FIN before any response: the client may retry (RFC 9112 9.6)
    for s in racers:
        s.close()
    rc, out, err = stop(p)
    line = [l for l in out.splitlines() if l.startswith("drain ")]
    check(rc == 0 and len(line) == 1, f"drain: exit 0 with one drain line (rc={rc}) {out!r}")
    f = dict(kv.split("=") for kv in line[0].split()[1:]) if line else {}
    print(f"drain: idle clients {ends}, racers served={served} fin-before-response={unanswered} rst={rst}; server: {line}")
    check(ends == {"eof": N - 20, "rst": 0, "other": 0}, f"drain: every idle keep-alive client got a FIN, no RST: {ends}")
    check(rst == 0, f"drain: no racer got an RST ({rst})")
    check(f.get("conns") == str(N), f"drain: conns={f.get('conns')} = the {N} connections the clients held")
    check(int(f.get("reset", -1)) == rst and int(f.get("reset_at_deadline", -1)) == 0,
          f"drain: reset={f.get('reset')} = the {rst} RSTs the clients saw")
    check(int(f.get("drain", 0)) + int(f.get("peer-closed-first", 0)) + int(f.get("graceful", 0)) == N,
          f"drain: every connection ended by the drain or cleanly: {line}")
    check(int(f.get("acked", -1)) == got, f"drain: acked={f.get('acked')} = the {got} bytes the clients received")
    check(int(f.get("ms", 99999)) < 4000, f"drain: done before the deadline ({f.get('ms')} ms)")

def case_wrk():
    if not shutil.which("wrk"):
        print("wrk: not installed (scripts/deps.sh build installs it): skipped this case")
        return
    p, port = start(["--idle-timeout-ms", "5000"])
    w = subprocess.run(["wrk", "-t2", "-c100", "-d2s", f"http://127.0.0.1:{port}/1000"],
                       capture_output=True, text=True, timeout=30)
    print(w.stdout)
    m = re.search(r"(\d+) requests in", w.stdout)
    check(w.returncode == 0 and m and int(m.group(1)) > 1000, f"wrk: ran ({m and m.group(1)} requests)")
    check("Socket errors" not in w.stdout and "Non-2xx" not in w.stdout, "wrk: no socket error, no non-2xx")
    rc, out, err = stop(p)
    check(rc == 0, f"wrk: SIGTERM exit 0 ({rc})")

for c in CASES:
    globals()["case_" + c]()
print("httpd_attack:", "FAILED " + str(failures) if failures else "all ok", flush=True)
sys.exit(1 if failures else 0)
