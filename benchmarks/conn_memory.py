"""Server memory per connection: 5,000 idle connections that each exchanged one line.

    python benchmarks/conn_memory.py [--conns 5000] [--servers stdlib,cython,python,asyncio,uvloop]
                                     [--repeat 3] [--objects]

The servers are those of ``pingpong_instructions.py`` (issue 18's line
ping-pong, the same user code everywhere; the stdlib's loop with
``use_poll=True``, as ``select()`` cannot watch descriptors past 1024).
For each server: start it, let 4 connections exchange a line (the code
paths are loaded), read its RSS (``/proc/<pid>/status``); then open
``--conns`` more connections, each sending ``b"ping\\n"`` and reading the
reply, and read the RSS again.  The difference over ``--conns`` is the
user-space memory one quiet connection costs the server (the kernel's
socket buffers are not in RSS).  With ``--repeat`` the median is reported.

``--objects`` also counts, in this process and without sockets' kernel
side, what one connection of each asynchat flavour holds: ``tracemalloc``
over 1,000 channels (each has exchanged one line over a socketpair) grouped
by the line that allocated, and ``sys.getsizeof`` of the parts of one
channel (the channel, its ``__dict__``, the input and output states, the
lock, ``producer_fifo``, the map's and the loop's entries).  Linux only.
"""

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
import pingpong_instructions as pingpong  # noqa: E402  (the servers)
from linechat import (ROOT, build_env, chat_modules, exchange,  # noqa: E402
                      pong_handler, raise_nofile)

SERVERS = ["stdlib", "cython", "python", "asyncio", "uvloop"]
BATCH = 50


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(kind, conns):
    """KiB of server RSS per connection."""
    server = subprocess.Popen([sys.executable, HERE, "--serve", kind, str(conns)],
                              stdout=subprocess.PIPE, env=build_env(kind == "python"),
                              text=True)
    socks = []
    try:
        port = int(server.stdout.readline())
        assert server.stdout.readline().strip() == "ready"

        def connect(n):
            new = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
            for s in new:
                s.settimeout(30.0)
            exchange(new)
            socks.extend(new)

        connect(4)
        time.sleep(0.2)
        before = _rss_kib(server.pid)
        for start in range(0, conns, BATCH):
            connect(min(BATCH, conns - start))
        exchange(socks[:4])  # the server still serves (and has seen every line)
        time.sleep(0.2)
        after = _rss_kib(server.pid)
        return (after - before) / conns
    finally:
        for s in socks:
            s.close()
        server.kill()
        server.wait(timeout=30)


def serve(kind, conns):
    raise_nofile(conns + 16)
    if kind == "stdlib":
        pingpong.serve_chat(kind, {"use_poll": True})
    else:
        pingpong.serve(kind)


# ------------------------------------------------------- objects per channel

def objects(kind, count=1000):
    """What one channel holds, by tracemalloc and by sys.getsizeof."""
    import tracemalloc

    asynchat, asyncore = chat_modules(kind)
    loop_kw = {"use_poll": True} if kind == "stdlib" else {}
    Handler = pong_handler(asynchat)
    raise_nofile(2 * count + 64)
    chan_map = {}
    warm = [socket.socketpair() for _ in range(4)]
    pairs = [socket.socketpair() for _ in range(count)]

    def serve_lines(pairs, chans):
        for _, peer in pairs:
            peer.sendall(b"ping\n")
        for _, peer in pairs:
            got = b""
            while not got.endswith(b"\n"):
                asyncore.loop(timeout=0.01, map=chan_map, count=1, **loop_kw)
                peer.setblocking(False)
                try:
                    got += peer.recv(64)
                except BlockingIOError:
                    pass

    warm_chans = [Handler(a, chan_map) for a, _ in warm]
    serve_lines(warm, warm_chans)
    gc.collect()
    tracemalloc.start(1)
    snap0 = tracemalloc.take_snapshot()
    chans = [Handler(a, chan_map) for a, _ in pairs]
    serve_lines(pairs, chans)
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snap1.compare_to(snap0, "lineno")
    total = sum(s.size_diff for s in stats)
    lines = ["%s: %.0f bytes per channel by tracemalloc (socket objects excluded)"
             % (kind, total / count)]
    for s in stats[:12]:
        if s.size_diff / count < 8:
            break
        frame = s.traceback[0]
        lines.append("  %6.0f  %s:%d" % (s.size_diff / count,
                                         os.path.relpath(frame.filename, ROOT)
                                         if frame.filename.startswith(ROOT)
                                         else os.path.basename(frame.filename),
                                         frame.lineno))
    chan = chans[0]
    parts = [("channel object", chan)]
    # (asynchat_core: a deque not made yet shows as "not made"; reading the
    # attribute would make it)
    state = getattr(chan, "_ac_out", None)
    unmade = type(getattr(state, "fifo", None)).__name__ == "_EmptyFifo"
    for name in ("_ac_in", "_ac_out", "producer_fifo", "incoming", "ac_in_buffer"):
        if name == "producer_fifo" and unmade:
            continue
        value = getattr(chan, name, None)
        if value is not None:
            parts.append((name, value))
    state = getattr(chan, "_ac_out", None)
    if state is not None and getattr(state, "_lock", None) is not None:
        parts.append(("_ac_out._lock", state._lock))
    if state is not None and getattr(state, "pending", None) is not None:
        parts.append(("_ac_out.pending", state.pending))
    sizes = ["%s %d" % (name, sys.getsizeof(value)) for name, value in parts]
    if unmade:
        sizes.append("producer_fifo not made")
    # last: reading __dict__ materialises the instance dict on 3.11+
    sizes.append("__dict__ %d (%d keys)" % (sys.getsizeof(chan.__dict__), len(chan.__dict__)))
    sizes.append("map entry %.0f" % (sys.getsizeof(chan_map) / len(chan_map)))
    lines.append("  getsizeof: " + ", ".join(sizes))
    lines.append("  __dict__ keys: " + " ".join(sorted(chan.__dict__)))
    for a, b in warm + pairs:
        a.close()
        b.close()
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("SERVER", "CONNS"))
    parser.add_argument("--objects-of", metavar="SERVER")
    parser.add_argument("--conns", type=int, default=5000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--objects", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve[0], int(args.serve[1]))
    if args.objects_of:
        print(objects(args.objects_of))
        return 0
    raise_nofile(args.conns + 64)
    kinds = args.servers.split(",")
    results = {kind: [] for kind in kinds}
    for _ in range(args.repeat):
        for kind in kinds:
            try:
                results[kind].append(measure(kind, args.conns))
            except (OSError, AssertionError, ValueError) as err:
                print("%s failed: %r" % (kind, err), flush=True)
    print("Python %s, %d idle connections that each exchanged one line, %d run(s)"
          % (sys.version.split()[0], args.conns, args.repeat))
    print()
    print("| server | RSS per connection (KiB), median | min-max |")
    print("|---|---:|---:|")
    for kind in kinds:
        if results[kind]:
            print("| %s | %.2f | %.2f-%.2f |" % (kind, statistics.median(results[kind]),
                                                min(results[kind]), max(results[kind])))
    if args.objects:
        for kind in kinds:
            if kind in ("stdlib", "cython", "python"):
                out = subprocess.run([sys.executable, HERE, "--objects-of", kind],
                                     env=build_env(kind == "python"),
                                     stdout=subprocess.PIPE, text=True, check=True).stdout
                print()
                print(out.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
