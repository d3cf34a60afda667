"""Code no one here wrote: pysnmp 4.4's asyncore carrier on asynchat_core.

pysnmp 4.4 (the last line on asyncore) runs SNMP over UDP: an
``asyncore.dispatcher`` on a datagram socket (``recvfrom``/``sendto`` on
``self.socket``, ``writable()`` while its queue holds packets) in a map of
its own, driven by ``loop(use_poll=True, count=1)`` between its timer
ticks.  An agent (pysnmp's command responder) and a manager (its hlapi:
GET, GETNEXT walk, GETBULK, a missing object, and a target nobody serves,
answered by its timers and one retry) run as two child processes
(``pysnmp_child.py``) on the same asyncore; asynchat_core's two builds must
give exactly what the reference asyncore (the interpreter's, or pyasyncore
on 3.12+) gives.
"""
import json
import os
import select
import subprocess
import sys
import time

import pytest

import impls
from child_procs import NEW_GROUP, env_for, kill_group

# (no skip when it is missing: the test extra installs it)
import pysnmp  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "pysnmp_child.py")


def _exchange(target, tmp_path):
    """Start an agent on ``target``, run the manager against it; its report."""
    env = env_for(target)
    agent = subprocess.Popen([sys.executable, CHILD, target, "agent"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **NEW_GROUP)
    try:
        deadline = time.monotonic() + 30
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([agent.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(agent.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        if not line.strip().isdigit():
            kill_group(agent)
            rest = agent.stdout.read()
            pytest.fail("the agent did not start:\n%s" % (line + rest).decode(errors="replace")[-3000:])
        report = tmp_path / ("%s.json" % target)
        manager = subprocess.run([sys.executable, CHILD, target, "manager", line.strip(),
                                  str(report)], env=env, capture_output=True, text=True,
                                 timeout=120)
        assert manager.returncode == 0, manager.stdout[-2000:] + manager.stderr[-2000:]
        assert agent.poll() is None, "the agent died during the exchange"
        return json.loads(report.read_text())
    finally:
        kill_group(agent)
        agent.wait()
        agent.stdout.close()


def _reference_available():
    if sys.version_info < (3, 12):
        return True
    import importlib.util
    return importlib.util.find_spec("asyncore") is not None  # pyasyncore


@pytest.mark.parametrize("target", impls.params(impls.OURS))
def test_pysnmp_agent_and_manager_get_what_the_reference_gets(target, tmp_path):
    ours = _exchange(target, tmp_path)
    assert ours["asyncore"].startswith("asynchat_core") and ours["implementation"] == target
    # what an SNMP exchange must give, whatever the reference does
    assert ours["get"][0] is None and ours["get"][3][0][0] == "1.3.6.1.2.1.1.1.0"
    assert ours["get"][3][0][2].startswith("PySNMP engine")
    assert ours["missing"][3][0][1] == "NoSuchObject"
    assert [row[2][0][0] for row in ours["walk"]] == [
        "1.3.6.1.2.1.1.%d.0" % i for i in range(1, 9)]
    assert ours["bulk"] and all(row[0] is None for row in ours["bulk"])
    assert ours["dead"][0] == "No SNMP response received before timeout"
    if not _reference_available():
        pytest.skip("no reference asyncore on this Python (pyasyncore is in the test extra)")
    reference = _exchange("reference", tmp_path)
    assert not reference["asyncore"].startswith("asynchat_core")
    for key in ("get", "missing", "walk", "bulk", "dead", "maps_left"):
        assert ours[key] == reference[key], key
