"""Loop scaling: active request rate with N idle connections.

    python benchmarks/scaling.py [--seconds 2] [--idle 0,1000,10000]
                                 [--servers ...] [--repeat R] [--markdown]

For each server variant and each N, a server process accepts N idle
connections (held open by a separate client process), then serves a few
active clients doing line request/response ("ping\\n" -> "pong\\n") over
``async_chat``.  Reported: active requests per second and the server's CPU
time per request (user+system, from /proc), side by side in one run.
With ``--repeat R`` every cell is measured R times, the servers taking
turns in a rotating order, and the median is reported: on a shared machine
one cell can swing by 2x, a rotation spreads that noise over all servers.

Server variants: ``stdlib-select`` / ``stdlib-poll`` (the interpreter's own
asyncore and asynchat, 3.11 and older), ``epoll`` / ``poll`` / ``select``
(asynchat_core's loop with that backend, compiled), ``epoll-py`` (the Python
build), ``legacy-select`` / ``legacy-poll`` (asynchat_core's channels under
the stdlib's per-pass loop, to separate loop cost from channel cost).  select() cannot watch descriptors >= FD_SETSIZE (1024): those
cells report "n.a.".  Linux only (reads /proc for CPU time).
"""

import argparse
import os
import socket
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
from linechat import (ACTIVE, accept_with, build_env, chat_modules,  # noqa: E402
                      exchange, listener, pong_handler, raise_nofile)


# ------------------------------------------------------------------ server

def serve(variant, idle):
    raise_nofile(idle)
    if variant.startswith("stdlib-"):
        asynchat, asyncore = chat_modules("stdlib")
        loop_kw = {"use_poll": variant == "stdlib-poll"}
    else:
        asynchat, asyncore = chat_modules("python" if variant.endswith("-py") else "cython")
        if variant.startswith("legacy-"):
            # our channels under the stdlib's per-pass loop: isolates the loop
            loop_kw = {"backend": "legacy", "use_poll": variant == "legacy-poll"}
        else:
            loop_kw = {"backend": variant.split("-")[0]}
    handler = pong_handler(asynchat)
    sock = listener(4096)
    # the idle connections are accepted before the loop starts: the
    # measurement is the steady state, not the stdlib's O(N^2) accept phase
    for _ in range(idle):
        conn, _ = sock.accept()
        handler(conn)
    accept_with(asyncore, handler, sock)
    print("ready", flush=True)
    try:
        asyncore.loop(timeout=1.0, **loop_kw)
    except ValueError as err:  # select(): fd out of range
        print("failed: %s" % err, flush=True)
        sys.exit(3)


def hold_idle(port, n):
    raise_nofile(n)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    print("ok", flush=True)
    sys.stdin.read()  # until the driver closes our stdin
    for s in socks:
        s.close()


# ------------------------------------------------------------------ driver

def _cpu(pid):
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def measure(variant, idle, seconds):
    server = subprocess.Popen([sys.executable, HERE, "--serve", variant, str(idle)],
                              stdout=subprocess.PIPE, env=build_env(variant.endswith("-py")),
                              text=True)
    holder = None
    actives = []
    try:
        port = int(server.stdout.readline())
        if idle:
            holder = subprocess.Popen([sys.executable, HERE, "--hold", str(port), str(idle)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert holder.stdout.readline().strip() == "ok"
        assert server.stdout.readline().strip() == "ready"
        for _ in range(ACTIVE):
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(5.0)
            actives.append(s)
        try:
            exchange(actives)  # warm up; fails if the server died
        except (OSError, socket.timeout):
            line = server.stdout.readline().strip() if server.poll() is not None else ""
            return None, None, line or "server stopped"
        cpu0 = _cpu(server.pid)
        start = time.monotonic()
        done = 0
        while time.monotonic() - start < seconds:
            done += exchange(actives)
        elapsed = time.monotonic() - start
        cpu = _cpu(server.pid) - cpu0
        return done / elapsed, cpu / done * 1e6, ""
    finally:
        for s in actives:
            s.close()
        if holder is not None:
            holder.stdin.close()
            holder.wait(timeout=30)
        server.kill()
        server.wait(timeout=30)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "N"))
    parser.add_argument("--hold", nargs=2, metavar=("PORT", "N"))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--idle", default="0,1000,10000")
    parser.add_argument("--servers", default=None)
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each cell this many times (median reported)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve[0], int(args.serve[1]))
    if args.hold:
        return hold_idle(int(args.hold[0]), int(args.hold[1]))

    variants = ["epoll", "poll", "select", "epoll-py"]
    if sys.version_info < (3, 12):
        variants = ["stdlib-select", "stdlib-poll"] + variants
    if args.servers:
        variants = args.servers.split(",")
    counts = [int(n) for n in args.idle.split(",")]
    raise_nofile(max(counts))
    samples = {}
    for round_ in range(args.repeat):
        shift = round_ % len(variants)
        order = variants[shift:] + variants[:shift]  # each server leads in turn
        for n in counts:
            for variant in order:
                if n + 64 >= 1024 and variant.endswith("select"):
                    samples[variant, n] = [(None, None, "n.a. (select: fd >= 1024)")]
                    continue
                rate, cpu, note = measure(variant, n, args.seconds)
                samples.setdefault((variant, n), []).append((rate, cpu, note))
                print("%-14s N=%-6d %s" % (variant, n, "%.0f req/s, %.1f us CPU/req" % (rate, cpu)
                                            if rate else note), file=sys.stderr, flush=True)
    results = {key: _median(cells) for key, cells in samples.items()}
    _table(variants, counts, results, args.markdown, args.repeat)
    return 0


def _median(cells):
    """Median rate of a cell's measurements, with the CPU figure of the same
    measurement(s); the last note if none succeeded."""
    good = sorted((c for c in cells if c[0]), key=lambda c: c[0])
    if not good:
        return cells[-1]
    mid = good[(len(good) - 1) // 2: len(good) // 2 + 1]
    return (sum(c[0] for c in mid) / len(mid), sum(c[1] for c in mid) / len(mid), "")


def _table(variants, counts, results, markdown, repeat=1):
    head = ["server"] + ["N=%d req/s (CPU us/req)" % n for n in counts] + ["N=%d / N=0" % counts[-1]]
    rows = []
    for variant in variants:
        row = [variant]
        for n in counts:
            rate, cpu, note = results[variant, n]
            row.append("%.0f (%.1f)" % (rate, cpu) if rate else "n.a.")
        first, last = results[variant, counts[0]][0], results[variant, counts[-1]][0]
        row.append("%.0f%%" % (100.0 * last / first) if first and last else "n.a.")
        rows.append(row)
    print("Python %s, %d active clients, %s, median of %d" % (
        sys.version.split()[0], ACTIVE, time.strftime("%Y-%m-%d"), repeat))
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        for row in [head] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    _print_vs_stdlib(variants, counts[0], results)


def _print_vs_stdlib(variants, n, results):
    # the N=0 target: each of our servers against each stdlib loop
    ours = [v for v in variants if not v.startswith(("stdlib-", "legacy-"))]
    theirs = [v for v in variants if v.startswith("stdlib-") and results[v, n][0]]
    for v in ours:
        rate, cpu, _ = results[v, n]
        if not rate:
            continue
        for t in theirs:
            t_rate, t_cpu, _ = results[t, n]
            print("N=%d: %s vs %s: %.2fx the requests/s, %.2fx the CPU/request"
                  % (n, v, t, rate / t_rate, cpu / t_cpu))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
