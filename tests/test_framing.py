"""Framers (asynchat_core.framing, issue 19), on both builds.

The differential fuzz compares each framer, over random chunkings of
random streams, with the plain reference parsers below (written for these
tests from the formats' definitions, not from the kernel): the same
messages, in the same order, with the same error at the same point.
"""
import re
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import impls
from asynchat_core import framing
from asynchat_core.framing import (
    FrameError, FrameTooLarge, LengthPrefix, Lines, Netstring, RespRequests, RespError,
    RespSimple, encode_resp,
)
from chat_harness import ScriptedSocket

OURS = impls.available(impls.OURS)
EOF = object()  # a chunk that ends the script with the peer's close


# --- reference parsers: (events, complete) for a whole stream ----------------
# events: ("msg", payload) ..., then ("error", name) if the stream is bad;
# at_eof: the peer closed after it (a partial frame is then an error).


def ref_length(stream, header, big, includes, offset, limit, at_eof):
    events = []
    fmt = (">" if big else "<") + {1: "B", 2: "H", 4: "I", 8: "Q"}[header]
    head = offset + header
    i = 0
    while True:
        rest = stream[i:]
        if len(rest) < head:
            break
        (n,) = struct.unpack(fmt, rest[offset:head])
        if includes:
            if n < head:
                return events + [("error", "FrameError")]
            n -= head
        if n > limit:
            return events + [("error", "FrameTooLarge")]
        if len(rest) < head + n:
            break
        events.append(("msg", rest[:offset] + rest[head:head + n]))
        i += head + n
    if at_eof and i < len(stream):
        events.append(("error", "FrameError"))
    return events


_NETSTRING = re.compile(rb"(0|[1-9][0-9]{0,17}):")


def ref_netstring(stream, limit, at_eof):
    events = []
    i = 0
    while i < len(stream):
        m = _NETSTRING.match(stream, i)
        if m is None:
            rest = stream[i:i + 19]
            if len(rest) <= 18 and rest.isdigit() and b":" not in stream[i:]:
                break  # a length still arriving
            return events + [("error", "FrameError")]
        n = int(m.group(1))
        if n > limit:
            return events + [("error", "FrameTooLarge")]
        start = m.end()
        if len(stream) < start + n + 1:
            break
        if stream[start + n:start + n + 1] != b",":
            return events + [("error", "FrameError")]
        events.append(("msg", stream[start:start + n]))
        i = start + n + 1
    if at_eof and i < len(stream):
        events.append(("error", "FrameError"))
    return events


def ref_lines(stream, delim, limit, at_eof):
    events = []
    pieces = stream.split(delim)
    for piece in pieces[:-1]:
        if len(piece) > limit:
            return events + [("error", "FrameTooLarge")]
        events.append(("msg", piece))
    tail = pieces[-1]
    if len(tail) - len(delim) + 1 > limit:
        return events + [("error", "FrameTooLarge")]
    if at_eof and tail:
        events.append(("error", "FrameError"))
    return events


def _count(line):
    # a RESP "*N"/"$N" count: int, None for a malformed one
    if re.fullmatch(rb"-?[0-9]{1,18}", line) is None:
        return None
    return int(line)


def ref_resp(stream, limit, at_eof, max_items=1024 * 1024):
    events = []
    i = 0
    while i < len(stream):
        if stream[i:i + 1] != b"*":
            nl = stream.find(b"\n", i)
            if nl < 0:
                if len(stream) - i > limit:
                    return events + [("error", "FrameTooLarge")]
                break
            if nl - i > limit:
                return events + [("error", "FrameTooLarge")]
            words = stream[i:nl].split()
            if words:
                events.append(("msg", words))
            i = nl + 1
            continue
        crlf = stream.find(b"\r\n", i)
        if crlf < 0:
            if len(stream) - i > 21:
                return events + [("error", "FrameError")]
            break
        n = _count(stream[i + 1:crlf])
        if n is None:
            return events + [("error", "FrameError")]
        if n <= 0:
            i = crlf + 2
            continue
        if n > max_items:
            return events + [("error", "FrameError")]
        at = crlf + 2
        items = []
        for _ in range(n):
            if at >= len(stream):
                break
            if stream[at:at + 1] != b"$":
                return events + [("error", "FrameError")]
            crlf = stream.find(b"\r\n", at)
            if crlf < 0:
                if len(stream) - at > 21:
                    return events + [("error", "FrameError")]
                break
            size = _count(stream[at + 1:crlf])
            if size is None or size < 0:
                return events + [("error", "FrameError")]
            if crlf + 2 - i + size > limit:
                return events + [("error", "FrameTooLarge")]
            stop = crlf + 2 + size
            if len(stream) - stop < 2:
                break
            if stream[stop:stop + 2] != b"\r\n":
                return events + [("error", "FrameError")]
            items.append(stream[crlf + 2:stop])
            at = stop + 2
        if len(items) < n:
            break
        events.append(("msg", items))
        i = at
    if at_eof and i < len(stream):
        events.append(("error", "FrameError"))
    return events


# --- the channel under test --------------------------------------------------


class _Log:
    def handle_error(self):
        import sys
        self.events.append(("error", sys.exc_info()[0].__name__))
        self.error_text = str(sys.exc_info()[1])

    def handle_close(self):
        self.closes += 1
        self.close()


class PerMessage(_Log):
    def found_message(self, payload):
        self.events.append(("msg", payload))


class PerRead(_Log):
    def found_messages(self, payloads):
        self.reads += 1
        self.events.extend(("msg", p) for p in payloads)


class Classic(_Log):
    def collect_incoming_data(self, data):
        self.collected.append(data)

    def found_terminator(self):
        if self.collected and isinstance(self.collected[0], list):
            payload = self.collected[0]
        else:
            payload = b"".join(self.collected)
        self.collected = []
        self.events.append(("msg", payload))


HOOKS = {"message": PerMessage, "messages": PerRead, "classic": Classic}


def make(impl_name, hooks, framer, chunks, read_size=65536, cap=None):
    impl = impls.get(impl_name)
    sock = ScriptedSocket([b"" if c is EOF else c for c in chunks])
    chan = impl.chat_class(HOOKS[hooks])(sock=None, map={})
    chan.events, chan.collected, chan.closes, chan.reads = [], [], 0, 0
    chan.ac_in_buffer_size = read_size
    chan.ac_max_frame_size = cap
    chan.set_socket(sock)
    chan.connected = True
    chan.set_terminator(framer)
    return chan, sock


def run(impl_name, hooks, framer, chunks, read_size=65536, cap=None):
    """Feed ``chunks`` (EOF: the peer's close) and return the channel."""
    with impls.bound(impl_name):
        chan, sock = make(impl_name, hooks, framer, chunks, read_size, cap)
        reads = 0
        while sock.chunks and chan.connected and reads < 100000:  # (a bound on a bug)
            reads += 1
            chan.handle_read()
    return chan


def split(stream, cuts):
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(stream)]:
        if p > last:
            pieces.append(stream[last:p])
            last = p
    return pieces


# --- differential fuzz ---------------------------------------------------------

payloads = st.lists(st.binary(max_size=40), max_size=8)
cuts = st.lists(st.integers(0, 10**6), max_size=12)
junk = st.sampled_from([b"", b"", b"-5:", b"x", b"99999999999999999999:", b"*2\r\n$-3\r\n",
                        b"$3\r\n", b"\xff\xff\xff\xff", b"01:a,", b"3:abc;", b"*1\r\n$2\r\nab!!",
                        b"*abc\r\n", b"5:ab"])
common = dict(impl=st.sampled_from(OURS), hooks=st.sampled_from(sorted(HOOKS)),
              chunking=cuts, tail=junk, at_eof=st.booleans(),
              read_size=st.sampled_from([1, 2, 3, 7, 64, 65536]),
              cap=st.sampled_from([None, 0, 5, 30, 1000]))
fuzz = settings(deadline=None)  # the count: the profile (tests/conftest.py)


def check(chan, expected):
    got = chan.events
    if expected and expected[-1][0] == "error":
        assert not chan.connected  # closed after handle_error
    assert got == expected


def limit_of(framer, cap):
    return framer.max_size if cap is None else min(cap, framer.max_size)


@fuzz
@given(payloads=payloads, header=st.sampled_from([1, 2, 4, 8]), big=st.booleans(),
       includes=st.booleans(), offset=st.sampled_from([0, 0, 1, 3]), **common)
@example(payloads=[b"ab", b"", b"c" * 40], header=1, big=True, includes=False, offset=0,
         impl=OURS[-1], hooks="message", chunking=[], tail=b"", at_eof=False, read_size=1,
         cap=None)
def test_length_prefix_matches_reference(payloads, header, big, includes, offset, impl, hooks,
                                         chunking, tail, at_eof, read_size, cap):
    framer = LengthPrefix(header, "big" if big else "little", includes, offset)
    fmt = (">" if big else "<") + {1: "B", 2: "H", 4: "I", 8: "Q"}[header]
    stream = b""
    for p in payloads:
        body = p[offset:]
        n = len(body) + (offset + header if includes else 0)
        stream += p[:offset].ljust(offset, b"#") + struct.pack(fmt, n % (256 ** header)) + body
    stream += tail
    chunks = split(stream, chunking) + ([EOF] if at_eof else [])
    expected = ref_length(stream, header, big, includes, offset, limit_of(framer, cap), at_eof)
    check(run(impl, hooks, framer, chunks, read_size, cap), expected)


@fuzz
@given(payloads=payloads, **common)
def test_netstring_matches_reference(payloads, impl, hooks, chunking, tail, at_eof,
                                     read_size, cap):
    framer = Netstring()
    stream = b"".join(b"%d:%s," % (len(p), p) for p in payloads) + tail
    chunks = split(stream, chunking) + ([EOF] if at_eof else [])
    expected = ref_netstring(stream, limit_of(framer, cap), at_eof)
    check(run(impl, hooks, framer, chunks, read_size, cap), expected)


@fuzz
@given(payloads=payloads, delim=st.sampled_from([b"\n", b"\r\n", b"END"]), **common)
def test_lines_match_reference(payloads, delim, impl, hooks, chunking, tail, at_eof,
                               read_size, cap):
    framer = Lines(delim)
    stream = b"".join(p.replace(delim, b"") + delim for p in payloads) + tail
    chunks = split(stream, chunking) + ([EOF] if at_eof else [])
    expected = ref_lines(stream, delim, limit_of(framer, cap), at_eof)
    if hooks == "classic":  # an empty line is not collected, but found
        pass
    check(run(impl, hooks, framer, chunks, read_size, cap), expected)


requests = st.lists(st.one_of(
    st.lists(st.binary(max_size=12), min_size=0, max_size=4).map(lambda r: ("array", r)),
    st.lists(st.binary(min_size=1, max_size=6).filter(lambda w: not w.split() == [] and
                                                      w.split() == [w] and w[:1] != b"*"),
             min_size=0, max_size=3).map(lambda r: ("inline", r)),
), max_size=6)


@fuzz
@given(reqs=requests, crlf=st.booleans(), **common)
def test_resp_requests_match_reference(reqs, crlf, impl, hooks, chunking, tail, at_eof,
                                       read_size, cap):
    framer = RespRequests()
    stream = b""
    for kind, words in reqs:
        if kind == "array":
            stream += b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w)
                                                         for w in words)
        else:
            stream += b" ".join(words) + (b"\r\n" if crlf else b"\n")
    stream += tail
    chunks = split(stream, chunking) + ([EOF] if at_eof else [])
    expected = ref_resp(stream, limit_of(framer, cap), at_eof)
    check(run(impl, hooks, framer, chunks, read_size, cap), expected)


# --- hostile streams -----------------------------------------------------------

HOSTILE = [
    (LengthPrefix(8), [b"\xff" * 8], "FrameTooLarge"),  # 2**64 - 1
    (LengthPrefix(4, includes_header=True), [b"\x00\x00\x00\x02"], "FrameError"),
    (Netstring(), [b"-5:hello,"], "FrameError"),
    (Netstring(), [b"12a:"], "FrameError"),
    (Netstring(), [b"9" * 30], "FrameError"),
    (Netstring(), [b"3:abcX"], "FrameError"),
    (Netstring(), [b"007:abcdefg,"], "FrameError"),
    (RespRequests(), [b"*1\r\n$-1\r\n"], "FrameError"),
    (RespRequests(), [b"*1\r\n:5\r\n"], "FrameError"),
    (RespRequests(), [b"*x\r\n"], "FrameError"),
    (RespRequests(), [b"*" + b"9" * 40], "FrameError"),
    (RespRequests(), [b"*1\r\n$3\r\nabcXY"], "FrameError"),
    (RespRequests(max_items=2), [b"*3\r\n"], "FrameError"),
    (RespRequests(), [b"*1\r\n$999999999999\r\n"], "FrameTooLarge"),
]


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("framer,chunks,error", HOSTILE, ids=[repr(h[1][0][:12]) for h in HOSTILE])
def test_hostile_stream_goes_to_handle_error_then_closes(impl, framer, chunks, error):
    for read_size in (1, 65536):
        chan = run(impl, "message", framer, chunks + [b"*1\r\n$1\r\nx\r\n"], read_size)
        assert chan.events == [("error", error)]
        assert not chan.connected
        assert chan.ac_in_buffer == b""


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("stream,text", [
    (b"*1\r\n$3\rXabc\r\n", "bulk length is not a number"),  # a CR alone ends no count
    (b"*1\rX\r\n$1\r\nx\r\n", "array length is not a number"),
    (b"*1\r\n$" + b"1" * 19 + b"\r\n", "bulk length is not a number"),  # 19 digits
    (b"*" + b"1" * 19 + b"\r\n", "array length is not a number"),
    (b"*1\r\n$03\r\nabc\r\n", None),  # leading zeros are digits on either path
])
def test_resp_counts_end_at_crlf_after_at_most_18_digits(impl, stream, text):
    for read_size in (1, 65536):
        chan = run(impl, "message", RespRequests(), [stream], read_size)
        if text is None:
            assert chan.events == [("msg", [b"abc"])]
        else:
            assert chan.events == [("error", "FrameError")] and text in chan.error_text


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("framer,partial", [
    (LengthPrefix(4), b"\x00\x00"), (LengthPrefix(2), b"\x00\x05ab"), (Netstring(), b"5:ab"),
    (Lines(), b"no newline"), (RespRequests(), b"*2\r\n$1\r\na\r\n"),
])
def test_frame_cut_by_the_peers_close(impl, framer, partial):
    chan = run(impl, "message", framer, [partial, EOF])
    assert chan.events == [("error", "FrameError")]
    assert chan.closes == 1 and not chan.connected


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_cap_stops_a_frame_at_its_header(impl):
    # the header says 1000 bytes; the cap is 100: refused before any body
    # byte is buffered (nothing is held without bound)
    chan = run(impl, "message", LengthPrefix(4), [b"\x00\x00\x03\xe8", b"x" * 50], cap=100)
    assert chan.events == [("error", "FrameTooLarge")]
    assert not chan.connected


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_lines_without_delimiter_are_capped(impl):
    chan = run(impl, "message", Lines(), [b"x" * 40] * 5, read_size=40, cap=100)
    assert chan.events == [("error", "FrameTooLarge")]
    assert not chan.connected


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_framer_max_size_applies_without_ac_max_frame_size(impl):
    chan = run(impl, "message", Netstring(max_size=4), [b"5:abcde,"])
    assert chan.events == [("error", "FrameTooLarge")]


# --- hooks ---------------------------------------------------------------------


class Switching(_Log):
    """STARTTLS-like: a framer, then a classic terminator, then a framer."""

    def found_message(self, payload):
        self.events.append(("msg", payload))
        if payload == b"SWITCH":
            self.set_terminator(b"\r\n")
        elif payload == b"NET":
            self.set_terminator(Netstring())

    def collect_incoming_data(self, data):
        self.collected.append(data)

    def found_terminator(self):
        line = b"".join(self.collected)
        self.collected = []
        self.events.append(("line", line))
        if line == b"BACK":
            self.set_terminator(Lines(b"\n"))


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("read_size", [1, 3, 65536])
def test_hooks_change_the_terminator_mid_buffer(impl, read_size):
    stream = b"a\nSWITCH\nb\r\nBACK\r\nc\nNET\n3:xyz,"
    with impls.bound(impl):
        sock = ScriptedSocket([stream])
        chan = impls.get(impl).chat_class(Switching)(sock=None, map={})
        chan.events, chan.collected, chan.closes = [], [], 0
        chan.ac_in_buffer_size = read_size
        chan.set_socket(sock)
        chan.connected = True
        chan.set_terminator(Lines(b"\n"))
        while sock.chunks:
            chan.handle_read()
    assert chan.events == [("msg", b"a"), ("msg", b"SWITCH"), ("line", b"b"), ("line", b"BACK"),
                           ("msg", b"c"), ("msg", b"NET"), ("msg", b"xyz")]


class Closing(PerMessage):
    def found_message(self, payload):
        self.events.append(("msg", payload))
        if payload == b"QUIT":
            self.close()


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_closing_inside_a_hook_stops_delivery(impl):
    with impls.bound(impl):
        sock = ScriptedSocket([b"a\nQUIT\nb\nc\n"])
        chan = impls.get(impl).chat_class(Closing)(sock=None, map={})
        chan.events, chan.closes = [], 0
        chan.set_socket(sock)
        chan.connected = True
        chan.set_terminator(Lines())
        chan.handle_read()
    assert chan.events == [("msg", b"a"), ("msg", b"QUIT")]
    assert sock.closed


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_found_messages_gets_one_call_per_read(impl):
    chan = run(impl, "messages", Lines(), [b"a\nb\nc", b"\nd\n"])
    assert chan.reads == 2
    assert chan.events == [("msg", b"a"), ("msg", b"b"), ("msg", b"c"), ("msg", b"d")]


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_found_message_over_many_messages_of_one_read_with_a_switch(impl):
    # the kernel reuses its message list every 64 messages of a read (no pop
    # per message): 150 in one read, the framer switched after the 100th
    lines = [b"m%d" % i for i in range(99)] + [b"NET"]
    stream = b"".join(line + b"\n" for line in lines)
    stream += b"".join(b"%d:n%d," % (len(b"n%d" % i), i) for i in range(50))
    with impls.bound(impl):
        sock = ScriptedSocket([stream])
        chan = impls.get(impl).chat_class(Switching)(sock=None, map={})
        chan.events, chan.collected, chan.closes = [], [], 0
        chan.set_socket(sock)
        chan.connected = True
        chan.set_terminator(Lines(b"\n"))
        chan.handle_read()
    assert chan.events == ([("msg", line) for line in lines]
                           + [("msg", b"n%d" % i) for i in range(50)])


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_resp_max_items_beyond_a_c_size(impl):
    # the compiled kernel keeps max_items as a C size: RespRequests clamps it
    chan = run(impl, "message", RespRequests(max_items=2 ** 80), [b"*1\r\n$1\r\na\r\n"])
    assert chan.events == [("msg", [b"a"])]


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_classic_hook_set_to_a_framer_mid_buffer(impl):
    # found_terminator of a classic terminator switches to a framer: the
    # rest of the same read is cut by the framer
    class Upgrade(_Log):
        def collect_incoming_data(self, data):
            self.collected.append(data)

        def found_terminator(self):
            self.events.append(("line", b"".join(self.collected)))
            self.collected = []
            self.set_terminator(LengthPrefix(1))

        def found_message(self, payload):
            self.events.append(("msg", payload))

    with impls.bound(impl):
        sock = ScriptedSocket([b"HELLO\r\n\x02hi\x01!"])
        chan = impls.get(impl).chat_class(Upgrade)(sock=None, map={})
        chan.events, chan.collected, chan.closes = [], [], 0
        chan.set_socket(sock)
        chan.connected = True
        chan.set_terminator(b"\r\n")
        chan.handle_read()
    assert chan.events == [("line", b"HELLO"), ("msg", b"hi"), ("msg", b"!")]


# --- writers -------------------------------------------------------------------


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("framer", [LengthPrefix(2), LengthPrefix(4, "little", True, 1),
                                    LengthPrefix(8), Netstring(), Lines(b"\r\n")],
                         ids=repr)
@pytest.mark.parametrize("size", [0, 1, 100, 70000])
def test_push_frame_round_trips(impl, framer, size):
    if isinstance(framer, Lines):
        payload = b"x" * size
    else:
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    if isinstance(framer, LengthPrefix) and framer._offset > size:
        pytest.skip("payload shorter than the offset")
    if isinstance(framer, LengthPrefix) and framer._size == 2 and size > 65000:
        with pytest.raises(struct.error):
            framer.encode(payload)
        return
    with impls.bound(impl):
        sock = ScriptedSocket([])
        chan, sock = make(impl, "message", framer, [])
        chan.push_frame(payload)
        chan.push_frame(b"\x00" * framer._offset + b"end")
        while chan.producer_fifo:
            chan.handle_write()
        wire = bytes(sock.wire)
    back = run(impl, "message", framer, [wire])
    assert back.events == [("msg", payload), ("msg", b"\x00" * framer._offset + b"end")]


def test_push_frame_needs_a_framer():
    chan, _ = make(OURS[0], "message", Lines(), [])
    chan.set_terminator(b"\n")
    with pytest.raises(TypeError):
        chan.push_frame(b"x")
    chan.push_frame(b"x", Netstring())


def test_encode_resp():
    assert encode_resp([b"a", 12, None, RespSimple("OK"), RespError("ERR no"), "é", []]) == (
        b"*7\r\n$1\r\na\r\n:12\r\n$-1\r\n+OK\r\n-ERR no\r\n$2\r\n\xc3\xa9\r\n*0\r\n")
    with pytest.raises(ValueError):
        encode_resp(RespSimple("a\r\nb"))
    with pytest.raises(TypeError):
        encode_resp(1.5)
    with pytest.raises(TypeError):
        encode_resp(True)


def test_frame_error_is_documented_and_frame_too_large_is_one():
    assert issubclass(FrameTooLarge, FrameError) and issubclass(FrameError, ValueError)
    assert framing.FrameError is FrameError
    from asynchat_core import asynchat
    assert asynchat.FrameTooLarge is FrameTooLarge


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_push_frames_joins_the_small_ones(impl):
    framer = LengthPrefix(4)
    payloads = [b"a", b"b" * 20000, b"", b"c", b"d"]
    with impls.bound(impl):
        chan, sock = make(impl, "message", framer, [])
        chan.push_frames(payloads)
        # three pushes: [a], the large one (header, body), [empty, c, d]
        assert len(chan.producer_fifo) <= 4
        while chan.producer_fifo:
            chan.handle_write()
        wire = bytes(sock.wire)
    assert run(impl, "message", framer, [wire]).events == [("msg", p) for p in payloads]


def _join_kernels():
    """The frame-joining kernel of each build: (name, function)."""
    from asynchat_core import _frame_py
    found = [("python", _frame_py.join_length_frames)]
    if "cython" in OURS:
        from asynchat_core import _frame_c
        found.append(("cython", _frame_c.join_length_frames))
    return found


def _encoded_one_by_one(payloads, size, big, limit):
    # what push_frames pushes without the kernel, or None where it would
    # not take the one-call path
    framer = LengthPrefix(size, "big" if big else "little")
    if type(payloads) not in (list, tuple) or not payloads:
        return None
    if any(type(p) is not bytes or len(p) > limit for p in payloads):
        return None
    try:
        return framer.encode_many(payloads)
    except struct.error:  # a length past the header's range
        return None


@pytest.mark.parametrize("name,join", _join_kernels(), ids=lambda v: v if isinstance(v, str) else "")
@given(payloads=st.lists(st.binary(max_size=300), max_size=8),
       size=st.sampled_from([1, 2, 4, 8]), big=st.booleans(),
       limit=st.sampled_from([-1, 0, 1, 255, 256, 299, 10 ** 6]),
       as_tuple=st.booleans())
@settings(max_examples=300, deadline=None)
def test_joined_frames_are_the_frames_encoded_one_by_one(name, join, payloads, size, big, limit,
                                                        as_tuple):
    seq = tuple(payloads) if as_tuple else payloads
    assert join(seq, size, big, limit) == _encoded_one_by_one(seq, size, big, limit)


class _BytesChild(bytes):
    pass


class _ListChild(list):
    pass


@pytest.mark.parametrize("name,join", _join_kernels(), ids=lambda v: v if isinstance(v, str) else "")
def test_join_kernel_declines_what_it_does_not_know(name, join):
    # None: push_frames then encodes each payload through the framer
    for payloads in ([], (), [bytearray(b"x")], [memoryview(b"x")], [_BytesChild(b"x")],
                     _ListChild([b"x"]), iter([b"x"]), [b"x", "y"], b"xy"):
        assert join(payloads, 4, True, 100) is None, payloads
    assert join([b"x"], 0, True, 100) is None and join([b"x"], 9, True, 100) is None
    # a length the header cannot hold: struct.error on the general path
    assert join([b"x" * 255], 1, True, 1000) == b"\xff" + b"x" * 255
    assert join([b"x", b"x" * 256], 1, True, 1000) is None
    assert join([b"x" * 65536], 2, False, 10 ** 6) is None
    assert join([b"ab", b"c"], 2, True, 10) == b"\x00\x02ab\x00\x01c"
    assert join((b"ab",), 2, False, 10) == b"\x02\x00ab"


class _OwnEncoding(LengthPrefix):
    __slots__ = ()

    def encode(self, payload):
        return LengthPrefix.encode(self, payload.upper())


class _OwnMany(LengthPrefix):
    __slots__ = ()

    def encode_many(self, payloads):
        return LengthPrefix.encode_many(self, payloads[::-1])


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("framer,payloads,limit,wire", [
    # the one-call path, and the general path where it would differ
    (LengthPrefix(2), [b"ab", b"c"], 65000, b"\x00\x02ab\x00\x01c"),
    (LengthPrefix(2, "little"), (b"ab",), 65000, b"\x02\x00ab"),
    (_OwnEncoding(1), [b"ab", b"c"], 65000, b"\x02AB\x01C"),
    (_OwnMany(1), [b"ab", b"c"], 65000, b"\x01c\x02ab"),
    (LengthPrefix(1, offset=1), [b"tab"], 65000, b"t\x02ab"),
    (LengthPrefix(1, includes_header=True), [b"ab"], 65000, b"\x03ab"),
    (LengthPrefix(1), [bytearray(b"ab"), memoryview(b"c")], 65000, b"\x02ab\x01c"),
    (LengthPrefix(1), "a generator", 65000, b"\x02ab\x01c"),
    (LengthPrefix(1), [b"ab", b"c"], 1, b"\x02ab\x01c"),
    (LengthPrefix(1), [b"ab", b"c"], 2.5, b"\x02ab\x01c"),
    (LengthPrefix(1), [b"ab", b"c"], True, b"\x02ab\x01c"),
    (LengthPrefix(1), [b"ab", b"c"], 1 << 70, b"\x02ab\x01c"),
    (LengthPrefix(1), [], 65000, b""),
])
def test_push_frames_wire(impl, framer, payloads, limit, wire):
    if payloads == "a generator":
        payloads = (p for p in [b"ab", b"c"])
    with impls.bound(impl):
        chan, sock = make(impl, "message", framer, [])
        chan.ac_frame_join_limit = limit
        chan.push_frames(payloads)
        while chan.producer_fifo:
            chan.handle_write()
        assert bytes(sock.wire) == wire


class _Recorded(PerMessage):
    # what push_frames asks of the channel, recorded instead of sent
    def push(self, data):
        self.calls.append(("push", bytes(data)))

    def push_frame(self, payload, framer=None):
        self.calls.append(("push_frame", bytes(payload), framer))

    def get_terminator(self):
        self.calls.append(("get_terminator",))
        return self.own_framer


def _push_frames_by_hand(chan, payloads, framer=None):
    # the rule push_frames keeps, one payload at a time (docs/framing.md)
    if framer is None:
        framer = chan.get_terminator()
    limit = chan.ac_frame_join_limit
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


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("payloads,limit", [
    ([b"a", b"bb"], 65000), ([b"a", b"b" * 30, b"c", b"d" * 40], 20), ([b"x" * 30], 20),
    ([], 65000), ([b"a"], -5),
])
@pytest.mark.parametrize("framer", [LengthPrefix(1), LengthPrefix(2, "little"),
                                    LengthPrefix(1, offset=1), Netstring(), _OwnEncoding(1)],
                         ids=repr)
def test_push_frames_asks_the_channel_what_the_rule_asks(impl, payloads, limit, framer):
    # overridden push, push_frame and get_terminator are called as the
    # one-by-one rule calls them, with the limit read from the instance
    if isinstance(framer, LengthPrefix) and framer._offset:
        payloads = [b"o" + p for p in payloads]
    runs = []
    for by_hand in (False, True):
        with impls.bound(impl):
            chan = impls.get(impl).chat_class(_Recorded)(sock=None, map={})
            chan.calls, chan.own_framer = [], framer
            chan.ac_frame_join_limit = limit
            if by_hand:
                _push_frames_by_hand(chan, payloads)
            else:
                chan.push_frames(payloads)
            runs.append(chan.calls)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_push_frames_length_past_the_header_raises_before_pushing(impl):
    with impls.bound(impl):
        chan, sock = make(impl, "message", LengthPrefix(1), [])
        with pytest.raises(struct.error):
            chan.push_frames([b"a", b"b" * 256])
        assert not chan.producer_fifo and bytes(sock.wire) == b""


class OwnGetTerminator(PerMessage):
    def get_terminator(self):  # overridden: the kernels call it (no slot mode)
        return self.terminator


class PlainTerminatorAttribute(PerMessage):
    terminator = None  # a plain attribute instead of async_chat's slot


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("mixin", [OwnGetTerminator, PlainTerminatorAttribute])
def test_framers_without_the_terminator_slot(impl, mixin):
    with impls.bound(impl):
        sock = ScriptedSocket([b"a\nb", b"\nc\n"])
        chan = impls.get(impl).chat_class(mixin)(sock=None, map={})
        chan.events, chan.closes = [], 0
        chan.set_socket(sock)
        chan.connected = True
        chan.set_terminator(Lines())
        while sock.chunks:
            chan.handle_read()
    assert chan.events == [("msg", b"a"), ("msg", b"b"), ("msg", b"c")]


# --- long frames over many reads (resume and parking, _frame_py.py) ----------


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("read_size", [1, 7, 100, 65536])
def test_long_resp_arrays_over_many_reads(impl, read_size):
    # arrays of more than _RESUME_ITEMS items resume where the last read
    # stopped; the result is the reference parser's
    stream = b""
    for n in (30, 8, 9, 200):
        stream += b"*%d\r\n" % n + b"".join(b"$%d\r\n%s\r\n" % (len(w), w)
                                             for w in (b"w%d" % i for i in range(n)))
    stream += b"*20\r\n" + b"$1\r\nx\r\n" * 12 + b"$-2\r\n"  # bad 13th item
    expected = ref_resp(stream, framing.DEFAULT_MAX_SIZE, False)
    assert expected[-1] == ("error", "FrameError") and len(expected) == 5
    chan = run(impl, "message", RespRequests(), [stream], read_size)
    assert chan.events == expected


@pytest.mark.parametrize("impl", impls.params(OURS))
@pytest.mark.parametrize("hooks", sorted(HOOKS))
def test_large_frames_are_parked_not_copied_per_read(impl, hooks):
    big = b"".join(bytes([i % 251]) for i in range(256)) * 4096  # 1 MiB
    stream = (LengthPrefix(4).encode(big) + LengthPrefix(4).encode(b"after")
              + LengthPrefix(4).encode(b"tail-data")[:8])
    chunks = split(stream, range(0, len(stream), 65536))
    chan = run(impl, hooks, LengthPrefix(4), chunks, read_size=65536)
    assert chan.events == [("msg", big), ("msg", b"after")]
    assert chan.connected and chan.ac_in_buffer == LengthPrefix(4).encode(b"tail-data")[:8]


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_parked_frame_cut_by_close(impl):
    stream = LengthPrefix(4).encode(b"x" * 1000000)[:500000]
    chan = run(impl, "message", LengthPrefix(4), split(stream, range(0, 500000, 65536)) + [EOF])
    assert chan.events == [("error", "FrameError")] and not chan.connected


@pytest.mark.parametrize("impl", impls.params(OURS))
def test_discard_buffers_forgets_a_parked_frame(impl):
    stream = LengthPrefix(4).encode(b"y" * 600000)[:400000]
    with impls.bound(impl):
        chan, sock = make(impl, "message", LengthPrefix(4), split(stream, range(0, 400000, 65536)))
        while sock.chunks:
            chan.handle_read()
        chan.discard_buffers()
        sock.chunks = [LengthPrefix(4).encode(b"fresh")]
        chan.handle_read()
    assert chan.events == [("msg", b"fresh")]
