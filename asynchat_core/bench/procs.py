"""Child processes of the benchmark: servers, load tools, CPU accounting.

Everything listens on and connects to 127.0.0.1 only.  Every process
started here is stopped by PID in ``stop()``, which callers run in
``finally`` blocks.
"""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from . import cclient
from .client import request_and_reply

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid):
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    # the command name may contain spaces; fields resume after its ")"
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc):
    """Stop ``proc`` (a Popen): SIGTERM, then SIGKILL after 3 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(3)


def cpu_seconds_tree(pid):
    """``cpu_seconds`` of ``pid`` and its live descendants (worker processes)."""
    total = cpu_seconds(pid)
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for child in children:
        try:
            total += cpu_seconds_tree(child)
        except OSError:
            pass  # exited meanwhile
    return total


def pinned_to(cpus):
    """A ``preexec_fn`` confining a child (and what it forks) to ``cpus``;
    None when ``cpus`` is None."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def split_cpus(workers):
    """``(server_cpus, load_cpus)`` when this machine has cores to spare for
    the load generator beside ``workers`` server cores, else ``(None, None)``."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cpus) <= workers:
        return None, None
    return set(cpus[:workers]), set(cpus[workers:])


def start_worker_server(target, kind, streams=False, timeout=30.0, workers=0, cpus=None):
    """Start a benchmark server for ``target`` (in ``workers`` processes if
    not 0, all on ``cpus`` if given); return ``(proc, port)``."""
    args = ["server", target.source, kind] + (["streams"] if streams else [])
    if workers:
        args.append("workers=%d" % workers)
    # stderr goes to a file: a server logging errors must never block on a full pipe
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            target.command(*args), env=target.environ(), cwd=target.cwd(),
            stdout=subprocess.PIPE, stderr=errors, preexec_fn=pinned_to(cpus),
        )
        try:
            out = proc.stdout
            assert out is not None  # stdout=PIPE
            ready, _, _ = select.select([out], [], [], timeout)
            line = out.readline().decode() if ready else ""
            if not line.startswith("PORT "):
                stop(proc)
                errors.seek(0)
                err = errors.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError("server did not start: %s"
                                   % (err[-1] if err else line.strip() or "timeout"))
            return proc, int(line.split()[1])
        except BaseException:
            stop(proc)
            raise


def start_redis_server(timeout=10.0):
    """Start ``redis-server`` (no persistence) on a free port; return ``(proc, port)``."""
    exe = shutil.which("redis-server")
    if not exe:
        raise FileNotFoundError("redis-server not found (apt install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--logfile", "", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return proc, port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")
    except BaseException:
        stop(proc)
        raise


def _run(cmd, timeout, cpus=None):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         preexec_fn=pinned_to(cpus))
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (cmd[0], (out.stderr or out.stdout).strip()[-300:]))
    return out.stdout


def redis_benchmark(port, test, clients, pipeline, duration, cpus=None):
    """Run one ``redis-benchmark`` test sized to last about ``duration`` s.

    redis-benchmark counts requests, not time: a short first run estimates
    the rate, and the measured run asks for ``rate * duration`` requests.
    Returns ``(rate, requests)``.
    """
    exe = shutil.which("redis-benchmark")
    # small first run: the slowest servers do ~10k req/s unpipelined
    requests = 5000 if pipeline == 1 else 20000

    def once(n):
        cmd = [exe, "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(n),
               "-P", str(pipeline), "-t", test, "--csv"]
        started = time.perf_counter()
        text = _run(cmd, timeout=60 + 4 * duration, cpus=cpus)
        wall = time.perf_counter() - started
        for line in text.splitlines():
            cells = [c.strip('"') for c in line.split(",")]
            if len(cells) > 1 and cells[0].lower() == test:
                try:
                    return float(cells[1]), wall
                except ValueError:
                    continue
        raise RuntimeError("no result in redis-benchmark output: %r" % text[-300:])

    rate, wall = once(requests)
    if wall < duration * 0.6:
        requests = max(requests, int(rate * duration))
        rate, wall = once(requests)
    return rate, requests


def wrk(port, clients, duration, scheme="http", threads=1, cpus=None):
    """Run ``wrk`` with ``threads`` threads (default one), on ``cpus`` if
    given; return ``(rate, requests)``.

    With ``scheme="https"`` wrk speaks TLS (it does not check certificates).
    """
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk missing (apt install wrk)")
    cmd = [exe, "-t%d" % threads, "-c%d" % clients, "-d%ds" % max(1, round(duration)),
           "%s://127.0.0.1:%d/" % (scheme, port)]
    text = _run(cmd, timeout=60 + 4 * duration, cpus=cpus)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rate or not total:
        raise RuntimeError("no result in wrk output: %r" % text[-300:])
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError("wrk saw errors: %r" % text[-300:])
    return float(rate.group(1)), int(total.group(1))


def builtin_client(python=False, **params):
    """Run the built-in client in its own process; return its result dict.

    The C client (cclient.py) when a C compiler builds it and ``python`` is
    false, else the Python one; the dict's ``"load"`` says which ran."""
    if not python:
        exe, _ = cclient.build()
        if exe is not None:
            request, reply_size = request_and_reply(params["kind"], params["port"],
                                                    params.get("size"), params.get("command"))
            r = cclient.run_client(exe, params["port"], params["conns"], params["duration"],
                                   request, reply_size, params["depth"])
            r["load"] = "built-in C"
            return r
    cmd = [sys.executable, "-m", "asynchat_core.bench.worker", "client", json.dumps(params)]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = _run_env(cmd, env, timeout=60 + 4 * params["duration"])
    r = json.loads(out)
    r["load"] = "built-in"
    return r


def _run_env(cmd, env, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError("load client failed: %s" % (out.stderr or out.stdout).strip()[-300:])
    return out.stdout
