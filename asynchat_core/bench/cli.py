"""``python -m asynchat_core.bench``: run the scenarios, print rates and ratios.

Every case is measured ``--rounds`` times, implementations interleaved, and
reported as the median with its min-max range; each ratio is computed round
by round (both figures of a ratio were measured back to back) before its
median and range are taken.  Ctrl-C stops the child processes, prints what
was measured so far and exits with status 130.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from . import procs
from .impls import discover
from .options import (
    DEFAULT_ROUNDS,
    ECHO_IMPLS,
    KERNEL_WORKLOADS,
    SCENARIO_NAMES,
    git_state,
    output_paths,
    parse_args,
)
from .report import check_targets, median, render_markdown, render_text, write_plot
from .tls import run_tls

PROG = "python -m asynchat_core.bench"


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

    def add(self, scenario, case, impl, samples, unit, extras):
        """Record one case for one implementation: ``samples`` holds one rate per round.

        A round that failed is None.  ``extras`` is one dict per round
        (CPU per request and the like); the record's ``rate`` and
        ``cpu_us`` are the medians over the rounds.
        """
        rates = [s for s in samples if s is not None]
        if not rates:
            return
        record = {"scenario": scenario, "case": case, "impl": impl, "rate": median(rates),
                  "unit": unit, "samples": list(samples)}
        cpu = [e.get("cpu_us") if e else None for e in extras]
        if any(c is not None for c in cpu):
            record["cpu_samples"] = cpu
            record["cpu_us"] = median([c for c in cpu if c is not None])
        for e in extras:
            for key, value in (e or {}).items():
                if key != "cpu_us":
                    record.setdefault(key, value)
        self.records.append(record)
        note = ""
        if record.get("cpu_us") is not None:
            note = ", server CPU %.1f us/req" % record["cpu_us"]
        self.progress("  %-8s %-18s %-16s %12s %s%s" % (
            scenario, case, impl, "{:,.0f}".format(record["rate"]), unit, note))

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
    """The kernel scenario: the chat code's workloads in process, per implementation, in rounds."""
    names = [n for n in _chosen(args, ("cython", "baseline", "python", "stdlib")) if n in targets]
    workloads = args.kernel_workloads
    samples: Dict[Tuple[str, str], List[Optional[float]]] = {}
    extras: Dict[Tuple[str, str], List[Any]] = {}
    units: Dict[str, str] = {}
    try:
        for number in range(args.rounds):
            for name in names:
                target = targets[name]
                run.progress("kernel: %s, round %d/%d" % (target.label, number + 1, args.rounds))
                cmd = target.command("kernel", target.source, str(args.kernel_seconds), *workloads)
                try:
                    out = subprocess.run(
                        cmd, env=target.environ(), cwd=target.cwd(), capture_output=True, text=True,
                        timeout=120 + 20 * args.kernel_seconds * len(KERNEL_WORKLOADS))
                    if out.returncode:
                        lines = out.stderr.strip().splitlines()
                        raise RuntimeError(lines[-1] if lines else "exit %d" % out.returncode)
                    results = json.loads(out.stdout)
                except Exception as exc:  # noqa: BLE001 - one failing cell must not end the run
                    run.error("kernel/%s" % name, exc)
                    results = {}
                for workload in workloads:
                    r = results.get(workload)
                    key = (workload, name)
                    samples.setdefault(key, []).append(r["rate"] if r else None)
                    extras.setdefault(key, []).append(
                        {k: v for k, v in r.items() if k not in ("rate", "unit")} if r else None)
                    if r:
                        units[workload] = r["unit"]
    finally:
        # also on Ctrl-C: the rounds measured so far are results
        for workload in workloads:
            for name in names:
                key = (workload, name)
                if key in samples and workload in units:
                    run.add("kernel", workload, name, samples[key], units[workload], extras[key])


def _measure(proc_pid, load):
    cpu0 = procs.cpu_seconds(proc_pid)
    rate, requests, extra = load()
    cpu1 = procs.cpu_seconds(proc_pid)
    extra["cpu_us"] = (cpu1 - cpu0) / requests * 1e6 if requests else None
    extra["requests"] = requests
    return rate, extra


def _start_servers(run, scenario, names, targets, kind):
    """Start one server per implementation; return ``{name: (proc, port)}``.

    Servers already started are stopped if starting the next one is
    interrupted.
    """
    servers = {}
    try:
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
    except BaseException:
        for proc, _ in servers.values():
            procs.stop(proc)
        raise
    return servers


def _interleaved(args, run, scenario, names, targets, kind, cases, load_for):
    """Measure every case on every server, implementations interleaved, in rounds.

    All servers run at once (idle ones cost nothing) and each case is
    measured on every implementation in turn, ``--rounds`` times, so a
    burst of load from elsewhere on the machine hits the figures being
    compared alike, and every ratio has one value per round.
    """
    servers = _start_servers(run, scenario, names, targets, kind)
    try:
        for name, (proc, port) in servers.items():
            run.progress("%s: %s on port %d (pid %d)" % (scenario, name, port, proc.pid))
        for case, params in cases:
            samples: Dict[str, List[Optional[float]]] = {name: [] for name in servers}
            extras: Dict[str, List[Any]] = {name: [] for name in servers}
            try:
                for _ in range(args.rounds):
                    for name, (proc, port) in servers.items():
                        try:
                            rate, extra = _measure(proc.pid, lambda: load_for(port, params))
                        except Exception as exc:  # noqa: BLE001
                            run.error("%s/%s/%s" % (scenario, name, case), exc)
                            rate, extra = None, None
                        samples[name].append(rate)
                        extras[name].append(extra)
            finally:
                # also on Ctrl-C: the rounds measured so far are results
                for name in servers:
                    run.add(scenario, case, name, samples[name], params["unit"], extras[name])
    finally:
        for proc, _ in servers.values():
            procs.stop(proc)


def run_resp(args, run, targets):
    """Benchmark the RESP (Redis protocol) servers."""
    use_tool = bool(shutil.which("redis-benchmark")) and not args.builtin_client
    if not use_tool and not args.builtin_client:
        run.skip("redis-benchmark", "not found (apt install redis-tools); using the built-in client")
    names = _chosen(args, ("cython", "baseline", "python", "stdlib", "asyncio", "uvloop", "redis-server"))
    cases = [("%s -P%d" % (test.upper(), pipeline),
              {"test": test, "pipeline": pipeline, "unit": "req/s"})
             for pipeline in sorted({1, args.pipeline}) for test in args.resp_tests]

    def load(port, params):
        if use_tool:
            rate, n = procs.redis_benchmark(port, params["test"], args.clients,
                                            params["pipeline"], args.duration)
            return rate, n, {"load": "redis-benchmark"}
        r = procs.builtin_client(python=args.python_client, kind="resp", port=port,
                                 conns=args.clients, depth=params["pipeline"],
                                 duration=args.duration, command=params["test"])
        return r["rate"], r["requests"], {"client_cpu": r["client_cpu"], "load": r["load"]}
    _interleaved(args, run, "resp", names, targets, "resp", cases, load)


def run_echo(args, run, targets):
    """Benchmark the echo servers over the chosen message sizes."""
    names = _chosen(args, ECHO_IMPLS)
    cases = [("%g KiB" % (size / 1024.0),
              {"size": size, "depth": args.echo_depth or max(1, 32768 // size), "unit": "msg/s"})
             for size in args.sizes]

    def load(port, params):
        r = procs.builtin_client(python=args.python_client, kind="echo", port=port,
                                 conns=args.echo_clients, depth=params["depth"],
                                 duration=args.duration, size=params["size"])
        return r["rate"], r["requests"], {
            "client_cpu": r["client_cpu"], "depth": params["depth"], "load": r["load"],
            "mib_per_s": r["rate"] * params["size"] / 2**20}
    _interleaved(args, run, "echo", names, targets, "echo", cases, load)


def run_http(args, run, targets):
    """Benchmark the HTTP servers."""
    use_tool = bool(shutil.which("wrk")) and not args.builtin_client
    if not use_tool and not args.builtin_client:
        run.skip("wrk", "not found (apt install wrk); using the built-in client")
    names = _chosen(args, ("cython", "baseline", "python", "stdlib", "asyncio", "uvloop"))

    def load(port, params):
        if use_tool:
            rate, n = procs.wrk(port, args.clients, args.duration)
            return rate, n, {"load": "wrk"}
        r = procs.builtin_client(python=args.python_client, kind="http", port=port,
                                 conns=args.clients, depth=4, duration=args.duration)
        return r["rate"], r["requests"], {"client_cpu": r["client_cpu"], "load": r["load"]}
    _interleaved(args, run, "http", names, targets, "http",
                 [("GET keep-alive", {"unit": "req/s"})], load)


def run_framing(args, run, targets):
    """Framers (issue 19) against the classic RESP server, the stdlib,
    uvloop+hiredis, uvloop with a Python parser and redis-server; and
    length-prefixed records (4-byte big-endian header) against uvloop."""
    # (label, target, server kind)
    resp_servers = [("cython-framer", "cython", "resp-framer"), ("cython", "cython", "resp"),
                    ("python-framer", "python", "resp-framer"), ("stdlib", "stdlib", "resp"),
                    ("uvloop-hiredis", "uvloop", "resp-hiredis"), ("uvloop", "uvloop", "resp"),
                    ("redis-server", None, None)]
    lp_servers = [("cython-framer", "cython", "lp-framer"), ("cython", "cython", "lp"),
                  ("python-framer", "python", "lp-framer"), ("uvloop", "uvloop", "lp")]
    use_tool = bool(shutil.which("redis-benchmark")) and not args.builtin_client
    if not use_tool and not args.builtin_client:
        run.skip("redis-benchmark", "not found (apt install redis-tools); using the built-in client")
    resp_cases = [("RESP %s -P%d" % (test.upper(), pipeline),
                   {"test": test, "pipeline": pipeline, "unit": "req/s"})
                  for pipeline in sorted({1, args.pipeline}) for test in args.resp_tests]
    lp_cases = [("LP %dB -P%d" % (size, depth), {"size": size, "depth": depth, "unit": "msg/s"})
                for depth in (16, 1) for size in (100, 4096)]

    def resp_load(port, params):
        if use_tool:
            rate, n = procs.redis_benchmark(port, params["test"], args.clients,
                                            params["pipeline"], args.duration)
            return rate, n, {"load": "redis-benchmark"}
        r = procs.builtin_client(python=args.python_client, kind="resp", port=port,
                                 conns=args.clients, depth=params["pipeline"],
                                 duration=args.duration, command=params["test"])
        return r["rate"], r["requests"], {"client_cpu": r["client_cpu"], "load": r["load"]}

    def lp_load(port, params):
        r = procs.builtin_client(python=args.python_client, kind="lp", port=port,
                                 conns=args.clients, depth=params["depth"],
                                 duration=args.duration, size=params["size"])
        return r["rate"], r["requests"], {"client_cpu": r["client_cpu"], "load": r["load"]}

    for servers, cases, load in ((resp_servers, resp_cases, resp_load),
                                 (lp_servers, lp_cases, lp_load)):
        started = {}
        try:
            for label, base, kind in servers:
                if args.impls and label not in args.impls and (base or label) not in args.impls:
                    continue
                try:
                    if base is None:
                        if shutil.which("redis-server"):
                            started[label] = procs.start_redis_server()
                    elif targets.get(base) is not None:
                        started[label] = procs.start_worker_server(targets[base], kind)
                except Exception as exc:  # noqa: BLE001 - one failing server must not end the run
                    run.error("framing/%s server" % label, exc)
            for case, params in cases:
                samples: Dict[str, List[Optional[float]]] = {name: [] for name in started}
                extras: Dict[str, List[Any]] = {name: [] for name in started}
                try:
                    for _ in range(args.rounds):
                        for name, (proc, port) in started.items():
                            try:
                                rate, extra = _measure(proc.pid,
                                                       lambda: load(port, params))  # noqa: B023
                            except Exception as exc:  # noqa: BLE001
                                run.error("framing/%s/%s" % (name, case), exc)
                                rate, extra = None, None
                            samples[name].append(rate)
                            extras[name].append(extra)
                finally:
                    for name in started:
                        run.add("framing", case, name, samples[name], params["unit"],
                                extras[name])
        finally:
            for proc, _ in started.values():
                procs.stop(proc)


# Scenario name -> runner(args, run, targets).  A new scenario registers here
# (and, for its table title, in report.SCENARIO_TITLES); options.SCENARIO_NAMES
# lists the ones a run without --scenarios includes.


def run_workers(args, run, targets):
    """1 worker vs ``--workers`` workers, asynchat_core and uvloop side by side.

    Method: each implementation serves from one process and from N
    processes, each N-worker server with one SO_REUSEPORT listener per
    process (asynchat_core.workers; uvloop: N forked loops with
    ``reuse_port=True``); all servers run at once and the cases are
    measured interleaved, round by round, with the same load: wrk with N
    threads (HTTP keep-alive, and HTTP rendering a page per request) and
    redis-benchmark (GET, -P1), each given ``--clients`` connections.
    With more cores than workers, the servers are confined to N cores and
    the load generator to the others; otherwise the generator shares the
    servers' cores and the ratio is a floor: the page case, whose handler
    renders and compresses a page (about 100 us on CPython 3.11) into a
    small reply, keeps the generator's share of the cores small.
    Server CPU counts the whole process tree.
    """
    count = args.workers
    bases = [n for n in ("cython", "python", "uvloop") if n in targets
             and (not args.impls or n in args.impls)]
    use_wrk = bool(shutil.which("wrk")) and not args.builtin_client
    use_redis = bool(shutil.which("redis-benchmark")) and not args.builtin_client
    cases = []
    if use_redis:
        cases.append(("RESP GET -P1", "resp"))
    else:
        run.skip("redis-benchmark", "not found (apt install redis-tools): no RESP case")
    if use_wrk:
        cases.append(("HTTP keep-alive", "http"))
        cases.append(("HTTP page (render + deflate)", "http-page"))
    else:
        run.skip("wrk", "not found (apt install wrk): no HTTP case")
    server_cpus, load_cpus = procs.split_cpus(count)
    if server_cpus:
        run.progress("  workers  servers on CPUs %s, load generator on CPUs %s"
                     % (sorted(server_cpus), sorted(load_cpus)))
    else:
        run.progress("  workers  the load generator shares the servers' cores: ratios are floors")
    for case, kind in cases:
        servers = {}
        try:
            for base in bases:
                for n in (1, count):
                    name = "%s x%d" % (base, n)
                    try:
                        servers[name] = procs.start_worker_server(targets[base], kind, workers=n,
                                                                  cpus=server_cpus)
                    except Exception as exc:  # noqa: BLE001
                        run.error("workers/%s server" % name, exc)
            samples: Dict[str, List[Optional[float]]] = {name: [] for name in servers}
            extras: Dict[str, List[Any]] = {name: [] for name in servers}

            def load(port):
                if kind == "resp":
                    rate, n = procs.redis_benchmark(port, "get", args.clients, 1, args.duration,
                                                    cpus=load_cpus)
                    return rate, n, {"load": "redis-benchmark"}
                rate, n = procs.wrk(port, args.clients, args.duration, threads=count,
                                    cpus=load_cpus)
                return rate, n, {"load": "wrk -t%d" % count}

            try:
                for _ in range(args.rounds):
                    for name, (proc, port) in servers.items():
                        try:
                            cpu0 = procs.cpu_seconds_tree(proc.pid)
                            rate, n, extra = load(port)
                            cpu1 = procs.cpu_seconds_tree(proc.pid)
                            extra["cpu_us"] = (cpu1 - cpu0) / n * 1e6 if n else None
                        except Exception as exc:  # noqa: BLE001
                            run.error("workers/%s/%s" % (name, case), exc)
                            rate, extra = None, None
                        samples[name].append(rate)
                        extras[name].append(extra)
            finally:
                for name in servers:
                    run.add("workers", case, name, samples[name], "req/s", extras[name])
            for base in bases:
                one, many = samples.get("%s x1" % base), samples.get("%s x%d" % (base, count))
                if one and many:
                    ratios = [b / a for a, b in zip(one, many) if a and b]
                    if ratios:
                        run.progress("  workers  %-18s %-10s x%d / x1 = %.2f (rounds: %s)" % (
                            case, base, count, median(ratios),
                            ", ".join("%.2f" % r for r in ratios)))
        finally:
            for proc, _ in servers.values():
                procs.stop(proc)


# Scenario name -> runner(args, run, targets).  A new scenario registers here
# (and, for its table title, in report.SCENARIO_TITLES); options.SCENARIO_NAMES
# lists the ones a run without --scenarios includes.


SCENARIOS = {
    "kernel": run_kernel,
    "resp": run_resp,
    "echo": run_echo,
    "http": run_http,
    "tls": run_tls,  # not in the default run: python -m asynchat_core.bench --scenarios tls
    "framing": run_framing,  # not in the default run either: --scenarios framing
    "workers": run_workers,  # not in the default run either (--scenarios workers)
}


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
        if name in ("--allow-dirty", "--quiet", "--goals"):
            continue
        kept.append(arg)
    return kept


def environment(targets, exclude=()):
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
    commit, dirty = git_state(exclude)
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "asynchat_core": asynchat_core.__version__,
        "implementation": asynchat_core.IMPLEMENTATION,
        "git": commit,
        "git_dirty": dirty,
        "cpus": os.cpu_count() or 0,
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


def _discover(args, run):
    """The implementations to measure; exit 2 if an explicitly named one is unusable."""
    targets, skipped = discover(args.stdlib_python, args.baseline)
    if args.stdlib_python:
        std = targets.get("stdlib")
        if std is None or std.python != args.stdlib_python:
            reason = skipped.get("stdlib", "its asyncore/asynchat could not be imported")
            args.parser.error("--stdlib-python %s: no usable asyncore/asynchat there (%s)"
                              % (args.stdlib_python, reason.split(": ", 1)[-1]))
    if args.baseline and "baseline" not in targets:
        args.parser.error("--baseline %s" % skipped.get("baseline", "unusable"))
    for name, reason in skipped.items():
        run.skip(name, reason)
    return targets


def main(argv=None):
    """Run the chosen scenarios and write the report; return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, SCENARIOS)
    run = Run(args.quiet)
    targets: Dict[str, Any] = {}
    interrupted = False
    try:
        targets = _discover(args, run)
        if "resp" in args.scenarios and not shutil.which("redis-server"):
            run.skip("redis-server", "not found (apt install redis-server)")
        for scenario in args.scenarios:
            run.progress("== %s" % scenario)
            SCENARIOS[scenario](args, run, targets)
    except KeyboardInterrupt:
        # the scenario runners stopped their children on the way out
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose the report
    env = environment(targets, exclude=output_paths(args))
    env["rounds"] = args.rounds
    command = " ".join([PROG] + _measuring_options(argv))
    goals = check_targets(run.records)
    if interrupted:
        sys.stdout.write("\nInterrupted: the results measured before Ctrl-C follow.\n")
    sys.stdout.write(render_text(run.records, goals if args.goals else None, run.skipped,
                                 run.errors, env))
    sys.stdout.flush()
    data = {"command": command, "environment": env, "records": run.records,
            "goals": goals, "skipped": run.skipped, "errors": run.errors,
            "seconds": time.monotonic() - run.started, "interrupted": interrupted}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    if interrupted:
        return 130
    if args.markdown:
        render_markdown(args.markdown, data)
    if args.plot:
        write_plot(args.plot, run.records, env)
    return 1 if run.errors else 0


__all__ = ["main", "SCENARIOS", "SCENARIO_NAMES", "DEFAULT_ROUNDS"]
