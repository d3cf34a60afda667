"""Shared fixtures: kernel selection and leak checks.

Whole-module behaviour follows ``ASYNCHAT_CORE_NO_EXTENSIONS`` (CI runs the
suite twice).  Kernel-level tests use the ``kernels`` fixture, which binds
``asynchat_core.asynchat`` to one kernel module for the test: the Cython
parameter imports the compiled module directly, so a missing build fails
instead of silently testing the pure twin twice.
"""
import os

import pytest

import asynchat_core
from asynchat_core import _chat_py, _impl, _loop_py
from asynchat_core import asynchat as ac_asynchat
from asynchat_core import asyncore as ac_asyncore

KERNEL_NAMES = ["python", "cython"]


def _kernel_module(name):
    if name == "python":
        return _chat_py
    from asynchat_core import _chat_c  # no fallback: a missing build must fail

    return _chat_c


def _loop_module(name):
    if name == "python":
        return _loop_py
    from asynchat_core import _loop_c  # no fallback: a missing build must fail

    return _loop_c


def pytest_report_header(config):
    return "asynchat_core %s, IMPLEMENTATION=%s, %s=%r" % (
        asynchat_core.__version__,
        asynchat_core.IMPLEMENTATION,
        _impl.ENV_VAR,
        os.environ.get(_impl.ENV_VAR, ""),
    )


def pytest_sessionstart(session):
    # The default run must really exercise the extension.
    wants_pure = os.environ.get(_impl.ENV_VAR, "") not in ("", "0")
    expected = "python" if wants_pure else "cython"
    if asynchat_core.IMPLEMENTATION != expected:
        raise pytest.UsageError(
            "asynchat_core.IMPLEMENTATION is %r, expected %r: build the extension "
            "(pip install .) or set %s=1" % (asynchat_core.IMPLEMENTATION, expected, _impl.ENV_VAR)
        )


@pytest.fixture(params=KERNEL_NAMES)
def kernels(request):
    """The chat module under test, bound into asynchat_core.asynchat (and
    the loop module of the same build into asyncore.dispatcher)."""
    module = _kernel_module(request.param)
    previous = ac_asynchat._use_impl(module)
    previous_loop = ac_asyncore._use_impl(_loop_module(request.param))

    def restore():
        ac_asyncore._use_impl(previous_loop)
        ac_asynchat._use_impl(previous)

    request.addfinalizer(restore)
    return module


def _open_fds():
    try:
        return set(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc (macOS, Windows): fd check skipped
        return None


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves fds, threads or socket_map entries behind.

    Snapshots before and after each test, so fds pytest itself holds are
    ignored; fds opened during the test get a short grace period for
    sockets closed by a thread that is still finishing.
    """
    import threading
    import time

    from asynchat_core import asyncore as ac_asyncore

    fds_before = _open_fds()
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        fds = _open_fds()
        leaked_fds = sorted(fds - fds_before) if fds is not None and fds_before is not None else []
        if not (threads or leaked_fds) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    problems = []
    if ac_asyncore.socket_map:
        problems.append("asyncore.socket_map not empty: %r" % (ac_asyncore.socket_map,))
        ac_asyncore.close_all(ignore_all=True)
    if threads:
        problems.append("threads left running: %r" % threads)
    if leaked_fds:
        targets = []
        for fd in leaked_fds:
            try:
                targets.append("%s->%s" % (fd, os.readlink("/proc/self/fd/" + fd)))
            except OSError:
                targets.append(fd)  # closed meanwhile, or the listing's own fd
        problems.append("fds leaked: %s" % ", ".join(targets))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


# Hypothesis: reproducible (derandomized, no example database) so CI runs
# are identical.  HYPOTHESIS_PROFILE picks the size of every fuzzing test
# (the Hypothesis tests here, and the examples/time budgets that
# tests/test_fuzz_kernels.py and tests/test_hostile_python.py read from the
# same variable, in this process and in the children they start):
#   quick    the default: a plain `python -m pytest` takes about 3 minutes
#            on 2 cores (README "The two commands")
#   dev      smaller still (cibuildwheel's wheel tests, QEMU)
#   ci       the large run: .ci/run and GitHub CI use it on one
#            interpreter/kernel combination each
#   nightly  the long run (with ASYNCHAT_CORE_NIGHTLY=1)
DEFAULT_HYPOTHESIS_PROFILE = "quick"
os.environ.setdefault("HYPOTHESIS_PROFILE", DEFAULT_HYPOTHESIS_PROFILE)
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    _common = dict(
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.register_profile("ci", max_examples=2000, **_common)
    settings.register_profile("nightly", max_examples=50000, **_common)
    settings.register_profile("dev", max_examples=100, **_common)
    settings.register_profile("quick", max_examples=200, **_common)
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
