"""Code no one here wrote: pyinotify's AsyncNotifier (an
``asyncore.file_dispatcher`` subclass) on asynchat_core.

pyinotify imports ``asyncore`` at its top, so on 3.12+ it needs
``asynchat_core.install()`` first: the drop-in case.  Each run is a child
process (``pyinotify_child.py``) that makes the same file-system changes
and records what pyinotify delivers through ``asyncore.loop(count=1)``;
asynchat_core's two builds must see exactly the events the reference
asyncore (the interpreter's, or pyasyncore on 3.12+) sees, for both of
``use_poll``'s modes, with real inotify descriptors.
"""
import json
import os
import subprocess
import sys

import pytest

import impls
from child_procs import env_for

if not sys.platform.startswith("linux"):
    pytest.skip("inotify is Linux's", allow_module_level=True)
# (no skip when it is missing: the test extra installs it on Linux)
import pyinotify  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "pyinotify_child.py")


def _run(target, use_poll, tmp_path):
    report = tmp_path / ("%s-%d.json" % (target, use_poll))
    proc = subprocess.run([sys.executable, CHILD, target, str(int(use_poll)), str(report)],
                          env=env_for(target), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(report.read_text())


def _reference_available():
    if sys.version_info < (3, 12):
        return True
    import importlib.util
    return importlib.util.find_spec("asyncore") is not None  # pyasyncore


@pytest.mark.parametrize("use_poll", [False, True], ids=["select-mode", "poll-mode"])
@pytest.mark.parametrize("target", impls.params(impls.OURS))
def test_pyinotify_sees_what_the_reference_sees(target, use_poll, tmp_path):
    ours = _run(target, use_poll, tmp_path)
    assert ours["asyncore"].startswith("asynchat_core"), ours["asyncore"]
    assert ours["implementation"] == target
    # every step delivered what it causes, and nothing on a quiet pass
    for step in ours["steps"]:
        assert step["enough"], step
    assert ours["quiet_pass"] == {"events": [], "waited": True}
    assert ours["reads"] and ours["map_after_stop"] == 1 and ours["map_after_close"] == 0
    assert ours["steps"][0]["events"] == [["IN_CREATE", "a.txt"], ["IN_CLOSE_WRITE", "a.txt"]]
    if not _reference_available():
        pytest.skip("no reference asyncore on this Python (pyasyncore is in the test extra)")
    reference = _run("reference", use_poll, tmp_path)
    assert not reference["asyncore"].startswith("asynchat_core")
    for key in ("steps", "quiet_pass", "reads", "map_after_stop", "map_after_close"):
        assert ours[key] == reference[key], key
