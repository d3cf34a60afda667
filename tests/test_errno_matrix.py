"""Errno matrix: real and injected failures on recv, send and accept.

Every "peer is gone" errno gives exactly one ``handle_close`` and no
``handle_error``; EAGAIN gives no callback; EINTR is retried (Python's
socket layer retries it, PEP 475); any other errno gives exactly one
``handle_error``.  Writing to a peer that reset the connection never kills
the process with SIGPIPE, even with SIGPIPE at its default action.
"""
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from asynchat_core import asynchat, asyncore

DISCONNECT = [errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED,
              errno.EPIPE, errno.EBADF]
OTHER = [errno.EIO, errno.ENOMEM, errno.EACCES, errno.EINVAL]
AGAIN = [errno.EAGAIN, errno.EWOULDBLOCK]


class FaultySocket:
    """Wraps a real socket; the next recv/send raises the given errno once."""

    def __init__(self, sock):
        self._sock = sock
        self.fail = {}  # method name -> errno
        self.calls = {"recv": 0, "send": 0}

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def _maybe_fail(self, name):
        self.calls[name] += 1
        err = self.fail.pop(name, None)
        if err is not None:
            if err == errno.EINTR:
                raise InterruptedError(err, os.strerror(err))
            raise OSError(err, os.strerror(err))

    def recv(self, size):
        self._maybe_fail("recv")
        return self._sock.recv(size)

    def send(self, data):
        self._maybe_fail("send")
        return self._sock.send(data)


class Counting(asynchat.async_chat):
    def __init__(self, sock, map):
        asynchat.async_chat.__init__(self, sock, map=map)
        self.set_terminator(b"\n")
        self.events = []

    def collect_incoming_data(self, data):
        self.events.append(("data", bytes(data)))

    def found_terminator(self):
        self.events.append(("found",))

    def handle_close(self):
        self.events.append(("close",))
        self.close()

    def handle_error(self):
        exc = sys.exc_info()[1]
        self.events.append(("error", getattr(exc, "errno", type(exc).__name__)))
        self.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    map = {}
    fs = FaultySocket(a)
    chan = Counting(fs, map)
    yield chan, fs, b, map
    asyncore.close_all(map)
    a.close()
    b.close()


def callbacks(chan):
    return [e for e in chan.events if e[0] in ("close", "error")]


def run_events(chan, map, passes=5):
    for _ in range(passes):
        if not map:
            break
        asyncore.loop(timeout=0.01, map=map, count=1)


@pytest.mark.parametrize("err", DISCONNECT + OTHER + AGAIN + [errno.EINTR])
@pytest.mark.parametrize("where", ["recv", "send"])
def test_injected_errno(pair, where, err):
    chan, fs, peer, map = pair
    fs.fail[where] = err
    if where == "recv":
        peer.sendall(b"hello\n")
        run_events(chan, map)
    else:
        chan.push(b"reply\n")
        run_events(chan, map)
    got = callbacks(chan)
    if err in DISCONNECT:
        assert got == [("close",)]
    elif err in OTHER:
        assert got == [("error", err)]
    else:
        # EAGAIN: no callback, the operation happens on a later pass;
        # EINTR: retried
        assert got == []
        if where == "recv":
            assert ("found",) in chan.events
        else:
            peer.settimeout(2)
            assert peer.recv(100) == b"reply\n"


def test_real_reset_on_recv_gives_one_close(pair):
    chan, fs, peer, map = pair
    peer.sendall(b"partial")
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()
    run_events(chan, map, 10)
    assert callbacks(chan) == [("close",)]


def test_real_reset_over_tcp_on_send_and_recv():
    map = {}
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = socket.create_connection(lsock.getsockname())
    conn, _ = lsock.accept()
    lsock.close()
    chan = Counting(conn, map)
    # RST from the peer: SO_LINGER with a zero timeout
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()
    chan.push(b"x" * 100000)
    run_events(chan, map, 20)
    asyncore.close_all(map)
    assert callbacks(chan) == [("close",)]


@pytest.mark.parametrize("err", [errno.ECONNABORTED, errno.EAGAIN, errno.EWOULDBLOCK])
def test_accept_transient_errors_are_ignored(err):
    map = {}

    class L(asyncore.dispatcher):
        accepted = 0
        errors = 0

        def handle_accepted(self, sock, addr):
            L.accepted += 1
            sock.close()

        def handle_error(self):
            L.errors += 1

    lst = L(map=map)
    lst.create_socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(5)
    real = lst.socket

    class FaultyListener:
        failed = False

        def __getattr__(self, name):
            return getattr(real, name)

        def accept(self):
            if not FaultyListener.failed:
                FaultyListener.failed = True
                raise OSError(err, os.strerror(err))
            return real.accept()

    lst.socket = FaultyListener()
    c = socket.create_connection(real.getsockname())
    try:
        for _ in range(10):
            asyncore.loop(timeout=0.02, map=map, count=1)
            if L.accepted:
                break
        assert L.errors == 0 and L.accepted == 1
    finally:
        c.close()
        lst.socket = real
        asyncore.close_all(map)


def test_accept_emfile_pauses_the_listener_then_resumes():
    # out of descriptors: no handle_error, the listener stays, accepting resumes
    map = {}

    class L(asyncore.dispatcher):
        errors = []
        accepted = 0

        def handle_accepted(self, sock, addr):
            L.accepted += 1
            sock.close()

        def handle_error(self):
            L.errors.append(sys.exc_info()[1])

    lst = L(map=map)
    lst.create_socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(5)
    real = lst.socket

    class FaultyListener:
        failures = 3

        def __getattr__(self, name):
            return getattr(real, name)

        def accept(self):
            if FaultyListener.failures:
                FaultyListener.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return real.accept()

    lst.socket = FaultyListener()
    c = socket.create_connection(real.getsockname())
    try:
        for _ in range(200):
            asyncore.loop(timeout=0.02, map=map, count=1)
            if L.accepted:
                break
        assert L.errors == [] and L.accepted == 1
        assert map.get(real.fileno()) is lst
    finally:
        c.close()
        lst.socket = real
        asyncore.close_all(map)


def test_real_eintr_in_the_loop_is_retried():
    # a signal handler firing every millisecond interrupts the poller's wait
    # and the socket calls; the loop must neither raise nor call back
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer")
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    a, b = socket.socketpair()
    map = {}
    chan = Counting(a, map)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        for i in range(20):
            b.sendall(b"line%d\n" % i)
            asyncore.loop(timeout=0.02, map=map, count=2)
            chan.push(b"r%d\n" % i)
        signal.setitimer(signal.ITIMER_REAL, 0)
        b.settimeout(2)
        got = b""
        while got.count(b"\n") < 20:
            got += b.recv(1000)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        asyncore.close_all(map)
        b.close()
    assert hits
    assert callbacks(chan) == []
    assert chan.events.count(("found",)) == 20
    assert got == b"".join(b"r%d\n" % i for i in range(20))


SIGPIPE_CHILD = textwrap.dedent("""
    import signal, socket, sys, time
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from asynchat_core import asynchat, asyncore

    class C(asynchat.async_chat):
        closes = 0
        def collect_incoming_data(self, data): pass
        def found_terminator(self): pass
        def handle_close(self):
            C.closes += 1
            self.close()

    for kind in ("unix", "tcp"):
        if kind == "unix":
            a, b = socket.socketpair()
        else:
            l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
            b = socket.create_connection(l.getsockname()); a, _ = l.accept(); l.close()
        map = {}
        c = C(a, map=map)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\1\\0\\0\\0\\0\\0\\0\\0")
        b.close()
        time.sleep(0.05)
        for i in range(50):
            if not map:
                break
            c.push(b"x" * 65536)
            asyncore.loop(timeout=0.01, map=map, count=1)
    print("alive", C.closes)
""")


def test_no_sigpipe_with_default_action():
    assert signal.SIGPIPE  # POSIX only module-wide
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", SIGPIPE_CHILD], capture_output=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == [b"alive", b"2"]
