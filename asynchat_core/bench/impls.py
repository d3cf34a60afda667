"""Which implementations exist on this machine, and how to run each.

The implementation of asynchat_core (compiled or Python build) is chosen
once, at import, so every implementation runs in its own process: a
``Target`` says which interpreter and environment start it and which module
pair it loads.
"""
import importlib
import os
import shutil
import subprocess
import sys
import warnings

NO_EXT = "ASYNCHAT_CORE_NO_EXTENSIONS"

# module-pair implementations, in table order
CHAT_IMPLS = ("cython", "baseline", "python", "stdlib")
ASYNCIO_IMPLS = ("asyncio", "uvloop")
# names that earlier releases used, accepted by --impls and when reading old
# JSON: old name -> current name ("pure" was the Python implementation)
RENAMED_IMPLS = {"pure": "python"}


def current_name(name):
    """The current name of implementation ``name`` (old names are mapped)."""
    return RENAMED_IMPLS.get(name, name)


def load_modules(source):
    """Return ``(asyncore, asynchat)`` for ``source``: "asynchat_core" or "stdlib".

    "stdlib" is ``import asyncore, asynchat``: CPython's own modules up to
    3.11, the pyasyncore/pyasynchat PyPI copies on 3.12+.
    """
    if source == "asynchat_core":
        from asynchat_core import asynchat, asyncore

        return asyncore, asynchat
    if source == "stdlib":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # by name: removed from the stdlib (and its stubs) in 3.12
            asynchat = importlib.import_module("asynchat")
            asyncore = importlib.import_module("asyncore")
        if getattr(asyncore, "__name__", "") != "asyncore" or "asynchat_core" in asyncore.__file__:
            raise ImportError("asyncore resolves to asynchat_core, not the stdlib")
        return asyncore, asynchat
    raise ValueError("unknown module source %r" % (source,))


class Target:
    """How to start a worker process for one implementation."""

    def __init__(self, name, python, env, source, label, root=None):
        self.name = name
        self.python = python
        self.env = env
        self.source = source
        self.label = label
        # the checkout whose asynchat_core the worker imports (default: this one)
        self.root = root

    def command(self, *args):
        """The argv that starts a worker for this target with ``args``."""
        return [self.python, "-m", "asynchat_core.bench.worker"] + list(args)

    def environ(self):
        """The environment for the worker: this target's settings and this checkout on the path."""
        env = dict(os.environ)
        env.pop(NO_EXT, None)
        env.update(self.env)
        # the worker must import this checkout even from another interpreter
        env["PYTHONPATH"] = self.cwd() + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def cwd(self):
        """The worker's directory: its checkout.  ``-m``/``-c`` put the current
        directory first on ``sys.path``, so started from another checkout
        (the bench run from one) the worker would import that one instead."""
        return self.root or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _probe(python, env, code, cwd=None):
    try:
        out = subprocess.run(
            [python, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return None, lines[-1] if lines else "exit %d" % out.returncode
    return out.stdout.strip(), None


def _find_python311():
    found = shutil.which("python3.11")
    if found:
        return found
    pyenv = os.path.expanduser("~/.pyenv/versions")
    if os.path.isdir(pyenv):
        for name in sorted(os.listdir(pyenv), reverse=True):
            if name.startswith("3.11."):
                path = os.path.join(pyenv, name, "bin", "python")
                if os.path.exists(path):
                    return path
    return None


def _baseline_target(me, root):
    # asynchat_core from another checkout with its compiled build made
    # in place (an earlier revision, to compare side by side in one run)
    root = os.path.abspath(root)
    rev = ""
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        pass
    label = "asynchat_core baseline (%s%s)" % (os.path.basename(root), "@" + rev if rev else "")
    return Target("baseline", me, {}, "asynchat_core", label, root=root)


def discover(stdlib_python=None, baseline=None):
    """Return ``(targets, skipped)``: a dict name -> Target, and name -> reason.

    ``baseline``: the path of another asynchat_core checkout (compiled
    build made in place) to measure as the "baseline" implementation.
    """
    targets = {}
    skipped = {}
    me = sys.executable
    targets["cython"] = Target("cython", me, {}, "asynchat_core", "asynchat_core (compiled build)")
    targets["python"] = Target("python", me, {NO_EXT: "1"}, "asynchat_core",
                               "asynchat_core (Python build)")

    probe_impl = "import asynchat_core; print(asynchat_core.IMPLEMENTATION)"
    impl, err = _probe(me, targets["cython"].environ(), probe_impl,
                       cwd=targets["cython"].cwd())
    if impl != "cython":
        del targets["cython"]
        skipped["cython"] = "compiled build not importable (%s)" % (err or impl)
    if baseline:
        target = _baseline_target(me, baseline)
        probe_root = "import asynchat_core, os; print(asynchat_core.IMPLEMENTATION, os.path.dirname(os.path.dirname(asynchat_core.__file__)))"
        out, err = _probe(me, target.environ(), probe_root, cwd=target.cwd())
        if out == "cython " + target.root:
            targets["baseline"] = target
        else:
            skipped["baseline"] = ("%s: not an asynchat_core checkout with a compiled build "
                                   "in place (%s)" % (baseline, err or out))

    probe_std = (
        "import warnings; warnings.simplefilter('ignore');"
        "from asynchat_core.bench.impls import load_modules;"
        "m = load_modules('stdlib'); import sys;"
        "print('%s %d.%d' % (m[1].__file__, sys.version_info[0], sys.version_info[1]))"
    )
    candidates = []
    if stdlib_python:
        candidates.append(stdlib_python)
    candidates.append(me)
    if sys.version_info >= (3, 12) and not stdlib_python:
        py311 = _find_python311()
        if py311:
            candidates.append(py311)
    reasons = []
    for python in candidates:
        env = {NO_EXT: "1"} if python != me else {}
        probe_target = Target("stdlib", python, env, "stdlib", "")
        out, err = _probe(python, probe_target.environ(), probe_std,
                          cwd=probe_target.cwd())
        if out:
            path, version = out.rsplit(" ", 1)
            kind = "pyasynchat" if "site-packages" in path else "stdlib"
            probe_target.label = "%s asynchat (Python %s)" % (kind, version)
            targets["stdlib"] = probe_target
            break
        reasons.append("%s: %s" % (python, err))
    else:
        skipped["stdlib"] = (
            "no stdlib asynchat (Python 3.12+ without pyasynchat/pyasyncore, "
            "and no python3.11 found): " + "; ".join(reasons)
        )

    targets["asyncio"] = Target("asyncio", me, {}, "asyncio", "asyncio Protocol (default loop)")
    out, err = _probe(me, {}, "import uvloop; print(uvloop.__version__)")
    if out:
        targets["uvloop"] = Target("uvloop", me, {}, "uvloop", "uvloop %s Protocol" % out)
    else:
        skipped["uvloop"] = "uvloop not installed (pip install uvloop): %s" % err
    return targets, skipped
