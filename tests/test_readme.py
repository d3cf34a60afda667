"""What README.md promises a newcomer: the quickstart runs as printed, and
``install()`` behaves beside a backport as the Install section says.

The backport is a stand-in: ``asyncore.py``/``asynchat.py`` files on the
child's path, found by the normal import system as pyasyncore/pyasynchat
would be (they install top-level modules of those names).
"""
import os
import re
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_section(title):
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index("\n## " + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def _child(code, path_extra=(), timeout=60):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*path_extra, ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_quickstart_runs_as_printed():
    blocks = re.findall(r"```python\n(.*?)```", _readme_section("Quickstart"), re.S)
    assert len(blocks) == 1
    proc = _child(blocks[0], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["HELLO", "WORLD"]
    assert proc.stderr == ""


def _backport(tmp_path):
    # what pyasyncore/pyasynchat install: top-level modules of those names,
    # the backport's asynchat importing the backport's asyncore
    (tmp_path / "asyncore.py").write_text("BACKPORT = True\nclass dispatcher:\n    pass\n")
    (tmp_path / "asynchat.py").write_text(
        "import asyncore\nBACKPORT = True\nclass async_chat(asyncore.dispatcher):\n    pass\n")
    return [str(tmp_path)]


def _run(code, tmp_path):
    proc = _child(textwrap.dedent(code), _backport(tmp_path))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_backport_beside_us_without_install(tmp_path):
    out = _run("""
        import asynchat_core, asyncore, asynchat
        from asynchat_core import asyncore as ours
        print(hasattr(asyncore, "BACKPORT"), hasattr(asynchat, "BACKPORT"), ours is not asyncore)
    """, tmp_path)
    assert out == ["True", "True", "True"]


def test_install_wins_over_a_backport_not_yet_imported_even_without_force(tmp_path):
    for force in ("True", "False"):
        out = _run("""
            import asynchat_core
            names = asynchat_core.install(force=%s)
            import asyncore, asynchat
            print(asyncore is asynchat_core.asyncore, asynchat is asynchat_core.asynchat,
                  ",".join(sorted(names)))
        """ % force, tmp_path)
        assert out == ["True", "True", "asynchat,asyncore"], force


def test_install_replaces_an_imported_backport_and_uninstall_restores_it(tmp_path):
    out = _run("""
        import asyncore as b_core, asynchat as b_chat
        import asynchat_core
        asynchat_core.install()
        import asyncore, asynchat
        print(asyncore is asynchat_core.asyncore, asynchat is asynchat_core.asynchat)
        asynchat_core.uninstall()
        import asyncore, asynchat
        print(asyncore is b_core, asynchat is b_chat)
    """, tmp_path)
    assert out == ["True", "True", "True", "True"]


def test_install_without_force_decides_per_name(tmp_path):
    # the pitfall the README warns about: only the backport's asyncore was
    # imported, so force=False keeps it and installs our asynchat beside it
    out = _run("""
        import asyncore as b_core
        import asynchat_core
        names = asynchat_core.install(force=False)
        import asyncore, asynchat
        print(asyncore is b_core, asynchat is asynchat_core.asynchat, ",".join(names))
    """, tmp_path)
    assert out == ["True", "True", "asynchat"]
