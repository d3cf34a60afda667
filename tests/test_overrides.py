"""Issue 18, "Overrides stay exact": every way Python code can change a hot
name is honoured, exactly as CPython 3.11's asyncore/asynchat honour it.

Each test runs a real conversation: a channel on one end of a socketpair,
the implementation's own ``loop()`` (a bounded number of passes, each step
run until the state it waits for), a peer on the other end.  The channel
echoes each line as ``<line>\\n``; the peer sends lines one at a time, three
pipelined in one ``send()`` (so a change made inside ``found_terminator``
must apply to the next frame of the same read), more lines, and closes.
What user code observes (which overrides ran, with which arguments, in
which order, the frames and chunks it got, and the bytes that reached the
peer, also while ``push()`` returns) is the observation; it must be the
reference's, on the compiled build and on the Python build.  Each case also
checks, on the reference, that the override changes the observation (or, for
a removal, that it differs from the override left in place), so no test
passes because an override was ignored.

The tests: ``test_method_override`` (each hot method, each way of
overriding it, as a spy or changing its result), ``test_state_override``
(each piece of state the library reads per event), the state a
``__getattr__`` serves, a metaclass ``__getattribute__``, ``readable()`` /
``writable()`` answers that change between passes, and our own
``ac_out_high_water``.  Two documented deviations are kept out of the
observation: how often ``readable()``/``writable()`` are asked while nothing
happens (README deviation 6), and the one ``send()`` that held replies share
where a socket wrapper or a ``dispatcher.send`` patch would see it (README
deviation 1: those cases set ``ac_coalesce_pushes = False``).

Any difference found between our builds and the reference is a strict
xfail naming it (``KNOWN``): fixing the bug fails the test until the entry
goes.
"""
import collections
import socket
import sys

import pytest

import impls


class Boom(Exception):
    """Raised on purpose by a frame's handler."""


#: the conversation: (what the peer sends in one send(), frames it holds)
SCRIPT = (
    (b"one\n", 1),
    (b"boom\n", 1),
    (b"two\n", 1),
    (b"four\nfive\nsix\n", 3),
    (b"text\n", 1),
    (b"boom\n", 1),
    (b"seven\n", 1),
)
#: the frame at which the "mid" ways act: inside a read that more frames
#: follow, after events that saw the previous state
MID_FRAME = b"four"
#: the frame at which the "between" ways act: the last of its read, so the
#: change must be seen from the next event on
BETWEEN_FRAME = b"two"
#: the reply to "seven" is longer than ac_out_buffer_size: its rest goes
#: out from handle_write events
BIG = 70000

#: the reply to "huge" (test_high_water only): more than the socket pair
#: buffers, so most of it stays queued until the peer reads
HUGE = 4 << 20

#: loop passes a step may take before it is declared stuck (generous: a
#: step takes one to five passes)
PASSES = 10
#: no pass needs to wait: what one end of a socket pair sends is readable
#: at the other before send() returns
TIMEOUT = 0.0


def short(data):
    """``data`` as bytes, or its length, head and tail if it is long (keeps
    failure reports readable)."""
    data = bytes(data)
    if len(data) <= 64:
        return data
    return (len(data), data[:16], data[-16:], hash(data))


def _base(impl, **attrs):
    """The user's channel class on ``impl``, with class attributes ``attrs``."""
    ac = impl.asynchat

    class Chat(ac.async_chat):
        #: frames after whose push() the channel looks at what the peer got
        peek_frames = (b"seven",)

        def __init__(self, sock, map, events, peer):
            self.events = events
            self.peer = peer
            self.parts = []
            self.hooks = {}
            ac.async_chat.__init__(self, sock, map=map)
            self.set_terminator(b"\n")

        def collect_incoming_data(self, data):
            self.events.append(("collect", bytes(data)))
            self.parts.append(bytes(data))

        def found_terminator(self):
            frame = b"".join(self.parts)
            self.parts = []
            self.events.append(("frame", frame))
            hook = self.hooks.get(frame)
            if hook is not None:
                hook(self)
            if frame == b"boom":
                raise Boom()
            if frame == b"text" and self.use_encoding:
                # CPython 3.11 encodes only str terminators (push() takes
                # bytes only): from here on the terminator is encoded "\n"
                self.set_terminator("\n")
                self.events.append(("terminator", self.terminator))
            if frame == b"seven":
                reply = b"<" + frame + b"." * BIG + b">\n"
            elif frame == b"huge":
                reply = b"h" * HUGE + b"\n"
            else:
                reply = b"<" + frame + b">\n"
            self.push(reply)
            if frame in self.peek_frames:
                try:
                    arrived = len(self.peer.recv(1 << 20, socket.MSG_PEEK))
                except BlockingIOError:
                    arrived = 0
                self.events.append(("at-push", frame, arrived))

        def handle_connect(self):
            self.events.append(("handle_connect",))

        def handle_accept(self):
            self.events.append(("handle_accept",))
            self.accepting = False

        def handle_close(self):
            self.events.append(("handle_close",))
            self.close()

        def handle_error(self):
            self.events.append(("handle_error", sys.exc_info()[0].__name__))

    for name, value in attrs.items():
        setattr(Chat, name, value)
    Chat.__name__ = "Chat_" + impl.name
    return Chat


class Peer:
    """The other end of the socketpair, and the loop that drives the channel."""

    def __init__(self, impl, sock, chan_map):
        self.impl = impl
        self.sock = sock
        self.map = chan_map
        self.got = bytearray()

    def drain(self):
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not data:
                return
            self.got += data

    def run(self, until):
        for _ in range(PASSES):
            if not self.map:
                break
            self.impl.loop_once(self.map, TIMEOUT)
            self.drain()
            if until():
                return True
        self.drain()
        return until()


#: undo actions of library patches, run when a conversation ends
_cleanups = []


def converse(impl, cls, setup=None, script=SCRIPT):
    """Run the conversation with a channel of ``cls``; return the events.

    ``setup(chan)`` runs once the channel exists, before its first event.
    """
    events = []
    a, b = socket.socketpair()
    b.setblocking(False)
    chan_map = {}
    chan = None
    try:
        chan = cls(a, chan_map, events, b)
        if setup is not None:
            setup(chan)
        peer = Peer(impl, b, chan_map)
        for data, frames in script:
            first = len(events)
            replies = frames - data.count(b"boom\n")
            b.sendall(data)

            def arrived():
                seen = sum(1 for e in events[first:] if e[0] == "frame")
                return seen >= frames and peer.got.count(b"\n") >= replies

            done = peer.run(lambda: arrived() or not chan_map)
            events.append(("peer", short(peer.got), done))
            del peer.got[:]
        b.shutdown(socket.SHUT_WR)
        peer.run(lambda: not chan_map)
        events.append(("end", short(peer.got), bool(chan_map)))
    finally:
        try:
            if chan is not None and chan_map:  # a step failed, or still open
                object.__getattribute__(chan, "close")()
                chan_map.clear()
        finally:
            a.close()
            b.close()
            undo_patches()
    return events


def undo_patches():
    while _cleanups:
        _cleanups.pop()()


# ---------------------------------------------------------------------------
# the reference's observations, computed once per case

_reference = {}


def reference(key, run):
    """``run(impl)`` on the reference, memoised under ``key``."""
    std = impls.get("stdlib")
    if std is None:
        pytest.skip("no reference implementation: %s" % impls.REFERENCE)
    if key not in _reference:
        _reference[key] = run(std)
    return _reference[key]


def check(impl, key, run, contrast_key, contrast):
    """Assert ``run(impl)`` observes what the reference observes, and that
    the reference's observation differs from ``contrast``'s."""
    got = run(impl)
    expected = reference(key, run)
    assert got == expected
    assert reference(contrast_key, contrast) != expected, (
        "the override does not change the observation")


def plain(impl):
    return converse(impl, _base(impl))


#: (kind, name, way, change) -> reason: differences found between our
#: builds and the reference, each a bug (strict xfail on our builds).  Empty
#: since issue 18's last four families were fixed (CHANGELOG): replies held
#: past a send()/initiate_send() override installed inside a read, held
#: past a replaced producer_fifo, sends to the output state's socket past a
#: __getattribute__, and a __slots__ entry 'ac_in_buffer'.
KNOWN = {}


def known_bug(request, impl, key):
    """Make the running test a strict xfail on our builds if ``key`` is a
    known difference."""
    reason = KNOWN.get(key)
    if reason is not None and not impl.is_reference:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


# ---------------------------------------------------------------------------
# the method matrix

#: hot methods: name -> how a call's arguments are logged
METHODS = {
    "handle_read_event": lambda: (),
    "handle_write_event": lambda: (),
    "handle_read": lambda: (),
    "handle_write": lambda: (),
    "recv": lambda size: (size,),
    "send": lambda data: (short(data),),
    "initiate_send": lambda: (),
    "readable": lambda: (),
    "writable": lambda: (),
    "collect_incoming_data": lambda data: (short(data),),
    "found_terminator": lambda: (),
    "push": lambda data: (data if isinstance(data, str) else short(data),),
    "handle_close": lambda: (),
    "handle_error": lambda: (),
}
#: called once per loop pass: consecutive calls are logged once
POLLED = {"readable", "writable"}


def _frames(chan):
    return [e[1] for e in chan.events if e[0] == "frame"]


#: overrides that change what the library gets back or passes on:
#: name -> function(chan, original, *args)
CHANGES = {
    # the library must use the data the override returns (only "two" has a
    # "w": the frames the conversation acts on keep their names)
    "recv": lambda chan, orig, size: orig(size).replace(b"w", b"W"),
    # and send what the override sends (same length: same count returned)
    "send": lambda chan, orig, data: orig(bytes(data).replace(b"<", b"{")),
    # stop reading once "text" was framed: boom and seven are never read
    "readable": lambda chan, orig: orig() and b"text" not in _frames(chan),
    # never ask for write events: the rest of seven's reply stays queued
    "writable": lambda chan, orig: False,
    "collect_incoming_data": lambda chan, orig, data: orig(bytes(data).replace(b"w", b"W")),
    "found_terminator": lambda chan, orig: (orig(), chan.push(b"+\n"))[0],
    "push": lambda chan, orig, data: orig(
        data.replace(b">", b"]") if isinstance(data, bytes) else data),
}


def _call(chan, tag, name, original, args, change):
    entry = (tag, name) + METHODS[name](*args)
    events = chan.events
    if name in POLLED:
        # how often readable()/writable() are asked while nothing else
        # happens is README deviation 6 (test_polled_override_asked_every_pass
        # pins what is promised): not part of the observation
        last = next((e for e in reversed(events) if e[0] != "peer"), None)
        if last == entry:
            return _finish(chan, original, args, change)
    events.append(entry)
    return _finish(chan, original, args, change)


def _finish(chan, original, args, change):
    if change is None:
        return original(*args)
    return change(chan, original, *args)


def _spy(name, tag, original_of, change):
    """A method logging its call, then calling ``original_of(self)`` (a
    bound method) through ``change``."""
    def spy(self, *args):
        return _call(self, tag, name, original_of(self), args, change)
    spy.__name__ = name
    return spy


def _next_after(holder, name):
    """``original_of`` giving the definition after ``holder[0]`` in the MRO
    (what ``super()`` gives in a class body)."""
    return lambda self: getattr(super(holder[0], self), name)


def _instance_spy(chan, name, tag, change, after=None):
    # the class's definition (past ``after``: a slot of the same name)
    original = getattr(super(after, chan) if after is not None else chan.__class__, name)
    if after is None:
        original = original.__get__(chan)

    def spy(*args):
        return _call(chan, tag, name, original, args, change)

    return spy


def m_subclass(impl, name, change):
    holder = []
    cls = type("Sub", (_base(impl),), {name: _spy(name, "sub", _next_after(holder, name), change)})
    holder.append(cls)
    return cls, None


def m_mixin(impl, name, change):
    holder = []
    mixin = type("Mixin", (), {name: _spy(name, "mixin", _next_after(holder, name), change)})
    holder.append(mixin)
    cls = type("Mixed", (mixin, _base(impl)), {})
    assert cls.__mro__[1] is mixin
    return cls, None


def m_slots_mixin(impl, name, change):
    """A mixin with empty __slots__ (the usual way to keep mixins light),
    first in the MRO of a class that also declares __slots__."""
    holder = []
    spy = _spy(name, "slot-mixin", _next_after(holder, name), change)
    mixin = type("SlotMixin", (), {"__slots__": (), name: spy})
    holder.append(mixin)
    cls = type("SlotMixed", (mixin, _base(impl)), {"__slots__": ("extra",)})
    return cls, None


def m_instance(impl, name, change):
    def setup(chan):
        setattr(chan, name, _instance_spy(chan, name, "inst", change))
    return _base(impl), setup


def m_instance_mid(impl, name, change):
    def setup(chan):
        chan.hooks[MID_FRAME] = lambda c: setattr(c, name, _instance_spy(c, name, "inst", change))
    return _base(impl), setup


def m_instance_between(impl, name, change):
    """Assigned from the found_terminator of a read's last frame: the next
    event must use it."""
    def setup(chan):
        chan.hooks[BETWEEN_FRAME] = lambda c: setattr(
            c, name, _instance_spy(c, name, "inst", change))
    return _base(impl), setup


def m_instance_deleted(impl, name, change):
    def setup(chan):
        setattr(chan, name, _instance_spy(chan, name, "inst", change))
        chan.hooks[MID_FRAME] = lambda c: delattr(c, name)
    return _base(impl), setup


def m_bound_method(impl, name, change):
    """The instance attribute is a bound method of another object."""
    class Other:
        def __init__(self, chan):
            self.chan = chan
            self.original = getattr(type(chan), name).__get__(chan)

        def spy(self, *args):
            return _call(self.chan, "bound", name, self.original, args, change)

    def setup(chan):
        setattr(chan, name, Other(chan).spy)
    return _base(impl), setup


def _class_patch(cls, name, value, patch_at, restore_at):
    """(cls, setup): ``cls.name = value()`` at once (``patch_at`` None) or at
    the hook ``patch_at``, and deleted again at ``restore_at`` (if given)."""

    def patch(chan):
        setattr(cls, name, value())

    def restore(chan):
        delattr(cls, name)

    def setup(chan):
        if patch_at is None:
            patch(chan)
        else:
            chan.hooks[patch_at] = patch
        if restore_at is not None:
            chan.hooks[restore_at] = restore
    return cls, setup


def _user_class_patch(impl, name, change, patch_at, restore_at):
    cls = type("Patched", (_base(impl),), {})
    return _class_patch(cls, name, lambda: _spy(name, "patch", _next_after([cls], name), change),
                        patch_at, restore_at)


def m_class_patched(impl, name, change):
    """MyHandler.name = other, after the instance exists."""
    return _user_class_patch(impl, name, change, None, None)


def m_class_patched_mid(impl, name, change):
    """Patched inside a read, more frames following in it."""
    return _user_class_patch(impl, name, change, MID_FRAME, None)


def m_class_restored_mid(impl, name, change):
    """Patched before the first event, restored inside a read."""
    return _user_class_patch(impl, name, change, None, MID_FRAME)


def _library_owner(impl, name):
    for klass in impl.asynchat.async_chat.__mro__:
        if name in vars(klass):
            return klass
    raise AssertionError(name)


def _library_patch(impl, name, change, restore_at, owner=None, **attrs):
    base = _base(impl, **attrs)
    assert name not in vars(base)
    if owner is None:
        owner = _library_owner(impl, name)
    saved = vars(owner)[name]
    spy = _spy(name, "lib", lambda self: saved.__get__(self), change)

    def restore(chan=None):
        setattr(owner, name, saved)

    def setup(chan):
        setattr(owner, name, spy)
        _cleanups.append(restore)
        if restore_at is not None:
            chan.hooks[restore_at] = restore
    return base, setup


def m_library_patched(impl, name, change):
    """asyncore.dispatcher.send = wrapper (on the library class that
    defines the name), after the instance exists; restored at the end."""
    return _library_patch(impl, name, change, None)


def m_library_restored_mid(impl, name, change):
    """The library class patched before the first event, restored inside a
    read."""
    return _library_patch(impl, name, change, MID_FRAME)


#: README deviation 1: a class-level patch of dispatcher.send sees the
#: replies held inside a read in one send(); ac_coalesce_pushes = False
#: gives CPython's calls, which is what these cases compare
_DISPATCHER_ATTRS = {"ac_coalesce_pushes": False}


def m_dispatcher_patched(impl, name, change):
    """asyncore.dispatcher.name = wrapper, for the names CPython's
    async_chat inherits from dispatcher: it reaches async_chat channels."""
    return _library_patch(impl, name, change, None, owner=impl.asyncore.dispatcher,
                          **_DISPATCHER_ATTRS)


def m_dispatcher_restored_mid(impl, name, change):
    return _library_patch(impl, name, change, MID_FRAME, owner=impl.asyncore.dispatcher,
                          **_DISPATCHER_ATTRS)


def m_slots(impl, name, change):
    """A __slots__ class (over a base with __dict__, as asyncore needs)
    whose slot of the same name holds the override: the instance's value
    is in a slot, not in the instance dict."""
    cls = type("Slotted", (_base(impl),), {"__slots__": (name,)})

    def setup(chan):
        setattr(chan, name, _instance_spy(chan, name, "slot", change, after=cls))
        assert name not in vars(chan)
    return cls, setup


def m_getattribute(impl, name, change):
    """__getattribute__ returns a replacement for the name."""
    def __getattribute__(self, attr):
        value = object.__getattribute__(self, attr)
        if attr != name:
            return value

        def replacement(*args):
            return _call(self, "getattribute", name, value, args, change)
        return replacement

    return type("Intercepting", (_base(impl),), {"__getattribute__": __getattribute__}), None


def m_metaclass(impl, name, change):
    """A class made by a metaclass, overriding the name."""
    class Meta(type):
        pass

    holder = []
    spy = _spy(name, "meta", _next_after(holder, name), change)
    cls = Meta("Made", (_base(impl),), {name: spy})
    holder.append(cls)
    return cls, None


def m_metaclass_hooks(impl, name, change):
    """A metaclass with its own __setattr__ (which wraps what is assigned)
    and __getattribute__; the class is patched through it after the
    instance exists."""
    class Meta(type):
        def __setattr__(cls, attr, value):
            if attr == name:
                inner = value

                def value(self, *args):
                    self.events.append(("meta-setattr", name))
                    return inner(self, *args)
            type.__setattr__(cls, attr, value)

        def __getattribute__(cls, attr):
            return type.__getattribute__(cls, attr)

    cls = Meta("Made", (_base(impl),), {})

    def setup(chan):
        setattr(cls, name, _spy(name, "meta", _next_after([cls], name), change))
    return cls, setup


def m_class_swapped(impl, name, change):
    """chan.__class__ = Other inside a read, Other overriding the name."""
    base = _base(impl)
    holder = []
    other = type("Other", (base,), {name: _spy(name, "swapped", _next_after(holder, name), change)})
    holder.append(other)

    def setup(chan):
        chan.hooks[MID_FRAME] = lambda c: setattr(c, "__class__", other)
    return base, setup


METHOD_WAYS = {
    "subclass": m_subclass,
    "mixin": m_mixin,
    "slots_mixin": m_slots_mixin,
    "instance": m_instance,
    "instance_mid": m_instance_mid,
    "instance_between": m_instance_between,
    "instance_deleted": m_instance_deleted,
    "bound_method": m_bound_method,
    "class_patched": m_class_patched,
    "class_patched_mid": m_class_patched_mid,
    "class_restored_mid": m_class_restored_mid,
    "library_patched": m_library_patched,
    "library_restored_mid": m_library_restored_mid,
    "dispatcher_patched": m_dispatcher_patched,
    "dispatcher_restored_mid": m_dispatcher_restored_mid,
    "slots": m_slots,
    "getattribute": m_getattribute,
    "metaclass": m_metaclass,
    "metaclass_hooks": m_metaclass_hooks,
    "class_swapped": m_class_swapped,
}
#: the way a removal is contrasted with: the override left in place
CONTRAST = {
    "instance_deleted": "instance",
    "class_restored_mid": "class_patched",
    "library_restored_mid": "library_patched",
    "dispatcher_restored_mid": "dispatcher_patched",
}
#: methods the user's channel defines itself: a library patch cannot reach
USER_DEFINED = {"collect_incoming_data", "found_terminator", "handle_close", "handle_error"}
#: methods CPython's async_chat inherits from asyncore.dispatcher
FROM_DISPATCHER = {"handle_read_event", "handle_write_event", "recv", "send"}


def _method_cases():
    for name in METHODS:
        for way in METHOD_WAYS:
            if way.startswith("library_") and name in USER_DEFINED:
                continue
            if way.startswith("dispatcher_") and name not in FROM_DISPATCHER:
                continue
            for change in ("spy", "changed") if name in CHANGES else ("spy",):
                yield pytest.param(name, way, change, id="%s-%s-%s" % (name, way, change))


def _method_run(name, way, change):
    def run(impl):
        cls, setup = METHOD_WAYS[way](impl, name, CHANGES[name] if change == "changed" else None)
        return converse(impl, cls, setup)
    return run


@pytest.mark.parametrize("name, way, change", list(_method_cases()))
def test_method_override(request, impl, name, way, change):
    known_bug(request, impl, ("method", name, way, change))
    contrast = CONTRAST.get(way)
    if contrast is None:
        contrast_key, contrast_run = ("plain",), plain
    else:
        contrast_key = ("method", name, contrast, change)
        contrast_run = _method_run(name, contrast, change)
    check(impl, ("method", name, way, change), _method_run(name, way, change),
          contrast_key, contrast_run)


# ---------------------------------------------------------------------------
# the state matrix: data the library reads per event


class LoggingFifo(collections.deque):
    """A producer_fifo that logs what the library does to it."""

    def __init__(self, events, items):
        super().__init__(items)
        self.events = events

    def append(self, item):
        self.events.append(("fifo.append", short(item)))
        super().append(item)

    def appendleft(self, item):
        self.events.append(("fifo.appendleft", short(item)))
        super().appendleft(item)

    def popleft(self):
        self.events.append(("fifo.popleft",))
        return super().popleft()

    def __delitem__(self, index):
        self.events.append(("fifo.del", index))
        super().__delitem__(index)

    def __setitem__(self, index, item):
        self.events.append(("fifo.set", index, short(item)))
        super().__setitem__(index, item)

    def clear(self):
        self.events.append(("fifo.clear",))
        super().clear()


class SocketSpy:
    """A channel's socket replaced by a wrapper that logs the calls made
    on it (everything it does not define is looked up on the real one)."""

    def __init__(self, sock, events):
        self._sock = sock
        self._events = events

    def recv(self, size, *flags):
        self._events.append(("sock.recv", size) + flags)
        return self._sock.recv(size, *flags)

    def send(self, data, *flags):
        # the flags are not logged: README deviation 8 (MSG_NOSIGNAL)
        self._events.append(("sock.send", short(data)))
        return self._sock.send(data, *flags)

    def close(self):
        self._events.append(("sock.close",))
        self._sock.close()

    def __getattr__(self, attr):
        self._events.append(("sock." + attr,))
        return getattr(self._sock, attr)


class Attr:
    """A piece of state, the value an override gives it, and how to see it."""

    def __init__(self, value, kind, base=None, ours_only=False, mid=MID_FRAME, skip=()):
        self.value = value  # function(chan) -> the override's value
        self.kind = kind  # "class": a class attribute; "instance": set by __init__
        self.base = base or {}  # class attributes of the user's class
        self.ours_only = ours_only  # the reference does not have it
        self.mid = mid  # the frame at which the "mid" ways act
        self.skip = skip  # ways that would hang the reference


ATTRS = {
    # smaller reads: the chunks collect_incoming_data gets
    "ac_in_buffer_size": Attr(lambda chan: 3, "class"),
    # smaller sends: what the peer holds when push() of seven returns
    "ac_out_buffer_size": Attr(lambda chan: 30000, "class"),
    # at the "text" frame the channel sets a str terminator, "\n": encoded
    # with use_encoding (else the next read fails: a TypeError)
    "use_encoding": Attr(lambda chan: True, "class"),
    # ... in UTF-16: the lines that follow never end
    "encoding": Attr(lambda chan: "utf-16-le", "class", base={"use_encoding": True}),
    # pipelined replies are each on the socket when push() returns (the
    # reference's behaviour); the change is made before the pipelined read
    "ac_coalesce_pushes": Attr(lambda chan: False, "class", ours_only=True, mid=b"two",
                               base={"peek_frames": (b"four", b"five", b"seven")}),
    # replies stay queued; handle_write runs with nothing sent
    "connected": Attr(lambda chan: False, "instance"),
    # the next read event calls handle_accept (which resets it)
    "accepting": Attr(lambda chan: True, "instance"),
    "producer_fifo": Attr(lambda chan: LoggingFifo(chan.events, [b"[pre]\n"]), "instance"),
    "socket": Attr(lambda chan: SocketSpy(object.__getattribute__(chan, "socket"), chan.events),
                   "instance",
                   base={"ac_coalesce_pushes": False}),
    "terminator": Attr(lambda chan: b"e", "instance"),
    # what the next frame starts with (CPython reads it at every read and
    # after every found_terminator)
    # (a __getattribute__ always giving it makes CPython's handle_read loop
    # forever: never empty)
    "ac_in_buffer": Attr(lambda chan: b"in:", "instance",
                         skip=("getattribute", "getattribute_mid")),
}


def a_subclass(impl, name, spec):
    return type("Sub", (_base(impl, **spec.base),), {name: spec.value(None)}), None


def a_mixin(impl, name, spec):
    mixin = type("Mixin", (), {name: spec.value(None)})
    return type("Mixed", (mixin, _base(impl, **spec.base)), {}), None


def a_metaclass(impl, name, spec):
    class Meta(type):
        pass

    return Meta("Made", (_base(impl, **spec.base),), {name: spec.value(None)}), None


def a_metaclass_hooks(impl, name, spec):
    """The metaclass's own __setattr__ (logging) and __getattribute__; the
    class attribute set through them after the instance exists."""
    class Meta(type):
        def __setattr__(cls, attr, value):
            if attr == name:
                cls.log_setattr.append(("meta-setattr", name))
            type.__setattr__(cls, attr, value)

        def __getattribute__(cls, attr):
            return type.__getattribute__(cls, attr)

    cls = Meta("Made", (_base(impl, **spec.base),), {"log_setattr": []})

    def setup(chan):
        cls.log_setattr = chan.events
        setattr(cls, name, spec.value(None))
    return cls, setup


def _attr_class_patch(impl, name, spec, patch_at, restore_at):
    cls = type("Patched", (_base(impl, **spec.base),), {})
    return _class_patch(cls, name, lambda: spec.value(None), patch_at, restore_at)


def a_class_patched(impl, name, spec):
    return _attr_class_patch(impl, name, spec, None, None)


def a_class_patched_mid(impl, name, spec):
    return _attr_class_patch(impl, name, spec, spec.mid, None)


def a_class_restored_mid(impl, name, spec):
    return _attr_class_patch(impl, name, spec, None, spec.mid)


def _attr_library_patch(impl, name, spec, restore_at):
    """async_chat.name = value on the library class defining it (the
    async_chat class where the reference has no such name)."""
    owner = impl.asynchat.async_chat
    for klass in owner.__mro__:
        if name in vars(klass):
            owner = klass
            break
    missing = object()
    saved = vars(owner).get(name, missing)

    def restore(chan=None):
        if saved is missing:
            if name in vars(owner):
                delattr(owner, name)
        else:
            setattr(owner, name, saved)

    def setup(chan):
        setattr(owner, name, spec.value(None))
        _cleanups.append(restore)
        if restore_at is not None:
            chan.hooks[restore_at] = restore
    return _base(impl, **spec.base), setup


def a_library_patched(impl, name, spec):
    return _attr_library_patch(impl, name, spec, None)


def a_library_restored_mid(impl, name, spec):
    return _attr_library_patch(impl, name, spec, spec.mid)


def a_class_swapped(impl, name, spec):
    base = _base(impl, **spec.base)
    other = type("Other", (base,), {name: spec.value(None)})

    def setup(chan):
        chan.hooks[spec.mid] = lambda c: setattr(c, "__class__", other)
    return base, setup


def a_instance(impl, name, spec):
    def setup(chan):
        setattr(chan, name, spec.value(chan))
    return _base(impl, **spec.base), setup


def a_instance_mid(impl, name, spec):
    def setup(chan):
        chan.hooks[spec.mid] = lambda c: setattr(c, name, spec.value(c))
    return _base(impl, **spec.base), setup


def a_instance_between(impl, name, spec):
    def setup(chan):
        chan.hooks[BETWEEN_FRAME] = lambda c: setattr(c, name, spec.value(c))
    return _base(impl, **spec.base), setup


def a_instance_deleted(impl, name, spec):
    def setup(chan):
        setattr(chan, name, spec.value(chan))
        chan.hooks[spec.mid] = lambda c: delattr(c, name)
    return _base(impl, **spec.base), setup


def a_slots(impl, name, spec):
    """The name is a slot of the user's class: its value (set by the
    library's __init__, then by the override) is not in the instance dict."""
    cls = type("Slotted", (_base(impl, **spec.base),), {"__slots__": (name,)})

    def setup(chan):
        setattr(chan, name, spec.value(chan))
        assert name not in vars(chan)
    return cls, setup


def _attr_getattribute(impl, name, spec, from_mid):
    def __getattribute__(self, attr):
        if attr != name or not object.__getattribute__(self, "intercept"):
            return object.__getattribute__(self, attr)
        cache = object.__getattribute__(self, "replacement")
        if not cache:
            cache.append(spec.value(self))
        return cache[0]

    cls = type("Intercepting", (_base(impl, **spec.base),), {
        "__getattribute__": __getattribute__, "intercept": False})

    def start(chan):
        chan.intercept = True

    def setup(chan):
        chan.replacement = []
        if from_mid:
            chan.hooks[spec.mid] = start
        else:
            start(chan)
    return cls, setup


def a_getattribute(impl, name, spec):
    """__getattribute__ gives another value for the name."""
    return _attr_getattribute(impl, name, spec, False)


def a_getattribute_mid(impl, name, spec):
    """... from inside a read on."""
    return _attr_getattribute(impl, name, spec, True)


ATTR_WAYS = {
    "subclass": (a_subclass, "class"),
    "mixin": (a_mixin, "class"),
    "metaclass": (a_metaclass, "class"),
    "metaclass_hooks": (a_metaclass_hooks, "class"),
    "class_patched": (a_class_patched, "class"),
    "class_patched_mid": (a_class_patched_mid, "class"),
    "class_restored_mid": (a_class_restored_mid, "class"),
    "library_patched": (a_library_patched, "class"),
    "library_restored_mid": (a_library_restored_mid, "class"),
    "class_swapped": (a_class_swapped, "class"),
    "instance": (a_instance, "any"),
    "instance_mid": (a_instance_mid, "any"),
    "instance_between": (a_instance_between, "any"),
    "instance_deleted": (a_instance_deleted, "class"),
    "slots": (a_slots, "any"),
    "getattribute": (a_getattribute, "any"),
    "getattribute_mid": (a_getattribute_mid, "any"),
}


def _attr_cases():
    for name, spec in ATTRS.items():
        for way, (_, applies) in ATTR_WAYS.items():
            if applies == "class" and spec.kind != "class":
                continue  # the instance's own value hides any class's
            if way in spec.skip:
                continue
            if spec.ours_only and way in CONTRAST:
                continue  # our default comes back: not the reference's behaviour
            yield pytest.param(name, way, id="%s-%s" % (name, way))


def _attr_run(name, way):
    spec = ATTRS[name]

    def run(impl):
        cls, setup = ATTR_WAYS[way][0](impl, name, spec)
        return converse(impl, cls, setup)
    return run


def _attr_plain(name):
    spec = ATTRS[name]
    return lambda impl: converse(impl, _base(impl, **spec.base))


@pytest.mark.parametrize("name, way", list(_attr_cases()))
def test_state_override(request, impl, name, way):
    known_bug(request, impl, ("state", name, way))
    spec = ATTRS[name]
    contrast = CONTRAST.get(way)
    if contrast is None:
        contrast_key, contrast_run = ("plain", name), _attr_plain(name)
    else:
        contrast_key, contrast_run = ("state", name, contrast), _attr_run(name, contrast)
    if not spec.ours_only:
        check(impl, ("state", name, way), _attr_run(name, way), contrast_key, contrast_run)
        return
    # The reference has no such setting: with it, our builds must behave as
    # the reference does anyway, and without it (our default) differently.
    got = _attr_run(name, way)(impl)
    assert got == reference(("state", name, way), _attr_run(name, way))
    if not impl.is_reference:
        assert contrast_run(impl) != got, "the override does not change the observation"


# ---------------------------------------------------------------------------
# __getattr__: state served by it once the instance's own is deleted

#: what __getattr__ serves: name -> function(chan) giving the value
SERVED = {
    "producer_fifo": lambda chan: LoggingFifo(chan.events, [b"[pre]\n"]),
    "socket": lambda chan: SocketSpy(chan.socket, chan.events),
    "terminator": lambda chan: b"e",
}


def _getattr_run(name):
    """A class with __getattr__; the instance's ``name`` deleted and served
    by it (nothing deleted when ``name`` is None).  The names __getattr__
    is asked for are kept as a set (how often each is asked is not
    CPython's contract)."""
    def run(impl):
        asked = set()

        def __getattr__(self, attr):
            asked.add(attr)
            served = self.__dict__.get("served", {})
            if attr in served:
                return served[attr]
            raise AttributeError(attr)

        # a socket wrapper sees fewer, larger sends while replies are held
        # (README deviation 1): off, as for the state matrix's socket
        cls = type("Fallback", (_base(impl, ac_coalesce_pushes=False),),
                   {"__getattr__": __getattr__})

        def setup(chan):
            if name is not None:
                chan.served = {name: SERVED[name](chan)}
                delattr(chan, name)
        events = converse(impl, cls, setup)
        return events, sorted(asked)
    return run


@pytest.mark.parametrize("name", list(SERVED))
def test_getattr_serves_state(request, impl, name):
    known_bug(request, impl, ("getattr", name))
    events, asked = _getattr_run(name)(impl)
    expected_events, expected_asked = reference(("getattr", name), _getattr_run(name))
    assert name in asked and name in expected_asked
    assert events == expected_events
    plain_events = reference(("plain", "uncoalesced"),
                             lambda i: converse(i, _base(i, ac_coalesce_pushes=False)))
    assert expected_events != plain_events, "the override does not change the observation"


def test_getattr_names_asked(request, impl):
    """The names a __getattr__ is asked for in a conversation: the
    reference's (none: everything it reads exists)."""
    known_bug(request, impl, ("getattr", None))
    events, asked = _getattr_run(None)(impl)
    expected_events, expected_asked = reference(("getattr", None), _getattr_run(None))
    assert events == expected_events
    assert asked == expected_asked == []


# ---------------------------------------------------------------------------
# a metaclass's __getattribute__: CPython looks methods up on the type's
# dictionaries, so a replacement it gives for a class attribute is not what
# the instance calls; the names asked through it are the reference's

def _meta_run(impl):
    asked = set()

    class Meta(type):
        def __getattribute__(cls, attr):
            if attr in METHODS or attr in ATTRS:
                asked.add(attr)
            value = type.__getattribute__(cls, attr)
            if attr == "found_terminator":
                def replacement(self):
                    self.events.append(("meta-replacement",))
                    return value(self)
                return replacement
            return value

    cls = Meta("Made", (_base(impl),), {})
    # the hook is live: looked up on the class, the replacement comes back
    assert cls.found_terminator.__name__ == "replacement"
    asked.clear()
    events = converse(impl, cls)
    return events, sorted(asked)


def test_metaclass_getattribute(request, impl):
    known_bug(request, impl, ("metaclass_getattribute",))
    got = _meta_run(impl)
    assert got == reference(("metaclass_getattribute",), _meta_run)


def test_metaclass_getattribute_loop_names(impl):
    """The loop's part of the above: it decides whether to ask readable()/
    writable() every pass from the class's own dicts, so the metaclass is
    not asked for them (nor, by the chat code, for terminator)."""
    events, asked = _meta_run(impl)
    assert "readable" not in asked and "writable" not in asked
    assert events == reference(("metaclass_getattribute",), _meta_run)[0]


# ---------------------------------------------------------------------------
# readable()/writable() overrides are asked every pass: their answer may
# change without any event (README deviation 6 exempts only an instance
# attribute assigned after the loop first saw the channel)

def _pause(chan, orig):
    return orig() and not chan.paused


#: ways whose override exists before the loop first sees the channel, or
#: comes with its class (patched, swapped) at MID_FRAME
POLLED_WAYS = ("subclass", "mixin", "instance", "bound_method", "class_patched",
               "class_patched_mid", "library_patched", "slots", "getattribute",
               "metaclass", "metaclass_hooks", "class_swapped")


def _polled_run(name, way):
    """Pause the channel's reading (or writing) from outside, between loop
    passes, and resume it: the pass after each change must obey it."""
    def run(impl):
        if way is None:
            cls, setup = _base(impl), None
        else:
            cls, setup = METHOD_WAYS[way](impl, name, _pause)
        events = []
        a, b = socket.socketpair()
        b.setblocking(False)
        chan_map = {}
        chan = cls(a, chan_map, events, b)
        chan.paused = False
        if setup is not None:
            setup(chan)
        peer = Peer(impl, b, chan_map)
        seen = []
        try:
            b.sendall(MID_FRAME + b"\n")
            seen.append(("first", peer.run(lambda: peer.got.endswith(b">\n"))))
            del peer.got[:]
            chan.paused = True
            b.sendall(b"two\n" if name == "readable" else b"seven\n")
            for state in ("paused", "paused", "paused", "resumed", "resumed"):
                if state == "resumed":
                    chan.paused = False
                impl.loop_once(chan_map, TIMEOUT)
                peer.drain()
                seen.append((state, _frames(chan), len(peer.got)))
        finally:
            chan.close()
            a.close()
            b.close()
            undo_patches()
        return seen
    return run


@pytest.mark.parametrize("name", sorted(POLLED))
@pytest.mark.parametrize("way", POLLED_WAYS)
def test_polled_override_asked_every_pass(request, impl, name, way):
    known_bug(request, impl, ("polled", name, way))
    got = _polled_run(name, way)(impl)
    expected = reference(("polled", name, way), _polled_run(name, way))
    assert got == expected
    assert reference(("polled", name, None), _polled_run(name, None)) != expected


# ---------------------------------------------------------------------------
# ac_out_high_water (ours only): while more than it waits unsent, the
# channel is not read

HIGH_WATER = Attr(lambda chan: 1 << 20, "class", ours_only=True, mid=b"huge")
HIGH_WATER_WAYS = ("subclass", "mixin", "metaclass", "metaclass_hooks", "class_patched",
                   "class_patched_mid", "library_patched", "class_swapped", "instance",
                   "instance_mid", "slots", "getattribute", "getattribute_mid")


def _high_water_run(impl, way):
    if way is None:
        cls, setup = _base(impl), None
    else:
        cls, setup = ATTR_WAYS[way][0](impl, "ac_out_high_water", HIGH_WATER)
    events = []
    a, b = socket.socketpair()
    b.setblocking(False)
    chan_map = {}
    chan = cls(a, chan_map, events, b)
    if setup is not None:
        setup(chan)
    seen = []
    try:
        b.sendall(b"huge\n")
        impl.loop_once(chan_map, TIMEOUT)  # the reply fills the socket pair
        b.sendall(b"after\n")
        for _ in range(3):  # the peer reads nothing
            impl.loop_once(chan_map, TIMEOUT)
        seen.append(("blocked", _frames(chan)))
        peer = Peer(impl, b, chan_map)
        # generous: the 4 MiB reply takes a few dozen passes
        for _ in range(2000):
            impl.loop_once(chan_map, TIMEOUT)
            peer.drain()
            if len(peer.got) >= HUGE + 1 + len(b"<after>\n"):
                break
        seen.append(("drained", _frames(chan), len(peer.got)))
    finally:
        chan.close()
        a.close()
        b.close()
        undo_patches()
    return seen


@pytest.mark.parametrize("way", HIGH_WATER_WAYS)
def test_high_water_override(request, our_impl, way):
    known_bug(request, our_impl, ("high_water", way))
    total = HUGE + 1 + len(b"<after>\n")
    assert _high_water_run(our_impl, way) == [
        ("blocked", [b"huge"]), ("drained", [b"huge", b"after"], total)]
    # without it, the channel reads on
    assert _high_water_run(our_impl, None) == [
        ("blocked", [b"huge", b"after"]), ("drained", [b"huge", b"after"], total)]


# ---------------------------------------------------------------------------
# overrides installed inside a pipelined read, and when their replies go out

#: the pipelined frames and seven: the peer is looked at after each push()
PEEKED = (b"four", b"five", b"six", b"seven")


def _peeked_run(name, way):
    """The conversation with the peer looked at after every pipelined
    push(); ``name`` overridden on the instance from MID_FRAME on (by a spy
    calling the library's method), or not at all (``way`` None)."""
    def run(impl):
        cls = _base(impl, peek_frames=PEEKED)
        if way is None:
            return converse(impl, cls)

        def setup(chan):
            chan.hooks[MID_FRAME] = lambda c: setattr(
                c, name, _instance_spy(c, name, "inst", None))
        return converse(impl, cls, setup)
    return run


@pytest.mark.parametrize("name", ["send", "initiate_send"])
def test_override_installed_mid_read_gets_replies_at_push(impl, name):
    """A send()/initiate_send() override that found_terminator installs
    inside a pipelined read, and that calls the library's own: each reply
    of that read is on the wire when push() returns, as in CPython (none is
    held for the read's end, README deviation 1 being off for it), also
    when the override reaches the library's drain through super()."""
    check(impl, ("peeked", name, "instance_mid"), _peeked_run(name, "instance_mid"),
          ("peeked",), _peeked_run(name, None))


def _socket_class_patch_run(patched):
    def run(impl):
        calls = []

        class Wrapped:
            # the channel's socket, logging each send() made through it
            def __init__(self, sock):
                self._sock = sock

            def send(self, data, *flags):
                calls.append(bytes(data))
                return self._sock.send(data, *flags)

            def recv(self, size, *flags):
                data = self._sock.recv(size, *flags)
                calls.append(("recv", data))
                return data

            def __getattr__(self, name):
                return getattr(self._sock, name)

        class Handler(impl.asynchat.async_chat):
            def collect_incoming_data(self, data):
                pass

            def found_terminator(self):
                self.push(b"pong\n")

        ours, peer = socket.socketpair()
        chans = {}
        try:
            chan = Handler(ours, map=chans)
            chan.set_terminator(b"\n")
            if patched:  # after the instance took its socket
                Handler.socket = property(lambda self: Wrapped(ours), lambda self, value: None)
            peer.sendall(b"ping\n")
            impl.asyncore.loop(timeout=0.1, count=2, map=chans)
            peer.settimeout(5.0)  # (a hang guard: the reply is sent in the loop)
            return peer.recv(100), calls
        finally:
            ours.close()
            peer.close()
    return run


def test_socket_patched_on_the_class_after_instances_exist(impl):
    """A class patch of ``socket`` (a property giving another socket object)
    made after the channel exists: CPython's recv() and send() use what it
    gives, so the request and the reply go through it."""
    check(impl, ("socket_class_patch", True), _socket_class_patch_run(True),
          ("socket_class_patch", False), _socket_class_patch_run(False))


def test_slots_entry_ac_in_buffer_is_served_by_the_descriptor(our_impl):
    """README deviation 3: a subclass's __slots__ entry 'ac_in_buffer' is
    dropped from the class, so the library's descriptor serves the name and
    what is assigned is the input the chat code reads."""
    base = our_impl.asynchat.async_chat
    cls = type("Slotted", (base,), {"__slots__": ("ac_in_buffer", "other")})
    assert "ac_in_buffer" not in vars(cls) and "other" in vars(cls)
    assert cls.ac_in_buffer is vars(base)["ac_in_buffer"]
    chan = cls()
    chan.ac_in_buffer = b"in:"
    assert chan.ac_in_buffer == b"in:"
    assert chan._ac_in.value() == b"in:"
    assert "ac_in_buffer" not in vars(chan)


def test_known_bugs_name_cases():
    """Every entry of KNOWN marks a case that exists (a renamed case would
    leave its entry behind, and the bug unwatched)."""
    cases = {("method",) + tuple(p.values) for p in _method_cases()}
    cases |= {("state",) + tuple(p.values) for p in _attr_cases()}
    cases |= {("getattr", name) for name in [None] + list(SERVED)}
    cases |= {("metaclass_getattribute",)}
    cases |= {("polled", name, way) for name in POLLED for way in POLLED_WAYS}
    cases |= {("high_water", way) for way in HIGH_WATER_WAYS}
    assert set(KNOWN) <= cases, sorted(set(KNOWN) - cases)
