"""Instructions per message of whole framed servers (issue 19), every kind.

    python benchmarks/framing_server_instructions.py [--protocols lp,resp]
        [--servers cython-framer,python-framer,...] [--depth 16] [--rounds 200,700]
        [--profile cython-framer] [--top 25]

The benchmark's own servers (``python -m asynchat_core.bench.worker server``,
the code ``--scenarios framing`` measures) run under ``valgrind
--tool=callgrind`` twice, serving R1 and then R2 rounds; (total(R2) -
total(R1)) / extra messages is the user-space cost of one message: the
loop, the parse, the user's handler, the reply, the socket calls' Python
side.  Kernel time is not counted.  Each round, 4 clients each send
``--depth`` messages in one write and read the replies:

* ``lp``: 100-byte records after a 4-byte big-endian length, echoed.
  ``cython-framer`` / ``python-framer``: the ``LengthPrefix`` framer with
  ``found_messages`` and ``push_frames``; ``cython`` / ``stdlib``: the
  classic two-terminator handler; ``uvloop``: a ``Protocol`` with
  ``struct.unpack_from`` at offsets.
* ``resp``: Redis ``SET`` requests, ``+OK`` replies, the same
  ``resp_execute`` everywhere.  ``cython-framer`` / ``python-framer``: the
  ``RespRequests`` framer with ``found_messages``; ``cython`` / ``stdlib``:
  the classic handler (``set_terminator`` per line and bulk);
  ``uvloop-hiredis``: a ``Protocol`` parsing with hiredis's ``Reader``;
  ``uvloop``: with the benchmark's Python parser.

Needs valgrind (and uvloop, hiredis for those servers); Linux only.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from linechat import callgrind_total  # noqa: E402
from pingpong_instructions import profile  # noqa: E402

LP_RECORD = (100).to_bytes(4, "big") + b"r" * 100
RESP_SET = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$3\r\nxxx\r\n"

# protocol -> (request, reply, {server: (worker source, server kind, Python build)})
PROTOCOLS = {
    "lp": (LP_RECORD, LP_RECORD, {
        "cython-framer": ("asynchat_core", "lp-framer", False),
        "python-framer": ("asynchat_core", "lp-framer", True),
        "cython": ("asynchat_core", "lp", False),
        "stdlib": ("stdlib", "lp", False),
        "uvloop": ("uvloop", "lp", False),
    }),
    "resp": (RESP_SET, b"+OK\r\n", {
        "cython-framer": ("asynchat_core", "resp-framer", False),
        "python-framer": ("asynchat_core", "resp-framer", True),
        "cython": ("asynchat_core", "resp", False),
        "stdlib": ("stdlib", "resp", False),
        "uvloop-hiredis": ("uvloop", "resp-hiredis", False),
        "uvloop": ("uvloop", "resp", False),
    }),
}


def rounds_of(request, reply, depth):
    """One round: each client sends ``depth`` requests in one write, then
    reads their replies, checked."""
    block = request * depth
    want = reply * depth

    def exchange(socks):
        for s in socks:
            s.sendall(block)
        for s in socks:
            got = b""
            while len(got) < len(want):
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("server closed")
                got += chunk
            if got != want:
                raise AssertionError("wrong replies %r" % got[:80])
        return len(socks) * depth
    return exchange


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="lp,resp")
    parser.add_argument("--servers", default="", help="default: every server of the protocol")
    parser.add_argument("--depth", type=int, default=16, help="messages per read")
    parser.add_argument("--rounds", default="200,700")
    parser.add_argument("--profile", default="", help="servers to profile per function")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    low, high = (int(r) for r in args.rounds.split(","))
    wanted = [s for s in args.servers.split(",") if s]
    print("instructions per message, %d per read (rounds %d,%d)" % (args.depth, low, high))
    for proto in args.protocols.split(","):
        request, reply, servers = PROTOCOLS[proto]
        exchange = rounds_of(request, reply, args.depth)
        results = {}
        for name, (source, kind, python_build) in servers.items():
            if wanted and name not in wanted:
                continue
            script = ["-m", "asynchat_core.bench.worker", "server", source, kind]
            keep = name in args.profile.split(",")
            files = ["/tmp/framing-%s-%s-%d.out" % (proto, name, r) if keep else "/dev/null"
                     for r in (low, high)]
            try:
                a, b = (callgrind_total(script, python_build, r, name, f, exchange)
                        for r, f in zip((low, high), files))
            except Exception as exc:  # noqa: BLE001 - a missing peer (uvloop, hiredis) is a row
                print("%-5s %-15s failed: %s" % (proto, name, str(exc).splitlines()[0][:100]))
                continue
            per = (b - a) / ((high - low) * 4 * args.depth)
            results[name] = per
            print("%-5s %-15s %8.0f" % (proto, name, per), flush=True)
            if keep:
                print(profile(files[0], files[1], (high - low) * 4 * args.depth, args.top))
        base = results.get("uvloop-hiredis" if proto == "resp" else "uvloop")
        if base:
            print("%s, / %s: %s" % (proto, "uvloop-hiredis" if proto == "resp" else "uvloop",
                                    ", ".join("%s %.2fx" % (k, v / base)
                                              for k, v in results.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
