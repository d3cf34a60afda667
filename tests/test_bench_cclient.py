"""The benchmark's C load client (asynchat_core/bench/cclient.py), against real servers.

A threaded echo server in this process counts the bytes it answered; the
client, a separate process, must report no more replies than that, no fewer
than that less the one block each connection may have had in flight, and fail
loudly when the server hangs up or the arguments are wrong.
"""
import shutil
import socket
import subprocess
import threading

import pytest

from asynchat_core.bench import cclient

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


class EchoServer:
    """Echo every byte back; optionally hang up after ``close_after`` bytes."""

    def __init__(self, close_after=None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.close_after = close_after
        self.echoed = 0
        self.lock = threading.Lock()
        self.threads = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if self.close_after is not None and self.echoed >= self.close_after:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return
                with self.lock:
                    self.echoed += len(data)

    def close(self):
        # shutdown() wakes the accept() blocked in the other thread (Linux)
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.accepter.join(10)
        for t in self.threads:
            t.join(10)
        assert not self.accepter.is_alive()


@pytest.fixture
def exe():
    path, why = cclient.build()
    assert path is not None, why
    return path


@pytest.mark.parametrize("size,depth,conns", [(100, 16, 4), (4096, 1, 2), (7, 3, 1)])
def test_counts_what_the_server_answered(exe, size, depth, conns):
    server = EchoServer()
    try:
        request = (size - 4).to_bytes(4, "big") + b"r" * (size - 4)
        r = cclient.run_client(exe, server.port, conns, 0.4, request, size, depth, warmup=0.1)
    finally:
        server.close()
    answered = server.echoed // size
    assert r["reply_size"] == size
    assert 0 < r["requests"] <= answered
    # after the deadline each connection may have at most one block unread
    assert r["requests"] >= answered - conns * depth
    assert r["rate"] > 0 and r["elapsed"] >= 0.4
    # the window (after the warm-up) holds no more than every reply counted
    assert r["rate"] * (r["elapsed"] - 0.1) <= r["requests"] * 1.01 + 1
    assert 0 <= r["client_cpu"] <= 1.5


def test_a_server_that_hangs_up_fails_the_run(exe):
    server = EchoServer(close_after=1000)
    try:
        with pytest.raises(RuntimeError, match="server closed a connection"):
            cclient.run_client(exe, server.port, 2, 2.0, b"x" * 100, 100, 4)
    finally:
        server.close()


def test_a_refused_connection_fails_the_run(exe):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connect() is refused
        with pytest.raises(RuntimeError, match="connect"):
            cclient.run_client(exe, port, 1, 0.2, b"x", 1, 1)


@pytest.mark.parametrize("args", [
    ["0", "1", "1", "0", "1", "1"],        # port 0
    ["80", "0", "1", "0", "1", "1"],       # no connection
    ["80", "1", "-1", "0", "1", "1"],      # negative duration
    ["80", "1", "1", "0", "0", "1"],       # empty reply
    ["80", "1", "1", "0", "1", "x"],       # depth not a number
    ["80", "1", "1", "0", "1"],            # an argument missing
])
def test_bad_arguments_exit_2(exe, args):
    out = subprocess.run([exe] + args, input=b"x", capture_output=True, timeout=10)
    assert out.returncode == 2, out
    assert out.stderr


def test_an_empty_request_exits_2(exe):
    out = subprocess.run([exe, "80", "1", "1", "0", "1", "1"], input=b"", capture_output=True,
                         timeout=10)
    assert out.returncode == 2 and b"empty request" in out.stderr
