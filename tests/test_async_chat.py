"""Every public method and attribute of asynchat, written once and bound to
each implementation: the compiled and the Python build of asynchat_core and,
where the interpreter still has it, CPython's own module.  Real socketpairs."""
import socket

import pytest

from asynchat_core import asynchat as ac_asynchat
from asynchat_core import asyncore as ac_asyncore
from impls import HAVE_REFERENCE as HAVE_STDLIB
from impls import REF_ASYNCHAT as std_asynchat

ASYNCHAT_311_PUBLIC = ["async_chat", "asyncore", "deque", "find_prefix_at_end",
                       "simple_producer"]
ASYNC_CHAT_311_OWN = [
    "_collect_incoming_data", "_get_data", "ac_in_buffer_size", "ac_out_buffer_size",
    "close_when_done", "collect_incoming_data", "discard_buffers", "encoding",
    "found_terminator", "get_terminator", "handle_close", "handle_read",
    "handle_write", "initiate_send", "push", "push_with_producer", "readable",
    "set_terminator", "use_encoding", "writable",
]


@pytest.fixture
def chat(impl):
    """The asynchat module of each implementation, bound for the test."""
    return impl.asynchat


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def make(chat, sock, terminator=b"\r\n", **attrs):
    class Chan(chat.async_chat):
        def __init__(self, sock, map):
            chat.async_chat.__init__(self, sock, map)
            self.frames = []
            self.parts = []
            self.closed = 0

        def collect_incoming_data(self, data):
            self.parts.append(data)

        def found_terminator(self):
            self.frames.append(b"".join(self.parts))
            self.parts = []

        def handle_close(self):
            self.closed += 1
            self.close()

    for name, value in attrs.items():
        setattr(Chan, name, value)
    chan = Chan(sock, {})
    chan.set_terminator(terminator)
    return chan


def feed(chan, peer, data):
    peer.sendall(data)
    chan.handle_read()


# --- surface --------------------------------------------------------------

def test_module_surface_matches_311():
    # 3.10's asynchat also exposes `warn` (its `from warnings import warn`),
    # an import, not API
    public = lambda m: sorted(  # noqa: E731
        n for n in dir(m) if not n.startswith("_") and n != "warn")
    expected = public(std_asynchat) if HAVE_STDLIB else ASYNCHAT_311_PUBLIC
    assert expected == ASYNCHAT_311_PUBLIC
    assert set(expected) <= set(public(ac_asynchat))
    assert ac_asynchat.asyncore is ac_asyncore
    own = sorted(ASYNC_CHAT_311_OWN)
    if HAVE_STDLIB:
        assert sorted(vars(std_asynchat.async_chat).keys() & set(own)) == own
    for name in own:
        assert hasattr(ac_asynchat.async_chat, name), name
    assert issubclass(ac_asynchat.async_chat, ac_asyncore.dispatcher)


def test_class_defaults(chat):
    c = chat.async_chat
    assert (c.ac_in_buffer_size, c.ac_out_buffer_size) == (65536, 65536)
    assert (c.use_encoding, c.encoding) == (0, "latin-1")


# --- construction and state -----------------------------------------------

def test_init_state(chat, pair):
    chan = make(chat, pair[0])
    assert chan.connected and chan.ac_in_buffer == b""
    assert list(chan.producer_fifo) == [] and chan.incoming == []
    assert chan.readable() and not chan.writable()
    assert chan.get_terminator() == b"\r\n"
    chan.close()


def test_abstract_callbacks_raise(chat, pair):
    chan = chat.async_chat(pair[0], {})
    with pytest.raises(NotImplementedError):
        chan.collect_incoming_data(b"x")
    with pytest.raises(NotImplementedError):
        chan.found_terminator()
    chan.close()


def test_private_collect_and_get_data(chat, pair):
    chan = chat.async_chat(pair[0], {})
    chan._collect_incoming_data(b"ab")
    chan._collect_incoming_data(b"cd")
    assert chan._get_data() == b"abcd" and chan.incoming == []
    chan.close()


def test_set_terminator_kinds(chat, pair):
    chan = make(chat, pair[0])
    for term in (b"\n", 5, 0, None, b""):
        chan.set_terminator(term)
        assert chan.get_terminator() == term
    with pytest.raises(ValueError):
        chan.set_terminator(-1)
    chan.use_encoding = True
    chan.set_terminator("\r\n")
    assert chan.terminator == b"\r\n"
    chan.close()


# --- input ----------------------------------------------------------------

def test_handle_read_frames(chat, pair):
    chan = make(chat, pair[0])
    feed(chan, pair[1], b"one\r\ntwo\r\nthr")
    assert chan.frames == [b"one", b"two"] and chan.ac_in_buffer == b""
    feed(chan, pair[1], b"ee\r")
    assert chan.frames == [b"one", b"two"] and chan.ac_in_buffer == b"\r"
    feed(chan, pair[1], b"\n")
    assert chan.frames[-1] == b"three"
    chan.close()


def test_counted_and_unterminated_reads(chat, pair):
    chan = make(chat, pair[0], terminator=4)
    feed(chan, pair[1], b"ab")
    assert chan.terminator == 2 and chan.frames == []
    feed(chan, pair[1], b"cdef")
    assert chan.frames == [b"abcd"] and chan.terminator == 0
    chan.set_terminator(None)
    feed(chan, pair[1], b"rest")
    assert b"".join(chan.parts) == b"efrest"
    chan.close()


def test_ac_in_buffer_size_limits_recv(chat, pair):
    chan = make(chat, pair[0], ac_in_buffer_size=3)
    pair[1].sendall(b"abcdefg\r\n")
    for _ in range(3):
        chan.handle_read()
    assert chan.frames == [b"abcdefg"]
    chan.close()


def test_ac_in_buffer_assignment(chat, pair):
    chan = make(chat, pair[0])
    chan.ac_in_buffer = b"pre\r"
    feed(chan, pair[1], b"\nx")
    assert chan.frames == [b"pre"] and chan.parts == [b"x"]
    chan.close()


def test_peer_close_calls_handle_close(chat, pair):
    chan = make(chat, pair[0])
    pair[1].close()
    chan.handle_read()
    assert chan.closed == 1 and not chan.connected


def test_discard_buffers(chat, pair):
    chan = make(chat, pair[0])
    feed(chan, pair[1], b"partial\r")
    chan.incoming.append(b"x")
    chan.producer_fifo.append(b"queued")
    chan.discard_buffers()
    assert chan.ac_in_buffer == b"" and chan.incoming == [] and not chan.producer_fifo
    chan.close()


# --- output ---------------------------------------------------------------

def test_push_sends(chat, pair):
    chan = make(chat, pair[0])
    chan.push(b"hello ")
    chan.push(bytearray(b"big "))
    chan.push(memoryview(b"world"))
    assert pair[1].recv(100) == b"hello big world"
    with pytest.raises(TypeError):
        chan.push("text")
    chan.close()


def test_push_splits_by_out_buffer_size(chat, pair):
    chan = make(chat, pair[0], ac_out_buffer_size=4)
    chan.connected = False  # queue only
    chan.push(b"abcdefghij")
    assert list(chan.producer_fifo) == [b"abcd", b"efgh", b"ij"]
    assert chan.writable()
    chan.connected = True
    received = b""
    while chan.producer_fifo:
        chan.handle_write()
    while len(received) < 10:
        received += pair[1].recv(100)
    assert received == b"abcdefghij"
    chan.close()


def test_push_with_producer_and_simple_producer(chat, pair):
    chan = make(chat, pair[0])
    producer = chat.simple_producer(b"x" * 1000, buffer_size=300)
    chan.push_with_producer(producer)
    while chan.producer_fifo:
        chan.initiate_send()
    data = b""
    while len(data) < 1000:
        data += pair[1].recv(2000)
    assert data == b"x" * 1000
    chan.close()


def test_simple_producer_pieces(chat):
    p = chat.simple_producer(b"abcdefg", buffer_size=3)
    assert [p.more() for _ in range(4)] == [b"abc", b"def", b"g", b""]
    assert chat.simple_producer(b"q").buffer_size == 512


def test_close_when_done(chat, pair):
    chan = make(chat, pair[0])
    chan.connected = False
    chan.push(b"last words")
    chan.close_when_done()
    assert list(chan.producer_fifo)[-1] is None
    chan.connected = True
    for _ in range(5):
        if not chan.connected:
            break
        chan.handle_write()
    assert chan.closed == 1 and not chan.connected
    assert pair[1].recv(100) == b"last words"
    assert pair[1].recv(100) == b""


def test_writable_when_not_connected(chat, pair):
    chan = make(chat, pair[0])
    chan.connected = False
    assert chan.writable()
    chan.close()


def test_reply_from_found_terminator_over_loop(chat, pair):
    class Echo:
        def found_terminator(self):
            self.push(b"<" + b"".join(self.parts) + b">")
            self.parts = []

    chan = make(chat, pair[0], found_terminator=Echo.found_terminator)
    m = chan._map
    pair[1].sendall(b"a\r\nb\r\nc\r\n")
    chat.asyncore.loop(timeout=1, map=m, count=1)
    got = b""
    while len(got) < 9:
        got += pair[1].recv(100)
    assert got == b"<a><b><c>"
    chat.asyncore.close_all(m)


def test_use_encoding_push_of_str(chat, pair):
    chan = make(chat, pair[0])
    chan.use_encoding = True
    chan.producer_fifo.append("caf\xe9")  # str items are encoded when sent
    chan.initiate_send()
    assert pair[1].recv(100) == "caf\xe9".encode("latin-1")
    chan.close()


def test_find_prefix_at_end(chat):
    f = chat.find_prefix_at_end
    assert f(b"qwerty\r", b"\r\n") == 1
    assert f(b"qwertydkjf", b"\r\n") == 0
    assert f(b"abc\r\n.", b"\r\n.\r\n") == 3
    assert f(b"", b"ab") == 0
    assert f("text\r", "\r\n") == 1
    assert f(b"abc", b"") == -1
