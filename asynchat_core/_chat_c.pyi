# Stub for the compiled module built from src/asynchat_core/_chat_c.pyx.  It
# mirrors asynchat_core._chat_py (the pure specification) name for name and is
# internal, so the stub stays open-ended: kernel changes need no stub edit.
# The public API that uses it is typed in asyncore.pyi / asynchat.pyi.
from typing import Any

def __getattr__(name: str) -> Any: ...
