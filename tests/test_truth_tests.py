"""Truth tests on the output path answer as ``bool()`` does (issue 18).

The compiled build tests an exact ``bytes``, ``list``, ``tuple`` or
``collections.deque`` by its length, and an exact ``int`` (up to 3.11) by
whether it is zero, without ``PyObject_IsTrue`` (``_cbits.pxd``,
``ac_truth``).  A subclass may define ``__bool__`` or ``__len__``: the
output path must then ask it, as CPython's ``initiate_send`` does
(``while self.producer_fifo and self.connected``, ``if not first``,
``if not num_sent``).  Each test runs against the reference too.
"""
import collections
import socket

import pytest


def _pair(impl, cls=None):
    a, b = socket.socketpair()
    b.settimeout(5.0)  # generous: guards against a hang, not a speed claim
    chan = (cls or impl.asynchat.async_chat)(a, map={})
    return chan, b


def _received(peer):
    peer.setblocking(False)
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""
    finally:
        peer.setblocking(True)


class FalseFifo(collections.deque):
    """A producer_fifo that says it is empty whatever it holds."""

    def __bool__(self):
        return False


class ZeroLenFifo(collections.deque):
    """A producer_fifo whose length (hence truth) is 0 whatever it holds."""

    def __len__(self):
        return 0


@pytest.mark.parametrize("fifo_class", [FalseFifo, ZeroLenFifo])
def test_fifo_subclass_truth_is_asked(impl, fifo_class):
    """A deque subclass saying it is empty: push() queues, nothing is sent.
    (On 3.9 a deque's truth comes from its own ``__bool__`` slot, so there
    a ``__len__`` override does not make it false, and it is sent.)"""
    says_empty = not fifo_class([b"x"])
    chan, peer = _pair(impl)
    try:
        chan.producer_fifo = fifo_class()
        chan.push(b"hello")
        if says_empty:
            assert collections.deque.__len__(chan.producer_fifo) == 1
            assert _received(peer) == b""
        else:
            assert collections.deque.__len__(chan.producer_fifo) == 0
            assert _received(peer) == b"hello"
        # writable() returns the fifo itself; its truth is the fifo's own
        assert not chan.writable()
    finally:
        chan.close()
        peer.close()


class TrueZeroLenFifo(collections.deque):
    """A producer_fifo that is true but whose length is 0 (truth and
    length disagree: on 3.9 and 3.10 ``ZeroLenFifo`` is one too)."""

    def __bool__(self):
        return True

    def __len__(self):
        return 0


def test_fifo_subclass_length_is_not_asked_after_a_send(impl):
    """The item sent is taken off the queue, as CPython's ``del
    producer_fifo[0]`` does: not left there (and sent again) because the
    fifo's ``__len__`` says 0."""
    chan, peer = _pair(impl)
    try:
        chan.producer_fifo = TrueZeroLenFifo()
        chan.push(b"hello")
        assert _received(peer) == b"hello"
        assert collections.deque.__len__(chan.producer_fifo) == 0
    finally:
        chan.producer_fifo = collections.deque()
        chan.close()
        peer.close()


def test_plain_deque_fifo_sends(impl):
    """The contrast: an exact deque with an item is true, and is sent."""
    chan, peer = _pair(impl)
    try:
        chan.push(b"hello")
        assert _received(peer) == b"hello"
        assert not chan.producer_fifo
        assert not chan.writable()
        chan.producer_fifo.append(b"x")
        assert chan.writable()
    finally:
        chan.close()
        peer.close()


class TrueEmpty(bytes):
    """An empty queued item that says it is true."""

    def __bool__(self):
        return True


def test_bytes_subclass_item_truth_is_asked(impl):
    """An empty item that says it is true is not taken off the queue as
    empty (CPython's ``if not first``): it is sliced and sent, sending
    nothing, and stays at the head."""
    chan, peer = _pair(impl)
    try:
        item = TrueEmpty()
        chan.producer_fifo.append(item)
        chan.initiate_send()
        assert list(chan.producer_fifo) == [b""]
        assert chan.producer_fifo[0] is item
        assert _received(peer) == b""
    finally:
        chan.close()
        peer.close()


def test_empty_bytes_item_is_dropped(impl):
    """The contrast: an exact empty item is taken off the queue."""
    chan, peer = _pair(impl)
    try:
        chan.producer_fifo.append(b"")
        chan.initiate_send()
        assert not chan.producer_fifo
    finally:
        chan.close()
        peer.close()


class TrueZero(int):
    """A send() result that is 0 but says it is true."""

    def __bool__(self):
        return True


def test_int_subclass_sent_truth_is_asked(impl):
    """send() returning a true zero: CPython goes on to requeue the item
    (``first[0:]``, the whole of it) instead of returning at once."""
    log = []

    class Chan(impl.asynchat.async_chat):
        def send(self, data):
            log.append(bytes(data))
            return TrueZero(0)

    chan, peer = _pair(impl, Chan)
    try:
        chan.push(b"abc")
        assert log == [b"abc"]
        assert list(chan.producer_fifo) == [b"abc"]
        assert _received(peer) == b""
    finally:
        chan.close()
        peer.close()


@pytest.mark.parametrize("sent", [-1, 0, 2])
def test_int_sent_truth(impl, sent):
    """send() returning a plain int: 0 leaves the queue alone, anything
    else (a negative count included) requeues what is left after it."""
    class Chan(impl.asynchat.async_chat):
        def send(self, data):
            return sent

    chan, peer = _pair(impl, Chan)
    try:
        chan.push(b"abcd")
        expect = {-1: [b"d"], 0: [b"abcd"], 2: [b"cd"]}[sent]
        assert list(chan.producer_fifo) == expect
    finally:
        chan.close()
        peer.close()


class EmptyLookingItem(bytes):
    """A queued item whose length (hence truth) is 0 although it holds bytes."""

    def __len__(self):
        return 0


def test_item_that_says_it_is_empty_costs_no_other_item(impl):
    """README deviation 11.  CPython's ``initiate_send`` takes such an item
    off the queue as empty (``if not first``), then still sends it and, as
    it was sent whole, deletes the head again: the next item, unsent.
    asynchat_core sends the item once and keeps the next one."""
    chan, peer = _pair(impl)
    try:
        chan.producer_fifo.append(EmptyLookingItem(b"HEAD"))
        chan.producer_fifo.append(b"NEXT")
        chan.initiate_send()
        chan.initiate_send()
        got = _received(peer)
        assert got == (b"HEAD" if impl.name == "stdlib" else b"HEADNEXT")
        assert not chan.producer_fifo
    finally:
        chan.close()
        peer.close()
