"""Issue 18's per-type records and parked output lock stay exact.

The compiled build records class-level facts (async_chat's ``terminator``
slot, ``asyncore.dispatcher.send``) keyed on the class's version tag; a
class patched after the fact was recorded must be seen at once, as CPython
sees it.  The output lock stays taken between holds ("parked"); another
thread must still wait while one holds it.  Bound to every implementation
(the reference where it applies).
"""
import socket
import threading

import pytest


def _pair(impl, cls=None, terminator=b"\n"):
    a, b = socket.socketpair()
    b.settimeout(5.0)  # generous: guards against a hang, not a speed claim
    chan = (cls or impl.asynchat.async_chat)(a, map={})
    chan.set_terminator(terminator)
    return chan, b


def _read_once(chan):
    # one read event, as the loop delivers it
    chan.handle_read_event()


def test_terminator_property_patched_on_the_class_after_a_read(impl):
    """A data descriptor put on the channel's class after frames were read
    with the library's slot replaces the terminator at once (CPython: a
    property on the class wins over the instance's attribute)."""
    frames = []

    class Handler(impl.asynchat.async_chat):
        def collect_incoming_data(self, data):
            frames.append(data)

        def found_terminator(self):
            frames.append(None)

    chan, peer = _pair(impl, Handler)
    try:
        peer.sendall(b"one\n")
        _read_once(chan)
        assert frames == [b"one", None]
        Handler.terminator = property(lambda self: b";")
        try:
            peer.sendall(b"a;b\n")
            _read_once(chan)
        finally:
            del Handler.terminator
        # split on ";" only; "b\n" waits (the property said ";")
        assert frames == [b"one", None, b"a", None, b"b\n"]
        del frames[:]
        peer.sendall(b"c\n")
        _read_once(chan)
        # the slot again ("b\n" went to collect_incoming_data already)
        assert frames == [b"c", None]
    finally:
        chan.close()
        peer.close()


def test_dispatcher_send_patched_after_a_push(impl):
    """``asyncore.dispatcher.send = wrapper`` after the channel has pushed:
    the next push goes through the wrapper (async_chat inherits it in
    CPython), and after the patch is undone, no longer."""
    dispatcher = impl.asyncore.dispatcher
    chan, peer = _pair(impl)
    saved = dispatcher.__dict__["send"]
    seen = []

    def wrapper(self, data):
        seen.append(bytes(data))
        return saved(self, data)

    try:
        chan.push(b"first\n")
        assert peer.recv(100) == b"first\n"
        dispatcher.send = wrapper
        try:
            chan.push(b"second\n")
            assert peer.recv(100) == b"second\n"
        finally:
            dispatcher.send = saved
        chan.push(b"third\n")
        assert peer.recv(100) == b"third\n"
        assert seen == [b"second\n"]
    finally:
        dispatcher.send = saved
        chan.close()
        peer.close()


def test_parked_output_lock_still_excludes_another_thread(our_impl):
    """The lock left parked by this thread's drain is taken over by a
    worker (``with chan._ac_out:``); while the worker holds it, this
    thread's drain waits, and it sends once the worker lets go."""
    chan, peer = _pair(our_impl)
    peer.settimeout(1.0)  # a send that must not come: waited for this long
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with chan._ac_out:
            holding.set()
            release.wait(30)

    try:
        chan.push(b"parked\n")  # this thread's drain: the lock is parked now
        assert peer.recv(100) == b"parked\n"
        worker = threading.Thread(target=hold)
        worker.start()
        assert holding.wait(30)
        drained = threading.Event()

        def drain():
            chan.producer_fifo.append(b"queued\n")
            chan.initiate_send()
            drained.set()

        drainer = threading.Thread(target=drain)
        drainer.start()
        with pytest.raises(socket.timeout):
            peer.recv(100)
        assert not drained.is_set()
        release.set()
        worker.join(30)
        drainer.join(30)
        assert drained.is_set()
        assert peer.recv(100) == b"queued\n"
        # and this thread can take it again afterwards
        chan.push(b"again\n")
        assert peer.recv(100) == b"again\n"
    finally:
        release.set()
        chan.close()
        peer.close()
