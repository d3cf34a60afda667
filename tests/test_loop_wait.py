"""The loop's wait for events, as CPython's loop waits.

The compiled build waits with epoll_wait(2) into a C array read in place
(issue 18, lever 9) instead of select.epoll.poll()'s list of tuples.  The
array belongs to the poller, so a loop run from inside a handler (a nested
``asyncore.loop()`` on the same map) must wait into a list of its own and
leave the outer pass's events as they were; a signal handler's exception
comes out of the wait, as from the method.
"""
import signal
import socket
import sys
import time

import pytest


def test_nested_loop_leaves_the_outer_pass_alone(impl):
    m = {}
    log = []
    pairs = [socket.socketpair() for _ in range(3)]
    peers = [p[1] for p in pairs]

    class D(impl.asyncore.dispatcher):
        def __init__(self, sock, name):
            impl.asyncore.dispatcher.__init__(self, sock, map=m)
            self.name = name

        def writable(self):
            return False

        def handle_read(self):
            data = self.recv(100)
            log.append((self.name, data))
            if data == b"a":
                # c becomes readable; the nested pass reads b and c
                peers[2].send(b"c")
                impl.asyncore.loop(timeout=0, count=1, map=m)

        def handle_error(self):
            log.append((self.name, sys.exc_info()[0].__name__))

    chans = [D(p[0], name) for p, name in zip(pairs, "abc")]
    try:
        peers[0].send(b"a")
        peers[1].send(b"b")
        time.sleep(0.05)  # (both in the socket buffers before the pass)
        impl.asyncore.loop(timeout=1.0, count=1, map=m)
        # the outer pass goes on with b, which the nested pass has read
        assert log[0] == ("a", b"a")
        assert sorted(log[1:3]) == [("b", b"b"), ("c", b"c")]
        assert log[3:] == [("b", "BlockingIOError")]
    finally:
        for chan in chans:
            chan.close()
        for peer in peers:
            peer.close()


class Stop(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signal_handler_exception_ends_the_wait(impl):
    m = {}
    a, b = socket.socketpair()

    class Idle(impl.asyncore.dispatcher):
        def writable(self):
            return False

    chan = Idle(a, map=m)

    def handler(signum, frame):
        raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        with pytest.raises(Stop):
            impl.asyncore.loop(timeout=30.0, count=1, map=m)
        # generous: only shows the wait did not run its 30 s out
        assert time.monotonic() - start < 20.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        chan.close()
        b.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signals_during_the_wait_keep_its_timeout(impl):
    # EINTR: the handlers run, the wait goes on for the time that is left
    m = {}
    a, b = socket.socketpair()
    seen = []

    class Idle(impl.asyncore.dispatcher):
        def writable(self):
            return False

        def handle_read(self):
            seen.append(self.recv(10))

    chan = Idle(a, map=m)
    ticks = []
    old = signal.signal(signal.SIGALRM, lambda *args: ticks.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        start = time.monotonic()
        impl.asyncore.loop(timeout=0.3, count=1, map=m)
        waited = time.monotonic() - start
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert ticks  # the wait was interrupted
        assert waited >= 0.29  # and not cut short by it
        assert seen == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        chan.close()
        b.close()


def test_pass_time_is_the_loop_modules_monotonic(our_impl, monkeypatch):
    """The time a pass takes after its wait (what an idle watch records at
    an event) is time.monotonic()'s own value, and a ``_monotonic``
    replaced on the loop module (a fake clock) is the one asked.  Compiled,
    the clock is read in C while ``_monotonic`` is time.monotonic itself
    (issue 18); the Python build calls it."""
    asyncore, asynchat = our_impl.asyncore, our_impl.asynchat

    class Quiet(asynchat.async_chat):
        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            pass  # no push: the watch is touched by the event alone

    cmap = {}
    a, b = socket.socketpair()
    b.settimeout(5.0)  # generous: guards against a hang
    chan = Quiet(a, map=cmap)
    chan.set_terminator(b"\n")
    asyncore.set_idle_timeout(chan, 60)
    try:
        watch = chan._idle_watch
        for _ in range(3):
            before = time.monotonic()
            b.sendall(b"x\n")
            asyncore.loop(timeout=5.0, map=cmap, count=1)
            assert before <= watch.last <= time.monotonic()
        monkeypatch.setattr(our_impl.loop, "_monotonic", lambda: 12345.5)
        b.sendall(b"y\n")
        asyncore.loop(timeout=5.0, map=cmap, count=1)
        assert watch.last == 12345.5
        monkeypatch.undo()
        b.sendall(b"z\n")
        asyncore.loop(timeout=5.0, map=cmap, count=1)
        assert watch.last != 12345.5
    finally:
        asyncore.set_idle_timeout(chan, None)
        chan.close()
        b.close()
