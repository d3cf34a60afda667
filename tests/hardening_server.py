"""A line server for the hardening tests, run in a subprocess or a thread.

Protocol (one request per line): ``ECHO <text>`` replies ``<text>``;
``BIG <n>`` replies ``n`` bytes of a known pattern then ``\\n``;
``STATS`` replies a JSON line with the server's own figures (RSS, open
fds, channels, frame-cap hits and the most bytes any cut-off channel read).

    python hardening_server.py [--cap BYTES] [--idle SECONDS] [--backend NAME]

prints ``PORT <n>`` and serves until stdin closes.
"""
import json
import os
import socket
import sys
import threading

from asynchat_core import asynchat, asyncore


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def pattern(n):
    block = bytes(range(256)) * 4
    return (block * (n // len(block) + 1))[:n]


class Stats:
    def __init__(self):
        self.frame_errors = 0
        self.other_errors = []
        self.max_read_by_cut = 0
        self.closes = 0
        self.requests = 0


class LineChannel(asynchat.async_chat):
    """Replies to ECHO/BIG/STATS; counts what it reads for the cap check."""

    def __init__(self, sock, server):
        asynchat.async_chat.__init__(self, sock, map=server.map)
        self.server = server
        self.ac_max_frame_size = server.cap
        self.set_terminator(b"\n")
        self.parts = []
        self.bytes_read = 0
        if server.idle is not None:
            asyncore.set_idle_timeout(self, server.idle)

    def recv(self, size):
        data = asynchat.async_chat.recv(self, size)
        self.bytes_read += len(data)
        return data

    def collect_incoming_data(self, data):
        self.parts.append(data)

    def found_terminator(self):
        line = b"".join(self.parts)
        self.parts = []
        self.server.stats.requests += 1
        if line.startswith(b"ECHO "):
            self.push(line[5:] + b"\n")
        elif line.startswith(b"BIG "):
            self.push(pattern(int(line[4:])) + b"\n")
        elif line == b"STATS":
            self.push(json.dumps(self.server.figures()).encode() + b"\n")
        else:
            self.push(b"ERR\n")

    def handle_error(self):
        exc = sys.exc_info()[1]
        if isinstance(exc, asynchat.FrameTooLarge):
            self.server.stats.frame_errors += 1
            read = self.bytes_read
            self.server.stats.max_read_by_cut = max(self.server.stats.max_read_by_cut, read)
        else:
            self.server.stats.other_errors.append(repr(exc))
        self.close()

    def handle_close(self):
        self.server.stats.closes += 1
        self.close()


class Server(asyncore.dispatcher):
    """Listener creating a LineChannel per connection."""

    def __init__(self, map, cap=None, idle=None, host="127.0.0.1"):
        asyncore.dispatcher.__init__(self, map=map)
        self.map = map
        self.cap = cap
        self.idle = idle
        self.stats = Stats()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, 0))
        self.listen(1024)
        self.port = self.socket.getsockname()[1]

    def handle_accepted(self, sock, addr):
        LineChannel(sock, self)

    def figures(self):
        return {
            "rss_kib": rss_kib(),
            "fds": open_fds(),
            "channels": len(self.map),
            "frame_errors": self.stats.frame_errors,
            "other_errors": self.stats.other_errors[:5],
            "max_read_by_cut": self.stats.max_read_by_cut,
            "closes": self.stats.closes,
            "requests": self.stats.requests,
        }


class ThreadedServer:
    """Run a Server's loop in a thread until ``stop()``."""

    def __init__(self, backend=None, **kw):
        self.map = {}
        self.server = Server(self.map, **kw)
        self.port = self.server.port
        self.backend = backend
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            asyncore.loop(timeout=0.01, map=self.map, count=1, backend=self.backend)

    def stop(self):
        self._stop = True
        self.thread.join(10)
        asyncore.close_all(self.map)


def main(argv):
    cap = idle = backend = None
    args = list(argv)
    while args:
        opt = args.pop(0)
        if opt == "--cap":
            cap = int(args.pop(0))
        elif opt == "--idle":
            idle = float(args.pop(0))
        elif opt == "--backend":
            backend = args.pop(0)
    map = {}
    server = Server(map, cap=cap, idle=idle)
    done = []

    def watch_stdin():
        sys.stdin.read()
        done.append(True)

    threading.Thread(target=watch_stdin, daemon=True).start()
    sys.stdout.write("PORT %d\n" % server.port)
    sys.stdout.flush()
    while not done:
        asyncore.loop(timeout=0.05, map=map, count=1, backend=backend)
    asyncore.close_all(map)


if __name__ == "__main__":
    main(sys.argv[1:])
