"""Shared fixtures: kernel selection and leak checks.

Whole-module behaviour follows ``ASYNCHAT_CORE_NO_EXTENSIONS`` (CI runs the
suite twice).  Kernel-level tests use the ``kernels`` fixture, which binds
``asynchat_core.asynchat`` to one kernel module for the test: the Cython
parameter imports the compiled module directly, so a missing build fails
instead of silently testing the pure twin twice.
"""
import os

import pytest

import asynchat_core
from asynchat_core import _chat_py, _impl
from asynchat_core import asynchat as ac_asynchat

KERNEL_NAMES = ["python", "cython"]


def _kernel_module(name):
    if name == "python":
        return _chat_py
    from asynchat_core import _chat_c  # no fallback: a missing build must fail

    return _chat_c


def pytest_report_header(config):
    return "asynchat_core %s, IMPLEMENTATION=%s, %s=%r" % (
        asynchat_core.__version__,
        asynchat_core.IMPLEMENTATION,
        _impl.ENV_VAR,
        os.environ.get(_impl.ENV_VAR, ""),
    )


def pytest_sessionstart(session):
    # The default run must really exercise the extension.
    wants_pure = os.environ.get(_impl.ENV_VAR, "") not in ("", "0")
    expected = "python" if wants_pure else "cython"
    if asynchat_core.IMPLEMENTATION != expected:
        raise pytest.UsageError(
            "asynchat_core.IMPLEMENTATION is %r, expected %r: build the extension "
            "(pip install .) or set %s=1" % (asynchat_core.IMPLEMENTATION, expected, _impl.ENV_VAR)
        )


@pytest.fixture(params=KERNEL_NAMES)
def kernels(request, monkeypatch):
    """The kernel module under test, bound into asynchat_core.asynchat."""
    module = _kernel_module(request.param)
    monkeypatch.setattr(ac_asynchat, "_InBuffer", module.InBuffer)
    monkeypatch.setattr(ac_asynchat, "_chat_feed", module.chat_feed)
    monkeypatch.setattr(ac_asynchat, "_chat_drain", module.chat_drain)
    monkeypatch.setattr(ac_asynchat, "find_prefix_at_end", module.find_prefix_at_end)
    return module
