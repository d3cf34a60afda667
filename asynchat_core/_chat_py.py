"""Kernels of ``async_chat``: the one source of both implementations.

Run as Python, this module is the "python" implementation (``_chat_py``).
setup.py also compiles this very file with Cython in pure-Python mode into
``asynchat_core._chat_c``, the "cython" implementation: the augmenting
``src/asynchat_core/_chat_c.pxd`` gives the classes C layouts and the
helpers C types, and what only C can do (byte scanning with
``memchr``/``memcmp``, C locks, the per-thread nesting guard) comes from
``src/asynchat_core/_cbits.pxd``.  The Python stand-ins for those C helpers
are defined below under ``if not cython.compiled``; everything else is the
same code in both builds, so the two cannot drift apart.

Two ideas make these functions fast without changing what users see:

* ``InputState`` keeps the unread input as ``(data, pos)``.  Consuming a
  frame moves ``pos`` instead of copying the rest of the buffer, so a read
  holding thousands of frames costs linear, not quadratic, time.
  ``ac_in_buffer`` is materialised only when user code actually reads it.
* Replies pushed for pipelined requests (a frame followed by more input in
  the same read) are held in ``OutputState.pending`` and go out in one
  ``send()`` with the next reply; the queue, the callbacks and the byte
  stream are CPython's (see ``OutputState`` for the rules).

Every user callback may change the terminator, the buffers or the queue, or
close the channel, so all state is re-read after each callback, exactly as
CPython 3.11's ``asynchat`` does.  Python code may also put anything into
the channel's attributes: every value the C build would trust (the types of
``_ac_in`` and ``_ac_out``, offsets, integer terminators, frame counts) is
checked or clamped here first, in both builds.
"""

import _socket
import _thread
import errno as _errno
import socket as _socket_module
import sys
from collections import deque as _deque
from operator import index as _index
from types import MethodType as _MethodType

# one exception class for both builds (asynchat_core/_errors.py)
from asynchat_core._errors import FrameTooLarge
# the framers' base class alone (framing.py, its struct and the framer
# kernel are imported when a framer is used: import time, issue 18)
from asynchat_core._framer import Framer as _Framer

# typing costs a fifth of the import time (issue 18): only the type checker
# reads it (mypy treats any name TYPE_CHECKING as true)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Cython's compiler must see "import cython"; run as Python, the stand-in,
# Cython installed or not (its shadow module loads typing: issue 18).  The
# build names compiled modules *_c (asynchat_core/_cython.py)
if __name__.endswith("_c"):
    import cython
else:
    from ._cython import cython

# from the loop module of the same build: the dispatcher's send, the
# exceptions that mean "try later", and (compiled: the C functions cimported
# in _chat_c.pxd) sock_recv, sock_send and ac_sock_send; the errnos that
# mean "the peer is gone"
if cython.compiled:
    from asynchat_core._loop_c import DISCONNECTED, dispatcher_recv, dispatcher_send, ssl_wants_io
else:
    from ._loop_py import DISCONNECTED, dispatcher_recv, dispatcher_send, ssl_wants_io
    from ._loop_py import ac_sock_send, sock_recv, sock_send

# the push of a reply sent at once (_push_now): a plain socket.socket whose
# send() is _socket's own
_EWOULDBLOCK = _errno.EWOULDBLOCK
_MSG_NOSIGNAL = getattr(_socket_module, "MSG_NOSIGNAL", 0)
_socket_type = _socket_module.socket
_c_socket_send = _socket.socket.send  # (what socket.socket.send is unless patched)


# framers (asynchat_core/framing.py): the kernel of the same build is
# imported when the first framer reaches it (import time, issue 18)
def _first_frame_deliver(chan, inbuf, out, slot, eof):
    # replaces itself with the kernel's own function: the framer path then
    # calls that directly, and the classic path never comes here
    global frame_deliver
    if cython.compiled:
        from asynchat_core._frame_c import frame_deliver as kernel
    else:
        from ._frame_py import frame_deliver as kernel
    frame_deliver = kernel
    return kernel(chan, inbuf, out, slot, eof)


frame_deliver = _first_frame_deliver


__all__ = [
    "FrameTooLarge", "InputState", "TerminatorSlot", "terminator_slot", "UNSET",
    "OutputState", "SocketSlot", "socket_slot", "chan_output", "FifoSlot", "fifo_slot",
    "chat_init_fifo",
    "TERM_CALL", "TERM_ATTR", "TERM_SLOT", "terminator_mode", "find_prefix_at_end", "chat_feed",
    "chat_deliver", "chat_drain", "chat_flush", "chat_get_terminator", "chat_set_terminator",
    "chat__collect_incoming_data", "chat__get_data",
    "chat_handle_read", "chat_initiate_send", "chat_push", "set_loop_hook",
    "chat_readable", "chat_writable", "chat_handle_write", "chat_send", "set_dispatcher_class",
]

if not cython.compiled:
    # Python stand-ins for the C helpers of _cbits.pxd (the compiled build
    # cimports those instead, in _chat_c.pxd).
    #
    # What only C needs is called only under ``if cython.compiled:`` (a
    # constant there, one module attribute read here), so Python makes no
    # call that would do nothing: the nesting guard (the C build counts
    # nested kernel calls per thread because calls between C functions run
    # no Python frame; here every call is a Python frame, and the
    # interpreter's recursion limit stops a cycle), the byte scanners (they
    # work on the memory of bytes objects; Python takes the generic path,
    # bytes methods and slicing) and the C lock's primitives (Python's
    # output lock is an RLock, see OutputState).  Their names stay defined
    # so that the compiled-only code is valid Python; calling one is a bug.

    def _compiled_only(*args):
        raise AssertionError("asynchat_core: a compiled-only helper called from Python")

    ac_nest = ac_unnest = _compiled_only
    ac_record_bits = ac_record_set = ac_type_lookup = ac_method = ac_getattr = _compiled_only
    ac_call0 = ac_call1 = ac_acache_state = ac_acache_fill_count = ac_truth_init = _compiled_only
    ac_call_o = set_read_kernel = _compiled_only
    _term_record = _send_record = _sock_record = _fifo_record = None  # (compiled: C structs, _chat_c.pxd)
    find_bytes = prefix_at_end_bytes = bytes_slice = exact_count = _compiled_only
    thread_ident = lock_new = lock_try = lock_wait = lock_release = lock_free = _compiled_only

    buffer_size = len
    PY_SSIZE_T_MAX = sys.maxsize
    NOT_A_SIZE = -PY_SSIZE_T_MAX - 1

    def out_size(value):
        # ac_out_buffer_size clamped to the C range, NOT_A_SIZE if it has no
        # __index__ (CPython's comparisons and slices then fail: the callers
        # fail as they do)
        if not hasattr(type(value), "__index__"):
            return NOT_A_SIZE
        size = _index(value)
        if size > PY_SSIZE_T_MAX:
            return PY_SSIZE_T_MAX
        return size if size > NOT_A_SIZE else NOT_A_SIZE + 1

    def is_method_of(bound, function):
        # bound is exactly function bound to an object (not overridden)
        return type(bound) is _MethodType and bound.__func__ is function

if cython.compiled:
    # truth tests of exact deques (producer_fifo) by their length, without
    # PyObject_IsTrue (_cbits.pxd, ac_truth)
    ac_truth_init(_deque)


class _Unset:
    __slots__ = ()

    def __repr__(self):
        return "<terminator not set>"


UNSET = _Unset()
_UNSET = UNSET  # (compiled: a C global, no module lookup)
_MAXSIZE = sys.maxsize


class TerminatorSlot:
    """``async_chat.terminator``: stored in the channel's ``InputState``.

    Reads, assignments and ``del`` behave as for a plain instance
    attribute (AttributeError until set).
    """

    __slots__ = ()

    def __get__(self, obj, cls):
        if obj is None:
            return self  # read from the class (as SocketSlot.__get__)
        if cython.compiled:
            nest = ac_nest()
        try:
            try:
                state = obj._ac_in
            except AttributeError:
                value = _UNSET
            else:
                # (compiled: a C cast once checked; Python: the same check
                # without a call)
                if cython.compiled:
                    value = _input_check(obj, state).terminator
                elif isinstance(state, InputState):
                    value = state.terminator
                else:
                    raise _input_type_error(obj, state)
            if value is _UNSET:
                raise AttributeError(
                    "%r object has no attribute 'terminator'" % type(obj).__name__
                )
            return value
        finally:
            if cython.compiled:
                ac_unnest(nest)

    def __set__(self, obj, value):
        if cython.compiled:
            nest = ac_nest()
        try:
            try:
                state = obj._ac_in
            except AttributeError:
                # set before async_chat.__init__ ran
                inbuf = InputState(b"")
                obj._ac_in = inbuf
            else:
                if cython.compiled:
                    inbuf = _input_check(obj, state)
                elif isinstance(state, InputState):
                    inbuf = state
                else:
                    raise _input_type_error(obj, state)
            inbuf.terminator = value
        finally:
            if cython.compiled:
                ac_unnest(nest)

    def __delete__(self, obj):
        if cython.compiled:
            nest = ac_nest()
        try:
            self.__get__(obj, None)  # AttributeError if not set
            _input(obj).terminator = _UNSET
        finally:
            if cython.compiled:
                ac_unnest(nest)


terminator_slot = TerminatorSlot()
_terminator_slot = terminator_slot


class InputState:
    """The input side of one channel (``async_chat._ac_in``).

    Unread input: ``data[pos:]`` is ``ac_in_buffer``.  ``frame`` counts the
    bytes of the current frame already handed to ``collect_incoming_data``,
    for the ``ac_max_frame_size`` cap.  ``terminator`` backs
    ``async_chat.terminator`` (``UNSET`` until set).  (Output state lives
    in ``OutputState``.)
    """

    __slots__ = ("data", "pos", "frame", "terminator")

    def __init__(self, data=b""):
        self.data = data
        self.pos = 0
        self.frame = 0
        self.terminator = UNSET

    def value(self):
        """Return the unread input, compacting it first (what users see)."""
        if self.pos:
            self.data = self.data[self.pos:]
            self.pos = 0
        return self.data

    def assign(self, value):
        """Replace the unread input (``ac_in_buffer = value``)."""
        self.data = value
        self.pos = 0

    def discard(self):
        """Drop the unread input and forget the current frame."""
        self.data = b""
        self.pos = 0
        self.frame = 0


def _input_check(chan, state):
    # Python code may have put anything in _ac_in: never trust its type
    if not isinstance(state, InputState):
        raise _input_type_error(chan, state)
    return state


def _input_type_error(chan, state):
    return TypeError("%s._ac_in must be an InputState, not %s"
                     % (type(chan).__name__, type(state).__name__))


def _input(chan):
    # _input_check(chan, chan._ac_in), one call less in Python
    state = ac_getattr(chan, "_ac_in") if cython.compiled else chan._ac_in
    if not isinstance(state, InputState):
        raise _input_type_error(chan, state)
    return state


def find_prefix_at_end(haystack, needle):
    """Length of the longest proper prefix of ``needle`` ending ``haystack``.

    Assumes ``needle`` itself was already searched for.  Works on ``str`` and
    on bytes-like objects, like the function of the same name in asynchat.
    """
    if not needle:
        return -1  # CPython's loop ends on needle[:-1] == '' and returns -1
    return _prefix_at_end(haystack, 0, needle)


def _prefix_at_end(data, pos, needle):
    # find_prefix_at_end(data[pos:], needle) without slicing data
    if cython.compiled:
        size = prefix_at_end_bytes(data, pos, needle)
        if size != -2:
            return size  # (both bytes: memcmp)
    size = len(needle) - 1
    while size > 0:
        if data.endswith(needle[:size], pos):
            return size
        size -= 1
    return 0


# _find and _slice are the compiled build's fast paths: on hot paths Python
# calls data.find and slices directly (a Python call costs more than the
# work), elsewhere these take the same generic path


def _find(data, pos, term):
    # data.find(term, pos), term non-empty
    if cython.compiled:
        index = find_bytes(data, pos, term)
        if index != -2:
            return index  # (both bytes: memchr and memcmp)
    return data.find(term, pos)


def _slice(data, start, stop):
    # data[start:stop], 0 <= start <= stop <= len(data)
    if cython.compiled:
        piece = bytes_slice(data, start, stop)
        if piece is not None:
            return piece  # (bytes)
    return data[start:stop]


def _rest(data, pos):
    # data[pos:]; the object itself from 0, as CPython hands over its buffer
    if pos == 0:
        return data
    return _slice(data, pos, buffer_size(data))


def _advance(inbuf, data, pos, offset, slice_start):
    """Drop consumed input after a callback.

    CPython evaluates ``self.ac_in_buffer[slice_start:]`` *after* the
    callback, so if the callback replaced or read the buffer, the slice is
    taken from the buffer as it is now.
    """
    if inbuf.data is data and inbuf.pos == pos:
        inbuf.pos = pos + offset
    else:
        inbuf.assign(inbuf.value()[slice_start:])
    return 0


# how chat_deliver finds the terminator
TERM_CALL = 0   # get_terminator() is overridden: call it every time
TERM_ATTR = 1   # read and write chan.terminator
TERM_SLOT = 2   # async_chat's own descriptor: use inbuf.terminator
# (compiled: C ints)
_TERM_CALL = TERM_CALL
_TERM_ATTR = TERM_ATTR
_TERM_SLOT = TERM_SLOT


def terminator_mode(chan):
    """The TERM_* mode for ``chan`` (checked once per read)."""
    unbound = 0  # (compiled: ac_method sets it)
    if cython.compiled:
        # (no bound method: _cbits.pxd, ac_method)
        get = ac_method(chan, "get_terminator", cython.address(unbound))
        if not (get is chat_get_terminator if unbound else is_method_of(get, chat_get_terminator)):
            return _TERM_CALL
        # the class's answer, from its per-type record (_cbits.pxd)
        slot = ac_record_bits(cython.address(_term_record), type(chan))
        if slot < 0:
            slot = _field_bit(cython.address(_term_record), type(chan), "terminator",
                              _terminator_slot)
        return _TERM_SLOT if slot == 1 else _TERM_ATTR
    # (Python build: is_method_of inline, no call)
    get = chan.get_terminator
    if not (type(get) is _MethodType and get.__func__ is chat_get_terminator):
        return _TERM_CALL
    # (Python build: _is_field inline, one call less at every read; with
    # a plain metaclass the class's own attribute lookup is type's)
    cls = type(chan)
    if type(cls) is not type:
        return _TERM_SLOT if _is_field(cls, "terminator", _terminator_slot) else _TERM_ATTR
    if (getattr(cls, "terminator", None) is _terminator_slot
            and cls.__getattribute__ is _object_getattribute):
        return _TERM_SLOT
    return _TERM_ATTR


_object_getattribute: "Any" = object.__getattribute__
_object_setattr: "Any" = object.__setattr__
_type_getattribute: "Any" = type.__getattribute__


def _is_field(cls, name, slot):
    # Whether ``instance.<name>`` is the library's ``slot`` (``terminator``:
    # the input state's field; ``socket``: the output state's), so the chat
    # code may read the field instead: the name found as an instance's
    # lookup finds it (the MRO's own dicts, never through a metaclass's
    # __getattribute__; a data descriptor, so the instance cannot shadow
    # it), under object's own __getattribute__ (a class's override may
    # answer anything, and is then asked by name).
    if cython.compiled:
        return (ac_type_lookup(cls, name, None) is slot
                and ac_type_lookup(cls, "__getattribute__", None) is _object_getattribute)
    # (Python build, inline in terminator_mode and _raw_send too: type's own
    # lookup in C, which the metaclass's __getattribute__ does not see; our
    # slots and object's __getattribute__ come back as themselves)
    try:
        return (_type_getattribute(cls, name) is slot
                and _type_getattribute(cls, "__getattribute__") is _object_getattribute)
    except AttributeError:
        return False


def _field_bit(record, cls, name, slot):
    # _is_field as a per-type record's bit (1 or 0), recorded for a class
    # whose metaclass is ``type`` itself (others are asked every time)
    bit = 1 if _is_field(cls, name, slot) else 0
    if type(cls) is type:
        ac_record_set(record, cls, bit)
    return bit


def chat_feed(chan, inbuf, data, mode, out=None):
    """Append received ``data`` to ``inbuf`` and deliver what it completes.

    This is ``async_chat.handle_read`` after its ``recv()``; ``mode`` is
    ``terminator_mode(chan)``; ``out`` the ``OutputState`` whose
    ``batching`` to set around ``found_terminator``, or None.
    """
    if cython.compiled:
        nest = ac_nest()
    try:
        _feed(chan, _input_check(chan, inbuf), data, mode, _output_check(chan, out))
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _feed(chan, inbuf, data, mode, out):
    current = inbuf.data
    if type(current) is bytes and type(data) is bytes and inbuf.pos >= buffer_size(current):
        inbuf.data = data
        inbuf.pos = 0
    else:
        inbuf.assign(inbuf.value() + data)
    if mode == _TERM_SLOT:
        term = inbuf.terminator
        # a framer (asynchat_core/framing.py) takes whole messages; a classic
        # terminator costs only the type test.  0: stop; 1: a hook set a
        # classic terminator, which _deliver takes from here
        if type(term) is not bytes and isinstance(term, _Framer):
            if not frame_deliver(chan, inbuf, out, 1, buffer_size(data) == 0):
                return 0
    return _deliver(chan, inbuf, mode, out)


def _frame_limit(value):
    """A set ``ac_max_frame_size`` (``value``, not None: the callers read
    None, no cap, themselves) as a byte count.

    It must be an integer (anything ``operator.index`` accepts): a float
    such as ``1000.0`` raises TypeError in both builds, as sizes do
    elsewhere in Python.  Counts past ``sys.maxsize`` mean the same as
    ``sys.maxsize``.
    """
    if type(value) is not int:
        try:
            value = _index(value)
        except TypeError:
            raise TypeError("ac_max_frame_size must be None or an integer, not %s"
                            % type(value).__name__) from None
    if value < 0:
        raise ValueError("ac_max_frame_size must be None or >= 0")
    if value > _MAXSIZE:
        return _MAXSIZE
    return value


def _held(inbuf):
    # frame is public (writable by Python code): never trust its sign
    frame = inbuf.frame
    return frame if frame > 0 else 0


def _add_frame(inbuf, size):
    # saturating: a poked frame value must not overflow a C count
    held = _held(inbuf)
    inbuf.frame = PY_SSIZE_T_MAX if size > PY_SSIZE_T_MAX - held else held + size
    return 0


def _check_frame(inbuf, size, limit):
    # with a cap (limit >= 0, which callers test first: no call without
    # one); 0 <= held, so limit - held cannot overflow
    held = _held(inbuf)
    if held > limit or size > limit - held:
        raise FrameTooLarge(
            held + size if size <= PY_SSIZE_T_MAX - held else PY_SSIZE_T_MAX, limit)
    return 0


def _set_term(chan, inbuf, mode, value):
    if mode == _TERM_SLOT:
        inbuf.terminator = value
    else:
        chan.terminator = value
    return 0


def _term_now(chan, inbuf, mode):
    # the attribute itself, as CPython re-reads self.terminator
    if mode == _TERM_SLOT:
        term = inbuf.terminator
        return chan.terminator if term is _UNSET else term
    return chan.terminator


def _found(chan, inbuf, out):
    # found_terminator, batching replies while more input follows this
    # frame (OutputState, rule 2)
    if out is None or buffer_size(inbuf.data) <= inbuf.pos:
        if cython.compiled:
            ac_call0(chan, "found_terminator")  # (the lookup cache, _cbits.pxd)
        else:
            chan.found_terminator()
        return 0
    if out.batch_ok < 0:
        # overridden output methods see CPython's calls, one per push (the
        # read's answer; push() and the drain ask again before holding, as
        # found_terminator may override them or replace producer_fifo)
        out.batch_ok = (is_method_of(chan.send, chat_send)
                        and is_method_of(chan.initiate_send, chat_initiate_send))
    out.batching = out.batch_ok
    if cython.compiled:
        ac_call0(chan, "found_terminator")
    else:
        chan.found_terminator()
    out.batching = False  # (if it raised, handle_read resets it)
    return 0


def chat_deliver(chan, inbuf, mode, out=None):
    """Run the terminator loop over the buffered input until it needs more."""
    if cython.compiled:
        nest = ac_nest()
    try:
        _deliver(chan, _input_check(chan, inbuf), mode, _output_check(chan, out))
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _deliver(chan, inbuf, mode, out):
    try:
        # (compiled: the lookup cache, _cbits.pxd, here and below)
        cap = ac_getattr(chan, "ac_max_frame_size") if cython.compiled else chan.ac_max_frame_size
    except AttributeError:
        cap = None
    limit = -1 if cap is None else _frame_limit(cap)  # (no call for the common None)
    while True:
        data = inbuf.data
        pos = inbuf.pos
        if pos < 0:
            inbuf.value()  # what ac_in_buffer shows: Python's data[pos:]
            continue
        size = buffer_size(data) - pos
        if size <= 0:
            return
        # the terminator, as CPython reads it (once per frame)
        if mode == _TERM_SLOT:
            term = inbuf.terminator
            if term is _UNSET:
                term = chan.terminator  # raises AttributeError as CPython does
        elif mode == _TERM_ATTR:
            term = chan.terminator
        else:
            term = chan.get_terminator()
        # a non-empty bytes terminator (the common case: no user code runs
        # to tell) is searched for at once; else CPython's order: "not
        # term", then int, then a string
        if type(term) is bytes and (term_len := buffer_size(term)) > 0:
            pass  # searched for below
        elif not term:
            inbuf.frame = 0  # a stream without frames: nothing is held
            chan.collect_incoming_data(_rest(data, pos))
            inbuf.assign(b"")
            continue
        elif isinstance(term, int):
            # term as a byte count if exactly an int in 0..PY_SSIZE_T_MAX,
            # else -1 (a subclass may lie in comparisons)
            if cython.compiled:
                count = exact_count(term)
            elif type(term) is int and 0 <= term <= PY_SSIZE_T_MAX:
                count = term
            else:
                count = -1
            if count < 0:
                _deliver_odd_count(chan, inbuf, mode, out, data, pos, size, term, limit)
                continue
            if limit >= 0 and count > limit:
                raise FrameTooLarge(count, limit)
            if count > size:
                _add_frame(inbuf, size)
                chan.collect_incoming_data(_rest(data, pos))
                inbuf.assign(b"")
                _set_term(chan, inbuf, mode, _term_now(chan, inbuf, mode) - size)
            else:
                if cython.compiled:
                    chunk = _slice(data, pos, pos + count)
                else:
                    chunk = data[pos:pos + count]
                chan.collect_incoming_data(chunk)
                if inbuf.data is data and inbuf.pos == pos:
                    inbuf.pos = pos + count  # (_advance's common case, no call)
                else:
                    _advance(inbuf, data, pos, count, count)
                inbuf.frame = 0
                _set_term(chan, inbuf, mode, 0)
                _found(chan, inbuf, out)
            continue
        elif isinstance(term, _Framer):  # set by a hook: _frame_py.py
            if not frame_deliver(chan, inbuf, out, mode == _TERM_SLOT, 0):
                return
            continue
        else:
            term_len = len(term)
        # a string terminator
        if cython.compiled:
            index = _find(data, pos, term)
        else:
            index = data.find(term, pos)
        if index >= 0:
            index -= pos
            if limit >= 0:
                _check_frame(inbuf, index, limit)
            if index > 0:
                # an empty chunk is never reported
                if cython.compiled:
                    chunk = _slice(data, pos, pos + index)
                else:
                    chunk = data[pos:pos + index]
                if cython.compiled:
                    ac_call1(chan, "collect_incoming_data", chunk)
                else:
                    chan.collect_incoming_data(chunk)
            if inbuf.data is data and inbuf.pos == pos:
                inbuf.pos = pos + index + term_len  # (_advance's common case, no call)
            else:
                _advance(inbuf, data, pos, index + term_len, index + term_len)
            inbuf.frame = 0
            _found(chan, inbuf, out)
        else:
            if limit >= 0:
                _check_frame(inbuf, size, limit)
            partial = _prefix_at_end(data, pos, term)
            if not partial:
                _add_frame(inbuf, size)
                chan.collect_incoming_data(_rest(data, pos))
                inbuf.assign(b"")
            else:
                if partial != size:
                    # keep the possible start of a terminator for later
                    _add_frame(inbuf, size - partial)
                    chan.collect_incoming_data(_slice(data, pos, pos + size - partial))
                    _advance(inbuf, data, pos, size - partial, -partial)
                return


def _deliver_odd_count(chan, inbuf, mode, out, data, pos, size, term, limit):
    """One step of the terminator loop for an odd integer terminator.

    An ``int`` subclass (its comparisons may say anything), a negative
    count (set without ``set_terminator``) or one past ``sys.maxsize``:
    CPython's arithmetic on the object itself, with Python slicing only.
    """
    if limit >= 0 and term > limit:
        raise FrameTooLarge(term, limit)
    if size < term:
        _add_frame(inbuf, size)
        chan.collect_incoming_data(_rest(data, pos))
        inbuf.assign(b"")
        _set_term(chan, inbuf, mode, _term_now(chan, inbuf, mode) - size)
        return 0
    # a negative count: CPython slices with a negative index
    split = term if term >= 0 else max(0, size + term)
    chan.collect_incoming_data(data[pos:pos + split])
    if inbuf.data is data and inbuf.pos == pos:
        rest = data[pos:]
    else:
        rest = inbuf.value()  # replaced or read by the callback
    inbuf.assign(rest[term:])
    inbuf.frame = 0
    _set_term(chan, inbuf, mode, 0)
    _found(chan, inbuf, out)
    return 0


_deque_append = _deque.append  # (push: an exact deque's append, called directly)
_BYTES_LIKE = (bytes, bytearray, memoryview)


class OutputState:
    """The output path of one channel (``async_chat._ac_out``); the only
    owner of output state besides the public ``producer_fifo``.

    The rules, which make coalescing invisible to the channel's own code:

    1. ``producer_fifo`` is drained exactly as CPython 3.11 does: one item
       (at most ``ac_out_buffer_size`` bytes) per ``initiate_send``, with
       ``more()``, ``close_when_done()``'s None and ``handle_close`` at the
       same moments.
    2. ``batching`` is true only while ``found_terminator`` runs for a frame
       that is followed by more input in the same read: the peer pipelined,
       so it is not waiting for this reply.  Only then, and only while the
       channel's ``send`` and ``initiate_send`` are the library's own and
       ``producer_fifo`` is a plain deque (asked again at each push: a
       handler may change them inside the read), a send the drain makes
       takes the bytes into ``pending`` and reports them all sent, so the
       queue evolves as in CPython with a socket that takes everything.
    3. ``pending`` precedes everything in ``producer_fifo`` on the wire.  It
       is sent (``chat_flush``) in one ``send()``, together with the next
       item if both fit in ``ac_out_buffer_size``: by the next send made
       outside a batch, when ``handle_read`` returns, before it would pass
       ``ac_out_buffer_size``, and before anything reads or replaces
       ``socket`` (a TLS wrap, a direct write) or calls ``send``,
       ``close`` or ``discard_buffers``.  What the socket does not take
       goes back to the head of ``producer_fifo``.
    4. The state's lock is held around every ``recv`` and every send
       attempt of the kernels, so a ``push()`` from another thread never
       uses the socket (a TLS socket above all) while the loop's thread
       does, and no queued item is sent twice.  It is reentrant (the
       holder may call back into the kernels: ``more()``, ``handle_close``,
       a ``send`` override), it is released only by the thread that holds
       it, others wait for it without the GIL, and ``with state:`` holds
       it.
    5. ``sock`` backs ``async_chat.socket``; sends use it directly only
       where ``chan.socket`` is that field (the library's slot under
       object's ``__getattribute__``: a per-type record), else they read
       ``chan.socket`` as CPython does.
    """

    # (the last five: the compiled build's lock, C fields; the Python build
    # has none of them, see _on_rlock)
    __slots__ = ("sock", "pending", "held", "batching", "batch_ok", "fifo",
                 "_parked", "_waiting", "_sem", "_owner", "_depth")

    def __init__(self):
        self.sock = _UNSET
        # bytes objects, joined when sent; None while nothing is held (the
        # list is made by the first held reply: a quiet channel has none)
        self.pending = None
        self.held = 0  # their total size
        self.batching = False
        # whether send/initiate_send are the library's, asked once per read
        # and only when a frame has more input behind it (-1: not yet)
        self.batch_ok = -1
        # backs async_chat.producer_fifo (FifoSlot): _UNSET until
        # async_chat.__init__, _EMPTY_FIFO while it is the empty deque
        # nobody has read yet (made on first use: conn_memory)
        self.fifo = _UNSET
        # the lock of rule 4 is the state itself (no object of its own): the
        # compiled build's fields below, the Python build's RLock base (the
        # class is rebuilt on it after this definition).  Compiled, they
        # start as zeros; set again only while they still are (__init__ may
        # run twice: never reset a held or made lock)
        if (cython.compiled and self._sem == cython.NULL  # type: ignore[has-type]
                and self._depth == 0 and self._waiting == 0):  # type: ignore[has-type]
            self._sem = cython.NULL
            self._owner = 0
            self._depth = 0
            self._waiting = 0
            self._parked = False

    def __enter__(self):
        """Hold the lock (rule 4): no kernel recv or send on this channel meanwhile."""
        self._acquire()
        return self

    def __exit__(self, *exc_info):
        try:
            self._release()
        except RuntimeError:
            pass  # (Python's RLock) not ours: never release another thread's hold

    # The compiled build's lock (rule 4): reentrant for the thread that
    # holds it, which alone releases it (a release by another thread does
    # nothing); others wait for it without the GIL, signal handlers still
    # running.
    #
    # Every field is read and written with the GIL held (nothing is
    # compiled for free-threaded CPython), so a C lock is needed only to
    # make a thread *wait* while the holder runs without the GIL (a recv or
    # send, a callback that blocks).  It is therefore made by the first
    # thread that has to wait (conn_memory: a quiet channel has none), and
    # taken at once on the holder's behalf: that check, the allocation and
    # the take run with the GIL held and call no Python code, so no other
    # thread can run between them.  Once made, the last release keeps the C
    # lock taken ("parked") unless a thread waits for it, and the next
    # acquire, by any thread, takes the parked lock over with no lock
    # operation (issue 18, lever 3).  The C lock, if made, is taken iff
    # ``_depth > 0`` or ``_parked``, or it is being handed to a waiter
    # (``_waiting`` counts the threads in ``lock_wait``).
    #
    # The Python build uses a threading ``RLock`` instead (the class's
    # base), which keeps the same rules in C (its ``release`` by another
    # thread raises, which ``__exit__`` ignores): ``out._acquire()`` is then
    # one call, no Python frame.

    def __dealloc__(self):
        # the C lock goes with the state (released first if parked, as
        # _thread.lock does: a semaphore is destroyed free)
        if self._sem != cython.NULL:
            if self._parked:
                lock_release(self._sem)
            lock_free(self._sem)
            self._sem = cython.NULL

    def _acquire(self):
        me = thread_ident()
        if self._depth > 0:
            if self._owner == me:
                self._depth += 1
                return 0
            # held by a thread running without the GIL: wait for its release
            if self._sem == cython.NULL:
                # the first wait on this channel: the C lock, taken for the
                # holder (its release hands it over: _waiting is counted)
                self._sem = lock_new()
                if self._sem == cython.NULL:
                    raise MemoryError("cannot allocate the channel's output lock")
                lock_try(self._sem)
            self._waiting += 1
            try:
                lock_wait(self._sem)
            finally:
                self._waiting -= 1
        elif self._parked:
            self._parked = False  # taken over: no lock operation
        elif self._sem != cython.NULL and not lock_try(self._sem):
            # being handed to a waiter that has not run yet
            self._waiting += 1
            try:
                lock_wait(self._sem)
            finally:
                self._waiting -= 1
        # (no C lock yet: free, nothing to take)
        self._owner = me
        self._depth = 1
        return 0

    def _release(self):
        if self._depth <= 0 or self._owner != thread_ident():
            return  # not ours: never release another thread's hold
        self._depth -= 1
        if self._depth == 0:
            self._owner = 0
            if self._waiting:
                lock_release(self._sem)  # hand it over
            elif self._sem != cython.NULL:
                self._parked = True


if not cython.compiled:
    class _Hidden:
        # a base class's public method the compiled twin does not have
        __slots__ = ("name",)

        def __init__(self, name):
            self.name = name

        def __get__(self, obj, cls=None):
            raise AttributeError("'OutputState' object has no attribute %r" % self.name)

    def _on_rlock(cls):
        # The Python build's OutputState: the same class on _thread.RLock,
        # whose acquire/release are _acquire/_release (C calls, no frame);
        # its public names and repr stay the compiled twin's
        names = {name: value for name, value in vars(cls).items()
                 if name not in cls.__slots__ and name not in (
                     "__dict__", "__weakref__", "__dealloc__", "_acquire", "_release")}
        names["__slots__"] = tuple(name for name in cls.__slots__ if name[0] != "_")
        names["_acquire"] = _thread.RLock.acquire
        names["_release"] = _thread.RLock.release
        # every public name the RLock base brings (acquire, release, and
        # those later versions add, such as 3.14's locked)
        for name in dir(_thread.RLock):
            if name[0] != "_" and name not in names:
                names[name] = _Hidden(name)
        names["__repr__"] = object.__repr__
        return type(cls.__name__, (_thread.RLock,), names)

    OutputState = _on_rlock(OutputState)  # type: ignore[misc]


def _output(chan):
    try:
        out = ac_getattr(chan, "_ac_out") if cython.compiled else chan._ac_out
    except AttributeError:
        return _output_of(chan, _NO_OUTPUT)
    if not isinstance(out, OutputState):
        return _output_of(chan, out)
    return out


# what the Python build's inline read of _ac_out gives when it is missing
_NO_OUTPUT = object()


def _output_of(chan, out):
    # _output from ``chan._ac_out`` already read (``_NO_OUTPUT``: missing):
    # the Python build reads it inline and calls this unless it is exactly
    # an OutputState (issue 18: one Python frame less per use)
    if out is _NO_OUTPUT:
        state = OutputState()
        chan._ac_out = state
        return state
    if not isinstance(out, OutputState):
        # Python code may have put anything in _ac_out: never trust its type
        raise TypeError("%s._ac_out must be an OutputState, not %s"
                        % (type(chan).__name__, type(out).__name__))
    return out


def _output_check(chan, out):
    # an optional OutputState argument: None or the real type
    if out is not None and not isinstance(out, OutputState):
        raise TypeError("%s._ac_out must be an OutputState, not %s"
                        % (type(chan).__name__, type(out).__name__))
    return out


def chan_output(chan):
    """The channel's ``OutputState``, created if ``async_chat.__init__``
    did not run (CPython's push/send work without it)."""
    return _output(chan)


class SocketSlot:
    """``async_chat.socket``: kept in the channel's ``OutputState``.

    Reading or replacing it sends the replies still held in ``pending``
    first, so code that wraps the socket in TLS or writes to it directly
    sees CPython's order on the wire.
    """

    __slots__ = ()

    def __get__(self, obj, cls):
        if obj is None:
            # read from the class (the chat code's slot tests: first, so
            # that the Python build pays nothing more)
            return self
        if cython.compiled:
            nest = ac_nest()
        try:
            if cython.compiled:
                out = _output(obj)
            else:
                out = getattr(obj, "_ac_out", _NO_OUTPUT)  # (_output inline)
                if type(out) is not OutputState:
                    out = _output_of(obj, out)
            if out.pending:
                _chat_flush(obj, out)
            sock = out.sock
            if sock is _UNSET:
                raise AttributeError("%r object has no attribute 'socket'" % type(obj).__name__)
            return sock
        finally:
            if cython.compiled:
                ac_unnest(nest)

    def __set__(self, obj, value):
        if cython.compiled:
            nest = ac_nest()
        try:
            out = _output(obj)
            if out.pending:
                _chat_flush(obj, out)
            out.sock = value
        finally:
            if cython.compiled:
                ac_unnest(nest)

    def __delete__(self, obj):
        if cython.compiled:
            nest = ac_nest()
        try:
            self.__get__(obj, None)  # AttributeError if not set
            _output(obj).sock = _UNSET
        finally:
            if cython.compiled:
                ac_unnest(nest)


socket_slot = SocketSlot()


class _EmptyFifo:
    __slots__ = ()

    def __repr__(self):
        return "<producer_fifo not made yet>"


# OutputState.fifo of a channel whose producer_fifo is CPython's fresh empty
# deque, not made yet: FifoSlot makes it when something reads the attribute
_EMPTY_FIFO = _EmptyFifo()


class FifoSlot:
    """``async_chat.producer_fifo``: kept in the channel's ``OutputState``.

    CPython's ``async_chat.__init__`` stores an empty deque (760 bytes with
    its first block) in every channel.  Here it is made when the attribute
    is first read; until then the chat code, which reads the state's field
    directly, takes it for empty.  Reads, assignments and ``del`` behave as
    for a plain instance attribute (AttributeError until set).
    """

    __slots__ = ()

    def __get__(self, obj, cls):
        if obj is None:
            return self  # read from the class (as SocketSlot.__get__)
        if cython.compiled:
            nest = ac_nest()
        try:
            out = _output(obj)
            fifo = out.fifo
            if fifo is _EMPTY_FIFO:
                fifo = _made_fifo(out)
            elif fifo is _UNSET:
                raise AttributeError(
                    "%r object has no attribute 'producer_fifo'" % type(obj).__name__
                )
            return fifo
        finally:
            if cython.compiled:
                ac_unnest(nest)

    def __set__(self, obj, value):
        _output(obj).fifo = value

    def __delete__(self, obj):
        self.__get__(obj, None)  # AttributeError if not set
        _output(obj).fifo = _UNSET


fifo_slot = FifoSlot()


def _fifo(chan, out):
    """``chan.producer_fifo`` as the chat code needs it: ``_EMPTY_FIFO``
    (not made, empty) or the value CPython's read gives.  The state's field
    is read directly only where ``chan.producer_fifo`` is that field."""
    cls = type(chan)
    if cython.compiled:
        plain = ac_record_bits(cython.address(_fifo_record), cls)
        if plain < 0:
            plain = _field_bit(cython.address(_fifo_record), cls, "producer_fifo", fifo_slot)
    elif type(cls) is type:
        plain = (getattr(cls, "producer_fifo", None) is fifo_slot
                 and cls.__getattribute__ is _object_getattribute)
    else:
        plain = _is_field(cls, "producer_fifo", fifo_slot)
    if plain:
        fifo = out.fifo
        if fifo is not _UNSET:
            return fifo
    return chan.producer_fifo  # (AttributeError as CPython's, or the class's answer)


def chat_init_fifo(chan, out):
    """``self.producer_fifo = deque()`` of ``async_chat.__init__``: the
    deque is left to be made on first use where nothing could see it
    being stored (the attribute is the state's field and the class has
    object's ``__setattr__``)."""
    cls = type(chan)
    if (_is_field(cls, "producer_fifo", fifo_slot)
            and _type_getattribute(cls, "__setattr__") is _object_setattr):
        out.fifo = _EMPTY_FIFO
    else:
        chan.producer_fifo = _deque()


def _made_fifo(out):
    # The deque CPython had made at __init__, made now (or the fifo another
    # thread put there meanwhile).  Compiled, the field is read again after
    # the allocation (which may run a finaliser, so another thread) and
    # nothing runs between that read and the store; the Python build takes
    # a lock around the same steps (an RLock: a signal handler may read
    # the attribute in between)
    if cython.compiled:
        fifo = out.fifo
        if fifo is _EMPTY_FIFO:
            made: "_deque[Any]" = _deque()
            fifo = out.fifo
            if fifo is _EMPTY_FIFO:
                out.fifo = made
                fifo = made
        return fifo
    with _made_lock:
        fifo = out.fifo
        if fifo is _EMPTY_FIFO:
            made = _deque()
            fifo = out.fifo
            if fifo is _EMPTY_FIFO:
                out.fifo = made
                fifo = made
    return fifo


def _queue_first(out, item):
    # the item a push sent in part (or not at all) goes first, before what
    # another thread queued while the send ran (CPython had queued it first)
    fifo = _made_fifo(out)
    if type(fifo) is _deque:
        fifo.appendleft(item)
    else:
        fifo.insert(0, item)  # (replaced meanwhile by another thread)
    return fifo


_made_lock = _thread.RLock()


def _uncount(chan, sent):
    # output accounting for ac_out_high_water (only kept while it is set:
    # the caller tests that, so the common case makes no call)
    queued = chan._ac_out_queued - sent
    chan._ac_out_queued = queued if queued > 0 else 0
    return 0


# what _flush returns when data went back into producer_fifo unsent
_REQUEUED = object()


def _requeue(chan, rest):
    # bytes taken as sent that the socket refused: first in line again
    fifo = chan.producer_fifo
    was_empty = not fifo
    fifo.appendleft(rest)
    if chan.ac_out_high_water is not None:
        chan._ac_out_queued += len(rest)
    if was_empty and _loop_hook is not None:
        _loop_hook(chan)
    return 0


def _raw_send(chan, out, data):
    # asyncore.dispatcher.send, looked up now: patching it on the class
    # reaches async_chat too, as in CPython, where async_chat inherits it
    if cython.compiled:
        # asyncore.dispatcher's own send, by its per-type record (_cbits.pxd)
        own = ac_record_bits(cython.address(_send_record), _dispatcher_class)
        if own < 0:
            own = _send_own_of(_dispatcher_class)
        send = dispatcher_send if own == 1 else _dispatcher_class.send
    else:
        send = _dispatcher_class.send
    if send is dispatcher_send:
        # the output state's socket (``out``, the caller's, locked): pending
        # is being sent, so reading the socket attribute would only check
        # it again (issue 18, lever 5: no descriptor round trip).  Only
        # where ``chan.socket`` is that field: a class's __getattribute__
        # may give another socket, which CPython's send() uses
        cls = type(chan)
        if cython.compiled:
            plain = _socket_is_field(cls)
        elif type(cls) is type:
            # (Python build: _is_field inline, the class's own lookup is type's)
            plain = (getattr(cls, "socket", None) is socket_slot
                     and cls.__getattribute__ is _object_getattribute)
        else:
            plain = _is_field(cls, "socket", socket_slot)
        if plain:
            sock = out.sock
            if sock is not _UNSET:
                return sock_send(chan, sock, data)
    return send(chan, data)


def _socket_is_field(cls):
    # _is_field for ``socket``, from the class's per-type record (compiled
    # build only: the Python build tests inline, in _raw_send)
    plain = ac_record_bits(cython.address(_sock_record), cls)
    if plain < 0:
        plain = _field_bit(cython.address(_sock_record), cls, "socket", socket_slot)
    return plain


def _send_own_of(cls):
    # Whether cls.send is dispatcher_send itself, as a per-type record's
    # bit (1: recorded) or -1: look it up now.  Only a plain metaclass and
    # the function itself are recorded (a Cython function read from its
    # class is the function, as in Python).
    if type(cls) is not type:
        return -1
    if ac_type_lookup(cls, "send", _UNSET) is not dispatcher_send:
        return -1
    ac_record_set(cython.address(_send_record), cls, 1)
    return 1


def _own_send(chan):
    # whether chan.send, found as CPython's call finds it, is the library's
    unbound = 0  # (compiled: ac_method sets it)
    if cython.compiled:
        send = ac_method(chan, "send", cython.address(unbound))
        return send is chat_send if unbound else is_method_of(send, chat_send)
    return is_method_of(chan.send, chat_send)


def _own_initiate_send(chan):
    # whether chan.initiate_send, found as CPython's call finds it, is the library's
    unbound = 0  # (compiled: ac_method sets it)
    if cython.compiled:
        initiate_send = ac_method(chan, "initiate_send", cython.address(unbound))
        return (initiate_send is chat_initiate_send if unbound
                else is_method_of(initiate_send, chat_initiate_send))
    return is_method_of(chan.initiate_send, chat_initiate_send)


def _flush(chan, out, data):
    """Send ``pending`` (followed by ``data``, unless None) in one send().

    Returns how many bytes of ``data`` went out; -1 if ``pending`` did not
    all go and ``data`` was not given (the rest is queued again); or
    ``_REQUEUED`` if they did not all go together with ``data``: the whole
    refused rest, ``data``'s bytes included, is then first in
    ``producer_fifo`` as one item, because a TLS socket requires the retry
    of a refused write to start with the same bytes and be at least as
    long (OpenSSL: BAD_LENGTH).  The caller holds the lock.
    """
    held = out.held
    if held and data is not None and held + len(data) > chan.ac_out_buffer_size:
        if _flush(chan, out, None) < 0:
            return 0
        held = 0
    if held:
        pieces = out.pending
        out.pending = None
        out.held = 0
        if pieces is None:
            pieces = []  # (set so by Python code: held counts no bytes then)
        if data is not None:
            pieces.append(data)
        buf = b"".join(pieces)
    elif data is None:
        return 0
    else:
        return _raw_send(chan, out, data)
    try:
        sent = _raw_send(chan, out, buf)
    except OSError:
        chan.handle_error()
        return -1
    if sent >= held:
        return sent - held
    _requeue(chan, buf[sent:])
    return -1 if data is None else _REQUEUED


def _hold(out, data):
    # a copy of mutable data: CPython would have sent it already
    item = data if type(data) is bytes else bytes(data)
    if out.pending is None:
        out.pending = [item]  # the first held reply makes the list
    else:
        out.pending.append(item)
    out.held += len(data)
    return 0


def _chat_flush(chan, out):
    out._acquire()
    try:
        _flush(chan, out, None)
    finally:
        out._release()
    return 0


def chat_flush(self):
    """Send the replies held in ``pending`` now (rule 3 of OutputState)."""
    if cython.compiled:
        nest = ac_nest()
    try:
        out = _output(self)
        if out.pending:
            _chat_flush(self, out)
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _send_item(chan, out, fifo, data):
    """One send attempt of the drain: CPython's ``self.send(data)``."""
    unbound = 0  # (compiled: ac_method sets it)
    if cython.compiled:
        # (no bound method: _cbits.pxd, ac_method)
        send = ac_method(chan, "send", cython.address(unbound))
        own = send is chat_send if unbound else is_method_of(send, chat_send)
    else:
        send = chan.send
        own = type(send) is _MethodType and send.__func__ is chat_send  # (is_method_of, no call)
    if not (own and (type(data) is bytes or isinstance(data, _BYTES_LIKE))):
        # an overridden send(), or an odd item: exactly CPython's call
        if out.pending and _flush(chan, out, None) < 0:
            return 0
        if cython.compiled and unbound:
            return send(chan, data)  # found on the class: called with the channel
        return send(data)
    if out.batching and type(fifo) is _deque and _own_initiate_send(chan):
        # (a found_terminator may have overridden initiate_send or replaced
        # producer_fifo since the read began: then CPython's calls)
        if out.pending and out.held + len(data) > chan.ac_out_buffer_size:
            if _flush(chan, out, None) < 0:
                return 0  # the socket is full: data waits behind what it refused
        _hold(out, data)
        return len(data)
    # (nothing held: _flush would only call _raw_send; one frame less)
    sent = _flush(chan, out, data) if out.held else _raw_send(chan, out, data)
    return sent if sent is _REQUEUED or sent > 0 else 0


def chat_drain(chan, fifo):
    """Send queued output: the body of ``async_chat.initiate_send``.

    CPython's exactly (rule 1 of ``OutputState``): one send attempt of
    the item at the head, after any ``more()`` calls and the ``None`` that
    ``close_when_done`` queued; nothing while the channel is not
    connected.
    """
    if cython.compiled:
        nest = ac_nest()
    try:
        _drain(chan, fifo, _output(chan))
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _drain(chan, fifo, out):
    # the drain under the output lock (one function: a Python frame less)
    out._acquire()
    try:
        if cython.compiled:
            obs_value = ac_getattr(chan, "ac_out_buffer_size")
            obs = out_size(obs_value)
        else:
            obs_value = chan.ac_out_buffer_size
            # (any Python int slices and compares as its clamp does)
            obs = obs_value if type(obs_value) is int else out_size(obs_value)
        while fifo and (ac_getattr(chan, "connected") if cython.compiled else chan.connected):
            first = fifo[0]
            if not first:
                del fifo[0]
                if first is None:
                    chan.handle_close()
                    return 0
                # CPython still makes one send() of the empty item below and
                # returns: that send is how a dead peer gets noticed
            try:
                if obs == NOT_A_SIZE:
                    # CPython slices with the value itself: a TypeError for bytes,
                    # so (as there) the item is taken for a producer just below
                    data = first[:obs_value]
                elif cython.compiled and type(first) is bytes and obs >= buffer_size(first):
                    data = first  # what first[:obs] gives, without a slice object
                else:
                    data = first[:obs]
            except TypeError:
                # a producer: ask it for more, CPython style.  Not batching
                # meanwhile: a push from more() that took its bytes as sent
                # would precede the data more() returns, which CPython
                # queues in front of that push when the socket is full
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
                sent = _send_item(chan, out, fifo, data)
            except OSError:
                chan.handle_error()
                return 0
            at = 0
            if sent is _REQUEUED:
                # data went back inside the refused buffer, now in front of first
                sent = len(data)
                at = 1
            if not sent:
                return 0
            if cython.compiled:
                high = ac_getattr(chan, "ac_out_high_water")
            else:
                high = chan.ac_out_high_water
            if high is not None:
                _uncount(chan, sent)
            # changed meanwhile: leave it alone (asked by index, not len(),
            # which a deque subclass may answer differently from its truth)
            try:
                if fifo[at] is not first:
                    return 0
            except IndexError:
                return 0
            if sent < len(data) or obs < len(first):
                fifo[at] = first[sent:]
            else:
                del fifo[at]
            return 0
    finally:
        out._release()
    return 0


# The functions below are async_chat's hot methods; asynchat.py binds them
# into the class (compiled, Cython 3 functions bind like Python ones), so
# ``self.push(...)`` runs this module's code directly.

# Called with the channel when its output queue goes from empty to
# non-empty, so a loop with persistent registration can start watching for
# writability without asking writable() every pass.
_loop_hook = None


def set_loop_hook(hook):
    """Install ``hook(channel)`` (or None), called when output gets queued."""
    global _loop_hook
    _loop_hook = hook


def chat_get_terminator(self):
    """Return the current terminator."""
    if cython.compiled:
        nest = ac_nest()
    try:
        return self.terminator
    finally:
        if cython.compiled:
            ac_unnest(nest)


def chat_initiate_send(self):
    """Try to send queued output now (one send() attempt)."""
    if cython.compiled:
        nest = ac_nest()
    try:
        out = _output(self)
        fifo = _fifo(self, out)
        if fifo is not _EMPTY_FIFO:  # (not made: empty, CPython's loop ends at once)
            _drain(self, fifo, out)
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _recv(chan, out):
    # chan.recv(chan.ac_in_buffer_size) from chat_handle_read, holding
    # ``out``'s lock (compiled build only): asyncore.dispatcher's own recv
    # reads the output state's socket without the descriptor round trip
    # (issue 18), where ``chan.socket`` is that field, after the replies
    # that reading it would flush
    unbound = 0  # (ac_method sets it)
    recv = ac_method(chan, "recv", cython.address(unbound))
    size = ac_getattr(chan, "ac_in_buffer_size")
    if recv is dispatcher_recv if unbound else is_method_of(recv, dispatcher_recv):
        if _socket_is_field(type(chan)):
            if out.pending:
                _chat_flush(chan, out)
            sock = out.sock
            if sock is not _UNSET:
                return sock_recv(chan, sock, size)
    if unbound:
        return recv(chan, size)
    return recv(size)


def chat_handle_read(self):
    """Read once from the socket and deliver every frame it completes.

    Replies pushed for a frame that more input follows are sent joined
    with the next one (``OutputState``, rule 2).
    """
    if cython.compiled:
        nest = ac_nest()
    try:
        if cython.compiled:
            out = _output(self)
        else:
            out = getattr(self, "_ac_out", _NO_OUTPUT)  # (_output inline)
            if type(out) is not OutputState:
                out = _output_of(self, out)
        try:
            out._acquire()
            try:
                if cython.compiled:
                    data = _recv(self, out)
                else:
                    # (Python build: a descriptor round trip costs less
                    # than the test that would avoid it)
                    data = self.recv(self.ac_in_buffer_size)
            finally:
                out._release()  # handle_error runs without the lock
        except BlockingIOError:
            return
        except OSError as why:
            if ssl_wants_io(why):
                return  # a TLS socket waiting for the peer: try later
            self.handle_error()
            return
        if isinstance(data, str) and self.use_encoding:
            # CPython 3.11 raises TypeError here (it passes the type ``str``);
            # kept so that such code fails the same way.
            data = bytes(str, self.encoding)  # type: ignore[call-overload]
        mode = terminator_mode(self)
        if cython.compiled:
            inbuf = _input(self)
            coalesce = ac_getattr(self, "ac_coalesce_pushes")
        else:
            inbuf = self._ac_in  # (_input inline)
            if type(inbuf) is not InputState:
                inbuf = _input_check(self, inbuf)
            coalesce = self.ac_coalesce_pushes
        if not coalesce:
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
        if cython.compiled:
            ac_unnest(nest)


def _chat_read_kernel(chan):
    # compiled: chat_handle_read as a C function, which the loop's
    # handle_read_event calls for a channel whose handle_read it is (the
    # registration below; _loop_py.py, set_read_kernel)
    return chat_handle_read(chan)


def _push_now(chan, out, data):
    """push() of ``data`` (exact bytes, one item) while ``producer_fifo``
    is the empty deque not made yet: CPython appends it and its
    initiate_send sends it at once, and a socket that takes it all leaves
    the deque empty again.  Here it is sent without making the deque,
    where that send runs no Python code (the library's send, the state's
    socket, a plain socket.socket with _socket's own send(), connected).
    Anything else makes the deque, with the item as CPython's drain leaves
    it, before any Python code can look.  False: nothing done (the caller
    takes the usual path)."""
    if not _MSG_NOSIGNAL or out.batching or _socket_type.send is not _c_socket_send:
        return False
    if not (ac_getattr(chan, "connected") if cython.compiled else chan.connected):
        return False
    if cython.compiled:
        if not _own_send(chan) or not _plain_send(chan):
            return False
    else:
        # (_own_send and _plain_send inline: no frames)
        bound = chan.send
        if type(bound) is not _MethodType or bound.__func__ is not chat_send:
            return False
        if _dispatcher_class.send is not dispatcher_send:
            return False
        cls = type(chan)
        if type(cls) is type:
            if (getattr(cls, "socket", None) is not socket_slot
                    or cls.__getattribute__ is not _object_getattribute):
                return False
        elif not _is_field(cls, "socket", socket_slot):
            return False
    out._acquire()
    try:
        sock = out.sock
        if out.pending or out.held or type(sock) is not _socket_type:
            return False
        why = None
        try:
            if cython.compiled:
                sent = ac_sock_send(sock, data, _MSG_NOSIGNAL)  # -2: not a usable socket
            else:
                sent = sock.send(data, _MSG_NOSIGNAL)
        except OSError as exc:
            sent = -1
            why = exc
        except BaseException:
            _queue_first(out, data)  # (a signal handler's exception)
            raise
        if sent == len(data):
            return True
        if sent == -2:
            return False
        # (as _drain leaves it: the rest of the item stays first)
        fifo = _queue_first(out, data[sent:] if sent > 0 else data)
        if why is not None:
            # sock_send's handling of the error, then _drain's
            if why.errno in DISCONNECTED:
                chan.handle_close()
            elif not (isinstance(why, BlockingIOError) or why.errno == _EWOULDBLOCK
                      or ssl_wants_io(why)):
                chan.handle_error()
    finally:
        out._release()
    if _loop_hook is not None and fifo:
        _loop_hook(chan)
    return True


def _plain_send(chan):
    # asyncore.dispatcher.send is the library's own, on the state's socket
    # (what _raw_send checks before sock_send)
    cls = type(chan)
    if cython.compiled:
        own = ac_record_bits(cython.address(_send_record), _dispatcher_class)
        if own < 0:
            own = _send_own_of(_dispatcher_class)
        return own == 1 and _socket_is_field(cls)
    if _dispatcher_class.send is not dispatcher_send:
        return False
    return _is_field(cls, "socket", socket_slot)


@cython.locals(size=cython.Py_ssize_t, length=cython.Py_ssize_t, start=cython.Py_ssize_t,
               was_empty=cython.bint, unbound=cython.int, own=cython.bint)
def chat_push(self, data):
    """Queue ``data`` (bytes-like) for sending and try to send now."""
    if cython.compiled:
        nest = ac_nest()
    try:
        # (exact bytes, the usual reply, without the tuple's isinstance)
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise TypeError("data argument must be byte-ish (%r)", type(data))
        if cython.compiled:
            size_value = ac_getattr(self, "ac_out_buffer_size")
        else:
            size_value = self.ac_out_buffer_size
        # (Python build: any Python int slices and compares as its clamp does)
        size = (size_value if not cython.compiled and type(size_value) is int
                else out_size(size_value))
        length = len(data)
        if size == NOT_A_SIZE and length > size_value:
            # CPython chunks with range(), which fails so (nothing queued);
            # a size not passed is queued whole and fails at the send
            raise TypeError("'%s' object cannot be interpreted as an integer"
                            % type(size_value).__name__)
        unbound = 0  # (compiled: ac_method sets it)
        if cython.compiled:
            # (the lookup cache, and no bound method: _cbits.pxd)
            out = _output(self)
            fifo = _fifo(self, out)
            was_empty = fifo is _EMPTY_FIFO or not fifo
            initiate_send = ac_method(self, "initiate_send", cython.address(unbound))
            own = (initiate_send is chat_initiate_send if unbound
                   else is_method_of(initiate_send, chat_initiate_send))
        else:
            out = getattr(self, "_ac_out", _NO_OUTPUT)  # (_output inline)
            if type(out) is not OutputState:
                out = _output_of(self, out)
            # (_fifo inline: the state's field where the attribute is it)
            cls = type(self)
            fifo = out.fifo
            if (fifo is _UNSET or type(cls) is not type
                    or getattr(cls, "producer_fifo", None) is not fifo_slot
                    or cls.__getattribute__ is not _object_getattribute):
                fifo = _fifo(self, out)
            was_empty = fifo is _EMPTY_FIFO or not fifo
            initiate_send = self.initiate_send
            own = (type(initiate_send) is _MethodType
                   and initiate_send.__func__ is chat_initiate_send)
        if (out.batching and was_empty and length <= size and own
                and (fifo is _EMPTY_FIFO or type(fifo) is _deque)
                and (ac_getattr(self, "connected") if cython.compiled else self.connected)
                and _own_send(self)):
            # what the drain would do with this lone item (rule 2), directly;
            # not when found_terminator overrode send()/initiate_send() or
            # replaced producer_fifo since the read began (CPython's calls)
            out._acquire()
            try:
                if (not out.pending or out.held + length <= size
                        or _flush(self, out, None) >= 0):
                    _hold(out, data)
                    return
            finally:
                out._release()
        if cython.compiled:
            high = ac_getattr(self, "ac_out_high_water")
        else:
            high = self.ac_out_high_water
        if fifo is _EMPTY_FIFO:
            if (high is None and own and 0 < length <= size and type(data) is bytes
                    and _push_now(self, out, data)):
                return  # sent whole, or queued by _push_now as CPython's drain leaves it
            fifo = _made_fifo(out)
        if high is not None:
            self._ac_out_queued += length
        if length > size and size != NOT_A_SIZE:
            for start in range(0, length, size):
                fifo.append(data[start:start + size])
        elif cython.compiled and type(fifo) is _deque:
            # the exact type's own append: no method lookup, and its C
            # function called directly (_cbits.pxd, ac_call_o)
            ac_call_o(_deque_append, fifo, data)
        else:
            fifo.append(data)
        if own:
            # the library's own initiate_send, run here (issue 18's straight
            # path: no Python-level call; what it reads, it reads itself)
            now = _fifo(self, out)
            if now is not _EMPTY_FIFO:
                _drain(self, now, out)
        elif cython.compiled and unbound:
            initiate_send(self)  # an override found on the class
        else:
            initiate_send()
        if was_empty and _loop_hook is not None and fifo:
            _loop_hook(self)
    finally:
        if cython.compiled:
            ac_unnest(nest)


def chat_set_terminator(self, term):
    """Set the input delimiter: bytes of any length, a byte count, or None."""
    if cython.compiled:
        nest = ac_nest()
    try:
        if isinstance(term, str) and self.use_encoding:
            term = bytes(term, self.encoding)
        elif isinstance(term, int):
            if term < 0:
                raise ValueError("the number of received bytes must be positive")
            if term > _MAXSIZE:
                # CPython accepts it, but no frame that long can ever complete
                raise ValueError("the number of received bytes must be <= sys.maxsize")
            cap = getattr(self, "ac_max_frame_size", None)
            if cap is not None:  # (checked here: no call for the common None)
                limit = _frame_limit(cap)
                if term > limit:
                    raise FrameTooLarge(term, limit)
        self.terminator = term
    finally:
        if cython.compiled:
            ac_unnest(nest)


def chat__collect_incoming_data(self, data):
    """Default collector: append ``data`` to ``self.incoming``."""
    self.incoming.append(data)


def chat__get_data(self):
    """Return and clear what ``_collect_incoming_data`` gathered."""
    data = b"".join(self.incoming)
    del self.incoming[:]
    return data


# ---------------------------------------------------------------------------
# The rest of ``async_chat``'s methods, bound into the class like the ones
# above, so that a request served by the library's own code runs no Python
# frame but the user's handlers.  (``asyncore.dispatcher``'s own hot methods
# are in the loop module: ``_loop_py.dispatcher_*``.)


def chat_readable(self):
    """Watch for input unless output back-pressure paused reading."""
    if cython.compiled:
        nest = ac_nest()
    try:
        high = ac_getattr(self, "ac_out_high_water") if cython.compiled else self.ac_out_high_water
        if high is None:
            return 1
        fifo = _fifo(self, _output(self))
        if fifo is _EMPTY_FIFO or not fifo:
            self._ac_out_queued = 0  # resynchronise: nothing is queued
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
        if cython.compiled:
            ac_unnest(nest)


def chat_writable(self):
    """Watch for writability while output is queued or a connect is pending."""
    if cython.compiled:
        nest = ac_nest()
    try:
        if cython.compiled:
            fifo = _fifo(self, _output(self))
        else:
            # (_output and _fifo inline)
            out = getattr(self, "_ac_out", _NO_OUTPUT)
            cls = type(self)
            if (type(out) is OutputState and type(cls) is type
                    and out.fifo is not _UNSET
                    and getattr(cls, "producer_fifo", None) is fifo_slot
                    and cls.__getattribute__ is _object_getattribute):
                fifo = out.fifo
            else:
                fifo = _fifo(self, _output(self))
        if fifo is not _EMPTY_FIFO and fifo:
            return fifo
        if cython.compiled:  # (the lookup cache, _cbits.pxd)
            return not ac_getattr(self, "connected")
        return not self.connected
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _chat_readable_kernel(chan):
    # compiled: chat_readable as a C function, for the loop's interest sync
    return chat_readable(chan)


def _chat_writable_kernel(chan):
    # compiled: chat_writable as a C function, for the loop's interest sync
    return chat_writable(chan)


if cython.compiled:
    # the loop calls these directly when a channel's lookup finds them
    set_read_kernel(chat_handle_read, _chat_read_kernel, chat_readable, _chat_readable_kernel,
                    chat_writable, _chat_writable_kernel)


def chat_handle_write(self):
    """The socket is writable: send more of the queued output."""
    if cython.compiled:
        nest = ac_nest()
    try:
        self.initiate_send()
    finally:
        if cython.compiled:
            ac_unnest(nest)


def chat_send(self, data):
    """Send ``data`` directly, after any output pushed earlier (bypasses the queue)."""
    if cython.compiled:
        nest = ac_nest()
    try:
        out = _output(self)
        out._acquire()
        try:
            if out.pending and _flush(self, out, None) < 0:
                return 0  # the socket is full: CPython's send would take nothing too
            return _raw_send(self, out, data)
        finally:
            out._release()
    finally:
        if cython.compiled:
            ac_unnest(nest)


def lookup_cache_state():
    """The compiled build's lookup cache (issue 18): 1 on, 0 not used yet,
    -1 off (the Python build, another Python, or its layout check failed:
    every lookup is then CPython's own)."""
    if cython.compiled:
        return ac_acache_state()
    return -1


def lookup_cache_fills():
    """How many records this module's lookup cache has written (0 in the
    Python build): serving more of the same requests must add none."""
    if cython.compiled:
        return ac_acache_fill_count()
    return 0


_dispatcher_class: "Any" = None  # asyncore.dispatcher, set when asyncore loads


def set_dispatcher_class(cls):
    """Tell the kernels which class is ``asyncore.dispatcher``."""
    global _dispatcher_class
    _dispatcher_class = cls


# ---------------------------------------------------------------- TLS layer
# The steady state of asynchat_core.tls (issue 18, the HTTPS target): tls.py
# installs these as ``TLSMixin.handle_read_event`` and ``_TLSSocket.recv`` /
# ``send``, so that an event of an established TLS channel runs no Python
# frame of the TLS layer in the compiled build (each cost a frame, a super()
# and a dozen lookups by name).  Only the established state with nothing
# pending is handled here; every other state, and every rare turn, calls
# tls.py's own Python methods, where the reasons are written down.  tls.py
# hands over its classes and the ssl names (tls_setup): ssl is not imported
# here (import time, issue 18).

_tls_mixin: "Any" = None  # tls.TLSMixin
_tls_ssl_recv: "Any" = None  # ssl.SSLSocket.recv
_tls_ssl_send: "Any" = None  # ssl.SSLSocket.send
_tls_want_read: "Any" = None  # ssl.SSLWantReadError
_tls_want_write: "Any" = None  # ssl.SSLWantWriteError
_tls_want_errors: "Any" = ()  # (SSLWantReadError, SSLWantWriteError)
_tls_eof_errors: "Any" = ()  # the errors that mean "the peer ended the stream"
_tls_peer_gone: "Any" = None  # tls._peer_gone
_tls_sock_getattribute: "Any" = None  # ssl.SSLSocket.__getattribute__ (the generic one)
_tls_sock_setattr: "Any" = None  # ssl.SSLSocket.__setattr__ (the generic one)
_TLS_OPEN = 3  # tls._OPEN
# (type's own descriptors: a metaclass cannot change what super() walks)
_tls_mro_of = type.__dict__["__mro__"].__get__
_tls_own_dict_of = type.__dict__["__dict__"].__get__
if cython.compiled:
    from asynchat_core._loop_c import dispatcher_handle_read_event as _dispatcher_handle_read_event
else:
    _tls_read_record = _tls_sock_record = None  # (compiled: C structs, _chat_c.pxd)
    PyObject_GenericGetDict = _compiled_only
    from ._loop_py import dispatcher_handle_read_event as _dispatcher_handle_read_event


def tls_setup(mixin, ssl_recv, ssl_send, want_read, want_write, eof_errors, peer_gone, open_state,
              sock_getattribute, sock_setattr):
    """Give the TLS kernels below tls.py's classes and the ssl names they use."""
    global _tls_mixin, _tls_ssl_recv, _tls_ssl_send, _tls_want_read, _tls_want_write
    global _tls_want_errors, _tls_eof_errors, _tls_peer_gone, _TLS_OPEN
    global _tls_sock_getattribute, _tls_sock_setattr
    _tls_sock_getattribute = sock_getattribute
    _tls_sock_setattr = sock_setattr
    _tls_mixin = mixin
    _tls_ssl_recv = ssl_recv
    _tls_ssl_send = ssl_send
    _tls_want_read = want_read
    _tls_want_write = want_write
    _tls_want_errors = (want_read, want_write)
    _tls_eof_errors = eof_errors
    _tls_peer_gone = peer_gone
    _TLS_OPEN = open_state


def tls_handle_read_event(self):
    """``TLSMixin.handle_read_event``: read, then deliver what OpenSSL holds."""
    if cython.compiled:
        nest = ac_nest()
    try:
        if cython.compiled:
            state = ac_getattr(self, "_tls_state")
        else:
            state = self._tls_state
        if state != _TLS_OPEN:
            self._tls_read_event_other()  # handshake, shutdown, plaintext (tls.py)
            return
        sock = ac_getattr(self, "_tls_sock") if cython.compiled else self._tls_sock
        flags: dict = None  # type: ignore[type-arg, assignment]  # (Cython: a dict or None)
        if cython.compiled and _tls_sock_plain(sock):
            flags = PyObject_GenericGetDict(sock, cython.NULL)  # (see _tls_sock_plain_of)
            flags["tls_write_wants_read"] = False
        else:
            sock.tls_write_wants_read = False  # a stuck SSL_write may go on
        if cython.compiled:
            # super().handle_read_event() is asyncore's own (the class's
            # record says so): called without the super object
            cls = type(self)
            own = ac_record_bits(cython.address(_tls_read_record), cls)
            if own < 0:
                own = _tls_read_own_of(cls)
            if own == 1:
                _dispatcher_handle_read_event(self)
            else:
                super(_tls_mixin, self).handle_read_event()
        else:
            super(_tls_mixin, self).handle_read_event()
        # (SSL_pending only reads the input record: no lock needed)
        if cython.compiled and flags is not None:
            sslobj = _sock_flag(flags, sock, "_sslobj")
        else:
            sslobj = sock._sslobj
        if cython.compiled:
            more = ac_getattr(self, "_tls_more_pending")
        else:
            more = self._tls_more_pending
        if more or (sslobj is not None and sslobj.pending() > 0):
            self._tls_drain_pending(sock)
        if cython.compiled:
            changed = (ac_getattr(self, "_tls_shadowing")
                       or ac_getattr(self, "_tls_state") != _TLS_OPEN
                       or ac_getattr(self, "_tls_more_pending"))
            if not changed and flags is not None:
                wants = _sock_flag(flags, sock, "tls_read_wants_write")
                if not wants:
                    wants = _sock_flag(flags, sock, "tls_write_wants_read")
                changed = wants
            elif not changed:
                changed = sock.tls_read_wants_write or sock.tls_write_wants_read
        else:
            changed = (self._tls_shadowing or self._tls_state != _TLS_OPEN
                       or sock.tls_read_wants_write or sock.tls_write_wants_read
                       or self._tls_more_pending)
        if changed:
            self._tls_sync()
        # else the steady state: nothing to change
    finally:
        if cython.compiled:
            ac_unnest(nest)


def _tls_read_own_of(cls):
    # 1 if what super(TLSMixin, cls) finds for handle_read_event is
    # asyncore's own (the first own dict past TLSMixin along the MRO that
    # holds the name, as super() searches), else 0; recorded for cls as it
    # is now (compiled build only).  No TLSMixin in the MRO: 0, and super()
    # raises as it would.
    own = 0
    past = False
    for klass in _tls_mro_of(cls):
        if past:
            found = _tls_own_dict_of(klass).get("handle_read_event", _UNSET)
            if found is not _UNSET:
                own = 1 if found is _dispatcher_handle_read_event else 0
                break
        elif klass is _tls_mixin:
            past = True
    ac_type_lookup(cls, "handle_read_event", None)  # (gives cls its tag)
    ac_record_set(cython.address(_tls_read_record), cls, own)
    return own


# The TLS socket's flags (and _sslobj) are read and written in its instance
# dict in the compiled build: an ssl.SSLSocket's dict always exists, and
# reading it directly skips the class lookup every attribute access makes
# first.  The dict is where Python finds them only while the socket's class
# has ssl.SSLSocket's own __getattribute__ and __setattr__ (the generic
# ones, given by tls_setup) and no descriptor under
# these names: checked per class, and recorded with the class's version
# tag, so a class changed later is checked again.  A name missing from the
# dict is read as an attribute (its class default).
_TLS_SOCK_NAMES = ("tls_gate", "tls_slow", "tls_read_wants_write", "tls_write_wants_read",
                   "_sslobj")


def _tls_sock_plain(sock):
    # whether the flags of ``sock`` may be read in its dict (compiled build)
    cls = type(sock)
    plain = ac_record_bits(cython.address(_tls_sock_record), cls)
    if plain < 0:
        plain = _tls_sock_plain_of(cls)
    return plain


def _tls_sock_plain_of(cls):
    plain = 0
    if (type(cls) is type
            and ac_type_lookup(cls, "__getattribute__", None) is _tls_sock_getattribute
            and ac_type_lookup(cls, "__setattr__", None) is _tls_sock_setattr):
        plain = 1
        for name in _TLS_SOCK_NAMES:
            found = ac_type_lookup(cls, name, None)
            if found is not None and type(found) is not bool:
                plain = 0
                break
    ac_record_set(cython.address(_tls_sock_record), cls, plain)
    return plain


def _sock_flag(own, sock, name):
    # compiled only: a flag of a plain TLS socket (_tls_sock_plain), read in
    # its dict ``own``; a name the dict lacks is its class default
    value = own.get(name, _UNSET)
    if value is _UNSET:
        value = getattr(sock, name)
    return value


# recv()/send() call the SSL object directly when they can: what
# SSLSocket.recv/read/send add (checks, and turning a ragged EOF into b"")
# is done here, and they are a third of the TLS layer's cost per request.

def tls_sock_recv(self, buflen=1024, flags=0):
    """``_TLSSocket.recv``: ``SSLSocket.recv``, a clean or ragged EOF as ``b""``."""
    if cython.compiled and _tls_sock_plain(self):
        own = PyObject_GenericGetDict(self, cython.NULL)  # (see _tls_sock_plain_of)
        gate = _sock_flag(own, self, "tls_gate")
        sslobj = _sock_flag(own, self, "_sslobj")
    else:
        gate = self.tls_gate
        sslobj = self._sslobj
    if gate:
        raise _tls_want_read("TLS handshake in progress")
    try:
        if sslobj is not None and not flags:
            return sslobj.read(buflen)
        return _tls_ssl_recv(self, buflen, flags)
    except _tls_want_write:
        self.tls_read_wants_write = True
        raise
    except _tls_eof_errors:
        # close_notify, or a ragged EOF: a clean end of the stream
        return b""


def tls_sock_send(self, data, flags=0):
    """``_TLSSocket.send``: ``SSLSocket.send``, noting a write left unfinished."""
    if cython.compiled and _tls_sock_plain(self):
        own = PyObject_GenericGetDict(self, cython.NULL)  # (see _tls_sock_plain_of)
        slow = _sock_flag(own, self, "tls_slow")
        sslobj = _sock_flag(own, self, "_sslobj")
    else:
        slow = self.tls_slow
        sslobj = self._sslobj
    if slow:
        if self.tls_gate:
            raise _tls_want_write("TLS handshake in progress")
        return self._send_retry(data, flags)
    try:
        if sslobj is not None and not flags:
            return sslobj.write(data)
        return _tls_ssl_send(self, data, flags)
    except _tls_want_errors as exc:
        self._note_retry(data, exc)
        raise
    except _tls_eof_errors as exc:
        raise _tls_peer_gone(exc) from None
