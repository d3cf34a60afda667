"""TLS servers of the benchmark: one handler, four ways to put TLS under it.

The echo and HTTP handlers are the ones of ``servers.py`` (asynchat style,
written once against a module pair).  TLS comes from:

- asynchat_core: its public API, ``asynchat_core.tls`` (``TLSListenerMixin``
  wraps at accept, ``TLSMixin`` drives the handshake in the loop);
- the stdlib asynchat: ``HandRolledTLS`` below, the mixin legacy servers
  carry (CPython's test_ftplib and test_poplib have one of this shape):
  handshake steps in the event handlers, "want read/write" turned into "no
  data yet", one ``SSLSocket.send`` per ``initiate_send``;
- asyncio and uvloop: ``loop.create_server(..., ssl=context)`` with the
  Protocols of ``servers.py``.

Every server prints ``PORT <n>`` when listening (``worker._ready``) and
serves until its process is stopped.
"""
import ssl
from typing import Any

from .servers import make_asyncio_protocols, make_chat_servers, new_event_loop

_SSL_WANT = (ssl.SSL_ERROR_WANT_READ, ssl.SSL_ERROR_WANT_WRITE)
_SSL_GONE = (ssl.SSL_ERROR_EOF, ssl.SSL_ERROR_ZERO_RETURN)


def server_context(certfile, keyfile):
    """The server-side context every implementation uses (TLS 1.2+, default ciphers)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def make_hand_rolled_mixin(asyncore):
    """Return ``HandRolledTLS``, a legacy-style TLS mixin for channels of ``asyncore``.

    Put it first in the bases and call ``secure_connection(context)`` once
    the plain socket is set.  Written for this benchmark in the manner of
    the mixins legacy asyncore servers carry; it is the baseline the
    asynchat_core API is measured against, so it does what they do and no
    more: no output coalescing, no handshake deadline, one TLS record per
    ``send``.
    """
    Dispatcher: Any = asyncore.dispatcher

    class HandRolledTLS(Dispatcher):
        _tls_accepting = False
        _tls_closing = False

        def secure_connection(self, context):
            wrapped = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)
            # re-register the wrapped socket under the same fd
            self.del_channel()
            self.set_socket(wrapped)
            self._tls_accepting = True

        def _tls_step_handshake(self):
            try:
                self.socket.do_handshake()
            except ssl.SSLError as err:
                if err.args[0] in _SSL_WANT:
                    return
                # a peer that hangs up or fails the handshake: drop it
                self.handle_close()
                return
            except OSError:
                self.handle_close()
                return
            self._tls_accepting = False

        def _tls_step_shutdown(self):
            try:
                self.socket.unwrap()
            except ssl.SSLError as err:
                if err.args[0] in _SSL_WANT:
                    return
            except OSError:
                pass
            self._tls_closing = False
            Dispatcher.close(self)

        def handle_read_event(self):
            if self._tls_accepting:
                self._tls_step_handshake()
            elif self._tls_closing:
                self._tls_step_shutdown()
            else:
                super().handle_read_event()

        def handle_write_event(self):
            if self._tls_accepting:
                self._tls_step_handshake()
            elif self._tls_closing:
                self._tls_step_shutdown()
            else:
                super().handle_write_event()

        def send(self, data):
            try:
                return super().send(data)
            except ssl.SSLError as err:
                if err.args[0] in _SSL_WANT or err.args[0] in _SSL_GONE:
                    return 0
                raise

        def recv(self, buffer_size):
            try:
                return super().recv(buffer_size)
            except ssl.SSLError as err:
                if err.args[0] in _SSL_WANT:
                    return b""
                if err.args[0] in _SSL_GONE:
                    self.handle_close()
                    return b""
                raise

        def close(self):
            # best effort close_notify, never blocking the loop
            if isinstance(self.socket, ssl.SSLSocket) and self.connected and not self._tls_closing:
                try:
                    self.socket.unwrap()
                except (OSError, ValueError):
                    pass
            Dispatcher.close(self)

        def handle_error(self):
            # a benchmark peer that resets is no reason for a traceback
            self.handle_close()

    return HandRolledTLS


def run_stdlib_tls_server(asyncore, asynchat, kind, context, ready):
    """Serve ``kind`` over TLS on ``(asyncore, asynchat)`` with ``HandRolledTLS``."""
    classes, Server = make_chat_servers(asyncore, asynchat)
    Mixin: Any = make_hand_rolled_mixin(asyncore)
    Base: Any = classes[kind]

    class Channel(Mixin, Base):
        def __init__(self, sock, store=None, map=None):
            Base.__init__(self, sock, store, map)
            self.secure_connection(context)

    server = Server(Channel)
    ready(server.port)
    asyncore.loop(timeout=1.0)


def run_core_tls_server(kind, context, ready):
    """Serve ``kind`` over TLS with the public API of ``asynchat_core.tls``."""
    from asynchat_core import asynchat, asyncore
    from asynchat_core.tls import TLSListenerMixin, TLSMixin

    classes, Server = make_chat_servers(asyncore, asynchat)
    Base: Any = classes[kind]
    Listener: Any = Server

    class Channel(TLSMixin, Base):
        pass

    class TLSServer(TLSListenerMixin, Listener):
        tls_context = context

        def __init__(self, channel_class):
            Listener.__init__(self, channel_class)

    server = TLSServer(Channel)
    ready(server.port)
    asyncore.loop(timeout=1.0)


def run_asyncio_tls_server(loop_name, kind, context, ready):
    """Serve ``kind`` over TLS with asyncio (``loop_name`` "asyncio" or "uvloop")."""
    import asyncio

    loop = new_event_loop(loop_name)
    protocol = make_asyncio_protocols(asyncio)[kind]

    def factory():
        return protocol(None)

    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", 0, backlog=512, ssl=context))
    # the asynchat servers set TCP_NODELAY on every accepted socket; asyncio
    # and uvloop do it themselves on their TCP transports
    ready(server.sockets[0].getsockname()[1])
    loop.run_forever()


def run_tls_server(source, kind, certfile, keyfile, ready):
    """Serve ``kind`` ("echo" or "http") over TLS with implementation ``source``."""
    context = server_context(certfile, keyfile)
    if source in ("asyncio", "uvloop"):
        run_asyncio_tls_server(source, kind, context, ready)
    elif source == "asynchat_core":
        run_core_tls_server(kind, context, ready)
    elif source == "stdlib":
        from .impls import load_modules

        asyncore, asynchat = load_modules("stdlib")
        run_stdlib_tls_server(asyncore, asynchat, kind, context, ready)
    else:
        raise ValueError("unknown TLS server source %r" % (source,))

