# Stub for the compiled module built from asynchat_core/_chat_py.py (Cython
# pure-Python mode, typed by src/asynchat_core/_chat_c.pxd): the same source,
# so the same names and signatures.  It is internal, so the stub stays
# open-ended: changes to the chat module need no stub edit.  The public API
# that uses it is typed in asyncore.pyi / asynchat.pyi.
from typing import Any

def __getattr__(name: str) -> Any: ...
