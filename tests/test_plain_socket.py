"""dispatcher.recv()/send() on a plain socket.socket, as CPython's do them.

The compiled build reads and writes a plain, non-blocking ``socket.socket``
with recv(2)/send(2) from C (issue 18, levers 7 and 8); everything else
(a timeout, a subclass, a bytearray) goes through the socket's methods.
Each case here runs against the stdlib and both builds and must give the
same results, errors and callbacks: a closed or detached socket, a socket
with a timeout, a subclass, reads larger than the reused buffer, a full
send buffer, a peer that went away.
"""
import errno
import socket

import pytest


def _chan(impl, sock):
    log = []

    class D(impl.asyncore.dispatcher):
        def handle_close(self):
            log.append("handle_close")

    d = D(sock, map={})
    return d, log


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_read_and_write(impl, pair):
    a, b = pair
    d, log = _chan(impl, a)
    b.sendall(b"ping\n")
    assert d.recv(65536) == b"ping\n"
    assert d.send(b"pong\n") == 5
    assert b.recv(10) == b"pong\n"
    with pytest.raises(BlockingIOError) as info:
        d.recv(10)
    assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    assert log == []


@pytest.mark.parametrize("size", [1, 3, 65536, 65537, 200000])
def test_read_sizes(impl, pair, size):
    a, b = pair
    d, _ = _chan(impl, a)
    data = bytes(range(256)) * 1024  # 256 KiB, more than any size here
    b.setblocking(False)
    sent = b.send(data)
    got = d.recv(size)
    assert got == data[:len(got)]
    assert 0 < len(got) <= min(size, sent)


def test_read_size_zero_is_a_close(impl, pair):
    a, b = pair
    d, log = _chan(impl, a)
    b.sendall(b"x")
    assert d.recv(0) == b""
    assert log == ["handle_close"]


@pytest.mark.parametrize("how", ["close", "detach"])
def test_socket_gone_behind_the_channel(impl, pair, how):
    # the descriptor is -1 now: EBADF, which asyncore counts as a disconnect
    a, b = pair
    d, log = _chan(impl, a)
    b.sendall(b"x")
    if how == "close":
        a.close()
    else:
        socket.socket(fileno=a.detach()).close()
    assert d.recv(10) == b""
    assert d.send(b"y") == 0
    assert log == ["handle_close", "handle_close"]


def test_socket_with_a_timeout_waits(impl, pair):
    # not a non-blocking socket: the method's timeout applies, as in CPython
    a, b = pair
    d, _ = _chan(impl, a)
    a.settimeout(0.05)
    with pytest.raises(socket.timeout):  # TimeoutError from 3.10 on
        d.recv(10)
    b.sendall(b"late")
    assert d.recv(10) == b"late"


def test_blocking_socket_reads(impl, pair):
    a, b = pair
    d, _ = _chan(impl, a)
    a.setblocking(True)
    b.sendall(b"abc")
    assert d.recv(10) == b"abc"


def test_subclass_keeps_its_methods(impl, pair):
    a, b = pair
    calls = []

    class Sock(socket.socket):
        def recv(self, *args):
            calls.append("recv")
            return super().recv(*args)

        def send(self, *args):
            calls.append("send")
            return super().send(*args)

    s = Sock(fileno=a.detach())
    try:
        d, _ = _chan(impl, s)
        b.sendall(b"hi")
        assert d.recv(10) == b"hi"
        assert d.send(b"yo") == 2
        assert calls == ["recv", "send"]
    finally:
        s.close()


@pytest.mark.parametrize("data", [bytearray(b"abc"), memoryview(b"abc"), b"abc"])
def test_send_buffer_types(impl, pair, data):
    a, b = pair
    d, _ = _chan(impl, a)
    assert d.send(data) == 3
    assert b.recv(10) == b"abc"


def test_send_str_fails_as_the_method(impl, pair):
    d, _ = _chan(impl, pair[0])
    with pytest.raises(TypeError):
        d.send("abc")


def test_full_send_buffer_sends_nothing(impl, pair):
    a, b = pair
    d, log = _chan(impl, a)
    chunk = b"z" * 65536
    for _ in range(10000):  # bound: the buffer fills long before this
        if d.send(chunk) == 0:
            break
    else:
        pytest.fail("the send buffer never filled")
    assert log == []


def test_send_to_a_gone_peer_is_a_close(impl, pair):
    a, b = pair
    d, log = _chan(impl, a)
    b.close()
    assert d.send(b"x") == 0  # EPIPE (no SIGPIPE: MSG_NOSIGNAL, SO_NOSIGPIPE)
    assert log == ["handle_close"]


@pytest.mark.parametrize("name", ["recv", "send"])
def test_method_patched_on_socket_socket_is_called(impl, pair, name, monkeypatch):
    # mock.patch.object(socket.socket, "send", ...) in a user's tests: the
    # patched method is what the channel calls, as in CPython
    a, b = pair
    calls = []
    original = getattr(socket.socket, name)

    def wrapper(self, *args):
        calls.append(name)
        return original(self, *args)

    d, _ = _chan(impl, a)
    # warm: the compiled build records that the class's methods are
    # _socket's own, which the patch below must invalidate
    b.sendall(b"w")
    assert d.recv(10) == b"w"
    assert d.send(b"w") == 1 and b.recv(10) == b"w"
    monkeypatch.setattr(socket.socket, name, wrapper)
    b.sendall(b"hi")
    assert d.recv(10) == b"hi"
    assert d.send(b"yo") == 2
    assert calls == [name]
