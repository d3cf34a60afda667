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
from cpython.object cimport PyObject
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

import socket
import sys
from errno import EWOULDBLOCK

from asynchat_core import _chat_py as _spec
from asynchat_core._chat_py import FrameTooLarge

__all__ = [
    "FrameTooLarge", "InBuffer", "TerminatorSlot", "terminator_slot", "UNSET",
    "TERM_CALL", "TERM_ATTR", "TERM_SLOT", "terminator_mode", "find_prefix_at_end", "chat_feed",
    "chat_deliver", "chat_drain", "chat_flush_owed", "chat_get_terminator",
    "chat_send_joined", "chat_set_terminator",
    "chat__collect_incoming_data", "chat__get_data",
    "chat_handle_read", "chat_initiate_send", "chat_push", "set_loop_hook", "chan_state",
    "DISCONNECTED", "chan_recv", "chan_send", "chan_readable", "chan_writable",
    "chan_handle_read_event", "chan_handle_write_event",
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
        if obj is None:
            return self
        try:
            value = (<InBuffer?>obj._ac_in).terminator
        except (AttributeError, TypeError):
            value = _UNSET
        if value is _UNSET:
            raise AttributeError(
                "%r object has no attribute 'terminator'" % type(obj).__name__
            )
        return value

    def __set__(self, obj, value):
        cdef InBuffer inbuf
        try:
            inbuf = obj._ac_in
        except AttributeError:
            # set before async_chat.__init__ ran
            inbuf = InBuffer(b"")
            obj._ac_in = inbuf
        inbuf.terminator = value

    def __delete__(self, obj):
        self.__get__(obj, None)  # AttributeError if not set
        (<InBuffer>obj._ac_in).terminator = _UNSET


terminator_slot = TerminatorSlot()
cdef object _terminator_slot = terminator_slot


cdef class InBuffer:
    """The kernels' state of one channel (``async_chat._ac_in``).

    Unread input: ``data[pos:]`` is ``ac_in_buffer``.  ``frame`` counts the
    bytes of the current frame already handed to ``collect_incoming_data``,
    for the ``ac_max_frame_size`` cap.  ``terminator`` backs
    ``async_chat.terminator`` (``UNSET`` until set).

    Output flags: ``corked`` while ``handle_read`` defers pushes, ``owed``
    how many pushes deferred their send, ``blocked`` when the last send
    took nothing.  Kept here, not on the channel, so the kernels read them
    as fields, not attribute lookups.
    """

    cdef public object data
    cdef public Py_ssize_t pos
    cdef public Py_ssize_t frame
    cdef public object terminator
    cdef public bint corked
    cdef public Py_ssize_t owed
    cdef public bint blocked

    def __init__(self, data=b""):
        self.data = data
        self.pos = 0
        self.frame = 0
        self.terminator = UNSET
        self.corked = False
        self.owed = 0
        self.blocked = False

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


cdef InBuffer _state(chan):
    try:
        return <InBuffer?>chan._ac_in
    except AttributeError:
        state = InBuffer(b"")
        chan._ac_in = state
        return state


def chan_state(chan):
    """The channel's ``InBuffer``, created if ``async_chat.__init__`` did
    not run (CPython's push/send work without it)."""
    return _state(chan)


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


cdef object _feed(chan, InBuffer inbuf, data, int mode):
    current = inbuf.data
    if (type(current) is bytes and type(data) is bytes
            and inbuf.pos >= PyBytes_GET_SIZE(current)):
        inbuf.data = data
        inbuf.pos = 0
    else:
        inbuf.assign(inbuf.value() + data)
    return _deliver(chan, inbuf, mode)


def chat_feed(chan, InBuffer inbuf not None, data, int mode):
    """Append received ``data`` to ``inbuf`` and deliver what it completes.

    This is ``async_chat.handle_read`` after its ``recv()``; ``mode`` is
    ``terminator_mode(chan)``.
    """
    return _feed(chan, inbuf, data, mode)


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


cdef object _deliver(chan, InBuffer inbuf, int mode):
    cdef object data, term
    cdef Py_ssize_t pos, total, size, count, index, term_len, partial
    cdef const char *base
    cdef Py_ssize_t limit = _frame_limit(chan)
    while True:
        data = inbuf.data
        pos = inbuf.pos
        if type(data) is not bytes or pos < 0:
            return _spec.chat_deliver(chan, inbuf, mode)
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
                chan.found_terminator()
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
        elif isinstance(term, int):
            if term < 0:
                # CPython slices with a negative count: generic path
                return _spec.chat_deliver(chan, inbuf, mode)
            if limit >= 0 and term > limit:
                raise FrameTooLarge(term, limit)
            if term > size:
                _add_frame(inbuf, size)
                chan.collect_incoming_data(_slice(data, pos, total))
                inbuf.assign(b"")
                _set_term(chan, inbuf, mode, _term_now(chan, inbuf, mode) - size)
                continue
            count = term
            if count == 0:
                inbuf.frame = 0
                chan.collect_incoming_data(_slice(data, pos, total))
                inbuf.assign(b"")
                continue
            chan.collect_incoming_data(_slice(data, pos, pos + count))
            _advance(inbuf, data, pos, count, count)
            inbuf.frame = 0
            _set_term(chan, inbuf, mode, 0)
            chan.found_terminator()
        else:
            return _spec.chat_deliver(chan, inbuf, mode)


def chat_deliver(chan, InBuffer inbuf not None, int mode):
    """Run the terminator loop over the buffered input until it needs more."""
    return _deliver(chan, inbuf, mode)


cdef object _MAXSIZE = sys.maxsize


cdef inline bint _is_joinable(object item):
    return type(item) is bytes or type(item) is bytearray


cdef inline const char *_bytes_ptr(object item):
    if type(item) is bytes:
        return PyBytes_AS_STRING(item)
    return PyByteArray_AS_STRING(item)


cdef inline Py_ssize_t _bytes_len(object item):
    if type(item) is bytes:
        return PyBytes_GET_SIZE(item)
    return PyByteArray_GET_SIZE(item)


cdef object _join(list items, Py_ssize_t total):
    # b"".join(items) for bytes/bytearray items whose sizes add up to total
    cdef object out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *dst = PyBytes_AS_STRING(out)
    cdef Py_ssize_t used = 0, size
    for item in items:
        size = _bytes_len(item)
        if size > total - used:
            raise RuntimeError("queued item changed size while being joined")
        memcpy(dst + used, _bytes_ptr(item), <size_t>size)
        used += size
    if used != total:
        raise RuntimeError("queued item changed size while being joined")
    return out


cdef bint _leading_data(object fifo, Py_ssize_t count) except -1:
    # the first ``count`` queued items (or all, if fewer) are non-empty data
    for item in fifo:
        if count <= 0:
            break
        if not _is_joinable(item) or _bytes_len(item) == 0:
            return False
        count -= 1
    return True


cdef int _uncount(chan, sent) except -1:
    # output accounting for ac_out_high_water (only kept while it is set)
    if chan.ac_out_high_water is not None:
        queued = chan._ac_out_queued - sent
        chan._ac_out_queued = queued if queued > 0 else 0
    return 0


cdef int _consume_sent(object fifo, list items, object sent) except -1:
    # Remove what one send() took from the head of the queue.  Stops if
    # a callback inside send() already changed the queue.  ``sent`` stays a
    # Python object: an overridden send() may return any number.
    for item in items:
        if not fifo or fifo[0] is not item:
            return 0
        size = len(item)
        if sent >= size:
            fifo.popleft()
            sent -= size
        else:
            if sent:
                fifo[0] = item[sent:]
            return 0
    return 0


cdef object _drain(chan, fifo):
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
            # a producer: ask it for more, CPython style
            data = first.more()
            if data:
                fifo.appendleft(data)
            else:
                del fifo[0]
            continue
        # data (str only with use_encoding): one item per send
        if isinstance(data, str) and chan.use_encoding:
            data = bytes(data, chan.encoding)
        try:
            sent = chan.send(data)
        except OSError:
            chan.handle_error()
            return
        if not sent:
            if len(data):
                _state(chan).blocked = True
            return
        _uncount(chan, sent)
        _state(chan).blocked = False
        if not fifo or fifo[0] is not first:
            return  # changed meanwhile (another thread): leave it alone
        if sent < len(data) or obs < len(first):
            fifo[0] = first[sent:]
        else:
            del fifo[0]
        return


def chat_drain(chan, fifo):
    """Send queued output: the body of ``async_chat.initiate_send``.

    Exactly CPython's: one ``send()`` attempt of the item at the head (after
    any ``more()`` calls and the ``None`` that ``close_when_done`` queued),
    nothing while the channel is not connected.  Joining several items into
    one send happens only in ``chat_send_joined``, for pushes deferred
    during ``handle_read``: anywhere else it would let a producer or a
    ``close_when_done()`` queued later reach the head after fewer write
    events than in CPython.
    """
    return _drain(chan, fifo)


cdef object _send_joined(chan, fifo, Py_ssize_t attempts):
    cdef Py_ssize_t obs = chan.ac_out_buffer_size
    cdef Py_ssize_t total, size, taken
    cdef list items
    cdef object first, data
    while attempts > 0 and fifo and chan.connected:
        items = []
        total = 0
        taken = 0
        for item in fifo:
            if taken >= attempts:
                break
            if not _is_joinable(item):
                raise TypeError("chat_send_joined: queued item is not bytes/bytearray")
            size = _bytes_len(item)
            if taken and size > obs - total:
                break
            items.append(item)
            total += size
            taken += 1
        first = items[0]
        if taken == 1:
            data = first[:obs] if total > obs else first
        else:
            data = _join(items, total)
        try:
            sent = chan.send(data)
        except OSError:
            chan.handle_error()
            return
        if not sent:
            _state(chan).blocked = True
            return
        _consume_sent(fifo, items, sent)
        _uncount(chan, sent)
        _state(chan).blocked = False
        if sent != len(data):
            return
        attempts -= taken


def chat_send_joined(chan, fifo, Py_ssize_t attempts):
    """Send what ``attempts`` CPython send attempts would, in fewer sends.

    The first ``attempts`` queued items must be non-empty data.  CPython
    sends one item (at most ``ac_out_buffer_size`` bytes) per attempt and,
    once a send falls short, the rest send nothing; joining the same items
    into sends of at most ``ac_out_buffer_size`` bytes, stopping at the
    first short send, puts the same bytes on the wire.
    """
    return _send_joined(chan, fifo, attempts)

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
    return self.terminator


def chat_initiate_send(self):
    """Try to send queued output now (one send() attempt)."""
    _drain(self, self.producer_fifo)


cdef object _flush_owed(self, bint exact):
    cdef InBuffer state = _state(self)
    cdef Py_ssize_t owed = state.owed
    if not owed:
        return
    state.owed = 0
    fifo = self.producer_fifo
    # (one owed send is one drain either way: joining has nothing to join)
    if owed > 1 and not exact and _leading_data(fifo, owed):
        _send_joined(self, fifo, owed)
        return
    for _ in range(owed):
        if not fifo:
            return
        _drain(self, fifo)


def chat_flush_owed(self, exact=False):
    """Make the sends that pushes deferred during handle_read.

    Each deferred push owes one CPython ``initiate_send``.  When those would
    only send the data at the head, the items are joined
    (``chat_send_joined``); otherwise, or with ``exact`` (the caller is
    about to drop or overtake queued data), they are replayed one by one.
    """
    return _flush_owed(self, exact)


def chat_handle_read(self):
    """Read once from the socket and deliver every frame it completes.

    ``push()`` calls made meanwhile are sent together at the end, unless
    ``initiate_send`` is overridden (then each push sends, as in CPython).
    """
    try:
        data = self.recv(self.ac_in_buffer_size)
    except BlockingIOError:
        return
    except OSError:
        self.handle_error()
        return
    if isinstance(data, str) and self.use_encoding:
        # CPython 3.11 raises TypeError here (it passes the type ``str``);
        # kept so that such code fails the same way.
        data = bytes(str, self.encoding)
    cls = type(self)
    cdef int mode = terminator_mode(self)
    cdef InBuffer inbuf = <InBuffer?>self._ac_in
    if (inbuf.corked or not self.ac_coalesce_pushes
            or cls.initiate_send is not chat_initiate_send):
        _feed(self, inbuf, data, mode)
        return
    fifo = self.producer_fifo
    cdef bint was_empty = not fifo
    inbuf.corked = True
    try:
        _feed(self, inbuf, data, mode)
    finally:
        inbuf.corked = False
        _flush_owed(self, False)
        if was_empty and _loop_hook is not None and self.producer_fifo:
            _loop_hook(self)


def chat_push(self, data):
    """Queue ``data`` (bytes-like) for sending and try to send now."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data argument must be byte-ish (%r)", type(data))
    cdef Py_ssize_t size = self.ac_out_buffer_size
    cdef Py_ssize_t length = len(data)
    cdef Py_ssize_t start
    fifo = self.producer_fifo
    cdef bint was_empty = not fifo
    if self.ac_out_high_water is not None:
        self._ac_out_queued += length
    if length > size:
        for start in range(0, length, size):
            fifo.append(data[start:start + size])
    else:
        fifo.append(data)
    cdef InBuffer state = _state(self)
    if state.corked:
        head = fifo[0]
        if _is_joinable(head) and head:
            # CPython would send part of the head now; it is sent, joined
            # with what follows, when handle_read returns
            state.owed += 1
            return  # handle_read calls the loop hook when it ends
        _flush_owed(self, True)
    head = fifo[0] if fifo else None
    if not (state.blocked and _is_joinable(head) and head):
        # (skipped: a send just returned 0 and CPython's initiate_send would
        # only retry sending the data at the head, a system call that takes
        # nothing until the loop reports the socket writable.  Any other
        # head -- a producer, None -- is handled now, as CPython.)
        self.initiate_send()
    if was_empty and _loop_hook is not None and fifo:
        _loop_hook(self)


def chat_set_terminator(self, term):
    """Set the input delimiter: bytes of any length, a byte count, or None."""
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


def chat__collect_incoming_data(self, data):
    """Default collector: append ``data`` to ``self.incoming``."""
    self.incoming.append(data)


def chat__get_data(self):
    """Return and clear what ``_collect_incoming_data`` gathered."""
    data = b"".join(self.incoming)
    del self.incoming[:]
    return data


# ---------------------------------------------------------------------------
# The hot methods of asyncore.dispatcher (chan_*) and the rest of
# async_chat's, bound into those classes: a request served by the library's
# own code then runs no Python frame but the user's handlers.

DISCONNECTED = _spec.DISCONNECTED
cdef object _DISCONNECTED = DISCONNECTED
cdef object _MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
cdef object _socket_type = socket.socket


def chan_recv(self, buffer_size):
    """Read up to ``buffer_size`` bytes; ``b""`` means the peer went away (closed)."""
    while True:
        try:
            data = self.socket.recv(buffer_size)
            break
        except InterruptedError:
            continue  # a wrapped socket may not retry EINTR itself
        except OSError as why:
            if why.errno in _DISCONNECTED:
                self.handle_close()
                return b""
            raise
    if not data:
        self.handle_close()
        return b""
    return data


def chan_send(self, data):
    """Send what the socket takes now; return the byte count (0 if it would block)."""
    return _chan_send(self, data)


cdef object _chan_send(self, data):
    sock = self.socket
    while True:
        try:
            if type(sock) is _socket_type and _MSG_NOSIGNAL:
                return sock.send(data, _MSG_NOSIGNAL)
            return sock.send(data)
        except InterruptedError:
            continue
        except OSError as why:
            code = why.errno
            if code == EWOULDBLOCK:
                return 0
            if code in _DISCONNECTED:
                self.handle_close()
                return 0
            raise


def chan_readable(self):
    """Whether the loop should watch for input (always, by default)."""
    return True


def chan_writable(self):
    """Whether the loop should watch for writability (always, by default)."""
    return True


def chan_handle_read_event(self):
    """The loop saw input: accept, finish a connect, or read."""
    if self.accepting:
        self.handle_accept()
    elif not self.connected:
        if self.connecting:
            self.handle_connect_event()
        self.handle_read()
    else:
        self.handle_read()


def chan_handle_write_event(self):
    """The loop saw the socket writable: finish a connect, then write."""
    if self.accepting:
        return
    if not self.connected and self.connecting:
        self.handle_connect_event()
    self.handle_write()


def chat_readable(self):
    """Watch for input unless output back-pressure paused reading."""
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


def chat_writable(self):
    """Watch for writability while output is queued or a connect is pending."""
    return self.producer_fifo or (not self.connected)


def chat_handle_write(self):
    """The socket is writable: send more of the queued output."""
    _state(self).blocked = False
    self.initiate_send()


def chat_send(self, data):
    """Send ``data`` directly, after any output pushed earlier (bypasses the queue)."""
    _flush_owed(self, True)
    send = _dispatcher_class.send  # looked up now, as in the pure kernel
    if send is chan_send:
        return _chan_send(self, data)
    return send(self, data)


cdef object _dispatcher_class = None


def set_dispatcher_class(cls):
    """Tell the kernels which class is ``asyncore.dispatcher``."""
    global _dispatcher_class
    _dispatcher_class = cls
