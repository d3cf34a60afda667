"""Server instructions per request at N=0, counted by callgrind.

    python benchmarks/loop_instructions.py [--servers stdlib-select,stdlib-poll,epoll]
                                           [--rounds 500,2500]

Wall-clock rates at N=0 swing by tens of percent on a shared machine;
instruction counts do not.  Each server variant of ``scaling.py`` (same
handler, same loop call) runs under ``valgrind --tool=callgrind`` twice,
serving R1 and then R2 lockstep rounds of the 4 active clients.  The
difference of the two totals over the difference of the request counts is
the user-space cost of one request: start-up and shutdown cancel out.
Kernel time (the recv/send/poll system calls, the same number for every
server) is not counted: ``scaling.py`` reports the full CPU per request.
Needs valgrind; Linux only.  ``PYTHONHASHSEED=0`` unless the environment
sets it, as in ``kernel_instructions.py``: with random string hashing the
same build's figure moved by 3-5% between runs.
"""

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scaling  # noqa: E402  (the server of the scaling benchmark)
from linechat import ACTIVE, callgrind_total  # noqa: E402


def count(variant, rounds):
    """Total instructions of one server run that serves ``rounds`` rounds."""
    return callgrind_total([scaling.HERE, "--serve", variant, "0"], variant.endswith("-py"),
                           rounds, variant)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=None)
    parser.add_argument("--rounds", default="500,2500")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt install valgrind)", file=sys.stderr)
        return 2
    variants = ["epoll", "epoll-py"]
    if sys.version_info < (3, 12):
        variants = ["stdlib-select", "stdlib-poll"] + variants
    if args.servers:
        variants = args.servers.split(",")
    low, high = (int(r) for r in args.rounds.split(","))
    requests = (high - low) * ACTIVE
    per_request = {}
    for variant in variants:
        per_request[variant] = (count(variant, high) - count(variant, low)) / requests
        print("%-14s %8.0f instructions/request" % (variant, per_request[variant]), flush=True)
    base = [v for v in variants if v.startswith("stdlib-")]
    for variant in variants:
        for other in base:
            if variant != other and not variant.startswith("stdlib-"):
                print("%s / %s: %.2fx the instructions" % (
                    variant, other, per_request[variant] / per_request[other]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
