"""Stand-in for Cython's ``cython`` module, for the Python build without Cython.

The Python implementation's modules (``_loop_py.py``, ``_chat_py.py``) are
also the source of the compiled build (setup.py ``PURE_MODE``, Cython's
pure-Python mode), so they import ``cython`` by that
name, which the Cython compiler recognises, and fall back to this module
when Cython is not installed::

    try:
        import cython
    except ImportError:  # run as plain Python without Cython installed
        from ._cython import cython

Compiled, ``cython.compiled`` is a compile-time True and the other branch is
dropped; run as Python it is False here and in Cython's own shadow module.
Only what those modules use is provided: decorators are no-ops.

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
