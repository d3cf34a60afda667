"""What the PROXY protocol parsers return and raise (shared by both builds of
the parser, ``_proxy_py`` and ``_proxy_c``, so that ``except ProxyError``
catches either)."""

__all__ = ["ProxyError", "ProxyHeader"]


class ProxyError(ValueError):
    """A PROXY protocol header that is malformed, or not allowed here."""


class ProxyHeader:
    """A parsed PROXY protocol header.

    ``version``
        1 (text) or 2 (binary).
    ``command``
        ``"PROXY"`` (a relayed connection) or ``"LOCAL"`` (v2: the balancer's
        own connection, e.g. a health check; v1 ``UNKNOWN`` is reported as
        ``"LOCAL"`` too: both mean "use the real endpoints").
    ``family``
        ``socket.AF_INET``, ``socket.AF_INET6``, ``socket.AF_UNIX`` or
        ``socket.AF_UNSPEC``.
    ``source`` / ``destination``
        The client's and the balancer's listening address, as
        ``socket.accept()`` gives them: ``(host, port)`` for IPv4,
        ``(host, port, 0, 0)`` for IPv6, a path (str) for AF_UNIX; None when
        the header carries none (``LOCAL``, ``UNKNOWN``, ``AF_UNSPEC``).
    ``tlvs``
        v2's type-length-value records, a list of ``(type, bytes)`` in header
        order (empty for v1).
    ``length``
        The header's size in bytes on the wire.
    """

    __slots__ = ("version", "command", "family", "source", "destination", "tlvs", "length")

    def __init__(self, version, command, family, source, destination, tlvs, length):
        self.version = version
        self.command = command
        self.family = family
        self.source = source
        self.destination = destination
        self.tlvs = tlvs
        self.length = length

    def tlv(self, type_, default=None):
        """The value of the first TLV of ``type_``, else ``default``."""
        for t, value in self.tlvs:
            if t == type_:
                return value
        return default

    def __eq__(self, other):
        if not isinstance(other, ProxyHeader):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable: compared by value

    def __repr__(self):
        return "<ProxyHeader v%d %s %r -> %r%s>" % (
            self.version, self.command, self.source, self.destination,
            " tlvs=%d" % len(self.tlvs) if self.tlvs else "")
