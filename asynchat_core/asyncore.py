"""Asynchronous socket channels: a drop-in for CPython 3.11's ``asyncore``.

Every public name, module attribute and behaviour of the 3.11 module is
here, including the names that tests and legacy code patch (``socket``,
``select``, ``time``, ``os``, the errno constants).  Unlike the stdlib
module it emits no DeprecationWarning.  Deliberate deviations are listed in
the README.
"""

import os
import select
import socket
import sys
import time
import warnings
from errno import (
    EAGAIN,
    EALREADY,
    EBADF,
    ECONNABORTED,
    ECONNRESET,  # noqa: F401 (module attribute, as in the stdlib)
    EINPROGRESS,
    EINVAL,
    EISCONN,
    ENOTCONN,
    EPIPE,  # noqa: F401 (module attribute, as in the stdlib)
    ESHUTDOWN,  # noqa: F401 (module attribute, as in the stdlib)
    EWOULDBLOCK,
    errorcode,
)

from . import _runner
from ._impl import loop_impl as _loop_impl
from ._runner import available_backends, call_later, set_idle_timeout

__all__ = [
    "ExitNow", "available_backends", "call_later", "close_all", "compact_traceback", "dispatcher",
    "dispatcher_with_send", "loop", "poll", "poll2", "poll3", "read",
    "readwrite", "set_idle_timeout", "socket_map", "write",
]
if os.name == "posix":
    __all__ += ["file_dispatcher", "file_wrapper"]

# errnos meaning "the peer is gone": they close the channel, not report it
_DISCONNECTED = _loop_impl.DISCONNECTED

socket_map = {}

# send() flag that turns SIGPIPE into EPIPE (Linux, BSD); macOS has none
# and gets SO_NOSIGPIPE on its sockets instead (see set_socket)
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_SO_NOSIGPIPE = getattr(socket, "SO_NOSIGPIPE", None)

# repr() shows the legacy module names, as log lines and tests expect
_LEGACY_MODULE_NAMES = {
    "asynchat_core.asyncore": "asyncore",
    "asynchat_core.asynchat": "asynchat",
}


def _strerror(err):
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        return errorcode.get(err, "Unknown error %s" % err)


class ExitNow(Exception):
    """Raise from a handler to leave ``loop()`` at once."""


_reraised_exceptions = (ExitNow, KeyboardInterrupt, SystemExit)


def read(obj):
    """Deliver a read event to ``obj``, routing failures to handle_error."""
    try:
        obj.handle_read_event()
    except _reraised_exceptions:
        raise
    except:  # noqa: E722 - any error belongs to the channel
        obj.handle_error()


def write(obj):
    """Deliver a write event to ``obj``, routing failures to handle_error."""
    try:
        obj.handle_write_event()
    except _reraised_exceptions:
        raise
    except:  # noqa: E722
        obj.handle_error()


def _exception(obj):
    try:
        obj.handle_expt_event()
    except _reraised_exceptions:
        raise
    except:  # noqa: E722
        obj.handle_error()


def readwrite(obj, flags):
    """Deliver the events of one ``poll()`` result to ``obj``."""
    try:
        if flags & select.POLLIN:
            obj.handle_read_event()
        if flags & select.POLLOUT:
            obj.handle_write_event()
        if flags & select.POLLPRI:
            obj.handle_expt_event()
        if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            obj.handle_close()
    except OSError as e:
        if e.errno in _DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except _reraised_exceptions:
        raise
    except:  # noqa: E722
        obj.handle_error()


def poll(timeout=0.0, map=None):
    """One pass of the loop with ``select.select``."""
    if map is None:
        map = socket_map
    if not map:
        return
    readers, writers, errors = [], [], []
    for fd, obj in list(map.items()):
        wants_read = obj.readable()
        wants_write = obj.writable()
        if wants_read:
            readers.append(fd)
        # a listening socket is never waited on for writing
        if wants_write and not obj.accepting:
            writers.append(fd)
        if wants_read or wants_write:
            errors.append(fd)
    if not (readers or writers or errors):
        time.sleep(timeout)
        return
    readers, writers, errors = select.select(readers, writers, errors, timeout)
    for fds, deliver in ((readers, read), (writers, write), (errors, _exception)):
        for fd in fds:
            obj = map.get(fd)
            if obj is not None:
                deliver(obj)


def poll2(timeout=0.0, map=None):
    """One pass of the loop with ``select.poll``."""
    if map is None:
        map = socket_map
    if timeout is not None:
        timeout = int(timeout * 1000)  # poll() takes milliseconds
    pollster = select.poll()
    if not map:
        return
    for fd, obj in list(map.items()):
        flags = 0
        if obj.readable():
            flags |= select.POLLIN | select.POLLPRI
        if obj.writable() and not obj.accepting:
            flags |= select.POLLOUT
        if flags:
            pollster.register(fd, flags)
    for fd, flags in pollster.poll(timeout):
        obj = map.get(fd)
        if obj is not None:
            readwrite(obj, flags)


poll3 = poll2  # old alias kept for compatibility


# ------------------------------------------------------------------ the loop
#
# loop() runs the map's persistent Loop, kept by _runner (see _loop_py.py):
# interest stays registered in the OS kernel and changes only when it
# changes.  poll()/poll2()/readwrite() above are the stdlib's one-shot
# passes, kept exactly as they were (CPython's own tests call them directly).

#: Backend used when ``loop()`` is given none: a name from
#: ``available_backends()``, ``"legacy"`` (the stdlib's poll()/poll2()
#: passes, bugs included), or None for the best available.
default_backend = None

_runner.reraised = _reraised_exceptions
_register_predicates = _runner.register_predicates
# hooks dispatcher and asynchat call
_loop_note = _runner.loop_note
_loop_forget = _runner.loop_forget
_loop_touch = _runner.loop_touch


def _choose_backend(backend, use_poll):
    if backend is None:
        backend = default_backend
    if backend is None:
        backend = _runner.best_backend()
        if backend == "select" and use_poll and hasattr(select, "poll"):
            backend = "poll"
    return backend


# dispatcher methods that are loop-module functions bound into the class
_IMPL_METHODS = (
    "send", "recv", "readable", "writable", "handle_read_event", "handle_write_event",
)


def _use_impl(module):
    """Switch to the loop module ``module`` (``_loop_py`` or ``_loop_c``):
    dispatcher's hot methods, and the loops and timers made from now on
    (pending timers are dropped); returns the module used before.  For tests
    and benchmarks that compare both builds in one process."""
    global _loop_impl
    previous = _loop_impl
    _loop_impl = module
    for name in _IMPL_METHODS:
        setattr(dispatcher, name, getattr(module, "dispatcher_" + name))
    _runner.use_impl(module)
    _register_own_predicates()  # releases the loops, which know the old ones
    return previous


def _register_own_predicates():
    _register_predicates(readable=dispatcher.readable,
                         writable=(dispatcher.writable, dispatcher_with_send.writable))


def loop(timeout=30.0, use_poll=False, map=None, count=None, backend=None):
    """Serve the channels in ``map`` (default ``socket_map``).

    Runs passes until the map is empty and no timer from ``call_later`` is
    pending, or until ``count`` passes ran.  One pass waits at most
    ``timeout`` seconds (None: until something happens), less when a timer
    is due sooner, then dispatches the ready channels and runs the due
    timers.  With an empty map but pending timers a pass just sleeps until
    the next timer.

    ``backend`` picks the event backend ("epoll", "kqueue", "poll",
    "select", or "legacy" for the stdlib's own passes); None means the
    module's ``default_backend``, else the best available.  ``use_poll``
    keeps its stdlib meaning on every backend: False (the default) gives
    select()'s semantics, where a hang-up is readability and the handler
    finds the EOF itself; True gives poll2()'s, where POLLHUP, POLLERR and
    POLLNVAL call ``handle_close()``.  With no backend chosen it also picks
    poll over select where select would be the best available; the select
    backend sees no hang-up, so there both modes get what select() reports.

    The kernel object (epoll/kqueue) of a map lives while the map has
    channels, across loop() calls, and is released when the map empties.

    Several threads may loop one map: their passes take turns (a pass waits
    for the one in progress, the kernel wait included, to end), so no two
    threads ever dispatch events of that map at once; while one is looping,
    the others use its backend and its ``use_poll``.  Closing a channel from a thread that is not
    looping waits for the dispatch in progress, never for the kernel wait,
    and the channel gets no event after its close() returns.
    """
    if map is None:
        map = socket_map
    name = _choose_backend(backend, use_poll)
    if name == "legacy":
        _legacy_loop(timeout, use_poll, map, count)
        return
    lp = _runner.get_loop(map, name, use_poll)
    count = lp.run(timeout, count)
    # closed before this thread got in (another loop() replaced it): go on
    # with the map's current Loop
    while lp.closed and (map or _runner.timers_pending()) and (count is None or count > 0):
        lp = _runner.get_loop(map, name, use_poll)
        count = lp.run(timeout, count)
    if not map:
        _runner.discard_loop(map)  # nothing registered: keep no descriptor open


def _legacy_loop(timeout, use_poll, map, count):
    # the stdlib's loop: rebuilds the interest set every pass
    if use_poll and hasattr(select, "poll"):
        one_pass = poll2
    else:
        one_pass = poll
    if count is None:
        while map:
            one_pass(timeout, map)
    else:
        while map and count > 0:
            one_pass(timeout, map)
            count = count - 1


class dispatcher:
    """A non-blocking socket wrapped as a channel in a socket map."""

    debug = False
    connected = False
    accepting = False
    connecting = False
    closing = False
    addr = None
    ignore_log_types = frozenset({"warning"})
    #: For a listener: how many accepted connections may be open at once
    #: (None: unlimited, as in CPython); the rest go to handle_refused().
    max_connections = None
    _accepted_socks = None  # sockets accepted under max_connections
    _next_prune = 0.0

    def __init__(self, sock=None, map=None):
        self._map = socket_map if map is None else map
        self._fileno = None
        if not sock:
            self.socket = None
            return
        # the socket may come from a blocking source
        sock.setblocking(False)
        self.set_socket(sock, map)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError as err:
            if err.errno not in (ENOTCONN, EINVAL):
                # broken in an unknown way: do not leave it in the map
                self.del_channel(map)
                raise
            self.connected = False  # a socket that is not connected yet

    def __repr__(self):
        cls = self.__class__
        module = _LEGACY_MODULE_NAMES.get(cls.__module__, cls.__module__)
        parts = [module + "." + cls.__qualname__]
        if self.accepting and self.addr:
            parts.append("listening")
        elif self.connected:
            parts.append("connected")
        if self.addr is not None:
            try:
                parts.append("%s:%d" % self.addr)
            except TypeError:
                parts.append(repr(self.addr))
        return "<%s at %#x>" % (" ".join(parts), id(self))

    def add_channel(self, map=None):
        """Register this channel in ``map`` (default: the channel's own map)."""
        if map is None:
            map = self._map
        map[self._fileno] = self
        _loop_note(map, self._fileno)

    def del_channel(self, map=None):
        """Remove this channel from ``map`` and forget its descriptor."""
        fd = self._fileno
        if map is None:
            map = self._map
        if fd in map:
            _loop_forget(map, fd, self)  # while the fd is still open
            del map[fd]
        self._fileno = None

    def create_socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """Make a new non-blocking socket and adopt it as this channel's socket."""
        self.family_and_type = family, type
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock, map=None):
        """Adopt ``sock`` (already created) and register the channel."""
        self.socket = sock
        self._fileno = sock.fileno()
        if _SO_NOSIGPIPE is not None and not _MSG_NOSIGNAL:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)
            except (OSError, AttributeError, TypeError):
                pass  # not a socket (a mock, a file wrapper)
        self.add_channel(map)

    def set_reuse_addr(self):
        """Set SO_REUSEADDR if the platform allows it."""
        try:
            current = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            self.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR, current | 1
            )
        except OSError:
            pass

    # socket methods
    def listen(self, num):
        """Mark the channel as a listener and start accepting connections."""
        self.accepting = True
        if os.name == "nt" and num > 5:
            num = 5
        return self.socket.listen(num)

    def bind(self, addr):
        """Bind the socket to ``addr`` and remember it."""
        self.addr = addr
        return self.socket.bind(addr)

    def connect(self, address):
        """Start a non-blocking connect; ``handle_connect`` runs once it completes."""
        self.connected = False
        self.connecting = True
        err = self.socket.connect_ex(address)
        in_progress = err in (EINPROGRESS, EALREADY, EWOULDBLOCK) or (
            err == EINVAL and os.name == "nt"
        )
        if in_progress:
            self.addr = address
            return
        if err in (0, EISCONN):
            self.addr = address
            self.handle_connect_event()
        else:
            raise OSError(err, errorcode[err])

    def accept(self):
        """Return ``(conn, addr)``, or None if nothing could be accepted."""
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            return None
        except OSError as why:
            if why.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            raise
        return conn, addr

    # hot methods: loop-module functions bound into the class (overridable like
    # any method), so the library's own code runs no Python frame per event
    send = _loop_impl.dispatcher_send
    recv = _loop_impl.dispatcher_recv
    # the predicates the loop asks (when overridden: every pass)
    readable = _loop_impl.dispatcher_readable
    writable = _loop_impl.dispatcher_writable
    handle_read_event = _loop_impl.dispatcher_handle_read_event
    handle_write_event = _loop_impl.dispatcher_handle_write_event

    def close(self):
        """Unregister the channel and close its socket."""
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as why:
                if why.errno not in (ENOTCONN, EBADF):
                    raise

    # logging hooks, meant to be overridden
    def log(self, message):
        """Write ``message`` to stderr (a debugging hook)."""
        sys.stderr.write("log: %s\n" % str(message))

    def log_info(self, message, type="info"):
        """Print ``message`` unless its ``type`` is in ``ignore_log_types``."""
        if type not in self.ignore_log_types:
            print("%s: %s" % (type, message))

    # event dispatch
    def handle_connect_event(self):
        """A pending connect finished: raise its error or call ``handle_connect``."""
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, _strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False

    def handle_expt_event(self):
        """The loop saw an exceptional condition: a socket error closes, else ``handle_expt``."""
        # an exceptional condition is either a socket error or OOB data
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self.handle_close()
        else:
            self.handle_expt()

    def handle_error(self):
        """An event handler raised: log the traceback and close the channel."""
        nil, t, v, tbinfo = compact_traceback()
        try:
            self_repr = repr(self)
        except:  # noqa: E722 - a user __repr__ may fail too
            self_repr = "<__repr__(self) failed for object at %0x>" % id(self)
        self.log_info(
            "uncaptured python exception, closing channel %s (%s:%s %s)"
            % (self_repr, t, v, tbinfo),
            "error",
        )
        self.handle_close()

    def handle_expt(self):
        """Urgent (out-of-band) data arrived; the default only logs a warning."""
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self):
        """Input is ready; override to read it (the default logs a warning)."""
        self.log_info("unhandled read event", "warning")

    def handle_write(self):
        """Output is possible; override to write (the default logs a warning)."""
        self.log_info("unhandled write event", "warning")

    def handle_connect(self):
        """An outgoing connection was established; override to react."""
        self.log_info("unhandled connect event", "warning")

    def handle_accept(self):
        """A listener is readable: accept one connection and hand it on."""
        pair = self.accept()
        if pair is None:
            return
        if self.max_connections is not None and not self._admit(pair[0]):
            self.handle_refused(*pair)
            return
        self.handle_accepted(*pair)

    def _admit(self, sock):
        # Count the sockets this listener accepted that are still open.
        # Pruning is O(cap), so at the cap it runs at most every 10 ms.
        accepted = self._accepted_socks
        if accepted is None:
            accepted = self._accepted_socks = []
        if len(accepted) >= self.max_connections:
            now = time.monotonic()
            if now < self._next_prune:
                return False
            accepted[:] = [s for s in accepted if s.fileno() != -1]
            self._next_prune = now + 0.01
            if len(accepted) >= self.max_connections:
                return False
        accepted.append(sock)
        return True

    def handle_refused(self, sock, addr):
        """A connection arrived while ``max_connections`` were open.

        The default closes it at once; override to send a "busy" reply.
        """
        sock.close()
        self.log_info("refused %r: max_connections=%d reached"
                      % (addr, self.max_connections), "warning")

    def handle_accepted(self, sock, addr):
        """A connection was accepted; override to serve ``sock`` (the default closes it)."""
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self):
        """The peer closed or an error ended the channel; the default closes it."""
        self.log_info("unhandled close event", "warning")
        self.close()


class dispatcher_with_send(dispatcher):
    """A dispatcher whose ``send()`` buffers output until it can be written."""

    def __init__(self, sock=None, map=None):
        dispatcher.__init__(self, sock, map)
        self.out_buffer = b""

    def initiate_send(self):
        """Write as much buffered output as the socket takes now."""
        sent = dispatcher.send(self, self.out_buffer[:65536])
        self.out_buffer = self.out_buffer[sent:]

    def handle_write(self):
        """The socket is writable: flush more of the buffer."""
        self.initiate_send()

    def writable(self):
        """Watch for output while connecting or while bytes are buffered."""
        return (not self.connected) or len(self.out_buffer)

    def send(self, data):
        """Append ``data`` to the output buffer and try to send some of it now."""
        if self.debug:
            self.log_info("sending %s" % repr(data))
        self.out_buffer = self.out_buffer + data
        self.initiate_send()
        if self.out_buffer:
            _loop_touch(self)  # the rest waits for write interest


# dispatcher's and dispatcher_with_send's readable()/writable() are
# state-driven (asynchat registers async_chat's when it loads)
_register_own_predicates()


def compact_traceback():
    """Summarise the exception being handled as ``(last, type, value, info)``."""
    t, v, tb = sys.exc_info()
    if not tb:
        raise AssertionError("traceback does not exist")
    frames = []
    while tb:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    del tb
    info = " ".join("[%s|%s|%s]" % frame for frame in frames)
    return frames[-1], t, v, info


def close_all(map=None, ignore_all=False):
    """Close every channel in ``map`` and empty it."""
    if map is None:
        map = socket_map
    for channel in list(map.values()):
        try:
            channel.close()
        except OSError as err:
            if err.errno != EBADF and not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except:  # noqa: E722
            if not ignore_all:
                raise
    map.clear()


if os.name == "posix":

    class file_wrapper:
        """Just enough of the socket API over a (dup'ed) file descriptor."""

        def __init__(self, fd):
            self.fd = os.dup(fd)

        def __del__(self):
            if self.fd >= 0:
                warnings.warn(
                    "unclosed file %r" % self, ResourceWarning, source=self
                )
            self.close()

        def recv(self, *args):
            """Read from the descriptor (``os.read``)."""
            return os.read(self.fd, *args)

        def send(self, *args):
            """Write to the descriptor (``os.write``)."""
            return os.write(self.fd, *args)

        def getsockopt(self, level, optname, buflen=None):
            """Answer ``SO_ERROR`` with 0; no other option exists for a file."""
            if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
                return 0
            raise NotImplementedError(
                "Only asyncore specific behaviour implemented."
            )

        read = recv
        write = send

        def close(self):
            """Close the duplicated descriptor (idempotent)."""
            if self.fd < 0:
                return
            fd, self.fd = self.fd, -1
            os.close(fd)

        def fileno(self):
            """The duplicated descriptor, or -1 once closed."""
            return self.fd

    class file_dispatcher(dispatcher):
        """A dispatcher over a pipe, tty or other file descriptor."""

        def __init__(self, fd, map=None):
            dispatcher.__init__(self, None, map)
            self.connected = True
            try:
                fd = fd.fileno()
            except AttributeError:
                pass
            self.set_file(fd)
            os.set_blocking(fd, False)

        def set_file(self, fd):
            """Wrap a duplicate of ``fd`` and register the channel."""
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()
