"""Scripted-socket harness: drive one ``async_chat`` implementation by hand.

A ``ScriptedSocket`` plays the peer: ``recv()`` hands out a fixed sequence
of chunks (or raises a given error), ``send()`` accepts at most a byte
``capacity`` and records the accepted bytes.  A ``Recorder`` channel logs
every callback with the exact bytes it saw, and performs scripted
``actions`` inside ``collect_incoming_data`` / ``found_terminator``.

The same script is run against CPython's ``asynchat`` (where it exists) and
against asynchat_core bound to each kernel module; the tests compare logs.
``line_chat`` is the base of the channels tests drive over real sockets.
"""
import errno
import sys

import impls

IMPLS = impls.available()
HAVE_STDLIB = impls.HAVE_REFERENCE
std_asynchat = impls.REF_ASYNCHAT


class Boom(Exception):
    """Raised on purpose by scripted callbacks and producers."""


def line_chat(asynchat, map=None):
    """A base class for a test's own channel on a real socket: an
    ``async_chat`` of the ``asynchat`` module given whose frames end at
    ``b"\n"``, whose frame data is dropped, on ``map`` (a new dict per
    channel when None).  Subclasses define ``found_terminator``."""

    class LineChat(asynchat.async_chat):
        def __init__(self, sock):
            super().__init__(sock, map={} if map is None else map)
            self.set_terminator(b"\n")

        def collect_incoming_data(self, data):
            pass

    return LineChat


class ScriptedSocket:
    """A fake non-blocking socket following a script."""

    _next_fd = 100000

    def __init__(self, chunks=(), capacity=None, fail_at=None, fail_errno=errno.ECONNRESET):
        self.chunks = list(chunks)  # bytes, or an exception instance to raise
        self.capacity = capacity  # bytes send() may still accept; None = no limit
        self.fail_at = fail_at  # total sent bytes at which send() raises
        self.fail_errno = fail_errno
        self.wire = bytearray()
        self.send_calls = 0
        self.closed = False
        self.empty_send_fails = False
        ScriptedSocket._next_fd += 1
        self._fd = ScriptedSocket._next_fd

    def fileno(self):
        return self._fd

    def setblocking(self, flag):
        pass

    def getpeername(self):
        return ("127.0.0.1", 9)

    def getsockopt(self, *args):
        return 0

    def close(self):
        self.closed = True

    def recv(self, size):
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if not self.chunks:
            raise BlockingIOError(errno.EAGAIN, "nothing scripted")
        item = self.chunks[0]
        if isinstance(item, BaseException):
            del self.chunks[0]
            raise item
        if len(item) > size:
            self.chunks[0] = item[size:]
            return item[:size]
        del self.chunks[0]
        return item

    def send(self, data):
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        self.send_calls += 1
        data = bytes(data)
        size = len(data)
        if not size and not self.empty_send_fails:
            # CPython sends b"" for an empty queued item; asynchat_core skips
            # it (reported); only the dedicated test lets that send fail
            return 0
        if self.fail_at is not None:
            if len(self.wire) >= self.fail_at:
                raise OSError(self.fail_errno, "scripted failure")
            size = min(size, self.fail_at - len(self.wire))
        if self.capacity is not None:
            if self.capacity == 0 and data:
                raise BlockingIOError(errno.EAGAIN, "full")
            size = min(size, self.capacity)
            self.capacity -= size
        self.wire += data[:size]
        return size


class Producer:
    """A producer whose ``more()`` follows a script and logs each call."""

    def __init__(self, chan, kind, payload):
        self.chan = chan
        self.kind = kind
        self.payload = payload
        self.calls = 0

    def more(self):
        self.calls += 1
        self.chan.log.append(("more", self.kind, self.calls))
        if self.kind == "empty":
            return b""
        if self.kind == "raise":
            raise Boom("more")
        if self.kind == "pushing":
            if self.calls == 1:
                self.chan.push(self.payload + b"<pushed>")
                # non-empty: CPython loses a byte otherwise (see
                # test_chat_kernels.test_producer_pushing_and_returning_empty)
                return self.payload + b"!"
            return b""
        # "chunks": payload in three pieces, then the end
        if self.calls <= 3:
            return self.payload[self.calls - 1::3]
        return b""


def perform(chan, actions):
    """Run scripted actions from inside a callback."""
    for action in actions:
        kind = action[0]
        if kind == "term":
            chan.set_terminator(action[1])
        elif kind == "discard":
            chan.discard_buffers()
        elif kind == "peek":
            chan.log.append(("peek", bytes(chan.ac_in_buffer), chan.terminator))
        elif kind == "assign":
            chan.ac_in_buffer = action[1]
        elif kind == "close":
            chan.close()
        elif kind == "push":
            chan.push(action[1])
        elif kind == "cwd":
            chan.close_when_done()
        elif kind == "producer":
            chan.push_with_producer(Producer(chan, action[1], action[2]))
        elif kind == "simple":
            chan.push_with_producer(chan.simple_producer_class(action[1], action[2]))
        elif kind == "raise":
            raise Boom(action[1])
        else:  # pragma: no cover - a bug in the strategy
            raise AssertionError(action)


_classes = {}


def recorder_class(impl, override_get_terminator=False):
    """A logging async_chat subclass on the base class of ``impl``."""
    key = (impl, override_get_terminator)
    if key in _classes:
        return _classes[key]
    module = impls.get(impl).asynchat

    class Recorder(module.async_chat):
        simple_producer_class = module.simple_producer

        def collect_incoming_data(self, data):
            self.n_collect += 1
            self.log.append(("collect", type(data).__name__, bytes(data)))
            if self.observe:
                self.log.append(("in-collect", bytes(self.ac_in_buffer), self.terminator))
            perform(self, self.collect_plan.get(self.n_collect, ()))

        def found_terminator(self):
            self.n_found += 1
            self.log.append(("found", self.terminator))
            if self.observe:
                self.log.append(("in-found", bytes(self.ac_in_buffer)))
            perform(self, self.found_plan.get(self.n_found, ()))

        def handle_close(self):
            self.log.append(("handle_close",))
            self.close()

        def handle_error(self):
            self.log.append(("handle_error", sys.exc_info()[0].__name__))
            self.handle_close()

    if override_get_terminator:
        # the kernels must then call get_terminator() on every frame
        def get_terminator(self):
            self.log.append(("get_terminator",))
            return self.terminator

        Recorder.get_terminator = get_terminator
    Recorder.__name__ = "Recorder_" + impl
    _classes[key] = Recorder
    return Recorder


def make_channel(impl, sock, terminator, in_size=65536, out_size=65536,
                 found_plan=None, collect_plan=None, observe=False,
                 override_get_terminator=False):
    """Build a connected recorder channel on ``sock`` with a private map."""
    cls = recorder_class(impl, override_get_terminator)
    chan = cls(sock=None, map={})
    chan.log = []
    chan.n_collect = chan.n_found = 0
    chan.found_plan = found_plan or {}
    chan.collect_plan = collect_plan or {}
    chan.observe = observe
    chan.ac_in_buffer_size = in_size
    chan.ac_out_buffer_size = out_size
    chan.set_socket(sock)
    chan.connected = True
    chan.set_terminator(terminator)
    return chan


def step(chan, what, log_state=True):
    """Deliver one event, logging an exception escaping the handler."""
    try:
        if what == "read":
            chan.handle_read()
        elif what == "write":
            chan.handle_write()
        else:
            what(chan)
    except Boom as exc:
        chan.log.append(("raised", "Boom", str(exc)))
    except Exception as exc:  # TypeError etc.: same type in every implementation
        chan.log.append(("raised", type(exc).__name__))
    if log_state:
        chan.log.append(("state", bytes(chan.ac_in_buffer), chan.terminator, chan.connected))


def drain(chan, sock, limit=100000):
    """Let everything queued go out (unlimited capacity)."""
    sock.capacity = None
    for _ in range(limit):
        if not (chan.connected and chan.producer_fifo):
            return
        before = len(chan.log)
        # no state lines: how many write events it takes is not compared
        step(chan, "write", log_state=False)
        if any(entry[0] == "raised" for entry in chan.log[before:]):
            return  # e.g. a producer that always raises: it stays queued
    raise AssertionError("output never drained")
