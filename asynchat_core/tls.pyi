# Type stubs for asynchat_core.tls.  The mixins are typed as subclasses of
# asyncore.dispatcher (their runtime bases are plain ``object``) so that a
# class like ``Handler(TLSMixin, async_chat)`` type-checks its use of the
# channel API; the methods they override keep dispatcher's signatures.
import ssl
from typing import Any, Optional, Tuple

from . import asyncore

__all__ = ["TLSMixin", "TLSListenerMixin"]

_Address = asyncore._Address

class TLSMixin(asyncore.dispatcher):
    tls_context: Optional[ssl.SSLContext]
    tls_handshake_timeout: Optional[float]
    tls_shutdown_timeout: Optional[float]
    def start_tls(
        self,
        context: Optional[ssl.SSLContext] = None,
        *,
        server_side: bool = True,
        server_hostname: Optional[str] = None,
    ) -> bool: ...
    def connect_tls(
        self,
        address: _Address,
        context: Optional[ssl.SSLContext] = None,
        *,
        server_hostname: Optional[str] = None,
    ) -> None: ...
    @property
    def tls_active(self) -> bool: ...
    @property
    def tls_established(self) -> bool: ...
    def getpeercert(self, binary_form: bool = False) -> Any: ...
    def tls_version(self) -> Optional[str]: ...
    def cipher(self) -> Optional[Tuple[str, str, int]]: ...
    def selected_alpn_protocol(self) -> Optional[str]: ...
    def handle_tls_established(self) -> None: ...
    def handle_tls_error(self, exc: BaseException) -> None: ...

class TLSListenerMixin(asyncore.dispatcher):
    tls_context: Optional[ssl.SSLContext]
