# cython: language_level=3
"""Compiled kernels of ``async_chat``; ``_chat_py.py`` is their specification.

Names, signatures and observable behaviour match ``_chat_py`` exactly.  The
fast paths cover ``bytes`` input with ``bytes``/``int``/``None``
terminators; anything else (a ``bytearray`` assigned to ``ac_in_buffer``, a
``str`` terminator, a negative or huge integer) is handed to the pure
kernel, which reproduces CPython's generic behaviour and errors.

Memory safety: every pointer is derived from a ``bytes`` object this frame
holds a reference to, and every offset is checked against that object's
length before use.
"""

from cpython.method cimport PyMethod_Check, PyMethod_GET_FUNCTION
from cpython.pythread cimport (
    NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock, PyThread_free_lock,
    PyThread_get_thread_ident, PyThread_release_lock, PyThread_type_lock,
)
from cpython.object cimport PyObject
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

# Calls between compiled functions and C-level descriptors run no Python
# frame, and Py_EnterRecursiveCall did not stop such a cycle in testing (a
# class whose handle_read is dispatcher.handle_read_event overflowed the C
# stack): every entry point counts its own nesting, per thread, and raises
# RecursionError far below any thread's stack size.
cdef extern from *:
    """
    #if defined(_MSC_VER)
    #define AC_THREAD_LOCAL __declspec(thread)
    #else
    #define AC_THREAD_LOCAL __thread
    #endif
    #define AC_MAX_NESTING 256
    static AC_THREAD_LOCAL int ac_nesting = 0;
    static int ac_enter(void) {
        if (ac_nesting >= AC_MAX_NESTING) {
            PyErr_SetString(PyExc_RecursionError,
                            "asynchat_core: kernel calls nested too deeply "
                            "(a method or descriptor that calls itself?)");
            return -1;
        }
        ac_nesting++;
        return 0;
    }
    static void ac_leave(void) { if (ac_nesting > 0) ac_nesting--; }
    """
    int _ac_enter "ac_enter"() except -1
    void _ac_leave "ac_leave"() noexcept

import sys

from asynchat_core import _chat_py as _spec
from asynchat_core._loop_c import dispatcher_send, sock_send
from asynchat_core._chat_py import FrameTooLarge

__all__ = [
    "FrameTooLarge", "InBuffer", "TerminatorSlot", "terminator_slot", "UNSET",
    "OutputState", "SocketSlot", "socket_slot", "chan_output",
    "TERM_CALL", "TERM_ATTR", "TERM_SLOT", "terminator_mode", "find_prefix_at_end", "chat_feed",
    "chat_deliver", "chat_drain", "chat_flush", "chat_get_terminator", "chat_set_terminator",
    "chat__collect_incoming_data", "chat__get_data",
    "chat_handle_read", "chat_initiate_send", "chat_push", "set_loop_hook",
    "chat_readable", "chat_writable", "chat_handle_write", "chat_send", "set_dispatcher_class",
]


cdef class _Unset:
    def __repr__(self):
        return "<terminator not set>"


UNSET = _Unset()
cdef object _UNSET = UNSET


cdef class TerminatorSlot:
    """``async_chat.terminator``: stored in the channel's ``InBuffer``.

    Reads, assignments and ``del`` behave as for a plain instance
    attribute (AttributeError until set).
    """

    def __get__(self, obj, cls):
        _ac_enter()
        try:
            if obj is None:
                return self
            try:
                state = obj._ac_in
            except AttributeError:
                value = _UNSET
            else:
                value = _inbuf_check(obj, state).terminator
            if value is _UNSET:
                raise AttributeError(
                    "%r object has no attribute 'terminator'" % type(obj).__name__
                )
            return value
        finally:
            _ac_leave()

    def __set__(self, obj, value):
        cdef InBuffer inbuf
        _ac_enter()
        try:
            try:
                state = obj._ac_in
            except AttributeError:
                # set before async_chat.__init__ ran
                inbuf = InBuffer(b"")
                obj._ac_in = inbuf
            else:
                inbuf = _inbuf_check(obj, state)
            inbuf.terminator = value
        finally:
            _ac_leave()

    def __delete__(self, obj):
        _ac_enter()
        try:
            self.__get__(obj, None)  # AttributeError if not set
            _inbuf(obj).terminator = _UNSET
        finally:
            _ac_leave()


terminator_slot = TerminatorSlot()
cdef object _terminator_slot = terminator_slot


cdef class InBuffer:
    """The kernels' state of one channel (``async_chat._ac_in``).

    Unread input: ``data[pos:]`` is ``ac_in_buffer``.  ``frame`` counts the
    bytes of the current frame already handed to ``collect_incoming_data``,
    for the ``ac_max_frame_size`` cap.  ``terminator`` backs
    ``async_chat.terminator`` (``UNSET`` until set).
    """

    cdef public object data
    cdef public Py_ssize_t pos
    cdef public Py_ssize_t frame
    cdef public object terminator

    def __init__(self, data=b""):
        self.data = data
        self.pos = 0
        self.frame = 0
        self.terminator = UNSET

    cpdef object value(self):
        """Return the unread input, compacting it first (what users see)."""
        if self.pos:
            self.data = self.data[self.pos:]
            self.pos = 0
        return self.data

    cpdef assign(self, value):
        """Replace the unread input (``ac_in_buffer = value``)."""
        self.data = value
        self.pos = 0

    cpdef discard(self):
        """Drop the unread input and forget the current frame."""
        self.data = b""
        self.pos = 0
        self.frame = 0


cdef InBuffer _inbuf_check(chan, state):
    # Python code may have put anything in _ac_in: never trust its type
    if not isinstance(state, InBuffer):
        raise TypeError("%s._ac_in must be an InBuffer, not %s"
                        % (type(chan).__name__, type(state).__name__))
    return <InBuffer>state


cdef inline InBuffer _inbuf(chan):
    return _inbuf_check(chan, chan._ac_in)


cdef Py_ssize_t _find(const char *hay, Py_ssize_t hay_len,
                      const char *needle, Py_ssize_t needle_len) noexcept nogil:
    # Index of needle in hay[0:hay_len], or -1.  needle_len >= 1.
    cdef const char *p = hay
    cdef const char *last
    if needle_len > hay_len:
        return -1
    if needle_len == 1:
        p = <const char *>memchr(hay, needle[0], <size_t>hay_len)
        return -1 if p == NULL else p - hay
    last = hay + (hay_len - needle_len)  # last possible start
    while p <= last:
        p = <const char *>memchr(p, needle[0], <size_t>(last - p + 1))
        if p == NULL:
            return -1
        if memcmp(p + 1, needle + 1, <size_t>(needle_len - 1)) == 0:
            return p - hay
        p += 1
    return -1


cdef Py_ssize_t _prefix_at_end(const char *hay, Py_ssize_t hay_len,
                               const char *needle, Py_ssize_t needle_len) noexcept nogil:
    # Longest proper prefix of needle that hay ends with (0 if none).
    cdef Py_ssize_t size = needle_len - 1
    if size > hay_len:
        size = hay_len
    while size > 0:
        if memcmp(hay + (hay_len - size), needle, <size_t>size) == 0:
            return size
        size -= 1
    return 0


def find_prefix_at_end(haystack, needle):
    """Length of the longest proper prefix of ``needle`` ending ``haystack``.

    Assumes ``needle`` itself was already searched for.  Works on ``str`` and
    on bytes-like objects, like the function of the same name in asynchat.
    """
    if type(haystack) is bytes and type(needle) is bytes and PyBytes_GET_SIZE(needle):
        return _prefix_at_end(PyBytes_AS_STRING(haystack), PyBytes_GET_SIZE(haystack),
                              PyBytes_AS_STRING(needle), PyBytes_GET_SIZE(needle))
    return _spec.find_prefix_at_end(haystack, needle)


cdef inline object _slice(object data, Py_ssize_t start, Py_ssize_t stop):
    # data[start:stop] for a bytes object, 0 <= start <= stop <= len(data)
    if start == 0 and stop == PyBytes_GET_SIZE(data):
        return data
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start, stop - start)


cdef inline int _advance(InBuffer inbuf, object data, Py_ssize_t pos,
                         Py_ssize_t offset, Py_ssize_t slice_start) except -1:
    # CPython slices ac_in_buffer *after* the callback: if the callback
    # replaced or read it, slice what is there now.
    if inbuf.data is data and inbuf.pos == pos:
        inbuf.pos = pos + offset
    else:
        inbuf.assign(inbuf.value()[slice_start:])
    return 0


# how chat_deliver finds the terminator
cdef enum:
    _TERM_CALL = 0   # get_terminator() is overridden: call it every time
    _TERM_ATTR = 1   # read and write chan.terminator
    _TERM_SLOT = 2   # async_chat's own descriptor: use inbuf.terminator

TERM_CALL = _TERM_CALL
TERM_ATTR = _TERM_ATTR
TERM_SLOT = _TERM_SLOT


cpdef int terminator_mode(chan) except -1:
    """The TERM_* mode for ``chan`` (checked once per read)."""
    getter = chan.get_terminator
    if not (PyMethod_Check(getter)
            and PyMethod_GET_FUNCTION(getter) == <PyObject *>chat_get_terminator):
        return _TERM_CALL
    if getattr(type(chan), "terminator", None) is _terminator_slot:
        return _TERM_SLOT
    return _TERM_ATTR


cdef object _feed(chan, InBuffer inbuf, data, int mode, OutputState out):
    current = inbuf.data
    if (type(current) is bytes and type(data) is bytes
            and inbuf.pos >= PyBytes_GET_SIZE(current)):
        inbuf.data = data
        inbuf.pos = 0
    else:
        inbuf.assign(inbuf.value() + data)
    return _deliver(chan, inbuf, mode, out)


def chat_feed(chan, InBuffer inbuf not None, data, int mode, OutputState out=None):
    """Append received ``data`` to ``inbuf`` and deliver what it completes.

    This is ``async_chat.handle_read`` after its ``recv()``; ``mode`` is
    ``terminator_mode(chan)``; ``out`` the ``OutputState`` whose
    ``batching`` to set around ``found_terminator``, or None.
    """
    return _feed(chan, inbuf, data, mode, out)


cdef inline Py_ssize_t _held(InBuffer inbuf) noexcept:
    # frame is public (the pure kernel writes it too): never trust its sign
    return inbuf.frame if inbuf.frame > 0 else 0


cdef inline void _add_frame(InBuffer inbuf, Py_ssize_t size) noexcept:
    # saturating: a poked frame value must not overflow
    cdef Py_ssize_t held = _held(inbuf)
    inbuf.frame = PY_SSIZE_T_MAX if size > PY_SSIZE_T_MAX - held else held + size


cdef inline int _check_frame(InBuffer inbuf, Py_ssize_t size, Py_ssize_t limit) except -1:
    # limit < 0 means no cap; 0 <= held, so limit - held cannot overflow
    cdef Py_ssize_t held = _held(inbuf)
    if limit >= 0 and (held > limit or size > limit - held):
        raise FrameTooLarge(held + size if size <= PY_SSIZE_T_MAX - held else PY_SSIZE_T_MAX, limit)
    return 0


cdef Py_ssize_t _frame_limit(chan) except -2:
    # ac_max_frame_size as a C number: -1 for None (no cap)
    value = getattr(chan, "ac_max_frame_size", None)
    if value is None:
        return -1
    if value < 0:
        raise ValueError("ac_max_frame_size must be None or >= 0")
    if value > PY_SSIZE_T_MAX:
        return PY_SSIZE_T_MAX
    return value


cdef inline object _get_term(chan, InBuffer inbuf, int mode):
    if mode == _TERM_SLOT:
        term = inbuf.terminator
        if term is _UNSET:
            return chan.terminator  # raises AttributeError as CPython does
        return term
    if mode == _TERM_ATTR:
        return chan.terminator
    return chan.get_terminator()


cdef inline int _set_term(chan, InBuffer inbuf, int mode, value) except -1:
    if mode == _TERM_SLOT:
        inbuf.terminator = value
    else:
        chan.terminator = value
    return 0


cdef inline object _term_now(chan, InBuffer inbuf, int mode):
    # the attribute itself, as CPython re-reads self.terminator
    if mode == _TERM_SLOT:
        term = inbuf.terminator
        return chan.terminator if term is _UNSET else term
    return chan.terminator


cdef inline int _found(chan, InBuffer inbuf, OutputState out) except -1:
    # found_terminator, batching replies while more input follows this
    # frame (OutputState, rule 2)
    cdef bint more
    if out is not None:
        data = inbuf.data
        if type(data) is bytes:
            more = PyBytes_GET_SIZE(data) > inbuf.pos
        else:
            more = len(data) > inbuf.pos
        if more:
            if out.batch_ok < 0:
                # overridden output methods see CPython's calls, one per push
                out.batch_ok = (_is_method(chan.send, chat_send)
                                and _is_method(chan.initiate_send, chat_initiate_send))
            out.batching = out.batch_ok
    chan.found_terminator()
    out.batching = False  # (if it raised, handle_read resets it)
    return 0


cdef object _deliver(chan, InBuffer inbuf, int mode, OutputState out):
    cdef object data, term
    cdef Py_ssize_t pos, total, size, count, index, term_len, partial
    cdef const char *base
    cdef Py_ssize_t limit = _frame_limit(chan)
    while True:
        data = inbuf.data
        pos = inbuf.pos
        if type(data) is not bytes or pos < 0:
            return _spec.chat_deliver(chan, inbuf, mode, out)
        total = PyBytes_GET_SIZE(data)
        size = total - pos
        if size <= 0:
            return
        term = _get_term(chan, inbuf, mode)

        if term is None:
            inbuf.frame = 0  # a stream without frames: nothing is held
            chan.collect_incoming_data(_slice(data, pos, total))
            inbuf.assign(b"")
        elif type(term) is bytes:
            term_len = PyBytes_GET_SIZE(term)
            if term_len == 0:
                inbuf.frame = 0
                chan.collect_incoming_data(_slice(data, pos, total))
                inbuf.assign(b"")
                continue
            base = PyBytes_AS_STRING(data)
            index = _find(base + pos, size, PyBytes_AS_STRING(term), term_len)
            if index != -1:
                _check_frame(inbuf, index, limit)
                if index > 0:
                    chan.collect_incoming_data(_slice(data, pos, pos + index))
                _advance(inbuf, data, pos, index + term_len, index + term_len)
                inbuf.frame = 0
                _found(chan, inbuf, out)
            else:
                _check_frame(inbuf, size, limit)
                partial = _prefix_at_end(base + pos, size, PyBytes_AS_STRING(term), term_len)
                if not partial:
                    _add_frame(inbuf, size)
                    chan.collect_incoming_data(_slice(data, pos, total))
                    inbuf.assign(b"")
                else:
                    if partial != size:
                        _add_frame(inbuf, size - partial)
                        chan.collect_incoming_data(_slice(data, pos, total - partial))
                        _advance(inbuf, data, pos, size - partial, -partial)
                    return
        elif type(term) is int:
            # (exactly int: a subclass may lie in comparisons, and the
            # slices below trust them; subclasses take the generic path)
            if term < 0 or term > PY_SSIZE_T_MAX:
                # CPython slices with a negative count: generic path
                return _spec.chat_deliver(chan, inbuf, mode, out)
            count = term
            if limit >= 0 and count > limit:
                raise FrameTooLarge(term, limit)
            if count > size:
                _add_frame(inbuf, size)
                chan.collect_incoming_data(_slice(data, pos, total))
                inbuf.assign(b"")
                _set_term(chan, inbuf, mode, _term_now(chan, inbuf, mode) - size)
                continue
            if count == 0:
                inbuf.frame = 0
                chan.collect_incoming_data(_slice(data, pos, total))
                inbuf.assign(b"")
                continue
            chan.collect_incoming_data(_slice(data, pos, pos + count))
            _advance(inbuf, data, pos, count, count)
            inbuf.frame = 0
            _set_term(chan, inbuf, mode, 0)
            _found(chan, inbuf, out)
        else:
            return _spec.chat_deliver(chan, inbuf, mode, out)


def chat_deliver(chan, InBuffer inbuf not None, int mode, OutputState out=None):
    """Run the terminator loop over the buffered input until it needs more."""
    return _deliver(chan, inbuf, mode, out)


cdef object _MAXSIZE = sys.maxsize
cdef object _BYTES_LIKE = (bytes, bytearray, memoryview)
cdef object _WOULD_BLOCK = _spec._WOULD_BLOCK


cdef class OutputState:
    """The output path of one channel (``async_chat._ac_out``); the only
    owner of output state besides the public ``producer_fifo``.

    The rules are those of ``_chat_py.OutputState`` (the specification):
    CPython's drain of ``producer_fifo``; ``batching`` only while
    ``found_terminator`` runs for a frame that more input follows;
    ``pending`` precedes the queue on the wire and is sent before the next
    send outside a batch, when ``handle_read`` returns, and before
    ``socket`` is read or replaced, ``send``, ``close`` or
    ``discard_buffers``; a reentrant lock around every kernel ``recv`` and
    send attempt; ``sock`` backs ``async_chat.socket``.
    """

    cdef public object sock
    cdef readonly list pending  # bytes objects, joined when sent
    cdef readonly Py_ssize_t held  # their total size
    cdef public bint batching
    # whether send/initiate_send are the library's, asked once per read and
    # only when a frame has more input behind it (-1: not yet)
    cdef public int batch_ok
    cdef PyThread_type_lock _lock
    cdef long _owner
    cdef Py_ssize_t _depth

    def __cinit__(self):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate the channel's output lock")
        self.sock = _UNSET
        self.pending = []
        self.batch_ok = -1

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
            self._lock = NULL

    cdef int enter(self) except -1:
        # reentrant: the holder may call back into the kernels (more(),
        # handle_close, a send override); others wait without the GIL
        cdef long me = PyThread_get_thread_ident()
        if self._depth > 0 and self._owner == me:
            self._depth += 1
            return 0
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
        self._owner = me
        self._depth = 1
        return 0

    cdef void leave(self) noexcept:
        if self._depth <= 0 or self._owner != PyThread_get_thread_ident():
            return  # not ours: never release another thread's hold
        self._depth -= 1
        if self._depth == 0:
            self._owner = 0
            PyThread_release_lock(self._lock)

    def __enter__(self):
        """Hold the lock (rule 4): no kernel recv or send on this channel meanwhile."""
        self.enter()
        return self

    def __exit__(self, *exc_info):
        self.leave()


cdef OutputState _output(chan):
    try:
        out = chan._ac_out
    except AttributeError:
        state = OutputState()
        chan._ac_out = state
        return state
    if not isinstance(out, OutputState):
        raise TypeError("%s._ac_out must be an OutputState, not %s"
                        % (type(chan).__name__, type(out).__name__))
    return <OutputState>out


def chan_output(chan):
    """The channel's ``OutputState``, created if ``async_chat.__init__``
    did not run (CPython's push/send work without it)."""
    return _output(chan)


cdef class SocketSlot:
    """``async_chat.socket``: kept in the channel's ``OutputState``.

    Reading or replacing it sends the replies still held in ``pending``
    first, so code that wraps the socket in TLS or writes to it directly
    sees CPython's order on the wire.
    """

    def __get__(self, obj, cls):
        cdef OutputState out
        _ac_enter()
        try:
            if obj is None:
                return self
            out = _output(obj)
            if out.pending:
                _chat_flush(obj, out)
            sock = out.sock
            if sock is _UNSET:
                raise AttributeError("%r object has no attribute 'socket'" % type(obj).__name__)
            return sock
        finally:
            _ac_leave()

    def __set__(self, obj, value):
        cdef OutputState out
        _ac_enter()
        try:
            out = _output(obj)
            if out.pending:
                _chat_flush(obj, out)
            out.sock = value
        finally:
            _ac_leave()

    def __delete__(self, obj):
        _ac_enter()
        try:
            self.__get__(obj, None)  # AttributeError if not set
            _output(obj).sock = _UNSET
        finally:
            _ac_leave()


socket_slot = SocketSlot()


cdef int _uncount(chan, sent) except -1:
    # output accounting for ac_out_high_water (only kept while it is set)
    if chan.ac_out_high_water is not None:
        queued = chan._ac_out_queued - sent
        chan._ac_out_queued = queued if queued > 0 else 0
    return 0


cdef int _requeue(chan, rest) except -1:
    # bytes taken as sent that the socket refused: first in line again
    fifo = chan.producer_fifo
    cdef bint was_empty = not fifo
    fifo.appendleft(rest)
    if chan.ac_out_high_water is not None:
        chan._ac_out_queued += len(rest)
    if was_empty and _loop_hook is not None:
        _loop_hook(chan)
    return 0


cdef inline object _raw_send(chan, data):
    # asyncore.dispatcher.send, looked up now: patching it on the class
    # reaches async_chat too, as in CPython, where async_chat inherits it
    send = _dispatcher_class.send
    if send is dispatcher_send:
        # the output state's socket: pending is being sent, so reading
        # the socket attribute would only check it again
        sock = _output(chan).sock
        if sock is not _UNSET:
            return sock_send(chan, sock, data)
    return send(chan, data)


cdef object _flush(chan, OutputState out, object data):
    # Send pending (followed by data, unless None) in one send().  Returns
    # how many bytes of data went out, or -1 if pending did not all go
    # (the rest is queued again).  The caller holds out's lock.
    cdef Py_ssize_t held = out.held
    cdef list pieces
    if held and data is not None and held + len(data) > chan.ac_out_buffer_size:
        if _flush(chan, out, None) < 0:
            return 0
        held = 0
    if held:
        pieces = out.pending
        out.pending = []
        out.held = 0
        if data is not None:
            pieces.append(data)
        buf = b"".join(pieces)
    elif data is None:
        return 0
    else:
        return _raw_send(chan, data)
    try:
        sent = _raw_send(chan, buf)
    except OSError:
        chan.handle_error()
        return -1
    if sent >= held:
        return sent - held
    _requeue(chan, buf[sent:held])
    return -1


cdef inline int _hold(OutputState out, data) except -1:
    # a copy of mutable data: CPython would have sent it already
    out.pending.append(data if type(data) is bytes else bytes(data))
    out.held += len(data)
    return 0


cdef int _chat_flush(chan, OutputState out) except -1:
    out.enter()
    try:
        _flush(chan, out, None)
    finally:
        out.leave()
    return 0


def chat_flush(self):
    """Send the replies held in ``pending`` now (rule 3 of OutputState)."""
    cdef OutputState out
    _ac_enter()
    try:
        out = _output(self)
        if out.pending:
            _chat_flush(self, out)
    finally:
        _ac_leave()


cdef inline bint _is_method(bound, function):
    # bound is function bound to an instance (not overridden anywhere)
    return PyMethod_Check(bound) and PyMethod_GET_FUNCTION(bound) == <PyObject *>function


cdef object _send_item(chan, OutputState out, data):
    # one send attempt of the drain: CPython's self.send(data)
    send = chan.send
    if not (_is_method(send, chat_send) and isinstance(data, _BYTES_LIKE)):
        # an overridden send(), or an odd item: exactly CPython's call
        if out.pending and _flush(chan, out, None) < 0:
            return 0
        return send(data)
    if out.batching:
        if out.pending and out.held + len(data) > chan.ac_out_buffer_size:
            if _flush(chan, out, None) < 0:
                return 0  # the socket is full: data waits behind what it refused
        _hold(out, data)
        return len(data)
    sent = _flush(chan, out, data)
    return sent if sent > 0 else 0


cdef object _drain(chan, fifo):
    cdef OutputState out = _output(chan)
    out.enter()
    try:
        _drain_locked(chan, fifo, out)
    finally:
        out.leave()


cdef object _drain_locked(chan, fifo, OutputState out):
    cdef Py_ssize_t obs = chan.ac_out_buffer_size
    cdef object first, data
    while fifo and chan.connected:
        first = fifo[0]
        if not first:
            del fifo[0]
            if first is None:
                chan.handle_close()
                return
            # CPython still makes one send() of the empty item below and
            # returns: that send is how a dead peer gets noticed
        try:
            data = first[:obs]
        except TypeError:
            # a producer: ask it for more, CPython style.  Not batching
            # meanwhile (see the pure kernel)
            batching = out.batching
            out.batching = False
            try:
                data = first.more()
            finally:
                out.batching = batching
            if data:
                fifo.appendleft(data)
            else:
                del fifo[0]
            continue
        # data (str only with use_encoding): one item per send
        if isinstance(data, str) and chan.use_encoding:
            data = bytes(data, chan.encoding)
        try:
            sent = _send_item(chan, out, data)
        except OSError:
            chan.handle_error()
            return
        if not sent:
            return
        _uncount(chan, sent)
        if not fifo or fifo[0] is not first:
            return  # changed meanwhile: leave it alone
        if sent < len(data) or obs < len(first):
            fifo[0] = first[sent:]
        else:
            del fifo[0]
        return


def chat_drain(chan, fifo):
    """Send queued output: the body of ``async_chat.initiate_send``.

    CPython's exactly (rule 1 of ``OutputState``): one send attempt of
    the item at the head, after any ``more()`` calls and the ``None`` that
    ``close_when_done`` queued; nothing while the channel is not
    connected.
    """
    return _drain(chan, fifo)

# The functions below are async_chat's hot methods; asynchat.py binds them
# into the class (Cython 3 functions bind like Python ones), so
# ``self.push(...)`` runs compiled code directly.

# Called with the channel when its output queue goes from empty to
# non-empty, so a loop with persistent registration can start watching for
# writability without asking writable() every pass.


cdef object _loop_hook = None


def set_loop_hook(hook):
    """Install ``hook(channel)`` (or None), called when output gets queued."""
    global _loop_hook
    _loop_hook = hook


def chat_get_terminator(self):
    """Return the current terminator."""
    _ac_enter()
    try:
        return self.terminator
    finally:
        _ac_leave()


def chat_initiate_send(self):
    """Try to send queued output now (one send() attempt)."""
    _ac_enter()
    try:
        _drain(self, self.producer_fifo)
    finally:
        _ac_leave()


def chat_handle_read(self):
    """Read once from the socket and deliver every frame it completes.

    Replies pushed for a frame that more input follows are sent joined
    with the next one (``OutputState``, rule 2).
    """
    cdef OutputState out
    cdef int mode
    cdef InBuffer inbuf
    _ac_enter()
    try:
        out = _output(self)
        out.enter()
        try:
            data = self.recv(self.ac_in_buffer_size)
        except _WOULD_BLOCK:
            out.leave()
            return
        except OSError:
            out.leave()  # handle_error runs without the lock, as in the spec
            self.handle_error()
            return
        except BaseException:
            out.leave()
            raise
        out.leave()
        if isinstance(data, str) and self.use_encoding:
            # CPython 3.11 raises TypeError here (it passes the type ``str``);
            # kept so that such code fails the same way.
            data = bytes(str, self.encoding)
        mode = terminator_mode(self)
        inbuf = _inbuf(self)
        if not self.ac_coalesce_pushes:
            _feed(self, inbuf, data, mode, None)
            return
        out.batch_ok = -1
        try:
            _feed(self, inbuf, data, mode, out)
        finally:
            out.batching = False
            if out.pending:
                _chat_flush(self, out)
    finally:
        _ac_leave()


def chat_push(self, data):
    """Queue ``data`` (bytes-like) for sending and try to send now."""
    cdef Py_ssize_t size
    cdef Py_ssize_t length
    cdef Py_ssize_t start
    cdef bint was_empty
    cdef OutputState out
    _ac_enter()
    try:
        if not isinstance(data, _BYTES_LIKE):
            raise TypeError("data argument must be byte-ish (%r)", type(data))
        size = self.ac_out_buffer_size
        length = len(data)
        fifo = self.producer_fifo
        was_empty = not fifo
        out = _output(self)
        if out.batching and was_empty and length <= size and self.connected:
            # what the drain would do with this lone item (rule 2), directly
            out.enter()
            try:
                if (not out.pending or out.held + length <= size
                        or _flush(self, out, None) >= 0):
                    _hold(out, data)
                    return
            finally:
                out.leave()
        if self.ac_out_high_water is not None:
            self._ac_out_queued += length
        if length > size:
            for start in range(0, length, size):
                fifo.append(data[start:start + size])
        else:
            fifo.append(data)
        self.initiate_send()
        if was_empty and _loop_hook is not None and fifo:
            _loop_hook(self)
    finally:
        _ac_leave()


def chat_set_terminator(self, term):
    """Set the input delimiter: bytes of any length, a byte count, or None."""
    _ac_enter()
    try:
        if isinstance(term, str) and self.use_encoding:
            term = bytes(term, self.encoding)
        elif isinstance(term, int):
            if term < 0:
                raise ValueError("the number of received bytes must be positive")
            if term > _MAXSIZE:
                # CPython accepts it, but no frame that long can ever complete
                raise ValueError("the number of received bytes must be <= sys.maxsize")
            limit = self.ac_max_frame_size
            if limit is not None and term > limit:
                raise FrameTooLarge(term, limit)
        self.terminator = term
    finally:
        _ac_leave()


def chat__collect_incoming_data(self, data):
    """Default collector: append ``data`` to ``self.incoming``."""
    self.incoming.append(data)


def chat__get_data(self):
    """Return and clear what ``_collect_incoming_data`` gathered."""
    data = b"".join(self.incoming)
    del self.incoming[:]
    return data


# ---------------------------------------------------------------------------
# The rest of async_chat's methods, bound into the class: a request served
# by the library's own code then runs no Python frame but the user's
# handlers.  (asyncore.dispatcher's own are in the loop module.)


def chat_readable(self):
    """Watch for input unless output back-pressure paused reading."""
    _ac_enter()
    try:
        high = self.ac_out_high_water
        if high is None:
            return 1
        if not self.producer_fifo:
            self._ac_out_queued = 0
        queued = self._ac_out_queued
        if self._ac_reading_paused:
            low = self.ac_out_low_water
            if queued > (high // 2 if low is None else low):
                return 0
            self._ac_reading_paused = False
            return 1
        if queued > high:
            self._ac_reading_paused = True
            return 0
        return 1
    finally:
        _ac_leave()


def chat_writable(self):
    """Watch for writability while output is queued or a connect is pending."""
    _ac_enter()
    try:
        return self.producer_fifo or (not self.connected)
    finally:
        _ac_leave()


def chat_handle_write(self):
    """The socket is writable: send more of the queued output."""
    _ac_enter()
    try:
        self.initiate_send()
    finally:
        _ac_leave()


def chat_send(self, data):
    """Send ``data`` directly, after any output pushed earlier (bypasses the queue)."""
    cdef OutputState out
    _ac_enter()
    try:
        out = _output(self)
        out.enter()
        try:
            if out.pending and _flush(self, out, None) < 0:
                return 0  # the socket is full: CPython's send would take nothing too
            return _raw_send(self, data)
        finally:
            out.leave()
    finally:
        _ac_leave()


cdef object _dispatcher_class = None


def set_dispatcher_class(cls):
    """Tell the kernels which class is ``asyncore.dispatcher``."""
    global _dispatcher_class
    _dispatcher_class = cls
