#!/usr/bin/env python3
"""`lastword check` against servers whose answers are known, each verdict asserted.

usage: check_servers.py LASTWORD respond RESPOND_BIN   (graceful: all pass; naive: unread fails)
       check_servers.py LASTWORD nginx                 (lingering_close off: unread fails; on: passes)
       check_servers.py LASTWORD python                (python3 -m http.server)
       check_servers.py LASTWORD httpd HTTPD_BIN       (examples/httpd: lingering close, idle timeout)
Every server listens on 127.0.0.1 only and is stopped at the end. Exit 77 (skip) when a
server is not installed (scripts/deps.sh installs nginx) or, for the wire and drop-rule
checks, when not root.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

failures = []
PATIENCE = "2000"
BIG = 8 << 20  # larger than the kernel's socket buffers: stall and vanish are testable


def check(cond, what):
    if not cond:
        failures.append(what)
    print(("ok   " if cond else "FAIL ") + what, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def run_check(lw, target, *args):
    t0 = time.time()
    p = subprocess.run([lw, "check", target, "--json", "--patience", PATIENCE] + list(args),
                       capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    res, summary, head = {}, None, None
    for line in p.stdout.splitlines():
        o = json.loads(line)
        if "check" in o:
            res[o["check"]] = o
        elif "summary" in o:
            summary = o["summary"]
        elif "target" in o:
            head = o
    # The summaries pasted in reports: one line per check.
    for k, o in res.items():
        print("     %-10s %-4s %s" % (k, o["verdict"], o["summary"]))
    print("     exit %d in %.1f s; stderr: %s" % (p.returncode, took, p.stderr.strip()[:300]))
    for k, o in res.items():
        for f in ("n", "title", "verdict", "summary", "evidence", "advice", "expected_bytes",
                  "received_bytes", "ending", "value_ms", "server_state", "captured", "wire"):
            if f not in o:
                check(False, "%s has the documented field %s" % (k, f))
    check(head is not None and summary is not None and summary["exit"] == p.returncode,
          "header and summary lines, summary.exit = exit status")
    check(took < 60, "the battery took %.1f s (< 60)" % took)
    return res, p.returncode


def verdicts(res, want):
    for k, v in want.items():
        got = res.get(k, {}).get("verdict")
        ok = got in v if isinstance(v, tuple) else got == v
        check(ok, "%s: %s (got %s)" % (k, v if isinstance(v, str) else "|".join(v), got))


def start_example(argv, name):
    """Starts an example server (respond, httpd) on a free loopback port; returns the
    process and the port from its "listening on" line (None if it printed none)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    for _ in range(5):
        m = re.search(r"listening on .*:(\d+)", p.stdout.readline())
        if m:
            port = int(m.group(1))
            break
    check(port is not None, "%s listens" % name)
    return p, port


def respond(lw, binary):
    opts = ["--idle-timeout-ms", "1000", "--stall-timeout-ms", "1000", "--dead-after-ms", "1000",
            "--deadline-ms", "1500"]
    for mode in ("graceful", "naive"):
        print("== respond --close %s" % mode, flush=True)
        p, port = start_example([binary, "--listen", "127.0.0.1:0", "--close", mode] + opts,
                                "respond")
        try:
            if port is None:
                continue
            res, rc = run_check(lw, "127.0.0.1:%d" % port, "--request", "GET\\n")
            if mode == "graceful":
                want = {k: "pass" for k in ("unread", "upload", "halfclose", "closewait", "idle",
                                            "stall", "vanish", "reset", "timewait")}
                want["keepalive"] = "n-a"  # not HTTP
                verdicts(res, want)
                check(rc == 0, "exit 0 when nothing fails (got %d)" % rc)
                check(900 <= res["idle"]["value_ms"] <= 1600,
                      "idle: ended at the server's 1000 ms idle timeout (%.0f)" % res["idle"]["value_ms"])
                check(res["unread"]["received_bytes"] == res["unread"]["expected_bytes"] == 1 << 20,
                      "unread: all 1 MiB received")
            else:
                verdicts(res, {"unread": "fail", "halfclose": "pass", "closewait": "pass"})
                u = res["unread"]
                check(u["ending"] == "RST" and u["received_bytes"] < u["expected_bytes"],
                      "unread: cut by RST (%d of %d)" % (u["received_bytes"], u["expected_bytes"]))
                if os.geteuid() == 0:
                    check(u["wire"]["server"]["rst_ms"] >= 0, "unread: the server's RST captured")
                check(rc == 1, "exit 1 when a check fails (got %d)" % rc)
        finally:
            p.terminate()
            p.wait(timeout=10)


NGINX_CONF = """daemon off;
master_process off;
%(user)s
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  server {
    listen 127.0.0.1:%(port)d;
    root %(d)s/html;
    lingering_close %(lc)s;
    keepalive_timeout 1s;
    client_header_timeout 1s;
    send_timeout 1s;
  }
}
"""


def nginx(lw):
    ng = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not ng:
        print("skip: nginx not installed (scripts/deps.sh build installs it)")
        return 77
    for lc in ("off", "on"):
        print("== nginx, lingering_close %s" % lc, flush=True)
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(d + "/html")
            with open(d + "/html/big", "wb") as f:
                f.write(os.urandom(BIG))
            port = free_port()
            with open(d + "/nginx.conf", "w") as f:
                f.write(NGINX_CONF % {"d": d, "port": port, "lc": lc,
                                      "user": "user root;" if os.geteuid() == 0 else ""})
            p = subprocess.Popen([ng, "-p", d, "-c", d + "/nginx.conf", "-e", d + "/error.log"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                check(wait_port(port, p), "nginx listens on 127.0.0.1:%d" % port)
                res, rc = run_check(lw, "127.0.0.1:%d" % port, "--http", "/big")
                want = {"unread": "fail" if lc == "off" else "pass",
                        # nginx ends a static response when the client half-closes
                        # (ngx_http_test_reading: "client prematurely closed connection").
                        "halfclose": "fail",
                        "upload": "pass",  # 413 at once, then the body is discarded
                        "closewait": "pass", "idle": "pass", "stall": "pass", "reset": "pass",
                        "timewait": "pass",
                        # the race's outcome is timing: a response, a FIN, or an RST
                        "keepalive": ("pass", "warn")}
                if os.geteuid() == 0:
                    want["vanish"] = "pass"  # send_timeout 1s
                verdicts(res, want)
                if lc == "off":
                    u = res["unread"]
                    check(u["ending"] == "RST" and u["received_bytes"] < BIG,
                          "lingering_close off: the response is cut by the RST")
                check(900 <= res["keepalive"]["value_ms"] <= 1600,
                      "keepalive: measured the 1 s keepalive_timeout (%.0f ms)"
                      % res["keepalive"]["value_ms"])
                check(900 <= res["idle"]["value_ms"] <= 1600,
                      "idle: client_header_timeout 1s (%.0f ms)" % res["idle"]["value_ms"])
                check(rc == 1, "exit 1: a check fails (got %d)" % rc)
            finally:
                p.terminate()
                p.wait(timeout=10)
    return 0


def python_server(lw):
    print("== python3 -m http.server", flush=True)
    with tempfile.TemporaryDirectory() as d:
        with open(d + "/big", "wb") as f:
            f.write(os.urandom(BIG))
        port = free_port()
        p = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                              "--directory", d, str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            check(wait_port(port, p), "http.server listens")
            res, rc = run_check(lw, "127.0.0.1:%d" % port, "--http", "/big")
            want = {"unread": "fail",     # close() with the extra input unread: RST
                    "halfclose": "pass", "closewait": "pass",
                    # a 501 at once, then a reset the upload's send may or may not meet
                    "upload": ("pass", "warn"),
                    "idle": "warn",       # no timeout at all
                    "stall": "warn",      # blocks in write() forever
                    "reset": "pass", "timewait": "pass",
                    "keepalive": "n-a"}   # HTTP/1.0: closes after every response
            if os.geteuid() == 0:
                want["vanish"] = "warn"
            verdicts(res, want)
            check(rc == 1, "exit 1 (got %d)" % rc)
        finally:
            p.terminate()
            p.wait(timeout=10)
    return 0


def httpd(lw, binary):
    """examples/httpd as a user starts it: an idle timeout, nothing else set. It keeps
    every promise a check can test without liveness options (unread input drained, the
    early 413 read, half-close served, keep-alive race answered or closed cleanly); it
    sets no stall timeout or dead_after_ms, so the stalled reader and the vanished client
    are held past the patience: warn, not fail."""
    print("== examples/httpd --idle-timeout-ms 1000", flush=True)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "big.bin"), "wb") as f:
            f.write(os.urandom(BIG))
        p, port = start_example([binary, "--listen", "127.0.0.1:0", "--root", d,
                                 "--idle-timeout-ms", "1000"], "httpd")
        try:
            if port is None:
                return
            res, rc = run_check(lw, "127.0.0.1:%d" % port, "--http", "/big.bin")
            want = {k: "pass" for k in ("unread", "upload", "halfclose", "closewait", "idle",
                                        "reset", "timewait", "keepalive")}
            want["stall"] = ("warn", "pass")
            want["vanish"] = ("warn", "pass", "n-a")  # n-a without root (no drop rule)
            verdicts(res, want)
            check(rc == 0, "exit 0: nothing fails (got %d)" % rc)
            check(900 <= res["idle"]["value_ms"] <= 1600,
                  "idle: ended at httpd's 1000 ms idle timeout (%.0f)" % res["idle"]["value_ms"])
            u = res["unread"]
            check(u["ending"] != "RST" and u["received_bytes"] == u["expected_bytes"],
                  "unread: the whole response, no RST (%d of %d)" % (u["received_bytes"],
                                                                   u["expected_bytes"]))
        finally:
            p.terminate()
            p.wait(timeout=15)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    lw, what = sys.argv[1], sys.argv[2]
    if what == "respond":
        respond(lw, sys.argv[3])
    elif what == "nginx":
        if nginx(lw) == 77:
            return 77
    elif what == "python":
        python_server(lw)
    elif what == "httpd":
        httpd(lw, sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
