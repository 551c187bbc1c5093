"""restart.py - the "restart" workload of bench.py (bench/README.md, "Restart").

A load of new connections and keep-alive requests (bench/restartload) runs without pause
while the server is restarted N times (20; quick 5):
  respond / httpd   SIGHUP: the new copy takes the listening socket over, the old one
                    drains (both backends)
  httpd stop+start  SIGTERM, wait for the exit, start a new process (the naive restart)
  nginx             `nginx -s reload` (master + 1 worker), with and without `reuseport`
Then: the drain of 10k keep-alive connections on httpd (SIGTERM), and respond
--threads 2 against --threads 1 on churn (interleaved, as bench/ab.sh).

Every process is bounded in time; every server runs in its own process group of
descendants that this module started and kills by pid at the end."""
import os, re, shutil, signal, statistics, subprocess, tempfile, threading, time

SERVER_CPU, LOAD_CPU = "0", "1"
FILE_BYTES = 512
PORT = 17400

A = None  # bench.py's parsed arguments
log = print


def pattern_file(d):
    with open(os.path.join(d, "f"), "wb") as f:
        f.write(bytes(i % 251 for i in range(FILE_BYTES)))


class Lines:
    """A process whose stdout/stderr lines are collected; its successors (SIGHUP)
    inherit both pipes, so their lines arrive here too."""

    def __init__(self, cmd, env=None):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True, env=env)
        self.out, self.err, self.lock = [], [], threading.Lock()
        self.threads = [threading.Thread(target=self._pump, args=(f, dst), daemon=True)
                        for f, dst in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _pump(self, f, dst):
        for line in f:
            with self.lock:
                dst.append(line.rstrip("\n"))

    def grep(self, pattern, stream="out"):
        with self.lock:
            src = self.out if stream == "out" else self.err
            return [m for m in (re.match(pattern, l) for l in src) if m]

    def wait(self, pattern, count=1, timeout=10, stream="out"):
        end = time.time() + timeout
        while time.time() < end:
            got = self.grep(pattern, stream)
            if len(got) >= count:
                return got[count - 1]
            time.sleep(0.005)
        raise RuntimeError(f"no line {pattern!r} x{count}: out={self.out[-5:]} err={self.err[-5:]}")


def alive(pid):
    try:
        os.kill(pid, 0)
        return not open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def start_load(port, mode, extra):
    cmd = ["taskset", "-c", LOAD_CPU, os.path.join(A.bin, "restartload"), "--port", str(port),
           "--mode", mode, "--bytes", str(FILE_BYTES), "--duration", "120", "--grace", "5"]
    slots = getattr(A, "slots", 8)
    if mode == "respond":
        cmd += ["--new", str(2 * slots), "--ka", "0"]
    else:
        cmd += ["--new", str(slots), "--ka", str(slots), "--path", "/f"]
    return subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_load(p):
    p.send_signal(signal.SIGUSR1)
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    d = {}
    for kv in out.split():
        k, _, v = kv.partition("=")
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
    if p.returncode != 0 or "requests" not in d:
        raise RuntimeError(f"restartload failed ({p.returncode}): {out} {err}")
    return d


# ------------------------------------------------------------------------------------
# One run per kind: start, load, N restarts, stop; returns the client's counts + notes
# ------------------------------------------------------------------------------------
def run_lastword_hup(kind, backend, port, n, www, threads=1):
    binary = A.httpd if kind == "httpd" else A.respond
    args = (["--root", www] if kind == "httpd" else ["--bytes", str(FILE_BYTES)])
    args += getattr(A, "server_extra", ["--threads", str(threads)])
    cmd = ["taskset", "-c", SERVER_CPU, binary, "--listen", f"127.0.0.1:{port}", *args,
           "--backend", backend, "--drain-ms", "5000"]
    srv = Lines(cmd)
    pid_re = r"\S+: pid (\d+) backend (\S+)"
    info = {}
    try:
        m = srv.wait(pid_re, 1, stream="err")
        if m.group(2) != backend:
            raise RuntimeError(f"{kind}: backend {m.group(2)}, not {backend}")
        load = start_load(port, "http" if kind == "httpd" else "respond", [])
        tl = time.time()
        time.sleep(0.3)
        restart_ms, info["restart_at"] = [], []
        for i in range(n):
            pid = int(srv.wait(pid_re, i + 1, stream="err").group(1))
            t0 = time.time()
            os.kill(pid, signal.SIGHUP)
            srv.wait(pid_re, i + 2, stream="err")  # the new copy: signals set, accepting
            restart_ms.append((time.time() - t0) * 1000)
            info["restart_at"].append(round(t0 - tl, 3))
            time.sleep(A.restart_gap)
        time.sleep(0.3)
        r = stop_load(load)
        last = int(srv.wait(pid_re, n + 1, stream="err").group(1))
        os.kill(last, signal.SIGTERM)
        srv.wait(r"^drain ", n + 1, timeout=20)
        drains = [m.group(0) for m in srv.grep(r"^drain .*")]
        info["server_resets"] = sum(int(re.search(r" reset=(\d+)", d).group(1)) for d in drains)
        info["drain_ms"] = statistics.median(int(re.search(r" ms=(\d+)", d).group(1))
                                             for d in drains[:-1]) if n else 0
        info["restart_ms"] = statistics.median(restart_ms) if restart_ms else 0
        r.update(info)
        return r
    finally:
        for m in srv.grep(pid_re, "err"):
            if alive(int(m.group(1))):
                os.kill(int(m.group(1)), signal.SIGKILL)
        srv.p.kill()
        srv.p.wait()


def run_httpd_naive(port, n, www):
    cmd = ["taskset", "-c", SERVER_CPU, A.httpd, "--listen", f"127.0.0.1:{port}", "--root", www,
           "--backend", "epoll", "--drain-ms", "5000"]
    procs = [Lines(cmd)]
    try:
        procs[0].wait(r"listening on ")
        load = start_load(port, "http", [])
        time.sleep(0.3)
        restart_ms = []
        for _ in range(n):
            t0 = time.time()
            procs[-1].p.send_signal(signal.SIGTERM)
            procs[-1].p.wait(timeout=20)
            procs.append(Lines(cmd))
            procs[-1].wait(r"\S+: pid \d+", stream="err")
            restart_ms.append((time.time() - t0) * 1000)
            time.sleep(A.restart_gap)
        time.sleep(0.3)
        r = stop_load(load)
        procs[-1].p.send_signal(signal.SIGTERM)
        procs[-1].p.wait(timeout=20)
        drains = []
        for p in procs:
            for t in p.threads:
                t.join(timeout=5)
            drains += [m.group(0) for m in p.grep(r"^drain .*")]
        r["server_resets"] = sum(int(re.search(r" reset=(\d+)", d).group(1)) for d in drains)
        r["drain_ms"] = statistics.median(int(re.search(r" ms=(\d+)", d).group(1)) for d in drains)
        r["restart_ms"] = statistics.median(restart_ms) if restart_ms else 0
        return r
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.kill()
                p.p.wait()


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
user root;
pid {t}/nginx.pid;
error_log {t}/error.log error;
events {{ worker_connections 4096; use epoll; }}
http {{
  access_log off;
  sendfile on;
  keepalive_timeout 65;
  lingering_close on;
  client_body_temp_path {t}/client_body;
  proxy_temp_path {t}/proxy;
  fastcgi_temp_path {t}/fastcgi;
  uwsgi_temp_path {t}/uwsgi;
  scgi_temp_path {t}/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port} backlog=1024{reuseport};
    root {www};
    location / {{ }}
  }}
}}
"""


def nginx_children(master):
    try:
        return set(int(x) for x in open(f"/proc/{master}/task/{master}/children").read().split())
    except OSError:
        return set()


def run_nginx_reload(port, n, www, reuseport):
    t = tempfile.mkdtemp(prefix="lw-bench-nginx-")
    os.chmod(t, 0o755)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.mkdir(os.path.join(t, d))
    conf = os.path.join(t, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(t=t, port=port, www=www, reuseport=" reuseport" if reuseport else ""))
    base = ["nginx", "-p", t, "-c", conf, "-e", os.path.join(t, "error.log")]
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU] + base, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seen = set()
    try:
        end = time.time() + 10
        while not nginx_children(p.pid) and time.time() < end:
            time.sleep(0.02)
        seen |= nginx_children(p.pid)
        if not seen:
            raise RuntimeError("nginx: no worker")
        time.sleep(0.2)
        load = start_load(port, "http", [])
        time.sleep(0.3)
        restart_ms = []
        for _ in range(n):
            t0 = time.time()
            subprocess.run(base + ["-s", "reload"], check=True, timeout=10,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = time.time() + 10  # the new worker is up
            while not (nginx_children(p.pid) - seen) and time.time() < end:
                time.sleep(0.002)
            seen |= nginx_children(p.pid)
            restart_ms.append((time.time() - t0) * 1000)
            time.sleep(A.restart_gap)
        time.sleep(0.3)
        r = stop_load(load)
        r["restart_ms"] = statistics.median(restart_ms) if restart_ms else 0
        errs = open(os.path.join(t, "error.log")).read().strip().splitlines()
        r["server_errors"] = len(errs)
        return r
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for k in seen:
            if alive(k):
                os.kill(k, signal.SIGKILL)
        shutil.rmtree(t, ignore_errors=True)


# ------------------------------------------------------------------------------------
# Drain of 10k keep-alive connections; --threads 2 vs 1
# ------------------------------------------------------------------------------------
def run_kaidle(port, conns, www, idle_ms):
    srv = Lines(["taskset", "-c", SERVER_CPU, A.httpd, "--listen", f"127.0.0.1:{port}", "--root",
                 www, "--backend", "epoll", "--drain-ms", "10000"])
    try:
        pid = int(srv.wait(r"\S+: pid (\d+)", stream="err").group(1))
        p = subprocess.run(["taskset", "-c", LOAD_CPU, os.path.join(A.bin, "restartload"),
                            "--port", str(port), "--mode", "kaidle", "--conns", str(conns),
                            "--path", "/f", "--bytes", str(FILE_BYTES), "--signal-pid", str(pid),
                            "--idle-ms", str(idle_ms), "--grace", "20"],
                           capture_output=True, text=True, timeout=90)
        d = dict(kv.partition("=")[::2] for kv in p.stdout.split())
        line = srv.wait(r"^drain .*", timeout=20).group(0)
        srv.p.wait(timeout=20)
        d["drain_line"] = line
        d["rc"] = srv.p.returncode
        return d
    finally:
        if srv.p.poll() is None:
            srv.p.kill()
            srv.p.wait()


def run_threads(port, threads, cpus, dur):
    srv = subprocess.Popen(["taskset", "-c", cpus, A.respond, "--listen", f"127.0.0.1:{port}",
                            "--bytes", "64", "--threads", str(threads)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        p = subprocess.run(["taskset", "-c", LOAD_CPU if cpus == SERVER_CPU else "0-1",
                            os.path.join(A.bin, "loadgen"), "--port", str(port), "--mode",
                            "respond", "--conc", "64", "--duration", str(dur), "--bytes", "64",
                            "--server-pid", str(srv.pid)],
                           capture_output=True, text=True, timeout=dur + 30)
        d = {}
        for kv in p.stdout.split():
            k, _, v = kv.partition("=")
            try:
                d[k] = float(v)
            except ValueError:
                pass
        return d
    finally:
        srv.kill()
        srv.wait()


# ------------------------------------------------------------------------------------
# The workload and its table
# ------------------------------------------------------------------------------------
KINDS = [
    # name, label, function
    ("respond-hup-epoll", "respond SIGHUP (epoll)"),
    ("respond-hup-uring", "respond SIGHUP (io_uring)"),
    ("httpd-hup-epoll", "httpd SIGHUP (epoll)"),
    ("httpd-hup-uring", "httpd SIGHUP (io_uring)"),
    ("httpd-hupt2-epoll", "httpd --threads 2 SIGHUP (epoll)"),
    ("httpd-hupt2-uring", "httpd --threads 2 SIGHUP (uring)"),
    ("httpd-naive", "httpd stop+start (SIGTERM)"),
    ("nginx-reload", "nginx -s reload"),
    ("nginx-reload-rp", "nginx -s reload, reuseport"),
]
LASTWORD = {"respond-hup-epoll", "respond-hup-uring", "httpd-hup-epoll", "httpd-hup-uring",
            "httpd-hupt2-epoll", "httpd-hupt2-uring"}
COLS = ["requests", "ok", "connect_fail", "resets", "noresp", "noresp_retryable", "timeout",
        "bad", "max_gap_ms", "restart_ms"]


def run_kind(name, port, n, www):
    if name.startswith("respond-hup") or name.startswith("httpd-hup"):
        kind, how, backend = name.split("-")
        return run_lastword_hup(kind, backend, port, n, www, 2 if how.endswith("t2") else 1)
    if name == "httpd-naive":
        return run_httpd_naive(port, n, www)
    return run_nginx_reload(port, n, www, reuseport=name.endswith("-rp"))


def workload(args, record, notes, logf):
    """Runs everything; returns the text of the restart section (also in summary.txt)."""
    global A, log
    A, log = args, logf
    n = 5 if A.quick else 20
    runs = 1 if A.quick else A.restart_runs
    have_nginx = shutil.which("nginx") is not None
    www = tempfile.mkdtemp(prefix="lw-bench-www-")
    os.chmod(www, 0o755)
    pattern_file(www)
    t0 = time.time()
    res = {}  # name -> list of run dicts
    kinds = [k for k in KINDS if have_nginx or not k[0].startswith("nginx")]
    try:
        log(f"restart: {len(kinds)} servers x {runs} runs x {n} restarts under load")
        port = PORT
        for run in range(runs):
            for name, _ in kinds:
                port += 1
                try:
                    r = run_kind(name, port, n, www)
                except Exception as e:  # noqa: BLE001
                    notes.append(f"restart {name} run {run}: {e}")
                    continue
                res.setdefault(name, []).append(r)
                for c in COLS:
                    record(f"restart x{n}", c, name, run, r.get(c, float("nan")))
                if name in LASTWORD and (r["requests"] != r["ok"] or r["resets"]):
                    notes.append(f"restart {name} run {run}: FAILURES {r}")
        # the drain of 10k keep-alive connections
        conns = A.kaidle_conns
        drains = []
        idles = [0] if A.quick else [0, 1500]
        for run in range(1 if A.quick else 3):
            for idle_ms in idles:
                port += 1
                d = run_kaidle(port, conns, www, idle_ms)
                d["idle_ms"] = idle_ms
                drains.append(d)
                for k in ("drain_ms", "server_exit_ms"):
                    record(f"drain {conns // 1000}k keep-alive, idle {idle_ms} ms", k, "httpd",
                           run, float(d.get(k, "nan")))
        # --threads 2 vs 1, interleaved runs
        thr = {}
        dur = 0.5 if A.quick else 1.0
        placements = [("0", "server on CPU 0, load on CPU 1")]
        if not A.quick:
            placements.append(("0-1", "nothing pinned (server and load share both CPUs)"))
        for run in range(3 if A.quick else 5):
            for cpus, _ in placements:
                for th in ((1, 2) if run % 2 == 0 else (2, 1)):
                    port += 1
                    d = run_threads(port, th, cpus, dur)
                    if "rate" in d:
                        thr.setdefault((cpus, th), []).append((d["rate"], d["server_us_per_op"]))
                        record(f"churn c=64 64 B --threads {th} [{cpus}]", "conn/s", "respond",
                               run, d["rate"])
    finally:
        shutil.rmtree(www, ignore_errors=True)
    return table(res, kinds, n, runs, drains, thr, placements, time.time() - t0)


def med(vals):
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def fmt(v):
    if v != v:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.1f}"


def table(res, kinds, n, runs, drains, thr, placements, took):
    load = open("/proc/loadavg").read().split()[:3]
    L = [f"Restart: {n} restarts per run under a load without pause (restartload: "
         f"16 new-connection slots (respond) / 8 new-connection + 8 keep-alive slots "
         f"(HTTP), {FILE_BYTES} B responses), {runs} run(s) per server, median per run "
         f"[max over runs] of each count; took {took:.0f}s; load average at the end {' '.join(load)}", ""]
    cols = [("requests", "requests", 9), ("failed", "failed", 9), ("connect", "connect_fail", 9),
            ("resets", "resets", 9), ("no resp", "noresp", 9), ("(retry)", "noresp_retryable", 9),
            ("timeout", "timeout", 8), ("gap ms", "max_gap_ms", 12), ("max lat ms", "max_latency_ms", 12),
            ("restart ms", "restart_ms", 10)]
    hdr = f"{'server, restart':<32}" + "".join(f" {h:>{w}}" for h, _, w in cols)
    L += [hdr, "-" * len(hdr)]
    for name, label in kinds:
        rs = res.get(name)
        if not rs:
            L.append(f"{label:<32} (no run)")
            continue
        for r in rs:
            r["failed"] = r["requests"] - r["ok"]

        def cell(k, w):
            vals = [r.get(k, float("nan")) for r in rs]
            m = med(vals)
            s = fmt(m)
            if runs > 1 and k not in ("requests", "restart_ms") and max(vals) != m:
                s += f" [{fmt(max(vals))}]"
            return f" {s:>{w}}"

        L.append(f"{label:<32}" + "".join(cell(k, w) for _, k, w in cols))
    L += ["",
          "failed = requests without a complete, correct response (connect + no resp + timeout +",
          "bad); connect = failed connects (ECONNREFUSED...); resets = connections that saw an",
          "RST; no resp = EOF/RST before the whole response ((retry): of those, on a reused",
          "keep-alive connection before any byte: what a client may retry by itself); gap ms =",
          "longest time without any complete response; max lat ms = slowest complete response",
          "(request start to its last byte); restart ms = signal to the new server accepting."]
    lw = [r for k in LASTWORD for r in res.get(k, [])]
    bad = sum(r["requests"] - r["ok"] + r["resets"] for r in lw)
    L.append(f"lastword, every run: {'ZERO failures, zero resets' if lw and not bad else f'{bad} failures+resets (see notes)'}"
             f" over {sum(int(r['requests']) for r in lw):,} requests and {len(lw) * n} restarts")
    L += ["", f"Drain of {A.kaidle_conns:,} keep-alive connections on httpd (each served one "
          "request, then silent), SIGTERM:"]
    for d in drains:
        L.append(f"  idle {d['idle_ms']:>4} ms before SIGTERM: all ended at the client in "
                 f"{d.get('drain_ms', '?')} ms (resets {d.get('resets', '?')}, ended "
                 f"{d.get('ended', '?')}/{d.get('conns', '?')}), server exit {d.get('server_exit_ms', '?')} ms, "
                 f"exit {d['rc']}: {d['drain_line']}")
    L += ["", "respond --threads 2 vs --threads 1, 64-client churn of 64 B (loadgen, interleaved "
          "runs, medians):"]
    for cpus, label in placements:
        for th in (1, 2):
            v = thr.get((cpus, th), [])
            if v:
                L.append(f"  {label:<48} --threads {th}: {med([a for a, _ in v]):>8,.0f} conn/s "
                         f"{med([b for _, b in v]):6.1f} server us/conn  (n={len(v)})")
    return "\n".join(L)
