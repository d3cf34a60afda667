"""``producer_fifo`` is made on first use (README, deviation 3; issue 18's
memory per quiet connection).

CPython's ``async_chat.__init__`` stores an empty deque in every channel;
asynchat_core keeps the attribute in the channel's output state and makes
the deque only when something reads the attribute or a push has to queue.
Every scenario here runs on the reference (CPython 3.11's asynchat, or the
backport on 3.12+) and on the implementation under test, and the two logs
must be equal; the deviation itself (``vars``) and the saving (a reply sent
at once makes no deque) are pinned on both builds.
"""
import collections
import socket

import pytest

import impls


def _reference():
    ref = impls.get("stdlib")
    if ref is None:
        pytest.skip("no reference implementation: %s" % impls.REFERENCE)
    return ref


def _same(our_impl, scenario):
    """Run ``scenario(asynchat)`` on both; their logs must agree."""
    ours = scenario(our_impl.asynchat)
    theirs = scenario(_reference().asynchat)
    assert ours == theirs
    return ours


class _Pair:
    def __init__(self, sndbuf=None):
        self.a, self.b = socket.socketpair()
        if sndbuf is not None:
            self.a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            self.b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
        self.b.settimeout(5)

    def drain(self):
        self.b.setblocking(False)
        got = b""
        while True:
            try:
                piece = self.b.recv(1 << 20)
            except BlockingIOError:
                break
            if not piece:
                break
            got += piece
        return got

    def close(self):
        self.a.close()
        self.b.close()


def _chan(asynchat, sock, base=None, **attrs):
    cls = type("Chan", (base or asynchat.async_chat,), dict(attrs))
    chan = cls(sock, {})
    chan.set_terminator(b"\n")
    return chan


def _fifo_state(chan):
    # what a read of the attribute gives, as a log entry
    fifo = chan.producer_fifo
    return (type(fifo).__name__, len(fifo), bool(fifo), list(fifo),
            fifo is chan.producer_fifo)


def test_fresh_channel_reads_as_an_empty_deque(our_impl):
    def scenario(asynchat):
        pair = _Pair()
        try:
            chan = _chan(asynchat, pair.a)
            log = [hasattr(chan, "producer_fifo"), _fifo_state(chan), chan.writable()]
            chan.producer_fifo.append(b"queued")
            log.append((_fifo_state(chan), bool(chan.writable())))
            chan.initiate_send()
            log.append((_fifo_state(chan), pair.b.recv(100)))
            chan.producer_fifo.clear()
            log.append(_fifo_state(chan))
            chan.close()
            return log
        finally:
            pair.close()

    log = _same(our_impl, scenario)
    assert log[1] == ("deque", 0, False, [], True)


def test_push_sent_at_once_makes_no_deque(our_impl):
    # the saving itself: a reply the socket takes whole leaves the state's
    # field unmade (both builds); the queue reads as CPython's afterwards
    pair = _Pair()
    try:
        chan = _chan(our_impl.asynchat, pair.a)
        chan.push(b"reply\n")
        assert pair.b.recv(100) == b"reply\n"
        assert type(chan._ac_out.fifo).__name__ == "_EmptyFifo"
        assert not chan.writable()
        assert "producer_fifo" not in vars(chan)
        assert list(chan.producer_fifo) == []
        assert type(chan._ac_out.fifo) is collections.deque
        chan.close()
    finally:
        pair.close()


def test_not_in_vars_deviation(our_impl):
    # README deviation 3: never in vars(channel), made or not; in CPython's
    ref = _reference()
    for asynchat, expected in ((our_impl.asynchat, False), (ref.asynchat, True)):
        chan = asynchat.async_chat()
        assert ("producer_fifo" in vars(chan)) is expected
        chan.producer_fifo.append(b"x")
        assert ("producer_fifo" in vars(chan)) is expected


def test_partial_send_leaves_the_rest_queued(our_impl):
    def scenario(asynchat):
        pair = _Pair(sndbuf=4096)
        try:
            chan = _chan(asynchat, pair.a, ac_out_buffer_size=1 << 20)
            data = bytes(range(256)) * 4096  # far more than the socket takes
            chan.push(data)
            left = list(chan.producer_fifo)
            log = [len(left), bool(chan.writable())]
            got = pair.drain()
            log.append(got + b"".join(left) == data)
            while chan.producer_fifo:
                chan.handle_write()
                got += pair.drain()
            log.append(got == data)
            chan.close()
            return log
        finally:
            pair.close()

    log = _same(our_impl, scenario)
    assert log[0] == 1 and log[-1]


def test_push_to_a_reset_peer_shows_the_queue_to_handle_close(our_impl):
    def scenario(asynchat):
        pair = _Pair()
        seen = []

        def handle_close(self):
            seen.append(list(self.producer_fifo))
            self.close()

        try:
            chan = _chan(asynchat, pair.a, handle_close=handle_close)
            pair.b.close()
            chan.push(b"to nobody\n")
            return seen
        finally:
            pair.close()

    assert _same(our_impl, scenario) == [[b"to nobody\n"]]


def test_socket_with_python_send_sees_the_queue(our_impl):
    class Sock(socket.socket):
        def send(self, data, *flags):
            self.seen.append(list(self.chan.producer_fifo))
            return super().send(data, *flags)

    def scenario(asynchat):
        a, b = socket.socketpair()
        sock = Sock(fileno=a.detach())
        sock.seen = []
        try:
            chan = _chan(asynchat, sock)
            sock.chan = chan
            chan.push(b"one\n")
            chan.push(b"two\n")
            return sock.seen, b.recv(100)
        finally:
            sock.close()
            b.close()

    assert _same(our_impl, scenario)[0] == [[b"one\n"], [b"two\n"]]


def test_replaced_before_first_use(our_impl):
    class Fifo(list):
        pass

    def scenario(asynchat):
        pair = _Pair()
        try:
            chan = _chan(asynchat, pair.a)
            chan.producer_fifo = Fifo()
            chan.push(b"a\n")
            log = [type(chan.producer_fifo).__name__, list(chan.producer_fifo),
                   pair.b.recv(100)]
            mine = collections.deque([b"b\n"])
            chan.producer_fifo = mine
            chan.initiate_send()
            log += [chan.producer_fifo is mine, list(mine), pair.b.recv(100)]
            chan.close()
            return log
        finally:
            pair.close()

    _same(our_impl, scenario)


def test_assigned_before_init_is_replaced(our_impl):
    def scenario(asynchat):
        class Early(asynchat.async_chat):
            def __init__(self):
                self.producer_fifo = ["early"]
                asynchat.async_chat.__init__(self)

        chan = Early()
        return _fifo_state(chan)

    _same(our_impl, scenario)


def test_no_init_has_no_fifo(our_impl):
    def scenario(asynchat):
        class Lazy(asynchat.async_chat):
            def __init__(self):
                pass

        chan = Lazy()
        log = [hasattr(chan, "producer_fifo")]
        chan.producer_fifo = collections.deque()
        log.append(_fifo_state(chan))
        return log

    assert _same(our_impl, scenario)[0] is False


def test_del_before_and_after_first_use(our_impl):
    def scenario(asynchat):
        pair = _Pair()
        try:
            chan = _chan(asynchat, pair.a)
            del chan.producer_fifo
            log = [hasattr(chan, "producer_fifo")]
            for call in (lambda: chan.push(b"x\n"), chan.initiate_send,
                         lambda: chan.producer_fifo, chan.writable):
                try:
                    call()
                    log.append("ok")
                except AttributeError:
                    log.append("AttributeError")
            try:
                del chan.producer_fifo
            except AttributeError:
                log.append("del: AttributeError")
            chan.producer_fifo = collections.deque()
            log.append(_fifo_state(chan))
            del chan.producer_fifo
            log.append(hasattr(chan, "producer_fifo"))
            chan.close()
            return log
        finally:
            pair.close()

    log = _same(our_impl, scenario)
    assert log[0] is False and "del: AttributeError" in log


def test_subclass_overrides_touching_the_fifo(our_impl):
    def push(self, data):
        self.producer_fifo.append(b"<")
        self.producer_fifo.append(data)
        self.initiate_send()

    def initiate_send(self):
        self.log.append(len(self.producer_fifo))
        while self.producer_fifo:
            self.socket.send(self.producer_fifo.popleft())

    def writable(self):
        return len(self.producer_fifo) > 0

    def scenario(asynchat):
        pair = _Pair()
        try:
            chan = _chan(asynchat, pair.a, push=push, initiate_send=initiate_send,
                         writable=writable)
            chan.log = []
            log = [chan.writable()]
            chan.push(b"one\n")
            log += [chan.writable(), chan.log, pair.b.recv(100)]
            chan.close()
            return log
        finally:
            pair.close()

    _same(our_impl, scenario)


def test_slots_and_setattr_subclasses(our_impl):
    def scenario(asynchat):
        class Slotted(asynchat.async_chat):
            __slots__ = ("producer_fifo",)

        class Logged(asynchat.async_chat):
            def __setattr__(self, name, value):
                if name == "producer_fifo":
                    self.__dict__.setdefault("set", []).append(type(value).__name__)
                object.__setattr__(self, name, value)

        log = []
        for cls in (Slotted, Logged):
            pair = _Pair()
            try:
                chan = cls(pair.a, {})
                log.append(getattr(chan, "set", None))
                chan.push(b"x")
                log += [_fifo_state(chan), pair.b.recv(100)]
                chan.close()
            finally:
                pair.close()
        return log

    log = _same(our_impl, scenario)
    assert log[3] == ["deque"]


def test_getattribute_override_sees_reads(our_impl):
    def scenario(asynchat):
        reads = []

        class Watched(asynchat.async_chat):
            def __getattribute__(self, name):
                if name == "producer_fifo":
                    reads.append(name)
                return object.__getattribute__(self, name)

        pair = _Pair()
        try:
            chan = Watched(pair.a, {})
            chan.push(b"x")
            return bool(reads), pair.b.recv(100)
        finally:
            pair.a.close()
            pair.b.close()

    assert _same(our_impl, scenario)[0] is True
