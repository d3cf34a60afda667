"""What the framer kernel reads of the channel, read again on every read.

The compiled kernel reads the hooks (``found_messages``, ``found_message``),
``connected`` and ``ac_max_frame_size`` through the lookup cache of
``_cbits.pxd`` (issue 19); the Python build reads them plainly.  A handler
may set or delete any of them, on the instance or on the class, between
reads: the next read must see it, as ``getattr(chan, name, None)`` would
(only AttributeError means missing; a class-level None is a value).  Each
test first warms the cache up with a few reads, then changes something.
Classes are made per test, so no test changes a class another one uses.
"""
import pytest

import impls
from asynchat_core.framing import FrameTooLarge, Lines
from chat_harness import ScriptedSocket

OURS = impls.params(impls.available(impls.OURS))


class Log:
    def handle_error(self):
        import sys
        self.events.append(("error", sys.exc_info()[0].__name__))

    def collect_incoming_data(self, data):
        self.collected.append(data)

    def found_terminator(self):
        self.events.append(("classic", b"".join(self.collected)))
        self.collected = []


class One(Log):
    def found_message(self, message):
        self.events.append(("one", message))


class Many(Log):
    def found_messages(self, messages):
        self.events.append(("many", list(messages)))


def open_channel(impl, *bases, **attrs):
    """A channel of a new class over ``bases`` and ``impl``'s async_chat."""
    cls = type("Chan", bases + (impls.get(impl).asynchat.async_chat,), dict(attrs))
    sock = ScriptedSocket([])
    chan = cls(sock=None, map={})
    chan.events, chan.collected = [], []
    chan.set_socket(sock)
    chan.connected = True
    chan.set_terminator(Lines())
    return chan, sock


def read(chan, sock, data):
    """One read of ``data``; the events it gave."""
    sock.chunks.append(data)
    before = len(chan.events)
    chan.handle_read()
    return chan.events[before:]


def warm(chan, sock, expected):
    for _ in range(3):
        assert read(chan, sock, b"w\n") == [expected]


@pytest.mark.parametrize("impl", OURS)
def test_found_messages_added_on_the_instance_then_deleted(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, One)
        warm(chan, sock, ("one", b"w"))
        for _ in range(3):  # (again: the name now has a place in the instance's keys)
            chan.found_messages = lambda messages: chan.events.append(("inst", list(messages)))
            assert read(chan, sock, b"a\nb\n") == [("inst", [b"a", b"b"])]
            del chan.found_messages
            assert read(chan, sock, b"c\n") == [("one", b"c")]
            chan.found_message = lambda message: chan.events.append(("inst-one", message))
            assert read(chan, sock, b"d\n") == [("inst-one", b"d")]
            del chan.found_message
            assert read(chan, sock, b"e\n") == [("one", b"e")]


@pytest.mark.parametrize("impl", OURS)
def test_hooks_set_and_deleted_on_the_class(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, Log)
        cls = type(chan)
        warm(chan, sock, ("classic", b"w"))
        cls.found_message = lambda self, message: self.events.append(("cls-one", message))
        assert read(chan, sock, b"a\n") == [("cls-one", b"a")]
        cls.found_messages = lambda self, messages: self.events.append(("cls-many", messages))
        assert read(chan, sock, b"b\nc\n") == [("cls-many", [b"b", b"c"])]
        del cls.found_messages
        assert read(chan, sock, b"d\n") == [("cls-one", b"d")]
        del cls.found_message
        assert read(chan, sock, b"e\n") == [("classic", b"e")]


@pytest.mark.parametrize("impl", OURS)
def test_a_class_level_none_is_a_value_not_missing(impl):
    # None under the name hides the base class's hook (getattr gives None)
    with impls.bound(impl):
        chan, sock = open_channel(impl, Many, One, found_messages=None)
        warm(chan, sock, ("one", b"w"))
        type(chan).found_message = None
        assert read(chan, sock, b"a\n") == [("classic", b"a")]
        del type(chan).found_messages
        assert read(chan, sock, b"b\n") == [("many", [b"b"])]


@pytest.mark.parametrize("impl", OURS)
def test_an_instance_none_hides_the_class_hook(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, Many)
        warm(chan, sock, ("many", [b"w"]))
        for _ in range(3):
            chan.found_messages = None
            assert read(chan, sock, b"a\n") == [("classic", b"a")]
            del chan.found_messages
            assert read(chan, sock, b"b\n") == [("many", [b"b"])]


@pytest.mark.parametrize("impl", OURS)
def test_a_hook_written_into_the_instance_dict(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, One)
        warm(chan, sock, ("one", b"w"))
        chan.__dict__["found_messages"] = lambda messages: chan.events.append(("dict", messages))
        assert read(chan, sock, b"a\n") == [("dict", [b"a"])]
        del chan.__dict__["found_messages"]
        assert read(chan, sock, b"b\n") == [("one", b"b")]


@pytest.mark.parametrize("impl", OURS)
def test_a_hook_that_deletes_itself_is_kept_for_the_rest_of_the_read(impl):
    # the hooks are read once per read: the rest of this read's messages go
    # to the same hook, the next read finds the class's
    with impls.bound(impl):
        chan, sock = open_channel(impl, One)
        warm(chan, sock, ("one", b"w"))

        def once(message):
            chan.events.append(("once", message))
            chan.__dict__.pop("found_message", None)

        chan.found_message = once
        assert read(chan, sock, b"a\nb\n") == [("once", b"a"), ("once", b"b")]
        assert read(chan, sock, b"c\n") == [("one", b"c")]


class Flaky(One):
    error = None  # what the property raises; None: it gives the hook

    @property
    def found_messages(self):
        if self.error is not None:
            raise self.error
        return lambda messages: self.events.append(("prop", messages))


@pytest.mark.parametrize("impl", OURS)
def test_only_attribute_error_means_missing(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, Flaky)
        chan.error = AttributeError("found_messages")
        warm(chan, sock, ("one", b"w"))  # missing: found_message
        chan.error = None
        assert read(chan, sock, b"a\n") == [("prop", [b"a"])]
        chan.error = LookupError("not missing")
        sock.chunks.append(b"b\n")
        with pytest.raises(LookupError):
            chan.handle_read()
        chan.error = AttributeError("found_messages")
        assert read(chan, sock, b"c\n") == [("one", b"b"), ("one", b"c")]


class Dynamic(Log):
    dynamic = False

    def __getattr__(self, name):
        if name == "found_message" and self.dynamic:
            return lambda message: self.events.append(("dyn", message))
        raise AttributeError(name)


@pytest.mark.parametrize("impl", OURS)
def test_a_hook_from_getattr(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, Dynamic)
        warm(chan, sock, ("classic", b"w"))
        chan.dynamic = True
        assert read(chan, sock, b"a\n") == [("dyn", b"a")]
        chan.dynamic = False
        assert read(chan, sock, b"b\n") == [("classic", b"b")]


@pytest.mark.parametrize("impl", OURS)
@pytest.mark.parametrize("where", ["instance", "class"])
def test_ac_max_frame_size_changed_after_warm_up(impl, where):
    with impls.bound(impl):
        chan, sock = open_channel(impl, One)
        warm(chan, sock, ("one", b"w"))
        target = chan if where == "instance" else type(chan)
        target.ac_max_frame_size = 8
        assert read(chan, sock, b"12345678\n") == [("one", b"12345678")]
        target.ac_max_frame_size = 4
        assert read(chan, sock, b"12345\n") == [("error", FrameTooLarge.__name__)]
        assert not chan.connected


class Size:
    def __init__(self, n):
        self.n = n

    def __index__(self):
        return self.n


@pytest.mark.parametrize("impl", OURS)
def test_ac_max_frame_size_deleted_and_index_values(impl):
    with impls.bound(impl):
        chan, sock = open_channel(impl, One, ac_max_frame_size=2)
        chan.ac_max_frame_size = None  # the instance's None hides the class's 2
        warm(chan, sock, ("one", b"w"))
        chan.ac_max_frame_size = Size(5)
        assert read(chan, sock, b"12345\n") == [("one", b"12345")]
        chan.ac_max_frame_size = True  # (an int subclass: its __index__)
        assert read(chan, sock, b"1\n") == [("one", b"1")]
        del chan.ac_max_frame_size  # the class's 2 again
        assert read(chan, sock, b"12\n") == [("one", b"12")]
        del type(chan).ac_max_frame_size  # async_chat's (None): the framer's max_size
        assert read(chan, sock, b"123456\n") == [("one", b"123456")]
        type(chan).ac_max_frame_size = 2
        assert read(chan, sock, b"123\n") == [("error", FrameTooLarge.__name__)]


@pytest.mark.parametrize("impl", OURS)
def test_connected_cleared_by_the_hook_without_close(impl):
    # connected read per read and after each hook: a hook that clears it
    # stops this read's delivery, and the next read starts from it again
    with impls.bound(impl):
        chan, sock = open_channel(impl, One)
        warm(chan, sock, ("one", b"w"))

        def stop(message):
            chan.events.append(("stop", message))
            chan.connected = False

        chan.found_message = stop
        assert read(chan, sock, b"a\nb\n") == [("stop", b"a")]
        del chan.found_message
        chan.connected = True
        assert read(chan, sock, b"c\n") == [("one", b"b"), ("one", b"c")]
