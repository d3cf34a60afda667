# Stub for the compiled module built from asynchat_core/_loop_py.py (Cython's
# pure-Python mode, typed by src/asynchat_core/_loop_c.pxd): the same names as
# _loop_py.  It is internal, so the stub stays open-ended: changes to the loop
# need no stub edit.
# The public API that uses it is typed in asyncore.pyi / asynchat.pyi.
from typing import Any

def __getattr__(name: str) -> Any: ...
