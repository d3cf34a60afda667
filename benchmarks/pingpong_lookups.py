"""The lookups by name one ping-pong request makes on its channel.

    python benchmarks/pingpong_lookups.py [--requests 200] [--stdlib] [--calls]

Issue 18's line ping-pong served in process over a socketpair: a handler
whose ``found_terminator()`` pushes ``b"pong\\n"``, under
``asyncore.loop(count=1)``.  Its class also defines ``__getattribute__``,
which counts every attribute read on the channel (Python code, the
library's C code and the interpreter all come through it; only names
read from the class or another object are not seen), then defers to
``object.__getattribute__``.  Printed: the names read per request, with
counts.  The counting hook itself slows every read: this counts lookups,
it does not time them.  ``ASYNCHAT_CORE_NO_EXTENSIONS=1`` for the Python
build; ``--stdlib`` for CPython 3.11's modules (``pyasynchat`` on 3.12+).
``--calls`` also counts the Python functions run per request (the Python
build's own shape: each call costs about 320 instructions), from
``sys.setprofile``.
"""

import argparse
import collections
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linechat import chat_modules, pong_handler  # noqa: E402


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stdlib", action="store_true")
    parser.add_argument("--calls", action="store_true")
    args = parser.parse_args(argv)
    asynchat, asyncore = chat_modules("stdlib" if args.stdlib else None)
    if args.stdlib:
        what = "stdlib"
    else:
        import asynchat_core
        what = asynchat_core.IMPLEMENTATION

    counts = collections.Counter()
    counting = [False]

    class Handler(pong_handler(asynchat)):
        def __getattribute__(self, name):
            if counting[0]:
                counts[name] += 1
            return object.__getattribute__(self, name)

    chan_map = {}
    a, peer = socket.socketpair()
    Handler(a, chan_map)

    def one_request():
        peer.sendall(b"ping\n")
        got = b""
        while not got.endswith(b"\n"):
            asyncore.loop(timeout=1.0, map=chan_map, count=1)
            peer.setblocking(False)
            try:
                got += peer.recv(64)
            except BlockingIOError:
                pass

    for _ in range(20):
        one_request()
    calls = collections.Counter()
    skip = {"one_request", "__getattribute__"}

    def profiler(frame, event, arg):
        if event == "call" and frame.f_code.co_name not in skip:
            code = frame.f_code
            if os.path.basename(code.co_filename) != "socket.py" or code.co_name != "recv":
                calls["%s:%s" % (os.path.basename(code.co_filename), code.co_name)] += 1

    counting[0] = True
    if args.calls:
        sys.setprofile(profiler)
    for _ in range(args.requests):
        one_request()
    sys.setprofile(None)
    counting[0] = False
    total = sum(counts.values())
    print("%s, Python %s: %.1f lookups by name on the channel per request"
          % (what, sys.version.split()[0], total / args.requests))
    print("| name | per request |")
    print("|---|---:|")
    for name, n in counts.most_common():
        print("| `%s` | %.2f |" % (name, n / args.requests))
    if args.calls:
        # asyncore.loop() itself and its helpers run once per loop call
        # here, once per pass in a server: they are listed too
        print()
        print("%.1f Python function calls per request" % (sum(calls.values()) / args.requests))
        print("| function | per request |")
        print("|---|---:|")
        for name, n in calls.most_common():
            print("| `%s` | %.2f |" % (name, n / args.requests))
    a.close()
    peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
