"""What runs the socket maps: one persistent ``Loop`` per map, the shared
timers (``call_later``) and idle timeouts (``set_idle_timeout``).

``asyncore.loop()`` asks ``get_loop()`` for its map's ``Loop``, whose
interest stays registered in the OS kernel (epoll/kqueue) and changes only
when it changes; ``asyncore`` re-exports the public names.  This module
knows nothing of ``asyncore`` or ``asynchat``: they tell it what it needs,
``asyncore`` the exceptions that leave the loop (``reraised``), both the
library's own ``readable``/``writable`` methods (``register_predicates``).
"""

import os
import time

# _thread, not threading: the same locks (import time, issue 18)
import _thread

from ._impl import loop_impl as _loop_impl

# typing is for the type checker only (import time, issue 18; mypy treats
# any name TYPE_CHECKING as true)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["call_later", "set_idle_timeout", "available_backends"]

#: exceptions a handler or timer raises through the loop instead of having
#: them reported; asyncore sets it to (ExitNow, KeyboardInterrupt, SystemExit)
reraised = (KeyboardInterrupt, SystemExit)

_timers = _loop_impl.TimerQueue()
_loops: "dict[int, Any]" = {}  # id(map) -> Loop; bounded, oldest idle one dropped first
_MAX_LOOPS = 8
# The library's own readable()/writable() functions: a channel whose class
# uses them is state-driven (the loop asks only after a change, see
# _loop_py.py).  Frozen copies are what new Loops get.
_readable: "set[Any]" = set()
_writable: "set[Any]" = set()
_known_predicates: "tuple[frozenset[Any], frozenset[Any]]" = (frozenset(), frozenset())
# Guards _loops: every thread looping one map must get the same Loop, whose
# lock serialises their passes.  Lock order: _loops_lock, then a Loop's own
# (close() may take its guard, which no thread holds while it waits here:
# a loop being released has no thread inside it).
_loops_lock = _thread.allocate_lock()


def _new_loops_lock():
    global _loops_lock
    _loops_lock = _thread.allocate_lock()  # a forked child: the holder may be gone


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_loops_lock)


def available_backends():
    """Names of the event backends usable here, best first."""
    return _loop_impl.available_backends()


def best_backend():
    """The backend used when none is chosen."""
    return _loop_impl.best_backend()


def register_predicates(readable=(), writable=()):
    """Declare functions as the library's own state-driven ``readable`` /
    ``writable`` methods (each argument: one function or an iterable).

    Loops made from now on skip asking a channel whose class uses one of
    them, except after the channel ran or was touched; the loops that exist
    are released when idle so that the next ``loop()`` knows them too.
    """
    global _known_predicates
    _readable.update((readable,) if callable(readable) else readable)
    _writable.update((writable,) if callable(writable) else writable)
    _known_predicates = (frozenset(_readable), frozenset(_writable))
    release_idle_loops()


def use_impl(module):
    """Take ``Loop``, ``TimerQueue`` and ``IdleWatch`` from the loop module
    ``module`` (``_loop_py`` or ``_loop_c``) from now on; returns the one
    used before.  Pending timers are dropped with the old queue, and the
    loops are released as by ``release_idle_loops``.  For tests and
    benchmarks that compare both builds in one process."""
    global _loop_impl, _timers
    previous = _loop_impl
    _loop_impl = module
    _timers = module.TimerQueue()
    release_idle_loops()
    return previous


def release_idle_loops():
    """Close every loop no thread is inside; one in use goes on (asking
    predicates it does not know every pass) and closes when its last thread
    leaves."""
    with _loops_lock:
        for key in list(_loops):
            if _loops[key].close():
                del _loops[key]


def get_loop(map, backend, use_poll=False):
    """The ``Loop`` of ``map`` with ``backend``, made if needed (shared by
    every thread looping that map); ``use_poll`` picks CPython's poll2()
    hang-up semantics instead of its select() ones."""
    # select() sees no hang-up: on that backend both modes get what it reports
    poll_mode = bool(use_poll) and backend != "select"
    key = id(map)
    with _loops_lock:
        lp = _loops.get(key)
        if lp is not None:
            if not lp.closed and lp.users:
                return lp  # another thread is looping this map: share its Loop
            if (lp.map is map and lp.backend == backend and not lp.closed
                    and lp.poll_mode == poll_mode
                    and type(lp) is _loop_impl.Loop and lp.timers is _timers):
                return lp
            if not lp.close():
                return lp  # a thread entered it meanwhile
            del _loops[key]
        if len(_loops) >= _MAX_LOOPS:
            for old in list(_loops):
                if len(_loops) < _MAX_LOOPS:
                    break
                # a loop in use is kept (and counted); close() rechecks
                if not _loops[old].users and _loops[old].close():
                    del _loops[old]
        readable, writable = _known_predicates
        lp = _loop_impl.Loop(map, backend, _timers, readable, writable,
                             reraised, _loop_impl.DISCONNECTED)
        lp.poll_mode = poll_mode
        _loops[key] = lp
        return lp


def timers_pending():
    """Whether a ``call_later`` timer is pending (it keeps ``loop()`` going)."""
    return _timers.live > 0


def loop_of(map):
    """The ``Loop`` serving ``map``, or None (no loop() ran on it yet)."""
    lp = _loops.get(id(map))
    if lp is not None and lp.map is map:
        return lp
    return None


def loop_note(map, fd):
    """Hook for add_channel: the entry at ``fd`` of ``map`` changed."""
    lp = loop_of(map)
    if lp is not None:
        lp.note(fd)


def loop_forget(map, fd, obj):
    """Hook for del_channel, called while ``obj``'s descriptor is open."""
    lp = loop_of(map)
    if lp is not None:
        lp.forget(fd, obj)
        if len(map) == 1:
            discard_loop(map)  # about to be empty: release the OS kernel object


def discard_loop(map):
    """Release ``map``'s loop: now, or (a thread is inside) when the last
    one leaves; until then it stays here so that new loop() calls share it."""
    with _loops_lock:
        lp = _loops.get(id(map))
        if lp is not None and lp.map is map and lp.close():
            del _loops[id(map)]


def loop_touch(obj):
    """Hook for push()/send(): ``obj``'s writable() may have changed."""
    map = getattr(obj, "_map", None)
    if map is None:
        return
    lp = _loops.get(id(map))  # (loop_of() inlined: every push() comes here)
    if lp is not None and lp.map is map:
        lp.touch(obj._fileno, obj)


def call_later(delay, callback, *args):
    """Run ``callback(*args)`` from ``loop()`` after ``delay`` seconds.

    Returns a handle whose ``cancel()`` drops the call.  Timers are shared
    by every loop() in the process (call this from the loop's thread); a
    pending timer keeps ``loop()`` running even with an empty map.  An
    exception raised by the callback is reported on stderr and the loop
    goes on (ExitNow, KeyboardInterrupt and SystemExit propagate).
    """
    return _timers.call_later(delay, callback, args)


def set_idle_timeout(channel, seconds, callback=None):
    """Call ``callback(channel)`` once ``channel`` saw no traffic for
    ``seconds`` (default callback: ``channel.handle_close()``).

    Traffic is any event the loop delivers to the channel, and any
    ``push``/``send`` on it.  If the callback leaves the channel open it
    fires again after another idle period.  ``seconds=None`` removes the
    timeout.  Idle timeouts do not keep ``loop()`` running by themselves.
    """
    old = getattr(channel, "_idle_watch", None)
    if old is not None and old.handle is not None:
        old.handle.cancel()
    channel._idle_watch = None
    watch = None
    if seconds is not None:
        seconds = float(seconds)
        watch = _loop_impl.IdleWatch(channel, seconds, callback, time.monotonic())
        channel._idle_watch = watch
        watch.handle = _timers.call_at(watch.last + seconds, _idle_check, (watch,), False)
    map = getattr(channel, "_map", None)
    lp = loop_of(map) if map is not None else None
    if lp is not None:
        lp.set_watch(channel._fileno, channel, watch)


def _idle_check(watch):
    channel = watch.channel
    watch.handle = None
    current: Any = getattr(channel, "_idle_watch", None)
    if current is not watch:
        return
    fd = getattr(channel, "_fileno", None)
    map = getattr(channel, "_map", None)
    if fd is None or map is None or map.get(fd) is not channel:
        channel._idle_watch = None  # closed: nothing to watch
        return
    now = time.monotonic()
    due = watch.last + watch.timeout
    if due > now:
        watch.handle = _timers.call_at(due, _idle_check, (watch,), False)
        return
    watch.last = now
    watch.handle = _timers.call_at(now + watch.timeout, _idle_check, (watch,), False)
    try:
        if watch.callback is None:
            channel.handle_close()
        else:
            watch.callback(channel)
    except reraised:
        raise
    except:  # noqa: E722 - the channel's own error path
        channel.handle_error()
