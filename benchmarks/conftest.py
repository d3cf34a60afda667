"""Implementations for the pytest-benchmark suites, side by side in one process.

``cython`` is the normally imported ``asynchat_core`` (the compiled build);
``python`` is a second copy of the package imported under another name with
``ASYNCHAT_CORE_NO_EXTENSIONS=1`` (the implementation is chosen at import, so
this is the only way to hold both at once); ``stdlib`` is ``import asyncore,
asynchat`` (CPython <= 3.11, or pyasyncore/pyasynchat on 3.12+).
"""
import importlib.util
import os
import sys

import pytest

import asynchat_core
from asynchat_core.bench.impls import NO_EXT, load_modules

IMPLS = ["cython", "python", "stdlib"]
_cache = {}


def _python_copy():
    name = "_asynchat_core_python"
    if name in sys.modules:
        return sys.modules[name]
    package_dir = os.path.dirname(asynchat_core.__file__)
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(package_dir, "__init__.py"), submodule_search_locations=[package_dir]
    )
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.get(NO_EXT)
    os.environ[NO_EXT] = "1"
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if saved is None:
            del os.environ[NO_EXT]
        else:
            os.environ[NO_EXT] = saved
    assert module.IMPLEMENTATION == "python"
    return module


def modules_for(impl):
    """Return ``(asyncore, asynchat)`` of implementation ``impl``."""
    if impl not in _cache:
        if impl == "cython":
            if os.environ.get(NO_EXT, "") not in ("", "0"):
                pytest.skip("%s is set: no compiled build in this run" % NO_EXT)
            if asynchat_core.IMPLEMENTATION != "cython":
                pytest.fail("compiled build missing: build the extension (pip install -e .)")
            _cache[impl] = (asynchat_core.asyncore, asynchat_core.asynchat)
        elif impl == "python":
            copy = _python_copy()
            _cache[impl] = (copy.asyncore, copy.asynchat)
        else:
            try:
                _cache[impl] = load_modules("stdlib")
            except ImportError as exc:
                pytest.skip("no stdlib asyncore/asynchat: %s" % exc)
    return _cache[impl]


@pytest.fixture(params=IMPLS)
def chat_modules(request):
    """``(name, asyncore, asynchat)`` for each implementation."""
    asyncore, asynchat = modules_for(request.param)
    return request.param, asyncore, asynchat
