"""Pure-Python kernels of ``async_chat``: the specification.

``_chat_c.pyx`` mirrors every public name here with the same signature and
the same observable behaviour; the test suite runs against both.

Two ideas make these kernels fast without changing what users see:

* ``InBuffer`` keeps the unread input as ``(data, pos)``.  Consuming a frame
  moves ``pos`` instead of copying the rest of the buffer, so a read holding
  thousands of frames costs linear, not quadratic, time.  ``ac_in_buffer`` is
  materialised only when user code actually reads it.
* Replies pushed for pipelined requests (a frame followed by more input in
  the same read) are held in ``OutputState.pending`` and go out in one
  ``send()`` with the next reply; the queue, the callbacks and the byte
  stream are CPython's (see ``OutputState`` for the rules).

Every user callback may change the terminator, the buffers or the queue, or
close the channel, so all state is re-read after each callback, exactly as
CPython 3.11's ``asynchat`` does.
"""

import sys
import threading
from typing import Any

from ._loop_py import dispatcher_send, sock_send

__all__ = [
    "FrameTooLarge", "InBuffer", "TerminatorSlot", "terminator_slot", "UNSET",
    "OutputState", "SocketSlot", "socket_slot", "chan_output",
    "TERM_CALL", "TERM_ATTR", "TERM_SLOT", "terminator_mode", "find_prefix_at_end", "chat_feed",
    "chat_deliver", "chat_drain", "chat_flush", "chat_get_terminator", "chat_set_terminator",
    "chat__collect_incoming_data", "chat__get_data",
    "chat_handle_read", "chat_initiate_send", "chat_push", "set_loop_hook",
    "chat_readable", "chat_writable", "chat_handle_write", "chat_send", "set_dispatcher_class",
]


class FrameTooLarge(ValueError):
    """A frame exceeded ``async_chat.ac_max_frame_size``.

    Raised inside ``handle_read`` (so it reaches ``handle_error``, which by
    default logs it and closes the channel) when the bytes of one frame
    (collected so far plus buffered) pass the cap, or when an integer
    terminator larger than the cap is in force.
    """

    def __init__(self, size, limit):
        ValueError.__init__(
            self, "frame of at least %d bytes exceeds ac_max_frame_size=%d" % (size, limit)
        )
        self.size = size
        self.limit = limit


class _Unset:
    __slots__ = ()

    def __repr__(self):
        return "<terminator not set>"


UNSET = _Unset()


class TerminatorSlot:
    """``async_chat.terminator``: stored in the channel's ``InBuffer``.

    Reads, assignments and ``del`` behave as for a plain instance
    attribute (AttributeError until set).
    """

    __slots__ = ()

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        try:
            value = obj._ac_in.terminator
        except AttributeError:
            value = UNSET
        if value is UNSET:
            raise AttributeError(
                "%r object has no attribute 'terminator'" % type(obj).__name__
            )
        return value

    def __set__(self, obj, value):
        try:
            inbuf = obj._ac_in
        except AttributeError:
            # set before async_chat.__init__ ran
            inbuf = obj._ac_in = InBuffer(b"")
        inbuf.terminator = value

    def __delete__(self, obj):
        self.__get__(obj, None)  # AttributeError if not set
        obj._ac_in.terminator = UNSET


terminator_slot = TerminatorSlot()


class InBuffer:
    """The kernels' state of one channel (``async_chat._ac_in``).

    Unread input: ``data[pos:]`` is ``ac_in_buffer``.  ``frame`` counts the
    bytes of the current frame already handed to ``collect_incoming_data``,
    for the ``ac_max_frame_size`` cap.  ``terminator`` backs
    ``async_chat.terminator`` (``UNSET`` until set).

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


def find_prefix_at_end(haystack, needle):
    """Length of the longest proper prefix of ``needle`` ending ``haystack``.

    Assumes ``needle`` itself was already searched for.  Works on ``str`` and
    on bytes-like objects, like the function of the same name in asynchat.
    """
    if not needle:
        return -1  # CPython's loop ends on needle[:-1] == '' and returns -1
    for size in range(len(needle) - 1, 0, -1):
        if haystack.endswith(needle[:size]):
            return size
    return 0


def _prefix_at_end(data, pos, needle):
    # find_prefix_at_end(data[pos:], needle) without slicing data.
    for size in range(len(needle) - 1, 0, -1):
        if data.endswith(needle[:size], pos):
            return size
    return 0


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


# how chat_deliver finds the terminator
TERM_CALL = 0   # get_terminator() is overridden: call it every time
TERM_ATTR = 1   # read and write chan.terminator
TERM_SLOT = 2   # async_chat's own descriptor: use inbuf.terminator


def terminator_mode(chan):
    """The TERM_* mode for ``chan`` (checked once per read)."""
    getter = chan.get_terminator
    if getattr(getter, "__func__", None) is not chat_get_terminator:
        return TERM_CALL
    if getattr(type(chan), "terminator", None) is terminator_slot:
        return TERM_SLOT
    return TERM_ATTR


def chat_feed(chan, inbuf, data, mode, out=None):
    """Append received ``data`` to ``inbuf`` and deliver what it completes.

    This is ``async_chat.handle_read`` after its ``recv()``; ``mode`` is
    ``terminator_mode(chan)``; ``out`` the ``OutputState`` whose
    ``batching`` to set around ``found_terminator``, or None.
    """
    current = inbuf.data
    if inbuf.pos >= len(current) and type(current) is bytes and type(data) is bytes:
        inbuf.assign(data)
    else:
        inbuf.assign(inbuf.value() + data)
    chat_deliver(chan, inbuf, mode, out)


def _frame_limit(chan):
    limit = getattr(chan, "ac_max_frame_size", None)
    if limit is not None and limit < 0:
        raise ValueError("ac_max_frame_size must be None or >= 0")
    return limit


def _check_frame(inbuf, size, limit):
    if limit is not None and inbuf.frame + size > limit:
        raise FrameTooLarge(inbuf.frame + size, limit)


def _get_term(chan, inbuf, mode):
    if mode == TERM_SLOT:
        term = inbuf.terminator
        if term is UNSET:
            return chan.terminator  # raises AttributeError as CPython does
        return term
    if mode == TERM_ATTR:
        return chan.terminator
    return chan.get_terminator()


def _set_term(chan, inbuf, mode, value):
    if mode == TERM_SLOT:
        inbuf.terminator = value
    else:
        chan.terminator = value


def _term_now(chan, inbuf, mode):
    # the attribute itself, as CPython re-reads self.terminator
    if mode == TERM_SLOT:
        term = inbuf.terminator
        return chan.terminator if term is UNSET else term
    return chan.terminator


def _found(chan, inbuf, out):
    # found_terminator, batching replies while more input follows this
    # frame (OutputState, rule 2)
    if out is None or len(inbuf.data) <= inbuf.pos:
        chan.found_terminator()
        return
    if out.batch_ok is None:
        # overridden output methods see CPython's calls, one per push
        out.batch_ok = (getattr(chan.send, "__func__", None) is chat_send
                        and getattr(chan.initiate_send, "__func__", None) is chat_initiate_send)
    out.batching = out.batch_ok
    chan.found_terminator()
    out.batching = False  # (if it raised, handle_read resets it)


def chat_deliver(chan, inbuf, mode, out=None):
    """Run the terminator loop over the buffered input until it needs more."""
    limit = _frame_limit(chan)
    while True:
        data = inbuf.data
        pos = inbuf.pos
        size = len(data) - pos
        if size <= 0:
            return
        term = _get_term(chan, inbuf, mode)
        if not term:
            inbuf.frame = 0  # a stream without frames: nothing is held
            chan.collect_incoming_data(data[pos:] if pos else data)
            inbuf.assign(b"")
        elif isinstance(term, int):
            if limit is not None and term > limit:
                raise FrameTooLarge(term, limit)
            if size < term:
                inbuf.frame += size
                chan.collect_incoming_data(data[pos:] if pos else data)
                inbuf.assign(b"")
                _set_term(chan, inbuf, mode, _term_now(chan, inbuf, mode) - size)
            else:
                # term may be negative if set without set_terminator():
                # CPython then slices with a negative index.
                split = term if term >= 0 else max(0, size + term)
                chan.collect_incoming_data(data[pos:pos + split])
                _advance(inbuf, data, pos, split, term)
                inbuf.frame = 0
                _set_term(chan, inbuf, mode, 0)
                _found(chan, inbuf, out)
        else:
            term_len = len(term)
            index = data.find(term, pos)
            if index != -1:
                index -= pos
                _check_frame(inbuf, index, limit)
                if index > 0:
                    # an empty chunk is never reported
                    chan.collect_incoming_data(data[pos:pos + index])
                _advance(inbuf, data, pos, index + term_len, index + term_len)
                inbuf.frame = 0
                _found(chan, inbuf, out)
            else:
                _check_frame(inbuf, size, limit)
                partial = _prefix_at_end(data, pos, term)
                if not partial:
                    inbuf.frame += size
                    chan.collect_incoming_data(data[pos:] if pos else data)
                    inbuf.assign(b"")
                else:
                    if partial != size:
                        # keep the possible start of a terminator for later
                        inbuf.frame += size - partial
                        chan.collect_incoming_data(data[pos:len(data) - partial])
                        _advance(inbuf, data, pos, size - partial, -partial)
                    return


_MAXSIZE = sys.maxsize
_WOULD_BLOCK: "tuple[type[OSError], ...]"
try:
    import ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _WOULD_BLOCK = (BlockingIOError,)
else:
    # a TLS socket that needs the peer (or room) before it can go on
    _WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
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
       so it is not waiting for this reply.  Only then, and only when the
       channel's ``send`` is the library's own, a send the drain makes
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
    4. ``lock`` (reentrant) is held around every ``recv`` and every send
       attempt of the kernels, so a ``push()`` from another thread never
       uses the socket (a TLS socket above all) while the loop's thread
       does, and no queued item is sent twice.
    5. ``sock`` backs ``async_chat.socket``.
    """

    __slots__ = ("sock", "pending", "held", "batching", "batch_ok", "lock")

    def __init__(self):
        self.sock = UNSET
        self.pending = []  # bytes objects, joined when sent
        self.held = 0  # their total size
        self.batching = False
        # whether send/initiate_send are the library's, asked once per read
        # and only when a frame has more input behind it (None: not yet)
        self.batch_ok = None
        self.lock = threading.RLock()

    def __enter__(self):
        """Hold ``lock`` (rule 4): no kernel recv or send on this channel meanwhile."""
        self.lock.acquire()
        return self

    def __exit__(self, *exc_info):
        self.lock.release()


def chan_output(chan):
    """The channel's ``OutputState``, created if ``async_chat.__init__``
    did not run (CPython's push/send work without it)."""
    try:
        return chan._ac_out
    except AttributeError:
        out = chan._ac_out = OutputState()
        return out


class SocketSlot:
    """``async_chat.socket``: kept in the channel's ``OutputState``.

    Reading or replacing it sends the replies still held in ``pending``
    first, so code that wraps the socket in TLS or writes to it directly
    sees CPython's order on the wire.
    """

    __slots__ = ()

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        out = chan_output(obj)
        if out.pending:
            chat_flush(obj)
        sock = out.sock
        if sock is UNSET:
            raise AttributeError("%r object has no attribute 'socket'" % type(obj).__name__)
        return sock

    def __set__(self, obj, value):
        out = chan_output(obj)
        if out.pending:
            chat_flush(obj)
        out.sock = value

    def __delete__(self, obj):
        self.__get__(obj, None)  # AttributeError if not set
        chan_output(obj).sock = UNSET


socket_slot = SocketSlot()


def _uncount(chan, sent):
    # output accounting for ac_out_high_water (only kept while it is set)
    if chan.ac_out_high_water is not None:
        queued = chan._ac_out_queued - sent
        chan._ac_out_queued = queued if queued > 0 else 0


def _requeue(chan, rest):
    # bytes taken as sent that the socket refused: first in line again
    fifo = chan.producer_fifo
    was_empty = not fifo
    fifo.appendleft(rest)
    if chan.ac_out_high_water is not None:
        chan._ac_out_queued += len(rest)
    if was_empty and _loop_hook is not None:
        _loop_hook(chan)


def _raw_send(chan, data):
    # asyncore.dispatcher.send, looked up now: patching it on the class
    # reaches async_chat too, as in CPython, where async_chat inherits it
    send = _dispatcher_class.send
    if send is dispatcher_send:
        # the output state's socket: pending is being sent, so reading
        # the socket attribute would only check it again
        sock = chan_output(chan).sock
        if sock is not UNSET:
            return sock_send(chan, sock, data)
    return send(chan, data)


def _flush(chan, out, data=None):
    """Send ``pending`` (followed by ``data``, if given) in one send().

    Returns how many bytes of ``data`` went out; what is left of
    ``pending`` is queued again.  The caller holds ``out.lock``.
    """
    held = out.held
    if held and data is not None and held + len(data) > chan.ac_out_buffer_size:
        if _flush(chan, out) < 0:
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


def _hold(out, data):
    # a copy of mutable data: CPython would have sent it already
    out.pending.append(data if type(data) is bytes else bytes(data))
    out.held += len(data)


def chat_flush(self):
    """Send the replies held in ``pending`` now (rule 3 of OutputState)."""
    out = chan_output(self)
    if out.pending:
        with out.lock:
            _flush(self, out)


def _send_item(chan, out, data):
    """One send attempt of the drain: CPython's ``self.send(data)``."""
    send = chan.send
    if getattr(send, "__func__", None) is not chat_send or not isinstance(data, _BYTES_LIKE):
        # an overridden send(), or an odd item: exactly CPython's call
        if out.pending and _flush(chan, out) < 0:
            return 0
        return send(data)
    if out.batching:
        if out.held + len(data) > chan.ac_out_buffer_size and out.pending:
            if _flush(chan, out) < 0:
                return 0  # the socket is full: data waits behind what it refused
        _hold(out, data)
        return len(data)
    sent = _flush(chan, out, data)
    return sent if sent > 0 else 0


def chat_drain(chan, fifo):
    """Send queued output: the body of ``async_chat.initiate_send``.

    CPython's exactly (rule 1 of ``OutputState``): one send attempt of
    the item at the head, after any ``more()`` calls and the ``None`` that
    ``close_when_done`` queued; nothing while the channel is not
    connected.
    """
    out = chan_output(chan)
    with out.lock:
        obs = chan.ac_out_buffer_size
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


# The functions below are async_chat's hot methods; asynchat.py binds them
# into the class, so ``self.push(...)`` runs kernel code directly.

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
    return self.terminator


def chat_initiate_send(self):
    """Try to send queued output now (one send() attempt)."""
    chat_drain(self, self.producer_fifo)


def chat_handle_read(self):
    """Read once from the socket and deliver every frame it completes.

    Replies pushed for a frame that more input follows are sent joined
    with the next one (``OutputState``, rule 2).
    """
    out = chan_output(self)
    try:
        with out.lock:
            data = self.recv(self.ac_in_buffer_size)
    except _WOULD_BLOCK:
        return
    except OSError:
        self.handle_error()
        return
    if isinstance(data, str) and self.use_encoding:
        # CPython 3.11 raises TypeError here (it passes the type ``str``);
        # kept so that such code fails the same way.
        data = bytes(str, self.encoding)  # type: ignore[call-overload]
    mode = terminator_mode(self)
    if not self.ac_coalesce_pushes:
        chat_feed(self, self._ac_in, data, mode)
        return
    out.batch_ok = None
    try:
        chat_feed(self, self._ac_in, data, mode, out)
    finally:
        out.batching = False
        if out.pending:
            chat_flush(self)


def chat_push(self, data):
    """Queue ``data`` (bytes-like) for sending and try to send now."""
    if not isinstance(data, _BYTES_LIKE):
        raise TypeError("data argument must be byte-ish (%r)", type(data))
    size = self.ac_out_buffer_size
    fifo = self.producer_fifo
    was_empty = not fifo
    out = chan_output(self)
    if out.batching and was_empty and len(data) <= size and self.connected:
        # what the drain would do with this lone item (rule 2), directly
        with out.lock:
            if not out.pending or out.held + len(data) <= size or _flush(self, out) >= 0:
                _hold(out, data)
                return
    if self.ac_out_high_water is not None:
        self._ac_out_queued += len(data)
    if len(data) > size:
        for start in range(0, len(data), size):
            fifo.append(data[start:start + size])
    else:
        fifo.append(data)
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
# The rest of ``async_chat``'s methods, bound into the class like the ones
# above, so that a request served by the library's own code runs no Python
# frame but the user's handlers.  (``asyncore.dispatcher``'s own hot methods
# are in the loop module: ``_loop_py.dispatcher_*``.)


def chat_readable(self):
    """Watch for input unless output back-pressure paused reading."""
    high = self.ac_out_high_water
    if high is None:
        return 1
    if not self.producer_fifo:
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


def chat_writable(self):
    """Watch for writability while output is queued or a connect is pending."""
    return self.producer_fifo or (not self.connected)


def chat_handle_write(self):
    """The socket is writable: send more of the queued output."""
    self.initiate_send()


def chat_send(self, data):
    """Send ``data`` directly, after any output pushed earlier (bypasses the queue)."""
    out = chan_output(self)
    with out.lock:
        if out.pending and _flush(self, out) < 0:
            return 0  # the socket is full: CPython's send would take nothing too
        return _raw_send(self, data)


_dispatcher_class: Any = None  # asyncore.dispatcher, set when asyncore loads


def set_dispatcher_class(cls):
    """Tell the kernels which class is ``asyncore.dispatcher``."""
    global _dispatcher_class
    _dispatcher_class = cls
