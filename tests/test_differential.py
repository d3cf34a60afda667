"""Differential tests: the same scripted peer against every implementation.

Implementations: the reference (CPython's own ``asynchat`` up to 3.11, the
pyasynchat backport of 3.11's module on 3.12+; impls.py), and asynchat_core's
Python build and its compiled build.
Input-side logs (every callback, the exact bytes, buffer and terminator
state) must be identical.  On the output side asynchat_core joins queued
items into fewer ``send()`` calls on purpose, so only the bytes on the wire
and the order of close/error callbacks are compared there.
"""
import errno

import pytest
from hypothesis import assume, example, given, note
from hypothesis import strategies as st

import impls
from chat_harness import (
    HAVE_STDLIB,
    IMPLS,
    Producer,
    ScriptedSocket,
    drain,
    make_channel,
    step,
)

KiB = 1024
ALPHABET = list(b"\r\n.abxyz\x00")
BYTE_TERMS = [
    b"\r\n", b"\n", b"\r\n.\r\n", b"\r\n\r\n", b".", b"ab", b"aab", b"abab",
    b"\x00", b"xyzxy", b"aaaaaa", b"a\r\n.\r",
]
INT_TERMS = [0, 1, 2, 3, 5, 17, 100, 4096, 70 * KiB, 10 ** 6]

small_bytes = st.lists(st.sampled_from(ALPHABET), max_size=40).map(bytes)
big_bytes = st.tuples(
    st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=12).map(bytes),
    st.integers(1, 70 * KiB),
).map(lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]])
terminators = st.one_of(
    st.sampled_from(BYTE_TERMS),
    st.sampled_from(INT_TERMS),
    st.just(None),
    st.just(b""),
)
frames = st.one_of(
    st.tuples(small_bytes, st.sampled_from(BYTE_TERMS)).map(lambda t: t[0] + t[1]),
    st.tuples(small_bytes, st.sampled_from(BYTE_TERMS)).map(lambda t: t[0] + t[1]),
    small_bytes,
    big_bytes,
)
streams = st.lists(frames, max_size=25).map(b"".join)
cut_sizes = st.lists(
    st.one_of(st.integers(1, 8), st.integers(1, 70 * KiB)), min_size=1, max_size=20
)
in_sizes = st.sampled_from([1, 2, 3, 7, 64, 4096, 65536])

_discard = st.just(("discard",))
_action_list = [
    st.tuples(st.just("term"), terminators),
    _discard,
    st.just(("peek",)),
    st.tuples(st.just("assign"), st.one_of(small_bytes, small_bytes.map(bytearray))),
    st.just(("close",)),
    st.tuples(st.just("push"), small_bytes),
    st.just(("cwd",)),
    st.tuples(
        st.just("producer"),
        st.sampled_from(["empty", "raise", "pushing", "chunks"]),
        small_bytes,
    ),
    st.tuples(st.just("simple"), small_bytes, st.integers(1, 8)),
    st.tuples(st.just("raise"), st.sampled_from(["cb"])),
]
actions = st.one_of(*_action_list)
# discard_buffers() drops whatever is still queued, and how much is still
# queued depends on send() boundaries, which differ on purpose; the output
# properties leave it out (the input-side ones keep it)
output_actions = st.one_of(*[a for a in _action_list if a is not _discard])
# quiet callbacks only change the terminator or look at the buffer
quiet_actions = st.one_of(
    st.tuples(st.just("term"), terminators), st.just(("peek",)), st.just(("discard",))
)


def plans(action_strategy, max_keys=8):
    return st.dictionaries(
        st.integers(1, 40), st.lists(action_strategy, min_size=1, max_size=3), max_size=max_keys
    )


def chunk(stream, sizes, max_chunks=150):
    # beyond max_chunks the rest arrives at once (recv still splits it by
    # ac_in_buffer_size): keeps an example's cost bounded
    out, pos, i = [], 0, 0
    while pos < len(stream):
        if i == max_chunks:
            out.append(stream[pos:])
            break
        size = sizes[i % len(sizes)]
        out.append(stream[pos:pos + size])
        pos += size
        i += 1
    return out


ENDINGS = {
    "none": None,
    "eof": b"",
    "reset": OSError(errno.ECONNRESET, "reset"),
    "eio": OSError(errno.EIO, "i/o"),
}


def run_input_script(impl, chunks, terminator, in_size, found_plan, collect_plan,
                     observe, override_get_terminator, ending, capacity=None,
                     fail_at=None, fail_errno=errno.ECONNRESET, out_size=65536):
    script = list(chunks)
    if ENDINGS[ending] is not None:
        script.append(ENDINGS[ending])
    sock = ScriptedSocket(script, capacity=capacity, fail_at=fail_at, fail_errno=fail_errno)
    with impls.bound(impl):
        chan = make_channel(
            impl, sock, terminator, in_size=in_size, out_size=out_size,
            found_plan=found_plan, collect_plan=collect_plan, observe=observe,
            override_get_terminator=override_get_terminator,
        )
        limit = len(script) + sum(len(c) for c in chunks) // in_size + 10
        for _ in range(limit):
            if not sock.chunks or sock.closed:
                break
            step(chan, "read")
        # the stdlib keeps delivering buffered input even after a close
        step(chan, "read")
        drain(chan, sock)
    return chan.log, bytes(sock.wire), sock.send_calls


def compare(results):
    names = list(results)
    ref = results[names[0]]
    for name in names[1:]:
        assert results[name] == ref, "%s differs from %s" % (name, names[0])


@given(
    stream=streams,
    sizes=cut_sizes,
    terminator=terminators,
    in_size=in_sizes,
    found_plan=plans(quiet_actions),
    observe=st.booleans(),
    override=st.booleans(),
    ending=st.sampled_from(sorted(ENDINGS)),
)
def test_framing_matches(stream, sizes, terminator, in_size, found_plan, observe,
                         override, ending):
    """Frames, chunkings and terminator switches: identical callback logs."""
    in_size = max(in_size, len(stream) // 150)
    chunks = chunk(stream, sizes)
    results = {}
    for impl in IMPLS:
        log, wire, _ = run_input_script(
            impl, chunks, terminator, in_size, found_plan, {}, observe, override, ending
        )
        results[impl] = (log, wire)
    compare(results)


@given(
    stream=st.lists(frames, max_size=12).map(b"".join),
    sizes=cut_sizes,
    terminator=terminators,
    in_size=in_sizes,
    found_plan=plans(actions),
    collect_plan=plans(actions, max_keys=4),
    observe=st.booleans(),
    override=st.booleans(),
    ending=st.sampled_from(sorted(ENDINGS)),
)
def test_callbacks_that_change_state_match(stream, sizes, terminator, in_size, found_plan,
                                           collect_plan, observe, override, ending):
    """Callbacks that push, close, discard, assign the buffer or raise."""
    in_size = max(in_size, len(stream) // 150)
    chunks = chunk(stream, sizes)
    results = {}
    for impl in IMPLS:
        log, wire, _ = run_input_script(
            impl, chunks, terminator, in_size, found_plan, collect_plan, observe,
            override, ending,
        )
        results[impl] = (log, wire)
    compare(results)


OUT_EVENTS = ("handle_close", "handle_error")


def split_log(log):
    # send timing inside handle_read differs on purpose; keep the order of
    # input events and the order of close/error events, separately
    ins = [e for e in log if e[0] not in OUT_EVENTS]
    outs = [e for e in log if e[0] in OUT_EVENTS]
    return ins, outs


@given(
    stream=st.lists(frames, max_size=12).map(b"".join),
    sizes=cut_sizes,
    terminator=st.sampled_from(BYTE_TERMS),
    found_plan=plans(output_actions),
    capacity=st.one_of(st.integers(0, 64), st.integers(0, 70 * KiB)),
    fail_at=st.one_of(st.none(), st.integers(0, 200)),
    fail_errno=st.sampled_from([errno.ECONNRESET, errno.EPIPE, errno.EIO]),
    out_size=st.sampled_from([1, 3, 16, 512, 65536]),
)
# found on 3.9: a producer's more() that pushes while replies are batched,
# with a full socket (the push must not be taken as sent ahead of what
# more() returns)
@example(stream=b"\r\n\r\n", sizes=[1, 2], terminator=b"\r\n",
         found_plan={1: [("producer", "pushing", b"")]}, capacity=0, fail_at=None,
         fail_errno=errno.ECONNRESET, out_size=1)
def test_output_with_partial_sends_matches(stream, sizes, terminator, found_plan, capacity,
                                           fail_at, fail_errno, out_size):
    """Partial sends and send errors: same wire bytes, same close/error order."""
    chunks = chunk(stream, sizes)
    results = {}
    for impl in IMPLS:
        log, wire, _ = run_input_script(
            impl, chunks, terminator, 4096, found_plan, {}, False, False, "none",
            capacity=capacity, fail_at=fail_at, fail_errno=fail_errno, out_size=out_size,
        )
        ins, outs = split_log(log)
        note("%s: %r %r" % (impl, outs, wire[-40:]))
        results[impl] = (ins, outs, wire)
    compare(results)


out_ops = st.one_of(
    st.tuples(st.just("push"), st.one_of(small_bytes, big_bytes)),
    st.tuples(st.just("pushba"), small_bytes),
    st.tuples(st.just("pushmv"), small_bytes),
    st.tuples(st.just("simple"), st.one_of(small_bytes, big_bytes), st.integers(1, 9000)),
    st.tuples(
        st.just("producer"),
        st.sampled_from(["empty", "raise", "pushing", "chunks"]),
        small_bytes,
    ),
    st.just(("cwd",)),
    st.tuples(st.just("write"), st.integers(0, 100 * KiB)),
)


def apply_out_op(chan, sock, op):
    kind = op[0]
    if kind == "write":
        sock.capacity = (sock.capacity or 0) + op[1]
        step(chan, "write")
        return
    if kind == "push":
        action = lambda c: c.push(op[1])  # noqa: E731
    elif kind == "pushba":
        action = lambda c: c.push(bytearray(op[1]))  # noqa: E731
    elif kind == "pushmv":
        action = lambda c: c.push(memoryview(op[1]))  # noqa: E731
    elif kind == "simple":
        action = lambda c: c.push_with_producer(  # noqa: E731
            c.simple_producer_class(op[1], op[2]))
    elif kind == "producer":
        action = lambda c: c.push_with_producer(Producer(c, op[1], op[2]))  # noqa: E731
    else:
        assert kind == "cwd", op
        action = lambda c: c.close_when_done()  # noqa: E731
    step(chan, action)


@given(
    ops=st.lists(out_ops, max_size=20),
    capacity=st.integers(0, 1000),
    fail_at=st.one_of(st.none(), st.integers(0, 100 * KiB)),
    fail_errno=st.sampled_from([errno.ECONNRESET, errno.EPIPE, errno.EIO]),
    out_size=st.sampled_from([1, 7, 512, 4096, 65536]),
)
def test_push_and_write_events_match(ops, capacity, fail_at, fail_errno, out_size):
    """push()/producers/close_when_done outside handle_read, then write events."""
    # the stdlib needs one write event per item: keep that count bounded
    payload = sum(len(op[1]) for op in ops if op[0] in ("push", "pushba", "pushmv", "simple"))
    assume(payload // out_size <= 5000)
    results = {}
    for impl in IMPLS:
        sock = ScriptedSocket((), capacity=capacity, fail_at=fail_at, fail_errno=fail_errno)
        with impls.bound(impl):
            chan = make_channel(impl, sock, b"\n", out_size=out_size)
            for op in ops:
                apply_out_op(chan, sock, op)
            drain(chan, sock)
            # (read while bound: producer_fifo is the bound build's descriptor)
            queued = len(chan.producer_fifo)
        ins, outs = split_log(chan.log)
        # "state" lines snapshot connected at send-boundary-dependent times
        ins = [e for e in ins if e[0] != "state"]
        results[impl] = (ins, outs, bytes(sock.wire), chan.connected, queued)
    compare(results)


def _pipelined(impl, n, size=16):
    requests = b"".join(b"GET %d\r\n" % i for i in range(n))
    sock = ScriptedSocket([requests])
    with impls.bound(impl):
        chan = make_channel(impl, sock, b"\r\n", found_plan={
            i: [("push", b"reply %d\r\n" % i)] for i in range(1, n + 1)
        })
        step(chan, "read")
    expected = b"".join(b"reply %d\r\n" % i for i in range(1, n + 1))
    return chan, sock, expected


@pytest.mark.parametrize("impl", impls.params([i for i in IMPLS if i != "stdlib"]))
def test_pipelined_replies_coalesce_into_one_send(impl):
    chan, sock, expected = _pipelined(impl, 16)
    assert bytes(sock.wire) == expected
    assert sock.send_calls == 1
    with impls.bound(impl):  # (producer_fifo is the bound build's descriptor)
        assert not chan.producer_fifo


@pytest.mark.skipif(not HAVE_STDLIB, reason="no reference: %s" % impls.REFERENCE)
def test_stdlib_sends_once_per_push():
    # the baseline the coalescing test improves on
    chan, sock, expected = _pipelined("stdlib", 16)
    assert bytes(sock.wire) == expected
    assert sock.send_calls == 16


@pytest.mark.parametrize("impl", impls.params([i for i in IMPLS if i != "stdlib"]))
def test_coalescing_respects_out_buffer_size(impl):
    sock = ScriptedSocket([b"x\n" * 10])
    with impls.bound(impl):
        chan = make_channel(impl, sock, b"\n", out_size=8,
                            found_plan={i: [("push", b"abc")] for i in range(1, 11)})
        step(chan, "read")
    assert bytes(sock.wire) == b"abc" * 10
    # 8-byte sends never split an item when joining: abcabc | abcabc | ...
    assert sock.send_calls == 5


@pytest.mark.parametrize(
    "stream,terminator,expected",
    [
        (b"ab\r\ncd\r\n", b"\r\n", [("collect", "bytes", b"ab"), ("found", b"\r\n"),
                                     ("collect", "bytes", b"cd"), ("found", b"\r\n")]),
        (b"\r\n\r\n", b"\r\n", [("found", b"\r\n"), ("found", b"\r\n")]),
        (b"abcdef", 4, [("collect", "bytes", b"abcd"), ("found", 0),
                        ("collect", "bytes", b"ef")]),
        (b"abc", None, [("collect", "bytes", b"abc")]),
        (b"ab\r", b"\r\n", [("collect", "bytes", b"ab")]),
    ],
)
@pytest.mark.parametrize("impl", impls.params(IMPLS))
def test_known_logs(impl, stream, terminator, expected):
    """Hand-checked logs, so a bug shared by every implementation shows too."""
    sock = ScriptedSocket([stream])
    with impls.bound(impl):
        chan = make_channel(impl, sock, terminator)
        step(chan, "read")
    events = [e for e in chan.log if e[0] in ("collect", "found")]
    assert events == expected


@pytest.mark.parametrize("impl", impls.params(IMPLS))
def test_terminator_split_across_reads(impl):
    sock = ScriptedSocket([b"one\r\n.", b"\r", b"\ntwo\r\n.\r\n"])
    with impls.bound(impl):
        chan = make_channel(impl, sock, b"\r\n.\r\n")
        for _ in range(3):
            step(chan, "read")
    events = [e for e in chan.log if e[0] in ("collect", "found")]
    assert b"".join(e[2] for e in events if e[0] == "collect") == b"onetwo"
    assert [e[0] for e in events].count("found") == 2
    assert chan.ac_in_buffer == b""


@pytest.mark.parametrize("impl", impls.params(IMPLS))
def test_int_terminator_larger_than_data(impl):
    sock = ScriptedSocket([b"abc", b"defg", b"hij"])
    with impls.bound(impl):
        chan = make_channel(impl, sock, 8)
        step(chan, "read")
        assert chan.terminator == 5
        step(chan, "read")
        assert chan.terminator == 1
        step(chan, "read")
    assert [e for e in chan.log if e[0] == "found"] == [("found", 0)]
    collected = b"".join(e[2] for e in chan.log if e[0] == "collect")
    assert collected == b"abcdefghij"


def test_compare_detects_a_difference():
    with pytest.raises(AssertionError):
        compare({"a": [1], "b": [2]})


# --- output rules that one test used to pin (issue 23), compared with the
# reference: the wire, and what an overriding channel sees, must be CPython's

def _pipelined_output(impl, kind):
    """Three pipelined frames in one read; each found_terminator pushes a
    reply.  Returns what is compared: the wire, the send() calls an
    overriding channel saw, and the wire at the last frame's push."""
    sock = ScriptedSocket([b"one\ntwo\nthree\n"])
    seen = {"sends": [], "at_last": None}
    base = impls.get(impl).asynchat.async_chat

    class Chan(base):
        def collect_incoming_data(self, data):
            self.word += data

        def found_terminator(self):
            if kind == "reused":
                self.reply[:] = b"reply " + self.word + b"\n"
                self.push(self.reply)
            else:
                self.push(b"reply " + self.word + b"\n")
            if self.word == b"three":
                seen["at_last"] = bytes(sock.wire)
            self.word = b""

        if kind == "send":
            def send(self, data):
                seen["sends"].append(bytes(data))
                return base.send(self, data)

    with impls.bound(impl):
        chan = Chan(sock=None, map={})
        chan.word = b""
        chan.reply = bytearray()
        chan.set_socket(sock)
        chan.connected = True
        chan.set_terminator(b"\n")
        chan.handle_read()
    return bytes(sock.wire), seen["sends"], seen["at_last"]


@pytest.mark.parametrize("kind", ["reused", "send", "plain"])
def test_pipelined_reply_rules_match(kind):
    """A reply bytearray reused for every frame (held replies are copies),
    an overridden send() (one call per push), and the reply to the last
    frame on the wire by the time push() returns: same as the reference."""
    results = {impl: _pipelined_output(impl, kind) for impl in IMPLS}
    compare(results)
    wire, sends, at_last = results[IMPLS[-1]]
    assert wire == at_last == b"reply one\nreply two\nreply three\n"
    if kind == "send":
        assert sends == [b"reply one\n", b"reply two\n", b"reply three\n"]
