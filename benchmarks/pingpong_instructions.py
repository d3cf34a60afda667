"""Instructions per request of issue 18's line ping-pong, for every kind of server.

    python benchmarks/pingpong_instructions.py [--servers stdlib,cython,python,asyncio,uvloop,epoll]
                                               [--rounds 500,2500] [--profile cython]
                                               [--top 25] [--keep DIR]

The workload of issue 18: 4 clients in lockstep, each sends ``b"ping\\n"``
and waits for the reply; on every ``b"\\n"``-terminated line the server
replies ``b"pong\\n"``.  The user code is the same everywhere:

* ``stdlib`` (CPython 3.11's asyncore/asynchat; ``pyasynchat`` on 3.12+),
  ``cython`` and ``python`` (asynchat_core's two builds): an ``async_chat``
  whose ``found_terminator()`` calls ``push(b"pong\\n")`` and whose
  ``collect_incoming_data()`` does nothing, under ``asyncore.loop()`` with
  its defaults;
* ``asyncio`` and ``uvloop``: a ``Protocol`` whose ``data_received`` splits
  lines and calls ``transport.write(b"pong\\n")`` per line;
* ``epoll``: the floor for a loop written in Python, a minimal
  level-triggered epoll loop (recv, find the newline, one method call,
  send).

Each server runs under ``valgrind --tool=callgrind`` twice, serving R1 and
then R2 rounds; (total of the R2 run - total of the R1 run) / (extra
requests) is the user-space cost of one request: start-up, the
connections' set-up and shutdown cancel out.  Kernel time is not counted.
``PYTHONHASHSEED=0`` unless the environment sets it (with random string
hashing one build's figure moves by a few percent between runs).

``--profile NAME`` also prints that server's per-function profile per
request (``callgrind_annotate``, inclusive and self, the same difference
of two runs), the ``--top`` functions of each; ``--keep DIR`` keeps
callgrind's outputs for ``callgrind_annotate``.  Needs valgrind; Linux only.
"""

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))
from linechat import (ACTIVE, accept_with, callgrind_total, chat_modules,  # noqa: E402
                      listener, pong_handler)

SERVERS = ["stdlib", "cython", "python", "asyncio", "uvloop", "epoll"]


# ------------------------------------------------------------------ servers

def serve_chat(kind, loop_kw=None):
    asynchat, asyncore = chat_modules(kind)
    accept_with(asyncore, pong_handler(asynchat), listener(1024))
    print("ready", flush=True)
    asyncore.loop(**(loop_kw or {}))


def serve_asyncio(kind):
    import asyncio

    class Pong(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buf = b""

        def data_received(self, data):
            lines = (self.buf + data).split(b"\n")
            self.buf = lines.pop()
            for _ in lines:
                self.transport.write(b"pong\n")

    if kind == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(Pong, sock=listener(1024)))
    print("ready", flush=True)
    loop.run_forever()


def serve_epoll(kind):
    import select

    class Pong:
        def __init__(self, sock):
            self.sock = sock
            self.buf = b""

        def line(self, line):
            self.sock.send(b"pong\n")

    sock = listener(1024)
    sock.setblocking(False)
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN)
    conns = {}
    print("ready", flush=True)
    while True:
        for fd, _ in ep.poll():
            if fd == sock.fileno():
                conn_sock, _ = sock.accept()
                conn_sock.setblocking(False)
                conns[conn_sock.fileno()] = Pong(conn_sock)
                ep.register(conn_sock.fileno(), select.EPOLLIN)
                continue
            conn = conns[fd]
            data = conn.sock.recv(65536)
            if not data:
                ep.unregister(fd)
                conn.sock.close()
                del conns[fd]
                continue
            buf = conn.buf + data
            start = 0
            end = buf.find(b"\n")
            while end >= 0:
                conn.line(buf[start:end])
                start = end + 1
                end = buf.find(b"\n", start)
            conn.buf = buf[start:]


def serve(kind):
    if kind in ("stdlib", "cython", "python"):
        serve_chat(kind)
    elif kind in ("asyncio", "uvloop"):
        serve_asyncio(kind)
    elif kind == "epoll":
        serve_epoll(kind)
    else:
        raise SystemExit("unknown server %r" % kind)


# ------------------------------------------------------------------ driver

def run(kind, rounds, outfile):
    """Serve ``rounds`` rounds under callgrind; return its total instructions."""
    return callgrind_total([HERE, "--serve", kind], kind == "python", rounds, kind, outfile)


_FN_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")


def functions(outfile, inclusive):
    """``{function: Ir}`` of one callgrind output (``callgrind_annotate``)."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=%s" % ("yes" if inclusive else "no"),
         "--auto=no", "--threshold=100", outfile],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    result = {}
    for line in out.splitlines():
        m = _FN_LINE.match(line)
        if not m or "PROGRAM TOTALS" in line or "=>" in line:
            continue
        name = re.sub(r"\s*\[[^\]]*\]$", "", m.group(2).strip())  # the object file
        path, _, func = name.rpartition(":")
        name = "%s:%s" % (os.path.basename(path), func) if path else func
        result[name] = result.get(name, 0) + int(m.group(1).replace(",", ""))
    return result


def profile(low_file, high_file, requests, top):
    per = {}
    for inclusive in (False, True):
        a = functions(low_file, inclusive)
        b = functions(high_file, inclusive)
        per[inclusive] = {k: (v - a.get(k, 0)) / requests for k, v in b.items()}
    total = sum(per[False].values())
    # inclusive: without the callers of everything (main, the loop's run)
    # and callgrind's cycle artefacts (recursive names, marked 'N, can show
    # more than the total)
    per[True] = {k: v for k, v in per[True].items() if v < 0.98 * total and "'" not in k}
    lines = []
    for inclusive in (True, False):
        best = sorted(per[inclusive].items(), key=lambda kv: -kv[1])[:top]
        lines.append("%s, instructions per request (of %.0f):" % (
            "inclusive" if inclusive else "self", total))
        for name, value in best:
            lines.append("  %8.0f  %s" % (value, name))
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", metavar="SERVER")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--rounds", default="500,2500")
    parser.add_argument("--profile", default="", help="servers to profile per function")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", metavar="DIR",
                        help="keep callgrind's outputs there (SERVER-ROUNDS.out)")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve)
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt install valgrind)", file=sys.stderr)
        return 2
    low, high = (int(r) for r in args.rounds.split(","))
    requests = (high - low) * ACTIVE
    to_profile = set(filter(None, args.profile.split(",")))
    print("Python %s, %d clients in lockstep, rounds %d and %d" % (
        sys.version.split()[0], ACTIVE, low, high), flush=True)
    per_request = {}
    profiles = {}
    for kind in args.servers.split(","):
        if kind == "uvloop" and importlib.util.find_spec("uvloop") is None:
            # the server would die on its import before printing its port,
            # which read as "uvloop did not start"
            print("%-8s skipped: not installed here (pip install -e \".[bench]\")" % kind,
                  flush=True)
            continue
        with tempfile.TemporaryDirectory() as d:
            where = args.keep or d
            low_file = os.path.join(where, "%s-%d.out" % (kind, low))
            high_file = os.path.join(where, "%s-%d.out" % (kind, high))
            try:
                total_low = run(kind, low, low_file)
                total_high = run(kind, high, high_file)
            except (RuntimeError, OSError) as err:
                print("%-8s failed: %s" % (kind, str(err).splitlines()[0]), flush=True)
                continue
            per_request[kind] = (total_high - total_low) / requests
            print("%-8s %8.0f instructions/request" % (kind, per_request[kind]), flush=True)
            if kind in to_profile:
                profiles[kind] = profile(low_file, high_file, requests, args.top)
    print()
    print("| server | instructions per request | / stdlib | / uvloop |")
    print("|---|---:|---:|---:|")
    for kind, value in per_request.items():
        ratios = ["%.2fx" % (value / per_request[base]) if base in per_request else ""
                  for base in ("stdlib", "uvloop")]
        print("| %s | %s | %s | %s |" % (kind, format(round(value), ","), *ratios))
    for kind, text in profiles.items():
        print("\nper-function profile of %s:\n%s" % (kind, text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
