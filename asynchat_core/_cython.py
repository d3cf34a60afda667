"""Stand-in for Cython's ``cython`` module, used by the Python build.

The Python implementation's modules (``_loop_py.py``, ``_chat_py.py``,
``_frame_py.py``) are also the source of the compiled build (setup.py
``PURE_MODE``, Cython's pure-Python mode), so the Cython compiler must see
them import ``cython`` by that name.  Run as Python they take this module
instead, whether or not Cython is installed: Cython's own shadow module
loads ``typing`` and took half the Python build's import time (issue 18).
The choice is the module's own name, which the build fixes (compiled
modules are ``asynchat_core._*_c``, the Python ones ``asynchat_core._*_py``)::

    if __name__.endswith("_c"):  # compiled by Cython (setup.py PURE_MODE)
        import cython
    else:  # run as Python
        from ._cython import cython

Compiled, ``import cython`` is Cython's compile-time module,
``cython.compiled`` is a compile-time True and the other branch is dropped;
run as Python it is False here.  Only what those modules use is provided:
decorators are no-ops, type names are placeholders, and the pointer helpers
(``NULL``, ``address``) exist for completeness: only compiled code reads
them (under ``if cython.compiled:``).

``cython`` is a module object, like Cython's shadow module: the modules test
``cython.compiled`` on hot paths, and CPython 3.11+ specialises an
attribute read from a module (a plain object's class attribute is not).
"""

import types

__all__ = ["cython"]


def _no_op_decorator(*args, **kwargs):
    # bare (@cython.final) or called (@cython.locals(n=cython.Py_ssize_t))
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    return lambda func: func


cython = types.ModuleType("cython", "Stand-in for Cython's shadow module (see asynchat_core._cython).")
cython.compiled = False  # type: ignore[attr-defined]
for _name in ("locals", "final", "cfunc", "ccall", "inline", "exceptval"):
    setattr(cython, _name, _no_op_decorator)
# type names used in cython.locals(...) arguments: any value will do
for _name in ("int", "bint", "double", "Py_ssize_t", "longlong", "ulonglong"):
    setattr(cython, _name, object)
del _name
cython.NULL = None  # type: ignore[attr-defined]
cython.address = lambda obj: obj  # type: ignore[attr-defined]
