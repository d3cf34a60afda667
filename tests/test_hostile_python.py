"""Hostile Python code must never crash the interpreter.

Whatever Python code does to a channel -- assign, delete or swap any
attribute (public, private, or the kernels' own state objects), replace
methods on the class with ones that raise, lie, close or re-enter, hand
the kernel functions and classes arguments of the wrong type, lie in
``__len__``/``__index__``/``__eq__``/``__bool__``, do it from two threads
-- the worst allowed outcome is an ordinary Python exception.

A crash would take pytest down, so everything runs in child processes
(``hostile_python_driver.py``), once per implementation, with the parent
checking exit status and sanitizer reports:

* ``test_hostile_python_fuzz``: a seeded Hypothesis search over op
  sequences against a live socketpair-backed ``async_chat``, a
  ``dispatcher`` and a listener, interleaved with real traffic and
  ``loop(count=1)`` passes.  On a crash the sequence that was running is
  shrunk by replaying it in fresh children, and printed with the command
  that replays it.
* ``test_known_crash``: each crash found so far as a few lines of Python.

Size follows ``HYPOTHESIS_PROFILE`` (see PROFILES); ``ASYNCHAT_CORE_HOSTILE_SEED``
and ``ASYNCHAT_CORE_HOSTILE_BUDGET`` (seconds) override the seed and the
time budget.  Under ``.ci/sanitize.sh`` the children inherit ``LD_PRELOAD``,
``PYTHONMALLOC`` and ``ASAN_OPTIONS``/``UBSAN_OPTIONS`` (so their reports
land in its reports directory); shrinking replays log elsewhere, so the
directory holds only the runs the tests themselves judge.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from asynchat_core import _impl
import impls

DRIVER = Path(__file__).with_name("hostile_python_driver.py")
IMPLEMENTATIONS = impls.params(impls.OURS)

# profile: (max examples, seconds of fuzzing per implementation, seconds of
# shrinking a crash); the budget bounds slow machines and sanitizer builds
PROFILES = {
    "dev": (200, 5.0, 20.0),
    "quick": (1500, 12.0, 30.0),
    "ci": (6000, 45.0, 60.0),
    "nightly": (200000, 1200.0, 300.0),
}
SEED = 20261201


def _profile():
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    examples, budget, shrink = PROFILES.get(name, PROFILES["ci"])
    budget = float(os.environ.get("ASYNCHAT_CORE_HOSTILE_BUDGET", budget))
    seed = int(os.environ.get("ASYNCHAT_CORE_HOSTILE_SEED", SEED))
    return examples, budget, shrink, seed


def _env_for(implementation, log_dir=None):
    """The child's environment: ours (sanitizer preload and options
    included), with the implementation chosen as tests/test_cpython_suites.py
    does."""
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")  # set order inside the ops: reproducible
    if implementation == "python":
        env[_impl.ENV_VAR] = "1"
    else:
        env.pop(_impl.ENV_VAR, None)
    asan = env.get("ASAN_OPTIONS")
    if asan is not None:
        # a hostile buffer size makes CPython malloc 1 TiB: that must be a
        # MemoryError, as without ASan, not an allocation-size report
        if "allocator_may_return_null" not in asan:
            asan += ":allocator_may_return_null=1"
        env["ASAN_OPTIONS"] = asan
    if log_dir is not None:
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if var in env:
                env[var] = re.sub(r"log_path=[^:]*", "log_path=" + os.path.join(log_dir, var[:5].lower()),
                                  env[var])
    return env


def _log_prefixes(env):
    prefixes = []
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        match = re.search(r"log_path=([^:]+)", env.get(var, ""))
        if match:
            prefixes.append(match.group(1))
    return prefixes


def _reports(env, pid):
    """Sanitizer reports the child ``pid`` wrote (``<log_path>.<pid>``)."""
    found = []
    for prefix in _log_prefixes(env):
        found.extend(sorted(glob.glob("%s.%d*" % (prefix, pid))))
    return found


# UBSan (GCC's libubsan beside a preloaded libasan) prints its reports on
# stderr whatever UBSAN_OPTIONS' log_path says, then exits with status 1
_SANITIZER_STDERR = re.compile(r": runtime error: |ERROR: AddressSanitizer|"
                               r"SUMMARY: UndefinedBehaviorSanitizer")


class Outcome:
    def __init__(self, proc, stdout, stderr, reports, timed_out=False):
        self.returncode = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        self.reports = reports
        self.timed_out = timed_out

    @property
    def kind(self):
        if self.timed_out:
            return "hang"
        if (self.reports or self.returncode < 0 or self.returncode not in (0, 1, 3)
                or _SANITIZER_STDERR.search(self.stderr)):
            return "crash"
        if self.returncode == 0:
            return "ok"
        if self.returncode == 3:
            return "finding"
        return "error"  # a Python traceback in the driver itself, or UBSan's exit

    def describe(self):
        rc = self.returncode
        if rc is not None and rc < 0:
            try:
                status = "killed by %s" % signal.Signals(-rc).name
            except ValueError:
                status = "killed by signal %d" % -rc
        else:
            status = "exit status %s" % rc
        parts = ["%s (%s)" % (self.kind, "timed out" if self.timed_out else status)]
        for path in self.reports[:2]:
            with open(path, errors="replace") as fh:
                parts.append("--- %s\n%s" % (path, "".join(fh.readlines()[:40])))
        if self.stderr.strip():
            parts.append("--- child stderr (tail)\n" + self.stderr[-6000:])
        return "\n".join(parts)


def _run(args, env, timeout):
    proc = subprocess.Popen([sys.executable, str(DRIVER)] + args, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tempfile.gettempdir())
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, err = proc.communicate()
    return Outcome(proc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                   _reports(env, proc.pid), timed_out)


def _replay(ops, implementation, log_dir, timeout=30.0):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(ops, fh)
    try:
        return _run(["replay", fh.name], _env_for(implementation, log_dir), timeout)
    finally:
        os.unlink(fh.name)


def _shrink(ops, implementation, kind, seconds):
    """Delta debugging: the shortest op list (found in ``seconds``) whose
    replay still ends the same way (crash, hang or finding)."""
    deadline = time.monotonic() + seconds
    log_dir = tempfile.mkdtemp(prefix="hostile-shrink-")

    def fails(candidate):
        return _replay(candidate, implementation, log_dir).kind == kind

    if not fails(ops):
        return ops, False  # the crash needed state from earlier examples

    def ddmin(ops):
        n = 2
        while len(ops) >= 2 and time.monotonic() < deadline:
            size = -(-len(ops) // n)
            for start in range(0, len(ops), size):
                candidate = ops[:start] + ops[start + size:]
                if time.monotonic() >= deadline:
                    break
                if candidate and fails(candidate):
                    ops = candidate
                    n = max(n - 1, 2)
                    break
            else:
                if n >= len(ops):
                    break
                n = min(len(ops), n * 2)
        return ops

    ops = ddmin(ops)
    # a "thread" op that remains: does it crash with its ops run in line?
    for i, op in enumerate(ops):
        if op[0] == "thread" and time.monotonic() < deadline:
            candidate = ops[:i] + op[1] + op[2] + ops[i + 1:]
            if fails(candidate):
                return ddmin(candidate), True
    return ops, True


def _summary(stdout):
    for line in stdout.splitlines():
        if line.startswith("SUMMARY "):
            return json.loads(line[len("SUMMARY "):])
    return None


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_hostile_python_fuzz(implementation, tmp_path):
    examples, budget, shrink, seed = _profile()
    state = tmp_path / "running.json"
    env = _env_for(implementation)
    outcome = _run(["fuzz", "--examples", str(examples), "--budget", str(budget),
                    "--seed", str(seed), "--state", str(state)],
                   env, timeout=budget + 120.0)
    summary = _summary(outcome.stdout)
    if outcome.kind != "ok":
        message = ["hostile-Python fuzz [%s], seed %d: %s" % (implementation, seed,
                                                             outcome.describe())]
        if outcome.kind in ("crash", "hang") and state.exists():
            ops = json.loads(state.read_text())
            small, reproduced = _shrink(ops, implementation, outcome.kind, shrink)
            path = tmp_path / "reproducer.json"
            path.write_text(json.dumps(small))
            message.append("%s sequence (%d of %d ops%s):\n%s" % (
                outcome.kind, len(small), len(ops),
                "" if reproduced else "; did not reproduce alone",
                "\n".join("  " + json.dumps(op) for op in small)))
            message.append("replay: %s%s %s replay %s" % (
                "ASYNCHAT_CORE_NO_EXTENSIONS=1 " if implementation == "python" else "",
                sys.executable, DRIVER, path))
        pytest.fail("\n".join(message), pytrace=False)
    assert summary is not None, outcome.stdout[-2000:]
    assert summary["implementation"] == implementation  # a missing build must fail
    assert summary["examples"] >= min(examples, 20), summary
    # introspection must keep finding the kernels' names as they change
    assert summary["names"]["functions"] >= 10 and summary["names"]["classes"] >= 3, summary
    print("hostile fuzz [%s]: %s" % (implementation, json.dumps(summary, sort_keys=True)))


def test_driver_discovers_kernel_names():
    outcome = _run(["names"], _env_for("cython"), timeout=60.0)
    assert outcome.kind == "ok", outcome.describe()
    names = json.loads(outcome.stdout)
    owners = {name for _, name in names["classes"]}
    assert {"chat", "loop"} == {mod for mod, _ in names["functions"] + names["classes"]}
    # the state users poke, and what vars() of live channels holds
    for attr in ("terminator", "producer_fifo", "socket", "_fileno", "_map", "connected"):
        assert attr in names["attrs"]
    assert names["fields"].get("inbuf") and names["fields"].get("loop"), names["fields"]
    assert len(owners) >= 3


def test_children_inherit_sanitizer_environment(tmp_path):
    """Under .ci/sanitize.sh the children run instrumented, reporting where
    the script looks; elsewhere this only checks the variables pass."""
    code = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
            "('LD_PRELOAD', 'PYTHONMALLOC', 'ASAN_OPTIONS', 'UBSAN_OPTIONS')}));"
            "print(any('libasan' in l for l in open('/proc/self/maps')) "
            "if os.path.exists('/proc/self/maps') else None)")
    env = _env_for("cython")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[0])
    for var in ("LD_PRELOAD", "PYTHONMALLOC", "UBSAN_OPTIONS"):
        assert seen[var] == os.environ.get(var)
    if "ASAN_OPTIONS" in os.environ:
        assert seen["ASAN_OPTIONS"].startswith(os.environ["ASAN_OPTIONS"])
        for prefix in _log_prefixes(env):
            assert os.path.isdir(os.path.dirname(prefix)), prefix
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        assert proc.stdout.splitlines()[1] == "True"  # ASan really loaded


# ----------------------------------------------------------- known crashes
#
# Each snippet runs in a child after PRELUDE (a connected async_chat ``c``
# with peer ``peer``, its map ``m``, the kernel modules ``K`` and ``L``);
# ``ordinary(f, *args)`` runs f and accepts any exception but SystemError.

PRELUDE = r'''
import socket, sys
from asynchat_core import _impl, asynchat, asyncore
K, L = _impl.chat_impl, _impl.loop_impl
sizes = []
class C(asynchat.async_chat):
    def collect_incoming_data(self, data): sizes.append(len(data))
    def found_terminator(self): pass
    def log_info(self, *a): pass
s, peer = socket.socketpair()
m = {}
c = C(s, map=m)
def ordinary(f, *args):
    try:
        return f(*args)
    except SystemError:
        raise
    except Exception as exc:
        return exc
def new_loop():
    return L.Loop(m, L.best_backend(), L.TimerQueue(), (), (), (SystemExit,), ())
'''

KNOWN_CRASHES = {
    # TerminatorSlot.__set__: `cdef InBuffer inbuf = obj._ac_in` lets None
    # through, then stores into it
    "terminator_set_through_none_state": '''
c._ac_in = None
ordinary(setattr, c, "terminator", b"x")
ordinary(c.set_terminator, b"x")
''',
    # TerminatorSlot.__delete__: the state read again after __get__ (the
    # brief's form: checked there, an ordinary AttributeError)
    "terminator_delete_after_state_replaced": '''
c.set_terminator(b"x")
c._ac_in = object()
ordinary(delattr, c, "terminator")
''',
    # ... and the unchecked `<InBuffer>obj._ac_in` cast when the second read
    # gives another object: it stores into the bytearray's fields
    "terminator_delete_state_changes_between_reads": '''
c.set_terminator(b"x")
victim = bytearray(b"z" * 64)
reads = iter([c._ac_in, victim, victim, victim])
C._ac_in = property(lambda self: next(reads), lambda self, v: None)
ordinary(delattr, c, "terminator")
assert victim == bytearray(b"z" * 64), "del c.terminator wrote into another object"
''',
    # an int terminator whose comparisons lie: the kernel trusts `term > size`
    # and slices `term` bytes out of a 3-byte buffer
    "int_terminator_with_lying_comparisons": '''
class Liar(int):
    __lt__ = __gt__ = __le__ = __ge__ = lambda self, other: False
c.terminator = Liar(1 << 22)
peer.send(b"abc")
ordinary(c.handle_read)
assert max(sizes, default=0) <= 3, "handed %d bytes of 3 received" % max(sizes)
''',
    # the loop's own state, reachable from Python: None where an Entry goes
    "loop_polled_entry_none": '''
asyncore.loop(timeout=0, count=1, map=m)
lp = new_loop()
lp.run_once(0)
lp.polled[c._fileno] = None
ordinary(lp.run_once, 0)
''',
    "loop_always_entry_none": '''
lp = new_loop()
lp.run_once(0)
lp.always[c._fileno] = None
ordinary(lp.run_once, 0)
''',
    # a None set where the loop iterates its dirty set: Cython's set
    # iteration reads None as a set (out of bounds) and reports "set changed
    # size during iteration"; it must be refused like any other wrong type
    "loop_dirty_none": '''
lp = new_loop()
ordinary(setattr, lp, "dirty", None)  # refused where the field is typed
exc = ordinary(lp._flush, 0.0) if hasattr(lp, "_flush") else None
assert not (isinstance(exc, RuntimeError) and "changed size" in str(exc)), exc
''',
    # recursion made only of C calls has no recursion limit on 3.11: the
    # Python build raises RecursionError where the compiled one would
    # overflow the C stack.  The output path re-enters itself through held
    # replies (OutputState.pending): a send, a drain or a read of `socket`
    # flushes them first.  Here every look at `connected` holds one more
    # reply and turns batching on, so each of those paths meets fresh held
    # bytes.  `strict` lets an AttributeError through: it means the scenario
    # no longer reaches the state it targets (it once set an
    # `InputState.owed` field that had gone, and nothing noticed).
    "held_reply_recursion": '''
def strict(f, *args):
    try:
        return f(*args)
    except (SystemError, AttributeError):
        raise
    except Exception as exc:
        return exc
class D(C):
    @property
    def connected(self):
        out = self._ac_out
        if out.pending is None:  # (nothing held yet: the list is made lazily)
            out.pending = []
        out.pending.append(b"y")
        out.batching = True
        return True
    @connected.setter
    def connected(self, value): pass
mine, theirs = socket.socketpair()
d = D(mine, map={})
strict(d.push, b"x")
strict(d.send, b"z")
strict(d.initiate_send)
strict(getattr, d, "socket")
strict(d.push, bytearray(b"w" * 100))
strict(d.discard_buffers)
strict(d.close)
''',
    # the terminator descriptor installed under the name it reads its state
    # from: __get__ -> getattr(obj, "_ac_in") -> __get__ ...
    "terminator_slot_as_state_attribute": '''
class D(C):
    pass
D._ac_in = asynchat.async_chat.terminator
ordinary(D, None, {})
''',
}

# Loop methods declared with an ``Entry`` parameter, called with None in
# its place (the methods that exist; names may change)
LOOP_ENTRY_METHODS = ["_set_kernel", "_interest", "_close_channel", "_deliver", "_dispatch"]
for _name in LOOP_ENTRY_METHODS:
    KNOWN_CRASHES["loop_%s_none_entry" % _name.strip("_")] = '''
lp = new_loop()
fn = getattr(lp, %r, None)
if fn is not None:
    for args in [(None,), (None, 0), (None, 1), (None, 4),
                 (None, 0, 0.0), (None, 1, 0.0), (None, 4, 0.0)]:
        ordinary(fn, *args)
''' % _name


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", sorted(KNOWN_CRASHES))
def test_known_crash(name, implementation):
    env = _env_for(implementation)
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c",
                             PRELUDE + KNOWN_CRASHES[name]],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    outcome = Outcome(proc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                      _reports(env, proc.pid))
    assert outcome.kind == "ok", "%s [%s]:\n%s\n%s" % (
        name, implementation, KNOWN_CRASHES[name].strip(), outcome.describe())
