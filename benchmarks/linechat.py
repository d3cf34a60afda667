"""The line ping-pong the benchmarks here serve and drive, written once.

A server reads ``b"\\n"``-terminated lines and answers each with
``b"pong\\n"``; ``ACTIVE`` clients in lockstep each send ``b"ping\\n"`` and
wait for the reply.  Used by ``scaling.py``, ``loop_instructions.py``,
``pingpong_instructions.py``, ``conn_memory.py`` and ``pingpong_lookups.py``;
``callgrind_script_total`` by ``framing_instructions.py`` and ``push_instructions.py``.
"""

import os
import re
import resource
import socket
import subprocess
import sys
import warnings

ACTIVE = 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raise_nofile(n):
    """Room for ``n`` descriptors (and some to spare), up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def build_env(python_build):
    """This environment for a child that runs asynchat_core's Python build
    (``python_build``) or its compiled build."""
    env = dict(os.environ)
    env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    if python_build:
        env["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    return env


# ------------------------------------------------------------------ server

def chat_modules(kind):
    """``(asynchat, asyncore)``: the interpreter's own for ``"stdlib"``
    (``pyasynchat`` on 3.12+), else asynchat_core's from this checkout,
    which must be the build named ``kind`` ("cython" or "python") unless
    ``kind`` is None."""
    if kind == "stdlib":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asynchat
            import asyncore
        return asynchat, asyncore
    sys.path.insert(0, ROOT)
    import asynchat_core
    from asynchat_core import asynchat, asyncore
    if kind is not None:
        assert asynchat_core.IMPLEMENTATION == kind, asynchat_core.IMPLEMENTATION
    return asynchat, asyncore


def pong_handler(asynchat):
    """The server side of one connection: ``b"pong\\n"`` for every line."""

    class Handler(asynchat.async_chat):
        def __init__(self, sock, map=None):
            asynchat.async_chat.__init__(self, sock, map)
            self.set_terminator(b"\n")

        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            self.push(b"pong\n")

    return Handler


def listener(backlog):
    """A listening socket on a free loopback port, its port number printed
    (the first line the driver reads)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    print(sock.getsockname()[1], flush=True)
    return sock


def accept_with(asyncore, handler, sock):
    """A dispatcher on the listening ``sock`` that gives every connection
    to ``handler``."""

    class Server(asyncore.dispatcher):
        def handle_accepted(self, conn, addr):
            handler(conn)

    sock.setblocking(False)
    server = Server(sock)
    server.accepting = True
    return server


# ------------------------------------------------------------------ client

def exchange(socks):
    """One lockstep round: each of ``socks`` sends a line, then each reads
    its reply.  Returns the number of requests."""
    for s in socks:
        s.sendall(b"ping\n")
    for s in socks:
        got = b""
        while not got.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                raise OSError("server closed")
            got += chunk
        if got != b"pong\n":
            raise AssertionError("wrong reply %r" % got)
    return len(socks)


def callgrind_total(script_args, python_build, rounds, name, outfile="/dev/null",
                    exchange_with=exchange):
    """Total instructions, counted by callgrind, of the server that
    ``python script_args`` starts (it prints its port, then "ready"; or
    "PORT <port>", as the benchmark's worker does) while ``ACTIVE`` clients
    do ``rounds`` rounds of ``exchange_with(socks)`` with it.
    ``PYTHONHASHSEED=0`` unless the environment sets it: with random string
    hashing one build's figure moves by a few percent between runs."""
    env = build_env(python_build)
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + outfile,
           sys.executable] + list(script_args)
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, text=True)
    socks = []
    try:
        line = server.stdout.readline()
        if line.startswith("PORT "):
            port = int(line.split()[1])
        elif line.strip().isdigit():
            port = int(line)
            assert server.stdout.readline().strip() == "ready"
        else:
            raise RuntimeError("%s did not start: %s" % (name, server.communicate()[1][-2000:]))
        for _ in range(ACTIVE):
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(120.0)  # valgrind runs the server ~50x slower
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        for _ in range(rounds):
            exchange_with(socks)
    finally:
        for s in socks:
            s.close()
        server.terminate()  # callgrind writes its totals on SIGTERM
        _, err = server.communicate(timeout=300)
    found = re.search(r"Collected : (\d+)", err)
    if not found:
        raise RuntimeError("no callgrind total for %s:\n%s" % (name, err[-2000:]))
    return int(found.group(1))


def callgrind_script_total(script, args, python_build):
    """Total instructions, counted by callgrind, of ``python script args``
    run to its end (an in-process workload: no server, no clients), with
    ``PYTHONHASHSEED=0`` and this checkout first on the path."""
    env = build_env(python_build)
    env.update(PYTHONHASHSEED="0", PYTHONPATH=ROOT)
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, script] + [str(a) for a in args],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError("callgrind run of %s %s failed:\n%s"
                           % (script, args, done.stderr[-2000:]))
    return int(found.group(1))
