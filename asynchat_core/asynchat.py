"""Command/response channels: a drop-in for CPython 3.11's ``asynchat``.

``async_chat`` splits its input on a terminator (a byte string, a byte
count, or None for "everything") and queues output from ``push`` and
producers.  The terminator search, input slicing and output draining run in
the chat implementation chosen by ``asynchat_core._impl``: ``_chat_py``,
compiled by Cython (``_chat_c``) or run as Python.  Deliberate deviations
are listed in the README.
"""

from collections import deque  # noqa: F401  (CPython's module has it)
from types import MemberDescriptorType as _MemberDescriptorType

from . import asyncore
from ._impl import chat_impl as _kernels
# framing (and its struct) is imported when first used (import time, issue 18)
from ._framer import Framer as _Framer

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end", "FrameTooLarge"]

FrameTooLarge = _kernels.FrameTooLarge
find_prefix_at_end = _kernels.find_prefix_at_end
_InputState = _kernels.InputState
_OutputState = _kernels.OutputState
_kernels.set_loop_hook(asyncore._loop_touch)
_kernels.set_dispatcher_class(asyncore.dispatcher)


def _encode_resp(value):
    # replaced by framing.encode_resp on the first call (push_resp)
    global _encode_resp
    from .framing import encode_resp

    _encode_resp = encode_resp
    return encode_resp(value)


# the framer kernel of each chat kernel's build (_frame_c with _chat_c),
# imported when a channel first calls push_frames (import time, issue 18)
_frame_kernels = {}


def _load_frame_kernel():
    compiled = _kernels.__name__.endswith("_c")
    if compiled:
        from . import _frame_c as kernel
    else:
        from . import _frame_py as kernel
    _frame_kernels[_kernels] = kernel
    return kernel


# async_chat methods that are kernel functions bound into the class
_KERNEL_METHODS = (
    "get_terminator", "handle_read", "push", "initiate_send", "set_terminator",
    "_collect_incoming_data", "_get_data", "readable", "writable", "handle_write", "send",
)


class async_chat(asyncore.dispatcher):
    """Abstract channel: subclasses define ``collect_incoming_data`` and
    ``found_terminator``."""

    ac_in_buffer_size = 65536
    ac_out_buffer_size = 65536

    # off by default: str data is usually an application bug
    use_encoding = 0
    encoding = "latin-1"

    #: Cap, in bytes, on one input frame (None: unlimited, as in CPython).
    #: Past it, handle_read raises FrameTooLarge, which reaches handle_error.
    #: None or an integer: a float (1000.0) makes handle_read and
    #: set_terminator raise TypeError, in both implementations.
    ac_max_frame_size = None

    #: Output back-pressure (None: off, as in CPython).  While more than
    #: this many pushed bytes wait to be sent, readable() is false, so a
    #: peer that sends requests but never reads replies is not read from
    #: until the queue drains to ac_out_low_water (default: half of it).
    ac_out_high_water = None
    ac_out_low_water = None
    _ac_out_queued = 0  # bytes pushed and not yet sent, while tracked
    _ac_reading_paused = False

    #: Join the replies to pipelined requests (a frame followed by more
    #: input in the same read) with the next reply in one send() (README,
    #: deviation 1).  False: one send per push, as in CPython.
    ac_coalesce_pushes = True

    #: The input delimiter (see set_terminator); stored in the channel's
    #: input state so the chat code reads it without a lookup per frame.
    terminator = _kernels.terminator_slot

    #: The channel's socket, kept in its output state: reading or replacing
    #: it first sends the replies held for pipelined requests.
    socket = _kernels.socket_slot

    #: The output queue (CPython's empty deque from __init__), kept in the
    #: channel's output state and made when first read: a channel that
    #: never needs it never pays for it (README, deviation 3).
    producer_fifo = _kernels.fifo_slot

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass's __slots__ entry "ac_in_buffer" would hide the
        # descriptor below: the values it holds would never reach the input
        # state the chat code reads.  Its member is dropped (the slot stays,
        # unused), so the descriptor serves the name as for any channel
        # (README, deviation 3).
        if type(vars(cls).get("ac_in_buffer")) is _MemberDescriptorType:
            type.__delattr__(cls, "ac_in_buffer")

    def __init__(self, sock=None, map=None):
        try:
            inbuf = object.__getattribute__(self, "_ac_in")
        except AttributeError:
            self._ac_in = _InputState(b"")
        else:
            # a terminator set before __init__ survives, as in CPython
            inbuf.discard()
        try:
            out = object.__getattribute__(self, "_ac_out")
        except AttributeError:
            out = self._ac_out = _OutputState()
        self.incoming = []
        _kernels.chat_init_fifo(self, out)  # self.producer_fifo = deque()
        asyncore.dispatcher.__init__(self, sock, map)

    @property
    def ac_in_buffer(self):
        """Received bytes not yet handed to ``collect_incoming_data``."""
        return self._ac_in.value()

    @ac_in_buffer.setter
    def ac_in_buffer(self, value):
        try:
            inbuf = self._ac_in
        except AttributeError:
            # a subclass that skipped async_chat.__init__ sets it itself
            self._ac_in = _InputState(value)
        else:
            inbuf.assign(value)

    def collect_incoming_data(self, data):
        """Receive bytes that came before the terminator; subclasses must override."""
        raise NotImplementedError("must be implemented in subclass")

    def found_terminator(self):
        """Called when the terminator was seen; subclasses must override."""
        raise NotImplementedError("must be implemented in subclass")

    # hot methods are kernel functions bound into the class (overridable
    # like any method); _use_impl() rebinds them
    set_terminator = _kernels.chat_set_terminator
    _collect_incoming_data = _kernels.chat__collect_incoming_data
    _get_data = _kernels.chat__get_data
    get_terminator = _kernels.chat_get_terminator
    handle_read = _kernels.chat_handle_read
    push = _kernels.chat_push
    initiate_send = _kernels.chat_initiate_send
    handle_write = _kernels.chat_handle_write
    send = _kernels.chat_send
    readable = _kernels.chat_readable
    writable = _kernels.chat_writable

    def close(self):
        """Close the channel, after the replies held for pipelined requests."""
        # with the output lock: another thread's push() never sends on a
        # socket being closed
        with _kernels.chan_output(self):
            _kernels.chat_flush(self)  # CPython had sent them at push() time
            asyncore.dispatcher.close(self)

    def handle_close(self):
        """The peer closed: close this end too."""
        self.close()

    def push_with_producer(self, producer):
        """Queue a producer (an object with ``more()``) and try to send now."""
        self.producer_fifo.append(producer)
        self.initiate_send()
        asyncore._loop_touch(self)

    def close_when_done(self):
        """Close the channel once everything queued before this is sent."""
        self.producer_fifo.append(None)
        asyncore._loop_touch(self)

    def discard_buffers(self):
        """Drop all buffered input and queued output (emergencies only)."""
        _kernels.chat_flush(self)  # CPython had sent these already
        self._ac_in.discard()
        del self.incoming[:]
        self.producer_fifo.clear()
        self._ac_out_queued = 0

    # --- framers (asynchat_core/framing.py, docs/framing.md) ------------------

    #: Payloads up to this size are joined with their header into one
    #: push (one send); larger ones are pushed as header and payload
    #: items.  Measured (docs/framing.md): joining 64 KiB costs about what
    #: one more send() does; a push above ac_out_buffer_size is cut anyway.
    ac_frame_join_limit = 65000

    def push_frame(self, payload, framer=None):
        """Push ``payload`` as one frame of ``framer`` (default: the
        channel's terminator, which must then be a framer)."""
        if framer is None:
            framer = self.get_terminator()
            if not isinstance(framer, _Framer):
                raise TypeError("push_frame: the terminator is not a framer (%r)" % (framer,))
        if len(payload) <= self.ac_frame_join_limit:
            self.push(framer.encode(payload))
            return
        head, body, tail = framer.encode_parts(payload)
        if head:
            self.push(head)
        self.push(body)
        if tail:
            self.push(tail)

    def push_frames(self, payloads, framer=None):
        """Push each of ``payloads`` as a frame (see ``push_frame``), the
        small ones joined: the replies to one ``found_messages`` call in
        one send."""
        kernel = _frame_kernels.get(_kernels) or _load_frame_kernel()
        kernel.push_frames(self, payloads, framer)

    def push_resp(self, value):
        """Push ``value`` as a RESP2 reply (``framing.encode_resp``)."""
        self.push(_encode_resp(value))


# async_chat's readable()/writable() are state-driven: tell the loop (which
# then asks them only after the channel ran or was touched)
asyncore._register_predicates(readable=async_chat.readable, writable=async_chat.writable)


class simple_producer:
    """A producer handing out ``data`` in pieces of ``buffer_size``."""

    def __init__(self, data, buffer_size=512):
        self.data = data
        self.buffer_size = buffer_size

    def more(self):
        """Return the next piece of data, ``b""`` when exhausted."""
        if len(self.data) > self.buffer_size:
            piece = self.data[:self.buffer_size]
            self.data = self.data[self.buffer_size:]
        else:
            piece, self.data = self.data, b""
        return piece


def _use_impl(module):
    """Bind this module to a chat implementation (``_chat_py`` or ``_chat_c``).

    For tests and benchmarks that compare both builds in one process; returns
    the module bound before, to restore it.
    """
    global _kernels, _InputState, _OutputState, find_prefix_at_end
    previous = _kernels
    _kernels = module
    _InputState = module.InputState
    _OutputState = module.OutputState
    find_prefix_at_end = module.find_prefix_at_end
    for name in _KERNEL_METHODS:
        setattr(async_chat, name, getattr(module, "chat_" + name))
    async_chat.terminator = module.terminator_slot
    async_chat.socket = module.socket_slot
    async_chat.producer_fifo = module.fifo_slot
    module.set_loop_hook(asyncore._loop_touch)
    module.set_dispatcher_class(asyncore.dispatcher)
    asyncore._register_predicates(readable=async_chat.readable, writable=async_chat.writable)
    return previous
