#!/usr/bin/env python3
"""Hostile restarts of respond or httpd (the SIGHUP hand-off, lastword.h "Sockets passed"):
   deploy    the binary at the started path is replaced (as a deploy does): by a program
             that exits at once (the old copy reports its status, reaps it, goes on
             serving), by a file that cannot be executed (goes on serving), then by a
             wrapper that runs the real server (the successor is the NEW program, the old
             copy drains and exits 0); nothing is lost meanwhile
   signals   SIGHUP twice at once (one successor), SIGHUP + SIGTERM together (the old
             copy drains and exits 0, the service stays up through the successor),
             SIGHUP under --threads 2 (one successor, every request served)
   listenfds LISTEN_FDS with another process's LISTEN_PID (ignored: --listen is used),
             LISTEN_FDS=0, garbage, huge, and descriptors that are not listening TCP
             sockets (refused with exit 1, never served)
Usage: restart_attack.py SERVER_BINARY respond|httpd [case...]"""
import os, re, shutil, signal, socket, stat, subprocess, sys, tempfile, threading, time

BIN = os.path.abspath(sys.argv[1])
KIND = sys.argv[2]
CASES = sys.argv[3:] or ["deploy", "signals", "listenfds"]
failures = []

def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)

SERVERS = []
def kill_left():
    """A failed run must not leave a copy behind (successors are not our children)."""
    for srv in SERVERS:
        for pid in [srv.p.pid] + srv.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"--listen" in f.read():  # still ours, not a recycled pid
                        os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
import atexit
atexit.register(kill_left)

class Server:
    def __init__(self, argv, env=None, pass_fds=()):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env, pass_fds=pass_fds)
        SERVERS.append(self)
        self.out, self.err, self.lock = [], [], threading.Lock()
        for f, dst in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(f, dst), daemon=True).start()
    def _pump(self, f, dst):
        for line in f:
            with self.lock:
                dst.append(line.rstrip("\n"))
    def lines(self, pattern, stream="err"):
        with self.lock:
            return [l for l in (self.err if stream == "err" else self.out) if re.search(pattern, l)]
    def wait(self, pattern, count=1, timeout=10, stream="err"):
        end = time.time() + timeout
        while time.time() < end:
            if len(self.lines(pattern, stream)) >= count:
                return True
            time.sleep(0.01)
        return False
    def port(self):
        assert self.wait(r"^listening on 127\.0\.0\.1:\d+$", stream="out"), (self.out, self.err)
        return int(self.lines(r"^listening on", "out")[0].rsplit(":", 1)[1])
    def pids(self):
        return [int(re.search(r"pid (\d+)", l).group(1)) for l in self.lines(r": pid \d+ ")]

def request(port):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /100 HTTP/1.1\r\nConnection: close\r\n\r\n" if KIND == "httpd" else b"GET\n")
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        if KIND == "httpd":
            head, _, body = got.partition(b"\r\n\r\n")
            return head.startswith(b"HTTP/1.1 200 ") and body == (b"abcdefghijklmnopqrstuvwxyz" * 4)[:100]
        return len(got) == 100 and all(b == i % 251 for i, b in enumerate(got))
    except OSError:
        return False
    finally:
        s.close()

ARGS = ["--listen", "127.0.0.1:0", "--drain-ms", "2000"] + (["--bytes", "100"] if KIND == "respond" else [])

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []

def zombies(pid):
    z = []
    for c in children(pid):
        try:
            with open(f"/proc/{c}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    z.append(c)
        except OSError:
            pass
    return z

def load(port, stop, res):
    while not stop.is_set():
        res.append(request(port))

def stop_all(srv, pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        srv.p.wait(10)
    except subprocess.TimeoutExpired:
        srv.p.kill()
    end = time.time() + 10
    while time.time() < end and any(os.path.exists(f"/proc/{p}") and not zombies_of_self(p) for p in pids):
        time.sleep(0.05)

def zombies_of_self(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

def case_deploy():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "srv")
    shutil.copy(BIN, path)
    srv = Server([path] + ARGS)
    port = srv.port()
    pid = srv.pids()[0] if srv.wait(r": pid \d+ ") else None
    stop, res = threading.Event(), []
    t = threading.Thread(target=load, args=(port, stop, res))
    t.start()
    def install(content, mode=0o755):
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.rename(tmp, path)  # a new inode at the same path, as install(1) and package managers do
    # 1. The new program exits at once.
    install("#!/bin/sh\nexit 3\n")
    os.kill(pid, signal.SIGHUP)
    check(srv.wait(r"exited before accepting \(status 3\)", timeout=5),
          f"deploy: a successor that exits 3 is reported with its status: {srv.err}")
    time.sleep(0.1)
    check(zombies(pid) == [], f"deploy: no zombie left under {pid}: {zombies(pid)}")
    check(request(port), "deploy: the old copy goes on serving after a failed successor")
    # 2. The file cannot be executed.
    install("not a program\n", 0o644)
    os.kill(pid, signal.SIGHUP)
    check(srv.wait(r"restart: spawn: ", timeout=5), f"deploy: an unexecutable binary is reported: {srv.err}")
    check(request(port), "deploy: the old copy goes on serving after a failed spawn")
    # 3. A working new version (a wrapper that says so and runs the real server).
    install(f"#!/bin/sh\necho deployed-new-version >&2\nexec '{BIN}' \"$@\"\n")
    os.kill(pid, signal.SIGHUP)
    check(srv.wait(r"deployed-new-version", timeout=5), f"deploy: the successor is the new program: {srv.err}")
    check(srv.wait(r": pid \d+ ", 2, timeout=5), "deploy: the new program starts serving")
    try:
        rc = srv.p.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, f"deploy: the old copy drains and exits 0 (rc={rc})")
    check(srv.wait(r"^drain ", stream="out"), "deploy: the old copy prints its drain line")
    time.sleep(0.2)
    stop.set()
    t.join()
    check(len(res) > 0 and all(res), f"deploy: {res.count(False)} of {len(res)} requests failed during the deploys")
    check(request(port), "deploy: served by the new program")
    stop_all(srv, srv.pids()[1:])
    shutil.rmtree(d)

def case_signals():
    # Two SIGHUPs at once: one successor.
    srv = Server([BIN] + ARGS)
    port = srv.port()
    srv.wait(r": pid \d+ ")
    pid = srv.pids()[0]
    os.kill(pid, signal.SIGHUP)
    os.kill(pid, signal.SIGHUP)
    check(srv.wait(r": pid \d+ ", 2), "signals: SIGHUP x2: a successor starts")
    try:
        rc = srv.p.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, f"signals: SIGHUP x2: the old copy exits 0 (rc={rc})")
    time.sleep(0.3)
    check(len(srv.pids()) == 2, f"signals: SIGHUP x2: exactly one successor: {srv.pids()}")
    check(request(port), "signals: SIGHUP x2: served after")
    pid2 = srv.pids()[1]
    # SIGHUP and SIGTERM together, to the successor: it drains and exits; its own
    # successor (started before the SIGTERM was seen, or not at all) is the only one left.
    os.kill(pid2, signal.SIGHUP)
    os.kill(pid2, signal.SIGTERM)
    end = time.time() + 10
    while time.time() < end and not zombies_of_self(pid2) and os.path.exists(f"/proc/{pid2}"):
        time.sleep(0.05)
    check(not os.path.exists(f"/proc/{pid2}") or zombies_of_self(pid2), "signals: HUP+TERM: the copy exits")
    time.sleep(0.3)
    rest = [p for p in srv.pids()[2:] if os.path.exists(f"/proc/{p}") and not zombies_of_self(p)]
    check(len(rest) <= 1, f"signals: HUP+TERM: at most one successor runs: {rest}")
    if rest:
        check(request(port), "signals: HUP+TERM: the successor serves")
    stop_all(srv, rest)
    # A storm of SIGTERMs (an impatient operator, a supervisor that repeats itself): the
    # first drains, the others are ignored -- also while the process exits -- so the
    # exit status is 0 and the drain line is printed, every time.
    for n in range(5):
        srv = Server([BIN] + ARGS)
        port = srv.port()
        srv.wait(r": pid \d+ ")
        check(request(port), "signals: storm: served")
        end = time.time() + 10
        while srv.p.poll() is None and time.time() < end:
            try:
                srv.p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.0005)
        rc = srv.p.wait(10)
        check(rc == 0 and srv.wait(r"^drain ", stream="out", timeout=2),
              f"signals: SIGTERM storm #{n}: exit 0 (rc={rc}) with its drain line: {srv.out}")
    # --threads 2 and a SIGHUP under load.
    srv = Server([BIN] + ARGS + ["--threads", "2"])
    port = srv.port()
    srv.wait(r": pid \d+ ")
    stop, res = threading.Event(), []
    ts = [threading.Thread(target=load, args=(port, stop, res)) for _ in range(2)]
    [t.start() for t in ts]
    time.sleep(0.2)
    os.kill(srv.pids()[0], signal.SIGHUP)
    check(srv.wait(r": pid \d+ backend \S+ threads 2", 2), "signals: --threads 2: the successor has 2 threads")
    try:
        rc = srv.p.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, f"signals: --threads 2: the old copy exits 0 (rc={rc})")
    time.sleep(0.3)
    stop.set()
    [t.join() for t in ts]
    check(len(res) > 0 and all(res), f"signals: --threads 2: {res.count(False)} of {len(res)} failed")
    stop_all(srv, srv.pids()[1:])

def case_listenfds():
    env0 = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "LW_"))}
    env0["LW_BACKEND"] = os.environ.get("LW_BACKEND", "epoll")
    # Another process's LISTEN_PID: ignored, --listen is used.
    env = dict(env0, LISTEN_PID="1", LISTEN_FDS="1")
    srv = Server([BIN] + ARGS, env=env)
    port = srv.port()
    check(request(port), "listenfds: LISTEN_PID of another process is ignored (own --listen)")
    srv.p.send_signal(signal.SIGTERM); srv.p.wait(10)
    # Malformed or impossible: refused with exit 1, nothing served.
    def refused(env, what, pass_fds=()):
        p = subprocess.run(["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', BIN] + ARGS,
                           env=env, pass_fds=pass_fds, capture_output=True, text=True, timeout=10)
        check(p.returncode != 0 and "listening on" not in p.stdout and "Sanitizer" not in p.stderr,
              f"listenfds: {what}: refused (rc={p.returncode}, out={p.stdout!r}, err={p.stderr.strip()!r})")
    refused(dict(env0, LISTEN_FDS="garbage"), "LISTEN_FDS=garbage")
    refused(dict(env0, LISTEN_FDS="99999999999"), "LISTEN_FDS huge")
    refused(dict(env0, LISTEN_FDS="3000"), "LISTEN_FDS past the open descriptors")
    # fd 3 a pipe, a UDP socket, a TCP socket that does not listen.
    r, w = os.pipe()
    os.dup2(r, 3) if r != 3 else None
    refused(dict(env0, LISTEN_FDS="1"), "fd 3 is a pipe", pass_fds=(3,))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    os.dup2(u.fileno(), 3)
    refused(dict(env0, LISTEN_FDS="1"), "fd 3 is a UDP socket", pass_fds=(3,))
    tcp = socket.socket(); tcp.bind(("127.0.0.1", 0))
    os.dup2(tcp.fileno(), 3)
    refused(dict(env0, LISTEN_FDS="1"), "fd 3 is a TCP socket that does not listen", pass_fds=(3,))
    un = socket.socket(socket.AF_UNIX); un.bind(""); un.listen(4)
    os.dup2(un.fileno(), 3)
    refused(dict(env0, LISTEN_FDS="1"), "fd 3 is a listening Unix socket", pass_fds=(3,))
    os.close(3); os.close(w); os.close(r) if r != 3 else None
    u.close(); tcp.close(); un.close()
    # LISTEN_FDS=0 (ours): nothing passed, --listen is used.
    p = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', BIN] + ARGS, env=dict(env0, LISTEN_FDS="0"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    check(line.startswith("listening on 127.0.0.1:"), f"listenfds: LISTEN_FDS=0 falls back to --listen ({line!r})")
    p.send_signal(signal.SIGTERM); p.communicate(timeout=10)

for c in CASES:
    globals()["case_" + c]()
time.sleep(0.2)
for srv in SERVERS:  # an ASan build's report, if any, is on a copy's stderr
    check(not srv.lines(r"Sanitizer"), f"no sanitizer report: {[l for l in srv.err if 'Sanitizer' in l]}")
print("restart_attack:", "FAILED " + str(failures) if failures else "all ok", flush=True)
sys.exit(1 if failures else 0)
