#!/usr/bin/env python3
"""End to end: ending and restarting a server with respond (or httpd) as a user runs it.
   drain     SIGTERM with an idle, a mid-request and a slow-reading connection: one
             "drain " line, exit 0 within --drain-ms, every started response delivered
   restart   SIGHUP x5 under a bounded load of new connections: zero failures
   queue     connections queued (server stopped) at the SIGHUP are all served
   threads   --threads 2: N requests, each served exactly once; SIGTERM drains both loops
   activate  started by systemd-socket-activate: the same "listening on" line, served
Usage: restart_e2e.py SERVER_BINARY [respond|httpd] [case...]"""
import os, re, select, signal, socket, subprocess, sys, threading, time

BIN = sys.argv[1]
KIND = sys.argv[2] if len(sys.argv) > 2 else "respond"
CASES = sys.argv[3:] or ["drain", "restart", "queue", "threads", "activate", "curl"]
NBYTES = 100000
BYTES = ["--bytes", str(NBYTES)] if KIND == "respond" else []
failures = []

def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)

class Server:
    """Runs the server; follows its stdout/stderr lines (a successor inherits both)."""
    def __init__(self, args, pre=None):
        self.p = subprocess.Popen((pre or []) + [BIN] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.out, self.err, self.lock = [], [], threading.Lock()
        for f, dst in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(f, dst), daemon=True).start()
    def _pump(self, f, dst):
        for line in f:
            with self.lock:
                dst.append(line.rstrip("\n"))
    def wait_line(self, pattern, count=1, timeout=10, stream="out"):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                lines = [l for l in (self.out if stream == "out" else self.err)
                         if re.match(pattern, l)]
            if len(lines) >= count:
                return lines[count - 1]
            time.sleep(0.01)
        raise AssertionError(f"no line {pattern!r} x{count}: out={self.out} err={self.err}")
    def port(self):
        return int(self.wait_line(r"listening on 127\.0\.0\.1:\d+$").rsplit(":", 1)[1])
    def pid(self, n):
        """The n-th copy's pid (1: the first; a successor prints its own line)."""
        return int(self.wait_line(r"\S+: pid (\d+)", n, stream="err").split()[2])
    def pids(self):
        with self.lock:
            return [int(m.group(1)) for l in self.err
                    for m in [re.match(r"\S+: pid (\d+)", l)] if m]

def request(port, timeout=10, partial_pause=0.0, slow=0.0, keep=None):
    """One request; returns (bytes of response body ok?, error string or None)."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        if KIND == "httpd":
            req = f"GET /{NBYTES} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        else:
            req = b"GET\n"
        if partial_pause:
            s.sendall(req[:2]); time.sleep(partial_pause); s.sendall(req[2:])
        else:
            s.sendall(req)
        got = bytearray()
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
            if slow:
                time.sleep(slow)
        if KIND == "httpd":
            head, _, body = bytes(got).partition(b"\r\n\r\n")
            ok = head.startswith(b"HTTP/1.1 200") and len(body) == NBYTES
        else:
            ok = len(got) == NBYTES and all(b == i % 251 for i, b in enumerate(got[:2000]))
        return ok, None if ok else f"short response {len(got)}"
    except OSError as e:
        return False, f"{type(e).__name__}: {e}"
    finally:
        s.close()

class IdleClient:
    """Connects, says nothing, and closes when the server's FIN arrives (as a real
    keep-alive client does): the lingering close then ends cleanly."""
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(20)
        self.res = None
        self.t = threading.Thread(target=self._run)
        self.t.start()
    def _run(self):
        try:
            self.res = "eof" if self.s.recv(10) == b"" else "data"
        except OSError as e:
            self.res = type(e).__name__
        self.s.close()
    def join(self):
        self.t.join()
        return self.res

def drain_line(srv, count=1, timeout=15):
    return srv.wait_line(r"^drain ", count, timeout)

def case_drain():
    srv = Server(["--listen", "127.0.0.1:0", *BYTES, "--drain-ms", "2000"])
    port = srv.port()
    idle = IdleClient(port)  # connected, says nothing
    res = {}
    t1 = threading.Thread(target=lambda: res.update(mid=request(port, partial_pause=0.3)))
    t2 = threading.Thread(target=lambda: res.update(slow=request(port, slow=0.02)))
    t1.start(); t2.start(); time.sleep(0.15)
    t0 = time.time()
    srv.p.send_signal(signal.SIGTERM)
    rc = srv.p.wait(timeout=10)
    took = time.time() - t0
    t1.join(); t2.join()
    line = drain_line(srv)
    print(f"drain: rc={rc} {took:.2f}s | {line} | mid={res['mid']} slow={res['slow']}")
    check(rc == 0, f"exit 0 after SIGTERM (got {rc})")
    check(took < 2.8, f"drain within --drain-ms 2000 (took {took:.2f}s)")
    check(res["mid"][0], f"mid-request connection served: {res['mid']}")
    check(res["slow"][0], f"slow reader got its whole response: {res['slow']}")
    check(re.search(r"conns=[23]\b", line), "the live connections covered")
    check(idle.join() == "eof", "idle connection: a clean FIN")
    check(re.search(r" reset=0 ", line), "nothing reset")

def load(port_fn, stop, stats, conc=4):
    def one():
        while not stop.is_set():
            ok, err = request(port_fn())
            with stats["lock"]:
                stats["n"] += 1
                if not ok:
                    stats["fail"].append(err)
    ts = [threading.Thread(target=one) for _ in range(conc)]
    for t in ts:
        t.start()
    return ts

def keepalive_load(port, stop, stats, conc=2):
    """httpd: requests on persistent connections; a new connection only after the
    server said "Connection: close". A request that gets EOF or a reset instead of its
    whole response is a failure (the keep-alive race a drain must not lose)."""
    def one():
        s = None
        while not stop.is_set():
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    buf = b""
                s.sendall(f"GET /{NBYTES} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        raise OSError("EOF before the response head")
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                while len(buf) < NBYTES:
                    d = s.recv(65536)
                    if not d:
                        raise OSError("EOF inside the response body")
                    buf += d
                buf = buf[NBYTES:]
                ok = head.startswith(b"HTTP/1.1 200")
                with stats["lock"]:
                    stats["n"] += 1
                    stats["ka"] = stats.get("ka", 0) + 1
                    if not ok:
                        stats["fail"].append("bad status")
                if b"Connection: close" in head:
                    s.close(); s = None
            except OSError as e:
                with stats["lock"]:
                    stats["n"] += 1
                    stats["fail"].append(f"keep-alive: {e}")
                if s:
                    s.close()
                s = None
        if s:
            s.close()
    ts = [threading.Thread(target=one) for _ in range(conc)]
    for t in ts:
        t.start()
    return ts

def case_restart():
    srv = Server(["--listen", "127.0.0.1:0", *BYTES, "--drain-ms", "3000"])
    port = srv.port()
    stop, stats = threading.Event(), {"n": 0, "fail": [], "lock": threading.Lock()}
    ts = load(lambda: port, stop, stats)
    if KIND == "httpd":
        ts += keepalive_load(port, stop, stats)
    time.sleep(0.3)
    for i in range(5):
        pid = srv.pid(i + 1)
        os.kill(pid, signal.SIGHUP)
        srv.wait_line(r"listening on 127\.0\.0\.1:\d+$", i + 2)
        drain_line(srv, i + 1)
        time.sleep(0.3)
    stop.set()
    for t in ts:
        t.join()
    os.kill(srv.pid(6), signal.SIGTERM)
    last = drain_line(srv, 6)
    print(f"restart: 5 x SIGHUP under load: {stats['n']} requests "
          f"({stats.get('ka', 0)} on keep-alive connections), "
          f"{len(stats['fail'])} failed {stats['fail'][:3]} | last: {last}")
    check(stats["n"] > 50, "the load ran")
    check(not stats["fail"], f"zero failures over 5 restarts ({len(stats['fail'])})")

def case_queue():
    srv = Server(["--listen", "127.0.0.1:0", *BYTES, "--drain-ms", "3000"])
    port = srv.port()
    pid = srv.pid(1)
    os.kill(pid, signal.SIGSTOP)  # accepts nothing: the connections wait in the queue
    res, ts = [], []
    for _ in range(8):
        t = threading.Thread(target=lambda: res.append(request(port)))
        t.start(); ts.append(t)
    time.sleep(0.3)
    os.kill(pid, signal.SIGHUP)
    os.kill(pid, signal.SIGCONT)
    for t in ts:
        t.join()
    srv.wait_line(r"listening on", 2)
    line = drain_line(srv)
    ok = sum(1 for r in res if r[0])
    print(f"queue: {ok}/8 queued at the switch served | {line}")
    check(ok == 8, f"all 8 queued connections served ({res})")
    os.kill(srv.pid(2), signal.SIGTERM)
    drain_line(srv, 2)

def case_threads():
    srv = Server(["--listen", "127.0.0.1:0", *BYTES, "--threads", "2",
                  "--log", "--drain-ms", "2000"])
    port = srv.port()
    stop, stats = threading.Event(), {"n": 0, "fail": [], "lock": threading.Lock()}
    ts = load(lambda: port, stop, stats)
    time.sleep(1.0)
    stop.set()
    for t in ts:
        t.join()
    idles = [IdleClient(port) for _ in range(6)]
    time.sleep(0.2)
    srv.p.send_signal(signal.SIGTERM)
    rc = srv.p.wait(timeout=10)
    line = drain_line(srv)
    with srv.lock:
        closes = [l for l in srv.out if l.startswith("close ")]
    print(f"threads: {stats['n']} requests, {len(stats['fail'])} failed, {len(closes)} "
          f"close lines | {line}")
    check(rc == 0, "exit 0")
    check(not stats["fail"], f"no failure ({stats['fail'][:3]})")
    # each request served exactly once (one close line each), plus the 6 idle ones
    check(len(closes) == stats["n"] + 6, f"{len(closes)} closes for {stats['n']}+6 conns")
    check(re.search(r"conns=6\b", line), "the drain covered the 6 idle connections")
    check(re.search(r" drain=6 ", line) and re.search(r" reset=0 ", line), "all 6 by the drain, no reset")
    check(all(c.join() == "eof" for c in idles), "each idle client saw a clean FIN")

def case_activate():
    if not shutil_which("systemd-socket-activate"):
        print("activate: SKIP: systemd-socket-activate not installed"); return
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    srv = Server(BYTES,
                 pre=["systemd-socket-activate", "-l", f"127.0.0.1:{port}"])
    # systemd-socket-activate starts the program at the first connection
    time.sleep(0.3)
    ok, err = request(port)
    line = srv.wait_line(r"listening on ")
    ok2, _ = request(port)
    print(f"activate: {line!r} first={ok} {err} second={ok2}")
    check(line == f"listening on 127.0.0.1:{port}", "the same listening line")
    check(ok and ok2, "served through the passed socket")
    srv.p.send_signal(signal.SIGTERM)
    rc = srv.p.wait(timeout=10)
    check(rc == 0, f"exit 0 ({rc})")
    drain_line(srv)

def case_curl():
    """httpd with curl: keep-alive reuse, and the early 413 of an upload over the limit
    (the client, still sending, gets the 413 and not a reset)."""
    if KIND != "httpd":
        return
    srv = Server(["--listen", "127.0.0.1:0", "--max-body", "100000", "--log"])
    port = srv.port()
    url = f"http://127.0.0.1:{port}"
    r = subprocess.run(["curl", "-sv", "-o", "/dev/null", "-o", "/dev/null", f"{url}/10",
                        f"{url}/20"], capture_output=True, text=True, timeout=20)
    check(r.returncode == 0 and "Re-using existing connection" in r.stderr,
          f"curl reused the keep-alive connection: {r.stderr[-300:]}")
    big = "/tmp/restart_e2e_upload.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(8 * 1024 * 1024))
    for extra in (["-H", "Expect:"], []):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *extra,
                            "-T", big, f"{url}/up"], capture_output=True, text=True, timeout=30)
        print(f"curl 413 {extra}: rc={r.returncode} code={r.stdout}")
        check(r.stdout == "413", f"413 for an 8 MiB upload {extra} (got {r.stdout!r}, rc {r.returncode})")
    os.unlink(big)
    srv.p.send_signal(signal.SIGTERM)
    check(srv.p.wait(timeout=15) == 0, "exit 0")

def shutil_which(x):
    import shutil
    return shutil.which(x)

for c in CASES:
    globals()["case_" + c]()
print(f"restart_e2e {KIND}: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
