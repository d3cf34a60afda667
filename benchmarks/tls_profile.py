"""Where a TLS benchmark server spends its CPU: OpenSSL, Python, the loop, the kernel.

    python benchmarks/tls_profile.py [--impls cython,stdlib,uvloop] [--cases echo,https]
                                     [--seconds 4] [--tools perf,py-spy] [--out DIR]

Starts the servers of the TLS scenario (``asynchat_core.bench.tls``), one at
a time, drives each with the scenario's load (built-in verifying client for
the 1 KiB echo, ``wrk`` for HTTPS when installed) and profiles the server
process meanwhile:

- ``perf`` (``perf record -e cpu-clock``): samples by shared object, grouped
  as OpenSSL (libssl + libcrypto), the ``_ssl`` module (CPython's glue),
  the Python interpreter, asynchat_core's compiled build, uvloop, the OS
  kernel (system calls, TCP) and libc; plus the top symbols.
- ``py-spy`` (``py-spy record --nonblocking -f raw``): Python stacks; the
  share of samples under the library's TLS code, the ``ssl`` module's
  Python wrappers, the handler and the loop, and the top leaf frames.

Both tools are optional (``pip install py-spy``; perf needs
``perf_event_paranoid`` <= 2 for one's own processes).  Everything listens
on 127.0.0.1; every process started here is stopped by PID.
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from asynchat_core.bench import procs, tls  # noqa: E402
from asynchat_core.bench.impls import discover  # noqa: E402

DSO_GROUPS = [
    ("OpenSSL (libssl, libcrypto)", re.compile(r"libssl|libcrypto")),
    ("CPython _ssl module", re.compile(r"_ssl\.cpython")),
    ("asynchat_core (compiled)", re.compile(r"_chat_c|_loop_c|asynchat_core")),
    ("uvloop", re.compile(r"uvloop|loop\.cpython")),
    ("Python interpreter", re.compile(r"python|libpython")),
    ("OS kernel (syscalls, TCP)", re.compile(r"kernel|vmlinux|\[k\]")),
    ("libc", re.compile(r"libc[.-]|ld-linux")),
]

# py-spy frames read "function (path:line)"; a sample is charged to the
# innermost frame that matches one of these (C code below a Python frame,
# OpenSSL under SSLSocket.read for one, is charged to that frame)
PY_GROUPS = [
    ("ssl.py SSLSocket methods (OpenSSL and the syscall below them)", re.compile(r"[(/]ssl\.py")),
    ("asyncio sslproto (SSLObject + MemoryBIO)", re.compile(r"sslproto")),
    ("asynchat_core.tls (the TLS API)", re.compile(r"asynchat_core/tls\.py")),
    ("hand-written mixin (HandRolledTLS)", re.compile(r"HandRolledTLS")),
    ("handler (bench/servers.py)", re.compile(r"bench/servers\.py")),
    ("asynchat_core loop/chat (compiled code runs inside these frames)",
     re.compile(r"asynchat_core/(asyncore|asynchat|_chat_py|_loop_py)\.py")),
    ("stdlib asyncore/asynchat", re.compile(r"[(/](asyncore|asynchat)\.py")),
    ("asyncio/uvloop event loop", re.compile(r"asyncio/|uvloop")),
]


def _load(case, port, cafile, seconds):
    if case == "echo":
        return tls.builtin_tls_client(kind="echo", port=port, conns=10, depth=32,
                                      duration=seconds, cafile=cafile, size=tls.ECHO_SIZE,
                                      hostname=tls.HOSTNAME)
    if shutil.which("wrk"):
        rate, n = tls.wrk_https(port, 50, seconds)
        return {"rate": rate, "requests": n}
    return tls.builtin_tls_client(kind="http", port=port, conns=50, depth=1,
                                  duration=seconds, cafile=cafile, hostname=tls.HOSTNAME)


def perf_summary(data_file):
    """Percent of samples per DSO group, and the top symbols."""
    out = subprocess.run(["perf", "report", "-i", data_file, "--no-children", "--sort", "dso",
                          "--stdio", "-g", "none"], capture_output=True, text=True, timeout=300)
    groups = collections.Counter()
    for line in out.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*)$", line)
        if not m:
            continue
        pct, dso = float(m.group(1)), m.group(2).strip()
        for name, pattern in DSO_GROUPS:
            if pattern.search(dso):
                groups[name] += pct
                break
        else:
            groups["other: " + dso] += pct
    syms = subprocess.run(["perf", "report", "-i", data_file, "--no-children", "--sort",
                           "dso,sym", "--stdio", "-g", "none"],
                          capture_output=True, text=True, timeout=300)
    top = [line.strip() for line in syms.stdout.splitlines()
           if re.match(r"\s*[\d.]+%", line)][:20]
    return groups, top


def pyspy_summary(raw_file):
    """Samples per group (innermost matching frame) and the top leaf frames."""
    total = 0
    groups = collections.Counter()
    leaves = collections.Counter()
    with open(raw_file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            leaves[frames[-1]] += n
            for frame in reversed(frames):
                name = next((g for g, pattern in PY_GROUPS if pattern.search(frame)), None)
                if name is not None:
                    groups[name] += n
                    break
            else:
                groups["other"] += n
    return total, groups, leaves.most_common(15)


def profile_one(name, target, case, certs, seconds, tools, out_dir, report):
    cafile, certfile, keyfile = certs
    kind = "echo" if case == "echo" else "http"
    proc, port = procs.start_worker_server(tls._ServerTarget(target, certfile, keyfile), kind)
    try:
        result = {}
        loader = threading.Thread(target=lambda: result.update(
            _load(case, port, cafile, seconds + 1.0)))
        loader.start()
        cpu0 = procs.cpu_seconds(proc.pid)
        stem = os.path.join(out_dir, "%s-%s" % (name, case))
        running = []
        if "perf" in tools:
            running.append(("perf", subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", stem + ".perf",
                 "-p", str(proc.pid), "--", "sleep", str(seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        if "py-spy" in tools:
            running.append(("py-spy", subprocess.Popen(
                ["py-spy", "record", "--nonblocking", "-r", "250", "-f", "raw",
                 "-o", stem + ".pyspy.txt", "-d", str(int(seconds)), "-p", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        for _, p in running:
            try:
                p.wait(seconds + 60)
            except subprocess.TimeoutExpired:
                procs.stop(p)
        loader.join(seconds + 120)
        cpu1 = procs.cpu_seconds(proc.pid)
    finally:
        procs.stop(proc)
    rate = result.get("rate", 0.0)
    requests = result.get("requests", 0)
    report.append("## %s, %s: %.0f req/s, server CPU %.1f us/request" % (
        target.label if hasattr(target, "label") else name, case, rate,
        (cpu1 - cpu0) / requests * 1e6 if requests else float("nan")))
    if "perf" in tools and os.path.exists(stem + ".perf"):
        groups, top = perf_summary(stem + ".perf")
        report.append("perf, samples by shared object:")
        for group, pct in groups.most_common():
            report.append("  %6.1f%%  %s" % (pct, group))
        report.append("perf, top symbols:")
        report += ["  " + line for line in top]
    if "py-spy" in tools and os.path.exists(stem + ".pyspy.txt"):
        total, inclusive, leaves = pyspy_summary(stem + ".pyspy.txt")
        report.append("py-spy, %d samples, by innermost matching frame:" % total)
        for group, n in inclusive.most_common():
            report.append("  %6.1f%%  %s" % (100.0 * n / max(1, total), group))
        report.append("py-spy, top leaf frames (self):")
        for frame, n in leaves:
            report.append("  %6.1f%%  %s" % (100.0 * n / max(1, total), frame))
    report.append("")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impls", default="cython,stdlib,uvloop")
    p.add_argument("--cases", default="echo,https")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--tools", default="perf,py-spy")
    p.add_argument("--out", default=None, help="keep the raw profiles here (default: a temp dir)")
    args = p.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t and shutil.which(t)]
    if not tools:
        sys.exit("neither perf nor py-spy found")
    targets, skipped = discover()
    out_dir = args.out or tempfile.mkdtemp(prefix="tls-profile-")
    os.makedirs(out_dir, exist_ok=True)
    report = []
    with tempfile.TemporaryDirectory() as certdir:
        certs = tls.make_certificates(certdir)
        for name in args.impls.split(","):
            if name not in targets:
                report.append("## %s: skipped (%s)\n" % (name, skipped.get(name, "unknown")))
                continue
            for case in args.cases.split(","):
                profile_one(name, targets[name], case, certs, args.seconds, tools, out_dir, report)
    print("\n".join(report))
    print("raw profiles in", out_dir)


if __name__ == "__main__":
    main()
