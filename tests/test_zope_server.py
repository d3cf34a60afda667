"""Code no one here wrote: zope.server's own test suite on asynchat_core.

zope.server 5.0 is an asyncore HTTP and FTP server with task threads and a
wake-up trigger for its loop.  Its whole suite (241 tests, run by
zope.testrunner) runs in three subprocesses, started together, as
``test_real_users.py`` runs pyftpdlib's: on the reference modules (the
interpreter's own up to 3.11, the pyasyncore/pyasynchat backports on 3.12+,
the versions installed beside these tests) and on asynchat_core's two builds
after ``asynchat_core.install()`` (``zope_server_runner.py``).  The
comparison is test by test, and each run reports which asyncore zope.server's
modules really hold.

zope.server's test dependencies are about 20 packages (zope.publisher,
zope.security, zope.testrunner ...), too many for the ``test`` extra: they
live in a venv of their own, made by the first run from this interpreter
and kept in ``$ASYNCHAT_CORE_CACHE`` (default ``~/.cache/asynchat_core``)
under a name that holds the interpreter's version and the requirements, so
a change of either makes a new one.  Making it takes about 10 s with a warm
pip cache; the three runs about 20 s together.  Without the network (and
no venv yet) these tests fail: they never skip.
"""
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import asynchat_core
import impls
from child_procs import env_for, show_in_summary
from suite_runs import (by_outcome, check_process, counts, lost_passes, no_leaks,  # noqa: F401
                        run_reporting, start_runs, tail)

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "zope_server_runner.py")
PACKAGE = os.path.dirname(os.path.realpath(asynchat_core.__file__))
ZOPE_SERVER = "5.0"
# zope.server 5.0's suite: every one must run, and pass on the reference
EXPECTED_TESTS = 241
TARGETS = ("reference",) + impls.OURS
# seconds for one child run (about 18 s alone, mostly waiting on sockets);
# its faulthandler dumps every thread's stack DEADLINE_MARGIN s before
TIMEOUT = 150
DEADLINE_MARGIN = 10
VENV_TIMEOUT = 900  # making the venv: pip may have to download everything

_runs = {}
_summary = []
_venv_lock = threading.Lock()
_venv = {}


def _requirements():
    reqs = ["zope.server[test]==%s" % ZOPE_SERVER]
    if sys.version_info >= (3, 12):
        # the reference of every other test here: the same backport versions
        for name in ("pyasyncore", "pyasynchat"):
            try:
                reqs.append("%s==%s" % (name, importlib.metadata.version(name)))
            except importlib.metadata.PackageNotFoundError:
                reqs.append(name)
    return reqs


def _venv_path():
    root = os.environ.get("ASYNCHAT_CORE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "asynchat_core")
    base = getattr(sys, "_base_executable", sys.executable)
    key = hashlib.sha256(json.dumps([sys.version, os.path.realpath(base), _requirements()])
                         .encode()).hexdigest()[:12]
    name = "zope-server-%s-py%d.%d-%s" % ((ZOPE_SERVER,) + sys.version_info[:2] + (key,))
    return os.path.join(root, name)


def _venv_python(path):
    return os.path.join(path, "Scripts" if os.name == "nt" else "bin",
                        "python.exe" if os.name == "nt" else "python")


def _lock_file(fh):
    try:
        import fcntl
    except ImportError:  # Windows: one pytest per machine is the rule there
        return
    fcntl.flock(fh, fcntl.LOCK_EX)


def _venv_commands(path):
    """Make the venv at ``path`` and install the requirements into it.

    With pip beside this interpreter, the venv is made without pip and this
    pip installs into it (``pip --python``): a Debian-packaged CPython's
    ensurepip looks for its wheels in /usr/share and fails in a venv made
    from an unpacked tree (.ci/debian-python.sh), and the venv needs no pip
    of its own."""
    install = ["install", "-q", "--disable-pip-version-check"] + _requirements()
    if importlib.util.find_spec("pip") is not None:
        return ([sys.executable, "-m", "venv", "--without-pip", path],
                [sys.executable, "-m", "pip", "--python", _venv_python(path)] + install)
    return ([sys.executable, "-m", "venv", path],
            [_venv_python(path), "-m", "pip"] + install)


def _make_venv():
    """The venv's interpreter and how long making it took (0.0 if cached);
    one pytest process makes it while the others wait."""
    path = _venv_path()
    ready = os.path.join(path, "ready.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        _lock_file(lock)
        if os.path.exists(ready):
            return _venv_python(path), 0.0
        shutil.rmtree(path, ignore_errors=True)  # half made by a killed run
        start = time.monotonic()
        for cmd in _venv_commands(path):
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=VENV_TIMEOUT)
            if done.returncode:
                shutil.rmtree(path, ignore_errors=True)
                raise RuntimeError("%s failed (exit %d):\n%s" % (
                    " ".join(cmd), done.returncode, done.stdout.decode("utf-8", "replace")[-4000:]))
        with open(ready, "w") as fh:
            json.dump({"requirements": _requirements(), "python": sys.version}, fh)
        return _venv_python(path), time.monotonic() - start


def _venv_once():
    with _venv_lock:
        if not _venv:
            try:
                _venv["python"], took = _make_venv()
                _summary.append("Python %s zope.server %s venv: %s" % (
                    sys.version.split()[0], ZOPE_SERVER,
                    "made in %.0f s" % took if took else "cached"))
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _venv["error"] = "no venv for zope.server %s: %s" % (ZOPE_SERVER, exc)
    return _venv.get("python"), _venv.get("error")


def _run(target):
    """One child run of the whole suite on ``target``: its JSON report
    plus how the process ended."""
    python, error = _venv_once()
    if error:
        return {"venv_error": error}
    cwd = tempfile.mkdtemp(prefix="ac-zope-server-")
    try:
        # the package under test, alone on the child's path (not the
        # directory it sits in, which may be a whole site-packages)
        parent = os.path.join(cwd, "pkg")
        os.mkdir(parent)
        try:
            os.symlink(PACKAGE, os.path.join(parent, "asynchat_core"))
        except (OSError, NotImplementedError):  # no symlinks (Windows)
            parent = os.path.dirname(PACKAGE)
        report_path = os.path.join(cwd, "report.json")
        env = env_for(target, ZOPE_RUN_TARGET=target, ZOPE_RUN_REPORT=report_path,
                      ZOPE_RUN_PACKAGE_PARENT=parent,
                      ZOPE_RUN_DEADLINE=str(TIMEOUT - DEADLINE_MARGIN))
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(name, None)  # nothing of this venv in that one
        cmd = [python, RUNNER]
        start = time.monotonic()
        report = run_reporting(cmd, cwd, env, TIMEOUT, report_path)
        took = time.monotonic() - start
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    _summary.append("Python %s zope.server %s on %-9s: %s (%.0f s)" % (
        sys.version.split()[0], ZOPE_SERVER, target,
        counts(report) if "outcomes" in report else "no report (exit %d)" % report["returncode"],
        took))
    return report


@pytest.fixture(scope="module", autouse=True)
def _start_runs(request):
    """Make the venv, then start the three runs at once (they mostly wait
    on sockets)."""
    show_in_summary(request.config, "zope.server's suite", _summary)
    runs, pool = start_runs(request, sys.modules[__name__], TARGETS, _run)
    _runs.update(runs)
    yield
    pool.shutdown(wait=True)


def _report(target):
    if target not in _runs:
        pytest.fail("no run was started for %r" % target, pytrace=False)
    report = _runs[target].result()
    if "venv_error" in report:
        pytest.fail(report["venv_error"], pytrace=False)
    check_process(report, TIMEOUT)
    return report


def test_zope_server_reference():
    """The baseline: zope.server on the reference modules runs and passes
    its whole suite, holding the reference's asyncore."""
    report = _report("reference")
    assert not report["imported"][0].startswith(PACKAGE + os.sep), report["imported"]
    if sys.version_info < (3, 12):
        expected = os.sep + "asyncore.py"
    else:
        expected = os.path.join(os.sep + "asyncore", "__init__.py")  # the backport
    assert report["imported"][0].endswith(expected), report["imported"]
    held = report["held_by_zope_server"]
    assert held and set(held.values()) == {report["imported"][0]}, held
    assert len(report["outcomes"]) == EXPECTED_TESTS, tail(report)
    assert by_outcome(report, "passed") == set(report["outcomes"]), tail(report)


@pytest.mark.parametrize("target", impls.params(impls.OURS))
def test_zope_server_on_asynchat_core(target):
    """zope.server on asynchat_core: the reference's outcomes, test by test,
    with zope.server's modules holding asynchat_core's asyncore."""
    report = _report(target)
    assert report["implementation"] == target
    assert os.path.realpath(report["package"]) == PACKAGE
    ours = [os.path.join(PACKAGE, "asyncore.py"), os.path.join(PACKAGE, "asynchat.py")]
    assert report["imported"] == ours
    held = report["held_by_zope_server"]
    assert held and set(held.values()) == {ours[0]}, held
    lost = lost_passes(report, _report("reference"))
    assert not lost, "%d test(s) pass on the reference but not here: %s\n%s" % (
        len(lost), json.dumps(lost, indent=1, sort_keys=True), tail(report))
    assert report["returncode"] == 0, tail(report)
