"""What the tests that run a whole suite of code no one here wrote share
(``test_real_users.py``: pyftpdlib, ``test_zope_server.py``: zope.server).

Each starts one child run of the suite per target (the reference modules
and asynchat_core's builds) at once, in worker threads, and compares the
targets' reports test by test.  A child writes a JSON report (at least
``outcomes``: test id -> "passed", "failed", "error" or "skipped") and,
when its faulthandler deadline hits, every thread's stack beside it.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

import asynchat_core
from child_procs import read_report, run_logged


@pytest.fixture(autouse=True)
def no_leaks():
    """Replaces conftest's per-test leak check where it is imported: the
    child runs go on in worker threads across the module's tests, with
    their log files open.  Each child is killed with its whole process
    group instead."""
    yield


def run_reporting(cmd, cwd, env, timeout, report_path):
    """``run_logged(cmd, cwd, env, timeout)``, then the child's report at
    ``report_path`` with ``cmd``, ``returncode``, ``timed_out`` and
    ``output`` added (the thread stacks it dumped at its deadline, if any,
    at the output's end)."""
    returncode, timed_out, output = run_logged(cmd, cwd, env, timeout)
    stacks_path = report_path + ".stacks"
    if os.path.exists(stacks_path):
        with open(stacks_path, "rb") as fh:
            stacks = fh.read().decode("utf-8", "replace")
        if stacks:
            output += "\n--- thread stacks at the deadline ---\n" + stacks
    report = read_report(report_path)
    report.update(cmd=" ".join(cmd), returncode=returncode, timed_out=timed_out,
                  output=output)
    return report


def start_runs(request, module, targets, run):
    """Submit ``run(target)`` for "reference" and each of ``targets`` that
    a test of ``module`` collected in this session asks for (a ``target``
    parameter, not skipped, e.g. by --no-compiled), all at once.  Returns
    ``(futures by target, pool)``: shut the pool down at the module's end."""
    wanted = {"reference"}
    for item in request.session.items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if (item.module is module and params and "target" in params
                and item.get_closest_marker("skip") is None):
            wanted.add(params["target"])
    pool = ThreadPoolExecutor(len(targets))
    runs = {target: pool.submit(run, target) for target in targets if target in wanted}
    return runs, pool


def tail(report, chars=6000):
    return "--- output tail ---\n" + report["output"][-chars:]


def check_process(report, timeout):
    """Fail unless the child behind ``report`` ended by itself, wrote its
    report and exited 0 (all passed) or 1 (some failed: the tests judge
    which); any other status is a usage, collection or internal error."""
    cmd = report["cmd"]
    if report["timed_out"]:
        pytest.fail("%s timed out after %ds:\n%s" % (cmd, timeout, tail(report)), pytrace=False)
    if report["returncode"] < 0:
        pytest.fail("%s was killed by signal %d:\n%s"
                    % (cmd, -report["returncode"], tail(report)), pytrace=False)
    if "outcomes" not in report:
        # e.g. faulthandler's deadline: the stacks are in the output
        pytest.fail("%s wrote no report (exit %d):\n%s"
                    % (cmd, report["returncode"], tail(report)), pytrace=False)
    if report["returncode"] not in (0, 1):
        pytest.fail("%s exited with status %d:\n%s"
                    % (cmd, report["returncode"], tail(report)), pytrace=False)


def by_outcome(report, outcome):
    return {test for test, got in report.get("outcomes", {}).items() if got == outcome}


def counts(report):
    """"N passed, N failed, N error, N skipped" for the summary."""
    return ", ".join("%d %s" % (len(by_outcome(report, outcome)), outcome)
                     for outcome in ("passed", "failed", "error", "skipped"))


def lost_passes(report, reference):
    """Assert that ``report`` and ``reference`` hold the same tests; return
    the tests that passed on the reference but not in ``report``, with
    their outcome there."""
    assert set(report["outcomes"]) == set(reference["outcomes"]), (
        "different tests ran: only on the reference %s, only here %s"
        % (sorted(set(reference["outcomes"]) - set(report["outcomes"])),
           sorted(set(report["outcomes"]) - set(reference["outcomes"]))))
    return {test: report["outcomes"][test] for test in by_outcome(reference, "passed")
            if report["outcomes"][test] != "passed"}



def ours_in_use(report, target):
    """Assert that the child behind ``report`` ran ``target`` from the package
    this session tests; return that package's folder."""
    assert report["implementation"] == target
    package = os.path.dirname(os.path.realpath(asynchat_core.__file__))
    assert os.path.realpath(report["package"]) == package
    return package


def enough_passes(report, minimum):
    """Fail unless ``report`` has at least ``minimum`` passes (fewer make a
    comparison with it vacuous)."""
    passed = by_outcome(report, "passed")
    assert len(passed) >= minimum, (
        "only %d tests passed:\n%s" % (len(passed), tail(report)))
