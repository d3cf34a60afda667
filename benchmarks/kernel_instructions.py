"""Instructions per frame of the chat code, counted by callgrind.

    python benchmarks/kernel_instructions.py [--workloads lines,resp,single]
                                             [--reads 300,900] [--python PY]

Runs a fixed byte stream through ``async_chat.handle_read`` over a real
``socket.socketpair()``: the peer end writes one chunk, the channel reads it
(one ``recv``) and answers every frame with a ``push``, then the peer drains
the replies.  Each workload runs under ``valgrind --tool=callgrind`` twice,
for R1 and R2 reads; the difference of the two totals over the difference
of the frame counts is the user-space cost of one frame (start-up and
shutdown cancel out; system call time is not counted; the garbage collector
is off while the reads run).

Only public API is used, so the same file measures any checkout: run it
with that checkout's interpreter (``--python /path/.venv/bin/python``) to
compare commits.  ``ASYNCHAT_CORE_NO_EXTENSIONS=1`` in the environment
measures the Python implementation.  Needs valgrind; Linux only.

The runs use ``PYTHONHASHSEED=0`` unless the environment sets it: with
random string hashing the same build's figure moved by up to 2% from one
invocation to the next (dict probe sequences differ), which hides the
changes this script exists to measure.
"""

import argparse
import gc
import os
import re
import shutil
import socket
import subprocess
import sys

LINE = b"x" * 30 + b"\r\n"  # 32 bytes
RESP = (
    b"PING\r\n"
    b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$3\r\nxxx\r\n"
    b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000042\r\n"
)

# name: (bytes of one read, frames in it)
WORKLOADS = {
    "lines": (LINE * 128, 128),  # pipelined lines: 128 frames per read
    "resp": (RESP * 32, 32 * 13),  # byte and integer terminators mixed
    "single": (LINE, 1),  # request/response: one frame per read
}


def _channel_class(asynchat):
    class Counter(asynchat.async_chat):
        def __init__(self, sock, resp):
            asynchat.async_chat.__init__(self, sock, map={})
            self.frames = 0
            self.resp = resp
            self.set_terminator(b"\r\n")

        def collect_incoming_data(self, data):
            self.last = data

        def found_terminator(self):
            self.frames += 1
            if self.resp:
                # RESP bulk strings: "$N" announces N bytes and a CRLF
                term = self.get_terminator()
                if isinstance(term, int):
                    self.set_terminator(b"\r\n")
                elif self.last[:1] == b"$":
                    self.set_terminator(int(self.last[1:]) + 2)
                    return
                elif self.last[:1] == b"*":
                    return
            self.push(b"+OK\r\n")

    return Counter


def run(workload, reads):
    """Serve ``reads`` reads of ``workload``; print the frame count."""
    from asynchat_core import asynchat

    chunk, _ = WORKLOADS[workload]
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    chan = _channel_class(asynchat)(ours, workload == "resp")
    # no collections: whether one lands inside the run depends on the
    # objects start-up made, not on the code measured
    gc.disable()
    for _ in range(reads):
        peer.send(chunk)
        chan.handle_read()
        while True:
            try:
                if not peer.recv(1 << 20):
                    break
            except BlockingIOError:
                break
    print(chan.frames)
    chan.close()
    peer.close()


def count(python, workload, reads):
    """Total instructions and frames of one run of ``reads`` reads."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           python, os.path.abspath(__file__), "--run", workload, str(reads)]
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")  # the same figure every run (see above)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or not found:
        raise RuntimeError("callgrind run failed:\n%s" % proc.stderr[-2000:])
    return int(found.group(1)), int(proc.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--reads", default="300,900", help="R1,R2 (default 300,900)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the checkout to measure")
    parser.add_argument("--run", nargs=2, metavar=("WORKLOAD", "READS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run[0], int(args.run[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found")
    r1, r2 = (int(x) for x in args.reads.split(","))
    print("workload   instructions/frame   (%s, %s)" % (
        args.python, "python" if os.environ.get("ASYNCHAT_CORE_NO_EXTENSIONS") else "default"))
    for workload in args.workloads.split(","):
        total1, frames1 = count(args.python, workload, r1)
        total2, frames2 = count(args.python, workload, r2)
        per_frame = (total2 - total1) / (frames2 - frames1)
        print("%-10s %12.1f" % (workload, per_frame))


if __name__ == "__main__":
    main()
