"""Child of ``test_zope_server.py``: zope.server's own suite under
zope.testrunner, in the venv that holds zope.server, on one target.

Run by that venv's interpreter (not the one under test), so it imports
asynchat_core from ``ZOPE_RUN_PACKAGE_PARENT`` (the directory holding the
package being tested: same interpreter version, so its compiled build
loads).  ``reference`` leaves the interpreter's asyncore/asynchat (3.9-3.11)
or the pyasyncore/pyasynchat backports in that venv (3.12+); ``python`` and
``cython`` call ``asynchat_core.install()`` before zope.server is imported.

Writes a JSON report to ZOPE_RUN_REPORT: the outcome of every test (taken
from zope.testrunner's result object), which modules "import asyncore"
gave and which ones zope.server's modules hold.  After ZOPE_RUN_DEADLINE
seconds every thread's stack goes to ZOPE_RUN_REPORT + ".stacks" and the
run exits.
"""
import faulthandler
import json
import os
import sys
import warnings

TARGET = os.environ["ZOPE_RUN_TARGET"]
REPORT = os.environ["ZOPE_RUN_REPORT"]

if TARGET != "reference":
    sys.path.insert(0, os.environ["ZOPE_RUN_PACKAGE_PARENT"])
    import asynchat_core

    asynchat_core.install()

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat
    import asyncore

_stacks = open(REPORT + ".stacks", "w")
faulthandler.dump_traceback_later(float(os.environ.get("ZOPE_RUN_DEADLINE", "100")),
                                  exit=True, file=_stacks)

from zope.testrunner import runner  # noqa: E402

_outcomes = {}
_order = []
# worst first: a test keeps the worst outcome it was given
_RANK = {"error": 0, "failed": 1, "skipped": 2, "passed": 3}


def _recorder(outcome, original):
    def record(self, test, *args):
        name = test.id()
        old = _outcomes.get(name)
        if old is None:
            _order.append(name)
        if old is None or _RANK[outcome] < _RANK[old]:
            _outcomes[name] = outcome
        return original(self, test, *args)
    return record


for _method, _outcome in (("addSuccess", "passed"), ("addFailure", "failed"),
                          ("addError", "error"), ("addSkip", "skipped"),
                          ("addUnexpectedSuccess", "failed"),
                          ("addExpectedFailure", "passed")):
    setattr(runner.TestResult, _method,
            _recorder(_outcome, getattr(runner.TestResult, _method)))


def _file(module):
    return os.path.realpath(getattr(module, "__file__", None) or "")


def _write_report(exit_code):
    faulthandler.cancel_dump_traceback_later()
    holders = {}
    for name in ("zope.server.serverbase", "zope.server.dualmodechannel",
                 "zope.server.trigger", "zope.server.http.wsgihttpserver",
                 "zope.server.ftp.server"):
        module = sys.modules.get(name)
        holders[name] = _file(getattr(module, "asyncore", None)) if module else None
    info = {
        "target": TARGET,
        "imported": [_file(asyncore), _file(asynchat)],
        "held_by_zope_server": holders,
        "outcomes": _outcomes,
        "order": _order,
        "exit_code": exit_code,
        "implementation": None,
        "package": None,
    }
    if TARGET != "reference":
        info["implementation"] = asynchat_core.IMPLEMENTATION
        info["package"] = os.path.dirname(os.path.realpath(asynchat_core.__file__))
    with open(REPORT, "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)


def main():
    import zope.server

    site = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(zope.server.__file__))))
    code = 2
    try:
        # run_internal returns True when something failed (run() would exit)
        from zope.testrunner import run_internal
        failed = run_internal(defaults=["--test-path", site, "-s", "zope.server"],
                              args=[sys.argv[0]] + sys.argv[1:])
        code = 1 if failed else 0
    finally:
        _write_report(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
