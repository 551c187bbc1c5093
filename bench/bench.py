#!/usr/bin/env python3
"""bench.py - runs the servers and bench/loadgen side by side, prints one table, writes
bench/results/{runs.csv,summary.csv,summary.txt,chart.png}. Called by bench/run.sh, which
builds the programs first. See bench/README.md.

Every server is pinned to CPU 0 and the load generator to CPU 1 (taskset). Every figure is
the median of >= 5 runs; servers are interleaved run by run so that drift hits them all.
Every process is bounded in time (subprocess timeouts; loadgen bounds itself)."""
import argparse, csv, os, resource, shutil, signal, socket, statistics, subprocess, sys
import tempfile, time

# raw: raw_epoll, the naive floor (close() at once); raw-linger: the same program with
# the least a graceful close must add (shutdown, read to the peer's FIN, close): the
# graceful floor, for the respond workloads only.
SERVERS = ["raw", "raw-linger", "lastword", "lw-uring", "libuv", "libevent", "nginx"]
RESPOND_ONLY = {"raw-linger"}
SERVER_CPU, LOAD_CPU = "0", "1"
BASE_PORT = 17100

A = None  # parsed arguments


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------
class Server:
    """One server process. pid: the process that serves (nginx: the worker);
    sig_pid: the one to signal (nginx: the master)."""

    def __init__(self, name, port, nbytes, mode, valgrind=None):
        self.name, self.port, self.nbytes, self.mode = name, port, nbytes, mode
        self.tmp = None
        pre = ["taskset", "-c", SERVER_CPU] + (valgrind or [])
        listen = f"127.0.0.1:{port}"
        env = dict(os.environ)
        if name in ("lastword", "lw-uring"):
            # lw-uring: the same programs on the io_uring backend (LW_BACKEND).
            env["LW_BACKEND"] = "uring" if name == "lw-uring" else "epoll"
            if mode == "echo":
                cmd = [os.path.join(A.bin, "lw_echo"), "--listen", listen]
            else:
                cmd = [A.respond, "--listen", listen, "--bytes", str(nbytes), "--close", "graceful"]
        elif name in ("raw", "raw-linger"):
            m = "respond-linger" if name == "raw-linger" and mode == "respond" else mode
            cmd = [os.path.join(A.bin, "raw_epoll"), "--listen", listen, "--bytes", str(nbytes), "--mode", m]
        elif name == "libuv":
            cmd = [os.path.join(A.bin, "uv_server"), "--listen", listen, "--bytes", str(nbytes), "--mode", mode]
        elif name == "libevent":
            cmd = [os.path.join(A.bin, "ev_server"), "--listen", listen, "--bytes", str(nbytes), "--mode", mode]
        elif name == "nginx":
            cmd = self.nginx_setup(valgrind is not None)
        else:
            raise ValueError(name)
        self.proc = subprocess.Popen(pre + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        self.sig_pid = self.proc.pid
        self.pid = self.proc.pid
        self.wait_ready(60 if valgrind else 10)
        if name == "nginx" and valgrind is None:
            self.pid = self.nginx_worker()

    def nginx_setup(self, single):
        self.tmp = tempfile.mkdtemp(prefix="lw-bench-nginx-")
        os.chmod(self.tmp, 0o755)
        www = os.path.join(self.tmp, "www")
        os.mkdir(www)
        with open(os.path.join(www, "f"), "wb") as f:
            f.write(bytes(i % 251 for i in range(self.nbytes)))
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(self.tmp, d))
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        t = self.tmp
        conf = f"""
worker_processes 1;
daemon off;
master_process {"off" if single else "on"};
user root;
pid {t}/nginx.pid;
error_log {t}/error.log error;
worker_rlimit_nofile {nofile};
events {{ worker_connections {max(1024, nofile - 100)}; use epoll; multi_accept on; accept_mutex off; }}
http {{
  access_log off;
  sendfile on;
  keepalive_timeout 0;
  lingering_close on;
  client_body_temp_path {t}/client_body;
  proxy_temp_path {t}/proxy;
  fastcgi_temp_path {t}/fastcgi;
  uwsgi_temp_path {t}/uwsgi;
  scgi_temp_path {t}/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    root {www};
    location / {{ }}
  }}
}}
"""
        with open(os.path.join(t, "nginx.conf"), "w") as f:
            f.write(conf)
        return ["nginx", "-p", t, "-c", os.path.join(t, "nginx.conf"), "-e", os.path.join(t, "error.log")]

    def wait_ready(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.proc.stderr.read().decode()[:500]}")
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                s.close()
                time.sleep(0.05)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port}")

    def nginx_worker(self):
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        for _ in range(100):
            try:
                kids = open(path).read().split()
            except OSError:
                kids = []
            if kids:
                return int(kids[0])
            time.sleep(0.05)
        raise RuntimeError("nginx worker not found")

    def stop(self, sig=signal.SIGKILL, timeout=10):
        if self.proc.poll() is None:
            try:
                os.kill(self.sig_pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self.name == "nginx" and self.pid != self.sig_pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def start_set(names, nbytes, mode, base):
    out = {}
    for i, n in enumerate(names):
        if mode == "echo" and n == "nginx":
            continue
        out[n] = Server(n, base + i, nbytes, mode)
    return out


def stop_set(servers):
    for s in servers.values():
        s.stop()
    time.sleep(0.2)


# ------------------------------------------------------------------------------------
# Load
# ------------------------------------------------------------------------------------
def loadgen(srv, args, timeout):
    mode = args.pop("mode", None)
    if mode is None:
        mode = "http" if srv.name == "nginx" else "respond"
    cmd = ["taskset", "-c", LOAD_CPU, os.path.join(A.bin, "loadgen"), "--port", str(srv.port),
           "--mode", mode, "--server-pid", str(srv.pid)]
    for k, v in args.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  loadgen timed out: {' '.join(cmd)}")
        return None
    if p.returncode != 0:
        log(f"  loadgen failed ({p.returncode}): {p.stderr.strip()[:300]}")
        return None
    d = {}
    for kv in p.stdout.split():
        k, _, v = kv.partition("=")
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
    return d


RUNS = []      # (workload, metric, server, run, value)
NOTES = []     # correctness problems seen


def record(workload, metric, server, run, value):
    RUNS.append((workload, metric, server, run, value))


def check_churn(workload, server, r, allow_reset):
    bad = int(r.get("bad", 0))
    resets = int(r.get("reset", 0))
    short = int(r.get("short", 0))
    if bad or short or (resets and not allow_reset):
        NOTES.append(f"{workload} {server}: bad={bad} short={short} reset={resets} "
                     f"connect_err={int(r.get('connect_err', 0))}")


def w_churn(servers_names, runs):
    confs = [(64, 64), (64, 65536), (512, 64), (512, 65536)]
    if A.quick:
        confs = [(64, 64), (64, 65536)]
    dur = A.duration
    for nbytes in sorted({b for _, b in confs}):
        srv = start_set(servers_names, nbytes, "respond", BASE_PORT)
        try:
            for s in srv.values():  # warm-up
                loadgen(s, {"conc": 64, "duration": 0.3, "bytes": nbytes}, 30)
            for conc in sorted({c for c, b in confs if b == nbytes}):
                wl = f"churn c={conc} {fmt_bytes(nbytes)}"
                log(f"{wl}: {runs} runs x {len(srv)} servers x {dur}s")
                for run in range(runs):
                    order = list(srv)
                    order = order[run % len(order):] + order[:run % len(order)]
                    for name in order:
                        r = loadgen(srv[name], {"conc": conc, "duration": dur, "bytes": nbytes}, dur + 30)
                        if not r:
                            continue
                        record(wl, "conn/s", name, run, r["rate"])
                        record(wl, "server µs/conn", name, run, r["server_us_per_op"])
                        check_churn(wl, name, r, allow_reset=False)
        finally:
            stop_set(srv)


def w_rstloss(servers_names, runs):
    nbytes, count = 1 << 20, (200 if A.quick else 400)
    wl = "RST-loss 1 MiB +64 KiB unread"
    log(f"{wl}: {runs} runs x {count} conns")
    srv = start_set(servers_names, nbytes, "respond", BASE_PORT + 20)
    try:
        for run in range(runs):
            for name, s in srv.items():
                r = loadgen(s, {"conc": 50, "count": count, "duration": 20, "bytes": nbytes,
                                "extra": 65536, "rcvbuf": 65536}, 60)
                if not r:
                    continue
                total = r["conns"] * nbytes
                record(wl, "bytes lost %", name, run, 100.0 * r["bytes_lost"] / total if total else 0)
                record(wl, "resets", name, run, r["reset"])
                if r.get("bad", 0):
                    NOTES.append(f"{wl} {name}: {int(r['bad'])} responses with wrong bytes")
    finally:
        stop_set(srv)


def w_echo(servers_names, runs):
    conc, dur = 1000, A.duration
    wl = "echo 1000 conns 64 B"
    log(f"{wl}: {runs} runs x {dur}s")
    srv = start_set([n for n in servers_names if n not in RESPOND_ONLY], 64, "echo", BASE_PORT + 40)
    try:
        for s in srv.values():
            loadgen(s, {"mode": "echo", "conc": conc, "duration": 0.3, "msg": 64}, 60)
        for run in range(runs):
            for name, s in srv.items():
                r = loadgen(s, {"mode": "echo", "conc": conc, "duration": dur, "msg": 64}, dur + 60)
                if not r:
                    continue
                record(wl, "msg/s", name, run, r["rate"])
                record(wl, "server µs/msg", name, run, r["server_us_per_op"])
                if r.get("errors", 0) or r.get("bad", 0):
                    NOTES.append(f"{wl} {name}: errors={int(r['errors'])} bad={int(r['bad'])}")
    finally:
        stop_set(srv)


def w_idle(servers_names, runs, conns, drain):
    """Memory per idle connection (a fresh server each run), then the drain."""
    servers_names = [n for n in servers_names if n not in RESPOND_ONLY]  # as raw here
    wl = f"idle {conns // 1000}k conns"
    log(f"{wl}: {runs} runs (memory{' + drain' if drain else ''})")
    src_addrs = max(1, (conns + 25000) // 25000)
    for run in range(runs):
        for i, name in enumerate(servers_names):
            s = Server(name, BASE_PORT + 60 + i, 64, "respond")
            try:
                time.sleep(0.1)
                args = {"mode": "idle", "conc": conns, "src_addrs": src_addrs, "grace": 20}
                if drain and name != "nginx":
                    args["signal"] = "TERM"
                    if s.sig_pid != s.pid:
                        args["signal_pid"] = s.sig_pid
                r = loadgen(s, args, 120)
                if not r:
                    continue
                if r["conns"] < conns:
                    NOTES.append(f"{wl} {name}: only {int(r['conns'])} of {conns} connected")
                record(wl, "RSS B/conn", name, run, r["rss_bytes_per_conn"])
                if drain and name == "nginx":
                    note = ("drain nginx: n/a - on SIGQUIT nginx waits for connections that have "
                            "sent no request until client_header_timeout (60 s) instead of closing them")
                    if note not in NOTES:
                        NOTES.append(note)
                elif drain:
                    ended = int(r.get("drain_ended", 0))
                    record(f"drain {conns // 1000}k conns", "ms to end all", name, run,
                           r["drain_ms"] if ended == r["conns"] else float("nan"))
                    ex = r["server_exit_ms"]
                    record(f"drain {conns // 1000}k conns", "ms to exit", name, run, ex if ex >= 0 else float("nan"))
                    if ended != r["conns"]:
                        NOTES.append(f"drain {name}: {ended} of {int(r['conns'])} ended within the bound")
                    if r.get("drain_resets", 0):
                        NOTES.append(f"drain {name}: {int(r['drain_resets'])} connections reset")
            finally:
                s.stop()
            time.sleep(0.2)


def callgrind_total(path):
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    return total


def w_instr(servers_names, runs):
    """User-space instructions per connection lifecycle under callgrind: zero the
    counters, run a fixed number of connections, dump; `runs` times per server."""
    n = 300 if A.quick else 1000
    wl = "instructions 64 B churn"
    log(f"{wl}: {runs} x {n} conns per server under callgrind")
    for i, name in enumerate(servers_names):
        d = tempfile.mkdtemp(prefix="lw-bench-cg-")
        out = os.path.join(d, "cg.out")
        vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-line=no"]
        try:
            s = Server(name, BASE_PORT + 80 + i, 64, "respond", valgrind=vg)
        except Exception as e:  # noqa: BLE001
            NOTES.append(f"{wl} {name}: could not run under valgrind ({e})")
            continue
        try:
            loadgen(s, {"conc": 16, "count": 200, "duration": 30, "bytes": 64}, 60)
            for run in range(runs):
                subprocess.run(["callgrind_control", "-z", str(s.pid)], capture_output=True, timeout=30)
                r = loadgen(s, {"conc": 16, "count": n, "duration": 60, "bytes": 64}, 120)
                before = set(os.listdir(d))
                subprocess.run(["callgrind_control", "-d", str(s.pid)], capture_output=True, timeout=30)
                dumps = sorted(set(os.listdir(d)) - before)
                if not r or not dumps or r["conns"] != n:
                    NOTES.append(f"{wl} {name}: run {run} incomplete")
                    continue
                tot = callgrind_total(os.path.join(d, dumps[-1]))
                if tot:
                    record(wl, "instr/conn (user)", name, run, tot / n)
        finally:
            s.stop(signal.SIGKILL)
            shutil.rmtree(d, ignore_errors=True)


def strace_calls(path):
    """Total calls and io_uring_enter calls from an `strace -c` summary file."""
    total = enter = 0
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) >= 5 and p[-1] == "total":
                    total = int(p[3])
                elif len(p) >= 5 and p[-1] == "io_uring_enter":
                    enter = int(p[3])
    except OSError:
        return None, None
    return total or None, enter


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def w_syscalls(servers_names, runs):
    """Syscalls per connection lifecycle (64 B churn, c=64) under `strace -c -f`: a
    fresh server per run (its start-up calls, ~100, are amortized over n), n
    connections, then SIGINT to strace, which writes the summary and detaches."""
    n = 500 if A.quick else 2000
    wl = "syscalls 64 B churn"
    if not shutil.which("strace"):
        NOTES.append(f"{wl}: strace missing (scripts/deps.sh bench)")
        return
    log(f"{wl}: {runs} x {n} conns per server under strace -c -f")
    for run in range(runs):
        for i, name in enumerate(servers_names):
            d = tempfile.mkdtemp(prefix="lw-bench-st-")
            out = os.path.join(d, "strace.txt")
            try:
                s = Server(name, BASE_PORT + 90 + i, 64, "respond",
                           valgrind=["strace", "-c", "-f", "-o", out])
            except Exception as e:  # noqa: BLE001
                NOTES.append(f"{wl} {name}: could not run under strace ({e})")
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                r = loadgen(s, {"conc": 64, "count": n, "duration": 60, "bytes": 64}, 120)
            finally:
                # Kill the traced server (strace's descendants): strace then exits by
                # itself and writes the summary.
                for pid in descendants(s.proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    s.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
                s.stop(signal.SIGKILL)
            total, enter = strace_calls(out)
            shutil.rmtree(d, ignore_errors=True)
            if not r or r["conns"] != n or not total:
                NOTES.append(f"{wl} {name}: run {run} incomplete")
                continue
            record(wl, "syscalls/conn", name, run, total / n)
            if name == "lw-uring":
                record(wl, "io_uring_enter/conn", name, run, enter / n)


def fmt_bytes(n):
    return f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


# ------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------
HIGHER_BETTER = {"conn/s", "msg/s"}
NO_RATIO = {"bytes lost %", "resets"}  # zero for the good servers: a ratio means nothing


def summarize():
    groups = {}
    for wl, metric, server, run, v in RUNS:
        groups.setdefault((wl, metric), {}).setdefault(server, []).append(v)
    rows = []
    for (wl, metric), by in groups.items():
        med = {}
        for s, vals in by.items():
            vals = [v for v in vals if v == v]  # drop NaN
            med[s] = (statistics.median(vals), min(vals), max(vals), len(vals)) if vals else None
        for s in SERVERS:
            if s not in by:
                continue
            m = med.get(s)

            def ratio(ref):
                r = med.get(ref)
                if not m or not r or metric in NO_RATIO:
                    return None
                a, b = m[0], r[0]
                if metric in HIGHER_BETTER:
                    return a / b if b else None
                return b / a if a else None  # lower is better: ref / value

            rows.append({"workload": wl, "metric": metric, "server": s,
                         "median": m[0] if m else None, "min": m[1] if m else None,
                         "max": m[2] if m else None, "n": m[3] if m else 0,
                         "x_raw": ratio("raw"), "x_libuv": ratio("libuv")})
    return rows


def fnum(v, metric=""):
    if v is None:
        return "n/a"
    if metric.startswith("instr"):
        return f"{v:,.0f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fratio(v):
    return "n/a" if v is None else f"{v:.2f}"


def targets(rows):
    get = {(r["workload"], r["metric"], r["server"]): r for r in rows}
    out = []

    def med(wl, metric, s):
        r = get.get((wl, metric, s))
        return r["median"] if r else None

    for wl in sorted({r["workload"] for r in rows if r["workload"].startswith("churn")}):
        for metric in ("conn/s", "server µs/conn"):
            lw = med(wl, metric, "lastword")
            for ref, need in (("raw", 0.90), ("libuv", 1.0), ("libevent", 1.0)):
                rv = med(wl, metric, ref)
                if lw is None or rv is None:
                    continue
                ratio = lw / rv if metric == "conn/s" else rv / lw
                out.append((f"{wl} {metric}: lastword >= {need:.2f}x {ref}", ratio, ratio >= need))
    for wl in sorted({r["workload"] for r in rows if r["workload"].startswith("echo")}):
        for metric in ("msg/s", "server µs/msg"):
            lw, rv = med(wl, metric, "lastword"), med(wl, metric, "libuv")
            if lw and rv:
                ratio = lw / rv if metric == "msg/s" else rv / lw
                out.append((f"{wl} {metric}: lastword >= 1.00x libuv", ratio, ratio >= 1.0))
    for wl in sorted({r["workload"] for r in rows if r["workload"].startswith("RST")}):
        vals = [v for (w, m, s, _, v) in RUNS if w == wl and m == "bytes lost %" and s == "lastword"]
        if vals:
            out.append((f"{wl}: lastword loses 0 bytes (max over runs, %)", max(vals), max(vals) == 0))
    for wl in sorted({r["workload"] for r in rows if r["workload"].startswith("idle")}):
        lw, rv = med(wl, "RSS B/conn", "lastword"), med(wl, "RSS B/conn", "libuv")
        if lw is not None and rv is not None:
            out.append((f"{wl} RSS/conn: lastword <= libuv ({fnum(lw)} vs {fnum(rv)} B)",
                        rv / lw if lw else None, lw <= rv))
    return out


def report(rows, header):
    lines = [header, ""]
    w = max(len(r["workload"]) for r in rows) if rows else 10
    hdr = f"{'workload':<{w}}  {'metric':<18} {'server':<9} {'median':>11} {'min..max':>23} {'x raw':>6} {'x libuv':>7}"
    lines += [hdr, "-" * len(hdr)]
    last = None
    for r in rows:
        key = (r["workload"], r["metric"])
        if last and key != last:
            lines.append("")
        last = key
        rng = f"{fnum(r['min'], r['metric'])}..{fnum(r['max'], r['metric'])}" if r["median"] is not None else ""
        lines.append(f"{r['workload']:<{w}}  {r['metric']:<18} {r['server']:<9} "
                     f"{fnum(r['median'], r['metric']):>11} {rng:>23} {fratio(r['x_raw']):>6} "
                     f"{fratio(r['x_libuv']):>7}")
    lines += ["", "x raw / x libuv: how many times better than the reference (>1 better): value/ref",
              "for rates, ref/value for costs (µs, bytes, ms, instructions). Medians of n runs.", ""]
    lines.append("Targets (issue 6):")
    for name, ratio, ok in targets(rows):
        lines.append(f"  [{'MET' if ok else 'MISSED'}] {name}: {fratio(ratio) if not isinstance(ratio, float) or ratio == ratio else ratio}")
    if NOTES:
        lines += ["", "Notes (correctness checks):"] + [f"  - {n}" for n in NOTES]
    return "\n".join(lines)


def write_outputs(rows, text):
    os.makedirs(A.results, exist_ok=True)
    with open(os.path.join(A.results, "runs.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "metric", "server", "run", "value"])
        wr.writerows(RUNS)
    with open(os.path.join(A.results, "summary.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "metric", "server", "median", "min", "max", "n", "x_raw", "x_libuv"])
        for r in rows:
            wr.writerow([r[k] for k in ("workload", "metric", "server", "median", "min", "max", "n", "x_raw", "x_libuv")])
    with open(os.path.join(A.results, "summary.txt"), "w") as f:
        f.write(text + "\n")
    chart(rows)


def chart(rows):
    """Clustered bars: each server's performance relative to raw epoll (x raw)."""
    if not shutil.which("gnuplot"):
        log("gnuplot missing: no chart")
        return
    wanted = [(r["workload"], r["metric"]) for r in rows if r["server"] == "raw"
              and r["metric"] in ("conn/s", "server µs/conn", "msg/s", "server µs/msg",
                                  "RSS B/conn", "instr/conn (user)")]
    seen, cats = set(), []
    for k in wanted:
        if k not in seen:
            seen.add(k)
            cats.append(k)
    if not cats:
        return
    get = {(r["workload"], r["metric"], r["server"]): r for r in rows}
    servers = [s for s in SERVERS if any((c[0], c[1], s) in get for c in cats)]
    dat = os.path.join(A.results, "chart.dat")
    with open(dat, "w") as f:
        f.write("category " + " ".join(servers) + "\n")
        for wl, metric in cats:
            label = f"{wl} {metric}".replace(" ", "_").replace('"', "")
            vals = []
            for s in servers:
                r = get.get((wl, metric, s))
                vals.append(f"{r['x_raw']:.3f}" if r and r["x_raw"] is not None else "0")
            f.write(f'"{label}" ' + " ".join(vals) + "\n")
    png = os.path.join(A.results, "chart.png")
    gp = f"""set terminal pngcairo size 1400,700 noenhanced font ",9"
set output "{png}"
set title "lastword bench: performance relative to the raw-epoll floor (x raw; higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set xtics rotate by -30 scale 0
set key top right
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1
plot for [i=2:{len(servers) + 1}] "{dat}" using i:xtic(1) title columnheader(i)
"""
    r = subprocess.run(["gnuplot"], input=gp, text=True, capture_output=True, timeout=60)
    if r.returncode != 0:
        gp = gp.replace("pngcairo", "png")
        r = subprocess.run(["gnuplot"], input=gp, text=True, capture_output=True, timeout=60)
    if r.returncode != 0:
        log("gnuplot: " + r.stderr[:300])


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--respond", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=None, help="seconds per timed run")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--workloads", default="churn,rstloss,echo,idle,syscalls,instr,restart")
    ap.add_argument("--httpd", required=True)
    ap.add_argument("--restart-runs", type=int, default=3, help="runs per server (quick: 1)")
    ap.add_argument("--restart-gap", type=float, default=0.1,
                    help="seconds between a new copy being up and the next restart")
    A = ap.parse_args()
    if A.duration is None:
        A.duration = 0.5 if A.quick else 2.0
    A.runs = max(A.runs, 5)
    nofile = raise_nofile()
    names = [s for s in A.servers.split(",") if s in SERVERS]
    if "nginx" in names and not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        log("nginx missing: skipped")
        names.remove("nginx")
    os.environ["PATH"] += ":/usr/sbin:/sbin"
    wls = A.workloads.split(",")
    t0 = time.time()
    if "churn" in wls:
        w_churn(names, A.runs)
    if "rstloss" in wls:
        w_rstloss(names, A.runs)
    if "echo" in wls:
        w_echo(names, A.runs)
    if "idle" in wls:
        conns = 10000
        if nofile < conns + 200:
            conns = max(1000, (nofile - 200) // 1000 * 1000)
            NOTES.append(f"RLIMIT_NOFILE {nofile}: idle/drain with {conns} connections")
        w_idle(names, A.runs, conns, drain=True)
        if not A.quick:
            if nofile >= 100000 + 200:
                w_idle(names, A.runs, 100000, drain=False)
            else:
                NOTES.append(f"100k idle connections skipped: RLIMIT_NOFILE hard limit {nofile} "
                             f"(raising it needs CAP_SYS_RESOURCE)")
    if "syscalls" in wls:
        w_syscalls(names, A.runs)
    if "instr" in wls and shutil.which("valgrind"):
        w_instr(names, A.runs)
    restart_text = None
    if "restart" in wls:
        import restart  # bench/restart.py
        A.kaidle_conns = 10000 if nofile >= 10000 + 200 else max(1000, (nofile - 200) // 1000 * 1000)
        restart_text = restart.workload(A, record, NOTES, log)
    rows = summarize()
    hdr = (f"lastword bench ({'quick' if A.quick else 'full'}): {time.strftime('%Y-%m-%d %H:%M')}, "
           f"{os.uname().release}, {os.cpu_count()} CPUs; servers on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}; "
           f"{A.runs} runs per figure, {A.duration}s per timed run; took {time.time() - t0:.0f}s")
    text = report(rows, hdr)
    if restart_text:
        os.makedirs(A.results, exist_ok=True)
        with open(os.path.join(A.results, "restart.txt"), "w") as f:
            f.write(hdr + "\n\n" + restart_text + "\n")
        with open(os.path.join(A.results, "restart_runs.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["workload", "metric", "server", "run", "value"])
            wr.writerows(r for r in RUNS if r[0].startswith(("restart", "drain ", "churn c=64 64 B --threads")))
        if wls == ["restart"]:  # the other workloads' files stay as they are
            print(hdr + "\n\n" + restart_text)
            print(f"\nwrote {A.results}/restart.txt, restart_runs.csv")
            return
        text += "\n\n" + restart_text
    print(text)
    write_outputs(rows, text)
    print(f"\nwrote {A.results}/runs.csv, summary.csv, summary.txt, chart.png")


if __name__ == "__main__":
    main()
