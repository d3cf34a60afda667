"""The test binding itself (impls.py, conftest.py): each parameter really runs
the implementation it names, and the reference is not asynchat_core."""
import importlib.metadata
import os
import subprocess
import sys
import sysconfig

import pytest

import impls
from asynchat_core import _chat_py, _impl, _loop_py, _runner
from asynchat_core import asynchat as ac_asynchat
from asynchat_core import asyncore as ac_asyncore


def _installed(distribution):
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_reference_is_the_stdlib_or_its_backport():
    if sys.version_info < (3, 12):
        stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
        for module in (impls.REF_ASYNCORE, impls.REF_ASYNCHAT):
            assert os.path.realpath(module.__file__).startswith(stdlib + os.sep), module
    elif _installed("pyasynchat") and _installed("pyasyncore"):
        purelib = os.path.realpath(sysconfig.get_paths()["purelib"])
        assert os.path.realpath(impls.REF_ASYNCHAT.__file__) == os.path.join(
            purelib, "asynchat", "__init__.py")
        assert os.path.realpath(impls.REF_ASYNCORE.__file__) == os.path.join(
            purelib, "asyncore", "__init__.py")
    else:
        pytest.fail("no reference implementation on Python 3.12+: the test extra "
                    "installs pyasyncore and pyasynchat (pip install '.[test]')")
    assert impls.REF_ASYNCHAT.async_chat.__mro__[1] is impls.REF_ASYNCORE.dispatcher
    assert "asynchat_core" not in impls.REF_ASYNCHAT.__file__


def test_each_parameter_runs_what_it_names(impl):
    chat = impl.asynchat.async_chat
    if impl.is_reference:
        assert impl.asynchat is impls.REF_ASYNCHAT
        assert chat.handle_read.__module__ == "asynchat"
        return
    assert impl.asynchat is ac_asynchat and impl.asyncore is ac_asyncore
    # the bound implementation's functions are what the classes call
    assert chat.handle_read is impl.chat.chat_handle_read
    assert ac_asyncore.dispatcher.recv is impl.loop.dispatcher_recv
    assert _runner._loop_impl is impl.loop
    compiled = impl.name == "cython"
    for module in (impl.chat, impl.loop):
        assert module.__file__.endswith((".so", ".pyd")) is compiled, module.__file__
    if not compiled:
        assert (impl.chat, impl.loop) == (_chat_py, _loop_py)


def test_bind_restores_the_selected_implementation():
    selected = (_impl.chat_impl, _impl.loop_impl)
    for name in impls.available(impls.OURS):
        other = impls.get(name)
        with other.bind():
            assert ac_asynchat.async_chat.push is other.chat.chat_push
        assert ac_asynchat.async_chat.push is selected[0].chat_push
        assert _runner._loop_impl is selected[1]


def _pytest(args, env, tests=("test_each_parameter_runs_what_it_names",)):
    """Run this file's parameter test (or ``tests``) in a child pytest; its output."""
    here = os.path.abspath(__file__)
    environ = {k: v for k, v in os.environ.items() if k != _impl.ENV_VAR}
    environ.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [here + "::" + test for test in tests] + ["-k", "python or cython or bind"] + args,
        cwd=os.path.dirname(here), env=environ, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_selected_build_only_deselects_the_implementation_parameters():
    # CI's second pass: the parametrized tests ran on every implementation
    # in the first; what is left uses the build the environment selected
    tests = ("test_each_parameter_runs_what_it_names",
             "test_bind_restores_the_selected_implementation")
    rc, out = _pytest(["--no-compiled", "--selected-build-only"], {_impl.ENV_VAR: "1"}, tests)
    assert rc == 0 and "1 passed, 3 deselected" in out, out  # (stdlib: by -k)
    rc, out = _pytest(["--no-compiled"], {_impl.ENV_VAR: "1"}, tests)
    assert rc == 0 and "2 passed, 1 skipped" in out, out


def test_no_compiled_flag_skips_the_compiled_parameters():
    rc, out = _pytest(["--no-compiled"], {_impl.ENV_VAR: "1"})
    assert rc == 0 and "1 passed, 1 skipped" in out, out
    rc, out = _pytest([], {_impl.ENV_VAR: "1"})
    assert rc == 0 and "2 passed" in out, out


def test_no_compiled_flag_refuses_a_compiled_install():
    if _impl.IMPLEMENTATION != "cython":
        pytest.skip("needs the compiled implementation selected")
    rc, out = _pytest(["--no-compiled"], {})
    assert rc == 4, out  # pytest's usage error
    assert "IMPLEMENTATION is 'cython', expected 'python'" in out
