"""Output and loop rules that a mutation check found pinned by one test or
none (issue 23), each given a direct test here.

Each test names the rule and the code that keeps it; ``tests/mutants.toml``
plants the bug (removes the rule) and ``tests/mutants.py`` checks that the
test below fails then.  Tests bound to ``impl`` run on the reference too: the
behaviour pinned is CPython's.
"""
import socket
import threading

import pytest

from asynchat_core import asyncore as ac_asyncore

from chat_harness import line_chat
from impls import BACKENDS


def _pair():
    a, b = socket.socketpair()
    b.setblocking(False)
    return a, b


def _recv_all(sock):
    """Everything readable on non-blocking ``sock`` now."""
    got = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return bytes(got)
        if not data:
            return bytes(got)
        got += data


# --- held replies are copied (_chat_py._hold: bytes(data)) -------------------

def test_held_reply_in_a_reused_bytearray_is_copied(impl):
    """A handler that reuses one bytearray for its pipelined replies: the
    first reply is held while the second frame is handled (rule 2 of
    OutputState), so the held bytes must be a copy, or the wire shows the
    second reply twice."""
    a, b = _pair()

    class Reuser(line_chat(impl.asynchat)):
        def __init__(self, sock):
            super().__init__(sock)
            self.word = b""
            self.reply = bytearray()

        def collect_incoming_data(self, data):
            self.word += data

        def found_terminator(self):
            self.reply[:] = b"reply " + self.word + b"\n"
            self.word = b""
            self.push(self.reply)

    chan = Reuser(a)
    try:
        b.sendall(b"one\ntwo\n")
        chan.handle_read()
        assert _recv_all(b) == b"reply one\nreply two\n"
    finally:
        chan.close()
        b.close()


# --- no reply is held for the last frame of a read (_chat_py._found) ----------

@pytest.mark.parametrize("stream", [b"one\n", b"one\ntwo\n", b"one\ntwo\nthree\n"])
def test_reply_to_the_last_frame_is_on_the_wire_when_push_returns(impl, stream):
    """The peer is waiting for the reply to the last frame it sent, so that
    reply (and every reply held before it) is sent by push() itself, as in
    CPython: a handler that blocks on the peer right after pushing it must
    not wait for a send that comes only when handle_read returns."""
    a, b = _pair()
    frames = stream.count(b"\n")
    seen = []

    class Probe(line_chat(impl.asynchat)):
        n = 0

        def found_terminator(self):
            self.n += 1
            self.push(b"reply %d\n" % self.n)
            if self.n == frames:
                seen.append(_recv_all(b))

    chan = Probe(a)
    try:
        b.sendall(stream)
        chan.handle_read()
        expected = b"".join(b"reply %d\n" % n for n in range(1, frames + 1))
        # (CPython sent each at its own push; asynchat_core held the earlier
        # ones and sends them with the last)
        assert seen == [expected]
    finally:
        chan.close()
        b.close()


# --- held replies go out when handle_read returns (_chat_py.chat_handle_read) -

@pytest.mark.parametrize("last", ["silent", "raises"])
def test_held_reply_sent_when_the_read_ends_without_another_push(impl, last):
    """The first frame's reply is held because a second frame follows; the
    second frame pushes nothing (or its handler raises).  The held reply
    must still reach the socket by the time handle_read returns: the peer
    waits for it, and no later push may come to carry it."""
    a, b = _pair()

    class Quiet(line_chat(impl.asynchat)):
        n = 0

        def found_terminator(self):
            self.n += 1
            if self.n == 1:
                self.push(b"reply 1\n")
            elif last == "raises":
                raise ValueError("second frame")

    chan = Quiet(a)
    try:
        b.sendall(b"one\ntwo\n")
        if last == "raises":
            with pytest.raises(ValueError):
                chan.handle_read()
        else:
            chan.handle_read()
        assert _recv_all(b) == b"reply 1\n"
    finally:
        chan.close()
        b.close()


# --- no batching when send or initiate_send is overridden (_chat_py._found) ---

def test_overridden_send_sees_one_call_per_push_while_pipelined(impl):
    """A channel that overrides ``send`` (to log, count or filter) sees
    CPython's calls even for pipelined frames: one per pushed reply, with
    that reply's bytes, at the time of the push."""
    a, b = _pair()
    calls = []

    class Logger(line_chat(impl.asynchat)):
        def found_terminator(self):
            self.push(b"reply %d\n" % len(calls))
            calls.append(("pushed",))

        def send(self, data):
            calls.append(bytes(data))
            return super().send(data)

    chan = Logger(a)
    try:
        b.sendall(b"a\nb\nc\n")
        chan.handle_read()
        assert calls == [b"reply 0\n", ("pushed",), b"reply 2\n", ("pushed",),
                         b"reply 4\n", ("pushed",)]
        assert _recv_all(b) == b"reply 0\nreply 2\nreply 4\n"
    finally:
        chan.close()
        b.close()


def test_overridden_initiate_send_is_called_by_every_push_while_pipelined(impl):
    """The same for ``initiate_send``: CPython's push() calls it every time."""
    a, b = _pair()
    calls = []

    class Counter(line_chat(impl.asynchat)):
        def found_terminator(self):
            self.push(b"r\n")

        def initiate_send(self):
            calls.append(len(self.producer_fifo))
            return super().initiate_send()

    chan = Counter(a)
    try:
        b.sendall(b"a\nb\nc\n")
        chan.handle_read()
        assert calls == [1, 1, 1]
        assert _recv_all(b) == b"r\nr\nr\n"
    finally:
        chan.close()
        b.close()


# --- held replies precede a direct send() (_chat_py.chat_send) --------------

def test_direct_send_does_not_overtake_held_replies(impl):
    """A handler that pushes a reply, then writes with ``send()`` directly,
    while more input follows: the wire has the reply first, as in CPython,
    where the push sent it at once."""
    a, b = _pair()

    class Mixed(line_chat(impl.asynchat)):
        n = 0

        def found_terminator(self):
            self.n += 1
            self.push(b"pushed %d\n" % self.n)
            self.send(b"direct %d\n" % self.n)

    chan = Mixed(a)
    try:
        b.sendall(b"a\nb\nc\n")
        chan.handle_read()
        assert _recv_all(b) == b"".join(b"pushed %d\ndirect %d\n" % (n, n) for n in (1, 2, 3))
    finally:
        chan.close()
        b.close()


# --- the drain holds the output lock (_chat_py._drain, OutputState rule 4) ----

def test_drain_waits_for_the_output_lock(our_impl):
    """While one thread holds the channel's output lock (``with
    chan._ac_out:``, as a TLS wrap or another thread's send does), a drain
    started by another thread sends nothing; it sends once the lock is
    released."""
    a, b = socket.socketpair()
    b.settimeout(1.0)
    chan = our_impl.asynchat.async_chat(a, map={})
    chan.set_terminator(b"\n")
    started = threading.Event()

    def drain():
        started.set()
        chan.initiate_send()

    try:
        with chan._ac_out:
            chan.producer_fifo.append(b"queued\n")
            worker = threading.Thread(target=drain)
            worker.start()
            assert started.wait(30)
            # the drain must block on the lock: nothing may reach the peer
            # (1 s is a generous wait for a send that must not come)
            with pytest.raises(socket.timeout):
                b.recv(100)
            assert worker.is_alive()
        worker.join(30)
        assert not worker.is_alive()
        assert b.recv(100) == b"queued\n"
        assert not chan.producer_fifo
    finally:
        chan.close()
        b.close()


# --- data that arrives with a hang-up is read first (_loop_py._pending_bytes) -

@pytest.mark.parametrize("use_poll", [False, True], ids=["select_mode", "poll_mode"])
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "select"])
def test_every_frame_sent_before_a_hangup_is_delivered(our_impl, backend, use_poll):
    """A peer sends many frames and hangs up at once; the channel reads 16
    bytes at a time.  The hang-up event comes with the first read, while
    most of the data is still unread.  use_poll=True, where a hang-up calls
    handle_close: the loop must keep reading (it asks the kernel how much
    is left) and close only after the last frame (the reference's poll loop
    closes at once and loses the rest: README, deviation 5).
    use_poll=False: the hang-up is readability, the channel reads to EOF."""
    a, b = socket.socketpair()
    frames = []
    closes = []
    cmap = {}

    class Sink(our_impl.asynchat.async_chat):
        ac_in_buffer_size = 16

        def __init__(self, sock):
            super().__init__(sock, map=cmap)
            self.set_terminator(b"\n")
            self.frame = b""

        def collect_incoming_data(self, data):
            self.frame += data

        def found_terminator(self):
            frames.append(self.frame)
            self.frame = b""

        def handle_close(self):
            closes.append(len(frames))
            self.close()

    Sink(a)
    sent = [b"frame %04d" % i for i in range(200)]
    b.sendall(b"".join(f + b"\n" for f in sent))
    b.close()
    try:
        # a generous bound on passes: only guards against a loop that never closes
        for _ in range(10000):
            if not cmap:
                break
            ac_asyncore.loop(timeout=1.0, map=cmap, count=1, backend=backend,
                             use_poll=use_poll)
        assert not cmap
        assert frames == sent
        assert closes == [len(sent)]
    finally:
        ac_asyncore.close_all(cmap, ignore_all=True)
