"""Shared fixtures: the implementations under test, and leak checks.

Implementations are bound in one place, ``impls.py``: the ``impl`` fixture
runs a test against each of ``stdlib`` (the reference), ``python`` and
``cython``; ``our_impl`` against asynchat_core's two only.  The ``cython``
parameters carry the ``compiled`` marker; ``--no-compiled`` skips them
(an install made without a compiler).  Tests that take neither fixture use
what ``ASYNCHAT_CORE_NO_EXTENSIONS`` selected (CI runs the suite both ways).
Every parameter naming an implementation carries the ``implementation``
marker; ``--selected-build-only`` deselects those tests, for CI's second
pass: its compiled pass already ran them, on every implementation.
"""
import os

import pytest

import asynchat_core
import impls
from asynchat_core import _impl


def pytest_addoption(parser):
    parser.addoption(
        "--no-compiled", action="store_true",
        help="skip the compiled implementation's parameters and expect "
             "IMPLEMENTATION == 'python' (an install made without a compiler)",
    )
    parser.addoption(
        "--selected-build-only", action="store_true",
        help="run only the tests that use the build ASYNCHAT_CORE_NO_EXTENSIONS "
             "selected: deselect those parametrized over implementations "
             "(for a second pass after one that ran them all)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "compiled: runs asynchat_core's compiled modules")
    config.addinivalue_line("markers", "implementation: a parameter naming an implementation")
    impls.compiled_enabled = not config.getoption("--no-compiled")


def pytest_report_header(config):
    return "asynchat_core %s, IMPLEMENTATION=%s, %s=%r, reference: %s" % (
        asynchat_core.__version__,
        asynchat_core.IMPLEMENTATION,
        _impl.ENV_VAR,
        os.environ.get(_impl.ENV_VAR, ""),
        impls.REFERENCE,
    )


def pytest_sessionstart(session):
    # The default run must really exercise the extension.
    wants_python = session.config.getoption("--no-compiled") or (
        os.environ.get(_impl.ENV_VAR, "") not in ("", "0"))
    expected = "python" if wants_python else "cython"
    if asynchat_core.IMPLEMENTATION != expected:
        raise pytest.UsageError(
            "asynchat_core.IMPLEMENTATION is %r, expected %r: build the extension "
            "(pip install .), set %s=1, or pass --no-compiled"
            % (asynchat_core.IMPLEMENTATION, expected, _impl.ENV_VAR)
        )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--selected-build-only"):
        chosen = [item for item in items if not item.get_closest_marker("implementation")]
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("implementation")])
        items[:] = chosen
    if config.getoption("--no-compiled"):
        skip = pytest.mark.skip(reason="--no-compiled")
        for item in items:
            if item.get_closest_marker("compiled"):
                item.add_marker(skip)


# Tests of real tools skip where a tool is missing (a developer's machine);
# CI installs them (.ci/run's APT_PACKAGES) and sets
# ASYNCHAT_CORE_REQUIRE_TOOLS=1, so such a skip there is a failure, never a
# test silently not run.
_TOOLS = ("haproxy", "nginx", "wrk", "redis-cli", "redis-benchmark", "openssl", "no openssl",
          "needs a C compiler")
_REQUIRE_TOOLS = os.environ.get("ASYNCHAT_CORE_REQUIRE_TOOLS", "") not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (_REQUIRE_TOOLS and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2])
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: "):]
    if reason.startswith(_TOOLS) or reason.startswith("needs wrk"):
        report.outcome = "failed"
        report.longrepr = ("ASYNCHAT_CORE_REQUIRE_TOOLS=1, but the test skipped: %s" % reason)


def _bound(name):
    impl = impls.get(name)
    if impl is None:
        pytest.skip("no reference implementation: %s" % impls.REFERENCE)
    with impl.bind():
        yield impl


@pytest.fixture(params=impls.params(impls.NAMES))
def impl(request):
    """Each implementation (an ``impls.Impl``), bound for the test."""
    yield from _bound(request.param)


@pytest.fixture(params=impls.params(impls.OURS))
def our_impl(request):
    """asynchat_core's implementations only (an ``impls.Impl``), bound for the test."""
    yield from _bound(request.param)


@pytest.fixture(params=impls.BACKENDS)
def backend(request, our_impl):
    """Each event backend, for each of asynchat_core's implementations."""
    return request.param


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
