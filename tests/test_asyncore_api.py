"""Every public name of asyncore, tested once and bound to each
implementation (impls.py): asynchat_core's two and the reference."""
import errno
import gc
import os
import select
import socket
import sys
import time
import warnings

import pytest

from asynchat_core import asyncore as ours
from impls import REF_ASYNCORE as stdlib_asyncore

# CPython 3.11's public asyncore names (for 3.12+, where it cannot be imported)
ASYNCORE_311_PUBLIC = [
    "EAGAIN", "EALREADY", "EBADF", "ECONNABORTED", "ECONNRESET", "EINPROGRESS",
    "EINVAL", "EISCONN", "ENOTCONN", "EPIPE", "ESHUTDOWN", "EWOULDBLOCK", "ExitNow",
    "close_all", "compact_traceback", "dispatcher", "dispatcher_with_send",
    "errorcode", "file_dispatcher", "file_wrapper", "loop", "os", "poll", "poll2",
    "poll3", "read", "readwrite", "select", "socket", "socket_map", "sys", "time",
    "warnings", "write",
]
DISPATCHER_311_PUBLIC = [
    "accept", "accepting", "add_channel", "addr", "bind", "close", "closing",
    "connect", "connected", "connecting", "create_socket", "debug", "del_channel",
    "handle_accept", "handle_accepted", "handle_close", "handle_connect",
    "handle_connect_event", "handle_error", "handle_expt", "handle_expt_event",
    "handle_read", "handle_read_event", "handle_write", "handle_write_event",
    "ignore_log_types", "listen", "log", "log_info", "readable", "recv", "send",
    "set_reuse_addr", "set_socket", "writable",
]


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


@pytest.fixture
def core(impl):
    """The asyncore module of each implementation, bound for the test."""
    return impl.asyncore


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


# --- public surface -------------------------------------------------------

def test_module_surface_matches_311():
    expected = public(stdlib_asyncore) if stdlib_asyncore else ASYNCORE_311_PUBLIC
    if stdlib_asyncore:
        assert expected == ASYNCORE_311_PUBLIC  # the literal list is right
    assert set(expected) <= set(public(ours))


def test_dispatcher_surface_matches_311():
    expected = public(stdlib_asyncore.dispatcher) if stdlib_asyncore else DISPATCHER_311_PUBLIC
    assert expected == DISPATCHER_311_PUBLIC
    assert set(expected) <= set(public(ours.dispatcher))


#: what 3.11's dispatcher_with_send adds to dispatcher: initiate_send on the
#: class, out_buffer on each instance; it overrides these four methods
WITH_SEND_311_OWN = ["handle_write", "initiate_send", "send", "writable"]


def test_dispatcher_with_send_surface_matches_311():
    cls = ours.dispatcher_with_send
    class_names = set(DISPATCHER_311_PUBLIC) | {"initiate_send"}
    if stdlib_asyncore:
        assert set(public(stdlib_asyncore.dispatcher_with_send)) == class_names
        assert sorted(n for n in vars(stdlib_asyncore.dispatcher_with_send)
                      if not n.startswith("_")) == WITH_SEND_311_OWN
    assert class_names <= set(public(cls))
    assert sorted(n for n in vars(cls) if not n.startswith("_")) == WITH_SEND_311_OWN
    for name in WITH_SEND_311_OWN:
        assert getattr(cls, name) is not getattr(ours.dispatcher, name, None), name
    a, b = socket.socketpair()
    try:
        chan = cls(a, map={})
        assert chan.out_buffer == b""
        assert class_names | {"out_buffer"} <= set(public(chan))
        chan.close()
    finally:
        a.close()
        b.close()


def test_all_lists_the_311_names():
    names = {"ExitNow", "close_all", "compact_traceback", "dispatcher",
             "dispatcher_with_send", "loop", "poll", "poll2", "poll3", "read",
             "readwrite", "socket_map", "write", "file_dispatcher", "file_wrapper"}
    assert names <= set(ours.__all__)
    assert all(hasattr(ours, n) for n in ours.__all__)


def test_errno_names_and_module_attributes(core):
    for name in ["EAGAIN", "EALREADY", "EBADF", "ECONNABORTED", "ECONNRESET",
                 "EINPROGRESS", "EINVAL", "EISCONN", "ENOTCONN", "EPIPE",
                 "ESHUTDOWN", "EWOULDBLOCK"]:
        assert getattr(core, name) == getattr(errno, name)
    assert core.errorcode is errno.errorcode
    assert core.socket is socket and core.select is select and core.time is time
    assert core.os is os and core.sys is sys and core.warnings is warnings
    assert core.poll3 is core.poll2
    assert isinstance(core.socket_map, dict)
    assert issubclass(core.ExitNow, Exception)



# --- dispatcher -----------------------------------------------------------

def test_dispatcher_without_socket(core):
    m = {}
    d = core.dispatcher(map=m)
    assert d.socket is None and not d.connected and not d.accepting
    assert m == {}
    assert d.readable() and d.writable()
    assert (d.debug, d.connecting, d.closing, d.addr) == (False, False, False, None)
    assert d.ignore_log_types == frozenset({"warning"})


def test_dispatcher_wraps_connected_socket(core, pair):
    m = {}
    a, b = pair
    a.setblocking(True)
    d = core.dispatcher(a, map=m)
    assert d.connected and d.socket is a
    assert a.getblocking() is False
    assert m == {a.fileno(): d}
    assert d.addr == a.getpeername()
    assert "connected" in repr(d) and repr(d).startswith("<asyncore.dispatcher")
    d.close()
    assert m == {} and not d.connected
    assert a.fileno() == -1


def test_unconnected_socket_is_accepted(core):
    m = {}
    s = socket.socket()
    d = core.dispatcher(s, map=m)
    assert not d.connected and d.socket is s
    d.close()


def test_add_and_del_channel(core, pair):
    m, other = {}, {}
    d = core.dispatcher(pair[0], map=m)
    fd = pair[0].fileno()
    d.add_channel(other)
    assert other[fd] is d
    d.del_channel(other)
    # like CPython, del_channel forgets the descriptor even for another map
    assert other == {} and m == {fd: d} and d._fileno is None
    d.del_channel()  # harmless now
    assert m == {fd: d}
    core.close_all(m)


def test_create_socket_bind_listen_accept_connect(core):
    m = {}
    events = []

    class Server(core.dispatcher):
        def handle_accepted(self, sock, addr):
            events.append(("accepted", addr[0]))
            self.conn = sock

    class Client(core.dispatcher):
        def handle_connect(self):
            events.append("connect")

        def writable(self):
            return not self.connected

        def handle_read(self):
            events.append(("read", self.recv(100)))

    server = Server(map=m)
    server.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    assert server.family_and_type == (socket.AF_INET, socket.SOCK_STREAM)
    assert server.socket.getblocking() is False
    server.set_reuse_addr()
    assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    assert server.accepting and "listening" in repr(server)
    port = server.socket.getsockname()[1]
    assert server.accept() is None  # nothing pending: None, not an error
    client = Client(map=m)
    client.create_socket()
    client.connect(("127.0.0.1", port))
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        core.loop(timeout=0.05, map=m, count=1)
    assert sorted(map(str, events)) == sorted(map(str, ["connect", ("accepted", "127.0.0.1")]))
    assert client.connected and not client.connecting
    server.conn.sendall(b"hello")
    while len(events) < 3 and time.monotonic() < deadline:
        core.loop(timeout=0.05, map=m, count=1)
    assert events[-1] == ("read", b"hello")
    server.conn.close()
    core.close_all(m)
    assert m == {}


def test_connect_refused_raises(core):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    m = {}
    d = core.dispatcher(map=m)
    d.create_socket()
    d.socket.setblocking(True)  # a blocking connect reports the error at once
    with pytest.raises(OSError) as info:
        d.connect(("127.0.0.1", port))
    assert info.value.errno == errno.ECONNREFUSED
    d.close()


def _closing_dispatcher(core, sock):
    """A dispatcher on ``sock`` (its own map) whose handle_close closes it,
    and the list each call of handle_close appends True to."""
    closed = []

    class D(core.dispatcher):
        def handle_close(self):
            closed.append(True)
            self.close()

    return D(sock, map={}), closed


def test_send_and_recv(core, pair):
    a, b = pair
    d, closed = _closing_dispatcher(core, a)
    assert d.send(b"ping") == 4
    assert b.recv(10) == b"ping"
    b.sendall(b"pong")
    assert d.recv(10) == b"pong"
    # fill the socket buffer: EWOULDBLOCK becomes 0
    total = 0
    while True:
        sent = d.send(b"x" * 65536)
        if sent == 0:
            break
        total += sent
    assert total > 0 and not closed
    b.close()
    assert d.recv(10) == b""  # peer gone: handle_close, empty result
    assert closed


def test_recv_at_a_clean_eof_calls_handle_close(core, pair):
    # the peer closes with nothing unread (a FIN, not a reset): recv() gets
    # b"" from the socket, calls handle_close and returns b""
    a, b = pair
    d, closed = _closing_dispatcher(core, a)
    b.sendall(b"last")
    b.close()
    assert d.recv(10) == b"last" and not closed
    assert d.recv(10) == b""
    assert closed == [True]


def test_send_to_reset_peer_closes(core, pair):
    a, b = pair
    d, closed = _closing_dispatcher(core, a)
    b.close()
    assert d.send(b"data") == 0
    assert closed == [True]


def test_event_dispatch(core, pair):
    calls = []

    class D(core.dispatcher):
        def handle_read(self):
            calls.append("read")

        def handle_write(self):
            calls.append("write")

        def handle_accept(self):
            calls.append("accept")

        def handle_connect(self):
            calls.append("connect")

        def handle_expt(self):
            calls.append("expt")

    d = D(pair[0], map={})
    d.handle_read_event()
    d.handle_write_event()
    d.handle_expt_event()  # SO_ERROR is 0: OOB data, handle_expt
    assert calls == ["read", "write", "expt"]
    del calls[:]
    d.connected, d.connecting = False, True
    d.handle_write_event()
    assert calls == ["connect", "write"] and d.connected and not d.connecting
    del calls[:]
    d.connected, d.connecting = False, True
    d.handle_read_event()
    assert calls == ["connect", "read"]
    del calls[:]
    d.accepting = True
    d.handle_read_event()
    d.handle_write_event()  # ignored for listening sockets
    assert calls == ["accept"]
    d.close()


def test_default_handlers_log_warnings(core, pair, capsys):
    d = core.dispatcher(pair[0], map={})
    d.ignore_log_types = frozenset()
    d.handle_read()
    d.handle_write()
    d.handle_connect()
    d.handle_expt()
    s, _ = socket.socketpair()
    d.handle_accepted(s, None)
    assert s.fileno() == -1
    _.close()
    out = capsys.readouterr().out
    for what in ["read", "write", "connect", "incoming priority", "accepted"]:
        assert "warning: unhandled %s event" % what in out
    d.handle_close()
    assert "warning: unhandled close event" in capsys.readouterr().out
    assert not d.connected


def test_log_and_log_info(core, pair, capsys):
    d = core.dispatcher(pair[0], map={})
    d.log("message")
    d.log_info("hello")
    d.log_info("hidden", "warning")
    d.log_info("bad", "error")
    cap = capsys.readouterr()
    assert cap.err == "log: message\n"
    assert cap.out == "info: hello\nerror: bad\n"
    d.close()


def test_handle_error_logs_and_closes(core, pair, capsys):
    m = {}
    d = core.dispatcher(pair[0], map=m)
    try:
        raise ValueError("oops")
    except ValueError:
        d.handle_error()
    out = capsys.readouterr().out
    assert out.startswith("error: uncaptured python exception, closing channel")
    assert "ValueError" in out and "oops" in out
    assert m == {} and not d.connected


def test_handle_error_survives_broken_repr(core, pair, capsys):
    class D(core.dispatcher):
        def __repr__(self):
            raise RuntimeError("no repr")

    d = D(pair[0], map={})
    try:
        raise KeyError("k")
    except KeyError:
        d.handle_error()
    assert "__repr__(self) failed" in capsys.readouterr().out


def test_compact_traceback(core):
    def inner():
        raise ValueError("x")

    try:
        inner()
    except ValueError:
        (filename, function, line), t, v, info = core.compact_traceback()
    assert function == "inner" and t is ValueError and str(v) == "x"
    assert filename == __file__ and line.isdigit()
    assert info.count("[") == 2 and "|inner|" in info
    with pytest.raises(AssertionError):
        core.compact_traceback()


# --- loop and friends -----------------------------------------------------

class Recorder:
    """A stand-in channel for read/write/readwrite that records calls."""

    def __init__(self, exc=None):
        self.calls = []
        self.exc = exc

    def _event(self, name):
        self.calls.append(name)
        if self.exc is not None:
            raise self.exc

    def handle_read_event(self):
        self._event("read")

    def handle_write_event(self):
        self._event("write")

    def handle_expt_event(self):
        self._event("expt")

    def handle_error(self):
        self.calls.append("error")

    def handle_close(self):
        self.calls.append("close")


def test_read_write_route_errors(core):
    for func, name in [(core.read, "read"), (core.write, "write")]:
        ok = Recorder()
        func(ok)
        assert ok.calls == [name]
        bad = Recorder(ValueError())
        func(bad)
        assert bad.calls == [name, "error"]
        for exc in (core.ExitNow(), KeyboardInterrupt(), SystemExit()):
            with pytest.raises(type(exc)):
                func(Recorder(exc))


def test_readwrite_flags(core):
    r = Recorder()
    core.readwrite(r, select.POLLIN | select.POLLOUT | select.POLLPRI)
    assert r.calls == ["read", "write", "expt"]
    for flag in (select.POLLHUP, select.POLLERR, select.POLLNVAL):
        r = Recorder()
        core.readwrite(r, flag)
        assert r.calls == ["close"]
    r = Recorder(OSError(errno.ECONNRESET, "reset"))
    core.readwrite(r, select.POLLIN)
    assert r.calls == ["read", "close"]
    r = Recorder(OSError(errno.EIO, "io"))
    core.readwrite(r, select.POLLIN)
    assert r.calls == ["read", "error"]
    r = Recorder(ValueError())
    core.readwrite(r, select.POLLOUT)
    assert r.calls == ["write", "error"]
    with pytest.raises(core.ExitNow):
        core.readwrite(Recorder(core.ExitNow()), select.POLLIN)


@pytest.mark.parametrize("poller", ["poll", "poll2", "poll3"])
def test_poll_functions_deliver_events(core, pair, poller):
    m = {}
    got = []

    class D(core.dispatcher):
        def handle_read(self):
            got.append(self.recv(10))

        def writable(self):
            return False

    a, b = pair
    d = D(a, map=m)
    b.sendall(b"abc")
    getattr(core, poller)(1.0, m)
    assert got == [b"abc"]
    getattr(core, poller)(0.0, {})  # an empty map returns at once
    d.close()


def test_poll_sleeps_when_nobody_wants_events(core, pair):
    class Idle(core.dispatcher):
        def readable(self):
            return False

        def writable(self):
            return False

    m = {}
    Idle(pair[0], map=m)
    start = time.monotonic()
    core.poll(0.05, m)
    assert time.monotonic() - start >= 0.04
    core.close_all(m)


@pytest.mark.parametrize("use_poll", [False, True])
def test_loop_count_and_empty_map(core, pair, use_poll):
    m = {}
    reads = []

    class D(core.dispatcher):
        def handle_read(self):
            reads.append(self.recv(10))

        def writable(self):
            return False

    D(pair[0], map=m)
    start = time.monotonic()
    core.loop(timeout=0.01, use_poll=use_poll, map=m, count=3)
    assert time.monotonic() - start < 2 and reads == []
    pair[1].sendall(b"z")
    core.loop(timeout=1, use_poll=use_poll, map=m, count=1)
    assert reads == [b"z"]
    core.close_all(m)
    core.loop(timeout=5, use_poll=use_poll, map=m)  # empty map: returns at once


def test_loop_propagates_exitnow(core, pair):
    class D(core.dispatcher):
        def handle_read(self):
            raise core.ExitNow()

        def writable(self):
            return False

    m = {}
    D(pair[0], map=m)
    pair[1].sendall(b"x")
    with pytest.raises(core.ExitNow):
        core.loop(timeout=1, map=m, count=1)
    core.close_all(m)


def test_close_all(core):
    class Fails:
        def __init__(self, exc):
            self.exc = exc

        def close(self):
            raise self.exc

    s1, s2 = socket.socketpair()
    m = {}
    d1 = core.dispatcher(s1, map=m)
    core.dispatcher(s2, map=m)
    core.close_all(m)
    assert m == {} and s1.fileno() == -1 and s2.fileno() == -1 and not d1.connected
    core.close_all({1: Fails(OSError(errno.EBADF, "bad"))})  # EBADF is ignored
    with pytest.raises(OSError):
        core.close_all({1: Fails(OSError(errno.EIO, "io"))})
    core.close_all({1: Fails(OSError(errno.EIO, "io"))}, ignore_all=True)
    with pytest.raises(ValueError):
        core.close_all({1: Fails(ValueError())})
    core.close_all({1: Fails(ValueError())}, ignore_all=True)
    with pytest.raises(core.ExitNow):
        core.close_all({1: Fails(core.ExitNow())}, ignore_all=True)


def test_default_socket_map(core, pair):
    d = core.dispatcher(pair[0])
    try:
        assert core.socket_map[pair[0].fileno()] is d
    finally:
        d.close()
    assert pair[0].fileno() not in core.socket_map


# --- dispatcher_with_send -------------------------------------------------

def test_dispatcher_with_send(core, pair, capsys):
    a, b = pair
    d = core.dispatcher_with_send(a, map={})
    assert d.out_buffer == b"" and not d.writable()
    d.debug = True
    d.send(b"hello")
    assert "sending b'hello'" in capsys.readouterr().out
    assert b.recv(10) == b"hello" and d.out_buffer == b""
    d.debug = False
    big = b"y" * (4 * 1024 * 1024)
    d.send(big)
    assert d.writable() and len(d.out_buffer) > 0
    received = bytearray()
    while len(received) < len(big) + 0:
        b.setblocking(False)
        try:
            received += b.recv(1 << 20)
        except BlockingIOError:
            pass
        d.handle_write()
    assert bytes(received) == big and not d.writable()
    d.close()


# --- file_dispatcher / file_wrapper ---------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="file_dispatcher is POSIX only")
def test_file_dispatcher_over_a_pipe(core):
    r, w = os.pipe()
    got = []

    class Reader(core.file_dispatcher):
        def handle_read(self):
            got.append(self.recv(100))

        def writable(self):
            return False

    m = {}
    d = Reader(r, map=m)
    assert d.connected and os.get_blocking(r) is False
    assert isinstance(d.socket, core.file_wrapper) and d.socket.fd != r
    os.write(w, b"through the pipe")
    core.loop(timeout=1, map=m, count=1)
    assert got == [b"through the pipe"]
    os.close(w)
    core.loop(timeout=1, map=m, count=2)  # EOF: handle_close, channel closed
    assert m == {} and d.socket.fd == -1
    os.close(r)


@pytest.mark.skipif(os.name != "posix", reason="file_wrapper is POSIX only")
def test_file_wrapper(core):
    r, w = os.pipe()
    fw = core.file_wrapper(w)
    assert fw.fileno() != w
    assert fw.send(b"ab") == 2 and fw.write(b"c") == 1
    assert os.read(r, 10) == b"abc"
    assert fw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    with pytest.raises(NotImplementedError):
        fw.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    with pytest.raises(NotImplementedError):
        fw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR, 4)
    rw = core.file_wrapper(r)
    os.write(w, b"xyz")
    assert rw.recv(2) == b"xy" and rw.read(5) == b"z"
    fw.close()
    fw.close()  # twice is fine
    assert fw.fd == -1
    rw.close()
    leaked = core.file_wrapper(r)
    with pytest.warns(ResourceWarning):
        del leaked
        gc.collect()
    os.close(r)
    os.close(w)


@pytest.mark.skipif(os.name != "posix", reason="file_dispatcher is POSIX only")
def test_file_dispatcher_accepts_file_objects(core):
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as f:
        m = {}
        d = core.file_dispatcher(f, map=m)
        assert list(m.values()) == [d]
        d.close()
    os.close(w)


def test_loop_releases_its_poller_when_the_map_empties():
    # found: loop() caches an epoll/kqueue object per map (holding the map)
    # and keeps its descriptor after every channel is closed, even after
    # close_all(); code that serves many short-lived maps keeps up to 8.
    def pollers():
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += "eventpoll" in os.readlink("/proc/self/fd/" + fd)
            except OSError:
                pass
        return count

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    before = pollers()
    a, b = socket.socketpair()
    m = {}
    ours.dispatcher(a, map=m)
    ours.loop(timeout=0, map=m, count=1)
    ours.close_all(m)
    b.close()
    ours.loop(timeout=0, map=m)
    assert pollers() == before


def test_close_all_releases_the_poller():
    # CPython's loop() holds nothing between calls, so close_all() leaves
    # no resource behind.  found: asynchat_core keeps the map's epoll fd
    # until loop() runs once more on the emptied map (or 8 maps later).
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")

    def pollers():
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += "eventpoll" in os.readlink("/proc/self/fd/" + fd)
            except OSError:
                pass
        return count

    before = pollers()
    a, b = socket.socketpair()
    m = {}
    ours.dispatcher(a, map=m)
    ours.loop(timeout=0, map=m, count=1)
    ours.close_all(m)
    b.close()
    assert pollers() == before
