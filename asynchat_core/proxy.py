"""PROXY protocol (v1 text, v2 binary) on listeners, opt-in.

A load balancer that speaks the PROXY protocol (HAProxy ``send-proxy`` /
``send-proxy-v2``, nginx ``proxy_protocol on``, AWS NLB, Envoy) sends one
header before the client's bytes, naming the client.  Put
``ProxyListenerMixin`` before ``asyncore.dispatcher`` in a listener's bases::

    class Server(proxy.ProxyListenerMixin, asyncore.dispatcher):
        proxy_allow = ["127.0.0.0/8"]          # who may send headers

        def handle_accepted(self, sock, addr):  # addr: the real client
            Handler(sock)

Each accepted connection is held by a small internal reader until its
header is complete; then the listener's usual accept path runs
(``accept()``, ``max_connections``, ``handle_accepted(sock, addr)``) with
the client's address.  The bytes after the header stay unread in the
socket for the handler: the reader peeks (``MSG_PEEK``) and consumes no
more than the header.  A malformed, truncated, oversized or missing header,
one that does not arrive within ``proxy_timeout`` seconds, or a connection
from an address outside ``proxy_allow`` is closed with one log line
(``log_info(..., "warning")`` of the listener); nothing reaches
``handle_accepted``.

What the handler sees (docs/scaleout.md):

* ``addr`` (and so ``dispatcher.addr``) is the client's address from the
  header, shaped as ``socket.accept()`` shapes it; a ``LOCAL`` header (a
  balancer's health check) or v1 ``UNKNOWN`` keeps the real peer.
* ``sock`` is a ``ProxiedSocket``: ``getpeername()`` returns that same
  address, ``proxy_header`` is the ``ProxyHeader`` (v2 TLVs in
  ``proxy_header.tlvs``), ``proxy_peer`` the balancer's address.
  ``header_of(sock_or_channel)`` finds the header again, also after TLS.

Implicit TLS: put ``tls.TLSListenerMixin`` *before* this mixin in the
bases; the header is read first, then the socket is wrapped and the
handshake runs in the handler as usual.  STARTTLS needs nothing special.
"""
import collections
import ipaddress
import socket

from . import _impl, asyncore
from ._proxy_types import ProxyError, ProxyHeader

try:
    if _impl.IMPLEMENTATION != "cython":
        raise ImportError
    from . import _proxy_c as _parser
except ImportError:
    from . import _proxy_py as _parser

__all__ = ["ProxyError", "ProxyHeader", "ProxiedSocket", "ProxyListenerMixin", "header_of",
           "parse", "V1", "V2"]

V1 = 1
V2 = 2


def parse(data, versions=V1 | V2, v2_limit=16 + 0xFFFF):
    """Parse a PROXY header at the start of ``data``: ``(length, header)``,
    ``(0, None)`` while incomplete; ``ProxyError`` if malformed."""
    return _parser.parse(data, versions, v2_limit)


def _use_impl(module):
    """Use the parser ``module`` (``_proxy_py`` or ``_proxy_c``); returns the
    previous one (for tests)."""
    global _parser
    previous, _parser = _parser, module
    return previous


class ProxiedSocket(socket.socket):
    """An accepted socket whose peer is the client its PROXY header names.

    ``getpeername()`` returns the client's address (the balancer's for a
    ``LOCAL`` header); ``proxy_header`` is the parsed header and
    ``proxy_peer`` the balancer's address (what the kernel reports).
    """

    __slots__ = ("proxy_header", "proxy_peer")

    def getpeername(self):
        header = getattr(self, "proxy_header", None)
        if header is not None and header.source is not None:
            return header.source
        return super().getpeername()


def header_of(obj):
    """The ``ProxyHeader`` of a socket or channel accepted through a
    ``ProxyListenerMixin`` listener, else None (also after TLS wrapping)."""
    sock = getattr(obj, "socket", obj)
    header = getattr(sock, "proxy_header", None)
    if header is None:
        header = getattr(obj, "proxy_header", None)
    return header


class ProxyListenerMixin:
    """Read a PROXY protocol header on every accepted connection first.

    Class attributes to set (on the class or the instance):
    """

    #: bit set of accepted versions: ``V1``, ``V2`` or both
    proxy_versions = V1 | V2
    #: seconds a connection may take to send its whole header
    proxy_timeout = 5.0
    #: networks (strings or ``ipaddress`` networks) allowed to connect and
    #: send a header; None allows any address
    proxy_allow = None
    #: largest v2 header accepted, in bytes (16 plus addresses and TLVs)
    proxy_v2_limit = 4096
    #: connections whose header is still awaited; more are closed at once
    proxy_max_pending = 1024

    _proxy_ready = None
    _proxy_pending = None
    _proxy_networks = None

    def listen(self, num):
        """Listen; ``TypeError`` if ``TLSListenerMixin`` follows this mixin
        in the bases (the header precedes the TLS handshake)."""
        mro = type(self).__mro__
        names = [c.__name__ for c in mro]
        if "TLSListenerMixin" in names and (names.index("TLSListenerMixin")
                                            > names.index("ProxyListenerMixin")):
            raise TypeError("put TLSListenerMixin before ProxyListenerMixin in the bases: "
                            "the PROXY header comes before the TLS handshake")
        return super().listen(num)

    def accept(self):
        """A connection whose header is complete, as ``(sock, client_addr)``;
        otherwise accept a new one, start reading its header, return None."""
        ready = self._proxy_ready
        if ready:
            return ready.popleft()
        pair = super().accept()
        if pair is None:
            return None
        sock, addr = pair
        pending = self._proxy_pending
        if pending is None:
            pending = self._proxy_pending = set()
            self._proxy_ready = collections.deque()
        if not self._proxy_allowed(addr):
            sock.close()
            self._proxy_log(addr, "source not in proxy_allow")
            return None
        if len(pending) >= self.proxy_max_pending:
            sock.close()
            self._proxy_log(addr, "%d headers pending already" % len(pending))
            return None
        pending.add(_HeaderReader(self, sock, addr))
        return None

    def close(self):
        """Close the listener and the connections still sending a header."""
        for reader in list(self._proxy_pending or ()):
            reader.close()
        ready = self._proxy_ready
        while ready:
            ready.popleft()[0].close()
        super().close()

    def _proxy_allowed(self, addr):
        allow = self.proxy_allow
        if allow is None:
            return True
        networks = self._proxy_networks
        if networks is None or networks[0] is not allow:
            networks = (allow, [ipaddress.ip_network(n, strict=False) for n in allow])
            self._proxy_networks = networks
        try:
            host = ipaddress.ip_address(addr[0].split("%", 1)[0])
        except (TypeError, ValueError, IndexError):
            return False  # AF_UNIX and the like: no address to check
        if host.version == 6 and host.ipv4_mapped is not None:
            host = host.ipv4_mapped
        return any(host in net for net in networks[1])

    def _proxy_log(self, addr, reason):
        self.log_info("PROXY protocol: closed connection from %r: %s" % (addr, reason),
                      "warning")

    def _proxy_done(self, reader, sock, addr):
        self._proxy_pending.discard(reader)
        if sock is None:
            return
        self._proxy_ready.append((sock, addr))
        try:
            self.handle_accept()  # accept() hands over the pair just queued
        except Exception:
            self.handle_error()


class _HeaderReader(asyncore.dispatcher):
    # Holds one accepted connection until its PROXY header is complete.
    # Each read event peeks at what arrived and consumes only header bytes
    # (all of them while the header is incomplete, so the socket is not
    # readable again until more arrive: no spin), never the bytes after it.

    def __init__(self, listener, sock, addr):
        self._listener = listener
        self._peer = addr
        self._buf = b""
        self._timer = None
        asyncore.dispatcher.__init__(self, sock, listener._map)
        self._timer = asyncore.call_later(listener.proxy_timeout, self._expire)

    def readable(self):
        return True

    def writable(self):
        return False

    def handle_read(self):
        buf = self._buf
        n = len(buf)
        if n >= 16 and buf[0] == 0x0D:  # v2 with its length known
            want = 16 + ((buf[14] << 8) | buf[15]) - n
        else:
            want = _parser.V1_MAX - n  # covers v2's fixed 16 bytes as well
        try:
            peeked = self.socket.recv(want, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail("%s" % (exc,))
            return
        if not peeked:
            self._fail("closed before a complete header (%d bytes)" % n)
            return
        data = buf + peeked
        listener = self._listener
        try:
            length, header = _parser.parse(data, listener.proxy_versions, listener.proxy_v2_limit)
        except ProxyError as exc:
            self._fail(str(exc))
            return
        take = len(peeked) if header is None else length - n
        try:
            got = self.socket.recv(take)
        except OSError as exc:
            self._fail("%s" % (exc,))
            return
        if len(got) != take:  # (cannot happen: the bytes were peeked)
            self._fail("short read of a peeked header")
            return
        if header is None:
            self._buf = data[:n + take]
            return
        self._finish(header)

    def _finish(self, header):
        self._cancel_timer()
        raw = self.socket
        self.del_channel()
        self.socket = None
        self.connected = False
        sock = ProxiedSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        sock.setblocking(True)  # as socket.accept() returns it
        sock.proxy_header = header
        sock.proxy_peer = self._peer
        addr = header.source if header.source is not None else self._peer
        self._listener._proxy_done(self, sock, addr)

    def _expire(self):
        self._timer = None
        self._fail("no complete header within %gs (%d bytes)"
                   % (self._listener.proxy_timeout, len(self._buf)))

    def _fail(self, reason):
        self._listener._proxy_log(self._peer, reason)
        self.close()

    def _cancel_timer(self):
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def close(self):
        self._cancel_timer()
        if self.socket is not None:
            asyncore.dispatcher.close(self)
        self._listener._proxy_done(self, None, None)

    def handle_close(self):
        self._fail("connection closed before a complete header")

    def handle_error(self):
        exc = asyncore.compact_traceback()
        self._fail("error %s: %s" % (exc[1].__name__, exc[2]))

    def handle_expt(self):
        self._fail("out-of-band data before the header")
