"""A strictly annotated TLS server and client on asynchat_core.tls (mypy sample)."""
import ssl
import socket
from typing import List, Optional, Tuple

from asynchat_core import asynchat, asyncore
from asynchat_core.tls import TLSListenerMixin, TLSMixin


class LineHandler(TLSMixin, asynchat.async_chat):
    tls_handshake_timeout = 10.0

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        asynchat.async_chat.__init__(self, sock)
        self.context = context
        self.buf: List[bytes] = []
        self.set_terminator(b"\r\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.buf.append(data)

    def found_terminator(self) -> None:
        line = b"".join(self.buf)
        self.buf = []
        if line == b"STARTTLS":
            self.push(b"220 ready\r\n")
            self.start_tls(self.context)
        else:
            version: Optional[str] = self.tls_version()
            self.push(line + b" " + (version or "plain").encode() + b"\r\n")

    def handle_tls_error(self, exc: BaseException) -> None:
        self.log_info("tls: %s" % exc, "error")
        self.close()


class Server(TLSListenerMixin, asyncore.dispatcher):
    def __init__(self, context: ssl.SSLContext, addr: Tuple[str, int]) -> None:
        asyncore.dispatcher.__init__(self)
        self.tls_context = context
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(addr)
        self.listen(5)

    def handle_accepted(self, sock: socket.socket, addr: Tuple[str, int]) -> None:
        assert self.tls_context is not None
        LineHandler(sock, self.tls_context)


class Client(TLSMixin, asynchat.async_chat):
    def __init__(self, addr: Tuple[str, int], context: ssl.SSLContext) -> None:
        asynchat.async_chat.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect_tls(addr, context, server_hostname="localhost")

    def handle_tls_established(self) -> None:
        cert = self.getpeercert()
        self.push(b"hello %d\r\n" % len(str(cert)))
