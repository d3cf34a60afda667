"""PROXY protocol v1/v2 header parser: the one source of both builds.

Run as Python this is ``_proxy_py``; setup.py also compiles this file in
Cython's pure-Python mode into ``asynchat_core._proxy_c``, typed by
``src/asynchat_core/_proxy_c.pxd`` (setup.py ``PURE_MODE``).  The byte reads
are indexed reads of a ``bytes`` object whose length each branch checks
first; compiled, Cython keeps its bounds checks on as well, so no input
can make either build read outside the header.

The format is HAProxy's specification, "The PROXY protocol, versions 1 & 2"
(https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt).
"""
import socket

from ._proxy_types import ProxyError, ProxyHeader

__all__ = ["V1", "V2", "V1_MAX", "V2_SIGNATURE", "V2_MAX", "parse"]

#: bits of ``parse``'s ``versions``
V1 = 1
V2 = 2
#: a v1 line's longest size, CRLF included (the specification's figure)
V1_MAX = 107
V1_SIGNATURE = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: a v2 header's largest possible size (16 bytes and a 16-bit length)
V2_MAX = 16 + 0xFFFF

_INCOMPLETE = (0, None)
_V1_FAMILIES = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}
# (Windows builds of CPython may lack AF_UNIX; 1 is its value everywhere else)
_AF_UNIX = getattr(socket, "AF_UNIX", 1)


def parse(data, versions=3, v2_limit=V2_MAX):
    """Parse the PROXY header at the start of ``data`` (bytes).

    Returns ``(length, header)``: the header's size and a ``ProxyHeader``
    once it is complete, ``(0, None)`` while ``data`` is a proper prefix of
    one that may still be valid.  ``versions`` is a bit set of ``V1`` and
    ``V2``; a v2 header longer than ``v2_limit`` bytes is refused.  Raises
    ``ProxyError`` (one line saying why) for anything else.
    """
    buf = data if type(data) is bytes else bytes(data)
    n = len(buf)
    if n == 0:
        return _INCOMPLETE
    first = buf[0]
    if first == 0x50 and versions & V1:  # "P"
        return _parse_v1(buf, n)
    if first == 0x0D and versions & V2:  # "\r"
        return _parse_v2(buf, n, v2_limit)
    if versions & V1 and versions & V2:
        raise ProxyError("no PROXY protocol signature")
    raise ProxyError("no PROXY protocol v%d signature" % (1 if versions & V1 else 2))


def _parse_v1(buf, n):
    if n < 6:
        if buf != V1_SIGNATURE[:n]:
            raise ProxyError("no PROXY protocol v1 signature")
        return _INCOMPLETE
    if buf[:6] != V1_SIGNATURE:
        raise ProxyError("no PROXY protocol v1 signature")
    end = buf.find(b"\n", 0, V1_MAX)
    if end < 0:
        if n >= V1_MAX:
            raise ProxyError("v1 header longer than %d bytes" % V1_MAX)
        return _INCOMPLETE
    if buf[end - 1] != 0x0D:
        raise ProxyError("v1 header not ended by CRLF")
    fields = buf[6:end - 1].split(b" ")
    length = end + 1
    if fields[0] == b"UNKNOWN":  # the balancer cannot tell: use the real endpoints
        return length, ProxyHeader(1, "LOCAL", socket.AF_UNSPEC, None, None, [], length)
    family = _V1_FAMILIES.get(fields[0])
    if family is None:
        raise ProxyError("v1 header: unknown protocol")
    if len(fields) != 5:
        raise ProxyError("v1 header: wrong number of fields")
    src = _v1_host(family, fields[1])
    dst = _v1_host(family, fields[2])
    sport = _v1_port(fields[3])
    dport = _v1_port(fields[4])
    if family == socket.AF_INET:
        source, destination = (src, sport), (dst, dport)
    else:
        source, destination = (src, sport, 0, 0), (dst, dport, 0, 0)  # type: ignore[assignment]
    return length, ProxyHeader(1, "PROXY", family, source, destination, [], length)


def _v1_host(family, field):
    try:
        text = field.decode("ascii")
        socket.inet_pton(family, text)
    except (UnicodeDecodeError, OSError, ValueError):
        raise ProxyError("v1 header: bad address") from None
    return text


def _v1_port(field):
    k = len(field)
    if k == 0 or k > 5 or (k > 1 and field[0] == 0x30):
        raise ProxyError("v1 header: bad port")
    value = 0
    for i in range(k):
        digit = field[i] - 0x30
        if digit < 0 or digit > 9:
            raise ProxyError("v1 header: bad port")
        value = value * 10 + digit
    if value > 0xFFFF:
        raise ProxyError("v1 header: bad port")
    return value


def _parse_v2(buf, n, v2_limit):
    if n < 16:
        if buf[:12] != V2_SIGNATURE[:min(n, 12)]:
            raise ProxyError("no PROXY protocol v2 signature")
        return _INCOMPLETE
    if buf[:12] != V2_SIGNATURE:
        raise ProxyError("no PROXY protocol v2 signature")
    ver_cmd = buf[12]
    if ver_cmd >> 4 != 2:
        raise ProxyError("v2 header: unknown version")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyError("v2 header: unknown command")
    fam = buf[13]
    af = fam >> 4
    transport = fam & 0x0F
    if af > 3 or transport > 2:
        raise ProxyError("v2 header: unknown address family")
    total = 16 + ((buf[14] << 8) | buf[15])
    if total > v2_limit:
        raise ProxyError("v2 header of %d bytes, over the limit of %d" % (total, v2_limit))
    if n < total:
        return _INCOMPLETE
    if command == 0 or af == 0:  # LOCAL, or no address: the real endpoints
        return total, ProxyHeader(2, "LOCAL", socket.AF_UNSPEC, None, None, [], total)
    if transport != 1:
        raise ProxyError("v2 header: not a stream connection")
    if af == 1:
        pos = 28
        if total < pos:
            raise ProxyError("v2 header: address block too short")
        family = socket.AF_INET
        source = (socket.inet_ntop(family, buf[16:20]), (buf[24] << 8) | buf[25])
        destination = (socket.inet_ntop(family, buf[20:24]), (buf[26] << 8) | buf[27])
    elif af == 2:
        pos = 52
        if total < pos:
            raise ProxyError("v2 header: address block too short")
        family = socket.AF_INET6
        source = (socket.inet_ntop(family, buf[16:32]),  # type: ignore[assignment]
                  (buf[48] << 8) | buf[49], 0, 0)
        destination = (socket.inet_ntop(family, buf[32:48]),  # type: ignore[assignment]
                       (buf[50] << 8) | buf[51], 0, 0)
    else:
        pos = 232
        if total < pos:
            raise ProxyError("v2 header: address block too short")
        family = _AF_UNIX  # type: ignore[assignment]  # (an int where AF_UNIX is missing)
        source = _unix_path(buf[16:124])
        destination = _unix_path(buf[124:232])
    tlvs = []
    while pos < total:
        if total - pos < 3:
            raise ProxyError("v2 header: truncated TLV")
        size = (buf[pos + 1] << 8) | buf[pos + 2]
        if size > total - pos - 3:
            raise ProxyError("v2 header: TLV past the header's end")
        tlvs.append((buf[pos], buf[pos + 3:pos + 3 + size]))
        pos += 3 + size
    return total, ProxyHeader(2, "PROXY", family, source, destination, tlvs, total)


def _unix_path(raw):
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "surrogateescape")
