"""asynchat_core: CPython 3.11's asyncore and asynchat, fast, on 3.9-3.15.

    from asynchat_core import asyncore, asynchat   # explicit use
    import asynchat_core; asynchat_core.install()  # legacy ``import asyncore``

``IMPLEMENTATION`` is ``"cython"`` (the compiled build) or ``"python"`` (the
Python build: the same source run as plain Python; forced by
``ASYNCHAT_CORE_NO_EXTENSIONS=1``).
"""

import sys

from . import asynchat, asyncore
from ._impl import IMPLEMENTATION
from .asynchat import async_chat, find_prefix_at_end, simple_producer
from .asyncore import (
    ExitNow,
    close_all,
    dispatcher,
    dispatcher_with_send,
    loop,
    socket_map,
)

# here, not in a module of its own: one file fewer to import (issue 18);
# pyproject.toml reads it from this file without importing the package
__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATION", "__version__", "install", "uninstall",
    "asyncore", "asynchat", "async_chat", "simple_producer",
    "find_prefix_at_end", "dispatcher", "dispatcher_with_send", "loop",
    "close_all", "socket_map", "ExitNow",
]

_MODULES = {"asyncore": asyncore, "asynchat": asynchat}
_replaced = {}


def install(force=True):
    """Make ``import asyncore`` / ``import asynchat`` return these modules.

    Works on every supported Python, including 3.12+ where the stdlib has no
    such modules.  With ``force=False``, modules already imported under those
    names (the stdlib's, or the pyasyncore/pyasynchat backports) are kept.
    Returns the names that now point at asynchat_core.
    """
    installed = []
    for name, module in _MODULES.items():
        previous = sys.modules.get(name)
        if previous is module:
            installed.append(name)
            continue
        if previous is not None and not force:
            continue
        _replaced.setdefault(name, previous)
        sys.modules[name] = module
        installed.append(name)
    return installed


def uninstall():
    """Undo ``install()``: restore whatever the names pointed at before."""
    for name, previous in list(_replaced.items()):
        if sys.modules.get(name) is _MODULES[name]:
            if previous is None:
                del sys.modules[name]
            else:
                sys.modules[name] = previous
        del _replaced[name]
