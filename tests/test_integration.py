"""End to end on loopback: the stdlib smtpd server on asynchat_core, and a
line-protocol echo server driven by many concurrent pipelining clients."""
import os
import selectors
import smtplib
import socket
import subprocess
import sys
import threading
import time

import pytest

from asynchat_core import asynchat, asyncore

SMTPD_SERVER = r"""
import sys, warnings
import asynchat_core
asynchat_core.install()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import smtpd
import asyncore, asynchat
assert issubclass(smtpd.SMTPChannel, asynchat_core.asynchat.async_chat)
assert asyncore is asynchat_core.asyncore

class Recorder(smtpd.SMTPServer):
    received = []
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        self.received.append((mailfrom, rcpttos, data))
        # to a file: a 70 KB line on a pipe nobody reads yet would block
        with open(sys.argv[2], "a") as f:
            f.write("MSG %r\n" % ((mailfrom, rcpttos, data),))

server = Recorder(("127.0.0.1", 0), None, decode_data=False)
sys.stdout.write("PORT %d %s\n" % (server.socket.getsockname()[1],
                                    asynchat_core.IMPLEMENTATION))
sys.stdout.flush()
want = int(sys.argv[1])
deadline = __import__("time").monotonic() + 30
# run until every message arrived and every session ended (QUIT), so the
# last replies are flushed before close_all()
while ((len(Recorder.received) < want or len(asyncore.socket_map) > 1)
       and __import__("time").monotonic() < deadline):
    asyncore.loop(timeout=0.05, count=1)
asyncore.close_all()
"""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="smtpd was removed in Python 3.12")
@pytest.mark.parametrize("python_build", [False, True], ids=["default", "no-extensions"])
def test_stdlib_smtpd_on_asynchat_core(python_build, tmp_path):
    env = dict(os.environ)
    env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    if python_build:
        env["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    messages = [
        ("alice@example.org", ["bob@example.org"], b"Subject: one\r\n\r\nhello\r\n"),
        # dot-stuffing, a long body and a line with a lone dot inside
        ("carol@example.org", ["dan@example.org", "eve@example.org"],
         b"Subject: two\r\n\r\n.leading dot\r\n" + b"x" * 70000 + b"\r\n..\r\nend\r\n"),
        ("frank@example.org", ["gina@example.org"], b"Subject: three\r\n\r\n" +
         b"".join(b"line %d\r\n" % i for i in range(2000))),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", SMTPD_SERVER, str(len(messages)), str(tmp_path / "mail")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["PORT"], proc.stderr.read()
        port, impl = int(first[1]), first[2]
        assert impl == ("python" if python_build else "cython")
        # one session per message: smtpd itself (stdlib too) does not reset
        # its byte count after a large DATA, so a later command would fail
        for sender, rcpts, body in messages:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                assert client.sendmail(sender, rcpts, body) == {}
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = (tmp_path / "mail").read_text().splitlines()
    got = [eval(line[4:]) for line in lines if line.startswith("MSG ")]
    # smtpd joins the lines with LF, undoes dot-stuffing, drops the final CRLF
    expected = [(s, r, b.rstrip(b"\r\n").replace(b"\r\n", b"\n")) for s, r, b in messages]
    assert got == expected


class EchoChannel(asynchat.async_chat):
    """Answers each line with ``echo:<line>``; ``QUIT`` ends the session."""

    def __init__(self, sock, map):
        asynchat.async_chat.__init__(self, sock, map)
        self.set_terminator(b"\n")
        self.frames = []

    def collect_incoming_data(self, data):
        self.frames.append(data)

    def found_terminator(self):
        line = b"".join(self.frames)
        self.frames = []
        if line == b"QUIT":
            self.push(b"bye\n")
            self.close_when_done()
        else:
            self.push(b"echo:" + line + b"\n")


class EchoServer(asyncore.dispatcher):
    def __init__(self, map):
        asyncore.dispatcher.__init__(self, map=map)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(256)
        self.map = map

    def handle_accepted(self, sock, addr):
        EchoChannel(sock, self.map)


@pytest.mark.parametrize("use_poll", [False, True], ids=["select", "poll"])
def test_echo_server_with_200_concurrent_pipelining_clients(our_impl, use_poll):
    map = {}
    server = EchoServer(map)
    port = server.socket.getsockname()[1]
    stop = threading.Event()

    def run():
        while not stop.is_set():
            asyncore.loop(timeout=0.02, use_poll=use_poll, map=map, count=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    clients = []
    sel = selectors.DefaultSelector()
    try:
        expected = {}
        for n in range(200):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            lines = [b"client %d request %d %s" % (n, i, b"z" * (n * 7 % 300))
                     for i in range(5)]
            # all five requests in one segment: the server must frame them
            c.sendall(b"\n".join(lines) + b"\nQUIT\n")
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ, n)
            expected[n] = b"".join(b"echo:" + line + b"\n" for line in lines) + b"bye\n"
            clients.append(c)
        received = {n: bytearray() for n in expected}
        open_count = len(clients)
        deadline = time.monotonic() + 30
        while open_count and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                data = key.fileobj.recv(65536)
                if data:
                    received[key.data] += data
                else:  # the server closed after "bye": close_when_done works
                    sel.unregister(key.fileobj)
                    open_count -= 1
        assert open_count == 0, "server did not close every session"
        for n in expected:
            assert bytes(received[n]) == expected[n], n
    finally:
        stop.set()
        thread.join(10)
        for c in clients:
            c.close()
        sel.close()
        asyncore.close_all(map)
    assert not thread.is_alive()
    assert map == {}
