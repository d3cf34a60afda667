"""CPython's own test suites for asyncore, asynchat and their clients, run
against asynchat_core.

Each suite runs in a subprocess of this interpreter (``tests/cpython_suite.py``)
from a temporary directory, so the tests' scratch files stay out of the
checkout and the package is imported the way users import it.
test_asyncore and test_asynchat run against both kernels in every pytest
run, whatever ``ASYNCHAT_CORE_NO_EXTENSIONS`` says; the suites of the
stdlib's asyncore clients (ftplib, poplib, smtpd, smtplib, logging's
SMTPHandler, ssl's asyncore echo server, and os.sendfile's tests up to 3.10) run against the kernel this session tests, which
keeps CI's ten pytest runs short.  The runs the selected tests need start
together when the module's first test runs, SUITE_JOBS at a time: they
mostly wait on sockets and timers, so the module takes about as long as
its slowest suite.

On 3.9-3.11 the interpreter's own modules give the baseline: every test
that passes against the stdlib must pass against asynchat_core.  On 3.12+
the suites come from a CPython 3.11 installation and must pass outright,
but for a few tests of APIs 3.12 removed.  smtpd, which left the stdlib in
3.12, is CPython 3.11's own there (cpython_suite.py imports it from the same
installation), running on asynchat_core as users' copies of it do; a suite
that does not load fails.
Whatever the baseline does, a run fails if it hangs, crashes, or leaves
threads running.

The pass counts are printed in pytest's terminal summary.
"""
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import asynchat_core
import impls
from child_procs import env_for, read_report, run_logged, show_in_summary

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "cpython_suite.py")
# Seconds per suite run; the slowest (test_ftplib) takes about 11.  The
# runner dumps every thread's stack and exits 10 s before; the process
# group is killed at TIMEOUT if it is still there.
TIMEOUT = 120
# faulthandler.dump_traceback_later's header (after unittest's dots)
DUMP_HEADER = re.compile(r"Timeout \(\d+:\d\d:\d\d\)!\n")
HAS_STDLIB = sys.version_info < (3, 12)
EXIT_LOAD_ERROR = 2  # cpython_suite.py: the suite does not import
# Suite runs at once: the slowest two (test_ftplib, test_poplib) against
# both the stdlib and asynchat_core.  No failure in repeated runs on two
# CPUs kept busy by three other processes.
SUITE_JOBS = 4

# Minimum number of tests each suite must run: guards against a suite that
# silently loads nothing (3.9-3.11 run the number in the comment).
CORE_SUITES = {"test_asyncore": 80, "test_asynchat": 20}  # 101, 25
CLIENT_SUITES = {
    "test_ftplib": 90,  # 94
    "test_poplib": 68,  # 71
    "test_smtpd": 150,  # 153
    "test_smtplib": 78,  # 82
    "test_os:TestSendfile": 9,  # 10 on 3.9/3.10, half of them skipped on Linux
    "test_logging:SMTPHandlerTest": 1,  # 1
    # a TLS echo server on dispatcher_with_send: do_handshake() driven from
    # handle_read, and readable() that calls handle_read_event() while the
    # SSL socket has pending bytes
    "test_ssl:ThreadedTests.test_asyncore_server": 1,  # 1
}
MIN_RUN = dict(CORE_SUITES, **CLIENT_SUITES)
IMPLEMENTATIONS = impls.params(impls.OURS)

# 3.11 tests of parameters 3.12 removed (keyfile/certfile, gh-94172): they
# fail on 3.12+ with a TypeError before any server is involved.
FAILS_ON_312 = {
    "test.test_ftplib.TestTLS_FTPClass.test_context",
    "test.test_poplib.TestPOP3_SSLClass.test_context",
}
# 3.11's TestSendfile serves on asyncio; 3.9's and 3.10's on asyncore.  From
# 3.11 on (and on 3.12+, which run 3.11's suites) it would exercise asyncio,
# not this library: it is not run, so its tests do not pad the counts.
NO_ASYNCORE_IN_311 = {"test_os:TestSendfile"}


def _skip_if_not_ours(module):
    if module in NO_ASYNCORE_IN_311 and sys.version_info >= (3, 11):
        pytest.skip("%s uses asyncio from 3.11 on, not asyncore: it would not "
                    "exercise asynchat_core" % module)

# test.support's threading_cleanup() prints these when a test leaves
# threads behind (its "Warning -- " prefix is from support.print_warning).
DANGLING_MARKERS = ("Warning -- threading_cleanup() failed", "Warning -- Dangling thread:")

_summary = []


@pytest.fixture(scope="module", autouse=True)
def _summary_plugin(request):
    show_in_summary(request.config, "CPython suites", _summary)
    yield


def _runs_needed(item):
    """The run_suite() calls the test ITEM will make."""
    params = getattr(item, "callspec", None) and item.callspec.params
    if not params or item.module is not sys.modules[__name__]:
        return []
    module = params["module"]
    if module in NO_ASYNCORE_IN_311 and sys.version_info >= (3, 11):
        return []  # not run (_skip_if_not_ours)
    runs = [("stdlib", module, None)] if HAS_STDLIB else []
    if item.originalname == "test_cpython_suite":
        runs.append(("asynchat_core", module, params["implementation"]))
    elif item.originalname == "test_cpython_client_suite":
        runs.append(("asynchat_core", module, asynchat_core.IMPLEMENTATION))
    return runs


_futures = {}


@pytest.fixture(autouse=True)
def no_leaks():
    """Replaces conftest's per-test leak check in this module: suite runs
    go on in worker threads across tests, with their log files and pipes
    open, so a test's fd snapshot would see the next runs' descriptors.
    Each suite child reports its own leftover threads instead
    (``_check_process``), and the suites check their own fds."""
    yield


@pytest.fixture(scope="module", autouse=True)
def _start_suites(request):
    """Start every suite run the selected tests need, SUITE_JOBS at a time.

    Module-scoped, so the worker threads exist before conftest's per-test
    leak check takes its snapshot.
    """
    pool = ThreadPoolExecutor(SUITE_JOBS)
    for item in request.session.items:
        for key in _runs_needed(item):
            if key not in _futures:
                _futures[key] = pool.submit(_run_suite, *key)
    yield
    pool.shutdown(wait=True, cancel_futures=True)


def _execute(cmd, cwd, env):
    """``run_logged``, and a run the runner ended at its own deadline (its
    stack dump in the output) counts as timed out."""
    returncode, timed_out, output = run_logged(cmd, cwd, env, TIMEOUT)
    # (3.12.1's faulthandler may even crash while dumping)
    return returncode, timed_out or bool(DUMP_HEADER.search(output)), output


def _status(report):
    if report["timed_out"]:
        return "timed out after %ds" % (TIMEOUT - 10)
    if report["returncode"] < 0:
        return "killed by %s" % _signal_name(-report["returncode"])
    if "load_error" in report:
        return "not loaded: %s" % report["load_error"]
    if "run" not in report:
        return "no report (exit %d)" % report["returncode"]
    failed = set(report["failed"])
    known = set() if HAS_STDLIB else failed & FAILS_ON_312
    status = "%3d run, %3d passed, %d failed, %d skipped" % (
        report["run"], len(report["passed"]), len(failed - known), len(report["skipped"]))
    if known:
        status += ", %d failed on an API 3.12 removed" % len(known)
    if report["threads_left"] or report["dangling"]:
        status += ", %d thread(s) left, %d dangling-thread warning(s)" % (
            len(report["threads_left"]), report["dangling"])
    return status


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def run_suite(target, module, implementation=None):
    """The report of one suite run, started by _start_suites or now."""
    key = (target, module, implementation)
    if key not in _futures:
        _futures[key] = Future()
        _futures[key].set_result(_run_suite(*key))
    return _futures[key].result()


def _run_suite(target, module, implementation):
    """Run one suite in a subprocess; its JSON report, plus how it ended.

    Never fails by itself, so _futures keeps a broken run too: the tests
    judge the report (``_check_process``).
    """
    # mkdtemp + rmtree(ignore_errors): Windows may still hold a file the suite
    # left open, and TemporaryDirectory only tolerates that from 3.10 on.
    cwd = tempfile.mkdtemp(prefix="ac-cpython-suite-")
    try:
        report_path = os.path.join(cwd, "report.json")
        cmd = [sys.executable, RUNNER, target, module, "--json", report_path,
               "--timeout", str(TIMEOUT)]
        returncode, timed_out, output = _execute(cmd, cwd, env_for(implementation))
        report = read_report(report_path)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    report.update(
        cmd=" ".join(cmd),
        returncode=returncode,
        timed_out=timed_out,
        output=output,
        # (a marker may follow unittest's dots on the same line)
        dangling=sum(output.count(marker) for marker in DANGLING_MARKERS),
    )
    label = "%s[%s]" % (target, implementation) if implementation else target
    _summary.append("Python %s %-28s %-21s: %s" % (
        platform.python_version(), module, label, _status(report)))
    return report


def _tail(report, chars=6000):
    return "--- output tail ---\n" + report["output"][-chars:]


def _check_process(report):
    """Fail on what no baseline excuses: a hang, a crash, leftover threads."""
    cmd, returncode = report["cmd"], report["returncode"]
    if report["timed_out"]:
        pytest.fail("%s timed out (thread stacks dumped after %ds):\n%s"
                    % (cmd, TIMEOUT - 10, _tail(report)), pytrace=False)
    if returncode < 0:
        pytest.fail("%s was killed by %s:\n%s" % (cmd, _signal_name(-returncode), _tail(report)),
                    pytrace=False)
    if "run" not in report and "load_error" not in report:
        # The runner exits before writing a report when the suite file is
        # missing or imports the wrong asyncore: a failure, never a skip.
        pytest.fail("%s wrote no report (exit %d):\n%s" % (cmd, returncode, _tail(report)),
                    pytrace=False)
    if returncode not in (0, 1, EXIT_LOAD_ERROR):
        # e.g. a Windows access violation after the report was written
        pytest.fail("%s exited with status %d:\n%s" % (cmd, returncode, _tail(report)),
                    pytrace=False)
    if report.get("threads_left") or report["dangling"]:
        pytest.fail("%s left threads running: %s after the suite, %d dangling-thread "
                    "warning(s) from test.support:\n%s"
                    % (cmd, report.get("threads_left") or "none", report["dangling"],
                       _tail(report)), pytrace=False)


def _check_loaded(report, module):
    """Fail a suite that does not load: it would silently not run (e.g. a
    Debian python3.X without its -testsuite package lacks test.mock_socket;
    .ci/debian-python.sh fetches it)."""
    error = report.get("load_error")
    if error is not None:
        pytest.fail("%s does not load: %s\n%s" % (report["file"], error, _tail(report)),
                    pytrace=False)


def _check_common(report, module):
    path = report["file"]
    assert path and os.path.exists(path), "suite file missing: %r" % (path,)
    if not HAS_STDLIB:
        # 3.12+ has no such tests of its own: the 3.11 copy must be used.
        assert "3.11" in path, path
    assert report["run"] >= MIN_RUN[module], "only %d tests ran in %s" % (report["run"], path)


def _failure_text(report, ids):
    return "%d test(s) failed:\n  %s\n%s" % (len(ids), "\n  ".join(sorted(ids)), _tail(report))


def _check_against_baseline(report, module):
    """Every test the stdlib passes must pass; on 3.12+ every test but FAILS_ON_312."""
    if HAS_STDLIB:
        baseline = run_suite("stdlib", module)
        assert "passed" in baseline, "no stdlib baseline for %s: see test_stdlib_baseline" % module
        lost = set(baseline["passed"]) - set(report["passed"])
        assert not lost, _failure_text(report, lost)
    else:
        failed = set(report["failed"]) - FAILS_ON_312
        assert not failed, _failure_text(report, failed)


def _check_asynchat_core(module, implementation):
    report = run_suite("asynchat_core", module, implementation)
    _check_process(report)
    _check_loaded(report, module)
    _check_common(report, module)
    assert report["implementation"] == implementation
    # The subprocess must have imported the same package this session tests.
    expected_pkg = os.path.dirname(os.path.abspath(asynchat_core.__file__))
    assert os.path.realpath(report["package"]) == os.path.realpath(expected_pkg)
    _check_against_baseline(report, module)
    return report


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("module", sorted(CORE_SUITES))
def test_cpython_suite(module, implementation):
    _check_asynchat_core(module, implementation)


@pytest.mark.parametrize("module", sorted(CLIENT_SUITES))
def test_cpython_client_suite(module):
    _skip_if_not_ours(module)
    report = _check_asynchat_core(module, asynchat_core.IMPLEMENTATION)
    # The runner checked that every asyncore/asynchat the suite refers to is
    # asynchat_core's; here, that it refers to one at all.
    assert report["uses"], "%s uses neither asyncore nor asynchat" % report["file"]


@pytest.mark.skipif(not HAS_STDLIB, reason="asyncore/asynchat left the stdlib in 3.12")
@pytest.mark.parametrize("module", sorted(MIN_RUN))
def test_stdlib_baseline(module):
    _skip_if_not_ours(module)
    report = run_suite("stdlib", module)
    _check_process(report)
    _check_loaded(report, module)
    _check_common(report, module)
    assert report["implementation"] is None
    # A baseline that fails more than the slack MIN_RUN leaves would make
    # the comparison vacuous (skipped tests count: they are not compared).
    passed, skipped = len(report["passed"]), len(report["skipped"])
    assert passed + skipped >= MIN_RUN[module], _failure_text(report, report["failed"])
