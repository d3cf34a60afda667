"""Child processes for the tests that run whole suites (CPython's, pyftpdlib's).

Each child runs in its own session, so a timeout kills whatever the suite
started too, and chooses its implementation through the environment, the
way users choose it.
"""
import json
import os
import signal
import subprocess

from asynchat_core import _impl

if os.name == "posix":
    NEW_GROUP = {"start_new_session": True}

    def kill_group(proc):
        """SIGKILL ``proc``'s whole session."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone (its id is not reused while we hold proc)
else:
    NEW_GROUP = {}

    def kill_group(proc):
        """Kill ``proc`` (no process groups here)."""
        proc.kill()


def env_for(implementation, **extra):
    """This environment for a child running ``implementation`` ("python"
    forces the Python build; anything else leaves the choice to the
    package), with ``extra`` variables and unbuffered output (all of it up
    to a crash)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    if implementation == "python":
        env[_impl.ENV_VAR] = "1"
    else:
        env.pop(_impl.ENV_VAR, None)
    return env


def run_logged(cmd, cwd, env, timeout):
    """Run ``cmd`` in ``cwd`` with its output in a file there (no pipe a
    straggler could hold open), then kill its session: nothing it started
    may outlive it.  Returns ``(returncode, timed_out, output)``."""
    log_path = os.path.join(cwd, "output.log")
    # our copy of the file is closed at once: conftest's fd-leak check must
    # not see it while another test runs
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                **NEW_GROUP)
    try:
        returncode, timed_out = proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        returncode, timed_out = proc.wait(), True
    kill_group(proc)
    with open(log_path, "rb") as fh:
        return returncode, timed_out, fh.read().decode("utf-8", "replace")


def read_report(path):
    """The JSON report a child wrote at ``path``, or {} if it wrote none."""
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


class _Summary:
    """A pytest plugin: ``lines`` under ``title`` in the terminal summary."""

    def __init__(self, title, lines):
        self.title = title
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter):
        if self.lines:
            terminalreporter.section(self.title)
            for line in sorted(set(self.lines)):
                terminalreporter.write_line(line)


def show_in_summary(config, title, lines):
    """Show ``lines`` (a list the runs fill as they end) under ``title`` in
    pytest's terminal summary; once per session however often it is called."""
    name = "asynchat_core-summary: " + title
    if config.pluginmanager.get_plugin(name) is None:
        config.pluginmanager.register(_Summary(title, lines), name)
