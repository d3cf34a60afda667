"""Chooses the kernel implementation, once, for the whole package.

``ASYNCHAT_CORE_NO_EXTENSIONS`` (any value but "" or "0") forces the pure
Python twin; off CPython the twin is always used.  If the compiled module is
missing (installed where no compiler was available) the twin is used with a
single warning instead of failing at import.
"""
import os
import sys
import warnings

__all__ = ["ENV_VAR", "IMPLEMENTATION", "chat_kernels", "loop_kernels"]

ENV_VAR = "ASYNCHAT_CORE_NO_EXTENSIONS"


def _extensions_wanted():
    if sys.implementation.name != "cpython":
        return False
    return os.environ.get(ENV_VAR, "") in ("", "0")


if _extensions_wanted():
    try:
        from . import _chat_c as chat_kernels
    except ImportError as exc:  # pragma: no cover - depends on the install
        warnings.warn(
            "asynchat_core: compiled kernels unavailable (%s); "
            "using the pure-Python implementation" % (exc,),
            RuntimeWarning,
            stacklevel=2,
        )
        from . import _chat_py as chat_kernels

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "cython"
else:
    from . import _chat_py as chat_kernels

    IMPLEMENTATION = "python"

# The event loop kernel follows the same choice.
if IMPLEMENTATION == "cython":
    try:
        from . import _loop_c as loop_kernels
    except ImportError as exc:  # pragma: no cover - depends on the install
        warnings.warn(
            "asynchat_core: compiled loop unavailable (%s); "
            "using the pure-Python loop" % (exc,),
            RuntimeWarning,
            stacklevel=2,
        )
        from . import _loop_py as loop_kernels
else:
    from . import _loop_py as loop_kernels
