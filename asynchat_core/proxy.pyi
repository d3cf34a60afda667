# Type stubs for asynchat_core.proxy.  The listener mixin is typed as a
# subclass of asyncore.dispatcher (its runtime base is plain ``object``), as
# tls.pyi types TLSListenerMixin.
import socket
from typing import Any, Optional, Sequence, Tuple

from . import asyncore
from ._proxy_types import ProxyError as ProxyError
from ._proxy_types import ProxyHeader as ProxyHeader

__all__ = ["ProxyError", "ProxyHeader", "ProxiedSocket", "ProxyListenerMixin", "header_of",
           "parse", "V1", "V2"]

V1: int
V2: int

def parse(data: bytes, versions: int = ..., v2_limit: int = ...) -> Tuple[int, Optional[ProxyHeader]]: ...

class ProxiedSocket(socket.socket):
    proxy_header: ProxyHeader
    proxy_peer: Any
    def getpeername(self) -> Any: ...

def header_of(obj: Any) -> Optional[ProxyHeader]: ...

class ProxyListenerMixin(asyncore.dispatcher):
    proxy_versions: int
    proxy_timeout: float
    proxy_allow: Optional[Sequence[Any]]
    proxy_v2_limit: int
    proxy_max_pending: int
