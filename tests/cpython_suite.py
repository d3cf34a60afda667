"""Run CPython's own test_asyncore / test_asynchat against a target.

    python tests/cpython_suite.py TARGET MODULE [--json FILE]

TARGET is ``asynchat_core`` (after ``install()``; the kernels follow
``ASYNCHAT_CORE_NO_EXTENSIONS``) or ``stdlib`` (the interpreter's own
modules, for the baseline).  MODULE is ``test_asyncore`` or
``test_asynchat``.  The test files are read from an installed interpreter
at run time and never copied into this repository: the interpreter's own
``test`` package on 3.9-3.11, a CPython 3.11 installation on 3.12+
(``ASYNCHAT_CORE_CPY311_TESTS`` may name its ``test`` directory).
"""

import glob
import importlib.util
import json
import os
import sys
import unittest
import warnings


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


def load_suite(target, module):
    if target == "asynchat_core":
        import asynchat_core

        asynchat_core.install()
    elif target != "stdlib":
        raise SystemExit("unknown target %r" % target)
    path = find_suite_file(module)
    if path is None:
        raise SystemExit("CPython's %s.py not found for Python %s" % (module, sys.version))
    spec = importlib.util.spec_from_file_location("test." + module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(mod)
    if target == "asynchat_core":
        for name in ("asyncore", "asynchat"):
            used = getattr(mod, name, None)
            if used is not None and not used.__name__.startswith("asynchat_core"):
                raise SystemExit("suite imported %s, not asynchat_core" % used.__name__)
    return path, unittest.defaultTestLoader.loadTestsFromModule(mod)


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test.id())


def main(argv):
    target, module = argv[1], argv[2]
    out = argv[argv.index("--json") + 1] if "--json" in argv else None
    path, suite = load_suite(target, module)
    runner = unittest.TextTestRunner(verbosity=1, resultclass=_Recorder, stream=sys.stderr)
    result = runner.run(suite)
    report = {
        "target": target,
        "module": module,
        "file": path,
        "python": sys.version.split()[0],
        "implementation": None,
        "run": result.testsRun,
        "passed": sorted(result.passed),
        "failed": sorted(t.id() for t, _ in result.failures + result.errors),
        "skipped": sorted(t.id() for t, _ in result.skipped),
    }
    if target == "asynchat_core":
        import asynchat_core

        report["implementation"] = asynchat_core.IMPLEMENTATION
        report["package"] = os.path.dirname(os.path.abspath(asynchat_core.__file__))
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=1)
    print("%s %s on %s [%s]: %d run, %d passed, %d failed, %d skipped" % (
        module, target, report["python"], report["implementation"] or "stdlib",
        report["run"], len(report["passed"]), len(report["failed"]), len(report["skipped"])))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
