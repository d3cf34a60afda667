"""Run one of CPython's own test suites against a target.

    python tests/cpython_suite.py TARGET MODULE [--json FILE] [--timeout SECONDS]

TARGET is ``asynchat_core`` (after ``install()``; the kernels follow
``ASYNCHAT_CORE_NO_EXTENSIONS``) or ``stdlib`` (the interpreter's own
modules, for the baseline).  MODULE is a CPython test module that uses
asyncore or asynchat: ``test_asyncore``, ``test_asynchat`` or a client
such as ``test_ftplib``; ``test_os:TestSendfile`` runs one class of it,
``test_ssl:ThreadedTests.test_asyncore_server`` one test.
The test files are read from an installed interpreter at run time and
never copied into this repository: the interpreter's own ``test`` package
on 3.9-3.11, a CPython 3.11 installation on 3.12+
(``ASYNCHAT_CORE_CPY311_TESTS`` may name its ``test`` directory).

The JSON report lists the test ids per outcome, the threads the suite left
running, and, when the suite does not import on this interpreter, the
ImportError (exit status 2 then; 0 when every test passed, 1 otherwise).
With ``--timeout``, faulthandler dumps every thread's stack and exits 10
seconds before the caller's deadline, so a hang shows where it hangs.
"""

import faulthandler
import glob
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import types
import unittest
import warnings

EXIT_LOAD_ERROR = 2
# How long threads a suite started may take to finish after its last test;
# test.support.threading_helper.threading_cleanup() allows the same.
THREAD_GRACE = 1.0


def find_suite_file(module):
    """Path of CPython's MODULE.py suited to this interpreter, or None."""
    if sys.version_info < (3, 12):
        import test

        path = os.path.join(os.path.dirname(test.__file__), module + ".py")
        return path if os.path.exists(path) else None
    candidates = []
    env_dir = os.environ.get("ASYNCHAT_CORE_CPY311_TESTS")
    if env_dir:
        candidates.append(os.path.join(env_dir, module + ".py"))
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for root in filter(None, roots):
        pattern = os.path.join(root, "versions", "3.11.*", "lib", "python3.11", "test")
        for test_dir in sorted(glob.glob(pattern), reverse=True):
            candidates.append(os.path.join(test_dir, module + ".py"))
    candidates += sorted(glob.glob("/usr/lib/python3.11/test/" + module + ".py"))
    for path in candidates:
        if os.path.exists(path):
            return path
    return None


class _SiblingFinder:
    """Imports ``test.test_*`` modules from DIRECTORY.

    On 3.12+ a 3.11 suite that imports another one (test_poplib takes
    ``SSLConnection`` from ``test.test_ftplib``) must get the 3.11 file,
    which uses asyncore, not this interpreter's, which uses test.support's
    private copy: mixing the two hangs the SSL tests.
    """

    def __init__(self, directory):
        self.directory = directory

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.partition(".")
        if package != "test" or not name.startswith("test_") or "." in name:
            return None
        candidate = os.path.join(self.directory, name + ".py")
        if not os.path.exists(candidate):
            return None
        return importlib.util.spec_from_file_location(fullname, candidate)


def import_suite(name, path):
    """Import the test module at PATH as ``test.NAME``.

    An ImportError propagates: on 3.12+ a 3.11 suite may need a module
    that left the stdlib (``smtpd``), and the caller reports which.
    """
    import test

    directory = os.path.dirname(path)
    if os.path.realpath(directory) != os.path.realpath(os.path.dirname(test.__file__)):
        sys.meta_path.insert(0, _SiblingFinder(directory))
    spec = importlib.util.spec_from_file_location("test." + name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(mod)
    return mod


def provide_smtpd_311(suite_path):
    """On 3.12+, CPython 3.11's ``smtpd`` (an asyncore/asynchat server the
    smtpd, smtplib and logging suites drive, and which users still carry),
    imported from the 3.11 installation the suite file came from, so that it
    runs on asynchat_core.  Returns its path, or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.dirname(suite_path)), "smtpd.py")
    if "smtpd" in sys.modules or not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("smtpd", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["smtpd"] = mod
    # its first line announces the removal, which raises past 3.12 alpha
    # (warnings._deprecated): users who carry it on have dropped that line
    deprecated = getattr(warnings, "_deprecated", None)
    warnings._deprecated = lambda *args, **kwargs: None
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules["smtpd"]
        raise
    finally:
        if deprecated is None:
            del warnings._deprecated
        else:
            warnings._deprecated = deprecated
    return path


def asyncore_modules():
    """Which asyncore/asynchat each imported test module, and smtpd, refer to."""
    used = {}
    for mod_name, mod in sorted(sys.modules.items()):
        if not (mod_name.startswith("test.test_") or mod_name == "smtpd"):
            continue
        for name in ("asyncore", "asynchat"):
            value = getattr(mod, name, None)
            if isinstance(value, types.ModuleType):
                used["%s.%s" % (mod_name, name)] = value.__name__
    return used


def leftover_threads(before, grace=THREAD_GRACE):
    """Threads started since BEFORE that are still alive after GRACE seconds."""
    deadline = time.monotonic() + grace
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test.id())


def _write(report, out):
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=1)


def main(argv):
    target, module = argv[1], argv[2]
    out = argv[argv.index("--json") + 1] if "--json" in argv else None
    timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else None
    faulthandler.enable()
    if timeout:
        # Shortly before the caller's deadline, dump every thread's stack
        # and exit: the report shows where a suite hangs, and a run whose
        # caller died (pytest killed by CI's timeout) does not live on.
        faulthandler.dump_traceback_later(max(timeout - 10, 1), exit=True)
    report = {
        "target": target,
        "module": module,
        "python": sys.version.split()[0],
        "implementation": None,
    }
    if target == "asynchat_core":
        import asynchat_core

        asynchat_core.install()
        report["implementation"] = asynchat_core.IMPLEMENTATION
        report["package"] = os.path.dirname(os.path.abspath(asynchat_core.__file__))
    elif target != "stdlib":
        raise SystemExit("unknown target %r" % target)
    name, _, class_name = module.partition(":")
    path = report["file"] = find_suite_file(name)
    if path is None:
        raise SystemExit("CPython's %s.py not found for Python %s" % (name, sys.version))
    if target == "asynchat_core" and sys.version_info >= (3, 12):
        report["smtpd"] = provide_smtpd_311(path)
    if name == "test_logging" and not hasattr(logging, "_acquireLock"):
        # 3.11's test_logging takes the module lock by the helpers 3.13
        # replaced with the lock object itself
        logging._acquireLock = logging._lock.acquire  # type: ignore[attr-defined]
        logging._releaseLock = logging._lock.release  # type: ignore[attr-defined]
    try:
        mod = import_suite(name, path)
    except ImportError as exc:
        report["load_error"] = "%s: %s" % (type(exc).__name__, exc)
        report["load_error_module"] = exc.name
        _write(report, out)
        print("%s on %s does not load: %s" % (module, report["python"], report["load_error"]))
        return EXIT_LOAD_ERROR
    report["uses"] = asyncore_modules()
    if target == "asynchat_core":
        for key, used in report["uses"].items():
            if not used.startswith("asynchat_core"):
                raise SystemExit("suite's %s is %s, not asynchat_core's" % (key, used))
    loader = unittest.defaultTestLoader
    if class_name:  # a class, or Class.method
        suite = loader.loadTestsFromName(class_name, mod)
    else:
        suite = loader.loadTestsFromModule(mod)

    runner = unittest.TextTestRunner(verbosity=1, resultclass=_Recorder, stream=sys.stderr)
    threads_before = set(threading.enumerate())
    result = runner.run(suite)
    left = leftover_threads(threads_before)
    faulthandler.cancel_dump_traceback_later()
    failed = [t for t, _ in result.failures + result.errors] + result.unexpectedSuccesses
    report.update({
        "passed": sorted(result.passed),
        "failed": sorted(t.id() for t in failed),
        "skipped": sorted(t.id() for t, _ in result.skipped),
        "expected_failures": sorted(t.id() for t, _ in result.expectedFailures),
        "threads_left": [repr(t) for t in left],
    })
    # Counted from the outcomes, not testsRun: 3.12.1 leaves skipped tests
    # out of testsRun (gh-106584, undone in 3.12.2: gh-110890).
    report["run"] = sum(len(report[key]) for key in
                        ("passed", "failed", "skipped", "expected_failures"))
    _write(report, out)
    for thread in left:
        print("thread still running after the suite: %r" % (thread,), file=sys.stderr)
    print("%s %s on %s [%s]: %d run, %d passed, %d failed, %d skipped%s" % (
        module, target, report["python"], report["implementation"] or "stdlib",
        report["run"], len(report["passed"]), len(report["failed"]), len(report["skipped"]),
        ", %d thread(s) left" % len(left) if left else ""))
    status = 0 if result.wasSuccessful() and not left else 1
    if left:
        # A leftover non-daemon thread would hang interpreter shutdown until
        # the caller's timeout; the report already says what is left.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
