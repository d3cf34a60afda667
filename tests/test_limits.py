"""Input limits: ac_max_frame_size / FrameTooLarge and set_terminator bounds."""
import socket
import sys

import pytest

from asynchat_core import asyncore
from asynchat_core import asynchat as ac_asynchat


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


def test_frames_up_to_the_cap_pass(kernels):
    line = b"a" * 100 + b"\n"
    chan = Recorder([line * 3], b"\n", cap=100)
    chan.handle_read()
    assert chan.frames == [b"a" * 100] * 3


def test_frame_over_the_cap_raises_in_one_read(kernels):
    chan = Recorder([b"a" * 101 + b"\n"], b"\n", cap=100)
    with pytest.raises(ac_asynchat.FrameTooLarge) as info:
        chan.handle_read()
    assert info.value.limit == 100 and info.value.size >= 101
    assert chan.frames == [] and chan.collected == 0


def test_trickled_frame_is_cut_after_cap_plus_one_read(kernels):
    read = 10
    chan = Recorder([b"x" * read] * 1000, b"\r\n", cap=64)
    with pytest.raises(ac_asynchat.FrameTooLarge):
        for _ in range(1000):
            chan.handle_read()
    held = chan.collected + len(chan.ac_in_buffer)
    assert 64 < held <= 64 + read


def test_counter_resets_after_each_frame(kernels):
    # many frames whose sum exceeds the cap are fine
    chan = Recorder([b"y" * 60 + b"\n"] * 50, b"\n", cap=64)
    for _ in range(50):
        chan.handle_read()
    assert len(chan.frames) == 50


def test_int_terminator_over_the_cap(kernels):
    chan = Recorder([b"z" * 10], 5, cap=8)
    with pytest.raises(ac_asynchat.FrameTooLarge):
        chan.set_terminator(9)
    chan.terminator = 9  # set behind set_terminator's back
    with pytest.raises(ac_asynchat.FrameTooLarge):
        chan.handle_read()


def test_none_terminator_streams_without_limit(kernels):
    chan = Recorder([b"s" * 5000] * 3, None, cap=16)
    for _ in range(3):
        chan.handle_read()
    assert chan.collected == 15000


def test_default_is_unlimited_like_cpython(kernels):
    assert ac_asynchat.async_chat.ac_max_frame_size is None
    chan = Recorder([b"q" * 70000, b"q" * 70000 + b"\n"], b"\n", cap=None)
    chan.handle_read()
    chan.handle_read()
    assert chan.frames == [b"q" * 140000]


def test_negative_cap_is_rejected(kernels):
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


def test_frame_too_large_reaches_handle_error_and_closes(kernels):
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
