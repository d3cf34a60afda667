"""Chooses the implementation, once, for the whole package.

``IMPLEMENTATION`` is "cython" (the compiled build) or "python" (the Python
build).  ``ASYNCHAT_CORE_NO_EXTENSIONS`` (any value but "" or "0") forces
the Python build; off CPython, and on a free-threaded CPython build, it is
always used.  If a compiled module is missing (installed where no compiler
was available) the Python build is used for both modules, with a single
warning, instead of failing at import: the chat and loop modules always
come from the same implementation.
"""
import os
import sys
import warnings

__all__ = ["ENV_VAR", "IMPLEMENTATION", "chat_impl", "gil_disabled_build", "loop_impl"]

ENV_VAR = "ASYNCHAT_CORE_NO_EXTENSIONS"


def gil_disabled_build():
    """Whether this CPython is a free-threaded build (3.13t, 3.14t, ...)."""
    if not hasattr(sys, "_is_gil_enabled"):
        return False  # (free-threaded builds exist from 3.13 on, which all have it)
    # Their ABI flags say so ("t", PEP 703) where the interpreter has flags;
    # sysconfig (a slow import that loads threading on 3.13+: issue 18) only
    # where it has none (Windows before 3.14).
    flags = getattr(sys, "abiflags", None)
    if flags is not None:
        return "t" in flags
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _extensions_wanted():
    if sys.implementation.name != "cpython":
        return False
    if gil_disabled_build():
        # free-threaded CPython: nothing is compiled for it (setup.py), by
        # design and without a warning; see docs/platforms.md
        return False
    return os.environ.get(ENV_VAR, "") in ("", "0")


def _load_compiled():
    try:
        from . import _chat_c, _loop_c
    except ImportError:  # pragma: no cover - depends on the install
        # (the ImportError's own text is misleading here: Python calls the
        # package "partially initialized", as it is while importing these)
        warnings.warn(
            "asynchat_core: compiled modules not installed; using the "
            "Python implementation (same behaviour, slower). Install a "
            "wheel, or set %s=1 to choose it explicitly." % (ENV_VAR,),
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return _chat_c, _loop_c


_compiled = _load_compiled() if _extensions_wanted() else None
if _compiled is not None:
    chat_impl, loop_impl = _compiled
    IMPLEMENTATION = "cython"
else:
    from . import _chat_py as chat_impl
    from . import _loop_py as loop_impl

    IMPLEMENTATION = "python"
del _compiled
