# Stub for the compiled module built from asynchat_core/_frame_py.py (Cython
# pure-Python mode, typed by src/asynchat_core/_frame_c.pxd): the same source,
# so the same names and signatures.  Internal, so the stub stays open-ended;
# the public API is typed in framing.pyi and asynchat.pyi.
from typing import Any

def __getattr__(name: str) -> Any: ...
