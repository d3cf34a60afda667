"""Typing: the stubs describe the runtime, and a legacy-style server type-checks.

The mypy checks run only where mypy is installed (the ``typing`` extra);
they check whichever ``asynchat_core`` is imported, so the same tests run
against the source tree, an editable install, or an installed wheel.  The
sample server itself always runs over loopback, so it cannot drift from the
API it type-checks against.
"""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import asynchat_core

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "typing_samples")
SAMPLE = os.path.join(SAMPLES, "legacy_server.py")
PACKAGE_DIR = os.path.dirname(os.path.abspath(asynchat_core.__file__))
REPO_ROOT = os.path.dirname(HERE)
# the package is checked with the repository's own config when there is one
REPO_CONFIG = os.path.join(REPO_ROOT, "pyproject.toml")
MYPY_TIMEOUT = 600


def _mypy_available():
    try:
        import mypy.api  # noqa: F401
    except ImportError:
        return False
    return True


# CI sets ASYNCHAT_CORE_REQUIRE_OPTIONAL=1 on the job that installs the
# typing extra: a missing mypy then fails instead of skipping unseen
if not _mypy_available() and os.environ.get("ASYNCHAT_CORE_REQUIRE_OPTIONAL", "") not in ("", "0"):
    raise ImportError("ASYNCHAT_CORE_REQUIRE_OPTIONAL is set but mypy is not installed "
                      "(pip install -e '.[test,typing]')")
needs_mypy = pytest.mark.skipif(
    not _mypy_available(), reason="mypy not installed (pip install -e '.[typing]')"
)


def _run(args, cwd, env=None):
    proc = subprocess.run(
        [sys.executable, "-m"] + args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=MYPY_TIMEOUT,
    )
    return proc.returncode, proc.stdout


def _copy_package(dest):
    """Copy the imported package (stubs, sources, compiled kernels) to dest."""
    target = os.path.join(dest, "asynchat_core")
    shutil.copytree(
        PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "bench")
    )
    if asynchat_core.IMPLEMENTATION != "cython":
        # no compiled module to compare its stub with
        try:
            __import__("asynchat_core._chat_c")
        except ImportError:
            os.remove(os.path.join(target, "_chat_c.pyi"))
    return dest


def test_sample_server_runs():
    sys.path.insert(0, SAMPLES)
    try:
        import legacy_server
    finally:
        sys.path.remove(SAMPLES)
    replies, seen = legacy_server.run_exchange([b"hello", b"mixed Case", b""])
    assert replies == [b"HELLO", b"MIXED CASE", b"", b"BYE"]
    assert seen == 4


@needs_mypy
def test_sample_server_mypy_strict(tmp_path):
    # A copy of the package beside the sample: mypy then reads exactly the
    # stubs and py.typed that ship, whether asynchat_core is installed as a
    # wheel, editable, or not at all.
    root = _copy_package(str(tmp_path))
    shutil.copy(SAMPLE, root)
    code, out = _run(
        ["mypy", "--strict", "--no-incremental", "--no-error-summary",
         "--config-file", os.devnull, "legacy_server.py"],
        cwd=root,
    )
    assert code == 0, out


@needs_mypy
def test_stubs_match_runtime(tmp_path):
    root = _copy_package(str(tmp_path))
    config = os.path.join(root, "stubtest.ini")
    with open(config, "w") as f:
        # stubtest compares stubs with the runtime; mypy --strict checks the
        # code itself (test_package_mypy_strict)
        f.write("[mypy]\nignore_errors = True\nignore_missing_imports = True\n")
    env = dict(os.environ, PYTHONPATH=root)
    code, out = _run(
        ["mypy.stubtest", "asynchat_core", "--mypy-config-file", config,
         "--allowlist", os.path.join(SAMPLES, "stubtest_allowlist.txt"),
         "--ignore-unused-allowlist"],
        cwd=root,
        env=env,
    )
    assert code == 0, out


@needs_mypy
@pytest.mark.skipif(
    not os.path.exists(REPO_CONFIG)
    or os.path.dirname(PACKAGE_DIR) != REPO_ROOT,
    reason="checks the source tree with its pyproject.toml [tool.mypy]",
)
def test_package_mypy_strict():
    purelib = sysconfig.get_paths()["purelib"]
    assert not PACKAGE_DIR.startswith(purelib)
    code, out = _run(["mypy", "--no-incremental"], cwd=REPO_ROOT)
    assert code == 0, out
