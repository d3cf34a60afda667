"""PROXY protocol v1/v2 on listeners (asynchat_core.proxy), both builds.

The parser (``_proxy_py`` and its compiled twin ``_proxy_c``) is checked
against a plain reference parser written here from the specification, on
valid headers, every prefix of them, mutations and random bytes.  The
listener is checked over real sockets on 127.0.0.1, served from a loop
thread (tests/tls_servers.py): the handler sees the client named by the
header, the bytes after the header reach it, and every hostile header is
closed with one log line before anything reaches ``handle_accepted``.
"""
import contextlib
import random
import socket
import ssl
import struct
import time

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

import impls
from asynchat_core import asyncore, proxy
from asynchat_core.tls import TLSListenerMixin
from tls_servers import CLIENT_TIMEOUT, HOST, ChatEcho, ImplicitChatEcho, LoopThread

SIG2 = b"\r\n\r\n\x00\r\nQUIT\n"


# --------------------------------------------------------------- reference

def ref_parse(data, versions=3, limit=16 + 0xFFFF):
    """The specification, read plainly: ("ok", length, fields), ("more",)
    or ("error",)."""
    if not data:
        return ("more",)
    if data[:1] == b"P" and versions & 1:
        if not b"PROXY "[:len(data)] == data[:6]:
            return ("error",)
        line_end = data.find(b"\r\n")
        if line_end < 0 or line_end + 2 > 107:
            # no CRLF within the first 107 bytes
            if len(data) >= 107 or b"\n" in data[:107]:
                return ("error",)
            return ("more",)
        if b"\n" in data[:line_end]:
            return ("error",)  # a bare LF before the CRLF
        words = data[6:line_end].split(b" ")
        if words[0] == b"UNKNOWN":
            return ("ok", line_end + 2, ("LOCAL", None))
        fam = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}.get(words[0])
        if fam is None or len(words) != 5:
            return ("error",)
        try:
            hosts = [w.decode("ascii") for w in words[1:3]]
            for h in hosts:
                socket.inet_pton(fam, h)
        except (UnicodeDecodeError, OSError, ValueError):
            return ("error",)
        ports = []
        for w in words[3:5]:
            if not (w.isdigit() and len(w) <= 5 and (w == b"0" or not w.startswith(b"0"))):
                return ("error",)
            if int(w) > 65535:
                return ("error",)
            ports.append(int(w))
        extra = (0, 0) if fam == socket.AF_INET6 else ()
        return ("ok", line_end + 2, ("PROXY", (hosts[0], ports[0]) + extra))
    if data[:1] == b"\r" and versions & 2:
        if data[:12] != SIG2[:len(data[:12])]:
            return ("error",)
        if len(data) < 16:
            return ("more",)
        ver, cmd = data[12] >> 4, data[12] & 15
        af, tp = data[13] >> 4, data[13] & 15
        if ver != 2 or cmd > 1 or af > 3 or tp > 2:
            return ("error",)
        (size,) = struct.unpack("!H", data[14:16])
        if 16 + size > limit:
            return ("error",)
        if len(data) < 16 + size:
            return ("more",)
        if cmd == 0 or af == 0:
            return ("ok", 16 + size, ("LOCAL", None))
        if tp != 1:
            return ("error",)
        body = data[16:16 + size]
        need = {1: 12, 2: 36, 3: 216}[af]
        if len(body) < need:
            return ("error",)
        if af == 1:
            src = (socket.inet_ntoa(body[:4]), struct.unpack("!H", body[8:10])[0])
        elif af == 2:
            src = (socket.inet_ntop(socket.AF_INET6, body[:16]),
                   struct.unpack("!H", body[32:34])[0], 0, 0)
        else:
            src = body[:108].split(b"\x00")[0].decode("utf-8", "surrogateescape")
        rest, tlvs = body[need:], []
        while rest:
            if len(rest) < 3:
                return ("error",)
            (n,) = struct.unpack("!H", rest[1:3])
            if len(rest) < 3 + n:
                return ("error",)
            tlvs.append((rest[0], rest[3:3 + n]))
            rest = rest[3 + n:]
        return ("ok", 16 + size, ("PROXY", src, tlvs))
    return ("error",)


def ours(module, data, versions=3, limit=16 + 0xFFFF):
    """``module.parse`` in the reference's terms."""
    try:
        length, header = module.parse(data, versions, limit)
    except proxy.ProxyError:
        return ("error",)
    if header is None:
        assert length == 0
        return ("more",)
    assert header.length == length
    if header.command == "LOCAL":
        return ("ok", length, ("LOCAL", header.source))
    if header.version == 1:
        return ("ok", length, ("PROXY", header.source))
    return ("ok", length, ("PROXY", header.source, header.tlvs))


def v1(src="203.0.113.7", sport=51234, dst="127.0.0.1", dport=80, fam="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src="203.0.113.9", sport=40001, dst="127.0.0.1", dport=80, tlvs=(), command=1,
       family=0x11, pad=b""):
    if family >> 4 == 2:
        addr = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack("!HH", sport, dport))
    else:
        addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body = addr + b"".join(bytes([t]) + struct.pack("!H", len(v)) + v for t, v in tlvs) + pad
    return SIG2 + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


@pytest.fixture(params=impls.params(impls.OURS))
def parser(request):
    return impls.get(request.param).proxy


VALID = [
    v1(), v1(fam="TCP6", src="2001:db8::1", dst="::1"), b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN whatever 1 2\r\n", v1(sport=0, dport=65535),
    v2(), v2(tlvs=[(1, b"h2"), (0xE0, b"x" * 300)]), v2(command=0), v2(family=0x00),
    v2(src="2001:db8::2", dst="::1", family=0x21, tlvs=[(4, b"")]),
]


@pytest.mark.parametrize("header", VALID)
def test_parser_valid_and_every_prefix(parser, header):
    assert ours(parser, header + b"after")[:2] == ("ok", len(header))
    assert ours(parser, header) == ref_parse(header)
    for cut in range(len(header)):
        assert ours(parser, header[:cut]) == ("more",), cut


BAD = {
    "wrong signature": b"GET / HTTP/1.1\r\n\r\n",
    "v1 LF only": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    # valid if the byte before the LF were taken for the CR
    "v1 LF only, valid without its last byte": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 22\n",
    "v1 UNKNOWN with LF only": b"PROXY UNKNOWN x\n",
    "v1 no CRLF in 107": b"PROXY TCP4 " + b"1" * 120,
    "v1 bad address": v1(src="1.2.3.999"),
    "v1 leading zero port": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "v1 port too big": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "v1 v6 in TCP4": v1(src="::1"),
    "v1 double space": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "v2 bad version": SIG2 + b"\x11\x11\x00\x0c" + b"\x00" * 12,
    "v2 bad command": SIG2 + b"\x22\x11\x00\x0c" + b"\x00" * 12,
    "v2 dgram": v2(family=0x12),
    "v2 short address": SIG2 + b"\x21\x11\x00\x04" + b"\x00" * 4,
    "v2 TLV past end": v2(pad=b"\x01\x00\x09ab"),
    "v2 TLV 1 byte past end": v2(pad=b"\x01\x00\x03ab"),
    "v2 TLV 3 bytes past end": v2(pad=b"\x01\x00\x05ab"),
    "v2 truncated TLV": v2(pad=b"\x01\x00"),
}


@pytest.mark.parametrize("data", list(BAD.values()), ids=list(BAD))
def test_parser_rejects(parser, data):
    assert ours(parser, data) == ("error",) == ref_parse(data)


def test_parser_versions_and_limit(parser):
    assert ours(parser, v1(), versions=2) == ("error",)
    assert ours(parser, v2(), versions=1) == ("error",)
    big = v2(tlvs=[(0xE0, b"x" * 5000)])
    assert ours(parser, big[:16], limit=4096) == ("error",)  # refused before it arrives
    assert ours(parser, big, limit=len(big))[:2] == ("ok", len(big))


def test_parser_twins_agree():
    assert impls.get("python").proxy.parse(v2())[1] == impls.get("cython").proxy.parse(v2())[1]


def _mutated(draw_bytes, base, flips):
    data = bytearray(base)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    return bytes(data) + draw_bytes


@given(
    base=st.sampled_from(VALID + list(BAD.values())),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 400),
    tail=st.binary(max_size=20),
    versions=st.sampled_from([1, 2, 3]),
    limit=st.sampled_from([16, 28, 64, 4096, 16 + 0xFFFF]),
)
def test_parser_fuzz_against_reference(base, flips, cut, tail, versions, limit):
    data = _mutated(tail, base, flips)[:cut]
    expected = ref_parse(data, versions, limit)
    for module in (impls.get("python").proxy, impls.get("cython").proxy):
        assert ours(module, data, versions, limit) == expected, module.__name__


@given(st.binary(max_size=300))
def test_parser_fuzz_random_bytes(data):
    for module in (impls.get("python").proxy, impls.get("cython").proxy):
        for candidate in (data, b"PROXY " + data, SIG2 + data):
            assert ours(module, candidate) == ref_parse(candidate)


# ----------------------------------------------------------------- listener

@pytest.fixture
def impl(our_impl):
    return our_impl.name


@pytest.fixture(scope="module")
def certs():
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


@contextlib.contextmanager
def proxied_server(handler=ChatEcho, implicit_tls=False, tls=None, **attrs):
    """A LoopThread with a ProxyListenerMixin listener on 127.0.0.1 (with
    ``attrs`` set on it) serving ``handler``; yields ``(srv, port)``."""
    srv = LoopThread(tls=tls)
    bases = ((TLSListenerMixin,) if implicit_tls else ()) + (proxy.ProxyListenerMixin,
                                                             asyncore.dispatcher)

    class Listener(*bases):
        tls_context = tls

        def handle_accepted(self, sock, addr):
            srv.events.append(("accepted", addr, sock.getpeername(), proxy.header_of(sock)))
            channel = handler(sock, srv)
            srv.events.append(("channel addr", channel.addr))

        def log_info(self, message, type="info"):
            srv.logs.append((type, message))

    listener = Listener(map=srv.map)
    for name, value in attrs.items():
        setattr(listener, name, value)
    listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.set_reuse_addr()
    listener.bind((HOST, 0))
    listener.listen(128)
    port = listener.socket.getsockname()[1]
    srv.start()
    try:
        yield srv, port
    finally:
        srv.stop()
        assert srv.errors == [], srv.errors[0]


def connect(port):
    return socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)


def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("EOF after %r" % data[-200:])
        data += chunk
    return data


def accepted(srv):
    return [e for e in srv.events if e[0] == "accepted"]


@pytest.mark.parametrize("header,client", [
    (v1(src="198.51.100.4", sport=4321), ("198.51.100.4", 4321)),
    (v2(src="198.51.100.5", sport=1234, tlvs=[(0x01, b"http/1.1")]), ("198.51.100.5", 1234)),
], ids=["v1", "v2"])
def test_handler_sees_the_client(impl, header, client):
    with proxied_server() as (srv, port):
        with connect(port) as c:
            c.sendall(header + b"hello\n")
            assert read_until(c, b"\n") == b"hello\n"
        ev = accepted(srv)
        assert len(ev) == 1
        _, addr, peername, hdr = ev[0]
        assert addr == client and peername == client
        assert ("channel addr", client) in srv.events
        assert hdr.source == client
        if hdr.version == 2:
            assert hdr.tlv(0x01) == b"http/1.1"
    assert not [m for t, m in srv.logs if "PROXY" in m]


def test_local_header_keeps_the_real_peer(impl):
    with proxied_server() as (srv, port):
        with connect(port) as c:
            c.sendall(v2(command=0) + b"ping\n")
            assert read_until(c, b"\n") == b"ping\n"
            local = c.getsockname()
        _, addr, peername, hdr = accepted(srv)[0]
        assert addr == local and peername == local and hdr.command == "LOCAL"


def test_bytes_after_the_header_all_reach_the_handler(impl):
    payload = b"".join(b"line %d\n" % i for i in range(20000))
    with proxied_server() as (srv, port):
        with connect(port) as c:
            c.sendall(v2() + payload + b"END\n")
            got = read_until(c, b"END\n")
        assert got == payload + b"END\n"


@pytest.mark.parametrize("seed", range(6))
def test_random_chunkings(impl, seed):
    rng = random.Random(seed)
    header, client = rng.choice([(v1(), ("203.0.113.7", 51234)),
                                 (v2(tlvs=[(2, b"authority.example")]), ("203.0.113.9", 40001))])
    data = header + b"first\nsecond\n"
    with proxied_server() as (srv, port):
        with connect(port) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pos = 0
            while pos < len(data):
                step = rng.choice([1, 1, 2, 3, 7, 16, 40])
                c.sendall(data[pos:pos + step])
                pos += step
                if rng.random() < 0.3:
                    time.sleep(0.002)  # (varies the chunking only, no sync)
            assert read_until(c, b"second\n") == b"first\nsecond\n"
        assert accepted(srv)[0][1] == client


def expect_closed(c):
    """The server closed ``c`` without sending anything."""
    try:
        data = c.recv(100)
    except (ConnectionResetError, ConnectionAbortedError):  # (Windows: an RST)
        data = b""
    assert data == b""


HOSTILE = {
    "wrong signature": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", {}),
    "plaintext where v2 is required": (b"hello\n", {"proxy_versions": proxy.V2}),
    "v1 where v2 is required": (v1(), {"proxy_versions": proxy.V2}),
    "v1 without CRLF": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nhello\n", {}),
    "v1 oversized": (b"PROXY TCP4 " + b"9" * 200 + b"\r\n", {}),
    "v2 oversized": (v2(tlvs=[(0xE0, b"x" * 5000)]), {"proxy_v2_limit": 4096}),
    "v2 malformed TLV": (v2(pad=b"\x01\x00\x09ab"), {}),
    "v2 bad family": (SIG2 + b"\x21\x51\x00\x00", {}),
    "source not allowed": (v1(), {"proxy_allow": ["10.0.0.0/8", "2001:db8::/32"]}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_header_closed_with_one_log_line(impl, name):
    data, attrs = HOSTILE[name]
    with proxied_server(**attrs) as (srv, port):
        with connect(port) as c:
            try:
                c.sendall(data)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                pass  # closed while we still sent: fine
            expect_closed(c)
        assert srv.wait_for(lambda: srv.logs)
        assert srv.channel_count() == 0
    lines = [m for t, m in srv.logs]
    assert len(lines) == 1 and lines[0].startswith("PROXY protocol: closed"), lines
    assert "\n" not in lines[0]
    assert accepted(srv) == []


def test_truncated_header_then_close(impl):
    with proxied_server() as (srv, port):
        with connect(port) as c:
            c.sendall(v2()[:20])
        assert srv.wait_for(lambda: srv.logs)
    assert len(srv.logs) == 1 and "before a complete header" in srv.logs[0][1]
    assert accepted(srv) == []


def test_allowed_source_passes(impl):
    with proxied_server(proxy_allow=["127.0.0.0/8"]) as (srv, port):
        with connect(port) as c:
            c.sendall(v1() + b"hi\n")
            assert read_until(c, b"\n") == b"hi\n"


def test_stalled_header_closed_at_the_deadline_without_spinning(impl):
    timeout = 0.6
    with proxied_server(proxy_timeout=timeout) as (srv, port):
        with connect(port) as c:
            c.sendall(b"\r")  # one byte of a v2 signature, then nothing
            start, cpu = time.monotonic(), time.process_time()
            expect_closed(c)
            elapsed, cpu_used = time.monotonic() - start, time.process_time() - cpu
        assert timeout * 0.9 <= elapsed < timeout + 5.0
        # a guard against a busy loop (a spinning reader burns the whole
        # stall); generous, not a speed claim
        assert cpu_used < timeout / 2, cpu_used
    assert len(srv.logs) == 1 and "no complete header within" in srv.logs[0][1]
    assert accepted(srv) == []


def test_implicit_tls_after_the_header(impl, certs):
    server_ctx, client_ctx = certs
    with proxied_server(ImplicitChatEcho, implicit_tls=True, tls=server_ctx) as (srv, port):
        with connect(port) as raw:
            raw.sendall(v2(src="192.0.2.1", sport=999))
            with client_ctx.wrap_socket(raw, server_hostname=HOST) as c:
                c.sendall(b"secret\n")
                assert read_until(c, b"\n") == b"secret\n"
        _, addr, peername, hdr = accepted(srv)[0]
        assert addr == ("192.0.2.1", 999) and hdr.source == addr
        assert proxy.header_of(srv.channels[0]) == hdr
        assert peername == addr


def test_starttls_after_the_header(impl, certs):
    server_ctx, client_ctx = certs
    with proxied_server(ChatEcho, tls=server_ctx) as (srv, port):
        with connect(port) as raw:
            raw.sendall(v1(src="192.0.2.2", sport=77) + b"STARTTLS\n")
            assert read_until(raw, b"\n") == b"220 ready\n"
            with client_ctx.wrap_socket(raw, server_hostname=HOST) as c:
                c.sendall(b"after\n")
                assert read_until(c, b"\n") == b"after\n"
            chan = srv.channels[0]
            assert srv.call(lambda: (chan.tls_active, chan.socket.getpeername())) == (
                True, ("192.0.2.2", 77))
            assert proxy.header_of(chan).source == ("192.0.2.2", 77)
        assert accepted(srv)[0][1] == ("192.0.2.2", 77)
        assert ("channel addr", ("192.0.2.2", 77)) in srv.events


def test_tls_mixin_after_proxy_mixin_is_refused(impl, certs):
    class Wrong(proxy.ProxyListenerMixin, TLSListenerMixin, asyncore.dispatcher):
        tls_context = certs[0]

    listener = Wrong(map={})
    listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((HOST, 0))
        with pytest.raises(TypeError, match="TLSListenerMixin before ProxyListenerMixin"):
            listener.listen(5)
    finally:
        listener.close()
