"""User-space instructions and system calls per request of the TLS benchmark servers.

    python benchmarks/tls_instructions.py [--impls cython,stdlib,asyncio,uvloop]
                                          [--cases echo,https] [--conns 10]
                                          [--rounds 40,200] [--strace] [--plain]
                                          [--cache-sim]

Wall-clock rates of the TLS scenario swing by tens of percent on a shared
machine; these counts do not.  Each server of ``asynchat_core.bench.tls``
runs under ``valgrind --tool=callgrind`` twice, serving R1 and then R2
lockstep rounds on ``--conns`` connections (echo: a block of 32 distinct
1 KiB lines per connection and round, every byte checked; https: one
keep-alive GET per connection and round).  The difference of the two
totals over the difference of the request counts is the user-space cost of
one request (handshakes, start-up and shutdown cancel out).  ``--strace``
also counts the system calls per request the same way (``strace -c -f``),
which is where the kernel's share of the CPU goes; ``--cache-sim`` adds
callgrind's simulated L1 cache misses per request (the compiled build's
plain HTTP runs fewer instructions than the stdlib but misses the
instruction cache more).  Needs valgrind (and
strace for ``--strace``); Linux only.
"""

import argparse
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from asynchat_core.bench import procs, tls  # noqa: E402
from asynchat_core.bench.client import HTTP_REQUEST  # noqa: E402
from asynchat_core.bench.impls import discover  # noqa: E402
from asynchat_core.bench.servers import HTTP_RESPONSE  # noqa: E402
from asynchat_core.bench.tls_client import echo_block  # noqa: E402

DEPTH = 32


class _Wrapped(tls._ServerTarget):
    """A server target whose command runs under a tool (valgrind).

    ``certfile`` None: the plain (no TLS) server of the same scenario, to
    tell what TLS adds from what the implementation costs anyway.
    """

    def __init__(self, target, certfile, keyfile, prefix):
        super().__init__(target, certfile, keyfile)
        self.prefix = prefix

    def command(self, *args):
        if self.certfile is None:
            return self.prefix + self.target.command(*args)
        return self.prefix + super().command(*args)


def _server_target(target, certs, prefix=()):
    cafile, certfile, keyfile = certs
    return _Wrapped(target, certfile, keyfile, list(prefix))


def _read_exact(sock, n):
    chunks = []
    while n:
        data = sock.recv(min(n, 1 << 16))
        if not data:
            raise ConnectionError("server closed the connection")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def drive(port, cafile, case, conns, rounds):
    """Run ``rounds`` lockstep rounds on ``conns`` TLS connections; return requests done."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    socks = []
    try:
        for c in range(conns):
            raw = socket.create_connection(("127.0.0.1", port), timeout=300)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(ctx.wrap_socket(raw, server_hostname=tls.HOSTNAME) if ctx else raw)
        blocks = [echo_block(c, DEPTH, tls.ECHO_SIZE) if case == "echo" else HTTP_REQUEST
                  for c in range(conns)]
        replies = blocks if case == "echo" else [HTTP_RESPONSE] * conns
        for _ in range(rounds):
            for sock, block in zip(socks, blocks):
                sock.sendall(block)
            for sock, reply in zip(socks, replies):
                if _read_exact(sock, len(reply)) != reply:
                    raise AssertionError("wrong reply from the server")
    finally:
        for sock in socks:
            sock.close()
    return rounds * conns * (DEPTH if case == "echo" else 1)


def _run(target, certs, case, conns, rounds, prefix, parse):
    kind = "echo" if case == "echo" else "http"
    proc, port = procs.start_worker_server(_server_target(target, certs, prefix), kind,
                                           timeout=300)
    try:
        requests = drive(port, certs[0], case, conns, rounds)
    finally:
        proc.terminate()  # callgrind writes its totals at exit
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            procs.stop(proc)
    return requests, parse()


def callgrind_total(target, certs, case, conns, rounds, cache_sim=False):
    """Events the server ran serving ``rounds`` rounds (plus start-up): a dict
    of callgrind's totals, ``Ir`` (instructions) and with ``cache_sim`` the
    simulated cache misses (``I1mr``, ``D1mr``, ``D1mw``, ...)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        prefix = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
        if cache_sim:
            prefix.append("--cache-sim=yes")

        def parse():
            events = ["Ir"]
            with open(out) as f:
                for line in f:
                    if line.startswith("events:"):
                        events = line.split()[1:]
                    elif line.startswith("totals:") or line.startswith("summary:"):
                        return dict(zip(events, (int(v) for v in line.split()[1:])))
            raise RuntimeError("no callgrind total")
        return _run(target, certs, case, conns, rounds, prefix, parse)


def per_request(count, low, high):
    """``{name: count per request}``: ``count(rounds)`` returns ``(requests,
    {name: count})``; the ``high``-round run minus the ``low``-round one,
    over the difference in requests (start-up and shutdown cancel out)."""
    n1, c1 = count(low)
    n2, c2 = count(high)
    return {k: (c2[k] - c1.get(k, 0)) / (n2 - n1) for k in c2}


def _cache_text(per):
    if "I1mr" not in per:
        return ""
    return "; L1 misses/request: instructions %.0f, data %.0f" % (
        per["I1mr"], per.get("D1mr", 0) + per.get("D1mw", 0))


def strace_counts(target, certs, case, conns, rounds):
    """``{syscall: calls}`` of the server (all threads) while serving ``rounds`` rounds.

    strace attaches to the running server (``-p``) before the rounds and
    detaches (SIGINT) after them, so the handshakes are counted but not
    start-up or shutdown; the difference of two runs removes the handshakes.
    """
    kind = "echo" if case == "echo" else "http"
    proc, port = procs.start_worker_server(_server_target(target, certs), kind)
    try:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "strace.txt")
            tracer = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                # "strace: Process N attached" comes once the threads are traced
                ready, _, _ = select.select([tracer.stderr], [], [], 30)
                if not ready or b"attached" not in tracer.stderr.readline():
                    raise RuntimeError("strace did not attach")
                requests = drive(port, certs[0], case, conns, rounds)
            finally:
                tracer.send_signal(signal.SIGINT)
                try:
                    tracer.wait(60)
                except subprocess.TimeoutExpired:
                    procs.stop(tracer)
            counts = {}
            with open(out) as f:
                for line in f:
                    cells = line.split()
                    if len(cells) >= 5 and cells[0][0].isdigit() and cells[-1] != "total":
                        counts[cells[-1]] = int(cells[3])
    finally:
        procs.stop(proc)
    return requests, counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impls", default="cython,stdlib,asyncio,uvloop")
    p.add_argument("--cases", default="echo,https")
    p.add_argument("--conns", type=int, default=10)
    p.add_argument("--rounds", default="40,200")
    p.add_argument("--strace", action="store_true")
    p.add_argument("--plain", action="store_true",
                   help="also measure each server without TLS (the scenarios echo/http)")
    p.add_argument("--cache-sim", action="store_true",
                   help="also count simulated L1 cache misses per request (callgrind "
                        "--cache-sim): fewer instructions can still cost more time")
    args = p.parse_args(argv)
    if not shutil.which("valgrind"):
        sys.exit("valgrind not found (apt install valgrind)")
    low, high = (int(r) for r in args.rounds.split(","))
    targets, skipped = discover()
    rows = []
    with tempfile.TemporaryDirectory() as certdir:
        certs = tls.make_certificates(certdir)
        for case in args.cases.split(","):
            for name in args.impls.split(","):
                target = targets.get(name)
                if target is None:
                    print("%s: skipped (%s)" % (name, skipped.get(name)), flush=True)
                    continue
                events = per_request(lambda rounds: callgrind_total(
                    target, certs, case, args.conns, rounds, args.cache_sim), low, high)
                per = events["Ir"]
                line = "%-6s %-8s %9.0f instructions/request%s" % (
                    case, name, per, _cache_text(events))
                if args.strace and shutil.which("strace"):
                    calls = per_request(lambda rounds: strace_counts(
                        target, certs, case, args.conns, rounds), low, high)
                    busy = sorted(((v, k) for k, v in calls.items() if v >= 0.01), reverse=True)
                    line += "; syscalls/request: %.2f (%s)" % (
                        sum(v for v, _ in busy), ", ".join("%s %.2f" % (k, v) for v, k in busy))
                print(line, flush=True)
                rows.append(line)
                if args.plain:
                    plain = per_request(lambda rounds: callgrind_total(
                        target, (None, None, None), case, args.conns, rounds, args.cache_sim),
                        low, high)
                    print("%-6s %-8s %9.0f instructions/request without TLS (TLS adds %.0f)%s"
                          % (case, name, plain["Ir"], per - plain["Ir"], _cache_text(plain)),
                          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
