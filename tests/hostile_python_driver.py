"""Child process of ``tests/test_hostile_python.py``: hostile Python code
against live channels, run where a crash cannot take pytest down.

    python hostile_python_driver.py fuzz --examples N --budget S --seed K --state FILE
    python hostile_python_driver.py replay FILE     # one op sequence (JSON list)
    python hostile_python_driver.py names           # what introspection found (JSON)

The rule under test: nothing Python code does -- odd subclasses, attribute
assignments, deletions and swaps, lying dunders, replaced methods, direct
calls of the kernels' functions with wrong arguments, several threads --
may crash the interpreter; an ordinary exception is the worst outcome.

``fuzz`` runs a Hypothesis search (seeded, no database) over sequences of
*ops*: JSON-able lists such as ``["set", "chat", "_ac_in", "none"]``.  Each
example builds a fresh socket map holding a connected ``async_chat`` (with a
socketpair peer), a connected ``dispatcher`` and a listener, runs the ops
interleaved with real events (peer sends, reads, writes, ``loop(count=1)``),
then closes everything.  Before each example its ops are written to
``--state``, so when the process dies the parent knows which sequence
killed it and can replay and shrink it.

Names are discovered at run time -- the kernels' public and private
callables and classes, ``vars()`` of live channels, and every ``self.x`` /
``chan.x`` / ``obj.x`` the kernel sources mention -- so the fuzzer follows
renames instead of breaking on them; ops naming something that no longer
exists do nothing.

Triage: ``fuzz --exclude REGEX`` drops ops whose JSON matches, to look past
a crash already known.

Exit status: 0 when every example ran with ordinary exceptions only; 3 when
a ``SystemError`` (a C-API misuse made visible) was raised or printed;
anything else (a signal, a sanitizer abort) is a crash.
"""
import argparse
import collections
import faulthandler
import gc
import inspect
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path

import asynchat_core
from asynchat_core import _impl, _runner, asynchat, asyncore

CHAT = _impl.chat_impl
LOOP = _impl.loop_impl
MODULES = {"chat": CHAT, "loop": LOOP}
HERE = Path(__file__).resolve().parent

WATCHDOG_SECONDS = 0.1  # one op may block (a poll with no timeout) this long


class Boom(Exception):
    """What hostile callables and dunders raise."""


class Watchdog(Exception):
    """Raised by SIGALRM into an op that blocked; ordinary on purpose, so
    the library's own ``except Exception`` paths see it too."""


# ----------------------------------------------------------------- context

class Ctx:
    """The live objects of one example."""

    def __init__(self):
        self.map = {}
        self.socks = []
        self.accepted = []
        self.collected = 0
        self.findings = []
        self.exc_counts = collections.Counter()
        self.spins = collections.Counter()
        self.depth = 0
        self.op_index = -1
        self.peer_open = True
        self.peer_sent = 0
        # both threads of a "thread" op may add to peer_sent at once: an
        # unlocked += loses one of the counts, and the byte check below then
        # takes the peer's own bytes for an over-read
        self.count_lock = threading.Lock()
        self.value_bytes = 0
        # while two threads run ops: handle_read on one channel from two
        # threads at once (unsupported, the loop never does it) may hand the
        # same input over twice, in either twin, so the byte count below
        # cannot tell an over-read from a Python-level race then
        self.concurrent = False

    # the objects ops name
    def loop(self):
        loops = getattr(_runner, "_loops", None)
        return loops.get(id(self.map)) if isinstance(loops, dict) else None

    def fds(self):
        out = []
        for obj in (self.chat, self.disp, self.listener):
            fd = obj.__dict__.get("_fileno") if hasattr(obj, "__dict__") else None
            if isinstance(fd, int):
                out.append(fd)
        return out or [self.sock.fileno() if self.sock.fileno() >= 0 else 0]

    def target(self, name):
        if name == "chat":
            return self.chat
        if name == "accepted":
            return self.accepted[0] if self.accepted else self.chat
        if name == "disp":
            return self.disp
        if name == "listener":
            return self.listener
        if name == "inbuf":
            return _peek(self.chat, "_ac_in")
        if name == "loop":
            return self.loop()
        if name == "entry":
            lp = self.loop()
            entries = getattr(lp, "entries", None) if lp is not None else None
            if isinstance(entries, dict) and entries:
                return next(iter(entries.values()))
            return None
        if name == "timers":
            return getattr(_runner, "_timers", None)
        if name.startswith("cls:"):
            return self.classes.get(name[4:])
        return None


def _peek(obj, name):
    # the instance's own value, past any descriptor an op put on the class
    try:
        return object.__getattribute__(obj, "__dict__").get(name)
    except Exception:  # noqa: BLE001 - no __dict__, or a hostile one
        return None


# ---------------------------------------------------------- hostile values

class RaisingLen:
    def __len__(self):
        raise Boom("__len__")


class LyingLen:
    def __len__(self):
        return 1 << 40

    def __getitem__(self, item):
        if isinstance(item, int) and item > 2:
            raise IndexError(item)  # a finite sequence: `in` and iter() end
        return b"x"


class NegativeLen:
    def __len__(self):
        return -1


class RaisingIndex:
    def __index__(self):
        raise Boom("__index__")

    __int__ = __float__ = __index__


class LyingIndex:
    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    __int__ = __index__


class RaisingEq:
    __hash__ = object.__hash__

    def __eq__(self, other):
        raise Boom("__eq__")

    __ne__ = __lt__ = __gt__ = __le__ = __ge__ = __eq__


class RaisingBool:
    def __bool__(self):
        raise Boom("__bool__")


class FlakyBool:
    """True, False, True...: a different answer at every look."""

    def __init__(self):
        self.n = 0

    def __bool__(self):
        self.n += 1
        return bool(self.n % 2)

    def __len__(self):
        return self.n % 3


class LiarInt(int):
    """An int whose comparisons always say False (its value is real)."""

    def _no(self, other):
        return False

    __lt__ = __gt__ = __le__ = __ge__ = __eq__ = __ne__ = _no
    __hash__ = int.__hash__


class YesInt(int):
    """An int whose comparisons always say True."""

    def _yes(self, other):
        return True

    __lt__ = __gt__ = __le__ = __ge__ = __eq__ = __ne__ = _yes
    __hash__ = int.__hash__


class LyingBytes(bytes):
    def __len__(self):
        return 1 << 40


class LyingBytearray(bytearray):
    def __len__(self):
        return 7


class StrSub(str):
    pass


class BytesSub(bytes):
    pass


class Mutating:
    """Runs a mutation of the channel from inside a dunder, then answers."""

    def __init__(self, ctx, mutation):
        self.ctx = ctx
        self.mutation = mutation

    def _mut(self):
        mutate(self.ctx, self.mutation)

    def __bool__(self):
        self._mut()
        return True

    def __len__(self):
        self._mut()
        return 1

    def __index__(self):
        self._mut()
        return 3

    def __eq__(self, other):
        self._mut()
        return False

    __hash__ = object.__hash__

    def __getitem__(self, item):
        if isinstance(item, int) and item > 2:
            raise IndexError(item)
        self._mut()
        return b"m"

    def more(self):
        self._mut()
        return b"m"


class Producer:
    def __init__(self, ctx, kind):
        self.ctx, self.kind, self.calls = ctx, kind, 0

    def more(self):
        self.calls += 1
        if self.calls > 3:
            return b""
        kind = self.kind
        if kind == "raise":
            raise Boom("more")
        if kind == "str":
            return "text"
        if kind == "int":
            return 5
        if kind == "lying":
            return LyingBytes(b"ly")
        if kind == "flaky":
            return FlakyBool()
        if kind.startswith("mut:"):
            mutate(self.ctx, kind[4:])
            return b"p"
        return b"chunk"


def _fn(ctx, kind):
    def hostile(*args, **kwargs):
        if ctx.depth > 3:
            return None
        ctx.depth += 1
        try:
            if kind == "raise":
                raise Boom("callable")
            if kind == "none":
                return None
            if kind == "bytes":
                return b"r\n"
            if kind == "str":
                return "s"
            if kind == "huge":
                return 10 ** 30
            if kind == "neg":
                return -1
            if kind == "close":
                ctx.chat.close()
                return None
            if kind.startswith("mut:"):
                mutate(ctx, kind[4:])
                return None
            return object()
        finally:
            ctx.depth -= 1
    return hostile


def _inbuf(*args):
    cls = getattr(CHAT, "InputState", None)
    return None if cls is None else cls(*args)


def _inbuf_subclass():
    """A Python subclass of the state class whose methods lie."""
    base = getattr(CHAT, "InputState", None)
    if base is None:
        return None
    try:
        class LyingInputState(base):
            def value(self):
                return "not bytes"

            def assign(self, value):
                pass  # keeps the old data: the kernel must not loop forever

            def discard(self):
                raise Boom("discard")
    except TypeError:  # a final class
        return None
    return LyingInputState(b"lie\n")


def _inbuf_with_terminator():
    inbuf = _inbuf(b"")
    if inbuf is not None:
        inbuf.terminator = b"\n"
    return inbuf


def _new_of(modname, clsname):
    cls = getattr(MODULES[modname], clsname, None)
    return None if cls is None else cls.__new__(cls)


def _closed_sock(ctx):
    s = socket.socket()
    s.close()
    return s


def _entry(ctx):
    cls = getattr(LOOP, "Entry", None)
    return None if cls is None else cls(ctx.fds()[0], ctx.chat)


# mutations run from callbacks and dunders: "attr=value" on the channel,
# "inbuf.attr=value" on its input state, "loop.attr[fd]=value" on the
# loop, "call:method"
MUTATIONS = [
    "_ac_in=none", "_ac_in=object", "_ac_in=fresh_inbuf", "_ac_in=del", "_ac_in=live_sock",
    "terminator=b_nl", "terminator=two", "terminator=liar_int", "terminator=none",
    "terminator=del", "terminator=str_abc",
    "producer_fifo=list_empty", "producer_fifo=none", "producer_fifo=deque_mixed",
    "socket=none", "socket=live_inbuf", "connected=false", "incoming=none",
    "ac_in_buffer=ba_data", "ac_in_buffer=str_abc", "ac_out_buffer_size=neg1",
    "ac_out_buffer_size=min64", "ac_in_buffer_size=zero", "ac_max_frame_size=zero",
    "ac_out_high_water=zero", "_fileno=none", "_map=none", "__class__=cls_disp",
    "inbuf.pos=maxsize", "inbuf.pos=neg1", "inbuf.data=str_abc", "inbuf.data=none",
    "inbuf.frame=min64", "inbuf.terminator=liar_int",
    "out.batching=true", "out.batch_ok=maxsize", "out.sock=none", "out.sock=live_inbuf",
    "loop.polled[fd]=none", "loop.always[fd]=none", "loop.entries[fd]=none", "loop.dirty=none",
    "call:close", "call:discard_buffers", "call:handle_read", "call:handle_write",
    "call:push", "call:close_when_done", "call:initiate_send", "call:handle_close",
]

_PAYLOADS = [b"abc\n", b"\r\n", b"hello world\r\n.\r\n", b"x" * 5000, b"ab" * 40,
             b"\x00\n\x00", b"12\n345\n6789\n", b""]


def _values():
    v = {
        "none": lambda c: None, "true": lambda c: True, "false": lambda c: False,
        "zero": lambda c: 0, "one": lambda c: 1, "two": lambda c: 2, "neg1": lambda c: -1,
        "min64": lambda c: -2 ** 63, "maxsize": lambda c: sys.maxsize,
        "big40": lambda c: 2 ** 40, "big64": lambda c: 2 ** 64, "huge": lambda c: 10 ** 30,
        "half": lambda c: 0.5, "nan": lambda c: math.nan, "inf": lambda c: math.inf,
        "ninf": lambda c: -math.inf,
        "str_empty": lambda c: "", "str_nl": lambda c: "\n", "str_abc": lambda c: "abc",
        "b_empty": lambda c: b"", "b_nl": lambda c: b"\n", "b_crlf": lambda c: b"\r\n",
        "b_ab": lambda c: b"ab", "b_long": lambda c: b"x" * 70000,
        "ba_nl": lambda c: bytearray(b"\n"), "ba_data": lambda c: bytearray(b"abc\ndef"),
        "mv_nl": lambda c: memoryview(b"\n"), "mv_ba": lambda c: memoryview(bytearray(b"xy\n")),
        "list_empty": lambda c: [], "list_b": lambda c: [b"x", b"y"],
        "list_none": lambda c: [None], "deque_empty": lambda c: deque(),
        "deque_b": lambda c: deque([b"q", b"r"]),
        "deque_mixed": lambda c: deque([b"a", None, 5, "s", memoryview(b"m"), bytearray(b"n")]),
        "dict_empty": lambda c: {}, "tuple": lambda c: (1, 2), "set": lambda c: set(),
        "dict_fd_none": lambda c: {fd: None for fd in c.fds()},
        "dict_fd_obj": lambda c: {fd: object() for fd in c.fds()},
        "dict_fd_chat": lambda c: {fd: c.chat for fd in c.fds()},
        "dict_disp_vars": lambda c: dict(vars(c.disp)),
        "object": lambda c: object(), "type": lambda c: type, "exc": lambda c: Boom("value"),
        "raise_len": lambda c: RaisingLen(), "lie_len": lambda c: LyingLen(),
        "neg_len": lambda c: NegativeLen(), "raise_index": lambda c: RaisingIndex(),
        "lie_index_neg": lambda c: LyingIndex(-1), "lie_index_big": lambda c: LyingIndex(2 ** 62),
        "raise_eq": lambda c: RaisingEq(), "raise_bool": lambda c: RaisingBool(),
        "flaky_bool": lambda c: FlakyBool(),
        "liar_int": lambda c: LiarInt(5), "liar_int_neg": lambda c: LiarInt(-3),
        "liar_int_big": lambda c: LiarInt(1 << 20), "yes_int": lambda c: YesInt(4),
        "lying_bytes": lambda c: LyingBytes(b"lb\n"),
        "lying_bytearray": lambda c: LyingBytearray(b"lying\n"),
        "str_sub": lambda c: StrSub("ss\n"), "bytes_sub": lambda c: BytesSub(b"bs\n"),
        "fresh_inbuf": lambda c: _inbuf(b""), "inbuf_none": lambda c: _inbuf(None),
        "inbuf_str": lambda c: _inbuf("str\n"), "inbuf_ba": lambda c: _inbuf(bytearray(b"i\n")),
        "inbuf_new": lambda c: _new_of("chat", "InputState"),
        "inbuf_term": lambda c: _inbuf_with_terminator(),
        "inbuf_sub": lambda c: _inbuf_subclass(),
        "slot": lambda c: getattr(CHAT, "terminator_slot", None),
        "unset": lambda c: getattr(CHAT, "UNSET", None),
        "live_chat": lambda c: c.chat, "live_disp": lambda c: c.disp,
        "live_listener": lambda c: c.listener,
        "live_accepted": lambda c: c.accepted[0] if c.accepted else c.chat,
        "live_inbuf": lambda c: _peek(c.chat, "_ac_in"),
        "live_sock": lambda c: c.sock, "live_peer": lambda c: c.peer,
        "closed_sock": _closed_sock, "live_fifo": lambda c: _peek(c.chat, "producer_fifo"),
        "live_map": lambda c: c.map, "live_loop": lambda c: c.loop(),
        "live_timers": lambda c: getattr(_runner, "_timers", None),
        "fresh_entry": _entry, "entry_new": lambda c: _new_of("loop", "Entry"),
        "loop_new": lambda c: _new_of("loop", "Loop"),
        "timerq_new": lambda c: _new_of("loop", "TimerQueue"),
        "cls_disp": lambda c: c.classes["Disp"], "cls_chat": lambda c: c.classes["Chat"],
        "cls_listener": lambda c: c.classes["Listener"],
        "cls_async_chat": lambda c: asynchat.async_chat,
        "cls_dispatcher": lambda c: asyncore.dispatcher,
    }
    for kind in ("raise", "none", "bytes", "str", "huge", "neg", "close", "other"):
        v["fn_" + kind] = (lambda k: lambda c: _fn(c, k))(kind)
    for kind in ("raise", "str", "int", "lying", "flaky", "plain"):
        v["producer_" + kind] = (lambda k: lambda c: Producer(c, k))(kind)
    for m in MUTATIONS:
        v["mut:" + m] = (lambda mm: lambda c: Mutating(c, mm))(m)
        v["fn_mut:" + m] = (lambda mm: lambda c: _fn(c, "mut:" + mm))(m)
        v["producer_mut:" + m] = (lambda mm: lambda c: Producer(c, "mut:" + mm))(m)
    return v


VALUES = _values()
VALUE_NAMES = sorted(VALUES)
# drawn twice as often as the rest: the values that break assumptions most
CORE_VALUES = ["none", "none", "object", "inbuf_term", "zero", "neg1", "maxsize", "big64", "nan", "b_nl", "str_abc",
               "ba_data", "fresh_inbuf", "inbuf_new", "inbuf_sub", "live_inbuf", "live_sock", "live_chat",
               "entry_new", "liar_int", "liar_int_big", "list_empty", "deque_mixed",
               "raise_bool", "flaky_bool", "fn_raise", "fn_close", "dict_fd_none"]
# what "sweep" passes as every argument: None and objects of the wrong kind
SWEEP_VALUES = ["none", "none", "object", "zero", "neg1", "str_abc", "live_chat",
                "live_inbuf", "live_sock", "entry_new", "inbuf_new", "loop_new",
                "timerq_new", "fresh_entry"]
# values that make a blocking call return at once (or fail): for timeouts
PROMPT_VALUES = ["zero", "half", "nan", "str_abc", "object", "none", "neg1", "maxsize"]


def value(ctx, name):
    factory = VALUES.get(name)
    if factory is None:
        raise LookupError(name)
    result = factory(ctx)
    if isinstance(result, (bytes, bytearray, str, memoryview)):
        ctx.value_bytes += len(result)
    return result


def mutate(ctx, mutation):
    if ctx.depth > 3:
        return
    ctx.depth += 1
    try:
        chat = ctx.chat
        if mutation.startswith("call:"):
            meth = getattr(chat, mutation[5:])
            meth(b"mut\n") if mutation == "call:push" else meth()
            return
        lhs, _, rhs = mutation.partition("=")
        obj = chat
        if lhs.startswith("inbuf."):
            obj, lhs = _peek(chat, "_ac_in"), lhs[6:]
        elif lhs.startswith("out."):
            obj, lhs = _peek(chat, "_ac_out"), lhs[4:]
        elif lhs.startswith("loop."):
            obj, lhs = ctx.loop(), lhs[5:]
            if obj is None:
                return
        if lhs.endswith("[fd]"):
            container = getattr(obj, lhs[:-4])
            container[ctx.fds()[0]] = value(ctx, rhs)
        elif rhs == "del":
            delattr(obj, lhs)
        else:
            setattr(obj, lhs, value(ctx, rhs))
    finally:
        ctx.depth -= 1


# ------------------------------------------------------------- discovery

_ATTR_RE = re.compile(r"\b(?:self|chan|obj|channel|inbuf|state|entry|watch)\.([A-Za-z_]\w*)")
# the attributes the brief names, whatever the sources say today
_BASE_ATTRS = [
    "_ac_in", "terminator", "ac_in_buffer", "producer_fifo", "incoming", "socket", "_fileno",
    "_map", "connected", "accepting", "connecting", "ac_in_buffer_size", "ac_out_buffer_size",
    "ac_max_frame_size", "ac_out_high_water", "ac_out_low_water", "_ac_out_queued",
    "_ac_reading_paused", "ac_coalesce_pushes", "use_encoding", "encoding", "addr",
    "__class__", "__dict__", "max_connections", "_idle_watch",
]
# the channel state the kernels read without a method call in between
_HOT_ATTRS = ["_ac_in", "terminator", "ac_in_buffer", "producer_fifo", "socket", "_fileno",
              "connected", "ac_in_buffer_size", "ac_out_buffer_size", "incoming"]
_OK_DUNDERS = {"__get__", "__set__", "__delete__", "__init__", "__lt__", "__repr__",
               "__reduce_cython__", "__setstate_cython__", "__reduce__", "__setstate__"}
# called with prompt timeouts (they block for as long as they are told to)
_BLOCKING = {"run", "run_once", "poll", "_idle_wait"}


def _kernel_sources():
    texts = []
    for mod in (CHAT, LOOP, asynchat, asyncore):
        try:
            texts.append(inspect.getsource(mod))
        except (OSError, TypeError):
            pass
    for name in ("_chat_py", "_loop_py"):
        try:
            texts.append(inspect.getsource(__import__("asynchat_core." + name, fromlist=["x"])))
        except (ImportError, OSError, TypeError):
            pass
    for root in (HERE.parent / "src" / "asynchat_core", Path(asynchat_core.__file__).parent):
        for pyx in sorted(root.glob("*.pyx")):
            texts.append(pyx.read_text(encoding="utf-8", errors="replace"))
    return texts


def _module_names(mod):
    """Callables and instances a kernel module defines (private ones too:
    Python code can reach them), plus Cython's unpickle helpers."""
    out = {}
    for name in dir(mod):
        if name.startswith("__") and not name.startswith("__pyx_unpickle"):
            continue
        obj = getattr(mod, name)
        if inspect.ismodule(obj):
            continue
        if callable(obj) and getattr(obj, "__module__", None) == mod.__name__:
            out[name] = obj
        elif getattr(type(obj), "__module__", None) == mod.__name__:
            out[name] = obj
        elif name.startswith("__pyx_unpickle"):
            out[name] = obj
    return out


def _class_methods(cls):
    names = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, attr in vars(klass).items():
            if name.startswith("__") and name not in _OK_DUNDERS:
                continue
            if callable(attr):
                names.add(name)
    return sorted(names)


def discover():
    """Names the ops draw from, found by introspection (sorted: the same
    draws give the same ops in every run)."""
    attrs = set(_BASE_ATTRS)
    for text in _kernel_sources():
        attrs.update(_ATTR_RE.findall(text))
    fields = {}
    ctx = build()
    try:
        for obj in (ctx.chat, ctx.disp, ctx.listener):
            attrs.update(vars(obj))
        ctx.peer.send(b"x\n")
        asyncore.set_idle_timeout(ctx.chat, 60)
        asyncore.loop(timeout=0, count=1, map=ctx.map)  # so the map has its Loop
        for target in ("inbuf", "loop", "entry", "timers"):
            obj = ctx.target(target)
            if obj is not None:
                # the state fields of the kernel object (not its methods)
                fields[target] = sorted(n for n in dir(obj) if not n.startswith("__")
                                        and not callable(getattr(type(obj), n, None)))
                attrs.update(fields[target])
    finally:
        teardown(ctx)
    functions, classes, instances = [], [], []
    methods = {}
    for modkey, mod in sorted(MODULES.items()):
        for name, obj in sorted(_module_names(mod).items()):
            if inspect.isclass(obj):
                classes.append([modkey, name])
                methods["%s.%s" % (modkey, name)] = _class_methods(obj)
            elif callable(obj):
                functions.append([modkey, name])
            else:
                instances.append([modkey, name])
                methods["%s.%s" % (modkey, name)] = _class_methods(type(obj))
    chan_methods = set()
    for cls in (asynchat.async_chat, asyncore.dispatcher):
        chan_methods.update(n for n, a in vars(cls).items()
                            if callable(a) and not n.startswith("__"))
    chan_methods.update(["set_terminator", "get_terminator", "push", "initiate_send", "send",
                         "recv", "readable", "writable", "handle_read", "handle_write",
                         "collect_incoming_data", "found_terminator", "handle_close",
                         "handle_error", "handle_accepted"])
    return {
        "attrs": sorted(a for a in attrs if not (a.startswith("__") and a not in _BASE_ATTRS)),
        "functions": functions,
        "classes": classes,
        "instances": instances,
        "methods": methods,
        "chan_methods": sorted(chan_methods),
        "fields": fields,
    }


# ------------------------------------------------------------ the example

def _classes(ctx):
    class Chat(asynchat.async_chat):
        def collect_incoming_data(self, data):
            ctx.collected += 1
            try:
                size = len(data)
            except Exception:  # noqa: BLE001 - whatever a hostile buffer holds
                return
            # every byte handed over came from the peer or from a value an
            # op assigned: more than that is memory the kernel over-read
            if size > ctx.peer_sent + ctx.value_bytes + 1024 and not ctx.concurrent:
                ctx.findings.append({
                    "op": ctx.op_index, "where": "collect_incoming_data",
                    "error": "SystemError-class bug: %d bytes delivered, only %d sent and "
                             "%d assigned" % (size, ctx.peer_sent, ctx.value_bytes)})

        def found_terminator(self):
            pass

        def handle_error(self):
            _record(ctx, sys.exc_info()[1], "handle_error")
            try:
                self.close()
            except Exception as exc:  # noqa: BLE001 - hostile state: anything
                _record(ctx, exc, "handle_error close")

        def log_info(self, message, type="info"):
            pass

    class Disp(asyncore.dispatcher):
        handle_error = Chat.handle_error
        log_info = Chat.log_info

        def handle_read(self):
            self.recv(512)

        def handle_write(self):
            pass

    class Listener(asyncore.dispatcher):
        handle_error = Chat.handle_error
        log_info = Chat.log_info

        def handle_accepted(self, sock, addr):
            ctx.socks.append(sock)
            if len(ctx.accepted) < 3:
                chan = Chat(sock, map=ctx.map)
                chan.set_terminator(b"\n")
                ctx.accepted.append(chan)

    return {"Chat": Chat, "Disp": Disp, "Listener": Listener}


def build():
    ctx = Ctx()
    ctx.classes = _classes(ctx)
    ctx.sock, ctx.peer = socket.socketpair()
    ctx.dsock, ctx.dpeer = socket.socketpair()
    ctx.socks += [ctx.sock, ctx.peer, ctx.dsock, ctx.dpeer]
    ctx.peer.setblocking(False)
    ctx.dpeer.setblocking(False)
    ctx.chat = ctx.classes["Chat"](ctx.sock, map=ctx.map)
    ctx.chat.set_terminator(b"\n")
    ctx.disp = ctx.classes["Disp"](ctx.dsock, map=ctx.map)
    ctx.listener = ctx.classes["Listener"](map=ctx.map)
    ctx.listener.create_socket()
    ctx.socks.append(ctx.listener.socket)
    ctx.listener.bind(("127.0.0.1", 0))
    ctx.listener.listen(8)
    ctx.listen_addr = ctx.listener.socket.getsockname()
    return ctx


def teardown(ctx):
    """Close everything the example opened, whatever state it was left in."""
    for m in (ctx.map, asyncore.socket_map):
        _arm(True)  # hostile state may make close() slow, never endless
        try:
            asyncore.close_all(m, ignore_all=True)
        except Exception:  # noqa: BLE001
            pass
        finally:
            _arm(False)
    discard = getattr(_runner, "discard_loop", None)
    loops = getattr(_runner, "_loops", None)
    try:
        if discard is not None:
            discard(ctx.map)
        if isinstance(loops, dict):
            lp = loops.pop(id(ctx.map), None)
            if lp is not None:
                lp.close()
    except Exception:  # noqa: BLE001
        pass
    ctx.map.clear()
    for s in ctx.socks:
        try:
            s.close()
        except Exception:  # noqa: BLE001
            pass
    _restore_globals()


def _restore_globals():
    # module-wide state the ops may have changed through kernel calls
    hook = getattr(asyncore, "_loop_touch", None)
    for name, arg in (("set_loop_hook", hook), ("set_dispatcher_class", asyncore.dispatcher)):
        fn = getattr(CHAT, name, None)
        if fn is not None and arg is not None:
            fn(arg)
    timers = getattr(_runner, "_timers", None)
    if timers is not None:
        for name, val in (("heap", []), ("live", 0)):
            try:
                setattr(timers, name, val)
            except Exception:  # noqa: BLE001
                pass


def _record(ctx, exc, where):
    if exc is None:
        return
    ctx.exc_counts[type(exc).__name__] += 1
    if isinstance(exc, SystemError):
        ctx.findings.append({
            "op": ctx.op_index, "where": where,
            "error": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        })


# ------------------------------------------------------------------ ops

def _call_args(ctx, names):
    return [value(ctx, n) for n in names]


def _kernel_instance(ctx, modkey, clsname, source):
    mod = MODULES[modkey]
    cls = getattr(mod, clsname, None)
    if cls is None:
        return None
    if not inspect.isclass(cls):
        return cls  # a module-level instance (terminator_slot, UNSET)
    if source == "new":
        return cls.__new__(cls)
    if source == "live":
        pool = [_peek(ctx.chat, "_ac_in"), ctx.loop(), getattr(_runner, "_timers", None),
                getattr(ctx.loop(), "poller", None), getattr(CHAT, "terminator_slot", None)]
        lp = ctx.loop()
        if lp is not None and isinstance(getattr(lp, "entries", None), dict):
            pool.extend(lp.entries.values())
        pool.extend(_peek(a, "_ac_in") for a in ctx.accepted)
        for obj in pool:
            if isinstance(obj, cls):
                return obj
        return cls.__new__(cls)
    # "fresh": constructed with sensible arguments
    fresh = {
        "Loop": lambda: cls(ctx.map, "poll", getattr(_runner, "_timers", None), (), (),
                            (SystemExit,), ()),
        "Entry": lambda: cls(ctx.fds()[0], ctx.chat),
        "TimerHandle": lambda: cls(0.0, 1, _fn(ctx, "none"), (), True, None),
        "IdleWatch": lambda: cls(ctx.chat, 1.0, None, 0.0),
        "FrameTooLarge": lambda: cls(1, 0),
    }
    return fresh.get(clsname, cls)()


def _event(ctx, kind, arg):
    chat = ctx.chat
    if kind == "peer_send":
        if ctx.peer_open:
            try:
                sent = ctx.peer.send(_PAYLOADS[arg % len(_PAYLOADS)])
                with ctx.count_lock:
                    ctx.peer_sent += sent
            except (BlockingIOError, OSError):
                pass
    elif kind == "peer_recv":
        for s in (ctx.peer, ctx.dpeer):
            try:
                s.recv(1 << 20)
            except (BlockingIOError, OSError):
                pass
    elif kind == "peer_shutdown":
        try:
            ctx.peer.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    elif kind == "peer_close":
        ctx.peer.close()
        ctx.peer_open = False
    elif kind == "dpeer_send":
        try:
            ctx.dpeer.send(_PAYLOADS[arg % len(_PAYLOADS)])
        except OSError:
            pass
    elif kind == "connect":
        c = socket.socket()
        ctx.socks.append(c)
        c.setblocking(False)
        try:
            c.connect(ctx.listen_addr)
        except (BlockingIOError, OSError):
            pass
    elif kind == "loop":
        backends = [None, "epoll", "poll", "select", "legacy"]
        asyncore.loop(timeout=0, count=1, map=ctx.map, backend=backends[arg % len(backends)])
    elif kind == "poll":
        asyncore.poll(0.0, ctx.map)
    elif kind == "poll2":
        asyncore.poll2(0.0, ctx.map)
    elif kind == "readwrite":
        asyncore.readwrite(chat, [1, 4, 8, 16, 32, 0xFFFF][arg % 6])
    elif kind == "push":
        chat.push(_PAYLOADS[arg % len(_PAYLOADS)] or b"p")
    elif kind == "set_term":
        chat.set_terminator([b"\n", b"\r\n", 3, None, b"", 0, b"\r\n.\r\n"][arg % 7])
    elif kind == "idle":
        asyncore.set_idle_timeout(chat, [0.0, 0.001, None][arg % 3])
    elif kind == "call_later":
        asyncore.call_later(0, _fn(ctx, "mut:" + MUTATIONS[arg % len(MUTATIONS)]))
    elif kind == "gc":
        gc.collect()
    else:
        obj_name, _, meth = kind.partition(".")
        obj = {"chat": chat, "disp": ctx.disp, "listener": ctx.listener,
               "accepted": ctx.target("accepted")}[obj_name]
        if meth == "push_with_producer":
            obj.push_with_producer(Producer(ctx, ["plain", "raise", "str", "lying"][arg % 4]))
        elif meth in ("recv", "send"):
            getattr(obj, meth)(b"d\n" if meth == "send" else 100)
        else:
            getattr(obj, meth)()


EVENT_KINDS = [
    "peer_send", "peer_send", "peer_send", "peer_recv", "peer_shutdown", "peer_close",
    "dpeer_send", "connect", "loop", "loop", "loop", "poll", "poll2", "readwrite",
    "push", "push", "set_term", "idle", "call_later", "gc",
    "chat.handle_read", "chat.handle_read", "chat.handle_write", "chat.handle_read_event",
    "chat.handle_write_event", "chat.handle_expt_event", "chat.initiate_send", "chat.close",
    "chat.discard_buffers", "chat.close_when_done", "chat.push_with_producer",
    "chat.get_terminator", "chat._get_data", "chat.readable", "chat.writable",
    "chat.__repr__", "chat.handle_close", "accepted.handle_read", "accepted.push_with_producer",
    "disp.handle_read_event", "disp.handle_write_event", "disp.send", "disp.recv", "disp.close",
    "listener.handle_accept", "listener.handle_read_event",
]


def _method_replacement(ctx, name, behaviour, original):
    def replacement(self, *args, **kwargs):
        if behaviour == "raise":
            raise Boom(name)
        if behaviour == "none":
            return None
        if behaviour.startswith("ret:"):
            return value(ctx, behaviour[4:])
        if behaviour == "close":
            self.close()
            return None
        if ctx.depth > 3 or original is None:
            return None
        ctx.depth += 1
        try:
            if behaviour.startswith("mut:"):
                mutate(ctx, behaviour[4:])
            return original(self, *args, **kwargs)  # "recurse" and "mut:"
        finally:
            ctx.depth -= 1
    return replacement


BEHAVIOURS = (["raise", "none", "close", "recurse", "ret:b_nl", "ret:str_abc", "ret:huge",
               "ret:neg1", "ret:object", "ret:liar_int", "ret:raise_bool", "ret:flaky_bool"]
              + ["mut:" + m for m in MUTATIONS])


class _Prop:
    """A class-level data descriptor answering ``a``, ``b``, ``a``... (lying
    about an attribute between two reads); set is ignored, del raises."""

    def __init__(self, ctx, a, b):
        self.ctx, self.values, self.n = ctx, (a, b), 0

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        self.n += 1
        return value(self.ctx, self.values[self.n % 2 == 0])

    def __set__(self, obj, val):
        pass

    def __delete__(self, obj):
        raise AttributeError("flip")


def run_op(ctx, op):
    kind = op[0]
    if kind == "set":
        obj = ctx.target(op[1])
        if obj is not None:
            setattr(obj, op[2], value(ctx, op[3]))
    elif kind == "del":
        obj = ctx.target(op[1])
        if obj is not None:
            delattr(obj, op[2])
    elif kind == "swap":
        a, b = ctx.target(op[2]), ctx.target(op[3])
        if a is not None and b is not None:
            va, vb = getattr(a, op[1]), getattr(b, op[1])
            setattr(a, op[1], vb)
            setattr(b, op[1], va)
    elif kind == "setitem":
        obj = ctx.target(op[1])
        if obj is not None:
            container = getattr(obj, op[2])
            key = {"fd": ctx.fds()[0], "0": 0, "-1": -1}.get(op[3], op[3])
            container[key] = value(ctx, op[4])
    elif kind == "cls":
        setattr(ctx.classes[op[1]], op[2], value(ctx, op[3]))
    elif kind == "flip":
        setattr(ctx.classes[op[1]], op[2], _Prop(ctx, op[3], op[4]))
    elif kind == "meth":
        cls = ctx.classes[op[1]]
        original = getattr(cls, op[2], None)
        setattr(cls, op[2], _method_replacement(ctx, op[2], op[3], original))
    elif kind == "kcall":
        fn = getattr(MODULES[op[1]], op[2], None)
        if fn is not None:
            fn(*_call_args(ctx, op[3]))
    elif kind == "kmeth":
        obj = _kernel_instance(ctx, op[1], op[2], op[3])
        if obj is not None:
            meth = getattr(obj, op[4], None)
            if meth is None and op[4] in ("__get__", "__set__", "__delete__"):
                meth = getattr(type(obj), op[4], None)
                meth = meth and meth.__get__(obj, type(obj))
            if meth is not None:
                meth(*_call_args(ctx, op[5]))
    elif kind == "sweep":
        # ["sweep", mod, owner, method or "", value]: owner(...) or
        # owner-instance.method(...) with 0..4 copies of one value
        obj = getattr(MODULES[op[1]], op[2], None)
        if obj is not None and op[3]:
            obj = _kernel_instance(ctx, op[1], op[2], "live")
            obj = getattr(obj, op[3], None)
        if obj is not None:
            # the value at each position in turn, 0 elsewhere (typed C
            # parameters reject most values: the others must get through)
            blocking = op[3] in _BLOCKING or op[2] in _BLOCKING
            calls = [()] + [tuple(j == k for j in range(arity))
                            for arity in range(1, 5) for k in range(arity)]
            for at in calls:
                _arm(True)
                try:
                    obj(*[value(ctx, op[4] if hit and not blocking else "zero") for hit in at])
                except Watchdog:
                    ctx.spins["sweep"] += 1
                except Exception as exc:  # noqa: BLE001
                    _record(ctx, exc, "sweep")
                finally:
                    _arm(False)
    elif kind == "event":
        _event(ctx, op[1], op[2])
    elif kind == "thread":
        _threads(ctx, op[1], op[2])


def _threads(ctx, main_ops, thread_ops):
    """Run two op lists at once, with a tiny switch interval so the
    interpreter changes threads inside the kernels' callbacks."""
    errors = []

    def body():
        for op in thread_ops:
            try:
                run_op(ctx, op)
            except Exception as exc:  # noqa: BLE001 - ordinary outcome
                errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=body, daemon=True)
    ctx.concurrent = True
    t.start()
    try:
        for op in main_ops:
            try:
                run_op(ctx, op)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
    finally:
        _arm(False)  # the watchdog is for the ops, not for this wait
        sys.setswitchinterval(old)
        t.join(10.0)
        ctx.concurrent = t.is_alive()
    for exc in errors:
        _record(ctx, exc, "thread")
    if t.is_alive():
        ctx.findings.append({"op": ctx.op_index, "where": "thread", "error": "thread hung 10 s"})


# ------------------------------------------------------------ the runner

_armed = False


def _alarm(signum, frame):
    if _armed:
        raise Watchdog("op blocked for %.2fs" % WATCHDOG_SECONDS)


def _install_watchdog():
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _alarm)


def _arm(on):
    global _armed
    if not hasattr(signal, "setitimer"):
        return
    _armed = on
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG_SECONDS if on else 0.0)


class _Sink:
    """Replaces sys.stdout/sys.stderr while ops run: the library prints
    tracebacks of swallowed errors; scanning them finds SystemErrors that
    never reached us as exceptions."""

    def __init__(self):
        self.tail = deque(maxlen=40)
        self.system_error = None

    def write(self, text):
        if "SystemError" in text and self.system_error is None:
            self.system_error = "".join(self.tail) + text
        self.tail.append(text)
        return len(text)

    def flush(self):
        pass


_current = {"ctx": None, "unraisable": collections.Counter()}


def run_sequence(ops, sink=None):
    """Run one example; returns its Ctx (findings, exception counts)."""
    ctx = build()
    _current["ctx"] = ctx
    try:
        for i, op in enumerate(ops):
            ctx.op_index = i
            _arm(True)
            try:
                run_op(ctx, op)
            except Watchdog:
                ctx.spins[op[0] if op[0] != "kmeth" else "kmeth " + op[4]] += 1
            except Exception as exc:  # noqa: BLE001 - the ordinary outcome
                _record(ctx, exc, "op")
            finally:
                _arm(False)
            if sink is not None and sink.system_error:
                ctx.findings.append({"op": i, "where": "printed", "error": sink.system_error})
                sink.system_error = None
    finally:
        _arm(False)
        ctx.op_index = -1
        teardown(ctx)
        _current["ctx"] = None
    return ctx


def _unraisable(unraisable):
    # "Exception ignored in ...": a SystemError there is a finding too
    where = unraisable.object
    where = getattr(where, "__qualname__", None) or type(where).__name__
    _current["unraisable"]["%s in %s" % (type(unraisable.exc_value).__name__, where)] += 1
    if isinstance(unraisable.exc_value, SystemError) and _current["ctx"] is not None:
        _record(_current["ctx"], unraisable.exc_value, "unraisable")


# ----------------------------------------------------------- Hypothesis

def strategies(names, max_ops):
    from hypothesis import strategies as st

    core = st.sampled_from(CORE_VALUES)
    value_ = st.one_of(core, core, st.sampled_from(VALUE_NAMES))
    prompt = st.sampled_from(PROMPT_VALUES)
    all_attrs = st.sampled_from(names["attrs"])
    key_attrs = st.sampled_from(_BASE_ATTRS)
    hot_attrs = st.sampled_from(_HOT_ATTRS)
    attr = st.one_of(hot_attrs, key_attrs, key_attrs, all_attrs)
    fields = names.get("fields", {})

    def attr_for(t):
        if fields.get(t):
            return st.one_of(st.sampled_from(fields[t]), st.sampled_from(fields[t]), all_attrs)
        return attr
    target = st.sampled_from(["chat", "chat", "chat", "accepted", "disp", "listener",
                              "inbuf", "inbuf", "loop", "entry", "timers"])
    target_attr = target.flatmap(lambda t: st.tuples(st.just(t), attr_for(t)))
    cls = st.sampled_from(["Chat", "Chat", "Disp", "Listener"])
    args = st.lists(value_, max_size=4)
    chan_first = st.builds(lambda rest: ["live_chat"] + rest, st.lists(value_, max_size=3))
    any_args = st.one_of(args, chan_first)

    kcall = (st.sampled_from(names["functions"])
             .flatmap(lambda f: st.tuples(st.just("kcall"), st.just(f[0]), st.just(f[1]),
                                          any_args)))

    def kmeth_for(owner):
        modkey, clsname = owner
        meths = names["methods"].get("%s.%s" % (modkey, clsname)) or ["__repr__"]

        def with_args(m):
            a = st.lists(prompt, max_size=3) if m in _BLOCKING else any_args
            return st.tuples(st.just("kmeth"), st.just(modkey), st.just(clsname),
                             st.sampled_from(["live", "live", "new", "fresh"]), st.just(m), a)
        return st.sampled_from(meths).flatmap(with_args)

    owners = names["classes"] + names["instances"]
    kmeth = st.sampled_from(owners).flatmap(kmeth_for)

    set_ = st.builds(lambda ta, v: ("set", ta[0], ta[1], v), target_attr, value_)
    del_ = st.builds(lambda ta: ("del", ta[0], ta[1]), target_attr)
    swap = st.tuples(st.just("swap"), attr, target, target)
    setitem = st.tuples(st.just("setitem"), st.sampled_from(["loop", "chat", "timers"]),
                        st.sampled_from(["polled", "always", "entries", "map", "kinds",
                                         "producer_fifo", "incoming", "heap", "_map"]),
                        st.sampled_from(["fd", "0", "-1"]), value_)
    callables = ([[m, n, ""] for m, n in names["functions"] + names["classes"]]
                 + [[m, n, meth] for m, n in names["classes"] + names["instances"]
                    for meth in names["methods"].get("%s.%s" % (m, n), ())])
    sweep = st.builds(lambda c, v: ("sweep", c[0], c[1], c[2], v),
                      st.sampled_from(callables), st.sampled_from(SWEEP_VALUES))
    cls_set = st.tuples(st.just("cls"), cls, attr, value_)
    flip = st.tuples(st.just("flip"), cls, attr, value_, value_)
    meth = st.tuples(st.just("meth"), cls, st.sampled_from(names["chan_methods"]),
                     st.sampled_from(BEHAVIOURS))
    event = st.tuples(st.just("event"), st.sampled_from(EVENT_KINDS), st.integers(0, 30))
    thread_op = st.one_of(set_, del_, meth, st.tuples(
        st.just("event"),
        st.sampled_from(["push", "chat.handle_write", "chat.handle_read", "chat.initiate_send",
                         "chat.discard_buffers", "chat.close", "peer_send", "peer_recv",
                         "chat.push_with_producer", "set_term"]),
        st.integers(0, 30)))
    thread = st.tuples(st.just("thread"), st.lists(thread_op, max_size=6),
                       st.lists(thread_op, max_size=6))
    op = st.one_of(event, event, event, event, set_, set_, set_, del_, swap, setitem,
                   cls_set, flip, meth, meth, kcall, kmeth, kmeth, sweep, thread)
    return st.lists(op.map(list), min_size=min(8, max_ops), max_size=max_ops)


ROUND = 100  # examples per Hypothesis run; the budget is checked between runs


def cmd_fuzz(args):
    """Hypothesis runs of ROUND examples, seeds ``seed``, ``seed + 1``...,
    until ``--examples`` ran or ``--budget`` seconds passed.  (One long run
    cannot stop on time: examples skipped inside it still cost their
    generation.)  Each run is reproducible from its seed alone."""
    from hypothesis import HealthCheck, given, seed, settings

    names = discover()
    # --exclude REGEX (repeatable): drop ops whose JSON matches, to look
    # past a crash already known (triage only; the tests never pass it)
    excluded = [re.compile(x) for x in args.exclude]
    started = time.monotonic()
    deadline = started + args.budget
    stats = {"examples": 0, "rounds": 0, "ops": 0, "exceptions": collections.Counter(),
             "spins": collections.Counter()}
    sys.unraisablehook = _unraisable
    sink = _Sink()
    real_out, real_err = sys.stdout, sys.stderr
    sequences = strategies(names, args.max_ops)

    def example(ops):
        if excluded:
            ops = [op for op in ops if not any(x.search(json.dumps(op)) for x in excluded)]
        with open(args.state, "w") as fh:
            json.dump(ops, fh)
        sys.stdout = sys.stderr = sink
        try:
            ctx = run_sequence(ops, sink)
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        stats["examples"] += 1
        stats["ops"] += len(ops)
        stats["exceptions"].update(ctx.exc_counts)
        stats["spins"].update(ctx.spins)
        if stats["examples"] % 50 == 0:
            gc.collect()
        assert not ctx.findings, "SystemError in op %d (%r):\n%s" % (
            ctx.findings[0]["op"], ops[ctx.findings[0]["op"]], ctx.findings[0]["error"])

    rc = 0
    while stats["examples"] < args.examples and time.monotonic() < deadline:
        round_seed = args.seed * 1000003 + stats["rounds"]  # disjoint for nearby seeds
        stats["rounds"] += 1
        run = seed(round_seed)(settings(
            max_examples=min(ROUND, args.examples - stats["examples"]), deadline=None,
            database=None, derandomize=False, suppress_health_check=list(HealthCheck),
            print_blob=True)(given(sequences)(example)))
        try:
            run()
        except AssertionError as exc:
            print("FINDING (round seed %d): %s" % (round_seed, exc), file=sys.stderr)
            rc = 3
            break
    summary = {
        "implementation": asynchat_core.IMPLEMENTATION,
        "seed": args.seed,
        "rounds": stats["rounds"],
        "examples": stats["examples"],
        "ops": stats["ops"],
        "seconds": round(time.monotonic() - started, 2),
        "exceptions": dict(stats["exceptions"].most_common(12)),
        "watchdog": dict(stats["spins"]),
        "unraisable": dict(_current["unraisable"].most_common(8)),
        "names": {k: len(v) for k, v in names.items()},
    }
    print("SUMMARY " + json.dumps(summary, sort_keys=True))
    return rc


def cmd_replay(args):
    with open(args.file) as fh:
        ops = json.load(fh)
    sink = _Sink()
    sys.unraisablehook = _unraisable
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    try:
        ctx = run_sequence(ops, sink)
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    if ctx.findings:
        print("FINDING: %s" % ctx.findings[0]["error"], file=sys.stderr)
        return 3
    print("REPLAY OK %d ops; exceptions %s" % (len(ops), dict(ctx.exc_counts)))
    return 0


def cmd_names(args):
    names = discover()
    names["implementation"] = asynchat_core.IMPLEMENTATION
    names["values"] = len(VALUE_NAMES)
    print(json.dumps(names, sort_keys=True))
    return 0


def check_mutations():
    """Every state field a mutation sets exists: a renamed field would make
    the mutation an AttributeError that the callbacks swallow, and the
    state it targets would silently never be reached (issue 23)."""
    states = {"inbuf.": CHAT.InputState, "out.": CHAT.OutputState}
    for mutation in MUTATIONS:
        for prefix, cls in states.items():
            if mutation.startswith(prefix):
                field = mutation[len(prefix):].partition("=")[0]
                if not hasattr(cls, field) and field not in getattr(cls, "__slots__", ()):
                    raise SystemExit("hostile_python_driver: %s has no field %r (mutation %r)"
                                     % (cls.__name__, field, mutation))


def main(argv=None):
    check_mutations()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fuzz")
    p.add_argument("--examples", type=int, default=200)
    p.add_argument("--budget", type=float, default=15.0, help="seconds; later examples skip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-ops", type=int, default=40)
    p.add_argument("--state", required=True, help="file holding the running example's ops")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                   help="skip ops whose JSON matches (triage of further crashes)")
    p = sub.add_parser("replay")
    p.add_argument("file")
    sub.add_parser("names")
    args = parser.parse_args(argv)
    faulthandler.enable(file=sys.__stderr__, all_threads=True)
    _install_watchdog()
    return {"fuzz": cmd_fuzz, "replay": cmd_replay, "names": cmd_names}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
