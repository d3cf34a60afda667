"""Input limits: ac_max_frame_size / FrameTooLarge and set_terminator bounds."""
import socket
import sys

import pytest

from asynchat_core import asyncore
from asynchat_core import asynchat as ac_asynchat

from chat_harness import line_chat


class ScriptedSocket:
    """recv() returns the next scripted chunk; b'' once the script ends."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def fileno(self):
        return 1_000_000 + id(self) % 1000

    def setblocking(self, flag):
        pass

    def getpeername(self):
        return ("127.0.0.1", 1)

    def recv(self, size):
        return self.chunks.pop(0) if self.chunks else b""

    def send(self, data):
        return len(data)

    def close(self):
        pass


class Recorder(ac_asynchat.async_chat):
    def __init__(self, chunks, terminator, cap):
        ac_asynchat.async_chat.__init__(self, ScriptedSocket(chunks), map={})
        self.ac_max_frame_size = cap
        self.set_terminator(terminator)
        self.collected = 0
        self.frames = []
        self.parts = []

    def collect_incoming_data(self, data):
        self.collected += len(data)
        self.parts.append(data)

    def found_terminator(self):
        self.frames.append(b"".join(self.parts))
        self.parts = []


def test_frames_up_to_the_cap_pass(our_impl):
    line = b"a" * 100 + b"\n"
    chan = Recorder([line * 3], b"\n", cap=100)
    chan.handle_read()
    assert chan.frames == [b"a" * 100] * 3


def test_frame_over_the_cap_raises_in_one_read(our_impl):
    chan = Recorder([b"a" * 101 + b"\n"], b"\n", cap=100)
    with pytest.raises(ac_asynchat.FrameTooLarge) as info:
        chan.handle_read()
    assert info.value.limit == 100 and info.value.size >= 101
    assert chan.frames == [] and chan.collected == 0


def test_trickled_frame_is_cut_after_cap_plus_one_read(our_impl):
    read = 10
    chan = Recorder([b"x" * read] * 1000, b"\r\n", cap=64)
    with pytest.raises(ac_asynchat.FrameTooLarge):
        for _ in range(1000):
            chan.handle_read()
    held = chan.collected + len(chan.ac_in_buffer)
    assert 64 < held <= 64 + read


def test_counter_resets_after_each_frame(our_impl):
    # many frames whose sum exceeds the cap are fine
    chan = Recorder([b"y" * 60 + b"\n"] * 50, b"\n", cap=64)
    for _ in range(50):
        chan.handle_read()
    assert len(chan.frames) == 50


def test_int_terminator_over_the_cap(our_impl):
    chan = Recorder([b"z" * 10], 5, cap=8)
    with pytest.raises(ac_asynchat.FrameTooLarge):
        chan.set_terminator(9)
    chan.terminator = 9  # set behind set_terminator's back
    with pytest.raises(ac_asynchat.FrameTooLarge):
        chan.handle_read()


def test_none_terminator_streams_without_limit(our_impl):
    chan = Recorder([b"s" * 5000] * 3, None, cap=16)
    for _ in range(3):
        chan.handle_read()
    assert chan.collected == 15000


def test_default_is_unlimited_like_cpython(our_impl):
    assert ac_asynchat.async_chat.ac_max_frame_size is None
    chan = Recorder([b"q" * 70000, b"q" * 70000 + b"\n"], b"\n", cap=None)
    chan.handle_read()
    chan.handle_read()
    assert chan.frames == [b"q" * 140000]


def test_negative_cap_is_rejected(our_impl):
    chan = Recorder([b"abc\n"], b"\n", cap=None)
    chan.ac_max_frame_size = -1
    with pytest.raises(ValueError):
        chan.handle_read()


@pytest.mark.parametrize("bad", [-1, sys.maxsize + 1, 2**100])
def test_set_terminator_bounds(bad):
    chan = ac_asynchat.async_chat()
    with pytest.raises(ValueError):
        chan.set_terminator(bad)
    chan.set_terminator(sys.maxsize)  # the largest allowed count
    assert chan.get_terminator() == sys.maxsize


def test_frame_too_large_reaches_handle_error_and_closes(our_impl):
    """Over a real socket pair the loop routes the error and closes once."""
    local, remote = socket.socketpair()
    channel_map = {}
    events = []

    class Capped(ac_asynchat.async_chat):
        ac_max_frame_size = 1024

        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            events.append("frame")

        def handle_error(self):
            events.append(sys.exc_info()[0])
            self.handle_close()

        def handle_close(self):
            events.append("close")
            self.close()

    chan = Capped(local, map=channel_map)
    chan.set_terminator(b"\n")
    try:
        remote.sendall(b"ok\n" + b"x" * 5000)
        asyncore.loop(timeout=0.1, map=channel_map, count=20)
        assert events == ["frame", ac_asynchat.FrameTooLarge, "close"]
        assert channel_map == {}
    finally:
        remote.close()
        chan.close()


def _send_some(sock, pending):
    # non-blocking: send what the socket takes, return the rest
    if pending:
        try:
            pending = pending[sock.send(pending):]
        except BlockingIOError:
            pass
    return pending


def _drain(sock, into):
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            return
        into.extend(data)


def test_back_pressure_pauses_reading_and_loses_nothing(our_impl):
    """A peer that sends requests but does not read replies stops being read
    once queued output passes the high-water mark; nothing is lost."""
    server_sock, client = socket.socketpair()
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setblocking(False)
    channel_map = {}
    reply = b"r" * 1023 + b"\n"
    high, per_read = 64 * 1024, 256

    class Server(line_chat(ac_asynchat, channel_map)):
        ac_out_high_water = high
        ac_in_buffer_size = per_read
        answered = 0

        def found_terminator(self):
            self.answered += 1
            self.push(reply)

    server = Server(server_sock)
    total = 3000
    pending = memoryview(b"q\n" * total)
    try:
        most_queued, paused_seen, after_pause = 0, False, 0
        for _ in range(400):
            if paused_seen:
                after_pause += 1
                if after_pause > 20:  # it stays paused: enough seen
                    break
            pending = _send_some(client, pending)
            asyncore.loop(timeout=0.01, map=channel_map, count=1)
            most_queued = max(most_queued, server._ac_out_queued)
            paused_seen = paused_seen or not server.readable()
        # the replies to one read may land on top of the mark, no more
        assert paused_seen
        assert most_queued <= high + (per_read // 2) * len(reply)
        assert server.answered < total  # it really stopped reading
        received = bytearray()
        for _ in range(3000):
            _drain(client, received)
            if len(received) == total * len(reply):
                break
            pending = _send_some(client, pending)
            asyncore.loop(timeout=0.01, map=channel_map, count=1)
        assert server.answered == total
        assert bytes(received) == reply * total
    finally:
        server.close()
        client.close()


def test_push_while_the_socket_is_full_tries_once_per_push(our_impl):
    """After send() returned 0, each push makes one send attempt, as in
    CPython (no hidden skipping); the loop's write events send
    everything, in order."""
    server_sock, client = socket.socketpair()
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setblocking(False)
    channel_map = {}

    class Counting(ac_asynchat.async_chat):
        sends = 0
        last = None

        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            pass

        def send(self, data):
            Counting.sends += 1
            Counting.last = ac_asynchat.async_chat.send(self, data)
            return Counting.last

    chan = Counting(server_sock, map=channel_map)
    try:
        expected = bytearray()
        piece = 0
        while Counting.last != 0:
            item = b"%08d" % piece * 128
            expected += item
            chan.push(item)
            piece += 1
        before = Counting.sends
        for n in range(1000):
            item = b"%08d" % (piece + n) * 2
            expected += item
            chan.push(item)
        assert Counting.sends == before + 1000  # one refused attempt each
        received = bytearray()
        for _ in range(2000):
            asyncore.loop(timeout=0.01, map=channel_map, count=1)
            _drain(client, received)
            if len(received) == len(expected):
                break
        assert bytes(received) == bytes(expected)
    finally:
        chan.close()
        client.close()


def test_listener_connection_cap(our_impl):
    channel_map = {}
    accepted = []

    class Handler(ac_asynchat.async_chat):
        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            pass

    class Listener(asyncore.dispatcher):
        max_connections = 3

        def handle_accepted(self, sock, addr):
            accepted.append(Handler(sock, map=channel_map))

    listener = Listener(map=channel_map)
    listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.socket.getsockname()[1]
    clients = []
    try:
        for _ in range(5):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(50):
            asyncore.loop(timeout=0.01, map=channel_map, count=1)
        assert len(accepted) == 3
        # the two refused clients see the connection closed
        refused = 0
        for c in clients:
            c.settimeout(0.05)
            try:
                if c.recv(1) == b"":
                    refused += 1
            except socket.timeout:
                pass
            except ConnectionResetError:
                refused += 1
        assert refused == 2
        # a slot frees up: the next client is accepted (after the 10 ms gate)
        accepted[0].close()
        late = socket.create_connection(("127.0.0.1", port), timeout=5)
        clients.append(late)
        for _ in range(100):
            asyncore.loop(timeout=0.01, map=channel_map, count=1)
            if len(accepted) == 4:
                break
        assert len(accepted) == 4
    finally:
        for c in clients:
            c.close()
        asyncore.close_all(map=channel_map)


class Numberish:
    """Not an int, but usable as one (operator.index)."""

    def __index__(self):
        return 5


@pytest.mark.parametrize("cap", [1000.0, "1000", 1e3])
def test_a_cap_that_is_not_an_integer_raises_typeerror(our_impl, cap):
    # decided for issue 12: both builds reject a float cap (the Python one
    # used to compare with it, the compiled one raised TypeError)
    chan = Recorder([b"abc\n"], b"\n", cap=None)
    chan.ac_max_frame_size = cap
    with pytest.raises(TypeError, match="ac_max_frame_size must be None or an integer"):
        chan.handle_read()
    with pytest.raises(TypeError, match="ac_max_frame_size must be None or an integer"):
        chan.set_terminator(10)
    assert chan.frames == []


def test_a_cap_with_index_counts_as_its_integer(our_impl):
    chan = Recorder([b"abcdef\n"], b"\n", cap=Numberish())
    with pytest.raises(ac_asynchat.FrameTooLarge) as info:
        chan.handle_read()
    assert info.value.limit == 5


def test_a_cap_past_maxsize_means_no_practical_cap(our_impl):
    chan = Recorder([b"abc\n"], b"\n", cap=sys.maxsize * 4)
    chan.handle_read()
    assert chan.frames == [b"abc"]
