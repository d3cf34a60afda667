"""The pass as one straight path (issue 18): ``run_once`` syncs interest,
waits and dispatches inline; ``_flush`` asks the state-driven channels
inline and, compiled, reuses the set it emptied as the next dirty set; the
Python build takes the pass lock inline.  These tests pin what that makes
delicate: a pass run from inside the interest sync (a nested ``loop()``
from user code that the sync reaches), and the pass lock left free for
another thread afterwards."""

import select
import socket
import threading
import time


def _serve_until(asyncore, m, backend, peers, wants, limit=5.0):
    # loop the map and read the peers until each one's data ends as wanted
    got = [b""] * len(peers)
    for peer in peers:
        peer.setblocking(False)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(g.endswith(w) for g, w in zip(got, wants)):
            break
        asyncore.loop(timeout=0.01, count=1, map=m, backend=backend)
        for i, peer in enumerate(peers):
            try:
                got[i] += peer.recv(1 << 16)
            except BlockingIOError:
                pass
    return got


def test_nested_loop_from_the_interest_sync(our_impl, backend):
    asyncore, asynchat = our_impl.asyncore, our_impl.asynchat
    m = {}
    log = []

    class Echo(asynchat.async_chat):
        # state-driven: readable/writable are the library's own
        def __init__(self, sock, name):
            asynchat.async_chat.__init__(self, sock, map=m)
            self.set_terminator(b"\n")
            self.name = name
            self.buf = []
            self.nest = False

        def collect_incoming_data(self, data):
            self.buf.append(data)

        def found_terminator(self):
            log.append((self.name, b"".join(self.buf)))
            self.buf = []
            self.push(b"pong\n")

        @property
        def accepting(self):
            # read by the interest sync once writable() is True: a user hook
            # the sync reaches, which runs a pass of its own
            if self.nest:
                self.nest = False
                log.append((self.name, "nested"))
                asyncore.loop(timeout=0.5, count=1, map=m, backend=backend)
            return False

        @accepting.setter
        def accepting(self, value):
            pass

    (x, xpeer), (y, ypeer) = socket.socketpair(), socket.socketpair()
    cx, cy = Echo(x, "x"), Echo(y, "y")
    big = b"z" * (4 << 20)
    try:
        asyncore.loop(timeout=0, count=2, map=m, backend=backend)
        cx.push(big)  # more than the socket takes: x stays writable
        asyncore.loop(timeout=0, count=2, map=m, backend=backend)
        assert cx.writable()
        ypeer.send(b"ping\n")
        time.sleep(0.05)
        cx.nest = True
        xpeer.send(b"q\n")  # read: x is dirty, and a sync asks it
        asyncore.loop(timeout=0.5, count=2, map=m, backend=backend)
        assert ("x", "nested") in log
        assert ("y", b"ping") in log
        got = _serve_until(asyncore, m, backend, [xpeer, ypeer], [b"pong\n", b"pong\n"])
        assert got == [big + b"pong\n", b"pong\n"]
        assert ("x", b"q") in log
        # the dirty set still works after the nested flush: both channels
        # are served again
        xpeer.send(b"a\n")
        ypeer.send(b"b\n")
        got = _serve_until(asyncore, m, backend, [xpeer, ypeer], [b"pong\n", b"pong\n"])
        assert got == [b"pong\n", b"pong\n"]
        assert ("x", b"a") in log and ("y", b"b") in log
    finally:
        cx.close()
        cy.close()
        for s in (xpeer, ypeer):
            s.close()


def test_pass_lock_free_after_nested_loop(our_impl, backend):
    asyncore = our_impl.asyncore
    m = {}
    a, peer = socket.socketpair()
    depth = []

    class D(asyncore.dispatcher):
        def writable(self):
            return False

        def handle_read(self):
            self.recv(100)
            depth.append(1)
            if len(depth) == 1:
                # a nested pass: the pass lock taken a second time, inline
                asyncore.loop(timeout=0, count=1, map=m, backend=backend)

    chan = D(a, map=m)
    try:
        peer.send(b"x")
        asyncore.loop(timeout=0.5, count=1, map=m, backend=backend)
        assert depth
        # another thread gets a pass at once: the lock was left free
        done = threading.Event()

        def other():
            asyncore.loop(timeout=0, count=1, map=m, backend=backend)
            done.set()

        t = threading.Thread(target=other, daemon=True)
        t.start()
        assert done.wait(5.0), "the pass lock stayed taken"
        t.join(5.0)
        peer.send(b"y")
        asyncore.loop(timeout=0.5, count=1, map=m, backend=backend)
        assert len(depth) == 2
    finally:
        chan.close()
        peer.close()


def test_a_dict_subclass_map_is_asked_through_its_get(impl):
    """The loop's per-event map checks read a plain dict directly; a
    mapping of the user's own (here a dict subclass overriding get, as a
    registry that logs or hides entries would) is asked through its get(),
    as CPython's loop asks it for each ready fd: two channels ready in the
    same pass, whichever is served first hides the other, which is then
    not served in that pass."""
    asyncore, asynchat = impl.asyncore, impl.asynchat
    asked = []
    hidden = set()

    class Registry(dict):
        def get(self, fd, default=None):
            asked.append(fd)
            return default if fd in hidden else dict.get(self, fd, default)

    got = []
    chans = []

    class Hider(asynchat.async_chat):
        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            got.append(self)
            for other in chans:
                if other is not self:
                    hidden.add(other._fileno)

    chan_map = Registry()
    peers = []
    for _ in range(2):
        a, b = socket.socketpair()
        chans.append(Hider(a, map=chan_map))
        chans[-1].set_terminator(b"\n")
        peers.append(b)
    try:
        asyncore.loop(timeout=0, map=chan_map, count=1)  # (ours: both registered)
        for peer in peers:
            peer.sendall(b"go\n")
        ready = select.select([chan.socket for chan in chans], [], [], 5.0)[0]
        assert len(ready) == 2  # (a guard: both are ready for the one pass)
        asyncore.loop(timeout=1.0, map=chan_map, count=1)
        assert len(got) == 1, got
        assert {chan._fileno for chan in chans} <= set(asked)
    finally:
        hidden.clear()
        asyncore.close_all(chan_map)
        for peer in peers:
            peer.close()


def test_read_handler_that_edits_the_map_gets_no_write_that_pass(impl):
    """A read handler that deletes its channel from the map directly (no
    close): the write event of the same pass is not delivered, as CPython's
    loop gets each list's channel from the map again.  (A read alone needs
    no second get: the loop returns after it.)"""
    asyncore = impl.asyncore
    log = []
    chan_map = {}
    a, b = socket.socketpair()

    class D(asyncore.dispatcher):
        def writable(self):
            return True

        def handle_read(self):
            log.append("read")
            self.recv(10)
            del chan_map[self._fileno]

        def handle_write(self):
            log.append("write")

    chan = D(a, map=chan_map)
    try:
        b.sendall(b"x")
        assert select.select([a], [a], [], 5.0)[:2] == ([a], [a])
        asyncore.loop(timeout=1.0, map=chan_map, count=1)
        assert log == ["read"]
    finally:
        chan.close()
        b.close()
