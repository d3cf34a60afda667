"""The event loop, and ``asyncore.dispatcher``'s hot methods: one source,
two builds.  This module runs as Python (``_loop_py``) and is compiled by
Cython in pure-Python mode as ``_loop_c`` (setup.py ``PURE_MODE``), typed by
``src/asynchat_core/_loop_c.pxd``; the tests run both.  ``cython.compiled``
marks the few places where the compiled build does something Python cannot
(a C nesting counter, lock fields the GIL keeps consistent).

``asyncore.loop()`` keeps one ``Loop`` per socket map so that a channel's
interest stays registered in the OS kernel between passes (and between
``loop(count=1)`` calls) and changes only when it changes.

Two kinds of channel:

* *state-driven*: ``readable``/``writable`` are the library's own
  (``dispatcher``, ``dispatcher_with_send``, ``async_chat``).  Their answer
  depends only on state that changes when the channel itself runs, or when
  ``push``/``close_when_done``/``send`` (which notify the loop) are called,
  so the loop asks again only after such a change.  Idle channels cost
  nothing per pass.
* *polled*: anything else.  ``readable()``/``writable()`` are called every
  pass, as the stdlib does, and the kernel is told only about changes.

Event bits are the ``poll()`` bits (identical to epoll's on Linux);
backends that speak another language translate.

Threads: passes of one ``Loop`` never overlap.  ``lock`` is held for a
whole pass, kernel wait included, so a second thread looping the same map
waits for the pass to end and then runs its own: no channel is ever driven
by two threads at once.  ``guard`` protects the loop's state; a pass holds
it except while waiting in the kernel, so ``forget()`` from a thread that
is not looping (closing a channel) runs while the loop sleeps, or waits
for the dispatch in progress to end, and once it returns the channel gets
no further event.  ``close()`` while a thread is inside ``run()`` is
deferred to the last thread leaving.  ``note()``/``touch()`` take no lock.
Both locks are reentrant; ``lock`` is an ``_RLock``, first come first
served, and so is ``guard`` when compiled (the Python build's ``guard`` is
a plain ``_thread.RLock``: no Python frame per pass, see ``_Guard``).
"""

import errno
import os
import select
import socket
import sys
import time

# _thread, not threading: the same locks and thread ids, without threading's
# import time (issue 18)
import _thread

# _heapq, the C functions that heapq re-exports, likewise; imported with the
# first timer (TimerQueue.call_at: the heap is empty until then).  (mypy
# treats any name TYPE_CHECKING as true)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _heapq as heapq
    from typing import Any  # noqa: F401 (type comments)
else:
    heapq = None


def _load_heapq():
    global heapq
    try:
        import _heapq as module
    except ImportError:  # pragma: no cover - an interpreter without the C module
        import heapq as module  # type: ignore[no-redef]
    heapq = module


# Cython's compiler must see "import cython"; run as Python, the stand-in,
# Cython installed or not (its shadow module loads typing: issue 18).  The
# build names compiled modules *_c (asynchat_core/_cython.py)
if __name__.endswith("_c"):
    import cython  # type: ignore[import-untyped, import-not-found, unused-ignore]
else:
    from ._cython import cython

__all__ = [
    "BACKENDS", "available_backends", "best_backend", "Loop", "TimerQueue",
    "TimerHandle", "IdleWatch", "make_poller",
    "DISCONNECTED", "ssl_wants_io", "dispatcher_recv", "dispatcher_send", "sock_recv", "sock_send",
    "dispatcher_readable", "dispatcher_writable", "dispatcher_handle_read_event",
    "dispatcher_handle_write_event",
]

EV_IN = getattr(select, "POLLIN", 1)
EV_PRI = getattr(select, "POLLPRI", 2)
EV_OUT = getattr(select, "POLLOUT", 4)
EV_ERR = getattr(select, "POLLERR", 8)
EV_HUP = getattr(select, "POLLHUP", 16)
EV_NVAL = getattr(select, "POLLNVAL", 32)
WANT_READ = EV_IN | EV_PRI
WANT_WRITE = EV_OUT
EV_GONE = EV_HUP | EV_ERR | EV_NVAL
# the same, as C ints in the compiled build (_loop_c.pxd), for the per-event paths
_IN, _PRI, _OUT, _ERR, _HUP, _NVAL = EV_IN, EV_PRI, EV_OUT, EV_ERR, EV_HUP, EV_NVAL
_GONE, _WANT_READ, _WANT_WRITE = EV_GONE, WANT_READ, WANT_WRITE
# Linux's select() reports POLLHUP and POLLERR as readable, POLLERR also as
# writable (fs/select.c: POLLIN_SET, POLLOUT_SET); precomputed, the Python
# build's _dispatch does not OR them at every event
_SELECT_READ = EV_IN | EV_HUP | EV_ERR
_SELECT_WRITE = EV_OUT | EV_ERR
# what _dispatch may still deliver once a read is done: a write, an expt, an
# invalid fd (a hang-up that came with the read is the read's)
_AFTER_READ = _SELECT_WRITE | EV_PRI | EV_NVAL
# select() puts every fd that is readable() or writable() in its exceptional
# set: a channel that only writes still gets handle_expt (out-of-band data)
_WANT_WRITE_EXPT = EV_OUT | EV_PRI

# accept() failing for lack of descriptors or memory: pause, don't close
ACCEPT_LIMIT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
    if hasattr(errno, name)
)
_FD_GONE_ERRNOS = frozenset({errno.EBADF, errno.ENOENT})
# select() on a closed descriptor: EBADF on POSIX; on Windows a closed socket
# is WSAENOTSOCK (10038, also errno.ENOTSOCK there)
_SELECT_BAD_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EBADF", "ENOTSOCK", "WSAENOTSOCK")
    if hasattr(errno, name)
)

# which event handler _deliver calls (handle_read_event, handle_write_event,
# handle_expt_event); the private copies are C ints when compiled
DELIVER_READ, DELIVER_WRITE, DELIVER_EXPT = 0, 1, 2
_DELIVER_READ, _DELIVER_WRITE = DELIVER_READ, DELIVER_WRITE

SWEEP_INTERVAL = 1.0  # seconds between re-checks of every state-driven channel
ACCEPT_BACKOFF_MIN = 0.05
ACCEPT_BACKOFF_MAX = 1.0

_monotonic = time.monotonic
_time_monotonic = _monotonic  # (compiled: what _clock compares _monotonic with)

# bumped in a forked child: its loops must not share the parent's epoll/kqueue
_fork_generation = 0


def _after_fork_in_child():
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------- backends

class EpollPoller:
    """Linux epoll, level-triggered."""

    name = "epoll"

    def __init__(self):
        self._ep = select.epoll()
        if cython.compiled:
            if self._ready == cython.NULL:  # type: ignore[has-type]  # (__init__ may run twice)
                self._ready = ac_ready_new()
            self._epfd = self._ep.fileno()  # -1 once close()d
            self._busy = False
        else:
            # the Python build: poll() is epoll's own C method (it takes None
            # for "forever" too), no Python frame per pass (issue 18)
            self.poll = self._ep.poll  # type: ignore[method-assign]

    def __dealloc__(self):
        # compiled only (Cython's finaliser): the event array
        if cython.compiled:
            ac_ready_free(self._ready)

    def register(self, fd, mask):
        """Watch ``fd`` for the poll bits in ``mask``."""
        self._ep.register(fd, mask)

    def modify(self, fd, mask):
        """Change the bits watched on ``fd``."""
        self._ep.modify(fd, mask)

    def unregister(self, fd):
        """Stop watching ``fd``."""
        self._ep.unregister(fd)

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever); return ``[(fd, bits)]``."""
        # PEP 475: EINTR is retried with the remaining time, after handlers ran
        return self._ep.poll(-1 if timeout is None else timeout)

    def _wait_ready(self, timeout):
        # compiled only: poll() into self._ready (_loop_c.pxd); the count,
        # or -2 if poll() must do it: the array is being read (a nested
        # run_once), epoll is closed (poll() raises), or an unusual timeout
        if self._busy or self._epfd < 0 or self._ready == cython.NULL:
            return -2
        return ac_epoll_wait(self._epfd, self._ready, timeout)

    def close(self):
        """Close the epoll descriptor."""
        if cython.compiled:
            self._epfd = -1
        self._ep.close()


class PollPoller:
    """POSIX poll() with a persistent ``select.poll`` object."""

    name = "poll"

    def __init__(self):
        self._p = select.poll()

    def register(self, fd, mask):
        """Watch ``fd`` for the poll bits in ``mask``."""
        self._p.register(fd, mask)

    def modify(self, fd, mask):
        """Change the bits watched on ``fd``."""
        try:
            self._p.modify(fd, mask)
        except KeyError:  # select.poll's "not registered": speak like epoll
            raise FileNotFoundError(errno.ENOENT, "not registered") from None

    def unregister(self, fd):
        """Stop watching ``fd``."""
        try:
            self._p.unregister(fd)
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "not registered") from None

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever); return ``[(fd, bits)]``."""
        if timeout is None:
            return self._p.poll()
        # round up: truncating 0.0005 s to 0 ms would spin (the stdlib does)
        ms = int(timeout * 1000)
        if ms < timeout * 1000:
            ms += 1
        return self._p.poll(ms)

    def close(self):
        """Drop the poll object."""
        self._p = None  # type: ignore[assignment]


def _select_bad(err):
    return err.errno in _SELECT_BAD_ERRNOS or getattr(err, "winerror", None) == 10038


def _idle_wait(timeout):
    # select() with nothing to watch only sleeps; Windows rejects three
    # empty sets (WSAEINVAL), so sleep here on every platform.  With no
    # timeout nothing can wake the pass, as with the other backends: only
    # a signal (KeyboardInterrupt) ends it.
    if timeout is None:
        while True:
            time.sleep(3600.0)
    time.sleep(timeout)


class SelectPoller:
    """select(): limited to descriptors below FD_SETSIZE (usually 1024)."""

    name = "select"

    def __init__(self):
        self._masks = {}
        self._r = set()
        self._w = set()
        self._x = set()

    def register(self, fd, mask):
        """Watch ``fd`` for the poll bits in ``mask``."""
        if fd in self._masks:
            raise FileExistsError(errno.EEXIST, "already registered")
        self._set(fd, mask)

    def modify(self, fd, mask):
        """Change the bits watched on ``fd``."""
        if fd not in self._masks:
            raise FileNotFoundError(errno.ENOENT, "not registered")
        self._set(fd, mask)

    def _set(self, fd, mask):
        self._masks[fd] = mask
        for bits, fds in ((EV_IN, self._r), (EV_OUT, self._w), (EV_PRI, self._x)):
            if mask & bits:
                fds.add(fd)
            else:
                fds.discard(fd)

    def unregister(self, fd):
        """Stop watching ``fd``."""
        if self._masks.pop(fd, None) is None:
            raise FileNotFoundError(errno.ENOENT, "not registered")
        self._r.discard(fd)
        self._w.discard(fd)
        self._x.discard(fd)

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever); return ``[(fd, bits)]``."""
        # one snapshot: another thread may unregister while we wait, and
        # three sets emptied after the check would be EINVAL on Windows
        r, w, x = list(self._r), list(self._w), list(self._x)
        if not (r or w or x):
            _idle_wait(timeout)
            return []
        try:
            r, w, x = select.select(r, w, x, timeout)
        except OSError as err:
            if not _select_bad(err):
                raise
            return self._bad_fds()
        events: "dict[int, int]" = {}
        for fds, bit in ((r, EV_IN), (w, EV_OUT), (x, EV_PRI)):
            for fd in fds:
                events[fd] = events.get(fd, 0) | bit
        return list(events.items())

    def _bad_fds(self):
        # select() names no culprit: probe each descriptor alone (not with
        # fstat(), which knows no sockets on Windows)
        bad = []
        for fd in list(self._masks):
            try:
                select.select([fd], [], [], 0)
            except OSError as err:
                if not _select_bad(err):
                    raise
                bad.append((fd, EV_NVAL))
        return bad

    def close(self):
        """Forget every registered descriptor."""
        self._masks.clear()
        self._r.clear()
        self._w.clear()
        self._x.clear()


class KqueuePoller:
    """BSD/macOS kqueue: one read and one write filter per descriptor."""

    name = "kqueue"

    def __init__(self):
        self._kq = select.kqueue()  # type: ignore[attr-defined, unused-ignore]
        self._masks = {}

    def _change(self, fd, old, new):
        changes = []
        for bit, filt in ((EV_IN, select.KQ_FILTER_READ), (EV_OUT, select.KQ_FILTER_WRITE)):  # type: ignore[attr-defined, unused-ignore]
            if new & bit and not old & bit:
                changes.append(select.kevent(fd, filt, select.KQ_EV_ADD))  # type: ignore[attr-defined, unused-ignore]
            elif old & bit and not new & bit:
                changes.append(select.kevent(fd, filt, select.KQ_EV_DELETE))  # type: ignore[attr-defined, unused-ignore]
        if changes:
            self._kq.control(changes, 0, 0)

    def register(self, fd, mask):
        """Add read/write filters for the bits in ``mask``."""
        if fd in self._masks:
            raise FileExistsError(errno.EEXIST, "already registered")
        self._change(fd, 0, mask)
        self._masks[fd] = mask

    def modify(self, fd, mask):
        """Add or delete filters so ``fd`` matches ``mask``."""
        old = self._masks.get(fd)
        if old is None:
            raise FileNotFoundError(errno.ENOENT, "not registered")
        self._masks[fd] = mask
        self._change(fd, old, mask)

    def unregister(self, fd):
        """Delete every filter on ``fd``."""
        old = self._masks.pop(fd, None)
        if old is None:
            raise FileNotFoundError(errno.ENOENT, "not registered")
        self._change(fd, old, 0)

    def poll(self, timeout):
        """Wait up to ``timeout`` seconds (None: forever); return ``[(fd, bits)]``."""
        size = max(len(self._masks), 1) * 2
        events: "dict[int, int]" = {}
        for kev in self._kq.control(None, size, timeout):
            fd = kev.ident
            bits = events.get(fd, 0)
            if kev.filter == select.KQ_FILTER_READ:  # type: ignore[attr-defined, unused-ignore]
                bits |= EV_IN
            elif kev.filter == select.KQ_FILTER_WRITE:  # type: ignore[attr-defined, unused-ignore]
                bits |= EV_OUT
            if kev.flags & select.KQ_EV_EOF:  # type: ignore[attr-defined, unused-ignore]
                bits |= EV_HUP
            if kev.flags & select.KQ_EV_ERROR:  # type: ignore[attr-defined, unused-ignore]
                bits |= EV_ERR
            events[fd] = bits
        return list(events.items())

    def close(self):
        """Close the kqueue descriptor."""
        self._kq.close()


BACKENDS = {
    "epoll": EpollPoller,
    "kqueue": KqueuePoller,
    "poll": PollPoller,
    "select": SelectPoller,
}
_PREFERENCE = ("epoll", "kqueue", "poll", "select")


_AVAILABLE = tuple(name for name in _PREFERENCE if hasattr(select, name))


def available_backends():
    """Names of the backends this platform supports, best first."""
    return list(_AVAILABLE)


def best_backend():
    """The backend used when none is chosen."""
    return _AVAILABLE[0]


def make_poller(name):
    """A new poller object for backend ``name``."""
    if name not in _AVAILABLE:
        raise ValueError("backend %r is not available here (have: %s)"
                         % (name, ", ".join(available_backends())))
    return BACKENDS[name]()


def _pending_bytes(fd):
    # bytes still readable on fd (0 if unknown): decides whether a hang-up
    # may close the channel yet
    try:
        import fcntl
        import termios
        import struct

        raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", raw)[0]
    except (ImportError, OSError, AttributeError):
        return 0


def _from_class(obj, name):
    # obj.<name> is its class's method, not an instance attribute: checked
    # on the bound method, since reading obj.__dict__ would materialise the
    # instance dict on 3.11+ and slow every attribute access after it
    bound = getattr(obj, name, None)
    return (getattr(bound, "__self__", None) is obj
            and getattr(bound, "__func__", None) is ac_type_lookup(type(obj), name, None))


def _map_get(map, fd):
    """``map.get(fd)``; a plain dict's without the method lookup (the
    compiled build's per-event map reads: the Python build calls get in
    place, a frame less)."""
    if type(map) is dict:
        return cython.cast(dict, map).get(fd)
    return map.get(fd)


def _report_exception(where):
    # last resort when even handle_error failed; never raises
    try:
        import traceback  # (not at module level: import time, issue 18)

        sys.stderr.write("asynchat_core: uncaptured exception in %s\n" % (where,))
        traceback.print_exc()
    except Exception:
        pass


# ------------------------------------------------------- dispatcher methods
#
# The hot methods of ``asyncore.dispatcher``, bound into that class (and so
# inherited by ``async_chat``): a request served by the library's own code
# runs no Python frame but the user's handlers.

#: errnos meaning "the peer is gone": they close the channel, not report it
DISCONNECTED = frozenset({errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                          errno.ECONNABORTED, errno.EPIPE, errno.EBADF})


def ssl_wants_io(exc):
    """Whether ``exc`` is a TLS socket's ``SSLWantReadError`` or
    ``SSLWantWriteError``: it needs the peer (or room) before it can go on,
    which means "try later", as ``BlockingIOError`` does.

    ``ssl`` is not imported here (it is a third of the import time, issue
    18): its exception classes come from the C module ``_ssl``, and until
    ``_ssl`` is loaded no socket can be a TLS socket, so nothing can raise
    them.
    """
    ssl = sys.modules.get("_ssl")
    if ssl is None:
        return False
    return isinstance(exc, (getattr(ssl, "SSLWantReadError", ()),
                            getattr(ssl, "SSLWantWriteError", ())))

# send() flag that turns SIGPIPE into EPIPE (Linux, BSD); macOS has none and
# its sockets get SO_NOSIGPIPE instead (asyncore's set_socket)
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_socket_type = socket.socket

# Compiled, the entry points below count their nesting per thread in C
# (ac_nest/ac_unnest, _cbits.pxd): calls between compiled functions run no
# Python frame, so the recursion limit cannot stop a cycle such as a
# handle_read that is dispatcher.handle_read_event.  The check sits where
# Python can call in (a call by name); the library's direct C calls need
# none, since a cycle must pass through a call by name.  ac_nest returns the
# counter's address, so leaving reads no thread-local again.  Python needs no
# such counter: these names are reached only when compiled.
if not cython.compiled:
    def ac_nest():
        return None

    def ac_unnest(nest):
        pass

    def ac_sock_recv(sock, size):
        return None

    def ac_sock_send(sock, data, flags):
        return -2

    def ac_epoll_wait(epfd, ready, timeout):
        return -2

    def ac_ready_fd(ready):
        return -1

    def _compiled_only(*args):
        raise AssertionError("asynchat_core: a compiled-only helper called from Python")

    # compiled: lookups through the per-(class, name) cache (_cbits.pxd);
    # the Python build reads and calls by name in place
    ac_getattr = ac_call0 = ac_acache_fill_count = ac_truth_init = _compiled_only
    ac_method = ac_method_h = ac_callm0 = ac_monotonic = _compiled_only

    _mro_of = type.__dict__["__mro__"].__get__
    _own_dict_of = type.__dict__["__dict__"].__get__

    def ac_type_lookup(cls, name, missing):
        # what an instance's lookup finds in its type: the first own dict
        # along the MRO holding the name (``missing`` if none), read with
        # type's own descriptors so a metaclass's __getattribute__ is not asked
        for klass in _mro_of(cls):
            own = _own_dict_of(klass)
            if name in own:
                return own[name]
        return missing

    def ac_predicates_same(cls, name1, value1, name2, value2):
        return (ac_type_lookup(cls, name1, None) is value1
                and ac_type_lookup(cls, name2, None) is value2)

    def ac_ready_new():
        return None

    def ac_ready_free(ready):
        pass

    def ac_ready_events(ready):
        return 0

    def ac_fd_slot(fd):
        # compiled: _loop_c.pxd's, the same rule in C (AC_FD_SLOTS)
        return fd if type(fd) is int and 0 <= fd < 65536 else -1

if cython.compiled:
    # truth tests of exact deques (what writable() returns) by their
    # length, without PyObject_IsTrue (_cbits.pxd, ac_truth)
    from collections import deque as _deque_type
    ac_truth_init(_deque_type)


def dispatcher_recv(self, buffer_size):
    """Read up to ``buffer_size`` bytes; ``b""`` means the peer went away (closed)."""
    if cython.compiled:
        nest = ac_nest()
    try:
        return sock_recv(self, self.socket, buffer_size)
    finally:
        if cython.compiled:
            ac_unnest(nest)


def sock_recv(chan, sock, buffer_size):
    """``dispatcher_recv`` on ``sock`` given (``chan.socket`` not read again)."""
    while True:
        try:
            if cython.compiled and type(sock) is _socket_type:
                # a plain non-blocking socket: recv(2) into a reused
                # buffer, the method's errors (_cbits.pxd); else None
                data = ac_sock_recv(sock, buffer_size)
                if data is None:
                    data = sock.recv(buffer_size)
            else:
                data = sock.recv(buffer_size)
            break
        except InterruptedError:
            continue  # a wrapped socket may not retry EINTR itself
        except OSError as why:
            # some platforms report a vanished peer as ENOTCONN
            if why.errno in DISCONNECTED:
                chan.handle_close()
                return b""
            raise
    if not data:
        # readable with nothing to read: the peer closed
        chan.handle_close()
        return b""
    return data


def dispatcher_send(self, data):
    """Send what the socket takes now; return the byte count (0 if it would block)."""
    if cython.compiled:
        nest = ac_nest()
    try:
        return sock_send(self, self.socket, data)
    finally:
        if cython.compiled:
            ac_unnest(nest)


def sock_send(chan, sock, data):
    """``dispatcher_send`` on ``sock`` given (``chan.socket`` not read again)."""
    while True:
        try:
            if type(sock) is _socket_type and _MSG_NOSIGNAL:
                # a reset peer must not kill the process even where SIGPIPE
                # has its default action (plain sockets only: SSL sockets
                # and file wrappers take no flags)
                if cython.compiled:
                    # send(2) itself, the method's errors (_cbits.pxd)
                    sent = ac_sock_send(sock, data, _MSG_NOSIGNAL)
                    if sent != -2:
                        return sent
                return sock.send(data, _MSG_NOSIGNAL)
            return sock.send(data)
        except InterruptedError:
            continue  # a wrapped socket may not retry EINTR itself
        except BlockingIOError:
            return 0
        except OSError as why:
            if why.errno == errno.EWOULDBLOCK or ssl_wants_io(why):
                return 0
            if why.errno in DISCONNECTED:
                chan.handle_close()
                return 0
            raise


def dispatcher_readable(self):
    """Whether the loop should watch for input (always, by default)."""
    return True


def dispatcher_writable(self):
    """Whether the loop should watch for writability (always, by default)."""
    return True


def dispatcher_handle_read_event(self):
    """The loop saw input: accept, finish a connect, or read."""
    if cython.compiled:
        nest = ac_nest()
    try:
        if cython.compiled:  # (the lookup cache, _cbits.pxd)
            accepting = ac_getattr(self, "accepting")
        else:
            accepting = self.accepting
        if accepting:
            # a listening socket spawns connected sockets instead of reading
            self.handle_accept()
        elif not (ac_getattr(self, "connected") if cython.compiled else self.connected):
            if self.connecting:
                self.handle_connect_event()
            self.handle_read()
        elif cython.compiled:
            _call_own(self, cython.address(_own_read))
        else:
            self.handle_read()
    finally:
        if cython.compiled:
            ac_unnest(nest)


# Compiled, the loop calls the library's own handle_read_event, and that
# the library's own handle_read, and the interest sync the library's own
# readable and writable (async_chat's, which _chat_c registers with
# set_read_kernel), as C functions, when the lookup that the call by name
# makes finds exactly them on the channel's class (issue 18: each call by
# name cost about 120 instructions of vectorcall and argument parsing).
# The lookup is the same (ac_method: the instance, then the class), so an
# override, an instance attribute or a __getattribute__ is called as
# before.  The Python build calls by name in place and never comes here.
_own_read_event = dispatcher_handle_read_event
if not cython.compiled:
    # (C records and macros in the compiled build, _loop_c.pxd; named here
    # for the type checker, never reached by the Python build)
    _own_read = _own_readable = _own_writable = None  # type: Any
    ac_own_set = ac_own_method = ac_own_found = ac_own_call = _compiled_only
    ac_list_empty = _compiled_only


def set_read_kernel(func, kernel, readable, readable_kernel, writable, writable_kernel):
    """(compiled only) Run ``func`` (a ``handle_read``), ``readable`` and
    ``writable`` as the C functions given with them."""
    ac_own_set(cython.address(_own_read), "handle_read", func, kernel)
    ac_own_set(cython.address(_own_readable), "readable", readable, readable_kernel)
    ac_own_set(cython.address(_own_writable), "writable", writable, writable_kernel)


if cython.compiled:
    # the names, before any channel: until _chat_c registers its functions,
    # the three are called by name
    set_read_kernel(None, cython.NULL, None, cython.NULL, None, cython.NULL)


def _call_own(obj, own):
    # compiled only: obj.<name>() for one of the three records above (the
    # name, the Python function the lookup must find, the C function to
    # run then, the lookup cache's slot of that name's calls): the C
    # function when the lookup finds exactly the library's own function,
    # else what it finds, called
    unbound = 0  # (ac_own_method sets it)
    meth = ac_own_method(obj, own, cython.address(unbound))
    if unbound and ac_own_found(meth, own):
        return ac_own_call(obj, own)
    return ac_callm0(meth, unbound, obj)


def _clock():
    # compiled only: _monotonic(), the pass's time after the wait.  While
    # _monotonic is time.monotonic itself, read in C on Linux: the clock
    # CPython reads there (CLOCK_MONOTONIC), converted as it converts it, so
    # the value is the one time.monotonic() would give and compares exactly
    # with the deadlines call_later computed with it (issue 18: about 180
    # instructions a pass less than the call).  A _monotonic replaced (a
    # fake clock in a test) is called, as everywhere else in the loop.
    mono = _monotonic
    if mono is _time_monotonic:
        now = ac_monotonic()
        if now >= 0.0:
            return now
    return mono()


def dispatcher_handle_write_event(self):
    """The loop saw the socket writable: finish a connect, then write."""
    if cython.compiled:
        nest = ac_nest()
    try:
        if self.accepting:
            return  # spurious for a listening socket: ignore it
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_write()
    finally:
        if cython.compiled:
            ac_unnest(nest)


# ------------------------------------------------------------------ timers

class TimerHandle:
    """A scheduled call; ``cancel()`` it to drop it."""

    __slots__ = ("when", "seq", "callback", "args", "cancelled", "keepalive", "queue")

    def __init__(self, when, seq, callback, args, keepalive, queue):
        self.when = when
        self.seq = seq
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.keepalive = keepalive
        self.queue = queue

    def __lt__(self, other):
        if self.when != other.when:
            return self.when < other.when
        return self.seq < other.seq

    def cancel(self):
        """Stop the call from happening; harmless if it already ran."""
        if not self.cancelled:
            self.cancelled = True
            queue = self.queue
            if queue is not None:
                self.queue = None
                queue._discarded(self)

    def __repr__(self):
        state = "cancelled" if self.cancelled else "at %.3f" % self.when
        return "<TimerHandle %s %r>" % (state, self.callback)


class TimerQueue:
    """A heap of ``TimerHandle``s on the monotonic clock.

    ``live`` counts pending handles that keep ``loop()`` running (user
    timers; idle watches do not keep a loop alive on their own).
    """

    def __init__(self):
        self._heap = []
        self.seq = 0
        self.live = 0

    @property
    def heap(self):
        """The pending handles, a heap (read-only: compiled code trusts it is a list)."""
        return self._heap

    def call_at(self, when, callback, args=(), keepalive=True):
        """Schedule ``callback(*args)`` at monotonic time ``when``; return its handle."""
        self.seq += 1
        handle = TimerHandle(when, self.seq, callback, args, keepalive, self)
        if heapq is None:
            _load_heapq()  # type: ignore[unreachable]
        heapq.heappush(self._heap, handle)
        if keepalive:
            self.live += 1
        return handle

    def call_later(self, delay, callback, args=(), keepalive=True):
        """Schedule ``callback(*args)`` ``delay`` seconds from now; return its handle."""
        return self.call_at(_monotonic() + delay, callback, args, keepalive)

    def _discarded(self, handle):
        if handle.keepalive:
            self.live -= 1
        heap = self._heap
        # cancelled handles are popped lazily; compact if they dominate
        if len(heap) > 64 and self.live * 2 < len(heap):
            self._heap = [h for h in heap if not h.cancelled]
            heapq.heapify(self._heap)

    def pending(self):
        """True if a user timer is still due to run."""
        return self.live > 0

    def wait_time(self, timeout, now):
        """How long a pass may sleep: ``timeout`` cut short by the next timer."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        if not heap:
            return timeout
        delay = heap[0].when - now
        if delay < 0.0:
            delay = 0.0
        # (a negative timeout waits without limit, as poll()'s does: the
        # next timer still cuts it short)
        if timeout is None or timeout < 0 or delay < timeout:
            return delay
        return timeout

    def run_due(self, now, reraised):
        """Run the handles due by ``now`` (not ones they schedule)."""
        heap = self._heap
        due = []
        while heap and (heap[0].cancelled or heap[0].when <= now):
            handle = heapq.heappop(heap)
            if not handle.cancelled:
                due.append(handle)
        for handle in due:
            if handle.cancelled:
                continue  # cancelled by an earlier callback of this batch
            handle.cancelled = True
            handle.queue = None
            if handle.keepalive:
                self.live -= 1
            try:
                handle.callback(*handle.args)
            except reraised:
                raise
            except BaseException:
                self.report_error(handle)

    def report_error(self, handle):
        """Called when a timer callback raised; the loop carries on."""
        _report_exception("timer callback %r" % (handle.callback,))

    def clear(self):
        """Cancel and drop every pending timer."""
        for handle in self._heap:
            handle.cancelled = True
            handle.queue = None
        self._heap = []
        self.live = 0


#: whether any IdleWatch exists yet: until then Loop._add looks for none
_watches_made = False
_object_getattribute = object.__getattribute__


def _watch_of(obj):
    # the channel's idle watch (set_idle_timeout stores it on the channel),
    # read without the user's __getattribute__/__getattr__: CPython's
    # asyncore asks a channel for no such name, so its hooks must not see it
    if not _watches_made:
        return None
    try:
        return _object_getattribute(obj, "_idle_watch")
    except AttributeError:
        return None


class IdleWatch:
    """Per-channel idle timeout: see ``asyncore.set_idle_timeout``."""

    __slots__ = ("channel", "timeout", "callback", "last", "handle")

    def __init__(self, channel, timeout, callback, now):
        global _watches_made
        _watches_made = True
        self.channel = channel
        self.timeout = timeout
        self.callback = callback
        self.last = now
        self.handle = None


# -------------------------------------------------------------------- loop

if not cython.compiled:
    _get_ident = _thread.get_ident  # compiled: PyThread_get_thread_ident


class _RLock:
    """A reentrant lock whose waiters get it in arrival order.

    Reentrant because a handler closes channels (``forget``) and may run a
    nested ``loop()``; first come first served because a thread that loops
    without pause releases and retakes the pass lock within microseconds,
    and would otherwise starve a second thread's ``loop()``.  A releasing
    thread hands the lock straight to the oldest waiter, which sleeps on a
    "baton" (a ``threading.Lock`` taken at once, released by the hand-over);
    waiting releases the GIL, and a signal still reaches its handler
    (KeyboardInterrupt) meanwhile.

    Compiled, the state is plain C fields changed only while holding the
    GIL with no Python code in between, so taking a free lock costs no
    Python call.  As Python, ``_taken`` (a ``threading.Lock``) is what says
    "held", and a thread arriving in the instant between a release and its
    hand-over may take the lock first; its own release hands it on.
    """

    def __init__(self):
        self._held = False  # compiled: someone owns this lock
        self._owner = 0
        self._depth = 0
        self._queue = []  # the batons of the waiting threads, oldest first
        self._mutex = _thread.allocate_lock()  # guards the queue when waiting
        self._taken = None if cython.compiled else _thread.allocate_lock()  # Python: "held"

    def acquire(self):
        """Wait for the lock (reentrant); returns True."""
        if not cython.compiled:
            # try_acquire() inline: a Python call less, 3 per loop pass
            # (issue 18: the Python build must not cost more than the stdlib)
            me = _get_ident()
            if self._depth and self._owner == me:
                self._depth += 1
                return True
            if self._taken.acquire(False):  # type: ignore[union-attr]
                self._owner = me
                self._depth = 1
                return True
            return self._wait()
        return self.try_acquire() or self._wait()

    def try_acquire(self):
        """Take the lock if that needs no wait (reentrant); True if taken."""
        me = _get_ident()
        if self._depth and self._owner == me:
            self._depth += 1
            return True
        if cython.compiled:
            if self._held:
                return False
            self._held = True  # (no Python code ran since the test)
        elif not self._taken.acquire(False):  # type: ignore[union-attr]
            return False
        self._owner = me
        self._depth = 1
        return True

    def _wait(self):
        me = _get_ident()
        baton = _thread.allocate_lock()
        baton.acquire()
        with self._mutex:
            self._queue.append(baton)
            # Python: tried again once queued (a release just before did
            # not see us; compiled, the GIL orders the two)
            if not cython.compiled and self._taken.acquire(False):  # type: ignore[union-attr]
                self._queue.remove(baton)
                self._owner = me
                self._depth = 1
                return True
        try:
            baton.acquire()  # released by the thread handing the lock over
        except BaseException:  # a signal handler raised while we waited
            with self._mutex:
                handed = baton not in self._queue
                if not handed:
                    self._queue.remove(baton)
            if handed:  # it arrived anyway: pass it on
                self._owner = me
                self._depth = 1
                self.release()
            raise
        self._owner = me
        self._depth = 1
        return True

    def release(self):
        """Undo one ``acquire()``; RuntimeError if not held by this thread."""
        if not self._depth or self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._depth -= 1
        if self._depth:
            return
        self._owner = 0
        if cython.compiled:
            if self._queue:
                self._queue.pop(0).release()  # still held: theirs now
            else:
                self._held = False
        else:
            self._taken.release()  # type: ignore[union-attr]
            if self._queue:
                self._hand_over()

    def _hand_over(self):
        # Python: to the oldest waiter, unless a newcomer took the lock
        # meanwhile (then its release hands it on)
        with self._mutex:
            if self._queue and self._taken.acquire(False):  # type: ignore[union-attr]
                self._queue.pop(0).release()  # still taken: theirs now

    def _is_owned(self):
        return self._depth > 0 and self._owner == _get_ident()

    def waiting(self):
        """How many threads are queued for the lock (tests wait on this)."""
        return len(self._queue)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


if not cython.compiled:
    class _Guard(_thread.RLock):  # type: ignore[misc]
        """The Python build's ``guard``: ``_thread.RLock`` itself, so that a
        pass takes and releases it without a Python frame (issue 18: the
        Python build pays about 320 instructions per call, and a pass takes
        the guard twice).  Arrival order does not matter here as it does for
        the pass lock: the passes that take the guard already hold ``lock``,
        ``forget()`` never waits for it, and only a ``close()`` can queue
        behind a pass.  Compiled, the guard is an ``_RLock``, whose free
        acquire is C code already."""

        __slots__ = ()

        def try_acquire(self):
            """Take the lock if that needs no wait (reentrant); True if taken."""
            return self.acquire(False)


class Entry:
    """What the loop knows about the channel registered at one fd."""

    __slots__ = ("fd", "obj", "cls", "kmask", "polled", "always", "closed_once",
                 "watch", "pause", "muted")

    def __init__(self, fd, obj):
        self.fd = fd
        self.obj = obj
        self.cls = None         # type(obj) when polled was decided (its _Kind's)
        self.kmask = 0          # interest the kernel has now
        self.polled = False     # readable()/writable() asked every pass
        self.always = False     # not pollable (regular file): always ready
        self.closed_once = False
        self.watch = None
        # accept() back-off (_Pause), made by the first one: only a
        # listening socket out of descriptors has one (conn_memory: the
        # entry of a quiet connection is two fields smaller)
        self.pause = None
        # the interest at which a hang-up was seen that select() would not
        # report (use_poll=False): kept out of the kernel while unchanged
        self.muted = 0
        # compiled only, a C field (False at first): the fd is in the loop's
        # _queued list.  Not a slot here: the Python build adds to the set.


class _Pause:
    """An entry's accept() back-off: ``until`` (0.0: reading is not paused),
    the current ``backoff`` and the timer that will ``resume`` reading."""

    __slots__ = ("until", "backoff", "resume")

    def __init__(self):
        self.until = 0.0
        self.backoff = 0.0
        self.resume = None


class _Kind:
    """What the loop decided for one class it serves: whether its instances
    are asked readable()/writable() every pass, and the predicates that
    decision saw (compared every pass: a class patch changes them)."""

    __slots__ = ("cls", "readable", "writable", "polled", "count")

    def __init__(self, cls):
        self.cls = cls
        self.readable = None
        self.writable = None
        self.polled = True
        self.count = 0          # entries of this class; dropped at zero


if not cython.compiled:
    _type_getattribute = type.__getattribute__

    def _probe(cls):
        # readable/writable as the type's own lookup gives them (a metaclass's
        # __getattribute__ is not asked): one C call each, for the per-pass
        # check; compiled, ac_predicates_same (the type's method cache) does it
        try:
            return _type_getattribute(cls, "readable"), _type_getattribute(cls, "writable")
        except AttributeError:
            return ac_type_lookup(cls, "readable", None), ac_type_lookup(cls, "writable", None)


# Compiled, a method argument typed Entry (the cpdef methods of Loop) also
# accepts None, and C code must not read fields of None: each checks.
_NO_ENTRY = "an Entry is required, not None"


class Loop:
    """The persistent event loop of one socket map.

    ``known_readable``/``known_writable`` are the library's own predicate
    functions (state-driven channels); ``reraised`` the exceptions that
    leave the loop; ``disconnected`` the errnos that mean "peer gone".

    Thread rules (see the module docstring): ``lock`` serialises passes,
    ``guard`` protects the loop's state and is released only for the
    kernel wait, ``users`` counts the threads inside ``run()`` and
    ``close()`` waits for it to drop to zero (``close_pending``).
    """

    # Read-only views: the compiled methods rely on these fields' types and
    # call the locks' C methods, so Python may read them, never replace them.

    @property
    def entries(self):
        """fd -> ``Entry`` of every channel the loop knows."""
        return self._entries

    @property
    def polled(self):
        """fd -> ``Entry`` of the channels asked every pass."""
        return self._polled

    @property
    def always(self):
        """fd -> ``Entry`` of the channels that cannot be polled (always ready)."""
        return self._always

    @property
    def kinds(self):
        """class -> its ``_Kind`` (whether its instances are polled), for
        the classes of the channels the loop serves."""
        return self._kinds

    @property
    def dirty(self):
        """fds to look at again on the next pass."""
        return self._dirty

    @property
    def lock(self):
        """Held for a whole pass."""
        return self._lock

    @property
    def guard(self):
        """Held for a pass but its kernel wait."""
        return self._guard

    @property
    def users(self):
        """How many threads are inside ``run()``."""
        return self._users

    @property
    def closed(self):
        """Whether the kernel object is released."""
        return self._closed

    @property
    def close_pending(self):
        """Whether the last thread leaving ``run()`` closes the loop."""
        return self._close_pending

    def __cinit__(self, *args, **kwargs):
        # compiled only (Python never calls it): Loop.__new__(Loop) must not
        # leave the locks None, their C methods are called directly
        self._new_locks()

    def __init__(self, map, backend, timers, known_readable, known_writable,
                 reraised, disconnected):
        self.map = map
        self.backend = backend
        self.poller = make_poller(backend)
        self.timers = timers
        self.known_readable = known_readable
        self.known_writable = known_writable
        self.reraised = reraised
        self.disconnected = disconnected
        self._entries = {}
        self._by_fd = []
        self._queued = []  # (compiled only: the dispatch's dirty fds, _flush)
        self._polled = {}
        self._always = {}
        self._dirty = set()
        self._kinds = {}
        self.generation = _fork_generation
        self.rebuild_needed = False
        self.next_sweep = 0.0
        # loop(use_poll=True): CPython's poll2() semantics (hang-up calls
        # handle_close); else its select() semantics.  Set by _runner.
        self.poll_mode = False
        self._closed = False
        self.passes = 0
        if not cython.compiled:
            self._new_locks()

    def _new_locks(self):
        self._lock = _RLock()    # held for a whole pass
        # held for a pass but its kernel wait
        self._guard = _RLock() if cython.compiled else _Guard()
        self._life = _RLock()   # users/closed; never held around a call
        self._users = 0
        self._close_pending = False

    # ---- notifications from dispatcher/async_chat (cheap, any time)

    def note(self, fd):
        """The map entry at ``fd`` may have changed: look again next pass."""
        self._dirty.add(fd)

    def forget(self, fd, obj):
        """``obj`` is leaving the map: drop its kernel interest while its
        descriptor is still open (epoll cannot forget a closed one).

        Afterwards ``obj`` gets no further event.  From another thread
        during a dispatch this does not wait for the dispatch (a handler
        may be waiting for this very thread): it unhooks the entry, and the
        dispatching thread drops the kernel interest at its next pass."""
        guard = self._guard
        self._dirty.add(fd)
        # (in a forked child before its first pass the kernel set is the
        # parent's: unhook only, the child's own is built from the map)
        if self.generation != _fork_generation or not guard.try_acquire():
            entry = self._entries.get(fd)
            if entry is not None and entry.obj is obj:
                entry.obj = None  # the dispatch skips it from now on
                entry.watch = None
            return
        try:
            entry = self._entries.get(fd)
            if entry is not None and entry.obj is obj:
                entry.obj = None  # events later in this pass are not for it
                entry.watch = None
                self._set_kernel(entry, 0)
        finally:
            guard.release()

    def touch(self, fd, obj):
        """``obj`` changed state that its interest depends on (push...)."""
        entry = self._entries.get(fd)
        if entry is not None and entry.obj is obj:
            watch = entry.watch
            if watch is not None:
                watch.last = _monotonic()
        self._dirty.add(fd)

    def set_watch(self, fd, obj, watch):
        """Attach an idle ``watch`` to the entry of ``obj`` on ``fd`` (None detaches)."""
        entry = self._entries.get(fd)
        if entry is not None and entry.obj is obj:
            entry.watch = watch

    # ---- life: run() entries and deferred close

    def enter(self):
        """Count the calling thread in ``users``; False if already closed."""
        life = self._life
        life.acquire()
        try:
            if self._closed:
                return False
            self._users += 1
            return True
        finally:
            life.release()

    def leave(self):
        """Undo ``enter()``; the last thread out performs a deferred close."""
        life = self._life
        life.acquire()
        try:
            self._users -= 1
            release = self._users == 0 and self._close_pending
            if release:
                self._closed = True
        finally:
            life.release()
        if release:
            self._release()

    def close(self):
        """Release the kernel object; the map is left as it is.

        While a thread is inside ``run()`` the loop keeps serving and the
        close is left to the last thread leaving.  True if closed now."""
        life = self._life
        life.acquire()
        try:
            if self._closed:
                return True
            if self._users:
                self._close_pending = True
                return False
            self._closed = True
        finally:
            life.release()
        self._release()
        return True

    def _release(self):
        # closed is set and nobody is inside: only forget() can still be
        # here, and it checks closed under the guard
        guard = self._guard
        guard.acquire()
        try:
            self.poller.close()
            self._entries.clear()
            del self._by_fd[:]
            self._polled.clear()
            self._always.clear()
            self._kinds.clear()
        finally:
            guard.release()

    # ---- kernel interest

    def _set_kernel(self, entry, mask):
        if entry is None:
            raise TypeError(_NO_ENTRY)
        old = entry.kmask
        if mask == old or self._closed:
            return
        if entry.muted:
            if mask == entry.muted:
                return  # still hung up, and still asking for what it asked
            entry.muted = 0
        fd = entry.fd
        if entry.always:
            entry.kmask = mask
            if mask:
                self._always[fd] = entry
            else:
                self._always.pop(fd, None)
            return
        try:
            if not old:
                self.poller.register(fd, mask)
            elif not mask:
                self.poller.unregister(fd)
            else:
                self.poller.modify(fd, mask)
        except OSError as err:
            code = err.errno
            if code == errno.EPERM:
                # epoll refuses regular files; poll/select call them ready
                entry.always = True
                entry.kmask = mask
                if mask:
                    self._always[fd] = entry
                return
            if code == errno.EEXIST:
                self.poller.modify(fd, mask)
            elif code in _FD_GONE_ERRNOS:
                # the descriptor was closed behind our back; a dup of it
                # could still be registered, so start the kernel set afresh
                # (before the next wait: a stale registration reports its
                # events under the fd number of whoever reuses it)
                entry.kmask = 0
                self.rebuild_needed = True
                if mask:
                    self._dirty.add(fd)
                return
            else:
                raise
        entry.kmask = mask

    def _rebuild(self):
        self.rebuild_needed = False
        if self._closed:
            return
        self.poller.close()
        self.poller = make_poller(self.backend)
        map = self.map
        for entry in list(self._entries.values()):
            mask = entry.kmask
            if mask and not entry.always:
                entry.kmask = 0
                obj = entry.obj
                if obj is None or map.get(entry.fd) is not obj:
                    # closed by another thread since the last flush: its fd
                    # may be anyone's now, even the new poller's own; the
                    # next flush drops the entry
                    self._dirty.add(entry.fd)
                    continue
                self._set_kernel(entry, mask)

    # ---- interest of one channel

    def _judge(self, kind):
        # record the class's predicates now, and whether they are the
        # library's own (state-driven: asked only when the state changes)
        if kind is None:
            raise TypeError("a _Kind is required, not None")
        cls = kind.cls
        if cython.compiled:
            kind.readable = ac_type_lookup(cls, "readable", None)
            kind.writable = ac_type_lookup(cls, "writable", None)
        else:
            kind.readable, kind.writable = _probe(cls)
        kind.polled = not (ac_type_lookup(cls, "readable", None) in self.known_readable
                           and ac_type_lookup(cls, "writable", None) in self.known_writable)

    def _bind(self, entry, obj):
        """Decide whether ``entry`` (serving ``obj``) is polled, from its
        class's ``_Kind`` and its instance attributes."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        self._unbind(entry)
        cls = type(obj)
        kind = self._kinds.get(cls)
        if kind is None:
            kind = _Kind(cls)
            self._judge(kind)
            self._kinds[cls] = kind
        kind.count += 1
        entry.cls = cls
        polled = kind.polled
        if not polled and not (_from_class(obj, "readable") and _from_class(obj, "writable")):
            polled = True  # an instance attribute overrides a predicate
        entry.polled = polled

    def _unbind(self, entry):
        if entry is None:
            raise TypeError(_NO_ENTRY)
        cls = entry.cls
        if cls is None:
            return
        entry.cls = None
        kind = self._kinds.get(cls)
        if kind is not None:
            kind.count -= 1
            if kind.count <= 0:
                del self._kinds[cls]

    def _rebind(self, entry):
        # the channel's class, or its class's predicates, changed: decide
        # again, and move the entry in or out of the polled set
        if entry is None:
            raise TypeError(_NO_ENTRY)
        obj = entry.obj
        if obj is None:
            return
        self._bind(entry, obj)
        fd = entry.fd
        if entry.polled:
            if self._entries.get(fd) is entry:
                self._polled[fd] = entry
        else:
            if self._polled.get(fd) is entry:
                del self._polled[fd]
            self._dirty.add(fd)  # its interest is asked at the next flush

    def _reclass(self, changed):
        # classes whose readable/writable now resolve to something else (a
        # class patch, on it or on a base): decide again for their entries
        kinds = []
        for kind in changed:
            readable = kind.readable
            writable = kind.writable
            self._judge(kind)
            if not cython.compiled and readable == kind.readable and writable == kind.writable:
                continue  # a fresh but equal object (a classmethod's bound method)
            kinds.append(kind.cls)
        if not kinds:
            return
        for entry in list(self._entries.values()):
            if entry.cls in kinds:
                self._rebind(entry)

    def _interest(self, entry, now):
        """Ask the channel what it wants; returns a kernel mask."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        obj = entry.obj
        if entry.closed_once or obj is None:
            return 0
        try:
            if cython.compiled:  # (the lookup cache, _cbits.pxd; the library's own as C calls)
                wants_read = _call_own(obj, cython.address(_own_readable))
                wants_write = _call_own(obj, cython.address(_own_writable))
            else:
                wants_read = obj.readable()
                wants_write = obj.writable()
            mask = 0
            pause = entry.pause
            if wants_read and (pause is None or pause.until <= now):
                mask = _WANT_READ
            if wants_write and not (ac_getattr(obj, "accepting") if cython.compiled
                                    else obj.accepting):
                if self.poll_mode:
                    mask |= _WANT_WRITE
                else:
                    mask |= _WANT_WRITE_EXPT
            return mask
        except self.reraised:
            raise
        except BaseException:
            self._fail(obj, entry.fd)
            return 0

    def _add(self, fd, obj):
        entry = Entry(fd, obj)
        self._bind(entry, obj)
        watch = _watch_of(obj)
        if watch is not None and watch.channel is obj:
            entry.watch = watch
        self._entries[fd] = entry
        slot = ac_fd_slot(fd)
        if slot >= 0:
            by_fd = self._by_fd
            if slot >= len(by_fd):
                by_fd.extend([None] * (slot + 1 - len(by_fd)))
            by_fd[slot] = entry
        if entry.polled:
            self._polled[fd] = entry
        return entry

    def _drop(self, entry):
        fd = entry.fd
        self._unbind(entry)
        self._set_kernel(entry, 0)
        pause = entry.pause
        if pause is not None and pause.resume is not None:
            pause.resume.cancel()
            pause.resume = None
        if self._entries.get(fd) is entry:
            del self._entries[fd]
        slot = ac_fd_slot(fd)
        if 0 <= slot < len(self._by_fd) and self._by_fd[slot] is entry:
            self._by_fd[slot] = None
        self._polled.pop(fd, None)
        self._always.pop(fd, None)

    def _flush(self, now):
        # other threads add to dirty without a lock (note, touch)
        dirty = self._dirty
        if cython.compiled:
            by_fd = self._by_fd
            if not dirty:
                # only the fds the dispatch queued (the common pass): the
                # list itself, each fd once (Entry.queued); swapped for the
                # spare one as the set is below
                todo = self._queued  # type: Any  # (a list here, a set below)
                spare_list = self._spare_queued  # type: ignore[has-type]  # (compiled only)
                self._spare_queued = None
                if spare_list is None:
                    spare_list = []
                self._queued = spare_list
            else:
                # the queued fds join the set: each fd once
                queued = self._queued
                if queued:
                    dirty.update(queued)
                    del queued[:]
                # they add in one step under the GIL: none can still hold
                # the set taken out, so swapping is safe.  The set of the
                # previous flush, emptied, is the new one: no set made per
                # pass (a nested pass's flush, which finds none spare,
                # makes one)
                todo = dirty
                spare = self._spare  # type: ignore[has-type]  # (compiled only: a C field)
                self._spare = None
                if spare is None:
                    spare = set()
                self._dirty = spare
        else:
            # in Python one may still hold it after a swap: work on a
            # snapshot and remove exactly it, never iterate the live set
            todo = list(dirty)
            dirty.difference_update(todo)
        map = self.map
        entries = self._entries
        for fd in todo:
            if cython.compiled:
                obj = _map_get(map, fd)
                # the fd's slot first: a list index, not a dict lookup
                # (_by_fd); the dict for an fd that has none
                entry = None
                slot = ac_fd_slot(fd)
                if 0 <= slot < len(by_fd):
                    entry = by_fd[slot]
                if entry is None:
                    entry = entries.get(fd)
                if entry is not None:
                    entry.queued = False  # (queued again by a dispatch)
            else:
                obj = map.get(fd)
                entry = entries.get(fd)
            if entry is not None and (entry.obj is None or entry.obj is not obj):
                self._drop(entry)
                entry = None
            if obj is None:
                continue
            if entry is None:
                entry = self._add(fd, obj)
            elif entry.cls is not type(obj):
                self._rebind(entry)  # a __class__ swap
            if not entry.polled:
                # (the fd a request was read on is dirty at the next pass)
                mask = self._interest(entry, now)
                if mask != entry.kmask:  # (_set_kernel's own first test)
                    self._set_kernel(entry, mask)
        if cython.compiled:
            if type(todo) is set:
                cython.cast(set, todo).clear()
                self._spare = todo
            else:
                ac_list_empty(todo)
                self._spare_queued = todo

    def _resync(self, now):
        # direct edits of the map, or a direct producer_fifo.append: look
        # at everything once (bounded by SWEEP_INTERVAL or a size change)
        self.next_sweep = now + SWEEP_INTERVAL
        dirty = self._dirty
        dirty.update(self.map)  # one C call: the map may grow meanwhile
        dirty.update(self._entries)
        self._flush(now)

    # ---- error paths

    def _fail(self, obj, fd):
        """An exception escaped a handler: handle_error, and if that fails
        too, close the channel so it cannot fail forever."""
        if obj is None:
            return
        try:
            obj.handle_error()
        except self.reraised:
            raise
        except BaseException:
            _report_exception("handle_error of %r" % (type(obj).__name__,))
            self._force_close(obj, fd)

    def _force_close(self, obj, fd):
        if obj is None:
            return
        try:
            obj.close()
        except self.reraised:
            raise
        except BaseException:
            pass
        map = self.map
        if map.get(fd) is obj:
            try:
                del map[fd]
            except KeyError:  # removed by another thread meanwhile
                pass
            self._dirty.add(fd)
        entry = self._entries.get(fd)
        if entry is not None and entry.obj is obj:
            self._set_kernel(entry, 0)

    def _close_channel(self, entry):
        """The loop's own handle_close call: at most once per channel."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        obj = entry.obj
        fd = entry.fd
        if obj is None:
            return  # forgotten: it closed itself, and its fd is not its own now
        if not entry.closed_once:
            entry.closed_once = True
            try:
                obj.handle_close()
            except self.reraised:
                raise
            except BaseException:
                self._fail(obj, fd)
        if entry.obj is obj and self.map.get(fd) is obj:
            # handle_close kept the channel: stop the hang-up from spinning
            self._set_kernel(entry, 0)

    def _pause_accept(self, entry, now):
        pause = entry.pause
        if pause is None:
            pause = _Pause()
            entry.pause = pause  # kept: the next back-off doubles this one
        backoff = pause.backoff * 2.0
        if backoff < ACCEPT_BACKOFF_MIN:
            backoff = ACCEPT_BACKOFF_MIN
        if backoff > ACCEPT_BACKOFF_MAX:
            backoff = ACCEPT_BACKOFF_MAX
        pause.backoff = backoff
        pause.until = now + backoff
        self._set_kernel(entry, entry.kmask & ~WANT_READ)
        if pause.resume is not None:
            pause.resume.cancel()
        pause.resume = self.timers.call_at(
            pause.until, self._resume_accept, (entry,), False)
        try:
            entry.obj.log_info(
                "accept() failed (out of descriptors); pausing %.2fs" % backoff,
                "warning")
        except self.reraised:
            raise
        except BaseException:
            pass

    def _resume_accept(self, entry):
        pause = entry.pause
        if pause is not None:  # (made before this timer was set)
            pause.resume = None
            pause.until = 0.0
        self._dirty.add(entry.fd)

    def _deliver(self, entry, kind, now):
        """Call one handle_*_event (``kind``: DELIVER_READ/WRITE/EXPT); True
        if the channel is still there."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        obj = entry.obj
        try:
            # method calls by name: no bound method object per event
            if kind == _DELIVER_READ:
                obj.handle_read_event()
            elif kind == _DELIVER_WRITE:
                obj.handle_write_event()
            else:
                obj.handle_expt_event()
        except self.reraised:
            raise
        except BaseException as err:
            self._failed(entry, obj, err, now)
        return entry.obj is obj and self.map.get(entry.fd) is obj

    def _failed(self, entry, obj, err, now):
        """A handle_*_event of ``obj`` raised ``err`` (not one of ``reraised``)."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        if isinstance(err, OSError):
            code = err.errno
            if entry.obj is not obj:
                # it closed itself, then raised: report a failure (as
                # CPython does), but a closed channel has no hang-up to handle
                if code not in self.disconnected:
                    self._fail(obj, entry.fd)
            elif code in ACCEPT_LIMIT_ERRNOS and getattr(obj, "accepting", False):
                self._pause_accept(entry, now)
            elif code in self.disconnected:
                self._close_channel(entry)
            else:
                self._fail(obj, entry.fd)
        else:
            self._fail(obj, entry.fd)

    def _dispatch(self, entry, ev, now):
        """Deliver one fd's events as CPython's select() loop would
        (``loop(use_poll=False)``): read, write, expt; a hang-up or error is
        readability (and writability where select reports it), and the
        handler finds the EOF or the error itself."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        obj = entry.obj
        fd = entry.fd
        if obj is None or not entry.kmask or (
                _map_get(self.map, fd) if cython.compiled else self.map.get(fd)) is not obj:
            return  # closed, or closed and its fd reused, earlier this pass
        watch = entry.watch
        if watch is not None:
            watch.last = now
        if not entry.polled:
            if cython.compiled:
                # queued in a list, not added to the set (issue 18: the
                # set's add, walk and clear cost about 200 instructions a
                # request); _flush treats both alike
                if not entry.queued:
                    entry.queued = True
                    self._queued.append(fd)
            else:
                self._dirty.add(fd)
        kmask = entry.kmask
        delivered = False
        # as Linux's select() would (_SELECT_READ, _SELECT_WRITE)
        if ev & _SELECT_READ and kmask & _IN:
            # _deliver(entry, _DELIVER_READ, now) inline: the event of
            # almost every pass, and a Python frame less in the Python
            # build (issue 18); the failure path is _deliver's own
            try:
                if cython.compiled:
                    # (the lookup cache; the library's own as a C call)
                    unbound = 0  # (ac_method sets it)
                    meth = ac_method(obj, "handle_read_event", cython.address(unbound))
                    if unbound and meth is _own_read_event:
                        dispatcher_handle_read_event(obj)
                    else:
                        ac_callm0(meth, unbound, obj)
                else:
                    obj.handle_read_event()
            except self.reraised:
                raise
            except BaseException as err:
                self._failed(entry, obj, err, now)
            if entry.obj is not obj:
                return  # closed (forget unhooked it), or its entry reused
            pause = entry.pause
            if pause is not None and pause.backoff and pause.until <= now:
                pause.backoff = 0.0
            if not ev & _AFTER_READ:
                return  # a read alone (the common event): nothing more to do
            # more to deliver: CPython's loop gets the fd's channel from the
            # map again for its next list (a handler may have edited the map
            # directly); a read alone needs no such get (issue 18: one map
            # lookup a request less)
            if (_map_get(self.map, fd) if cython.compiled else self.map.get(fd)) is not obj:
                return
            delivered = True
        if ev & _SELECT_WRITE and kmask & _OUT:
            if not self._deliver(entry, _DELIVER_WRITE, now):
                return
            delivered = True
        if ev & _PRI:
            if not self._deliver(entry, DELIVER_EXPT, now):
                return
            delivered = True
        if ev & _NVAL:
            # closed behind our back: select() would raise EBADF out of loop()
            self._close_channel(entry)
        elif not delivered and ev & (_HUP | _ERR):
            # epoll/poll report a hang-up on a channel that asked for neither
            # (readable() False, and no POLLOUT: a pipe's read end): select()
            # would report nothing and sleep.  Stop watching until the
            # channel's interest changes, instead of spinning.
            self._set_kernel(entry, 0)
            entry.muted = kmask

    def _dispatch_poll(self, entry, ev, now):
        """Deliver one fd's events as CPython's poll2()/readwrite() would
        (``loop(use_poll=True)``): read on POLLIN, write on POLLOUT, expt on
        POLLPRI, then handle_close on POLLHUP/POLLERR/POLLNVAL; but
        handle_close at most once, and data that came with the hang-up is
        read first (deviation 5)."""
        if entry is None:
            raise TypeError(_NO_ENTRY)
        obj = entry.obj
        fd = entry.fd
        if obj is None or not entry.kmask or (
                _map_get(self.map, fd) if cython.compiled else self.map.get(fd)) is not obj:
            return  # closed, or closed and its fd reused, earlier this pass
        watch = entry.watch
        if watch is not None:
            watch.last = now
        if not entry.polled:
            if cython.compiled:
                if not entry.queued:  # (as _dispatch)
                    entry.queued = True
                    self._queued.append(fd)
            else:
                self._dirty.add(fd)
        read_done = False
        if ev & _IN and entry.kmask & _IN:
            if not self._deliver(entry, _DELIVER_READ, now):
                return
            read_done = True
            pause = entry.pause
            if pause is not None and pause.backoff and pause.until <= now:
                pause.backoff = 0.0
        if ev & _OUT:
            if not self._deliver(entry, _DELIVER_WRITE, now):
                return
        if ev & _PRI:
            if not self._deliver(entry, DELIVER_EXPT, now):
                return
        if ev & _GONE:
            # a channel that did not read (readable() False) closes now even
            # with unread data: reading it is not what it asked for
            if ev & _NVAL or not read_done or _pending_bytes(fd) <= 0:
                self._close_channel(entry)
            # else: data arrived with the hang-up; read it on the next pass

    # ---- one pass

    def run_once(self, timeout):
        """One pass: sync interest, wait, dispatch, run due timers.

        Holds ``lock`` throughout and ``guard`` except for the kernel wait.
        The common pass (no class patch, a dirty fd or two, no timer, no
        always-ready channel) is one straight path: issue 18, the Python
        build paid a frame each for the interest sync, the event loop and
        the pass lock's acquire and release.  What is uncommon has methods
        of its own."""
        if self.generation != _fork_generation:
            # forked inside a handler, this pass or an earlier one of the
            # same run(): the epoll set is still the parent's (shared across
            # fork), and waiting or registering on it would take the
            # parent's events and change its interest
            self._after_fork()
        # local references: the fork path may replace the attributes
        lock = self._lock
        guard = self._guard
        if cython.compiled:
            lock.acquire()  # C: a free lock costs no Python call
        else:
            # _RLock.acquire inline, its two cases that need no wait: the
            # lock free, or ours already (a nested loop())
            me = _get_ident()
            if lock._depth and lock._owner == me:
                lock._depth += 1
            elif lock._taken.acquire(False):  # type: ignore[union-attr]
                lock._owner = me
                lock._depth = 1
            else:
                lock._wait()
        try:
            guard.acquire()
            try:
                if self._closed:
                    return
                # tell the kernel what changed, and how long the wait may be
                # (compiled: _clock, time.monotonic read in C while it is
                # the module's _monotonic; issue 18, about 50 instructions)
                if cython.compiled:
                    now = _clock()
                else:
                    now = _monotonic()
                self.passes += 1
                # a class patch (of readable/writable, on the class or a
                # base) is seen at the next pass: per class served, not per
                # channel
                if self._kinds:  # (None in a Loop made without __init__: the TypeError below)
                    changed = None
                    for kind in self._kinds.values():
                        if cython.compiled:
                            if ac_predicates_same(kind.cls, "readable", kind.readable,
                                                  "writable", kind.writable):
                                continue
                        else:
                            try:  # (_probe inlined)
                                if (_type_getattribute(kind.cls, "readable") is kind.readable
                                        and _type_getattribute(kind.cls, "writable") is kind.writable):
                                    continue
                            except AttributeError:
                                pass  # a predicate is gone: _judge records None for it
                        if changed is None:
                            changed = []
                        changed.append(kind)
                    if changed is not None:
                        self._reclass(changed)
                if self._dirty or (cython.compiled and self._queued):
                    self._flush(now)
                if len(self.map) != len(self._entries) or now >= self.next_sweep:
                    self._resync(now)
                if self._polled:
                    self._ask_polled(now)
                if self.rebuild_needed:
                    self._rebuild()
                timers = self.timers
                # no timer pending (the common case): no call to ask
                wait = timers.wait_time(timeout, now) if timers._heap else timeout
                if self._always:
                    wait = 0.0
                poller = self.poller
            finally:
                guard.release()
            if cython.compiled:
                # epoll: the events into a C array, no list of tuples
                n = -2
                if type(poller) is EpollPoller:
                    ep = poller
                    n = ep._wait_ready(wait)
                if n < 0:
                    events = poller.poll(wait)
            else:
                events = poller.poll(wait)
            guard.acquire()
            try:
                if not self._closed:  # (only a run_once() outside run() can see it)
                    if cython.compiled and n >= 0:
                        self._process_ready(ep, n)
                    else:
                        # deliver what the wait returned, then the always-ready
                        # and the timers
                        now = _monotonic()
                        entries = self._entries
                        # the caller's mode is chosen once per pass, not per event
                        if self.poll_mode:
                            for fd, ev in events:
                                entry = entries.get(fd)
                                if entry is None:
                                    self._stray(fd)
                                    continue
                                self._dispatch_poll(entry, ev, now)
                        else:
                            for fd, ev in events:
                                entry = entries.get(fd)
                                if entry is None:
                                    self._stray(fd)
                                    continue
                                self._dispatch(entry, ev, now)
                        if self._always or self.timers._heap:
                            self._process_rest(now)
            finally:
                guard.release()
        finally:
            if cython.compiled:
                lock.release()
            elif lock._depth == 1 and lock._owner == me:
                # _RLock.release inline, its last level (the common case)
                lock._depth = 0
                lock._owner = 0
                lock._taken.release()  # type: ignore[union-attr]
                if lock._queue:
                    lock._hand_over()
            else:
                lock.release()

    def _ask_polled(self, now):
        # the polled channels: readable()/writable() every pass, as the
        # stdlib asks them; the kernel is told only about changes
        map = self.map
        for entry in list(self._polled.values()):
            if entry is None:  # (put there from Python)
                raise TypeError(_NO_ENTRY)
            obj = entry.obj
            if obj is not None and map.get(entry.fd) is obj:
                self._set_kernel(entry, self._interest(entry, now))

    def _process_rest(self, now):
        # after the kernel's events: the always-ready channels, then the
        # timers (the callers skip the call when there are neither)
        if self._always:
            for entry in list(self._always.values()):
                if entry is None:
                    raise TypeError(_NO_ENTRY)
                self._dispatch(entry, entry.kmask & (_IN | _OUT), now)
        timers = self.timers
        if timers._heap:
            timers.run_due(_monotonic(), self.reraised)

    def _process_ready(self, ep, n):
        # compiled only: run_once's event loop, over the n events in
        # ep._ready; the array is the poller's, so a nested run_once() polls
        # into a list meanwhile
        now = _clock()
        entries = self._entries
        # fd -> entry by the fd's slot, read afresh at each event (a
        # callback earlier in the batch may have dropped or replaced the
        # entry, or closed the loop, which empties the list); the dict for
        # an fd without one (issue 18: a dict lookup an event less)
        by_fd = self._by_fd
        ep._busy = True
        try:
            if self.poll_mode:
                for i in range(n):
                    fd = ac_ready_fd(ep._ready[i])
                    ev = ac_ready_events(ep._ready[i])
                    entry = by_fd[fd] if 0 <= fd < len(by_fd) else None
                    if entry is None:
                        entry = entries.get(fd)
                    if entry is None:
                        self._stray(fd)
                        continue
                    self._dispatch_poll(entry, ev, now)
            else:
                for i in range(n):
                    fd = ac_ready_fd(ep._ready[i])
                    ev = ac_ready_events(ep._ready[i])
                    entry = by_fd[fd] if 0 <= fd < len(by_fd) else None
                    if entry is None:
                        entry = entries.get(fd)
                    if entry is None:
                        self._stray(fd)
                        continue
                    self._dispatch(entry, ev, now)
        finally:
            ep._busy = False
        timers = self.timers
        if self._always or (cython.cast(TimerQueue, timers)._heap if type(timers) is TimerQueue
                            else timers._heap):  # (the exact class's field, read in C)
            self._process_rest(now)

    def _stray(self, fd):
        # the kernel reports an fd we never registered (a dup'ed, closed
        # channel): drop it, or rebuild the kernel set if it cannot be named
        if self._closed:
            return
        try:
            self.poller.unregister(fd)
        except (OSError, ValueError, LookupError):
            self.rebuild_needed = True

    def _after_fork(self):
        # a forked child shares the parent's epoll/kqueue: get our own; the
        # parent's other threads are gone, so are their holds on our locks
        self.generation = _fork_generation
        if not self._guard._is_owned():  # type: ignore[union-attr]  # (_Guard: RLock's own)
            self._new_locks()
        with self._guard:
            self._rebuild()

    def run(self, timeout, count):
        """``loop()``'s body: passes while there are channels or timers.

        Returns the passes left of ``count`` (None if unbounded); returns at
        once if the loop is closed (the caller then makes a new one)."""
        if self.generation != _fork_generation:
            self._after_fork()
        if not self.enter():
            return count
        try:
            map = self.map
            timers = self.timers
            if count is None:
                while (map or timers.live > 0) and not self._closed:
                    self.run_once(timeout)
            else:
                while (map or timers.live > 0) and count > 0 and not self._closed:
                    self.run_once(timeout)
                    count -= 1
        finally:
            self.leave()
        return count


def lookup_cache_fills():
    """How many records this module's lookup cache has written (0 in the
    Python build): serving more of the same requests must add none."""
    if cython.compiled:
        return ac_acache_fill_count()
    return 0
