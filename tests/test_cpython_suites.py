"""CPython's own test_asyncore / test_asynchat, run against asynchat_core.

Each suite runs in a subprocess of this interpreter (``tests/cpython_suite.py``)
from a temporary directory, so the tests' scratch files stay out of the
checkout and the package is imported the way users import it.  Both kernels
are exercised in every pytest run, whatever ``ASYNCHAT_CORE_NO_EXTENSIONS``
says, and on 3.9-3.11 the interpreter's own modules give the baseline: every
test that passes against the stdlib must pass against asynchat_core.  On 3.12+
the suites come from a CPython 3.11 installation and must pass outright.

The pass counts are printed in pytest's terminal summary.
"""
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import asynchat_core
from asynchat_core import _impl

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "cpython_suite.py")
TIMEOUT = 300  # seconds per suite run; they take a few seconds normally
HAS_STDLIB = sys.version_info < (3, 12)

# Minimum number of tests each suite must run: guards against a suite that
# silently loads nothing (3.11 has 101 and 25).
MIN_RUN = {"test_asyncore": 80, "test_asynchat": 20}
IMPLEMENTATIONS = ["cython", "python"]

_summary = []


class _SummaryPlugin:
    """Writes the collected pass counts into pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter):
        if not _summary:
            return
        terminalreporter.section("CPython suites")
        for line in sorted(set(_summary)):
            terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def _summary_plugin(request):
    manager = request.config.pluginmanager
    name = "asynchat_core-cpython-suites-summary"
    if manager.get_plugin(name) is None:
        manager.register(_SummaryPlugin(), name)
    yield


def _env_for(implementation):
    env = dict(os.environ)
    if implementation == "python":
        env[_impl.ENV_VAR] = "1"
    else:
        env.pop(_impl.ENV_VAR, None)
    return env


@functools.lru_cache(maxsize=None)
def run_suite(target, module, implementation=None):
    """Run one suite in a subprocess and return its JSON report."""
    # mkdtemp + rmtree(ignore_errors): Windows may still hold a file the suite
    # left open, and TemporaryDirectory only tolerates that from 3.10 on.
    cwd = tempfile.mkdtemp(prefix="ac-cpython-suite-")
    try:
        report_path = os.path.join(cwd, "report.json")
        cmd = [sys.executable, RUNNER, target, module, "--json", report_path]
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                env=_env_for(implementation),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.output or b"").decode("utf-8", "replace")
            pytest.fail("%s timed out after %ss:\n%s" % (" ".join(cmd), TIMEOUT, output[-4000:]))
        output = proc.stdout.decode("utf-8", "replace")
        if not os.path.exists(report_path):
            # The runner exits before writing a report when the suite file is
            # missing: that is a failure, never a skip.
            pytest.fail("%s wrote no report (exit %d):\n%s"
                        % (" ".join(cmd), proc.returncode, output[-4000:]))
        with open(report_path) as fh:
            report = json.load(fh)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    report["returncode"] = proc.returncode
    report["output"] = output
    label = "%s[%s]" % (target, implementation) if implementation else target
    _summary.append(
        "Python %s %-13s %-21s: %3d run, %3d passed, %d failed, %d skipped"
        % (
            report["python"], module, label, report["run"],
            len(report["passed"]), len(report["failed"]), len(report["skipped"]),
        )
    )
    return report


def _check_common(report, module):
    path = report["file"]
    assert path and os.path.exists(path), "suite file missing: %r" % (path,)
    if not HAS_STDLIB:
        # 3.12+ has no asyncore tests of its own: the 3.11 copy must be used.
        assert "3.11" in path, path
    assert report["run"] > MIN_RUN[module], "only %d tests ran in %s" % (report["run"], path)


def _failure_text(report, ids):
    return "%d test(s) failed:\n  %s\n--- output tail ---\n%s" % (
        len(ids), "\n  ".join(sorted(ids)), report["output"][-6000:])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("module", sorted(MIN_RUN))
def test_cpython_suite(module, implementation):
    report = run_suite("asynchat_core", module, implementation)
    _check_common(report, module)
    assert report["implementation"] == implementation
    # The subprocess must have imported the same package this session tests.
    expected_pkg = os.path.dirname(os.path.abspath(asynchat_core.__file__))
    assert os.path.realpath(report["package"]) == os.path.realpath(expected_pkg)
    if HAS_STDLIB:
        baseline = run_suite("stdlib", module)
        lost = set(baseline["passed"]) - set(report["passed"])
        assert not lost, _failure_text(report, lost)
    else:
        assert not report["failed"], _failure_text(report, report["failed"])
        assert report["returncode"] == 0, report["output"][-6000:]


@pytest.mark.skipif(not HAS_STDLIB, reason="asyncore/asynchat left the stdlib in 3.12")
@pytest.mark.parametrize("module", sorted(MIN_RUN))
def test_stdlib_baseline(module):
    report = run_suite("stdlib", module)
    _check_common(report, module)
    assert report["implementation"] is None
    # A baseline that passes almost nothing would make the comparison vacuous.
    assert len(report["passed"]) > MIN_RUN[module], _failure_text(report, report["failed"])
