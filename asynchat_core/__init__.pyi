# Type stubs for the asynchat_core package namespace.
from typing import List
from typing_extensions import Literal

from . import asynchat as asynchat, asyncore as asyncore
from .asynchat import (
    async_chat as async_chat,
    find_prefix_at_end as find_prefix_at_end,
    simple_producer as simple_producer,
)
from .asyncore import (
    ExitNow as ExitNow,
    close_all as close_all,
    dispatcher as dispatcher,
    dispatcher_with_send as dispatcher_with_send,
    loop as loop,
    socket_map as socket_map,
)

__all__ = [
    "IMPLEMENTATION", "__version__", "install", "uninstall",
    "asyncore", "asynchat", "async_chat", "simple_producer",
    "find_prefix_at_end", "dispatcher", "dispatcher_with_send", "loop",
    "close_all", "socket_map", "ExitNow",
]
__version__: str
# "cython" (the compiled build) or "python" (the Python build)
IMPLEMENTATION: Literal["cython", "python"]

def install(force: bool = True) -> List[str]: ...
def uninstall() -> None: ...
