"""The excuse ``test_real_users.py`` gives a pyftpdlib test lost in the
full run (issue 23, item 10), checked without running pyftpdlib: the child
runs are replaced by made-up reports.

A lost test is excused as the suite's own race only if it passes again
after the tests that preceded it in the full run, in its order, in one
child, and then alone: a bug that needs state left by earlier tests passes
alone, and must not be excused.
"""
import os
import types

import pytest

import asynchat_core
import test_real_users as real_users

PACKAGE = os.path.dirname(os.path.realpath(asynchat_core.__file__))
OURS = [os.path.join(PACKAGE, "asyncore.py"), os.path.join(PACKAGE, "asynchat.py")]
ORDER = ["test_functional.py::TestA::test_one", "test_functional.py::TestA::test_two",
         "test_ioloop.py::TestB::test_three", "test_ioloop.py::TestB::test_four"]
LOST = ORDER[1]


def _arg(test):
    """pytest's --pyargs argument for the report's node id ``test``."""
    module, rest = test.split("::", 1)
    return "pyftpdlib.test.%s::%s" % (module[:-len(".py")], rest)


def _report(order, outcomes):
    return {"implementation": "python", "package": PACKAGE, "imported": OURS,
            "used_by_pyftpdlib": OURS, "order": list(order), "outcomes": dict(outcomes),
            "cmd": "pytest (made up)", "returncode": 1 if "failed" in outcomes.values() else 0,
            "timed_out": False, "output": ""}


@pytest.fixture
def runs(monkeypatch):
    """Fake child runs.  ``in_order``: what the lost test gives when the
    tests before it run first (alone it always passes); ``made``: the
    argument lists the runs were given."""
    state = types.SimpleNamespace(in_order="passed", made=[])
    full = _report(ORDER, {test: "failed" if test == LOST else "passed" for test in ORDER})
    reference = _report(ORDER, {test: "passed" for test in ORDER})

    def fake_run(target, args):
        state.made.append(list(args))
        ran = [test for test in ORDER if _arg(test) in args]
        outcomes = {test: "passed" for test in ran}
        if len(ran) > 1 and LOST in ran:
            outcomes[LOST] = state.in_order
        return _report(ran, outcomes)

    monkeypatch.setattr(real_users, "_report",
                        lambda target: reference if target == "reference" else full)
    monkeypatch.setattr(real_users, "_run", fake_run)
    monkeypatch.setattr(real_users, "MIN_PASSED", 1)
    monkeypatch.setattr(real_users, "_summary", [])
    return state


def test_a_loss_that_needs_earlier_tests_is_not_excused(runs):
    runs.in_order = "failed"  # a bug through cross-test state: alone it passes
    with pytest.raises(AssertionError, match="rerun after the 1 tests before them, in order"):
        real_users.test_pyftpdlib_on_asynchat_core("python")


def test_a_race_is_excused_after_both_reruns(runs):
    real_users.test_pyftpdlib_on_asynchat_core("python")
    in_order = [_arg(test) for test in ORDER[:2]]
    alone = [[_arg(LOST)]] * real_users.RERUNS
    assert runs.made == [in_order] + alone
    assert len(real_users._summary) == 2


def test_the_rerun_in_order_must_run_what_the_full_run_ran(runs, monkeypatch):
    # a child that skipped the tests before the lost one proves nothing
    def run_only_the_last(target, args):
        test = ORDER[1]
        return _report([test], {test: "passed"})

    monkeypatch.setattr(real_users, "_run", run_only_the_last)
    with pytest.raises(AssertionError, match="ran other tests than the full run's 2"):
        real_users.test_pyftpdlib_on_asynchat_core("python")


def _alone_outcomes(monkeypatch, runs, outcomes):
    """The lost test, run alone, gives ``outcomes`` in turn."""
    made = iter(outcomes)
    fake = real_users._run

    def run(target, args):
        report = fake(target, args)
        if args == [_arg(LOST)]:
            report["outcomes"][LOST] = next(made)
        return report

    monkeypatch.setattr(real_users, "_run", run)


def test_a_loss_that_fails_alone_once_is_not_excused(runs, monkeypatch):
    _alone_outcomes(monkeypatch, runs, ["passed", "failed"] + ["passed"] * 3)
    with pytest.raises(AssertionError, match="reruns of .* alone: \\['passed', 'failed'\\]"):
        real_users.test_pyftpdlib_on_asynchat_core("python")


def test_a_known_race_is_excused_when_it_passes_some_reruns(runs, monkeypatch):
    monkeypatch.setitem(real_users.KNOWN_RACES, LOST, "measured here")
    _alone_outcomes(monkeypatch, runs, ["failed", "passed", "failed", "failed", "passed"])
    real_users.test_pyftpdlib_on_asynchat_core("python")
    assert "passed 2 of 5 reruns alone" in real_users._summary[-1]


def test_a_known_race_that_fails_alone_every_time_is_not_excused(runs, monkeypatch):
    # a failure that is ours repeats, race or not
    monkeypatch.setitem(real_users.KNOWN_RACES, LOST, "measured here")
    _alone_outcomes(monkeypatch, runs, ["failed"] * 5)
    with pytest.raises(AssertionError, match="2 passes needed of 5"):
        real_users.test_pyftpdlib_on_asynchat_core("python")
