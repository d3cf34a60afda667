"""Pure-Python kernels of ``async_chat``: the specification.

``_chat_c.pyx`` mirrors every public name here with the same signature and
the same observable behaviour; the test suite runs against both.

Two ideas make these kernels fast without changing what users see:

* ``InBuffer`` keeps the unread input as ``(data, pos)``.  Consuming a frame
  moves ``pos`` instead of copying the rest of the buffer, so a read holding
  thousands of frames costs linear, not quadratic, time.  ``ac_in_buffer`` is
  materialised only when user code actually reads it.
* ``chat_drain`` joins consecutive queued ``bytes``/``bytearray`` items into
  one ``send()`` of at most ``ac_out_buffer_size`` bytes; the peer receives
  the same byte stream, with fewer system calls.

Every user callback may change the terminator, the buffers or the queue, or
close the channel, so all state is re-read after each callback, exactly as
CPython 3.11's ``asynchat`` does.
"""

import socket
import sys
from errno import EBADF, ECONNABORTED, ECONNRESET, ENOTCONN, EPIPE, ESHUTDOWN, EWOULDBLOCK
from itertools import islice
from typing import Any

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


def chan_state(chan):
    """The channel's ``InBuffer``, created if ``async_chat.__init__`` did
    not run (CPython's push/send work without it)."""
    try:
        return chan._ac_in
    except AttributeError:
        state = chan._ac_in = InBuffer(b"")
        return state


class InBuffer:
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

    __slots__ = ("data", "pos", "frame", "terminator", "corked", "owed", "blocked")

    def __init__(self, data=b""):
        self.data = data
        self.pos = 0
        self.frame = 0
        self.terminator = UNSET
        self.corked = False
        self.owed = 0
        self.blocked = False

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


def chat_feed(chan, inbuf, data, mode):
    """Append received ``data`` to ``inbuf`` and deliver what it completes.

    This is ``async_chat.handle_read`` after its ``recv()``; ``mode`` is
    ``terminator_mode(chan)``.
    """
    current = inbuf.data
    if inbuf.pos >= len(current) and type(current) is bytes and type(data) is bytes:
        inbuf.assign(data)
    else:
        inbuf.assign(inbuf.value() + data)
    chat_deliver(chan, inbuf, mode)


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


def chat_deliver(chan, inbuf, mode):
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
                chan.found_terminator()
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
                chan.found_terminator()
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

def _is_joinable(item):
    kind = type(item)
    return kind is bytes or kind is bytearray


def _uncount(chan, sent):
    # output accounting for ac_out_high_water (only kept while it is set)
    if chan.ac_out_high_water is not None:
        queued = chan._ac_out_queued - sent
        chan._ac_out_queued = queued if queued > 0 else 0


def _leading_data(fifo, count):
    # the first ``count`` queued items (or all, if fewer) are non-empty data
    for item in islice(fifo, count):
        if not _is_joinable(item) or not item:
            return False
    return True


def _consume_sent(fifo, items, sent):
    # Remove what one send() took from the head of the queue.  Stops if
    # a callback inside send() already changed the queue.
    for item in items:
        if not fifo or fifo[0] is not item:
            return
        size = len(item)
        if sent >= size:
            fifo.popleft()
            sent -= size
        else:
            if sent:
                fifo[0] = item[sent:]
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
                chan_state(chan).blocked = True
            return
        _uncount(chan, sent)
        chan_state(chan).blocked = False
        if not fifo or fifo[0] is not first:
            return  # changed meanwhile (another thread): leave it alone
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


def chat_flush_owed(self, exact=False):
    """Make the sends that pushes deferred during handle_read.

    Each deferred push owes one CPython ``initiate_send``.  When those would
    only send the data at the head, the items are joined
    (``chat_send_joined``); otherwise, or with ``exact`` (the caller is
    about to drop or overtake queued data), they are replayed one by one.
    """
    state = chan_state(self)
    owed = state.owed
    if not owed:
        return
    state.owed = 0
    fifo = self.producer_fifo
    # (one owed send is one drain either way: joining has nothing to join)
    if owed > 1 and not exact and _leading_data(fifo, owed):
        chat_send_joined(self, fifo, owed)
        return
    for _ in range(owed):
        if not fifo:
            return
        chat_drain(self, fifo)


def chat_send_joined(chan, fifo, attempts):
    """Send what ``attempts`` CPython send attempts would, in fewer sends.

    The first ``attempts`` queued items must be non-empty data.  CPython
    sends one item (at most ``ac_out_buffer_size`` bytes) per attempt and,
    once a send falls short, the rest send nothing; joining the same items
    into sends of at most ``ac_out_buffer_size`` bytes, stopping at the
    first short send, puts the same bytes on the wire.
    """
    obs = chan.ac_out_buffer_size
    while attempts > 0 and fifo and chan.connected:
        items = []  # type: list[bytes]
        total = 0
        for item in islice(fifo, attempts):
            if not _is_joinable(item):
                raise TypeError("chat_send_joined: queued item is not bytes/bytearray")
            size = len(item)
            if items and total + size > obs:
                break
            items.append(item)
            total += size
        first = items[0]
        if len(items) == 1:
            data = first[:obs] if total > obs else first
        else:
            data = b"".join(items)
        try:
            sent = chan.send(data)
        except OSError:
            chan.handle_error()
            return
        if not sent:
            chan_state(chan).blocked = True
            return
        _consume_sent(fifo, items, sent)
        _uncount(chan, sent)
        chan_state(chan).blocked = False
        if sent != len(data):
            return
        attempts -= len(items)


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
        data = bytes(str, self.encoding)  # type: ignore[call-overload]
    cls = type(self)
    mode = terminator_mode(self)

    inbuf = self._ac_in
    if (inbuf.corked or not self.ac_coalesce_pushes
            or cls.initiate_send is not chat_initiate_send):
        chat_feed(self, inbuf, data, mode)
        return
    fifo = self.producer_fifo
    was_empty = not fifo
    inbuf.corked = True
    try:
        chat_feed(self, inbuf, data, mode)
    finally:
        inbuf.corked = False
        chat_flush_owed(self)
        if was_empty and _loop_hook is not None and self.producer_fifo:
            _loop_hook(self)


def chat_push(self, data):
    """Queue ``data`` (bytes-like) for sending and try to send now."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data argument must be byte-ish (%r)", type(data))
    size = self.ac_out_buffer_size
    fifo = self.producer_fifo
    was_empty = not fifo
    if self.ac_out_high_water is not None:
        self._ac_out_queued += len(data)
    if len(data) > size:
        for start in range(0, len(data), size):
            fifo.append(data[start:start + size])
    else:
        fifo.append(data)
    state = chan_state(self)
    if state.corked:
        head = fifo[0]
        if _is_joinable(head) and head:
            # CPython would send part of the head now; it is sent, joined
            # with what follows, when handle_read returns
            state.owed += 1
            return  # handle_read calls the loop hook when it ends
        chat_flush_owed(self, True)
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
# The hot methods of ``asyncore.dispatcher`` (``chan_*``) and the rest of
# ``async_chat``'s: bound into those classes like the ones above, so that a
# request served by the library's own code runs no Python frame but the
# user's handlers.

#: errnos meaning "the peer is gone": they close the channel, not report it
DISCONNECTED = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})

# send() flag that turns SIGPIPE into EPIPE (Linux, BSD); macOS has none and
# its sockets get SO_NOSIGPIPE instead (asyncore's set_socket)
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_socket_type = socket.socket


def chan_recv(self, buffer_size):
    """Read up to ``buffer_size`` bytes; ``b""`` means the peer went away (closed)."""
    while True:
        try:
            data = self.socket.recv(buffer_size)
            break
        except InterruptedError:
            continue  # a wrapped socket may not retry EINTR itself
        except OSError as why:
            # some platforms report a vanished peer as ENOTCONN
            if why.errno in DISCONNECTED:
                self.handle_close()
                return b""
            raise
    if not data:
        # readable with nothing to read: the peer closed
        self.handle_close()
        return b""
    return data


def chan_send(self, data):
    """Send what the socket takes now; return the byte count (0 if it would block)."""
    sock = self.socket
    while True:
        try:
            if type(sock) is _socket_type and _MSG_NOSIGNAL:
                # a reset peer must not kill the process even where SIGPIPE
                # has its default action (plain sockets only: SSL sockets
                # and file wrappers take no flags)
                return sock.send(data, _MSG_NOSIGNAL)
            return sock.send(data)
        except InterruptedError:
            continue  # a wrapped socket may not retry EINTR itself
        except OSError as why:
            if why.errno == EWOULDBLOCK:
                return 0
            if why.errno in DISCONNECTED:
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
        # a listening socket spawns connected sockets instead of reading
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
        return  # spurious for a listening socket: ignore it
    if not self.connected and self.connecting:
        self.handle_connect_event()
    self.handle_write()


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
    chan_state(self).blocked = False  # the loop says the socket is writable
    self.initiate_send()


def chat_send(self, data):
    """Send ``data`` directly, after any output pushed earlier (bypasses the queue)."""
    # Deferred pushes were "sent" before this call in CPython's order.
    chat_flush_owed(self, True)
    # asyncore.dispatcher.send looked up now: patching it on the class
    # reaches async_chat too, as in CPython, where async_chat inherits it
    return _dispatcher_class.send(self, data)


_dispatcher_class: Any = None  # asyncore.dispatcher, set when asyncore loads


def set_dispatcher_class(cls):
    """Tell the kernels which class is ``asyncore.dispatcher``."""
    global _dispatcher_class
    _dispatcher_class = cls
