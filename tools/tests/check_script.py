#!/usr/bin/env python3
"""Runs a user scenario file through `lastword lab --script --json` and checks that
user scenarios are run and judged (works without root: uses calls and sock_diag only),
and that a broken script is rejected with a line number and exit status 2."""
import json
import os
import subprocess
import sys
import tempfile


def main():
    exe, script = sys.argv[1], sys.argv[2]
    p = subprocess.run([exe, "lab", "--script", script, "--json"], capture_output=True,
                       text=True, timeout=50)
    if p.returncode != 0:
        print("lab --script failed (%d): %s" % (p.returncode, p.stderr))
        return 1
    res = {o["id"]: o for o in map(json.loads, p.stdout.splitlines()) if "id" in o}
    ok = True
    if res.get("half-close-echo", {}).get("verdict") != "HOLDS":
        print("half-close-echo should hold:", res.get("half-close-echo"))
        ok = False
    if res.get("deliberately-wrong", {}).get("verdict") != "CONTRADICTED":
        print("deliberately-wrong should be contradicted:", res.get("deliberately-wrong"))
        ok = False
    with tempfile.NamedTemporaryFile("w", suffix=".lw", delete=False) as f:
        f.write("scenario x\nclient connect\nclient fly 3\nend\n")
        bad = f.name
    try:
        p = subprocess.run([exe, "lab", "--script", bad], capture_output=True, text=True,
                           timeout=10)
    finally:
        os.unlink(bad)
    if p.returncode != 2 or "line 3" not in p.stderr:
        print("a bad script must fail with exit 2 and 'line 3':", p.returncode, p.stderr)
        ok = False
    print("ok" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
