# Type stubs for asynchat_core.workers.
import socket
from typing import Any, Callable, Optional, Sequence, Union

from . import asyncore

__all__ = ["serve", "listen_on", "on_stop", "stopping", "reuse_port_supported", "worker_index"]

YOUNG: float

def reuse_port_supported() -> bool: ...
def stopping() -> bool: ...
def on_stop(callback: Callable[[], Any]) -> None: ...
def worker_index() -> Optional[int]: ...
def listen_on(listener: asyncore.dispatcher, sock: socket.socket,
              map: Optional[asyncore._MapType] = None) -> asyncore.dispatcher: ...
def serve(
    factory: Callable[[socket.socket], Union[asyncore.dispatcher, Sequence[asyncore.dispatcher]]],
    address: Any,
    workers: Optional[int] = None,
    *,
    family: Optional[int] = None,
    backlog: int = 1024,
    reuse_port: Optional[bool] = None,
    shutdown_timeout: float = 10.0,
    backoff: float = 0.1,
    max_backoff: float = 10.0,
    log: Optional[Callable[[str], Any]] = None,
    ready: Optional[Callable[[Any], Any]] = None,
) -> int: ...
