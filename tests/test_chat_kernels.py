"""Kernel-level regressions found by the differential tests.

Each test is a minimal reproducer: it runs the same tiny script on every
implementation (the stdlib where it exists) and expects identical logs.
"""
import pytest

import impls
from chat_harness import IMPLS, ScriptedSocket, make_channel, step


def run(impl, chunks, terminator, setup=None, **kw):
    sock = ScriptedSocket(chunks)
    with impls.bound(impl):
        chan = make_channel(impl, sock, terminator, **kw)
        if setup is not None:
            setup(chan)
        for _ in chunks:
            step(chan, "read")
    return chan.log, bytes(sock.wire)


def same_everywhere(*args, **kw):
    results = {impl: run(impl, *args, **kw) for impl in IMPLS}
    ref = results[IMPLS[0]]
    for impl in IMPLS[1:]:
        assert results[impl] == ref, impl
    return ref


def assert_ours(results, expected):
    """Each build of ours that ran (``--no-compiled`` leaves one) gave ``expected``."""
    ours = {name: result for name, result in results.items() if name != "stdlib"}
    assert ours and all(result == expected for result in ours.values()), ours


def test_bytearray_buffer_then_more_input():
    # user code assigned a bytearray to ac_in_buffer; CPython keeps going
    # with bytearray slices (found: the Cython kernel raised AttributeError
    # "attribute 'frame' of InBuffer objects is not writable")
    log, _ = same_everywhere(
        [b"\n"], b"\r\n", setup=lambda c: setattr(c, "ac_in_buffer", bytearray())
    )
    assert ("collect", "bytearray", b"\n") in log


@pytest.mark.parametrize("impl", impls.params(IMPLS))
def test_bytearray_buffer_with_int_terminator(impl):
    log, _ = run(impl, [b"abcdef"], 4,
                 setup=lambda c: setattr(c, "ac_in_buffer", bytearray(b"xy")))
    assert log[:2] == [("collect", "bytearray", b"xyab"), ("found", 0)]


@pytest.mark.parametrize("item", [b"", bytearray()])
def test_empty_push_on_a_dead_connection(item):
    # CPython's initiate_send drops an empty item and still calls
    # send(b"") once, which reports a dead peer at once (handle_close);
    # found: asynchat_core skips the empty item without a send() and never
    # notices the reset until real data is queued.
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket((), fail_at=0)
        sock.empty_send_fails = True
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n")
            step(chan, lambda c: c.push(item))
        results[impl] = ([e for e in chan.log if e[0] != "state"], chan.connected)
    if "stdlib" in results:
        assert results["stdlib"] == ([("handle_close",)], False)
    assert_ours(results, ([("handle_close",)], False))


class _PushThenEmpty:
    def __init__(self, chan):
        self.chan = chan
        self.calls = 0

    def more(self):
        self.calls += 1
        if self.calls == 1:
            self.chan.push(b"<pushed>")
        return b""


def test_producer_pushing_and_returning_empty():
    # A producer whose first more() pushes data and returns b"": CPython's
    # outer initiate_send then deletes fifo[0], which by then is the second
    # piece of the pushed data (out buffer size 1), so b"p" never goes out.
    # found: asynchat_core sends every byte: b"<pushed>" vs CPython b"<ushed>".
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket(())
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n", out_size=1)
            step(chan, lambda c: c.push_with_producer(_PushThenEmpty(c)))
            for _ in range(20):
                step(chan, "write")
        results[impl] = bytes(sock.wire)
    if "stdlib" in results:
        assert results["stdlib"] == b"<ushed>"
    assert_ours(results, b"<ushed>")


class _PushThenData(_PushThenEmpty):
    def more(self):
        super().more()
        return b"!" if self.calls == 1 else b""


def test_empty_item_ends_one_send_attempt():
    # queue: [producer, b""]; the producer's more() pushes b"<pushed>".
    # CPython's nested initiate_send drops the empty item, calls send(b"")
    # and returns, so the producer's own b"!" goes out first: b"!<pushed>".
    # found: asynchat_core skips the empty item and sends b"<" inside the
    # nested call, so the peer receives b"<!pushed>" (reordered bytes).
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket((), capacity=0)
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n", out_size=1)
            step(chan, lambda c: c.push_with_producer(_PushThenData(c)))
            step(chan, lambda c: c.push(b""))
            sock.capacity = None
            for _ in range(20):
                step(chan, "write")
        results[impl] = bytes(sock.wire)
    # (with capacity 0 the harness drops what send() refuses: CPython 3.11
    # delivers b"pushed>", and so must both kernels)
    if "stdlib" in results:
        assert results["stdlib"] == b"pushed>"
    assert_ours(results, b"pushed>")


@pytest.mark.parametrize(
    "plan,expected",
    [
        ([("push", b"A"), ("close",)], b"A"),
        ([("push", b"A"), ("push", b"B"), ("close",)], b"AB"),
        ([("push", b"A"), ("discard",)], b"A"),
    ],
    ids=["push-close", "push-push-close", "push-discard"],
)
def test_reply_pushed_before_close_in_found_terminator_is_sent(plan, expected):
    # "self.push(b'error'); self.close()" inside found_terminator: CPython
    # sends the reply at push() time, then closes.  found: asynchat_core
    # defers the send to the end of handle_read, by which time the channel
    # is closed (or the queue discarded), so the peer never gets the reply.
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket([b"x\n"])
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n", found_plan={1: plan})
            step(chan, "read")
        results[impl] = bytes(sock.wire)
    assert results == {impl: expected for impl in IMPLS}


def test_push_larger_than_out_buffer_then_close_in_found_terminator():
    # CPython's push() makes one send() of at most ac_out_buffer_size bytes;
    # a close() right after drops the rest.  found: asynchat_core's flush
    # before close() sends every piece, so the peer gets more bytes.
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket([b"x\n"])
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n", out_size=4, found_plan={
                1: [("push", b"abcdefgh"), ("close",)]})
            step(chan, "read")
        results[impl] = bytes(sock.wire)
    assert results == {impl: b"abcd" for impl in IMPLS}


class _PushingProducer:
    def __init__(self, chan):
        self.chan = chan
        self.calls = 0

    def more(self):
        self.calls += 1
        if self.calls == 1:
            self.chan.push(b"<pushed>")
            return b"!"
        return b""


def test_two_reentrant_producers_keep_cpython_byte_order():
    # Two producers whose first more() pushes 8 bytes (out buffer size 7,
    # so two items) and returns b"!".  CPython's nested initiate_send calls
    # send one item each and the peer reads b"\r<pushed!!><pushed>".
    # found: asynchat_core joins b"!" with b">" inside the nested call and
    # the peer reads b"\r<pushed!>!<pushed>".
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket((), capacity=0)
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n", out_size=7)
            step(chan, lambda c: c.push(b"\r"))  # blocked data ahead of them
            step(chan, lambda c: c.push_with_producer(_PushingProducer(c)))
            step(chan, lambda c: c.push_with_producer(_PushingProducer(c)))
            sock.capacity = None
            for _ in range(20):
                step(chan, "write")
        results[impl] = bytes(sock.wire)
    assert results == {impl: b"\r<pushed!!><pushed>" for impl in IMPLS}
