"""README deviation 10: the library's hot methods are kernel functions.

``dispatcher.recv``/``send``/``readable``/``writable``/``handle_read_event``/
``handle_write_event`` and async_chat's hot methods are functions of the
kernel module bound into the classes.  They must still behave as methods:
overridable, reachable through ``super()``, patchable on the class, and
called in CPython's order.  Compared with the reference (impls.py): the
stdlib up to 3.11, the pyasyncore/pyasynchat backports on 3.12+.
"""
import socket

import pytest

from asynchat_core import asynchat as ac_asynchat
from asynchat_core import asyncore as ac_asyncore

from impls import REF_ASYNCHAT as std_asynchat
from impls import REF_ASYNCORE as std_asyncore

# the reference (impls.py): CPython's modules up to 3.11, the pyasyncore/
# pyasynchat backports (3.11's code) on 3.12+, None if neither is installed


def _modules():
    pairs = [(ac_asyncore, ac_asynchat)]
    if std_asynchat is not None:
        pairs.append((std_asyncore, std_asynchat))
    return pairs


def _traced_echo(asyncore, asynchat):
    """Serve two requests through overrides that call super(); return the
    calls made and the bytes the peer received."""
    log = []

    class Traced(asynchat.async_chat):
        def __init__(self, sock, cmap):
            super().__init__(sock, map=cmap)
            self.set_terminator(b"\n")
            self.got = []

        def recv(self, size):
            data = super().recv(size)
            log.append(("recv", data))
            return data

        def send(self, data):
            sent = super().send(data)
            log.append(("send", bytes(data), sent))
            return sent

        def handle_read_event(self):
            log.append("read_event")
            super().handle_read_event()

        def handle_write_event(self):
            log.append("write_event")
            super().handle_write_event()

        def readable(self):
            return super().readable()

        def writable(self):
            return super().writable()

        def collect_incoming_data(self, data):
            self.got.append(data)

        def found_terminator(self):
            log.append(("frame", b"".join(self.got)))
            self.got = []
            self.push(b"re:" + b"x" * 3 + b"\n")

    cmap = {}
    a, b = socket.socketpair()
    chan = Traced(a, cmap)
    try:
        b.sendall(b"one\ntwo\n")
        asyncore.loop(timeout=0.5, map=cmap, count=3)
        b.settimeout(2.0)
        reply = b""
        while reply.count(b"\n") < 2:
            reply += b.recv(100)
    finally:
        chan.close()
        b.close()
    return log, reply


def test_overrides_and_super_behave_as_in_cpython(our_impl):
    results = [_traced_echo(*pair) for pair in _modules()]
    log, reply = results[0]
    assert reply == b"re:xxx\nre:xxx\n"
    # an overridden send() turns coalescing off: one send per push, in
    # the order CPython makes them
    assert log[:6] == ["read_event", ("recv", b"one\ntwo\n"),
                       ("frame", b"one"), ("send", b"re:xxx\n", 7),
                       ("frame", b"two"), ("send", b"re:xxx\n", 7)]
    for other_log, other_reply in results[1:]:
        assert other_reply == reply
        assert other_log == log


def test_class_patch_reaches_the_implementation(our_impl, monkeypatch):
    # code that patches dispatcher.send on the class (tests, tracing) must
    # see the sends the implementation makes on async_chat's behalf
    seen = []
    real = ac_asyncore.dispatcher.send

    def spy(self, data):
        seen.append(bytes(data))
        return real(self, data)

    monkeypatch.setattr(ac_asyncore.dispatcher, "send", spy)

    class Pusher(ac_asynchat.async_chat):
        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            pass

    a, b = socket.socketpair()
    chan = Pusher(a, map={})
    try:
        chan.push(b"hello")
        assert seen == [b"hello"]
        assert b.recv(10) == b"hello"
    finally:
        chan.close()
        b.close()


def test_error_in_handler_reports_the_users_frame(our_impl):
    # compact_traceback() names the user's function last, as in CPython
    # (README deviation 10: the compiled modules add no Python frames of their own)
    for asyncore, asynchat in _modules():
        info = []

        class Broken(asynchat.async_chat):
            def collect_incoming_data(self, data):
                pass

            def found_terminator(self):
                raise RuntimeError("boom")

            def handle_error(self):
                info.append(asyncore.compact_traceback())
                self.close()

        cmap = {}
        a, b = socket.socketpair()
        chan = Broken(a, map=cmap)
        chan.set_terminator(b"\n")
        b.sendall(b"x\n")
        asyncore.loop(timeout=0.5, map=cmap, count=2)
        b.close()
        assert len(info) == 1
        (_file, function, _line), exc_type, value, _text = info[0]
        assert (function, exc_type, str(value)) == ("found_terminator", RuntimeError, "boom")
        assert not chan.connected


@pytest.mark.parametrize("name", ["send", "recv", "readable", "writable",
                                  "handle_read_event", "handle_write_event"])
def test_dispatcher_methods_come_from_the_implementation(our_impl, name):
    assert getattr(ac_asyncore.dispatcher, name) is getattr(our_impl.loop, "dispatcher_" + name)
