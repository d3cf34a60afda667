"""Framers: terminators that cut whole messages in the chat kernel.

Give one to ``async_chat.set_terminator`` and the kernel
(``asynchat_core._frame_py``, compiled as ``_frame_c``) parses the input
and hands each complete message to one Python call:

* ``found_messages(list)``, if the channel defines it: once per read, with
  every message the read completed;
* else ``found_message(payload)``, once per message;
* else ``collect_incoming_data(payload)`` then ``found_terminator()``, per
  message (an empty payload is not collected, as with classic terminators).

A payload is ``bytes``; for ``RespRequests`` it is a list of ``bytes``
(the command and its arguments).  The frame is consumed before the hook
runs: ``ac_in_buffer`` then holds the input after it, and a hook may set
another terminator (a framer, or a classic one) for that rest.

Malformed input, or a frame larger than ``ac_max_frame_size`` or the
framer's ``max_size``, raises ``FrameError`` (``FrameTooLarge`` for
sizes): the channel's ``handle_error`` gets it, then the channel is
closed.  See docs/framing.md.
"""

import sys
from struct import Struct as _Struct

from ._errors import FrameError, FrameTooLarge
# the base class lives apart, so that asynchat can test for it without
# importing this module (asynchat_core/_framer.py)
from ._framer import Framer

__all__ = [
    "FrameError", "FrameTooLarge", "Framer", "LengthPrefix", "Netstring", "RespRequests",
    "Lines", "DEFAULT_MAX_SIZE", "encode_resp", "RespSimple", "RespError",
]

#: The ``max_size`` of a framer unless given: input is never buffered
#: without bound, even with ``ac_max_frame_size = None``.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

# framer kinds, as the kernels know them
KIND_LENGTH = 1
KIND_NETSTRING = 2
KIND_RESP = 3
KIND_LINES = 4


_HEADER_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


class LengthPrefix(Framer):
    """Messages after an unsigned binary length.

    ``header``: 1, 2, 4 or 8 bytes; ``byteorder``: ``"big"`` or
    ``"little"``; ``includes_header``: the length counts the header (the
    offset bytes and the length field) as well as the payload;
    ``offset``: a fixed number of bytes before the length field (a type or
    version byte, say), delivered as the start of the payload.
    """

    __slots__ = ("_struct",)

    def __init__(self, header=4, byteorder="big", includes_header=False, offset=0,
                 max_size=DEFAULT_MAX_SIZE):
        if header not in _HEADER_FORMATS:
            raise ValueError("header must be 1, 2, 4 or 8 bytes")
        if byteorder not in ("big", "little"):
            raise ValueError("byteorder must be 'big' or 'little'")
        offset = int(offset)
        if not 0 <= offset <= 65536:
            raise ValueError("offset must be in 0..65536")
        Framer.__init__(self, KIND_LENGTH, max_size)
        self._size = header
        self._big = byteorder == "big"
        self._includes = bool(includes_header)
        self._offset = offset
        self._seal()
        self._struct = _Struct((">" if self._big else "<") + _HEADER_FORMATS[header])

    def __repr__(self):
        return "LengthPrefix(header=%d, byteorder=%r, includes_header=%r, offset=%d)" % (
            self._size, "big" if self._big else "little", self._includes, self._offset)

    def encode_parts(self, payload):
        # with an offset, the payload starts with the offset bytes (as delivered)
        n = len(payload) - self._offset
        if n < 0:
            raise ValueError("payload shorter than the framer's offset")
        if self._includes:
            n += self._offset + self._size
        head = self._struct.pack(n)  # struct.error past the header's range
        if self._offset:
            view = memoryview(payload)
            return bytes(view[:self._offset]) + head, view[self._offset:], b""
        return head, payload, b""

    def encode(self, payload):
        if not self._offset and not self._includes:  # the common case, directly
            return self._struct.pack(len(payload)) + payload
        head, body, _ = self.encode_parts(payload)
        return head + body


class Netstring(Framer):
    """Netstrings: ``<decimal length>:<payload>,`` (no leading zeros)."""

    __slots__ = ()

    def __init__(self, max_size=DEFAULT_MAX_SIZE):
        Framer.__init__(self, KIND_NETSTRING, max_size)

    def __repr__(self):
        return "Netstring()"

    def encode_parts(self, payload):
        return b"%d:" % len(payload), payload, b","

    def encode(self, payload):
        return b"%d:%s," % (len(payload), payload)


class RespRequests(Framer):
    """Redis requests: an array of bulk strings becomes a list of ``bytes``;
    an inline command (a line not starting with ``*``) is split on blanks.

    ``max_size`` bounds each request (its bytes on the wire); an array of
    more than ``max_items`` elements is an error.  Empty arrays and blank
    inline lines are skipped, as Redis does.
    """

    __slots__ = ()

    def __init__(self, max_size=DEFAULT_MAX_SIZE, max_items=1024 * 1024):
        Framer.__init__(self, KIND_RESP, max_size)
        max_items = min(int(max_items), sys.maxsize)  # a C size in the kernel
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self._size = max_items
        self._seal()

    def __repr__(self):
        return "RespRequests()"

    def encode(self, payload):
        """A request (list of bytes) as an array of bulk strings."""
        return encode_resp(list(payload))

    def encode_parts(self, payload):
        return b"", self.encode(payload), b""


class Lines(Framer):
    """Lines ending with ``delimiter`` (not included in the payload)."""

    __slots__ = ()

    def __init__(self, delimiter=b"\n", max_size=DEFAULT_MAX_SIZE):
        if not isinstance(delimiter, bytes) or not delimiter:
            raise ValueError("delimiter must be non-empty bytes")
        Framer.__init__(self, KIND_LINES, max_size)
        self._delim = delimiter
        self._seal()

    def __repr__(self):
        return "Lines(%r)" % (self._delim,)

    def encode_parts(self, payload):
        return b"", payload, self._delim

    def encode(self, payload):
        return payload + self._delim


# --- RESP replies ---------------------------------------------------------


class RespSimple(str):
    """A simple string reply (``+OK``): ``encode_resp(RespSimple("OK"))``."""

    __slots__ = ()


class RespError(str):
    """An error reply (``-ERR ...``): ``encode_resp(RespError("ERR bad"))``."""

    __slots__ = ()


_NIL = b"$-1\r\n"


def _encode_into(out, value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        out.append(b"$%d\r\n" % len(value))
        out.append(value)
        out.append(b"\r\n")
    elif value is None:
        out.append(_NIL)
    elif isinstance(value, RespSimple) or isinstance(value, RespError):
        text = value.encode("utf-8")
        if b"\r" in text or b"\n" in text:
            raise ValueError("a simple string or error cannot hold CR or LF")
        out.append((b"+" if isinstance(value, RespSimple) else b"-") + text + b"\r\n")
    elif isinstance(value, bool):
        raise TypeError("RESP has no booleans in RESP2: use 0 or 1")
    elif isinstance(value, int):
        out.append(b":%d\r\n" % value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    elif isinstance(value, (list, tuple)):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(out, item)
    else:
        raise TypeError("cannot encode %s as RESP" % type(value).__name__)


def encode_resp(value):
    """``value`` as a RESP2 reply.

    bytes-like: a bulk string; str: a bulk string (UTF-8); int: an integer;
    None: nil (``$-1``); list or tuple: an array (of any of these);
    ``RespSimple``: a simple string; ``RespError``: an error.
    """
    out = []
    _encode_into(out, value)
    return b"".join(out)
