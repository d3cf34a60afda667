"""``python -m asynchat_core.bench``: run the scenarios, print rates and ratios."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, Tuple

from . import procs
from .impls import discover
from .report import check_targets, render_markdown, render_text, write_plot
from .tls import run_tls

SCENARIOS = ("kernel", "resp", "echo", "http", "tls")
KERNEL_WORKLOADS = ("lines32-64k", "lines32-4k", "records100", "resp-mix", "push-small", "push-large")
RESP_TESTS = ("ping_inline", "set", "get")
ECHO_IMPLS = ("cython", "baseline", "pure", "stdlib", "asyncio", "asyncio-streams", "uvloop", "uvloop-streams")


def parse_args(argv):
    """Parse the command line into an ``argparse.Namespace``."""
    p = argparse.ArgumentParser(
        prog="python -m asynchat_core.bench",
        description="Benchmark asynchat_core against the stdlib asynchat, asyncio, "
                    "uvloop and redis-server.  Defaults take about two minutes.",
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated subset of %s (default: all)" % ",".join(SCENARIOS))
    p.add_argument("--impls", default="",
                   help="comma-separated implementations to run (default: every one found): "
                        "cython,pure,stdlib,asyncio,uvloop,redis-server (-streams variants follow "
                        "asyncio/uvloop)")
    p.add_argument("--duration", type=float, default=1.5,
                   help="seconds per socket measurement (default 1.5)")
    p.add_argument("--kernel-seconds", type=float, default=0.4,
                   help="seconds per kernel workload and implementation (default 0.4)")
    p.add_argument("--kernel-workloads", default=",".join(KERNEL_WORKLOADS),
                   help="comma-separated kernel workloads (default: all)")
    p.add_argument("--sizes", default="1024,10240",
                   help="line echo message sizes in bytes (default 1024,10240; vmbench adds 102400)")
    p.add_argument("--clients", type=int, default=50, help="connections for RESP and HTTP (default 50)")
    p.add_argument("--echo-clients", type=int, default=10, help="connections for echo (default 10)")
    p.add_argument("--echo-depth", type=int, default=0,
                   help="echo messages in flight per connection (default 0: blocks of about "
                        "32 KiB, so 32 for 1 KiB, 3 for 10 KiB, 1 for 100 KiB; 1 is vmbench's "
                        "strict ping-pong)")
    p.add_argument("--pipeline", type=int, default=16, help="RESP pipelined depth (default 16)")
    p.add_argument("--resp-tests", default=",".join(RESP_TESTS),
                   help="redis-benchmark tests (default ping_inline,set,get)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each socket case this many times per implementation, "
                        "interleaved, and keep the best (default 1)")
    p.add_argument("--builtin-client", action="store_true",
                   help="use the built-in load client even where redis-benchmark/wrk exist")
    p.add_argument("--stdlib-python", default=None,
                   help="interpreter whose stdlib asyncore/asynchat is the baseline "
                        "(default: this one, or python3.11 on 3.12+ without pyasynchat)")
    p.add_argument("--baseline", metavar="DIR", default=None,
                   help="also measure asynchat_core from the checkout DIR (kernels built in "
                        "place), e.g. an earlier revision, side by side as 'baseline'")
    p.add_argument("--json", metavar="FILE", help="write the raw figures as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw a bar chart (needs matplotlib)")
    p.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown (BENCHMARKS.md)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error("unknown scenario %r" % s)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.impls = [s for s in args.impls.split(",") if s]
    args.kernel_workloads = [s for s in args.kernel_workloads.split(",") if s]
    args.resp_tests = [s for s in args.resp_tests.split(",") if s]
    return args


class Run:
    """Collects records and skip reasons, and prints progress."""

    def __init__(self, quiet):
        self.records = []
        self.skipped = {}
        self.errors = []
        self.quiet = quiet
        self.started = time.monotonic()

    def progress(self, text):
        """Print a timestamped progress line to stderr unless quiet."""
        if not self.quiet:
            sys.stderr.write("[%5.1fs] %s\n" % (time.monotonic() - self.started, text))
            sys.stderr.flush()

    def add(self, scenario, case, impl, rate, unit, **extra):
        """Record one measurement and report it."""
        record = {"scenario": scenario, "case": case, "impl": impl, "rate": rate, "unit": unit}
        record.update(extra)
        self.records.append(record)
        note = ""
        if extra.get("cpu_us") is not None:
            note = ", server CPU %.1f us/req" % extra["cpu_us"]
        self.progress("  %-8s %-18s %-16s %12s %s%s" % (
            scenario, case, impl, "{:,.0f}".format(rate), unit, note))

    def skip(self, what, reason):
        """Note, once, that ``what`` was skipped and why."""
        if what not in self.skipped:
            self.skipped[what] = reason
            self.progress("  skipped %s: %s" % (what, reason))

    def error(self, what, exc):
        """Record a failed measurement; the run carries on."""
        self.errors.append("%s: %s" % (what, exc))
        self.progress("  ERROR %s: %s" % (what, exc))


def _chosen(args, names):
    return [n for n in names if not args.impls or n in args.impls
            or (n.endswith("-streams") and n.split("-")[0] in args.impls)]


def run_kernel(args, run, targets):
    """Run the in-process kernel workloads for each chat implementation."""
    for name in _chosen(args, ("cython", "baseline", "pure", "stdlib")):
        target = targets.get(name)
        if target is None:
            continue
        run.progress("kernel: %s" % target.label)
        cmd = target.command("kernel", target.source, str(args.kernel_seconds), *args.kernel_workloads)
        try:
            out = subprocess.run(cmd, env=target.environ(), capture_output=True, text=True,
                                 timeout=120 + 20 * args.kernel_seconds * len(KERNEL_WORKLOADS))
            if out.returncode:
                raise RuntimeError(out.stderr.strip().splitlines()[-1])
            results = json.loads(out.stdout)
        except Exception as exc:  # noqa: BLE001 - one failing cell must not end the run
            run.error("kernel/%s" % name, exc)
            continue
        for workload in args.kernel_workloads:
            r = results[workload]
            extra = {k: v for k, v in r.items() if k not in ("rate", "unit")}
            run.add("kernel", workload, name, r["rate"], r["unit"], **extra)


def _measure(proc_pid, load):
    cpu0 = procs.cpu_seconds(proc_pid)
    rate, requests, extra = load()
    cpu1 = procs.cpu_seconds(proc_pid)
    extra["cpu_us"] = (cpu1 - cpu0) / requests * 1e6 if requests else None
    extra["requests"] = requests
    return rate, extra


def _start_servers(run, scenario, names, targets, kind):
    """Start one server per implementation; return ``{name: (proc, port)}``."""
    servers = {}
    for name in names:
        try:
            if name == "redis-server":
                if not shutil.which("redis-server"):
                    continue
                servers[name] = procs.start_redis_server()
                continue
            base, streams = name.split("-")[0], name.endswith("-streams")
            target = targets.get(base)
            if target is None:
                continue
            servers[name] = procs.start_worker_server(target, kind, streams)
        except Exception as exc:  # noqa: BLE001 - one failing server must not end the run
            run.error("%s/%s server" % (scenario, name), exc)
    return servers


def _interleaved(args, run, scenario, names, targets, kind, cases, load_for):
    """Measure every case on every server, implementations interleaved.

    All servers run at once (idle ones cost nothing) and each case is
    measured on every implementation in turn, ``--rounds`` times keeping
    the best, so a burst of load from elsewhere on the machine hits the
    figures being compared alike instead of one implementation's column.
    """
    servers = _start_servers(run, scenario, names, targets, kind)
    try:
        for name, (proc, port) in servers.items():
            run.progress("%s: %s on port %d (pid %d)" % (scenario, name, port, proc.pid))
        for case, params in cases:
            best: Dict[str, Tuple[float, Any]] = {}
            for _ in range(args.rounds):
                for name, (proc, port) in servers.items():
                    try:
                        rate, extra = _measure(proc.pid, lambda: load_for(port, params))
                    except Exception as exc:  # noqa: BLE001
                        run.error("%s/%s/%s" % (scenario, name, case), exc)
                        continue
                    if name not in best or rate > best[name][0]:
                        best[name] = (rate, extra)
            for name in servers:
                if name in best:
                    rate, extra = best[name]
                    run.add(scenario, case, name, rate, params["unit"], **extra)
    finally:
        for proc, _ in servers.values():
            procs.stop(proc)


def run_resp(args, run, targets):
    """Benchmark the RESP (Redis protocol) servers."""
    use_tool = bool(shutil.which("redis-benchmark")) and not args.builtin_client
    if not use_tool and not args.builtin_client:
        run.skip("redis-benchmark", "not found (apt install redis-tools); using the built-in client")
    load_name = "redis-benchmark" if use_tool else "built-in"
    names = _chosen(args, ("cython", "baseline", "pure", "stdlib", "asyncio", "uvloop", "redis-server"))
    cases = [("%s -P%d" % (test.upper(), pipeline),
              {"test": test, "pipeline": pipeline, "unit": "req/s"})
             for pipeline in (1, args.pipeline) for test in args.resp_tests]

    def load(port, params):
        if use_tool:
            rate, n = procs.redis_benchmark(port, params["test"], args.clients,
                                            params["pipeline"], args.duration)
            return rate, n, {"load": load_name}
        r = procs.builtin_client(kind="resp", port=port, conns=args.clients,
                                 depth=params["pipeline"], duration=args.duration,
                                 command=params["test"])
        return r["rate"], r["requests"], {"client_cpu": r["client_cpu"], "load": load_name}
    _interleaved(args, run, "resp", names, targets, "resp", cases, load)


def run_echo(args, run, targets):
    """Benchmark the echo servers over the chosen message sizes."""
    names = _chosen(args, ECHO_IMPLS)
    cases = [("%g KiB" % (size / 1024.0),
              {"size": size, "depth": args.echo_depth or max(1, 32768 // size), "unit": "msg/s"})
             for size in args.sizes]

    def load(port, params):
        r = procs.builtin_client(kind="echo", port=port, conns=args.echo_clients,
                                 depth=params["depth"], duration=args.duration, size=params["size"])
        return r["rate"], r["requests"], {
            "client_cpu": r["client_cpu"], "depth": params["depth"], "load": "built-in",
            "mib_per_s": r["rate"] * params["size"] / 2**20}
    _interleaved(args, run, "echo", names, targets, "echo", cases, load)


def run_http(args, run, targets):
    """Benchmark the HTTP servers."""
    use_tool = bool(shutil.which("wrk")) and not args.builtin_client
    if not use_tool and not args.builtin_client:
        run.skip("wrk", "not found (apt install wrk); using the built-in client")
    load_name = "wrk" if use_tool else "built-in"
    names = _chosen(args, ("cython", "baseline", "pure", "stdlib", "asyncio", "uvloop"))

    def load(port, params):
        if use_tool:
            rate, n = procs.wrk(port, args.clients, args.duration)
            return rate, n, {"load": load_name}
        r = procs.builtin_client(kind="http", port=port, conns=args.clients, depth=4,
                                 duration=args.duration)
        return r["rate"], r["requests"], {"client_cpu": r["client_cpu"], "load": load_name}
    _interleaved(args, run, "http", names, targets, "http",
                 [("GET keep-alive", {"unit": "req/s"})], load)


def _measuring_options(argv):
    """``argv`` without the output-file options, which do not change the figures."""
    kept = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--json", "--plot", "--markdown"):
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def _git_revision():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(targets):
    """Versions and machine facts for the report header."""
    import platform

    import asynchat_core

    def tool_version(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else None

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "asynchat_core": asynchat_core.__version__,
        "git": _git_revision(),
        "machine": "%s, %d CPUs, %s" % (cpu or platform.machine(), os.cpu_count() or 0,
                                        platform.platform()),
        "implementations": {n: t.label for n, t in targets.items()},
    }
    if shutil.which("redis-server"):
        env["redis-server"] = tool_version(["redis-server", "--version"])
    if shutil.which("redis-benchmark"):
        env["redis-benchmark"] = tool_version(["redis-benchmark", "--version"])
    if shutil.which("wrk"):
        env["wrk"] = tool_version(["wrk", "--version"])
    return env


def main(argv=None):
    """Run the chosen scenarios and write the report; return the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run = Run(args.quiet)
    targets, skipped = discover(args.stdlib_python, args.baseline)
    for name, reason in skipped.items():
        run.skip(name, reason)
    if "resp" in args.scenarios and not shutil.which("redis-server"):
        run.skip("redis-server", "not found (apt install redis-server)")
    runners = {"kernel": run_kernel, "resp": run_resp, "echo": run_echo, "http": run_http,
               "tls": run_tls}
    for scenario in args.scenarios:
        run.progress("== %s" % scenario)
        runners[scenario](args, run, targets)
    env = environment(targets)
    command = " ".join(["python -m asynchat_core.bench"] + _measuring_options(
        sys.argv[1:] if argv is None else list(argv)))
    targets_checked = check_targets(run.records)
    sys.stdout.write(render_text(run.records, targets_checked, run.skipped, run.errors, env))
    sys.stdout.flush()
    data = {"command": command, "environment": env, "records": run.records,
            "targets": targets_checked, "skipped": run.skipped, "errors": run.errors,
            "seconds": time.monotonic() - run.started}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    if args.markdown:
        render_markdown(args.markdown, data)
    if args.plot:
        try:
            write_plot(args.plot, run.records)
        except ImportError:
            sys.stderr.write("--plot needs matplotlib (pip install asynchat-core[bench])\n")
            return 1
    return 1 if run.errors else 0
