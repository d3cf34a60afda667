"""Framer kernel: whole messages out of a channel's input, one call each.

The one source of both builds, like ``_chat_py``: run as Python it is the
"python" implementation; setup.py compiles this file in Cython's
pure-Python mode as ``asynchat_core._frame_c``, typed by
``src/asynchat_core/_frame_c.pxd``, with the C helpers of
``src/asynchat_core/_framebits.pxd`` (their Python stand-ins are below,
under ``if not cython.compiled``).

``_chat_py._feed`` hands the input here when the terminator is a framer
(``asynchat_core.framing``).  Each complete frame is consumed (``pos``
moves past it) before its hook runs, so a hook that sets another
terminator leaves the rest of the buffer to that one; ``frame_deliver``
returns 1 when that terminator is not a framer (the classic loop takes
the rest), 0 when it needs more input.

``InputState.frame`` (unused by framers otherwise) remembers, between
reads, how far an incomplete frame is known: ``hint << 5 | flags | kind``,
where the hint is the bytes needed before it can complete (Lines: the
bytes already searched for the delimiter).  Flag 8 says that a long RESP
array's parsed items wait in the channel's ``_ac_frame_resume``, so that
an array arriving in many small reads is parsed once, not once per read;
flag 16 that the start of a large frame is parked in the channel's
``_ac_frame_parked`` (a list of reads) until the bytes it needs arrived,
so that it is joined once instead of being copied on every read (the
chat code appends each read to the unread input).  A stale or poked value
only makes the kernel parse again from the frame's start.

Every size is bounded: a frame over the framer's ``max_size`` or the
channel's ``ac_max_frame_size`` raises ``FrameTooLarge`` as soon as its
header says so (or, for lines, as soon as that many bytes came without
the delimiter), so nothing is buffered without bound.
"""

import sys as _sys

from asynchat_core._errors import FrameError, FrameTooLarge
from asynchat_core.framing import Framer, LengthPrefix

# only the type checker reads typing (in type comments, which pyflakes does
# not read: hence the noqa)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any  # noqa: F401

# Cython's compiler must see "import cython"; run as Python, the stand-in,
# Cython installed or not (its shadow module loads typing: issue 18).  The
# build names compiled modules *_c (asynchat_core/_cython.py)
if __name__.endswith("_c"):
    import cython
else:
    from ._cython import cython

__all__ = ["frame_deliver", "Framer", "join_length_frames", "push_frames"]

if not cython.compiled:
    # Python stand-ins for the C helpers of _framebits.pxd / _cbits.pxd

    def find_bytes(data, pos, term):
        return data.find(term, pos)

    def bytes_slice(data, start, stop):
        return data[start:stop]

    def uint_at(data, pos, size, big):
        # the unsigned integer of data[pos:pos + size] (caller: in bounds)
        return int.from_bytes(data[pos:pos + size], "big" if big else "little")

    def digits_at(data, start, stop):
        # data[start:stop] as a decimal count: -1 unless 1..18 ASCII digits
        if not 0 < stop - start <= 18:
            return -1
        piece = data[start:stop]
        if not piece.isdigit():
            return -1
        return int(piece)

    def byte_at(data, pos):
        return data[pos]

    def digits_crlf(data, start, end):
        raise AssertionError("asynchat_core: digits_crlf is the compiled build's")

    def join_length(payloads, size, big, limit):
        # _framebits.pxd's, in Python: the same answers, None included
        if (type(payloads) is not list and type(payloads) is not tuple or not payloads
                or not 1 <= size <= 8):
            return None
        most = (1 << (8 * size)) - 1
        parts = []
        for payload in payloads:
            if type(payload) is not bytes:
                return None
            n = len(payload)
            if n > limit or n > most:
                return None
            parts.append(n.to_bytes(size, "big" if big else "little"))
            parts.append(payload)
        return b"".join(parts)

    buffer_size = len

    # the lookup cache's helpers (_cbits.pxd) are called only under ``if
    # cython.compiled:``; the names stay defined so that code is valid Python
    def _compiled_only(*args):
        raise AssertionError("asynchat_core: a compiled-only helper called from Python")

    ac_getattr = ac_getattr_or = ac_method_or = _compiled_only
    ac_call0 = ac_call1 = ac_callm1 = _compiled_only


_Framer = Framer
_LengthPrefix = LengthPrefix
_MAXSIZE = _sys.maxsize
_FrameError = FrameError
_FrameTooLarge = FrameTooLarge

KIND_LENGTH = 1
KIND_NETSTRING = 2
KIND_RESP = 3
KIND_LINES = 4

# a netstring's or RESP header's longest count ("18 digits", < 2**63)
_MAX_DIGITS = 18


def _too_large(size, limit):
    return _FrameTooLarge(size, limit)


def _bad(what):
    return _FrameError("malformed frame: " + what)


def _hint(inbuf, kind):
    # what frame says about the incomplete frame of this kind (0: nothing)
    frame = inbuf.frame
    if frame <= 0 or (frame & 7) != kind:
        return 0
    return frame >> 5


def _set_hint(inbuf, kind, hint):
    inbuf.frame = (hint << 5) | kind if 0 < hint < (1 << 57) else 0
    return 0


# a frame still missing this many bytes is parked (flag 16)
_PARK_MIN = 256 * 1024


def _park(chan, inbuf, data, pos, end):
    # the unread input (a frame's start) out of the buffer, until it can complete
    chan._ac_frame_parked = [[bytes_slice(data, pos, end)], end - pos]
    inbuf.data = b""
    inbuf.pos = 0
    inbuf.frame = inbuf.frame | 16
    return 0


def _unpark(chan, inbuf, force):
    """Add the input to the parked frame start: 1 if the frame still lacks
    bytes (it stays parked, unless ``force``), else 0 (the whole is back in
    the buffer)."""
    parked = getattr(chan, "_ac_frame_parked", None)
    chan._ac_frame_parked = None
    inbuf.frame = inbuf.frame & ~16
    if not (type(parked) is list and len(parked) == 2 and type(parked[0]) is list):
        return 0  # gone (discard_buffers, a poke): parse what is there
    parts = parked[0]
    size = parked[1]
    rest = inbuf.value()
    if len(rest):
        parts.append(rest if type(rest) is bytes else bytes(rest))
        size += len(rest)
    if size < inbuf.frame >> 5 and not force:
        chan._ac_frame_parked = [parts, size]
        inbuf.data = b""
        inbuf.pos = 0
        inbuf.frame = inbuf.frame | 16
        return 1
    inbuf.assign(b"".join(parts))
    return 0


# items of an incomplete RESP array worth keeping between reads
_RESUME_ITEMS = 8


def _resp_wait(chan, inbuf, pos, end, head, total, at, count, items, need):
    """An incomplete RESP array: remember ``need`` (and, when many items
    are parsed, the items) in the hint; returns -1."""
    if len(items) >= _RESUME_ITEMS and 0 < need < (1 << 57):
        # (head: the array header's length, total: its count, end - pos:
        # the bytes seen: checked when resuming)
        chan._ac_frame_resume = (head, total, end - pos, at - pos, count, items)
        inbuf.frame = (need << 5) | 8 | KIND_RESP
    else:
        _set_hint(inbuf, KIND_RESP, need)
    return -1


def _parse_length(size, offset, big, includes, data, pos, end, limit, sink):
    """One length-prefixed frame at ``data[pos:end]``: its end, or -1.
    ``size``, ``offset``, ``big``, ``includes``: the framer's fields."""
    head = offset + size
    avail = end - pos
    if avail < head:
        return -1
    n = uint_at(data, pos + offset, size, big)
    if includes:
        if n < head:
            raise _bad("length %d is shorter than the header" % n)
        n -= head
    if n > limit:
        raise _too_large(n, limit)
    body = n
    if avail - head < body:
        return -(head + body) - 1  # the total it needs, encoded
    if offset:
        sink.append(bytes_slice(data, pos, pos + offset)
                    + bytes_slice(data, pos + head, pos + head + body))
    else:
        sink.append(bytes_slice(data, pos + head, pos + head + body))
    return pos + head + body


def _parse_netstring(data, pos, end, limit, sink):
    """One netstring at ``data[pos:end]``: its end, or -1 (or -need-1)."""
    avail = end - pos
    scan = avail if avail < _MAX_DIGITS + 1 else _MAX_DIGITS + 1
    colon = find_bytes(data, pos, b":")
    if colon < 0 or colon - pos >= scan:
        # no colon yet: fail now on anything that cannot start a netstring
        if scan > _MAX_DIGITS or digits_at(data, pos, pos + scan) < 0:
            raise _bad("netstring length is not a number")
        return -1
    count = digits_at(data, pos, colon)
    if count < 0 or (colon - pos > 1 and byte_at(data, pos) == 48):  # b"0"
        raise _bad("netstring length is not a number")
    if count > limit:
        raise _too_large(count, limit)
    total = colon + 1 - pos + count + 1
    if avail < total:
        return -total - 1
    if byte_at(data, colon + 1 + count) != 44:  # b","
        raise _bad("netstring not followed by ','")
    sink.append(bytes_slice(data, colon + 1, colon + 1 + count))
    return pos + total


def _parse_lines(delim, inbuf, data, pos, end, limit, sink):
    """One line at ``data[pos:end]``: its end, or -1 (the scan hint set)."""
    dlen = len(delim)
    start = _hint(inbuf, KIND_LINES)
    if start > end - pos:
        start = 0  # stale
    index = find_bytes(data, pos + start, delim)
    if index < 0:
        scanned = end - pos - dlen + 1
        if scanned > limit:
            raise _too_large(scanned, limit)
        _set_hint(inbuf, KIND_LINES, scanned)
        return -1
    if index - pos > limit:
        raise _too_large(index - pos, limit)
    sink.append(bytes_slice(data, pos, index))
    return index + dlen


def _resp_count(data, start, stop, what):
    # the count of a "*N" or "$N" line: digits in data[start:stop], or a
    # leading "-" (a negative count: returned as -2, the caller decides)
    if stop > start and byte_at(data, start) == 45:  # b"-"
        if digits_at(data, start + 1, stop) < 0:
            raise _bad(what + " is not a number")
        return -2
    count = digits_at(data, start, stop)
    if count < 0:
        raise _bad(what + " is not a number")
    return count


def _parse_resp(max_items, chan, inbuf, data, pos, end, limit, sink):
    """One request at ``data[pos:end]``: its end, -1 / -need-1 if
    incomplete, or -(end)-2**62 for a request that delivers nothing (an
    empty array or blank line), encoded by ``_SKIP``."""
    avail = end - pos
    # the compiled build reads a well-formed count in one scan; in Python
    # the general path (find the CRLF, then the digits) is the cheaper one
    one_scan = cython.compiled
    if byte_at(data, pos) != 42:  # b"*": an inline command
        nl = find_bytes(data, pos, b"\n")
        if nl < 0:
            if avail > limit:
                raise _too_large(avail, limit)
            return -1
        if nl - pos > limit:
            raise _too_large(nl - pos, limit)
        words = bytes_slice(data, pos, nl).split()
        if not words:
            return _SKIP - (nl + 1)
        sink.append(words)
        return nl + 1
    crlf = digits_crlf(data, pos + 1, end) if one_scan else -1
    if crlf >= 0:
        count = digits_at(data, pos + 1, crlf)
    else:
        crlf = find_bytes(data, pos, b"\r\n")
        if crlf < 0:
            if avail > _MAX_DIGITS + 3:
                raise _bad("array length is not a number")
            return -1
        count = _resp_count(data, pos + 1, crlf, "array length")
    if count <= 0:
        return _SKIP - (crlf + 2)  # "*0", "*-1": nothing, as Redis does
    if count > max_items:
        raise _bad("array of %d items (more than max_items)" % count)
    head = crlf + 2 - pos
    total = count
    at = crlf + 2
    items = []
    if (inbuf.frame & 15) == 8 | KIND_RESP:
        # resume: the items parsed by an earlier read, if they are still ours
        resume = getattr(chan, "_ac_frame_resume", None)
        chan._ac_frame_resume = None
        if (type(resume) is tuple and len(resume) == 6 and resume[0] == head
                and resume[1] == total and resume[2] <= end - pos
                and head <= resume[3] <= resume[2] and 0 < resume[4] <= total
                and type(resume[5]) is list and len(resume[5]) == total - resume[4]):
            at = pos + resume[3]
            count = resume[4]
            items = resume[5]
    while count > 0:
        if at >= end:
            return _resp_wait(chan, inbuf, pos, end, head, total, at, count, items,
                              at - pos + 1)
        if byte_at(data, at) != 36:  # b"$"
            raise _bad("expected '$', got %r" % bytes_slice(data, at, at + 1))
        crlf = digits_crlf(data, at + 1, end) if one_scan else -1
        if crlf >= 0:
            size = digits_at(data, at + 1, crlf)
        else:
            crlf = find_bytes(data, at, b"\r\n")
            if crlf < 0:
                if end - at > _MAX_DIGITS + 3:
                    raise _bad("bulk length is not a number")
                return _resp_wait(chan, inbuf, pos, end, head, total, at, count, items,
                                  end - pos + 1)
            size = _resp_count(data, at + 1, crlf, "bulk length")
            if size < 0:
                raise _bad("negative bulk length")
        if size > limit or crlf + 2 - pos > limit - size:
            raise _too_large(crlf + 2 - pos + size, limit)
        stop = crlf + 2 + size
        if end - stop < 2:
            return _resp_wait(chan, inbuf, pos, end, head, total, at, count, items,
                              stop + 2 - pos)
        if byte_at(data, stop) != 13 or byte_at(data, stop + 1) != 10:
            raise _bad("bulk string not followed by CRLF")
        items.append(bytes_slice(data, crlf + 2, stop))
        at = stop + 2
        count -= 1
    sink.append(items)
    return at


# a request that delivers nothing, consumed up to p, is returned as _SKIP - p
_SKIP = -(1 << 62)


def _parse(kind, size, offset, big, includes, delim, chan, inbuf, data, pos, end, limit,
           sink):
    """The end of the frame at ``pos`` (its message appended to ``sink``);
    _SKIP - end for a frame with no message; -1 if it needs more input.
    ``kind`` .. ``delim``: the framer's fields (its ``_spec``)."""
    need = _hint(inbuf, kind) if kind != KIND_LINES else 0
    if need > end - pos:
        return -1
    if kind == KIND_LENGTH:
        nxt = _parse_length(size, offset, big, includes, data, pos, end, limit, sink)
    elif kind == KIND_NETSTRING:
        nxt = _parse_netstring(data, pos, end, limit, sink)
    elif kind == KIND_RESP:
        nxt = _parse_resp(size, chan, inbuf, data, pos, end, limit, sink)
    else:
        return _parse_lines(delim, inbuf, data, pos, end, limit, sink)
    if _SKIP < nxt < -1:
        _set_hint(inbuf, kind, -nxt - 1)  # the bytes it needs at least
        return -1
    return nxt


def _current(chan, inbuf, slot):
    # the terminator now, as _chat_py reads it for the mode in force
    if slot:
        term = inbuf.terminator
        if not isinstance(term, _Framer):
            return chan.terminator  # UNSET: AttributeError, as classic
        return term
    return chan.get_terminator()


def _limit(chan, limit):
    # the framer's max_size (``limit``), lowered by ac_max_frame_size
    if cython.compiled:
        cap = ac_getattr_or(chan, "ac_max_frame_size", None)  # (the lookup cache)
    else:
        cap = getattr(chan, "ac_max_frame_size", None)
    if cap is not None:
        if type(cap) is not int:  # (an exact int is its own __index__)
            cap = cap.__index__()
        if cap < 0:
            raise ValueError("ac_max_frame_size must be None or >= 0")
        if cap < limit:
            limit = cap
    return limit


def _fail(chan, inbuf):
    # inside the except clause: handle_error sees the FrameError, then the
    # channel closes whatever handle_error did
    inbuf.discard()
    try:
        chan.handle_error()
    finally:
        chan.close()
    return 0


# whether replies pushed from a hook may be held (OutputState rule 2): the
# chat module's own send/initiate_send, looked up once (no import cycle)
_chat_send = None
_chat_initiate = None


def _batch_ok(chan, out):
    global _chat_send, _chat_initiate
    if out.batch_ok < 0:
        if _chat_send is None:
            # the chat module of this build, loaded: it is the caller
            chat = _sys.modules["asynchat_core._chat_c" if cython.compiled
                                else "asynchat_core._chat_py"]
            _chat_send = chat.chat_send
            _chat_initiate = chat.chat_initiate_send
        send = chan.send
        initiate = chan.initiate_send
        out.batch_ok = (getattr(send, "__func__", None) is _chat_send
                        and getattr(initiate, "__func__", None) is _chat_initiate)
    return out.batch_ok


def frame_deliver(chan, inbuf, out, slot, eof):
    """Deliver every complete frame of ``inbuf`` to the channel's hooks.

    ``slot``: the terminator is async_chat's own (``inbuf.terminator``);
    else it is ``chan.get_terminator()``.  ``eof``: the peer closed, so an
    incomplete frame is an error.  Returns 1 if the terminator became a
    classic one (the rest of the buffer is the caller's), else 0.
    """
    framer = _current(chan, inbuf, slot)
    if inbuf.frame & 16 and _unpark(chan, inbuf, eof or not isinstance(framer, _Framer)):
        return 0  # a large frame, still incomplete
    if not isinstance(framer, _Framer):
        return 1
    # the hooks and ``connected`` are read once per read, as a handler may
    # change them between reads.  Compiled, through the lookup cache
    # (_cbits.pxd; getattr's rule with a default), a hook found on the class
    # comes back unbound (many_unbound/one_unbound: called with chan first,
    # by ac_callm1) instead of as a new bound method
    many_unbound = 0
    one_unbound = 0
    if cython.compiled:
        many = ac_method_or(chan, "found_messages", None,
                            cython.address(many_unbound))  # type: Any
        one = None  # type: Any
        if many is None:
            one = ac_method_or(chan, "found_message", None, cython.address(one_unbound))
        alive = ac_getattr(chan, "connected")
    else:
        many = getattr(chan, "found_messages", None)
        one = getattr(chan, "found_message", None) if many is None else None
        alive = chan.connected
    # the messages parsed; one per hook call: batch[done] is the next, and
    # its slot is cleared as it is delivered (no pop: a list that shrinks to
    # empty frees its storage, and the next append allocates it again)
    batch = []  # type: list[Any]
    done = 0
    while True:
        # the framer's fields, once per framer (a hook may set another), out
        # of one tuple (framing.Framer._seal): one attribute lookup each
        # would cost more than parsing a short frame
        spec = framer._spec
        kind = spec[0]
        limit = _limit(chan, spec[1])
        size = spec[2]  # LengthPrefix: the header's size; RespRequests: max_items
        offset = spec[3]
        big = spec[4]
        includes = spec[5]
        delim = spec[6]
        switched = False
        while True:
            data = inbuf.data
            pos = inbuf.pos
            if type(data) is not bytes or pos < 0:
                inbuf.assign(bytes(inbuf.value()))  # what a hook put there
                inbuf.frame = 0
                continue
            end = len(data)
            if pos >= end:
                break
            try:
                nxt = _parse(kind, size, offset, big, includes, delim, chan, inbuf, data,
                             pos, end, limit, batch)
            except _FrameError:
                if batch and many is not None:
                    if cython.compiled:
                        ac_callm1(many, many_unbound, chan, batch)
                    else:
                        many(batch)
                return _fail(chan, inbuf)
            if nxt == -1:
                break
            if nxt < -1:  # a request with no message
                inbuf.pos = _SKIP - nxt
                inbuf.frame = 0
                continue
            inbuf.pos = nxt
            inbuf.frame = 0
            if many is not None:
                continue
            message = batch[done]
            batch[done] = None
            done += 1
            if done == 64:
                del batch[:]
                done = 0
            # replies to pipelined requests are held while input follows
            # (OutputState, rule 2); handle_read sends them
            batching = out is not None and nxt < end and _batch_ok(chan, out)
            if batching:
                out.batching = True
            if cython.compiled:
                if one is not None:
                    ac_callm1(one, one_unbound, chan, message)
                else:
                    if message:
                        ac_call1(chan, "collect_incoming_data", message)
                    ac_call0(chan, "found_terminator")
            elif one is not None:
                one(message)
            else:
                if message:
                    chan.collect_incoming_data(message)
                chan.found_terminator()
            if batching:
                out.batching = False
            if alive and not (ac_getattr(chan, "connected") if cython.compiled
                              else chan.connected):
                return 0  # closed by the hook: the rest is not delivered
            if slot and inbuf.terminator is framer:
                continue  # (the common case, without a call)
            now = _current(chan, inbuf, slot)
            if now is not framer:
                if not isinstance(now, _Framer):
                    return 1
                framer = now
                switched = True
                break  # the rest, with the new framer's fields
        if batch and many is not None:
            messages = batch
            batch = []
            if cython.compiled:
                ac_callm1(many, many_unbound, chan, messages)
            else:
                many(messages)
            if alive and not (ac_getattr(chan, "connected") if cython.compiled
                              else chan.connected):
                return 0
            now = _current(chan, inbuf, slot)
            if now is not framer:
                if not isinstance(now, _Framer):
                    return 1
                framer = now
                continue  # the rest, with the new framer
        if switched:
            continue
        break
    data = inbuf.data
    pos = inbuf.pos
    end = buffer_size(data)
    if eof and pos < end:
        return _eof(chan, inbuf)
    if (kind != KIND_LINES and 0 <= pos < end
            and _hint(inbuf, kind) - (end - pos) > _PARK_MIN):
        _park(chan, inbuf, data, pos, end)
    return 0


def _eof(chan, inbuf):
    try:
        raise _bad("the peer closed inside a frame")
    except _FrameError:
        return _fail(chan, inbuf)


def join_length_frames(payloads, size, big, limit):
    """``payloads`` as frames of a ``size``-byte length header (``big``
    endian or not) and the payload, joined in one ``bytes`` (push_frames'
    common case, one call per read); None unless ``payloads`` is a non-empty
    list or tuple of exact ``bytes`` of at most ``limit`` bytes each whose lengths
    the header can hold: the caller then encodes them one by one, which
    raises what it raises."""
    return join_length(payloads, size, big, limit)


def push_frames(chan, payloads, framer):
    """``async_chat.push_frames``: each of ``payloads`` as a frame of
    ``framer`` (None: the channel's terminator), the ones of at most
    ``ac_frame_join_limit`` bytes joined into one push, a larger one pushed
    as its frame's parts (``push_frame``).  An exact ``LengthPrefix``
    without offset or counted header and a list of ``bytes`` within the
    limit (a server's replies to one read) take one kernel call; anything
    else is encoded payload by payload, with the same bytes and errors."""
    if framer is None:
        framer = ac_call0(chan, "get_terminator") if cython.compiled else chan.get_terminator()
        if not isinstance(framer, _Framer):
            raise TypeError("push_frames: the terminator is not a framer (%r)" % (framer,))
    limit = (ac_getattr(chan, "ac_frame_join_limit") if cython.compiled
             else chan.ac_frame_join_limit)
    if (type(framer) is _LengthPrefix and type(limit) is int and limit >= 0
            and not framer._offset and not framer._includes):
        joined = join_length(payloads, framer._size, framer._big,
                             limit if limit < _MAXSIZE else _MAXSIZE)
        if joined is not None:
            if cython.compiled:
                ac_call1(chan, "push", joined)
            else:
                chan.push(joined)
            return
    small = []
    for payload in payloads:
        if len(payload) <= limit:
            small.append(payload)
            continue
        if small:
            chan.push(framer.encode_many(small))
            small = []
        chan.push_frame(payload, framer)
    if small:
        chan.push(framer.encode_many(small))
