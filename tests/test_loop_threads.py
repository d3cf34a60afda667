"""Threads and the loop: several threads looping one map take turns pass by
pass, channels closed from a thread that is not looping never get another
event, and a Loop is closed by the last thread leaving it.  Every Linux
backend, both twins.

The channels here are instrumented (``Watched``): a handler called after the
channel's ``del_channel()`` completed, a handler entered while another thread
is inside a handler of the same map, or any exception reaching
``handle_error``, is recorded as a problem and fails the test.
"""

import os
import platform
import socket
import ssl
import threading
import time
import traceback

import pytest

from asynchat_core import _runner, asynchat, asyncore
from impls import BACKENDS

# ---------------------------------------------------------- instrumentation

class Monitor:
    """What must never happen, collected from every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owner = None
        self.depth = 0
        self.problems = []
        self.dispatchers = set()  # threads that ran a handler

    def enter(self, chan, name):
        me = threading.get_ident()
        with self.lock:
            if chan.forgotten:
                self.problems.append("%s on closed %s" % (name, type(chan).__name__))
            if self.depth and self.owner != me:
                self.problems.append("%s while another thread dispatches" % name)
            self.owner = me
            self.depth += 1
            self.dispatchers.add(me)
        time.sleep(0)  # let another thread run now, if any could

    def leave(self):
        with self.lock:
            self.depth -= 1

    def problem(self, text):
        with self.lock:
            self.problems.append(text)


def _watched(name):
    def wrapper(self, *args):
        self.monitor.enter(self, name)
        try:
            return getattr(super(Watched, self), name)(*args)
        finally:
            self.monitor.leave()
    wrapper.__name__ = name
    return wrapper


class Watched:
    """Mixin put before a channel class: its handlers report to
    ``self.monitor`` (set before the channel is registered)."""

    forgotten = False

    def del_channel(self, map=None):
        super().del_channel(map)
        self.forgotten = True  # from here on, no handler may run

    def handle_error(self):
        self.monitor.problem("handle_error in %s: %s" % (
            type(self).__name__, traceback.format_exc()))
        self.close()

    handle_read = _watched("handle_read")
    handle_write = _watched("handle_write")
    handle_expt = _watched("handle_expt")
    handle_connect = _watched("handle_connect")
    handle_close = _watched("handle_close")
    handle_accepted = _watched("handle_accepted")


class _Sink(asyncore.dispatcher):
    """Reads and keeps everything; closes on EOF."""

    def __init__(self, sock, map, monitor):
        self.monitor = monitor
        self.data = []
        asyncore.dispatcher.__init__(self, sock, map=map)

    def writable(self):
        return False

    def handle_read(self):
        data = self.recv(4096)
        if data:
            self.data.append(data)

    def handle_close(self):
        self.close()


class Sink(Watched, _Sink):
    pass


class _Listener(asyncore.dispatcher):
    """Hands each accepted socket to ``on_accept``."""

    def __init__(self, map, monitor, on_accept):
        self.monitor = monitor
        self.on_accept = on_accept
        asyncore.dispatcher.__init__(self, map=map)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(128)
        self.address = self.socket.getsockname()

    def handle_accepted(self, sock, addr):
        self.on_accept(sock)


class Listener(Watched, _Listener):
    pass


class _Echo(asynchat.async_chat):
    """Server side: echoes lines; counts the bytes it pushed and sent."""

    def __init__(self, sock, map, monitor):
        self.monitor = monitor
        self.buf = []
        self.pushed = 0
        self.sent = 0
        asynchat.async_chat.__init__(self, sock, map=map)
        self.set_terminator(b"\n")
        monitor.servers.append(self)

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        reply = b"".join(self.buf) + b"\n"
        self.buf = []
        self.pushed += len(reply)
        self.push(reply)

    def send(self, data):
        n = asynchat.async_chat.send(self, data)
        self.sent += n
        return n


class EchoHandler(Watched, _Echo):
    pass


class _Client(asynchat.async_chat):
    """Sends its lines and BYE once connected; closes itself on BYE."""

    def __init__(self, address, map, monitor, cid, nlines, done):
        self.monitor = monitor
        asynchat.async_chat.__init__(self, map=map)  # not registered yet
        self.set_terminator(b"\n")
        self.expect = [b"%d:%d" % (cid, k) for k in range(nlines)]
        self.got = []
        self.buf = []
        self.finished = False
        self.done = done
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        self.connecting = True
        self.set_socket(sock)  # last: the loop threads see a connecting channel

    def handle_connect(self):
        self.push(b"".join(line + b"\n" for line in self.expect) + b"BYE\n")

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        line = b"".join(self.buf)
        self.buf = []
        if line != b"BYE":
            self.got.append(line)
            return
        self.finished = True
        self.close()
        self.done(self)

    def handle_close(self):
        if not self.finished:
            self.monitor.problem("client %r lost its server" % (self.expect[0],))
            self.finished = True
            self.done(self)
        self.close()


class EchoClient(Watched, _Client):
    pass


class Looper(threading.Thread):
    """``asyncore.loop()`` on ``map`` in a thread: one call, until the map
    empties, or with ``stop``, ``loop(count=1)`` calls until it is set."""

    def __init__(self, map, backend, stop=None, timeout=0.05):
        threading.Thread.__init__(self, daemon=True)
        self.map = map
        self.backend = backend
        self.stop = stop
        self.timeout = timeout
        self.error = None

    def run(self):
        try:
            if self.stop is None:
                asyncore.loop(timeout=self.timeout, map=self.map, backend=self.backend)
                return
            while not self.stop.is_set():
                asyncore.loop(timeout=self.timeout, map=self.map, backend=self.backend,
                              count=1)
                if not self.map:
                    time.sleep(0.005)
        except BaseException:
            self.error = traceback.format_exc()


def _join(threads, limit=5.0):
    deadline = time.monotonic() + limit
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "loop threads still running"
    errors = [t.error for t in threads if t.error]
    assert not errors, "exception left loop():\n" + "\n".join(errors)


def _until(cond, limit=5.0, what="condition"):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, what + " not reached"
        time.sleep(0.002)


# ------------------------------------------- (a) several threads, one map

@pytest.mark.parametrize("nthreads", [2, 4])
def test_threads_share_one_map_echo(backend, nthreads, capfd):
    total, concurrency, nlines = 200, 16, 5
    m = {}
    mon = Monitor()
    mon.servers = []
    listener = Listener(m, mon, lambda sock: EchoHandler(sock, m, mon))
    stop = threading.Event()
    # half loop "forever", half loop(count=1) in a loop, as CPython's test
    # servers do
    loopers = [Looper(m, backend, stop if i % 2 else None) for i in range(nthreads)]
    for t in loopers:
        t.start()
    finished = []
    cond = threading.Condition()

    def done(client):
        with cond:
            finished.append(client)
            cond.notify()

    clients = []
    deadline = time.monotonic() + 8.0
    try:
        while len(clients) < total:
            with cond:
                while len(clients) - len(finished) >= concurrency:
                    assert time.monotonic() < deadline, "echo clients stalled"
                    cond.wait(0.1)
            # created here, in a thread that is not looping
            clients.append(EchoClient(listener.address, m, mon, len(clients), nlines, done))
        with cond:
            while len(finished) < total:
                assert time.monotonic() < deadline, "echo clients stalled"
                cond.wait(0.1)
    finally:
        listener.close()  # from this thread, while the others loop
        stop.set()
        _join(loopers)
    assert mon.problems == []
    assert len(mon.dispatchers) >= 2  # the passes did change hands
    for client in clients:
        assert client.got == client.expect  # every reply, exactly once, in order
    assert len(mon.servers) == total
    for server in mon.servers:
        assert server.sent == server.pushed  # nothing sent twice
    assert not m
    err = capfd.readouterr().err
    assert "uncaptured" not in err and "Traceback" not in err


def test_passes_take_turns(backend):
    """A second thread's loop() runs its passes after the pass in progress:
    it is not starved by a thread that loops without pause."""
    m = {}
    mon = Monitor()
    a, b = socket.socketpair()
    Sink(a, m, mon)
    stop = threading.Event()
    first = Looper(m, backend, stop, timeout=0.01)
    first.start()
    try:
        _until(lambda: _runner._loops.get(id(m)) is not None, what="first loop")
        lp = _runner._loops[id(m)]
        start = time.monotonic()
        before = lp.passes
        asyncore.loop(timeout=0.01, map=m, backend=backend, count=5)
        # our 5 passes alternate with the other thread's: a handful of its
        # passes, not an unbounded run of them
        assert lp.passes - before <= 5 * 2 + 2
        assert time.monotonic() - start < 2.0
        assert _runner._loops[id(m)] is lp  # the same Loop served both
    finally:
        stop.set()
        _join([first])
        asyncore.close_all(m)
        b.close()
    assert mon.problems == []


def test_lock_is_reentrant_and_first_come_first_served(our_impl):
    """The loop's lock: reentrant, released only by its owner, and handed to
    waiters in arrival order, before the releasing thread can retake it."""
    lock = our_impl.loop._RLock()
    with pytest.raises(RuntimeError):
        lock.release()
    order = []

    def waiter(name):
        with lock:
            order.append(name)

    lock.acquire()
    lock.acquire()  # reentrant
    threads = []
    for n, name in enumerate("abc"):
        t = threading.Thread(target=waiter, args=(name,))
        t.start()
        threads.append(t)
        # queued in this order: wait until this one is in the queue
        # (the deadline is generous: it only guards against a hang)
        deadline = time.monotonic() + 30
        while lock.waiting() < n + 1:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.001)
    lock.release()
    assert order == []  # still held once
    lock.release()
    lock.acquire()  # at once again: behind the three waiters
    order.append("main")
    lock.release()
    for t in threads:
        t.join(5.0)
    assert order == ["a", "b", "c", "main"]
    errors = []

    def stranger():
        try:
            lock.release()
        except RuntimeError:
            errors.append("refused")

    lock.acquire()
    t = threading.Thread(target=stranger)
    t.start()
    t.join(5.0)
    lock.release()
    assert errors == ["refused"]


# ------------------------------------ (b) closing from a thread not looping

class PollSpy:
    """Wraps a Loop's poller: ``waiting`` is set when the loop thread calls
    poll(); with ``hold="before"`` the kernel call waits for ``go``, with
    ``hold="after"`` its result is handed back only after ``go``."""

    def __init__(self, real, hold):
        self.real = real
        self.hold = hold
        self.waiting = threading.Event()
        self.returned = threading.Event()
        self.go = threading.Event()
        self.result = None

    def __getattr__(self, name):
        return getattr(self.real, name)

    def poll(self, timeout):
        if self.go.is_set():
            return self.real.poll(timeout)
        self.waiting.set()
        if self.hold == "before":
            self.go.wait(5.0)
        events = self.real.poll(timeout)
        self.result = events
        self.returned.set()
        if self.hold == "after":
            self.go.wait(5.0)
        return events


# The system calls the backends wait in (Linux, by architecture): epoll_wait,
# epoll_pwait, poll, ppoll, select, pselect6.  None: cannot be seen here.
_WAIT_SYSCALLS = {
    "x86_64": {232, 281, 7, 271, 23, 270},
    "aarch64": {22, 73, 72},
}.get(platform.machine()) if os.path.exists("/proc/self/task") else None


def _syscall(thread):
    """The number of the system call ``thread`` is in (Linux), or None."""
    try:
        with open("/proc/self/task/%d/syscall" % thread.native_id) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # "running", or gone


def _loop_with_spy(m, backend, hold, timeout):
    asyncore.loop(timeout=0, map=m, backend=backend, count=1)  # registered
    lp = _runner._loops[id(m)]
    spy = PollSpy(lp.poller, hold)
    lp.poller = spy
    looper = Looper(m, backend, timeout=timeout)
    looper.start()
    assert spy.waiting.wait(5.0)
    return lp, spy, looper


def _pairs(n):
    return [socket.socketpair() for _ in range(n)]


def test_rebuild_skips_a_channel_another_thread_closed(backend):
    """A channel closed by another thread during a dispatch is only unhooked
    (forget() cannot take the guard) and its fd is free; a rebuild of the
    kernel set before the next flush makes a new epoll, which takes that
    lowest free fd.  The rebuild must not register the forgotten entry (on
    epoll: EINVAL, the new epoll's own fd; elsewhere: a stranger's fd)."""
    m = {}
    mon = Monitor()
    (a1, b1), (a2, b2) = _pairs(2)
    victim = Sink(a1, m, mon)
    keeper = Sink(a2, m, mon)
    asyncore.loop(timeout=0, map=m, backend=backend, count=1)
    lp = _runner._loops[id(m)]
    lp.guard.acquire()  # as during a dispatch in this thread
    try:
        closer = threading.Thread(target=victim.close)
        closer.start()
        closer.join(5.0)
        assert victim.forgotten
        # the race: a pass found a stale fd and rebuilds after its flush,
        # and the close landed between the two
        lp._rebuild()  # must not raise
    finally:
        lp.guard.release()
    b2.send(b"still served")
    try:
        asyncore.loop(timeout=0.05, map=m, backend=backend, count=5)
        assert b"".join(keeper.data) == b"still served"
    finally:
        keeper.close()
        b1.close()
        b2.close()
    assert mon.problems == []


def test_close_all_before_kernel_wait(backend):
    """The map empties (closes from this thread) between the loop thread's
    interest sync and its kernel call: the Loop must stay usable until that
    thread leaves, then be released."""
    m = {}
    mon = Monitor()
    pairs = _pairs(3)
    chans = [Sink(a, m, mon) for a, _ in pairs]
    listener = Listener(m, mon, lambda sock: sock.close())
    lp, spy, looper = _loop_with_spy(m, backend, "before", timeout=0.05)
    for chan in chans + [listener]:
        chan.close()
    assert not m
    assert not lp.closed and lp.close_pending  # deferred: a thread is inside
    assert _runner._loops.get(id(m)) is lp
    spy.go.set()
    _join([looper])
    assert lp.closed and lp.users == 0
    assert mon.problems == []
    for _, b in pairs:
        b.close()


def test_events_for_closed_and_reused_fds(backend):
    """The kernel wait returned events for channels that this thread then
    closes, one fd reused at once by a new channel: the closed channels get
    nothing, the new one gets only its own data."""
    m = {}
    mon = Monitor()
    pairs = _pairs(3)
    chans = [Sink(a, m, mon) for a, _ in pairs]
    listener = Listener(m, mon, lambda sock: sock.close())
    keep_a, keep_b = socket.socketpair()
    keeper = Sink(keep_a, m, mon)  # keeps the map, so the loop, going
    x, y = socket.socketpair()
    lp, spy, looper = _loop_with_spy(m, backend, "after", timeout=0.05)
    for _, b in pairs:
        b.send(b"stale")
    client = socket.create_connection(listener.address)  # listener readable
    reused_fd = chans[0]._fileno
    try:
        for _ in range(3):  # until one wait saw the data
            assert spy.returned.wait(5.0)
            if reused_fd in dict(spy.result):
                break
            held, spy.go = spy.go, threading.Event()
            spy.returned.clear()
            held.set()
        assert reused_fd in dict(spy.result)
        # the loop thread holds events for these channels and has not
        # dispatched them: close them now, from here
        t0 = time.monotonic()
        for chan in chans + [listener]:
            chan.close()
        # no dispatch to wait for (generous: a close that waited would
        # wait for the spy's 5 s hold)
        assert time.monotonic() - t0 < 4.0
        os.dup2(x.fileno(), reused_fd)
        fresh = Sink(socket.socket(fileno=reused_fd), m, mon)
        y.send(b"fresh")
        spy.go.set()
        _until(lambda: fresh.data, what="data on the reused fd")
        assert fresh.data == [b"fresh"]
        for chan in chans:
            assert chan.data == []
        fresh.close()
        keeper.close()
        _join([looper])
    finally:
        spy.go.set()
        for s in [client, keep_b, x, y] + [b for _, b in pairs]:
            s.close()
    assert mon.problems == []


def test_close_while_blocked_in_kernel_wait(backend):
    """Closing every channel while the loop thread sleeps in
    epoll_wait/poll/select: each close returns at once (it does not wait
    for the 2 s wait), and the thread leaves when its wait ends."""
    m = {}
    mon = Monitor()
    pairs = _pairs(4)
    chans = [Sink(a, m, mon) for a, _ in pairs]
    listener = Listener(m, mon, lambda sock: sock.close())
    if _WAIT_SYSCALLS is None:
        pytest.skip("cannot see here whether the loop thread is in the kernel call")
    lp, spy, looper = _loop_with_spy(m, backend, None, timeout=2.0)
    # into the kernel call: the thread's current system call says so
    # (generous deadline: only guards against a hang)
    deadline = time.monotonic() + 10
    while _syscall(looper) not in _WAIT_SYSCALLS:
        assert time.monotonic() < deadline, "the loop thread never reached the kernel wait"
        assert not spy.returned.is_set()
        time.sleep(0.001)
    for chan in chans + [listener]:
        chan.close()
    # every close returned while the wait was still in progress
    assert not spy.returned.is_set()
    _join([looper])
    assert lp.closed
    assert mon.problems == []
    for _, b in pairs:
        b.close()


def test_close_during_dispatch_does_not_wait_and_ends_events(backend):
    """A close from another thread during a dispatch returns at once (the
    handler might be waiting for that thread); after it returns the channel
    gets no event, though it had one pending in the same pass."""
    m = {}
    mon = Monitor()
    entered = threading.Event()
    release = threading.Event()
    left = threading.Event()
    (a1, b1), (a2, b2) = _pairs(2)

    class _Slow(_Sink):
        def handle_read(self):
            _Sink.handle_read(self)
            entered.set()
            release.wait(30)  # the dispatch lasts until the test says so
            left.set()

    class Slow(Watched, _Slow):
        pass

    slow = Slow(a1, m, mon)
    victim = Sink(a2, m, mon)
    asyncore.loop(timeout=0, map=m, backend=backend, count=1)
    b1.send(b"x")
    b2.send(b"y")
    looper = Looper(m, backend, timeout=0.05)
    looper.start()
    try:
        assert entered.wait(5.0)
        before = list(victim.data)
        victim.close()
        assert not left.is_set()  # returned while the dispatch still ran
        after_close = list(victim.data)
        release.set()
        slow.close()
        _join([looper])
        assert victim.data == after_close  # nothing delivered after close()
        assert before == [] or before == [b"y"]
    finally:
        release.set()
        for s in (b1, b2):
            s.close()
    assert mon.problems == []


def test_handler_waiting_for_a_closing_thread_does_not_deadlock(backend):
    """A handler that waits for a worker thread while the worker closes a
    channel of the same map (a job finishing) completes: a close from
    another thread never waits for the dispatch in progress."""
    m = {}
    mon = Monitor()
    (a1, b1), (a2, b2) = _pairs(2)
    victim = Sink(a2, m, mon)
    done = threading.Event()

    def worker():
        victim.close()
        done.set()

    class _Waiter(_Sink):
        def handle_read(self):
            _Sink.handle_read(self)
            if not done.is_set():
                t = threading.Thread(target=worker)
                t.start()
                t.join(3.0)  # the handler waits for the closing thread

    class Waiter(Watched, _Waiter):
        pass

    waiter = Waiter(a1, m, mon)
    asyncore.loop(timeout=0, map=m, backend=backend, count=1)
    b1.send(b"x")
    looper = Looper(m, backend, timeout=0.05)
    looper.start()
    try:
        assert done.wait(2.0), "the close waited for the handler that waits for it"
        waiter.close()
        _join([looper])
    finally:
        for s in (b1, b2):
            s.close()
    assert victim.forgotten
    assert mon.problems == []


# ---------------------------------------------------- (c) deferred close

def test_map_empties_while_second_thread_waits_for_pass(backend):
    """Two threads inside: one mid-pass, one waiting for the pass lock.  The
    map empties meanwhile; both leave cleanly and the last one closes."""
    m = {}
    mon = Monitor()
    a, b = socket.socketpair()
    chan = Sink(a, m, mon)
    lp, spy, first = _loop_with_spy(m, backend, "before", timeout=0.05)
    second = Looper(m, backend, timeout=0.05)
    second.start()
    _until(lambda: lp.users == 2, what="second thread inside")
    chan.close()
    assert not lp.closed and lp.close_pending
    spy.go.set()
    _join([first, second])
    assert lp.closed and lp.users == 0
    assert _runner._loops.get(id(m)) is None
    assert mon.problems == []
    b.close()


def test_loop_in_use_is_not_evicted_or_replaced(backend, monkeypatch):
    """Eviction (more maps than _MAX_LOOPS), a kernel switch and a loop()
    asking for another backend leave a Loop in use serving its thread."""
    monkeypatch.setattr(_runner, "_MAX_LOOPS", 2)
    m = {}
    mon = Monitor()
    a, b = socket.socketpair()
    chan = Sink(a, m, mon)
    lp, spy, looper = _loop_with_spy(m, backend, "before", timeout=0.02)
    others = []
    try:
        for _ in range(4):  # each loop() below needs a slot
            om = {}
            x, y = socket.socketpair()
            others.append((om, Sink(x, om, mon), y))
            asyncore.loop(timeout=0, map=om, backend=backend, count=1)
        assert _runner._loops.get(id(m)) is lp and not lp.close_pending
        asyncore._use_impl(asyncore._loop_impl)  # closes loops not in use
        assert _runner._loops.get(id(m)) is lp and lp.close_pending
        assert not lp.closed
        other = "select" if backend != "select" else BACKENDS[0]
        joined = Looper(m, other, timeout=0.02)
        joined.start()  # shares lp: no second Loop for the map
        _until(lambda: lp.users == 2, what="second thread inside")
        spy.go.set()
        b.send(b"still served")
        _until(lambda: chan.data, what="data")
        assert chan.data == [b"still served"]
        chan.close()
        _join([looper, joined])
        assert lp.closed
    finally:
        spy.go.set()
        for om, c, y in others:
            c.close()
            y.close()
        b.close()
    assert mon.problems == []


def test_handler_empties_map_mid_pass(backend):
    """The last channel closes itself in its handler: the pass finishes on
    an open Loop, loop() returns, and the Loop is released then."""
    m = {}
    mon = Monitor()
    pairs = _pairs(3)
    chans = [Sink(a, m, mon) for a, _ in pairs]
    asyncore.loop(timeout=0, map=m, backend=backend, count=1)
    lp = _runner._loops[id(m)]
    for _, b in pairs:
        b.close()  # EOF for every channel in one pass
    asyncore.loop(timeout=1.0, map=m, backend=backend)
    assert not m and lp.closed and lp.users == 0
    for chan in chans:
        assert chan.forgotten
    assert mon.problems == []


# ----------------------------------------------------------- (d) TLS storm

class _TLSEcho(_Echo):
    """A server channel on an accepted socket wrapped with
    do_handshake_on_connect=False: the handshake runs in handle_read and
    handle_write, as CPython's test_ftplib SSLConnection does it."""

    def __init__(self, sock, map, monitor, context):
        self.handshaking = True
        self.want_write = False
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        _Echo.__init__(self, tls, map, monitor)

    def _handshake(self):
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self.want_write = False
        except ssl.SSLWantWriteError:
            self.want_write = True
        except (ssl.SSLError, OSError) as err:
            self.monitor.problem("handshake failed: %r" % (err,))
            self.close()
        else:
            self.handshaking = False
            self.want_write = False

    def readable(self):
        return True if self.handshaking else asynchat.async_chat.readable(self)

    def writable(self):
        if self.handshaking:
            return self.want_write
        return asynchat.async_chat.writable(self)

    def handle_read(self):
        if self.handshaking:
            self._handshake()
        else:
            asynchat.async_chat.handle_read(self)

    def handle_write(self):
        if self.handshaking:
            self._handshake()
        else:
            asynchat.async_chat.handle_write(self)

    def recv(self, size):
        try:
            return asynchat.async_chat.recv(self, size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return b""  # a partial record: the rest comes with a later event

    def send(self, data):
        try:
            return _Echo.send(self, data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0


class TLSEcho(Watched, _TLSEcho):
    pass


def _tls_client(address, context, lines, failures, tls):
    try:
        raw = socket.create_connection(address, timeout=10.0)
        sock = context.wrap_socket(raw, server_hostname="localhost") if tls else raw
        with sock:
            f = sock.makefile("rb")
            for line in lines:
                sock.sendall(line + b"\n")
                reply = f.readline()
                if reply != line + b"\n":
                    failures.append("%r -> %r" % (line, reply))
                    return
            f.close()
    except Exception as err:  # noqa: BLE001 - any failure fails the test
        failures.append("client %r" % (err,))


def test_tls_storm(backend, capfd):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    m = {}
    mon = Monitor()
    mon.servers = []
    tls_listener = Listener(m, mon, lambda sock: TLSEcho(sock, m, mon, server_ctx))
    plain_listener = Listener(m, mon, lambda sock: EchoHandler(sock, m, mon))
    stop = threading.Event()
    loopers = [Looper(m, backend, stop if i % 2 else None, timeout=0.02) for i in range(4)]
    for t in loopers:
        t.start()
    failures = []
    per_thread, nthreads = 12, 4

    def client_thread(n):
        for i in range(per_thread):
            tls = (i + n) % 2 == 0
            address = (tls_listener if tls else plain_listener).address
            lines = [b"%d-%d-%d" % (n, i, k) for k in range(4)]
            _tls_client(address, client_ctx, lines, failures, tls)

    clients = [threading.Thread(target=client_thread, args=(n,)) for n in range(nthreads)]
    try:
        for c in clients:
            c.start()
        for c in clients:
            c.join(20.0)
        assert not [c for c in clients if c.is_alive()], "TLS clients stalled"
        # the server sides close on the clients' EOF
        _until(lambda: len(m) == 2, limit=5.0, what="server channels closed")
    finally:
        tls_listener.close()
        plain_listener.close()
        stop.set()
        _join(loopers, limit=10.0)
    assert failures == []
    assert mon.problems == []
    assert len(mon.dispatchers) >= 2
    assert len(mon.servers) == per_thread * nthreads
    for server in mon.servers:
        assert server.sent == server.pushed
    err = capfd.readouterr().err
    assert "uncaptured" not in err and "Traceback" not in err


# ------------------------------------------------- misdirected handle_close

def test_stale_registration_never_closes_fd_reuser(backend):
    """A channel closed behind the loop's back while a dup keeps its socket
    open, its fd number taken at once by a new listener: the old socket's
    hang-up must not reach the listener (epoll keeps reporting a dup'ed
    registration under the old number)."""
    m = {}
    mon = Monitor()

    class _Kept(_Listener):
        def handle_close(self):
            mon.problem("handle_close on the listener")
            self.close()

    class Kept(Watched, _Kept):
        pass

    keep_a, keep_b = socket.socketpair()
    Sink(keep_a, m, mon)  # keeps the map, so the loop, going
    a, b = socket.socketpair()
    Sink(a, m, mon)
    asyncore.loop(timeout=0, map=m, backend=backend, count=1)  # registered
    fd = a.fileno()
    dup = os.dup(fd)  # the open file outlives the channel's fd
    a.close()  # behind the loop's back
    fresh = socket.socket()
    if fresh.fileno() == fd:  # the lowest free number: usually so
        fresh.detach()
    else:
        os.dup2(fresh.fileno(), fd)
        fresh.close()

    class Reuser(Kept):
        def __init__(self):
            self.monitor = mon
            self.on_accept = lambda sock: sock.close()
            asyncore.dispatcher.__init__(self, socket.socket(fileno=fd), map=m)
            self.bind(("127.0.0.1", 0))
            self.listen(8)
            self.address = self.socket.getsockname()

    listener = Reuser()
    assert m[fd] is listener
    b.close()  # the old socket, still open through dup, hangs up
    try:
        asyncore.loop(timeout=0.02, map=m, backend=backend, count=5)
        assert m.get(fd) is listener and listener.accepting
        client = socket.create_connection(listener.address)
        asyncore.loop(timeout=0.02, map=m, backend=backend, count=3)
        client.close()
        assert m.get(fd) is listener
    finally:
        os.close(dup)
        asyncore.close_all(m)
        keep_b.close()
    assert mon.problems == []
