"""The reference implementation is CPython 3.11's code.

On 3.12+ the reference of every ``impl`` test is the pyasyncore/pyasynchat
backports (``impls.py``).  Their releases are not pinned; instead their
source is compared here with CPython 3.11's own ``asyncore.py`` and
``asynchat.py`` (lines outside the deprecation warning, which the backports
drop), so a release that changes the reference fails this test.  CPython
3.11 need not be the running interpreter, only installed: its ``Lib`` is
found as ``tests/cpython_suite.py`` finds its test suites.
"""
import glob
import inspect
import os
import sys

import pytest

import impls

# the lines of 3.11's modules that the backports leave out: the
# deprecation warning (from 3.11's asyncore.py and asynchat.py)
DEPRECATION_MARKERS = ("_DEPRECATION_MSG", "_deprecated", "'Python {remove}")


def cpython311_lib():
    """The ``lib/python3.11`` directory of a CPython 3.11 installation, or None."""
    candidates = []
    tests_dir = os.environ.get("ASYNCHAT_CORE_CPY311_TESTS")
    if tests_dir:
        candidates.append(os.path.dirname(os.path.normpath(tests_dir)))
    if sys.version_info[:2] == (3, 11):
        candidates.append(os.path.dirname(os.__file__))
    for root in filter(None, [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]):
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.11.*", "lib",
                                                    "python3.11")), reverse=True)
    candidates.append("/usr/lib/python3.11")
    for path in candidates:
        if os.path.isfile(os.path.join(path, "asyncore.py")):
            return path
    return None


def code_lines(text):
    """The lines of a module's source that matter: no blank lines, none of the warning."""
    return [line.rstrip() for line in text.splitlines()
            if line.strip() and not any(m in line for m in DEPRECATION_MARKERS)]


@pytest.mark.parametrize("name", ["asyncore", "asynchat"])
def test_backport_is_cpython_311_code(name):
    if sys.version_info < (3, 12):
        pytest.skip("the reference is this interpreter's own %s" % name)
    module = {"asyncore": impls.REF_ASYNCORE, "asynchat": impls.REF_ASYNCHAT}[name]
    if module is None:
        pytest.skip("no reference installed: %s" % impls.REFERENCE)
    lib = cpython311_lib()
    if lib is None:
        pytest.skip("no CPython 3.11 installation found to compare the %s backport with "
                    "(set ASYNCHAT_CORE_CPY311_TESTS to its lib/python3.11/test)" % name)
    with open(os.path.join(lib, name + ".py"), encoding="utf-8") as f:
        original = code_lines(f.read())
    backport = code_lines(inspect.getsource(module))
    assert len(original) > 100  # the file read is the module, not a stub
    assert backport == original, (
        "%s (%s) differs from CPython 3.11's %s/%s.py beyond the deprecation warning"
        % (name, module.__file__, lib, name))


def test_the_warning_lines_are_only_the_warning():
    # the lines code_lines() drops from 3.11's modules are exactly its warning
    lib = cpython311_lib()
    if lib is None:
        pytest.skip("no CPython 3.11 installation found")
    for name in ("asyncore", "asynchat"):
        with open(os.path.join(lib, name + ".py"), encoding="utf-8") as f:
            dropped = [line for line in f.read().splitlines()
                       if line.strip() and any(m in line for m in DEPRECATION_MARKERS)]
        assert 3 <= len(dropped) <= 4, dropped
        assert all("deprecat" in line.lower() or "remove" in line for line in dropped), dropped
