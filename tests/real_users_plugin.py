"""pytest plugin for the child runs of ``test_real_users.py`` and ``test_waitress.py``.

Loaded with ``-p real_users_plugin`` before the third-party suite is
collected, so ``asynchat_core.install()`` (for the ``python`` and ``cython``
targets) comes before the suite imports ``asyncore``/``asynchat``; the
``reference`` target leaves the interpreter's own modules (CPython <= 3.11)
or the pyasyncore/pyasynchat backports (3.12+) in place.  It writes a JSON
report: which modules were really in use, and the outcome of every test
and the order in which they ran.

Environment: REAL_USERS_TARGET (reference, python or cython),
REAL_USERS_REPORT (the JSON file to write), REAL_USERS_DEADLINE (seconds
after which every thread's stack is dumped into REAL_USERS_REPORT +
".stacks" and the run exits), REAL_USERS_HARD_EXIT=1 (``os._exit`` at the
end of the session).
"""
import faulthandler
import json
import os
import sys
import time
import warnings

TARGET = os.environ["REAL_USERS_TARGET"]
REPORT = os.environ["REAL_USERS_REPORT"]

if TARGET != "reference":
    import asynchat_core

    asynchat_core.install()

# what "import asyncore" gives from here on (the reference: the stdlib's,
# or on 3.12+ the backports; an ImportError fails the run)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat
    import asyncore

# A hang must end with the stacks on record, before the parent's kill.
# Into a file of their own: pytest captures fd 2 while a test runs, and
# that capture is lost when faulthandler exits the process.
_stacks = open(REPORT + ".stacks", "w")
_deadline = time.monotonic() + float(os.environ.get("REAL_USERS_DEADLINE", "100"))


def _arm():
    faulthandler.dump_traceback_later(max(0.1, _deadline - time.monotonic()),
                                      exit=True, file=_stacks)


_arm()


def pytest_exception_interact(node, call, report):
    # pytest's faulthandler plugin cancels any pending dump at every failure
    # (its hook runs first): start ours again
    _arm()


_outcomes = {}
_order = []  # node ids in the order they ran (the report's dicts are sorted)
# worst first: a test keeps the worst outcome of its setup, call and teardown
_RANK = {"error": 0, "failed": 1, "skipped": 2, "passed": 3}


def _module_file(module):
    return os.path.realpath(getattr(module, "__file__", None) or "")


def _used_by(module_name):
    module = sys.modules.get(module_name)
    if module is None:
        return None
    return [_module_file(getattr(module, name, None)) for name in ("asyncore", "asynchat")]


def _asyncore_of(module_name):
    # the asyncore a third-party module holds (waitress has no asynchat)
    module = sys.modules.get(module_name)
    held = getattr(module, "asyncore", None)
    return _module_file(held) if held is not None else None


def pytest_runtest_logreport(report):
    if report.when == "call":
        outcome = report.outcome  # passed, failed, skipped
    elif report.failed:
        outcome = "error"  # setup or teardown raised
    else:
        outcome = "skipped" if report.skipped else "passed"
    old = _outcomes.get(report.nodeid)
    if old is None:
        _order.append(report.nodeid)
    if old is None or _RANK[outcome] < _RANK[old]:
        _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session, exitstatus):
    faulthandler.cancel_dump_traceback_later()
    info = {
        "target": TARGET,
        "python": sys.version.split()[0],
        # what "import asyncore/asynchat" gave, and what the third-party
        # code really holds (pyftpdlib's IOLoop module)
        "imported": [_module_file(asyncore), _module_file(asynchat)],
        "used_by_pyftpdlib": _used_by("pyftpdlib.ioloop"),
        "implementation": None,
        "package": None,
        "outcomes": _outcomes,
        "order": _order,
        "pyftpdlib": getattr(sys.modules.get("pyftpdlib"), "__ver__", None),
        # test_waitress.py: the asyncore waitress's channel and trigger hold
        "asyncore_used_by_waitress": [_asyncore_of("waitress.channel"),
                                      _asyncore_of("waitress.trigger")],
        "exitstatus": int(exitstatus),
    }
    if TARGET != "reference":
        info["implementation"] = asynchat_core.IMPLEMENTATION
        info["package"] = os.path.dirname(os.path.realpath(asynchat_core.__file__))
    with open(REPORT, "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)
    _exit_status[:] = [int(exitstatus)]


_exit_status = []


def pytest_unconfigure(config):
    # REAL_USERS_HARD_EXIT=1: end the process once the report is written, so
    # that a server process a failed test of the suite left running (waitress
    # starts one per test class) cannot hold the interpreter's exit
    if os.environ.get("REAL_USERS_HARD_EXIT") == "1" and _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])
