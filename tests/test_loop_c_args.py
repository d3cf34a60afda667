"""The compiled loop called from Python with None or a wrong type where its
C code expects an ``Entry``, a lock or an int: an exception, never a crash.

Each case runs in a child process, so that a regression (a segfault) fails
that case instead of ending the test run; a missing build fails too (the
child's import).  Only the compiled build can crash: the Python build raises
AttributeError on the same calls.
"""

import subprocess
import sys

import pytest

SETUP = """
import sys
from asynchat_core import _loop_c as L
lp = L.Loop({}, "poll", L.TimerQueue(), frozenset(), frozenset(),
            (KeyboardInterrupt,), frozenset())


class BadPoller:
    def poll(self, timeout):
        return [(3, "x")]

    def unregister(self, fd):
        pass

    def close(self):
        pass
"""

# name -> (statement, accepted exception names)
CASES = {
    "set_kernel_none": ("lp._set_kernel(None, 0)", {"TypeError"}),
    "set_kernel_none_mask": ("lp._set_kernel(None, 5)", {"TypeError"}),
    "set_kernel_str": ("lp._set_kernel('x', 0)", {"TypeError"}),
    "interest_none": ("lp._interest(None, 0.0)", {"TypeError"}),
    "close_channel_none": ("lp._close_channel(None)", {"TypeError"}),
    "deliver_none": ("lp._deliver(None, 0, 0.0)", {"TypeError"}),
    "dispatch_none": ("lp._dispatch(None, 1, 0.0)", {"TypeError"}),
    "dispatch_int": ("lp._dispatch(5, 1, 0.0)", {"TypeError"}),
    # values the pass reads as Entry, planted from Python
    "polled_value_none": ("lp.polled[3] = None; lp.run_once(0)", {"TypeError"}),
    "always_value_none": ("lp.always[3] = None; lp.run_once(0)", {"TypeError"}),
    "entries_value_str": ("lp.entries[3] = 'x'; lp.dirty.add(3); lp.run_once(0)",
                          {"TypeError"}),
    # an event that is not an int, from a poller that is not epoll
    "process_bad_event": (("lp.entries[3] = L.Entry(3, None); lp.poller = BadPoller(); "
                           "lp.run_once(0)"), {"TypeError"}),
    # the locks' C methods are called on these fields: not settable
    "lock_not_settable": ("lp.lock = None", {"AttributeError"}),
    "guard_not_settable": ("lp.guard = 'x'", {"AttributeError"}),
    "users_not_settable": ("lp.users = -1", {"AttributeError"}),
    # a Loop made without __init__ still has its locks
    # (a pass first checks the fork generation: the half-made loop then
    # fails rebuilding its poller)
    "loop_without_init": ("L.Loop.__new__(L.Loop).run_once(0)", {"AttributeError", "TypeError"}),
    "forget_without_init": ("L.Loop.__new__(L.Loop).forget(3, None)",
                            {"AttributeError", "TypeError"}),
    "rlock_release_unowned": ("L._RLock().release()", {"RuntimeError"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_loop_rejects_bad_arguments(name):
    statement, accepted = CASES[name]
    code = SETUP + (
        "try:\n"
        "    %s\n"
        "except BaseException as err:\n"
        "    print('raised', type(err).__name__)\n"
        "else:\n"
        "    print('returned')\n" % statement
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, "crashed (%d): %s" % (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() in (["raised", n] for n in accepted), proc.stdout
